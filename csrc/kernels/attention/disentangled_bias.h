/* disentangled_bias.h — DeBERTa's disentangled attention bias, computed inside attention.
 *
 * DeBERTa (v2/v3) adds to the content score q_i . k_j two terms read from shared relative
 * position embeddings R (2 span, C), projected per layer to Kr = R Wk and Qr = R Wq:
 *   content-to-position  q_i . Kr[p(i, j)]      position-to-content  k_j . Qr[p(i, j)]
 * where p(i, j) = clamp(bucket(i - j) + span, 0, 2 span - 1) depends on i - j only.
 * With the index vector idx (L + S - 1), idx[(i - j) + S - 1] = p(i, j), the attention
 * kernel (sdpa.h, tf_attn_args.dis_idx) gathers c2p[i, idx] + p2c[j, idx] per query and key
 * from the two small GEMMs c2p = Q Krᵀ (L, P) and p2c = K Qrᵀ (S, P): either given by the
 * caller as tables, or computed by the kernel itself from Kr and Qr (dis_P > 0) per query
 * block and per head into per-thread buffers. No (H, L, S) bias tensor is ever built. */
#ifndef TFCORE_KERNELS_ATTENTION_DISENTANGLED_BIAS_H
#define TFCORE_KERNELS_ATTENTION_DISENTANGLED_BIAS_H

#include "kernels/kernel.h"

/* HF's make_log_bucket_position for one relative position (query - key): exact within
 * bucket_size / 2, logarithmic up to max_position beyond, float32 arithmetic as torch.
 * bucket_size <= 0 or max_position <= 0: the position itself. */
int64_t tf_deberta_bucket(int64_t relative_position, int64_t bucket_size, int64_t max_position);

/* Refuses configurations HF's formula cannot evaluate (log of 1 in the denominator):
 * -1 with err (TF_ERR_VALUE), else 0. */
int tf_deberta_check_config(long long bucket_size, long long max_position, tf_err *err);

/* idx (L + S - 1) int32: idx[(i - j) + S - 1] = clamp(bucket(i - j) + span, 0, 2 span - 1). */
void tf_deberta_index(int64_t L, int64_t S, int64_t bucket_size, int64_t max_position, int64_t span,
                      int32_t *idx);

#endif /* TFCORE_KERNELS_ATTENTION_DISENTANGLED_BIAS_H */
