/* im2col.c — receptive fields as GEMM rows (shapes and layout in im2col.h). A copy kernel:
 * memcpy of channel runs, no arithmetic, so it has no per-ISA passes. */
#include "kernels/im2col.h"

#include <string.h>

/* below this many floats per call the rows are gathered by one thread */
#define PARALLEL_MIN_ELEMS 65536

void
tf_im2col_rows(const tf_im2col_args *a, int64_t g, int64_t m0, int64_t nrows, float *rows)
{
    const int64_t H = a->in_sp[0], W = a->in_sp[1], OH = a->out_sp[0], OW = a->out_sp[1];
    const int64_t KH = a->kernel[0], KW = a->kernel[1], C = a->C, cg = a->cg;
    const int64_t K = KH * KW * cg; /* row length */
    const size_t run = (size_t)cg * sizeof(float);
#pragma omp parallel for schedule(static) if (nrows * K >= PARALLEL_MIN_ELEMS)
    for (int64_t r = 0; r < nrows; r++) {
        const int64_t m = m0 + r;
        const int64_t b = m / (OH * OW), oy = m / OW % OH, ox = m % OW;
        const float *xb = a->x + b * H * W * C + g * cg;
        float *row = rows + r * K;
        for (int64_t ky = 0; ky < KH; ky++) {
            const int64_t iy = oy * a->stride[0] - a->pad[0] + ky * a->dilation[0];
            float *dst = row + ky * KW * cg;
            if (iy < 0 || iy >= H) {
                memset(dst, 0, (size_t)KW * run);
                continue;
            }
            /* stride-1 dense columns: the kx runs are one contiguous span of the map row
             * when the group covers every channel (non-overlapping patches, 1-D frames) */
            const int64_t ix0 = ox * a->stride[1] - a->pad[1];
            if (cg == C && a->dilation[1] == 1 && ix0 >= 0 && ix0 + KW <= W) {
                memcpy(dst, xb + (iy * W + ix0) * C, (size_t)KW * run);
                continue;
            }
            for (int64_t kx = 0; kx < KW; kx++) {
                const int64_t ix = ix0 + kx * a->dilation[1];
                if (ix < 0 || ix >= W) {
                    memset(dst + kx * cg, 0, run);
                }
                else {
                    memcpy(dst + kx * cg, xb + (iy * W + ix) * C, run);
                }
            }
        }
    }
}
