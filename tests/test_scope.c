/*
 * Scopes: long loops run in flat memory; kept tensors survive with their
 * values and addresses; .grad of surviving leaves survives; the tape is cut
 * back to the mark.
 *
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"

/* y = sum(tanh(x * x + 1) * 3), one small graph on a 4-element leaf. */
static jac_tensor *small_graph(jac_ctx *ctx, jac_tensor *x)
{
    jac_tensor *h = jac_tanh(ctx, jac_add_scalar(ctx, jac_mul(ctx, x, x), 1));
    return jac_sum(ctx, jac_mul_scalar(ctx, h, 3));
}

static void
test_loop_of_100000_scoped_gradients_runs_in_flat_memory(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(4), TU_VALUES(0.1, -0.2, 0.3, 0.4));
    size_t memory_settled = 0;
    size_t tensors_settled = 0;
    size_t tape_settled = 0;
    double first_value = 0;
    double first_grad0 = 0;
    for (int i = 0; i < 100000; ++i) {
        jac_scope mark = jac_scope_begin(ctx);
        jac_tensor *y = small_graph(ctx, x);
        jac_tensor *g = NULL;
        jac_status status = jac_grad(ctx, 1, &y, NULL, 1, &x, 0, &g);
        if (status != JAC_OK) {
            print_error("iteration %d: %s\n", i, jac_errmsg(ctx));
            fail();
        }
        double value = jac_tensor_item(y);
        double grad0 = jac_tensor_data(g)[0];
        tu_assert_ok(ctx, jac_scope_end(ctx, mark, NULL, 0));
        assert_int_equal(jac_ctx_tape_length(ctx), mark.nodes);
        assert_int_equal(jac_ctx_tensor_count(ctx), mark.tensors);
        /* The pools reach their working set within a few iterations (an
         * array that grew in the first one leaves its old block behind);
         * from then on nothing may grow. */
        if (i == 10) {
            memory_settled = jac_ctx_memory(ctx);
            tensors_settled = jac_ctx_tensor_count(ctx);
            tape_settled = jac_ctx_tape_length(ctx);
        }
        if (i == 0) {
            first_value = value;
            first_grad0 = grad0;
        } else if (value != first_value || grad0 != first_grad0) {
            print_error("iteration %d: value %.17g grad %.17g, first "
                        "%.17g %.17g\n",
                        i, value, grad0, first_value, first_grad0);
            fail();
        }
    }
    assert_true(jac_ctx_memory(ctx) <= memory_settled);
    assert_int_equal(jac_ctx_tensor_count(ctx), tensors_settled);
    assert_int_equal(jac_ctx_tape_length(ctx), tape_settled);
    /* 3 sum tanh(x^2 + 1): d/dx0 = 6 x0 (1 - tanh^2(1.01)) */
    double t = tanh(1.01);
    tu_assert_close(&first_grad0, TU_VALUES(6 * 0.1 * (1 - t * t)), 1, 1e-15,
                    1e-14);
}

static void test_newton_loop_with_create_graph_runs_in_flat_memory(void **state)
{
    jac_ctx *ctx = *state;
    /* Minimise f(x) = sum(x^4 / 4 - x): f' = x^3 - 1, f'' = 3 x^2; the
     * Newton steps go to x = 1. The mark is taken before the first iterate,
     * so each step releases the old iterate and keeps only the new one. */
    jac_scope mark = jac_scope_begin(ctx);
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(3), TU_VALUES(2, 0.5, 3));
    size_t memory_settled = 0;
    size_t tensors_settled = 0;
    for (int step = 0; step < 2000; ++step) {
        jac_tensor *f = jac_sum(
            ctx,
            jac_sub(ctx, jac_div_scalar(ctx, jac_pow_scalar(ctx, x, 4), 4), x));
        jac_tensor *g = NULL;
        tu_assert_ok(ctx,
                     jac_grad(ctx, 1, &f, NULL, 1, &x, JAC_CREATE_GRAPH, &g));
        /* The Hessian is diagonal: its diagonal is the gradient of sum(g). */
        jac_tensor *sg = jac_sum(ctx, g);
        jac_tensor *h = NULL;
        tu_assert_ok(ctx, jac_grad(ctx, 1, &sg, NULL, 1, &x, 0, &h));
        bool was = jac_set_grad_enabled(ctx, false);
        jac_tensor *next = jac_sub(ctx, x, jac_div(ctx, g, h));
        jac_set_grad_enabled(ctx, was);
        assert_non_null(next);
        tu_assert_ok(ctx, jac_scope_end(ctx, mark, &next, 1));
        tu_assert_ok(ctx, jac_set_requires_grad(next, true));
        x = next;
        if (step == 0) {
            /* x - (x^3 - 1) / (3 x^2) at 2, 0.5, 3 */
            tu_assert_tensor(
                x, TU_SHAPE(3),
                TU_VALUES(2 - 7.0 / 12.0, 0.5 + 0.875 / 0.75, 3 - 26.0 / 27.0),
                1e-15);
        }
        assert_int_equal(jac_ctx_tensor_count(ctx), mark.tensors + 1);
        if (step == 10) {
            memory_settled = jac_ctx_memory(ctx);
            tensors_settled = jac_ctx_tensor_count(ctx);
        }
    }
    tu_assert_tensor(x, TU_SHAPE(3), TU_VALUES(1, 1, 1), 1e-15);
    assert_true(jac_ctx_memory(ctx) <= memory_settled);
    assert_int_equal(jac_ctx_tensor_count(ctx), tensors_settled);
}

