/* linear_gemv.h — few-row products for decoding, read straight from a Linear's packed weights.
 *
 * A decode step multiplies one row per sequence by every weight matrix. On large layers
 * this loop and oneDNN's brgemm both stream the weights at the memory bandwidth; on the
 * small ones a decode step is made of, skipping oneDNN's per-call primitive lookup and
 * memory objects is what counts (768x768, M = 1: 11.6 vs 18.4 us per call). It streams
 * each 64-column panel of the packed weights front to back (kernels/gemv.h).
 */
#ifndef TFCORE_GEMV_H
#define TFCORE_GEMV_H

#include "layers/linear.h"
#include "kernels/gemv.h" /* TF_GEMV_MAX_M, the float32 kernel */

/* Floats between the 64-column panels of a float32 packed layout tf_gemv can read, with
 * *ldw the floats between the k rows of a panel; 0 when it cannot (then oneDNN runs every
 * M). Read: oneDNN's BA16a64b with contiguous K blocks (its AVX-512 packing: stride
 * K_padded * 64, ldw 64) and a plain row-major (K, N) matrix (its AVX2 choice: 64, N). */
int64_t tf_gemv_panel_stride(const_dnnl_memory_desc_t wmd, int64_t *ldw);

/* y (M, N) = act(x (M, K) Wᵀ + b) (post) other, as tf_linear_forward, for
 * M <= TF_GEMV_MAX_M; requires lin->panel_stride > 0 and tf_gemv_isa() above the
 * reference level (AVX-512 or AVX2). */
void tf_gemv(const tf_linear *lin, const float *x, int64_t M, float *y, tf_post post,
             const float *other);

/* The same for int8 weights (dynamic per-token rows, as the oneDNN path): the panel
 * stride in bytes of oneDNN's s8 aBC16b64c4b layout, or 0 when it cannot read it (or the
 * CPU lacks AVX512_VNNI). tf_gemv_s8 needs tf_gemv_s8_scratch(lin, M) bytes of scratch. */
int64_t tf_gemv_s8_panel_stride(const_dnnl_memory_desc_t wmd);
size_t tf_gemv_s8_scratch(const tf_linear *lin, int64_t M);
void tf_gemv_s8(const tf_linear *lin, const float *x, int64_t M, float *y, tf_post post,
                const float *other, void *scratch);

/* And for bf16 weights (rows rounded to bf16 like the oneDNN path; AVX512_BF16): the panel
 * stride in elements of oneDNN's BA16a64b2a layout, or 0. */
int64_t tf_gemv_bf16_panel_stride(const_dnnl_memory_desc_t wmd);
size_t tf_gemv_bf16_scratch(const tf_linear *lin, int64_t M);
void tf_gemv_bf16(const tf_linear *lin, const float *x, int64_t M, float *y, tf_post post,
                  const float *other, void *scratch);

/* The level the few-row float32 kernel runs at now (show_config); at the reference level
 * Linear uses oneDNN for every M. The int8 and bf16 kernels run only at AVX-512 (they need
 * AVX512_VNNI / AVX512_BF16 too). */
tf_isa_level tf_gemv_isa(void);

#endif /* TFCORE_GEMV_H */
