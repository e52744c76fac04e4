/*
 * A training loop: logistic regression by gradient descent, the parameters
 * updated in place.
 *
 * 200 points in the plane, labelled by which side of the line
 * 1.5 x0 - 2 x1 + 0.5 = 0 they lie on (with a few labels flipped), are fitted
 * by p = sigmoid(X w + b) minimising the mean cross-entropy. Each step takes
 * the gradient, then replaces w and b by w - lr g in place: their addresses
 * stay, so nothing that holds them needs updating, and they keep requiring
 * gradients. The step runs in a scope, so memory stays flat.
 *
 * SPDX-License-Identifier: MIT
 */
#include <jacobian.h>

#include <math.h>
#include <stdio.h>

enum { POINTS = 200, STEPS = 300 };

/* Mean binary cross-entropy of sigmoid(X w + b) against labels y, written
 * stably as mean(softplus(z) - y z) with z = X w + b. */
static jac_tensor *loss(jac_ctx *ctx, jac_tensor *X, jac_tensor *y,
                        jac_tensor *w, jac_tensor *b)
{
    jac_tensor *z = jac_add(ctx, jac_matmul(ctx, X, w), b);
    return jac_mean(ctx,
                    jac_sub(ctx, jac_softplus(ctx, z), jac_mul(ctx, y, z)));
}

int main(void)
{
    jac_ctx *ctx = jac_ctx_new();
    if (ctx == NULL)
        return 1;
    /* The data: a deterministic scatter, labelled by the line. */
    double xs[POINTS * 2], ys[POINTS];
    for (int i = 0; i < POINTS; i++) {
        double x0 = 2.0 * sin(1.7 * i + 0.3), x1 = 2.0 * cos(2.3 * i + 1.1);
        xs[2 * i] = x0;
        xs[2 * i + 1] = x1;
        ys[i] = 1.5 * x0 - 2.0 * x1 + 0.5 > 0.0 ? 1.0 : 0.0;
        if (i % 37 == 0)
            ys[i] = 1.0 - ys[i]; /* a little label noise */
    }
    jac_tensor *X = jac_tensor_new(ctx, 2, (int64_t[]){POINTS, 2}, xs);
    jac_tensor *y = jac_tensor_new(ctx, 1, (int64_t[]){POINTS}, ys);
    jac_tensor *w = jac_zeros(ctx, 1, (int64_t[]){2});
    jac_tensor *b = jac_zeros(ctx, 0, NULL);
    jac_set_requires_grad(w, true);
    jac_set_requires_grad(b, true);
    if (X == NULL || y == NULL || w == NULL || b == NULL) {
        fprintf(stderr, "setup: %s\n", jac_errmsg(ctx));
        return 1;
    }

    const double lr = 0.5;
    double first = NAN, last = NAN;
    for (int step = 0; step < STEPS; step++) {
        jac_scope mark = jac_scope_begin(ctx);
        jac_tensor *params[2] = {w, b}, *g[2] = {NULL, NULL};
        jac_tensor *l = loss(ctx, X, y, w, b);
        jac_status st =
            l ? jac_grad(ctx, 1, &l, NULL, 2, params, 0, g) : jac_errcode(ctx);
        /* w = w - lr g, b = b - lr g_b: new values, same tensors. */
        for (int k = 0; k < 2 && st == JAC_OK; k++)
            st = jac_tensor_assign(
                params[k],
                jac_sub(ctx, params[k], jac_mul_scalar(ctx, g[k], lr)));
        if (st != JAC_OK) {
            fprintf(stderr, "step %d: %s\n", step, jac_errmsg(ctx));
            jac_ctx_free(ctx);
            return 1;
        }
        last = jac_tensor_item(l);
        if (step == 0)
            first = last;
        if (step % 50 == 0 || step == STEPS - 1)
            printf("step %3d  loss %.6f  w = [%.4f, %.4f]  b = %.4f\n", step,
                   last, jac_tensor_data(w)[0], jac_tensor_data(w)[1],
                   jac_tensor_item(b));
        jac_scope_end(ctx, mark, NULL, 0);
    }

    /* Accuracy on the training points. */
    int right = 0;
    for (int i = 0; i < POINTS; i++) {
        double z = xs[2 * i] * jac_tensor_data(w)[0] +
                   xs[2 * i + 1] * jac_tensor_data(w)[1] + jac_tensor_item(b);
        right += (z > 0.0) == (ys[i] > 0.5);
    }
    printf("accuracy %d / %d, %zu tensors held\n", right, POINTS,
           jac_ctx_tensor_count(ctx));
    /* The direction of the separating line: w parallel to (1.5, -2). */
    double cosine =
        (1.5 * jac_tensor_data(w)[0] - 2.0 * jac_tensor_data(w)[1]) /
        (2.5 * hypot(jac_tensor_data(w)[0], jac_tensor_data(w)[1]));
    int ok = last < 0.5 * first && right >= POINTS * 9 / 10 && cosine > 0.99;
    jac_ctx_free(ctx);
    return ok ? 0 : 1;
}
