/*
 * The NLopt adapter (jacobian_nlopt.h): the objective's value and gradient
 * and the vector constraint's values and Jacobian against hand-written
 * ones, the value-only calls, shapes that do not match the program (a
 * status and NaN, never a number), the stop of the optimiser on a failed
 * evaluation, and NLopt's tutorial problem solved to its known optimum.
 *
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"

#include <jacobian_nlopt.h>
#include <nlopt.h>

enum { N = 6 };

/* ------------------------------------------------------------------------ */
/* Recorded functions and their hand-written counterparts                   */
/* ------------------------------------------------------------------------ */

/* f(x; p) = sum_{i < N-1} p (x[i+1] - x[i]^2)^2 + (1 - x[i])^2, with p a
 * one-element parameter. */
static jac_program *record_rosenbrock(jac_ctx *ctx)
{
    jac_tensor *x = jac_zeros(ctx, 1, TU_SHAPE(N));
    jac_tensor *p = jac_zeros(ctx, 1, TU_SHAPE(1));
    tu_assert_ok(ctx, jac_program_begin(ctx, 1, &x, 1, &p));
    jac_tensor *head = jac_slice(ctx, x, 0, 0, N - 1, 1);
    jac_tensor *tail = jac_slice(ctx, x, 0, 1, N, 1);
    jac_tensor *t = jac_sub(ctx, tail, jac_square(ctx, head));
    jac_tensor *u = jac_rsub_scalar(ctx, 1.0, head);
    jac_tensor *f =
        jac_sum(ctx, jac_add(ctx, jac_mul(ctx, jac_square(ctx, t), p),
                             jac_square(ctx, u)));
    jac_program *program = NULL;
    tu_assert_ok(ctx, jac_program_end(ctx, 1, &f, 0, &program));
    return program;
}

static double rosenbrock_hand(const double *x, double p, double *grad)
{
    double f = 0.0;
    for (int i = 0; i < N; i++)
        grad[i] = 0.0;
    for (int i = 0; i + 1 < N; i++) {
        double t = x[i + 1] - x[i] * x[i], u = 1.0 - x[i];
        f += p * t * t + u * u;
        grad[i] += -4.0 * p * x[i] * t - 2.0 * u;
        grad[i + 1] += 2.0 * p * t;
    }
    return f;
}

/* c_k(x; a, b) = (a_k x0 + b_k)^3 - x1, k = 0, 1 (NLopt's tutorial). */
static jac_program *record_tutorial_constraint(jac_ctx *ctx)
{
    jac_tensor *x = jac_zeros(ctx, 1, TU_SHAPE(2));
    jac_tensor *ab[2] = {jac_zeros(ctx, 1, TU_SHAPE(2)),
                         jac_zeros(ctx, 1, TU_SHAPE(2))};
    tu_assert_ok(ctx, jac_program_begin(ctx, 1, &x, 2, ab));
    jac_tensor *x0 = jac_slice(ctx, x, 0, 0, 1, 1);
    jac_tensor *x1 = jac_slice(ctx, x, 0, 1, 2, 1);
    jac_tensor *c = jac_sub(
        ctx,
        jac_pow_scalar(ctx, jac_add(ctx, jac_mul(ctx, ab[0], x0), ab[1]), 3.0),
        x1);
    jac_program *program = NULL;
    tu_assert_ok(ctx, jac_program_end(ctx, 1, &c, 0, &program));
    return program;
}

/* f(x) = sqrt(x1) (NLopt's tutorial). */
static jac_program *record_tutorial_objective(jac_ctx *ctx)
{
    jac_tensor *x = jac_zeros(ctx, 1, TU_SHAPE(2));
    tu_assert_ok(ctx, jac_program_begin(ctx, 1, &x, 0, NULL));
    jac_tensor *f = jac_sum(ctx, jac_sqrt(ctx, jac_slice(ctx, x, 0, 1, 2, 1)));
    jac_program *program = NULL;
    tu_assert_ok(ctx, jac_program_end(ctx, 1, &f, 0, &program));
    return program;
}

static const double tutorial_a[2] = {2.0, -1.0}, tutorial_b[2] = {0.0, 1.0};

/* ------------------------------------------------------------------------ */
/* Tests                                                                    */
/* ------------------------------------------------------------------------ */

