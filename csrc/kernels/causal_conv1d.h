/* causal_conv1d.h — causal depthwise 1-D convolution with a carried state, fused with SiLU:
 * the short convolution of Mamba, Mamba-2 and Jamba (and of other recurrent token mixers).
 *
 * Token-major layout (the layout the projection GEMM writes): channel c of token t is
 * x[b, t, c]. With K taps w[c, 0..K-1] (HF's conv1d.weight[:, 0, :]) and the K - 1 inputs
 * before the first token held in state[b, c, 0..K-2] (oldest first; zeros at the start):
 *     u[b, s, c] = x[b, s, c] for s >= 0,  state[b, c, K - 1 + s] for -(K-1) <= s < 0
 *     y[b, t, c] = act(bias[c] + sum_j w[c, j] u[b, t - (K-1) + j, c])     act = SiLU or none
 * afterwards state[b, c, i] = u[b, T - (K-1) + i, c]: the last K - 1 inputs, so prefill (any
 * T) and one-token decode (T = 1) are one call each and two calls equal one. */
#ifndef TFCORE_KERNELS_CAUSAL_CONV1D_H
#define TFCORE_KERNELS_CAUSAL_CONV1D_H

#include "kernels/kernel.h"

/* All arrays C-contiguous float32; y must not overlap x or state. */
/* clang-format off: one line per operand */
typedef struct {
    int64_t B, T, C, K; /* K >= 1 taps */
    const float *x;     /* (B, T, C) */
    const float *w;     /* (C, K) */
    const float *bias;  /* (C,) or NULL */
    float *state;       /* (B, C, K - 1) in and out, or NULL (zeros in, nothing kept) */
    float *y;           /* (B, T, C) */
    int silu;           /* 1: y = silu(conv), 0: y = conv */
} tf_causal_conv1d_args;
/* clang-format on */

/* OpenMP over (batch, channel blocks) on tf_threads_begin()'s thread count. 0 / -1 with err
 * filled (allocation failure). */
int tf_causal_conv1d(const tf_causal_conv1d_args *a, tf_err *err);

#endif /* TFCORE_KERNELS_CAUSAL_CONV1D_H */
