/* tile.h — the register-tiled steps shared by tfcore's flash-style attention kernels
 * (sdpa.c, block_sparse.c, shifted_window.c). A tile is BQ = 64 queries packed transposed,
 * Qᵀ (D, BQ), so every step vectorises over queries (TF_TILE_QV vectors: 4 of 16 lanes with
 * AVX-512, 8 of 8 with AVX2), against up to BK = 64 keys:
 *   tf_tile_pack_qt Qᵀ (D, BQ) from query rows, scaled
 *   tf_tile_qk      scores st (nk, BQ) = Qᵀ · K rows, hiding lanes outside a key range
 *   tf_tile_softmax turns st into probabilities under a running max / sum per lane and
 *                   rescales the accumulator where the max moved far (online softmax)
 *   tf_tile_pv      Oᵀ (Dv, BQ) += probabilities · V rows
 * Header-only (static inline), written against kernels/simd.h: each kernel file compiles
 * them into its own loops in every ISA pass. The register tiles of the two products are
 * sized by the ISA's register file (TF_VREGS): keys (or value dims) broadcast x query
 * vectors of accumulators, plus the query vectors and one broadcast in flight. */
#ifndef TFCORE_ATTN_TILE_H
#define TFCORE_ATTN_TILE_H

#include "kernels/simd.h"

#include <math.h>
#include <stdint.h>

#define TF_TILE_BQ 64 /* queries per tile */
#define TF_TILE_BK 64 /* keys per tile */

#ifdef TF_ISA_PASS

#define TF_TILE_QV (TF_TILE_BQ / TF_VW) /* query vectors per tile: 4 (AVX-512), 8 (AVX2) */

/* Register tiles, R broadcasts x V query vectors of accumulators:
 *   AVX-512 (32 registers): 4 x 4 = 16 accumulators + 4 query vectors + 4 broadcasts
 *   AVX2    (16 registers): 6 x 2 = 12 accumulators + 2 query vectors + 1 broadcast
 * (the classic 6 x 16 float GEMM tile: enough independent FMAs to cover their latency,
 * and 8 loads per 12 FMAs). -DTF_TILE_QK_R=... etc. override them for experiments. */
#ifndef TF_TILE_QK_R
#if TF_VREGS >= 32
#define TF_TILE_QK_R 4 /* keys */
#define TF_TILE_QK_V 4 /* query vectors */
#define TF_TILE_PV_R 4 /* value dims */
#define TF_TILE_PV_V 4 /* query vectors */
#else
#define TF_TILE_QK_R 6
#define TF_TILE_QK_V 2
#define TF_TILE_PV_R 6
#define TF_TILE_PV_V 2
#endif
#endif
_Static_assert(TF_TILE_QV % TF_TILE_QK_V == 0 && TF_TILE_QV % TF_TILE_PV_V == 0,
               "register tiles split the query vectors evenly");
_Static_assert(TF_TILE_QK_R <= 6 && TF_TILE_PV_R <= 6, "tf_tile_qk/pv have tails up to 5");
/* Tiles of the last 1 or 2 keys (value dims) span more query vectors: a 1 x 2 tile has two
 * accumulators, far too few to cover the FMA latency. AVX2: 1 x 8 (each query vector used
 * once per step, so it can stay a memory operand) and 2 x 4; AVX-512: 1 x 4 and 2 x 4. */
#define TF_TILE_TAIL1_V TF_TILE_QV
#define TF_TILE_TAIL2_V (TF_TILE_QV >= 8 ? TF_TILE_QV / 2 : TF_TILE_QV)

#define TF_TILE_INLINE static inline __attribute__((always_inline))

/* One register tile of scores: keys c .. c + nr - 1 against query vectors v0 .. v0 + nv - 1
 * (nr, nv compile-time constants after inlining), stored to st (nk, BQ) with lanes outside
 * [vlo, vhi) hidden on edge blocks, and folded into the lane maxima tmax. */
