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

static PyArrayObject *
new_rows(const tf_kvcache *c, int64_t capacity, int typenum)
{
    npy_intp dims[2] = {(npy_intp)c->B, (npy_intp)capacity};
    return (PyArrayObject *)PyArray_ZEROS(2, dims, typenum, 0);
}

/* dst/src are (B, cap) row stores of itemsize bytes; copy the first rows of every b. */
static void
copy_row_meta(PyArrayObject *dst, int64_t dcap, PyArrayObject *src, int64_t scap, int64_t B, int64_t rows)
{
    const size_t item = (size_t)PyArray_ITEMSIZE(src);
    for (int64_t b = 0; b < B; b++) {
        memcpy((char *)PyArray_DATA(dst) + (size_t)(b * dcap) * item,
               (const char *)PyArray_DATA(src) + (size_t)(b * scap) * item, (size_t)rows * item);
    }
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
        PyArrayObject *k = new_store(c, cap), *v = new_store(c, cap);
        PyArrayObject *valid = new_rows(c, cap, NPY_BOOL), *pos = new_rows(c, cap, NPY_INT64);
        if (k == NULL || v == NULL || valid == NULL || pos == NULL) {
            Py_XDECREF(k);
            Py_XDECREF(v);
            Py_XDECREF(valid);
            Py_XDECREF(pos);
            return -1;
        }
        copy_rows(k, cap, c->k[l], c->capacity, c, c->length[l]);
        copy_rows(v, cap, c->v[l], c->capacity, c, c->length[l]);
        copy_row_meta(valid, cap, c->valid[l], c->capacity, c->B, c->length[l]);
        copy_row_meta(pos, cap, c->pos[l], c->capacity, c->B, c->length[l]);
        Py_SETREF(c->k[l], k);
        Py_SETREF(c->v[l], v);
        Py_SETREF(c->valid[l], valid);
        Py_SETREF(c->pos[l], pos);
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
                  int64_t ksh, const float *v, int64_t vsb, int64_t vst, int64_t vsh,
                  const uint8_t *valid, int64_t valid_sb)
{
    const int64_t D = c->D, cap = c->capacity, past = c->length[l];
    float *K = PyArray_DATA(c->k[l]), *V = PyArray_DATA(c->v[l]);
    uint8_t *ok = PyArray_DATA(c->valid[l]);
    int64_t *pos = PyArray_DATA(c->pos[l]);
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t t = 0; t < T; t++) {
            ok[b * cap + past + t] = valid ? (valid[b * valid_sb + t] != 0) : 1;
            pos[b * cap + past + t] = c->seen[l] + t;
        }
    /* cache rows (b, kvh, past + t) <- source rows (b, t, kvh) */
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t h = 0; h < c->KVH; h++)
            for (int64_t t = 0; t < T; t++) {
                int64_t dst = ((b * c->KVH + h) * cap + past + t) * D;
                memcpy(K + dst, k + b * ksb + t * kst + h * ksh, (size_t)D * sizeof(float));
                memcpy(V + dst, v + b * vsb + t * vst + h * vsh, (size_t)D * sizeof(float));
            }
    c->length[l] = past + T;
    c->seen[l] += T;
}

/* Keep, for batch row b, the rows whose keep[] flag is set (in order): compacts keys,
 * values, validity and positions of every kv head. Returns the new length. */
static int64_t
compact_row(tf_kvcache *c, int64_t l, int64_t b, const uint8_t *keep, int64_t len)
{
    const int64_t D = c->D, cap = c->capacity;
    float *K = PyArray_DATA(c->k[l]), *V = PyArray_DATA(c->v[l]);
    uint8_t *ok = PyArray_DATA(c->valid[l]);
    int64_t *pos = PyArray_DATA(c->pos[l]);
    int64_t n = 0;
    for (int64_t j = 0; j < len; j++) {
        if (!keep[j]) {
            continue;
        }
        if (n != j) {
            for (int64_t h = 0; h < c->KVH; h++) {
                float *base_k = K + (b * c->KVH + h) * cap * D, *base_v = V + (b * c->KVH + h) * cap * D;
                memcpy(base_k + n * D, base_k + j * D, (size_t)D * sizeof(float));
                memcpy(base_v + n * D, base_v + j * D, (size_t)D * sizeof(float));
            }
            ok[b * cap + n] = ok[b * cap + j];
            pos[b * cap + n] = pos[b * cap + j];
        }
        n++;
    }
    return n;
}

