/*
 * robertson: the stiff Robertson kinetics by implicit Euler with Newton's
 * method, the Jacobian of every Newton step by replaying a recorded
 * function.
 *
 *   y1' = -0.04 y1 + 1e4 y2 y3
 *   y2' =  0.04 y1 - 1e4 y2 y3 - 3e7 y2^2
 *   y3' =                        3e7 y2^2,     y(0) = (1, 0, 0), t in [0, 40]
 *
 * The rates span nine orders of magnitude: an explicit method would need
 * steps of about 1e-4 for stability over the whole interval, long after the
 * fast transient has died. An implicit Euler step from y_n with step h
 * solves
 *
 *   r(y; c, h) = y - c - h f(y) = 0,   c = y_n,
 *
 * by Newton's method, whose matrix dr/dy = I - h df/dy changes with y and h.
 *
 * The residual is recorded once, with y as the input and c and h as
 * parameters (arguments that are not differentiated and change from call to
 * call). Each Newton iteration then gets r and I - h df/dy in one call,
 * jac_program_jacobian, into plain arrays, and solves the 3 x 3 system by LU
 * with partial pivoting: no tensor is made and nothing is recorded or
 * allocated per step.
 *
 * The step size is adaptive, by step doubling: one step of h and two of
 * h / 2; their difference estimates the error, and the extrapolation
 * 2 y_{h/2} - y_h (second order, and still L-stable) is kept. Every Newton
 * update preserves y1 + y2 + y3 exactly (the columns of df/dy add up to
 * zero), so the total may drift only by rounding; the program checks that,
 * and checks its values against those of SUNDIALS' cvRoberts_dns example.
 *
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include <jacobian.h>

#include <math.h>
#include <stdio.h>
#include <time.h>

/* Error control: a component's error may be atol[i] + RTOL |y_i|. */
static const double RTOL = 1e-6;
static const double ATOL[3] = {1e-10, 1e-14, 1e-10};
/* Newton stops when the update is this small in the same weights. */
static const double NEWTON_TOL = 1e-6;
enum { NEWTON_MAX = 8 };

/* The reference values (cvRoberts_dns) and the check's tolerances. */
static const double T_OUT[3] = {0.4, 4.0, 40.0};
static const double REFERENCE[3][3] = {
    {9.8517e-01, 3.3864e-05, 1.4794e-02},
    {9.0553e-01, 2.2406e-05, 9.4452e-02},
    {7.1579e-01, 9.1850e-06, 2.8420e-01},
};
/* Relative, per component: the reference has five digits. */
static const double REFERENCE_RTOL = 1e-3;
/* |y1 + y2 + y3 - 1| at every step. */
static const double MASS_TOL = 1e-10;

/* f(y) with ordinary ops, on the three entries of y. */
static jac_tensor *rhs(jac_ctx *ctx, jac_tensor *y)
{
    jac_tensor *y1 = jac_select(ctx, y, 0, 0);
    jac_tensor *y2 = jac_select(ctx, y, 0, 1);
    jac_tensor *y3 = jac_select(ctx, y, 0, 2);
    jac_tensor *a = jac_mul_scalar(ctx, y1, 0.04);
    jac_tensor *b = jac_mul_scalar(ctx, jac_mul(ctx, y2, y3), 1e4);
    jac_tensor *q = jac_mul_scalar(ctx, jac_square(ctx, y2), 3e7);
    jac_tensor *f[3] = {jac_sub(ctx, b, a), jac_sub(ctx, jac_sub(ctx, a, b), q),
                        q};
    return jac_stack(ctx, 3, f, 0);
}

