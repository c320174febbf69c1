/* norm.c — the LayerNorm and RMSNorm types: parameters owned by the Python object, rows
 * normalised by kernels/norm.c (with an optional fused residual add). */
#include "layers/norm.h"

#include "kernels/norm.h"

#include <math.h>
#include <string.h>

/* The Python object: the kernel's parameters plus what only the type needs. */
typedef struct {
    PyObject_HEAD tf_norm_params p;
    int offset;    /* RMSNorm: weight stored as w - 1 (Gemma) */
    float *weight; /* (C,) the weight as given when offset (gamma = 1 + weight), else NULL */
} tf_norm;

void
tf_norm_apply(PyObject *norm, const float *x, const float *residual, float *sum_out, float *y,
              int64_t M)
{
    tf_norm_rows(&((const tf_norm *)norm)->p, x, residual, sum_out, y, M);
}

int
tf_norm_check_arg(tf_state *st, PyObject *norm, const char *name, int64_t C)
{
    if (!PyObject_TypeCheck(norm, st->LayerNorm) && !PyObject_TypeCheck(norm, st->RMSNorm)) {
        tf_type_error(st, "%s must be a tfcore.LayerNorm or tfcore.RMSNorm, got %s", name,
                      Py_TYPE(norm)->tp_name);
        return -1;
    }
    if (((const tf_norm *)norm)->p.C != C) {
        tf_value_error(st, "%s normalizes %lld features, expected hidden_size=%lld", name,
                       (long long)((const tf_norm *)norm)->p.C, (long long)C);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ Python types */

static float *
copy_vector(tf_state *st, PyObject *obj, const char *name, int64_t expect, float add)
{
    PyArrayObject *a = tf_arg_f32(st, obj, name, 1, 1);
    float *out = NULL;
    if (a == NULL) {
        return NULL;
    }
    if (expect >= 0 && PyArray_DIM(a, 0) != expect) {
        tf_value_error(st, "%s has %" NPY_INTP_FMT " elements, expected %lld like weight", name,
                       PyArray_DIM(a, 0), (long long)expect);
        goto done;
    }
    if (tf_check_nonempty(st, a, name) < 0 || tf_check_finite(st, a, name) < 0) {
        goto done;
    }
    out = tf_malloc((size_t)PyArray_DIM(a, 0) * sizeof(float));
    if (out == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    const float *src = PyArray_DATA(a);
    for (npy_intp i = 0; i < PyArray_DIM(a, 0); i++) {
        out[i] = src[i] + add;
    }
done:
    Py_DECREF(a);
    return out;
}

static int
parse_eps(tf_state *st, double eps, float *out)
{
    if (!(eps > 0.0) || !isfinite(eps) || eps > 1.0) {
        tf_value_error(st, "eps must be in (0, 1], got %g", eps);
        return -1;
    }
    *out = (float)eps;
    return 0;
}

static PyObject *
layer_norm_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"weight", "bias", "eps", NULL};
    PyObject *w_obj, *b_obj = Py_None;
    double eps = 1e-5;
    tf_state *st = tf_state_of_type(type);
    tf_norm *self;
    if (st == NULL || !TF_PARSE(st, args, kwds, "O|O$d:LayerNorm", kwlist, &w_obj, &b_obj, &eps)) {
        return NULL;
    }
    if ((self = (tf_norm *)type->tp_alloc(type, 0)) == NULL) {
        return NULL;
    }
    self->p.kind = TF_NORM_LAYER;
    if (parse_eps(st, eps, &self->p.eps) < 0 ||
        (self->p.gamma = copy_vector(st, w_obj, "weight", -1, 0.0f)) == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->p.C = PyArray_DIM((PyArrayObject *)w_obj, 0);
    if (b_obj != Py_None &&
        (self->p.beta = copy_vector(st, b_obj, "bias", self->p.C, 0.0f)) == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static PyObject *
rms_norm_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"weight", "eps", "offset", NULL};
    PyObject *w_obj;
    double eps = 1e-6;
    int offset = 0;
    tf_state *st = tf_state_of_type(type);
    tf_norm *self;
    if (st == NULL || !TF_PARSE(st, args, kwds, "O|$dp:RMSNorm", kwlist, &w_obj, &eps, &offset)) {
        return NULL;
    }
    if ((self = (tf_norm *)type->tp_alloc(type, 0)) == NULL) {
        return NULL;
    }
    self->p.kind = TF_NORM_RMS;
    self->offset = offset;
    if (parse_eps(st, eps, &self->p.eps) < 0 ||
        (self->p.gamma = copy_vector(st, w_obj, "weight", -1, offset ? 1.0f : 0.0f)) == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->p.C = PyArray_DIM((PyArrayObject *)w_obj, 0);
    if (offset && (self->weight = copy_vector(st, w_obj, "weight", self->p.C, 0.0f)) == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void
norm_dealloc(tf_norm *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    tf_free(self->p.gamma);
    tf_free(self->p.beta);
    tf_free(self->weight);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *
norm_call(tf_norm *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"x", "residual", "out", NULL};
    PyObject *x_obj, *res_obj = Py_None, *out_obj = Py_None;
    PyArrayObject *x = NULL, *res = NULL, *out = NULL;
    tf_state *st = tf_state_of((PyObject *)self);
    if (!TF_PARSE(st, args, kwds, "O|O$O:__call__", kwlist, &x_obj, &res_obj, &out_obj)) {
        return NULL;
    }
    if ((x = tf_arg_f32(st, x_obj, "x", 1, NPY_MAXDIMS)) == NULL) {
        goto fail;
    }
    const int nd = PyArray_NDIM(x);
    if (PyArray_DIM(x, nd - 1) != self->p.C) {
        tf_value_error(st, "x has last dim %" NPY_INTP_FMT ", expected normalized size %lld",
                       PyArray_DIM(x, nd - 1), (long long)self->p.C);
        goto fail;
    }
    if (tf_check_nonempty(st, x, "x") < 0 || tf_check_finite(st, x, "x") < 0) {
        goto fail;
    }
    if (res_obj != Py_None) {
        if ((res = tf_arg_f32(st, res_obj, "residual", nd, nd)) == NULL) {
            goto fail;
        }
        if (!PyArray_SAMESHAPE(res, x)) {
            tf_value_error(st, "residual must have the shape of x");
            goto fail;
        }
        if (tf_check_finite(st, res, "residual") < 0) {
            goto fail;
        }
    }
    /* Row-wise: out may be x itself (in-place), but not a shifted overlap. */
    if ((out = tf_out_f32(st, out_obj, nd, PyArray_DIMS(x))) == NULL) {
        goto fail;
    }
    if ((PyArray_DATA(out) != PyArray_DATA(x) && tf_check_no_overlap(st, out, x, "x") < 0) ||
        (res && PyArray_DATA(out) != PyArray_DATA(res) &&
         tf_check_no_overlap(st, out, res, "residual") < 0)) {
        goto fail;
    }
    const int64_t M = (int64_t)(PyArray_SIZE(x) / self->p.C);
    Py_BEGIN_ALLOW_THREADS tf_threads_begin();
    tf_norm_rows(&self->p, PyArray_DATA(x), res ? PyArray_DATA(res) : NULL, NULL, PyArray_DATA(out),
                 M);
    Py_END_ALLOW_THREADS Py_DECREF(x);
    Py_XDECREF(res);
    return (PyObject *)out;
fail:
    Py_XDECREF(x);
    Py_XDECREF(res);
    Py_XDECREF(out);
    return NULL;
}

static PyObject *
norm_repr(tf_norm *self)
{
    char eps[32];
    snprintf(eps, sizeof(eps), "%g", (double)self->p.eps);
    if (self->p.kind == TF_NORM_LAYER) {
        return PyUnicode_FromFormat("LayerNorm(%lld, eps=%s, bias=%s)", (long long)self->p.C, eps,
                                    self->p.beta ? "True" : "False");
    }
    return PyUnicode_FromFormat("RMSNorm(%lld, eps=%s%s)", (long long)self->p.C, eps,
                                self->offset ? ", offset=True" : "");
}

static PyObject *
norm_get_vector(tf_norm *self, void *closure)
{
    const float *src =
        closure != NULL ? self->p.beta : (self->weight ? self->weight : self->p.gamma);
    if (src == NULL) {
        Py_RETURN_NONE;
    }
    npy_intp n = (npy_intp)self->p.C;
    PyArrayObject *a = (PyArrayObject *)PyArray_SimpleNew(1, &n, NPY_FLOAT32);
    if (a != NULL) {
        memcpy(PyArray_DATA(a), src, (size_t)n * sizeof(float));
    }
    return (PyObject *)a;
}

static PyObject *
norm_get_eps(tf_norm *self, void *closure)
{
    return PyFloat_FromDouble(self->p.eps);
}

static PyObject *
norm_get_shape(tf_norm *self, void *closure)
{
    return Py_BuildValue("(L)", (long long)self->p.C);
}

static PyGetSetDef norm_getset[] = {
    {"weight", (getter)norm_get_vector, NULL, "The weight as given (a new array).", NULL},
    {"bias", (getter)norm_get_vector, NULL, "The bias (LayerNorm) or None.", (void *)1},
    {"eps", (getter)norm_get_eps, NULL, "Epsilon added to the variance.", NULL},
    {"normalized_shape", (getter)norm_get_shape, NULL, "(C,)", NULL},
    {NULL},
};

PyDoc_STRVAR(layer_norm_doc,
             "LayerNorm(weight, bias=None, *, eps=1e-05)\n--\n\n"
             "Layer normalisation over the last axis like torch.nn.LayerNorm: weight and bias are\n"
             "float32 (C,). Call: ``ln(x, residual=None, *, out=None)`` normalises x + residual.\n"
             "out may be x (in place).");

PyDoc_STRVAR(
    rms_norm_doc,
    "RMSNorm(weight, *, eps=1e-06, offset=False)\n--\n\n"
    "Root-mean-square normalisation over the last axis (Llama, T5): x / sqrt(mean(x^2) + eps)\n"
    "* weight. offset=True multiplies by (1 + weight) (Gemma's storage). Call as LayerNorm.");

static PyType_Slot layer_norm_slots[] = {
    {Py_tp_new, layer_norm_new},
    {Py_tp_dealloc, norm_dealloc},
    {Py_tp_call, norm_call},
    {Py_tp_repr, norm_repr},
    {Py_tp_getset, norm_getset},
    {Py_tp_doc, (void *)layer_norm_doc},
    {0, NULL},
};

static PyType_Slot rms_norm_slots[] = {
    {Py_tp_new, rms_norm_new},
    {Py_tp_dealloc, norm_dealloc},
    {Py_tp_call, norm_call},
    {Py_tp_repr, norm_repr},
    {Py_tp_getset, norm_getset},
    {Py_tp_doc, (void *)rms_norm_doc},
    {0, NULL},
};

PyType_Spec tf_layer_norm_spec = {
    .name = "tfcore.LayerNorm",
    .basicsize = sizeof(tf_norm),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = layer_norm_slots,
};

PyType_Spec tf_rms_norm_spec = {
    .name = "tfcore.RMSNorm",
    .basicsize = sizeof(tf_norm),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = rms_norm_slots,
};
