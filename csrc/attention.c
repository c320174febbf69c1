/* attention.c */
#include "tfcore.h"

int
tf_register_attention(PyObject *module, tf_state *st)
{
    return 0;
}