void
tf_kvcache_evict(tf_kvcache *c, int64_t l, const float *score)
{
    const int64_t len = c->length[l];
    if (c->policy == TF_CACHE_FULL || len <= c->budget) {
        return;
    }
    uint8_t *keep = malloc((size_t)len);
    if (keep == NULL) {
        return;  /* the cache just stays larger than the budget */
    }
    int64_t new_len = len;
    for (int64_t b = 0; b < c->B; b++) {
        if (c->policy == TF_CACHE_SINK_WINDOW) {
            /* the first n_sink tokens and the most recent budget - n_sink ones */
            const int64_t recent = c->budget - c->n_sink;
            for (int64_t j = 0; j < len; j++) {
                keep[j] = j < c->n_sink || j >= len - recent;
            }
        }
        else {
            /* TOVA: drop the len - budget rows with the lowest score (ties: the older one) */
            const float *s = score + b * len;
            memset(keep, 1, (size_t)len);
            for (int64_t drop = len - c->budget; drop > 0; drop--) {
                int64_t worst = -1;
                for (int64_t j = 0; j < len; j++) {
                    if (keep[j] && (worst < 0 || s[j] < s[worst])) {
                        worst = j;
                    }
                }
                if (worst >= 0) {
                    keep[worst] = 0;
                }
            }
        }
        new_len = compact_row(c, l, b, keep, len);
    }
    free(keep);
    c->length[l] = new_len;
}

/* ------------------------------------------------------------------ Python type */

