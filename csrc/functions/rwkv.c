/* rwkv.c — tfcore.functional.rwkv4_wkv, rwkv_token_shift, squared_relu and sigmoid_gate:
 * argument checking for RWKV's kernels (kernels/rwkv.c). */
#include "tfcore.h"
#include "kernels/rwkv.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* A C-contiguous float32 array of exactly ndim dims matching want (dims < 0 free), non-empty
 * and finite (new ref or NULL); what names the axes for the message. */
static PyArrayObject *
exact(tf_state *st, PyObject *obj, const char *name, int ndim, const int64_t *want,
      const char *what)
{
    PyArrayObject *a = tf_arg_f32(st, obj, name, ndim, ndim);
    if (a == NULL) {
        return NULL;
    }
    for (int i = 0; i < ndim; i++) {
        if (want[i] >= 0 && PyArray_DIM(a, i) != want[i]) {
            char shape[96];
            tf_shape_str(a, shape, sizeof(shape));
            tf_value_error(st, "%s has shape %s, expected %s (axis %d must be %lld)", name, shape,
                           what, i, (long long)want[i]);
            Py_DECREF(a);
            return NULL;
        }
    }
    if (tf_check_nonempty(st, a, name) < 0 || tf_check_finite(st, a, name) < 0) {
        Py_DECREF(a);
        return NULL;
    }
    return a;
}

/* exact() plus writable: a state array the kernel updates in place. */
static PyArrayObject *
state_arg(tf_state *st, PyObject *obj, const char *name, int64_t B, int64_t C)
{
    const int64_t want[2] = {B, C};
    PyArrayObject *a = exact(st, obj, name, 2, want, "(batch, channels)");
    if (a != NULL && !PyArray_ISWRITEABLE(a)) {
        tf_value_error(st, "%s is read-only: the state is updated in place", name);
        Py_DECREF(a);
        return NULL;
    }
    return a;
}

static PyObject *
py_rwkv4_wkv(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"key",        "value", "time_decay", "time_first",
                             "receptance", "state", NULL};
    PyObject *k_obj, *v_obj, *td_obj, *tf_obj, *r_obj = Py_None, *s_obj = Py_None;
    PyArrayObject *k = NULL, *v = NULL, *td = NULL, *u = NULL, *r = NULL, *y = NULL;
    PyArrayObject *s[3] = {NULL, NULL, NULL};
    PyObject *result = NULL;
    float *w = NULL;
    tf_state *st = tf_state_of_module(module);
    if (!TF_PARSE(st, args, kwds, "OOOO|$OO:rwkv4_wkv", kwlist, &k_obj, &v_obj, &td_obj, &tf_obj,
                  &r_obj, &s_obj)) {
        return NULL;
    }
    const int64_t any3[3] = {-1, -1, -1};
    if ((k = exact(st, k_obj, "key", 3, any3, "(batch, length, channels)")) == NULL) {
        goto done;
    }
    tf_rwkv4_wkv_args a = {.B = PyArray_DIM(k, 0), .T = PyArray_DIM(k, 1), .C = PyArray_DIM(k, 2)};
    const int64_t kshape[3] = {a.B, a.T, a.C}, cshape[1] = {a.C};
    if ((v = exact(st, v_obj, "value", 3, kshape, "key's (batch, length, channels)")) == NULL ||
        (td = exact(st, td_obj, "time_decay", 1, cshape, "(channels,)")) == NULL ||
        (u = exact(st, tf_obj, "time_first", 1, cshape, "(channels,)")) == NULL) {
        goto done;
    }
    if (r_obj != Py_None && (r = exact(st, r_obj, "receptance", 3, kshape,
                                       "key's (batch, length, channels)")) == NULL) {
        goto done;
    }
    if (s_obj != Py_None) {
        if (!PyTuple_Check(s_obj) || PyTuple_GET_SIZE(s_obj) != 3) {
            tf_type_error(st,
                          "state must be a tuple (num, den, max) of three (batch, channels) "
                          "float32 arrays, got %s",
                          Py_TYPE(s_obj)->tp_name);
            goto done;
        }
        static const char *const names[3] = {"state[0] (num)", "state[1] (den)", "state[2] (max)"};
        for (int i = 0; i < 3; i++) {
            if ((s[i] = state_arg(st, PyTuple_GET_ITEM(s_obj, i), names[i], a.B, a.C)) == NULL) {
                goto done;
            }
        }
        const float *den = PyArray_DATA(s[1]);
        for (int64_t i = 0; i < a.B * a.C; i++) {
            if (den[i] < 0.0f) {
                tf_value_error(st,
                               "state[1] (den) holds %g < 0 at flat index %lld: the denominator "
                               "is a sum of exponentials (>= 0; 0 = empty)",
                               (double)den[i], (long long)i);
                goto done;
            }
        }
        a.aa = PyArray_DATA(s[0]);
        a.bb = PyArray_DATA(s[1]);
        a.pp = PyArray_DATA(s[2]);
    }
    if ((w = PyMem_Malloc((size_t)a.C * sizeof(float))) == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    const float *tdp = PyArray_DATA(td);
    for (int64_t c = 0; c < a.C; c++) {
        const double e = -exp((double)tdp[c]); /* -inf past exp's range: clamp (decays to 0) */
        w[c] = e < -3.0e38 ? -3.0e38f : (float)e;
    }
    npy_intp dims[3] = {(npy_intp)a.B, (npy_intp)a.T, (npy_intp)a.C};
    if ((y = (PyArrayObject *)PyArray_SimpleNew(3, dims, NPY_FLOAT32)) == NULL) {
        goto done;
    }
    a.k = PyArray_DATA(k);
    a.v = PyArray_DATA(v);
    a.r = r ? PyArray_DATA(r) : NULL;
    a.w = w;
    a.u = PyArray_DATA(u);
    a.y = PyArray_DATA(y);
    Py_BEGIN_ALLOW_THREADS tf_threads_begin();
    tf_rwkv4_wkv(&a);
    Py_END_ALLOW_THREADS result = Py_NewRef(y);
done:
    Py_XDECREF(k);
    Py_XDECREF(v);
    Py_XDECREF(td);
    Py_XDECREF(u);
    Py_XDECREF(r);
    Py_XDECREF(y);
    for (int i = 0; i < 3; i++) {
        Py_XDECREF(s[i]);
    }
    PyMem_Free(w);
    return result;
}

