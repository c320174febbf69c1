/* recurrent_state.c — RecurrentState: per-layer named state tensors of recurrent models,
 * constant in the sequence length; readable and writable as NumPy views (no copy). */
#include "layers/recurrent_state.h"
#include "kernels/bfloat16.h"

#include <string.h>

int
tf_recurrent_state_check(tf_state *st, PyObject *obj)
{
    return PyObject_TypeCheck(obj, st->RecurrentState);
}

static const char *const rs_dtype_names[] = {"float32", "bfloat16"};
static const int rs_typenum[] = {NPY_FLOAT32, NPY_UINT16};

/* Per-item dims allowed after the batch axis (NumPy allows 64 in all; 8 is plenty). */
#define TF_RS_MAX_ITEM_NDIM 8
#define TF_RS_MAX_BYTES     (64.0 * (double)(1ull << 30))

static int
rs_acquire(tf_state *st, tf_recurrent_state *s)
{
    int expected = 0;
    if (!atomic_compare_exchange_strong(&s->busy, &expected, 1)) {
        tf_value_error(st, "this RecurrentState is in use by another call (a state belongs to one "
                           "sequence of calls; give each thread its own)");
        return -1;
    }
    return 0;
}

static void
rs_release(tf_recurrent_state *s)
{
    atomic_store(&s->busy, 0);
}

/* Parse one layer's {name: item_shape} into dims[] (*ndim per-item dims). Returns 0 / -1. */
static int
parse_item_shape(tf_state *st, int64_t layer, const char *name, PyObject *shape, npy_intp *dims,
                 int *ndim)
{
    if (!PyTuple_Check(shape) && !PyList_Check(shape)) {
        tf_type_error(st,
                      "RecurrentState shapes: layer %lld, state '%s': the per-item shape must be a "
                      "tuple of ints, got %s",
                      (long long)layer, name, Py_TYPE(shape)->tp_name);
        return -1;
    }
    Py_ssize_t n = PySequence_Size(shape);
    if (n > TF_RS_MAX_ITEM_NDIM) {
        tf_value_error(st,
                       "RecurrentState shapes: layer %lld, state '%s' has %zd dims after the batch "
                       "axis, at most %d are supported",
                       (long long)layer, name, n, TF_RS_MAX_ITEM_NDIM);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *d = PySequence_GetItem(shape, i);
        if (d == NULL) {
            return -1;
        }
        if (!PyLong_Check(d) || PyBool_Check(d)) {
            tf_type_error(
                st, "RecurrentState shapes: layer %lld, state '%s': dims must be ints, got %s",
                (long long)layer, name, Py_TYPE(d)->tp_name);
            Py_DECREF(d);
            return -1;
        }
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(d, &overflow);
        Py_DECREF(d);
        if (overflow != 0 || v < 1 || v > ((long long)1 << 40)) {
            char given[32] = "an int past int64";
            if (overflow == 0) {
                snprintf(given, sizeof(given), "%lld", v);
            }
            tf_value_error(st,
                           "RecurrentState shapes: layer %lld, state '%s': dims must be positive "
                           "(and below 2**40), got %s",
                           (long long)layer, name, given);
            return -1;
        }
        dims[i] = (npy_intp)v;
    }
    *ndim = (int)n;
    return 0;
}

