/* window_attention.c — the WindowAttention layer of Swin: fused QKV projection, the window
 * kernel (kernels/attention/shifted_window.c), output projection with the residual fused.
 * The functional tfcore.functional.window_attention is functions/window_attention.c.
 *
 * Data flow of a layer call, M = B*Hh*Ww rows (the normed map, image order):
 *   x (M, C) --qkv GEMM--> qkv (M, 3C) = (B, Hh, Ww, 3, H, D)
 *   window kernel: shift, padding, partition, bias and mask by indexing -> ctx (M, C),
 *                  each row at its own image position
 *   ctx --o GEMM (+ residual)--> y (M, C)
 */
#include "layers/window_attention.h"

#include "kernels/attention/shifted_window.h"

#include <math.h>
#include <string.h>

/* Largest window side accepted: N = ws^2 keys per window, N x 64 floats of scratch per
 * thread and (B nW, H, N, N) attention weights when asked for. */
#define MAX_WINDOW 256

/* ------------------------------------------------------------------ shared argument checks */

/* A relative-position bias table ((2 tw - 1)^2, H) float32 as HF stores it -> tw, and the
 * table head-major (H, (2 tw - 1)^2) in a new buffer *out (tf_free). 0 / -1 raised. */
int
tf_window_parse_table(tf_state *st, PyObject *obj, int64_t H, int64_t ws, int64_t *tw, float **out)
{
    PyArrayObject *t = tf_arg_f32(st, obj, "relative_position_bias_table", 2, 2);
    int rc = -1;
    *out = NULL;
    if (t == NULL) {
        return -1;
    }
    const int64_t rows = PyArray_DIM(t, 0);
    int64_t side = (int64_t)llround(sqrt((double)rows));
    if (side * side != rows || side % 2 == 0 || PyArray_DIM(t, 1) != H) {
        char shape[96];
        tf_shape_str(t, shape, sizeof(shape));
        tf_value_error(
            st,
            "relative_position_bias_table has shape %s, expected ((2 w - 1)^2, num_heads=%lld) "
            "for a window side w",
            shape, (long long)H);
        goto done;
    }
    *tw = (side + 1) / 2;
    if (*tw < ws) {
        tf_value_error(st,
                       "relative_position_bias_table covers windows of side %lld, smaller than "
                       "window_size=%lld",
                       (long long)*tw, (long long)ws);
        goto done;
    }
    if (tf_check_finite(st, t, "relative_position_bias_table") < 0) {
        goto done;
    }
    if ((*out = tf_malloc((size_t)(rows * H) * sizeof(float))) == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    const float *src = PyArray_DATA(t);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t h = 0; h < H; h++) {
            (*out)[h * rows + r] = src[r * H + h];
        }
    }
    rc = 0;
done:
    Py_DECREF(t);
    return rc;
}

