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
 * with a mask: a piecewise-constant function of x, computed from the saved
 * input, whose own derivative is taken as zero. That is right everywhere
 * but on the kink itself; the value chosen there is PyTorch's.
 *
 * SPDX-License-Identifier: MIT
 */
#include "ops/ops.h"

#include <math.h>

/* 2 / sqrt(pi), the scale of erf's derivative (M_2_SQRTPI is not C11). */
#define TWO_OVER_SQRT_PI 1.1283791670955126

/* 1 / (1 + e^-v) without overflow: e^-|v| never exceeds 1. */
static double sigmoid_value(double v)
{
    if (v >= 0.0)
        return 1.0 / (1.0 + exp(-v));
    double e = exp(v);
    return e / (1.0 + e);
}

/* log(1 + e^v) = max(v, 0) + log1p(e^-|v|): exact and smooth everywhere.
 * (PyTorch returns v itself above a threshold of 20; the two differ by less
 * than e^-20 there, and this form keeps every derivative continuous.) */
static double softplus_value(double v)
{
    return (v > 0.0 ? v : 0.0) + log1p(exp(-fabs(v)));
}

/* -1, 0 or 1; zeros (of either sign) and NaN map to themselves. */
static double sign_value(double v)
{
    return v > 0.0 ? 1.0 : v < 0.0 ? -1.0 : v;
}

/* x^p, with x^2 as one product. */
static double pow_value(double v, double p)
{
    return p == 2.0 ? v * v : pow(v, p);
}

/* alpha x + beta, each special case rounding as the single operation a user
 * expects: x + c, c x, and x / d (stored as alpha = 1 / d, beta = d, and
 * told apart by a divisor flag in divide). */
static double affine_value(double v, double alpha, double beta, bool divide)
{
    if (divide)
        return v / beta;
    if (alpha == 1.0)
        return v + beta;
    if (beta == 0.0)
        return alpha * v;
    return alpha * v + beta;
}

/* ------------------------------------------------------------------------ */
/* The functions                                                            */
/*                                                                          */
/* X(OP, rule, value, derivative, mask)                                     */
/* - value: y as an expression of x and the parameters (p for pow_scalar;   */
/*   alpha, beta and divide for affine; lo and hi for clamp);               */
/* - derivative: the input cotangent, one of                                */
/*     TIMES(d)  g * d, with d an expression of x, y and the parameters;    */
/*     SCALE(c)  g * c for a number c (g itself when c is 1);               */
/*     VJP(e)    e, an expression of g, x, y and the parameters;            */
/*     ZERO      exact zeros, whatever g holds;                             */
/*     IF(c, f, h)  f where the parameter test c holds, else h;             */
/*   written with MUL, DIV, NEG, SQUARE, MULS (times a number), ADDS (plus  */
/*   a number), RSUB (a number minus), POWS (a power), the functions COS,   */
/*   SIN, COSH, SINH, EXP, RSQRT, SIGMOID, and MASK;                        */
/* - mask: the piecewise-constant factor MASK stands for (0 when unused).   */
/* ------------------------------------------------------------------------ */

