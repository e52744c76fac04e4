/*
 * Unary elementwise ops (abs ... clamp) and the broadcasting binary ops pow,
 * maximum, minimum and atan2: values against PyTorch (float64, pasted as
 * literals), first and second derivatives against finite differences at
 * several shapes, batched seeds against the row loop, the documented
 * conventions at kinks, ties and zeros, and the errors.
 *
 * Each derivative check runs on the op alone and on sin(op(...)): for a
 * piecewise linear op (abs, relu, clamp, maximum) the op's own second
 * derivative is zero, and the sin makes the gradient depend on the inputs
 * through the op's backward rule, so that the rule's derivative is checked.
 *
 * SPDX-License-Identifier: MIT
 */
#include "batchcheck.h"
#include "testutil.h"

/* ---------------------------------------------------------------------- */
/* One op with its parameters, as a jac_fn                                 */
/* ---------------------------------------------------------------------- */

typedef jac_tensor *(*unary_fn)(jac_ctx *ctx, jac_tensor *a);
typedef jac_tensor *(*binary_fn)(jac_ctx *ctx, jac_tensor *a, jac_tensor *b);

typedef struct op_case {
    unary_fn unary;       /* a unary op on in[0], or */
    binary_fn binary;     /* a binary op on in[0], in[1], or */
    bool clamp;           /* jac_clamp(in[0], lo, hi), or */
    jac_tensor *exponent; /* jac_pow(in[0], exponent) with a constant one */
    bool same_input;      /* the binary op on in[0], in[0] */
    double lo, hi;
    bool then_sin; /* apply sin to the result */
} op_case;

static jac_status run_case(jac_ctx *ctx, jac_tensor *const *in,
                           jac_tensor **out, void *user)
{
    const op_case *c = user;
    jac_tensor *y;
    if (c->clamp) {
        y = jac_clamp(ctx, in[0], c->lo, c->hi);
    } else if (c->exponent) {
        y = jac_pow(ctx, in[0], c->exponent);
    } else if (c->unary) {
        y = c->unary(ctx, in[0]);
    } else {
        y = c->binary(ctx, in[0], c->same_input ? in[0] : in[1]);
    }
    if (c->then_sin) {
        y = jac_sin(ctx, y);
    }
    out[0] = y;
    if (y == NULL) {
        return jac_errcode(ctx) != JAC_OK ? jac_errcode(ctx) : JAC_ERR_STATE;
    }
    return JAC_OK;
}

/* First and second derivatives of the op, then of sin(op), against finite
 * differences. */
static void check_op_at(jac_ctx *ctx, op_case c, size_t ninputs,
                        jac_tensor *const *inputs, const char *file, int line)
{
    c.then_sin = false;
    tu_gradcheck_at(ctx, run_case, &c, ninputs, inputs, 1, file, line);
    tu_gradgradcheck_at(ctx, run_case, &c, ninputs, inputs, 1, file, line);
    c.then_sin = true;
    tu_gradcheck_at(ctx, run_case, &c, ninputs, inputs, 1, file, line);
    tu_gradgradcheck_at(ctx, run_case, &c, ninputs, inputs, 1, file, line);
}
#define check_op(ctx, c, ninputs, inputs)                                      \
    check_op_at((ctx), (c), (ninputs), (inputs), __FILE__, __LINE__)

/* ---------------------------------------------------------------------- */
/* Inputs inside an op's smooth domain                                     */
/* ---------------------------------------------------------------------- */

/* Finite differences need every input this far from a kink or a tie. */
#define KINK_DISTANCE 1e-3

/* A leaf requiring gradients with smooth, non-repeating values in (lo, hi),
 * asserted to stay KINK_DISTANCE away from each of the nkinks kinks. */
static jac_tensor *range_leaf_at(jac_ctx *ctx, int ndim, const int64_t *shape,
                                 double lo, double hi, double phase,
                                 const double *kinks, size_t nkinks,
                                 const char *file, int line)
{
    int64_t numel = 1;
    for (int i = 0; i < ndim; ++i) {
        numel *= shape[i];
    }
    double *v = malloc((size_t)(numel ? numel : 1) * sizeof *v);
    if (v == NULL) {
        tu_fail_at(file, line);
        return NULL;
    }
    for (int64_t i = 0; i < numel; ++i) {
        double s = 0.5 + 0.45 * sin(0.9 * (double)i + phase);
        v[i] = lo + (hi - lo) * s;
        for (size_t k = 0; k < nkinks; ++k) {
            if (fabs(v[i] - kinks[k]) < KINK_DISTANCE) {
                print_error("test bug: input %.17g is at the kink %g\n", v[i],
                            kinks[k]);
                tu_fail_at(file, line);
            }
        }
    }
    jac_tensor *t = jac_tensor_new(ctx, ndim, shape, v);
    free(v);
    if (t == NULL) {
        tu_fail_at(file, line);
        return NULL;
    }
    tu_assert_ok_at(ctx, jac_set_requires_grad(t, true), file, line);
    return t;
}

/* The shapes every elementwise op is checked at: rank 0 to 3, non-square. */
static const struct {
    int ndim;
    int64_t shape[3];
} elementwise_shapes[] = {
    {0, {0}},
    {1, {4}},
    {2, {2, 3}},
    {3, {2, 1, 3}},
};

/* A unary op and the interval its derivative checks sample. */
typedef struct unary_spec {
    const char *name;
    unary_fn fn;
    double lo, hi;
    bool kink_at_zero;
} unary_spec;

static const unary_spec unary_ops[] = {
    {"abs", jac_abs, -1.8, 1.8, true},
    {"sign", jac_sign, -1.8, 1.8, true},
    {"sqrt", jac_sqrt, 0.2, 1.8, false},
    {"rsqrt", jac_rsqrt, 0.2, 1.8, false},
    {"square", jac_square, -1.8, 1.8, false},
    {"reciprocal", jac_reciprocal, 0.3, 1.8, false},
    {"reciprocal", jac_reciprocal, -1.8, -0.3, false},
    {"expm1", jac_expm1, -1.8, 1.8, false},
    {"log1p", jac_log1p, -0.8, 1.8, false},
    {"tan", jac_tan, -1.2, 1.2, false},
    {"asin", jac_asin, -0.9, 0.9, false},
    {"acos", jac_acos, -0.9, 0.9, false},
    {"atan", jac_atan, -2.0, 2.0, false},
    {"sinh", jac_sinh, -2.0, 2.0, false},
    {"cosh", jac_cosh, -2.0, 2.0, false},
    {"asinh", jac_asinh, -2.0, 2.0, false},
    {"sigmoid", jac_sigmoid, -3.0, 3.0, false},
    {"relu", jac_relu, -1.8, 1.8, true},
    {"softplus", jac_softplus, -3.0, 3.0, false},
    {"erf", jac_erf, -2.0, 2.0, false},
};

