/*
 * Sparsity rules shared by many rows of the op table: which input elements
 * each output element reads. Rules of one family (reductions, scans,
 * matmul, where) sit in that family's file.
 *
 * Two rules learn an op's links from the op itself. An op that only moves
 * elements (reshape, transpose, slice, pad, concat, ...) is run on inputs
 * holding their own element numbers plus one: each output element then
 * holds the number of the element it reads, or 0. An op that adds elements
 * into places (index_add, scatter_add) has a rule that moves them the
 * other way: run on a cotangent holding output numbers, it tells each
 * input element the output element it goes to. Numbers below 2^53 are
 * exact in a double.
 *
 * SPDX-License-Identifier: MIT
 */
#include "ops/ops.h"

#include <string.h>

bool jac__links_grow(jac__links *L)
{
    int64_t cap = L->cap ? 2 * L->cap : 1024;
    int64_t *at = jac__alloc(L->ctx, (size_t)cap * sizeof(int64_t));
    if (at == NULL)
        return false;
    if (L->n > 0)
        memcpy(at, L->at, (size_t)L->n * sizeof(int64_t));
    jac__free(L->ctx, L->at, (size_t)L->cap * sizeof(int64_t));
    L->at = at;
    L->cap = cap;
    return true;
}

static jac_status links_oom(jac_ctx *ctx, const jac__node *n)
{
    return jac__error(ctx, JAC_ERR_NO_MEMORY, "%s: sparsity: out of memory",
                      jac__ops[n->op].name);
}

bool jac__links_reserve(jac__links *L, int64_t need)
{
    while (L->cap < need)
        if (!jac__links_grow(L))
            return false;
    return true;
}

/* Ops whose derivative is zero: no output element reads anything. */
jac_status jac__deps_none(jac_ctx *ctx, const jac__node *n, jac__links *L)
{
    (void)ctx;
    for (int64_t o = 0; o < n->out->numel; o++)
        jac__links_row(L);
    return JAC_OK;
}

jac_status jac__deps_broadcast_from(jac_ctx *ctx, const jac__node *n,
                                    jac__links *L, int first)
{
    const jac_tensor *y = n->out;
    int nops = n->nin - first;
    if (nops > JAC__ITER_MAX_OPS)
        return jac__error(ctx, JAC_ERR_VALUE, "%s: sparsity of %d inputs",
                          jac__ops[n->op].name, n->nin);
    if (!jac__links_reserve(L, y->numel * nops))
        return links_oom(ctx, n);
    int64_t strides[JAC__ITER_MAX_OPS][JAC_MAX_DIMS];
    const int64_t *sp[JAC__ITER_MAX_OPS];
    for (int k = 0; k < nops; k++) {
        jac__broadcast_strides(n->in[first + k], y->ndim, y->shape, strides[k]);
        sp[k] = strides[k];
    }
    jac__iter it;
    int64_t rows = jac__iter_init(&it, y->ndim, y->shape, nops, sp);
    for (int64_t r = 0; r < rows; r++, jac__iter_next(&it))
        for (int64_t i = 0; i < it.inner; i++) {
            for (int k = 0; k < nops; k++)
                L->at[L->n++] = L->base[first + k] + it.off[k] + i * it.step[k];
            jac__links_row(L);
        }
    return JAC_OK;
}

/* Elementwise ops: output element i reads element i of each input after
 * broadcasting. */
jac_status jac__deps_broadcast(jac_ctx *ctx, const jac__node *n, jac__links *L)
{
    return jac__deps_broadcast_from(ctx, n, L, 0);
}

/* Every output element reads every element of every input (the
 * factorisations and solves of lapack.c). */
jac_status jac__deps_dense(jac_ctx *ctx, const jac__node *n, jac__links *L)
{
    int64_t all = L->base[n->nin];
    if (!jac__links_reserve(L, all * n->out->numel))
        return links_oom(ctx, n);
    for (int64_t o = 0; o < n->out->numel; o++) {
        for (int64_t e = 0; e < all; e++)
            L->at[L->n++] = e;
        jac__links_row(L);
    }
    return JAC_OK;
}

/* Links from a map of input elements to output elements: element e of
 * input j goes to output element map[base[j] + e - base[0]] (-1: none),
 * for the inputs with use[j]. */
