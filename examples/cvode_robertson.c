/*
 * CVODE on Robertson's chemical kinetics with the Jacobian from a recorded
 * right-hand side, through the adapter of jacobian_sundials.h, against
 * the same solve with a hand-written Jacobian.
 *
 * The problem (the stiff test of SUNDIALS' cvRoberts_dns example):
 *
 *   y1' = -0.04 y1 + 1e4 y2 y3
 *   y2' =  0.04 y1 - 1e4 y2 y3 - 3e7 y2^2
 *   y3' =  3e7 y2^2
 *
 * from y(0) = (1, 0, 0), by BDF with Newton iterations on a dense matrix
 * and the dense direct solver, relative tolerance 1e-4 and absolute
 * tolerances (1e-8, 1e-14, 1e-6), with outputs at t = 0.4 10^k, k = 0 ..
 * 11, and the roots of g = (y1 - 1e-4, y3 - 0.01) located on the way, as
 * SUNDIALS' example does. Both runs print the table of y at each output
 * time (and root) and CVODE's statistics. The values must agree with those
 * SUNDIALS publishes for its example within a few times the tolerances,
 * and the two runs here must take the same steps, Newton iterations and
 * Jacobians to the same values. The time spent in the Jacobian callback is
 * printed for both.
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
#include <sundials/sundials_context.h>
#include <sunlinsol/sunlinsol_dense.h>
#include <sunmatrix/sunmatrix_dense.h>
#include <time.h>

enum { NEQ = 3, NOUT = 12 };

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The values SUNDIALS' cvRoberts_dns prints at t = 0.4 10^k. */
static const double reference[NOUT][NEQ] = {
    {9.851641e-01, 3.386242e-05, 1.480205e-02},
    {9.055097e-01, 2.240338e-05, 9.446793e-02},
    {7.158017e-01, 9.185037e-06, 2.841892e-01},
    {4.505360e-01, 3.223271e-06, 5.494608e-01},
    {1.832066e-01, 8.942601e-07, 8.167925e-01},
    {3.898824e-02, 1.621985e-07, 9.610116e-01},
    {4.937043e-03, 1.984465e-08, 9.950629e-01},
    {5.169987e-04, 2.069052e-09, 9.994830e-01},
    {5.208146e-05, 2.083366e-10, 9.999479e-01},
    {5.204550e-06, 2.081831e-11, 9.999948e-01},
    {5.318402e-07, 2.127362e-12, 9.999995e-01},
    {3.630684e-08, 1.452274e-13, 1.000000e+00},
};
static const double reltol = 1e-4, abstol[NEQ] = {1e-8, 1e-14, 1e-6};

/* The right-hand side, recorded: input y (3), parameter t (unused: the
 * system is autonomous, but CVODE's programs take t first). */
static jac_program *record_rhs(void)
{
    jac_ctx *ctx = jac_ctx_new();
    if (ctx == NULL)
        return NULL;
    jac_tensor *y = jac_zeros(ctx, 1, (const int64_t[]){NEQ});
    jac_tensor *t = jac_zeros(ctx, 1, (const int64_t[]){1});
    jac_program *program = NULL;
    if (jac_program_begin(ctx, 1, &y, 1, &t) == JAC_OK) {
        jac_tensor *y1 = jac_select(ctx, y, 0, 0);
        jac_tensor *y2 = jac_select(ctx, y, 0, 1);
        jac_tensor *y3 = jac_select(ctx, y, 0, 2);
        jac_tensor *a = jac_mul_scalar(ctx, y1, 0.04);
        jac_tensor *b = jac_mul_scalar(ctx, jac_mul(ctx, y2, y3), 1e4);
        jac_tensor *c = jac_mul_scalar(ctx, jac_square(ctx, y2), 3e7);
        jac_tensor *f[NEQ] = {jac_sub(ctx, b, a),
                              jac_sub(ctx, jac_sub(ctx, a, b), c), c};
        jac_tensor *out = jac_stack(ctx, NEQ, f, 0);
        jac_program_end(ctx, 1, &out, 0, &program);
    }
    if (program == NULL)
        fprintf(stderr, "cvode_robertson: recording failed: %s\n",
                jac_errmsg(ctx));
    jac_ctx_free(ctx);
    return program;
}