static jac_tensor *unary_leaf(jac_ctx *ctx, const unary_spec *op, int ndim,
                              const int64_t *shape, double phase)
{
    const double zero = 0.0;
    return range_leaf_at(ctx, ndim, shape, op->lo, op->hi, phase, &zero,
                         op->kink_at_zero ? 1 : 0, __FILE__, __LINE__);
}

/* ---------------------------------------------------------------------- */
/* Unary values against PyTorch                                            */
/* ---------------------------------------------------------------------- */

static void test_abs_sign_square_and_reciprocal_match_torch(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x =
        tu_tensor(ctx, TU_SHAPE(2, 3), TU_VALUES(-2, -0.5, 0, 0.25, 1.5, 3));
    tu_assert_tensor(jac_abs(ctx, x), TU_SHAPE(2, 3),
                     TU_VALUES(2, 0.5, 0, 0.25, 1.5, 3), 0.0);
    tu_assert_tensor(jac_sign(ctx, x), TU_SHAPE(2, 3),
                     TU_VALUES(-1, -1, 0, 1, 1, 1), 0.0);
    tu_assert_tensor(jac_square(ctx, x), TU_SHAPE(2, 3),
                     TU_VALUES(4, 0.25, 0, 0.0625, 2.25, 9), 0.0);
    tu_assert_tensor(jac_reciprocal(ctx, x), TU_SHAPE(2, 3),
                     TU_VALUES(-0.5, -2.0, INFINITY, 4.0, 0.6666666666666666,
                               0.3333333333333333),
                     1e-16);
    tu_assert_scalar(jac_sign(ctx, jac_scalar(ctx, -0.0)), 0.0, 0.0);
    assert_true(isnan(jac_tensor_item(jac_sign(ctx, jac_scalar(ctx, NAN)))));
    tu_assert_no_error(ctx);
}

static void test_sqrt_and_rsqrt_match_torch_at_zero_and_below(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x =
        tu_tensor(ctx, TU_SHAPE(5), TU_VALUES(0.0, 0.25, 2.0, 9.0, 1e-8));
    tu_assert_tensor(jac_sqrt(ctx, x), TU_SHAPE(5),
                     TU_VALUES(0.0, 0.5, 1.4142135623730951, 3.0, 0.0001),
                     1e-16);
    tu_assert_tensor(jac_rsqrt(ctx, x), TU_SHAPE(5),
                     TU_VALUES(INFINITY, 2.0, 0.7071067811865475,
                               0.3333333333333333, 10000.0),
                     1e-12);
    jac_tensor *neg = jac_scalar(ctx, -1.0);
    assert_true(isnan(jac_tensor_item(jac_sqrt(ctx, neg))));
    assert_true(isnan(jac_tensor_item(jac_rsqrt(ctx, neg))));
    tu_assert_no_error(ctx);
}

static void
test_expm1_and_log1p_match_torch_and_stay_accurate_near_zero(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x =
        tu_tensor(ctx, TU_SHAPE(5), TU_VALUES(-1.0, 1e-10, -3e-12, 0.5, 2.0));
    jac_tensor *e = jac_expm1(ctx, x);
    const double want_e[] = {-0.6321205588285577, 1.00000000005e-10,
                             -2.9999999999955003e-12, 0.6487212707001282,
                             6.38905609893065};
    /* Relative tolerance: the tiny results must keep their digits. */
    tu_assert_close(jac_tensor_data(e), want_e, 5, 0.0, 1e-15);
    jac_tensor *l = jac_log1p(ctx, x);
    const double want_l[] = {-INFINITY, 9.999999999500001e-11,
                             -3.0000000000045e-12, 0.4054651081081644,
                             1.0986122886681098};
    tu_assert_close(jac_tensor_data(l), want_l, 5, 0.0, 1e-15);
    tu_assert_no_error(ctx);
}

static void test_tan_asin_acos_and_atan_match_torch(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_tensor(ctx, TU_SHAPE(3, 2),
                              TU_VALUES(-1.2, -0.3, 0.0, 0.7, 1.0, 0.999));
    tu_assert_tensor(jac_tan(ctx, x), TU_SHAPE(3, 2),
                     TU_VALUES(-2.5721516221263188, -0.30933624960962325, 0.0,
                               0.8422883804630794, 1.5574077246549023,
                               1.5539875313295277),
                     1e-15);
    tu_assert_tensor(jac_asin(ctx, x), TU_SHAPE(3, 2),
                     TU_VALUES(NAN, -0.30469265401539747, 0.0,
                               0.775397496610753, 1.5707963267948966,
                               1.526071239626163),
                     1e-15);
    tu_assert_tensor(jac_acos(ctx, x), TU_SHAPE(3, 2),
                     TU_VALUES(NAN, 1.8754889808102941, 1.5707963267948966,
                               0.7953988301841436, 0.0, 0.04472508716873345),
                     1e-15);
    tu_assert_tensor(jac_atan(ctx, x), TU_SHAPE(3, 2),
                     TU_VALUES(-0.8760580505981934, -0.2914567944778671, 0.0,
                               0.6107259643892086, 0.7853981633974483,
                               0.784897913314115),
                     1e-15);
    tu_assert_no_error(ctx);
}

static void test_sinh_cosh_and_asinh_match_torch(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x =
        tu_tensor(ctx, TU_SHAPE(6), TU_VALUES(-3, -0.5, 0, 0.75, 2, 10));
    jac_tensor *s = jac_sinh(ctx, x);
    const double want_s[] = {
        -10.017874927409903, -0.5210953054937474, 0.0,
        0.82231673193583,    3.626860407847019,   11013.232874703393};
    tu_assert_close(jac_tensor_data(s), want_s, 6, 0.0, 1e-15);
    jac_tensor *c = jac_cosh(ctx, x);
    const double want_c[] = {
        10.067661995777765, 1.1276259652063807, 1.0,
        1.2946832846768448, 3.7621956910836314, 11013.232920103324};
    tu_assert_close(jac_tensor_data(c), want_c, 6, 0.0, 1e-15);
    tu_assert_tensor(jac_asinh(ctx, x), TU_SHAPE(6),
                     TU_VALUES(-1.8184464592320668, -0.48121182505960347, 0.0,
                               0.6931471805599453, 1.4436354751788103,
                               2.99822295029797),
                     1e-15);
    tu_assert_no_error(ctx);
}

static void test_sigmoid_matches_torch_without_overflow(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_tensor(ctx, TU_SHAPE(8),
                              TU_VALUES(-1000, -40, -2, 0, 0.5, 3, 40, 1000));
    jac_tensor *y = jac_sigmoid(ctx, x);
    const double want[] = {0.0,
                           4.248354255291589e-18,
                           0.11920292202211755,
                           0.5,
                           0.6224593312018546,
                           0.9525741268224334,
                           1.0,
                           1.0};
    tu_assert_close(jac_tensor_data(y), want, 8, 0.0, 1e-15);
    tu_assert_no_error(ctx);
}

