/*
 * CVODE on the two-dimensional Brusselator with the sparse Jacobian of a
 * recorded right-hand side, through the adapter of jacobian_sundials.h,
 * against the same solve with a hand-written Jacobian.
 *
 *   u_t = A + u^2 v - (B + 1) u + alpha lap(u)
 *   v_t = B u - u^2 v          + alpha lap(v)
 *
 * on the unit square with periodic boundaries, an N x N grid (spacing
 * h = 1 / N, N = 64 by default: n = 2 N^2 = 8192 unknowns), the
 * five-point Laplacian lap(w)[i,j] = (w[i-1,j] + w[i+1,j] + w[i,j-1] +
 * w[i,j+1] - 4 w[i,j]) / h^2 with indices modulo N, A = 1, B = 3.4,
 * alpha = 0.002, from u = 0.5 + y, v = 1 + 5 x at the grid points
 * (x, y) = (j h, i h), to t = 2. The state is u then v, each row-major:
 * y = (u[0,0] .. u[N-1,N-1], v[0,0] .. v[N-1,N-1]).
 *
 * BDF with Newton iterations on a CSR SUNSparseMatrix factorised by KLU
 * (with the AMD ordering, which halves the solve against KLU's default
 * COLAMD on this matrix), relative tolerance 1e-6, absolute 1e-8, twice: with
 * the adapter's right-hand side and Jacobian (from the recording, made once)
 * and with hand-written ones (the Jacobian's six entries per row written from
 * the formulas). Both must take the same steps and Newton iterations to the
 * same solution, the pattern must have the 6n entries of the stencil and
 * the coupling, and the solution must agree with a reference solve at
 * tolerances 100 times tighter (hand-written Jacobian) within 1e-4. The
 * time in the Jacobian callback is printed for both, in the solve and per
 * call.
 *
 * Usage: cvode_brusselator [N]     (N from 4 to 512; 64 by default)
 *
 * Exits 1 when an answer is off.
 *
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include <jacobian.h>
#include <jacobian_sundials.h>

#include <cvode/cvode.h>
#include <math.h>
#include <nvector/nvector_serial.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sundials/sundials_context.h>
#include <sunlinsol/sunlinsol_klu.h>
#include <sunmatrix/sunmatrix_sparse.h>
#include <time.h>

static const double A = 1.0, B = 3.4, ALPHA = 0.002, T_END = 2.0;
static const double RTOL = 1e-6, ATOL = 1e-8;
enum { N_DEFAULT = 64, N_MAX = 512, REPEAT = 20 };

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------------------ */
/* The right-hand side, recorded and by hand                                */
/* ------------------------------------------------------------------------ */

/* w rolled by one along axis: w[i-1] (back) or w[i+1], periodically. */
static jac_tensor *rolled(jac_ctx *ctx, jac_tensor *w, int axis, int back,
                          int64_t N)
{
    jac_tensor *parts[2];
    if (back) {
        parts[0] = jac_slice(ctx, w, axis, N - 1, N, 1);
        parts[1] = jac_slice(ctx, w, axis, 0, N - 1, 1);
    } else {
        parts[0] = jac_slice(ctx, w, axis, 1, N, 1);
        parts[1] = jac_slice(ctx, w, axis, 0, 1, 1);
    }
    return jac_concat(ctx, 2, parts, axis);
}

/* alpha lap(w), summed as hand_rhs sums it. */
static jac_tensor *diffusion(jac_ctx *ctx, jac_tensor *w, int64_t N, double c)
{
    jac_tensor *s =
        jac_add(ctx, rolled(ctx, w, 0, 1, N), rolled(ctx, w, 0, 0, N));
    s = jac_add(ctx, s, rolled(ctx, w, 1, 1, N));
    s = jac_add(ctx, s, rolled(ctx, w, 1, 0, N));
    s = jac_sub(ctx, s, jac_mul_scalar(ctx, w, 4.0));
    return jac_mul_scalar(ctx, s, c);
}

