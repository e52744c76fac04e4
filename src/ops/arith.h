/*
 * The arithmetic ops of two tensors (add, sub, mul, div), each a row of
 * JAC__ARITH: its value and the derivative for each input written once.
 * This header expands the rows on doubles, one element at a time (inlined
 * where the op is a constant, so that the switch folds); arith.c expands
 * them into the forward and raw backward loops and the differentiable
 * rules, and the replay of recorded functions (src/program) into its
 * scalar instructions.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JAC_OPS_ARITH_H
#define JAC_OPS_ARITH_H

#include "ops/ops.h"

/* X(OP, rule, value, d/da, d/db): value an expression of a and b; the
 * derivatives are forms of functions.c (TIMES, SCALE, VJP) in g, a, b and
 * y, written with MUL, DIV and NEG. */
#define JAC__ARITH(X)                                                          \
    X(ADD, add, a + b, SCALE(1.0), SCALE(1.0))                                 \
    X(SUB, sub, a - b, SCALE(1.0), SCALE(-1.0))                                \
    X(MUL, mul, a *b, TIMES(b), TIMES(a))                                      \
    /* the output is reused: d(a/b)/db = -(a/b)/b */                           \
    X(DIV, div, a / b, VJP(DIV(g, b)), VJP(NEG(DIV(MUL(g, y), b))))

#define MUL(u, v) ((u) * (v))
#define DIV(u, v) ((u) / (v))
#define NEG(u) (-(u))

/* y = op(a, b) at one element. */
static JAC__FOLD double jac__arith_value(int op, double a, double b)
{
    switch (op) {
#define VALUE_CASE(e, rule, value, da, db)                                     \
    case JAC__OP_##e:                                                          \
        return (value);
        JAC__ARITH(VALUE_CASE)
#undef VALUE_CASE
    default:
        return 0.0;
    }
}

/* The cotangent of input j (0 for a, 1 for b) at one element, for the
 * output cotangent g. */
#define TIMES(d) ((g) * (d))
#define SCALE(c) ((g) * (c))
#define VJP(e) (e)
static JAC__FOLD double jac__arith_cotangent(int op, int j, double a, double b,
                                             double y, double g)
{
    (void)a;
    (void)b;
    (void)y;
    switch (op) {
#define COTANGENT_CASE(e, rule, value, da, db)                                 \
    case JAC__OP_##e:                                                          \
        return j == 0 ? (da) : (db);
        /* add's two sides alike. NOLINTNEXTLINE(bugprone-branch-clone) */
        JAC__ARITH(COTANGENT_CASE)
#undef COTANGENT_CASE
    default:
        return 0.0;
    }
}
#undef TIMES
#undef SCALE
#undef VJP

/* The partials of a one-element output, where both cotangents are g times
 * a number: false when they are not. */
#define TIMES(d)                                                               \
    {                                                                          \
        *has = true;                                                           \
        *partial = (d);                                                        \
    }
#define SCALE(c) TIMES(c)
#define VJP(e)                                                                 \
    {                                                                          \
        *has = false;                                                          \
        (void)partial;                                                         \
    }
static JAC__FOLD bool jac__arith_partials(int op, double a, double b, double y,
                                          double *pa, double *pb)
{
    bool has_a = false, has_b = false;
    (void)y;
    switch (op) {
#define PARTIAL_CASE(e, rule, value, da, db)                                   \
    case JAC__OP_##e: {                                                        \
        bool *has = &has_a;                                                    \
        double *partial = pa;                                                  \
        da has = &has_b;                                                       \
        partial = pb;                                                          \
        db break;                                                              \
    }
        JAC__ARITH(PARTIAL_CASE)
#undef PARTIAL_CASE
    default:
        break;
    }
    return has_a && has_b;
}
#undef TIMES
#undef SCALE
#undef VJP
#undef MUL
#undef DIV
#undef NEG

#endif /* JAC_OPS_ARITH_H */