#define FUNCTIONS(X)                                                           \
    X(AFFINE, affine, affine_value(x, alpha, beta, divide), SCALE(alpha), 0)   \
    X(POW_SCALAR, pow_scalar, pow_value(x, p),                                 \
      IF(p == 0.0, ZERO,                                                       \
         IF(p == 1.0, VJP(g),                                                  \
            TIMES(p == 2.0 ? MULS(x, 2.0) : MULS(POWS(x, p - 1.0), p)))),      \
      0)                                                                       \
    X(EXP, exp, exp(x), TIMES(y), 0)                                           \
    X(LOG, log, log(x), VJP(DIV(g, x)), 0)                                     \
    X(SIN, sin, sin(x), TIMES(COS(x)), 0)                                      \
    X(COS, cos, cos(x), TIMES(NEG(SIN(x))), 0)                                 \
    X(TANH, tanh, tanh(x), TIMES(RSUB(1.0, MUL(y, y))), 0)                     \
    /* sign(x), taken as 0 at x = 0 */                                         \
    X(ABS, abs, fabs(x), TIMES(MASK), x > 0.0 ? 1.0 : x < 0.0 ? -1.0 : 0.0)    \
    X(SIGN, sign, sign_value(x), ZERO, 0)                                      \
    /* 1 / (2 y), from the saved output (inf at 0) */                          \
    X(SQRT, sqrt, sqrt(x), VJP(MULS(DIV(g, y), 0.5)), 0)                       \
    X(RSQRT, rsqrt, 1.0 / sqrt(x), TIMES(MULS(MUL(y, SQUARE(y)), -0.5)), 0)    \
    X(SQUARE, square, x *x, TIMES(MULS(x, 2.0)), 0)                            \
    X(RECIPROCAL, reciprocal, 1.0 / x, TIMES(NEG(SQUARE(y))), 0)               \
    X(EXPM1, expm1, expm1(x), TIMES(ADDS(y, 1.0)), 0)                          \
    X(LOG1P, log1p, log1p(x), VJP(DIV(g, ADDS(x, 1.0))), 0)                    \
    X(TAN, tan, tan(x), TIMES(ADDS(SQUARE(y), 1.0)), 0)                        \
    /* 1 / sqrt(1 - x^2), with 1 - x^2 formed as (1 - x)(1 + x), which keeps   \
     * its precision near the ends of [-1, 1] */                               \
    X(ASIN, asin, asin(x), TIMES(RSQRT(MUL(RSUB(1.0, x), ADDS(x, 1.0)))), 0)   \
    X(ACOS, acos, acos(x), TIMES(NEG(RSQRT(MUL(RSUB(1.0, x), ADDS(x, 1.0))))), \
      0)                                                                       \
    X(ATAN, atan, atan(x), VJP(DIV(g, ADDS(SQUARE(x), 1.0))), 0)               \
    X(SINH, sinh, sinh(x), TIMES(COSH(x)), 0)                                  \
    X(COSH, cosh, cosh(x), TIMES(SINH(x)), 0)                                  \
    X(ASINH, asinh, asinh(x), TIMES(RSQRT(ADDS(SQUARE(x), 1.0))), 0)           \
    /* y (1 - y), with 1 - y computed as sigmoid(-x): the plain difference     \
     * loses every digit once y rounds to 1 (x > 37) */                        \
    X(SIGMOID, sigmoid, sigmoid_value(x), TIMES(MUL(y, SIGMOID(NEG(x)))), 0)   \
    /* NaN propagates, as in PyTorch; the derivative is 0 at the kink */       \
    X(RELU, relu, x > 0.0 || isnan(x) ? x : 0.0, TIMES(MASK),                  \
      x > 0.0 ? 1.0 : 0.0)                                                     \
    /* sigmoid(x), smooth to any order */                                      \
    X(SOFTPLUS, softplus, softplus_value(x), TIMES(SIGMOID(x)), 0)             \
    X(ERF, erf, erf(x), TIMES(MULS(EXP(NEG(SQUARE(x))), TWO_OVER_SQRT_PI)), 0) \
    /* written with comparisons, not fmin/fmax, so that NaN propagates; the    \
     * derivative is 1 for lo <= x <= hi, bounds included (PyTorch's           \
     * convention), and 0 outside or at NaN */                                 \
    X(CLAMP, clamp, x<lo ? lo : x> hi ? hi : x, TIMES(MASK),                   \
      x >= lo && x <= hi ? 1.0 : 0.0)

/* The parameters of a function, as the forward call gives them and as its
 * node keeps them (two numbers and a flag). */
typedef struct params {
    double c0, c1;
    bool divide;
} params;

static params params_of(const jac__node *n)
{
    params q = {n->p.affine.alpha, n->p.affine.beta, n->p.affine.divide};
    return q;
}

/* Names the parameters for a row's expressions. */
#define PARAMETERS(q)                                                          \
    double p = (q).c0, alpha = (q).c0, beta = (q).c1, lo = (q).c0,             \
           hi = (q).c1;                                                        \
    bool divide = (q).divide;                                                  \
    (void)p;                                                                   \
    (void)alpha;                                                               \
    (void)beta;                                                                \
    (void)lo;                                                                  \
    (void)hi;                                                                  \
    (void)divide

/* The mask column at one element. */
static JAC__FOLD double mask_value(int op, double x, params q)
{
    PARAMETERS(q);
    switch (op) {
#define MASK_CASE(e, rule, value, derivative, mask)                            \
    case JAC__OP_##e:                                                          \
        return (mask);
        /* Most rows' mask is 0. NOLINTNEXTLINE(bugprone-branch-clone) */
        FUNCTIONS(MASK_CASE)
#undef MASK_CASE
    default:
        return 0.0;
    }
}

