/*
 * Inverse kinematics of a planar arm of three links by Newton's method.
 *
 * The hand of an arm with link lengths l0, l1, l2 and joint angles q is at
 *
 *   p(q) = sum_k l_k (cos(q_0 + ... + q_k), sin(q_0 + ... + q_k)).
 *
 * Two equations, three unknowns: the Jacobian dp/dq is 2 x 3, so each step
 * takes the least-norm correction dq = pinv(J) (target - p(q)), which moves
 * the joints as little as possible. The angles are updated in place, and
 * each step runs in a scope.
 *
 * SPDX-License-Identifier: MIT
 */
#include <jacobian.h>

#include <math.h>
#include <stdio.h>

enum { MAX_STEPS = 30 };
static const double LINKS[3] = {1.0, 0.8, 0.6};
static const double TARGET[2] = {1.2, 1.0};

/* The hand position p(q), a (2) tensor: the cumulative angles are a running
 * sum of the joint angles. */
static jac_tensor *hand(jac_ctx *ctx, jac_tensor *q)
{
    jac_tensor *lengths = jac_tensor_new(ctx, 1, (int64_t[]){3}, LINKS);
    jac_tensor *angles = jac_cumsum(ctx, q, 0);
    jac_tensor *x = jac_sum(ctx, jac_mul(ctx, lengths, jac_cos(ctx, angles)));
    jac_tensor *y = jac_sum(ctx, jac_mul(ctx, lengths, jac_sin(ctx, angles)));
    return jac_stack(ctx, 2, (jac_tensor *[]){x, y}, 0);
}

int main(void)
{
    jac_ctx *ctx = jac_ctx_new();
    if (ctx == NULL)
        return 1;
    jac_tensor *q =
        jac_tensor_new(ctx, 1, (int64_t[]){3}, (double[]){0.3, 0.3, 0.3});
    jac_tensor *target = jac_tensor_new(ctx, 1, (int64_t[]){2}, TARGET);
    jac_set_requires_grad(q, true);

    double miss = INFINITY;
    int step = 0;
    for (; step < MAX_STEPS && miss > 1e-12; step++) {
        jac_scope mark = jac_scope_begin(ctx);
        jac_tensor *p = hand(ctx, q);
        jac_tensor *J = jac_jacobian(ctx, p, q, 0); /* (2, 3) */
        jac_tensor *err = jac_sub(ctx, target, p);
        jac_tensor *dq = jac_matmul(ctx, jac_pinv(ctx, J), err);
        if (dq == NULL || jac_tensor_assign(q, jac_add(ctx, q, dq)) != JAC_OK) {
            fprintf(stderr, "step %d: %s\n", step, jac_errmsg(ctx));
            jac_ctx_free(ctx);
            return 1;
        }
        miss = hypot(jac_tensor_data(err)[0], jac_tensor_data(err)[1]);
        printf("step %2d  |target - p| = %.3e\n", step, miss);
        jac_scope_end(ctx, mark, NULL, 0);
    }

    /* The hand where the final angles put it. */
    jac_scope mark = jac_scope_begin(ctx);
    jac_tensor *p = hand(ctx, q);
    const double *qa = jac_tensor_data(q), *pa = jac_tensor_data(p);
    printf("q = [%.6f, %.6f, %.6f]  hand = (%.9f, %.9f)\n", qa[0], qa[1], qa[2],
           pa[0], pa[1]);
    int ok = p != NULL && fabs(pa[0] - TARGET[0]) < 1e-10 &&
             fabs(pa[1] - TARGET[1]) < 1e-10 && step < MAX_STEPS;
    jac_scope_end(ctx, mark, NULL, 0);
    jac_ctx_free(ctx);
    return ok ? 0 : 1;
}
