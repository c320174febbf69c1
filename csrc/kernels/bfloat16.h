/* bfloat16.h — float32 <-> bfloat16 (uint16 bits: the top half of a float32). */
#ifndef TFCORE_KERNELS_BFLOAT16_H
#define TFCORE_KERNELS_BFLOAT16_H

#include "kernels/kernel.h"

/* dst (n,) bf16 bits = src (n,) float32 rounded to nearest even (NaN -> quiet NaN, sign
 * kept; Inf stays Inf). Threaded for large n. */
void tf_f32_to_bf16(const float *src, uint16_t *dst, int64_t n);
/* dst (n,) float32 = src (n,) bf16 bits (exact). Threaded for large n. */
void tf_bf16_to_f32(const uint16_t *src, float *dst, int64_t n);

/* dst (rows, cols) float32, rows ldd floats apart = the bf16 block src (rows, cols), rows
 * lds elements apart: a slice of columns of a bf16 matrix, widened for a float32 GEMM.
 * Threaded over rows for large blocks. */
void tf_bf16_to_f32_block(const uint16_t *src, int64_t lds, int64_t rows, int64_t cols, float *dst,
                          int64_t ldd);
/* dst (n,) = src (n,) rounded to the nearest bf16 (as tf_f32_to_bf16), kept as float32;
 * dst may be src. Threaded for large n. */
void tf_round_to_bf16(const float *src, float *dst, int64_t n);

#endif /* TFCORE_KERNELS_BFLOAT16_H */
