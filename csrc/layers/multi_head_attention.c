/* multi_head_attention.c — MultiHeadAttention: fused QKV projection, rotary embedding, the
 * fused attention kernel on strided views of the projection (no head transposes, no K/V
 * copies for GQA), and the output projection with the residual fused in.
 *
 * Data flow for self-attention, M = B*T rows, W = (H + 2 KVH) D:
 *   x (M, C) --qkv GEMM--> qkv (M, W) = [q heads | k heads | v heads] per row
 *   rope in place on the q and k column blocks
 *   attention reads q/k/v with row stride W, writes ctx (M, H D) in (B, T, H, D) order
 *   ctx --o GEMM (+ residual)--> y (M, C)
 */
#include "layers/multi_head_attention.h"

#include "kernels/attention/sdpa.h"
#include "kernels/rope.h"

#include <math.h>
#include <string.h>

int
tf_mha_forward(const tf_mha *m, const tf_mha_call *c, tf_err *err)
{
    const int64_t B = c->B, T = c->T, S = c->S, H = m->H, KVH = m->KVH, D = m->D;
    const int64_t M = c->seq_start ? c->seq_start[B] : B * T; /* rows of every GEMM */
    float *qkv = NULL, *kvbuf = NULL, *ctx = NULL, *rel = NULL;
    int rc = -1;
    const int64_t W = m->cross ? H * D : (H + 2 * KVH) * D; /* row width of qkv */
    qkv = tf_malloc((size_t)M * (size_t)W * sizeof(float));
    ctx = tf_malloc((size_t)M * (size_t)(H * D) * sizeof(float));
    if (qkv == NULL || ctx == NULL) {
        tf_err_set(err, TF_ERR_MEMORY, "out of memory for attention activations (%lld rows)",
                   (long long)M);
        goto done;
    }
    /* qkv is (B, T, W) */
    if (tf_linear_forward(m->qkv, c->x, M, qkv, TF_POST_NONE, NULL, err) < 0) {
        goto done;
    }

    tf_attn_args a;
    memset(&a, 0, sizeof(a));
    a.B = B;
    a.H = H;
    a.KVH = KVH;
    a.L = T;
    a.S = S;
    a.D = D;
    a.Dv = D;
    a.q = qkv;
    a.q_sb = T * W;
    a.q_sh = D;
    a.q_sl = W;
    if (m->cross) {
        /* kv is (B, S, 2 KVH D) = [k heads | v heads] per row: given, or projected here */
        const int64_t KW = 2 * KVH * D;
        const float *kv = c->enc_kv;
        if (kv == NULL) {
            kvbuf = tf_malloc((size_t)(B * S) * (size_t)KW * sizeof(float));
            if (kvbuf == NULL) {
                tf_err_set(err, TF_ERR_MEMORY, "out of memory for cross-attention keys and values");
                goto done;
            }
            if (tf_linear_forward(m->kv, c->enc, B * S, kvbuf, TF_POST_NONE, NULL, err) < 0) {
                goto done;
            }
            kv = kvbuf;
        }
        if (c->kv_group > 1) {
            /* G rows share an encoder row: one batch item of G * T queries (row b * G + j,
             * token t is query j * T + t of item b), exact for cross-attention (no causal
             * order, the mask is per key); each encoder row is read once, not G times */
            const int64_t G = c->kv_group;
            a.B = B / G;
            a.L = G * T;
            a.q_sb = G * T * W;
        }
        a.k = kv;
        a.k_sb = S * KW;
        a.k_sh = D;
        a.k_ss = KW;
        a.v = kv + KVH * D;
        a.v_sb = S * KW;
        a.v_sh = D;
        a.v_ss = KW;
    }
    else {
        a.k = qkv + H * D;
        a.k_sb = T * W;
        a.k_sh = D;
        a.k_ss = W;
        a.v = qkv + (H + KVH) * D;
        a.v_sb = T * W;
        a.v_sh = D;
        a.v_ss = W;
        if (m->q_norm.gamma != NULL) {
            /* each head of each row is one RMSNorm row: q is (M, H, D), k is (M, KVH, D)
             * inside qkv rows of width W */
            for (int64_t r = 0; r < M; r++) {
                tf_norm_rows(&m->q_norm, qkv + r * W, NULL, NULL, qkv + r * W, H);
                tf_norm_rows(&m->k_norm, qkv + r * W + H * D, NULL, NULL, qkv + r * W + H * D, KVH);
            }
        }
        if (m->rotary_dim > 0) {
            /* q heads then k heads of each row: both are (B, T, heads, D) views of qkv
             * ((1, N, heads, D) when packed, with explicit positions) */
            const int64_t rb = c->seq_start ? 1 : B, rt = c->seq_start ? M : T;
            tf_rope_inplace(qkv, rb, rt, H, D, rt * W, W, D, c->positions, c->position_offset,
                            m->inv_freq, m->rotary_dim, m->rope_interleaved);
            tf_rope_inplace(qkv + H * D, rb, rt, KVH, D, rt * W, W, D, c->positions,
                            c->position_offset, m->inv_freq, m->rotary_dim, m->rope_interleaved);
        }
    }
    if (c->cache != NULL) {
        /* the cache appends this call's keys/values and points a at all of this layer's rows */
        if (tf_kvcache_attend(c->cache, c->layer, c->key_mask, &a, &kvbuf, err) < 0) {
            goto done;
        }
    }
    a.out = ctx;
    a.o_sb = a.L * H * D; /* T, or G * T rows per item with shared encoder rows */
    a.o_sh = D;
    a.o_sl = H * D;
    a.scale = m->scale;
    a.softcap = m->softcap;
    a.causal = m->causal;
    a.window_left = m->window_left;
    a.window_right = m->window_right;
    if (c->key_mask != NULL && a.bool_mask == NULL) {
        /* (B, seen + T): HF's mask, authoritative for every key (unless the cache evicted
         * rows and set the validity it recorded instead) */
        a.bool_mask = c->key_mask;
        a.bm_sb = S;
        a.bm_sh = 0;
        a.bm_sl = 0;
        a.bm_ss = 1;
    }
    if (c->mask != NULL) {
        a.mask = c->mask;
        a.m_sb = c->m_sb;
        a.m_sh = c->m_sh;
        a.m_sl = c->m_sl;
        a.m_ss = c->m_ss;
    }
    if (c->bias != NULL) {
        a.bias = c->bias;
        a.b_sb = c->b_sb;
        a.b_sh = c->b_sh;
        a.b_sl = c->b_sl;
        a.b_ss = c->b_ss;
    }
    if (m->pos.kind != TF_POSBIAS_NONE) {
        /* (H, T + S - 1) offsets; queries sit after the cached rows */
        rel = tf_malloc((size_t)tf_posbias_size(&m->pos, T, a.S) * sizeof(float));
        if (rel == NULL) {
            tf_err_set(err, TF_ERR_MEMORY, "out of memory for the position bias");
            goto done;
        }
        tf_posbias_fill(&m->pos, T, a.S, a.causal_offset, rel);
        a.rel = rel;
        a.rel_sh = T + a.S - 1;
    }
    a.weights = c->weights;
    a.seq_start = c->seq_start;
    if (tf_attention(&a, err) < 0) {
        goto done;
    }
    if (c->cache != NULL && tf_kvcache_evict_after(c->cache, c->layer, &a, err) < 0) {
        goto done;
    }
    /* y is (B, T, C) */
    if (tf_linear_forward(m->o, ctx, M, c->y, c->post, c->other, err) < 0) {
        goto done;
    }
    rc = 0;
done:
    tf_free(qkv);
    tf_free(kvbuf);
    tf_free(ctx);
    tf_free(rel);
    return rc;
}

