/*
 * Ops: every op of the header, its values against numbers worked out by
 * hand, and its first and second derivatives against finite differences at
 * several shapes (rank 0, broadcasting, non-square).
 *
 * Each derivative check runs twice: on the op alone, and on sin(op(...)).
 * For a linear op the second derivative of the op alone is zero; the sin
 * makes the gradient depend on the inputs through the op's own backward
 * rule, so that rule's derivative (the double backward) is checked too.
 *
 * SPDX-License-Identifier: MIT
 */
#include "batchcheck.h"

/* ---------------------------------------------------------------------- */
/* One op with its parameters, as a jac_fn                                 */
/* ---------------------------------------------------------------------- */

typedef struct op_case op_case;
typedef jac_tensor *(*apply_fn)(jac_ctx *ctx, jac_tensor *const *in,
                                const op_case *c);

struct op_case {
    apply_fn apply;
    double c;     /* scalar operand or exponent */
    int axis;     /* sum_axis, transpose (first), slice, concat */
    int axis1;    /* transpose (second) */
    bool keepdim; /* sum_axis, sum_axes */
    int naxes;    /* sum_axes */
    int axes[JAC_MAX_DIMS];
    int ndim; /* sum_to_shape, expand, reshape */
    int64_t shape[JAC_MAX_DIMS];
    int64_t start; /* slice */
    int64_t stop;
    int64_t step;
    size_t n;      /* concat: number of inputs */
    bool then_sin; /* apply sin to the result */
};

static jac_status run_case(jac_ctx *ctx, jac_tensor *const *in,
                           jac_tensor **out, void *user)
{
    const op_case *c = user;
    jac_tensor *y = c->apply(ctx, in, c);
    if (c->then_sin) {
        y = jac_sin(ctx, y);
    }
    out[0] = y;
    if (y == NULL) {
        return jac_errcode(ctx) != JAC_OK ? jac_errcode(ctx) : JAC_ERR_STATE;
    }
    return JAC_OK;
}

static jac_tensor *apply_add(jac_ctx *ctx, jac_tensor *const *in,
                             const op_case *c)
{
    (void)c;
    return jac_add(ctx, in[0], in[1]);
}
static jac_tensor *apply_sub(jac_ctx *ctx, jac_tensor *const *in,
                             const op_case *c)
{
    (void)c;
    return jac_sub(ctx, in[0], in[1]);
}
static jac_tensor *apply_mul(jac_ctx *ctx, jac_tensor *const *in,
                             const op_case *c)
{
    (void)c;
    return jac_mul(ctx, in[0], in[1]);
}
static jac_tensor *apply_div(jac_ctx *ctx, jac_tensor *const *in,
                             const op_case *c)
{
    (void)c;
    return jac_div(ctx, in[0], in[1]);
}
static jac_tensor *apply_add_scalar(jac_ctx *ctx, jac_tensor *const *in,
                                    const op_case *c)
{
    return jac_add_scalar(ctx, in[0], c->c);
}
static jac_tensor *apply_sub_scalar(jac_ctx *ctx, jac_tensor *const *in,
                                    const op_case *c)
{
    return jac_sub_scalar(ctx, in[0], c->c);
}
static jac_tensor *apply_mul_scalar(jac_ctx *ctx, jac_tensor *const *in,
                                    const op_case *c)
{
    return jac_mul_scalar(ctx, in[0], c->c);
}
static jac_tensor *apply_div_scalar(jac_ctx *ctx, jac_tensor *const *in,
                                    const op_case *c)
{
    return jac_div_scalar(ctx, in[0], c->c);
}
static jac_tensor *apply_rsub_scalar(jac_ctx *ctx, jac_tensor *const *in,
                                     const op_case *c)
{
    return jac_rsub_scalar(ctx, c->c, in[0]);
}
static jac_tensor *apply_pow_scalar(jac_ctx *ctx, jac_tensor *const *in,
                                    const op_case *c)
{
    return jac_pow_scalar(ctx, in[0], c->c);
}
static jac_tensor *apply_neg(jac_ctx *ctx, jac_tensor *const *in,
                             const op_case *c)
{
    (void)c;
    return jac_neg(ctx, in[0]);
}
static jac_tensor *apply_exp(jac_ctx *ctx, jac_tensor *const *in,
                             const op_case *c)
{
    (void)c;
    return jac_exp(ctx, in[0]);
}
static jac_tensor *apply_log(jac_ctx *ctx, jac_tensor *const *in,
                             const op_case *c)
{
    (void)c;
    return jac_log(ctx, in[0]);
}
static jac_tensor *apply_sin(jac_ctx *ctx, jac_tensor *const *in,
                             const op_case *c)
{
    (void)c;
    return jac_sin(ctx, in[0]);
}
static jac_tensor *apply_cos(jac_ctx *ctx, jac_tensor *const *in,
                             const op_case *c)
{
    (void)c;
    return jac_cos(ctx, in[0]);
}
static jac_tensor *apply_tanh(jac_ctx *ctx, jac_tensor *const *in,
                              const op_case *c)
{
    (void)c;
    return jac_tanh(ctx, in[0]);
}
static jac_tensor *apply_sum(jac_ctx *ctx, jac_tensor *const *in,
                             const op_case *c)
{
    (void)c;
    return jac_sum(ctx, in[0]);
}
static jac_tensor *apply_sum_axis(jac_ctx *ctx, jac_tensor *const *in,
                                  const op_case *c)
{
    return jac_sum_axis(ctx, in[0], c->axis, c->keepdim);
}
static jac_tensor *apply_sum_axes(jac_ctx *ctx, jac_tensor *const *in,
                                  const op_case *c)
{
    return jac_sum_axes(ctx, in[0], c->naxes, c->axes, c->keepdim);
}
static jac_tensor *apply_sum_to_shape(jac_ctx *ctx, jac_tensor *const *in,
                                      const op_case *c)
{
    return jac_sum_to_shape(ctx, in[0], c->ndim, c->shape);
}
static jac_tensor *apply_expand(jac_ctx *ctx, jac_tensor *const *in,
                                const op_case *c)
{
    return jac_expand(ctx, in[0], c->ndim, c->shape);
}
static jac_tensor *apply_matmul(jac_ctx *ctx, jac_tensor *const *in,
                                const op_case *c)
{
    (void)c;
    return jac_matmul(ctx, in[0], in[1]);
}
static jac_tensor *apply_transpose(jac_ctx *ctx, jac_tensor *const *in,
                                   const op_case *c)
{
    return jac_transpose(ctx, in[0], c->axis, c->axis1);
}
static jac_tensor *apply_reshape(jac_ctx *ctx, jac_tensor *const *in,
                                 const op_case *c)
{
    return jac_reshape(ctx, in[0], c->ndim, c->shape);
}
static jac_tensor *apply_slice(jac_ctx *ctx, jac_tensor *const *in,
                               const op_case *c)
{
    return jac_slice(ctx, in[0], c->axis, c->start, c->stop, c->step);
}
static jac_tensor *apply_concat(jac_ctx *ctx, jac_tensor *const *in,
                                const op_case *c)
{
    return jac_concat(ctx, c->n, in, c->axis);
}

/*
 * Checks first and second derivatives of the op, then of sin(op), at the
 * given inputs (which require gradients), against finite differences.
 */
static void check_op_at(jac_ctx *ctx, op_case c, size_t ninputs,
                        jac_tensor *const *inputs, const char *file, int line)
{
    c.then_sin = false;
    tu_gradcheck_at(ctx, run_case, &c, ninputs, inputs, 1, file, line);
    tu_gradgradcheck_at(ctx, run_case, &c, ninputs, inputs, 1, file, line);
    c.then_sin = true;
    tu_gradcheck_at(ctx, run_case, &c, ninputs, inputs, 1, file, line);
    tu_gradgradcheck_at(ctx, run_case, &c, ninputs, inputs, 1, file, line);
    /* Blocks of seeds, every driver mode and thread count, and the fused
     * kernels of unrecorded passes all agree with the row loop's rules. */
    tu_assert_batched_matches_rows_at(ctx, run_case, &c, ninputs, inputs, 1, 0u,
                                      file, line);
    tu_assert_batched_matches_rows_at(ctx, run_case, &c, ninputs, inputs, 1,
                                      JAC_CREATE_GRAPH, file, line);
    tu_assert_modes_agree_at(ctx, run_case, &c, ninputs, inputs, 1, file, line);
    tu_assert_fused_matches_rules_at(ctx, run_case, &c, ninputs, inputs, 1,
                                     file, line);
}
#define check_op(ctx, c, ninputs, inputs)                                      \
    check_op_at((ctx), (c), (ninputs), (inputs), __FILE__, __LINE__)

/* Two smooth leaves of the given shapes, then check_op on the pair. */
static void check_binary_at(jac_ctx *ctx, apply_fn apply, int ndim_a,
                            const int64_t *shape_a, int ndim_b,
                            const int64_t *shape_b, const char *file, int line)
{
    jac_tensor *in[2] = {
        tu_smooth_leaf_at(ctx, ndim_a, shape_a, 0.1, file, line),
        tu_smooth_leaf_at(ctx, ndim_b, shape_b, 1.3, file, line),
    };
    op_case c = {.apply = apply};
    check_op_at(ctx, c, 2, in, file, line);
}
#define check_binary(ctx, apply, shape_a, shape_b)                             \
    check_binary_at((ctx), (apply), (int)TU_COUNT(shape_a), (shape_a),         \
                    (int)TU_COUNT(shape_b), (shape_b), __FILE__, __LINE__)
