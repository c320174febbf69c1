/* linear_attention.c — causal linear attention in recurrent, chunkwise and parallel form
 * (kernels/attention/linear_attention.h).
 *
 * The mode logic (la_head_* below) is written once and compiled three times: in each ISA
 * pass against vector row primitives built on kernels/simd.h, and once more, outside the
 * passes, against plain C primitives (the reference path). Only the primitives differ. */
#include "kernels/attention/linear_attention.h"

#include "kernels/simd.h"

#include <math.h>
#include <string.h>

#ifdef TF_ISA_PASS
/* ------------------------------------------------------------------ vector primitives */
#define LA_FN(name) TF_ISA_FN(name)

/* Every exponential here is of a sum of log-decays (<= 0; the one exception, in
 * la_gated_scores, is <= LA_SAFE): the flush-to-zero form (fewer multiply-port operations at
 * AVX2) only differs below 2^-125, where a decay factor is 0 to float precision anyway. */
#define la_vexp tf_vexp_ftz

/* a, b are (n,): sum a * b */
static inline float
la_dot(const float *a, const float *b, int64_t n)
{
    tf_vf acc = tf_vzero();
    int64_t i = 0;
    for (; i + TF_VW <= n; i += TF_VW) {
        acc = tf_vfma(tf_vload(a + i), tf_vload(b + i), acc);
    }
    if (i < n) {
        acc = tf_vfma(tf_vload_n(a + i, n - i), tf_vload_n(b + i, n - i), acc);
    }
    return tf_vreduce_add(acc);
}

/* y, x are (n,): y += s * x */
static inline void
la_axpy(float *y, float s, const float *x, int64_t n)
{
    const tf_vf vs = tf_vset1(s);
    int64_t i = 0;
    for (; i + TF_VW <= n; i += TF_VW) {
        tf_vstore(y + i, tf_vfma(vs, tf_vload(x + i), tf_vload(y + i)));
    }
    if (i < n) {
        tf_vstore_n(y + i, tf_vfma(vs, tf_vload_n(x + i, n - i), tf_vload_n(y + i, n - i)), n - i);
    }
}

/* q, k, bi, bj are (n,): sum q * k * exp(bi - bj) */
static inline float
la_dot_exp(const float *q, const float *k, const float *bi, const float *bj, int64_t n)
{
    tf_vf acc = tf_vzero();
    int64_t i = 0;
    for (; i + TF_VW <= n; i += TF_VW) {
        const tf_vf e = la_vexp(tf_vsub(tf_vload(bi + i), tf_vload(bj + i)));
        acc = tf_vfma(tf_vmul(tf_vload(q + i), tf_vload(k + i)), e, acc);
    }
    if (i < n) {
        const int64_t r = n - i;
        const tf_vf e = la_vexp(tf_vsub(tf_vload_n(bi + i, r), tf_vload_n(bj + i, r)));
        acc = tf_vfma(tf_vmul(tf_vload_n(q + i, r), tf_vload_n(k + i, r)), e, acc);
    }
    return tf_vreduce_add(acc);
}

/* out, x, bi, bj are (n,): out = x * exp(bi - bj), bj NULL meaning 0 */
static inline void
la_mul_exp(float *out, const float *x, const float *bi, const float *bj, int64_t n)
{
    for (int64_t i = 0; i < n; i += TF_VW) {
        const int64_t r = n - i;
        tf_vf arg = tf_vload_n(bi + i, r);
        if (bj != NULL) {
            arg = tf_vsub(arg, tf_vload_n(bj + i, r));
        }
        tf_vstore_n(out + i, tf_vmul(tf_vload_n(x + i, r), la_vexp(arg)), r);
    }
}

/* ------------------------------------------------------------------ register-tiled GEMM
 * la_gemm: C (M, N) (+)= A (M, K) · B (K, N), row-major with leading dimensions. Tiles of
 * LA_R rows x LA_NV vectors of accumulators, each A element broadcast against LA_NV B vectors:
 *   AVX-512 (32 registers): 6 x 4 = 24 accumulators + 4 B vectors + 1 broadcast
 *   AVX2    (16 registers): 6 x 2 = 12 accumulators + 2 B vectors + 1 broadcast
 * The last vector of a row may be partial (tail lanes, masked loads and stores). */
#if TF_VREGS >= 32
#define LA_NV 4
#else
#define LA_NV 2
#endif
#define LA_R 6

/* One tile: rows 0 .. nr - 1 of A / C against nv vectors of B / C columns (the last with
 * tail lanes); nr, nv are compile-time constants after inlining. */
static inline __attribute__((always_inline)) void
la_tile(const int nr, const int nv, int64_t K, const float *A, int64_t ars, int64_t aks,
        const float *B, int64_t ldb, float *Cm, int64_t ldc, int64_t tail, int acc, const float *rs)
{
    tf_vf c[LA_R][LA_NV];
    for (int r = 0; r < nr; r++) {
        const tf_vf f = tf_vset1(rs != NULL ? rs[r] : 1.0f);
        for (int v = 0; v < nv; v++) {
            const int64_t w = v == nv - 1 ? tail : TF_VW;
            c[r][v] = acc ? tf_vmul(tf_vload_n(Cm + r * ldc + v * TF_VW, w), f) : tf_vzero();
        }
    }
    for (int64_t k = 0; k < K; k++) {
        tf_vf b[LA_NV];
        const float *bk = B + k * ldb;
        for (int v = 0; v < nv; v++) {
            b[v] = v == nv - 1 ? tf_vload_n(bk + v * TF_VW, tail) : tf_vload(bk + v * TF_VW);
        }
        for (int r = 0; r < nr; r++) {
            const tf_vf a = tf_vset1(A[r * ars + k * aks]);
            for (int v = 0; v < nv; v++) {
                c[r][v] = tf_vfma(a, b[v], c[r][v]);
            }
        }
    }
    for (int r = 0; r < nr; r++) {
        for (int v = 0; v < nv; v++) {
            const int64_t w = v == nv - 1 ? tail : TF_VW;
            tf_vstore_n(Cm + r * ldc + v * TF_VW, c[r][v], w);
        }
    }
}

