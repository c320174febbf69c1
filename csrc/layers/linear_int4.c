/* linear_int4.c — Linear's int4 dtype: 4-bit group-quantized weights (kernels/q4.h).
 *
 * Weights are quantized once, at construction (round to nearest per row and group of
 * `group_size` inputs, min/max: W ≈ d q + m), or taken already quantized from a checkpoint
 * (Linear.from_int4), and kept in q4.h's nibble layout: 4 bits per weight plus a float32
 * scale and offset per group (group 128: 4.5 bits per weight, against 8 for int8).
 *
 * Calls:
 * - up to TF_Q4_MAX_M (32) rows (decoding, short prompts): each row quantized to int8 per group (the weights'),
 *   the integer dot products of kernels/q4.c (nibbles unpacked in registers) accumulated in
 *   int32 over a group, dequantized once per group in float32. The bytes a decode step
 *   streams are the 4-bit ones and the group scales and offsets.
 * - more rows (prefill): a slice of output rows dequantized to float32 at a time into the
 *   calling thread's scratch (bounded: SLICE_BYTES), then oneDNN's float32 matmul on that
 *   slice writes those columns of y with the bias, activation and post-op fused. The
 *   dequantization costs K N operations per call against the GEMM's 2 M K N (M > 32).
 *   The primitives come from oneDNN's primitive cache per call, as linear.c's: measured
 *   with ONEDNN_VERBOSE at AVX2, a hit costs ~0.01 ms against 3-13 ms of matmul for
 *   100 x 576 x 1536, so keeping them in the object (and its thread/thread-count rules)
 *   would not show; the matmul itself runs at fp32 speed (the prefill's limit here).
 */
#include "layers/linear.h"
#include "kernels/q4.h"

#include <string.h>

/* Bytes of dequantized weights per slice: wide enough that oneDNN sees a real GEMM, small
 * enough to stay near the caches and keep the scratch frugal. */
#define SLICE_BYTES (4 << 20)

/* Row stride of a dequantized slice: K rounded to an odd multiple of 16 floats (a multiple of
 * 2 KiB makes oneDNN's reads of consecutive rows collide in the same cache sets; linear.c). */
static int64_t
slice_ld(int64_t K)
{
    int64_t ld = (K + 15) / 16 * 16;
    return (ld / 16) % 2 == 0 ? ld + 16 : ld;
}

tf_q4_args
tf_linear_int4_args(const tf_linear *lin)
{
    tf_q4_args a = {
        .q = lin->weights,
        .d = lin->q4d,
        .m = lin->q4m,
        .K = lin->in_features,
        .N = lin->out_features,
        .group = lin->group,
        .bias = lin->bias,
        .act = (tf_act)lin->act,
    };
    return a;
}

int
tf_linear_int4_alloc(tf_linear *self, int64_t N, int64_t K, int64_t group)
{
    const int64_t Kp = tf_q4_kpad(K), ldg = tf_q4_groups(Kp, group);
    self->group = group;
    self->weights = tf_malloc((size_t)(N * Kp / 2));
    self->q4d = tf_malloc((size_t)(N * ldg) * sizeof(float));
    self->q4m = tf_malloc((size_t)(N * ldg) * sizeof(float));
    if (self->weights == NULL || self->q4d == NULL || self->q4m == NULL) {
        PyErr_Format(PyExc_MemoryError, "Linear: cannot allocate the int4 weights (%lld x %lld)",
                     (long long)N, (long long)K);
        return -1;
    }
    memset(self->q4d, 0, (size_t)(N * ldg) * sizeof(float));
    memset(self->q4m, 0, (size_t)(N * ldg) * sizeof(float));
    return 0;
}

/* The oneDNN matmul of one slice: x (M, K) times the slice's (nc, K) float32 rows (ld floats
 * apart, i.e. (K, nc) with strides (1, ld)) into columns of y (M, N), bias (1, nc) and the
 * activation and post-op (other: (M, nc) with row stride N) fused. */
