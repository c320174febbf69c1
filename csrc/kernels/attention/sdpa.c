/* sdpa.c — fused scaled-dot-product attention with online softmax.
 *
 * Three paths, same semantics (see sdpa.h):
 *   tile   (vector, L > DECODE_MAX_L): one work item is (b, h, block of BQ queries). The
 *          queries of the block are packed transposed once, Qᵀ (D, BQ), so every kernel
 *          below vectorises over queries: a key element is broadcast against TF_VW queries.
 *          K and V are read in place. Key blocks of BK run an online softmax per query
 *          lane, and Oᵀ (Dv, BQ) accumulates in L1. Only the key range some query of the
 *          block can see is visited, so causal and windowed attention skip masked blocks.
 *          Memory: O(BQ (D + Dv + BK)) per thread, never L x S.
 *   decode (vector, L <= DECODE_MAX_L): dot products along D per (query, key); long key
 *          ranges are split across threads and the partial softmax states merged, so a
 *          single query over a long cache keeps every core busy.
 *   reference (plain C, any CPU; forced by tests): one query row at a time.
 * The vector paths are written once against kernels/simd.h and tile.h and compiled per ISA
 * (AVX-512, AVX2); tf_attention picks one with tf_attention_isa().
 * The attention weights, when asked for, are written by a second pass from the final
 * log-sum-exp of each row.
 */
#include "kernels/attention/sdpa.h"

#include "kernels/attention/tile.h"
#include "kernels/simd.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define BQ               TF_TILE_BQ
#define BK               TF_TILE_BK
#define DECODE_MAX_L     4   /* at most this many query rows use the decode path */
#define DECODE_MIN_SPLIT 256 /* keys per split of the decode path, at least */

/* ------------------------------------------------------------------ shared helpers */

/* The interval [lo, hi) of keys query i may see before masks: causal, window, kv_len. */
/* Queries (and keys) of batch b: L, or the packed sequence's own length. */
static inline int64_t
seq_len(const tf_attn_args *a, int64_t b)
{
    return a->seq_start ? a->seq_start[b + 1] - a->seq_start[b] : a->L;
}

static inline void
row_range(const tf_attn_args *a, int64_t b, int64_t i, int64_t *lo, int64_t *hi)
{
    int64_t l = 0, h = a->seq_start ? seq_len(a, b) : a->S;
    if (a->kv_len != NULL && a->kv_len[b] < h) {
        h = a->kv_len[b] < 0 ? 0 : a->kv_len[b];
    }
    const int64_t diag = i + a->causal_offset; /* query i's own key (bottom-right with a cache) */
    if (a->causal && diag + 1 < h) {
        h = diag + 1;
    }
    if (a->window_right >= 0 && diag + a->window_right + 1 < h) {
        h = diag + a->window_right + 1;
    }
    if (a->window_left >= 0 && diag - a->window_left > l) {
        l = diag - a->window_left;
    }
    *lo = l;
    *hi = h > l ? h : l;
}

static inline int
has_extra(const tf_attn_args *a)
{
    return a->bool_mask != NULL || a->mask != NULL || a->bias != NULL || a->rel != NULL ||
           a->dis_idx != NULL;
}

/* Row pointers; a packed batch b starts at row seq_start[b] instead of b * batch stride. */
static inline const float *
q_row(const tf_attn_args *a, int64_t b, int64_t h, int64_t i)
{
    int64_t base = a->seq_start ? a->seq_start[b] * a->q_sl : b * a->q_sb;
    return a->q + base + h * a->q_sh + i * a->q_sl;
}
static inline const float *
k_row(const tf_attn_args *a, int64_t b, int64_t kh, int64_t j)
{
    int64_t base = a->seq_start ? a->seq_start[b] * a->k_ss : b * a->k_sb;
    return a->k + base + kh * a->k_sh + j * a->k_ss;
}
static inline const float *
v_row(const tf_attn_args *a, int64_t b, int64_t kh, int64_t j)
{
    int64_t base = a->seq_start ? a->seq_start[b] * a->v_ss : b * a->v_sb;
    return a->v + base + kh * a->v_sh + j * a->v_ss;
}
static inline float *
o_row(const tf_attn_args *a, int64_t b, int64_t h, int64_t i)
{
    int64_t base = a->seq_start ? a->seq_start[b] * a->o_sl : b * a->o_sb;
    return a->out + base + h * a->o_sh + i * a->o_sl;
}

/* DeBERTa's disentangled bias of (b, h, i, j) (sdpa.h). */
static inline float
disentangled_at(const tf_attn_args *a, int64_t b, int64_t h, int64_t i, int64_t j)
{
    const int64_t p = a->dis_idx[(i - j) + (a->S - 1)];
    float add = 0.0f;
    if (a->dis_P > 0) { /* from the projected positions: two dot products */
        const int64_t D = a->D;
        double dot = 0.0;
        if (a->pos_key != NULL) {
            const float *q = q_row(a, b, h, i), *kr = a->pos_key + h * a->pk_sh + p * D;
            for (int64_t d = 0; d < D; d++) {
                dot += (double)q[d] * (double)kr[d];
            }
        }
        if (a->pos_query != NULL) {
            const float *k = k_row(a, b, h / (a->H / a->KVH), j),
                        *qr = a->pos_query + h * a->pq_sh + p * D;
            for (int64_t d = 0; d < D; d++) {
                dot += (double)k[d] * (double)qr[d];
            }
        }
        return (float)dot * a->scale;
    }
    if (a->c2p != NULL) {
        add += a->c2p[b * a->c2p_sb + h * a->c2p_sh + i * a->c2p_sl + p];
    }
    if (a->p2c != NULL) {
        add += a->p2c[b * a->p2c_sb + h * a->p2c_sh + j * a->p2c_ss + p];
    }
    return add;
}

