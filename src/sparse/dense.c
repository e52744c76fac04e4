/*
 * Dense Jacobians through sparse plans: with the automatic chunk, the
 * drivers of drivers/jacobian.c (jac_jacobian, jac_jacobian_ex,
 * jac_jacobian_fn, jac_hessian) first ask here whether the Jacobian is
 * sparse enough that its colours cost fewer sweeps than its rows or
 * columns; if so, the recording becomes a program, its plan computes the
 * needed colours only, and the entries are scattered into the dense
 * result. Entries outside the pattern are zero by structure, exactly,
 * whatever the inputs hold (an elementwise function is the one-colour
 * case). The plan, or the verdict that the pattern is too dense, is kept
 * in the context for the next call of the same code. The drivers declare
 * this entry (drivers.h); the sparse layer
 * defines it, as the layer that knows patterns.
 *
 * SPDX-License-Identifier: MIT
 */
#include "sparse/sparse.h"

#include <sched.h>
#include <string.h>

/* The dense result blocks of the plan's values: block (k, i) of output k
 * and input i has shape ys[k] ++ xs[i]; entries outside the pattern are
 * zero. */
static jac_status scatter(jac_ctx *ctx, const char *op, const jac_sparse *plan,
                          const double *values, size_t ny,
                          jac_tensor *const *ys, size_t nx,
                          jac_tensor *const *xs, jac_tensor **J)
{
    int64_t *row0 = jac__alloc(ctx, (ny + nx + 2) * sizeof(int64_t));
    if (row0 == NULL)
        return jac__error(ctx, JAC_ERR_NO_MEMORY, "%s: out of memory", op);
    int64_t *col0 = row0 + ny + 1;
    row0[0] = col0[0] = 0;
    for (size_t k = 0; k < ny; k++)
        row0[k + 1] = row0[k] + ys[k]->numel;
    for (size_t i = 0; i < nx; i++)
        col0[i + 1] = col0[i] + xs[i]->numel;
    jac_status st = JAC_OK;
    for (size_t k = 0; k < ny && st == JAC_OK; k++)
        for (size_t i = 0; i < nx && st == JAC_OK; i++) {
            int64_t shape[JAC_MAX_DIMS];
            memcpy(shape, ys[k]->shape, (size_t)ys[k]->ndim * sizeof(int64_t));
            memcpy(shape + ys[k]->ndim, xs[i]->shape,
                   (size_t)xs[i]->ndim * sizeof(int64_t));
            /* A failure names the driver, the shape and the bytes. */
            jac_tensor *b =
                jac__tensor_alloc(ctx, op, ys[k]->ndim + xs[i]->ndim, shape);
            if (b == NULL)
                st = ctx->status;
            else if (b->numel > 0)
                memset(b->data, 0, (size_t)b->numel * sizeof(double));
            J[k * nx + i] = b;
        }
    /* Each value into its block: the blocks of a row are found once. */
    size_t k = 0;
    for (int64_t t = 0; t < plan->nnz && st == JAC_OK; t++) {
        int64_t r = plan->row[t], c = plan->col[t];
        while (r >= row0[k + 1])
            k++;
        size_t i = 0;
        while (c >= col0[i + 1])
            i++;
        jac_tensor *b = J[k * nx + i];
        b->data[(r - row0[k]) * xs[i]->numel + (c - col0[i])] = values[t];
    }
    jac__free(ctx, row0, (ny + nx + 2) * sizeof(int64_t));
    return st;
}

/* values (the plan's, in the order of its pattern) and their transpose
 * averaged, as (H + H^T) / 2 would: an entry whose mirror lies outside
 * the pattern, a zero, is halved. */
static void symmetrise(const jac_sparse *plan, double *values)
{
    const jac__csr *p = &plan->pat;
    for (int64_t r = 0; r < p->nrows; r++)
        for (int64_t t = p->ptr[r]; t < p->ptr[r + 1]; t++) {
            int64_t c = p->idx[t], m = jac__csr_find(p, c, r);
            if (m < 0)
                values[t] *= 0.5;
            else if (c > r)
                values[t] = values[m] = 0.5 * (values[t] + values[m]);
        }
}

