/*
 * IPOPT with derivatives from one recorded function, through the adapter
 * of jacobian_ipopt.h, against the same solver driven by hand-written
 * derivatives, on two problems of IPOPT's own test set:
 *
 * 1. HS071 (Hock and Schittkowski, problem 71):
 *
 *      min  x1 x4 (x1 + x2 + x3) + x3
 *      s.t. x1 x2 x3 x4 >= 25,  x1^2 + x2^2 + x3^2 + x4^2 = 40,
 *           1 <= x <= 5,  from x = (1, 5, 5, 1);
 *
 *    optimum f* = 17.0140173 at x* = (1, 4.7429996, 3.8211500, 1.3794083).
 *
 * 2. LuksanVlcek1 (Luksan and Vlcek, equality constrained problem 5.1),
 *    n variables (default 10000, or the first argument), n - 2 equality
 *    constraints:
 *
 *      min  sum_{i<n-1} 100 (x_i^2 - x_{i+1})^2 + (x_i - 1)^2
 *      s.t. 3 x_{i+1}^3 + 2 x_{i+2} - 5
 *             + sin(x_{i+1} - x_{i+2}) sin(x_{i+1} + x_{i+2})
 *             + 4 x_{i+1} - x_i exp(x_i - x_{i+1}) - 3 = 0,  i < n - 2,
 *
 *    free variables, from x_i = -1.2 for even i (counting from 0), 1 for
 *    odd i.
 *
 * Each problem is solved twice with the same options: with the recorded
 * function through the adapter's callbacks, and with hand-written
 * derivatives (below, from the formulas). Both must converge to the same
 * point in the same number of iterations (HS071: the known optimum). The
 * time of the derivative callbacks (eval_grad_f, eval_jac_g, eval_h) is
 * printed for both, from the same run.
 *
 * Exits 1 when an answer is off.
 *
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include <jacobian.h>
#include <jacobian_ipopt.h>

#include <IpStdCInterface.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ------------------------------------------------------------------------ */
/* Timing: the callbacks of either kind, wrapped                            */
/* ------------------------------------------------------------------------ */

/* The five callbacks of a problem and their user data, with the time spent
 * in the derivative callbacks and the iterations IPOPT reported. */
typedef struct timed {
    Eval_F_CB f;
    Eval_Grad_F_CB grad_f;
    Eval_G_CB g;
    Eval_Jac_G_CB jac_g;
    Eval_H_CB h;
    void *data;
    double seconds; /* in grad_f, jac_g and h */
    int iterations;
} timed;

static Bool timed_f(Index n, Number *x, Bool new_x, Number *f, UserDataPtr u)
{
    timed *t = u;
    return t->f(n, x, new_x, f, t->data);
}

static Bool timed_g(Index n, Number *x, Bool new_x, Index m, Number *g,
                    UserDataPtr u)
{
    timed *t = u;
    return t->g(n, x, new_x, m, g, t->data);
}

static Bool timed_grad_f(Index n, Number *x, Bool new_x, Number *grad,
                         UserDataPtr u)
{
    timed *t = u;
    double start = now();
    Bool ok = t->grad_f(n, x, new_x, grad, t->data);
    t->seconds += now() - start;
    return ok;
}

static Bool timed_jac_g(Index n, Number *x, Bool new_x, Index m, Index nele,
                        Index *iRow, Index *jCol, Number *values, UserDataPtr u)
{
    timed *t = u;
    double start = now();
    Bool ok = t->jac_g(n, x, new_x, m, nele, iRow, jCol, values, t->data);
    t->seconds += now() - start;
    return ok;
}

static Bool timed_h(Index n, Number *x, Bool new_x, Number obj_factor, Index m,
                    Number *lambda, Bool new_lambda, Index nele, Index *iRow,
                    Index *jCol, Number *values, UserDataPtr u)
{
    timed *t = u;
    double start = now();
    Bool ok = t->h(n, x, new_x, obj_factor, m, lambda, new_lambda, nele, iRow,
                   jCol, values, t->data);
    t->seconds += now() - start;
    return ok;
}

