/*
 * Errors: every misuse returns its code and a one-line message that names
 * the op and the shapes; the first error is kept; NULL flows through
 * expressions; the library never aborts.
 *
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"

/* A pointer value no call may write: outputs are preset to it to prove that
 * a failing call leaves them untouched. */
static char sentinel_storage;
#define SENTINEL_FOR_ERRORS ((jac_tensor *)(void *)&sentinel_storage)

/* Two independent contexts, for the tests that mix them: state[0] is the
 * first, and the second lives in a static so that teardown frees it even
 * when a test fails half way. */
static jac_ctx *other_ctx;

static int setup_two_contexts(void **state)
{
    other_ctx = jac_ctx_new();
    if (other_ctx == NULL) {
        return -1;
    }
    return tu_setup_ctx(state);
}

static int teardown_two_contexts(void **state)
{
    jac_ctx_free(other_ctx);
    other_ctx = NULL;
    return tu_teardown_ctx(state);
}

#define TWO_CONTEXT_TEST(name)                                                 \
    cmocka_unit_test_setup_teardown(name, setup_two_contexts,                  \
                                    teardown_two_contexts)

/* Fails unless the op returned NULL and ctx holds code with a message that
 * contains every given fragment (NULL-terminated list). */
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

/* ---------------------------------------------------------------------- */
/* Shapes in messages                                                      */
/* ---------------------------------------------------------------------- */

static void test_broadcast_mismatch_names_the_op_and_both_shapes(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = jac_zeros(ctx, 2, TU_SHAPE(2, 3));
    jac_tensor *b = jac_zeros(ctx, 1, TU_SHAPE(4));
    assert_failed(ctx, jac_add(ctx, a, b), JAC_ERR_SHAPE, "add", "(2, 3)",
                  "(4)");
    assert_failed(ctx, jac_sub(ctx, a, b), JAC_ERR_SHAPE, "sub", "(2, 3)",
                  "(4)");
    assert_failed(ctx, jac_mul(ctx, b, a), JAC_ERR_SHAPE, "mul", "(4)",
                  "(2, 3)");
    assert_failed(ctx, jac_div(ctx, a, b), JAC_ERR_SHAPE, "div", "(2, 3)",
                  "(4)");
    jac_tensor *c = jac_zeros(ctx, 2, TU_SHAPE(3, 1));
    jac_tensor *d = jac_zeros(ctx, 3, TU_SHAPE(2, 2, 3));
    assert_failed(ctx, jac_add(ctx, c, d), JAC_ERR_SHAPE, "add", "(3, 1)",
                  "(2, 2, 3)");
}

static void test_matmul_inner_mismatch_names_both_shapes(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = jac_zeros(ctx, 2, TU_SHAPE(2, 3));
    jac_tensor *b = jac_zeros(ctx, 2, TU_SHAPE(4, 2));
    assert_failed(ctx, jac_matmul(ctx, a, b), JAC_ERR_SHAPE, "matmul", "(2, 3)",
                  "(4, 2)");
    jac_tensor *v = jac_zeros(ctx, 1, TU_SHAPE(4));
    assert_failed(ctx, jac_matmul(ctx, a, v), JAC_ERR_SHAPE, "matmul", "(2, 3)",
                  "(4)");
    assert_failed(ctx, jac_matmul(ctx, v, a), JAC_ERR_SHAPE, "matmul", "(4)",
                  "(2, 3)");
    jac_tensor *w = jac_zeros(ctx, 1, TU_SHAPE(3));
    assert_failed(ctx, jac_matmul(ctx, v, w), JAC_ERR_SHAPE, "matmul", "(4)",
                  "(3)");
    /* Batch axes that do not broadcast. */
    jac_tensor *p = jac_zeros(ctx, 3, TU_SHAPE(2, 2, 3));
    jac_tensor *q = jac_zeros(ctx, 3, TU_SHAPE(3, 3, 2));
    assert_failed(ctx, jac_matmul(ctx, p, q), JAC_ERR_SHAPE, "matmul",
                  "(2, 2, 3)", "(3, 3, 2)");
}

