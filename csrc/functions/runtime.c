/* runtime.c — tfcore's runtime settings as module functions: set_num_threads,
 * get_num_threads, config (what tfcore.show_config prints) and the testing switches
 * _set_thread_override / _set_reference_kernels. The state they set is core/engine.c's. */
#include "tfcore.h"
#include "layers/linear.h"
#include "layers/linear_gemv.h"
#include "core/weight_cache.h"

#include <omp.h>
#include <stdio.h>

#define FORKED_CHILD_MSG                                                                   \
    "this process was forked after tfcore started, and OpenMP cannot start threads in a "  \
    "forked child: tfcore runs on 1 thread here. For parallel workers use the 'spawn' or " \
    "'forkserver' start method (multiprocessing.get_context('spawn'))"

PyDoc_STRVAR(set_num_threads_doc,
             "set_num_threads($module, n, /)\n--\n\n"
             "Set the number of threads tfcore computes with (all Python threads that have no\n"
             "tfcore.threads() override): 1 to the number of CPUs (more is refused).");

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
    if (n > omp_get_num_procs()) {
        return tf_value_error(st,
                              "set_num_threads(%ld): this machine runs tfcore on %d CPUs; more "
                              "threads than CPUs only make every call wait for descheduled ones",
                              n, omp_get_num_procs());
    }
    if (tf_set_num_threads((int)n) < 0) {
        return tf_value_error(st, FORKED_CHILD_MSG);
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(get_num_threads_doc,
             "get_num_threads($module, /)\n--\n\n"
             "Threads the next tfcore call on this Python thread will use. With no explicit\n"
             "setting (OMP_NUM_THREADS, set_num_threads, threads(n)) that is every CPU other\n"
             "processes leave free, re-measured at most every 0.1 s.");

static PyObject *
get_num_threads(PyObject *module, PyObject *unused)
{
    return PyLong_FromLong(tf_num_threads());
}

PyDoc_STRVAR(
    set_thread_override_doc,
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
    if (n > omp_get_num_procs()) {
        return tf_value_error(st,
                              "threads(%ld): this machine runs tfcore on %d CPUs; more threads "
                              "than CPUs only make every call wait for descheduled ones",
                              n, omp_get_num_procs());
    }
    int prev = 0;
    if (tf_set_thread_override((int)n, &prev) < 0) {
        return tf_value_error(st, FORKED_CHILD_MSG);
    }
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

PyDoc_STRVAR(config_doc, "config($module, /)\n--\n\n"
                         "A dict describing the oneDNN build, threading runtime, ISA and threads.");

/* d[name] = the name of level; 0 / -1 */
static int
set_level(PyObject *d, const char *name, tf_isa_level level)
{
    PyObject *v = PyUnicode_FromString(tf_isa_names[level]);
    const int rc = v == NULL ? -1 : PyDict_SetItemString(d, name, v);
    Py_XDECREF(v);
    return rc;
}

/* {family: level} of every kernel family (kernels/kernel.h) and Linear's few-row kernels */
static PyObject *
kernel_levels(void)
{
    PyObject *d = PyDict_New();
    if (d == NULL) {
        return NULL;
    }
#define TF_FAMILY_ITEM(family)                            \
    if (set_level(d, #family, tf_##family##_isa()) < 0) { \
        goto fail;                                        \
    }
    TF_KERNEL_FAMILIES(TF_FAMILY_ITEM)
#undef TF_FAMILY_ITEM
    if (set_level(d, "gemv", tf_gemv_f32_isa()) < 0) {
        goto fail;
    }
    return d;
fail:
    Py_DECREF(d);
    return NULL;
}

static PyObject *
config(PyObject *module, PyObject *unused)
{
    const dnnl_version_t *v = dnnl_version();
    char version[64];
    snprintf(version, sizeof(version), "%d.%d.%d", v->major, v->minor, v->patch);
    PyObject *levels = kernel_levels();
    if (levels == NULL) {
        return NULL;
    }
    return Py_BuildValue(
        "{s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:s, s:s, s:s, s:N, s:i, s:i, s:i}",
        "onednn_version", version, "onednn_hash", v->hash, "onednn_built_against",
        DNNL_VERSION_HASH, "cpu_runtime", runtime_name(v->cpu_runtime), "onednn_isa",
        isa_name(dnnl_get_effective_cpu_isa()), "num_threads", tf_num_threads(), "omp_num_procs",
        omp_get_num_procs(), "kernels_avx512", tf_isa() == TF_ISA_AVX512, "kernel_path",
        tf_isa_names[tf_isa()], "kernel_isa", tf_isa_names[tf_isa()], "cpu_isa",
        tf_isa_names[tf_isa_cpu()], "kernels", levels, "bf16_matmul", tf_bf16_supported(),
        "int8_matmul", tf_int8_supported(), "threads_adaptive", tf_threads_adaptive());
}

PyDoc_STRVAR(set_isa_doc,
             "_set_isa($module, level, /)\n--\n\n"
             "Run hand-written kernels at level ('avx512', 'avx2' or 'reference'; "
             "used by tests).\nRaises if the CPU lacks it. Returns the previous level.");

static PyObject *
set_isa(PyObject *module, PyObject *arg)
{
    tf_state *st = tf_state_of_module(module);
    const char *name = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    if (name == NULL) {
        PyErr_Clear();
        return tf_type_error(st, "level must be 'avx512', 'avx2' or 'reference', got %s",
                             Py_TYPE(arg)->tp_name);
    }
    const tf_isa_level prev = tf_isa();
    if (tf_isa_select_by_name(st, name, "level") < 0) {
        return NULL;
    }
    return PyUnicode_FromString(tf_isa_names[prev]);
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

PyDoc_STRVAR(set_weight_cache_doc,
             "_set_weight_cache($module, directory, /)\n--\n\n"
             "Share packed weights of Linear layers built from now on through files in directory\n"
             "(an existing, absolute str path; None: stop). tfcore.set_weight_cache checks and\n"
             "creates the directory. Returns the previous directory or None.");

static PyObject *
set_weight_cache(PyObject *module, PyObject *arg)
{
    tf_state *st = tf_state_of_module(module);
    const char *dir = NULL;
    if (arg != Py_None) {
        if (!PyUnicode_Check(arg) || (dir = PyUnicode_AsUTF8(arg)) == NULL) {
            PyErr_Clear();
            return tf_type_error(st, "directory must be a str or None, got %s",
                                 Py_TYPE(arg)->tp_name);
        }
        if (dir[0] != '/') {
            return tf_value_error(st, "directory must be an absolute path, got '%.200s'", dir);
        }
    }
    char prev[4096];
    size_t had = tf_weight_cache_get(prev, sizeof(prev));
    if (tf_weight_cache_set(dir) < 0) {
        return tf_value_error(st, "directory path is too long (%zu bytes)", strlen(dir));
    }
    if (had == 0) {
        Py_RETURN_NONE;
    }
    return PyUnicode_DecodeFSDefault(prev);
}

PyDoc_STRVAR(get_weight_cache_doc, "_get_weight_cache($module, /)\n--\n\n"
                                   "The weight cache directory, or None.");

static PyObject *
get_weight_cache(PyObject *module, PyObject *unused)
{
    char dir[4096];
    if (tf_weight_cache_get(dir, sizeof(dir)) == 0) {
        Py_RETURN_NONE;
    }
    return PyUnicode_DecodeFSDefault(dir);
}

PyMethodDef tf_runtime_methods[] = {
    {"_set_weight_cache", set_weight_cache, METH_O, set_weight_cache_doc},
    {"_get_weight_cache", get_weight_cache, METH_NOARGS, get_weight_cache_doc},
    {"set_num_threads", set_num_threads, METH_O, set_num_threads_doc},
    {"get_num_threads", get_num_threads, METH_NOARGS, get_num_threads_doc},
    {"_set_thread_override", set_thread_override, METH_O, set_thread_override_doc},
    {"_set_reference_kernels", set_reference_kernels, METH_O, set_reference_kernels_doc},
    {"_set_isa", set_isa, METH_O, set_isa_doc},
    {"config", config, METH_NOARGS, config_doc},
    {NULL, NULL, 0, NULL},
};
