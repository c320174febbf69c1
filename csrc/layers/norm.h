/* norm.h — the LayerNorm and RMSNorm types as other layers use them without the GIL. */
#ifndef TFCORE_LAYERS_NORM_H
#define TFCORE_LAYERS_NORM_H

#include "tfcore.h"

/* Normalise rows through a Python LayerNorm/RMSNorm object (borrowed; checked by the caller
 * with tf_norm_check_arg): arguments and aliasing as tf_norm_rows (kernels/norm.h). */
void tf_norm_apply(PyObject *norm, const float *x, const float *residual, float *sum_out, float *y,
                   int64_t M);
/* A layer's norm argument `name`: a LayerNorm or RMSNorm over C features, else raises. 0 / -1. */
int tf_norm_check_arg(tf_state *st, PyObject *norm, const char *name, int64_t C);

#endif /* TFCORE_LAYERS_NORM_H */