#define check_binary_scalar_left(ctx, apply, shape_b)                          \
    check_binary_at((ctx), (apply), 0, NULL, (int)TU_COUNT(shape_b),           \
                    (shape_b), __FILE__, __LINE__)
#define check_binary_scalar_right(ctx, apply, shape_a)                         \
    check_binary_at((ctx), (apply), (int)TU_COUNT(shape_a), (shape_a), 0,      \
                    NULL, __FILE__, __LINE__)

/* The broadcasting cases every binary op is checked at. */
static void check_binary_at_all_shapes(jac_ctx *ctx, apply_fn apply)
{
    check_binary(ctx, apply, TU_SHAPE(2, 3), TU_SHAPE(2, 3));
    check_binary(ctx, apply, TU_SHAPE(2, 3), TU_SHAPE(3));
    check_binary(ctx, apply, TU_SHAPE(3), TU_SHAPE(2, 3));
    check_binary(ctx, apply, TU_SHAPE(2, 1), TU_SHAPE(1, 3));
    check_binary(ctx, apply, TU_SHAPE(2, 1, 3), TU_SHAPE(4, 1));
    check_binary_scalar_left(ctx, apply, TU_SHAPE(2, 3));
    check_binary_scalar_right(ctx, apply, TU_SHAPE(3, 2));
    check_binary_at(ctx, apply, 0, NULL, 0, NULL, __FILE__, __LINE__);
}

/* One smooth leaf of the given shape, then check_op on it. */
static void check_unary_at(jac_ctx *ctx, op_case c, int ndim,
                           const int64_t *shape, const char *file, int line)
{
    jac_tensor *x = tu_smooth_leaf_at(ctx, ndim, shape, 0.4, file, line);
    check_op_at(ctx, c, 1, &x, file, line);
}
#define check_unary(ctx, c, shape)                                             \
    check_unary_at((ctx), (c), (int)TU_COUNT(shape), (shape), __FILE__,        \
                   __LINE__)
#define check_unary_rank0(ctx, c)                                              \
    check_unary_at((ctx), (c), 0, NULL, __FILE__, __LINE__)

/* Elementwise ops are checked at rank 0 to 3. */
static void check_elementwise_at_all_shapes(jac_ctx *ctx, op_case c)
{
    check_unary_rank0(ctx, c);
    check_unary(ctx, c, TU_SHAPE(3));
    check_unary(ctx, c, TU_SHAPE(2, 3));
    check_unary(ctx, c, TU_SHAPE(2, 1, 3));
}

/* The value of a one-output case, in no-grad mode. */
static jac_tensor *value_of(jac_ctx *ctx, op_case c, jac_tensor *const *in)
{
    jac_tensor *y = NULL;
    assert_int_equal(run_case(ctx, in, &y, &c), JAC_OK);
    return y;
}

/* ---------------------------------------------------------------------- */
/* Binary elementwise ops                                                  */
/* ---------------------------------------------------------------------- */

static void test_add_broadcasts_as_numpy(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *m = tu_tensor(ctx, TU_SHAPE(2, 3), TU_VALUES(1, 2, 3, 4, 5, 6));
    jac_tensor *r = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(10, 20, 30));
    tu_assert_tensor(jac_add(ctx, m, r), TU_SHAPE(2, 3),
                     TU_VALUES(11, 22, 33, 14, 25, 36), 0.0);
    tu_assert_tensor(jac_add(ctx, r, m), TU_SHAPE(2, 3),
                     TU_VALUES(11, 22, 33, 14, 25, 36), 0.0);
    jac_tensor *col = tu_tensor(ctx, TU_SHAPE(2, 1), TU_VALUES(1, 2));
    jac_tensor *row = tu_tensor(ctx, TU_SHAPE(1, 3), TU_VALUES(10, 20, 30));
    tu_assert_tensor(jac_add(ctx, col, row), TU_SHAPE(2, 3),
                     TU_VALUES(11, 21, 31, 12, 22, 32), 0.0);
    tu_assert_tensor(jac_add(ctx, jac_scalar(ctx, 0.5), m), TU_SHAPE(2, 3),
                     TU_VALUES(1.5, 2.5, 3.5, 4.5, 5.5, 6.5), 0.0);
    tu_assert_scalar(jac_add(ctx, jac_scalar(ctx, 2), jac_scalar(ctx, 3)), 5,
                     0.0);
    /* (2, 1, 3) + (4, 1) -> (2, 4, 3) */
    jac_tensor *a =
        tu_tensor(ctx, TU_SHAPE(2, 1, 3), TU_VALUES(0, 1, 2, 3, 4, 5));
    jac_tensor *b = tu_tensor(ctx, TU_SHAPE(4, 1), TU_VALUES(0, 10, 20, 30));
    tu_assert_tensor(jac_add(ctx, a, b), TU_SHAPE(2, 4, 3),
                     TU_VALUES(0, 1, 2, 10, 11, 12, 20, 21, 22, 30, 31, 32, 3,
                               4, 5, 13, 14, 15, 23, 24, 25, 33, 34, 35),
                     0.0);
    tu_assert_no_error(ctx);
}

static void test_sub_broadcasts_as_numpy(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *m = tu_tensor(ctx, TU_SHAPE(2, 3), TU_VALUES(1, 2, 3, 4, 5, 6));
    jac_tensor *r = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(1, 2, 3));
    tu_assert_tensor(jac_sub(ctx, m, r), TU_SHAPE(2, 3),
                     TU_VALUES(0, 0, 0, 3, 3, 3), 0.0);
    tu_assert_tensor(jac_sub(ctx, r, m), TU_SHAPE(2, 3),
                     TU_VALUES(0, 0, 0, -3, -3, -3), 0.0);
    jac_tensor *col = tu_tensor(ctx, TU_SHAPE(2, 1), TU_VALUES(1, 2));
    jac_tensor *row = tu_tensor(ctx, TU_SHAPE(1, 3), TU_VALUES(10, 20, 30));
    tu_assert_tensor(jac_sub(ctx, col, row), TU_SHAPE(2, 3),
                     TU_VALUES(-9, -19, -29, -8, -18, -28), 0.0);
    tu_assert_tensor(jac_sub(ctx, jac_scalar(ctx, 1), m), TU_SHAPE(2, 3),
                     TU_VALUES(0, -1, -2, -3, -4, -5), 0.0);
    tu_assert_no_error(ctx);
}

static void test_mul_broadcasts_as_numpy(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *m = tu_tensor(ctx, TU_SHAPE(2, 3), TU_VALUES(1, 2, 3, 4, 5, 6));
    jac_tensor *r = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(2, 0.5, -1));
    tu_assert_tensor(jac_mul(ctx, m, r), TU_SHAPE(2, 3),
                     TU_VALUES(2, 1, -3, 8, 2.5, -6), 0.0);
    jac_tensor *col = tu_tensor(ctx, TU_SHAPE(2, 1), TU_VALUES(1, -2));
    jac_tensor *row = tu_tensor(ctx, TU_SHAPE(1, 3), TU_VALUES(1, 2, 3));
    tu_assert_tensor(jac_mul(ctx, col, row), TU_SHAPE(2, 3),
                     TU_VALUES(1, 2, 3, -2, -4, -6), 0.0);
    tu_assert_tensor(jac_mul(ctx, m, jac_scalar(ctx, -0.5)), TU_SHAPE(2, 3),
                     TU_VALUES(-0.5, -1, -1.5, -2, -2.5, -3), 0.0);
    tu_assert_no_error(ctx);
}

static void test_div_broadcasts_and_follows_ieee_at_zero(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *m = tu_tensor(ctx, TU_SHAPE(2, 3), TU_VALUES(1, 2, 3, 4, 5, 6));
    jac_tensor *r = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(2, 4, -1));
    tu_assert_tensor(jac_div(ctx, m, r), TU_SHAPE(2, 3),
                     TU_VALUES(0.5, 0.5, -3, 2, 1.25, -6), 0.0);
    tu_assert_tensor(jac_div(ctx, jac_scalar(ctx, 1), r), TU_SHAPE(3),
                     TU_VALUES(0.5, 0.25, -1), 0.0);
    jac_tensor *num = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(1, -1, 0));
    jac_tensor *zero = jac_zeros(ctx, 1, TU_SHAPE(3));
    tu_assert_tensor(jac_div(ctx, num, zero), TU_SHAPE(3),
                     TU_VALUES(INFINITY, -INFINITY, NAN), 0.0);
    tu_assert_no_error(ctx);
}

static void test_add_derivatives_match_finite_difference(void **state)
{
    check_binary_at_all_shapes(*state, apply_add);
}

static void test_sub_derivatives_match_finite_difference(void **state)
{
    check_binary_at_all_shapes(*state, apply_sub);
}

static void test_mul_derivatives_match_finite_difference(void **state)
{
    check_binary_at_all_shapes(*state, apply_mul);
}

static void test_div_derivatives_match_finite_difference(void **state)
{
    check_binary_at_all_shapes(*state, apply_div);
}

static void test_mul_of_a_tensor_with_itself_counts_both_factors(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(3), TU_VALUES(1, -2, 3));
    jac_tensor *y = jac_sum(ctx, jac_mul(ctx, x, x));
    jac_tensor *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 1, &x, 0, &g));
    tu_assert_tensor(g, TU_SHAPE(3), TU_VALUES(2, -4, 6), 0.0);
}

/* ---------------------------------------------------------------------- */
/* Ops with a double operand                                               */
/* ---------------------------------------------------------------------- */

