/*
 * Linear algebra without factorizations: matmul with NumPy's rules through
 * CBLAS, transpose, permute, diagonal (with its adjoint diag_embed), and the
 * composites dot, outer and trace. Factorizations live in lapack.c.
 *
 * SPDX-License-Identifier: MIT
 */
#include "ops/ops.h"

#include <cblas.h>

/* BLAS wants leading dimensions of at least 1, even for empty matrices. */
static blasint ld(int64_t n) { return (blasint)(n > 1 ? n : 1); }

/* ------------------------------------------------------------------------ */
/* matmul                                                                   */
/* ------------------------------------------------------------------------ */

static void gemm(int64_t m, int64_t n, int64_t k, const double *a,
                 const double *b, double *c)
{
    if (m == 0 || n == 0)
        return;
    if (k == 0) {
        memset(c, 0, (size_t)(m * n) * sizeof(double));
        return;
    }
    if (n == 1) {
        cblas_dgemv(CblasRowMajor, CblasNoTrans, (blasint)m, (blasint)k, 1.0, a,
                    ld(k), b, 1, 0.0, c, 1);
        return;
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)m,
                (blasint)n, (blasint)k, 1.0, a, ld(k), b, ld(n), 0.0, c, ld(n));
}

/* y[n] = x[k] @ B[k, n]. */
static void gevm(int64_t k, int64_t n, const double *x, const double *b,
                 double *y)
{
    if (n == 0)
        return;
    if (k == 0) {
        memset(y, 0, (size_t)n * sizeof(double));
        return;
    }
    cblas_dgemv(CblasRowMajor, CblasTrans, (blasint)k, (blasint)n, 1.0, b,
                ld(n), x, 1, 0.0, y, 1);
}

static jac_tensor *matmul_error(jac_ctx *ctx, const jac_tensor *a,
                                const jac_tensor *b, const char *why)
{
    char s1[JAC__SHAPE_STR_MAX], s2[JAC__SHAPE_STR_MAX];
    jac__error(ctx, why ? JAC_ERR_RANK : JAC_ERR_SHAPE,
               "matmul: shapes %s and %s %s",
               jac__shape_str(s1, sizeof s1, a->ndim, a->shape),
               jac__shape_str(s2, sizeof s2, b->ndim, b->shape),
               why ? why
                   : "do not match (inner extents differ or batch "
                     "axes do not broadcast)");
    return NULL;
}

/* Both operands of rank >= 2: the batch axes broadcast, each batch is one
 * GEMM; when b has no batch axes, a's batch folds into one tall GEMM. */
static void matmul_batched(const jac_tensor *a, const jac_tensor *b,
                           jac_tensor *y, int nbatch)
{
    int64_t m = a->shape[a->ndim - 2], k = a->shape[a->ndim - 1];
    int64_t n = b->shape[b->ndim - 1];
    if (b->ndim == 2) {
        gemm(n ? y->numel / n : 0, n, k, a->data, b->data, y->data);
        return;
    }
    /* Element strides of a's, b's and y's matrices along the batch axes:
     * one GEMM per batch index, the innermost batch axis as a loop. */
    int64_t sa[JAC_MAX_DIMS], sb[JAC_MAX_DIMS], sy[JAC_MAX_DIMS];
    jac__stretch_strides(a->ndim - 2, a->shape, m * k, nbatch, sa);
    jac__stretch_strides(b->ndim - 2, b->shape, k * n, nbatch, sb);
    jac__contiguous_strides(nbatch, y->shape, m * n, sy);
    const int64_t *strides[3] = {sa, sb, sy};
    jac__iter it;
    int64_t rows =
        m > 0 && n > 0 ? jac__iter_init(&it, nbatch, y->shape, 3, strides) : 0;
    for (int64_t r = 0; r < rows; r++, jac__iter_next(&it))
        for (int64_t i = 0; i < it.inner; i++)
            gemm(m, n, k, a->data + it.off[0] + i * it.step[0],
                 b->data + it.off[1] + i * it.step[1],
                 y->data + it.off[2] + i * it.step[2]);
}

