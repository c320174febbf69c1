/* weight_cache.h — packed weights shared between processes through files in a cache
 * directory (tfcore.set_weight_cache); see weight_cache.c for why and how. No Python. */
#ifndef TFCORE_CORE_WEIGHT_CACHE_H
#define TFCORE_CORE_WEIGHT_CACHE_H

#include <stddef.h>

/* Set the process-wide cache directory (NULL or "": none). -1 if the path is too long. */
int tf_weight_cache_set(const char *dir);

/* The directory's length (0: none), copied into out (cap bytes) when out is not NULL. */
size_t tf_weight_cache_get(char *out, size_t cap);

/* With a cache directory set: a mapping of the cache file holding exactly the len bytes at
 * data (written first if missing), to be used instead of data (the caller frees data and
 * releases the mapping with tf_weight_cache_unmap). NULL when there is no directory, the
 * buffer is small, or the file cannot be written or read: the caller keeps data. Thread-safe;
 * call without the GIL (it may write len bytes). */
void *tf_weight_cache_share(void *data, size_t len);

void tf_weight_cache_unmap(void *map, size_t len);

#endif /* TFCORE_CORE_WEIGHT_CACHE_H */