static void
test_kept_tensors_survive_with_their_values_and_addresses(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(0, 1));
    size_t tensors_before = jac_ctx_tensor_count(ctx);
    jac_scope mark = jac_scope_begin(ctx);
    jac_tensor *y = jac_exp(ctx, jac_mul_scalar(ctx, x, 2));
    jac_tensor *leaf = tu_leaf(ctx, TU_SHAPE(3), TU_VALUES(7, 8, 9));
    jac_tensor *plain = tu_tensor(ctx, TU_SHAPE(1), TU_VALUES(-1));
    jac_tensor *dropped = jac_sin(ctx, x);
    assert_non_null(dropped);
    const double *y_data = jac_tensor_data(y);
    assert_false(jac_is_leaf(y));
    jac_tensor *keep[3] = {y, leaf, plain};
    tu_assert_ok(ctx, jac_scope_end(ctx, mark, keep, 3));
    assert_int_equal(jac_ctx_tensor_count(ctx), tensors_before + 3);

    /* Same addresses, same values. */
    assert_ptr_equal(keep[0], y);
    assert_ptr_equal(jac_tensor_data(y), y_data);
    tu_assert_tensor(y, TU_SHAPE(2), TU_VALUES(1, 7.38905609893065), 1e-14);
    tu_assert_tensor(leaf, TU_SHAPE(3), TU_VALUES(7, 8, 9), 0.0);
    tu_assert_tensor(plain, TU_SHAPE(1), TU_VALUES(-1), 0.0);
    /* A kept result loses its history; a kept leaf keeps requires_grad. */
    assert_true(jac_is_leaf(y));
    assert_false(jac_requires_grad(y));
    assert_true(jac_is_leaf(leaf));
    assert_true(jac_requires_grad(leaf));
    assert_false(jac_requires_grad(plain));
    /* The tape is back at the mark. */
    assert_int_equal(jac_ctx_tape_length(ctx), mark.nodes);

    /* They work in new graphs. */
    jac_tensor *z = jac_sum(ctx, jac_mul(ctx, leaf, leaf));
    jac_tensor *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &z, NULL, 1, &leaf, 0, &g));
    tu_assert_tensor(g, TU_SHAPE(3), TU_VALUES(14, 16, 18), 0.0);
    tu_assert_tensor(jac_add(ctx, y, x), TU_SHAPE(2),
                     TU_VALUES(1, 8.38905609893065), 1e-14);
}

static void test_grad_accumulated_inside_a_scope_survives_its_end(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1, -2));
    for (int pass = 1; pass <= 3; ++pass) {
        jac_scope mark = jac_scope_begin(ctx);
        jac_tensor *y = jac_sum(ctx, jac_mul(ctx, x, x));
        tu_assert_ok(ctx, jac_backward(ctx, y, NULL, 0));
        tu_assert_ok(ctx, jac_scope_end(ctx, mark, NULL, 0));
        assert_int_equal(jac_ctx_tape_length(ctx), mark.nodes);
        /* pass times 2 x */
        const double want[2] = {2.0 * pass, -4.0 * pass};
        tu_assert_tensor_at(jac_tensor_grad(x), 1, TU_SHAPE(2), want, 2, 0.0,
                            __FILE__, __LINE__);
    }
    tu_assert_ok(ctx, jac_zero_grad(x));
    tu_assert_tensor(jac_tensor_grad(x), TU_SHAPE(2), TU_VALUES(0, 0), 0.0);
}

