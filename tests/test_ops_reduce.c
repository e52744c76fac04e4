/*
 * Reductions: mean, prod, max, min, logsumexp, var, std, norm, softmax and
 * log_softmax. Values against PyTorch (float64, computed once and pasted as
 * literals), first and second derivatives against finite differences at
 * several shapes, batched seeds against the row loop, the documented
 * conventions (ties, kinks, zeros, empty reductions) as exact values, and
 * the error cases.
 *
 * SPDX-License-Identifier: MIT
 */
#include "batchcheck.h"
#include "testutil.h"

/* ---------------------------------------------------------------------- */
/* One reduction with its parameters, as a jac_fn                          */
/* ---------------------------------------------------------------------- */

typedef enum {
    OP_MEAN,
    OP_MEAN_AXES,
    OP_PROD,
    OP_PROD_AXES,
    OP_MAX,
    OP_MAX_AXES,
    OP_MIN,
    OP_MIN_AXES,
    OP_LOGSUMEXP,
    OP_VAR,
    OP_STD,
    OP_NORM,
    OP_SOFTMAX,
    OP_LOG_SOFTMAX
} op_kind;

typedef struct red_case {
    op_kind op;
    bool all_axes; /* pass axes = NULL */
    int naxes;
    int axes[JAC_MAX_DIMS];
    bool keepdim;
    double correction; /* var, std */
    double p;          /* norm */
    int axis;          /* softmax, log_softmax */
    bool then_sin;     /* apply sin to the result */
} red_case;

static jac_tensor *apply(jac_ctx *ctx, jac_tensor *a, const red_case *c)
{
    const int *axes = c->all_axes ? NULL : c->axes;
    switch (c->op) {
    case OP_MEAN:
        return jac_mean(ctx, a);
    case OP_MEAN_AXES:
        return jac_mean_axes(ctx, a, c->naxes, axes, c->keepdim);
    case OP_PROD:
        return jac_prod(ctx, a);
    case OP_PROD_AXES:
        return jac_prod_axes(ctx, a, c->naxes, axes, c->keepdim);
    case OP_MAX:
        return jac_max(ctx, a);
    case OP_MAX_AXES:
        return jac_max_axes(ctx, a, c->naxes, axes, c->keepdim);
    case OP_MIN:
        return jac_min(ctx, a);
    case OP_MIN_AXES:
        return jac_min_axes(ctx, a, c->naxes, axes, c->keepdim);
    case OP_LOGSUMEXP:
        return jac_logsumexp(ctx, a, c->naxes, axes, c->keepdim);
    case OP_VAR:
        return jac_var(ctx, a, c->naxes, axes, c->correction, c->keepdim);
    case OP_STD:
        return jac_std(ctx, a, c->naxes, axes, c->correction, c->keepdim);
    case OP_NORM:
        return jac_norm(ctx, a, c->p, c->naxes, axes, c->keepdim);
    case OP_SOFTMAX:
        return jac_softmax(ctx, a, c->axis);
    case OP_LOG_SOFTMAX:
        return jac_log_softmax(ctx, a, c->axis);
    }
    return NULL;
}

static jac_status run_case(jac_ctx *ctx, jac_tensor *const *in,
                           jac_tensor **out, void *user)
{
    const red_case *c = user;
    jac_tensor *y = apply(ctx, in[0], c);
    if (c->then_sin)
        y = jac_sin(ctx, y);
    out[0] = y;
    if (y == NULL)
        return jac_errcode(ctx) != JAC_OK ? jac_errcode(ctx) : JAC_ERR_STATE;
    return JAC_OK;
}

/* First and second derivatives of the op and of sin(op) against finite
 * differences (the sin makes the gradient depend on the input through the
 * op's rule even where the op is linear, so the rule's own derivative is
 * checked), then batched seeds against the row loop. */
static void check_derivatives_at(jac_ctx *ctx, red_case c, jac_tensor *x,
                                 const char *file, int line)
{
    for (int s = 0; s < 2; s++) {
        c.then_sin = s == 1;
        tu_gradcheck_at(ctx, run_case, &c, 1, &x, 1, file, line);
        tu_gradgradcheck_at(ctx, run_case, &c, 1, &x, 1, file, line);
    }
    c.then_sin = true;
    tu_assert_batched_matches_rows_at(ctx, run_case, &c, 1, &x, 1, 0u, file,
                                      line);
    tu_assert_batched_matches_rows_at(ctx, run_case, &c, 1, &x, 1,
                                      JAC_CREATE_GRAPH, file, line);
}
/* check_derivatives(ctx, case, x); variadic because the case is usually a
 * compound literal, whose commas a plain macro argument would split. */
static void check_derivatives_va(const char *file, int line, jac_ctx *ctx,
                                 red_case c, jac_tensor *x)
{
    check_derivatives_at(ctx, c, x, file, line);
}
#define check_derivatives(...)                                                 \
    check_derivatives_va(__FILE__, __LINE__, __VA_ARGS__)

/* A leaf of alternating signs with magnitudes 1 + 0.8 sin(0.9 i + phase),
 * in (0.2, 1.8) and distinct: away from the kinks of |a| and from ties. */
static jac_tensor *signed_leaf_at(jac_ctx *ctx, int ndim, const int64_t *shape,
                                  double phase, const char *file, int line)
{
    jac_tensor *t = tu_smooth_leaf_at(ctx, ndim, shape, phase, file, line);
    double *d = (double *)jac_tensor_data(t);
    for (int64_t i = 0; i < jac_tensor_numel(t); i++)
        if (i % 2)
            d[i] = -d[i];
    return t;
}
#define signed_leaf(ctx, shape, phase)                                         \
    signed_leaf_at((ctx), (int)TU_COUNT(shape), (shape), (phase), __FILE__,    \
                   __LINE__)

/* The shapes every op is checked at: rank 0, a vector, a non-square matrix
 * and a rank-3 tensor with a leading (batch-like) axis. */
static jac_tensor *shape_input(jac_ctx *ctx, int which, bool signed_values)
{
    static const int64_t s1[] = {5};
    static const int64_t s2[] = {3, 5};
    static const int64_t s3[] = {2, 3, 4};
    const int64_t *shapes[] = {NULL, s1, s2, s3};
    int ranks[] = {0, 1, 2, 3};
    if (signed_values)
        return signed_leaf_at(ctx, ranks[which], shapes[which], 0.3, __FILE__,
                              __LINE__);
    return tu_smooth_leaf_at(ctx, ranks[which], shapes[which], 0.3, __FILE__,
                             __LINE__);
}

/* The reference input of the value checks, shape (2, 3, 4). */
static jac_tensor *x234(jac_ctx *ctx)
{
    return tu_leaf(ctx, TU_SHAPE(2, 3, 4),
                   TU_VALUES(0.3, -1.2, 2.5, 0.7, 1.1, 0.4, -0.6, 1.9, -2.2,
                             0.8, 1.5, -0.3, 0.9, 1.7, -1.1, 0.2, -0.5, 2.1,
                             0.6, -1.4, 1.3, -0.8, 0.05, 2.4));
}

