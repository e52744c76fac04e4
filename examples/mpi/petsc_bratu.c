/*
 * PETSc's 2-D Bratu problem (the problem of SNES tutorial ex5) solved by
 * SNES with Newton's method, its Jacobian from libjacobian: each rank
 * records its own residual (the points it owns, read from its ghosted
 * local array), makes a sparse plan of it once, and at every Newton step
 * evaluates the plan and puts its owned rows into the PETSc matrix. The
 * same solve runs with a Jacobian written by hand from the formulas and
 * with PETSc's finite differences by colouring (what -snes_fd_color
 * does); the iterations, solutions and time per Jacobian are compared.
 *
 *     mpirun -np 2 examples/petsc_bratu [-da_grid_x 128 -da_grid_y 128]
 *         [-par 6.0] [-repeats 20]
 *
 * The problem, on the unit square with u = 0 on the boundary, on an
 * mx x my grid of points (hx = 1/(mx - 1), hy = 1/(my - 1)):
 *
 *     F(u)[i,j] = u[i,j]                                   on the boundary
 *     F(u)[i,j] = (2u[i,j] - u[i-1,j] - u[i+1,j]) hy/hx
 *               + (2u[i,j] - u[i,j-1] - u[i,j+1]) hx/hy
 *               - hx hy lambda exp(u[i,j])                 inside
 *
 * Exits 1 when the libjacobian Jacobian differs from the hand-written
 * one, or when the two Newton runs differ in iterations or solution.
 *
 * SPDX-License-Identifier: MIT
 */
#include <jacobian.h>

#include <math.h>
#include <petscdmda.h>
#include <petscsnes.h>
#include <stdlib.h>
#include <string.h>

static const char help[] = "2-D Bratu by SNES with libjacobian's Jacobian\n";

typedef struct app {
    DM da;
    PetscInt mx, my;             /* the global grid */
    PetscInt xs, ys, xm, ym;     /* this rank's points */
    PetscInt gxs, gys, gxm, gym; /* with its ghost points */
    PetscReal lambda, hx, hy;
    /* libjacobian: the local residual, its plan and its pattern. */
    jac_program *residual;
    jac_sparse *plan;
    int64_t nnz, *ptr, *idx;
    double *values;
    MatStencil *cols;
    PetscScalar *row_values;
    /* Time in jac_sparse_jacobian, and its calls. */
    double seconds_plan;
    long plan_calls;
} app;

static bool on_boundary(const app *a, PetscInt i, PetscInt j)
{
    return i == 0 || j == 0 || i == a->mx - 1 || j == a->my - 1;
}

/* The residual, by hand, on this rank's points. */
static PetscErrorCode form_function(SNES snes, Vec X, Vec F, void *ctx)
{
    app *a = ctx;
    Vec local;
    const PetscScalar **u;
    PetscScalar **f;
    (void)snes;
    PetscFunctionBeginUser;
    PetscCall(DMGetLocalVector(a->da, &local));
    PetscCall(DMGlobalToLocalBegin(a->da, X, INSERT_VALUES, local));
    PetscCall(DMGlobalToLocalEnd(a->da, X, INSERT_VALUES, local));
    PetscCall(DMDAVecGetArrayRead(a->da, local, &u));
    PetscCall(DMDAVecGetArray(a->da, F, &f));
    double sx = a->hy / a->hx, sy = a->hx / a->hy, s = a->hx * a->hy;
    for (PetscInt j = a->ys; j < a->ys + a->ym; j++)
        for (PetscInt i = a->xs; i < a->xs + a->xm; i++) {
            if (on_boundary(a, i, j)) {
                f[j][i] = u[j][i];
                continue;
            }
            double c = u[j][i];
            f[j][i] = (2.0 * c - u[j][i - 1] - u[j][i + 1]) * sx +
                      (2.0 * c - u[j - 1][i] - u[j + 1][i]) * sy -
                      s * a->lambda * exp(c);
        }
    PetscCall(DMDAVecRestoreArrayRead(a->da, local, &u));
    PetscCall(DMDAVecRestoreArray(a->da, F, &f));
    PetscCall(DMRestoreLocalVector(a->da, &local));
    PetscFunctionReturn(0);
}

