/* position_bias.c — T5 bucketed relative bias and ALiBi, as per-call offset vectors
 * (position_bias.h). */
#include "kernels/attention/position_bias.h"

#include <stdio.h>

#include <math.h>
#include <string.h>

#define LUT_MAX (1 << 16) /* distances tabulated per layer; farther ones are computed */

/* Bucket of a distance d >= 0 within one direction of nb buckets (HF's is_small /
 * relative_position_if_large), in float32 like torch. */
static int32_t
bucket_of_distance(int64_t d, int64_t nb, int64_t max_distance)
{
    const int64_t max_exact = nb / 2;
    if (d < max_exact) {
        return (int32_t)d;
    }
    const float ratio = (float)d / (float)max_exact;
    const float denom = (float)log((double)max_distance / (double)max_exact);
    const float scaled = logf(ratio) / denom * (float)(nb - max_exact);
    int64_t large = max_exact + (int64_t)scaled; /* .to(long) truncates toward zero */
    return (int32_t)(large < nb - 1 ? large : nb - 1);
}

/* Buckets per direction: half of them each way when bidirectional. */
static inline int64_t
per_direction(int64_t num_buckets, int bidirectional)
{
    return bidirectional ? num_buckets / 2 : num_buckets;
}

/* A relative position (key - query) as the first bucket of its direction (*base) and its
 * distance; unidirectional (causal) buckets put keys after the query at distance 0. */
static inline int64_t
split_direction(int64_t rel, int bidirectional, int64_t num_buckets, int32_t *base)
{
    if (bidirectional) {
        *base = rel > 0 ? (int32_t)(num_buckets / 2) : 0;
        return rel < 0 ? -rel : rel;
    }
    *base = 0;
    return rel < 0 ? -rel : 0;
}

int32_t
tf_t5_bucket(int64_t rel, int bidirectional, int64_t num_buckets, int64_t max_distance)
{
    int32_t base;
    const int64_t d = split_direction(rel, bidirectional, num_buckets, &base);
    return base + bucket_of_distance(d, per_direction(num_buckets, bidirectional), max_distance);
}

int
tf_t5_check_config(long long num_buckets, long long max_distance, int bidirectional,
                   const char *prefix, tf_err *err)
{
    /* per direction, HF's formula needs exact buckets (the first half) and logarithmic ones
     * up to max_distance (the rest) */
    const long long per_dir = per_direction(num_buckets, bidirectional);
    if (per_dir < 2) {
        tf_err_set(err, TF_ERR_VALUE, "%snum_buckets must be >= %d, got %lld", prefix,
                   bidirectional ? 4 : 2, num_buckets);
        return -1;
    }
    if (num_buckets > (1 << 20)) {
        tf_err_set(err, TF_ERR_VALUE, "%snum_buckets=%lld is too large (at most 2^20)", prefix,
                   num_buckets);
        return -1;
    }
    if (max_distance <= per_dir / 2) {
        tf_err_set(
            err, TF_ERR_VALUE,
            "%smax_distance must exceed %lld (half of the %lld buckets per direction), got %lld",
            prefix, per_dir / 2, per_dir, max_distance);
        return -1;
    }
    return 0;
}

void
tf_alibi_slopes(int64_t H, float *slopes)
{
    int64_t p2 = 1;
    while (p2 * 2 <= H) {
        p2 *= 2;
    }
    /* base = 2^(-8 / p2) rounded to float32, then float32 powers of it (torch.pow) */
    const float base = (float)pow(2.0, -pow(2.0, -(log2((double)p2) - 3.0)));
    for (int64_t h = 0; h < p2; h++) {
        slopes[h] = (float)pow((double)base, (double)(h + 1));
    }
    if (p2 != H) {
        const float extra = (float)pow(2.0, -pow(2.0, -(log2((double)(2 * p2)) - 3.0)));
        for (int64_t r = 0; r < H - p2; r++) {
            slopes[p2 + r] = (float)pow((double)extra, (double)(2 * r + 1));
        }
    }
}

int
tf_posbias_init_t5(tf_posbias *pb, const float *table, int64_t num_buckets, int64_t H,
                   int64_t max_distance, int bidirectional)
{
    memset(pb, 0, sizeof(*pb));
    pb->kind = TF_POSBIAS_T5;
    pb->H = H;
    pb->num_buckets = num_buckets;
    pb->max_distance = max_distance;
    pb->bidirectional = bidirectional;
    const int64_t nb = per_direction(num_buckets, bidirectional);
    /* tabulate distances until the bucket saturates at nb - 1 (it is nondecreasing) */
    int64_t far = 0;
    while (far < LUT_MAX && bucket_of_distance(far, nb, max_distance) < nb - 1) {
        far++;
    }
    pb->far = far;
    pb->far_bucket = (int32_t)(nb - 1);
    pb->table = tf_malloc((size_t)(num_buckets * H) * sizeof(float));
    pb->bucket_of = tf_malloc((size_t)(far > 0 ? far : 1) * sizeof(int32_t));
    if (pb->table == NULL || pb->bucket_of == NULL) {
        tf_posbias_free(pb);
        return -1;
    }
    memcpy(pb->table, table, (size_t)(num_buckets * H) * sizeof(float));
    for (int64_t d = 0; d < far; d++) {
        pb->bucket_of[d] = bucket_of_distance(d, nb, max_distance);
    }
    return 0;
}

int
tf_posbias_init_alibi(tf_posbias *pb, int64_t H)
{
    memset(pb, 0, sizeof(*pb));
    pb->kind = TF_POSBIAS_ALIBI;
    pb->H = H;
    pb->slopes = tf_malloc((size_t)H * sizeof(float));
    if (pb->slopes == NULL) {
        return -1;
    }
    tf_alibi_slopes(H, pb->slopes);
    return 0;
}

void
tf_posbias_free(tf_posbias *pb)
{
    tf_free(pb->table);
    tf_free(pb->bucket_of);
    tf_free(pb->slopes);
    memset(pb, 0, sizeof(*pb));
}

int64_t
tf_posbias_size(const tf_posbias *pb, int64_t L, int64_t S)
{
    return pb->H * (L + S - 1);
}

/* T5 bucket through the layer's table of distances. */
static inline int32_t
lut_bucket(const tf_posbias *pb, int64_t rel)
{
    int32_t base;
    const int64_t d = split_direction(rel, pb->bidirectional, pb->num_buckets, &base);
    if (d < pb->far) {
        return base + pb->bucket_of[d];
    }
    return base + (pb->far < LUT_MAX
                       ? pb->far_bucket
                       : bucket_of_distance(d, per_direction(pb->num_buckets, pb->bidirectional),
                                            pb->max_distance));
}

void
tf_posbias_fill(const tf_posbias *pb, int64_t L, int64_t S, int64_t q_offset, float *rel)
{
    const int64_t n = L + S - 1, H = pb->H;
    /* entry idx holds key - query = idx - (L - 1) - q_offset */
    for (int64_t idx = 0; idx < n; idx++) {
        const int64_t delta = idx - (L - 1) - q_offset;
        if (pb->kind == TF_POSBIAS_T5) {
            const float *row = pb->table + (int64_t)lut_bucket(pb, delta) * H;
            for (int64_t h = 0; h < H; h++) {
                rel[h * n + idx] = row[h];
            }
        }
        else {
            for (int64_t h = 0; h < H; h++) {
                rel[h * n + idx] = pb->slopes[h] * (float)delta;
            }
        }
    }
}
