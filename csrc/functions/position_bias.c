/* position_bias.c — tfcore.functional.t5_relative_position_bucket and alibi_slopes: the
 * kernels of kernels/attention/position_bias.c on NumPy arrays (tests compare them with HF). */
#include "tfcore.h"
#include "kernels/attention/position_bias.h"

static PyObject *
py_t5_bucket(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"relative_position", "bidirectional", "num_buckets", "max_distance",
                             NULL};
    PyObject *rel_obj;
    int bidirectional = 1;
    long long num_buckets = 32, max_distance = 128;
    tf_state *st = tf_state_of_module(module);
    if (!TF_PARSE(st, args, kwds, "O|$pLL:t5_relative_position_bucket", kwlist, &rel_obj,
                  &bidirectional, &num_buckets, &max_distance)) {
        return NULL;
    }
    tf_err err = {0};
    if (tf_t5_check_config(num_buckets, max_distance, bidirectional, "", &err) < 0) {
        tf_err_raise(st, &err);
        return NULL;
    }
    PyArrayObject *rel = tf_arg_ids(st, rel_obj, "relative_position");
    if (rel == NULL) {
        return NULL;
    }
    PyArrayObject *out =
        (PyArrayObject *)PyArray_SimpleNew(PyArray_NDIM(rel), PyArray_DIMS(rel), NPY_INT64);
    if (out != NULL) {
        const npy_intp n = PyArray_SIZE(rel);
        const int wide = PyArray_ITEMSIZE(rel) == 8;
        int64_t *o = PyArray_DATA(out);
        for (npy_intp i = 0; i < n; i++) {
            const int64_t r = wide ? ((const int64_t *)PyArray_DATA(rel))[i]
                                   : ((const int32_t *)PyArray_DATA(rel))[i];
            o[i] = tf_t5_bucket(r, bidirectional, num_buckets, max_distance);
        }
    }
    Py_DECREF(rel);
    return (PyObject *)out;
}

static PyObject *
py_alibi_slopes(PyObject *module, PyObject *arg)
{
    tf_state *st = tf_state_of_module(module);
    long long H = PyLong_AsLongLong(arg);
    if (H == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return tf_type_error(st, "num_heads must be an int");
    }
    if (H < 1 || H > (1 << 20)) {
        return tf_value_error(st, "num_heads must be in [1, 2^20], got %lld", H);
    }
    npy_intp dims[1] = {(npy_intp)H};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(1, dims, NPY_FLOAT32);
    if (out != NULL) {
        tf_alibi_slopes(H, PyArray_DATA(out));
    }
    return (PyObject *)out;
}

PyDoc_STRVAR(
    t5_bucket_doc,
    "t5_relative_position_bucket($module, relative_position, *, bidirectional=True, "
    "num_buckets=32,\n"
    "                            max_distance=128)\n--\n\n"
    "T5's bucket of each relative position (key position - query position), int64 array of\n"
    "the same shape: exact buckets for small distances, logarithmic ones up to max_distance\n"
    "(HF T5Attention._relative_position_bucket, same float32 arithmetic). MultiHeadAttention\n"
    "(relative_attention_bias=...) computes these inside the attention kernel.");

PyDoc_STRVAR(
    alibi_slopes_doc,
    "alibi_slopes($module, num_heads, /)\n--\n\n"
    "ALiBi's per-head slopes (num_heads,) float32, as HF BLOOM builds them (a geometric series\n"
    "2^(-8/n); head counts that are not powers of 2 interleave a second series).\n"
    "MultiHeadAttention(alibi=True) adds slope * (key - query) inside the attention kernel.");

PyMethodDef tf_position_bias_methods[] = {
    {"t5_relative_position_bucket", (PyCFunction)(void (*)(void))py_t5_bucket,
     METH_VARARGS | METH_KEYWORDS, t5_bucket_doc},
    {"alibi_slopes", py_alibi_slopes, METH_O, alibi_slopes_doc},
    {NULL, NULL, 0, NULL},
};
