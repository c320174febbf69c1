/* tfcore.h — shared declarations of the tfcore._C extension.
 *
 * Shape glossary used in every kernel's shape comment:
 *   B    batch size
 *   T    tokens (sequence length of the current input); L = query length, S = key length
 *   M    rows fed to a GEMM (usually B*T)
 *   C    hidden size (model width);  K = GEMM input features, N = GEMM output features
 *   H    query heads;  KVH = key/value heads (H % KVH == 0, GQA group = H / KVH)
 *   D    head dimension;  Dv = value head dimension
 *   F    feed-forward inner size
 *   V    vocabulary size
 *   Hh, Ww  feature-map height and width (Swin); ws = window side, N = ws * ws window tokens
 *
 * Conventions:
 *   - Functions returning PyObject* return NULL with an exception set; int returns 0 / -1.
 *   - Compute runs with the GIL released. Code that runs without the GIL reports failure
 *     through a tf_err (filled in, never raised) and the caller raises it afterwards.
 *   - Every oneDNN primitive uses a user scratchpad (dnnl_scratchpad_mode_user) taken
 *     from the calling thread's context, so objects can be called from many threads.
 */
#ifndef TFCORE_H
#define TFCORE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define PY_ARRAY_UNIQUE_SYMBOL tfcore_ARRAY_API
#ifndef TFCORE_IMPORT_ARRAY
#define NO_IMPORT_ARRAY
#endif
#include <numpy/arrayobject.h>
#include <structmember.h>

#include <oneapi/dnnl/dnnl.h>
#include <stdint.h>

/* ------------------------------------------------------------------ module state */

typedef struct {
    /* Exceptions: TfcoreError is the root; the others also derive from the builtin
     * that describes what the caller did wrong. */
    PyObject *Error;        /* tfcore.TfcoreError(Exception) */
    PyObject *ValueError;   /* tfcore.TfcoreValueError(TfcoreError, ValueError) */
    PyObject *TypeError;    /* tfcore.TfcoreTypeError(TfcoreError, TypeError) */
    PyObject *OneDNNError;  /* tfcore.OneDNNError(TfcoreError, RuntimeError) */

    PyTypeObject *Linear;
    PyTypeObject *LayerNorm;
    PyTypeObject *RMSNorm;
    PyTypeObject *Embedding;
    PyTypeObject *FeedForward;
    PyTypeObject *MultiHeadAttention;
    PyTypeObject *TransformerBlock;
    PyTypeObject *KVCache;
    PyTypeObject *WindowAttention;
    PyTypeObject *SwinLayer;
} tf_state;

extern PyModuleDef tf_module_def;

/* The module state of the module that defined self's type (works for subclasses). */
tf_state *tf_state_of_type(PyTypeObject *type);
static inline tf_state *tf_state_of(PyObject *self) { return tf_state_of_type(Py_TYPE(self)); }
static inline tf_state *tf_state_of_module(PyObject *module) { return (tf_state *)PyModule_GetState(module); }

/* Each op family registers its types / functions into the module (module.c calls them). */
int tf_register_linear(PyObject *module, tf_state *st);
int tf_register_norm(PyObject *module, tf_state *st);
int tf_register_embedding(PyObject *module, tf_state *st);
int tf_register_act(PyObject *module, tf_state *st);
int tf_register_posenc(PyObject *module, tf_state *st);
int tf_register_attention(PyObject *module, tf_state *st);
int tf_register_ffn(PyObject *module, tf_state *st);
int tf_register_mha(PyObject *module, tf_state *st);
int tf_register_block(PyObject *module, tf_state *st);
int tf_register_convert(PyObject *module, tf_state *st);
int tf_register_kvcache(PyObject *module, tf_state *st);
int tf_register_posbias(PyObject *module, tf_state *st);
int tf_register_longformer(PyObject *module, tf_state *st);
int tf_register_block_sparse(PyObject *module, tf_state *st);
int tf_register_window_attention(PyObject *module, tf_state *st);
int tf_register_swin_layer(PyObject *module, tf_state *st);

/* Add a heap type built from spec to the module and store it in *slot. */
int tf_add_type(PyObject *module, PyType_Spec *spec, PyObject *base, PyTypeObject **slot);

/* ------------------------------------------------------------------ errors */

typedef enum {
    TF_OK = 0,
    TF_ERR_VALUE,   /* raised as TfcoreValueError */
    TF_ERR_TYPE,    /* raised as TfcoreTypeError */
    TF_ERR_MEMORY,  /* raised as MemoryError */
    TF_ERR_ONEDNN,  /* raised as OneDNNError */
} tf_err_kind;

/* An error recorded where the GIL is not held. */
typedef struct {
    tf_err_kind kind;
    char msg[320];
} tf_err;

void tf_err_set(tf_err *err, tf_err_kind kind, const char *fmt, ...);
/* Records a oneDNN failure; returns 0 if status is success, -1 otherwise. */
int tf_err_dnnl(tf_err *err, dnnl_status_t status, const char *what);
/* Raises err (GIL held). Always returns -1. */
int tf_err_raise(tf_state *st, const tf_err *err);

/* Raise helpers (GIL held). Return NULL / -1 for convenient `return tf_value_error(...)`. */
PyObject *tf_value_error(tf_state *st, const char *fmt, ...);
PyObject *tf_type_error(tf_state *st, const char *fmt, ...);

