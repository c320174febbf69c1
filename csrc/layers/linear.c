/* linear.c — Linear: y = act(x Wᵀ + b) [+ residual | * gate], one oneDNN matmul.
 *
 * Weights are reordered once, at construction, into the blocked layout oneDNN's brgemm
 * matmul picks (the layout does not depend on M, so one packed copy serves every batch
 * and sequence length). Each call creates its primitive through oneDNN's primitive
 * cache (a hit costs ~2 µs), which keeps objects stateless and safe to share between
 * threads; the scratchpad is the calling thread's. A few rows (decoding) go to the
 * kernels of linear_gemv.c instead.
 *
 * Every dtype runs on every x86-64 CPU:
 * - bfloat16 without AVX512_BF16: oneDNN 3.2 has no bf16 matmul there. int8 without VNNI:
 *   oneDNN's AVX2 int8 GEMM multiplies with vpmaddubsw, whose pairwise 16-bit sums saturate
 *   for full-range int8 (2 x 255 x 127 > 32767; measured: an all-127 product came out 127x
 *   too small), so the weights are quantized to 7 bits, [-63, 63] (what fbgemm's and ONNX
 *   Runtime's reduce_range do on such CPUs), which cannot saturate; the rows stay 8-bit;
 *   qmax says which. Both keep their weights in tfcore's own 64-column panels
 *   (own_panels_forward below): half / a quarter of the memory, and of the bytes a decode
 *   step streams through the few-row kernel (widening in registers); more rows unpack a
 *   slice of panels at a time for oneDNN (bf16 widened to float32, the rows rounded to bf16
 *   first as the native path rounds them; int8 as it is).
 */
#include "layers/linear.h"
#include "core/weight_cache.h"
#include "kernels/bfloat16.h"
#include "layers/linear_gemv.h"
#include "kernels/quant.h"

#include <string.h>

/* Representative M for choosing the packed layout; any M gives the same layout. */
#define PACK_M 128

int
tf_act_eltwise(int act, dnnl_alg_kind_t *alg, float *alpha)
{
    *alpha = 0.0f;
    switch (act) {
        case TF_ACT_GELU: *alg = dnnl_eltwise_gelu_erf; return 1;
        case TF_ACT_GELU_TANH: *alg = dnnl_eltwise_gelu_tanh; return 1;
        case TF_ACT_RELU: *alg = dnnl_eltwise_relu; return 1;
        case TF_ACT_SILU:
            *alg = dnnl_eltwise_swish;
            *alpha = 1.0f;
            return 1;
        case TF_ACT_TANH: *alg = dnnl_eltwise_tanh; return 1;
        default: return 0;
    }
}

/* int8 GEMMs are described as a batch of one, (1, M, K) x (1, K, N): oneDNN 3.2's brgemm
 * takes the per-token scales as a (1, M, 1) broadcast operand but not as (M, 1). */
static int
gemm_ndims(dnnl_data_type_t wdt)
{
    return wdt == dnnl_s8 ? 3 : 2;
}

/* A dense row-major (rows, cols) matrix, as (1, rows, cols) when nd is 3. */
static dnnl_status_t
matrix_md(dnnl_memory_desc_t *md, int nd, int64_t rows, int64_t cols, dnnl_data_type_t dt)
{
    dnnl_dims_t dims2 = {rows, cols}, dims3 = {1, rows, cols};
    return nd == 3 ? dnnl_memory_desc_create_with_tag(md, 3, dims3, dt, dnnl_abc)
                   : dnnl_memory_desc_create_with_tag(md, 2, dims2, dt, dnnl_ab);
}

/* The attribute for a call: user scratchpad, [int8: weight scales, (u8 rows: the source
 * zero point 128,) row scales, bias], activation, then the second operand. int8 GEMMs give
 * s8·s8 sums per (row, column) (wdt dnnl_s8), or u8·s8 sums for rows shifted by +128 (wdt
 * dnnl_u8: own panels; oneDNN's AVX2 int8 GEMM runs u8·s8 ~20% faster than s8·s8, which it
 * shifts itself); the per-column scale is oneDNN's weight scale, the per-token one a (M, 1)
 * broadcast multiply (oneDNN 3.2 takes only one scale for all of src), and the bias follows
 * it because it must be added to the dequantized value. */
static dnnl_status_t
make_attr(dnnl_primitive_attr_t *attr, int64_t M, int64_t N, int has_bias, int act, tf_post post,
          dnnl_data_type_t wdt, const_dnnl_memory_desc_t other_md)
{
    dnnl_post_ops_t ops = NULL;
    dnnl_memory_desc_t rows_md = NULL, bias_md = NULL;
    dnnl_alg_kind_t alg;
    float alpha;
    dnnl_status_t s = dnnl_primitive_attr_create(attr);
    if (s != dnnl_success) {
        return s;
    }
    if ((s = dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user))) {
        goto done;
    }
    if ((s = dnnl_post_ops_create(&ops))) {
        goto done;
    }
    if (wdt == dnnl_s8 || wdt == dnnl_u8) {
        /* scales per N: the last of the (1, K, N) weight dims */
        if ((s = dnnl_primitive_attr_set_scales_mask(*attr, DNNL_ARG_WEIGHTS, 1 << 2))) {
            goto done;
        }
        /* u8 rows (q + 128): oneDNN subtracts the zero point 128 (its GEMM folds 128 Σ_k w
         * into the int32 sums while packing the weights). Measured at AVX2, M = 1024, K = 768,
         * N = 3072, GELU: 3.3% fewer instructions per call than subtracting a per-column
         * 128 s_w Σ_k w as a binary post-op (its post-processing pass ran 20% shorter) and
         * BERT-base int8 B = 8 1.14x faster (in-process A/B, interleaved medians under heavy
         * load: the direction, not the size). */
        if (wdt == dnnl_u8 &&
            (s = dnnl_primitive_attr_set_zero_points_mask(*attr, DNNL_ARG_SRC, 0))) {
            goto done;
        }
        if ((s = matrix_md(&rows_md, 3, M, 1, dnnl_f32)) ||
            (s = dnnl_post_ops_append_binary(ops, dnnl_binary_mul, rows_md))) {
            goto done;
        }
        if (has_bias && ((s = matrix_md(&bias_md, 3, 1, N, dnnl_f32)) ||
                         (s = dnnl_post_ops_append_binary(ops, dnnl_binary_add, bias_md)))) {
            goto done;
        }
    }
    if (tf_act_eltwise(act, &alg, &alpha) &&
        (s = dnnl_post_ops_append_eltwise(ops, alg, alpha, 0.0f))) {
        goto done;
    }
    if (post == TF_POST_ADD && (s = dnnl_post_ops_append_binary(ops, dnnl_binary_add, other_md))) {
        goto done;
    }
    if (post == TF_POST_MUL && (s = dnnl_post_ops_append_binary(ops, dnnl_binary_mul, other_md))) {
        goto done;
    }
    if (post == TF_POST_ACCUM &&
        (s = dnnl_post_ops_append_sum(ops, 1.0f, 0, dnnl_data_type_undef))) {
        goto done;
    }
    s = dnnl_primitive_attr_set_post_ops(*attr, ops);
done:
    if (ops != NULL) {
        dnnl_post_ops_destroy(ops);
    }
    if (rows_md) {
        dnnl_memory_desc_destroy(rows_md);
    }
    if (bias_md) {
        dnnl_memory_desc_destroy(bias_md);
    }
    return s;
}

/* Index of the post-op that takes `other` (ADD/MUL), as laid out by make_attr. */
static int
other_post_op_index(int has_bias, int act, dnnl_data_type_t wdt)
{
    int index = tf_act_eltwise(act, &(dnnl_alg_kind_t){0}, &(float){0}) ? 1 : 0;
    return wdt == dnnl_s8   ? index + 1 + (has_bias ? 1 : 0)
           : wdt == dnnl_u8 ? index + 1 + (has_bias ? 1 : 0)
                            : index;
}

