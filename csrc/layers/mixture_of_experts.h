/* mixture_of_experts.h — the MixtureOfExperts type's C-level API (used by TransformerBlock in place of a
 * FeedForward: Mixtral's sparse MoE block, Jamba's expert layers). */
#ifndef TFCORE_LAYERS_MIXTURE_OF_EXPERTS_H
#define TFCORE_LAYERS_MIXTURE_OF_EXPERTS_H

#include "layers/feed_forward.h"

/* y = Σ_{e in topk(softmax(router(x)))} w_e · expert_e(x), per row of x:
 *   p = softmax(x Rᵀ) over the E experts (float32);
 *   the top_k experts by p (ties: the lower expert index first);
 *   w = p over those (divided by their sum when normalize_top_k, as Mixtral does).
 * Tokens are grouped per expert, so each expert runs one GEMM over the rows routed to it
 * and an expert no row chose is not read at all (decoding reads only top_k experts). */
typedef struct {
    PyObject_HEAD tf_linear *router; /* (E, C), float32 */
    tf_ffn **experts;                /* E FeedForward layers (C -> C), owned references */
    int64_t E, C;
    int top_k;
    int normalize_top_k;
} tf_moe;

/* Routing of x (M, C): idx (M, top_k) expert indices in descending probability, wt (M, top_k)
 * their weights. Without the GIL. 0 / -1 with err filled. */
int tf_moe_route(const tf_moe *m, const float *x, int64_t M, int64_t *idx, float *wt, tf_err *err);

/* x is (M, C), y is (M, C), other (M, C) or NULL with post as in tf_linear_forward (the
 * residual is added after the experts' weighted sum). Without the GIL. 0 / -1, err filled. */
int tf_moe_forward(const tf_moe *m, const float *x, int64_t M, float *y, tf_post post,
                   const float *other, tf_err *err);

/* Borrowed check: is obj a MixtureOfExperts (or subclass)? */
int tf_moe_check(tf_state *st, PyObject *obj);

#endif /* TFCORE_LAYERS_MIXTURE_OF_EXPERTS_H */