jac_tensor *jac_matmul(jac_ctx *ctx, jac_tensor *a, jac_tensor *b)
{
    jac_tensor *ins[2] = {a, b};
    if (!jac__check_args(ctx, "matmul", 2, ins))
        return NULL;
    if (a->ndim == 0 || b->ndim == 0)
        return matmul_error(ctx, a, b, "are invalid: operands need rank >= 1");
    int64_t k = a->shape[a->ndim - 1];
    int64_t kb = b->ndim == 1 ? b->shape[0] : b->shape[b->ndim - 2];
    if (k != kb)
        return matmul_error(ctx, a, b, NULL);
    int64_t shape[JAC_MAX_DIMS];
    int nd, nbatch = 0;
    if (a->ndim == 1 && b->ndim == 1) {
        nd = 0;
    } else if (b->ndim == 1) {
        nd = a->ndim - 1;
        memcpy(shape, a->shape, (size_t)nd * sizeof(int64_t));
    } else if (a->ndim == 1) {
        nd = b->ndim - 1;
        memcpy(shape, b->shape, (size_t)(nd - 1) * sizeof(int64_t));
        shape[nd - 1] = b->shape[b->ndim - 1];
    } else {
        nbatch = jac__broadcast_shape(a->ndim - 2, a->shape, b->ndim - 2,
                                      b->shape, shape);
        if (nbatch < 0)
            return matmul_error(ctx, a, b, NULL);
        shape[nbatch] = a->shape[a->ndim - 2];
        shape[nbatch + 1] = b->shape[b->ndim - 1];
        nd = nbatch + 2;
    }
    jac_tensor *y = jac__tensor_alloc(ctx, "matmul", nd, shape);
    if (y == NULL)
        return NULL;
    if (a->ndim == 1 && b->ndim == 1) {
        y->data[0] = k ? cblas_ddot((blasint)k, a->data, 1, b->data, 1) : 0.0;
    } else if (b->ndim == 1) {
        gemm(y->numel, 1, k, a->data, b->data, y->data);
    } else if (a->ndim == 1) {
        int64_t n = b->shape[b->ndim - 1], mat = k * n;
        int64_t count = n ? y->numel / n : 0;
        for (int64_t c = 0; c < count; c++)
            gevm(k, n, a->data, b->data + c * mat, y->data + c * n);
    } else {
        matmul_batched(a, b, y, nbatch);
    }
    return jac__record_result(ctx, JAC__OP_MATMUL, y, 2, ins, NULL);
}

/* The sparsity of a product: y[.., i, j] reads row i of a and column j of
 * b in the matching batch. A constant operand's zeros are kept zeros: an
 * element of the other is read only where it meets a non-zero. */
static bool matmul_links(jac__links *L, const double *a, const double *b,
                         int64_t ao, int64_t bo, int64_t m, int64_t k,
                         int64_t n)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            for (int64_t t = 0; t < k; t++) {
                int64_t ea = ao + i * k + t, eb = bo + t * n + j;
                /* A constant operand has no domain: no link into it. */
                if (a == NULL && (b == NULL || b[eb] != 0.0) &&
                    !jac__links_add(L, 0, ea))
                    return false;
                if (b == NULL && (a == NULL || a[ea] != 0.0) &&
                    !jac__links_add(L, 1, eb))
                    return false;
            }
            jac__links_row(L);
        }
    return true;
}

jac_status jac__deps_matmul(jac_ctx *ctx, const jac__node *n, jac__links *L)
{
    const jac_tensor *a = n->in[0], *b = n->in[1], *y = n->out;
    int64_t k = a->shape[a->ndim - 1];
    int64_t m = a->ndim == 1 ? 1 : a->shape[a->ndim - 2];
    int64_t nc = b->ndim == 1 ? 1 : b->shape[b->ndim - 1];
    /* At most k links into each varying operand per output element: room
     * for them at once, when that count is not absurd (an empty output
     * beside huge extents has no links at all). */
    int64_t varying = (a->data == NULL) + (b->data == NULL);
    bool ok = true;
    if (y->numel > 0 && k > 0 && k <= INT64_MAX / 2 / y->numel)
        ok = jac__links_reserve(L, varying * k * y->numel);
    if (ok && b->ndim == 1) {
        ok =
            matmul_links(L, a->data, b->data, 0, 0, k ? a->numel / k : 0, k, 1);
    } else if (ok && a->ndim == 1) {
        for (int64_t t = 0, kn = k * nc; kn && t < b->numel / kn && ok; t++)
            ok = matmul_links(L, a->data, b->data, 0, t * kn, 1, k, nc);
    } else if (ok) {
        int nbatch = y->ndim - 2;
        int64_t sa[JAC_MAX_DIMS], sb[JAC_MAX_DIMS];
        jac__stretch_strides(a->ndim - 2, a->shape, m * k, nbatch, sa);
        jac__stretch_strides(b->ndim - 2, b->shape, k * nc, nbatch, sb);
        const int64_t *strides[2] = {sa, sb};
        jac__iter it;
        int64_t rows = jac__iter_init(&it, nbatch, y->shape, 2, strides);
        for (int64_t r = 0; r < rows && ok; r++, jac__iter_next(&it))
            for (int64_t i = 0; i < it.inner && ok; i++)
                ok = matmul_links(L, a->data, b->data,
                                  it.off[0] + i * it.step[0],
                                  it.off[1] + i * it.step[1], m, k, nc);
    }
    /* Empty inner extents: every output element reads nothing. */
    while (ok && L->row < y->numel)
        jac__links_row(L);
    if (!ok)
        return jac__error(ctx, JAC_ERR_NO_MEMORY, "matmul: out of memory");
    return JAC_OK;
}

