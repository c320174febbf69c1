/* shifted_window.c — Swin's shifted-window attention with partition, cyclic shift, padding,
 * relative-position bias and region mask in the indexing (see shifted_window.h).
 *
 * One work item is (b, window, head). Its N tokens are first mapped to the rows they read
 * (QKV rows of the image, or the padding row) and write (output rows, none for padding),
 * and to their shifted-window region; then, per block of up to 64 queries:
 *   fast (vector, per ISA from one source: AVX-512, AVX2): the block's queries are packed
 *          transposed, Qᵀ (D, 64), scaled, so every
 *          kernel vectorises over queries: S (N, 64) = K Qᵀ with K rows read in place,
 *          S += bias (precomputed (H, N, 64) rows) + mask, softmax over the N keys, then
 *          Oᵀ (D, 64) = Vᵀ S with V rows read in place, and each output row is written at
 *          its image position. Everything lives in L1/L2; nothing the size of the map is
 *          copied.
 *   reference (plain C, double accumulation): one query row at a time, bias read from the
 *          table by relative coordinates, mask from the regions.
 */
#include "kernels/attention/shifted_window.h"

#include "kernels/attention/tile.h"
#include "kernels/simd.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#define BQ TF_WINDOW_LANES /* queries per block: TF_TILE_QV vectors */
_Static_assert(TF_WINDOW_LANES == TF_TILE_BQ, "window blocks are attention tiles");

/* ------------------------------------------------------------------ shared helpers */

/* Where the tokens of one window read and write. */
typedef struct {
    const float **src; /* (N,) QKV row of each token (the padding row outside the image) */
    float **dst;       /* (N,) output row of each token, NULL in the padding */
    int32_t *rid;      /* (NP,) region of each token in the shifted frame; 0 past N */
} window_map;

static inline int64_t
padded(int64_t n, int64_t ws)
{
    return (n + ws - 1) / ws * ws;
}

/* HF's region of coordinate s of the shifted, padded frame of size P along one axis:
 * [0, P - ws) -> 0, [P - ws, P - shift) -> 1, [P - shift, P) -> 2. */
static inline int32_t
region(int64_t s, int64_t P, int64_t ws, int64_t shift)
{
    return (int32_t)((s >= P - ws) + (s >= P - shift));
}

/* Scratch of the fast path, per thread. */
typedef struct {
    float *qt; /* (D, BQ) scaled queries of the block, transposed; zero in unused lanes */
    float *st; /* (N, BQ) scores, then probabilities, key-major */
    float *ot; /* (D, BQ) output accumulator, transposed */
    const float **kr, **vr; /* (N,) this head's key / value rows of the window */
} block_scratch;

#ifdef TF_ISA_PASS
/* ------------------------------------------------------------------ fast path (per ISA) */

#define QV TF_TILE_QV /* query vectors per block */

/* out[j] = rows[j] + off for the N rows of a window: one head's keys or values. */
static inline void
offset_rows(const float *const *rows, int64_t off, int64_t N, const float **out)
{
    for (int64_t j = 0; j < N; j++) {
        out[j] = rows[j] + off;
    }
}

