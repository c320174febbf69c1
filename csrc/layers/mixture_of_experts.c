/* mixture_of_experts.c — MixtureOfExperts: a router and E gated feed-forward experts (Mixtral's sparse MoE
 * block), with the tokens grouped per expert.
 *
 * Data flow for x (M, C):
 *   logits (M, E) = x Rᵀ                        one small GEMM (router, float32)
 *   p = softmax(logits); top_k per row          (ties: the lower expert index first)
 *   w = p[top] (/ Σ p[top] when normalize_top_k)
 *   for each expert e (ascending) that some row chose:
 *     xg (n_e, C) = the rows routed to e (gathered, in row order)
 *     yg (n_e, C) = expert_e(xg)                one FeedForward call: 3 GEMMs over n_e rows
 *     acc[row] += w · yg                        (acc (M, C) starts at zero)
 *   y = acc (+ other, the residual)
 * An expert no row chose is never read, so decoding one token reads the router and top_k
 * experts' weights only. The sum runs over experts in ascending order, like HF's index_add_.
 */
#include "layers/mixture_of_experts.h"

#include <math.h>
#include <string.h>

int
tf_moe_check(tf_state *st, PyObject *obj)
{
    return PyObject_TypeCheck(obj, st->MixtureOfExperts);
}

/* One row of routing: logits (E,) -> idx (k,), wt (k,). Selection by repeated arg-max over
 * the probabilities left (k is small: 1 or 2 in Mixtral and Jamba), strict '>' so the lower
 * index wins a tie. */
static void
route_row(const float *logits, int64_t E, int k, int normalize, float *p, int64_t *idx, float *wt)
{
    float mx = logits[0], sum = 0.f, top = 0.f;
    for (int64_t e = 1; e < E; e++) {
        mx = logits[e] > mx ? logits[e] : mx;
    }
    for (int64_t e = 0; e < E; e++) {
        p[e] = expf(logits[e] - mx);
        sum += p[e];
    }
    for (int64_t e = 0; e < E; e++) {
        p[e] /= sum;
    }
    for (int j = 0; j < k; j++) {
        int64_t best = -1;
        for (int64_t e = 0; e < E; e++) {
            if (p[e] >= 0.f && (best < 0 || p[e] > p[best])) {
                best = e;
            }
        }
        if (best < 0) { /* only NaN left (an overflowed logit): the first expert not taken */
            for (best = 0; p[best] == -1.f; best++) {
            }
        }
        idx[j] = best;
        wt[j] = p[best];
        top += p[best];
        p[best] = -1.f; /* taken */
    }
    if (normalize) {
        for (int j = 0; j < k; j++) {
            wt[j] /= top;
        }
    }
}

int
tf_moe_route(const tf_moe *m, const float *x, int64_t M, int64_t *idx, float *wt, tf_err *err)
{
    const int64_t E = m->E;
    float *logits = tf_malloc((size_t)M * (size_t)E * sizeof(float));
    int rc = -1;
    if (logits == NULL) {
        tf_err_set(err, TF_ERR_MEMORY, "out of memory for the (%lld, %lld) router logits",
                   (long long)M, (long long)E);
        return -1;
    }
    if (tf_linear_forward(m->router, x, M, logits, TF_POST_NONE, NULL, err) < 0) {
        goto done;
    }
    /* route_row overwrites its logits row with the probabilities */
    for (int64_t i = 0; i < M; i++) {
        float *row = logits + i * E;
        route_row(row, E, m->top_k, m->normalize_top_k, row, idx + i * m->top_k, wt + i * m->top_k);
    }
    rc = 0;
done:
    tf_free(logits);
    return rc;
}