jac_tensor *jac__apply_matmul(jac_ctx *ctx, const jac__node *n,
                              jac_tensor *const *ins)
{
    (void)n;
    return jac_matmul(ctx, ins[0], ins[1]);
}

/* The matrix-vector and vector-matrix cases keep their own rules so that a
 * block of seeds becomes one GEMM instead of a batch of thin products; every
 * other case promotes 1-D operands to matrices and uses
 * dA = g B^T, dB = A^T g, summed over broadcast batch axes. */
jac_status jac__vjp_matmul(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                           const bool *need, jac_tensor **gin)
{
    jac_tensor *a = node->in[0], *b = node->in[1];
    int nb = jac__batch_ndim(g, node->out);
    int64_t k = a->shape[a->ndim - 1];

    if (a->ndim == 2 && b->ndim == 1) {
        if (need[1] && !(gin[1] = jac_matmul(ctx, g, a)))
            return ctx->status;
        if (need[0]) {
            int64_t s[2] = {a->shape[0], 1};
            jac_tensor *gc = jac__reshape_batched(ctx, "matmul", g, nb, 2, s);
            if (!(gin[0] = jac_mul(ctx, gc, b)))
                return ctx->status;
        }
        return JAC_OK;
    }
    if (a->ndim == 1 && b->ndim == 2) {
        if (need[0] &&
            !(gin[0] = jac_matmul(ctx, g, jac_transpose(ctx, b, 0, 1))))
            return ctx->status;
        if (need[1]) {
            int64_t sa[2] = {k, 1}, sg[2] = {1, b->shape[1]};
            jac_tensor *ac = jac_reshape(ctx, a, 2, sa);
            jac_tensor *gr = jac__reshape_batched(ctx, "matmul", g, nb, 2, sg);
            if (!(gin[1] = jac_mul(ctx, ac, gr)))
                return ctx->status;
        }
        return JAC_OK;
    }
    if (a->ndim == 1 && b->ndim == 1) {
        int64_t one = 1;
        jac_tensor *gc = jac__reshape_batched(ctx, "matmul", g, nb, 1, &one);
        if (need[0] && !(gin[0] = jac_mul(ctx, gc, b)))
            return ctx->status;
        if (need[1] && !(gin[1] = jac_mul(ctx, gc, a)))
            return ctx->status;
        return JAC_OK;
    }

    /* General case on promoted operands. */
    int64_t as[JAC_MAX_DIMS], bs[JAC_MAX_DIMS], cs[JAC_MAX_DIMS];
    int an = a->ndim, bn = b->ndim;
    memcpy(as, a->shape, (size_t)an * sizeof(int64_t));
    memcpy(bs, b->shape, (size_t)bn * sizeof(int64_t));
    if (an == 1) {
        as[0] = 1;
        as[1] = k;
        an = 2;
    }
    if (bn == 1) {
        bs[0] = k;
        bs[1] = 1;
        bn = 2;
    }
    int nbatch = jac__broadcast_shape(an - 2, as, bn - 2, bs, cs);
    cs[nbatch] = as[an - 2];
    cs[nbatch + 1] = bs[bn - 1];
    jac_tensor *ap = an == a->ndim ? a : jac_reshape(ctx, a, an, as);
    jac_tensor *bp = bn == b->ndim ? b : jac_reshape(ctx, b, bn, bs);
    jac_tensor *gp = jac__reshape_batched(ctx, "matmul", g, nb, nbatch + 2, cs);
    if (ap == NULL || bp == NULL || gp == NULL)
        return ctx->status;
    if (need[0]) {
        jac_tensor *d = jac_matmul(ctx, gp, jac_transpose(ctx, bp, -1, -2));
        d = d ? jac__sum_to_batched(ctx, d, nb, an, as) : NULL;
        if (d && an != a->ndim)
            d = jac__reshape_batched(ctx, "matmul", d, nb, a->ndim, a->shape);
        if (!(gin[0] = d))
            return ctx->status;
    }
    if (need[1]) {
        jac_tensor *d = jac_matmul(ctx, jac_transpose(ctx, ap, -1, -2), gp);
        d = d ? jac__sum_to_batched(ctx, d, nb, bn, bs) : NULL;
        if (d && bn != b->ndim)
            d = jac__reshape_batched(ctx, "matmul", d, nb, b->ndim, b->shape);
        if (!(gin[1] = d))
            return ctx->status;
    }
    return JAC_OK;
}

