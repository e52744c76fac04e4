/*
 * Elementwise functions of one tensor: the affine maps (the scalar
 * arithmetic ops), powers, exp and log, the trigonometric and hyperbolic
 * families, sigmoid, relu, softplus, erf and clamp.
 *
 * Each function is one row of FUNCTIONS, its value and its derivative
 * written once; the rows are expanded into the forward loops, the raw
 * backward kernel of unrecorded passes, the one-element partials taken at
 * record time, and the differentiable rules. The first three evaluate the
 * row on doubles, the rules on tensors with the library's own ops, and the
 * tensor ops compute element by element the same operations as the double
 * forms, so all four agree bitwise.
 *
 * Kinks (abs, relu, clamp) are differentiated by multiplying the cotangent
 * with a mask: a piecewise-constant function of x, made on tensors of
 * comparison ops (zero derivative), so that a recorded derivative computes
 * it again at new inputs. That is right everywhere
 * but on the kink itself; the value chosen there is PyTorch's.
 *
 * SPDX-License-Identifier: MIT
 */
#include "ops/functions.h"

/* ------------------------------------------------------------------------ */
/* The raw kernel                                                           */
/* ------------------------------------------------------------------------ */

JAC__VECTORIZED bool jac__raw_unary(const jac__node *n, int64_t batch,
                                    const double *gv,
                                    const jac__onehot_rows *onehot,
                                    const bool *need, const bool *add,
                                    double *const *gin)
{
    (void)onehot;
    (void)need;
    const double *xv = n->in[0]->data, *yv = n->out->data;
    int64_t m = n->out->numel;
    double *o = gin[0];
    bool adds = jac__raw_adds(n, add);
    jac__fn_params q = jac__fn_params_of(n);
    for (int64_t b = 0; b < batch; b++, gv += m, o += m) {
        switch (n->op) {
#define RAW_CASE(e, rule, value, derivative, mask)                             \
    case JAC__OP_##e:                                                          \
        if (adds)                                                              \
            for (int64_t i = 0; i < m; i++)                                    \
                o[i] +=                                                        \
                    jac__fn_cotangent(JAC__OP_##e, xv[i], yv[i], gv[i], q);    \
        else                                                                   \
            for (int64_t i = 0; i < m; i++)                                    \
                o[i] = jac__fn_cotangent(JAC__OP_##e, xv[i], yv[i], gv[i], q); \
        break;
            JAC__FUNCTIONS(RAW_CASE)
#undef RAW_CASE
        default:
            return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------------------ */
/* The forward op                                                           */
/* ------------------------------------------------------------------------ */

static JAC__FOLD jac_tensor *function(jac_ctx *ctx, jac__op op,
                                      const char *name, jac_tensor *a,
                                      jac__fn_params q)
{
    if (ctx == NULL || !jac__check_arg(ctx, name, a))
        return NULL;
    if (op == JAC__OP_CLAMP && (isnan(q.c0) || isnan(q.c1) || q.c0 > q.c1)) {
        char s[JAC__SHAPE_STR_MAX];
        jac__error(ctx, JAC_ERR_VALUE,
                   "clamp: bounds [%g, %g] for shape %s: lo must not exceed "
                   "hi and neither may be NaN",
                   q.c0, q.c1, jac__shape_str(s, sizeof s, a->ndim, a->shape));
        return NULL;
    }
    jac_tensor *y = jac__tensor_like(ctx, name, a);
    if (y == NULL)
        return NULL;
    const double *xv = a->data;
    double *o = y->data;
    int64_t n = a->numel;
    /* One element that will be recorded: its value and its partial. */
    bool has_partial = false;
    double partial = 0.0;
    if (n == 1 && jac__should_record(ctx, 1, &a)) {
        o[0] = jac__fn_value_partial((int)op, xv[0], q, &has_partial, &partial);
    } else {
        switch (op) {
#define FORWARD_CASE(e, rule, value, derivative, mask)                         \
    case JAC__OP_##e:                                                          \
        for (int64_t i = 0; i < n; i++)                                        \
            o[i] = jac__fn_value(JAC__OP_##e, xv[i], q);                       \
        break;
            JAC__FUNCTIONS(FORWARD_CASE)
#undef FORWARD_CASE
        default:
            break;
        }
    }
    bool failed;
    jac__node *node = jac__record(ctx, op, y, 1, &a, &failed);
    if (failed)
        return NULL;
    if (node) {
        node->p.affine.alpha = q.c0;
        node->p.affine.beta = q.c1;
        node->p.affine.divide = q.divide;
        node->has_partials = has_partial;
        node->partial[0] = partial;
        node->partial[1] = 0.0;
    }
    return y;
}

static JAC__FOLD jac_tensor *plain(jac_ctx *ctx, jac__op op, jac_tensor *a)
{
    jac__fn_params q = {0.0, 0.0, false};
    return function(ctx, op, jac__ops[op].name, a, q);
}

static JAC__FOLD jac_tensor *affine(jac_ctx *ctx, const char *name,
                                    jac_tensor *a, double alpha, double beta,
                                    bool divide)
{
    jac__fn_params q = {alpha, beta, divide};
    return function(ctx, JAC__OP_AFFINE, name, a, q);
}

jac_tensor *jac_add_scalar(jac_ctx *ctx, jac_tensor *a, double c)
{
    return affine(ctx, "add_scalar", a, 1.0, c, false);
}

jac_tensor *jac_sub_scalar(jac_ctx *ctx, jac_tensor *a, double c)
{
    return affine(ctx, "sub_scalar", a, 1.0, -c, false);
}

jac_tensor *jac_mul_scalar(jac_ctx *ctx, jac_tensor *a, double c)
{
    return affine(ctx, "mul_scalar", a, c, 0.0, false);
}

jac_tensor *jac_div_scalar(jac_ctx *ctx, jac_tensor *a, double c)
{
    return affine(ctx, "div_scalar", a, 1.0 / c, c, true);
}

jac_tensor *jac_rsub_scalar(jac_ctx *ctx, double c, jac_tensor *a)
{
    return affine(ctx, "rsub_scalar", a, -1.0, c, false);
}

jac_tensor *jac_neg(jac_ctx *ctx, jac_tensor *a)
{
    return affine(ctx, "neg", a, -1.0, 0.0, false);
}

jac_tensor *jac_pow_scalar(jac_ctx *ctx, jac_tensor *a, double p)
{
    jac__fn_params q = {p, 0.0, false};
    return function(ctx, JAC__OP_POW_SCALAR, "pow_scalar", a, q);
}

jac_tensor *jac_clamp(jac_ctx *ctx, jac_tensor *a, double lo, double hi)
{
    jac__fn_params q = {lo, hi, false};
    return function(ctx, JAC__OP_CLAMP, "clamp", a, q);
}

#define PLAIN_OP(e, fn)                                                        \
    jac_tensor *jac_##fn(jac_ctx *ctx, jac_tensor *a)                          \
    {                                                                          \
        return plain(ctx, JAC__OP_##e, a);                                     \
    }
PLAIN_OP(EXP, exp)
PLAIN_OP(LOG, log)
PLAIN_OP(SIN, sin)
PLAIN_OP(COS, cos)
PLAIN_OP(TANH, tanh)
PLAIN_OP(ABS, abs)
PLAIN_OP(SIGN, sign)
PLAIN_OP(SQRT, sqrt)
PLAIN_OP(RSQRT, rsqrt)
PLAIN_OP(SQUARE, square)
PLAIN_OP(RECIPROCAL, reciprocal)
PLAIN_OP(EXPM1, expm1)
PLAIN_OP(LOG1P, log1p)
PLAIN_OP(TAN, tan)
PLAIN_OP(ASIN, asin)
PLAIN_OP(ACOS, acos)
PLAIN_OP(ATAN, atan)
PLAIN_OP(SINH, sinh)
PLAIN_OP(COSH, cosh)
PLAIN_OP(ASINH, asinh)
PLAIN_OP(SIGMOID, sigmoid)
PLAIN_OP(RELU, relu)
PLAIN_OP(SOFTPLUS, softplus)
PLAIN_OP(ERF, erf)
#undef PLAIN_OP

/* ------------------------------------------------------------------------ */
/* The rows on tensors: the differentiable rules                            */
/* ------------------------------------------------------------------------ */

/* x compared with the number c by op (a comparison), recorded like any
 * op: the masks of the rows are made of these. */
static jac_tensor *compare_number(jac_ctx *ctx,
                                  jac_tensor *(*op)(jac_ctx *, jac_tensor *,
                                                    jac_tensor *),
                                  jac_tensor *x, double c)
{
    return op(ctx, x, jac_scalar(ctx, c));
}

/* Zeros of shape batch ++ x.shape for a cotangent g of node's output. */
static jac_tensor *zero_cotangent(jac_ctx *ctx, const jac__node *node,
                                  const jac_tensor *g)
{
    const jac_tensor *x = node->in[0];
    int64_t shape[JAC_MAX_DIMS];
    int n = jac__batched_shape(g, jac__batch_ndim(g, node->out), x->ndim,
                               x->shape, shape);
    if (n < 0) {
        jac__error(ctx, JAC_ERR_RANK, "%s: batched gradient exceeds rank %d",
                   jac__ops[node->op].name, JAC_MAX_DIMS);
        return NULL;
    }
    return jac_zeros(ctx, n, shape);
}

#define MUL(a, b) jac_mul(ctx, (a), (b))
#define DIV(a, b) jac_div(ctx, (a), (b))
#define NEG(a) jac_neg(ctx, (a))
#define SQUARE(a) jac_square(ctx, (a))
#define MULS(a, c) jac_mul_scalar(ctx, (a), (c))
#define ADDS(a, c) jac_add_scalar(ctx, (a), (c))
#define RSUB(c, a) jac_rsub_scalar(ctx, (c), (a))
#define POWS(a, c) jac_pow_scalar(ctx, (a), (c))
#define COS(a) jac_cos(ctx, (a))
#define SIN(a) jac_sin(ctx, (a))
#define COSH(a) jac_cosh(ctx, (a))
#define SINH(a) jac_sinh(ctx, (a))
#define EXP(a) jac_exp(ctx, (a))
#define RSQRT(a) jac_rsqrt(ctx, (a))
#define SIGMOID(a) jac_sigmoid(ctx, (a))
#define GT(a, c) compare_number(ctx, jac_gt, (a), (c))
#define LT(a, c) compare_number(ctx, jac_lt, (a), (c))
#define GE(a, c) compare_number(ctx, jac_ge, (a), (c))
#define LE(a, c) compare_number(ctx, jac_le, (a), (c))
#define SUB(a, b) jac_sub(ctx, (a), (b))
#define NOMASK NULL
#define MASK row_mask
#define TIMES(d) jac_mul(ctx, g, (d))
#define SCALE(c) ((c) == 1.0 ? g : jac_mul_scalar(ctx, g, (c)))
#define VJP(e) (e)
#define ZERO zero_cotangent(ctx, node, g)
#define IF(c, f, h) ((c) ? (f) : (h))

#define RULE(e, rule, value, derivative, mask)                                 \
    jac_status jac__vjp_##rule(jac_ctx *ctx, const jac__node *node,            \
                               jac_tensor *g, const bool *need,                \
                               jac_tensor **gin)                               \
    {                                                                          \
        (void)need;                                                            \
        jac_tensor *x = node->in[0], *y = node->out;                           \
        (void)x;                                                               \
        (void)y;                                                               \
        jac__fn_params q = jac__fn_params_of(node);                            \
        JAC__FN_PARAMETERS(q);                                                 \
        jac_tensor *row_mask = (mask);                                         \
        (void)row_mask;                                                        \
        gin[0] = (derivative);                                                 \
        return gin[0] ? JAC_OK : ctx->status;                                  \
    }
JAC__FUNCTIONS(RULE)
#undef RULE

/* ------------------------------------------------------------------------ */
/* Applying a node anew                                                     */
/*                                                                          */
/* Every function is the forward op with the parameters its node keeps      */
/* (zeros for those that take none), so the node's parameters are the       */
/* call's. The affine maps differ only in the name their messages give,     */
/* told here by the parameters as the public calls set them.                */
/* ------------------------------------------------------------------------ */

static const char *apply_name(const jac__node *n)
{
    if (n->op != JAC__OP_AFFINE)
        return jac__ops[n->op].name;
    jac__fn_params q = jac__fn_params_of(n);
    if (q.divide)
        return "div_scalar";
    if (q.c0 == 1.0)
        return "add_scalar";
    if (q.c0 == -1.0)
        return q.c1 == 0.0 ? "neg" : "rsub_scalar";
    return q.c1 == 0.0 ? "mul_scalar" : "affine";
}

#define APPLY(e, rule, value, derivative, mask)                                \
    jac_tensor *jac__apply_##rule(jac_ctx *ctx, const jac__node *n,            \
                                  jac_tensor *const *ins)                      \
    {                                                                          \
        return function(ctx, JAC__OP_##e, apply_name(n), ins[0],               \
                        jac__fn_params_of(n));                                 \
    }
JAC__FUNCTIONS(APPLY)
#undef APPLY
