/* rows.c — the call protocol of row-wise layers, `layer(x, residual=None, *, out=None)`:
 * argument checks, the residual turned into a GEMM post-op, and the GIL-free call of the
 * layer's forward function (Linear, FeedForward, ...). */
#include "core/rows.h"

#include <string.h>

int
tf_rows_call_parse(tf_state *st, PyObject *x_obj, PyObject *res_obj, PyObject *out_obj, int64_t K,
                   int64_t N, const tf_rows_names *names, tf_rows_call *c)
{
    static const tf_rows_names default_names = {"x", 1, NPY_MAXDIMS, "in_features"};
    npy_intp dims[NPY_MAXDIMS];
    memset(c, 0, sizeof(*c));
    if (names == NULL) {
        names = &default_names;
    }
    if ((c->x = tf_arg_f32(st, x_obj, names->x, names->min_ndim, names->max_ndim)) == NULL) {
        goto fail;
    }
    int nd = PyArray_NDIM(c->x);
    if (PyArray_DIM(c->x, nd - 1) != K) {
        tf_value_error(st, "%s has last dim %" NPY_INTP_FMT ", expected %s=%lld", names->x,
                       PyArray_DIM(c->x, nd - 1), names->features, (long long)K);
        goto fail;
    }
    if (tf_check_nonempty(st, c->x, names->x) < 0 || tf_check_finite(st, c->x, names->x) < 0) {
        goto fail;
    }
    memcpy(dims, PyArray_DIMS(c->x), (size_t)nd * sizeof(npy_intp));
    dims[nd - 1] = (npy_intp)N;
    c->M = (int64_t)(PyArray_SIZE(c->x) / K);
    if (res_obj != NULL && res_obj != Py_None) {
        if ((c->res = tf_arg_f32(st, res_obj, "residual", nd, nd)) == NULL) {
            goto fail;
        }
        if (!PyArray_CompareLists(PyArray_DIMS(c->res), dims, nd)) {
            char got[96];
            tf_shape_str(c->res, got, sizeof(got));
            tf_value_error(st,
                           "residual has shape %s; it must match the output shape "
                           "(x's shape with last dim %lld)",
                           got, (long long)N);
            goto fail;
        }
        if (tf_check_finite(st, c->res, "residual") < 0) {
            goto fail;
        }
    }
    if ((c->out = tf_out_f32(st, out_obj, nd, dims)) == NULL) {
        goto fail;
    }
    if (tf_check_no_overlap(st, c->out, c->x, names->x) < 0) {
        goto fail;
    }
    c->post = TF_POST_NONE;
    if (c->res != NULL) {
        /* out is residual: accumulate in place (oneDNN's sum post-op); any other overlap
         * would let the kernel read a residual it has already overwritten. */
        if (PyArray_DATA(c->res) == PyArray_DATA(c->out)) {
            c->post = TF_POST_ACCUM;
        }
        else {
            if (tf_check_no_overlap(st, c->out, c->res, "residual") < 0) {
                goto fail;
            }
            c->post = TF_POST_ADD;
            c->other = PyArray_DATA(c->res);
        }
    }
    return 0;
fail:
    tf_rows_call_release(c);
    return -1;
}

void
tf_rows_call_release(tf_rows_call *c)
{
    Py_CLEAR(c->x);
    Py_CLEAR(c->res);
    Py_CLEAR(c->out);
}

PyObject *
tf_rows_layer_call(PyObject *self, PyObject *args, PyObject *kwds, int64_t K, int64_t N,
                   tf_rows_forward forward, const char *fmt)
{
    static char *kwlist[] = {"x", "residual", "out", NULL};
    PyObject *x_obj, *res_obj = Py_None, *out_obj = Py_None, *result;
    tf_state *st = tf_state_of(self);
    tf_rows_call c;
    tf_err err = {0};
    int rc;
    if (!TF_PARSE(st, args, kwds, fmt, kwlist, &x_obj, &res_obj, &out_obj)) {
        return NULL;
    }
    if (tf_rows_call_parse(st, x_obj, res_obj, out_obj, K, N, NULL, &c) < 0) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS tf_threads_begin();
    rc = forward(self, PyArray_DATA(c.x), c.M, PyArray_DATA(c.out), c.post, c.other, &err);
    Py_END_ALLOW_THREADS result = rc < 0 ? NULL : Py_NewRef(c.out);
    if (rc < 0) {
        tf_err_raise(st, &err);
    }
    tf_rows_call_release(&c);
    return result;
}
