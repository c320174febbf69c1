/* conv.c — Conv1d and Conv2d: y = act(conv(x, W) + b) [+ residual], one oneDNN convolution
 * (shapes and layouts in conv.h).
 *
 * Weights are reordered once, at construction, into the blocked layout oneDNN picks for a
 * channels-last convolution of this geometry (BatchNorm, if given, folded in first: W' = W s,
 * b' = (b - mean) s + beta with s = gamma / sqrt(var + eps), computed in float64). Each call
 * creates its primitive through oneDNN's primitive cache, which keeps the objects stateless
 * and safe to share between threads; the scratchpad is the calling thread's.
 *
 * Layouts: the primitive always runs channels last (NHWC / NWC): that input is read in place
 * and the output written in place (zero copies). Channels-first input (NCHW / NCW, torch's and
 * HF's pixel_values) is reordered into the thread's scratch first and the result reordered
 * back into the output (with a residual added by that reorder's sum post-op). Models keep
 * their maps channels last between layers.
 *
 * dtypes: bfloat16 rounds x to bf16 and runs oneDNN's bf16 convolution (float32 output);
 * without AVX512_BF16 oneDNN has only scalar bf16 code, so the weights are kept as
 * bf16-rounded float32 and x is rounded the same way: the same products, float32 speed.
 * int8 quantizes the weights per output channel and x per tensor (one scale: the only source
 * scale oneDNN's convolution takes) and runs the s8 convolution with s32 accumulation. On
 * CPUs without VNNI oneDNN's packing halves s8 weights itself (so its AVX2 kernels'
 * pairwise 16-bit sums cannot saturate: layers/linear.c) and rescales the result: the
 * weights are then effectively 7-bit, and quant_max says 64.
 *
 * Routing: two kinds of geometry run as GEMMs over im2col rows (kernels/im2col.h) through one
 * tfcore.Linear per group instead of a oneDNN convolution (gemm_route says which):
 *   - non-overlapping patches (kernel == stride, no padding, no dilation, one group: ViT/CLIP
 *     patch embeddings, PVT/SegFormer spatial reduction, and 1x1 convolutions): the patches
 *     are the GEMM's rows (one gather copy; none for a stride-1 1x1 on channels last). oneDNN
 *     3.2's avx512_core brgconv ran the 8x8 stride-8 reduction at 0.03 GFLOP/s.
 *   - large grouped kernels (groups > 1, >= 4 channels per group, >= 16 taps: wav2vec2's
 *     kernel-128 positional convolution): per group, panels of sliding windows (im2col panel
 *     by panel, bounded memory) times the group's (OC/G, taps IC/G) weights. oneDNN 3.2's
 *     avx512_core brgconv ran the 16-group kernel-128 shape at 0.12 GFLOP/s.
 * On AVX2 oneDNN's convolutions run most of these shapes well, so there only the patch
 * embeddings are routed (gemm_route says which, with the measurements). Linear's dtypes are the
 * convolution's: bfloat16 rounds the rows to bf16; int8 quantizes each row (per output
 * position) instead of the whole tensor, so quant_max is Linear's (63 without VNNI).
 */
#include "layers/conv.h"
#include "kernels/bfloat16.h"
#include "kernels/im2col.h"
#include "kernels/quant.h"
#include "layers/linear.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN64(n) (((size_t)(n) + 63) & ~(size_t)63)

/* ------------------------------------------------------------------ memory descriptors */

/* A dense activation map (B, C, sp...) of dt, stored channels last or first. */
static dnnl_status_t
map_md(dnnl_memory_desc_t *md, int nsp, int64_t B, int64_t C, const int64_t *sp,
       dnnl_data_type_t dt, int channels_last)
{
    dnnl_dims_t dims = {B, C, sp[0], nsp == 2 ? sp[1] : 0};
    const dnnl_format_tag_t tag =
        nsp == 1 ? (channels_last ? dnnl_nwc : dnnl_ncw) : (channels_last ? dnnl_nhwc : dnnl_nchw);
    return dnnl_memory_desc_create_with_tag(md, 2 + nsp, dims, dt, tag);
}

/* The weights (OC, IC/G, k...) as oneDNN sees them: (G, OC/G, IC/G, k...) when grouped
 * (the same memory), in torch's dense layout or (tag any) oneDNN's choice. */
static dnnl_status_t
weights_md(dnnl_memory_desc_t *md, const tf_conv *c, dnnl_data_type_t dt, int any)
{
    const int64_t G = c->groups, icg = c->in_channels / G;
    dnnl_dims_t dims;
    int nd = 0;
    if (G > 1) {
        dims[nd++] = G;
    }
    dims[nd++] = c->out_channels / G;
    dims[nd++] = icg;
    for (int i = 0; i < c->nsp; i++) {
        dims[nd++] = c->kernel[i];
    }
    dnnl_format_tag_t tag = dnnl_format_tag_any;
    if (!any) {
        tag = G > 1 ? (c->nsp == 1 ? dnnl_goiw : dnnl_goihw) : (c->nsp == 1 ? dnnl_oiw : dnnl_oihw);
    }
    return dnnl_memory_desc_create_with_tag(md, nd, dims, dt, tag);
}

static dnnl_status_t
vector_md(dnnl_memory_desc_t *md, int64_t n)
{
    dnnl_dims_t dims = {n};
    return dnnl_memory_desc_create_with_tag(md, 1, dims, dnnl_f32, dnnl_a);
}

/* The data type x is converted to for the convolution. */
static dnnl_data_type_t
src_type(const tf_conv *c)
{
    return c->wdt == dnnl_s8                          ? dnnl_s8
           : c->wdt == dnnl_bf16 && !c->bf16_emulated ? dnnl_bf16
                                                      : dnnl_f32;
}

/* ------------------------------------------------------------------ primitive descriptors */

/* The convolution of B maps of in_sp into out_sp, channels last, post-ops: [activation]
 * [residual add (ADD, a map like dst) | sum into dst (ACCUM)]. */
static dnnl_status_t
make_pd(dnnl_primitive_desc_t *pd, const tf_conv *c, int64_t B, const int64_t *in_sp,
        const int64_t *out_sp, tf_post post, const_dnnl_memory_desc_t wmd)
{
    dnnl_memory_desc_t src = NULL, dst = NULL, bias = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    dnnl_alg_kind_t alg;
    float alpha;
    dnnl_dims_t strides, dilates, pl, pr;
    for (int i = 0; i < c->nsp; i++) {
        strides[i] = c->stride[i];
        dilates[i] = c->dilation[i] - 1;
        pl[i] = c->pad_l[i];
        pr[i] = c->pad_r[i];
    }
    dnnl_status_t s;
    if ((s = map_md(&src, c->nsp, B, c->in_channels, in_sp, src_type(c), 1)) ||
        (s = map_md(&dst, c->nsp, B, c->out_channels, out_sp, dnnl_f32, 1)) ||
        (c->bias != NULL && (s = vector_md(&bias, c->out_channels))) ||
        (s = dnnl_primitive_attr_create(&attr)) ||
        (s = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user)) ||
        (s = dnnl_post_ops_create(&ops))) {
        goto done;
    }
    if (c->wdt == dnnl_s8 &&
        ((s = dnnl_primitive_attr_set_scales_mask(attr, DNNL_ARG_SRC, 0)) ||
         /* per output channel: the first weight dim, or the first two (G, OC/G) when grouped */
         (s = dnnl_primitive_attr_set_scales_mask(attr, DNNL_ARG_WEIGHTS,
                                                  c->groups > 1 ? 3 : 1)))) {
        goto done;
    }
    if (tf_act_eltwise(c->act, &alg, &alpha) &&
        (s = dnnl_post_ops_append_eltwise(ops, alg, alpha, 0.0f))) {
        goto done;
    }
    if (post == TF_POST_ADD && (s = dnnl_post_ops_append_binary(ops, dnnl_binary_add, dst))) {
        goto done;
    }
    if (post == TF_POST_ACCUM &&
        (s = dnnl_post_ops_append_sum(ops, 1.0f, 0, dnnl_data_type_undef))) {
        goto done;
    }
    if ((s = dnnl_primitive_attr_set_post_ops(attr, ops))) {
        goto done;
    }
    s = dnnl_convolution_forward_primitive_desc_create(pd, tf_engine(), dnnl_forward_inference,
                                                       dnnl_convolution_direct, src, wmd, bias, dst,
                                                       strides, dilates, pl, pr, attr);
done:
    if (ops) {
        dnnl_post_ops_destroy(ops);
    }
    if (attr) {
        dnnl_primitive_attr_destroy(attr);
    }
    dnnl_memory_desc_t mds[] = {src, dst, bias};
    for (size_t i = 0; i < sizeof(mds) / sizeof(mds[0]); i++) {
        if (mds[i]) {
            dnnl_memory_desc_destroy(mds[i]);
        }
    }
    return s;
}

