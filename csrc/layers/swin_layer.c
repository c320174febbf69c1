/* swin_layer.c — SwinLayer: HF's SwinLayer (pre-norm window attention and MLP, residuals
 * fused into the GEMMs that precede them) as one C call without the GIL.
 *
 * x, y are (B, Hh, Ww, C) maps, M = B Hh Ww rows in image order:
 *   t = norm1(x);  h = x + WindowAttention(t);  t = norm2(h);  y = h + ffn(t)
 * Two (M, C) temporaries; the input is checked once (not again by each part).
 */
#include "layers/feed_forward.h"
#include "layers/norm.h"
#include "layers/window_attention.h"

typedef struct {
    PyObject_HEAD tf_winattn *attn;
    tf_ffn *ffn;
    PyObject *norm1, *norm2; /* LayerNorm / RMSNorm objects */
    int64_t C;
} tf_swin_layer;

/* x, y are (B, Hh, Ww, C); weights (B nW, H, N, N) or NULL. */
static int
swin_layer_forward(const tf_swin_layer *l, const float *x, int64_t B, int64_t Hh, int64_t Ww,
                   int64_t ws, int64_t shift, float *y, float *weights, tf_err *err)
{
    const int64_t M = B * Hh * Ww, C = l->C;
    float *t = tf_malloc((size_t)M * (size_t)C * sizeof(float));
    float *h = tf_malloc((size_t)M * (size_t)C * sizeof(float));
    int rc = -1;
    if (t == NULL || h == NULL) {
        tf_err_set(err, TF_ERR_MEMORY, "out of memory for a (%lld, %lld) layer activation",
                   (long long)M, (long long)C);
        goto done;
    }
    tf_norm_apply(l->norm1, x, NULL, NULL, t, M);
    if (tf_winattn_forward(l->attn, t, B, Hh, Ww, ws, shift, h, TF_POST_ADD, x, weights, err) < 0) {
        goto done;
    }
    tf_norm_apply(l->norm2, h, NULL, NULL, t, M);
    if (tf_ffn_forward(l->ffn, t, M, y, TF_POST_ADD, h, err) < 0) {
        goto done;
    }
    rc = 0;
done:
    tf_free(t);
    tf_free(h);
    return rc;
}

static PyObject *
swin_layer_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"attention", "feed_forward", "norm1", "norm2", NULL};
    PyObject *attn, *ffn, *n1, *n2;
    tf_state *st = tf_state_of_type(type);
    tf_swin_layer *self = NULL;
    if (st == NULL) {
        return NULL;
    }
    if (!TF_PARSE(st, args, kwds, "OOOO:SwinLayer", kwlist, &attn, &ffn, &n1, &n2)) {
        return NULL;
    }
    if (!tf_winattn_check(st, attn)) {
        return tf_type_error(st, "attention must be a tfcore.WindowAttention, got %s",
                             Py_TYPE(attn)->tp_name);
    }
    if (!PyObject_TypeCheck(ffn, st->FeedForward)) {
        return tf_type_error(st, "feed_forward must be a tfcore.FeedForward, got %s",
                             Py_TYPE(ffn)->tp_name);
    }
    const int64_t C = ((tf_winattn *)attn)->C;
    const tf_ffn *f = (const tf_ffn *)ffn;
    if (f->up->in_features != C || f->down->out_features != C) {
        return tf_value_error(
            st, "feed_forward maps %lld -> %lld features, expected hidden_size=%lld",
            (long long)f->up->in_features, (long long)f->down->out_features, (long long)C);
    }
    if (tf_norm_check_arg(st, n1, "norm1", C) < 0 || tf_norm_check_arg(st, n2, "norm2", C) < 0) {
        return NULL;
    }
    self = (tf_swin_layer *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->attn = (tf_winattn *)Py_NewRef(attn);
    self->ffn = (tf_ffn *)Py_NewRef(ffn);
    self->norm1 = Py_NewRef(n1);
    self->norm2 = Py_NewRef(n2);
    self->C = C;
    return (PyObject *)self;
}

static int
swin_layer_traverse(tf_swin_layer *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->attn);
    Py_VISIT(self->ffn);
    Py_VISIT(self->norm1);
    Py_VISIT(self->norm2);
    return 0;
}

static int
swin_layer_clear(tf_swin_layer *self)
{
    Py_CLEAR(self->attn);
    Py_CLEAR(self->ffn);
    Py_CLEAR(self->norm1);
    Py_CLEAR(self->norm2);
    return 0;
}

