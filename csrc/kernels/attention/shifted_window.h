/* shifted_window.h — Swin's 2-D (shifted) window attention, computed straight from the fused
 * QKV projection of the feature map in image order.
 *
 * What HF does with copies — pad the map to a multiple of the window, torch.roll it by
 * -shift, partition it into windows, attend within each window with a relative-position
 * bias and the shifted-window mask, reverse the partition, roll back, crop — is here the
 * kernel's indexing: window token (r, c) of window (wy, wx) reads the QKV row of image
 * position ((wy ws + r + shift) mod Hp, (wx ws + c + shift) mod Wp) (the projection of a
 * zero row where that lies in the padding), and its output goes back to that position.
 *
 * Shapes (glossary in tfcore.h): the map is Hh x Ww (Hp x Wp padded up to multiples of
 * ws), N = ws * ws tokens per window, nW = (Hp / ws) (Wp / ws) windows per image.
 */
#ifndef TFCORE_KERNELS_ATTENTION_SHIFTED_WINDOW_H
#define TFCORE_KERNELS_ATTENTION_SHIFTED_WINDOW_H

#include "kernels/kernel.h"

/* Query lanes per block of the fast path; precomputed biases pad N up to a multiple. */
#define TF_WINDOW_LANES 64

typedef struct {
    const float *qkv; /* (B, Hh, Ww, 3, H, D): the row of (b, y, x) holds q, k, v heads */
    const float *pad; /* (3, H, D): q, k, v of a padding token (projection of zeros) */
    float *out;       /* (B, Hh, Ww, H, D), every position written */
    int64_t B, Hh, Ww, H, D;
    int64_t ws;         /* window side, >= 1 */
    int64_t shift;      /* cyclic shift, 0 <= shift < ws; > 0 adds region_mask between
                          * tokens of different shifted-window regions */
    float region_mask;  /* HF Swin's -100; SwinV2 in transformers adds its mask twice: -200 */
    const float *table; /* (H, (2 tw - 1)^2) relative-position bias, head-major, or NULL */
    int64_t tw;         /* window side the table was made for, tw >= ws */
    const float *bias;  /* (H, N, NP) from tf_window_bias for this ws, or NULL: built per
                          * call from table when needed (fast path only) */
    float scale;
    float *weights; /* (B nW, H, N, N) softmax probabilities out (HF's window order),
                          * or NULL */
} tf_window_args;

/* NP: the query lanes of a precomputed bias row, N rounded up to TF_WINDOW_LANES. */
static inline int64_t
tf_window_lanes(int64_t N)
{
    return (N + TF_WINDOW_LANES - 1) / TF_WINDOW_LANES * TF_WINDOW_LANES;
}

/* table (H, (2 tw - 1)^2) head-major -> bias (H, N, NP) key-major for window side ws <= tw:
 * bias[h][j][i] = table[h][(ri - rj + tw - 1) (2 tw - 1) + (ci - cj + tw - 1)] for query
 * i = (ri, ci), key j = (rj, cj) of the window; 0 in lanes i >= N. */
void tf_window_bias(const float *table, int64_t H, int64_t tw, int64_t ws, float *bias);

/* Runs with OpenMP over (B, windows, heads) on tf_threads_begin()'s thread count, without
 * the GIL. 0 / -1 with err filled (out of memory). */
int tf_window_attention(const tf_window_args *a, tf_err *err);

#endif /* TFCORE_KERNELS_ATTENTION_SHIFTED_WINDOW_H */
