/* window_attention.c — tfcore.functional.window_attention: Swin's (shifted) window attention
 * on a ready QKV map, through the kernel of kernels/attention/shifted_window.c; argument
 * checks shared with the WindowAttention layer (layers/window_attention.h). */
#include "layers/window_attention.h"

#include "kernels/attention/shifted_window.h"

#include <math.h>
#include <string.h>

static PyObject *
window_attention(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {
        "qkv",        "window_size", "shift_size",        "relative_position_bias_table",
        "pad_qkv",    "scale",       "output_attentions", "out",
        "mask_value", NULL};
    PyObject *qkv_obj, *table_obj = Py_None, *pad_obj = Py_None, *scale_obj = Py_None,
                       *out_obj = Py_None, *result = NULL;
    long long ws, shift = 0;
    int output_attentions = 0;
    double mask_value = -100.0;
    PyObject *mask_obj = Py_None;
    PyArrayObject *qkv = NULL, *pad = NULL, *out = NULL, *weights = NULL;
    float *table = NULL, *zeros = NULL;
    tf_err err = {0};
    tf_state *st = tf_state_of_module(module);
    tf_window_args a;
    memset(&a, 0, sizeof(a));
    if (!TF_PARSE(st, args, kwds, "OL|L$OOOpOO:window_attention", kwlist, &qkv_obj, &ws, &shift,
                  &table_obj, &pad_obj, &scale_obj, &output_attentions, &out_obj, &mask_obj)) {
        return NULL;
    }
    if (mask_obj != Py_None) {
        if (!PyFloat_Check(mask_obj) && !PyLong_Check(mask_obj)) {
            tf_type_error(st, "mask_value must be a float, got %s", Py_TYPE(mask_obj)->tp_name);
            return NULL;
        }
        if ((mask_value = PyFloat_AsDouble(mask_obj)) == -1.0 && PyErr_Occurred()) {
            return NULL;
        }
    }
    if (!isfinite(mask_value)) {
        tf_value_error(st, "mask_value must be finite, got %g", mask_value);
        return NULL;
    }
    if ((qkv = tf_arg_f32(st, qkv_obj, "qkv", 6, 6)) == NULL) {
        goto done;
    }
    if (PyArray_DIM(qkv, 3) != 3) {
        char shape[96];
        tf_shape_str(qkv, shape, sizeof(shape));
        tf_value_error(st, "qkv must be (batch, height, width, 3, num_heads, head_dim), got %s",
                       shape);
        goto done;
    }
    if (tf_check_nonempty(st, qkv, "qkv") < 0 || tf_check_finite(st, qkv, "qkv") < 0 ||
        tf_window_check_size(st, ws, shift) < 0) {
        goto done;
    }
    a.B = PyArray_DIM(qkv, 0);
    a.Hh = PyArray_DIM(qkv, 1);
    a.Ww = PyArray_DIM(qkv, 2);
    a.H = PyArray_DIM(qkv, 4);
    a.D = PyArray_DIM(qkv, 5);
    a.ws = ws;
    a.shift = shift;
    a.region_mask = (float)mask_value;
    if (tf_window_parse_scale(st, scale_obj, a.D, &a.scale) < 0) {
        goto done;
    }
    if (table_obj != Py_None && tf_window_parse_table(st, table_obj, a.H, ws, &a.tw, &table) < 0) {
        goto done;
    }
    if (pad_obj != Py_None) {
        if ((pad = tf_arg_f32(st, pad_obj, "pad_qkv", 3, 3)) == NULL) {
            goto done;
        }
        if (PyArray_DIM(pad, 0) != 3 || PyArray_DIM(pad, 1) != a.H || PyArray_DIM(pad, 2) != a.D) {
            char shape[96];
            tf_shape_str(pad, shape, sizeof(shape));
            tf_value_error(
                st, "pad_qkv has shape %s, expected (3, num_heads, head_dim) = (3, %lld, %lld)",
                shape, (long long)a.H, (long long)a.D);
            goto done;
        }
        if (tf_check_finite(st, pad, "pad_qkv") < 0) {
            goto done;
        }
        a.pad = PyArray_DATA(pad);
    }
    else {
        if ((zeros = tf_malloc((size_t)(3 * a.H * a.D) * sizeof(float))) == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        memset(zeros, 0, (size_t)(3 * a.H * a.D) * sizeof(float));
        a.pad = zeros;
    }
    npy_intp odims[5] = {(npy_intp)a.B, (npy_intp)a.Hh, (npy_intp)a.Ww, (npy_intp)a.H,
                         (npy_intp)a.D};
    if ((out = tf_out_f32(st, out_obj, 5, odims)) == NULL ||
        tf_check_no_overlap(st, out, qkv, "qkv") < 0) {
        goto done;
    }
    if (output_attentions) {
        if ((weights = tf_window_weights_new(a.B, a.Hh, a.Ww, a.H, ws)) == NULL) {
            goto done;
        }
        a.weights = PyArray_DATA(weights);
    }
    a.qkv = PyArray_DATA(qkv);
    a.out = PyArray_DATA(out);
    a.table = table;
    int rc;
    Py_BEGIN_ALLOW_THREADS tf_threads_begin();
    rc = tf_window_attention(&a, &err);
    Py_END_ALLOW_THREADS if (rc < 0)
    {
        tf_err_raise(st, &err);
        goto done;
    }
    result = weights ? PyTuple_Pack(2, out, weights) : Py_NewRef(out);
done:
    Py_XDECREF(qkv);
    Py_XDECREF(pad);
    Py_XDECREF(out);
    Py_XDECREF(weights);
    tf_free(table);
    tf_free(zeros);
    return result;
}

PyDoc_STRVAR(
    window_attention_doc,
    "window_attention($module, qkv, window_size, shift_size=0, *, "
    "relative_position_bias_table=None,\n"
    "                 pad_qkv=None, scale=None, output_attentions=False, out=None,\n"
    "                 mask_value=-100.0)\n--\n\n"
    "Swin's (shifted) window attention on a fused QKV map, with no copies of the map.\n\n"
    "qkv (B, Hh, Ww, 3, H, D) float32 C-contiguous holds each position's query, key and value\n"
    "heads in image order (one Linear over all tokens gives it). The map is cut into\n"
    "window_size x window_size windows after a cyclic shift by -shift_size (torch.roll) and\n"
    "padding to multiples of the window; padding tokens have the q, k, v of pad_qkv (3, H, D)\n"
    "(default zeros). Within a window: softmax(q k^T * scale + bias + mask) v, bias from\n"
    "relative_position_bias_table ((2 w - 1)^2, H) (w >= window_size) by relative coordinates,\n"
    "mask_value (default -100, HF Swin's; transformers' SwinV2 adds its mask twice: -200)\n"
    "between tokens of different shifted-window regions (shift_size > 0).\n"
    "Returns (B, Hh, Ww, H, D) with every output at its original (unshifted) position, or\n"
    "(output, attentions) with attentions (B nW, H, N, N) in HF's window order, N =\n"
    "window_size^2. No window clipping is applied here (WindowAttention does HF's).");

PyMethodDef tf_window_attention_methods[] = {
    {"window_attention", (PyCFunction)(void (*)(void))window_attention,
     METH_VARARGS | METH_KEYWORDS, window_attention_doc},
    {NULL, NULL, 0, NULL},
};