jac_status jac__links_transposed(jac_ctx *ctx, const jac__node *n,
                                 jac__links *L, const int64_t *map,
                                 const bool *use)
{
    int64_t nout = n->out->numel;
    int64_t *ptr = L->ptr;
    memset(ptr, 0, (size_t)(nout + 1) * sizeof(int64_t));
    int64_t total = 0;
    for (int j = 0; j < n->nin; j++)
        for (int64_t e = L->base[j]; use[j] && e < L->base[j + 1]; e++)
            if (map[e] >= 0) {
                ptr[map[e] + 1]++;
                total++;
            }
    if (!jac__links_reserve(L, total))
        return links_oom(ctx, n);
    for (int64_t o = 0; o < nout; o++)
        ptr[o + 1] += ptr[o];
    /* ptr[o] is the cursor of output o while filling, then moves on to
     * ptr[o + 1]; shifting back restores the starts. */
    for (int j = 0; j < n->nin; j++)
        for (int64_t e = L->base[j]; use[j] && e < L->base[j + 1]; e++)
            if (map[e] >= 0)
                L->at[ptr[map[e]]++] = e;
    for (int64_t o = nout; o > 0; o--)
        ptr[o] = ptr[o - 1];
    ptr[0] = 0;
    L->n = total;
    L->row = nout;
    return JAC_OK;
}

/* A tensor of t's shape holding the numbers first + 1, first + 2, ...; or,
 * when keep, t's own values (input j of op, an index the op reads). */
static jac_tensor *numbered(jac_ctx *ctx, int op, const jac_tensor *t, int j,
                            int64_t first, bool keep)
{
    if (keep && t->data == NULL) {
        jac__error(ctx, JAC_ERR_VALUE,
                   "%s: sparsity: input %d (an index) varies between "
                   "evaluations",
                   jac__ops[op].name, j);
        return NULL;
    }
    jac_tensor *c =
        jac__tensor_alloc(ctx, jac__ops[op].name, t->ndim, t->shape);
    if (c == NULL)
        return NULL;
    for (int64_t e = 0; e < t->numel; e++)
        c->data[e] = keep ? t->data[e] : (double)(first + e + 1);
    return c;
}

/* The op run on numbered inputs, input keep (if any) holding its values. */
static jac_status move_links(jac_ctx *ctx, const jac__node *n, jac__links *L,
                             int keep)
{
    size_t bytes = (size_t)n->nin * sizeof(jac_tensor *);
    jac_tensor **ins = jac__alloc(ctx, bytes);
    if (ins == NULL)
        return links_oom(ctx, n);
    jac_tensor *y = NULL;
    int j = 0;
    for (; j < n->nin; j++)
        if ((ins[j] = numbered(ctx, n->op, n->in[j], j, L->base[j],
                               j == keep)) == NULL)
            break;
    if (j == n->nin)
        y = jac__ops[n->op].apply(ctx, n, ins);
    jac__free(ctx, ins, bytes);
    if (y == NULL)
        return ctx->status;
    if (!jac__links_reserve(L, y->numel))
        return links_oom(ctx, n);
    for (int64_t o = 0; o < y->numel; o++) {
        /* Numbers count from base[0] = 0, so input 0 names any element. */
        if (y->data[o] > 0.0)
            L->at[L->n++] = (int64_t)y->data[o] - 1;
        jac__links_row(L);
    }
    return JAC_OK;
}

/* Ops that move elements. */
jac_status jac__deps_move(jac_ctx *ctx, const jac__node *n, jac__links *L)
{
    return move_links(ctx, n, L, -1);
}

/* Ops that move the elements of input 0 as input 1, an index, says
 * (index_select, gather; pad, whose input 1 holds the leading pads). */
jac_status jac__deps_select(jac_ctx *ctx, const jac__node *n, jac__links *L)
{
    return move_links(ctx, n, L, 1);
}

/* Ops that add the elements of input 0 into places input 1, an index,
 * says: their rule, run on a numbered cotangent, moves the numbers back. */
jac_status jac__deps_scatter(jac_ctx *ctx, const jac__node *n, jac__links *L)
{
    jac_tensor *g = numbered(ctx, n->op, n->out, 0, 0, false);
    if (g == NULL)
        return ctx->status;
    bool need[2] = {true, false};
    jac_tensor *gin[2] = {NULL, NULL};
    jac_status st = jac__ops[n->op].rule(ctx, n, g, need, gin);
    if (st != JAC_OK)
        return st;
    if (gin[0] == NULL)
        return ctx->status;
    int64_t all = L->base[n->nin];
    int64_t *map = jac__alloc(ctx, (size_t)all * sizeof(int64_t) + 1);
    if (map == NULL)
        return links_oom(ctx, n);
    for (int64_t e = 0; e < all; e++)
        map[e] = e < gin[0]->numel ? (int64_t)gin[0]->data[e] - 1 : -1;
    st = jac__links_transposed(ctx, n, L, map, need);
    jac__free(ctx, map, (size_t)all * sizeof(int64_t) + 1);
    return st;
}

bool jac__deps_reads_input(int op, int j)
{
    if (jac__ops[op].deps == jac__deps_matmul)
        return true; /* a constant factor's zeros */
    return j == 1 && (jac__ops[op].deps == jac__deps_select ||
                      jac__ops[op].deps == jac__deps_scatter);
}
