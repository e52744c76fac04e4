/*
 * Reverse mode: jac_grad and its flags, jac_backward and .grad, no-grad
 * mode, and what a failed call leaves behind.
 *
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"

/* A pointer value no call may write: grads are preset to it to prove that a
 * failing jac_grad leaves them untouched. */
static char sentinel_storage;
#define SENTINEL ((jac_tensor *)(void *)&sentinel_storage)

/* ---------------------------------------------------------------------- */
/* Basics                                                                  */
/* ---------------------------------------------------------------------- */

static void
test_grad_sums_the_seeded_contributions_of_every_output(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(3), TU_VALUES(1, 2, 3));
    jac_tensor *outputs[2] = {jac_mul(ctx, x, x), jac_sin(ctx, x)};
    jac_tensor *seeds[2] = {
        tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(1, 0, 2)),
        tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(0.5, 0.5, 0.5)),
    };
    jac_tensor *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 2, outputs, seeds, 1, &x, 0, &g));
    /* 2 x v1 + cos(x) v2 */
    tu_assert_tensor(g, TU_SHAPE(3),
                     TU_VALUES(2 * 1 * 1 + 0.5 * 0.5403023058681398,
                               0 + 0.5 * -0.4161468365471424,
                               2 * 3 * 2 + 0.5 * -0.9899924966004454),
                     1e-14);
    assert_false(jac_requires_grad(g));
}

static void test_grad_with_several_inputs_gives_one_gradient_each(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(0, 1));
    jac_tensor *b = tu_leaf(ctx, TU_SHAPE(2, 2), TU_VALUES(1, 2, 3, 4));
    /* f = sum(a * b + exp(a)), a broadcast over the rows of b */
    jac_tensor *f =
        jac_sum(ctx, jac_add(ctx, jac_mul(ctx, a, b), jac_exp(ctx, a)));
    jac_tensor *inputs[2] = {a, b};
    jac_tensor *grads[2] = {NULL, NULL};
    tu_assert_ok(ctx, jac_grad(ctx, 1, &f, NULL, 2, inputs, 0, grads));
    /* df/da_j = sum_i b_ij + 2 e^a_j; df/db_ij = a_j */
    tu_assert_tensor(grads[0], TU_SHAPE(2),
                     TU_VALUES(4 + 2 * 1.0, 6 + 2 * 2.718281828459045), 1e-15);
    tu_assert_tensor(grads[1], TU_SHAPE(2, 2), TU_VALUES(0, 1, 0, 1), 0.0);
}

static void test_seed_may_be_omitted_for_one_element_outputs(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(3, -1));
    /* rank 0 */
    jac_tensor *s = jac_sum(ctx, jac_mul(ctx, x, x));
    jac_tensor *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &s, NULL, 1, &x, 0, &g));
    tu_assert_tensor(g, TU_SHAPE(2), TU_VALUES(6, -2), 0.0);
    /* one element of rank 2 */
    jac_tensor *one =
        jac_reshape(ctx, jac_sum(ctx, jac_mul(ctx, x, x)), 2, TU_SHAPE(1, 1));
    tu_assert_ok(ctx, jac_grad(ctx, 1, &one, NULL, 1, &x, 0, &g));
    tu_assert_tensor(g, TU_SHAPE(2), TU_VALUES(6, -2), 0.0);
    /* a NULL entry next to a real seed */
    jac_tensor *outputs[2] = {jac_sum(ctx, x), jac_mul_scalar(ctx, x, 2)};
    jac_tensor *seeds[2] = {NULL, tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(1, 3))};
    tu_assert_ok(ctx, jac_grad(ctx, 2, outputs, seeds, 1, &x, 0, &g));
    tu_assert_tensor(g, TU_SHAPE(2), TU_VALUES(1 + 2, 1 + 6), 0.0);
}

static void test_input_listed_twice_gets_the_same_gradient_twice(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(0.5, 2));
    jac_tensor *y = jac_sum(ctx, jac_pow_scalar(ctx, x, 3));
    jac_tensor *inputs[2] = {x, x};
    jac_tensor *grads[2] = {NULL, NULL};
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 2, inputs, 0, grads));
    tu_assert_tensor(grads[0], TU_SHAPE(2), TU_VALUES(0.75, 12), 0.0);
    tu_assert_tensor(grads[1], TU_SHAPE(2), TU_VALUES(0.75, 12), 0.0);
}

static void test_output_that_is_the_input_passes_the_seed_through(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(3), TU_VALUES(1, 2, 3));
    jac_tensor *seed = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(4, 5, 6));
    jac_tensor *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &x, &seed, 1, &x, 0, &g));
    tu_assert_tensor(g, TU_SHAPE(3), TU_VALUES(4, 5, 6), 0.0);
}