static void test_relu_matches_torch_and_propagates_nan(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x =
        tu_tensor(ctx, TU_SHAPE(2, 3), TU_VALUES(-1000, -2, 0, 0.5, 3, 1000));
    tu_assert_tensor(jac_relu(ctx, x), TU_SHAPE(2, 3),
                     TU_VALUES(0, 0, 0, 0.5, 3, 1000), 0.0);
    assert_true(isnan(jac_tensor_item(jac_relu(ctx, jac_scalar(ctx, NAN)))));
    tu_assert_no_error(ctx);
}

static void
test_softplus_is_the_exact_log1p_exp_without_torch_threshold(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x =
        tu_tensor(ctx, TU_SHAPE(10),
                  TU_VALUES(-1000, -40, -2, 0, 0.5, 3, 19, 25, 40, 1000));
    jac_tensor *y = jac_softplus(ctx, x);
    /* PyTorch agrees everywhere but at 25, where its threshold of 20
     * returns 25 itself; log(1 + e^25) is 25.000000000013888. */
    const double want[] = {0.0,
                           4.248354255291589e-18,
                           0.1269280110429725,
                           0.6931471805599453,
                           0.9740769841801067,
                           3.048587351573742,
                           19.000000005602796,
                           25.000000000013888,
                           40.0,
                           1000.0};
    tu_assert_close(jac_tensor_data(y), want, 10, 0.0, 1e-15);
    assert_true(jac_tensor_data(y)[7] != 25.0);
    tu_assert_no_error(ctx);
}

static void test_erf_matches_torch(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x =
        tu_tensor(ctx, TU_SHAPE(3, 2), TU_VALUES(-3, -0.5, 0, 0.1, 1, 2.5));
    tu_assert_tensor(jac_erf(ctx, x), TU_SHAPE(3, 2),
                     TU_VALUES(-0.9999779095030014, -0.5204998778130465, 0.0,
                               0.1124629160182849, 0.8427007929497149,
                               0.999593047982555),
                     1e-15);
    tu_assert_no_error(ctx);
}

static void
test_clamp_matches_torch_with_finite_and_infinite_bounds(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x =
        tu_tensor(ctx, TU_SHAPE(7), TU_VALUES(-2, -1, -0.25, 0, 0.5, 1, 3));
    tu_assert_tensor(jac_clamp(ctx, x, -1.0, 0.5), TU_SHAPE(7),
                     TU_VALUES(-1, -1, -0.25, 0, 0.5, 0.5, 0.5), 0.0);
    tu_assert_tensor(jac_clamp(ctx, x, -INFINITY, 0.0), TU_SHAPE(7),
                     TU_VALUES(-2, -1, -0.25, 0, 0, 0, 0), 0.0);
    tu_assert_tensor(jac_clamp(ctx, x, 0.0, INFINITY), TU_SHAPE(7),
                     TU_VALUES(0, 0, 0, 0, 0.5, 1, 3), 0.0);
    tu_assert_tensor(jac_clamp(ctx, x, -INFINITY, INFINITY), TU_SHAPE(7),
                     TU_VALUES(-2, -1, -0.25, 0, 0.5, 1, 3), 0.0);
    /* lo == hi is allowed: every element becomes the bound. */
    tu_assert_tensor(jac_clamp(ctx, x, 0.5, 0.5), TU_SHAPE(7),
                     TU_VALUES(0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5), 0.0);
    assert_true(
        isnan(jac_tensor_item(jac_clamp(ctx, jac_scalar(ctx, NAN), 0, 1))));
    tu_assert_no_error(ctx);
}

static void test_unary_ops_keep_rank0_and_empty_shapes(void **state)
{
    jac_ctx *ctx = *state;
    for (size_t i = 0; i < TU_COUNT(unary_ops); ++i) {
        jac_tensor *s = tu_scalar_leaf(ctx, 0.5);
        jac_tensor *y = unary_ops[i].fn(ctx, s);
        tu_assert_rank0(y);
        jac_tensor *e = jac_zeros(ctx, 2, TU_SHAPE(0, 3));
        tu_assert_ok(ctx, jac_set_requires_grad(e, true));
        jac_tensor *z = unary_ops[i].fn(ctx, e);
        tu_assert_shape(z, TU_SHAPE(0, 3));
        jac_tensor *sum = jac_sum(ctx, z);
        jac_tensor *g = NULL;
        tu_assert_ok(ctx, jac_grad(ctx, 1, &sum, NULL, 1, &e, 0, &g));
        tu_assert_shape(g, TU_SHAPE(0, 3));
    }
    jac_tensor *e = jac_zeros(ctx, 2, TU_SHAPE(2, 0));
    tu_assert_shape(jac_clamp(ctx, e, -1, 1), TU_SHAPE(2, 0));
    jac_tensor *r = jac_zeros(ctx, 1, TU_SHAPE(0));
    tu_assert_shape(jac_pow(ctx, e, r), TU_SHAPE(2, 0));
    tu_assert_shape(jac_maximum(ctx, r, e), TU_SHAPE(2, 0));
    tu_assert_shape(jac_atan2(ctx, jac_scalar(ctx, 1), e), TU_SHAPE(2, 0));
    tu_assert_no_error(ctx);
}

/* ---------------------------------------------------------------------- */
/* Unary derivatives                                                       */
/* ---------------------------------------------------------------------- */

static void
test_unary_first_and_second_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    for (size_t i = 0; i < TU_COUNT(unary_ops); ++i) {
        op_case c = {.unary = unary_ops[i].fn};
        for (size_t s = 0; s < TU_COUNT(elementwise_shapes); ++s) {
            jac_tensor *x =
                unary_leaf(ctx, &unary_ops[i], elementwise_shapes[s].ndim,
                           elementwise_shapes[s].shape, 0.4);
            check_op(ctx, c, 1, &x);
        }
    }
}

static void
test_clamp_derivatives_match_finite_difference_for_every_bound(void **state)
{
    jac_ctx *ctx = *state;
    const double bounds[][2] = {
        {-1.0, 1.0}, {-INFINITY, 0.5}, {-0.5, INFINITY}, {-INFINITY, INFINITY}};
    for (size_t b = 0; b < TU_COUNT(bounds); ++b) {
        op_case c = {.clamp = true, .lo = bounds[b][0], .hi = bounds[b][1]};
        for (size_t s = 0; s < TU_COUNT(elementwise_shapes); ++s) {
            jac_tensor *x = range_leaf_at(
                ctx, elementwise_shapes[s].ndim, elementwise_shapes[s].shape,
                -2.0, 2.0, 0.4, bounds[b], 2, __FILE__, __LINE__);
            check_op(ctx, c, 1, &x);
        }
    }
}