/* Records r(y; c, h) = y - c - h f(y) once; NULL on failure. */
static jac_program *record_residual(void)
{
    jac_ctx *ctx = jac_ctx_new();
    if (ctx == NULL)
        return NULL;
    const int64_t three[] = {3};
    jac_tensor *y = jac_zeros(ctx, 1, three);
    jac_tensor *params[2] = {jac_zeros(ctx, 1, three), jac_scalar(ctx, 0.0)};
    jac_program *program = NULL;
    if (jac_program_begin(ctx, 1, &y, 2, params) == JAC_OK) {
        jac_tensor *step = jac_mul(ctx, params[1], rhs(ctx, y));
        jac_tensor *r = jac_sub(ctx, jac_sub(ctx, y, params[0]), step);
        jac_program_end(ctx, 1, &r, 0, &program);
    }
    if (program == NULL)
        fprintf(stderr, "robertson: recording failed: %s\n", jac_errmsg(ctx));
    jac_ctx_free(ctx);
    return program;
}

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Solves a x = b for 3 x 3 a (row-major, overwritten); b becomes x. */
static int lu_solve3(double *a, double *b)
{
    for (int k = 0; k < 3; k++) {
        int p = k;
        for (int i = k + 1; i < 3; i++)
            if (fabs(a[i * 3 + k]) > fabs(a[p * 3 + k]))
                p = i;
        if (a[p * 3 + k] == 0.0)
            return 0;
        for (int j = 0; j < 3 && p != k; j++) {
            double t = a[k * 3 + j];
            a[k * 3 + j] = a[p * 3 + j];
            a[p * 3 + j] = t;
        }
        double t = b[k];
        b[k] = b[p];
        b[p] = t;
        for (int i = k + 1; i < 3; i++) {
            double m = a[i * 3 + k] / a[k * 3 + k];
            for (int j = k + 1; j < 3; j++)
                a[i * 3 + j] -= m * a[k * 3 + j];
            b[i] -= m * b[k];
        }
    }
    for (int i = 2; i >= 0; i--) {
        for (int j = i + 1; j < 3; j++)
            b[i] -= a[i * 3 + j] * b[j];
        b[i] /= a[i * 3 + i];
    }
    return 1;
}

/* The solver's state and counters. */
typedef struct solver {
    jac_program *residual;
    long steps, rejected, solves;
    long newton; /* Newton iterations, each one Jacobian by replay */
    double jacobian_seconds;
    jac_status status; /* of the last replay */
} solver;

/* The error of y in the weights of the error control (max norm). */
static double weighted(const double *e, const double *y)
{
    double m = 0.0;
    for (int i = 0; i < 3; i++)
        m = fmax(m, fabs(e[i]) / (ATOL[i] + RTOL * fabs(y[i])));
    return m;
}

/* One implicit Euler step: y with r(y; c, h) = 0, from the guess c.
 * Returns 0 when Newton's method does not converge (or a replay fails). */
static int implicit_euler(solver *s, const double *c, double h, double *y)
{
    double r[3], M[9];
    const double *args[3] = {y, c, &h}; /* the input, then the parameters */
    double *outputs[1] = {r}, *J[1] = {M};
    for (int i = 0; i < 3; i++)
        y[i] = c[i];
    s->solves++;
    for (int it = 0; it < NEWTON_MAX; it++) {
        /* r and M = dr/dy = I - h df/dy at the current y, by replay. */
        double t0 = seconds();
        s->status = jac_program_jacobian(s->residual, args, outputs, J);
        s->jacobian_seconds += seconds() - t0;
        s->newton++;
        if (s->status != JAC_OK)
            return 0;
        for (int i = 0; i < 3; i++)
            r[i] = -r[i];
        if (!lu_solve3(M, r))
            return 0;
        for (int i = 0; i < 3; i++)
            y[i] += r[i];
        if (!(isfinite(y[0]) && isfinite(y[1]) && isfinite(y[2])))
            return 0;
        if (weighted(r, y) < NEWTON_TOL)
            return 1;
    }
    return 0;
}

/* Advances (t, y) to t_end with adaptive steps, starting with *h and
 * leaving there the step to try next. Returns 0 on failure. */
