/*
 * NLopt with derivatives from recorded functions, through the adapter of
 * jacobian_nlopt.h, against the same solver driven by hand-written
 * derivatives.
 *
 * 1. The chained Rosenbrock function of n = 1000 variables,
 *
 *      f(x) = sum_{i < n-1} 100 (x[i+1] - x[i]^2)^2 + (1 - x[i])^2,
 *
 *    minimised by L-BFGS (NLOPT_LD_LBFGS) from x = 0, twice: with the
 *    recorded f through jac_nlopt_objective, and with a hand-written
 *    gradient in a callback of the same signature. Both must reach x = 1,
 *    with the same number of evaluations (or within a few: the two
 *    gradients may differ in their last bits, and L-BFGS may then take a
 *    different step near the end). The time spent in the callbacks that
 *    computed a gradient is printed for both.
 *
 * 2. NLopt's tutorial problem: minimise sqrt(x1) subject to
 *    x1 >= (a_k x0 + b_k)^3 for (a, b) = (2, 0) and (-1, 1), and x1 >= 0,
 *    by MMA, with the two constraints as one recorded vector constraint
 *    (jac_nlopt_mconstraint; a and b are its parameters). The optimum is
 *    x = (1/3, 8/27), f = sqrt(8/27).
 *
 * Exits 1 when either answer is off.
 *
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include <jacobian.h>
#include <jacobian_nlopt.h>

#include <math.h>
#include <nlopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { N = 1000 };

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ------------------------------------------------------------------------ */
/* Rosenbrock                                                               */
/* ------------------------------------------------------------------------ */

/* Records f once: one input x of N elements, one output of one element. */
static jac_program *record_rosenbrock(void)
{
    jac_ctx *ctx = jac_ctx_new();
    if (ctx == NULL)
        return NULL;
    jac_tensor *x = jac_zeros(ctx, 1, (int64_t[]){N});
    jac_program *program = NULL;
    if (jac_program_begin(ctx, 1, &x, 0, NULL) == JAC_OK) {
        jac_tensor *head = jac_slice(ctx, x, 0, 0, N - 1, 1);
        jac_tensor *tail = jac_slice(ctx, x, 0, 1, N, 1);
        jac_tensor *t = jac_sub(ctx, tail, jac_square(ctx, head));
        jac_tensor *u = jac_rsub_scalar(ctx, 1.0, head);
        jac_tensor *f = jac_sum(
            ctx, jac_add(ctx, jac_mul_scalar(ctx, jac_square(ctx, t), 100.0),
                         jac_square(ctx, u)));
        jac_program_end(ctx, 1, &f, 0, &program);
    }
    if (program == NULL)
        fprintf(stderr, "nlopt_rosenbrock: recording failed: %s\n",
                jac_errmsg(ctx));
    jac_ctx_free(ctx);
    return program;
}

/* The same f and its gradient written by hand. */
static double rosenbrock_hand(unsigned n, const double *x, double *grad,
                              void *data)
{
    (void)data;
    double f = 0.0;
    if (grad != NULL)
        for (unsigned i = 0; i < n; i++)
            grad[i] = 0.0;
    for (unsigned i = 0; i + 1 < n; i++) {
        double t = x[i + 1] - x[i] * x[i];
        double u = 1.0 - x[i];
        f += 100.0 * t * t + u * u;
        if (grad != NULL) {
            grad[i] += -400.0 * x[i] * t - 2.0 * u;
            grad[i + 1] += 200.0 * t;
        }
    }
    return f;
}

/* Counts and times the calls of an objective; the time of the calls that
 * computed a gradient is the derivative time. */
typedef struct timed {
    nlopt_func f;
    void *data;
    unsigned long calls, gradients;
    double seconds;
} timed;

static double timed_objective(unsigned n, const double *x, double *grad,
                              void *data)
{
    timed *t = data;
    double start = now();
    double value = t->f(n, x, grad, t->data);
    t->calls++;
    if (grad != NULL) {
        t->gradients++;
        t->seconds += now() - start;
    }
    return value;
}

typedef struct run {
    timed timing;
    double fmin, error;
    nlopt_result result;
} run;