static void test_unary_batched_seeds_match_the_row_loop(void **state)
{
    jac_ctx *ctx = *state;
    for (size_t i = 0; i < TU_COUNT(unary_ops); ++i) {
        op_case c = {.unary = unary_ops[i].fn, .then_sin = true};
        jac_tensor *x = unary_leaf(ctx, &unary_ops[i], 2, TU_SHAPE(2, 3), 0.7);
        tu_assert_batched_matches_rows(ctx, run_case, &c, 1, &x, 1);
        jac_tensor *s = unary_leaf(ctx, &unary_ops[i], 0, NULL, 0.7);
        tu_assert_batched_matches_rows(ctx, run_case, &c, 1, &s, 1);
    }
    op_case c = {.clamp = true, .lo = -1.0, .hi = 0.5, .then_sin = true};
    jac_tensor *x =
        tu_leaf(ctx, TU_SHAPE(2, 3), TU_VALUES(-2, -0.5, 0.2, 0.7, 1.5, -1.2));
    tu_assert_batched_matches_rows(ctx, run_case, &c, 1, &x, 1);
}

static void test_abs_and_relu_have_zero_derivative_at_zero(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(4), TU_VALUES(-1.5, 0, 0.5, -0.0));
    jac_tensor *g = NULL;
    jac_tensor *y = jac_sum(ctx, jac_abs(ctx, x));
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 1, &x, 0, &g));
    tu_assert_tensor(g, TU_SHAPE(4), TU_VALUES(-1, 0, 1, 0), 0.0);
    y = jac_sum(ctx, jac_relu(ctx, x));
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 1, &x, 0, &g));
    tu_assert_tensor(g, TU_SHAPE(4), TU_VALUES(0, 0, 1, 0), 0.0);
}

static void test_clamp_passes_the_gradient_at_its_bounds_as_torch(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x =
        tu_leaf(ctx, TU_SHAPE(7), TU_VALUES(-2, -1, -0.25, 0, 0.5, 1, 3));
    jac_tensor *y = jac_sum(ctx, jac_clamp(ctx, x, -1.0, 0.5));
    jac_tensor *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 1, &x, 0, &g));
    /* torch.clamp(x, -1, 0.5).sum().backward() gives these. */
    tu_assert_tensor(g, TU_SHAPE(7), TU_VALUES(0, 1, 1, 1, 1, 0, 0), 0.0);
    /* With lo == hi the single point x == lo keeps the gradient. */
    y = jac_sum(ctx, jac_clamp(ctx, x, 0.5, 0.5));
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 1, &x, 0, &g));
    tu_assert_tensor(g, TU_SHAPE(7), TU_VALUES(0, 0, 0, 0, 1, 0, 0), 0.0);
    /* Infinite bounds: the identity. */
    y = jac_sum(ctx, jac_clamp(ctx, x, -INFINITY, INFINITY));
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 1, &x, 0, &g));
    tu_assert_tensor(g, TU_SHAPE(7), TU_VALUES(1, 1, 1, 1, 1, 1, 1), 0.0);
}

static void test_sign_has_zero_first_and_second_derivative(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2, 2), TU_VALUES(-1, 0, 2, 3));
    /* y = sum(sign(x) * x^2): dy/dx = 2 sign(x) x = 2 |x|, d2y/dx2 = 2
     * sign(x) on the diagonal; no contribution from sign's derivative. */
    jac_tensor *y =
        jac_sum(ctx, jac_mul(ctx, jac_sign(ctx, x), jac_square(ctx, x)));
    jac_tensor *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 1, &x, JAC_CREATE_GRAPH, &g));
    tu_assert_tensor(g, TU_SHAPE(2, 2), TU_VALUES(2, 0, 4, 6), 0.0);
    jac_tensor *h = jac_jacobian(ctx, g, x, 0);
    tu_assert_tensor(h, TU_SHAPE(2, 2, 2, 2),
                     TU_VALUES(-2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 2),
                     0.0);
    /* The gradient of sign alone is zeros of batch ++ x.shape. */
    jac_tensor *s = jac_sign(ctx, x);
    jac_tensor *seed = jac_ones(ctx, 3, TU_SHAPE(3, 2, 2));
    tu_assert_ok(ctx,
                 jac_grad(ctx, 1, &s, &seed, 1, &x, JAC_BATCHED_SEEDS, &g));
    tu_assert_tensor(g, TU_SHAPE(3, 2, 2),
                     TU_VALUES(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), 0.0);
}

static void
test_sigmoid_and_softplus_derivatives_stay_accurate_when_large(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x =
        tu_leaf(ctx, TU_SHAPE(6), TU_VALUES(-1000, -40, 0, 2, 40, 1000));
    jac_tensor *y = jac_sum(ctx, jac_sigmoid(ctx, x));
    jac_tensor *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 1, &x, 0, &g));
    /* e^-|x| / (1 + e^-|x|)^2; at x = 40 the plain y (1 - y) (as PyTorch)
     * would give 0. */
    const double want_sig[] = {0.0,
                               4.248354255291589e-18,
                               0.25,
                               0.1049935854035065,
                               4.248354255291589e-18,
                               0.0};
    tu_assert_close(jac_tensor_data(g), want_sig, 6, 0.0, 1e-14);
    y = jac_sum(ctx, jac_softplus(ctx, x));
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 1, &x, 0, &g));
    const double want_sp[] = {
        0.0, 4.248354255291589e-18, 0.5, 0.8807970779778824, 1.0, 1.0};
    tu_assert_close(jac_tensor_data(g), want_sp, 6, 0.0, 1e-15);
}

static void test_derivatives_at_domain_ends_are_infinite(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *g = NULL;
    jac_tensor *z = tu_scalar_leaf(ctx, 0.0);
    jac_tensor *y = jac_sqrt(ctx, z);
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 1, &z, 0, &g));
    assert_true(jac_tensor_item(g) == INFINITY);
    jac_tensor *ends = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(-1, 1));
    y = jac_sum(ctx, jac_asin(ctx, ends));
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 1, &ends, 0, &g));
    tu_assert_tensor(g, TU_SHAPE(2), TU_VALUES(INFINITY, INFINITY), 0.0);
    y = jac_sum(ctx, jac_acos(ctx, ends));
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 1, &ends, 0, &g));
    tu_assert_tensor(g, TU_SHAPE(2), TU_VALUES(-INFINITY, -INFINITY), 0.0);
}

static void test_unary_first_derivatives_match_closed_forms(void **state)
{
    jac_ctx *ctx = *state;
    /* x = 0.5 throughout; torch.autograd.grad gives the same values. */
    const struct {
        unary_fn fn;
        double want;
    } cases[] = {
        {jac_sqrt, 0.7071067811865475},     /* 1 / (2 sqrt(x)) */
        {jac_rsqrt, -1.4142135623730947},   /* -x^-1.5 / 2 */
        {jac_square, 1.0},                  /* 2x */
        {jac_reciprocal, -4.0},             /* -1 / x^2 */
        {jac_expm1, 1.6487212707001282},    /* e^x */
        {jac_log1p, 0.6666666666666666},    /* 1 / (1 + x) */
        {jac_tan, 1.2984464104095248},      /* 1 + tan^2 */
        {jac_asin, 1.1547005383792517},     /* 1 / sqrt(1 - x^2) */
        {jac_acos, -1.1547005383792517},    /* -1 / sqrt(1 - x^2) */
        {jac_atan, 0.8},                    /* 1 / (1 + x^2) */
        {jac_sinh, 1.1276259652063807},     /* cosh */
        {jac_cosh, 0.5210953054937474},     /* sinh */
        {jac_asinh, 0.8944271909999159},    /* 1 / sqrt(1 + x^2) */
        {jac_sigmoid, 0.2350037122015945},  /* s (1 - s) */
        {jac_softplus, 0.6224593312018546}, /* sigmoid */
        {jac_erf, 0.8787825789354448},      /* 2 / sqrt(pi) e^-x^2 */
    };
    for (size_t i = 0; i < TU_COUNT(cases); ++i) {
        jac_tensor *x = tu_scalar_leaf(ctx, 0.5);
        jac_tensor *y = cases[i].fn(ctx, x);
        jac_tensor *g = NULL;
        tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 1, &x, 0, &g));
        tu_assert_close(jac_tensor_data(g), &cases[i].want, 1, 0.0, 1e-14);
    }
}