/* What masks and biases add to the scaled score of (b, h, i, j): -inf hides the key. */
static inline float
extra_at(const tf_attn_args *a, int64_t b, int64_t h, int64_t i, int64_t j)
{
    float add = 0.0f;
    if (a->bool_mask != NULL &&
        !a->bool_mask[b * a->bm_sb + h * a->bm_sh + i * a->bm_sl + j * a->bm_ss]) {
        return -INFINITY;
    }
    if (a->mask != NULL) {
        add += a->mask[b * a->m_sb + h * a->m_sh + i * a->m_sl + j * a->m_ss];
    }
    if (a->bias != NULL) {
        add += a->bias[b * a->b_sb + h * a->b_sh + i * a->b_sl + j * a->b_ss];
    }
    if (a->rel != NULL) {
        add += a->rel[h * a->rel_sh + (j - i) + (a->L - 1)];
    }
    if (a->dis_idx != NULL) {
        add += disentangled_at(a, b, h, i, j);
    }
    return add;
}

/* Extras that do not depend on the query (padding masks (B, 1, 1, S), key biases) can be
 * applied as one broadcast value per key. */
static inline int
extra_per_key_only(const tf_attn_args *a)
{
    return (a->bool_mask == NULL || a->bm_sl == 0) && (a->mask == NULL || a->m_sl == 0) &&
           (a->bias == NULL || a->b_sl == 0) && a->rel == NULL && a->dis_idx == NULL;
}

#ifdef TF_ISA_PASS
/* ------------------------------------------------------------------ tile path (per ISA) */

#define QV TF_TILE_QV /* query vectors per tile */

typedef struct {
    float *qt; /* (D, BQ)  packed queries of the block, zero in unused lanes */
    float *st; /* (BK, BQ) scores, then probabilities, key-major */
    float *ot; /* (Dv, BQ) output accumulator */
} tile_scratch;

/* add_extras for the disentangled bias alone (plus a per-key float mask, e.g. padding):
 * per key j and TF_VW queries, one forward load of dis_idx (lane r is query i0 + VW u + r,
 * index i - j + S - 1) and two gathers, from the c2p rows of the queries and the p2c row of
 * the key. Lanes of queries past the sequence read nothing and add 0. */
static void
add_disentangled(const tf_attn_args *a, int64_t b, int64_t h, int64_t i0, int64_t j0, int64_t nk,
                 float *st, tf_vf *tmax)
{
    const int64_t len = seq_len(a, b);
    tf_vmask valid[QV];
    tf_vi rowoff[QV]; /* lane r of vector u: (VW u + r) * c2p_sl */
    for (int u = 0; u < QV; u++) {
        tmax[u] = tf_vset1(-INFINITY);
        int64_t nv = len - i0 - TF_VW * u;
        nv = nv < 0 ? 0 : nv > TF_VW ? TF_VW : nv;
        valid[u] = tf_vin_range(tf_viota(), tf_vizero(), tf_viset1((int32_t)nv));
        int32_t off[TF_VW];
        for (int r = 0; r < TF_VW; r++) {
            off[r] = (int32_t)((TF_VW * u + r) * a->c2p_sl);
        }
        rowoff[u] = tf_viload(off);
    }
    const float *c2p =
        a->c2p != NULL ? a->c2p + b * a->c2p_sb + h * a->c2p_sh + i0 * a->c2p_sl : NULL;
    const float *mrow = a->mask != NULL ? a->mask + b * a->m_sb + h * a->m_sh : NULL;
    for (int64_t c = 0; c < nk; c++) {
        const int64_t j = j0 + c;
        float *row = st + c * BQ;
        const float *p2c =
            a->p2c != NULL ? a->p2c + b * a->p2c_sb + h * a->p2c_sh + j * a->p2c_ss : NULL;
        const tf_vf mj = tf_vset1(mrow != NULL ? mrow[j * a->m_ss] : 0.0f);
        for (int u = 0; u < QV; u++) {
            /* dis_idx[i0 + VW u + r - j + S - 1] for lanes r */
            const tf_vi p = tf_viload_mask(a->dis_idx + (i0 + TF_VW * u - j + a->S - 1), valid[u]);
            tf_vf add = mj;
            if (c2p != NULL) {
                add = tf_vadd(add, tf_vgather_mask(c2p, tf_viadd(rowoff[u], p), valid[u]));
            }
            if (p2c != NULL) {
                add = tf_vadd(add, tf_vgather_mask(p2c, p, valid[u]));
            }
            const tf_vf s = tf_vadd(tf_vload(row + TF_VW * u), add);
            tf_vstore(row + TF_VW * u, s);
            tmax[u] = tf_vmax(tmax[u], s);
        }
    }
}

/* The disentangled terms from projected positions (sdpa.h, dis_P > 0), per thread:
 *   c2p (P, BQ)   c2p[p - pmin][r] = scale q_{i0+r} . pos_key[h, p] for the positions p the
 *                 query block reaches, recomputed per block from Qᵀ (as scores are);
 *   p2c (S, Pp)   p2c[j][p] = scale k_j . pos_query[h, p], computed once per (b, h) from
 *   qrt (D, Pp)   pos_query[h]ᵀ * scale (Pp = P rounded up to TF_VW, zero padded);
 *   idxq          dis_idx * BQ (shared): the c2p row offsets the gathers read. */
typedef struct {
    float *c2p, *p2c, *qrt;
    int64_t pmin, Pp;
    const int32_t *idxq;
} pos_scratch;

