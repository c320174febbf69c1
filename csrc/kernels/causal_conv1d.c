/* causal_conv1d.c — causal depthwise conv1d with state, fused SiLU (kernels/causal_conv1d.h).
 *
 * The taps are transposed once per call to wT (K, C) and the state of each batch row to
 * pre (K - 1, C), so every tap is a contiguous row and the vector path runs along channels:
 * output row t is act(bias + sum_j wT[j] * u[t - (K-1) + j]) with u[s] = x[s] or pre[K-1+s]. */
#include "kernels/causal_conv1d.h"

#include "kernels/simd.h"

#include <math.h>
#include <string.h>

/* Channels per OpenMP work item. */
#define CONV_BLOCK 256
/* Calls with less work than this (B * T * C * K) stay on one thread. */
#define PARALLEL_MIN_WORK 65536

#ifdef TF_ISA_PASS
/* ------------------------------------------------------------------ vector path (per ISA) */

/* src[j] (n,) for j < K, wT rows (n,) with row stride ldw, bias (n,) or NULL, y (n,):
 * y = act(bias + sum_j wT[j] * src[j]) */
void
TF_ISA_FN(tf_conv1d_row)(const float *const *src, const float *wT, int64_t ldw, const float *bias,
                         int64_t K, int64_t n, int silu, float *y)
{
    const tf_vf one = tf_vset1(1.0f);
    for (int64_t i = 0; i < n; i += TF_VW) {
        const int64_t len = n - i;
        const int full = len >= TF_VW;
        tf_vf acc = bias ? (full ? tf_vload(bias + i) : tf_vload_n(bias + i, len)) : tf_vzero();
        for (int64_t j = 0; j < K; j++) {
            const float *s = src[j] + i, *w = wT + j * ldw + i;
            acc = full ? tf_vfma(tf_vload(w), tf_vload(s), acc)
                       : tf_vfma(tf_vload_n(w, len), tf_vload_n(s, len), acc);
        }
        if (silu) {
            acc = tf_vdiv(acc, tf_vadd(one, tf_vexp(tf_vsub(tf_vzero(), acc))));
        }
        tf_vstore_n(y + i, acc, len);
    }
}

#else /* the reference path and the dispatcher, compiled once */

TF_ISA_DECLARE(void, tf_conv1d_row,
               (const float *const *src, const float *wT, int64_t ldw, const float *bias, int64_t K,
                int64_t n, int silu, float *y))

#define CAUSAL_CONV1D_ISAS (TF_ISA_BIT(TF_ISA_AVX512) | TF_ISA_BIT(TF_ISA_AVX2))

tf_isa_level
tf_causal_conv1d_isa(void)
{
    return tf_isa_for(CAUSAL_CONV1D_ISAS);
}

/* ------------------------------------------------------------------ reference path */

/* as the vector path: y (n,) = act(bias + sum_j wT[j] * src[j]) */
static void
conv1d_row_ref(const float *const *src, const float *wT, int64_t ldw, const float *bias, int64_t K,
               int64_t n, int silu, float *y)
{
    for (int64_t i = 0; i < n; i++) {
        float acc = bias ? bias[i] : 0.0f;
        for (int64_t j = 0; j < K; j++) {
            acc = fmaf(wT[j * ldw + i], src[j][i], acc);
        }
        y[i] = silu ? acc / (1.0f + expf(-acc)) : acc;
    }
}

#define MAX_TAPS 64

int
tf_causal_conv1d(const tf_causal_conv1d_args *a, tf_err *err)
{
    const int64_t B = a->B, T = a->T, C = a->C, K = a->K, P = K - 1;
    if (K < 1 || K > MAX_TAPS) {
        tf_err_set(err, TF_ERR_VALUE, "causal_conv1d: %lld taps, expected 1..%d", (long long)K,
                   MAX_TAPS);
        return -1;
    }
    void (*row_fn)(const float *const *, const float *, int64_t, const float *, int64_t, int64_t,
                   int, float *) = conv1d_row_ref;
    switch (tf_causal_conv1d_isa()) {
        case TF_ISA_AVX512: row_fn = tf_conv1d_row_avx512; break;
        case TF_ISA_AVX2: row_fn = tf_conv1d_row_avx2; break;
        default: break;
    }
    /* wT (K, C) = w transposed; pre (B, P, C): the state of each row, token-major */
    float *wT = tf_malloc((size_t)(K * C + B * P * C + 1) * sizeof(float));
    if (wT == NULL) {
        tf_err_set(err, TF_ERR_MEMORY, "causal_conv1d: no memory for %lld floats",
                   (long long)(K * C + B * P * C));
        return -1;
    }
    float *pre = wT + K * C;
    for (int64_t c = 0; c < C; c++) {
        for (int64_t j = 0; j < K; j++) {
            wT[j * C + c] = a->w[c * K + j];
        }
    }
    for (int64_t b = 0; b < B; b++) {
        for (int64_t c = 0; c < C; c++) {
            for (int64_t i = 0; i < P; i++) {
                pre[(b * P + i) * C + c] = a->state ? a->state[(b * C + c) * P + i] : 0.0f;
            }
        }
    }
    const int64_t nblk = (C + CONV_BLOCK - 1) / CONV_BLOCK;
#pragma omp parallel for schedule(static) if (B * T * C * K >= PARALLEL_MIN_WORK && B * nblk > 1)
    for (int64_t item = 0; item < B * nblk; item++) {
        const int64_t b = item / nblk, c0 = (item % nblk) * CONV_BLOCK;
        const int64_t n = C - c0 < CONV_BLOCK ? C - c0 : CONV_BLOCK;
        const float *xb = a->x + b * T * C, *pb = pre + b * P * C;
        const float *src[MAX_TAPS];
        for (int64_t t = 0; t < T; t++) {
            for (int64_t j = 0; j < K; j++) {
                const int64_t s = t - P + j; /* input position of tap j */
                src[j] = (s >= 0 ? xb + s * C : pb + (P + s) * C) + c0;
            }
            row_fn(src, wT + c0, C, a->bias ? a->bias + c0 : NULL, K, n, a->silu,
                   a->y + (b * T + t) * C + c0);
        }
    }
    if (a->state) { /* the last P inputs: state[b, c, i] = u[T - P + i] */
        for (int64_t b = 0; b < B; b++) {
            const float *xb = a->x + b * T * C, *pb = pre + b * P * C;
            for (int64_t i = 0; i < P; i++) {
                const int64_t s = T - P + i;
                const float *row = s >= 0 ? xb + s * C : pb + (P + s) * C;
                for (int64_t c = 0; c < C; c++) {
                    a->state[(b * C + c) * P + i] = row[c];
                }
            }
        }
    }
    tf_free(wT);
    return 0;
}

#endif /* TF_ISA_PASS */
