/* kv_cache.c — KVCache: preallocated per-layer keys/values that attention appends to in
 * place during incremental decoding; keys/values readable as NumPy views (no copy). */
#include "layers/kv_cache.h"
#include "kernels/bfloat16.h"
#include "kernels/quant.h"
#include "kernels/attention/sdpa.h"

#include <string.h>

int
tf_kvcache_check(tf_state *st, PyObject *obj)
{
    return PyObject_TypeCheck(obj, st->KVCache);
}

static const int kv_typenum[] = {NPY_FLOAT32, NPY_UINT16, NPY_INT8};
static const char *const kv_dtype_names[] = {"float32", "bfloat16", "int8"};

/* (B, KVH, capacity, D) keys or values in the cache's dtype */
static PyArrayObject *
new_store(const tf_kvcache *c, int64_t capacity)
{
    npy_intp dims[4] = {(npy_intp)c->B, (npy_intp)c->KVH, (npy_intp)capacity, (npy_intp)c->D};
    return (PyArrayObject *)PyArray_ZEROS(4, dims, kv_typenum[c->dtype], 0);
}

/* (B, KVH, capacity) float32 scales of int8 rows */
static PyArrayObject *
new_scales(const tf_kvcache *c, int64_t capacity)
{
    npy_intp dims[3] = {(npy_intp)c->B, (npy_intp)c->KVH, (npy_intp)capacity};
    return (PyArrayObject *)PyArray_ZEROS(3, dims, NPY_FLOAT32, 0);
}

/* Slots of the per-head row stores of layer l: keys, values and (int8) their scales. They
 * share the (B, KVH, capacity) leading axes, so rows move between them alike. */
static int
layer_stores(tf_kvcache *c, int64_t l, PyArrayObject **slots[4])
{
    slots[0] = &c->k[l];
    slots[1] = &c->v[l];
    if (c->dtype != TF_KV_INT8) {
        return 2;
    }
    slots[2] = &c->ks[l];
    slots[3] = &c->vs[l];
    return 4;
}

static PyArrayObject *
new_like(const tf_kvcache *c, PyArrayObject *store, int64_t capacity)
{
    return PyArray_NDIM(store) == 4 ? new_store(c, capacity) : new_scales(c, capacity);
}

static PyArrayObject *
new_rows(const tf_kvcache *c, int64_t capacity, int typenum)
{
    npy_intp dims[2] = {(npy_intp)c->B, (npy_intp)capacity};
    return (PyArrayObject *)PyArray_ZEROS(2, dims, typenum, 0);
}

/* dst/src are (B, cap) row stores of itemsize bytes; copy the first rows of every b. */
static void
copy_row_meta(PyArrayObject *dst, int64_t dcap, PyArrayObject *src, int64_t scap, int64_t B,
              int64_t rows)
{
    const size_t item = (size_t)PyArray_ITEMSIZE(src);
    for (int64_t b = 0; b < B; b++) {
        memcpy((char *)PyArray_DATA(dst) + (size_t)(b * dcap) * item,
               (const char *)PyArray_DATA(src) + (size_t)(b * scap) * item, (size_t)rows * item);
    }
}

/* dst/src are (B, KVH, cap[, D]) stores of one type and shape but capacity; copy the first
 * rows of every (b, kvh). */
static void
copy_rows(PyArrayObject *dst, PyArrayObject *src, const tf_kvcache *c, int64_t rows)
{
    const npy_intp row = PyArray_STRIDE(src, 2), dblock = PyArray_STRIDE(dst, 1),
                   sblock = PyArray_STRIDE(src, 1);
    char *d = PyArray_DATA(dst);
    const char *s = PyArray_DATA(src);
    for (int64_t bh = 0; bh < c->B * c->KVH; bh++) {
        memcpy(d + bh * dblock, s + bh * sblock, (size_t)(rows * row));
    }
}

static int
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
        PyArrayObject **slots[4], *grown[4] = {NULL};
        const int n = layer_stores(c, l, slots);
        PyArrayObject *valid = new_rows(c, cap, NPY_BOOL), *pos = new_rows(c, cap, NPY_INT64);
        int ok = valid != NULL && pos != NULL;
        for (int i = 0; ok && i < n; i++) {
            ok = (grown[i] = new_like(c, *slots[i], cap)) != NULL;
        }
        if (!ok) {
            for (int i = 0; i < n; i++) {
                Py_XDECREF(grown[i]);
            }
            Py_XDECREF(valid);
            Py_XDECREF(pos);
            return -1;
        }
        for (int i = 0; i < n; i++) {
            copy_rows(grown[i], *slots[i], c, c->length[l]);
            Py_SETREF(*slots[i], grown[i]);
        }
        copy_row_meta(valid, cap, c->valid[l], c->capacity, c->B, c->length[l]);
        copy_row_meta(pos, cap, c->pos[l], c->capacity, c->B, c->length[l]);
        Py_SETREF(c->valid[l], valid);
        Py_SETREF(c->pos[l], pos);
    }
    c->capacity = cap;
    return 0;
}