/* A reorder between two float32 maps (B, C, sp...) of opposite layouts; accumulate adds into
 * dst (sum post-op) instead of overwriting it. */
static dnnl_status_t
make_reorder_pd(dnnl_primitive_desc_t *pd, int nsp, int64_t B, int64_t C, const int64_t *sp,
                int from_channels_last, int accumulate)
{
    dnnl_memory_desc_t from = NULL, to = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    dnnl_status_t s;
    if ((s = map_md(&from, nsp, B, C, sp, dnnl_f32, from_channels_last)) ||
        (s = map_md(&to, nsp, B, C, sp, dnnl_f32, !from_channels_last)) ||
        (s = dnnl_primitive_attr_create(&attr)) ||
        (s = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user))) {
        goto done;
    }
    if (accumulate && ((s = dnnl_post_ops_create(&ops)) ||
                       (s = dnnl_post_ops_append_sum(ops, 1.0f, 0, dnnl_data_type_undef)) ||
                       (s = dnnl_primitive_attr_set_post_ops(attr, ops)))) {
        goto done;
    }
    s = dnnl_reorder_primitive_desc_create(pd, from, tf_engine(), to, tf_engine(), attr);
done:
    if (ops) {
        dnnl_post_ops_destroy(ops);
    }
    if (attr) {
        dnnl_primitive_attr_destroy(attr);
    }
    if (from) {
        dnnl_memory_desc_destroy(from);
    }
    if (to) {
        dnnl_memory_desc_destroy(to);
    }
    return s;
}

static size_t
scratchpad_size(dnnl_primitive_desc_t pd)
{
    return pd ? dnnl_memory_desc_get_size(
                    dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0))
              : 0;
}

/* Wrap ptr as a oneDNN memory of md (no copy), collecting it in mems[*n] for destruction. */
static int
wrap(dnnl_memory_t *mems, int *n, const_dnnl_memory_desc_t md, const void *ptr, const char *what,
     tf_err *err)
{
    if (tf_err_dnnl(err, dnnl_memory_create(&mems[*n], md, tf_engine(), (void *)ptr), what) < 0) {
        mems[*n] = NULL;
        return -1;
    }
    (*n)++;
    return 0;
}

/* Run the reorder pd from -> to with a scratchpad. */
static int
run_reorder(dnnl_primitive_desc_t pd, const void *from, void *to, void *scratch,
            dnnl_stream_t stream, tf_err *err)
{
    dnnl_primitive_t prim = NULL;
    dnnl_memory_t mems[3];
    int n = 0, rc = -1;
    if (tf_err_dnnl(err, dnnl_primitive_create(&prim, pd), "creating a reorder") < 0 ||
        wrap(mems, &n, dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0), from,
             "wrapping the reorder's input", err) ||
        wrap(mems, &n, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0), to,
             "wrapping the reorder's output", err) ||
        wrap(mems, &n, dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0), scratch,
             "wrapping the scratchpad", err)) {
        goto done;
    }
    dnnl_exec_arg_t args[3] = {
        {DNNL_ARG_FROM, mems[0]}, {DNNL_ARG_TO, mems[1]}, {DNNL_ARG_SCRATCHPAD, mems[2]}};
    if (tf_err_dnnl(err, dnnl_primitive_execute(prim, stream, 3, args), "running a reorder") ||
        tf_err_dnnl(err, dnnl_stream_wait(stream), "waiting for a reorder")) {
        goto done;
    }
    rc = 0;
done:
    for (int i = 0; i < n; i++) {
        dnnl_memory_destroy(mems[i]);
    }
    if (prim) {
        dnnl_primitive_destroy(prim);
    }
    return rc;
}

/* ------------------------------------------------------------------ GEMM route */

/* Does this geometry run as GEMMs over im2col rows? Eligible are non-overlapping patches and
 * large grouped kernels (the file comment). Which eligible ones are taken depends on what
 * oneDNN would run them with (measured, docs/convolution.md):
 *   - avx512_core: all of them (its brgconv is the pathological case above);
 *   - AVX2: only patches with >= 256 output channels (patch embeddings: the GEMM ran them
 *     1.1-1.25x faster than avx2 brgconv, 1 thread) and stride-1 1x1 (no copy at all); the
 *     64-channel 8x8/8 reduction (0.84x) and grouped kernels (0.5-0.9x: per-group GEMMs of
 *     48 columns) stay on oneDNN's avx2 convolutions, which run them at 40-85 GFLOP/s.
 * TFCORE_CONV_ROUTE=gemm takes every eligible geometry, =onednn none (tests, A/B runs). */
