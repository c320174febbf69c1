/* state_space.c — tfcore.functional.causal_conv1d, selective_scan, ssd_scan and
 * gated_rms_norm: argument checking for the state-space kernels (kernels/causal_conv1d.c,
 * kernels/selective_scan.c, kernels/ssd.c, Mamba-2's gated norm in kernels/norm.c). States are
 * updated in place, so a RecurrentState's views (or any float32 arrays) carry them. */
#include "tfcore.h"
#include "kernels/causal_conv1d.h"
#include "kernels/norm.h"
#include "kernels/selective_scan.h"
#include "kernels/ssd.h"

#include <math.h>

#include <string.h>

/* A C-contiguous float32 array of ndim dims, each equal to want[i] unless want[i] < 0, not
 * empty, finite (new ref or NULL). what names the axes for the message. */
static PyArrayObject *
arg_exact(tf_state *st, PyObject *obj, const char *name, int ndim, const int64_t *want,
          const char *what)
{
    PyArrayObject *a = tf_arg_f32(st, obj, name, ndim, ndim);
    if (a == NULL) {
        return NULL;
    }
    for (int i = 0; i < ndim; i++) {
        if (want[i] >= 0 && PyArray_DIM(a, i) != want[i]) {
            char shape[96], exp[96];
            int n = snprintf(exp, sizeof(exp), "(");
            for (int j = 0; j < ndim && n < (int)sizeof(exp) - 24; j++) {
                n += want[j] >= 0 ? snprintf(exp + n, sizeof(exp) - (size_t)n,
                                             j ? ", %lld" : "%lld", (long long)want[j])
                                  : snprintf(exp + n, sizeof(exp) - (size_t)n, j ? ", *" : "*");
            }
            snprintf(exp + n, sizeof(exp) - (size_t)n, ")");
            tf_shape_str(a, shape, sizeof(shape));
            tf_value_error(st, "%s has shape %s, expected %s = %s", name, shape, what, exp);
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

/* as arg_exact, or NULL without an error for None (*ok = 0 on error) */
static PyArrayObject *
arg_optional(tf_state *st, PyObject *obj, const char *name, int ndim, const int64_t *want,
             const char *what, int *ok)
{
    if (obj == Py_None) {
        return NULL;
    }
    PyArrayObject *a = arg_exact(st, obj, name, ndim, want, what);
    *ok = a != NULL;
    return a;
}

/* a state array updated in place: as arg_exact, and writable, and not an input's memory */
static PyArrayObject *
arg_state(tf_state *st, PyObject *obj, int ndim, const int64_t *want, const char *what, int *ok)
{
    PyArrayObject *a = arg_optional(st, obj, "state", ndim, want, what, ok);
    if (a != NULL && !PyArray_ISWRITEABLE(a)) {
        tf_value_error(st, "state is read-only: it is updated in place (pass a writable copy, "
                           "e.g. state.copy())");
        Py_DECREF(a);
        *ok = 0;
        return NULL;
    }
    return a;
}

/* Raises if the state (updated in place while the inputs are read) shares memory with a. */
static int
state_disjoint(tf_state *st, PyArrayObject *state, PyArrayObject *a, const char *name)
{
    const char *s0 = PyArray_BYTES(state), *s1 = s0 + PyArray_NBYTES(state);
    const char *a0 = PyArray_BYTES(a), *a1 = a0 + PyArray_NBYTES(a);
    if (s0 < a1 && a0 < s1) {
        tf_value_error(st,
                       "state must not share memory with %s (it is updated in place while %s "
                       "is read): pass a separate array",
                       name, name);
        return -1;
    }
    return 0;
}

static PyObject *
causal_conv1d(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"x", "weight", "bias", "state", "activation", NULL};
    PyObject *x_obj, *w_obj, *bias_obj = Py_None, *state_obj = Py_None, *act_obj = Py_None;
    PyObject *result = NULL;
    PyArrayObject *x = NULL, *w = NULL, *bias = NULL, *state = NULL, *y = NULL;
    tf_causal_conv1d_args a;
    tf_err err = {0};
    int ok = 1;
    tf_state *st = tf_state_of_module(module);
    memset(&a, 0, sizeof(a));
    if (!TF_PARSE(st, args, kwds, "OO|O$OO:causal_conv1d", kwlist, &x_obj, &w_obj, &bias_obj,
                  &state_obj, &act_obj)) {
        return NULL;
    }
    if (act_obj == Py_None) {
        a.silu = 0;
    }
    else if (PyUnicode_Check(act_obj) &&
             (PyUnicode_CompareWithASCIIString(act_obj, "silu") == 0 ||
              PyUnicode_CompareWithASCIIString(act_obj, "swish") == 0)) {
        a.silu = 1;
    }
    else {
        PyObject *r = PyObject_Repr(act_obj);
        tf_value_error(st, "activation must be None or 'silu', got %s",
                       r ? PyUnicode_AsUTF8(r) : "?");
        Py_XDECREF(r);
        goto done;
    }
    const int64_t any3[3] = {-1, -1, -1};
    if ((x = arg_exact(st, x_obj, "x", 3, any3, "(batch, length, channels)")) == NULL) {
        goto done;
    }
    a.B = PyArray_DIM(x, 0);
    a.T = PyArray_DIM(x, 1);
    a.C = PyArray_DIM(x, 2);
    /* HF's Conv1d weight (C, 1, K) or its squeeze (C, K) */
    if (PyArray_Check(w_obj) && PyArray_NDIM((PyArrayObject *)w_obj) == 3 &&
        PyArray_DIM((PyArrayObject *)w_obj, 1) == 1) {
        const int64_t want[3] = {a.C, 1, -1};
        w = arg_exact(st, w_obj, "weight", 3, want, "(channels, 1, kernel_size)");
    }
    else {
        const int64_t want[2] = {a.C, -1};
        w = arg_exact(st, w_obj, "weight", 2, want, "x's (channels, kernel_size)");
    }
    if (w == NULL) {
        goto done;
    }
    a.K = PyArray_DIM(w, PyArray_NDIM(w) - 1);
    if (a.K > 64) {
        tf_value_error(st, "weight has kernel_size %lld, at most 64 is supported", (long long)a.K);
        goto done;
    }
    const int64_t bshape[1] = {a.C}, sshape[3] = {a.B, a.C, a.K - 1};
    bias = arg_optional(st, bias_obj, "bias", 1, bshape, "(channels,)", &ok);
    if (!ok) {
        goto done;
    }
    if (a.K > 1) {
        state = arg_state(st, state_obj, 3, sshape, "(batch, channels, kernel_size - 1)", &ok);
        if (!ok) {
            goto done;
        }
    }
    npy_intp dims[3] = {(npy_intp)a.B, (npy_intp)a.T, (npy_intp)a.C};
    if ((y = (PyArrayObject *)PyArray_SimpleNew(3, dims, NPY_FLOAT32)) == NULL) {
        goto done;
    }
    if (state != NULL && state_disjoint(st, state, x, "x") < 0) {
        goto done;
    }
    a.x = PyArray_DATA(x);
    a.w = PyArray_DATA(w);
    a.bias = bias ? PyArray_DATA(bias) : NULL;
    a.state = state ? PyArray_DATA(state) : NULL;
    a.y = PyArray_DATA(y);
    int rc;
    Py_BEGIN_ALLOW_THREADS tf_threads_begin();
    rc = tf_causal_conv1d(&a, &err);
    Py_END_ALLOW_THREADS if (rc < 0)
    {
        tf_err_raise(st, &err);
        goto done;
    }
    result = Py_NewRef(y);
done:
    Py_XDECREF(x);
    Py_XDECREF(w);
    Py_XDECREF(bias);
    Py_XDECREF(state);
    Py_XDECREF(y);
    return result;
}

PyDoc_STRVAR(
    causal_conv1d_doc,
    "causal_conv1d($module, x, weight, bias=None, *, state=None, activation=None)\n--\n\n"
    "Causal depthwise 1-D convolution (Mamba's short convolution), token-major: x (batch, L,\n"
    "channels) float32, weight (channels, kernel_size) or HF's Conv1d weight (channels, 1,\n"
    "kernel_size), bias (channels,). Returns y (batch, L, channels) with\n\n"
    "    y[b, t, c] = act(bias[c] + sum_j weight[c, j] * x[b, t - (K-1) + j, c])\n\n"
    "where inputs before the first token come from state (batch, channels, kernel_size - 1)\n"
    "(oldest first; zeros when state is None). A given state is updated IN PLACE to the last\n"
    "kernel_size - 1 inputs, so prefill then one-token calls equal one call over the whole\n"
    "sequence. activation: None or 'silu' (fused).");

static PyObject *
selective_scan(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"x", "dt", "A", "B", "C", "D", "z", "dt_bias", "state", NULL};
    PyObject *x_obj, *dt_obj, *A_obj, *B_obj, *C_obj, *D_obj = Py_None, *z_obj = Py_None,
                                                      *bias_obj = Py_None, *state_obj = Py_None;
    PyObject *result = NULL;
    PyArrayObject *x = NULL, *dt = NULL, *A = NULL, *Bm = NULL, *Cm = NULL, *Dk = NULL, *z = NULL,
                  *bias = NULL, *state = NULL, *y = NULL;
    tf_selective_scan_args a;
    tf_err err = {0};
    int ok = 1;
    tf_state *st = tf_state_of_module(module);
    memset(&a, 0, sizeof(a));
    if (!TF_PARSE(st, args, kwds, "OOOOO|$OOOO:selective_scan", kwlist, &x_obj, &dt_obj, &A_obj,
                  &B_obj, &C_obj, &D_obj, &z_obj, &bias_obj, &state_obj)) {
        return NULL;
    }
    const int64_t any3[3] = {-1, -1, -1};
    if ((x = arg_exact(st, x_obj, "x", 3, any3, "(batch, length, channels)")) == NULL) {
        goto done;
    }
    a.B = PyArray_DIM(x, 0);
    a.T = PyArray_DIM(x, 1);
    a.D = PyArray_DIM(x, 2);
    const int64_t xshape[3] = {a.B, a.T, a.D}, ashape[2] = {a.D, -1};
    if ((dt = arg_exact(st, dt_obj, "dt", 3, xshape, "x's (batch, length, channels)")) == NULL ||
        (A = arg_exact(st, A_obj, "A", 2, ashape, "(channels, state_size)")) == NULL) {
        goto done;
    }
    a.N = PyArray_DIM(A, 1);
    const int64_t bcshape[3] = {a.B, a.T, a.N}, dshape[1] = {a.D}, sshape[3] = {a.B, a.D, a.N};
    if ((Bm = arg_exact(st, B_obj, "B", 3, bcshape, "(batch, length, state_size)")) == NULL ||
        (Cm = arg_exact(st, C_obj, "C", 3, bcshape, "(batch, length, state_size)")) == NULL) {
        goto done;
    }
    Dk = arg_optional(st, D_obj, "D", 1, dshape, "(channels,)", &ok);
    if (ok) {
        z = arg_optional(st, z_obj, "z", 3, xshape, "x's (batch, length, channels)", &ok);
    }
    if (ok) {
        bias = arg_optional(st, bias_obj, "dt_bias", 1, dshape, "(channels,)", &ok);
    }
    if (ok) {
        state = arg_state(st, state_obj, 3, sshape, "(batch, channels, state_size)", &ok);
    }
    if (!ok) {
        goto done;
    }
    const float *Av = PyArray_DATA(A);
    const int64_t nA = PyArray_SIZE(A); /* hoisted: PyArray_SIZE multiplies the dims each time */
    for (int64_t i = 0; i < nA; i++) {
        if (!(Av[i] <= 0.0f)) {
            tf_value_error(st,
                           "A holds %g > 0 at flat index %lld: A is -exp(A_log) and must be <= 0 "
                           "(a positive A makes the state grow without bound)",
                           (double)Av[i], (long long)i);
            goto done;
        }
    }
    if (state != NULL) {
        PyArrayObject *ins[] = {x, dt, Bm, Cm, z};
        const char *names[] = {"x", "dt", "B", "C", "z"};
        for (int i = 0; i < 5; i++) {
            if (ins[i] != NULL && state_disjoint(st, state, ins[i], names[i]) < 0) {
                goto done;
            }
        }
    }
    npy_intp ydims[3] = {(npy_intp)a.B, (npy_intp)a.T, (npy_intp)a.D};
    if ((y = (PyArrayObject *)PyArray_SimpleNew(3, ydims, NPY_FLOAT32)) == NULL) {
        goto done;
    }
    a.x = PyArray_DATA(x);
    a.dt = PyArray_DATA(dt);
    a.dt_bias = bias ? PyArray_DATA(bias) : NULL;
    a.A = Av;
    a.Bm = PyArray_DATA(Bm);
    a.Cm = PyArray_DATA(Cm);
    a.Dskip = Dk ? PyArray_DATA(Dk) : NULL;
    a.z = z ? PyArray_DATA(z) : NULL;
    a.state = state ? PyArray_DATA(state) : NULL;
    a.y = PyArray_DATA(y);
    int rc;
    Py_BEGIN_ALLOW_THREADS tf_threads_begin();
    rc = tf_selective_scan(&a, &err);
    Py_END_ALLOW_THREADS if (rc < 0)
    {
        tf_err_raise(st, &err);
        goto done;
    }
    result = Py_NewRef(y);
done:
    Py_XDECREF(x);
    Py_XDECREF(dt);
    Py_XDECREF(A);
    Py_XDECREF(Bm);
    Py_XDECREF(Cm);
    Py_XDECREF(Dk);
    Py_XDECREF(z);
    Py_XDECREF(bias);
    Py_XDECREF(state);
    Py_XDECREF(y);
    return result;
}

PyDoc_STRVAR(
    selective_scan_doc,
    "selective_scan($module, x, dt, A, B, C, *, D=None, z=None, dt_bias=None, state=None)\n"
    "--\n\n"
    "Mamba's selective scan (S6), token-major: x and dt (batch, L, channels), A (channels,\n"
    "state_size) = -exp(A_log) (<= 0), B and C (batch, L, state_size), D and dt_bias\n"
    "(channels,), z (batch, L, channels); float32. Per channel d, with s = state[b, d, :]:\n\n"
    "    delta = softplus(dt + dt_bias)\n"
    "    s     = exp(delta * A[d]) * s + delta * x * B[b, t]\n"
    "    y     = (s . C[b, t] + D[d] * x) * silu(z)\n\n"
    "Returns y (batch, L, channels). state (batch, channels, state_size) is the starting state\n"
    "(zeros when None) and is updated IN PLACE to the state after the last token, so prefill\n"
    "then one-token calls equal one call over the whole sequence.");

static PyObject *
ssd_scan(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"x",       "dt",       "A",     "B",    "C",          "D",
                             "dt_bias", "dt_limit", "state", "mode", "chunk_size", NULL};
    PyObject *x_obj, *dt_obj, *A_obj, *B_obj, *C_obj, *D_obj = Py_None, *bias_obj = Py_None,
                                                      *limit_obj = Py_None, *state_obj = Py_None;
    const char *mode = "chunkwise";
    long long chunk = 64;
    PyObject *result = NULL;
    PyArrayObject *x = NULL, *dt = NULL, *A = NULL, *Bm = NULL, *Cm = NULL, *Dk = NULL,
                  *bias = NULL, *state = NULL, *y = NULL;
    tf_ssd_args a;
    tf_err err = {0};
    int ok = 1;
    tf_state *st = tf_state_of_module(module);
    memset(&a, 0, sizeof(a));
    if (!TF_PARSE(st, args, kwds, "OOOOO|$OOOOsL:ssd_scan", kwlist, &x_obj, &dt_obj, &A_obj, &B_obj,
                  &C_obj, &D_obj, &bias_obj, &limit_obj, &state_obj, &mode, &chunk)) {
        return NULL;
    }
    if (strcmp(mode, "chunkwise") == 0) {
        a.mode = TF_SSD_CHUNKWISE;
    }
    else if (strcmp(mode, "recurrent") == 0) {
        a.mode = TF_SSD_RECURRENT;
    }
    else {
        tf_value_error(st, "mode must be 'chunkwise' or 'recurrent', got '%s'", mode);
        goto done;
    }
    if (chunk < 1 || chunk > 1024) {
        tf_value_error(st, "chunk_size must be in [1, 1024], got %lld", chunk);
        goto done;
    }
    a.chunk = chunk;
    a.dt_min = 0.0f;
    a.dt_max = INFINITY;
    if (limit_obj != Py_None) {
        double lo, hi;
        if (!PyArg_ParseTuple(limit_obj, "dd", &lo, &hi)) {
            PyErr_Clear();
            tf_type_error(st, "dt_limit must be a pair (min, max) of floats, got %s",
                          Py_TYPE(limit_obj)->tp_name);
            goto done;
        }
        if (isnan(lo) || isnan(hi) || lo > hi) {
            tf_value_error(st, "dt_limit must be (min, max) with min <= max, got (%g, %g)", lo, hi);
            goto done;
        }
        a.dt_min = (float)lo;
        a.dt_max = (float)hi;
    }
    const int64_t any4[4] = {-1, -1, -1, -1};
    if ((x = arg_exact(st, x_obj, "x", 4, any4, "(batch, length, heads, head_dim)")) == NULL) {
        goto done;
    }
    a.B = PyArray_DIM(x, 0);
    a.T = PyArray_DIM(x, 1);
    a.H = PyArray_DIM(x, 2);
    a.P = PyArray_DIM(x, 3);
    const int64_t dtshape[3] = {a.B, a.T, a.H}, hshape[1] = {a.H}, bcany[4] = {a.B, a.T, -1, -1};
    if ((dt = arg_exact(st, dt_obj, "dt", 3, dtshape, "x's (batch, length, heads)")) == NULL ||
        (A = arg_exact(st, A_obj, "A", 1, hshape, "(heads,)")) == NULL ||
        (Bm = arg_exact(st, B_obj, "B", 4, bcany, "(batch, length, groups, state_size)")) == NULL) {
        goto done;
    }
    a.G = PyArray_DIM(Bm, 2);
    a.N = PyArray_DIM(Bm, 3);
    if (a.H % a.G != 0) {
        tf_value_error(st, "B has %lld groups, which must divide the %lld heads of x",
                       (long long)a.G, (long long)a.H);
        goto done;
    }
    const int64_t bcshape[4] = {a.B, a.T, a.G, a.N}, sshape[4] = {a.B, a.H, a.P, a.N};
    if ((Cm = arg_exact(st, C_obj, "C", 4, bcshape, "B's (batch, length, groups, state_size)")) ==
        NULL) {
        goto done;
    }
    Dk = arg_optional(st, D_obj, "D", 1, hshape, "(heads,)", &ok);
    if (ok) {
        bias = arg_optional(st, bias_obj, "dt_bias", 1, hshape, "(heads,)", &ok);
    }
    if (ok) {
        state = arg_state(st, state_obj, 4, sshape, "(batch, heads, head_dim, state_size)", &ok);
    }
    if (!ok) {
        goto done;
    }
    const float *Av = PyArray_DATA(A);
    for (int64_t i = 0; i < a.H; i++) {
        if (!(Av[i] <= 0.0f)) {
            tf_value_error(st,
                           "A holds %g > 0 at head %lld: A is -exp(A_log) and must be <= 0 "
                           "(a positive A makes the state grow without bound)",
                           (double)Av[i], (long long)i);
            goto done;
        }
    }
    if (state != NULL) {
        PyArrayObject *ins[] = {x, dt, Bm, Cm};
        const char *names[] = {"x", "dt", "B", "C"};
        for (int i = 0; i < 4; i++) {
            if (state_disjoint(st, state, ins[i], names[i]) < 0) {
                goto done;
            }
        }
    }
    npy_intp ydims[4] = {(npy_intp)a.B, (npy_intp)a.T, (npy_intp)a.H, (npy_intp)a.P};
    if ((y = (PyArrayObject *)PyArray_SimpleNew(4, ydims, NPY_FLOAT32)) == NULL) {
        goto done;
    }
    a.x = PyArray_DATA(x);
    a.dt = PyArray_DATA(dt);
    a.dt_bias = bias ? PyArray_DATA(bias) : NULL;
    a.A = Av;
    a.Bm = PyArray_DATA(Bm);
    a.Cm = PyArray_DATA(Cm);
    a.Dskip = Dk ? PyArray_DATA(Dk) : NULL;
    a.state = state ? PyArray_DATA(state) : NULL;
    a.y = PyArray_DATA(y);
    int rc;
    Py_BEGIN_ALLOW_THREADS tf_threads_begin();
    rc = tf_ssd(&a, &err);
    Py_END_ALLOW_THREADS if (rc < 0)
    {
        tf_err_raise(st, &err);
        goto done;
    }
    result = Py_NewRef(y);
done:
    Py_XDECREF(x);
    Py_XDECREF(dt);
    Py_XDECREF(A);
    Py_XDECREF(Bm);
    Py_XDECREF(Cm);
    Py_XDECREF(Dk);
    Py_XDECREF(bias);
    Py_XDECREF(state);
    Py_XDECREF(y);
    return result;
}

