/* ssd.c — Mamba-2's SSD scan, recurrent and chunkwise (kernels/ssd.h).
 *
 * The mode logic (ssd_head_* below) is written once and compiled three times: in each ISA
 * pass against vector row primitives built on kernels/simd.h, and once more, outside the
 * passes, against plain C primitives (the reference path). Only the primitives differ. */
#include "kernels/ssd.h"

#include "kernels/simd.h"

#include <math.h>
#include <string.h>

#ifdef TF_ISA_PASS
/* ------------------------------------------------------------------ vector primitives */
#define SSD_FN(name) TF_ISA_FN(name)

/* a, b are (n,): sum a * b */
static inline float
ssd_dot(const float *a, const float *b, int64_t n)
{
    tf_vf acc = tf_vzero();
    int64_t i = 0;
    for (; i + TF_VW <= n; i += TF_VW) {
        acc = tf_vfma(tf_vload(a + i), tf_vload(b + i), acc);
    }
    if (i < n) {
        acc = tf_vfma(tf_vload_n(a + i, n - i), tf_vload_n(b + i, n - i), acc);
    }
    return tf_vreduce_add(acc);
}

/* y, x are (n,): y = f * y + s * x */
static inline void
ssd_scale_axpy(float *y, float f, float s, const float *x, int64_t n)
{
    const tf_vf vs = tf_vset1(s), vf = tf_vset1(f);
    int64_t i = 0;
    for (; i + TF_VW <= n; i += TF_VW) {
        tf_vstore(y + i, tf_vfma(vs, tf_vload(x + i), tf_vmul(vf, tf_vload(y + i))));
    }
    if (i < n) {
        tf_vstore_n(y + i,
                    tf_vfma(vs, tf_vload_n(x + i, n - i), tf_vmul(vf, tf_vload_n(y + i, n - i))),
                    n - i);
    }
}

#else
/* ------------------------------------------------------------------ plain primitives */
#define SSD_FN(name) name##_ref

static inline float
ssd_dot(const float *a, const float *b, int64_t n)
{
    float acc = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        acc = fmaf(a[i], b[i], acc);
    }
    return acc;
}

static inline void
ssd_scale_axpy(float *y, float f, float s, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        y[i] = fmaf(s, x[i], f * y[i]);
    }
}
#endif

/* softplus as torch computes it (threshold 20), then the clamp */
static inline float
ssd_delta(const tf_ssd_args *a, float v)
{
    float d = v > 20.0f ? v : log1pf(expf(v));
    return d < a->dt_min ? a->dt_min : (d > a->dt_max ? a->dt_max : d);
}

/* One (b, h), token by token; S (P, N) the state. */
static void
SSD_FN(ssd_head_recurrent)(const tf_ssd_args *a, int64_t b, int64_t h, float *S)
{
    const int64_t T = a->T, H = a->H, P = a->P, G = a->G, N = a->N, g = h / (H / G);
    const float bias = a->dt_bias ? a->dt_bias[h] : 0.0f, Dh = a->Dskip ? a->Dskip[h] : 0.0f;
    for (int64_t t = 0; t < T; t++) {
        const int64_t bt = b * T + t;
        const float delta = ssd_delta(a, a->dt[bt * H + h] + bias), dA = expf(delta * a->A[h]);
        const float *x = a->x + (bt * H + h) * P;
        const float *Bt = a->Bm + (bt * G + g) * N, *Ct = a->Cm + (bt * G + g) * N;
        float *y = a->y + (bt * H + h) * P;
        for (int64_t p = 0; p < P; p++) {
            ssd_scale_axpy(S + p * N, dA, delta * x[p], Bt, N);
            y[p] = ssd_dot(S + p * N, Ct, N) + Dh * x[p];
        }
    }
}

/* One (b, h), chunk by chunk. ws holds ST (N, P) (the state transposed, so every update is
 * a row operation over P), then per chunk Xc (Q, P), Bc, Cc (Q, N), cs, w (Q,) and M (Q, Q). */
