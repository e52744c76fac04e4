/*
 * The IPOPT adapter (jacobian_ipopt.h): the five callbacks against
 * hand-written derivatives and finite differences at several points, in
 * both index styles and with each Jacobian colouring; the structure
 * passes (a lower triangle, constraint rows from 0 or 1); one evaluation
 * and one sparse Jacobian per point (new_x); sizes and programs that do
 * not match (FALSE, a status and NaN, never a number); failed allocations
 * of the adapter's workspace and of the plans; and two problems solved by
 * IPOPT through jac_ipopt_create: HS071 and an unconstrained one.
 *
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"

#include <jacobian_ipopt.h>

enum { N = 4, M = 2, NELE_JAC = 5, NELE_HESS = 6 };

/* ------------------------------------------------------------------------ */
/* A small problem, recorded and by hand                                    */
/* ------------------------------------------------------------------------ */

/* f = p x0^2 x1 + exp(x2) (no x3: a sparse gradient),
 * g = (sin(x0) x3, x1 x2 + x3^3); p one element. */
static jac_program *record_problem(jac_ctx *ctx)
{
    jac_tensor *x = jac_zeros(ctx, 1, TU_SHAPE(N));
    jac_tensor *p = jac_zeros(ctx, 1, TU_SHAPE(1));
    tu_assert_ok(ctx, jac_program_begin(ctx, 1, &x, 1, &p));
    jac_tensor *xi[N];
    for (int i = 0; i < N; i++)
        xi[i] = jac_slice(ctx, x, 0, i, i + 1, 1);
    jac_tensor *f = jac_add(
        ctx, jac_mul(ctx, p, jac_mul(ctx, jac_square(ctx, xi[0]), xi[1])),
        jac_exp(ctx, xi[2]));
    jac_tensor *parts[M] = {
        jac_mul(ctx, jac_sin(ctx, xi[0]), xi[3]),
        jac_add(ctx, jac_mul(ctx, xi[1], xi[2]),
                jac_pow_scalar(ctx, xi[3], 3.0)),
    };
    jac_tensor *outputs[2] = {f, jac_concat(ctx, M, parts, 0)};
    jac_program *program = NULL;
    tu_assert_ok(ctx, jac_program_end(ctx, 2, outputs, 0, &program));
    return program;
}

/* f, its gradient, g, its Jacobian (dense, M x N) and the Hessian of the
 * Lagrangian (dense, N x N) by hand. */
static void problem_hand(const double *x, double p, double sigma,
                         const double *lambda, double *f, double *grad,
                         double *g, double *J, double *H)
{
    double e = exp(x[2]), s = sin(x[0]), c = cos(x[0]);
    *f = p * x[0] * x[0] * x[1] + e;
    const double gradient[N] = {2.0 * p * x[0] * x[1], p * x[0] * x[0], e, 0.0};
    g[0] = s * x[3];
    g[1] = x[1] * x[2] + x[3] * x[3] * x[3];
    const double jac[M][N] = {{c * x[3], 0.0, 0.0, s},
                              {0.0, x[2], x[1], 3.0 * x[3] * x[3]}};
    for (int j = 0; j < N; j++) {
        grad[j] = gradient[j];
        for (int i = 0; i < M; i++)
            J[i * N + j] = jac[i][j];
    }
    for (int k = 0; k < N * N; k++)
        H[k] = 0.0;
    H[0 * N + 0] = sigma * 2.0 * p * x[1] - lambda[0] * s * x[3];
    H[1 * N + 0] = H[0 * N + 1] = sigma * 2.0 * p * x[0];
    H[2 * N + 2] = sigma * e;
    H[3 * N + 0] = H[0 * N + 3] = lambda[0] * c;
    H[2 * N + 1] = H[1 * N + 2] = lambda[1];
    H[3 * N + 3] = lambda[1] * 6.0 * x[3];
}

static const double points[3][N] = {
    {0.5, -1.0, 2.0, 0.3}, {0.0, 0.0, 0.0, 0.0}, {-1.3, 0.7, 0.4, -2.0}};
static const double multipliers[3][M + 1] = {
    {1.0, 0.5, -2.0}, {0.0, 1.5, 0.25}, {2.5, -0.75, 3.0}};

