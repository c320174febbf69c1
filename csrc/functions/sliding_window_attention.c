/* sliding_window_attention.c — tfcore.functional.sliding_window_attention: argument checking
 * for the Longformer attention kernel (kernels/attention/sliding_window.c). Query/key/value/out
 * may be views with a contiguous last axis, e.g. (B, T, H, D) projections seen as
 * (B, H, T, D). */
#include "tfcore.h"
#include "kernels/attention/sliding_window.h"

#include <math.h>
#include <string.h>

/* A (B, H, n, D) float32 view; n < 0 accepts any length (new ref or NULL). */
static PyArrayObject *
view4(tf_state *st, PyObject *obj, const char *name, const int64_t want[4])
{
    PyArrayObject *a = tf_arg_f32_view(st, obj, name, 4, 4, 1);
    if (a == NULL) {
        return NULL;
    }
    for (int i = 0; i < 4; i++) {
        if (want[i] >= 0 && PyArray_DIM(a, i) != want[i]) {
            char shape[96];
            tf_shape_str(a, shape, sizeof(shape));
            tf_value_error(st,
                           "%s has shape %s, expected (batch, heads, %s, head_dim) = "
                           "(%lld, %lld, %lld, %lld)",
                           name, shape,
                           i == 2 && strcmp(name, "global_query") == 0 ? "global slots" : "length",
                           (long long)want[0], (long long)want[1], (long long)want[2],
                           (long long)want[3]);
            Py_DECREF(a);
            return NULL;
        }
    }
    return a;
}

/* Does the (B, H, n, D) view hold a NaN or Inf? (x * 0 is NaN exactly then.) No GIL. */

/* A (B, L) 0/1 mask of bool, integer or float dtype as a C-contiguous bool array. */
static PyArrayObject *
mask_arg(tf_state *st, PyObject *obj, const char *name, int64_t B, int64_t L)
{
    if (obj == Py_None) {
        return NULL;
    }
    if (!PyArray_Check(obj)) {
        tf_type_error(st, "%s must be a numpy.ndarray (batch, length) of 0/1 values, got %s", name,
                      Py_TYPE(obj)->tp_name);
        return NULL;
    }
    PyArrayObject *m = (PyArrayObject *)obj;
    if (!PyArray_ISBOOL(m) && !PyArray_ISINTEGER(m) && !PyArray_ISFLOAT(m)) {
        tf_type_error(st, "%s must hold 0/1 values (bool, integer or float dtype), got %s", name,
                      tf_dtype_name(m));
        return NULL;
    }
    if (PyArray_NDIM(m) != 2 || PyArray_DIM(m, 0) != B || PyArray_DIM(m, 1) != L) {
        char shape[96];
        tf_shape_str(m, shape, sizeof(shape));
        tf_value_error(st, "%s has shape %s, expected (batch, length) = (%lld, %lld)", name, shape,
                       (long long)B, (long long)L);
        return NULL;
    }
    return (PyArrayObject *)PyArray_FROMANY(obj, NPY_BOOL, 2, 2,
                                            NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_FORCECAST);
}

typedef struct {
    PyArrayObject *q, *k, *v, *gq, *gk, *gv, *real, *global, *out, *weights, *gweights;
} swa_arrays;

