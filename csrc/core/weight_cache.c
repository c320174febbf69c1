/* weight_cache.c — packed weights shared between processes through the page cache.
 *
 * Every Linear packs its weights into a private buffer (oneDNN's blocked layout or tfcore's
 * panels): a copy per process, ~40 MiB for MiniLM, 4x that for BERT-base. Worker processes
 * of one machine (Dask, Ray, several notebooks) each held their own. With a cache directory
 * set (tfcore.set_weight_cache), a packed buffer is written once to a file named by a hash
 * of its bytes and then mapped from that file; every process packing the same bytes maps
 * the same file, so the kernel keeps one copy of them in the page cache, counted as shared
 * memory, not in each process's private memory.
 *
 * Content-addressed, so never stale: the file is taken only if its bytes equal the ones this
 * process just packed (memcmp), whatever wrote it; a hash collision or a damaged file just
 * keeps the private buffer. New files appear whole (written aside, then linked in), the first
 * of several simultaneous writers wins so that all map one inode, and a damaged file is
 * replaced by rename(2), leaving mappings of it valid. The mapping is MAP_PRIVATE and writable:
 * nothing writes packed weights after construction, and if something did it would get a
 * private copy of the page instead of a fault. Packing still happens at every load (the
 * bytes must be known to be compared); the cache saves memory, not load time. */
#define _POSIX_C_SOURCE 200809L /* open(O_CLOEXEC), mmap under -std=c11 */
#include "core/weight_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static char g_dir[PATH_MAX]; /* "" = no cache; under g_lock */

/* Packed buffers below this stay private: small layers (biases, heads of tiny models) are
 * not worth a file and a mapping (page granularity) each. */
#define MIN_SHARED_BYTES (64 * 1024)

int
tf_weight_cache_set(const char *dir)
{
    if (dir != NULL && strlen(dir) >= sizeof(g_dir) - 64) {
        return -1; /* room for "/<32 hex>-<size>.w" and a temporary suffix */
    }
    pthread_mutex_lock(&g_lock);
    snprintf(g_dir, sizeof(g_dir), "%s", dir ? dir : "");
    pthread_mutex_unlock(&g_lock);
    return 0;
}

size_t
tf_weight_cache_get(char *out, size_t cap)
{
    pthread_mutex_lock(&g_lock);
    size_t n = strlen(g_dir);
    if (out != NULL && cap > 0) {
        snprintf(out, cap, "%s", g_dir);
    }
    pthread_mutex_unlock(&g_lock);
    return n;
}

/* Two independent 64-bit hashes of the bytes (multiply-rotate over 8-byte words): a name,
 * not a proof — the bytes are compared before a file is used. */
static void
hash128(const unsigned char *p, size_t len, uint64_t out[2])
{
    uint64_t a = 0x9E3779B97F4A7C15ull ^ len, b = 0xC2B2AE3D27D4EB4Full + len;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        a = (a ^ w) * 0xFF51AFD7ED558CCDull;
        a = (a << 31) | (a >> 33);
        b = (b + w) * 0x87C37B91114253D5ull;
        b ^= b >> 29;
    }
    uint64_t tail = 0;
    memcpy(&tail, p + i, len - i);
    a = (a ^ tail) * 0xFF51AFD7ED558CCDull;
    b = (b + tail) * 0x87C37B91114253D5ull;
    a ^= a >> 33;
    b ^= b >> 31;
    out[0] = a;
    out[1] = b;
}

/* The file's bytes mapped, if it exists and holds exactly len bytes equal to data; else NULL,
 * with *exists telling whether there was a file at all. */
static void *
map_if_equal(const char *path, const void *data, size_t len, int *exists)
{
    *exists = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return NULL;
    }
    *exists = 1;
    struct stat sb;
    void *map = NULL;
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && (size_t)sb.st_size == len) {
        map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            map = NULL;
        }
        else if (memcmp(map, data, len) != 0) {
            munmap(map, len);
            map = NULL;
        }
    }
    close(fd);
    return map;
}

/* Put len bytes at path: written to a temporary file in the same directory, then linked in
 * as path — so that a reader never sees half a file and, when several processes pack the same
 * bytes at once, the first one's file stays and all of them map that one inode (renaming
 * each over the other left every process with its own copy). replace: a damaged file is there;
 * rename over it instead. */
static int
write_file(const char *path, const void *data, size_t len, int replace)
{
    char tmp[PATH_MAX + 128];
    snprintf(tmp, sizeof(tmp), "%s.%ld.%lx.tmp", path, (long)getpid(),
             (unsigned long)(uintptr_t)data);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        return -1;
    }
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            close(fd);
            unlink(tmp);
            return -1;
        }
        p += w;
        left -= (size_t)w;
    }
    int rc = close(fd);
    if (rc == 0) {
        rc = replace ? rename(tmp, path) : (link(tmp, path) == 0 || errno == EEXIST ? 0 : -1);
    }
    if (rc != 0 || !replace) {
        unlink(tmp);
    }
    return rc;
}

void *
tf_weight_cache_share(void *data, size_t len)
{
    char dir[PATH_MAX];
    if (data == NULL || len < MIN_SHARED_BYTES || tf_weight_cache_get(dir, sizeof(dir)) == 0) {
        return NULL;
    }
    uint64_t h[2];
    hash128(data, len, h);
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%016llx%016llx-%zu.w", dir, (unsigned long long)h[0],
             (unsigned long long)h[1], len);
    int exists;
    void *map = map_if_equal(path, data, len, &exists);
    if (map == NULL && write_file(path, data, len, exists) == 0) {
        map = map_if_equal(path, data, len, &exists);
    }
    return map; /* NULL: a read-only or full directory, a collision: the caller keeps data */
}

void
tf_weight_cache_unmap(void *map, size_t len)
{
    if (map != NULL) {
        munmap(map, len);
    }
}
