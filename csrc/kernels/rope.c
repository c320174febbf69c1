/* rope.c — rotary position embedding (RoPE), in place on strided head vectors. Angles are
 * computed in float32 like HF (position * inv_freq, then cos/sin) so outputs match its
 * rounding. */
#include "kernels/rope.h"

#include <math.h>
#include <string.h>

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

#define MAX_HALF 512 /* rotary_dim <= 1024 uses the stack tables */

void
tf_rope_inplace(float *x, int64_t B, int64_t T, int64_t heads, int64_t D, int64_t sb, int64_t st,
                int64_t sh, const int64_t *positions, int64_t offset, const float *inv_freq,
                int64_t rotary_dim, int interleaved)
{
    const int64_t half = rotary_dim / 2;
    (void)D;
    /* x is a (B, T, heads, D) view; one (b, t) row of heads per work item */
#pragma omp parallel for schedule(static) if (B * T * heads * rotary_dim >= 65536)
    for (int64_t bt = 0; bt < B * T; bt++) {
        const int64_t b = bt / T, t = bt % T;
        const int64_t pos = positions ? positions[bt] : offset + t;
        float c[MAX_HALF], s[MAX_HALF];
        float *row = x + b * sb + t * st;
        if (half <= MAX_HALF) {
            angles(pos, inv_freq, half, c, s);
            for (int64_t h = 0; h < heads; h++) {
                rotate(row + h * sh, c, s, half, interleaved);
            }
        }
        else {
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
    }
}

/* The level rope kernels run at now (show_config). */
tf_isa_level
tf_rope_isa(void)
{
    return TF_ISA_REFERENCE;
}
