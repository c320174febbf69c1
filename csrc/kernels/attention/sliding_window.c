/* sliding_window.c — Longformer attention composed from the fused attention kernel
 * (sdpa.c), which already visits only a band of keys, reads strided views in place,
 * takes a per-key mask and returns each row's log-sum-exp. Three calls and a merge:
 *
 *   local   for each residue r < dilation, the rows r, r + d, r + 2d, ... form a zero-copy
 *           strided sub-problem in which the dilated window is an ordinary band |i' - j'| <= w;
 *           keys that are padding or global are hidden by a (B, L) mask read with stride d.
 *   gkeys   every query against the G gathered global keys (copied: G rows per item),
 *           kv_len = the item's own count.
 *   gquery  the G global queries (own projections) against all real keys.
 *   merge   out = (o_local e^lse_local + o_gkeys e^lse_gkeys) / (e^lse_local + e^lse_gkeys)
 *           per row — one softmax over both key sets — then global rows take the gquery
 *           output and padding rows zeros.
 *
 * Memory: O(B H L D) temporaries (one extra output, the log-sum-exps, G-row gathers) plus
 * the attention kernel's O(tile) per-thread scratch; never L x L. The heavy work runs on
 * tf_attention's vector path (AVX-512 or AVX2) or its plain C reference path
 * (TFCORE_REFERENCE_KERNELS=1); the gathers, merge and weights here are plain loops over
 * O(B H L D) values.
 */
#include "kernels/attention/sliding_window.h"

#include "kernels/attention/sdpa.h"

#include <math.h>
#include <string.h>

int64_t
tf_swa_global_slots(const uint8_t *real, const uint8_t *global, int64_t B, int64_t L)
{
    int64_t G = 0;
    if (global == NULL) {
        return 0;
    }
    for (int64_t b = 0; b < B; b++) {
        int64_t n = 0;
        for (int64_t j = 0; j < L; j++) {
            n += global[b * L + j] && (real == NULL || real[b * L + j]);
        }
        G = n > G ? n : G;
    }
    return G;
}

/* Temporaries of one call (all tf_malloc'd, freed together). */
typedef struct {
    uint8_t *keymask;  /* (B, L) real and not global: keys of the local band */
    uint8_t *realmask; /* (B, L) real: keys of the global queries */
    int64_t *gcount;   /* (B,) global tokens per item */
    int64_t *gidx;     /* (B, G) their positions */
    int64_t *gslot;    /* (B, L) slot of a global token, -1 otherwise */
    float *lse1;       /* local log-sum-exps, residue r's (B, H, L_r) block after r' < r */
    float *kg, *vg;    /* (B, G, H, D) gathered global keys / values (regular projections) */
    float *qg;         /* (B, G, H, D) gathered global queries when a->gq is NULL */
    float *o2, *lse2;  /* (B, L, H, D), (B, H, L): attention over the global keys */
    float *o3, *lse3;  /* (B, G, H, D), (B, H, G): the global queries */
} swa_tmp;

static void
tmp_free(swa_tmp *t)
{
    tf_free(t->keymask);
    tf_free(t->realmask);
    tf_free(t->gcount);
    tf_free(t->gidx);
    tf_free(t->gslot);
    tf_free(t->lse1);
    tf_free(t->kg);
    tf_free(t->vg);
    tf_free(t->qg);
    tf_free(t->o2);
    tf_free(t->lse2);
    tf_free(t->o3);
    tf_free(t->lse3);
}

/* Rows of a (B, H, L, D) view at the global positions into dst (B, G, H, D), zero rows
 * past each item's count. */
static void
gather_rows(const float *src, int64_t sb, int64_t sh, int64_t sl, const swa_tmp *t,
            const tf_swa_args *a, float *dst)
{
    const int64_t G = a->G, H = a->H, D = a->D;
#pragma omp parallel for schedule(static)
    for (int64_t bg = 0; bg < a->B * G; bg++) {
        const int64_t b = bg / G, g = bg % G;
        for (int64_t h = 0; h < H; h++) {
            float *d = dst + ((bg * H) + h) * D;
            if (g < t->gcount[b]) {
                memcpy(d, src + b * sb + h * sh + t->gidx[b * G + g] * sl,
                       (size_t)D * sizeof(float));
            }
            else {
                memset(d, 0, (size_t)D * sizeof(float));
            }
        }
    }
}

