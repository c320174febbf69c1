/* selective_scan.c — Mamba's S6 scan (kernels/selective_scan.h).
 *
 * Tokens go in chunks of SCAN_CHUNK. Per chunk, first the per-token scalars of every channel:
 * delta = softplus(dt + dt_bias) and the gate silu(z), vectorised along the channels (a row
 * (D,) at a time) into two scratch blocks (B, chunk, D); then the scan proper, one work item =
 * one (b, d) channel over the chunk's tokens: its state s (N,) stays in L1 (a few vectors)
 * while the tokens stream by, the vector path runs along the state (N). Computing the scalars
 * apart keeps libm's expf / log1pf (three calls per token and channel, which cost more than
 * the state update itself when N = 16) out of the scan: a one-token decode step is then the
 * state update and a reduction per channel. */
#include "kernels/selective_scan.h"

#include "kernels/simd.h"

#include <math.h>
#include <string.h>

/* Calls with less work than this (B * T * D * N) stay on one thread. */
#define PARALLEL_MIN_WORK 32768
/* Tokens per chunk: the scratch blocks are 2 x B x chunk x D floats. */
#define SCAN_CHUNK 64

/* softplus as torch computes it (threshold 20: v above it is returned as is) */
static inline float
softplus(float v)
{
    return v > 20.0f ? v : log1pf(expf(v));
}

#ifdef TF_ISA_PASS
/* ------------------------------------------------------------------ vector path (per ISA) */

/* softplus(v) = max(v, 0) + log1p(u), u = exp(-|v|) in (0, 1]; log1p(u) = 2 atanh(s) with
 * s = u / (2 + u) in (0, 1/3], whose odd series to s^13 leaves a relative error below
 * (1/9)^7 / 15 ~ 1.4e-8 (under float32's rounding); v itself above 20, as torch. */
static inline tf_vf
vsoftplus(tf_vf v)
{
    const tf_vf u = tf_vexp(tf_vmin(v, tf_vsub(tf_vzero(), v)));
    const tf_vf s = tf_vdiv(u, tf_vadd(tf_vset1(2.0f), u)), s2 = tf_vmul(s, s);
    tf_vf p = tf_vset1(1.0f / 13.0f);
    p = tf_vfma(p, s2, tf_vset1(1.0f / 11.0f));
    p = tf_vfma(p, s2, tf_vset1(1.0f / 9.0f));
    p = tf_vfma(p, s2, tf_vset1(1.0f / 7.0f));
    p = tf_vfma(p, s2, tf_vset1(1.0f / 5.0f));
    p = tf_vfma(p, s2, tf_vset1(1.0f / 3.0f));
    p = tf_vfma(p, s2, tf_vset1(1.0f));
    const tf_vf r = tf_vfma(tf_vadd(s, s), p, tf_vmax(v, tf_vzero()));
    return tf_vblend(tf_vgt(v, tf_vset1(20.0f)), r, v);
}

/* one token's scalars: dt, z (n,), bias (n,) or NULL -> delta (n,) = softplus(dt + bias),
 * gate (n,) = silu(z) (z NULL: gate untouched) */
void
TF_ISA_FN(tf_s6_prep_row)(const float *dt, const float *bias, const float *z, int64_t n,
                          float *delta, float *gate)
{
    const tf_vf one = tf_vset1(1.0f);
    for (int64_t i = 0; i < n; i += TF_VW) {
        const int64_t len = n - i;
        tf_vf v = tf_vload_n(dt + i, len);
        if (bias) {
            v = tf_vadd(v, tf_vload_n(bias + i, len));
        }
        tf_vstore_n(delta + i, vsoftplus(v), len);
        if (z) {
            const tf_vf g = tf_vload_n(z + i, len);
            tf_vstore_n(gate + i, tf_vdiv(g, tf_vadd(one, tf_vexp(tf_vsub(tf_vzero(), g)))), len);
        }
    }
}