static int
gemm_route(const tf_conv *c)
{
    int patches = c->groups == 1, taps = 1;
    for (int i = 0; i < c->nsp; i++) {
        patches = patches && c->kernel[i] == c->stride[i] && c->pad_l[i] == 0 && c->pad_r[i] == 0 &&
                  c->dilation[i] == 1;
        taps *= (int)(c->kernel[i] > 1024 ? 1024 : c->kernel[i]);
    }
    const int large_grouped = c->groups > 1 && c->in_channels / c->groups >= 4 && taps >= 16;
    if (!patches && !large_grouped) {
        return 0;
    }
    const char *force = getenv("TFCORE_CONV_ROUTE");
    if (force != NULL && strcmp(force, "onednn") == 0) {
        return 0;
    }
    if ((force != NULL && strcmp(force, "gemm") == 0) ||
        (dnnl_get_effective_cpu_isa() & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core) {
        return 1;
    }
    return patches && (c->out_channels >= 256 || taps == 1);
}

/* The im2col geometry of c over in_sp -> out_sp (1-D maps on the second axis). */
static tf_im2col_args
im2col_args(const tf_conv *c, const float *x, const int64_t *in_sp, const int64_t *out_sp)
{
    tf_im2col_args a = {.x = x, .C = c->in_channels, .cg = c->in_channels / c->groups};
    const int first = 2 - c->nsp; /* the first axis used: 1 for a 1-D map */
    for (int i = 0; i < 2; i++) {
        a.in_sp[i] = a.out_sp[i] = a.kernel[i] = a.stride[i] = a.dilation[i] = 1;
        a.pad[i] = 0;
    }
    for (int i = 0; i < c->nsp; i++) {
        a.in_sp[first + i] = in_sp[i];
        a.out_sp[first + i] = out_sp[i];
        a.kernel[first + i] = c->kernel[i];
        a.stride[first + i] = c->stride[i];
        a.dilation[first + i] = c->dilation[i];
        a.pad[first + i] = c->pad_l[i];
    }
    return a;
}

/* floats per im2col panel: bounds the rows buffer (8 MB) whatever the map size */
#define GEMM_PANEL_FLOATS ((int64_t)1 << 21)

/* tf_conv_forward for the GEMM route: [channels first -> last] -> per group, panels of
 * im2col rows (M = B prod(out), taps IC/G) times the group's Linear into the output's
 * columns of the group -> [channels last -> first]. One group writes y (and applies the
 * residual) in the Linear itself; several scatter their (rows, OC/G) results. */
static int
gemm_forward(const tf_conv *c, const float *x, int channels_last, int64_t B, const int64_t *in_sp,
             const int64_t *out_sp, float *y, tf_post post, const float *other, tf_err *err)
{
    dnnl_primitive_desc_t pd_in = NULL, pd_out = NULL;
    float *xl = NULL, *yl = NULL, *rows = NULL, *part = NULL;
    int rc = -1;
    const int64_t IC = c->in_channels, OC = c->out_channels, G = c->ngemm, og = OC / G;
    int64_t nx = B * IC, M = B;
    for (int i = 0; i < c->nsp; i++) {
        nx *= in_sp[i];
        M *= out_sp[i];
    }
    const int64_t ny = M * OC;
    const float *src = x;
    float *dst = y;
    const tf_post cl_post = channels_last ? post : TF_POST_NONE;
    tf_thread_ctx *ctx = tf_thread_ctx_get(err);
    if (ctx == NULL) {
        return -1;
    }
    if (!channels_last) {
        if (tf_err_dnnl(err, make_reorder_pd(&pd_in, c->nsp, B, IC, in_sp, 0, 0),
                        "creating the input reorder") < 0 ||
            tf_err_dnnl(err,
                        make_reorder_pd(&pd_out, c->nsp, B, OC, out_sp, 1, post != TF_POST_NONE),
                        "creating the output reorder") < 0) {
            goto done;
        }
    }
    const tf_im2col_args shape = im2col_args(c, NULL, in_sp, out_sp);
    const int64_t K = shape.kernel[0] * shape.kernel[1] * shape.cg; /* im2col row length */
    /* a stride-1 1x1 convolution of one group reads the map itself as its rows */
    const int direct = G == 1 && K == IC && shape.stride[0] == 1 && shape.stride[1] == 1 &&
                       shape.pad[0] == 0 && shape.pad[1] == 0;
    int64_t panel = direct ? M : GEMM_PANEL_FLOATS / K;
    panel = panel < 64 ? 64 : panel > M ? M : panel;
    /* staging: [x channels last | y channels last (channels-first maps) | im2col rows |
     * one group's outputs]; Linear takes the thread's scratch meanwhile */
    const size_t xl_bytes = channels_last ? 0 : ALIGN64(nx * 4);
    const size_t yl_bytes = channels_last ? 0 : ALIGN64(ny * 4);
    const size_t rows_bytes = direct ? 0 : ALIGN64(panel * K * 4);
    const size_t part_bytes = G > 1 ? ALIGN64(panel * og * 4) : 0;
    char *staging = tf_thread_staging(ctx, xl_bytes + yl_bytes + rows_bytes + part_bytes + 64, err);
    if (staging == NULL) {
        goto done;
    }
    xl = (float *)staging;
    yl = (float *)(staging + xl_bytes);
    rows = (float *)(staging + xl_bytes + yl_bytes);
    part = (float *)(staging + xl_bytes + yl_bytes + rows_bytes);
    if (!channels_last) {
        void *sp = tf_thread_scratch(ctx, scratchpad_size(pd_in) + 64, err);
        if (sp == NULL || run_reorder(pd_in, x, xl, sp, ctx->stream, err) < 0) {
            goto done;
        }
        src = xl;
        dst = yl;
    }
    tf_im2col_args a = shape;
    a.x = src;
    for (int64_t g = 0; g < G; g++) {
        const tf_linear *lin = (const tf_linear *)c->gemm[g];
        for (int64_t m0 = 0; m0 < M; m0 += panel) {
            const int64_t n = M - m0 < panel ? M - m0 : panel;
            const float *in = src + m0 * IC;
            if (!direct) {
                tf_im2col_rows(&a, g, m0, n, rows);
                in = rows;
            }
            if (G == 1) {
                if (tf_linear_forward(lin, in, n, dst + m0 * OC, cl_post,
                                      cl_post == TF_POST_ADD ? other + m0 * OC : NULL, err) < 0) {
                    goto done;
                }
                continue;
            }
            if (tf_linear_forward(lin, in, n, part, TF_POST_NONE, NULL, err) < 0) {
                goto done;
            }
            /* the group's columns of (n, OC) output rows; the residual is added here */
#pragma omp parallel for schedule(static) if (n * og >= 65536)
            for (int64_t r = 0; r < n; r++) {
                float *d = dst + (m0 + r) * OC + g * og;
                const float *p = part + r * og;
                if (cl_post == TF_POST_ADD) {
                    const float *o = other + (m0 + r) * OC + g * og;
                    for (int64_t j = 0; j < og; j++) {
                        d[j] = p[j] + o[j];
                    }
                }
                else if (cl_post == TF_POST_ACCUM) {
                    for (int64_t j = 0; j < og; j++) {
                        d[j] += p[j];
                    }
                }
                else {
                    memcpy(d, p, (size_t)og * sizeof(float));
                }
            }
        }
    }
    if (!channels_last) {
        /* back to channels first; a residual is added by the reorder's sum post-op */
        if (post == TF_POST_ADD) {
            memcpy(y, other, (size_t)ny * sizeof(float));
        }
        void *sp = tf_thread_scratch(ctx, scratchpad_size(pd_out) + 64, err);
        if (sp == NULL || run_reorder(pd_out, yl, y, sp, ctx->stream, err) < 0) {
            goto done;
        }
    }
    rc = 0;
done:
    if (pd_in) {
        dnnl_primitive_desc_destroy(pd_in);
    }
    if (pd_out) {
        dnnl_primitive_desc_destroy(pd_out);
    }
    return rc;
}

/* ------------------------------------------------------------------ forward */

/* oneDNN's plain C reference implementation (what it falls back to when no optimised kernel
 * takes the shape and the weight layout). */
static int
is_reference(const_dnnl_primitive_desc_t pd)
{
    const char *impl = NULL;
    return dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success &&
           impl != NULL && strncmp(impl, "ref", 3) == 0;
}

/* The packed float32 weights were laid out for the representative call of packing_extents,
 * but oneDNN's AVX2 kernels (brgconv) choose the output-channel block from the output length
 * too (Acb16a or Acb24a): Whisper's stride-2 stem packed for 256 outputs and run on 1500 got
 * the reference convolution, ~100x slower. When *pd is that fallback and a kernel with weights
 * of its own layout exists for this shape, *pd becomes that kernel and *repack the reorder of
 * the packed weights into its layout (OC x IC x k floats), which tf_conv_forward runs once and
 * keeps in the object. Leaves *pd as it is otherwise. */
static dnnl_status_t
choose_kernel(dnnl_primitive_desc_t *pd, dnnl_primitive_desc_t *repack, const tf_conv *c, int64_t B,
              const int64_t *in_sp, const int64_t *out_sp, tf_post post)
{
    dnnl_memory_desc_t any = NULL;
    dnnl_primitive_desc_t own = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_status_t s = dnnl_success;
    if (!is_reference(*pd) || (c->wdt != dnnl_f32 && !c->bf16_emulated)) {
        return dnnl_success;
    }
    if ((s = weights_md(&any, c, dnnl_f32, 1)) ||
        (s = make_pd(&own, c, B, in_sp, out_sp, post, any))) {
        s = dnnl_success; /* no other kernel either: keep the reference */
        goto done;
    }
    if (is_reference(own)) {
        goto done;
    }
    const_dnnl_memory_desc_t want = dnnl_primitive_desc_query_md(own, dnnl_query_weights_md, 0);
    if ((s = dnnl_primitive_attr_create(&attr)) ||
        (s = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user)) ||
        (s = dnnl_reorder_primitive_desc_create(repack, c->wmd, tf_engine(), want, tf_engine(),
                                                attr))) {
        goto done;
    }
    dnnl_primitive_desc_destroy(*pd);
    *pd = own;
    own = NULL;
done:
    if (own) {
        dnnl_primitive_desc_destroy(own);
    }
    if (any) {
        dnnl_memory_desc_destroy(any);
    }
    if (attr) {
        dnnl_primitive_attr_destroy(attr);
    }
    return s;
}

int
tf_conv_out_size(const tf_conv *c, const int64_t *in_sp, int64_t *out_sp)
{
    for (int i = 0; i < c->nsp; i++) {
        const int64_t span =
            in_sp[i] + c->pad_l[i] + c->pad_r[i] - c->dilation[i] * (c->kernel[i] - 1) - 1;
        if (span < 0) {
            return -1;
        }
        out_sp[i] = span / c->stride[i] + 1;
    }
    return 0;
}

