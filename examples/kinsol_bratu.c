/*
 * KINSOL on the two-dimensional Bratu problem with the sparse Jacobian
 * from a recorded residual, through the adapter of jacobian_sundials.h,
 * against the same solve with a hand-written Jacobian.
 *
 *   -(u_xx + u_yy) = lambda exp(u) on the unit square, u = 0 on its edges,
 *
 * on an N x N grid of interior points (h = 1 / (N + 1), lambda = 6), with
 * the five-point Laplacian and row-major unknowns u[i,j] (as
 * examples/bratu2d.c):
 *
 *   F[i,j] = (4 u[i,j] - u[i-1,j] - u[i+1,j] - u[i,j-1] - u[i,j+1]) / h^2
 *            - lambda exp(u[i,j]).
 *
 * KINSOL's Newton iteration (a Jacobian at every step, full steps: the
 * largest step allowed is raised from KINSOL's default, which from u = 0
 * is an L2 length of 1) from u = 0, with
 * the Jacobian in a CSC SUNSparseMatrix factorised by KLU, twice: with the
 * adapter's system function and Jacobian (jac_sundials_kinsol_sys and
 * jac_sundials_kinsol_jac, from the residual recorded once) and with
 * hand-written ones. Both must stop with ||F||_inf below 1e-9 after the
 * same number of iterations and Jacobians, at the same solution, and the
 * adapter's pattern must have the 5n - 4N entries of the five-point
 * stencil. The time in the Jacobian callback is printed for both, in the
 * solve and per call at the solution.
 *
 * Usage: kinsol_bratu [N]     (N from 3 to 1000; 100 by default)
 *
 * Exits 1 when an answer is off.
 *
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include <jacobian.h>
#include <jacobian_sundials.h>

#include <kinsol/kinsol.h>
#include <math.h>
#include <nvector/nvector_serial.h>
#include <stdio.h>
#include <stdlib.h>
#include <sundials/sundials_context.h>
#include <sunlinsol/sunlinsol_klu.h>
#include <sunmatrix/sunmatrix_sparse.h>
#include <time.h>

static const double LAMBDA = 6.0;
static const double FTOL = 1e-9;
enum { N_DEFAULT = 100, N_MAX = 1000, REPEAT = 20 };

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------------------ */
/* The residual, recorded and by hand                                       */
/* ------------------------------------------------------------------------ */

/* The N x N block of the padded grid p whose corner is (r0, c0). */
static jac_tensor *shifted(jac_ctx *ctx, jac_tensor *p, int64_t r0, int64_t c0,
                           int64_t N)
{
    return jac_slice(ctx, jac_slice(ctx, p, 0, r0, r0 + N, 1), 1, c0, c0 + N,
                     1);
}

/* F(u; lambda), u of N x N: the zero boundary is the padding, the four
 * neighbours four slices of it. */
static jac_program *record_residual(int64_t N)
{
    jac_ctx *ctx = jac_ctx_new();
    if (ctx == NULL)
        return NULL;
    double h = 1.0 / (double)(N + 1);
    jac_tensor *u = jac_zeros(ctx, 2, (const int64_t[]){N, N});
    jac_tensor *lambda = jac_scalar(ctx, LAMBDA);
    jac_program *program = NULL;
    if (jac_program_begin(ctx, 1, &u, 1, &lambda) == JAC_OK) {
        jac_tensor *p =
            jac_pad(ctx, u, (const int64_t[]){1, 1}, (const int64_t[]){1, 1});
        jac_tensor *f = jac_mul_scalar(ctx, u, 4.0);
        f = jac_sub(ctx, f, shifted(ctx, p, 0, 1, N)); /* u[i-1,j] */
        f = jac_sub(ctx, f, shifted(ctx, p, 2, 1, N)); /* u[i+1,j] */
        f = jac_sub(ctx, f, shifted(ctx, p, 1, 0, N)); /* u[i,j-1] */
        f = jac_sub(ctx, f, shifted(ctx, p, 1, 2, N)); /* u[i,j+1] */
        f = jac_sub(ctx, jac_div_scalar(ctx, f, h * h),
                    jac_mul(ctx, lambda, jac_exp(ctx, u)));
        jac_program_end(ctx, 1, &f, 0, &program);
    }
    if (program == NULL)
        fprintf(stderr, "kinsol_bratu: recording failed: %s\n",
                jac_errmsg(ctx));
    jac_ctx_free(ctx);
    return program;
}

typedef struct grid {
    int64_t N;
    double h2; /* h^2 */
} grid;

/* F in the order of the recording, so that both runs see the same F. */
static int hand_sys(N_Vector uv, N_Vector fv, void *user_data)
{
    const grid *g = user_data;
    int64_t N = g->N;
    const double *u = N_VGetArrayPointer(uv);
    double *F = N_VGetArrayPointer(fv);
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < N; j++) {
            int64_t k = i * N + j;
            double f = 4.0 * u[k];
            f -= i > 0 ? u[k - N] : 0.0;
            f -= i < N - 1 ? u[k + N] : 0.0;
            f -= j > 0 ? u[k - 1] : 0.0;
            f -= j < N - 1 ? u[k + 1] : 0.0;
            F[k] = f / g->h2 - LAMBDA * exp(u[k]);
        }
    return 0;
}

