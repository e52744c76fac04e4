/*
 * GSL's solvers with derivatives from recorded functions, through the
 * adapter of jacobian_gsl.h, against the same solvers driven by
 * hand-written derivatives.
 *
 * 1. The two-dimensional Bratu problem on an N x N grid (N = 16: 256
 *    unknowns, h = 1 / (N + 1), lambda = 6, zero boundary),
 *
 *      F[i,j] = (4 u[i,j] - u[i-1,j] - u[i+1,j] - u[i,j-1] - u[i,j+1]) / h^2
 *               - lambda exp(u[i,j]),
 *
 *    solved by gsl_multiroot_fdfsolver_newton (a dense Jacobian and its LU
 *    at every step) from u = 0, twice: with the recorded F
 *    (jac_gsl_multiroot_fdf_init) and with hand-written f, df and fdf. Both
 *    must stop with sum |F| below 1e-10 after the same number of
 *    iterations, at the same root. The time spent in the Jacobian callbacks
 *    (df and fdf) is printed for both, and the steady-state time of one
 *    Jacobian (fdf, repeated at the root).
 *
 * 2. GSL's documentation example of nonlinear least squares: fitting
 *    y = A exp(-lambda t) + b to 100 points on t in [0, 40], made from
 *    A = 5, lambda = 0.1, b = 1 and a fixed pseudo-noise (a linear
 *    congruential generator, uniform in [-0.1, 0.1]), by
 *    gsl_multifit_nlinear's trust region with geodesic acceleration
 *    (gsl_multifit_nlinear_trs_lmaccel, which calls fvv), twice: with the
 *    recorded residuals (jac_gsl_nlinear_fdf_init: f, df and the exact fvv)
 *    and with hand-written f, df and fvv. The fit must recover the three
 *    parameters within four standard errors (from the covariance of the
 *    fit), both runs with the same numbers of iterations and Jacobians
 *    (and of f and fvv calls within three: see fit_problem).
 *
 * Exits 1 when either answer is off.
 *
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include <jacobian.h>
#include <jacobian_gsl.h>

#include <gsl/gsl_blas.h>
#include <gsl/gsl_errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------------------ */
/* 1. Bratu by gsl_multiroot_fdfsolver_hybridsj                             */
/* ------------------------------------------------------------------------ */

enum { GRID = 16 };
static const double LAMBDA = 6.0;

/* The N x N block of the padded grid p whose corner is (r0, c0). */
static jac_tensor *shifted(jac_ctx *ctx, jac_tensor *p, int64_t r0, int64_t c0)
{
    return jac_slice(ctx, jac_slice(ctx, p, 0, r0, r0 + GRID, 1), 1, c0,
                     c0 + GRID, 1);
}

/* F(u; lambda): the zero boundary is the padding, the four neighbours of
 * every point four slices of it. */
static jac_status bratu(jac_ctx *ctx, jac_tensor *const *in, jac_tensor **out,
                        void *user)
{
    (void)user;
    double h = 1.0 / (GRID + 1);
    jac_tensor *u = in[0], *lambda = in[1];
    jac_tensor *p =
        jac_pad(ctx, u, (const int64_t[]){1, 1}, (const int64_t[]){1, 1});
    jac_tensor *f = jac_mul_scalar(ctx, u, 4.0);
    f = jac_sub(ctx, f, shifted(ctx, p, 0, 1)); /* u[i-1,j] */
    f = jac_sub(ctx, f, shifted(ctx, p, 2, 1)); /* u[i+1,j] */
    f = jac_sub(ctx, f, shifted(ctx, p, 1, 0)); /* u[i,j-1] */
    f = jac_sub(ctx, f, shifted(ctx, p, 1, 2)); /* u[i,j+1] */
    out[0] = jac_sub(ctx, jac_div_scalar(ctx, f, h * h),
                     jac_mul(ctx, lambda, jac_exp(ctx, u)));
    return out[0] != NULL ? JAC_OK : jac_errcode(ctx);
}

/* The hand-written F, row-major unknowns u[i * GRID + j]. */
static double bratu_neighbours(const gsl_vector *u, int i, int j)
{
    double s = 0.0;
    if (i > 0)
        s += gsl_vector_get(u, (size_t)((i - 1) * GRID + j));
    if (i + 1 < GRID)
        s += gsl_vector_get(u, (size_t)((i + 1) * GRID + j));
    if (j > 0)
        s += gsl_vector_get(u, (size_t)(i * GRID + j - 1));
    if (j + 1 < GRID)
        s += gsl_vector_get(u, (size_t)(i * GRID + j + 1));
    return s;
}