/* A matmul primitive descriptor for M rows of this Linear. */
static dnnl_status_t
make_pd(dnnl_primitive_desc_t *pd, int64_t M, int64_t K, int64_t N, int has_bias, int act,
        tf_post post, dnnl_data_type_t wdt, const_dnnl_memory_desc_t wmd)
{
    dnnl_memory_desc_t src = NULL, dst = NULL, bias = NULL;
    dnnl_primitive_attr_t attr = NULL;
    const int nd = gemm_ndims(wdt);
    dnnl_status_t s;
    /* bf16 / s8 weights take bf16 / s8 rows (converted by the caller); output and bias
     * stay f32; int8 adds the bias as a post-op (see make_attr) */
    if ((s = matrix_md(&src, nd, M, K, wdt))) {
        goto done;
    }
    if ((s = matrix_md(&dst, nd, M, N, dnnl_f32))) {
        goto done;
    }
    if (has_bias && wdt != dnnl_s8 && (s = matrix_md(&bias, 2, 1, N, dnnl_f32))) {
        goto done;
    }
    if ((s = make_attr(&attr, M, N, has_bias, act, post, wdt, dst))) {
        goto done;
    }
    s = dnnl_matmul_primitive_desc_create(pd, tf_engine(), src, wmd, bias, dst, attr);
done:
    if (attr) {
        dnnl_primitive_attr_destroy(attr);
    }
    if (src) {
        dnnl_memory_desc_destroy(src);
    }
    if (dst) {
        dnnl_memory_desc_destroy(dst);
    }
    if (bias) {
        dnnl_memory_desc_destroy(bias);
    }
    return s;
}

/* The row stride (elements) for weights kept as plain (K, N) rows: N rounded up to 16 and
 * then to an odd multiple of 16. oneDNN's AVX2 GEMM (gemm:jit) reads B down its rows; with a
 * row stride of a multiple of 2 KiB those reads collide in the same cache sets: measured at
 * AVX2, M = 128, K = 768, 2 threads: N = 3072 ran at 97 GFLOP/s with stride N and 220 with
 * N + 16 (N = 2304, stride 9 KiB, ran at 202 either way). The same holds for (N, K) rows. */
static int64_t
rows_ld(int64_t N)
{
    int64_t ld = (N + 15) / 16 * 16;
    return (ld / 16) % 2 == 0 ? ld + 16 : ld;
}

/* Plain (K, N) weights of type dt with rows ld elements apart, as (1, K, N) when nd is 3. */
static dnnl_status_t
rows_md(dnnl_memory_desc_t *md, int nd, int64_t K, int64_t N, int64_t ld, dnnl_data_type_t dt)
{
    dnnl_dims_t dims2 = {K, N}, strides2 = {ld, 1}, dims3 = {1, K, N}, strides3 = {K * ld, ld, 1};
    return nd == 3 ? dnnl_memory_desc_create_with_strides(md, 3, dims3, dt, strides3)
                   : dnnl_memory_desc_create_with_strides(md, 2, dims2, dt, strides2);
}

/* Float32 (K, N) weights stored as (N, K) rows ld floats apart. */
static dnnl_status_t
trows_md(dnnl_memory_desc_t *md, int64_t K, int64_t N, int64_t ld)
{
    dnnl_dims_t dims = {K, N}, strides = {1, ld};
    return dnnl_memory_desc_create_with_strides(md, 2, dims, dnnl_f32, strides);
}

/* Is md a plain row-major matrix (no blocking, last dimension dense)? */
static int
is_plain_rows(const_dnnl_memory_desc_t md)
{
    int ndims = 0, nblks = 0;
    const dnnl_dims_t *strides = NULL;
    if (dnnl_memory_desc_query(md, dnnl_query_ndims_s32, &ndims) ||
        dnnl_memory_desc_query(md, dnnl_query_inner_nblks_s32, &nblks) || nblks != 0 ||
        dnnl_memory_desc_query(md, dnnl_query_strides, &strides)) {
        return 0;
    }
    return (*strides)[ndims - 1] == 1 && (*strides)[ndims - 2] >= 1;
}

/* Bytes of the calling thread's scratch that hold x converted for the GEMM, 64-aligned:
 * bf16 rows, or s8 rows followed by their (M,) float scales. */
static size_t
converted_x_bytes(dnnl_data_type_t wdt, int64_t M, int64_t K)
{
    const size_t align = 63;
    if (wdt == dnnl_bf16) {
        return ((size_t)(M * K) * 2 + align) & ~align;
    }
    if (wdt == dnnl_s8) {
        return (((size_t)(M * K) + align) & ~align) +
               (((size_t)M * sizeof(float) + align) & ~align);
    }
    return 0;
}

/* Memory objects for an int8 call's extra operands over output columns n0 .. n0 + nc:
 * per-column weight scales (nc,), per-row scales (M, 1) and the bias (1, nc) post-op (NULL
 * without bias). */
static int
wrap_int8_operands(const tf_linear *lin, int64_t M, int64_t n0, int64_t nc, float *row_scales,
                   dnnl_memory_t *m_wscale, dnnl_memory_t *m_rows, dnnl_memory_t *m_bias,
                   tf_err *err)
{
    dnnl_memory_desc_t md_n = NULL, md_rows = NULL, md_bias = NULL;
    dnnl_dims_t n_dims = {nc};
    int rc = -1;
    if (tf_err_dnnl(err, dnnl_memory_desc_create_with_tag(&md_n, 1, n_dims, dnnl_f32, dnnl_a),
                    "describing weight scales") ||
        tf_err_dnnl(err, matrix_md(&md_rows, 3, M, 1, dnnl_f32), "describing row scales") ||
        tf_err_dnnl(err, matrix_md(&md_bias, 3, 1, nc, dnnl_f32), "describing bias") ||
        tf_err_dnnl(err, dnnl_memory_create(m_wscale, md_n, tf_engine(), lin->wscale + n0),
                    "wrapping weight scales") ||
        tf_err_dnnl(err, dnnl_memory_create(m_rows, md_rows, tf_engine(), row_scales),
                    "wrapping row scales")) {
        goto done;
    }
    if (lin->bias != NULL &&
        tf_err_dnnl(err, dnnl_memory_create(m_bias, md_bias, tf_engine(), lin->bias + n0),
                    "wrapping bias")) {
        goto done;
    }
    rc = 0;
done:
    if (md_n) {
        dnnl_memory_desc_destroy(md_n);
    }
    if (md_rows) {
        dnnl_memory_desc_destroy(md_rows);
    }
    if (md_bias) {
        dnnl_memory_desc_destroy(md_bias);
    }
    return rc;
}

/* The int8 matmul's extra exec arguments after args[0 .. nargs): the weight scales, the
 * source zero point when zp is not NULL (u8 rows), then the binary post-ops in the order
 * make_attr built them (the row scales, the bias when not NULL). Returns the new count. */
static int
push_int8_args(dnnl_exec_arg_t *args, int nargs, dnnl_memory_t wscale, dnnl_memory_t zp,
               dnnl_memory_t rows, dnnl_memory_t bias)
{
    int post = 0;
    args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_SCALES | DNNL_ARG_WEIGHTS, wscale};
    if (zp != NULL) {
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, zp};
    }
    args[nargs++] =
        (dnnl_exec_arg_t){DNNL_ARG_ATTR_MULTIPLE_POST_OP(post++) | DNNL_ARG_SRC_1, rows};
    if (bias != NULL) {
        args[nargs++] =
            (dnnl_exec_arg_t){DNNL_ARG_ATTR_MULTIPLE_POST_OP(post++) | DNNL_ARG_SRC_1, bias};
    }
    return nargs;
}

/* The source zero point of u8 rows (q + 128): one int32, 128. */
static int
wrap_zp(dnnl_memory_t *m, tf_err *err)
{
    static int32_t zp128 = 128; /* read only */
    dnnl_memory_desc_t md = NULL;
    dnnl_dims_t d = {1};
    const int rc = tf_err_dnnl(err, dnnl_memory_desc_create_with_tag(&md, 1, d, dnnl_s32, dnnl_a),
                               "describing the zero point") ||
                           tf_err_dnnl(err, dnnl_memory_create(m, md, tf_engine(), &zp128),
                                       "wrapping the zero point")
                       ? -1
                       : 0;
    if (md) {
        dnnl_memory_desc_destroy(md);
    }
    return rc;
}

