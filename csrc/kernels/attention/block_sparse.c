/* block_sparse.c — block-sparse attention (BigBird): every query block attends to a listed
 * set of key blocks, or to all keys if it is a global block. Memory is linear in the
 * sequence length: nothing of size L x S is ever formed.
 *
 * The sequence is cut into blocks of `bs` tokens: query block qb holds queries
 * qb*bs .. qb*bs+bs-1, key block kb holds keys kb*bs .. kb*bs+bs-1.
 *   layout[b, h, qb, :]  key block indices of query block qb; -1 entries are skipped.
 *                        A block listed twice counts twice in the softmax (HF's gathers
 *                        concatenate the key blocks, so repeated random blocks repeat keys).
 *   global_q[qb] != 0    query block qb attends to all S keys once (its layout is ignored).
 *   key_mask[b, j] == 0  key j is hidden (HF's to_mask / band_mask / rand_mask).
 *   query_mask[b, i] == 0  query i gets a zero output (HF multiplies by from_mask).
 * out[b, h, i] = sum_j p_j v[b, h, j] with p = softmax over the listed keys of scale q·k.
 * A query that sees no key gets zeros.
 *
 * Paths (same semantics):
 *   tile (vector, per ISA from one source: AVX-512, AVX2): one work item is (b, h, query block, chunk of up to BQ = 64 queries of
 *        the block). The chunk's queries are packed transposed, Qᵀ (D, BQ), so the kernels
 *        vectorise over queries; key blocks are visited in chunks of up to BK = 64 keys with
 *        an online softmax per query lane; Oᵀ (Dv, BQ) accumulates in L1. K and V are read
 *        in place through strides. Scratch per thread: BQ (D + Dv + BK) floats.
 *   reference (plain C, any CPU; forced by tests): one query row at a time in double.
 */
#include "kernels/attention/block_sparse.h"

#include "kernels/attention/tile.h"
#include "kernels/simd.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#define BQ TF_TILE_BQ
#define BK TF_TILE_BK

/* The key ranges query block qb of (b, h) visits, in order: for a global block the whole
 * sequence once, else each listed block. Returns the count; starts[] gets first keys. */
static int64_t
key_ranges(const tf_block_sparse_args *a, int64_t b, int64_t h, int64_t qb, int64_t *starts,
           int64_t *lens)
{
    if (a->global_q != NULL && a->global_q[qb]) {
        starts[0] = 0;
        lens[0] = a->S;
        return 1;
    }
    const int64_t *row = a->layout + b * a->l_sb + h * a->l_sh + qb * a->l_sq;
    int64_t n = 0;
    for (int64_t s = 0; s < a->nsel; s++) {
        if (row[s] >= 0) {
            starts[n] = row[s] * a->bs;
            lens[n] = a->bs;
            n++;
        }
    }
    return n;
}

static inline int
key_visible(const tf_block_sparse_args *a, int64_t b, int64_t j)
{
    return a->key_mask == NULL || a->key_mask[b * a->S + j];
}

static inline int
query_kept(const tf_block_sparse_args *a, int64_t b, int64_t i)
{
    return a->query_mask == NULL || a->query_mask[b * a->L + i];
}

#ifdef TF_ISA_PASS
/* ------------------------------------------------------------------ tile path (per ISA) */

#define QV TF_TILE_QV /* query vectors per tile */

/* Hides keys c with hidden[c] != 0 in the scores st (nk, BQ) and recomputes the lane
 * maxima tmax (only chunks that hold padding keys need this). */
static void
hide_keys(float *st, int64_t nk, const uint8_t *hidden, tf_vf *tmax)
{
    const tf_vf ninf = tf_vset1(-INFINITY);
    for (int u = 0; u < QV; u++) {
        tmax[u] = ninf;
    }
    for (int64_t c = 0; c < nk; c++) {
        for (int u = 0; u < QV; u++) {
            float *p = st + c * BQ + TF_VW * u;
            const tf_vf x = hidden[c] ? ninf : tf_vload(p);
            tf_vstore(p, x);
            tmax[u] = tf_vmax(tmax[u], x);
        }
    }
}

typedef struct {
    float *qt;       /* (D, BQ) packed, scaled queries; zero in unused lanes */
    float *st;       /* (BK, BQ) scores, then probabilities */
    float *ot;       /* (Dv, BQ) output accumulator */
    int64_t *starts; /* (max(1, nsel),) key ranges of the query block */
    int64_t *lens;
} tile_scratch;