/* C[M, N] = op(A) op(B) with row-major operands, any extent zero allowed. */
static void gemm_op(bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                    const double *A, int64_t lda, const double *B, int64_t ldb,
                    double *C)
{
    if (M == 0 || N == 0)
        return;
    if (K == 0) {
        memset(C, 0, (size_t)(M * N) * sizeof(double));
        return;
    }
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
                tb ? CblasTrans : CblasNoTrans, (blasint)M, (blasint)N,
                (blasint)K, 1.0, A, ld(lda), B, ld(ldb), 0.0, C, ld(N));
}

/* The one-hot positions of stacked row k as (i, c) = (pos / N, pos % N)
 * of an output with N columns, for t < reps. */
#define ONEHOT_FOR_EACH(h, k, N, i, c)                                         \
    for (int64_t t_ = 0, pos_ = (h)->r0 + (k), i = pos_ / (N), c = pos_ % (N); \
         t_ < (h)->reps; t_++, pos_ += (h)->m, i = pos_ / (N), c = pos_ % (N))

static bool matmul_onehot(const jac__node *n, const jac__onehot_rows *h,
                          const bool *need, double *const *gin)
{
    const jac_tensor *a = n->in[0], *b = n->in[1];
    if (a->ndim > 2 || b->ndim > 2 || (a->ndim == 1 && b->ndim == 1))
        return false;
    int64_t K = a->shape[a->ndim - 1];
    int64_t M = a->ndim == 2 ? a->shape[0] : 1;
    int64_t N = b->ndim == 2 ? b->shape[1] : 1;
    /* Y = A B with A (M, K), B (K, N) (a vector as one row or column):
     * dA = G B^T takes column c of B into row i, dB = A^T G takes row i of
     * A into column c, for each one at (i, c) of G. */
    for (int64_t k = 0; k < h->count; k++) {
        if (need[0]) {
            double *d = gin[0] + k * a->numel;
            memset(d, 0, (size_t)a->numel * sizeof(double));
            ONEHOT_FOR_EACH(h, k, N, i, c)
            for (int64_t r = 0; r < K; r++)
                d[i * K + r] += b->data[r * N + c];
        }
        if (need[1]) {
            double *d = gin[1] + k * b->numel;
            memset(d, 0, (size_t)b->numel * sizeof(double));
            ONEHOT_FOR_EACH(h, k, N, i, c)
            for (int64_t r = 0; r < K; r++)
                d[r * N + c] += a->data[i * K + r];
        }
    }
    (void)M;
    return true;
}

/* The four matmul cases without batch axes in the operands. With the
 * cotangents stacked as rows, each is one or a few GEMMs:
 *   (m,k)@(k)   : da[b] = g[b] x^T (outer), dx = G A
 *   (k)@(k,n)   : dx = G B^T, dB[b] = x g[b]^T (outer)
 *   (m,k)@(k,n) : dA = G B^T (one GEMM over all rows), dB[b] = A^T G[b]
 *   (k)@(k)     : dx = g y, dy = g x */
bool jac__raw_matmul(const jac__node *n, int64_t batch, const double *g,
                     const jac__onehot_rows *onehot, const bool *need,
                     const bool *add, double *const *gin)
{
    if (jac__raw_adds(n, add))
        return false;
    if (onehot && matmul_onehot(n, onehot, need, gin))
        return true;
    const jac_tensor *a = n->in[0], *b = n->in[1];
    if (a->ndim > 2 || b->ndim > 2)
        return false;
    int64_t k = a->shape[a->ndim - 1];
    if (a->ndim == 2 && b->ndim == 1) {
        int64_t m = a->shape[0];
        if (need[1])
            gemm_op(false, false, batch, k, m, g, m, a->data, k, gin[1]);
        if (need[0])
            gemm_op(false, false, batch * m, k, 1, g, 1, b->data, k, gin[0]);
        return true;
    }
    if (a->ndim == 1 && b->ndim == 2) {
        int64_t nn = b->shape[1];
        if (need[0])
            gemm_op(false, true, batch, k, nn, g, nn, b->data, nn, gin[0]);
        if (need[1])
            for (int64_t s = 0; s < batch; s++)
                gemm_op(false, false, k, nn, 1, a->data, 1, g + s * nn, nn,
                        gin[1] + s * k * nn);
        return true;
    }
    if (a->ndim == 2 && b->ndim == 2) {
        int64_t m = a->shape[0], nn = b->shape[1];
        if (need[0])
            gemm_op(false, true, batch * m, k, nn, g, nn, b->data, nn, gin[0]);
        if (need[1])
            for (int64_t s = 0; s < batch; s++)
                gemm_op(true, false, k, nn, m, a->data, k, g + s * m * nn, nn,
                        gin[1] + s * k * nn);
        return true;
    }
    for (int64_t s = 0; s < batch; s++) {
        for (int64_t i = 0; i < k; i++) {
            if (need[0])
                gin[0][s * k + i] = g[s] * b->data[i];
            if (need[1])
                gin[1][s * k + i] = g[s] * a->data[i];
        }
    }
    return true;
}

