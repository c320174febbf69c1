/* window_attention.h — the WindowAttention type's C-level API (used by SwinLayer). */
#ifndef TFCORE_LAYERS_WINDOW_ATTENTION_H
#define TFCORE_LAYERS_WINDOW_ATTENTION_H

#include "layers/linear.h"

typedef struct {
    PyObject_HEAD int64_t C, H, D; /* hidden size, heads, head dim (C = H D) */
    int64_t ws, shift;             /* window side and cyclic shift of this layer (HF's SwinLayer) */
    float scale;
    tf_linear *qkv; /* (3C, C): rows [q heads | k heads | v heads] */
    tf_linear *o;   /* (C, C) */
    float *table;   /* (H, (2 tw - 1)^2) head-major, owned, or NULL (no bias) */
    int64_t tw;
    float *bias; /* (H, ws^2, NP) precomputed from table for ws, owned, or NULL */
    float *pad;  /* (3C,) q, k, v of a padding (zero) token: the qkv bias or 0 */
} tf_winattn;

/* HF's SwinLayer.set_shift_and_window_size: the window side and shift used on an Hh x Ww
 * map — min(Hh, Ww) and 0 when min(Hh, Ww) <= the layer's window, unless always_partition. */
void tf_winattn_window(const tf_winattn *m, int64_t Hh, int64_t Ww, int always_partition,
                       int64_t *ws, int64_t *shift);

/* A new (B nW, H, ws^2, ws^2) float32 array for the attention weights of a call. */
PyArrayObject *tf_window_weights_new(int64_t B, int64_t Hh, int64_t Ww, int64_t H, int64_t ws);

/* x, y, other are (B, Hh, Ww, C) rows; y = o(attention(qkv(x))) (post) other, with window
 * side ws and shift from tf_winattn_window; weights (B nW, H, N, N) or NULL. Without the
 * GIL. 0 / -1 with err filled. */
int tf_winattn_forward(const tf_winattn *m, const float *x, int64_t B, int64_t Hh, int64_t Ww,
                       int64_t ws, int64_t shift, float *y, tf_post post, const float *other,
                       float *weights, tf_err *err);

/* Argument names for tf_rows_call_parse on (B, Hh, Ww, C) maps. */
extern const tf_rows_names tf_map_names;

/* Argument checks shared by the layer and tfcore.functional.window_attention (GIL held;
 * 0 / -1 with the exception set): the relative-position bias table of H heads for window
 * side ws (*tw its side, *out a new head-major copy), the attention scale for head dim D
 * (None = D^-1/2), the window side and shift. */
int tf_window_parse_table(tf_state *st, PyObject *obj, int64_t H, int64_t ws, int64_t *tw,
                          float **out);
int tf_window_parse_scale(tf_state *st, PyObject *obj, int64_t D, float *scale);
int tf_window_check_size(tf_state *st, long long ws, long long shift);

/* Borrowed check: is obj a WindowAttention (or subclass)? */
int tf_winattn_check(tf_state *st, PyObject *obj);

#endif /* TFCORE_LAYERS_WINDOW_ATTENTION_H */
