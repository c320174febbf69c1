/* rope.h — rotary position embedding (RoPE) in place on strided head vectors. */
#ifndef TFCORE_KERNELS_ROPE_H
#define TFCORE_KERNELS_ROPE_H

#include "kernels/kernel.h"

/* Rotates, in place, the first rotary_dim dims of every head vector of a (B, T, heads, D)
 * view with element strides sb, st, sh (the D values of a head are contiguous).
 * Position of (b, t) is positions[b * T + t] if positions != NULL, else offset + t.
 * angle_i = position * inv_freq[i], i < rotary_dim / 2.
 * Half-split (Llama, GPT-NeoX): pairs (i, i + rotary_dim/2); interleaved (GPT-J): (2i, 2i+1). */
void tf_rope_inplace(float *x, int64_t B, int64_t T, int64_t heads, int64_t D, int64_t sb,
                     int64_t st, int64_t sh, const int64_t *positions, int64_t offset,
                     const float *inv_freq, int64_t rotary_dim, int interleaved);

#endif /* TFCORE_KERNELS_ROPE_H */