int
tf_moe_forward(const tf_moe *m, const float *x, int64_t M, float *y, tf_post post,
               const float *other, tf_err *err)
{
    const int64_t E = m->E, C = m->C, k = m->top_k;
    int64_t *idx = NULL, *count = NULL, *start = NULL, *rows = NULL;
    float *wt = NULL, *wrow = NULL, *acc = NULL, *xg = NULL, *yg = NULL;
    int rc = -1;
    idx = tf_malloc((size_t)(M * k) * sizeof(int64_t));
    wt = tf_malloc((size_t)(M * k) * sizeof(float));
    count = tf_malloc((size_t)(E + 1) * sizeof(int64_t));
    start = tf_malloc((size_t)(E + 1) * sizeof(int64_t));
    rows = tf_malloc((size_t)(M * k) * sizeof(int64_t));
    wrow = tf_malloc((size_t)(M * k) * sizeof(float));
    acc = tf_malloc((size_t)M * (size_t)C * sizeof(float));
    if (!idx || !wt || !count || !start || !rows || !wrow || !acc) {
        tf_err_set(err, TF_ERR_MEMORY, "out of memory for the routing of %lld rows to %lld experts",
                   (long long)M, (long long)E);
        goto done;
    }
    if (tf_moe_route(m, x, M, idx, wt, err) < 0) {
        goto done;
    }
    /* group: rows[start[e] .. start[e+1]) are the rows routed to e, ascending, weights wrow */
    memset(count, 0, (size_t)(E + 1) * sizeof(int64_t));
    for (int64_t i = 0; i < M * k; i++) {
        count[idx[i]]++;
    }
    int64_t most = 0;
    start[0] = 0;
    for (int64_t e = 0; e < E; e++) {
        start[e + 1] = start[e] + count[e];
        most = count[e] > most ? count[e] : most;
        count[e] = start[e]; /* now the fill position */
    }
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < k; j++) {
            const int64_t e = idx[i * k + j];
            rows[count[e]] = i;
            wrow[count[e]] = wt[i * k + j];
            count[e]++;
        }
    }
    xg = tf_malloc((size_t)most * (size_t)C * sizeof(float));
    yg = tf_malloc((size_t)most * (size_t)C * sizeof(float));
    if (xg == NULL || yg == NULL) {
        tf_err_set(err, TF_ERR_MEMORY, "out of memory for the (%lld, %lld) rows of one expert",
                   (long long)most, (long long)C);
        goto done;
    }
    memset(acc, 0, (size_t)M * (size_t)C * sizeof(float));
    for (int64_t e = 0; e < E; e++) {
        const int64_t n = start[e + 1] - start[e];
        const int64_t *r = rows + start[e];
        const float *w = wrow + start[e];
        if (n == 0) {
            continue; /* no row chose e: its weights are not read */
        }
        /* xg (n, C) = x[r] */
#pragma omp parallel for schedule(static) if (n * C >= 65536)
        for (int64_t i = 0; i < n; i++) {
            memcpy(xg + i * C, x + r[i] * C, (size_t)C * sizeof(float));
        }
        if (tf_ffn_forward(m->experts[e], xg, n, yg, TF_POST_NONE, NULL, err) < 0) {
            goto done;
        }
        /* acc[r] += w yg: the rows of one expert are distinct, so the loop parallelises */
#pragma omp parallel for schedule(static) if (n * C >= 65536)
        for (int64_t i = 0; i < n; i++) {
            float *a = acc + r[i] * C;
            const float *g = yg + i * C;
            const float wi = w[i];
            for (int64_t c = 0; c < C; c++) {
                a[c] += wi * g[c];
            }
        }
    }
    /* y = acc (op) other */
#pragma omp parallel for schedule(static) if (M * C >= 65536)
    for (int64_t i = 0; i < M; i++) {
        float *yr = y + i * C;
        const float *ar = acc + i * C;
        if (post == TF_POST_ADD) {
            const float *o = other + i * C;
            for (int64_t c = 0; c < C; c++) {
                yr[c] = o[c] + ar[c];
            }
        }
        else if (post == TF_POST_ACCUM) {
            for (int64_t c = 0; c < C; c++) {
                yr[c] += ar[c];
            }
        }
        else if (post == TF_POST_MUL) {
            const float *o = other + i * C;
            for (int64_t c = 0; c < C; c++) {
                yr[c] = ar[c] * o[c];
            }
        }
        else {
            memcpy(yr, ar, (size_t)C * sizeof(float));
        }
    }
    rc = 0;
done:
    tf_free(idx);
    tf_free(wt);
    tf_free(count);
    tf_free(start);
    tf_free(rows);
    tf_free(wrow);
    tf_free(acc);
    tf_free(xg);
    tf_free(yg);
    return rc;
}

/* ------------------------------------------------------------------ construction */

