/* simd.h — the portable vector layer hand-written kernels are written against.
 *
 * A kernel's vector path is written once with the tf_v* operations below and compiled once
 * per instruction set: setup.py builds every kernel file that uses TF_ISA_FN again with
 * -DTF_ISA_PASS and the ISA's -m flags, and the backend follows from the compiler's macros:
 *   AVX-512 (avx512f/bw/vl/dq + fma)  TF_VW = 16 lanes, masks are __mmask16
 *   AVX2 + FMA (+ F16C)               TF_VW =  8 lanes, masks are all-ones float lanes
 * TF_ISA_FN(name) names a function after the pass (name_avx512, name_avx2); the plain
 * reference paths and the dispatchers are compiled once, without TF_ISA_PASS, and pick a
 * version with tf_isa() (kernels/kernel.h). Kernel bodies hold no x86 intrinsics: a new
 * backend (NEON, say) is one more branch here plus its flags in setup.py (docs/contributing.md).
 *
 * Register budgets differ: 32 vector registers with AVX-512, 16 with AVX2. TF_VREGS says
 * which, for kernels that size their register tiles by it.
 *
 * Outside an ISA pass this header also keeps TF_AVX512 and tf_mask16 for the kernels not yet
 * moved onto the portable layer (their AVX-512 code sits behind target attributes and runs
 * only where tf_isa() says AVX-512); the AVX-512 backend uses tf_mask16 too. */
#ifndef TFCORE_SIMD_H
#define TFCORE_SIMD_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define TF_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

/* Mask of the first n lanes (none for n <= 0, all for n >= 16). */
static inline __mmask16
tf_mask16(int64_t n)
{
    if (n <= 0) {
        return 0;
    }
    return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);
}

/* ------------------------------------------------------------------ the portable layer */

#ifdef TF_ISA_PASS

/* Ask for the 64-byte line at p in the caches (L2 and up) ahead of its use; never faults, so
 * p may point past the end of the data. */
static inline void
tf_prefetch(const void *p)
{
    __builtin_prefetch(p, 0, 2);
}

#define TF_ISA_CAT2(a, b) a##_##b
#define TF_ISA_CAT(a, b)  TF_ISA_CAT2(a, b)
#define TF_ISA_FN(name)   TF_ISA_CAT(name, TF_ISA_SUFFIX)

/* exp's polynomial (same constants for every backend, so results agree across ISAs to
 * the rounding of the final scaling) */
#define TF_EXP_C6 1.3981999507E-3f
#define TF_EXP_C5 8.3334519073E-3f
#define TF_EXP_C4 4.1665795894E-2f
#define TF_EXP_C3 1.6666665459E-1f
#define TF_EXP_C2 5.0000001201E-1f

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__)

#define TF_ISA_SUFFIX avx512
#define TF_VW         16
#define TF_VREGS      32
typedef __m512 tf_vf;
typedef __m512i tf_vi;
typedef __mmask16 tf_vmask;