/* The hand-written twin, from the formulas above. */
static int hand_rhs(sunrealtype t, N_Vector yv, N_Vector fv, void *user_data)
{
    (void)t;
    (void)user_data;
    const double *y = N_VGetArrayPointer(yv);
    double *f = N_VGetArrayPointer(fv);
    /* The products in the order of the recording, so that both runs see
     * the same right-hand side to the last bit. */
    double a = 0.04 * y[0], b = 1e4 * (y[1] * y[2]), c = 3e7 * (y[1] * y[1]);
    f[0] = b - a;
    f[1] = a - b - c;
    f[2] = c;
    return 0;
}

/* dy'/dy, column-major into the dense matrix: column j is d/dy_j. */
static int hand_jac(sunrealtype t, N_Vector yv, N_Vector fy, SUNMatrix J,
                    void *user_data, N_Vector tmp1, N_Vector tmp2,
                    N_Vector tmp3)
{
    (void)t;
    (void)fy;
    (void)user_data;
    (void)tmp1;
    (void)tmp2;
    (void)tmp3;
    const double *y = N_VGetArrayPointer(yv);
    double *d1 = SM_COLUMN_D(J, 0), *d2 = SM_COLUMN_D(J, 1);
    double *d3 = SM_COLUMN_D(J, 2);
    d1[0] = -0.04;
    d1[1] = 0.04;
    d1[2] = 0.0;
    d2[0] = 1e4 * y[2];
    d2[1] = -1e4 * y[2] - 6e7 * y[1];
    d2[2] = 6e7 * y[1];
    d3[0] = 1e4 * y[1];
    d3[1] = -1e4 * y[1];
    d3[2] = 0.0;
    return 0;
}

/* The two root functions: y1 = 1e-4 and y3 = 0.01. */
static int roots(sunrealtype t, N_Vector yv, sunrealtype *g, void *user_data)
{
    (void)t;
    (void)user_data;
    const double *y = N_VGetArrayPointer(yv);
    g[0] = y[0] - 1e-4;
    g[1] = y[2] - 0.01;
    return 0;
}

/* Time in the Jacobian callbacks, and their calls, of the current run. */
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

/* The steady-state time of one call of jac (after the plan is made), at
 * y = (0.5, 1e-5, 0.5): the mean of REPEAT calls, in seconds. */
enum { REPEAT = 20000 };
static double steady(CVLsJacFn jac, void *user_data)
{
    SUNContext sun = NULL;
    if (SUNContext_Create(NULL, &sun) != 0)
        return NAN;
    N_Vector y = N_VNew_Serial(NEQ, sun);
    SUNMatrix A = SUNDenseMatrix(NEQ, NEQ, sun);
    double mean = NAN;
    if (y != NULL && A != NULL) {
        double *yd = N_VGetArrayPointer(y);
        yd[0] = 0.5;
        yd[1] = 1e-5;
        yd[2] = 0.5;
        int rc = jac(0.0, y, NULL, A, user_data, NULL, NULL, NULL);
        double t0 = seconds();
        for (int k = 0; k < REPEAT; k++)
            rc |= jac(0.0, y, NULL, A, user_data, NULL, NULL, NULL);
        if (rc == 0)
            mean = (seconds() - t0) / REPEAT;
    }
    SUNMatDestroy(A);
    N_VDestroy(y);
    SUNContext_Free(&sun);
    return mean;
}

typedef struct run {
    int ok;
    double y[NOUT][NEQ];
    long steps, rhs, setups, jacs, newton, newton_fails, error_fails;
    double total, jac;
} run;

