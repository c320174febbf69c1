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
 *   tile (AVX-512): one work item is (b, h, query block, chunk of up to BQ = 64 queries of
 *        the block). The chunk's queries are packed transposed, Qᵀ (D, BQ), so the kernels
 *        vectorise over queries; key blocks are visited in chunks of up to BK = 64 keys with
 *        an online softmax per query lane; Oᵀ (Dv, BQ) accumulates in L1. K and V are read
 *        in place through strides. Scratch per thread: BQ (D + Dv + BK) floats.
 *   reference (plain C, any CPU; forced by tests): one query row at a time in double.
 */
#include "tfcore.h"

#include "attn_tile.h"
#include "simd.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#define BQ TF_TILE_BQ
#define BK TF_TILE_BK

typedef struct {
    const float *q;  int64_t q_sb, q_sh, q_sl;   /* (B, H, L, D) */
    const float *k;  int64_t k_sb, k_sh, k_ss;   /* (B, H, S, D) */
    const float *v;  int64_t v_sb, v_sh, v_ss;   /* (B, H, S, Dv) */
    float *out;      int64_t o_sb, o_sh, o_sl;   /* (B, H, L, Dv) */
    int64_t B, H, L, S, D, Dv;
    int64_t bs;                                  /* block size: L % bs == S % bs == 0 */
    int64_t nqb;                                 /* L / bs query blocks */
    const int64_t *layout; int64_t l_sb, l_sh, l_sq;  /* (B, H, nqb, nsel), broadcast strides */
    int64_t nsel;
    const uint8_t *global_q;                     /* (nqb,) or NULL */
    const uint8_t *key_mask;                     /* (B, S) or NULL */
    const uint8_t *query_mask;                   /* (B, L) or NULL */
    float scale;
} bs_args;

/* The key ranges query block qb of (b, h) visits, in order: for a global block the whole
 * sequence once, else each listed block. Returns the count; starts[] gets first keys. */
static int64_t
key_ranges(const bs_args *a, int64_t b, int64_t h, int64_t qb, int64_t *starts, int64_t *lens)
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
key_visible(const bs_args *a, int64_t b, int64_t j)
{
    return a->key_mask == NULL || a->key_mask[b * a->S + j];
}

static inline int
query_kept(const bs_args *a, int64_t b, int64_t i)
{
    return a->query_mask == NULL || a->query_mask[b * a->L + i];
}

/* ------------------------------------------------------------------ reference path */

/* One query row i of (b, h): out (Dv,) in double, acc (Dv,) scratch. */
static void
row_ref(const bs_args *a, int64_t b, int64_t h, int64_t i, const int64_t *starts,
        const int64_t *lens, int64_t nr, double *acc)
{
    const float *q = a->q + b * a->q_sb + h * a->q_sh + i * a->q_sl;
    float *out = a->out + b * a->o_sb + h * a->o_sh + i * a->o_sl;
    double m = -INFINITY, sum = 0.0;
    memset(acc, 0, (size_t)a->Dv * sizeof(double));
    for (int pass = 0; pass < 2; pass++) {  /* max, then exp-sum and weighted values */
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
                    m = s > m || s != s ? s : m;  /* NaN propagates */
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
            break;  /* no visible key */
        }
    }
    const int keep = query_kept(a, b, i) && m != -INFINITY;
    for (int64_t d = 0; d < a->Dv; d++) {
        out[d] = keep ? (float)(acc[d] / sum) : 0.0f;
    }
}

static int
block_sparse_ref(const bs_args *a)
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

/* ------------------------------------------------------------------ tile path (AVX-512) */

/* Hides keys c with hidden[c] != 0 in the scores st (nk, BQ) and recomputes the lane
 * maxima tmax (only chunks that hold padding keys need this). */