/* ------------------------------------------------------------------ tfcore's own panels
 *
 * bf16 / int8 weights on a CPU without AVX512_BF16 / VNNI live in tfcore's layout: panels of
 * 64 output columns, each a contiguous (K, 64) block (kernels/gemv.h), which the few-row
 * kernel streams front to back at the memory bandwidth (decoding). More rows unpack a slice
 * of panels at a time into plain rows for oneDNN: bf16 widened to a float32 block for its
 * float32 matmul, int8 copied to an int8 block for its AVX2 int8 GEMM. */

/* Bytes of unpacked weights per slice: large enough that oneDNN sees a wide GEMM (few passes
 * over x), small enough to stay near the caches and to keep the scratch frugal. */
#define SLICE_BYTES (16 << 20)

/* The matmul of one slice of nc output columns (of N): x (M, K) (float32 for bf16 weights,
 * its int8 rows + 128 as u8 for int8) times a (K, nc) block of unpacked weights (rows rows_ld(nc)
 * apart) into columns of y (M, N). */
static dnnl_status_t
make_slice_pd(dnnl_primitive_desc_t *pd, int64_t M, int64_t K, int64_t nc, int64_t N, int has_bias,
              int act, tf_post post, dnnl_data_type_t wdt)
{
    const dnnl_data_type_t dt = wdt == dnnl_s8 ? dnnl_s8 : dnnl_f32;  /* the weights' */
    const dnnl_data_type_t xdt = wdt == dnnl_s8 ? dnnl_u8 : dnnl_f32; /* the rows' */
    const int nd = gemm_ndims(dt);
    dnnl_memory_desc_t src = NULL, wei = NULL, dst = NULL, bias = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_dims_t dims2 = {M, nc}, strides2 = {N, 1}, dims3 = {1, M, nc}, strides3 = {M * N, N, 1};
    dnnl_status_t s;
    if ((s = matrix_md(&src, nd, M, K, xdt)) || (s = rows_md(&wei, nd, K, nc, rows_ld(nc), dt)) ||
        (s = nd == 3 ? dnnl_memory_desc_create_with_strides(&dst, 3, dims3, dnnl_f32, strides3)
                     : dnnl_memory_desc_create_with_strides(&dst, 2, dims2, dnnl_f32, strides2)) ||
        (has_bias && dt != dnnl_s8 && (s = matrix_md(&bias, 2, 1, nc, dnnl_f32))) ||
        (s = make_attr(&attr, M, nc, has_bias, act, post, xdt == dnnl_u8 ? dnnl_u8 : dt, dst))) {
        goto done;
    }
    s = dnnl_matmul_primitive_desc_create(pd, tf_engine(), src, wei, bias, dst, attr);
done:
    if (attr) {
        dnnl_primitive_attr_destroy(attr);
    }
    dnnl_memory_desc_t mds[] = {src, wei, dst, bias};
    for (size_t i = 0; i < sizeof(mds) / sizeof(mds[0]); i++) {
        if (mds[i]) {
            dnnl_memory_desc_destroy(mds[i]);
        }
    }
    return s;
}

/* y (M, N) = act(x Wᵀ + b) (post) other over own panels, a slice of columns at a time: x
 * converted once (bf16: rounded, as the native path rounds it; int8: quantized per row),
 * then per slice the panels unpacked and one oneDNN matmul writing those columns of y (bias,
 * activation and post-op fused as usual). Scratch: [x converted | row scales | block |
 * oneDNN's]. */
static int
own_panels_forward(const tf_linear *lin, const float *x, int64_t M, float *y, tf_post post,
                   const float *other, tf_err *err)
{
    const int s8 = lin->wdt == dnnl_s8;
    const int64_t K = lin->in_features, N = lin->out_features;
    const int64_t elt = s8 ? 1 : (int64_t)sizeof(float); /* unpacked element size */
    const int64_t slices = (K * N * elt + SLICE_BYTES - 1) / SLICE_BYTES;
    int64_t nc = ((N + slices - 1) / slices + 63) / 64 * 64;
    nc = nc < N ? nc : N;
    const int64_t last = N - (N - 1) / nc * nc; /* width of the last slice */
    dnnl_primitive_desc_t pd[2] = {NULL, NULL};
    dnnl_primitive_t prim[2] = {NULL, NULL};
    dnnl_memory_t m_src = NULL, m_wei = NULL, m_dst = NULL, m_bias = NULL, m_other = NULL,
                  m_scratch = NULL, m_wscale = NULL, m_rows = NULL, m_zp = NULL;
    int rc = -1;
    tf_thread_ctx *ctx = tf_thread_ctx_get(err);
    if (ctx == NULL) {
        return -1;
    }
    size_t sp_size = 0;
    for (int i = 0; i < 2; i++) {
        const int64_t w = i == 0 ? nc : last;
        if (tf_err_dnnl(
                err, make_slice_pd(&pd[i], M, K, w, N, lin->bias != NULL, lin->act, post, lin->wdt),
                "creating a matmul primitive descriptor") ||
            tf_err_dnnl(err, dnnl_primitive_create(&prim[i], pd[i]),
                        "creating a matmul primitive")) {
            goto done;
        }
        const size_t sz = dnnl_memory_desc_get_size(
            dnnl_primitive_desc_query_md(pd[i], dnnl_query_scratchpad_md, 0));
        sp_size = sz > sp_size ? sz : sp_size;
    }
    const size_t align = 63;
    const size_t xbytes = ((size_t)(M * K * (s8 ? 1 : (int64_t)sizeof(float))) + align) & ~align;
    const size_t rbytes = s8 ? ((size_t)M * sizeof(float) + align) & ~align : 0;
    const size_t wbytes = ((size_t)(K * rows_ld(nc) * elt) + align) & ~align;
    char *scratch = tf_thread_scratch(ctx, xbytes + rbytes + wbytes + sp_size, err);
    if (scratch == NULL) {
        goto done;
    }
    void *xc = scratch, *block = scratch + xbytes + rbytes;
    float *row_scales = (float *)(scratch + xbytes);
    if (s8) {
        tf_quantize_rows_u8(x, M, K, 127, xc, row_scales); /* q + 128 */
    }
    else {
        tf_round_to_bf16(x, xc, M * K);
    }
    for (int64_t n0 = 0; n0 < N; n0 += nc) {
        const int i = N - n0 < nc ? 1 : 0;
        const int64_t w = i ? last : nc;
        const void *panels =
            (const char *)lin->weights + n0 / 64 * lin->panel_stride * (s8 ? 1 : 2);
        if (s8) {
            tf_gemv_unpack_s8(panels, K, w, block, rows_ld(w));
        }
        else {
            tf_gemv_unpack_bf16(panels, K, w, block, rows_ld(w));
        }
        const_dnnl_memory_desc_t src_md = dnnl_primitive_desc_query_md(pd[i], dnnl_query_src_md, 0);
        const_dnnl_memory_desc_t wei_md =
            dnnl_primitive_desc_query_md(pd[i], dnnl_query_weights_md, 0);
        const_dnnl_memory_desc_t dst_md = dnnl_primitive_desc_query_md(pd[i], dnnl_query_dst_md, 0);
        const_dnnl_memory_desc_t sp_md =
            dnnl_primitive_desc_query_md(pd[i], dnnl_query_scratchpad_md, 0);
        dnnl_exec_arg_t args[10]; /* src wei dst scratchpad, scales zp rows bias, other */
        int nargs = 0;
        if (tf_err_dnnl(err, dnnl_memory_create(&m_src, src_md, tf_engine(), xc), "wrapping x") ||
            tf_err_dnnl(err, dnnl_memory_create(&m_wei, wei_md, tf_engine(), block),
                        "wrapping weights") ||
            tf_err_dnnl(err, dnnl_memory_create(&m_dst, dst_md, tf_engine(), y + n0),
                        "wrapping the output") ||
            tf_err_dnnl(err,
                        dnnl_memory_create(&m_scratch, sp_md, tf_engine(),
                                           scratch + xbytes + rbytes + wbytes),
                        "wrapping the scratchpad")) {
            goto done;
        }
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, m_src};
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, m_wei};
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_DST, m_dst};
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, m_scratch};
        if (s8) {
            if (wrap_int8_operands(lin, M, n0, w, row_scales, &m_wscale, &m_rows, &m_bias, err) <
                    0 ||
                (m_zp == NULL && wrap_zp(&m_zp, err) < 0)) {
                goto done;
            }
            nargs = push_int8_args(args, nargs, m_wscale, m_zp, m_rows, m_bias);
        }
        else if (lin->bias != NULL) {
            const_dnnl_memory_desc_t b_md =
                dnnl_primitive_desc_query_md(pd[i], dnnl_query_weights_md, 1);
            if (tf_err_dnnl(err, dnnl_memory_create(&m_bias, b_md, tf_engine(), lin->bias + n0),
                            "wrapping bias")) {
                goto done;
            }
            args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, m_bias};
        }
        if (post == TF_POST_ADD || post == TF_POST_MUL) {
            const int index =
                other_post_op_index(lin->bias != NULL, lin->act, s8 ? dnnl_u8 : lin->wdt);
            if (tf_err_dnnl(err,
                            dnnl_memory_create(&m_other, dst_md, tf_engine(), (void *)(other + n0)),
                            "wrapping the post-op operand")) {
                goto done;
            }
            args[nargs++] =
                (dnnl_exec_arg_t){DNNL_ARG_ATTR_MULTIPLE_POST_OP(index) | DNNL_ARG_SRC_1, m_other};
        }
        if (tf_err_dnnl(err, dnnl_primitive_execute(prim[i], ctx->stream, nargs, args),
                        "running matmul") ||
            tf_err_dnnl(err, dnnl_stream_wait(ctx->stream), "waiting for matmul")) {
            goto done;
        }
        dnnl_memory_t *ms[] = {&m_src,   &m_wei,     &m_dst,    &m_bias,
                               &m_other, &m_scratch, &m_wscale, &m_rows};
        for (size_t j = 0; j < sizeof(ms) / sizeof(ms[0]); j++) {
            if (*ms[j]) {
                dnnl_memory_destroy(*ms[j]);
                *ms[j] = NULL;
            }
        }
    }
    rc = 0;