int
tf_conv_forward(const tf_conv *c, const float *x, int channels_last, int64_t B,
                const int64_t *in_sp, float *y, tf_post post, const float *other, tf_err *err)
{
    dnnl_primitive_desc_t pd = NULL, pd_in = NULL, pd_out = NULL, pd_w = NULL;
    dnnl_primitive_t prim = NULL;
    dnnl_memory_t mems[8];
    int nmem = 0, rc = -1;
    int64_t out_sp[2] = {1, 1};
    if (tf_conv_out_size(c, in_sp, out_sp) < 0) {
        tf_err_set(err, TF_ERR_VALUE, "input is smaller than the dilated kernel");
        return -1;
    }
    if (c->ngemm > 0) {
        return gemm_forward(c, x, channels_last, B, in_sp, out_sp, y, post, other, err);
    }
    int64_t nx = B * c->in_channels, ny = B * c->out_channels;
    for (int i = 0; i < c->nsp; i++) {
        nx *= in_sp[i];
        ny *= out_sp[i];
    }
    const dnnl_data_type_t sdt = src_type(c);
    /* Scratch: [x channels last (channels-first input) | x converted (bf16, s8, rounded
     * float32) | y channels last (channels-first output) | oneDNN's scratchpad] */
    const size_t xl_bytes = channels_last ? 0 : ALIGN64(nx * 4);
    const size_t xc_bytes = sdt == dnnl_bf16                    ? ALIGN64(nx * 2)
                            : sdt == dnnl_s8                    ? ALIGN64(nx)
                            : c->bf16_emulated && channels_last ? ALIGN64(nx * 4)
                                                                : 0;
    const size_t yl_bytes = channels_last ? 0 : ALIGN64(ny * 4);
    const tf_post conv_post = channels_last ? post : TF_POST_NONE;
    tf_thread_ctx *ctx = tf_thread_ctx_get(err);
    if (ctx == NULL) {
        return -1;
    }
    if (tf_err_dnnl(err, make_pd(&pd, c, B, in_sp, out_sp, conv_post, c->wmd),
                    "creating a convolution primitive descriptor") < 0 ||
        tf_err_dnnl(err, choose_kernel(&pd, &pd_w, c, B, in_sp, out_sp, conv_post),
                    "repacking the weights for this input length") < 0) {
        goto done;
    }
    /* the weights as the kernel reads them: packed at construction, or repacked per call */
    const_dnnl_memory_desc_t wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const size_t w_bytes = pd_w ? ALIGN64(dnnl_memory_desc_get_size(wmd)) : 0;
    if (!channels_last &&
        (tf_err_dnnl(err, make_reorder_pd(&pd_in, c->nsp, B, c->in_channels, in_sp, 0, 0),
                     "creating the input reorder") < 0 ||
         tf_err_dnnl(
             err,
             make_reorder_pd(&pd_out, c->nsp, B, c->out_channels, out_sp, 1, post != TF_POST_NONE),
             "creating the output reorder") < 0)) {
        goto done;
    }
    size_t sp_bytes = scratchpad_size(pd);
    sp_bytes = scratchpad_size(pd_in) > sp_bytes ? scratchpad_size(pd_in) : sp_bytes;
    sp_bytes = scratchpad_size(pd_out) > sp_bytes ? scratchpad_size(pd_out) : sp_bytes;
    sp_bytes = scratchpad_size(pd_w) > sp_bytes ? scratchpad_size(pd_w) : sp_bytes;
    char *scratch =
        tf_thread_scratch(ctx, xl_bytes + xc_bytes + yl_bytes + w_bytes + sp_bytes + 64, err);
    if (scratch == NULL) {
        goto done;
    }
    float *xl = (float *)scratch;
    void *xc = scratch + xl_bytes;
    float *yl = (float *)(scratch + xl_bytes + xc_bytes);
    void *wl = scratch + xl_bytes + xc_bytes + yl_bytes;
    void *sp = scratch + xl_bytes + xc_bytes + yl_bytes + w_bytes;
    const void *weights = c->weights;
    if (pd_w != NULL) {
        /* the first call of a length that needs the other layout repacks into the object
         * (kept for every later call); a third layout (rare) is repacked per call */
        tf_conv *mc = (tf_conv *)c;
        int ok = 0;
        pthread_mutex_lock(&mc->repack_lock);
        if (mc->repack_wmd == NULL) {
            void *buf = tf_malloc(dnnl_memory_desc_get_size(wmd));
            if (buf != NULL && run_reorder(pd_w, c->weights, buf, sp, ctx->stream, err) == 0 &&
                dnnl_memory_desc_clone(&mc->repack_wmd, wmd) == dnnl_success) {
                mc->repacked = buf;
            }
            else {
                tf_free(buf);
                mc->repack_wmd = NULL;
            }
        }
        if (mc->repack_wmd != NULL && dnnl_memory_desc_equal(mc->repack_wmd, wmd)) {
            weights = mc->repacked;
            ok = 1;
        }
        pthread_mutex_unlock(&mc->repack_lock);
        if (!ok) {
            if (run_reorder(pd_w, c->weights, wl, sp, ctx->stream, err) < 0) {
                goto done;
            }
            weights = wl;
        }
    }

    /* channels last, then the convolution's dtype */
    const void *src = x;
    if (!channels_last) {
        if (run_reorder(pd_in, x, xl, sp, ctx->stream, err) < 0) {
            goto done;
        }
        src = xl;
    }
    float xscale = 1.0f;
    if (sdt == dnnl_bf16) {
        tf_f32_to_bf16(src, xc, nx);
        src = xc;
    }
    else if (sdt == dnnl_s8) {
        tf_quantize_rows_s8(src, 1, nx, 127, xc, &xscale);
        src = xc;
    }
    else if (c->bf16_emulated) {
        float *rounded = channels_last ? (float *)xc : xl; /* the scratch copy in place */
        tf_round_to_bf16(src, rounded, nx);
        src = rounded;
    }

    if (tf_err_dnnl(err, dnnl_primitive_create(&prim, pd), "creating a convolution") < 0 ||
        wrap(mems, &nmem, dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0), src, "wrapping x",
             err) ||
        wrap(mems, &nmem, wmd, weights, "wrapping the weights", err) ||
        wrap(mems, &nmem, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0),
             channels_last ? y : yl, "wrapping the output", err) ||
        wrap(mems, &nmem, dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0), sp,
             "wrapping the scratchpad", err)) {
        goto done;
    }
    dnnl_exec_arg_t args[8] = {{DNNL_ARG_SRC, mems[0]},
                               {DNNL_ARG_WEIGHTS, mems[1]},
                               {DNNL_ARG_DST, mems[2]},
                               {DNNL_ARG_SCRATCHPAD, mems[3]}};
    int nargs = 4;
    if (c->bias != NULL) {
        if (wrap(mems, &nmem, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 1), c->bias,
                 "wrapping the bias", err)) {
            goto done;
        }
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, mems[nmem - 1]};
    }
    if (sdt == dnnl_s8) {
        dnnl_memory_desc_t one = NULL, oc = NULL;
        int bad = tf_err_dnnl(err, vector_md(&one, 1), "describing the input scale") ||
                  tf_err_dnnl(err, vector_md(&oc, c->out_channels), "describing weight scales") ||
                  wrap(mems, &nmem, one, &xscale, "wrapping the input scale", err) ||
                  wrap(mems, &nmem, oc, c->wscale, "wrapping weight scales", err);
        if (one) {
            dnnl_memory_desc_destroy(one);
        }
        if (oc) {
            dnnl_memory_desc_destroy(oc);
        }
        if (bad) {
            goto done;
        }
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_SCALES | DNNL_ARG_SRC, mems[nmem - 2]};
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_SCALES | DNNL_ARG_WEIGHTS, mems[nmem - 1]};
    }
    if (conv_post == TF_POST_ADD) {
        const int index = tf_act_eltwise(c->act, &(dnnl_alg_kind_t){0}, &(float){0}) ? 1 : 0;
        if (wrap(mems, &nmem, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0), other,
                 "wrapping the residual", err)) {
            goto done;
        }
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_MULTIPLE_POST_OP(index) | DNNL_ARG_SRC_1,
                                          mems[nmem - 1]};
    }
    if (tf_err_dnnl(err, dnnl_primitive_execute(prim, ctx->stream, nargs, args),
                    "running the convolution") ||
        tf_err_dnnl(err, dnnl_stream_wait(ctx->stream), "waiting for the convolution")) {
        goto done;
    }
    if (!channels_last) {
        /* back to channels first; a residual is added by the reorder's sum post-op */
        if (post == TF_POST_ADD) {
            memcpy(y, other, (size_t)ny * sizeof(float));
        }
        if (run_reorder(pd_out, yl, y, sp, ctx->stream, err) < 0) {
            goto done;
        }
    }
    rc = 0;
done:
    for (int i = 0; i < nmem; i++) {
        dnnl_memory_destroy(mems[i]);
    }
    if (prim) {
        dnnl_primitive_destroy(prim);
    }
    dnnl_primitive_desc_t pds[] = {pd, pd_in, pd_out, pd_w};
    for (size_t i = 0; i < sizeof(pds) / sizeof(pds[0]); i++) {
        if (pds[i]) {
            dnnl_primitive_desc_destroy(pds[i]);
        }
    }
    return rc;
}

/* ------------------------------------------------------------------ construction */

/* The input extents of the representative call the weights are packed for: one map whose
 * output has 28 (2-D) or 256 (1-D) positions per axis. The packed layout mostly depends on
 * the channels and the kernel; where a call's extents want another one, choose_kernel
 * repacks. */
static void
packing_extents(const tf_conv *c, int64_t *in_sp)
{
    const int64_t out = c->nsp == 2 ? 28 : 256;
    for (int i = 0; i < c->nsp; i++) {
        const int64_t n = c->dilation[i] * (c->kernel[i] - 1) + 1 + c->stride[i] * (out - 1) -
                          c->pad_l[i] - c->pad_r[i];
        in_sp[i] = n >= 1 ? n : 1;
    }
    /* padding larger than the kernel can leave even a 1-wide map with outputs: fine */
}

/* stride / dilation (>= 1) or padding (>= 0): an int for every axis or a tuple of nsp ints. */
static int
parse_axes(tf_state *st, PyObject *obj, const char *name, int nsp, int64_t minimum, int64_t *out)
{
    PyObject *items[2] = {obj, obj};
    if (PyTuple_Check(obj) || PyList_Check(obj)) {
        if (PySequence_Size(obj) != nsp) {
            tf_value_error(st, "%s must be an int or a sequence of %d ints, got %zd values", name,
                           nsp, PySequence_Size(obj));
            return -1;
        }
        for (int i = 0; i < nsp; i++) {
            items[i] = PySequence_Fast_GET_ITEM(obj, i);
        }
    }
    for (int i = 0; i < nsp; i++) {
        if (!PyLong_Check(items[i]) || PyBool_Check(items[i])) {
            tf_type_error(st, "%s must be an int or a sequence of %d ints, got %s", name, nsp,
                          Py_TYPE(items[i])->tp_name);
            return -1;
        }
        long long v = PyLong_AsLongLong(items[i]);
        if (v == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            tf_value_error(st, "%s is out of range", name);
            return -1;
        }
        if (v < minimum || v > (1LL << 30)) {
            tf_value_error(st, "%s must be between %lld and 2**30, got %lld", name,
                           (long long)minimum, v);
            return -1;
        }
        out[i] = v;
    }
    return 0;
}