static int hand_f(const gsl_vector *u, void *params, gsl_vector *f)
{
    (void)params;
    double h2 = 1.0 / ((GRID + 1.0) * (GRID + 1.0));
    for (int i = 0; i < GRID; i++)
        for (int j = 0; j < GRID; j++) {
            size_t k = (size_t)(i * GRID + j);
            double uk = gsl_vector_get(u, k);
            gsl_vector_set(f, k,
                           (4.0 * uk - bratu_neighbours(u, i, j)) / h2 -
                               LAMBDA * exp(uk));
        }
    return GSL_SUCCESS;
}

static int hand_df(const gsl_vector *u, void *params, gsl_matrix *J)
{
    (void)params;
    double h2 = 1.0 / ((GRID + 1.0) * (GRID + 1.0));
    gsl_matrix_set_zero(J);
    for (int i = 0; i < GRID; i++)
        for (int j = 0; j < GRID; j++) {
            size_t k = (size_t)(i * GRID + j);
            gsl_matrix_set(J, k, k,
                           4.0 / h2 - LAMBDA * exp(gsl_vector_get(u, k)));
            if (i > 0)
                gsl_matrix_set(J, k, k - GRID, -1.0 / h2);
            if (i + 1 < GRID)
                gsl_matrix_set(J, k, k + GRID, -1.0 / h2);
            if (j > 0)
                gsl_matrix_set(J, k, k - 1, -1.0 / h2);
            if (j + 1 < GRID)
                gsl_matrix_set(J, k, k + 1, -1.0 / h2);
        }
    return GSL_SUCCESS;
}

static int hand_fdf(const gsl_vector *u, void *params, gsl_vector *f,
                    gsl_matrix *J)
{
    hand_f(u, params, f);
    return hand_df(u, params, J);
}

/* The callbacks of one run, timed where they give a Jacobian. */
typedef struct timed {
    gsl_multiroot_function_fdf inner;
    double seconds; /* in df and fdf */
    unsigned long jacobians;
} timed;

static int timed_f(const gsl_vector *x, void *params, gsl_vector *f)
{
    timed *t = params;
    return t->inner.f(x, t->inner.params, f);
}

static int timed_df(const gsl_vector *x, void *params, gsl_matrix *J)
{
    timed *t = params;
    double t0 = seconds();
    int status = t->inner.df(x, t->inner.params, J);
    t->seconds += seconds() - t0;
    t->jacobians++;
    return status;
}

static int timed_fdf(const gsl_vector *x, void *params, gsl_vector *f,
                     gsl_matrix *J)
{
    timed *t = params;
    double t0 = seconds();
    int status = t->inner.fdf(x, t->inner.params, f, J);
    t->seconds += seconds() - t0;
    t->jacobians++;
    return status;
}

typedef struct root_run {
    int status;
    int iterations;
    double residual; /* sum |F| at the end */
    gsl_vector *root;
} root_run;

static root_run solve_root(timed *t)
{
    size_t n = t->inner.n;
    gsl_multiroot_function_fdf fdf = {
        .f = timed_f, .df = timed_df, .fdf = timed_fdf, .n = n, .params = t};
    gsl_multiroot_fdfsolver *solver =
        gsl_multiroot_fdfsolver_alloc(gsl_multiroot_fdfsolver_newton, n);
    gsl_vector *u = gsl_vector_calloc(n);
    root_run run = {.status = GSL_CONTINUE, .root = gsl_vector_alloc(n)};
    if (solver == NULL || u == NULL || run.root == NULL) {
        run.status = GSL_ENOMEM;
    } else {
        run.status = gsl_multiroot_fdfsolver_set(solver, &fdf, u);
        if (run.status == GSL_SUCCESS)
            run.status = GSL_CONTINUE;
        while (run.status == GSL_CONTINUE && run.iterations < 100) {
            run.iterations++;
            int status = gsl_multiroot_fdfsolver_iterate(solver);
            if (status != GSL_SUCCESS) {
                run.status = status;
                break;
            }
            run.status = gsl_multiroot_test_residual(solver->f, 1e-10);
        }
        run.residual = gsl_blas_dasum(solver->f);
        gsl_vector_memcpy(run.root, solver->x);
    }
    gsl_vector_free(u);
    gsl_multiroot_fdfsolver_free(solver);
    return run;
}

