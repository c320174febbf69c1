/* bfloat16.c — bfloat16_to_float32 / float32_to_bfloat16: NumPy has no bf16 dtype, so bf16
 * travels as uint16 bits (checkpoint loading, tfcore convert). Kernels: kernels/bfloat16.c. */
#include "tfcore.h"
#include "kernels/bfloat16.h"

static PyObject *
py_bfloat16_to_float32(PyObject *module, PyObject *arg)
{
    tf_state *st = tf_state_of_module(module);
    if (!PyArray_Check(arg)) {
        return tf_type_error(st, "expected a numpy.ndarray of uint16 bfloat16 bits, got %s",
                             Py_TYPE(arg)->tp_name);
    }
    PyArrayObject *src = (PyArrayObject *)arg;
    if (PyArray_TYPE(src) != NPY_UINT16) {
        return tf_type_error(st, "bfloat16 data must be given as uint16 bits, got %s",
                             tf_dtype_name(src));
    }
    if (!PyArray_IS_C_CONTIGUOUS(src) || !PyArray_ISALIGNED(src)) {
        return tf_value_error(st, "bfloat16 data must be C-contiguous and aligned");
    }
    PyArrayObject *dst =
        (PyArrayObject *)PyArray_SimpleNew(PyArray_NDIM(src), PyArray_DIMS(src), NPY_FLOAT32);
    if (dst == NULL) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS tf_threads_begin();
    tf_bf16_to_f32(PyArray_DATA(src), PyArray_DATA(dst), PyArray_SIZE(src));
    Py_END_ALLOW_THREADS return (PyObject *)dst;
}

static PyObject *
py_float32_to_bfloat16(PyObject *module, PyObject *arg)
{
    tf_state *st = tf_state_of_module(module);
    if (!PyArray_Check(arg)) {
        return tf_type_error(st, "expected a numpy.ndarray of float32, got %s",
                             Py_TYPE(arg)->tp_name);
    }
    PyArrayObject *src = (PyArrayObject *)arg;
    if (PyArray_TYPE(src) != NPY_FLOAT32) {
        return tf_type_error(st, "float32_to_bfloat16 takes float32 data, got %s",
                             tf_dtype_name(src));
    }
    if (!PyArray_IS_C_CONTIGUOUS(src) || !PyArray_ISALIGNED(src)) {
        return tf_value_error(st, "float32 data must be C-contiguous and aligned");
    }
    PyArrayObject *dst =
        (PyArrayObject *)PyArray_SimpleNew(PyArray_NDIM(src), PyArray_DIMS(src), NPY_UINT16);
    if (dst == NULL) {
        return NULL;
    }
    const float *x = PyArray_DATA(src);
    uint16_t *y = PyArray_DATA(dst);
    const int64_t n = PyArray_SIZE(src);
    Py_BEGIN_ALLOW_THREADS tf_threads_begin();
    tf_f32_to_bf16(x, y, n); /* NaN stays a (quiet) NaN: checkpoints may hold some */
    Py_END_ALLOW_THREADS return (PyObject *)dst;
}

PyMethodDef tf_bfloat16_methods[] = {
    {"float32_to_bfloat16", py_float32_to_bfloat16, METH_O,
     "float32_to_bfloat16($module, x, /)\n--\n\n"
     "bfloat16 bit patterns (uint16) of float32 values, rounded to nearest even like torch\n"
     "(NaN stays NaN, Inf stays Inf)."},
    {"bfloat16_to_float32", py_bfloat16_to_float32, METH_O,
     "bfloat16_to_float32($module, bits, /)\n--\n\n"
     "float32 copy of bfloat16 values given as their uint16 bit patterns (exact)."},
    {NULL, NULL, 0, NULL},
};