static PyObject *
sliding_window_attention(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"query",
                             "key",
                             "value",
                             "window",
                             "dilation",
                             "attention_mask",
                             "global_attention_mask",
                             "global_query",
                             "global_key",
                             "global_value",
                             "scale",
                             "return_weights",
                             "out",
                             NULL};
    PyObject *q_obj, *k_obj, *v_obj, *real_obj = Py_None, *global_obj = Py_None, *gq_obj = Py_None,
                                     *gk_obj = Py_None, *gv_obj = Py_None, *scale_obj = Py_None,
                                     *out_obj = Py_None, *result = NULL;
    long long window, dilation = 1;
    int return_weights = 0;
    swa_arrays arr = {0};
    tf_swa_args a;
    tf_err err = {0};
    tf_state *st = tf_state_of_module(module);
    memset(&a, 0, sizeof(a));
    if (!TF_PARSE(st, args, kwds, "OOOL|$LOOOOOOpO:sliding_window_attention", kwlist, &q_obj,
                  &k_obj, &v_obj, &window, &dilation, &real_obj, &global_obj, &gq_obj, &gk_obj,
                  &gv_obj, &scale_obj, &return_weights, &out_obj)) {
        return NULL;
    }
    const int64_t any[4] = {-1, -1, -1, -1};
    if ((arr.q = view4(st, q_obj, "query", any)) == NULL) {
        goto done;
    }
    if (tf_check_nonempty(st, arr.q, "query") < 0) {
        goto done;
    }
    a.B = PyArray_DIM(arr.q, 0);
    a.H = PyArray_DIM(arr.q, 1);
    a.L = PyArray_DIM(arr.q, 2);
    a.D = PyArray_DIM(arr.q, 3);
    const int64_t full[4] = {a.B, a.H, a.L, a.D};
    if ((arr.k = view4(st, k_obj, "key", full)) == NULL ||
        (arr.v = view4(st, v_obj, "value", full)) == NULL) {
        goto done;
    }
    if (window < 0 || window > INT32_MAX) {
        tf_value_error(st, "window (one-sided) must be in [0, %d], got %lld", INT32_MAX, window);
        goto done;
    }
    if (dilation < 1 || dilation > INT32_MAX) {
        tf_value_error(st, "dilation must be in [1, %d], got %lld", INT32_MAX, dilation);
        goto done;
    }
    a.window = window;
    a.dilation = dilation;
    if (scale_obj == Py_None) {
        a.scale = (float)(1.0 / sqrt((double)a.D));
    }
    else {
        double s = PyFloat_AsDouble(scale_obj);
        if (s == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            tf_type_error(st, "scale must be a float or None, got %s", Py_TYPE(scale_obj)->tp_name);
            goto done;
        }
        if (!isfinite(s)) {
            tf_value_error(st, "scale must be finite, got %g", s);
            goto done;
        }
        a.scale = (float)s;
    }
    arr.real = mask_arg(st, real_obj, "attention_mask", a.B, a.L);
    if (arr.real == NULL && PyErr_Occurred()) {
        goto done;
    }
    arr.global = mask_arg(st, global_obj, "global_attention_mask", a.B, a.L);
    if (arr.global == NULL && PyErr_Occurred()) {
        goto done;
    }
    a.real = arr.real ? PyArray_DATA(arr.real) : NULL;
    a.global = arr.global ? PyArray_DATA(arr.global) : NULL;
    a.G = tf_swa_global_slots(a.real, a.global, a.B, a.L);
    const int64_t gshape[4] = {a.B, a.H, a.G, a.D};
    if (gq_obj != Py_None) {
        if ((arr.gq = view4(st, gq_obj, "global_query", a.G > 0 ? gshape : any)) == NULL) {
            goto done;
        }
        if (a.G > 0) {
            a.gq = PyArray_DATA(arr.gq);
            a.gq_sb = tf_estride(arr.gq, 0);
            a.gq_sh = tf_estride(arr.gq, 1);
            a.gq_sg = tf_estride(arr.gq, 2);
        }
    }
    if (gk_obj != Py_None) {
        if ((arr.gk = view4(st, gk_obj, "global_key", full)) == NULL) {
            goto done;
        }
        a.gk = PyArray_DATA(arr.gk);
        a.gk_sb = tf_estride(arr.gk, 0);
        a.gk_sh = tf_estride(arr.gk, 1);
        a.gk_sl = tf_estride(arr.gk, 2);
    }
    if (gv_obj != Py_None) {
        if ((arr.gv = view4(st, gv_obj, "global_value", full)) == NULL) {
            goto done;
        }
        a.gv = PyArray_DATA(arr.gv);
        a.gv_sb = tf_estride(arr.gv, 0);
        a.gv_sh = tf_estride(arr.gv, 1);
        a.gv_sl = tf_estride(arr.gv, 2);
    }
    if (tf_check_finite_view(st, arr.q, "query") < 0 ||
        tf_check_finite_view(st, arr.k, "key") < 0 ||
        tf_check_finite_view(st, arr.v, "value") < 0 ||
        (a.gq && tf_check_finite_view(st, arr.gq, "global_query") < 0) ||
        tf_check_finite_view(st, arr.gk, "global_key") < 0 ||
        tf_check_finite_view(st, arr.gv, "global_value") < 0) {
        goto done;
    }
    npy_intp odims[4] = {(npy_intp)a.B, (npy_intp)a.H, (npy_intp)a.L, (npy_intp)a.D};
    if (out_obj == Py_None) {
        if ((arr.out = (PyArrayObject *)PyArray_SimpleNew(4, odims, NPY_FLOAT32)) == NULL) {
            goto done;
        }
    }
    else {
        if ((arr.out = view4(st, out_obj, "out", full)) == NULL) {
            goto done;
        }
        if (!PyArray_ISWRITEABLE(arr.out)) {
            tf_value_error(st, "out is read-only");
            goto done;
        }
        PyArrayObject *ins[6] = {arr.q, arr.k, arr.v, arr.gq, arr.gk, arr.gv};
        const char *names[6] = {"query",        "key",        "value",
                                "global_query", "global_key", "global_value"};
        for (int i = 0; i < 6; i++) {
            if (tf_check_no_overlap(st, arr.out, ins[i], names[i]) < 0) {
                goto done;
            }
        }
    }
    if (return_weights) {
        const double cols = (double)a.G + 2.0 * (double)window + 1.0;
        const double bytes = 4.0 * (double)a.B * (double)a.H * (double)a.L * (cols + (double)a.G);
        npy_intp wd[4] = {(npy_intp)a.B, (npy_intp)a.H, (npy_intp)a.L, (npy_intp)cols};
        npy_intp gd[4] = {(npy_intp)a.B, (npy_intp)a.H, (npy_intp)a.L, (npy_intp)a.G};
        /* refuse absurd sizes up front: with overcommit an allocation may "succeed" and the
         * kernel's writes then exhaust memory */
        if (bytes > 0x1p36 ||
            (arr.weights = (PyArrayObject *)PyArray_SimpleNew(4, wd, NPY_FLOAT32)) == NULL ||
            (arr.gweights = (PyArrayObject *)PyArray_ZEROS(4, gd, NPY_FLOAT32, 0)) == NULL) {
            PyErr_Clear(); /* NumPy's MemoryError: say which argument asked for it */
            tf_value_error(
                st,
                "return_weights would need %.3g bytes for (%lld, %lld, %lld, %.0f) "
                "weights (limit 64 GiB, or not allocatable); use a smaller window or input",
                bytes, (long long)a.B, (long long)a.H, (long long)a.L, cols);
            goto done;
        }
        a.weights = PyArray_DATA(arr.weights);
        a.gweights = PyArray_DATA(arr.gweights);
    }
    a.q = PyArray_DATA(arr.q);
    a.q_sb = tf_estride(arr.q, 0);
    a.q_sh = tf_estride(arr.q, 1);
    a.q_sl = tf_estride(arr.q, 2);
    a.k = PyArray_DATA(arr.k);
    a.k_sb = tf_estride(arr.k, 0);
    a.k_sh = tf_estride(arr.k, 1);
    a.k_sl = tf_estride(arr.k, 2);
    a.v = PyArray_DATA(arr.v);
    a.v_sb = tf_estride(arr.v, 0);
    a.v_sh = tf_estride(arr.v, 1);
    a.v_sl = tf_estride(arr.v, 2);
    a.out = PyArray_DATA(arr.out);
    a.o_sb = tf_estride(arr.out, 0);
    a.o_sh = tf_estride(arr.out, 1);
    a.o_sl = tf_estride(arr.out, 2);
    int rc;
    Py_BEGIN_ALLOW_THREADS tf_threads_begin();
    rc = tf_swa(&a, &err);
    Py_END_ALLOW_THREADS if (rc < 0)
    {
        tf_err_raise(st, &err);
        goto done;
    }
    result =
        return_weights ? PyTuple_Pack(3, arr.out, arr.weights, arr.gweights) : Py_NewRef(arr.out);