/* padding: 'valid' (none), 'same' (stride 1: output as large as the input; an odd total
 * puts the extra zero at the end, as torch does), an int or a tuple. */
static int
parse_padding(tf_state *st, PyObject *obj, tf_conv *c)
{
    if (PyUnicode_Check(obj)) {
        const char *s = PyUnicode_AsUTF8(obj);
        if (s == NULL) {
            return -1;
        }
        if (strcmp(s, "valid") == 0) {
            return 0;
        }
        if (strcmp(s, "same") != 0) {
            tf_value_error(st, "padding must be 'valid', 'same', an int or a tuple, got '%s'", s);
            return -1;
        }
        for (int i = 0; i < c->nsp; i++) {
            if (c->stride[i] != 1) {
                tf_value_error(st, "padding='same' needs stride 1, got stride %lld",
                               (long long)c->stride[i]);
                return -1;
            }
            const int64_t total = c->dilation[i] * (c->kernel[i] - 1);
            c->pad_l[i] = total / 2;
            c->pad_r[i] = total - total / 2;
        }
        return 0;
    }
    if (parse_axes(st, obj, "padding", c->nsp, 0, c->pad_l) < 0) {
        return -1;
    }
    memcpy(c->pad_r, c->pad_l, sizeof(c->pad_l));
    return 0;
}

/* A (OC,) float32 vector argument of batch_norm, or NULL for None when optional. */
static PyArrayObject *
bn_vector(tf_state *st, PyObject *obj, const char *name, int64_t OC, int optional)
{
    if (obj == Py_None && optional) {
        return NULL;
    }
    PyArrayObject *a = tf_arg_f32(st, obj, name, 1, 1);
    if (a == NULL) {
        return NULL;
    }
    if (PyArray_DIM(a, 0) != OC) {
        tf_value_error(st, "%s has %" NPY_INTP_FMT " elements, expected out_channels=%lld", name,
                       PyArray_DIM(a, 0), (long long)OC);
        Py_DECREF(a);
        return NULL;
    }
    if (tf_check_finite(st, a, name) < 0) {
        Py_DECREF(a);
        return NULL;
    }
    return a;
}

/* Fold batch_norm = (running_mean, running_var, weight|None, bias|None, eps) into w (OC, Kw)
 * and b (OC,), both float32 copies, in float64: w' = w s, b' = (b - mean) s + beta,
 * s = gamma / sqrt(var + eps). */
static int
fold_batch_norm(tf_state *st, PyObject *bn, int64_t OC, int64_t Kw, float *w, float *b)
{
    PyArrayObject *mean = NULL, *var = NULL, *gamma = NULL, *beta = NULL;
    int rc = -1;
    if (!PyTuple_Check(bn) || PyTuple_GET_SIZE(bn) != 5) {
        tf_type_error(st,
                      "batch_norm must be a tuple (running_mean, running_var, weight, bias, eps),"
                      " got %s",
                      Py_TYPE(bn)->tp_name);
        return -1;
    }
    double eps = PyFloat_AsDouble(PyTuple_GET_ITEM(bn, 4));
    if (eps == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        tf_type_error(st, "batch_norm eps must be a float, got %s",
                      Py_TYPE(PyTuple_GET_ITEM(bn, 4))->tp_name);
        return -1;
    }
    if (!isfinite(eps) || eps < 0) {
        tf_value_error(st, "batch_norm eps must be a finite number >= 0, got %g", eps);
        return -1;
    }
    if ((mean = bn_vector(st, PyTuple_GET_ITEM(bn, 0), "batch_norm running_mean", OC, 0)) == NULL ||
        (var = bn_vector(st, PyTuple_GET_ITEM(bn, 1), "batch_norm running_var", OC, 0)) == NULL) {
        goto done;
    }
    gamma = bn_vector(st, PyTuple_GET_ITEM(bn, 2), "batch_norm weight", OC, 1);
    if (gamma == NULL && PyErr_Occurred()) {
        goto done;
    }
    beta = bn_vector(st, PyTuple_GET_ITEM(bn, 3), "batch_norm bias", OC, 1);
    if (beta == NULL && PyErr_Occurred()) {
        goto done;
    }
    const float *m = PyArray_DATA(mean), *v = PyArray_DATA(var);
    for (int64_t o = 0; o < OC; o++) {
        if (!((double)v[o] + eps > 0)) {
            tf_value_error(st, "batch_norm running_var[%lld] + eps = %g: must be > 0", (long long)o,
                           (double)v[o] + eps);
            goto done;
        }
    }
    for (int64_t o = 0; o < OC; o++) {
        const double g = gamma ? ((const float *)PyArray_DATA(gamma))[o] : 1.0;
        const double s = g / sqrt((double)v[o] + eps);
        for (int64_t k = 0; k < Kw; k++) {
            w[o * Kw + k] = (float)(w[o * Kw + k] * s);
        }
        const double be = beta ? ((const float *)PyArray_DATA(beta))[o] : 0.0;
        b[o] = (float)(((double)b[o] - m[o]) * s + be);
    }
    rc = 0;
done:
    Py_XDECREF(mean);
    Py_XDECREF(var);
    Py_XDECREF(gamma);
    Py_XDECREF(beta);
    return rc;
}

/* The GEMM route's Linears (gemm_route): group g's weights as (OC/G, taps IC/G) in im2col's
 * (tap, channel) order, from wf (OC, IC/G, taps) with BatchNorm folded in; its slice of the
 * bias; the activation fused; Linear's packing for dtype. 0 / -1 with an exception. */