static void
test_an_input_made_from_another_input_gets_its_own_gradient(void **state)
{
    jac_ctx *ctx = *state;
    /* y = x^2, z = y x: dz/dx = 3 x^2 (through y too), dz/dy = x. */
    for (int create = 0; create < 2; create++) {
        jac_tensor *x = tu_scalar_leaf(ctx, 2.0);
        jac_tensor *y = jac_mul(ctx, x, x);
        jac_tensor *z = jac_mul(ctx, y, x);
        jac_tensor *in[2] = {x, y}, *g[2] = {NULL, NULL};
        tu_assert_ok(ctx, jac_grad(ctx, 1, &z, NULL, 2, in,
                                   create ? JAC_CREATE_GRAPH : 0u, g));
        tu_assert_scalar(g[0], 12.0, 0.0);
        tu_assert_scalar(g[1], 2.0, 0.0);
        /* The same with vectors (cotangents in storage, not in slots). */
        jac_tensor *xv = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(2, 3));
        jac_tensor *yv = jac_mul(ctx, xv, xv);
        jac_tensor *zv = jac_mul(ctx, yv, xv);
        jac_tensor *inv[2] = {yv, xv}, *gv[2] = {NULL, NULL};
        jac_tensor *seed = jac_ones(ctx, 1, TU_SHAPE(2));
        tu_assert_ok(ctx, jac_grad(ctx, 1, &zv, &seed, 2, inv,
                                   create ? JAC_CREATE_GRAPH : 0u, gv));
        tu_assert_tensor(gv[0], TU_SHAPE(2), TU_VALUES(2, 3), 0.0);
        tu_assert_tensor(gv[1], TU_SHAPE(2), TU_VALUES(12, 27), 0.0);
    }
}

static void test_gradient_flows_through_a_long_chain(void **state)
{
    jac_ctx *ctx = *state;
    /* x_{k+1} = x_k + 0.001 sin(x_k), as P4 of the benchmark, k = 10000. */
    jac_tensor *x0 = tu_scalar_leaf(ctx, 0.5);
    jac_tensor *x = x0;
    for (int k = 0; k < 10000; ++k) {
        x = jac_add(ctx, x, jac_mul_scalar(ctx, jac_sin(ctx, x), 0.001));
    }
    tu_assert_scalar(x, 3.1412383323702526, 1e-12);
    jac_tensor *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &x, NULL, 1, &x0, 0, &g));
    tu_assert_close(jac_tensor_data(g), TU_VALUES(0.00073974788001393), 1, 0.0,
                    1e-9);
}

/* Every op with a one-element kernel in an unrecorded pass, with both
 * inputs of the binary ops requiring gradients. */
static jac_tensor *every_scalar_kernel(jac_ctx *ctx, jac_tensor *a,
                                       jac_tensor *b)
{
    jac_tensor *s = jac_mul(ctx, jac_add(ctx, a, b), jac_sub(ctx, a, b));
    s = jac_div(ctx, s, jac_add_scalar(ctx, jac_exp(ctx, b), 1.0));
    s = jac_add(ctx, s, jac_log(ctx, jac_mul_scalar(ctx, a, 3.0)));
    s = jac_add(ctx, jac_sin(ctx, s), jac_cos(ctx, jac_tanh(ctx, s)));
    return jac_pow_scalar(ctx, jac_exp(ctx, s), 1.5);
}

static void
test_one_element_passes_equal_the_vector_kernels_and_rules(void **state)
{
    jac_ctx *ctx = *state;
    const double av[3] = {0.7, 1.3, 0.4}, bv[3] = {0.2, -0.5, 0.9};
    jac_tensor *a3 = tu_leaf(ctx, TU_SHAPE(3), av);
    jac_tensor *b3 = tu_leaf(ctx, TU_SHAPE(3), bv);
    jac_tensor *in3[2] = {a3, b3}, *g3[2] = {NULL, NULL};
    jac_tensor *y3 = every_scalar_kernel(ctx, a3, b3);
    jac_tensor *seed = jac_ones(ctx, 1, TU_SHAPE(3));
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y3, &seed, 2, in3, 0, g3));
    for (int i = 0; i < 3; i++) {
        /* Rank 0 and shape (1,): one-element cotangents held in the slots. */
        for (int rank = 0; rank < 2; rank++) {
            jac_tensor *a = tu_leaf_at(ctx, rank, TU_SHAPE(1), &av[i], 1,
                                       __FILE__, __LINE__);
            jac_tensor *b = tu_leaf_at(ctx, rank, TU_SHAPE(1), &bv[i], 1,
                                       __FILE__, __LINE__);
            jac_tensor *in[2] = {a, b}, *g[2] = {NULL, NULL};
            jac_tensor *h[2] = {NULL, NULL};
            jac_tensor *y = every_scalar_kernel(ctx, a, b);
            tu_assert_ok(
                ctx, jac_grad(ctx, 1, &y, NULL, 2, in, JAC_RETAIN_GRAPH, g));
            tu_assert_ok(
                ctx, jac_grad(ctx, 1, &y, NULL, 2, in, JAC_CREATE_GRAPH, h));
            for (int k = 0; k < 2; k++) {
                assert_int_equal(jac_tensor_ndim(g[k]), rank);
                double one = jac_tensor_item(g[k]);
                /* The same arithmetic as the vector kernels: bitwise. */
                assert_memory_equal(&one, &jac_tensor_data(g3[k])[i],
                                    sizeof one);
                tu_assert_close(&one, jac_tensor_data(h[k]), 1, 1e-14, 1e-13);
            }
        }
    }
}

/* ---------------------------------------------------------------------- */
/* Retaining and releasing the graph                                       */
/* ---------------------------------------------------------------------- */

