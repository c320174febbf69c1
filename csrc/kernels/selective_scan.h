/* selective_scan.h — Mamba's selective state-space scan (S6), prefill and one-token forms.
 *
 * Token-major layout; channel d of token t is x[b, t, d]. Per (b, d), with the state
 * s (N,) = state[b, d, :] (zeros at the start):
 *     delta = softplus(dt[b, t, d] + dt_bias[d])          (softplus(v) = v for v > 20)
 *     s     = exp(delta * A[d, :]) * s + delta * x[b, t, d] * Bm[b, t, :]
 *     y     = (s . Cm[b, t, :] + Dskip[d] * x[b, t, d]) * silu(z[b, t, d])
 * A = -exp(A_log) (negative: each step shrinks the state), computed once by the caller.
 * The state after the last token is written back, so a prefill of T tokens followed by
 * one-token calls equals one call over the whole sequence. */
#ifndef TFCORE_KERNELS_SELECTIVE_SCAN_H
#define TFCORE_KERNELS_SELECTIVE_SCAN_H

#include "kernels/kernel.h"

/* All arrays C-contiguous float32; y must not overlap the inputs or state. */
/* clang-format off: one line per operand */
typedef struct {
    int64_t B, T, D, N;   /* D channels, N state size per channel */
    const float *x;       /* (B, T, D) */
    const float *dt;      /* (B, T, D) time step before dt_bias and softplus */
    const float *dt_bias; /* (D,) or NULL */
    const float *A;       /* (D, N) */
    const float *Bm, *Cm; /* (B, T, N) input and output projections of the state */
    const float *Dskip;   /* (D,) or NULL */
    const float *z;       /* (B, T, D) gate or NULL (no gating) */
    float *state;         /* (B, D, N) in and out, or NULL (zeros in, nothing kept) */
    float *y;             /* (B, T, D) */
} tf_selective_scan_args;
/* clang-format on */

/* OpenMP over (b, d). 0 / -1 with err filled (allocation failure). */
int tf_selective_scan(const tf_selective_scan_args *a, tf_err *err);

#endif /* TFCORE_KERNELS_SELECTIVE_SCAN_H */
