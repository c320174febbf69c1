/* block_sparse.h — block-sparse attention (BigBird) over listed key blocks; semantics and
 * paths in block_sparse.c's header comment. Memory linear in the sequence length. */
#ifndef TFCORE_KERNELS_ATTENTION_BLOCK_SPARSE_H
#define TFCORE_KERNELS_ATTENTION_BLOCK_SPARSE_H

#include "kernels/kernel.h"

/* All pointers address float32 with element strides per axis; last axes contiguous. */
/* clang-format off: one line per operand (pointer, strides, shape) */
typedef struct {
    const float *q;
    int64_t q_sb, q_sh, q_sl; /* (B, H, L, D) */
    const float *k;
    int64_t k_sb, k_sh, k_ss; /* (B, H, S, D) */
    const float *v;
    int64_t v_sb, v_sh, v_ss; /* (B, H, S, Dv) */
    float *out;
    int64_t o_sb, o_sh, o_sl; /* (B, H, L, Dv) */
    int64_t B, H, L, S, D, Dv;
    int64_t bs;  /* block size: L % bs == S % bs == 0 */
    int64_t nqb; /* L / bs query blocks */
    const int64_t *layout;
    int64_t l_sb, l_sh, l_sq; /* (B, H, nqb, nsel), broadcast strides */
    int64_t nsel;
    const uint8_t *global_q;   /* (nqb,) or NULL */
    const uint8_t *key_mask;   /* (B, S) or NULL */
    const uint8_t *query_mask; /* (B, L) or NULL */
    float scale;
} tf_block_sparse_args;
/* clang-format on */

/* out = block-sparse attention of a. Runs with OpenMP on the caller's thread count.
 * 0 / -1 with err filled (out of memory for scratch). */
int tf_block_sparse(const tf_block_sparse_args *a, tf_err *err);

#endif /* TFCORE_KERNELS_ATTENTION_BLOCK_SPARSE_H */
