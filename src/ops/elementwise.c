/*
 * Elementwise ops: binary ops with NumPy broadcasting, the affine family of
 * scalar ops, and unary functions. Each op's forward kernel sits beside its
 * backward rule.
 *
 * SPDX-License-Identifier: MIT
 */
#include "ops/ops.h"

#include <math.h>

typedef enum { BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV } binop;

JAC__VECTORIZED static void binary_run(binop f, int64_t n, const double *a,
                                       int64_t sa, const double *b, int64_t sb,
                                       double *y)
{
    switch (f) {
    case BIN_ADD:
        for (int64_t i = 0; i < n; i++)
            y[i] = a[i * sa] + b[i * sb];
        break;
    case BIN_SUB:
        for (int64_t i = 0; i < n; i++)
            y[i] = a[i * sa] - b[i * sb];
        break;
    case BIN_MUL:
        for (int64_t i = 0; i < n; i++)
            y[i] = a[i * sa] * b[i * sb];
        break;
    case BIN_DIV:
        for (int64_t i = 0; i < n; i++)
            y[i] = a[i * sa] / b[i * sb];
        break;
    }
}

/* y = f(a, b) over the broadcast shape of y: the innermost axis runs as one
 * strided loop, the outer axes as an odometer. */
static void binary_kernel(binop f, const jac_tensor *a, const jac_tensor *b,
                          jac_tensor *y)
{
    if (y->numel == 0)
        return;
    if (a->numel == y->numel && b->numel == y->numel) {
        binary_run(f, y->numel, a->data, 1, b->data, 1, y->data);
        return;
    }
    if (a->numel == y->numel && b->numel == 1) {
        binary_run(f, y->numel, a->data, 1, b->data, 0, y->data);
        return;
    }
    if (a->numel == 1 && b->numel == y->numel) {
        binary_run(f, y->numel, a->data, 0, b->data, 1, y->data);
        return;
    }
    int n = y->ndim;
    int64_t sa[JAC_MAX_DIMS], sb[JAC_MAX_DIMS], idx[JAC_MAX_DIMS] = {0};
    jac__broadcast_strides(a, n, y->shape, sa);
    jac__broadcast_strides(b, n, y->shape, sb);
    int64_t inner = y->shape[n - 1];
    int64_t outer = y->numel / inner;
    int64_t oa = 0, ob = 0;
    double *out = y->data;
    for (int64_t o = 0; o < outer; o++) {
        binary_run(f, inner, a->data + oa, sa[n - 1], b->data + ob, sb[n - 1],
                   out);
        out += inner;
        for (int d = n - 2; d >= 0; d--) {
            oa += sa[d];
            ob += sb[d];
            if (++idx[d] < y->shape[d])
                break;
            oa -= sa[d] * y->shape[d];
            ob -= sb[d] * y->shape[d];
            idx[d] = 0;
        }
    }
}

/* Computes and records y = f(a, b) into a y of the broadcast shape. */
static jac_tensor *binary_finish(jac_ctx *ctx, jac__op op, binop f,
                                 jac_tensor *a, jac_tensor *b, jac_tensor *y)
{
    binary_kernel(f, a, b, y);
    jac_tensor *ins[2] = {a, b};
    bool failed;
    jac__node *node = jac__record(ctx, op, y, 2, ins, &failed);
    if (node && y->numel == 1)
        jac__record_partials(node);
    return failed ? NULL : y;
}

static jac_tensor *binary(jac_ctx *ctx, jac__op op, binop f, jac_tensor *a,
                          jac_tensor *b)
{
    const char *name = jac__ops[op].name;
    if (ctx == NULL || !jac__check_arg(ctx, name, a) ||
        !jac__check_arg(ctx, name, b))
        return NULL;
    bool same = a->ndim == b->ndim && a->numel <= JAC__INLINE_NUMEL;
    for (int i = 0; same && i < a->ndim; i++)
        same = a->shape[i] == b->shape[i];
    if (same) {
        /* The same small shape: no broadcasting, no checks. */
        jac_tensor *y = jac__tensor_like(ctx, name, a);
        return y ? binary_finish(ctx, op, f, a, b, y) : NULL;
    }
    int64_t shape[JAC_MAX_DIMS];
    int n = jac__broadcast_shape(a->ndim, a->shape, b->ndim, b->shape, shape);
    if (n < 0) {
        char s1[JAC__SHAPE_STR_MAX], s2[JAC__SHAPE_STR_MAX];
        jac__error(ctx, JAC_ERR_SHAPE,
                   "%s: shapes %s and %s cannot be broadcast together", name,
                   jac__shape_str(s1, sizeof s1, a->ndim, a->shape),
                   jac__shape_str(s2, sizeof s2, b->ndim, b->shape));
        return NULL;
    }
    jac_tensor *y = jac__tensor_alloc(ctx, name, n, shape);
    return y ? binary_finish(ctx, op, f, a, b, y) : NULL;
}