static void test_matmul_of_a_rank_0_operand_fails(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *s = jac_scalar(ctx, 2);
    jac_tensor *m = jac_zeros(ctx, 2, TU_SHAPE(2, 2));
    assert_null(jac_matmul(ctx, s, m));
    jac_status code = jac_errcode(ctx);
    assert_true(code == JAC_ERR_RANK || code == JAC_ERR_SHAPE);
    tu_assert_contains(jac_errmsg(ctx), "matmul");
    tu_assert_contains(jac_errmsg(ctx), "()");
}

static void test_reshape_count_mismatch_names_both_shapes(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = jac_zeros(ctx, 2, TU_SHAPE(2, 3));
    assert_failed(ctx, jac_reshape(ctx, a, 1, TU_SHAPE(4)), JAC_ERR_SHAPE,
                  "reshape", "(2, 3)", "(4)");
    assert_failed(ctx, jac_reshape(ctx, a, 2, TU_SHAPE(4, -1)), JAC_ERR_SHAPE,
                  "reshape", "(2, 3)");
    assert_failed(ctx, jac_reshape(ctx, a, 0, NULL), JAC_ERR_SHAPE, "reshape",
                  "(2, 3)", "()");
    assert_failed(ctx, jac_reshape(ctx, a, 2, TU_SHAPE(-1, -1)), JAC_ERR_VALUE,
                  "reshape");
    assert_failed(ctx, jac_reshape(ctx, a, 2, TU_SHAPE(-2, -3)), JAC_ERR_VALUE,
                  "reshape");
    assert_failed(ctx,
                  jac_reshape(ctx, a, JAC_MAX_DIMS + 1,
                              TU_SHAPE(1, 1, 1, 1, 1, 1, 1, 1, 6)),
                  JAC_ERR_RANK, "reshape");
}

static void
test_sum_to_shape_and_expand_reject_shapes_that_do_not_broadcast(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = jac_zeros(ctx, 2, TU_SHAPE(2, 3));
    assert_failed(ctx, jac_sum_to_shape(ctx, a, 1, TU_SHAPE(2)), JAC_ERR_SHAPE,
                  "sum_to_shape", "(2, 3)", "(2)");
    assert_failed(ctx, jac_sum_to_shape(ctx, a, 3, TU_SHAPE(4, 2, 3)),
                  JAC_ERR_SHAPE, "sum_to_shape", "(2, 3)", "(4, 2, 3)");
    jac_tensor *r = jac_zeros(ctx, 1, TU_SHAPE(3));
    assert_failed(ctx, jac_expand(ctx, r, 2, TU_SHAPE(2, 4)), JAC_ERR_SHAPE,
                  "expand", "(3)", "(2, 4)");
    assert_failed(ctx, jac_expand(ctx, a, 1, TU_SHAPE(3)), JAC_ERR_SHAPE,
                  "expand", "(2, 3)", "(3)");
}

static void
test_concat_rejects_extents_that_differ_outside_the_axis(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *ts[2] = {jac_zeros(ctx, 2, TU_SHAPE(2, 3)),
                         jac_zeros(ctx, 2, TU_SHAPE(3, 2))};
    assert_failed(ctx, jac_concat(ctx, 2, ts, 0), JAC_ERR_SHAPE, "concat",
                  "(2, 3)", "(3, 2)");
    jac_tensor *ranks[2] = {jac_zeros(ctx, 1, TU_SHAPE(2)),
                            jac_zeros(ctx, 2, TU_SHAPE(2, 2))};
    assert_failed(ctx, jac_concat(ctx, 2, ranks, 0), JAC_ERR_SHAPE, "concat");
    assert_null(jac_concat(ctx, 0, ts, 0));
    assert_int_not_equal(jac_errcode(ctx), JAC_OK);
    tu_assert_contains(jac_errmsg(ctx), "concat");
    jac_clear_error(ctx);
    assert_null(jac_concat(ctx, 2, NULL, 0));
    assert_int_not_equal(jac_errcode(ctx), JAC_OK);
}

/* ---------------------------------------------------------------------- */
/* Axes and values                                                         */
/* ---------------------------------------------------------------------- */

