/* ffn.c */
#include "tfcore.h"

int
tf_register_ffn(PyObject *module, tf_state *st)
{
    return 0;
}
