/*
 * The Jacobian of a small neural network with respect to its input, and the
 * per-sample Jacobians of the same network over a batch: problems P2
 * (medium) and P5 of the benchmark set. Prints the checksums that the
 * benchmark problems list and whether they match.
 *
 *   y = W3 tanh(W2 tanh(W1 x + b1) + b2) + b3,  sizes 128 -> 512 -> 512 -> 128
 *
 * When standard error is a terminal, a progress bar shows the rows done.
 * `mlp_jacobian --small` runs the small sizes (16 -> 32 -> 32 -> 16, a batch
 * of 8) in a blink, for memory checkers.
 *
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, isatty */

#include <jacobian.h>

#include <math.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include <string.h>

static int64_t N_IN = 128, HIDDEN = 512, N_OUT = 128, BATCH = 64;

/* The deterministic data of the benchmark problems. */
static jac_tensor *weight(jac_ctx *ctx, int64_t rows, int64_t cols, int s)
{
    jac_tensor *W = jac_zeros(ctx, 2, (int64_t[]){rows, cols});
    double *w = W ? (double *)jac_tensor_data(W) : NULL;
    for (int64_t i = 0; w && i < rows; i++)
        for (int64_t j = 0; j < cols; j++)
            w[i * cols + j] = sin(0.37 * (double)i + 0.11 * (double)j + s) /
                              sqrt((double)cols);
    return W;
}

static jac_tensor *bias(jac_ctx *ctx, int64_t rows, int s)
{
    jac_tensor *b = jac_zeros(ctx, 1, &rows);
    double *d = b ? (double *)jac_tensor_data(b) : NULL;
    for (int64_t i = 0; d && i < rows; i++)
        d[i] = 0.01 * cos(0.5 * (double)i + s);
    return b;
}

typedef struct mlp {
    jac_tensor *W[3], *b[3];
} mlp;

/* The network on a batch X (B, N_IN) -> (B, N_OUT); each row on its own.
 * The weights act from the right (X W^T), so one matrix product serves the
 * whole batch. */
static jac_status forward(jac_ctx *ctx, jac_tensor *const *in, jac_tensor **out,
                          void *user)
{
    const mlp *net = user;
    jac_tensor *h = in[0];
    for (int s = 0; s < 3; s++) {
        h = jac_add(ctx,
                    jac_matmul(ctx, h, jac_transpose(ctx, net->W[s], 0, 1)),
                    net->b[s]);
        if (s < 2)
            h = jac_tanh(ctx, h);
    }
    out[0] = h;
    return jac_errcode(ctx);
}

/* A progress bar on standard error, redrawn in place. */
static int progress_bar(int64_t done, int64_t total, void *user)
{
    const char *label = user;
    int width = 40, filled = total ? (int)(width * done / total) : width;
    fprintf(stderr, "\r%-12s [", label);
    for (int i = 0; i < width; i++)
        fputc(i < filled ? '#' : ' ', stderr);
    fprintf(stderr, "] %3d%%%s", total ? (int)(100 * done / total) : 100,
            done == total ? "\n" : "");
    fflush(stderr);
    return 0;
}

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Prints sum, Frobenius norm and first element next to the reference. */
static int report(const char *name, const jac_tensor *J, const double *ref,
                  double fro_scale_for_sum)
{
    double sum = 0, fro = 0;
    const double *d = jac_tensor_data(J);
    for (int64_t i = 0; i < jac_tensor_numel(J); i++) {
        sum += d[i];
        fro += d[i] * d[i];
    }
    fro = sqrt(fro);
    double got[3] = {sum, fro, d[0]};
    const char *names[3] = {"sum", "fro", "j00"};
    int ok = 1;
    printf("%s\n", name);
    for (int k = 0; k < 3 && ref == NULL; k++)
        printf("  %-4s %+.17g\n", names[k], got[k]);
    for (int k = 0; k < 3 && ref != NULL; k++) {
        double scale =
            k == 0 && fro_scale_for_sum > 0 ? fro_scale_for_sum : fabs(ref[k]);
        int match = fabs(got[k] - ref[k]) <= 1e-9 * scale;
        ok &= match;
        printf("  %-4s %+.17g  (reference %+.17g) %s\n", names[k], got[k],
               ref[k], match ? "ok" : "MISMATCH");
    }
    return ok;
}