/* PyArg_ParseTupleAndKeywords whose failures are tfcore's errors too (TypeError becomes
 * TfcoreTypeError, OverflowError TfcoreValueError, same message), so every exception a
 * call raises is a TfcoreError. */
#define TF_PARSE(st, ...) tf_args_parsed((st), PyArg_ParseTupleAndKeywords(__VA_ARGS__))
int tf_args_parsed(tf_state *st, int ok);
int tf_check_dnnl(tf_state *st, dnnl_status_t status, const char *what);
const char *tf_dnnl_status_str(dnnl_status_t status);

/* ------------------------------------------------------------------ engine, threads */

/* The process-wide CPU engine (created at module init; never destroyed). */
dnnl_engine_t tf_engine(void);
int tf_engine_init(tf_state *st);

/* Threads used by the next compute call on this thread: the per-thread override set by
 * tfcore.threads(n) if any, else the global setting (tfcore.set_num_threads). */
int tf_num_threads(void);
/* Apply tf_num_threads() to OpenMP on the calling thread; call before every compute
 * section (oneDNN and tfcore's own OpenMP loops both read it). */
int tf_threads_begin(void);

/* Per-thread context: a oneDNN stream and a growable scratch buffer. Valid until the
 * thread exits. Returns NULL (err filled) on allocation failure. */
typedef struct {
    dnnl_stream_t stream;
    void *scratch;
    size_t scratch_size;
} tf_thread_ctx;
tf_thread_ctx *tf_thread_ctx_get(tf_err *err);
/* Scratch of at least size bytes, 64-byte aligned, owned by the thread context. Only one
 * user at a time per thread: take it right before the oneDNN call that needs it. */
void *tf_thread_scratch(tf_thread_ctx *ctx, size_t size, tf_err *err);

/* dst (n,) bf16 bits = src (n,) float32 rounded to nearest even (convert.c). */
void tf_f32_to_bf16(const float *src, uint16_t *dst, int64_t n);
void tf_bf16_to_f32(const uint16_t *src, float *dst, int64_t n);  /* exact */

/* 64-byte aligned allocation for kernel temporaries; tf_free(NULL) is fine. */
void *tf_malloc(size_t size);
void tf_free(void *p);

/* CPU features of the hand-written kernels' fast paths (runtime dispatch). */
int tf_cpu_has_avx512(void);  /* avx512f + avx512bw + avx512vl + avx512dq */
/* Force the plain reference path of hand-written kernels (testing): 0 = auto, 1 = reference. */
extern int tf_force_reference;

/* ------------------------------------------------------------------ NumPy glue (array.c) */

/* Human-readable dtype and shape for messages: "float64", "(2, 3, 7)". */
const char *tf_dtype_name(PyArrayObject *a);
void tf_shape_str(PyArrayObject *a, char *buf, size_t size);

/* obj as a float32, C-contiguous, aligned ndarray with min_ndim <= ndim <= max_ndim,
 * used in place (new reference, no copy). Anything else is refused with a message that
 * says what was expected, what was given and how to convert. */
PyArrayObject *tf_arg_f32(tf_state *st, PyObject *obj, const char *name, int min_ndim, int max_ndim);
/* As tf_arg_f32; with allow_views the array may be any view whose last axis is contiguous
 * and whose other strides are positive (kernels that take strides read it in place). */
PyArrayObject *tf_arg_f32_view(tf_state *st, PyObject *obj, const char *name, int min_ndim,
                               int max_ndim, int allow_views);
/* Same for integer token ids (int32 or int64, any shape, C-contiguous). */
PyArrayObject *tf_arg_ids(tf_state *st, PyObject *obj, const char *name);
/* Raises TfcoreValueError naming the first NaN/Inf (flat index) if any. */
int tf_check_finite(tf_state *st, PyArrayObject *a, const char *name);
/* Raises TfcoreValueError if a has a zero-sized dimension. */
int tf_check_nonempty(tf_state *st, PyArrayObject *a, const char *name);

/* The output array: a new float32 C-contiguous array of dims, or, if out is not None,
 * out itself after checking dtype, contiguity, writability and exact shape (new ref). */
PyArrayObject *tf_out_f32(tf_state *st, PyObject *out, int ndim, const npy_intp *dims);
/* Raises if the memory of out overlaps that of a (in-place use the op does not support). */
int tf_check_no_overlap(tf_state *st, PyArrayObject *out, PyArrayObject *a, const char *name);

/* Parse a Python int/None thread count etc. */
int tf_parse_activation(tf_state *st, PyObject *obj, int *act);

/* ------------------------------------------------------------------ shared kernels */

/* Activations applied elementwise by hand-written kernels and mapped to oneDNN
 * eltwise post-ops by Linear. */
typedef enum {
    TF_ACT_NONE = 0,
    TF_ACT_GELU,       /* exact: 0.5 x (1 + erf(x / sqrt 2)) */
    TF_ACT_GELU_TANH,  /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
    TF_ACT_RELU,
    TF_ACT_SILU,       /* x * sigmoid(x) */
    TF_ACT_TANH,       /* tanh(x) (BERT's pooler) */
    TF_ACT_COUNT
} tf_act;
extern const char *const tf_act_names[TF_ACT_COUNT];

#endif /* TFCORE_H */