/* What the context keeps of its last dense Jacobian: the program of the
 * recording and its plan, or none when the pattern was too dense to pay.
 * A call whose recording is the same code (jac__program_same) takes the
 * verdict without a pattern walk, and the plan with its warm workspaces:
 * a Newton loop that records the same function at every step pays the
 * walk and the colouring once. Its memory (jac__kept_hooks) is counted
 * in jac_ctx_memory and returned at jac_ctx_free. */
typedef struct kept_plan {
    jac_program *prog;
    jac_sparse *plan;
} kept_plan;

static void kept_drop(jac_ctx *ctx)
{
    kept_plan *k = ctx->kept;
    if (k == NULL)
        return;
    jac_sparse_free(k->plan);
    jac_program_free(k->prog);
    jac_allocator hooks = jac__kept_hooks(ctx);
    hooks.free(k, hooks.user);
    ctx->kept = NULL;
}

/* *plan for prog (NULL: too dense), from the kept one when prog is its
 * recording again (prog then serves it, or is freed with a verdict of
 * none), else made and kept. Either way the context owns prog now. */
static jac_status plan_for(jac_ctx *ctx, jac_program *prog, int64_t passes,
                           jac_sparse **plan)
{
    kept_plan *k = ctx->kept;
    *plan = NULL;
    if (k != NULL && jac__program_same(k->prog, prog)) {
        if (k->plan == NULL) {
            jac_program_free(prog);
            return JAC_OK;
        }
        jac_status st = jac__sparse_rebind(k->plan, prog);
        if (st != JAC_OK) {
            jac_program_free(prog);
            return st;
        }
        k->prog = prog;
        *plan = k->plan;
        return JAC_OK;
    }
    kept_drop(ctx);
    jac_allocator hooks = jac__kept_hooks(ctx);
    k = hooks.alloc(sizeof *k, hooks.user);
    if (k == NULL) {
        jac_program_free(prog);
        return JAC_ERR_NO_MEMORY;
    }
    /* The mode says how the dense passes would run; colours choose their
     * own direction (the cheaper one). */
    jac_sparse_opts so = {.method = JAC_SPARSE_AUTO};
    jac_status st = jac__sparse_plan_dense(prog, &so, passes, &k->plan);
    if (st != JAC_OK) {
        hooks.free(k, hooks.user);
        jac_program_free(prog);
        return st;
    }
    k->prog = prog;
    ctx->kept = k;
    ctx->kept_drop = kept_drop;
    *plan = k->plan;
    return JAC_OK;
}

static jac_status try_sparse(jac_ctx *ctx, const char *op, size_t ny,
                             jac_tensor *const *ys, size_t nx,
                             jac_tensor *const *xs, bool symmetric,
                             jac_tensor **J, bool *done)
{
    jac_program *prog = NULL;
    jac_allocator hooks = jac__kept_hooks(ctx);
    jac_status st =
        jac__program_compile_tape(ctx, op, ny, ys, nx, xs, &hooks, &prog);
    if (st != JAC_OK)
        return st;
    jac_program_set_threads(prog, ctx->threads);
    int64_t rows = 0, cols = 0;
    for (size_t k = 0; k < ny; k++)
        rows += ys[k]->numel;
    for (size_t i = 0; i < nx; i++)
        cols += xs[i]->numel;
    jac_sparse *plan = NULL;
    st = plan_for(ctx, prog, rows < cols ? rows : cols, &plan);
    double *values = NULL;
    size_t vbytes = 0;
    if (st == JAC_OK && plan != NULL) {
        vbytes = (size_t)jac_sparse_nnz(plan) * sizeof(double) + 1;
        values = jac__alloc(ctx, vbytes);
        if (values == NULL)
            st = JAC_ERR_NO_MEMORY;
    }
    if (st == JAC_OK && plan != NULL) {
        const double *args[64];
        for (size_t i = 0, at = 0; i < nx; i++) {
            args[i] = plan->prog->x0 + at;
            at += (size_t)xs[i]->numel;
        }
        st = jac_sparse_jacobian(plan, args, values, NULL);
        if (st == JAC_OK && symmetric)
            symmetrise(plan, values);
        if (st == JAC_OK) {
            st = scatter(ctx, op, plan, values, ny, ys, nx, xs, J);
            *done = st == JAC_OK;
        }
    }
    if (st != JAC_OK && ctx->status == JAC_OK)
        jac__error(ctx, st, "%s: %s", op, jac_program_errmsg());
    jac__free(ctx, values, vbytes);
    return st;
}