/* The gradient of y (seeded with ones) with respect to x. */
static jac_tensor *grad_of_at(jac_ctx *ctx, jac_tensor *y, jac_tensor *x,
                              unsigned flags, const char *file, int line)
{
    jac_tensor *seed = jac_ones(ctx, jac_tensor_ndim(y), jac_tensor_shape(y));
    jac_tensor *g = NULL;
    tu_assert_ok_at(ctx, jac_grad(ctx, 1, &y, &seed, 1, &x, flags, &g), file,
                    line);
    return g;
}
#define grad_of(ctx, y, x, flags)                                              \
    grad_of_at((ctx), (y), (x), (flags), __FILE__, __LINE__)

/* Fails unless the call left error code with a message naming op. */
#define assert_error_names(ctx, result, code, op)                              \
    do {                                                                       \
        assert_null(result);                                                   \
        tu_assert_error((ctx), (code));                                        \
        tu_assert_contains(jac_errmsg(ctx), op);                               \
        jac_clear_error(ctx);                                                  \
    } while (0)

static const int AX02[] = {0, 2};

/* ---------------------------------------------------------------------- */
/* mean                                                                    */
/* ---------------------------------------------------------------------- */

static void test_mean_values_match_torch(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = x234(ctx);
    tu_assert_scalar(jac_mean(ctx, x), 0.43124999999999997, TU_TIGHT);
    tu_assert_tensor(jac_mean_axes(ctx, x, 2, AX02, true), TU_SHAPE(1, 3, 1),
                     TU_VALUES(0.5, 0.45, 0.34375), TU_TIGHT);
    int last = -1;
    tu_assert_tensor(jac_mean_axes(ctx, x, 1, &last, false), TU_SHAPE(2, 3),
                     TU_VALUES(0.575, 0.7, -0.05000000000000003, 0.425,
                               0.20000000000000007, 0.7375),
                     TU_TIGHT);
    tu_assert_no_error(ctx);
}

static void test_mean_of_empty_is_nan_and_of_scalar_is_itself(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *e = jac_zeros(ctx, 1, TU_SHAPE(0));
    assert_true(isnan(jac_tensor_item(jac_mean(ctx, e))));
    tu_assert_scalar(jac_mean(ctx, jac_scalar(ctx, -2.5)), -2.5, TU_EXACT);
    /* No axes listed: nothing is reduced. */
    jac_tensor *x = x234(ctx);
    int none = 0;
    jac_tensor *same = jac_mean_axes(ctx, x, 0, &none, false);
    tu_assert_shape(same, TU_SHAPE(2, 3, 4));
    tu_assert_close(jac_tensor_data(same), jac_tensor_data(x), 24, TU_EXACT,
                    0.0);
    tu_assert_no_error(ctx);
}

static void test_mean_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    for (int w = 0; w < 4; w++)
        check_derivatives(ctx, (red_case){.op = OP_MEAN},
                          shape_input(ctx, w, false));
    check_derivatives(
        ctx,
        (red_case){
            .op = OP_MEAN_AXES, .naxes = 2, .axes = {0, 2}, .keepdim = true},
        shape_input(ctx, 3, false));
    check_derivatives(ctx,
                      (red_case){.op = OP_MEAN_AXES, .naxes = 1, .axes = {1}},
                      shape_input(ctx, 2, false));
}

/* ---------------------------------------------------------------------- */
/* prod                                                                    */
/* ---------------------------------------------------------------------- */

static void test_prod_values_match_torch(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = x234(ctx);
    tu_assert_scalar(jac_prod(ctx, x), 0.009273006004165262, TU_TIGHT);
    int one = 1;
    tu_assert_tensor(jac_prod_axes(ctx, x, 1, &one, false), TU_SHAPE(2, 4),
                     TU_VALUES(-0.7260000000000001, -0.384, -2.25,
                               -0.39899999999999997, -0.5850000000000001,
                               -2.856, -0.033, -0.6719999999999999),
                     TU_TIGHT);
    tu_assert_tensor(jac_prod_axes(ctx, x, 2, AX02, true), TU_SHAPE(1, 3, 1),
                     TU_VALUES(0.212058, -0.4424112, -0.09884160000000003),
                     TU_TIGHT);
    /* The empty product is 1. */
    tu_assert_scalar(jac_prod(ctx, jac_zeros(ctx, 1, TU_SHAPE(0))), 1.0,
                     TU_EXACT);
    tu_assert_tensor(
        jac_prod_axes(ctx, jac_zeros(ctx, 2, TU_SHAPE(2, 0)), 1, &one, false),
        TU_SHAPE(2), TU_VALUES(1.0, 1.0), TU_EXACT);
    tu_assert_no_error(ctx);
}

/* Gradient, Hessian and the gradient of v^T H v of prod at a point, with
 * create-graph passes. The references come from PyTorch applied to the
 * product written as x0 * x1 * x2 * x3 (torch.prod's own double backward
 * is wrong with two or more zeros: it returns a zero Hessian). */
static void check_prod_orders(jac_ctx *ctx, const double *xv,
                              const double *grad, const double *hess,
                              const double *third)
{
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(4), TU_VALUES(0, 0, 0, 0));
    memcpy((double *)jac_tensor_data(x), xv, 4 * sizeof(double));
    jac_tensor *y = jac_prod(ctx, x);
    jac_tensor *g = grad_of(ctx, y, x, JAC_CREATE_GRAPH);
    tu_assert_close(jac_tensor_data(g), grad, 4, TU_TIGHT, 0.0);
    jac_tensor *h = jac_jacobian(ctx, g, x, JAC_CREATE_GRAPH);
    tu_assert_shape(h, TU_SHAPE(4, 4));
    tu_assert_close(jac_tensor_data(h), hess, 16, TU_TIGHT, 0.0);
    jac_tensor *v = tu_tensor(ctx, TU_SHAPE(4), TU_VALUES(0.3, -0.7, 1.1, 0.4));
    jac_tensor *hv = NULL, *t3 = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &g, &v, 1, &x, JAC_CREATE_GRAPH, &hv));
    tu_assert_ok(ctx, jac_grad(ctx, 1, &hv, &v, 1, &x, 0, &t3));
    tu_assert_close(jac_tensor_data(t3), third, 4, TU_TIGHT, 0.0);
}

static void test_prod_derivatives_are_exact_with_one_zero(void **state)
{
    check_prod_orders(*state, TU_VALUES(2.0, 0.0, 3.0, -1.5),
                      TU_VALUES(0.0, -9.0, 0.0, 0.0),
                      TU_VALUES(0.0, -4.5, 0.0, 0.0, -4.5, 0.0, -3.0, 6.0, 0.0,
                                -3.0, 0.0, 0.0, 0.0, 6.0, 0.0, 0.0),
                      TU_VALUES(0.6300000000000003, 1.4900000000000002,
                                -0.4899999999999999, -4.34));
}