/* Rows nr at a time (nr constant) across all of N: nv vectors per tile. */
static inline __attribute__((always_inline)) void
la_tile_row(const int nr, int64_t N, int64_t K, const float *A, int64_t ars, int64_t aks,
            const float *B, int64_t ldb, float *Cm, int64_t ldc, int acc, const float *rs)
{
    for (int64_t j = 0; j < N; j += LA_NV * TF_VW) {
        const int64_t nvec = (N - j + TF_VW - 1) / TF_VW;
        const int64_t tail = nvec > LA_NV ? TF_VW : N - j - (nvec - 1) * TF_VW;
        switch (nvec >= LA_NV ? LA_NV : nvec) {
            case 1: la_tile(nr, 1, K, A, ars, aks, B + j, ldb, Cm + j, ldc, tail, acc, rs); break;
#if LA_NV >= 4
            case 2: la_tile(nr, 2, K, A, ars, aks, B + j, ldb, Cm + j, ldc, tail, acc, rs); break;
            case 3: la_tile(nr, 3, K, A, ars, aks, B + j, ldb, Cm + j, ldc, tail, acc, rs); break;
            default: la_tile(nr, 4, K, A, ars, aks, B + j, ldb, Cm + j, ldc, tail, acc, rs); break;
#else
            default: la_tile(nr, 2, K, A, ars, aks, B + j, ldb, Cm + j, ldc, tail, acc, rs); break;
#endif
        }
    }
}

/* C (M, N) = A (M, K) · B (K, N), or C = diag(rs) C + A · B when acc (rs (M,) row scales of
 * the old C, NULL meaning 1: folds a state's decay into its update). A's element (i, k) is A[i * ars + k * aks]
 * (row-major: ars = lda, aks = 1; Aᵀ stored row-major: ars = 1, aks = its row length); B
 * and C row-major with leading dimensions ldb, ldc. */
static void
la_gemm(int64_t M, int64_t N, int64_t K, const float *A, int64_t ars, int64_t aks, const float *B,
        int64_t ldb, float *Cm, int64_t ldc, int acc, const float *rs)
{
    int64_t i = 0;
    for (; i + LA_R <= M; i += LA_R) {
        la_tile_row(LA_R, N, K, A + i * ars, ars, aks, B, ldb, Cm + i * ldc, ldc, acc,
                    rs != NULL ? rs + i : NULL);
    }
    A += i * ars;
    Cm += i * ldc;
    rs = rs != NULL ? rs + i : NULL;
    switch (M - i) {
        case 1: la_tile_row(1, N, K, A, ars, aks, B, ldb, Cm, ldc, acc, rs); break;
        case 2: la_tile_row(2, N, K, A, ars, aks, B, ldb, Cm, ldc, acc, rs); break;
        case 3: la_tile_row(3, N, K, A, ars, aks, B, ldb, Cm, ldc, acc, rs); break;
        case 4: la_tile_row(4, N, K, A, ars, aks, B, ldb, Cm, ldc, acc, rs); break;
        case 5: la_tile_row(5, N, K, A, ars, aks, B, ldb, Cm, ldc, acc, rs); break;
        default: break;
    }
}

/* out, x, y are (n,): out = x * y */
static inline void
la_vmul(float *out, const float *x, const float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i += TF_VW) {
        const int64_t r = n - i;
        tf_vstore_n(out + i, tf_vmul(tf_vload_n(x + i, r), tf_vload_n(y + i, r)), r);
    }
}

/* out, x, y are (n,): out = x + y */
static inline void
la_add(float *out, const float *x, const float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i += TF_VW) {
        const int64_t r = n - i;
        tf_vstore_n(out + i, tf_vadd(tf_vload_n(x + i, r), tf_vload_n(y + i, r)), r);
    }
}

/* 1 if x (n,) holds no NaN or Inf and, when neg, no value > 0: a sum of x * 0 is NaN exactly
 * when x holds a non-finite value (as in kernels/finite.c); four chains (the rows are in cache
 * by now: the FMA latency is the bound), a running max */
static inline int
la_finite(const float *x, int64_t n, int neg)
{
    const tf_vf zero = tf_vzero();
    tf_vf a0 = zero, a1 = zero, a2 = zero, a3 = zero, m = zero;
    int64_t i = 0;
    for (; i + 4 * TF_VW <= n; i += 4 * TF_VW) {
        const tf_vf x0 = tf_vload(x + i), x1 = tf_vload(x + i + TF_VW);
        const tf_vf x2 = tf_vload(x + i + 2 * TF_VW), x3 = tf_vload(x + i + 3 * TF_VW);
        a0 = tf_vfma(x0, zero, a0);
        a1 = tf_vfma(x1, zero, a1);
        a2 = tf_vfma(x2, zero, a2);
        a3 = tf_vfma(x3, zero, a3);
        m = tf_vmax(m, tf_vmax(tf_vmax(x0, x1), tf_vmax(x2, x3)));
    }
    for (; i < n; i += TF_VW) {
        const tf_vf x0 = tf_vload_n(x + i, n - i); /* zeros past the end */
        a0 = tf_vfma(x0, zero, a0);
        m = tf_vmax(m, x0);
    }
    const float sum = tf_vreduce_add(tf_vadd(tf_vadd(a0, a1), tf_vadd(a2, a3)));
    return sum == sum && (!neg || tf_vreduce_max(m) <= 0.0f);
}

/* One gated row's factors (all (n,), see la_head_chunkwise): ex = exp(b - base),
 * qr = q ⊙ ex ⊙ s, qd = qr ⊙ e, ker = k ⊙ exp(bend - b), kt = ker ⊙ e2: one pass */