static void test_retain_graph_allows_a_second_pass(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(0, 1));
    jac_tensor *y = jac_sum(ctx, jac_exp(ctx, jac_mul(ctx, x, x)));
    jac_tensor *g1 = NULL;
    jac_tensor *g2 = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 1, &x, JAC_RETAIN_GRAPH, &g1));
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 1, &x, 0, &g2));
    /* 2 x e^(x^2) */
    tu_assert_tensor(g1, TU_SHAPE(2), TU_VALUES(0, 2 * 2.718281828459045),
                     1e-15);
    tu_assert_tensor(g2, TU_SHAPE(2), TU_VALUES(0, 2 * 2.718281828459045),
                     1e-15);
    assert_ptr_not_equal(g1, g2);
}

static void test_second_pass_without_retain_graph_fails_released(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(0, 1));
    jac_tensor *y = jac_sum(ctx, jac_exp(ctx, jac_mul(ctx, x, x)));
    jac_tensor *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 1, &x, 0, &g));
    jac_tensor *again = SENTINEL;
    assert_int_equal(jac_grad(ctx, 1, &y, NULL, 1, &x, 0, &again),
                     JAC_ERR_RELEASED);
    tu_assert_error(ctx, JAC_ERR_RELEASED);
    tu_assert_contains(jac_errmsg(ctx), "grad");
    assert_ptr_equal(again, SENTINEL);
    /* The first result is intact. */
    tu_assert_tensor(g, TU_SHAPE(2), TU_VALUES(0, 2 * 2.718281828459045),
                     1e-15);
}

static void
test_new_output_built_on_a_released_graph_fails_released(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(0.5, 1));
    jac_tensor *e = jac_exp(ctx, jac_mul(ctx, x, x));
    jac_tensor *y = jac_sum(ctx, e);
    jac_tensor *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 1, &x, 0, &g));
    jac_tensor *z = jac_sum(ctx, jac_mul_scalar(ctx, e, 2));
    assert_non_null(z);
    assert_int_equal(jac_grad(ctx, 1, &z, NULL, 1, &x, 0, &g),
                     JAC_ERR_RELEASED);
    tu_assert_error(ctx, JAC_ERR_RELEASED);
}

static void test_a_pass_releases_only_the_graph_it_went_through(void **state)
{
    jac_ctx *ctx = *state;
    /* z2's nodes lie on the tape between x and z1 but do not lead to z1. */
    jac_tensor *x = tu_scalar_leaf(ctx, 0.5);
    jac_tensor *z2 = jac_exp(ctx, jac_mul_scalar(ctx, x, 3.0));
    jac_tensor *z1 = jac_sin(ctx, x);
    jac_tensor *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &z1, NULL, 1, &x, 0, &g));
    tu_assert_scalar(g, cos(0.5), 1e-15);
    tu_assert_ok(ctx, jac_grad(ctx, 1, &z2, NULL, 1, &x, 0, &g));
    tu_assert_scalar(g, 3.0 * exp(1.5), 1e-13);
    /* Both graphs are released now. */
    assert_int_equal(jac_grad(ctx, 1, &z1, NULL, 1, &x, 0, &g),
                     JAC_ERR_RELEASED);
    jac_clear_error(ctx);
    assert_int_equal(jac_grad(ctx, 1, &z2, NULL, 1, &x, 0, &g),
                     JAC_ERR_RELEASED);
    jac_clear_error(ctx);
}

static void
test_fresh_graph_on_the_same_leaf_works_after_a_release(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(0.5, 1));
    jac_tensor *y = jac_sum(ctx, jac_mul(ctx, x, x));
    jac_tensor *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 1, &x, 0, &g));
    y = jac_sum(ctx, jac_mul_scalar(ctx, jac_mul(ctx, x, x), 3));
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 1, &x, 0, &g));
    tu_assert_tensor(g, TU_SHAPE(2), TU_VALUES(3, 6), 0.0);
}

/* ---------------------------------------------------------------------- */
/* Higher derivatives                                                      */
/* ---------------------------------------------------------------------- */

static void test_create_graph_gives_second_and_third_derivatives(void **state)
{
    jac_ctx *ctx = *state;
    /* x^3 at 1.5, written both as pow and as a product */
    for (int form = 0; form < 2; ++form) {
        jac_tensor *x = tu_scalar_leaf(ctx, 1.5);
        jac_tensor *y = form == 0 ? jac_pow_scalar(ctx, x, 3)
                                  : jac_mul(ctx, jac_mul(ctx, x, x), x);
        jac_tensor *g1 = NULL;
        jac_tensor *g2 = NULL;
        jac_tensor *g3 = NULL;
        tu_assert_ok(ctx,
                     jac_grad(ctx, 1, &y, NULL, 1, &x, JAC_CREATE_GRAPH, &g1));
        assert_true(jac_requires_grad(g1));
        tu_assert_scalar(g1, 3 * 1.5 * 1.5, 1e-15); /* 3 x^2 */
        tu_assert_ok(ctx,
                     jac_grad(ctx, 1, &g1, NULL, 1, &x, JAC_CREATE_GRAPH, &g2));
        tu_assert_scalar(g2, 6 * 1.5, 1e-15); /* 6 x */
        tu_assert_ok(ctx, jac_grad(ctx, 1, &g2, NULL, 1, &x, 0, &g3));
        tu_assert_scalar(g3, 6, 1e-15);
    }
}

