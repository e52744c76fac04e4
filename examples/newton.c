/*
 * Newton's method on the Bratu problem, with the residual recorded once and
 * replayed at every step.
 *
 *   -u''(t) = lambda * exp(u(t)) on (0, 1),  u(0) = u(1) = 0,
 *
 * discretised on n interior points with central differences:
 *
 *   F_i(u) = (2 u_i - u_{i-1} - u_{i+1}) / h^2 - lambda * exp(u_i) = 0.
 *
 * The residual is written once with ordinary ops between jac_program_begin
 * and jac_program_end, with u as the input and lambda as a parameter (an
 * argument that is not differentiated and may change from call to call).
 * The context is freed right after: the program holds everything it needs.
 * Each Newton step then asks the program for F(u) and its Jacobian dF/du,
 * written into two plain arrays by jac_program_jacobian, and solves
 * J du = -F with a small LU factorisation written here. No tensor is made
 * per step, nothing is re-recorded, and once the first step has run the
 * replay allocates nothing.
 *
 * The same program then follows the solution as lambda grows (parameter
 * continuation): a new lambda is one more double in the argument list.
 *
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include <jacobian.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { N = 300, MAX_STEPS = 20 };

/* The residual F(u; lambda): u is padded with the zero boundary values, and
 * the neighbours are two shifted slices of the padded vector. The zeros are
 * made inside the recording and depend on neither u nor lambda, so they
 * become constants of the program. */
static jac_tensor *residual(jac_ctx *ctx, jac_tensor *u, jac_tensor *lambda)
{
    double h = 1.0 / (N + 1);
    jac_tensor *zero = jac_zeros(ctx, 1, (int64_t[]){1});
    jac_tensor *padded = jac_concat(ctx, 3, (jac_tensor *[]){zero, u, zero}, 0);
    jac_tensor *left = jac_slice(ctx, padded, 0, 0, N, 1);
    jac_tensor *right = jac_slice(ctx, padded, 0, 2, N + 2, 1);
    jac_tensor *lap =
        jac_sub(ctx, jac_sub(ctx, jac_mul_scalar(ctx, u, 2.0), left), right);
    return jac_sub(ctx, jac_div_scalar(ctx, lap, h * h),
                   jac_mul(ctx, jac_exp(ctx, u), lambda));
}

/* Records F once; NULL (with a message) on failure. */
static jac_program *record_residual(void)
{
    jac_ctx *ctx = jac_ctx_new();
    if (ctx == NULL)
        return NULL;
    jac_tensor *u = jac_zeros(ctx, 1, (int64_t[]){N});
    jac_tensor *lambda = jac_scalar(ctx, 1.0);
    jac_program *program = NULL;
    if (jac_program_begin(ctx, 1, &u, 1, &lambda) == JAC_OK) {
        jac_tensor *F = residual(ctx, u, lambda);
        jac_program_end(ctx, 1, &F, 0, &program);
    }
    if (program == NULL)
        fprintf(stderr, "newton: recording failed: %s\n", jac_errmsg(ctx));
    jac_ctx_free(ctx); /* the program does not need it any more */
    return program;
}

/* Solves a x = b in place (b becomes x) by LU with partial pivoting; a
 * (n x n, row-major) is overwritten. Returns 0 when a is singular. */
static int lu_solve(int n, double *a, double *b)
{
    for (int k = 0; k < n; k++) {
        int p = k;
        for (int i = k + 1; i < n; i++)
            if (fabs(a[i * n + k]) > fabs(a[p * n + k]))
                p = i;
        if (a[p * n + k] == 0.0)
            return 0;
        if (p != k) {
            for (int j = 0; j < n; j++) {
                double t = a[k * n + j];
                a[k * n + j] = a[p * n + j];
                a[p * n + j] = t;
            }
            double t = b[k];
            b[k] = b[p];
            b[p] = t;
        }
        for (int i = k + 1; i < n; i++) {
            double m = a[i * n + k] / a[k * n + k];
            if (m == 0.0)
                continue;
            for (int j = k + 1; j < n; j++)
                a[i * n + j] -= m * a[k * n + j];
            b[i] -= m * b[k];
        }
    }
    for (int i = n - 1; i >= 0; i--) {
        double s = b[i];
        for (int j = i + 1; j < n; j++)
            s -= a[i * n + j] * b[j];
        b[i] = s / a[i * n + i];
    }
    return 1;
}