static void test_axis_out_of_range_is_an_axis_error(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = jac_zeros(ctx, 2, TU_SHAPE(2, 3));
    assert_failed(ctx, jac_sum_axis(ctx, a, 2, false), JAC_ERR_AXIS, "sum",
                  "(2, 3)");
    assert_failed(ctx, jac_sum_axis(ctx, a, -3, true), JAC_ERR_AXIS, "sum");
    const int bad[2] = {0, 5};
    assert_failed(ctx, jac_sum_axes(ctx, a, 2, bad, false), JAC_ERR_AXIS, "sum",
                  "(2, 3)");
    const int repeated[2] = {1, -1};
    assert_failed(ctx, jac_sum_axes(ctx, a, 2, repeated, false), JAC_ERR_AXIS,
                  "sum");
    assert_failed(ctx, jac_transpose(ctx, a, 0, 2), JAC_ERR_AXIS, "transpose",
                  "(2, 3)");
    assert_failed(ctx, jac_transpose(ctx, a, -3, 0), JAC_ERR_AXIS, "transpose");
    assert_failed(ctx, jac_transpose(ctx, jac_scalar(ctx, 1), 0, 0),
                  JAC_ERR_AXIS, "transpose", "()");
    assert_failed(ctx, jac_slice(ctx, a, 2, 0, 1, 1), JAC_ERR_AXIS, "slice",
                  "(2, 3)");
    assert_failed(ctx, jac_slice(ctx, jac_scalar(ctx, 1), 0, 0, 1, 1),
                  JAC_ERR_AXIS, "slice");
    jac_tensor *ts[2] = {a, a};
    assert_failed(ctx, jac_concat(ctx, 2, ts, 2), JAC_ERR_AXIS, "concat",
                  "(2, 3)");
    jac_tensor *scalars[2] = {jac_scalar(ctx, 1), jac_scalar(ctx, 2)};
    assert_failed(ctx, jac_concat(ctx, 2, scalars, 0), JAC_ERR_AXIS, "concat");
    assert_failed(ctx, jac_sum_axis(ctx, jac_scalar(ctx, 1), 0, false),
                  JAC_ERR_AXIS, "sum");
}

static void test_slice_step_must_be_positive(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = jac_arange(ctx, 0, 6, 1);
    assert_failed(ctx, jac_slice(ctx, a, 0, 0, 6, 0), JAC_ERR_VALUE, "slice",
                  "0");
    assert_failed(ctx, jac_slice(ctx, a, 0, 5, 0, -1), JAC_ERR_VALUE, "slice",
                  "-1");
}

static void
test_slice_with_extreme_bounds_and_step_does_not_overflow(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = jac_arange(ctx, 0, 6, 1);
    /* Python: list(range(6))[-2**63 : 2**63 - 1 : 2**63 - 1] == [0] */
    tu_assert_tensor(jac_slice(ctx, a, 0, INT64_MIN, INT64_MAX, INT64_MAX),
                     TU_SHAPE(1), TU_VALUES(0), 0.0);
    tu_assert_tensor(jac_slice(ctx, a, 0, 1, INT64_MAX, INT64_MAX - 1),
                     TU_SHAPE(1), TU_VALUES(1), 0.0);
    tu_assert_tensor(jac_slice(ctx, a, 0, INT64_MIN, INT64_MAX, 4), TU_SHAPE(2),
                     TU_VALUES(0, 4), 0.0);
    tu_assert_no_error(ctx);
}

static void test_jacobian_whose_rank_would_exceed_8_fails(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = jac_ones(ctx, 5, TU_SHAPE(1, 1, 1, 1, 2));
    tu_assert_ok(ctx, jac_set_requires_grad(x, true));
    jac_tensor *y = jac_exp(ctx, x);
    assert_failed(ctx, jac_jacobian(ctx, y, x, 0), JAC_ERR_RANK, "jacobian");
}

static void test_arange_whose_length_overflows_fails(void **state)
{
    jac_ctx *ctx = *state;
    assert_null(jac_arange(ctx, 0, 1e300, 1e-300));
    tu_assert_error(ctx, JAC_ERR_OVERFLOW);
    tu_assert_contains(jac_errmsg(ctx), "arange");
}

