/* rwkv.c — RWKV-4's WKV recurrence, token shift and channel-mix steps (kernels/rwkv.h).
 *
 * The WKV recurrence is sequential in T but independent per (batch item, channel): a vector
 * holds TF_VW channels of one batch item and walks the T steps with its state in registers;
 * threads split the (B, channel block) pairs. Decoding (T = 1) is a few vector operations per
 * channel, so small calls stay on one thread. */
#include "kernels/rwkv.h"

#include "kernels/simd.h"

#include <math.h>
#include <string.h>

/* Calls with less work than this (elements) stay on one thread. */
#define PARALLEL_MIN_ELEMS 32768
/* HF's initial running maximum (rwkv_linear_attention_cpu): the empty state's pp. */
#define EMPTY_PP (-1e38f)

#ifdef TF_ISA_PASS
/* ------------------------------------------------------------------ vector path (per ISA) */

static inline tf_vf
load_n(const float *p, int64_t n)
{
    return n >= TF_VW ? tf_vload(p) : tf_vload_n(p, n);
}

/* sigmoid(x) = 1 / (1 + e^-x); tf_vexp's clamps keep both ends finite (0 and 1). */
static inline tf_vf
sigmoid(tf_vf x)
{
    const tf_vf one = tf_vset1(1.0f);
    return tf_vdiv(one, tf_vadd(one, tf_vexp(tf_vsub(tf_vzero(), x))));
}

/* Channels [c0, c0 + min(TF_VW, C - c0)) of batch item b over all T steps: k, v, r, y rows
 * (T, C) at b, state (B, C) at b (kernels/rwkv.h has the equations). */
void
TF_ISA_FN(tf_rwkv4_wkv_block)(const tf_rwkv4_wkv_args *a, int64_t b, int64_t c0)
{
    const int64_t C = a->C, T = a->T, n = C - c0;
    const int64_t s_off = b * C + c0;
    tf_vf aa = tf_vzero(), bb = tf_vzero(), pp = tf_vset1(EMPTY_PP);
    if (a->aa) {
        aa = load_n(a->aa + s_off, n);
        bb = load_n(a->bb + s_off, n);
        /* bb == 0: an empty state (zeroed), whose pp means nothing */
        pp = tf_vblend(tf_vlt(tf_vzero(), bb), pp, load_n(a->pp + s_off, n));
    }
    const tf_vf w = load_n(a->w + c0, n), u = load_n(a->u + c0, n);
    for (int64_t t = 0; t < T; t++) {
        const int64_t off = (b * T + t) * C + c0;
        const tf_vf kk = load_n(a->k + off, n), vv = load_n(a->v + off, n);
        tf_vf ww = tf_vadd(u, kk);
        tf_vf q = tf_vmax(pp, ww);
        tf_vf e1 = tf_vexp(tf_vsub(pp, q)), e2 = tf_vexp(tf_vsub(ww, q));
        tf_vf y = tf_vdiv(tf_vfma(e1, aa, tf_vmul(e2, vv)), tf_vfma(e1, bb, e2));
        if (a->r) {
            y = tf_vmul(y, sigmoid(load_n(a->r + off, n)));
        }
        tf_vstore_n(a->y + off, y, n);
        ww = tf_vadd(pp, w);
        q = tf_vmax(ww, kk);
        e1 = tf_vexp(tf_vsub(ww, q));
        e2 = tf_vexp(tf_vsub(kk, q));
        aa = tf_vfma(e1, aa, tf_vmul(e2, vv));
        bb = tf_vfma(e1, bb, e2);
        pp = q;
    }
    if (a->aa) {
        tf_vstore_n(a->aa + s_off, aa, n);
        tf_vstore_n(a->bb + s_off, bb, n);
        tf_vstore_n(a->pp + s_off, pp, n);
    }
}

/* One (C,) row: out = x * m + s * (1 - m); s NULL reads as zeros. */
void
TF_ISA_FN(tf_rwkv_shift_row)(const float *x, const float *s, const float *m, float *out, int64_t C)
{
    const tf_vf one = tf_vset1(1.0f);
    for (int64_t c = 0; c < C; c += TF_VW) {
        const int64_t n = C - c;
        const tf_vf mm = load_n(m + c, n);
        const tf_vf prev = s ? tf_vmul(load_n(s + c, n), tf_vsub(one, mm)) : tf_vzero();
        tf_vstore_n(out + c, tf_vfma(load_n(x + c, n), mm, prev), n);
    }
}

