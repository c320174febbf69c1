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
#include "kernels/gemv.h" /* TF_GEMV_MAX_M, the portable kernel */

/* Floats between the 64-column panels of oneDNN's float32 BA16a64b layout with contiguous K
 * blocks (its AVX-512 packing: K_padded * 64), with *ldw the floats between the k rows of a
 * panel (64); 0 for any other layout (plain rows are Linear's (N, K) rows, set up there). */
int64_t tf_gemv_panel_stride(const_dnnl_memory_desc_t wmd, int64_t *ldw);

/* The panel stride in bytes of oneDNN's s8 aBC16b64c4b layout, or 0 when it cannot read it
 * (or the CPU lacks AVX512_VNNI); the same in elements of oneDNN's bf16 BA16a64b2a layout
 * (0 without AVX512_BF16). */
int64_t tf_gemv_s8_panel_stride(const_dnnl_memory_desc_t wmd);
int64_t tf_gemv_bf16_panel_stride(const_dnnl_memory_desc_t wmd);

/* y (M, N) = act(x (M, K) Wᵀ + b) (post) other, as tf_linear_forward, for a few rows when a
 * kernel here can: 1 done, 0 not taken (the caller runs oneDNN), -1 error (err filled).
 * Taken when lin->panel_stride > 0 and: float32 weights (M <= TF_GEMV_MAX_M over panels,
 * M <= TF_GEMV_ROWS_MAX_M over (N, K) rows), or bf16 / int8
 * in tfcore's own panels (no AVX512_BF16 / VNNI; M <= TF_GEMV_OWN_MAX_M, 4 rows per pass), with
 * the portable kernel above the reference level (tf_gemv_f32_isa); oneDNN's int8 / bf16
 * panels with the AVX512_VNNI / AVX512_BF16 kernels at the AVX-512 level (M <= 4). int8 quantizes each row as the oneDNN path does, bf16
 * rounds it to bf16: every path computes the same products. Call without the GIL. */
#define TF_GEMV_OWN_MAX_M 16
int tf_linear_gemv(const tf_linear *lin, const float *x, int64_t M, float *y, tf_post post,
                   const float *other, tf_err *err);

#endif /* TFCORE_GEMV_H */
