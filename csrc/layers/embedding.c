/* embedding.c — Embedding: a table lookup that reads the weight array in place (it may be
 * a read-only np.memmap over a checkpoint), so loading a model does not copy it. */
#include "tfcore.h"

#include <string.h>

typedef struct {
    PyObject_HEAD PyArrayObject *weight; /* (V, C) float32, C-contiguous; owned reference */
    int64_t V, C;
} tf_embedding;

/* ids is (M,) int32 or int64, table is (V, C), out is (M, C). Fails (err names the first
 * bad id and its position) if an id is outside [0, V); nothing is guaranteed about out then. */
static int
tf_embedding_gather(const void *ids, int ids_int64, int64_t M, const float *table, int64_t V,
                    int64_t C, float *out, tf_err *err)
{
    /* Check every id before writing anything: a bad id must not leave half an output. */
    for (int64_t i = 0; i < M; i++) {
        int64_t id = ids_int64 ? ((const int64_t *)ids)[i] : ((const int32_t *)ids)[i];
        if (id < 0 || id >= V) {
            tf_err_set(err, TF_ERR_VALUE,
                       "input_ids holds %lld at flat index %lld, outside the vocabulary [0, %lld)",
                       (long long)id, (long long)i, (long long)V);
            return -1;
        }
    }
    /* out is (M, C): row i = table[ids[i]] */
#pragma omp parallel for schedule(static) if (M * C >= 262144)
    for (int64_t i = 0; i < M; i++) {
        int64_t id = ids_int64 ? ((const int64_t *)ids)[i] : ((const int32_t *)ids)[i];
        memcpy(out + i * C, table + id * C, (size_t)C * sizeof(float));
    }
    return 0;
}

static PyObject *
embedding_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"weight", NULL};
    PyObject *w_obj;
    tf_state *st = tf_state_of_type(type);
    PyArrayObject *w;
    tf_embedding *self;
    if (st == NULL || !TF_PARSE(st, args, kwds, "O:Embedding", kwlist, &w_obj)) {
        return NULL;
    }
    if ((w = tf_arg_f32(st, w_obj, "weight", 2, 2)) == NULL) {
        return NULL;
    }
    if (tf_check_nonempty(st, w, "weight") < 0) {
        Py_DECREF(w);
        return NULL;
    }
    if ((self = (tf_embedding *)type->tp_alloc(type, 0)) == NULL) {
        Py_DECREF(w);
        return NULL;
    }
    self->weight = w;
    self->V = PyArray_DIM(w, 0);
    self->C = PyArray_DIM(w, 1);
    return (PyObject *)self;
}

static int
embedding_traverse(tf_embedding *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->weight);
    return 0;
}

static int
embedding_clear(tf_embedding *self)
{
    Py_CLEAR(self->weight);
    return 0;
}

static void
embedding_dealloc(tf_embedding *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    embedding_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *
embedding_call(tf_embedding *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"input_ids", "out", NULL};
    PyObject *ids_obj, *out_obj = Py_None;
    PyArrayObject *ids = NULL, *out = NULL;
    tf_state *st = tf_state_of((PyObject *)self);
    tf_err err = {0};
    npy_intp dims[NPY_MAXDIMS];
    int rc;
    if (!TF_PARSE(st, args, kwds, "O|$O:Embedding.__call__", kwlist, &ids_obj, &out_obj)) {
        return NULL;
    }
    if ((ids = tf_arg_ids(st, ids_obj, "input_ids")) == NULL) {
        return NULL;
    }
    const int nd = PyArray_NDIM(ids);
    if (nd >= NPY_MAXDIMS) {
        tf_value_error(st, "input_ids has too many dimensions (%d)", nd);
        goto fail;
    }
    if (tf_check_nonempty(st, ids, "input_ids") < 0) {
        goto fail;
    }
    for (int i = 0; i < nd; i++) {
        dims[i] = PyArray_DIM(ids, i);
    }
    dims[nd] = (npy_intp)self->C;
    if ((out = tf_out_f32(st, out_obj, nd + 1, dims)) == NULL ||
        tf_check_no_overlap(st, out, self->weight, "weight") < 0) {
        goto fail;
    }
    Py_BEGIN_ALLOW_THREADS tf_threads_begin();
    rc = tf_embedding_gather(PyArray_DATA(ids), PyArray_ITEMSIZE(ids) == 8, PyArray_SIZE(ids),
                             PyArray_DATA(self->weight), self->V, self->C, PyArray_DATA(out), &err);
    Py_END_ALLOW_THREADS if (rc < 0)
    {
        tf_err_raise(st, &err);
        goto fail;
    }
    Py_DECREF(ids);
    return (PyObject *)out;
fail:
    Py_XDECREF(ids);
    Py_XDECREF(out);
    return NULL;
}

static PyObject *
embedding_repr(tf_embedding *self)
{
    return PyUnicode_FromFormat("Embedding(%lld, %lld)", (long long)self->V, (long long)self->C);
}

static PyObject *
embedding_get_weight(tf_embedding *self, void *closure)
{
    return Py_NewRef((PyObject *)self->weight);
}

static PyMemberDef embedding_members[] = {
    {"num_embeddings", T_LONGLONG, offsetof(tf_embedding, V), READONLY, "V: rows of the table."},
    {"embedding_dim", T_LONGLONG, offsetof(tf_embedding, C), READONLY, "C: width of a row."},
    {NULL},
};

static PyGetSetDef embedding_getset[] = {
    {"weight", (getter)embedding_get_weight, NULL,
     "The (V, C) table, the very array given (no copy).", NULL},
    {NULL},
};

PyDoc_STRVAR(
    embedding_doc,
    "Embedding(weight)\n--\n\n"
    "Token embedding table. weight is a float32 C-contiguous (V, C) array, used in place (a\n"
    "read-only np.memmap is fine). Call: ``emb(input_ids, *, out=None)`` with int64 or int32 ids\n"
    "of any shape gives (*input_ids.shape, C). Ids outside [0, V) raise TfcoreValueError.");

static PyType_Slot embedding_slots[] = {
    {Py_tp_new, embedding_new},           {Py_tp_dealloc, embedding_dealloc},
    {Py_tp_traverse, embedding_traverse}, {Py_tp_clear, embedding_clear},
    {Py_tp_call, embedding_call},         {Py_tp_repr, embedding_repr},
    {Py_tp_members, embedding_members},   {Py_tp_getset, embedding_getset},
    {Py_tp_doc, (void *)embedding_doc},   {0, NULL},
};

PyType_Spec tf_embedding_spec = {
    .name = "tfcore.Embedding",
    .basicsize = sizeof(tf_embedding),
    .flags =
        Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = embedding_slots,
};