static void test_create_graph_gives_a_hessian_vector_product(void **state)
{
    jac_ctx *ctx = *state;
    /* f = sum(x^3) + x0 x1: H = diag(6 x) + [[0 1] [1 0]] */
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(0.5, -2));
    jac_tensor *x0 = jac_slice(ctx, x, 0, 0, 1, 1);
    jac_tensor *x1 = jac_slice(ctx, x, 0, 1, 2, 1);
    jac_tensor *f = jac_add(ctx, jac_sum(ctx, jac_pow_scalar(ctx, x, 3)),
                            jac_sum(ctx, jac_mul(ctx, x0, x1)));
    jac_tensor *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &f, NULL, 1, &x, JAC_CREATE_GRAPH, &g));
    tu_assert_tensor(g, TU_SHAPE(2), TU_VALUES(0.75 - 2, 12 + 0.5), 0.0);
    jac_tensor *v = tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(1, 10));
    jac_tensor *hv = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &g, &v, 1, &x, 0, &hv));
    tu_assert_tensor(hv, TU_SHAPE(2), TU_VALUES(3 * 1 + 10, 1 - 12 * 10), 0.0);
}

static void test_gradient_without_create_graph_is_a_constant(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_scalar_leaf(ctx, 2.0);
    jac_tensor *y = jac_pow_scalar(ctx, x, 3);
    jac_tensor *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 1, &x, 0, &g));
    assert_false(jac_requires_grad(g));
    assert_true(jac_is_leaf(g));
}

/* ---------------------------------------------------------------------- */
/* Unused inputs and misuse                                                */
/* ---------------------------------------------------------------------- */

static void test_unused_input_is_an_error_unless_allowed(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1, 2));
    jac_tensor *z = tu_leaf(ctx, TU_SHAPE(2, 2), TU_VALUES(1, 2, 3, 4));
    jac_tensor *y = jac_sum(ctx, jac_mul(ctx, x, x));
    jac_tensor *inputs[2] = {x, z};
    jac_tensor *grads[2] = {SENTINEL, SENTINEL};
    assert_int_equal(
        jac_grad(ctx, 1, &y, NULL, 2, inputs, JAC_RETAIN_GRAPH, grads),
        JAC_ERR_UNUSED_INPUT);
    tu_assert_error(ctx, JAC_ERR_UNUSED_INPUT);
    assert_ptr_equal(grads[0], SENTINEL);
    assert_ptr_equal(grads[1], SENTINEL);
    jac_clear_error(ctx);
    tu_assert_ok(
        ctx, jac_grad(ctx, 1, &y, NULL, 2, inputs, JAC_ALLOW_UNUSED, grads));
    tu_assert_tensor(grads[0], TU_SHAPE(2), TU_VALUES(2, 4), 0.0);
    tu_assert_tensor(grads[1], TU_SHAPE(2, 2), TU_VALUES(0, 0, 0, 0), 0.0);
}

static void test_input_that_does_not_require_grad_is_an_error(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1, 2));
    jac_tensor *c = tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(3, 4));
    jac_tensor *y = jac_sum(ctx, jac_mul(ctx, x, c));
    jac_tensor *inputs[2] = {x, c};
    jac_tensor *grads[2] = {SENTINEL, SENTINEL};
    assert_int_equal(jac_grad(ctx, 1, &y, NULL, 2, inputs, 0, grads),
                     JAC_ERR_NO_GRAD);
    tu_assert_error(ctx, JAC_ERR_NO_GRAD);
    assert_ptr_equal(grads[0], SENTINEL);
    assert_ptr_equal(grads[1], SENTINEL);
    /* The failed call released nothing: a correct call still works. */
    jac_clear_error(ctx);
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 1, &x, 0, grads));
    tu_assert_tensor(grads[0], TU_SHAPE(2), TU_VALUES(3, 4), 0.0);
}

static void test_non_scalar_output_without_seed_is_an_error(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1, 2));
    jac_tensor *y = jac_mul(ctx, x, x);
    jac_tensor *g = SENTINEL;
    assert_int_equal(jac_grad(ctx, 1, &y, NULL, 1, &x, 0, &g), JAC_ERR_NO_SEED);
    tu_assert_error(ctx, JAC_ERR_NO_SEED);
    assert_ptr_equal(g, SENTINEL);
    jac_clear_error(ctx);
    jac_tensor *seeds[1] = {NULL};
    assert_int_equal(jac_grad(ctx, 1, &y, seeds, 1, &x, 0, &g),
                     JAC_ERR_NO_SEED);
    assert_ptr_equal(g, SENTINEL);
}

static void test_seed_of_the_wrong_shape_is_an_error(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2, 3), TU_VALUES(1, 2, 3, 4, 5, 6));
    jac_tensor *y = jac_exp(ctx, x);
    jac_tensor *g = SENTINEL;
    jac_tensor *bad[3] = {
        jac_ones(ctx, 2, TU_SHAPE(3, 2)), jac_ones(ctx, 1, TU_SHAPE(6)),
        jac_ones(ctx, 1, TU_SHAPE(3)), /* would broadcast, still wrong */
    };
    for (size_t i = 0; i < 3; ++i) {
        jac_clear_error(ctx);
        assert_int_equal(jac_grad(ctx, 1, &y, &bad[i], 1, &x, 0, &g),
                         JAC_ERR_SEED_SHAPE);
        tu_assert_error(ctx, JAC_ERR_SEED_SHAPE);
        assert_ptr_equal(g, SENTINEL);
    }
    /* A seed for a rank-0 output must be rank 0 (or one element). */
    jac_clear_error(ctx);
    jac_tensor *s = jac_sum(ctx, y);
    jac_tensor *two = jac_ones(ctx, 1, TU_SHAPE(2));
    assert_int_equal(jac_grad(ctx, 1, &s, &two, 1, &x, 0, &g),
                     JAC_ERR_SEED_SHAPE);
    assert_ptr_equal(g, SENTINEL);
}

