/* gemv.c — y = act(x W + b) (post) other for a few rows x over weight panels or rows
 * (kernels/gemv.h), one source compiled per ISA.
 *
 * Panels with rows of 64 elements (oneDNN's float32 BA16a64b, or tfcore's own bf16 / int8
 * panels, widened in registers): a panel is streamed front to back, one k row at a time,
 * into M x 64 float accumulators held in registers: with AVX-512 that is 4 vectors per row
 * for up to 4 rows (16 of 32 registers); AVX2 has 8-lane vectors and 16 registers, so a
 * panel is swept in strips of fewer vectors (8 for one row, 4 for two, 2 for three or four),
 * each strip a pass over the panel's K rows. Threads take whole panels.
 * (N, K) rows (float32 where oneDNN keeps plain rows, i.e. at AVX2): see dot_rows below. */
#include "kernels/gemv.h"
#include "kernels/activation.h"
#include "kernels/bfloat16.h"
#include "kernels/simd.h"

#include <string.h>

#include <omp.h>

/* Below this many weights one thread is faster than waking the team. */
#define PARALLEL_MIN_WEIGHTS (1 << 16)

#ifdef TF_ISA_PASS
/* ------------------------------------------------------------------ vector path (per ISA) */

#define PANEL TF_GEMV_PANEL
#define NV    (PANEL / TF_VW) /* vectors per panel row: 4 (AVX-512) or 8 (AVX2) */
/* vectors per strip for M rows: M x S accumulators in at most half the registers */
#define STRIP(M) ((TF_VREGS / 2) / (M) >= NV ? NV : (TF_VREGS / 2) / (M))

/* full vector, or the first n lanes (0 past them) */
static inline tf_vf
ld(const float *p, int64_t n)
{
    return n >= TF_VW ? tf_vload(p) : tf_vload_n(p, n);
}
static inline void
st(float *p, tf_vf v, int64_t n)
{
    if (n >= TF_VW) {
        tf_vstore(p, v);
    }
    else {
        tf_vstore_n(p, v, n);
    }
}

/* element size of each weight type */
#define W_BYTES(wt) ((wt) == TF_GEMV_F32 ? 4 : (wt) == TF_GEMV_BF16 ? 2 : 1)

/* TF_VW weights from element i widened to float lanes: element type wt is a compile-time
 * constant in every caller, so the switch folds away. */
static inline __attribute__((always_inline)) tf_vf
load_w(const void *w, int64_t i, const tf_gemv_wtype wt)
{
    switch (wt) {
        case TF_GEMV_BF16: return tf_vload_bf16_n((const uint16_t *)w + i, TF_VW);
        case TF_GEMV_S8: return tf_vload_s8_n((const int8_t *)w + i, TF_VW);
        default: return tf_vload((const float *)w + i);
    }
}

/* acc (M, PANEL) columns [TF_VW s0, TF_VW (s0 + S)) = x (M, K) · panel rows (ldw elements
 * of type wt apart, all 64 columns present). M, S and wt are constants after inlining, so
 * the accumulators live in registers. */
static inline __attribute__((always_inline)) void
strip_dot(const void *panel, const tf_gemv_wtype wt, int64_t ldw, int64_t K, const float *x,
          const int M, const int S, int s0, float *acc)
{
    tf_vf a[TF_GEMV_MAX_M][NV];
    for (int m = 0; m < M; m++) {
        for (int j = 0; j < S; j++) {
            a[m][j] = tf_vzero();
        }
    }
    for (int64_t k = 0, row = s0 * TF_VW; k < K; k++, row += ldw) {
        for (int j = 0; j < S; j++) {
            const tf_vf w = load_w(panel, row + j * TF_VW, wt);
            for (int m = 0; m < M; m++) {
                a[m][j] = tf_vfma(w, tf_vset1(x[m * K + k]), a[m][j]);
            }
        }
    }
    for (int m = 0; m < M; m++) {
        for (int j = 0; j < S; j++) {
            tf_vstore(acc + m * PANEL + (s0 + j) * TF_VW, a[m][j]);
        }
    }
}