static int integrate(solver *s, double *t, double *y, double t_end, double *h,
                     double *mass_drift)
{
    while (*t < t_end) {
        double step = fmin(*h, t_end - *t), full[3], half[3], two[3], e[3];
        int last = step == t_end - *t;
        int ok = implicit_euler(s, y, step, full) &&
                 implicit_euler(s, y, 0.5 * step, half) &&
                 implicit_euler(s, half, 0.5 * step, two);
        if (s->status != JAC_OK)
            return 0;
        double err = INFINITY;
        if (ok) {
            for (int i = 0; i < 3; i++)
                e[i] = two[i] - full[i];
            err = weighted(e, two);
        }
        if (err <= 1.0) {
            for (int i = 0; i < 3; i++)
                y[i] = 2.0 * two[i] - full[i];
            *t = last ? t_end : *t + step;
            s->steps++;
            *mass_drift = fmax(*mass_drift, fabs(y[0] + y[1] + y[2] - 1.0));
        } else {
            s->rejected++;
        }
        /* The local error of implicit Euler is O(h^2). */
        double grow = err > 0.0 ? 0.9 / sqrt(err) : 4.0;
        *h = step * fmin(4.0, fmax(0.2, grow));
        if (*h < 1e-14) {
            fprintf(stderr, "robertson: step size underflow at t = %g\n", *t);
            return 0;
        }
    }
    return 1;
}

int main(void)
{
    solver s = {.residual = record_residual(), .status = JAC_OK};
    if (s.residual == NULL)
        return 1;
    double t = 0.0, y[3] = {1.0, 0.0, 0.0}, h = 1e-6, mass_drift = 0.0;
    double values[3][3];
    int ok = 1;

    double t0 = seconds();
    printf("Robertson kinetics, implicit Euler with step doubling "
           "(rtol %g)\n\n",
           RTOL);
    printf("%8s  %-11s %-11s %-11s  %s\n", "t", "y1", "y2", "y3",
           "max rel. diff. from cvRoberts_dns");
    for (int k = 0; k < 3 && ok; k++) {
        ok = integrate(&s, &t, y, T_OUT[k], &h, &mass_drift);
        if (!ok)
            break;
        double diff = 0.0;
        for (int i = 0; i < 3; i++) {
            values[k][i] = y[i];
            diff = fmax(diff,
                        fabs(y[i] - REFERENCE[k][i]) / fabs(REFERENCE[k][i]));
        }
        printf("%8.1f  %.5e %.5e %.5e  %.1e\n", t, y[0], y[1], y[2], diff);
        printf("%8s  %.5e %.5e %.5e  (reference)\n", "", REFERENCE[k][0],
               REFERENCE[k][1], REFERENCE[k][2]);
    }
    double elapsed = seconds() - t0;
    if (!ok) {
        if (s.status != JAC_OK)
            fprintf(stderr, "robertson: replay failed: %s\n",
                    jac_program_errmsg());
        else
            fprintf(stderr, "robertson: integration failed\n");
        jac_program_free(s.residual);
        return 1;
    }

    printf("\n%ld steps (%ld rejected), %ld implicit solves, "
           "%ld Newton iterations (%.2f per solve)\n",
           s.steps, s.rejected, s.solves, s.newton,
           (double)s.newton / (double)s.solves);
    printf("%ld Jacobians by replay: %.3f us each, %.1f ms in all; "
           "%.1f us per step, %.1f ms for the whole run\n",
           s.newton, 1e6 * s.jacobian_seconds / (double)s.newton,
           1e3 * s.jacobian_seconds, 1e6 * elapsed / (double)s.steps,
           1e3 * elapsed);
    printf("max |y1 + y2 + y3 - 1| over the steps: %.1e\n", mass_drift);

    /* The checks: the values at t = 40 (and before) against the reference,
     * and the conservation of y1 + y2 + y3. */
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 3; i++)
            if (fabs(values[k][i] - REFERENCE[k][i]) >
                REFERENCE_RTOL * fabs(REFERENCE[k][i])) {
                fprintf(stderr,
                        "robertson: y%d(%g) = %.6e, reference %.6e: off by "
                        "more than %g relative\n",
                        i + 1, T_OUT[k], values[k][i], REFERENCE[k][i],
                        REFERENCE_RTOL);
                ok = 0;
            }
    if (mass_drift > MASS_TOL) {
        fprintf(stderr,
                "robertson: y1 + y2 + y3 drifted from 1 by %.1e (> %g)\n",
                mass_drift, MASS_TOL);
        ok = 0;
    }
    printf("%s\n", ok ? "agrees with the reference within 1e-3 and conserves "
                        "y1 + y2 + y3 within 1e-10"
                      : "FAILED");
    jac_program_free(s.residual);
    return ok ? 0 : 1;
}
