/* activation.h — elementwise activations and the GLU product. Plain reference path and an
 * AVX-512 path chosen at run time; parallel with OpenMP when the work pays. */
#ifndef TFCORE_KERNELS_ACTIVATION_H
#define TFCORE_KERNELS_ACTIVATION_H

#include "kernels/kernel.h"

/* y = act(x) elementwise over n values; y may alias x. */
void tf_activation(const float *x, float *y, int64_t n, tf_act act);
/* The same on the calling thread only (inside a caller's parallel region). */
void tf_activation_serial(const float *x, float *y, int64_t n, tf_act act);

/* x is (M, 2F) = [gate | up] per row, y is (M, F): y = act(gate) * up. */
void tf_glu(const float *x, float *y, int64_t M, int64_t F, tf_act act);

#endif /* TFCORE_KERNELS_ACTIVATION_H */
