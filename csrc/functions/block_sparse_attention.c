/* block_sparse_attention.c — tfcore.functional.block_sparse_attention: argument checks and
 * the call of the block-sparse kernel (kernels/attention/block_sparse.c) without the GIL. */
#include "tfcore.h"
#include "kernels/attention/block_sparse.h"

#include <math.h>
#include <string.h>

/* A (B, n) 0/1 mask of bool or integer dtype as a C-contiguous bool array (new ref). */
static PyArrayObject *
mask_arg(tf_state *st, PyObject *obj, const char *name, int64_t B, int64_t n, const char *what)
{
    if (!PyArray_Check(obj)) {
        return (PyArrayObject *)tf_type_error(
            st, "%s must be a numpy.ndarray of bool or integers, got %s", name,
            Py_TYPE(obj)->tp_name);
    }
    PyArrayObject *m = (PyArrayObject *)obj;
    if (!PyArray_ISBOOL(m) && !PyArray_ISINTEGER(m)) {
        return (PyArrayObject *)tf_type_error(st, "%s must hold bool or 0/1 integers, got dtype %s",
                                              name, tf_dtype_name(m));
    }
    if (PyArray_NDIM(m) != 2 || PyArray_DIM(m, 0) != B || PyArray_DIM(m, 1) != n) {
        char shape[96];
        tf_shape_str(m, shape, sizeof(shape));
        return (PyArrayObject *)tf_value_error(
            st, "%s has shape %s, expected (batch, %s) = (%lld, %lld)", name, shape, what,
            (long long)B, (long long)n);
    }
    return (PyArrayObject *)PyArray_FROMANY(obj, NPY_BOOL, 2, 2,
                                            NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_FORCECAST);
}

typedef struct {
    PyArrayObject *q, *k, *v, *layout, *glob, *kmask, *qmask, *out;
    uint8_t *global_q;
} bs_arrays;

/* layout: int (nqb, nsel), (H, nqb, nsel) or (B, H, nqb, nsel), entries in [-1, nkb). */
static int
layout_arg(tf_state *st, PyObject *obj, tf_block_sparse_args *a, int64_t nkb, bs_arrays *arr)
{
    if (!PyArray_Check(obj) || !PyArray_ISINTEGER((PyArrayObject *)obj)) {
        tf_type_error(st, "layout must be a numpy.ndarray of integers (key block indices), got %s",
                      PyArray_Check(obj) ? tf_dtype_name((PyArrayObject *)obj)
                                         : Py_TYPE(obj)->tp_name);
        return -1;
    }
    const int nd = PyArray_NDIM((PyArrayObject *)obj);
    char shape[96];
    tf_shape_str((PyArrayObject *)obj, shape, sizeof(shape));
    if (nd < 2 || nd > 4) {
        tf_value_error(
            st,
            "layout has shape %s; expected (query_blocks, n), (heads, query_blocks, n) or "
            "(batch, heads, query_blocks, n)",
            shape);
        return -1;
    }
    arr->layout = (PyArrayObject *)PyArray_FROMANY(obj, NPY_INT64, nd, nd,
                                                   NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_FORCECAST);
    if (arr->layout == NULL) {
        return -1;
    }
    PyArrayObject *lay = arr->layout;
    const int64_t full[3] = {a->B, a->H, a->nqb};
    int64_t strides[3] = {0, 0, 0};
    for (int i = 0; i < nd - 1; i++) {
        const int d = 3 - (nd - 1) + i;
        const int64_t n = PyArray_DIM(lay, i);
        if (n != full[d] && !(n == 1 && d < 2)) {
            tf_value_error(
                st,
                "layout has shape %s; its leading axes must be (batch, heads, query_blocks) = "
                "(%lld, %lld, %lld) (batch and heads may be 1 or left out)",
                shape, (long long)a->B, (long long)a->H, (long long)a->nqb);
            return -1;
        }
        strides[d] = tf_estride(lay, i);
    }
    a->nsel = PyArray_DIM(lay, nd - 1);
    a->l_sb = strides[0];
    a->l_sh = strides[1];
    a->l_sq = PyArray_DIM(lay, nd - 2) == 1 ? a->nsel : strides[2];
    a->layout = PyArray_DATA(lay);
    const int64_t *p = a->layout;
    const npy_intp count = PyArray_SIZE(lay); /* once: the loop runs over every entry */
    for (npy_intp i = 0; i < count; i++) {
        if (p[i] < -1 || p[i] >= nkb) {
            tf_value_error(
                st,
                "layout holds key block %lld at flat index %lld; key blocks are 0 .. %lld "
                "(key length %lld / block_size %lld), -1 = none",
                (long long)p[i], (long long)i, (long long)(nkb - 1), (long long)a->S,
                (long long)a->bs);
            return -1;
        }
    }
    return 0;
}