/* ------------------------------------------------------------------------ */
/* transpose                                                                */
/* ------------------------------------------------------------------------ */

/* y = a with axes i and j swapped: walk y in order, read a through swapped
 * strides. */
static void transpose_kernel(const jac_tensor *a, int i, int j, jac_tensor *y)
{
    int64_t as[JAC_MAX_DIMS], ys[JAC_MAX_DIMS];
    jac__contiguous_strides(a->ndim, a->shape, 1, as);
    jac__contiguous_strides(y->ndim, y->shape, 1, ys);
    int64_t t = as[i];
    as[i] = as[j];
    as[j] = t;
    jac__strided_copy(y->ndim, y->shape, a->data, as, y->data, ys);
}

jac_tensor *jac_transpose(jac_ctx *ctx, jac_tensor *a, int axis0, int axis1)
{
    if (ctx == NULL || !jac__check_arg(ctx, "transpose", a))
        return NULL;
    int i = jac__axis(axis0, a->ndim), j = jac__axis(axis1, a->ndim);
    if (i < 0 || j < 0) {
        char s[JAC__SHAPE_STR_MAX];
        jac__error(ctx, JAC_ERR_AXIS,
                   "transpose: axes %d and %d are out of range for shape %s",
                   axis0, axis1,
                   jac__shape_str(s, sizeof s, a->ndim, a->shape));
        return NULL;
    }
    int64_t shape[JAC_MAX_DIMS];
    memcpy(shape, a->shape, (size_t)a->ndim * sizeof(int64_t));
    shape[i] = a->shape[j];
    shape[j] = a->shape[i];
    jac_tensor *y = jac__tensor_alloc(ctx, "transpose", a->ndim, shape);
    if (y == NULL)
        return NULL;
    if (i == j)
        memcpy(y->data, a->data, (size_t)a->numel * sizeof(double));
    else
        transpose_kernel(a, i, j, y);
    JAC__PARAMS(p);
    p.transpose.axis0 = i;
    p.transpose.axis1 = j;
    return jac__record_result(ctx, JAC__OP_TRANSPOSE, y, 1, &a, &p);
}

jac_tensor *jac__apply_transpose(jac_ctx *ctx, const jac__node *n,
                                 jac_tensor *const *ins)
{
    return jac_transpose(ctx, ins[0], n->p.transpose.axis0,
                         n->p.transpose.axis1);
}

jac_status jac__vjp_transpose(jac_ctx *ctx, const jac__node *node,
                              jac_tensor *g, const bool *need, jac_tensor **gin)
{
    (void)need;
    int nb = jac__batch_ndim(g, node->out);
    gin[0] = jac_transpose(ctx, g, nb + node->p.transpose.axis0,
                           nb + node->p.transpose.axis1);
    return gin[0] ? JAC_OK : ctx->status;
}

JAC__VECTORIZED bool jac__raw_transpose(const jac__node *n, int64_t batch,
                                        const double *g,
                                        const jac__onehot_rows *onehot,
                                        const bool *need, const bool *add,
                                        double *const *gin)
{
    if (jac__raw_adds(n, add))
        return false;
    (void)onehot;
    (void)need;
    const jac_tensor *y = n->out;
    if (y->ndim != 2 || n->p.transpose.axis0 == n->p.transpose.axis1)
        return false;
    int64_t r = y->shape[0], c = y->shape[1];
    for (int64_t s = 0; s < batch; s++)
        for (int64_t i = 0; i < r; i++)
            for (int64_t j = 0; j < c; j++)
                gin[0][s * r * c + j * r + i] = g[s * r * c + i * c + j];
    return true;
}

/* ------------------------------------------------------------------------ */
/* permute                                                                  */
/* ------------------------------------------------------------------------ */

/* Formats perm (n entries) as "(2, 0, 1)" for messages. */
static const char *perm_str(char *buf, size_t size, int n, const int *perm)
{
    int64_t p[JAC_MAX_DIMS];
    for (int i = 0; i < n; i++)
        p[i] = perm[i];
    return jac__shape_str(buf, size, n, p);
}