/* Queries i0 .. i0 + nq - 1 (one chunk of query block qb) of head h in batch b. */
static void
attend_chunk(const tf_block_sparse_args *a, int64_t b, int64_t h, int64_t qb, int64_t i0,
             int64_t nq, tile_scratch *ts)
{
    const int64_t D = a->D, Dv = a->Dv;
    const float *kbase = a->k + b * a->k_sb + h * a->k_sh;
    const float *vbase = a->v + b * a->v_sb + h * a->v_sh;
    /* Qᵀ with the softmax scale folded in: qt[d][r] = scale * q[i0 + r][d] */
    const float *qr[BQ];
    tf_tile_rows(a->q + b * a->q_sb + h * a->q_sh, a->q_sl, i0, nq, qr);
    tf_tile_pack_qt(qr, 0, nq, D, a->scale, ts->qt);
    memset(ts->ot, 0, (size_t)(Dv * BQ) * sizeof(float));
    const tf_vf ninf = tf_vset1(-INFINITY);
    tf_vf m[QV], l[QV];
    for (int u = 0; u < QV; u++) {
        m[u] = ninf;
        l[u] = tf_vzero();
    }
    const int64_t nr = key_ranges(a, b, h, qb, ts->starts, ts->lens);
    uint8_t hidden[BK];
    for (int64_t r = 0; r < nr; r++) {
        for (int64_t j0 = ts->starts[r]; j0 < ts->starts[r] + ts->lens[r]; j0 += BK) {
            const int64_t end = ts->starts[r] + ts->lens[r];
            const int64_t nk = end - j0 < BK ? end - j0 : BK;
            int any = 0, any_hidden = 0;
            for (int64_t c = 0; c < nk; c++) {
                hidden[c] = !key_visible(a, b, j0 + c);
                any |= !hidden[c];
                any_hidden |= hidden[c];
            }
            if (!any) {
                continue; /* every key of the chunk is padding */
            }
            tf_vf tmax[QV];
            for (int u = 0; u < QV; u++) {
                tmax[u] = ninf;
            }
            const float *kr[BK], *vr[BK];
            tf_tile_rows(kbase, a->k_ss, j0, nk, kr);
            tf_tile_rows(vbase, a->v_ss, j0, nk, vr);
            tf_tile_qk(ts->qt, kr, D, nk, j0, 0, NULL, NULL, ts->st, tmax);
            if (any_hidden) {
                hide_keys(ts->st, nk, hidden, tmax);
            }
            tf_tile_softmax(ts->st, nk, Dv, ts->ot, tmax, m, l);
            tf_tile_pv(ts->st, vr, nk, Dv, ts->ot);
        }
    }
    /* out[i][dv] = ot[dv][i] / l[i]; no visible key or a masked query -> zeros */
    float lsum[BQ];
    for (int u = 0; u < QV; u++) {
        tf_vstore(lsum + TF_VW * u, l[u]);
    }
    float inv[BQ], *orows[BQ];
    for (int64_t r = 0; r < nq; r++) {
        orows[r] = a->out + b * a->o_sb + h * a->o_sh + (i0 + r) * a->o_sl;
        inv[r] = lsum[r] == 0.0f || !query_kept(a, b, i0 + r) ? 0.0f : 1.0f / lsum[r];
        if (inv[r] == 0.0f) { /* exact zeros, whatever the accumulator holds */
            memset(orows[r], 0, (size_t)Dv * sizeof(float));
            orows[r] = NULL;
        }
    }
    tf_tile_unpack_ot(ts->ot, inv, orows, 0, nq, Dv);
}

int
TF_ISA_FN(tf_block_sparse_tiles)(const tf_block_sparse_args *a)
{
    const int64_t chunks = (a->bs + BQ - 1) / BQ; /* query chunks per block */
    const int64_t items = a->B * a->H * a->nqb * chunks;
    int failed = 0;
#pragma omp parallel
    {
        tile_scratch ts;
        const int64_t nr_max = a->nsel > 1 ? a->nsel : 1;
        ts.qt = tf_malloc((size_t)(a->D * BQ) * sizeof(float));
        ts.st = tf_malloc((size_t)(BK * BQ) * sizeof(float));
        ts.ot = tf_malloc((size_t)(a->Dv * BQ) * sizeof(float));
        ts.starts = tf_malloc((size_t)nr_max * sizeof(int64_t));
        ts.lens = tf_malloc((size_t)nr_max * sizeof(int64_t));
        const int ok = ts.qt && ts.st && ts.ot && ts.starts && ts.lens;
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
        /* dynamic: global query blocks visit every key, the others a few blocks */
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < items; it++) {
            if (!ok) {
                continue;
            }
            const int64_t ch = it % chunks, rest = it / chunks;
            const int64_t qb = rest % a->nqb, bh = rest / a->nqb;
            const int64_t c0 = ch * BQ, nq = a->bs - c0 < BQ ? a->bs - c0 : BQ;
            attend_chunk(a, bh / a->H, bh % a->H, qb, qb * a->bs + c0, nq, &ts);
        }
        tf_free(ts.qt);
        tf_free(ts.st);
        tf_free(ts.ot);
        tf_free(ts.starts);
        tf_free(ts.lens);
    }
    return failed ? -1 : 0;
}

