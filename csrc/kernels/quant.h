/* quant.h — symmetric int8 quantization for int8 Linear layers and the int8 KVCache. */
#ifndef TFCORE_KERNELS_QUANT_H
#define TFCORE_KERNELS_QUANT_H

#include "kernels/kernel.h"

/* x (M, K) row-major -> q (M, K) int8 in [-qmax, qmax] and scales (M,) with x ≈ q * scale
 * per row (per token for activations, per output channel for (N, K) weights). qmax is 127,
 * or 63 for int8 weights on CPUs without VNNI (layers/linear.c says why).
 * Runs without the GIL; threaded over rows. */
void tf_quantize_rows_s8(const float *x, int64_t M, int64_t K, int qmax, int8_t *q, float *scales);

/* The same rows stored as q + 128 in [128 - qmax, 128 + qmax] (u8): the rows of oneDNN's
 * u8·s8 GEMM at AVX2 (layers/linear.c), shifted in the same pass. */
void tf_quantize_rows_u8(const float *x, int64_t M, int64_t K, int qmax, uint8_t *q, float *scales);

/* The same with one scale per column of x (K, N): GPT-2 Conv1D weights are (in, out). */
void tf_quantize_columns_s8(const float *x, int64_t K, int64_t N, int qmax, int8_t *q,
                            float *scales);

/* y (M, K) = q (M, K) * scales (M,) per row: the inverse of tf_quantize_rows_s8 (the int8
 * KVCache's reads). Serial (callers thread over blocks of rows). */
void tf_dequantize_rows_s8(const int8_t *q, int64_t M, int64_t K, const float *scales, float *y);

#endif /* TFCORE_KERNELS_QUANT_H */