TF_AVX512 static void
hide_keys(float *st, int64_t nk, const uint8_t *hidden, __m512 *tmax)
{
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (int u = 0; u < 4; u++) {
        tmax[u] = ninf;
    }
    for (int64_t c = 0; c < nk; c++) {
        for (int u = 0; u < 4; u++) {
            float *p = st + c * BQ + 16 * u;
            const __m512 x = hidden[c] ? ninf : _mm512_loadu_ps(p);
            _mm512_storeu_ps(p, x);
            tmax[u] = _mm512_max_ps(tmax[u], x);
        }
    }
}

typedef struct {
    float *qt;        /* (D, BQ) packed, scaled queries; zero in unused lanes */
    float *st;        /* (BK, BQ) scores, then probabilities */
    float *ot;        /* (Dv, BQ) output accumulator */
    int64_t *starts;  /* (max(1, nsel),) key ranges of the query block */
    int64_t *lens;
} tile_scratch;

/* Queries i0 .. i0 + nq - 1 (one chunk of query block qb) of head h in batch b. */
TF_AVX512 static void
attend_chunk(const bs_args *a, int64_t b, int64_t h, int64_t qb, int64_t i0, int64_t nq,
             tile_scratch *ts)
{
    const int64_t D = a->D, Dv = a->Dv;
    const float *kbase = a->k + b * a->k_sb + h * a->k_sh;
    const float *vbase = a->v + b * a->v_sb + h * a->v_sh;
    /* Qᵀ with the softmax scale folded in: qt[d][r] = scale * q[i0 + r][d] */
    const float *qr[BQ];
    tf_tile_rows(a->q + b * a->q_sb + h * a->q_sh, a->q_sl, i0, nq, qr);
    tf_tile_pack_qt(qr, 0, nq, D, a->scale, ts->qt);
    memset(ts->ot, 0, (size_t)(Dv * BQ) * sizeof(float));
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    __m512 m[4], l[4];
    for (int u = 0; u < 4; u++) {
        m[u] = ninf;
        l[u] = _mm512_setzero_ps();
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
                continue;  /* every key of the chunk is padding */
            }
            __m512 tmax[4] = {ninf, ninf, ninf, ninf};
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
    for (int u = 0; u < 4; u++) {
        _mm512_storeu_ps(lsum + 16 * u, l[u]);
    }
    for (int64_t r = 0; r < nq; r++) {
        float *out = a->out + b * a->o_sb + h * a->o_sh + (i0 + r) * a->o_sl;
        const float inv = lsum[r] == 0.0f || !query_kept(a, b, i0 + r) ? 0.0f : 1.0f / lsum[r];
        for (int64_t dv = 0; dv < Dv; dv++) {
            out[dv] = inv == 0.0f ? 0.0f : ts->ot[dv * BQ + r] * inv;
        }
    }
}

