/* kv_cache.h — the KVCache type: per-layer key/value storage for incremental decoding. */
#ifndef TFCORE_KVCACHE_H
#define TFCORE_KVCACHE_H

#include "tfcore.h"

#include <stdatomic.h>

/* Keys and values of layer l live in NumPy arrays (B, KVH, capacity, D) owned by the cache,
 * so views handed to Python stay valid when the cache grows (it swaps in bigger arrays; old
 * views keep the old ones alive). Rows [0, length[l]) of each (b, kvh) are filled. */
typedef enum {
    TF_CACHE_FULL = 0,    /* keep everything */
    TF_CACHE_SINK_WINDOW, /* keep the first n_sink tokens and the most recent ones (StreamingLLM) */
    TF_CACHE_TOVA,        /* drop the tokens the current query attends to least (TOVA) */
} tf_cache_policy;

/* How keys and values are stored. Attention reads float32: a bf16/int8 layer is expanded
 * per call (tf_kvcache_dequantize), so these save memory, not time. */
typedef enum {
    TF_KV_F32 = 0,
    TF_KV_BF16,           /* uint16 bits, rounded to nearest even */
    TF_KV_INT8,           /* int8 per (batch, head, token) row with a float32 scale: max|x| / 127 */
} tf_kv_dtype;

typedef struct {
    PyObject_HEAD
    int64_t layers, B, KVH, D;
    tf_kv_dtype dtype;
    int64_t capacity;
    int64_t *length;          /* (layers,) filled rows per layer */
    int64_t *seen;            /* (layers,) tokens ever appended (the next token's position) */
    PyArrayObject **k, **v;   /* (layers,) arrays of (B, KVH, capacity, D) in dtype */
    PyArrayObject **ks, **vs; /* int8: (layers,) (B, KVH, capacity) float32 row scales; else NULL */
    PyArrayObject **valid;    /* (layers,) (B, capacity) bool: the row is a real token (not padding) */
    PyArrayObject **pos;      /* (layers,) (B, capacity) int64: original position of each row */
    tf_cache_policy policy;
    int64_t budget, n_sink;   /* eviction keeps at most budget rows after each call */
    atomic_int busy;          /* a call is using the cache (guards against sharing by mistake) */
} tf_kvcache;

int tf_kvcache_check(tf_state *st, PyObject *obj);

/* GIL held: make room for T more rows in every layer (grows capacity geometrically). */
int tf_kvcache_reserve(tf_state *st, tf_kvcache *c, int64_t T);

/* GIL held: mark the cache in use by one call, or raise if another call has it. */
int tf_kvcache_acquire(tf_state *st, tf_kvcache *c);
void tf_kvcache_release(tf_kvcache *c);

/* Without the GIL, after tf_kvcache_reserve: append T rows of keys and values for layer l.
 * k is a (B, T, KVH, D) view with element strides (ksb, kst, ksh), v likewise; valid is a
 * (B, T) view (row stride valid_sb) of which new tokens are real, or NULL (all real). */
void tf_kvcache_append(tf_kvcache *c, int64_t l, int64_t T, const float *k, int64_t ksb,
                       int64_t kst, int64_t ksh, const float *v, int64_t vsb, int64_t vst,
                       int64_t vsh, const uint8_t *valid, int64_t valid_sb);

/* Without the GIL: the first rows of layer l as float32 (B, KVH, rows, D), contiguous. */
void tf_kvcache_dequantize(const tf_kvcache *c, int64_t l, int64_t rows, float *k, float *v);

/* Without the GIL: apply the eviction policy to layer l after a call. score is (B, length)
 * (TOVA: the current query's attention weights averaged over heads) or NULL. */
void tf_kvcache_evict(tf_kvcache *c, int64_t l, const float *score);

#endif /* TFCORE_KVCACHE_H */
