/* linear_gemv.c — y = act(x Wᵀ + b) (post) other for a few rows x, read straight from a
 * Linear's packed weights.
 *
 * float32: the panels of oneDNN's layout are found here (tf_gemv_panel_stride) and the
 * product is kernels/gemv.c's, compiled per ISA. BA16a64b (oneDNN's AVX-512 packing) stores
 * the (K, N) weight matrix as panels of 64 output columns; within a panel the K rows follow
 * each other (blocks of 16 rows, padded with zeros up to a multiple of 16), each row 64
 * floats, so a panel is one contiguous (K_padded, 64) stream. With AVX2 oneDNN takes plain
 * rows, which Linear keeps as (N, K) rows (layers/linear.c); kernels/gemv.c reads those too.
 * bf16 / int8 weights without AVX512_BF16 / VNNI are in tfcore's own panels (gemv_own_panels).
 * int8 and bf16 weights: AVX512_VNNI / AVX512_BF16 kernels over oneDNN's s8 and bf16
 * panels, below. Threads take whole panels.
 */
#include "layers/linear_gemv.h"
#include "kernels/gemv.h"
#include "kernels/bfloat16.h"
#include "kernels/activation.h"
#include "kernels/simd.h"
#include "kernels/quant.h"

#include <string.h>

#define PANEL  TF_GEMV_PANEL /* output columns per panel */
#define KBLOCK 16            /* K rows per block */
/* kernel##_m1 .. _m4 (M a compile-time constant in each) for the runtime M <= 4 */
#define CALL_FOR_M(kernel, M, ...)                    \
    do {                                              \
        switch (M) {                                  \
            case 1: kernel##_m1(__VA_ARGS__); break;  \
            case 2: kernel##_m2(__VA_ARGS__); break;  \
            case 3: kernel##_m3(__VA_ARGS__); break;  \
            default: kernel##_m4(__VA_ARGS__); break; \
        }                                             \
    } while (0)

/* Rows padded to a multiple of the layout's K block (zeros past K: the padded weights are 0). */
static int64_t
padded_k(int64_t K, int64_t block)
{
    return (K + block - 1) / block * block;
}

/* Below this many weights one thread is faster than waking the team. */
#define PARALLEL_MIN_WEIGHTS (1 << 16)

/* The distance between 64-column panels of a packed weight layout, or 0 unless wmd is
 * exactly that layout: data type dt, ndims dims (K, N last), inner blocks blks[i] along
 * dims idxs[i], and the K blocks of one panel adjacent (each panel one contiguous stream). */
static int64_t
panel_layout_stride(const_dnnl_memory_desc_t wmd, dnnl_data_type_t want_dt, int want_ndims,
                    int want_nblks, const int64_t *want_blks, const int *want_idxs)
{
    int ndims = 0, nblks = 0;
    const dnnl_dims_t *blks = NULL, *idxs = NULL, *strides = NULL, *padded = NULL;
    dnnl_data_type_t dt = dnnl_data_type_undef;
    if (dnnl_memory_desc_query(wmd, dnnl_query_ndims_s32, &ndims) ||
        dnnl_memory_desc_query(wmd, dnnl_query_data_type, &dt) ||
        dnnl_memory_desc_query(wmd, dnnl_query_inner_nblks_s32, &nblks) || ndims != want_ndims ||
        dt != want_dt || nblks != want_nblks) {
        return 0;
    }
    if (dnnl_memory_desc_query(wmd, dnnl_query_inner_blks, &blks) ||
        dnnl_memory_desc_query(wmd, dnnl_query_inner_idxs, &idxs) ||
        dnnl_memory_desc_query(wmd, dnnl_query_strides, &strides) ||
        dnnl_memory_desc_query(wmd, dnnl_query_padded_dims, &padded)) {
        return 0;
    }
    const int kdim = ndims - 2, ndim = ndims - 1;
    int64_t kblock = 1; /* K rows per block: the product of the inner blocks along K */
    for (int i = 0; i < nblks; i++) {
        if ((*blks)[i] != want_blks[i] || (*idxs)[i] != want_idxs[i]) {
            return 0;
        }
        kblock *= (*idxs)[i] == kdim ? (*blks)[i] : 1;
    }
    if ((*strides)[kdim] != kblock * PANEL || (*strides)[ndim] != (*padded)[kdim] * PANEL ||
        (*padded)[kdim] % kblock != 0) {
        return 0;
    }
    return (*strides)[ndim];
}