PyDoc_STRVAR(
    ssd_scan_doc,
    "ssd_scan($module, x, dt, A, B, C, *, D=None, dt_bias=None, dt_limit=None, state=None,\n"
    "         mode='chunkwise', chunk_size=64)\n--\n\n"
    "Mamba-2's SSD scan, token-major: x (batch, L, heads, head_dim), dt (batch, L, heads),\n"
    "A (heads,) = -exp(A_log) (<= 0), B and C (batch, L, groups, state_size) (groups divides\n"
    "heads; head h uses group h // (heads // groups)), D and dt_bias (heads,); float32. Per\n"
    "head, with S = state[b, h] (head_dim, state_size):\n\n"
    "    delta = clamp(softplus(dt + dt_bias), *dt_limit)\n"
    "    S     = exp(delta * A[h]) * S + outer(delta * x, B[b, t, g])\n"
    "    y     = S @ C[b, t, g] + D[h] * x\n\n"
    "Returns y (batch, L, heads, head_dim). mode='recurrent' runs token by token (decoding),\n"
    "'chunkwise' in chunks of chunk_size tokens with GEMM-shaped blocks (prefill); they agree\n"
    "to float32 rounding. state (batch, heads, head_dim, state_size) is the starting state\n"
    "(zeros when None) and is updated IN PLACE to the state after the last token.");