static void test_prod_derivatives_are_exact_with_two_zeros(void **state)
{
    check_prod_orders(*state, TU_VALUES(0.0, 2.0, 0.0, 3.0),
                      TU_VALUES(0.0, 0.0, 0.0, 0.0),
                      TU_VALUES(0.0, 0.0, 6.0, 0.0, 0.0, 0.0, 0.0, 0.0, 6.0,
                                0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
                      TU_VALUES(-2.86, 1.98, -0.78, 1.32));
}

static void test_prod_third_derivative_is_exact_with_three_zeros(void **state)
{
    check_prod_orders(*state, TU_VALUES(0.0, 0.0, 0.0, 1.5),
                      TU_VALUES(0.0, 0.0, 0.0, 0.0),
                      TU_VALUES(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
                                0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
                      TU_VALUES(-2.31, 0.99, -0.63, 0.0));
}

static void test_prod_over_axis_with_zeros_matches_torch_hessian(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x =
        tu_leaf(ctx, TU_SHAPE(2, 3), TU_VALUES(1.5, 0.0, -2.0, 0.0, 0.0, 4.0));
    int one = 1;
    jac_tensor *y =
        jac_sum(ctx, jac_sin(ctx, jac_prod_axes(ctx, x, 1, &one, false)));
    jac_tensor *g = grad_of(ctx, y, x, JAC_CREATE_GRAPH);
    tu_assert_tensor(g, TU_SHAPE(2, 3), TU_VALUES(0, -3, 0, 0, 0, 0), TU_TIGHT);
    jac_tensor *h = jac_jacobian(ctx, g, x, 0);
    tu_assert_tensor(h, TU_SHAPE(2, 3, 2, 3),
                     TU_VALUES(0.0, -2.0, 0.0, 0.0, 0.0, 0.0, -2.0, 0.0, 1.5,
                               0.0, 0.0, 0.0, 0.0, 1.5, 0.0, 0.0, 0.0, 0.0, 0.0,
                               0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 0.0, 4.0, 0.0,
                               0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
                     TU_TIGHT);
}

static void
test_prod_second_derivative_with_zeros_matches_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    red_case all = {.op = OP_PROD};
    jac_tensor *one = tu_leaf(ctx, TU_SHAPE(4), TU_VALUES(2.0, 0.0, 3.0, -1.5));
    jac_tensor *two = tu_leaf(ctx, TU_SHAPE(4), TU_VALUES(0.0, 2.0, 0.0, 3.0));
    jac_tensor *three =
        tu_leaf(ctx, TU_SHAPE(4), TU_VALUES(0.0, 1.2, 0.0, 0.0));
    check_derivatives(ctx, all, one);
    check_derivatives(ctx, all, two);
    check_derivatives(ctx, all, three);
    jac_tensor *m = tu_leaf(ctx, TU_SHAPE(2, 3, 2),
                            TU_VALUES(1.5, 0.0, -2.0, 0.7, 0.0, 0.0, 4.0, 0.3,
                                      0.0, 1.1, 0.9, -0.6));
    check_derivatives(
        ctx, (red_case){.op = OP_PROD_AXES, .naxes = 2, .axes = {0, 2}}, m);
    check_derivatives(
        ctx,
        (red_case){
            .op = OP_PROD_AXES, .naxes = 1, .axes = {1}, .keepdim = true},
        m);
}

static void test_prod_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    for (int w = 0; w < 4; w++)
        check_derivatives(ctx, (red_case){.op = OP_PROD},
                          shape_input(ctx, w, true));
    check_derivatives(
        ctx, (red_case){.op = OP_PROD_AXES, .naxes = 2, .axes = {1, 2}},
        shape_input(ctx, 3, true));
    check_derivatives(
        ctx,
        (red_case){
            .op = OP_PROD_AXES, .naxes = 1, .axes = {0}, .keepdim = true},
        shape_input(ctx, 2, true));
}

/* ---------------------------------------------------------------------- */
/* max and min                                                             */
/* ---------------------------------------------------------------------- */

static void test_max_and_min_values_match_torch(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = x234(ctx);
    tu_assert_scalar(jac_max(ctx, x), 2.5, TU_EXACT);
    tu_assert_scalar(jac_min(ctx, x), -2.2, TU_EXACT);
    tu_assert_tensor(jac_max_axes(ctx, x, 2, AX02, false), TU_SHAPE(3),
                     TU_VALUES(2.5, 2.1, 2.4), TU_EXACT);
    int one = 1;
    tu_assert_tensor(jac_min_axes(ctx, x, 1, &one, true), TU_SHAPE(2, 1, 4),
                     TU_VALUES(-2.2, -1.2, -0.6, -0.3, -0.5, -0.8, -1.1, -1.4),
                     TU_EXACT);
    tu_assert_scalar(jac_max(ctx, jac_scalar(ctx, -4.0)), -4.0, TU_EXACT);
    tu_assert_no_error(ctx);
}

static void test_max_propagates_nan(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_tensor(ctx, TU_SHAPE(2, 2), TU_VALUES(1.0, NAN, 3, 2));
    int one = 1;
    jac_tensor *m = jac_max_axes(ctx, x, 1, &one, false);
    assert_true(isnan(jac_tensor_data(m)[0]));
    assert_true(jac_tensor_data(m)[1] == 3.0);
    assert_true(isnan(jac_tensor_item(jac_min(ctx, x))));
}

static void test_max_ties_share_the_gradient_evenly(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(3), TU_VALUES(3.0, 3.0, 1.0));
    jac_tensor *g = grad_of(ctx, jac_max(ctx, x), x, 0);
    tu_assert_tensor(g, TU_SHAPE(3), TU_VALUES(0.5, 0.5, 0.0), TU_EXACT);

    jac_tensor *m =
        tu_leaf(ctx, TU_SHAPE(2, 3), TU_VALUES(1.0, 4.0, 4.0, 2.0, 2.0, 2.0));
    int one = 1;
    g = grad_of(ctx, jac_max_axes(ctx, m, 1, &one, false), m, 0);
    tu_assert_tensor(g, TU_SHAPE(2, 3),
                     TU_VALUES(0.0, 0.5, 0.5, 1.0 / 3, 1.0 / 3, 1.0 / 3),
                     TU_TIGHT);
    /* The convention is linear in the cotangent: a second derivative of 0,
     * at ties too. */
    jac_tensor *y = jac_max(ctx, x);
    jac_tensor *gg = grad_of(ctx, y, x, JAC_CREATE_GRAPH);
    jac_tensor *h = jac_jacobian(ctx, gg, x, JAC_ALLOW_UNUSED);
    tu_assert_tensor(h, TU_SHAPE(3, 3), TU_VALUES(0, 0, 0, 0, 0, 0, 0, 0, 0),
                     TU_EXACT);
}