static void test_scalar_operand_ops_values(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(1, 2, -3));
    tu_assert_tensor(jac_add_scalar(ctx, x, 0.5), TU_SHAPE(3),
                     TU_VALUES(1.5, 2.5, -2.5), 0.0);
    tu_assert_tensor(jac_sub_scalar(ctx, x, 0.5), TU_SHAPE(3),
                     TU_VALUES(0.5, 1.5, -3.5), 0.0);
    tu_assert_tensor(jac_mul_scalar(ctx, x, -2), TU_SHAPE(3),
                     TU_VALUES(-2, -4, 6), 0.0);
    tu_assert_tensor(jac_div_scalar(ctx, x, 4), TU_SHAPE(3),
                     TU_VALUES(0.25, 0.5, -0.75), 0.0);
    tu_assert_tensor(jac_rsub_scalar(ctx, 10, x), TU_SHAPE(3),
                     TU_VALUES(9, 8, 13), 0.0);
    tu_assert_tensor(jac_div_scalar(ctx, x, 0), TU_SHAPE(3),
                     TU_VALUES(INFINITY, INFINITY, -INFINITY), 0.0);
    tu_assert_scalar(jac_rsub_scalar(ctx, 1, jac_scalar(ctx, 0.25)), 0.75, 0.0);
    tu_assert_no_error(ctx);
}

static void
test_scalar_operand_ops_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    const op_case cases[] = {
        {.apply = apply_add_scalar, .c = 0.75},
        {.apply = apply_sub_scalar, .c = -1.25},
        {.apply = apply_mul_scalar, .c = -2.5},
        {.apply = apply_div_scalar, .c = 3.0},
        {.apply = apply_rsub_scalar, .c = 0.5},
    };
    for (size_t i = 0; i < TU_COUNT(cases); ++i) {
        check_elementwise_at_all_shapes(ctx, cases[i]);
    }
}

static void test_scalar_operand_ops_have_the_expected_gradient(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1, 2));
    jac_tensor *ys[5] = {
        jac_add_scalar(ctx, x, 3),  jac_sub_scalar(ctx, x, 3),
        jac_mul_scalar(ctx, x, 3),  jac_div_scalar(ctx, x, 4),
        jac_rsub_scalar(ctx, 3, x),
    };
    const double want[5] = {1, 1, 3, 0.25, -1};
    for (size_t i = 0; i < 5; ++i) {
        jac_tensor *s = jac_sum(ctx, ys[i]);
        jac_tensor *g = NULL;
        tu_assert_ok(ctx, jac_grad(ctx, 1, &s, NULL, 1, &x, 0, &g));
        const double w[2] = {want[i], want[i]};
        tu_assert_close(jac_tensor_data(g), w, 2, 0.0, 0.0);
    }
}

/* ---------------------------------------------------------------------- */
/* pow_scalar                                                              */
/* ---------------------------------------------------------------------- */

static void test_pow_scalar_values_for_each_kind_of_exponent(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_tensor(ctx, TU_SHAPE(4), TU_VALUES(0, 1, 2, 3));
    tu_assert_tensor(jac_pow_scalar(ctx, x, 0), TU_SHAPE(4),
                     TU_VALUES(1, 1, 1, 1), 0.0);
    tu_assert_tensor(jac_pow_scalar(ctx, x, 1), TU_SHAPE(4),
                     TU_VALUES(0, 1, 2, 3), 0.0);
    tu_assert_tensor(jac_pow_scalar(ctx, x, 2), TU_SHAPE(4),
                     TU_VALUES(0, 1, 4, 9), 0.0);
    tu_assert_tensor(jac_pow_scalar(ctx, x, 3), TU_SHAPE(4),
                     TU_VALUES(0, 1, 8, 27), 0.0);
    jac_tensor *sq = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(4, 9, 0.25));
    tu_assert_tensor(jac_pow_scalar(ctx, sq, 0.5), TU_SHAPE(3),
                     TU_VALUES(2, 3, 0.5), 0.0);
    tu_assert_tensor(jac_pow_scalar(ctx, sq, -1.5), TU_SHAPE(3),
                     TU_VALUES(0.125, 1.0 / 27.0, 8), 1e-15);
    tu_assert_scalar(jac_pow_scalar(ctx, jac_scalar(ctx, -2), 3), -8, 0.0);
    tu_assert_no_error(ctx);
}

static void test_pow_scalar_follows_c_pow_outside_the_domain(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *neg = jac_scalar(ctx, -4);
    assert_true(isnan(jac_tensor_item(jac_pow_scalar(ctx, neg, 0.5))));
    jac_tensor *zero = jac_scalar(ctx, 0);
    assert_true(jac_tensor_item(jac_pow_scalar(ctx, zero, -1)) == INFINITY);
    assert_true(jac_tensor_item(jac_pow_scalar(ctx, neg, 2)) == 16);
    tu_assert_no_error(ctx);
}

static void
test_pow_scalar_first_and_second_derivatives_match_finite_difference(
    void **state)
{
    jac_ctx *ctx = *state;
    const double exponents[] = {0, 1, 2, 3, 0.5, -1.5};
    for (size_t i = 0; i < TU_COUNT(exponents); ++i) {
        op_case c = {.apply = apply_pow_scalar, .c = exponents[i]};
        check_elementwise_at_all_shapes(ctx, c);
    }
    /* Integer exponents on negative bases too. */
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(3), TU_VALUES(-1.5, -0.5, 0.75));
    for (double p = 1; p <= 3; p += 1) {
        op_case c = {.apply = apply_pow_scalar, .c = p};
        check_op(ctx, c, 1, &x);
    }
}

static void test_pow_scalar_with_p_0_has_exactly_zero_derivative(void **state)
{
    jac_ctx *ctx = *state;
    /* 0 * 0 ** -1 would be NaN: the header promises exactly 0. */
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(3), TU_VALUES(0, 2, -3));
    jac_tensor *y = jac_sum(ctx, jac_pow_scalar(ctx, x, 0));
    jac_tensor *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 1, &x, JAC_CREATE_GRAPH, &g));
    tu_assert_tensor(g, TU_SHAPE(3), TU_VALUES(0, 0, 0), 0.0);
    /* g is a constant: its zero Jacobian must be asked for. */
    jac_tensor *h = jac_jacobian(ctx, g, x, JAC_ALLOW_UNUSED);
    tu_assert_tensor(h, TU_SHAPE(3, 3), TU_VALUES(0, 0, 0, 0, 0, 0, 0, 0, 0),
                     0.0);
}

static void
test_pow_scalar_derivatives_at_zero_are_the_polynomial_ones(void **state)
{
    jac_ctx *ctx = *state;
    /* d/dx x^p and d2/dx2 x^p at x = 0 for p = 1, 2, 3: (1, 0), (0, 2), (0, 0).
     * These are finite even though x^(p-2) is not at 0 for p = 1. */
    const double want_first[3] = {1, 0, 0};
    const double want_second[3] = {0, 2, 0};
    for (int i = 0; i < 3; ++i) {
        jac_tensor *x = tu_scalar_leaf(ctx, 0.0);
        jac_tensor *y = jac_pow_scalar(ctx, x, (double)(i + 1));
        jac_tensor *g = NULL;
        tu_assert_ok(ctx,
                     jac_grad(ctx, 1, &y, NULL, 1, &x, JAC_CREATE_GRAPH, &g));
        tu_assert_scalar(g, want_first[i], 0.0);
        /* jac_jacobian, not jac_grad: g may be a constant for p = 1, whose
         * zero Jacobian must be asked for. */
        jac_tensor *h = jac_jacobian(ctx, g, x, JAC_ALLOW_UNUSED);
        tu_assert_scalar(h, want_second[i], 0.0);
    }
}

static void test_pow_scalar_second_derivative_matches_closed_form(void **state)
{
    jac_ctx *ctx = *state;
    /* d2/dx2 x^-1.5 = (-1.5)(-2.5) x^-3.5 = 3.75 x^-3.5; at x = 4: 3.75/128. */
    jac_tensor *x = tu_scalar_leaf(ctx, 4.0);
    jac_tensor *y = jac_pow_scalar(ctx, x, -1.5);
    jac_tensor *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 1, &x, JAC_CREATE_GRAPH, &g));
    tu_assert_scalar(g, -1.5 / 32.0, 1e-15);
    jac_tensor *h = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &g, NULL, 1, &x, 0, &h));
    tu_assert_scalar(h, 3.75 / 128.0, 1e-15);
}

/* ---------------------------------------------------------------------- */
/* Unary elementwise ops                                                   */
/* ---------------------------------------------------------------------- */

static void test_neg_exp_and_log_values(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(0, 1, -1));
    tu_assert_tensor(jac_neg(ctx, x), TU_SHAPE(3), TU_VALUES(-0.0, -1, 1), 0.0);
    tu_assert_tensor(jac_exp(ctx, x), TU_SHAPE(3),
                     TU_VALUES(1, 2.718281828459045, 0.36787944117144233),
                     1e-15);
    jac_tensor *p = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(1, 2, 0.5));
    tu_assert_tensor(jac_log(ctx, p), TU_SHAPE(3),
                     TU_VALUES(0, 0.6931471805599453, -0.6931471805599453),
                     1e-15);
    tu_assert_scalar(jac_exp(ctx, jac_scalar(ctx, 0.5)), 1.6487212707001282,
                     1e-15);
    tu_assert_no_error(ctx);
}

static void test_log_follows_ieee_at_zero_and_below(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(0, -1));
    tu_assert_tensor(jac_log(ctx, x), TU_SHAPE(2), TU_VALUES(-INFINITY, NAN),
                     0.0);
    tu_assert_no_error(ctx);
}

