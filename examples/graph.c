/*
 * graph: a picture of the tape of a small network, as Graphviz DOT.
 *
 *   h = tanh(x W1 + b1),  y = h W2 + b2,  loss = mean(y ** 2)
 *
 * with a batch x of 3 samples, 4 -> 5 -> 2. The gradient of the loss with
 * respect to the last layer only (W2, b2) runs one backward pass without
 * JAC_RETAIN_GRAPH: it releases the nodes it went through, and only those,
 * so the picture shows the first layer live and the rest released.
 *
 *   ./graph [file.dot]        (default graph.dot)
 *   dot -Tpng graph.dot -o graph.png
 *
 * SPDX-License-Identifier: MIT
 */
#include <jacobian.h>

#include <stdio.h>

static int fail(jac_ctx *ctx, const char *step)
{
    fprintf(stderr, "graph: %s failed: %s\n", step, jac_errmsg(ctx));
    jac_ctx_free(ctx);
    return 1;
}

/* A leaf of random values that requires gradients. */
static jac_tensor *parameter(jac_ctx *ctx, int ndim, const int64_t *shape,
                             uint64_t seed)
{
    jac_tensor *p = jac_rand_normal(ctx, ndim, shape, 0.0, 0.5, seed);
    if (p && jac_set_requires_grad(p, true) != JAC_OK)
        return NULL;
    return p;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "graph.dot";
    jac_ctx *ctx = jac_ctx_new();
    if (ctx == NULL)
        return 1;

    jac_tensor *x = jac_rand_uniform(ctx, 2, (int64_t[]){3, 4}, -1, 1, 1);
    jac_tensor *W1 = parameter(ctx, 2, (int64_t[]){4, 5}, 2);
    jac_tensor *b1 = parameter(ctx, 1, (int64_t[]){5}, 3);
    jac_tensor *W2 = parameter(ctx, 2, (int64_t[]){5, 2}, 4);
    jac_tensor *b2 = parameter(ctx, 1, (int64_t[]){2}, 5);

    jac_tensor *h = jac_tanh(ctx, jac_add(ctx, jac_matmul(ctx, x, W1), b1));
    jac_tensor *y = jac_add(ctx, jac_matmul(ctx, h, W2), b2);
    jac_tensor *loss = jac_mean(ctx, jac_pow_scalar(ctx, y, 2.0));
    if (loss == NULL)
        return fail(ctx, "the forward pass");

    /* Fine-tune the head: this pass visits and releases only the nodes
     * between W2, b2 and the loss. */
    jac_tensor *head[2] = {W2, b2};
    jac_tensor *grads[2];
    if (jac_grad(ctx, 1, &loss, NULL, 2, head, 0, grads) != JAC_OK)
        return fail(ctx, "the gradient of the head");

    FILE *out = fopen(path, "w");
    if (out == NULL) {
        perror(path);
        jac_ctx_free(ctx);
        return 1;
    }
    /* Everything that leads to the loss (here the whole tape), with the
     * loss marked as output 0. */
    jac_status st = jac_export_dot(ctx, 1, &loss, 0, NULL, out);
    if (fclose(out) != 0 && st == JAC_OK) {
        perror(path);
        jac_ctx_free(ctx);
        return 1;
    }
    if (st != JAC_OK)
        return fail(ctx, "jac_export_dot");
    printf("loss = %.6f; wrote %s (%zu tape nodes); render it with\n"
           "  dot -Tpng %s -o graph.png\n",
           jac_tensor_item(loss), path, jac_ctx_tape_length(ctx), path);
    jac_ctx_free(ctx);
    return 0;
}