/* Work item (window bw of the batch, head h), blocks of BQ queries. bias is (H, N, NP). */
void
TF_ISA_FN(tf_window_item)(const tf_window_args *a, int64_t bw, int64_t h, const window_map *m,
                          int mixed, const float *bias, block_scratch *s)
{
    const int64_t N = a->ws * a->ws, NP = tf_window_lanes(N), D = a->D, C = a->H * D;
    const float *const *rows = (const float *const *)m->src;
    const tf_vf ninf = tf_vset1(-INFINITY), vmask = tf_vset1(a->region_mask);
    offset_rows(rows, C + h * D, N, s->kr);
    offset_rows(rows, 2 * C + h * D, N, s->vr);
    for (int64_t i0 = 0; i0 < N; i0 += BQ) {
        const int64_t nq = N - i0 < BQ ? N - i0 : BQ;
        tf_tile_pack_qt(rows + i0, h * D, nq, D, a->scale, s->qt);
        tf_vf tile_max[QV]; /* unused: the maxima are taken after bias and mask below */
        tf_tile_qk(s->qt, s->kr, D, N, 0, 0, NULL, NULL, s->st, tile_max);
        /* + relative-position bias + region mask, and each query lane's maximum */
        const float *bh = bias != NULL ? bias + h * N * NP + i0 : NULL;
        tf_vf mx[QV];
        tf_vi rq[QV];
        for (int u = 0; u < QV; u++) {
            mx[u] = ninf;
            rq[u] = tf_viload(m->rid + i0 + TF_VW * u);
        }
        for (int64_t j = 0; j < N; j++) {
            float *row = s->st + j * BQ;
            const tf_vi rj = tf_viset1(m->rid[j]);
            for (int u = 0; u < QV; u++) {
                tf_vf x = tf_vload(row + TF_VW * u);
                if (bh != NULL) {
                    x = tf_vadd(x, tf_vload(bh + j * NP + TF_VW * u));
                }
                if (mixed) { /* keys of another region: + region_mask */
                    x = tf_vblend(tf_vieq(rq[u], rj), tf_vadd(x, vmask), x);
                }
                tf_vstore(row + TF_VW * u, x);
                mx[u] = tf_vmax(mx[u], x);
            }
        }
        /* softmax numerators and their sums */
        tf_vf sum[QV];
        for (int u = 0; u < QV; u++) {
            sum[u] = tf_vzero();
        }
        for (int64_t j = 0; j < N; j++) {
            float *row = s->st + j * BQ;
            for (int u = 0; u < QV; u++) {
                const tf_vf e = tf_vexp_ftz(tf_vsub(tf_vload(row + TF_VW * u), mx[u]));
                tf_vstore(row + TF_VW * u, e);
                sum[u] = tf_vadd(sum[u], e);
            }
        }
        memset(s->ot, 0, (size_t)(D * BQ) * sizeof(float));
        tf_tile_pv(s->st, s->vr, N, D, s->ot);
        float inv[BQ];
        for (int u = 0; u < QV; u++) {
            tf_vstore(inv + TF_VW * u, tf_vdiv(tf_vset1(1.0f), sum[u]));
        }
        tf_tile_unpack_ot(s->ot, inv, m->dst + i0, h * D, nq, D);
        if (a->weights != NULL) {
            for (int64_t l = 0; l < nq; l++) {
                float *w = a->weights + ((bw * a->H + h) * N + i0 + l) * N;
                for (int64_t j = 0; j < N; j++) {
                    w[j] = s->st[j * BQ + l] * inv[l];
                }
            }
        }
    }
}

#else /* the reference path and the dispatcher, compiled once */

TF_ISA_DECLARE(void, tf_window_item,
               (const tf_window_args *a, int64_t bw, int64_t h, const window_map *m, int mixed,
                const float *bias, block_scratch *s))

#define WINDOW_ISAS (TF_ISA_BIT(TF_ISA_AVX512) | TF_ISA_BIT(TF_ISA_AVX2))

/* Fills m for window (wy, wx) of image b. Returns 1 when its tokens come from more than one
 * region (the mask applies), 0 otherwise. */
static int
map_window(const tf_window_args *a, int64_t b, int64_t wy, int64_t wx, window_map *m)
{
    const int64_t ws = a->ws, s = a->shift, C = a->H * a->D;
    const int64_t Hp = padded(a->Hh, ws), Wp = padded(a->Ww, ws);
    int mixed = 0;
    for (int64_t r = 0; r < ws; r++) {
        const int64_t ys = wy * ws + r;  /* row in the shifted frame */
        const int64_t y = (ys + s) % Hp; /* row in the (padded) image */
        const int32_t rr = s > 0 ? region(ys, Hp, ws, s) : 0;
        for (int64_t c = 0; c < ws; c++) {
            const int64_t xs = wx * ws + c, x = (xs + s) % Wp, t = r * ws + c;
            if (y < a->Hh && x < a->Ww) {
                const int64_t pos = (b * a->Hh + y) * a->Ww + x;
                m->src[t] = a->qkv + pos * 3 * C;
                m->dst[t] = a->out + pos * C;
            }
            else {
                m->src[t] = a->pad;
                m->dst[t] = NULL;
            }
            m->rid[t] = s > 0 ? rr * 3 + region(xs, Wp, ws, s) : 0;
            mixed |= m->rid[t] != m->rid[0];
        }
    }
    return mixed;
}