static int bratu_problem(void)
{
    jac_ctx *ctx = jac_ctx_new();
    jac_program *program = NULL;
    if (ctx != NULL) {
        jac_tensor *u = jac_zeros(ctx, 2, (const int64_t[]){GRID, GRID});
        jac_tensor *lambda = jac_scalar(ctx, LAMBDA);
        if (u != NULL && lambda != NULL)
            jac_program_record(ctx, bratu, NULL, 1, &u, 1, &lambda, 1, 0,
                               &program);
        if (program == NULL)
            fprintf(stderr, "gsl_solvers: recording failed: %s\n",
                    jac_errmsg(ctx));
        jac_ctx_free(ctx);
    }
    if (program == NULL)
        return 0;

    const double *params[1] = {&LAMBDA};
    jac_gsl state = {.program = program, .params = params};
    timed runs[2] = {
        {.inner = {0}},
        {.inner = {
             .f = hand_f, .df = hand_df, .fdf = hand_fdf, .n = GRID * GRID}}};
    jac_gsl_multiroot_fdf_init(&runs[0].inner, &state);
    root_run results[2];
    for (int k = 0; k < 2; k++)
        results[k] = solve_root(&runs[k]);
    /* Steady state: fdf repeated at the root, first calls done. */
    double steady[2] = {0.0, 0.0};
    gsl_vector *f = gsl_vector_alloc(GRID * GRID);
    gsl_matrix *J = gsl_matrix_alloc(GRID * GRID, GRID * GRID);
    enum { REPEAT = 200 };
    for (int k = 0; k < 2 && f != NULL && J != NULL; k++) {
        double t0 = seconds();
        for (int r = 0; r < REPEAT; r++)
            (void)runs[k].inner.fdf(results[k].root, runs[k].inner.params, f,
                                    J);
        steady[k] = (seconds() - t0) / REPEAT;
    }
    gsl_vector_free(f);
    gsl_matrix_free(J);
    jac_gsl_release(&state);
    jac_program_free(program);

    static const char *const names[2] = {"recorded", "hand-written"};
    printf("Bratu, %d x %d grid (n = %d), lambda = %g, "
           "gsl_multiroot_fdfsolver_newton from u = 0\n\n",
           GRID, GRID, GRID * GRID, LAMBDA);
    printf("%-12s %8s %10s %10s %12s %14s\n", "derivatives", "status",
           "iterations", "jacobians", "sum |F|", "jacobian ms");
    for (int k = 0; k < 2; k++)
        printf("%-12s %8d %10d %10lu %12.3e %14.3f\n", names[k],
               results[k].status, results[k].iterations, runs[k].jacobians,
               results[k].residual, 1e3 * runs[k].seconds);
    printf("\nsteady state, F and J by fdf, %d calls each: recorded %.1f us, "
           "hand-written %.1f us (ratio %.2f)\n",
           REPEAT, 1e6 * steady[0], 1e6 * steady[1], steady[0] / steady[1]);
    double gap = 0.0, top = 0.0;
    int ok = state.status == JAC_OK;
    if (!ok)
        fprintf(stderr, "FAIL: %s\n", state.message);
    for (int k = 0; k < 2; k++) {
        if (results[k].status != GSL_SUCCESS ||
            !(results[k].residual < 1e-10)) {
            fprintf(stderr, "FAIL: %s did not converge (status %d)\n", names[k],
                    results[k].status);
            ok = 0;
        }
    }
    if (results[0].iterations != results[1].iterations) {
        fprintf(stderr, "FAIL: %d iterations against %d\n",
                results[0].iterations, results[1].iterations);
        ok = 0;
    }
    for (size_t i = 0; i < (size_t)(GRID * GRID); i++) {
        double a = gsl_vector_get(results[0].root, i);
        gap = fmax(gap, fabs(a - gsl_vector_get(results[1].root, i)));
        top = fmax(top, a);
    }
    printf("max u = %.12f; the two roots differ by %.1e at most\n", top, gap);
    if (!(gap < 1e-10)) {
        fprintf(stderr, "FAIL: the roots differ\n");
        ok = 0;
    }
    for (int k = 0; k < 2; k++)
        gsl_vector_free(results[k].root);
    return ok;
}

/* ------------------------------------------------------------------------ */
/* 2. Exponential fit by gsl_multifit_nlinear with geodesic acceleration    */
/* ------------------------------------------------------------------------ */

enum { POINTS = 100 };

typedef struct fit_data {
    double t[POINTS];
    double y[POINTS];
} fit_data;

