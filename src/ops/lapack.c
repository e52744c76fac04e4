/*
 * Dense linear algebra through LAPACK: solve, inverse, det, logdet,
 * cholesky, lstsq (and pinv on it) and eigh, plus the internal
 * triangular_solve that cholesky's backward rule needs. Matrices are the last
 * two axes; leading axes are a batch, looped over one matrix at a time.
 *
 * Row-major data and column-major LAPACK: the buffer of a row-major matrix
 * M, read by LAPACK, is M^T. No op transposes its input matrix; each picks
 * the call that works on M^T instead:
 *   - inverse: (M^T)^-1 = (M^-1)^T, so getrf + getri in place give M^-1.
 *   - det, logdet: det(M^T) = det(M).
 *   - solve: getrf factors M^T; getrs with TRANS = 'T' then solves M x = b.
 *     The right-hand sides are copied into column-major scratch and back.
 *   - cholesky: potrf with UPLO = 'U' reads the upper triangle of M^T, which
 *     is the lower triangle of M, and leaves U with U^T U = M there; read
 *     row-major, that is L = U^T.
 *   - triangular_solve: a lower-triangular M is upper-triangular to LAPACK,
 *     and op(M) x = b becomes trtrs on M^T with TRANS flipped.
 *
 * Backward rules are written with differentiable ops (matmul, transpose,
 * mul, and these ops themselves), so every op here has second derivatives:
 *   inverse   dA = -Y^T g Y^T, Y = the op's own output
 *   solve     gb = solve(A^T, g), gA = -gb x^T, x = the op's own output
 *   det       dA = g det(A) A^-T (fails on a singular matrix)
 *   logdet    dA = g A^-T
 *   cholesky  see jac__vjp_cholesky
 *
 * LAPACK is never handed an argument it would reject, so its error handler
 * (xerbla, which prints) is never reached; extents must fit in an int.
 *
 * SPDX-License-Identifier: MIT
 */
#include "ops/ops.h"

#include <float.h>
#include <limits.h>
#include <math.h>

/* Fortran LAPACK as exported by OpenBLAS (and the reference LAPACK), with
 * gfortran's calling convention: every argument by reference, and one hidden
 * length per CHARACTER argument appended at the end. */
extern void dgetrf_(const int *m, const int *n, double *a, const int *lda,
                    int *ipiv, int *info);
extern void dgetri_(const int *n, double *a, const int *lda, const int *ipiv,
                    double *work, const int *lwork, int *info);
extern void dgetrs_(const char *trans, const int *n, const int *nrhs,
                    const double *a, const int *lda, const int *ipiv, double *b,
                    const int *ldb, int *info, size_t trans_len);
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda,
                    int *info, size_t uplo_len);
extern void dgeqrf_(const int *m, const int *n, double *a, const int *lda,
                    double *tau, double *work, const int *lwork, int *info);
extern void dormqr_(const char *side, const char *trans, const int *m,
                    const int *n, const int *k, const double *a, const int *lda,
                    const double *tau, double *c, const int *ldc, double *work,
                    const int *lwork, int *info, size_t side_len,
                    size_t trans_len);
extern void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a,
                    const int *lda, double *w, double *work, const int *lwork,
                    int *iwork, const int *liwork, int *info, size_t jobz_len,
                    size_t uplo_len);
extern void dtrtrs_(const char *uplo, const char *trans, const char *diag,
                    const int *n, const int *nrhs, const double *a,
                    const int *lda, double *b, const int *ldb, int *info,
                    size_t uplo_len, size_t trans_len, size_t diag_len);

/* ------------------------------------------------------------------------ */
/* Shared checks and helpers                                                */
/* ------------------------------------------------------------------------ */

/* Checks that a is a square matrix or a batch of them whose extent fits in
 * LAPACK's int; stores that extent in *n. */
static bool square_arg(jac_ctx *ctx, const char *op, const char *what,
                       const jac_tensor *a, int *n)
{
    char s[JAC__SHAPE_STR_MAX];
    if (a->ndim < 2) {
        jac__error(ctx, JAC_ERR_RANK,
                   "%s: %s must be a matrix or a batch of matrices (rank >= "
                   "2), got shape %s",
                   op, what, jac__shape_str(s, sizeof s, a->ndim, a->shape));
        return false;
    }
    int64_t rows = a->shape[a->ndim - 2], cols = a->shape[a->ndim - 1];
    if (rows != cols) {
        jac__error(ctx, JAC_ERR_SHAPE, "%s: %s must be square, got shape %s",
                   op, what, jac__shape_str(s, sizeof s, a->ndim, a->shape));
        return false;
    }
    if (rows > INT_MAX) {
        jac__error(ctx, JAC_ERR_OVERFLOW,
                   "%s: extent %lld of %s (shape %s) exceeds LAPACK's int "
                   "range",
                   op, (long long)rows, what,
                   jac__shape_str(s, sizeof s, a->ndim, a->shape));
        return false;
    }
    *n = (int)rows;
    return true;
}

/* Whether every value of t is finite; otherwise reports JAC_ERR_VALUE
 * naming op and what. */
static bool finite_arg(jac_ctx *ctx, const char *op, const char *what,
                       const jac_tensor *t)
{
    for (int64_t i = 0; i < t->numel; i++) {
        if (!isfinite(t->data[i])) {
            char s[JAC__SHAPE_STR_MAX];
            jac__error(ctx, JAC_ERR_VALUE,
                       "%s: %s (shape %s) holds %g at element %lld", op, what,
                       jac__shape_str(s, sizeof s, t->ndim, t->shape),
                       t->data[i], (long long)i);
            return false;
        }
    }
    return true;
}

/* Scratch from the context's allocator, freed by scratch_free. */
typedef struct scratch {
    void *ptr;
    size_t bytes;
} scratch;

static void *scratch_get(jac_ctx *ctx, const char *op, scratch *s, size_t bytes)
{
    s->bytes = bytes ? bytes : 1;
    s->ptr = jac__alloc(ctx, s->bytes);
    if (s->ptr == NULL)
        jac__error(ctx, JAC_ERR_NO_MEMORY,
                   "%s: out of memory for LAPACK workspace", op);
    return s->ptr;
}

static void scratch_free(jac_ctx *ctx, scratch *s)
{
    if (s->ptr)
        jac__free(ctx, s->ptr, s->bytes);
    s->ptr = NULL;
}

/* A LAPACK argument error cannot happen after the checks above; if it does,
 * it is a library bug, reported rather than ignored. */