jac_tensor *jac_add(jac_ctx *ctx, jac_tensor *a, jac_tensor *b)
{
    return binary(ctx, JAC__OP_ADD, BIN_ADD, a, b);
}

jac_tensor *jac_sub(jac_ctx *ctx, jac_tensor *a, jac_tensor *b)
{
    return binary(ctx, JAC__OP_SUB, BIN_SUB, a, b);
}

jac_tensor *jac_mul(jac_ctx *ctx, jac_tensor *a, jac_tensor *b)
{
    return binary(ctx, JAC__OP_MUL, BIN_MUL, a, b);
}

jac_tensor *jac_div(jac_ctx *ctx, jac_tensor *a, jac_tensor *b)
{
    return binary(ctx, JAC__OP_DIV, BIN_DIV, a, b);
}

/* Broadcasting is undone in a backward rule by summing the cotangent over
 * the axes that the forward op stretched; the batch axes in front of g stay. */
static jac_status reduce_both(jac_ctx *ctx, const jac__node *node,
                              jac_tensor *g, const bool *need, jac_tensor *ga,
                              jac_tensor *gb, jac_tensor **gin)
{
    int nb = jac__batch_ndim(g, node->out);
    if (need[0]) {
        gin[0] = jac__sum_to_batched(ctx, ga, nb, node->in[0]->ndim,
                                     node->in[0]->shape);
        if (gin[0] == NULL)
            return ctx->status;
    }
    if (need[1]) {
        gin[1] = jac__sum_to_batched(ctx, gb, nb, node->in[1]->ndim,
                                     node->in[1]->shape);
        if (gin[1] == NULL)
            return ctx->status;
    }
    return JAC_OK;
}

jac_status jac__vjp_add(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                        const bool *need, jac_tensor **gin)
{
    return reduce_both(ctx, node, g, need, g, g, gin);
}

jac_status jac__vjp_sub(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                        const bool *need, jac_tensor **gin)
{
    jac_status s = reduce_both(ctx, node, g, need, g, g, gin);
    if (s == JAC_OK && need[1]) {
        gin[1] = jac_neg(ctx, gin[1]);
        if (gin[1] == NULL)
            return ctx->status;
    }
    return s;
}

jac_status jac__vjp_mul(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                        const bool *need, jac_tensor **gin)
{
    jac_tensor *ga = need[0] ? jac_mul(ctx, g, node->in[1]) : g;
    jac_tensor *gb = need[1] ? jac_mul(ctx, g, node->in[0]) : g;
    if (ga == NULL || gb == NULL)
        return ctx->status;
    return reduce_both(ctx, node, g, need, ga, gb, gin);
}

/* d(a/b)/da = 1/b, d(a/b)/db = -(a/b)/b: the output is reused. */
jac_status jac__vjp_div(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                        const bool *need, jac_tensor **gin)
{
    jac_tensor *b = node->in[1];
    jac_tensor *ga = need[0] ? jac_div(ctx, g, b) : g;
    jac_tensor *gb =
        need[1] ? jac_neg(ctx, jac_div(ctx, jac_mul(ctx, g, node->out), b)) : g;
    if (ga == NULL || gb == NULL)
        return ctx->status;
    return reduce_both(ctx, node, g, need, ga, gb, gin);
}

/* ------------------------------------------------------------------------ */
/* The affine family: y = alpha * x + beta                                  */
/* ------------------------------------------------------------------------ */

typedef enum { AFF_GENERAL, AFF_DIVIDE } affine_kind;