/* out[m * ldo + n] = sum_d a[m * lda + d] bt[d * ldb + n] for m < M, n < N (N a multiple of
 * TF_VW; every row of bt readable for N floats): broadcast-FMA tiles of 6 rows x 2 vectors
 * (12 accumulators: fits AVX2's 16 registers with the two loads and the broadcast). */
static void
gemm_abt(const float *a, int64_t lda, int64_t M, const float *bt, int64_t ldb, int64_t N, int64_t D,
         float *out, int64_t ldo)
{
    enum { R = 6 };
    for (int64_t n0 = 0; n0 < N; n0 += 2 * TF_VW) {
        const int two = n0 + TF_VW < N;
        for (int64_t m0 = 0; m0 < M; m0 += R) {
            const int64_t mm = M - m0 < R ? M - m0 : R;
            const float *ar[R];
            tf_vf acc0[R], acc1[R];
            for (int r = 0; r < R; r++) {
                ar[r] = a + (m0 + (r < mm ? r : 0)) * lda; /* tail rows repeat row 0, unstored */
                acc0[r] = tf_vzero();
                acc1[r] = tf_vzero();
            }
            const float *b = bt + n0;
            if (two) {
                for (int64_t d = 0; d < D; d++, b += ldb) {
                    const tf_vf b0 = tf_vload(b), b1 = tf_vload(b + TF_VW);
                    for (int r = 0; r < R; r++) {
                        const tf_vf x = tf_vset1(ar[r][d]);
                        acc0[r] = tf_vfma(x, b0, acc0[r]);
                        acc1[r] = tf_vfma(x, b1, acc1[r]);
                    }
                }
            }
            else {
                for (int64_t d = 0; d < D; d++, b += ldb) {
                    const tf_vf b0 = tf_vload(b);
                    for (int r = 0; r < R; r++) {
                        acc0[r] = tf_vfma(tf_vset1(ar[r][d]), b0, acc0[r]);
                    }
                }
            }
            for (int64_t r = 0; r < mm; r++) {
                tf_vstore(out + (m0 + r) * ldo + n0, acc0[r]);
                if (two) {
                    tf_vstore(out + (m0 + r) * ldo + n0 + TF_VW, acc1[r]);
                }
            }
        }
    }
}

/* p2c of head h in batch b into ps->p2c (S, Pp): qrt = scale pos_query[h]ᵀ, then one GEMM
 * over the key rows. */
static void
positions_p2c(const tf_attn_args *a, int64_t b, int64_t h, pos_scratch *ps)
{
    const int64_t D = a->D, P = a->dis_P, Pp = ps->Pp, kh = h / (a->H / a->KVH);
    const float *qr = a->pos_query + h * a->pq_sh;
    for (int64_t d = 0; d < D; d++) {
        float *row = ps->qrt + d * Pp;
        for (int64_t p = 0; p < P; p++) {
            row[p] = qr[p * D + d] * a->scale;
        }
        for (int64_t p = P; p < Pp; p++) {
            row[p] = 0.0f;
        }
    }
    gemm_abt(k_row(a, b, kh, 0), a->k_ss, a->S, ps->qrt, Pp, Pp, D, ps->p2c, Pp);
}

/* c2p rows of the query block (Qᵀ packed in qt) for the positions it reaches with keys
 * [jmin, jmax): sets ps->pmin. */
static void
positions_c2p(const tf_attn_args *a, int64_t h, int64_t i0, int64_t nq, int64_t jmin, int64_t jmax,
              const float *qt, pos_scratch *ps)
{
    const int32_t *idx = a->dis_idx + (a->S - 1);
    int32_t pmin = INT32_MAX, pmax = -1;
    for (int64_t d = i0 - (jmax - 1); d <= i0 + nq - 1 - jmin; d++) {
        pmin = idx[d] < pmin ? idx[d] : pmin;
        pmax = idx[d] > pmax ? idx[d] : pmax;
    }
    ps->pmin = pmin;
    gemm_abt(a->pos_key + h * a->pk_sh + (int64_t)pmin * a->D, a->D, pmax - pmin + 1, qt, BQ, BQ,
             a->D, ps->c2p, BQ);
}

/* add_disentangled for the in-kernel terms: lane r of vector u (query i = i0 + VW u + r) and
 * key j read c2p[idx - pmin][VW u + r] (its own column of the block) and p2c[j][idx], idx =
 * dis_idx[i - j + S - 1]; both tables are L2-resident per thread. */
static void
add_positions(const tf_attn_args *a, int64_t b, int64_t h, int64_t i0, int64_t j0, int64_t nk,
              float *st, tf_vf *tmax, const pos_scratch *ps)
{
    const int64_t len = seq_len(a, b);
    tf_vmask valid[QV];
    tf_vi lane[QV]; /* VW u + r - pmin BQ: added to idx BQ gives the c2p offset */
    for (int u = 0; u < QV; u++) {
        tmax[u] = tf_vset1(-INFINITY);
        int64_t nv = len - i0 - TF_VW * u;
        nv = nv < 0 ? 0 : nv > TF_VW ? TF_VW : nv;
        valid[u] = tf_vin_range(tf_viota(), tf_vizero(), tf_viset1((int32_t)nv));
        lane[u] = tf_viadd(tf_viota(), tf_viset1((int32_t)(TF_VW * u - ps->pmin * BQ)));
    }
    const float *mrow = a->mask != NULL ? a->mask + b * a->m_sb + h * a->m_sh : NULL;
    for (int64_t c = 0; c < nk; c++) {
        const int64_t j = j0 + c;
        float *row = st + c * BQ;
        const float *p2c = a->pos_query != NULL ? ps->p2c + j * ps->Pp : NULL;
        const tf_vf mj = tf_vset1(mrow != NULL ? mrow[j * a->m_ss] : 0.0f);
        for (int u = 0; u < QV; u++) {
            const int64_t at = i0 + TF_VW * u - j + a->S - 1;
            tf_vf add = mj;
            if (a->pos_key != NULL) {
                const tf_vi off = tf_viadd(tf_viload_mask(ps->idxq + at, valid[u]), lane[u]);
                add = tf_vadd(add, tf_vgather_mask(ps->c2p, off, valid[u]));
            }
            if (p2c != NULL) {
                add = tf_vadd(
                    add, tf_vgather_mask(p2c, tf_viload_mask(a->dis_idx + at, valid[u]), valid[u]));
            }
            const tf_vf s = tf_vadd(tf_vload(row + TF_VW * u), add);
            tf_vstore(row + TF_VW * u, s);
            tmax[u] = tf_vmax(tmax[u], s);
        }
    }
}