/* y = permute(a, perm) without checks: axis i of y is axis perm[i] of a. */
static jac_tensor *permute_impl(jac_ctx *ctx, jac_tensor *a, const int *perm)
{
    /* The bound is an invariant of tensors; stating it lets the compiler see
     * that the loops below stay inside the fixed-size arrays. */
    int n = a->ndim < JAC_MAX_DIMS ? a->ndim : JAC_MAX_DIMS;
    int64_t shape[JAC_MAX_DIMS] = {0}, as[JAC_MAX_DIMS], ss[JAC_MAX_DIMS],
            ds[JAC_MAX_DIMS];
    jac__contiguous_strides(n, a->shape, 1, as);
    for (int i = 0; i < n; i++) {
        shape[i] = a->shape[perm[i]];
        ss[i] = as[perm[i]];
    }
    jac_tensor *y = jac__tensor_alloc(ctx, "permute", n, shape);
    if (y == NULL)
        return NULL;
    jac__contiguous_strides(n, shape, 1, ds);
    jac__strided_copy(n, shape, a->data, ss, y->data, ds);
    JAC__PARAMS(p);
    for (int i = 0; i < n; i++)
        p.permute.perm[i] = (int8_t)perm[i];
    return jac__record_result(ctx, JAC__OP_PERMUTE, y, 1, &a, &p);
}

jac_tensor *jac_permute(jac_ctx *ctx, jac_tensor *a, const int *perm)
{
    if (ctx == NULL || !jac__check_arg(ctx, "permute", a))
        return NULL;
    char s1[JAC__SHAPE_STR_MAX], s2[JAC__SHAPE_STR_MAX];
    if (a->ndim > 0 && perm == NULL) {
        jac__error(ctx, JAC_ERR_NULL_ARG, "permute: perm is NULL for shape %s",
                   jac__shape_str(s1, sizeof s1, a->ndim, a->shape));
        return NULL;
    }
    unsigned seen = 0;
    for (int i = 0; i < a->ndim; i++) {
        if (perm[i] < 0 || perm[i] >= a->ndim || (seen & (1u << perm[i]))) {
            jac__error(ctx, JAC_ERR_AXIS,
                       "permute: %s is not a permutation of the axes 0..%d "
                       "of shape %s",
                       perm_str(s1, sizeof s1, a->ndim, perm), a->ndim - 1,
                       jac__shape_str(s2, sizeof s2, a->ndim, a->shape));
            return NULL;
        }
        seen |= 1u << perm[i];
    }
    return permute_impl(ctx, a, perm);
}

/* The permutation is checked against ins[0] as a user's would be. */
jac_tensor *jac__apply_permute(jac_ctx *ctx, const jac__node *n,
                               jac_tensor *const *ins)
{
    int perm[JAC_MAX_DIMS];
    for (int i = 0; i < JAC_MAX_DIMS; i++)
        perm[i] = (int)n->p.permute.perm[i];
    return jac_permute(ctx, ins[0], perm);
}

/* The cotangent goes back through the inverse permutation; batch axes in
 * front of g stay where they are. */
jac_status jac__vjp_permute(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                            const bool *need, jac_tensor **gin)
{
    (void)need;
    int n = node->in[0]->ndim, nb = jac__batch_ndim(g, node->out);
    int q[JAC_MAX_DIMS];
    for (int i = 0; i < nb; i++)
        q[i] = i;
    for (int i = 0; i < n; i++)
        q[nb + node->p.permute.perm[i]] = nb + i;
    gin[0] = permute_impl(ctx, g, q);
    return gin[0] ? JAC_OK : ctx->status;
}

/* ------------------------------------------------------------------------ */
/* dot, outer, trace: composites of differentiable ops                      */
/* ------------------------------------------------------------------------ */

jac_tensor *jac_dot(jac_ctx *ctx, jac_tensor *a, jac_tensor *b)
{
    jac_tensor *ins[2] = {a, b};
    if (!jac__check_args(ctx, "dot", 2, ins))
        return NULL;
    if (a->ndim != 1 || b->ndim != 1 || a->shape[0] != b->shape[0]) {
        char s1[JAC__SHAPE_STR_MAX], s2[JAC__SHAPE_STR_MAX];
        jac__error(ctx,
                   a->ndim != 1 || b->ndim != 1 ? JAC_ERR_RANK : JAC_ERR_SHAPE,
                   "dot: needs two vectors of equal length, got shapes %s "
                   "and %s",
                   jac__shape_str(s1, sizeof s1, a->ndim, a->shape),
                   jac__shape_str(s2, sizeof s2, b->ndim, b->shape));
        return NULL;
    }
    return jac_matmul(ctx, a, b);
}

/* a (n) and b (m) become a column (n, 1) and a row (1, m); their broadcast
 * product is the outer product. */
jac_tensor *jac_outer(jac_ctx *ctx, jac_tensor *a, jac_tensor *b)
{
    jac_tensor *ins[2] = {a, b};
    if (!jac__check_args(ctx, "outer", 2, ins))
        return NULL;
    if (a->ndim != 1 || b->ndim != 1) {
        char s1[JAC__SHAPE_STR_MAX], s2[JAC__SHAPE_STR_MAX];
        jac__error(ctx, JAC_ERR_RANK,
                   "outer: needs two vectors, got shapes %s and %s",
                   jac__shape_str(s1, sizeof s1, a->ndim, a->shape),
                   jac__shape_str(s2, sizeof s2, b->ndim, b->shape));
        return NULL;
    }
    int64_t col[2] = {a->shape[0], 1}, row[2] = {1, b->shape[0]};
    return jac_mul(ctx, jac_reshape(ctx, a, 2, col),
                   jac_reshape(ctx, b, 2, row));
}