/* ---------------------------------------------------------------------- */
/* Binary values against PyTorch                                           */
/* ---------------------------------------------------------------------- */

static void test_pow_broadcasts_and_matches_torch(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a =
        tu_tensor(ctx, TU_SHAPE(2, 3), TU_VALUES(0.5, 1, 2, 3, 0.25, 1.5));
    jac_tensor *b = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(2, -1, 0.5));
    tu_assert_tensor(
        jac_pow(ctx, a, b), TU_SHAPE(2, 3),
        TU_VALUES(0.25, 1.0, 1.4142135623730951, 9.0, 4.0, 1.224744871391589),
        1e-15);
    jac_tensor *col = tu_tensor(ctx, TU_SHAPE(2, 1), TU_VALUES(0, 2));
    jac_tensor *row = tu_tensor(ctx, TU_SHAPE(1, 3), TU_VALUES(0, 1, 2.5));
    tu_assert_tensor(jac_pow(ctx, col, row), TU_SHAPE(2, 3),
                     TU_VALUES(1, 0, 0, 1, 2, 5.656854249492381), 1e-15);
    jac_tensor *neg = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(-2, -1.5, -3));
    jac_tensor *e = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(3, 2, 0.5));
    tu_assert_tensor(jac_pow(ctx, neg, e), TU_SHAPE(3),
                     TU_VALUES(-8, 2.25, NAN), 0.0);
    tu_assert_scalar(jac_pow(ctx, jac_scalar(ctx, 2), jac_scalar(ctx, 10)),
                     1024, 0.0);
    tu_assert_no_error(ctx);
}

static void test_maximum_and_minimum_broadcast_and_match_torch(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *m =
        tu_tensor(ctx, TU_SHAPE(2, 3), TU_VALUES(1, -2, 3, 0.5, 4, -1));
    jac_tensor *r = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(0.5, -2, 5));
    tu_assert_tensor(jac_maximum(ctx, m, r), TU_SHAPE(2, 3),
                     TU_VALUES(1, -2, 5, 0.5, 4, 5), 0.0);
    tu_assert_tensor(jac_maximum(ctx, r, m), TU_SHAPE(2, 3),
                     TU_VALUES(1, -2, 5, 0.5, 4, 5), 0.0);
    tu_assert_tensor(jac_minimum(ctx, m, r), TU_SHAPE(2, 3),
                     TU_VALUES(0.5, -2, 3, 0.5, -2, -1), 0.0);
    tu_assert_scalar(jac_minimum(ctx, jac_scalar(ctx, 2), jac_scalar(ctx, -3)),
                     -3, 0.0);
    /* NaN propagates from either side, as in PyTorch. */
    jac_tensor *n = tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(NAN, 1));
    jac_tensor *o = tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(1, NAN));
    tu_assert_tensor(jac_maximum(ctx, n, o), TU_SHAPE(2), TU_VALUES(NAN, NAN),
                     0.0);
    tu_assert_tensor(jac_minimum(ctx, n, o), TU_SHAPE(2), TU_VALUES(NAN, NAN),
                     0.0);
    tu_assert_no_error(ctx);
}

static void
test_atan2_broadcasts_and_matches_torch_in_every_quadrant(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *y = tu_tensor(ctx, TU_SHAPE(2, 1), TU_VALUES(1, -1));
    jac_tensor *x = tu_tensor(ctx, TU_SHAPE(4), TU_VALUES(1, -1, 0, 2));
    tu_assert_tensor(jac_atan2(ctx, y, x), TU_SHAPE(2, 4),
                     TU_VALUES(0.7853981633974483, 2.356194490192345,
                               1.5707963267948966, 0.4636476090008061,
                               -0.7853981633974483, -2.356194490192345,
                               -1.5707963267948966, -0.4636476090008061),
                     1e-15);
    jac_tensor *a = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(0, 0, 3));
    jac_tensor *b = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(0, -2, 0));
    tu_assert_tensor(jac_atan2(ctx, a, b), TU_SHAPE(3),
                     TU_VALUES(0.0, 3.141592653589793, 1.5707963267948966),
                     1e-15);
    tu_assert_no_error(ctx);
}

/* ---------------------------------------------------------------------- */
/* Binary derivatives                                                      */
/* ---------------------------------------------------------------------- */

/* A binary op and the intervals its two inputs are sampled from. */
typedef struct binary_spec {
    binary_fn fn;
    double lo_a, hi_a, lo_b, hi_b;
} binary_spec;

static const binary_spec binary_ops[] = {
    {jac_pow, 0.2, 1.8, -1.5, 2.5},
    {jac_maximum, -1.0, 1.0, -1.0, 1.0},
    {jac_minimum, -1.0, 1.0, -1.0, 1.0},
    {jac_atan2, -2.0, 2.0, -2.0, 2.0},
};

/* Fails unless every broadcast pair (a, b) is away from ties (maximum,
 * minimum) and from the origin (atan2), so finite differences are valid. */
static void assert_pairs_are_smooth(jac_ctx *ctx, jac_tensor *a, jac_tensor *b,
                                    const char *file, int line)
{
    bool was = jac_set_grad_enabled(ctx, false);
    jac_tensor *d = jac_abs(ctx, jac_sub(ctx, a, b));
    jac_tensor *r = jac_add(ctx, jac_square(ctx, a), jac_square(ctx, b));
    jac_set_grad_enabled(ctx, was);
    tu_assert_no_error_at(ctx, file, line);
    for (int64_t i = 0; i < jac_tensor_numel(d); ++i) {
        if (jac_tensor_data(d)[i] < KINK_DISTANCE ||
            jac_tensor_data(r)[i] < KINK_DISTANCE) {
            print_error("test bug: input pair %lld is at a tie or at 0\n",
                        (long long)i);
            tu_fail_at(file, line);
        }
    }
}