static int
block_sparse_tiles(const bs_args *a)
{
    const int64_t chunks = (a->bs + BQ - 1) / BQ;  /* query chunks per block */
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

static int
block_sparse(const bs_args *a, tf_err *err)
{
    const int fast = tf_cpu_has_avx512() && !tf_force_reference;
    const int rc = fast ? block_sparse_tiles(a) : block_sparse_ref(a);
    if (rc < 0) {
        tf_err_set(err, TF_ERR_MEMORY, "out of memory for block-sparse attention scratch buffers");
    }
    return rc;
}

/* ------------------------------------------------------------------ Python binding */

/* Element stride of axis i, 0 for a size-1 axis. */
static inline int64_t
estride(PyArrayObject *a, int i)
{
    return PyArray_DIM(a, i) == 1 ? 0 : (int64_t)(PyArray_STRIDE(a, i) / PyArray_ITEMSIZE(a));
}

/* A (B, n) 0/1 mask of bool or integer dtype as a C-contiguous bool array (new ref). */
static PyArrayObject *
mask_arg(tf_state *st, PyObject *obj, const char *name, int64_t B, int64_t n, const char *what)
{
    if (!PyArray_Check(obj)) {
        return (PyArrayObject *)tf_type_error(st, "%s must be a numpy.ndarray of bool or integers, got %s",
                                              name, Py_TYPE(obj)->tp_name);
    }
    PyArrayObject *m = (PyArrayObject *)obj;
    if (!PyArray_ISBOOL(m) && !PyArray_ISINTEGER(m)) {
        return (PyArrayObject *)tf_type_error(st, "%s must hold bool or 0/1 integers, got dtype %s", name,
                                              tf_dtype_name(m));
    }
    if (PyArray_NDIM(m) != 2 || PyArray_DIM(m, 0) != B || PyArray_DIM(m, 1) != n) {
        char shape[96];
        tf_shape_str(m, shape, sizeof(shape));
        return (PyArrayObject *)tf_value_error(st, "%s has shape %s, expected (batch, %s) = (%lld, %lld)",
                                               name,
                                               shape, what, (long long)B, (long long)n);
    }
    return (PyArrayObject *)PyArray_FROMANY(obj, NPY_BOOL, 2, 2,
                                            NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_FORCECAST);
}

/* Is every written output value finite? */
static int
output_finite(const bs_args *a)
{
    for (int64_t b = 0; b < a->B; b++)
        for (int64_t h = 0; h < a->H; h++)
            for (int64_t i = 0; i < a->L; i++) {
                const float *o = a->out + b * a->o_sb + h * a->o_sh + i * a->o_sl;
                float acc = 0.0f;
                for (int64_t d = 0; d < a->Dv; d++) {
                    acc += o[d] * 0.0f;
                }
                if (acc != acc) {
                    return 0;
                }
            }
    return 1;
}

typedef struct {
    PyArrayObject *q, *k, *v, *layout, *glob, *kmask, *qmask, *out;
    uint8_t *global_q;
} bs_arrays;

static PyArrayObject *
qkv_arg(tf_state *st, PyObject *obj, const char *name)
{
    PyArrayObject *a = tf_arg_f32_view(st, obj, name, 4, 4, 1);
    if (a != NULL && tf_check_nonempty(st, a, name) < 0) {
        Py_CLEAR(a);
    }
    return a;
}

/* layout: int (nqb, nsel), (H, nqb, nsel) or (B, H, nqb, nsel), entries in [-1, nkb). */
static int
layout_arg(tf_state *st, PyObject *obj, bs_args *a, int64_t nkb, bs_arrays *arr)
{
    if (!PyArray_Check(obj) || !PyArray_ISINTEGER((PyArrayObject *)obj)) {
        tf_type_error(st, "layout must be a numpy.ndarray of integers (key block indices), got %s",
                      PyArray_Check(obj) ? tf_dtype_name((PyArrayObject *)obj) : Py_TYPE(obj)->tp_name);
        return -1;
    }
    const int nd = PyArray_NDIM((PyArrayObject *)obj);
    char shape[96];
    tf_shape_str((PyArrayObject *)obj, shape, sizeof(shape));
    if (nd < 2 || nd > 4) {
        tf_value_error(st, "layout has shape %s; expected (query_blocks, n), (heads, query_blocks, n) or "
                           "(batch, heads, query_blocks, n)", shape);
        return -1;
    }
    arr->layout = (PyArrayObject *)PyArray_FROMANY(obj, NPY_INT64, nd, nd,
                                                   NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_FORCECAST);
    if (arr->layout == NULL) {
        return -1;
    }
    PyArrayObject *lay = arr->layout;
    const int64_t full[3] = {a->B, a->H, a->nqb};
    int64_t strides[3] = {0, 0, 0};
    for (int i = 0; i < nd - 1; i++) {
        const int d = 3 - (nd - 1) + i;
        const int64_t n = PyArray_DIM(lay, i);
        if (n != full[d] && !(n == 1 && d < 2)) {
            tf_value_error(st, "layout has shape %s; its leading axes must be (batch, heads, query_blocks) = "
                               "(%lld, %lld, %lld) (batch and heads may be 1 or left out)",
                           shape, (long long)a->B, (long long)a->H, (long long)a->nqb);
            return -1;
        }
        strides[d] = estride(lay, i);
    }
    a->nsel = PyArray_DIM(lay, nd - 1);
    a->l_sb = strides[0];
    a->l_sh = strides[1];
    a->l_sq = PyArray_DIM(lay, nd - 2) == 1 ? a->nsel : strides[2];
    a->layout = PyArray_DATA(lay);
    const int64_t *p = a->layout;
    for (npy_intp i = 0; i < PyArray_SIZE(lay); i++) {
        if (p[i] < -1 || p[i] >= nkb) {
            tf_value_error(st, "layout holds key block %lld at flat index %lld; key blocks are 0 .. %lld "
                               "(key length %lld / block_size %lld), -1 = none",
                           (long long)p[i], (long long)i, (long long)(nkb - 1), (long long)a->S,
                           (long long)a->bs);
            return -1;
        }
    }
    return 0;
}

static int
global_arg(tf_state *st, PyObject *obj, bs_args *a, bs_arrays *arr)
{
    arr->glob = (PyArrayObject *)PyArray_FROMANY(obj, NPY_INT64, 0, 1,
                                                 NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_FORCECAST);
    if (arr->glob == NULL) {
        PyErr_Clear();
        tf_type_error(st, "global_blocks must be a sequence of query block indices");
        return -1;
    }
    PyArray_Descr *in = PyArray_Check(obj) ? PyArray_DESCR((PyArrayObject *)obj) : NULL;
    if (in != NULL && !PyTypeNum_ISINTEGER(in->type_num)) {
        tf_type_error(st, "global_blocks must hold integers, got dtype %s",
                      tf_dtype_name((PyArrayObject *)obj));
        return -1;
    }
    if ((arr->global_q = tf_malloc((size_t)a->nqb)) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memset(arr->global_q, 0, (size_t)a->nqb);
    const int64_t *g = PyArray_DATA(arr->glob);
    for (npy_intp i = 0; i < PyArray_SIZE(arr->glob); i++) {
        const int64_t qb = g[i] < 0 ? g[i] + a->nqb : g[i];  /* -1 = the last block */
        if (qb < 0 || qb >= a->nqb) {
            tf_value_error(st, "global_blocks holds %lld; query blocks are 0 .. %lld "
                               "(negative counts from the end)",
                           (long long)g[i], (long long)(a->nqb - 1));
            return -1;
        }
        arr->global_q[qb] = 1;
    }
    a->global_q = arr->global_q;
    return 0;
}

static PyObject *
block_sparse_attention(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"query", "key", "value", "layout", "block_size", "global_blocks",
                             "key_padding_mask", "query_mask", "scale", "out", NULL};
    PyObject *q_obj, *k_obj, *v_obj, *lay_obj, *glob_obj = Py_None, *kmask_obj = Py_None,
             *qmask_obj = Py_None, *scale_obj = Py_None, *out_obj = Py_None, *result = NULL;
    long long bs = 0;
    bs_arrays arr = {0};
    bs_args a;
    tf_err err = {0};
    tf_state *st = tf_state_of_module(module);
    memset(&a, 0, sizeof(a));
    if (!TF_PARSE(st, args, kwds, "OOOOL|$OOOOO:block_sparse_attention", kwlist, &q_obj, &k_obj, &v_obj,
                  &lay_obj, &bs, &glob_obj, &kmask_obj, &qmask_obj, &scale_obj, &out_obj)) {
        return NULL;
    }
    if ((arr.q = qkv_arg(st, q_obj, "query")) == NULL || (arr.k = qkv_arg(st, k_obj, "key")) == NULL ||
        (arr.v = qkv_arg(st, v_obj, "value")) == NULL)
        goto done;
    a.B = PyArray_DIM(arr.q, 0); a.H = PyArray_DIM(arr.q, 1);
    a.L = PyArray_DIM(arr.q, 2); a.D = PyArray_DIM(arr.q, 3);
    a.S = PyArray_DIM(arr.k, 2); a.Dv = PyArray_DIM(arr.v, 3);
    if (PyArray_DIM(arr.k, 0) != a.B || PyArray_DIM(arr.k, 1) != a.H || PyArray_DIM(arr.k, 3) != a.D) {
        char shape[96];
        tf_shape_str(arr.k, shape, sizeof(shape));
        tf_value_error(st, "key has shape %s, expected (%lld, %lld, S, %lld) like query "
                           "(batch, heads, _, head_dim)",
                       shape, (long long)a.B, (long long)a.H, (long long)a.D);
        goto done;
    }
    if (PyArray_DIM(arr.v, 0) != a.B || PyArray_DIM(arr.v, 1) != a.H || PyArray_DIM(arr.v, 2) != a.S) {
        char shape[96];
        tf_shape_str(arr.v, shape, sizeof(shape));
        tf_value_error(st, "value has shape %s, expected (%lld, %lld, %lld, Dv) like key", shape,
                       (long long)a.B,
                       (long long)a.H, (long long)a.S);
        goto done;
    }
    if (bs < 1 || bs > (1LL << 30)) {
        tf_value_error(st, "block_size must be in [1, 2^30], got %lld", bs);
        goto done;
    }
    if (a.L % bs != 0 || a.S % bs != 0) {
        tf_value_error(st, "query length %lld and key length %lld must be multiples of block_size %lld "
                           "(pad the sequence, as HF's BigBird does)", (long long)a.L, (long long)a.S, bs);
        goto done;
    }
    a.bs = bs;
    a.nqb = a.L / bs;
    if (layout_arg(st, lay_obj, &a, a.S / bs, &arr) < 0)
        goto done;
    if (glob_obj != Py_None && global_arg(st, glob_obj, &a, &arr) < 0)
        goto done;
    if (kmask_obj != Py_None) {
        if ((arr.kmask = mask_arg(st, kmask_obj, "key_padding_mask", a.B, a.S, "key length")) == NULL)
            goto done;
        a.key_mask = PyArray_DATA(arr.kmask);
    }
    if (qmask_obj != Py_None) {
        if ((arr.qmask = mask_arg(st, qmask_obj, "query_mask", a.B, a.L, "query length")) == NULL)
            goto done;
        a.query_mask = PyArray_DATA(arr.qmask);
    }
    if (scale_obj == Py_None) {
        a.scale = (float)(1.0 / sqrt((double)a.D));
    }
    else {
        const double s = PyFloat_AsDouble(scale_obj);
        if (s == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            tf_type_error(st, "scale must be a float or None");
            goto done;
        }
        if (!isfinite(s)) {
            tf_value_error(st, "scale must be finite, got %g", s);
            goto done;
        }
        a.scale = (float)s;
    }
    npy_intp odims[4] = {(npy_intp)a.B, (npy_intp)a.H, (npy_intp)a.L, (npy_intp)a.Dv};
    if (out_obj == Py_None) {
        if ((arr.out = (PyArrayObject *)PyArray_SimpleNew(4, odims, NPY_FLOAT32)) == NULL)
            goto done;
    }
    else {
        if ((arr.out = qkv_arg(st, out_obj, "out")) == NULL)
            goto done;
        if (!PyArray_CompareLists(PyArray_DIMS(arr.out), odims, 4)) {
            char shape[96];
            tf_shape_str(arr.out, shape, sizeof(shape));
            tf_value_error(st, "out has shape %s, expected (batch, heads, query length, value head_dim) = "
                               "(%lld, %lld, %lld, %lld)", shape, (long long)a.B, (long long)a.H,
                           (long long)a.L, (long long)a.Dv);
            goto done;
        }
        if (!PyArray_ISWRITEABLE(arr.out)) {
            tf_value_error(st, "out is read-only");
            goto done;
        }
        if (tf_check_no_overlap(st, arr.out, arr.q, "query") < 0 ||
            tf_check_no_overlap(st, arr.out, arr.k, "key") < 0 ||
            tf_check_no_overlap(st, arr.out, arr.v, "value") < 0)
            goto done;
    }
    a.q = PyArray_DATA(arr.q);
    a.q_sb = estride(arr.q, 0); a.q_sh = estride(arr.q, 1); a.q_sl = estride(arr.q, 2);
    a.k = PyArray_DATA(arr.k);
    a.k_sb = estride(arr.k, 0); a.k_sh = estride(arr.k, 1); a.k_ss = estride(arr.k, 2);
    a.v = PyArray_DATA(arr.v);
    a.v_sb = estride(arr.v, 0); a.v_sh = estride(arr.v, 1); a.v_ss = estride(arr.v, 2);
    a.out = PyArray_DATA(arr.out);
    a.o_sb = estride(arr.out, 0); a.o_sh = estride(arr.out, 1); a.o_sl = estride(arr.out, 2);
    int rc;
    Py_BEGIN_ALLOW_THREADS
    tf_threads_begin();
    rc = block_sparse(&a, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        tf_err_raise(st, &err);
        goto done;
    }
    if (!output_finite(&a)) {
        tf_value_error(st, "block_sparse_attention produced NaN or Inf: query, key or value holds "
                           "non-finite values (tfcore refuses them)");
        goto done;
    }
    result = Py_NewRef(arr.out);
done:
    Py_XDECREF(arr.q);
    Py_XDECREF(arr.k);
    Py_XDECREF(arr.v);
    Py_XDECREF(arr.layout);
    Py_XDECREF(arr.glob);
    Py_XDECREF(arr.kmask);
    Py_XDECREF(arr.qmask);
    Py_XDECREF(arr.out);
    tf_free(arr.global_q);
    return result;
}

PyDoc_STRVAR(block_sparse_attention_doc,
"block_sparse_attention($module, query, key, value, layout, block_size, *, global_blocks=None,\n"
"                       key_padding_mask=None, query_mask=None, scale=None, out=None)\n--\n\n"
"Block-sparse attention (BigBird), memory linear in the sequence length.\n\n"
"query (B, H, L, D), key (B, H, S, D), value (B, H, S, Dv) float32; views with a contiguous\n"
"last axis are read in place. L and S must be multiples of block_size; query block qb holds\n"
"queries qb*block_size .. (qb+1)*block_size - 1, and likewise for key blocks.\n\n"
"layout: integer array (query_blocks, n), (H, query_blocks, n) or (B, H, query_blocks, n):\n"
"the key blocks each query block attends to; -1 entries are skipped. A block listed twice\n"
"counts twice in the softmax (as HF's BigBird, whose eval-mode random blocks all repeat\n"
"block 0). global_blocks: query block indices (negative from the end) that attend to all\n"
"S keys instead of their layout row.\n\n"
"key_padding_mask (B, S): False/0 hides the key. query_mask (B, L): False/0 gives that\n"
"query a zero output (HF multiplies padded queries' context by 0). A query that sees no\n"
"key gets zeros. scale defaults to 1/sqrt(D). out: a preallocated (B, H, L, Dv) float32\n"
"array or view to write. Returns (B, H, L, Dv).");

static PyMethodDef block_sparse_methods[] = {
    {"block_sparse_attention", (PyCFunction)(void (*)(void))block_sparse_attention,
     METH_VARARGS | METH_KEYWORDS, block_sparse_attention_doc},
    {NULL, NULL, 0, NULL},
};

int
tf_register_block_sparse(PyObject *module, tf_state *st)
{
    return PyModule_AddFunctions(module, block_sparse_methods);
}