static double norm(const double *v, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += v[i] * v[i];
    return sqrt(s);
}

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The buffers of the loop, allocated once. */
typedef struct work {
    double u[N], F[N], du[N];
    double J[N * N];
} work;

/* Newton's method for F(u; lambda) = 0 from the current w->u. Prints one
 * line per step when verbose; returns the number of steps, or -1. */
static int newton(jac_program *program, work *w, double lambda, int verbose)
{
    const double *args[2] = {w->u, &lambda}; /* inputs, then parameters */
    double *outputs[1] = {w->F};
    double *J[1] = {w->J}; /* block (output 0, input 0) */
    for (int step = 0; step < MAX_STEPS; step++) {
        double t0 = seconds();
        /* F(u) and dF/du at the current u, by replay. */
        if (jac_program_jacobian(program, args, outputs, J) != JAC_OK) {
            fprintf(stderr, "newton: %s\n", jac_program_errmsg());
            return -1;
        }
        double t1 = seconds();
        for (int i = 0; i < N; i++)
            w->du[i] = -w->F[i];
        if (!lu_solve(N, w->J, w->du)) {
            fprintf(stderr, "newton: singular Jacobian at step %d\n", step);
            return -1;
        }
        for (int i = 0; i < N; i++)
            w->u[i] += w->du[i];
        double fnorm = norm(w->F, N), dnorm = norm(w->du, N);
        if (verbose)
            printf("%4d  %.6e  %.6e  %9.3f  %9.3f\n", step, fnorm, dnorm,
                   1e3 * (t1 - t0), 1e3 * (seconds() - t1));
        if (dnorm < 1e-12 * (1.0 + norm(w->u, N)))
            return step + 1;
    }
    fprintf(stderr, "newton: no convergence for lambda = %g\n", lambda);
    return -1;
}

/* u(1/2) of the continuous problem: 2 log cosh(theta / 4), where theta
 * solves theta = sqrt(2 lambda) cosh(theta / 4) (the lower branch, found
 * by fixed-point iteration, which contracts there for lambda <= 3). */
static double exact_midpoint(double lambda)
{
    double theta = 0.0;
    for (int i = 0; i < 200; i++)
        theta = sqrt(2.0 * lambda) * cosh(theta / 4.0);
    return 2.0 * log(cosh(theta / 4.0));
}

int main(void)
{
    jac_program *program = record_residual();
    work *w = calloc(1, sizeof *w);
    if (program == NULL || w == NULL) {
        jac_program_free(program);
        free(w);
        return 1;
    }
    size_t bytes = 0;
    size_t ops = jac_program_length(program, &bytes);
    printf("Bratu problem, %d unknowns; residual recorded once: %zu ops, "
           "%zu bytes\n",
           N, ops, bytes);

    /* lambda = 1 from u = 0, step by step. */
    printf("\nlambda = 1\n");
    printf("step  |F(u)|        |du|          Jacobian (ms)  LU (ms)\n");
    int steps = newton(program, w, 1.0, 1);
    int ok = steps > 0;
    double err = ok ? fabs(w->u[N / 2] - exact_midpoint(1.0)) : INFINITY;
    if (ok)
        printf("u(1/2) = %.12f after %d steps (exact %.12f, |diff| %.1e)\n",
               w->u[N / 2], steps, exact_midpoint(1.0), err);
    /* The discretisation error is O(h^2), about 1e-6 here. */
    ok = ok && err < 1e-5;

    /* Continuation: the same program, a new parameter, the previous
     * solution as the starting point. */
    printf("\nlambda  steps  u(1/2)          exact\n");
    for (int k = 1; ok && k <= 6; k++) {
        double lambda = 1.0 + 0.35 * k;
        steps = newton(program, w, lambda, 0);
        ok = steps > 0;
        if (ok) {
            double exact = exact_midpoint(lambda);
            printf("%6.2f  %5d  %.12f  %.12f\n", lambda, steps, w->u[N / 2],
                   exact);
            ok = fabs(w->u[N / 2] - exact) < 1e-4;
        }
    }
    if (!ok)
        fprintf(stderr, "newton: the solution is wrong or did not converge\n");
    jac_program_free(program);
    free(w);
    return ok ? 0 : 1;
}
