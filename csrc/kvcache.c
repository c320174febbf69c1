/* kvcache.c — KVCache: preallocated per-layer keys/values that attention appends to in
 * place during incremental decoding; keys/values readable as NumPy views (no copy). */
#include "kvcache.h"

#include <string.h>

int
tf_kvcache_check(tf_state *st, PyObject *obj)
{
    return PyObject_TypeCheck(obj, st->KVCache);
}

static PyArrayObject *
new_store(const tf_kvcache *c, int64_t capacity)
{
    npy_intp dims[4] = {(npy_intp)c->B, (npy_intp)c->KVH, (npy_intp)capacity, (npy_intp)c->D};
    return (PyArrayObject *)PyArray_ZEROS(4, dims, NPY_FLOAT32, 0);
}

/* dst/src are (B, KVH, cap, D) stores; copy the first rows of every (b, kvh). */
static void
copy_rows(PyArrayObject *dst, int64_t dcap, PyArrayObject *src, int64_t scap, const tf_kvcache *c,
          int64_t rows)
{
    float *d = PyArray_DATA(dst);
    const float *s = PyArray_DATA(src);
    for (int64_t bh = 0; bh < c->B * c->KVH; bh++) {
        memcpy(d + bh * dcap * c->D, s + bh * scap * c->D, (size_t)(rows * c->D) * sizeof(float));
    }
}

int
tf_kvcache_reserve(tf_state *st, tf_kvcache *c, int64_t T)
{
    int64_t need = 0;
    for (int64_t l = 0; l < c->layers; l++) {
        need = c->length[l] + T > need ? c->length[l] + T : need;
    }
    if (need <= c->capacity) {
        return 0;
    }
    int64_t cap = c->capacity;
    while (cap < need) {
        cap *= 2;
    }
    for (int64_t l = 0; l < c->layers; l++) {
        PyArrayObject *k = new_store(c, cap), *v = k ? new_store(c, cap) : NULL;
        if (k == NULL || v == NULL) {
            Py_XDECREF(k);
            return -1;
        }
        copy_rows(k, cap, c->k[l], c->capacity, c, c->length[l]);
        copy_rows(v, cap, c->v[l], c->capacity, c, c->length[l]);
        Py_SETREF(c->k[l], k);
        Py_SETREF(c->v[l], v);
    }
    c->capacity = cap;
    return 0;
}

int
tf_kvcache_acquire(tf_state *st, tf_kvcache *c)
{
    int expected = 0;
    if (!atomic_compare_exchange_strong(&c->busy, &expected, 1)) {
        tf_value_error(st, "this KVCache is in use by another call (a cache belongs to one "
                           "sequence of calls; give each thread its own)");
        return -1;
    }
    return 0;
}

void
tf_kvcache_release(tf_kvcache *c)
{
    atomic_store(&c->busy, 0);
}

void
tf_kvcache_append(tf_kvcache *c, int64_t l, int64_t T, const float *k, int64_t ksb, int64_t kst,
                  int64_t ksh, const float *v, int64_t vsb, int64_t vst, int64_t vsh)
{
    const int64_t D = c->D, cap = c->capacity, past = c->length[l];
    float *K = PyArray_DATA(c->k[l]), *V = PyArray_DATA(c->v[l]);
    /* cache rows (b, kvh, past + t) <- source rows (b, t, kvh) */
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t h = 0; h < c->KVH; h++)
            for (int64_t t = 0; t < T; t++) {
                int64_t dst = ((b * c->KVH + h) * cap + past + t) * D;
                memcpy(K + dst, k + b * ksb + t * kst + h * ksh, (size_t)D * sizeof(float));
                memcpy(V + dst, v + b * vsb + t * vst + h * vsh, (size_t)D * sizeof(float));
            }
    c->length[l] = past + T;
}

/* ------------------------------------------------------------------ Python type */

static PyObject *
kvcache_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"num_layers", "batch_size", "num_key_value_heads", "head_dim",
                             "capacity", NULL};
    long long layers, B, KVH, D, cap = 256;
    tf_state *st = tf_state_of_type(type);
    tf_kvcache *self;
    if (st == NULL || !PyArg_ParseTupleAndKeywords(args, kwds, "LLLL|$L:KVCache", kwlist, &layers,
                                                   &B, &KVH, &D, &cap)) {
        return NULL;
    }
    if (layers < 1 || B < 1 || KVH < 1 || D < 1 || cap < 1) {
        return tf_value_error(st, "KVCache sizes must be positive, got num_layers=%lld batch_size=%lld "
                                  "num_key_value_heads=%lld head_dim=%lld capacity=%lld",
                              layers, B, KVH, D, cap);
    }
    if ((double)layers * B * KVH * cap * D * 8.0 > 64.0 * (1ull << 30)) {
        return tf_value_error(st, "KVCache of %lld layers x %lld x %lld x %lld x %lld would need more than 64 GiB",
                              layers, B, KVH, cap, D);
    }
    if ((self = (tf_kvcache *)type->tp_alloc(type, 0)) == NULL) {
        return NULL;
    }
    self->layers = layers;
    self->B = B;
    self->KVH = KVH;
    self->D = D;
    self->capacity = cap;
    self->length = PyMem_Calloc((size_t)layers, sizeof(int64_t));
    self->k = PyMem_Calloc((size_t)layers, sizeof(PyArrayObject *));
    self->v = PyMem_Calloc((size_t)layers, sizeof(PyArrayObject *));
    if (self->length == NULL || self->k == NULL || self->v == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    for (int64_t l = 0; l < layers; l++) {
        if ((self->k[l] = new_store(self, cap)) == NULL || (self->v[l] = new_store(self, cap)) == NULL) {
            Py_DECREF(self);
            return NULL;
        }
    }
    return (PyObject *)self;
}