/* ------------------------------------------------------------------------ */
/* The rows on doubles: forward values, partials, the raw kernel            */
/* ------------------------------------------------------------------------ */

#define MUL(a, b) ((a) * (b))
#define DIV(a, b) ((a) / (b))
#define NEG(a) (-(a))
#define SQUARE(a) ((a) * (a))
#define MULS(a, c) ((c) * (a))
#define ADDS(a, c) ((a) + (c))
#define RSUB(c, a) ((c) - (a))
#define POWS(a, c) pow_value((a), (c))
#define COS(a) cos(a)
#define SIN(a) sin(a)
#define COSH(a) cosh(a)
#define SINH(a) sinh(a)
#define EXP(a) exp(a)
#define RSQRT(a) (1.0 / sqrt(a))
#define SIGMOID(a) sigmoid_value(a)
#define MASK mask_value(op, x, q)

/* The one-element partial d y / d x where the derivative is g times it:
 * has is false where it is not (or where it is exactly zero). */
#define TIMES(d)                                                               \
    {                                                                          \
        *has = true;                                                           \
        *partial = (d);                                                        \
    }
#define SCALE(c) TIMES(c)
#define VJP(e)                                                                 \
    {                                                                          \
        *has = false;                                                          \
    }
#define ZERO VJP(0)
#define IF(c, f, h)                                                            \
    if (c)                                                                     \
    f else h

/* y at one element and, in the same place (so that sin and cos of one x
 * become a single sincos), its partial. */
static JAC__FOLD double value_and_partial(int op, double x, params q, bool *has,
                                          double *partial)
{
    PARAMETERS(q);
    double y = 0.0;
    *has = false;
    switch (op) {
#define ONE_CASE(e, rule, value, derivative, mask)                             \
    case JAC__OP_##e:                                                          \
        y = (value);                                                           \
        derivative break;
        /* ZERO and VJP(e) both leave no partial: two arms of pow_scalar's
         * IF alike. NOLINTNEXTLINE(bugprone-branch-clone) */
        FUNCTIONS(ONE_CASE)
#undef ONE_CASE
    default:
        break;
    }
    return y;
}

#undef TIMES
#undef SCALE
#undef VJP
#undef ZERO
#undef IF

/* The input cotangent at one element, for the raw kernel. */
#define TIMES(d) ((g) * (d))
#define SCALE(c) ((g) * (c))
#define VJP(e) (e)
#define ZERO 0.0
#define IF(c, f, h) ((c) ? (f) : (h))

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
    int op = n->op;
    params q = params_of(n);
    PARAMETERS(q);
    for (int64_t b = 0; b < batch; b++, gv += m, o += m) {
        switch (op) {
#define RAW_CASE(e, rule, value, derivative, mask)                             \
    case JAC__OP_##e:                                                          \
        for (int64_t i = 0; i < m; i++) {                                      \
            double x = xv[i], y = yv[i], g = gv[i];                            \
            (void)x;                                                           \
            (void)y;                                                           \
            (void)g;                                                           \
            o[i] = (derivative);                                               \
        }                                                                      \
        break;
            FUNCTIONS(RAW_CASE)
#undef RAW_CASE
        default:
            return false;
        }
    }
    return true;
}

#undef TIMES
#undef SCALE
#undef VJP
#undef ZERO
#undef IF
#undef MUL
#undef DIV
#undef NEG
#undef SQUARE
#undef MULS
#undef ADDS
#undef RSUB
#undef POWS
#undef COS
#undef SIN
#undef COSH
#undef SINH
#undef EXP
#undef RSQRT
#undef SIGMOID
#undef MASK

/* ------------------------------------------------------------------------ */
/* The forward op                                                           */
/* ------------------------------------------------------------------------ */

