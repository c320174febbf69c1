/* linear_attention.c — causal linear attention in recurrent, chunkwise and parallel form
 * (kernels/attention/linear_attention.h).
 *
 * The mode logic (la_head_* below) is written once and compiled three times: in each ISA
 * pass against vector row primitives built on kernels/simd.h, and once more, outside the
 * passes, against plain C primitives (the reference path). Only the primitives differ. */
#include "kernels/attention/linear_attention.h"

#include "kernels/simd.h"

#include <math.h>
#include <string.h>

#ifdef TF_ISA_PASS
/* ------------------------------------------------------------------ vector primitives */
#define LA_FN(name) TF_ISA_FN(name)

/* a, b are (n,): sum a * b */
static inline float
la_dot(const float *a, const float *b, int64_t n)
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

/* y, x are (n,): y += s * x */
static inline void
la_axpy(float *y, float s, const float *x, int64_t n)
{
    const tf_vf vs = tf_vset1(s);
    int64_t i = 0;
    for (; i + TF_VW <= n; i += TF_VW) {
        tf_vstore(y + i, tf_vfma(vs, tf_vload(x + i), tf_vload(y + i)));
    }
    if (i < n) {
        tf_vstore_n(y + i, tf_vfma(vs, tf_vload_n(x + i, n - i), tf_vload_n(y + i, n - i)), n - i);
    }
}

/* q, k, bi, bj are (n,): sum q * k * exp(bi - bj) */
static inline float
la_dot_exp(const float *q, const float *k, const float *bi, const float *bj, int64_t n)
{
    tf_vf acc = tf_vzero();
    int64_t i = 0;
    for (; i + TF_VW <= n; i += TF_VW) {
        const tf_vf e = tf_vexp(tf_vsub(tf_vload(bi + i), tf_vload(bj + i)));
        acc = tf_vfma(tf_vmul(tf_vload(q + i), tf_vload(k + i)), e, acc);
    }
    if (i < n) {
        const int64_t r = n - i;
        const tf_vf e = tf_vexp(tf_vsub(tf_vload_n(bi + i, r), tf_vload_n(bj + i, r)));
        acc = tf_vfma(tf_vmul(tf_vload_n(q + i, r), tf_vload_n(k + i, r)), e, acc);
    }
    return tf_vreduce_add(acc);
}

/* out, x, bi, bj are (n,): out = x * exp(bi - bj), bj NULL meaning 0 */
static inline void
la_mul_exp(float *out, const float *x, const float *bi, const float *bj, int64_t n)
{
    for (int64_t i = 0; i < n; i += TF_VW) {
        const int64_t r = n - i;
        tf_vf arg = tf_vload_n(bi + i, r);
        if (bj != NULL) {
            arg = tf_vsub(arg, tf_vload_n(bj + i, r));
        }
        tf_vstore_n(out + i, tf_vmul(tf_vload_n(x + i, r), tf_vexp(arg)), r);
    }
}

#else
/* ------------------------------------------------------------------ plain C primitives */
#define LA_FN(name) name##_ref

static inline float
la_dot(const float *a, const float *b, int64_t n)
{
    float acc = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        acc += a[i] * b[i];
    }
    return acc;
}

static inline void
la_axpy(float *y, float s, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        y[i] += s * x[i];
    }
}

static inline float
la_dot_exp(const float *q, const float *k, const float *bi, const float *bj, int64_t n)
{
    float acc = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        acc += q[i] * k[i] * expf(bi[i] - bj[i]);
    }
    return acc;
}

static inline void
la_mul_exp(float *out, const float *x, const float *bi, const float *bj, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        out[i] = x[i] * expf(bj != NULL ? bi[i] - bj[i] : bi[i]);
    }
}
#endif

/* ------------------------------------------------------------------ shared by all paths */

