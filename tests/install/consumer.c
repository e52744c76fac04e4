/*
 * A program outside the source tree, built against an installed libjacobian:
 * it proves that the installed header, libraries, CMake package and
 * pkg-config file are enough to compile, link and run.
 */
#include <jacobian.h>

#include <math.h>
#include <stdio.h>

int main(void)
{
    jac_ctx *ctx = jac_ctx_new();
    if (!ctx) {
        fprintf(stderr, "consumer: out of memory\n");
        return 1;
    }

    const int64_t shape[] = {2};
    const double values[] = {2.0, 3.0};
    jac_tensor *x = jac_tensor_new(ctx, 1, shape, values);
    jac_set_requires_grad(x, true);
    jac_tensor *y = jac_pow_scalar(ctx, x, 2.0);
    jac_tensor *jac = jac_jacobian(ctx, y, x, 0);

    /* Errors are kept by the context, so one check covers the whole chain. */
    const double *got = jac_tensor_data(jac);
    if (!got) {
        fprintf(stderr, "consumer: %s\n", jac_errmsg(ctx));
        jac_ctx_free(ctx);
        return 1;
    }

    const double want[] = {4.0, 0.0, 0.0, 6.0};
    int ok = jac_tensor_ndim(jac) == 2 && jac_tensor_numel(jac) == 4;
    for (int i = 0; ok && i < 4; i++) {
        ok = fabs(got[i] - want[i]) <= 1e-12;
    }
    printf("consumer: libjacobian %s, J %s\n", jac_version_string(),
           ok ? "== [[4, 0], [0, 6]]" : "is wrong");
    jac_ctx_free(ctx);
    return ok ? 0 : 1;
}
