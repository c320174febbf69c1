/* array.c — NumPy <-> kernel glue: argument checks that use buffers in place, output
 * allocation (or validation of a caller's out=), finiteness and overlap checks. */
#include "tfcore.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

const char *
tf_dtype_name(PyArrayObject *a)
{
    static _Thread_local char buf[32];
    PyArray_Descr *d = PyArray_DESCR(a);
    PyObject *s = PyObject_Str((PyObject *)d);
    if (s == NULL) {
        PyErr_Clear();
        return "?";
    }
    const char *u = PyUnicode_AsUTF8(s);
    snprintf(buf, sizeof(buf), "%s", u ? u : "?");
    if (u == NULL) {
        PyErr_Clear();
    }
    Py_DECREF(s);
    return buf;
}

void
tf_shape_str(PyArrayObject *a, char *buf, size_t size)
{
    int nd = PyArray_NDIM(a);
    size_t used = (size_t)snprintf(buf, size, "(");
    for (int i = 0; i < nd && used < size; i++) {
        used += (size_t)snprintf(buf + used, size - used, "%s%" NPY_INTP_FMT, i ? ", " : "",
                                 PyArray_DIM(a, i));
    }
    if (used < size) {
        snprintf(buf + used, size - used, nd == 1 ? ",)" : ")");
    }
}

static const char *
type_name(PyObject *obj)
{
    return Py_TYPE(obj)->tp_name;
}