int64_t
tf_gemv_panel_stride(const_dnnl_memory_desc_t wmd, int64_t *ldw)
{
    /* BA16a64b: 16 K rows, then 64 columns */
    static const int64_t blks[] = {KBLOCK, PANEL};
    static const int idxs[] = {0, 1};
    const int64_t stride = panel_layout_stride(wmd, dnnl_f32, 2, 2, blks, idxs);
    if (stride > 0) {
        *ldw = PANEL;
        return stride;
    }
    return 0; /* (oneDNN's plain AVX2 layout is kept as (N, K) rows: layers/linear.c) */
}

/* Columns n0 .. n0+nc of every row: add bias, activate, combine with other / y. */
TF_AVX512 static void
panel_store(const tf_linear *lin, __m512 acc[TF_GEMV_MAX_M][4], int64_t M, int64_t n0, int64_t nc,
            float *y, tf_post post, const float *other)
{
    const int64_t N = lin->out_features;
    float tmp[PANEL] __attribute__((aligned(64)));
    for (int64_t m = 0; m < M; m++) {
        for (int i = 0; i < 4; i++) {
            __m512 v = acc[m][i];
            if (lin->bias != NULL) {
                v = _mm512_add_ps(
                    v, _mm512_maskz_loadu_ps(tf_mask16(nc - 16 * i), lin->bias + n0 + 16 * i));
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
            }
            else if (post == TF_POST_MUL) {
                v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(mask, orow + 16 * i));
            }
            else if (post == TF_POST_ACCUM) {
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, yr + 16 * i));
            }
            _mm512_mask_storeu_ps(yr + 16 * i, mask, v);
        }
    }
}

static void
tf_gemv(const tf_linear *lin, const float *x, int64_t M, float *y, tf_post post, const float *other)
{
    const tf_gemv_f32_args g = {
        .w = lin->weights,
        .wtype = TF_GEMV_F32,
        .transposed = lin->wtrans,
        .panel_stride = lin->panel_stride,
        .ldw = lin->panel_ld,
        .K = lin->in_features,
        .N = lin->out_features,
        .bias = lin->bias,
        .act = (tf_act)lin->act,
    };
    tf_gemv_f32(&g, x, M, y, post, other);
}

/* ------------------------------------------------------------------ int8 weights
 *
 * oneDNN packs s8 weights (1, K, N) as aBC16b64c4b: panels of 64 columns, K padded to a
 * multiple of 64, and within a panel groups of 4 consecutive k for the 64 columns (256
 * bytes, the operand order of VNNI's vpdpbusd). A panel is again one contiguous stream.
 * vpdpbusd multiplies unsigned by signed bytes, so the per-token quantized rows q (s8) go
 * in as u = q + 128 and 128 · Σ_k w[k, n] (lin->wsum) comes off the int32 sums: the same
 * integers oneDNN computes, without its per-call primitive and memory objects. */

#define TF_AVX512_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,avx512vnni")))
#define KGROUP         64 /* K padding of the s8 layout */

int64_t
tf_gemv_s8_panel_stride(const_dnnl_memory_desc_t wmd)
{
    /* aBC16b64c4b over (1, K, N): 16 groups of 4 K rows, 64 columns */
    static const int64_t blks[] = {16, PANEL, 4};
    static const int idxs[] = {1, 2, 1};
    static int vnni = -1;
    if (vnni < 0) {
        __builtin_cpu_init();
        vnni = __builtin_cpu_supports("avx512vnni");
    }
    return vnni ? panel_layout_stride(wmd, dnnl_s8, 3, 3, blks, idxs) : 0;
}

/* acc[m][0..3] = Σ_k u[m, k] · panel[k, 0..63] in int32 over Kp (padded) k. */
TF_AVX512_VNNI static inline __attribute__((always_inline)) void
panel_dot_s8(const int8_t *panel, const uint8_t *u, int64_t Kp, int M,
             __m512i acc[TF_GEMV_MAX_M][4])
{
    for (int m = 0; m < M; m++) {
        for (int i = 0; i < 4; i++) {
            acc[m][i] = _mm512_setzero_si512();
        }
    }
    const int8_t *group = panel;
    for (int64_t k = 0; k < Kp; k += 4, group += 4 * PANEL) {
        const __m512i w0 = _mm512_load_si512(group), w1 = _mm512_load_si512(group + 64),
                      w2 = _mm512_load_si512(group + 128), w3 = _mm512_load_si512(group + 192);
        for (int m = 0; m < M; m++) {
            int32_t four;
            memcpy(&four, u + m * Kp + k, sizeof(four));
            const __m512i xk = _mm512_set1_epi32(four);
            acc[m][0] = _mm512_dpbusd_epi32(acc[m][0], xk, w0);
            acc[m][1] = _mm512_dpbusd_epi32(acc[m][1], xk, w1);
            acc[m][2] = _mm512_dpbusd_epi32(acc[m][2], xk, w2);
            acc[m][3] = _mm512_dpbusd_epi32(acc[m][3], xk, w3);
        }
    }
}

