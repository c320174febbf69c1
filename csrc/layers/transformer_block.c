/* transformer_block.c — TransformerBlock: attention, optional cross-attention and feed-forward with
 * their norms and residuals, run in C as one call without the GIL.
 *
 * Post-norm (BERT, original Transformer), x is (M, C):
 *   h = norm1(x + attn(x));  [h = norm_cross(h + xattn(h, enc))];  y = norm2(h + ffn(h))
 * Pre-norm (GPT-2, Llama, ViT):
 *   h = x + attn(norm1(x));  [h = h + xattn(norm_cross(h), enc)];  y = h + ffn(norm2(h))
 * Every residual add is a post-op of the projection GEMM that precedes it.
 */
#include "layers/feed_forward.h"
#include "layers/mixture_of_experts.h"
#include "layers/multi_head_attention.h"
#include "layers/norm.h"

#include <string.h>

typedef struct {
    PyObject_HEAD tf_mha *attn;
    tf_mha *cross;                        /* or NULL */
    PyObject *ffn;                        /* a FeedForward or a MixtureOfExperts */
    tf_rows_forward ffn_forward;          /* tf_ffn_forward or tf_moe_forward */
    PyObject *norm1, *norm2, *norm_cross; /* LayerNorm / RMSNorm objects */
    int norm_first;
    int64_t C;
} tf_block;

/* x, y are (B, T, C); self_c / cross_c carry the attention inputs (x, y, post filled here). */
static int
block_forward(const tf_block *blk, const float *x, float *y, int64_t M, tf_mha_call *self_c,
              tf_mha_call *cross_c, tf_err *err)
{
    const int64_t C = blk->C;
    float *t = tf_malloc((size_t)M * (size_t)C * sizeof(float));
    float *h = tf_malloc((size_t)M * (size_t)C * sizeof(float));
    int rc = -1;
    if (t == NULL || h == NULL) {
        tf_err_set(err, TF_ERR_MEMORY, "out of memory for a (%lld, %lld) block activation",
                   (long long)M, (long long)C);
        goto done;
    }
    if (!blk->norm_first) {
        /* t = x + attn(x); h = norm1(t) */
        self_c->x = x;
        self_c->y = t;
        self_c->post = TF_POST_ADD;
        self_c->other = x;
        if (tf_mha_forward(blk->attn, self_c, err) < 0) {
            goto done;
        }
        tf_norm_apply(blk->norm1, t, NULL, NULL, h, M);
        if (blk->cross != NULL) {
            cross_c->x = h;
            cross_c->y = t;
            cross_c->post = TF_POST_ADD;
            cross_c->other = h;
            if (tf_mha_forward(blk->cross, cross_c, err) < 0) {
                goto done;
            }
            tf_norm_apply(blk->norm_cross, t, NULL, NULL, h, M);
        }
        /* y = norm2(h + ffn(h)) */
        if (blk->ffn_forward(blk->ffn, h, M, t, TF_POST_ADD, h, err) < 0) {
            goto done;
        }
        tf_norm_apply(blk->norm2, t, NULL, NULL, y, M);
    }
    else {
        /* h = x + attn(norm1(x)) */
        tf_norm_apply(blk->norm1, x, NULL, NULL, t, M);
        self_c->x = t;
        self_c->y = h;
        self_c->post = TF_POST_ADD;
        self_c->other = x;
        if (tf_mha_forward(blk->attn, self_c, err) < 0) {
            goto done;
        }
        if (blk->cross != NULL) {
            /* h += xattn(norm_cross(h)) */
            tf_norm_apply(blk->norm_cross, h, NULL, NULL, t, M);
            cross_c->x = t;
            cross_c->y = h;
            cross_c->post = TF_POST_ACCUM;
            cross_c->other = NULL;
            if (tf_mha_forward(blk->cross, cross_c, err) < 0) {
                goto done;
            }
        }
        /* y = h + ffn(norm2(h)) */
        tf_norm_apply(blk->norm2, h, NULL, NULL, t, M);
        if (blk->ffn_forward(blk->ffn, t, M, y, TF_POST_ADD, h, err) < 0) {
            goto done;
        }
    }
    rc = 0;
done:
    tf_free(t);
    tf_free(h);
    return rc;
}

/* ------------------------------------------------------------------ construction */

