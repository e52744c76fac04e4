/*
 * Parts of a Jacobian (src/program/share.h), as processes share them: the
 * seeds swept in fixed blocks from a given seed, any split of the blocks
 * into parts giving, bit for bit, what one part gives, and with the
 * engine's own block what jac_program_jacobian, jac_sparse_jacobian and
 * jac_sparse_hessian give on one thread; bad parts are refused with a
 * message.
 *
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"

#include "program/share.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* x -> tanh(W x) * (1 + x0^2): a dense Jacobian, m x n. */
static jac_program *network(int64_t n, int64_t m, double **x)
{
    jac_ctx *ctx = jac_ctx_new();
    *x = malloc((size_t)n * sizeof(double));
    double *w = malloc((size_t)(m * n) * sizeof(double));
    assert_non_null(*x);
    assert_non_null(w);
    for (int64_t i = 0; i < n; i++)
        (*x)[i] = 0.4 * sin(0.9 * (double)i + 0.3);
    for (int64_t i = 0; i < m * n; i++)
        w[i] = 0.3 * cos(0.41 * (double)i + 0.2);
    int64_t sx[2] = {n, 1}, sw[2] = {m, n};
    jac_tensor *xt = jac_tensor_new(ctx, 2, sx, *x);
    jac_tensor *W = jac_tensor_new(ctx, 2, sw, w);
    jac_program *prog = NULL;
    tu_assert_ok(ctx, jac_program_begin(ctx, 1, &xt, 0, NULL));
    jac_tensor *x0 = jac_slice(ctx, xt, 0, 0, 1, 1);
    jac_tensor *y = jac_mul(ctx, jac_tanh(ctx, jac_matmul(ctx, W, xt)),
                            jac_add_scalar(ctx, jac_square(ctx, x0), 1.0));
    tu_assert_ok(ctx, jac_program_end(ctx, 1, &y, 0, &prog));
    jac_ctx_free(ctx);
    free(w);
    (void)jac_program_set_threads(prog, 1);
    return prog;
}

/* The dense Jacobian by parts [0, cut) and [cut, seeds) against the whole
 * in one part, and, with the engine's block, against the core's. */
static void check_dense_parts(jac_program *prog, const double *x, int forward)
{
    bool fwd;
    int64_t seeds, width, block;
    tu_assert_ok(
        NULL, jac__dense_layout(prog, forward, &fwd, &seeds, &width, &block));
    int64_t m = fwd ? width : seeds, n = fwd ? seeds : width;
    const double *args[1] = {x};
    double *whole = malloc((size_t)(m * n) * sizeof(double));
    double *parts = malloc((size_t)(m * n) * sizeof(double));
    double *core = malloc((size_t)(m * n) * sizeof(double));
    assert_non_null(whole);
    assert_non_null(parts);
    assert_non_null(core);
    tu_assert_ok(
        NULL, jac_program_jacobian(prog, args, NULL, (double *const[]){core}));
    const int64_t sizes[4] = {1, 3, 7, block};
    for (int k = 0; k < 4; k++) {
        int64_t b = sizes[k];
        tu_assert_ok(NULL,
                     jac__dense_part(prog, args, fwd, b, 0, seeds, whole));
        memset(parts, 0, (size_t)(m * n) * sizeof(double));
        int64_t nb = (seeds + b - 1) / b;
        int64_t cut = (nb / 2) * b;
        tu_assert_ok(NULL, jac__dense_part(prog, args, fwd, b, 0, cut, parts));
        tu_assert_ok(NULL,
                     jac__dense_part(prog, args, fwd, b, cut, seeds, parts));
        assert_memory_equal(whole, parts, (size_t)(m * n) * sizeof(double));
        /* Rows of J^T, forward; rows of J, reverse. */
        double worst = 0.0;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double got = fwd ? whole[j * m + i] : whole[i * n + j];
                double d = fabs(got - core[i * n + j]);
                worst = d > worst ? d : worst;
            }
        assert_true(worst < 1e-14);
        if (k == 3 && (forward < 0 || (forward == 1) == (m > n))) {
            /* The engine's block, the core's direction: the same bits. */
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < n; j++) {
                    double got = fwd ? whole[j * m + i] : whole[i * n + j];
                    assert_memory_equal(&got, &core[i * n + j], sizeof got);
                }
        }
    }
    free(whole);
    free(parts);
    free(core);
}

static void test_dense_parts_match_the_whole_and_the_core(void **state)
{
    (void)state;
    double *x;
    jac_program *wide = network(30, 20, &x);
    check_dense_parts(wide, x, -1);
    check_dense_parts(wide, x, 1);
    jac_program_free(wide);
    free(x);
    jac_program *tall = network(9, 40, &x);
    check_dense_parts(tall, x, -1);
    check_dense_parts(tall, x, 0);
    jac_program_free(tall);
    free(x);
}

/* A chain whose Jacobian and Hessian are sparse: y_i = x_i^2 x_{i+1} +
 * sin(x_i), and f = sum y. */
static jac_program *chain(int64_t n, bool scalar, double **x)
{
    jac_ctx *ctx = jac_ctx_new();
    *x = malloc((size_t)n * sizeof(double));
    assert_non_null(*x);
    for (int64_t i = 0; i < n; i++)
        (*x)[i] = 0.5 * sin(0.3 * (double)i + 0.7);
    jac_tensor *xt = jac_tensor_new(ctx, 1, &n, *x);
    jac_program *prog = NULL;
    tu_assert_ok(ctx, jac_program_begin(ctx, 1, &xt, 0, NULL));
    jac_tensor *a = jac_slice(ctx, xt, 0, 0, n - 1, 1);
    jac_tensor *b = jac_slice(ctx, xt, 0, 1, n, 1);
    jac_tensor *y =
        jac_add(ctx, jac_mul(ctx, jac_square(ctx, a), b), jac_sin(ctx, a));
    if (scalar)
        y = jac_sum(ctx, y);
    tu_assert_ok(ctx, jac_program_end(ctx, 1, &y, 0, &prog));
    jac_ctx_free(ctx);
    (void)jac_program_set_threads(prog, 1);
    return prog;
}