static PyObject *
py_rwkv_token_shift(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"x", "mix", "state", NULL};
    PyObject *x_obj, *m_obj, *s_obj = Py_None, *result = NULL;
    PyArrayObject *x = NULL, *m = NULL, *s = NULL, *out = NULL;
    tf_state *st = tf_state_of_module(module);
    if (!TF_PARSE(st, args, kwds, "OO|$O:rwkv_token_shift", kwlist, &x_obj, &m_obj, &s_obj)) {
        return NULL;
    }
    const int64_t any3[3] = {-1, -1, -1};
    if ((x = exact(st, x_obj, "x", 3, any3, "(batch, length, channels)")) == NULL) {
        goto done;
    }
    const int64_t B = PyArray_DIM(x, 0), T = PyArray_DIM(x, 1), C = PyArray_DIM(x, 2);
    const int64_t mshape[2] = {-1, C};
    if ((m = exact(st, m_obj, "mix", 2, mshape, "(n, channels)")) == NULL) {
        goto done;
    }
    const int64_t n = PyArray_DIM(m, 0);
    if (n > 16) {
        tf_value_error(st, "mix has %lld rows, at most 16 mixes per call are supported",
                       (long long)n);
        goto done;
    }
    if (s_obj != Py_None && (s = state_arg(st, s_obj, "state", B, C)) == NULL) {
        goto done;
    }
    npy_intp dims[4] = {(npy_intp)n, (npy_intp)B, (npy_intp)T, (npy_intp)C};
    if ((out = (PyArrayObject *)PyArray_SimpleNew(4, dims, NPY_FLOAT32)) == NULL) {
        goto done;
    }
    if (s != NULL && tf_check_no_overlap(st, s, x, "x") < 0) {
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS tf_threads_begin();
    tf_rwkv_token_shift(B, T, C, PyArray_DATA(x), s ? PyArray_DATA(s) : NULL, 1, n, PyArray_DATA(m),
                        PyArray_DATA(out));
    Py_END_ALLOW_THREADS result = Py_NewRef(out);
done:
    Py_XDECREF(x);
    Py_XDECREF(m);
    Py_XDECREF(s);
    Py_XDECREF(out);
    return result;
}

static PyObject *
py_squared_relu(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"x", "out", NULL};
    PyObject *x_obj, *out_obj = Py_None;
    PyArrayObject *x = NULL, *out = NULL;
    tf_state *st = tf_state_of_module(module);
    if (!TF_PARSE(st, args, kwds, "O|$O:squared_relu", kwlist, &x_obj, &out_obj)) {
        return NULL;
    }
    if ((x = tf_arg_f32(st, x_obj, "x", 0, NPY_MAXDIMS)) == NULL ||
        tf_check_nonempty(st, x, "x") < 0 || tf_check_finite(st, x, "x") < 0 ||
        (out = tf_out_f32(st, out_obj, PyArray_NDIM(x), PyArray_DIMS(x))) == NULL) {
        goto fail;
    }
    if (PyArray_DATA(out) != PyArray_DATA(x)) {
        if (tf_check_no_overlap(st, out, x, "x") < 0) {
            goto fail;
        }
        memcpy(PyArray_DATA(out), PyArray_DATA(x), (size_t)PyArray_NBYTES(x));
    }
    Py_BEGIN_ALLOW_THREADS tf_threads_begin();
    tf_rwkv_relu_square(PyArray_DATA(out), PyArray_SIZE(out));
    Py_END_ALLOW_THREADS Py_DECREF(x);
    return (PyObject *)out;
fail:
    Py_XDECREF(x);
    Py_XDECREF(out);
    return NULL;
}