static run solve(CVRhsFn rhs, CVLsJacFn jac, void *user_data, const char *name)
{
    run r = {0};
    SUNContext sun = NULL;
    if (SUNContext_Create(NULL, &sun) != 0)
        return r;
    N_Vector y = N_VNew_Serial(NEQ, sun), tol = N_VNew_Serial(NEQ, sun);
    SUNMatrix A = SUNDenseMatrix(NEQ, NEQ, sun);
    SUNLinearSolver LS =
        y != NULL && A != NULL ? SUNLinSol_Dense(y, A, sun) : NULL;
    void *cvode = CVodeCreate(CV_BDF, sun);
    if (y == NULL || tol == NULL || A == NULL || LS == NULL || cvode == NULL)
        goto done;
    double *yd = N_VGetArrayPointer(y);
    yd[0] = 1.0;
    yd[1] = 0.0;
    yd[2] = 0.0;
    for (int i = 0; i < NEQ; i++)
        N_VGetArrayPointer(tol)[i] = abstol[i];
    jac_seconds = 0.0;
    double t0 = seconds();
    if (CVodeInit(cvode, rhs, 0.0, y) != CV_SUCCESS ||
        CVodeSVtolerances(cvode, reltol, tol) != CV_SUCCESS ||
        CVodeSetUserData(cvode, user_data) != CV_SUCCESS ||
        CVodeSetLinearSolver(cvode, LS, A) != CV_SUCCESS ||
        CVodeSetJacFn(cvode, jac) != CV_SUCCESS ||
        CVodeRootInit(cvode, 2, roots) != CV_SUCCESS)
        goto done;
    printf("\n%s Jacobian\n", name);
    double tout = 0.4;
    for (int k = 0; k < NOUT;) {
        sunrealtype t = 0.0;
        int flag = CVode(cvode, tout, y, &t, CV_NORMAL);
        if (flag == CV_ROOT_RETURN) {
            int found[2] = {0, 0};
            CVodeGetRootInfo(cvode, found);
            printf("At t = %0.4e      y = %14.6e  %14.6e  %14.6e\n", t, yd[0],
                   yd[1], yd[2]);
            printf("    rootsfound[] = %3d %3d\n", found[0], found[1]);
            continue;
        }
        if (flag < 0) {
            fprintf(stderr,
                    "cvode_robertson: %s: CVode failed (%d) at "
                    "t = %g\n",
                    name, flag, t);
            goto done;
        }
        printf("At t = %0.4e      y = %14.6e  %14.6e  %14.6e\n", t, yd[0],
               yd[1], yd[2]);
        for (int i = 0; i < NEQ; i++)
            r.y[k][i] = yd[i];
        k++;
        tout *= 10.0;
    }
    r.total = seconds() - t0;
    r.jac = jac_seconds;
    long nfe_ls = 0, nge = 0;
    CVodeGetNumSteps(cvode, &r.steps);
    CVodeGetNumRhsEvals(cvode, &r.rhs);
    CVodeGetNumLinSolvSetups(cvode, &r.setups);
    CVodeGetNumErrTestFails(cvode, &r.error_fails);
    CVodeGetNumNonlinSolvIters(cvode, &r.newton);
    CVodeGetNumNonlinSolvConvFails(cvode, &r.newton_fails);
    CVodeGetNumJacEvals(cvode, &r.jacs);
    CVodeGetNumLinRhsEvals(cvode, &nfe_ls);
    CVodeGetNumGEvals(cvode, &nge);
    printf("\nFinal Statistics:\n");
    printf("nst = %-6ld nfe  = %-6ld nsetups = %-6ld nfeLS = %-6ld nje = "
           "%ld\n",
           r.steps, r.rhs, r.setups, nfe_ls, r.jacs);
    printf("nni = %-6ld ncfn = %-6ld netf = %-6ld nge = %ld\n", r.newton,
           r.newton_fails, r.error_fails, nge);
    r.ok = 1;
done:
    CVodeFree(&cvode);
    SUNLinSolFree(LS);
    SUNMatDestroy(A);
    N_VDestroy(y);
    N_VDestroy(tol);
    SUNContext_Free(&sun);
    return r;
}

