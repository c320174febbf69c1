/* scaled_dot_product_attention.c — tfcore.functional.scaled_dot_product_attention: argument
 * checking and broadcasting for the fused kernel of kernels/attention/sdpa.c.
 * Query/key/value/out may be any views whose last axis is contiguous (e.g. a (B, T, H, D)
 * projection seen as (B, H, T, D)): the kernel reads them in place through strides, so
 * transposed views cost no copy. */
#include "tfcore.h"
#include "functions/disentangled_attention.h"
#include "kernels/attention/sdpa.h"

#include <math.h>
#include <string.h>

/* NaN/Inf check of query, key or value; contiguous ones get the message with the flat index
 * of the first bad value. */
static int
check_input_finite(tf_state *st, PyArrayObject *a, const char *name)
{
    return PyArray_IS_C_CONTIGUOUS(a) ? tf_check_finite(st, a, name)
                                      : tf_check_finite_view(st, a, name);
}

static int
parse_window_side(tf_state *st, PyObject *obj, int64_t *out)
{
    if (obj == Py_None) {
        *out = -1;
        return 0;
    }
    long long v = PyLong_AsLongLong(obj);
    if (v == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        tf_type_error(st, "window entries must be ints >= 0 or None");
        return -1;
    }
    if (v < 0) {
        tf_value_error(st, "window entries must be >= 0 (or None for unbounded), got %lld", v);
        return -1;
    }
    *out = v;
    return 0;
}

typedef struct {
    PyArrayObject *q, *k, *v, *mask, *bias, *out, *weights;
    PyArrayObject *dis[3];  /* disentangled c2p, p2c, relative_index */
    PyArrayObject *dpos[3]; /* disentangled_positions pos_key, pos_query, relative_index */
} sdpa_arrays;

