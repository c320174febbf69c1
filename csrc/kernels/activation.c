/* act.c — elementwise activations and the GLU product, as kernels (ops.h) and as
 * functions of tfcore._C (gelu, gelu_tanh, relu, silu, activation, glu). */
#include "ops.h"
#include "simd.h"

#include <math.h>
#include <string.h>

#define PARALLEL_MIN_ELEMS 65536
#define CHUNK 4096  /* elements per OpenMP work item */

static inline float
act_scalar(float x, tf_act act)
{
    switch (act) {
    case TF_ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case TF_ACT_GELU_TANH:
        return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
    case TF_ACT_RELU: return x > 0.0f ? x : 0.0f;
    case TF_ACT_SILU: return x / (1.0f + expf(-x));
    case TF_ACT_TANH: return tanhf(x);
    default: return x;
    }
}

/* tanh(y) = 1 - 2 / (exp(2y) + 1), exact at the saturated ends. */
TF_AVX512 static inline __m512
tanh512(__m512 y)
{
    __m512 e = tf_exp512(_mm512_add_ps(y, y));
    return _mm512_sub_ps(_mm512_set1_ps(1.0f),
                         _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, _mm512_set1_ps(1.0f))));
}

/* x, y are (n,); erf-GELU stays scalar (erff) for exactness, the others are vectorised. */
TF_AVX512 static void
act_avx512(const float *x, float *y, int64_t n, tf_act act)
{
    if (act == TF_ACT_GELU) {
        for (int64_t i = 0; i < n; i++) {
            y[i] = act_scalar(x[i], act);
        }
        return;
    }
    const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tf_mask16(n - i);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i), r;
        switch (act) {
        case TF_ACT_RELU: r = _mm512_max_ps(v, _mm512_setzero_ps()); break;
        case TF_ACT_SILU:
            r = _mm512_div_ps(v, _mm512_add_ps(one, tf_exp512(_mm512_sub_ps(_mm512_setzero_ps(), v))));
            break;
        case TF_ACT_TANH: r = tanh512(v); break;
        case TF_ACT_GELU_TANH: {
            __m512 inner = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(0.044715f), v), _mm512_mul_ps(v, v), v);
            r = _mm512_mul_ps(_mm512_mul_ps(half, v),
                              _mm512_add_ps(one, tanh512(_mm512_mul_ps(_mm512_set1_ps(0.79788456080286536f), inner))));
            break;
        }
        default: r = v; break;
        }
        _mm512_mask_storeu_ps(y + i, m, r);
    }
}

void
tf_activation_serial(const float *x, float *y, int64_t n, tf_act act)
{
    if (tf_cpu_has_avx512() && !tf_force_reference) {
        act_avx512(x, y, n, act);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        y[i] = act_scalar(x[i], act);
    }
}

void
tf_activation(const float *x, float *y, int64_t n, tf_act act)
{
    const int64_t chunks = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN_ELEMS)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t i0 = c * CHUNK, len = n - i0 < CHUNK ? n - i0 : CHUNK;
        tf_activation_serial(x + i0, y + i0, len, act);
    }
}

void
tf_glu(const float *x, float *y, int64_t M, int64_t F, tf_act act)
{
#pragma omp parallel for schedule(static) if (M * F >= PARALLEL_MIN_ELEMS && M > 1)
    for (int64_t row = 0; row < M; row++) {
        const float *gate = x + row * 2 * F, *up = gate + F;
        float *out = y + row * F;
        tf_activation_serial(gate, out, F, act);   /* out = act(gate) */
        for (int64_t i = 0; i < F; i++) {
            out[i] *= up[i];
        }
    }
}

/* ------------------------------------------------------------------ Python functions */

static PyObject *
run_activation(PyObject *module, PyObject *x_obj, PyObject *out_obj, int act)
{
    tf_state *st = tf_state_of_module(module);
    PyArrayObject *x = tf_arg_f32(st, x_obj, "x", 0, NPY_MAXDIMS), *out = NULL;
    if (x == NULL)
        return NULL;
    if (tf_check_nonempty(st, x, "x") < 0 || tf_check_finite(st, x, "x") < 0)
        goto fail;
    if ((out = tf_out_f32(st, out_obj, PyArray_NDIM(x), PyArray_DIMS(x))) == NULL)
        goto fail;
    if (PyArray_DATA(out) != PyArray_DATA(x) && tf_check_no_overlap(st, out, x, "x") < 0)
        goto fail;
    Py_BEGIN_ALLOW_THREADS
    tf_threads_begin();
    tf_activation(PyArray_DATA(x), PyArray_DATA(out), PyArray_SIZE(x), (tf_act)act);
    Py_END_ALLOW_THREADS
    Py_DECREF(x);
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
    if (!TF_PARSE(tf_state_of_module(module), args, kwds, "OO|$O:activation", kwlist, &x, &kind, &out) ||
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
    if (!TF_PARSE(tf_state_of_module(module), args, kwds, "O|$sO:gelu", kwlist, &x, &approx, &out)) {
        return NULL;
    }
    if (strcmp(approx, "none") != 0 && strcmp(approx, "tanh") != 0) {
        return tf_value_error(tf_state_of_module(module), "approximate must be 'none' or 'tanh', got '%s'", approx);
    }
    return run_activation(module, x, out, approx[0] == 't' ? TF_ACT_GELU_TANH : TF_ACT_GELU);
}

#define SIMPLE_ACT(name, act)                                                              \
    static PyObject *py_##name(PyObject *module, PyObject *args, PyObject *kwds)           \
    {                                                                                      \
        static char *kwlist[] = {"x", "out", NULL};                                        \
        PyObject *x, *out = Py_None;                                                       \
        if (!TF_PARSE(tf_state_of_module(module), args, kwds, "O|$O:" #name, kwlist, &x, &out)) { \
            return NULL;                                                                   \
        }                                                                                  \
        return run_activation(module, x, out, act);                                        \
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
    if ((x = tf_arg_f32(st, x_obj, "x", 1, NPY_MAXDIMS)) == NULL)
        return NULL;
    const int nd = PyArray_NDIM(x);
    const npy_intp last = PyArray_DIM(x, nd - 1);
    if (last % 2 != 0) {
        tf_value_error(st, "glu needs an even last dim (gate | up halves), got %" NPY_INTP_FMT, last);
        goto fail;
    }
    if (tf_check_nonempty(st, x, "x") < 0 || tf_check_finite(st, x, "x") < 0)
        goto fail;
    memcpy(dims, PyArray_DIMS(x), (size_t)nd * sizeof(npy_intp));
    dims[nd - 1] = last / 2;
    if ((out = tf_out_f32(st, out_obj, nd, dims)) == NULL || tf_check_no_overlap(st, out, x, "x") < 0)
        goto fail;
    const int64_t F = last / 2, M = (int64_t)(PyArray_SIZE(x) / last);
    Py_BEGIN_ALLOW_THREADS
    tf_threads_begin();
    tf_glu(PyArray_DATA(x), PyArray_DATA(out), M, F, (tf_act)act);
    Py_END_ALLOW_THREADS
    Py_DECREF(x);
    return (PyObject *)out;
fail:
    Py_XDECREF(x);
    Py_XDECREF(out);
    return NULL;
}

static PyMethodDef act_methods[] = {
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

int
tf_register_act(PyObject *module, tf_state *st)
{
    return PyModule_AddFunctions(module, act_methods);
}
