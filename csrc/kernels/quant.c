/* quant.c — symmetric int8 quantization of float32 rows: q = round(x / s), s = max|x| / 127.
 *
 * Used per output channel for int8 weights (once, at construction) and per token for the
 * activations entering an int8 GEMM (every call), so the row loop is vectorized and
 * threaded. Rounding is to nearest even, as torch.quantize_per_tensor and oneDNN do.
 */
#include "kernels/quant.h"
#include "kernels/simd.h"

#include <math.h>

/* Below this many elements one thread is faster than waking the team. */
#define PARALLEL_MIN_ELEMS (1 << 15)

static float
scale_of(float absmax)
{
    /* an all-zero row gets scale 1 (any scale reproduces it exactly) */
    return absmax > 0.0f ? absmax / 127.0f : 1.0f;
}

static void
quantize_row_scalar(const float *x, int64_t K, int8_t *q, float *scale)
{
    float m = 0.0f;
    for (int64_t k = 0; k < K; k++) {
        m = fmaxf(m, fabsf(x[k]));
    }
    const float s = scale_of(m), inv = 1.0f / s;
    for (int64_t k = 0; k < K; k++) {
        float v = nearbyintf(x[k] * inv);
        q[k] = (int8_t)(v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v);
    }
    *scale = s;
}

TF_AVX512 static void
quantize_row_avx512(const float *x, int64_t K, int8_t *q, float *scale)
{
    __m512 m = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k += 16) {
        __m512 v = _mm512_maskz_loadu_ps(tf_mask16(K - k), x + k);
        m = _mm512_max_ps(m, _mm512_abs_ps(v));
    }
    const float s = scale_of(_mm512_reduce_max_ps(m));
    const __m512 inv = _mm512_set1_ps(1.0f / s);
    for (int64_t k = 0; k < K; k += 16) {
        const __mmask16 mask = tf_mask16(K - k);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, x + k), inv);
        /* cvtps rounds to nearest even; |v| <= 127 (+ rounding), so the saturating narrow
         * only guards against the last ulp */
        __m512i i32 = _mm512_cvtps_epi32(v);
        _mm512_mask_cvtsepi32_storeu_epi8(q + k, mask, i32);
    }
    *scale = s;
}

/* The level quantize kernels run at now (show_config). */
tf_isa_level
tf_quantize_isa(void)
{
    return tf_isa_for(TF_ISA_BIT(TF_ISA_AVX512));
}

void
tf_quantize_rows_s8(const float *x, int64_t M, int64_t K, int8_t *q, float *scales)
{
    const int avx512 = tf_quantize_isa() == TF_ISA_AVX512;
#pragma omp parallel for schedule(static) if (M * K >= PARALLEL_MIN_ELEMS && M > 1)
    for (int64_t m = 0; m < M; m++) {
        if (avx512) {
            quantize_row_avx512(x + m * K, K, q + m * K, scales + m);
        }
        else {
            quantize_row_scalar(x + m * K, K, q + m * K, scales + m);
        }
    }
}

void
tf_quantize_columns_s8(const float *x, int64_t K, int64_t N, int8_t *q, float *scales)
{
    /* (K, N) row-major, one scale per column: two passes down the rows, which reads x in
     * order (once for the maxima, once to quantize) */
    for (int64_t n = 0; n < N; n++) {
        scales[n] = 0.0f;
    }
    for (int64_t k = 0; k < K; k++) {
        for (int64_t n = 0; n < N; n++) {
            scales[n] = fmaxf(scales[n], fabsf(x[k * N + n]));
        }
    }
    for (int64_t n = 0; n < N; n++) {
        scales[n] = scale_of(scales[n]);
    }
    for (int64_t k = 0; k < K; k++) {
        for (int64_t n = 0; n < N; n++) {
            float v = nearbyintf(x[k * N + n] / scales[n]);
            q[k * N + n] = (int8_t)(v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v);
        }
    }
}
