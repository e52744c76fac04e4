/*
 * Three composite functions differentiated end to end, gradient and Hessian
 * each checked against finite differences: a two-layer network with a
 * softmax cross-entropy loss, a Gaussian negative log-likelihood through
 * cholesky and logdet, and the end position of a planar three-link arm.
 *
 * SPDX-License-Identifier: MIT
 */
#include "batchcheck.h"

static jac_tensor *smooth(jac_ctx *ctx, int ndim, const int64_t *shape,
                          double phase, double scale)
{
    jac_tensor *t = jac_zeros(ctx, ndim, shape);
    double *d = (double *)jac_tensor_data(t);
    for (int64_t i = 0; i < jac_tensor_numel(t); i++)
        d[i] = scale * sin(0.61 * (double)i + phase);
    return t;
}

static jac_tensor *requiring(jac_tensor *t)
{
    jac_set_requires_grad(t, true);
    return t;
}

/* ------------------------------------------------------------------------ */
/* A two-layer network with a softmax cross-entropy loss                    */
/* ------------------------------------------------------------------------ */

typedef struct batch {
    jac_tensor *X;      /* (5, 3) inputs */
    jac_tensor *onehot; /* (5, 3) labels */
} batch;

/* loss = -mean_i sum_c Y[i, c] log_softmax(W2 tanh(W1 x_i + b1) + b2)[c]. */
static jac_status mlp_loss(jac_ctx *ctx, jac_tensor *const *in,
                           jac_tensor **out, void *user)
{
    const batch *data = user;
    jac_tensor *W1 = in[0], *b1 = in[1], *W2 = in[2], *b2 = in[3];
    jac_tensor *h = jac_tanh(
        ctx,
        jac_add(ctx, jac_matmul(ctx, data->X, jac_transpose(ctx, W1, 0, 1)),
                b1));
    jac_tensor *logits =
        jac_add(ctx, jac_matmul(ctx, h, jac_transpose(ctx, W2, 0, 1)), b2);
    jac_tensor *logp = jac_log_softmax(ctx, logits, 1);
    jac_tensor *picked =
        jac_sum_axis(ctx, jac_mul(ctx, logp, data->onehot), 1, false);
    out[0] = jac_neg(ctx, jac_mean(ctx, picked));
    return jac_errcode(ctx);
}

static void
test_mlp_cross_entropy_gradient_and_hessian_match_finite_differences(
    void **state)
{
    jac_ctx *ctx = *state;
    int64_t labels[5] = {0, 2, 1, 1, 0};
    batch data = {smooth(ctx, 2, TU_SHAPE(5, 3), 0.2, 1.0),
                  jac_zeros(ctx, 2, TU_SHAPE(5, 3))};
    for (int i = 0; i < 5; i++)
        ((double *)jac_tensor_data(data.onehot))[i * 3 + labels[i]] = 1.0;
    jac_tensor *in[4] = {requiring(smooth(ctx, 2, TU_SHAPE(4, 3), 0.5, 0.7)),
                         requiring(smooth(ctx, 1, TU_SHAPE(4), 1.1, 0.1)),
                         requiring(smooth(ctx, 2, TU_SHAPE(3, 4), 1.9, 0.7)),
                         requiring(smooth(ctx, 1, TU_SHAPE(3), 2.3, 0.1))};
    jac_tensor *loss = NULL;
    tu_assert_ok(ctx, mlp_loss(ctx, in, &loss, &data));
    /* A proper loss of three classes lies near log 3 for small weights. */
    assert_true(jac_tensor_item(loss) > 0.5 && jac_tensor_item(loss) < 2.0);
    tu_gradcheck(ctx, mlp_loss, &data, 4, in, 1);
    tu_gradgradcheck(ctx, mlp_loss, &data, 4, in, 1);
    /* Batched seeds, every driver mode and the fused kernels agree on the
     * whole network too. */
    tu_assert_batched_matches_rows(ctx, mlp_loss, &data, 4, in, 1);
}