static void check_binary_at(jac_ctx *ctx, const binary_spec *op, int ndim_a,
                            const int64_t *shape_a, int ndim_b,
                            const int64_t *shape_b, const char *file, int line)
{
    jac_tensor *in[2] = {
        range_leaf_at(ctx, ndim_a, shape_a, op->lo_a, op->hi_a, 0.1, NULL, 0,
                      file, line),
        range_leaf_at(ctx, ndim_b, shape_b, op->lo_b, op->hi_b, 1.3, NULL, 0,
                      file, line),
    };
    assert_pairs_are_smooth(ctx, in[0], in[1], file, line);
    op_case c = {.binary = op->fn};
    check_op_at(ctx, c, 2, in, file, line);
}
#define check_binary(ctx, op, shape_a, shape_b)                                \
    check_binary_at((ctx), (op), (int)TU_COUNT(shape_a), (shape_a),            \
                    (int)TU_COUNT(shape_b), (shape_b), __FILE__, __LINE__)

static void
test_binary_derivatives_match_finite_difference_when_broadcasting(void **state)
{
    jac_ctx *ctx = *state;
    for (size_t i = 0; i < TU_COUNT(binary_ops); ++i) {
        const binary_spec *op = &binary_ops[i];
        check_binary(ctx, op, TU_SHAPE(2, 3), TU_SHAPE(2, 3));
        check_binary(ctx, op, TU_SHAPE(2, 3), TU_SHAPE(3));
        check_binary(ctx, op, TU_SHAPE(3), TU_SHAPE(2, 3));
        check_binary(ctx, op, TU_SHAPE(2, 1), TU_SHAPE(1, 3));
        check_binary(ctx, op, TU_SHAPE(2, 1, 3), TU_SHAPE(4, 1));
        check_binary_at(ctx, op, 0, NULL, 2, TU_SHAPE(2, 3), __FILE__,
                        __LINE__);
        check_binary_at(ctx, op, 2, TU_SHAPE(3, 2), 0, NULL, __FILE__,
                        __LINE__);
        check_binary_at(ctx, op, 0, NULL, 0, NULL, __FILE__, __LINE__);
    }
}

static void test_binary_batched_seeds_match_the_row_loop(void **state)
{
    jac_ctx *ctx = *state;
    for (size_t i = 0; i < TU_COUNT(binary_ops); ++i) {
        const binary_spec *op = &binary_ops[i];
        op_case c = {.binary = op->fn, .then_sin = true};
        jac_tensor *in[2] = {
            range_leaf_at(ctx, 3, TU_SHAPE(2, 1, 3), op->lo_a, op->hi_a, 0.1,
                          NULL, 0, __FILE__, __LINE__),
            range_leaf_at(ctx, 2, TU_SHAPE(4, 1), op->lo_b, op->hi_b, 1.3, NULL,
                          0, __FILE__, __LINE__),
        };
        assert_pairs_are_smooth(ctx, in[0], in[1], __FILE__, __LINE__);
        tu_assert_batched_matches_rows(ctx, run_case, &c, 2, in, 1);
        jac_tensor *same[2] = {
            range_leaf_at(ctx, 2, TU_SHAPE(2, 3), op->lo_a, op->hi_a, 0.1, NULL,
                          0, __FILE__, __LINE__),
            range_leaf_at(ctx, 2, TU_SHAPE(2, 3), op->lo_b, op->hi_b, 1.3, NULL,
                          0, __FILE__, __LINE__),
        };
        tu_assert_batched_matches_rows(ctx, run_case, &c, 2, same, 1);
    }
}

static void
test_broadcast_maximum_jacobian_matches_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *in[2] = {
        tu_leaf(ctx, TU_SHAPE(2, 1), TU_VALUES(0.3, -0.7)),
        tu_leaf(ctx, TU_SHAPE(3), TU_VALUES(-0.2, 0.5, 0.9)),
    };
    op_case c = {.binary = jac_maximum};
    tu_assert_jacobian_matches_fd(ctx, run_case, &c, 2, in, 1, 0, 0);
    tu_assert_jacobian_matches_fd(ctx, run_case, &c, 2, in, 1, 0, 1);
    c.binary = jac_pow;
    in[0] = tu_leaf(ctx, TU_SHAPE(2, 1), TU_VALUES(0.3, 1.7));
    tu_assert_jacobian_matches_fd(ctx, run_case, &c, 2, in, 1, 0, 0);
    tu_assert_jacobian_matches_fd(ctx, run_case, &c, 2, in, 1, 0, 1);
}

static void
test_maximum_and_minimum_split_the_gradient_evenly_at_ties(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = tu_leaf(ctx, TU_SHAPE(3), TU_VALUES(1, 2, 3));
    jac_tensor *b = tu_leaf(ctx, TU_SHAPE(3), TU_VALUES(1, 1, 4));
    jac_tensor *in[2] = {a, b};
    jac_tensor *g[2] = {NULL, NULL};
    /* torch.maximum gives (0.5, 1, 0) and (0.5, 0, 1). */
    jac_tensor *y = jac_sum(ctx, jac_maximum(ctx, a, b));
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 2, in, 0, g));
    tu_assert_tensor(g[0], TU_SHAPE(3), TU_VALUES(0.5, 1, 0), 0.0);
    tu_assert_tensor(g[1], TU_SHAPE(3), TU_VALUES(0.5, 0, 1), 0.0);
    y = jac_sum(ctx, jac_minimum(ctx, a, b));
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 2, in, 0, g));
    tu_assert_tensor(g[0], TU_SHAPE(3), TU_VALUES(0.5, 0, 1), 0.0);
    tu_assert_tensor(g[1], TU_SHAPE(3), TU_VALUES(0.5, 1, 0), 0.0);
    /* Broadcast ties add up over the stretched axis: the scalar 2 ties with
     * one element and beats one. */
    jac_tensor *s = tu_scalar_leaf(ctx, 2);
    jac_tensor *in2[2] = {s, a};
    y = jac_sum(ctx, jac_maximum(ctx, s, a));
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 2, in2, 0, g));
    tu_assert_scalar(g[0], 1.5, 0.0);
    tu_assert_tensor(g[1], TU_SHAPE(3), TU_VALUES(0, 0.5, 1), 0.0);
    /* maximum(x, x) is x: the halves add up to 1. */
    y = jac_sum(ctx, jac_maximum(ctx, a, a));
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 1, &a, 0, g));
    tu_assert_tensor(g[0], TU_SHAPE(3), TU_VALUES(1, 1, 1), 0.0);
}

static void test_pow_first_derivatives_follow_the_header_at_zero(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = tu_leaf(ctx, TU_SHAPE(5), TU_VALUES(0, 0, 0, 0, 2));
    jac_tensor *b = tu_leaf(ctx, TU_SHAPE(5), TU_VALUES(0, 2, 1, 0.5, 0));
    jac_tensor *in[2] = {a, b};
    jac_tensor *y = jac_pow(ctx, a, b);
    tu_assert_tensor(y, TU_SHAPE(5), TU_VALUES(1, 0, 0, 0, 1), 0.0);
    jac_tensor *g[2] = {NULL, NULL};
    tu_assert_ok(ctx, jac_grad(ctx, 1, (jac_tensor *[]){jac_sum(ctx, y)}, NULL,
                               2, in, 0, g));
    /* In a: b a^(b-1), 0 where b == 0 (PyTorch agrees). */
    tu_assert_tensor(g[0], TU_SHAPE(5), TU_VALUES(0, 0, 1, INFINITY, 0), 0.0);
    /* In b: a^b log a, taken as 0 where a == 0 and b >= 0 (PyTorch agrees,
     * also at a == b == 0 where the formula is 1 * log(0)). */
    tu_assert_tensor(g[1], TU_SHAPE(5),
                     TU_VALUES(0, 0, 0, 0, 0.6931471805599453), 1e-16);
}

