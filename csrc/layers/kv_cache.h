/* kv_cache.h — the KVCache type: per-layer key/value storage for incremental decoding. */
#ifndef TFCORE_LAYERS_KV_CACHE_H
#define TFCORE_LAYERS_KV_CACHE_H

#include "tfcore.h"
#include "kernels/attention/sdpa.h"

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
 * per call (by tf_kvcache_attend), so these save memory, not time. */
typedef enum {
    TF_KV_F32 = 0,
    TF_KV_BF16, /* uint16 bits, rounded to nearest even */
    TF_KV_INT8, /* int8 per (batch, head, token) row with a float32 scale: max|x| / 127 */
} tf_kv_dtype;

typedef struct {
    PyObject_HEAD int64_t layers, B, KVH, D;
    tf_kv_dtype dtype;
    int64_t capacity;
    int64_t *length;          /* (layers,) filled rows per layer */
    int64_t *seen;            /* (layers,) tokens ever appended (the next token's position) */
    PyArrayObject **k, **v;   /* (layers,) arrays of (B, KVH, capacity, D) in dtype */
    PyArrayObject **ks, **vs; /* int8: (layers,) (B, KVH, capacity) float32 row scales; else NULL */
    PyArrayObject **valid; /* (layers,) (B, capacity) bool: the row is a real token (not padding) */
    PyArrayObject **pos;   /* (layers,) (B, capacity) int64: original position of each row */
    tf_cache_policy policy;
    int64_t budget, n_sink; /* eviction keeps at most budget rows after each call */
    atomic_int busy;        /* a call is using the cache (guards against sharing by mistake) */
} tf_kvcache;

int tf_kvcache_check(tf_state *st, PyObject *obj);

/* What an attention layer does with a cache; the cache's fields are its own (kv_cache.c).
 *
 * GIL held: check that cache_obj is a KVCache for (B, KVH, D) and layer_obj a layer of it,
 * take it for this call (raises if another call has it) and make room for T more rows.
 * Returns the rows stored for the layer (*cache, *layer set), or -1 with an exception. */
int64_t tf_kvcache_bind(tf_state *st, PyObject *cache_obj, PyObject *layer_obj, int64_t B,
                        int64_t KVH, int64_t D, int64_t T, tf_kvcache **cache, int64_t *layer);
/* GIL held: end the call that tf_kvcache_bind began. */
void tf_kvcache_release(tf_kvcache *c);
/* Tokens ever appended to layer l: the position of the next one. */
int64_t tf_kvcache_seen(const tf_kvcache *c, int64_t l);

/* Without the GIL: append the call's keys and values to layer l (a->k, a->v: (B, T = a->L,
 * KVH, D) views given by a's (batch, head, row) strides; key_mask (B, seen + T) of real
 * tokens or NULL), then point a at every row of the layer as float32: k, v, S and
 * causal_offset = the rows stored before (bottom-right alignment), and bool_mask from the
 * validity recorded per row when rows were evicted. bf16/int8 storage is expanded into
 * *tmp (tf_free it after the attention call; NULL for float32). 0 / -1 with err filled. */
int tf_kvcache_attend(tf_kvcache *c, int64_t l, const uint8_t *key_mask, tf_attn_args *a,
                      float **tmp, tf_err *err);

/* Without the GIL, after the attention call a (from tf_kvcache_attend): apply the cache's
 * eviction policy to layer l (sink + window drops the middle; TOVA scores the rows by the
 * last query's attention weights averaged over heads, from one more single-row attention
 * call). 0 / -1 with err filled. */
int tf_kvcache_evict_after(tf_kvcache *c, int64_t l, const tf_attn_args *a, tf_err *err);

#endif /* TFCORE_LAYERS_KV_CACHE_H */