static void
test_grad_of_a_kept_leaf_made_inside_the_scope_survives(void **state)
{
    jac_ctx *ctx = *state;
    jac_scope mark = jac_scope_begin(ctx);
    jac_tensor *w = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(3, 4));
    jac_tensor *y = jac_sum(ctx, jac_pow_scalar(ctx, w, 3));
    tu_assert_ok(ctx, jac_backward(ctx, y, NULL, 0));
    tu_assert_ok(ctx, jac_scope_end(ctx, mark, &w, 1));
    tu_assert_tensor(jac_tensor_grad(w), TU_SHAPE(2), TU_VALUES(27, 48), 0.0);
}

static void test_nested_scopes_release_inner_work_first(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1, 2));
    jac_scope outer = jac_scope_begin(ctx);
    jac_tensor *a = jac_exp(ctx, x);
    size_t after_a = jac_ctx_tensor_count(ctx);
    size_t tape_a = jac_ctx_tape_length(ctx);
    jac_scope inner = jac_scope_begin(ctx);
    jac_tensor *b = jac_mul(ctx, a, a);
    jac_tensor *c = jac_sum(ctx, b);
    assert_non_null(c);
    tu_assert_ok(ctx, jac_scope_end(ctx, inner, NULL, 0));
    assert_int_equal(jac_ctx_tensor_count(ctx), after_a);
    assert_int_equal(jac_ctx_tape_length(ctx), tape_a);
    /* a still has its history: it can be differentiated. */
    jac_tensor *s = jac_sum(ctx, a);
    jac_tensor *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &s, NULL, 1, &x, 0, &g));
    tu_assert_tensor(g, TU_SHAPE(2),
                     TU_VALUES(2.718281828459045, 7.38905609893065), 1e-15);
    tu_assert_ok(ctx, jac_scope_end(ctx, outer, NULL, 0));
    assert_int_equal(jac_ctx_tensor_count(ctx), outer.tensors);
    assert_int_equal(jac_ctx_tape_length(ctx), outer.nodes);
}

static void test_scope_end_with_a_mark_from_the_future_fails(void **state)
{
    jac_ctx *ctx = *state;
    jac_scope early = jac_scope_begin(ctx);
    jac_tensor *x = jac_ones(ctx, 1, TU_SHAPE(2));
    jac_scope later = jac_scope_begin(ctx);
    tu_assert_ok(ctx, jac_scope_end(ctx, early, NULL, 0));
    /* later now points past the end of the history. */
    assert_int_not_equal(jac_scope_end(ctx, later, NULL, 0), JAC_OK);
    assert_int_not_equal(jac_errcode(ctx), JAC_OK);
    (void)x;
}

static void test_scope_keeps_nothing_it_was_not_asked_to(void **state)
{
    jac_ctx *ctx = *state;
    size_t memory_before = jac_ctx_memory(ctx);
    jac_scope mark = jac_scope_begin(ctx);
    /* 1 MB of work, then released. */
    jac_tensor *big = jac_ones(ctx, 2, TU_SHAPE(256, 512));
    jac_tensor *r = jac_exp(ctx, big);
    assert_non_null(r);
    assert_true(jac_ctx_memory(ctx) > memory_before + 2 * 256 * 512 * 8 - 1);
    tu_assert_ok(ctx, jac_scope_end(ctx, mark, NULL, 0));
    assert_int_equal(jac_ctx_tensor_count(ctx), mark.tensors);
    /* A pool may keep blocks for reuse, but a second round of the same work
     * must not grow it. */
    size_t memory_after_one = jac_ctx_memory(ctx);
    mark = jac_scope_begin(ctx);
    big = jac_ones(ctx, 2, TU_SHAPE(256, 512));
    r = jac_exp(ctx, big);
    assert_non_null(r);
    tu_assert_ok(ctx, jac_scope_end(ctx, mark, NULL, 0));
    assert_true(jac_ctx_memory(ctx) <= memory_after_one);
}