static void test_min_ties_share_the_gradient_evenly(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x =
        tu_leaf(ctx, TU_SHAPE(2, 2), TU_VALUES(-1.0, 5.0, -1.0, 0.0));
    int zero = 0;
    jac_tensor *g = grad_of(ctx, jac_min_axes(ctx, x, 1, &zero, true), x, 0);
    tu_assert_tensor(g, TU_SHAPE(2, 2), TU_VALUES(0.5, 0.0, 0.5, 1.0),
                     TU_EXACT);
    g = grad_of(ctx, jac_min(ctx, x), x, 0);
    tu_assert_tensor(g, TU_SHAPE(2, 2), TU_VALUES(0.5, 0.0, 0.5, 0.0),
                     TU_EXACT);
}

static void test_max_and_min_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    for (int w = 0; w < 4; w++) {
        check_derivatives(ctx, (red_case){.op = OP_MAX},
                          shape_input(ctx, w, true));
        check_derivatives(ctx, (red_case){.op = OP_MIN},
                          shape_input(ctx, w, true));
    }
    check_derivatives(
        ctx,
        (red_case){
            .op = OP_MAX_AXES, .naxes = 2, .axes = {0, 2}, .keepdim = true},
        shape_input(ctx, 3, true));
    check_derivatives(ctx,
                      (red_case){.op = OP_MIN_AXES, .naxes = 1, .axes = {-1}},
                      shape_input(ctx, 3, true));
    check_derivatives(ctx,
                      (red_case){.op = OP_MAX_AXES, .naxes = 1, .axes = {0}},
                      shape_input(ctx, 2, true));
}

static void test_max_of_empty_fails_with_value_error(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *e = jac_zeros(ctx, 2, TU_SHAPE(0, 3));
    assert_error_names(ctx, jac_max(ctx, e), JAC_ERR_VALUE, "max");
    assert_error_names(ctx, jac_min(ctx, e), JAC_ERR_VALUE, "min");
    int zero = 0, one = 1;
    assert_error_names(ctx, jac_max_axes(ctx, e, 1, &zero, false),
                       JAC_ERR_VALUE, "max");
    /* Reducing a non-empty axis of an empty tensor is fine. */
    tu_assert_shape(jac_max_axes(ctx, e, 1, &one, false), TU_SHAPE(0));
    tu_assert_no_error(ctx);
}

/* ---------------------------------------------------------------------- */
/* logsumexp                                                               */
/* ---------------------------------------------------------------------- */

static void test_logsumexp_values_match_torch(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = x234(ctx);
    tu_assert_tensor(
        jac_logsumexp(ctx, x, 2, AX02, false), TU_SHAPE(3),
        TU_VALUES(3.2321917346097733, 3.116715212347274, 3.167663558213759),
        TU_TIGHT);
    tu_assert_scalar(jac_logsumexp(ctx, x, 0, NULL, false), 4.271921012891359,
                     TU_TIGHT);
    tu_assert_no_error(ctx);
}

static void test_logsumexp_is_finite_for_large_inputs(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2, 2),
                            TU_VALUES(1000.0, 1000.5, -1000.0, -1000.5));
    int one = 1;
    jac_tensor *y = jac_logsumexp(ctx, x, 1, &one, true);
    tu_assert_shape(y, TU_SHAPE(2, 1));
    tu_assert_close(jac_tensor_data(y),
                    TU_VALUES(1000.9740769841801, -999.5259230158199), 2, 0.0,
                    1e-15);
    /* The gradient is the softmax of each row, also finite. */
    jac_tensor *g = grad_of(ctx, y, x, 0);
    tu_assert_tensor(g, TU_SHAPE(2, 2),
                     TU_VALUES(0.37754066879814546, 0.6224593312018546,
                               0.6224593312018546, 0.37754066879814546),
                     TU_TIGHT);
    red_case c = {.op = OP_LOGSUMEXP, .naxes = 1, .axes = {1}};
    check_derivatives(ctx, c, x);
}

static void test_logsumexp_handles_infinities_and_empty_as_torch(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_tensor(ctx, TU_SHAPE(2, 2),
                              TU_VALUES(INFINITY, 1.0, -INFINITY, -INFINITY));
    int one = 1;
    tu_assert_tensor(jac_logsumexp(ctx, x, 1, &one, false), TU_SHAPE(2),
                     TU_VALUES(INFINITY, -INFINITY), TU_EXACT);
    tu_assert_scalar(
        jac_logsumexp(ctx, jac_zeros(ctx, 1, TU_SHAPE(0)), 0, NULL, false),
        -INFINITY, TU_EXACT);
    tu_assert_no_error(ctx);
}

static void test_logsumexp_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    for (int w = 0; w < 4; w++)
        check_derivatives(ctx, (red_case){.op = OP_LOGSUMEXP, .all_axes = true},
                          shape_input(ctx, w, true));
    check_derivatives(
        ctx,
        (red_case){
            .op = OP_LOGSUMEXP, .naxes = 2, .axes = {0, 2}, .keepdim = true},
        shape_input(ctx, 3, true));
    check_derivatives(ctx,
                      (red_case){.op = OP_LOGSUMEXP, .naxes = 1, .axes = {0}},
                      shape_input(ctx, 2, true));
}

/* ---------------------------------------------------------------------- */
/* softmax and log_softmax                                                 */
/* ---------------------------------------------------------------------- */

static void test_softmax_and_log_softmax_values_match_torch(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = x234(ctx);
    tu_assert_tensor(
        jac_softmax(ctx, x, 1), TU_SHAPE(2, 3, 4),
        TU_VALUES(0.302331648752014, 0.07495078437320482, 0.707749824843859,
                  0.21331074565219668, 0.6728514582762158, 0.3712336652343301,
                  0.031883565103396086, 0.7082166164414095, 0.02481689297177012,
                  0.5538155503924651, 0.26036661005274503, 0.07847263790639379,
                  0.36517385690776877, 0.3885140187517201, 0.10381908575946423,
                  0.09778124558598762, 0.09005076442430243, 0.5795948085536797,
                  0.5683002137045218, 0.01974169300899117, 0.5447753786679288,
                  0.031891172694600324, 0.3278807005360139, 0.8824770614050211),
        TU_TIGHT);
    tu_assert_tensor(
        jac_log_softmax(ctx, x, -1), TU_SHAPE(2, 3, 4),
        TU_VALUES(-2.462999119100221, -3.962999119100221, -0.262999119100221,
                  -2.062999119100221, -1.3622090641373132, -2.0622090641373134,
                  -3.0622090641373134, -0.5622090641373135, -4.222719244504707,
                  -1.2227192445047068, -0.5227192445047069, -2.322719244504707,
                  -1.3500093286715154, -0.5500093286715153, -3.350009328671515,
                  -2.050009328671515, -2.8833736458355177, -0.2833736458355176,
                  -1.7833736458355176, -3.7833736458355176, -1.484583564918052,
                  -3.5845835649180526, -2.7345835649180525,
                  -0.38458356491805235),
        TU_TIGHT);
    /* Over one element (a rank-0 tensor accepts axis 0 or -1). */
    tu_assert_scalar(jac_softmax(ctx, jac_scalar(ctx, 2.0), 0), 1.0, TU_EXACT);
    tu_assert_scalar(jac_log_softmax(ctx, jac_scalar(ctx, 2.0), -1), 0.0,
                     TU_EXACT);
    tu_assert_no_error(ctx);
}