done:;
    dnnl_memory_t ms[] = {m_src, m_wei, m_dst, m_bias, m_other, m_scratch, m_wscale, m_rows, m_zp};
    for (size_t j = 0; j < sizeof(ms) / sizeof(ms[0]); j++) {
        if (ms[j]) {
            dnnl_memory_destroy(ms[j]);
        }
    }
    for (int i = 0; i < 2; i++) {
        if (prim[i]) {
            dnnl_primitive_destroy(prim[i]);
        }
        if (pd[i]) {
            dnnl_primitive_desc_destroy(pd[i]);
        }
    }
    return rc;
}

int
tf_linear_forward(const tf_linear *lin, const float *x, int64_t M, float *y, tf_post post,
                  const float *other, tf_err *err)
{
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    dnnl_memory_t m_src = NULL, m_wei = NULL, m_bias = NULL, m_dst = NULL, m_other = NULL,
                  m_scratch = NULL, m_wscale = NULL, m_rows = NULL;
    int rc = -1;
    const int64_t K = lin->in_features, N = lin->out_features;
    if (lin->wdt == TF_WDT_INT4) {
        return tf_linear_int4_forward(lin, x, M, y, post, other, err);
    }
    const int done = tf_linear_gemv(lin, x, M, y, post, other, err); /* a few rows */
    if (done != 0) {
        return done < 0 ? -1 : 0;
    }
    if (lin->own_panels) {
        return own_panels_forward(lin, x, M, y, post, other, err);
    }
    const size_t xbytes = converted_x_bytes(lin->wdt, M, K);
    float *row_scales = NULL;
    tf_thread_ctx *ctx = tf_thread_ctx_get(err);
    if (ctx == NULL) {
        return -1;
    }
    if (tf_err_dnnl(err,
                    make_pd(&pd, M, K, N, lin->bias != NULL, lin->act, post, lin->wdt, lin->wmd),
                    "creating a matmul primitive descriptor") < 0) {
        goto done;
    }
    if (tf_err_dnnl(err, dnnl_primitive_create(&prim, pd), "creating a matmul primitive") < 0) {
        goto done;
    }

    const_dnnl_memory_desc_t src_md = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    const_dnnl_memory_desc_t dst_md = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    const_dnnl_memory_desc_t sp_md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t sp_size = dnnl_memory_desc_get_size(sp_md);
    /* [x converted for bf16 / s8 weights | oneDNN's scratchpad] */
    char *scratch = tf_thread_scratch(ctx, xbytes + sp_size, err);
    if (scratch == NULL) {
        goto done;
    }
    if (lin->wdt == dnnl_bf16) {
        tf_f32_to_bf16(x, (uint16_t *)scratch, M * K);
    }
    else if (lin->wdt == dnnl_s8) {
        row_scales = (float *)(scratch + xbytes - (((size_t)M * sizeof(float) + 63) & ~(size_t)63));
        tf_quantize_rows_s8(x, M, K, 127, (int8_t *)scratch, row_scales);
    }
    if (xbytes > 0) {
        x = (const float *)scratch;
        scratch += xbytes;
    }

    dnnl_exec_arg_t args[8];
    int nargs = 0;
    if (tf_err_dnnl(err, dnnl_memory_create(&m_src, src_md, tf_engine(), (void *)x),
                    "wrapping x") ||
        tf_err_dnnl(err, dnnl_memory_create(&m_wei, lin->wmd, tf_engine(), lin->weights),
                    "wrapping weights") ||
        tf_err_dnnl(err, dnnl_memory_create(&m_dst, dst_md, tf_engine(), y),
                    "wrapping the output") ||
        tf_err_dnnl(err, dnnl_memory_create(&m_scratch, sp_md, tf_engine(), scratch),
                    "wrapping the scratchpad")) {
        goto done;
    }
    args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, m_src};
    args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, m_wei};
    args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_DST, m_dst};
    args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, m_scratch};
    if (lin->wdt == dnnl_s8) {
        if (wrap_int8_operands(lin, M, 0, N, row_scales, &m_wscale, &m_rows, &m_bias, err) < 0) {
            goto done;
        }
        nargs = push_int8_args(args, nargs, m_wscale, NULL, m_rows, m_bias);
    }
    else if (lin->bias != NULL) {
        const_dnnl_memory_desc_t b_md = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 1);
        if (tf_err_dnnl(err, dnnl_memory_create(&m_bias, b_md, tf_engine(), lin->bias),
                        "wrapping bias")) {
            goto done;
        }
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, m_bias};
    }
    if (post == TF_POST_ADD || post == TF_POST_MUL) {
        int index = other_post_op_index(lin->bias != NULL, lin->act, lin->wdt);
        if (tf_err_dnnl(err, dnnl_memory_create(&m_other, dst_md, tf_engine(), (void *)other),
                        "wrapping the post-op operand")) {
            goto done;
        }
        args[nargs++] =
            (dnnl_exec_arg_t){DNNL_ARG_ATTR_MULTIPLE_POST_OP(index) | DNNL_ARG_SRC_1, m_other};
    }
    if (tf_err_dnnl(err, dnnl_primitive_execute(prim, ctx->stream, nargs, args),
                    "running matmul") ||
        tf_err_dnnl(err, dnnl_stream_wait(ctx->stream), "waiting for matmul")) {
        goto done;
    }
    rc = 0;
done:
    if (m_src) {
        dnnl_memory_destroy(m_src);
    }
    if (m_wei) {
        dnnl_memory_destroy(m_wei);
    }
    if (m_bias) {
        dnnl_memory_destroy(m_bias);
    }
    if (m_dst) {
        dnnl_memory_destroy(m_dst);
    }
    if (m_other) {
        dnnl_memory_destroy(m_other);
    }
    if (m_scratch) {
        dnnl_memory_destroy(m_scratch);
    }
    if (m_wscale) {
        dnnl_memory_destroy(m_wscale);
    }
    if (m_rows) {
        dnnl_memory_destroy(m_rows);
    }
    if (prim) {
        dnnl_primitive_destroy(prim);
    }
    if (pd) {
        dnnl_primitive_desc_destroy(pd);
    }
    return rc;
}

