/* activation.c — elementwise activations and the GLU product (kernels/activation.h), each
 * with a plain reference path and a vector path compiled per ISA, chosen at run time. */
#include "kernels/activation.h"
#include "kernels/simd.h"

#include <math.h>
#include <string.h>

#define PARALLEL_MIN_ELEMS 65536
#define CHUNK              4096 /* elements per OpenMP work item */

#ifdef TF_ISA_PASS
/* ------------------------------------------------------------------ vector path (per ISA) */

/* x, y are (n,); erf-GELU stays scalar (erff, see act_scalar) for exactness, the others are
 * vectorised. */
void
TF_ISA_FN(tf_act_vec)(const float *x, float *y, int64_t n, tf_act act)
{
    const tf_vf half = tf_vset1(0.5f), one = tf_vset1(1.0f);
    for (int64_t i = 0; i < n; i += TF_VW) {
        const tf_vf v = tf_vload_n(x + i, n - i);
        tf_vf r;
        switch (act) {
            case TF_ACT_RELU: r = tf_vmax(v, tf_vzero()); break;
            case TF_ACT_SILU: r = tf_vdiv(v, tf_vadd(one, tf_vexp(tf_vsub(tf_vzero(), v)))); break;
            case TF_ACT_TANH: r = tf_vtanh(v); break;
            case TF_ACT_GELU_TANH: {
                const tf_vf inner = tf_vfma(tf_vmul(tf_vset1(0.044715f), v), tf_vmul(v, v), v);
                r = tf_vmul(tf_vmul(half, v),
                            tf_vadd(one, tf_vtanh(tf_vmul(tf_vset1(0.79788456080286536f), inner))));
                break;
            }
            default: r = v; break;
        }
        tf_vstore_n(y + i, r, n - i);
    }
}

#else /* the reference path and the dispatchers, compiled once */

TF_ISA_DECLARE(void, tf_act_vec, (const float *x, float *y, int64_t n, tf_act act))

#define ACT_ISAS (TF_ISA_BIT(TF_ISA_AVX512) | TF_ISA_BIT(TF_ISA_AVX2))

tf_isa_level
tf_activation_isa(void)
{
    return tf_isa_for(ACT_ISAS);
}

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

void
tf_activation_serial(const float *x, float *y, int64_t n, tf_act act)
{
    const tf_isa_level level = act == TF_ACT_GELU ? TF_ISA_REFERENCE : tf_activation_isa();
    if (level == TF_ISA_AVX512) {
        tf_act_vec_avx512(x, y, n, act);
        return;
    }
    if (level == TF_ISA_AVX2) {
        tf_act_vec_avx2(x, y, n, act);
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

#endif /* TF_ISA_PASS */