static void test_softmax_is_finite_for_large_inputs(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x =
        tu_leaf(ctx, TU_SHAPE(3), TU_VALUES(1000.0, 1000.5, -1000.0));
    tu_assert_tensor(jac_softmax(ctx, x, 0), TU_SHAPE(3),
                     TU_VALUES(0.37754066879814546, 0.6224593312018546, 0.0),
                     TU_TIGHT);
    jac_tensor *l = jac_log_softmax(ctx, x, 0);
    tu_assert_shape(l, TU_SHAPE(3));
    tu_assert_close(
        jac_tensor_data(l),
        TU_VALUES(-0.9740769841801067, -0.4740769841801067, -2000.97407698418),
        3, 1e-13, 1e-15);
    check_derivatives(ctx, (red_case){.op = OP_SOFTMAX, .axis = 0}, x);
    check_derivatives(ctx, (red_case){.op = OP_LOG_SOFTMAX, .axis = 0}, x);
}

static void test_softmax_gives_nan_for_inf_as_torch(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(INFINITY, 1.0));
    const double *s = jac_tensor_data(jac_softmax(ctx, x, 0));
    assert_true(isnan(s[0]) && isnan(s[1]));
    const double *l = jac_tensor_data(jac_log_softmax(ctx, x, 0));
    assert_true(isnan(l[0]) && isnan(l[1]));
}

static void
test_softmax_second_derivative_matches_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    for (int w = 0; w < 4; w++) {
        check_derivatives(ctx, (red_case){.op = OP_SOFTMAX, .axis = -1},
                          shape_input(ctx, w, true));
        check_derivatives(ctx, (red_case){.op = OP_LOG_SOFTMAX, .axis = 0},
                          shape_input(ctx, w, true));
    }
    check_derivatives(ctx, (red_case){.op = OP_SOFTMAX, .axis = 1},
                      shape_input(ctx, 3, true));
    check_derivatives(ctx, (red_case){.op = OP_LOG_SOFTMAX, .axis = 1},
                      shape_input(ctx, 3, true));
}

static void
test_softmax_rows_sum_to_one_and_gradient_of_sum_is_zero(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = shape_input(ctx, 2, true);
    jac_tensor *s = jac_softmax(ctx, x, 1);
    int one = 1;
    tu_assert_tensor(jac_sum_axes(ctx, s, 1, &one, false), TU_SHAPE(3),
                     TU_VALUES(1.0, 1.0, 1.0), 1e-15);
    jac_tensor *g = grad_of(ctx, s, x, 0);
    for (int64_t i = 0; i < jac_tensor_numel(g); i++)
        assert_true(fabs(jac_tensor_data(g)[i]) < 1e-14);
}

/* ---------------------------------------------------------------------- */
/* var and std                                                             */
/* ---------------------------------------------------------------------- */

static void test_var_and_std_values_match_torch(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = x234(ctx);
    tu_assert_tensor(
        jac_var(ctx, x, 2, AX02, 1.0, false), TU_SHAPE(3),
        TU_VALUES(1.602857142857143, 1.5285714285714285, 2.138169642857143),
        TU_TIGHT);
    tu_assert_scalar(jac_var(ctx, x, 0, NULL, 0.0, false), 1.5412109374999998,
                     TU_TIGHT);
    int one = 1, two = 2;
    tu_assert_tensor(jac_std(ctx, x, 1, &one, 1.0, true), TU_SHAPE(2, 1, 4),
                     TU_VALUES(1.7214335111567143, 1.0583005244258363,
                               1.5821925715074425, 1.1015141094572203,
                               0.9451631252505217, 1.571623364550171,
                               0.8674675786448737, 1.9078784028338913),
                     TU_TIGHT);
    /* A fractional correction divides by N - correction = 1.5. */
    tu_assert_tensor(jac_var(ctx, x, 1, &two, 2.5, false), TU_SHAPE(2, 3),
                     TU_VALUES(4.631666666666667, 2.253333333333333,
                               5.206666666666668, 2.818333333333334,
                               4.546666666666667, 3.9445833333333327),
                     TU_TIGHT);
    tu_assert_tensor(jac_std(ctx, x, 1, &two, 2.5, false), TU_SHAPE(2, 3),
                     TU_VALUES(2.152130727132222, 1.5011106998930268,
                               2.281812145349978, 1.6787892462525884,
                               2.1322914122292635, 1.9860975135509669),
                     TU_TIGHT);
    tu_assert_no_error(ctx);
}

static void test_var_without_degrees_of_freedom_gives_inf_or_nan(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x12 = tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(1.0, 2.0));
    jac_tensor *x11 = tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(1.0, 1.0));
    jac_tensor *x1 = tu_tensor(ctx, TU_SHAPE(1), TU_VALUES(1.0));
    /* As torch: the divisor is max(0, N - correction). */
    tu_assert_scalar(jac_var(ctx, x12, 0, NULL, 2.0, false), INFINITY,
                     TU_EXACT);
    tu_assert_scalar(jac_var(ctx, x12, 0, NULL, 3.0, false), INFINITY,
                     TU_EXACT);
    assert_true(isnan(jac_tensor_item(jac_var(ctx, x11, 0, NULL, 2.0, false))));
    assert_true(isnan(jac_tensor_item(jac_var(ctx, x1, 0, NULL, 1.0, false))));
    assert_true(isnan(jac_tensor_item(jac_std(ctx, x1, 0, NULL, 1.0, false))));
    assert_true(isnan(jac_tensor_item(
        jac_var(ctx, jac_zeros(ctx, 1, TU_SHAPE(0)), 0, NULL, 0.0, false))));
    tu_assert_no_error(ctx);
}

static void test_std_gradient_of_constant_is_nan_as_torch(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1.0, 1.0));
    jac_tensor *y = jac_std(ctx, x, 0, NULL, 0.0, false);
    tu_assert_scalar(y, 0.0, TU_EXACT);
    jac_tensor *g = grad_of(ctx, y, x, 0);
    assert_true(isnan(jac_tensor_data(g)[0]) && isnan(jac_tensor_data(g)[1]));
}

