/* disentangled_attention.c — DeBERTa's disentangled attention for tfcore.functional:
 * deberta_relative_index (the bucketed index vector) and the parsing of
 * scaled_dot_product_attention(..., disentangled=(c2p, p2c, relative_index)), which the
 * fused kernel adds as a per-query-row gather (kernels/attention/disentangled_bias.h). */
#include "functions/disentangled_attention.h"
#include "kernels/attention/disentangled_bias.h"

#include <string.h>

/* c2p (B, H, L, P) or p2c (B, H, S, P): float32 with a contiguous last axis, batch and head
 * axes of size 1 broadcast; 3-D (H, rows, P) when the attention inputs have no batch axis.
 * Returns a new reference (NULL with an exception), strides in s[0..2]. */
static PyArrayObject *
score_table(tf_state *st, PyObject *obj, const char *name, const char *rows_name, int nd, int64_t B,
            int64_t H, int64_t rows, int64_t P, int64_t s[3])
{
    PyArrayObject *t = tf_arg_qkv_view(st, obj, name, 3, 4);
    if (t == NULL) {
        return NULL;
    }
    const int o = nd - 4;
    if (PyArray_NDIM(t) != nd) {
        tf_value_error(st, "disentangled %s must have %d dimensions like query, got %d", name, nd,
                       PyArray_NDIM(t));
        goto fail;
    }
    const int64_t b = nd == 4 ? PyArray_DIM(t, 0) : 1, h = PyArray_DIM(t, 1 + o);
    if ((b != B && b != 1) || (h != H && h != 1) || PyArray_DIM(t, 2 + o) != rows ||
        PyArray_DIM(t, 3 + o) != P) {
        tf_value_error(st,
                       "disentangled %s must have shape (batch=%lld, heads=%lld, %s=%lld, "
                       "positions=%lld) (batch and heads may be 1)",
                       name, (long long)B, (long long)H, rows_name, (long long)rows, (long long)P);
        goto fail;
    }
    s[0] = nd == 4 ? tf_estride(t, 0) : 0;
    s[1] = tf_estride(t, 1 + o);
    s[2] = tf_estride(t, 2 + o);
    /* the vector path gathers with int32 offsets within one (b, h) table */
    if ((rows - 1) * (s[2] < 0 ? -s[2] : s[2]) + P >= INT32_MAX || s[2] < 0) {
        tf_value_error(st, "disentangled %s is too large (rows x stride must stay below 2^31)",
                       name);
        goto fail;
    }
    if (tf_check_finite_view(st, t, name) < 0) {
        goto fail;
    }
    return t;
fail:
    Py_DECREF(t);
    return NULL;
}

/* relative_index: contiguous 1-D int32 (L + S - 1,) with entries in [0, P). New reference or
 * NULL with an exception. */
static PyArrayObject *
relative_index(tf_state *st, PyObject *idx, const tf_attn_args *a, int64_t P)
{
    if (!PyArray_Check(idx) || PyArray_TYPE((PyArrayObject *)idx) != NPY_INT32 ||
        PyArray_NDIM((PyArrayObject *)idx) != 1 || !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)idx)) {
        tf_type_error(st, "disentangled relative_index must be a contiguous 1-D int32 array "
                          "(tfcore.functional.deberta_relative_index)");
        return NULL;
    }
    if (PyArray_DIM((PyArrayObject *)idx, 0) != a->L + a->S - 1) {
        tf_value_error(st,
                       "disentangled relative_index has %" NPY_INTP_FMT
                       " entries, expected query length + key length - 1 = %lld",
                       PyArray_DIM((PyArrayObject *)idx, 0), (long long)(a->L + a->S - 1));
        return NULL;
    }
    const int32_t *ip = PyArray_DATA((PyArrayObject *)idx);
    for (int64_t k = 0; k < a->L + a->S - 1; k++) {
        if (ip[k] < 0 || ip[k] >= P) {
            tf_value_error(st,
                           "disentangled relative_index[%lld] = %d is outside [0, %lld) (the "
                           "positions of the score tables)",
                           (long long)k, ip[k], (long long)P);
            return NULL;
        }
    }
    return (PyArrayObject *)Py_NewRef(idx);
}

