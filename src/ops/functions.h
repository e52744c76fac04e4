/*
 * The elementwise functions of one tensor, each a row of JAC__FUNCTIONS: its
 * value and its derivative written once. This header expands the rows on
 * doubles (a value, an input cotangent, a value with its partial, one
 * element at a time, each inlined where the op is a constant so that its
 * switch folds to one case); functions.c expands them into the forward
 * loops, the raw kernel and the differentiable rules, and the replay of
 * recorded functions (src/program) into its scalar instructions.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JAC_OPS_FUNCTIONS_H
#define JAC_OPS_FUNCTIONS_H

#include "ops/ops.h"

#include <math.h>

/* 2 / sqrt(pi), the scale of erf's derivative (M_2_SQRTPI is not C11). */
#define TWO_OVER_SQRT_PI 1.1283791670955126

/* 1 / (1 + e^-v) without overflow: e^-|v| never exceeds 1. */
static inline double jac__sigmoid_value(double v)
{
    if (v >= 0.0)
        return 1.0 / (1.0 + exp(-v));
    double e = exp(v);
    return e / (1.0 + e);
}

/* log(1 + e^v) = max(v, 0) + log1p(e^-|v|): exact and smooth everywhere.
 * (PyTorch returns v itself above a threshold of 20; the two differ by less
 * than e^-20 there, and this form keeps every derivative continuous.) */
static inline double jac__softplus_value(double v)
{
    return (v > 0.0 ? v : 0.0) + log1p(exp(-fabs(v)));
}

/* -1, 0 or 1; zeros (of either sign) and NaN map to themselves. */
static inline double jac__sign_value(double v)
{
    return v > 0.0 ? 1.0 : v < 0.0 ? -1.0 : v;
}

/* x^p, with x^2 as one product. */
static inline double jac__pow_value(double v, double p)
{
    return p == 2.0 ? v * v : pow(v, p);
}

/* alpha x + beta, each special case rounding as the single operation a user
 * expects: x + c, c x, and x / d (stored as alpha = 1 / d, beta = d, and
 * told apart by a divisor flag in divide). */
static inline double jac__affine_value(double v, double alpha, double beta,
                                       bool divide)
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
/* - mask: the piecewise-constant factor MASK stands for, written with the  */
/*   comparisons GT, LT, GE, LE (1 where the comparison of x with a number  */
/*   holds, else 0, NaN failing every one), SUB and MUL, so that on tensors */
/*   it is made of recorded ops of zero derivative that a recorded function */
/*   computes again at its new inputs; NOMASK when unused.                  */
/* ------------------------------------------------------------------------ */

