/* ssd.h — Mamba-2's state-space duality (SSD) scan: scalar-per-head decay, grouped B/C, a
 * chunkwise form for prefill and the recurrent form for decoding.
 *
 * Token-major layout: x[b, t, h, :] (P,) is head h's input, B and C[b, t, g, :] (N,) are
 * shared by the H / G heads of group g = h / (H / G). Per (b, h), with the state
 * S (P, N) = state[b, h] (zeros at the start):
 *     delta = clamp(softplus(dt[b, t, h] + dt_bias[h]), dt_min, dt_max)
 *     S     = exp(delta A[h]) S + delta x[b, t, h]^T B[b, t, g]          (outer product)
 *     y     = S C[b, t, g] + Dskip[h] x[b, t, h]
 * Chunkwise (chunk rows Q): with a_i = delta_i A[h] and cs_i = a_s + ... + a_i from the chunk
 * start s (cs_i <= 0, and every exponential below is of a difference cs_i - cs_j <= 0),
 *     y_i = sum_{j <= i} (C_i . B_j) exp(cs_i - cs_j) delta_j x_j + exp(cs_i) S C_i
 *     S  <- exp(cs_last) S + sum_j exp(cs_last - cs_j) delta_j x_j^T B_j
 * the same sums in blocks: (Q, N) x (N, Q) scores, (Q, Q) x (Q, P) values. Both forms agree to
 * float32 rounding; the state after the last token is written back. */
#ifndef TFCORE_KERNELS_SSD_H
#define TFCORE_KERNELS_SSD_H

#include "kernels/kernel.h"

typedef enum { TF_SSD_RECURRENT = 0, TF_SSD_CHUNKWISE } tf_ssd_mode;

/* All arrays C-contiguous float32; y must not overlap the inputs or state. */
/* clang-format off: one line per operand */
typedef struct {
    int64_t B, T, H, P, G, N; /* H heads of P channels; G groups of B/C (H % G == 0); N state */
    const float *x;           /* (B, T, H, P) */
    const float *dt;          /* (B, T, H) time step before dt_bias and softplus */
    const float *dt_bias;     /* (H,) or NULL */
    float dt_min, dt_max;     /* clamp of delta (0, inf: none) */
    const float *A;           /* (H,) = -exp(A_log), <= 0 */
    const float *Bm, *Cm;     /* (B, T, G, N) */
    const float *Dskip;       /* (H,) or NULL */
    float *state;             /* (B, H, P, N) in and out, or NULL (zeros in, nothing kept) */
    float *y;                 /* (B, T, H, P) */
    tf_ssd_mode mode;
    int64_t chunk; /* chunkwise: rows per chunk (>= 1) */
} tf_ssd_args;
/* clang-format on */

/* OpenMP over (b, h). 0 / -1 with err filled (allocation failure). */
int tf_ssd(const tf_ssd_args *a, tf_err *err);

#endif /* TFCORE_KERNELS_SSD_H */
