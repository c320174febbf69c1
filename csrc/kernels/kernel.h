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

/* What to do with the optional second operand `other` (M, N) of a row-wise layer after the
 * activation (Linear's post-ops, also applied by the few-row product kernel). */
typedef enum {
    TF_POST_NONE = 0,
    TF_POST_ADD,   /* y = act(xWᵀ + b) + other            (residual)            */
    TF_POST_MUL,   /* y = act(xWᵀ + b) * other            (gated feed-forward)  */
    TF_POST_ACCUM, /* y += act(xWᵀ + b); other must be NULL (in-place residual) */
} tf_post;

/* ------------------------------------------------------------------ memory */

/* 64-byte aligned allocation for kernel temporaries; tf_free(NULL) is fine. */
void *tf_malloc(size_t size);
void tf_free(void *p);

/* ------------------------------------------------------------------ checks */

/* NaN/Inf scans (kernels/finite.c): sums of x * 0, which are NaN exactly when some value is
 * NaN or Inf; vector paths per ISA. */
/* 1 if every value of the (B, H, n, D) view x is finite (element strides sb, sh, sl; the D
 * values of a row contiguous), else 0. Serial. */
int tf_rows_finite(const float *x, int64_t sb, int64_t sh, int64_t sl, int64_t B, int64_t H,
                   int64_t n, int64_t D);
/* The flat index of the first NaN or Inf of x (n,), or -1 if all are finite. Long arrays
 * are scanned by the OpenMP team. */
int64_t tf_first_nonfinite(const float *x, int64_t n);

/* ------------------------------------------------------------------ CPU dispatch */

/* The instruction set hand-written kernels run at. Each kernel has a plain reference path
 * and vector paths compiled per ISA from one source (kernels/simd.h); the dispatcher of a
 * kernel switches on tf_isa(). */
typedef enum {
    TF_ISA_REFERENCE = 0, /* plain C, any CPU (the tests' oracle) */
    TF_ISA_AVX2 = 1,      /* AVX2 + FMA (+ F16C): 8 float lanes, 16 registers */
    TF_ISA_AVX512 = 2,    /* AVX-512 F/BW/VL/DQ: 16 float lanes, 32 registers */
    TF_ISA_COUNT
} tf_isa_level;
extern const char *const tf_isa_names[TF_ISA_COUNT]; /* "reference", "avx2", "avx512" */

/* The best level this CPU (and OS) runs. */
tf_isa_level tf_isa_cpu(void);
/* The level kernels run at now: the selected one (the CPU's best unless TFCORE_ISA or
 * tfcore._C._set_isa chose a lower one), or the reference path while tests force it. */
tf_isa_level tf_isa(void);
/* Select a level; -1 (nothing changed) if the CPU lacks it. */
int tf_isa_select(tf_isa_level level);
/* Force the plain reference path of every kernel (testing): 0 = off, 1 = on. */
extern int tf_force_reference;

/* The level a kernel with vector paths for the levels in `have` (TF_ISA_BIT(level) bits;
 * the reference path always exists) runs at now: the highest one <= tf_isa(). */
#define TF_ISA_BIT(level) (1u << (level))
tf_isa_level tf_isa_for(unsigned have);

/* Kernel families, each with `tf_isa_level tf_<family>_isa(void)` beside its dispatcher:
 * the level it runs at now (tfcore.show_config prints them). */
#define TF_KERNEL_FAMILIES(X) \
    X(attention)              \
    X(block_sparse)           \
    X(shifted_window)         \
    X(norm)                   \
    X(activation)             \
    X(rope)                   \
    X(quantize)               \
    X(bfloat16)               \
    X(finite_check)           \
    X(linear_attention)       \
    X(causal_conv1d)          \
    X(selective_scan)         \
    X(ssd)                    \
    X(rwkv)                   \
    X(int4)
#define TF_DECLARE_FAMILY_ISA(family) tf_isa_level tf_##family##_isa(void);
TF_KERNEL_FAMILIES(TF_DECLARE_FAMILY_ISA)
#undef TF_DECLARE_FAMILY_ISA

/* Declarations of the per-ISA versions of a kernel function (kernels/simd.h's TF_ISA_FN). */
#define TF_ISA_DECLARE(ret, name, params) \
    ret name##_avx512 params;             \
    ret name##_avx2 params;

#endif /* TFCORE_KERNEL_H */