static void test_sin_cos_and_tanh_values(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_tensor(ctx, TU_SHAPE(2, 2), TU_VALUES(0, 0.5, 1, -2));
    tu_assert_tensor(jac_sin(ctx, x), TU_SHAPE(2, 2),
                     TU_VALUES(0, 0.479425538604203, 0.8414709848078965,
                               -0.9092974268256817),
                     1e-15);
    tu_assert_tensor(jac_cos(ctx, x), TU_SHAPE(2, 2),
                     TU_VALUES(1, 0.8775825618903728, 0.5403023058681398,
                               -0.4161468365471424),
                     1e-15);
    tu_assert_tensor(jac_tanh(ctx, x), TU_SHAPE(2, 2),
                     TU_VALUES(0, 0.46211715726000974, 0.7615941559557649,
                               -0.9640275800758169),
                     1e-15);
    tu_assert_no_error(ctx);
}

static void test_unary_ops_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    const apply_fn ops[] = {apply_neg, apply_exp, apply_log,
                            apply_sin, apply_cos, apply_tanh};
    for (size_t i = 0; i < TU_COUNT(ops); ++i) {
        op_case c = {.apply = ops[i]};
        check_elementwise_at_all_shapes(ctx, c);
    }
}

static void test_unary_ops_have_their_textbook_derivatives(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(0.5, 1));
    const apply_fn ops[] = {apply_neg, apply_exp, apply_log,
                            apply_sin, apply_cos, apply_tanh};
    /* -1; e^x; 1/x; cos x; -sin x; 1 - tanh^2 x */
    const double want[6][2] = {
        {-1, -1},
        {1.6487212707001282, 2.718281828459045},
        {2, 1},
        {0.8775825618903728, 0.5403023058681398},
        {-0.479425538604203, -0.8414709848078965},
        {1 - 0.46211715726000974 * 0.46211715726000974,
         1 - 0.7615941559557649 * 0.7615941559557649},
    };
    for (size_t i = 0; i < TU_COUNT(ops); ++i) {
        op_case c = {.apply = ops[i]};
        jac_tensor *s = jac_sum(ctx, value_of(ctx, c, &x));
        jac_tensor *g = NULL;
        tu_assert_ok(ctx, jac_grad(ctx, 1, &s, NULL, 1, &x, 0, &g));
        tu_assert_close(jac_tensor_data(g), want[i], 2, 1e-15, 1e-15);
    }
}

/* ---------------------------------------------------------------------- */
/* Reductions and broadcasting                                             */
/* ---------------------------------------------------------------------- */

/* arange(24) reshaped to (2, 3, 4): element [i][j][k] = 12 i + 4 j + k. */
static jac_tensor *cube(jac_ctx *ctx)
{
    return jac_reshape(ctx, jac_arange(ctx, 0, 24, 1), 3, TU_SHAPE(2, 3, 4));
}

static void test_sum_adds_every_element_into_a_scalar(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *m = tu_tensor(ctx, TU_SHAPE(2, 3), TU_VALUES(1, 2, 3, 4, 5, 6));
    tu_assert_scalar(jac_sum(ctx, m), 21, 0.0);
    tu_assert_scalar(jac_sum(ctx, cube(ctx)), 276, 0.0);
    tu_assert_scalar(jac_sum(ctx, jac_scalar(ctx, -2.5)), -2.5, 0.0);
    tu_assert_scalar(jac_sum(ctx, jac_zeros(ctx, 2, TU_SHAPE(0, 3))), 0, 0.0);
    tu_assert_no_error(ctx);
}

static void test_sum_axis_values_with_and_without_keepdim(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *m = tu_tensor(ctx, TU_SHAPE(2, 3), TU_VALUES(1, 2, 3, 4, 5, 6));
    tu_assert_tensor(jac_sum_axis(ctx, m, 0, false), TU_SHAPE(3),
                     TU_VALUES(5, 7, 9), 0.0);
    tu_assert_tensor(jac_sum_axis(ctx, m, 1, false), TU_SHAPE(2),
                     TU_VALUES(6, 15), 0.0);
    tu_assert_tensor(jac_sum_axis(ctx, m, -1, true), TU_SHAPE(2, 1),
                     TU_VALUES(6, 15), 0.0);
    tu_assert_tensor(jac_sum_axis(ctx, m, 0, true), TU_SHAPE(1, 3),
                     TU_VALUES(5, 7, 9), 0.0);
    /* sum_j 12 i + 4 j + k = 36 i + 12 + 3 k */
    tu_assert_tensor(jac_sum_axis(ctx, cube(ctx), 1, false), TU_SHAPE(2, 4),
                     TU_VALUES(12, 15, 18, 21, 48, 51, 54, 57), 0.0);
    tu_assert_scalar(
        jac_sum_axis(ctx, tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(1, 2, 4)), 0,
                     false),
        7, 0.0);
    tu_assert_no_error(ctx);
}

static void test_sum_axes_values(void **state)
{
    jac_ctx *ctx = *state;
    /* sum over i, k of 12 i + 4 j + k = 32 j + 60 */
    const int axes_0_2[2] = {0, 2};
    tu_assert_tensor(jac_sum_axes(ctx, cube(ctx), 2, axes_0_2, false),
                     TU_SHAPE(3), TU_VALUES(60, 92, 124), 0.0);
    tu_assert_tensor(jac_sum_axes(ctx, cube(ctx), 2, axes_0_2, true),
                     TU_SHAPE(1, 3, 1), TU_VALUES(60, 92, 124), 0.0);
    const int axes_neg[2] = {-1, 0};
    tu_assert_tensor(jac_sum_axes(ctx, cube(ctx), 2, axes_neg, false),
                     TU_SHAPE(3), TU_VALUES(60, 92, 124), 0.0);
    const int all[3] = {2, 0, 1};
    tu_assert_scalar(jac_sum_axes(ctx, cube(ctx), 3, all, false), 276, 0.0);
    const int one[1] = {2};
    /* sum_k 12 i + 4 j + k = 48 i + 16 j + 6 */
    tu_assert_tensor(jac_sum_axes(ctx, cube(ctx), 1, one, false),
                     TU_SHAPE(2, 3), TU_VALUES(6, 22, 38, 54, 70, 86), 0.0);
    tu_assert_no_error(ctx);
}

static void test_sum_to_shape_undoes_broadcasting(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *m = tu_tensor(ctx, TU_SHAPE(2, 3), TU_VALUES(1, 2, 3, 4, 5, 6));
    tu_assert_tensor(jac_sum_to_shape(ctx, m, 1, TU_SHAPE(3)), TU_SHAPE(3),
                     TU_VALUES(5, 7, 9), 0.0);
    tu_assert_tensor(jac_sum_to_shape(ctx, m, 2, TU_SHAPE(1, 3)),
                     TU_SHAPE(1, 3), TU_VALUES(5, 7, 9), 0.0);
    tu_assert_tensor(jac_sum_to_shape(ctx, m, 2, TU_SHAPE(2, 1)),
                     TU_SHAPE(2, 1), TU_VALUES(6, 15), 0.0);
    tu_assert_tensor(jac_sum_to_shape(ctx, m, 2, TU_SHAPE(2, 3)),
                     TU_SHAPE(2, 3), TU_VALUES(1, 2, 3, 4, 5, 6), 0.0);
    tu_assert_scalar(jac_sum_to_shape(ctx, m, 0, NULL), 21, 0.0);
    /* (2, 3, 4) -> (3, 1): sum over i and k, as sum_axes above. */
    tu_assert_tensor(jac_sum_to_shape(ctx, cube(ctx), 2, TU_SHAPE(3, 1)),
                     TU_SHAPE(3, 1), TU_VALUES(60, 92, 124), 0.0);
    tu_assert_no_error(ctx);
}

static void test_expand_broadcasts_to_the_given_shape(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *r = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(1, 2, 3));
    tu_assert_tensor(jac_expand(ctx, r, 2, TU_SHAPE(2, 3)), TU_SHAPE(2, 3),
                     TU_VALUES(1, 2, 3, 1, 2, 3), 0.0);
    jac_tensor *col = tu_tensor(ctx, TU_SHAPE(2, 1), TU_VALUES(1, 2));
    tu_assert_tensor(jac_expand(ctx, col, 2, TU_SHAPE(2, 3)), TU_SHAPE(2, 3),
                     TU_VALUES(1, 1, 1, 2, 2, 2), 0.0);
    tu_assert_tensor(jac_expand(ctx, jac_scalar(ctx, 5), 2, TU_SHAPE(2, 2)),
                     TU_SHAPE(2, 2), TU_VALUES(5, 5, 5, 5), 0.0);
    tu_assert_tensor(jac_expand(ctx, r, 3, TU_SHAPE(2, 1, 3)),
                     TU_SHAPE(2, 1, 3), TU_VALUES(1, 2, 3, 1, 2, 3), 0.0);
    tu_assert_tensor(jac_expand(ctx, r, 1, TU_SHAPE(3)), TU_SHAPE(3),
                     TU_VALUES(1, 2, 3), 0.0);
    tu_assert_no_error(ctx);
}

static void test_sum_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    op_case c = {.apply = apply_sum};
    check_unary_rank0(ctx, c);
    check_unary(ctx, c, TU_SHAPE(4));
    check_unary(ctx, c, TU_SHAPE(2, 3));
    check_unary(ctx, c, TU_SHAPE(2, 1, 3));
}

