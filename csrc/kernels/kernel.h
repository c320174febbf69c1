/* kernel.h — what every pure-C kernel may use: the shape glossary, errors recorded without
 * the GIL, activations, aligned allocation and CPU dispatch. Kernels include this and their
 * own headers only: never Python.h, NumPy, oneDNN or tfcore.h (tests/test_layout.py checks).
 *
 * Shape glossary used in every kernel's shape comment:
 *   B    batch size
 *   T    tokens (sequence length of the current input); L = query length, S = key length
 *   M    rows fed to a GEMM (usually B*T)
 *   C    hidden size (model width);  K = GEMM input features, N = GEMM output features
 *   H    query heads;  KVH = key/value heads (H % KVH == 0, GQA group = H / KVH)
 *   D    head dimension;  Dv = value head dimension
 *   F    feed-forward inner size
 *   V    vocabulary size
 *   Hh, Ww  feature-map height and width (Swin); ws = window side, N = ws * ws window tokens
 *
 * Conventions: kernels run without the GIL; a kernel that can fail returns 0 / -1 and
 * fills a tf_err, which the caller raises once it holds the GIL again (core/errors.c). */
#ifndef TFCORE_KERNEL_H
#define TFCORE_KERNEL_H

#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ errors */

typedef enum {
    TF_OK = 0,
    TF_ERR_VALUE,  /* raised as TfcoreValueError */
    TF_ERR_TYPE,   /* raised as TfcoreTypeError */
    TF_ERR_MEMORY, /* raised as MemoryError */
    TF_ERR_ONEDNN, /* raised as OneDNNError */
} tf_err_kind;

/* An error recorded where the GIL is not held. */
typedef struct {
    tf_err_kind kind;
    char msg[320];
} tf_err;

void tf_err_set(tf_err *err, tf_err_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ------------------------------------------------------------------ activations */

/* Activations applied elementwise by hand-written kernels and mapped to oneDNN
 * eltwise post-ops by Linear. */
typedef enum {
    TF_ACT_NONE = 0,
    TF_ACT_GELU,      /* exact: 0.5 x (1 + erf(x / sqrt 2)) */
    TF_ACT_GELU_TANH, /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
    TF_ACT_RELU,
    TF_ACT_SILU, /* x * sigmoid(x) */
    TF_ACT_TANH, /* tanh(x) (BERT's pooler) */
    TF_ACT_COUNT
} tf_act;
extern const char *const tf_act_names[TF_ACT_COUNT];

/* ------------------------------------------------------------------ memory */

/* 64-byte aligned allocation for kernel temporaries; tf_free(NULL) is fine. */
void *tf_malloc(size_t size);
void tf_free(void *p);

/* ------------------------------------------------------------------ checks */

/* 1 if every value of the (B, H, n, D) view x is finite (element strides sb, sh, sl; the D
 * values of a row contiguous), else 0. Sums x * 0 in 16 independent lanes, which vectorise:
 * the sum is NaN exactly when some value is NaN or Inf. */
int tf_rows_finite(const float *x, int64_t sb, int64_t sh, int64_t sl, int64_t B, int64_t H,
                   int64_t n, int64_t D);

/* ------------------------------------------------------------------ CPU dispatch */

/* CPU features of the hand-written kernels' fast paths (runtime dispatch). */
int tf_cpu_has_avx512(void); /* avx512f + avx512bw + avx512vl + avx512dq */
/* Force the plain reference path of hand-written kernels (testing): 0 = auto, 1 = reference. */
extern int tf_force_reference;

#endif /* TFCORE_KERNEL_H */