static Bool count_iterations(Index alg_mod, Index iter_count, Number obj_value,
                             Number inf_pr, Number inf_du, Number mu,
                             Number d_norm, Number regularization_size,
                             Number alpha_du, Number alpha_pr, Index ls_trials,
                             UserDataPtr u)
{
    (void)alg_mod, (void)obj_value, (void)inf_pr, (void)inf_du, (void)mu;
    (void)d_norm, (void)regularization_size, (void)alpha_du, (void)alpha_pr;
    (void)ls_trials;
    ((timed *)u)->iterations = iter_count;
    return TRUE;
}

/* A problem: sizes, bounds and start. */
typedef struct problem {
    const char *name;
    Index n, m, nele_jac, nele_hess;
    Number *x_L, *x_U, *g_L, *g_U, *x0;
} problem;

/* The outcome of one solve. */
typedef struct run {
    timed timing;
    enum ApplicationReturnStatus result;
    double f, seconds;
    double *x; /* n */
} run;

/* Solves p with the callbacks of t (sizes of the structures from p) from
 * p's start; out->x must hold n values. */
static int solve(const problem *p, timed *t, run *out)
{
    IpoptProblem nlp = CreateIpoptProblem(
        p->n, p->x_L, p->x_U, p->m, p->g_L, p->g_U, p->nele_jac, p->nele_hess,
        0, timed_f, timed_g, timed_grad_f, timed_jac_g, timed_h);
    if (nlp == NULL)
        return 0;
    AddIpoptIntOption(nlp, "print_level", 0);
    AddIpoptStrOption(nlp, "sb", "yes"); /* no banner */
    AddIpoptNumOption(nlp, "tol", 1e-9);
    SetIntermediateCallback(nlp, count_iterations);
    memcpy(out->x, p->x0, (size_t)p->n * sizeof(double));
    t->seconds = 0.0;
    t->iterations = -1;
    double start = now();
    out->result = IpoptSolve(nlp, out->x, NULL, &out->f, NULL, NULL, NULL, t);
    out->seconds = now() - start;
    out->timing = *t;
    FreeIpoptProblem(nlp);
    return 1;
}

enum { REPEATS = 100 };

/* Seconds per iteration's derivatives (eval_grad_f at a new x, eval_jac_g
 * and eval_h there) of the adapter's callbacks and hand's, each over
 * REPEATS calls at x (lambda 1, obj_factor 1). */
static int steady_derivatives(const problem *p, const timed *adapter,
                              const timed *hand, const double *x,
                              double seconds[2])
{
    size_t n = (size_t)p->n, m = (size_t)p->m;
    size_t count = n + m + (size_t)p->nele_jac + (size_t)p->nele_hess + n;
    double *buffer = malloc(count * sizeof(double));
    if (buffer == NULL)
        return 0;
    double *xs = buffer, *lambda = xs + n, *grad = lambda + m;
    double *jac = grad + n, *hess = jac + p->nele_jac;
    memcpy(xs, x, n * sizeof(double));
    for (size_t i = 0; i < m; i++)
        lambda[i] = 1.0;
    const timed *t[2] = {adapter, hand};
    int ok = 1;
    for (int k = 0; k < 2; k++) {
        double start = 0.0;
        for (int r = -1; r < REPEATS; r++) {
            if (r == 0) /* the first call, which may set up, not timed */
                start = now();
            ok = ok && t[k]->grad_f(p->n, xs, TRUE, grad, t[k]->data) &&
                 t[k]->jac_g(p->n, xs, FALSE, p->m, p->nele_jac, NULL, NULL,
                             jac, t[k]->data) &&
                 t[k]->h(p->n, xs, FALSE, 1.0, p->m, lambda, TRUE, p->nele_hess,
                         NULL, NULL, hess, t[k]->data);
        }
        seconds[k] = (now() - start) / REPEATS;
    }
    free(buffer);
    return ok;
}

/* Solves p through the adapter (state's program) and with the hand-written
 * callbacks of hand, prints both and compares them. */
