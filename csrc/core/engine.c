/* engine.c — the oneDNN engine, thread-count control and per-thread streams and scratch.
 * The Python functions over them (set_num_threads, config, ...) are functions/runtime.c. */
#include "tfcore.h"

#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static dnnl_engine_t g_engine;               /* process-wide; thread-safe per oneDNN */
static atomic_int g_num_threads;             /* tfcore.set_num_threads */
static _Thread_local int tl_thread_override; /* tfcore.threads(n) on this thread; 0 = none */
/* Set in a child forked after tfcore initialised: GNU OpenMP cannot restart its thread pool
 * in a forked child (a parallel region there waits forever for the parent's threads), so
 * the child runs every call on its own thread. */
static atomic_int g_forked_child;

/* Threads beside other work. With no explicit thread count (no OMP_NUM_THREADS, no
 * set_num_threads, no threads(n) override), a call runs on the CPUs other processes leave
 * free: a GNU OpenMP team of n threads on n CPUs, one of them busy with another process,
 * waits at every barrier for the thread that shares that CPU (a scheduler time slice, ms),
 * so a forward of a few ms became 50x slower (issue 23). At most every SAMPLE_NS the load
 * of the other processes is measured: the machine's busy CPU time (/proc/stat, steal
 * included: another VM on the host) minus this process's own (getrusage), over the wall
 * time since the last sample, rounded to whole CPUs. */
#define SAMPLE_NS 100000000LL
static atomic_int g_explicit;    /* OMP_NUM_THREADS set or set_num_threads called */
static atomic_int g_others_busy; /* whole CPUs other processes kept busy, last window */
static atomic_llong g_sample_ns; /* CLOCK_MONOTONIC time of the last sample */
static pthread_mutex_t g_sample_lock = PTHREAD_MUTEX_INITIALIZER;
static double g_last_machine, g_last_self; /* under g_sample_lock */

static long long
monotonic_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Busy CPU seconds of the whole machine since boot (/proc/stat's "cpu" line: user nice
 * system idle iowait irq softirq steal), or -1. */
static double
machine_busy_seconds(void)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL) {
        return -1.0;
    }
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    long hz = sysconf(_SC_CLK_TCK);
    if (n < 4 || hz <= 0) {
        return -1.0;
    }
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)hz;
}

static double
self_cpu_seconds(void)
{
    struct rusage r;
    if (getrusage(RUSAGE_SELF, &r) != 0) {
        return 0.0;
    }
    return (double)r.ru_utime.tv_sec + 1e-6 * (double)r.ru_utime.tv_usec +
           (double)r.ru_stime.tv_sec + 1e-6 * (double)r.ru_stime.tv_usec;
}

/* Refresh g_others_busy when the last sample is older than SAMPLE_NS (one thread samples;
 * the others keep the previous value). */
static void
sample_other_load(void)
{
    long long now = monotonic_ns(), last = atomic_load(&g_sample_ns);
    if (now - last < SAMPLE_NS || pthread_mutex_trylock(&g_sample_lock) != 0) {
        return;
    }
    last = atomic_load(&g_sample_ns);
    if (now - last >= SAMPLE_NS) {
        double machine = machine_busy_seconds(), self = self_cpu_seconds();
        if (machine >= 0.0) {
            if (last > 0) {
                double others = (machine - g_last_machine - (self - g_last_self)) /
                                (1e-9 * (double)(now - last));
                atomic_store(&g_others_busy, others > 0.5 ? (int)(others + 0.5) : 0);
            }
            g_last_machine = machine;
            g_last_self = self;
            atomic_store(&g_sample_ns, now);
        }
    }
    pthread_mutex_unlock(&g_sample_lock);
}

static void
after_fork_in_child(void)
{
    atomic_store(&g_forked_child, 1); /* tf_num_threads() answers 1 from now on */
}
static pthread_key_t g_ctx_key;
static pthread_once_t g_ctx_once = PTHREAD_ONCE_INIT;

dnnl_engine_t
tf_engine(void)
{
    return g_engine;
}

static int
default_threads(void)
{
    /* Respect OMP_NUM_THREADS (OpenMP already parsed it into max threads); otherwise
     * the CPUs this process may run on. */
    if (getenv("OMP_NUM_THREADS") != NULL) {
        return omp_get_max_threads();
    }
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) {
            return n;
        }
    }
    return omp_get_num_procs();
}

