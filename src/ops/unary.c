/*
 * More elementwise ops: unary functions (abs, sqrt, the trigonometric and
 * hyperbolic family, sigmoid, relu, softplus, erf, clamp) and the
 * broadcasting binary ops pow, maximum, minimum and atan2. Each op's forward
 * kernel sits beside its backward rule.
 *
 * Kinks (abs, relu, clamp, maximum, minimum) are differentiated by
 * multiplying the cotangent with a mask: a constant tensor computed from the
 * saved inputs. The mask is piecewise constant, so its own derivative is
 * zero, which is right everywhere but on the kink itself; the value chosen
 * on the kink is documented beside each op.
 *
 * SPDX-License-Identifier: MIT
 */
#include "ops/ops.h"

#include <math.h>

/* 2 / sqrt(pi), the scale of erf's derivative (M_2_SQRTPI is not C11). */
#define TWO_OVER_SQRT_PI 1.1283791670955126

/* A new tensor of x's shape with uninitialised values (no history). */
static jac_tensor *new_like(jac_ctx *ctx, const char *name, const jac_tensor *x)
{
    return jac__tensor_alloc(ctx, name, x->ndim, x->shape);
}

/* Turns the result of a single-input rule into its gin entry. */
static jac_status rule_result(jac_ctx *ctx, jac_tensor *r, jac_tensor **gin)
{
    gin[0] = r;
    return r ? JAC_OK : ctx->status;
}

/* ------------------------------------------------------------------------ */
/* Unary functions                                                          */
/* ------------------------------------------------------------------------ */

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

#define UNARY_LOOP(expr)                                                       \
    for (int64_t i = 0; i < n; i++) {                                          \
        double v = x[i];                                                       \
        o[i] = (expr);                                                         \
    }

/* y = f(x) elementwise; lo and hi are clamp's bounds (unused otherwise). */
static jac_tensor *unary(jac_ctx *ctx, jac__op op, jac_tensor *a, double lo,
                         double hi)
{
    const char *name = jac__ops[op].name;
    if (ctx == NULL || !jac__check_arg(ctx, name, a))
        return NULL;
    if (op == JAC__OP_CLAMP && (isnan(lo) || isnan(hi) || lo > hi)) {
        char s[JAC__SHAPE_STR_MAX];
        jac__error(ctx, JAC_ERR_VALUE,
                   "clamp: bounds [%g, %g] for shape %s: lo must not exceed "
                   "hi and neither may be NaN",
                   lo, hi, jac__shape_str(s, sizeof s, a->ndim, a->shape));
        return NULL;
    }
    jac_tensor *y = new_like(ctx, name, a);
    if (y == NULL)
        return NULL;
    const double *x = a->data;
    double *o = y->data;
    int64_t n = a->numel;
    switch (op) {
    case JAC__OP_ABS:
        UNARY_LOOP(fabs(v));
        break;
    case JAC__OP_SIGN:
        UNARY_LOOP(sign_value(v));
        break;
    case JAC__OP_SQRT:
        UNARY_LOOP(sqrt(v));
        break;
    case JAC__OP_RSQRT:
        UNARY_LOOP(1.0 / sqrt(v));
        break;
    case JAC__OP_SQUARE:
        UNARY_LOOP(v * v);
        break;
    case JAC__OP_RECIPROCAL:
        UNARY_LOOP(1.0 / v);
        break;
    case JAC__OP_EXPM1:
        UNARY_LOOP(expm1(v));
        break;
    case JAC__OP_LOG1P:
        UNARY_LOOP(log1p(v));
        break;
    case JAC__OP_TAN:
        UNARY_LOOP(tan(v));
        break;
    case JAC__OP_ASIN:
        UNARY_LOOP(asin(v));
        break;
    case JAC__OP_ACOS:
        UNARY_LOOP(acos(v));
        break;
    case JAC__OP_ATAN:
        UNARY_LOOP(atan(v));
        break;
    case JAC__OP_SINH:
        UNARY_LOOP(sinh(v));
        break;
    case JAC__OP_COSH:
        UNARY_LOOP(cosh(v));
        break;
    case JAC__OP_ASINH:
        UNARY_LOOP(asinh(v));
        break;
    case JAC__OP_SIGMOID:
        UNARY_LOOP(sigmoid_value(v));
        break;
    case JAC__OP_RELU:
        /* NaN propagates, as in PyTorch. */
        UNARY_LOOP(v > 0.0 || isnan(v) ? v : 0.0);
        break;
    case JAC__OP_SOFTPLUS:
        UNARY_LOOP(softplus_value(v));
        break;
    case JAC__OP_ERF:
        UNARY_LOOP(erf(v));
        break;
    case JAC__OP_CLAMP:
        /* Written with comparisons, not fmin/fmax, so that NaN propagates. */
        UNARY_LOOP(v < lo ? lo : v > hi ? hi : v);
        break;
    default:
        break;
    }
    bool failed;
    jac__node *node = jac__record(ctx, op, y, 1, &a, &failed);
    if (failed)
        return NULL;
    if (node && op == JAC__OP_CLAMP) {
        node->p.clamp.lo = lo;
        node->p.clamp.hi = hi;
    }
    return y;
}