static int compare(problem *p, jac_ipopt *state, timed hand, double x_tol)
{
    run ours = {.x = malloc((size_t)p->n * sizeof(double))};
    run theirs = {.x = malloc((size_t)p->n * sizeof(double))};
    double setup = now();
    Index n = 0, m = 0, nele_jac = 0, nele_hess = 0;
    jac_status status = jac_ipopt_prepare(state, &n, &m, &nele_jac, &nele_hess);
    setup = now() - setup;
    timed adapter = {.f = jac_ipopt_eval_f,
                     .grad_f = jac_ipopt_eval_grad_f,
                     .g = jac_ipopt_eval_g,
                     .jac_g = jac_ipopt_eval_jac_g,
                     .h = jac_ipopt_eval_h,
                     .data = state};
    /* The recorded problem's structures have the hand-written ones'
     * counts: the same sparsity. */
    int ok = ours.x != NULL && theirs.x != NULL && status == JAC_OK &&
             n == p->n && m == p->m && nele_jac == p->nele_jac &&
             nele_hess == p->nele_hess;
    problem mine = *p;
    mine.nele_jac = nele_jac;
    mine.nele_hess = nele_hess;
    /* A first solve, not timed, so that neither timed one pays for
     * loading IPOPT's linear solver. */
    if (ok)
        ok = solve(p, &hand, &theirs) && solve(&mine, &adapter, &ours) &&
             solve(p, &hand, &theirs);
    unsigned long calls[3] = {state->evaluations, state->jacobians,
                              state->hessians};
    double steady[2] = {0.0, 0.0};
    if (ok)
        ok = steady_derivatives(p, &adapter, &hand, ours.x, steady);
    if (!ok) {
        fprintf(stderr, "ipopt_problems: %s: %s\n", p->name,
                state->status != JAC_OK ? state->message
                                        : "out of memory, or not the "
                                          "hand-written structures' sizes");
        free(ours.x);
        free(theirs.x);
        return 0;
    }

    printf("%s: n = %d, m = %d; Jacobian of g %d nonzeros, lower triangle "
           "of the Hessian %d\n",
           p->name, p->n, p->m, nele_jac, nele_hess);
    printf("adapter: plans made in %.2f ms; in the solve %lu evaluations, "
           "%lu sparse Jacobians, %lu sparse Hessians\n",
           1e3 * setup, calls[0], calls[1], calls[2]);
    printf("%-12s %6s %6s %20s %12s %14s\n", "derivatives", "status", "iter",
           "final f", "total ms", "deriv. ms");
    const run *runs[2] = {&ours, &theirs};
    const char *names[2] = {"recorded", "hand-written"};
    for (int k = 0; k < 2; k++)
        printf("%-12s %6d %6d %20.12f %12.2f %14.3f\n", names[k],
               (int)runs[k]->result, runs[k]->timing.iterations, runs[k]->f,
               1e3 * runs[k]->seconds, 1e3 * runs[k]->timing.seconds);
    double dx = 0.0;
    for (Index i = 0; i < p->n; i++)
        dx = fmax(dx, fabs(ours.x[i] - theirs.x[i]));
    printf("derivative time, recorded / hand-written: %.2f; max |x - x'| = "
           "%.2e\n",
           ours.timing.seconds / theirs.timing.seconds, dx);
    printf("steady state, grad_f + jac_g + h at x*, %d times: recorded %.2f "
           "us, hand-written %.3f us, ratio %.2f\n\n",
           REPEATS, 1e6 * steady[0], 1e6 * steady[1], steady[0] / steady[1]);

    int pass = 1;
    for (int k = 0; k < 2; k++)
        if (runs[k]->result != Solve_Succeeded) {
            fprintf(stderr, "FAIL: %s, %s: IPOPT returned %d\n", p->name,
                    names[k], (int)runs[k]->result);
            pass = 0;
        }
    if (state->status != JAC_OK) {
        fprintf(stderr, "FAIL: %s: %s\n", p->name, state->message);
        pass = 0;
    }
    if (ours.timing.iterations != theirs.timing.iterations) {
        fprintf(stderr, "FAIL: %s: %d iterations against %d\n", p->name,
                ours.timing.iterations, theirs.timing.iterations);
        pass = 0;
    }
    if (!(dx < x_tol) ||
        !(fabs(ours.f - theirs.f) <= 1e-9 * fmax(1.0, fabs(theirs.f)))) {
        fprintf(stderr, "FAIL: %s: the solutions differ (f %.12g, %.12g)\n",
                p->name, ours.f, theirs.f);
        pass = 0;
    }
    if (pass)
        memcpy(p->x0, ours.x, (size_t)p->n * sizeof(double));
    free(ours.x);
    free(theirs.x);
    return pass;
}