static jac_tensor *lapack_bug(jac_ctx *ctx, const char *op, const char *routine,
                              int info)
{
    jac__error(ctx, JAC_ERR_STATE,
               "%s: internal error: %s rejected argument %d", op, routine,
               -info);
    return NULL;
}

/* Starts it over a broadcast batch of shape bshape (nbatch axes) of pairs
 * of a matrix of t (mat elements each, tt batch axes) and a block of u (blk
 * elements each, tu batch axes): operand 0 is the element offset of the
 * matrix in t, operand 1 of the block in u. Batch axes align on the right
 * and extents of 1 stretch. Returns the number of rows. */
static int64_t batch_pairs(jac__iter *it, int nbatch, const int64_t *bshape,
                           const jac_tensor *t, int tt, int64_t mat,
                           const jac_tensor *u, int tu, int64_t blk)
{
    int64_t st[JAC_MAX_DIMS], su[JAC_MAX_DIMS];
    jac__stretch_strides(tt, t->shape, mat, nbatch, st);
    jac__stretch_strides(tu, u->shape, blk, nbatch, su);
    const int64_t *strides[2] = {st, su};
    return jac__iter_init(it, nbatch, bshape, 2, strides);
}

/* Copies an n x k row-major block into column-major order, or back. */
static void to_column_major(int64_t n, int64_t k, const double *src,
                            double *dst)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < k; j++)
            dst[i + j * n] = src[i * k + j];
}

static void from_column_major(int64_t n, int64_t k, const double *src,
                              double *dst)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < k; j++)
            dst[i * k + j] = src[i + j * n];
}

/* How solve_pairs solves: a NULL tri_kind means with LU factors (getrf +
 * getrs, the factors reused while consecutive pairs share a matrix); else
 * by trtrs with a triangular matrix, only its lower (or upper) triangle
 * read, transposed when trans. */
typedef struct tri_kind {
    bool lower, trans;
} tri_kind;

/* Solves every pair of a broadcast batch (nbatch axes of shape ++ n ++ k)
 * into x, which has that shape and is not empty: the matrix of a (n x n,
 * ta batch axes) with the right-hand sides of b (n x k, tb batch axes),
 * handed to LAPACK through column-major scratch. Returns false with the
 * error reported (op names the caller). */
static bool solve_pairs(jac_ctx *ctx, const char *op, const jac_tensor *a,
                        int ta, const jac_tensor *b, int tb, int nbatch,
                        const int64_t *shape, int64_t k, const tri_kind *tri,
                        jac_tensor *x)
{
    int n = (int)shape[nbatch], nrhs = (int)k;
    int64_t mat = (int64_t)n * n, rhs = (int64_t)n * k;
    /* LU: the factors, the right-hand sides, the pivots. */
    int64_t nlu = tri ? 0 : mat;
    size_t bytes = (size_t)(nlu + rhs) * sizeof(double) +
                   (tri ? 0 : (size_t)n * sizeof(int));
    scratch s;
    double *lu = scratch_get(ctx, op, &s, bytes);
    if (lu == NULL)
        return false;
    double *w = lu + nlu;
    int *ipiv = (int *)(void *)(w + rhs);
    /* Row-major a is a^T to LAPACK: getrs solves with TRANS = 'T'; for
     * trtrs the triangle flips, and so does TRANS. */
    const char *uplo = tri && tri->lower ? "U" : "L";
    const char *tr = tri && tri->trans ? "N" : "T";
    int64_t factored = -1;
    double *xc = x->data;
    jac__iter it;
    int64_t rows = batch_pairs(&it, nbatch, shape, a, ta, mat, b, tb, rhs);
    for (int64_t r = 0; r < rows; r++, jac__iter_next(&it)) {
        for (int64_t i = 0; i < it.inner; i++, xc += rhs) {
            int info = 0;
            int64_t oa = it.off[0] + i * it.step[0];
            if (tri == NULL && oa != factored) {
                memcpy(lu, a->data + oa, (size_t)mat * sizeof(double));
                dgetrf_(&n, &n, lu, &n, ipiv, &info);
                if (info != 0) {
                    scratch_free(ctx, &s);
                    if (info < 0) {
                        lapack_bug(ctx, op, "getrf", info);
                        return false;
                    }
                    char sa[JAC__SHAPE_STR_MAX];
                    jac__error(
                        ctx, JAC_ERR_VALUE,
                        "%s: matrix %lld of the batch of a (shape %s) "
                        "is singular",
                        op, (long long)(oa / mat),
                        jac__shape_str(sa, sizeof sa, a->ndim, a->shape));
                    return false;
                }
                factored = oa;
            }
            to_column_major(n, k, b->data + it.off[1] + i * it.step[1], w);
            if (tri == NULL)
                dgetrs_("T", &n, &nrhs, lu, &n, ipiv, w, &n, &info, 1);
            else
                dtrtrs_(uplo, tr, "N", &n, &nrhs, a->data + oa, &n, w, &n,
                        &info, 1, 1, 1);
            if (info != 0) {
                scratch_free(ctx, &s);
                if (info < 0 || tri == NULL) /* getrs fails on arguments only */
                    lapack_bug(ctx, op, tri ? "trtrs" : "getrs", info);
                else
                    jac__error(ctx, JAC_ERR_VALUE,
                               "%s: triangular matrix %lld of the batch is "
                               "singular",
                               op, (long long)(oa / mat));
                return false;
            }
            from_column_major(n, k, w, xc);
        }
    }
    scratch_free(ctx, &s);
    return true;
}

/* A constant n x n mask, not requiring gradients: 1 strictly inside the
 * lower (or upper) triangle, diag on the diagonal, 0 elsewhere. Multiplying
 * by it is a differentiable projection onto the triangle. */
static jac_tensor *triangle_mask(jac_ctx *ctx, int64_t n, bool lower,
                                 double diag)
{
    int64_t shape[2] = {n, n};
    jac_tensor *m = jac_zeros(ctx, 2, shape);
    if (m == NULL)
        return NULL;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < n; j++) {
            bool inside = lower ? i > j : i < j;
            m->data[i * n + j] = i == j ? diag : inside ? 1.0 : 0.0;
        }
    }
    return m;
}

/* A^T over the last two axes. */
static jac_tensor *mT(jac_ctx *ctx, jac_tensor *a)
{
    return jac_transpose(ctx, a, -1, -2);
}

/* ------------------------------------------------------------------------ */
/* inverse                                                                  */
/* ------------------------------------------------------------------------ */

/* getrf + getri on each matrix, in place in the result. op and why name the
 * caller in messages: det's backward rule needs the inverse too. */