int
tf_engine_init(tf_state *st)
{
    if (g_engine != NULL) {
        return 0;
    }
    size_t count = dnnl_engine_get_count(dnnl_cpu);
    if (count == 0) {
        PyErr_SetString(PyExc_ImportError,
                        "tfcore: oneDNN reports no CPU engine (is the oneDNN wheel a GPU/SYCL "
                        "build? tfcore needs onednn-cpu-gomp)");
        return -1;
    }
    dnnl_status_t s = dnnl_engine_create(&g_engine, dnnl_cpu, 0);
    if (s != dnnl_success) {
        PyErr_Format(PyExc_ImportError, "tfcore: oneDNN could not create a CPU engine: %s",
                     tf_dnnl_status_str(s));
        g_engine = NULL;
        return -1;
    }
    atomic_store(&g_num_threads, default_threads());
    atomic_store(&g_explicit, getenv("OMP_NUM_THREADS") != NULL);
    pthread_atfork(NULL, NULL, after_fork_in_child);
    return 0;
}

int
tf_num_threads(void)
{
    int n = tl_thread_override;
    if (atomic_load(&g_forked_child)) {
        return 1;
    }
    if (n > 0) {
        return n;
    }
    n = atomic_load(&g_num_threads);
    if (n > 1 && !atomic_load(&g_explicit)) {
        sample_other_load();
        n -= atomic_load(&g_others_busy);
        n = n < 1 ? 1 : n;
    }
    return n;
}

int
tf_threads_adaptive(void)
{
    return !atomic_load(&g_explicit);
}

int
tf_threads_begin(void)
{
    int n = tf_num_threads();
    if (omp_get_max_threads() != n) {
        omp_set_num_threads(n);
    }
    return n;
}

/* ------------------------------------------------------------ per-thread context */

static void
ctx_destroy(void *p)
{
    tf_thread_ctx *ctx = p;
    if (ctx->stream != NULL) {
        dnnl_stream_destroy(ctx->stream);
    }
    free(ctx->scratch);
    free(ctx->staging);
    free(ctx);
}

static void
ctx_key_create(void)
{
    pthread_key_create(&g_ctx_key, ctx_destroy);
}

tf_thread_ctx *
tf_thread_ctx_get(tf_err *err)
{
    pthread_once(&g_ctx_once, ctx_key_create);
    tf_thread_ctx *ctx = pthread_getspecific(g_ctx_key);
    if (ctx != NULL) {
        return ctx;
    }
    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        tf_err_set(err, TF_ERR_MEMORY, "out of memory allocating a thread context");
        return NULL;
    }
    if (tf_err_dnnl(err, dnnl_stream_create(&ctx->stream, g_engine, dnnl_stream_default_flags),
                    "creating a stream") < 0) {
        free(ctx);
        return NULL;
    }
    pthread_setspecific(g_ctx_key, ctx);
    return ctx;
}

/* Grow *buf (of *have bytes) to at least size bytes, 64-byte aligned; old contents dropped. */
static void *
grow_buffer(void **buf, size_t *have, size_t size, const char *what, tf_err *err)
{
    if (size <= *have && *buf != NULL) {
        return *buf;
    }
    /* never NULL on success, even for 0 bytes (oneDNN's gemm primitives ask for none) */
    size_t want = ((size ? size : 1) + 4095) & ~(size_t)4095;
    void *p = NULL;
    if (posix_memalign(&p, 64, want) != 0) {
        tf_err_set(err, TF_ERR_MEMORY, "out of memory allocating %zu bytes of %s", want, what);
        return NULL;
    }
    free(*buf);
    *buf = p;
    *have = want;
    return p;
}

void *
tf_thread_scratch(tf_thread_ctx *ctx, size_t size, tf_err *err)
{
    return grow_buffer(&ctx->scratch, &ctx->scratch_size, size, "scratchpad", err);
}

void *
tf_thread_staging(tf_thread_ctx *ctx, size_t size, tf_err *err)
{
    return grow_buffer(&ctx->staging, &ctx->staging_size, size, "staging memory", err);
}

int
tf_isa_select_by_name(tf_state *st, const char *name, const char *what)
{
    for (int level = 0; level < TF_ISA_COUNT; level++) {
        if (strcasecmp(name, tf_isa_names[level]) != 0) {
            continue;
        }
        if (tf_isa_select((tf_isa_level)level) < 0) {
            tf_value_error(st, "%s=%s: this CPU runs tfcore's kernels at %s at most (choose %s%s)",
                           what, name, tf_isa_names[tf_isa_cpu()],
                           tf_isa_cpu() >= TF_ISA_AVX2 ? "avx2 or " : "", "reference");
            return -1;
        }
        return 0;
    }
    tf_value_error(st, "%s=%s is not a level; use avx512, avx2 or reference", what, name);
    return -1;
}

int
tf_set_num_threads(int n)
{
    if (n > 1 && atomic_load(&g_forked_child)) {
        return -1;
    }
    atomic_store(&g_num_threads, n);
    atomic_store(&g_explicit, 1);
    return 0;
}

int
tf_set_thread_override(int n, int *prev)
{
    if (n > 1 && atomic_load(&g_forked_child)) {
        return -1;
    }
    *prev = tl_thread_override;
    tl_thread_override = n;
    return 0;
}
