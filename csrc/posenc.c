/* posenc.c */
#include "tfcore.h"

int
tf_register_posenc(PyObject *module, tf_state *st)
{
    return 0;
}