/* x [0, N) <- max(x, 0)^2 */
void
TF_ISA_FN(tf_rwkv_relu_square_span)(float *x, int64_t N)
{
    for (int64_t i = 0; i < N; i += TF_VW) {
        const tf_vf r = tf_vmax(tf_vzero(), load_n(x + i, N - i));
        tf_vstore_n(x + i, tf_vmul(r, r), N - i);
    }
}

/* y [0, N) = sigmoid(r) * v */
void
TF_ISA_FN(tf_rwkv_sigmoid_gate_span)(const float *r, const float *v, float *y, int64_t N)
{
    for (int64_t i = 0; i < N; i += TF_VW) {
        tf_vstore_n(y + i, tf_vmul(sigmoid(load_n(r + i, N - i)), load_n(v + i, N - i)), N - i);
    }
}

#else /* the reference path and the dispatcher, compiled once */

TF_ISA_DECLARE(void, tf_rwkv4_wkv_block, (const tf_rwkv4_wkv_args *a, int64_t b, int64_t c0))
TF_ISA_DECLARE(void, tf_rwkv_shift_row,
               (const float *x, const float *s, const float *m, float *out, int64_t C))
TF_ISA_DECLARE(void, tf_rwkv_relu_square_span, (float *x, int64_t N))
TF_ISA_DECLARE(void, tf_rwkv_sigmoid_gate_span,
               (const float *r, const float *v, float *y, int64_t N))

#define RWKV_ISAS (TF_ISA_BIT(TF_ISA_AVX512) | TF_ISA_BIT(TF_ISA_AVX2))

tf_isa_level
tf_rwkv_isa(void)
{
    return tf_isa_for(RWKV_ISAS);
}

/* Lanes of the vector path at the current level (1 on the reference path): the channel block. */
static int64_t
block_width(void)
{
    switch (tf_rwkv_isa()) {
        case TF_ISA_AVX512: return 16;
        case TF_ISA_AVX2: return 8;
        default: return 1;
    }
}

/* ------------------------------------------------------------------ reference path */

