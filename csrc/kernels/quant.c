/* quant.c — symmetric int8 quantization of float32 rows: q = round(x / s), s = max|x| / qmax
 * (qmax 127; 63 for int8 weights on CPUs without VNNI, see layers/linear.c).
 *
 * Used per output channel for int8 weights (once, at construction), per token for the
 * activations entering an int8 GEMM (every call) and per cached row by an int8 KVCache, so
 * the row loop is vectorized (one source, compiled per ISA) and threaded. Rounding is to
 * nearest even, as torch.quantize_per_tensor and oneDNN do; every path computes the same
 * float32 steps (max |x|, s = max / qmax, x * (1 / s), round, clamp to [-qmax, qmax]), so the
 * results are bit-identical at every ISA level.
 */
#include "kernels/quant.h"
#include "kernels/simd.h"

#include <float.h>
#include <math.h>

/* Below this many elements one thread is faster than waking the team. */
#define PARALLEL_MIN_ELEMS (1 << 15)

static inline float
scale_of(float absmax, float qmax)
{
    /* an all-zero row gets scale 1 (any scale reproduces it exactly); the scale is at least
     * FLT_MIN so 1 / s stays finite (a row of tiny values would otherwise meet 0 * Inf) */
    return absmax > 0.0f ? fmaxf(absmax / qmax, FLT_MIN) : 1.0f;
}

#ifdef TF_ISA_PASS
/* ------------------------------------------------------------------ vector path (per ISA) */

/* x (K,) -> q (K,), *scale */
void
TF_ISA_FN(tf_quantize_row)(const float *x, int64_t K, float qmax, int8_t *q, float *scale)
{
    tf_vf m0 = tf_vzero(), m1 = tf_vzero(); /* two chains: max has a latency of several cycles */
    int64_t k = 0;
    for (; k + 2 * TF_VW <= K; k += 2 * TF_VW) {
        m0 = tf_vmax(m0, tf_vabs(tf_vload(x + k)));
        m1 = tf_vmax(m1, tf_vabs(tf_vload(x + k + TF_VW)));
    }
    for (; k < K; k += TF_VW) {
        m0 = tf_vmax(m0, tf_vabs(tf_vload_n(x + k, K - k))); /* lanes past K read 0 */
    }
    const float s = scale_of(tf_vreduce_max(tf_vmax(m0, m1)), qmax);
    const tf_vf inv = tf_vset1(1.0f / s), lo = tf_vset1(-qmax), hi = tf_vset1(qmax);
    for (k = 0; k < K; k += TF_VW) {
        const tf_vf v = tf_vmul(K - k >= TF_VW ? tf_vload(x + k) : tf_vload_n(x + k, K - k), inv);
        /* |v| <= qmax up to the last ulp; clamping first keeps the rounded value in range,
         * and tf_vcvt_i rounds to nearest even like nearbyintf */
        tf_vstore_s8_n(q + k, tf_vcvt_i(tf_vmin(tf_vmax(v, lo), hi)), K - k);
    }
    *scale = s;
}

/* q (K,) int8 -> y (K,) = q * scale */
void
TF_ISA_FN(tf_dequantize_row)(const int8_t *q, int64_t K, float scale, float *y)
{
    const tf_vf s = tf_vset1(scale);
    int64_t k = 0;
    for (; k + TF_VW <= K; k += TF_VW) {
        tf_vstore(y + k, tf_vmul(tf_vload_s8_n(q + k, TF_VW), s));
    }
    if (k < K) {
        tf_vstore_n(y + k, tf_vmul(tf_vload_s8_n(q + k, K - k), s), K - k);
    }
}

#else /* the reference path and the dispatchers, compiled once */

TF_ISA_DECLARE(void, tf_quantize_row,
               (const float *x, int64_t K, float qmax, int8_t *q, float *scale))
TF_ISA_DECLARE(void, tf_dequantize_row, (const int8_t *q, int64_t K, float scale, float *y))

#define QUANT_ISAS (TF_ISA_BIT(TF_ISA_AVX512) | TF_ISA_BIT(TF_ISA_AVX2))

/* The level quantize kernels run at now (show_config). */
tf_isa_level
tf_quantize_isa(void)
{
    return tf_isa_for(QUANT_ISAS);
}

/* ------------------------------------------------------------------ reference path */