/* The Jacobian, by hand, from the formulas above. */
static PetscErrorCode form_jacobian_by_hand(SNES snes, Vec X, Mat J, Mat P,
                                            void *ctx)
{
    app *a = ctx;
    Vec local;
    const PetscScalar **u;
    (void)snes;
    (void)J;
    PetscFunctionBeginUser;
    PetscCall(DMGetLocalVector(a->da, &local));
    PetscCall(DMGlobalToLocalBegin(a->da, X, INSERT_VALUES, local));
    PetscCall(DMGlobalToLocalEnd(a->da, X, INSERT_VALUES, local));
    PetscCall(DMDAVecGetArrayRead(a->da, local, &u));
    double sx = a->hy / a->hx, sy = a->hx / a->hy, s = a->hx * a->hy;
    for (PetscInt j = a->ys; j < a->ys + a->ym; j++)
        for (PetscInt i = a->xs; i < a->xs + a->xm; i++) {
            MatStencil row = {.i = i, .j = j}, col[5];
            PetscScalar v[5];
            if (on_boundary(a, i, j)) {
                v[0] = 1.0;
                PetscCall(
                    MatSetValuesStencil(P, 1, &row, 1, &row, v, INSERT_VALUES));
                continue;
            }
            col[0] = (MatStencil){.i = i, .j = j - 1};
            col[1] = (MatStencil){.i = i - 1, .j = j};
            col[2] = row;
            col[3] = (MatStencil){.i = i + 1, .j = j};
            col[4] = (MatStencil){.i = i, .j = j + 1};
            v[0] = v[4] = -sy;
            v[1] = v[3] = -sx;
            v[2] = 2.0 * (sx + sy) - s * a->lambda * exp(u[j][i]);
            PetscCall(
                MatSetValuesStencil(P, 1, &row, 5, col, v, INSERT_VALUES));
        }
    PetscCall(DMDAVecRestoreArrayRead(a->da, local, &u));
    PetscCall(DMRestoreLocalVector(a->da, &local));
    PetscCall(MatAssemblyBegin(P, MAT_FINAL_ASSEMBLY));
    PetscCall(MatAssemblyEnd(P, MAT_FINAL_ASSEMBLY));
    PetscFunctionReturn(0);
}

/* The same residual as ops on this rank's ghosted local array G (gym x
 * gxm, x fastest), giving the xm x ym owned points: G padded with a ring
 * of zeros so that every owned point has four neighbours to slice, and
 * the boundary rows chosen by constant masks. */
static jac_tensor *recorded_residual(jac_ctx *ctx, const app *a, jac_tensor *G,
                                     jac_tensor *inside, jac_tensor *outside)
{
    int64_t ox = a->xs - a->gxs + 1, oy = a->ys - a->gys + 1;
    int64_t xm = a->xm, ym = a->ym;
    jac_tensor *p =
        jac_pad(ctx, G, (const int64_t[]){1, 1}, (const int64_t[]){1, 1});
#define PART(dy, dx)                                                           \
    jac_slice(ctx, jac_slice(ctx, p, 0, oy + (dy), oy + (dy) + ym, 1), 1,      \
              ox + (dx), ox + (dx) + xm, 1)
    jac_tensor *c = PART(0, 0);
    jac_tensor *ddx = jac_sub(ctx, jac_mul_scalar(ctx, c, 2.0),
                              jac_add(ctx, PART(0, -1), PART(0, 1)));
    jac_tensor *ddy = jac_sub(ctx, jac_mul_scalar(ctx, c, 2.0),
                              jac_add(ctx, PART(-1, 0), PART(1, 0)));
#undef PART
    jac_tensor *f = jac_add(ctx, jac_mul_scalar(ctx, ddx, a->hy / a->hx),
                            jac_mul_scalar(ctx, ddy, a->hx / a->hy));
    f = jac_sub(
        ctx, f,
        jac_mul_scalar(ctx, jac_exp(ctx, c), a->hx * a->hy * a->lambda));
    return jac_add(ctx, jac_mul(ctx, inside, f), jac_mul(ctx, outside, c));
}