static jac_tensor *inverse_impl(jac_ctx *ctx, jac_tensor *a, const char *op,
                                const char *why)
{
    int n;
    if (!square_arg(ctx, op, "the matrix", a, &n) ||
        !finite_arg(ctx, op, "the matrix", a))
        return NULL;
    jac_tensor *y = jac__tensor_alloc(ctx, "inverse", a->ndim, a->shape);
    if (y == NULL)
        return NULL;
    memcpy(y->data, a->data, (size_t)a->numel * sizeof(double));
    if (y->numel > 0) {
        int64_t mat = (int64_t)n * n, count = y->numel / mat;
        int info = 0, query = -1;
        double opt = 0.0;
        dgetri_(&n, y->data, &n, NULL, &opt, &query, &info);
        int lwork = opt > (double)n && opt < (double)INT_MAX ? (int)opt : n;
        scratch s;
        double *work = scratch_get(ctx, op, &s,
                                   (size_t)lwork * sizeof(double) +
                                       (size_t)n * sizeof(int));
        if (work == NULL)
            return NULL;
        int *ipiv = (int *)(void *)(work + lwork);
        for (int64_t c = 0; c < count; c++) {
            double *m = y->data + c * mat;
            dgetrf_(&n, &n, m, &n, ipiv, &info);
            if (info == 0)
                dgetri_(&n, m, &n, ipiv, work, &lwork, &info);
            if (info != 0) {
                scratch_free(ctx, &s);
                if (info < 0)
                    return lapack_bug(ctx, op, "getrf/getri", info);
                jac__error(ctx, JAC_ERR_VALUE,
                           "%s: matrix %lld of the batch is singular%s", op,
                           (long long)c, why);
                return NULL;
            }
        }
        scratch_free(ctx, &s);
    }
    return jac__record_result(ctx, JAC__OP_INVERSE, y, 1, &a, NULL);
}

jac_tensor *jac_inverse(jac_ctx *ctx, jac_tensor *a)
{
    if (ctx == NULL || !jac__check_arg(ctx, "inverse", a))
        return NULL;
    return inverse_impl(ctx, a, "inverse", "");
}

/* det's rule records inverse too: the values are the same. */
jac_tensor *jac__apply_inverse(jac_ctx *ctx, const jac__node *n,
                               jac_tensor *const *ins)
{
    (void)n;
    return jac_inverse(ctx, ins[0]);
}

/* dA = -Y^T g Y^T with Y the op's output, so that the rule is a function of
 * the recorded inverse and differentiates again. */
jac_status jac__vjp_inverse(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                            const bool *need, jac_tensor **gin)
{
    (void)need;
    jac_tensor *yt = mT(ctx, node->out);
    gin[0] = jac_neg(ctx, jac_matmul(ctx, jac_matmul(ctx, yt, g), yt));
    return gin[0] ? JAC_OK : ctx->status;
}

/* ------------------------------------------------------------------------ */
/* det and logdet                                                           */
/* ------------------------------------------------------------------------ */

/* det(a) or log(det(a)) of every matrix from its LU factors: the product of
 * U's diagonal, negated once per row interchange. A singular matrix has
 * det 0; logdet fails on it and on a negative determinant. */
static jac_tensor *det_impl(jac_ctx *ctx, jac_tensor *a, bool log_of)
{
    const char *op = log_of ? "logdet" : "det";
    int n;
    if (ctx == NULL || !jac__check_arg(ctx, op, a) ||
        !square_arg(ctx, op, "the matrix", a, &n) ||
        (log_of && !finite_arg(ctx, op, "the matrix", a)))
        return NULL;
    jac_tensor *y = jac__tensor_alloc(ctx, op, a->ndim - 2, a->shape);
    if (y == NULL)
        return NULL;
    if (n == 0) {
        for (int64_t c = 0; c < y->numel; c++)
            y->data[c] = log_of ? 0.0 : 1.0;
    } else if (y->numel > 0) {
        int64_t mat = (int64_t)n * n;
        scratch s;
        double *lu =
            scratch_get(ctx, op, &s,
                        (size_t)mat * sizeof(double) + (size_t)n * sizeof(int));
        if (lu == NULL)
            return NULL;
        int *ipiv = (int *)(void *)(lu + mat);
        for (int64_t c = 0; c < y->numel; c++) {
            int info = 0;
            memcpy(lu, a->data + c * mat, (size_t)mat * sizeof(double));
            dgetrf_(&n, &n, lu, &n, ipiv, &info);
            if (info < 0) {
                scratch_free(ctx, &s);
                return lapack_bug(ctx, op, "getrf", info);
            }
            if (info > 0 && log_of) {
                scratch_free(ctx, &s);
                jac__error(ctx, JAC_ERR_VALUE,
                           "logdet: matrix %lld of the batch is singular "
                           "(determinant 0)",
                           (long long)c);
                return NULL;
            }
            /* swapped: odd number of row interchanges; negative: odd
             * number of negative pivots as well. */
            double prod = 1.0, logsum = 0.0;
            bool swapped = false, negative = false;
            for (int i = 0; i < n; i++) {
                double u = lu[(int64_t)i * n + i];
                swapped ^= ipiv[i] != i + 1;
                negative ^= u < 0;
                prod *= u;
                logsum += log(fabs(u));
            }
            if (!log_of) {
                y->data[c] = info > 0 ? 0.0 : swapped ? -prod : prod;
                continue;
            }
            if (swapped != negative) {
                scratch_free(ctx, &s);
                jac__error(ctx, JAC_ERR_VALUE,
                           "logdet: matrix %lld of the batch has a negative "
                           "determinant",
                           (long long)c);
                return NULL;
            }
            y->data[c] = logsum;
        }
        scratch_free(ctx, &s);
    }
    return jac__record_result(ctx, log_of ? JAC__OP_LOGDET : JAC__OP_DET, y, 1,
                              &a, NULL);
}

jac_tensor *jac_det(jac_ctx *ctx, jac_tensor *a)
{
    return det_impl(ctx, a, false);
}

jac_tensor *jac_logdet(jac_ctx *ctx, jac_tensor *a)
{
    return det_impl(ctx, a, true);
}

jac_tensor *jac__apply_det(jac_ctx *ctx, const jac__node *n,
                           jac_tensor *const *ins)
{
    (void)n;
    return jac_det(ctx, ins[0]);
}

jac_tensor *jac__apply_logdet(jac_ctx *ctx, const jac__node *n,
                              jac_tensor *const *ins)
{
    (void)n;
    return jac_logdet(ctx, ins[0]);
}

