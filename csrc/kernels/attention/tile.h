/* tile.h — the register-tiled steps shared by tfcore's flash-style attention kernels
 * (sdpa.c, block_sparse.c). A tile is BQ = 64 queries packed transposed, Qᵀ (D, BQ),
 * so every step vectorises over queries (4 vectors of 16 lanes), against up to BK = 64 keys:
 *   tf_tile_pack_qt Qᵀ (D, BQ) from query rows, scaled
 *   tf_tile_qk      scores st (nk, BQ) = Qᵀ · K rows, hiding lanes outside a key range
 *   tf_tile_softmax turns st into probabilities under a running max / sum per lane and
 *                   rescales the accumulator where the max moved (online softmax)
 *   tf_tile_pv      Oᵀ (Dv, BQ) += probabilities · V rows
 * Header-only (static inline): each kernel file compiles them into its own loops. */
#ifndef TFCORE_ATTN_TILE_H
#define TFCORE_ATTN_TILE_H

#include "kernels/simd.h"

#include <math.h>
#include <stdint.h>

#define TF_TILE_BQ 64 /* queries per tile: 4 vectors of 16 lanes */
#define TF_TILE_BK 64 /* keys per tile */

/* Store one key's 64 scores (4 vectors) to st, hiding lanes that cannot see key j when
 * the block is an edge block, and fold them into the running block max. */
TF_AVX512 static inline void
tf_tile_store_scores(float *row, __m512 s0, __m512 s1, __m512 s2, __m512 s3, int edge, int64_t j,
                     const __m512i *vlo, const __m512i *vhi, __m512 *tmax)
{
    __m512 s[4] = {s0, s1, s2, s3};
    if (edge) {
        const __m512i vj = _mm512_set1_epi32((int32_t)j);
        const __m512 ninf = _mm512_set1_ps(-INFINITY);
        for (int u = 0; u < 4; u++) {
            __mmask16 vis =
                _mm512_cmpge_epi32_mask(vj, vlo[u]) & _mm512_cmplt_epi32_mask(vj, vhi[u]);
            s[u] = _mm512_mask_blend_ps(vis, ninf, s[u]);
        }
    }
    for (int u = 0; u < 4; u++) {
        _mm512_storeu_ps(row + 16 * u, s[u]);
        tmax[u] = _mm512_max_ps(tmax[u], s[u]);
    }
}

/* st[c][:] = qt · krows[c] for keys c < nk, 4 keys x 64 queries per register tile (qt is
 * pre-scaled). qt is (D, BQ); krows[c] points at key c's D floats (any layout: strided,
 * gathered, shifted windows); st is (nk, BQ).
 * On edge blocks lanes outside [vlo, vhi) (key indices j0 + c) become -inf (vlo/vhi may be
 * NULL when edge is 0); tmax gets each lane's maximum. */
