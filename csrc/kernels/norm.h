/* norm.h — LayerNorm / RMSNorm over rows, with an optional fused residual add. Plain
 * reference path and a vector path compiled per ISA, chosen at run time (tf_norm_isa());
 * parallel over rows with OpenMP when the work pays. */
#ifndef TFCORE_KERNELS_NORM_H
#define TFCORE_KERNELS_NORM_H

#include "kernels/kernel.h"

typedef enum { TF_NORM_LAYER = 0, TF_NORM_RMS = 1 } tf_norm_kind;

/* LayerNorm / RMSNorm parameters (owned by whoever built them: layers/norm.c). */
typedef struct {
    tf_norm_kind kind;
    int64_t C; /* normalized size */
    float eps;
    float *gamma; /* (C,) weight; for RMSNorm with offset, already 1 + w */
    float *beta;  /* (C,) bias or NULL (LayerNorm only) */
} tf_norm_params;

/* x is (M, C), residual (M, C) or NULL, y is (M, C); sum_out (M, C) or NULL receives
 * x + residual (the next residual of a pre-norm block). y may alias x, sum_out may alias
 * x or residual (row-wise: each row is read fully before it is written).
 *   LayerNorm: y = (s - mean(s)) / sqrt(var(s) + eps) * gamma + beta,  s = x + residual
 *   RMSNorm:   y = s / sqrt(mean(s^2) + eps) * gamma */
void tf_norm_rows(const tf_norm_params *n, const float *x, const float *residual, float *sum_out,
                  float *y, int64_t M);

/* Mamba-2's gated RMSNorm (HF's MambaRMSNormGated, norm_before_gate=False): y, z, out are
 * (M, C) rows of G groups of S = C / G channels, w is (C,); per row and group
 *     g = y * silu(z);   out = g / sqrt(mean_group(g^2) + eps) * w
 * out may alias y or z (each element is read before it is written). */
void tf_gated_rms_norm_rows(const float *y, const float *z, const float *w, int64_t M, int64_t C,
                            int64_t G, float eps, float *out);

#endif /* TFCORE_KERNELS_NORM_H */