static float
sigmoid_ref(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

/* channel c0 of batch item b, as the vector block (one lane) */
static void
wkv_channel_ref(const tf_rwkv4_wkv_args *a, int64_t b, int64_t c)
{
    const int64_t C = a->C, T = a->T, s = b * C + c;
    float aa = 0.0f, bb = 0.0f, pp = EMPTY_PP;
    if (a->aa) {
        aa = a->aa[s];
        bb = a->bb[s];
        pp = bb > 0.0f ? a->pp[s] : EMPTY_PP;
    }
    const float w = a->w[c], u = a->u[c];
    for (int64_t t = 0; t < T; t++) {
        const int64_t off = (b * T + t) * C + c;
        const float kk = a->k[off], vv = a->v[off];
        float ww = u + kk;
        float q = fmaxf(pp, ww);
        float e1 = expf(pp - q), e2 = expf(ww - q);
        float y = (e1 * aa + e2 * vv) / (e1 * bb + e2);
        a->y[off] = a->r ? y * sigmoid_ref(a->r[off]) : y;
        ww = pp + w;
        q = fmaxf(ww, kk);
        e1 = expf(ww - q);
        e2 = expf(kk - q);
        aa = e1 * aa + e2 * vv;
        bb = e1 * bb + e2;
        pp = q;
    }
    if (a->aa) {
        a->aa[s] = aa;
        a->bb[s] = bb;
        a->pp[s] = pp;
    }
}

void
tf_rwkv4_wkv(const tf_rwkv4_wkv_args *a)
{
    const int64_t W = block_width();
    void (*fn)(const tf_rwkv4_wkv_args *, int64_t, int64_t) = wkv_channel_ref;
    switch (tf_rwkv_isa()) {
        case TF_ISA_AVX512: fn = tf_rwkv4_wkv_block_avx512; break;
        case TF_ISA_AVX2: fn = tf_rwkv4_wkv_block_avx2; break;
        default: break;
    }
    const int64_t nblk = (a->C + W - 1) / W, jobs = a->B * nblk;
#pragma omp parallel for schedule(static) if (a->B * a->T * a->C >= PARALLEL_MIN_ELEMS && jobs > 1)
    for (int64_t j = 0; j < jobs; j++) {
        fn(a, j / nblk, (j % nblk) * W);
    }
}

static void
shift_row_ref(const float *x, const float *s, const float *m, float *out, int64_t C)
{
    for (int64_t c = 0; c < C; c++) {
        out[c] = x[c] * m[c] + (s ? s[c] * (1.0f - m[c]) : 0.0f);
    }
}

void
tf_rwkv_token_shift(int64_t B, int64_t T, int64_t C, const float *x, float *prev, int keep_last,
                    int64_t n, const float *mix, float *out)
{
    void (*fn)(const float *, const float *, const float *, float *, int64_t) = shift_row_ref;
    switch (tf_rwkv_isa()) {
        case TF_ISA_AVX512: fn = tf_rwkv_shift_row_avx512; break;
        case TF_ISA_AVX2: fn = tf_rwkv_shift_row_avx2; break;
        default: break;
    }
    const int64_t rows = B * T;
#pragma omp parallel for schedule(static) if (n * rows * C >= PARALLEL_MIN_ELEMS && rows > 1)
    for (int64_t row = 0; row < rows; row++) {
        const int64_t b = row / T, t = row % T;
        const float *xr = x + row * C;
        const float *s = t > 0 ? xr - C : (prev ? prev + b * C : NULL);
        for (int64_t j = 0; j < n; j++) {
            fn(xr, s, mix + j * C, out + (j * rows + row) * C, C);
        }
    }
    if (prev && keep_last) {
        for (int64_t b = 0; b < B; b++) {
            memcpy(prev + b * C, x + (b * T + T - 1) * C, (size_t)C * sizeof(float));
        }
    }
}

/* Elementwise spans: chunks of this many elements per thread. */
#define SPAN 16384

void
tf_rwkv_relu_square(float *x, int64_t N)
{
    const tf_isa_level isa = tf_rwkv_isa();
    const int64_t chunks = (N + SPAN - 1) / SPAN;
#pragma omp parallel for schedule(static) if (chunks > 1 && N >= PARALLEL_MIN_ELEMS)
    for (int64_t j = 0; j < chunks; j++) {
        float *p = x + j * SPAN;
        const int64_t n = N - j * SPAN < SPAN ? N - j * SPAN : SPAN;
        if (isa == TF_ISA_AVX512) {
            tf_rwkv_relu_square_span_avx512(p, n);
        }
        else if (isa == TF_ISA_AVX2) {
            tf_rwkv_relu_square_span_avx2(p, n);
        }
        else {
            for (int64_t i = 0; i < n; i++) {
                const float r = p[i] > 0.0f ? p[i] : 0.0f;
                p[i] = r * r;
            }
        }
    }
}

void
tf_rwkv_sigmoid_gate(const float *r, const float *v, float *y, int64_t N)
{
    const tf_isa_level isa = tf_rwkv_isa();
    const int64_t chunks = (N + SPAN - 1) / SPAN;
#pragma omp parallel for schedule(static) if (chunks > 1 && N >= PARALLEL_MIN_ELEMS)
    for (int64_t j = 0; j < chunks; j++) {
        const int64_t o = j * SPAN, n = N - o < SPAN ? N - o : SPAN;
        if (isa == TF_ISA_AVX512) {
            tf_rwkv_sigmoid_gate_span_avx512(r + o, v + o, y + o, n);
        }
        else if (isa == TF_ISA_AVX2) {
            tf_rwkv_sigmoid_gate_span_avx2(r + o, v + o, y + o, n);
        }
        else {
            for (int64_t i = o; i < o + n; i++) {
                y[i] = sigmoid_ref(r[i]) * v[i];
            }
        }
    }
}

#endif /* TF_ISA_PASS */