static void
quantize_row_ref(const float *x, int64_t K, float qmax, int8_t *q, float *scale)
{
    float m = 0.0f;
    for (int64_t k = 0; k < K; k++) {
        m = fmaxf(m, fabsf(x[k]));
    }
    const float s = scale_of(m, qmax), inv = 1.0f / s;
    for (int64_t k = 0; k < K; k++) {
        float v = nearbyintf(x[k] * inv);
        q[k] = (int8_t)(v > qmax ? qmax : v < -qmax ? -qmax : v);
    }
    *scale = s;
}

static void
dequantize_row_ref(const int8_t *q, int64_t K, float scale, float *y)
{
    for (int64_t k = 0; k < K; k++) {
        y[k] = (float)q[k] * scale;
    }
}

void
tf_quantize_rows_s8(const float *x, int64_t M, int64_t K, int qmax, int8_t *q, float *scales)
{
    void (*row_fn)(const float *, int64_t, float, int8_t *, float *) = quantize_row_ref;
    switch (tf_quantize_isa()) {
        case TF_ISA_AVX512: row_fn = tf_quantize_row_avx512; break;
        case TF_ISA_AVX2: row_fn = tf_quantize_row_avx2; break;
        default: break;
    }
    if (M * K < PARALLEL_MIN_ELEMS || M == 1) { /* one token or one cached row: no team */
        for (int64_t m = 0; m < M; m++) {
            row_fn(x + m * K, K, (float)qmax, q + m * K, scales + m);
        }
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < M; m++) {
        row_fn(x + m * K, K, (float)qmax, q + m * K, scales + m);
    }
}

/* One row as tf_quantize_rows_s8, stored as q + 128 (u8): the sign bit flipped while the
 * row is still in L1. */
static void
quantize_row_u8(void (*row_fn)(const float *, int64_t, float, int8_t *, float *), const float *x,
                int64_t K, float qmax, uint8_t *q, float *scale)
{
    row_fn(x, K, qmax, (int8_t *)q, scale);
    for (int64_t k = 0; k < K; k++) {
        q[k] ^= 0x80u;
    }
}

void
tf_quantize_rows_u8(const float *x, int64_t M, int64_t K, int qmax, uint8_t *q, float *scales)
{
    void (*row_fn)(const float *, int64_t, float, int8_t *, float *) = quantize_row_ref;
    switch (tf_quantize_isa()) {
        case TF_ISA_AVX512: row_fn = tf_quantize_row_avx512; break;
        case TF_ISA_AVX2: row_fn = tf_quantize_row_avx2; break;
        default: break;
    }
#pragma omp parallel for schedule(static) if (M * K >= PARALLEL_MIN_ELEMS && M > 1)
    for (int64_t m = 0; m < M; m++) {
        quantize_row_u8(row_fn, x + m * K, K, (float)qmax, q + m * K, scales + m);
    }
}

void
tf_dequantize_rows_s8(const int8_t *q, int64_t M, int64_t K, const float *scales, float *y)
{
    void (*row_fn)(const int8_t *, int64_t, float, float *) = dequantize_row_ref;
    switch (tf_quantize_isa()) {
        case TF_ISA_AVX512: row_fn = tf_dequantize_row_avx512; break;
        case TF_ISA_AVX2: row_fn = tf_dequantize_row_avx2; break;
        default: break;
    }
    for (int64_t m = 0; m < M; m++) {
        row_fn(q + m * K, K, scales[m], y + m * K);
    }
}

void
tf_quantize_columns_s8(const float *x, int64_t K, int64_t N, int qmax, int8_t *q, float *scales)
{
    /* (K, N) row-major, one scale per column: two passes down the rows, which reads x in
     * order (once for the maxima, once to quantize); x * (1 / s) as the rows do it */
    const float fq = (float)qmax;
    for (int64_t n = 0; n < N; n++) {
        scales[n] = 0.0f;
    }
    for (int64_t k = 0; k < K; k++) {
        for (int64_t n = 0; n < N; n++) {
            scales[n] = fmaxf(scales[n], fabsf(x[k * N + n]));
        }
    }
    for (int64_t n = 0; n < N; n++) {
        scales[n] = scale_of(scales[n], fq);
    }
    for (int64_t k = 0; k < K; k++) {
        for (int64_t n = 0; n < N; n++) {
            float v = nearbyintf(x[k * N + n] * (1.0f / scales[n]));
            q[k * N + n] = (int8_t)(v > fq ? fq : v < -fq ? -fq : v);
        }
    }
}

#endif /* TF_ISA_PASS */