#undef UNARY_LOOP

jac_tensor *jac_abs(jac_ctx *ctx, jac_tensor *a)
{
    return unary(ctx, JAC__OP_ABS, a, 0.0, 0.0);
}

jac_tensor *jac_sign(jac_ctx *ctx, jac_tensor *a)
{
    return unary(ctx, JAC__OP_SIGN, a, 0.0, 0.0);
}

jac_tensor *jac_sqrt(jac_ctx *ctx, jac_tensor *a)
{
    return unary(ctx, JAC__OP_SQRT, a, 0.0, 0.0);
}

jac_tensor *jac_rsqrt(jac_ctx *ctx, jac_tensor *a)
{
    return unary(ctx, JAC__OP_RSQRT, a, 0.0, 0.0);
}

jac_tensor *jac_square(jac_ctx *ctx, jac_tensor *a)
{
    return unary(ctx, JAC__OP_SQUARE, a, 0.0, 0.0);
}

jac_tensor *jac_reciprocal(jac_ctx *ctx, jac_tensor *a)
{
    return unary(ctx, JAC__OP_RECIPROCAL, a, 0.0, 0.0);
}

jac_tensor *jac_expm1(jac_ctx *ctx, jac_tensor *a)
{
    return unary(ctx, JAC__OP_EXPM1, a, 0.0, 0.0);
}

jac_tensor *jac_log1p(jac_ctx *ctx, jac_tensor *a)
{
    return unary(ctx, JAC__OP_LOG1P, a, 0.0, 0.0);
}

jac_tensor *jac_tan(jac_ctx *ctx, jac_tensor *a)
{
    return unary(ctx, JAC__OP_TAN, a, 0.0, 0.0);
}

jac_tensor *jac_asin(jac_ctx *ctx, jac_tensor *a)
{
    return unary(ctx, JAC__OP_ASIN, a, 0.0, 0.0);
}

jac_tensor *jac_acos(jac_ctx *ctx, jac_tensor *a)
{
    return unary(ctx, JAC__OP_ACOS, a, 0.0, 0.0);
}

jac_tensor *jac_atan(jac_ctx *ctx, jac_tensor *a)
{
    return unary(ctx, JAC__OP_ATAN, a, 0.0, 0.0);
}

jac_tensor *jac_sinh(jac_ctx *ctx, jac_tensor *a)
{
    return unary(ctx, JAC__OP_SINH, a, 0.0, 0.0);
}

jac_tensor *jac_cosh(jac_ctx *ctx, jac_tensor *a)
{
    return unary(ctx, JAC__OP_COSH, a, 0.0, 0.0);
}

