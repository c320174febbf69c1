/* disentangled_bias.c — DeBERTa's log-bucketed relative positions as the index vector the
 * attention kernel gathers with (disentangled_bias.h). */
#include "kernels/attention/disentangled_bias.h"

#include <math.h>

int64_t
tf_deberta_bucket(int64_t rel, int64_t bucket_size, int64_t max_position)
{
    if (bucket_size <= 0 || max_position <= 0) {
        return rel;
    }
    const int64_t mid = bucket_size / 2;
    const int64_t abs_pos = rel < 0 ? -rel : rel;
    if (abs_pos <= mid) { /* HF: abs_pos < mid is replaced by mid - 1, still <= mid */
        return rel;
    }
    /* torch: log(abs_pos / mid) / log(tensor((max_position - 1) / mid)) * (mid - 1), float32 */
    const float num = logf((float)abs_pos / (float)mid);
    const float den = logf((float)((double)(max_position - 1) / (double)mid));
    const float log_pos = ceilf(num / den * (float)(mid - 1)) + (float)mid;
    const int64_t mag = (int64_t)log_pos;
    return rel < 0 ? -mag : mag;
}

int
tf_deberta_check_config(long long bucket_size, long long max_position, tf_err *err)
{
    if (bucket_size > (1 << 20) || max_position > (1LL << 40)) {
        tf_err_set(err, TF_ERR_VALUE,
                   "position_buckets=%lld or max_relative_positions=%lld is too large", bucket_size,
                   max_position);
        return -1;
    }
    if (bucket_size > 0 && max_position > 0 && bucket_size / 2 >= 1 &&
        max_position - 1 <= bucket_size / 2) {
        tf_err_set(err, TF_ERR_VALUE,
                   "max_relative_positions must exceed position_buckets / 2 + 1 = %lld, got %lld",
                   bucket_size / 2 + 1, max_position);
        return -1;
    }
    if (bucket_size > 0 && bucket_size < 2) {
        tf_err_set(err, TF_ERR_VALUE, "position_buckets must be >= 2 (or <= 0 for none), got %lld",
                   bucket_size);
        return -1;
    }
    return 0;
}

void
tf_deberta_index(int64_t L, int64_t S, int64_t bucket_size, int64_t max_position, int64_t span,
                 int32_t *idx)
{
    for (int64_t k = 0; k < L + S - 1; k++) {
        int64_t p = tf_deberta_bucket(k - (S - 1), bucket_size, max_position) + span;
        p = p < 0 ? 0 : p > 2 * span - 1 ? 2 * span - 1 : p;
        idx[k] = (int32_t)p;
    }
}