#define JAC__FUNCTIONS(X)                                                      \
    X(AFFINE, affine, jac__affine_value(x, alpha, beta, divide), SCALE(alpha), \
      0)                                                                       \
    X(POW_SCALAR, pow_scalar, jac__pow_value(x, p),                            \
      IF(p == 0.0, ZERO,                                                       \
         IF(p == 1.0, VJP(g),                                                  \
            TIMES(p == 2.0 ? MULS(x, 2.0) : MULS(POWS(x, p - 1.0), p)))),      \
      0)                                                                       \
    X(EXP, exp, exp(x), TIMES(y), NOMASK)                                      \
    X(LOG, log, log(x), VJP(DIV(g, x)), NOMASK)                                \
    X(SIN, sin, sin(x), TIMES(COS(x)), NOMASK)                                 \
    X(COS, cos, cos(x), TIMES(NEG(SIN(x))), NOMASK)                            \
    X(TANH, tanh, tanh(x), TIMES(RSUB(1.0, MUL(y, y))), NOMASK)                \
    /* sign(x), taken as 0 at x = 0 */                                         \
    X(ABS, abs, fabs(x), TIMES(MASK), SUB(GT(x, 0.0), LT(x, 0.0)))             \
    X(SIGN, sign, jac__sign_value(x), ZERO, NOMASK)                            \
    /* 1 / (2 y), from the saved output (inf at 0) */                          \
    X(SQRT, sqrt, sqrt(x), VJP(MULS(DIV(g, y), 0.5)), NOMASK)                  \
    X(RSQRT, rsqrt, 1.0 / sqrt(x), TIMES(MULS(MUL(y, SQUARE(y)), -0.5)),       \
      NOMASK)                                                                  \
    X(SQUARE, square, x *x, TIMES(MULS(x, 2.0)), NOMASK)                       \
    X(RECIPROCAL, reciprocal, 1.0 / x, TIMES(NEG(SQUARE(y))), NOMASK)          \
    X(EXPM1, expm1, expm1(x), TIMES(ADDS(y, 1.0)), NOMASK)                     \
    X(LOG1P, log1p, log1p(x), VJP(DIV(g, ADDS(x, 1.0))), NOMASK)               \
    X(TAN, tan, tan(x), TIMES(ADDS(SQUARE(y), 1.0)), NOMASK)                   \
    /* 1 / sqrt(1 - x^2), with 1 - x^2 formed as (1 - x)(1 + x), which keeps   \
     * its precision near the ends of [-1, 1] */                               \
    X(ASIN, asin, asin(x), TIMES(RSQRT(MUL(RSUB(1.0, x), ADDS(x, 1.0)))),      \
      NOMASK)                                                                  \
    X(ACOS, acos, acos(x), TIMES(NEG(RSQRT(MUL(RSUB(1.0, x), ADDS(x, 1.0))))), \
      0)                                                                       \
    X(ATAN, atan, atan(x), VJP(DIV(g, ADDS(SQUARE(x), 1.0))), NOMASK)          \
    X(SINH, sinh, sinh(x), TIMES(COSH(x)), NOMASK)                             \
    X(COSH, cosh, cosh(x), TIMES(SINH(x)), NOMASK)                             \
    X(ASINH, asinh, asinh(x), TIMES(RSQRT(ADDS(SQUARE(x), 1.0))), NOMASK)      \
    /* y (1 - y), with 1 - y computed as sigmoid(-x): the plain difference     \
     * loses every digit once y rounds to 1 (x > 37) */                        \
    X(SIGMOID, sigmoid, jac__sigmoid_value(x), TIMES(MUL(y, SIGMOID(NEG(x)))), \
      0)                                                                       \
    /* NaN propagates, as in PyTorch; the derivative is 0 at the kink */       \
    X(RELU, relu, x > 0.0 || isnan(x) ? x : 0.0, TIMES(MASK), GT(x, 0.0))      \
    /* sigmoid(x), smooth to any order */                                      \
    X(SOFTPLUS, softplus, jac__softplus_value(x), TIMES(SIGMOID(x)), NOMASK)   \
    X(ERF, erf, erf(x), TIMES(MULS(EXP(NEG(SQUARE(x))), TWO_OVER_SQRT_PI)),    \
      NOMASK)                                                                  \
    /* written with comparisons, not fmin/fmax, so that NaN propagates; the    \
     * derivative is 1 for lo <= x <= hi, bounds included (PyTorch's           \
     * convention), and 0 outside or at NaN */                                 \
    X(CLAMP, clamp, x<lo ? lo : x> hi ? hi : x, TIMES(MASK),                   \
      MUL(GE(x, lo), LE(x, hi)))

/* The parameters of a function, as the forward call gives them and as its
 * node keeps them (two numbers and a flag). */
typedef struct jac__fn_params {
    double c0, c1;
    bool divide;
} jac__fn_params;

static inline jac__fn_params jac__fn_params_of(const jac__node *n)
{
    jac__fn_params q = {n->p.affine.alpha, n->p.affine.beta,
                        n->p.affine.divide};
    return q;
}

