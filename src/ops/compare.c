/*
 * Elementwise comparisons of two tensors, with NumPy broadcasting: gt, ge,
 * lt, le, eq and ne, 1.0 where the comparison holds and 0.0 where it does
 * not, with IEEE semantics (every comparison with NaN is false but ne,
 * which is true). With jac_where they write branches.
 *
 * A comparison is piecewise constant: its derivative is zero wherever it
 * exists, and is taken as zero at ties as well. The cotangent of each input
 * is zeros of its shape whatever the output's cotangent holds (inf and NaN
 * included: the zeros are not g * 0), a constant under create-graph; the
 * raw kernel writes the same zeros, and no one-element partials are kept
 * (an unrecorded pass would multiply them by g). The ops record like any
 * other when an input requires gradients, so that a recorded function
 * replayed node by node meets them where it made them.
 *
 * SPDX-License-Identifier: MIT
 */
#include "ops/ops.h"

/* X(OP, rule, test): test an expression of the doubles a and b. */
#define COMPARISONS(X)                                                         \
    X(GT, gt, a > b)                                                           \
    X(GE, ge, a >= b)                                                          \
    X(LT, lt, a < b)                                                           \
    X(LE, le, a <= b)                                                          \
    X(EQ, eq, a == b)                                                          \
    X(NE, ne, a != b)

/* ------------------------------------------------------------------------ */
/* The forward ops                                                          */
/* ------------------------------------------------------------------------ */

/* n results, the operands strided so that a broadcast one repeats. */
static void compare_run(int op, int64_t n, const double *av, int64_t sa,
                        const double *bv, int64_t sb, double *yv, int64_t sy)
{
    switch (op) {
#define FORWARD_CASE(e, rule, test)                                            \
    case JAC__OP_##e:                                                          \
        for (int64_t i = 0; i < n; i++) {                                      \
            double a = av[i * sa], b = bv[i * sb];                             \
            yv[i * sy] = (test) ? 1.0 : 0.0;                                   \
        }                                                                      \
        break;
        COMPARISONS(FORWARD_CASE)
#undef FORWARD_CASE
    default:
        break;
    }
}

static jac_tensor *compare(jac_ctx *ctx, jac__op op, jac_tensor *a,
                           jac_tensor *b)
{
    jac_tensor *ins[2] = {a, b};
    jac_tensor *y = jac__broadcast_result(ctx, jac__ops[op].name, ins);
    if (y == NULL)
        return NULL;
    int n = y->ndim;
    const int64_t *shape = y->shape;
    int64_t sa[JAC_MAX_DIMS], sb[JAC_MAX_DIMS], sy[JAC_MAX_DIMS];
    jac__broadcast_strides(a, n, shape, sa);
    jac__broadcast_strides(b, n, shape, sb);
    jac__contiguous_strides(n, shape, 1, sy);
    const int64_t *strides[3] = {sa, sb, sy};
    jac__iter it;
    int64_t rows = jac__iter_init(&it, n, shape, 3, strides);
    for (int64_t r = 0; r < rows; r++, jac__iter_next(&it))
        compare_run((int)op, it.inner, a->data + it.off[0], it.step[0],
                    b->data + it.off[1], it.step[1], y->data + it.off[2],
                    it.step[2]);
    return jac__record_result(ctx, op, y, 2, ins, NULL);
}

#define PUBLIC(e, rule, test)                                                  \
    jac_tensor *jac_##rule(jac_ctx *ctx, jac_tensor *a, jac_tensor *b)         \
    {                                                                          \
        return compare(ctx, JAC__OP_##e, a, b);                                \
    }
COMPARISONS(PUBLIC)
#undef PUBLIC

#define APPLY(e, rule, test)                                                   \
    jac_tensor *jac__apply_##rule(jac_ctx *ctx, const jac__node *n,            \
                                  jac_tensor *const *ins)                      \
    {                                                                          \
        (void)n;                                                               \
        return compare(ctx, JAC__OP_##e, ins[0], ins[1]);                      \
    }
COMPARISONS(APPLY)
#undef APPLY

/* ------------------------------------------------------------------------ */
/* The derivative: zeros                                                    */
/* ------------------------------------------------------------------------ */

jac_status jac__zero_rule(jac_ctx *ctx, const jac__node *node,
                          const jac_tensor *g, const bool *need,
                          jac_tensor **gin)
{
    int nb = jac__batch_ndim(g, node->out);
    for (int j = 0; j < node->nin; j++) {
        if (!need[j])
            continue;
        const jac_tensor *x = node->in[j];
        int64_t shape[JAC_MAX_DIMS];
        int n = jac__batched_shape(g, nb, x->ndim, x->shape, shape);
        if (n < 0)
            return jac__error(ctx, JAC_ERR_RANK,
                              "%s: batched gradient exceeds rank %d",
                              jac__ops[node->op].name, JAC_MAX_DIMS);
        if ((gin[j] = jac_zeros(ctx, n, shape)) == NULL)
            return ctx->status;
    }
    return JAC_OK;
}

#define RULE(e, rule, test)                                                    \
    jac_status jac__vjp_##rule(jac_ctx *ctx, const jac__node *node,            \
                               jac_tensor *g, const bool *need,                \
                               jac_tensor **gin)                               \
    {                                                                          \
        return jac__zero_rule(ctx, node, g, need, gin);                        \
    }
COMPARISONS(RULE)
#undef RULE

/* The same zeros straight into the buffers (broadcasting changes nothing:
 * every input's cotangent is zero throughout). */
bool jac__raw_zeros(const jac__node *n, int64_t batch, const double *g,
                    const jac__onehot_rows *onehot, const bool *need,
                    const bool *add, double *const *gin)
{
    (void)g;
    (void)onehot;
    /* Adding zeros is not nothing: -0 + 0 is 0, as the rule's sum has. */
    if (jac__raw_adds(n, add))
        return false;
    for (int j = 0; j < n->nin; j++)
        if (need[j])
            memset(gin[j], 0,
                   (size_t)(batch * n->in[j]->numel) * sizeof(double));
    return true;
}