/* ------------------------------------------------------------------------ */
/* HS071                                                                    */
/* ------------------------------------------------------------------------ */

/* One program of x (4): f, and g = (x1 x2 x3 x4, sum x^2). */
static jac_program *record_hs071(void)
{
    jac_ctx *ctx = jac_ctx_new();
    if (ctx == NULL)
        return NULL;
    jac_tensor *x = jac_zeros(ctx, 1, (int64_t[]){4});
    jac_program *program = NULL;
    if (jac_program_begin(ctx, 1, &x, 0, NULL) == JAC_OK) {
        jac_tensor *xi[4];
        for (int i = 0; i < 4; i++)
            xi[i] = jac_slice(ctx, x, 0, i, i + 1, 1);
        jac_tensor *s = jac_add(ctx, jac_add(ctx, xi[0], xi[1]), xi[2]);
        jac_tensor *f =
            jac_add(ctx, jac_mul(ctx, jac_mul(ctx, xi[0], xi[3]), s), xi[2]);
        jac_tensor *g[2] = {jac_mul(ctx, jac_mul(ctx, xi[0], xi[1]),
                                    jac_mul(ctx, xi[2], xi[3])),
                            jac_reshape(ctx, jac_sum(ctx, jac_square(ctx, x)),
                                        1, (int64_t[]){1})};
        jac_tensor *outputs[2] = {f, jac_concat(ctx, 2, g, 0)};
        jac_program_end(ctx, 2, outputs, 0, &program);
    }
    if (program == NULL)
        fprintf(stderr, "ipopt_problems: recording HS071 failed: %s\n",
                jac_errmsg(ctx));
    jac_ctx_free(ctx);
    return program;
}

static Bool hs071_f(Index n, Number *x, Bool new_x, Number *f, UserDataPtr u)
{
    (void)n, (void)new_x, (void)u;
    *f = x[0] * x[3] * (x[0] + x[1] + x[2]) + x[2];
    return TRUE;
}

static Bool hs071_grad_f(Index n, Number *x, Bool new_x, Number *grad,
                         UserDataPtr u)
{
    (void)n, (void)new_x, (void)u;
    double s = x[0] + x[1] + x[2];
    grad[0] = x[3] * s + x[0] * x[3];
    grad[1] = x[0] * x[3];
    grad[2] = x[0] * x[3] + 1.0;
    grad[3] = x[0] * s;
    return TRUE;
}

static Bool hs071_g(Index n, Number *x, Bool new_x, Index m, Number *g,
                    UserDataPtr u)
{
    (void)n, (void)new_x, (void)m, (void)u;
    g[0] = x[0] * x[1] * x[2] * x[3];
    g[1] = x[0] * x[0] + x[1] * x[1] + x[2] * x[2] + x[3] * x[3];
    return TRUE;
}

/* Both rows dense, by rows. */
static Bool hs071_jac_g(Index n, Number *x, Bool new_x, Index m, Index nele,
                        Index *iRow, Index *jCol, Number *values, UserDataPtr u)
{
    (void)n, (void)new_x, (void)m, (void)nele, (void)u;
    if (values == NULL) {
        for (Index k = 0; k < 8; k++) {
            iRow[k] = k / 4;
            jCol[k] = k % 4;
        }
        return TRUE;
    }
    values[0] = x[1] * x[2] * x[3];
    values[1] = x[0] * x[2] * x[3];
    values[2] = x[0] * x[1] * x[3];
    values[3] = x[0] * x[1] * x[2];
    for (int j = 0; j < 4; j++)
        values[4 + j] = 2.0 * x[j];
    return TRUE;
}