/* dst, src are (n,): dst = phi(src) */
static inline void
la_map(float *dst, const float *src, int64_t n, tf_la_feature_map fm)
{
    switch (fm) {
        case TF_LA_ELU1:
            for (int64_t i = 0; i < n; i++) {
                dst[i] = src[i] > 0.0f ? src[i] + 1.0f : expf(src[i]);
            }
            break;
        case TF_LA_RELU:
            for (int64_t i = 0; i < n; i++) {
                dst[i] = src[i] > 0.0f ? src[i] : 0.0f;
            }
            break;
        default: memcpy(dst, src, (size_t)n * sizeof(float)); break;
    }
}

/* S is (Dk, Dv), z (Dk,) or NULL: S = diag(e) S, z = e * z; e (Dk,) per channel or, when
 * NULL, the scalar es. */
static inline void
la_decay_state(float *S, float *z, const float *e, float es, int64_t Dk, int64_t Dv)
{
    for (int64_t c = 0; c < Dk; c++) {
        const float f = e != NULL ? e[c] : es;
        float *row = S + c * Dv;
        for (int64_t j = 0; j < Dv; j++) {
            row[j] *= f;
        }
        if (z != NULL) {
            z[c] *= f;
        }
    }
}

/* o is (Dv,): o += scale * qd S, returns scale * qd . z (0 when z is NULL); qd, z (Dk,) */
static inline float
la_read_state(float *o, const float *qd, const float *S, const float *z, float scale, int64_t Dk,
              int64_t Dv)
{
    for (int64_t c = 0; c < Dk; c++) {
        la_axpy(o, scale * qd[c], S + c * Dv, Dv);
    }
    return z != NULL ? scale * la_dot(qd, z, Dk) : 0.0f;
}

/* S (Dk, Dv) += kd^T v; z (Dk,) += kd when not NULL */
static inline void
la_write_state(float *S, float *z, const float *kd, const float *v, int64_t Dk, int64_t Dv)
{
    for (int64_t c = 0; c < Dk; c++) {
        la_axpy(S + c * Dv, kd[c], v, Dv);
        if (z != NULL) {
            z[c] += kd[c];
        }
    }
}

/* Floats of workspace one (b, h) needs. */
static inline int64_t
la_workspace(const tf_la_args *a)
{
    const int64_t Dk = a->Dk, Dv = a->Dv;
    int64_t rows = 1;
    if (a->mode == TF_LA_CHUNKWISE) {
        rows = a->chunk < a->L ? a->chunk : a->L;
    }
    else if (a->mode == TF_LA_PARALLEL) {
        rows = a->L;
    }
    /* S, z, three (Dk,) temporaries, mapped q and k rows, cumulative log-decays (rows, Dk),
     * decay powers (rows,) */
    return Dk * Dv + Dk + 3 * Dk + 3 * rows * Dk + rows + 16;
}

/* One (b, h): the recurrence, one step at a time. ws holds la_workspace floats. */
static void
LA_FN(la_head_recurrent)(const tf_la_args *a, int64_t b, int64_t h, float *ws)
{
    const int64_t Dk = a->Dk, Dv = a->Dv, L = a->L, bh = b * a->H + h;
    float *S = ws, *z = a->normalize ? S + Dk * Dv : NULL;
    float *qm = S + Dk * Dv + Dk, *km = qm + Dk, *e = km + Dk;
    const float es = a->log_decay != NULL ? expf(a->log_decay[h]) : 1.0f;
    for (int64_t t = 0; t < L; t++) {
        const int64_t row = bh * L + t;
        la_map(qm, a->q + row * Dk, Dk, a->feature_map);
        la_map(km, a->k + row * Dk, Dk, a->feature_map);
        if (a->gate != NULL) {
            for (int64_t c = 0; c < Dk; c++) {
                e[c] = expf(a->gate[row * Dk + c]);
            }
            la_decay_state(S, z, e, 0.0f, Dk, Dv);
        }
        else if (a->log_decay != NULL) {
            la_decay_state(S, z, NULL, es, Dk, Dv);
        }
        la_write_state(S, z, km, a->v + row * Dv, Dk, Dv);
        float *o = a->out + row * Dv;
        memset(o, 0, (size_t)Dv * sizeof(float));
        const float den = la_read_state(o, qm, S, z, a->scale, Dk, Dv);
        if (a->normalize) {
            for (int64_t j = 0; j < Dv; j++) {
                o[j] /= den;
            }
        }
    }
}

