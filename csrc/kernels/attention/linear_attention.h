/* linear_attention.h — causal linear attention with decay (RetNet retention, Gated Linear
 * Attention, kernelized linear attention) in three equivalent forms: the recurrence (decode),
 * chunkwise (prefill: state carried between chunks, causal attention inside a chunk) and
 * parallel (quadratic, can return the (L, L) weights).
 *
 * Per (b, h), with phi the feature map applied to q and k, a_t the decay of step t:
 *     S_t = diag(a_t) S_{t-1} + phi(k_t)^T v_t        S: (Dk, Dv), S_0 = s0 or 0
 *     z_t = a_t * z_{t-1} + phi(k_t)                   z: (Dk,),    z_0 = z0 or 0
 *     o_t = scale * phi(q_t) S_t   [ / (scale * phi(q_t) . z_t) when normalize ]
 * a_t = decay[h] for every channel (log_decay[h] = log decay[h] <= 0), exp(gate[b, h, t, :])
 * per channel (gate <= 0), or 1.
 *
 * Numerical safety: every exponential is of a sum of log-decays over a stretch of steps, so
 * its argument is <= 0. Chunkwise cumulates log-decays from each chunk's start
 * (b_i = g_s + ... + g_{s+i}) and uses exp(b_i - b_j), j <= i (inside a chunk),
 * exp(b_i) (state into the chunk) and exp(b_last - b_j) (keys into the next state), never
 * exp(-b). The chunkwise kernel's gated scores factor exp(b_i - b_j) through sub-block
 * boundaries into such factors; only inside a 16-row sub-block whose decay is at most 20 in
 * every channel does one factor exceed 1 (queries scaled by at most e^20: no overflow, no
 * loss). */
#ifndef TFCORE_KERNELS_ATTENTION_LINEAR_ATTENTION_H
#define TFCORE_KERNELS_ATTENTION_LINEAR_ATTENTION_H

#include "kernels/kernel.h"

typedef enum { TF_LA_PARALLEL = 0, TF_LA_RECURRENT, TF_LA_CHUNKWISE } tf_la_mode;
typedef enum { TF_LA_IDENTITY = 0, TF_LA_ELU1, TF_LA_RELU } tf_la_feature_map;

/* All arrays C-contiguous float32. */
/* clang-format off: one line per operand */
typedef struct {
    int64_t B, H, L, Dk, Dv;
    const float *q, *k;     /* (B, H, L, Dk) */
    const float *v;         /* (B, H, L, Dv) */
    const float *log_decay; /* (H,) log of the per-head decay (<= 0), or NULL */
    const float *gate;      /* (B, H, L, Dk) per-channel log-decay (<= 0), or NULL */
    const float *s0;        /* (B, H, Dk, Dv) initial state, or NULL (zeros) */
    const float *z0;        /* (B, H, Dk) initial normalizer, or NULL (zeros) */
    float *out;             /* (B, H, L, Dv) */
    float *s_out;           /* (B, H, Dk, Dv) final state, or NULL */
    float *z_out;           /* (B, H, Dk) final normalizer, or NULL */
    float *weights; /* (B, H, L, L) parallel mode only: o = weights v (+ state term), or NULL */
    tf_la_feature_map feature_map;
    int normalize;
    float scale;
    tf_la_mode mode;
    int64_t chunk; /* chunkwise: rows per chunk (>= 1) */
    int *bad;      /* set to 1 (and that head's output left unfinished) when q, k, v or the
                      gate hold a NaN or Inf or the gate a value > 0: the kernel checks rows as
                      it first reads them (no separate pass over memory); the caller, on that,
                      rescans for the exact message. Must point to 0 on entry. */
} tf_la_args;
/* clang-format on */

/* Runs with OpenMP over (b, h) on tf_threads_begin()'s thread count. 0 / -1 with err filled
 * (allocation failure); 0 with *a->bad set on a bad input (the outputs then incomplete). */
int tf_linear_attention(const tf_la_args *a, tf_err *err);

#endif /* TFCORE_KERNELS_ATTENTION_LINEAR_ATTENTION_H */