jac_tensor *jac_asinh(jac_ctx *ctx, jac_tensor *a)
{
    return unary(ctx, JAC__OP_ASINH, a, 0.0, 0.0);
}

jac_tensor *jac_sigmoid(jac_ctx *ctx, jac_tensor *a)
{
    return unary(ctx, JAC__OP_SIGMOID, a, 0.0, 0.0);
}

jac_tensor *jac_relu(jac_ctx *ctx, jac_tensor *a)
{
    return unary(ctx, JAC__OP_RELU, a, 0.0, 0.0);
}

jac_tensor *jac_softplus(jac_ctx *ctx, jac_tensor *a)
{
    return unary(ctx, JAC__OP_SOFTPLUS, a, 0.0, 0.0);
}

jac_tensor *jac_erf(jac_ctx *ctx, jac_tensor *a)
{
    return unary(ctx, JAC__OP_ERF, a, 0.0, 0.0);
}

jac_tensor *jac_clamp(jac_ctx *ctx, jac_tensor *a, double lo, double hi)
{
    return unary(ctx, JAC__OP_CLAMP, a, lo, hi);
}

/* ------------------------------------------------------------------------ */
/* Unary backward rules                                                     */
/* ------------------------------------------------------------------------ */

/* The derivative of abs is sign(x), taken as 0 at x = 0 (as PyTorch). */
jac_status jac__vjp_abs(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                        const bool *need, jac_tensor **gin)
{
    (void)need;
    const jac_tensor *x = node->in[0];
    jac_tensor *m = new_like(ctx, "abs", x);
    if (m == NULL)
        return ctx->status;
    for (int64_t i = 0; i < x->numel; i++)
        m->data[i] = x->data[i] > 0.0 ? 1.0 : x->data[i] < 0.0 ? -1.0 : 0.0;
    return rule_result(ctx, jac_mul(ctx, g, m), gin);
}

/* sign is piecewise constant: zeros of shape batch ++ x.shape. */
jac_status jac__vjp_sign(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                         const bool *need, jac_tensor **gin)
{
    (void)need;
    const jac_tensor *x = node->in[0];
    int64_t shape[JAC_MAX_DIMS];
    int n = jac__batched_shape(g, jac__batch_ndim(g, node->out), x->ndim,
                               x->shape, shape);
    if (n < 0)
        return jac__error(ctx, JAC_ERR_RANK,
                          "sign: batched gradient exceeds rank %d",
                          JAC_MAX_DIMS);
    return rule_result(ctx, jac_zeros(ctx, n, shape), gin);
}

/* sqrt' = 1 / (2 y), from the saved output (inf at 0). */
jac_status jac__vjp_sqrt(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                         const bool *need, jac_tensor **gin)
{
    (void)need;
    return rule_result(
        ctx, jac_mul_scalar(ctx, jac_div(ctx, g, node->out), 0.5), gin);
}

/* (x^-1/2)' = -y^3 / 2. */
jac_status jac__vjp_rsqrt(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                          const bool *need, jac_tensor **gin)
{
    (void)need;
    jac_tensor *y = node->out;
    jac_tensor *d =
        jac_mul_scalar(ctx, jac_mul(ctx, y, jac_square(ctx, y)), -0.5);
    return rule_result(ctx, jac_mul(ctx, g, d), gin);
}

jac_status jac__vjp_square(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                           const bool *need, jac_tensor **gin)
{
    (void)need;
    jac_tensor *d = jac_mul_scalar(ctx, node->in[0], 2.0);
    return rule_result(ctx, jac_mul(ctx, g, d), gin);
}

/* (1/x)' = -y^2. */
jac_status jac__vjp_reciprocal(jac_ctx *ctx, const jac__node *node,
                               jac_tensor *g, const bool *need,
                               jac_tensor **gin)
{
    (void)need;
    jac_tensor *d = jac_neg(ctx, jac_square(ctx, node->out));
    return rule_result(ctx, jac_mul(ctx, g, d), gin);
}