static JAC__FOLD jac_tensor *function(jac_ctx *ctx, jac__op op,
                                      const char *name, jac_tensor *a, params q)
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
        o[0] = value_and_partial((int)op, xv[0], q, &has_partial, &partial);
    } else {
        PARAMETERS(q);
        switch (op) {
#define FORWARD_CASE(e, rule, value, derivative, mask)                         \
    case JAC__OP_##e:                                                          \
        for (int64_t i = 0; i < n; i++) {                                      \
            double x = xv[i];                                                  \
            o[i] = (value);                                                    \
        }                                                                      \
        break;
            FUNCTIONS(FORWARD_CASE)
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
    params q = {0.0, 0.0, false};
    return function(ctx, op, jac__ops[op].name, a, q);
}

static JAC__FOLD jac_tensor *affine(jac_ctx *ctx, const char *name,
                                    jac_tensor *a, double alpha, double beta,
                                    bool divide)
{
    params q = {alpha, beta, divide};
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
    params q = {p, 0.0, false};
    return function(ctx, JAC__OP_POW_SCALAR, "pow_scalar", a, q);
}

jac_tensor *jac_clamp(jac_ctx *ctx, jac_tensor *a, double lo, double hi)
{
    params q = {lo, hi, false};
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

/* The mask of node's function at its saved input: a constant tensor. */
static jac_tensor *mask_tensor(jac_ctx *ctx, const jac__node *node)
{
    const jac_tensor *x = node->in[0];
    jac_tensor *m = jac__tensor_like(ctx, jac__ops[node->op].name, x);
    if (m == NULL)
        return NULL;
    params q = params_of(node);
    for (int64_t i = 0; i < x->numel; i++)
        m->data[i] = mask_value(node->op, x->data[i], q);
    return m;
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
#define MASK mask_tensor(ctx, node)
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
        params q = params_of(node);                                            \
        PARAMETERS(q);                                                         \
        gin[0] = (derivative);                                                 \
        return gin[0] ? JAC_OK : ctx->status;                                  \
    }
FUNCTIONS(RULE)
#undef RULE

/* ------------------------------------------------------------------------ */
/* Applying a node anew: the public call with the node's parameters         */
/*                                                                          */
/* Written with public calls and the node's fields only, not with this      */
/* file's rows and helpers. pow_scalar's exponent and clamp's bounds are    */
/* kept where the affine map keeps alpha and beta.                          */
/* ------------------------------------------------------------------------ */

#define APPLY_PLAIN(fn)                                                        \
    jac_tensor *jac__apply_##fn(jac_ctx *ctx, const jac__node *n,              \
                                jac_tensor *const *ins)                        \
    {                                                                          \
        (void)n;                                                               \
        return jac_##fn(ctx, ins[0]);                                          \
    }
APPLY_PLAIN(exp)
APPLY_PLAIN(log)
APPLY_PLAIN(sin)
APPLY_PLAIN(cos)
APPLY_PLAIN(tanh)
APPLY_PLAIN(abs)
APPLY_PLAIN(sign)
APPLY_PLAIN(sqrt)
APPLY_PLAIN(rsqrt)
APPLY_PLAIN(square)
APPLY_PLAIN(reciprocal)
APPLY_PLAIN(expm1)
APPLY_PLAIN(log1p)
APPLY_PLAIN(tan)
APPLY_PLAIN(asin)
APPLY_PLAIN(acos)
APPLY_PLAIN(atan)
APPLY_PLAIN(sinh)
APPLY_PLAIN(cosh)
APPLY_PLAIN(asinh)
APPLY_PLAIN(sigmoid)
APPLY_PLAIN(relu)
APPLY_PLAIN(softplus)
APPLY_PLAIN(erf)
#undef APPLY_PLAIN

jac_tensor *jac__apply_pow_scalar(jac_ctx *ctx, const jac__node *n,
                                  jac_tensor *const *ins)
{
    return jac_pow_scalar(ctx, ins[0], n->p.affine.alpha);
}

jac_tensor *jac__apply_clamp(jac_ctx *ctx, const jac__node *n,
                             jac_tensor *const *ins)
{
    return jac_clamp(ctx, ins[0], n->p.affine.alpha, n->p.affine.beta);
}

/* The public call that stores the node's alpha, beta and divide flag (sub
 * stores add's, neg mul's; a zero beta's sign does not change a value). */
jac_tensor *jac__apply_affine(jac_ctx *ctx, const jac__node *n,
                              jac_tensor *const *ins)
{
    double alpha = n->p.affine.alpha, beta = n->p.affine.beta;
    if (n->p.affine.divide)
        return jac_div_scalar(ctx, ins[0], beta);
    if (alpha == 1.0)
        return jac_add_scalar(ctx, ins[0], beta);
    if (beta == 0.0)
        return jac_mul_scalar(ctx, ins[0], alpha);
    if (alpha == -1.0)
        return jac_rsub_scalar(ctx, beta, ins[0]);
    if (ctx != NULL)
        jac__error(ctx, JAC_ERR_STATE,
                   "affine: no call makes alpha = %g with beta = %g", alpha,
                   beta);
    return NULL;
}
