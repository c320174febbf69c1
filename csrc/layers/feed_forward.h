/* feed_forward.h — the FeedForward type's C-level API (used by TransformerBlock). */
#ifndef TFCORE_FFN_H
#define TFCORE_FFN_H

#include "layers/linear.h"

/* Plain:  y = down(act(up(x)))
 * Gated:  y = down(act(gate(x)) * up(x))      (SwiGLU with silu, GEGLU with gelu) */
typedef struct {
    PyObject_HEAD tf_linear *up; /* (F, C); activation fused here when not gated */
    tf_linear *gate;             /* (F, C) with the activation fused, or NULL */
    tf_linear *down;             /* (C, F) */
    int act;
} tf_ffn;

/* x is (M, C), y is (M, C), other is (M, C) or NULL (post as in tf_linear_forward,
 * applied by the down projection). Without the GIL. 0 / -1 with err filled. */
int tf_ffn_forward(const tf_ffn *f, const float *x, int64_t M, float *y, tf_post post,
                   const float *other, tf_err *err);

#endif /* TFCORE_FFN_H */