TF_AVX512 static inline void
tf_tile_qk(const float *qt, const float *const *krows, int64_t D, int64_t nk, int64_t j0, int edge,
           const __m512i *vlo, const __m512i *vhi, float *st, __m512 *tmax)
{
    int64_t c = 0;
    for (; c + 4 <= nk; c += 4) {
        __m512 acc[4][4];
        for (int r = 0; r < 4; r++) {
            for (int v = 0; v < 4; v++) {
                acc[r][v] = _mm512_setzero_ps();
            }
        }
        const float *k0 = krows[c], *k1 = krows[c + 1], *k2 = krows[c + 2], *k3 = krows[c + 3];
        for (int64_t d = 0; d < D; d++) {
            const float *q = qt + d * TF_TILE_BQ;
            __m512 q0 = _mm512_loadu_ps(q), q1 = _mm512_loadu_ps(q + 16),
                   q2 = _mm512_loadu_ps(q + 32), q3 = _mm512_loadu_ps(q + 48);
            __m512 b0 = _mm512_set1_ps(k0[d]), b1 = _mm512_set1_ps(k1[d]),
                   b2 = _mm512_set1_ps(k2[d]), b3 = _mm512_set1_ps(k3[d]);
            acc[0][0] = _mm512_fmadd_ps(b0, q0, acc[0][0]);
            acc[0][1] = _mm512_fmadd_ps(b0, q1, acc[0][1]);
            acc[0][2] = _mm512_fmadd_ps(b0, q2, acc[0][2]);
            acc[0][3] = _mm512_fmadd_ps(b0, q3, acc[0][3]);
            acc[1][0] = _mm512_fmadd_ps(b1, q0, acc[1][0]);
            acc[1][1] = _mm512_fmadd_ps(b1, q1, acc[1][1]);
            acc[1][2] = _mm512_fmadd_ps(b1, q2, acc[1][2]);
            acc[1][3] = _mm512_fmadd_ps(b1, q3, acc[1][3]);
            acc[2][0] = _mm512_fmadd_ps(b2, q0, acc[2][0]);
            acc[2][1] = _mm512_fmadd_ps(b2, q1, acc[2][1]);
            acc[2][2] = _mm512_fmadd_ps(b2, q2, acc[2][2]);
            acc[2][3] = _mm512_fmadd_ps(b2, q3, acc[2][3]);
            acc[3][0] = _mm512_fmadd_ps(b3, q0, acc[3][0]);
            acc[3][1] = _mm512_fmadd_ps(b3, q1, acc[3][1]);
            acc[3][2] = _mm512_fmadd_ps(b3, q2, acc[3][2]);
            acc[3][3] = _mm512_fmadd_ps(b3, q3, acc[3][3]);
        }
        for (int r = 0; r < 4; r++) {
            tf_tile_store_scores(st + (c + r) * TF_TILE_BQ, acc[r][0], acc[r][1], acc[r][2],
                                 acc[r][3], edge, j0 + c + r, vlo, vhi, tmax);
        }
    }
    for (; c < nk; c++) {
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        const float *kc = krows[c];
        for (int64_t d = 0; d < D; d++) {
            const float *q = qt + d * TF_TILE_BQ;
            __m512 b = _mm512_set1_ps(kc[d]);
            a0 = _mm512_fmadd_ps(b, _mm512_loadu_ps(q), a0);
            a1 = _mm512_fmadd_ps(b, _mm512_loadu_ps(q + 16), a1);
            a2 = _mm512_fmadd_ps(b, _mm512_loadu_ps(q + 32), a2);
            a3 = _mm512_fmadd_ps(b, _mm512_loadu_ps(q + 48), a3);
        }
        tf_tile_store_scores(st + c * TF_TILE_BQ, a0, a1, a2, a3, edge, j0 + c, vlo, vhi, tmax);
    }
}

/* ot[dv][:] += sum_c st[c][:] * vrows[c][dv]: 4 value dims x 64 queries per register tile.
 * st is (nk, BQ), vrows[c] points at value c's Dv floats, ot is (Dv, BQ). */
TF_AVX512 static inline void
tf_tile_pv(const float *st, const float *const *vrows, int64_t nk, int64_t Dv, float *ot)
{
    int64_t dv = 0;
    for (; dv + 4 <= Dv; dv += 4) {
        __m512 acc[4][4];
        for (int r = 0; r < 4; r++) {
            for (int u = 0; u < 4; u++) {
                acc[r][u] = _mm512_loadu_ps(ot + (dv + r) * TF_TILE_BQ + 16 * u);
            }
        }
        for (int64_t c = 0; c < nk; c++) {
            const float *p = st + c * TF_TILE_BQ, *vc = vrows[c] + dv;
            __m512 p0 = _mm512_loadu_ps(p), p1 = _mm512_loadu_ps(p + 16),
                   p2 = _mm512_loadu_ps(p + 32), p3 = _mm512_loadu_ps(p + 48);
            for (int r = 0; r < 4; r++) {
                __m512 b = _mm512_set1_ps(vc[r]);
                acc[r][0] = _mm512_fmadd_ps(b, p0, acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(b, p1, acc[r][1]);
                acc[r][2] = _mm512_fmadd_ps(b, p2, acc[r][2]);
                acc[r][3] = _mm512_fmadd_ps(b, p3, acc[r][3]);
            }
        }
        for (int r = 0; r < 4; r++) {
            for (int u = 0; u < 4; u++) {
                _mm512_storeu_ps(ot + (dv + r) * TF_TILE_BQ + 16 * u, acc[r][u]);
            }
        }
    }
    for (; dv < Dv; dv++) {
        float *o = ot + dv * TF_TILE_BQ;
        __m512 a0 = _mm512_loadu_ps(o), a1 = _mm512_loadu_ps(o + 16), a2 = _mm512_loadu_ps(o + 32),
               a3 = _mm512_loadu_ps(o + 48);
        for (int64_t c = 0; c < nk; c++) {
            const float *p = st + c * TF_TILE_BQ;
            __m512 b = _mm512_set1_ps(vrows[c][dv]);
            a0 = _mm512_fmadd_ps(b, _mm512_loadu_ps(p), a0);
            a1 = _mm512_fmadd_ps(b, _mm512_loadu_ps(p + 16), a1);
            a2 = _mm512_fmadd_ps(b, _mm512_loadu_ps(p + 32), a2);
            a3 = _mm512_fmadd_ps(b, _mm512_loadu_ps(p + 48), a3);
        }
        _mm512_storeu_ps(o, a0);
        _mm512_storeu_ps(o + 16, a1);
        _mm512_storeu_ps(o + 32, a2);
        _mm512_storeu_ps(o + 48, a3);
    }
}

/* In-register transpose of a 16 x 16 block: lane l of r[k] <- lane k of r[l]. */
TF_AVX512 static inline void
tf_tile_transpose16(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
    }
}