/* The program: input y of 2 x N x N (u, v), parameter t (unused: the
 * system is autonomous, but CVODE's programs take t first). */
static jac_program *record_rhs(int64_t N)
{
    jac_ctx *ctx = jac_ctx_new();
    if (ctx == NULL)
        return NULL;
    double c = ALPHA * (double)(N * N);
    jac_tensor *y = jac_zeros(ctx, 3, (const int64_t[]){2, N, N});
    jac_tensor *t = jac_zeros(ctx, 1, (const int64_t[]){1});
    jac_program *program = NULL;
    if (jac_program_begin(ctx, 1, &y, 1, &t) == JAC_OK) {
        jac_tensor *u = jac_select(ctx, y, 0, 0), *v = jac_select(ctx, y, 0, 1);
        jac_tensor *uuv = jac_mul(ctx, jac_square(ctx, u), v);
        jac_tensor *fu = jac_sub(ctx, jac_add_scalar(ctx, uuv, A),
                                 jac_mul_scalar(ctx, u, B + 1.0));
        fu = jac_add(ctx, fu, diffusion(ctx, u, N, c));
        jac_tensor *fv = jac_sub(ctx, jac_mul_scalar(ctx, u, B), uuv);
        fv = jac_add(ctx, fv, diffusion(ctx, v, N, c));
        jac_tensor *parts[2] = {fu, fv};
        jac_tensor *f = jac_stack(ctx, 2, parts, 0);
        jac_program_end(ctx, 1, &f, 0, &program);
    }
    if (program == NULL)
        fprintf(stderr, "cvode_brusselator: recording failed: %s\n",
                jac_errmsg(ctx));
    jac_ctx_free(ctx);
    return program;
}

typedef struct grid {
    int64_t N;
    double c; /* alpha / h^2 */
} grid;

/* The sum of the four neighbours of (i, j) in the periodic field w. */
static double neighbours(const double *w, int64_t i, int64_t j, int64_t N)
{
    int64_t up = (i + N - 1) % N, down = (i + 1) % N;
    int64_t left = (j + N - 1) % N, right = (j + 1) % N;
    return ((w[up * N + j] + w[down * N + j]) + w[i * N + left]) +
           w[i * N + right];
}

/* f in the order of the recording, so that both runs see the same f. */
static int hand_rhs(sunrealtype t, N_Vector yv, N_Vector fv, void *user_data)
{
    (void)t;
    const grid *g = user_data;
    int64_t N = g->N, m = N * N;
    const double *u = N_VGetArrayPointer(yv), *v = u + m;
    double *fu = N_VGetArrayPointer(fv), *fvv = fu + m;
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < N; j++) {
            int64_t k = i * N + j;
            double uuv = (u[k] * u[k]) * v[k];
            double lu = (neighbours(u, i, j, N) - 4.0 * u[k]) * g->c;
            double lv = (neighbours(v, i, j, N) - 4.0 * v[k]) * g->c;
            fu[k] = ((uuv + A) - (B + 1.0) * u[k]) + lu;
            fvv[k] = (B * u[k] - uuv) + lv;
        }
    return 0;
}

/*
 * df/dy into a CSR matrix, row by row: the row of u[k] has its four
 * neighbours in u (alpha / h^2 each), u[k] itself (2 u v - (B + 1) -
 * 4 alpha / h^2) and v[k] (u^2); the row of v[k] has u[k] (B - 2 u v),
 * its four neighbours in v and v[k] itself (-u^2 - 4 alpha / h^2). The
 * neighbours' columns wrap around, so each row is sorted.
 */