/* expm1' = e^x = y + 1. */
jac_status jac__vjp_expm1(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                          const bool *need, jac_tensor **gin)
{
    (void)need;
    jac_tensor *d = jac_add_scalar(ctx, node->out, 1.0);
    return rule_result(ctx, jac_mul(ctx, g, d), gin);
}

jac_status jac__vjp_log1p(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                          const bool *need, jac_tensor **gin)
{
    (void)need;
    jac_tensor *d = jac_add_scalar(ctx, node->in[0], 1.0);
    return rule_result(ctx, jac_div(ctx, g, d), gin);
}

/* tan' = 1 + y^2. */
jac_status jac__vjp_tan(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                        const bool *need, jac_tensor **gin)
{
    (void)need;
    jac_tensor *d = jac_add_scalar(ctx, jac_square(ctx, node->out), 1.0);
    return rule_result(ctx, jac_mul(ctx, g, d), gin);
}

/* 1 / sqrt(1 - x^2), with 1 - x^2 formed as (1 - x)(1 + x), which keeps its
 * precision near the ends of [-1, 1]. */
static jac_tensor *asin_derivative(jac_ctx *ctx, jac_tensor *x)
{
    jac_tensor *q =
        jac_mul(ctx, jac_rsub_scalar(ctx, 1.0, x), jac_add_scalar(ctx, x, 1.0));
    return jac_rsqrt(ctx, q);
}

jac_status jac__vjp_asin(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                         const bool *need, jac_tensor **gin)
{
    (void)need;
    return rule_result(ctx, jac_mul(ctx, g, asin_derivative(ctx, node->in[0])),
                       gin);
}

jac_status jac__vjp_acos(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                         const bool *need, jac_tensor **gin)
{
    (void)need;
    return rule_result(
        ctx, jac_neg(ctx, jac_mul(ctx, g, asin_derivative(ctx, node->in[0]))),
        gin);
}

/* atan' = 1 / (1 + x^2). */
jac_status jac__vjp_atan(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                         const bool *need, jac_tensor **gin)
{
    (void)need;
    jac_tensor *d = jac_add_scalar(ctx, jac_square(ctx, node->in[0]), 1.0);
    return rule_result(ctx, jac_div(ctx, g, d), gin);
}

jac_status jac__vjp_sinh(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                         const bool *need, jac_tensor **gin)
{
    (void)need;
    return rule_result(ctx, jac_mul(ctx, g, jac_cosh(ctx, node->in[0])), gin);
}

jac_status jac__vjp_cosh(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                         const bool *need, jac_tensor **gin)
{
    (void)need;
    return rule_result(ctx, jac_mul(ctx, g, jac_sinh(ctx, node->in[0])), gin);
}

/* asinh' = 1 / sqrt(1 + x^2). */
jac_status jac__vjp_asinh(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                          const bool *need, jac_tensor **gin)
{
    (void)need;
    jac_tensor *q = jac_add_scalar(ctx, jac_square(ctx, node->in[0]), 1.0);
    return rule_result(ctx, jac_mul(ctx, g, jac_rsqrt(ctx, q)), gin);
}

/* sigmoid' = y (1 - y), with 1 - y computed as sigmoid(-x): the plain
 * difference loses every digit once y rounds to 1 (x > 37). */
jac_status jac__vjp_sigmoid(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                            const bool *need, jac_tensor **gin)
{
    (void)need;
    jac_tensor *d =
        jac_mul(ctx, node->out, jac_sigmoid(ctx, jac_neg(ctx, node->in[0])));
    return rule_result(ctx, jac_mul(ctx, g, d), gin);
}