static inline void
la_gate_row(const float *q, const float *k, const float *b, const float *base, const float *bend,
            const float *e, const float *e2, float s, float *ex, float *qr, float *qd, float *ker,
            float *kt, int64_t n)
{
    const tf_vf vs = tf_vset1(s);
    for (int64_t i = 0; i < n; i += TF_VW) {
        const int64_t r = n - i;
        const tf_vf bi = tf_vload_n(b + i, r);
        const tf_vf x = la_vexp(tf_vsub(bi, tf_vload_n(base + i, r)));
        const tf_vf y = la_vexp(tf_vsub(tf_vload_n(bend + i, r), bi));
        const tf_vf qi = tf_vmul(tf_vmul(tf_vload_n(q + i, r), x), vs);
        const tf_vf ki = tf_vmul(tf_vload_n(k + i, r), y);
        tf_vstore_n(ex + i, x, r);
        tf_vstore_n(qr + i, qi, r);
        tf_vstore_n(qd + i, tf_vmul(qi, tf_vload_n(e + i, r)), r);
        tf_vstore_n(ker + i, ki, r);
        tf_vstore_n(kt + i, tf_vmul(ki, tf_vload_n(e2 + i, r)), r);
    }
}

/* out, bi, bj are (n,): out = exp(bi - bj), bj NULL meaning 0 */
static inline void
la_exp_sub(float *out, const float *bi, const float *bj, int64_t n)
{
    for (int64_t i = 0; i < n; i += TF_VW) {
        const int64_t r = n - i;
        tf_vf arg = tf_vload_n(bi + i, r);
        if (bj != NULL) {
            arg = tf_vsub(arg, tf_vload_n(bj + i, r));
        }
        tf_vstore_n(out + i, la_vexp(arg), r);
    }
}

/* dst (cols, rows), leading dimension ldd = the transpose of src (rows, cols), leading
 * dimension lds: TF_VW x TF_VW blocks transposed in registers, scalar edges */
static void
la_transpose(float *dst, int64_t ldd, const float *src, int64_t lds, int64_t rows, int64_t cols)
{
    int64_t i = 0;
    for (; i + TF_VW <= rows; i += TF_VW) {
        int64_t c = 0;
        for (; c + TF_VW <= cols; c += TF_VW) {
            tf_vf r[TF_VW];
            for (int k = 0; k < TF_VW; k++) {
                r[k] = tf_vload(src + (i + k) * lds + c);
            }
            tf_vtranspose(r);
            for (int k = 0; k < TF_VW; k++) {
                tf_vstore(dst + (c + k) * ldd + i, r[k]);
            }
        }
        for (; c < cols; c++) {
            for (int k = 0; k < TF_VW; k++) {
                dst[c * ldd + i + k] = src[(i + k) * lds + c];
            }
        }
    }
    for (; i < rows; i++) {
        for (int64_t c = 0; c < cols; c++) {
            dst[c * ldd + i] = src[i * lds + c];
        }
    }
}

#else
/* ------------------------------------------------------------------ plain C primitives */
#define LA_FN(name) name##_ref

static inline float
la_dot(const float *a, const float *b, int64_t n)
{
    float acc = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        acc += a[i] * b[i];
    }
    return acc;
}

static inline void
la_axpy(float *y, float s, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        y[i] += s * x[i];
    }
}

static inline float
la_dot_exp(const float *q, const float *k, const float *bi, const float *bj, int64_t n)
{
    float acc = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        acc += q[i] * k[i] * expf(bi[i] - bj[i]);
    }
    return acc;
}

static inline void
la_mul_exp(float *out, const float *x, const float *bi, const float *bj, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        out[i] = x[i] * expf(bj != NULL ? bi[i] - bj[i] : bi[i]);
    }
}

static void
la_gemm(int64_t M, int64_t N, int64_t K, const float *A, int64_t ars, int64_t aks, const float *B,
        int64_t ldb, float *Cm, int64_t ldc, int acc, const float *rs)
{
    for (int64_t i = 0; i < M; i++) {
        float *c = Cm + i * ldc;
        if (!acc) {
            memset(c, 0, (size_t)N * sizeof(float));
        }
        else if (rs != NULL) {
            for (int64_t j = 0; j < N; j++) {
                c[j] *= rs[i];
            }
        }
        for (int64_t k = 0; k < K; k++) {
            const float a = A[i * ars + k * aks];
            const float *b = B + k * ldb;
            for (int64_t j = 0; j < N; j++) {
                c[j] += a * b[j];
            }
        }
    }
}

static inline void
la_vmul(float *out, const float *x, const float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        out[i] = x[i] * y[i];
    }
}

static inline void
la_add(float *out, const float *x, const float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        out[i] = x[i] + y[i];
    }
}

static inline int
la_finite(const float *x, int64_t n, int neg)
{
    float acc[16] = {0.0f}, m = 0.0f;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        for (int u = 0; u < 16; u++) {
            acc[u] += x[i + u] * 0.0f;
            m = x[i + u] > m ? x[i + u] : m;
        }
    }
    for (; i < n; i++) {
        acc[0] += x[i] * 0.0f;
        m = x[i] > m ? x[i] : m;
    }
    float all = 0.0f;
    for (int u = 0; u < 16; u++) {
        all += acc[u];
    }
    return all == all && (!neg || m <= 0.0f);
}

static inline void
la_gate_row(const float *q, const float *k, const float *b, const float *base, const float *bend,
            const float *e, const float *e2, float s, float *ex, float *qr, float *qd, float *ker,
            float *kt, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        ex[i] = expf(b[i] - base[i]);
        qr[i] = q[i] * ex[i] * s;
        qd[i] = qr[i] * e[i];
        ker[i] = k[i] * expf(bend[i] - b[i]);
        kt[i] = ker[i] * e2[i];
    }
}

static inline void
la_exp_sub(float *out, const float *bi, const float *bj, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        out[i] = expf(bj != NULL ? bi[i] - bj[i] : bi[i]);
    }
}

static void
la_transpose(float *dst, int64_t ldd, const float *src, int64_t lds, int64_t rows, int64_t cols)
{
    for (int64_t i = 0; i < rows; i++) {
        for (int64_t c = 0; c < cols; c++) {
            dst[c * ldd + i] = src[i * lds + c];
        }
    }
}
#endif