static int hand_jac(sunrealtype t, N_Vector yv, N_Vector fy, SUNMatrix J,
                    void *user_data, N_Vector tmp1, N_Vector tmp2,
                    N_Vector tmp3)
{
    (void)t;
    (void)fy;
    (void)tmp1;
    (void)tmp2;
    (void)tmp3;
    const grid *g = user_data;
    int64_t N = g->N, m = N * N;
    if (SM_NNZ_S(J) < 12 * m)
        return -1;
    const double *u = N_VGetArrayPointer(yv), *v = u + m;
    sunindextype *ptr = SM_INDEXPTRS_S(J), *idx = SM_INDEXVALS_S(J);
    double *data = SM_DATA_S(J);
    sunindextype p = 0;
    for (int64_t block = 0; block < 2; block++)
        for (int64_t i = 0; i < N; i++)
            for (int64_t j = 0; j < N; j++) {
                int64_t k = i * N + j, row = block * m + k;
                double uv = u[k] * v[k], uu = u[k] * u[k];
                /* (column, value) pairs, then sorted by column. */
                struct entry {
                    sunindextype col;
                    double value;
                } e[6];
                int64_t off = block * m;
                e[0].col = off + ((i + N - 1) % N) * N + j;
                e[1].col = off + ((i + 1) % N) * N + j;
                e[2].col = off + i * N + (j + N - 1) % N;
                e[3].col = off + i * N + (j + 1) % N;
                for (int q = 0; q < 4; q++)
                    e[q].value = g->c;
                e[4].col = k;
                e[5].col = m + k;
                if (block == 0) {
                    e[4].value = 2.0 * uv - (B + 1.0) - 4.0 * g->c;
                    e[5].value = uu;
                } else {
                    e[4].value = B - 2.0 * uv;
                    e[5].value = -uu - 4.0 * g->c;
                }
                /* Insertion sort of six: the rows are short. */
                for (int q = 1; q < 6; q++)
                    for (int r = q; r > 0 && e[r - 1].col > e[r].col; r--) {
                        sunindextype col = e[r].col;
                        double value = e[r].value;
                        e[r] = e[r - 1];
                        e[r - 1].col = col;
                        e[r - 1].value = value;
                    }
                ptr[row] = p;
                for (int q = 0; q < 6; q++, p++) {
                    idx[p] = e[q].col;
                    data[p] = e[q].value;
                }
            }
    ptr[2 * m] = p;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The solves                                                               */
/* ------------------------------------------------------------------------ */

static double jac_seconds;

static int timed_adapter_jac(sunrealtype t, N_Vector y, N_Vector fy,
                             SUNMatrix J, void *user_data, N_Vector tmp1,
                             N_Vector tmp2, N_Vector tmp3)
{
    double t0 = seconds();
    int rc = jac_sundials_cvode_jac(t, y, fy, J, user_data, tmp1, tmp2, tmp3);
    jac_seconds += seconds() - t0;
    return rc;
}

static int timed_hand_jac(sunrealtype t, N_Vector y, N_Vector fy, SUNMatrix J,
                          void *user_data, N_Vector tmp1, N_Vector tmp2,
                          N_Vector tmp3)
{
    double t0 = seconds();
    int rc = hand_jac(t, y, fy, J, user_data, tmp1, tmp2, tmp3);
    jac_seconds += seconds() - t0;
    return rc;
}

typedef struct run {
    int ok;
    long steps, rhs, setups, jacs, newton, newton_fails, error_fails;
    double total, jac;    /* the solve, and the Jacobian in it, seconds */
    double steady, feval; /* one Jacobian, one f, at the final state */
    double *y;            /* n: the final state (the caller frees it) */
} run;

static run solve(const grid *g, CVRhsFn rhs, CVLsJacFn jac, CVLsJacFn raw,
                 void *user_data, double rtol, double atol)
{
    run r = {0};
    int64_t N = g->N, m = N * N, n = 2 * m;
    SUNContext sun = NULL;
    if (SUNContext_Create(NULL, &sun) != 0)
        return r;
    N_Vector y = N_VNew_Serial(n, sun), f = N_VNew_Serial(n, sun);
    SUNMatrix J = SUNSparseMatrix(n, n, 6 * n, CSR_MAT, sun);
    SUNLinearSolver LS =
        y != NULL && J != NULL ? SUNLinSol_KLU(y, J, sun) : NULL;
    void *cvode = CVodeCreate(CV_BDF, sun);
    r.y = malloc((size_t)n * sizeof(double));
    if (y == NULL || f == NULL || J == NULL || LS == NULL || cvode == NULL ||
        r.y == NULL)
        goto done;
    double *yd = N_VGetArrayPointer(y);
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < N; j++) {
            yd[i * N + j] = 0.5 + (double)i / (double)N;
            yd[m + i * N + j] = 1.0 + 5.0 * (double)j / (double)N;
        }
    jac_seconds = 0.0;
    double t0 = seconds();
    sunrealtype t = 0.0;
    if (CVodeInit(cvode, rhs, 0.0, y) != CV_SUCCESS ||
        CVodeSStolerances(cvode, rtol, atol) != CV_SUCCESS ||
        CVodeSetUserData(cvode, user_data) != CV_SUCCESS ||
        CVodeSetMaxNumSteps(cvode, 100000) != CV_SUCCESS ||
        SUNLinSol_KLUSetOrdering(LS, 0) != SUNLS_SUCCESS ||
        CVodeSetLinearSolver(cvode, LS, J) != CV_SUCCESS ||
        CVodeSetJacFn(cvode, jac) != CV_SUCCESS ||
        CVode(cvode, T_END, y, &t, CV_NORMAL) != CV_SUCCESS)
        goto done;
    r.total = seconds() - t0;
    r.jac = jac_seconds;
    CVodeGetNumSteps(cvode, &r.steps);
    CVodeGetNumRhsEvals(cvode, &r.rhs);
    CVodeGetNumLinSolvSetups(cvode, &r.setups);
    CVodeGetNumErrTestFails(cvode, &r.error_fails);
    CVodeGetNumNonlinSolvIters(cvode, &r.newton);
    CVodeGetNumNonlinSolvConvFails(cvode, &r.newton_fails);
    CVodeGetNumJacEvals(cvode, &r.jacs);
    memcpy(r.y, yd, (size_t)n * sizeof(double));
    int rc = 0;
    if (raw != NULL) {
        t0 = seconds();
        for (int k = 0; k < REPEAT; k++)
            rc |= raw(t, y, f, J, user_data, NULL, NULL, NULL);
        r.steady = (seconds() - t0) / REPEAT;
        t0 = seconds();
        for (int k = 0; k < REPEAT; k++)
            rc |= rhs(t, y, f, user_data);
        r.feval = (seconds() - t0) / REPEAT;
    }
    r.ok = rc == 0;
done:
    CVodeFree(&cvode);
    SUNLinSolFree(LS);
    SUNMatDestroy(J);
    N_VDestroy(y);
    N_VDestroy(f);
    SUNContext_Free(&sun);
    return r;
}

