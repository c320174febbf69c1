/* activation.c — elementwise activations and the GLU product (kernels/activation.h), each
 * with a plain reference path and an AVX-512 path chosen at run time. */
#include "kernels/activation.h"
#include "kernels/simd.h"

#include <math.h>
#include <string.h>

#define PARALLEL_MIN_ELEMS 65536
#define CHUNK              4096 /* elements per OpenMP work item */

static inline float
act_scalar(float x, tf_act act)
{
    switch (act) {
        case TF_ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
        case TF_ACT_GELU_TANH:
            return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
        case TF_ACT_RELU: return x > 0.0f ? x : 0.0f;
        case TF_ACT_SILU: return x / (1.0f + expf(-x));
        case TF_ACT_TANH: return tanhf(x);
        default: return x;
    }
}

/* tanh(y) = 1 - 2 / (exp(2y) + 1), exact at the saturated ends. */
TF_AVX512 static inline __m512
tanh512(__m512 y)
{
    __m512 e = tf_exp512(_mm512_add_ps(y, y));
    return _mm512_sub_ps(
        _mm512_set1_ps(1.0f),
        _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, _mm512_set1_ps(1.0f))));
}

/* x, y are (n,); erf-GELU stays scalar (erff) for exactness, the others are vectorised. */
TF_AVX512 static void
act_avx512(const float *x, float *y, int64_t n, tf_act act)
{
    if (act == TF_ACT_GELU) {
        for (int64_t i = 0; i < n; i++) {
            y[i] = act_scalar(x[i], act);
        }
        return;
    }
    const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tf_mask16(n - i);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i), r;
        switch (act) {
            case TF_ACT_RELU: r = _mm512_max_ps(v, _mm512_setzero_ps()); break;
            case TF_ACT_SILU:
                r = _mm512_div_ps(
                    v, _mm512_add_ps(one, tf_exp512(_mm512_sub_ps(_mm512_setzero_ps(), v))));
                break;
            case TF_ACT_TANH: r = tanh512(v); break;
            case TF_ACT_GELU_TANH: {
                __m512 inner = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(0.044715f), v),
                                               _mm512_mul_ps(v, v), v);
                r = _mm512_mul_ps(
                    _mm512_mul_ps(half, v),
                    _mm512_add_ps(
                        one, tanh512(_mm512_mul_ps(_mm512_set1_ps(0.79788456080286536f), inner))));
                break;
            }
            default: r = v; break;
        }
        _mm512_mask_storeu_ps(y + i, m, r);
    }
}

void
tf_activation_serial(const float *x, float *y, int64_t n, tf_act act)
{
    if (tf_cpu_has_avx512() && !tf_force_reference) {
        act_avx512(x, y, n, act);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        y[i] = act_scalar(x[i], act);
    }
}

void
tf_activation(const float *x, float *y, int64_t n, tf_act act)
{
    const int64_t chunks = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN_ELEMS)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t i0 = c * CHUNK, len = n - i0 < CHUNK ? n - i0 : CHUNK;
        tf_activation_serial(x + i0, y + i0, len, act);
    }
}

void
tf_glu(const float *x, float *y, int64_t M, int64_t F, tf_act act)
{
#pragma omp parallel for schedule(static) if (M * F >= PARALLEL_MIN_ELEMS && M > 1)
    for (int64_t row = 0; row < M; row++) {
        const float *gate = x + row * 2 * F, *up = gate + F;
        float *out = y + row * F;
        tf_activation_serial(gate, out, F, act); /* out = act(gate) */
        for (int64_t i = 0; i < F; i++) {
            out[i] *= up[i];
        }
    }
}