static int minimise(nlopt_func f, void *data, jac_nlopt *state, run *out)
{
    nlopt_opt opt = nlopt_create(NLOPT_LD_LBFGS, N);
    if (opt == NULL)
        return 0;
    if (state != NULL)
        state->opt = opt; /* stopped on a failed evaluation */
    out->timing = (timed){.f = f, .data = data};
    nlopt_set_min_objective(opt, timed_objective, &out->timing);
    nlopt_set_ftol_rel(opt, 1e-15);
    nlopt_set_xtol_rel(opt, 1e-10);
    nlopt_set_maxeval(opt, 100000);
    double *x = calloc(N, sizeof *x); /* start at 0 */
    if (x == NULL) {
        nlopt_destroy(opt);
        return 0;
    }
    out->fmin = NAN;
    out->result = nlopt_optimize(opt, x, &out->fmin);
    out->error = 0.0;
    for (int i = 0; i < N; i++)
        out->error = fmax(out->error, fabs(x[i] - 1.0));
    free(x);
    nlopt_destroy(opt);
    if (state != NULL)
        state->opt = NULL;
    return 1;
}

enum { REPEATS = 2000 };

/* Seconds per gradient of each callback over REPEATS calls at one point. */
static int steady_gradient(jac_nlopt *state, double seconds[2])
{
    double *x = malloc(2 * N * sizeof *x);
    if (x == NULL)
        return 0;
    double *grad = x + N, sink = 0.0;
    for (int i = 0; i < N; i++)
        x[i] = 0.5 + 0.25 * sin((double)i);
    nlopt_func f[2] = {jac_nlopt_objective, rosenbrock_hand};
    void *data[2] = {state, NULL};
    for (int k = 0; k < 2; k++) {
        sink += f[k](N, x, grad, data[k]); /* warm */
        double start = now();
        for (int r = 0; r < REPEATS; r++)
            sink += f[k](N, x, grad, data[k]) + grad[r % N];
        seconds[k] = (now() - start) / REPEATS;
    }
    free(x);
    return isfinite(sink) && state->status == JAC_OK;
}

static int rosenbrock(void)
{
    jac_program *program = record_rosenbrock();
    if (program == NULL)
        return 0;
    jac_nlopt state = {.program = program};
    run ours, hand;
    int ok = minimise(jac_nlopt_objective, &state, &state, &ours) &&
             minimise(rosenbrock_hand, NULL, NULL, &hand);
    /* The steady cost of one gradient, away from the noise of 58 calls
     * and of the first call (which sets up the program's workspace). */
    double steady[2] = {0.0, 0.0};
    if (ok)
        ok = steady_gradient(&state, steady);
    jac_program_free(program);
    if (!ok) {
        fprintf(stderr, "nlopt_rosenbrock: out of memory\n");
        return 0;
    }
    if (state.status != JAC_OK) {
        fprintf(stderr, "nlopt_rosenbrock: %s\n", state.message);
        return 0;
    }

    printf("Rosenbrock, n = %d, NLOPT_LD_LBFGS from x = 0\n\n", N);
    printf("%-12s %8s %10s %12s %10s %14s %12s\n", "derivatives", "result",
           "evals", "final f", "max|x-1|", "deriv time ms", "us per grad");
    const run *runs[2] = {&ours, &hand};
    const char *names[2] = {"recorded", "hand-written"};
    for (int k = 0; k < 2; k++) {
        const run *r = runs[k];
        printf("%-12s %8d %10lu %12.3e %10.2e %14.3f %12.2f\n", names[k],
               (int)r->result, r->timing.calls, r->fmin, r->error,
               1e3 * r->timing.seconds,
               1e6 * r->timing.seconds / (double)r->timing.gradients);
    }
    double ratio = (ours.timing.seconds / (double)ours.timing.gradients) /
                   (hand.timing.seconds / (double)hand.timing.gradients);
    printf("\nderivative time per gradient, recorded / hand-written: %.2f\n",
           ratio);
    printf("steady state, %d gradients each: recorded %.2f us, hand-written "
           "%.2f us, ratio %.2f\n",
           REPEATS, 1e6 * steady[0], 1e6 * steady[1], steady[0] / steady[1]);

    int pass = 1;
    for (int k = 0; k < 2; k++)
        if (runs[k]->result < 0 || !(runs[k]->error < 1e-4)) {
            fprintf(stderr, "FAIL: %s did not reach x = 1 (result %d)\n",
                    names[k], (int)runs[k]->result);
            pass = 0;
        }
    /* The same iterations, but for a few where the last bits of the two
     * gradients lead L-BFGS to a different step near the end. */
    unsigned long a = ours.timing.calls, b = hand.timing.calls;
    unsigned long diff = a > b ? a - b : b - a;
    if (diff > 5 + (a > b ? a : b) / 20) {
        fprintf(stderr, "FAIL: %lu evaluations against %lu\n", a, b);
        pass = 0;
    }
    return pass;
}

