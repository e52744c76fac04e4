/*
 * square: the Jacobian of y = x ** 2, and a derivative of that Jacobian.
 *
 * For y_i = x_i^2 the Jacobian is diag(2 x): at x = [2, 3] it is
 * [[4, 0], [0, 6]]. Built with JAC_CREATE_GRAPH the Jacobian is a tensor in
 * the graph like any other, so sum(J) = 2 (x_0 + x_1) can be differentiated
 * again: d(sum J)/dx = [2, 2].
 */
#include <jacobian.h>

#include <stdio.h>

/* The context keeps the first error, so one report covers a whole chain. */
static int fail(jac_ctx *ctx, const char *step)
{
    fprintf(stderr, "square: %s failed: %s\n", step, jac_errmsg(ctx));
    jac_ctx_free(ctx);
    return 1;
}

int main(void)
{
    jac_ctx *ctx = jac_ctx_new();
    if (!ctx) {
        fprintf(stderr, "square: out of memory\n");
        return 1;
    }

    const int64_t shape[] = {2};
    const double values[] = {2.0, 3.0};
    jac_tensor *x = jac_tensor_new(ctx, 1, shape, values);
    if (!x || jac_set_requires_grad(x, true) != JAC_OK) {
        return fail(ctx, "making x");
    }

    jac_tensor *y = jac_pow_scalar(ctx, x, 2.0);
    jac_tensor *jac = jac_jacobian(ctx, y, x, 0);
    if (!jac) {
        return fail(ctx, "jac_jacobian");
    }
    printf("J =\n");
    jac_tensor_print(jac, stdout);

    /* Record the Jacobian's own computation so that it has a derivative. */
    jac_tensor *jac2 = jac_jacobian(ctx, y, x, JAC_CREATE_GRAPH);
    jac_tensor *total = jac_sum(ctx, jac2);
    jac_tensor *grad = NULL;
    if (!total || jac_grad(ctx, 1, &total, NULL, 1, &x, 0, &grad) != JAC_OK) {
        return fail(ctx, "d(sum J)/dx");
    }
    printf("d(sum J)/dx =\n");
    jac_tensor_print(grad, stdout);

    jac_ctx_free(ctx);
    return 0;
}
