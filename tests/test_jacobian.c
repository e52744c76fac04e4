/*
 * Jacobians, Hessians and a third-order derivative tensor: exact small
 * cases, shapes, analytic Hessians, the benchmark's reference checksums.
 *
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"

/* The benchmark's input: x[j] = 0.5 sin(0.3 j + 0.7). */
static jac_tensor *benchmark_x(jac_ctx *ctx, int64_t n)
{
    double *values = malloc((size_t)n * sizeof *values);
    assert_non_null(values);
    for (int64_t j = 0; j < n; ++j) {
        values[j] = 0.5 * sin(0.3 * (double)j + 0.7);
    }
    jac_tensor *x = jac_tensor_new(ctx, 1, &n, values);
    free(values);
    assert_non_null(x);
    tu_assert_ok(ctx, jac_set_requires_grad(x, true));
    return x;
}

/* sum(J), sqrt(sum(J * J)) and J[0], as the benchmark reports them. */
typedef struct checksums {
    double sum;
    double fro;
    double j00;
} checksums;

static checksums checksums_of(const jac_tensor *jac)
{
    const double *d = jac_tensor_data(jac);
    checksums c = {0, 0, d[0]};
    for (int64_t i = 0; i < jac_tensor_numel(jac); ++i) {
        c.sum += d[i];
        c.fro += d[i] * d[i];
    }
    c.fro = sqrt(c.fro);
    return c;
}

static void assert_checksums_at(const jac_tensor *jac, checksums want,
                                const char *file, int line)
{
    checksums got = checksums_of(jac);
    const double rel = 1e-9;
    tu_assert_close_at(&got.sum, &want.sum, 1, 0.0, rel, file, line);
    tu_assert_close_at(&got.fro, &want.fro, 1, 0.0, rel, file, line);
    tu_assert_close_at(&got.j00, &want.j00, 1, 0.0, rel, file, line);
}
#define assert_checksums(jac, sum, fro, j00)                                   \
    assert_checksums_at((jac), (checksums){(sum), (fro), (j00)}, __FILE__,     \
                        __LINE__)

/* Rosenbrock, slice form: sum 100 (x[1:] - x[:-1]^2)^2 + (1 - x[:-1])^2. */
static jac_tensor *rosenbrock(jac_ctx *ctx, jac_tensor *x)
{
    jac_tensor *head = jac_slice(ctx, x, 0, 0, -1, 1);
    jac_tensor *tail = jac_slice(ctx, x, 0, 1, INT64_MAX, 1);
    jac_tensor *u = jac_sub(ctx, tail, jac_pow_scalar(ctx, head, 2));
    jac_tensor *v = jac_rsub_scalar(ctx, 1.0, head);
    return jac_sum(
        ctx, jac_add(ctx, jac_mul_scalar(ctx, jac_pow_scalar(ctx, u, 2), 100.0),
                     jac_pow_scalar(ctx, v, 2)));
}

/* The Hessian by reverse over reverse: the Jacobian of a recorded gradient. */
static jac_tensor *hessian_of(jac_ctx *ctx, jac_tensor *f, jac_tensor *x,
                              unsigned flags)
{
    jac_tensor *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &f, NULL, 1, &x, JAC_CREATE_GRAPH, &g));
    jac_tensor *h = jac_jacobian(ctx, g, x, flags);
    if (h == NULL) {
        print_error("jac_jacobian: %s\n", jac_errmsg(ctx));
        fail();
    }
    return h;
}

/* ---------------------------------------------------------------------- */
/* The square example                                                      */
/* ---------------------------------------------------------------------- */

static void test_jacobian_of_square_is_exactly_diag_2x(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(2, 3));
    jac_tensor *y = jac_pow_scalar(ctx, x, 2);
    jac_tensor *jac = jac_jacobian(ctx, y, x, 0);
    tu_assert_tensor(jac, TU_SHAPE(2, 2), TU_VALUES(4, 0, 0, 6), 0.0);
    /* The same through mul. */
    jac_tensor *z = jac_mul(ctx, x, x);
    tu_assert_tensor(jac_jacobian(ctx, z, x, 0), TU_SHAPE(2, 2),
                     TU_VALUES(4, 0, 0, 6), 0.0);
    assert_false(jac_requires_grad(jac));
}

