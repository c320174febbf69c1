/* selective_scan.c — Mamba's S6 scan (kernels/selective_scan.h).
 *
 * Work item = one (b, d) channel over all T tokens: its state s (N,) stays in L1 (a few
 * vectors) while the tokens stream by; the vector path runs along the state (N), the scalar
 * softplus / skip / gate once per token. */
#include "kernels/selective_scan.h"

#include "kernels/simd.h"

#include <math.h>
#include <string.h>

/* Calls with less work than this (B * T * D * N) stay on one thread. */
#define PARALLEL_MIN_WORK 32768

/* softplus as torch computes it (threshold 20: v above it is returned as is) */
static inline float
softplus(float v)
{
    return v > 20.0f ? v : log1pf(expf(v));
}

/* the per-token output after the state product acc = s . C */
static inline float
finish(const tf_selective_scan_args *a, float acc, float xv, int64_t d, int64_t row)
{
    if (a->Dskip) {
        acc = fmaf(a->Dskip[d], xv, acc);
    }
    if (a->z) {
        const float g = a->z[row];
        acc *= g / (1.0f + expf(-g));
    }
    return acc;
}

#ifdef TF_ISA_PASS
/* ------------------------------------------------------------------ vector path (per ISA) */

/* channel d of batch row b over T tokens; s (N,) its state (in and out) */
void
TF_ISA_FN(tf_s6_channel)(const tf_selective_scan_args *a, int64_t b, int64_t d, float *s)
{
    const int64_t T = a->T, D = a->D, N = a->N;
    const float *A = a->A + d * N;
    const float bias = a->dt_bias ? a->dt_bias[d] : 0.0f;
    for (int64_t t = 0; t < T; t++) {
        const int64_t row = (b * T + t) * D + d;
        const float xv = a->x[row], delta = softplus(a->dt[row] + bias);
        const float *Bt = a->Bm + (b * T + t) * N, *Ct = a->Cm + (b * T + t) * N;
        const tf_vf vdelta = tf_vset1(delta), vdx = tf_vset1(delta * xv);
        tf_vf acc = tf_vzero();
        for (int64_t n = 0; n < N; n += TF_VW) {
            const int64_t len = N - n;
            if (len >= TF_VW) {
                const tf_vf dA = tf_vexp(tf_vmul(vdelta, tf_vload(A + n)));
                const tf_vf sv = tf_vfma(dA, tf_vload(s + n), tf_vmul(vdx, tf_vload(Bt + n)));
                tf_vstore(s + n, sv);
                acc = tf_vfma(sv, tf_vload(Ct + n), acc);
            }
            else { /* lanes past N: A, s, B, C read as 0, so they add nothing */
                const tf_vf dA = tf_vexp(tf_vmul(vdelta, tf_vload_n(A + n, len)));
                const tf_vf sv =
                    tf_vfma(dA, tf_vload_n(s + n, len), tf_vmul(vdx, tf_vload_n(Bt + n, len)));
                tf_vstore_n(s + n, sv, len);
                acc = tf_vfma(sv, tf_vload_n(Ct + n, len), acc);
            }
        }
        a->y[row] = finish(a, tf_vreduce_add(acc), xv, d, row);
    }
}

#else /* the reference path and the dispatcher, compiled once */

TF_ISA_DECLARE(void, tf_s6_channel,
               (const tf_selective_scan_args *a, int64_t b, int64_t d, float *s))

#define SELECTIVE_SCAN_ISAS (TF_ISA_BIT(TF_ISA_AVX512) | TF_ISA_BIT(TF_ISA_AVX2))

tf_isa_level
tf_selective_scan_isa(void)
{
    return tf_isa_for(SELECTIVE_SCAN_ISAS);
}

/* ------------------------------------------------------------------ reference path */

/* as the vector path, one state element at a time */
static void
s6_channel_ref(const tf_selective_scan_args *a, int64_t b, int64_t d, float *s)
{
    const int64_t T = a->T, D = a->D, N = a->N;
    const float *A = a->A + d * N;
    const float bias = a->dt_bias ? a->dt_bias[d] : 0.0f;
    for (int64_t t = 0; t < T; t++) {
        const int64_t row = (b * T + t) * D + d;
        const float xv = a->x[row], delta = softplus(a->dt[row] + bias);
        const float *Bt = a->Bm + (b * T + t) * N, *Ct = a->Cm + (b * T + t) * N;
        float acc = 0.0f;
        for (int64_t n = 0; n < N; n++) {
            s[n] = fmaf(expf(delta * A[n]), s[n], delta * xv * Bt[n]);
            acc = fmaf(s[n], Ct[n], acc);
        }
        a->y[row] = finish(a, acc, xv, d, row);
    }
}

int
tf_selective_scan(const tf_selective_scan_args *a, tf_err *err)
{
    const int64_t B = a->B, D = a->D, N = a->N;
    void (*channel)(const tf_selective_scan_args *, int64_t, int64_t, float *) = s6_channel_ref;
    switch (tf_selective_scan_isa()) {
        case TF_ISA_AVX512: channel = tf_s6_channel_avx512; break;
        case TF_ISA_AVX2: channel = tf_s6_channel_avx2; break;
        default: break;
    }
    float *zeros = NULL; /* the states when the caller keeps none */
    if (a->state == NULL) {
        if ((zeros = tf_malloc((size_t)(B * D * N) * sizeof(float))) == NULL) {
            tf_err_set(err, TF_ERR_MEMORY,
                       "selective_scan: no memory for a (%lld, %lld, %lld) state", (long long)B,
                       (long long)D, (long long)N);
            return -1;
        }
        memset(zeros, 0, (size_t)(B * D * N) * sizeof(float));
    }
    float *state = a->state ? a->state : zeros;
#pragma omp parallel for schedule(static) if (B * a->T * D * N >= PARALLEL_MIN_WORK && B * D > 1)
    for (int64_t i = 0; i < B * D; i++) {
        channel(a, i / D, i % D, state + i * N);
    }
    tf_free(zeros);
    return 0;
}

#endif /* TF_ISA_PASS */