/* ------------------------------------------------------------------ shared by all paths */

/* Rows of the causal strips of the intra-chunk products (the vector GEMM's tile height) */
#define LA_STRIP 6

/* 1 if rows [row0, row0 + n) of q, k, v (and the gate) are finite (and the gate <= 0) */
static inline int
la_rows_ok(const tf_la_args *a, int64_t row0, int64_t n)
{
    return la_finite(a->q + row0 * a->Dk, n * a->Dk, 0) &&
           la_finite(a->k + row0 * a->Dk, n * a->Dk, 0) &&
           la_finite(a->v + row0 * a->Dv, n * a->Dv, 0) &&
           (a->gate == NULL || la_finite(a->gate + row0 * a->Dk, n * a->Dk, 1));
}

/* Part `part` of `parts` of rows [row0, row0 + n) of q, k, v (and the gate) prefetched into
 * cache: the next chunk's rows come in a slice per intra-chunk strip, while the products run,
 * instead of at once in the check pass (which would then wait on memory). The empty volatile
 * asm keeps GCC from taking a function of prefetches alone for one without effects (its
 * calls were deleted as dead). */
static inline void
la_prefetch_rows(const tf_la_args *a, int64_t row0, int64_t n, int64_t part, int64_t parts)
{
    __asm__ __volatile__("");
    const float *base[4] = {a->q + row0 * a->Dk, a->k + row0 * a->Dk, a->v + row0 * a->Dv,
                            a->gate != NULL ? a->gate + row0 * a->Dk : NULL};
    const int64_t len[4] = {n * a->Dk, n * a->Dk, n * a->Dv, n * a->Dk}; /* floats */
    for (int t = 0; t < 4 && base[t] != NULL; t++) {
        const int64_t lines = (len[t] + 15) / 16; /* 64-byte lines */
        const int64_t l1 = lines * (part + 1) / parts;
        for (int64_t l = lines * part / parts; l < l1; l++) {
            __builtin_prefetch(base[t] + l * 16, 0, 3);
        }
    }
}

/* a bad input row: the caller rescans the inputs for the message */
static inline void
la_flag_bad(const tf_la_args *a)
{
    __atomic_store_n(a->bad, 1, __ATOMIC_RELAXED);
}

/* dst, src are (n,): dst = phi(src) */
static inline void
la_map(float *dst, const float *src, int64_t n, tf_la_feature_map fm)
{
    switch (fm) {
        case TF_LA_ELU1:
            for (int64_t i = 0; i < n; i++) {
                dst[i] = src[i] > 0.0f ? src[i] + 1.0f : expf(src[i]);
            }
            break;
        case TF_LA_RELU:
            for (int64_t i = 0; i < n; i++) {
                dst[i] = src[i] > 0.0f ? src[i] : 0.0f;
            }
            break;
        default: memcpy(dst, src, (size_t)n * sizeof(float)); break;
    }
}

/* S is (Dk, Dv), z (Dk,) or NULL: S = diag(e) S, z = e * z; e (Dk,) per channel or, when
 * NULL, the scalar es. */
static inline void
la_decay_state(float *S, float *z, const float *e, float es, int64_t Dk, int64_t Dv)
{
    for (int64_t c = 0; c < Dk; c++) {
        const float f = e != NULL ? e[c] : es;
        float *row = S + c * Dv;
        for (int64_t j = 0; j < Dv; j++) {
            row[j] *= f;
        }
        if (z != NULL) {
            z[c] *= f;
        }
    }
}

/* o is (Dv,): o += scale * qd S, returns scale * qd . z (0 when z is NULL); qd, z (Dk,) */
static inline float
la_read_state(float *o, const float *qd, const float *S, const float *z, float scale, int64_t Dk,
              int64_t Dv)
{
    for (int64_t c = 0; c < Dk; c++) {
        la_axpy(o, scale * qd[c], S + c * Dv, Dv);
    }
    return z != NULL ? scale * la_dot(qd, z, Dk) : 0.0f;
}

/* S (Dk, Dv) += kd^T v; z (Dk,) += kd when not NULL */
static inline void
la_write_state(float *S, float *z, const float *kd, const float *v, int64_t Dk, int64_t Dv)
{
    for (int64_t c = 0; c < Dk; c++) {
        la_axpy(S + c * Dv, kd[c], v, Dv);
        if (z != NULL) {
            z[c] += kd[c];
        }
    }
}

/* Gated chunks: rows per sub-block of the intra-chunk scores, and the largest decay (minus
 * the sum of a channel's log-gates over one sub-block) for which a diagonal sub-block is
 * computed as one product of rescaled rows (queries times exp(<= LA_SAFE), keys times
 * exp(>= -LA_SAFE): no overflow, no underflow to 0 of a factor whose product with the other is
 * not negligible); stronger decays take the exact per-pair path. */
#define LA_SUB  16
#define LA_SAFE 20.0f

/* Floats of chunk workspace: qc, kc, bc, qd, qr, ex, kt, ker (C, Dk); ke (Dk, C); scores p
 * (sub, C); qs (sub, Dk), (sub, Dk) spare; zero, e, e2, row (Dk,); decay powers (C,). */
static inline int64_t
la_chunk_workspace(int64_t C, int64_t Dk)
{
    const int64_t sub = C < LA_SUB ? C : LA_SUB;
    return 9 * C * Dk + sub * C + 2 * sub * Dk + 4 * Dk + C;
}

/* Floats of workspace one (b, h) needs. */
static inline int64_t
la_workspace(const tf_la_args *a)
{
    const int64_t Dk = a->Dk, Dv = a->Dv;
    int64_t rows = 1;
    if (a->mode == TF_LA_CHUNKWISE) {
        rows = a->chunk < a->L ? a->chunk : a->L;
    }
    else if (a->mode == TF_LA_PARALLEL) {
        rows = a->L;
    }
    if (a->mode == TF_LA_CHUNKWISE) { /* S, z, then la_head_chunkwise's buffers */
        return Dk * Dv + Dk + la_chunk_workspace(rows, Dk) + 16;
    }
    /* S, z, three (Dk,) temporaries, mapped q and k rows, cumulative log-decays (rows, Dk),
     * decay powers (rows,) */
    return Dk * Dv + Dk + 3 * Dk + 3 * rows * Dk + rows + 16;
}