/* dF/du into a CSC matrix: column l holds rows l - N, l - 1, l, l + 1,
 * l + N (those on the grid), the Laplacian's -1 / h^2 off the diagonal and
 * 4 / h^2 - lambda exp(u_l) on it. */
static int hand_jac(N_Vector uv, N_Vector fu, SUNMatrix J, void *user_data,
                    N_Vector tmp1, N_Vector tmp2)
{
    (void)fu;
    (void)tmp1;
    (void)tmp2;
    const grid *g = user_data;
    int64_t N = g->N, n = N * N;
    if (SM_NNZ_S(J) < 5 * n - 4 * N)
        return -1;
    const double *u = N_VGetArrayPointer(uv);
    sunindextype *ptr = SM_INDEXPTRS_S(J), *idx = SM_INDEXVALS_S(J);
    double *data = SM_DATA_S(J), off = -1.0 / g->h2, diag = 4.0 / g->h2;
    sunindextype p = 0;
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < N; j++) {
            int64_t l = i * N + j;
            ptr[l] = p;
            if (i > 0) {
                idx[p] = l - N;
                data[p++] = off;
            }
            if (j > 0) {
                idx[p] = l - 1;
                data[p++] = off;
            }
            idx[p] = l;
            data[p++] = diag - LAMBDA * exp(u[l]);
            if (j < N - 1) {
                idx[p] = l + 1;
                data[p++] = off;
            }
            if (i < N - 1) {
                idx[p] = l + N;
                data[p++] = off;
            }
        }
    ptr[n] = p;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The solves                                                               */
/* ------------------------------------------------------------------------ */

static double jac_seconds;

static int timed_adapter_jac(N_Vector u, N_Vector fu, SUNMatrix J,
                             void *user_data, N_Vector tmp1, N_Vector tmp2)
{
    double t0 = seconds();
    int rc = jac_sundials_kinsol_jac(u, fu, J, user_data, tmp1, tmp2);
    jac_seconds += seconds() - t0;
    return rc;
}

static int timed_hand_jac(N_Vector u, N_Vector fu, SUNMatrix J, void *user_data,
                          N_Vector tmp1, N_Vector tmp2)
{
    double t0 = seconds();
    int rc = hand_jac(u, fu, J, user_data, tmp1, tmp2);
    jac_seconds += seconds() - t0;
    return rc;
}

typedef struct run {
    int flag;
    long iterations, fevals, jacs;
    double fnorm;  /* ||F||_inf at the solution, by hand_sys */
    double umax;   /* max u */
    double total;  /* the solve, seconds */
    double jac;    /* in the Jacobian callback during the solve */
    double steady; /* one Jacobian call at the solution */
    double feval;  /* one F call at the solution */
    double *u;     /* n: the solution (the caller frees it) */
} run;

static run solve(const grid *g, KINSysFn sys, KINLsJacFn jac, KINLsJacFn raw,
                 void *user_data)
{
    run r = {.flag = -99};
    int64_t n = g->N * g->N;
    SUNContext sun = NULL;
    if (SUNContext_Create(NULL, &sun) != 0)
        return r;
    N_Vector u = N_VNew_Serial(n, sun), scale = N_VNew_Serial(n, sun);
    N_Vector f = N_VNew_Serial(n, sun);
    SUNMatrix J = SUNSparseMatrix(n, n, 5 * n - 4 * g->N, CSC_MAT, sun);
    SUNLinearSolver LS =
        u != NULL && J != NULL ? SUNLinSol_KLU(u, J, sun) : NULL;
    void *kinsol = KINCreate(sun);
    r.u = malloc((size_t)n * sizeof(double));
    if (u == NULL || scale == NULL || f == NULL || J == NULL || LS == NULL ||
        kinsol == NULL || r.u == NULL)
        goto done;
    N_VConst(0.0, u);
    N_VConst(1.0, scale);
    jac_seconds = 0.0;
    double t0 = seconds();
    if (KINInit(kinsol, sys, u) != KIN_SUCCESS ||
        KINSetUserData(kinsol, user_data) != KIN_SUCCESS ||
        KINSetFuncNormTol(kinsol, FTOL) != KIN_SUCCESS ||
        KINSetScaledStepTol(kinsol, 1e-14) != KIN_SUCCESS ||
        KINSetMaxSetupCalls(kinsol, 1) != KIN_SUCCESS ||
        KINSetMaxNewtonStep(kinsol, 1e3 * sqrt((double)n)) != KIN_SUCCESS ||
        KINSetLinearSolver(kinsol, LS, J) != KIN_SUCCESS ||
        KINSetJacFn(kinsol, jac) != KIN_SUCCESS)
        goto done;
    r.flag = KINSol(kinsol, u, KIN_NONE, scale, scale);
    r.total = seconds() - t0;
    r.jac = jac_seconds;
    KINGetNumNonlinSolvIters(kinsol, &r.iterations);
    KINGetNumFuncEvals(kinsol, &r.fevals);
    KINGetNumJacEvals(kinsol, &r.jacs);
    const double *ud = N_VGetArrayPointer(u);
    hand_sys(u, f, (void *)g);
    r.fnorm = N_VMaxNorm(f);
    r.umax = N_VMaxNorm(u);
    for (int64_t k = 0; k < n; k++)
        r.u[k] = ud[k];
    t0 = seconds();
    int rc = 0;
    for (int k = 0; k < REPEAT; k++)
        rc |= raw(u, f, J, user_data, NULL, NULL);
    r.steady = rc == 0 ? (seconds() - t0) / REPEAT : NAN;
    t0 = seconds();
    for (int k = 0; k < REPEAT; k++)
        rc |= sys(u, f, user_data);
    r.feval = rc == 0 ? (seconds() - t0) / REPEAT : NAN;
done:
    KINFree(&kinsol);
    SUNLinSolFree(LS);
    SUNMatDestroy(J);
    N_VDestroy(u);
    N_VDestroy(scale);
    N_VDestroy(f);
    SUNContext_Free(&sun);
    return r;
}