/* Columns n0 .. n0 + nc of every row from acc (M, lda): bias, activation, post-op, store. */
static void
store_cols(const tf_gemv_f32_args *g, float *acc, int64_t lda, int64_t M, int64_t n0, int64_t nc,
           float *y, tf_post post, const float *other)
{
    const int64_t N = g->N;
    for (int64_t m = 0; m < M; m++) {
        float *a = acc + m * lda;
        if (g->col_scale != NULL || g->row_scale != NULL) { /* int8: dequantize the sums */
            const tf_vf rs = tf_vset1(g->row_scale != NULL ? g->row_scale[m] : 1.0f);
            for (int64_t j = 0; j < nc; j += TF_VW) {
                const tf_vf cs =
                    g->col_scale != NULL ? ld(g->col_scale + n0 + j, nc - j) : tf_vset1(1.0f);
                tf_vstore(a + j, tf_vmul(tf_vload(a + j), tf_vmul(cs, rs)));
            }
        }
        if (g->bias != NULL) {
            for (int64_t j = 0; j < nc; j += TF_VW) {
                tf_vstore(a + j, tf_vadd(tf_vload(a + j), ld(g->bias + n0 + j, nc - j)));
            }
        }
        if (g->act != TF_ACT_NONE) {
            tf_activation_serial(a, a, nc, g->act);
        }
        float *yr = y + m * N + n0;
        const float *orow = other != NULL ? other + m * N + n0 : NULL;
        for (int64_t j = 0; j < nc; j += TF_VW) {
            tf_vf v = tf_vload(a + j);
            switch (post) {
                case TF_POST_ADD: v = tf_vadd(v, ld(orow + j, nc - j)); break;
                case TF_POST_MUL: v = tf_vmul(v, ld(orow + j, nc - j)); break;
                case TF_POST_ACCUM: v = tf_vadd(v, ld(yr + j, nc - j)); break;
                default: break;
            }
            st(yr + j, v, nc - j);
        }
    }
}

/* Panel p for a compile-time M (and weight type): its strips, then the epilogue. */
#define DEFINE_PANEL_M(MR, WT, NAME)                                                         \
    static void NAME##_m##MR(const tf_gemv_f32_args *g, const float *x, int64_t p, float *y, \
                             tf_post post, const float *other)                               \
    {                                                                                        \
        float acc[MR * PANEL] __attribute__((aligned(64)));                                  \
        const int64_t n0 = p * PANEL, nc = g->N - n0 < PANEL ? g->N - n0 : PANEL;            \
        const char *panel = (const char *)g->w + p * g->panel_stride * W_BYTES(WT);          \
        for (int s0 = 0; s0 < NV; s0 += STRIP(MR)) {                                         \
            strip_dot(panel, WT, g->ldw, g->K, x, MR, STRIP(MR), s0, acc);                   \
        }                                                                                    \
        store_cols(g, acc, PANEL, MR, n0, nc, y, post, other);                               \
    }
#define DEFINE_PANELS(WT, NAME) \
    DEFINE_PANEL_M(1, WT, NAME) \
    DEFINE_PANEL_M(2, WT, NAME) \
    DEFINE_PANEL_M(3, WT, NAME) \
    DEFINE_PANEL_M(4, WT, NAME)
DEFINE_PANELS(TF_GEMV_F32, panel_f32)
DEFINE_PANELS(TF_GEMV_BF16, panel_bf16)
DEFINE_PANELS(TF_GEMV_S8, panel_s8)

typedef void (*panel_fn)(const tf_gemv_f32_args *, const float *, int64_t, float *, tf_post,
                         const float *);
static const panel_fn panel_fns[3][TF_GEMV_MAX_M] = {
    [TF_GEMV_F32] = {panel_f32_m1, panel_f32_m2, panel_f32_m3, panel_f32_m4},
    [TF_GEMV_BF16] = {panel_bf16_m1, panel_bf16_m2, panel_bf16_m3, panel_bf16_m4},
    [TF_GEMV_S8] = {panel_s8_m1, panel_s8_m2, panel_s8_m3, panel_s8_m4},
};

typedef void (*rows_fn)(const tf_gemv_f32_args *, const float *, int64_t, int64_t, float *, tf_post,
                        const float *);

/* Weights as (N, K) rows (g->transposed: oneDNN's AVX2 layout as Linear keeps it): each
 * output is a dot product along one contiguous row, so a thread's share of the weights is a
 * single contiguous stream (what the prefetchers follow best). R rows of W at a time against
 * the M rows of x: M x R vector accumulators (>= 8 independent FMA chains where the
 * registers allow), each reduced across its lanes at the end. */
#define ROWS_PER_STEP(M) ((M) == 1 ? 8 : (M) == 2 ? 4 : 2)

