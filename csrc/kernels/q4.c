/* q4.c — 4-bit group-quantized weights times int8-quantized rows (kernels/q4.h), one source
 * compiled per ISA.
 *
 * The vector path streams the weights once per TF_Q4_ROWS rows of x: a 32-byte superblock
 * is unpacked to 64 bytes 0..15 in registers (one AVX-512 vector, two AVX2 ones: and, shift),
 * multiplied with the int8 rows by vpmaddubsw + vpmaddwd (each int32 lane sums 4 products;
 * the pairs cannot saturate: 2 x 15 x 127 < 32767) into int32 accumulators over a group,
 * which are scaled once per group by d[n, g] sx[r, g] into a float accumulator. (Groups of
 * 32 in AVX-512's 64-value vectors: two groups per vector, scaled per 8 lanes.) One row of x
 * (decoding) takes 4 weight rows per pass, two rows 2: each int8 x vector is loaded once for
 * them, and their float accumulators fit AVX2's 16 registers. The offsets term
 * sum_g m[n, g] xsum[r, g] is a float dot over the groups added into the same accumulators,
 * so each output is reduced across lanes once. The weight rows are prefetched 8 KiB ahead
 * (NR rows, their scales and offsets are 3 NR streams; measured at 1 thread on the AVX2 VM,
 * 8192 x 2048 group 32: 5.3-5.9 GB/s with 512 bytes ahead, 7.3-9.8 GB/s with 8 KiB).
 * Threads take tiles of 32 outputs (32 contiguous weight rows; 576 outputs are 18 tiles, even
 * over 2 threads); the bias, the activation and the post-op are applied per tile by the
 * dispatcher, compiled once. The int8 rows are quantized by the vector path too (the same
 * bits as the reference: max is exact in any order, one multiply, round to nearest even).
 *
 * Measured (1 thread, CPU time, AVX2 VM under load 13-17, in-cache SmolLM2 shapes):
 * 576 x 576 group 32: 38.6 -> 19.8 us per call with the previous one-row, scalar-offsets
 * kernel; 1536 x 576: 85.9 -> 50.5 us; 576 x 1536: 90.2 -> 49.4 us.
 */
#include "kernels/q4.h"
#include "kernels/activation.h"
#include "kernels/simd.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include <omp.h>

#define TILE 32 /* outputs per task (N = 576: 18 tasks, even over 2 threads) */
/* Below this many weights one thread is faster than waking the team. */
#define PARALLEL_MIN_WEIGHTS (1 << 16)

/* Row n of W = d q + m into out (K floats): a superblock is two runs of 32 values (low
 * nibbles, then high ones); groups are multiples of 32, so a run lies in one group: constant
 * d, m, a loop the compiler vectorizes (the prefill path dequantizes every weight on every
 * call). d q and + m are rounded separately (no contraction under -std=c11): the same bits at
 * every level, Linear.weight's. */
static inline void
dequantize_row_body(const tf_q4_args *a, int64_t n, float *out)
{
    const int64_t K = a->K, Kp = tf_q4_kpad(K), ldg = tf_q4_groups(Kp, a->group);
    const uint8_t *qr = a->q + n * (Kp / 2);
    for (int64_t k0 = 0; k0 < K; k0 += TF_Q4_SB / 2) {
        const uint8_t *sb = qr + k0 / TF_Q4_SB * (TF_Q4_SB / 2);
        const int64_t g = k0 / a->group, len = K - k0 < 32 ? K - k0 : 32;
        const float dg = a->d[n * ldg + g], mg = a->m[n * ldg + g];
        float *o = out + k0;
        if ((k0 % TF_Q4_SB) == 0) {
            for (int64_t i = 0; i < len; i++) {
                const float prod = dg * (float)(sb[i] & 0x0F);
                o[i] = prod + mg;
            }
        }
        else {
            for (int64_t i = 0; i < len; i++) {
                const float prod = dg * (float)(sb[i] >> 4);
                o[i] = prod + mg;
            }
        }
    }
}

#ifdef TF_ISA_PASS
/* ------------------------------------------------------------------ vector path (per ISA) */

/* Output rows per pass for R rows of x: each unpacked weight vector and each int8 x vector
 * is used R x NR times from registers (AVX2 has 16: R NR float accumulators, the x vector,
 * one weight vector, two constants and the scale products must fit). */