/* The dict of layer l built from spec {name: item_shape}; adds its bytes to *bytes. */
static PyObject *
build_layer(tf_state *st, tf_recurrent_state *s, int64_t l, PyObject *spec, double *bytes)
{
    PyObject *layer = PyDict_New(), *name, *shape;
    Py_ssize_t pos = 0;
    if (layer == NULL) {
        return NULL;
    }
    while (PyDict_Next(spec, &pos, &name, &shape)) {
        npy_intp dims[1 + TF_RS_MAX_ITEM_NDIM];
        int ndim;
        if (!PyUnicode_Check(name) || PyUnicode_GetLength(name) == 0) {
            tf_type_error(st,
                          "RecurrentState shapes: layer %lld: state names must be non-empty "
                          "str, got %s",
                          (long long)l, PyUnicode_Check(name) ? "''" : Py_TYPE(name)->tp_name);
            goto fail;
        }
        dims[0] = (npy_intp)s->B;
        const char *nm = PyUnicode_AsUTF8(name);
        if (nm == NULL || parse_item_shape(st, l, nm, shape, dims + 1, &ndim) < 0) {
            goto fail;
        }
        double n = (double)s->B * (s->dtype == TF_RS_F32 ? 4.0 : 2.0);
        for (int i = 1; i <= ndim; i++) {
            n *= (double)dims[i];
        }
        *bytes += n;
        if (*bytes > TF_RS_MAX_BYTES) {
            tf_value_error(st, "RecurrentState of these shapes would need more than 64 GiB");
            goto fail;
        }
        PyObject *arr = PyArray_ZEROS(1 + ndim, dims, rs_typenum[s->dtype], 0);
        if (arr == NULL || PyDict_SetItem(layer, name, arr) < 0) {
            Py_XDECREF(arr);
            goto fail;
        }
        Py_DECREF(arr);
    }
    return layer;
fail:
    Py_DECREF(layer);
    return NULL;
}

static PyObject *
rs_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"num_layers", "batch_size", "shapes", "dtype", NULL};
    long long layers, B;
    PyObject *shapes;
    const char *dtype = "float32";
    tf_state *st = tf_state_of_type(type);
    tf_recurrent_state *self = NULL;
    if (st == NULL ||
        !TF_PARSE(st, args, kwds, "LLO|$s:RecurrentState", kwlist, &layers, &B, &shapes, &dtype)) {
        return NULL;
    }
    tf_rs_dtype rs_dtype;
    if (strcmp(dtype, "float32") == 0 || strcmp(dtype, "fp32") == 0) {
        rs_dtype = TF_RS_F32;
    }
    else if (strcmp(dtype, "bfloat16") == 0 || strcmp(dtype, "bf16") == 0) {
        rs_dtype = TF_RS_BF16;
    }
    else {
        return tf_value_error(st, "RecurrentState dtype must be 'float32' or 'bfloat16', got '%s'",
                              dtype);
    }
    if (layers < 1 || B < 1 || layers > (1 << 20) || B > ((long long)1 << 40)) {
        return tf_value_error(st,
                              "RecurrentState sizes must be positive (num_layers <= 2**20), got "
                              "num_layers=%lld batch_size=%lld",
                              layers, B);
    }
    const int per_layer = PyList_Check(shapes) || PyTuple_Check(shapes);
    if (!PyDict_Check(shapes) && !per_layer) {
        return tf_type_error(st,
                             "RecurrentState shapes must be a dict {name: per-item shape} (the "
                             "same for every layer) or a list of num_layers such dicts, got %s",
                             Py_TYPE(shapes)->tp_name);
    }
    if (per_layer && PySequence_Size(shapes) != layers) {
        return tf_value_error(st,
                              "RecurrentState shapes is a list of %zd dicts, expected one per "
                              "layer (num_layers=%lld)",
                              PySequence_Size(shapes), layers);
    }
    if ((self = (tf_recurrent_state *)type->tp_alloc(type, 0)) == NULL) {
        return NULL;
    }
    self->layers = layers;
    self->B = B;
    self->dtype = rs_dtype;
    if ((self->tensors = PyTuple_New((Py_ssize_t)layers)) == NULL) {
        goto fail;
    }
    double bytes = 0.0;
    for (int64_t l = 0; l < layers; l++) {
        PyObject *spec = per_layer ? PySequence_Fast_GET_ITEM(shapes, l) : shapes;
        if (!PyDict_Check(spec)) {
            tf_type_error(st,
                          "RecurrentState shapes[%lld] must be a dict {name: per-item shape}, "
                          "got %s",
                          (long long)l, Py_TYPE(spec)->tp_name);
            goto fail;
        }
        PyObject *layer = build_layer(st, self, l, spec, &bytes);
        if (layer == NULL) {
            goto fail;
        }
        PyTuple_SET_ITEM(self->tensors, l, layer);
    }
    self->nbytes = (int64_t)bytes;
    return (PyObject *)self;
fail:
    Py_DECREF(self);
    return NULL;
}

