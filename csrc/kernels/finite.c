/* finite.c — the NaN/Inf scans behind tfcore's refusal of non-finite inputs (kernel.h):
 * tf_first_nonfinite over a flat array (every checked argument) and tf_rows_finite over a
 * strided (B, H, n, D) view (attention outputs and inputs). A plain reference path and a
 * vector path compiled per ISA.
 *
 * The test is a sum of x * 0: that product is 0 for a finite x and NaN for NaN or Inf, so a
 * block's sum is NaN exactly when the block holds a non-finite value (adding finite zeros
 * never overflows); the exact index is searched only on failure. */
#include "kernels/kernel.h"
#include "kernels/simd.h"

#include <math.h>

#define BLOCK              4096      /* elements summed between two looks at the sum */
#define PARALLEL_MIN_ELEMS (1 << 20) /* flat scans this long run on the team */

#ifdef TF_ISA_PASS
/* ------------------------------------------------------------------ vector path (per ISA) */

/* 1 if x (n,) holds no NaN or Inf */
int
TF_ISA_FN(tf_block_finite)(const float *x, int64_t n)
{
    const tf_vf zero = tf_vzero();
    tf_vf a0 = zero, a1 = zero, a2 = zero, a3 = zero; /* independent chains */
    int64_t i = 0;
    for (; i + 4 * TF_VW <= n; i += 4 * TF_VW) {
        a0 = tf_vfma(tf_vload(x + i), zero, a0);
        a1 = tf_vfma(tf_vload(x + i + TF_VW), zero, a1);
        a2 = tf_vfma(tf_vload(x + i + 2 * TF_VW), zero, a2);
        a3 = tf_vfma(tf_vload(x + i + 3 * TF_VW), zero, a3);
    }
    for (; i < n; i += TF_VW) {
        a0 = tf_vfma(tf_vload_n(x + i, n - i), zero, a0);
    }
    const float sum = tf_vreduce_add(tf_vadd(tf_vadd(a0, a1), tf_vadd(a2, a3)));
    return sum == sum;
}

/* 1 if the (B, H, n, D) view (element strides sb, sh, sl, rows of D contiguous) is finite */
int
TF_ISA_FN(tf_rows_finite)(const float *x, int64_t sb, int64_t sh, int64_t sl, int64_t B, int64_t H,
                          int64_t n, int64_t D)
{
    const tf_vf zero = tf_vzero();
    tf_vf a0 = zero, a1 = zero;
    for (int64_t b = 0; b < B; b++) {
        for (int64_t h = 0; h < H; h++) {
            for (int64_t i = 0; i < n; i++) {
                const float *r = x + b * sb + h * sh + i * sl;
                int64_t e = 0;
                for (; e + 2 * TF_VW <= D; e += 2 * TF_VW) {
                    a0 = tf_vfma(tf_vload(r + e), zero, a0);
                    a1 = tf_vfma(tf_vload(r + e + TF_VW), zero, a1);
                }
                for (; e < D; e += TF_VW) {
                    a0 = tf_vfma(tf_vload_n(r + e, D - e), zero, a0);
                }
            }
        }
    }
    const float sum = tf_vreduce_add(tf_vadd(a0, a1));
    return sum == sum;
}

#else /* the reference path and the dispatchers, compiled once */

TF_ISA_DECLARE(int, tf_block_finite, (const float *x, int64_t n))
TF_ISA_DECLARE(int, tf_rows_finite,
               (const float *x, int64_t sb, int64_t sh, int64_t sl, int64_t B, int64_t H, int64_t n,
                int64_t D))

#define FINITE_ISAS (TF_ISA_BIT(TF_ISA_AVX512) | TF_ISA_BIT(TF_ISA_AVX2))

/* The level finite check kernels run at now (show_config). */
tf_isa_level
tf_finite_check_isa(void)
{
    return tf_isa_for(FINITE_ISAS);
}

/* ------------------------------------------------------------------ reference path */

static int
block_finite_ref(const float *x, int64_t n)
{
    float part[16] = {0.0f}; /* 16 independent sums (one dependent chain would be slow) */
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        for (int k = 0; k < 16; k++) {
            part[k] += x[i + k] * 0.0f;
        }
    }
    float acc = 0.0f;
    for (; i < n; i++) {
        acc += x[i] * 0.0f;
    }
    for (int k = 0; k < 16; k++) {
        acc += part[k];
    }
    return acc == acc;
}

static int
rows_finite_ref(const float *x, int64_t sb, int64_t sh, int64_t sl, int64_t B, int64_t H, int64_t n,
                int64_t D)
{
    float acc[16] = {0.0f};
    for (int64_t b = 0; b < B; b++) {
        for (int64_t h = 0; h < H; h++) {
            for (int64_t i = 0; i < n; i++) {
                const float *r = x + b * sb + h * sh + i * sl;
                int64_t e = 0;
                for (; e + 16 <= D; e += 16) {
                    for (int u = 0; u < 16; u++) {
                        acc[u] += r[e + u] * 0.0f;
                    }
                }
                for (; e < D; e++) {
                    acc[0] += r[e] * 0.0f;
                }
            }
        }
    }
    float all = 0.0f;
    for (int u = 0; u < 16; u++) {
        all += acc[u];
    }
    return all == all;
}

/* ------------------------------------------------------------------ dispatchers */

static int64_t
first_bad_in(const float *x, int64_t i0, int64_t i1)
{
    for (int64_t i = i0; i < i1; i++) {
        if (!isfinite(x[i])) {
            return i;
        }
    }
    return -1;
}

int64_t
tf_first_nonfinite(const float *x, int64_t n)
{
    int (*fn)(const float *, int64_t) = block_finite_ref;
    switch (tf_finite_check_isa()) {
        case TF_ISA_AVX512: fn = tf_block_finite_avx512; break;
        case TF_ISA_AVX2: fn = tf_block_finite_avx2; break;
        default: break;
    }
    if (n < PARALLEL_MIN_ELEMS) {
        for (int64_t i0 = 0; i0 < n; i0 += BLOCK) {
            const int64_t i1 = n - i0 < BLOCK ? n : i0 + BLOCK;
            if (!fn(x + i0, i1 - i0)) {
                return first_bad_in(x, i0, i1);
            }
        }
        return -1;
    }
    /* long arrays (weights, big activations): blocks across the team, the first bad
     * index is the smallest any thread found */
    int64_t first = n;
#pragma omp parallel for schedule(static) reduction(min : first)
    for (int64_t i0 = 0; i0 < n; i0 += BLOCK) {
        const int64_t i1 = n - i0 < BLOCK ? n : i0 + BLOCK;
        if (i0 < first && !fn(x + i0, i1 - i0)) {
            first = first_bad_in(x, i0, i1);
        }
    }
    return first < n ? first : -1;
}

int
tf_rows_finite(const float *x, int64_t sb, int64_t sh, int64_t sl, int64_t B, int64_t H, int64_t n,
               int64_t D)
{
    switch (tf_finite_check_isa()) {
        case TF_ISA_AVX512: return tf_rows_finite_avx512(x, sb, sh, sl, B, H, n, D);
        case TF_ISA_AVX2: return tf_rows_finite_avx2(x, sb, sh, sl, B, H, n, D);
        default: return rows_finite_ref(x, sb, sh, sl, B, H, n, D);
    }
}

#endif /* TF_ISA_PASS */