/* ---------------------------------------------------------------------- */
/* The first error is kept                                                 */
/* ---------------------------------------------------------------------- */

static void test_first_error_is_kept_until_cleared(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = jac_zeros(ctx, 2, TU_SHAPE(2, 3));
    jac_tensor *b = jac_zeros(ctx, 1, TU_SHAPE(4));
    assert_null(jac_add(ctx, a, b));
    tu_assert_error(ctx, JAC_ERR_SHAPE);
    char first[512];
    snprintf(first, sizeof first, "%s", jac_errmsg(ctx));
    tu_assert_contains(first, "add");

    /* A different error does not replace it. */
    assert_null(jac_transpose(ctx, a, 0, 7));
    assert_null(jac_slice(ctx, a, 0, 0, 1, 0));
    tu_assert_error(ctx, JAC_ERR_SHAPE);
    assert_string_equal(jac_errmsg(ctx), first);

    /* Successful ops in between leave it alone too. */
    jac_tensor *ok = jac_exp(ctx, a);
    assert_non_null(ok);
    assert_string_equal(jac_errmsg(ctx), first);

    jac_clear_error(ctx);
    assert_int_equal(jac_errcode(ctx), JAC_OK);
    assert_string_equal(jac_errmsg(ctx), "");
    assert_null(jac_transpose(ctx, a, 0, 7));
    tu_assert_error(ctx, JAC_ERR_AXIS);
    tu_assert_contains(jac_errmsg(ctx), "transpose");
}

static void test_null_input_after_an_error_keeps_the_first_error(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = jac_zeros(ctx, 2, TU_SHAPE(2, 3));
    jac_tensor *b = jac_zeros(ctx, 2, TU_SHAPE(3, 2));
    jac_tensor *bad = jac_mul(ctx, a, b);
    assert_null(bad);
    char first[512];
    snprintf(first, sizeof first, "%s", jac_errmsg(ctx));
    assert_null(jac_exp(ctx, bad));
    assert_null(jac_add(ctx, bad, a));
    assert_null(jac_add(ctx, a, bad));
    assert_null(jac_matmul(ctx, bad, bad));
    assert_null(jac_sum(ctx, bad));
    assert_null(jac_reshape(ctx, bad, 1, TU_SHAPE(-1)));
    assert_null(jac_slice(ctx, bad, 0, 0, 1, 1));
    jac_tensor *ts[2] = {a, bad};
    assert_null(jac_concat(ctx, 2, ts, 0));
    assert_null(jac_pow_scalar(ctx, bad, 2));
    assert_null(jac_rsub_scalar(ctx, 1, bad));
    assert_null(jac_jacobian(ctx, bad, a, 0));
    tu_assert_error(ctx, JAC_ERR_SHAPE);
    assert_string_equal(jac_errmsg(ctx), first);
    tu_assert_contains(first, "mul");
}

static void test_a_whole_expression_is_checked_once_at_its_end(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2, 3), TU_VALUES(1, 2, 3, 4, 5, 6));
    jac_tensor *w = jac_ones(ctx, 2, TU_SHAPE(2, 3)); /* should be (3, k) */
    jac_tensor *y = jac_sum(
        ctx, jac_tanh(ctx, jac_add_scalar(ctx, jac_matmul(ctx, x, w), 1.0)));
    assert_null(y);
    tu_assert_error(ctx, JAC_ERR_SHAPE);
    tu_assert_contains(jac_errmsg(ctx), "matmul");
    jac_tensor *g = NULL;
    assert_int_not_equal(jac_grad(ctx, 1, &y, NULL, 1, &x, 0, &g), JAC_OK);
    assert_null(g);
    tu_assert_contains(jac_errmsg(ctx), "matmul");
}

static void test_op_given_null_returns_null(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = jac_zeros(ctx, 1, TU_SHAPE(2));
    assert_null(jac_add(ctx, NULL, a));
    assert_null(jac_neg(ctx, NULL));
    assert_null(jac_sum_axis(ctx, NULL, 0, false));
    assert_null(jac_tensor_copy(ctx, NULL));
    assert_null(jac_detach(ctx, NULL));
    /* Whatever it recorded, it is not a shape error of its own making. */
    assert_int_not_equal(jac_errcode(ctx), JAC_ERR_SHAPE);
}