/* ------------------------------------------------------------------------ */
/* A Gaussian negative log-likelihood                                       */
/* ------------------------------------------------------------------------ */

/* Sigma = B B^T + I (positive definite for any B); with L = cholesky(Sigma)
 * and z_i = L^-1 (d_i - mu):
 *   nll = 0.5 sum_i |z_i|^2 + 0.5 N logdet(Sigma) + 0.5 N k log(2 pi). */
static jac_status gaussian_nll(jac_ctx *ctx, jac_tensor *const *in,
                               jac_tensor **out, void *user)
{
    jac_tensor *D = user; /* (N, k) data */
    jac_tensor *mu = in[0], *B = in[1];
    int64_t N = jac_tensor_dim(D, 0), k = jac_tensor_dim(D, 1);
    jac_tensor *Sigma = jac_add(
        ctx, jac_matmul(ctx, B, jac_transpose(ctx, B, 0, 1)), jac_eye(ctx, k));
    jac_tensor *L = jac_cholesky(ctx, Sigma);
    jac_tensor *R = jac_transpose(ctx, jac_sub(ctx, D, mu), 0, 1); /* (k, N) */
    jac_tensor *Z = jac_solve(ctx, L, R);
    jac_tensor *quad =
        jac_mul_scalar(ctx, jac_sum(ctx, jac_mul(ctx, Z, Z)), 0.5);
    jac_tensor *norm =
        jac_mul_scalar(ctx, jac_logdet(ctx, Sigma), 0.5 * (double)N);
    out[0] = jac_add_scalar(ctx, jac_add(ctx, quad, norm),
                            0.5 * (double)(N * k) *
                                log(2.0 * 3.14159265358979323846));
    return jac_errcode(ctx);
}

static void
test_gaussian_nll_gradient_and_hessian_match_finite_differences(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *D = smooth(ctx, 2, TU_SHAPE(4, 3), 0.3, 1.0);
    jac_tensor *in[2] = {requiring(smooth(ctx, 1, TU_SHAPE(3), 0.9, 0.3)),
                         requiring(smooth(ctx, 2, TU_SHAPE(3, 3), 1.7, 0.6))};
    /* The value against the same formula in plain C for B = 0 (Sigma = I):
     * nll = 0.5 sum |d_i - mu|^2 + 0.5 N k log(2 pi). */
    jac_tensor *zero_B[2] = {in[0], jac_zeros(ctx, 2, TU_SHAPE(3, 3))};
    jac_tensor *nll = NULL;
    tu_assert_ok(ctx, gaussian_nll(ctx, zero_B, &nll, D));
    double want = 0.5 * 12.0 * log(2.0 * 3.14159265358979323846);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++) {
            double r =
                jac_tensor_data(D)[i * 3 + j] - jac_tensor_data(in[0])[j];
            want += 0.5 * r * r;
        }
    tu_assert_scalar(nll, want, 1e-12);
    tu_gradcheck(ctx, gaussian_nll, D, 2, in, 1);
    tu_gradgradcheck(ctx, gaussian_nll, D, 2, in, 1);
    tu_assert_batched_matches_rows(ctx, gaussian_nll, D, 2, in, 1);
    /* At the maximum-likelihood mean the gradient in mu vanishes. */
    jac_tensor *mean =
        jac_mul_scalar(ctx, jac_sum_axis(ctx, D, 0, false), 0.25);
    jac_set_requires_grad(mean, true);
    jac_tensor *at_mean[2] = {mean, in[1]};
    tu_assert_ok(ctx, gaussian_nll(ctx, at_mean, &nll, D));
    jac_tensor *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &nll, NULL, 1, &mean, 0, &g));
    tu_assert_tensor(g, TU_SHAPE(3), TU_VALUES(0, 0, 0), 1e-12);
}