/* r_i(A, lambda, b) = A exp(-lambda t_i) + b - y_i; t and y parameters. */
static jac_program *record_fit(void)
{
    jac_ctx *ctx = jac_ctx_new();
    if (ctx == NULL)
        return NULL;
    jac_tensor *x = jac_zeros(ctx, 1, (const int64_t[]){3});
    jac_tensor *data[2] = {jac_zeros(ctx, 1, (const int64_t[]){POINTS}),
                           jac_zeros(ctx, 1, (const int64_t[]){POINTS})};
    jac_program *program = NULL;
    if (jac_program_begin(ctx, 1, &x, 2, data) == JAC_OK) {
        jac_tensor *A = jac_slice(ctx, x, 0, 0, 1, 1);
        jac_tensor *lambda = jac_slice(ctx, x, 0, 1, 2, 1);
        jac_tensor *b = jac_slice(ctx, x, 0, 2, 3, 1);
        jac_tensor *decay =
            jac_exp(ctx, jac_neg(ctx, jac_mul(ctx, lambda, data[0])));
        jac_tensor *r =
            jac_sub(ctx, jac_add(ctx, jac_mul(ctx, A, decay), b), data[1]);
        jac_program_end(ctx, 1, &r, 0, &program);
    }
    if (program == NULL)
        fprintf(stderr, "gsl_solvers: recording failed: %s\n", jac_errmsg(ctx));
    jac_ctx_free(ctx);
    return program;
}

static int fit_f(const gsl_vector *x, void *params, gsl_vector *f)
{
    const fit_data *d = params;
    double A = gsl_vector_get(x, 0), lambda = gsl_vector_get(x, 1),
           b = gsl_vector_get(x, 2);
    for (size_t i = 0; i < POINTS; i++)
        gsl_vector_set(f, i, A * exp(-lambda * d->t[i]) + b - d->y[i]);
    return GSL_SUCCESS;
}

static int fit_df(const gsl_vector *x, void *params, gsl_matrix *J)
{
    const fit_data *d = params;
    double A = gsl_vector_get(x, 0), lambda = gsl_vector_get(x, 1);
    for (size_t i = 0; i < POINTS; i++) {
        double e = exp(-lambda * d->t[i]);
        gsl_matrix_set(J, i, 0, e);
        gsl_matrix_set(J, i, 1, -d->t[i] * A * e);
        gsl_matrix_set(J, i, 2, 1.0);
    }
    return GSL_SUCCESS;
}

/* v^T (Hess r_i) v: only d2/dA dlambda = -t e and d2/dlambda2 = t^2 A e. */
static int fit_fvv(const gsl_vector *x, const gsl_vector *v, void *params,
                   gsl_vector *fvv)
{
    const fit_data *d = params;
    double A = gsl_vector_get(x, 0), lambda = gsl_vector_get(x, 1);
    double vA = gsl_vector_get(v, 0), vl = gsl_vector_get(v, 1);
    for (size_t i = 0; i < POINTS; i++) {
        double t = d->t[i], e = exp(-lambda * t);
        gsl_vector_set(fvv, i,
                       -2.0 * t * e * vA * vl + t * t * A * e * vl * vl);
    }
    return GSL_SUCCESS;
}

typedef struct fit_run {
    int status;
    size_t iterations;
    size_t nevalf, nevaldf, nevalfvv;
    double x[3];
    double error[3]; /* standard errors */
    double chi2;
} fit_run;

static fit_run solve_fit(gsl_multifit_nlinear_fdf *fdf)
{
    fit_run run = {.status = GSL_ENOMEM};
    gsl_multifit_nlinear_parameters settings =
        gsl_multifit_nlinear_default_parameters();
    settings.trs = gsl_multifit_nlinear_trs_lmaccel;
    gsl_multifit_nlinear_workspace *work = gsl_multifit_nlinear_alloc(
        gsl_multifit_nlinear_trust, &settings, POINTS, 3);
    gsl_matrix *covar = gsl_matrix_alloc(3, 3);
    if (work != NULL && covar != NULL) {
        double start[3] = {1.0, 1.0, 0.0};
        gsl_vector_view x0 = gsl_vector_view_array(start, 3);
        int info = 0;
        run.status = gsl_multifit_nlinear_init(&x0.vector, fdf, work);
        if (run.status == GSL_SUCCESS)
            run.status = gsl_multifit_nlinear_driver(100, 1e-8, 1e-8, 1e-8,
                                                     NULL, NULL, &info, work);
        run.iterations = gsl_multifit_nlinear_niter(work);
        run.nevalf = fdf->nevalf;
        run.nevaldf = fdf->nevaldf;
        run.nevalfvv = fdf->nevalfvv;
        const gsl_vector *x = gsl_multifit_nlinear_position(work);
        const gsl_vector *f = gsl_multifit_nlinear_residual(work);
        gsl_blas_ddot(f, f, &run.chi2);
        gsl_multifit_nlinear_covar(gsl_multifit_nlinear_jac(work), 0.0, covar);
        double scale = run.chi2 / (POINTS - 3);
        for (size_t i = 0; i < 3; i++) {
            run.x[i] = gsl_vector_get(x, i);
            run.error[i] = sqrt(scale * gsl_matrix_get(covar, i, i));
        }
    }
    gsl_matrix_free(covar);
    gsl_multifit_nlinear_free(work);
    return run;
}