/* Masks and global index lists from real / global. */
static void
build_masks(const tf_swa_args *a, swa_tmp *t)
{
    const int64_t B = a->B, L = a->L, G = a->G;
    for (int64_t b = 0; b < B; b++) {
        int64_t n = 0;
        for (int64_t j = 0; j < L; j++) {
            const int64_t bj = b * L + j;
            const uint8_t real = a->real == NULL || a->real[bj];
            const uint8_t glob = real && a->global != NULL && a->global[bj] && n < G;
            t->realmask[bj] = real;
            t->keymask[bj] = real && !glob;
            t->gslot[bj] = glob ? n : -1;
            if (glob) {
                t->gidx[b * (G > 0 ? G : 1) + n++] = j;
            }
        }
        t->gcount[b] = n;
    }
}

/* Rows of residue r under dilation d: r, r + d, ... < L. */
static inline int64_t
residue_len(int64_t L, int64_t d, int64_t r)
{
    return r < L ? (L - r + d - 1) / d : 0;
}

/* Local band attention: out and lse1 for every row (padding and global rows included; the
 * merge overwrites them). */
static int
local_part(const tf_swa_args *a, swa_tmp *t, tf_err *err)
{
    const int64_t d = a->dilation, L = a->L, H = a->H;
    int64_t off = 0;
    for (int64_t r = 0; r < d && r < L; r++) {
        const int64_t Lr = residue_len(L, d, r);
        tf_attn_args s;
        memset(&s, 0, sizeof(s));
        s.B = a->B;
        s.H = H;
        s.KVH = H;
        s.L = Lr;
        s.S = Lr;
        s.D = a->D;
        s.Dv = a->D;
        s.q = a->q + r * a->q_sl;
        s.q_sb = a->q_sb;
        s.q_sh = a->q_sh;
        s.q_sl = d * a->q_sl;
        s.k = a->k + r * a->k_sl;
        s.k_sb = a->k_sb;
        s.k_sh = a->k_sh;
        s.k_ss = d * a->k_sl;
        s.v = a->v + r * a->v_sl;
        s.v_sb = a->v_sb;
        s.v_sh = a->v_sh;
        s.v_ss = d * a->v_sl;
        s.out = a->out + r * a->o_sl;
        s.o_sb = a->o_sb;
        s.o_sh = a->o_sh;
        s.o_sl = d * a->o_sl;
        s.scale = a->scale;
        s.window_left = s.window_right = a->window;
        s.bool_mask = t->keymask + r;
        s.bm_sb = L;
        s.bm_sh = 0;
        s.bm_sl = 0;
        s.bm_ss = d;
        s.lse = t->lse1 + off;
        if (tf_attention(&s, err) < 0) {
            return -1;
        }
        off += a->B * H * Lr;
    }
    return 0;
}

/* Every query against the gathered global keys: o2 (B, L, H, D), lse2 (B, H, L). */
static int
global_keys_part(const tf_swa_args *a, swa_tmp *t, tf_err *err)
{
    const int64_t H = a->H, D = a->D, G = a->G, L = a->L;
    tf_attn_args s;
    memset(&s, 0, sizeof(s));
    s.B = a->B;
    s.H = H;
    s.KVH = H;
    s.L = L;
    s.S = G;
    s.D = D;
    s.Dv = D;
    s.q = a->q;
    s.q_sb = a->q_sb;
    s.q_sh = a->q_sh;
    s.q_sl = a->q_sl;
    s.k = t->kg;
    s.k_sb = G * H * D;
    s.k_sh = D;
    s.k_ss = H * D;
    s.v = t->vg;
    s.v_sb = G * H * D;
    s.v_sh = D;
    s.v_ss = H * D;
    s.out = t->o2;
    s.o_sb = L * H * D;
    s.o_sh = D;
    s.o_sl = H * D;
    s.scale = a->scale;
    s.window_left = s.window_right = -1;
    s.kv_len = t->gcount;
    s.lse = t->lse2;
    return tf_attention(&s, err);
}