/* Adds masks and biases to the scores st (nk, BQ) of keys j0.. and recomputes the
 * block max; hidden keys stay -inf. The offset bias (rel) is one reversed vector load per
 * key and TF_VW queries: lane r of query vector u reads rel[(j - i0 - VW u - r) + L - 1]. */
static void
add_extras(const tf_attn_args *a, int64_t b, int64_t h, int64_t i0, int64_t j0, int64_t nk,
           float *st, tf_vf *tmax)
{
    const int rel_only =
        a->rel != NULL && a->bool_mask == NULL && a->mask == NULL && a->bias == NULL;
    const int per_key = extra_per_key_only(a);
    const int64_t len = seq_len(a, b);
    tf_vmask valid[QV]; /* lanes (as loaded, before reversal) whose query exists */
    for (int u = 0; u < QV; u++) {
        tmax[u] = tf_vset1(-INFINITY);
        int64_t nv = len - i0 - TF_VW * u;
        nv = nv < 0 ? 0 : nv > TF_VW ? TF_VW : nv;
        valid[u] = tf_vin_range(tf_viota(), tf_viset1((int32_t)(TF_VW - nv)), tf_viset1(TF_VW));
    }
    const float *rel_h = a->rel != NULL ? a->rel + h * a->rel_sh + (a->L - 1) : NULL;
    for (int64_t c = 0; c < nk; c++) {
        const int64_t j = j0 + c;
        float *row = st + c * BQ;
        for (int u = 0; u < QV; u++) {
            tf_vf add;
            if (rel_only) {
                /* rel_h[j - i0 - VW u - (VW - 1) .. j - i0 - VW u], lane VW - 1 - r <-> query
                 * i0 + VW u + r */
                const float *p = rel_h + (j - i0 - TF_VW * u - (TF_VW - 1));
                add = tf_vreverse(tf_vload_mask(p, valid[u]));
            }
            else if (per_key) {
                add = tf_vset1(extra_at(a, b, h, i0, j));
            }
            else {
                float buf[TF_VW];
                for (int r = 0; r < TF_VW; r++) {
                    int64_t i = i0 + TF_VW * u + r;
                    buf[r] = i < len ? extra_at(a, b, h, i, j) : 0.0f;
                }
                add = tf_vload(buf);
            }
            const tf_vf s = tf_vadd(tf_vload(row + TF_VW * u), add);
            tf_vstore(row + TF_VW * u, s);
            tmax[u] = tf_vmax(tmax[u], s);
        }
    }
}

/* One work item: queries i0 .. i0 + nq - 1 of head h in batch b. */
/* Soft-capping of a score tile st (nk, BQ) and its lane maxima tmax (QV vectors):
 * s = cap tanh(s / cap), hidden keys (-inf) stay hidden. tanh is increasing, so the
 * capped maxima are the maxima of the capped scores. */
static void
softcap_tile(float cap, int64_t nk, float *st, tf_vf *tmax)
{
    const tf_vf vc = tf_vset1(cap), vinv = tf_vset1(1.0f / cap), ninf = tf_vset1(-INFINITY);
    for (int64_t c = 0; c < nk; c++) {
        for (int u = 0; u < QV; u++) {
            float *p = st + c * BQ + u * TF_VW;
            const tf_vf v = tf_vload(p);
            const tf_vf capped = tf_vmul(vc, tf_vtanh(tf_vmul(v, vinv)));
            tf_vstore(p, tf_vblend(tf_veq(v, ninf), capped, v));
        }
    }
    for (int u = 0; u < QV; u++) {
        const tf_vf capped = tf_vmul(vc, tf_vtanh(tf_vmul(tmax[u], vinv)));
        tmax[u] = tf_vblend(tf_veq(tmax[u], ninf), capped, tmax[u]);
    }
}