/* A plan's values from colours swept in two parts against the core's. */
static void check_sparse_parts(jac_sparse *plan, const double *x, bool hessian)
{
    int64_t ncolors, stride, block;
    tu_assert_ok(NULL, jac__sparse_layout(plan, &ncolors, &stride, &block));
    assert_int_equal(ncolors, jac_sparse_colors(plan));
    int64_t nnz = jac_sparse_nnz(plan);
    const double *args[1] = {x};
    double *core = malloc((size_t)nnz * sizeof(double));
    double *values = malloc((size_t)nnz * sizeof(double));
    double *B = malloc((size_t)(ncolors * stride) * sizeof(double));
    assert_non_null(core);
    assert_non_null(values);
    assert_non_null(B);
    tu_assert_ok(NULL, hessian ? jac_sparse_hessian(plan, args, NULL, core)
                               : jac_sparse_jacobian(plan, args, core, NULL));
    const int64_t sizes[3] = {1, 2, block};
    for (int k = 0; k < 3; k++) {
        int64_t b = sizes[k];
        int64_t cut = ((ncolors + b - 1) / b / 2) * b;
        tu_assert_ok(NULL, jac__sparse_part(plan, args, NULL, b, 0, cut, B));
        tu_assert_ok(NULL, jac__sparse_part(plan, args, NULL, b, cut, ncolors,
                                            B + cut * stride));
        tu_assert_ok(NULL, jac__sparse_recover(plan, B, values));
        if (k == 2)
            assert_memory_equal(values, core, (size_t)nnz * sizeof(double));
        else
            tu_assert_close(values, core, (size_t)nnz, 1e-14, 1e-14);
    }
    free(core);
    free(values);
    free(B);
}

static void test_sparse_parts_match_the_core(void **state)
{
    (void)state;
    double *x;
    jac_program *f = chain(40, false, &x);
    for (int m = JAC_SPARSE_FORWARD; m <= JAC_SPARSE_REVERSE; m++) {
        jac_sparse_opts opts = {.method = (jac_sparse_method)m};
        jac_sparse *plan = NULL;
        tu_assert_ok(NULL, jac_sparse_jacobian_plan(f, &opts, &plan));
        assert_non_null(jac__sparse_sources(plan));
        check_sparse_parts(plan, x, false);
        jac_sparse_free(plan);
    }
    jac_program_free(f);
    free(x);
    jac_program *e = chain(40, true, &x);
    for (int m = JAC_SPARSE_STAR; m <= JAC_SPARSE_ACYCLIC; m++) {
        jac_sparse_opts opts = {.method = (jac_sparse_method)m};
        jac_sparse *plan = NULL;
        tu_assert_ok(NULL, jac_sparse_hessian_plan(e, &opts, &plan));
        /* Substitution has no single place per value. */
        assert_true((jac__sparse_sources(plan) == NULL) ==
                    (m == JAC_SPARSE_ACYCLIC));
        check_sparse_parts(plan, x, true);
        jac_sparse_free(plan);
    }
    jac_program_free(e);
    free(x);
}

static void test_bad_parts_are_refused(void **state)
{
    (void)state;
    double *x;
    jac_program *f = chain(12, false, &x);
    const double *args[1] = {x};
    double J[11 * 12], B[12 * 12];
    assert_int_equal(jac__dense_part(f, args, false, 4, 2, 8, J),
                     JAC_ERR_VALUE);
    assert_non_null(strstr(jac_program_errmsg(), "multiple of the block"));
    assert_int_equal(jac__dense_part(f, args, false, 4, 0, 12, J),
                     JAC_ERR_VALUE);
    assert_non_null(strstr(jac_program_errmsg(), "seeds up to 12 of 11"));
    assert_int_equal(jac__dense_part(f, NULL, false, 4, 0, 4, J),
                     JAC_ERR_NULL_ARG);
    assert_int_equal(jac__dense_part(f, args, false, 0, 0, 4, J),
                     JAC_ERR_VALUE);
    bool fwd;
    int64_t seeds, width, block;
    assert_int_equal(jac__dense_layout(NULL, -1, &fwd, &seeds, &width, &block),
                     JAC_ERR_NULL_ARG);
    jac_sparse *plan = NULL;
    tu_assert_ok(NULL, jac_sparse_jacobian_plan(f, NULL, &plan));
    int64_t nc = jac_sparse_colors(plan);
    assert_int_equal(jac__sparse_part(plan, args, NULL, 1, 0, nc + 1, B),
                     JAC_ERR_VALUE);
    assert_non_null(strstr(jac_program_errmsg(), "sparse_part: colours"));
    const double *w[1] = {x};
    assert_int_equal(jac__sparse_part(plan, args, w, 1, 0, nc, B),
                     JAC_ERR_VALUE);
    assert_non_null(strstr(jac_program_errmsg(), "weights"));
    assert_int_equal(jac__sparse_recover(plan, NULL, B), JAC_ERR_NULL_ARG);
    assert_int_equal(jac__sparse_layout(NULL, &seeds, &width, &block),
                     JAC_ERR_NULL_ARG);
    assert_null(jac__sparse_sources(NULL));
    jac_sparse_free(plan);
    jac_program_free(f);
    free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dense_parts_match_the_whole_and_the_core),
        cmocka_unit_test(test_sparse_parts_match_the_core),
        cmocka_unit_test(test_bad_parts_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
