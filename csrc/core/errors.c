/* errors.c — one place that turns failures (oneDNN statuses, bad arguments, failures
 * recorded while the GIL was released) into Python exceptions. */
#include "tfcore.h"

#include <stdarg.h>
#include <stdio.h>

const char *
tf_dnnl_status_str(dnnl_status_t status)
{
    switch (status) {
        case dnnl_success: return "success";
        case dnnl_out_of_memory: return "out of memory";
        case dnnl_invalid_arguments: return "invalid arguments";
        case dnnl_unimplemented: return "no implementation for this configuration";
        case dnnl_last_impl_reached: return "last implementation reached";
        case dnnl_runtime_error: return "runtime error";
        case dnnl_not_required: return "not required";
        default: return "unknown status";
    }
}

int
tf_err_dnnl(tf_err *err, dnnl_status_t status, const char *what)
{
    if (status == dnnl_success) {
        return 0;
    }
    tf_err_set(err, status == dnnl_out_of_memory ? TF_ERR_MEMORY : TF_ERR_ONEDNN,
               "oneDNN failed while %s: %s (status %d)", what, tf_dnnl_status_str(status),
               (int)status);
    return -1;
}

int
tf_err_raise(tf_state *st, const tf_err *err)
{
    PyObject *type;
    switch (err->kind) {
        case TF_ERR_VALUE: type = st->ValueError; break;
        case TF_ERR_TYPE: type = st->TypeError; break;
        case TF_ERR_MEMORY: type = PyExc_MemoryError; break;
        default: type = st->OneDNNError; break;
    }
    /* a failure path that forgot to describe itself still names what happened */
    PyErr_SetString(type, err->msg[0]
                              ? err->msg
                              : "tfcore: a call failed without a description (please report this)");
    return -1;
}

static PyObject *
raise_v(PyObject *type, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    PyErr_SetString(type, msg);
    return NULL;
}

PyObject *
tf_value_error(tf_state *st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    raise_v(st->ValueError, fmt, ap);
    va_end(ap);
    return NULL;
}

PyObject *
tf_type_error(tf_state *st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    raise_v(st->TypeError, fmt, ap);
    va_end(ap);
    return NULL;
}

int
tf_args_parsed(tf_state *st, int ok)
{
    if (ok || st == NULL || !PyErr_Occurred()) {
        return ok;
    }
    PyObject *as =
        PyErr_ExceptionMatches(PyExc_OverflowError) ? st->ValueError
        : PyErr_ExceptionMatches(PyExc_TypeError) && !PyErr_ExceptionMatches(st->TypeError)
            ? st->TypeError
            : NULL;
    if (as == NULL) {
        return ok;
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *msg = value ? PyObject_Str(value) : NULL;
    if (msg != NULL) {
        PyErr_SetObject(as, msg);
        Py_DECREF(msg);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
    }
    else {
        PyErr_Restore(type, value, tb);
    }
    return ok;
}

int
tf_check_dnnl(tf_state *st, dnnl_status_t status, const char *what)
{
    tf_err err;
    if (tf_err_dnnl(&err, status, what) == 0) {
        return 0;
    }
    return tf_err_raise(st, &err);
}