/* channel d of batch row b over tokens [t0, t0 + tc); delta, gate (B, tc, D) the chunk's
 * scalars (gate NULL: no gating); s (N,) its state (in and out) */
void
TF_ISA_FN(tf_s6_channel)(const tf_selective_scan_args *a, const float *delta, const float *gate,
                         int64_t t0, int64_t tc, int64_t b, int64_t d, float *s)
{
    const int64_t T = a->T, D = a->D, N = a->N;
    const float *A = a->A + d * N;
    const float skip = a->Dskip ? a->Dskip[d] : 0.0f;
    for (int64_t t = 0; t < tc; t++) {
        const int64_t row = (b * T + t0 + t) * D + d, crow = (b * tc + t) * D + d;
        const float xv = a->x[row], dl = delta[crow];
        const float *Bt = a->Bm + (b * T + t0 + t) * N, *Ct = a->Cm + (b * T + t0 + t) * N;
        const tf_vf vdelta = tf_vset1(dl), vdx = tf_vset1(dl * xv);
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
        const float yv = fmaf(skip, xv, tf_vreduce_add(acc));
        a->y[row] = gate ? yv * gate[crow] : yv;
    }
}

/* channels [d0, d0 + TF_VW) of batch row b over tokens [t0, t0 + tc), vectorised along the
 * channels (the layout x, delta, gate and y have): AT (N, D) is A transposed; delta, gate as in
 * tf_s6_channel; s (N, TF_VW) the block's states transposed (s[n * TF_VW + l] = element n of
 * channel d0 + l's state). Each lane is one channel, so y needs no horizontal sum and B[t, n],
 * C[t, n] are broadcasts; the decays exp(delta A) <= 1 use the flush-to-zero exp (below
 * 2^-125 a decay is 0: the state it multiplies is forgotten either way). */
void
TF_ISA_FN(tf_s6_block)(const tf_selective_scan_args *a, const float *AT, const float *delta,
                       const float *gate, int64_t t0, int64_t tc, int64_t b, int64_t d0, float *s)
{
    const int64_t T = a->T, D = a->D, N = a->N;
    const tf_vf skip = a->Dskip ? tf_vload(a->Dskip + d0) : tf_vzero();
    for (int64_t t = 0; t < tc; t++) {
        const int64_t row = (b * T + t0 + t) * D + d0, crow = (b * tc + t) * D + d0;
        const tf_vf xv = tf_vload(a->x + row), dl = tf_vload(delta + crow);
        const tf_vf dx = tf_vmul(dl, xv);
        const float *Bt = a->Bm + (b * T + t0 + t) * N, *Ct = a->Cm + (b * T + t0 + t) * N;
        tf_vf acc0 = tf_vzero(), acc1 = tf_vzero(); /* two chains: the FMA latency */
        int64_t n = 0;
        for (; n + 1 < N; n += 2) {
            const tf_vf dA0 = tf_vexp_ftz(tf_vmul(dl, tf_vload(AT + n * D + d0)));
            const tf_vf dA1 = tf_vexp_ftz(tf_vmul(dl, tf_vload(AT + (n + 1) * D + d0)));
            float *s0 = s + n * TF_VW, *s1 = s0 + TF_VW;
            const tf_vf v0 = tf_vfma(dA0, tf_vload(s0), tf_vmul(dx, tf_vset1(Bt[n])));
            const tf_vf v1 = tf_vfma(dA1, tf_vload(s1), tf_vmul(dx, tf_vset1(Bt[n + 1])));
            tf_vstore(s0, v0);
            tf_vstore(s1, v1);
            acc0 = tf_vfma(v0, tf_vset1(Ct[n]), acc0);
            acc1 = tf_vfma(v1, tf_vset1(Ct[n + 1]), acc1);
        }
        if (n < N) {
            const tf_vf dA = tf_vexp_ftz(tf_vmul(dl, tf_vload(AT + n * D + d0)));
            const tf_vf v = tf_vfma(dA, tf_vload(s + n * TF_VW), tf_vmul(dx, tf_vset1(Bt[n])));
            tf_vstore(s + n * TF_VW, v);
            acc0 = tf_vfma(v, tf_vset1(Ct[n]), acc0);
        }
        tf_vf yv = tf_vfma(skip, xv, tf_vadd(acc0, acc1));
        if (gate) {
            yv = tf_vmul(yv, tf_vload(gate + crow));
        }
        tf_vstore(a->y + row, yv);
    }
}

