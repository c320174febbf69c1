/* tfcore.h — what every Python-aware file of tfcore._C shares: module state, the error API,
 * the engine and threads, NumPy glue and argument helpers (core/). The kernels' own header,
 * with the shape glossary, is kernels/kernel.h (included here).
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

#include "kernels/kernel.h"
#include "registry.h"

/* ------------------------------------------------------------------ module state */

typedef struct {
    /* Exceptions: TfcoreError is the root; the others also derive from the builtin
     * that describes what the caller did wrong. */
    PyObject *Error;       /* tfcore.TfcoreError(Exception) */
    PyObject *ValueError;  /* tfcore.TfcoreValueError(TfcoreError, ValueError) */
    PyObject *TypeError;   /* tfcore.TfcoreTypeError(TfcoreError, TypeError) */
    PyObject *OneDNNError; /* tfcore.OneDNNError(TfcoreError, RuntimeError) */

    /* One PyTypeObject *Name per type of registry.h, in its order. */
#define TF_STATE_FIELD(name, spec, file) PyTypeObject *name;
    TF_TYPES(TF_STATE_FIELD)
#undef TF_STATE_FIELD
} tf_state;

extern PyModuleDef tf_module_def;

/* The module state of the module that defined self's type (works for subclasses). */
tf_state *tf_state_of_type(PyTypeObject *type);
static inline tf_state *
tf_state_of(PyObject *self)
{
    return tf_state_of_type(Py_TYPE(self));
}
static inline tf_state *
tf_state_of_module(PyObject *module)
{
    return (tf_state *)PyModule_GetState(module);
}

/* The specs and method tables registry.h lists, defined in layers/ and functions/. */
#define TF_DECLARE_SPEC(name, spec, file) extern PyType_Spec spec;
TF_TYPES(TF_DECLARE_SPEC)
#undef TF_DECLARE_SPEC
#define TF_DECLARE_METHODS(table, file) extern PyMethodDef table[];
TF_FUNCTIONS(TF_DECLARE_METHODS)
#undef TF_DECLARE_METHODS

/* ------------------------------------------------------------------ errors */

/* tf_err, tf_err_kind and tf_err_set are in kernels/kernel.h. */
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
 * tfcore.threads(n) if any, else the global setting (tfcore.set_num_threads), else (nothing
 * explicit: no OMP_NUM_THREADS either) the CPUs other processes leave free (engine.c). */
int tf_num_threads(void);
/* 1 while the thread count adapts to other processes' load (nothing set explicitly). */
int tf_threads_adaptive(void);
/* Apply tf_num_threads() to OpenMP on the calling thread; call before every compute
 * section (oneDNN and tfcore's own OpenMP loops both read it). */
int tf_threads_begin(void);
/* tfcore.set_num_threads / tfcore.threads(n) (0 = none): -1 (nothing changed) for n > 1
 * in a process forked after OpenMP started, which can then run on one thread only. */
int tf_set_num_threads(int n);
int tf_set_thread_override(int n, int *prev);
/* Select the kernels' ISA level by name ("avx512", "avx2", "reference"; what = the setting's
 * name in messages): raises TfcoreValueError for an unknown name or a level this CPU lacks. */
int tf_isa_select_by_name(tf_state *st, const char *name, const char *what);

/* Per-thread context: a oneDNN stream and two growable scratch buffers. Valid until the
 * thread exits. Returns NULL (err filled) on allocation failure. */
typedef struct {
    dnnl_stream_t stream;
    void *scratch;
    size_t scratch_size;
    void *staging; /* tf_thread_staging's buffer */
    size_t staging_size;
} tf_thread_ctx;
tf_thread_ctx *tf_thread_ctx_get(tf_err *err);
/* Scratch of at least size bytes, 64-byte aligned, owned by the thread context. Only one
 * user at a time per thread: take it right before the oneDNN call that needs it. */
void *tf_thread_scratch(tf_thread_ctx *ctx, size_t size, tf_err *err);
/* A second per-thread buffer (same rules) for data a layer keeps across calls into other
 * layers, which take tf_thread_scratch themselves: Conv's GEMM route holds its
 * channels-last maps and im2col rows there while Linear runs. Reused, so large maps do not
 * pay fresh pages on every call. */
