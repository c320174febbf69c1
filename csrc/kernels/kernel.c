/* kernel.c — the definitions behind kernel.h: error recording, activation names, aligned
 * allocation and CPU feature detection. Pure C. */
#define _POSIX_C_SOURCE 200809L  /* posix_memalign under -std=c11 */
#include "kernels/kernel.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int tf_force_reference = 0;

const char *const tf_act_names[TF_ACT_COUNT] = {"none", "gelu", "gelu_tanh", "relu", "silu", "tanh"};

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