/* int32 sums -> float: (acc - 128 Σw) · row scale · column scale. */
TF_AVX512_VNNI static inline void
dequantize_panel(const tf_linear *lin, __m512i acc[TF_GEMV_MAX_M][4], const float *row_scale, int M,
                 int64_t n0, int64_t nc, __m512 out[TF_GEMV_MAX_M][4])
{
    for (int i = 0; i < 4; i++) {
        const __mmask16 mask = tf_mask16(nc - 16 * i);
        const __m512i bias128 =
            _mm512_slli_epi32(_mm512_maskz_loadu_epi32(mask, lin->wsum + n0 + 16 * i), 7);
        const __m512 col = _mm512_maskz_loadu_ps(mask, lin->wscale + n0 + 16 * i);
        for (int m = 0; m < M; m++) {
            const __m512 sum = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[m][i], bias128));
            out[m][i] = _mm512_mul_ps(sum, _mm512_mul_ps(col, _mm512_set1_ps(row_scale[m])));
        }
    }
}

#define DEFINE_GEMV_S8_M(MR)                                                                      \
    TF_AVX512_VNNI static void gemv_s8_m##MR(const tf_linear *lin, const uint8_t *u, int64_t Kp,  \
                                             const float *row_scale, float *y, tf_post post,      \
                                             const float *other)                                  \
    {                                                                                             \
        const int64_t K = lin->in_features, N = lin->out_features;                                \
        const int64_t panels = (N + PANEL - 1) / PANEL;                                           \
        const int8_t *w = lin->weights;                                                           \
        _Pragma("omp parallel for schedule(static) if (K * N >= 4 * PARALLEL_MIN_WEIGHTS)") for ( \
            int64_t p = 0; p < panels; p++)                                                       \
        {                                                                                         \
            __m512i acc[TF_GEMV_MAX_M][4];                                                        \
            __m512 out[TF_GEMV_MAX_M][4];                                                         \
            const int64_t n0 = p * PANEL, nc = N - n0 < PANEL ? N - n0 : PANEL;                   \
            panel_dot_s8(w + p * lin->panel_stride, u, Kp, MR, acc);                              \
            dequantize_panel(lin, acc, row_scale, MR, n0, nc, out);                               \
            panel_store(lin, out, MR, n0, nc, y, post, other);                                    \
        }                                                                                         \
    }
DEFINE_GEMV_S8_M(1)
DEFINE_GEMV_S8_M(2)
DEFINE_GEMV_S8_M(3)
DEFINE_GEMV_S8_M(4)

static size_t
tf_gemv_s8_scratch(const tf_linear *lin, int64_t M)
{
    return (size_t)(M * padded_k(lin->in_features, KGROUP)) + (size_t)M * sizeof(float);
}

static void
tf_gemv_s8(const tf_linear *lin, const float *x, int64_t M, float *y, tf_post post,
           const float *other, void *scratch)
{
    const int64_t K = lin->in_features, Kp = padded_k(K, KGROUP);
    uint8_t *u = scratch;                     /* (M, Kp) q + 128, zero past K */
    float *row_scale = (float *)(u + M * Kp); /* (M,) */
    for (int64_t m = 0; m < M; m++) {
        int8_t *q = (int8_t *)u + m * Kp;
        tf_quantize_rows_s8(x + m * K, 1, K, 127, q, row_scale + m);
        memset(q + K, 0, (size_t)(Kp - K));
        for (int64_t k = 0; k < Kp; k++) {
            u[m * Kp + k] = (uint8_t)(q[k] + 128);
        }
    }
    CALL_FOR_M(gemv_s8, M, lin, u, Kp, row_scale, y, post, other);
}

/* ------------------------------------------------------------------ bf16 weights
 *
 * oneDNN packs bf16 weights (K, N) as BA16a64b2a: panels of 64 columns, K padded to a
 * multiple of 32, within a panel pairs of consecutive k for the 64 columns (128 values,
 * the operand order of AVX512_BF16's vdpbf16ps). The rows are rounded to bf16 as the oneDNN
 * path rounds them, so both give the same products, summed in f32. */

#define TF_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,avx512bf16")))
#define KPAIRS         32 /* K padding of the bf16 layout */

