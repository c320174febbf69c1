/* rwkv.h — RWKV-4's recurrent kernels (Peng et al. 2023, "RWKV: Reinventing RNNs for the
 * Transformer Era"): the WKV time-mix in its numerically stable max-tracking form, the token
 * shift, and the channel-mix elementwise steps. HF's RwkvForCausalLM runs these as a Python
 * loop over time on CPU (rwkv_linear_attention_cpu); here one call runs all T steps.
 *
 * WKV, per batch item b and channel c (w = -exp(time_decay) <= 0, u = time_first):
 *   wkv_t = (a + e^(u + k_t) v_t) / (b + e^(u + k_t))        (a, b: the decayed sums so far)
 *   a <- e^w a + e^(k_t) v_t,   b <- e^w b + e^(k_t)
 * carried as (aa, bb, pp) with a = aa e^pp, b = bb e^pp so no exponent overflows:
 *   q = max(pp, u + k_t);  wkv_t = (e^(pp-q) aa + e^(u+k_t-q) v_t) / (e^(pp-q) bb + e^(u+k_t-q))
 *   q = max(pp + w, k_t);  aa <- e^(pp+w-q) aa + e^(k_t-q) v_t;  bb <- e^(pp+w-q) bb + e^(k_t-q);
 *   pp <- q
 * A state whose bb is 0 holds nothing (aa is 0 too): its pp is ignored (treated as -1e38, HF's
 * initial max), so a zeroed state (RecurrentState's initial value) is the empty state. */
#ifndef TFCORE_KERNELS_RWKV_H
#define TFCORE_KERNELS_RWKV_H

#include "kernels/kernel.h"

typedef struct {
    int64_t B, T, C;
    const float *k, *v;  /* (B, T, C) key and value */
    const float *r;      /* (B, T, C) receptance logits, or NULL: y = wkv, else sigmoid(r) wkv */
    const float *w;      /* (C,) per-step log decay, -exp(time_decay) (<= 0) */
    const float *u;      /* (C,) time_first: the current token's bonus */
    float *aa, *bb, *pp; /* (B, C) state, read then overwritten with the final state; all NULL:
                            start empty and keep no state */
    float *y;            /* (B, T, C) output */
} tf_rwkv4_wkv_args;

/* The WKV recurrence over a's T steps (threads over batch items and channel blocks). */
void tf_rwkv4_wkv(const tf_rwkv4_wkv_args *a);

/* Token shift and mixing. x (B, T, C); prev (B, C): the token before x[:, 0] (NULL: zeros),
 * overwritten with x[:, T - 1] when keep_last; mix (n, C); out (n, B, T, C):
 *   out[j, b, t] = x[b, t] * mix[j] + x[b, t - 1] * (1 - mix[j])   (x[b, -1] = prev[b]) */
void tf_rwkv_token_shift(int64_t B, int64_t T, int64_t C, const float *x, float *prev,
                         int keep_last, int64_t n, const float *mix, float *out);

/* Channel mix: x (N,) <- max(x, 0)^2 in place (the squared ReLU of the key). */
void tf_rwkv_relu_square(float *x, int64_t N);

/* y (N,) = sigmoid(r) * v, r and v (N,) (the receptance gate; y may alias v). */
void tf_rwkv_sigmoid_gate(const float *r, const float *v, float *y, int64_t N);

#endif /* TFCORE_KERNELS_RWKV_H */