/* ---------------------------------------------------------------------- */
/* NULL context, foreign tensors                                           */
/* ---------------------------------------------------------------------- */

static void test_null_context_makes_every_call_fail_softly(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = jac_ones(ctx, 1, TU_SHAPE(2));
    jac_tensor *ts[1] = {a};
    assert_null(jac_add(NULL, a, a));
    assert_null(jac_sub(NULL, a, a));
    assert_null(jac_mul(NULL, a, a));
    assert_null(jac_div(NULL, a, a));
    assert_null(jac_add_scalar(NULL, a, 1));
    assert_null(jac_sub_scalar(NULL, a, 1));
    assert_null(jac_mul_scalar(NULL, a, 1));
    assert_null(jac_div_scalar(NULL, a, 1));
    assert_null(jac_rsub_scalar(NULL, 1, a));
    assert_null(jac_pow_scalar(NULL, a, 2));
    assert_null(jac_neg(NULL, a));
    assert_null(jac_exp(NULL, a));
    assert_null(jac_log(NULL, a));
    assert_null(jac_sin(NULL, a));
    assert_null(jac_cos(NULL, a));
    assert_null(jac_tanh(NULL, a));
    assert_null(jac_sum(NULL, a));
    assert_null(jac_sum_axis(NULL, a, 0, false));
    assert_null(jac_sum_axes(NULL, a, 1, (const int[]){0}, false));
    assert_null(jac_sum_to_shape(NULL, a, 0, NULL));
    assert_null(jac_expand(NULL, a, 2, TU_SHAPE(2, 2)));
    assert_null(jac_matmul(NULL, a, a));
    assert_null(jac_transpose(NULL, a, 0, 0));
    assert_null(jac_reshape(NULL, a, 1, TU_SHAPE(2)));
    assert_null(jac_slice(NULL, a, 0, 0, 1, 1));
    assert_null(jac_concat(NULL, 1, ts, 0));
    assert_null(jac_tensor_copy(NULL, a));
    assert_null(jac_detach(NULL, a));
    assert_null(jac_jacobian(NULL, a, a, 0));
    jac_tensor *g = SENTINEL_FOR_ERRORS;
    assert_int_equal(jac_grad(NULL, 1, ts, NULL, 1, ts, 0, &g),
                     JAC_ERR_NULL_ARG);
    assert_ptr_equal(g, SENTINEL_FOR_ERRORS);
    assert_int_equal(jac_backward(NULL, a, NULL, 0), JAC_ERR_NULL_ARG);
    assert_int_equal(jac_scope_end(NULL, jac_scope_begin(NULL), NULL, 0),
                     JAC_ERR_NULL_ARG);
    /* The context passed nowhere is unharmed. */
    tu_assert_no_error(ctx);
}

static void test_tensor_of_another_context_is_a_context_error(void **state)
{
    jac_ctx *ctx = *state;
    jac_ctx *other = other_ctx;
    jac_tensor *mine = jac_ones(ctx, 1, TU_SHAPE(2));
    jac_tensor *theirs = jac_ones(other, 1, TU_SHAPE(2));
    tu_assert_ok(other, jac_set_requires_grad(theirs, true));
    assert_failed(ctx, jac_add(ctx, mine, theirs), JAC_ERR_CONTEXT, "add");
    assert_failed(ctx, jac_exp(ctx, theirs), JAC_ERR_CONTEXT, "exp");
    assert_failed(ctx, jac_matmul(ctx, theirs, mine), JAC_ERR_CONTEXT,
                  "matmul");
    jac_tensor *ts[2] = {mine, theirs};
    assert_failed(ctx, jac_concat(ctx, 2, ts, 0), JAC_ERR_CONTEXT, "concat");
    /* The other context saw nothing. */
    tu_assert_no_error(other);
}