/* A dense matrix from coordinates (base: 0 or 1), rows x N. */
static void assemble(const Index *rows, const Index *cols, const double *values,
                     int count, int base, int nrows, double *dense)
{
    for (int k = 0; k < nrows * N; k++)
        dense[k] = 0.0;
    for (int k = 0; k < count; k++) {
        int i = rows[k] - base, j = cols[k] - base;
        assert_true(i >= 0 && i < nrows && j >= 0 && j < N);
        dense[i * N + j] += values[k];
    }
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                    */
/* ------------------------------------------------------------------------ */

static void test_callbacks_match_hand(void **state)
{
    jac_program *program = record_problem(*state);
    double p = 2.5;
    const double *params[1] = {&p};
    /* Jacobian and Hessian methods, in pairs. */
    const jac_sparse_method methods[3][2] = {
        {JAC_SPARSE_AUTO, JAC_SPARSE_AUTO},
        {JAC_SPARSE_FORWARD, JAC_SPARSE_STAR},
        {JAC_SPARSE_REVERSE, JAC_SPARSE_ACYCLIC}};
    for (int style = 0; style < 2; style++) {
        for (int mk = 0; mk < 3; mk++) {
            jac_ipopt s = {.program = program,
                           .params = params,
                           .index_style = style,
                           .jacobian_method = methods[mk][0],
                           .hessian_method = methods[mk][1]};
            Index n = -1, m = -1, nele_jac = -1, nele_hess = -1;
            assert_int_equal(
                jac_ipopt_prepare(&s, &n, &m, &nele_jac, &nele_hess), JAC_OK);
            assert_int_equal(n, N);
            assert_int_equal(m, M);
            assert_int_equal(nele_jac, NELE_JAC);
            assert_int_equal(nele_hess, NELE_HESS);
            Index jrows[NELE_JAC], jcols[NELE_JAC];
            Index hrows[NELE_HESS], hcols[NELE_HESS];
            assert_true(jac_ipopt_eval_jac_g(N, NULL, TRUE, M, NELE_JAC, jrows,
                                             jcols, NULL, &s));
            assert_true(jac_ipopt_eval_h(N, NULL, TRUE, 1.0, M, NULL, TRUE,
                                         NELE_HESS, hrows, hcols, NULL, &s));
            /* The lower triangle, in the index style. */
            for (int k = 0; k < NELE_HESS; k++) {
                assert_true(hrows[k] >= hcols[k]);
                assert_true(hcols[k] >= style);
            }
            for (int k = 0; k < NELE_JAC; k++)
                assert_true(jrows[k] >= style && jrows[k] < M + style);
            for (int k = 0; k < 3; k++) {
                p = k == 1 ? -0.75 : 2.5; /* read at every new point */
                double x[N], f = 0.0, grad[N], g[M], J[M * N], H[N * N];
                double want_f, want_grad[N], want_g[M], want_J[M * N],
                    want_H[N * N], jv[NELE_JAC], hv[NELE_HESS], dense[N * N];
                for (int j = 0; j < N; j++)
                    x[j] = points[k][j];
                double sigma = multipliers[k][0];
                double lambda[M] = {multipliers[k][1], multipliers[k][2]};
                problem_hand(x, p, sigma, lambda, &want_f, want_grad, want_g,
                             want_J, want_H);
                assert_true(jac_ipopt_eval_f(N, x, TRUE, &f, &s));
                assert_true(jac_ipopt_eval_g(N, x, FALSE, M, g, &s));
                assert_true(jac_ipopt_eval_grad_f(N, x, FALSE, grad, &s));
                assert_true(jac_ipopt_eval_jac_g(N, x, FALSE, M, NELE_JAC, NULL,
                                                 NULL, jv, &s));
                assert_true(jac_ipopt_eval_h(N, x, FALSE, sigma, M, lambda,
                                             TRUE, NELE_HESS, NULL, NULL, hv,
                                             &s));
                tu_assert_close(&f, &want_f, 1, 1e-15, 1e-14);
                tu_assert_close(grad, want_grad, N, 1e-14, 1e-13);
                tu_assert_close(g, want_g, M, 1e-15, 1e-14);
                assemble(jrows, jcols, jv, NELE_JAC, style, M, J);
                tu_assert_close(J, want_J, M * N, 1e-14, 1e-13);
                /* The lower triangle of the Hessian. */
                assemble(hrows, hcols, hv, NELE_HESS, style, N, dense);
                for (int i = 0; i < N; i++)
                    for (int j = 0; j < N; j++)
                        H[i * N + j] = i >= j ? dense[i * N + j] : 0.0;
                for (int i = 0; i < N; i++)
                    for (int j = i + 1; j < N; j++)
                        want_H[i * N + j] = 0.0;
                tu_assert_close(H, want_H, N * N, 1e-14, 1e-13);
            }
            assert_int_equal(s.status, JAC_OK);
            assert_string_equal(s.message, "");
            assert_int_equal(s.evaluations, 3);
            assert_int_equal(s.jacobians, 3);
            assert_int_equal(s.hessians, 3);
            jac_ipopt_release(&s);
            assert_null(s.work);
            jac_ipopt_release(&s); /* twice is fine */
        }
    }
    jac_program_free(program);
}

/* The gradient and the constraint Jacobian against central differences of
 * eval_f and eval_g, and the Hessian of the Lagrangian against central
 * differences of its gradient. */
static void test_derivatives_match_finite_differences(void **state)
{
    jac_program *program = record_problem(*state);
    double p = 1.7;
    const double *params[1] = {&p};
    jac_ipopt s = {.program = program, .params = params};
    Index hrows[NELE_HESS], hcols[NELE_HESS], jrows[NELE_JAC], jcols[NELE_JAC];
    assert_true(jac_ipopt_eval_h(N, NULL, TRUE, 1.0, M, NULL, TRUE, NELE_HESS,
                                 hrows, hcols, NULL, &s));
    assert_true(jac_ipopt_eval_jac_g(N, NULL, TRUE, M, NELE_JAC, jrows, jcols,
                                     NULL, &s));
    const double h = 1e-6, sigma = 0.8, lambda[M] = {-1.25, 0.6};
    double x[N] = {0.4, -0.9, 0.3, 1.1};
    double grad[N], jv[NELE_JAC], hv[NELE_HESS], J[M * N], H[N * N];
    assert_true(jac_ipopt_eval_grad_f(N, x, TRUE, grad, &s));
    assert_true(
        jac_ipopt_eval_jac_g(N, x, FALSE, M, NELE_JAC, NULL, NULL, jv, &s));
    assert_true(jac_ipopt_eval_h(N, x, FALSE, sigma, M, (double *)lambda, TRUE,
                                 NELE_HESS, NULL, NULL, hv, &s));
    assemble(jrows, jcols, jv, NELE_JAC, 0, M, J);
    assemble(hrows, hcols, hv, NELE_HESS, 0, N, H);
    for (int j = 0; j < N; j++) {
        double xp[N], xm[N], fp, fm, gp[M], gm[M];
        double lp[N], lm[N], Jp[M * N], Jm[M * N], jvp[NELE_JAC], jvm[NELE_JAC];
        for (int i = 0; i < N; i++)
            xp[i] = xm[i] = x[i];
        xp[j] += h;
        xm[j] -= h;
        assert_true(jac_ipopt_eval_f(N, xp, TRUE, &fp, &s));
        assert_true(jac_ipopt_eval_g(N, xp, FALSE, M, gp, &s));
        assert_true(jac_ipopt_eval_grad_f(N, xp, FALSE, lp, &s));
        assert_true(jac_ipopt_eval_jac_g(N, xp, FALSE, M, NELE_JAC, NULL, NULL,
                                         jvp, &s));
        assert_true(jac_ipopt_eval_f(N, xm, TRUE, &fm, &s));
        assert_true(jac_ipopt_eval_g(N, xm, FALSE, M, gm, &s));
        assert_true(jac_ipopt_eval_grad_f(N, xm, FALSE, lm, &s));
        assert_true(jac_ipopt_eval_jac_g(N, xm, FALSE, M, NELE_JAC, NULL, NULL,
                                         jvm, &s));
        double want = (fp - fm) / (2.0 * h);
        tu_assert_close(&grad[j], &want, 1, 1e-7, 1e-7);
        for (int i = 0; i < M; i++) {
            want = (gp[i] - gm[i]) / (2.0 * h);
            tu_assert_close(&J[i * N + j], &want, 1, 1e-7, 1e-7);
        }
        /* Column j of the Hessian: d/dx_j of sigma grad f + J^T lambda. */
        assemble(jrows, jcols, jvp, NELE_JAC, 0, M, Jp);
        assemble(jrows, jcols, jvm, NELE_JAC, 0, M, Jm);
        for (int i = j; i < N; i++) {
            double dp = sigma * lp[i], dm = sigma * lm[i];
            for (int r = 0; r < M; r++) {
                dp += lambda[r] * Jp[r * N + i];
                dm += lambda[r] * Jm[r * N + i];
            }
            want = (dp - dm) / (2.0 * h);
            tu_assert_close(&H[i * N + j], &want, 1, 1e-6, 1e-6);
        }
    }
    assert_int_equal(s.status, JAC_OK);
    jac_ipopt_release(&s);
    jac_program_free(program);
}

/* One evaluation and one sparse Jacobian per point, whatever the calls at
 * it; a point that differs from the last is new even when new_x says no. */
static void test_new_x_evaluates_once(void **state)
{
    jac_program *program = record_problem(*state);
    double p = 1.0;
    const double *params[1] = {&p};
    jac_ipopt s = {.program = program, .params = params};
    double x[N] = {0.1, 0.2, 0.3, 0.4}, f, g[M], grad[N], jv[NELE_JAC];
    double hv[NELE_HESS], lambda[M] = {1.0, 1.0};
    assert_true(jac_ipopt_eval_f(N, x, TRUE, &f, &s));
    assert_true(jac_ipopt_eval_g(N, x, FALSE, M, g, &s));
    assert_true(jac_ipopt_eval_f(N, x, FALSE, &f, &s));
    assert_int_equal(s.evaluations, 1);
    assert_int_equal(s.jacobians, 0);
    assert_true(jac_ipopt_eval_grad_f(N, x, FALSE, grad, &s));
    assert_true(
        jac_ipopt_eval_jac_g(N, x, FALSE, M, NELE_JAC, NULL, NULL, jv, &s));
    assert_true(jac_ipopt_eval_grad_f(N, x, FALSE, grad, &s));
    assert_int_equal(s.evaluations, 1);
    assert_int_equal(s.jacobians, 1);
    /* A new point where IPOPT asks for derivatives first: the values come
     * with them. */
    x[0] = 0.15;
    assert_true(
        jac_ipopt_eval_jac_g(N, x, TRUE, M, NELE_JAC, NULL, NULL, jv, &s));
    assert_true(jac_ipopt_eval_g(N, x, FALSE, M, g, &s));
    assert_true(jac_ipopt_eval_f(N, x, FALSE, &f, &s));
    assert_int_equal(s.evaluations, 1);
    assert_int_equal(s.jacobians, 2);
    double want_f, want_grad[N], want_g[M], want_J[M * N], want_H[N * N];
    problem_hand(x, p, 1.0, lambda, &want_f, want_grad, want_g, want_J, want_H);
    tu_assert_close(&f, &want_f, 1, 1e-15, 1e-14);
    tu_assert_close(g, want_g, M, 1e-15, 1e-14);
    /* new_x FALSE at another point: evaluated anyway. */
    x[1] = -0.5;
    assert_true(jac_ipopt_eval_f(N, x, FALSE, &f, &s));
    assert_int_equal(s.evaluations, 2);
    problem_hand(x, p, 1.0, lambda, &want_f, want_grad, want_g, want_J, want_H);
    tu_assert_close(&f, &want_f, 1, 1e-15, 1e-14);
    /* new_x TRUE at the same point: evaluated again, as IPOPT asks. */
    assert_true(jac_ipopt_eval_f(N, x, TRUE, &f, &s));
    assert_int_equal(s.evaluations, 3);
    /* The Hessian is computed at every call (its weights change). */
    assert_true(jac_ipopt_eval_h(N, x, FALSE, 1.0, M, lambda, TRUE, NELE_HESS,
                                 NULL, NULL, hv, &s));
    assert_true(jac_ipopt_eval_h(N, x, FALSE, 1.0, M, lambda, FALSE, NELE_HESS,
                                 NULL, NULL, hv, &s));
    assert_int_equal(s.hessians, 2);
    assert_int_equal(s.evaluations, 3);
    assert_int_equal(s.jacobians, 2);
    assert_int_equal(s.status, JAC_OK);
    jac_ipopt_release(&s);
    jac_program_free(program);
}

/* The workspace is kept while the program and the options stay, and made
 * again when either changes. */
static void test_workspace_follows_options(void **state)
{
    jac_program *program = record_problem(*state);
    double p = 1.0;
    const double *params[1] = {&p};
    jac_ipopt s = {.program = program, .params = params};
    assert_int_equal(jac_ipopt_prepare(&s, NULL, NULL, NULL, NULL), JAC_OK);
    const jac_ipopt_work *work = s.work;
    assert_non_null(work);
    assert_int_equal(jac_ipopt_prepare(&s, NULL, NULL, NULL, NULL), JAC_OK);
    assert_ptr_equal(s.work, work);
    Index rows[NELE_JAC], cols[NELE_JAC], rows1[NELE_JAC], cols1[NELE_JAC];
    assert_true(
        jac_ipopt_eval_jac_g(N, NULL, TRUE, M, NELE_JAC, rows, cols, NULL, &s));
    s.index_style = 1; /* the structures now count from 1 */
    assert_true(jac_ipopt_eval_jac_g(N, NULL, TRUE, M, NELE_JAC, rows1, cols1,
                                     NULL, &s));
    for (int k = 0; k < NELE_JAC; k++) {
        assert_int_equal(rows1[k], rows[k] + 1);
        assert_int_equal(cols1[k], cols[k] + 1);
    }
    s.hessian_method = JAC_SPARSE_ACYCLIC;
    double x[N] = {0.5, -1.0, 2.0, 0.3}, lambda[M] = {0.5, -2.0};
    double hv[NELE_HESS], H[N * N];
    Index hrows[NELE_HESS], hcols[NELE_HESS];
    assert_true(jac_ipopt_eval_h(N, NULL, TRUE, 1.0, M, NULL, TRUE, NELE_HESS,
                                 hrows, hcols, NULL, &s));
    assert_true(jac_ipopt_eval_h(N, x, TRUE, 2.0, M, lambda, TRUE, NELE_HESS,
                                 NULL, NULL, hv, &s));
    assemble(hrows, hcols, hv, NELE_HESS, 1, N, H);
    double want_f, want_grad[N], want_g[M], want_J[M * N], want_H[N * N];
    problem_hand(x, p, 2.0, lambda, &want_f, want_grad, want_g, want_J, want_H);
    for (int k = 0; k < NELE_HESS; k++) {
        int i = hrows[k] - 1, j = hcols[k] - 1;
        tu_assert_close(&H[i * N + j], &want_H[i * N + j], 1, 1e-14, 1e-13);
    }
    /* Another program: the workspace follows it. */
    jac_program *other = record_problem(*state);
    s.program = other;
    Index n = 0;
    assert_int_equal(jac_ipopt_prepare(&s, &n, NULL, NULL, NULL), JAC_OK);
    assert_int_equal(n, N);
    assert_int_equal(s.status, JAC_OK);
    jac_ipopt_release(&s);
    jac_program_free(other);
    jac_program_free(program);
}

static int all_nan(const double *values, int count)
{
    for (int i = 0; i < count; i++)
        if (!isnan(values[i]))
            return 0;
    return 1;
}

/* Every callback with a size that does not match: FALSE, NaN, the first
 * failure kept with the call's name and the sizes. */
static void test_bad_sizes_are_errors(void **state)
{
    jac_program *program = record_problem(*state);
    double p = 1.0;
    const double *params[1] = {&p};
    jac_ipopt s = {.program = program, .params = params};
    double x[N + 1] = {0.1, 0.2, 0.3, 0.4, 0.5}, f = 0.0, g[M + 1], grad[N + 1];
    double jv[NELE_JAC + 1], hv[NELE_HESS + 1], lambda[M] = {1.0, 1.0};
    Index rows[NELE_HESS + 1], cols[NELE_HESS + 1];

    assert_false(jac_ipopt_eval_f(N + 1, x, TRUE, &f, &s));
    assert_true(isnan(f));
    assert_int_equal(s.status, JAC_ERR_SHAPE);
    tu_assert_contains(s.message, "jac_ipopt_eval_f");
    tu_assert_contains(s.message, "n = 5");
    tu_assert_contains(s.message, "4 variables");
    /* The first failure is kept. */
    assert_false(jac_ipopt_eval_grad_f(N - 1, x, TRUE, grad, &s));
    assert_true(all_nan(grad, N - 1));
    tu_assert_contains(s.message, "jac_ipopt_eval_f:");

    struct {
        const char *who, *sizes;
    } cases[] = {
        {"jac_ipopt_eval_grad_f", "n = 3"},
        {"jac_ipopt_eval_g", "m = 3"},
        {"jac_ipopt_eval_jac_g", "nele_jac = 6"},
        {"jac_ipopt_eval_jac_g", "m = 1"},
        {"jac_ipopt_eval_h", "nele_hess = 5"},
        {"jac_ipopt_eval_h", "m = 3"},
    };
    for (size_t k = 0; k < TU_COUNT(cases); k++) {
        s.status = JAC_OK;
        s.message[0] = '\0';
        Bool ok = TRUE;
        switch (k) {
        case 0:
            ok = jac_ipopt_eval_grad_f(N - 1, x, TRUE, grad, &s);
            assert_true(all_nan(grad, N - 1));
            break;
        case 1:
            ok = jac_ipopt_eval_g(N, x, TRUE, M + 1, g, &s);
            assert_true(all_nan(g, M + 1));
            break;
        case 2:
            ok = jac_ipopt_eval_jac_g(N, x, TRUE, M, NELE_JAC + 1, NULL, NULL,
                                      jv, &s);
            assert_true(all_nan(jv, NELE_JAC + 1));
            break;
        case 3:
            ok = jac_ipopt_eval_jac_g(N, NULL, TRUE, M - 1, NELE_JAC, rows,
                                      cols, NULL, &s);
            break;
        case 4:
            ok = jac_ipopt_eval_h(N, x, TRUE, 1.0, M, lambda, TRUE,
                                  NELE_HESS - 1, NULL, NULL, hv, &s);
            assert_true(all_nan(hv, NELE_HESS - 1));
            break;
        default:
            ok = jac_ipopt_eval_h(N, x, TRUE, 1.0, M + 1, lambda, TRUE,
                                  NELE_HESS, rows, cols, NULL, &s);
            break;
        }
        assert_false(ok);
        assert_int_equal(s.status, JAC_ERR_SHAPE);
        tu_assert_contains(s.message, cases[k].who);
        tu_assert_contains(s.message, cases[k].sizes);
    }

    /* NULL arguments. */
    s.status = JAC_OK;
    assert_false(jac_ipopt_eval_h(N, x, TRUE, 1.0, M, NULL, TRUE, NELE_HESS,
                                  NULL, NULL, hv, &s));
    assert_true(all_nan(hv, NELE_HESS));
    assert_int_equal(s.status, JAC_ERR_NULL_ARG);
    tu_assert_contains(s.message, "lambda");
    s.status = JAC_OK;
    assert_false(jac_ipopt_eval_f(N, NULL, TRUE, &f, &s));
    assert_int_equal(s.status, JAC_ERR_NULL_ARG);
    tu_assert_contains(s.message, "x is NULL");
    assert_false(jac_ipopt_eval_f(N, x, TRUE, &f, NULL));
    assert_true(isnan(f));

    /* A missing parameter buffer. */
    s.status = JAC_OK;
    s.params = NULL;
    assert_false(jac_ipopt_eval_f(N, x, TRUE, &f, &s));
    assert_true(isnan(f));
    assert_int_equal(s.status, JAC_ERR_NULL_ARG);
    tu_assert_contains(s.message, "params[0]");
    jac_ipopt_release(&s);

    /* Options out of range. */
    jac_ipopt bad = {.program = program, .params = params, .index_style = 2};
    Index n = -1;
    assert_int_equal(jac_ipopt_prepare(&bad, &n, NULL, NULL, NULL),
                     JAC_ERR_VALUE);
    assert_int_equal(n, 0);
    tu_assert_contains(bad.message, "index_style is 2");
    bad = (jac_ipopt){.program = program, .jacobian_method = JAC_SPARSE_STAR};
    assert_null(jac_ipopt_create(&bad, x, x, g, g));
    assert_int_equal(bad.status, JAC_ERR_VALUE);
    tu_assert_contains(bad.message, "jacobian_method");
    bad = (jac_ipopt){.program = program, .hessian_method = JAC_SPARSE_REVERSE};
    assert_int_equal(jac_ipopt_prepare(&bad, NULL, NULL, NULL, NULL),
                     JAC_ERR_VALUE);
    tu_assert_contains(bad.message, "hessian_method is 2");
    bad = (jac_ipopt){.program = program, .params = params};
    assert_null(jac_ipopt_create(&bad, x, x, NULL, g));
    assert_int_equal(bad.status, JAC_ERR_NULL_ARG);
    tu_assert_contains(bad.message, "g_L is NULL");
    jac_ipopt_release(&bad);
    bad = (jac_ipopt){0};
    assert_int_equal(jac_ipopt_prepare(&bad, NULL, NULL, NULL, NULL),
                     JAC_ERR_NULL_ARG);
    tu_assert_contains(bad.message, "the program is NULL");
    assert_int_equal(jac_ipopt_prepare(NULL, &n, NULL, NULL, NULL),
                     JAC_ERR_NULL_ARG);
    assert_null(jac_ipopt_create(NULL, x, x, g, g));
    assert_false(jac_ipopt_eval_grad_f(N, x, TRUE, grad, NULL));
    assert_true(all_nan(grad, N));
    jac_program_free(program);
}

/* Programs that are not of one input x and outputs f and g. */
static void test_bad_programs_are_errors(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = jac_zeros(ctx, 1, TU_SHAPE(3));
    jac_program *two_f = NULL, *three = NULL;
    tu_assert_ok(ctx, jac_program_begin(ctx, 1, &x, 0, NULL));
    jac_tensor *y = jac_square(ctx, x);
    tu_assert_ok(ctx,
                 jac_program_end(ctx, 2, (jac_tensor *[]){y, y}, 0, &two_f));
    tu_assert_ok(ctx, jac_program_begin(ctx, 1, &x, 0, NULL));
    jac_tensor *z = jac_sum(ctx, jac_square(ctx, x));
    tu_assert_ok(ctx,
                 jac_program_end(ctx, 3, (jac_tensor *[]){z, z, z}, 0, &three));
    double xs[3] = {1.0, 2.0, 3.0}, f = 0.0;
    jac_ipopt s = {.program = two_f};
    assert_false(jac_ipopt_eval_f(3, xs, TRUE, &f, &s));
    assert_true(isnan(f));
    assert_int_equal(s.status, JAC_ERR_SHAPE);
    tu_assert_contains(s.message, "first output (f) has 3 elements");
    s = (jac_ipopt){.program = three};
    assert_false(jac_ipopt_eval_f(3, xs, TRUE, &f, &s));
    assert_int_equal(s.status, JAC_ERR_SHAPE);
    tu_assert_contains(s.message, "1 inputs and 3 outputs");
    assert_null(s.work);
    jac_program_free(two_f);
    jac_program_free(three);
}

/* ------------------------------------------------------------------------ */
/* Allocation failures                                                      */
/* ------------------------------------------------------------------------ */

typedef struct counting_allocator {
    size_t calls;   /* allocations asked for */
    size_t fail_at; /* 1-based call to refuse; 0: never */
    size_t live;    /* blocks not freed */
} counting_allocator;

static void *counting_alloc(size_t size, void *user)
{
    counting_allocator *a = user;
    if (++a->calls == a->fail_at)
        return NULL;
    void *p = malloc(size);
    if (p != NULL)
        a->live++;
    return p;
}

static void counting_free(void *ptr, void *user)
{
    counting_allocator *a = user;
    if (ptr != NULL) {
        a->live--;
        free(ptr);
    }
}

/* Prepares s and runs every callback at one point; 1 when all succeeded
 * with the right values, 0 when one failed (then with status, message and
 * NaN). */
static int run_callbacks(jac_ipopt *s, double p)
{
    double x[N] = {0.5, -1.0, 2.0, 0.3}, lambda[M] = {0.5, -2.0};
    double f, g[M], grad[N], jv[NELE_JAC], hv[NELE_HESS];
    Index rows[NELE_HESS], cols[NELE_HESS];
    if (jac_ipopt_prepare(s, NULL, NULL, NULL, NULL) != JAC_OK) {
        assert_int_equal(s->status, JAC_ERR_NO_MEMORY);
        assert_null(s->work);
        return 0;
    }
    if (!jac_ipopt_eval_f(N, x, TRUE, &f, s)) {
        assert_true(isnan(f));
        return 0;
    }
    if (!jac_ipopt_eval_jac_g(N, x, FALSE, M, NELE_JAC, NULL, NULL, jv, s)) {
        assert_true(all_nan(jv, NELE_JAC));
        return 0;
    }
    if (!jac_ipopt_eval_h(N, x, FALSE, 1.0, M, lambda, TRUE, NELE_HESS, NULL,
                          NULL, hv, s)) {
        assert_true(all_nan(hv, NELE_HESS));
        return 0;
    }
    assert_true(jac_ipopt_eval_g(N, x, FALSE, M, g, s));
    assert_true(jac_ipopt_eval_grad_f(N, x, FALSE, grad, s));
    assert_true(jac_ipopt_eval_h(N, NULL, TRUE, 1.0, M, NULL, TRUE, NELE_HESS,
                                 rows, cols, NULL, s));
    double want_f, want_grad[N], want_g[M], want_J[M * N], want_H[N * N],
        H[N * N];
    problem_hand(x, p, 1.0, lambda, &want_f, want_grad, want_g, want_J, want_H);
    tu_assert_close(&f, &want_f, 1, 1e-15, 1e-14);
    tu_assert_close(g, want_g, M, 1e-15, 1e-14);
    tu_assert_close(grad, want_grad, N, 1e-14, 1e-13);
    assemble(rows, cols, hv, NELE_HESS, 0, N, H);
    for (int k = 0; k < NELE_HESS; k++)
        tu_assert_close(&H[rows[k] * N + cols[k]],
                        &want_H[rows[k] * N + cols[k]], 1, 1e-14, 1e-13);
    return 1;
}

/* The k-th allocation of the adapter's workspace fails, for each k; then
 * the k-th allocation through the program's allocator (the plans, the
 * program's evaluation workspaces), for each k. Each run ends in a clean
 * JAC_ERR_NO_MEMORY (or, when a failure was absorbed, the right answer),
 * leaks nothing, and a run after it succeeds. */
static void test_allocation_failures(void **state)
{
    (void)state;
    counting_allocator program_blocks = {0}, work_blocks = {0};
    jac_allocator program_hooks = {counting_alloc, counting_free,
                                   &program_blocks};
    jac_allocator work_hooks = {counting_alloc, counting_free, &work_blocks};
    jac_ctx *ctx = jac_ctx_new_with_allocator(&program_hooks);
    assert_non_null(ctx);
    jac_program *program = record_problem(ctx);
    jac_ctx_free(ctx);
    size_t program_live = program_blocks.live;

    double p = 1.5;
    const double *params[1] = {&p};
    /* Counts, from a run without failures. */
    size_t program_start = program_blocks.calls;
    jac_ipopt s = {
        .program = program, .params = params, .allocator = work_hooks};
    assert_int_equal(run_callbacks(&s, p), 1);
    jac_ipopt_release(&s);
    size_t work_calls = work_blocks.calls;
    size_t program_calls = program_blocks.calls - program_start;
    assert_true(work_calls >= 2);
    assert_true(program_calls >= 2);
    assert_int_equal(work_blocks.live, 0);

    int failures = 0;
    for (size_t k = 1; k <= work_calls; k++) {
        work_blocks = (counting_allocator){.fail_at = k};
        s = (jac_ipopt){
            .program = program, .params = params, .allocator = work_hooks};
        if (!run_callbacks(&s, p)) {
            failures++;
            assert_int_equal(s.status, JAC_ERR_NO_MEMORY);
            tu_assert_contains(s.message, "out of memory");
        }
        jac_ipopt_release(&s);
        assert_int_equal(work_blocks.live, 0);
    }
    assert_int_equal(failures, (int)work_calls);

    /* The program's own workspaces are kept by the program after the first
     * run; a fresh recording makes them again. */
    jac_program_free(program);
    assert_int_equal(program_blocks.live, 0);
    failures = 0;
    for (size_t k = 1; k <= program_calls; k++) {
        program_blocks = (counting_allocator){0};
        ctx = jac_ctx_new_with_allocator(&program_hooks);
        assert_non_null(ctx);
        program = record_problem(ctx);
        jac_ctx_free(ctx);
        program_live = program_blocks.live;
        program_blocks.fail_at = program_blocks.calls + k;
        s = (jac_ipopt){.program = program, .params = params};
        if (!run_callbacks(&s, p)) {
            failures++;
            assert_int_equal(s.status, JAC_ERR_NO_MEMORY);
            /* The next run, with no failure, succeeds. */
            s.status = JAC_OK;
            assert_int_equal(run_callbacks(&s, p), 1);
        }
        jac_ipopt_release(&s);
        jac_program_free(program);
        assert_int_equal(program_blocks.live, 0);
    }
    assert_true(failures > 0);
    (void)program_live;
}

/* ------------------------------------------------------------------------ */
/* Solves                                                                   */
/* ------------------------------------------------------------------------ */

/* HS071 through jac_ipopt_create, in Fortran's index style. */
static void test_hs071_solves(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = jac_zeros(ctx, 1, TU_SHAPE(4));
    tu_assert_ok(ctx, jac_program_begin(ctx, 1, &x, 0, NULL));
    jac_tensor *xi[4];
    for (int i = 0; i < 4; i++)
        xi[i] = jac_slice(ctx, x, 0, i, i + 1, 1);
    jac_tensor *sum = jac_add(ctx, jac_add(ctx, xi[0], xi[1]), xi[2]);
    jac_tensor *f =
        jac_add(ctx, jac_mul(ctx, jac_mul(ctx, xi[0], xi[3]), sum), xi[2]);
    jac_tensor *g[2] = {
        jac_mul(ctx, jac_mul(ctx, xi[0], xi[1]), jac_mul(ctx, xi[2], xi[3])),
        jac_reshape(ctx, jac_sum(ctx, jac_square(ctx, x)), 1, TU_SHAPE(1))};
    jac_program *program = NULL;
    tu_assert_ok(ctx, jac_program_end(
                          ctx, 2, (jac_tensor *[]){f, jac_concat(ctx, 2, g, 0)},
                          0, &program));
    jac_ipopt s = {.program = program, .index_style = 1};
    Number x_L[4] = {1, 1, 1, 1}, x_U[4] = {5, 5, 5, 5};
    Number g_L[2] = {25, 40}, g_U[2] = {2e19, 40};
    IpoptProblem nlp = jac_ipopt_create(&s, x_L, x_U, g_L, g_U);
    assert_non_null(nlp);
    AddIpoptIntOption(nlp, "print_level", 0);
    AddIpoptStrOption(nlp, "sb", "yes");
    Number xs[4] = {1, 5, 5, 1}, obj = 0.0, gs[2];
    enum ApplicationReturnStatus result =
        IpoptSolve(nlp, xs, gs, &obj, NULL, NULL, NULL, &s);
    FreeIpoptProblem(nlp);
    assert_int_equal(result, Solve_Succeeded);
    assert_int_equal(s.status, JAC_OK);
    tu_assert_close(xs, TU_VALUES(1.0, 4.7429996, 3.8211500, 1.3794083), 4,
                    1e-6, 0.0);
    tu_assert_close(&obj, TU_VALUES(17.0140173), 1, 1e-6, 0.0);
    tu_assert_close(gs, TU_VALUES(25.0, 40.0), 2, 1e-6, 0.0);
    jac_ipopt_release(&s);
    jac_program_free(program);
}

/* Rosenbrock's function of 10 variables, unconstrained: a program with
 * the objective alone (m = 0). */
static void test_unconstrained_solves(void **state)
{
    jac_ctx *ctx = *state;
    enum { R = 10 };
    jac_tensor *x = jac_zeros(ctx, 1, TU_SHAPE(R));
    tu_assert_ok(ctx, jac_program_begin(ctx, 1, &x, 0, NULL));
    jac_tensor *head = jac_slice(ctx, x, 0, 0, R - 1, 1);
    jac_tensor *tail = jac_slice(ctx, x, 0, 1, R, 1);
    jac_tensor *t = jac_sub(ctx, tail, jac_square(ctx, head));
    jac_tensor *f = jac_sum(
        ctx, jac_add(ctx, jac_mul_scalar(ctx, jac_square(ctx, t), 100.0),
                     jac_square(ctx, jac_rsub_scalar(ctx, 1.0, head))));
    jac_program *program = NULL;
    tu_assert_ok(ctx, jac_program_end(ctx, 1, &f, 0, &program));
    jac_ipopt s = {.program = program};
    Index m = -1, nele_jac = -1, nele_hess = -1;
    assert_int_equal(jac_ipopt_prepare(&s, NULL, &m, &nele_jac, &nele_hess),
                     JAC_OK);
    assert_int_equal(m, 0);
    assert_int_equal(nele_jac, 0);
    assert_int_equal(nele_hess, 2 * R - 1); /* tridiagonal */
    Number x_L[R], x_U[R], xs[R];
    for (int i = 0; i < R; i++) {
        x_L[i] = -1e20;
        x_U[i] = 1e20;
        xs[i] = 0.0;
    }
    IpoptProblem nlp = jac_ipopt_create(&s, x_L, x_U, NULL, NULL);
    assert_non_null(nlp);
    AddIpoptIntOption(nlp, "print_level", 0);
    AddIpoptStrOption(nlp, "sb", "yes");
    AddIpoptNumOption(nlp, "tol", 1e-10);
    Number obj = 1.0;
    enum ApplicationReturnStatus result =
        IpoptSolve(nlp, xs, NULL, &obj, NULL, NULL, NULL, &s);
    FreeIpoptProblem(nlp);
    assert_int_equal(result, Solve_Succeeded);
    assert_int_equal(s.status, JAC_OK);
    for (int i = 0; i < R; i++)
        tu_assert_close(&xs[i], TU_VALUES(1.0), 1, 1e-6, 0.0);
    assert_true(obj < 1e-12);
    assert_true(s.hessians > 0);
    jac_ipopt_release(&s);
    jac_program_free(program);
}

/* A failing evaluation stops IPOPT: the status is kept and IpoptSolve
 * reports an error, not a solution. */
static void test_failure_stops_the_solve(void **state)
{
    jac_program *program = record_problem(*state);
    jac_ipopt s = {.program = program}; /* its parameter is missing */
    Number x_L[N] = {-10, -10, -10, -10}, x_U[N] = {10, 10, 10, 10};
    Number g_L[M] = {-1, -1}, g_U[M] = {1, 1};
    IpoptProblem nlp = jac_ipopt_create(&s, x_L, x_U, g_L, g_U);
    assert_non_null(nlp);
    AddIpoptIntOption(nlp, "print_level", 0);
    AddIpoptStrOption(nlp, "sb", "yes");
    Number xs[N] = {0.1, 0.2, 0.3, 0.4}, obj = 0.0;
    enum ApplicationReturnStatus result =
        IpoptSolve(nlp, xs, NULL, &obj, NULL, NULL, NULL, &s);
    FreeIpoptProblem(nlp);
    assert_true(result != Solve_Succeeded &&
                result != Solved_To_Acceptable_Level);
    assert_int_equal(s.status, JAC_ERR_NULL_ARG);
    tu_assert_contains(s.message, "params[0] is NULL");
    jac_ipopt_release(&s);
    jac_program_free(program);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_callbacks_match_hand),
        TU_TEST(test_derivatives_match_finite_differences),
        TU_TEST(test_new_x_evaluates_once),
        TU_TEST(test_workspace_follows_options),
        TU_TEST(test_bad_sizes_are_errors),
        TU_TEST(test_bad_programs_are_errors),
        TU_TEST(test_allocation_failures),
        TU_TEST(test_hs071_solves),
        TU_TEST(test_unconstrained_solves),
        TU_TEST(test_failure_stops_the_solve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