/* One (b, h): chunks of a->chunk rows; inside a chunk, the state from before it plus causal
 * attention with decay; then the state is carried past the chunk. */
static void
LA_FN(la_head_chunkwise)(const tf_la_args *a, int64_t b, int64_t h, float *ws)
{
    const int64_t Dk = a->Dk, Dv = a->Dv, L = a->L, bh = b * a->H + h;
    const int64_t C = a->chunk < L ? a->chunk : L;
    const int gated = a->gate != NULL;
    const float ld = a->log_decay != NULL ? a->log_decay[h] : 0.0f;
    float *S = ws, *z = a->normalize ? S + Dk * Dv : NULL;
    float *qd = S + Dk * Dv + Dk, *kd = qd + Dk, *e = kd + Dk;
    float *qc = e + Dk, *kc = qc + C * Dk, *bc = kc + C * Dk; /* bc: (C, Dk) gated, (C,) else */
    float *pw = bc + C * Dk; /* (C,) decay^d, d = i - j (no exp per pair) */
    for (int64_t d = 0; !gated && d < C; d++) {
        pw[d] = expf((float)d * ld);
    }
    for (int64_t s = 0; s < L; s += C) {
        const int64_t n = L - s < C ? L - s : C;
        const int64_t row0 = bh * L + s;
        for (int64_t i = 0; i < n; i++) {
            la_map(qc + i * Dk, a->q + (row0 + i) * Dk, Dk, a->feature_map);
            la_map(kc + i * Dk, a->k + (row0 + i) * Dk, Dk, a->feature_map);
            if (gated) { /* b_i = g_s + ... + g_{s+i}, per channel */
                const float *g = a->gate + (row0 + i) * Dk;
                for (int64_t c = 0; c < Dk; c++) {
                    bc[i * Dk + c] = (i > 0 ? bc[(i - 1) * Dk + c] : 0.0f) + g[c];
                }
            }
            else {
                bc[i] = (float)(i + 1) * ld;
            }
        }
        /* outputs: state from before the chunk, then the chunk's own keys j <= i */
        for (int64_t i = 0; i < n; i++) {
            const float *qi = qc + i * Dk;
            float *o = a->out + (row0 + i) * Dv;
            memset(o, 0, (size_t)Dv * sizeof(float));
            if (gated) {
                la_mul_exp(qd, qi, bc + i * Dk, NULL, Dk);
            }
            else {
                const float f = expf(bc[i]);
                for (int64_t c = 0; c < Dk; c++) {
                    qd[c] = qi[c] * f;
                }
            }
            float den = la_read_state(o, qd, S, z, a->scale, Dk, Dv);
            for (int64_t j = 0; j <= i; j++) {
                const float *kj = kc + j * Dk;
                const float w = a->scale * (gated ? la_dot_exp(qi, kj, bc + i * Dk, bc + j * Dk, Dk)
                                                  : pw[i - j] * la_dot(qi, kj, Dk));
                la_axpy(o, w, a->v + (row0 + j) * Dv, Dv);
                den += w;
            }
            if (a->normalize) {
                for (int64_t j = 0; j < Dv; j++) {
                    o[j] /= den;
                }
            }
        }
        /* carry the state past the chunk: S = diag(exp(b_last)) S + sum_j kd_j^T v_j with
         * kd_j = k_j exp(b_last - b_j) */
        const float *blast = gated ? bc + (n - 1) * Dk : NULL;
        if (gated) {
            for (int64_t c = 0; c < Dk; c++) {
                e[c] = expf(blast[c]);
            }
            la_decay_state(S, z, e, 0.0f, Dk, Dv);
        }
        else if (a->log_decay != NULL) {
            la_decay_state(S, z, NULL, expf(bc[n - 1]), Dk, Dv);
        }
        for (int64_t j = 0; j < n; j++) {
            if (gated) {
                la_mul_exp(kd, kc + j * Dk, blast, bc + j * Dk, Dk);
            }
            else {
                const float f = expf(bc[n - 1] - bc[j]);
                for (int64_t c = 0; c < Dk; c++) {
                    kd[c] = kc[j * Dk + c] * f;
                }
            }
            la_write_state(S, z, kd, a->v + (row0 + j) * Dv, Dk, Dv);
        }
    }
}