static void test_var_and_std_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    /* Rank 0 with correction 0: the variance is identically 0. */
    check_derivatives(ctx, (red_case){.op = OP_VAR, .all_axes = true},
                      shape_input(ctx, 0, true));
    for (int w = 1; w < 4; w++) {
        check_derivatives(
            ctx, (red_case){.op = OP_VAR, .all_axes = true, .correction = 1},
            shape_input(ctx, w, true));
        check_derivatives(
            ctx, (red_case){.op = OP_STD, .all_axes = true, .correction = 0},
            shape_input(ctx, w, true));
    }
    check_derivatives(ctx,
                      (red_case){.op = OP_VAR,
                                 .naxes = 2,
                                 .axes = {0, 2},
                                 .correction = 1,
                                 .keepdim = true},
                      shape_input(ctx, 3, true));
    check_derivatives(
        ctx,
        (red_case){.op = OP_STD, .naxes = 1, .axes = {-1}, .correction = 2.5},
        shape_input(ctx, 3, true));
    check_derivatives(ctx,
                      (red_case){.op = OP_STD,
                                 .naxes = 1,
                                 .axes = {0},
                                 .correction = 1,
                                 .keepdim = true},
                      shape_input(ctx, 2, true));
}

/* ---------------------------------------------------------------------- */
/* norm                                                                    */
/* ---------------------------------------------------------------------- */

static void test_norm_values_match_torch(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = x234(ctx);
    static const int ax12[] = {1, 2};
    tu_assert_tensor(jac_norm(ctx, x, 1.0, 2, ax12, false), TU_SHAPE(2),
                     TU_VALUES(13.500000000000004, 13.050000000000002),
                     TU_TIGHT);
    tu_assert_tensor(jac_norm(ctx, x, 2.0, 2, ax12, false), TU_SHAPE(2),
                     TU_VALUES(4.629254799641083, 4.474650824366075), TU_TIGHT);
    tu_assert_tensor(jac_norm(ctx, x, INFINITY, 2, ax12, false), TU_SHAPE(2),
                     TU_VALUES(2.5, 2.4), TU_EXACT);
    tu_assert_scalar(jac_norm(ctx, x, 1.0, 0, NULL, false), 26.550000000000008,
                     TU_TIGHT);
    tu_assert_scalar(jac_norm(ctx, x, 2.0, 0, NULL, false), 6.43836159282779,
                     TU_TIGHT);
    int zero = 0;
    tu_assert_tensor(
        jac_norm(ctx, x, INFINITY, 1, &zero, true), TU_SHAPE(1, 3, 4),
        TU_VALUES(0.9, 1.7, 2.5, 0.7, 1.1, 2.1, 0.6, 1.9, 2.2, 0.8, 1.5, 2.4),
        TU_EXACT);
    tu_assert_no_error(ctx);
}

static void test_norm2_does_not_overflow_or_underflow(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *big = tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(3e200, -4e200));
    tu_assert_close(jac_tensor_data(jac_norm(ctx, big, 2.0, 0, NULL, false)),
                    TU_VALUES(5e200), 1, 0.0, 1e-15);
    jac_tensor *tiny = tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(3e-200, 4e-200));
    tu_assert_close(jac_tensor_data(jac_norm(ctx, tiny, 2.0, 0, NULL, false)),
                    TU_VALUES(5e-200), 1, 0.0, 1e-15);
    jac_tensor *inf = tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(1.0, -INFINITY));
    tu_assert_scalar(jac_norm(ctx, inf, 2.0, 0, NULL, false), INFINITY,
                     TU_EXACT);
    jac_tensor *nan = tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(NAN, INFINITY));
    assert_true(
        isnan(jac_tensor_item(jac_norm(ctx, nan, 2.0, 0, NULL, false))));
    assert_true(
        isnan(jac_tensor_item(jac_norm(ctx, nan, 1.0, 0, NULL, false))));
    assert_true(
        isnan(jac_tensor_item(jac_norm(ctx, nan, INFINITY, 0, NULL, false))));
    tu_assert_no_error(ctx);
}

static void test_norm_gradients_at_kinks_follow_the_conventions(void **state)
{
    jac_ctx *ctx = *state;
    /* 2-norm: 0 at the zero vector, a / |a| elsewhere (row by row). */
    jac_tensor *z = tu_leaf(ctx, TU_SHAPE(2, 2), TU_VALUES(0.0, 0.0, 3.0, 4.0));
    int one = 1;
    jac_tensor *g = grad_of(ctx, jac_norm(ctx, z, 2.0, 1, &one, false), z, 0);
    tu_assert_tensor(g, TU_SHAPE(2, 2), TU_VALUES(0.0, 0.0, 0.6, 0.8),
                     TU_TIGHT);
    /* 1-norm: sign(a), 0 at 0. */
    jac_tensor *a = tu_leaf(ctx, TU_SHAPE(3), TU_VALUES(0.0, 1.0, -2.0));
    g = grad_of(ctx, jac_norm(ctx, a, 1.0, 0, NULL, false), a, 0);
    tu_assert_tensor(g, TU_SHAPE(3), TU_VALUES(0.0, 1.0, -1.0), TU_EXACT);
    /* inf-norm: tied |a| split the gradient, with a's sign. */
    jac_tensor *t = tu_leaf(ctx, TU_SHAPE(3), TU_VALUES(2.0, -2.0, 1.0));
    g = grad_of(ctx, jac_norm(ctx, t, INFINITY, 0, NULL, false), t, 0);
    tu_assert_tensor(g, TU_SHAPE(3), TU_VALUES(0.5, -0.5, 0.0), TU_EXACT);
    jac_tensor *zz = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(0.0, 0.0));
    g = grad_of(ctx, jac_norm(ctx, zz, INFINITY, 0, NULL, false), zz, 0);
    tu_assert_tensor(g, TU_SHAPE(2), TU_VALUES(0.0, 0.0), TU_EXACT);
}

static void test_norm_of_empty_is_zero_except_inf_norm(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *e = jac_zeros(ctx, 1, TU_SHAPE(0));
    tu_assert_scalar(jac_norm(ctx, e, 2.0, 0, NULL, false), 0.0, TU_EXACT);
    tu_assert_scalar(jac_norm(ctx, e, 1.0, 0, NULL, false), 0.0, TU_EXACT);
    assert_error_names(ctx, jac_norm(ctx, e, INFINITY, 0, NULL, false),
                       JAC_ERR_VALUE, "norm");
}

static void test_norm_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    static const double ps[] = {1.0, 2.0, INFINITY};
    for (int k = 0; k < 3; k++) {
        for (int w = 0; w < 4; w++)
            check_derivatives(
                ctx, (red_case){.op = OP_NORM, .all_axes = true, .p = ps[k]},
                shape_input(ctx, w, true));
        check_derivatives(ctx,
                          (red_case){.op = OP_NORM,
                                     .p = ps[k],
                                     .naxes = 2,
                                     .axes = {0, 2},
                                     .keepdim = true},
                          shape_input(ctx, 3, true));
        check_derivatives(
            ctx, (red_case){.op = OP_NORM, .p = ps[k], .naxes = 1, .axes = {1}},
            shape_input(ctx, 2, true));
    }
}

/* ---------------------------------------------------------------------- */
/* Jacobian drivers                                                        */
/* ---------------------------------------------------------------------- */

/* The rules run unchanged in reverse mode row by row, in forward mode (the
 * double-backward trick differentiates each rule in its cotangent) and in
 * the worker contexts of a threaded Jacobian. */