static void test_gradient_across_contexts_is_a_context_error(void **state)
{
    jac_ctx *ctx = *state;
    jac_ctx *other = other_ctx;
    jac_tensor *mine = jac_ones(ctx, 1, TU_SHAPE(2));
    jac_tensor *theirs = jac_ones(other, 1, TU_SHAPE(2));
    tu_assert_ok(other, jac_set_requires_grad(theirs, true));
    tu_assert_ok(ctx, jac_set_requires_grad(mine, true));
    jac_tensor *their_y = jac_sum(other, jac_exp(other, theirs));
    assert_null(jac_jacobian(ctx, their_y, theirs, 0));
    tu_assert_error(ctx, JAC_ERR_CONTEXT);
    jac_clear_error(ctx);
    assert_null(jac_jacobian(ctx, their_y, mine, 0));
    tu_assert_error(ctx, JAC_ERR_CONTEXT);
    jac_clear_error(ctx);
    jac_tensor *g = SENTINEL_FOR_ERRORS;
    assert_int_equal(jac_grad(ctx, 1, &their_y, NULL, 1, &mine, 0, &g),
                     JAC_ERR_CONTEXT);
    tu_assert_error(ctx, JAC_ERR_CONTEXT);
    assert_ptr_equal(g, SENTINEL_FOR_ERRORS);
    jac_clear_error(ctx);
    /* An input of another context: the status returned is the error
     * recorded. */
    jac_tensor *y = jac_sum(ctx, jac_mul(ctx, mine, mine));
    assert_int_equal(
        jac_grad(ctx, 1, &y, NULL, 1, &theirs, JAC_RETAIN_GRAPH, &g),
        JAC_ERR_CONTEXT);
    tu_assert_error(ctx, JAC_ERR_CONTEXT);
    assert_ptr_equal(g, SENTINEL_FOR_ERRORS);
}

/* ---------------------------------------------------------------------- */
/* Autodiff misuse                                                         */
/* ---------------------------------------------------------------------- */

static void test_grad_messages_name_the_call_and_the_argument(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2, 3), TU_VALUES(1, 2, 3, 4, 5, 6));
    jac_tensor *c = jac_ones(ctx, 1, TU_SHAPE(5));
    jac_tensor *y = jac_exp(ctx, x);
    jac_tensor *g = NULL;

    assert_int_equal(jac_grad(ctx, 1, &y, NULL, 1, &x, JAC_RETAIN_GRAPH, &g),
                     JAC_ERR_NO_SEED);
    tu_assert_contains(jac_errmsg(ctx), "grad");
    tu_assert_contains(jac_errmsg(ctx), "(2, 3)");
    jac_clear_error(ctx);

    jac_tensor *seed = jac_ones(ctx, 1, TU_SHAPE(6));
    assert_int_equal(jac_grad(ctx, 1, &y, &seed, 1, &x, JAC_RETAIN_GRAPH, &g),
                     JAC_ERR_SEED_SHAPE);
    tu_assert_contains(jac_errmsg(ctx), "grad");
    tu_assert_contains(jac_errmsg(ctx), "(6)");
    tu_assert_contains(jac_errmsg(ctx), "(2, 3)");
    jac_clear_error(ctx);

    assert_int_equal(jac_grad(ctx, 1, &y, NULL, 1, &c, JAC_RETAIN_GRAPH, &g),
                     JAC_ERR_NO_GRAD);
    tu_assert_contains(jac_errmsg(ctx), "grad");
    tu_assert_contains(jac_errmsg(ctx), "(5)");
    jac_clear_error(ctx);

    jac_tensor *z = tu_leaf(ctx, TU_SHAPE(4), TU_VALUES(1, 2, 3, 4));
    jac_tensor *s = jac_sum(ctx, y);
    jac_tensor *inputs[2] = {x, z};
    jac_tensor *grads[2] = {NULL, NULL};
    assert_int_equal(
        jac_grad(ctx, 1, &s, NULL, 2, inputs, JAC_RETAIN_GRAPH, grads),
        JAC_ERR_UNUSED_INPUT);
    tu_assert_contains(jac_errmsg(ctx), "grad");
    tu_assert_contains(jac_errmsg(ctx), "1"); /* the index of z */
    tu_assert_contains(jac_errmsg(ctx), "(4)");
    jac_clear_error(ctx);
}