/* ---------------------------------------------------------------------- */
/* Batched seeds                                                           */
/* ---------------------------------------------------------------------- */

/* y (4,) from x (2, 3) and W (3, 4), through mul, matmul, broadcasting add,
 * tanh, slice, reshape and sum_axis. */
static jac_tensor *batched_expression(jac_ctx *ctx, jac_tensor *x,
                                      jac_tensor *w)
{
    jac_tensor *c = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(0.5, -1, 2));
    jac_tensor *b = tu_tensor(ctx, TU_SHAPE(4), TU_VALUES(0.1, 0.2, -0.3, 0));
    jac_tensor *u = jac_mul(ctx, jac_mul(ctx, x, x), c); /* (2, 3) */
    jac_tensor *t = jac_tanh(ctx, jac_add(ctx, jac_matmul(ctx, u, w), b));
    jac_tensor *s = jac_slice(ctx, t, 1, 0, 4, 2);        /* (2, 2) */
    jac_tensor *r = jac_reshape(ctx, s, 1, TU_SHAPE(-1)); /* (4,) */
    jac_tensor *q = jac_sum_axis(ctx, jac_reshape(ctx, t, 2, TU_SHAPE(4, 2)), 1,
                                 false); /* (4,) */
    return jac_add(ctx, r, jac_mul(ctx, q, r));
}

static void test_batched_seeds_equal_separate_passes(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_smooth_leaf(ctx, TU_SHAPE(2, 3), 0.3);
    jac_tensor *w = tu_leaf(ctx, TU_SHAPE(3, 4),
                            TU_VALUES(0.2, -0.1, 0.3, 0.5, -0.4, 0.1, 0.2, -0.3,
                                      0.05, 0.3, -0.2, 0.1));
    jac_tensor *y = batched_expression(ctx, x, w);
    tu_assert_shape(y, TU_SHAPE(4));
    enum { B = 5 };
    jac_tensor *seeds =
        tu_tensor(ctx, TU_SHAPE(B, 4),
                  TU_VALUES(1, 0, 0, 0, 0.5, -1, 2, 0.25, 0, 0, 0, 1, -3, 1,
                            0.5, 2, 0.1, 0.2, 0.3, 0.4));
    jac_tensor *inputs[2] = {x, w};
    jac_tensor *batched[2] = {NULL, NULL};
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, &seeds, 2, inputs,
                               JAC_BATCHED_SEEDS | JAC_RETAIN_GRAPH, batched));
    tu_assert_shape(batched[0], TU_SHAPE(B, 2, 3));
    tu_assert_shape(batched[1], TU_SHAPE(B, 3, 4));
    for (int64_t b = 0; b < B; ++b) {
        jac_tensor *seed = jac_reshape(
            ctx, jac_slice(ctx, seeds, 0, b, b + 1, 1), 1, TU_SHAPE(4));
        jac_tensor *one[2] = {NULL, NULL};
        tu_assert_ok(
            ctx, jac_grad(ctx, 1, &y, &seed, 2, inputs, JAC_RETAIN_GRAPH, one));
        tu_assert_close(jac_tensor_data(batched[0]) + b * 6,
                        jac_tensor_data(one[0]), 6, 1e-14, 1e-13);
        tu_assert_close(jac_tensor_data(batched[1]) + b * 12,
                        jac_tensor_data(one[1]), 12, 1e-14, 1e-13);
    }
}

static void test_batched_identity_seeds_give_the_jacobian(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_smooth_leaf(ctx, TU_SHAPE(2, 3), 0.9);
    jac_tensor *w = tu_smooth_leaf(ctx, TU_SHAPE(3, 4), 0.1);
    jac_tensor *y = batched_expression(ctx, x, w);
    jac_tensor *eye = jac_eye(ctx, 4);
    jac_tensor *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, &eye, 1, &x,
                               JAC_BATCHED_SEEDS | JAC_RETAIN_GRAPH, &g));
    jac_tensor *jac = jac_jacobian(ctx, y, x, 0);
    tu_assert_shape(g, TU_SHAPE(4, 2, 3));
    tu_assert_shape(jac, TU_SHAPE(4, 2, 3));
    tu_assert_close(jac_tensor_data(g), jac_tensor_data(jac), 24, 1e-14, 1e-13);
}

static void test_batched_seeds_for_a_rank_0_output(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1, 2));
    jac_tensor *y = jac_sum(ctx, jac_mul(ctx, x, x));
    jac_tensor *seeds = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(1, -1, 0.5));
    jac_tensor *g = NULL;
    tu_assert_ok(ctx,
                 jac_grad(ctx, 1, &y, &seeds, 1, &x, JAC_BATCHED_SEEDS, &g));
    tu_assert_tensor(g, TU_SHAPE(3, 2), TU_VALUES(2, 4, -2, -4, 1, 2), 0.0);
}