void *tf_thread_staging(tf_thread_ctx *ctx, size_t size, tf_err *err);

/* ------------------------------------------------------------------ NumPy glue (array.c) */

/* Human-readable dtype and shape for messages: "float64", "(2, 3, 7)". */
const char *tf_dtype_name(PyArrayObject *a);
void tf_shape_str(PyArrayObject *a, char *buf, size_t size);

/* obj as a float32, C-contiguous, aligned ndarray with min_ndim <= ndim <= max_ndim,
 * used in place (new reference, no copy). Anything else is refused with a message that
 * says what was expected, what was given and how to convert. */
PyArrayObject *tf_arg_f32(tf_state *st, PyObject *obj, const char *name, int min_ndim,
                          int max_ndim);
/* As tf_arg_f32; with allow_views the array may be any view whose last axis is contiguous
 * and whose other strides are positive (kernels that take strides read it in place). */
PyArrayObject *tf_arg_f32_view(tf_state *st, PyObject *obj, const char *name, int min_ndim,
                               int max_ndim, int allow_views);
/* Same for integer token ids (int32 or int64, any shape, C-contiguous). */
PyArrayObject *tf_arg_ids(tf_state *st, PyObject *obj, const char *name);
/* A beam-search reorder index (KVCache / RecurrentState.reorder): ids as tf_arg_ids, 1-D with
 * B entries, each in [0, B). */
PyArrayObject *tf_arg_beam_idx(tf_state *st, PyObject *obj, int64_t B);
/* Raises TfcoreValueError naming the first NaN/Inf (flat index) if any. */
int tf_check_finite(tf_state *st, PyArrayObject *a, const char *name);
/* An attention logit soft-cap argument: None -> 0 (none), else a finite number > 0. */
int tf_arg_softcap(tf_state *st, PyObject *obj, float *out);
/* Raises TfcoreValueError if a has a zero-sized dimension. */
int tf_check_nonempty(tf_state *st, PyArrayObject *a, const char *name);

/* The output array: a new float32 C-contiguous array of dims, or, if out is not None,
 * out itself after checking dtype, contiguity, writability and exact shape (new ref). */
PyArrayObject *tf_out_f32(tf_state *st, PyObject *out, int ndim, const npy_intp *dims);
/* Raises if the memory of out overlaps that of a (in-place use the op does not support). */
int tf_check_no_overlap(tf_state *st, PyArrayObject *out, PyArrayObject *a, const char *name);

/* Element stride of axis i of a float32 array, 0 for a size-1 axis (kernels broadcast it). */
static inline int64_t
tf_estride(PyArrayObject *a, int i)
{
    return PyArray_DIM(a, i) == 1 ? 0 : (int64_t)(PyArray_STRIDE(a, i) / PyArray_ITEMSIZE(a));
}

/* Element strides of a mask or bias array (1 to 4 dims, right-aligned, each of size 1 or
 * the full size) broadcast to (B, H, L, S) = full; a size-1 axis gets stride 0 (no copy).
 * Raises TfcoreValueError naming the shapes. */
int tf_attn_broadcast(tf_state *st, PyArrayObject *m, const char *name, const int64_t full[4],
                      int64_t strides[4]);

/* query/key/value/out of an attention function: a float32 view (tf_arg_f32_view with views
 * allowed) of min_ndim..max_ndim dims, not empty (new ref). */
PyArrayObject *tf_arg_qkv_view(tf_state *st, PyObject *obj, const char *name, int min_ndim,
                               int max_ndim);
/* Raises TfcoreValueError "name contains NaN or Inf" if a (a 3-D or 4-D view with a
 * contiguous last axis, or NULL = nothing to check) holds a non-finite value. */
int tf_check_finite_view(tf_state *st, PyArrayObject *a, const char *name);

/* Parse a Python int/None thread count etc. */
int tf_parse_activation(tf_state *st, PyObject *obj, int *act);

#endif /* TFCORE_H */
