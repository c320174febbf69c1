/* kernel.c — the definitions behind kernel.h: error recording, activation names, aligned
 * allocation and CPU feature detection (the finite scans are in finite.c). Pure C. */
#define _POSIX_C_SOURCE 200809L /* posix_memalign under -std=c11 */
#include "kernels/kernel.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int tf_force_reference = 0;

const char *const tf_act_names[TF_ACT_COUNT] = {"none", "gelu", "gelu_tanh",
                                                "relu", "silu", "tanh"};

void
tf_err_set(tf_err *err, tf_err_kind kind, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err->kind = kind;
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
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

const char *const tf_isa_names[TF_ISA_COUNT] = {"reference", "avx2", "avx512"};

tf_isa_level
tf_isa_cpu(void)
{
    static int cached = -1; /* racing first calls compute the same answer */
    if (cached < 0) {
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
            __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
            cached = TF_ISA_AVX512;
        }
        else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                 __builtin_cpu_supports("f16c")) {
            cached = TF_ISA_AVX2;
        }
        else {
            cached = TF_ISA_REFERENCE;
        }
    }
    return (tf_isa_level)cached;
}

static int g_selected = -1; /* -1: the CPU's best */

tf_isa_level
tf_isa(void)
{
    if (tf_force_reference) {
        return TF_ISA_REFERENCE;
    }
    return g_selected < 0 ? tf_isa_cpu() : (tf_isa_level)g_selected;
}

tf_isa_level
tf_isa_for(unsigned have)
{
    for (int level = (int)tf_isa(); level > TF_ISA_REFERENCE; level--) {
        if (have & TF_ISA_BIT(level)) {
            return (tf_isa_level)level;
        }
    }
    return TF_ISA_REFERENCE;
}

int
tf_isa_select(tf_isa_level level)
{
    if ((int)level < 0 || level >= TF_ISA_COUNT || level > tf_isa_cpu()) {
        return -1;
    }
    g_selected = (int)level;
    return 0;
}
