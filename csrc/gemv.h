/* gemv.h — few-row products for decoding, read straight from a Linear's packed weights.
 *
 * A decode step multiplies one row per sequence by every weight matrix, so it is bound by
 * how fast the weights stream from memory. oneDNN's brgemm matmul reads them at ~23 GB/s
 * for M = 1 on this machine; this loop streams each 64-column panel of the BA16a64b layout
 * (the one oneDNN packs fp32 weights into) front to back and gets close to the bandwidth.
 */
#ifndef TFCORE_GEMV_H
#define TFCORE_GEMV_H

#include "linear.h"

/* Rows up to which tf_gemv is used instead of oneDNN (measured: beyond 4 rows oneDNN's
 * blocked kernel reuses each weight load better than this register-starved loop). */
#define TF_GEMV_MAX_M 4

/* Where the panels of a packed layout are, if it is one tf_gemv can read (BA16a64b with
 * contiguous K blocks); 0 when it is not (then oneDNN runs every M). */
int tf_gemv_layout(const_dnnl_memory_desc_t wmd, int64_t *panel_stride);

/* y (M, N) = act(x (M, K) Wᵀ + b) (post) other, as tf_linear_forward, for
 * M <= TF_GEMV_MAX_M; requires lin->panel_stride > 0 and AVX-512. */
void tf_gemv(const tf_linear *lin, const float *x, int64_t M, float *y, tf_post post,
             const float *other);

#endif /* TFCORE_GEMV_H */