TF_TILE_INLINE void
tf_tile_qk_micro(const float *qt, const float *const *krows, int64_t D, int64_t c, int v0,
                 const int nr, const int nv, int64_t j0, int edge, const tf_vi *vlo,
                 const tf_vi *vhi, float *st, tf_vf *tmax)
{
    tf_vf acc[TF_TILE_QK_R][TF_TILE_QV];
    const float *k[TF_TILE_QK_R];
    for (int r = 0; r < nr; r++) {
        k[r] = krows[c + r];
        for (int v = 0; v < nv; v++) {
            acc[r][v] = tf_vzero();
        }
    }
    const float *q = qt + v0 * TF_VW;
    for (int64_t d = 0; d < D; d++, q += TF_TILE_BQ) {
        tf_vf qv[TF_TILE_QV];
        for (int v = 0; v < nv; v++) {
            qv[v] = tf_vload(q + v * TF_VW);
        }
        for (int r = 0; r < nr; r++) {
            const tf_vf b = tf_vset1(k[r][d]);
            for (int v = 0; v < nv; v++) {
                acc[r][v] = tf_vfma(b, qv[v], acc[r][v]);
            }
        }
    }
    for (int r = 0; r < nr; r++) {
        const tf_vi vj = tf_viset1((int32_t)(j0 + c + r));
        float *row = st + (c + r) * TF_TILE_BQ + v0 * TF_VW;
        for (int v = 0; v < nv; v++) {
            tf_vf s = acc[r][v];
            if (edge) {
                s = tf_vblend(tf_vin_range(vj, vlo[v0 + v], vhi[v0 + v]), tf_vset1(-INFINITY), s);
            }
            tf_vstore(row + v * TF_VW, s);
            tmax[v0 + v] = tf_vmax(tmax[v0 + v], s);
        }
    }
}

/* Keys c .. c + nr - 1 against all the query vectors, nv at a time. */
TF_TILE_INLINE void
tf_tile_qk_keys(const float *qt, const float *const *krows, int64_t D, int64_t c, const int nr,
                const int nv, int64_t j0, int edge, const tf_vi *vlo, const tf_vi *vhi, float *st,
                tf_vf *tmax)
{
    for (int v0 = 0; v0 < TF_TILE_QV; v0 += nv) {
        tf_tile_qk_micro(qt, krows, D, c, v0, nr, nv, j0, edge, vlo, vhi, st, tmax);
    }
}

/* st[c][:] = qt · krows[c] for keys c < nk (qt is pre-scaled). qt is (D, BQ); krows[c]
 * points at key c's D floats (any layout: strided, gathered, shifted windows); st is
 * (nk, BQ). On edge blocks lanes outside [vlo, vhi) (key indices j0 + c; TF_TILE_QV vectors
 * each) become -inf (vlo/vhi may be NULL when edge is 0); tmax (TF_TILE_QV vectors) gets each
 * lane's maximum. */
static inline void
tf_tile_qk(const float *qt, const float *const *krows, int64_t D, int64_t nk, int64_t j0, int edge,
           const tf_vi *vlo, const tf_vi *vhi, float *st, tf_vf *tmax)
{
    enum { R = TF_TILE_QK_R, V = TF_TILE_QK_V, V1 = TF_TILE_TAIL1_V, V2 = TF_TILE_TAIL2_V };
    int64_t c = 0;
    for (; c + R <= nk; c += R) {
        tf_tile_qk_keys(qt, krows, D, c, R, V, j0, edge, vlo, vhi, st, tmax);
    }
    switch (nk - c) { /* the last keys: one tile of each possible height */
        case 1: tf_tile_qk_keys(qt, krows, D, c, 1, V1, j0, edge, vlo, vhi, st, tmax); break;
        case 2: tf_tile_qk_keys(qt, krows, D, c, 2, V2, j0, edge, vlo, vhi, st, tmax); break;
        case 3: tf_tile_qk_keys(qt, krows, D, c, 3, V, j0, edge, vlo, vhi, st, tmax); break;
#if TF_TILE_QK_R > 4
        case 4: tf_tile_qk_keys(qt, krows, D, c, 4, V, j0, edge, vlo, vhi, st, tmax); break;
        case 5: tf_tile_qk_keys(qt, krows, D, c, 5, V, j0, edge, vlo, vhi, st, tmax); break;
#endif
        default: break;
    }
}

/* One register tile of the output: value dims dv .. dv + nr - 1 against query vectors
 * v0 .. v0 + nv - 1 of ot (Dv, BQ), accumulated over the nk keys. */
TF_TILE_INLINE void
tf_tile_pv_micro(const float *st, const float *const *vrows, int64_t nk, int64_t dv, int v0,
                 const int nr, const int nv, float *ot)
{
    tf_vf acc[TF_TILE_PV_R][TF_TILE_QV];
    for (int r = 0; r < nr; r++) {
        for (int v = 0; v < nv; v++) {
            acc[r][v] = tf_vload(ot + (dv + r) * TF_TILE_BQ + (v0 + v) * TF_VW);
        }
    }
    const float *p = st + v0 * TF_VW;
    /* unrolled: the per-key row pointer load and loop step cost ~5% of this loop otherwise
     * (measured, both ISAs); the Q·K loop gains nothing from it */
#pragma GCC unroll 4
    for (int64_t c = 0; c < nk; c++, p += TF_TILE_BQ) {
        const float *vc = vrows[c] + dv;
        tf_vf pv[TF_TILE_QV];
        for (int v = 0; v < nv; v++) {
            pv[v] = tf_vload(p + v * TF_VW);
        }
        for (int r = 0; r < nr; r++) {
            const tf_vf b = tf_vset1(vc[r]);
            for (int v = 0; v < nv; v++) {
                acc[r][v] = tf_vfma(b, pv[v], acc[r][v]);
            }
        }
    }
    for (int r = 0; r < nr; r++) {
        for (int v = 0; v < nv; v++) {
            tf_vstore(ot + (dv + r) * TF_TILE_BQ + (v0 + v) * TF_VW, acc[r][v]);
        }
    }
}