static void test_sum_axis_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    for (int keep = 0; keep <= 1; ++keep) {
        op_case c = {.apply = apply_sum_axis, .keepdim = keep};
        c.axis = 0;
        check_unary(ctx, c, TU_SHAPE(3));
        check_unary(ctx, c, TU_SHAPE(2, 3));
        c.axis = 1;
        check_unary(ctx, c, TU_SHAPE(2, 3));
        check_unary(ctx, c, TU_SHAPE(2, 3, 2));
        c.axis = -1;
        check_unary(ctx, c, TU_SHAPE(2, 3, 2));
    }
}

static void test_sum_axes_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    for (int keep = 0; keep <= 1; ++keep) {
        op_case c = {.apply = apply_sum_axes,
                     .keepdim = keep,
                     .naxes = 2,
                     .axes = {0, 2}};
        check_unary(ctx, c, TU_SHAPE(2, 3, 2));
        c.naxes = 1;
        c.axes[0] = -2;
        check_unary(ctx, c, TU_SHAPE(2, 3, 2));
        c.naxes = 2;
        c.axes[0] = 1;
        c.axes[1] = 0;
        check_unary(ctx, c, TU_SHAPE(3, 2));
    }
}

static void test_sum_to_shape_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    op_case c = {.apply = apply_sum_to_shape, .ndim = 1, .shape = {3}};
    check_unary(ctx, c, TU_SHAPE(2, 3));
    c = (op_case){.apply = apply_sum_to_shape, .ndim = 2, .shape = {2, 1}};
    check_unary(ctx, c, TU_SHAPE(2, 3));
    c = (op_case){.apply = apply_sum_to_shape, .ndim = 0};
    check_unary(ctx, c, TU_SHAPE(2, 3));
    c = (op_case){.apply = apply_sum_to_shape, .ndim = 2, .shape = {3, 1}};
    check_unary(ctx, c, TU_SHAPE(2, 3, 2));
    c = (op_case){.apply = apply_sum_to_shape, .ndim = 2, .shape = {2, 3}};
    check_unary(ctx, c, TU_SHAPE(2, 3));
}

static void test_expand_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    op_case c = {.apply = apply_expand, .ndim = 2, .shape = {2, 3}};
    check_unary(ctx, c, TU_SHAPE(3));
    check_unary(ctx, c, TU_SHAPE(2, 1));
    check_unary(ctx, c, TU_SHAPE(1, 3));
    check_unary_rank0(ctx, c);
    c = (op_case){.apply = apply_expand, .ndim = 3, .shape = {2, 3, 2}};
    check_unary(ctx, c, TU_SHAPE(3, 1));
}

/* ---------------------------------------------------------------------- */
/* matmul                                                                  */
/* ---------------------------------------------------------------------- */

static void test_matmul_matrix_times_matrix(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = tu_tensor(ctx, TU_SHAPE(2, 3), TU_VALUES(1, 2, 3, 4, 5, 6));
    jac_tensor *b =
        tu_tensor(ctx, TU_SHAPE(3, 2), TU_VALUES(7, 8, 9, 10, 11, 12));
    tu_assert_tensor(jac_matmul(ctx, a, b), TU_SHAPE(2, 2),
                     TU_VALUES(58, 64, 139, 154), 0.0);
    tu_assert_tensor(jac_matmul(ctx, b, a), TU_SHAPE(3, 3),
                     TU_VALUES(39, 54, 69, 49, 68, 87, 59, 82, 105), 0.0);
    tu_assert_no_error(ctx);
}

static void test_matmul_with_vectors_drops_the_added_axis(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = tu_tensor(ctx, TU_SHAPE(2, 3), TU_VALUES(1, 2, 3, 4, 5, 6));
    jac_tensor *b =
        tu_tensor(ctx, TU_SHAPE(3, 2), TU_VALUES(7, 8, 9, 10, 11, 12));
    jac_tensor *v = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(1, 0, -1));
    jac_tensor *w = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(1, 2, 3));
    tu_assert_tensor(jac_matmul(ctx, a, v), TU_SHAPE(2), TU_VALUES(-2, -2),
                     0.0);
    tu_assert_tensor(jac_matmul(ctx, w, b), TU_SHAPE(2), TU_VALUES(58, 64),
                     0.0);
    tu_assert_scalar(
        jac_matmul(ctx, w, tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(4, 5, 6))), 32,
        0.0);
    tu_assert_no_error(ctx);
}

static void test_matmul_batches_and_broadcasts_leading_axes(void **state)
{
    jac_ctx *ctx = *state;
    /* (2, 2, 3) @ (3, 2): rows [0 1 2] [3 4 5] [6 7 8] [9 10 11] times
     * [[1 0] [0 1] [1 1]] give [a0 + a2, a1 + a2]. */
    jac_tensor *a =
        jac_reshape(ctx, jac_arange(ctx, 0, 12, 1), 3, TU_SHAPE(2, 2, 3));
    jac_tensor *b = tu_tensor(ctx, TU_SHAPE(3, 2), TU_VALUES(1, 0, 0, 1, 1, 1));
    tu_assert_tensor(jac_matmul(ctx, a, b), TU_SHAPE(2, 2, 2),
                     TU_VALUES(2, 3, 8, 9, 14, 15, 20, 21), 0.0);
    /* (2, 2, 3) @ (3,) and (3,) @ (2, 3, 2). */
    jac_tensor *v = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(1, -1, 2));
    tu_assert_tensor(jac_matmul(ctx, a, v), TU_SHAPE(2, 2),
                     TU_VALUES(3, 9, 15, 21), 0.0);
    jac_tensor *c =
        jac_reshape(ctx, jac_arange(ctx, 0, 12, 1), 3, TU_SHAPE(2, 3, 2));
    tu_assert_tensor(jac_matmul(ctx, v, c), TU_SHAPE(2, 2),
                     TU_VALUES(6, 8, 18, 20), 0.0);
    /* (2, 1, 2, 2) @ (3, 2, 2) -> (2, 3, 2, 2) */
    jac_tensor *p =
        jac_reshape(ctx, jac_arange(ctx, 0, 8, 1), 4, TU_SHAPE(2, 1, 2, 2));
    jac_tensor *q =
        jac_reshape(ctx, jac_arange(ctx, -5, 7, 1), 3, TU_SHAPE(3, 2, 2));
    tu_assert_tensor(jac_matmul(ctx, p, q), TU_SHAPE(2, 3, 2, 2),
                     TU_VALUES(-3, -2, -19, -14, 1, 2, 1, 6, 5, 6, 21, 26, -35,
                               -26, -51, -38, 1, 10, 1, 14, 37, 46, 53, 66),
                     0.0);
    tu_assert_no_error(ctx);
}

static void check_matmul_at(jac_ctx *ctx, int ndim_a, const int64_t *shape_a,
                            int ndim_b, const int64_t *shape_b,
                            const char *file, int line)
{
    check_binary_at(ctx, apply_matmul, ndim_a, shape_a, ndim_b, shape_b, file,
                    line);
}
#define check_matmul(ctx, shape_a, shape_b)                                    \
    check_matmul_at((ctx), (int)TU_COUNT(shape_a), (shape_a),                  \
                    (int)TU_COUNT(shape_b), (shape_b), __FILE__, __LINE__)

static void test_matmul_matrix_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    check_matmul(ctx, TU_SHAPE(2, 3), TU_SHAPE(3, 4));
    check_matmul(ctx, TU_SHAPE(3, 3), TU_SHAPE(3, 3));
    check_matmul(ctx, TU_SHAPE(1, 2), TU_SHAPE(2, 1));
}

static void test_matmul_vector_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    check_matmul(ctx, TU_SHAPE(2, 3), TU_SHAPE(3));
    check_matmul(ctx, TU_SHAPE(3), TU_SHAPE(3, 2));
    check_matmul(ctx, TU_SHAPE(4), TU_SHAPE(4));
}

static void
test_matmul_batched_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    check_matmul(ctx, TU_SHAPE(2, 2, 3), TU_SHAPE(3, 2));
    check_matmul(ctx, TU_SHAPE(2, 3), TU_SHAPE(2, 3, 2));
    check_matmul(ctx, TU_SHAPE(2, 1, 2, 3), TU_SHAPE(3, 3, 2));
    check_matmul(ctx, TU_SHAPE(2, 2, 3), TU_SHAPE(3));
    check_matmul(ctx, TU_SHAPE(3), TU_SHAPE(2, 3, 2));
}

/* ---------------------------------------------------------------------- */
/* Shape ops                                                               */
/* ---------------------------------------------------------------------- */

static void test_transpose_swaps_two_axes(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *m = tu_tensor(ctx, TU_SHAPE(2, 3), TU_VALUES(1, 2, 3, 4, 5, 6));
    tu_assert_tensor(jac_transpose(ctx, m, 0, 1), TU_SHAPE(3, 2),
                     TU_VALUES(1, 4, 2, 5, 3, 6), 0.0);
    tu_assert_tensor(jac_transpose(ctx, m, -1, -2), TU_SHAPE(3, 2),
                     TU_VALUES(1, 4, 2, 5, 3, 6), 0.0);
    tu_assert_tensor(jac_transpose(ctx, m, 1, 1), TU_SHAPE(2, 3),
                     TU_VALUES(1, 2, 3, 4, 5, 6), 0.0);
    /* (2, 3, 4) with axes 0 and 2 swapped: [k][j][i] = 12 i + 4 j + k. */
    jac_tensor *t = jac_transpose(ctx, cube(ctx), 0, 2);
    tu_assert_shape(t, TU_SHAPE(4, 3, 2));
    for (int64_t k = 0; k < 4; ++k) {
        for (int64_t j = 0; j < 3; ++j) {
            for (int64_t i = 0; i < 2; ++i) {
                const int64_t index[3] = {k, j, i};
                assert_true(jac_tensor_get(t, index) ==
                            (double)(12 * i + 4 * j + k));
            }
        }
    }
    /* (2, 3, 4) with axes 1 and 2 swapped: first rows. */
    jac_tensor *u = jac_transpose(ctx, cube(ctx), 1, 2);
    tu_assert_shape(u, TU_SHAPE(2, 4, 3));
    tu_assert_close(jac_tensor_data(u), TU_VALUES(0, 4, 8, 1, 5, 9), 6, 0.0,
                    0.0);
    tu_assert_no_error(ctx);
}

