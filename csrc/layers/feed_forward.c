/* feed_forward.c — FeedForward: the transformer MLP, plain or gated, as two or three fused GEMMs.
 *
 * The activation is an eltwise post-op of the first GEMM, and the gating product
 * act(gate(x)) * up(x) is a binary-mul post-op of the up GEMM, so the (M, F) hidden
 * activations are written once and read once; the residual add is a post-op of down.
 */
#include "layers/feed_forward.h"

int
tf_ffn_forward(const tf_ffn *f, const float *x, int64_t M, float *y, tf_post post,
               const float *other, tf_err *err)
{
    const int64_t F = f->up->out_features;
    float *hidden = NULL, *gated = NULL;
    int rc = -1;
    /* hidden is (M, F): act(up(x)), or act(gate(x)) * up(x) */
    hidden = tf_malloc((size_t)M * (size_t)F * sizeof(float));
    if (hidden == NULL) {
        tf_err_set(err, TF_ERR_MEMORY,
                   "out of memory for the (%lld, %lld) feed-forward hidden state", (long long)M,
                   (long long)F);
        goto done;
    }
    if (f->gate != NULL) {
        gated = tf_malloc((size_t)M * (size_t)F * sizeof(float));
        if (gated == NULL) {
            tf_err_set(err, TF_ERR_MEMORY, "out of memory for the feed-forward gate");
            goto done;
        }
        if (tf_linear_forward(f->gate, x, M, gated, TF_POST_NONE, NULL, err) < 0 ||
            tf_linear_forward(f->up, x, M, hidden, TF_POST_MUL, gated, err) < 0) {
            goto done;
        }
    }
    else if (tf_linear_forward(f->up, x, M, hidden, TF_POST_NONE, NULL, err) < 0) {
        goto done;
    }
    if (tf_linear_forward(f->down, hidden, M, y, post, other, err) < 0) {
        goto done;
    }
    rc = 0;
done:
    tf_free(hidden);
    tf_free(gated);
    return rc;
}

static PyObject *
ffn_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"up_weight", "down_weight", "up_bias",    "down_bias", "gate_weight",
                             "gate_bias", "activation",  "transposed", "dtype",     NULL};
    PyObject *up_w, *down_w, *up_b = Py_None, *down_b = Py_None, *gate_w = Py_None,
                             *gate_b = Py_None, *act_obj = NULL, *dtype = Py_None;
    int transposed = 0, act = TF_ACT_GELU;
    tf_state *st = tf_state_of_type(type);
    tf_ffn *self = NULL;
    if (st == NULL) {
        return NULL;
    }
    if (!TF_PARSE(st, args, kwds, "OO|$OOOOOpO:FeedForward", kwlist, &up_w, &down_w, &up_b, &down_b,
                  &gate_w, &gate_b, &act_obj, &transposed, &dtype)) {
        return NULL;
    }
    if (act_obj != NULL && tf_parse_activation(st, act_obj, &act) < 0) {
        return NULL;
    }
    int gated = gate_w != Py_None;
    if (!gated && gate_b != Py_None) {
        return tf_value_error(st, "gate_bias given without gate_weight");
    }
    self = (tf_ffn *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->act = act;
    if ((self->up = tf_linear_build(st, up_w, up_b, gated ? TF_ACT_NONE : act, transposed, dtype,
                                    "up projection")) == NULL) {
        goto fail;
    }
    if (gated && (self->gate = tf_linear_build(st, gate_w, gate_b, act, transposed, dtype,
                                               "gate projection")) == NULL) {
        goto fail;
    }
    if ((self->down = tf_linear_build(st, down_w, down_b, TF_ACT_NONE, transposed, dtype,
                                      "down projection")) == NULL) {
        goto fail;
    }
    const int64_t C = self->up->in_features, F = self->up->out_features;
    if (gated && (self->gate->in_features != C || self->gate->out_features != F)) {
        tf_value_error(
            st, "gate_weight maps %lld -> %lld features, expected %lld -> %lld like up_weight",
            (long long)self->gate->in_features, (long long)self->gate->out_features, (long long)C,
            (long long)F);
        goto fail;
    }
    if (self->down->in_features != F || self->down->out_features != C) {
        tf_value_error(st,
                       "down_weight maps %lld -> %lld features, expected %lld -> %lld "
                       "(the transpose of up_weight's shape)",
                       (long long)self->down->in_features, (long long)self->down->out_features,
                       (long long)F, (long long)C);
        goto fail;
    }
    return (PyObject *)self;
fail:
    Py_DECREF(self);
    return NULL;
}