/* The lower triangle by rows: (0,0), (1,0), (1,1), (2,0), ..., (3,3). */
static Bool hs071_h(Index n, Number *x, Bool new_x, Number sigma, Index m,
                    Number *lambda, Bool new_lambda, Index nele, Index *iRow,
                    Index *jCol, Number *values, UserDataPtr u)
{
    (void)n, (void)new_x, (void)m, (void)new_lambda, (void)nele, (void)u;
    if (values == NULL) {
        Index k = 0;
        for (Index i = 0; i < 4; i++)
            for (Index j = 0; j <= i; j++) {
                iRow[k] = i;
                jCol[k] = j;
                k++;
            }
        return TRUE;
    }
    double l1 = lambda[0], l2 = lambda[1];
    values[0] = sigma * 2.0 * x[3] + l2 * 2.0;       /* (0,0) */
    values[1] = sigma * x[3] + l1 * x[2] * x[3];     /* (1,0) */
    values[2] = l2 * 2.0;                            /* (1,1) */
    values[3] = sigma * x[3] + l1 * x[1] * x[3];     /* (2,0) */
    values[4] = l1 * x[0] * x[3];                    /* (2,1) */
    values[5] = l2 * 2.0;                            /* (2,2) */
    values[6] = sigma * (2.0 * x[0] + x[1] + x[2]) + /* (3,0) */
                l1 * x[1] * x[2];
    values[7] = sigma * x[0] + l1 * x[0] * x[2]; /* (3,1) */
    values[8] = sigma * x[0] + l1 * x[0] * x[1]; /* (3,2) */
    values[9] = l2 * 2.0;                        /* (3,3) */
    return TRUE;
}

static int hs071(void)
{
    jac_program *program = record_hs071();
    if (program == NULL)
        return 0;
    Number x_L[4] = {1, 1, 1, 1}, x_U[4] = {5, 5, 5, 5};
    Number g_L[2] = {25, 40}, g_U[2] = {2e19, 40};
    Number x0[4] = {1, 5, 5, 1};
    problem p = {.name = "HS071",
                 .n = 4,
                 .m = 2,
                 .nele_jac = 8,
                 .nele_hess = 10,
                 .x_L = x_L,
                 .x_U = x_U,
                 .g_L = g_L,
                 .g_U = g_U,
                 .x0 = x0};
    timed hand = {.f = hs071_f,
                  .grad_f = hs071_grad_f,
                  .g = hs071_g,
                  .jac_g = hs071_jac_g,
                  .h = hs071_h};
    jac_ipopt state = {.program = program};
    int ok = compare(&p, &state, hand, 1e-7);
    jac_ipopt_release(&state);
    jac_program_free(program);
    /* The known optimum (x0 now holds the solution). */
    static const double best[4] = {1.0, 4.7429996, 3.8211500, 1.3794083};
    for (int i = 0; ok && i < 4; i++)
        if (!(fabs(x0[i] - best[i]) < 1e-6)) {
            fprintf(stderr, "FAIL: HS071: x[%d] = %.9f, not %.7f\n", i, x0[i],
                    best[i]);
            ok = 0;
        }
    if (ok)
        printf("HS071: x = (%.7f, %.7f, %.7f, %.7f), the known optimum\n\n",
               x0[0], x0[1], x0[2], x0[3]);
    return ok;
}

/* ------------------------------------------------------------------------ */
/* LuksanVlcek1                                                             */
/* ------------------------------------------------------------------------ */

