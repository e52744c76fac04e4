/*
 * A program outside the source tree, built against an installed libjacobian
 * with its NLopt adapter: it proves that the installed adapter header,
 * library, CMake target and pkg-config file are enough to compile, link and
 * run. Minimises sum((x - 1)^2) over two variables by L-BFGS.
 */
#include <jacobian.h>
#include <jacobian_nlopt.h>

#include <math.h>
#include <nlopt.h>
#include <stdio.h>

int main(void)
{
    jac_ctx *ctx = jac_ctx_new();
    if (!ctx) {
        fprintf(stderr, "consumer_nlopt: out of memory\n");
        return 1;
    }
    jac_tensor *x = jac_zeros(ctx, 1, (const int64_t[]){2});
    jac_program *program = NULL;
    if (jac_program_begin(ctx, 1, &x, 0, NULL) == JAC_OK) {
        jac_tensor *f =
            jac_sum(ctx, jac_square(ctx, jac_sub_scalar(ctx, x, 1.0)));
        jac_program_end(ctx, 1, &f, 0, &program);
    }
    jac_ctx_free(ctx);
    if (!program) {
        fprintf(stderr, "consumer_nlopt: recording failed\n");
        return 1;
    }
    nlopt_opt opt = nlopt_create(NLOPT_LD_LBFGS, 2);
    jac_nlopt state = {.program = program, .opt = opt};
    nlopt_set_min_objective(opt, jac_nlopt_objective, &state);
    nlopt_set_xtol_rel(opt, 1e-10);
    double xs[2] = {-3.0, 5.0}, fmin = NAN;
    nlopt_result result = nlopt_optimize(opt, xs, &fmin);
    nlopt_destroy(opt);
    jac_program_free(program);
    if (result < 0 || state.status != JAC_OK || !(fabs(xs[0] - 1.0) < 1e-6) ||
        !(fabs(xs[1] - 1.0) < 1e-6)) {
        fprintf(stderr, "consumer_nlopt: result %d, x = (%g, %g): %s\n",
                (int)result, xs[0], xs[1], state.message);
        return 1;
    }
    printf("consumer_nlopt: x = (%g, %g) after %lu evaluations\n", xs[0], xs[1],
           state.evaluations);
    return 0;
}