static inline tf_vf
tf_vzero(void)
{
    return _mm512_setzero_ps();
}
static inline tf_vf
tf_vset1(float x)
{
    return _mm512_set1_ps(x);
}
static inline tf_vf
tf_vload(const float *p)
{
    return _mm512_loadu_ps(p);
}
static inline void
tf_vstore(float *p, tf_vf v)
{
    _mm512_storeu_ps(p, v);
}
static inline tf_vmask
tf_vmask_n(int64_t n)
{
    return tf_mask16(n);
}
/* lanes >= n read as 0; memory past p + n is never touched */
static inline tf_vf
tf_vload_n(const float *p, int64_t n)
{
    return _mm512_maskz_loadu_ps(tf_mask16(n), p);
}
static inline void
tf_vstore_n(float *p, tf_vf v, int64_t n)
{
    _mm512_mask_storeu_ps(p, tf_mask16(n), v);
}
static inline tf_vf
tf_vadd(tf_vf a, tf_vf b)
{
    return _mm512_add_ps(a, b);
}
static inline tf_vf
tf_vsub(tf_vf a, tf_vf b)
{
    return _mm512_sub_ps(a, b);
}
static inline tf_vf
tf_vmul(tf_vf a, tf_vf b)
{
    return _mm512_mul_ps(a, b);
}
static inline tf_vf
tf_vdiv(tf_vf a, tf_vf b)
{
    return _mm512_div_ps(a, b);
}
/* max/min return b when either is NaN (as x86's maxps): keep the value to propagate second */
static inline tf_vf
tf_vmax(tf_vf a, tf_vf b)
{
    return _mm512_max_ps(a, b);
}
static inline tf_vf
tf_vmin(tf_vf a, tf_vf b)
{
    return _mm512_min_ps(a, b);
}
static inline tf_vf
tf_vfma(tf_vf a, tf_vf b, tf_vf c)
{
    return _mm512_fmadd_ps(a, b, c);
} /* a b + c */
static inline tf_vf
tf_vfnma(tf_vf a, tf_vf b, tf_vf c)
{
    return _mm512_fnmadd_ps(a, b, c);
} /* c - a b */
static inline float
tf_vreduce_add(tf_vf v)
{
    return _mm512_reduce_add_ps(v);
}
static inline float
tf_vreduce_max(tf_vf v)
{
    return _mm512_reduce_max_ps(v);
}
/* lanes of m take b, the others a */
static inline tf_vf
tf_vblend(tf_vmask m, tf_vf a, tf_vf b)
{
    return _mm512_mask_blend_ps(m, a, b);
}
static inline tf_vmask
tf_vlt(tf_vf a, tf_vf b)
{
    return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ);
}
static inline tf_vf
tf_vround(tf_vf x)
{
    return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
/* x * 2^k for integral k in range (exp's last step) */
static inline tf_vf
tf_vscale2(tf_vf x, tf_vf k)
{
    return _mm512_scalef_ps(x, k);
}
/* int32 lanes */
static inline tf_vi
tf_viset1(int32_t x)
{
    return _mm512_set1_epi32(x);
}
static inline tf_vi
tf_vcvt_i(tf_vf x)
{
    return _mm512_cvtps_epi32(x);
} /* round to nearest */
/* mask of lanes with lo <= j < hi (int32 lanes) */
static inline tf_vmask
tf_vin_range(tf_vi j, tf_vi lo, tf_vi hi)
{
    return _mm512_cmpge_epi32_mask(j, lo) & _mm512_cmplt_epi32_mask(j, hi);
}
static inline tf_vi
tf_viload(const int32_t *p)
{
    return _mm512_loadu_si512(p);
}
/* lane l holds l */
static inline tf_vi
tf_viota(void)
{
    return _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}
static inline tf_vmask
tf_vieq(tf_vi a, tf_vi b)
{
    return _mm512_cmpeq_epi32_mask(a, b);
}
static inline tf_vmask
tf_veq(tf_vf a, tf_vf b)
{
    return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ);
}
static inline tf_vmask
tf_vgt(tf_vf a, tf_vf b)
{
    return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ);
}
static inline tf_vmask
tf_vmask_and(tf_vmask a, tf_vmask b)
{
    return a & b;
}
/* 1 if some lane of m is set */
static inline int
tf_vmask_any(tf_vmask m)
{
    return m != 0;
}
/* lanes outside m read as 0 and their memory is never touched */
static inline tf_vf
tf_vload_mask(const float *p, tf_vmask m)
{
    return _mm512_maskz_loadu_ps(m, p);
}
/* int32 lanes: lanes outside m read as 0 and their memory is never touched */
static inline tf_vi
tf_viload_mask(const int32_t *p, tf_vmask m)
{
    return _mm512_maskz_loadu_epi32(m, p);
}
static inline tf_vi
tf_viadd(tf_vi a, tf_vi b)
{
    return _mm512_add_epi32(a, b);
}
/* lane l = base[idx[l]] for lanes in m, 0 elsewhere (their address is never read) */
static inline tf_vf
tf_vgather_mask(const float *base, tf_vi idx, tf_vmask m)
{
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, base, 4);
}
/* lane l <- lane TF_VW - 1 - l */
static inline tf_vf
tf_vreverse(tf_vf v)
{
    return _mm512_permutexvar_ps(
        _mm512_setr_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), v);
}
/* In-register transpose of a TF_VW x TF_VW block: lane l of r[k] <- lane k of r[l]. */
static inline void
tf_vtranspose(tf_vf r[TF_VW])
{
    tf_vf t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
    }
}