/* One (b, h): the recurrence, one step at a time. ws holds la_workspace floats. */
static void
LA_FN(la_head_recurrent)(const tf_la_args *a, int64_t b, int64_t h, float *ws)
{
    const int64_t Dk = a->Dk, Dv = a->Dv, L = a->L, bh = b * a->H + h;
    float *S = ws, *z = a->normalize ? S + Dk * Dv : NULL;
    float *qm = S + Dk * Dv + Dk, *km = qm + Dk, *e = km + Dk;
    const float es = a->log_decay != NULL ? expf(a->log_decay[h]) : 1.0f;
    for (int64_t t = 0; t < L; t++) {
        const int64_t row = bh * L + t;
        la_map(qm, a->q + row * Dk, Dk, a->feature_map);
        la_map(km, a->k + row * Dk, Dk, a->feature_map);
        if (a->gate != NULL) {
            for (int64_t c = 0; c < Dk; c++) {
                e[c] = expf(a->gate[row * Dk + c]);
            }
            la_decay_state(S, z, e, 0.0f, Dk, Dv);
        }
        else if (a->log_decay != NULL) {
            la_decay_state(S, z, NULL, es, Dk, Dv);
        }
        la_write_state(S, z, km, a->v + row * Dv, Dk, Dv);
        float *o = a->out + row * Dv;
        memset(o, 0, (size_t)Dv * sizeof(float));
        const float den = la_read_state(o, qm, S, z, a->scale, Dk, Dv);
        if (a->normalize) {
            for (int64_t j = 0; j < Dv; j++) {
                o[j] /= den;
            }
        }
    }
}

/* Gated scores of one row block I = [i0, i0 + ni) of a chunk (n rows, buffers as in
 * la_head_chunkwise below; qr the block's rows; qm the chunk's mapped, unscaled queries):
 * pi (ni, .) (leading dimension C) holds every column J < I and, per strip of LA_STRIP rows
 * of I, the diagonal block's columns up to the strip's last row, zeros above the diagonal
 * (what the strip's P V product reads). Every product reads the chunk's keys ke
 * (Dk, C) = (K ⊙ exp(b_e - b_j))ᵀ as they are (e the last row of the key's sub-block): the
 * factor between two sub-blocks rides on the queries. */
static void
LA_FN(la_gated_scores)(int64_t Dk, int64_t C, int64_t n, int64_t sub, int64_t i0, const float *qm,
                       float scale, const float *kc, const float *bc, const float *ke,
                       const float *qr, const float *zero, float *qs, float *e, float *pi)
{
    const int64_t ni = n - i0 < sub ? n - i0 : sub, i1 = i0 + ni;
    const float *base = i0 > 0 ? bc + (i0 - 1) * Dk : zero, *bend = bc + (i1 - 1) * Dk;
    for (int64_t j0 = 0; j0 < i0; j0 += sub) { /* J < I: always full sub-blocks */
        const float *qj = qr;                  /* J = I - 1: e_J = r, the factor is 1 */
        if (j0 + sub < i0) {
            la_exp_sub(e, base, bc + (j0 + sub - 1) * Dk, Dk);
            for (int64_t i = 0; i < ni; i++) {
                la_vmul(qs + i * Dk, qr + i * Dk, e, Dk);
            }
            qj = qs;
        }
        la_gemm(ni, sub, Dk, qj, Dk, 1, ke + j0, C, pi + j0, C, 0, NULL);
    }
    float decay = 0.0f; /* the sub-block's largest decay over the channels */
    for (int64_t c = 0; c < Dk; c++) {
        const float d = base[c] - bend[c];
        decay = d > decay ? d : decay;
    }
    if (decay <= LA_SAFE) { /* queries times exp(b_r - b_eI) <= exp(LA_SAFE) */
        la_exp_sub(e, base, bend, Dk);
        for (int64_t i = 0; i < ni; i++) {
            la_vmul(qs + i * Dk, qr + i * Dk, e, Dk);
        }
        for (int64_t r0 = 0; r0 < ni; r0 += LA_STRIP) { /* causal: strip by strip */
            const int64_t w = ni - r0 < LA_STRIP ? ni : r0 + LA_STRIP;
            la_gemm(w - r0, w, Dk, qs + r0 * Dk, Dk, 1, ke + i0, C, pi + r0 * C + i0, C, 0, NULL);
            for (int64_t i = r0; i < w; i++) {
                memset(pi + i * C + i0 + i + 1, 0, (size_t)(w - i - 1) * sizeof(float));
            }
        }
    }
    else {
        for (int64_t i = 0; i < ni; i++) {
            const int64_t ii = i0 + i;
            for (int64_t j = i0; j <= ii; j++) {
                pi[i * C + j] =
                    scale * la_dot_exp(qm + ii * Dk, kc + j * Dk, bc + ii * Dk, bc + j * Dk, Dk);
            }
            memset(pi + i * C + ii + 1, 0, (size_t)(i1 - ii - 1) * sizeof(float));
        }
    }
}