static int
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

/* Store one (D,) row at row index r of a layer's keys or values (and its int8 scale). */
static void
store_row(const tf_kvcache *c, PyArrayObject *store, PyArrayObject *scales, int64_t r,
          const float *x)
{
    const int64_t D = c->D;
    switch (c->dtype) {
        case TF_KV_F32:
            memcpy((float *)PyArray_DATA(store) + r * D, x, (size_t)D * sizeof(float));
            break;
        case TF_KV_BF16: tf_f32_to_bf16(x, (uint16_t *)PyArray_DATA(store) + r * D, D); break;
        case TF_KV_INT8:
            tf_quantize_rows_s8(x, 1, D, 127, (int8_t *)PyArray_DATA(store) + r * D,
                                (float *)PyArray_DATA(scales) + r);
            break;
    }
}

static void
tf_kvcache_append(tf_kvcache *c, int64_t l, int64_t T, const float *k, int64_t ksb, int64_t kst,
                  int64_t ksh, const float *v, int64_t vsb, int64_t vst, int64_t vsh,
                  const uint8_t *valid, int64_t valid_sb)
{
    const int64_t cap = c->capacity, past = c->length[l];
    uint8_t *ok = PyArray_DATA(c->valid[l]);
    int64_t *pos = PyArray_DATA(c->pos[l]);
    PyArrayObject *ks = c->ks ? c->ks[l] : NULL, *vs = c->vs ? c->vs[l] : NULL;
    for (int64_t b = 0; b < c->B; b++) {
        for (int64_t t = 0; t < T; t++) {
            ok[b * cap + past + t] = valid ? (valid[b * valid_sb + t] != 0) : 1;
            pos[b * cap + past + t] = c->seen[l] + t;
        }
    }
    /* cache rows (b, kvh, past + t) <- source rows (b, t, kvh) */
    for (int64_t b = 0; b < c->B; b++) {
        for (int64_t h = 0; h < c->KVH; h++) {
            for (int64_t t = 0; t < T; t++) {
                int64_t r = (b * c->KVH + h) * cap + past + t;
                store_row(c, c->k[l], ks, r, k + b * ksb + t * kst + h * ksh);
                store_row(c, c->v[l], vs, r, v + b * vsb + t * vst + h * vsh);
            }
        }
    }
    c->length[l] = past + T;
    c->seen[l] += T;
}

/* (rows, D) float32 from rows [0, rows) of one (b, kvh) block of a store (its rows are
 * contiguous). */
static void
load_rows(const tf_kvcache *c, PyArrayObject *store, PyArrayObject *scales, int64_t bh,
          int64_t rows, float *out)
{
    const int64_t D = c->D, first = bh * c->capacity;
    switch (c->dtype) {
        case TF_KV_F32:
            memcpy(out, (const float *)PyArray_DATA(store) + first * D,
                   (size_t)(rows * D) * sizeof(float));
            break;
        case TF_KV_BF16:
            tf_bf16_to_f32((const uint16_t *)PyArray_DATA(store) + first * D, out, rows * D);
            break;
        case TF_KV_INT8:
            tf_dequantize_rows_s8((const int8_t *)PyArray_DATA(store) + first * D, rows, D,
                                  (const float *)PyArray_DATA(scales) + first, out);
            break;
    }
}

static void
tf_kvcache_dequantize(const tf_kvcache *c, int64_t l, int64_t rows, float *k, float *v)
{
    const int64_t n = c->B * c->KVH;
#pragma omp parallel for schedule(static) if (n * rows * c->D >= (1 << 15))
    for (int64_t bh = 0; bh < n; bh++) {
        load_rows(c, c->k[l], c->ks ? c->ks[l] : NULL, bh, rows, k + bh * rows * c->D);
        load_rows(c, c->v[l], c->vs ? c->vs[l] : NULL, bh, rows, v + bh * rows * c->D);
    }
}

