/* ops.h — row-wise and elementwise kernels (norms, embedding gather, activations, GLU,
 * rotary embedding) as C functions other files call without the GIL. Each has a plain
 * reference path and an AVX-512 path chosen at run time (tf_cpu_has_avx512, and
 * tf_force_reference for tests); both parallelise over rows with OpenMP when the work
 * pays for it. */
#ifndef TFCORE_OPS_H
#define TFCORE_OPS_H

#include "tfcore.h"

/* ------------------------------------------------------------------ norms (norm.c) */

typedef enum { TF_NORM_LAYER = 0, TF_NORM_RMS = 1 } tf_norm_kind;

/* LayerNorm / RMSNorm parameters, owned by the Python object that holds them. */
typedef struct {
    PyObject_HEAD
    tf_norm_kind kind;
    int64_t C;          /* normalized size */
    float eps;
    float *gamma;       /* (C,) weight; for RMSNorm with offset, already 1 + w */
    float *beta;        /* (C,) bias or NULL (LayerNorm only) */
    int offset;         /* RMSNorm: weight stored as w - 1 (Gemma) */
    float *weight;      /* (C,) the weight as given when offset (gamma = 1 + weight), else NULL */
} tf_norm;

/* x is (M, C), residual (M, C) or NULL, y is (M, C); sum_out (M, C) or NULL receives
 * x + residual (the next residual of a pre-norm block). y may alias x, sum_out may alias
 * x or residual (row-wise: each row is read fully before it is written).
 *   LayerNorm: y = (s - mean(s)) / sqrt(var(s) + eps) * gamma + beta,  s = x + residual
 *   RMSNorm:   y = s / sqrt(mean(s^2) + eps) * gamma */
void tf_norm_rows(const tf_norm *n, const float *x, const float *residual, float *sum_out,
                  float *y, int64_t M);

/* The same through a Python LayerNorm/RMSNorm object (borrowed; checked by the caller). */
void tf_norm_apply(PyObject *norm, const float *x, const float *residual, float *sum_out,
                   float *y, int64_t M);
/* A layer's norm argument `name`: a LayerNorm or RMSNorm over C features, else raises. 0 / -1. */
int tf_norm_check_arg(tf_state *st, PyObject *norm, const char *name, int64_t C);

/* ------------------------------------------------------------------ embedding (embedding.c) */

/* ids is (M,) int32 or int64, table is (V, C), out is (M, C). Fails (err names the first
 * bad id and its position) if an id is outside [0, V); nothing is guaranteed about out then. */
int tf_embedding_gather(const void *ids, int ids_int64, int64_t M, const float *table,
                        int64_t V, int64_t C, float *out, tf_err *err);

/* ------------------------------------------------------------------ activations (act.c) */

/* y = act(x) elementwise over n values; y may alias x. */
void tf_activation(const float *x, float *y, int64_t n, tf_act act);
/* The same on the calling thread only (inside a caller's parallel region). */
void tf_activation_serial(const float *x, float *y, int64_t n, tf_act act);

/* x is (M, 2F) = [gate | up] per row, y is (M, F): y = act(gate) * up. */
void tf_glu(const float *x, float *y, int64_t M, int64_t F, tf_act act);

/* ------------------------------------------------------------------ rotary (posenc.c) */

/* Rotates, in place, the first rotary_dim dims of every head vector of a (B, T, heads, D)
 * view with element strides sb, st, sh (the D values of a head are contiguous).
 * Position of (b, t) is positions[b * T + t] if positions != NULL, else offset + t.
 * angle_i = position * inv_freq[i], i < rotary_dim / 2.
 * Half-split (Llama, GPT-NeoX): pairs (i, i + rotary_dim/2); interleaved (GPT-J): (2i, 2i+1). */
void tf_rope_inplace(float *x, int64_t B, int64_t T, int64_t heads, int64_t D, int64_t sb,
                     int64_t st, int64_t sh, const int64_t *positions, int64_t offset,
                     const float *inv_freq, int64_t rotary_dim, int interleaved);

#endif /* TFCORE_OPS_H */
