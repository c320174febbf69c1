/* norm.c — LayerNorm and RMSNorm rows (kernels/norm.h), with an optional fused residual add.
 *
 * One row at a time: statistics in a first pass over s = x + residual (two-pass variance,
 * numerically sound for rows with a large mean), then the normalised, scaled row.
 */
#include "kernels/norm.h"

#include "kernels/simd.h"

#include <math.h>
#include <string.h>

/* Rows smaller than this much work stay on one thread. */
#define PARALLEL_MIN_ELEMS 32768

#ifdef TF_ISA_PASS
/* ------------------------------------------------------------------ vector path (per ISA) */

/* lanes [i, i + n) of x (+ r); lanes past n are 0 */
static inline tf_vf
load_sum(const float *x, const float *r, int64_t i, int64_t n)
{
    if (n >= TF_VW) {
        tf_vf v = tf_vload(x + i);
        return r ? tf_vadd(v, tf_vload(r + i)) : v;
    }
    tf_vf v = tf_vload_n(x + i, n);
    return r ? tf_vadd(v, tf_vload_n(r + i, n)) : v;
}

/* x, r, s_out, y are (C,) rows: the same steps as norm_row_ref in float32 vectors */
void
TF_ISA_FN(tf_norm_row)(const tf_norm_params *n, const float *x, const float *r, float *s_out,
                       float *y)
{
    const int64_t C = n->C;
    tf_vf acc = tf_vzero();
    for (int64_t i = 0; i < C; i += TF_VW) {
        const tf_vf s = load_sum(x, r, i, C - i);
        if (s_out) {
            tf_vstore_n(s_out + i, s, C - i);
        }
        acc = tf_vadd(acc, s);
    }
    /* After s_out is written, read the sum from there (one stream instead of two). */
    const float *src = s_out ? s_out : x;
    const float *res = s_out ? NULL : r;
    const float mean = n->kind == TF_NORM_LAYER ? tf_vreduce_add(acc) / (float)C : 0.0f;
    const tf_vf vmean = tf_vset1(mean);
    tf_vf sq = tf_vzero();
    for (int64_t i = 0; i < C; i += TF_VW) {
        tf_vf d = tf_vsub(load_sum(src, res, i, C - i), vmean);
        if (C - i < TF_VW) {
            d = tf_vblend(tf_vmask_n(C - i), tf_vzero(), d); /* lanes past C add nothing */
        }
        sq = tf_vfma(d, d, sq);
    }
    const float inv = 1.0f / sqrtf(tf_vreduce_add(sq) / (float)C + n->eps);
    const tf_vf vinv = tf_vset1(inv);
    for (int64_t i = 0; i < C; i += TF_VW) {
        const int64_t len = C - i;
        tf_vf v = tf_vmul(tf_vsub(load_sum(src, res, i, len), vmean), vinv);
        v = tf_vmul(v, len >= TF_VW ? tf_vload(n->gamma + i) : tf_vload_n(n->gamma + i, len));
        if (n->beta) {
            v = tf_vadd(v, len >= TF_VW ? tf_vload(n->beta + i) : tf_vload_n(n->beta + i, len));
        }
        tf_vstore_n(y + i, v, len);
    }
}

/* one group of S channels: y, z, w, out (S,); out = g / rms(g) * w, g = y * silu(z). Pass 1
 * writes g to out and sums its squares, pass 2 scales out in place. */
void
TF_ISA_FN(tf_gated_rms_group)(const float *y, const float *z, const float *w, int64_t S, float eps,
                              float *out)
{
    const tf_vf one = tf_vset1(1.0f);
    tf_vf sq = tf_vzero();
    for (int64_t i = 0; i < S; i += TF_VW) {
        const int64_t len = S - i; /* lanes past S load as 0: g = 0 adds nothing */
        const tf_vf zv = tf_vload_n(z + i, len);
        const tf_vf g = tf_vmul(tf_vload_n(y + i, len),
                                tf_vdiv(zv, tf_vadd(one, tf_vexp(tf_vsub(tf_vzero(), zv)))));
        tf_vstore_n(out + i, g, len);
        sq = tf_vfma(g, g, sq);
    }
    const tf_vf inv = tf_vset1(1.0f / sqrtf(tf_vreduce_add(sq) / (float)S + eps));
    for (int64_t i = 0; i < S; i += TF_VW) {
        const int64_t len = S - i;
        tf_vstore_n(out + i,
                    tf_vmul(tf_vmul(tf_vload_n(out + i, len), inv), tf_vload_n(w + i, len)), len);
    }
}