static PyObject *
sdpa(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"query",
                             "key",
                             "value",
                             "attn_mask",
                             "is_causal",
                             "scale",
                             "enable_gqa",
                             "window",
                             "bias",
                             "return_weights",
                             "out",
                             "disentangled",
                             "disentangled_positions",
                             "softcap",
                             NULL};
    PyObject *q_obj, *k_obj, *v_obj,
        *mask_obj = Py_None, *scale_obj = Py_None, *window_obj = Py_None, *bias_obj = Py_None,
        *out_obj = Py_None, *dis_obj = Py_None, *dpos_obj = Py_None, *softcap_obj = Py_None,
        *result = NULL;
    int causal = 0, gqa = 0, return_weights = 0;
    sdpa_arrays arr = {0};
    tf_attn_args a;
    tf_err err = {0};
    tf_state *st = tf_state_of_module(module);
    memset(&a, 0, sizeof(a));
    if (!TF_PARSE(st, args, kwds, "OOO|OpOp$OOpOOOO:scaled_dot_product_attention", kwlist, &q_obj,
                  &k_obj, &v_obj, &mask_obj, &causal, &scale_obj, &gqa, &window_obj, &bias_obj,
                  &return_weights, &out_obj, &dis_obj, &dpos_obj, &softcap_obj)) {
        return NULL;
    }
    if (tf_arg_softcap(st, softcap_obj, &a.softcap) < 0) {
        return NULL;
    }
    if ((arr.q = tf_arg_qkv_view(st, q_obj, "query", 3, 4)) == NULL ||
        (arr.k = tf_arg_qkv_view(st, k_obj, "key", 3, 4)) == NULL ||
        (arr.v = tf_arg_qkv_view(st, v_obj, "value", 3, 4)) == NULL) {
        goto done;
    }
    const int nd = PyArray_NDIM(arr.q);
    if (PyArray_NDIM(arr.k) != nd || PyArray_NDIM(arr.v) != nd) {
        tf_value_error(
            st, "query, key and value must have the same number of dimensions, got %d, %d, %d", nd,
            PyArray_NDIM(arr.k), PyArray_NDIM(arr.v));
        goto done;
    }
    const int o = nd - 4; /* axis offset: -1 for 3-D inputs (no batch axis) */
    a.B = nd == 4 ? PyArray_DIM(arr.q, 0) : 1;
    a.H = PyArray_DIM(arr.q, 1 + o);
    a.L = PyArray_DIM(arr.q, 2 + o);
    a.D = PyArray_DIM(arr.q, 3 + o);
    a.KVH = PyArray_DIM(arr.k, 1 + o);
    a.S = PyArray_DIM(arr.k, 2 + o);
    a.Dv = PyArray_DIM(arr.v, 3 + o);
    if (nd == 4 && (PyArray_DIM(arr.k, 0) != a.B || PyArray_DIM(arr.v, 0) != a.B)) {
        tf_value_error(
            st, "batch sizes differ: query %lld, key %" NPY_INTP_FMT ", value %" NPY_INTP_FMT,
            (long long)a.B, PyArray_DIM(arr.k, 0), PyArray_DIM(arr.v, 0));
        goto done;
    }
    if (PyArray_DIM(arr.k, 3 + o) != a.D) {
        tf_value_error(st, "key head_dim %" NPY_INTP_FMT " differs from query head_dim %lld",
                       PyArray_DIM(arr.k, 3 + o), (long long)a.D);
        goto done;
    }
    if (PyArray_DIM(arr.v, 1 + o) != a.KVH || PyArray_DIM(arr.v, 2 + o) != a.S) {
        tf_value_error(st,
                       "value has %" NPY_INTP_FMT " heads and length %" NPY_INTP_FMT
                       ", expected key's %lld heads and length %lld",
                       PyArray_DIM(arr.v, 1 + o), PyArray_DIM(arr.v, 2 + o), (long long)a.KVH,
                       (long long)a.S);
        goto done;
    }
    if (a.KVH != a.H) {
        if (!gqa) {
            tf_value_error(st,
                           "query has %lld heads but key/value have %lld; pass enable_gqa=True "
                           "for grouped-query attention",
                           (long long)a.H, (long long)a.KVH);
            goto done;
        }
        if (a.H % a.KVH != 0) {
            tf_value_error(st, "query heads (%lld) must be a multiple of key/value heads (%lld)",
                           (long long)a.H, (long long)a.KVH);
            goto done;
        }
    }
    if (scale_obj == Py_None) {
        a.scale = (float)(1.0 / sqrt((double)a.D));
    }
    else {
        double s = PyFloat_AsDouble(scale_obj);
        if (s == -1.0 && PyErr_Occurred()) {
            goto done;
        }
        if (!isfinite(s)) {
            tf_value_error(st, "scale must be finite, got %g", s);
            goto done;
        }
        a.scale = (float)s;
    }
    const int64_t full[4] = {a.B, a.H, a.L, a.S};
    if (mask_obj != Py_None) {
        if (causal) {
            tf_value_error(st, "pass either attn_mask or is_causal=True, not both (as torch)");
            goto done;
        }
        if (!PyArray_Check(mask_obj)) {
            tf_type_error(st, "attn_mask must be a numpy.ndarray of bool or float32, got %s",
                          Py_TYPE(mask_obj)->tp_name);
            goto done;
        }
        arr.mask = (PyArrayObject *)Py_NewRef(mask_obj);
        int64_t ms[4];
        if (PyArray_TYPE(arr.mask) == NPY_BOOL) {
            if (tf_attn_broadcast(st, arr.mask, "attn_mask", full, ms) < 0) {
                goto done;
            }
            a.bool_mask = PyArray_DATA(arr.mask);
            a.bm_sb = ms[0];
            a.bm_sh = ms[1];
            a.bm_sl = ms[2];
            a.bm_ss = ms[3];
        }
        else if (PyArray_TYPE(arr.mask) == NPY_FLOAT32) {
            if (tf_attn_broadcast(st, arr.mask, "attn_mask", full, ms) < 0) {
                goto done;
            }
            a.mask = PyArray_DATA(arr.mask);
            a.m_sb = ms[0];
            a.m_sh = ms[1];
            a.m_sl = ms[2];
            a.m_ss = ms[3];
        }
        else {
            tf_type_error(
                st, "attn_mask must have dtype bool (True = attend) or float32 (added), got %s",
                tf_dtype_name(arr.mask));
            goto done;
        }
    }
    if (bias_obj != Py_None) {
        if (!PyArray_Check(bias_obj) || PyArray_TYPE((PyArrayObject *)bias_obj) != NPY_FLOAT32) {
            tf_type_error(st, "bias must be a float32 numpy.ndarray");
            goto done;
        }
        arr.bias = (PyArrayObject *)Py_NewRef(bias_obj);
        int64_t bs[4];
        if (tf_attn_broadcast(st, arr.bias, "bias", full, bs) < 0) {
            goto done;
        }
        a.bias = PyArray_DATA(arr.bias);
        a.b_sb = bs[0];
        a.b_sh = bs[1];
        a.b_sl = bs[2];
        a.b_ss = bs[3];
    }
    if (dis_obj != Py_None && tf_parse_disentangled(st, dis_obj, nd, &a, arr.dis) < 0) {
        goto done;
    }
    if (dpos_obj != Py_None && tf_parse_disentangled_positions(st, dpos_obj, &a, arr.dpos) < 0) {
        goto done;
    }
    a.causal = causal;
    a.window_left = a.window_right = -1;
    if (window_obj != Py_None) {
        if (!PyTuple_Check(window_obj) || PyTuple_GET_SIZE(window_obj) != 2) {
            tf_type_error(st, "window must be a tuple (left, right) of ints or None");
            goto done;
        }
        if (parse_window_side(st, PyTuple_GET_ITEM(window_obj, 0), &a.window_left) < 0 ||
            parse_window_side(st, PyTuple_GET_ITEM(window_obj, 1), &a.window_right) < 0) {
            goto done;
        }
    }
    /* output: (B, H, L, Dv) or (H, L, Dv) */
    npy_intp odims[4] = {(npy_intp)a.B, (npy_intp)a.H, (npy_intp)a.L, (npy_intp)a.Dv};
    if (out_obj == Py_None) {
        if ((arr.out = (PyArrayObject *)PyArray_SimpleNew(nd, odims - o, NPY_FLOAT32)) == NULL) {
            goto done;
        }
    }
    else {
        if ((arr.out = tf_arg_qkv_view(st, out_obj, "out", 3, 4)) == NULL) {
            goto done;
        }
        if (PyArray_NDIM(arr.out) != nd ||
            !PyArray_CompareLists(PyArray_DIMS(arr.out), odims - o, nd)) {
            tf_value_error(
                st, "out must have the output shape (batch, heads, query length, value head_dim)");
            goto done;
        }
        if (!PyArray_ISWRITEABLE(arr.out)) {
            tf_value_error(st, "out is read-only");
            goto done;
        }
        if (tf_check_no_overlap(st, arr.out, arr.q, "query") < 0 ||
            tf_check_no_overlap(st, arr.out, arr.k, "key") < 0 ||
            tf_check_no_overlap(st, arr.out, arr.v, "value") < 0) {
            goto done;
        }
    }
    if (return_weights) {
        npy_intp wdims[4] = {(npy_intp)a.B, (npy_intp)a.H, (npy_intp)a.L, (npy_intp)a.S};
        if ((arr.weights = (PyArrayObject *)PyArray_SimpleNew(nd, wdims - o, NPY_FLOAT32)) ==
            NULL) {
            goto done;
        }
        a.weights = PyArray_DATA(arr.weights);
    }
    a.q = PyArray_DATA(arr.q);
    a.q_sb = nd == 4 ? tf_estride(arr.q, 0) : 0;
    a.q_sh = tf_estride(arr.q, 1 + o);
    a.q_sl = tf_estride(arr.q, 2 + o);
    a.k = PyArray_DATA(arr.k);
    a.k_sb = nd == 4 ? tf_estride(arr.k, 0) : 0;
    a.k_sh = tf_estride(arr.k, 1 + o);
    a.k_ss = tf_estride(arr.k, 2 + o);
    a.v = PyArray_DATA(arr.v);
    a.v_sb = nd == 4 ? tf_estride(arr.v, 0) : 0;
    a.v_sh = tf_estride(arr.v, 1 + o);
    a.v_ss = tf_estride(arr.v, 2 + o);
    a.out = PyArray_DATA(arr.out);
    a.o_sb = nd == 4 ? tf_estride(arr.out, 0) : 0;
    a.o_sh = tf_estride(arr.out, 1 + o);
    a.o_sl = tf_estride(arr.out, 2 + o);
    int rc;
    Py_BEGIN_ALLOW_THREADS tf_threads_begin();
    rc = tf_attention(&a, &err);
    Py_END_ALLOW_THREADS if (rc < 0)
    {
        tf_err_raise(st, &err);
        goto done;
    }
    /* NaN/Inf in q, k or v makes the output non-finite; checking the output costs
     * O(L Dv) instead of re-reading K and V (which would double the memory traffic of
     * decoding). The inputs are scanned only to name the culprit. */
    if (!tf_rows_finite(a.out, a.o_sb, a.o_sh, a.o_sl, a.B, a.H, a.L, a.Dv)) {
        if (check_input_finite(st, arr.q, "query") == 0 &&
            check_input_finite(st, arr.k, "key") == 0 &&
            check_input_finite(st, arr.v, "value") == 0) {
            tf_value_error(st, "attention produced NaN or Inf (masks or bias overflowed?)");
        }
        goto done;
    }
    result = return_weights ? PyTuple_Pack(2, arr.out, arr.weights) : Py_NewRef(arr.out);