/* ---- byte vectors for integer dot products (4-bit weights x int8 activations, kernels/q4.c):
 * TF_VB bytes per integer vector, its int32 lanes each summing 4 byte products */
#define TF_VB 64
static inline tf_vi
tf_vizero(void)
{
    return _mm512_setzero_si512();
}
/* TF_VB int8 elements */
static inline tf_vi
tf_vload_i8(const int8_t *p)
{
    return _mm512_loadu_si512(p);
}
/* One byte (0..15) per 4-bit value, values part * TF_VB .. + TF_VB - 1 of the 64 values of a
 * 32-byte superblock sb whose byte j holds value j (low nibble) and value 32 + j (high) */
static inline tf_vi
tf_vload_u4(const uint8_t *sb, int part)
{
    (void)part; /* one vector holds all 64 */
    const __m256i b = _mm256_loadu_si256((const __m256i *)sb), f = _mm256_set1_epi8(0x0F);
    const __m256i lo = _mm256_and_si256(b, f), hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), f);
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}
/* int32 lane i = acc[i] + sum over j < 4 of u[4i + j] s[4i + j], u unsigned and s signed bytes
 * (vpdpbusd's sum); through vpmaddubsw, whose 16-bit pair sums saturate: callers keep
 * 2 u |s| <= 32767 (4-bit u and int8 s: 2 x 15 x 128 = 3840) */
static inline tf_vi
tf_vdot_u8s8(tf_vi acc, tf_vi u, tf_vi s)
{
    return _mm512_add_epi32(acc,
                            _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1)));
}
/* int32 lanes to float (exact below 2^24) */
static inline tf_vf
tf_vcvt_f(tf_vi v)
{
    return _mm512_cvtepi32_ps(v);
}
/* lane l = v[l / 8]: one float per 32 bytes of a byte vector (TF_VB / 32 of them) */
static inline tf_vf
tf_vset_blocks(const float *v)
{
    return _mm512_insertf32x8(_mm512_set1_ps(v[0]), _mm256_set1_ps(v[1]), 1);
}

#elif defined(__AVX2__) && defined(__FMA__)

#define TF_ISA_SUFFIX      avx2
#define TF_VW              8
#define TF_VREGS           16
typedef __m256 tf_vf;
typedef __m256i tf_vi;
typedef __m256 tf_vmask; /* all-ones lanes are set */