int main(void)
{
    jac_program *program = record_rhs();
    if (program == NULL)
        return 1;
    jac_sundials state = {.program = program};
    printf("3-species kinetics problem (Robertson), BDF, dense Jacobian\n");
    run runs[2];
    runs[0] = solve(jac_sundials_cvode_rhs, timed_adapter_jac, &state,
                    "recorded (jac_sundials_cvode_jac)");
    runs[1] = solve(hand_rhs, timed_hand_jac, NULL, "hand-written");
    double per_call[2] = {steady(jac_sundials_cvode_jac, &state),
                          steady(hand_jac, NULL)};
    jac_sundials_release(&state);
    jac_program_free(program);

    static const char *const names[2] = {"recorded", "hand-written"};
    printf("\n%-12s %5s %5s %5s %5s %11s %14s %15s\n", "Jacobian", "steps",
           "nfe", "nje", "nni", "total (ms)", "Jacobian (ms)", "one call (us)");
    for (int k = 0; k < 2; k++)
        printf("%-12s %5ld %5ld %5ld %5ld %11.3f %14.4f %15.3f\n", names[k],
               runs[k].steps, runs[k].rhs, runs[k].jacs, runs[k].newton,
               1e3 * runs[k].total, 1e3 * runs[k].jac, 1e6 * per_call[k]);
    printf("(Jacobian: the time in the callback during the solve, the first "
           "call making\nthe plan; one call: the mean of %d calls after)\n",
           REPEAT);
    int ok = state.status == JAC_OK;
    if (!ok)
        fprintf(stderr, "FAIL: %s\n", state.message);
    /* Against SUNDIALS' published values: the difference of each
     * component in units of its tolerance rtol |y| + atol, at most 10. A
     * BDF run's global error is a few times its local tolerance, and the
     * outputs SUNDIALS' releases publish for this example differ among
     * themselves by up to 8 of these units (y2 at t = 4e10). */
    double worst = 0.0;
    for (int k = 0; k < 2; k++) {
        if (!runs[k].ok) {
            fprintf(stderr, "FAIL: the %s run did not finish\n", names[k]);
            ok = 0;
            continue;
        }
        for (int j = 0; j < NOUT; j++)
            for (int i = 0; i < NEQ; i++) {
                double want = reference[j][i];
                double err = fabs(runs[k].y[j][i] - want) /
                             (reltol * fabs(want) + abstol[i]);
                if (err > worst)
                    worst = err;
                if (!(err <= 10.0)) {
                    fprintf(stderr,
                            "FAIL: %s: y%d at output %d is %.6e, SUNDIALS' "
                            "reference %.6e\n",
                            names[k], i + 1, j, runs[k].y[j][i], want);
                    ok = 0;
                }
            }
    }
    printf("\nlargest difference from SUNDIALS' reference values: %.2f "
           "tolerances (rtol |y| + atol)\n",
           worst);
    if (runs[0].steps != runs[1].steps || runs[0].newton != runs[1].newton ||
        runs[0].jacs != runs[1].jacs) {
        fprintf(stderr, "FAIL: the two runs took different steps\n");
        ok = 0;
    }
    for (int j = 0; j < NOUT; j++)
        for (int i = 0; i < NEQ; i++)
            if (!(fabs(runs[0].y[j][i] - runs[1].y[j][i]) <=
                  1e-9 * fabs(runs[1].y[j][i]) + 1e-20)) {
                fprintf(stderr, "FAIL: the two runs differ at output %d\n", j);
                ok = 0;
            }
    if (!ok)
        return 1;
    printf("both runs agree with each other and with the reference\n");
    return 0;
}