static int
block_ffn_forward(const void *f, const float *x, int64_t M, float *y, tf_post post,
                  const float *other, tf_err *err)
{
    return tf_ffn_forward(f, x, M, y, post, other, err);
}

static int
block_moe_forward(const void *m, const float *x, int64_t M, float *y, tf_post post,
                  const float *other, tf_err *err)
{
    return tf_moe_forward(m, x, M, y, post, other, err);
}

static PyObject *
block_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"attention",  "feed_forward",    "norm1",      "norm2",
                             "norm_first", "cross_attention", "norm_cross", NULL};
    PyObject *attn, *ffn, *n1, *n2, *cross = Py_None, *ncross = Py_None;
    int norm_first = 1;
    tf_state *st = tf_state_of_type(type);
    tf_block *self = NULL;
    if (st == NULL) {
        return NULL;
    }
    if (!TF_PARSE(st, args, kwds, "OOOO|$pOO:TransformerBlock", kwlist, &attn, &ffn, &n1, &n2,
                  &norm_first, &cross, &ncross)) {
        return NULL;
    }
    if (!PyObject_TypeCheck(attn, st->MultiHeadAttention) || ((tf_mha *)attn)->cross) {
        return tf_type_error(
            st, "attention must be a tfcore.MultiHeadAttention (self-attention), got %s",
            Py_TYPE(attn)->tp_name);
    }
    int64_t ffn_C;
    if (PyObject_TypeCheck(ffn, st->FeedForward)) {
        ffn_C = ((tf_ffn *)ffn)->up->in_features;
    }
    else if (tf_moe_check(st, ffn)) {
        ffn_C = ((tf_moe *)ffn)->C;
    }
    else {
        return tf_type_error(
            st, "feed_forward must be a tfcore.FeedForward or tfcore.MixtureOfExperts, got %s",
            Py_TYPE(ffn)->tp_name);
    }
    const int64_t C = ((tf_mha *)attn)->hidden;
    if (ffn_C != C) {
        return tf_value_error(st, "feed_forward has hidden size %lld, expected hidden_size=%lld",
                              (long long)ffn_C, (long long)C);
    }
    if (tf_norm_check_arg(st, n1, "norm1", C) < 0 || tf_norm_check_arg(st, n2, "norm2", C) < 0) {
        return NULL;
    }
    if ((cross == Py_None) != (ncross == Py_None)) {
        return tf_value_error(st,
                              "cross_attention and norm_cross go together: give both or neither");
    }
    if (cross != Py_None) {
        if (!PyObject_TypeCheck(cross, st->MultiHeadAttention) || !((tf_mha *)cross)->cross) {
            return tf_type_error(st,
                                 "cross_attention must be a tfcore.MultiHeadAttention built with "
                                 "is_cross_attention=True");
        }
        if (((tf_mha *)cross)->hidden != C) {
            return tf_value_error(st,
                                  "cross_attention has hidden size %lld, expected hidden_size=%lld",
                                  (long long)((tf_mha *)cross)->hidden, (long long)C);
        }
        if (tf_norm_check_arg(st, ncross, "norm_cross", C) < 0) {
            return NULL;
        }
    }
    self = (tf_block *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->attn = (tf_mha *)Py_NewRef(attn);
    self->ffn = Py_NewRef(ffn);
    self->ffn_forward = tf_moe_check(st, ffn) ? block_moe_forward : block_ffn_forward;
    self->norm1 = Py_NewRef(n1);
    self->norm2 = Py_NewRef(n2);
    if (cross != Py_None) {
        self->cross = (tf_mha *)Py_NewRef(cross);
        self->norm_cross = Py_NewRef(ncross);
    }
    self->norm_first = norm_first;
    self->C = C;
    return (PyObject *)self;
}

static int
block_traverse(tf_block *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->attn);
    Py_VISIT(self->cross);
    Py_VISIT(self->ffn);
    Py_VISIT(self->norm1);
    Py_VISIT(self->norm2);
    Py_VISIT(self->norm_cross);
    return 0;
}

static int
block_clear(tf_block *self)
{
    Py_CLEAR(self->attn);
    Py_CLEAR(self->cross);
    Py_CLEAR(self->ffn);
    Py_CLEAR(self->norm1);
    Py_CLEAR(self->norm2);
    Py_CLEAR(self->norm_cross);
    return 0;
}