static int
global_arg(tf_state *st, PyObject *obj, tf_block_sparse_args *a, bs_arrays *arr)
{
    arr->glob = (PyArrayObject *)PyArray_FROMANY(obj, NPY_INT64, 0, 1,
                                                 NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_FORCECAST);
    if (arr->glob == NULL) {
        PyErr_Clear();
        tf_type_error(st, "global_blocks must be a sequence of query block indices");
        return -1;
    }
    PyArray_Descr *in = PyArray_Check(obj) ? PyArray_DESCR((PyArrayObject *)obj) : NULL;
    if (in != NULL && !PyTypeNum_ISINTEGER(in->type_num)) {
        tf_type_error(st, "global_blocks must hold integers, got dtype %s",
                      tf_dtype_name((PyArrayObject *)obj));
        return -1;
    }
    if ((arr->global_q = tf_malloc((size_t)a->nqb)) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memset(arr->global_q, 0, (size_t)a->nqb);
    const int64_t *g = PyArray_DATA(arr->glob);
    const npy_intp count = PyArray_SIZE(arr->glob);
    for (npy_intp i = 0; i < count; i++) {
        const int64_t qb = g[i] < 0 ? g[i] + a->nqb : g[i]; /* -1 = the last block */
        if (qb < 0 || qb >= a->nqb) {
            tf_value_error(st,
                           "global_blocks holds %lld; query blocks are 0 .. %lld "
                           "(negative counts from the end)",
                           (long long)g[i], (long long)(a->nqb - 1));
            return -1;
        }
        arr->global_q[qb] = 1;
    }
    a->global_q = arr->global_q;
    return 0;
}

static PyObject *
block_sparse_attention(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {
        "query",      "key",   "value", "layout", "block_size", "global_blocks", "key_padding_mask",
        "query_mask", "scale", "out",   NULL};
    PyObject *q_obj, *k_obj, *v_obj, *lay_obj, *glob_obj = Py_None, *kmask_obj = Py_None,
                                               *qmask_obj = Py_None, *scale_obj = Py_None,
                                               *out_obj = Py_None, *result = NULL;
    long long bs = 0;
    bs_arrays arr = {0};
    tf_block_sparse_args a;
    tf_err err = {0};
    tf_state *st = tf_state_of_module(module);
    memset(&a, 0, sizeof(a));
    if (!TF_PARSE(st, args, kwds, "OOOOL|$OOOOO:block_sparse_attention", kwlist, &q_obj, &k_obj,
                  &v_obj, &lay_obj, &bs, &glob_obj, &kmask_obj, &qmask_obj, &scale_obj, &out_obj)) {
        return NULL;
    }
    if ((arr.q = tf_arg_qkv_view(st, q_obj, "query", 4, 4)) == NULL ||
        (arr.k = tf_arg_qkv_view(st, k_obj, "key", 4, 4)) == NULL ||
        (arr.v = tf_arg_qkv_view(st, v_obj, "value", 4, 4)) == NULL) {
        goto done;
    }
    a.B = PyArray_DIM(arr.q, 0);
    a.H = PyArray_DIM(arr.q, 1);
    a.L = PyArray_DIM(arr.q, 2);
    a.D = PyArray_DIM(arr.q, 3);
    a.S = PyArray_DIM(arr.k, 2);
    a.Dv = PyArray_DIM(arr.v, 3);
    if (PyArray_DIM(arr.k, 0) != a.B || PyArray_DIM(arr.k, 1) != a.H ||
        PyArray_DIM(arr.k, 3) != a.D) {
        char shape[96];
        tf_shape_str(arr.k, shape, sizeof(shape));
        tf_value_error(st,
                       "key has shape %s, expected (%lld, %lld, S, %lld) like query "
                       "(batch, heads, _, head_dim)",
                       shape, (long long)a.B, (long long)a.H, (long long)a.D);
        goto done;
    }
    if (PyArray_DIM(arr.v, 0) != a.B || PyArray_DIM(arr.v, 1) != a.H ||
        PyArray_DIM(arr.v, 2) != a.S) {
        char shape[96];
        tf_shape_str(arr.v, shape, sizeof(shape));
        tf_value_error(st, "value has shape %s, expected (%lld, %lld, %lld, Dv) like key", shape,
                       (long long)a.B, (long long)a.H, (long long)a.S);
        goto done;
    }
    if (bs < 1 || bs > (1LL << 30)) {
        tf_value_error(st, "block_size must be in [1, 2^30], got %lld", bs);
        goto done;
    }
    if (a.L % bs != 0 || a.S % bs != 0) {
        tf_value_error(st,
                       "query length %lld and key length %lld must be multiples of block_size %lld "
                       "(pad the sequence, as HF's BigBird does)",
                       (long long)a.L, (long long)a.S, bs);
        goto done;
    }
    a.bs = bs;
    a.nqb = a.L / bs;
    if (layout_arg(st, lay_obj, &a, a.S / bs, &arr) < 0) {
        goto done;
    }
    if (glob_obj != Py_None && global_arg(st, glob_obj, &a, &arr) < 0) {
        goto done;
    }
    if (kmask_obj != Py_None) {
        if ((arr.kmask = mask_arg(st, kmask_obj, "key_padding_mask", a.B, a.S, "key length")) ==
            NULL) {
            goto done;
        }
        a.key_mask = PyArray_DATA(arr.kmask);
    }
    if (qmask_obj != Py_None) {
        if ((arr.qmask = mask_arg(st, qmask_obj, "query_mask", a.B, a.L, "query length")) == NULL) {
            goto done;
        }
        a.query_mask = PyArray_DATA(arr.qmask);
    }
    if (scale_obj == Py_None) {
        a.scale = (float)(1.0 / sqrt((double)a.D));
    }
    else {
        const double s = PyFloat_AsDouble(scale_obj);
        if (s == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            tf_type_error(st, "scale must be a float or None");
            goto done;
        }
        if (!isfinite(s)) {
            tf_value_error(st, "scale must be finite, got %g", s);
            goto done;
        }
        a.scale = (float)s;
    }
    npy_intp odims[4] = {(npy_intp)a.B, (npy_intp)a.H, (npy_intp)a.L, (npy_intp)a.Dv};
    if (out_obj == Py_None) {
        if ((arr.out = (PyArrayObject *)PyArray_SimpleNew(4, odims, NPY_FLOAT32)) == NULL) {
            goto done;
        }
    }
    else {
        if ((arr.out = tf_arg_qkv_view(st, out_obj, "out", 4, 4)) == NULL) {
            goto done;
        }
        if (!PyArray_CompareLists(PyArray_DIMS(arr.out), odims, 4)) {
            char shape[96];
            tf_shape_str(arr.out, shape, sizeof(shape));
            tf_value_error(
                st,
                "out has shape %s, expected (batch, heads, query length, value head_dim) = "
                "(%lld, %lld, %lld, %lld)",
                shape, (long long)a.B, (long long)a.H, (long long)a.L, (long long)a.Dv);
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
    a.q = PyArray_DATA(arr.q);
    a.q_sb = tf_estride(arr.q, 0);
    a.q_sh = tf_estride(arr.q, 1);
    a.q_sl = tf_estride(arr.q, 2);
    a.k = PyArray_DATA(arr.k);
    a.k_sb = tf_estride(arr.k, 0);
    a.k_sh = tf_estride(arr.k, 1);
    a.k_ss = tf_estride(arr.k, 2);
    a.v = PyArray_DATA(arr.v);
    a.v_sb = tf_estride(arr.v, 0);
    a.v_sh = tf_estride(arr.v, 1);
    a.v_ss = tf_estride(arr.v, 2);
    a.out = PyArray_DATA(arr.out);
    a.o_sb = tf_estride(arr.out, 0);
    a.o_sh = tf_estride(arr.out, 1);
    a.o_sl = tf_estride(arr.out, 2);
    int rc;
    Py_BEGIN_ALLOW_THREADS tf_threads_begin();
    rc = tf_block_sparse(&a, &err);
    Py_END_ALLOW_THREADS if (rc < 0)
    {
        tf_err_raise(st, &err);
        goto done;
    }
    if (!tf_rows_finite(a.out, a.o_sb, a.o_sh, a.o_sl, a.B, a.H, a.L, a.Dv)) {
        tf_value_error(st, "block_sparse_attention produced NaN or Inf: query, key or value holds "
                           "non-finite values (tfcore refuses them)");
        goto done;
    }
    result = Py_NewRef(arr.out);
done:
    Py_XDECREF(arr.q);
    Py_XDECREF(arr.k);
    Py_XDECREF(arr.v);
    Py_XDECREF(arr.layout);
    Py_XDECREF(arr.glob);
    Py_XDECREF(arr.kmask);
    Py_XDECREF(arr.qmask);
    Py_XDECREF(arr.out);
    tf_free(arr.global_q);
    return result;
}

PyDoc_STRVAR(
    block_sparse_attention_doc,
    "block_sparse_attention($module, query, key, value, layout, block_size, *, "
    "global_blocks=None,\n"
    "                       key_padding_mask=None, query_mask=None, scale=None, out=None)\n--\n\n"
    "Block-sparse attention (BigBird), memory linear in the sequence length.\n\n"
    "query (B, H, L, D), key (B, H, S, D), value (B, H, S, Dv) float32; views with a contiguous\n"
    "last axis are read in place. L and S must be multiples of block_size; query block qb holds\n"
    "queries qb*block_size .. (qb+1)*block_size - 1, and likewise for key blocks.\n\n"
    "layout: integer array (query_blocks, n), (H, query_blocks, n) or (B, H, query_blocks, n):\n"
    "the key blocks each query block attends to; -1 entries are skipped. A block listed twice\n"
    "counts twice in the softmax (as HF's BigBird, whose eval-mode random blocks all repeat\n"
    "block 0). global_blocks: query block indices (negative from the end) that attend to all\n"
    "S keys instead of their layout row.\n\n"
    "key_padding_mask (B, S): False/0 hides the key. query_mask (B, L): False/0 gives that\n"
    "query a zero output (HF multiplies padded queries' context by 0). A query that sees no\n"
    "key gets zeros. scale defaults to 1/sqrt(D). out: a preallocated (B, H, L, Dv) float32\n"
    "array or view to write. Returns (B, H, L, Dv).");

PyMethodDef tf_block_sparse_attention_methods[] = {
    {"block_sparse_attention", (PyCFunction)(void (*)(void))block_sparse_attention,
     METH_VARARGS | METH_KEYWORDS, block_sparse_attention_doc},
    {NULL, NULL, 0, NULL},
};