done:
    Py_XDECREF(arr.q);
    Py_XDECREF(arr.k);
    Py_XDECREF(arr.v);
    Py_XDECREF(arr.gq);
    Py_XDECREF(arr.gk);
    Py_XDECREF(arr.gv);
    Py_XDECREF(arr.real);
    Py_XDECREF(arr.global);
    Py_XDECREF(arr.out);
    Py_XDECREF(arr.weights);
    Py_XDECREF(arr.gweights);
    return result;
}

PyDoc_STRVAR(
    swa_doc,
    "sliding_window_attention($module, query, key, value, window, *, dilation=1,\n"
    "                         attention_mask=None, global_attention_mask=None, global_query=None,\n"
    "                         global_key=None, global_value=None, scale=None,\n"
    "                         return_weights=False, out=None)\n--\n\n"
    "Longformer attention (Hugging Face's LongformerSelfAttention, plus dilation): a sliding\n"
    "window with global tokens, in memory linear in the length (no (L, L) scores or masks).\n\n"
    "query, key, value: (B, H, L, D) float32; views with a contiguous last axis are read in\n"
    "place. window: one-sided (HF's attention_window // 2): a query i that is not global\n"
    "attends to the keys i + dilation * t, |t| <= window, that are neither padding nor global,\n"
    "and to every global key of its batch item (once), in one softmax. attention_mask (B, L):\n"
    "1 = token, 0 = padding (padding queries get zeros). global_attention_mask (B, L): 1 =\n"
    "global token (ignored on padding). A global query attends to every non-padding key with\n"
    "its own projections: global_query (B, H, G, D) holds them for each item's global tokens in\n"
    "position order (G = the most global tokens of any item; rows past an item's count are\n"
    "ignored), global_key / global_value (B, H, L, D) for all positions; each defaults to the\n"
    "regular query/key/value. scale defaults to 1/sqrt(D).\n\n"
    "Returns (B, H, L, D), or with return_weights=True (output, attentions, global_attentions)\n"
    "in HF's layout: attentions (B, H, L, G + 2 window + 1) = the global keys by slot, then\n"
    "the window (column G + window + t for key i + dilation * t; zero rows for global and\n"
    "padding queries), global_attentions (B, H, L, G) = each global query's weights over keys.\n"
    "out: a preallocated (B, H, L, D) float32 array or view to write. Inputs with NaN or Inf\n"
    "are refused.");

PyMethodDef tf_sliding_window_attention_methods[] = {
    {"sliding_window_attention", (PyCFunction)(void (*)(void))sliding_window_attention,
     METH_VARARGS | METH_KEYWORDS, swa_doc},
    {NULL, NULL, 0, NULL},
};