/* scale (batch ++ a's batch axes) times A^-T, with the inverse recorded so
 * that the rule differentiates again; op names the rule in messages. */
static jac_tensor *scaled_inverse_t(jac_ctx *ctx, const char *op,
                                    const jac__node *node, jac_tensor *scale,
                                    int nb)
{
    jac_tensor *a = node->in[0];
    int64_t ones[JAC_MAX_DIMS];
    int nd = a->ndim - 2;
    memcpy(ones, a->shape, (size_t)nd * sizeof(int64_t));
    ones[nd] = ones[nd + 1] = 1;
    jac_tensor *s = jac__reshape_batched(ctx, op, scale, nb, nd + 2, ones);
    jac_tensor *inv =
        inverse_impl(ctx, a, op,
                     ", so the derivative (which needs its inverse) is "
                     "undefined");
    if (s == NULL || inv == NULL)
        return NULL;
    return jac_mul(ctx, s, mT(ctx, inv));
}

/* d det(A) = det(A) tr(A^-1 dA): dA = g det(A) A^-T, with det the op's own
 * output. Undefined (JAC_ERR_VALUE) where A is singular. */
jac_status jac__vjp_det(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                        const bool *need, jac_tensor **gin)
{
    (void)need;
    int nb = jac__batch_ndim(g, node->out);
    jac_tensor *gd = jac_mul(ctx, g, node->out);
    gin[0] = gd ? scaled_inverse_t(ctx, "det", node, gd, nb) : NULL;
    return gin[0] ? JAC_OK : ctx->status;
}

/* d log det(A) = tr(A^-1 dA): dA = g A^-T. */
jac_status jac__vjp_logdet(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                           const bool *need, jac_tensor **gin)
{
    (void)need;
    int nb = jac__batch_ndim(g, node->out);
    gin[0] = scaled_inverse_t(ctx, "logdet", node, g, nb);
    return gin[0] ? JAC_OK : ctx->status;
}

/* ------------------------------------------------------------------------ */
/* solve                                                                    */
/* ------------------------------------------------------------------------ */

/* x with a x = b for every pair of the broadcast batch. vector: b is
 * (..., n), else (..., n, k). The LU factors of a matrix of a are reused
 * while consecutive right-hand sides share it (a broadcast over b). */
static jac_tensor *solve_impl(jac_ctx *ctx, jac_tensor *a, jac_tensor *b,
                              bool vector)
{
    char s1[JAC__SHAPE_STR_MAX], s2[JAC__SHAPE_STR_MAX];
    int n;
    if (!square_arg(ctx, "solve", "a", a, &n) ||
        !finite_arg(ctx, "solve", "a", a))
        return NULL;
    int ta = a->ndim - 2, tb = b->ndim - (vector ? 1 : 2);
    int64_t k = vector ? 1 : (tb >= 0 ? b->shape[b->ndim - 1] : 0);
    int64_t shape[JAC_MAX_DIMS];
    int nbatch = -1;
    if (tb >= 0 && b->shape[tb] == n)
        nbatch = jac__broadcast_shape(ta, a->shape, tb, b->shape, shape);
    if (nbatch < 0) {
        jac__error(ctx, tb < 0 ? JAC_ERR_RANK : JAC_ERR_SHAPE,
                   "solve: a of shape %s and b of shape %s do not match (b "
                   "must be (..., n) or (..., n, k) with batch axes that "
                   "broadcast)",
                   jac__shape_str(s1, sizeof s1, a->ndim, a->shape),
                   jac__shape_str(s2, sizeof s2, b->ndim, b->shape));
        return NULL;
    }
    if (k > INT_MAX) {
        jac__error(ctx, JAC_ERR_OVERFLOW,
                   "solve: %lld right-hand sides (b of shape %s) exceed "
                   "LAPACK's int range",
                   (long long)k,
                   jac__shape_str(s2, sizeof s2, b->ndim, b->shape));
        return NULL;
    }
    int nd = nbatch + (vector ? 1 : 2);
    if (nd > JAC_MAX_DIMS) {
        jac__error(ctx, JAC_ERR_RANK, "solve: result exceeds rank %d",
                   JAC_MAX_DIMS);
        return NULL;
    }
    shape[nbatch] = n;
    if (!vector)
        shape[nbatch + 1] = k;
    jac_tensor *x = jac__tensor_alloc(ctx, "solve", nd, shape);
    if (x == NULL)
        return NULL;
    /* An empty result needs no factorization (nor reports a singular a). */
    if (x->numel > 0 &&
        !solve_pairs(ctx, "solve", a, ta, b, tb, nbatch, shape, k, NULL, x))
        return NULL;
    jac_tensor *ins[2] = {a, b};
    JAC__PARAMS(p);
    p.solve.vector = vector;
    return jac__record_result(ctx, JAC__OP_SOLVE, x, 2, ins, &p);
}

/* b is a vector (or a batch of vectors) when it has rank 1, or when its
 * shape is a's shape without the last axis; otherwise it is a matrix of
 * right-hand sides. This is PyTorch's rule for torch.linalg.solve. */
jac_tensor *jac_solve(jac_ctx *ctx, jac_tensor *a, jac_tensor *b)
{
    jac_tensor *ins[2] = {a, b};
    if (!jac__check_args(ctx, "solve", 2, ins))
        return NULL;
    bool vector =
        b->ndim == 1 ||
        (b->ndim == a->ndim - 1 &&
         memcmp(b->shape, a->shape, (size_t)b->ndim * sizeof(int64_t)) == 0);
    return solve_impl(ctx, a, b, vector);
}

/* Whether b is a vector is the node's, not guessed again from the shapes:
 * the rule solves for matrices of any shape. */
jac_tensor *jac__apply_solve(jac_ctx *ctx, const jac__node *n,
                             jac_tensor *const *ins)
{
    if (!jac__apply_args(ctx, n, ins))
        return NULL;
    return solve_impl(ctx, ins[0], ins[1], n->p.solve.vector);
}

/* x = A^-1 b: gb = A^-T g = solve(A^T, g), gA = -gb x^T, with x the op's
 * output. The vector case runs as the matrix case with k = 1; broadcast
 * batch axes are summed away. */
