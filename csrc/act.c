/* act.c */
#include "tfcore.h"

int
tf_register_act(PyObject *module, tf_state *st)
{
    return 0;
}