static void
swin_layer_dealloc(tf_swin_layer *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    swin_layer_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *
swin_layer_call(tf_swin_layer *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"hidden_states", "output_attentions", "always_partition", "out", NULL};
    PyObject *x_obj, *out_obj = Py_None, *result = NULL;
    int output_attentions = 0, always_partition = 0;
    PyArrayObject *weights = NULL;
    tf_rows_call rows = {0};
    tf_err err = {0};
    tf_state *st = tf_state_of((PyObject *)self);
    if (!TF_PARSE(st, args, kwds, "O|$ppO:SwinLayer.__call__", kwlist, &x_obj, &output_attentions,
                  &always_partition, &out_obj)) {
        return NULL;
    }
    if (tf_rows_call_parse(st, x_obj, NULL, out_obj, self->C, self->C, &tf_map_names, &rows) < 0) {
        goto done;
    }
    const int64_t B = PyArray_DIM(rows.x, 0), Hh = PyArray_DIM(rows.x, 1),
                  Ww = PyArray_DIM(rows.x, 2);
    int64_t ws, shift;
    tf_winattn_window(self->attn, Hh, Ww, always_partition, &ws, &shift);
    if (output_attentions &&
        (weights = tf_window_weights_new(B, Hh, Ww, self->attn->H, ws)) == NULL) {
        goto done;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS tf_threads_begin();
    rc = swin_layer_forward(self, PyArray_DATA(rows.x), B, Hh, Ww, ws, shift,
                            PyArray_DATA(rows.out), weights ? PyArray_DATA(weights) : NULL, &err);
    Py_END_ALLOW_THREADS if (rc < 0)
    {
        tf_err_raise(st, &err);
        goto done;
    }
    result = weights ? PyTuple_Pack(2, rows.out, weights) : Py_NewRef(rows.out);
done:
    Py_XDECREF(weights);
    tf_rows_call_release(&rows);
    return result;
}

static PyObject *
swin_layer_repr(tf_swin_layer *self)
{
    return PyUnicode_FromFormat(
        "SwinLayer(\n  attention=%R,\n  feed_forward=%R,\n  norm1=%R, norm2=%R)", self->attn,
        self->ffn, self->norm1, self->norm2);
}

static PyObject *
swin_layer_get(tf_swin_layer *self, void *closure)
{
    return Py_NewRef(*(PyObject **)((char *)self + (Py_ssize_t)closure));
}

static PyMemberDef swin_layer_members[] = {
    {"hidden_size", T_LONGLONG, offsetof(tf_swin_layer, C), READONLY, "C"},
    {NULL},
};

static PyGetSetDef swin_layer_getset[] = {
    {"attention", (getter)swin_layer_get, NULL, "Window attention.",
     (void *)offsetof(tf_swin_layer, attn)},
    {"feed_forward", (getter)swin_layer_get, NULL, "Feed-forward layer.",
     (void *)offsetof(tf_swin_layer, ffn)},
    {"norm1", (getter)swin_layer_get, NULL, "Norm before attention.",
     (void *)offsetof(tf_swin_layer, norm1)},
    {"norm2", (getter)swin_layer_get, NULL, "Norm before the feed-forward.",
     (void *)offsetof(tf_swin_layer, norm2)},
    {NULL},
};

PyDoc_STRVAR(
    swin_layer_doc,
    "SwinLayer(attention, feed_forward, norm1, norm2)\n--\n\n"
    "One Swin Transformer layer (HF's SwinLayer) from tfcore layers, run as one C call:\n"
    "``h = x + attention(norm1(x)); y = h + feed_forward(norm2(h))`` with attention a\n"
    "tfcore.WindowAttention (its window clipping and shift apply) and the residuals added\n"
    "inside the GEMMs.\n\n"
    "Call: ``layer(hidden_states, *, output_attentions=False, always_partition=False,\n"
    "out=None)``: hidden_states (B, Hh, Ww, C) float32; returns (B, Hh, Ww, C), or (output,\n"
    "attentions) with the window attentions as WindowAttention returns them.");

static PyType_Slot swin_layer_slots[] = {
    {Py_tp_new, swin_layer_new},           {Py_tp_dealloc, swin_layer_dealloc},
    {Py_tp_traverse, swin_layer_traverse}, {Py_tp_clear, swin_layer_clear},
    {Py_tp_call, swin_layer_call},         {Py_tp_repr, swin_layer_repr},
    {Py_tp_members, swin_layer_members},   {Py_tp_getset, swin_layer_getset},
    {Py_tp_doc, (void *)swin_layer_doc},   {0, NULL},
};

PyType_Spec tf_swin_layer_spec = {
    .name = "tfcore.SwinLayer",
    .basicsize = sizeof(tf_swin_layer),
    .flags =
        Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = swin_layer_slots,
};
