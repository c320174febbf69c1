/* linear_attention.c — tfcore.functional.linear_attention: argument checking for the
 * linear-attention kernel (kernels/attention/linear_attention.c). */
#include "tfcore.h"
#include "kernels/attention/linear_attention.h"

#include <math.h>
#include <string.h>

/* A C-contiguous float32 array of exactly the given dims (new ref or NULL); dims < 0 are
 * free. what describes the axes for the message. finite: also refuse NaN / Inf here (query,
 * key, value and gate are instead checked by the kernel as it reads them, see bad_input). */
static PyArrayObject *
exact(tf_state *st, PyObject *obj, const char *name, int ndim, const int64_t *want,
      const char *what, int finite)
{
    PyArrayObject *a = tf_arg_f32(st, obj, name, ndim, ndim);
    if (a == NULL) {
        return NULL;
    }
    for (int i = 0; i < ndim; i++) {
        if (want[i] >= 0 && PyArray_DIM(a, i) != want[i]) {
            char shape[96], exp[96];
            int n = snprintf(exp, sizeof(exp), "(");
            for (int j = 0; j < ndim && n < (int)sizeof(exp); j++) {
                n += snprintf(exp + n, sizeof(exp) - (size_t)n, j ? ", %lld" : "%lld",
                              (long long)want[j]);
            }
            snprintf(exp + n, sizeof(exp) - (size_t)(n < (int)sizeof(exp) ? n : 0), ")");
            tf_shape_str(a, shape, sizeof(shape));
            tf_value_error(st, "%s has shape %s, expected %s = %s", name, shape, what, exp);
            Py_DECREF(a);
            return NULL;
        }
    }
    if (tf_check_nonempty(st, a, name) < 0 || (finite && tf_check_finite(st, a, name) < 0)) {
        Py_DECREF(a);
        return NULL;
    }
    return a;
}

typedef struct {
    PyArrayObject *q, *k, *v, *gate, *decay, *s0, *z0, *out, *s_out, *z_out, *weights;
} la_arrays;

/* The kernel flagged a bad input row (a NaN or Inf in query, key, value or gate, or a gate
 * > 0): rescans in argument order for the message a check before the call would give. */
static void
bad_input(tf_state *st, const la_arrays *arr)
{
    if (tf_check_finite(st, arr->q, "query") < 0 || tf_check_finite(st, arr->k, "key") < 0 ||
        tf_check_finite(st, arr->v, "value") < 0 ||
        (arr->gate != NULL && tf_check_finite(st, arr->gate, "gate") < 0)) {
        return;
    }
    if (arr->gate != NULL) {
        const float *g = PyArray_DATA(arr->gate);
        const int64_t ng = PyArray_SIZE(arr->gate);
        for (int64_t i = 0; i < ng; i++) {
            if (g[i] > 0.0f) {
                tf_value_error(st,
                               "gate holds %g > 0 at flat index %lld: gates are log-decays and "
                               "must be <= 0 (e.g. logsigmoid(x))",
                               (double)g[i], (long long)i);
                return;
            }
        }
    }
    tf_value_error(st, "linear_attention: an input row was refused but no bad value was found "
                       "on rescan (was an input modified during the call?)");
}