static void test_grad_with_missing_arguments_fails(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1, 2));
    jac_tensor *y = jac_sum(ctx, jac_exp(ctx, x));
    jac_tensor *g = SENTINEL_FOR_ERRORS;
    assert_int_equal(jac_grad(ctx, 0, &y, NULL, 1, &x, 0, &g),
                     JAC_ERR_NULL_ARG);
    jac_clear_error(ctx);
    assert_int_equal(jac_grad(ctx, 1, &y, NULL, 0, &x, 0, &g),
                     JAC_ERR_NULL_ARG);
    jac_clear_error(ctx);
    assert_int_equal(jac_grad(ctx, 1, NULL, NULL, 1, &x, 0, &g),
                     JAC_ERR_NULL_ARG);
    jac_clear_error(ctx);
    assert_int_equal(jac_grad(ctx, 1, &y, NULL, 1, NULL, 0, &g),
                     JAC_ERR_NULL_ARG);
    jac_clear_error(ctx);
    assert_int_equal(jac_grad(ctx, 1, &y, NULL, 1, &x, 0, NULL),
                     JAC_ERR_NULL_ARG);
    jac_clear_error(ctx);
    jac_tensor *none = NULL;
    assert_int_not_equal(jac_grad(ctx, 1, &none, NULL, 1, &x, 0, &g), JAC_OK);
    assert_ptr_equal(g, SENTINEL_FOR_ERRORS);
    jac_clear_error(ctx);
    /* None of that released the graph. */
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 1, &x, 0, &g));
    tu_assert_tensor(g, TU_SHAPE(2),
                     TU_VALUES(2.718281828459045, 7.38905609893065), 1e-15);
}

static void test_backward_rejects_flags_that_do_not_apply(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1, 2));
    jac_tensor *y = jac_sum(ctx, jac_mul(ctx, x, x));
    assert_int_not_equal(jac_backward(ctx, y, NULL, JAC_BATCHED_SEEDS), JAC_OK);
    assert_int_not_equal(jac_errcode(ctx), JAC_OK);
    assert_null(jac_tensor_grad(x));
    jac_clear_error(ctx);
    tu_assert_ok(ctx, jac_backward(ctx, y, NULL, 0));
    tu_assert_tensor(jac_tensor_grad(x), TU_SHAPE(2), TU_VALUES(2, 4), 0.0);
}

static void test_backward_of_a_constant_fails(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *c = jac_ones(ctx, 1, TU_SHAPE(2));
    jac_tensor *y = jac_sum(ctx, c);
    assert_int_not_equal(jac_backward(ctx, y, NULL, 0), JAC_OK);
    assert_int_not_equal(jac_errcode(ctx), JAC_OK);
    tu_assert_contains(jac_errmsg(ctx), "backward");
}

/* ---------------------------------------------------------------------- */
/* Never abort                                                             */
/* ---------------------------------------------------------------------- */