/* relu' = 1 where x > 0, else 0 (0 at the kink, as PyTorch). */
jac_status jac__vjp_relu(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                         const bool *need, jac_tensor **gin)
{
    (void)need;
    const jac_tensor *x = node->in[0];
    jac_tensor *m = new_like(ctx, "relu", x);
    if (m == NULL)
        return ctx->status;
    for (int64_t i = 0; i < x->numel; i++)
        m->data[i] = x->data[i] > 0.0 ? 1.0 : 0.0;
    return rule_result(ctx, jac_mul(ctx, g, m), gin);
}

/* softplus' = sigmoid(x), smooth to any order. */
jac_status jac__vjp_softplus(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                             const bool *need, jac_tensor **gin)
{
    (void)need;
    return rule_result(ctx, jac_mul(ctx, g, jac_sigmoid(ctx, node->in[0])),
                       gin);
}

/* erf' = 2 / sqrt(pi) e^(-x^2). */
jac_status jac__vjp_erf(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                        const bool *need, jac_tensor **gin)
{
    (void)need;
    jac_tensor *e = jac_exp(ctx, jac_neg(ctx, jac_square(ctx, node->in[0])));
    jac_tensor *d = jac_mul_scalar(ctx, e, TWO_OVER_SQRT_PI);
    return rule_result(ctx, jac_mul(ctx, g, d), gin);
}

/* clamp' = 1 for lo <= x <= hi, bounds included (PyTorch's convention:
 * torch.clamp passes the gradient at a bound), and 0 outside or at NaN. */
jac_status jac__vjp_clamp(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                          const bool *need, jac_tensor **gin)
{
    (void)need;
    const jac_tensor *x = node->in[0];
    double lo = node->p.clamp.lo, hi = node->p.clamp.hi;
    jac_tensor *m = new_like(ctx, "clamp", x);
    if (m == NULL)
        return ctx->status;
    for (int64_t i = 0; i < x->numel; i++)
        m->data[i] = x->data[i] >= lo && x->data[i] <= hi ? 1.0 : 0.0;
    return rule_result(ctx, jac_mul(ctx, g, m), gin);
}

/* ------------------------------------------------------------------------ */
/* Binary ops with broadcasting                                             */
/*                                                                          */
/* Inputs of different shapes are first broadcast with jac_expand, so the   */
/* kernels and rules below only see operands of the result's shape; expand  */
/* records itself, and its rule sums the cotangent back.                    */
/* ------------------------------------------------------------------------ */

static bool has_shape(const jac_tensor *t, int ndim, const int64_t *shape)
{
    return t->ndim == ndim &&
           memcmp(t->shape, shape, (size_t)ndim * sizeof(int64_t)) == 0;
}

/* The larger of u and v, NaN when either is (as PyTorch). */
static double maximum_value(double u, double v)
{
    if (isnan(u) || isnan(v))
        return u + v;
    return u > v ? u : v;
}

static double minimum_value(double u, double v)
{
    if (isnan(u) || isnan(v))
        return u + v;
    return u < v ? u : v;
}