#else /* the reference path and the dispatcher, compiled once */

TF_ISA_DECLARE(void, tf_norm_row,
               (const tf_norm_params *n, const float *x, const float *r, float *s_out, float *y))
TF_ISA_DECLARE(void, tf_gated_rms_group,
               (const float *y, const float *z, const float *w, int64_t S, float eps, float *out))

#define NORM_ISAS (TF_ISA_BIT(TF_ISA_AVX512) | TF_ISA_BIT(TF_ISA_AVX2))

tf_isa_level
tf_norm_isa(void)
{
    return tf_isa_for(NORM_ISAS);
}

/* ------------------------------------------------------------------ reference path */

/* s is (C,) row (or x + r), y is (C,) */
static void
norm_row_ref(const tf_norm_params *n, const float *x, const float *r, float *s_out, float *y)
{
    const int64_t C = n->C;
    double sum = 0.0, sq = 0.0;
    for (int64_t i = 0; i < C; i++) {
        float s = r ? x[i] + r[i] : x[i];
        if (s_out) {
            s_out[i] = s;
        }
        sum += s;
    }
    const float *s_row = s_out ? s_out : NULL;
    double mean = n->kind == TF_NORM_LAYER ? sum / (double)C : 0.0;
    for (int64_t i = 0; i < C; i++) {
        double s = s_row ? s_row[i] : (r ? (double)(x[i] + r[i]) : x[i]);
        sq += (s - mean) * (s - mean);
    }
    float inv = (float)(1.0 / sqrt(sq / (double)C + (double)n->eps));
    for (int64_t i = 0; i < C; i++) {
        float s = s_row ? s_row[i] : (r ? x[i] + r[i] : x[i]);
        float v = (s - (float)mean) * inv * n->gamma[i];
        y[i] = n->beta ? v + n->beta[i] : v;
    }
}

void
tf_norm_rows(const tf_norm_params *n, const float *x, const float *residual, float *sum_out,
             float *y, int64_t M)
{
    const int64_t C = n->C;
    void (*row_fn)(const tf_norm_params *, const float *, const float *, float *, float *) =
        norm_row_ref;
    switch (tf_norm_isa()) {
        case TF_ISA_AVX512: row_fn = tf_norm_row_avx512; break;
        case TF_ISA_AVX2: row_fn = tf_norm_row_avx2; break;
        default: break;
    }
#pragma omp parallel for schedule(static) if (M * C >= PARALLEL_MIN_ELEMS && M > 1)
    for (int64_t row = 0; row < M; row++) {
        const float *xr = x + row * C;
        const float *rr = residual ? residual + row * C : NULL;
        float *sr = sum_out ? sum_out + row * C : NULL;
        row_fn(n, xr, rr, sr, y + row * C);
    }
}

/* as the vector path, the sum of squares in double */
static void
gated_rms_group_ref(const float *y, const float *z, const float *w, int64_t S, float eps,
                    float *out)
{
    double sq = 0.0;
    for (int64_t i = 0; i < S; i++) {
        const float g = y[i] * (z[i] / (1.0f + expf(-z[i])));
        out[i] = g;
        sq += (double)g * g;
    }
    const float inv = (float)(1.0 / sqrt(sq / (double)S + (double)eps));
    for (int64_t i = 0; i < S; i++) {
        out[i] = out[i] * inv * w[i];
    }
}

void
tf_gated_rms_norm_rows(const float *y, const float *z, const float *w, int64_t M, int64_t C,
                       int64_t G, float eps, float *out)
{
    const int64_t S = C / G;
    void (*group_fn)(const float *, const float *, const float *, int64_t, float, float *) =
        gated_rms_group_ref;
    switch (tf_norm_isa()) {
        case TF_ISA_AVX512: group_fn = tf_gated_rms_group_avx512; break;
        case TF_ISA_AVX2: group_fn = tf_gated_rms_group_avx2; break;
        default: break;
    }
#pragma omp parallel for schedule(static) if (M * C >= PARALLEL_MIN_ELEMS && M * G > 1)
    for (int64_t i = 0; i < M * G; i++) {
        const int64_t off = (i / G) * C + (i % G) * S;
        group_fn(y + off, z + off, w + (i % G) * S, S, eps, out + off);
    }
}

#endif /* TF_ISA_PASS */
