/* embedding.c */
#include "tfcore.h"

int
tf_register_embedding(PyObject *module, tf_state *st)
{
    return 0;
}