static jac_tensor *binary(jac_ctx *ctx, jac__op op, jac_tensor *a,
                          jac_tensor *b)
{
    const char *name = jac__ops[op].name;
    if (ctx == NULL || !jac__check_arg(ctx, name, a) ||
        !jac__check_arg(ctx, name, b))
        return NULL;
    int64_t shape[JAC_MAX_DIMS];
    int nd = jac__broadcast_shape(a->ndim, a->shape, b->ndim, b->shape, shape);
    if (nd < 0) {
        char s1[JAC__SHAPE_STR_MAX], s2[JAC__SHAPE_STR_MAX];
        jac__error(ctx, JAC_ERR_SHAPE,
                   "%s: shapes %s and %s cannot be broadcast together", name,
                   jac__shape_str(s1, sizeof s1, a->ndim, a->shape),
                   jac__shape_str(s2, sizeof s2, b->ndim, b->shape));
        return NULL;
    }
    if (!has_shape(a, nd, shape) && (a = jac_expand(ctx, a, nd, shape)) == NULL)
        return NULL;
    if (!has_shape(b, nd, shape) && (b = jac_expand(ctx, b, nd, shape)) == NULL)
        return NULL;
    jac_tensor *y = jac__tensor_alloc(ctx, name, nd, shape);
    if (y == NULL)
        return NULL;
    const double *u = a->data, *v = b->data;
    double *o = y->data;
    int64_t n = y->numel;
    switch (op) {
    case JAC__OP_POW:
        for (int64_t i = 0; i < n; i++)
            o[i] = pow(u[i], v[i]);
        break;
    case JAC__OP_MAXIMUM:
        for (int64_t i = 0; i < n; i++)
            o[i] = maximum_value(u[i], v[i]);
        break;
    case JAC__OP_MINIMUM:
        for (int64_t i = 0; i < n; i++)
            o[i] = minimum_value(u[i], v[i]);
        break;
    case JAC__OP_ATAN2:
        for (int64_t i = 0; i < n; i++)
            o[i] = atan2(u[i], v[i]);
        break;
    default:
        break;
    }
    jac_tensor *ins[2] = {a, b};
    bool failed;
    jac__record(ctx, op, y, 2, ins, &failed);
    return failed ? NULL : y;
}

jac_tensor *jac_pow(jac_ctx *ctx, jac_tensor *a, jac_tensor *b)
{
    return binary(ctx, JAC__OP_POW, a, b);
}

jac_tensor *jac_maximum(jac_ctx *ctx, jac_tensor *a, jac_tensor *b)
{
    return binary(ctx, JAC__OP_MAXIMUM, a, b);
}

jac_tensor *jac_minimum(jac_ctx *ctx, jac_tensor *a, jac_tensor *b)
{
    return binary(ctx, JAC__OP_MINIMUM, a, b);
}

jac_tensor *jac_atan2(jac_ctx *ctx, jac_tensor *a, jac_tensor *b)
{
    return binary(ctx, JAC__OP_ATAN2, a, b);
}

/* ------------------------------------------------------------------------ */
/* Binary backward rules (inputs and output share one shape)                */
/* ------------------------------------------------------------------------ */

/* A constant of the node's shape: 1 where both pow inputs satisfy the
 * condition, 0 elsewhere; NULL with *none set when no element does (the
 * caller then skips the correction). */
typedef enum { ZERO_BASE_ZERO_EXP, ZERO_BASE_NONNEG_EXP } pow_mask_kind;

static jac_tensor *pow_mask(jac_ctx *ctx, const jac__node *node,
                            pow_mask_kind kind, bool *none)
{
    const jac_tensor *a = node->in[0], *b = node->in[1];
    *none = true;
    for (int64_t i = 0; i < a->numel && *none; i++)
        if (a->data[i] == 0.0 &&
            (kind == ZERO_BASE_ZERO_EXP ? b->data[i] == 0.0
                                        : b->data[i] >= 0.0))
            *none = false;
    if (*none)
        return NULL;
    jac_tensor *m = new_like(ctx, "pow", a);
    if (m == NULL)
        return NULL;
    for (int64_t i = 0; i < a->numel; i++) {
        bool hit = a->data[i] == 0.0 &&
                   (kind == ZERO_BASE_ZERO_EXP ? b->data[i] == 0.0
                                               : b->data[i] >= 0.0);
        m->data[i] = hit ? 1.0 : 0.0;
    }
    return m;
}

/*
 * d(a^b)/da = b a^(b-1) and d(a^b)/db = a^b log(a), both written with pow
 * itself so that every order is available. Two points need care, as the
 * header promises:
 *  - b == 0 with a == 0: b a^(b-1) is 0 * inf. The exponent b - 1 is moved
 *    to 0 there (by adding a constant mask), so the product is exactly 0.
 *    Only a == b == 0 is moved, so the cross derivative d/db (b a^(b-1)) =
 *    a^(b-1) (1 + b log a) stays right at every b == 0 with a != 0.
 *  - a == 0 with b >= 0: a^b log(a) is 0 * -inf (or 1 * -inf at b == 0).
 *    The logarithm is taken of a + 1 there (log 1 = 0), so the derivative
 *    is exactly 0, as PyTorch takes it.
 */
