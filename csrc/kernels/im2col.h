/* im2col.h — the receptive fields of a convolution as GEMM rows, for the convolutions that
 * layers/conv.c runs as GEMMs instead of oneDNN convolutions (non-overlapping patches,
 * large grouped kernels).
 *
 * Channels-last map x (B, sp..., C) with 1 or 2 spatial axes (a 1-D map (B, L, C) is given as
 * in_sp = {1, L}: kernel, stride, dilation 1 and padding 0 on the first axis, so its taps are
 * the contiguous second-axis runs). Output position
 * o = (b, oy, ox) of a convolution with kernel (ky_n, kx_n), stride s, dilation d and padding
 * (top, left) pl reads the input positions iy = oy s0 - pl0 + ky d0, ix = ox s1 - pl1 + kx d1;
 * its row for channel group g (cg = channels per group) is
 *     rows[o - m0, (ky kx_n + kx) cg + c] = x[b, iy, ix, g cg + c]   (0 outside the map)
 * i.e. the (ky, kx, c) order of a weight stored (OC, ky, kx, IC/G). One call fills the
 * contiguous panel of output positions m0 .. m0 + nrows - 1 (positions counted over
 * (b, oy, ox), row-major), so a caller bounds the buffer by cutting M = B prod(out) into
 * panels. Runs of cg floats are copied with memcpy. */
#ifndef TFCORE_KERNELS_IM2COL_H
#define TFCORE_KERNELS_IM2COL_H

#include "kernels/kernel.h"

/* clang-format off: one line per operand */
typedef struct {
    const float *x;    /* (B, in_sp[0], in_sp[1], C) channels last */
    int64_t C;         /* channels of x */
    int64_t in_sp[2];  /* input extents */
    int64_t out_sp[2]; /* output extents (the caller's tf_conv_out_size) */
    int64_t kernel[2]; /* kernel extents */
    int64_t stride[2];
    int64_t dilation[2]; /* torch's convention: 1 = dense */
    int64_t pad[2];      /* zeros before each axis (those after follow from out_sp) */
    int64_t cg;          /* channels per group */
} tf_im2col_args;
/* clang-format on */

/* rows (nrows, kernel[0] kernel[1] cg): the fields of output positions m0 .. m0 + nrows - 1
 * for group g. OpenMP over rows on tf_threads_begin()'s thread count. */
void tf_im2col_rows(const tf_im2col_args *a, int64_t g, int64_t m0, int64_t nrows, float *rows);

#endif /* TFCORE_KERNELS_IM2COL_H */