static void test_batched_seeds_of_the_wrong_shape_are_an_error(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1, 2));
    jac_tensor *y = jac_mul(ctx, x, x);
    /* An unbatched seed under JAC_BATCHED_SEEDS: (2,) is not (B, 2). */
    jac_tensor *seed = jac_ones(ctx, 1, TU_SHAPE(2));
    jac_tensor *g = SENTINEL;
    assert_int_equal(jac_grad(ctx, 1, &y, &seed, 1, &x, JAC_BATCHED_SEEDS, &g),
                     JAC_ERR_SEED_SHAPE);
    assert_ptr_equal(g, SENTINEL);
    jac_clear_error(ctx);
    jac_tensor *wide = jac_ones(ctx, 2, TU_SHAPE(3, 3));
    assert_int_equal(jac_grad(ctx, 1, &y, &wide, 1, &x, JAC_BATCHED_SEEDS, &g),
                     JAC_ERR_SEED_SHAPE);
    assert_ptr_equal(g, SENTINEL);
}

/* ---------------------------------------------------------------------- */
/* jac_backward and .grad                                                  */
/* ---------------------------------------------------------------------- */

static void
test_backward_accumulates_into_grad_and_zero_grad_resets(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1, -3));
    jac_tensor *c = tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(5, 5));
    assert_null(jac_tensor_grad(x));
    for (int pass = 0; pass < 2; ++pass) {
        jac_tensor *y = jac_sum(ctx, jac_mul(ctx, jac_mul(ctx, x, x), c));
        tu_assert_ok(ctx, jac_backward(ctx, y, NULL, 0));
    }
    /* 2 passes of 10 x */
    tu_assert_tensor(jac_tensor_grad(x), TU_SHAPE(2), TU_VALUES(20, -60), 0.0);
    /* c does not require gradients: no .grad. */
    assert_null(jac_tensor_grad(c));
    jac_tensor *grad_before = jac_tensor_grad(x);
    tu_assert_ok(ctx, jac_zero_grad(x));
    assert_ptr_equal(jac_tensor_grad(x), grad_before);
    tu_assert_tensor(jac_tensor_grad(x), TU_SHAPE(2), TU_VALUES(0, 0), 0.0);
    jac_tensor *y = jac_sum(ctx, jac_mul(ctx, x, x));
    tu_assert_ok(ctx, jac_backward(ctx, y, NULL, 0));
    tu_assert_tensor(jac_tensor_grad(x), TU_SHAPE(2), TU_VALUES(2, -6), 0.0);
}

static void test_backward_with_a_seed_and_retained_graph(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1, 2));
    jac_tensor *b = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(3, 4));
    jac_tensor *y = jac_mul(ctx, a, b);
    jac_tensor *seed = tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(1, 10));
    tu_assert_ok(ctx, jac_backward(ctx, y, seed, JAC_RETAIN_GRAPH));
    tu_assert_ok(ctx, jac_backward(ctx, y, seed, 0));
    tu_assert_tensor(jac_tensor_grad(a), TU_SHAPE(2), TU_VALUES(6, 80), 0.0);
    tu_assert_tensor(jac_tensor_grad(b), TU_SHAPE(2), TU_VALUES(2, 40), 0.0);
    /* The graph is released now. */
    assert_int_equal(jac_backward(ctx, y, seed, 0), JAC_ERR_RELEASED);
    tu_assert_tensor(jac_tensor_grad(a), TU_SHAPE(2), TU_VALUES(6, 80), 0.0);
}

static void test_backward_never_writes_into_the_seed(void **state)
{
    jac_ctx *ctx = *state;
    /* The gradient of a reshape is a reshape of the seed: accumulating into
     * it, or zeroing it, must not reach the caller's seed. */
    for (int create = 0; create <= 1; ++create) {
        unsigned flags = create ? JAC_CREATE_GRAPH : JAC_RETAIN_GRAPH;
        jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1, 2));
        jac_tensor *y = jac_reshape(ctx, x, 2, TU_SHAPE(1, 2));
        jac_tensor *seed = tu_tensor(ctx, TU_SHAPE(1, 2), TU_VALUES(3, 4));
        tu_assert_ok(ctx, jac_backward(ctx, y, seed, flags));
        tu_assert_ok(ctx, jac_backward(ctx, y, seed, flags));
        tu_assert_tensor(jac_tensor_grad(x), TU_SHAPE(2), TU_VALUES(6, 8), 0.0);
        tu_assert_tensor(seed, TU_SHAPE(1, 2), TU_VALUES(3, 4), 0.0);
        tu_assert_ok(ctx, jac_zero_grad(x));
        tu_assert_tensor(seed, TU_SHAPE(1, 2), TU_VALUES(3, 4), 0.0);
        tu_assert_tensor(jac_tensor_grad(x), TU_SHAPE(2), TU_VALUES(0, 0), 0.0);
        /* And a single pass whose .grad is new. */
        jac_tensor *z = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1, 2));
        jac_tensor *w = jac_reshape(ctx, z, 2, TU_SHAPE(2, 1));
        jac_tensor *s2 = tu_tensor(ctx, TU_SHAPE(2, 1), TU_VALUES(5, 6));
        tu_assert_ok(ctx, jac_backward(ctx, w, s2, flags));
        tu_assert_ok(ctx, jac_zero_grad(z));
        tu_assert_tensor(s2, TU_SHAPE(2, 1), TU_VALUES(5, 6), 0.0);
    }
}