static void
test_pow_second_derivatives_are_exact_at_zero_base_and_exponent(void **state)
{
    jac_ctx *ctx = *state;
    /* a^b at (a, b) = (0, 2): d2/da2 = b (b - 1) a^(b-2) = 2; and at
     * (0, 3): 0. The cross derivative a^(b-1) (1 + b log a) tends to 0. */
    const double bs[2] = {2, 3};
    const double want_aa[2] = {2, 0};
    for (int k = 0; k < 2; ++k) {
        jac_tensor *in[2] = {tu_scalar_leaf(ctx, 0.0),
                             tu_scalar_leaf(ctx, bs[k])};
        jac_tensor *y = jac_pow(ctx, in[0], in[1]);
        jac_tensor *g[2] = {NULL, NULL};
        tu_assert_ok(ctx,
                     jac_grad(ctx, 1, &y, NULL, 2, in, JAC_CREATE_GRAPH, g));
        tu_assert_scalar(g[0], 0.0, 0.0);
        tu_assert_scalar(g[1], 0.0, 0.0);
        jac_tensor *h[2] = {NULL, NULL};
        tu_assert_ok(ctx,
                     jac_grad(ctx, 1, &g[0], NULL, 2, in, JAC_ALLOW_UNUSED, h));
        tu_assert_scalar(h[0], want_aa[k], 0.0);
        tu_assert_scalar(h[1], 0.0, 0.0);
    }
    /* At (2, 0) the whole Hessian [[0, 1/a], [1/a, log(a)^2]]: the b == 0
     * convention must not cut the cross term (PyTorch's does). */
    jac_tensor *in[2] = {tu_scalar_leaf(ctx, 2.0), tu_scalar_leaf(ctx, 0.0)};
    jac_tensor *y = jac_pow(ctx, in[0], in[1]);
    jac_tensor *g[2] = {NULL, NULL};
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 2, in, JAC_CREATE_GRAPH, g));
    tu_assert_scalar(g[0], 0.0, 0.0);
    tu_assert_scalar(g[1], 0.6931471805599453, 1e-16);
    jac_tensor *h[2] = {NULL, NULL};
    tu_assert_ok(ctx, jac_grad(ctx, 1, &g[0], NULL, 2, in, 0, h));
    tu_assert_scalar(h[0], 0.0, 0.0);
    tu_assert_scalar(h[1], 0.5, 1e-16);
    tu_assert_ok(ctx, jac_grad(ctx, 1, &g[1], NULL, 2, in, 0, h));
    tu_assert_scalar(h[0], 0.5, 1e-16);
    tu_assert_scalar(h[1], 0.4804530139182014, 1e-15);
}

static void
test_pow_with_a_constant_integer_exponent_takes_negative_bases(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = tu_leaf(ctx, TU_SHAPE(3), TU_VALUES(-1.5, 0.5, 2));
    jac_tensor *b = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(3, 2, -1));
    jac_tensor *y = jac_sum(ctx, jac_pow(ctx, a, b));
    jac_tensor *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 1, &a, 0, &g));
    tu_assert_tensor(g, TU_SHAPE(3), TU_VALUES(6.75, 1, -0.25), 1e-15);
    op_case c = {.exponent = b};
    check_op(ctx, c, 1, &a);
    jac_tensor *neg = tu_leaf(ctx, TU_SHAPE(2, 3),
                              TU_VALUES(-1.5, -0.5, -1.2, -0.8, -1.7, -0.3));
    check_op(ctx, c, 1, &neg);
    c.exponent = jac_scalar(ctx, 2.0);
    check_op(ctx, c, 1, &neg);
}

static void test_pow_of_a_tensor_with_itself_counts_both_roles(void **state)
{
    jac_ctx *ctx = *state;
    /* d/dx x^x = x^x (log x + 1); at x = 2: 4 (log 2 + 1). */
    jac_tensor *x = tu_scalar_leaf(ctx, 2.0);
    jac_tensor *y = jac_pow(ctx, x, x);
    jac_tensor *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 1, &x, 0, &g));
    tu_assert_scalar(g, 4.0 * (0.6931471805599453 + 1.0), 1e-14);
    op_case c = {.binary = jac_pow, .same_input = true};
    jac_tensor *v = tu_leaf(ctx, TU_SHAPE(3), TU_VALUES(0.4, 1.1, 1.9));
    check_op(ctx, c, 1, &v);
}

static void test_atan2_derivative_is_nan_at_the_origin(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = tu_leaf(ctx, TU_SHAPE(3), TU_VALUES(0, 0.3, -1));
    jac_tensor *b = tu_leaf(ctx, TU_SHAPE(3), TU_VALUES(0, 0.4, 0));
    jac_tensor *in[2] = {a, b};
    jac_tensor *y = jac_sum(ctx, jac_atan2(ctx, a, b));
    jac_tensor *g[2] = {NULL, NULL};
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 2, in, 0, g));
    /* PyTorch: (nan, 1.6, 0) and (nan, -1.2, 1). */
    tu_assert_tensor(g[0], TU_SHAPE(3), TU_VALUES(NAN, 1.6, 0), 1e-15);
    tu_assert_tensor(g[1], TU_SHAPE(3), TU_VALUES(NAN, -1.2, 1), 1e-15);
}

/* ---------------------------------------------------------------------- */
/* Errors                                                                  */
/* ---------------------------------------------------------------------- */

/* Fails unless the op returned NULL and ctx holds code with a message that
 * contains every given fragment; clears the error. */
static void assert_failed_at(jac_ctx *ctx, const jac_tensor *result,
                             jac_status code, const char *const *fragments,
                             const char *file, int line)
{
    if (result != NULL) {
        print_error("the op returned a tensor, want NULL\n");
        tu_fail_at(file, line);
    }
    tu_assert_error_at(ctx, code, file, line);
    for (size_t i = 0; fragments[i] != NULL; ++i) {
        tu_assert_contains_at(jac_errmsg(ctx), fragments[i], file, line);
    }
    jac_clear_error(ctx);
}
#define assert_failed(ctx, result, code, ...)                                  \
    assert_failed_at((ctx), (result), (code),                                  \
                     (const char *const[]){__VA_ARGS__, NULL}, __FILE__,       \
                     __LINE__)

