/* norm.c — LayerNorm and RMSNorm rows (kernels/norm.h), with an optional fused residual add.
 *
 * One row at a time: statistics in a first pass over s = x + residual (two-pass variance,
 * numerically sound for rows with a large mean), then the normalised, scaled row.
 */
#include "kernels/norm.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

/* Rows smaller than this much work stay on one thread. */
#define PARALLEL_MIN_ELEMS 32768

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

/* ------------------------------------------------------------------ AVX-512 path */

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

AVX512 static inline __m512
load_sum(const float *x, const float *r, int64_t i, __mmask16 m)
{
    __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    return r ? _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, r + i)) : v;
}

/* x, r, s_out, y are (C,) rows */
AVX512 static void
norm_row_avx512(const tf_norm_params *n, const float *x, const float *r, float *s_out, float *y)
{
    const int64_t C = n->C;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < C; i += 16) {
        __mmask16 m = C - i >= 16 ? 0xFFFF : (__mmask16)((1u << (C - i)) - 1);
        __m512 s = load_sum(x, r, i, m);
        if (s_out) {
            _mm512_mask_storeu_ps(s_out + i, m, s);
        }
        acc = _mm512_add_ps(acc, s);
    }
    /* After s_out is written, read the sum from there (one stream instead of two). */
    const float *src = s_out ? s_out : x;
    const float *res = s_out ? NULL : r;
    const float mean = n->kind == TF_NORM_LAYER ? _mm512_reduce_add_ps(acc) / (float)C : 0.0f;
    const __m512 vmean = _mm512_set1_ps(mean);
    __m512 sq = _mm512_setzero_ps();
    for (int64_t i = 0; i < C; i += 16) {
        __mmask16 m = C - i >= 16 ? 0xFFFF : (__mmask16)((1u << (C - i)) - 1);
        __m512 d = _mm512_maskz_sub_ps(m, load_sum(src, res, i, m), vmean);
        sq = _mm512_fmadd_ps(d, d, sq);
    }
    const float inv = 1.0f / sqrtf(_mm512_reduce_add_ps(sq) / (float)C + n->eps);
    const __m512 vinv = _mm512_set1_ps(inv);
    for (int64_t i = 0; i < C; i += 16) {
        __mmask16 m = C - i >= 16 ? 0xFFFF : (__mmask16)((1u << (C - i)) - 1);
        __m512 v = _mm512_mul_ps(_mm512_sub_ps(load_sum(src, res, i, m), vmean), vinv);
        v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, n->gamma + i));
        if (n->beta) {
            v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, n->beta + i));
        }
        _mm512_mask_storeu_ps(y + i, m, v);
    }
}

void
tf_norm_rows(const tf_norm_params *n, const float *x, const float *residual, float *sum_out,
             float *y, int64_t M)
{
    const int64_t C = n->C;
    const int fast = tf_cpu_has_avx512() && !tf_force_reference;
#pragma omp parallel for schedule(static) if (M * C >= PARALLEL_MIN_ELEMS && M > 1)
    for (int64_t row = 0; row < M; row++) {
        const float *xr = x + row * C;
        const float *rr = residual ? residual + row * C : NULL;
        float *sr = sum_out ? sum_out + row * C : NULL;
        if (fast) {
            norm_row_avx512(n, xr, rr, sr, y + row * C);
        }
        else {
            norm_row_ref(n, xr, rr, sr, y + row * C);
        }
    }
}
