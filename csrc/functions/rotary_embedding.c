/* rotary_embedding.c — tfcore.functional.rotary_embedding: RoPE in place or into out=, over
 * the kernel of kernels/rope.c. */
#include "tfcore.h"
#include "kernels/rope.h"

static PyObject *
py_rotary_embedding(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"x", "inv_freq", "positions", "interleaved", "offset", "out", NULL};
    PyObject *x_obj, *inv_obj, *pos_obj = Py_None, *out_obj = Py_None;
    int interleaved = 0;
    long long offset = 0;
    PyArrayObject *x = NULL, *inv = NULL, *pos = NULL, *out = NULL;
    tf_state *st = tf_state_of_module(module);
    if (!TF_PARSE(st, args, kwds, "OO|O$pLO:rotary_embedding", kwlist, &x_obj, &inv_obj, &pos_obj,
                  &interleaved, &offset, &out_obj)) {
        return NULL;
    }
    if ((x = tf_arg_f32(st, x_obj, "x", 4, 4)) == NULL) {
        goto fail;
    }
    if (tf_check_nonempty(st, x, "x") < 0 || tf_check_finite(st, x, "x") < 0) {
        goto fail;
    }
    const int64_t B = PyArray_DIM(x, 0), T = PyArray_DIM(x, 1), Hh = PyArray_DIM(x, 2),
                  D = PyArray_DIM(x, 3);
    if ((inv = tf_arg_f32(st, inv_obj, "inv_freq", 1, 1)) == NULL) {
        goto fail;
    }
    const int64_t rd = 2 * PyArray_DIM(inv, 0);
    if (rd < 2 || rd > D) {
        tf_value_error(st,
                       "inv_freq has %" NPY_INTP_FMT
                       " frequencies; 2 * that (the rotary dim) must be in [2, head_dim=%lld]",
                       PyArray_DIM(inv, 0), (long long)D);
        goto fail;
    }
    if (tf_check_finite(st, inv, "inv_freq") < 0) {
        goto fail;
    }
    if (pos_obj != Py_None) {
        if ((pos = tf_arg_ids(st, pos_obj, "positions")) == NULL) {
            goto fail;
        }
        if (PyArray_ITEMSIZE(pos) != 8) {
            tf_type_error(st, "positions must have dtype int64, got %s", tf_dtype_name(pos));
            goto fail;
        }
        if (PyArray_NDIM(pos) != 2 || PyArray_DIM(pos, 0) != B || PyArray_DIM(pos, 1) != T) {
            char shape[96];
            tf_shape_str(pos, shape, sizeof(shape));
            tf_value_error(st, "positions has shape %s, expected (batch, seq_len) = (%lld, %lld)",
                           shape, (long long)B, (long long)T);
            goto fail;
        }
    }
    if (offset < 0) {
        tf_value_error(st, "offset must be >= 0, got %lld", offset);
        goto fail;
    }
    if ((out = tf_out_f32(st, out_obj, 4, PyArray_DIMS(x))) == NULL) {
        goto fail;
    }
    if (PyArray_DATA(out) != PyArray_DATA(x) && tf_check_no_overlap(st, out, x, "x") < 0) {
        goto fail;
    }
    Py_BEGIN_ALLOW_THREADS tf_threads_begin();
    if (PyArray_DATA(out) != PyArray_DATA(x)) {
        memcpy(PyArray_DATA(out), PyArray_DATA(x), (size_t)PyArray_NBYTES(x));
    }
    tf_rope_inplace(PyArray_DATA(out), B, T, Hh, D, T * Hh * D, Hh * D, D,
                    pos ? PyArray_DATA(pos) : NULL, offset, PyArray_DATA(inv), rd, interleaved);
    Py_END_ALLOW_THREADS Py_DECREF(x);
    Py_DECREF(inv);
    Py_XDECREF(pos);
    return (PyObject *)out;
fail:
    Py_XDECREF(x);
    Py_XDECREF(inv);
    Py_XDECREF(pos);
    Py_XDECREF(out);
    return NULL;
}

PyMethodDef tf_rotary_embedding_methods[] = {
    {"rotary_embedding", (PyCFunction)(void (*)(void))py_rotary_embedding,
     METH_VARARGS | METH_KEYWORDS,
     "rotary_embedding($module, x, inv_freq, positions=None, *, interleaved=False, offset=0, "
     "out=None)\n--\n\n"
     "Rotary position embedding of x (B, T, H, D) float32 (HF layout before the head transpose).\n"
     "inv_freq (rotary_dim/2,) float32 (see tfcore.functional.rope_inv_freq); positions (B, T)\n"
     "int64, default offset + t. Half-split pairs (i, i + rotary_dim/2) like Llama, or\n"
     "interleaved pairs (2i, 2i+1) like GPT-J. Dims past rotary_dim pass through.\n"
     "out may be x (in place)."},
    {NULL, NULL, 0, NULL},
};