#define Q4_NR(R) ((R) == 1 ? 4 : (R) == 2 ? 2 : 1)
/* Bytes ahead of the current superblock at which each weight row is prefetched: the rows of
 * a pass are NR separate streams (plus their scales), more than the hardware prefetcher
 * follows well. */
#define Q4_PREFETCH 8192

/* a full vector, or the first n lanes (0 past them) */
static inline tf_vf
ld(const float *p, int64_t n)
{
    return n >= TF_VW ? tf_vload(p) : tf_vload_n(p, n);
}

/* Software prefetch Q4_PREFETCH bytes ahead in the nibbles of each of the NR rows (one 64-byte
 * line per two superblocks, the rate they are consumed) and as far ahead, in rows, in their
 * scales and offsets (one line per group / 4 superblocks). Past the arrays' ends a prefetch is
 * harmless. */
static inline __attribute__((always_inline)) void
prefetch_rows(const tf_q4_args *a, const uint8_t *q, const float *d, const float *m, int64_t sb,
              int64_t qs, int64_t ldg, const int NR)
{
    if ((sb & 1) == 0) {
        for (int i = 0; i < NR; i++) {
            __builtin_prefetch(q + i * qs + sb * (TF_Q4_SB / 2) + Q4_PREFETCH);
        }
    }
    if ((sb & (a->group / 4 - 1)) == 0) {
        const int64_t g = sb * TF_Q4_SB / a->group, ahead = Q4_PREFETCH * 2 / a->group;
        for (int i = 0; i < NR; i++) {
            __builtin_prefetch(d + i * ldg + g + ahead);
            __builtin_prefetch(m + i * ldg + g + ahead);
        }
    }
}

/* out[r * TILE + i] (r < R, i < NR) = sum_g d[n + i, g] sx[r, g] (q[n + i] . xq[r])_g
 *                                    + sum_g m[n + i, g] xsum[r, g]
 * for weight rows n .. n + NR - 1 (Kp / 2 bytes each, scales d and offsets m ldg apart) and
 * R rows of x: xq (R, Kp) int8, sx and xsum (R, ldg). Products of a group accumulate exactly
 * in int32 (at most 256 x 15 x 127 per lane) and are scaled once per group (group >= 64), or
 * per vector (groups of 32: one AVX2 vector, half an AVX-512 one) by d sx in float32. The
 * offsets term is a float dot over the groups folded into the same accumulators, so each
 * output is reduced across lanes once. R and NR are constants after inlining (accumulators in
 * registers). */
