/* rope.c — rotary position embedding (RoPE), in place on strided head vectors. Angles are
 * computed in float32 like HF (position * inv_freq, then cosf/sinf, scalar on every path)
 * so outputs match its rounding; the rotation has a plain reference path and a vector path
 * compiled per ISA. Both round the same products the same way (a c - b s and b c + a s,
 * each product rounded, no fused multiply-add), so every level gives the same bits. */
#include "kernels/rope.h"
#include "kernels/simd.h"

#include <math.h>
#include <string.h>

#define MAX_HALF 512 /* rotary_dim <= 1024 uses the stack tables */

#ifdef TF_ISA_PASS
/* ------------------------------------------------------------------ vector path (per ISA) */

/* Rotates frequencies [i0, i0 + n) of the heads (stride sh) of one (b, t) row.
 * Half-split: pairs (v[i0 + i], v[half + i0 + i]) with c, s (n,).
 * Interleaved: elements v[2 i0 + j], j < 2n, with the pair tables c (2n,) = (c0 c0 c1 c1 ...)
 * and s (2n,) = (-s0 s0 -s1 s1 ...): v' = v c + swap_pairs(v) s. */
void
TF_ISA_FN(tf_rope_slice)(float *row, int64_t heads, int64_t sh, int64_t half, int64_t i0, int64_t n,
                         const float *c, const float *s, int interleaved)
{
    for (int64_t h = 0; h < heads; h++) {
        float *v = row + h * sh;
        if (interleaved) {
            float *p = v + 2 * i0;
            /* 2n is even and so is TF_VW: a vector never splits a pair */
            int64_t j = 0;
            for (; j + TF_VW <= 2 * n; j += TF_VW) {
                const tf_vf x = tf_vload(p + j);
                const tf_vf y = tf_vmul(tf_vswap_pairs(x), tf_vload(s + j));
                tf_vstore(p + j, tf_vadd(tf_vmul(x, tf_vload(c + j)), y));
            }
            if (j < 2 * n) { /* masked tail (AVX2's masked moves are slow: tails only) */
                const int64_t len = 2 * n - j;
                const tf_vf x = tf_vload_n(p + j, len);
                const tf_vf y = tf_vmul(tf_vswap_pairs(x), tf_vload_n(s + j, len));
                tf_vstore_n(p + j, tf_vadd(tf_vmul(x, tf_vload_n(c + j, len)), y), len);
            }
        }
        else {
            float *pa = v + i0, *pb = v + half + i0;
            int64_t i = 0;
            for (; i + TF_VW <= n; i += TF_VW) {
                const tf_vf a = tf_vload(pa + i), b = tf_vload(pb + i);
                const tf_vf cv = tf_vload(c + i), sv = tf_vload(s + i);
                tf_vstore(pa + i, tf_vsub(tf_vmul(a, cv), tf_vmul(b, sv)));
                tf_vstore(pb + i, tf_vadd(tf_vmul(b, cv), tf_vmul(a, sv)));
            }
            if (i < n) {
                const int64_t len = n - i;
                const tf_vf a = tf_vload_n(pa + i, len), b = tf_vload_n(pb + i, len);
                const tf_vf cv = tf_vload_n(c + i, len), sv = tf_vload_n(s + i, len);
                tf_vstore_n(pa + i, tf_vsub(tf_vmul(a, cv), tf_vmul(b, sv)), len);
                tf_vstore_n(pb + i, tf_vadd(tf_vmul(b, cv), tf_vmul(a, sv)), len);
            }
        }
    }
}

#else /* the reference path and the dispatcher, compiled once */

TF_ISA_DECLARE(void, tf_rope_slice,
               (float *row, int64_t heads, int64_t sh, int64_t half, int64_t i0, int64_t n,
                const float *c, const float *s, int interleaved))

#define ROPE_ISAS (TF_ISA_BIT(TF_ISA_AVX512) | TF_ISA_BIT(TF_ISA_AVX2))

/* The level rope kernels run at now (show_config). */
tf_isa_level
tf_rope_isa(void)
{
    return tf_isa_for(ROPE_ISAS);
}

/* cos/sin of one position for the rotary_dim/2 frequencies. */
static void
angles(int64_t pos, const float *inv_freq, int64_t half, float *c, float *s)
{
    for (int64_t i = 0; i < half; i++) {
        float a = (float)pos * inv_freq[i];
        c[i] = cosf(a);
        s[i] = sinf(a);
    }
}

/* ------------------------------------------------------------------ reference path */