#else /* the reference path and the dispatcher, compiled once */

TF_ISA_DECLARE(void, tf_s6_prep_row,
               (const float *dt, const float *bias, const float *z, int64_t n, float *delta,
                float *gate))
TF_ISA_DECLARE(void, tf_s6_channel,
               (const tf_selective_scan_args *a, const float *delta, const float *gate, int64_t t0,
                int64_t tc, int64_t b, int64_t d, float *s))
TF_ISA_DECLARE(void, tf_s6_block,
               (const tf_selective_scan_args *a, const float *AT, const float *delta,
                const float *gate, int64_t t0, int64_t tc, int64_t b, int64_t d0, float *s))

#define SELECTIVE_SCAN_ISAS (TF_ISA_BIT(TF_ISA_AVX512) | TF_ISA_BIT(TF_ISA_AVX2))

tf_isa_level
tf_selective_scan_isa(void)
{
    return tf_isa_for(SELECTIVE_SCAN_ISAS);
}

/* ------------------------------------------------------------------ reference path */

/* as the vector path, with libm's expf / log1pf */
static void
s6_prep_row_ref(const float *dt, const float *bias, const float *z, int64_t n, float *delta,
                float *gate)
{
    for (int64_t i = 0; i < n; i++) {
        delta[i] = softplus(dt[i] + (bias ? bias[i] : 0.0f));
        if (z) {
            gate[i] = z[i] / (1.0f + expf(-z[i]));
        }
    }
}

/* as the vector path, one state element at a time */
static void
s6_channel_ref(const tf_selective_scan_args *a, const float *delta, const float *gate, int64_t t0,
               int64_t tc, int64_t b, int64_t d, float *s)
{
    const int64_t T = a->T, D = a->D, N = a->N;
    const float *A = a->A + d * N;
    const float skip = a->Dskip ? a->Dskip[d] : 0.0f;
    for (int64_t t = 0; t < tc; t++) {
        const int64_t row = (b * T + t0 + t) * D + d, crow = (b * tc + t) * D + d;
        const float xv = a->x[row], dl = delta[crow];
        const float *Bt = a->Bm + (b * T + t0 + t) * N, *Ct = a->Cm + (b * T + t0 + t) * N;
        float acc = 0.0f;
        for (int64_t n = 0; n < N; n++) {
            s[n] = fmaf(expf(dl * A[n]), s[n], dl * xv * Bt[n]);
            acc = fmaf(s[n], Ct[n], acc);
        }
        const float yv = fmaf(skip, xv, acc);
        a->y[row] = gate ? yv * gate[crow] : yv;
    }
}