int
tf_window_parse_scale(tf_state *st, PyObject *obj, int64_t D, float *scale)
{
    if (obj == Py_None) {
        *scale = (float)(1.0 / sqrt((double)D));
        return 0;
    }
    double s = PyFloat_AsDouble(obj);
    if (s == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    if (!isfinite(s)) {
        tf_value_error(st, "scale must be finite, got %g", s);
        return -1;
    }
    *scale = (float)s;
    return 0;
}

int
tf_window_check_size(tf_state *st, long long ws, long long shift)
{
    if (ws < 1 || ws > MAX_WINDOW) {
        tf_value_error(st, "window_size must be in [1, %d], got %lld", MAX_WINDOW, ws);
        return -1;
    }
    if (shift < 0 || shift >= ws) {
        tf_value_error(st, "shift_size must be in [0, window_size=%lld), got %lld", ws, shift);
        return -1;
    }
    return 0;
}

PyArrayObject *
tf_window_weights_new(int64_t B, int64_t Hh, int64_t Ww, int64_t H, int64_t ws)
{
    const int64_t nW = ((Hh + ws - 1) / ws) * ((Ww + ws - 1) / ws);
    npy_intp dims[4] = {(npy_intp)(B * nW), (npy_intp)H, (npy_intp)(ws * ws), (npy_intp)(ws * ws)};
    return (PyArrayObject *)PyArray_SimpleNew(4, dims, NPY_FLOAT32);
}

/* ------------------------------------------------------------------ the layer */

static PyObject *
winattn_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {
        "hidden_size", "num_heads", "window_size", "qkv_weight",
        "o_weight",    "qkv_bias",  "o_bias",      "relative_position_bias_table",
        "shift_size",  "scale",     "dtype",       NULL};
    long long C, H, ws, shift = 0;
    PyObject *qkvw = Py_None, *ow = Py_None, *qkvb = Py_None, *ob = Py_None, *table = Py_None,
             *scale = Py_None, *dtype = Py_None;
    tf_state *st = tf_state_of_type(type);
    tf_winattn *self = NULL;
    if (st == NULL) {
        return NULL;
    }
    if (!TF_PARSE(st, args, kwds, "LLL|$OOOOOLOO:WindowAttention", kwlist, &C, &H, &ws, &qkvw, &ow,
                  &qkvb, &ob, &table, &shift, &scale, &dtype)) {
        return NULL;
    }
    if (C < 1 || H < 1 || C % H != 0) {
        return tf_value_error(st, "hidden_size=%lld must be a positive multiple of num_heads=%lld",
                              C, H);
    }
    if (tf_window_check_size(st, ws, shift) < 0) {
        return NULL;
    }
    if (qkvw == Py_None || ow == Py_None) {
        return tf_value_error(st, "qkv_weight and o_weight are required");
    }
    self = (tf_winattn *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->C = C;
    self->H = H;
    self->D = C / H;
    self->ws = ws;
    self->shift = shift;
    if (tf_window_parse_scale(st, scale, self->D, &self->scale) < 0) {
        goto fail;
    }
    if ((self->qkv = tf_linear_build(st, qkvw, qkvb, TF_ACT_NONE, 0, dtype, "qkv projection")) ==
            NULL ||
        (self->o = tf_linear_build(st, ow, ob, TF_ACT_NONE, 0, dtype, "output projection")) ==
            NULL) {
        goto fail;
    }
    if (self->qkv->in_features != C || self->qkv->out_features != 3 * C) {
        tf_value_error(
            st, "qkv_weight maps %lld -> %lld features, expected %lld -> %lld (hidden_size=%lld)",
            (long long)self->qkv->in_features, (long long)self->qkv->out_features, C, 3 * C, C);
        goto fail;
    }
    if (self->o->in_features != C || self->o->out_features != C) {
        tf_value_error(st, "o_weight maps %lld -> %lld features, expected %lld -> %lld",
                       (long long)self->o->in_features, (long long)self->o->out_features, C, C);
        goto fail;
    }
    if (table != Py_None) {
        if (tf_window_parse_table(st, table, H, ws, &self->tw, &self->table) < 0) {
            goto fail;
        }
        const int64_t N = ws * ws;
        self->bias = tf_malloc((size_t)(H * N * tf_window_lanes(N)) * sizeof(float));
        if (self->bias == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
        tf_window_bias(self->table, H, self->tw, ws, self->bias);
    }
    /* HF pads the normed map with zeros before the projection: a padding token's q, k, v
     * are the projection's bias */
    self->pad = tf_malloc((size_t)(3 * C) * sizeof(float));
    if (self->pad == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    if (self->qkv->bias != NULL) {
        memcpy(self->pad, self->qkv->bias, (size_t)(3 * C) * sizeof(float));
    }
    else {
        memset(self->pad, 0, (size_t)(3 * C) * sizeof(float));
    }
    return (PyObject *)self;
fail:
    Py_DECREF(self);
    return NULL;
}

static int
winattn_traverse(tf_winattn *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->qkv);
    Py_VISIT(self->o);
    return 0;
}

static int
winattn_clear(tf_winattn *self)
{
    Py_CLEAR(self->qkv);
    Py_CLEAR(self->o);
    return 0;
}

static void
winattn_dealloc(tf_winattn *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    winattn_clear(self);
    tf_free(self->table);
    tf_free(self->bias);
    tf_free(self->pad);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

void
tf_winattn_window(const tf_winattn *m, int64_t Hh, int64_t Ww, int always_partition, int64_t *ws,
                  int64_t *shift)
{
    const int64_t side = Hh < Ww ? Hh : Ww;
    *ws = m->ws;
    *shift = m->shift;
    if (!always_partition && side <= m->ws) {
        *ws = side;
        *shift = 0;
    }
}

int
tf_winattn_forward(const tf_winattn *m, const float *x, int64_t B, int64_t Hh, int64_t Ww,
                   int64_t ws, int64_t shift, float *y, tf_post post, const float *other,
                   float *weights, tf_err *err)
{
    const int64_t M = B * Hh * Ww, C = m->C;
    float *qkv = tf_malloc((size_t)M * (size_t)(3 * C) * sizeof(float));
    float *ctx = tf_malloc((size_t)M * (size_t)C * sizeof(float));
    int rc = -1;
    if (qkv == NULL || ctx == NULL) {
        tf_err_set(err, TF_ERR_MEMORY, "out of memory for window attention activations (%lld rows)",
                   (long long)M);
        goto done;
    }
    if (tf_linear_forward(m->qkv, x, M, qkv, TF_POST_NONE, NULL, err) < 0) {
        goto done;
    }
    tf_window_args a = {
        .qkv = qkv,
        .pad = m->pad,
        .out = ctx,
        .B = B,
        .Hh = Hh,
        .Ww = Ww,
        .H = m->H,
        .D = m->D,
        .ws = ws,
        .shift = shift,
        .region_mask = -100.0f, /* HF's SwinLayer */
        .table = m->table,
        .tw = m->tw,
        .bias = ws == m->ws ? m->bias : NULL, /* a clipped window builds its own */
        .scale = m->scale,
        .weights = weights,
    };
    if (tf_window_attention(&a, err) < 0) {
        goto done;
    }
    if (tf_linear_forward(m->o, ctx, M, y, post, other, err) < 0) {
        goto done;
    }
    rc = 0;
done:
    tf_free(qkv);
    tf_free(ctx);
    return rc;
}

const tf_rows_names tf_map_names = {"hidden_states", 4, 4, "hidden_size"};

static PyObject *
winattn_call(tf_winattn *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"hidden_states",    "residual", "output_attentions",
                             "always_partition", "out",      NULL};
    PyObject *x_obj, *res_obj = Py_None, *out_obj = Py_None, *result = NULL;
    int output_attentions = 0, always_partition = 0;
    PyArrayObject *weights = NULL;
    tf_rows_call rows = {0};
    tf_err err = {0};
    tf_state *st = tf_state_of((PyObject *)self);
    if (!TF_PARSE(st, args, kwds, "O|O$ppO:WindowAttention.__call__", kwlist, &x_obj, &res_obj,
                  &output_attentions, &always_partition, &out_obj)) {
        return NULL;
    }
    if (tf_rows_call_parse(st, x_obj, res_obj, out_obj, self->C, self->C, &tf_map_names, &rows) <
        0) {
        goto done;
    }
    const int64_t B = PyArray_DIM(rows.x, 0), Hh = PyArray_DIM(rows.x, 1),
                  Ww = PyArray_DIM(rows.x, 2);
    int64_t ws, shift;
    tf_winattn_window(self, Hh, Ww, always_partition, &ws, &shift);
    if (output_attentions && (weights = tf_window_weights_new(B, Hh, Ww, self->H, ws)) == NULL) {
        goto done;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS tf_threads_begin();
    rc =
        tf_winattn_forward(self, PyArray_DATA(rows.x), B, Hh, Ww, ws, shift, PyArray_DATA(rows.out),
                           rows.post, rows.other, weights ? PyArray_DATA(weights) : NULL, &err);
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
winattn_repr(tf_winattn *self)
{
    return PyUnicode_FromFormat(
        "WindowAttention(hidden_size=%lld, num_heads=%lld, window_size=%lld, "
        "shift_size=%lld, bias_table=%s)",
        (long long)self->C, (long long)self->H, (long long)self->ws, (long long)self->shift,
        self->table ? "True" : "False");
}

static PyObject *
winattn_get_linear(tf_winattn *self, void *closure)
{
    return Py_NewRef(*(PyObject **)((char *)self + (Py_ssize_t)closure));
}

static PyObject *
winattn_get_scale(tf_winattn *self, void *closure)
{
    return PyFloat_FromDouble(self->scale);
}

static PyMemberDef winattn_members[] = {
    {"hidden_size", T_LONGLONG, offsetof(tf_winattn, C), READONLY, "C"},
    {"num_heads", T_LONGLONG, offsetof(tf_winattn, H), READONLY, "H"},
    {"head_dim", T_LONGLONG, offsetof(tf_winattn, D), READONLY, "D"},
    {"window_size", T_LONGLONG, offsetof(tf_winattn, ws), READONLY,
     "Window side (before clipping)."},
    {"shift_size", T_LONGLONG, offsetof(tf_winattn, shift), READONLY,
     "Cyclic shift (before clipping)."},
    {NULL},
};

static PyGetSetDef winattn_getset[] = {
    {"qkv_proj", (getter)winattn_get_linear, NULL, "Fused q/k/v projection.",
     (void *)offsetof(tf_winattn, qkv)},
    {"o_proj", (getter)winattn_get_linear, NULL, "Output projection.",
     (void *)offsetof(tf_winattn, o)},
    {"scale", (getter)winattn_get_scale, NULL, "Softmax scale applied to q·k.", NULL},
    {NULL},
};

PyDoc_STRVAR(
    winattn_doc,
    "WindowAttention(hidden_size, num_heads, window_size, *, qkv_weight, o_weight, qkv_bias=None,\n"
    "                o_bias=None, relative_position_bias_table=None, shift_size=0, scale=None,\n"
    "                dtype='float32')\n--\n\n"
    "Swin's (shifted) window attention layer: fused q/k/v projection, attention within\n"
    "window_size x window_size windows of the feature map (cyclically shifted by shift_size),\n"
    "output projection. The shift, padding, window partition and its reverse, the\n"
    "relative-position bias and the shifted-window mask are all indexing inside one kernel:\n"
    "no rolled, padded or partitioned copy of the map is made.\n\n"
    "qkv_weight (3 C, C) stacks HF's query, key and value weights; qkv_bias (3 C,) likewise.\n"
    "relative_position_bias_table is HF's ((2 w - 1)^2, num_heads) with w >= window_size.\n"
    "dtype 'bfloat16' or 'int8' stores the projections so (see Linear).\n\n"
    "Call: ``attn(hidden_states, residual=None, *, output_attentions=False,\n"
    "always_partition=False, out=None)``. hidden_states (B, Hh, Ww, C) float32 is the normed\n"
    "map; returns (B, Hh, Ww, C) (+ residual, added inside the output GEMM), or (output,\n"
    "attentions) with attentions (B nW, num_heads, N, N) in HF's window order, N = window^2.\n"
    "Like HF's SwinLayer, a map with min(Hh, Ww) <= window_size is attended as windows of side\n"
    "min(Hh, Ww) without shift, unless always_partition=True. The map is padded (virtually)\n"
    "to multiples of the window with zero tokens, as HF pads the normed map.");

static PyType_Slot winattn_slots[] = {
    {Py_tp_new, winattn_new},           {Py_tp_dealloc, winattn_dealloc},
    {Py_tp_traverse, winattn_traverse}, {Py_tp_clear, winattn_clear},
    {Py_tp_call, winattn_call},         {Py_tp_repr, winattn_repr},
    {Py_tp_members, winattn_members},   {Py_tp_getset, winattn_getset},
    {Py_tp_doc, (void *)winattn_doc},   {0, NULL},
};

PyType_Spec tf_window_attention_spec = {
    .name = "tfcore.WindowAttention",
    .basicsize = sizeof(tf_winattn),
    .flags =
        Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = winattn_slots,
};

int
tf_winattn_check(tf_state *st, PyObject *obj)
{
    return PyObject_TypeCheck(obj, st->WindowAttention);
}
