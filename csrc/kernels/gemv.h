/* gemv.h — few-row products in float32 arithmetic over weight panels: Linear's decode path
 * (layers/linear_gemv.c finds the panels in oneDNN's packed weights). The weights are float32,
 * or bf16 / int8 rows widened to float32 in registers (Linear's storage where the CPU has no
 * AVX512_BF16 / VNNI): the bytes read per call are what a memory-bound decode pays for. */
#ifndef TFCORE_KERNELS_GEMV_H
#define TFCORE_KERNELS_GEMV_H

#include "kernels/kernel.h"

/* Rows up to which the few-row kernels are used instead of oneDNN: 4 rows x 4 accumulators
 * fill 16 of the 32 zmm registers (AVX2 splits a panel into narrower strips instead); more
 * rows would spill, and oneDNN's blocked kernel reuses each weight load across rows better
 * from there on. */
#define TF_GEMV_MAX_M 4
/* Rows up to which the (N, K) float32 rows path (oneDNN's AVX2 layout, see below) is used:
 * it reads one weight row against every x row (x stays in L1 / L2), where oneDNN's AVX2
 * kernel streams the weights at under half the rate at M = 8 (batched greedy decoding, or
 * 2 inputs x 4 beams). */
#define TF_GEMV_ROWS_MAX_M 8
/* Output columns per panel. */
#define TF_GEMV_PANEL 64

/* The (K, N) weights either as panels of TF_GEMV_PANEL output columns, every panel 64
 * columns wide (zeros past N): column n0 + j of row k is at w[p * panel_stride + k * ldw + j],
 * p = n0 / TF_GEMV_PANEL, ldw = 64 (oneDNN's float32 BA16a64b, its AVX-512 packing:
 * panel_stride = K_padded * 64; tfcore's own bf16 / int8 panels: K * 64); or (transposed,
 * float32 only) as (N, K) rows: element (k, n) at w[n * ldw + k], ldw >= K (oneDNN's plain
 * layout at AVX2, as Linear keeps it). */
typedef enum {
    TF_GEMV_F32,  /* float32 weights */
    TF_GEMV_BF16, /* bf16 bits, widened exactly */
    TF_GEMV_S8,   /* int8, widened exactly; col_scale dequantizes the sums */
} tf_gemv_wtype;

typedef struct {
    const void *w;       /* elements of wtype */
    tf_gemv_wtype wtype; /* bf16 / int8: panels only (ldw == 64; Linear's own layout) */
    int transposed;      /* float32 (N, K) rows ldw apart instead of panels (panel_stride unused) */
    int64_t panel_stride; /* elements between panels */
    int64_t ldw;          /* elements between consecutive k rows of a panel */
    int64_t K, N;
    const float *col_scale; /* (N,) factor of each column's sum (int8 weight scales), or NULL */
    const float *row_scale; /* (M,) factor of each row's sums (int8 row scales), or NULL */
    const float *bias;      /* (N,) or NULL, added after the scales */
    tf_act act;
} tf_gemv_f32_args;

/* y (M, N) = act(x (M, K) W + b) (post) other for M <= TF_GEMV_MAX_M (panels) or
 * M <= TF_GEMV_ROWS_MAX_M ((N, K) rows); other (M, N) or NULL
 * (TF_POST_ACCUM adds to y). Threaded over panels. Runs only where tf_gemv_f32_isa() is not
 * TF_ISA_REFERENCE (there is no plain path: the caller uses oneDNN). Over panels every level
 * sums each column's K products in the same order with fused multiply-adds: the same bits;
 * over (N, K) rows each output is TF_VW partial sums reduced at the end. For int8
 * weights x holds the quantized rows as floats (integers, so the products are exact). */
void tf_gemv_f32(const tf_gemv_f32_args *g, const float *x, int64_t M, float *y, tf_post post,
                 const float *other);

/* tfcore's own panel layout (Linear's bf16 / int8 weights where the CPU lacks AVX512_BF16 /
 * VNNI): panel p holds columns 64p .. 64p + 63 as one contiguous (K, 64) block, zeros past N;
 * panel_stride = K * 64, ldw = 64. Pack: rows (K, N) row-major of elt-byte elements ->
 * panels. Unpack: the first cols columns of consecutive panels (K rows each) -> dst (K, cols)
 * with rows ldd elements apart, int8 as is or bf16 widened to float32 (exact). Threaded. */
void tf_gemv_pack_panels(const void *rows, int64_t K, int64_t N, int elt, void *panels);
void tf_gemv_unpack_s8(const int8_t *panels, int64_t K, int64_t cols, int8_t *dst, int64_t ldd);
void tf_gemv_unpack_bf16(const uint16_t *panels, int64_t K, int64_t cols, float *dst, int64_t ldd);

/* The level tf_gemv_f32 runs at now (AVX-512 or AVX2), or TF_ISA_REFERENCE: none. */
tf_isa_level tf_gemv_f32_isa(void);

#endif /* TFCORE_KERNELS_GEMV_H */