/* One (b, h): every (i, j <= i) weight at once, from log-decays cumulated from the start. */
static void
LA_FN(la_head_parallel)(const tf_la_args *a, int64_t b, int64_t h, float *ws)
{
    const int64_t Dk = a->Dk, Dv = a->Dv, L = a->L, bh = b * a->H + h;
    const int gated = a->gate != NULL;
    const float ld = a->log_decay != NULL ? a->log_decay[h] : 0.0f;
    float *S = ws, *z = a->normalize ? S + Dk * Dv : NULL;
    float *qd = S + Dk * Dv + Dk, *kd = qd + Dk, *e = kd + Dk;
    float *qm = e + Dk, *km = qm + L * Dk, *bc = km + L * Dk;
    float *pw = bc + L * Dk; /* (L,) decay^d, d = i - j */
    for (int64_t d = 0; !gated && d < L; d++) {
        pw[d] = expf((float)d * ld);
    }
    for (int64_t i = 0; i < L; i++) {
        la_map(qm + i * Dk, a->q + (bh * L + i) * Dk, Dk, a->feature_map);
        la_map(km + i * Dk, a->k + (bh * L + i) * Dk, Dk, a->feature_map);
        if (gated) {
            const float *g = a->gate + (bh * L + i) * Dk;
            for (int64_t c = 0; c < Dk; c++) {
                bc[i * Dk + c] = (i > 0 ? bc[(i - 1) * Dk + c] : 0.0f) + g[c];
            }
        }
        else {
            bc[i] = (float)(i + 1) * ld;
        }
    }
    float *wrow = NULL;
    for (int64_t i = 0; i < L; i++) {
        const float *qi = qm + i * Dk;
        float *o = a->out + (bh * L + i) * Dv;
        memset(o, 0, (size_t)Dv * sizeof(float));
        if (a->weights != NULL) {
            wrow = a->weights + (bh * L + i) * L;
            memset(wrow, 0, (size_t)L * sizeof(float));
        }
        float den = 0.0f;
        if (a->s0 != NULL || a->z0 != NULL) { /* the initial state, decayed to step i */
            if (gated) {
                la_mul_exp(qd, qi, bc + i * Dk, NULL, Dk);
            }
            else {
                const float f = expf(bc[i]);
                for (int64_t c = 0; c < Dk; c++) {
                    qd[c] = qi[c] * f;
                }
            }
            if (a->s0 != NULL) {
                for (int64_t c = 0; c < Dk; c++) {
                    la_axpy(o, a->scale * qd[c], a->s0 + (bh * Dk + c) * Dv, Dv);
                }
            }
            if (a->normalize && a->z0 != NULL) {
                den = a->scale * la_dot(qd, a->z0 + bh * Dk, Dk);
            }
        }
        for (int64_t j = 0; j <= i; j++) {
            const float *kj = km + j * Dk;
            const float w = a->scale * (gated ? la_dot_exp(qi, kj, bc + i * Dk, bc + j * Dk, Dk)
                                              : pw[i - j] * la_dot(qi, kj, Dk));
            la_axpy(o, w, a->v + (bh * L + j) * Dv, Dv);
            den += w;
            if (wrow != NULL) {
                wrow[j] = w;
            }
        }
        if (a->normalize) {
            for (int64_t j = 0; j < Dv; j++) {
                o[j] /= den;
            }
            for (int64_t j = 0; wrow != NULL && j <= i; j++) {
                wrow[j] /= den;
            }
        }
    }
    if (a->s_out == NULL && a->z_out == NULL) {
        return;
    }
    /* the final state: S_L = diag(exp(B_last)) S_0 + sum_j kd_j^T v_j, kd_j = k_j exp(B_last - B_j) */
    memset(S, 0, (size_t)(Dk * Dv + Dk) * sizeof(float));
    if (a->s0 != NULL) {
        memcpy(S, a->s0 + bh * Dk * Dv, (size_t)(Dk * Dv) * sizeof(float));
    }
    if (z != NULL && a->z0 != NULL) {
        memcpy(z, a->z0 + bh * Dk, (size_t)Dk * sizeof(float));
    }
    const float *blast = gated ? bc + (L - 1) * Dk : NULL;
    if (gated) {
        for (int64_t c = 0; c < Dk; c++) {
            e[c] = expf(blast[c]);
        }
        la_decay_state(S, z, e, 0.0f, Dk, Dv);
    }
    else if (a->log_decay != NULL) {
        la_decay_state(S, z, NULL, expf(bc[L - 1]), Dk, Dv);
    }
    for (int64_t j = 0; j < L; j++) {
        if (gated) {
            la_mul_exp(kd, km + j * Dk, blast, bc + j * Dk, Dk);
        }
        else {
            const float f = expf(bc[L - 1] - bc[j]);
            for (int64_t c = 0; c < Dk; c++) {
                kd[c] = km[j * Dk + c] * f;
            }
        }
        la_write_state(S, z, kd, a->v + (bh * L + j) * Dv, Dk, Dv);
    }
}

