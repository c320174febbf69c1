/* multi_head_attention.h — MultiHeadAttention's C-level API (used by TransformerBlock). */
#ifndef TFCORE_MHA_H
#define TFCORE_MHA_H

#include "layers/kv_cache.h"
#include "layers/linear.h"
#include "kernels/attention/position_bias.h"
#include "kernels/norm.h"

typedef struct {
    PyObject_HEAD int64_t hidden; /* C: width of hidden_states and of the output */
    int64_t kv_hidden;            /* width of encoder_hidden_states (cross-attention) */
    int64_t H, KVH, D;            /* query heads, key/value heads, head dim */
    float scale;
    float softcap; /* Gemma 2's attention logit soft-capping (sdpa.h), 0 = none */
    int causal;
    int cross;                         /* keys/values come from encoder_hidden_states */
    int64_t window_left, window_right; /* sliding window (-1 = unbounded) */
    tf_linear *qkv; /* self: (H + 2 KVH) D x C fused;  cross: H D x C (queries only) */
    tf_linear *kv;  /* cross: 2 KVH D x kv_hidden fused; NULL for self-attention */
    tf_linear *o;   /* C x H D */
    /* rotary position embedding on q and k (self-attention only) */
    int64_t rotary_dim; /* 0 = no rotary */
    int rope_interleaved;
    float *inv_freq; /* (rotary_dim / 2,) owned */
    tf_posbias pos;  /* T5 relative bias or ALiBi, computed per call (self-attention) */
    /* per-head RMSNorm of each query / key head before the rotary embedding (Qwen3's
     * q_norm / k_norm): gamma (D,) owned, NULL = none */
    tf_norm_params q_norm, k_norm;
} tf_mha;

/* Everything one attention call needs besides the layer. */
typedef struct {
    const float *x;          /* (B, T, C) hidden states */
    const float *enc;        /* (B, S, kv_hidden) for cross-attention, else NULL */
    const float *enc_kv;     /* or (B / kv_group, S, 2 KVH D) [keys | values] already projected
                              * (kv_proj of the encoder output; set by tf_mha_parse_cross_kv) */
    int64_t kv_group;        /* consecutive rows sharing one enc_kv row (the beams of one
                              * input): their queries attend to it as one item of kv_group * T
                              * queries; 0 or 1 = one enc_kv row per row */
    int64_t B, T, S;         /* S = T for self-attention */
    const uint8_t *key_mask; /* (B, S) true = attend (HF attention_mask), or NULL */
    const float *mask;       /* additive float mask, broadcast strides below, or NULL */
    int64_t m_sb, m_sh, m_sl, m_ss;
    const float *bias; /* additive bias (relative positions), or NULL */
    int64_t b_sb, b_sh, b_sl, b_ss;
    const int64_t *positions; /* (B, T) rotary positions, or NULL = offset + t;
                                     packed: (N,) positions, required with rotary */
    const int64_t *seq_start; /* packed (padding-free) rows: (B + 1,) offsets into N rows,
                                     T = the longest sequence; NULL = (B, T) layout */
    tf_kvcache *cache;        /* self-attention: append this call's keys/values to layer
                                     `layer` of the cache and attend over all of it; or NULL */
    int64_t layer;
    int64_t position_offset;
    float *weights; /* (B, H, T, S) attention probabilities out, or NULL */
    float *y;       /* (B, T, C) output */
    tf_post post;   /* residual handling of the output projection */
    const float *other;
} tf_mha_call;

/* Arrays a call holds while it runs (owned references). */
typedef struct {
    PyArrayObject *enc, *key_mask, *mask, *bias, *positions, *weights, *seq_start;
} tf_mha_arrays;
void tf_mha_arrays_release(tf_mha_arrays *a);

/* Validate the attention inputs of a call on hidden states (B, T, C) and fill c (all but
 * x, y, post, other). mask_name names the mask argument in messages. Any object may be
 * NULL or None. output_attentions allocates the (B, H, T, S) weights array. */
int tf_mha_parse(tf_state *st, const tf_mha *m, int64_t B, int64_t T, PyObject *mask_obj,
                 const char *mask_name, PyObject *enc_obj, PyObject *pos_obj, long long offset,
                 PyObject *bias_obj, int output_attentions, tf_mha_arrays *arr, tf_mha_call *c);

/* past_key_values=cache, layer_idx=i of a self-attention call on (B, T) tokens: checks the
 * cache against the layer, reserves room, takes it for this call (release with
 * tf_kvcache_release) and sets c->cache/c->layer. Returns the cached length (past), or -1.
 * Call BEFORE tf_mha_parse, whose masks then span past + T keys. */
int64_t tf_mha_parse_cache(tf_state *st, const tf_mha *m, PyObject *cache_obj, PyObject *layer_obj,
                           int64_t B, int64_t T, tf_kvcache **cache, int64_t *layer);

/* encoder_key_values=kv of a cross-attention call on batch B: the layer's kv_proj output
 * (B, S, 2 KVH D) float32 C-contiguous, used instead of projecting encoder_hidden_states
 * (generation projects the encoder output once, not per step). Returns a new reference the
 * caller holds for the call (NULL with an exception on error; *kv = NULL, no exception, when
 * kv_obj is NULL/None) and sets c->enc_kv and c->S. Call BEFORE tf_mha_parse, which keeps them. */
int tf_mha_parse_cross_kv(tf_state *st, const tf_mha *m, PyObject *kv_obj, int64_t B,
                          PyArrayObject **kv, tf_mha_call *c);

/* Padding-free calls: hidden_states (1, N, C) holds the sequences back to back and
 * cu_seqlens (B + 1,) int64 their row offsets (0 = cu[0] < cu[1] < ... < cu[B] = N).
 * Checks what cannot combine with it (masks, bias, attentions, cross-attention) and sets
 * c->seq_start, c->B and c->T = c->S = the longest sequence. Call after tf_mha_parse. */
int tf_mha_parse_packed(tf_state *st, const tf_mha *m, PyObject *cu_obj, int64_t N,
                        tf_mha_arrays *arr, tf_mha_call *c);

/* Argument names for tf_rows_call_parse on (B, T, C) hidden states. */
extern const tf_rows_names tf_hidden_states_names;

/* Without the GIL. 0 / -1 with err filled. */
int tf_mha_forward(const tf_mha *m, const tf_mha_call *c, tf_err *err);

#endif /* TFCORE_MHA_H */