static void test_backward_of_a_non_scalar_without_seed_fails(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1, 2));
    jac_tensor *y = jac_exp(ctx, x);
    assert_int_equal(jac_backward(ctx, y, NULL, 0), JAC_ERR_NO_SEED);
    tu_assert_error(ctx, JAC_ERR_NO_SEED);
    assert_null(jac_tensor_grad(x));
}

static void test_zero_grad_without_a_grad_is_a_no_op(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1, 2));
    tu_assert_ok(ctx, jac_zero_grad(x));
    assert_null(jac_tensor_grad(x));
    tu_assert_no_error(ctx);
}

/* ---------------------------------------------------------------------- */
/* No-grad mode                                                            */
/* ---------------------------------------------------------------------- */

static void test_no_grad_mode_records_nothing(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1, 2));
    jac_tensor *recorded = jac_exp(ctx, x);
    assert_true(jac_requires_grad(recorded));
    size_t tape = jac_ctx_tape_length(ctx);
    assert_true(tape > 0);
    assert_true(jac_set_grad_enabled(ctx, false));
    jac_tensor *y = jac_sum(ctx, jac_mul(ctx, jac_exp(ctx, x), x));
    assert_int_equal(jac_ctx_tape_length(ctx), tape);
    assert_false(jac_requires_grad(y));
    assert_true(jac_is_leaf(y));
    tu_assert_scalar(y, 2.718281828459045 + 2 * 7.38905609893065, 1e-14);
    assert_false(jac_set_grad_enabled(ctx, true));
    /* y is a constant: x is not used by it. */
    jac_tensor *g = SENTINEL;
    assert_int_not_equal(jac_grad(ctx, 1, &y, NULL, 1, &x, 0, &g), JAC_OK);
    assert_ptr_equal(g, SENTINEL);
    jac_clear_error(ctx);
    /* Recording resumes. */
    jac_tensor *z = jac_exp(ctx, x);
    assert_true(jac_requires_grad(z));
    assert_true(jac_ctx_tape_length(ctx) > tape);
}

static void test_recording_appends_to_the_tape(void **state)
{
    jac_ctx *ctx = *state;
    size_t before = jac_ctx_tape_length(ctx);
    jac_tensor *c = tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(1, 2));
    /* Results of constants are constants. */
    jac_tensor *k = jac_exp(ctx, c);
    assert_false(jac_requires_grad(k));
    before = jac_ctx_tape_length(ctx);
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1, 2));
    jac_tensor *y = jac_exp(ctx, x);
    size_t one = jac_ctx_tape_length(ctx);
    assert_true(one > before);
    y = jac_mul(ctx, y, k);
    assert_true(jac_ctx_tape_length(ctx) > one);
    assert_false(jac_is_leaf(y));
}

/* The two ways an output silently loses its inputs get messages that say
 * what happened, and do not suggest JAC_ALLOW_UNUSED. */
static void test_unused_input_messages_name_the_cause(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1, 2)), *g = NULL;
    /* Recording left off by mistake. */
    bool was = jac_set_grad_enabled(ctx, false);
    jac_tensor *y = jac_sum(ctx, jac_exp(ctx, x));
    jac_set_grad_enabled(ctx, was);
    assert_int_equal(jac_grad(ctx, 1, &y, NULL, 1, &x, 0, &g),
                     JAC_ERR_UNUSED_INPUT);
    tu_assert_contains(jac_errmsg(ctx), "has no history");
    tu_assert_contains(jac_errmsg(ctx), "recording off");
    assert_null(strstr(jac_errmsg(ctx), "JAC_ALLOW_UNUSED"));
    jac_clear_error(ctx);
    /* The input marked after the output was computed. */
    jac_tensor *w = tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(3, 4));
    jac_tensor *z = jac_sum(ctx, jac_exp(ctx, w));
    tu_assert_ok(ctx, jac_set_requires_grad(w, true));
    assert_int_equal(jac_grad(ctx, 1, &z, NULL, 1, &w, 0, &g),
                     JAC_ERR_UNUSED_INPUT);
    tu_assert_contains(jac_errmsg(ctx), "input 0 (shape (2)) was marked");
    tu_assert_contains(jac_errmsg(ctx), "mark the input first");
    assert_null(strstr(jac_errmsg(ctx), "JAC_ALLOW_UNUSED"));
    jac_clear_error(ctx);
    /* ... and when a later output mixes it with others, the message names
     * both possible causes. */
    jac_tensor *ins[2] = {x, w}, *gs[2] = {NULL, NULL};
    jac_tensor *zs = jac_add(ctx, z, jac_sum(ctx, x));
    assert_int_equal(jac_grad(ctx, 1, &zs, NULL, 2, ins, 0, gs),
                     JAC_ERR_UNUSED_INPUT);
    tu_assert_contains(jac_errmsg(ctx), "mark it first");
    jac_clear_error(ctx);
    /* Truly unused: the message offers JAC_ALLOW_UNUSED. */
    jac_tensor *v = tu_leaf(ctx, TU_SHAPE(1), TU_VALUES(5));
    jac_tensor *ins2[2] = {x, v};
    jac_tensor *y2 = jac_sum(ctx, jac_exp(ctx, x));
    assert_int_equal(jac_grad(ctx, 1, &y2, NULL, 2, ins2, 0, gs),
                     JAC_ERR_UNUSED_INPUT);
    tu_assert_contains(jac_errmsg(ctx), "JAC_ALLOW_UNUSED");
    jac_clear_error(ctx);
}