static void
attend_tile(const tf_attn_args *a, int64_t b, int64_t h, int64_t i0, int64_t nq, tile_scratch *ts,
            pos_scratch *ps)
{
    const int64_t D = a->D, Dv = a->Dv, kh = h / (a->H / a->KVH);
    int32_t lo[BQ], hi[BQ];
    int64_t jmin = a->S, jmax = 0, lo_max = 0, hi_min = a->S;
    for (int64_t r = 0; r < BQ; r++) {
        int64_t l = 0, u = a->S; /* unused lanes see everything: garbage, never stored */
        if (r < nq) {
            row_range(a, b, i0 + r, &l, &u);
            if (u > l) {
                jmin = l < jmin ? l : jmin;
                jmax = u > jmax ? u : jmax;
            }
        }
        lo[r] = (int32_t)l;
        hi[r] = (int32_t)u;
        lo_max = l > lo_max ? l : lo_max;
        hi_min = u < hi_min ? u : hi_min;
    }
    /* Qᵀ with the softmax scale folded in: qt[d][r] = scale * q[i0 + r][d] */
    const float *qr[BQ];
    for (int64_t r = 0; r < nq; r++) {
        qr[r] = q_row(a, b, h, i0 + r);
    }
    tf_tile_pack_qt(qr, 0, nq, D, a->scale, ts->qt);
    memset(ts->ot, 0, (size_t)(Dv * BQ) * sizeof(float));
    tf_vf m[QV], l[QV];
    tf_vi vlo[QV], vhi[QV];
    for (int u = 0; u < QV; u++) {
        m[u] = tf_vset1(-INFINITY);
        l[u] = tf_vzero();
        vlo[u] = tf_viload(lo + TF_VW * u);
        vhi[u] = tf_viload(hi + TF_VW * u);
    }
    const int extra = has_extra(a);
    /* the disentangled bias alone, or with a float mask that depends on the key only */
    const int dis_fast = a->dis_idx != NULL && a->bool_mask == NULL && a->bias == NULL &&
                         a->rel == NULL && (a->mask == NULL || a->m_sl == 0);
    if (ps != NULL && a->pos_key != NULL && jmax > jmin) {
        positions_c2p(a, h, i0, nq, jmin, jmax, ts->qt, ps);
    }
    for (int64_t j0 = jmin; j0 < jmax; j0 += BK) {
        const int64_t nk = jmax - j0 < BK ? jmax - j0 : BK;
        /* interior blocks (every lane sees every key) skip the visibility test */
        const int edge = j0 < lo_max || j0 + nk > hi_min;
        tf_vf tmax[QV];
        for (int u = 0; u < QV; u++) {
            tmax[u] = tf_vset1(-INFINITY);
        }
        const float *kr[BK], *vr[BK];
        tf_tile_rows(k_row(a, b, kh, 0), a->k_ss, j0, nk, kr);
        tf_tile_rows(v_row(a, b, kh, 0), a->v_ss, j0, nk, vr);
        tf_tile_qk(ts->qt, kr, D, nk, j0, edge, vlo, vhi, ts->st, tmax);
        if (a->softcap > 0.0f) {
            softcap_tile(a->softcap, nk, ts->st, tmax);
        }
        if (ps != NULL) {
            add_positions(a, b, h, i0, j0, nk, ts->st, tmax, ps);
        }
        else if (dis_fast) {
            add_disentangled(a, b, h, i0, j0, nk, ts->st, tmax);
        }
        else if (extra) {
            add_extras(a, b, h, i0, j0, nk, ts->st, tmax);
        }
        tf_tile_softmax(ts->st, nk, Dv, ts->ot, tmax, m, l);
        tf_tile_pv(ts->st, vr, nk, Dv, ts->ot);
    }
    /* out[i][dv] = ot[dv][i] / l[i]; queries that saw no key get zeros */
    float lsum[BQ], mx[BQ];
    for (int u = 0; u < QV; u++) {
        tf_vstore(lsum + TF_VW * u, l[u]);
        tf_vstore(mx + TF_VW * u, m[u]);
    }
    float inv[BQ], *orows[BQ];
    for (int64_t r = 0; r < nq; r++) {
        /* l = 0: no visible key -> zeros; a NaN l (NaN input) stays NaN */
        inv[r] = lsum[r] == 0.0f ? 0.0f : 1.0f / lsum[r];
        orows[r] = o_row(a, b, h, i0 + r);
        if (a->lse) {
            a->lse[(b * a->H + h) * a->L + i0 + r] =
                lsum[r] == 0.0f ? -INFINITY : mx[r] + logf(lsum[r]);
        }
    }
    tf_tile_unpack_ot(ts->ot, inv, orows, 0, nq, Dv);
}

/* The tile path with in-kernel disentangled terms: one work item is a run of query blocks of
 * one (b, h), which first computes that head's p2c (S, P) once. Runs are split so that
 * there are about two items per thread (one run per head when B H is large). */
static int
tiles_positions(const tf_attn_args *a)
{
    const int64_t qblocks = (a->L + BQ - 1) / BQ, heads = a->B * a->H;
    const int64_t Pp = (a->dis_P + TF_VW - 1) / TF_VW * TF_VW, n = a->L + a->S - 1;
    int64_t runs = (2 * (int64_t)omp_get_max_threads() + heads - 1) / heads;
    runs = runs > qblocks ? qblocks : runs;
    const int64_t per_run = (qblocks + runs - 1) / runs;
    int32_t *idxq = tf_malloc((size_t)n * sizeof(int32_t));
    if (idxq == NULL) {
        return -1;
    }
    for (int64_t t = 0; t < n; t++) {
        idxq[t] = a->dis_idx[t] * BQ;
    }
    int failed = 0;
#pragma omp parallel
    {
        tile_scratch ts;
        pos_scratch ps = {.pmin = 0, .Pp = Pp, .idxq = idxq};
        ts.qt = tf_malloc((size_t)(a->D * BQ) * sizeof(float));
        ts.st = tf_malloc((size_t)(BK * BQ) * sizeof(float));
        ts.ot = tf_malloc((size_t)(a->Dv * BQ) * sizeof(float));
        ps.c2p = a->pos_key != NULL ? tf_malloc((size_t)(a->dis_P * BQ) * sizeof(float)) : NULL;
        ps.p2c = a->pos_query != NULL ? tf_malloc((size_t)(a->S * Pp) * sizeof(float)) : NULL;
        ps.qrt = a->pos_query != NULL ? tf_malloc((size_t)(a->D * Pp) * sizeof(float)) : NULL;
        const int ok = ts.qt && ts.st && ts.ot && (a->pos_key == NULL || ps.c2p) &&
                       (a->pos_query == NULL || (ps.p2c && ps.qrt));
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < heads * runs; it++) {
            const int64_t bh = it / runs, b = bh / a->H, h = bh % a->H, len = seq_len(a, b);
            const int64_t q0 = (it % runs) * per_run;
            const int64_t q1 = q0 + per_run < qblocks ? q0 + per_run : qblocks;
            if (!ok || q0 * BQ >= len) {
                continue;
            }
            if (a->pos_query != NULL) {
                positions_p2c(a, b, h, &ps);
            }
            for (int64_t qb = q0; qb < q1 && qb * BQ < len; qb++) {
                const int64_t i0 = qb * BQ;
                attend_tile(a, b, h, i0, len - i0 < BQ ? len - i0 : BQ, &ts, &ps);
            }
        }
        tf_free(ts.qt);
        tf_free(ts.st);
        tf_free(ts.ot);
        tf_free(ps.c2p);
        tf_free(ps.p2c);
        tf_free(ps.qrt);
    }
    tf_free(idxq);
    return failed ? -1 : 0;
}