static PyObject *
py_sigmoid_gate(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"gate", "x", "out", NULL};
    PyObject *g_obj, *x_obj, *out_obj = Py_None;
    PyArrayObject *g = NULL, *x = NULL, *out = NULL;
    tf_state *st = tf_state_of_module(module);
    if (!TF_PARSE(st, args, kwds, "OO|$O:sigmoid_gate", kwlist, &g_obj, &x_obj, &out_obj)) {
        return NULL;
    }
    if ((g = tf_arg_f32(st, g_obj, "gate", 0, NPY_MAXDIMS)) == NULL ||
        (x = tf_arg_f32(st, x_obj, "x", 0, NPY_MAXDIMS)) == NULL) {
        goto fail;
    }
    int same = PyArray_NDIM(g) == PyArray_NDIM(x);
    for (int i = 0; same && i < PyArray_NDIM(x); i++) {
        same = PyArray_DIM(g, i) == PyArray_DIM(x, i);
    }
    if (!same) {
        char gs[96], xs[96];
        tf_shape_str(g, gs, sizeof(gs));
        tf_shape_str(x, xs, sizeof(xs));
        tf_value_error(st, "gate has shape %s, x has %s: they must be equal", gs, xs);
        goto fail;
    }
    if (tf_check_nonempty(st, x, "x") < 0 || tf_check_finite(st, x, "x") < 0 ||
        tf_check_finite(st, g, "gate") < 0 ||
        (out = tf_out_f32(st, out_obj, PyArray_NDIM(x), PyArray_DIMS(x))) == NULL) {
        goto fail;
    }
    /* out may be x or gate itself (elementwise, same index), but no partial overlap */
    if ((PyArray_DATA(out) != PyArray_DATA(x) && tf_check_no_overlap(st, out, x, "x") < 0) ||
        (PyArray_DATA(out) != PyArray_DATA(g) && tf_check_no_overlap(st, out, g, "gate") < 0)) {
        goto fail;
    }
    Py_BEGIN_ALLOW_THREADS tf_threads_begin();
    tf_rwkv_sigmoid_gate(PyArray_DATA(g), PyArray_DATA(x), PyArray_DATA(out), PyArray_SIZE(x));
    Py_END_ALLOW_THREADS Py_DECREF(g);
    Py_DECREF(x);
    return (PyObject *)out;
fail:
    Py_XDECREF(g);
    Py_XDECREF(x);
    Py_XDECREF(out);
    return NULL;
}

PyDoc_STRVAR(
    rwkv4_wkv_doc,
    "rwkv4_wkv($module, key, value, time_decay, time_first, *, receptance=None, state=None)\n"
    "--\n\n"
    "RWKV-4's WKV time-mix over all L steps (HF's rwkv_linear_attention_cpu in one call).\n"
    "key/value (batch, L, C) float32 C-contiguous, time_decay and time_first (C,) (HF's\n"
    "parameters: the per-step decay is exp(-exp(time_decay))). Returns (batch, L, C):\n\n"
    "    wkv_t = (sum_{i<t} e^(-(t-1-i) exp(time_decay) + k_i) v_i + e^(time_first + k_t) v_t)\n"
    "          / (the same sums without v)\n\n"
    "computed in the stable max-tracking form (state num, den, max per channel). receptance\n"
    "(batch, L, C) gives sigmoid(receptance) * wkv instead. state: a tuple (num, den, max) of\n"
    "(batch, C) float32 writable arrays, read as the state before key[:, 0] and overwritten\n"
    "with the state after key[:, -1] (so two calls over halves equal one call); all zeros (or\n"
    "den == 0) is the empty state.");

PyMethodDef tf_rwkv_methods[] = {
    {"rwkv4_wkv", (PyCFunction)(void (*)(void))py_rwkv4_wkv, METH_VARARGS | METH_KEYWORDS,
     rwkv4_wkv_doc},
    {"rwkv_token_shift", (PyCFunction)(void (*)(void))py_rwkv_token_shift,
     METH_VARARGS | METH_KEYWORDS,
     "rwkv_token_shift($module, x, mix, *, state=None)\n--\n\n"
     "RWKV's token shift: x (batch, L, C), mix (n, C) float32; returns (n, batch, L, C) with\n"
     "out[j, :, t] = x[:, t] * mix[j] + x[:, t - 1] * (1 - mix[j]), where x[:, -1] is state\n"
     "(batch, C) (zeros if None). A given state is overwritten with x[:, -1] in place, the\n"
     "previous token of the next call."},
    {"squared_relu", (PyCFunction)(void (*)(void))py_squared_relu, METH_VARARGS | METH_KEYWORDS,
     "squared_relu($module, x, *, out=None)\n--\n\n"
     "max(x, 0) ** 2 elementwise (RWKV's channel-mix key; out=x works in place)."},
    {"sigmoid_gate", (PyCFunction)(void (*)(void))py_sigmoid_gate, METH_VARARGS | METH_KEYWORDS,
     "sigmoid_gate($module, gate, x, *, out=None)\n--\n\n"
     "sigmoid(gate) * x elementwise, same shapes (RWKV's receptance gate; out may be x)."},
    {NULL},
};