/* One head vector v (D,), rotating its first 2*half dims. */
static inline void
rotate(float *v, const float *c, const float *s, int64_t half, int interleaved)
{
    if (interleaved) {
        for (int64_t i = 0; i < half; i++) {
            float a = v[2 * i], b = v[2 * i + 1];
            v[2 * i] = a * c[i] - b * s[i];
            v[2 * i + 1] = b * c[i] + a * s[i];
        }
    }
    else {
        for (int64_t i = 0; i < half; i++) {
            float a = v[i], b = v[i + half];
            v[i] = a * c[i] - b * s[i];
            v[i + half] = b * c[i] + a * s[i];
        }
    }
}

/* x is one (b, t) row of heads (stride sh) at position pos */
static void
rope_row_ref(float *row, int64_t heads, int64_t sh, int64_t pos, const float *inv_freq,
             int64_t half, int interleaved)
{
    float c[MAX_HALF], s[MAX_HALF];
    if (half <= MAX_HALF) {
        angles(pos, inv_freq, half, c, s);
        for (int64_t h = 0; h < heads; h++) {
            rotate(row + h * sh, c, s, half, interleaved);
        }
        return;
    }
    /* very wide heads: rotate in slices of MAX_HALF frequencies */
    for (int64_t h = 0; h < heads; h++) {
        float *v = row + h * sh;
        for (int64_t i0 = 0; i0 < half; i0 += MAX_HALF) {
            int64_t n = half - i0 < MAX_HALF ? half - i0 : MAX_HALF;
            angles(pos, inv_freq + i0, n, c, s);
            for (int64_t i = 0; i < n; i++) {
                int64_t p = interleaved ? 2 * (i0 + i) : i0 + i;
                int64_t q = interleaved ? p + 1 : p + half;
                float a = v[p], bb = v[q];
                v[p] = a * c[i] - bb * s[i];
                v[q] = bb * c[i] + a * s[i];
            }
        }
    }
}

/* ------------------------------------------------------------------ vector dispatch */

typedef void (*rope_slice_fn)(float *, int64_t, int64_t, int64_t, int64_t, int64_t, const float *,
                              const float *, int);

/* The same row through a vector slice function: the angles of each slice of MAX_HALF
 * frequencies once, for all heads. */
static void
rope_row_vec(rope_slice_fn fn, float *row, int64_t heads, int64_t sh, int64_t pos,
             const float *inv_freq, int64_t half, int interleaved)
{
    float c[2 * MAX_HALF], s[2 * MAX_HALF];
    for (int64_t i0 = 0; i0 < half; i0 += MAX_HALF) {
        const int64_t n = half - i0 < MAX_HALF ? half - i0 : MAX_HALF;
        if (interleaved) {
            /* pair tables (c0 c0 c1 c1 ...), (-s0 s0 -s1 s1 ...), filled from the top
             * down so the plain tables can sit in their first halves */
            angles(pos, inv_freq + i0, n, c, s);
            for (int64_t i = n - 1; i >= 0; i--) {
                const float ci = c[i], si = s[i];
                c[2 * i] = c[2 * i + 1] = ci;
                s[2 * i] = -si;
                s[2 * i + 1] = si;
            }
        }
        else {
            angles(pos, inv_freq + i0, n, c, s);
        }
        fn(row, heads, sh, half, i0, n, c, s, interleaved);
    }
}

void
tf_rope_inplace(float *x, int64_t B, int64_t T, int64_t heads, int64_t D, int64_t sb, int64_t st,
                int64_t sh, const int64_t *positions, int64_t offset, const float *inv_freq,
                int64_t rotary_dim, int interleaved)
{
    const int64_t half = rotary_dim / 2;
    (void)D;
    rope_slice_fn fn = NULL;
    switch (tf_rope_isa()) {
        case TF_ISA_AVX512: fn = tf_rope_slice_avx512; break;
        case TF_ISA_AVX2: fn = tf_rope_slice_avx2; break;
        default: break;
    }
        /* x is a (B, T, heads, D) view; one (b, t) row of heads per work item */
#pragma omp parallel for schedule(static) if (B * T * heads * rotary_dim >= 65536)
    for (int64_t bt = 0; bt < B * T; bt++) {
        const int64_t b = bt / T, t = bt % T;
        const int64_t pos = positions ? positions[bt] : offset + t;
        float *row = x + b * sb + t * st;
        if (fn) {
            rope_row_vec(fn, row, heads, sh, pos, inv_freq, half, interleaved);
        }
        else {
            rope_row_ref(row, heads, sh, pos, inv_freq, half, interleaved);
        }
    }
}

#endif /* TF_ISA_PASS */