int64_t
tf_gemv_bf16_panel_stride(const_dnnl_memory_desc_t wmd)
{
    /* BA16a64b2a: 16 pairs of K rows, 64 columns */
    static const int64_t blks[] = {16, PANEL, 2};
    static const int idxs[] = {0, 1, 0};
    static int bf16 = -1;
    if (bf16 < 0) {
        __builtin_cpu_init();
        bf16 = __builtin_cpu_supports("avx512bf16");
    }
    return bf16 ? panel_layout_stride(wmd, dnnl_bf16, 2, 3, blks, idxs) : 0;
}

/* acc[m][0..3] = Σ_k x[m, k] · panel[k, 0..63] over Kp (padded) k, x as bf16 pairs. */
TF_AVX512_BF16 static inline __attribute__((always_inline)) void
panel_dot_bf16(const uint16_t *panel, const uint16_t *x, int64_t Kp, int M,
               __m512 acc[TF_GEMV_MAX_M][4])
{
    for (int m = 0; m < M; m++) {
        for (int i = 0; i < 4; i++) {
            acc[m][i] = _mm512_setzero_ps();
        }
    }
    const uint16_t *pair = panel;
    for (int64_t k = 0; k < Kp; k += 2, pair += 2 * PANEL) {
        const __m512bh w0 = (__m512bh)_mm512_load_si512(pair),
                       w1 = (__m512bh)_mm512_load_si512(pair + 32),
                       w2 = (__m512bh)_mm512_load_si512(pair + 64),
                       w3 = (__m512bh)_mm512_load_si512(pair + 96);
        for (int m = 0; m < M; m++) {
            int32_t two;
            memcpy(&two, x + m * Kp + k, sizeof(two));
            const __m512bh xk = (__m512bh)_mm512_set1_epi32(two);
            acc[m][0] = _mm512_dpbf16_ps(acc[m][0], xk, w0);
            acc[m][1] = _mm512_dpbf16_ps(acc[m][1], xk, w1);
            acc[m][2] = _mm512_dpbf16_ps(acc[m][2], xk, w2);
            acc[m][3] = _mm512_dpbf16_ps(acc[m][3], xk, w3);
        }
    }
}

#define DEFINE_GEMV_BF16_M(MR)                                                                    \
    TF_AVX512_BF16 static void gemv_bf16_m##MR(const tf_linear *lin, const uint16_t *x,           \
                                               int64_t Kp, float *y, tf_post post,                \
                                               const float *other)                                \
    {                                                                                             \
        const int64_t K = lin->in_features, N = lin->out_features;                                \
        const int64_t panels = (N + PANEL - 1) / PANEL;                                           \
        const uint16_t *w = lin->weights;                                                         \
        _Pragma("omp parallel for schedule(static) if (K * N >= 2 * PARALLEL_MIN_WEIGHTS)") for ( \
            int64_t p = 0; p < panels; p++)                                                       \
        {                                                                                         \
            __m512 acc[TF_GEMV_MAX_M][4];                                                         \
            const int64_t n0 = p * PANEL, nc = N - n0 < PANEL ? N - n0 : PANEL;                   \
            panel_dot_bf16(w + p * lin->panel_stride, x, Kp, MR, acc);                            \
            panel_store(lin, acc, MR, n0, nc, y, post, other);                                    \
        }                                                                                         \
    }
DEFINE_GEMV_BF16_M(1)
DEFINE_GEMV_BF16_M(2)
DEFINE_GEMV_BF16_M(3)
DEFINE_GEMV_BF16_M(4)

static size_t
tf_gemv_bf16_scratch(const tf_linear *lin, int64_t M)
{
    return (size_t)(M * padded_k(lin->in_features, KPAIRS)) * sizeof(uint16_t);
}

static void
tf_gemv_bf16(const tf_linear *lin, const float *x, int64_t M, float *y, tf_post post,
             const float *other, void *scratch)
{
    const int64_t K = lin->in_features, Kp = padded_k(K, KPAIRS);
    uint16_t *xb = scratch; /* (M, Kp) bf16, zero past K */
    for (int64_t m = 0; m < M; m++) {
        tf_f32_to_bf16(x + m * K, xb + m * Kp, K);
        memset(xb + m * Kp + K, 0, (size_t)(Kp - K) * sizeof(uint16_t));
    }
    CALL_FOR_M(gemv_bf16, M, lin, xb, Kp, y, post, other);
}

/* ------------------------------------------------------------------ the entry point */