/* Mean of u and of v, and their values at the grid's centre. */
static void summary(const double *y, int64_t N, double *out)
{
    int64_t m = N * N, centre = (N / 2) * N + N / 2;
    double su = 0.0, sv = 0.0;
    for (int64_t k = 0; k < m; k++) {
        su += y[k];
        sv += y[m + k];
    }
    out[0] = su / (double)m;
    out[1] = sv / (double)m;
    out[2] = y[centre];
    out[3] = y[m + centre];
}

int main(int argc, char **argv)
{
    long N = N_DEFAULT;
    if (argc > 1) {
        char *end = NULL;
        N = strtol(argv[1], &end, 10);
        if (end == argv[1] || *end != '\0' || N < 4 || N > N_MAX) {
            fprintf(stderr, "usage: cvode_brusselator [N]  (N from 4 to %d)\n",
                    N_MAX);
            return 2;
        }
    }
    grid g = {.N = N, .c = ALPHA * (double)(N * N)};
    int64_t n = 2 * g.N * g.N;
    jac_program *program = record_rhs(g.N);
    if (program == NULL)
        return 1;
    jac_sundials state = {.program = program};
    int64_t nnz = jac_sundials_nnz(&state);
    printf("Brusselator, %ld x %ld periodic grid (n = %lld, A = %g, B = %g, "
           "alpha = %g) to t = %g:\nCVODE BDF, CSR Jacobian, KLU; the "
           "adapter's pattern: %lld nonzeros\n\n",
           N, N, (long long)n, A, B, ALPHA, T_END, (long long)nnz);

    run runs[3];
    runs[0] = solve(&g, jac_sundials_cvode_rhs, timed_adapter_jac,
                    jac_sundials_cvode_jac, &state, RTOL, ATOL);
    runs[1] = solve(&g, hand_rhs, timed_hand_jac, hand_jac, &g, RTOL, ATOL);
    runs[2] =
        solve(&g, hand_rhs, hand_jac, NULL, &g, RTOL / 100.0, ATOL / 100.0);
    jac_sundials_release(&state);
    jac_program_free(program);

    static const char *const names[2] = {"recorded", "hand-written"};
    printf("%-12s %5s %5s %4s %5s %9s %9s %11s %13s %10s %10s\n", "Jacobian",
           "steps", "nfe", "nje", "nni", "mean u", "mean v", "total (ms)",
           "Jacobian (ms)", "one J (ms)", "one f (ms)");
    int ok = state.status == JAC_OK;
    if (!ok)
        fprintf(stderr, "FAIL: %s\n", state.message);
    for (int k = 0; k < 2; k++) {
        if (!runs[k].ok) {
            fprintf(stderr, "FAIL: the %s run failed\n", names[k]);
            ok = 0;
            continue;
        }
        double s[4];
        summary(runs[k].y, g.N, s);
        printf("%-12s %5ld %5ld %4ld %5ld %9.6f %9.6f %11.1f %13.2f %10.3f "
               "%10.3f\n",
               names[k], runs[k].steps, runs[k].rhs, runs[k].jacs,
               runs[k].newton, s[0], s[1], 1e3 * runs[k].total,
               1e3 * runs[k].jac, 1e3 * runs[k].steady, 1e3 * runs[k].feval);
    }
    printf("(Jacobian: the time in the callback during the solve, the first "
           "call making\nthe plan; one J, one f: the mean of %d calls at "
           "t = %g)\n",
           REPEAT, T_END);
    if (!runs[2].ok) {
        fprintf(stderr, "FAIL: the reference run failed\n");
        ok = 0;
    }
    if (nnz != 6 * n) {
        fprintf(stderr, "FAIL: the pattern has %lld entries, not %lld\n",
                (long long)nnz, (long long)(6 * n));
        ok = 0;
    }
    if (ok) {
        if (runs[0].steps != runs[1].steps ||
            runs[0].newton != runs[1].newton || runs[0].jacs != runs[1].jacs) {
            fprintf(stderr, "FAIL: the two runs took different steps\n");
            ok = 0;
        }
        double between = 0.0, error = 0.0;
        for (int64_t k = 0; k < n; k++) {
            between = fmax(between, fabs(runs[0].y[k] - runs[1].y[k]));
            error = fmax(error, fabs(runs[0].y[k] - runs[2].y[k]));
        }
        double s[4];
        summary(runs[2].y, g.N, s);
        printf("reference (tolerances / 100): mean u %.6f, mean v %.6f, "
               "centre (%.6f, %.6f)\n",
               s[0], s[1], s[2], s[3]);
        printf("largest difference: recorded vs hand-written %.2e, vs the "
               "reference %.2e\n",
               between, error);
        if (!(between <= 1e-8) || !(error <= 1e-4)) {
            fprintf(stderr, "FAIL: the solutions differ\n");
            ok = 0;
        }
    }
    for (int k = 0; k < 3; k++)
        free(runs[k].y);
    if (!ok)
        return 1;
    printf("both runs agree with each other and with the reference\n");
    return 0;
}