int
tf_parse_disentangled(tf_state *st, PyObject *obj, int nd, tf_attn_args *a, PyArrayObject *hold[3])
{
    if (!PyTuple_Check(obj) || PyTuple_GET_SIZE(obj) != 3) {
        tf_type_error(st, "disentangled must be a tuple (c2p, p2c, relative_index), got %s",
                      Py_TYPE(obj)->tp_name);
        return -1;
    }
    PyObject *c2p = PyTuple_GET_ITEM(obj, 0), *p2c = PyTuple_GET_ITEM(obj, 1),
             *idx = PyTuple_GET_ITEM(obj, 2);
    if (c2p == Py_None && p2c == Py_None) {
        tf_value_error(st, "disentangled needs c2p or p2c (both are None)");
        return -1;
    }
    /* the number of relative positions P comes from whichever table is given */
    PyObject *first = c2p != Py_None ? c2p : p2c;
    if (!PyArray_Check(first) || PyArray_NDIM((PyArrayObject *)first) < 1) {
        tf_type_error(st, "disentangled c2p and p2c must be float32 numpy.ndarrays or None");
        return -1;
    }
    const int64_t P = PyArray_DIM((PyArrayObject *)first, PyArray_NDIM((PyArrayObject *)first) - 1);
    if (P < 1) {
        tf_value_error(st, "disentangled tables have no positions (last axis 0)");
        return -1;
    }
    if ((hold[2] = relative_index(st, idx, a, P)) == NULL) {
        return -1;
    }
    const int32_t *ip = PyArray_DATA(hold[2]);
    int64_t s[3];
    if (c2p != Py_None) {
        if ((hold[0] = score_table(st, c2p, "c2p", "query length", nd, a->B, a->H, a->L, P, s)) ==
            NULL) {
            return -1;
        }
        a->c2p = PyArray_DATA(hold[0]);
        a->c2p_sb = s[0];
        a->c2p_sh = s[1];
        a->c2p_sl = s[2];
    }
    if (p2c != Py_None) {
        if ((hold[1] = score_table(st, p2c, "p2c", "key length", nd, a->B, a->H, a->S, P, s)) ==
            NULL) {
            return -1;
        }
        a->p2c = PyArray_DATA(hold[1]);
        a->p2c_sb = s[0];
        a->p2c_sh = s[1];
        a->p2c_ss = s[2];
    }
    a->dis_idx = ip;
    return 0;
}

/* pos_key / pos_query (H or 1, P, D): float32, rows contiguous. New reference or NULL. */
static PyArrayObject *
position_rows(tf_state *st, PyObject *obj, const char *name, int64_t H, int64_t D, int64_t *P,
              int64_t *sh)
{
    PyArrayObject *t = tf_arg_qkv_view(st, obj, name, 3, 3);
    if (t == NULL) {
        return NULL;
    }
    const int64_t h = PyArray_DIM(t, 0), p = PyArray_DIM(t, 1);
    if ((h != H && h != 1) || PyArray_DIM(t, 2) != D || (*P >= 0 && p != *P)) {
        tf_value_error(st,
                       "disentangled_positions %s has shape (%lld, %lld, %lld), expected "
                       "(heads=%lld or 1, positions%s, head_dim=%lld)",
                       name, (long long)h, (long long)p, (long long)PyArray_DIM(t, 2), (long long)H,
                       *P >= 0 ? " as the other table" : "", (long long)D);
        goto fail;
    }
    if (tf_estride(t, 1) != D) {
        tf_value_error(st,
                       "disentangled_positions %s must have contiguous rows (a view that "
                       "slices positions or heads is fine, one that slices head_dim is not)",
                       name);
        goto fail;
    }
    /* the kernel addresses c2p rows as int32 position * 64 + lane */
    if (p > (1 << 24)) {
        tf_value_error(st, "disentangled_positions %s has %lld positions, at most 2^24", name,
                       (long long)p);
        goto fail;
    }
    if (tf_check_finite_view(st, t, name) < 0) {
        goto fail;
    }
    *P = p;
    *sh = h == 1 ? 0 : tf_estride(t, 0);
    return t;
fail:
    Py_DECREF(t);
    return NULL;
}

