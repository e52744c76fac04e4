/*
 * hessian: the Hessian of the Rosenbrock function, by differentiating twice.
 *
 *   f(x) = sum_{i=0}^{n-2} 100 (x[i+1] - x[i]^2)^2 + (1 - x[i])^2
 *
 * The gradient is built with JAC_CREATE_GRAPH, which makes it a tensor of
 * the graph that can be differentiated again; its Jacobian is the Hessian.
 * Two checks follow: the Hessian is symmetric (its (i, j) and (j, i) entries
 * come from different backward passes, so this is not automatic), and it
 * equals the closed form, which is tridiagonal.
 */
#include <jacobian.h>

#include <math.h>
#include <stdio.h>

#define N 8

/* The context keeps the first error, so one report covers a whole chain. */
static int fail(jac_ctx *ctx, const char *step)
{
    fprintf(stderr, "hessian: %s failed: %s\n", step, jac_errmsg(ctx));
    jac_ctx_free(ctx);
    return 1;
}

/* Vectorised as in NumPy, with no loop over i: head = x[:-1], tail = x[1:]. */
static jac_tensor *rosenbrock(jac_ctx *ctx, jac_tensor *x)
{
    jac_tensor *head = jac_slice(ctx, x, 0, 0, -1, 1);
    jac_tensor *tail = jac_slice(ctx, x, 0, 1, N, 1);
    jac_tensor *valley = jac_sub(ctx, tail, jac_pow_scalar(ctx, head, 2.0));
    jac_tensor *steep =
        jac_mul_scalar(ctx, jac_pow_scalar(ctx, valley, 2.0), 100.0);
    jac_tensor *gentle =
        jac_pow_scalar(ctx, jac_rsub_scalar(ctx, 1.0, head), 2.0);
    return jac_sum(ctx, jac_add(ctx, steep, gentle));
}

/* The closed-form Hessian entry (i, j), to check the computed one against. */
static double exact_hessian(const double *x, int i, int j)
{
    if (i == j) {
        double h = i > 0 ? 200.0 : 0.0;
        if (i < N - 1) {
            h += 2.0 - 400.0 * (x[i + 1] - 3.0 * x[i] * x[i]);
        }
        return h;
    }
    if (j == i + 1) {
        return -400.0 * x[i];
    }
    if (i == j + 1) {
        return -400.0 * x[j];
    }
    return 0.0;
}

int main(void)
{
    jac_ctx *ctx = jac_ctx_new();
    if (!ctx) {
        fprintf(stderr, "hessian: out of memory\n");
        return 1;
    }

    /* A point away from the minimum at all ones, where H has no pattern. */
    double values[N];
    for (int j = 0; j < N; j++) {
        values[j] = 0.5 * sin(0.3 * j + 0.7);
    }
    const int64_t shape[] = {N};
    jac_tensor *x = jac_tensor_new(ctx, 1, shape, values);
    if (!x || jac_set_requires_grad(x, true) != JAC_OK) {
        return fail(ctx, "making x");
    }

    jac_tensor *f = rosenbrock(ctx, x);
    jac_tensor *grad = NULL;
    if (!f ||
        jac_grad(ctx, 1, &f, NULL, 1, &x, JAC_CREATE_GRAPH, &grad) != JAC_OK) {
        return fail(ctx, "gradient");
    }
    jac_tensor *hess = jac_jacobian(ctx, grad, x, 0);
    if (!hess) {
        return fail(ctx, "Hessian");
    }
    printf("f(x) = %.17g\nH =\n", jac_tensor_item(f));
    jac_tensor_print(hess, stdout);

    const double *h = jac_tensor_data(hess);
    double asymmetry = 0.0;
    double error = 0.0;
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < N; j++) {
            asymmetry = fmax(asymmetry, fabs(h[i * N + j] - h[j * N + i]));
            error =
                fmax(error, fabs(h[i * N + j] - exact_hessian(values, i, j)));
        }
    }
    int symmetric = asymmetry <= 1e-12;
    int exact = error <= 1e-9;
    printf("max |H - H^T| = %.3g (%s)\n", asymmetry,
           symmetric ? "symmetric" : "NOT symmetric");
    printf("max |H - closed form| = %.3g (%s)\n", error,
           exact ? "matches" : "DOES NOT match");

    jac_ctx_free(ctx);
    return symmetric && exact ? 0 : 1;
}