/* ------------------------------------------------------------------------ */
/* NLopt's tutorial problem, with a recorded vector constraint              */
/* ------------------------------------------------------------------------ */

static int tutorial(void)
{
    jac_ctx *ctx = jac_ctx_new();
    if (ctx == NULL)
        return 0;
    jac_tensor *x = jac_zeros(ctx, 1, (int64_t[]){2});
    jac_tensor *ab[2] = {jac_zeros(ctx, 1, (int64_t[]){2}),
                         jac_zeros(ctx, 1, (int64_t[]){2})};
    jac_program *objective = NULL, *constraint = NULL;
    /* f(x) = sqrt(x1) */
    if (jac_program_begin(ctx, 1, &x, 0, NULL) == JAC_OK) {
        jac_tensor *f =
            jac_sum(ctx, jac_sqrt(ctx, jac_slice(ctx, x, 0, 1, 2, 1)));
        jac_program_end(ctx, 1, &f, 0, &objective);
    }
    /* c_k(x; a, b) = (a_k x0 + b_k)^3 - x1 <= 0 */
    if (jac_program_begin(ctx, 1, &x, 2, ab) == JAC_OK) {
        jac_tensor *x0 = jac_slice(ctx, x, 0, 0, 1, 1);
        jac_tensor *x1 = jac_slice(ctx, x, 0, 1, 2, 1);
        jac_tensor *c =
            jac_sub(ctx,
                    jac_pow_scalar(
                        ctx, jac_add(ctx, jac_mul(ctx, ab[0], x0), ab[1]), 3.0),
                    x1);
        jac_program_end(ctx, 1, &c, 0, &constraint);
    }
    if (objective == NULL || constraint == NULL)
        fprintf(stderr, "nlopt_rosenbrock: recording failed: %s\n",
                jac_errmsg(ctx));
    jac_ctx_free(ctx);
    if (objective == NULL || constraint == NULL) {
        jac_program_free(objective);
        jac_program_free(constraint);
        return 0;
    }

    static const double a[2] = {2.0, -1.0}, b[2] = {0.0, 1.0};
    const double *params[2] = {a, b};
    nlopt_opt opt = nlopt_create(NLOPT_LD_MMA, 2);
    jac_nlopt fstate = {.program = objective, .opt = opt};
    jac_nlopt cstate = {.program = constraint, .params = params, .opt = opt};
    double lower[2] = {-HUGE_VAL, 0.0}, tol[2] = {1e-10, 1e-10};
    nlopt_set_lower_bounds(opt, lower);
    nlopt_set_min_objective(opt, jac_nlopt_objective, &fstate);
    nlopt_add_inequality_mconstraint(opt, 2, jac_nlopt_mconstraint, &cstate,
                                     tol);
    nlopt_set_xtol_rel(opt, 1e-10);
    double xs[2] = {1.234, 5.678}, fmin = NAN;
    nlopt_result result = nlopt_optimize(opt, xs, &fmin);
    nlopt_destroy(opt);
    jac_program_free(objective);
    jac_program_free(constraint);

    printf("\nNLopt tutorial, NLOPT_LD_MMA with a recorded vector "
           "constraint\n");
    printf("result %d after %lu evaluations: x = (%.9f, %.9f), f = %.9f\n",
           (int)result, fstate.evaluations, xs[0], xs[1], fmin);
    printf("known optimum:                 x = (%.9f, %.9f), f = %.9f\n",
           1.0 / 3.0, 8.0 / 27.0, sqrt(8.0 / 27.0));
    if (fstate.status != JAC_OK || cstate.status != JAC_OK) {
        fprintf(stderr, "FAIL: %s%s\n", fstate.message, cstate.message);
        return 0;
    }
    if (result < 0 || !(fabs(xs[0] - 1.0 / 3.0) < 1e-6) ||
        !(fabs(xs[1] - 8.0 / 27.0) < 1e-6) ||
        !(fabs(fmin - sqrt(8.0 / 27.0)) < 1e-6)) {
        fprintf(stderr, "FAIL: not the known optimum\n");
        return 0;
    }
    return 1;
}

int main(void)
{
    int ok = rosenbrock();
    ok = tutorial() && ok;
    if (!ok)
        return 1;
    printf("\nboth answers check\n");
    return 0;
}
