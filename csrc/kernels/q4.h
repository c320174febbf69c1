/* q4.h — group-quantized 4-bit weights ("int4"): the products of Linear's int4 dtype.
 *
 * A (N, K) weight matrix W (N outputs, K inputs, nn.Linear's layout) is stored as 4-bit
 * integers q in 0..15 with a float32 scale d and offset m per output row and group of
 * `group` consecutive inputs:
 *     W[n, k] = d[n, g] * q[n, k] + m[n, g],   g = k / group,   group in {32, 64, 128, 256}.
 * One form holds every scheme tfcore loads: round-to-nearest min/max (m = the group's min),
 * llama.cpp's Q4_0 (m = -8 d) and Q4_1 (m = its min), Q4_K (d = super scale x sub scale,
 * m = -super min x sub min), GPTQ / AWQ (m = -d z for zero point z).
 *
 * Layout (chosen for the dot-product kernel): row n is Kp / 2 bytes, Kp = K rounded up to
 * TF_Q4_SB = 64; its superblock s (values k = 64 s .. 64 s + 63) is 32 bytes whose byte j
 * holds value 64 s + j in its low nibble and 64 s + 32 + j in its high nibble, so a vector
 * unit unpacks a superblock with one mask and one shift (kernels/simd.h's tf_vload_u4).
 * d and m are (N, ldg) row-major, ldg = tf_q4_groups(Kp, group) >= ceil(K / group): groups
 * past K hold d = m = 0, and nibbles past K are 0. K need not be a multiple of the group: the
 * last group is partial (its values quantized as they are), the padding multiplies zeros.
 *
 * Products (decode, a few rows): each row of x is quantized to int8 per group of the weights
 * (xq = round(x / sx), sx = max|x| / 127 over the group's values, as kernels/quant.c rounds;
 * llama.cpp's Q8_0 / Q8_K do the same per 32 / 256 values), the integer dot of q and xq over
 * a group is exact in int32, and
 *     y[r, n] = sum_g d[n, g] sx[r, g] (q . xq)_g + sum_g m[n, g] xsum[r, g]
 * where xsum[r, g] is the float32 sum of x over group g (the offsets see x unquantized).
 * Many rows (prefill) dequantize a slice of W to float32 for oneDNN (layers/linear_int4.c).
 */
#ifndef TFCORE_KERNELS_Q4_H
#define TFCORE_KERNELS_Q4_H

#include "kernels/kernel.h"

#define TF_Q4_SB 64 /* values per superblock (32 bytes) */
/* Rows up to which the dot-product kernel runs a Linear (more: oneDNN on a dequantized
 * slice); each weight superblock is unpacked once for up to TF_Q4_ROWS rows at a time.
 * Measured at AVX2, 1 thread, SmolLM2's 576/1536 shapes, against dequantize + oneDNN f32:
 * 16 rows 1.8-2.7x faster, 32 rows about even, 64 rows 1.1-1.35x slower. */
#define TF_Q4_MAX_M 32
#define TF_Q4_ROWS  4

/* K rounded up to a whole superblock. */
static inline int64_t
tf_q4_kpad(int64_t K)
{
    return (K + TF_Q4_SB - 1) / TF_Q4_SB * TF_Q4_SB;
}
/* Groups per row of d and m for Kp padded values. */
static inline int64_t
tf_q4_groups(int64_t Kp, int64_t group)
{
    return (Kp + group - 1) / group;
}

typedef struct {
    const uint8_t *q; /* (N, Kp / 2) nibbles, layout above */
    const float *d;   /* (N, ldg) scales */
    const float *m;   /* (N, ldg) offsets */
    int64_t K, N, group;
    const float *bias; /* (N,) or NULL */
    tf_act act;
} tf_q4_args;

/* x (M, K) -> xq (M, Kp) int8 (zeros past K), sx (M, ldg) group scales, xsum (M, ldg)
 * float32 group sums of x (zeros past K). Plain C, the same bits at every ISA level. */
void tf_q4_quantize_x(const float *x, int64_t M, int64_t K, int64_t group, int8_t *xq, float *sx,
                      float *xsum);

/* y (M, N) = act(x Wᵀ + b) (post) other, x given as tf_q4_quantize_x's output; other (M, N)
 * or NULL (TF_POST_ACCUM adds to y). Threaded over tiles of 64 outputs. Every level computes
 * the same integer block dots; the float sums differ only in their order (fp32 rounding). */
void tf_q4_gemv(const tf_q4_args *a, const int8_t *xq, const float *sx, const float *xsum,
                int64_t M, float *y, tf_post post, const float *other);

/* Round-to-nearest quantization, per row and group: m = min, d = (max - min) / 15,
 * q = round((w - m) / d) clamped to 0..15 (a constant group: d = 0, q = 0). w is (N, K)
 * float32, or (K, N) when transposed (GPT-2's Conv1D). Outputs in the layout above, padding
 * zeroed. Threaded over rows. */
void tf_q4_quantize_rtn(const float *w, int64_t N, int64_t K, int transposed, int64_t group,
                        uint8_t *q, float *d, float *m);

/* Pack q (N, K) values 0..15 (one per byte; a checkpoint's integers) into the nibble layout
 * (zeros past K). */
void tf_q4_pack(const uint8_t *values, int64_t N, int64_t K, uint8_t *q);

/* Rows n0 .. n0 + nc of W dequantized (d q + m, float32) into dst (nc, ldd), ldd >= K.
 * Threaded over rows when large. */
void tf_q4_dequantize(const tf_q4_args *a, int64_t n0, int64_t nc, float *dst, int64_t ldd);

#endif /* TFCORE_KERNELS_Q4_H */