static void test_objective_matches_hand(void **state)
{
    jac_program *program = record_rosenbrock(*state);
    double p = 100.0;
    const double *params[1] = {&p};
    jac_nlopt s = {.program = program, .params = params};
    static const double points[3][N] = {
        {-1.2, 1.0, -1.2, 1.0, -1.2, 1.0},
        {0.0, 0.0, 0.0, 0.0, 0.0, 0.0},
        {0.3, -0.7, 1.1, 2.5, -0.2, 0.9},
    };
    for (int k = 0; k < 3; k++) {
        for (int q = 0; q < 2; q++) {
            p = q == 0 ? 100.0 : 3.5; /* the parameter is read per call */
            double grad[N], want_grad[N];
            double want = rosenbrock_hand(points[k], p, want_grad);
            double f = jac_nlopt_objective(N, points[k], grad, &s);
            tu_assert_close(&f, &want, 1, 0.0, 1e-14);
            tu_assert_close(grad, want_grad, N, 1e-12, 1e-13);
        }
    }
    assert_int_equal(s.status, JAC_OK);
    assert_string_equal(s.message, "");
    assert_int_equal(s.evaluations, 6);
    assert_int_equal(s.gradients, 6);
    jac_program_free(program);
}

static void test_objective_without_gradient(void **state)
{
    jac_program *program = record_rosenbrock(*state);
    double p = 100.0;
    const double *params[1] = {&p};
    jac_nlopt s = {.program = program, .params = params};
    const double x[N] = {0.3, -0.7, 1.1, 2.5, -0.2, 0.9};
    double want_grad[N];
    double want = rosenbrock_hand(x, p, want_grad);
    double f = jac_nlopt_objective(N, x, NULL, &s);
    tu_assert_close(&f, &want, 1, 0.0, 1e-14);
    /* The scalar constraint is the same callback. */
    f = jac_nlopt_constraint(N, x, NULL, &s);
    tu_assert_close(&f, &want, 1, 0.0, 1e-14);
    assert_int_equal(s.status, JAC_OK);
    assert_int_equal(s.evaluations, 2);
    assert_int_equal(s.gradients, 0);
    jac_program_free(program);
}

static void test_mconstraint_matches_hand(void **state)
{
    jac_program *program = record_tutorial_constraint(*state);
    const double *params[2] = {tutorial_a, tutorial_b};
    jac_nlopt s = {.program = program, .params = params};
    static const double points[3][2] = {
        {1.234, 5.678}, {1.0 / 3.0, 0.25}, {-0.5, 2.0}};
    for (int k = 0; k < 3; k++) {
        const double *x = points[k];
        double want[2], want_J[4];
        for (int i = 0; i < 2; i++) {
            double v = tutorial_a[i] * x[0] + tutorial_b[i];
            want[i] = v * v * v - x[1];
            want_J[2 * i] = 3.0 * tutorial_a[i] * v * v;
            want_J[2 * i + 1] = -1.0;
        }
        double c[2], J[4];
        jac_nlopt_mconstraint(2, c, 2, x, J, &s);
        tu_assert_close(c, want, 2, 1e-15, 1e-14);
        tu_assert_close(J, want_J, 4, 1e-15, 1e-14);
        double c_only[2];
        jac_nlopt_mconstraint(2, c_only, 2, x, NULL, &s);
        tu_assert_close(c_only, want, 2, 1e-15, 1e-14);
    }
    assert_int_equal(s.status, JAC_OK);
    assert_int_equal(s.evaluations, 6);
    assert_int_equal(s.gradients, 3);
    jac_program_free(program);
}

/* Every mismatch gives a status, a message and NaN values, and keeps the
 * first status. */