/* Keep, for batch row b, the rows whose keep[] flag is set (in order): compacts keys,
 * values, validity and positions of every kv head. Returns the new length. */
static int64_t
compact_row(tf_kvcache *c, int64_t l, int64_t b, const uint8_t *keep, int64_t len)
{
    const int64_t cap = c->capacity;
    PyArrayObject **slots[4];
    const int nstores = layer_stores(c, l, slots);
    uint8_t *ok = PyArray_DATA(c->valid[l]);
    int64_t *pos = PyArray_DATA(c->pos[l]);
    int64_t n = 0;
    for (int64_t j = 0; j < len; j++) {
        if (!keep[j]) {
            continue;
        }
        if (n != j) {
            for (int i = 0; i < nstores; i++) {
                PyArrayObject *a = *slots[i];
                const npy_intp row = PyArray_STRIDE(a, 2);
                for (int64_t h = 0; h < c->KVH; h++) {
                    char *base = (char *)PyArray_DATA(a) + (b * c->KVH + h) * cap * row;
                    memcpy(base + n * row, base + j * row, (size_t)row);
                }
            }
            ok[b * cap + n] = ok[b * cap + j];
            pos[b * cap + n] = pos[b * cap + j];
        }
        n++;
    }
    return n;
}

static void
tf_kvcache_evict(tf_kvcache *c, int64_t l, const float *score)
{
    const int64_t len = c->length[l];
    if (c->policy == TF_CACHE_FULL || len <= c->budget) {
        return;
    }
    uint8_t *keep = malloc((size_t)len);
    if (keep == NULL) {
        return; /* the cache just stays larger than the budget */
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

/* ------------------------------------------------------------------ used by attention layers */

int64_t
tf_kvcache_bind(tf_state *st, PyObject *cache_obj, PyObject *layer_obj, int64_t B, int64_t KVH,
                int64_t D, int64_t T, tf_kvcache **cache, int64_t *layer)
{
    *cache = NULL;
    if (!tf_kvcache_check(st, cache_obj)) {
        tf_type_error(st, "past_key_values must be a tfcore.KVCache, got %s",
                      Py_TYPE(cache_obj)->tp_name);
        return -1;
    }
    tf_kvcache *c = (tf_kvcache *)cache_obj;
    long long l = layer_obj == NULL || layer_obj == Py_None ? -1 : PyLong_AsLongLong(layer_obj);
    if (l == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (l < 0 || l >= c->layers) {
        tf_value_error(
            st, "layer_idx must be given with past_key_values and lie in [0, %lld), got %lld",
            (long long)c->layers, l);
        return -1;
    }
    if (c->B != B || c->KVH != KVH || c->D != D) {
        tf_value_error(st,
                       "KVCache is (batch %lld, kv_heads %lld, head_dim %lld), this call needs "
                       "(%lld, %lld, %lld)",
                       (long long)c->B, (long long)c->KVH, (long long)c->D, (long long)B,
                       (long long)KVH, (long long)D);
        return -1;
    }
    /* take the cache first: growing it swaps its arrays, which must not happen under a
     * call that another thread is running on it */
    if (tf_kvcache_acquire(st, c) < 0) {
        return -1;
    }
    if (tf_kvcache_reserve(st, c, T) < 0) {
        tf_kvcache_release(c);
        return -1;
    }
    *cache = c;
    *layer = l;
    return c->length[l];
}

int64_t
tf_kvcache_seen(const tf_kvcache *c, int64_t l)
{
    return c->seen[l];
}

int
tf_kvcache_attend(tf_kvcache *kc, int64_t l, const uint8_t *key_mask, tf_attn_args *a, float **tmp,
                  tf_err *err)
{
    /* Append this call's keys/values, then read K/V (B, KVH, stored + T, D) from the cache;
     * the causal diagonal moves right by the stored rows (bottom-right alignment). The
     * caller's mask spans (B, seen + T): its last T columns mark the new tokens, and the
     * cache remembers which stored rows are real (they may have been moved by eviction). */
    const int64_t B = a->B, KVH = a->KVH, D = a->D, T = a->L;
    const int64_t stored = kc->length[l], seen = kc->seen[l], cap = kc->capacity;
    *tmp = NULL;
    tf_kvcache_append(kc, l, T, a->k, a->k_sb, a->k_ss, a->k_sh, a->v, a->v_sb, a->v_ss, a->v_sh,
                      key_mask ? key_mask + seen : NULL, seen + T);
    a->S = stored + T;
    if (kc->dtype == TF_KV_F32) {
        a->k = PyArray_DATA(kc->k[l]);
        a->k_sb = KVH * cap * D;
        a->k_sh = cap * D;
        a->k_ss = D;
        a->v = PyArray_DATA(kc->v[l]);
        a->v_sb = KVH * cap * D;
        a->v_sh = cap * D;
        a->v_ss = D;
    }
    else {
        /* bf16 / int8 storage: this layer's rows expanded to float32 (B, KVH, S, D) */
        const int64_t rows = a->S;
        float *buf = tf_malloc((size_t)(2 * B * KVH * rows * D) * sizeof(float));
        if (buf == NULL) {
            tf_err_set(err, TF_ERR_MEMORY, "out of memory expanding the cached keys and values");
            return -1;
        }
        tf_kvcache_dequantize(kc, l, rows, buf, buf + B * KVH * rows * D);
        a->k = buf;
        a->k_sb = KVH * rows * D;
        a->k_sh = rows * D;
        a->k_ss = D;
        a->v = buf + B * KVH * rows * D;
        a->v_sb = a->k_sb;
        a->v_sh = a->k_sh;
        a->v_ss = D;
        *tmp = buf;
    }
    a->causal_offset = stored;
    if (key_mask != NULL && kc->length[l] != kc->seen[l]) {
        /* rows were evicted: the caller's mask no longer lines up with the stored rows, so
         * the validity the cache recorded when each row was appended is used instead */
        a->bool_mask = PyArray_DATA(kc->valid[l]);
        a->bm_sb = cap;
        a->bm_sh = 0;
        a->bm_sl = 0;
        a->bm_ss = 1;
    }
    return 0;
}

/* TOVA scores the stored rows by the last query's attention weights averaged over heads,
 * obtained from one more single-row attention call (the main call never materialises
 * weights). */
int
tf_kvcache_evict_after(tf_kvcache *kc, int64_t layer, const tf_attn_args *done, tf_err *err)
{
    const int64_t S = kc->length[layer];
    if (kc->policy == TF_CACHE_FULL || S <= kc->budget) {
        return 0;
    }
    if (kc->policy != TF_CACHE_TOVA) {
        tf_kvcache_evict(kc, layer, NULL);
        return 0;
    }
    const int64_t B = done->B, H = done->H, Dv = done->Dv;
    float *w = tf_malloc((size_t)(B * H * S) * sizeof(float));
    float *out = tf_malloc((size_t)(B * H * Dv) * sizeof(float));
    float *score = tf_malloc((size_t)(B * S) * sizeof(float));
    int rc = -1;
    if (w == NULL || out == NULL || score == NULL) {
        tf_err_set(err, TF_ERR_MEMORY, "out of memory for TOVA attention scores");
        goto done_evict;
    }
    tf_attn_args last = *done; /* the same attention, for the last query row only */
    last.q = done->q + (done->L - 1) * done->q_sl;
    last.L = 1;
    last.causal_offset = done->causal_offset + done->L - 1;
    last.out = out;
    last.o_sb = H * Dv;
    last.o_sh = Dv;
    last.o_sl = Dv;
    last.weights = w;
    last.lse = NULL;
    if (tf_attention(&last, err) < 0) {
        goto done_evict;
    }
    for (int64_t b = 0; b < B; b++) {
        for (int64_t j = 0; j < S; j++) {
            float sum = 0.0f;
            for (int64_t h = 0; h < H; h++) {
                sum += w[(b * H + h) * S + j];
            }
            score[b * S + j] = sum / (float)H;
        }
    }
    tf_kvcache_evict(kc, layer, score);
    rc = 0;
done_evict:
    tf_free(w);
    tf_free(out);
    tf_free(score);
    return rc;
}

/* ------------------------------------------------------------------ Python type */

static PyObject *
kvcache_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"num_layers", "batch_size", "num_key_value_heads",
                             "head_dim",   "capacity",   "policy",
                             "budget",     "n_sink",     "dtype",
                             NULL};
    long long layers, B, KVH, D, cap = 256, budget = 0, n_sink = 4;
    const char *policy = "full", *dtype = "float32";
    tf_state *st = tf_state_of_type(type);
    tf_kvcache *self;
    if (st == NULL || !TF_PARSE(st, args, kwds, "LLLL|$LsLLs:KVCache", kwlist, &layers, &B, &KVH,
                                &D, &cap, &policy, &budget, &n_sink, &dtype)) {
        return NULL;
    }
    tf_kv_dtype kv_dtype;
    if (strcmp(dtype, "float32") == 0 || strcmp(dtype, "fp32") == 0) {
        kv_dtype = TF_KV_F32;
    }
    else if (strcmp(dtype, "bfloat16") == 0 || strcmp(dtype, "bf16") == 0) {
        kv_dtype = TF_KV_BF16;
    }
    else if (strcmp(dtype, "int8") == 0) {
        kv_dtype = TF_KV_INT8;
    }
    else {
        return tf_value_error(st, "KVCache dtype must be 'float32', 'bfloat16' or 'int8', got '%s'",
                              dtype);
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
        return tf_value_error(
            st, "unknown cache policy '%s' (expected 'full', 'sink_window' or 'tova')", policy);
    }
    if (pol != TF_CACHE_FULL &&
        (budget < 1 || n_sink < 0 || (pol == TF_CACHE_SINK_WINDOW && n_sink >= budget))) {
        return tf_value_error(
            st, "cache policy '%s' needs budget >= 1%s, got budget=%lld n_sink=%lld", policy,
            pol == TF_CACHE_SINK_WINDOW ? " and 0 <= n_sink < budget" : "", budget, n_sink);
    }
    if (layers < 1 || B < 1 || KVH < 1 || D < 1 || cap < 1) {
        return tf_value_error(st,
                              "KVCache sizes must be positive, got num_layers=%lld batch_size=%lld "
                              "num_key_value_heads=%lld head_dim=%lld capacity=%lld",
                              layers, B, KVH, D, cap);
    }
    if ((double)layers * B * KVH * cap * D * 8.0 > 64.0 * (1ull << 30)) {
        return tf_value_error(
            st, "KVCache of %lld layers x %lld x %lld x %lld x %lld would need more than 64 GiB",
            layers, B, KVH, cap, D);
    }
    if ((self = (tf_kvcache *)type->tp_alloc(type, 0)) == NULL) {
        return NULL;
    }
    self->layers = layers;
    self->B = B;
    self->KVH = KVH;
    self->D = D;
    self->dtype = kv_dtype;
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
    if (kv_dtype == TF_KV_INT8) {
        self->ks = PyMem_Calloc((size_t)layers, sizeof(PyArrayObject *));
        self->vs = PyMem_Calloc((size_t)layers, sizeof(PyArrayObject *));
    }
    if (!self->length || !self->seen || !self->k || !self->v || !self->valid || !self->pos ||
        (kv_dtype == TF_KV_INT8 && (!self->ks || !self->vs))) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    for (int64_t l = 0; l < layers; l++) {
        if ((self->k[l] = new_store(self, cap)) == NULL ||
            (self->v[l] = new_store(self, cap)) == NULL ||
            (self->valid[l] = new_rows(self, cap, NPY_BOOL)) == NULL ||
            (self->pos[l] = new_rows(self, cap, NPY_INT64)) == NULL ||
            (self->ks && ((self->ks[l] = new_scales(self, cap)) == NULL ||
                          (self->vs[l] = new_scales(self, cap)) == NULL))) {
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
        if (self->ks && self->vs) {
            Py_VISIT(self->ks[l]);
            Py_VISIT(self->vs[l]);
        }
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
        if (self->ks && self->vs) {
            Py_CLEAR(self->ks[l]);
            Py_CLEAR(self->vs[l]);
        }
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
    PyMem_Free(self->ks);
    PyMem_Free(self->vs);
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
        tf_value_error(st, "layer %lld is out of range for a cache of %lld layers", v,
                       (long long)self->layers);
        return -1;
    }
    *l = v;
    return 0;
}

/* (B, KVH, length, D) float32 keys (which = 0) or values of a layer: a read-only view of
 * a float32 store (no copy; the view keeps the store alive), else a dequantized copy. */
static PyObject *
rows_of(tf_kvcache *self, PyObject *arg, int which)
{
    int64_t l;
    if (layer_arg(tf_state_of((PyObject *)self), self, arg, &l) < 0) {
        return NULL;
    }
    PyArrayObject *store = which == 0 ? self->k[l] : self->v[l];
    const int64_t len = self->length[l];
    npy_intp dims[4] = {(npy_intp)self->B, (npy_intp)self->KVH, (npy_intp)len, (npy_intp)self->D};
    if (self->dtype != TF_KV_F32) {
        PyArrayObject *k = (PyArrayObject *)PyArray_SimpleNew(4, dims, NPY_FLOAT32);
        PyArrayObject *v = k ? (PyArrayObject *)PyArray_SimpleNew(4, dims, NPY_FLOAT32) : NULL;
        if (v != NULL) {
            tf_kvcache_dequantize(self, l, len, PyArray_DATA(k), PyArray_DATA(v));
        }
        Py_XDECREF(which == 0 ? v : k);
        return v == NULL ? (Py_XDECREF(k), NULL) : (PyObject *)(which == 0 ? k : v);
    }
    PyArrayObject *view = (PyArrayObject *)PyArray_NewFromDescr(
        &PyArray_Type, PyArray_DescrFromType(NPY_FLOAT32), 4, dims, PyArray_STRIDES(store),
        PyArray_DATA(store), 0, NULL); /* read-only: the cache owns the contents */
    if (view == NULL || PyArray_SetBaseObject(view, Py_NewRef((PyObject *)store)) < 0) {
        Py_XDECREF(view);
        return NULL;
    }
    return (PyObject *)view;
}

static PyObject *
kvcache_keys(tf_kvcache *self, PyObject *arg)
{
    return rows_of(self, arg, 0);
}

static PyObject *
kvcache_values(tf_kvcache *self, PyObject *arg)
{
    return rows_of(self, arg, 1);
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
/* In place, a (B, ...) C-contiguous store: row b takes row ix[b]'s bytes. Rows with
 * ix[b] == b are not touched (the usual beam step keeps most); the source rows of the others
 * are copied aside first, since a permutation may overwrite a row another one still reads.
 * slot_of: (B,) workspace; scratch grows as needed. -1 when out of memory. */
static int
reorder_rows_in_place(PyArrayObject *a, const int64_t *ix, int64_t *slot_of, int64_t B,
                      char **scratch, size_t *scratch_bytes)
{
    const size_t row = (size_t)PyArray_NBYTES(a) / (size_t)B;
    char *data = PyArray_BYTES(a);
    int64_t used = 0;
    for (int64_t b = 0; b < B; b++) {
        slot_of[b] = -1;
    }
    for (int64_t b = 0; b < B; b++) {
        if (ix[b] != b && slot_of[ix[b]] < 0) {
            slot_of[ix[b]] = used++;
        }
    }
    if ((size_t)used * row > *scratch_bytes) {
        tf_free(*scratch);
        *scratch_bytes = 0;
        if ((*scratch = tf_malloc((size_t)used * row)) == NULL) {
            return -1;
        }
        *scratch_bytes = (size_t)used * row;
    }
    for (int64_t b = 0; b < B; b++) {
        if (slot_of[b] >= 0) {
            memcpy(*scratch + (size_t)slot_of[b] * row, data + (size_t)b * row, row);
        }
    }
    for (int64_t b = 0; b < B; b++) {
        if (ix[b] != b) {
            memcpy(data + (size_t)b * row, *scratch + (size_t)slot_of[ix[b]] * row, row);
        }
    }
    return 0;
}

static PyObject *
kvcache_reorder(tf_kvcache *self, PyObject *arg)
{
    tf_state *st = tf_state_of((PyObject *)self);
    PyArrayObject *idx = tf_arg_beam_idx(st, arg, self->B);
    PyObject *result = NULL;
    if (idx == NULL) {
        return NULL;
    }
    if (tf_kvcache_acquire(st, self) < 0) {
        goto done;
    }
    const int64_t B = self->B;
    int64_t *ix = tf_malloc((size_t)B * (sizeof(int64_t) + sizeof(int64_t)));
    if (ix == NULL) {
        tf_kvcache_release(self);
        PyErr_NoMemory();
        goto done;
    }
    int64_t *slot_of = ix + B; /* source row -> its copy in scratch, or -1 */
    int identity = 1;
    for (int64_t b = 0; b < B; b++) {
        ix[b] = PyArray_ITEMSIZE(idx) == 8 ? ((const int64_t *)PyArray_DATA(idx))[b]
                                           : ((const int32_t *)PyArray_DATA(idx))[b];
        identity &= ix[b] == b;
    }
    int ok = 1;
    char *scratch = NULL;
    size_t scratch_bytes = 0;
    for (int64_t l = 0; ok && !identity && l < self->layers; l++) {
        PyArrayObject **slots[6];
        int n = layer_stores(self, l, slots);
        slots[n++] = &self->valid[l];
        slots[n++] = &self->pos[l];
        for (int i = 0; ok && i < n; i++) {
            if (!PyArray_IS_C_CONTIGUOUS(*slots[i])) { /* never made so here; kept general */
                PyArrayObject *taken = (PyArrayObject *)PyArray_TakeFrom(*slots[i], (PyObject *)idx,
                                                                         0, NULL, NPY_RAISE);
                if (taken == NULL) {
                    ok = 0;
                    break;
                }
                Py_SETREF(*slots[i], taken);
                continue;
            }
            if (reorder_rows_in_place(*slots[i], ix, slot_of, B, &scratch, &scratch_bytes) < 0) {
                PyErr_NoMemory();
                ok = 0;
            }
        }
    }
    tf_free(scratch);
    tf_free(ix);
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

/* The allocated keys, values (and int8 scales) in MiB, as text: "12.5". */
static void
memory_mib(const tf_kvcache *self, char *buf, size_t size)
{
    const double rows = (double)self->layers * 2.0 * (double)(self->B * self->KVH * self->capacity);
    const double row_bytes =
        (double)self->D * PyArray_ITEMSIZE(self->k[0]) + (self->dtype == TF_KV_INT8 ? 4.0 : 0.0);
    snprintf(buf, size, "%.1f", rows * row_bytes / (1 << 20));
}

static PyObject *
kvcache_repr(tf_kvcache *self)
{
    char buf[32];
    memory_mib(self, buf, sizeof(buf));
    return PyUnicode_FromFormat(
        "KVCache(num_layers=%lld, batch_size=%lld, num_key_value_heads=%lld, head_dim=%lld, "
        "dtype=%s, length=%lld, capacity=%lld, memory=%s MiB)",
        (long long)self->layers, (long long)self->B, (long long)self->KVH, (long long)self->D,
        kv_dtype_names[self->dtype], (long long)self->length[0], (long long)self->capacity, buf);
}

/* Jupyter's rich display: the repr's facts as a table, lengths per layer included. */
static PyObject *
kvcache_repr_html(tf_kvcache *self, PyObject *unused)
{
    long long lmin = self->length[0], lmax = self->length[0];
    for (int64_t l = 1; l < self->layers; l++) {
        lmin = self->length[l] < lmin ? self->length[l] : lmin;
        lmax = self->length[l] > lmax ? self->length[l] : lmax;
    }
    const char *policy = self->policy == TF_CACHE_FULL          ? "full"
                         : self->policy == TF_CACHE_SINK_WINDOW ? "sink_window"
                                                                : "tova";
    char memory[32], stored[48];
    memory_mib(self, memory, sizeof(memory));
    if (lmin == lmax) {
        snprintf(stored, sizeof(stored), "%lld", lmin);
    }
    else { /* eviction can leave layers with different lengths */
        snprintf(stored, sizeof(stored), "%lld-%lld (varies by layer)", lmin, lmax);
    }
    PyObject *html = PyUnicode_FromFormat(
        "<table><tr><th style='text-align:left'>KVCache</th><td style='text-align:left'>%lld "
        "layers, batch %lld, "
        "%lld kv heads x %lld</td></tr><tr><th style='text-align:left'>dtype</th><td "
        "style='text-align:left'>%s"
        "</td></tr><tr><th style='text-align:left'>tokens stored</th><td style='text-align:left'>%s"
        " (seen %lld) of capacity %lld</td></tr><tr><th style='text-align:left'>policy</th>"
        "<td style='text-align:left'>%s%s</td></tr><tr><th style='text-align:left'>memory</th>"
        "<td style='text-align:left'>%s MiB</td></tr></table>",
        (long long)self->layers, (long long)self->B, (long long)self->KVH, (long long)self->D,
        kv_dtype_names[self->dtype], stored, (long long)self->seen[0], (long long)self->capacity,
        policy, self->policy == TF_CACHE_FULL ? "" : " (budget set)", memory);
    return html;
}

static PyObject *
kvcache_get_dtype(tf_kvcache *self, void *closure)
{
    return PyUnicode_FromString(kv_dtype_names[self->dtype]);
}

static PyGetSetDef kvcache_getset[] = {
    {"dtype", (getter)kvcache_get_dtype, NULL,
     "How keys and values are stored: 'float32', 'bfloat16' or 'int8'.", NULL},
    {NULL},
};

static PyMemberDef kvcache_members[] = {
    {"num_layers", T_LONGLONG, offsetof(tf_kvcache, layers), READONLY, "Layers the cache holds."},
    {"batch_size", T_LONGLONG, offsetof(tf_kvcache, B), READONLY, "Sequences (rows) per layer."},
    {"num_key_value_heads", T_LONGLONG, offsetof(tf_kvcache, KVH), READONLY, "KV heads per layer."},
    {"head_dim", T_LONGLONG, offsetof(tf_kvcache, D), READONLY, "Width of each head."},
    {"capacity", T_LONGLONG, offsetof(tf_kvcache, capacity), READONLY,
     "Rows allocated per (batch, head)."},
    {NULL},
};

static PyMethodDef kvcache_methods[] = {
    {"keys", (PyCFunction)kvcache_keys, METH_O,
     "keys($self, layer, /)\n--\n\n(batch, kv_heads, length, head_dim) float32 keys of a layer: a "
     "read-only\n"
     "view (no copy) for a float32 cache, a dequantized copy for bfloat16/int8."},
    {"values", (PyCFunction)kvcache_values, METH_O,
     "values($self, layer, /)\n--\n\nRead-only view of a layer's values, like keys()."},
    {"get_seq_length", (PyCFunction)kvcache_get_seq_length, METH_VARARGS,
     "get_seq_length($self, layer=0, /)\n--\n\nTokens seen so far by a layer (HF's "
     "Cache.get_seq_length; with\n"
     "eviction, more than are stored)."},
    {"num_cached", (PyCFunction)kvcache_num_cached, METH_O,
     "num_cached($self, layer, /)\n--\n\nRows stored for a layer (after eviction)."},
    {"positions", (PyCFunction)kvcache_positions, METH_O,
     "positions($self, layer, /)\n--\n\n(batch, num_cached) original positions of the stored "
     "tokens."},
    {"crop", (PyCFunction)kvcache_crop, METH_O,
     "crop($self, length, /)\n--\n\nKeep only the first length tokens of every layer."},
    {"reorder", (PyCFunction)kvcache_reorder, METH_O,
     "reorder($self, beam_idx, /)\n--\n\nBeam search: batch row b takes the cached keys/values of "
     "row beam_idx[b], in place (rows that keep their own are not touched)."},
    {"reset", (PyCFunction)kvcache_reset, METH_NOARGS,
     "reset($self, /)\n--\n\nEmpty every layer (memory is kept)."},
    {"_repr_html_", (PyCFunction)kvcache_repr_html, METH_NOARGS,
     "Jupyter's rich display of the cache."},
    {NULL},
};

PyDoc_STRVAR(
    kvcache_doc,
    "KVCache(num_layers, batch_size, num_key_value_heads, head_dim, *, capacity=256,\n"
    "        policy='full', budget=0, n_sink=4, dtype='float32')\n--\n\n"
    "Keys and values of past tokens for incremental decoding, one (batch, kv_heads, capacity,\n"
    "head_dim) float32 store per layer, grown (doubling) when full. Pass it to a layer call as\n"
    "past_key_values=cache, layer_idx=i: the layer appends the new tokens' keys/values in place\n"
    "and attends over everything cached. keys(i)/values(i) are read-only NumPy views.\n\n"
    "Eviction after each call keeps at most budget tokens per layer: policy='sink_window' keeps\n"
    "the first n_sink and the most recent ones (StreamingLLM); policy='tova' drops the tokens\n"
    "the current (last) query attends to least, averaged over heads, per layer (TOVA). Kept\n"
    "keys keep their rotary rotation and new tokens continue at get_seq_length(), so positions\n"
    "stay those of the original sequence. Position biases (ALiBi, T5 buckets) measure distance\n"
    "by position in the cache, as StreamingLLM does for ALiBi models (T5 generate refuses\n"
    "evicting policies).\n\n"
    "dtype='bfloat16' stores keys and values as bf16 (half the memory), dtype='int8' as int8\n"
    "with one float32 scale per (batch, head, token) row (max|x| / 127; about a quarter).\n"
    "Attention expands a layer to float32 for each call: this saves memory, not time.");

static PyType_Slot kvcache_slots[] = {
    {Py_tp_new, kvcache_new},           {Py_tp_dealloc, kvcache_dealloc},
    {Py_tp_traverse, kvcache_traverse}, {Py_tp_clear, kvcache_clear},
    {Py_tp_repr, kvcache_repr},         {Py_tp_members, kvcache_members},
    {Py_tp_methods, kvcache_methods},   {Py_tp_getset, kvcache_getset},
    {Py_tp_doc, (void *)kvcache_doc},   {0, NULL},
};

PyType_Spec tf_kv_cache_spec = {
    .name = "tfcore.KVCache",
    .basicsize = sizeof(tf_kvcache),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = kvcache_slots,
};