/* One program of x (n): f, and the n - 2 constraints. */
static jac_program *record_luksan(int64_t n)
{
    jac_ctx *ctx = jac_ctx_new();
    if (ctx == NULL)
        return NULL;
    jac_tensor *x = jac_zeros(ctx, 1, (int64_t[]){n});
    jac_program *program = NULL;
    if (jac_program_begin(ctx, 1, &x, 0, NULL) == JAC_OK) {
        jac_tensor *head = jac_slice(ctx, x, 0, 0, n - 1, 1);
        jac_tensor *tail = jac_slice(ctx, x, 0, 1, n, 1);
        jac_tensor *t = jac_sub(ctx, jac_square(ctx, head), tail);
        jac_tensor *f = jac_sum(
            ctx, jac_add(ctx, jac_mul_scalar(ctx, jac_square(ctx, t), 100.0),
                         jac_square(ctx, jac_sub_scalar(ctx, head, 1.0))));
        jac_tensor *u = jac_slice(ctx, x, 0, 0, n - 2, 1);
        jac_tensor *a = jac_slice(ctx, x, 0, 1, n - 1, 1);
        jac_tensor *b = jac_slice(ctx, x, 0, 2, n, 1);
        jac_tensor *c =
            jac_add(ctx, jac_mul_scalar(ctx, jac_pow_scalar(ctx, a, 3.0), 3.0),
                    jac_mul_scalar(ctx, b, 2.0));
        c = jac_add(ctx, c,
                    jac_mul(ctx, jac_sin(ctx, jac_sub(ctx, a, b)),
                            jac_sin(ctx, jac_add(ctx, a, b))));
        c = jac_add(ctx, c, jac_mul_scalar(ctx, a, 4.0));
        c = jac_sub(ctx, c, jac_mul(ctx, u, jac_exp(ctx, jac_sub(ctx, u, a))));
        c = jac_sub_scalar(ctx, c, 8.0); /* - 5 ... - 3 */
        jac_tensor *outputs[2] = {f, c};
        jac_program_end(ctx, 2, outputs, 0, &program);
    }
    if (program == NULL)
        fprintf(stderr, "ipopt_problems: recording LuksanVlcek1 failed: %s\n",
                jac_errmsg(ctx));
    jac_ctx_free(ctx);
    return program;
}

static Bool luksan_f(Index n, Number *x, Bool new_x, Number *f, UserDataPtr u)
{
    (void)new_x, (void)u;
    double sum = 0.0;
    for (Index i = 0; i + 1 < n; i++) {
        double t = x[i] * x[i] - x[i + 1], v = x[i] - 1.0;
        sum += 100.0 * t * t + v * v;
    }
    *f = sum;
    return TRUE;
}

static Bool luksan_grad_f(Index n, Number *x, Bool new_x, Number *grad,
                          UserDataPtr u)
{
    (void)new_x, (void)u;
    for (Index i = 0; i < n; i++)
        grad[i] = 0.0;
    for (Index i = 0; i + 1 < n; i++) {
        double t = x[i] * x[i] - x[i + 1];
        grad[i] += 400.0 * x[i] * t + 2.0 * (x[i] - 1.0);
        grad[i + 1] += -200.0 * t;
    }
    return TRUE;
}

static Bool luksan_g(Index n, Number *x, Bool new_x, Index m, Number *g,
                     UserDataPtr u)
{
    (void)n, (void)new_x, (void)u;
    for (Index i = 0; i < m; i++) {
        double v = x[i], a = x[i + 1], b = x[i + 2];
        g[i] = 3.0 * a * a * a + 2.0 * b - 5.0 + sin(a - b) * sin(a + b) +
               4.0 * a - v * exp(v - a) - 3.0;
    }
    return TRUE;
}

/* Row i: columns i, i + 1, i + 2. */
static Bool luksan_jac_g(Index n, Number *x, Bool new_x, Index m, Index nele,
                         Index *iRow, Index *jCol, Number *values,
                         UserDataPtr u)
{
    (void)n, (void)new_x, (void)nele, (void)u;
    if (values == NULL) {
        for (Index i = 0; i < m; i++)
            for (Index k = 0; k < 3; k++) {
                iRow[3 * i + k] = i;
                jCol[3 * i + k] = i + k;
            }
        return TRUE;
    }
    for (Index i = 0; i < m; i++) {
        double v = x[i], a = x[i + 1], b = x[i + 2], e = exp(v - a);
        double sm = sin(a - b), sp = sin(a + b);
        double cm = cos(a - b), cp = cos(a + b);
        values[3 * i] = -(1.0 + v) * e;
        values[3 * i + 1] = 9.0 * a * a + cm * sp + sm * cp + 4.0 + v * e;
        values[3 * i + 2] = 2.0 - cm * sp + sm * cp;
    }
    return TRUE;
}

