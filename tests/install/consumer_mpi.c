/*
 * A program outside the source tree, built against an installed libjacobian
 * with its MPI component: it proves that the installed header, library,
 * CMake target and pkg-config file are enough to compile, link and run.
 * Run as one MPI process (no mpirun needed), it computes the Jacobian of
 * F(x) = (x0^2 - 1, x0 x1 - 2) at (3, 0.5): ((6, 0), (0.5, 3)).
 */
#include <jacobian.h>
#include <jacobian_mpi.h>

#include <math.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    jac_ctx *ctx = jac_ctx_new();
    jac_program *program = NULL;
    if (ctx != NULL) {
        jac_tensor *x = jac_zeros(ctx, 1, (const int64_t[]){2});
        if (jac_program_begin(ctx, 1, &x, 0, NULL) == JAC_OK) {
            jac_tensor *x0 = jac_slice(ctx, x, 0, 0, 1, 1);
            jac_tensor *x1 = jac_slice(ctx, x, 0, 1, 2, 1);
            jac_tensor *parts[2] = {
                jac_sub_scalar(ctx, jac_square(ctx, x0), 1.0),
                jac_sub_scalar(ctx, jac_mul(ctx, x0, x1), 2.0)};
            jac_tensor *f = jac_concat(ctx, 2, parts, 0);
            jac_program_end(ctx, 1, &f, 0, &program);
        }
        jac_ctx_free(ctx);
    }
    if (program == NULL) {
        fprintf(stderr, "consumer_mpi: recording failed\n");
        MPI_Finalize();
        return 1;
    }
    const double x[2] = {3.0, 0.5};
    const double *args[1] = {x};
    double J[4];
    jac_mpi state = {.comm = MPI_COMM_WORLD};
    jac_status st = jac_mpi_jacobian(&state, program, args, JAC_MPI_AUTO, J);
    jac_mpi_release(&state);
    jac_program_free(program);
    MPI_Finalize();
    if (st != JAC_OK || fabs(J[0] - 6.0) > 1e-15 || fabs(J[1]) > 1e-15 ||
        fabs(J[2] - 0.5) > 1e-15 || fabs(J[3] - 3.0) > 1e-15) {
        fprintf(stderr, "consumer_mpi: status %d, J = (%g, %g, %g, %g): %s\n",
                (int)st, J[0], J[1], J[2], J[3], state.message);
        return 1;
    }
    printf("consumer_mpi: ok (J = ((6, 0), (0.5, 3)))\n");
    return 0;
}