static int
build_gemms(tf_state *st, tf_conv *self, const float *wf, PyObject *dtype_obj)
{
    const int64_t G = self->groups, og = self->out_channels / G, cg = self->in_channels / G;
    int64_t taps = 1;
    for (int i = 0; i < self->nsp; i++) {
        taps *= self->kernel[i];
    }
    self->gemm = PyMem_Calloc((size_t)G, sizeof(PyObject *));
    if (self->gemm == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (int64_t g = 0; g < G; g++) {
        npy_intp wdims[2] = {(npy_intp)og, (npy_intp)(taps * cg)}, bdims[1] = {(npy_intp)og};
        PyArrayObject *wg = (PyArrayObject *)PyArray_SimpleNew(2, wdims, NPY_FLOAT32);
        PyArrayObject *bg = NULL;
        if (wg == NULL) {
            return -1;
        }
        float *d = PyArray_DATA(wg);
        for (int64_t o = 0; o < og; o++) {
            const float *wo = wf + (g * og + o) * cg * taps; /* (cg, taps) */
            for (int64_t t = 0; t < taps; t++) {
                for (int64_t ch = 0; ch < cg; ch++) {
                    d[(o * taps + t) * cg + ch] = wo[ch * taps + t];
                }
            }
        }
        if (self->bias != NULL) {
            if ((bg = (PyArrayObject *)PyArray_SimpleNew(1, bdims, NPY_FLOAT32)) == NULL) {
                Py_DECREF(wg);
                return -1;
            }
            memcpy(PyArray_DATA(bg), self->bias + g * og, (size_t)og * sizeof(float));
        }
        tf_linear *lin = tf_linear_build(st, (PyObject *)wg, (PyObject *)bg, self->act, 0,
                                         dtype_obj, "convolution as a GEMM");
        Py_DECREF(wg);
        Py_XDECREF(bg);
        if (lin == NULL) {
            return -1;
        }
        self->gemm[g] = (PyObject *)lin;
        self->ngemm = g + 1;
    }
    return 0;
}

static PyObject *
conv_new_nd(PyTypeObject *type, PyObject *args, PyObject *kwds, int nsp, const char *fmt)
{
    static char *kwlist[] = {"weight", "bias",       "stride",     "padding", "dilation",
                             "groups", "activation", "batch_norm", "dtype",   NULL};
    PyObject *weight_obj, *bias_obj = Py_None, *stride_obj = NULL, *padding_obj = NULL,
                          *dilation_obj = NULL, *act_obj = Py_None, *bn_obj = Py_None,
                          *dtype_obj = Py_None;
    long long groups = 1;
    PyArrayObject *w = NULL, *b = NULL;
    dnnl_memory_desc_t user_md = NULL, any_md = NULL;
    dnnl_primitive_desc_t pd = NULL;
    float *wf = NULL; /* float32 weights, BatchNorm folded / bf16-rounded */
    int8_t *q = NULL; /* int8 weights before packing */
    tf_conv *self = NULL;
    tf_state *st = tf_state_of_type(type);
    if (st == NULL) {
        return NULL;
    }
    if (!TF_PARSE(st, args, kwds, fmt, kwlist, &weight_obj, &bias_obj, &stride_obj, &padding_obj,
                  &dilation_obj, &groups, &act_obj, &bn_obj, &dtype_obj)) {
        return NULL;
    }
    self = (tf_conv *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    pthread_mutex_init(&self->repack_lock, NULL);
    self->nsp = nsp;
    for (int i = 0; i < 2; i++) {
        self->kernel[i] = self->stride[i] = self->dilation[i] = 1;
    }
    if (tf_parse_activation(st, act_obj, &self->act) < 0 ||
        tf_parse_weight_dtype(st, dtype_obj, &self->wdt) < 0) {
        goto fail;
    }
    if ((w = tf_arg_f32(st, weight_obj, "weight", nsp + 2, nsp + 2)) == NULL ||
        tf_check_nonempty(st, w, "weight") < 0 || tf_check_finite(st, w, "weight") < 0) {
        goto fail;
    }
    const int64_t OC = PyArray_DIM(w, 0);
    int64_t Kw = PyArray_DIM(w, 1); /* weights per output channel: IC/G * prod(k) */
    for (int i = 0; i < nsp; i++) {
        self->kernel[i] = PyArray_DIM(w, 2 + i);
        Kw *= self->kernel[i];
    }
    if (groups < 1 || OC % groups != 0) {
        tf_value_error(st, "groups must be >= 1 and divide out_channels=%lld, got %lld",
                       (long long)OC, groups);
        goto fail;
    }
    self->groups = groups;
    self->out_channels = OC;
    self->in_channels = PyArray_DIM(w, 1) * groups;
    if ((stride_obj && parse_axes(st, stride_obj, "stride", nsp, 1, self->stride) < 0) ||
        (dilation_obj && parse_axes(st, dilation_obj, "dilation", nsp, 1, self->dilation) < 0) ||
        (padding_obj && parse_padding(st, padding_obj, self) < 0)) {
        goto fail;
    }
    if (bias_obj != Py_None) {
        if ((b = tf_arg_f32(st, bias_obj, "bias", 1, 1)) == NULL) {
            goto fail;
        }
        if (PyArray_DIM(b, 0) != OC) {
            tf_value_error(st, "bias has %" NPY_INTP_FMT " elements, expected out_channels=%lld",
                           PyArray_DIM(b, 0), (long long)OC);
            goto fail;
        }
        if (tf_check_finite(st, b, "bias") < 0) {
            goto fail;
        }
    }
    /* float32 copies of the weights and the bias, BatchNorm folded in */
    wf = tf_malloc((size_t)(OC * Kw) * sizeof(float));
    if (wf == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    memcpy(wf, PyArray_DATA(w), (size_t)(OC * Kw) * sizeof(float));
    if (b != NULL || bn_obj != Py_None) {
        self->bias = tf_malloc((size_t)OC * sizeof(float));
        if (self->bias == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
        for (int64_t o = 0; o < OC; o++) {
            self->bias[o] = b ? ((const float *)PyArray_DATA(b))[o] : 0.0f;
        }
    }
    if (bn_obj != Py_None && fold_batch_norm(st, bn_obj, OC, Kw, wf, self->bias) < 0) {
        goto fail;
    }
    for (int64_t i = 0; i < OC * Kw; i++) {
        if (!isfinite(wf[i])) {
            tf_value_error(st, "weight with batch_norm folded in is not finite (element %lld)",
                           (long long)i);
            goto fail;
        }
    }
    if (gemm_route(self)) {
        if (build_gemms(st, self, wf, dtype_obj) < 0) {
            goto fail;
        }
        self->qmax = ((const tf_linear *)self->gemm[0])->qmax;
        self->wunpack = 1.0f;
        tf_free(wf);
        Py_DECREF(w);
        Py_XDECREF(b);
        return (PyObject *)self;
    }
    self->bf16_emulated = self->wdt == dnnl_bf16 && !tf_bf16_supported();
    self->qmax = 127;
    self->wunpack = 1.0f;
    const dnnl_data_type_t pdt = self->bf16_emulated ? dnnl_f32 : self->wdt; /* packed */
    int64_t in_sp[2] = {1, 1}, out_sp[2] = {1, 1};
    packing_extents(self, in_sp);
    if (tf_conv_out_size(self, in_sp, out_sp) < 0) {
        tf_value_error(st, "the convolution geometry gives no output");
        goto fail;
    }
    if (tf_check_dnnl(st, weights_md(&any_md, self, pdt, 1), "describing packed weights") ||
        tf_check_dnnl(st, make_pd(&pd, self, 1, in_sp, out_sp, TF_POST_NONE, any_md),
                      "choosing the packed weight layout") ||
        tf_check_dnnl(st,
                      dnnl_memory_desc_clone(
                          &self->wmd, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0)),
                      "copying the packed weight layout") ||
        tf_check_dnnl(st, weights_md(&user_md, self, pdt == dnnl_s8 ? dnnl_s8 : dnnl_f32, 0),
                      "describing weights")) {
        goto fail;
    }
    const size_t wsize = dnnl_memory_desc_get_size(self->wmd);
    self->weights = tf_malloc(wsize);
    if (self->weights == NULL) {
        PyErr_Format(PyExc_MemoryError, "Conv: cannot allocate %zu bytes for packed weights",
                     wsize);
        goto fail;
    }
    if (self->wdt == dnnl_s8) {
        self->wscale = tf_malloc((size_t)OC * sizeof(float));
        q = tf_malloc((size_t)(OC * Kw));
        if (self->wscale == NULL || q == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
    }
    dnnl_status_t s;
    Py_BEGIN_ALLOW_THREADS tf_threads_begin();
    const void *user = wf;
    if (q != NULL) {
        tf_quantize_rows_s8(wf, OC, Kw, self->qmax, q, self->wscale);
        user = q;
    }
    else if (self->bf16_emulated) {
        tf_round_to_bf16(wf, wf, OC * Kw);
    }
    /* float32 -> bf16 packing rounds to nearest even, as tf_f32_to_bf16 does */
    s = tf_reorder(user_md, user, self->wmd, self->weights);
    if (s == dnnl_success && q != NULL) {
        /* What the packing stored: on CPUs without VNNI oneDNN halves s8 weights (its own
         * guard against vpmaddubsw's 16-bit saturation) and undoes it in the convolution.
         * The largest weight of a row quantizes to qmax; its packed value tells. */
        int8_t *back = tf_malloc((size_t)(OC * Kw));
        s = back == NULL ? dnnl_out_of_memory : tf_reorder(self->wmd, self->weights, user_md, back);
        for (int64_t i = 0; s == dnnl_success && i < OC * Kw; i++) {
            if (q[i] == self->qmax || q[i] == -self->qmax) {
                self->wunpack = (float)q[i] / (float)back[i];
                break;
            }
        }
        tf_free(back);
    }
    Py_END_ALLOW_THREADS if (tf_check_dnnl(st, s, "packing weights") < 0) goto fail;
    if (self->wunpack != 1.0f && self->wunpack != 2.0f) {
        /* 127 / 64: round to the factor oneDNN used */
        self->wunpack = self->wunpack > 1.5f ? 2.0f : 1.0f;
    }
    if (self->wunpack == 2.0f) {
        self->qmax = 64;
    }
    dnnl_primitive_desc_destroy(pd);
    dnnl_memory_desc_destroy(user_md);
    dnnl_memory_desc_destroy(any_md);
    tf_free(wf);
    tf_free(q);
    Py_DECREF(w);
    Py_XDECREF(b);
    return (PyObject *)self;
fail:
    if (pd) {
        dnnl_primitive_desc_destroy(pd);
    }
    if (user_md) {
        dnnl_memory_desc_destroy(user_md);
    }
    if (any_md) {
        dnnl_memory_desc_destroy(any_md);
    }
    tf_free(wf);
    tf_free(q);
    Py_XDECREF(w);
    Py_XDECREF(b);
    Py_XDECREF(self);
    return NULL;
}

static PyObject *
conv1d_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    return conv_new_nd(type, args, kwds, 1, "O|OOOOL$OOO:Conv1d");
}

static PyObject *
conv2d_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    return conv_new_nd(type, args, kwds, 2, "O|OOOOL$OOO:Conv2d");
}

static void
conv_dealloc(tf_conv *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (self->wmd) {
        dnnl_memory_desc_destroy(self->wmd);
    }
    if (self->repack_wmd) {
        dnnl_memory_desc_destroy(self->repack_wmd);
    }
    tf_free(self->repacked);
    pthread_mutex_destroy(&self->repack_lock);
    tf_free(self->weights);
    tf_free(self->bias);
    tf_free(self->wscale);
    for (int64_t g = 0; g < self->ngemm; g++) {
        Py_XDECREF(self->gemm[g]);
    }
    PyMem_Free(self->gemm);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* ------------------------------------------------------------------ call */

static const char *
layout_name(const tf_conv *c, int channels_last)
{
    return c->nsp == 1 ? (channels_last ? "(batch, length, channels)" : "(batch, channels, length)")
                       : (channels_last ? "(batch, height, width, channels)"
                                        : "(batch, channels, height, width)");
}

static PyObject *
conv_call(tf_conv *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"x", "residual", "channels_last", "out", NULL};
    PyObject *x_obj, *res_obj = Py_None, *out_obj = Py_None, *result = NULL;
    int channels_last = 0;
    PyArrayObject *x = NULL, *res = NULL, *out = NULL;
    tf_state *st = tf_state_of((PyObject *)self);
    tf_err err = {0};
    const int nsp = self->nsp, nd = nsp + 2;
    if (!TF_PARSE(st, args, kwds, nsp == 1 ? "O|O$pO:Conv1d.__call__" : "O|O$pO:Conv2d.__call__",
                  kwlist, &x_obj, &res_obj, &channels_last, &out_obj)) {
        return NULL;
    }
    if (PyArray_Check(x_obj) && PyArray_NDIM((PyArrayObject *)x_obj) != nd) {
        tf_value_error(st, "x must be %d-D %s, got %d dimensions (add a batch axis with x[None])",
                       nd, layout_name(self, channels_last), PyArray_NDIM((PyArrayObject *)x_obj));
        return NULL;
    }
    if ((x = tf_arg_f32(st, x_obj, "x", nd, nd)) == NULL) {
        return NULL;
    }
    const int caxis = channels_last ? nd - 1 : 1;
    const int64_t B = PyArray_DIM(x, 0);
    int64_t in_sp[2] = {1, 1}, out_sp[2] = {1, 1};
    for (int i = 0; i < nsp; i++) {
        in_sp[i] = PyArray_DIM(x, channels_last ? 1 + i : 2 + i);
    }
    if (PyArray_DIM(x, caxis) != self->in_channels) {
        char got[96];
        tf_shape_str(x, got, sizeof(got));
        tf_value_error(st,
                       "x has %" NPY_INTP_FMT " channels (shape %s read as %s), expected "
                       "in_channels=%lld%s",
                       PyArray_DIM(x, caxis), got, layout_name(self, channels_last),
                       (long long)self->in_channels,
                       channels_last ? "" : " (pass channels_last=True for channels-last maps)");
        goto done;
    }
    if (tf_check_nonempty(st, x, "x") < 0 || tf_check_finite(st, x, "x") < 0) {
        goto done;
    }
    if (tf_conv_out_size(self, in_sp, out_sp) < 0) {
        char got[96];
        tf_shape_str(x, got, sizeof(got));
        tf_value_error(st,
                       "x of shape %s is smaller than the kernel: each spatial extent plus "
                       "padding must be at least dilation * (kernel_size - 1) + 1 = %lld%s%lld",
                       got, (long long)(self->dilation[0] * (self->kernel[0] - 1) + 1),
                       nsp == 2 ? " x " : "",
                       nsp == 2 ? (long long)(self->dilation[1] * (self->kernel[1] - 1) + 1) : 0LL);
        goto done;
    }
    npy_intp dims[4];
    dims[0] = (npy_intp)B;
    dims[caxis] = (npy_intp)self->out_channels;
    for (int i = 0; i < nsp; i++) {
        dims[channels_last ? 1 + i : 2 + i] = (npy_intp)out_sp[i];
    }
    tf_post post = TF_POST_NONE;
    if (res_obj != Py_None) {
        if ((res = tf_arg_f32(st, res_obj, "residual", nd, nd)) == NULL) {
            goto done;
        }
        if (!PyArray_CompareLists(PyArray_DIMS(res), dims, nd)) {
            char got[96];
            tf_shape_str(res, got, sizeof(got));
            tf_value_error(st, "residual has shape %s; it must match the output shape", got);
            goto done;
        }
        if (tf_check_finite(st, res, "residual") < 0) {
            goto done;
        }
    }
    if ((out = tf_out_f32(st, out_obj, nd, dims)) == NULL ||
        tf_check_no_overlap(st, out, x, "x") < 0) {
        goto done;
    }
    if (res != NULL) {
        if (PyArray_DATA(res) == PyArray_DATA(out)) {
            post = TF_POST_ACCUM;
        }
        else {
            if (tf_check_no_overlap(st, out, res, "residual") < 0) {
                goto done;
            }
            post = TF_POST_ADD;
        }
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS tf_threads_begin();
    rc = tf_conv_forward(self, PyArray_DATA(x), channels_last, B, in_sp, PyArray_DATA(out), post,
                         post == TF_POST_ADD ? PyArray_DATA(res) : NULL, &err);
    Py_END_ALLOW_THREADS if (rc < 0)
    {
        tf_err_raise(st, &err);
        goto done;
    }
    result = Py_NewRef(out);
done:
    Py_XDECREF(x);
    Py_XDECREF(res);
    Py_XDECREF(out);
    return result;
}

/* ------------------------------------------------------------------ attributes */

static PyObject *
axes_tuple(const tf_conv *c, const int64_t *v)
{
    return c->nsp == 1 ? Py_BuildValue("(L)", (long long)v[0])
                       : Py_BuildValue("(LL)", (long long)v[0], (long long)v[1]);
}

static PyObject *
conv_get_kernel_size(tf_conv *self, void *closure)
{
    return axes_tuple(self, self->kernel);
}

static PyObject *
conv_get_stride(tf_conv *self, void *closure)
{
    return axes_tuple(self, self->stride);
}

static PyObject *
conv_get_dilation(tf_conv *self, void *closure)
{
    return axes_tuple(self, self->dilation);
}

/* (before, after) per spatial axis: ((top, bottom), (left, right)) for Conv2d. */
static PyObject *
conv_get_padding(tf_conv *self, void *closure)
{
    if (self->nsp == 1) {
        return Py_BuildValue("((LL))", (long long)self->pad_l[0], (long long)self->pad_r[0]);
    }
    return Py_BuildValue("((LL)(LL))", (long long)self->pad_l[0], (long long)self->pad_r[0],
                         (long long)self->pad_l[1], (long long)self->pad_r[1]);
}

/* The weights unpacked to torch's (OC, IC/G, k...) layout (int8 dequantized). */
static PyObject *
gemm_weight(tf_conv *self)
{
    npy_intp dims[4] = {(npy_intp)self->out_channels, (npy_intp)(self->in_channels / self->groups),
                        (npy_intp)self->kernel[0], (npy_intp)self->kernel[1]};
    PyArrayObject *w = (PyArrayObject *)PyArray_SimpleNew(self->nsp + 2, dims, NPY_FLOAT32);
    if (w == NULL) {
        return NULL;
    }
    const int64_t og = self->out_channels / self->ngemm, cg = dims[1];
    const int64_t taps = self->nsp == 2 ? self->kernel[0] * self->kernel[1] : self->kernel[0];
    float *d = PyArray_DATA(w);
    for (int64_t g = 0; g < self->ngemm; g++) {
        PyObject *wg = PyObject_GetAttrString(self->gemm[g], "weight"); /* (og, taps cg) */
        if (wg == NULL) {
            Py_DECREF(w);
            return NULL;
        }
        const float *v = PyArray_DATA((PyArrayObject *)wg);
        for (int64_t o = 0; o < og; o++) {
            for (int64_t t = 0; t < taps; t++) {
                for (int64_t ch = 0; ch < cg; ch++) {
                    d[((g * og + o) * cg + ch) * taps + t] = v[(o * taps + t) * cg + ch];
                }
            }
        }
        Py_DECREF(wg);
    }
    return (PyObject *)w;
}

static PyObject *
conv_get_weight(tf_conv *self, void *closure)
{
    if (self->ngemm > 0) {
        return gemm_weight(self);
    }
    tf_state *st = tf_state_of((PyObject *)self);
    dnnl_memory_desc_t md = NULL;
    npy_intp dims[4] = {(npy_intp)self->out_channels, (npy_intp)(self->in_channels / self->groups),
                        (npy_intp)self->kernel[0], (npy_intp)self->kernel[1]};
    PyArrayObject *w = (PyArrayObject *)PyArray_SimpleNew(self->nsp + 2, dims, NPY_FLOAT32);
    if (w == NULL) {
        return NULL;
    }
    dnnl_status_t s = weights_md(&md, self, dnnl_f32, 0);
    if (s == dnnl_success) {
        Py_BEGIN_ALLOW_THREADS s = tf_reorder(self->wmd, self->weights, md, PyArray_DATA(w));
        if (s == dnnl_success && self->wscale != NULL) {
            float *v = PyArray_DATA(w);
            const int64_t Kw = (int64_t)(PyArray_SIZE(w) / self->out_channels);
            for (int64_t o = 0; o < self->out_channels; o++) {
                for (int64_t k = 0; k < Kw; k++) {
                    v[o * Kw + k] *= self->wscale[o] * self->wunpack;
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

static PyObject *
conv_get_bias(tf_conv *self, void *closure)
{
    return tf_bias_copy(self->bias, self->out_channels);
}

static PyObject *
conv_get_activation(tf_conv *self, void *closure)
{
    if (self->act == TF_ACT_NONE) {
        Py_RETURN_NONE;
    }
    return PyUnicode_FromString(tf_act_names[self->act]);
}

static PyObject *
conv_get_dtype(tf_conv *self, void *closure)
{
    return PyUnicode_FromString(tf_weight_dtype_name(self->wdt));
}

static PyObject *
conv_get_quant_max(tf_conv *self, void *closure)
{
    if (self->wdt != dnnl_s8) {
        Py_RETURN_NONE;
    }
    return PyLong_FromLong(self->qmax);
}

static PyObject *
conv_get_implementation(tf_conv *self, void *closure)
{
    tf_state *st = tf_state_of((PyObject *)self);
    dnnl_primitive_desc_t pd = NULL;
    const char *impl = NULL;
    int64_t in_sp[2] = {1, 1}, out_sp[2] = {1, 1};
    if (self->ngemm > 0) {
        PyObject *lin = PyObject_GetAttrString(self->gemm[0], "implementation");
        PyObject *r = lin == NULL
                          ? NULL
                          : PyUnicode_FromFormat("gemm over im2col rows (%lld x Linear: %U)",
                                                 (long long)self->ngemm, lin);
        Py_XDECREF(lin);
        return r;
    }
    packing_extents(self, in_sp);
    tf_conv_out_size(self, in_sp, out_sp);
    if (tf_check_dnnl(st, make_pd(&pd, self, 1, in_sp, out_sp, TF_POST_NONE, self->wmd),
                      "querying the implementation") < 0) {
        return NULL;
    }
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    PyObject *r = PyUnicode_FromFormat("%s%s", impl ? impl : "unknown",
                                       self->bf16_emulated ? " (bf16-rounded float32)" : "");
    dnnl_primitive_desc_destroy(pd);
    return r;
}

static PyObject *
conv_repr(tf_conv *self)
{
    char geometry[160];
    if (self->nsp == 1) {
        snprintf(geometry, sizeof(geometry), "kernel_size=(%lld,), stride=(%lld,)",
                 (long long)self->kernel[0], (long long)self->stride[0]);
    }
    else {
        snprintf(geometry, sizeof(geometry), "kernel_size=(%lld, %lld), stride=(%lld, %lld)",
                 (long long)self->kernel[0], (long long)self->kernel[1], (long long)self->stride[0],
                 (long long)self->stride[1]);
    }
    return PyUnicode_FromFormat("%s(%lld, %lld, %s, groups=%lld, bias=%s, activation=%s, dtype=%s)",
                                self->nsp == 1 ? "Conv1d" : "Conv2d", (long long)self->in_channels,
                                (long long)self->out_channels, geometry, (long long)self->groups,
                                self->bias ? "True" : "False",
                                self->act == TF_ACT_NONE ? "None" : tf_act_names[self->act],
                                tf_weight_dtype_name(self->wdt));
}

static PyMemberDef conv_members[] = {
    {"in_channels", T_LONGLONG, offsetof(tf_conv, in_channels), READONLY, "IC: input channels."},
    {"out_channels", T_LONGLONG, offsetof(tf_conv, out_channels), READONLY, "OC: output channels."},
    {"groups", T_LONGLONG, offsetof(tf_conv, groups), READONLY,
     "G: channel groups (in_channels = out_channels = groups is depthwise)."},
    {NULL},
};

static PyGetSetDef conv_getset[] = {
    {"kernel_size", (getter)conv_get_kernel_size, NULL, "Kernel extent per spatial axis.", NULL},
    {"stride", (getter)conv_get_stride, NULL, "Stride per spatial axis.", NULL},
    {"dilation", (getter)conv_get_dilation, NULL, "Dilation per spatial axis (1 = dense).", NULL},
    {"padding", (getter)conv_get_padding, NULL, "Zero padding as (before, after) per spatial axis.",
     NULL},
    {"weight", (getter)conv_get_weight, NULL,
     "The weights as a new (out_channels, in_channels / groups, *kernel_size) float32 array\n"
     "(unpacked copy, BatchNorm folded in; int8: the dequantized values q * scale).",
     NULL},
    {"bias", (getter)conv_get_bias, NULL,
     "The bias (BatchNorm folded in) as a new float32 array, or None.", NULL},
    {"activation", (getter)conv_get_activation, NULL, "The fused activation, or None.", NULL},
    {"dtype", (getter)conv_get_dtype, NULL,
     "How the weights are stored and multiplied: 'float32', 'bfloat16' or 'int8'.", NULL},
    {"quant_max", (getter)conv_get_quant_max, NULL,
     "int8: the integer range [-quant_max, quant_max] the convolution multiplies with: 127,\n"
     "or 64 on CPUs without VNNI, where oneDNN stores the 8-bit weights halved (its guard\n"
     "against 16-bit saturation). None for float32 and bfloat16.",
     NULL},
    {"implementation", (getter)conv_get_implementation, NULL,
     "The oneDNN implementation chosen for the packed weights (e.g. 'brgconv:avx512_core'),\n"
     "or 'gemm over im2col rows (...)' for the geometries run as GEMMs (non-overlapping\n"
     "patches, large grouped kernels: docs/convolution.md).",
     NULL},
    {NULL},
};

#define CONV_DOC_BODY(DIMS, X_FIRST, X_LAST)                                                      \
    "weight is float32 (out_channels, in_channels / groups, " DIMS ") like torch.nn.Conv"         \
    ", packed once into oneDNN's blocked layout (the array is not kept). stride, padding and\n"   \
    "dilation are an int or one int per spatial axis; padding may also be 'valid' or 'same'\n"    \
    "(stride 1; an odd total puts the extra zero at the end, as torch does). groups splits the\n" \
    "channels (groups = in_channels = out_channels: depthwise). activation (None, 'gelu',\n"      \
    "'gelu_tanh', 'relu', 'silu', 'tanh'; HF spellings too) is fused into the convolution.\n"     \
    "batch_norm=(running_mean, running_var, weight, bias, eps) (weight, bias may be None) is\n"   \
    "an eval-mode BatchNorm after the convolution, folded into weight and bias at\n"              \
    "construction (in float64).\n\n"                                                              \
    "dtype='bfloat16' stores the weights as bfloat16 and rounds x to bfloat16 (float32\n"         \
    "accumulation and output); on CPUs without AVX512_BF16 the same rounded values run in a\n"    \
    "float32 convolution. dtype='int8' quantizes the weights per output channel and x per\n"      \
    "call with one scale for the whole tensor (symmetric), int32 accumulation, float32 output.\n" \
    "\n"                                                                                          \
    "Call: ``conv(x, residual=None, *, channels_last=False, out=None)``. x is float32\n"          \
    "C-contiguous " X_FIRST ", or with channels_last=True " X_LAST ": channels last is\n"         \
    "zero-copy (x read and the output written in place by oneDNN); channels first is\n"           \
    "reordered to channels last in scratch memory and back. The output has x's layout.\n"         \
    "residual (the output's shape) is added after the activation; out=residual accumulates in\n"  \
    "place."

PyDoc_STRVAR(conv1d_doc,
             "Conv1d(weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, "
             "activation=None, batch_norm=None, dtype='float32')\n--\n\n"
             "A 1-D convolution (torch.nn.Conv1d, e.g. Whisper's and wav2vec2's stems):\n"
             "``y = act(conv1d(x, weight) + bias)``, optionally plus a residual.\n\n" CONV_DOC_BODY(
                 "kernel)", "(batch, in_channels, length)", "(batch, length, in_channels)"));

PyDoc_STRVAR(conv2d_doc,
             "Conv2d(weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, "
             "activation=None, batch_norm=None, dtype='float32')\n--\n\n"
             "A 2-D convolution (torch.nn.Conv2d): ``y = act(conv2d(x, weight) + bias)``,\n"
             "optionally plus a residual.\n\n" CONV_DOC_BODY(
                 "kh, kw)", "(batch, in_channels, height, width)",
                 "(batch, height, width, in_channels)"));

static PyType_Slot conv1d_slots[] = {
    {Py_tp_new, conv1d_new},         {Py_tp_dealloc, conv_dealloc},
    {Py_tp_call, conv_call},         {Py_tp_repr, conv_repr},
    {Py_tp_members, conv_members},   {Py_tp_getset, conv_getset},
    {Py_tp_doc, (void *)conv1d_doc}, {0, NULL},
};

static PyType_Slot conv2d_slots[] = {
    {Py_tp_new, conv2d_new},         {Py_tp_dealloc, conv_dealloc},
    {Py_tp_call, conv_call},         {Py_tp_repr, conv_repr},
    {Py_tp_members, conv_members},   {Py_tp_getset, conv_getset},
    {Py_tp_doc, (void *)conv2d_doc}, {0, NULL},
};

PyType_Spec tf_conv1d_spec = {
    .name = "tfcore.Conv1d",
    .basicsize = sizeof(tf_conv),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = conv1d_slots,
};

PyType_Spec tf_conv2d_spec = {
    .name = "tfcore.Conv2d",
    .basicsize = sizeof(tf_conv),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = conv2d_slots,
};