jac_status jac__vjp_solve(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                          const bool *need, jac_tensor **gin)
{
    jac_tensor *a = node->in[0], *b = node->in[1], *x = node->out;
    int nb = jac__batch_ndim(g, x);
    bool vector = node->p.solve.vector;
    int64_t xs[JAC_MAX_DIMS], bs[JAC_MAX_DIMS];
    int xn = x->ndim, bn = b->ndim;
    memcpy(xs, x->shape, (size_t)xn * sizeof(int64_t));
    memcpy(bs, b->shape, (size_t)bn * sizeof(int64_t));
    if (vector) {
        if (nb + xn + 1 > JAC_MAX_DIMS)
            return jac__error(ctx, JAC_ERR_RANK,
                              "solve: batched gradient exceeds rank %d",
                              JAC_MAX_DIMS);
        xs[xn++] = 1;
        bs[bn++] = 1;
    }
    jac_tensor *gm =
        vector ? jac__reshape_batched(ctx, "solve", g, nb, xn, xs) : g;
    jac_tensor *at = mT(ctx, a);
    jac_tensor *gb = gm && at ? solve_impl(ctx, at, gm, false) : NULL;
    if (gb == NULL)
        return ctx->status;
    if (need[1]) {
        jac_tensor *d = jac__sum_to_batched(ctx, gb, nb, bn, bs);
        if (d && vector)
            d = jac__reshape_batched(ctx, "solve", d, nb, b->ndim, b->shape);
        if (!(gin[1] = d))
            return ctx->status;
    }
    if (need[0]) {
        jac_tensor *xm = vector ? jac_reshape(ctx, x, xn, xs) : x;
        jac_tensor *d = jac_neg(ctx, jac_matmul(ctx, gb, mT(ctx, xm)));
        d = d ? jac__sum_to_batched(ctx, d, nb, a->ndim, a->shape) : NULL;
        if (!(gin[0] = d))
            return ctx->status;
    }
    return JAC_OK;
}

/* ------------------------------------------------------------------------ */
/* triangular_solve (internal, for cholesky's backward rule)                */
/* ------------------------------------------------------------------------ */

/* x with op(t) x = b, where t is lower (or upper) triangular and only that
 * triangle is read, op(t) = t^T when trans; b is (..., n, k) and the batch
 * axes broadcast. A zero on t's diagonal fails with JAC_ERR_VALUE naming
 * op. */
static jac_tensor *trisolve_impl(jac_ctx *ctx, const char *op, jac_tensor *t,
                                 jac_tensor *b, bool lower, bool trans)
{
    int n;
    if (!square_arg(ctx, op, "the triangular matrix", t, &n))
        return NULL;
    int tt = t->ndim - 2, tb = b->ndim - 2;
    int64_t shape[JAC_MAX_DIMS];
    int nbatch = -1;
    if (tb >= 0 && b->shape[tb] == n && b->shape[tb + 1] <= INT_MAX)
        nbatch = jac__broadcast_shape(tt, t->shape, tb, b->shape, shape);
    if (nbatch < 0 || nbatch + 2 > JAC_MAX_DIMS) {
        char s1[JAC__SHAPE_STR_MAX], s2[JAC__SHAPE_STR_MAX];
        jac__error(ctx, JAC_ERR_SHAPE,
                   "%s: triangular solve of shapes %s and %s does not match",
                   op, jac__shape_str(s1, sizeof s1, t->ndim, t->shape),
                   jac__shape_str(s2, sizeof s2, b->ndim, b->shape));
        return NULL;
    }
    int64_t k = b->shape[tb + 1];
    shape[nbatch] = n;
    shape[nbatch + 1] = k;
    jac_tensor *x =
        jac__tensor_alloc(ctx, "triangular_solve", nbatch + 2, shape);
    if (x == NULL)
        return NULL;
    tri_kind tri = {lower, trans};
    if (x->numel > 0 &&
        !solve_pairs(ctx, op, t, tt, b, tb, nbatch, shape, k, &tri, x))
        return NULL;
    jac_tensor *ins[2] = {t, b};
    JAC__PARAMS(p);
    p.triangular.lower = lower;
    p.triangular.trans = trans;
    return jac__record_result(ctx, JAC__OP_TRIANGULAR_SOLVE, x, 2, ins, &p);
}

jac_tensor *jac__triangular_solve(jac_ctx *ctx, jac_tensor *t, jac_tensor *b,
                                  bool lower, bool trans)
{
    jac_tensor *ins[2] = {t, b};
    if (!jac__check_args(ctx, "triangular_solve", 2, ins))
        return NULL;
    return trisolve_impl(ctx, "triangular_solve", t, b, lower, trans);
}

jac_tensor *jac__apply_triangular_solve(jac_ctx *ctx, const jac__node *n,
                                        jac_tensor *const *ins)
{
    return jac__triangular_solve(ctx, ins[0], ins[1], n->p.triangular.lower,
                                 n->p.triangular.trans);
}

/* x = op(T)^-1 b: gb = op(T)^-T g, and gT = -gb x^T (or -x gb^T when op
 * transposes), kept to T's triangle since only that triangle is read. */
jac_status jac__vjp_triangular_solve(jac_ctx *ctx, const jac__node *node,
                                     jac_tensor *g, const bool *need,
                                     jac_tensor **gin)
{
    jac_tensor *t = node->in[0], *b = node->in[1], *x = node->out;
    bool lower = node->p.triangular.lower, trans = node->p.triangular.trans;
    int nb = jac__batch_ndim(g, x);
    jac_tensor *gb =
        trisolve_impl(ctx, "triangular_solve", t, g, lower, !trans);
    if (gb == NULL)
        return ctx->status;
    if (need[1] &&
        !(gin[1] = jac__sum_to_batched(ctx, gb, nb, b->ndim, b->shape)))
        return ctx->status;
    if (need[0]) {
        jac_tensor *p = trans ? jac_matmul(ctx, x, mT(ctx, gb))
                              : jac_matmul(ctx, gb, mT(ctx, x));
        jac_tensor *mask =
            triangle_mask(ctx, t->shape[t->ndim - 1], lower, 1.0);
        jac_tensor *d = jac_neg(ctx, jac_mul(ctx, p, mask));
        d = d ? jac__sum_to_batched(ctx, d, nb, t->ndim, t->shape) : NULL;
        if (!(gin[0] = d))
            return ctx->status;
    }
    return JAC_OK;
}

/* ------------------------------------------------------------------------ */
/* cholesky                                                                 */
/* ------------------------------------------------------------------------ */