/* Value dims dv .. dv + nr - 1 against all the query vectors, nv at a time. */
TF_TILE_INLINE void
tf_tile_pv_dims(const float *st, const float *const *vrows, int64_t nk, int64_t dv, const int nr,
                const int nv, float *ot)
{
    for (int v0 = 0; v0 < TF_TILE_QV; v0 += nv) {
        tf_tile_pv_micro(st, vrows, nk, dv, v0, nr, nv, ot);
    }
}

/* ot[dv][:] += sum_c st[c][:] * vrows[c][dv]. st is (nk, BQ), vrows[c] points at value c's
 * Dv floats, ot is (Dv, BQ). */
static inline void
tf_tile_pv(const float *st, const float *const *vrows, int64_t nk, int64_t Dv, float *ot)
{
    enum { R = TF_TILE_PV_R, V = TF_TILE_PV_V, V1 = TF_TILE_TAIL1_V, V2 = TF_TILE_TAIL2_V };
    int64_t dv = 0;
    for (; dv + R <= Dv; dv += R) {
        tf_tile_pv_dims(st, vrows, nk, dv, R, V, ot);
    }
    switch (Dv - dv) { /* the last value dims */
        case 1: tf_tile_pv_dims(st, vrows, nk, dv, 1, V1, ot); break;
        case 2: tf_tile_pv_dims(st, vrows, nk, dv, 2, V2, ot); break;
        case 3: tf_tile_pv_dims(st, vrows, nk, dv, 3, V, ot); break;
#if TF_TILE_PV_R > 4
        case 4: tf_tile_pv_dims(st, vrows, nk, dv, 4, V, ot); break;
        case 5: tf_tile_pv_dims(st, vrows, nk, dv, 5, V, ot); break;
#endif
        default: break;
    }
}

/* Read for rows past the end of a block: the packing loads stay branch-free, so the block
 * being transposed stays in registers (a branch per row puts it on the stack). */
static const float tf_tile_zeros[TF_VW];

/* One TF_VW x TF_VW block of the packing (full: nd == TF_VW, a compile-time constant). */
TF_TILE_INLINE void
tf_tile_pack_block(const float *const *rows, int64_t off, int64_t nq, int64_t g, int64_t d0,
                   int64_t nd, const int full, tf_vf vs, float *qt)
{
    tf_vf r[TF_VW];
    for (int k = 0; k < TF_VW; k++) {
        const float *src = g + k < nq ? rows[g + k] + off + d0 : tf_tile_zeros;
        r[k] = tf_vmul(vs, full ? tf_vload(src) : tf_vload_n(src, nd));
    }
    tf_vtranspose(r);
    for (int64_t k = 0; k < nd; k++) {
        tf_vstore(qt + (d0 + k) * TF_TILE_BQ + g, r[k]);
    }
}

/* The tile's queries packed: qt (D, BQ), qt[d][l] = scale * q_l[d] with q_l = rows[l] + off
 * (D floats) for l < nq, 0 in the other lanes; TF_VW x TF_VW blocks transposed in registers. */
static inline void
tf_tile_pack_qt(const float *const *rows, int64_t off, int64_t nq, int64_t D, float scale,
                float *qt)
{
    const tf_vf vs = tf_vset1(scale);
    int64_t d0 = 0;
    for (; d0 + TF_VW <= D; d0 += TF_VW) {
        for (int64_t g = 0; g < TF_TILE_BQ; g += TF_VW) {
            tf_tile_pack_block(rows, off, nq, g, d0, TF_VW, 1, vs, qt);
        }
    }
    if (d0 < D) {
        for (int64_t g = 0; g < TF_TILE_BQ; g += TF_VW) {
            tf_tile_pack_block(rows, off, nq, g, d0, D - d0, 0, vs, qt);
        }
    }
}

