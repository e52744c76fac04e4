/*
 * Jacobian drivers.
 *
 * SPDX-License-Identifier: MIT
 */
#include "internal.h"

/* One backward pass per element of y, seeded with a fresh e_i each time (a
 * seed is never reused in place, so a create-graph Jacobian stays correct
 * when its rows are differentiated again). Without create-graph each pass
 * runs inside a scope and only its row is copied out, so memory stays that
 * of one pass; with it, the rows stay in the graph and are joined by a
 * differentiable concat. */
jac_tensor *jac_jacobian(jac_ctx *ctx, jac_tensor *y, jac_tensor *x,
                         unsigned flags)
{
    if (ctx == NULL || !jac__check_arg(ctx, "jacobian", y) ||
        !jac__check_arg(ctx, "jacobian", x))
        return NULL;
    char s[JAC__SHAPE_STR_MAX];
    if (!x->requires_grad) {
        jac__error(ctx, JAC_ERR_NO_GRAD,
                   "jacobian: input of shape %s does not require gradients",
                   jac__shape_str(s, sizeof s, x->ndim, x->shape));
        return NULL;
    }
    if (flags & ~(unsigned)(JAC_CREATE_GRAPH | JAC_RETAIN_GRAPH)) {
        jac__error(ctx, JAC_ERR_VALUE,
                   "jacobian: only JAC_CREATE_GRAPH and JAC_RETAIN_GRAPH apply");
        return NULL;
    }
    if (y->ndim + x->ndim > JAC_MAX_DIMS) {
        jac__error(ctx, JAC_ERR_RANK,
                   "jacobian: ranks %d + %d exceed %d", y->ndim, x->ndim,
                   JAC_MAX_DIMS);
        return NULL;
    }
    int64_t shape[JAC_MAX_DIMS];
    int nd = y->ndim + x->ndim;
    memcpy(shape, y->shape, (size_t)y->ndim * sizeof(int64_t));
    memcpy(shape + y->ndim, x->shape, (size_t)x->ndim * sizeof(int64_t));
    bool create = (flags & JAC_CREATE_GRAPH) != 0;
    int64_t ny = y->numel, nx = x->numel;

    jac__plan *plan = NULL;
    if (jac__plan_build(ctx, "jacobian", 1, &y, 1, &x, &plan) != JAC_OK)
        return NULL;
    jac_tensor *J = NULL;
    unsigned run_flags = JAC_RETAIN_GRAPH | (create ? JAC_CREATE_GRAPH : 0u);

    if (!create || !jac__plan_output_used(plan, 0) || ny == 0) {
        J = jac_zeros(ctx, nd, shape);
        for (int64_t i = 0; J && i < ny && jac__plan_output_used(plan, 0);
             i++) {
            jac_scope mark = jac_scope_begin(ctx);
            jac_tensor *seed = jac_zeros(ctx, y->ndim, y->shape), *g = NULL;
            jac_status st = seed ? JAC_OK : ctx->status;
            if (st == JAC_OK) {
                seed->data[i] = 1.0;
                st = jac__plan_run(ctx, "jacobian", plan, &seed, run_flags, &g);
            }
            if (st == JAC_OK && g)
                memcpy(J->data + i * nx, g->data, (size_t)nx * sizeof(double));
            jac_scope_end(ctx, mark, NULL, 0);
            if (st != JAC_OK)
                J = NULL;
        }
        jac__plan_free(ctx, plan);
        return J;
    }

    size_t bytes = (size_t)ny * sizeof(jac_tensor *);
    jac_tensor **rows = jac__alloc(ctx, bytes);
    if (rows == NULL) {
        jac__plan_free(ctx, plan);
        jac__error(ctx, JAC_ERR_NO_MEMORY, "jacobian: out of memory");
        return NULL;
    }
    int64_t row_shape[2] = {1, nx};
    bool ok = true;
    for (int64_t i = 0; i < ny && ok; i++) {
        jac_tensor *seed = jac_zeros(ctx, y->ndim, y->shape), *g = NULL;
        ok = seed != NULL;
        if (ok) {
            seed->data[i] = 1.0;
            ok = jac__plan_run(ctx, "jacobian", plan, &seed, run_flags, &g) ==
                 JAC_OK;
        }
        if (ok && g == NULL)
            g = jac_zeros(ctx, x->ndim, x->shape);
        rows[i] = ok ? jac_reshape(ctx, g, 2, row_shape) : NULL;
        ok = ok && rows[i] != NULL;
    }
    if (ok)
        J = jac_reshape(ctx, jac_concat(ctx, (size_t)ny, rows, 0), nd, shape);
    jac__free(ctx, rows, bytes);
    jac__plan_free(ctx, plan);
    return J;
}