/* The tile's queries packed: qt (D, BQ), qt[d][l] = scale * q_l[d] with q_l = rows[l] + off
 * (D floats) for l < nq, 0 in the other lanes; 16 x 16 blocks transposed in registers. */
TF_AVX512 static inline void
tf_tile_pack_qt(const float *const *rows, int64_t off, int64_t nq, int64_t D, float scale,
                float *qt)
{
    const __m512 vs = _mm512_set1_ps(scale);
    for (int64_t d0 = 0; d0 < D; d0 += 16) {
        const __mmask16 md = tf_mask16(D - d0);
        const int64_t nd = D - d0 < 16 ? D - d0 : 16;
        for (int64_t g = 0; g < TF_TILE_BQ; g += 16) {
            __m512 r[16];
            for (int64_t k = 0; k < 16; k++) {
                r[k] = g + k < nq
                           ? _mm512_mul_ps(vs, _mm512_maskz_loadu_ps(md, rows[g + k] + off + d0))
                           : _mm512_setzero_ps();
            }
            tf_tile_transpose16(r);
            for (int64_t k = 0; k < nd; k++) {
                _mm512_storeu_ps(qt + (d0 + k) * TF_TILE_BQ + g, r[k]);
            }
        }
    }
}

/* rows[c] = base + (j0 + c) * stride for c < n: the row pointers of a strided block. */
static inline void
tf_tile_rows(const float *base, int64_t stride, int64_t j0, int64_t n, const float **rows)
{
    for (int64_t c = 0; c < n; c++) {
        rows[c] = base + (j0 + c) * stride;
    }
}

/* Online softmax over one block of nk scores st (nk, BQ) whose lane maxima are tmax:
 * st becomes exp(st - m_new); l (running sums) and ot (Dv, BQ) are rescaled where a lane's
 * maximum moved; m takes the new maxima. -inf lanes (no visible key yet) stay at zero. */
TF_AVX512 static inline void
tf_tile_softmax(float *st, int64_t nk, int64_t Dv, float *ot, const __m512 *tmax, __m512 *m,
                __m512 *l)
{
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (int u = 0; u < 4; u++) {
        __m512 m_new = _mm512_max_ps(m[u], tmax[u]);
        /* lanes that have seen no key yet keep exponent base 0 (exp(-inf) = 0) */
        __mmask16 none = _mm512_cmp_ps_mask(m_new, ninf, _CMP_EQ_OQ);
        __m512 base = _mm512_mask_blend_ps(none, m_new, _mm512_setzero_ps());
        __m512 psum = _mm512_setzero_ps();
        for (int64_t c = 0; c < nk; c++) {
            float *p = st + c * TF_TILE_BQ + 16 * u;
            __m512 e = tf_exp512(_mm512_sub_ps(_mm512_loadu_ps(p), base));
            _mm512_storeu_ps(p, e);
            psum = _mm512_add_ps(psum, e);
        }
        /* rescale earlier sums only where the maximum moved */
        if (_mm512_cmp_ps_mask(m_new, m[u], _CMP_GT_OQ) != 0) {
            __m512 corr = tf_exp512(_mm512_sub_ps(m[u], base));
            l[u] = _mm512_fmadd_ps(l[u], corr, psum);
            for (int64_t dv = 0; dv < Dv; dv++) {
                float *o = ot + dv * TF_TILE_BQ + 16 * u;
                _mm512_storeu_ps(o, _mm512_mul_ps(_mm512_loadu_ps(o), corr));
            }
        }
        else {
            l[u] = _mm512_add_ps(l[u], psum);
        }
        m[u] = m_new;
    }
}

#endif /* TFCORE_ATTN_TILE_H */
