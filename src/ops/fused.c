/*
 * Fused backward kernels for passes that are not recorded.
 *
 * Without create-graph, a backward rule's only job is numbers: these kernels
 * compute an op's input cotangents straight into buffers, with no tensor per
 * intermediate and with BLAS transposes instead of materialised ones. They
 * cover the ops that dominate real graphs, in their common shapes; for
 * anything else a kernel declines and the engine runs the op's ordinary
 * rule (written with differentiable ops, in the op's family file), which
 * stays the reference. The test suite compares both paths op by op.
 *
 * A kernel receives the node, the number of stacked cotangents (the product
 * of the batch axes; 1 without), the cotangent g of shape batch ++ out.shape,
 * and for each input with need[j] a buffer gin[j] of batch * in[j].numel
 * doubles to fill. It returns false, before writing anything, for a case it
 * does not cover.
 *
 * SPDX-License-Identifier: MIT
 */
#include "ops/ops.h"

#include <cblas.h>
#include <math.h>

static blasint ld(int64_t n) { return (blasint)(n > 1 ? n : 1); }

/* Whether t, broadcast to out, repeats along leading axes only: its shape,
 * without leading ones, equals out's trailing extents. Element i of out
 * then reads t at i % t->numel. */
static bool is_suffix(const jac_tensor *t, const jac_tensor *out)
{
    if (t->numel == out->numel)
        return true; /* broadcast without stretching: the same layout */
    int lead = 0;
    while (lead < t->ndim && t->shape[lead] == 1)
        lead++;
    int rest = t->ndim - lead;
    if (rest > out->ndim)
        return false;
    return memcmp(t->shape + lead, out->shape + out->ndim - rest,
                  (size_t)rest * sizeof(int64_t)) == 0;
}

/* dst[b, j] = sum over r of src[b, r * m + j]: a cotangent of n elements per
 * batch summed down to a suffix of m elements. */
JAC__VECTORIZED static void reduce_suffix(int64_t batch, int64_t n, int64_t m,
                                          const double *src, double *dst)
{
    for (int64_t b = 0; b < batch; b++) {
        double *d = dst + b * m;
        const double *s = src + b * n;
        for (int64_t j = 0; j < m; j++)
            d[j] = 0.0;
        for (int64_t r = 0; m > 0 && r < n / m; r++)
            for (int64_t j = 0; j < m; j++)
                d[j] += s[r * m + j];
    }
}

/* ------------------------------------------------------------------------ */
/* Elementwise                                                              */
/* ------------------------------------------------------------------------ */

/* gin = g * d(x, y) elementwise for a unary op, d given by the op. */
JAC__VECTORIZED bool jac__raw_unary(const jac__node *n, int64_t batch,
                                    const double *gv,
                                    const jac__onehot_rows *onehot,
                                    const bool *need, double *const *gin)
{
    (void)onehot;
    (void)need;
    const double *xv = n->in[0]->data, *yv = n->out->data;
    int64_t m = n->out->numel;
    double *o = gin[0];
    double p = n->p.scalar, alpha = n->p.affine.alpha;
    for (int64_t b = 0; b < batch; b++, gv += m, o += m) {
        switch (n->op) {
#define FUSED_UNARY_LOOP(op, expr)                                             \
    case JAC__OP_##op:                                                         \
        for (int64_t i = 0; i < m; i++) {                                      \
            double x = xv[i], y = yv[i];                                       \
            (void)x;                                                           \
            (void)y;                                                           \
            o[i] = gv[i] * (expr);                                             \
        }                                                                      \
        break;
            JAC__UNARY_DERIVATIVES(FUSED_UNARY_LOOP)
#undef FUSED_UNARY_LOOP
        case JAC__OP_LOG:
            for (int64_t i = 0; i < m; i++)
                o[i] = gv[i] / xv[i];
            break;
        case JAC__OP_POW_SCALAR:
            if (p == 0.0)
                memset(o, 0, (size_t)m * sizeof(double));
            else
                for (int64_t i = 0; i < m; i++)
                    o[i] = gv[i] * jac__pow_scalar_factor(xv[i], p);
            break;
        default:
            return false;
        }
    }
    return true;
}