jac_tensor *jac_cholesky(jac_ctx *ctx, jac_tensor *a)
{
    int n;
    if (ctx == NULL || !jac__check_arg(ctx, "cholesky", a) ||
        !square_arg(ctx, "cholesky", "the matrix", a, &n) ||
        !finite_arg(ctx, "cholesky", "the matrix", a))
        return NULL;
    jac_tensor *y = jac__tensor_alloc(ctx, "cholesky", a->ndim, a->shape);
    if (y == NULL)
        return NULL;
    memcpy(y->data, a->data, (size_t)a->numel * sizeof(double));
    int64_t mat = (int64_t)n * n, count = mat ? y->numel / mat : 0;
    for (int64_t c = 0; c < count; c++) {
        double *m = y->data + c * mat;
        int info = 0;
        dpotrf_("U", &n, m, &n, &info, 1);
        if (info < 0)
            return lapack_bug(ctx, "cholesky", "potrf", info);
        if (info > 0) {
            jac__error(ctx, JAC_ERR_VALUE,
                       "cholesky: matrix %lld of the batch is not positive "
                       "definite (leading minor of order %d)",
                       (long long)c, info);
            return NULL;
        }
        /* potrf leaves the other triangle as it was: clear it. */
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = i + 1; j < n; j++)
                m[i * n + j] = 0.0;
    }
    return jac__record_result(ctx, JAC__OP_CHOLESKY, y, 1, &a, NULL);
}

jac_tensor *jac__apply_cholesky(jac_ctx *ctx, const jac__node *n,
                                jac_tensor *const *ins)
{
    (void)n;
    return jac_cholesky(ctx, ins[0]);
}

/*
 * A = L L^T with only A's lower triangle read. From dA = dL L^T + L dL^T,
 * L^-1 dL = Phi(L^-1 dA L^-T), where Phi keeps the lower triangle and halves
 * the diagonal (Murray 2016, as PyTorch's cholesky_backward). For a
 * cotangent gL that gives the unconstrained gradient
 *     S = L^-T Phi(L^T gL) L^-1.
 * A is read as the symmetric matrix of its lower triangle, so entry (i, j)
 * below the diagonal moves both (i, j) and (j, i): the gradient is
 *     gA = Phi(S + S^T),
 * zero above the diagonal. (PyTorch returns the symmetric (S + S^T) / 2
 * instead; the two agree whenever A is built symmetric, e.g. A = B B^T.)
 * Both solves are triangular_solve with L^T; with Y = L^-T Phi(L^T gL),
 * S^T = L^-T Y^T.
 */
jac_status jac__vjp_cholesky(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                             const bool *need, jac_tensor **gin)
{
    (void)need;
    jac_tensor *l = node->out;
    jac_tensor *phi = triangle_mask(ctx, l->shape[l->ndim - 1], true, 0.5);
    if (phi == NULL)
        return ctx->status;
    jac_tensor *p = jac_mul(ctx, jac_matmul(ctx, mT(ctx, l), g), phi);
    jac_tensor *y = p ? trisolve_impl(ctx, "cholesky", l, p, true, true) : NULL;
    jac_tensor *yt = y ? mT(ctx, y) : NULL;
    jac_tensor *st =
        yt ? trisolve_impl(ctx, "cholesky", l, yt, true, true) : NULL;
    gin[0] = st ? jac_mul(ctx, jac_add(ctx, st, mT(ctx, st)), phi) : NULL;
    return gin[0] ? JAC_OK : ctx->status;
}

/* ------------------------------------------------------------------------ */
/* lstsq and pinv                                                           */
/* ------------------------------------------------------------------------ */

/* x minimising |a x - b| for a (m, n) of full column rank (m >= n) and b
 * (m, k) or (m), by Householder QR: R x = (Q^T b)[:n]. A diagonal entry of
 * R below m eps max|R_ii| means a is rank deficient: an error, since x is
 * then not unique. op names the caller (pinv reaches here too). */
static jac_tensor *lstsq_impl(jac_ctx *ctx, const char *op, jac_tensor *a,
                              jac_tensor *b)
{
    char s1[JAC__SHAPE_STR_MAX], s2[JAC__SHAPE_STR_MAX];
    jac__shape_str(s1, sizeof s1, a->ndim, a->shape);
    jac__shape_str(s2, sizeof s2, b->ndim, b->shape);
    if (a->ndim != 2 || b->ndim < 1 || b->ndim > 2 ||
        b->shape[0] != a->shape[0]) {
        jac__error(ctx, JAC_ERR_SHAPE,
                   "%s: a must be a matrix (m, n) and b (m) or (m, k); got "
                   "%s and %s",
                   op, s1, s2);
        return NULL;
    }
    int64_t m = a->shape[0], n = a->shape[1];
    int64_t k = b->ndim == 2 ? b->shape[1] : 1;
    if (m < n) {
        jac__error(ctx, JAC_ERR_SHAPE,
                   "%s: a %s has fewer rows than columns, so a x = b has many "
                   "solutions; jac_pinv(a) b gives the one of least norm",
                   op, s1);
        return NULL;
    }
    if (m > INT_MAX || k > INT_MAX || m * (n + k) > INT_MAX) {
        jac__error(ctx, JAC_ERR_OVERFLOW,
                   "%s: a %s and b %s exceed LAPACK's int range", op, s1, s2);
        return NULL;
    }
    if (!finite_arg(ctx, op, "a", a) || !finite_arg(ctx, op, "b", b))
        return NULL;
    int64_t xshape[2] = {n, k};
    jac_tensor *x = jac__tensor_alloc(ctx, op, b->ndim, xshape);
    if (x == NULL)
        return NULL;
    int im = (int)m, in = (int)n, ik = (int)k, info = 0, query = -1;
    double opt_qr = 0.0, opt_q = 0.0;
    if (n > 0 && k > 0) {
        dgeqrf_(&im, &in, NULL, &im, NULL, &opt_qr, &query, &info);
        dormqr_("L", "T", &im, &ik, &in, NULL, &im, NULL, NULL, &im, &opt_q,
                &query, &info, 1, 1);
    }
    int lwork = (int)fmax(fmax(opt_qr, opt_q), fmax((double)n, (double)k));
    scratch s;
    double *qr = scratch_get(
        ctx, op, &s, (size_t)(m * n + m * k + n + lwork) * sizeof(double));
    if (qr == NULL)
        return NULL;
    double *rhs = qr + m * n, *tau = rhs + m * k, *work = tau + n;
    to_column_major(m, n, a->data, qr);
    to_column_major(m, k, b->data, rhs);
    if (n > 0 && k > 0) {
        dgeqrf_(&im, &in, qr, &im, tau, work, &lwork, &info);
        if (info < 0) {
            scratch_free(ctx, &s);
            return lapack_bug(ctx, op, "geqrf", info);
        }
        double big = 0.0;
        for (int64_t i = 0; i < n; i++)
            big = fmax(big, fabs(qr[i + i * m]));
        for (int64_t i = 0; i < n; i++) {
            if (fabs(qr[i + i * m]) <= (double)m * DBL_EPSILON * big) {
                scratch_free(ctx, &s);
                jac__error(ctx, JAC_ERR_VALUE,
                           "%s: a %s does not have full column rank (R[%lld, "
                           "%lld] = %g of at most %g), so the least-squares "
                           "solution is not unique",
                           op, s1, (long long)i, (long long)i, qr[i + i * m],
                           big);
                return NULL;
            }
        }
        dormqr_("L", "T", &im, &ik, &in, qr, &im, tau, rhs, &im, work, &lwork,
                &info, 1, 1);
        if (info == 0)
            dtrtrs_("U", "N", "N", &in, &ik, qr, &im, rhs, &im, &info, 1, 1, 1);
        if (info != 0) {
            scratch_free(ctx, &s);
            return lapack_bug(ctx, op, "ormqr/trtrs", info);
        }
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < k; j++)
            x->data[i * k + j] = rhs[i + j * m];
    scratch_free(ctx, &s);
    jac_tensor *ins[2] = {a, b};
    bool failed;
    jac__node *node = jac__record(ctx, JAC__OP_LSTSQ, x, 2, ins, &failed);
    if (failed)
        return NULL;
    if (node)
        node->p.solve.vector = b->ndim == 1;
    return x;
}