static inline __attribute__((always_inline)) void
dot_block(const tf_q4_args *a, int64_t n, const int8_t *xq, const float *sx, const float *xsum,
          int64_t Kp, int64_t ldg, const int R, const int NR, float *out)
{
    const int64_t qs = Kp / 2, nsb = Kp / TF_Q4_SB;
    const uint8_t *q = a->q + n * qs;
    const float *d = a->d + n * ldg, *m = a->m + n * ldg;
    tf_vf acc[TF_Q4_ROWS][4];
    for (int r = 0; r < R; r++) {
        for (int i = 0; i < NR; i++) {
            acc[r][i] = tf_vzero();
        }
    }
    if (a->group >= TF_Q4_SB) { /* whole superblocks per group */
        const int64_t per_group = a->group / TF_Q4_SB;
        for (int64_t g = 0, sb = 0; sb < nsb; g++) {
            tf_vi ia[TF_Q4_ROWS][4];
            for (int r = 0; r < R; r++) {
                for (int i = 0; i < NR; i++) {
                    ia[r][i] = tf_vizero();
                }
            }
            const int64_t end = sb + per_group < nsb ? sb + per_group : nsb;
            for (; sb < end; sb++) {
                const uint8_t *w = q + sb * (TF_Q4_SB / 2);
                const int8_t *x = xq + sb * TF_Q4_SB;
                prefetch_rows(a, q, d, m, sb, qs, ldg, NR);
                for (int p = 0; p < TF_Q4_SB / TF_VB; p++) { /* 1 (AVX-512) or 2 (AVX2) */
                    for (int i = 0; i < NR; i++) {
                        const tf_vi u = tf_vload_u4(w + i * qs, p);
                        for (int r = 0; r < R; r++) {
                            ia[r][i] =
                                tf_vdot_u8s8(ia[r][i], u, tf_vload_i8(x + r * Kp + p * TF_VB));
                        }
                    }
                }
            }
            for (int r = 0; r < R; r++) {
                const tf_vf s = tf_vset1(sx[r * ldg + g]);
                for (int i = 0; i < NR; i++) {
                    acc[r][i] = tf_vfma(tf_vcvt_f(ia[r][i]), tf_vmul(tf_vset1(d[i * ldg + g]), s),
                                        acc[r][i]);
                }
            }
        }
    }
    else { /* groups of 32: two per superblock (AVX-512: lanes 0-7 one, 8-15 the other) */
        for (int64_t sb = 0; sb < nsb; sb++) {
            const uint8_t *w = q + sb * (TF_Q4_SB / 2);
            const int8_t *x = xq + sb * TF_Q4_SB;
            prefetch_rows(a, q, d, m, sb, qs, ldg, NR);
            for (int p = 0; p < TF_Q4_SB / TF_VB; p++) {
                const int64_t g = 2 * sb + p; /* the first group of the vector */
                for (int i = 0; i < NR; i++) {
                    const tf_vi u = tf_vload_u4(w + i * qs, p);
                    const tf_vf dv = tf_vset_blocks(d + i * ldg + g);
                    for (int r = 0; r < R; r++) {
                        const tf_vi dot =
                            tf_vdot_u8s8(tf_vizero(), u, tf_vload_i8(x + r * Kp + p * TF_VB));
                        const tf_vf sc = tf_vmul(dv, tf_vset_blocks(sx + r * ldg + g));
                        acc[r][i] = tf_vfma(tf_vcvt_f(dot), sc, acc[r][i]);
                    }
                }
            }
        }
    }
    for (int64_t g0 = 0; g0 < ldg; g0 += TF_VW) { /* the offsets: x unquantized */
        const int64_t c = ldg - g0 < TF_VW ? ldg - g0 : TF_VW;
        for (int r = 0; r < R; r++) {
            const tf_vf xs = ld(xsum + r * ldg + g0, c);
            for (int i = 0; i < NR; i++) {
                acc[r][i] = tf_vfma(ld(m + i * ldg + g0, c), xs, acc[r][i]);
            }
        }
    }
    for (int r = 0; r < R; r++) {
        for (int i = 0; i < NR; i++) {
            out[r * TILE + i] = tf_vreduce_add(acc[r][i]);
        }
    }
}

/* acc (M, TILE): outputs n0 .. n0 + nt before bias, activation and post-op, for M <=
 * TF_Q4_MAX_M rows (x given as tf_q4_quantize_x's output). */
void
TF_ISA_FN(tf_q4_tile)(const tf_q4_args *a, const int8_t *xq, const float *sx, const float *xsum,
                      int64_t M, int64_t n0, int64_t nt, float *acc)
{
    const int64_t Kp = tf_q4_kpad(a->K), ldg = tf_q4_groups(Kp, a->group);
    for (int64_t m0 = 0; m0 < M; m0 += TF_Q4_ROWS) {
        const int64_t R = M - m0 < TF_Q4_ROWS ? M - m0 : TF_Q4_ROWS;
        const int8_t *x = xq + m0 * Kp;
        const float *s = sx + m0 * ldg, *xs = xsum + m0 * ldg;
        float *out = acc + m0 * TILE;
        int64_t j = 0;
        switch (R) {
            case 1:
                for (; j + Q4_NR(1) <= nt; j += Q4_NR(1)) {
                    dot_block(a, n0 + j, x, s, xs, Kp, ldg, 1, Q4_NR(1), out + j);
                }
                for (; j < nt; j++) {
                    dot_block(a, n0 + j, x, s, xs, Kp, ldg, 1, 1, out + j);
                }
                break;
            case 2:
                for (; j + Q4_NR(2) <= nt; j += Q4_NR(2)) {
                    dot_block(a, n0 + j, x, s, xs, Kp, ldg, 2, Q4_NR(2), out + j);
                }
                for (; j < nt; j++) {
                    dot_block(a, n0 + j, x, s, xs, Kp, ldg, 2, 1, out + j);
                }
                break;
            case 3:
                for (; j < nt; j++) {
                    dot_block(a, n0 + j, x, s, xs, Kp, ldg, 3, 1, out + j);
                }
                break;
            default:
                for (; j < nt; j++) {
                    dot_block(a, n0 + j, x, s, xs, Kp, ldg, 4, 1, out + j);
                }
                break;
        }
    }
}