static void test_jacobian_with_create_graph_is_differentiable(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(2, 3));
    jac_tensor *y = jac_pow_scalar(ctx, x, 2);
    jac_tensor *jac = jac_jacobian(ctx, y, x, JAC_CREATE_GRAPH);
    tu_assert_tensor(jac, TU_SHAPE(2, 2), TU_VALUES(4, 0, 0, 6), 0.0);
    assert_true(jac_requires_grad(jac));
    /* d/dx sum(J) = d/dx (2 x0 + 2 x1) = [2, 2] */
    jac_tensor *s = jac_sum(ctx, jac);
    jac_tensor *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &s, NULL, 1, &x, 0, &g));
    tu_assert_tensor(g, TU_SHAPE(2), TU_VALUES(2, 2), 0.0);
}

static void test_jacobian_keeps_the_graph_of_y(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(2, 3));
    jac_tensor *y = jac_exp(ctx, x);
    jac_tensor *first = jac_jacobian(ctx, y, x, 0);
    jac_tensor *second = jac_jacobian(ctx, y, x, 0);
    assert_non_null(first);
    assert_non_null(second);
    tu_assert_close(jac_tensor_data(second), jac_tensor_data(first), 4, 0.0,
                    0.0);
    jac_tensor *seed = tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(1, 1));
    jac_tensor *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, &seed, 1, &x, 0, &g));
    tu_assert_tensor(g, TU_SHAPE(2),
                     TU_VALUES(7.38905609893065, 20.085536923187668), 1e-14);
}

static void
test_jacobian_of_x_with_respect_to_itself_is_the_identity(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2, 2), TU_VALUES(1, 2, 3, 4));
    jac_tensor *jac = jac_jacobian(ctx, x, x, 0);
    tu_assert_shape(jac, TU_SHAPE(2, 2, 2, 2));
    tu_assert_close(jac_tensor_data(jac),
                    TU_VALUES(1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1),
                    16, 0.0, 0.0);
}

/* ---------------------------------------------------------------------- */
/* Shapes                                                                  */
/* ---------------------------------------------------------------------- */

/* y of rank out_rank (user) from x of any rank, with v = x flattened:
 * rank 0: sum(sin(v) v); rank 1: sin(v) sum(v); rank 2: sin(v) v^T. */
static jac_status rank_fn(jac_ctx *ctx, jac_tensor *const *in, jac_tensor **out,
                          void *user)
{
    const int out_rank = *(const int *)user;
    jac_tensor *v = jac_reshape(ctx, in[0], 1, TU_SHAPE(-1));
    jac_tensor *s = jac_sin(ctx, v);
    switch (out_rank) {
    case 0:
        out[0] = jac_sum(ctx, jac_mul(ctx, s, v));
        break;
    case 1:
        out[0] = jac_mul(ctx, s, jac_sum(ctx, v));
        break;
    default:
        out[0] = jac_matmul(ctx, jac_reshape(ctx, s, 2, TU_SHAPE(-1, 1)),
                            jac_reshape(ctx, v, 2, TU_SHAPE(1, -1)));
        break;
    }
    return out[0] ? JAC_OK : jac_errcode(ctx);
}

