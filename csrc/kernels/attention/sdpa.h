/* sdpa.h — the fused attention kernel: softmax(scale * Q Kᵀ + mask + bias) V with
 * online softmax, for callers that hold no GIL (functional SDPA, MultiHeadAttention). */
#ifndef TFCORE_KERNELS_ATTENTION_SDPA_H
#define TFCORE_KERNELS_ATTENTION_SDPA_H

#include "kernels/kernel.h"

/* All pointers address float32 (bool_mask: uint8) with element strides per axis; the
 * last axis of q, k, v and out is contiguous. A stride of 0 broadcasts that axis. */
/* clang-format off: one line per operand (pointer, strides, shape) */
typedef struct {
    const float *q;
    int64_t q_sb, q_sh, q_sl; /* (B, H, L, D) */
    const float *k;
    int64_t k_sb, k_sh, k_ss; /* (B, KVH, S, D) */
    const float *v;
    int64_t v_sb, v_sh, v_ss; /* (B, KVH, S, Dv) */
    float *out;
    int64_t o_sb, o_sh, o_sl;       /* (B, H, L, Dv) */
    int64_t B, H, KVH, L, S, D, Dv; /* H % KVH == 0: head h reads kv head h / (H / KVH) */
    float scale;
    /* Logit soft-capping (Gemma 2): when softcap > 0 the scaled score s becomes
     * softcap * tanh(s / softcap) before masks and biases are added; 0 = none. */
    float softcap;
    /* Key j is visible to query i when all of these hold:
     *   causal:   j <= i + causal_offset   (0 = torch's top-left alignment; S - L = bottom-right)
     *   window:   d - j <= window_left (if >= 0) and j - d <= window_right (if >= 0),
     *             d = i + causal_offset (the query's own key)
     *   kv_len:   j < kv_len[b] (if kv_len != NULL)
     *   bool_mask[b, h, i, j] != 0 (if bool_mask != NULL)                                  */
    int causal;
    int64_t causal_offset;
    int64_t window_left, window_right;
    const int64_t *kv_len;
    const uint8_t *bool_mask;
    int64_t bm_sb, bm_sh, bm_sl, bm_ss;
    /* Added to the scaled scores (either may be NULL; -inf entries hide a key). */
    const float *mask;
    int64_t m_sb, m_sh, m_sl, m_ss;
    const float *bias;
    int64_t b_sb, b_sh, b_sl, b_ss;
    /* Position bias that depends only on key - query (T5 buckets, ALiBi; see position_bias.h):
     * rel (H, rel_sh) adds rel[h * rel_sh + (j - i) + (L - 1)] (NULL = none). */
    const float *rel;
    int64_t rel_sh;
    /* DeBERTa's disentangled bias (see disentangled_bias.h): when dis_idx != NULL, adds
     *   c2p[b, h, i, p] + p2c[b, h, j, p],  p = dis_idx[(i - j) + (S - 1)] in [0, P)
     * c2p (B, H, L, P) content-to-position scores q_i . Kr[p], p2c (B, H, S, P)
     * position-to-content scores k_j . Qr[p] (either may be NULL), already scaled; dis_idx
     * (L + S - 1) int32. O(L P + S P) memory per head instead of L x S. Not with seq_start. */
    const int32_t *dis_idx;
    const float *c2p;
    int64_t c2p_sb, c2p_sh, c2p_sl;
    const float *p2c;
    int64_t p2c_sb, p2c_sh, p2c_ss;
    /* ... or the same terms computed inside the kernel from the projected relative
     * embeddings (dis_P > 0; c2p/p2c then NULL): adds scale * (q_i . pos_key[h, p] +
     * k_j . pos_query[h, p]) with pos_key, pos_query (H, P, D) rows contiguous (head stride
     * pk_sh / pq_sh, 0 broadcasts; either may be NULL). The vector path computes the c2p
     * rows of a query block (P, BQ) and the p2c rows of a head (S, P) as small GEMMs in
     * per-thread buffers, so nothing of size L x P or L x S per head reaches memory. */
    const float *pos_key;
    int64_t pk_sh;
    const float *pos_query;
    int64_t pq_sh;
    int64_t dis_P;
    /* Packed (padding-free) sequences: when seq_start != NULL, sequence b occupies rows
     * seq_start[b] .. seq_start[b+1]-1 of q, k, v and out (row strides q_sl, k_ss, v_ss,
     * o_sl; the batch strides are unused), L = S = the longest sequence, and each sequence
     * attends within itself (self-attention). weights/lse are not available then. */
    const int64_t *seq_start;
    /* Optional outputs: softmax probabilities (B, H, L, S) contiguous, log-sum-exp (B, H, L). */
    float *weights;
    float *lse;
} tf_attn_args;
/* clang-format on */

/* Queries that see no key get a zero output, lse = -inf and all-zero weights.
 * Runs with OpenMP on tf_threads_begin()'s thread count. 0 / -1 with err filled. */
int tf_attention(const tf_attn_args *a, tf_err *err);

#endif /* TFCORE_KERNELS_ATTENTION_SDPA_H */
