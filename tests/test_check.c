/*
 * The derivative checkers: they pass on correct functions, fail with a
 * message that locates the bad derivative on functions that hide part of
 * their graph, honour their options and leave the inputs as they were.
 *
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"

/* outputs: a * b + sin(a), sum(exp(b) * a) */
static jac_status correct_fn(jac_ctx *ctx, jac_tensor *const *in,
                             jac_tensor **out, void *user)
{
    (void)user;
    out[0] = jac_add(ctx, jac_mul(ctx, in[0], in[1]), jac_sin(ctx, in[0]));
    out[1] = jac_sum(ctx, jac_mul(ctx, jac_exp(ctx, in[1]), in[0]));
    return out[0] && out[1] ? JAC_OK : jac_errcode(ctx);
}

/* y = x * detach(x): the analytic derivative is x, the true one 2 x. */
static jac_status hidden_fn(jac_ctx *ctx, jac_tensor *const *in,
                            jac_tensor **out, void *user)
{
    (void)user;
    out[0] = jac_mul(ctx, in[0], jac_detach(ctx, in[0]));
    return out[0] ? JAC_OK : jac_errcode(ctx);
}

/* out[0] = a + concat(b[0:1]^2, b[1:2] * detach(b[1:2])): only the
 * derivative of element 1 of output 0 with respect to element 1 of input 1
 * is wrong. */
static jac_status partly_hidden_fn(jac_ctx *ctx, jac_tensor *const *in,
                                   jac_tensor **out, void *user)
{
    (void)user;
    jac_tensor *b = in[1];
    jac_tensor *b0 = jac_slice(ctx, b, 0, 0, 1, 1);
    jac_tensor *b1 = jac_slice(ctx, b, 0, 1, 2, 1);
    jac_tensor *parts[2] = {jac_mul(ctx, b0, b0),
                            jac_mul(ctx, b1, jac_detach(ctx, b1))};
    out[0] = jac_add(ctx, in[0], jac_concat(ctx, 2, parts, 0));
    return out[0] ? JAC_OK : jac_errcode(ctx);
}

/* Fails every call with JAC_ERR_VALUE. */
static jac_status failing_fn(jac_ctx *ctx, jac_tensor *const *in,
                             jac_tensor **out, void *user)
{
    (void)ctx;
    (void)in;
    (void)out;
    (void)user;
    return JAC_ERR_VALUE;
}

/* Returns JAC_OK without writing its output. */
static jac_status forgetful_fn(jac_ctx *ctx, jac_tensor *const *in,
                               jac_tensor **out, void *user)
{
    (void)ctx;
    (void)in;
    (void)out;
    (void)user;
    return JAC_OK;
}

/* y = reshape(x): the output shares the input's values. */
static jac_status reshape_fn(jac_ctx *ctx, jac_tensor *const *in,
                             jac_tensor **out, void *user)
{
    (void)user;
    out[0] = jac_reshape(ctx, in[0], 1, TU_SHAPE(-1));
    return out[0] ? JAC_OK : jac_errcode(ctx);
}

static void test_gradcheck_passes_on_a_correct_function(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *in[2] = {
        tu_leaf(ctx, TU_SHAPE(2, 2), TU_VALUES(0.1, 0.2, 0.3, 0.4)),
        tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(-0.5, 0.7))};
    assert_int_equal(jac_gradcheck(ctx, correct_fn, NULL, 2, in, 2, NULL),
                     JAC_OK);
    tu_assert_no_error(ctx);
    assert_int_equal(jac_gradgradcheck(ctx, correct_fn, NULL, 2, in, 2, NULL),
                     JAC_OK);
    tu_assert_no_error(ctx);
}

static void
test_gradcheck_fails_on_a_function_that_hides_its_graph(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1.25, 2));
    assert_int_equal(jac_gradcheck(ctx, hidden_fn, NULL, 1, &x, 1, NULL),
                     JAC_ERR_CHECK_FAILED);
    tu_assert_error(ctx, JAC_ERR_CHECK_FAILED);
    /* The first bad derivative: element 0 by element 0, analytic 1.25
     * against numeric 2.5. */
    const char *msg = jac_errmsg(ctx);
    tu_assert_contains(msg, "gradcheck");
    tu_assert_contains(msg, "input 0");
    tu_assert_contains(msg, "element 0");
    tu_assert_contains(msg, "1.25");
    tu_assert_contains(msg, "2.5");
}

