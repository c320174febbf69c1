/* gemv.c — y = act(x Wᵀ + b) (post) other for a few rows x, over BA16a64b weights.
 *
 * BA16a64b stores the (K, N) weight matrix as panels of 64 output columns; within a panel
 * the K rows follow each other (blocks of 16 rows, padded with zeros up to a multiple of
 * 16), each row 64 floats. A panel is therefore one contiguous (K_padded, 64) stream:
 * 4 zmm loads per row feed 4·M FMAs, and the hardware prefetcher sees a single sequential
 * read. Threads take whole panels.
 */
#include "gemv.h"
#include "ops.h"
#include "simd.h"

#include <string.h>

#define PANEL 64      /* output columns per panel */
#define KBLOCK 16     /* K rows per block */
/* Below this many weights one thread is faster than waking the team. */
#define PARALLEL_MIN_WEIGHTS (1 << 16)

int64_t
tf_gemv_panel_stride(const_dnnl_memory_desc_t wmd)
{
    int ndims = 0, nblks = 0;
    const dnnl_dims_t *blks = NULL, *idxs = NULL, *strides = NULL, *padded = NULL;
    dnnl_data_type_t dt = dnnl_data_type_undef;
    if (dnnl_memory_desc_query(wmd, dnnl_query_ndims_s32, &ndims) ||
        dnnl_memory_desc_query(wmd, dnnl_query_data_type, &dt) ||
        dnnl_memory_desc_query(wmd, dnnl_query_inner_nblks_s32, &nblks) || ndims != 2 ||
        dt != dnnl_f32 || nblks != 2)
        return 0;
    if (dnnl_memory_desc_query(wmd, dnnl_query_inner_blks, &blks) ||
        dnnl_memory_desc_query(wmd, dnnl_query_inner_idxs, &idxs) ||
        dnnl_memory_desc_query(wmd, dnnl_query_strides, &strides) ||
        dnnl_memory_desc_query(wmd, dnnl_query_padded_dims, &padded))
        return 0;
    /* inner blocks 16 (K) then 64 (N); K blocks of one panel adjacent */
    if ((*idxs)[0] != 0 || (*idxs)[1] != 1 || (*blks)[0] != KBLOCK || (*blks)[1] != PANEL ||
        (*strides)[0] != KBLOCK * PANEL || (*strides)[1] != (*padded)[0] * PANEL)
        return 0;
    return (*strides)[1];
}

/* acc[m][0..3] = x[m, :] · panel[:, 0..63] for the M (compile-time after inlining) rows. */
TF_AVX512 static inline __attribute__((always_inline)) void
panel_dot(const float *panel, const float *x, int64_t K, int M, __m512 acc[TF_GEMV_MAX_M][4])
{
    for (int m = 0; m < M; m++) {
        for (int i = 0; i < 4; i++) {
            acc[m][i] = _mm512_setzero_ps();
        }
    }
    const float *row = panel;
    for (int64_t k = 0; k < K; k++, row += PANEL) {
        const __m512 w0 = _mm512_load_ps(row), w1 = _mm512_load_ps(row + 16),
                     w2 = _mm512_load_ps(row + 32), w3 = _mm512_load_ps(row + 48);
        for (int m = 0; m < M; m++) {
            const __m512 xk = _mm512_set1_ps(x[m * K + k]);
            acc[m][0] = _mm512_fmadd_ps(w0, xk, acc[m][0]);
            acc[m][1] = _mm512_fmadd_ps(w1, xk, acc[m][1]);
            acc[m][2] = _mm512_fmadd_ps(w2, xk, acc[m][2]);
            acc[m][3] = _mm512_fmadd_ps(w3, xk, acc[m][3]);
        }
    }
}

/* Columns n0 .. n0+nc of every row: add bias, activate, combine with other / y. */
TF_AVX512 static void
panel_store(const tf_linear *lin, __m512 acc[TF_GEMV_MAX_M][4], int64_t M, int64_t n0,
            int64_t nc, float *y, tf_post post, const float *other)
{
    const int64_t N = lin->out_features;
    float tmp[PANEL] __attribute__((aligned(64)));
    for (int64_t m = 0; m < M; m++) {
        for (int i = 0; i < 4; i++) {
            __m512 v = acc[m][i];
            if (lin->bias != NULL) {
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(tf_mask16(nc - 16 * i), lin->bias + n0 + 16 * i));
            }
            _mm512_store_ps(tmp + 16 * i, v);
        }
        if (lin->act != TF_ACT_NONE) {
            tf_activation_serial(tmp, tmp, nc, lin->act);
        }
        float *yr = y + m * N + n0;
        const float *orow = other != NULL ? other + m * N + n0 : NULL;
        for (int i = 0; i * 16 < nc; i++) {
            const __mmask16 mask = tf_mask16(nc - 16 * i);
            __m512 v = _mm512_load_ps(tmp + 16 * i);
            if (post == TF_POST_ADD) {
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, orow + 16 * i));
            } else if (post == TF_POST_MUL) {
                v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(mask, orow + 16 * i));
            } else if (post == TF_POST_ACCUM) {
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, yr + 16 * i));
            }
            _mm512_mask_storeu_ps(yr + 16 * i, mask, v);
        }
    }
}

/* x (M, K) · panel p -> y columns of panel p, for a compile-time M. */
#define DEFINE_GEMV_M(MR)                                                                 \
    TF_AVX512 static void gemv_m##MR(const tf_linear *lin, const float *x, float *y,      \
                                     tf_post post, const float *other)                    \
    {                                                                                     \
        const int64_t K = lin->in_features, N = lin->out_features;                        \
        const int64_t panels = (N + PANEL - 1) / PANEL;                                   \
        const float *w = lin->weights;                                                    \
        _Pragma("omp parallel for schedule(static) if (K * N >= PARALLEL_MIN_WEIGHTS)")   \
        for (int64_t p = 0; p < panels; p++) {                                            \
            __m512 acc[TF_GEMV_MAX_M][4];                                                 \
            const int64_t n0 = p * PANEL, nc = N - n0 < PANEL ? N - n0 : PANEL;           \
            panel_dot(w + p * lin->panel_stride, x, K, MR, acc);                          \
            panel_store(lin, acc, MR, n0, nc, y, post, other);                            \
        }                                                                                 \
    }
DEFINE_GEMV_M(1)
DEFINE_GEMV_M(2)
DEFINE_GEMV_M(3)
DEFINE_GEMV_M(4)

void
tf_gemv(const tf_linear *lin, const float *x, int64_t M, float *y, tf_post post,
        const float *other)
{
    switch (M) {
    case 1: gemv_m1(lin, x, y, post, other); break;
    case 2: gemv_m2(lin, x, y, post, other); break;
    case 3: gemv_m3(lin, x, y, post, other); break;
    default: gemv_m4(lin, x, y, post, other); break;
    }
}