static PyObject *
moe_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"router_weight", "experts", "top_k", "normalize_top_k", NULL};
    PyObject *router_w, *experts_obj, *seq = NULL;
    int top_k = 2, normalize = 1;
    tf_state *st = tf_state_of_type(type);
    tf_moe *self = NULL;
    if (st == NULL) {
        return NULL;
    }
    if (!TF_PARSE(st, args, kwds, "OO|$ip:MixtureOfExperts", kwlist, &router_w, &experts_obj,
                  &top_k, &normalize)) {
        return NULL;
    }
    if (PyUnicode_Check(experts_obj) || PyBytes_Check(experts_obj) ||
        (seq = PySequence_Fast(experts_obj, "")) == NULL) {
        PyErr_Clear();
        return tf_type_error(st, "experts must be a sequence of tfcore.FeedForward, got %s",
                             Py_TYPE(experts_obj)->tp_name);
    }
    const Py_ssize_t E = PySequence_Fast_GET_SIZE(seq);
    if (E == 0) {
        Py_DECREF(seq);
        return tf_value_error(st, "experts is empty; a MixtureOfExperts needs at least one");
    }
    if (top_k < 1 || top_k > E) {
        Py_DECREF(seq);
        return tf_value_error(st, "top_k=%d is out of range: it must be in 1..%zd (the experts)",
                              top_k, E);
    }
    self = (tf_moe *)type->tp_alloc(type, 0);
    if (self == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    self->top_k = top_k;
    self->normalize_top_k = normalize;
    if ((self->router = tf_linear_build(st, router_w, Py_None, TF_ACT_NONE, 0, Py_None,
                                        "router_weight")) == NULL) {
        goto fail;
    }
    const int64_t C = self->router->in_features;
    if (self->router->out_features != E) {
        tf_value_error(st,
                       "router_weight has %lld rows (experts), but %zd experts were given; "
                       "expected shape (%zd, hidden_size)",
                       (long long)self->router->out_features, E, E);
        goto fail;
    }
    self->experts = PyMem_Calloc((size_t)E, sizeof(tf_ffn *));
    if (self->experts == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    self->E = E;
    self->C = C;
    for (Py_ssize_t e = 0; e < E; e++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, e);
        if (!PyObject_TypeCheck(item, st->FeedForward)) {
            tf_type_error(st, "experts[%zd] must be a tfcore.FeedForward, got %s", e,
                          Py_TYPE(item)->tp_name);
            goto fail;
        }
        const tf_ffn *f = (const tf_ffn *)item;
        if (f->up->in_features != C) {
            tf_value_error(st, "experts[%zd] has hidden size %lld, expected %lld (router_weight's)",
                           e, (long long)f->up->in_features, (long long)C);
            goto fail;
        }
        self->experts[e] = (tf_ffn *)Py_NewRef(item);
    }
    Py_DECREF(seq);
    return (PyObject *)self;
fail:
    Py_DECREF(seq);
    Py_DECREF(self);
    return NULL;
}

static int
moe_traverse(tf_moe *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->router);
    for (int64_t e = 0; self->experts != NULL && e < self->E; e++) {
        Py_VISIT(self->experts[e]);
    }
    return 0;
}

static int
moe_clear(tf_moe *self)
{
    Py_CLEAR(self->router);
    for (int64_t e = 0; self->experts != NULL && e < self->E; e++) {
        Py_CLEAR(self->experts[e]);
    }
    return 0;
}

static void
moe_dealloc(tf_moe *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    moe_clear(self);
    PyMem_Free(self->experts);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static int
moe_forward_any(const void *self, const float *x, int64_t M, float *y, tf_post post,
                const float *other, tf_err *err)
{
    return tf_moe_forward(self, x, M, y, post, other, err);
}

static PyObject *
moe_call(tf_moe *self, PyObject *args, PyObject *kwds)
{
    return tf_rows_layer_call((PyObject *)self, args, kwds, self->C, self->C, moe_forward_any,
                              "O|O$O:MixtureOfExperts.__call__");
}

static PyObject *
moe_route(tf_moe *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"x", NULL};
    static const tf_rows_names names = {"x", 1, NPY_MAXDIMS, "hidden_size"};
    PyObject *x_obj, *result = NULL;
    PyArrayObject *idx = NULL, *wt = NULL;
    tf_rows_call c = {0};
    tf_err err = {0};
    tf_state *st = tf_state_of((PyObject *)self);
    int rc;
    if (!TF_PARSE(st, args, kwds, "O:MixtureOfExperts.route", kwlist, &x_obj)) {
        return NULL;
    }
    /* out is only the call protocol's: x is checked like the forward's (rows, finite) */
    if (tf_rows_call_parse(st, x_obj, NULL, Py_None, self->C, self->top_k, &names, &c) < 0) {
        return NULL;
    }
    npy_intp dims[2] = {(npy_intp)c.M, self->top_k};
    idx = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_INT64);
    wt = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_FLOAT32);
    if (idx == NULL || wt == NULL) {
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS tf_threads_begin();
    rc = tf_moe_route(self, PyArray_DATA(c.x), c.M, PyArray_DATA(idx), PyArray_DATA(wt), &err);
    Py_END_ALLOW_THREADS if (rc < 0)
    {
        tf_err_raise(st, &err);
        goto done;
    }
    result = PyTuple_Pack(2, idx, wt);
done:
    Py_XDECREF(idx);
    Py_XDECREF(wt);
    tf_rows_call_release(&c);
    return result;
}