/* One (b, h): chunks of a->chunk rows. Per chunk (n rows, scale folded into the query-side
 * factors), every step a GEMM-shaped product (la_gemm) between cheap vector passes:
 *   P (n, n)   = Q Kᵀ ⊙ decay mask (causal; gated: per sub-block, see below)
 *   O (n, Dv)  = P V + (Q ⊙ exp(b_i)) S                  (intra-chunk + the state before it)
 *   S (Dk, Dv) = diag(exp(b_last)) S + (K ⊙ exp(b_last - b_j))ᵀ V   (one product: the decay
 *                scales the accumulator as the product loads it)
 * b_i: log-decays cumulated from the chunk's start (per channel when gated). The scores and
 * P V go by strips of LA_STRIP rows, each only as wide as its last row's causal reach. Gated
 * scores (sum_c q_ic k_jc exp(b_ic - b_jc)) go per sub-block pair (I, J <= I) of LA_SUB rows,
 * with r the row before I (b_r = 0 for the first): for J < I,
 *   P_IJ = (Q_I ⊙ exp(b_i - b_r)) diag(exp(b_r - b_eJ)) (K_J ⊙ exp(b_eJ - b_j))ᵀ
 * (e_J the last row of J: every factor exp(<= 0)); for J = I the same with the middle
 * factor exp(b_r - b_eI) (>= 1) when the sub-block's decay is at most LA_SAFE, else pair by
 * pair.
 * Each chunk's input rows are checked (finite, gates <= 0) as they are first read: the check
 * brings them into cache for the products, and on failure the head stops (a->bad). */
static void
LA_FN(la_head_chunkwise)(const tf_la_args *a, int64_t b, int64_t h, float *ws)
{
    const int64_t Dk = a->Dk, Dv = a->Dv, L = a->L, bh = b * a->H + h;
    const int64_t C = a->chunk < L ? a->chunk : L, sub = C < LA_SUB ? C : LA_SUB;
    const int gated = a->gate != NULL, identity = a->feature_map == TF_LA_IDENTITY;
    const float ld = a->log_decay != NULL ? a->log_decay[h] : 0.0f, scale = a->scale;
    float *S = ws, *z = a->normalize ? S + Dk * Dv : NULL;
    float *qc = S + Dk * Dv + Dk, *kbuf = qc + C * Dk, *bc = kbuf + C * Dk, *qd = bc + C * Dk;
    float *qr = qd + C * Dk, *ex = qr + C * Dk, *kt = ex + C * Dk, *ker = kt + C * Dk;
    float *ke = ker + C * Dk;
    float *p = ke + Dk * C, *qs = p + sub * C;
    float *zero = qs + 2 * sub * Dk, *e = zero + Dk, *e2 = e + Dk, *row = e2 + Dk, *pw = row + Dk;
    float *fq = ex, *fk = ex + C; /* not gated: the rows' decay factors (for nf rows) */
    int64_t nf = 0, strips = 0;   /* strips: of a full chunk, prefetch slices */
    memset(zero, 0, (size_t)Dk * sizeof(float));
    for (int64_t d = 0; !gated && d < C; d++) { /* pw[C - 1 - d] = scale decay^d, d = i - j */
        pw[C - 1 - d] = scale * expf((float)d * ld);
    }
    for (int64_t i0 = 0; i0 < C; i0 += sub) {
        const int64_t ni = C - i0 < sub ? C - i0 : sub;
        strips += (ni + LA_STRIP - 1) / LA_STRIP;
    }
    for (int64_t s = 0; s < L; s += C) {
        const int64_t n = L - s < C ? L - s : C;
        const int64_t row0 = bh * L + s;
        if (!la_rows_ok(a, row0, n)) {
            la_flag_bad(a);
            return;
        }
        /* the next chunk's rows, a slice per strip below */
        const int64_t next = L - s - n < C ? L - s - n : C;
        int64_t strip = 0;
        const float *v = a->v + row0 * Dv;
        float *o = a->out + row0 * Dv;
        /* mapped (unscaled) queries and keys: the input rows themselves for the identity map */
        const float *qm = identity ? a->q + row0 * Dk : qc;
        const float *kc = identity ? a->k + row0 * Dk : kbuf;
        for (int64_t i = 0; !identity && i < n; i++) {
            la_map(qc + i * Dk, a->q + (row0 + i) * Dk, Dk, a->feature_map);
            la_map(kbuf + i * Dk, a->k + (row0 + i) * Dk, Dk, a->feature_map);
        }
        if (gated) { /* b_i = g_s + ... + g_{s+i}, per channel */
            memcpy(bc, a->gate + row0 * Dk, (size_t)Dk * sizeof(float));
            for (int64_t i = 1; i < n; i++) {
                la_add(bc + i * Dk, bc + (i - 1) * Dk, a->gate + (row0 + i) * Dk, Dk);
            }
        }
        else if (n != nf) { /* fq_i = scale decay^(i + 1), fk_i = decay^(n - 1 - i) */
            for (int64_t i = 0; i < n; i++) {
                fq[i] = scale * expf((float)(i + 1) * ld);
                fk[i] = expf((float)(n - 1 - i) * ld);
            }
            nf = n;
        }
        const float *blast = gated ? bc + (n - 1) * Dk : NULL;
        /* qd = Q ⊙ exp(b_i) reads the state, kt = K ⊙ exp(b_last - b_j) writes it, ke
         * (Dk, C) are the keys of the scores. Gated, per sub-block I (r the row before it,
         * e_I its last): ex_i = exp(b_i - b_r), qr_i = q_i ⊙ ex_i, qd_i = qr_i ⊙ exp(b_r),
         * ke_j = k_j ⊙ exp(b_eI - b_j), kt_j = ke_j ⊙ exp(b_last - b_eI) (all factors
         * exp(<= 0), two exponentials per row; the scale on qr and qd) */
        for (int64_t i0 = 0; gated && i0 < n; i0 += sub) {
            const int64_t i1 = n - i0 < sub ? n : i0 + sub;
            const float *base = i0 > 0 ? bc + (i0 - 1) * Dk : zero, *bend = bc + (i1 - 1) * Dk;
            la_exp_sub(e, base, NULL, Dk);
            la_exp_sub(e2, blast, bend, Dk);
            for (int64_t i = i0; i < i1; i++) {
                la_gate_row(qm + i * Dk, kc + i * Dk, bc + i * Dk, base, bend, e, e2, scale,
                            ex + i * Dk, qr + i * Dk, qd + i * Dk, ker + i * Dk, kt + i * Dk, Dk);
            }
        }
        for (int64_t i = 0; !gated && i < n; i++) {
            for (int64_t c = 0; c < Dk; c++) {
                qd[i * Dk + c] = qm[i * Dk + c] * fq[i];
                kt[i * Dk + c] = kc[i * Dk + c] * fk[i];
            }
        }
        la_transpose(ke, C, gated ? ker : kc, Dk, n, Dk);
        /* O = qd S: the state from before the chunk */
        la_gemm(n, Dv, Dk, qd, Dk, 1, S, Dv, o, Dv, 0, NULL);
        /* per row block I of sub rows, strip by strip (LA_STRIP rows, columns up to the
         * strip's last row): scores P (zeros above the diagonal), then O += P V */
        for (int64_t i0 = 0; i0 < n; i0 += sub) {
            const int64_t ni = n - i0 < sub ? n - i0 : sub;
            float *pi = p;
            if (gated) {
                LA_FN(la_gated_scores)(Dk, C, n, sub, i0, qm, scale, kc, bc, ke, qr + i0 * Dk, zero,
                                       qs, e, pi);
            }
            for (int64_t r0 = 0; r0 < ni; r0 += LA_STRIP) {
                const int64_t r1 = ni - r0 < LA_STRIP ? ni : r0 + LA_STRIP, w = i0 + r1;
                if (!gated) {
                    la_gemm(r1 - r0, w, Dk, qm + (i0 + r0) * Dk, Dk, 1, ke, C, pi + r0 * C, C, 0,
                            NULL);
                    for (int64_t i = r0; i < r1; i++) {
                        float *pr = pi + i * C;
                        const int64_t ii = i0 + i;
                        la_vmul(pr, pr, pw + C - 1 - ii, ii + 1);
                        memset(pr + ii + 1, 0, (size_t)(w - ii - 1) * sizeof(float));
                    }
                }
                la_gemm(r1 - r0, Dv, w, pi + r0 * C, C, 1, v, Dv, o + (i0 + r0) * Dv, Dv, 1, NULL);
                if (next > 0 && strip < strips) {
                    la_prefetch_rows(a, row0 + n, next, strip++, strips);
                }
            }
            for (int64_t i = 0; a->normalize && i < ni; i++) {
                float den = la_dot(qd + (i0 + i) * Dk, z, Dk);
                for (int64_t j = 0; j <= i0 + i; j++) {
                    den += pi[i * C + j];
                }
                float *oi = o + (i0 + i) * Dv;
                for (int64_t j = 0; j < Dv; j++) {
                    oi[j] /= den;
                }
            }
        }
        /* carry the state past the chunk: S = diag(exp(b_last)) S + kt V in one product (e
         * the row scales), z likewise */
        const float *rs = NULL;
        if (gated) {
            la_exp_sub(e, blast, NULL, Dk);
            rs = e;
        }
        else if (a->log_decay != NULL) {
            const float f = expf((float)n * ld);
            for (int64_t c = 0; c < Dk; c++) {
                e[c] = f;
            }
            rs = e;
        }
        la_gemm(Dk, Dv, n, kt, 1, Dk, v, Dv, S, Dv, 1, rs); /* kt (n, Dk) read as (Dk, n) */
        if (z != NULL && rs != NULL) {
            la_vmul(z, z, rs, Dk);
        }
        for (int64_t j = 0; z != NULL && j < n; j++) {
            la_axpy(z, 1.0f, kt + j * Dk, Dk);
        }
    }
}