/* One TF_VW x TF_VW block of the unpacking (full: nd == TF_VW, a compile-time constant). */
TF_TILE_INLINE void
tf_tile_unpack_block(const float *ot, const float *inv, float *const *dst, int64_t off, int64_t nq,
                     int64_t g, int64_t d0, int64_t nd, const int full)
{
    tf_vf r[TF_VW];
    for (int k = 0; k < TF_VW; k++) {
        r[k] = tf_vload(full || k < nd ? ot + (d0 + k) * TF_TILE_BQ + g : tf_tile_zeros);
    }
    tf_vtranspose(r);
    for (int k = 0; k < TF_VW && g + k < nq; k++) {
        if (dst[g + k] != NULL) {
            const tf_vf y = tf_vmul(r[k], tf_vset1(inv[g + k]));
            if (full) {
                tf_vstore(dst[g + k] + off + d0, y);
            }
            else {
                tf_vstore_n(dst[g + k] + off + d0, y, nd);
            }
        }
    }
}

/* The tile's outputs back to their rows: dst[l][off + d] = ot[d][l] * inv[l] for l < nq and
 * dst[l] != NULL (rows written nowhere, such as padding, are skipped). ot is (D, BQ);
 * TF_VW x TF_VW blocks transposed in registers. */
static inline void
tf_tile_unpack_ot(const float *ot, const float *inv, float *const *dst, int64_t off, int64_t nq,
                  int64_t D)
{
    int64_t d0 = 0;
    for (; d0 + TF_VW <= D; d0 += TF_VW) {
        for (int64_t g = 0; g < nq; g += TF_VW) {
            tf_tile_unpack_block(ot, inv, dst, off, nq, g, d0, TF_VW, 1);
        }
    }
    if (d0 < D) {
        for (int64_t g = 0; g < nq; g += TF_VW) {
            tf_tile_unpack_block(ot, inv, dst, off, nq, g, d0, D - d0, 0);
        }
    }
}

/* A lane's running maximum moves only when a block's maximum exceeds it by more than this
 * (natural-log units): numerators stay <= e^8 against the stale maximum, and the rescale of
 * l and Oᵀ, a load-multiply-store of Dv vectors, is skipped for most blocks (FlashAttention-3's
 * lazy rescaling). The result is the same softmax: l and Oᵀ share the base. */
#define TF_TILE_RESCALE_SLACK 8.0f

/* Online softmax over one block of nk scores st (nk, BQ) whose lane maxima are tmax:
 * st becomes exp(st - m_new); l (running sums) and ot (Dv, BQ) are rescaled where a lane's
 * base m moved; m takes the new bases (m_new = tmax where tmax > m + TF_TILE_RESCALE_SLACK,
 * m elsewhere). -inf lanes (no visible key yet) stay at zero; a NaN score makes its lane's
 * l NaN. tmax, m and l hold TF_TILE_QV vectors. */
static inline void
tf_tile_softmax(float *st, int64_t nk, int64_t Dv, float *ot, const tf_vf *tmax, tf_vf *m, tf_vf *l)
{
    const tf_vf ninf = tf_vset1(-INFINITY), slack = tf_vset1(TF_TILE_RESCALE_SLACK);
    for (int u = 0; u < TF_TILE_QV; u++) {
        const tf_vmask grow = tf_vgt(tmax[u], tf_vadd(m[u], slack));
        const tf_vf m_new = tf_vblend(grow, m[u], tmax[u]);
        /* lanes that have seen no key yet keep exponent base 0 (exp(-inf) = 0) */
        const tf_vf base = tf_vblend(tf_veq(m_new, ninf), m_new, tf_vzero());
        tf_vf psum = tf_vzero();
        float *p = st + u * TF_VW;
        for (int64_t c = 0; c < nk; c++, p += TF_TILE_BQ) {
            const tf_vf e = tf_vexp_ftz(tf_vsub(tf_vload(p), base));
            tf_vstore(p, e);
            psum = tf_vadd(psum, e);
        }
        /* rescale earlier sums only where the base moved */
        if (tf_vmask_any(grow)) {
            const tf_vf corr = tf_vexp_ftz(tf_vsub(m[u], base));
            l[u] = tf_vfma(l[u], corr, psum);
            float *o = ot + u * TF_VW;
            for (int64_t dv = 0; dv < Dv; dv++, o += TF_TILE_BQ) {
                tf_vstore(o, tf_vmul(tf_vload(o), corr));
            }
        }
        else {
            l[u] = tf_vadd(l[u], psum);
        }
        m[u] = m_new;
    }
}

#endif /* TF_ISA_PASS */

/* rows[c] = base + (j0 + c) * stride for c < n: the row pointers of a strided block. */
static inline void
tf_tile_rows(const float *base, int64_t stride, int64_t j0, int64_t n, const float **rows)
{
    for (int64_t c = 0; c < n; c++) {
        rows[c] = base + (j0 + c) * stride;
    }
}

#endif /* TFCORE_ATTN_TILE_H */