static PyObject *
gated_rms_norm(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"x", "gate", "weight", "n_groups", "eps", NULL};
    PyObject *x_obj, *z_obj, *w_obj, *result = NULL;
    PyArrayObject *x = NULL, *z = NULL, *w = NULL, *out = NULL;
    Py_ssize_t n_groups = 1;
    double eps = 1e-6;
    tf_state *st = tf_state_of_module(module);
    if (!TF_PARSE(st, args, kwds, "OOO|$nd:gated_rms_norm", kwlist, &x_obj, &z_obj, &w_obj,
                  &n_groups, &eps)) {
        return NULL;
    }
    if (!(eps >= 0.0) || !isfinite(eps)) {
        tf_value_error(st, "eps must be a finite number >= 0, got %g", eps);
        return NULL;
    }
    x = tf_arg_f32(st, x_obj, "x", 1, 4);
    if (x == NULL || tf_check_nonempty(st, x, "x") < 0 || tf_check_finite(st, x, "x") < 0) {
        goto done;
    }
    const int nd = PyArray_NDIM(x);
    int64_t shape[4] = {0, 0, 0, 0};
    for (int i = 0; i < nd; i++) {
        shape[i] = PyArray_DIM(x, i);
    }
    const int64_t C = shape[nd - 1], M = PyArray_SIZE(x) / C;
    if ((z = arg_exact(st, z_obj, "gate", nd, shape, "x's shape")) == NULL) {
        goto done;
    }
    const int64_t wshape[1] = {C};
    if ((w = arg_exact(st, w_obj, "weight", 1, wshape, "(x's last dim,)")) == NULL) {
        goto done;
    }
    if (n_groups < 1 || C % n_groups != 0) {
        tf_value_error(st, "n_groups=%zd must be >= 1 and divide x's last dim %lld", n_groups,
                       (long long)C);
        goto done;
    }
    if ((out = (PyArrayObject *)PyArray_SimpleNew(nd, PyArray_DIMS(x), NPY_FLOAT32)) == NULL) {
        goto done;
    }
    const float *xp = PyArray_DATA(x), *zp = PyArray_DATA(z), *wp = PyArray_DATA(w);
    float *op = PyArray_DATA(out);
    Py_BEGIN_ALLOW_THREADS tf_threads_begin();
    tf_gated_rms_norm_rows(xp, zp, wp, M, C, (int64_t)n_groups, (float)eps, op);
    Py_END_ALLOW_THREADS result = Py_NewRef(out);