done:
    Py_XDECREF(arr.q);
    Py_XDECREF(arr.k);
    Py_XDECREF(arr.v);
    Py_XDECREF(arr.mask);
    Py_XDECREF(arr.bias);
    Py_XDECREF(arr.out);
    Py_XDECREF(arr.weights);
    for (int i = 0; i < 3; i++) {
        Py_XDECREF(arr.dis[i]);
        Py_XDECREF(arr.dpos[i]);
    }
    return result;
}

PyDoc_STRVAR(
    sdpa_doc,
    "scaled_dot_product_attention($module, query, key, value, attn_mask=None, is_causal=False,\n"
    "                             scale=None, enable_gqa=False, *, window=None, bias=None,\n"
    "                             return_weights=False, out=None, disentangled=None,\n"
    "                             disentangled_positions=None, softcap=None)\n--\n\n"
    "softmax(query @ key.T * scale + mask + bias) @ value, fused, with the semantics of\n"
    "torch.nn.functional.scaled_dot_product_attention (no dropout).\n\n"
    "query (B, H, L, D), key (B, KVH, S, D), value (B, KVH, S, Dv) float32 (3-D without B also\n"
    "works). Views with a contiguous last axis are read in place. attn_mask: bool (True = take\n"
    "part) or float32 (added), broadcastable to (B, H, L, S) without copies. is_causal: key j\n"
    "visible to query i when j <= i (top-left aligned when L != S, like torch). scale defaults\n"
    "to 1/sqrt(D). enable_gqa: H may be a multiple of KVH (query head h uses key/value head\n"
    "h // (H // KVH), without copying K/V).\n\n"
    "window=(left, right): query i sees keys i-left .. i+right (None = unbounded on that side).\n"
    "bias: float32 added to the scores, broadcastable like the mask (relative position biases).\n"
    "return_weights=True returns (output, weights) with the (B, H, L, S) probabilities.\n"
    "out: a preallocated (B, H, L, Dv) float32 array (or view) to write.\n"
    "disentangled=(c2p, p2c, relative_index): DeBERTa's disentangled bias, adding\n"
    "c2p[b, h, i, p] + p2c[b, h, j, p] with p = relative_index[i - j + S - 1] inside the\n"
    "kernel (c2p (B, H, L, P), p2c (B, H, S, P), either may be None; relative_index from\n"
    "deberta_relative_index), never building the (B, H, L, S) bias.\n"
    "disentangled_positions=(pos_key, pos_query, relative_index): the same terms from the\n"
    "projected relative embeddings pos_key, pos_query (H or 1, P, D) (either may be None):\n"
    "adds scale * (query[i] . pos_key[h, p] + key[j] . pos_query[h, p]), p as above; the\n"
    "kernel multiplies them per query block and per head itself (no (L, P) tables).\n\n"
    "softcap=c: logit soft-capping (Gemma 2): each scaled score s becomes c * tanh(s / c)\n"
    "before the mask and bias are added.\n\n"
    "Fully masked rows: a query that can see no key (all False, or all -inf) gets an output\n"
    "of zeros and zero weights. torch returns NaN there; zeros keep padded batches finite.\n"
    "Inputs with NaN or Inf in query/key/value are refused; masks and bias may hold -inf.");

PyMethodDef tf_scaled_dot_product_attention_methods[] = {
    {"scaled_dot_product_attention", (PyCFunction)(void (*)(void))sdpa,
     METH_VARARGS | METH_KEYWORDS, sdpa_doc},
    {NULL, NULL, 0, NULL},
};