#else /* the reference path and the dispatcher, compiled once */

TF_ISA_DECLARE(int, tf_block_sparse_tiles, (const tf_block_sparse_args *a))

#define BLOCK_SPARSE_ISAS (TF_ISA_BIT(TF_ISA_AVX512) | TF_ISA_BIT(TF_ISA_AVX2))

/* ------------------------------------------------------------------ reference path */

/* One query row i of (b, h): out (Dv,) in double, acc (Dv,) scratch. */
static void
row_ref(const tf_block_sparse_args *a, int64_t b, int64_t h, int64_t i, const int64_t *starts,
        const int64_t *lens, int64_t nr, double *acc)
{
    const float *q = a->q + b * a->q_sb + h * a->q_sh + i * a->q_sl;
    float *out = a->out + b * a->o_sb + h * a->o_sh + i * a->o_sl;
    double m = -INFINITY, sum = 0.0;
    memset(acc, 0, (size_t)a->Dv * sizeof(double));
    for (int pass = 0; pass < 2; pass++) { /* max, then exp-sum and weighted values */
        for (int64_t r = 0; r < nr; r++) {
            for (int64_t j = starts[r]; j < starts[r] + lens[r]; j++) {
                if (!key_visible(a, b, j)) {
                    continue;
                }
                const float *k = a->k + b * a->k_sb + h * a->k_sh + j * a->k_ss;
                double dot = 0.0;
                for (int64_t d = 0; d < a->D; d++) {
                    dot += (double)q[d] * (double)k[d];
                }
                const double s = dot * (double)a->scale;
                if (pass == 0) {
                    m = s > m || s != s ? s : m; /* NaN propagates */
                    continue;
                }
                const double p = exp(s - m);
                const float *v = a->v + b * a->v_sb + h * a->v_sh + j * a->v_ss;
                sum += p;
                for (int64_t d = 0; d < a->Dv; d++) {
                    acc[d] += p * (double)v[d];
                }
            }
        }
        if (m == -INFINITY) {
            break; /* no visible key */
        }
    }
    const int keep = query_kept(a, b, i) && m != -INFINITY;
    for (int64_t d = 0; d < a->Dv; d++) {
        out[d] = keep ? (float)(acc[d] / sum) : 0.0f;
    }
}

static int
block_sparse_ref(const tf_block_sparse_args *a)
{
    int failed = 0;
#pragma omp parallel
    {
        /* a row visits at most max(S, nsel * bs) keys in at most max(1, nsel) ranges */
        const int64_t nr_max = a->nsel > 1 ? a->nsel : 1;
        int64_t *starts = tf_malloc((size_t)nr_max * sizeof(int64_t));
        int64_t *lens = tf_malloc((size_t)nr_max * sizeof(int64_t));
        double *acc = tf_malloc((size_t)(a->Dv > 0 ? a->Dv : 1) * sizeof(double));
        const int ok = starts != NULL && lens != NULL && acc != NULL;
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < a->B * a->H * a->nqb; it++) {
            const int64_t qb = it % a->nqb, bh = it / a->nqb, b = bh / a->H, h = bh % a->H;
            if (!ok) {
                continue;
            }
            const int64_t nr = key_ranges(a, b, h, qb, starts, lens);
            for (int64_t i = qb * a->bs; i < (qb + 1) * a->bs; i++) {
                row_ref(a, b, h, i, starts, lens, nr, acc);
            }
        }
        tf_free(starts);
        tf_free(lens);
        tf_free(acc);
    }
    return failed ? -1 : 0;
}

/* The level block sparse kernels run at now (show_config). */
tf_isa_level
tf_block_sparse_isa(void)
{
    return tf_isa_for(BLOCK_SPARSE_ISAS);
}

int
tf_block_sparse(const tf_block_sparse_args *a, tf_err *err)
{
    int rc;
    switch (tf_block_sparse_isa()) {
        case TF_ISA_AVX512: rc = tf_block_sparse_tiles_avx512(a); break;
        case TF_ISA_AVX2: rc = tf_block_sparse_tiles_avx2(a); break;
        default: rc = block_sparse_ref(a); break;
    }
    if (rc < 0) {
        tf_err_set(err, TF_ERR_MEMORY, "out of memory for block-sparse attention scratch buffers");
    }
    return rc;
}

#endif /* TF_ISA_PASS */