static int
ffn_traverse(tf_ffn *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->up);
    Py_VISIT(self->gate);
    Py_VISIT(self->down);
    return 0;
}

static int
ffn_clear(tf_ffn *self)
{
    Py_CLEAR(self->up);
    Py_CLEAR(self->gate);
    Py_CLEAR(self->down);
    return 0;
}

static void
ffn_dealloc(tf_ffn *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    ffn_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static int
ffn_forward_any(const void *self, const float *x, int64_t M, float *y, tf_post post,
                const float *other, tf_err *err)
{
    return tf_ffn_forward(self, x, M, y, post, other, err);
}

static PyObject *
ffn_call(tf_ffn *self, PyObject *args, PyObject *kwds)
{
    const int64_t C = self->up->in_features;
    return tf_rows_layer_call((PyObject *)self, args, kwds, C, C, ffn_forward_any,
                              "O|O$O:FeedForward.__call__");
}

static PyObject *
ffn_repr(tf_ffn *self)
{
    return PyUnicode_FromFormat(
        "FeedForward(hidden_size=%lld, intermediate_size=%lld, activation=%s, gated=%s)",
        (long long)self->up->in_features, (long long)self->up->out_features,
        tf_act_names[self->act], self->gate ? "True" : "False");
}

static PyObject *
ffn_get_linear(tf_ffn *self, void *closure)
{
    tf_linear *lin = *(tf_linear **)((char *)self + (Py_ssize_t)closure);
    if (lin == NULL) {
        Py_RETURN_NONE;
    }
    return Py_NewRef((PyObject *)lin);
}

static PyObject *
ffn_get_activation(tf_ffn *self, void *closure)
{
    return PyUnicode_FromString(tf_act_names[self->act]);
}

static PyObject *
ffn_get_gated(tf_ffn *self, void *closure)
{
    return PyBool_FromLong(self->gate != NULL);
}

static PyGetSetDef ffn_getset[] = {
    {"up", (getter)ffn_get_linear, NULL, "The up projection (a Linear).",
     (void *)offsetof(tf_ffn, up)},
    {"gate", (getter)ffn_get_linear, NULL, "The gate projection (a Linear), or None.",
     (void *)offsetof(tf_ffn, gate)},
    {"down", (getter)ffn_get_linear, NULL, "The down projection (a Linear).",
     (void *)offsetof(tf_ffn, down)},
    {"activation", (getter)ffn_get_activation, NULL, "The activation name.", NULL},
    {"gated", (getter)ffn_get_gated, NULL, "True for GLU variants (SwiGLU, GEGLU).", NULL},
    {NULL},
};

PyDoc_STRVAR(
    ffn_doc,
    "FeedForward(up_weight, down_weight, *, up_bias=None, down_bias=None, gate_weight=None,\n"
    "            gate_bias=None, activation='gelu', transposed=False, dtype='float32')\n--\n\n"
    "The transformer MLP. Plain: ``down(act(up(x)))`` (BERT, GPT-2, ViT). Gated, when\n"
    "gate_weight is given: ``down(act(gate(x)) * up(x))`` (Llama's SwiGLU with 'silu', T5 v1.1's\n"
    "GEGLU with 'gelu_tanh' where gate is wi_0 and up is wi_1).\n\n"
    "Weights are (out, in) like torch.nn.Linear, or (in, out) with transposed=True;\n"
    "dtype 'bfloat16' or 'int8' as for Linear.\n"
    "Call: ``ffn(x, residual=None, *, out=None)``; the residual is added inside the last GEMM.");

static PyType_Slot ffn_slots[] = {
    {Py_tp_new, ffn_new},       {Py_tp_dealloc, ffn_dealloc}, {Py_tp_traverse, ffn_traverse},
    {Py_tp_clear, ffn_clear},   {Py_tp_call, ffn_call},       {Py_tp_repr, ffn_repr},
    {Py_tp_getset, ffn_getset}, {Py_tp_doc, (void *)ffn_doc}, {0, NULL},
};

PyType_Spec tf_feed_forward_spec = {
    .name = "tfcore.FeedForward",
    .basicsize = sizeof(tf_ffn),
    .flags =
        Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = ffn_slots,
};