int
tf_linear_check(tf_state *st, PyObject *obj)
{
    return PyObject_TypeCheck(obj, st->Linear);
}

/* Prefix the pending exception's message with what (keeping its type). */
static void
prefix_error(const char *what)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *msg = value ? PyObject_Str(value) : NULL;
    if (msg == NULL) {
        PyErr_Restore(type, value, tb);
        return;
    }
    PyErr_Format(type, "%s: %U", what, msg);
    Py_DECREF(msg);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
}

tf_linear *
tf_linear_build(tf_state *st, PyObject *weight, PyObject *bias, int act, int transposed,
                PyObject *dtype, const char *what)
{
    PyObject *args = NULL, *kwargs = NULL, *result = NULL;
    if (tf_linear_check(st, weight)) { /* 4-bit checkpoint weights kept as they are */
        return tf_linear_int4_rebuild(st, (const tf_linear *)weight, bias, act, transposed, what);
    }
    args = Py_BuildValue("(OO)", weight, bias ? bias : Py_None);
    kwargs = Py_BuildValue("{s:s, s:O, s:O}", "activation", tf_act_names[act], "transposed",
                           transposed ? Py_True : Py_False, "dtype", dtype ? dtype : Py_None);
    if (args != NULL && kwargs != NULL) {
        result = PyObject_Call((PyObject *)st->Linear, args, kwargs);
    }
    Py_XDECREF(args);
    Py_XDECREF(kwargs);
    if (result == NULL) {
        prefix_error(what);
    }
    return (tf_linear *)result;
}

dnnl_status_t
tf_reorder(const_dnnl_memory_desc_t src_md, const void *src, const_dnnl_memory_desc_t dst_md,
           void *dst)
{
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    dnnl_memory_t ms = NULL, md = NULL;
    dnnl_stream_t stream = NULL;
    dnnl_status_t s;
    if ((s = dnnl_reorder_primitive_desc_create(&pd, src_md, tf_engine(), dst_md, tf_engine(),
                                                NULL))) {
        goto done;
    }
    if ((s = dnnl_primitive_create(&prim, pd))) {
        goto done;
    }
    if ((s = dnnl_memory_create(&ms, src_md, tf_engine(), (void *)src))) {
        goto done;
    }
    if ((s = dnnl_memory_create(&md, dst_md, tf_engine(), dst))) {
        goto done;
    }
    if ((s = dnnl_stream_create(&stream, tf_engine(), dnnl_stream_default_flags))) {
        goto done;
    }
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, ms}, {DNNL_ARG_TO, md}};
    if ((s = dnnl_primitive_execute(prim, stream, 2, args))) {
        goto done;
    }
    s = dnnl_stream_wait(stream);
done:
    if (stream) {
        dnnl_stream_destroy(stream);
    }
    if (ms) {
        dnnl_memory_destroy(ms);
    }
    if (md) {
        dnnl_memory_destroy(md);
    }
    if (prim) {
        dnnl_primitive_destroy(prim);
    }
    if (pd) {
        dnnl_primitive_desc_destroy(pd);
    }
    return s;
}

/* The weights as oneDNN sees them: logical (K, N). W given as (N, K) row-major is the
 * (K, N) matrix with strides (1, K); transposed (GPT-2 Conv1D) (K, N) has (N, 1). */
static dnnl_status_t
user_weights_md(dnnl_memory_desc_t *md, int nd, int64_t K, int64_t N, int transposed,
                dnnl_data_type_t dt)
{
    /* (K, N) with strides (1, K), or (N, 1) when transposed; nd 3 prepends the batch of one */
    dnnl_dims_t dims = {K, N}, strides = {1, K};
    if (transposed) {
        strides[0] = N;
        strides[1] = 1;
    }
    if (nd == 3) {
        dnnl_dims_t dims3 = {1, K, N}, strides3 = {K * N, strides[0], strides[1]};
        return dnnl_memory_desc_create_with_strides(md, 3, dims3, dt, strides3);
    }
    return dnnl_memory_desc_create_with_strides(md, 2, dims, dt, strides);
}

/* Weights (K, N) in the layout oneDNN chooses for dt. */
static dnnl_status_t
any_weights_md(dnnl_memory_desc_t *md, int64_t K, int64_t N, dnnl_data_type_t dt)
{
    dnnl_dims_t dims2 = {K, N}, dims3 = {1, K, N};
    return gemm_ndims(dt) == 3
               ? dnnl_memory_desc_create_with_tag(md, 3, dims3, dt, dnnl_format_tag_any)
               : dnnl_memory_desc_create_with_tag(md, 2, dims2, dt, dnnl_format_tag_any);
}

/* Does oneDNN run a matmul with dt weights natively (not its scalar 'ref' code) on a CPU
 * with the instructions that make it fast (isa_bits, a dnnl_cpu_isa_t bit set)? */
static int
native_matmul(dnnl_data_type_t dt, unsigned isa_bits)
{
    int ok = 0;
    dnnl_memory_desc_t any = NULL;
    dnnl_primitive_desc_t pd = NULL;
    if (any_weights_md(&any, 64, 64, dt) == dnnl_success &&
        make_pd(&pd, 64, 64, 64, 1, TF_ACT_NONE, TF_POST_NONE, dt, any) == dnnl_success) {
        const char *impl = NULL;
        dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
        ok = impl != NULL && strstr(impl, "ref") == NULL &&
             ((unsigned)dnnl_get_effective_cpu_isa() & isa_bits) == isa_bits;
    }
    if (pd) {
        dnnl_primitive_desc_destroy(pd);
    }
    if (any) {
        dnnl_memory_desc_destroy(any);
    }
    return ok;
}

int
tf_bf16_supported(void)
{
    /* without AVX512_BF16 (or AMX, whose ISA bits include it) oneDNN emulates bf16 */
    static int cached = -1; /* racing first calls compute the same answer */
    if (cached < 0) {
        cached = native_matmul(dnnl_bf16, dnnl_cpu_isa_avx512_core_bf16);
    }
    return cached;
}

int
tf_int8_supported(void)
{
    /* VNNI (AVX-512 or AVX2 flavour) multiplies 4 byte pairs per lane and instruction;
     * without it oneDNN's int8 is no faster than fp32 */
    static int cached = -1;
    if (cached < 0) {
        cached = native_matmul(dnnl_s8, dnnl_cpu_isa_avx512_core_vnni) ||
                 native_matmul(dnnl_s8, dnnl_cpu_isa_avx2_vnni);
    }
    return cached;
}

int
tf_parse_weight_dtype(tf_state *st, PyObject *obj, dnnl_data_type_t *dt)
{
    *dt = dnnl_f32;
    if (obj == NULL || obj == Py_None) {
        return 0;
    }
    const char *name = PyUnicode_Check(obj) ? PyUnicode_AsUTF8(obj) : NULL;
    if (name == NULL) {
        PyErr_Clear();
        tf_type_error(st, "dtype must be a string ('float32', 'bfloat16' or 'int8'), got %s",
                      Py_TYPE(obj)->tp_name);
        return -1;
    }
    if (strcmp(name, "float32") == 0 || strcmp(name, "fp32") == 0) {
        return 0;
    }
    if (strcmp(name, "bfloat16") == 0 || strcmp(name, "bf16") == 0) {
        *dt = dnnl_bf16;
        return 0;
    }
    if (strcmp(name, "int8") == 0) {
        *dt = dnnl_s8;
        return 0;
    }
    tf_value_error(st, "dtype must be 'float32', 'bfloat16' or 'int8', got '%s'", name);
    return -1;
}

/* The weight argument: float32 for any dtype, or uint16 bf16 bits (a bf16 checkpoint's
 * tensor, packed without a float32 copy) when dtype is bfloat16. New reference or NULL. */
