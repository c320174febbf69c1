/* norm.c */
#include "tfcore.h"

int
tf_register_norm(PyObject *module, tf_state *st)
{
    return 0;
}