/* Records this rank's residual and makes its sparse plan (once). */
static PetscErrorCode record(app *a)
{
    PetscFunctionBeginUser;
    int64_t n_owned = (int64_t)a->xm * a->ym;
    double *in = malloc((size_t)n_owned * sizeof(double));
    double *out = malloc((size_t)n_owned * sizeof(double));
    double *g0 = calloc((size_t)(a->gxm * a->gym), sizeof(double));
    PetscCheck(in && out && g0, PETSC_COMM_SELF, PETSC_ERR_MEM,
               "out of memory");
    for (PetscInt j = 0; j < a->ym; j++)
        for (PetscInt i = 0; i < a->xm; i++) {
            bool b = on_boundary(a, a->xs + i, a->ys + j);
            in[j * a->xm + i] = b ? 0.0 : 1.0;
            out[j * a->xm + i] = b ? 1.0 : 0.0;
        }
    jac_ctx *ctx = jac_ctx_new();
    PetscCheck(ctx, PETSC_COMM_SELF, PETSC_ERR_MEM, "out of memory");
    int64_t gshape[2] = {a->gym, a->gxm}, oshape[2] = {a->ym, a->xm};
    jac_tensor *G = jac_tensor_new(ctx, 2, gshape, g0);
    jac_tensor *inside = jac_tensor_new(ctx, 2, oshape, in);
    jac_tensor *outside = jac_tensor_new(ctx, 2, oshape, out);
    a->residual = NULL;
    if (jac_program_begin(ctx, 1, &G, 0, NULL) == JAC_OK) {
        jac_tensor *f = recorded_residual(ctx, a, G, inside, outside);
        (void)jac_program_end(ctx, 1, &f, 0, &a->residual);
    }
    PetscCheck(a->residual, PETSC_COMM_SELF, PETSC_ERR_LIB,
               "recording the residual: %s", jac_errmsg(ctx));
    jac_ctx_free(ctx);
    free(in);
    free(out);
    free(g0);
    /* One thread per rank: the ranks share the cores. */
    (void)jac_program_set_threads(a->residual, 1);
    jac_status st = jac_sparse_jacobian_plan(a->residual, NULL, &a->plan);
    PetscCheck(st == JAC_OK, PETSC_COMM_SELF, PETSC_ERR_LIB, "plan: %s",
               jac_program_errmsg());
    a->nnz = jac_sparse_nnz(a->plan);
    a->ptr = malloc((size_t)(n_owned + 1) * sizeof(int64_t));
    a->idx = malloc((size_t)a->nnz * sizeof(int64_t));
    a->values = malloc((size_t)a->nnz * sizeof(double));
    a->cols = malloc((size_t)a->nnz * sizeof(MatStencil));
    a->row_values = malloc((size_t)a->nnz * sizeof(PetscScalar));
    PetscCheck(a->ptr && a->idx && a->values && a->cols && a->row_values,
               PETSC_COMM_SELF, PETSC_ERR_MEM, "out of memory");
    st = jac_sparse_csr(a->plan, JAC_INDEX_INT64, a->ptr, a->idx);
    PetscCheck(st == JAC_OK, PETSC_COMM_SELF, PETSC_ERR_LIB, "csr: %s",
               jac_program_errmsg());
    PetscFunctionReturn(0);
}

/* The Jacobian from libjacobian: the plan's values at the ghosted local
 * array, put row by row into the rows this rank owns. */