/* ---------------------------------------------------------------------- */
/* Leaves updated in place                                                 */
/* ---------------------------------------------------------------------- */

/* The graph saved w's old values: differentiating it now would mix old
 * and new, so it is refused, naming the op. */
static void test_a_graph_recorded_before_fill_is_refused(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *w = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1, 2));
    jac_tensor *y = jac_sum(ctx, jac_mul(ctx, w, w)), *g = NULL;
    tu_assert_ok(ctx, jac_tensor_fill(w, TU_VALUES(3, 4)));
    assert_int_equal(jac_grad(ctx, 1, &y, NULL, 1, &w, 0, &g), JAC_ERR_STATE);
    tu_assert_contains(jac_errmsg(ctx), "'mul'");
    tu_assert_contains(jac_errmsg(ctx), "jac_tensor_fill");
    assert_null(g);
    jac_clear_error(ctx);
    /* Recorded again from the new values, it differentiates. */
    y = jac_sum(ctx, jac_mul(ctx, w, w));
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 1, &w, 0, &g));
    tu_assert_tensor(g, TU_SHAPE(2), TU_VALUES(6, 8), 0.0);
}

/* Gradient descent on sum((w - t)^2): grad, then w = w - lr g in place,
 * with a scope per step so that memory stays flat. */
static void test_training_loop_updates_leaves_in_place(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *w = tu_leaf(ctx, TU_SHAPE(3), TU_VALUES(0, 0, 0));
    jac_tensor *t = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(1, -2, 0.5));
    size_t tensors = jac_ctx_tensor_count(ctx);
    for (int step = 0; step < 200; step++) {
        jac_scope mark = jac_scope_begin(ctx);
        jac_tensor *d = jac_sub(ctx, w, t);
        jac_tensor *loss = jac_sum(ctx, jac_mul(ctx, d, d)), *g = NULL;
        tu_assert_ok(ctx, jac_grad(ctx, 1, &loss, NULL, 1, &w, 0, &g));
        tu_assert_ok(ctx, jac_tensor_assign(
                              w, jac_sub(ctx, w, jac_mul_scalar(ctx, g, 0.1))));
        tu_assert_ok(ctx, jac_scope_end(ctx, mark, NULL, 0));
    }
    assert_int_equal(jac_ctx_tensor_count(ctx), tensors);
    tu_assert_tensor(w, TU_SHAPE(3), TU_VALUES(1, -2, 0.5), 1e-12);
    assert_true(jac_requires_grad(w));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_grad_sums_the_seeded_contributions_of_every_output),
        TU_TEST(test_grad_with_several_inputs_gives_one_gradient_each),
        TU_TEST(test_unused_input_messages_name_the_cause),
        TU_TEST(test_a_graph_recorded_before_fill_is_refused),
        TU_TEST(test_training_loop_updates_leaves_in_place),
        TU_TEST(test_seed_may_be_omitted_for_one_element_outputs),
        TU_TEST(test_input_listed_twice_gets_the_same_gradient_twice),
        TU_TEST(test_output_that_is_the_input_passes_the_seed_through),
        TU_TEST(test_an_input_made_from_another_input_gets_its_own_gradient),
        TU_TEST(test_gradient_flows_through_a_long_chain),
        TU_TEST(test_one_element_passes_equal_the_vector_kernels_and_rules),
        TU_TEST(test_retain_graph_allows_a_second_pass),
        TU_TEST(test_second_pass_without_retain_graph_fails_released),
        TU_TEST(test_new_output_built_on_a_released_graph_fails_released),
        TU_TEST(test_a_pass_releases_only_the_graph_it_went_through),
        TU_TEST(test_fresh_graph_on_the_same_leaf_works_after_a_release),
        TU_TEST(test_create_graph_gives_second_and_third_derivatives),
        TU_TEST(test_create_graph_gives_a_hessian_vector_product),
        TU_TEST(test_gradient_without_create_graph_is_a_constant),
        TU_TEST(test_unused_input_is_an_error_unless_allowed),
        TU_TEST(test_input_that_does_not_require_grad_is_an_error),
        TU_TEST(test_non_scalar_output_without_seed_is_an_error),
        TU_TEST(test_seed_of_the_wrong_shape_is_an_error),
        TU_TEST(test_batched_seeds_equal_separate_passes),
        TU_TEST(test_batched_identity_seeds_give_the_jacobian),
        TU_TEST(test_batched_seeds_for_a_rank_0_output),
        TU_TEST(test_batched_seeds_of_the_wrong_shape_are_an_error),
        TU_TEST(test_backward_accumulates_into_grad_and_zero_grad_resets),
        TU_TEST(test_backward_with_a_seed_and_retained_graph),
        TU_TEST(test_backward_never_writes_into_the_seed),
        TU_TEST(test_backward_of_a_non_scalar_without_seed_fails),
        TU_TEST(test_zero_grad_without_a_grad_is_a_no_op),
        TU_TEST(test_no_grad_mode_records_nothing),
        TU_TEST(test_recording_appends_to_the_tape),
    };
    return cmocka_run_group_tests_name("autograd", tests, NULL, NULL);
}