jac_tensor *jac_lstsq(jac_ctx *ctx, jac_tensor *a, jac_tensor *b)
{
    if (ctx == NULL || !jac__check_arg(ctx, "lstsq", a) ||
        !jac__check_arg(ctx, "lstsq", b))
        return NULL;
    return lstsq_impl(ctx, "lstsq", a, b);
}

/* pinv records lstsq too (against the identity): the values are the
 * same. */
jac_tensor *jac__apply_lstsq(jac_ctx *ctx, const jac__node *n,
                             jac_tensor *const *ins)
{
    (void)n;
    return jac_lstsq(ctx, ins[0], ins[1]);
}

/* With z = (A^T A)^-1 g and the residual r = b - A x:
 * gb = A z and gA = r z^T - gb x^T, written with ops so that the rule
 * differentiates again. A vector b is a matrix of one column here. */
jac_status jac__vjp_lstsq(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                          const bool *need, jac_tensor **gin)
{
    jac_tensor *a = node->in[0], *b = node->in[1], *x = node->out;
    if (node->p.solve.vector) {
        g = jac_unsqueeze(ctx, g, -1);
        b = jac_unsqueeze(ctx, b, -1);
        x = jac_unsqueeze(ctx, x, -1);
    }
    jac_tensor *z = jac_solve(ctx, jac_matmul(ctx, mT(ctx, a), a), g);
    jac_tensor *gb = jac_matmul(ctx, a, z);
    if (need[0]) {
        jac_tensor *r = jac_sub(ctx, b, jac_matmul(ctx, a, x));
        gin[0] = jac_sub(ctx, jac_matmul(ctx, r, mT(ctx, z)),
                         jac_matmul(ctx, gb, mT(ctx, x)));
        if (gin[0] == NULL)
            return ctx->status;
    }
    if (need[1]) {
        gin[1] = node->p.solve.vector ? jac_squeeze(ctx, gb, -1) : gb;
        if (gin[1] == NULL)
            return ctx->status;
    }
    return JAC_OK;
}

/* (A^T A)^-1 A^T for a tall a, A^T (A A^T)^-1 for a wide one: least squares
 * against the identity, of a or of a^T. */
jac_tensor *jac_pinv(jac_ctx *ctx, jac_tensor *a)
{
    if (ctx == NULL || !jac__check_arg(ctx, "pinv", a))
        return NULL;
    if (a->ndim != 2) {
        char s[JAC__SHAPE_STR_MAX];
        jac__error(ctx, JAC_ERR_RANK, "pinv: a must be a matrix, got shape %s",
                   jac__shape_str(s, sizeof s, a->ndim, a->shape));
        return NULL;
    }
    int64_t m = a->shape[0], n = a->shape[1];
    jac_tensor *eye = jac_eye(ctx, m >= n ? m : n);
    jac_tensor *tall = m >= n ? a : mT(ctx, a);
    if (eye == NULL || tall == NULL)
        return NULL;
    jac_tensor *x = lstsq_impl(ctx, "pinv", tall, eye);
    return m >= n || x == NULL ? x : mT(ctx, x);
}

/* ------------------------------------------------------------------------ */
/* eigh                                                                     */
/* ------------------------------------------------------------------------ */

/* Eigenvalues (ascending) *w and, when vectors is not NULL, eigenvectors
 * *vectors of every symmetric matrix of a (its lower triangle read), by
 * syevd, unrecorded. Each eigenvector is signed so that its largest entry
 * (the first of equal ones) is positive. syevd finds the eigenvalues by
 * another algorithm when it finds the vectors too, so that they may differ
 * in the last bits: the node of the values keeps which it was. */
static jac_status eigh_compute(jac_ctx *ctx, jac_tensor *a, jac_tensor **values,
                               jac_tensor **vectors)
{
    const char *op = "eigh";
    int n;
    if (!square_arg(ctx, op, "the matrix", a, &n) ||
        !finite_arg(ctx, op, "the matrix", a))
        return ctx->status;
    jac_tensor *w = jac__tensor_alloc(ctx, op, a->ndim - 1, a->shape);
    jac_tensor *v =
        vectors ? jac__tensor_alloc(ctx, op, a->ndim, a->shape) : NULL;
    if (w == NULL || (vectors && v == NULL))
        return ctx->status;
    int64_t mat = (int64_t)n * n, count = n > 0 ? a->numel / mat : 0;
    const char *jobz = vectors ? "V" : "N";
    int info = 0, query = -1, liwork = 0;
    double opt = 0.0;
    if (count > 0)
        dsyevd_(jobz, "U", &n, NULL, &n, NULL, &opt, &query, &liwork, &query,
                &info, 1, 1);
    int lwork = opt > 1.0 && opt < (double)INT_MAX ? (int)opt : 1;
    liwork = liwork > 1 ? liwork : 1;
    scratch s;
    double *buf = scratch_get(ctx, op, &s,
                              (size_t)(mat + lwork) * sizeof(double) +
                                  (size_t)liwork * sizeof(int));
    if (buf == NULL)
        return ctx->status;
    double *work = buf + mat;
    int *iwork = (int *)(void *)(work + lwork);
    for (int64_t c = 0; c < count; c++) {
        /* The row-major lower triangle is LAPACK's upper one. */
        memcpy(buf, a->data + c * mat, (size_t)mat * sizeof(double));
        dsyevd_(jobz, "U", &n, buf, &n, w->data + c * n, work, &lwork, iwork,
                &liwork, &info, 1, 1);
        if (info != 0) {
            scratch_free(ctx, &s);
            if (info < 0) {
                lapack_bug(ctx, op, "syevd", info);
                return ctx->status;
            }
            return jac__error(ctx, JAC_ERR_VALUE,
                              "eigh: matrix %lld of the batch did not converge",
                              (long long)c);
        }
        if (v == NULL)
            continue;
        double *out = v->data + c * mat;
        from_column_major(n, n, buf, out);
        for (int j = 0; j < n; j++) {
            int top = 0;
            for (int i = 1; i < n; i++)
                if (fabs(out[i * n + j]) > fabs(out[top * n + j]))
                    top = i;
            if (out[top * n + j] < 0.0)
                for (int i = 0; i < n; i++)
                    out[i * n + j] = -out[i * n + j];
        }
    }
    scratch_free(ctx, &s);
    *values = w;
    if (vectors)
        *vectors = v;
    return JAC_OK;
}