static void
block_dealloc(tf_block *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    block_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *
block_call(tf_block *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"hidden_states",
                             "attention_mask",
                             "encoder_hidden_states",
                             "encoder_attention_mask",
                             "position_ids",
                             "position_offset",
                             "bias",
                             "output_attentions",
                             "out",
                             "cu_seqlens",
                             "past_key_values",
                             "layer_idx",
                             "encoder_key_values",
                             NULL};
    PyObject *x_obj, *mask_obj = Py_None, *enc_obj = Py_None, *enc_mask_obj = Py_None,
                     *pos_obj = Py_None, *bias_obj = Py_None, *out_obj = Py_None, *cu_obj = Py_None,
                     *cache_obj = Py_None, *layer_obj = Py_None, *kv_obj = Py_None, *result = NULL;
    PyArrayObject *enc_kv = NULL;
    long long offset = 0;
    int output_attentions = 0;
    tf_rows_call rows = {0};
    tf_mha_arrays self_arr = {0}, cross_arr = {0};
    tf_mha_call self_c = {0}, cross_c = {0};
    tf_err err = {0};
    tf_state *st = tf_state_of((PyObject *)self);
    memset(&cross_c, 0, sizeof(cross_c));
    if (!TF_PARSE(st, args, kwds, "O|O$OOOLOpOOOOO:TransformerBlock.__call__", kwlist, &x_obj,
                  &mask_obj, &enc_obj, &enc_mask_obj, &pos_obj, &offset, &bias_obj,
                  &output_attentions, &out_obj, &cu_obj, &cache_obj, &layer_obj, &kv_obj)) {
        return NULL;
    }
    if (tf_rows_call_parse(st, x_obj, NULL, out_obj, self->C, self->C, &tf_hidden_states_names,
                           &rows) < 0) {
        goto done;
    }
    const int64_t B = PyArray_DIM(rows.x, 0), T = PyArray_DIM(rows.x, 1);
    if (self->cross == NULL &&
        ((enc_obj != Py_None) || (enc_mask_obj != Py_None) || (kv_obj != Py_None))) {
        tf_value_error(
            st, "encoder_hidden_states, encoder_attention_mask or encoder_key_values given to a "
                "block without cross-attention");
        goto done;
    }
    if (tf_mha_parse_cache(st, self->attn, cache_obj, layer_obj, B, T, &self_c.cache,
                           &self_c.layer) < 0) {
        goto done;
    }
    if (tf_mha_parse(st, self->attn, B, T, mask_obj, "attention_mask", NULL, pos_obj, offset,
                     bias_obj, output_attentions, &self_arr, &self_c) < 0) {
        goto done;
    }
    if (cu_obj != Py_None && self_c.cache != NULL) {
        tf_value_error(st, "cu_seqlens cannot be combined with past_key_values");
        goto done;
    }
    if (cu_obj != Py_None) {
        if (self->cross != NULL) {
            tf_value_error(
                st, "cu_seqlens (padding-free sequences) is not supported with cross-attention");
            goto done;
        }
        if (tf_mha_parse_packed(st, self->attn, cu_obj, T, &self_arr, &self_c) < 0) {
            goto done;
        }
    }
    if (self->cross != NULL) {
        if (tf_mha_parse_cross_kv(st, self->cross, kv_obj, B, &enc_kv, &cross_c) < 0 ||
            tf_mha_parse(st, self->cross, B, T, enc_mask_obj, "encoder_attention_mask", enc_obj,
                         NULL, 0, NULL, output_attentions, &cross_arr, &cross_c) < 0) {
            goto done;
        }
        if (cross_arr.enc &&
            tf_check_no_overlap(st, rows.out, cross_arr.enc, "encoder_hidden_states") < 0) {
            goto done;
        }
        if (enc_kv && tf_check_no_overlap(st, rows.out, enc_kv, "encoder_key_values") < 0) {
            goto done;
        }
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS tf_threads_begin();
    rc = block_forward(self, PyArray_DATA(rows.x), PyArray_DATA(rows.out), B * T, &self_c, &cross_c,
                       &err);
    Py_END_ALLOW_THREADS if (rc < 0)
    {
        tf_err_raise(st, &err);
        goto done;
    }
    if (!output_attentions) {
        result = Py_NewRef(rows.out);
    }
    else if (self->cross == NULL) {
        result = PyTuple_Pack(2, rows.out, self_arr.weights);
    }
    else {
        result = PyTuple_Pack(3, rows.out, self_arr.weights, cross_arr.weights);
    }
done:
    if (self_c.cache != NULL) {
        tf_kvcache_release(self_c.cache);
    }
    Py_XDECREF(enc_kv);
    tf_rows_call_release(&rows);
    tf_mha_arrays_release(&self_arr);
    tf_mha_arrays_release(&cross_arr);
    return result;
}

static PyObject *
block_repr(tf_block *self)
{
    return PyUnicode_FromFormat(
        "TransformerBlock(hidden_size=%lld, norm_first=%s, cross_attention=%s,\n"
        "  attention=%R,\n  feed_forward=%R,\n  norm1=%R, norm2=%R)",
        (long long)self->C, self->norm_first ? "True" : "False", self->cross ? "True" : "False",
        self->attn, self->ffn, self->norm1, self->norm2);
}

static PyObject *
block_get(tf_block *self, void *closure)
{
    PyObject *obj = *(PyObject **)((char *)self + (Py_ssize_t)closure);
    return Py_NewRef(obj != NULL ? obj : Py_None);
}

static PyMemberDef block_members[] = {
    {"hidden_size", T_LONGLONG, offsetof(tf_block, C), READONLY, "C"},
    {"norm_first", T_INT, offsetof(tf_block, norm_first), READONLY,
     "Pre-norm (True) or post-norm."},
    {NULL},
};

static PyGetSetDef block_getset[] = {
    {"attention", (getter)block_get, NULL, "Self-attention layer.",
     (void *)offsetof(tf_block, attn)},
    {"cross_attention", (getter)block_get, NULL, "Cross-attention layer or None.",
     (void *)offsetof(tf_block, cross)},
    {"feed_forward", (getter)block_get, NULL, "Feed-forward layer.",
     (void *)offsetof(tf_block, ffn)},
    {"norm1", (getter)block_get, NULL, "Norm around attention.", (void *)offsetof(tf_block, norm1)},
    {"norm2", (getter)block_get, NULL, "Norm around the feed-forward.",
     (void *)offsetof(tf_block, norm2)},
    {"norm_cross", (getter)block_get, NULL, "Norm around cross-attention or None.",
     (void *)offsetof(tf_block, norm_cross)},
    {NULL},
};

PyDoc_STRVAR(
    block_doc,
    "TransformerBlock(attention, feed_forward, norm1, norm2, *, norm_first=True,\n"
    "                 cross_attention=None, norm_cross=None)\n--\n\n"
    "One transformer layer from tfcore layers. norm_first=True is pre-norm (GPT-2, Llama, ViT):\n"
    "``h = x + attn(norm1(x)); y = h + ffn(norm2(h))``; False is post-norm (BERT):\n"
    "``h = norm1(x + attn(x)); y = norm2(h + ffn(h))``. A decoder of an encoder-decoder model\n"
    "adds cross_attention (built with is_cross_attention=True) and its norm_cross.\n"
    "feed_forward is a FeedForward or a MixtureOfExperts (Mixtral).\n\n"
    "Call: ``block(hidden_states, attention_mask=None, *, encoder_hidden_states=None,\n"
    "encoder_attention_mask=None, position_ids=None, position_offset=0, bias=None,\n"
    "output_attentions=False, out=None, cu_seqlens=None, past_key_values=None, layer_idx=None,\n"
    "encoder_key_values=None)``; arguments as for MultiHeadAttention\n"
    "(cu_seqlens: padding-free sequences packed in a (1, N, C) hidden_states; "
    "past_key_values=cache,\n"
    "layer_idx=i: incremental decoding with a tfcore.KVCache; encoder_key_values: the\n"
    "cross-attention kv_proj output computed once, instead of encoder_hidden_states). Returns (B, "
    "T, C),\n"
    "or with output_attentions a tuple (output, attentions[, cross_attentions]).");

static PyType_Slot block_slots[] = {
    {Py_tp_new, block_new},           {Py_tp_dealloc, block_dealloc},
    {Py_tp_traverse, block_traverse}, {Py_tp_clear, block_clear},
    {Py_tp_call, block_call},         {Py_tp_repr, block_repr},
    {Py_tp_members, block_members},   {Py_tp_getset, block_getset},
    {Py_tp_doc, (void *)block_doc},   {0, NULL},
};

PyType_Spec tf_transformer_block_spec = {
    .name = "tfcore.TransformerBlock",
    .basicsize = sizeof(tf_block),
    .flags =
        Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = block_slots,
};
