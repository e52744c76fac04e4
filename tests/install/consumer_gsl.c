/*
 * A program outside the source tree, built against an installed libjacobian
 * with its GSL adapter: it proves that the installed adapter header,
 * library, CMake target and pkg-config file are enough to compile, link and
 * run. Finds the root (1, 2) of F(x) = (x0^2 - 1, x0 x1 - 2) by GSL's
 * Newton solver.
 */
#include <jacobian.h>
#include <jacobian_gsl.h>

#include <gsl/gsl_errno.h>
#include <gsl/gsl_multiroots.h>
#include <math.h>
#include <stdio.h>

int main(void)
{
    jac_ctx *ctx = jac_ctx_new();
    if (!ctx) {
        fprintf(stderr, "consumer_gsl: out of memory\n");
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
        fprintf(stderr, "consumer_gsl: recording failed\n");
        return 1;
    }
    jac_gsl state = {.program = program};
    gsl_multiroot_function_fdf fdf;
    jac_gsl_multiroot_fdf_init(&fdf, &state);
    gsl_multiroot_fdfsolver *solver =
        gsl_multiroot_fdfsolver_alloc(gsl_multiroot_fdfsolver_newton, 2);
    double start[2] = {3.0, 0.5};
    gsl_vector_view x_start = gsl_vector_view_array(start, 2);
    int status = gsl_multiroot_fdfsolver_set(solver, &fdf, &x_start.vector);
    int iterations = 0;
    for (status = GSL_CONTINUE; status == GSL_CONTINUE && iterations < 50;) {
        iterations++;
        if (gsl_multiroot_fdfsolver_iterate(solver) != GSL_SUCCESS)
            break;
        status = gsl_multiroot_test_residual(solver->f, 1e-12);
    }
    double r0 = gsl_vector_get(solver->x, 0), r1 = gsl_vector_get(solver->x, 1);
    gsl_multiroot_fdfsolver_free(solver);
    jac_gsl_release(&state);
    jac_program_free(program);
    if (status != GSL_SUCCESS || state.status != JAC_OK ||
        !(fabs(r0 - 1.0) < 1e-9) || !(fabs(r1 - 2.0) < 1e-9)) {
        fprintf(stderr, "consumer_gsl: status %d, x = (%g, %g): %s\n", status,
                r0, r1, state.message);
        return 1;
    }
    printf("consumer_gsl: x = (%g, %g) after %d iterations\n", r0, r1,
           iterations);
    return 0;
}
