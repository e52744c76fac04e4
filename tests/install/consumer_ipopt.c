/*
 * A program outside the source tree, built against an installed libjacobian
 * with its IPOPT adapter: it proves that the installed adapter header,
 * library, CMake target and pkg-config file are enough to compile, link and
 * run. Minimises (x0 - 1)^2 + (x1 - 2)^2 subject to x0 + x1 = 1 by IPOPT;
 * the optimum is x = (0, 1).
 */
#include <jacobian.h>
#include <jacobian_ipopt.h>

#include <IpStdCInterface.h>
#include <math.h>
#include <stdio.h>

int main(void)
{
    jac_ctx *ctx = jac_ctx_new();
    if (!ctx) {
        fprintf(stderr, "consumer_ipopt: out of memory\n");
        return 1;
    }
    jac_tensor *x = jac_zeros(ctx, 1, (const int64_t[]){2});
    jac_program *program = NULL;
    if (jac_program_begin(ctx, 1, &x, 0, NULL) == JAC_OK) {
        jac_tensor *target = jac_arange(ctx, 1.0, 3.0, 1.0);
        jac_tensor *outputs[2] = {
            jac_sum(ctx, jac_square(ctx, jac_sub(ctx, x, target))),
            jac_reshape(ctx, jac_sum(ctx, x), 1, (const int64_t[]){1})};
        jac_program_end(ctx, 2, outputs, 0, &program);
    }
    jac_ctx_free(ctx);
    if (!program) {
        fprintf(stderr, "consumer_ipopt: recording failed\n");
        return 1;
    }
    jac_ipopt state = {.program = program};
    Number x_L[2] = {-1e20, -1e20}, x_U[2] = {1e20, 1e20};
    Number g_L[1] = {1.0}, g_U[1] = {1.0};
    IpoptProblem nlp = jac_ipopt_create(&state, x_L, x_U, g_L, g_U);
    Number xs[2] = {0.0, 0.0}, f = NAN;
    enum ApplicationReturnStatus result = Internal_Error;
    if (nlp != NULL) {
        AddIpoptIntOption(nlp, "print_level", 0);
        AddIpoptStrOption(nlp, "sb", "yes");
        result = IpoptSolve(nlp, xs, NULL, &f, NULL, NULL, NULL, &state);
        FreeIpoptProblem(nlp);
    }
    jac_ipopt_release(&state);
    jac_program_free(program);
    if (result != Solve_Succeeded || state.status != JAC_OK ||
        !(fabs(xs[0]) < 1e-7) || !(fabs(xs[1] - 1.0) < 1e-7)) {
        fprintf(stderr, "consumer_ipopt: result %d, x = (%g, %g): %s\n",
                (int)result, xs[0], xs[1], state.message);
        return 1;
    }
    printf("consumer_ipopt: x = (%g, %g), f = %g\n", xs[0], xs[1], f);
    return 0;
}
