/* mha.c */
#include "tfcore.h"

int
tf_register_mha(PyObject *module, tf_state *st)
{
    return 0;
}