/* bf16 / int8 weights in tfcore's own panels (no AVX512_BF16 / VNNI: layers/linear.c): the
 * portable kernel widens them in registers. bf16 takes x rounded to bf16 (as the
 * native path does), int8 the quantized rows as floats with their scales, so each path
 * gives the products the many-row path gives. */
static int
gemv_own_panels(const tf_linear *lin, const float *x, int64_t M, float *y, tf_post post,
                const float *other, tf_err *err)
{
    const int64_t K = lin->in_features;
    const int s8 = lin->wdt == dnnl_s8;
    tf_thread_ctx *ctx = tf_thread_ctx_get(err);
    const size_t xf_bytes = ((size_t)(M * K) * sizeof(float) + 63) & ~(size_t)63;
    char *scratch = ctx ? tf_thread_scratch(ctx, xf_bytes + (s8 ? (size_t)(M * K) : 0), err) : NULL;
    if (scratch == NULL) {
        return -1;
    }
    float *xf = (float *)scratch, row_scale[TF_GEMV_MAX_M];
    tf_gemv_f32_args g = {
        .w = lin->weights,
        .wtype = s8 ? TF_GEMV_S8 : TF_GEMV_BF16,
        .panel_stride = lin->panel_stride,
        .ldw = lin->panel_ld,
        .K = K,
        .N = lin->out_features,
        .bias = lin->bias,
        .act = (tf_act)lin->act,
    };
    if (s8) {
        static const float ones[TF_GEMV_MAX_M] = {1.0f, 1.0f, 1.0f, 1.0f};
        int8_t *q = (int8_t *)(scratch + xf_bytes);
        tf_quantize_rows_s8(x, M, K, 127, q, row_scale);
        tf_dequantize_rows_s8(q, M, K, ones, xf); /* the integers, as floats */
        g.col_scale = lin->wscale;
        g.row_scale = row_scale;
    }
    else {
        tf_round_to_bf16(x, xf, M * K);
    }
    tf_gemv_f32(&g, xf, M, y, post, other);
    return 1;
}

int
tf_linear_gemv(const tf_linear *lin, const float *x, int64_t M, float *y, tf_post post,
               const float *other, tf_err *err)
{
    if (lin->panel_stride == 0) {
        return 0;
    }
    const tf_isa_level isa = tf_gemv_f32_isa();
    if (lin->own_panels && M <= TF_GEMV_OWN_MAX_M && isa != TF_ISA_REFERENCE) {
        /* up to 4 groups of up to 4 rows, a pass over the panels each: for own panels the
         * other way (unpacking every panel for oneDNN) costs more up to here (batched
         * decoding) */
        const int64_t K = lin->in_features, N = lin->out_features;
        for (int64_t m0 = 0; m0 < M; m0 += TF_GEMV_MAX_M) {
            const int64_t mg = M - m0 < TF_GEMV_MAX_M ? M - m0 : TF_GEMV_MAX_M;
            if (gemv_own_panels(lin, x + m0 * K, mg, y + m0 * N, post,
                                other != NULL ? other + m0 * N : NULL, err) < 0) {
                return -1;
            }
        }
        return 1;
    }
    if (lin->wdt == dnnl_f32 && lin->wtrans && M <= TF_GEMV_ROWS_MAX_M) { /* (N, K) rows */
        if (isa == TF_ISA_REFERENCE) {
            return 0;
        }
        tf_gemv(lin, x, M, y, post, other);
        return 1;
    }
    if (M > TF_GEMV_MAX_M) {
        return 0;
    }
    if (lin->wdt == dnnl_f32) {
        if (isa == TF_ISA_REFERENCE) {
            return 0;
        }
        tf_gemv(lin, x, M, y, post, other);
        return 1;
    }
    if (lin->own_panels) {
        return 0; /* the reference level: oneDNN */
    }
    if (isa != TF_ISA_AVX512) { /* the VNNI / AVX512_BF16 kernels are AVX-512 code */
        return 0;
    }
    tf_thread_ctx *ctx = tf_thread_ctx_get(err);
    const int s8 = lin->wdt == dnnl_s8;
    void *scratch =
        ctx ? tf_thread_scratch(ctx, s8 ? tf_gemv_s8_scratch(lin, M) : tf_gemv_bf16_scratch(lin, M),
                                err)
            : NULL;
    if (scratch == NULL) {
        return -1;
    }
    if (s8) {
        tf_gemv_s8(lin, x, M, y, post, other, scratch);
    }
    else {
        tf_gemv_bf16(lin, x, M, y, post, other, scratch);
    }
    return 1;
}