/* The cotangent of one input of a broadcasting binary op whose inputs are
 * both suffixes of the output: scale * g * factor (factor NULL for 1),
 * summed over the leading axes along which the input was repeated. Loops
 * run over whole rows of the shorter operand, so there is no index
 * arithmetic per element. */
JAC__VECTORIZED static void binary_input(const jac__node *n, int j,
                                         int64_t batch, const double *g,
                                         const jac_tensor *factor, double scale,
                                         double *dst)
{
    int64_t m = n->out->numel, k = n->in[j]->numel;
    int64_t f = factor ? factor->numel : m;
    if (k == m && f == m) { /* the common case: no broadcasting at all */
        const double *fd = factor ? factor->data : NULL;
        for (int64_t b = 0; b < batch; b++, g += m, dst += m)
            for (int64_t i = 0; i < m; i++)
                dst[i] = fd ? scale * (g[i] * fd[i]) : scale * g[i];
        return;
    }
    /* Rows of the finer of the two repeats: both k and f divide m. */
    int64_t row = k < f ? k : f;
    if (m == 0) { /* an empty output: an input broadcast into it gets 0 */
        memset(dst, 0, (size_t)(batch * k) * sizeof(double));
        return;
    }
    for (int64_t b = 0; b < batch; b++) {
        const double *gb = g + b * m;
        double *d = dst + b * k;
        if (k < m)
            memset(d, 0, (size_t)k * sizeof(double));
        for (int64_t r = 0; r < m; r += row) {
            const double *gr = gb + r;
            const double *fr = factor ? factor->data + r % f : NULL;
            double *dr = d + r % k;
            if (k == m && fr)
                for (int64_t i = 0; i < row; i++)
                    dr[i] = scale * (gr[i] * fr[i]);
            else if (k == m)
                for (int64_t i = 0; i < row; i++)
                    dr[i] = scale * gr[i];
            else if (fr)
                for (int64_t i = 0; i < row; i++)
                    dr[i] += scale * (gr[i] * fr[i]);
            else
                for (int64_t i = 0; i < row; i++)
                    dr[i] += scale * gr[i];
        }
    }
}

/* div's cotangents at one element: of a (ga) and of b (gb), where y = a / b. */
static inline void div_vjp(double g, double b, double y, double *ga, double *gb)
{
    *ga = g / b;
    *gb = -((g * y) / b);
}

JAC__VECTORIZED bool jac__raw_binary(const jac__node *n, int64_t batch,
                                     const double *g,
                                     const jac__onehot_rows *onehot,
                                     const bool *need, double *const *gin)
{
    (void)onehot;
    const jac_tensor *a = n->in[0], *b = n->in[1], *y = n->out;
    if (!is_suffix(a, y) || !is_suffix(b, y))
        return false;
    switch (n->op) {
    case JAC__OP_ADD:
    case JAC__OP_SUB:
        if (need[0])
            binary_input(n, 0, batch, g, NULL, 1.0, gin[0]);
        if (need[1])
            binary_input(n, 1, batch, g, NULL,
                         n->op == JAC__OP_SUB ? -1.0 : 1.0, gin[1]);
        return true;
    case JAC__OP_MUL:
        if (need[0])
            binary_input(n, 0, batch, g, b, 1.0, gin[0]);
        if (need[1])
            binary_input(n, 1, batch, g, a, 1.0, gin[1]);
        return true;
    case JAC__OP_DIV:
        if (a->numel != y->numel || b->numel != y->numel)
            return false;
        for (int64_t s = 0; s < batch; s++) {
            const double *gs = g + s * y->numel;
            for (int64_t i = 0; i < y->numel; i++) {
                double ga, gb;
                div_vjp(gs[i], b->data[i], y->data[i], &ga, &gb);
                if (need[0])
                    gin[0][s * y->numel + i] = ga;
                if (need[1])
                    gin[1][s * y->numel + i] = gb;
            }
        }
        return true;
    default:
        return false;
    }
}

/* ------------------------------------------------------------------------ */
/* Reductions and shapes                                                    */
/* ------------------------------------------------------------------------ */