static int fit_problem(void)
{
    static fit_data data;
    /* A fixed pseudo-noise: a linear congruential generator, uniform in
     * [-0.1, 0.1]. */
    uint32_t seed = 12345u;
    for (int i = 0; i < POINTS; i++) {
        seed = 1664525u * seed + 1013904223u;
        double noise = 0.2 * ((double)seed / 4294967296.0 - 0.5);
        data.t[i] = 40.0 * i / (POINTS - 1.0);
        data.y[i] = 5.0 * exp(-0.1 * data.t[i]) + 1.0 + noise;
    }
    jac_program *program = record_fit();
    if (program == NULL)
        return 0;
    const double *params[2] = {data.t, data.y};
    jac_gsl state = {.program = program, .params = params};
    gsl_multifit_nlinear_fdf fdfs[2];
    jac_gsl_nlinear_fdf_init(&fdfs[0], &state);
    fdfs[1] = (gsl_multifit_nlinear_fdf){.f = fit_f,
                                         .df = fit_df,
                                         .fvv = fit_fvv,
                                         .n = POINTS,
                                         .p = 3,
                                         .params = &data};
    fit_run runs[2];
    for (int k = 0; k < 2; k++)
        runs[k] = solve_fit(&fdfs[k]);
    jac_gsl_release(&state);
    jac_program_free(program);

    static const char *const names[2] = {"recorded", "hand-written"};
    static const double truth[3] = {5.0, 0.1, 1.0};
    printf("\nFit of y = A exp(-lambda t) + b to %d points (A = 5, "
           "lambda = 0.1, b = 1, noise in [-0.1, 0.1]),\n"
           "gsl_multifit_nlinear_trust with trs_lmaccel (geodesic "
           "acceleration: fvv)\n\n",
           POINTS);
    printf("%-12s %6s %5s %5s %5s %5s %10s %10s %10s %10s\n", "derivatives",
           "status", "iter", "f", "df", "fvv", "A", "lambda", "b", "chi2");
    for (int k = 0; k < 2; k++)
        printf("%-12s %6d %5zu %5zu %5zu %5zu %10.6f %10.6f %10.6f %10.6f\n",
               names[k], runs[k].status, runs[k].iterations, runs[k].nevalf,
               runs[k].nevaldf, runs[k].nevalfvv, runs[k].x[0], runs[k].x[1],
               runs[k].x[2], runs[k].chi2);
    printf("standard errors: A %.4f, lambda %.5f, b %.4f\n", runs[0].error[0],
           runs[0].error[1], runs[0].error[2]);
    int ok = state.status == JAC_OK;
    if (!ok)
        fprintf(stderr, "FAIL: %s\n", state.message);
    for (int k = 0; k < 2; k++) {
        if (runs[k].status != GSL_SUCCESS) {
            fprintf(stderr, "FAIL: %s: status %d\n", names[k], runs[k].status);
            ok = 0;
        }
        for (int i = 0; i < 3; i++)
            if (!(fabs(runs[k].x[i] - truth[i]) < 4.0 * runs[k].error[i])) {
                fprintf(stderr, "FAIL: %s: parameter %d is %g, not %g\n",
                        names[k], i, runs[k].x[i], truth[i]);
                ok = 0;
            }
    }
    /* The same iterations and Jacobians; f and fvv may differ by a rejected
     * acceleration or two at the end, where the ratio |a| / |v| that GSL
     * tests is one of quantities at rounding level. */
    if (runs[0].iterations != runs[1].iterations ||
        runs[0].nevaldf != runs[1].nevaldf || runs[0].nevalfvv == 0 ||
        labs((long)runs[0].nevalf - (long)runs[1].nevalf) > 3 ||
        labs((long)runs[0].nevalfvv - (long)runs[1].nevalfvv) > 3) {
        fprintf(stderr, "FAIL: the two runs took different paths\n");
        ok = 0;
    }
    for (int i = 0; i < 3; i++)
        if (!(fabs(runs[0].x[i] - runs[1].x[i]) < 1e-9)) {
            fprintf(stderr, "FAIL: the two fits differ\n");
            ok = 0;
        }
    return ok;
}

int main(void)
{
    int ok = bratu_problem();
    ok = fit_problem() && ok;
    if (!ok)
        return 1;
    printf("\nboth answers check\n");
    return 0;
}