static PyArrayObject *
weight_arg(tf_state *st, PyObject *obj, dnnl_data_type_t wdt, dnnl_data_type_t *given)
{
    *given = dnnl_f32;
    if (wdt == dnnl_bf16 && PyArray_Check(obj) &&
        PyArray_TYPE((PyArrayObject *)obj) == NPY_UINT16) {
        PyArrayObject *a = (PyArrayObject *)obj;
        if (PyArray_NDIM(a) != 2) {
            return (PyArrayObject *)tf_value_error(st, "weight must be 2-D, got %d dimensions",
                                                   PyArray_NDIM(a));
        }
        if (!PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISALIGNED(a)) {
            return (PyArrayObject *)tf_value_error(
                st, "weight (bfloat16 bits) must be C-contiguous and aligned");
        }
        const uint16_t *bits = PyArray_DATA(a);
        for (npy_intp i = 0, n = PyArray_SIZE(a); i < n; i++) {
            if ((bits[i] & 0x7F80u) == 0x7F80u) { /* exponent all ones: inf or NaN */
                return (PyArrayObject *)tf_value_error(
                    st, "weight contains NaN or Inf (bfloat16 element %lld)", (long long)i);
            }
        }
        *given = dnnl_bf16;
        Py_INCREF(a);
        return a;
    }
    PyArrayObject *w = tf_arg_f32(st, obj, "weight", 2, 2);
    if (w != NULL && tf_check_finite(st, w, "weight") < 0) {
        Py_CLEAR(w);
    }
    return w;
}

/* sums[n] = Σ_k q[k, n] of int8 weights given as (N, K), or (K, N) when transposed. */
static void
column_sums(const int8_t *q, int64_t K, int64_t N, int transposed, int32_t *sums)
{
    for (int64_t n = 0; n < N; n++) {
        int32_t s = 0;
        for (int64_t k = 0; k < K; k++) {
            s += transposed ? q[k * N + n] : q[n * K + k];
        }
        sums[n] = s;
    }
}