/* sum over every axis: each element receives its batch's cotangent. */
JAC__VECTORIZED bool jac__raw_sum(const jac__node *n, int64_t batch,
                                  const double *g,
                                  const jac__onehot_rows *onehot,
                                  const bool *need, double *const *gin)
{
    (void)onehot;
    (void)need;
    const jac_tensor *x = n->in[0];
    if (n->out->numel != 1)
        return false;
    for (int64_t b = 0; b < batch; b++)
        for (int64_t i = 0; i < x->numel; i++)
            gin[0][b * x->numel + i] = g[b];
    return true;
}

/* expand of a suffix: the cotangent summed over the repeated leading axes. */
bool jac__raw_expand(const jac__node *n, int64_t batch, const double *g,
                     const jac__onehot_rows *onehot, const bool *need,
                     double *const *gin)
{
    (void)onehot;
    (void)need;
    const jac_tensor *x = n->in[0], *y = n->out;
    if (!is_suffix(x, y))
        return false;
    reduce_suffix(batch, y->numel, x->numel, g, gin[0]);
    return true;
}

/* sum_to a suffix: the cotangent repeated over the summed leading axes. */
JAC__VECTORIZED bool jac__raw_sum_to(const jac__node *n, int64_t batch,
                                     const double *g,
                                     const jac__onehot_rows *onehot,
                                     const bool *need, double *const *gin)
{
    (void)onehot;
    (void)need;
    const jac_tensor *x = n->in[0], *y = n->out;
    if (n->p.sum_to.nlead != 0 || !is_suffix(y, x))
        return false;
    int64_t m = y->numel, k = x->numel;
    for (int64_t b = 0; b < batch; b++)
        for (int64_t i = 0; i < k; i++)
            gin[0][b * k + i] = g[b * m + (m ? i % m : 0)];
    return true;
}

bool jac__raw_reshape(const jac__node *n, int64_t batch, const double *g,
                      const jac__onehot_rows *onehot, const bool *need,
                      double *const *gin)
{
    (void)onehot;
    (void)need;
    memcpy(gin[0], g, (size_t)(batch * n->out->numel) * sizeof(double));
    return true;
}

/* Copies count blocks of inner elements between the sliced positions of a
 * tensor with extent big along the axis and a dense one, per batch. */
JAC__VECTORIZED static void slice_move(int64_t batch, int64_t outer,
                                       int64_t big, int64_t inner,
                                       int64_t start, int64_t step,
                                       int64_t count, double *full,
                                       double *part, bool to_part)
{
    size_t bytes = (size_t)inner * sizeof(double);
    if (inner == 0 || count == 0)
        return; /* empty: the other extents may be huge */
    for (int64_t o = 0; o < batch * outer; o++) {
        double *f = full + (o * big + start) * inner;
        double *p = part + o * count * inner;
        if (inner == 1 && to_part)
            for (int64_t i = 0; i < count; i++)
                p[i] = f[i * step];
        else if (inner == 1)
            for (int64_t i = 0; i < count; i++)
                f[i * step] = p[i];
        else
            for (int64_t i = 0; i < count; i++)
                memcpy(to_part ? p + i * inner : f + i * step * inner,
                       to_part ? f + i * step * inner : p + i * inner, bytes);
    }
}

static void slice_geometry(const jac_tensor *full, int axis, int64_t *outer,
                           int64_t *inner)
{
    *outer = 1;
    *inner = 1;
    for (int i = 0; i < axis; i++)
        *outer *= full->shape[i];
    for (int i = axis + 1; i < full->ndim; i++)
        *inner *= full->shape[i];
}

bool jac__raw_slice(const jac__node *n, int64_t batch, const double *g,
                    const jac__onehot_rows *onehot, const bool *need,
                    double *const *gin)
{
    (void)onehot;
    (void)need;
    bool scatter = n->op == JAC__OP_SLICE_SCATTER;
    const jac_tensor *full = scatter ? n->out : n->in[0];
    const jac_tensor *part = scatter ? n->in[0] : n->out;
    int axis = n->p.slice.axis;
    int64_t outer, inner;
    slice_geometry(full, axis, &outer, &inner);
    int64_t count = part->shape[axis];
    if (scatter) {
        slice_move(batch, outer, full->shape[axis], inner, n->p.slice.start,
                   n->p.slice.step, count, (double *)g, gin[0], true);
    } else {
        memset(gin[0], 0, (size_t)(batch * full->numel) * sizeof(double));
        slice_move(batch, outer, full->shape[axis], inner, n->p.slice.start,
                   n->p.slice.step, count, gin[0], (double *)g, false);
    }
    return true;
}