/* One (b, h): every (i, j <= i) weight at once, from log-decays cumulated from the start. */
static void
LA_FN(la_head_parallel)(const tf_la_args *a, int64_t b, int64_t h, float *ws)
{
    const int64_t Dk = a->Dk, Dv = a->Dv, L = a->L, bh = b * a->H + h;
    const int gated = a->gate != NULL;
    const float ld = a->log_decay != NULL ? a->log_decay[h] : 0.0f;
    float *S = ws, *z = a->normalize ? S + Dk * Dv : NULL;
    float *qd = S + Dk * Dv + Dk, *kd = qd + Dk, *e = kd + Dk;
    float *qm = e + Dk, *km = qm + L * Dk, *bc = km + L * Dk;
    float *pw = bc + L * Dk; /* (L,) decay^d, d = i - j */
    for (int64_t d = 0; !gated && d < L; d++) {
        pw[d] = expf((float)d * ld);
    }
    for (int64_t i = 0; i < L; i++) {
        la_map(qm + i * Dk, a->q + (bh * L + i) * Dk, Dk, a->feature_map);
        la_map(km + i * Dk, a->k + (bh * L + i) * Dk, Dk, a->feature_map);
        if (gated) {
            const float *g = a->gate + (bh * L + i) * Dk;
            for (int64_t c = 0; c < Dk; c++) {
                bc[i * Dk + c] = (i > 0 ? bc[(i - 1) * Dk + c] : 0.0f) + g[c];
            }
        }
        else {
            bc[i] = (float)(i + 1) * ld;
        }
    }
    float *wrow = NULL;
    for (int64_t i = 0; i < L; i++) {
        const float *qi = qm + i * Dk;
        float *o = a->out + (bh * L + i) * Dv;
        memset(o, 0, (size_t)Dv * sizeof(float));
        if (a->weights != NULL) {
            wrow = a->weights + (bh * L + i) * L;
            memset(wrow, 0, (size_t)L * sizeof(float));
        }
        float den = 0.0f;
        if (a->s0 != NULL || a->z0 != NULL) { /* the initial state, decayed to step i */
            if (gated) {
                la_mul_exp(qd, qi, bc + i * Dk, NULL, Dk);
            }
            else {
                const float f = expf(bc[i]);
                for (int64_t c = 0; c < Dk; c++) {
                    qd[c] = qi[c] * f;
                }
            }
            if (a->s0 != NULL) {
                for (int64_t c = 0; c < Dk; c++) {
                    la_axpy(o, a->scale * qd[c], a->s0 + (bh * Dk + c) * Dv, Dv);
                }
            }
            if (a->normalize && a->z0 != NULL) {
                den = a->scale * la_dot(qd, a->z0 + bh * Dk, Dk);
            }
        }
        for (int64_t j = 0; j <= i; j++) {
            const float *kj = km + j * Dk;
            const float w = a->scale * (gated ? la_dot_exp(qi, kj, bc + i * Dk, bc + j * Dk, Dk)
                                              : pw[i - j] * la_dot(qi, kj, Dk));
            la_axpy(o, w, a->v + (bh * L + j) * Dv, Dv);
            den += w;
            if (wrow != NULL) {
                wrow[j] = w;
            }
        }
        if (a->normalize) {
            for (int64_t j = 0; j < Dv; j++) {
                o[j] /= den;
            }
            for (int64_t j = 0; wrow != NULL && j <= i; j++) {
                wrow[j] /= den;
            }
        }
    }
    if (a->s_out == NULL && a->z_out == NULL) {
        return;
    }
    /* the final state: S_L = diag(exp(B_last)) S_0 + sum_j kd_j^T v_j, kd_j = k_j exp(B_last - B_j) */
    memset(S, 0, (size_t)(Dk * Dv + Dk) * sizeof(float));
    if (a->s0 != NULL) {
        memcpy(S, a->s0 + bh * Dk * Dv, (size_t)(Dk * Dv) * sizeof(float));
    }
    if (z != NULL && a->z0 != NULL) {
        memcpy(z, a->z0 + bh * Dk, (size_t)Dk * sizeof(float));
    }
    const float *blast = gated ? bc + (L - 1) * Dk : NULL;
    if (gated) {
        for (int64_t c = 0; c < Dk; c++) {
            e[c] = expf(blast[c]);
        }
        la_decay_state(S, z, e, 0.0f, Dk, Dv);
    }
    else if (a->log_decay != NULL) {
        la_decay_state(S, z, NULL, expf(bc[L - 1]), Dk, Dv);
    }
    for (int64_t j = 0; j < L; j++) {
        if (gated) {
            la_mul_exp(kd, km + j * Dk, blast, bc + j * Dk, Dk);
        }
        else {
            const float f = expf(bc[L - 1] - bc[j]);
            for (int64_t c = 0; c < Dk; c++) {
                kd[c] = km[j * Dk + c] * f;
            }
        }
        la_write_state(S, z, kd, a->v + (bh * L + j) * Dv, Dk, Dv);
    }
}

