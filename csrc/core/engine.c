/* engine.c — the oneDNN engine, thread-count control, per-thread streams and scratch,
 * CPU feature dispatch, and the module-level configuration functions. */
#include "tfcore.h"
#include "linear.h"

#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static dnnl_engine_t g_engine;            /* process-wide; thread-safe per oneDNN */
static atomic_int g_num_threads;          /* tfcore.set_num_threads */
static _Thread_local int tl_thread_override; /* tfcore.threads(n) on this thread; 0 = none */
/* Set in a child forked after tfcore initialised: GNU OpenMP cannot restart its thread pool
 * in a forked child (a parallel region there waits forever for the parent's threads), so
 * the child runs every call on its own thread. */
static atomic_int g_forked_child;
#define FORKED_CHILD_MSG                                                                    \
    "this process was forked after tfcore started, and OpenMP cannot start threads in a "  \
    "forked child: tfcore runs on 1 thread here. For parallel workers use the 'spawn' or " \
    "'forkserver' start method (multiprocessing.get_context('spawn'))"

static void
after_fork_in_child(void)
{
    atomic_store(&g_forked_child, 1);  /* tf_num_threads() answers 1 from now on */
}
static pthread_key_t g_ctx_key;
static pthread_once_t g_ctx_once = PTHREAD_ONCE_INIT;
int tf_force_reference = 0;

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
    return n > 0 ? n : atomic_load(&g_num_threads);
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

void *
tf_thread_scratch(tf_thread_ctx *ctx, size_t size, tf_err *err)
{
    if (size <= ctx->scratch_size && ctx->scratch != NULL) {
        return ctx->scratch;
    }
    /* never NULL on success, even for 0 bytes (oneDNN's gemm primitives ask for none) */
    size_t want = ((size ? size : 1) + 4095) & ~(size_t)4095;
    void *p = NULL;
    if (posix_memalign(&p, 64, want) != 0) {
        tf_err_set(err, TF_ERR_MEMORY, "out of memory allocating %zu bytes of scratchpad", want);
        return NULL;
    }
    free(ctx->scratch);
    ctx->scratch = p;
    ctx->scratch_size = want;
    return p;
}

void *
tf_malloc(size_t size)
{
    void *p = NULL;
    if (size == 0) {
        size = 64;
    }
    if (posix_memalign(&p, 64, size) != 0) {
        return NULL;
    }
    return p;
}

void
tf_free(void *p)
{
    free(p);
}

int
tf_cpu_has_avx512(void)
{
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    }
    return cached;
}

/* ------------------------------------------------------------ module functions */

PyDoc_STRVAR(set_num_threads_doc,
"set_num_threads($module, n, /)\n--\n\n"
"Set the number of threads tfcore computes with (all Python threads that have no\n"
"tfcore.threads() override).");

static PyObject *
set_num_threads(PyObject *module, PyObject *arg)
{
    tf_state *st = tf_state_of_module(module);
    int overflow = 0;
    if (!PyLong_Check(arg)) {
        return tf_type_error(st, "number of threads must be an int, got %s", Py_TYPE(arg)->tp_name);
    }
    long n = PyLong_AsLongAndOverflow(arg, &overflow);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (overflow || n < 1 || n > 4096) {
        return tf_value_error(st, "number of threads must be between 1 and 4096");
    }
    if (n > 1 && atomic_load(&g_forked_child)) {
        return tf_value_error(st, FORKED_CHILD_MSG);
    }
    atomic_store(&g_num_threads, (int)n);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(get_num_threads_doc,
"get_num_threads($module, /)\n--\n\n"
"Threads the next tfcore call on this Python thread will use.");

static PyObject *
get_num_threads(PyObject *module, PyObject *unused)
{
    return PyLong_FromLong(tf_num_threads());
}

PyDoc_STRVAR(set_thread_override_doc,
"_set_thread_override($module, n, /)\n--\n\n"
"Per-thread thread count used by tfcore.threads(); 0 removes it. Returns the previous one.");

static PyObject *
set_thread_override(PyObject *module, PyObject *arg)
{
    tf_state *st = tf_state_of_module(module);
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (n < 0 || n > 4096) {
        return tf_value_error(st, "number of threads must be between 1 and 4096");
    }
    if (n > 1 && atomic_load(&g_forked_child)) {
        return tf_value_error(st, FORKED_CHILD_MSG);
    }
    int prev = tl_thread_override;
    tl_thread_override = (int)n;
    return PyLong_FromLong(prev);
}

static const char *
isa_name(dnnl_cpu_isa_t isa)
{
    switch (isa) {
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx2_vnni_2: return "avx2_vnni_2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_sse41: return "sse41";
    default: return "other";
    }
}

static const char *
runtime_name(unsigned r)
{
    switch (r) {
    case DNNL_RUNTIME_OMP: return "OpenMP";
    case DNNL_RUNTIME_TBB: return "TBB";
    case DNNL_RUNTIME_SEQ: return "sequential";
    case DNNL_RUNTIME_THREADPOOL: return "threadpool";
    case DNNL_RUNTIME_SYCL: return "SYCL";
    default: return "unknown";
    }
}

PyDoc_STRVAR(config_doc,
"config($module, /)\n--\n\n"
"A dict describing the oneDNN build, threading runtime, ISA and threads.");

static PyObject *
config(PyObject *module, PyObject *unused)
{
    const dnnl_version_t *v = dnnl_version();
    char version[64];
    snprintf(version, sizeof(version), "%d.%d.%d", v->major, v->minor, v->patch);
    return Py_BuildValue(
        "{s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:s, s:i, s:i}",
        "onednn_version", version, "onednn_hash", v->hash,
        "onednn_built_against", DNNL_VERSION_HASH,
        "cpu_runtime", runtime_name(v->cpu_runtime),
        "onednn_isa", isa_name(dnnl_get_effective_cpu_isa()),
        "num_threads", tf_num_threads(), "omp_num_procs", omp_get_num_procs(),
        "kernels_avx512", tf_cpu_has_avx512() && !tf_force_reference,
        "kernel_path", tf_cpu_has_avx512() && !tf_force_reference ? "avx512" : "reference",
        "bf16_matmul", tf_bf16_supported(), "int8_matmul", tf_int8_supported());
}

PyDoc_STRVAR(set_reference_kernels_doc,
"_set_reference_kernels($module, flag, /)\n--\n\n"
"Force (True) the plain C reference path of hand-written kernels; used by tests.\n"
"Returns the previous setting.");

static PyObject *
set_reference_kernels(PyObject *module, PyObject *arg)
{
    int flag = PyObject_IsTrue(arg);
    if (flag < 0) {
        return NULL;
    }
    int prev = tf_force_reference;
    tf_force_reference = flag;
    return PyBool_FromLong(prev);
}

PyMethodDef tf_engine_methods[] = {
    {"set_num_threads", set_num_threads, METH_O, set_num_threads_doc},
    {"get_num_threads", get_num_threads, METH_NOARGS, get_num_threads_doc},
    {"_set_thread_override", set_thread_override, METH_O, set_thread_override_doc},
    {"_set_reference_kernels", set_reference_kernels, METH_O, set_reference_kernels_doc},
    {"config", config, METH_NOARGS, config_doc},
    {NULL, NULL, 0, NULL},
};