static void test_mismatches_are_errors(void **state)
{
    jac_ctx *ctx = *state;
    jac_program *rosen = record_rosenbrock(ctx);
    jac_program *cons = record_tutorial_constraint(ctx);
    double p = 100.0;
    const double *params[1] = {&p};
    const double x[N + 1] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7};
    double grad[N + 1];

    /* n one too many and one too few. */
    for (unsigned n = N - 1; n <= N + 1; n += 2) {
        jac_nlopt s = {.program = rosen, .params = params};
        double f = jac_nlopt_objective(n, x, grad, &s);
        assert_true(isnan(f));
        for (unsigned i = 0; i < n; i++)
            assert_true(isnan(grad[i]));
        assert_int_equal(s.status, JAC_ERR_SHAPE);
        assert_non_null(strstr(s.message, "n = "));
    }
    /* A vector output as an objective. */
    {
        const double *ab[2] = {tutorial_a, tutorial_b};
        jac_nlopt s = {.program = cons, .params = ab};
        assert_true(isnan(jac_nlopt_objective(2, x, NULL, &s)));
        assert_int_equal(s.status, JAC_ERR_SHAPE);
        /* m one too few and one too many; the first status is kept. */
        double c[3], J[6];
        s.status = JAC_OK;
        s.message[0] = '\0';
        jac_nlopt_mconstraint(1, c, 2, x, J, &s);
        assert_true(isnan(c[0]));
        for (int i = 0; i < 2; i++)
            assert_true(isnan(J[i]));
        assert_int_equal(s.status, JAC_ERR_SHAPE);
        jac_nlopt_mconstraint(3, c, 2, x, NULL, &s);
        for (int i = 0; i < 3; i++)
            assert_true(isnan(c[i]));
        /* n wrong for the constraint. */
        jac_nlopt t = {.program = cons, .params = ab};
        jac_nlopt_mconstraint(2, c, 3, x, J, &t);
        assert_int_equal(t.status, JAC_ERR_SHAPE);
        for (int i = 0; i < 6; i++)
            assert_true(isnan(J[i]));
    }
    /* Missing parameters, no program. */
    {
        jac_nlopt s = {.program = rosen};
        assert_true(isnan(jac_nlopt_objective(N, x, grad, &s)));
        assert_int_equal(s.status, JAC_ERR_NULL_ARG);
        jac_nlopt none = {0};
        assert_true(isnan(jac_nlopt_objective(N, x, grad, &none)));
        assert_int_equal(none.status, JAC_ERR_NULL_ARG);
        assert_true(isnan(jac_nlopt_objective(N, x, grad, NULL)));
    }
    jac_program_free(rosen);
    jac_program_free(cons);
}

/* A failed evaluation stops the optimiser that the state names. */
static void test_failure_stops_optimiser(void **state)
{
    jac_program *program = record_tutorial_objective(*state);
    nlopt_opt opt = nlopt_create(NLOPT_LD_LBFGS, 3); /* the program has 2 */
    assert_non_null(opt);
    jac_nlopt s = {.program = program, .opt = opt};
    nlopt_set_min_objective(opt, jac_nlopt_objective, &s);
    nlopt_set_maxeval(opt, 100);
    double x[3] = {1.0, 1.0, 1.0}, fmin = 0.0;
    assert_int_equal(nlopt_optimize(opt, x, &fmin), NLOPT_FORCED_STOP);
    assert_int_equal(s.status, JAC_ERR_SHAPE);
    assert_int_equal(s.evaluations, 1);
    nlopt_destroy(opt);
    jac_program_free(program);
}

static void test_tutorial_optimum(void **state)
{
    jac_ctx *ctx = *state;
    jac_program *objective = record_tutorial_objective(ctx);
    jac_program *constraint = record_tutorial_constraint(ctx);
    const double *ab[2] = {tutorial_a, tutorial_b};
    const nlopt_algorithm algorithms[2] = {NLOPT_LD_MMA, NLOPT_LD_SLSQP};
    for (int k = 0; k < 2; k++) {
        nlopt_opt opt = nlopt_create(algorithms[k], 2);
        assert_non_null(opt);
        jac_nlopt fs = {.program = objective, .opt = opt};
        jac_nlopt cs = {.program = constraint, .params = ab, .opt = opt};
        const double lower[2] = {-HUGE_VAL, 0.0}, tol[2] = {1e-10, 1e-10};
        nlopt_set_lower_bounds(opt, lower);
        nlopt_set_min_objective(opt, jac_nlopt_objective, &fs);
        nlopt_add_inequality_mconstraint(opt, 2, jac_nlopt_mconstraint, &cs,
                                         tol);
        nlopt_set_xtol_rel(opt, 1e-10);
        nlopt_set_maxeval(opt, 1000);
        double x[2] = {1.234, 5.678}, fmin = NAN;
        nlopt_result result = nlopt_optimize(opt, x, &fmin);
        nlopt_destroy(opt);
        if (result < 0)
            print_error("%s: nlopt_optimize returned %d (%s %s)\n",
                        nlopt_algorithm_name(algorithms[k]), (int)result,
                        fs.message, cs.message);
        assert_true(result > 0);
        assert_int_equal(fs.status, JAC_OK);
        assert_int_equal(cs.status, JAC_OK);
        double want_f = sqrt(8.0 / 27.0);
        tu_assert_close(x, TU_VALUES(1.0 / 3.0, 8.0 / 27.0), 2, 1e-6, 0.0);
        tu_assert_close(&fmin, &want_f, 1, 1e-6, 0.0);
    }
    jac_program_free(objective);
    jac_program_free(constraint);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_objective_matches_hand),
        TU_TEST(test_objective_without_gradient),
        TU_TEST(test_mconstraint_matches_hand),
        TU_TEST(test_mismatches_are_errors),
        TU_TEST(test_failure_stops_optimiser),
        TU_TEST(test_tutorial_optimum),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