/* ------------------------------------------------------------------------ */
/* Matrix products                                                          */
/* ------------------------------------------------------------------------ */

/* C[M, N] = op(A) op(B) with row-major operands, any extent zero allowed. */
static void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K,
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
                     double *const *gin)
{
    if (onehot && matmul_onehot(n, onehot, need, gin))
        return true;
    const jac_tensor *a = n->in[0], *b = n->in[1];
    if (a->ndim > 2 || b->ndim > 2)
        return false;
    int64_t k = a->shape[a->ndim - 1];
    if (a->ndim == 2 && b->ndim == 1) {
        int64_t m = a->shape[0];
        if (need[1])
            gemm(false, false, batch, k, m, g, m, a->data, k, gin[1]);
        if (need[0])
            gemm(false, false, batch * m, k, 1, g, 1, b->data, k, gin[0]);
        return true;
    }
    if (a->ndim == 1 && b->ndim == 2) {
        int64_t nn = b->shape[1];
        if (need[0])
            gemm(false, true, batch, k, nn, g, nn, b->data, nn, gin[0]);
        if (need[1])
            for (int64_t s = 0; s < batch; s++)
                gemm(false, false, k, nn, 1, a->data, 1, g + s * nn, nn,
                     gin[1] + s * k * nn);
        return true;
    }
    if (a->ndim == 2 && b->ndim == 2) {
        int64_t m = a->shape[0], nn = b->shape[1];
        if (need[0])
            gemm(false, true, batch * m, k, nn, g, nn, b->data, nn, gin[0]);
        if (need[1])
            for (int64_t s = 0; s < batch; s++)
                gemm(true, false, k, nn, m, a->data, k, g + s * m * nn, nn,
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

JAC__VECTORIZED bool jac__raw_transpose(const jac__node *n, int64_t batch,
                                        const double *g,
                                        const jac__onehot_rows *onehot,
                                        const bool *need, double *const *gin)
{
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
/* One element                                                              */
/* ------------------------------------------------------------------------ */

bool jac__fused_scalar(const jac__node *n, double g, double *gin)
{
    if (n->has_partials) {
        gin[0] = g * n->partial[0];
        gin[1] = g * n->partial[1];
        return true;
    }
    switch (n->op) {
    case JAC__OP_LOG:
        gin[0] = g / n->in[0]->data[0];
        return true;
    case JAC__OP_DIV:
        div_vjp(g, n->in[1]->data[0], n->out->data[0], &gin[0], &gin[1]);
        return true;
    default:
        return false;
    }
}

void jac__record_partials(jac__node *n)
{
    /* Broadcasting never shrinks an extent other than to 0, so the inputs
     * of a one-element output have one element each. */
    n->has_partials = false;
    if (n->out->numel != 1 || n->nin > 2)
        return;
    /* The binary kernels compute scale * g and scale * (g * factor) with
     * scale 1 or -1: g times these partials. */
    if (n->op == JAC__OP_ADD || n->op == JAC__OP_SUB) {
        n->partial[0] = 1.0;
        n->partial[1] = n->op == JAC__OP_SUB ? -1.0 : 1.0;
        n->has_partials = true;
        return;
    }
    double x = n->in[0]->data[0], y = n->out->data[0];
    double alpha = n->p.affine.alpha, p = n->p.scalar;
    (void)y;
    n->partial[1] = 0.0;
    switch (n->op) {
#define FUSED_UNARY_PARTIAL(op, expr)                                          \
    case JAC__OP_##op:                                                         \
        n->partial[0] = (expr);                                                \
        break;
        JAC__UNARY_DERIVATIVES(FUSED_UNARY_PARTIAL)
#undef FUSED_UNARY_PARTIAL
    case JAC__OP_POW_SCALAR:
        if (p == 0.0)
            return;
        n->partial[0] = jac__pow_scalar_factor(x, p);
        break;
    case JAC__OP_MUL:
        n->partial[0] = n->in[1]->data[0];
        n->partial[1] = x;
        break;
    default:
        return;
    }
    n->has_partials = true;
}