static PyObject *
linear_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"weight", "bias",       "activation", "transposed",
                             "dtype",  "group_size", NULL};
    PyObject *weight_obj, *bias_obj = Py_None, *act_obj = Py_None, *dtype_obj = Py_None,
                          *group_obj = Py_None;
    int64_t group = 0;
    int transposed = 0;
    PyArrayObject *w = NULL, *b = NULL;
    dnnl_memory_desc_t user_md = NULL, any_md = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_data_type_t wdt, given;
    int8_t *quantized = NULL;
    void *rows = NULL; /* own panels: the weights as plain rows before packing */
    tf_linear *self = NULL;
    tf_state *st = tf_state_of_type(type);
    int act;
    if (st == NULL) {
        return NULL;
    }
    if (!TF_PARSE(st, args, kwds, "O|OO$pOO:Linear", kwlist, &weight_obj, &bias_obj, &act_obj,
                  &transposed, &dtype_obj, &group_obj)) {
        return NULL;
    }
    if (tf_parse_activation(st, act_obj, &act) < 0) {
        goto fail;
    }
    const int int4 = tf_parse_int4_dtype(st, dtype_obj, group_obj, &group);
    if (int4 < 0 || (int4 == 0 && tf_parse_weight_dtype(st, dtype_obj, &wdt) < 0)) {
        goto fail;
    }
    if (int4) {
        wdt = TF_WDT_INT4;
    }
    if ((w = weight_arg(st, weight_obj, wdt, &given)) == NULL) {
        goto fail;
    }
    if (tf_check_nonempty(st, w, "weight") < 0) {
        goto fail;
    }
    const int64_t N = PyArray_DIM(w, transposed ? 1 : 0);
    const int64_t K = PyArray_DIM(w, transposed ? 0 : 1);
    const int64_t elt = wdt == dnnl_s8 ? 1 : wdt == dnnl_bf16 ? 2 : 4; /* bytes per weight */
    if (bias_obj != Py_None) {
        if ((b = tf_arg_f32(st, bias_obj, "bias", 1, 1)) == NULL) {
            goto fail;
        }
        if (PyArray_DIM(b, 0) != N) {
            tf_value_error(st, "bias has %" NPY_INTP_FMT " elements, expected out_features=%lld",
                           PyArray_DIM(b, 0), (long long)N);
            goto fail;
        }
        if (tf_check_finite(st, b, "bias") < 0) {
            goto fail;
        }
    }
    self = (tf_linear *)type->tp_alloc(type, 0);
    if (self == NULL) {
        goto fail;
    }
    self->in_features = K;
    self->out_features = N;
    self->act = act;
    self->wdt = wdt;
    if (wdt == TF_WDT_INT4) { /* round to nearest per group into kernels/q4.h's layout */
        if (tf_linear_int4_alloc(self, N, K, group) < 0) {
            goto fail;
        }
        Py_BEGIN_ALLOW_THREADS tf_threads_begin();
        tf_q4_quantize_rtn(PyArray_DATA(w), N, K, transposed, group, self->weights, self->q4d,
                           self->q4m);
        Py_END_ALLOW_THREADS goto bias_copy;
    }
    self->own_panels =
        (wdt == dnnl_bf16 && !tf_bf16_supported()) || (wdt == dnnl_s8 && !tf_int8_supported());
    self->qmax = wdt == dnnl_s8 && !tf_int8_supported() ? 63 : 127;

    if (tf_check_dnnl(st,
                      user_weights_md(&user_md, gemm_ndims(wdt), K, N, transposed,
                                      wdt == dnnl_s8 ? dnnl_s8 : given),
                      "describing weights")) {
        goto fail;
    }
    size_t wsize;
    if (self->own_panels) {
        /* reordered to plain (K, N) rows (any_md), then packed into tfcore's panels */
        if (tf_check_dnnl(st, rows_md(&any_md, gemm_ndims(wdt), K, N, N, wdt),
                          "describing the weight rows")) {
            goto fail;
        }
        self->panel_stride = K * TF_GEMV_PANEL;
        self->panel_ld = TF_GEMV_PANEL;
        wsize = (size_t)((N + TF_GEMV_PANEL - 1) / TF_GEMV_PANEL * self->panel_stride * elt);
        rows = tf_malloc((size_t)(K * N * elt));
        if (rows == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
    }
    else {
        if (tf_check_dnnl(st, any_weights_md(&any_md, K, N, wdt), "describing packed weights") ||
            tf_check_dnnl(st, make_pd(&pd, PACK_M, K, N, b != NULL, act, TF_POST_NONE, wdt, any_md),
                          "choosing the packed weight layout") ||
            tf_check_dnnl(st,
                          dnnl_memory_desc_clone(&self->wmd, dnnl_primitive_desc_query_md(
                                                                 pd, dnnl_query_weights_md, 0)),
                          "copying the packed weight layout")) {
            goto fail;
        }
        if (is_plain_rows(self->wmd)) {
            /* oneDNN's AVX2 choice (gemm:jit takes B as it is): float32 as (N, K) rows (its
             * "transposed B", as fast for it), so that the few-row kernel streams each
             * thread's share of the weights as one contiguous range; other types as (K, N)
             * rows. Either way padded (rows_ld). */
            dnnl_memory_desc_destroy(self->wmd);
            self->wmd = NULL;
            self->wtrans = wdt == dnnl_f32;
            if (tf_check_dnnl(st,
                              self->wtrans
                                  ? trows_md(&self->wmd, K, N, rows_ld(K))
                                  : rows_md(&self->wmd, gemm_ndims(wdt), K, N, rows_ld(N), wdt),
                              "describing the weight rows")) {
                goto fail;
            }
        }
        self->panel_stride = wdt == dnnl_s8     ? tf_gemv_s8_panel_stride(self->wmd)
                             : wdt == dnnl_bf16 ? tf_gemv_bf16_panel_stride(self->wmd)
                             : self->wtrans     ? 1 /* unused: rows, not panels */
                                                : tf_gemv_panel_stride(self->wmd, &self->panel_ld);
        if (self->wtrans) {
            self->panel_ld = rows_ld(K);
        }
        wsize = dnnl_memory_desc_get_size(self->wmd);
    }
    self->weights = tf_malloc(wsize);
    if (self->weights == NULL) {
        PyErr_Format(PyExc_MemoryError, "Linear: cannot allocate %zu bytes for packed weights",
                     wsize);
        goto fail;
    }
    /* zeroed: padding of blocked layouts (and of padded rows) is never written by the
     * reorder, and packed bytes must depend on the weights alone for the weight cache to
     * find them again (core/weight_cache.c: int8 buffers differed in their padding) */
    memset(self->weights, 0, wsize);
    void *user_weights = PyArray_DATA(w);
    if (wdt == dnnl_s8) {
        /* quantized copy in the caller's layout, then packed like any other dtype */
        self->wscale = tf_malloc((size_t)N * sizeof(float));
        self->wsum = tf_malloc((size_t)N * sizeof(int32_t));
        quantized = tf_malloc((size_t)(N * K));
        if (self->wscale == NULL || self->wsum == NULL || quantized == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
    }
    dnnl_status_t s;
    Py_BEGIN_ALLOW_THREADS tf_threads_begin();
    if (quantized != NULL) {
        if (transposed) {
            tf_quantize_columns_s8(user_weights, K, N, self->qmax, quantized, self->wscale);
        }
        else {
            tf_quantize_rows_s8(user_weights, N, K, self->qmax, quantized, self->wscale);
        }
        user_weights = quantized;
        column_sums(quantized, K, N, transposed, self->wsum);
    }
    if (rows != NULL) {
        s = tf_reorder(user_md, user_weights, any_md, rows);
        if (s == dnnl_success) {
            tf_gemv_pack_panels(rows, K, N, (int)elt, self->weights);
        }
    }
    else {
        s = tf_reorder(user_md, user_weights, self->wmd, self->weights);
    }
    Py_END_ALLOW_THREADS if (tf_check_dnnl(st, s, "packing weights") < 0) goto fail;
    /* with tfcore.set_weight_cache: one copy of these bytes per machine, not per process */
    void *shared;
    Py_BEGIN_ALLOW_THREADS shared = tf_weight_cache_share(self->weights, wsize);
    Py_END_ALLOW_THREADS if (shared != NULL)
    {
        tf_free(self->weights);
        self->weights = shared;
        self->wmapped = wsize;
    }
bias_copy:
    if (b != NULL) {
        self->bias = tf_malloc((size_t)N * sizeof(float));
        if (self->bias == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
        memcpy(self->bias, PyArray_DATA(b), (size_t)N * sizeof(float));
    }
    if (pd) {
        dnnl_primitive_desc_destroy(pd);
    }
    dnnl_memory_desc_destroy(user_md);
    if (any_md) {
        dnnl_memory_desc_destroy(any_md);
    }
    tf_free(quantized);
    tf_free(rows);
    Py_DECREF(w);
    Py_XDECREF(b);
    return (PyObject *)self;
fail:
    tf_free(quantized);
    tf_free(rows);
    if (pd) {
        dnnl_primitive_desc_destroy(pd);
    }
    if (user_md) {
        dnnl_memory_desc_destroy(user_md);
    }
    if (any_md) {
        dnnl_memory_desc_destroy(any_md);
    }
    Py_XDECREF(w);
    Py_XDECREF(b);
    Py_XDECREF(self);
    return NULL;
}

static void
linear_dealloc(tf_linear *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (self->wmd) {
        dnnl_memory_desc_destroy(self->wmd);
    }
    if (self->wmapped) {
        tf_weight_cache_unmap(self->weights, self->wmapped);
    }
    else {
        tf_free(self->weights);
    }
    tf_free(self->bias);
    tf_free(self->wscale);
    tf_free(self->wsum);
    tf_free(self->q4d);
    tf_free(self->q4m);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static int
linear_forward_any(const void *self, const float *x, int64_t M, float *y, tf_post post,
                   const float *other, tf_err *err)
{
    return tf_linear_forward(self, x, M, y, post, other, err);
}

static PyObject *
linear_call(tf_linear *self, PyObject *args, PyObject *kwds)
{
    return tf_rows_layer_call((PyObject *)self, args, kwds, self->in_features, self->out_features,
                              linear_forward_any, "O|O$O:Linear.__call__");
}

/* The weights unpacked to the (out_features, in_features) layout nn.Linear uses. */
static PyObject *
linear_get_weight(tf_linear *self, void *closure)
{
    tf_state *st = tf_state_of((PyObject *)self);
    dnnl_memory_desc_t md = NULL;
    npy_intp dims[2] = {(npy_intp)self->out_features, (npy_intp)self->in_features};
    PyArrayObject *w = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_FLOAT32);
    if (w == NULL) {
        return NULL;
    }
    if (self->wdt == TF_WDT_INT4) { /* d q + m */
        const tf_q4_args a = tf_linear_int4_args(self);
        Py_BEGIN_ALLOW_THREADS tf_threads_begin();
        tf_q4_dequantize(&a, 0, self->out_features, PyArray_DATA(w), self->in_features);
        Py_END_ALLOW_THREADS return (PyObject *)w;
    }
    if (self->own_panels) { /* tfcore's panels: element (k, n) of panel n / 64 */
        const int64_t K = self->in_features, N = self->out_features;
        float *out = PyArray_DATA(w);
        Py_BEGIN_ALLOW_THREADS for (int64_t n = 0; n < N; n++)
        {
            const int64_t base = n / TF_GEMV_PANEL * self->panel_stride + n % TF_GEMV_PANEL;
            for (int64_t k = 0; k < K; k++) {
                const int64_t i = base + k * TF_GEMV_PANEL;
                if (self->wdt == dnnl_s8) {
                    out[n * K + k] = (float)((const int8_t *)self->weights)[i] * self->wscale[n];
                }
                else {
                    const uint32_t bits = (uint32_t)((const uint16_t *)self->weights)[i] << 16;
                    memcpy(out + n * K + k, &bits, sizeof(bits));
                }
            }
        }
        Py_END_ALLOW_THREADS return (PyObject *)w;
    }
    dnnl_status_t s = user_weights_md(&md, gemm_ndims(self->wdt), self->in_features,
                                      self->out_features, 0, dnnl_f32);
    if (s == dnnl_success) {
        Py_BEGIN_ALLOW_THREADS s = tf_reorder(self->wmd, self->weights, md, PyArray_DATA(w));
        if (s == dnnl_success && self->wscale != NULL) {
            /* int8: the reorder gave the integers; dequantize each output row */
            float *rows = PyArray_DATA(w);
            for (int64_t n = 0; n < self->out_features; n++) {
                for (int64_t k = 0; k < self->in_features; k++) {
                    rows[n * self->in_features + k] *= self->wscale[n];
                }
            }
        }
        Py_END_ALLOW_THREADS
    }
    if (md) {
        dnnl_memory_desc_destroy(md);
    }
    if (tf_check_dnnl(st, s, "unpacking weights") < 0) {
        Py_DECREF(w);
        return NULL;
    }
    return (PyObject *)w;
}

PyObject *
tf_bias_copy(const float *v, int64_t n)
{
    if (v == NULL) {
        Py_RETURN_NONE;
    }
    npy_intp len = (npy_intp)n;
    PyArrayObject *b = (PyArrayObject *)PyArray_SimpleNew(1, &len, NPY_FLOAT32);
    if (b != NULL) {
        memcpy(PyArray_DATA(b), v, (size_t)n * sizeof(float));
    }
    return (PyObject *)b;
}

static PyObject *
linear_get_bias(tf_linear *self, void *closure)
{
    return tf_bias_copy(self->bias, self->out_features);
}

static PyObject *
linear_get_activation(tf_linear *self, void *closure)
{
    if (self->act == TF_ACT_NONE) {
        Py_RETURN_NONE;
    }
    return PyUnicode_FromString(tf_act_names[self->act]);
}

const char *
tf_weight_dtype_name(dnnl_data_type_t wdt)
{
    return wdt == dnnl_bf16     ? "bfloat16"
           : wdt == dnnl_s8     ? "int8"
           : wdt == TF_WDT_INT4 ? "int4"
                                : "float32";
}

static PyObject *
linear_get_dtype(tf_linear *self, void *closure)
{
    if (self->wdt == TF_WDT_INT4 && self->group != TF_INT4_DEFAULT_GROUP) {
        return PyUnicode_FromFormat("int4_g%lld", (long long)self->group);
    }
    return PyUnicode_FromString(tf_weight_dtype_name(self->wdt));
}

static PyObject *
linear_get_group_size(tf_linear *self, void *closure)
{
    if (self->wdt != TF_WDT_INT4) {
        Py_RETURN_NONE;
    }
    return PyLong_FromLongLong(self->group);
}

static PyObject *
linear_get_quant_max(tf_linear *self, void *closure)
{
    if (self->wdt != dnnl_s8) {
        Py_RETURN_NONE;
    }
    return PyLong_FromLong(self->qmax);
}

static PyObject *
linear_get_implementation(tf_linear *self, void *closure)
{
    tf_state *st = tf_state_of((PyObject *)self);
    dnnl_primitive_desc_t pd = NULL;
    const char *impl = NULL;
    if (self->wdt == TF_WDT_INT4) {
        return PyUnicode_FromFormat("tfcore int4 (%s; more than %d rows: dequantized slices + "
                                    "oneDNN float32)",
                                    tf_isa_names[tf_int4_isa()], TF_Q4_MAX_M);
    }
    /* own panels: a slice unpacked for oneDNN's float32 (bf16) or int8 matmul */
    dnnl_status_t s =
        self->own_panels
            ? make_slice_pd(&pd, PACK_M, self->in_features, self->out_features, self->out_features,
                            self->bias != NULL, self->act, TF_POST_NONE, self->wdt)
            : make_pd(&pd, PACK_M, self->in_features, self->out_features, self->bias != NULL,
                      self->act, TF_POST_NONE, self->wdt, self->wmd);
    if (tf_check_dnnl(st, s, "querying the implementation") < 0) {
        return NULL;
    }
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    PyObject *r = self->own_panels
                      ? PyUnicode_FromFormat("tfcore %s panels + %s",
                                             self->wdt == dnnl_s8 ? "int8" : "bf16 (widened)",
                                             impl ? impl : "unknown")
                      : PyUnicode_FromString(impl ? impl : "unknown");
    dnnl_primitive_desc_destroy(pd);
    return r;
}

static PyObject *
linear_repr(tf_linear *self)
{
    return PyUnicode_FromFormat(
        "Linear(in_features=%lld, out_features=%lld, bias=%s, activation=%s, dtype=%s)",
        (long long)self->in_features, (long long)self->out_features, self->bias ? "True" : "False",
        self->act == TF_ACT_NONE ? "None" : tf_act_names[self->act],
        tf_weight_dtype_name(self->wdt));
}

static PyMemberDef linear_members[] = {
    {"in_features", T_LONGLONG, offsetof(tf_linear, in_features), READONLY,
     "K: size of each input row."},
    {"out_features", T_LONGLONG, offsetof(tf_linear, out_features), READONLY,
     "N: size of each output row."},
    {NULL},
};

static PyGetSetDef linear_getset[] = {
    {"weight", (getter)linear_get_weight, NULL,
     "The weights as a new (out_features, in_features) float32 array (unpacked copy; for\n"
     "int8, the dequantized values q * scale).",
     NULL},
    {"bias", (getter)linear_get_bias, NULL, "The bias as a new float32 array, or None.", NULL},
    {"activation", (getter)linear_get_activation, NULL, "The fused activation, or None.", NULL},
    {"dtype", (getter)linear_get_dtype, NULL,
     "How the weights are stored and multiplied: 'float32', 'bfloat16' or 'int8'.", NULL},
    {"implementation", (getter)linear_get_implementation, NULL,
     "The oneDNN implementation that runs this layer's many-row calls (e.g.\n"
     "'brg:avx512_core'; bf16 / int8 without AVX512_BF16 / VNNI: 'tfcore bf16 (widened)\n"
     "panels + gemm:jit:f32', 'tfcore int8 panels + gemm:jit').",
     NULL},
    {"group_size", (getter)linear_get_group_size, NULL,
     "int4: the inputs sharing one scale and offset (32, 64, 128 or 256); None otherwise.", NULL},
    {"quant_max", (getter)linear_get_quant_max, NULL,
     "int8: the weights' integer range [-quant_max, quant_max]: 127, or 63 on CPUs without\n"
     "VNNI (7-bit weights, so the int8 GEMM's pairwise 16-bit sums cannot saturate). None\n"
     "for float32 and bfloat16.",
     NULL},
    {NULL},
};

PyDoc_STRVAR(
    linear_doc,
    "Linear(weight, bias=None, activation=None, *, transposed=False, dtype='float32',\n"
    "       group_size=None)\n--\n\n"
    "A fully connected layer: ``y = act(x @ weight.T + bias)``, optionally plus a residual.\n\n"
    "weight is float32 (out_features, in_features) like torch.nn.Linear, or\n"
    "(in_features, out_features) with transposed=True (GPT-2's Conv1D). It is packed once\n"
    "into oneDNN's blocked layout; the array is not kept. activation is None, 'gelu' (erf),\n"
    "'gelu_tanh', 'relu' or 'silu' (HF names 'gelu_new', 'gelu_pytorch_tanh', 'swish' too),\n"
    "fused into the GEMM.\n\n"
    "dtype='bfloat16' stores the weights as bfloat16 (half the memory and the bytes read per\n"
    "call) and multiplies bf16-rounded rows with float32 accumulation; input, bias and output\n"
    "stay float32. weight may then also be a uint16 array of bfloat16 bits (as in a bf16\n"
    "safetensors file), packed without a float32 copy.\n\n"
    "dtype='int8' quantizes the weights per output channel (symmetric, scale = max|w| / 127)\n"
    "and, at every call, each input row per token the same way; the int8 GEMM accumulates\n"
    "in int32 and the result is dequantized, biased and activated in float32. A quarter of\n"
    "the fp32 weight memory.\n\n"
    "dtype='int4' quantizes the weights to 4 bits per group of group_size inputs (32, 64,\n"
    "128 (default) or 256; 'int4_g32' is the same as dtype='int4', group_size=32) of each\n"
    "output row, round to nearest with the group's min and max: W ~ d q + m, q in 0..15,\n"
    "float32 d and m (4.5 bits per weight at group 128). in_features need not be a multiple\n"
    "of the group (the last group is partial). Up to 32 rows per call (decoding) multiply the\n"
    "4-bit weights with the rows quantized to int8 per group (integer dot products);\n"
    "more rows dequantize the weights a slice at a time for oneDNN's float32 GEMM.\n"
    "Linear.from_int4 takes weights already quantized (GGUF, GPTQ, AWQ).\n\n"
    "Call: ``layer(x, residual=None, *, out=None)`` with x float32 C-contiguous (..., "
    "in_features)\n"
    "used in place; returns (..., out_features). residual (same shape as the output) is added\n"
    "after the activation inside the GEMM; passing out=residual accumulates in place.");

static PyMethodDef linear_methods[] = {
    {"from_int4", (PyCFunction)(void (*)(void))tf_linear_from_int4,
     METH_VARARGS | METH_KEYWORDS | METH_CLASS,
     "from_int4($cls, values, scales, offsets, bias=None, activation=None, *, group_size)\n--\n\n"
     "A Linear of weights already quantized to 4 bits (dtype 'int4'):\n"
     "``weight[n, k] = scales[n, k // group_size] * values[n, k] + offsets[n, k // group_size]``.\n"
     "values: uint8 (out_features, in_features) integers 0..15; scales, offsets: float32\n"
     "(out_features, ceil(in_features / group_size)); group_size 32, 64, 128 or 256. GGUF\n"
     "Q4_0 is offsets = -8 scales, Q4_1 its mins; GPTQ / AWQ offsets = -scales * zeros.\n"
     "The values are packed as given (no rounding): the products use exactly these weights."},
    {NULL},
};

static PyType_Slot linear_slots[] = {
    {Py_tp_new, linear_new},         {Py_tp_dealloc, linear_dealloc}, {Py_tp_call, linear_call},
    {Py_tp_repr, linear_repr},       {Py_tp_members, linear_members}, {Py_tp_getset, linear_getset},
    {Py_tp_doc, (void *)linear_doc}, {Py_tp_methods, linear_methods}, {0, NULL},
};

PyType_Spec tf_linear_spec = {
    .name = "tfcore.Linear",
    .basicsize = sizeof(tf_linear),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = linear_slots,
};
