/*
 * Newton's method on the Bratu problem, with the Jacobian of the residual
 * computed by libjacobian at every step.
 *
 *   -u''(t) = lambda * exp(u(t)) on (0, 1),  u(0) = u(1) = 0,
 *
 * discretised on n interior points with central differences:
 *
 *   F_i(u) = (2 u_i - u_{i-1} - u_{i+1}) / h^2 - lambda * exp(u_i) = 0.
 *
 * The loop runs inside a scope: at the end of each step the residual, its
 * graph, the Jacobian and the previous iterate are released and only the new
 * iterate is kept, so the context's memory stays the same from step to step.
 *
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, isatty */

#include <jacobian.h>

#include <math.h>
#include <stdio.h>
#include <time.h>

enum { N = 300, MAX_STEPS = 20 };
static const double LAMBDA = 1.0;

/* The residual F(u): u is padded with the zero boundary values, and the
 * neighbours are two shifted slices of the padded vector. */
static jac_tensor *residual(jac_ctx *ctx, jac_tensor *u)
{
    double h = 1.0 / (N + 1);
    jac_tensor *zero = jac_zeros(ctx, 1, (int64_t[]){1});
    jac_tensor *padded = jac_concat(ctx, 3, (jac_tensor *[]){zero, u, zero}, 0);
    jac_tensor *left = jac_slice(ctx, padded, 0, 0, N, 1);
    jac_tensor *right = jac_slice(ctx, padded, 0, 2, N + 2, 1);
    jac_tensor *lap =
        jac_sub(ctx, jac_sub(ctx, jac_mul_scalar(ctx, u, 2.0), left), right);
    return jac_sub(ctx, jac_div_scalar(ctx, lap, h * h),
                   jac_mul_scalar(ctx, jac_exp(ctx, u), LAMBDA));
}

static double norm(const jac_tensor *t)
{
    double s = 0;
    for (int64_t i = 0; i < jac_tensor_numel(t); i++)
        s += jac_tensor_data(t)[i] * jac_tensor_data(t)[i];
    return sqrt(s);
}

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(void)
{
    jac_ctx *ctx = jac_ctx_new();
    if (ctx == NULL)
        return 1;
    jac_tensor *u = jac_zeros(ctx, 1, (int64_t[]){N});
    jac_set_requires_grad(u, true);
    printf("Bratu problem, lambda = %g, %d unknowns\n", LAMBDA, N);
    printf("step  |F(u)|        |du|          time (ms)  context memory\n");

    /* One mark for the whole loop: each step releases everything made since
     * it, the previous iterate included, and keeps the new iterate. */
    jac_scope mark = jac_scope_begin(ctx);
    int converged = 0;
    for (int step = 0; step < MAX_STEPS && !converged; step++) {
        double t0 = seconds();
        jac_tensor *F = residual(ctx, u);
        jac_tensor *J = jac_jacobian(ctx, F, u, 0);
        /* The Newton update needs no graph of its own. */
        bool was = jac_set_grad_enabled(ctx, false);
        jac_tensor *du = jac_solve(ctx, J, jac_neg(ctx, F));
        jac_tensor *next = jac_add(ctx, u, du);
        jac_set_grad_enabled(ctx, was);
        if (next == NULL) {
            fprintf(stderr, "step %d: %s\n", step, jac_errmsg(ctx));
            jac_ctx_free(ctx);
            return 1;
        }
        double fnorm = norm(F), dnorm = norm(du);
        /* Keep only the new iterate; it becomes the next step's input. */
        jac_scope_end(ctx, mark, &next, 1);
        jac_set_requires_grad(next, true);
        u = next;
        printf("%4d  %.6e  %.6e  %9.3f  %zu bytes\n", step, fnorm, dnorm,
               1e3 * (seconds() - t0), jac_ctx_memory(ctx));
        converged = dnorm < 1e-12 * (1.0 + norm(u));
    }
    if (!converged) {
        fprintf(stderr, "Newton's method did not converge\n");
        jac_ctx_free(ctx);
        return 1;
    }
    printf("u(1/2) = %.12f\n", jac_tensor_data(u)[N / 2]);
    jac_ctx_free(ctx);
    return 0;
}