PyArrayObject *
tf_arg_f32_view(tf_state *st, PyObject *obj, const char *name, int min_ndim, int max_ndim,
                int allow_views)
{
    if (!PyArray_Check(obj)) {
        return (PyArrayObject *)tf_type_error(st, "%s must be a numpy.ndarray of float32, got %s",
                                              name, type_name(obj));
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    if (PyArray_TYPE(a) != NPY_FLOAT32) {
        return (PyArrayObject *)tf_type_error(
            st, "%s must have dtype float32, got %s (convert once with x.astype(np.float32))", name,
            tf_dtype_name(a));
    }
    int nd = PyArray_NDIM(a);
    if (nd < min_ndim || nd > max_ndim) {
        char shape[96];
        tf_shape_str(a, shape, sizeof(shape));
        if (min_ndim == max_ndim) {
            return (PyArrayObject *)tf_value_error(
                st, "%s must have %d dimensions, got %d with shape %s", name, min_ndim, nd, shape);
        }
        return (PyArrayObject *)tf_value_error(
            st, "%s must have %d to %d dimensions, got %d with shape %s", name, min_ndim, max_ndim,
            nd, shape);
    }
    int ok = PyArray_ISALIGNED(a);
    if (!allow_views) {
        ok = ok && PyArray_IS_C_CONTIGUOUS(a);
    }
    else if (PyArray_SIZE(a) > 0) { /* NumPy gives empty arrays zero strides */
        /* last axis contiguous, the others any positive whole-element strides (an axis of
         * size 0 or 1 has no meaningful stride; empty arrays are the caller's to refuse) */
        ok = ok && (nd == 0 || PyArray_DIM(a, nd - 1) <= 1 || PyArray_STRIDE(a, nd - 1) == 4);
        for (int i = 0; ok && i < nd - 1; i++) {
            npy_intp s = PyArray_STRIDE(a, i);
            ok = PyArray_DIM(a, i) <= 1 || (s > 0 && s % 4 == 0);
        }
    }
    if (!ok) {
        if (allow_views) {
            return (PyArrayObject *)tf_value_error(
                st,
                "%s must have a contiguous last axis and positive strides (views such as "
                "x.transpose(0, 2, 1, 3) are fine; pass np.ascontiguousarray(%s) otherwise)",
                name, name);
        }
        return (PyArrayObject *)tf_value_error(
            st,
            "%s must be C-contiguous and aligned (tfcore uses buffers in place); "
            "pass np.ascontiguousarray(%s)",
            name, name);
    }
    Py_INCREF(a);
    return a;
}

PyArrayObject *
tf_arg_f32(tf_state *st, PyObject *obj, const char *name, int min_ndim, int max_ndim)
{
    return tf_arg_f32_view(st, obj, name, min_ndim, max_ndim, 0);
}

PyArrayObject *
tf_arg_ids(tf_state *st, PyObject *obj, const char *name)
{
    if (!PyArray_Check(obj)) {
        return (PyArrayObject *)tf_type_error(
            st, "%s must be a numpy.ndarray of int64 or int32, got %s", name, type_name(obj));
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    int t = PyArray_TYPE(a);
    if (!(PyArray_ISINTEGER(a) && (PyArray_ITEMSIZE(a) == 8 || PyArray_ITEMSIZE(a) == 4) &&
          (t == NPY_INT64 || t == NPY_INT32 || t == NPY_LONG || t == NPY_LONGLONG ||
           t == NPY_INT))) {
        return (PyArrayObject *)tf_type_error(st, "%s must have dtype int64 or int32, got %s", name,
                                              tf_dtype_name(a));
    }
    if (!PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISALIGNED(a)) {
        return (PyArrayObject *)tf_value_error(
            st, "%s must be C-contiguous; pass np.ascontiguousarray(%s)", name, name);
    }
    Py_INCREF(a);
    return a;
}

PyArrayObject *
tf_arg_beam_idx(tf_state *st, PyObject *obj, int64_t B)
{
    PyArrayObject *idx = tf_arg_ids(st, obj, "beam_idx");
    if (idx == NULL) {
        return NULL;
    }
    if (PyArray_NDIM(idx) != 1 || PyArray_DIM(idx, 0) != B) {
        tf_value_error(st, "beam_idx must be 1-D with batch_size=%lld entries", (long long)B);
        Py_DECREF(idx);
        return NULL;
    }
    for (npy_intp i = 0; i < B; i++) {
        long long v = PyArray_ITEMSIZE(idx) == 8 ? ((int64_t *)PyArray_DATA(idx))[i]
                                                 : ((int32_t *)PyArray_DATA(idx))[i];
        if (v < 0 || v >= B) {
            tf_value_error(st, "beam_idx holds %lld, outside [0, %lld)", v, (long long)B);
            Py_DECREF(idx);
            return NULL;
        }
    }
    return idx;
}

int
tf_check_nonempty(tf_state *st, PyArrayObject *a, const char *name)
{
    if (PyArray_SIZE(a) == 0) {
        char shape[96];
        tf_shape_str(a, shape, sizeof(shape));
        tf_value_error(st, "%s is empty (shape %s)", name, shape);
        return -1;
    }
    return 0;
}

int
tf_arg_softcap(tf_state *st, PyObject *obj, float *out)
{
    *out = 0.0f;
    if (obj == NULL || obj == Py_None) {
        return 0;
    }
    if (PyBool_Check(obj) || !(PyFloat_Check(obj) || PyLong_Check(obj))) {
        tf_type_error(st, "softcap must be a number > 0 or None, got %s", Py_TYPE(obj)->tp_name);
        return -1;
    }
    const double c = PyFloat_AsDouble(obj);
    if (c == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    if (!(c > 0.0) || !isfinite(c) || c > 3.0e38) {
        tf_value_error(st, "softcap must be a finite number > 0 (or None for no capping), got %g",
                       c);
        return -1;
    }
    *out = (float)c;
    return 0;
}

int
tf_check_finite(tf_state *st, PyArrayObject *a, const char *name)
{
    const float *x = PyArray_DATA(a);
    const int64_t n = PyArray_SIZE(a);
    int64_t bad;
    Py_BEGIN_ALLOW_THREADS tf_threads_begin();
    bad = tf_first_nonfinite(x, n);
    Py_END_ALLOW_THREADS if (bad >= 0)
    {
        tf_value_error(st, "%s contains %s at flat index %lld (tfcore refuses non-finite inputs)",
                       name, isnan(x[bad]) ? "NaN" : "Inf", (long long)bad);
        return -1;
    }
    return 0;
}

PyArrayObject *
tf_out_f32(tf_state *st, PyObject *out, int ndim, const npy_intp *dims)
{
    if (out == NULL || out == Py_None) {
        return (PyArrayObject *)PyArray_SimpleNew(ndim, (npy_intp *)dims, NPY_FLOAT32);
    }
    if (!PyArray_Check(out)) {
        return (PyArrayObject *)tf_type_error(st, "out must be a numpy.ndarray, got %s",
                                              type_name(out));
    }
    PyArrayObject *a = (PyArrayObject *)out;
    if (PyArray_TYPE(a) != NPY_FLOAT32) {
        return (PyArrayObject *)tf_type_error(st, "out must have dtype float32, got %s",
                                              tf_dtype_name(a));
    }
    int same = PyArray_NDIM(a) == ndim;
    for (int i = 0; same && i < ndim; i++) {
        same = PyArray_DIM(a, i) == dims[i];
    }
    if (!same) {
        char got[96], want[96] = "(";
        tf_shape_str(a, got, sizeof(got));
        size_t used = 1;
        for (int i = 0; i < ndim && used < sizeof(want); i++) {
            used += (size_t)snprintf(want + used, sizeof(want) - used, "%s%" NPY_INTP_FMT,
                                     i ? ", " : "", dims[i]);
        }
        if (used < sizeof(want)) {
            snprintf(want + used, sizeof(want) - used, ndim == 1 ? ",)" : ")");
        }
        return (PyArrayObject *)tf_value_error(st, "out has shape %s, expected %s", got, want);
    }
    if (!PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISALIGNED(a)) {
        return (PyArrayObject *)tf_value_error(st, "out must be C-contiguous and aligned");
    }
    if (!PyArray_ISWRITEABLE(a)) {
        return (PyArrayObject *)tf_value_error(st, "out is read-only");
    }
    Py_INCREF(a);
    return a;
}

int
tf_check_no_overlap(tf_state *st, PyArrayObject *out, PyArrayObject *a, const char *name)
{
    if (a == NULL) {
        return 0;
    }
    const char *o0 = PyArray_BYTES(out), *o1 = o0 + PyArray_NBYTES(out);
    const char *a0 = PyArray_BYTES(a), *a1 = a0 + PyArray_NBYTES(a);
    if (o0 < a1 && a0 < o1) {
        tf_value_error(st, "out must not share memory with %s for this op", name);
        return -1;
    }
    return 0;
}

int
tf_parse_activation(tf_state *st, PyObject *obj, int *act)
{
    if (obj == NULL || obj == Py_None) {
        *act = TF_ACT_NONE;
        return 0;
    }
    if (!PyUnicode_Check(obj)) {
        tf_type_error(st, "activation must be a str or None, got %s", type_name(obj));
        return -1;
    }
    const char *s = PyUnicode_AsUTF8(obj);
    if (s == NULL) {
        return -1;
    }
    /* HF spellings map onto the four kernels. */
    static const struct {
        const char *name;
        int act;
    } aliases[] = {
        {"none", TF_ACT_NONE},           {"identity", TF_ACT_NONE},
        {"linear", TF_ACT_NONE},         {"gelu", TF_ACT_GELU},
        {"gelu_erf", TF_ACT_GELU},       {"gelu_tanh", TF_ACT_GELU_TANH},
        {"gelu_new", TF_ACT_GELU_TANH},  {"gelu_pytorch_tanh", TF_ACT_GELU_TANH},
        {"gelu_fast", TF_ACT_GELU_TANH}, {"relu", TF_ACT_RELU},
        {"silu", TF_ACT_SILU},           {"swish", TF_ACT_SILU},
        {"tanh", TF_ACT_TANH},
    };
    for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++) {
        if (strcmp(s, aliases[i].name) == 0) {
            *act = aliases[i].act;
            return 0;
        }
    }
    tf_value_error(st,
                   "unknown activation '%s' (expected one of: gelu, gelu_tanh, relu, silu, tanh, "
                   "none; HF aliases gelu_new, gelu_pytorch_tanh, swish accepted)",
                   s);
    return -1;
}

int
tf_attn_broadcast(tf_state *st, PyArrayObject *m, const char *name, const int64_t full[4],
                  int64_t strides[4])
{
    int nd = PyArray_NDIM(m);
    char shape[96];
    if (nd < 1 || nd > 4) {
        tf_shape_str(m, shape, sizeof(shape));
        tf_value_error(st,
                       "%s with shape %s has %d dimensions; expected 1 to 4 broadcasting to "
                       "(batch, heads, query, key) = (%lld, %lld, %lld, %lld)",
                       name, shape, nd, (long long)full[0], (long long)full[1], (long long)full[2],
                       (long long)full[3]);
        return -1;
    }
    for (int d = 0; d < 4; d++) {
        strides[d] = 0;
    }
    for (int i = 0; i < nd; i++) {
        int d = 4 - nd + i;
        npy_intp n = PyArray_DIM(m, i);
        if (n != 1 && n != full[d]) {
            tf_shape_str(m, shape, sizeof(shape));
            tf_value_error(st,
                           "%s with shape %s does not broadcast to (batch, heads, query, key) = "
                           "(%lld, %lld, %lld, %lld)",
                           name, shape, (long long)full[0], (long long)full[1], (long long)full[2],
                           (long long)full[3]);
            return -1;
        }
        npy_intp s = PyArray_STRIDE(m, i);
        if (n != 1 && (s < 0 || s % PyArray_ITEMSIZE(m) != 0)) {
            tf_value_error(st, "%s must have non-negative, element-aligned strides", name);
            return -1;
        }
        strides[d] = tf_estride(m, i);
    }
    return 0;
}

PyArrayObject *
tf_arg_qkv_view(tf_state *st, PyObject *obj, const char *name, int min_ndim, int max_ndim)
{
    PyArrayObject *a = tf_arg_f32_view(st, obj, name, min_ndim, max_ndim, 1);
    if (a != NULL && tf_check_nonempty(st, a, name) < 0) {
        Py_CLEAR(a);
    }
    return a;
}

int
tf_check_finite_view(tf_state *st, PyArrayObject *a, const char *name)
{
    int ok;
    if (a == NULL) {
        return 0;
    }
    const int o = PyArray_NDIM(a) - 3; /* 3-D views are one batch item */
    Py_BEGIN_ALLOW_THREADS ok = tf_rows_finite(
        PyArray_DATA(a), o ? tf_estride(a, 0) : 0, tf_estride(a, o), tf_estride(a, o + 1),
        o ? PyArray_DIM(a, 0) : 1, PyArray_DIM(a, o), PyArray_DIM(a, o + 1), PyArray_DIM(a, o + 2));
    Py_END_ALLOW_THREADS if (!ok)
    {
        tf_value_error(st, "%s contains NaN or Inf (tfcore refuses non-finite inputs)", name);
        return -1;
    }
    return 0;
}