/* The table entry of head h for query i and key j of a ws x ws window. */
static inline float
table_bias(const tf_window_args *a, int64_t h, int64_t i, int64_t j)
{
    const int64_t ws = a->ws, tw = a->tw, side = 2 * tw - 1;
    const int64_t dr = i / ws - j / ws + tw - 1, dc = i % ws - j % ws + tw - 1;
    return a->table[h * side * side + dr * side + dc];
}

void
tf_window_bias(const float *table, int64_t H, int64_t tw, int64_t ws, float *bias)
{
    const int64_t N = ws * ws, NP = tf_window_lanes(N), side = 2 * tw - 1;
    for (int64_t h = 0; h < H; h++) {
        const float *th = table + h * side * side;
        for (int64_t j = 0; j < N; j++) {
            float *row = bias + (h * N + j) * NP;
            for (int64_t i = 0; i < NP; i++) {
                row[i] = i < N ? th[(i / ws - j / ws + tw - 1) * side + (i % ws - j % ws + tw - 1)]
                               : 0.0f;
            }
        }
    }
}

/* ------------------------------------------------------------------ reference path */

/* Work item (window bw of the batch, head h): every query row in double precision.
 * scores is (N,) scratch. */
static void
window_item_ref(const tf_window_args *a, int64_t bw, int64_t h, const window_map *m, int mixed,
                double *scores, double *acc)
{
    const int64_t N = a->ws * a->ws, D = a->D, C = a->H * D;
    for (int64_t i = 0; i < N; i++) {
        if (m->dst[i] == NULL && a->weights == NULL) {
            continue; /* a padding query: nobody reads its output */
        }
        const float *q = m->src[i] + h * D;
        double mx = -INFINITY;
        for (int64_t j = 0; j < N; j++) {
            const float *k = m->src[j] + C + h * D;
            double dot = 0.0;
            for (int64_t d = 0; d < D; d++) {
                dot += (double)q[d] * (double)k[d];
            }
            double sc = dot * (double)a->scale;
            if (a->table != NULL) {
                sc += (double)table_bias(a, h, i, j);
            }
            if (mixed && m->rid[i] != m->rid[j]) {
                sc += (double)a->region_mask;
            }
            scores[j] = sc;
            mx = sc > mx ? sc : mx;
        }
        double sum = 0.0;
        for (int64_t j = 0; j < N; j++) {
            scores[j] = exp(scores[j] - mx);
            sum += scores[j];
        }
        if (m->dst[i] != NULL) {
            memset(acc, 0, (size_t)D * sizeof(double));
            for (int64_t j = 0; j < N; j++) {
                const float *v = m->src[j] + 2 * C + h * D;
                for (int64_t d = 0; d < D; d++) {
                    acc[d] += scores[j] * (double)v[d];
                }
            }
            for (int64_t d = 0; d < D; d++) {
                m->dst[i][h * D + d] = (float)(acc[d] / sum);
            }
        }
        if (a->weights != NULL) {
            float *w = a->weights + ((bw * a->H + h) * N + i) * N;
            for (int64_t j = 0; j < N; j++) {
                w[j] = (float)(scores[j] / sum);
            }
        }
    }
}

/* ------------------------------------------------------------------ entry */

/* The level shifted window kernels run at now (show_config). */
tf_isa_level
tf_shifted_window_isa(void)
{
    return tf_isa_for(WINDOW_ISAS);
}