/* The global queries against every real key: o3 (B, G, H, D), lse3 (B, H, G). */
static int
global_queries_part(const tf_swa_args *a, swa_tmp *t, tf_err *err)
{
    const int64_t H = a->H, D = a->D, G = a->G, L = a->L;
    tf_attn_args s;
    memset(&s, 0, sizeof(s));
    s.B = a->B;
    s.H = H;
    s.KVH = H;
    s.L = G;
    s.S = L;
    s.D = D;
    s.Dv = D;
    if (a->gq != NULL) {
        s.q = a->gq;
        s.q_sb = a->gq_sb;
        s.q_sh = a->gq_sh;
        s.q_sl = a->gq_sg;
    }
    else {
        s.q = t->qg;
        s.q_sb = G * H * D;
        s.q_sh = D;
        s.q_sl = H * D;
    }
    if (a->gk != NULL) {
        s.k = a->gk;
        s.k_sb = a->gk_sb;
        s.k_sh = a->gk_sh;
        s.k_ss = a->gk_sl;
    }
    else {
        s.k = a->k;
        s.k_sb = a->k_sb;
        s.k_sh = a->k_sh;
        s.k_ss = a->k_sl;
    }
    if (a->gv != NULL) {
        s.v = a->gv;
        s.v_sb = a->gv_sb;
        s.v_sh = a->gv_sh;
        s.v_ss = a->gv_sl;
    }
    else {
        s.v = a->v;
        s.v_sb = a->v_sb;
        s.v_sh = a->v_sh;
        s.v_ss = a->v_sl;
    }
    s.out = t->o3;
    s.o_sb = G * H * D;
    s.o_sh = D;
    s.o_sl = H * D;
    s.scale = a->scale;
    s.window_left = s.window_right = -1;
    s.bool_mask = t->realmask;
    s.bm_sb = L;
    s.bm_sh = 0;
    s.bm_sl = 0;
    s.bm_ss = 1;
    s.lse = t->lse3;
    return tf_attention(&s, err);
}

/* lse1 of (b, h, i): residue i % d's block, row i / d. */
static inline float
lse_local(const tf_swa_args *a, const swa_tmp *t, int64_t b, int64_t h, int64_t i)
{
    const int64_t d = a->dilation, r = i % d;
    int64_t off = 0;
    if (d == 1) {
        return t->lse1[(b * a->H + h) * a->L + i];
    }
    /* blocks of residues r' < r: the first (L % d) residues have one row more */
    const int64_t base = a->L / d, extra = a->L % d;
    off = a->B * a->H * (r * base + (r < extra ? r : extra));
    return t->lse1[off + (b * a->H + h) * residue_len(a->L, d, r) + i / d];
}

/* log(e^x + e^y) with -inf handled. */
static inline float
log_add(float x, float y)
{
    const float m = x > y ? x : y;
    if (m == -INFINITY) {
        return -INFINITY;
    }
    return m + logf(expf(x - m) + expf(y - m));
}

static void
merge(const tf_swa_args *a, const swa_tmp *t)
{
    const int64_t H = a->H, D = a->D, L = a->L, G = a->G;
#pragma omp parallel for schedule(static)
    for (int64_t bi = 0; bi < a->B * L; bi++) {
        const int64_t b = bi / L, i = bi % L, slot = t->gslot[bi];
        for (int64_t h = 0; h < H; h++) {
            float *o = a->out + b * a->o_sb + h * a->o_sh + i * a->o_sl;
            if (!t->realmask[bi]) {
                memset(o, 0, (size_t)D * sizeof(float));
            }
            else if (slot >= 0) {
                memcpy(o, t->o3 + ((b * G + slot) * H + h) * D, (size_t)D * sizeof(float));
            }
            else if (G > 0 && t->gcount[b] > 0) {
                const float l1 = lse_local(a, t, b, h, i), l2 = t->lse2[(b * H + h) * L + i];
                const float m = l1 > l2 ? l1 : l2;
                const float w1 = expf(l1 - m), w2 = expf(l2 - m), inv = 1.0f / (w1 + w2);
                const float *o2 = t->o2 + (bi * H + h) * D;
                for (int64_t e = 0; e < D; e++) {
                    o[e] = (o[e] * w1 + o2[e] * w2) * inv;
                }
            }
        }
    }
}

static inline float
dot(const float *x, const float *y, int64_t n)
{
    float s = 0.0f;
    for (int64_t e = 0; e < n; e++) {
        s += x[e] * y[e];
    }
    return s;
}

