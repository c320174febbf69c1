/* disentangled_attention.h — what scaled_dot_product_attention.c uses of
 * disentangled_attention.c. */
#ifndef TFCORE_FUNCTIONS_DISENTANGLED_ATTENTION_H
#define TFCORE_FUNCTIONS_DISENTANGLED_ATTENTION_H

#include "tfcore.h"
#include "kernels/attention/sdpa.h"

/* scaled_dot_product_attention's disentangled=(c2p, p2c, relative_index) (DeBERTa): checks
 * it against a's B, H, L, S (nd = 3 or 4, the inputs' dims) and fills a's dis_* fields;
 * hold (zeroed by the caller) receives new references the caller releases after the call.
 * 0 / -1 with an exception. */
int tf_parse_disentangled(tf_state *st, PyObject *obj, int nd, tf_attn_args *a,
                          PyArrayObject *hold[3]);

/* scaled_dot_product_attention's disentangled_positions=(pos_key, pos_query, relative_index):
 * the projected relative embeddings (H or 1, P, D) the kernel multiplies itself (sdpa.h,
 * dis_P); fills a's pos_* and dis_* fields, references in hold as above. 0 / -1. */
int tf_parse_disentangled_positions(tf_state *st, PyObject *obj, tf_attn_args *a,
                                    PyArrayObject *hold[3]);

#endif /* TFCORE_FUNCTIONS_DISENTANGLED_ATTENTION_H */