done:
    Py_XDECREF(x);
    Py_XDECREF(z);
    Py_XDECREF(w);
    Py_XDECREF(out);
    return result;
}

PyDoc_STRVAR(
    gated_rms_norm_doc,
    "gated_rms_norm($module, x, gate, weight, *, n_groups=1, eps=1e-06)\n--\n\n"
    "Mamba-2's gated RMSNorm (HF's MambaRMSNormGated): x and gate (..., channels) float32 of\n"
    "the same shape (1 to 4 dims), weight (channels,). The channels are n_groups groups of\n"
    "channels // n_groups; per row and group\n\n"
    "    g = x * silu(gate);   out = g / sqrt(mean(g^2) + eps) * weight\n\n"
    "Returns out, x's shape, float32.");

PyMethodDef tf_state_space_methods[] = {
    {"causal_conv1d", (PyCFunction)(void (*)(void))causal_conv1d, METH_VARARGS | METH_KEYWORDS,
     causal_conv1d_doc},
    {"selective_scan", (PyCFunction)(void (*)(void))selective_scan, METH_VARARGS | METH_KEYWORDS,
     selective_scan_doc},
    {"ssd_scan", (PyCFunction)(void (*)(void))ssd_scan, METH_VARARGS | METH_KEYWORDS, ssd_scan_doc},
    {"gated_rms_norm", (PyCFunction)(void (*)(void))gated_rms_norm, METH_VARARGS | METH_KEYWORDS,
     gated_rms_norm_doc},
    {NULL},
};
