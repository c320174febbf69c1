/* linear.h — the Linear type's C-level API, used by FeedForward, MultiHeadAttention and
 * TransformerBlock to run projections without the GIL. */
#ifndef TFCORE_LAYERS_LINEAR_H
#define TFCORE_LAYERS_LINEAR_H

#include "core/rows.h"
#include "kernels/q4.h"

/* Linear's int4 dtype (layers/linear_int4.c): 4-bit weights in kernels/q4.h's layout. oneDNN
 * has no such type; this value of wdt marks it. */
#define TF_WDT_INT4 ((dnnl_data_type_t)(dnnl_data_type_max - 1))
/* dtype='int4' groups this many inputs per scale and offset unless group_size says */
#define TF_INT4_DEFAULT_GROUP 128

/* y = act(x Wᵀ + b) (op) other, computed by one oneDNN matmul with post-ops. */
typedef struct {
    PyObject_HEAD int64_t in_features; /* K */
    int64_t out_features;              /* N */
    int act;                           /* tf_act, fused as an eltwise post-op */
    dnnl_data_type_t wdt;              /* dnnl_f32; dnnl_bf16 (rows rounded to bf16 too); or dnnl_s8
                                 * (rows quantized per token, int8 GEMM, s32 accumulation) */
    dnnl_memory_desc_t wmd;            /* packed weights layout chosen by oneDNN (M-independent) */
    void *weights;                     /* packed weights, owned */
    float *bias;                       /* (N,) owned copy, or NULL */
    float *wscale;                     /* (N,) per-output-channel scales of s8 weights, else NULL */
    int32_t *wsum;        /* (N,) Σ_k of each s8 weight column (tf_gemv_s8), else NULL */
    int64_t panel_stride; /* elements between 64-column panels for tf_gemv(_s8); 0: none */
    int64_t panel_ld;     /* elements between the k rows of a panel (plain rows: N) */
    int wtrans;           /* float32 weights as (N, K) rows, panel_ld apart (oneDNN's AVX2 layout,
                           * see linear.c) */
    int own_panels;       /* bf16 / int8 weights in tfcore's 64-column panels (kernels/gemv.h),
                           * wmd NULL: a CPU without AVX512_BF16 / VNNI (linear.c) */
    int qmax;             /* int8: weights in [-qmax, qmax]: 127, or 63 without VNNI */
    size_t wmapped;       /* bytes of weights when they are a weight-cache file mapping
                           * (core/weight_cache.c); 0: weights is tf_malloc'd */
    int64_t group;        /* int4: inputs per group; weights holds the nibbles (q4.h) */
    float *q4d, *q4m;     /* int4: (N, ldg) scales and offsets, W = d q + m */
} tf_linear;

/* x is (M, K), other is (M, N) or NULL, y is (M, N); all row-major, rows contiguous.
 * Call without the GIL after tf_threads_begin(). 0 / -1 with err filled. */
int tf_linear_forward(const tf_linear *lin, const float *x, int64_t M, float *y, tf_post post,
                      const float *other, tf_err *err);

/* A Linear built from arrays through the Linear type (the same checks users get); on
 * failure the exception message is prefixed with what ("up projection: ..."). */
tf_linear *tf_linear_build(tf_state *st, PyObject *weight, PyObject *bias, int act, int transposed,
                           PyObject *dtype, const char *what);

/* Parse a weight dtype argument: None/'float32' -> dnnl_f32, 'bfloat16' -> dnnl_bf16,
 * 'int8' -> dnnl_s8 (every dtype runs on every CPU; tf_bf16_supported / tf_int8_supported
 * say which are native). 0 / -1 with an exception. */
int tf_parse_weight_dtype(tf_state *st, PyObject *obj, dnnl_data_type_t *dt);

/* Does oneDNN have a native (non-reference) bf16 / int8 matmul on this CPU? Cached. */
int tf_bf16_supported(void);
int tf_int8_supported(void);

/* The oneDNN eltwise post-op (algorithm, alpha) of activation act; 0 for TF_ACT_NONE.
 * Shared with Conv1d / Conv2d (layers/conv.c). */
int tf_act_eltwise(int act, dnnl_alg_kind_t *alg, float *alpha);

/* Reorder src (user memory described by src_md) into dst (dst_md) with a one-off primitive on
 * a stream of its own: weight packing and unpacking of the layers that own packed weights
 * (Linear, Conv). Callable without the GIL. */
dnnl_status_t tf_reorder(const_dnnl_memory_desc_t src_md, const void *src,
                         const_dnnl_memory_desc_t dst_md, void *dst);

/* "float32", "bfloat16" or "int8": the name of a weight dtype, as the dtype= arguments take it. */
const char *tf_weight_dtype_name(dnnl_data_type_t wdt);

/* A layer's bias getter: a new (n,) float32 copy of v, or None when v is NULL. */
PyObject *tf_bias_copy(const float *v, int64_t n);

/* int4 (layers/linear_int4.c). Parse dtype 'int4' / 'int4_g<group>' and group_size: 1 with
 * *group set, 0 when dtype is not int4 (group_size must then be None), -1 with an exception. */
int tf_parse_int4_dtype(tf_state *st, PyObject *dtype, PyObject *group_obj, int64_t *group);
/* Allocate weights (nibbles), q4d and q4m for (N, K) in groups (zeroed scales): 0 / -1 with
 * MemoryError. */
int tf_linear_int4_alloc(tf_linear *self, int64_t N, int64_t K, int64_t group);
/* The kernel arguments of an int4 Linear. */
tf_q4_args tf_linear_int4_args(const tf_linear *lin);
/* tf_linear_forward for int4 weights (call without the GIL). */
int tf_linear_int4_forward(const tf_linear *lin, const float *x, int64_t M, float *y, tf_post post,
                           const float *other, tf_err *err);

/* Linear.from_int4 (classmethod; see its docstring in linear.c). */
PyObject *tf_linear_from_int4(PyObject *cls, PyObject *args, PyObject *kwds);

/* A copy of int4 Linear src with bias (None or an (N,) array) and act: an int4 Linear given
 * where a weight array is expected (tf_linear_build). NULL with an exception. */
tf_linear *tf_linear_int4_rebuild(tf_state *st, const tf_linear *src, PyObject *bias_obj, int act,
                                  int transposed, const char *what);
/* int4 Linears' rows stacked into one new int4 Linear (fused projections); new reference. */
PyObject *tf_linear_int4_concat(tf_state *st, PyObject *const *parts, int n, const char *what);

/* Borrowed check: is obj a Linear (or subclass)? */
int tf_linear_check(tf_state *st, PyObject *obj);

#endif /* TFCORE_LAYERS_LINEAR_H */