int
tf_selective_scan(const tf_selective_scan_args *a, tf_err *err)
{
    const int64_t B = a->B, T = a->T, D = a->D, N = a->N;
    void (*prep)(const float *, const float *, const float *, int64_t, float *, float *) =
        s6_prep_row_ref;
    void (*channel)(const tf_selective_scan_args *, const float *, const float *, int64_t, int64_t,
                    int64_t, int64_t, float *) = s6_channel_ref;
    void (*block_fn)(const tf_selective_scan_args *, const float *, const float *, const float *,
                     int64_t, int64_t, int64_t, int64_t, float *) = NULL;
    int64_t vw = 1; /* channels per block_fn item */
    switch (tf_selective_scan_isa()) {
        case TF_ISA_AVX512:
            prep = tf_s6_prep_row_avx512;
            channel = tf_s6_channel_avx512;
            block_fn = tf_s6_block_avx512;
            vw = 16;
            break;
        case TF_ISA_AVX2:
            prep = tf_s6_prep_row_avx2;
            channel = tf_s6_channel_avx2;
            block_fn = tf_s6_block_avx2;
            vw = 8;
            break;
        default: break;
    }
    /* channels [0, Dv) go in blocks of vw through block_fn, [Dv, D) one by one through channel */
    const int64_t nblk = block_fn ? D / vw : 0, Dv = nblk * vw;
    const int64_t chunk = T < SCAN_CHUNK ? T : SCAN_CHUNK;
    const size_t block = (size_t)(B * chunk * D), nstate = a->state ? 0 : (size_t)(B * D * N);
    const size_t nAT = nblk ? (size_t)(N * D) : 0, nsT = (size_t)(B * Dv * N);
    /* delta and gate blocks, A transposed and the blocks' states transposed, then the zero
     * states when the caller keeps none */
    float *scratch = tf_malloc((2 * block + nAT + nsT + nstate + 1) * sizeof(float));
    if (scratch == NULL) {
        tf_err_set(err, TF_ERR_MEMORY,
                   "selective_scan: no memory for the (%lld, %lld, %lld) scan's scratch",
                   (long long)B, (long long)T, (long long)D);
        return -1;
    }
    float *delta = scratch, *gate = a->z ? scratch + block : NULL;
    float *AT = scratch + 2 * block, *sT = AT + nAT;
    float *state = a->state;
    if (state == NULL) {
        state = sT + nsT;
        memset(state, 0, nstate * sizeof(float));
    }
    for (int64_t n = 0; n < (nblk ? N : 0); n++) {
        for (int64_t d = 0; d < D; d++) {
            AT[n * D + d] = a->A[d * N + n];
        }
    }
#pragma omp parallel if (B * T * D * N >= PARALLEL_MIN_WORK && B * D > 1)
    {
        /* sT (B, nblk, N, vw): item i = (b, k) holds channels [k vw, k vw + vw) of row b */
#pragma omp for schedule(static)
        for (int64_t i = 0; i < B * nblk; i++) {
            const float *src = state + ((i / nblk) * D + (i % nblk) * vw) * N;
            for (int64_t l = 0; l < vw; l++) {
                for (int64_t n = 0; n < N; n++) {
                    sT[(i * N + n) * vw + l] = src[l * N + n];
                }
            }
        }
        for (int64_t t0 = 0; t0 < T; t0 += chunk) {
            const int64_t tc = T - t0 < chunk ? T - t0 : chunk;
#pragma omp for schedule(static)
            for (int64_t r = 0; r < B * tc; r++) {
                const int64_t src = ((r / tc) * T + t0 + r % tc) * D;
                prep(a->dt + src, a->dt_bias, a->z ? a->z + src : NULL, D, delta + r * D,
                     gate ? gate + r * D : NULL);
            }
#pragma omp for schedule(static) nowait
            for (int64_t i = 0; i < B * nblk; i++) {
                block_fn(a, AT, delta, gate, t0, tc, i / nblk, (i % nblk) * vw, sT + i * N * vw);
            }
#pragma omp for schedule(static)
            for (int64_t i = 0; i < B * (D - Dv); i++) {
                const int64_t b = i / (D - Dv), d = Dv + i % (D - Dv);
                channel(a, delta, gate, t0, tc, b, d, state + (b * D + d) * N);
            }
        }
#pragma omp for schedule(static)
        for (int64_t i = 0; i < B * nblk; i++) {
            float *dst = state + ((i / nblk) * D + (i % nblk) * vw) * N;
            for (int64_t l = 0; l < vw; l++) {
                for (int64_t n = 0; n < N; n++) {
                    dst[l * N + n] = sT[(i * N + n) * vw + l];
                }
            }
        }
    }
    tf_free(scratch);
    return 0;
}

#endif /* TF_ISA_PASS */