static dnnl_status_t
slice_pd(dnnl_primitive_desc_t *pd, int64_t M, int64_t K, int64_t nc, int64_t N, int64_t ld,
         int has_bias, int act, tf_post post)
{
    dnnl_memory_desc_t src = NULL, wei = NULL, dst = NULL, bias = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    dnnl_dims_t sdims = {M, K}, wdims = {K, nc}, wstrides = {1, ld}, ddims = {M, nc},
                dstrides = {N, 1}, bdims = {1, nc};
    dnnl_alg_kind_t alg;
    float alpha;
    dnnl_status_t s;
    if ((s = dnnl_memory_desc_create_with_tag(&src, 2, sdims, dnnl_f32, dnnl_ab)) ||
        (s = dnnl_memory_desc_create_with_strides(&wei, 2, wdims, dnnl_f32, wstrides)) ||
        (s = dnnl_memory_desc_create_with_strides(&dst, 2, ddims, dnnl_f32, dstrides)) ||
        (has_bias && (s = dnnl_memory_desc_create_with_tag(&bias, 2, bdims, dnnl_f32, dnnl_ab))) ||
        (s = dnnl_primitive_attr_create(&attr)) ||
        (s = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user)) ||
        (s = dnnl_post_ops_create(&ops))) {
        goto done;
    }
    if (tf_act_eltwise(act, &alg, &alpha) &&
        (s = dnnl_post_ops_append_eltwise(ops, alg, alpha, 0.0f))) {
        goto done;
    }
    if ((post == TF_POST_ADD && (s = dnnl_post_ops_append_binary(ops, dnnl_binary_add, dst))) ||
        (post == TF_POST_MUL && (s = dnnl_post_ops_append_binary(ops, dnnl_binary_mul, dst))) ||
        (post == TF_POST_ACCUM &&
         (s = dnnl_post_ops_append_sum(ops, 1.0f, 0, dnnl_data_type_undef)))) {
        goto done;
    }
    if ((s = dnnl_primitive_attr_set_post_ops(attr, ops))) {
        goto done;
    }
    s = dnnl_matmul_primitive_desc_create(pd, tf_engine(), src, wei, bias, dst, attr);
done:
    if (ops) {
        dnnl_post_ops_destroy(ops);
    }
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