static PyObject *
linear_attention(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {
        "query",         "key",          "value",          "decay", "gate",
        "feature_map",   "normalize",    "scale",          "mode",  "chunk_size",
        "initial_state", "return_state", "return_weights", "out",   NULL};
    PyObject *q_obj, *k_obj, *v_obj, *decay_obj = Py_None, *gate_obj = Py_None, *fm_obj = Py_None,
                                     *scale_obj = Py_None, *init_obj = Py_None, *out_obj = Py_None,
                                     *result = NULL;
    const char *mode = "chunkwise";
    long long chunk = 64;
    int normalize = 0, return_state = 0, return_weights = 0;
    la_arrays arr = {0};
    float *log_decay = NULL;
    tf_la_args a;
    tf_err err = {0};
    tf_state *st = tf_state_of_module(module);
    memset(&a, 0, sizeof(a));
    if (!TF_PARSE(st, args, kwds, "OOO|$OOOpOsLOppO:linear_attention", kwlist, &q_obj, &k_obj,
                  &v_obj, &decay_obj, &gate_obj, &fm_obj, &normalize, &scale_obj, &mode, &chunk,
                  &init_obj, &return_state, &return_weights, &out_obj)) {
        return NULL;
    }
    const int64_t any4[4] = {-1, -1, -1, -1};
    if ((arr.q = exact(st, q_obj, "query", 4, any4, "(batch, heads, length, key_dim)", 0)) ==
        NULL) {
        goto done;
    }
    a.B = PyArray_DIM(arr.q, 0);
    a.H = PyArray_DIM(arr.q, 1);
    a.L = PyArray_DIM(arr.q, 2);
    a.Dk = PyArray_DIM(arr.q, 3);
    const int64_t kshape[4] = {a.B, a.H, a.L, a.Dk}, vshape[4] = {a.B, a.H, a.L, -1};
    if ((arr.k = exact(st, k_obj, "key", 4, kshape, "query's (batch, heads, length, key_dim)",
                       0)) == NULL ||
        (arr.v = exact(st, v_obj, "value", 4, vshape, "(batch, heads, length, value_dim)", 0)) ==
            NULL) {
        goto done;
    }
    a.Dv = PyArray_DIM(arr.v, 3);
    if (strcmp(mode, "chunkwise") == 0) {
        a.mode = TF_LA_CHUNKWISE;
    }
    else if (strcmp(mode, "recurrent") == 0) {
        a.mode = TF_LA_RECURRENT;
    }
    else if (strcmp(mode, "parallel") == 0) {
        a.mode = TF_LA_PARALLEL;
    }
    else {
        tf_value_error(st, "mode must be 'chunkwise', 'recurrent' or 'parallel', got '%s'", mode);
        goto done;
    }
    if (chunk < 1 || chunk > (1 << 16)) {
        tf_value_error(st, "chunk_size must be in [1, 65536], got %lld", chunk);
        goto done;
    }
    a.chunk = chunk;
    if (fm_obj == Py_None) {
        a.feature_map = TF_LA_IDENTITY;
    }
    else {
        const char *fm = PyUnicode_Check(fm_obj) ? PyUnicode_AsUTF8(fm_obj) : NULL;
        if (fm == NULL) {
            PyErr_Clear();
            tf_type_error(st, "feature_map must be None, 'elu+1' or 'relu', got %s",
                          Py_TYPE(fm_obj)->tp_name);
            goto done;
        }
        if (strcmp(fm, "elu+1") == 0) {
            a.feature_map = TF_LA_ELU1;
        }
        else if (strcmp(fm, "relu") == 0) {
            a.feature_map = TF_LA_RELU;
        }
        else if (strcmp(fm, "identity") == 0) {
            a.feature_map = TF_LA_IDENTITY;
        }
        else {
            tf_value_error(st,
                           "feature_map must be None, 'elu+1' or 'relu', got '%s' (learned maps "
                           "such as Hedgehog or Performer: map query and key yourself)",
                           fm);
            goto done;
        }
    }
    if (scale_obj == Py_None) {
        a.scale = (float)(1.0 / sqrt((double)a.Dk));
    }
    else {
        double s = PyFloat_AsDouble(scale_obj);
        if (s == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            tf_type_error(st, "scale must be a float or None, got %s", Py_TYPE(scale_obj)->tp_name);
            goto done;
        }
        if (!isfinite(s)) {
            tf_value_error(st, "scale must be finite, got %g", s);
            goto done;
        }
        a.scale = (float)s;
    }
    if (decay_obj != Py_None && gate_obj != Py_None) {
        tf_value_error(st, "pass decay (per head) or gate (per token and channel), not both");
        goto done;
    }
    if (decay_obj != Py_None) {
        arr.decay = (PyArrayObject *)PyArray_FROMANY(decay_obj, NPY_FLOAT64, 0, 1,
                                                     NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED);
        if (arr.decay == NULL) {
            PyErr_Clear();
            tf_type_error(st, "decay must be a sequence of %lld floats (one per head), got %s",
                          (long long)a.H, Py_TYPE(decay_obj)->tp_name);
            goto done;
        }
        if (PyArray_NDIM(arr.decay) != 1 || PyArray_DIM(arr.decay, 0) != a.H) {
            tf_value_error(st, "decay must have shape (heads,) = (%lld,), got %lld values",
                           (long long)a.H, (long long)PyArray_SIZE(arr.decay));
            goto done;
        }
        if ((log_decay = PyMem_Malloc((size_t)a.H * sizeof(float))) == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        const double *d = PyArray_DATA(arr.decay);
        for (int64_t h = 0; h < a.H; h++) {
            if (!(d[h] > 0.0 && d[h] <= 1.0)) {
                tf_value_error(st, "decay[%lld] = %g is outside (0, 1]", (long long)h, d[h]);
                goto done;
            }
            log_decay[h] = (float)log(d[h]);
        }
        a.log_decay = log_decay;
    }
    if (gate_obj != Py_None) {
        if ((arr.gate = exact(st, gate_obj, "gate", 4, kshape,
                              "query's (batch, heads, length, key_dim)", 0)) == NULL) {
            goto done;
        }
        a.gate = PyArray_DATA(arr.gate); /* <= 0: checked by the kernel (bad_input) */
    }
    const int64_t sshape[4] = {a.B, a.H, a.Dk, a.Dv}, zshape[3] = {a.B, a.H, a.Dk};
    if (init_obj != Py_None) {
        PyObject *s_obj = init_obj, *z_obj = NULL;
        if (normalize) {
            if (!PyTuple_Check(init_obj) || PyTuple_GET_SIZE(init_obj) != 2) {
                tf_type_error(st, "with normalize=True, initial_state must be the pair (state, z) "
                                  "that return_state gives");
                goto done;
            }
            s_obj = PyTuple_GET_ITEM(init_obj, 0);
            z_obj = PyTuple_GET_ITEM(init_obj, 1);
        }
        if ((arr.s0 = exact(st, s_obj, "initial_state", 4, sshape,
                            "(batch, heads, key_dim, value_dim)", 1)) == NULL ||
            (z_obj != NULL && (arr.z0 = exact(st, z_obj, "initial_state z", 3, zshape,
                                              "(batch, heads, key_dim)", 1)) == NULL)) {
            goto done;
        }
        a.s0 = PyArray_DATA(arr.s0);
        a.z0 = arr.z0 ? PyArray_DATA(arr.z0) : NULL;
    }
    if (return_weights && a.mode != TF_LA_PARALLEL) {
        tf_value_error(st, "return_weights needs mode='parallel' (the other modes never form "
                           "the (L, L) weights)");
        goto done;
    }
    npy_intp odims[4] = {(npy_intp)a.B, (npy_intp)a.H, (npy_intp)a.L, (npy_intp)a.Dv};
    /* out=: the caller's (batch, heads, L, Dv) buffer, written whole (never read), so a
     * repeated call skips the OS zeroing the pages of a fresh large result */
    if ((arr.out = tf_out_f32(st, out_obj, 4, odims)) == NULL ||
        tf_check_no_overlap(st, arr.out, arr.q, "query") < 0 ||
        tf_check_no_overlap(st, arr.out, arr.k, "key") < 0 ||
        tf_check_no_overlap(st, arr.out, arr.v, "value") < 0 ||
        (arr.gate != NULL && tf_check_no_overlap(st, arr.out, arr.gate, "gate") < 0) ||
        (arr.s0 != NULL && tf_check_no_overlap(st, arr.out, arr.s0, "initial_state") < 0) ||
        (arr.z0 != NULL && tf_check_no_overlap(st, arr.out, arr.z0, "initial_state z") < 0)) {
        goto done;
    }
    if (return_weights) {
        const double bytes = 4.0 * (double)a.B * (double)a.H * (double)a.L * (double)a.L;
        npy_intp wd[4] = {(npy_intp)a.B, (npy_intp)a.H, (npy_intp)a.L, (npy_intp)a.L};
        if (bytes > 0x1p36 ||
            (arr.weights = (PyArrayObject *)PyArray_SimpleNew(4, wd, NPY_FLOAT32)) == NULL) {
            PyErr_Clear();
            tf_value_error(st,
                           "return_weights would need %.3g bytes for (%lld, %lld, %lld, %lld) "
                           "weights (limit 64 GiB, or not allocatable)",
                           bytes, (long long)a.B, (long long)a.H, (long long)a.L, (long long)a.L);
            goto done;
        }
        a.weights = PyArray_DATA(arr.weights);
    }
    if (return_state) {
        npy_intp sd[4] = {(npy_intp)a.B, (npy_intp)a.H, (npy_intp)a.Dk, (npy_intp)a.Dv};
        npy_intp zd[3] = {(npy_intp)a.B, (npy_intp)a.H, (npy_intp)a.Dk};
        if ((arr.s_out = (PyArrayObject *)PyArray_SimpleNew(4, sd, NPY_FLOAT32)) == NULL ||
            (normalize &&
             (arr.z_out = (PyArrayObject *)PyArray_SimpleNew(3, zd, NPY_FLOAT32)) == NULL)) {
            goto done;
        }
        a.s_out = PyArray_DATA(arr.s_out);
        a.z_out = arr.z_out ? PyArray_DATA(arr.z_out) : NULL;
    }
    if (a.mode == TF_LA_PARALLEL && 4.0 * (double)a.L * (double)a.Dk * 2.0 > 0x1p34) {
        tf_value_error(st,
                       "mode='parallel' with length %lld would need over 16 GiB of workspace "
                       "per thread; use mode='chunkwise'",
                       (long long)a.L);
        goto done;
    }
    a.q = PyArray_DATA(arr.q);
    a.k = PyArray_DATA(arr.k);
    a.v = PyArray_DATA(arr.v);
    a.out = PyArray_DATA(arr.out);
    a.normalize = normalize;
    int rc, bad = 0;
    a.bad = &bad;
    Py_BEGIN_ALLOW_THREADS tf_threads_begin();
    rc = tf_linear_attention(&a, &err);
    Py_END_ALLOW_THREADS if (rc < 0)
    {
        tf_err_raise(st, &err);
        goto done;
    }
    if (bad) {
        bad_input(st, &arr);
        goto done;
    }
    {
        PyObject *state = NULL;
        if (return_state) {
            state = normalize ? PyTuple_Pack(2, arr.s_out, arr.z_out) : Py_NewRef(arr.s_out);
            if (state == NULL) {
                goto done;
            }
        }
        if (return_weights && return_state) {
            result = PyTuple_Pack(3, arr.out, arr.weights, state);
        }
        else if (return_weights) {
            result = PyTuple_Pack(2, arr.out, arr.weights);
        }
        else if (return_state) {
            result = PyTuple_Pack(2, arr.out, state);
        }
        else {
            result = Py_NewRef(arr.out);
        }
        Py_XDECREF(state);
    }
done:
    Py_XDECREF(arr.q);
    Py_XDECREF(arr.k);
    Py_XDECREF(arr.v);
    Py_XDECREF(arr.gate);
    Py_XDECREF(arr.decay);
    Py_XDECREF(arr.s0);
    Py_XDECREF(arr.z0);
    Py_XDECREF(arr.out);
    Py_XDECREF(arr.s_out);
    Py_XDECREF(arr.z_out);
    Py_XDECREF(arr.weights);
    PyMem_Free(log_decay);
    return result;
}

PyDoc_STRVAR(
    linear_attention_doc,
    "linear_attention($module, query, key, value, *, decay=None, gate=None, feature_map=None,\n"
    "                 normalize=False, scale=None, mode='chunkwise', chunk_size=64,\n"
    "                 initial_state=None, return_state=False, return_weights=False, out=None)\n"
    "--\n\n"
    "Causal linear attention with decay (RetNet retention, Gated Linear Attention, kernelized\n"
    "linear attention). query/key (batch, heads, L, Dk), value (batch, heads, L, Dv), float32\n"
    "C-contiguous; returns (batch, heads, L, Dv). With phi the feature map (None = identity,\n"
    "'elu+1', 'relu'; learned maps: pass mapped query/key) and scale (default Dk ** -0.5):\n\n"
    "    S_t = diag(a_t) S_{t-1} + phi(k_t)^T v_t      (S_0 = initial_state or 0)\n"
    "    o_t = scale * phi(q_t) S_t\n\n"
    "a_t = decay[h] (per-head, in (0, 1]), exp(gate[b, h, t, :]) (gate (batch, heads, L, Dk)\n"
    "log-space, <= 0) or 1. normalize=True divides o_t by scale * phi(q_t) . z_t with\n"
    "z_t = a_t * z_{t-1} + phi(k_t); the state is then the pair (S, z).\n"
    "mode='recurrent' (one step at a time: decoding), 'chunkwise' (chunks of chunk_size rows:\n"
    "prefill) and 'parallel' (quadratic) agree. return_state=True also returns the final\n"
    "state (batch, heads, Dk, Dv) (a (S, z) pair with normalize), which initial_state takes to\n"
    "continue the sequence; return_weights=True (parallel mode) also returns the (batch, heads,\n"
    "L, L) weights W with o = W v + (the initial state's part). out: a float32 C-contiguous\n"
    "(batch, heads, L, Dv) array to write the result into (not overlapping the inputs; reusing\n"
    "one across calls saves the OS zeroing a fresh large result). Result: out, or the tuple\n"
    "(out[, weights][, state]).");

PyMethodDef tf_linear_attention_methods[] = {
    {"linear_attention", (PyCFunction)(void (*)(void))linear_attention,
     METH_VARARGS | METH_KEYWORDS, linear_attention_doc},
    {NULL},
};