static void
test_binary_ops_report_a_broadcast_mismatch_naming_op_and_shapes(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = jac_zeros(ctx, 2, TU_SHAPE(2, 3));
    jac_tensor *b = jac_zeros(ctx, 1, TU_SHAPE(4));
    assert_failed(ctx, jac_pow(ctx, a, b), JAC_ERR_SHAPE, "pow", "(2, 3)",
                  "(4)");
    assert_failed(ctx, jac_maximum(ctx, b, a), JAC_ERR_SHAPE, "maximum", "(4)",
                  "(2, 3)");
    assert_failed(ctx, jac_minimum(ctx, a, b), JAC_ERR_SHAPE, "minimum",
                  "(2, 3)", "(4)");
    jac_tensor *c = jac_zeros(ctx, 2, TU_SHAPE(3, 1));
    jac_tensor *d = jac_zeros(ctx, 3, TU_SHAPE(2, 2, 3));
    assert_failed(ctx, jac_atan2(ctx, c, d), JAC_ERR_SHAPE, "atan2", "(3, 1)",
                  "(2, 2, 3)");
}

static void test_clamp_rejects_crossed_or_nan_bounds(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = jac_zeros(ctx, 2, TU_SHAPE(2, 3));
    assert_failed(ctx, jac_clamp(ctx, x, 1.0, -1.0), JAC_ERR_VALUE, "clamp",
                  "(2, 3)");
    assert_failed(ctx, jac_clamp(ctx, x, NAN, 1.0), JAC_ERR_VALUE, "clamp");
    assert_failed(ctx, jac_clamp(ctx, x, 0.0, NAN), JAC_ERR_VALUE, "clamp");
    assert_failed(ctx, jac_clamp(ctx, x, INFINITY, -INFINITY), JAC_ERR_VALUE,
                  "clamp");
}

static void
test_ops_given_null_name_themselves_and_keep_the_first_error(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = jac_zeros(ctx, 1, TU_SHAPE(2));
    for (size_t i = 0; i < TU_COUNT(unary_ops); ++i) {
        assert_failed(ctx, unary_ops[i].fn(ctx, NULL), JAC_ERR_NULL_ARG,
                      unary_ops[i].name);
    }
    assert_failed(ctx, jac_clamp(ctx, NULL, 0, 1), JAC_ERR_NULL_ARG, "clamp");
    const struct {
        binary_fn fn;
        const char *name;
    } binaries[] = {{jac_pow, "pow"},
                    {jac_maximum, "maximum"},
                    {jac_minimum, "minimum"},
                    {jac_atan2, "atan2"}};
    for (size_t i = 0; i < TU_COUNT(binaries); ++i) {
        assert_failed(ctx, binaries[i].fn(ctx, x, NULL), JAC_ERR_NULL_ARG,
                      binaries[i].name);
        assert_failed(ctx, binaries[i].fn(ctx, NULL, x), JAC_ERR_NULL_ARG,
                      binaries[i].name);
    }
    /* A NULL flowing through an expression keeps the first error. */
    jac_tensor *bad = jac_pow(ctx, x, jac_zeros(ctx, 1, TU_SHAPE(3)));
    assert_null(bad);
    assert_null(jac_sqrt(ctx, jac_maximum(ctx, bad, x)));
    tu_assert_error(ctx, JAC_ERR_SHAPE);
    tu_assert_contains(jac_errmsg(ctx), "pow");
    jac_clear_error(ctx);
    assert_null(jac_sqrt(NULL, x));
}

static void test_ops_reject_a_tensor_of_another_context(void **state)
{
    jac_ctx *ctx = *state;
    jac_ctx *other = jac_ctx_new();
    assert_non_null(other);
    jac_tensor *x = jac_zeros(ctx, 1, TU_SHAPE(2));
    jac_tensor *y = jac_zeros(other, 1, TU_SHAPE(2));
    assert_failed(ctx, jac_tanh(ctx, x) ? jac_erf(ctx, y) : NULL,
                  JAC_ERR_CONTEXT, "erf");
    assert_failed(ctx, jac_atan2(ctx, x, y), JAC_ERR_CONTEXT, "atan2");
    assert_failed(ctx, jac_clamp(ctx, y, 0, 1), JAC_ERR_CONTEXT, "clamp");
    jac_ctx_free(other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_abs_sign_square_and_reciprocal_match_torch),
        TU_TEST(test_sqrt_and_rsqrt_match_torch_at_zero_and_below),
        TU_TEST(test_expm1_and_log1p_match_torch_and_stay_accurate_near_zero),
        TU_TEST(test_tan_asin_acos_and_atan_match_torch),
        TU_TEST(test_sinh_cosh_and_asinh_match_torch),
        TU_TEST(test_sigmoid_matches_torch_without_overflow),
        TU_TEST(test_relu_matches_torch_and_propagates_nan),
        TU_TEST(test_softplus_is_the_exact_log1p_exp_without_torch_threshold),
        TU_TEST(test_erf_matches_torch),
        TU_TEST(test_clamp_matches_torch_with_finite_and_infinite_bounds),
        TU_TEST(test_unary_ops_keep_rank0_and_empty_shapes),
        TU_TEST(
            test_unary_first_and_second_derivatives_match_finite_difference),
        TU_TEST(test_clamp_derivatives_match_finite_difference_for_every_bound),
        TU_TEST(test_unary_batched_seeds_match_the_row_loop),
        TU_TEST(test_abs_and_relu_have_zero_derivative_at_zero),
        TU_TEST(test_clamp_passes_the_gradient_at_its_bounds_as_torch),
        TU_TEST(test_sign_has_zero_first_and_second_derivative),
        TU_TEST(test_sigmoid_and_softplus_derivatives_stay_accurate_when_large),
        TU_TEST(test_derivatives_at_domain_ends_are_infinite),
        TU_TEST(test_unary_first_derivatives_match_closed_forms),
        TU_TEST(test_pow_broadcasts_and_matches_torch),
        TU_TEST(test_maximum_and_minimum_broadcast_and_match_torch),
        TU_TEST(test_atan2_broadcasts_and_matches_torch_in_every_quadrant),
        TU_TEST(
            test_binary_derivatives_match_finite_difference_when_broadcasting),
        TU_TEST(test_binary_batched_seeds_match_the_row_loop),
        TU_TEST(test_broadcast_maximum_jacobian_matches_finite_difference),
        TU_TEST(test_maximum_and_minimum_split_the_gradient_evenly_at_ties),
        TU_TEST(test_pow_first_derivatives_follow_the_header_at_zero),
        TU_TEST(
            test_pow_second_derivatives_are_exact_at_zero_base_and_exponent),
        TU_TEST(test_pow_with_a_constant_integer_exponent_takes_negative_bases),
        TU_TEST(test_pow_of_a_tensor_with_itself_counts_both_roles),
        TU_TEST(test_atan2_derivative_is_nan_at_the_origin),
        TU_TEST(
            test_binary_ops_report_a_broadcast_mismatch_naming_op_and_shapes),
        TU_TEST(test_clamp_rejects_crossed_or_nan_bounds),
        TU_TEST(test_ops_given_null_name_themselves_and_keep_the_first_error),
        TU_TEST(test_ops_reject_a_tensor_of_another_context),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