static void test_gradcheck_message_locates_the_bad_element(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *in[2] = {tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(0.5, 0.5)),
                         tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1.5, 1.75))};
    assert_int_equal(jac_gradcheck(ctx, partly_hidden_fn, NULL, 2, in, 1, NULL),
                     JAC_ERR_CHECK_FAILED);
    /* d output 0 [1] / d input 1 [1]: analytic 1.75, numeric 3.5. */
    const char *msg = jac_errmsg(ctx);
    tu_assert_contains(msg, "output 0");
    tu_assert_contains(msg, "input 1");
    tu_assert_contains(msg, "element 1");
    tu_assert_contains(msg, "1.75");
    tu_assert_contains(msg, "3.5");
}

static void
test_gradgradcheck_fails_on_a_function_that_hides_its_graph(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1.25, 2));
    assert_int_equal(jac_gradgradcheck(ctx, hidden_fn, NULL, 1, &x, 1, NULL),
                     JAC_ERR_CHECK_FAILED);
    tu_assert_error(ctx, JAC_ERR_CHECK_FAILED);
    tu_assert_contains(jac_errmsg(ctx), "gradgradcheck");
}

static void test_gradgradcheck_passes_for_every_seed(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *in[2] = {tu_smooth_leaf(ctx, TU_SHAPE(3), 0.2),
                         tu_smooth_leaf(ctx, TU_SHAPE(3), 1.2)};
    for (uint64_t seed = 0; seed < 5; ++seed) {
        jac_check_opts opts = {1e-6, 1e-5, 1e-3, seed};
        assert_int_equal(
            jac_gradgradcheck(ctx, correct_fn, NULL, 2, in, 2, &opts), JAC_OK);
    }
    tu_assert_no_error(ctx);
}

static void test_tolerances_in_the_options_are_used(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1.25, 2));
    /* Loose enough to accept the hidden derivative (off by x <= 2). */
    jac_check_opts loose = {1e-6, 2.5, 0.0, 0};
    assert_int_equal(jac_gradcheck(ctx, hidden_fn, NULL, 1, &x, 1, &loose),
                     JAC_OK);
    tu_assert_no_error(ctx);
    /* A huge step and no tolerance fail a correct function: exp(x) with
     * eps = 0.5 is off by about eps^2 / 6 exp(x). */
    jac_tensor *in[2] = {
        tu_leaf(ctx, TU_SHAPE(2, 2), TU_VALUES(0.1, 0.2, 0.3, 0.4)),
        tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(-0.5, 0.7))};
    jac_check_opts crude = {0.5, 1e-12, 1e-12, 0};
    assert_int_equal(jac_gradcheck(ctx, correct_fn, NULL, 2, in, 2, &crude),
                     JAC_ERR_CHECK_FAILED);
}

static void test_gradcheck_leaves_the_inputs_exactly_as_they_were(void **state)
{
    jac_ctx *ctx = *state;
    const double a_values[4] = {0.1, 0.2, 0.3, 0.4};
    const double b_values[2] = {-0.5, 0.7};
    jac_tensor *in[2] = {
        tu_leaf(ctx, TU_SHAPE(2, 2), TU_VALUES(0.1, 0.2, 0.3, 0.4)),
        tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(-0.5, 0.7))};
    size_t tensors = jac_ctx_tensor_count(ctx);
    size_t tape = jac_ctx_tape_length(ctx);
    tu_gradcheck(ctx, correct_fn, NULL, 2, in, 2);
    tu_gradgradcheck(ctx, correct_fn, NULL, 2, in, 2);
    assert_memory_equal(jac_tensor_data(in[0]), a_values, sizeof a_values);
    assert_memory_equal(jac_tensor_data(in[1]), b_values, sizeof b_values);
    assert_true(jac_requires_grad(in[0]));
    assert_true(jac_is_leaf(in[0]));
    assert_null(jac_tensor_grad(in[0]));
    /* Nothing left behind. */
    assert_int_equal(jac_ctx_tensor_count(ctx), tensors);
    assert_int_equal(jac_ctx_tape_length(ctx), tape);
    /* And after a failed check too. */
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1.25, 2));
    tensors = jac_ctx_tensor_count(ctx);
    assert_int_equal(jac_gradcheck(ctx, hidden_fn, NULL, 1, &x, 1, NULL),
                     JAC_ERR_CHECK_FAILED);
    assert_memory_equal(jac_tensor_data(x), TU_VALUES(1.25, 2),
                        2 * sizeof(double));
    assert_int_equal(jac_ctx_tensor_count(ctx), tensors);
}

static void
test_gradcheck_of_an_output_that_shares_the_input_values(void **state)
{
    jac_ctx *ctx = *state;
    /* The checker moves the input to evaluate f(x + eps) and f(x - eps);
     * an output that is a view of the input must still see the difference. */
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2, 2), TU_VALUES(1, 2, 3, 4));
    tu_gradcheck(ctx, reshape_fn, NULL, 1, &x, 1);
    tu_gradgradcheck(ctx, reshape_fn, NULL, 1, &x, 1);
}