static void test_reshape_keeps_the_values_and_infers_minus_one(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *m = tu_tensor(ctx, TU_SHAPE(2, 3), TU_VALUES(1, 2, 3, 4, 5, 6));
    tu_assert_tensor(jac_reshape(ctx, m, 2, TU_SHAPE(3, 2)), TU_SHAPE(3, 2),
                     TU_VALUES(1, 2, 3, 4, 5, 6), 0.0);
    tu_assert_tensor(jac_reshape(ctx, m, 1, TU_SHAPE(-1)), TU_SHAPE(6),
                     TU_VALUES(1, 2, 3, 4, 5, 6), 0.0);
    tu_assert_tensor(jac_reshape(ctx, m, 3, TU_SHAPE(3, -1, 1)),
                     TU_SHAPE(3, 2, 1), TU_VALUES(1, 2, 3, 4, 5, 6), 0.0);
    jac_tensor *one = tu_tensor(ctx, TU_SHAPE(1, 1), TU_VALUES(7));
    tu_assert_scalar(jac_reshape(ctx, one, 0, NULL), 7, 0.0);
    tu_assert_tensor(jac_reshape(ctx, jac_scalar(ctx, 7), 3, TU_SHAPE(1, 1, 1)),
                     TU_SHAPE(1, 1, 1), TU_VALUES(7), 0.0);
    tu_assert_no_error(ctx);
}

static void test_slice_follows_python_slice_rules(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *r = jac_arange(ctx, 0, 6, 1);
    tu_assert_tensor(jac_slice(ctx, r, 0, 1, 5, 1), TU_SHAPE(4),
                     TU_VALUES(1, 2, 3, 4), 0.0);
    tu_assert_tensor(jac_slice(ctx, r, 0, 0, 6, 2), TU_SHAPE(3),
                     TU_VALUES(0, 2, 4), 0.0);
    tu_assert_tensor(jac_slice(ctx, r, 0, 1, 6, 2), TU_SHAPE(3),
                     TU_VALUES(1, 3, 5), 0.0);
    tu_assert_tensor(jac_slice(ctx, r, 0, 0, 5, 2), TU_SHAPE(3),
                     TU_VALUES(0, 2, 4), 0.0);
    /* r[-3:] and r[:-1] and r[-4:-1:2] */
    tu_assert_tensor(jac_slice(ctx, r, 0, -3, 6, 1), TU_SHAPE(3),
                     TU_VALUES(3, 4, 5), 0.0);
    tu_assert_tensor(jac_slice(ctx, r, 0, 0, -1, 1), TU_SHAPE(5),
                     TU_VALUES(0, 1, 2, 3, 4), 0.0);
    tu_assert_tensor(jac_slice(ctx, r, 0, -4, -1, 2), TU_SHAPE(2),
                     TU_VALUES(2, 4), 0.0);
    /* Clamped to the extent; empty when start >= stop. */
    tu_assert_tensor(jac_slice(ctx, r, 0, -100, 100, 1), TU_SHAPE(6),
                     TU_VALUES(0, 1, 2, 3, 4, 5), 0.0);
    tu_assert_tensor(jac_slice(ctx, r, 0, 4, INT64_MAX, 1), TU_SHAPE(2),
                     TU_VALUES(4, 5), 0.0);
    tu_assert_shape(jac_slice(ctx, r, 0, 4, 2, 1), TU_SHAPE(0));
    tu_assert_shape(jac_slice(ctx, r, 0, 10, 20, 1), TU_SHAPE(0));
    /* Other axes. */
    jac_tensor *m = tu_tensor(ctx, TU_SHAPE(2, 3), TU_VALUES(1, 2, 3, 4, 5, 6));
    tu_assert_tensor(jac_slice(ctx, m, 1, 1, 3, 1), TU_SHAPE(2, 2),
                     TU_VALUES(2, 3, 5, 6), 0.0);
    tu_assert_tensor(jac_slice(ctx, m, -1, 0, 3, 2), TU_SHAPE(2, 2),
                     TU_VALUES(1, 3, 4, 6), 0.0);
    tu_assert_tensor(jac_slice(ctx, m, 0, -1, 2, 1), TU_SHAPE(1, 3),
                     TU_VALUES(4, 5, 6), 0.0);
    /* [i][1:3][::3] of the (2, 3, 4) cube: 12 i + 4 j + k, j in 1..2, k 0, 3 */
    jac_tensor *c =
        jac_slice(ctx, jac_slice(ctx, cube(ctx), 1, 1, 3, 1), 2, 0, 4, 3);
    tu_assert_tensor(c, TU_SHAPE(2, 2, 2),
                     TU_VALUES(4, 7, 8, 11, 16, 19, 20, 23), 0.0);
    tu_assert_no_error(ctx);
}

static void test_concat_joins_along_an_axis(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(1, 2));
    jac_tensor *b = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(3, 4, 5));
    jac_tensor *ab[2] = {a, b};
    tu_assert_tensor(jac_concat(ctx, 2, ab, 0), TU_SHAPE(5),
                     TU_VALUES(1, 2, 3, 4, 5), 0.0);
    jac_tensor *col = tu_tensor(ctx, TU_SHAPE(2, 1), TU_VALUES(1, 2));
    jac_tensor *sq = tu_tensor(ctx, TU_SHAPE(2, 2), TU_VALUES(3, 4, 5, 6));
    jac_tensor *cs[3] = {col, sq, col};
    tu_assert_tensor(jac_concat(ctx, 3, cs, 1), TU_SHAPE(2, 4),
                     TU_VALUES(1, 3, 4, 1, 2, 5, 6, 2), 0.0);
    tu_assert_tensor(jac_concat(ctx, 3, cs, -1), TU_SHAPE(2, 4),
                     TU_VALUES(1, 3, 4, 1, 2, 5, 6, 2), 0.0);
    jac_tensor *row = tu_tensor(ctx, TU_SHAPE(1, 2), TU_VALUES(7, 8));
    jac_tensor *rs[2] = {sq, row};
    tu_assert_tensor(jac_concat(ctx, 2, rs, 0), TU_SHAPE(3, 2),
                     TU_VALUES(3, 4, 5, 6, 7, 8), 0.0);
    jac_tensor *one[1] = {sq};
    tu_assert_tensor(jac_concat(ctx, 1, one, 0), TU_SHAPE(2, 2),
                     TU_VALUES(3, 4, 5, 6), 0.0);
    tu_assert_no_error(ctx);
}

static void test_transpose_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    op_case c = {.apply = apply_transpose, .axis = 0, .axis1 = 1};
    check_unary(ctx, c, TU_SHAPE(2, 3));
    c.axis = 0;
    c.axis1 = 2;
    check_unary(ctx, c, TU_SHAPE(2, 3, 2));
    c.axis = -1;
    c.axis1 = 1;
    check_unary(ctx, c, TU_SHAPE(2, 2, 3));
}

static void test_reshape_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    op_case c = {.apply = apply_reshape, .ndim = 2, .shape = {3, 2}};
    check_unary(ctx, c, TU_SHAPE(2, 3));
    c = (op_case){.apply = apply_reshape, .ndim = 1, .shape = {-1}};
    check_unary(ctx, c, TU_SHAPE(2, 3));
    c = (op_case){.apply = apply_reshape, .ndim = 3, .shape = {2, -1, 2}};
    check_unary(ctx, c, TU_SHAPE(12));
    c = (op_case){.apply = apply_reshape, .ndim = 0};
    check_unary(ctx, c, TU_SHAPE(1, 1));
    c = (op_case){.apply = apply_reshape, .ndim = 2, .shape = {1, 1}};
    check_unary_rank0(ctx, c);
}

static void test_slice_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    op_case c = {
        .apply = apply_slice, .axis = 0, .start = 1, .stop = 4, .step = 1};
    check_unary(ctx, c, TU_SHAPE(5));
    c.step = 2;
    check_unary(ctx, c, TU_SHAPE(5));
    c = (op_case){
        .apply = apply_slice, .axis = 1, .start = -3, .stop = -1, .step = 1};
    check_unary(ctx, c, TU_SHAPE(2, 4));
    c = (op_case){
        .apply = apply_slice, .axis = -1, .start = 0, .stop = 100, .step = 2};
    check_unary(ctx, c, TU_SHAPE(2, 3, 5));
    c = (op_case){
        .apply = apply_slice, .axis = 1, .start = 1, .stop = 3, .step = 1};
    check_unary(ctx, c, TU_SHAPE(2, 3, 2));
}