static inline tf_vf
tf_vzero(void)
{
    return _mm256_setzero_ps();
}
static inline tf_vf
tf_vset1(float x)
{
    return _mm256_set1_ps(x);
}
static inline tf_vf
tf_vload(const float *p)
{
    return _mm256_loadu_ps(p);
}
static inline void
tf_vstore(float *p, tf_vf v)
{
    _mm256_storeu_ps(p, v);
}
static inline __m256i
tf_vmask_n_i(int64_t n)
{
    const int32_t k = n <= 0 ? 0 : (n >= 8 ? 8 : (int32_t)n);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline tf_vmask
tf_vmask_n(int64_t n)
{
    return _mm256_castsi256_ps(tf_vmask_n_i(n));
}
/* lanes >= n read as 0; memory past p + n is never touched (maskload faults only on set
 * lanes). A whole vector (n >= 8) takes a plain move: vmaskmov costs several times a load or
 * store (relu over 64K floats: 38.6 vs 13.0 us), and loops call these for every vector. */
static inline tf_vf
tf_vload_n(const float *p, int64_t n)
{
    return n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, tf_vmask_n_i(n));
}
static inline void
tf_vstore_n(float *p, tf_vf v, int64_t n)
{
    if (n >= 8) {
        _mm256_storeu_ps(p, v);
    }
    else {
        _mm256_maskstore_ps(p, tf_vmask_n_i(n), v);
    }
}
static inline tf_vf
tf_vadd(tf_vf a, tf_vf b)
{
    return _mm256_add_ps(a, b);
}
static inline tf_vf
tf_vsub(tf_vf a, tf_vf b)
{
    return _mm256_sub_ps(a, b);
}
static inline tf_vf
tf_vmul(tf_vf a, tf_vf b)
{
    return _mm256_mul_ps(a, b);
}
static inline tf_vf
tf_vdiv(tf_vf a, tf_vf b)
{
    return _mm256_div_ps(a, b);
}
static inline tf_vf
tf_vmax(tf_vf a, tf_vf b)
{
    return _mm256_max_ps(a, b);
}
static inline tf_vf
tf_vmin(tf_vf a, tf_vf b)
{
    return _mm256_min_ps(a, b);
}
static inline tf_vf
tf_vfma(tf_vf a, tf_vf b, tf_vf c)
{
    return _mm256_fmadd_ps(a, b, c);
}
static inline tf_vf
tf_vfnma(tf_vf a, tf_vf b, tf_vf c)
{
    return _mm256_fnmadd_ps(a, b, c);
}
static inline float
tf_vreduce_add(tf_vf v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline float
tf_vreduce_max(tf_vf v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline tf_vf
tf_vblend(tf_vmask m, tf_vf a, tf_vf b)
{
    return _mm256_blendv_ps(a, b, m);
}
static inline tf_vmask
tf_vlt(tf_vf a, tf_vf b)
{
    return _mm256_cmp_ps(a, b, _CMP_LT_OQ);
}
static inline tf_vf
tf_vround(tf_vf x)
{
    return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
/* x * 2^k for integral k in [-150, 128] (exp's range): two exponent-built factors 2^(k/2)
 * of at most +-75 each, so neither leaves the normal range; the product rounds (and
 * underflows or overflows) as scalef does */
static inline tf_vf
tf_vscale2(tf_vf x, tf_vf k)
{
    const __m256i ki = _mm256_cvtps_epi32(k);
    const __m256i k1 = _mm256_srai_epi32(ki, 1), k2 = _mm256_sub_epi32(ki, k1);
    const __m256i bias = _mm256_set1_epi32(127);
    const tf_vf f1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k1, bias), 23));
    const tf_vf f2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(x, f1), f2);
}
static inline tf_vi
tf_viset1(int32_t x)
{
    return _mm256_set1_epi32(x);
}
static inline tf_vi
tf_vcvt_i(tf_vf x)
{
    return _mm256_cvtps_epi32(x);
}
static inline tf_vmask
tf_vin_range(tf_vi j, tf_vi lo, tf_vi hi)
{
    /* lo <= j  <=>  !(lo > j);  j < hi  <=>  hi > j */
    const __m256i ge = _mm256_andnot_si256(_mm256_cmpgt_epi32(lo, j), _mm256_set1_epi32(-1));
    return _mm256_castsi256_ps(_mm256_and_si256(ge, _mm256_cmpgt_epi32(hi, j)));
}
static inline tf_vi
tf_viload(const int32_t *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}
static inline tf_vi
tf_viota(void)
{
    return _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
}
static inline tf_vmask
tf_vieq(tf_vi a, tf_vi b)
{
    return _mm256_castsi256_ps(_mm256_cmpeq_epi32(a, b));
}
static inline tf_vmask
tf_veq(tf_vf a, tf_vf b)
{
    return _mm256_cmp_ps(a, b, _CMP_EQ_OQ);
}
static inline tf_vmask
tf_vgt(tf_vf a, tf_vf b)
{
    return _mm256_cmp_ps(a, b, _CMP_GT_OQ);
}
static inline tf_vmask
tf_vmask_and(tf_vmask a, tf_vmask b)
{
    return _mm256_and_ps(a, b);
}
static inline int
tf_vmask_any(tf_vmask m)
{
    return _mm256_movemask_ps(m) != 0;
}
static inline tf_vf
tf_vload_mask(const float *p, tf_vmask m)
{
    return _mm256_maskload_ps(p, _mm256_castps_si256(m));
}
static inline tf_vi
tf_viload_mask(const int32_t *p, tf_vmask m)
{
    return _mm256_maskload_epi32((const int *)p, _mm256_castps_si256(m));
}
static inline tf_vi
tf_viadd(tf_vi a, tf_vi b)
{
    return _mm256_add_epi32(a, b);
}
static inline tf_vf
tf_vgather_mask(const float *base, tf_vi idx, tf_vmask m)
{
    return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), base, idx, m, 4);
}
static inline tf_vf
tf_vreverse(tf_vf v)
{
    return _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0));
}
/* 8 x 8: pairs interleaved, then quadruples, then the 128-bit halves swapped across */
static inline void
tf_vtranspose(tf_vf r[TF_VW])
{
    tf_vf t[8], s[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        s[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        s[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        s[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        s[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x31);
    }
}

/* exp(x) for x <= 88 (softmax numerators: a score minus a running maximum): -inf gives 0,
 * NaN stays NaN, results below ~2^-125 (x < -87) flush to 0; elsewhere equal to tf_vexp
 * (same reduction and polynomial). Fewer operations on the FMA/multiply ports, which bound
 * an AVX2 softmax: no clamps (lanes below -87 are zeroed at the end, which covers -inf
 * too), k from the rounding add t = x log2(e) + 1.5 2^23 (k sits in t's low mantissa bits),
 * and 2^k applied as an integer add of (t << 23) = k << 23 to p's exponent bits instead of
 * tf_vscale2's two multiplies. */
#define TF_VEXP_FTZ_NATIVE 1
static inline tf_vf
tf_vexp_ftz(tf_vf x)
{
    const __m256 lo = _mm256_set1_ps(-87.0f); /* p 2^k stays normal above this */
    const __m256 magic = _mm256_set1_ps(12582912.0f);
    const __m256 t = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), magic);
    const __m256 k = _mm256_sub_ps(t, magic);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(TF_EXP_C6);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(TF_EXP_C5));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(TF_EXP_C4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(TF_EXP_C3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(TF_EXP_C2));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
    p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
    const __m256i e =
        _mm256_add_epi32(_mm256_castps_si256(p), _mm256_slli_epi32(_mm256_castps_si256(t), 23));
    return _mm256_andnot_ps(_mm256_cmp_ps(x, lo, _CMP_LT_OQ), _mm256_castsi256_ps(e));
}

/* ---- byte vectors for integer dot products (see the AVX-512 backend) */
#define TF_VB              32
static inline tf_vi
tf_vizero(void)
{
    return _mm256_setzero_si256();
}
static inline tf_vi
tf_vload_i8(const int8_t *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}
static inline tf_vi
tf_vload_u4(const uint8_t *sb, int part)
{
    const __m256i b = _mm256_loadu_si256((const __m256i *)sb), f = _mm256_set1_epi8(0x0F);
    return part == 0 ? _mm256_and_si256(b, f) : _mm256_and_si256(_mm256_srli_epi16(b, 4), f);
}
static inline tf_vi
tf_vdot_u8s8(tf_vi acc, tf_vi u, tf_vi s)
{
    return _mm256_add_epi32(acc,
                            _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}
static inline tf_vf
tf_vcvt_f(tf_vi v)
{
    return _mm256_cvtepi32_ps(v);
}
static inline tf_vf
tf_vset_blocks(const float *v)
{
    return _mm256_set1_ps(v[0]);
}

#else
#error "TF_ISA_PASS needs AVX-512 (f, bw, vl, dq) or AVX2 + FMA compiler flags (see setup.py)"
#endif

/* exp(x) per lane: x = k ln2 + r, |r| <= ln2/2, exp(r) by a degree-6 polynomial, 2^k
 * through the exponent. Max relative error ~2 ulp on [-87, 88]; -inf gives 0, NaN gives NaN
 * (x is kept the second operand of max/min so a NaN survives the clamp). */
static inline tf_vf
tf_vexp(tf_vf x)
{
    x = tf_vmax(tf_vset1(-104.0f), x);
    x = tf_vmin(tf_vset1(88.7f), x);
    const tf_vf k = tf_vround(tf_vmul(x, tf_vset1(1.44269504088896341f)));
    tf_vf r = tf_vfnma(k, tf_vset1(0.693359375f), x);
    r = tf_vfnma(k, tf_vset1(-2.12194440e-4f), r);
    tf_vf p = tf_vset1(TF_EXP_C6);
    p = tf_vfma(p, r, tf_vset1(TF_EXP_C5));
    p = tf_vfma(p, r, tf_vset1(TF_EXP_C4));
    p = tf_vfma(p, r, tf_vset1(TF_EXP_C3));
    p = tf_vfma(p, r, tf_vset1(TF_EXP_C2));
    p = tf_vfma(p, tf_vmul(r, r), r);
    p = tf_vadd(p, tf_vset1(1.0f));
    return tf_vscale2(p, k);
}

#ifndef TF_VEXP_FTZ_NATIVE
/* exp(x) for x <= 88 (softmax numerators) where results below 2^-126 may flush to 0:
 * backends with a cheaper form for that contract define their own; here it is tf_vexp. */
static inline tf_vf
tf_vexp_ftz(tf_vf x)
{
    return tf_vexp(x);
}
#endif

/* tanh(y) = 1 - 2 / (exp(2y) + 1), exact at the saturated ends. */
static inline tf_vf
tf_vtanh(tf_vf y)
{
    const tf_vf e = tf_vexp(tf_vadd(y, y));
    return tf_vsub(tf_vset1(1.0f), tf_vdiv(tf_vset1(2.0f), tf_vadd(e, tf_vset1(1.0f))));
}

/* ------------------------------------------------------------------ row conversions
 * Narrow and wide element types, for the quantization, bf16, RoPE and finite-scan kernels
 * (kernels/quant.c, bfloat16.c, rope.c, finite.c). Same contract as tf_vload_n/tf_vstore_n:
 * the _n forms touch only the first n elements (n >= TF_VW: a whole vector), lanes >= n read
 * as 0. */

#if TF_VW == 16 /* AVX-512 */

/* |x| */
static inline tf_vf
tf_vabs(tf_vf x)
{
    return _mm512_abs_ps(x);
}
/* lanes (0 1)(2 3)... swapped: the partner of each element of an interleaved pair */
static inline tf_vf
tf_vswap_pairs(tf_vf x)
{
    return _mm512_permute_ps(x, 0xB1);
}
/* int32 lanes narrowed to int8 with saturation, the first n stored */
static inline void
tf_vstore_s8_n(int8_t *p, tf_vi v, int64_t n)
{
    _mm512_mask_cvtsepi32_storeu_epi8(p, tf_mask16(n), v);
}
/* int8 elements widened to float lanes */
static inline tf_vf
tf_vload_s8_n(const int8_t *p, int64_t n)
{
    const __m128i b =
        n >= 16 ? _mm_loadu_si128((const __m128i *)p) : _mm_maskz_loadu_epi8(tf_mask16(n), p);
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b));
}
/* bf16 bits of float lanes, rounded to nearest even (NaN: a quiet NaN, sign kept) */
static inline tf_vi
tf_vbf16_bits(tf_vf x)
{
    const __m512i b = _mm512_castps_si512(x), one = _mm512_set1_epi32(1);
    const __m512i hi = _mm512_srli_epi32(b, 16);
    const __m512i bias = _mm512_add_epi32(_mm512_and_si512(hi, one), _mm512_set1_epi32(0x7FFF));
    const __m512i r = _mm512_srli_epi32(_mm512_add_epi32(b, bias), 16);
    const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    return _mm512_mask_or_epi32(r, nan, hi, _mm512_set1_epi32(0x40));
}
/* float lanes stored as bf16 (round to nearest even, as tf_vbf16_bits) */
static inline void
tf_vstore_bf16_n(uint16_t *p, tf_vf x, int64_t n)
{
    _mm512_mask_cvtepi32_storeu_epi16(p, tf_mask16(n), tf_vbf16_bits(x));
}
/* bf16 elements widened to float lanes (exact) */
static inline tf_vf
tf_vload_bf16_n(const uint16_t *p, int64_t n)
{
    const __m256i h = n >= 16 ? _mm256_loadu_si256((const __m256i *)p)
                              : _mm256_maskz_loadu_epi16(tf_mask16(n), p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

#else /* AVX2 */

static inline tf_vf
tf_vabs(tf_vf x)
{
    return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
}
static inline tf_vf
tf_vswap_pairs(tf_vf x)
{
    return _mm256_permute_ps(x, 0xB1);
}
/* the 8 int32 lanes of v as 8 saturated int8 in the low half of a 128-bit register */
static inline __m128i
tf_vnarrow_s8(tf_vi v)
{
    const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    return _mm_packs_epi16(w, w);
}
static inline void
tf_vstore_s8_n(int8_t *p, tf_vi v, int64_t n)
{
    const __m128i b = tf_vnarrow_s8(v);
    if (n >= 8) {
        _mm_storel_epi64((__m128i *)p, b);
    }
    else if (n > 0) {
        int8_t tmp[16];
        _mm_storeu_si128((__m128i *)tmp, b);
        memcpy(p, tmp, (size_t)n);
    }
}
static inline tf_vf
tf_vload_s8_n(const int8_t *p, int64_t n)
{
    __m128i b;
    if (n >= 8) {
        b = _mm_loadl_epi64((const __m128i *)p);
    }
    else {
        int8_t tmp[16] = {0};
        memcpy(tmp, p, (size_t)(n > 0 ? n : 0));
        b = _mm_loadu_si128((const __m128i *)tmp);
    }
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
}
static inline tf_vi
tf_vbf16_bits(tf_vf x)
{
    const __m256i b = _mm256_castps_si256(x), one = _mm256_set1_epi32(1);
    const __m256i hi = _mm256_srli_epi32(b, 16);
    const __m256i bias = _mm256_add_epi32(_mm256_and_si256(hi, one), _mm256_set1_epi32(0x7FFF));
    const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(b, bias), 16);
    const __m256i qnan = _mm256_or_si256(hi, _mm256_set1_epi32(0x40));
    const __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    return _mm256_castps_si256(
        _mm256_blendv_ps(_mm256_castsi256_ps(r), _mm256_castsi256_ps(qnan), nan));
}
static inline void
tf_vstore_bf16_n(uint16_t *p, tf_vf x, int64_t n)
{
    const __m256i r = tf_vbf16_bits(x); /* every lane in [0, 0xFFFF]: packus is exact */
    const __m128i h = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
    if (n >= 8) {
        _mm_storeu_si128((__m128i *)p, h);
    }
    else if (n > 0) {
        uint16_t tmp[8];
        _mm_storeu_si128((__m128i *)tmp, h);
        memcpy(p, tmp, (size_t)n * sizeof(uint16_t));
    }
}
static inline tf_vf
tf_vload_bf16_n(const uint16_t *p, int64_t n)
{
    __m128i h;
    if (n >= 8) {
        h = _mm_loadu_si128((const __m128i *)p);
    }
    else {
        uint16_t tmp[8] = {0};
        memcpy(tmp, p, (size_t)(n > 0 ? n : 0) * sizeof(uint16_t));
        h = _mm_loadu_si128((const __m128i *)tmp);
    }
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

#endif /* row conversions */

#endif /* TF_ISA_PASS */

#endif /* TFCORE_SIMD_H */