static void test_library_never_aborts_on_a_sweep_of_bad_arguments(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *m = jac_ones(ctx, 2, TU_SHAPE(2, 3));
    jac_tensor *e = jac_zeros(ctx, 2, TU_SHAPE(0, 3));
    const int axes[] = {INT32_MIN, -100, -3, 2, 100, INT32_MAX};
    for (size_t i = 0; i < TU_COUNT(axes); ++i) {
        assert_null(jac_sum_axis(ctx, m, axes[i], false));
        assert_null(jac_transpose(ctx, m, axes[i], 0));
        assert_null(jac_slice(ctx, m, axes[i], 0, 1, 1));
        assert_null(jac_sum_axes(ctx, m, 1, &axes[i], true));
        jac_tensor *ts[2] = {m, m};
        assert_null(jac_concat(ctx, 2, ts, axes[i]));
        assert_int_equal(jac_tensor_dim(m, axes[i]), -1);
        jac_clear_error(ctx);
    }
    assert_null(jac_sum_axes(ctx, m, -1, axes, false));
    assert_null(jac_sum_axes(ctx, m, 9,
                             (const int[]){0, 1, 0, 1, 0, 1, 0, 1, 0}, false));
    assert_null(jac_expand(ctx, m, -1, NULL));
    assert_null(jac_expand(ctx, m, 9, TU_SHAPE(1, 1, 1, 1, 1, 1, 1, 2, 3)));
    assert_null(jac_sum_to_shape(ctx, m, -5, NULL));
    assert_null(jac_reshape(ctx, m, -1, NULL));
    assert_null(jac_reshape(ctx, m, 2, NULL));
    assert_null(jac_reshape(ctx, m, 2, TU_SHAPE(INT64_MAX, INT64_MAX)));
    assert_null(jac_slice(ctx, m, 0, 0, 1, INT64_MIN));
    assert_null(jac_tensor_new(ctx, 1, TU_SHAPE(INT64_MIN), NULL));
    assert_null(jac_eye(ctx, INT64_MIN));
    assert_null(jac_full(ctx, 9, TU_SHAPE(1, 1, 1, 1, 1, 1, 1, 1, 1), 0));
    jac_clear_error(ctx);
    /* Empty tensors are legal everywhere. */
    tu_assert_shape(jac_exp(ctx, e), TU_SHAPE(0, 3));
    tu_assert_tensor(jac_sum_axis(ctx, e, 0, false), TU_SHAPE(3),
                     TU_VALUES(0, 0, 0), 0.0);
    tu_assert_shape(jac_sum_axis(ctx, e, 1, false), TU_SHAPE(0));
    tu_assert_shape(jac_matmul(ctx, e, jac_ones(ctx, 2, TU_SHAPE(3, 2))),
                    TU_SHAPE(0, 2));
    tu_assert_shape(jac_matmul(ctx, jac_transpose(ctx, m, 0, 1),
                               jac_zeros(ctx, 2, TU_SHAPE(2, 0))),
                    TU_SHAPE(3, 0));
    /* (2, 0) @ (0, 3): a sum of nothing is zero. */
    tu_assert_tensor(jac_matmul(ctx, jac_zeros(ctx, 2, TU_SHAPE(2, 0)),
                                jac_zeros(ctx, 2, TU_SHAPE(0, 3))),
                     TU_SHAPE(2, 3), TU_VALUES(0, 0, 0, 0, 0, 0), 0.0);
    tu_assert_no_error(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_broadcast_mismatch_names_the_op_and_both_shapes),
        TU_TEST(test_matmul_inner_mismatch_names_both_shapes),
        TU_TEST(test_matmul_of_a_rank_0_operand_fails),
        TU_TEST(test_reshape_count_mismatch_names_both_shapes),
        TU_TEST(
            test_sum_to_shape_and_expand_reject_shapes_that_do_not_broadcast),
        TU_TEST(test_concat_rejects_extents_that_differ_outside_the_axis),
        TU_TEST(test_axis_out_of_range_is_an_axis_error),
        TU_TEST(test_slice_step_must_be_positive),
        TU_TEST(test_slice_with_extreme_bounds_and_step_does_not_overflow),
        TU_TEST(test_jacobian_whose_rank_would_exceed_8_fails),
        TU_TEST(test_arange_whose_length_overflows_fails),
        TU_TEST(test_first_error_is_kept_until_cleared),
        TU_TEST(test_null_input_after_an_error_keeps_the_first_error),
        TU_TEST(test_a_whole_expression_is_checked_once_at_its_end),
        TU_TEST(test_op_given_null_returns_null),
        TU_TEST(test_null_context_makes_every_call_fail_softly),
        TWO_CONTEXT_TEST(test_tensor_of_another_context_is_a_context_error),
        TWO_CONTEXT_TEST(test_gradient_across_contexts_is_a_context_error),
        TU_TEST(test_grad_messages_name_the_call_and_the_argument),
        TU_TEST(test_grad_with_missing_arguments_fails),
        TU_TEST(test_backward_rejects_flags_that_do_not_apply),
        TU_TEST(test_backward_of_a_constant_fails),
        TU_TEST(test_library_never_aborts_on_a_sweep_of_bad_arguments),
    };
    return cmocka_run_group_tests_name("errors", tests, NULL, NULL);
}