/* Many rows: a slice of dequantized weights at a time through oneDNN (header). */
static int
int4_prefill(const tf_linear *lin, const float *x, int64_t M, float *y, tf_post post,
             const float *other, tf_err *err)
{
    const int64_t K = lin->in_features, N = lin->out_features, ld = slice_ld(K);
    int64_t nc = SLICE_BYTES / (ld * (int64_t)sizeof(float)) / 64 * 64;
    nc = nc < 64 ? 64 : nc;
    nc = nc < N ? nc : N;
    const int64_t last = N - (N - 1) / nc * nc; /* width of the last slice */
    const tf_q4_args a = tf_linear_int4_args(lin);
    dnnl_primitive_desc_t pd[2] = {NULL, NULL};
    dnnl_primitive_t prim[2] = {NULL, NULL};
    dnnl_memory_t m_src = NULL, m_wei = NULL, m_dst = NULL, m_bias = NULL, m_other = NULL,
                  m_scratch = NULL;
    int rc = -1;
    tf_thread_ctx *ctx = tf_thread_ctx_get(err);
    if (ctx == NULL) {
        return -1;
    }
    size_t sp_size = 0;
    for (int i = 0; i < (last == nc ? 1 : 2); i++) { /* a second width only if the last differs */
        if (tf_err_dnnl(err,
                        slice_pd(&pd[i], M, K, i == 0 ? nc : last, N, ld, lin->bias != NULL,
                                 lin->act, post),
                        "creating the int4 slice matmul primitive descriptor") ||
            tf_err_dnnl(err, dnnl_primitive_create(&prim[i], pd[i]),
                        "creating the int4 slice matmul primitive")) {
            goto done;
        }
        const size_t sz = dnnl_memory_desc_get_size(
            dnnl_primitive_desc_query_md(pd[i], dnnl_query_scratchpad_md, 0));
        sp_size = sz > sp_size ? sz : sp_size;
    }
    const size_t wbytes = ((size_t)(nc * ld) * sizeof(float) + 63) & ~(size_t)63;
    char *scratch = tf_thread_scratch(ctx, wbytes + sp_size, err);
    if (scratch == NULL) {
        goto done;
    }
    float *block = (float *)scratch;
    for (int64_t n0 = 0; n0 < N; n0 += nc) {
        const int i = N - n0 < nc ? 1 : 0;
        const int64_t w = i ? last : nc;
        tf_q4_dequantize(&a, n0, w, block, ld);
        const_dnnl_memory_desc_t src_md = dnnl_primitive_desc_query_md(pd[i], dnnl_query_src_md, 0);
        const_dnnl_memory_desc_t wei_md =
            dnnl_primitive_desc_query_md(pd[i], dnnl_query_weights_md, 0);
        const_dnnl_memory_desc_t dst_md = dnnl_primitive_desc_query_md(pd[i], dnnl_query_dst_md, 0);
        const_dnnl_memory_desc_t sp_md =
            dnnl_primitive_desc_query_md(pd[i], dnnl_query_scratchpad_md, 0);
        dnnl_exec_arg_t args[6];
        int nargs = 0;
        if (tf_err_dnnl(err, dnnl_memory_create(&m_src, src_md, tf_engine(), (void *)x),
                        "wrapping x") ||
            tf_err_dnnl(err, dnnl_memory_create(&m_wei, wei_md, tf_engine(), block),
                        "wrapping the dequantized weights") ||
            tf_err_dnnl(err, dnnl_memory_create(&m_dst, dst_md, tf_engine(), y + n0),
                        "wrapping the output") ||
            tf_err_dnnl(err, dnnl_memory_create(&m_scratch, sp_md, tf_engine(), scratch + wbytes),
                        "wrapping the scratchpad")) {
            goto done;
        }
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, m_src};
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, m_wei};
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_DST, m_dst};
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, m_scratch};
        if (lin->bias != NULL) {
            const_dnnl_memory_desc_t b_md =
                dnnl_primitive_desc_query_md(pd[i], dnnl_query_weights_md, 1);
            if (tf_err_dnnl(err, dnnl_memory_create(&m_bias, b_md, tf_engine(), lin->bias + n0),
                            "wrapping bias")) {
                goto done;
            }
            args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, m_bias};
        }
        if (post == TF_POST_ADD || post == TF_POST_MUL) {
            const int index = tf_act_eltwise(lin->act, &(dnnl_alg_kind_t){0}, &(float){0}) ? 1 : 0;
            if (tf_err_dnnl(err,
                            dnnl_memory_create(&m_other, dst_md, tf_engine(), (void *)(other + n0)),
                            "wrapping the post-op operand")) {
                goto done;
            }
            args[nargs++] =
                (dnnl_exec_arg_t){DNNL_ARG_ATTR_MULTIPLE_POST_OP(index) | DNNL_ARG_SRC_1, m_other};
        }
        if (tf_err_dnnl(err, dnnl_primitive_execute(prim[i], ctx->stream, nargs, args),
                        "running the int4 slice matmul") ||
            tf_err_dnnl(err, dnnl_stream_wait(ctx->stream), "waiting for matmul")) {
            goto done;
        }
        dnnl_memory_t *ms[] = {&m_src, &m_wei, &m_dst, &m_bias, &m_other, &m_scratch};
        for (size_t j = 0; j < sizeof(ms) / sizeof(ms[0]); j++) {
            if (*ms[j]) {
                dnnl_memory_destroy(*ms[j]);
                *ms[j] = NULL;
            }
        }
    }
    rc = 0;
done:;
    dnnl_memory_t ms[] = {m_src, m_wei, m_dst, m_bias, m_other, m_scratch};
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
tf_linear_int4_forward(const tf_linear *lin, const float *x, int64_t M, float *y, tf_post post,
                       const float *other, tf_err *err)
{
    if (M > TF_Q4_MAX_M) {
        return int4_prefill(lin, x, M, y, post, other, err);
    }
    const int64_t K = lin->in_features, Kp = tf_q4_kpad(K);
    const int64_t ldg = tf_q4_groups(Kp, lin->group);
    tf_thread_ctx *ctx = tf_thread_ctx_get(err);
    if (ctx == NULL) {
        return -1;
    }
    /* [xq (M, Kp) int8 | sx (M, ldg) | xsum (M, ldg)] */
    const size_t xbytes = ((size_t)(M * Kp) + 63) & ~(size_t)63;
    const size_t sbytes = ((size_t)(M * ldg) * sizeof(float) + 63) & ~(size_t)63;
    char *scratch =
        tf_thread_scratch(ctx, xbytes + sbytes + (size_t)(M * ldg) * sizeof(float), err);
    if (scratch == NULL) {
        return -1;
    }
    int8_t *xq = (int8_t *)scratch;
    float *sx = (float *)(scratch + xbytes), *xsum = (float *)(scratch + xbytes + sbytes);
    const tf_q4_args a = tf_linear_int4_args(lin);
    tf_q4_quantize_x(x, M, K, lin->group, xq, sx, xsum);
    tf_q4_gemv(&a, xq, sx, xsum, M, y, post, other);
    return 0;
}

