/*
 * A program outside the source tree, built against an installed libjacobian
 * with its SUNDIALS adapter: it proves that the installed adapter header,
 * library, CMake target and pkg-config file are enough to compile, link and
 * run. Finds the root (1, 2) of F(x) = (x0^2 - 1, x0 x1 - 2) by KINSOL's
 * Newton iteration with the adapter's system function and dense Jacobian.
 */
#include <jacobian.h>
#include <jacobian_sundials.h>

#include <kinsol/kinsol.h>
#include <math.h>
#include <nvector/nvector_serial.h>
#include <stdio.h>
#include <sundials/sundials_context.h>
#include <sunlinsol/sunlinsol_dense.h>
#include <sunmatrix/sunmatrix_dense.h>

int main(void)
{
    jac_ctx *ctx = jac_ctx_new();
    if (!ctx) {
        fprintf(stderr, "consumer_sundials: out of memory\n");
        return 1;
    }
    jac_tensor *x = jac_zeros(ctx, 1, (const int64_t[]){2});
    jac_program *program = NULL;
    if (jac_program_begin(ctx, 1, &x, 0, NULL) == JAC_OK) {
        jac_tensor *x0 = jac_slice(ctx, x, 0, 0, 1, 1);
        jac_tensor *x1 = jac_slice(ctx, x, 0, 1, 2, 1);
        jac_tensor *parts[2] = {jac_sub_scalar(ctx, jac_square(ctx, x0), 1.0),
                                jac_sub_scalar(ctx, jac_mul(ctx, x0, x1), 2.0)};
        jac_tensor *f = jac_concat(ctx, 2, parts, 0);
        jac_program_end(ctx, 1, &f, 0, &program);
    }
    jac_ctx_free(ctx);
    if (!program) {
        fprintf(stderr, "consumer_sundials: recording failed\n");
        return 1;
    }
    SUNContext sun = NULL;
    if (SUNContext_Create(NULL, &sun) != 0) {
        jac_program_free(program);
        return 1;
    }
    jac_sundials state = {.program = program};
    N_Vector u = N_VNew_Serial(2, sun), scale = N_VNew_Serial(2, sun);
    SUNMatrix J = SUNDenseMatrix(2, 2, sun);
    SUNLinearSolver LS = SUNLinSol_Dense(u, J, sun);
    void *kinsol = KINCreate(sun);
    N_VGetArrayPointer(u)[0] = 3.0;
    N_VGetArrayPointer(u)[1] = 0.5;
    N_VConst(1.0, scale);
    int flag = -99;
    if (KINInit(kinsol, jac_sundials_kinsol_sys, u) == KIN_SUCCESS &&
        KINSetUserData(kinsol, &state) == KIN_SUCCESS &&
        KINSetFuncNormTol(kinsol, 1e-12) == KIN_SUCCESS &&
        KINSetLinearSolver(kinsol, LS, J) == KIN_SUCCESS &&
        KINSetJacFn(kinsol, jac_sundials_kinsol_jac) == KIN_SUCCESS)
        flag = KINSol(kinsol, u, KIN_NONE, scale, scale);
    long iterations = 0;
    KINGetNumNonlinSolvIters(kinsol, &iterations);
    double r0 = N_VGetArrayPointer(u)[0], r1 = N_VGetArrayPointer(u)[1];
    KINFree(&kinsol);
    SUNLinSolFree(LS);
    SUNMatDestroy(J);
    N_VDestroy(u);
    N_VDestroy(scale);
    SUNContext_Free(&sun);
    jac_sundials_release(&state);
    jac_program_free(program);
    if (flag < 0 || state.status != JAC_OK || !(fabs(r0 - 1.0) < 1e-9) ||
        !(fabs(r1 - 2.0) < 1e-9)) {
        fprintf(stderr, "consumer_sundials: flag %d, x = (%g, %g): %s\n", flag,
                r0, r1, state.message);
        return 1;
    }
    printf("consumer_sundials: x = (%g, %g) after %ld iterations\n", r0, r1,
           iterations);
    return 0;
}
