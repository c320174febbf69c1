/* recurrent_state.h — the RecurrentState type: per-layer named state tensors of recurrent
 * models (linear attention, retention, GLA, RWKV, Mamba), the counterpart of KVCache whose
 * memory does not grow with the sequence.
 *
 * Layer l holds a set of named tensors, each (B, *item_shape) in the state's dtype
 * (float32, or bfloat16 as uint16 bits), zero at creation and after reset(). Examples:
 *   linear attention: "state" (B, H, Dk, Dv), "z" (B, H, Dk)
 *   Mamba:            "conv" (B, C, k - 1),   "ssm" (B, C, N)
 *   RWKV:             "shift" (B, C),         "wkv" (B, H, D, D)
 * Each tensor is one C-contiguous NumPy array owned by the state; views handed to Python
 * share its memory, and reorder()/reset() work in place so views stay current. */
#ifndef TFCORE_LAYERS_RECURRENT_STATE_H
#define TFCORE_LAYERS_RECURRENT_STATE_H

#include "tfcore.h"

#include <stdatomic.h>

typedef enum {
    TF_RS_F32 = 0,
    TF_RS_BF16, /* uint16 bits, rounded to nearest even on store */
} tf_rs_dtype;

typedef struct {
    PyObject_HEAD int64_t layers, B;
    tf_rs_dtype dtype;
    int64_t seen;      /* tokens processed so far (advance()); the next token's position */
    PyObject *tensors; /* tuple (layers,) of dict: name -> ndarray (B, *item_shape) */
    int64_t nbytes;    /* bytes of every tensor together */
    atomic_int busy;   /* reorder/reset/set in progress (guards against sharing by mistake) */
} tf_recurrent_state;

int tf_recurrent_state_check(tf_state *st, PyObject *obj);

#endif /* TFCORE_LAYERS_RECURRENT_STATE_H */