/* One (b, h) in the mode asked for: load the initial state, run, store the final state.
 * (External: the dispatcher, compiled outside the ISA passes, calls the per-ISA versions.) */
void LA_FN(la_head)(const tf_la_args *a, int64_t b, int64_t h, float *ws);
void
LA_FN(la_head)(const tf_la_args *a, int64_t b, int64_t h, float *ws)
{
    const int64_t Dk = a->Dk, Dv = a->Dv, bh = b * a->H + h;
    float *S = ws, *z = ws + Dk * Dv;
    if (a->mode != TF_LA_CHUNKWISE && !la_rows_ok(a, bh * a->L, a->L)) {
        la_flag_bad(a); /* (chunkwise checks chunk by chunk, as it reads them) */
        return;
    }
    if (a->mode == TF_LA_PARALLEL) {
        LA_FN(la_head_parallel)(a, b, h, ws);
    }
    else {
        memset(ws, 0, (size_t)(Dk * Dv + Dk) * sizeof(float));
        if (a->s0 != NULL) {
            memcpy(S, a->s0 + bh * Dk * Dv, (size_t)(Dk * Dv) * sizeof(float));
        }
        if (a->z0 != NULL) {
            memcpy(z, a->z0 + bh * Dk, (size_t)Dk * sizeof(float));
        }
        if (a->mode == TF_LA_RECURRENT) {
            LA_FN(la_head_recurrent)(a, b, h, ws);
        }
        else {
            LA_FN(la_head_chunkwise)(a, b, h, ws);
        }
    }
    if (__atomic_load_n(a->bad, __ATOMIC_RELAXED)) {
        return;
    }
    if (a->s_out != NULL) {
        memcpy(a->s_out + bh * Dk * Dv, S, (size_t)(Dk * Dv) * sizeof(float));
    }
    if (a->z_out != NULL) {
        memcpy(a->z_out + bh * Dk, z, (size_t)Dk * sizeof(float));
    }
}

#ifndef TF_ISA_PASS
/* ------------------------------------------------------------------ dispatcher */

TF_ISA_DECLARE(void, la_head, (const tf_la_args *a, int64_t b, int64_t h, float *ws))

#define LINEAR_ATTENTION_ISAS (TF_ISA_BIT(TF_ISA_AVX512) | TF_ISA_BIT(TF_ISA_AVX2))

tf_isa_level
tf_linear_attention_isa(void)
{
    return tf_isa_for(LINEAR_ATTENTION_ISAS);
}

int
tf_linear_attention(const tf_la_args *a, tf_err *err)
{
    void (*head)(const tf_la_args *, int64_t, int64_t, float *) = la_head_ref;
    switch (tf_linear_attention_isa()) {
        case TF_ISA_AVX512: head = la_head_avx512; break;
        case TF_ISA_AVX2: head = la_head_avx2; break;
        default: break;
    }
    const int64_t per = la_workspace(a), BH = a->B * a->H;
    int failed = 0;
#pragma omp parallel if (BH > 1)
    {
        float *ws = tf_malloc((size_t)per * sizeof(float));
        if (ws == NULL) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t bh = 0; bh < BH; bh++) {
            if (ws != NULL && !__atomic_load_n(a->bad, __ATOMIC_RELAXED)) {
                head(a, bh / a->H, bh % a->H, ws);
            }
        }
        tf_free(ws);
    }
    if (failed) {
        tf_err_set(err, TF_ERR_MEMORY,
                   "linear_attention: out of memory for %lld floats of workspace", (long long)per);
        return -1;
    }
    return 0;
}
#endif /* TF_ISA_PASS */