static void test_concat_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *rank1[2] = {tu_smooth_leaf(ctx, TU_SHAPE(2), 0.1),
                            tu_smooth_leaf(ctx, TU_SHAPE(3), 0.7)};
    op_case c = {.apply = apply_concat, .n = 2, .axis = 0};
    check_op(ctx, c, 2, rank1);
    jac_tensor *cols[3] = {tu_smooth_leaf(ctx, TU_SHAPE(2, 1), 0.2),
                           tu_smooth_leaf(ctx, TU_SHAPE(2, 2), 0.9),
                           tu_smooth_leaf(ctx, TU_SHAPE(2, 3), 1.6)};
    c = (op_case){.apply = apply_concat, .n = 3, .axis = 1};
    check_op(ctx, c, 3, cols);
    jac_tensor *cubes[2] = {tu_smooth_leaf(ctx, TU_SHAPE(2, 1, 2), 0.3),
                            tu_smooth_leaf(ctx, TU_SHAPE(2, 2, 2), 1.1)};
    c = (op_case){.apply = apply_concat, .n = 2, .axis = -2};
    check_op(ctx, c, 2, cubes);
}

/* ---------------------------------------------------------------------- */
/* Jacobians of single ops against the independent finite differences     */
/* ---------------------------------------------------------------------- */

static void
test_jacobian_of_broadcast_mul_matches_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *in[2] = {tu_smooth_leaf(ctx, TU_SHAPE(2, 1), 0.3),
                         tu_smooth_leaf(ctx, TU_SHAPE(3), 0.8)};
    op_case c = {.apply = apply_mul};
    tu_assert_jacobian_matches_fd(ctx, run_case, &c, 2, in, 1, 0, 0);
    tu_assert_jacobian_matches_fd(ctx, run_case, &c, 2, in, 1, 0, 1);
    c.then_sin = true;
    tu_assert_jacobian_matches_fd(ctx, run_case, &c, 2, in, 1, 0, 1);
}

static void
test_jacobian_of_batched_matmul_matches_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *in[2] = {tu_smooth_leaf(ctx, TU_SHAPE(2, 2, 3), 0.3),
                         tu_smooth_leaf(ctx, TU_SHAPE(3, 2), 0.8)};
    op_case c = {.apply = apply_matmul};
    tu_assert_jacobian_matches_fd(ctx, run_case, &c, 2, in, 1, 0, 0);
    tu_assert_jacobian_matches_fd(ctx, run_case, &c, 2, in, 1, 0, 1);
}

static void
test_jacobian_of_pow_div_and_log_matches_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_smooth_leaf(ctx, TU_SHAPE(2, 3), 0.5);
    op_case c = {.apply = apply_pow_scalar, .c = -1.5, .then_sin = true};
    tu_assert_jacobian_matches_fd(ctx, run_case, &c, 1, &x, 1, 0, 0);
    c = (op_case){.apply = apply_log};
    tu_assert_jacobian_matches_fd(ctx, run_case, &c, 1, &x, 1, 0, 0);
    jac_tensor *in[2] = {x, tu_smooth_leaf(ctx, TU_SHAPE(3), 2.0)};
    c = (op_case){.apply = apply_div};
    tu_assert_jacobian_matches_fd(ctx, run_case, &c, 2, in, 1, 0, 1);
}

static void test_jacobian_of_shape_ops_matches_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_smooth_leaf(ctx, TU_SHAPE(2, 3, 2), 0.5);
    op_case c = {.apply = apply_slice,
                 .axis = 1,
                 .start = -3,
                 .stop = 3,
                 .step = 2,
                 .then_sin = true};
    tu_assert_jacobian_matches_fd(ctx, run_case, &c, 1, &x, 1, 0, 0);
    c = (op_case){
        .apply = apply_sum_axes, .naxes = 2, .axes = {0, 2}, .then_sin = true};
    tu_assert_jacobian_matches_fd(ctx, run_case, &c, 1, &x, 1, 0, 0);
    c = (op_case){.apply = apply_transpose, .axis = 0, .axis1 = 2};
    tu_assert_jacobian_matches_fd(ctx, run_case, &c, 1, &x, 1, 0, 0);
    jac_tensor *r = tu_smooth_leaf(ctx, TU_SHAPE(3, 1), 0.1);
    c = (op_case){
        .apply = apply_expand, .ndim = 3, .shape = {2, 3, 2}, .then_sin = true};
    tu_assert_jacobian_matches_fd(ctx, run_case, &c, 1, &r, 1, 0, 0);
}

/* ---------------------------------------------------------------------- */
/* The recorded and the plain backward agree                               */
/* ---------------------------------------------------------------------- */

/* The gradient of sum(sin(op(inputs))) with respect to every input, with
 * and without JAC_CREATE_GRAPH: the same numbers. */
static void check_create_graph_agrees_at(jac_ctx *ctx, op_case c,
                                         size_t ninputs,
                                         jac_tensor *const *inputs,
                                         const char *file, int line)
{
    c.then_sin = true;
    jac_tensor *plain[3] = {NULL, NULL, NULL};
    jac_tensor *recorded[3] = {NULL, NULL, NULL};
    jac_tensor *y = NULL;
    tu_assert_ok_at(ctx, run_case(ctx, inputs, &y, &c), file, line);
    jac_tensor *s = jac_sum(ctx, y);
    tu_assert_ok_at(ctx, jac_grad(ctx, 1, &s, NULL, ninputs, inputs, 0, plain),
                    file, line);
    tu_assert_ok_at(ctx, run_case(ctx, inputs, &y, &c), file, line);
    s = jac_sum(ctx, y);
    tu_assert_ok_at(
        ctx,
        jac_grad(ctx, 1, &s, NULL, ninputs, inputs, JAC_CREATE_GRAPH, recorded),
        file, line);
    for (size_t i = 0; i < ninputs; ++i) {
        assert_int_equal(jac_tensor_numel(plain[i]),
                         jac_tensor_numel(recorded[i]));
        tu_assert_close_at(
            jac_tensor_data(recorded[i]), jac_tensor_data(plain[i]),
            (size_t)jac_tensor_numel(plain[i]), 1e-14, 1e-14, file, line);
    }
}
#define check_create_graph_agrees(ctx, c, ninputs, inputs)                     \
    check_create_graph_agrees_at((ctx), (c), (ninputs), (inputs), __FILE__,    \
                                 __LINE__)

static void test_gradients_agree_with_and_without_create_graph(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *m = tu_smooth_leaf(ctx, TU_SHAPE(2, 3), 0.2);
    jac_tensor *r = tu_smooth_leaf(ctx, TU_SHAPE(3), 1.2);
    jac_tensor *k = tu_smooth_leaf(ctx, TU_SHAPE(3, 4), 2.2);
    jac_tensor *b = tu_smooth_leaf(ctx, TU_SHAPE(2, 2, 3), 0.7);
    jac_tensor *mr[2] = {m, r};
    const apply_fn binary[] = {apply_add, apply_sub, apply_mul, apply_div};
    for (size_t i = 0; i < TU_COUNT(binary); ++i) {
        check_create_graph_agrees(ctx, (op_case){.apply = binary[i]}, 2, mr);
    }
    jac_tensor *mk[2] = {m, k};
    check_create_graph_agrees(ctx, (op_case){.apply = apply_matmul}, 2, mk);
    jac_tensor *bk[2] = {b, k};
    check_create_graph_agrees(ctx, (op_case){.apply = apply_matmul}, 2, bk);
    /* (2, 3) @ (3,): matrix times vector. */
    check_create_graph_agrees(ctx, (op_case){.apply = apply_matmul}, 2, mr);
    const op_case unary[] = {
        {.apply = apply_pow_scalar, .c = 3},
        {.apply = apply_pow_scalar, .c = -1.5},
        {.apply = apply_exp},
        {.apply = apply_log},
        {.apply = apply_tanh},
        {.apply = apply_cos},
        {.apply = apply_sum_axis, .axis = 1},
        {.apply = apply_sum_to_shape, .ndim = 1, .shape = {3}},
        {.apply = apply_transpose, .axis = 0, .axis1 = 1},
        {.apply = apply_slice, .axis = 1, .start = 0, .stop = 3, .step = 2},
        {.apply = apply_reshape, .ndim = 1, .shape = {-1}},
        {.apply = apply_div_scalar, .c = 3},
    };
    for (size_t i = 0; i < TU_COUNT(unary); ++i) {
        check_create_graph_agrees(ctx, unary[i], 1, &m);
    }
    const op_case expand = {.apply = apply_expand, .ndim = 2, .shape = {4, 3}};
    check_create_graph_agrees(ctx, expand, 1, &r);
}

/* ---------------------------------------------------------------------- */
/* Comparisons                                                             */
/* ---------------------------------------------------------------------- */

