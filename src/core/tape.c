/*
 * The tape: nodes appended by ops in execution order; and the checks of
 * anomaly mode on what they record.
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/core.h"

/* ------------------------------------------------------------------------ */
/* Tape                                                                     */
/* ------------------------------------------------------------------------ */

jac__node *jac__tape_append(jac_ctx *ctx, int op, const char *name,
                            jac_tensor *out, int nin, jac_tensor *const *ins,
                            bool *failed)
{
    *failed = false;
    if (!jac__should_record(ctx, nin, ins)) {
        /* It lost the history of its inputs if they had one (or had lost
         * one); made of constants only, it is a constant itself. */
        bool lost = false;
        for (int i = 0; i < nin && !lost; i++)
            lost = ins[i]->requires_grad || ins[i]->untracked;
        out->untracked = lost;
        return NULL;
    }
    if ((ctx->checks & JAC_CHECK_ANOMALY) &&
        !jac__all_finite(out->data, out->numel)) {
        jac__anomaly(ctx, "", name, (int64_t)ctx->nnodes, out->data, out->numel,
                     out->ndim, out->shape);
        *failed = true;
        return NULL;
    }
    size_t idx = ctx->nnodes;
    size_t block = idx >> JAC__NODE_BLOCK_BITS;
    if (block >= ctx->nblocks) {
        if (jac__grow(ctx, (void **)&ctx->blocks, &ctx->cap_blocks, block + 1,
                      sizeof(jac__node *)) != JAC_OK)
            goto oom;
        jac__node *b = jac__alloc(ctx, JAC__NODE_BLOCK * sizeof(jac__node));
        if (b == NULL)
            goto oom;
        ctx->blocks[ctx->nblocks++] = b;
    }
    jac__node *n = jac__node_at(ctx, (int64_t)idx);
    if (nin > JAC__NODE_INLINE_INPUTS) {
        n->in = jac__alloc(ctx, (size_t)nin * sizeof(jac_tensor *));
        if (n->in == NULL)
            goto oom;
        ctx->nodes_with_arrays++;
    } else {
        n->in = n->in_inline;
    }
    n->op = op;
    n->nin = nin;
    n->released = false;
    n->has_partials = false;
    n->read = false;
    for (int i = 0; i < nin; i++)
        n->in[i] = ins[i];
    n->out = out;
    memset(&n->p, 0, sizeof n->p);
    ctx->nnodes++;
    out->node = (int64_t)idx;
    out->requires_grad = true;
    return n;
oom:
    jac__error(ctx, JAC_ERR_NO_MEMORY, "%s: out of memory recording the op",
               name);
    *failed = true;
    return NULL;
}

void jac__tape_truncate(jac_ctx *ctx, size_t nnodes)
{
    /* Only nodes of many inputs hold memory of their own; without any, the
     * dropped nodes need no visit. */
    for (size_t i = nnodes; ctx->nodes_with_arrays > 0 && i < ctx->nnodes;
         i++) {
        jac__node *n = jac__node_at(ctx, (int64_t)i);
        if (n->in != n->in_inline) {
            jac__free(ctx, n->in, (size_t)n->nin * sizeof(jac_tensor *));
            ctx->nodes_with_arrays--;
        }
        n->in = NULL;
    }
    if (nnodes < ctx->nnodes)
        ctx->nnodes = nnodes;
}

bool jac__all_finite(const double *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return false;
    return true;
}

jac_status jac__anomaly(jac_ctx *ctx, const char *what, const char *op,
                        int64_t index, const double *v, int64_t n, int ndim,
                        const int64_t *shape)
{
    int64_t i = 0;
    while (i < n && isfinite(v[i]))
        i++;
    char s[JAC__SHAPE_STR_MAX];
    return jac__error(ctx, JAC_ERR_VALUE,
                      "anomaly: %s'%s' (tape index %lld) produced %g at "
                      "element %lld of %s",
                      what, op, (long long)index, i < n ? v[i] : 0.0,
                      (long long)i, jac__shape_str(s, sizeof s, ndim, shape));
}