/* x (M, K) -> xq, sx, xsum as tf_q4_quantize_x (kernels/q4.h), vectorized: the same bits as
 * the reference for xq and sx (max is exact in any order; one multiply by 1 / s, round to
 * nearest even); xsum is summed in another order (float32 rounding). */
void
TF_ISA_FN(tf_q4_quantize_x)(const float *x, int64_t M, int64_t K, int64_t group, int8_t *xq,
                            float *sx, float *xsum)
{
    const int64_t Kp = tf_q4_kpad(K), ldg = tf_q4_groups(Kp, group);
    float tmp[TF_VW];
    for (int64_t r = 0; r < M; r++) {
        const float *xr = x + r * K;
        int8_t *q = xq + r * Kp;
        for (int64_t g = 0; g < ldg; g++) {
            const int64_t k0 = g * group, kend = k0 + group < Kp ? k0 + group : Kp;
            const int64_t k1 = K < kend ? K : kend; /* past K: zeros */
            tf_vf vmax = tf_vzero(), vsum = tf_vzero();
            for (int64_t k = k0; k < k1; k += TF_VW) {
                const tf_vf v = ld(xr + k, k1 - k);
                vmax = tf_vmax(vmax, tf_vmax(v, tf_vsub(tf_vzero(), v)));
                vsum = tf_vadd(vsum, v);
            }
            const float amax = k1 > k0 ? tf_vreduce_max(vmax) : 0.0f;
            const float s =
                amax > 0.0f ? (amax / 127.0f > FLT_MIN ? amax / 127.0f : FLT_MIN) : 1.0f;
            const tf_vf inv = tf_vset1(1.0f / s), hi = tf_vset1(127.0f), lo = tf_vset1(-127.0f);
            for (int64_t k = k0; k < kend; k += TF_VW) {
                const int64_t c = k1 - k < 0 ? 0 : k1 - k;
                tf_vf v = tf_vround(tf_vmul(c > 0 ? ld(xr + k, c) : tf_vzero(), inv));
                v = tf_vmin(tf_vmax(v, lo), hi);
                tf_vstore(tmp, v);
                for (int i = 0; i < TF_VW; i++) { /* kend - k is a multiple of 32 */
                    q[k + i] = (int8_t)tmp[i];
                }
            }
            sx[r * ldg + g] = s;
            xsum[r * ldg + g] = tf_vreduce_add(vsum);
        }
    }
}

void
TF_ISA_FN(tf_q4_dequantize_row)(const tf_q4_args *a, int64_t n, float *out)
{
    dequantize_row_body(a, n, out);
}

#else /* the reference path and the dispatchers, compiled once */

TF_ISA_DECLARE(void, tf_q4_tile,
               (const tf_q4_args *a, const int8_t *xq, const float *sx, const float *xsum,
                int64_t M, int64_t n0, int64_t nt, float *acc))
TF_ISA_DECLARE(void, tf_q4_dequantize_row, (const tf_q4_args *a, int64_t n, float *out))
TF_ISA_DECLARE(void, tf_q4_quantize_x,
               (const float *x, int64_t M, int64_t K, int64_t group, int8_t *xq, float *sx,
                float *xsum))

#define Q4_ISAS (TF_ISA_BIT(TF_ISA_AVX512) | TF_ISA_BIT(TF_ISA_AVX2))

/* The level the int4 kernels run at now (show_config). */
tf_isa_level
tf_int4_isa(void)
{
    return tf_isa_for(Q4_ISAS);
}

static void
dequantize_row_ref(const tf_q4_args *a, int64_t n, float *out)
{
    dequantize_row_body(a, n, out);
}

/* value k of row n (the nibble layout of q4.h) */
static inline int
nibble(const uint8_t *qr, int64_t k)
{
    const uint8_t b = qr[k / TF_Q4_SB * (TF_Q4_SB / 2) + k % (TF_Q4_SB / 2)];
    return (k % TF_Q4_SB) < TF_Q4_SB / 2 ? (b & 0x0F) : (b >> 4);
}

/* The reference tile: the same integer group dots, summed in float group by group, then
 * the offsets term. */