static void test_comparisons_broadcast_and_follow_ieee(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *m = tu_tensor(ctx, TU_SHAPE(2, 3), TU_VALUES(1, 2, 3, 4, 5, 6));
    jac_tensor *r = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(2, 5, 3));
    tu_assert_tensor(jac_gt(ctx, m, r), TU_SHAPE(2, 3),
                     TU_VALUES(0, 0, 0, 1, 0, 1), TU_EXACT);
    tu_assert_tensor(jac_ge(ctx, m, r), TU_SHAPE(2, 3),
                     TU_VALUES(0, 0, 1, 1, 1, 1), TU_EXACT);
    tu_assert_tensor(jac_lt(ctx, m, r), TU_SHAPE(2, 3),
                     TU_VALUES(1, 1, 0, 0, 0, 0), TU_EXACT);
    tu_assert_tensor(jac_le(ctx, m, r), TU_SHAPE(2, 3),
                     TU_VALUES(1, 1, 1, 0, 1, 0), TU_EXACT);
    tu_assert_tensor(jac_eq(ctx, m, r), TU_SHAPE(2, 3),
                     TU_VALUES(0, 0, 1, 0, 1, 0), TU_EXACT);
    tu_assert_tensor(jac_ne(ctx, r, m), TU_SHAPE(2, 3),
                     TU_VALUES(1, 1, 0, 1, 0, 1), TU_EXACT);
    tu_assert_scalar(jac_lt(ctx, jac_scalar(ctx, -1), jac_scalar(ctx, 0)), 1,
                     TU_EXACT);
    tu_assert_shape(jac_gt(ctx, jac_zeros(ctx, 2, TU_SHAPE(0, 3)), r),
                    TU_SHAPE(0, 3));
    /* NaN against a number, a number against NaN, NaN against NaN: false,
     * but for ne; -0 equals 0. */
    jac_tensor *x = tu_tensor(ctx, TU_SHAPE(4), TU_VALUES(NAN, 1, NAN, -0.0));
    jac_tensor *y = tu_tensor(ctx, TU_SHAPE(4), TU_VALUES(1, NAN, NAN, 0.0));
    tu_assert_tensor(jac_gt(ctx, x, y), TU_SHAPE(4), TU_VALUES(0, 0, 0, 0),
                     TU_EXACT);
    tu_assert_tensor(jac_ge(ctx, x, y), TU_SHAPE(4), TU_VALUES(0, 0, 0, 1),
                     TU_EXACT);
    tu_assert_tensor(jac_lt(ctx, x, y), TU_SHAPE(4), TU_VALUES(0, 0, 0, 0),
                     TU_EXACT);
    tu_assert_tensor(jac_le(ctx, x, y), TU_SHAPE(4), TU_VALUES(0, 0, 0, 1),
                     TU_EXACT);
    tu_assert_tensor(jac_eq(ctx, x, y), TU_SHAPE(4), TU_VALUES(0, 0, 0, 1),
                     TU_EXACT);
    tu_assert_tensor(jac_ne(ctx, x, y), TU_SHAPE(4), TU_VALUES(1, 1, 1, 0),
                     TU_EXACT);
    tu_assert_no_error(ctx);
    assert_null(jac_ge(ctx, m, tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(1, 2))));
    tu_assert_error(ctx, JAC_ERR_SHAPE);
    tu_assert_contains(jac_errmsg(ctx), "ge: shapes (2, 3) and (2)");
}

/* y = x > c ? x^2 : 3x, through jac_where on a comparison: each side's
 * values, first and second derivatives, and none into c. */
static void test_a_branch_on_a_comparison_differentiates_each_side(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(4), TU_VALUES(-2, -0.5, 0.5, 2));
    jac_tensor *c = tu_scalar_leaf(ctx, 0.0);
    jac_tensor *cond = jac_gt(ctx, x, c);
    assert_true(jac_requires_grad(cond)); /* recorded, as any op */
    jac_tensor *y =
        jac_where(ctx, cond, jac_square(ctx, x), jac_mul_scalar(ctx, x, 3.0));
    tu_assert_tensor(y, TU_SHAPE(4), TU_VALUES(-6, -1.5, 0.25, 4), TU_EXACT);
    jac_tensor *s = jac_sum(ctx, y);
    jac_tensor *g[2] = {NULL, NULL};
    tu_assert_ok(ctx, jac_grad(ctx, 1, &s, NULL, 2, (jac_tensor *[]){x, c},
                               JAC_CREATE_GRAPH, g));
    tu_assert_tensor(g[0], TU_SHAPE(4), TU_VALUES(3, 3, 1, 4), TU_EXACT);
    tu_assert_scalar(g[1], 0.0, TU_EXACT);
    assert_false(jac_requires_grad(g[1])); /* a constant */
    jac_tensor *gs = jac_sum(ctx, g[0]), *h = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &gs, NULL, 1, &x, 0, &h));
    tu_assert_tensor(h, TU_SHAPE(4), TU_VALUES(0, 0, 2, 2), TU_EXACT);
    tu_assert_no_error(ctx);
}

/* The gradient of a comparison is zeros of each input's shape whatever the
 * seed holds, in an unrecorded pass (raw kernel) and under create-graph
 * (rule), also for a broadcast input. */
static void test_comparisons_pass_exact_zeros_for_any_seed(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = tu_leaf(ctx, TU_SHAPE(2, 2), TU_VALUES(1, 2, 3, 4));
    jac_tensor *b = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(2, NAN));
    jac_tensor *seed =
        tu_tensor(ctx, TU_SHAPE(2, 2), TU_VALUES(INFINITY, NAN, -INFINITY, 1));
    jac_tensor *(*ops[])(jac_ctx *, jac_tensor *, jac_tensor *) = {
        jac_gt, jac_ge, jac_lt, jac_le, jac_eq, jac_ne};
    for (size_t i = 0; i < TU_COUNT(ops); i++) {
        jac_tensor *y = ops[i](ctx, a, b);
        for (int create = 0; create < 2; create++) {
            jac_tensor *g[2] = {NULL, NULL};
            unsigned flags = JAC_RETAIN_GRAPH | (create ? JAC_CREATE_GRAPH : 0);
            tu_assert_ok(ctx, jac_grad(ctx, 1, &y, &seed, 2,
                                       (jac_tensor *[]){a, b}, flags, g));
            tu_assert_tensor(g[0], TU_SHAPE(2, 2), TU_VALUES(0, 0, 0, 0),
                             TU_EXACT);
            tu_assert_tensor(g[1], TU_SHAPE(2), TU_VALUES(0, 0), TU_EXACT);
            assert_false(jac_requires_grad(g[0]));
        }
    }
    tu_assert_no_error(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_add_broadcasts_as_numpy),
        TU_TEST(test_sub_broadcasts_as_numpy),
        TU_TEST(test_mul_broadcasts_as_numpy),
        TU_TEST(test_div_broadcasts_and_follows_ieee_at_zero),
        TU_TEST(test_add_derivatives_match_finite_difference),
        TU_TEST(test_sub_derivatives_match_finite_difference),
        TU_TEST(test_mul_derivatives_match_finite_difference),
        TU_TEST(test_div_derivatives_match_finite_difference),
        TU_TEST(test_mul_of_a_tensor_with_itself_counts_both_factors),
        TU_TEST(test_scalar_operand_ops_values),
        TU_TEST(test_scalar_operand_ops_derivatives_match_finite_difference),
        TU_TEST(test_scalar_operand_ops_have_the_expected_gradient),
        TU_TEST(test_pow_scalar_values_for_each_kind_of_exponent),
        TU_TEST(test_pow_scalar_follows_c_pow_outside_the_domain),
        TU_TEST(
            test_pow_scalar_first_and_second_derivatives_match_finite_difference),
        TU_TEST(test_pow_scalar_with_p_0_has_exactly_zero_derivative),
        TU_TEST(test_pow_scalar_derivatives_at_zero_are_the_polynomial_ones),
        TU_TEST(test_pow_scalar_second_derivative_matches_closed_form),
        TU_TEST(test_neg_exp_and_log_values),
        TU_TEST(test_log_follows_ieee_at_zero_and_below),
        TU_TEST(test_sin_cos_and_tanh_values),
        TU_TEST(test_unary_ops_derivatives_match_finite_difference),
        TU_TEST(test_unary_ops_have_their_textbook_derivatives),
        TU_TEST(test_sum_adds_every_element_into_a_scalar),
        TU_TEST(test_sum_axis_values_with_and_without_keepdim),
        TU_TEST(test_sum_axes_values),
        TU_TEST(test_sum_to_shape_undoes_broadcasting),
        TU_TEST(test_expand_broadcasts_to_the_given_shape),
        TU_TEST(test_sum_derivatives_match_finite_difference),
        TU_TEST(test_sum_axis_derivatives_match_finite_difference),
        TU_TEST(test_sum_axes_derivatives_match_finite_difference),
        TU_TEST(test_sum_to_shape_derivatives_match_finite_difference),
        TU_TEST(test_expand_derivatives_match_finite_difference),
        TU_TEST(test_matmul_matrix_times_matrix),
        TU_TEST(test_matmul_with_vectors_drops_the_added_axis),
        TU_TEST(test_matmul_batches_and_broadcasts_leading_axes),
        TU_TEST(test_matmul_matrix_derivatives_match_finite_difference),
        TU_TEST(test_matmul_vector_derivatives_match_finite_difference),
        TU_TEST(test_matmul_batched_derivatives_match_finite_difference),
        TU_TEST(test_transpose_swaps_two_axes),
        TU_TEST(test_reshape_keeps_the_values_and_infers_minus_one),
        TU_TEST(test_slice_follows_python_slice_rules),
        TU_TEST(test_concat_joins_along_an_axis),
        TU_TEST(test_transpose_derivatives_match_finite_difference),
        TU_TEST(test_reshape_derivatives_match_finite_difference),
        TU_TEST(test_slice_derivatives_match_finite_difference),
        TU_TEST(test_concat_derivatives_match_finite_difference),
        TU_TEST(test_jacobian_of_broadcast_mul_matches_finite_difference),
        TU_TEST(test_jacobian_of_batched_matmul_matches_finite_difference),
        TU_TEST(test_jacobian_of_pow_div_and_log_matches_finite_difference),
        TU_TEST(test_jacobian_of_shape_ops_matches_finite_difference),
        TU_TEST(test_gradients_agree_with_and_without_create_graph),
        TU_TEST(test_comparisons_broadcast_and_follow_ieee),
        TU_TEST(test_a_branch_on_a_comparison_differentiates_each_side),
        TU_TEST(test_comparisons_pass_exact_zeros_for_any_seed),
    };
    return cmocka_run_group_tests_name("ops", tests, NULL, NULL);
}
