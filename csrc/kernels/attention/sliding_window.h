/* sliding_window.h — Longformer's attention (sliding window with dilation, plus global
 * tokens with their own projections) for callers that hold no GIL. Memory is linear in the
 * sequence length: no (L, L) scores or masks are ever formed. */
#ifndef TFCORE_KERNELS_ATTENTION_SLIDING_WINDOW_H
#define TFCORE_KERNELS_ATTENTION_SLIDING_WINDOW_H

#include "kernels/kernel.h"

/* All float arrays are views with element strides per axis and a contiguous last axis.
 *
 * Semantics (those of Hugging Face's LongformerSelfAttention, plus dilation):
 *   - a token is real when real[b, j] != 0 (all real if real == NULL) and global when it is
 *     real and global[b, j] != 0; G = the most global tokens of any batch item;
 *   - a real, non-global query i attends, with q/k/v, to the keys j = i + dilation * t,
 *     |t| <= window, 0 <= j < L, that are real and not global, and to every global key of
 *     its batch item (each once): one softmax over both sets;
 *   - a global query i attends with its own projections (gq row = its slot among the global
 *     tokens of the batch item, in position order; gk, gv) to every real key; that output
 *     replaces the local one;
 *   - padding queries get zeros. */
/* clang-format off: one line per operand (pointer, strides, shape) */
typedef struct {
    const float *q;
    int64_t q_sb, q_sh, q_sl; /* (B, H, L, D) */
    const float *k;
    int64_t k_sb, k_sh, k_sl; /* (B, H, L, D) */
    const float *v;
    int64_t v_sb, v_sh, v_sl; /* (B, H, L, D) */
    float *out;
    int64_t o_sb, o_sh, o_sl; /* (B, H, L, D) */
    int64_t B, H, L, D;
    int64_t window;   /* one-sided: HF's attention_window // 2 */
    int64_t dilation; /* >= 1 */
    float scale;
    const uint8_t *real;   /* (B, L) or NULL */
    const uint8_t *global; /* (B, L) or NULL */
    int64_t G;             /* the caller's count of global slots */
    const float *gq;
    int64_t gq_sb, gq_sh, gq_sg; /* (B, H, G, D), or NULL: q's global rows */
    const float *gk;
    int64_t gk_sb, gk_sh, gk_sl; /* (B, H, L, D), or NULL: k */
    const float *gv;
    int64_t gv_sb, gv_sh, gv_sl; /* (B, H, L, D), or NULL: v */
    /* Optional outputs in Hugging Face's layout (contiguous):
     *   weights  (B, H, L, G + 2 window + 1): columns [0, G) the global keys by slot, then
     *            key i + dilation * t in column G + window + t; zero rows for global and
     *            padding queries;
     *   gweights (B, H, L, G): gweights[b, h, j, g] = weight of key j for global slot g. */
    float *weights;
    float *gweights;
} tf_swa_args;
/* clang-format on */

/* G for tf_swa_args: the most tokens that are both real and global in one batch item. */
int64_t tf_swa_global_slots(const uint8_t *real, const uint8_t *global, int64_t B, int64_t L);

/* Runs with OpenMP on tf_threads_begin()'s thread count. 0 / -1 with err filled. */
int tf_swa(const tf_swa_args *a, tf_err *err);

#endif /* TFCORE_KERNELS_ATTENTION_SLIDING_WINDOW_H */