static void
tile_ref(const tf_q4_args *a, const int8_t *xq, const float *sx, const float *xsum, int64_t M,
         int64_t n0, int64_t nt, float *acc)
{
    const int64_t Kp = tf_q4_kpad(a->K), ldg = tf_q4_groups(Kp, a->group);
    for (int64_t r = 0; r < M; r++) {
        for (int64_t j = 0; j < nt; j++) {
            const int64_t n = n0 + j;
            const uint8_t *qr = a->q + n * (Kp / 2);
            float sum = 0.0f;
            for (int64_t g = 0; g < ldg; g++) {
                int32_t dot = 0;
                for (int64_t k = g * a->group; k < (g + 1) * a->group && k < Kp; k++) {
                    dot += nibble(qr, k) * (int32_t)xq[r * Kp + k];
                }
                sum += (float)dot * (a->d[n * ldg + g] * sx[r * ldg + g]);
            }
            float off = 0.0f; /* the offsets see x unquantized */
            for (int64_t g = 0; g < ldg; g++) {
                off += a->m[n * ldg + g] * xsum[r * ldg + g];
            }
            acc[r * TILE + j] = sum + off;
        }
    }
}

/* The reference quantization of x (q4.h). */
static void
quantize_x_ref(const float *x, int64_t M, int64_t K, int64_t group, int8_t *xq, float *sx,
               float *xsum)
{
    const int64_t Kp = tf_q4_kpad(K), ldg = tf_q4_groups(Kp, group);
    for (int64_t r = 0; r < M; r++) {
        const float *xr = x + r * K;
        int8_t *q = xq + r * Kp;
        for (int64_t g = 0; g < ldg; g++) {
            const int64_t k0 = g * group, kend = k0 + group < Kp ? k0 + group : Kp;
            const int64_t k1 = K < kend ? K : kend; /* past K: zeros */
            float amax = 0.0f, sum = 0.0f;
            for (int64_t k = k0; k < k1; k++) {
                amax = fmaxf(amax, fabsf(xr[k]));
                sum += xr[k];
            }
            /* as kernels/quant.c: s = max / 127 (1 for a zero group), x * (1 / s), round to
             * nearest even, clamp */
            const float s = amax > 0.0f ? fmaxf(amax / 127.0f, FLT_MIN) : 1.0f, inv = 1.0f / s;
            for (int64_t k = k0; k < kend; k++) {
                float v = k < k1 ? nearbyintf(xr[k] * inv) : 0.0f;
                q[k] = (int8_t)(v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v);
            }
            sx[r * ldg + g] = s;
            xsum[r * ldg + g] = sum;
        }
    }
}

void
tf_q4_quantize_x(const float *x, int64_t M, int64_t K, int64_t group, int8_t *xq, float *sx,
                 float *xsum)
{
    switch (tf_int4_isa()) {
        case TF_ISA_AVX512: tf_q4_quantize_x_avx512(x, M, K, group, xq, sx, xsum); break;
        case TF_ISA_AVX2: tf_q4_quantize_x_avx2(x, M, K, group, xq, sx, xsum); break;
        default: quantize_x_ref(x, M, K, group, xq, sx, xsum); break;
    }
}

void
tf_q4_gemv(const tf_q4_args *a, const int8_t *xq, const float *sx, const float *xsum, int64_t M,
           float *y, tf_post post, const float *other)
{
    const int64_t N = a->N, K = a->K, Kp = tf_q4_kpad(K);
    const int64_t ldg = tf_q4_groups(Kp, a->group), tiles = (N + TILE - 1) / TILE;
    const tf_isa_level isa = tf_int4_isa();
#pragma omp parallel for schedule(static) if (N * K >= PARALLEL_MIN_WEIGHTS && tiles > 1)
    for (int64_t t = 0; t < tiles; t++) {
        float acc[TF_Q4_MAX_M * TILE];
        const int64_t n0 = t * TILE, nt = N - n0 < TILE ? N - n0 : TILE;
        for (int64_t m0 = 0; m0 < M; m0 += TF_Q4_MAX_M) {
            const int64_t R = M - m0 < TF_Q4_MAX_M ? M - m0 : TF_Q4_MAX_M;
            const int8_t *x = xq + m0 * Kp;
            const float *s = sx + m0 * ldg, *xs = xsum + m0 * ldg;
            switch (isa) {
                case TF_ISA_AVX512: tf_q4_tile_avx512(a, x, s, xs, R, n0, nt, acc); break;
                case TF_ISA_AVX2: tf_q4_tile_avx2(a, x, s, xs, R, n0, nt, acc); break;
                default: tile_ref(a, x, s, xs, R, n0, nt, acc); break;
            }
            for (int64_t r = 0; r < R; r++) {
                float *ar = acc + r * TILE;
                if (a->bias != NULL) {
                    for (int64_t j = 0; j < nt; j++) {
                        ar[j] += a->bias[n0 + j];
                    }
                }
                if (a->act != TF_ACT_NONE) {
                    tf_activation_serial(ar, ar, nt, a->act);
                }
                float *yr = y + (m0 + r) * N + n0;
                const float *o = other != NULL ? other + (m0 + r) * N + n0 : NULL;
                for (int64_t j = 0; j < nt; j++) {
                    switch (post) {
                        case TF_POST_ADD: yr[j] = ar[j] + o[j]; break;
                        case TF_POST_MUL: yr[j] = ar[j] * o[j]; break;
                        case TF_POST_ACCUM: yr[j] += ar[j]; break;
                        default: yr[j] = ar[j]; break;
                    }
                }
            }
        }
    }
}