int main(int argc, char **argv)
{
    long N = N_DEFAULT;
    if (argc > 1) {
        char *end = NULL;
        N = strtol(argv[1], &end, 10);
        if (end == argv[1] || *end != '\0' || N < 3 || N > N_MAX) {
            fprintf(stderr, "usage: kinsol_bratu [N]  (N from 3 to %d)\n",
                    N_MAX);
            return 2;
        }
    }
    grid g = {.N = N, .h2 = 1.0 / (double)((N + 1) * (N + 1))};
    int64_t n = g.N * g.N;
    jac_program *program = record_residual(g.N);
    if (program == NULL)
        return 1;
    const double lambda = LAMBDA;
    const double *params[1] = {&lambda};
    jac_sundials state = {.program = program, .params = params};
    int64_t nnz = jac_sundials_nnz(&state);
    printf("Bratu problem, %ld x %ld grid (n = %lld, lambda = %g): KINSOL "
           "Newton, CSC Jacobian, KLU\n",
           N, N, (long long)n, LAMBDA);
    printf("the adapter's pattern: %lld nonzeros\n\n", (long long)nnz);

    run runs[2];
    runs[0] = solve(&g, jac_sundials_kinsol_sys, timed_adapter_jac,
                    jac_sundials_kinsol_jac, &state);
    runs[1] = solve(&g, hand_sys, timed_hand_jac, hand_jac, &g);
    jac_sundials_release(&state);
    jac_program_free(program);

    static const char *const names[2] = {"recorded", "hand-written"};
    printf("%-12s %4s %4s %4s %4s %9s %11s %10s %13s %9s %9s\n", "Jacobian",
           "flag", "iter", "nfe", "nje", "||F||_inf", "max u", "total (ms)",
           "Jacobian (ms)", "one J (ms)", "one F (ms)");
    for (int k = 0; k < 2; k++)
        printf("%-12s %4d %4ld %4ld %4ld %9.2e %11.9f %10.2f %13.3f %10.3f "
               "%9.3f\n",
               names[k], runs[k].flag, runs[k].iterations, runs[k].fevals,
               runs[k].jacs, runs[k].fnorm, runs[k].umax, 1e3 * runs[k].total,
               1e3 * runs[k].jac, 1e3 * runs[k].steady, 1e3 * runs[k].feval);
    printf("(Jacobian: the time in the callback during the solve, the first "
           "call making\nthe plan; one J, one F: the mean of %d calls at the "
           "solution)\n",
           REPEAT);

    int ok = state.status == JAC_OK;
    if (!ok)
        fprintf(stderr, "FAIL: %s\n", state.message);
    if (nnz != 5 * n - 4 * g.N) {
        fprintf(stderr, "FAIL: the pattern has %lld entries, not %lld\n",
                (long long)nnz, (long long)(5 * n - 4 * g.N));
        ok = 0;
    }
    for (int k = 0; k < 2; k++)
        if (runs[k].flag < 0 || !(runs[k].fnorm < FTOL) || runs[k].u == NULL) {
            fprintf(stderr, "FAIL: %s: KINSol flag %d, ||F||_inf = %g\n",
                    names[k], runs[k].flag, runs[k].fnorm);
            ok = 0;
        }
    if (runs[0].iterations != runs[1].iterations ||
        runs[0].jacs != runs[1].jacs) {
        fprintf(stderr, "FAIL: the two runs took different iterations\n");
        ok = 0;
    }
    if (ok) {
        double diff = 0.0;
        for (int64_t k = 0; k < n; k++)
            diff = fmax(diff, fabs(runs[0].u[k] - runs[1].u[k]));
        printf("largest difference between the two solutions: %.2e\n", diff);
        if (!(diff <= 1e-10 * runs[1].umax)) {
            fprintf(stderr, "FAIL: the two solutions differ\n");
            ok = 0;
        }
    }
    free(runs[0].u);
    free(runs[1].u);
    if (!ok)
        return 1;
    printf("both runs converge to the same solution\n");
    return 0;
}