/* Without the check, a released tensor is reported for the next 256
 * releases only; with JAC_CHECK_STALE, after any number (1000 scope
 * cycles here), and never reads another tensor's values. */
static void test_stale_check_reports_a_released_tensor_forever(void **state)
{
    jac_ctx *ctx = *state;
    tu_assert_ok(ctx, jac_ctx_set_checks(ctx, JAC_CHECK_STALE));
    assert_int_equal(jac_ctx_checks(ctx), JAC_CHECK_STALE);
    jac_tensor *x = tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(1, 2));
    jac_scope mark = jac_scope_begin(ctx);
    jac_tensor *stale = jac_exp(ctx, x);
    tu_assert_ok(ctx, jac_scope_end(ctx, mark, NULL, 0));
    for (int cycle = 0; cycle < 1000; cycle++) {
        jac_scope m = jac_scope_begin(ctx);
        assert_non_null(jac_add(ctx, jac_exp(ctx, x), x));
        tu_assert_ok(ctx, jac_scope_end(ctx, m, NULL, 0));
    }
    assert_null(jac_add(ctx, stale, x));
    tu_assert_error(ctx, JAC_ERR_CONTEXT);
    tu_assert_contains(jac_errmsg(ctx), "released");
    jac_clear_error(ctx);
    assert_int_equal(jac_ctx_set_checks(ctx, 1u << 7), JAC_ERR_VALUE);
    jac_clear_error(ctx);
}

/* Anomaly mode names the op that first made a NaN, forward or backward. */
static void test_anomaly_mode_names_the_first_op_to_make_a_nan(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(3), TU_VALUES(1, -1, 2));
    /* Off: NaN flows silently. */
    jac_tensor *y = jac_sum(ctx, jac_log(ctx, x));
    assert_true(isnan(jac_tensor_item(y)));
    tu_assert_no_error(ctx);
    tu_assert_ok(ctx, jac_ctx_set_checks(ctx, JAC_CHECK_ANOMALY));
    size_t tape = jac_ctx_tape_length(ctx);
    assert_null(jac_sum(ctx, jac_log(ctx, x)));
    tu_assert_error(ctx, JAC_ERR_VALUE);
    tu_assert_contains(jac_errmsg(ctx), "anomaly: 'log'");
    tu_assert_contains(jac_errmsg(ctx), "element 1 of (3)");
    assert_int_equal(jac_ctx_tape_length(ctx), tape);
    jac_clear_error(ctx);
    /* A finite forward pass whose backward is not: d sqrt(x)/dx at 0. */
    jac_tensor *z = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(4, 0));
    jac_tensor *s = jac_sum(ctx, jac_sqrt(ctx, z)), *g = NULL;
    assert_non_null(s);
    assert_int_equal(jac_grad(ctx, 1, &s, NULL, 1, &z, 0, &g), JAC_ERR_VALUE);
    tu_assert_contains(jac_errmsg(ctx), "the backward of 'sqrt'");
    jac_clear_error(ctx);
    tu_assert_ok(ctx, jac_ctx_set_checks(ctx, 0));
    tu_assert_ok(ctx, jac_grad(ctx, 1, &s, NULL, 1, &z, 0, &g));
    assert_true(isinf(jac_tensor_data(g)[1]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_loop_of_100000_scoped_gradients_runs_in_flat_memory),
        TU_TEST(test_newton_loop_with_create_graph_runs_in_flat_memory),
        TU_TEST(test_kept_tensors_survive_with_their_values_and_addresses),
        TU_TEST(test_grad_accumulated_inside_a_scope_survives_its_end),
        TU_TEST(test_grad_of_a_kept_leaf_made_inside_the_scope_survives),
        TU_TEST(test_nested_scopes_release_inner_work_first),
        TU_TEST(test_scope_end_with_a_mark_from_the_future_fails),
        TU_TEST(test_scope_keeps_nothing_it_was_not_asked_to),
        TU_TEST(test_stale_check_reports_a_released_tensor_forever),
        TU_TEST(test_anomaly_mode_names_the_first_op_to_make_a_nan),
    };
    return cmocka_run_group_tests_name("scope", tests, NULL, NULL);
}