/* The lower triangle is tridiagonal (no term of a constraint has both x_i
 * and x_{i+2}): row j holds (j, j-1) then (j, j). */
static Bool luksan_h(Index n, Number *x, Bool new_x, Number sigma, Index m,
                     Number *lambda, Bool new_lambda, Index nele, Index *iRow,
                     Index *jCol, Number *values, UserDataPtr u)
{
    (void)new_x, (void)new_lambda, (void)nele, (void)u;
    if (values == NULL) {
        Index k = 0;
        for (Index j = 0; j < n; j++) {
            if (j > 0) {
                iRow[k] = j;
                jCol[k++] = j - 1;
            }
            iRow[k] = j;
            jCol[k++] = j;
        }
        return TRUE;
    }
    /* values[2 j - 1] is (j, j - 1), values[2 j] is (j, j). */
    for (Index k = 0; k < 2 * n - 1; k++)
        values[k] = 0.0;
    for (Index i = 0; i + 1 < n; i++) {
        values[2 * i] +=
            sigma * (1200.0 * x[i] * x[i] - 400.0 * x[i + 1] + 2.0);
        values[2 * i + 1] += sigma * -400.0 * x[i];
        values[2 * i + 2] += sigma * 200.0;
    }
    for (Index i = 0; i < m; i++) {
        double v = x[i], a = x[i + 1], b = x[i + 2], e = exp(v - a);
        double sm = sin(a - b), sp = sin(a + b);
        double cm = cos(a - b), cp = cos(a + b);
        double l = lambda[i];
        values[2 * i] += l * -(2.0 + v) * e;    /* (i,i) */
        values[2 * i + 1] += l * (1.0 + v) * e; /* (i+1,i) */
        values[2 * i + 2] +=                    /* (i+1,i+1) */
            l * (18.0 * a + 2.0 * (cm * cp - sm * sp) - v * e);
        values[2 * i + 4] += l * -2.0 * (sm * sp + cm * cp); /* (i+2,i+2) */
    }
    return TRUE;
}

static int luksan(Index n)
{
    jac_program *program = record_luksan(n);
    if (program == NULL)
        return 0;
    size_t un = (size_t)n;
    double *buffer = malloc((4 * un + 2 * (un - 2)) * sizeof(double));
    if (buffer == NULL) {
        jac_program_free(program);
        return 0;
    }
    Number *x_L = buffer, *x_U = x_L + un, *x0 = x_U + un;
    Number *g_L = x0 + un, *g_U = g_L + un - 2;
    for (Index i = 0; i < n; i++) {
        x_L[i] = -1e20;
        x_U[i] = 1e20;
        x0[i] = i % 2 == 0 ? -1.2 : 1.0;
    }
    for (Index i = 0; i < n - 2; i++)
        g_L[i] = g_U[i] = 0.0;
    problem p = {.name = "LuksanVlcek1",
                 .n = n,
                 .m = n - 2,
                 .nele_jac = 3 * (n - 2),
                 .nele_hess = 2 * n - 1,
                 .x_L = x_L,
                 .x_U = x_U,
                 .g_L = g_L,
                 .g_U = g_U,
                 .x0 = x0};
    timed hand = {.f = luksan_f,
                  .grad_f = luksan_grad_f,
                  .g = luksan_g,
                  .jac_g = luksan_jac_g,
                  .h = luksan_h};
    /* Acyclic colouring: 2 colours (Hessian-vector products) per Hessian
     * where star colouring needs 3. */
    jac_ipopt state = {.program = program,
                       .hessian_method = JAC_SPARSE_ACYCLIC};
    int ok = compare(&p, &state, hand, 1e-6);
    jac_ipopt_release(&state);
    jac_program_free(program);
    free(buffer);
    return ok;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 10000;
    if (n < 3 || n > 10000000) {
        fprintf(stderr, "usage: ipopt_problems [n >= 3 for LuksanVlcek1]\n");
        return 2;
    }
    int ok = hs071();
    ok = luksan((Index)n) && ok;
    if (!ok)
        return 1;
    printf("every answer checks\n");
    return 0;
}