static void
SSD_FN(ssd_head_chunkwise)(const tf_ssd_args *a, int64_t b, int64_t h, float *S, float *ws)
{
    const int64_t T = a->T, H = a->H, P = a->P, G = a->G, N = a->N, Q = a->chunk;
    const int64_t g = h / (H / G);
    const float bias = a->dt_bias ? a->dt_bias[h] : 0.0f, Dh = a->Dskip ? a->Dskip[h] : 0.0f;
    const float Ah = a->A[h];
    float *ST = ws, *Xc = ST + N * P, *Bc = Xc + Q * P, *Cc = Bc + Q * N, *cs = Cc + Q * N;
    float *delta = cs + Q, *M = delta + Q;
    for (int64_t n = 0; n < N; n++) {
        for (int64_t p = 0; p < P; p++) {
            ST[n * P + p] = S[p * N + n];
        }
    }
    for (int64_t s = 0; s < T; s += Q) {
        const int64_t q = T - s < Q ? T - s : Q;
        float run = 0.0f;
        for (int64_t i = 0; i < q; i++) { /* gather the chunk's rows, cumulate the log-decays */
            const int64_t bt = b * T + s + i;
            delta[i] = ssd_delta(a, a->dt[bt * H + h] + bias);
            run += delta[i] * Ah;
            cs[i] = run;
            memcpy(Xc + i * P, a->x + (bt * H + h) * P, (size_t)P * sizeof(float));
            memcpy(Bc + i * N, a->Bm + (bt * G + g) * N, (size_t)N * sizeof(float));
            memcpy(Cc + i * N, a->Cm + (bt * G + g) * N, (size_t)N * sizeof(float));
        }
        /* M (q, q) = (C B^T) * exp(cs_i - cs_j) * delta_j below the diagonal */
        for (int64_t i = 0; i < q; i++) {
            for (int64_t j = 0; j <= i; j++) {
                M[i * Q + j] = ssd_dot(Cc + i * N, Bc + j * N, N) * expf(cs[i] - cs[j]) * delta[j];
            }
        }
        for (int64_t i = 0; i < q; i++) {
            float *y = a->y + ((b * T + s + i) * H + h) * P;
            /* y_i = exp(cs_i) S C_i + sum_{j <= i} M_ij x_j + D x_i */
            const float e = expf(cs[i]);
            for (int64_t p = 0; p < P; p++) {
                y[p] = Dh * Xc[i * P + p];
            }
            for (int64_t n = 0; n < N; n++) {
                ssd_scale_axpy(y, 1.0f, e * Cc[i * N + n], ST + n * P, P);
            }
            for (int64_t j = 0; j <= i; j++) {
                ssd_scale_axpy(y, 1.0f, M[i * Q + j], Xc + j * P, P);
            }
        }
        /* ST <- exp(cs_last) ST + sum_j B_j^T (exp(cs_last - cs_j) delta_j x_j) */
        const float last = cs[q - 1], el = expf(last);
        for (int64_t j = 0; j < q; j++) {
            delta[j] *= expf(last - cs[j]);
        }
        for (int64_t n = 0; n < N; n++) {
            float *row = ST + n * P;
            ssd_scale_axpy(row, el, delta[0] * Bc[n], Xc, P);
            for (int64_t j = 1; j < q; j++) {
                ssd_scale_axpy(row, 1.0f, delta[j] * Bc[j * N + n], Xc + j * P, P);
            }
        }
    }
    for (int64_t n = 0; n < N; n++) {
        for (int64_t p = 0; p < P; p++) {
            S[p * N + n] = ST[n * P + p];
        }
    }
}

/* One (b, h): the state from a->state (or zeros) into ws, the mode, the state back.
 * (External: the dispatcher, compiled outside the ISA passes, calls the per-ISA versions.) */
void SSD_FN(ssd_head)(const tf_ssd_args *a, int64_t b, int64_t h, float *ws);
void
SSD_FN(ssd_head)(const tf_ssd_args *a, int64_t b, int64_t h, float *ws)
{
    const int64_t PN = a->P * a->N, bh = b * a->H + h;
    float *S = ws;
    if (a->state) {
        memcpy(S, a->state + bh * PN, (size_t)PN * sizeof(float));
    }
    else {
        memset(S, 0, (size_t)PN * sizeof(float));
    }
    if (a->mode == TF_SSD_RECURRENT) {
        SSD_FN(ssd_head_recurrent)(a, b, h, S);
    }
    else {
        SSD_FN(ssd_head_chunkwise)(a, b, h, S, ws + PN);
    }
    if (a->state) {
        memcpy(a->state + bh * PN, S, (size_t)PN * sizeof(float));
    }
}

#ifndef TF_ISA_PASS
/* ------------------------------------------------------------------ dispatcher */

TF_ISA_DECLARE(void, ssd_head, (const tf_ssd_args *a, int64_t b, int64_t h, float *ws))

#define SSD_ISAS (TF_ISA_BIT(TF_ISA_AVX512) | TF_ISA_BIT(TF_ISA_AVX2))

tf_isa_level
tf_ssd_isa(void)
{
    return tf_isa_for(SSD_ISAS);
}

int
tf_ssd(const tf_ssd_args *a, tf_err *err)
{
    void (*head)(const tf_ssd_args *, int64_t, int64_t, float *) = ssd_head_ref;
    switch (tf_ssd_isa()) {
        case TF_ISA_AVX512: head = ssd_head_avx512; break;
        case TF_ISA_AVX2: head = ssd_head_avx2; break;
        default: break;
    }
    const int64_t P = a->P, N = a->N, Q = a->chunk, BH = a->B * a->H;
    /* S (P, N), then chunkwise: ST (N, P), Xc (Q, P), Bc, Cc (Q, N), cs, delta (Q,), M (Q, Q) */
    const int64_t per = 2 * P * N + Q * P + 2 * Q * N + 2 * Q + Q * Q;
    int failed = 0;
#pragma omp parallel if (BH > 1 && a->T * P * N * BH >= 32768)
    {
        float *ws = tf_malloc((size_t)per * sizeof(float));
        if (ws == NULL) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t bh = 0; bh < BH; bh++) {
            if (ws != NULL) {
                head(a, bh / a->H, bh % a->H, ws);
            }
        }
        tf_free(ws);
    }
    if (failed) {
        tf_err_set(err, TF_ERR_MEMORY, "ssd_scan: out of memory for %lld floats of workspace",
                   (long long)per);
        return -1;
    }
    return 0;
}
#endif /* TF_ISA_PASS */