int
tf_window_attention(const tf_window_args *args, tf_err *err)
{
    tf_window_args a = *args;
    const int64_t ws = a.ws, N = ws * ws, NP = tf_window_lanes(N), D = a.D;
    const int64_t nWh = padded(a.Hh, ws) / ws, nWw = padded(a.Ww, ws) / ws;
    const int64_t items = a.B * nWh * nWw * a.H;
    void (*item_fast)(const tf_window_args *, int64_t, int64_t, const window_map *, int,
                      const float *, block_scratch *) = NULL;
    switch (tf_shifted_window_isa()) {
        case TF_ISA_AVX512: item_fast = tf_window_item_avx512; break;
        case TF_ISA_AVX2: item_fast = tf_window_item_avx2; break;
        default: break;
    }
    const int fast = item_fast != NULL;
    float *own_bias = NULL;
    if (fast && a.table != NULL && a.bias == NULL) {
        own_bias = tf_malloc((size_t)(a.H * N * NP) * sizeof(float));
        if (own_bias == NULL) {
            tf_err_set(err, TF_ERR_MEMORY, "out of memory for a (%lld, %lld, %lld) window bias",
                       (long long)a.H, (long long)N, (long long)NP);
            return -1;
        }
        tf_window_bias(a.table, a.H, a.tw, ws, own_bias);
        a.bias = own_bias;
    }
    int failed = 0;
#pragma omp parallel
    {
        window_map m;
        block_scratch s = {NULL, NULL, NULL, NULL, NULL};
        double *scores = NULL, *acc = NULL;
        m.src = tf_malloc((size_t)N * sizeof(*m.src));
        m.dst = tf_malloc((size_t)N * sizeof(*m.dst));
        m.rid = tf_malloc((size_t)NP * sizeof(*m.rid));
        int ok = m.src != NULL && m.dst != NULL && m.rid != NULL;
        if (fast) {
            s.qt = tf_malloc((size_t)(D * BQ) * sizeof(float));
            s.st = tf_malloc((size_t)(N * BQ) * sizeof(float));
            s.ot = tf_malloc((size_t)(D * BQ) * sizeof(float));
            s.kr = tf_malloc((size_t)N * sizeof(*s.kr));
            s.vr = tf_malloc((size_t)N * sizeof(*s.vr));
            ok = ok && s.qt != NULL && s.st != NULL && s.ot != NULL && s.kr != NULL && s.vr != NULL;
        }
        else {
            scores = tf_malloc((size_t)N * sizeof(double));
            acc = tf_malloc((size_t)D * sizeof(double));
            ok = ok && scores != NULL && acc != NULL;
        }
        if (ok) {
            memset(m.rid, 0, (size_t)NP * sizeof(*m.rid));
        }
        else {
#pragma omp atomic write
            failed = 1;
        }
        int64_t mapped = -1; /* the window m describes; items of one window are adjacent */
        int mixed = 0;
#pragma omp for schedule(static)
        for (int64_t it = 0; it < items; it++) {
            if (!ok) {
                continue;
            }
            const int64_t h = it % a.H, bw = it / a.H, w = bw % (nWh * nWw);
            if (bw != mapped) {
                mixed = map_window(&a, bw / (nWh * nWw), w / nWw, w % nWw, &m);
                mapped = bw;
            }
            if (fast) {
                item_fast(&a, bw, h, &m, mixed, a.bias, &s);
            }
            else {
                window_item_ref(&a, bw, h, &m, mixed, scores, acc);
            }
        }
        tf_free(m.src);
        tf_free(m.dst);
        tf_free(m.rid);
        tf_free(s.qt);
        tf_free(s.st);
        tf_free(s.ot);
        tf_free(s.kr);
        tf_free(s.vr);
        tf_free(scores);
        tf_free(acc);
    }
    tf_free(own_bias);
    if (failed) {
        tf_err_set(err, TF_ERR_MEMORY, "out of memory for window attention scratch buffers");
        return -1;
    }
    return 0;
}

#endif /* TF_ISA_PASS */