/* sums[m * R + r] = x[m] · w[r] over K, w rows ldw floats apart. */
static inline __attribute__((always_inline)) void
dot_rows(const float *w, int64_t ldw, const float *x, int64_t K, const int M, const int R,
         float *sums)
{
    tf_vf a[TF_GEMV_MAX_M][8];
    for (int m = 0; m < M; m++) {
        for (int r = 0; r < R; r++) {
            a[m][r] = tf_vzero();
        }
    }
    int64_t k = 0;
    for (; k + TF_VW <= K; k += TF_VW) {
        tf_vf xv[TF_GEMV_MAX_M];
        for (int m = 0; m < M; m++) {
            xv[m] = tf_vload(x + m * K + k);
        }
        for (int r = 0; r < R; r++) {
            const tf_vf wv = tf_vload(w + r * ldw + k);
            for (int m = 0; m < M; m++) {
                a[m][r] = tf_vfma(wv, xv[m], a[m][r]);
            }
            if ((k & (64 / sizeof(float) - 1)) == 0) { /* once per line: the next rows' */
                tf_prefetch(w + (R + r) * ldw + k);
            }
        }
    }
    if (k < K) { /* the last K % TF_VW: lanes past K read 0 */
        for (int r = 0; r < R; r++) {
            const tf_vf wv = tf_vload_n(w + r * ldw + k, K - k);
            for (int m = 0; m < M; m++) {
                a[m][r] = tf_vfma(wv, tf_vload_n(x + m * K + k, K - k), a[m][r]);
            }
        }
    }
    for (int m = 0; m < M; m++) {
        for (int r = 0; r < R; r++) {
            sums[m * R + r] = tf_vreduce_add(a[m][r]);
        }
    }
}

