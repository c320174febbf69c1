/* bfloat16.h — float32 <-> bfloat16 (uint16 bits: the top half of a float32). */
#ifndef TFCORE_KERNELS_BFLOAT16_H
#define TFCORE_KERNELS_BFLOAT16_H

#include "kernels/kernel.h"

/* dst (n,) bf16 bits = src (n,) float32 rounded to nearest even (NaN -> quiet NaN, sign
 * kept; Inf stays Inf). Threaded for large n. */
void tf_f32_to_bf16(const float *src, uint16_t *dst, int64_t n);
/* dst (n,) float32 = src (n,) bf16 bits (exact). Threaded for large n. */
void tf_bf16_to_f32(const uint16_t *src, float *dst, int64_t n);

#endif /* TFCORE_KERNELS_BFLOAT16_H */