int
TF_ISA_FN(tf_attention_tiles)(const tf_attn_args *a)
{
    if (a->dis_P > 0 && a->bool_mask == NULL && a->bias == NULL && a->rel == NULL &&
        (a->mask == NULL || a->m_sl == 0) && a->seq_start == NULL) {
        return tiles_positions(a);
    }
    const int64_t qblocks = (a->L + BQ - 1) / BQ, items = a->B * a->H * qblocks;
    int failed = 0;
#pragma omp parallel
    {
        tile_scratch ts;
        ts.qt = tf_malloc((size_t)(a->D * BQ) * sizeof(float));
        ts.st = tf_malloc((size_t)(BK * BQ) * sizeof(float));
        ts.ot = tf_malloc((size_t)(a->Dv * BQ) * sizeof(float));
        const int ok = ts.qt && ts.st && ts.ot;
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
        /* dynamic: causal blocks near the end of the sequence have more keys */
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < items; it++) {
            if (!ok) {
                continue;
            }
            const int64_t qb = qblocks - 1 - it % qblocks; /* longest (causal) first */
            const int64_t bh = it / qblocks;
            const int64_t i0 = qb * BQ, len = seq_len(a, bh / a->H);
            if (i0 < len) {
                attend_tile(a, bh / a->H, bh % a->H, i0, len - i0 < BQ ? len - i0 : BQ, &ts, NULL);
            }
        }
        tf_free(ts.qt);
        tf_free(ts.st);
        tf_free(ts.ot);
    }
    return failed ? -1 : 0;
}

/* ------------------------------------------------------------------ decode path (per ISA) */

#define DECODE_DV      64 /* value dims kept in registers across the keys of a split */
#define DECODE_DV_VECS (DECODE_DV / TF_VW)

/* Partial softmax state of one query row over one key split. */
typedef struct {
    float m, l;
} part_stats;

/* q · k over D floats in two independent accumulators */
static inline float
dot_row(const float *q, const float *k, int64_t D)
{
    tf_vf s0 = tf_vzero(), s1 = tf_vzero();
    int64_t d = 0;
    for (; d + 2 * TF_VW <= D; d += 2 * TF_VW) {
        s0 = tf_vfma(tf_vload(q + d), tf_vload(k + d), s0);
        s1 = tf_vfma(tf_vload(q + d + TF_VW), tf_vload(k + d + TF_VW), s1);
    }
    for (; d < D; d += TF_VW) {
        s0 = tf_vfma(tf_vload_n(q + d, D - d), tf_vload_n(k + d, D - d), s0);
    }
    return tf_vreduce_add(tf_vadd(s0, s1));
}

/* acc[0 .. n) = sum_j p[j - j0] v_j[d0 ..], n <= DECODE_DV value dims, over keys [j0, j1) */
static inline void
decode_pv(const tf_attn_args *a, int64_t b, int64_t kh, int64_t j0, int64_t j1, const float *p,
          int64_t d0, int64_t n, float *acc)
{
    tf_vf o[DECODE_DV_VECS];
    for (int u = 0; u < DECODE_DV_VECS; u++) {
        o[u] = tf_vzero();
    }
    if (n == DECODE_DV) {
        for (int64_t j = j0; j < j1; j++) {
            const float *v = v_row(a, b, kh, j) + d0;
            const tf_vf pj = tf_vset1(p[j - j0]);
            for (int u = 0; u < DECODE_DV_VECS; u++) {
                o[u] = tf_vfma(pj, tf_vload(v + TF_VW * u), o[u]);
            }
        }
        for (int u = 0; u < DECODE_DV_VECS; u++) {
            tf_vstore(acc + TF_VW * u, o[u]);
        }
        return;
    }
    for (int64_t j = j0; j < j1; j++) {
        const float *v = v_row(a, b, kh, j) + d0;
        const tf_vf pj = tf_vset1(p[j - j0]);
        for (int u = 0; u < DECODE_DV_VECS && TF_VW * u < n; u++) {
            o[u] = tf_vfma(pj, tf_vload_n(v + TF_VW * u, n - TF_VW * u), o[u]);
        }
    }
    for (int u = 0; u < DECODE_DV_VECS && TF_VW * u < n; u++) {
        tf_vstore_n(acc + TF_VW * u, o[u], n - TF_VW * u);
    }
}

/* Rows i of (b, h) against keys [j0, j1): writes stats and acc (Dv,) unnormalised.
 * scores is scratch of (j1 - j0) floats. */