/* eigh_compute with one node recorded per result, values first; either
 * result may be skipped (NULL pointer), the values being recorded anyway. */
static jac_status eigh_impl(jac_ctx *ctx, jac_tensor *a, jac_tensor **values,
                            jac_tensor **vectors)
{
    jac_tensor *w = NULL, *v = NULL;
    if (eigh_compute(ctx, a, &w, vectors ? &v : NULL) != JAC_OK)
        return ctx->status;
    JAC__PARAMS(p);
    p.eigh.vectors = v != NULL;
    if (jac__record_result(ctx, JAC__OP_EIGH_VALUES, w, 1, &a, &p) == NULL ||
        (v &&
         jac__record_result(ctx, JAC__OP_EIGH_VECTORS, v, 1, &a, NULL) == NULL))
        return ctx->status;
    if (values)
        *values = w;
    if (vectors)
        *vectors = v;
    return JAC_OK;
}

jac_status jac_eigh(jac_ctx *ctx, jac_tensor *a, jac_tensor **values,
                    jac_tensor **vectors)
{
    if (ctx == NULL)
        return JAC_ERR_NULL_ARG;
    if (!jac__check_arg(ctx, "eigh", a))
        return ctx->status;
    if (values == NULL && vectors == NULL)
        return jac__error(ctx, JAC_ERR_NULL_ARG,
                          "eigh: values and vectors are both NULL");
    jac_tensor *w = NULL, *v = NULL;
    jac_status st = eigh_impl(ctx, a, &w, vectors ? &v : NULL);
    if (st == JAC_OK) {
        if (values)
            *values = w;
        if (vectors)
            *vectors = v;
    }
    return st;
}

/* The eigenvalues computed as the call that recorded n computed them (with
 * the vectors or without), and only their node recorded: a replay of that
 * call's two nodes makes two nodes again. */
jac_tensor *jac__apply_eigh_values(jac_ctx *ctx, const jac__node *n,
                                   jac_tensor *const *ins)
{
    jac_tensor *w = NULL, *v = NULL;
    bool vectors = n->p.eigh.vectors;
    if (!jac__apply_args(ctx, n, ins) ||
        eigh_compute(ctx, ins[0], &w, vectors ? &v : NULL) != JAC_OK)
        return NULL;
    JAC__PARAMS(p);
    p.eigh.vectors = vectors;
    return jac__record_result(ctx, JAC__OP_EIGH_VALUES, w, 1, ins, &p);
}

/* The eigenvectors, with only their node recorded (the call that made n
 * recorded the values first). */
jac_tensor *jac__apply_eigh_vectors(jac_ctx *ctx, const jac__node *n,
                                    jac_tensor *const *ins)
{
    jac_tensor *w = NULL, *v = NULL;
    if (!jac__apply_args(ctx, n, ins) ||
        eigh_compute(ctx, ins[0], &w, &v) != JAC_OK)
        return NULL;
    return jac__record_result(ctx, JAC__OP_EIGH_VECTORS, v, 1, ins, NULL);
}

/* d lambda_i = v_i^T dA v_i: gA = V diag(g) V^T, with V recomputed from the
 * node's input (and recorded, so that the rule differentiates again). */
jac_status jac__vjp_eigh_values(jac_ctx *ctx, const jac__node *node,
                                jac_tensor *g, const bool *need,
                                jac_tensor **gin)
{
    (void)need;
    jac_tensor *v = NULL;
    if (eigh_impl(ctx, node->in[0], NULL, &v) != JAC_OK)
        return ctx->status;
    jac_tensor *scaled = jac_mul(ctx, v, jac_unsqueeze(ctx, g, -2));
    gin[0] = jac_matmul(ctx, scaled, mT(ctx, v));
    return gin[0] ? JAC_OK : ctx->status;
}

/* dV = V (F o (V^T dA V)) with F_ij = 1 / (lambda_j - lambda_i) off the
 * diagonal and 0 on it, so gA = V (F o (V^T g)) V^T, symmetrised: the
 * gradient for symmetric changes of A. Repeated eigenvalues make F
 * infinite: the vectors are not differentiable there. */
jac_status jac__vjp_eigh_vectors(jac_ctx *ctx, const jac__node *node,
                                 jac_tensor *g, const bool *need,
                                 jac_tensor **gin)
{
    (void)need;
    jac_tensor *v = node->out, *w = NULL;
    if (eigh_impl(ctx, node->in[0], &w, NULL) != JAC_OK)
        return ctx->status;
    int64_t n = v->shape[v->ndim - 1];
    jac_tensor *eye = jac_eye(ctx, n);
    jac_tensor *off = jac_rsub_scalar(ctx, 1.0, eye);
    jac_tensor *gap =
        jac_sub(ctx, jac_unsqueeze(ctx, w, -2), jac_unsqueeze(ctx, w, -1));
    jac_tensor *f =
        jac_mul(ctx, off, jac_reciprocal(ctx, jac_add(ctx, gap, eye)));
    jac_tensor *inner = jac_mul(ctx, f, jac_matmul(ctx, mT(ctx, v), g));
    jac_tensor *ga = jac_matmul(ctx, jac_matmul(ctx, v, inner), mT(ctx, v));
    gin[0] = jac_mul_scalar(ctx, jac_add(ctx, ga, mT(ctx, ga)), 0.5);
    return gin[0] ? JAC_OK : ctx->status;
}