int
tf_parse_disentangled_positions(tf_state *st, PyObject *obj, tf_attn_args *a,
                                PyArrayObject *hold[3])
{
    if (!PyTuple_Check(obj) || PyTuple_GET_SIZE(obj) != 3) {
        tf_type_error(st,
                      "disentangled_positions must be a tuple (pos_key, pos_query, "
                      "relative_index), got %s",
                      Py_TYPE(obj)->tp_name);
        return -1;
    }
    if (a->c2p != NULL || a->p2c != NULL) {
        tf_value_error(st, "pass disentangled or disentangled_positions, not both");
        return -1;
    }
    PyObject *pk = PyTuple_GET_ITEM(obj, 0), *pq = PyTuple_GET_ITEM(obj, 1),
             *idx = PyTuple_GET_ITEM(obj, 2);
    if (pk == Py_None && pq == Py_None) {
        tf_value_error(st, "disentangled_positions needs pos_key or pos_query (both are None)");
        return -1;
    }
    int64_t P = -1, sh = 0;
    if (pk != Py_None) {
        if ((hold[0] = position_rows(st, pk, "pos_key", a->H, a->D, &P, &sh)) == NULL) {
            return -1;
        }
        a->pos_key = PyArray_DATA(hold[0]);
        a->pk_sh = sh;
    }
    if (pq != Py_None) {
        if ((hold[1] = position_rows(st, pq, "pos_query", a->H, a->D, &P, &sh)) == NULL) {
            return -1;
        }
        a->pos_query = PyArray_DATA(hold[1]);
        a->pq_sh = sh;
    }
    if ((hold[2] = relative_index(st, idx, a, P)) == NULL) {
        return -1;
    }
    a->dis_idx = PyArray_DATA(hold[2]);
    a->dis_P = P;
    return 0;
}

static PyObject *
py_deberta_index(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"query_length", "key_length", "position_buckets",
                             "max_relative_positions", NULL};
    long long L, S, buckets = -1, max_pos = -1;
    tf_state *st = tf_state_of_module(module);
    if (!TF_PARSE(st, args, kwds, "LL|$LL:deberta_relative_index", kwlist, &L, &S, &buckets,
                  &max_pos)) {
        return NULL;
    }
    if (L < 1 || S < 1 || L > (1LL << 30) || S > (1LL << 30)) {
        return tf_value_error(
            st, "query_length and key_length must be in [1, 2^30], got %lld, %lld", L, S);
    }
    const long long span = buckets > 0 ? buckets : max_pos;
    if (span < 1) {
        return tf_value_error(st, "position_buckets or max_relative_positions must be >= 1 "
                                  "(both are <= 0)");
    }
    tf_err err = {0};
    if (tf_deberta_check_config(buckets, max_pos, &err) < 0) {
        tf_err_raise(st, &err);
        return NULL;
    }
    npy_intp dims[1] = {(npy_intp)(L + S - 1)};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(1, dims, NPY_INT32);
    if (out != NULL) {
        tf_deberta_index(L, S, buckets, max_pos, span, PyArray_DATA(out));
    }
    return (PyObject *)out;
}

PyDoc_STRVAR(
    deberta_index_doc,
    "deberta_relative_index($module, query_length, key_length, *, position_buckets=-1,\n"
    "                       max_relative_positions=-1)\n--\n\n"
    "DeBERTa-v2's relative position index, int32 (query_length + key_length - 1,): entry\n"
    "(i - j) + key_length - 1 is clamp(bucket(i - j) + span, 0, 2 span - 1), span =\n"
    "position_buckets if > 0 else max_relative_positions, bucket HF's\n"
    "make_log_bucket_position (float32 as torch). Pass it with the c2p/p2c score tables as\n"
    "scaled_dot_product_attention(..., disentangled=(c2p, p2c, index)).");

PyMethodDef tf_disentangled_attention_methods[] = {
    {"deberta_relative_index", (PyCFunction)(void (*)(void))py_deberta_index,
     METH_VARARGS | METH_KEYWORDS, deberta_index_doc},
    {NULL, NULL, 0, NULL},
};