/* ------------------------------------------------------------------------ */
/* A planar three-link arm                                                  */
/* ------------------------------------------------------------------------ */

/* Link k points at the sum of the first k + 1 joint angles; the end position
 * is sum_k l_k (cos phi_k, sin phi_k). */
static jac_status arm_end(jac_ctx *ctx, jac_tensor *const *in, jac_tensor **out,
                          void *user)
{
    (void)user;
    jac_tensor *lengths =
        jac_tensor_new(ctx, 1, TU_SHAPE(3), TU_VALUES(1.0, 0.8, 0.5));
    jac_tensor *lower = jac_tensor_new(ctx, 2, TU_SHAPE(3, 3),
                                       TU_VALUES(1, 0, 0, 1, 1, 0, 1, 1, 1));
    jac_tensor *phi = jac_matmul(ctx, lower, in[0]);
    jac_tensor *x = jac_sum(ctx, jac_mul(ctx, lengths, jac_cos(ctx, phi)));
    jac_tensor *y = jac_sum(ctx, jac_mul(ctx, lengths, jac_sin(ctx, phi)));
    out[0] = jac_stack(ctx, 2, (jac_tensor *[]){x, y}, 0);
    return jac_errcode(ctx);
}

static void
test_robot_arm_jacobian_and_hessian_match_finite_differences(void **state)
{
    jac_ctx *ctx = *state;
    const double th[3] = {0.3, -0.5, 0.9};
    jac_tensor *theta = requiring(jac_tensor_new(ctx, 1, TU_SHAPE(3), th));
    jac_tensor *end = NULL;
    tu_assert_ok(ctx, arm_end(ctx, &theta, &end, NULL));
    double p1 = th[0], p2 = th[0] + th[1], p3 = th[0] + th[1] + th[2];
    tu_assert_tensor(end, TU_SHAPE(2),
                     TU_VALUES(cos(p1) + 0.8 * cos(p2) + 0.5 * cos(p3),
                               sin(p1) + 0.8 * sin(p2) + 0.5 * sin(p3)),
                     1e-15);
    /* The Jacobian in closed form: d end / d theta_j sums the links from j
     * on. */
    jac_tensor *J = jac_jacobian(ctx, end, theta, 0);
    assert_non_null(J);
    double want[6] = {
        -(sin(p1) + 0.8 * sin(p2) + 0.5 * sin(p3)),
        -(0.8 * sin(p2) + 0.5 * sin(p3)),
        -0.5 * sin(p3),
        cos(p1) + 0.8 * cos(p2) + 0.5 * cos(p3),
        0.8 * cos(p2) + 0.5 * cos(p3),
        0.5 * cos(p3),
    };
    tu_assert_tensor(J, TU_SHAPE(2, 3), want, 1e-14);
    tu_gradcheck(ctx, arm_end, NULL, 1, &theta, 1);
    tu_gradgradcheck(ctx, arm_end, NULL, 1, &theta, 1);
    tu_assert_batched_matches_rows(ctx, arm_end, NULL, 1, &theta, 1);
    /* Second derivatives of x: d2x / dtheta_0^2 = -x. */
    jac_tensor *g = NULL;
    jac_tensor *x = jac_slice(ctx, end, 0, 0, 1, 1);
    tu_assert_ok(ctx,
                 jac_grad(ctx, 1, &x, NULL, 1, &theta, JAC_CREATE_GRAPH, &g));
    jac_tensor *H = jac_jacobian(ctx, g, theta, 0);
    assert_non_null(H);
    tu_assert_close(jac_tensor_data(H), TU_VALUES(-jac_tensor_data(end)[0]), 1,
                    1e-14, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(
            test_mlp_cross_entropy_gradient_and_hessian_match_finite_differences),
        TU_TEST(
            test_gaussian_nll_gradient_and_hessian_match_finite_differences),
        TU_TEST(test_robot_arm_jacobian_and_hessian_match_finite_differences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