static PetscErrorCode form_jacobian_recorded(SNES snes, Vec X, Mat J, Mat P,
                                             void *ctx)
{
    app *a = ctx;
    Vec local;
    const PetscScalar *u;
    (void)snes;
    (void)J;
    PetscFunctionBeginUser;
    PetscCall(DMGetLocalVector(a->da, &local));
    PetscCall(DMGlobalToLocalBegin(a->da, X, INSERT_VALUES, local));
    PetscCall(DMGlobalToLocalEnd(a->da, X, INSERT_VALUES, local));
    PetscCall(VecGetArrayRead(local, &u));
    const double *args[1] = {u};
    double t0 = MPI_Wtime();
    jac_status st = jac_sparse_jacobian(a->plan, args, a->values, NULL);
    a->seconds_plan += MPI_Wtime() - t0;
    a->plan_calls++;
    PetscCall(VecRestoreArrayRead(local, &u));
    PetscCall(DMRestoreLocalVector(a->da, &local));
    PetscCheck(st == JAC_OK, PETSC_COMM_SELF, PETSC_ERR_LIB,
               "jac_sparse_jacobian: %s", jac_program_errmsg());
    for (int64_t r = 0; r < (int64_t)a->xm * a->ym; r++) {
        MatStencil row = {.i = a->xs + (PetscInt)(r % a->xm),
                          .j = a->ys + (PetscInt)(r / a->xm)};
        PetscInt n = 0;
        for (int64_t t = a->ptr[r]; t < a->ptr[r + 1]; t++, n++) {
            int64_t c = a->idx[t];
            a->cols[n] = (MatStencil){.i = a->gxs + (PetscInt)(c % a->gxm),
                                      .j = a->gys + (PetscInt)(c / a->gxm)};
            a->row_values[n] = a->values[t];
        }
        PetscCall(MatSetValuesStencil(P, 1, &row, n, a->cols, a->row_values,
                                      INSERT_VALUES));
    }
    PetscCall(MatAssemblyBegin(P, MAT_FINAL_ASSEMBLY));
    PetscCall(MatAssemblyEnd(P, MAT_FINAL_ASSEMBLY));
    PetscFunctionReturn(0);
}

enum { RECORDED, BY_HAND, FD_COLOR, NMETHODS };
static const char *const method_name[NMETHODS] = {
    "libjacobian (recorded, sparse plan)", "hand-written",
    "finite differences by colouring"};

typedef struct outcome {
    PetscInt iterations;
    SNESConvergedReason reason;
    PetscReal fnorm;
    double per_jacobian; /* seconds, slowest rank, median */
    Vec solution;
} outcome;

static int by_value(const void *x, const void *y)
{
    double p = *(const double *)x, q = *(const double *)y;
    return (p > q) - (p < q);
}

/* Newton from u = 0 with the method's Jacobian; then the median time of
 * a Jacobian at the solution (the slowest rank's). */
static PetscErrorCode solve(app *a, int method, int repeats, outcome *o)
{
    SNES snes;
    Vec x, r;
    Mat J;
    PetscFunctionBeginUser;
    PetscCall(DMCreateGlobalVector(a->da, &x));
    PetscCall(VecDuplicate(x, &r));
    PetscCall(DMCreateMatrix(a->da, &J));
    PetscCall(SNESCreate(PETSC_COMM_WORLD, &snes));
    PetscCall(SNESSetDM(snes, a->da));
    PetscCall(SNESSetFunction(snes, r, form_function, a));
    if (method == RECORDED)
        PetscCall(SNESSetJacobian(snes, J, J, form_jacobian_recorded, a));
    else if (method == BY_HAND)
        PetscCall(SNESSetJacobian(snes, J, J, form_jacobian_by_hand, a));
    else /* as -snes_fd_color: the DM's colouring, set up by SNES */
        PetscCall(PetscOptionsSetValue(NULL, "-snes_fd_color", NULL));
    PetscCall(SNESSetTolerances(snes, 1e-12, 1e-10, PETSC_DEFAULT,
                                PETSC_DEFAULT, PETSC_DEFAULT));
    PetscCall(SNESSetFromOptions(snes));
    if (method == FD_COLOR)
        PetscCall(PetscOptionsClearValue(NULL, "-snes_fd_color"));
    PetscCall(VecSet(x, 0.0));
    PetscCall(SNESSolve(snes, NULL, x));
    PetscCall(SNESGetIterationNumber(snes, &o->iterations));
    PetscCall(SNESGetConvergedReason(snes, &o->reason));
    PetscCall(SNESComputeFunction(snes, x, r));
    PetscCall(VecNorm(r, NORM_2, &o->fnorm));
    double *t = malloc((size_t)repeats * sizeof(double));
    PetscCheck(t, PETSC_COMM_SELF, PETSC_ERR_MEM, "out of memory");
    Mat A, B; /* the solver's own (for finite differences, its DM's) */
    PetscCall(SNESGetJacobian(snes, &A, &B, NULL, NULL));
    PetscCall(SNESComputeJacobian(snes, x, A, B)); /* warm-up */
    for (int k = 0; k < repeats; k++) {
        PetscCallMPI(MPI_Barrier(PETSC_COMM_WORLD));
        double t0 = MPI_Wtime();
        PetscCall(SNESComputeJacobian(snes, x, A, B));
        double mine = MPI_Wtime() - t0;
        PetscCallMPI(MPI_Allreduce(&mine, &t[k], 1, MPI_DOUBLE, MPI_MAX,
                                   PETSC_COMM_WORLD));
    }
    qsort(t, (size_t)repeats, sizeof *t, by_value);
    o->per_jacobian = t[repeats / 2];
    free(t);
    o->solution = x;
    PetscCall(SNESDestroy(&snes));
    PetscCall(VecDestroy(&r));
    PetscCall(MatDestroy(&J));
    PetscFunctionReturn(0);
}