static PyObject *
moe_repr(tf_moe *self)
{
    return PyUnicode_FromFormat(
        "MixtureOfExperts(hidden_size=%lld, num_experts=%lld, top_k=%d, normalize_top_k=%s,\n"
        "  expert=%R)",
        (long long)self->C, (long long)self->E, self->top_k,
        self->normalize_top_k ? "True" : "False", (PyObject *)self->experts[0]);
}

static PyObject *
moe_get_router(tf_moe *self, void *closure)
{
    return Py_NewRef((PyObject *)self->router);
}

static PyObject *
moe_get_experts(tf_moe *self, void *closure)
{
    PyObject *t = PyTuple_New((Py_ssize_t)self->E);
    for (int64_t e = 0; t != NULL && e < self->E; e++) {
        PyTuple_SET_ITEM(t, (Py_ssize_t)e, Py_NewRef((PyObject *)self->experts[e]));
    }
    return t;
}

static PyObject *
moe_get_normalize(tf_moe *self, void *closure)
{
    return PyBool_FromLong(self->normalize_top_k);
}

static PyMemberDef moe_members[] = {
    {"hidden_size", T_LONGLONG, offsetof(tf_moe, C), READONLY, "C"},
    {"num_experts", T_LONGLONG, offsetof(tf_moe, E), READONLY, "E"},
    {"top_k", T_INT, offsetof(tf_moe, top_k), READONLY, "Experts per token."},
    {NULL},
};

static PyGetSetDef moe_getset[] = {
    {"router", (getter)moe_get_router, NULL, "The router (a float32 Linear, (E, C)).", NULL},
    {"experts", (getter)moe_get_experts, NULL, "The experts (a tuple of FeedForward).", NULL},
    {"normalize_top_k", (getter)moe_get_normalize, NULL,
     "True when the top_k weights are divided by their sum (Mixtral).", NULL},
    {NULL},
};

static PyMethodDef moe_methods[] = {
    {"route", (PyCFunction)(void (*)(void))moe_route, METH_VARARGS | METH_KEYWORDS,
     "route($self, x, /)\n--\n\n"
     "The routing of the rows of x (..., hidden_size): (top_k_index, top_k_weights), int64 and\n"
     "float32 arrays of shape (rows, top_k), experts in descending probability (ties: the lower\n"
     "index first)."},
    {NULL},
};

PyDoc_STRVAR(
    moe_doc,
    "MixtureOfExperts(router_weight, experts, *, top_k=2, normalize_top_k=True)\n--\n\n"
    "A sparse mixture-of-experts feed-forward block (Mixtral's ``block_sparse_moe``).\n"
    "router_weight is (num_experts, hidden_size) (kept float32), experts a sequence of\n"
    "tfcore.FeedForward of that hidden size (their dtype, float32 / bfloat16 / int8, as built).\n"
    "Each row goes to the top_k experts of softmax(x @ router_weight.T) (ties: the lower index),\n"
    "weighted by their probabilities, divided by the top_k's sum when normalize_top_k\n"
    "(Mixtral; Jamba does not). Rows are grouped per expert, one GEMM each; experts no row\n"
    "chose are not read.\n"
    "Call: ``moe(x, residual=None, *, out=None)``; x (..., hidden_size) float32.");

static PyType_Slot moe_slots[] = {
    {Py_tp_new, moe_new},
    {Py_tp_dealloc, moe_dealloc},
    {Py_tp_traverse, moe_traverse},
    {Py_tp_clear, moe_clear},
    {Py_tp_call, moe_call},
    {Py_tp_repr, moe_repr},
    {Py_tp_members, moe_members},
    {Py_tp_getset, moe_getset},
    {Py_tp_methods, moe_methods},
    {Py_tp_doc, (void *)moe_doc},
    {0, NULL},
};

PyType_Spec tf_mixture_of_experts_spec = {
    .name = "tfcore.MixtureOfExperts",
    .basicsize = sizeof(tf_moe),
    .flags =
        Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = moe_slots,
};
