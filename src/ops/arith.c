/*
 * Elementwise ops of two tensors, with NumPy broadcasting: add, sub, mul,
 * div, and pow, maximum, minimum and atan2.
 *
 * The four arithmetic ops are rows of ARITH, their value and the
 * derivative for each input written once, expanded (as in functions.c)
 * into the forward loop, the raw backward kernel, the one-element partials
 * and the differentiable rules. Broadcasting is undone in a rule by summing
 * the cotangent over the axes that the forward op stretched, in the raw
 * kernel by accumulating over the repeats.
 *
 * SPDX-License-Identifier: MIT
 */
#include "ops/arith.h"

#include <math.h>

/* The forward loop, strided so that a broadcast operand repeats. */
JAC__VECTORIZED static void arith_run(int op, int64_t n, const double *av,
                                      int64_t sa, const double *bv, int64_t sb,
                                      double *yv)
{
    switch (op) {
#define FORWARD_CASE(e, rule, value, da, db)                                   \
    case JAC__OP_##e:                                                          \
        for (int64_t i = 0; i < n; i++)                                        \
            yv[i] = jac__arith_value(JAC__OP_##e, av[i * sa], bv[i * sb]);     \
        break;
        JAC__ARITH(FORWARD_CASE)
#undef FORWARD_CASE
    default:
        break;
    }
}

/* One input's cotangent over count elements of the output, where the
 * operands a and b are read at the same positions (or repeat with them):
 * written, or added to what d holds. */
#define ROW_FN(name, deriv)                                                    \
    JAC__VECTORIZED static void name(int64_t count, const double *av,          \
                                     int64_t sa, const double *bv, int64_t sb, \
                                     const double *yv, const double *gv,       \
                                     double *d, int64_t sd, bool add)          \
    {                                                                          \
        for (int64_t i = 0; i < count; i++) {                                  \
            double c = deriv(av[i * sa], bv[i * sb], yv[i], gv[i]);            \
            d[i * sd] = add ? d[i * sd] + c : c;                               \
        }                                                                      \
    }
/* Without broadcasting: batch stacked cotangents of m elements each, every
 * operand dense, written or added to what d holds, in one loop nest (one
 * for each), which vectorises. */
#define DENSE_FN(name, deriv)                                                  \
    JAC__VECTORIZED static void name(                                          \
        int64_t batch, int64_t m, const double *av, const double *bv,          \
        const double *yv, const double *gv, double *d, bool add)               \
    {                                                                          \
        if (add) {                                                             \
            for (int64_t s = 0; s < batch; s++, gv += m, d += m)               \
                for (int64_t i = 0; i < m; i++)                                \
                    d[i] += deriv(av[i], bv[i], yv[i], gv[i]);                 \
            return;                                                            \
        }                                                                      \
        for (int64_t s = 0; s < batch; s++, gv += m, d += m) {                 \
            for (int64_t i = 0; i < m; i++) {                                  \
                d[i] = deriv(av[i], bv[i], yv[i], gv[i]);                      \
            }                                                                  \
        }                                                                      \
    }
/* The cotangent of each input of each row, by name. */
#define COTANGENTS(e, rule, value, da, db)                                     \
    static JAC__FOLD double cot_##rule##_a(double a, double b, double y,       \
                                           double g)                           \
    {                                                                          \
        return jac__arith_cotangent(JAC__OP_##e, 0, a, b, y, g);               \
    }                                                                          \
    static JAC__FOLD double cot_##rule##_b(double a, double b, double y,       \
                                           double g)                           \
    {                                                                          \
        return jac__arith_cotangent(JAC__OP_##e, 1, a, b, y, g);               \
    }
JAC__ARITH(COTANGENTS)
#undef COTANGENTS
#define ROW_KERNEL(e, rule, value, da, db)                                     \
    ROW_FN(row_##rule##_a, cot_##rule##_a)                                     \
    ROW_FN(row_##rule##_b, cot_##rule##_b)                                     \
    DENSE_FN(dense_##rule##_a, cot_##rule##_a)                                 \
    DENSE_FN(dense_##rule##_b, cot_##rule##_b)
JAC__ARITH(ROW_KERNEL)
#undef ROW_KERNEL
#undef ROW_FN
#undef DENSE_FN

typedef void row_fn(int64_t count, const double *av, int64_t sa,
                    const double *bv, int64_t sb, const double *yv,
                    const double *gv, double *d, int64_t sd, bool add);
typedef void dense_fn(int64_t batch, int64_t m, const double *av,
                      const double *bv, const double *yv, const double *gv,
                      double *d, bool add);

/* Broadcasting undone without index arithmetic per element: both inputs
 * are suffixes of the output, so the output splits into rows of the
 * shorter one's size (a one-element input aside, read with stride 0),
 * within which every operand is contiguous. */
bool jac__raw_binary(const jac__node *n, int64_t batch, const double *g,
                     const jac__onehot_rows *onehot, const bool *need,
                     const bool *add, double *const *gin)
{
    (void)onehot;
    const jac_tensor *a = n->in[0], *b = n->in[1], *y = n->out;
    if (!jac__is_suffix(a, y) || !jac__is_suffix(b, y))
        return false;
    row_fn *rows[2] = {NULL, NULL};
    dense_fn *dense[2] = {NULL, NULL};
    switch (n->op) {
#define ROW_CHOICE(e, rule, value, da, db)                                     \
    case JAC__OP_##e:                                                          \
        rows[0] = row_##rule##_a;                                              \
        rows[1] = row_##rule##_b;                                              \
        dense[0] = dense_##rule##_a;                                           \
        dense[1] = dense_##rule##_b;                                           \
        break;
        JAC__ARITH(ROW_CHOICE)
#undef ROW_CHOICE
    default:
        return false;
    }
    int64_t m = y->numel, ka = a->numel, kb = b->numel;
    /* A broadcast input's cotangent is a sum over rows, which is then
     * added to its adjoint as a whole (as the rule's is): added row by
     * row it would round otherwise. */
    for (int j = 0; j < 2; j++)
        if (need[j] && add != NULL && add[j] && (j == 0 ? ka : kb) < m)
            return false;
    if (ka == m && kb == m) {
        for (int j = 0; j < 2; j++)
            if (need[j])
                dense[j](batch, m, a->data, b->data, y->data, g, gin[j],
                         add != NULL && add[j]);
        return true;
    }
    int64_t row = m;
    if (ka > 1 && ka < row)
        row = ka;
    if (kb > 1 && kb < row)
        row = kb;
    for (int j = 0; j < 2; j++) {
        if (!need[j])
            continue;
        int64_t k = j == 0 ? ka : kb;
        bool adds = add != NULL && add[j]; /* then k == m */
        if (m == 0) { /* an empty output: an input broadcast into it gets 0 */
            memset(gin[j], 0, (size_t)(batch * k) * sizeof(double));
            continue;
        }
        for (int64_t s = 0; s < batch; s++) {
            double *d = gin[j] + s * k;
            if (k < m)
                memset(d, 0, (size_t)k * sizeof(double));
            for (int64_t r = 0; r < m; r += row)
                rows[j](row, a->data + r % ka, ka > 1, b->data + r % kb, kb > 1,
                        y->data + r, g + s * m + r, d + r % k, k > 1,
                        k < m || adds);
        }
    }
    return true;
}

/* The partials of a one-element output (whose inputs have one element
 * each: broadcasting never shrinks an extent other than to 0). */
static void record_partials(jac__node *n)
{
    n->has_partials =
        jac__arith_partials(n->op, n->in[0]->data[0], n->in[1]->data[0],
                            n->out->data[0], &n->partial[0], &n->partial[1]);
}

/* ------------------------------------------------------------------------ */
/* The forward ops                                                          */
/* ------------------------------------------------------------------------ */

/* y = op(a, b) over the broadcast shape of y: the innermost axis runs as
 * one strided loop, a row at a time. */
static void arith_kernel(int op, const jac_tensor *a, const jac_tensor *b,
                         jac_tensor *y)
{
    if (y->numel == 0)
        return;
    if (a->numel == y->numel && b->numel == y->numel) {
        arith_run(op, y->numel, a->data, 1, b->data, 1, y->data);
        return;
    }
    if (a->numel == y->numel && b->numel == 1) {
        arith_run(op, y->numel, a->data, 1, b->data, 0, y->data);
        return;
    }
    if (a->numel == 1 && b->numel == y->numel) {
        arith_run(op, y->numel, a->data, 0, b->data, 1, y->data);
        return;
    }
    int n = y->ndim;
    int64_t sa[JAC_MAX_DIMS], sb[JAC_MAX_DIMS], sy[JAC_MAX_DIMS];
    jac__broadcast_strides(a, n, y->shape, sa);
    jac__broadcast_strides(b, n, y->shape, sb);
    jac__contiguous_strides(n, y->shape, 1, sy);
    const int64_t *strides[3] = {sa, sb, sy};
    jac__iter it;
    int64_t rows = jac__iter_init(&it, n, y->shape, 3, strides);
    for (int64_t r = 0; r < rows; r++, jac__iter_next(&it))
        arith_run(op, it.inner, a->data + it.off[0], it.step[0],
                  b->data + it.off[1], it.step[1], y->data + it.off[2]);
}

/* The broadcast shape of a and b into shape: its rank, or -1 with the
 * error reported. */
static int broadcast_pair(jac_ctx *ctx, const char *name, const jac_tensor *a,
                          const jac_tensor *b, int64_t *shape)
{
    int n = jac__broadcast_shape(a->ndim, a->shape, b->ndim, b->shape, shape);
    if (n < 0) {
        char s1[JAC__SHAPE_STR_MAX], s2[JAC__SHAPE_STR_MAX];
        jac__error(ctx, JAC_ERR_SHAPE,
                   "%s: shapes %s and %s cannot be broadcast together", name,
                   jac__shape_str(s1, sizeof s1, a->ndim, a->shape),
                   jac__shape_str(s2, sizeof s2, b->ndim, b->shape));
    }
    return n;
}

jac_tensor *jac__broadcast_result(jac_ctx *ctx, const char *name,
                                  jac_tensor *const *ab)
{
    if (!jac__check_args(ctx, name, 2, ab))
        return NULL;
    const jac_tensor *a = ab[0], *b = ab[1];
    bool same = a->ndim == b->ndim && a->numel <= JAC__INLINE_NUMEL;
    for (int i = 0; same && i < a->ndim; i++)
        same = a->shape[i] == b->shape[i];
    if (same) /* the same small shape: no broadcasting, no checks */
        return jac__tensor_like(ctx, name, a);
    int64_t shape[JAC_MAX_DIMS];
    int n = broadcast_pair(ctx, name, a, b, shape);
    return n < 0 ? NULL : jac__tensor_alloc(ctx, name, n, shape);
}

static jac_tensor *arith(jac_ctx *ctx, jac__op op, jac_tensor *a, jac_tensor *b)
{
    jac_tensor *ins[2] = {a, b};
    jac_tensor *y = jac__broadcast_result(ctx, jac__ops[op].name, ins);
    if (y == NULL)
        return NULL;
    arith_kernel((int)op, a, b, y);
    bool failed;
    jac__node *node = jac__record(ctx, op, y, 2, ins, &failed);
    if (node && y->numel == 1)
        record_partials(node);
    return failed ? NULL : y;
}

jac_tensor *jac_add(jac_ctx *ctx, jac_tensor *a, jac_tensor *b)
{
    return arith(ctx, JAC__OP_ADD, a, b);
}

jac_tensor *jac_sub(jac_ctx *ctx, jac_tensor *a, jac_tensor *b)
{
    return arith(ctx, JAC__OP_SUB, a, b);
}

jac_tensor *jac_mul(jac_ctx *ctx, jac_tensor *a, jac_tensor *b)
{
    return arith(ctx, JAC__OP_MUL, a, b);
}

jac_tensor *jac_div(jac_ctx *ctx, jac_tensor *a, jac_tensor *b)
{
    return arith(ctx, JAC__OP_DIV, a, b);
}

/* ------------------------------------------------------------------------ */
/* The rows on tensors: the differentiable rules                            */
/* ------------------------------------------------------------------------ */

/* The cotangents ga and gb (batch ++ output shape) summed down to the
 * inputs' shapes; the batch axes in front stay. */
static jac_status reduce_both(jac_ctx *ctx, const jac__node *node,
                              jac_tensor *g, const bool *need, jac_tensor *ga,
                              jac_tensor *gb, jac_tensor **gin)
{
    int nb = jac__batch_ndim(g, node->out);
    jac_tensor *full[2] = {ga, gb};
    for (int j = 0; j < 2; j++) {
        if (!need[j])
            continue;
        gin[j] = jac__sum_to_batched(ctx, full[j], nb, node->in[j]->ndim,
                                     node->in[j]->shape);
        if (gin[j] == NULL)
            return ctx->status;
    }
    return JAC_OK;
}

#define MUL(u, v) jac_mul(ctx, (u), (v))
#define DIV(u, v) jac_div(ctx, (u), (v))
#define NEG(u) jac_neg(ctx, (u))
#define TIMES(d) jac_mul(ctx, g, (d))
#define SCALE(c) ((c) == 1.0 ? g : jac_mul_scalar(ctx, g, (c)))
#define VJP(e) (e)
#define RULE(e, rule, value, da, db)                                           \
    jac_status jac__vjp_##rule(jac_ctx *ctx, const jac__node *node,            \
                               jac_tensor *g, const bool *need,                \
                               jac_tensor **gin)                               \
    {                                                                          \
        jac_tensor *a = node->in[0], *b = node->in[1], *y = node->out;         \
        (void)a;                                                               \
        (void)b;                                                               \
        (void)y;                                                               \
        jac_tensor *ga = need[0] ? (da) : g;                                   \
        jac_tensor *gb = need[1] ? (db) : g;                                   \
        if (ga == NULL || gb == NULL)                                          \
            return ctx->status;                                                \
        return reduce_both(ctx, node, g, need, ga, gb, gin);                   \
    }
JAC__ARITH(RULE)
#undef RULE
#undef MUL
#undef DIV
#undef NEG
#undef TIMES
#undef SCALE
#undef VJP

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
    jac_tensor *ins[2] = {a, b};
    if (!jac__check_args(ctx, name, 2, ins))
        return NULL;
    int64_t shape[JAC_MAX_DIMS];
    int nd = broadcast_pair(ctx, name, a, b, shape);
    if (nd < 0)
        return NULL;
    for (int j = 0; j < 2; j++)
        if (!has_shape(ins[j], nd, shape) &&
            (ins[j] = jac_expand(ctx, ins[j], nd, shape)) == NULL)
            return NULL;
    a = ins[0];
    b = ins[1];
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
    return jac__record_result(ctx, op, y, 2, ins, NULL);
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
    jac_tensor *a = node->in[0], *b = node->in[1];
    if (jac__should_record(ctx, 2, node->in)) {
        /* Recorded (create-graph): of comparisons, so that a recorded
         * function takes the mask again at its new inputs. */
        *none = false;
        jac_tensor *zero = jac_scalar(ctx, 0.0);
        jac_tensor *eb = kind == ZERO_BASE_ZERO_EXP ? jac_eq(ctx, b, zero)
                                                    : jac_ge(ctx, b, zero);
        return jac_mul(ctx, jac_eq(ctx, a, zero), eb);
    }
    *none = true;
    for (int64_t i = 0; i < a->numel && *none; i++)
        if (a->data[i] == 0.0 &&
            (kind == ZERO_BASE_ZERO_EXP ? b->data[i] == 0.0
                                        : b->data[i] >= 0.0))
            *none = false;
    if (*none)
        return NULL;
    jac_tensor *m = jac__tensor_like(ctx, "pow", a);
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
static jac_tensor *winner_mask(jac_ctx *ctx, const char *name, jac_tensor *u,
                               jac_tensor *v, bool larger)
{
    jac_tensor *uv[2] = {u, v};
    if (jac__should_record(ctx, 2, uv)) {
        /* Recorded (create-graph): of comparisons, so that a recorded
         * function takes the mask again at its new inputs. */
        jac_tensor *wins = larger ? jac_gt(ctx, u, v) : jac_lt(ctx, u, v);
        return jac_add(ctx, wins, jac_mul_scalar(ctx, jac_eq(ctx, u, v), 0.5));
    }
    jac_tensor *m = jac__tensor_like(ctx, name, u);
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

/* ------------------------------------------------------------------------ */
/* Applying a node anew: the public call on the node's inputs               */
/*                                                                          */
/* pow, maximum, minimum and atan2 record their inputs already broadcast,   */
/* so that the call sees equal shapes and expands nothing.                  */
/* ------------------------------------------------------------------------ */

#define APPLY_BINARY(rule)                                                     \
    jac_tensor *jac__apply_##rule(jac_ctx *ctx, const jac__node *n,            \
                                  jac_tensor *const *ins)                      \
    {                                                                          \
        (void)n;                                                               \
        return jac_##rule(ctx, ins[0], ins[1]);                                \
    }
APPLY_BINARY(add)
APPLY_BINARY(sub)
APPLY_BINARY(mul)
APPLY_BINARY(div)
APPLY_BINARY(pow)
APPLY_BINARY(maximum)
APPLY_BINARY(minimum)
APPLY_BINARY(atan2)
#undef APPLY_BINARY