/* The sum of the main diagonal; a non-square matrix is allowed (as NumPy's
 * and PyTorch's trace). */
jac_tensor *jac_trace(jac_ctx *ctx, jac_tensor *a)
{
    if (ctx == NULL || !jac__check_arg(ctx, "trace", a))
        return NULL;
    if (a->ndim != 2) {
        char s[JAC__SHAPE_STR_MAX];
        jac__error(ctx, JAC_ERR_RANK, "trace: needs a matrix, got shape %s",
                   jac__shape_str(s, sizeof s, a->ndim, a->shape));
        return NULL;
    }
    return jac_sum(ctx, jac_diagonal(ctx, a, 0, 0, 1));
}

/* ------------------------------------------------------------------------ */
/* diagonal and its adjoint diag_embed                                      */
/*                                                                          */
/* Both map between a "big" tensor, where the diagonal runs over axes       */
/* axis1 and axis2, and a "small" one with those axes removed and the       */
/* diagonal appended last. Element t of the diagonal sits at index          */
/* t + max(0, -offset) on axis1 and t + max(0, offset) on axis2, so the     */
/* small tensor is a strided view of the big one: diagonal gathers through  */
/* it, diag_embed scatters into zeros through it. Each is the other's       */
/* backward rule, so derivatives of any order stay within the pair.         */
/* ------------------------------------------------------------------------ */

/* The length of the diagonal of an n1 x n2 block with the given offset. */
static int64_t diag_len(int64_t n1, int64_t n2, int64_t offset)
{
    if (offset >= 0)
        return offset >= n2 ? 0 : (n1 < n2 - offset ? n1 : n2 - offset);
    if (offset <= -n1)
        return 0;
    return n1 + offset < n2 ? n1 + offset : n2;
}

/* The small shape (rank big_n - 1), the big tensor's strides along each
 * small axis, and the big offset of the small tensor's first element. */
static void diag_view(int big_n, const int64_t *big_shape, int axis1, int axis2,
                      int64_t offset, int64_t *small_shape, int64_t *strides,
                      int64_t *base)
{
    int64_t bs[JAC_MAX_DIMS];
    jac__contiguous_strides(big_n, big_shape, 1, bs);
    int k = 0;
    for (int d = 0; d < big_n; d++) {
        if (d == axis1 || d == axis2)
            continue;
        small_shape[k] = big_shape[d];
        strides[k++] = bs[d];
    }
    int64_t len = diag_len(big_shape[axis1], big_shape[axis2], offset);
    small_shape[k] = len;
    /* Unsigned: the sum wraps only for an empty tensor, where it is unused. */
    strides[k] = (int64_t)((uint64_t)bs[axis1] + (uint64_t)bs[axis2]);
    *base = 0;
    if (len > 0)
        *base = (offset < 0 ? -offset * bs[axis1] : offset * bs[axis2]);
}

static jac_tensor *diagonal_impl(jac_ctx *ctx, jac_tensor *a, int64_t offset,
                                 int axis1, int axis2)
{
    int64_t shape[JAC_MAX_DIMS], ss[JAC_MAX_DIMS], ds[JAC_MAX_DIMS], base;
    diag_view(a->ndim, a->shape, axis1, axis2, offset, shape, ss, &base);
    int n = a->ndim - 1;
    jac_tensor *y = jac__tensor_alloc(ctx, "diagonal", n, shape);
    if (y == NULL)
        return NULL;
    jac__contiguous_strides(n, shape, 1, ds);
    jac__strided_copy(n, shape, a->data + base, ss, y->data, ds);
    JAC__PARAMS(p);
    p.diagonal.offset = offset;
    p.diagonal.axis1 = axis1;
    p.diagonal.axis2 = axis2;
    return jac__record_result(ctx, JAC__OP_DIAGONAL, y, 1, &a, &p);
}

/* The tensor of rank g->ndim + 1, zero except on the diagonal over axes
 * axis1 and axis2 (of extents n1 and n2), which holds g's last axis. */
