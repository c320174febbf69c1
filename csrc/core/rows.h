/* rows.h — what row-wise layers share: the post-op on a second operand and the call
 * protocol `layer(x, residual=None, *, out=None)` over rows (..., K) -> (..., N). */
#ifndef TFCORE_CORE_ROWS_H
#define TFCORE_CORE_ROWS_H

#include "tfcore.h"

/* tf_post, the post-op on the optional second operand, is in kernels/kernel.h (the few-row
 * product kernel applies it too). */

/* The arguments of a row-wise layer call `layer(x, residual=None, *, out=None)` after
 * validation: x (..., K) float32 used in place; out (..., N) new or the caller's;
 * residual (..., N) turned into the post-op (ADD, or ACCUM when out is residual). */
typedef struct {
    PyArrayObject *x, *res, *out; /* owned references */
    int64_t M;                    /* rows: x.size / K */
    tf_post post;
    const float *other; /* residual operand for TF_POST_ADD */
} tf_rows_call;
typedef struct {
    const char *x;          /* argument name in messages ("x", "hidden_states") */
    int min_ndim, max_ndim; /* accepted ranks of x */
    const char *features;   /* what K is called ("in_features", "hidden_size") */
} tf_rows_names;
/* names NULL = {"x", 1..32 dims, "in_features"} */
int tf_rows_call_parse(tf_state *st, PyObject *x_obj, PyObject *res_obj, PyObject *out_obj,
                       int64_t K, int64_t N, const tf_rows_names *names, tf_rows_call *c);
void tf_rows_call_release(tf_rows_call *c);

/* The call of a layer that maps rows (..., K) -> (..., N): `layer(x, residual=None, *,
 * out=None)`, parsed by tf_rows_call_parse and run by forward without the GIL. */
typedef int (*tf_rows_forward)(const void *layer, const float *x, int64_t M, float *y, tf_post post,
                               const float *other, tf_err *err);
PyObject *tf_rows_layer_call(PyObject *self, PyObject *args, PyObject *kwds, int64_t K, int64_t N,
                             tf_rows_forward forward, const char *fmt);

#endif /* TFCORE_CORE_ROWS_H */
