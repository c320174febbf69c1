/* bfloat16.c — float32 <-> bfloat16 (stored as uint16 bits) conversion for loading bf16
 * checkpoints without a NumPy bf16 dtype, for feeding bf16 GEMMs and for the bf16 KVCache.
 * A plain reference path and a vector path compiled per ISA; both round to nearest even on
 * the dropped 16 bits with the same integer steps (as oneDNN and torch do), and turn a NaN
 * into a quiet NaN of the same sign (rounding would carry a low payload into Inf), so every
 * level gives the same bits. */
#include "kernels/bfloat16.h"
#include "kernels/simd.h"

#include <string.h>

#define CHUNK 16384 /* elements per OpenMP work item */

#ifdef TF_ISA_PASS
/* ------------------------------------------------------------------ vector path (per ISA) */

/* src (n,) bf16 bits -> dst (n,) float32 */
void
TF_ISA_FN(tf_bf16_to_f32_vec)(const uint16_t *src, float *dst, int64_t n)
{
    int64_t i = 0;
    for (; i + 2 * TF_VW <= n; i += 2 * TF_VW) {
        tf_vstore(dst + i, tf_vload_bf16_n(src + i, TF_VW));
        tf_vstore(dst + i + TF_VW, tf_vload_bf16_n(src + i + TF_VW, TF_VW));
    }
    for (; i < n; i += TF_VW) {
        tf_vstore_n(dst + i, tf_vload_bf16_n(src + i, n - i), n - i);
    }
}

/* src (n,) float32 -> dst (n,) bf16 bits */
void
TF_ISA_FN(tf_f32_to_bf16_vec)(const float *src, uint16_t *dst, int64_t n)
{
    int64_t i = 0;
    for (; i + 2 * TF_VW <= n; i += 2 * TF_VW) {
        tf_vstore_bf16_n(dst + i, tf_vload(src + i), TF_VW);
        tf_vstore_bf16_n(dst + i + TF_VW, tf_vload(src + i + TF_VW), TF_VW);
    }
    for (; i < n; i += TF_VW) {
        tf_vstore_bf16_n(dst + i, tf_vload_n(src + i, n - i), n - i);
    }
}

#else /* the reference path and the dispatchers, compiled once */

TF_ISA_DECLARE(void, tf_bf16_to_f32_vec, (const uint16_t *src, float *dst, int64_t n))
TF_ISA_DECLARE(void, tf_f32_to_bf16_vec, (const float *src, uint16_t *dst, int64_t n))

#define BF16_ISAS (TF_ISA_BIT(TF_ISA_AVX512) | TF_ISA_BIT(TF_ISA_AVX2))

/* The level bfloat16 kernels run at now (show_config). */
tf_isa_level
tf_bfloat16_isa(void)
{
    return tf_isa_for(BF16_ISAS);
}

/* ------------------------------------------------------------------ reference path */

/* a bf16 is the top half of a float32 */
static void
bf16_to_f32_ref(const uint16_t *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        uint32_t bits = (uint32_t)src[i] << 16;
        memcpy(dst + i, &bits, sizeof(bits));
    }
}

static void
f32_to_bf16_ref(const float *src, uint16_t *dst, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, src + i, sizeof(bits));
        if (src[i] != src[i]) {
            dst[i] = (uint16_t)((bits >> 16) | 0x40u); /* quiet NaN, sign kept */
            continue;
        }
        bits += 0x7FFFu + ((bits >> 16) & 1u);
        dst[i] = (uint16_t)(bits >> 16);
    }
}

void
tf_bf16_to_f32(const uint16_t *src, float *dst, int64_t n)
{
    void (*fn)(const uint16_t *, float *, int64_t) = bf16_to_f32_ref;
    switch (tf_bfloat16_isa()) {
        case TF_ISA_AVX512: fn = tf_bf16_to_f32_vec_avx512; break;
        case TF_ISA_AVX2: fn = tf_bf16_to_f32_vec_avx2; break;
        default: break;
    }
    if (n < 1 << 20) {
        fn(src, dst, n);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t i0 = 0; i0 < n; i0 += CHUNK) {
        fn(src + i0, dst + i0, n - i0 < CHUNK ? n - i0 : CHUNK);
    }
}

void
tf_f32_to_bf16(const float *src, uint16_t *dst, int64_t n)
{
    void (*fn)(const float *, uint16_t *, int64_t) = f32_to_bf16_ref;
    switch (tf_bfloat16_isa()) {
        case TF_ISA_AVX512: fn = tf_f32_to_bf16_vec_avx512; break;
        case TF_ISA_AVX2: fn = tf_f32_to_bf16_vec_avx2; break;
        default: break;
    }
    if (n < 1 << 18) {
        fn(src, dst, n);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t i0 = 0; i0 < n; i0 += CHUNK) {
        fn(src + i0, dst + i0, n - i0 < CHUNK ? n - i0 : CHUNK);
    }
}

void
tf_bf16_to_f32_block(const uint16_t *src, int64_t lds, int64_t rows, int64_t cols, float *dst,
                     int64_t ldd)
{
    void (*fn)(const uint16_t *, float *, int64_t) = bf16_to_f32_ref;
    switch (tf_bfloat16_isa()) {
        case TF_ISA_AVX512: fn = tf_bf16_to_f32_vec_avx512; break;
        case TF_ISA_AVX2: fn = tf_bf16_to_f32_vec_avx2; break;
        default: break;
    }
#pragma omp parallel for schedule(static) if (rows * cols >= 1 << 16)
    for (int64_t r = 0; r < rows; r++) {
        fn(src + r * lds, dst + r * ldd, cols);
    }
}

void
tf_round_to_bf16(const float *src, float *dst, int64_t n)
{
    /* through a small bf16 buffer per block: converted there and back */
#pragma omp parallel for schedule(static) if (n >= 1 << 16)
    for (int64_t i = 0; i < n; i += 1024) {
        uint16_t block[1024];
        const int64_t len = n - i < 1024 ? n - i : 1024;
        tf_f32_to_bf16(src + i, block, len);
        tf_bf16_to_f32(block, dst + i, len);
    }
}

#endif /* TF_ISA_PASS */