/* One (b, h) in the mode asked for: load the initial state, run, store the final state.
 * (External: the dispatcher, compiled outside the ISA passes, calls the per-ISA versions.) */
void LA_FN(la_head)(const tf_la_args *a, int64_t b, int64_t h, float *ws);
void
LA_FN(la_head)(const tf_la_args *a, int64_t b, int64_t h, float *ws)
{
    const int64_t Dk = a->Dk, Dv = a->Dv, bh = b * a->H + h;
    float *S = ws, *z = ws + Dk * Dv;
    if (a->mode == TF_LA_PARALLEL) {
        LA_FN(la_head_parallel)(a, b, h, ws);
    }
    else {
        memset(ws, 0, (size_t)(Dk * Dv + Dk) * sizeof(float));
        if (a->s0 != NULL) {
            memcpy(S, a->s0 + bh * Dk * Dv, (size_t)(Dk * Dv) * sizeof(float));
        }
        if (a->z0 != NULL) {
            memcpy(z, a->z0 + bh * Dk, (size_t)Dk * sizeof(float));
        }
        if (a->mode == TF_LA_RECURRENT) {
            LA_FN(la_head_recurrent)(a, b, h, ws);
        }
        else {
            LA_FN(la_head_chunkwise)(a, b, h, ws);
        }
    }
    if (a->s_out != NULL) {
        memcpy(a->s_out + bh * Dk * Dv, S, (size_t)(Dk * Dv) * sizeof(float));
    }
    if (a->z_out != NULL) {
        memcpy(a->z_out + bh * Dk, z, (size_t)Dk * sizeof(float));
    }
}

#ifndef TF_ISA_PASS
/* ------------------------------------------------------------------ dispatcher */

TF_ISA_DECLARE(void, la_head, (const tf_la_args *a, int64_t b, int64_t h, float *ws))

#define LINEAR_ATTENTION_ISAS (TF_ISA_BIT(TF_ISA_AVX512) | TF_ISA_BIT(TF_ISA_AVX2))

tf_isa_level
tf_linear_attention_isa(void)
{
    return tf_isa_for(LINEAR_ATTENTION_ISAS);
}

int
tf_linear_attention(const tf_la_args *a, tf_err *err)
{
    void (*head)(const tf_la_args *, int64_t, int64_t, float *) = la_head_ref;
    switch (tf_linear_attention_isa()) {
        case TF_ISA_AVX512: head = la_head_avx512; break;
        case TF_ISA_AVX2: head = la_head_avx2; break;
        default: break;
    }
    const int64_t per = la_workspace(a), BH = a->B * a->H;
    int failed = 0;
#pragma omp parallel if (BH > 1)
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
        tf_err_set(err, TF_ERR_MEMORY,
                   "linear_attention: out of memory for %lld floats of workspace", (long long)per);
        return -1;
    }
    return 0;
}
#endif /* TF_ISA_PASS */