static void test_jacobian_shape_is_y_shape_then_x_shape(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *xs[3] = {
        tu_scalar_leaf(ctx, 0.7),
        tu_leaf(ctx, TU_SHAPE(3), TU_VALUES(0.1, -0.4, 0.9)),
        tu_leaf(ctx, TU_SHAPE(2, 2), TU_VALUES(0.3, 0.5, -0.2, 1.1)),
    };
    for (int out_rank = 0; out_rank < 3; ++out_rank) {
        for (int in_rank = 0; in_rank < 3; ++in_rank) {
            /* Checks the shape y.shape ++ x.shape and the values. */
            tu_assert_jacobian_matches_fd(ctx, rank_fn, &out_rank, 1,
                                          &xs[in_rank], 1, 0, 0);
        }
    }
    /* Spelled out once: y (2, 2) from x (3,) for a (2, 2, 3) Jacobian. */
    jac_tensor *x = xs[1];
    jac_tensor *y = jac_reshape(
        ctx,
        jac_slice(ctx, jac_concat(ctx, 2, (jac_tensor *[]){x, x}, 0), 0, 0, 4,
                  1),
        2, TU_SHAPE(2, 2));
    jac_tensor *jac = jac_jacobian(ctx, y, x, 0);
    tu_assert_tensor(jac, TU_SHAPE(2, 2, 3),
                     TU_VALUES(1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0), 0.0);
}

/* An output that does not depend on x is an error, as in jac_grad, unless
 * JAC_ALLOW_UNUSED asks for the zeros. */
static void test_jacobian_with_respect_to_an_unused_x_is_zeros(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1, 2));
    jac_tensor *z = tu_leaf(ctx, TU_SHAPE(3), TU_VALUES(1, 2, 3));
    jac_tensor *y = jac_exp(ctx, z);
    assert_null(jac_jacobian(ctx, y, x, 0));
    tu_assert_error(ctx, JAC_ERR_UNUSED_INPUT);
    tu_assert_contains(jac_errmsg(ctx), "JAC_ALLOW_UNUSED");
    jac_clear_error(ctx);
    jac_tensor *jac = jac_jacobian(ctx, y, x, JAC_ALLOW_UNUSED);
    tu_assert_tensor(jac, TU_SHAPE(3, 2), TU_VALUES(0, 0, 0, 0, 0, 0), 0.0);
    /* Partly used: rows of the unused outputs are zero, and that needs no
     * flag (the output depends on x). */
    jac_tensor *parts[2] = {jac_mul(ctx, x, x), y};
    jac_tensor *both = jac_concat(ctx, 2, parts, 0);
    tu_assert_tensor(jac_jacobian(ctx, both, x, 0), TU_SHAPE(5, 2),
                     TU_VALUES(2, 0, 0, 4, 0, 0, 0, 0, 0, 0), 0.0);
    /* A constant y. */
    jac_tensor *c = tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(5, 6));
    assert_null(jac_jacobian(ctx, c, x, 0));
    tu_assert_contains(jac_errmsg(ctx), "is a constant");
    jac_clear_error(ctx);
    tu_assert_tensor(jac_jacobian(ctx, c, x, JAC_ALLOW_UNUSED), TU_SHAPE(2, 2),
                     TU_VALUES(0, 0, 0, 0), 0.0);
    /* Computed with recording off: said so, without suggesting the flag. */
    bool was = jac_set_grad_enabled(ctx, false);
    jac_tensor *off = jac_exp(ctx, x);
    jac_set_grad_enabled(ctx, was);
    assert_null(jac_jacobian(ctx, off, x, 0));
    tu_assert_contains(jac_errmsg(ctx), "recording off");
    assert_null(strstr(jac_errmsg(ctx), "JAC_ALLOW_UNUSED"));
    jac_clear_error(ctx);
    tu_assert_no_error(ctx);
}

static void test_jacobian_needs_an_x_that_requires_grad(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(1, 2));
    jac_tensor *y = jac_exp(ctx, x);
    assert_null(jac_jacobian(ctx, y, x, 0));
    tu_assert_error(ctx, JAC_ERR_NO_GRAD);
    tu_assert_contains(jac_errmsg(ctx), "jacobian");
}

/* ---------------------------------------------------------------------- */
/* Hessians                                                                */
/* ---------------------------------------------------------------------- */