static int
kvcache_traverse(tf_kvcache *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    for (int64_t l = 0; self->k && l < self->layers; l++) {
        Py_VISIT(self->k[l]);
        Py_VISIT(self->v[l]);
    }
    return 0;
}

static int
kvcache_clear(tf_kvcache *self)
{
    for (int64_t l = 0; self->k && l < self->layers; l++) {
        Py_CLEAR(self->k[l]);
        Py_CLEAR(self->v[l]);
    }
    return 0;
}

static void
kvcache_dealloc(tf_kvcache *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    kvcache_clear(self);
    PyMem_Free(self->k);
    PyMem_Free(self->v);
    PyMem_Free(self->length);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static int
layer_arg(tf_state *st, tf_kvcache *self, PyObject *arg, int64_t *l)
{
    long long v = PyLong_AsLongLong(arg);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (v < 0 || v >= self->layers) {
        tf_value_error(st, "layer %lld is out of range for a cache of %lld layers", v, (long long)self->layers);
        return -1;
    }
    *l = v;
    return 0;
}

/* (B, KVH, length, D) view of a store: no copy; the view keeps the store alive. */
static PyObject *
view_of(tf_kvcache *self, PyArrayObject *store, int64_t len)
{
    npy_intp dims[4] = {(npy_intp)self->B, (npy_intp)self->KVH, (npy_intp)len, (npy_intp)self->D};
    PyArrayObject *view = (PyArrayObject *)PyArray_NewFromDescr(
        &PyArray_Type, PyArray_DescrFromType(NPY_FLOAT32), 4, dims, PyArray_STRIDES(store),
        PyArray_DATA(store), 0, NULL);  /* read-only: the cache owns the contents */
    if (view == NULL || PyArray_SetBaseObject(view, Py_NewRef((PyObject *)store)) < 0) {
        Py_XDECREF(view);
        return NULL;
    }
    return (PyObject *)view;
}

static PyObject *
kvcache_keys(tf_kvcache *self, PyObject *arg)
{
    int64_t l;
    if (layer_arg(tf_state_of((PyObject *)self), self, arg, &l) < 0) {
        return NULL;
    }
    return view_of(self, self->k[l], self->length[l]);
}

static PyObject *
kvcache_values(tf_kvcache *self, PyObject *arg)
{
    int64_t l;
    if (layer_arg(tf_state_of((PyObject *)self), self, arg, &l) < 0) {
        return NULL;
    }
    return view_of(self, self->v[l], self->length[l]);
}

static PyObject *
kvcache_get_seq_length(tf_kvcache *self, PyObject *args)
{
    PyObject *layer = NULL;
    int64_t l = 0;
    if (!PyArg_ParseTuple(args, "|O:get_seq_length", &layer)) {
        return NULL;
    }
    if (layer != NULL && layer_arg(tf_state_of((PyObject *)self), self, layer, &l) < 0) {
        return NULL;
    }
    return PyLong_FromLongLong(self->length[l]);
}

static PyObject *
kvcache_crop(tf_kvcache *self, PyObject *arg)
{
    tf_state *st = tf_state_of((PyObject *)self);
    long long n = PyLong_AsLongLong(arg);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (n < 0) {
        return tf_value_error(st, "crop length must be >= 0, got %lld", n);
    }
    for (int64_t l = 0; l < self->layers; l++) {
        self->length[l] = self->length[l] < n ? self->length[l] : n;
    }
    Py_RETURN_NONE;
}

/* Beam search: batch row b of every layer becomes old row index[b]. */
static PyObject *
kvcache_reorder(tf_kvcache *self, PyObject *arg)
{
    tf_state *st = tf_state_of((PyObject *)self);
    PyArrayObject *idx = tf_arg_ids(st, arg, "beam_idx");
    PyObject *result = NULL;
    if (idx == NULL) {
        return NULL;
    }
    if (PyArray_NDIM(idx) != 1 || PyArray_DIM(idx, 0) != self->B) {
        tf_value_error(st, "beam_idx must be 1-D with batch_size=%lld entries", (long long)self->B);
        goto done;
    }
    for (npy_intp i = 0; i < self->B; i++) {
        long long v = PyArray_ITEMSIZE(idx) == 8 ? ((int64_t *)PyArray_DATA(idx))[i] : ((int32_t *)PyArray_DATA(idx))[i];
        if (v < 0 || v >= self->B) {
            tf_value_error(st, "beam_idx holds %lld, outside [0, %lld)", v, (long long)self->B);
            goto done;
        }
    }
    if (tf_kvcache_acquire(st, self) < 0) {
        goto done;
    }
    int ok = 1;
    for (int64_t l = 0; ok && l < self->layers; l++) {
        PyArrayObject *k = (PyArrayObject *)PyArray_TakeFrom(self->k[l], (PyObject *)idx, 0, NULL, NPY_RAISE);
        PyArrayObject *v = k ? (PyArrayObject *)PyArray_TakeFrom(self->v[l], (PyObject *)idx, 0, NULL, NPY_RAISE) : NULL;
        if (v == NULL) {
            Py_XDECREF(k);
            ok = 0;
            break;
        }
        Py_SETREF(self->k[l], k);
        Py_SETREF(self->v[l], v);
    }
    tf_kvcache_release(self);
    if (ok) {
        result = Py_NewRef(Py_None);
    }
done:
    Py_DECREF(idx);
    return result;
}

static PyObject *
kvcache_reset(tf_kvcache *self, PyObject *unused)
{
    for (int64_t l = 0; l < self->layers; l++) {
        self->length[l] = 0;
    }
    Py_RETURN_NONE;
}

static PyObject *
kvcache_repr(tf_kvcache *self)
{
    double mib = (double)self->layers * 2.0 * (double)(self->B * self->KVH * self->capacity * self->D) * 4.0 / (1 << 20);
    char buf[32];
    snprintf(buf, sizeof(buf), "%.1f", mib);
    return PyUnicode_FromFormat("KVCache(num_layers=%lld, batch_size=%lld, num_key_value_heads=%lld, head_dim=%lld, "
                                "length=%lld, capacity=%lld, memory=%s MiB)",
                                (long long)self->layers, (long long)self->B, (long long)self->KVH, (long long)self->D,
                                (long long)self->length[0], (long long)self->capacity, buf);
}

static PyMemberDef kvcache_members[] = {
    {"num_layers", T_LONGLONG, offsetof(tf_kvcache, layers), READONLY, NULL},
    {"batch_size", T_LONGLONG, offsetof(tf_kvcache, B), READONLY, NULL},
    {"num_key_value_heads", T_LONGLONG, offsetof(tf_kvcache, KVH), READONLY, NULL},
    {"head_dim", T_LONGLONG, offsetof(tf_kvcache, D), READONLY, NULL},
    {"capacity", T_LONGLONG, offsetof(tf_kvcache, capacity), READONLY, "Rows allocated per (batch, head)."},
    {NULL},
};

static PyMethodDef kvcache_methods[] = {
    {"keys", (PyCFunction)kvcache_keys, METH_O,
     "keys($self, layer, /)\n--\n\nRead-only (batch, kv_heads, length, head_dim) view of a layer's keys (no copy)."},
    {"values", (PyCFunction)kvcache_values, METH_O,
     "values($self, layer, /)\n--\n\nRead-only view of a layer's values, like keys()."},
    {"get_seq_length", (PyCFunction)kvcache_get_seq_length, METH_VARARGS,
     "get_seq_length($self, layer=0, /)\n--\n\nCached tokens of a layer (HF's Cache.get_seq_length)."},
    {"crop", (PyCFunction)kvcache_crop, METH_O,
     "crop($self, length, /)\n--\n\nKeep only the first length tokens of every layer."},
    {"reorder", (PyCFunction)kvcache_reorder, METH_O,
     "reorder($self, beam_idx, /)\n--\n\nBeam search: batch row b takes the cached keys/values of row beam_idx[b]."},
    {"reset", (PyCFunction)kvcache_reset, METH_NOARGS, "reset($self, /)\n--\n\nEmpty every layer (memory is kept)."},
    {NULL},
};

PyDoc_STRVAR(kvcache_doc,
"KVCache(num_layers, batch_size, num_key_value_heads, head_dim, *, capacity=256)\n--\n\n"
"Keys and values of past tokens for incremental decoding, one (batch, kv_heads, capacity,\n"
"head_dim) float32 store per layer, grown (doubling) when full. Pass it to a layer call as\n"
"past_key_values=cache, layer_idx=i: the layer appends the new tokens' keys/values in place\n"
"and attends over everything cached. keys(i)/values(i) are read-only NumPy views.");

static PyType_Slot kvcache_slots[] = {
    {Py_tp_new, kvcache_new},
    {Py_tp_dealloc, kvcache_dealloc},
    {Py_tp_traverse, kvcache_traverse},
    {Py_tp_clear, kvcache_clear},
    {Py_tp_repr, kvcache_repr},
    {Py_tp_members, kvcache_members},
    {Py_tp_methods, kvcache_methods},
    {Py_tp_doc, (void *)kvcache_doc},
    {0, NULL},
};

static PyType_Spec kvcache_spec = {
    .name = "tfcore.KVCache",
    .basicsize = sizeof(tf_kvcache),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = kvcache_slots,
};

int
tf_register_kvcache(PyObject *module, tf_state *st)
{
    return tf_add_type(module, &kvcache_spec, NULL, &st->KVCache);
}