static void
test_reduction_jacobians_agree_across_modes_and_threads(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(3, 4),
                            TU_VALUES(1.5, 0.0, -2.0, 0.7, 0.0, 0.0, 4.0, 0.3,
                                      -0.4, 1.1, 0.9, -0.6));
    const red_case cases[] = {
        {.op = OP_PROD_AXES, .naxes = 1, .axes = {1}},
        {.op = OP_PROD_AXES, .naxes = 1, .axes = {0}, .keepdim = true},
        {.op = OP_MAX_AXES, .naxes = 1, .axes = {1}},
        {.op = OP_MIN_AXES, .naxes = 1, .axes = {0}},
        {.op = OP_NORM, .p = 2.0, .naxes = 1, .axes = {1}},
        {.op = OP_NORM, .p = 1.0, .naxes = 1, .axes = {0}},
        {.op = OP_LOGSUMEXP, .naxes = 1, .axes = {1}},
        {.op = OP_VAR, .naxes = 1, .axes = {1}, .correction = 1.0},
        {.op = OP_SOFTMAX, .axis = 1},
        {.op = OP_LOG_SOFTMAX, .axis = 0},
    };
    /* Zeros (two in a group) for prod; no ties or zeros for the rest. */
    jac_tensor *smooth = signed_leaf(ctx, TU_SHAPE(3, 4), 0.3);
    for (size_t k = 0; k < TU_COUNT(cases); k++) {
        red_case c = cases[k];
        if (c.op != OP_PROD_AXES)
            x = smooth;
        c.then_sin = true;
        jac_tensor *y = NULL;
        tu_assert_ok(ctx, run_case(ctx, &x, &y, &c));
        jac_jacobian_opts rev = {.chunk = 1, .mode = JAC_MODE_REVERSE};
        jac_jacobian_opts fwd = {.chunk = 1, .mode = JAC_MODE_FORWARD};
        jac_jacobian_opts blk = {.chunk = 0, .mode = JAC_MODE_REVERSE};
        jac_tensor *jr = NULL, *jf = NULL, *jb = NULL, *jt = NULL;
        tu_assert_ok(ctx, jac_jacobian_ex(ctx, 1, &y, 1, &x, &rev, &jr));
        tu_assert_ok(ctx, jac_jacobian_ex(ctx, 1, &y, 1, &x, &fwd, &jf));
        tu_assert_ok(ctx, jac_jacobian_ex(ctx, 1, &y, 1, &x, &blk, &jb));
        tu_assert_ok(ctx, jac_ctx_set_threads(ctx, 2));
        tu_assert_ok(ctx, jac_jacobian_ex(ctx, 1, &y, 1, &x, &rev, &jt));
        tu_assert_ok(ctx, jac_ctx_set_threads(ctx, 1));
        size_t n = (size_t)jac_tensor_numel(jr);
        assert_true(n > 0);
        tu_assert_close(jac_tensor_data(jf), jac_tensor_data(jr), n, 1e-13,
                        1e-13);
        tu_assert_close(jac_tensor_data(jb), jac_tensor_data(jr), n, 1e-13,
                        1e-13);
        tu_assert_close(jac_tensor_data(jt), jac_tensor_data(jr), n, 0.0, 0.0);
        /* And the reference algorithm against finite differences. */
        tu_assert_jacobian_matches_fd(ctx, run_case, &c, 1, &x, 1, 0, 0);
    }
}

/* ---------------------------------------------------------------------- */
/* Errors                                                                  */
/* ---------------------------------------------------------------------- */

static void test_bad_axes_fail_naming_the_op(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = x234(ctx);
    int three = 3, minus4 = -4, rep[] = {1, -2};
    assert_error_names(ctx, jac_mean_axes(ctx, x, 1, &three, false),
                       JAC_ERR_AXIS, "mean");
    assert_error_names(ctx, jac_prod_axes(ctx, x, 2, rep, false), JAC_ERR_AXIS,
                       "prod");
    assert_error_names(ctx, jac_max_axes(ctx, x, 1, &minus4, false),
                       JAC_ERR_AXIS, "max");
    assert_error_names(ctx, jac_min_axes(ctx, x, 1, &three, true), JAC_ERR_AXIS,
                       "min");
    assert_error_names(ctx, jac_logsumexp(ctx, x, 1, &three, false),
                       JAC_ERR_AXIS, "logsumexp");
    assert_error_names(ctx, jac_var(ctx, x, 2, rep, 1.0, false), JAC_ERR_AXIS,
                       "var");
    assert_error_names(ctx, jac_std(ctx, x, 1, &minus4, 1.0, false),
                       JAC_ERR_AXIS, "std");
    assert_error_names(ctx, jac_norm(ctx, x, 2.0, 1, &three, false),
                       JAC_ERR_AXIS, "norm");
    assert_error_names(ctx, jac_softmax(ctx, x, 3), JAC_ERR_AXIS, "softmax");
    assert_error_names(ctx, jac_log_softmax(ctx, x, -4), JAC_ERR_AXIS,
                       "log_softmax");
    assert_error_names(ctx, jac_softmax(ctx, jac_scalar(ctx, 1.0), 1),
                       JAC_ERR_AXIS, "softmax");
    assert_error_names(ctx, jac_mean_axes(ctx, x, -1, &three, false),
                       JAC_ERR_VALUE, "mean");
}

static void test_bad_values_fail_naming_the_op(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = x234(ctx);
    assert_error_names(ctx, jac_norm(ctx, x, 3.0, 0, NULL, false),
                       JAC_ERR_VALUE, "norm");
    assert_error_names(ctx, jac_norm(ctx, x, NAN, 0, NULL, false),
                       JAC_ERR_VALUE, "norm");
    assert_error_names(ctx, jac_norm(ctx, x, -INFINITY, 0, NULL, false),
                       JAC_ERR_VALUE, "norm");
    assert_error_names(ctx, jac_var(ctx, x, 0, NULL, NAN, false), JAC_ERR_VALUE,
                       "var");
    assert_error_names(ctx, jac_std(ctx, x, 0, NULL, INFINITY, false),
                       JAC_ERR_VALUE, "std");
}

/* ---------------------------------------------------------------------- */
/* cumsum                                                                  */
/* ---------------------------------------------------------------------- */

static void test_cumsum_values_are_running_sums(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_tensor(ctx, TU_SHAPE(2, 3), TU_VALUES(1, 2, 3, 4, 5, 6));
    tu_assert_tensor(jac_cumsum(ctx, x, 1), TU_SHAPE(2, 3),
                     TU_VALUES(1, 3, 6, 4, 9, 15), TU_EXACT);
    tu_assert_tensor(jac_cumsum(ctx, x, -2), TU_SHAPE(2, 3),
                     TU_VALUES(1, 2, 3, 5, 7, 9), TU_EXACT);
    tu_assert_scalar(jac_cumsum(ctx, jac_scalar(ctx, 2.5), -1), 2.5, TU_EXACT);
    jac_tensor *empty = jac_zeros(ctx, 2, TU_SHAPE(0, 3));
    tu_assert_shape(jac_cumsum(ctx, empty, 1), TU_SHAPE(0, 3));
    assert_error_names(ctx, jac_cumsum(ctx, x, 2), JAC_ERR_AXIS, "cumsum");
}

