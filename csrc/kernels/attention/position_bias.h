/* position_bias.h — position biases computed inside attention instead of materialised:
 * T5's bucketed relative bias and ALiBi's linear bias.
 *
 * Both depend only on the key position minus the query position, so a call needs one
 * vector per head over the L + S - 1 possible offsets, not an (H, L, S) tensor:
 *   rel (H, L + S - 1), bias(h, i, j) = rel[h, (j - i) + (L - 1)]
 * where query row i sits at absolute position q_offset + i (the cached length when
 * decoding) and key j at position j. tf_attn_args.rel takes this vector. */
#ifndef TFCORE_KERNELS_ATTENTION_POSITION_BIAS_H
#define TFCORE_KERNELS_ATTENTION_POSITION_BIAS_H

#include "kernels/kernel.h"

typedef enum { TF_POSBIAS_NONE = 0, TF_POSBIAS_T5, TF_POSBIAS_ALIBI } tf_posbias_kind;

typedef struct {
    tf_posbias_kind kind;
    int64_t H;
    /* T5: table (num_buckets, H) as HF's relative_attention_bias.weight; bucket_of[d] is
     * the bucket of distance d < far (buckets before the direction offset), far_bucket
     * the bucket of every distance >= far. */
    int64_t num_buckets, max_distance;
    int bidirectional;
    float *table;
    int32_t *bucket_of;
    int64_t far;
    int32_t far_bucket;
    /* ALiBi: (H,) slopes */
    float *slopes;
} tf_posbias;

/* HF's T5 bucket of a relative position (key - query): int32 arithmetic and float32 logs
 * as torch computes them, so bucket edges agree exactly. */
int32_t tf_t5_bucket(int64_t relative_position, int bidirectional, int64_t num_buckets,
                     int64_t max_distance);

/* Refuses bucket configurations HF's formula cannot compute: -1 with err (TF_ERR_VALUE)
 * naming the arguments with prefix ("" or "relative_attention_"), else 0. */
int tf_t5_check_config(long long num_buckets, long long max_distance, int bidirectional,
                       const char *prefix, tf_err *err);

/* HF BLOOM's slopes for H heads (powers of 2^(-8/n); non-powers of 2 interleave a second
 * series), float32 like torch. slopes is (H,). */
void tf_alibi_slopes(int64_t H, float *slopes);

/* Fill pb (zeroed first) from a (num_buckets, H) table. 0 / -1 (out of memory). */
int tf_posbias_init_t5(tf_posbias *pb, const float *table, int64_t num_buckets, int64_t H,
                       int64_t max_distance, int bidirectional);
int tf_posbias_init_alibi(tf_posbias *pb, int64_t H);
void tf_posbias_free(tf_posbias *pb);

/* Number of floats tf_posbias_fill writes: H * (L + S - 1). */
int64_t tf_posbias_size(const tf_posbias *pb, int64_t L, int64_t S);

/* rel (H, L + S - 1) for L queries at positions q_offset .. q_offset + L - 1 and S keys. */
void tf_posbias_fill(const tf_posbias *pb, int64_t L, int64_t S, int64_t q_offset, float *rel);

#endif /* TFCORE_KERNELS_ATTENTION_POSITION_BIAS_H */
