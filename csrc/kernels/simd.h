/* simd.h — AVX-512 math shared by hand-written kernels. Include only from functions
 * compiled with TF_AVX512 (runtime-dispatched). */
#ifndef TFCORE_SIMD_H
#define TFCORE_SIMD_H

#include <immintrin.h>

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

/* exp(x) for 16 floats: x = k ln2 + r, |r| <= ln2/2, exp(r) by a degree-6 polynomial,
 * 2^k through the exponent bits (_mm512_scalef_ps handles the range and underflow to 0).
 * Max relative error ~2 ulp on [-87, 88]; -inf gives 0, NaN gives NaN. */
TF_AVX512 static inline __m512
tf_exp512(__m512 x)
{
    const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
    const __m512 ln2_hi = _mm512_set1_ps(0.693359375f);
    const __m512 ln2_lo = _mm512_set1_ps(-2.12194440e-4f);
    /* max/min return their second operand when either is NaN: keep x second so a NaN
     * input stays NaN (callers rely on it to detect non-finite inputs) */
    x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);
    x = _mm512_min_ps(_mm512_set1_ps(88.7f), x);
    __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(k, ln2_hi, x);
    r = _mm512_fnmadd_ps(k, ln2_lo, r);
    __m512 p = _mm512_set1_ps(1.3981999507E-3f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
    __m512 r2 = _mm512_mul_ps(r, r);
    p = _mm512_fmadd_ps(p, r2, r);
    p = _mm512_add_ps(p, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, k);
}

#endif /* TFCORE_SIMD_H */