/* d/dx_j of sum_i w_i cumsum(x)_i is the sum of w from j to the end, and
 * the second derivative is exactly zero. */
static void test_cumsum_gradient_is_the_running_sum_from_the_end(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(4), TU_VALUES(0.5, -1, 2, 3));
    jac_tensor *w = tu_tensor(ctx, TU_SHAPE(4), TU_VALUES(1, 10, 100, 1000));
    jac_tensor *y = jac_sum(ctx, jac_mul(ctx, jac_cumsum(ctx, x, 0), w));
    jac_tensor *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 1, &x, JAC_CREATE_GRAPH, &g));
    tu_assert_tensor(g, TU_SHAPE(4), TU_VALUES(1111, 1110, 1100, 1000),
                     TU_EXACT);
    jac_tensor *h = jac_jacobian(ctx, g, x, JAC_ALLOW_UNUSED);
    assert_non_null(h);
    for (int64_t i = 0; i < 16; i++)
        assert_true(jac_tensor_data(h)[i] == 0.0);
}

/* log_softmax over an axis of extent 1 is identically 0: its own rule
 * keeps every derivative exactly 0 (the composite a - logsumexp(a) gave a
 * third derivative of 2e22 here). */
static void
test_log_softmax_over_one_element_is_flat_to_third_order(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(3, 1), TU_VALUES(-1.7, 0.4, 37.5));
    jac_tensor *y =
        jac_sum(ctx, jac_mul_scalar(ctx, jac_log_softmax(ctx, x, 1), 0.9));
    tu_assert_scalar(y, 0.0, TU_EXACT);
    jac_tensor *d = y;
    for (int order = 1; order <= 3; order++) {
        jac_tensor *g = NULL;
        tu_assert_ok(ctx, jac_grad(ctx, 1, &d, NULL, 1, &x,
                                   JAC_CREATE_GRAPH | JAC_ALLOW_UNUSED, &g));
        tu_assert_tensor(g, TU_SHAPE(3, 1), TU_VALUES(0, 0, 0), TU_EXACT);
        d = jac_sum(ctx, jac_mul(ctx, g, jac_sin(ctx, x)));
    }
    /* softmax there is identically 1, with zero derivatives too. */
    jac_tensor *s = jac_sum(ctx, jac_softmax(ctx, x, -1)), *gs = NULL;
    tu_assert_scalar(s, 3.0, TU_EXACT);
    tu_assert_ok(ctx, jac_grad(ctx, 1, &s, NULL, 1, &x, 0, &gs));
    tu_assert_tensor(gs, TU_SHAPE(3, 1), TU_VALUES(0, 0, 0), TU_EXACT);
}

static void test_null_input_returns_null_and_keeps_the_first_error(void **state)
{
    jac_ctx *ctx = *state;
    assert_null(jac_mean(ctx, NULL));
    tu_assert_error(ctx, JAC_ERR_NULL_ARG);
    tu_assert_contains(jac_errmsg(ctx), "mean");
    /* Later ops on the NULL add nothing. */
    assert_null(jac_prod(ctx, NULL));
    assert_null(jac_softmax(ctx, NULL, 0));
    assert_null(jac_norm(ctx, NULL, 2.0, 0, NULL, false));
    tu_assert_contains(jac_errmsg(ctx), "mean");
    jac_clear_error(ctx);
    assert_null(jac_logsumexp(ctx, NULL, 0, NULL, false));
    tu_assert_contains(jac_errmsg(ctx), "logsumexp");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_cumsum_values_are_running_sums),
        TU_TEST(test_cumsum_gradient_is_the_running_sum_from_the_end),
        TU_TEST(test_mean_values_match_torch),
        TU_TEST(test_mean_of_empty_is_nan_and_of_scalar_is_itself),
        TU_TEST(test_mean_derivatives_match_finite_difference),
        TU_TEST(test_prod_values_match_torch),
        TU_TEST(test_prod_derivatives_are_exact_with_one_zero),
        TU_TEST(test_prod_derivatives_are_exact_with_two_zeros),
        TU_TEST(test_prod_third_derivative_is_exact_with_three_zeros),
        TU_TEST(test_prod_over_axis_with_zeros_matches_torch_hessian),
        TU_TEST(
            test_prod_second_derivative_with_zeros_matches_finite_difference),
        TU_TEST(test_prod_derivatives_match_finite_difference),
        TU_TEST(test_max_and_min_values_match_torch),
        TU_TEST(test_max_propagates_nan),
        TU_TEST(test_max_ties_share_the_gradient_evenly),
        TU_TEST(test_min_ties_share_the_gradient_evenly),
        TU_TEST(test_max_and_min_derivatives_match_finite_difference),
        TU_TEST(test_max_of_empty_fails_with_value_error),
        TU_TEST(test_logsumexp_values_match_torch),
        TU_TEST(test_logsumexp_is_finite_for_large_inputs),
        TU_TEST(test_logsumexp_handles_infinities_and_empty_as_torch),
        TU_TEST(test_logsumexp_derivatives_match_finite_difference),
        TU_TEST(test_softmax_and_log_softmax_values_match_torch),
        TU_TEST(test_log_softmax_over_one_element_is_flat_to_third_order),
        TU_TEST(test_softmax_is_finite_for_large_inputs),
        TU_TEST(test_softmax_gives_nan_for_inf_as_torch),
        TU_TEST(test_softmax_second_derivative_matches_finite_difference),
        TU_TEST(test_softmax_rows_sum_to_one_and_gradient_of_sum_is_zero),
        TU_TEST(test_var_and_std_values_match_torch),
        TU_TEST(test_var_without_degrees_of_freedom_gives_inf_or_nan),
        TU_TEST(test_std_gradient_of_constant_is_nan_as_torch),
        TU_TEST(test_var_and_std_derivatives_match_finite_difference),
        TU_TEST(test_norm_values_match_torch),
        TU_TEST(test_norm2_does_not_overflow_or_underflow),
        TU_TEST(test_norm_gradients_at_kinks_follow_the_conventions),
        TU_TEST(test_norm_of_empty_is_zero_except_inf_norm),
        TU_TEST(test_norm_derivatives_match_finite_difference),
        TU_TEST(test_reduction_jacobians_agree_across_modes_and_threads),
        TU_TEST(test_bad_axes_fail_naming_the_op),
        TU_TEST(test_bad_values_fail_naming_the_op),
        TU_TEST(test_null_input_returns_null_and_keeps_the_first_error),
    };
    return cmocka_run_group_tests_name("ops_reduce", tests, NULL, NULL);
}