/* The Hessian of Rosenbrock, worked out by hand: for each term i,
 * d2/dx_i^2 = 1200 x_i^2 - 400 x_{i+1} + 2, d2/dx_i dx_{i+1} = -400 x_i,
 * d2/dx_{i+1}^2 = 200. */
static void rosenbrock_hessian(const double *x, int n, double *h)
{
    for (int i = 0; i < n * n; ++i) {
        h[i] = 0.0;
    }
    for (int i = 0; i + 1 < n; ++i) {
        h[i * n + i] += 1200.0 * x[i] * x[i] - 400.0 * x[i + 1] + 2.0;
        h[i * n + i + 1] += -400.0 * x[i];
        h[(i + 1) * n + i] += -400.0 * x[i];
        h[(i + 1) * n + i + 1] += 200.0;
    }
}

static void
test_rosenbrock_hessian_is_symmetric_and_matches_analytic(void **state)
{
    jac_ctx *ctx = *state;
    enum { N = 8 };
    jac_tensor *x = benchmark_x(ctx, N);
    jac_tensor *h = hessian_of(ctx, rosenbrock(ctx, x), x, 0);
    tu_assert_shape(h, TU_SHAPE(N, N));
    const double *d = jac_tensor_data(h);
    for (int i = 0; i < N; ++i) {
        for (int j = 0; j < i; ++j) {
            tu_assert_close(&d[i * N + j], &d[j * N + i], 1, 1e-12, 1e-14);
        }
    }
    double want[N * N];
    rosenbrock_hessian(jac_tensor_data(x), N, want);
    tu_assert_close(d, want, N * N, 1e-12, 1e-13);
}

static void
test_p1_square_jacobian_matches_the_reference_checksums(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = benchmark_x(ctx, 256);
    jac_tensor *jac = jac_jacobian(ctx, jac_pow_scalar(ctx, x, 2), x, 0);
    tu_assert_shape(jac, TU_SHAPE(256, 256));
    assert_checksums(jac, 4.0965276809403131, 11.372683751084219,
                     0.64421768723769102);
}

static void
test_p3_rosenbrock_hessian_matches_the_reference_checksums(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = benchmark_x(ctx, 64);
    jac_tensor *h = hessian_of(ctx, rosenbrock(ctx, x), x, 0);
    tu_assert_shape(h, TU_SHAPE(64, 64));
    assert_checksums(h, 22102.920748172011, 3505.0845285148939,
                     -41.789268396615455);
}

/* ---------------------------------------------------------------------- */
/* Third derivatives                                                       */
/* ---------------------------------------------------------------------- */

static const double third_w[3][2] = {{0.5, -0.3}, {0.2, 0.8}, {-0.6, 0.4}};

/* f(x) = sum(tanh(W x)) for x (2,) and W (3, 2). */
static jac_tensor *tanh_layer(jac_ctx *ctx, jac_tensor *x)
{
    jac_tensor *w =
        tu_tensor(ctx, TU_SHAPE(3, 2),
                  TU_VALUES(third_w[0][0], third_w[0][1], third_w[1][0],
                            third_w[1][1], third_w[2][0], third_w[2][1]));
    return jac_sum(ctx, jac_tanh(ctx, jac_matmul(ctx, w, x)));
}

/* The Hessian of tanh_layer at (x0, x1), by the library. */
static void library_hessian(jac_ctx *ctx, double x0, double x1, double *out)
{
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(x0, x1));
    jac_tensor *h = hessian_of(ctx, tanh_layer(ctx, x), x, 0);
    memcpy(out, jac_tensor_data(h), 4 * sizeof *out);
}