/* ||J_recorded - J_by_hand||_F / ||J_by_hand||_F at a point away from 0. */
static PetscErrorCode compare_jacobians(app *a, PetscReal *gap)
{
    Vec x;
    Mat A, B;
    PetscFunctionBeginUser;
    PetscCall(DMCreateGlobalVector(a->da, &x));
    PetscCall(DMCreateMatrix(a->da, &A));
    PetscCall(DMCreateMatrix(a->da, &B));
    PetscScalar **u;
    PetscCall(DMDAVecGetArray(a->da, x, &u));
    for (PetscInt j = a->ys; j < a->ys + a->ym; j++)
        for (PetscInt i = a->xs; i < a->xs + a->xm; i++)
            u[j][i] = 0.3 * sin(0.7 * (double)i + 0.3 * (double)j + 0.1);
    PetscCall(DMDAVecRestoreArray(a->da, x, &u));
    PetscCall(form_jacobian_recorded(NULL, x, A, A, a));
    PetscCall(form_jacobian_by_hand(NULL, x, B, B, a));
    PetscReal norm;
    PetscCall(MatNorm(B, NORM_FROBENIUS, &norm));
    PetscCall(MatAXPY(A, -1.0, B, DIFFERENT_NONZERO_PATTERN));
    PetscCall(MatNorm(A, NORM_FROBENIUS, gap));
    *gap /= norm;
    PetscCall(VecDestroy(&x));
    PetscCall(MatDestroy(&A));
    PetscCall(MatDestroy(&B));
    PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
    app a = {0};
    PetscCall(PetscInitialize(&argc, &argv, NULL, help));
    a.lambda = 6.0;
    PetscInt repeats = 20;
    PetscCall(PetscOptionsGetReal(NULL, NULL, "-par", &a.lambda, NULL));
    PetscCall(PetscOptionsGetInt(NULL, NULL, "-repeats", &repeats, NULL));
    PetscCheck(a.lambda >= 0.0 && a.lambda <= 6.8, PETSC_COMM_WORLD,
               PETSC_ERR_ARG_OUTOFRANGE, "lambda %g: give 0 to 6.8",
               (double)a.lambda);
    PetscCheck(repeats >= 1, PETSC_COMM_WORLD, PETSC_ERR_ARG_OUTOFRANGE,
               "-repeats %d: give at least 1", (int)repeats);
    PetscCall(DMDACreate2d(PETSC_COMM_WORLD, DM_BOUNDARY_NONE, DM_BOUNDARY_NONE,
                           DMDA_STENCIL_STAR, 64, 64, PETSC_DECIDE,
                           PETSC_DECIDE, 1, 1, NULL, NULL, &a.da));
    PetscCall(DMSetFromOptions(a.da));
    PetscCall(DMSetUp(a.da));
    PetscCall(DMDAGetInfo(a.da, NULL, &a.mx, &a.my, NULL, NULL, NULL, NULL,
                          NULL, NULL, NULL, NULL, NULL, NULL));
    PetscCall(DMDAGetCorners(a.da, &a.xs, &a.ys, NULL, &a.xm, &a.ym, NULL));
    PetscCall(
        DMDAGetGhostCorners(a.da, &a.gxs, &a.gys, NULL, &a.gxm, &a.gym, NULL));
    a.hx = 1.0 / (PetscReal)(a.mx - 1);
    a.hy = 1.0 / (PetscReal)(a.my - 1);
    double t0 = MPI_Wtime();
    PetscCall(record(&a));
    double setup = MPI_Wtime() - t0;

    PetscReal gap;
    PetscCall(compare_jacobians(&a, &gap));
    outcome o[NMETHODS];
    for (int m = 0; m < NMETHODS; m++)
        PetscCall(solve(&a, m, (int)repeats, &o[m]));
    PetscReal dsol[NMETHODS] = {0};
    for (int m = 1; m < NMETHODS; m++) {
        Vec d;
        PetscCall(VecDuplicate(o[0].solution, &d));
        PetscCall(VecWAXPY(d, -1.0, o[m].solution, o[0].solution));
        PetscCall(VecNorm(d, NORM_INFINITY, &dsol[m]));
        PetscCall(VecDestroy(&d));
    }
    PetscReal umax;
    PetscCall(VecMax(o[0].solution, NULL, &umax));
    PetscMPIInt size;
    PetscCallMPI(MPI_Comm_size(PETSC_COMM_WORLD, &size));
    int64_t nnz_all = 0, nnz = a.nnz;
    PetscCallMPI(MPI_Reduce(&nnz, &nnz_all, 1, MPI_INT64_T, MPI_SUM, 0,
                            PETSC_COMM_WORLD));
    PetscCall(PetscPrintf(
        PETSC_COMM_WORLD,
        "Bratu %d x %d, lambda %g, %d ranks: max u = %.12f\n"
        "libjacobian: each rank's residual recorded and planned once "
        "(%.1f ms; %d colours on rank 0, %lld entries in all)\n"
        "||J_libjacobian - J_hand||_F / ||J_hand||_F = %.3g\n",
        (int)a.mx, (int)a.my, (double)a.lambda, (int)size, (double)umax,
        1e3 * setup, (int)jac_sparse_colors(a.plan), (long long)nnz_all,
        (double)gap));
    PetscCall(PetscPrintf(PETSC_COMM_WORLD, "%-36s %10s %8s %12s %14s %16s\n",
                          "Jacobian", "Newton its", "reason", "final ||F||",
                          "per Jacobian", "max |u - u_lib|"));
    double plan_mean = a.seconds_plan / (double)a.plan_calls, plan_worst;
    PetscCallMPI(MPI_Allreduce(&plan_mean, &plan_worst, 1, MPI_DOUBLE, MPI_MAX,
                               PETSC_COMM_WORLD));
    for (int m = 0; m < NMETHODS; m++)
        PetscCall(PetscPrintf(
            PETSC_COMM_WORLD, "%-36s %10d %8d %12.3e %11.3f ms %16.3g\n",
            method_name[m], (int)o[m].iterations, (int)o[m].reason,
            (double)o[m].fnorm, 1e3 * o[m].per_jacobian, (double)dsol[m]));
    PetscCall(PetscPrintf(PETSC_COMM_WORLD,
                          "of a libjacobian Jacobian, jac_sparse_jacobian "
                          "takes %.3f ms (mean, slowest rank); the rest is "
                          "MatSetValuesStencil and assembly\n",
                          1e3 * plan_worst));
    bool ok = gap < 1e-13 && o[RECORDED].reason > 0 && o[BY_HAND].reason > 0 &&
              o[RECORDED].iterations == o[BY_HAND].iterations &&
              dsol[BY_HAND] < 1e-10 && o[FD_COLOR].reason > 0 &&
              dsol[FD_COLOR] < 1e-6;
    if (!ok)
        PetscCall(PetscPrintf(PETSC_COMM_WORLD,
                              "FAILED: the Jacobians or the runs differ\n"));
    for (int m = 0; m < NMETHODS; m++)
        PetscCall(VecDestroy(&o[m].solution));
    jac_sparse_free(a.plan);
    jac_program_free(a.residual);
    free(a.ptr);
    free(a.idx);
    free(a.values);
    free(a.cols);
    free(a.row_values);
    PetscCall(DMDestroy(&a.da));
    PetscCall(PetscFinalize());
    return ok ? 0 : 1;
}