void
tf_q4_quantize_rtn(const float *w, int64_t N, int64_t K, int transposed, int64_t group, uint8_t *q,
                   float *d, float *m)
{
    const int64_t Kp = tf_q4_kpad(K), ldg = tf_q4_groups(Kp, group);
#pragma omp parallel for schedule(static) if (N * K >= PARALLEL_MIN_WEIGHTS)
    for (int64_t n = 0; n < N; n++) {
        uint8_t *qr = q + n * (Kp / 2);
        memset(qr, 0, (size_t)(Kp / 2));
        for (int64_t g = 0; g < ldg; g++) {
            const int64_t k0 = g * group, k1 = K < k0 + group ? K : k0 + group;
            float lo = INFINITY, hi = -INFINITY;
            for (int64_t k = k0; k < k1; k++) {
                const float v = transposed ? w[k * N + n] : w[n * K + k];
                lo = fminf(lo, v);
                hi = fmaxf(hi, v);
            }
            if (k0 >= K) { /* a group wholly in the padding */
                d[n * ldg + g] = m[n * ldg + g] = 0.0f;
                continue;
            }
            const float step = (hi - lo) / 15.0f;
            d[n * ldg + g] = step;
            m[n * ldg + g] = lo;
            for (int64_t k = k0; k < k1 && step > 0.0f; k++) {
                const float v = transposed ? w[k * N + n] : w[n * K + k];
                float r = nearbyintf((v - lo) / step);
                const int iq = (int)(r < 0.0f ? 0.0f : r > 15.0f ? 15.0f : r);
                qr[k / TF_Q4_SB * (TF_Q4_SB / 2) + k % (TF_Q4_SB / 2)] |=
                    (uint8_t)((k % TF_Q4_SB) < TF_Q4_SB / 2 ? iq : iq << 4);
            }
        }
    }
}

void
tf_q4_pack(const uint8_t *values, int64_t N, int64_t K, uint8_t *q)
{
    const int64_t Kp = tf_q4_kpad(K);
#pragma omp parallel for schedule(static) if (N * K >= PARALLEL_MIN_WEIGHTS)
    for (int64_t n = 0; n < N; n++) {
        uint8_t *qr = q + n * (Kp / 2);
        memset(qr, 0, (size_t)(Kp / 2));
        for (int64_t k = 0; k < K; k++) {
            const int v = values[n * K + k] & 0x0F;
            qr[k / TF_Q4_SB * (TF_Q4_SB / 2) + k % (TF_Q4_SB / 2)] |=
                (uint8_t)((k % TF_Q4_SB) < TF_Q4_SB / 2 ? v : v << 4);
        }
    }
}

/* Row n of W dequantized into out (K floats), by whichever level runs. */
static void
dequantize_row(const tf_q4_args *a, tf_isa_level isa, int64_t n, float *out)
{
    switch (isa) {
        case TF_ISA_AVX512: tf_q4_dequantize_row_avx512(a, n, out); break;
        case TF_ISA_AVX2: tf_q4_dequantize_row_avx2(a, n, out); break;
        default: dequantize_row_ref(a, n, out); break;
    }
}

void
tf_q4_dequantize(const tf_q4_args *a, int64_t n0, int64_t nc, float *dst, int64_t ldd)
{
    const tf_isa_level isa = tf_int4_isa();
#pragma omp parallel for schedule(static) if (nc * a->K >= PARALLEL_MIN_WEIGHTS)
    for (int64_t j = 0; j < nc; j++) {
        dequantize_row(a, isa, n0 + j, dst + j * ldd);
    }
}

#endif /* TF_ISA_PASS */