static void
test_third_derivative_tensor_matches_finite_differences(void **state)
{
    jac_ctx *ctx = *state;
    const double at[2] = {0.3, -0.7};
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(at[0], at[1]));
    jac_tensor *h = hessian_of(ctx, tanh_layer(ctx, x), x, JAC_CREATE_GRAPH);
    assert_true(jac_requires_grad(h));
    jac_tensor *t = jac_jacobian(ctx, h, x, 0);
    tu_assert_shape(t, TU_SHAPE(2, 2, 2));
    const double *d = jac_tensor_data(t);

    /* Central differences of the Hessian along each k. */
    const double eps = 1e-5;
    double fd[8];
    for (int k = 0; k < 2; ++k) {
        double plus[4];
        double minus[4];
        library_hessian(ctx, at[0] + (k == 0 ? eps : 0),
                        at[1] + (k == 1 ? eps : 0), plus);
        library_hessian(ctx, at[0] - (k == 0 ? eps : 0),
                        at[1] - (k == 1 ? eps : 0), minus);
        for (int ij = 0; ij < 4; ++ij) {
            fd[ij * 2 + k] = (plus[ij] - minus[ij]) / (2 * eps);
        }
    }
    tu_assert_close(d, fd, 8, 1e-8, 1e-6);

    /* Analytic: sum_r tanh'''(z_r) W_ri W_rj W_rk with
     * tanh''' = (1 - t^2)(6 t^2 - 2). */
    double want[8] = {0};
    for (int r = 0; r < 3; ++r) {
        double z = third_w[r][0] * at[0] + third_w[r][1] * at[1];
        double th = tanh(z);
        double d3 = (1 - th * th) * (6 * th * th - 2);
        for (int i = 0; i < 2; ++i) {
            for (int j = 0; j < 2; ++j) {
                for (int k = 0; k < 2; ++k) {
                    want[(i * 2 + j) * 2 + k] +=
                        d3 * third_w[r][i] * third_w[r][j] * third_w[r][k];
                }
            }
        }
    }
    tu_assert_close(d, want, 8, 1e-14, 1e-12);
}

static void
test_jacobian_of_a_create_graph_jacobian_is_third_order(void **state)
{
    jac_ctx *ctx = *state;
    /* y = x^3 elementwise: J = diag(3 x^2), dJ/dx [i][i][i] = 6 x_i. */
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(0.5, -2));
    jac_tensor *y = jac_pow_scalar(ctx, x, 3);
    jac_tensor *jac = jac_jacobian(ctx, y, x, JAC_CREATE_GRAPH);
    tu_assert_tensor(jac, TU_SHAPE(2, 2), TU_VALUES(0.75, 0, 0, 12), 0.0);
    jac_tensor *t = jac_jacobian(ctx, jac, x, JAC_CREATE_GRAPH);
    tu_assert_tensor(t, TU_SHAPE(2, 2, 2), TU_VALUES(3, 0, 0, 0, 0, 0, 0, -12),
                     0.0);
    /* Fourth order: 6 on the diagonal. */
    jac_tensor *q = jac_jacobian(ctx, t, x, 0);
    tu_assert_shape(q, TU_SHAPE(2, 2, 2, 2));
    tu_assert_close(jac_tensor_data(q),
                    TU_VALUES(6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 6),
                    16, 0.0, 0.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_jacobian_of_square_is_exactly_diag_2x),
        TU_TEST(test_jacobian_with_create_graph_is_differentiable),
        TU_TEST(test_jacobian_keeps_the_graph_of_y),
        TU_TEST(test_jacobian_of_x_with_respect_to_itself_is_the_identity),
        TU_TEST(test_jacobian_shape_is_y_shape_then_x_shape),
        TU_TEST(test_jacobian_with_respect_to_an_unused_x_is_zeros),
        TU_TEST(test_jacobian_needs_an_x_that_requires_grad),
        TU_TEST(test_rosenbrock_hessian_is_symmetric_and_matches_analytic),
        TU_TEST(test_p1_square_jacobian_matches_the_reference_checksums),
        TU_TEST(test_p3_rosenbrock_hessian_matches_the_reference_checksums),
        TU_TEST(test_third_derivative_tensor_matches_finite_differences),
        TU_TEST(test_jacobian_of_a_create_graph_jacobian_is_third_order),
    };
    return cmocka_run_group_tests_name("jacobian", tests, NULL, NULL);
}