static int
rs_traverse(tf_recurrent_state *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->tensors);
    return 0;
}

static int
rs_clear(tf_recurrent_state *self)
{
    Py_CLEAR(self->tensors);
    return 0;
}

static void
rs_dealloc(tf_recurrent_state *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    rs_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* Layer index argument -> its dict (borrowed), or NULL with an exception. */
static PyObject *
layer_of(tf_state *st, tf_recurrent_state *self, PyObject *arg, int64_t *l)
{
    if (!PyLong_Check(arg) || PyBool_Check(arg)) {
        return tf_type_error(st, "layer must be an int, got %s", Py_TYPE(arg)->tp_name);
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(arg, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (overflow != 0 || v < 0 || v >= self->layers) {
        if (overflow != 0) {
            return tf_value_error(st, "layer is out of range for a state of %lld layers",
                                  (long long)self->layers);
        }
        return tf_value_error(st, "layer %lld is out of range for a state of %lld layers", v,
                              (long long)self->layers);
    }
    if (l != NULL) {
        *l = v;
    }
    return PyTuple_GET_ITEM(self->tensors, (Py_ssize_t)v);
}

/* The storage array of (layer, name) (borrowed), or NULL with an exception naming the
 * states the layer has. */
static PyArrayObject *
tensor_of(tf_state *st, tf_recurrent_state *self, PyObject *layer_arg, PyObject *name)
{
    int64_t l = 0;
    PyObject *layer = layer_of(st, self, layer_arg, &l);
    if (layer == NULL) {
        return NULL;
    }
    if (!PyUnicode_Check(name)) {
        return (PyArrayObject *)tf_type_error(st, "state name must be a str, got %s",
                                              Py_TYPE(name)->tp_name);
    }
    PyObject *arr = PyDict_GetItemWithError(layer, name);
    if (arr == NULL && !PyErr_Occurred()) {
        PyObject *keys = PyDict_Keys(layer), *names = keys ? PyObject_Repr(keys) : NULL;
        const char *nm = PyUnicode_AsUTF8(name), *have = names ? PyUnicode_AsUTF8(names) : NULL;
        if (nm != NULL && have != NULL) {
            tf_value_error(st, "layer %lld has no state '%s' (it has %s)", (long long)l, nm, have);
        }
        Py_XDECREF(keys);
        Py_XDECREF(names);
    }
    return (PyArrayObject *)arr;
}

static int
parse_layer_name(PyObject *args, const char *fname, PyObject **layer, PyObject **name)
{
    return PyArg_UnpackTuple(args, fname, 2, 2, layer, name);
}

/* A view of the storage array sharing its memory (base = the array). */
static PyObject *
view_of(PyArrayObject *arr)
{
    return PyArray_View(arr, NULL, NULL);
}

static PyObject *
rs_get(tf_recurrent_state *self, PyObject *args)
{
    tf_state *st = tf_state_of((PyObject *)self);
    PyObject *layer, *name;
    if (!tf_args_parsed(st, parse_layer_name(args, "get", &layer, &name))) {
        return NULL;
    }
    PyArrayObject *arr = tensor_of(st, self, layer, name);
    if (arr == NULL) {
        return NULL;
    }
    if (self->dtype == TF_RS_F32) {
        return view_of(arr);
    }
    PyArrayObject *out =
        (PyArrayObject *)PyArray_SimpleNew(PyArray_NDIM(arr), PyArray_DIMS(arr), NPY_FLOAT32);
    if (out != NULL) {
        tf_bf16_to_f32(PyArray_DATA(arr), PyArray_DATA(out), PyArray_SIZE(arr));
    }
    return (PyObject *)out;
}

static PyObject *
rs_raw(tf_recurrent_state *self, PyObject *args)
{
    tf_state *st = tf_state_of((PyObject *)self);
    PyObject *layer, *name;
    if (!tf_args_parsed(st, parse_layer_name(args, "raw", &layer, &name))) {
        return NULL;
    }
    PyArrayObject *arr = tensor_of(st, self, layer, name);
    return arr == NULL ? NULL : view_of(arr);
}

static PyObject *
rs_set(tf_recurrent_state *self, PyObject *args)
{
    tf_state *st = tf_state_of((PyObject *)self);
    PyObject *layer, *name, *value, *result = NULL;
    if (!tf_args_parsed(st, PyArg_UnpackTuple(args, "set", 3, 3, &layer, &name, &value))) {
        return NULL;
    }
    PyArrayObject *arr = tensor_of(st, self, layer, name), *v = NULL;
    if (arr == NULL) {
        return NULL;
    }
    const int nd = PyArray_NDIM(arr);
    if ((v = tf_arg_f32(st, value, "value", nd, nd)) == NULL) {
        return NULL;
    }
    if (!PyArray_CompareLists(PyArray_DIMS(v), PyArray_DIMS(arr), nd)) {
        char given[96], want[96];
        tf_shape_str(v, given, sizeof(given));
        tf_shape_str(arr, want, sizeof(want));
        tf_value_error(st, "value for state '%s' has shape %s, expected %s", PyUnicode_AsUTF8(name),
                       given, want);
        goto done;
    }
    if (tf_check_finite(st, v, "value") < 0 || rs_acquire(st, self) < 0) {
        goto done;
    }
    if (self->dtype == TF_RS_F32) {
        memmove(PyArray_DATA(arr), PyArray_DATA(v), (size_t)PyArray_NBYTES(arr));
    }
    else {
        tf_f32_to_bf16(PyArray_DATA(v), PyArray_DATA(arr), PyArray_SIZE(arr));
    }
    rs_release(self);
    result = Py_NewRef(Py_None);
done:
    Py_DECREF(v);
    return result;
}

static PyObject *
rs_names(tf_recurrent_state *self, PyObject *arg)
{
    PyObject *layer = layer_of(tf_state_of((PyObject *)self), self, arg, NULL);
    if (layer == NULL) {
        return NULL;
    }
    PyObject *keys = PyDict_Keys(layer), *t = keys ? PyList_AsTuple(keys) : NULL;
    Py_XDECREF(keys);
    return t;
}

/* Beam search: batch row b of every tensor becomes old row beam_idx[b], in place. */
static PyObject *
rs_reorder(tf_recurrent_state *self, PyObject *arg)
{
    tf_state *st = tf_state_of((PyObject *)self);
    PyArrayObject *idx = tf_arg_beam_idx(st, arg, self->B);
    PyObject *result = NULL;
    if (idx == NULL) {
        return NULL;
    }
    if (rs_acquire(st, self) < 0) {
        goto done;
    }
    int ok = 1;
    for (int64_t l = 0; ok && l < self->layers; l++) {
        PyObject *layer = PyTuple_GET_ITEM(self->tensors, l), *name, *arr;
        Py_ssize_t pos = 0;
        while (ok && PyDict_Next(layer, &pos, &name, &arr)) {
            PyArrayObject *a = (PyArrayObject *)arr;
            PyArrayObject *taken =
                (PyArrayObject *)PyArray_TakeFrom(a, (PyObject *)idx, 0, NULL, NPY_RAISE);
            if (taken == NULL) {
                ok = 0;
                break;
            }
            memcpy(PyArray_DATA(a), PyArray_DATA(taken), (size_t)PyArray_NBYTES(a));
            Py_DECREF(taken);
        }
    }
    rs_release(self);
    if (ok) {
        result = Py_NewRef(Py_None);
    }
done:
    Py_DECREF(idx);
    return result;
}

static PyObject *
rs_reset(tf_recurrent_state *self, PyObject *unused)
{
    if (rs_acquire(tf_state_of((PyObject *)self), self) < 0) {
        return NULL;
    }
    for (int64_t l = 0; l < self->layers; l++) {
        PyObject *layer = PyTuple_GET_ITEM(self->tensors, l), *name, *arr;
        Py_ssize_t pos = 0;
        while (PyDict_Next(layer, &pos, &name, &arr)) {
            memset(PyArray_DATA((PyArrayObject *)arr), 0,
                   (size_t)PyArray_NBYTES((PyArrayObject *)arr));
        }
    }
    self->seen = 0;
    rs_release(self);
    Py_RETURN_NONE;
}

static PyObject *
rs_advance(tf_recurrent_state *self, PyObject *arg)
{
    tf_state *st = tf_state_of((PyObject *)self);
    if (!PyLong_Check(arg) || PyBool_Check(arg)) {
        return tf_type_error(st, "advance() takes an int number of tokens, got %s",
                             Py_TYPE(arg)->tp_name);
    }
    int overflow = 0;
    long long n = PyLong_AsLongLongAndOverflow(arg, &overflow);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (overflow != 0 || n < 0 || n > ((long long)1 << 48) - self->seen) {
        return tf_value_error(st, "advance() needs 0 <= num_tokens < 2**48 in total, got %lld",
                              overflow ? (long long)-1 : n);
    }
    self->seen += n;
    Py_RETURN_NONE;
}

static PyObject *
rs_get_seq_length(tf_recurrent_state *self, PyObject *unused)
{
    return PyLong_FromLongLong(self->seen);
}

/* "{'state': (4, 8, 8), 'z': (4, 8)}" for layer l: the per-item shapes. */
static PyObject *
item_shapes(tf_recurrent_state *self, int64_t l)
{
    PyObject *layer = PyTuple_GET_ITEM(self->tensors, l), *name, *arr;
    PyObject *out = PyDict_New();
    Py_ssize_t pos = 0;
    while (out != NULL && PyDict_Next(layer, &pos, &name, &arr)) {
        PyArrayObject *a = (PyArrayObject *)arr;
        PyObject *shape = PyTuple_New(PyArray_NDIM(a) - 1);
        for (int i = 1; shape != NULL && i < PyArray_NDIM(a); i++) {
            PyTuple_SET_ITEM(shape, i - 1, PyLong_FromSsize_t(PyArray_DIM(a, i)));
        }
        if (shape == NULL || PyDict_SetItem(out, name, shape) < 0) {
            Py_CLEAR(out);
        }
        Py_XDECREF(shape);
    }
    return out;
}

static PyObject *
rs_shapes(tf_recurrent_state *self, PyObject *arg)
{
    int64_t l = 0;
    if (layer_of(tf_state_of((PyObject *)self), self, arg, &l) == NULL) {
        return NULL;
    }
    return item_shapes(self, l);
}

static PyObject *
rs_repr(tf_recurrent_state *self)
{
    PyObject *first = item_shapes(self, 0), *result = NULL;
    if (first == NULL) {
        return NULL;
    }
    int same = 1;
    for (int64_t l = 1; same && l < self->layers; l++) {
        PyObject *other = item_shapes(self, l);
        if (other == NULL) {
            Py_DECREF(first);
            return NULL;
        }
        same = PyObject_RichCompareBool(first, other, Py_EQ);
        Py_DECREF(other);
        if (same < 0) {
            Py_DECREF(first);
            return NULL;
        }
    }
    char mib[32];
    snprintf(mib, sizeof(mib), "%.2f", (double)self->nbytes / (1 << 20));
    if (same) {
        result =
            PyUnicode_FromFormat("RecurrentState(num_layers=%lld, batch_size=%lld, "
                                 "dtype=%s, per layer %R, seen=%lld, memory=%s MiB)",
                                 (long long)self->layers, (long long)self->B,
                                 rs_dtype_names[self->dtype], first, (long long)self->seen, mib);
    }
    else {
        result =
            PyUnicode_FromFormat("RecurrentState(num_layers=%lld, batch_size=%lld, "
                                 "dtype=%s, layer 0 %R (varies by layer), seen=%lld, "
                                 "memory=%s MiB)",
                                 (long long)self->layers, (long long)self->B,
                                 rs_dtype_names[self->dtype], first, (long long)self->seen, mib);
    }
    Py_DECREF(first);
    return result;
}

static PyObject *
rs_get_dtype(tf_recurrent_state *self, void *closure)
{
    return PyUnicode_FromString(rs_dtype_names[self->dtype]);
}

static PyGetSetDef rs_getset[] = {
    {"dtype", (getter)rs_get_dtype, NULL, "How the tensors are stored: 'float32' or 'bfloat16'.",
     NULL},
    {NULL},
};

static PyMemberDef rs_members[] = {
    {"num_layers", T_LONGLONG, offsetof(tf_recurrent_state, layers), READONLY,
     "Layers the state holds."},
    {"batch_size", T_LONGLONG, offsetof(tf_recurrent_state, B), READONLY,
     "Sequences (the leading axis of every tensor)."},
    {"nbytes", T_LONGLONG, offsetof(tf_recurrent_state, nbytes), READONLY,
     "Bytes of all tensors together (constant: it does not grow with the sequence)."},
    {NULL},
};

static PyMethodDef rs_methods[] = {
    {"get", (PyCFunction)rs_get, METH_VARARGS,
     "get($self, layer, name, /)\n--\n\n(batch_size, *shape) float32 state tensor: a writable view "
     "of the\nstate's memory (no copy) for dtype='float32', a float32 copy for 'bfloat16'."},
    {"raw", (PyCFunction)rs_raw, METH_VARARGS,
     "raw($self, layer, name, /)\n--\n\nWritable view of the stored tensor in its storage dtype "
     "(float32,\nor uint16 bfloat16 bits): always zero-copy."},
    {"set", (PyCFunction)rs_set, METH_VARARGS,
     "set($self, layer, name, value, /)\n--\n\nStore value (float32, exactly (batch_size, *shape), "
     "finite) into the\nstate (rounded to bfloat16 for dtype='bfloat16')."},
    {"names", (PyCFunction)rs_names, METH_O,
     "names($self, layer, /)\n--\n\nThe names of a layer's state tensors, in creation order."},
    {"shapes", (PyCFunction)rs_shapes, METH_O,
     "shapes($self, layer, /)\n--\n\n{name: per-item shape} of a layer (without the batch axis)."},
    {"reorder", (PyCFunction)rs_reorder, METH_O,
     "reorder($self, beam_idx, /)\n--\n\nBeam search: batch row b of every tensor takes row "
     "beam_idx[b], in place\n(views stay valid)."},
    {"reset", (PyCFunction)rs_reset, METH_NOARGS,
     "reset($self, /)\n--\n\nZero every tensor and the token count (memory is kept)."},
    {"advance", (PyCFunction)rs_advance, METH_O,
     "advance($self, num_tokens, /)\n--\n\nCount num_tokens more tokens as processed (models call "
     "it once per\nforward; positions of rotary/xPos encodings continue from get_seq_length())."},
    {"get_seq_length", (PyCFunction)rs_get_seq_length, METH_NOARGS,
     "get_seq_length($self, /)\n--\n\nTokens processed so far (HF's Cache.get_seq_length)."},
    {NULL},
};

PyDoc_STRVAR(
    rs_doc,
    "RecurrentState(num_layers, batch_size, shapes, *, dtype='float32')\n--\n\n"
    "The state of a recurrent model (linear attention, RetNet, GLA, RWKV, Mamba) for incremental\n"
    "decoding: per layer, a set of named tensors, each (batch_size, *shape), zero at the start.\n"
    "Unlike a KVCache its memory does not grow with the sequence.\n\n"
    "shapes is a dict {name: per-item shape} used for every layer, e.g. {'state': (H, Dk, Dv),\n"
    "'z': (H, Dk)}, or a list of num_layers such dicts (hybrids: {} for a layer without state).\n"
    "get(layer, name) is a writable NumPy view of the tensor (no copy; a float32 copy for\n"
    "dtype='bfloat16', whose raw(layer, name) is the uint16 bits); set(layer, name, value)\n"
    "stores a new value. reorder(beam_idx) and reset() work in place.");

static PyType_Slot rs_slots[] = {
    {Py_tp_new, rs_new},           {Py_tp_dealloc, rs_dealloc},
    {Py_tp_traverse, rs_traverse}, {Py_tp_clear, rs_clear},
    {Py_tp_repr, rs_repr},         {Py_tp_members, rs_members},
    {Py_tp_methods, rs_methods},   {Py_tp_getset, rs_getset},
    {Py_tp_doc, (void *)rs_doc},   {0, NULL},
};

PyType_Spec tf_recurrent_state_spec = {
    .name = "tfcore.RecurrentState",
    .basicsize = sizeof(tf_recurrent_state),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = rs_slots,
};