/* weights (B, H, L, G + 2w + 1) and gweights (B, H, L, G) from the final log-sum-exps. */
static void
write_weights(const tf_swa_args *a, const swa_tmp *t)
{
    const int64_t H = a->H, D = a->D, L = a->L, G = a->G, w = a->window, d = a->dilation;
    const int64_t W = G + 2 * w + 1;
    if (a->weights != NULL) {
#pragma omp parallel for schedule(dynamic, 16)
        for (int64_t row = 0; row < a->B * H * L; row++) {
            const int64_t b = row / (H * L), h = row / L % H, i = row % L, bi = b * L + i;
            float *wr = a->weights + row * W;
            memset(wr, 0, (size_t)W * sizeof(float));
            if (!t->realmask[bi] || t->gslot[bi] >= 0) {
                continue;
            }
            float lse = lse_local(a, t, b, h, i);
            if (G > 0 && t->gcount[b] > 0) {
                lse = log_add(lse, t->lse2[(b * H + h) * L + i]);
            }
            const float *q = a->q + b * a->q_sb + h * a->q_sh + i * a->q_sl;
            for (int64_t g = 0; g < t->gcount[b]; g++) {
                const float *k = a->k + b * a->k_sb + h * a->k_sh + t->gidx[b * G + g] * a->k_sl;
                wr[g] = expf(dot(q, k, D) * a->scale - lse);
            }
            for (int64_t c = -w; c <= w; c++) {
                const int64_t j = i + d * c;
                if (j < 0 || j >= L || !t->keymask[b * L + j]) {
                    continue;
                }
                const float *k = a->k + b * a->k_sb + h * a->k_sh + j * a->k_sl;
                wr[G + w + c] = expf(dot(q, k, D) * a->scale - lse);
            }
        }
    }
    if (a->gweights != NULL && G > 0) {
        const float *gk = a->gk ? a->gk : a->k;
        const int64_t sb = a->gk ? a->gk_sb : a->k_sb, sh = a->gk ? a->gk_sh : a->k_sh,
                      sl = a->gk ? a->gk_sl : a->k_sl;
#pragma omp parallel for schedule(static)
        for (int64_t row = 0; row < a->B * H * L; row++) {
            const int64_t b = row / (H * L), h = row / L % H, j = row % L;
            float *wr = a->gweights + row * G;
            memset(wr, 0, (size_t)G * sizeof(float));
            if (!t->realmask[b * L + j]) {
                continue;
            }
            const float *k = gk + b * sb + h * sh + j * sl;
            for (int64_t g = 0; g < t->gcount[b]; g++) {
                const float *q = a->gq ? a->gq + b * a->gq_sb + h * a->gq_sh + g * a->gq_sg
                                       : t->qg + ((b * G + g) * H + h) * D;
                wr[g] = expf(dot(q, k, D) * a->scale - t->lse3[(b * H + h) * G + g]);
            }
        }
    }
}

int
tf_swa(const tf_swa_args *a, tf_err *err)
{
    const int64_t B = a->B, H = a->H, L = a->L, D = a->D, G = a->G;
    swa_tmp t;
    int rc = -1;
    memset(&t, 0, sizeof(t));
    t.keymask = tf_malloc((size_t)(B * L));
    t.realmask = tf_malloc((size_t)(B * L));
    t.gcount = tf_malloc((size_t)B * sizeof(int64_t));
    t.gidx = tf_malloc((size_t)(B * (G > 0 ? G : 1)) * sizeof(int64_t));
    t.gslot = tf_malloc((size_t)(B * L) * sizeof(int64_t));
    t.lse1 = tf_malloc((size_t)(B * H * L) * sizeof(float));
    int ok = t.keymask && t.realmask && t.gcount && t.gidx && t.gslot && t.lse1;
    if (ok && G > 0) {
        const size_t grows = (size_t)(B * G * H * D) * sizeof(float);
        t.kg = tf_malloc(grows);
        t.vg = tf_malloc(grows);
        t.o3 = tf_malloc(grows);
        t.o2 = tf_malloc((size_t)(B * L * H * D) * sizeof(float));
        t.lse2 = tf_malloc((size_t)(B * H * L) * sizeof(float));
        t.lse3 = tf_malloc((size_t)(B * H * G) * sizeof(float));
        t.qg = a->gq == NULL ? tf_malloc(grows) : NULL;
        ok = t.kg && t.vg && t.o3 && t.o2 && t.lse2 && t.lse3 && (a->gq != NULL || t.qg);
    }
    if (!ok) {
        tf_err_set(err, TF_ERR_MEMORY,
                   "out of memory for Longformer attention temporaries "
                   "(batch %lld, length %lld, %lld global slots)",
                   (long long)B, (long long)L, (long long)G);
        goto done;
    }
    build_masks(a, &t);
    if (local_part(a, &t, err) < 0) {
        goto done;
    }
    if (G > 0) {
        gather_rows(a->k, a->k_sb, a->k_sh, a->k_sl, &t, a, t.kg);
        gather_rows(a->v, a->v_sb, a->v_sh, a->v_sl, &t, a, t.vg);
        if (a->gq == NULL) {
            gather_rows(a->q, a->q_sb, a->q_sh, a->q_sl, &t, a, t.qg);
        }
        if (global_keys_part(a, &t, err) < 0 || global_queries_part(a, &t, err) < 0) {
            goto done;
        }
    }
    merge(a, &t);
    write_weights(a, &t);
    rc = 0;
done:
    tmp_free(&t);
    return rc;
}