/* Names the parameters for a row's expressions. */
#define JAC__FN_PARAMETERS(q)                                                  \
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
#define GT(a, c) ((a) > (c) ? 1.0 : 0.0)
#define LT(a, c) ((a) < (c) ? 1.0 : 0.0)
#define GE(a, c) ((a) >= (c) ? 1.0 : 0.0)
#define LE(a, c) ((a) <= (c) ? 1.0 : 0.0)
#define SUB(a, b) ((a) - (b))
#define MUL(a, b) ((a) * (b))
#define NOMASK 0.0
static JAC__FOLD double jac__fn_mask(int op, double x, jac__fn_params q)
{
    JAC__FN_PARAMETERS(q);
    switch (op) {
#define MASK_CASE(e, rule, value, derivative, mask)                            \
    case JAC__OP_##e:                                                          \
        return (mask);
        /* Most rows' mask is 0. NOLINTNEXTLINE(bugprone-branch-clone) */
        JAC__FUNCTIONS(MASK_CASE)
#undef MASK_CASE
    default:
        return 0.0;
    }
}
#undef GT
#undef LT
#undef GE
#undef LE
#undef SUB
#undef MUL
#undef NOMASK

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
#define POWS(a, c) jac__pow_value((a), (c))
#define COS(a) cos(a)
#define SIN(a) sin(a)
#define COSH(a) cosh(a)
#define SINH(a) sinh(a)
#define EXP(a) exp(a)
#define RSQRT(a) (1.0 / sqrt(a))
#define SIGMOID(a) jac__sigmoid_value(a)
#define MASK jac__fn_mask(op, x, q)

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
static JAC__FOLD double jac__fn_value_partial(int op, double x,
                                              jac__fn_params q, bool *has,
                                              double *partial)
{
    JAC__FN_PARAMETERS(q);
    double y = 0.0;
    *has = false;
    switch (op) {
#define ONE_CASE(e, rule, value, derivative, mask)                             \
    case JAC__OP_##e:                                                          \
        y = (value);                                                           \
        derivative break;
        /* ZERO and VJP(e) both leave no partial: two arms of pow_scalar's
         * IF alike. NOLINTNEXTLINE(bugprone-branch-clone) */
        JAC__FUNCTIONS(ONE_CASE)
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

/* y at one element (the forward loops). */
static JAC__FOLD double jac__fn_value(int op, double x, jac__fn_params q)
{
    JAC__FN_PARAMETERS(q);
    switch (op) {
#define VALUE_CASE(e, rule, value, derivative, mask)                           \
    case JAC__OP_##e:                                                          \
        return (value);
        JAC__FUNCTIONS(VALUE_CASE)
#undef VALUE_CASE
    default:
        return 0.0;
    }
}

/* The input cotangent at one element for the output cotangent g (the raw
 * kernels). */
static JAC__FOLD double jac__fn_cotangent(int op, double x, double y, double g,
                                          jac__fn_params q)
{
    JAC__FN_PARAMETERS(q);
    (void)x;
    (void)y;
    (void)g;
    switch (op) {
#define COTANGENT_CASE(e, rule, value, derivative, mask)                       \
    case JAC__OP_##e:                                                          \
        return (derivative);
        JAC__FUNCTIONS(COTANGENT_CASE)
#undef COTANGENT_CASE
    default:
        return 0.0;
    }
}

/* Whether a row's derivative is the cotangent times a partial (TIMES): a
 * replay keeps that partial from the forward sweep, taken with the value
 * (sin and cos of one x as one sincos), rather than computing it again. */
#undef TIMES
#undef SCALE
#undef VJP
#undef ZERO
#undef IF
#define TIMES(d) true
#define SCALE(c) false
#define VJP(e) false
#define ZERO false
#define IF(c, f, h) false
static JAC__FOLD bool jac__fn_keeps_partial(int op)
{
    switch (op) {
#define KEEPS_CASE(e, rule, value, derivative, mask)                           \
    case JAC__OP_##e:                                                          \
        return (derivative);
        /* Rows of one kind alike. NOLINTNEXTLINE(bugprone-branch-clone) */
        JAC__FUNCTIONS(KEEPS_CASE)
#undef KEEPS_CASE
    default:
        return false;
    }
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

#endif /* JAC_OPS_FUNCTIONS_H */