jac_status jac__vjp_pow(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                        const bool *need, jac_tensor **gin)
{
    jac_tensor *a = node->in[0], *b = node->in[1];
    bool none;
    if (need[0]) {
        jac_tensor *e = jac_sub_scalar(ctx, b, 1.0);
        jac_tensor *m = pow_mask(ctx, node, ZERO_BASE_ZERO_EXP, &none);
        if (!none)
            e = jac_add(ctx, e, m);
        jac_tensor *d = jac_mul(ctx, b, jac_pow(ctx, a, e));
        gin[0] = jac_mul(ctx, g, d);
        if (gin[0] == NULL)
            return ctx->status;
    }
    if (need[1]) {
        jac_tensor *base = a;
        jac_tensor *m = pow_mask(ctx, node, ZERO_BASE_NONNEG_EXP, &none);
        if (!none)
            base = jac_add(ctx, a, m);
        jac_tensor *d = jac_mul(ctx, node->out, jac_log(ctx, base));
        gin[1] = jac_mul(ctx, g, d);
        if (gin[1] == NULL)
            return ctx->status;
    }
    return JAC_OK;
}

/* The share of the gradient that goes to u against v: 1 where u wins, 0.5
 * at a tie, 0 where it loses or either is NaN. larger picks the winner's
 * side (maximum or minimum). */
static jac_tensor *winner_mask(jac_ctx *ctx, const char *name,
                               const jac_tensor *u, const jac_tensor *v,
                               bool larger)
{
    jac_tensor *m = new_like(ctx, name, u);
    if (m == NULL)
        return NULL;
    for (int64_t i = 0; i < u->numel; i++) {
        double p = u->data[i], q = v->data[i];
        bool wins = larger ? p > q : p < q;
        m->data[i] = wins ? 1.0 : p == q ? 0.5 : 0.0;
    }
    return m;
}

static jac_status extremum_rule(jac_ctx *ctx, const jac__node *node,
                                jac_tensor *g, const bool *need,
                                jac_tensor **gin, bool larger)
{
    const char *name = jac__ops[node->op].name;
    for (int i = 0; i < 2; i++) {
        if (!need[i])
            continue;
        jac_tensor *m =
            winner_mask(ctx, name, node->in[i], node->in[1 - i], larger);
        if (m == NULL || (gin[i] = jac_mul(ctx, g, m)) == NULL)
            return ctx->status;
    }
    return JAC_OK;
}

jac_status jac__vjp_maximum(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                            const bool *need, jac_tensor **gin)
{
    return extremum_rule(ctx, node, g, need, gin, true);
}

jac_status jac__vjp_minimum(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                            const bool *need, jac_tensor **gin)
{
    return extremum_rule(ctx, node, g, need, gin, false);
}

/* d atan2(a, b) = (b da - a db) / (a^2 + b^2); 0/0 = NaN at the origin. */
jac_status jac__vjp_atan2(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                          const bool *need, jac_tensor **gin)
{
    jac_tensor *a = node->in[0], *b = node->in[1];
    jac_tensor *r2 = jac_add(ctx, jac_square(ctx, a), jac_square(ctx, b));
    jac_tensor *gr = jac_div(ctx, g, r2);
    if (need[0] && (gin[0] = jac_mul(ctx, gr, b)) == NULL)
        return ctx->status;
    if (need[1] && (gin[1] = jac_neg(ctx, jac_mul(ctx, gr, a))) == NULL)
        return ctx->status;
    return gr ? JAC_OK : ctx->status;
}