jac_status jac__jacobian_sparse(jac_ctx *ctx, const char *op, size_t ny,
                                jac_tensor *const *ys, size_t nx,
                                jac_tensor *const *xs,
                                const jac_jacobian_opts *o, bool symmetric,
                                jac_tensor **J, bool *done)
{
    *done = false;
    if (o->chunk != 0 || (o->flags & JAC_CREATE_GRAPH) || nx > 64 ||
        ctx->status != JAC_OK)
        return JAC_OK;
    size_t rbytes = ny * nx * sizeof(jac_tensor *);
    jac_tensor **res = jac__alloc(ctx, rbytes);
    if (res == NULL)
        return jac__error(ctx, JAC_ERR_NO_MEMORY, "%s: out of memory", op);
    jac_scope mark = jac_scope_begin(ctx);
    jac_status st = try_sparse(ctx, op, ny, ys, nx, xs, symmetric, res, done);
    if (*done && o->progress != NULL) {
        int64_t units = 0;
        for (size_t k = 0; k < ny; k++)
            units += ys[k]->numel;
        if (units > 0 && o->progress(units, units, o->progress_user)) {
            jac_scope_end(ctx, mark, NULL, 0);
            jac__free(ctx, res, rbytes);
            return jac__error(ctx, JAC_ERR_CANCELLED,
                              "%s: cancelled by the progress callback", op);
        }
    }
    if (*done) {
        jac_scope_end(ctx, mark, res, ny * nx);
        memcpy(J, res, rbytes);
        jac__free(ctx, res, rbytes);
        return JAC_OK;
    }
    jac__free(ctx, res, rbytes);
    jac_scope_end(ctx, mark, NULL, 0);
    /* Whatever stopped the sparse path (memory for a pattern too dense,
     * a recording it cannot compile), the block engine runs instead and
     * meets it, if at all, in its own words. */
    (void)st;
    jac_clear_error(ctx);
    return JAC_OK;
}

/* ------------------------------------------------------------------------ */
/* Dense Jacobians of programs                                              */
/* ------------------------------------------------------------------------ */

/* What a program keeps for jac_program_jacobian: its plan and the values
 * buffer (none when colours do not pay), and busy, held by the one call
 * that uses the plan's compressed rows and these values (a concurrent
 * call sweeps the same colours into buffers of its own). */
typedef struct kept_dense {
    jac_sparse *plan;
    double *values;
    _Atomic int busy;
} kept_dense;

void jac__program_kept_free(jac_program *prog)
{
    kept_dense *kd = atomic_exchange(&prog->kept, NULL);
    if (kd == NULL)
        return;
    if (kd->plan != NULL)
        jac__prog_free(prog, kd->values,
                       (size_t)kd->plan->nnz * sizeof(double));
    jac_sparse_free(kd->plan);
    jac__prog_free(prog, kd, sizeof *kd);
}

/* The kept plan of prog, made by the one call that wins kept_making while
 * the others wait for it, so that every call takes the same path and
 * calls at once give the same bits. NULL (*st says why: no memory) when
 * making it failed; a later call tries again. */