/* ------------------------------------------------------------------ construction */

/* Concatenate arrays (None entries must all be None) along the output axis. */
static PyObject *
concat_out(tf_state *st, PyObject *const *parts, int n, int axis, const char *what)
{
    int nones = 0;
    for (int i = 0; i < n; i++) {
        nones += parts[i] == Py_None;
    }
    if (nones == n) {
        Py_RETURN_NONE;
    }
    if (nones != 0) {
        return tf_value_error(st, "%s: give all of them or none", what);
    }
    if (tf_linear_check(st, parts[0])) { /* int4 Linears (4-bit checkpoint weights) */
        return tf_linear_int4_concat(st, parts, n, what);
    }
    PyObject *list = PyList_New(n);
    if (list == NULL) {
        return NULL;
    }
    /* float32, or all uint16 bfloat16 bits (bf16 weights; Linear checks dtype='bfloat16') */
    const int type0 = PyArray_Check(parts[0]) ? PyArray_TYPE((PyArrayObject *)parts[0]) : -1;
    for (int i = 0; i < n; i++) {
        if (!PyArray_Check(parts[i]) || (type0 != NPY_FLOAT32 && type0 != NPY_UINT16) ||
            PyArray_TYPE((PyArrayObject *)parts[i]) != type0) {
            Py_DECREF(list);
            return tf_type_error(
                st, "%s must be float32 numpy arrays (or all uint16 bfloat16 bits)", what);
        }
        if (PyArray_NDIM((PyArrayObject *)parts[i]) <= axis) {
            Py_DECREF(list);
            return tf_value_error(st, "%s: expected %d-D arrays", what, axis + 1);
        }
        PyList_SET_ITEM(list, i, Py_NewRef(parts[i]));
    }
    PyObject *r = PyArray_Concatenate(list, axis);
    Py_DECREF(list);
    if (r == NULL) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        return tf_value_error(st, "%s have incompatible shapes for a fused projection", what);
    }
    return r;
}