static jac_tensor *diag_embed(jac_ctx *ctx, jac_tensor *g, int64_t offset,
                              int axis1, int axis2, int64_t n1, int64_t n2)
{
    int n = g->ndim + 1;
    if (n > JAC_MAX_DIMS) {
        jac__error(ctx, JAC_ERR_RANK, "diag_embed: result exceeds rank %d",
                   JAC_MAX_DIMS);
        return NULL;
    }
    int64_t shape[JAC_MAX_DIMS];
    for (int d = 0, k = 0; d < n; d++)
        shape[d] = d == axis1 ? n1 : d == axis2 ? n2 : g->shape[k++];
    jac_tensor *y = jac__tensor_alloc(ctx, "diag_embed", n, shape);
    if (y == NULL)
        return NULL;
    memset(y->data, 0, (size_t)y->numel * sizeof(double));
    int64_t small[JAC_MAX_DIMS], ds[JAC_MAX_DIMS], ss[JAC_MAX_DIMS], base;
    diag_view(n, shape, axis1, axis2, offset, small, ds, &base);
    jac__contiguous_strides(n - 1, small, 1, ss);
    jac__strided_copy(n - 1, small, g->data, ss, y->data + base, ds);
    JAC__PARAMS(p);
    p.diagonal.offset = offset;
    p.diagonal.axis1 = axis1;
    p.diagonal.axis2 = axis2;
    return jac__record_result(ctx, JAC__OP_DIAG_EMBED, y, 1, &g, &p);
}

jac_tensor *jac_diagonal(jac_ctx *ctx, jac_tensor *a, int64_t offset, int axis1,
                         int axis2)
{
    if (ctx == NULL || !jac__check_arg(ctx, "diagonal", a))
        return NULL;
    char s[JAC__SHAPE_STR_MAX];
    if (a->ndim < 2) {
        jac__error(ctx, JAC_ERR_RANK, "diagonal: needs rank >= 2, got shape %s",
                   jac__shape_str(s, sizeof s, a->ndim, a->shape));
        return NULL;
    }
    int i = jac__axis(axis1, a->ndim), j = jac__axis(axis2, a->ndim);
    if (i < 0 || j < 0 || i == j) {
        jac__error(ctx, JAC_ERR_AXIS,
                   "diagonal: axes %d and %d are out of range or the same "
                   "axis for shape %s",
                   axis1, axis2,
                   jac__shape_str(s, sizeof s, a->ndim, a->shape));
        return NULL;
    }
    return diagonal_impl(ctx, a, offset, i, j);
}

jac_tensor *jac__apply_diagonal(jac_ctx *ctx, const jac__node *n,
                                jac_tensor *const *ins)
{
    return jac_diagonal(ctx, ins[0], n->p.diagonal.offset, n->p.diagonal.axis1,
                        n->p.diagonal.axis2);
}

/* diag_embed is internal and checks nothing: ins[0] must be the diagonal
 * the output's shape (which gives the extents n1 and n2) implies. */
jac_tensor *jac__apply_diag_embed(jac_ctx *ctx, const jac__node *n,
                                  jac_tensor *const *ins)
{
    if (!jac__apply_args(ctx, n, ins))
        return NULL;
    const jac_tensor *y = n->out, *g = ins[0];
    int i = n->p.diagonal.axis1, j = n->p.diagonal.axis2;
    int64_t offset = n->p.diagonal.offset;
    int64_t small[JAC_MAX_DIMS], strides[JAC_MAX_DIMS], base;
    diag_view(y->ndim, y->shape, i, j, offset, small, strides, &base);
    if (g->ndim != y->ndim - 1 ||
        memcmp(g->shape, small, (size_t)g->ndim * sizeof(int64_t)) != 0) {
        char s1[JAC__SHAPE_STR_MAX], s2[JAC__SHAPE_STR_MAX];
        jac__error(ctx, JAC_ERR_SHAPE,
                   "diag_embed: %s is not the diagonal of a tensor of %s",
                   jac__shape_str(s1, sizeof s1, g->ndim, g->shape),
                   jac__shape_str(s2, sizeof s2, y->ndim, y->shape));
        return NULL;
    }
    return diag_embed(ctx, ins[0], offset, i, j, y->shape[i], y->shape[j]);
}

jac_status jac__vjp_diagonal(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                             const bool *need, jac_tensor **gin)
{
    (void)need;
    const jac_tensor *a = node->in[0];
    int nb = jac__batch_ndim(g, node->out);
    int i = node->p.diagonal.axis1, j = node->p.diagonal.axis2;
    gin[0] = diag_embed(ctx, g, node->p.diagonal.offset, nb + i, nb + j,
                        a->shape[i], a->shape[j]);
    return gin[0] ? JAC_OK : ctx->status;
}

jac_status jac__vjp_diag_embed(jac_ctx *ctx, const jac__node *node,
                               jac_tensor *g, const bool *need,
                               jac_tensor **gin)
{
    (void)need;
    int nb = jac__batch_ndim(g, node->out);
    gin[0] =
        diagonal_impl(ctx, g, node->p.diagonal.offset,
                      nb + node->p.diagonal.axis1, nb + node->p.diagonal.axis2);
    return gin[0] ? JAC_OK : ctx->status;
}