static jac_tensor *affine(jac_ctx *ctx, const char *name, jac_tensor *a,
                          double alpha, double beta, affine_kind kind,
                          double divisor)
{
    if (ctx == NULL || !jac__check_arg(ctx, name, a))
        return NULL;
    jac_tensor *y = jac__tensor_like(ctx, name, a);
    if (y == NULL)
        return NULL;
    const double *x = a->data;
    double *o = y->data;
    int64_t n = a->numel;
    /* Separate loops keep each case exact: x + c, c * x and x / c round as
     * the single operation a user expects. */
    if (kind == AFF_DIVIDE)
        for (int64_t i = 0; i < n; i++)
            o[i] = x[i] / divisor;
    else if (alpha == 1.0)
        for (int64_t i = 0; i < n; i++)
            o[i] = x[i] + beta;
    else if (beta == 0.0)
        for (int64_t i = 0; i < n; i++)
            o[i] = alpha * x[i];
    else
        for (int64_t i = 0; i < n; i++)
            o[i] = alpha * x[i] + beta;
    bool failed;
    jac__node *node = jac__record(ctx, JAC__OP_AFFINE, y, 1, &a, &failed);
    if (failed)
        return NULL;
    if (node) {
        node->p.affine.alpha = alpha;
        node->p.affine.beta = beta;
        if (n == 1)
            jac__record_partials(node);
    }
    return y;
}

jac_tensor *jac_add_scalar(jac_ctx *ctx, jac_tensor *a, double c)
{
    return affine(ctx, "add_scalar", a, 1.0, c, AFF_GENERAL, 0.0);
}

jac_tensor *jac_sub_scalar(jac_ctx *ctx, jac_tensor *a, double c)
{
    return affine(ctx, "sub_scalar", a, 1.0, -c, AFF_GENERAL, 0.0);
}

jac_tensor *jac_mul_scalar(jac_ctx *ctx, jac_tensor *a, double c)
{
    return affine(ctx, "mul_scalar", a, c, 0.0, AFF_GENERAL, 0.0);
}

jac_tensor *jac_div_scalar(jac_ctx *ctx, jac_tensor *a, double c)
{
    return affine(ctx, "div_scalar", a, 1.0 / c, 0.0, AFF_DIVIDE, c);
}

jac_tensor *jac_rsub_scalar(jac_ctx *ctx, double c, jac_tensor *a)
{
    return affine(ctx, "rsub_scalar", a, -1.0, c, AFF_GENERAL, 0.0);
}

jac_tensor *jac_neg(jac_ctx *ctx, jac_tensor *a)
{
    return affine(ctx, "neg", a, -1.0, 0.0, AFF_GENERAL, 0.0);
}

jac_status jac__vjp_affine(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                           const bool *need, jac_tensor **gin)
{
    (void)need;
    double alpha = node->p.affine.alpha;
    gin[0] = alpha == 1.0 ? g : jac_mul_scalar(ctx, g, alpha);
    return gin[0] ? JAC_OK : ctx->status;
}

/* ------------------------------------------------------------------------ */
/* Unary functions                                                          */
/* ------------------------------------------------------------------------ */

/* The values of the unary functions at x. */
#define UNARY_VALUES(X)                                                        \
    X(EXP, exp(x))                                                             \
    X(LOG, log(x))                                                             \
    X(SIN, sin(x))                                                             \
    X(COS, cos(x))                                                             \
    X(TANH, tanh(x))                                                           \
    X(POW_SCALAR, p == 2.0 ? x * x : pow(x, p))

/* One element that will be recorded: its value and, in the same place (so
 * that sin and cos of one x become a single sincos), the derivative for an
 * unrecorded backward pass. */
static void unary_one(jac__op op, double x, double p, double *out,
                      jac__node *node)
{
    double y = 0.0, alpha = 0.0;
    (void)alpha;
    switch (op) {
#define UNARY_ONE(o, expr)                                                     \
    case JAC__OP_##o:                                                          \
        y = (expr);                                                            \
        break;
        UNARY_VALUES(UNARY_ONE)
#undef UNARY_ONE
    default:
        break;
    }
    *out = y;
    node->has_partials = true;
    node->partial[1] = 0.0;
    switch (op) {
#define UNARY_PARTIAL(o, expr)                                                 \
    case JAC__OP_##o:                                                          \
        node->partial[0] = (expr);                                             \
        break;
        JAC__UNARY_DERIVATIVES(UNARY_PARTIAL)
#undef UNARY_PARTIAL
    case JAC__OP_POW_SCALAR:
        node->has_partials = p != 0.0;
        node->partial[0] = p != 0.0 ? jac__pow_scalar_factor(x, p) : 0.0;
        break;
    default:
        node->has_partials = false;
        break;
    }
}

