/* block.c */
#include "tfcore.h"

int
tf_register_block(PyObject *module, tf_state *st)
{
    return 0;
}