static kept_dense *kept_of(jac_program *prog, jac_status *st)
{
    *st = JAC_OK;
    for (;;) {
        kept_dense *kd = atomic_load(&prog->kept);
        int idle = 0;
        if (kd != NULL)
            return kd;
        if (atomic_compare_exchange_strong(&prog->kept_making, &idle, 1))
            break;
        sched_yield();
    }
    int64_t rows = 0, cols = 0;
    for (size_t k = 0; k < prog->noutputs; k++)
        rows += prog->outs[k].numel;
    for (size_t i = 0; i < prog->ninputs; i++)
        cols += prog->args[i].numel;
    jac_sparse_opts so = {.method = JAC_SPARSE_AUTO};
    jac_sparse *plan = NULL;
    kept_dense *kd = jac__prog_alloc(prog, sizeof *kd);
    *st = kd != NULL ? jac__sparse_plan_dense(prog, &so,
                                              rows < cols ? rows : cols, &plan)
                     : jac__program_fail(JAC_ERR_NO_MEMORY,
                                         "program_jacobian: out of memory");
    double *values =
        *st == JAC_OK && plan != NULL
            ? jac__prog_alloc(prog, (size_t)plan->nnz * sizeof(double))
            : NULL;
    if (*st == JAC_OK && plan != NULL && values == NULL)
        *st = jac__program_fail(JAC_ERR_NO_MEMORY,
                                "program_jacobian: out of memory");
    if (*st != JAC_OK) {
        jac_sparse_free(plan);
        jac__prog_free(prog, kd, sizeof *kd);
        atomic_store(&prog->kept_making, 0);
        return NULL;
    }
    kd->plan = plan;
    kd->values = values;
    atomic_init(&kd->busy, 0);
    atomic_store(&prog->kept, kd);
    return kd;
}

/* The dense blocks J (entries may be NULL) from the plan's values: zero
 * outside the pattern; the values come in row order. */
static void scatter_blocks(const jac_program *prog, const jac_sparse *plan,
                           const double *values, double *const *J)
{
    size_t nx = prog->ninputs;
    for (size_t k = 0; k < prog->noutputs; k++)
        for (size_t i = 0; i < nx; i++)
            if (J[k * nx + i] != NULL)
                memset(J[k * nx + i], 0,
                       (size_t)(prog->outs[k].numel * prog->args[i].numel) *
                           sizeof(double));
    size_t k = 0;
    int64_t r0 = 0;
    for (int64_t t = 0; t < plan->nnz; t++) {
        int64_t r = plan->row[t], c = plan->col[t], c0 = 0;
        while (r >= r0 + prog->outs[k].numel)
            r0 += prog->outs[k++].numel;
        size_t i = 0;
        while (c >= c0 + prog->args[i].numel)
            c0 += prog->args[i++].numel;
        double *b = J[k * nx + i];
        if (b != NULL)
            b[(r - r0) * prog->args[i].numel + (c - c0)] = values[t];
    }
}

jac_status jac__program_jacobian_sparse(jac_program *prog,
                                        const double *const *args,
                                        double *const *outputs,
                                        double *const *J, bool *done)
{
    *done = false;
    if (prog->ninputs > 64)
        return JAC_OK;
    jac_status st;
    kept_dense *kd = kept_of(prog, &st);
    if (kd == NULL || kd->plan == NULL)
        return st;
    jac_sparse *plan = kd->plan;
    /* The kept buffers, or, while another call uses them, this call's own:
     * the same sweeps either way. */
    int idle = 0;
    bool held = atomic_compare_exchange_strong(&kd->busy, &idle, 1);
    size_t nb = (size_t)(plan->ncolors * plan->bstride), nv = (size_t)plan->nnz;
    double *B = held ? plan->B : jac__prog_alloc(prog, nb * sizeof(double));
    double *values =
        held ? kd->values : jac__prog_alloc(prog, nv * sizeof(double));
    if (B == NULL || values == NULL)
        st = jac__program_fail(JAC_ERR_NO_MEMORY,
                               "program_jacobian: out of memory");
    else
        st = jac__sparse_jacobian_into(plan, args, B, values, outputs);
    if (st == JAC_OK) {
        scatter_blocks(prog, plan, values, J);
        *done = true;
    }
    if (held) {
        atomic_store(&kd->busy, 0);
    } else {
        jac__prog_free(prog, B, nb * sizeof(double));
        jac__prog_free(prog, values, nv * sizeof(double));
    }
    return st;
}
