/* activation.c — tfcore.functional.gelu, gelu_tanh, relu, silu, activation and glu: NumPy
 * arrays in and out over the kernels of kernels/activation.c. */
#include "tfcore.h"
#include "kernels/activation.h"

/* ------------------------------------------------------------------ Python functions */

static PyObject *
run_activation(PyObject *module, PyObject *x_obj, PyObject *out_obj, int act)
{
    tf_state *st = tf_state_of_module(module);
    PyArrayObject *x = tf_arg_f32(st, x_obj, "x", 0, NPY_MAXDIMS), *out = NULL;
    if (x == NULL) {
        return NULL;
    }
    if (tf_check_nonempty(st, x, "x") < 0 || tf_check_finite(st, x, "x") < 0) {
        goto fail;
    }
    if ((out = tf_out_f32(st, out_obj, PyArray_NDIM(x), PyArray_DIMS(x))) == NULL) {
        goto fail;
    }
    if (PyArray_DATA(out) != PyArray_DATA(x) && tf_check_no_overlap(st, out, x, "x") < 0) {
        goto fail;
    }
    Py_BEGIN_ALLOW_THREADS tf_threads_begin();
    tf_activation(PyArray_DATA(x), PyArray_DATA(out), PyArray_SIZE(x), (tf_act)act);
    Py_END_ALLOW_THREADS Py_DECREF(x);
    return (PyObject *)out;
fail:
    Py_XDECREF(x);
    Py_XDECREF(out);
    return NULL;
}

static PyObject *
py_activation(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"x", "kind", "out", NULL};
    PyObject *x, *kind, *out = Py_None;
    int act;
    if (!TF_PARSE(tf_state_of_module(module), args, kwds, "OO|$O:activation", kwlist, &x, &kind,
                  &out) ||
        tf_parse_activation(tf_state_of_module(module), kind, &act) < 0) {
        return NULL;
    }
    return run_activation(module, x, out, act);
}

static PyObject *
py_gelu(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"x", "approximate", "out", NULL};
    PyObject *x, *out = Py_None;
    const char *approx = "none";
    if (!TF_PARSE(tf_state_of_module(module), args, kwds, "O|$sO:gelu", kwlist, &x, &approx,
                  &out)) {
        return NULL;
    }
    if (strcmp(approx, "none") != 0 && strcmp(approx, "tanh") != 0) {
        return tf_value_error(tf_state_of_module(module),
                              "approximate must be 'none' or 'tanh', got '%s'", approx);
    }
    return run_activation(module, x, out, approx[0] == 't' ? TF_ACT_GELU_TANH : TF_ACT_GELU);
}

#define SIMPLE_ACT(name, act)                                                                     \
    static PyObject *py_##name(PyObject *module, PyObject *args, PyObject *kwds)                  \
    {                                                                                             \
        static char *kwlist[] = {"x", "out", NULL};                                               \
        PyObject *x, *out = Py_None;                                                              \
        if (!TF_PARSE(tf_state_of_module(module), args, kwds, "O|$O:" #name, kwlist, &x, &out)) { \
            return NULL;                                                                          \
        }                                                                                         \
        return run_activation(module, x, out, act);                                               \
    }
SIMPLE_ACT(relu, TF_ACT_RELU)
SIMPLE_ACT(silu, TF_ACT_SILU)

static PyObject *
py_glu(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"x", "activation", "out", NULL};
    PyObject *x_obj, *act_obj = NULL, *out_obj = Py_None;
    PyArrayObject *x = NULL, *out = NULL;
    tf_state *st = tf_state_of_module(module);
    int act = TF_ACT_SILU;
    npy_intp dims[NPY_MAXDIMS];
    if (!TF_PARSE(st, args, kwds, "O|O$O:glu", kwlist, &x_obj, &act_obj, &out_obj) ||
        (act_obj != NULL && tf_parse_activation(st, act_obj, &act) < 0)) {
        return NULL;
    }
    if ((x = tf_arg_f32(st, x_obj, "x", 1, NPY_MAXDIMS)) == NULL) {
        return NULL;
    }
    const int nd = PyArray_NDIM(x);
    const npy_intp last = PyArray_DIM(x, nd - 1);
    if (last % 2 != 0) {
        tf_value_error(st, "glu needs an even last dim (gate | up halves), got %" NPY_INTP_FMT,
                       last);
        goto fail;
    }
    if (tf_check_nonempty(st, x, "x") < 0 || tf_check_finite(st, x, "x") < 0) {
        goto fail;
    }
    memcpy(dims, PyArray_DIMS(x), (size_t)nd * sizeof(npy_intp));
    dims[nd - 1] = last / 2;
    if ((out = tf_out_f32(st, out_obj, nd, dims)) == NULL ||
        tf_check_no_overlap(st, out, x, "x") < 0) {
        goto fail;
    }
    const int64_t F = last / 2, M = (int64_t)(PyArray_SIZE(x) / last);
    Py_BEGIN_ALLOW_THREADS tf_threads_begin();
    tf_glu(PyArray_DATA(x), PyArray_DATA(out), M, F, (tf_act)act);
    Py_END_ALLOW_THREADS Py_DECREF(x);
    return (PyObject *)out;
fail:
    Py_XDECREF(x);
    Py_XDECREF(out);
    return NULL;
}

PyMethodDef tf_activation_methods[] = {
    {"activation", (PyCFunction)(void (*)(void))py_activation, METH_VARARGS | METH_KEYWORDS,
     "activation($module, x, kind, *, out=None)\n--\n\n"
     "Apply 'gelu' (erf), 'gelu_tanh', 'relu', 'silu', 'tanh' (or an HF alias) elementwise."},
    {"gelu", (PyCFunction)(void (*)(void))py_gelu, METH_VARARGS | METH_KEYWORDS,
     "gelu($module, x, *, approximate='none', out=None)\n--\n\n"
     "GELU like torch.nn.functional.gelu: exact (erf) or approximate='tanh'."},
    {"relu", (PyCFunction)(void (*)(void))py_relu, METH_VARARGS | METH_KEYWORDS,
     "relu($module, x, *, out=None)\n--\n\nmax(x, 0)."},
    {"silu", (PyCFunction)(void (*)(void))py_silu, METH_VARARGS | METH_KEYWORDS,
     "silu($module, x, *, out=None)\n--\n\nx * sigmoid(x) (a.k.a. swish)."},
    {"glu", (PyCFunction)(void (*)(void))py_glu, METH_VARARGS | METH_KEYWORDS,
     "glu($module, x, activation='silu', *, out=None)\n--\n\n"
     "Gated unit over (..., 2F) split into [gate | up]: act(gate) * up -> (..., F).\n"
     "SwiGLU with 'silu', GEGLU with 'gelu'/'gelu_tanh' (Llama: down(act(gate(x)) * up(x)))."},
    {NULL, NULL, 0, NULL},
};
