/* module.c — tfcore._C: multi-phase init, exceptions, and the registration, GC traverse and
 * clear of every type and function table, all generated from registry.h. */
#define TFCORE_IMPORT_ARRAY
#include "tfcore.h"

#include <stdlib.h>
#include <string.h>

static int tf_exec(PyObject *module);

static int
add_exception(PyObject *module, const char *qualname, const char *doc, PyObject *bases,
              PyObject **slot)
{
    const char *name = strrchr(qualname, '.') + 1;
    *slot = PyErr_NewExceptionWithDoc(qualname, doc, bases, NULL);
    if (*slot == NULL) {
        return -1;
    }
    return PyModule_AddObjectRef(module, name, *slot);
}

static int
add_exceptions(PyObject *module, tf_state *st)
{
    PyObject *bases = NULL;
    int rc = -1;
    if (add_exception(module, "tfcore.TfcoreError", "Base class of every error tfcore raises.",
                      NULL, &st->Error) < 0) {
        goto fail;
    }
    bases = PyTuple_Pack(2, st->Error, PyExc_ValueError);
    if (bases == NULL ||
        add_exception(module, "tfcore.TfcoreValueError",
                      "A value given to tfcore is wrong: shape, size, range, NaN, ...", bases,
                      &st->ValueError) < 0) {
        goto fail;
    }
    Py_CLEAR(bases);
    bases = PyTuple_Pack(2, st->Error, PyExc_TypeError);
    if (bases == NULL || add_exception(module, "tfcore.TfcoreTypeError",
                                       "An argument given to tfcore has the wrong type or dtype.",
                                       bases, &st->TypeError) < 0) {
        goto fail;
    }
    Py_CLEAR(bases);
    bases = PyTuple_Pack(2, st->Error, PyExc_RuntimeError);
    if (bases == NULL ||
        add_exception(module, "tfcore.OneDNNError",
                      "oneDNN reported a failure (the message says what was being done).", bases,
                      &st->OneDNNError) < 0) {
        goto fail;
    }
    rc = 0;
fail:
    Py_XDECREF(bases);
    return rc;
}

/* Add a heap type built from spec to the module and store it in *slot. */
static int
tf_add_type(PyObject *module, PyType_Spec *spec, PyObject *base, PyTypeObject **slot)
{
    *slot = (PyTypeObject *)PyType_FromModuleAndSpec(module, spec, base);
    if (*slot == NULL) {
        return -1;
    }
    return PyModule_AddType(module, *slot);
}

tf_state *
tf_state_of_type(PyTypeObject *type)
{
    PyObject *module = PyType_GetModuleByDef(type, &tf_module_def);
    return module == NULL ? NULL : (tf_state *)PyModule_GetState(module);
}

static int
tf_exec(PyObject *module)
{
    tf_state *st = tf_state_of_module(module);
    if (PyArray_ImportNumPyAPI() < 0) {
        return -1;
    }
    if (add_exceptions(module, st) < 0 || tf_engine_init(st) < 0) {
        return -1;
    }
    /* TFCORE_ISA=avx512|avx2|reference: the level tfcore's own kernels run at (at most the
     * CPU's; a level it lacks fails the import with the reason). TFCORE_REFERENCE_KERNELS=1
     * is the older spelling of TFCORE_ISA=reference. */
    const char *isa = getenv("TFCORE_ISA");
    if (isa != NULL && isa[0] != '\0') {
        if (tf_isa_select_by_name(st, isa, "TFCORE_ISA") < 0) {
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb); /* an import error that says why */
            PyErr_Format(PyExc_ImportError, "tfcore: %S", value);
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(tb);
            return -1;
        }
    }
    const char *ref = getenv("TFCORE_REFERENCE_KERNELS");
    if (ref != NULL && ref[0] != '\0' && strcmp(ref, "0") != 0) {
        tf_isa_select(TF_ISA_REFERENCE);
    }
#define TF_REGISTER_TYPE(name, spec, file)                 \
    if (tf_add_type(module, &spec, NULL, &st->name) < 0) { \
        return -1;                                         \
    }
    TF_TYPES(TF_REGISTER_TYPE)
#undef TF_REGISTER_TYPE
#define TF_REGISTER_FUNCTIONS(table, file)          \
    if (PyModule_AddFunctions(module, table) < 0) { \
        return -1;                                  \
    }
    TF_FUNCTIONS(TF_REGISTER_FUNCTIONS)
#undef TF_REGISTER_FUNCTIONS
    return 0;
}

static int
tf_traverse(PyObject *module, visitproc visit, void *arg)
{
    tf_state *st = tf_state_of_module(module);
    Py_VISIT(st->Error);
    Py_VISIT(st->ValueError);
    Py_VISIT(st->TypeError);
    Py_VISIT(st->OneDNNError);
#define TF_VISIT_TYPE(name, spec, file) Py_VISIT(st->name);
    TF_TYPES(TF_VISIT_TYPE)
#undef TF_VISIT_TYPE
    return 0;
}

static int
tf_clear(PyObject *module)
{
    tf_state *st = tf_state_of_module(module);
    Py_CLEAR(st->Error);
    Py_CLEAR(st->ValueError);
    Py_CLEAR(st->TypeError);
    Py_CLEAR(st->OneDNNError);
#define TF_CLEAR_TYPE(name, spec, file) Py_CLEAR(st->name);
    TF_TYPES(TF_CLEAR_TYPE)
#undef TF_CLEAR_TYPE
    return 0;
}

static void
tf_free_module(void *module)
{
    tf_clear((PyObject *)module);
}

static PyModuleDef_Slot tf_slots[] = {
    {Py_mod_exec, tf_exec},
    {0, NULL},
};

PyModuleDef tf_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tfcore._C",
    .m_doc = "tfcore's C core: transformer ops over oneDNN with NumPy buffers in and out.",
    .m_size = sizeof(tf_state),
    .m_slots = tf_slots,
    .m_traverse = tf_traverse,
    .m_clear = tf_clear,
    .m_free = tf_free_module,
};

PyMODINIT_FUNC
PyInit__C(void)
{
    return PyModuleDef_Init(&tf_module_def);
}