/* An optional int argument: None gives the default. */
static int
opt_int(PyObject *obj, long long dflt, long long *out)
{
    if (obj == Py_None) {
        *out = dflt;
        return 0;
    }
    *out = PyLong_AsLongLong(obj);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

/* q_norm_weight= / k_norm_weight= (D,) each, both or neither (Qwen3): an RMSNorm over each
 * query and key head, applied before the rotary embedding. */
static int
init_qk_norm(tf_state *st, tf_mha *self, PyObject *qn_obj, PyObject *kn_obj, double eps)
{
    if (qn_obj == Py_None && kn_obj == Py_None) {
        return 0;
    }
    if (qn_obj == Py_None || kn_obj == Py_None) {
        tf_value_error(st, "q_norm_weight and k_norm_weight go together (got only %s)",
                       qn_obj == Py_None ? "k_norm_weight" : "q_norm_weight");
        return -1;
    }
    if (self->cross) {
        tf_value_error(st, "q_norm_weight / k_norm_weight are for self-attention only");
        return -1;
    }
    if (!isfinite(eps) || eps < 0) {
        tf_value_error(st, "qk_norm_eps must be a finite number >= 0, got %g", eps);
        return -1;
    }
    PyObject *objs[2] = {qn_obj, kn_obj};
    const char *names[2] = {"q_norm_weight", "k_norm_weight"};
    tf_norm_params *norms[2] = {&self->q_norm, &self->k_norm};
    for (int i = 0; i < 2; i++) {
        PyArrayObject *w = tf_arg_f32(st, objs[i], names[i], 1, 1);
        if (w == NULL) {
            return -1;
        }
        if (PyArray_DIM(w, 0) != self->D) {
            tf_value_error(st, "%s has %" NPY_INTP_FMT " entries, expected head_dim=%lld", names[i],
                           PyArray_DIM(w, 0), (long long)self->D);
            Py_DECREF(w);
            return -1;
        }
        if (tf_check_finite(st, w, names[i]) < 0) {
            Py_DECREF(w);
            return -1;
        }
        float *gamma = tf_malloc((size_t)self->D * sizeof(float));
        if (gamma == NULL) {
            Py_DECREF(w);
            PyErr_NoMemory();
            return -1;
        }
        memcpy(gamma, PyArray_DATA(w), (size_t)self->D * sizeof(float));
        Py_DECREF(w);
        norms[i]->kind = TF_NORM_RMS;
        norms[i]->C = self->D;
        norms[i]->eps = (float)eps;
        norms[i]->gamma = gamma;
        norms[i]->beta = NULL;
    }
    return 0;
}

/* relative_attention_bias= (T5: a (num_buckets, num_heads) table, buckets bidirectional
 * unless causal) or alibi=True (BLOOM slopes). *table receives the checked array. */
static int
init_position_bias(tf_state *st, tf_mha *self, PyObject *table_obj, long long num_buckets,
                   long long max_distance, int alibi, PyArrayObject **table)
{
    if (table_obj == Py_None && !alibi) {
        return 0;
    }
    if (table_obj != Py_None && alibi) {
        tf_value_error(st, "give relative_attention_bias or alibi=True, not both");
        return -1;
    }
    if (self->cross) {
        tf_value_error(st, "relative_attention_bias and alibi are for self-attention only");
        return -1;
    }
    if (alibi) {
        if (tf_posbias_init_alibi(&self->pos, self->H) < 0) {
            PyErr_NoMemory();
            return -1;
        }
        return 0;
    }
    const int bidirectional = !self->causal;
    tf_err err = {0};
    if (tf_t5_check_config(num_buckets, max_distance, bidirectional, "relative_attention_", &err) <
        0) {
        return tf_err_raise(st, &err);
    }
    if ((*table = tf_arg_f32(st, table_obj, "relative_attention_bias", 2, 2)) == NULL) {
        return -1;
    }
    if (PyArray_DIM(*table, 0) != num_buckets || PyArray_DIM(*table, 1) != self->H) {
        tf_value_error(
            st,
            "relative_attention_bias has shape (%" NPY_INTP_FMT ", %" NPY_INTP_FMT "), expected "
            "(relative_attention_num_buckets=%lld, num_heads=%lld)",
            PyArray_DIM(*table, 0), PyArray_DIM(*table, 1), num_buckets, (long long)self->H);
        return -1;
    }
    if (tf_check_finite(st, *table, "relative_attention_bias") < 0) {
        return -1;
    }
    if (tf_posbias_init_t5(&self->pos, PyArray_DATA(*table), num_buckets, self->H, max_distance,
                           bidirectional) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static PyObject *
mha_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"hidden_size",
                             "num_heads",
                             "num_key_value_heads",
                             "head_dim",
                             "q_weight",
                             "k_weight",
                             "v_weight",
                             "q_bias",
                             "k_bias",
                             "v_bias",
                             "qkv_weight",
                             "qkv_bias",
                             "o_weight",
                             "o_bias",
                             "transposed",
                             "is_causal",
                             "scale",
                             "is_cross_attention",
                             "kv_input_size",
                             "rotary_dim",
                             "rope_theta",
                             "rope_inv_freq",
                             "rope_interleaved",
                             "sliding_window",
                             "dtype",
                             "relative_attention_bias",
                             "relative_attention_num_buckets",
                             "relative_attention_max_distance",
                             "alibi",
                             "q_norm_weight",
                             "k_norm_weight",
                             "qk_norm_eps",
                             "softcap",
                             NULL};
    long long C, H, KVH = 0, D = 0, kv_in = 0, rotary_dim = -1, window = 0;
    PyObject *kvh_obj = Py_None, *d_obj = Py_None, *kv_in_obj = Py_None, *rd_obj = Py_None,
             *window_obj = Py_None;
    PyObject *qw = Py_None, *kw = Py_None, *vw = Py_None, *qb = Py_None, *kb = Py_None,
             *vb = Py_None, *qkvw = Py_None, *qkvb = Py_None, *ow = Py_None, *ob = Py_None,
             *scale_obj = Py_None, *theta_obj = Py_None, *inv_freq_obj = Py_None, *dtype = Py_None,
             *rel_table_obj = Py_None, *nb_obj = Py_None, *md_obj = Py_None, *qn_obj = Py_None,
             *kn_obj = Py_None, *softcap_obj = Py_None;
    double qk_eps = 1e-6;
    long long num_buckets = 32, max_distance = 128;
    int transposed = 0, causal = 0, cross = 0, interleaved = 0, alibi = 0;
    PyObject *fused_w = NULL, *fused_b = NULL, *kv_w = NULL, *kv_b = NULL;
    PyArrayObject *inv = NULL, *rel_table = NULL;
    tf_state *st = tf_state_of_type(type);
    tf_mha *self = NULL;
    if (st == NULL) {
        return NULL;
    }
    if (!TF_PARSE(st, args, kwds, "LL|$OOOOOOOOOOOOppOpOOOOpOOOOOpOOdO:MultiHeadAttention", kwlist,
                  &C, &H, &kvh_obj, &d_obj, &qw, &kw, &vw, &qb, &kb, &vb, &qkvw, &qkvb, &ow, &ob,
                  &transposed, &causal, &scale_obj, &cross, &kv_in_obj, &rd_obj, &theta_obj,
                  &inv_freq_obj, &interleaved, &window_obj, &dtype, &rel_table_obj, &nb_obj,
                  &md_obj, &alibi, &qn_obj, &kn_obj, &qk_eps, &softcap_obj)) {
        return NULL;
    }
    float softcap = 0.0f;
    if (tf_arg_softcap(st, softcap_obj, &softcap) < 0) {
        return NULL;
    }
    if (opt_int(kvh_obj, 0, &KVH) < 0 || opt_int(d_obj, 0, &D) < 0 ||
        opt_int(kv_in_obj, 0, &kv_in) < 0 || opt_int(rd_obj, -1, &rotary_dim) < 0 ||
        opt_int(window_obj, 0, &window) < 0 || opt_int(nb_obj, 32, &num_buckets) < 0 ||
        opt_int(md_obj, 128, &max_distance) < 0) {
        return NULL;
    }
    if (C < 1 || H < 1) {
        return tf_value_error(st, "hidden_size and num_heads must be positive, got %lld and %lld",
                              C, H);
    }
    if (KVH == 0) {
        KVH = H;
    }
    if (KVH < 1 || H % KVH != 0) {
        return tf_value_error(st, "num_heads=%lld must be a multiple of num_key_value_heads=%lld",
                              H, KVH);
    }
    if (D == 0) {
        if (C % H != 0) {
            return tf_value_error(
                st, "hidden_size=%lld is not divisible by num_heads=%lld; pass head_dim", C, H);
        }
        D = C / H;
    }
    if (D < 1) {
        return tf_value_error(st, "head_dim must be positive, got %lld", D);
    }
    if (ow == Py_None) {
        return tf_value_error(st, "o_weight (the output projection) is required");
    }
    if (window < 0) {
        return tf_value_error(st, "sliding_window must be >= 0 (0 = none), got %lld", window);
    }
    self = (tf_mha *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->hidden = C;
    self->H = H;
    self->KVH = KVH;
    self->D = D;
    self->causal = causal;
    self->cross = cross;
    self->softcap = softcap;
    self->kv_hidden = cross ? (kv_in > 0 ? kv_in : C) : C;
    /* HF's sliding_window counts the current token: a query sees itself and the
     * sliding_window - 1 keys before it. */
    self->window_left = window > 0 ? window - 1 : -1;
    self->window_right = -1;
    if (scale_obj == Py_None) {
        self->scale = (float)(1.0 / sqrt((double)D));
    }
    else {
        double s = PyFloat_AsDouble(scale_obj);
        if (s == -1.0 && PyErr_Occurred()) {
            goto fail;
        }
        if (!isfinite(s)) {
            tf_value_error(st, "scale must be finite");
            goto fail;
        }
        self->scale = (float)s;
    }
    const int axis = transposed ? 1 : 0; /* output features axis of a weight */
    PyObject *qkv_parts[3] = {qw, kw, vw}, *qkvb_parts[3] = {qb, kb, vb};
    PyObject *kv_parts[2] = {kw, vw}, *kvb_parts[2] = {kb, vb};
    if (cross) {
        if (qkvw != Py_None) {
            tf_value_error(st,
                           "cross-attention takes q_weight, k_weight, v_weight (not qkv_weight)");
            goto fail;
        }
        if (qw == Py_None || kw == Py_None || vw == Py_None) {
            tf_value_error(st, "cross-attention needs q_weight, k_weight and v_weight");
            goto fail;
        }
        if ((kv_w = concat_out(st, kv_parts, 2, axis, "k_weight and v_weight")) == NULL ||
            (kv_b = concat_out(st, kvb_parts, 2, 0, "k_bias and v_bias")) == NULL) {
            goto fail;
        }
        if ((self->qkv = tf_linear_build(st, qw, qb, TF_ACT_NONE, transposed, dtype,
                                         "q projection")) == NULL ||
            (self->kv = tf_linear_build(st, kv_w, kv_b, TF_ACT_NONE, transposed, dtype,
                                        "k/v projection")) == NULL) {
            goto fail;
        }
    }
    else {
        if (qkvw != Py_None) {
            if (qw != Py_None || kw != Py_None || vw != Py_None) {
                tf_value_error(st,
                               "give either qkv_weight or q_weight/k_weight/v_weight, not both");
                goto fail;
            }
            fused_w = Py_NewRef(qkvw);
            fused_b = Py_NewRef(qkvb);
        }
        else {
            if (qw == Py_None || kw == Py_None || vw == Py_None) {
                tf_value_error(
                    st, "self-attention needs qkv_weight or all of q_weight, k_weight, v_weight");
                goto fail;
            }
            if ((fused_w = concat_out(st, qkv_parts, 3, axis, "q_weight, k_weight and v_weight")) ==
                    NULL ||
                (fused_b = concat_out(st, qkvb_parts, 3, 0, "q_bias, k_bias and v_bias")) == NULL) {
                goto fail;
            }
        }
        if ((self->qkv = tf_linear_build(st, fused_w, fused_b, TF_ACT_NONE, transposed, dtype,
                                         "qkv projection")) == NULL) {
            goto fail;
        }
    }
    if ((self->o = tf_linear_build(st, ow, ob, TF_ACT_NONE, transposed, dtype,
                                   "output projection")) == NULL) {
        goto fail;
    }
    /* Shapes of the projections against the head configuration. */
    const int64_t want_q = cross ? H * D : (H + 2 * KVH) * D;
    if (self->qkv->in_features != C || self->qkv->out_features != want_q) {
        tf_value_error(
            st,
            "%s maps %lld -> %lld features, expected %lld -> %lld "
            "(hidden_size=%lld, num_heads=%lld, num_key_value_heads=%lld, head_dim=%lld)",
            cross ? "q_weight" : "the qkv projection", (long long)self->qkv->in_features,
            (long long)self->qkv->out_features, C, (long long)want_q, C, H, KVH, D);
        goto fail;
    }
    if (cross &&
        (self->kv->in_features != self->kv_hidden || self->kv->out_features != 2 * KVH * D)) {
        tf_value_error(
            st, "k_weight/v_weight map %lld -> %lld features (together), expected %lld -> %lld",
            (long long)self->kv->in_features, (long long)self->kv->out_features,
            (long long)self->kv_hidden, (long long)(2 * KVH * D));
        goto fail;
    }
    if (self->o->in_features != H * D || self->o->out_features != C) {
        tf_value_error(st, "o_weight maps %lld -> %lld features, expected %lld -> %lld",
                       (long long)self->o->in_features, (long long)self->o->out_features,
                       (long long)(H * D), C);
        goto fail;
    }
    /* Rotary embedding: inv_freq given (scaled variants) or theta^(-2i/rotary_dim). */
    if (theta_obj != Py_None || inv_freq_obj != Py_None) {
        if (cross) {
            tf_value_error(st, "rotary embedding is for self-attention only");
            goto fail;
        }
        int64_t rd = rotary_dim < 0 ? D : rotary_dim;
        if (rd < 2 || rd > D || rd % 2 != 0) {
            tf_value_error(st, "rotary_dim must be even and in [2, head_dim=%lld], got %lld", D,
                           (long long)rd);
            goto fail;
        }
        self->rotary_dim = rd;
        self->rope_interleaved = interleaved;
        self->inv_freq = tf_malloc((size_t)(rd / 2) * sizeof(float));
        if (self->inv_freq == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
        if (inv_freq_obj != Py_None) {
            if ((inv = tf_arg_f32(st, inv_freq_obj, "rope_inv_freq", 1, 1)) == NULL) {
                goto fail;
            }
            if (PyArray_DIM(inv, 0) != rd / 2) {
                tf_value_error(
                    st, "rope_inv_freq has %" NPY_INTP_FMT " entries, expected rotary_dim/2=%lld",
                    PyArray_DIM(inv, 0), (long long)(rd / 2));
                goto fail;
            }
            if (tf_check_finite(st, inv, "rope_inv_freq") < 0) {
                goto fail;
            }
            memcpy(self->inv_freq, PyArray_DATA(inv), (size_t)(rd / 2) * sizeof(float));
        }
        else {
            double theta = PyFloat_AsDouble(theta_obj);
            if (theta == -1.0 && PyErr_Occurred()) {
                goto fail;
            }
            if (!(theta > 1.0) || !isfinite(theta)) {
                tf_value_error(st, "rope_theta must be a finite number > 1, got %g", theta);
                goto fail;
            }
            /* Same float32 rounding as HF: 1 / theta^(arange(0, rd, 2) / rd) */
            for (int64_t i = 0; i < rd / 2; i++) {
                self->inv_freq[i] = (float)(1.0 / pow(theta, (double)(2 * i) / (double)rd));
            }
        }
    }
    if (init_position_bias(st, self, rel_table_obj, num_buckets, max_distance, alibi, &rel_table) <
        0) {
        goto fail;
    }
    if (init_qk_norm(st, self, qn_obj, kn_obj, qk_eps) < 0) {
        goto fail;
    }
    Py_XDECREF(fused_w);
    Py_XDECREF(fused_b);
    Py_XDECREF(kv_w);
    Py_XDECREF(kv_b);
    Py_XDECREF(inv);
    Py_XDECREF(rel_table);
    return (PyObject *)self;
fail:
    Py_XDECREF(fused_w);
    Py_XDECREF(fused_b);
    Py_XDECREF(kv_w);
    Py_XDECREF(kv_b);
    Py_XDECREF(inv);
    Py_XDECREF(rel_table);
    Py_XDECREF(self);
    return NULL;
}

static int
mha_traverse(tf_mha *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->qkv);
    Py_VISIT(self->kv);
    Py_VISIT(self->o);
    return 0;
}

static int
mha_clear(tf_mha *self)
{
    Py_CLEAR(self->qkv);
    Py_CLEAR(self->kv);
    Py_CLEAR(self->o);
    return 0;
}

static void
mha_dealloc(tf_mha *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    mha_clear(self);
    tf_free(self->inv_freq);
    tf_free(self->q_norm.gamma);
    tf_free(self->k_norm.gamma);
    tf_posbias_free(&self->pos);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* ------------------------------------------------------------------ call */

void
tf_mha_arrays_release(tf_mha_arrays *a)
{
    Py_CLEAR(a->enc);
    Py_CLEAR(a->key_mask);
    Py_CLEAR(a->mask);
    Py_CLEAR(a->bias);
    Py_CLEAR(a->positions);
    Py_CLEAR(a->weights);
    Py_CLEAR(a->seq_start);
}

int
tf_mha_parse_packed(tf_state *st, const tf_mha *m, PyObject *cu_obj, int64_t N, tf_mha_arrays *arr,
                    tf_mha_call *c)
{
    if (c->B != 1) {
        tf_value_error(st, "with cu_seqlens, hidden_states must be (1, total_tokens, hidden_size)");
        return -1;
    }
    if (m->cross || c->key_mask || c->mask || c->bias || c->weights) {
        tf_value_error(st, "cu_seqlens (padding-free sequences) cannot be combined with attention "
                           "masks, bias, output_attentions or cross-attention");
        return -1;
    }
    if (m->rotary_dim > 0 && c->positions == NULL) {
        tf_value_error(st, "cu_seqlens with rotary embedding needs position_ids (1, total_tokens)");
        return -1;
    }
    if ((arr->seq_start = tf_arg_ids(st, cu_obj, "cu_seqlens")) == NULL) {
        return -1;
    }
    if (PyArray_ITEMSIZE(arr->seq_start) != 8 || PyArray_NDIM(arr->seq_start) != 1 ||
        PyArray_DIM(arr->seq_start, 0) < 2) {
        tf_value_error(st, "cu_seqlens must be a 1-D int64 array of at least 2 offsets");
        return -1;
    }
    const int64_t *cu = PyArray_DATA(arr->seq_start);
    const int64_t nseq = PyArray_DIM(arr->seq_start, 0) - 1;
    int64_t longest = 0;
    for (int64_t b = 0; b < nseq; b++) {
        if (cu[b + 1] <= cu[b]) {
            tf_value_error(
                st,
                "cu_seqlens must increase strictly (no empty sequence): cu_seqlens[%lld] = %lld, "
                "cu_seqlens[%lld] = %lld",
                (long long)b, (long long)cu[b], (long long)(b + 1), (long long)cu[b + 1]);
            return -1;
        }
        longest = cu[b + 1] - cu[b] > longest ? cu[b + 1] - cu[b] : longest;
    }
    if (cu[0] != 0 || cu[nseq] != N) {
        tf_value_error(st,
                       "cu_seqlens must start at 0 and end at the %lld tokens of hidden_states, "
                       "got %lld .. %lld",
                       (long long)N, (long long)cu[0], (long long)cu[nseq]);
        return -1;
    }
    c->seq_start = cu;
    c->B = nseq;
    c->T = c->S = longest;
    return 0;
}

/* attention_mask: HF (B, S) padding mask (1 = attend), or a float additive mask that
 * broadcasts to (B, H, T, S) (HF's "extended" 4-D mask). */
static int
parse_mask(tf_state *st, const tf_mha *m, PyObject *mask_obj, const char *name, int64_t B,
           int64_t T, int64_t S, tf_mha_arrays *arr, tf_mha_call *c)
{
    if (!PyArray_Check(mask_obj)) {
        tf_type_error(st, "%s must be a numpy.ndarray, got %s", name, Py_TYPE(mask_obj)->tp_name);
        return -1;
    }
    PyArrayObject *mk = (PyArrayObject *)mask_obj;
    if (PyArray_NDIM(mk) == 2) {
        if (PyArray_DIM(mk, 0) != B || PyArray_DIM(mk, 1) != S) {
            char shape[96];
            tf_shape_str(mk, shape, sizeof(shape));
            tf_value_error(st, "%s has shape %s, expected (batch, key_length) = (%lld, %lld)", name,
                           shape, (long long)B, (long long)S);
            return -1;
        }
        if (!(PyArray_ISINTEGER(mk) || PyArray_ISBOOL(mk) || PyArray_ISFLOAT(mk))) {
            tf_type_error(st, "%s must hold 0/1 integers, bools or floats, got %s", name,
                          tf_dtype_name(mk));
            return -1;
        }
        arr->key_mask = (PyArrayObject *)PyArray_FROMANY(
            mask_obj, NPY_BOOL, 2, 2, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_FORCECAST);
        if (arr->key_mask == NULL) {
            return -1;
        }
        c->key_mask = PyArray_DATA(arr->key_mask);
        return 0;
    }
    if (PyArray_NDIM(mk) != 4 && PyArray_NDIM(mk) != 3) {
        tf_value_error(
            st,
            "%s must be (batch, key_length) or a 3-D/4-D additive float mask, got %d dimensions",
            name, PyArray_NDIM(mk));
        return -1;
    }
    if ((arr->mask = tf_arg_f32(st, mask_obj, name, 3, 4)) == NULL) {
        return -1;
    }
    const int64_t full[4] = {B, m->H, T, S};
    int64_t ms[4];
    if (tf_attn_broadcast(st, arr->mask, name, full, ms) < 0) {
        return -1;
    }
    c->m_sb = ms[0];
    c->m_sh = ms[1];
    c->m_sl = ms[2];
    c->m_ss = ms[3];
    c->mask = PyArray_DATA(arr->mask);
    return 0;
}

int64_t
tf_mha_parse_cache(tf_state *st, const tf_mha *m, PyObject *cache_obj, PyObject *layer_obj,
                   int64_t B, int64_t T, tf_kvcache **cache, int64_t *layer)
{
    *cache = NULL;
    if (cache_obj == NULL || cache_obj == Py_None) {
        return 0;
    }
    if (m->cross && tf_kvcache_check(st, cache_obj)) {
        tf_value_error(st, "past_key_values is for self-attention layers");
        return -1;
    }
    return tf_kvcache_bind(st, cache_obj, layer_obj, B, m->KVH, m->D, T, cache, layer);
}

int
tf_mha_parse_cross_kv(tf_state *st, const tf_mha *m, PyObject *kv_obj, int64_t B,
                      PyArrayObject **kv, tf_mha_call *c)
{
    *kv = NULL;
    if (kv_obj == NULL || kv_obj == Py_None) {
        return 0;
    }
    if (!m->cross) {
        tf_value_error(st, "encoder_key_values given to a layer without cross-attention");
        return -1;
    }
    PyArrayObject *a = tf_arg_f32(st, kv_obj, "encoder_key_values", 3, 3);
    if (a == NULL) {
        return -1;
    }
    /* B / G rows: each shared by G consecutive rows (beam search: an input's beams) */
    const int64_t kB = PyArray_DIM(a, 0);
    if (kB < 1 || B % kB != 0 || PyArray_DIM(a, 1) < 1 || PyArray_DIM(a, 2) != 2 * m->KVH * m->D) {
        char shape[96];
        tf_shape_str(a, shape, sizeof(shape));
        tf_value_error(
            st,
            "encoder_key_values has shape %s, expected (batch / G, S >= 1, 2 * kv_heads * "
            "head_dim) = "
            "(%lld / G, S, %lld) (the cross-attention kv_proj output; G consecutive rows, such as "
            "one input's beams, may share a row)",
            shape, (long long)B, (long long)(2 * m->KVH * m->D));
        Py_DECREF(a);
        return -1;
    }
    *kv = a;
    c->enc_kv = PyArray_DATA(a);
    c->S = PyArray_DIM(a, 1);
    c->kv_group = B / kB;
    return 0;
}

int
tf_mha_parse(tf_state *st, const tf_mha *m, int64_t B, int64_t T, PyObject *mask_obj,
             const char *mask_name, PyObject *enc_obj, PyObject *pos_obj, long long offset,
             PyObject *bias_obj, int output_attentions, tf_mha_arrays *arr, tf_mha_call *c)
{
    tf_kvcache *cache = c->cache; /* set by the caller from tf_mha_parse_cache, kept */
    int64_t layer = c->layer;
    const float *enc_kv = c->enc_kv; /* set by tf_mha_parse_cross_kv, kept */
    const int64_t kv_S = c->S, G = enc_kv != NULL && c->kv_group > 1 ? c->kv_group : 1;
    const int64_t past = cache ? tf_kvcache_seen(cache, layer) : 0; /* tokens before this call */
    int64_t S = T + past;
    memset(arr, 0, sizeof(*arr));
    memset(c, 0, sizeof(*c));
    c->cache = cache;
    c->layer = layer;
    if (m->cross && enc_kv != NULL) {
        if (enc_obj != NULL && enc_obj != Py_None) {
            tf_value_error(st, "give encoder_hidden_states or encoder_key_values, not both");
            goto fail;
        }
        S = kv_S;
        c->enc_kv = enc_kv;
        c->kv_group = G;
        if (G > 1 && (output_attentions || (bias_obj != NULL && bias_obj != Py_None) ||
                      (mask_obj != NULL && mask_obj != Py_None && PyArray_Check(mask_obj) &&
                       PyArray_NDIM((PyArrayObject *)mask_obj) != 2))) {
            tf_value_error(st,
                           "encoder_key_values shared by %lld rows each takes only a "
                           "(batch / %lld, S) encoder_attention_mask: no bias, 3-D/4-D mask "
                           "or output_attentions",
                           (long long)G, (long long)G);
            goto fail;
        }
    }
    else if (m->cross) {
        if (enc_obj == NULL || enc_obj == Py_None) {
            tf_value_error(st,
                           "cross-attention needs encoder_hidden_states (or encoder_key_values)");
            goto fail;
        }
        if ((arr->enc = tf_arg_f32(st, enc_obj, "encoder_hidden_states", 3, 3)) == NULL) {
            goto fail;
        }
        if (PyArray_DIM(arr->enc, 0) != B || PyArray_DIM(arr->enc, 2) != m->kv_hidden) {
            char shape[96];
            tf_shape_str(arr->enc, shape, sizeof(shape));
            tf_value_error(st, "encoder_hidden_states has shape %s, expected (%lld, S, %lld)",
                           shape, (long long)B, (long long)m->kv_hidden);
            goto fail;
        }
        if (tf_check_nonempty(st, arr->enc, "encoder_hidden_states") < 0 ||
            tf_check_finite(st, arr->enc, "encoder_hidden_states") < 0) {
            goto fail;
        }
        S = PyArray_DIM(arr->enc, 1);
        c->enc = PyArray_DATA(arr->enc);
    }
    else if (enc_obj != NULL && enc_obj != Py_None) {
        tf_value_error(st, "encoder_hidden_states given to a layer without cross-attention");
        goto fail;
    }
    /* shared encoder rows: the key mask has one row per encoder row */
    if (mask_obj != NULL && mask_obj != Py_None &&
        parse_mask(st, m, mask_obj, mask_name, B / G, T, S, arr, c) < 0) {
        goto fail;
    }
    if (bias_obj != NULL && bias_obj != Py_None) {
        if ((arr->bias = tf_arg_f32(st, bias_obj, "bias", 2, 4)) == NULL) {
            goto fail;
        }
        const int64_t full[4] = {B, m->H, T, S};
        int64_t bs[4];
        if (tf_attn_broadcast(st, arr->bias, "bias", full, bs) < 0) {
            goto fail;
        }
        c->b_sb = bs[0];
        c->b_sh = bs[1];
        c->b_sl = bs[2];
        c->b_ss = bs[3];
        c->bias = PyArray_DATA(arr->bias);
    }
    if (pos_obj != NULL && pos_obj != Py_None) {
        if (m->rotary_dim == 0) {
            tf_value_error(st, "position_ids given but this layer has no rotary embedding");
            goto fail;
        }
        arr->positions =
            (PyArrayObject *)PyArray_FROMANY(pos_obj, NPY_INT64, 1, 2, NPY_ARRAY_C_CONTIGUOUS);
        if (arr->positions == NULL) {
            goto fail;
        }
        int pnd = PyArray_NDIM(arr->positions);
        if (PyArray_DIM(arr->positions, pnd - 1) != T ||
            (pnd == 2 && PyArray_DIM(arr->positions, 0) != B)) {
            tf_value_error(st, "position_ids must be (batch, seq_len) = (%lld, %lld)", (long long)B,
                           (long long)T);
            goto fail;
        }
        if (pnd == 1 && B > 1) {
            /* (T,) positions shared by the batch: broadcast to (B, T). */
            npy_intp d[2] = {(npy_intp)B, (npy_intp)T};
            PyArrayObject *full = (PyArrayObject *)PyArray_SimpleNew(2, d, NPY_INT64);
            if (full == NULL) {
                goto fail;
            }
            for (int64_t b = 0; b < B; b++) {
                memcpy((int64_t *)PyArray_DATA(full) + b * T, PyArray_DATA(arr->positions),
                       (size_t)T * sizeof(int64_t));
            }
            Py_SETREF(arr->positions, full);
        }
        c->positions = PyArray_DATA(arr->positions);
    }
    if (offset < 0) {
        tf_value_error(st, "position_offset must be >= 0, got %lld", offset);
        goto fail;
    }
    c->position_offset = offset + past; /* with a cache, positions continue after it */
    if (output_attentions) {
        npy_intp wdims[4] = {(npy_intp)B, (npy_intp)m->H, (npy_intp)T, (npy_intp)S};
        if ((arr->weights = (PyArrayObject *)PyArray_SimpleNew(4, wdims, NPY_FLOAT32)) == NULL) {
            goto fail;
        }
        c->weights = PyArray_DATA(arr->weights);
    }
    c->B = B;
    c->T = T;
    c->S = S;
    return 0;
fail:
    tf_mha_arrays_release(arr);
    return -1;
}

const tf_rows_names tf_hidden_states_names = {"hidden_states", 3, 3, "hidden_size"};

static PyObject *
mha_call(tf_mha *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"hidden_states",
                             "attention_mask",
                             "encoder_hidden_states",
                             "position_ids",
                             "position_offset",
                             "bias",
                             "residual",
                             "output_attentions",
                             "out",
                             "cu_seqlens",
                             "past_key_values",
                             "layer_idx",
                             "encoder_key_values",
                             NULL};
    PyObject *x_obj, *mask_obj = Py_None, *enc_obj = Py_None, *pos_obj = Py_None,
                     *bias_obj = Py_None, *res_obj = Py_None, *out_obj = Py_None, *cu_obj = Py_None,
                     *cache_obj = Py_None, *layer_obj = Py_None, *kv_obj = Py_None, *result = NULL;
    long long offset = 0;
    int output_attentions = 0;
    PyArrayObject *enc_kv = NULL;
    tf_mha_arrays arr = {0};
    tf_rows_call rows = {0};
    tf_mha_call c = {0};
    tf_err err = {0};
    tf_state *st = tf_state_of((PyObject *)self);
    if (!TF_PARSE(st, args, kwds, "O|O$OOLOOpOOOOO:MultiHeadAttention.__call__", kwlist, &x_obj,
                  &mask_obj, &enc_obj, &pos_obj, &offset, &bias_obj, &res_obj, &output_attentions,
                  &out_obj, &cu_obj, &cache_obj, &layer_obj, &kv_obj)) {
        return NULL;
    }
    /* hidden_states, residual and out follow the row-wise layer rules: (B, T, C) rows */
    if (tf_rows_call_parse(st, x_obj, res_obj, out_obj, self->hidden, self->hidden,
                           &tf_hidden_states_names, &rows) < 0) {
        goto done;
    }
    if (tf_mha_parse_cache(st, self, cache_obj, layer_obj, PyArray_DIM(rows.x, 0),
                           PyArray_DIM(rows.x, 1), &c.cache, &c.layer) < 0) {
        goto done;
    }
    if (tf_mha_parse_cross_kv(st, self, kv_obj, PyArray_DIM(rows.x, 0), &enc_kv, &c) < 0) {
        goto done;
    }
    if (tf_mha_parse(st, self, PyArray_DIM(rows.x, 0), PyArray_DIM(rows.x, 1), mask_obj,
                     "attention_mask", enc_obj, pos_obj, offset, bias_obj, output_attentions, &arr,
                     &c) < 0) {
        goto done;
    }
    if (cu_obj != Py_None && c.cache != NULL) {
        tf_value_error(st, "cu_seqlens cannot be combined with past_key_values");
        goto done;
    }
    if (cu_obj != Py_None &&
        tf_mha_parse_packed(st, self, cu_obj, PyArray_DIM(rows.x, 1), &arr, &c) < 0) {
        goto done;
    }
    if (arr.enc && tf_check_no_overlap(st, rows.out, arr.enc, "encoder_hidden_states") < 0) {
        goto done;
    }
    if (enc_kv && tf_check_no_overlap(st, rows.out, enc_kv, "encoder_key_values") < 0) {
        goto done;
    }
    c.x = PyArray_DATA(rows.x);
    c.y = PyArray_DATA(rows.out);
    c.post = rows.post;
    c.other = rows.other;
    int rc;
    Py_BEGIN_ALLOW_THREADS tf_threads_begin();
    rc = tf_mha_forward(self, &c, &err);
    Py_END_ALLOW_THREADS if (rc < 0)
    {
        tf_err_raise(st, &err);
        goto done;
    }
    result = output_attentions ? PyTuple_Pack(2, rows.out, arr.weights) : Py_NewRef(rows.out);
done:
    if (c.cache != NULL) {
        tf_kvcache_release(c.cache);
    }
    Py_XDECREF(enc_kv);
    tf_rows_call_release(&rows);
    tf_mha_arrays_release(&arr);
    return result;
}

static PyObject *
mha_repr(tf_mha *self)
{
    return PyUnicode_FromFormat("MultiHeadAttention(hidden_size=%lld, num_heads=%lld, "
                                "num_key_value_heads=%lld, head_dim=%lld, "
                                "is_causal=%s, cross=%s, rotary_dim=%lld)",
                                (long long)self->hidden, (long long)self->H, (long long)self->KVH,
                                (long long)self->D, self->causal ? "True" : "False",
                                self->cross ? "True" : "False", (long long)self->rotary_dim);
}

static PyObject *
mha_get_linear(tf_mha *self, void *closure)
{
    tf_linear *lin = *(tf_linear **)((char *)self + (Py_ssize_t)closure);
    if (lin == NULL) {
        Py_RETURN_NONE;
    }
    return Py_NewRef((PyObject *)lin);
}

static PyObject *
mha_get_scale(tf_mha *self, void *closure)
{
    return PyFloat_FromDouble(self->scale);
}

static PyObject *
mha_get_softcap(tf_mha *self, void *closure)
{
    if (self->softcap > 0.0f) {
        return PyFloat_FromDouble(self->softcap);
    }
    Py_RETURN_NONE;
}

static PyMemberDef mha_members[] = {
    {"hidden_size", T_LONGLONG, offsetof(tf_mha, hidden), READONLY, "C"},
    {"num_heads", T_LONGLONG, offsetof(tf_mha, H), READONLY, "H"},
    {"num_key_value_heads", T_LONGLONG, offsetof(tf_mha, KVH), READONLY, "KVH"},
    {"head_dim", T_LONGLONG, offsetof(tf_mha, D), READONLY, "D"},
    {"rotary_dim", T_LONGLONG, offsetof(tf_mha, rotary_dim), READONLY, "0 = no rotary embedding"},
    {"is_causal", T_INT, offsetof(tf_mha, causal), READONLY,
     "1 if each query sees only keys up to its own position."},
    {"is_cross_attention", T_INT, offsetof(tf_mha, cross), READONLY,
     "1 if keys and values come from encoder_hidden_states."},
    {NULL},
};

static PyGetSetDef mha_getset[] = {
    {"qkv_proj", (getter)mha_get_linear, NULL,
     "Fused q/k/v projection (self) or q projection (cross).", (void *)offsetof(tf_mha, qkv)},
    {"kv_proj", (getter)mha_get_linear, NULL, "Fused k/v projection (cross-attention) or None.",
     (void *)offsetof(tf_mha, kv)},
    {"o_proj", (getter)mha_get_linear, NULL, "Output projection.", (void *)offsetof(tf_mha, o)},
    {"scale", (getter)mha_get_scale, NULL, "Softmax scale applied to q·k.", NULL},
    {"softcap", (getter)mha_get_softcap, NULL,
     "Attention logit soft-cap c (scores become c tanh(s / c)), or None.", NULL},
    {NULL},
};

PyDoc_STRVAR(
    mha_doc,
    "MultiHeadAttention(hidden_size, num_heads, *, num_key_value_heads=None, head_dim=None,\n"
    "                   q_weight=None, k_weight=None, v_weight=None, q_bias=None, k_bias=None,\n"
    "                   v_bias=None, qkv_weight=None, qkv_bias=None, o_weight, o_bias=None,\n"
    "                   transposed=False, is_causal=False, scale=None, is_cross_attention=False,\n"
    "                   kv_input_size=None, rotary_dim=None, rope_theta=None, rope_inv_freq=None,\n"
    "                   rope_interleaved=False, sliding_window=None, dtype='float32',\n"
    "                   relative_attention_bias=None, relative_attention_num_buckets=32,\n"
    "                   relative_attention_max_distance=128, alibi=False,\n"
    "                   q_norm_weight=None, k_norm_weight=None, qk_norm_eps=1e-6,\n"
    "                   softcap=None)\n--\n\n"
    "Attention layer: projections, optional rotary embedding, fused attention kernel, output\n"
    "projection. Self-attention fuses q/k/v into one GEMM (give q/k/v weights or an already\n"
    "fused qkv_weight); GQA/MQA via num_key_value_heads without copying K/V. Weights are\n"
    "(out, in) like nn.Linear, or (in, out) with transposed=True (GPT-2 Conv1D).\n"
    "Rotary: rope_theta (default inverse frequencies) or rope_inv_freq (scaled variants) over\n"
    "the first rotary_dim dims of each head, half-split (Llama) or interleaved (GPT-J).\n"
    "sliding_window=W lets each query see itself and the W - 1 keys before it (Mistral).\n"
    "q_norm_weight/k_norm_weight (head_dim,) apply an RMSNorm (eps qk_norm_eps) to every query\n"
    "and key head before the rotary embedding (Qwen3).\n"
    "softcap=c caps the scaled scores to c * tanh(s / c) before masking (Gemma 2's\n"
    "attn_logit_softcapping), inside the attention kernel.\n"
    "Position biases computed inside the attention kernel (never an (H, T, S) tensor):\n"
    "relative_attention_bias=table (num_buckets, num_heads) adds T5's bucketed relative bias\n"
    "(relative_attention_num_buckets=32, relative_attention_max_distance=128; bidirectional\n"
    "buckets unless is_causal, queries after the cached rows when decoding); alibi=True adds\n"
    "BLOOM's ALiBi, slope_h * (key - query) (softmax-equal to HF's slope_h * key position for\n"
    "prefix or suffix padding).\n"
    "dtype 'bfloat16' or 'int8' stores the projections so (see Linear).\n"
    "Integer options also accept None (their default), as HF configs hold them.\n\n"
    "Call: ``attn(hidden_states, attention_mask=None, *, encoder_hidden_states=None,\n"
    "position_ids=None, position_offset=0, bias=None, residual=None, output_attentions=False,\n"
    "out=None, cu_seqlens=None, past_key_values=None, layer_idx=None, encoder_key_values=None)``. "
    "hidden_states is (B, T, C) float32. attention_mask is HF's (B, S) padding\n"
    "mask (1 = attend) or an additive float mask broadcastable to (B, H, T, S); bias is an\n"
    "additive float bias broadcastable the same way (relative positions). Returns (B, T, C),\n"
    "or (output, attentions) with attentions (B, H, T, S) when output_attentions=True.\n"
    "Queries whose keys are all masked get a zero context vector.\n\n"
    "Padding-free: with cu_seqlens (B + 1,) int64 row offsets, hidden_states (1, N, C) holds B\n"
    "sequences back to back; GEMMs run on the N real tokens and each sequence attends within\n"
    "itself (no masks then; rotary layers need position_ids (1, N)).\n\n"
    "Incremental decoding: past_key_values=cache (a tfcore.KVCache), layer_idx=i appends this\n"
    "call's keys/values to layer i of the cache and attends over all of them (causal diagonal\n"
    "aligned to the end, as HF); attention_mask then spans (B, cached + T) and rotary\n"
    "positions continue after the cached tokens (position_offset adds to that).\n\n"
    "Cross-attention keys/values computed once: "
    "encoder_key_values=attn.kv_proj(encoder_hidden_states),\n"
    "(B, S, 2 * num_key_value_heads * head_dim), replaces encoder_hidden_states (generation\n"
    "projects the encoder output once instead of at every step).");

static PyType_Slot mha_slots[] = {
    {Py_tp_new, mha_new},           {Py_tp_dealloc, mha_dealloc},
    {Py_tp_traverse, mha_traverse}, {Py_tp_clear, mha_clear},
    {Py_tp_call, mha_call},         {Py_tp_repr, mha_repr},
    {Py_tp_members, mha_members},   {Py_tp_getset, mha_getset},
    {Py_tp_doc, (void *)mha_doc},   {0, NULL},
};

PyType_Spec tf_multi_head_attention_spec = {
    .name = "tfcore.MultiHeadAttention",
    .basicsize = sizeof(tf_mha),
    .flags =
        Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = mha_slots,
};