int main(int argc, char **argv)
{
    bool small = argc > 1 && strcmp(argv[1], "--small") == 0;
    if (small) {
        N_IN = 16;
        HIDDEN = 32;
        N_OUT = 16;
        BATCH = 8;
    }
    jac_ctx *ctx = jac_ctx_new();
    if (ctx == NULL)
        return 1;
    mlp net = {
        {weight(ctx, HIDDEN, N_IN, 1), weight(ctx, HIDDEN, HIDDEN, 2),
         weight(ctx, N_OUT, HIDDEN, 3)},
        {bias(ctx, HIDDEN, 1), bias(ctx, HIDDEN, 2), bias(ctx, N_OUT, 3)}};
    bool tty = isatty(STDERR_FILENO);

    /* P2: one input row, x[j] = 0.5 sin(0.3 j + 0.7). */
    jac_tensor *x = jac_zeros(ctx, 2, (int64_t[]){1, N_IN});
    double *xd = x ? (double *)jac_tensor_data(x) : NULL;
    for (int64_t j = 0; xd && j < N_IN; j++)
        xd[j] = 0.5 * sin(0.3 * (double)j + 0.7);
    jac_jacobian_opts opts = {0, 0, JAC_MODE_REVERSE, tty ? progress_bar : NULL,
                              "P2 rows"};
    double t0 = seconds();
    jac_tensor *J = NULL;
    jac_status st = jac_jacobian_fn(ctx, forward, &net, 1, &x, 1, &opts, &J);
    double t1 = seconds();
    if (st != JAC_OK) {
        fprintf(stderr, "P2: %s\n", jac_errmsg(ctx));
        jac_ctx_free(ctx);
        return 1;
    }
    /* J has shape (1, 128, 1, 128): one sample. */
    const double p2[3] = {-0.073235137776548109, 0.088305095922735694,
                          0.00072895702567606026};
    const double p2_small[3] = {-0.31407040894689525, 0.42722832080584455,
                                0.026841722018463098};
    int ok = report(small ? "P2_mlp 16-32-16: dy/dx, 16 x 16"
                          : "P2_mlp 128-512-128: dy/dx, 128 x 128",
                    J, small ? p2_small : p2, 0);
    printf("  time %.3f ms\n\n", 1e3 * (t1 - t0));

    /* P5: B = 64 samples, X[b][j] = 0.5 sin(0.3 j + 0.7 + 0.01 b). */
    jac_tensor *X = jac_zeros(ctx, 2, (int64_t[]){BATCH, N_IN});
    double *Xd = X ? (double *)jac_tensor_data(X) : NULL;
    for (int64_t b = 0; Xd && b < BATCH; b++)
        for (int64_t j = 0; j < N_IN; j++)
            Xd[b * N_IN + j] =
                0.5 * sin(0.3 * (double)j + 0.7 + 0.01 * (double)b);
    opts.progress_user = "P5 rows";
    t0 = seconds();
    jac_tensor *JB = jac_batch_jacobian(ctx, forward, &net, X, &opts);
    t1 = seconds();
    if (JB == NULL) {
        fprintf(stderr, "P5: %s\n", jac_errmsg(ctx));
        jac_ctx_free(ctx);
        return 1;
    }
    const double p5[3] = {-4.6970480864790822, 0.70808530018179627,
                          0.00072895702567606026};
    ok &= report(small ? "per-sample Jacobians, 8 x 16 x 16 (no reference)"
                       : "P5_batch_mlp B=64: 64 per-sample Jacobians, "
                         "64 x 128 x 128",
                 JB, small ? NULL : p5, 0);
    printf("  time %.3f ms\n", 1e3 * (t1 - t0));

    jac_ctx_free(ctx);
    return ok ? 0 : 1;
}