/* Outputs n0 .. n0 + nc, 64 at a time: their dot products, then the epilogue. */
#define DEFINE_TROWS_M(MR)                                                                     \
    static void trows_m##MR(const tf_gemv_f32_args *g, const float *x, int64_t n0, int64_t nc, \
                            float *y, tf_post post, const float *other)                        \
    {                                                                                          \
        enum { R = ROWS_PER_STEP(MR) };                                                        \
        float acc[MR * PANEL] __attribute__((aligned(64))), sums[MR * R];                      \
        const float *w = (const float *)g->w;                                                  \
        for (int64_t c0 = 0; c0 < nc; c0 += PANEL) {                                           \
            const int64_t cn = nc - c0 < PANEL ? nc - c0 : PANEL;                              \
            int64_t r = 0;                                                                     \
            for (; r + R <= cn; r += R) {                                                      \
                dot_rows(w + (n0 + c0 + r) * g->ldw, g->ldw, x, g->K, MR, R, sums);            \
                for (int m = 0; m < MR; m++) {                                                 \
                    for (int i = 0; i < R; i++) {                                              \
                        acc[m * PANEL + r + i] = sums[m * R + i];                              \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
            for (; r < cn; r++) {                                                              \
                dot_rows(w + (n0 + c0 + r) * g->ldw, g->ldw, x, g->K, MR, 1, sums);            \
                for (int m = 0; m < MR; m++) {                                                 \
                    acc[m * PANEL + r] = sums[m];                                              \
                }                                                                              \
            }                                                                                  \
            store_cols(g, acc, PANEL, MR, n0 + c0, cn, y, post, other);                        \
        }                                                                                      \
    }
DEFINE_TROWS_M(1)
DEFINE_TROWS_M(2)
DEFINE_TROWS_M(3)
DEFINE_TROWS_M(4)
/* 5 to 8 rows: the first 4 and the rest as two passes over each block of ROW_BLOCK weight
 * rows, the second one reading the block from L1 / L2 again. One pass over all M rows (one
 * weight row at a time, M x-loads per weight load) ran at half the FMA rate of 4 rows x 2
 * weight rows (8 FMAs per 6 loads); the weights still stream from memory once. */
#define ROW_BLOCK 16
#define DEFINE_TROWS_SPLIT(MR)                                                                 \
    static void trows_m##MR(const tf_gemv_f32_args *g, const float *x, int64_t n0, int64_t nc, \
                            float *y, tf_post post, const float *other)                        \
    {                                                                                          \
        enum { M2 = MR - 4, R1 = ROWS_PER_STEP(4), R2 = ROWS_PER_STEP(M2) };                   \
        float acc[MR * PANEL] __attribute__((aligned(64))), sums[8];                           \
        const float *w = (const float *)g->w;                                                  \
        const float *x2 = x + 4 * g->K;                                                        \
        for (int64_t c0 = 0; c0 < nc; c0 += PANEL) {                                           \
            const int64_t cn = nc - c0 < PANEL ? nc - c0 : PANEL;                              \
            for (int64_t b0 = 0; b0 < cn; b0 += ROW_BLOCK) {                                   \
                const int64_t b1 = cn - b0 < ROW_BLOCK ? cn : b0 + ROW_BLOCK;                  \
                int64_t r = b0;                                                                \
                for (; r + R1 <= b1; r += R1) {                                                \
                    dot_rows(w + (n0 + c0 + r) * g->ldw, g->ldw, x, g->K, 4, R1, sums);        \
                    for (int m = 0; m < 4; m++) {                                              \
                        for (int i = 0; i < R1; i++) {                                         \
                            acc[m * PANEL + r + i] = sums[m * R1 + i];                         \
                        }                                                                      \
                    }                                                                          \
                }                                                                              \
                for (; r < b1; r++) {                                                          \
                    dot_rows(w + (n0 + c0 + r) * g->ldw, g->ldw, x, g->K, 4, 1, sums);         \
                    for (int m = 0; m < 4; m++) {                                              \
                        acc[m * PANEL + r] = sums[m];                                          \
                    }                                                                          \
                }                                                                              \
                for (r = b0; r + R2 <= b1; r += R2) {                                          \
                    dot_rows(w + (n0 + c0 + r) * g->ldw, g->ldw, x2, g->K, M2, R2, sums);      \
                    for (int m = 0; m < M2; m++) {                                             \
                        for (int i = 0; i < R2; i++) {                                         \
                            acc[(4 + m) * PANEL + r + i] = sums[m * R2 + i];                   \
                        }                                                                      \
                    }                                                                          \
                }                                                                              \
                for (; r < b1; r++) {                                                          \
                    dot_rows(w + (n0 + c0 + r) * g->ldw, g->ldw, x2, g->K, M2, 1, sums);       \
                    for (int m = 0; m < M2; m++) {                                             \
                        acc[(4 + m) * PANEL + r] = sums[m];                                    \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
            store_cols(g, acc, PANEL, MR, n0 + c0, cn, y, post, other);                        \
        }                                                                                      \
    }
DEFINE_TROWS_SPLIT(5)
DEFINE_TROWS_SPLIT(6)
DEFINE_TROWS_SPLIT(7)
DEFINE_TROWS_SPLIT(8)
static const rows_fn trows_fns[TF_GEMV_ROWS_MAX_M] = {trows_m1, trows_m2, trows_m3, trows_m4,
                                                      trows_m5, trows_m6, trows_m7, trows_m8};

void
TF_ISA_FN(tf_gemv_f32)(const tf_gemv_f32_args *g, const float *x, int64_t M, float *y, tf_post post,
                       const float *other)
{
    if (g->transposed) { /* one contiguous range of rows per thread */
        const int par = g->K * g->N >= PARALLEL_MIN_WEIGHTS;
        const int64_t T = par ? omp_get_max_threads() : 1;
        const int64_t per = ((g->N + T - 1) / T + 7) / 8 * 8;
        const rows_fn fn = trows_fns[M - 1];
#pragma omp parallel for schedule(static) if (par)
        for (int64_t t = 0; t < T; t++) {
            const int64_t n0 = t * per, nc = g->N - n0 < per ? g->N - n0 : per;
            if (nc > 0) {
                fn(g, x, n0, nc, y, post, other);
            }
        }
        return;
    }
    /* panels: narrow weights are fewer bytes per panel, so they need more of them to be
     * worth a thread */
    const int64_t panels = (g->N + PANEL - 1) / PANEL;
    const panel_fn fn = panel_fns[g->wtype][M - 1];
#pragma omp parallel for schedule(static) if (g->K * g->N * W_BYTES(g->wtype) >= \
                                                  4 * PARALLEL_MIN_WEIGHTS)
    for (int64_t p = 0; p < panels; p++) {
        fn(g, x, p, y, post, other);
    }
}

/* Rows k0 .. k1 of the first cols columns of bf16 panels, widened into dst (rows ldd apart):
 * the widening for oneDNN's float32 matmul (tf_gemv_unpack_bf16). */
void
TF_ISA_FN(tf_gemv_unpack_bf16_rows)(const uint16_t *panels, int64_t K, int64_t cols, float *dst,
                                    int64_t ldd, int64_t k0, int64_t k1)
{
    for (int64_t j = 0; j < cols; j += PANEL) {
        const int64_t n = cols - j < PANEL ? cols - j : PANEL;
        const uint16_t *src = panels + (j / PANEL * K + k0) * PANEL;
        float *out = dst + k0 * ldd + j;
        for (int64_t k = k0; k < k1; k++, src += PANEL, out += ldd) {
            for (int64_t i = 0; i < n; i += TF_VW) {
                if (n - i >= TF_VW) {
                    tf_vstore(out + i, tf_vload_bf16_n(src + i, TF_VW));
                }
                else {
                    tf_vstore_n(out + i, tf_vload_bf16_n(src + i, n - i), n - i);
                }
            }
        }
    }
}

#else /* the dispatcher, compiled once */

TF_ISA_DECLARE(void, tf_gemv_unpack_bf16_rows,
               (const uint16_t *panels, int64_t K, int64_t cols, float *dst, int64_t ldd,
                int64_t k0, int64_t k1))

TF_ISA_DECLARE(void, tf_gemv_f32,
               (const tf_gemv_f32_args *g, const float *x, int64_t M, float *y, tf_post post,
                const float *other))

#define GEMV_ISAS (TF_ISA_BIT(TF_ISA_AVX512) | TF_ISA_BIT(TF_ISA_AVX2))

/* ------------------------------------------------------------------ tfcore's panel layout */

void
tf_gemv_pack_panels(const void *rows, int64_t K, int64_t N, int elt, void *panels)
{
    const int64_t np = (N + TF_GEMV_PANEL - 1) / TF_GEMV_PANEL;
#pragma omp parallel for schedule(static) if (K * N >= PARALLEL_MIN_WEIGHTS)
    for (int64_t p = 0; p < np; p++) {
        const int64_t n0 = p * TF_GEMV_PANEL, nc = N - n0 < TF_GEMV_PANEL ? N - n0 : TF_GEMV_PANEL;
        char *dst = (char *)panels + p * K * TF_GEMV_PANEL * elt;
        for (int64_t k = 0; k < K; k++, dst += TF_GEMV_PANEL * elt) {
            memcpy(dst, (const char *)rows + (k * N + n0) * elt, (size_t)(nc * elt));
            memset(dst + nc * elt, 0, (size_t)((TF_GEMV_PANEL - nc) * elt)); /* zeros past N */
        }
    }
}

void
tf_gemv_unpack_s8(const int8_t *panels, int64_t K, int64_t cols, int8_t *dst, int64_t ldd)
{
#pragma omp parallel for schedule(static) if (K * cols >= 4 * PARALLEL_MIN_WEIGHTS)
    for (int64_t k = 0; k < K; k++) {
        for (int64_t j = 0; j < cols; j += TF_GEMV_PANEL) {
            const int64_t n = cols - j < TF_GEMV_PANEL ? cols - j : TF_GEMV_PANEL;
            memcpy(dst + k * ldd + j, panels + (j / TF_GEMV_PANEL * K + k) * TF_GEMV_PANEL,
                   (size_t)n);
        }
    }
}

void
tf_gemv_unpack_bf16(const uint16_t *panels, int64_t K, int64_t cols, float *dst, int64_t ldd)
{
    /* blocks of rows per thread; within a block, panel by panel (each a contiguous read) */
    const int64_t KB_ROWS = 32, blocks = (K + KB_ROWS - 1) / KB_ROWS;
    const tf_isa_level isa = tf_isa_for(GEMV_ISAS);
#pragma omp parallel for schedule(static) if (K * cols >= PARALLEL_MIN_WEIGHTS)
    for (int64_t b = 0; b < blocks; b++) {
        const int64_t k0 = b * KB_ROWS, k1 = K - k0 < KB_ROWS ? K : k0 + KB_ROWS;
        switch (isa) {
            case TF_ISA_AVX512:
                tf_gemv_unpack_bf16_rows_avx512(panels, K, cols, dst, ldd, k0, k1);
                break;
            case TF_ISA_AVX2:
                tf_gemv_unpack_bf16_rows_avx2(panels, K, cols, dst, ldd, k0, k1);
                break;
            default:
                for (int64_t k = k0; k < k1; k++) {
                    for (int64_t j = 0; j < cols; j += TF_GEMV_PANEL) {
                        const int64_t n = cols - j < TF_GEMV_PANEL ? cols - j : TF_GEMV_PANEL;
                        tf_bf16_to_f32(panels + (j / TF_GEMV_PANEL * K + k) * TF_GEMV_PANEL,
                                       dst + k * ldd + j, n);
                    }
                }
        }
    }
}

tf_isa_level
tf_gemv_f32_isa(void)
{
    return tf_isa_for(GEMV_ISAS);
}

void
tf_gemv_f32(const tf_gemv_f32_args *g, const float *x, int64_t M, float *y, tf_post post,
            const float *other)
{
    switch (tf_gemv_f32_isa()) {
        case TF_ISA_AVX512: tf_gemv_f32_avx512(g, x, M, y, post, other); break;
        case TF_ISA_AVX2: tf_gemv_f32_avx2(g, x, M, y, post, other); break;
        default: break; /* callers check tf_gemv_f32_isa() first */
    }
}

#endif /* TF_ISA_PASS */