static void test_gradcheck_reports_a_failing_callback(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1, 2));
    assert_int_equal(jac_gradcheck(ctx, failing_fn, NULL, 1, &x, 1, NULL),
                     JAC_ERR_CALLBACK);
    tu_assert_error(ctx, JAC_ERR_CALLBACK);
    tu_assert_contains(jac_errmsg(ctx), "JAC_ERR_VALUE");
    jac_clear_error(ctx);
    assert_int_equal(jac_gradgradcheck(ctx, failing_fn, NULL, 1, &x, 1, NULL),
                     JAC_ERR_CALLBACK);
    jac_clear_error(ctx);
    assert_int_equal(jac_gradcheck(ctx, forgetful_fn, NULL, 1, &x, 1, NULL),
                     JAC_ERR_CALLBACK);
    tu_assert_error(ctx, JAC_ERR_CALLBACK);
    tu_assert_contains(jac_errmsg(ctx), "output 0");
}

static void test_gradcheck_rejects_bad_arguments(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1, 2));
    jac_tensor *c = tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(1, 2));
    assert_int_equal(jac_gradcheck(ctx, hidden_fn, NULL, 1, &c, 1, NULL),
                     JAC_ERR_NO_GRAD);
    tu_assert_error(ctx, JAC_ERR_NO_GRAD);
    jac_clear_error(ctx);
    assert_int_equal(jac_gradgradcheck(ctx, hidden_fn, NULL, 1, &c, 1, NULL),
                     JAC_ERR_NO_GRAD);
    jac_clear_error(ctx);
    assert_int_equal(jac_gradcheck(ctx, NULL, NULL, 1, &x, 1, NULL),
                     JAC_ERR_NULL_ARG);
    jac_clear_error(ctx);
    assert_int_equal(jac_gradcheck(ctx, hidden_fn, NULL, 1, NULL, 1, NULL),
                     JAC_ERR_NULL_ARG);
    jac_clear_error(ctx);
    assert_int_equal(jac_gradcheck(NULL, hidden_fn, NULL, 1, &x, 1, NULL),
                     JAC_ERR_NULL_ARG);
    assert_int_equal(jac_gradgradcheck(NULL, hidden_fn, NULL, 1, &x, 1, NULL),
                     JAC_ERR_NULL_ARG);
}

/* The independent finite differences of testutil.h agree with the checker's
 * verdict: a correct Jacobian matches them, the hidden one does not. */
static void
test_independent_finite_differences_see_the_hidden_graph(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1.25, 2));
    double fd[4];
    assert_true(tu_fd_jacobian(ctx, hidden_fn, NULL, 1, &x, 1, 0, 0, 1e-6, fd));
    tu_assert_close(fd, TU_VALUES(2.5, 0, 0, 4), 4, 1e-8, 1e-8);
    jac_tensor *y = NULL;
    tu_assert_ok(ctx, hidden_fn(ctx, &x, &y, NULL));
    jac_tensor *jac = jac_jacobian(ctx, y, x, 0);
    tu_assert_tensor(jac, TU_SHAPE(2, 2), TU_VALUES(1.25, 0, 0, 2), 0.0);
    jac_tensor *in[2] = {
        tu_leaf(ctx, TU_SHAPE(2, 2), TU_VALUES(0.1, 0.2, 0.3, 0.4)),
        tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(-0.5, 0.7))};
    for (size_t out = 0; out < 2; ++out) {
        for (size_t inp = 0; inp < 2; ++inp) {
            tu_assert_jacobian_matches_fd(ctx, correct_fn, NULL, 2, in, 2, out,
                                          inp);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_gradcheck_passes_on_a_correct_function),
        TU_TEST(test_gradcheck_fails_on_a_function_that_hides_its_graph),
        TU_TEST(test_gradcheck_message_locates_the_bad_element),
        TU_TEST(test_gradgradcheck_fails_on_a_function_that_hides_its_graph),
        TU_TEST(test_gradgradcheck_passes_for_every_seed),
        TU_TEST(test_tolerances_in_the_options_are_used),
        TU_TEST(test_gradcheck_leaves_the_inputs_exactly_as_they_were),
        TU_TEST(test_gradcheck_of_an_output_that_shares_the_input_values),
        TU_TEST(test_gradcheck_reports_a_failing_callback),
        TU_TEST(test_gradcheck_rejects_bad_arguments),
        TU_TEST(test_independent_finite_differences_see_the_hidden_graph),
    };
    return cmocka_run_group_tests_name("check", tests, NULL, NULL);
}