static jac_tensor *unary(jac_ctx *ctx, jac__op op, jac_tensor *a, double p)
{
    const char *name = jac__ops[op].name;
    if (ctx == NULL || !jac__check_arg(ctx, name, a))
        return NULL;
    jac_tensor *y = jac__tensor_like(ctx, name, a);
    if (y == NULL)
        return NULL;
    const double *xv = a->data;
    double *o = y->data;
    int64_t n = a->numel;
    bool failed;
    jac__node *node = jac__record(ctx, op, y, 1, &a, &failed);
    if (failed)
        return NULL;
    if (node)
        node->p.scalar = p;
    if (node && n == 1) {
        unary_one(op, xv[0], p, o, node);
        return y;
    }
    switch (op) {
#define UNARY_LOOP(o_, expr)                                                   \
    case JAC__OP_##o_:                                                         \
        for (int64_t i = 0; i < n; i++) {                                      \
            double x = xv[i];                                                  \
            o[i] = (expr);                                                     \
        }                                                                      \
        break;
        UNARY_VALUES(UNARY_LOOP)
#undef UNARY_LOOP
    default:
        break;
    }
    return y;
}

jac_tensor *jac_exp(jac_ctx *ctx, jac_tensor *a)
{
    return unary(ctx, JAC__OP_EXP, a, 0.0);
}

jac_tensor *jac_log(jac_ctx *ctx, jac_tensor *a)
{
    return unary(ctx, JAC__OP_LOG, a, 0.0);
}

jac_tensor *jac_sin(jac_ctx *ctx, jac_tensor *a)
{
    return unary(ctx, JAC__OP_SIN, a, 0.0);
}

jac_tensor *jac_cos(jac_ctx *ctx, jac_tensor *a)
{
    return unary(ctx, JAC__OP_COS, a, 0.0);
}

jac_tensor *jac_tanh(jac_ctx *ctx, jac_tensor *a)
{
    return unary(ctx, JAC__OP_TANH, a, 0.0);
}

jac_tensor *jac_pow_scalar(jac_ctx *ctx, jac_tensor *a, double p)
{
    return unary(ctx, JAC__OP_POW_SCALAR, a, p);
}

static jac_status unary_result(jac_ctx *ctx, jac_tensor *r, jac_tensor **gin)
{
    gin[0] = r;
    return r ? JAC_OK : ctx->status;
}

jac_status jac__vjp_exp(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                        const bool *need, jac_tensor **gin)
{
    (void)need;
    return unary_result(ctx, jac_mul(ctx, g, node->out), gin);
}

jac_status jac__vjp_log(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                        const bool *need, jac_tensor **gin)
{
    (void)need;
    return unary_result(ctx, jac_div(ctx, g, node->in[0]), gin);
}

jac_status jac__vjp_sin(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                        const bool *need, jac_tensor **gin)
{
    (void)need;
    return unary_result(ctx, jac_mul(ctx, g, jac_cos(ctx, node->in[0])), gin);
}

jac_status jac__vjp_cos(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                        const bool *need, jac_tensor **gin)
{
    (void)need;
    return unary_result(
        ctx, jac_neg(ctx, jac_mul(ctx, g, jac_sin(ctx, node->in[0]))), gin);
}

/* tanh' = 1 - tanh^2, from the saved output. */
jac_status jac__vjp_tanh(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                         const bool *need, jac_tensor **gin)
{
    (void)need;
    jac_tensor *y = node->out;
    jac_tensor *d = jac_rsub_scalar(ctx, 1.0, jac_mul(ctx, y, y));
    return unary_result(ctx, jac_mul(ctx, g, d), gin);
}

/* d(x^p)/dx = p x^(p-1), with p = 0 exactly zero (no 0 * inf at x = 0) and
 * p = 1 the identity. */
jac_status jac__vjp_pow_scalar(jac_ctx *ctx, const jac__node *node,
                               jac_tensor *g, const bool *need,
                               jac_tensor **gin)
{
    (void)need;
    double p = node->p.scalar;
    jac_tensor *x = node->in[0];
    if (p == 0.0) {
        int64_t shape[JAC_MAX_DIMS];
        int n = jac__batched_shape(g, jac__batch_ndim(g, node->out), x->ndim,
                                   x->shape, shape);
        return unary_result(ctx, jac_zeros(ctx, n, shape), gin);
    }
    if (p == 1.0)
        return unary_result(ctx, g, gin);
    jac_tensor *d =
        p == 2.0 ? jac_mul_scalar(ctx, x, 2.0)
                 : jac_mul_scalar(ctx, jac_pow_scalar(ctx, x, p - 1.0), p);
    return unary_result(ctx, jac_mul(ctx, g, d), gin);
}