static void
decode_split(const tf_attn_args *a, int64_t b, int64_t h, int64_t i, int64_t j0, int64_t j1,
             float *scores, part_stats *ps, float *acc)
{
    const int64_t D = a->D, Dv = a->Dv, kh = h / (a->H / a->KVH);
    int64_t lo, hi;
    row_range(a, b, i, &lo, &hi);
    j0 = j0 > lo ? j0 : lo;
    j1 = j1 < hi ? j1 : hi;
    memset(acc, 0, (size_t)Dv * sizeof(float));
    ps->m = -INFINITY;
    ps->l = 0.0f;
    if (j1 <= j0 || i >= seq_len(a, b)) {
        return;
    }
    const float *q = q_row(a, b, h, i);
    const int extra = has_extra(a);
    float m = -INFINITY;
    for (int64_t j = j0; j < j1; j++) {
        float sc = dot_row(q, k_row(a, b, kh, j), D) * a->scale;
        if (a->softcap > 0.0f) {
            sc = a->softcap * tanhf(sc / a->softcap);
        }
        if (extra) {
            sc += extra_at(a, b, h, i, j);
        }
        scores[j - j0] = sc;
        m = sc > m || sc != sc ? sc : m; /* NaN propagates */
    }
    if (m == -INFINITY) {
        return;
    }
    const tf_vf vm = tf_vset1(m);
    tf_vf vsum = tf_vzero();
    const int64_t n = j1 - j0;
    int64_t c = 0;
    for (; c + TF_VW <= n; c += TF_VW) {
        const tf_vf e = tf_vexp_ftz(tf_vsub(tf_vload(scores + c), vm));
        tf_vstore(scores + c, e);
        vsum = tf_vadd(vsum, e);
    }
    if (c < n) {
        const tf_vf e = tf_vblend(tf_vmask_n(n - c), tf_vzero(),
                                  tf_vexp_ftz(tf_vsub(tf_vload_n(scores + c, n - c), vm)));
        tf_vstore_n(scores + c, e, n - c);
        vsum = tf_vadd(vsum, e);
    }
    /* acc += p_j v_j, DECODE_DV value dims at a time kept in registers across all keys */
    for (int64_t d0 = 0; d0 < Dv; d0 += DECODE_DV) {
        decode_pv(a, b, kh, j0, j1, scores, d0, Dv - d0 < DECODE_DV ? Dv - d0 : DECODE_DV,
                  acc + d0);
    }
    ps->m = m;
    ps->l = tf_vreduce_add(vsum);
}

int
TF_ISA_FN(tf_attention_decode)(const tf_attn_args *a, int nthreads)
{
    const int64_t rows = a->B * a->H * a->L;
    /* Enough splits that every thread has work, none shorter than DECODE_MIN_SPLIT keys. */
    int64_t splits = (2 * nthreads + rows - 1) / rows;
    int64_t max_splits = a->S / DECODE_MIN_SPLIT;
    splits = splits > max_splits ? max_splits : splits;
    splits = splits < 1 ? 1 : splits;
    const int64_t chunk = (a->S + splits - 1) / splits;
    part_stats *stats = tf_malloc((size_t)(rows * splits) * sizeof(part_stats));
    float *accs = tf_malloc((size_t)(rows * splits * a->Dv) * sizeof(float));
    int failed = stats == NULL || accs == NULL;
    if (!failed) {
#pragma omp parallel
        {
            float *scores = tf_malloc((size_t)chunk * sizeof(float));
            if (scores == NULL) {
#pragma omp atomic write
                failed = 1;
            }
#pragma omp for schedule(dynamic, 1)
            for (int64_t it = 0; it < rows * splits; it++) {
                const int64_t row = it / splits, sp = it % splits;
                const int64_t i = row % a->L, bh = row / a->L;
                if (scores != NULL) {
                    /* rows past a packed sequence's end see no key (their output is skipped) */
                    decode_split(a, bh / a->H, bh % a->H, i, sp * chunk, (sp + 1) * chunk, scores,
                                 stats + it, accs + it * a->Dv);
                }
            }
            tf_free(scores);
        }
    }
    if (!failed) {
        /* merge the splits: rescale each partial to the row maximum */
#pragma omp parallel for schedule(static)
        for (int64_t row = 0; row < rows; row++) {
            const int64_t i = row % a->L, bh = row / a->L, b = bh / a->H, h = bh % a->H;
            const part_stats *ps = stats + row * splits;
            if (i >= seq_len(a, b)) {
                continue;
            }
            float m = -INFINITY;
            for (int64_t sp = 0; sp < splits; sp++) {
                m = ps[sp].m > m || ps[sp].m != ps[sp].m ? ps[sp].m : m; /* NaN propagates */
            }
            float *out = o_row(a, b, h, i);
            float l = 0.0f;
            for (int64_t d = 0; d < a->Dv; d++) {
                out[d] = 0.0f;
            }
            if (m != -INFINITY) {
                for (int64_t sp = 0; sp < splits; sp++) {
                    if (ps[sp].m == -INFINITY) {
                        continue;
                    }
                    const float w = expf(ps[sp].m - m);
                    const float *acc = accs + (row * splits + sp) * a->Dv;
                    l += ps[sp].l * w;
                    for (int64_t d = 0; d < a->Dv; d++) {
                        out[d] += acc[d] * w;
                    }
                }
                for (int64_t d = 0; d < a->Dv; d++) {
                    out[d] /= l;
                }
            }
            if (a->lse) {
                a->lse[(b * a->H + h) * a->L + i] = m == -INFINITY ? -INFINITY : m + logf(l);
            }
        }
    }
    tf_free(stats);
    tf_free(accs);
    return failed ? -1 : 0;
}

#else /* the reference path, the weights pass and the dispatcher, compiled once */

TF_ISA_DECLARE(int, tf_attention_tiles, (const tf_attn_args *a))
TF_ISA_DECLARE(int, tf_attention_decode, (const tf_attn_args *a, int nthreads))

#define ATTENTION_ISAS (TF_ISA_BIT(TF_ISA_AVX512) | TF_ISA_BIT(TF_ISA_AVX2))