int
tf_parse_int4_dtype(tf_state *st, PyObject *dtype, PyObject *group_obj, int64_t *group)
{
    *group = 0;
    const char *name = dtype != NULL && PyUnicode_Check(dtype) ? PyUnicode_AsUTF8(dtype) : NULL;
    if (name == NULL) {
        PyErr_Clear();
    }
    long g = 0;
    if (name != NULL && strcmp(name, "int4") == 0) {
        g = TF_INT4_DEFAULT_GROUP;
    }
    else if (name != NULL && strncmp(name, "int4_g", 6) == 0) {
        char *end = NULL;
        g = strtol(name + 6, &end, 10);
        if (end == name + 6 || *end != '\0') {
            tf_value_error(
                st, "dtype '%s': expected 'int4' or 'int4_g<group size>' (e.g. 'int4_g32')", name);
            return -1;
        }
    }
    if (group_obj != NULL && group_obj != Py_None) {
        if (!PyLong_Check(group_obj) || PyBool_Check(group_obj)) {
            tf_type_error(st, "group_size must be an int, got %s", Py_TYPE(group_obj)->tp_name);
            return -1;
        }
        const long gs = PyLong_AsLong(group_obj);
        if (gs == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (g == 0) {
            tf_value_error(st, "group_size applies to dtype='int4' only, got dtype %s",
                           name ? name : "float32");
            return -1;
        }
        if (name != NULL && strcmp(name, "int4") != 0 && gs != g) {
            tf_value_error(st, "dtype '%s' and group_size=%ld disagree", name, gs);
            return -1;
        }
        g = gs;
    }
    if (g == 0) {
        return 0; /* not int4 */
    }
    if (g != 32 && g != 64 && g != 128 && g != 256) {
        tf_value_error(st, "int4 group_size must be 32, 64, 128 or 256, got %ld", g);
        return -1;
    }
    *group = g;
    return 1;
}

/* Linear.from_int4(values, scales, offsets, bias=None, activation=None, *, group_size): a
 * Linear of already quantized 4-bit weights W[n, k] = scales[n, g] values[n, k] + offsets[n, g]
 * (a GGUF, GPTQ or AWQ checkpoint's, converted to that form by the caller). */
PyObject *
tf_linear_from_int4(PyObject *cls, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"values",     "scales",     "offsets", "bias",
                             "activation", "group_size", NULL};
    PyObject *v_obj, *d_obj, *m_obj, *bias_obj = Py_None, *act_obj = Py_None, *group_obj = NULL;
    PyArrayObject *v = NULL, *d = NULL, *m = NULL, *b = NULL;
    tf_linear *self = NULL;
    PyTypeObject *type = (PyTypeObject *)cls;
    tf_state *st = tf_state_of_type(type);
    int act;
    int64_t group = 0;
    if (st == NULL) {
        return NULL;
    }
    if (!TF_PARSE(st, args, kwds, "OOO|OO$O:Linear.from_int4", kwlist, &v_obj, &d_obj, &m_obj,
                  &bias_obj, &act_obj, &group_obj)) {
        return NULL;
    }
    if (group_obj == NULL) {
        tf_type_error(st, "Linear.from_int4 needs group_size= (32, 64, 128 or 256)");
        return NULL;
    }
    if (tf_parse_activation(st, act_obj, &act) < 0) {
        return NULL;
    }
    PyObject *int4_name = PyUnicode_FromString("int4");
    const int ok = int4_name != NULL ? tf_parse_int4_dtype(st, int4_name, group_obj, &group) : -1;
    Py_XDECREF(int4_name);
    if (ok < 0) {
        return NULL;
    }
    if (!PyArray_Check(v_obj) || PyArray_TYPE((PyArrayObject *)v_obj) != NPY_UINT8) {
        tf_type_error(st, "values must be a uint8 array of 4-bit integers 0..15, got %s",
                      PyArray_Check(v_obj) ? tf_dtype_name((PyArrayObject *)v_obj)
                                           : Py_TYPE(v_obj)->tp_name);
        return NULL;
    }
    v = (PyArrayObject *)PyArray_FROM_OTF(v_obj, NPY_UINT8, NPY_ARRAY_IN_ARRAY);
    if (v == NULL) {
        goto fail;
    }
    if (PyArray_NDIM(v) != 2 || PyArray_DIM(v, 0) == 0 || PyArray_DIM(v, 1) == 0) {
        tf_value_error(
            st,
            "values must be a non-empty 2-D (out_features, in_features) array, got %d dimensions",
            PyArray_NDIM(v));
        goto fail;
    }
    const int64_t N = PyArray_DIM(v, 0), K = PyArray_DIM(v, 1);
    const uint8_t *vals = PyArray_DATA(v);
    for (int64_t i = 0; i < N * K; i++) {
        if (vals[i] > 15) {
            tf_value_error(st, "values must be 4-bit integers 0..15, values[%lld, %lld] is %d",
                           (long long)(i / K), (long long)(i % K), (int)vals[i]);
            goto fail;
        }
    }
    const int64_t G = (K + group - 1) / group;
    PyArrayObject **gs[2] = {&d, &m};
    PyObject *gobj[2] = {d_obj, m_obj};
    const char *gname[2] = {"scales", "offsets"};
    for (int i = 0; i < 2; i++) {
        if ((*gs[i] = tf_arg_f32(st, gobj[i], gname[i], 2, 2)) == NULL) {
            goto fail;
        }
        if (PyArray_DIM(*gs[i], 0) != N || PyArray_DIM(*gs[i], 1) != G) {
            tf_value_error(st,
                           "%s has shape (%lld, %lld), expected (out_features, ceil(in_features / "
                           "group_size)) = (%lld, %lld)",
                           gname[i], (long long)PyArray_DIM(*gs[i], 0),
                           (long long)PyArray_DIM(*gs[i], 1), (long long)N, (long long)G);
            goto fail;
        }
        if (tf_check_finite(st, *gs[i], gname[i]) < 0) {
            goto fail;
        }
    }
    if (bias_obj != Py_None) {
        if ((b = tf_arg_f32(st, bias_obj, "bias", 1, 1)) == NULL) {
            goto fail;
        }
        if (PyArray_DIM(b, 0) != N) {
            tf_value_error(st, "bias has %lld elements, expected out_features=%lld",
                           (long long)PyArray_DIM(b, 0), (long long)N);
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
    self->wdt = TF_WDT_INT4;
    self->qmax = 127;
    if (tf_linear_int4_alloc(self, N, K, group) < 0) {
        goto fail;
    }
    const int64_t ldg = tf_q4_groups(tf_q4_kpad(K), group);
    const float *dd = PyArray_DATA(d), *mm = PyArray_DATA(m);
    for (int64_t n = 0; n < N; n++) {
        memcpy(self->q4d + n * ldg, dd + n * G, (size_t)G * sizeof(float));
        memcpy(self->q4m + n * ldg, mm + n * G, (size_t)G * sizeof(float));
    }
    Py_BEGIN_ALLOW_THREADS tf_threads_begin();
    tf_q4_pack(vals, N, K, self->weights);
    Py_END_ALLOW_THREADS if (b != NULL)
    {
        self->bias = tf_malloc((size_t)N * sizeof(float));
        if (self->bias == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
        memcpy(self->bias, PyArray_DATA(b), (size_t)N * sizeof(float));
    }
    Py_DECREF(v);
    Py_DECREF(d);
    Py_DECREF(m);
    Py_XDECREF(b);
    return (PyObject *)self;
fail:
    Py_XDECREF(v);
    Py_XDECREF(d);
    Py_XDECREF(m);
    Py_XDECREF(b);
    Py_XDECREF(self);
    return NULL;
}

/* A new int4 Linear holding a copy of src's 4-bit weights with its own bias and activation:
 * how FeedForward / MultiHeadAttention take an int4 Linear given in place of a weight array
 * (a checkpoint's 4-bit weights kept as they are, tf_linear_build). */
tf_linear *
tf_linear_int4_rebuild(tf_state *st, const tf_linear *src, PyObject *bias_obj, int act,
                       int transposed, const char *what)
{
    PyArrayObject *b = NULL;
    if (src->wdt != TF_WDT_INT4) {
        tf_type_error(st,
                      "%s: a Linear is accepted as a weight only with 4-bit (int4) weights, got "
                      "a %s Linear (pass its weight array)",
                      what, tf_weight_dtype_name(src->wdt));
        return NULL;
    }
    if (transposed) {
        tf_value_error(st,
                       "%s: an int4 Linear as a weight is (out, in) already: transposed=True "
                       "does not apply",
                       what);
        return NULL;
    }
    const int64_t N = src->out_features, K = src->in_features;
    if (bias_obj != NULL && bias_obj != Py_None) {
        if ((b = tf_arg_f32(st, bias_obj, "bias", 1, 1)) == NULL) {
            return NULL;
        }
        if (PyArray_DIM(b, 0) != N || tf_check_finite(st, b, "bias") < 0) {
            if (!PyErr_Occurred()) {
                tf_value_error(st, "%s: bias has %lld elements, expected out_features=%lld", what,
                               (long long)PyArray_DIM(b, 0), (long long)N);
            }
            Py_DECREF(b);
            return NULL;
        }
    }
    if (src->bias != NULL && b != NULL) {
        Py_DECREF(b);
        tf_value_error(st, "%s: the int4 Linear has a bias already; pass bias=None", what);
        return NULL;
    }
    tf_linear *self = (tf_linear *)st->Linear->tp_alloc(st->Linear, 0);
    if (self == NULL) {
        Py_XDECREF(b);
        return NULL;
    }
    self->in_features = K;
    self->out_features = N;
    self->act = act;
    self->wdt = TF_WDT_INT4;
    self->qmax = 127;
    if (tf_linear_int4_alloc(self, N, K, src->group) < 0) {
        goto fail;
    }
    const int64_t Kp = tf_q4_kpad(K), ldg = tf_q4_groups(Kp, src->group);
    memcpy(self->weights, src->weights, (size_t)(N * Kp / 2));
    memcpy(self->q4d, src->q4d, (size_t)(N * ldg) * sizeof(float));
    memcpy(self->q4m, src->q4m, (size_t)(N * ldg) * sizeof(float));
    const float *bias = b != NULL ? (const float *)PyArray_DATA(b) : src->bias;
    if (bias != NULL) {
        if ((self->bias = tf_malloc((size_t)N * sizeof(float))) == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
        memcpy(self->bias, bias, (size_t)N * sizeof(float));
    }
    Py_XDECREF(b);
    return self;
fail:
    Py_XDECREF(b);
    Py_DECREF(self);
    return NULL;
}

/* The rows of n int4 Linears stacked into one (a fused q/k/v projection): the same
 * in_features and group, no bias (the caller fuses the biases). New reference. */
PyObject *
tf_linear_int4_concat(tf_state *st, PyObject *const *parts, int n, const char *what)
{
    int64_t N = 0, K = 0, group = 0;
    for (int i = 0; i < n; i++) {
        if (!tf_linear_check(st, parts[i]) || ((tf_linear *)parts[i])->wdt != TF_WDT_INT4) {
            return tf_type_error(st, "%s: give all as int4 Linears or all as arrays", what);
        }
        const tf_linear *p = (const tf_linear *)parts[i];
        if (i == 0) {
            K = p->in_features;
            group = p->group;
        }
        if (p->in_features != K || p->group != group) {
            return tf_value_error(st,
                                  "%s: int4 Linears of %lld inputs (group %lld) and %lld inputs "
                                  "(group %lld) cannot be fused",
                                  what, (long long)K, (long long)group, (long long)p->in_features,
                                  (long long)p->group);
        }
        if (p->bias != NULL || p->act != TF_ACT_NONE) {
            return tf_value_error(
                st, "%s: int4 Linears to fuse must have no bias and no activation", what);
        }
        N += p->out_features;
    }
    tf_linear *self = (tf_linear *)st->Linear->tp_alloc(st->Linear, 0);
    if (self == NULL) {
        return NULL;
    }
    self->in_features = K;
    self->out_features = N;
    self->act = TF_ACT_NONE;
    self->wdt = TF_WDT_INT4;
    self->qmax = 127;
    if (tf_linear_int4_alloc(self, N, K, group) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    const int64_t Kp = tf_q4_kpad(K), ldg = tf_q4_groups(Kp, group);
    int64_t row = 0;
    for (int i = 0; i < n; i++) {
        const tf_linear *p = (const tf_linear *)parts[i];
        const int64_t r = p->out_features;
        memcpy((uint8_t *)self->weights + row * (Kp / 2), p->weights, (size_t)(r * Kp / 2));
        memcpy(self->q4d + row * ldg, p->q4d, (size_t)(r * ldg) * sizeof(float));
        memcpy(self->q4m + row * ldg, p->q4m, (size_t)(r * ldg) * sizeof(float));
        row += r;
    }
    return (PyObject *)self;
}