static PyObject *
kvcache_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"num_layers", "batch_size", "num_key_value_heads", "head_dim",
                             "capacity", "policy", "budget", "n_sink", NULL};
    long long layers, B, KVH, D, cap = 256, budget = 0, n_sink = 4;
    const char *policy = "full";
    tf_state *st = tf_state_of_type(type);
    tf_kvcache *self;
    if (st == NULL || !PyArg_ParseTupleAndKeywords(args, kwds, "LLLL|$LsLL:KVCache", kwlist, &layers,
                                                   &B, &KVH, &D, &cap, &policy, &budget, &n_sink)) {
        return NULL;
    }
    tf_cache_policy pol;
    if (strcmp(policy, "full") == 0) {
        pol = TF_CACHE_FULL;
    }
    else if (strcmp(policy, "sink_window") == 0) {
        pol = TF_CACHE_SINK_WINDOW;
    }
    else if (strcmp(policy, "tova") == 0) {
        pol = TF_CACHE_TOVA;
    }
    else {
        return tf_value_error(st, "unknown cache policy '%s' (expected 'full', 'sink_window' or 'tova')", policy);
    }
    if (pol != TF_CACHE_FULL && (budget < 1 || n_sink < 0 || (pol == TF_CACHE_SINK_WINDOW && n_sink >= budget))) {
        return tf_value_error(st, "cache policy '%s' needs budget >= 1%s, got budget=%lld n_sink=%lld", policy,
                              pol == TF_CACHE_SINK_WINDOW ? " and 0 <= n_sink < budget" : "", budget, n_sink);
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
    self->policy = pol;
    self->budget = pol == TF_CACHE_FULL ? 0 : budget;
    self->n_sink = pol == TF_CACHE_SINK_WINDOW ? n_sink : 0;
    self->length = PyMem_Calloc((size_t)layers, sizeof(int64_t));
    self->seen = PyMem_Calloc((size_t)layers, sizeof(int64_t));
    self->k = PyMem_Calloc((size_t)layers, sizeof(PyArrayObject *));
    self->v = PyMem_Calloc((size_t)layers, sizeof(PyArrayObject *));
    self->valid = PyMem_Calloc((size_t)layers, sizeof(PyArrayObject *));
    self->pos = PyMem_Calloc((size_t)layers, sizeof(PyArrayObject *));
    if (!self->length || !self->seen || !self->k || !self->v || !self->valid || !self->pos) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    for (int64_t l = 0; l < layers; l++) {
        if ((self->k[l] = new_store(self, cap)) == NULL || (self->v[l] = new_store(self, cap)) == NULL ||
            (self->valid[l] = new_rows(self, cap, NPY_BOOL)) == NULL ||
            (self->pos[l] = new_rows(self, cap, NPY_INT64)) == NULL) {
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
    for (int64_t l = 0; self->k && self->valid && l < self->layers; l++) {
        Py_VISIT(self->k[l]);
        Py_VISIT(self->v[l]);
        Py_VISIT(self->valid[l]);
        Py_VISIT(self->pos[l]);
    }
    return 0;
}

static int
kvcache_clear(tf_kvcache *self)
{
    for (int64_t l = 0; self->k && self->valid && l < self->layers; l++) {
        Py_CLEAR(self->k[l]);
        Py_CLEAR(self->v[l]);
        Py_CLEAR(self->valid[l]);
        Py_CLEAR(self->pos[l]);
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
    PyMem_Free(self->valid);
    PyMem_Free(self->pos);
    PyMem_Free(self->length);
    PyMem_Free(self->seen);
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

/* (B, length) original positions of the cached rows of a layer (a copy). */
static PyObject *
kvcache_positions(tf_kvcache *self, PyObject *arg)
{
    int64_t l;
    if (layer_arg(tf_state_of((PyObject *)self), self, arg, &l) < 0) {
        return NULL;
    }
    npy_intp dims[2] = {(npy_intp)self->B, (npy_intp)self->length[l]};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_INT64);
    if (out != NULL) {
        copy_row_meta(out, self->length[l], self->pos[l], self->capacity, self->B, self->length[l]);
    }
    return (PyObject *)out;
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
    return PyLong_FromLongLong(self->seen[l]);
}

static PyObject *
kvcache_num_cached(tf_kvcache *self, PyObject *arg)
{
    int64_t l;
    if (layer_arg(tf_state_of((PyObject *)self), self, arg, &l) < 0) {
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
        if (self->length[l] != self->seen[l] && n < self->length[l]) {
            return tf_value_error(st, "crop() of a cache that has evicted tokens is not supported");
        }
    }
    if (tf_kvcache_acquire(st, self) < 0) {
        return NULL;
    }
    for (int64_t l = 0; l < self->layers; l++) {
        self->length[l] = self->length[l] < n ? self->length[l] : n;
        self->seen[l] = self->seen[l] < n ? self->seen[l] : n;
    }
    tf_kvcache_release(self);
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
        PyArrayObject *valid = (PyArrayObject *)PyArray_TakeFrom(self->valid[l], (PyObject *)idx, 0, NULL, NPY_RAISE);
        PyArrayObject *pos = valid ? (PyArrayObject *)PyArray_TakeFrom(self->pos[l], (PyObject *)idx, 0, NULL, NPY_RAISE) : NULL;
        if (pos == NULL) {
            Py_XDECREF(valid);
            ok = 0;
            break;
        }
        Py_SETREF(self->valid[l], valid);
        Py_SETREF(self->pos[l], pos);
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
    if (tf_kvcache_acquire(tf_state_of((PyObject *)self), self) < 0) {
        return NULL;
    }
    for (int64_t l = 0; l < self->layers; l++) {
        self->length[l] = 0;
        self->seen[l] = 0;
    }
    tf_kvcache_release(self);
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
     "get_seq_length($self, layer=0, /)\n--\n\nTokens seen so far by a layer (HF's Cache.get_seq_length; with\n"
     "eviction, more than are stored)."},
    {"num_cached", (PyCFunction)kvcache_num_cached, METH_O,
     "num_cached($self, layer, /)\n--\n\nRows stored for a layer (after eviction)."},
    {"positions", (PyCFunction)kvcache_positions, METH_O,
     "positions($self, layer, /)\n--\n\n(batch, num_cached) original positions of the stored tokens."},
    {"crop", (PyCFunction)kvcache_crop, METH_O,
     "crop($self, length, /)\n--\n\nKeep only the first length tokens of every layer."},
    {"reorder", (PyCFunction)kvcache_reorder, METH_O,
     "reorder($self, beam_idx, /)\n--\n\nBeam search: batch row b takes the cached keys/values of row beam_idx[b]."},
    {"reset", (PyCFunction)kvcache_reset, METH_NOARGS, "reset($self, /)\n--\n\nEmpty every layer (memory is kept)."},
    {NULL},
};

PyDoc_STRVAR(kvcache_doc,
"KVCache(num_layers, batch_size, num_key_value_heads, head_dim, *, capacity=256,\n"
"        policy='full', budget=0, n_sink=4)\n--\n\n"
"Keys and values of past tokens for incremental decoding, one (batch, kv_heads, capacity,\n"
"head_dim) float32 store per layer, grown (doubling) when full. Pass it to a layer call as\n"
"past_key_values=cache, layer_idx=i: the layer appends the new tokens' keys/values in place\n"
"and attends over everything cached. keys(i)/values(i) are read-only NumPy views.\n\n"
"Eviction after each call keeps at most budget tokens per layer: policy='sink_window' keeps\n"
"the first n_sink and the most recent ones (StreamingLLM); policy='tova' drops the tokens\n"
"the current (last) query attends to least, averaged over heads, per layer (TOVA). Kept\n"
"keys keep their rotary rotation and new tokens continue at get_seq_length(), so positions\n"
"stay those of the original sequence.");

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