/* The scaled, masked score of (b, h, i, j) computed plainly (reference and weights pass). */
static float
score_ref(const tf_attn_args *a, int64_t b, int64_t h, int64_t i, int64_t j)
{
    const int64_t kh = h / (a->H / a->KVH);
    const float *q = q_row(a, b, h, i), *k = k_row(a, b, kh, j);
    double dot = 0.0;
    for (int64_t d = 0; d < a->D; d++) {
        dot += (double)q[d] * (double)k[d];
    }
    float sc = (float)dot * a->scale;
    if (a->softcap > 0.0f) {
        sc = (float)((double)a->softcap * tanh((double)sc / (double)a->softcap));
    }
    return sc + (has_extra(a) ? extra_at(a, b, h, i, j) : 0.0f);
}

/* ------------------------------------------------------------------ reference path */

/* One query row: out (Dv,), lse, using scores (S,) and acc (Dv,) as scratch. */
static void
attend_row_ref(const tf_attn_args *a, int64_t b, int64_t h, int64_t i, float *scores, double *acc)
{
    const int64_t kh = h / (a->H / a->KVH), Dv = a->Dv;
    int64_t lo, hi;
    float *out = o_row(a, b, h, i);
    row_range(a, b, i, &lo, &hi);
    float m = -INFINITY;
    for (int64_t j = lo; j < hi; j++) {
        scores[j] = score_ref(a, b, h, i, j);
        m = scores[j] > m || scores[j] != scores[j] ? scores[j] : m; /* NaN propagates */
    }
    for (int64_t d = 0; d < Dv; d++) {
        out[d] = 0.0f;
    }
    if (m == -INFINITY) {
        if (a->lse) {
            a->lse[(b * a->H + h) * a->L + i] = -INFINITY;
        }
        return;
    }
    double sum = 0.0;
    memset(acc, 0, (size_t)Dv * sizeof(double));
    for (int64_t j = lo; j < hi; j++) {
        double p = exp((double)scores[j] - (double)m);
        sum += p;
        const float *v = v_row(a, b, kh, j);
        for (int64_t d = 0; d < Dv; d++) {
            acc[d] += p * v[d];
        }
    }
    for (int64_t d = 0; d < Dv; d++) {
        out[d] = (float)(acc[d] / sum);
    }
    if (a->lse) {
        a->lse[(b * a->H + h) * a->L + i] = (float)((double)m + log(sum));
    }
}

static int
attention_ref(const tf_attn_args *a)
{
    int failed = 0;
#pragma omp parallel
    {
        float *scores = malloc((size_t)(a->S > 0 ? a->S : 1) * sizeof(float));
        double *acc = malloc((size_t)(a->Dv > 0 ? a->Dv : 1) * sizeof(double));
        const int ok = scores != NULL && acc != NULL;
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 4) collapse(2)
        for (int64_t bh = 0; bh < a->B * a->H; bh++) {
            for (int64_t i = 0; i < a->L; i++) {
                if (ok && i < seq_len(a, bh / a->H)) {
                    attend_row_ref(a, bh / a->H, bh % a->H, i, scores, acc);
                }
            }
        }
        free(scores);
        free(acc);
    }
    return failed ? -1 : 0;
}

/* ------------------------------------------------------------------ weights pass */

/* weights[b, h, i, j] = exp(score - lse) inside the visible range, 0 elsewhere. */
static void
write_weights(const tf_attn_args *a)
{
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t row = 0; row < a->B * a->H * a->L; row++) {
        const int64_t i = row % a->L, bh = row / a->L, b = bh / a->H, h = bh % a->H;
        float *w = a->weights + row * a->S;
        const float lse = a->lse[row];
        int64_t lo, hi;
        row_range(a, b, i, &lo, &hi);
        memset(w, 0, (size_t)a->S * sizeof(float));
        if (lse == -INFINITY) {
            continue;
        }
        for (int64_t j = lo; j < hi; j++) {
            w[j] = expf(score_ref(a, b, h, i, j) - lse);
        }
    }
}

/* ------------------------------------------------------------------ entry */

/* The level attention kernels run at now (show_config). */
tf_isa_level
tf_attention_isa(void)
{
    return tf_isa_for(ATTENTION_ISAS);
}

int
tf_attention(const tf_attn_args *args, tf_err *err)
{
    tf_attn_args a = *args;
    float *own_lse = NULL;
    int rc;
    if (a.weights != NULL && a.lse == NULL) {
        own_lse = tf_malloc((size_t)(a.B * a.H * a.L) * sizeof(float));
        if (own_lse == NULL) {
            tf_err_set(err, TF_ERR_MEMORY, "out of memory for attention statistics");
            return -1;
        }
        a.lse = own_lse;
    }
    const tf_isa_level level = a.S < INT32_MAX - BK ? tf_attention_isa() : TF_ISA_REFERENCE;
    const int decode = a.L <= DECODE_MAX_L, nthreads = omp_get_max_threads();
    switch (level) {
        case TF_ISA_AVX512:
            rc = decode ? tf_attention_decode_avx512(&a, nthreads) : tf_attention_tiles_avx512(&a);
            break;
        case TF_ISA_AVX2:
            rc = decode ? tf_attention_decode_avx2(&a, nthreads) : tf_attention_tiles_avx2(&a);
            break;
        default: rc = attention_ref(&a); break;
    }
    if (rc == 0 && a.weights != NULL) {
        write_weights(&a);
    }
    tf_free(own_lse);
    if (rc < 0) {
        tf_err_set(err, TF_ERR_MEMORY, "out of memory for attention scratch buffers");
    }
    return rc;
}

#endif /* TF_ISA_PASS */
