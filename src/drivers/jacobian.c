/*
 * Jacobian drivers: blocks of seeds through one backward plan, in reverse
 * mode (rows), forward mode (columns, by the double-backward trick) and per
 * sample; optionally on several threads.
 *
 * SPDX-License-Identifier: MIT
 */
#include "drivers/drivers.h"

#include <pthread.h>

/* ------------------------------------------------------------------------ */
/* The block engine                                                         */
/*                                                                          */
/* Every driver reduces to one shape of work: a plan whose outputs are       */
/* "seeded" and whose inputs give "results". A block seeds c consecutive    */
/* elements of one seeded output (in every sample at once when the output   */
/* holds reps samples) with ones, runs the plan, and places the c result    */
/* slices into the destination blocks. Blocks are independent, so they can */
/* run in any order and on any thread with the same bits.                   */
/* ------------------------------------------------------------------------ */

typedef enum {
    PLACE_ROWS,    /* result j is row r0 + j of dest (reverse mode) */
    PLACE_COLUMNS, /* result j is column r0 + j of dest (forward mode) */
    PLACE_SAMPLES  /* result (j, b) is row r0 + j of sample b of dest */
} placement;

typedef struct block {
    size_t seeded; /* which plan output */
    int64_t r0, count;
} block;

typedef struct engine {
    jac_ctx *ctx;
    const char *op;
    const jac__plan *plan;
    size_t nseeded, nres;
    jac_tensor *const *seeded; /* plan outputs */
    jac_tensor *const *res;    /* plan inputs */
    placement place;
    int64_t reps; /* samples per seeded output (PLACE_SAMPLES), else 1 */
    bool create;
    /* Destination of the pair (seeded s, result r): dest[s * nres + r]
     * (reverse, samples) or dest[r * nseeded + s] (forward). */
    jac_tensor **dest;
    /* With create-graph: the block results of each pair, in block order. */
    jac_tensor **parts;
    size_t nparts_per_pair;
    block *blocks;
    size_t nblocks;
    int64_t chunk;
    jac_progress_fn progress;
    void *progress_user;
    int64_t total_units;
} engine;

/* Zeros for a Jacobian result: a failure names the driver, the shape and
 * the bytes it needed, not an internal op. */
static jac_tensor *result_zeros(jac_ctx *ctx, const char *op, int nd,
                                const int64_t *shape)
{
    jac_tensor *z = jac__tensor_alloc(ctx, op, nd, shape);
    if (z != NULL && z->numel > 0)
        memset(z->data, 0, (size_t)z->numel * sizeof(double));
    return z;
}

static size_t dest_index(const engine *e, size_t s, size_t r)
{
    return e->place == PLACE_COLUMNS ? r * e->nseeded + s : s * e->nres + r;
}

/* Elements of one sample of seeded output s. */
static int64_t sample_numel(const engine *e, size_t s)
{
    return e->reps > 0 ? e->seeded[s]->numel / e->reps : 0;
}

/* A block of count seeds for seeded output s, batched unless it is a single
 * unbatched row (the reference algorithm seeds e_i of y's own shape). */
static jac_tensor *make_seed(jac_ctx *ctx, const engine *e, const block *b,
                             bool *batched)
{
    const jac_tensor *y = e->seeded[b->seeded];
    *batched = b->count > 1 || e->place == PLACE_SAMPLES;
    int64_t shape[JAC_MAX_DIMS];
    int nd = 0;
    if (*batched) {
        if (y->ndim + 1 > JAC_MAX_DIMS) {
            jac__error(ctx, JAC_ERR_RANK,
                       "%s: a block of seeds for shape of rank %d exceeds "
                       "rank %d; use chunk 1",
                       e->op, y->ndim, JAC_MAX_DIMS);
            return NULL;
        }
        shape[nd++] = b->count;
    }
    memcpy(shape + nd, y->shape, (size_t)y->ndim * sizeof(int64_t));
    jac_tensor *seed = jac_zeros(ctx, nd + y->ndim, shape);
    if (seed == NULL)
        return NULL;
    int64_t m = sample_numel(e, b->seeded);
    for (int64_t j = 0; j < b->count; j++)
        for (int64_t t = 0; t < e->reps; t++)
            seed->data[j * y->numel + t * m + b->r0 + j] = 1.0;
    return seed;
}

/* Copies the block's results into the destinations (create-graph off). */
static void place_results(const engine *e, const block *b, jac_tensor **res)
{
    size_t s = b->seeded;
    int64_t m = sample_numel(e, s), c = b->count;
    for (size_t r = 0; r < e->nres; r++) {
        if (res[r] == NULL)
            continue; /* the destination is already zero */
        const double *src = res[r]->data;
        double *dst = e->dest[dest_index(e, s, r)]->data;
        int64_t n = e->res[r]->numel;
        if (e->place == PLACE_ROWS) {
            memcpy(dst + b->r0 * n, src, (size_t)(c * n) * sizeof(double));
        } else if (e->place == PLACE_COLUMNS) {
            for (int64_t j = 0; j < c; j++)
                for (int64_t row = 0; row < n; row++)
                    dst[row * m + b->r0 + j] = src[j * n + row];
        } else {
            int64_t per = n / e->reps; /* input elements per sample */
            for (int64_t j = 0; j < c; j++)
                for (int64_t t = 0; t < e->reps; t++)
                    memcpy(dst + (t * m + b->r0 + j) * per,
                           src + (j * e->reps + t) * per,
                           (size_t)per * sizeof(double));
        }
    }
}

/* Runs one block in ctx (the engine's context or a worker of it). */
static jac_status run_block(jac_ctx *ctx, const engine *e, size_t index)
{
    const block *b = &e->blocks[index];
    jac_scope mark = jac_scope_begin(ctx);
    size_t bytes = (e->nseeded + e->nres) * sizeof(jac_tensor *);
    jac_tensor **seeds = jac__alloc(ctx, bytes);
    if (seeds == NULL)
        return jac__error(ctx, JAC_ERR_NO_MEMORY, "%s: out of memory", e->op);
    memset(seeds, 0, bytes);
    jac_tensor **res = seeds + e->nseeded;
    bool batched;
    jac_status st = JAC_OK;
    seeds[b->seeded] = make_seed(ctx, e, b, &batched);
    if (seeds[b->seeded] == NULL)
        st = ctx->status;
    unsigned flags = JAC_RETAIN_GRAPH | (e->create ? JAC_CREATE_GRAPH : 0u);
    jac__onehot hint = {b->seeded, b->r0, b->count, batched ? e->reps : 0};
    if (st == JAC_OK)
        st = jac__plan_run_hinted(ctx, e->op, e->plan, seeds, flags,
                                  batched ? &hint : NULL, res);
    if (st == JAC_OK && !e->create) {
        place_results(e, b, res);
    } else if (st == JAC_OK) {
        /* Keep each result as a (count, ...) block for the final concat. */
        for (size_t r = 0; r < e->nres && st == JAC_OK; r++) {
            const jac_tensor *x = e->res[r];
            int64_t shape[3] = {b->count, x->numel, 0};
            int nd = 2;
            if (e->place == PLACE_SAMPLES) {
                shape[1] = e->reps;
                shape[2] = x->numel / e->reps;
                nd = 3;
            }
            jac_tensor *t = res[r] ? jac_reshape(ctx, res[r], nd, shape)
                                   : jac_zeros(ctx, nd, shape);
            if (t == NULL)
                st = ctx->status;
            else
                e->parts[(b->seeded * e->nres + r) * e->nparts_per_pair +
                         (size_t)(b->r0 / e->chunk)] = t;
        }
    }
    jac__free(ctx, seeds, bytes);
    if (!e->create)
        jac_scope_end(ctx, mark, NULL, 0);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Threads                                                                  */
/* ------------------------------------------------------------------------ */

/* Workers take the next block under a lock and report progress under the
 * same lock, so the callback is never called concurrently and a
 * cancellation stops every block not yet started. */
typedef struct pool {
    engine *e;
    pthread_mutex_t lock;
    size_t next;
    int64_t units;
    bool stop;
    jac_status status;
    jac_ctx *failed; /* the worker holding the first error */
} pool;

typedef struct worker {
    pool *p;
    jac_ctx *ctx;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    pool *p = w->p;
    const engine *e = p->e;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        if (p->stop || p->next >= e->nblocks) {
            pthread_mutex_unlock(&p->lock);
            return NULL;
        }
        size_t index = p->next++;
        pthread_mutex_unlock(&p->lock);
        jac_status st = run_block(w->ctx, e, index);
        pthread_mutex_lock(&p->lock);
        if (st != JAC_OK && p->status == JAC_OK) {
            p->status = st;
            p->failed = w->ctx;
            p->stop = true;
        } else if (st == JAC_OK && !p->stop) {
            p->units += e->blocks[index].count;
            if (e->progress &&
                e->progress(p->units, e->total_units, e->progress_user)) {
                p->status = JAC_ERR_CANCELLED;
                p->stop = true;
            }
        }
        pthread_mutex_unlock(&p->lock);
    }
}

static jac_status cancelled(engine *e)
{
    return jac__error(e->ctx, JAC_ERR_CANCELLED,
                      "%s: cancelled by the progress callback", e->op);
}

/* Runs the blocks on n worker threads, each with its own context. */
static jac_status run_threaded(engine *e, int n)
{
    pool p = {.e = e, .status = JAC_OK};
    worker ws[256];
    pthread_t ids[256];
    int started = 0;
    jac_status st = JAC_OK;
    if (pthread_mutex_init(&p.lock, NULL) != 0)
        return jac__error(e->ctx, JAC_ERR_NO_MEMORY,
                          "%s: cannot create a mutex", e->op);
    for (int t = 0; t < n; t++) {
        ws[t].p = &p;
        ws[t].ctx = jac__ctx_worker(e->ctx, (size_t)t);
        if (ws[t].ctx == NULL ||
            pthread_create(&ids[t], NULL, worker_main, &ws[t]) != 0) {
            st = jac__error(e->ctx, JAC_ERR_NO_MEMORY,
                            "%s: out of memory starting thread %d", e->op, t);
            pthread_mutex_lock(&p.lock);
            p.stop = true;
            pthread_mutex_unlock(&p.lock);
            break;
        }
        started++;
    }
    for (int t = 0; t < started; t++)
        pthread_join(ids[t], NULL);
    if (st == JAC_OK && p.status == JAC_ERR_CANCELLED && p.failed == NULL)
        st = cancelled(e);
    else if (st == JAC_OK && p.status != JAC_OK)
        st = jac__error(e->ctx, p.status, "%s", jac_errmsg(p.failed));
    pthread_mutex_destroy(&p.lock);
    return st;
}

static jac_status run_blocks(engine *e)
{
    int threads = e->create ? 1 : e->ctx->threads;
    if (threads > 1 && e->nblocks > 1)
        return run_threaded(e, threads < (int)e->nblocks ? threads
                                                         : (int)e->nblocks);
    int64_t done = 0;
    for (size_t i = 0; i < e->nblocks; i++) {
        jac_status st = run_block(e->ctx, e, i);
        if (st != JAC_OK)
            return st;
        done += e->blocks[i].count;
        if (e->progress && e->progress(done, e->total_units, e->progress_user))
            return cancelled(e);
    }
    return JAC_OK;
}

/* ------------------------------------------------------------------------ */
/* Setting up and finishing a run                                           */
/* ------------------------------------------------------------------------ */

/* Shape a ++ b into dst; rank or -1 when too large. */
static int concat_shape(int na, const int64_t *a, int nb, const int64_t *b,
                        int64_t *dst)
{
    if (na + nb > JAC_MAX_DIMS)
        return -1;
    memcpy(dst, a, (size_t)na * sizeof(int64_t));
    memcpy(dst + na, b, (size_t)nb * sizeof(int64_t));
    return na + nb;
}

/* The shape of destination block (seeded s, result r). */
static int dest_shape(const engine *e, size_t s, size_t r, int64_t *dst)
{
    const jac_tensor *y = e->seeded[s], *x = e->res[r];
    if (e->place == PLACE_ROWS)
        return concat_shape(y->ndim, y->shape, x->ndim, x->shape, dst);
    if (e->place == PLACE_COLUMNS)
        return concat_shape(x->ndim, x->shape, y->ndim, y->shape, dst);
    /* Samples: (B, out..., in...) from y (B, out...) and x (B, in...). */
    return concat_shape(y->ndim, y->shape, x->ndim - 1, x->shape + 1, dst);
}

/* Plans the blocks: for each seeded output that the plan reaches, its
 * sample elements in steps of chunk. */
static jac_status plan_blocks(engine *e, int64_t chunk)
{
    e->chunk = chunk;
    size_t n = 0;
    for (size_t s = 0; s < e->nseeded; s++) {
        int64_t m = sample_numel(e, s);
        if (jac__plan_output_used(e->plan, s) && m > 0)
            n += (size_t)((m + chunk - 1) / chunk);
    }
    e->nblocks = n;
    e->blocks = jac__alloc(e->ctx, (n ? n : 1) * sizeof(block));
    if (e->blocks == NULL)
        return jac__error(e->ctx, JAC_ERR_NO_MEMORY, "%s: out of memory",
                          e->op);
    size_t k = 0;
    e->total_units = 0;
    e->nparts_per_pair = 0;
    for (size_t s = 0; s < e->nseeded; s++) {
        int64_t m = sample_numel(e, s);
        if (!jac__plan_output_used(e->plan, s) || m == 0)
            continue;
        size_t parts = 0;
        for (int64_t r0 = 0; r0 < m; r0 += chunk) {
            block b = {s, r0, m - r0 < chunk ? m - r0 : chunk};
            e->blocks[k++] = b;
            e->total_units += b.count;
            parts++;
        }
        if (parts > e->nparts_per_pair)
            e->nparts_per_pair = parts;
    }
    return JAC_OK;
}

static int64_t choose_chunk(const engine *e, int64_t requested)
{
    int64_t most = 1;
    for (size_t s = 0; s < e->nseeded; s++)
        if (sample_numel(e, s) > most)
            most = sample_numel(e, s);
    /* No block is larger than an output, so block bounds cannot overflow. */
    if (requested > 0)
        return requested < most ? requested : most;
    size_t per = jac__plan_bytes_per_seed(e->plan) * (size_t)e->reps;
    size_t c = e->ctx->memory_budget / (per ? per : 1);
    if (c < 1)
        c = 1;
    return (int64_t)c < most ? (int64_t)c : most;
}

/* Joins the create-graph parts of each pair into its destination with
 * differentiable ops. */
static jac_status assemble(engine *e)
{
    jac_ctx *ctx = e->ctx;
    for (size_t s = 0; s < e->nseeded; s++) {
        for (size_t r = 0; r < e->nres; r++) {
            int64_t shape[JAC_MAX_DIMS];
            int nd = dest_shape(e, s, r, shape);
            size_t i = dest_index(e, s, r);
            jac_tensor **parts =
                e->parts + (s * e->nres + r) * e->nparts_per_pair;
            size_t nparts = 0;
            while (nparts < e->nparts_per_pair && parts[nparts])
                nparts++;
            if (nparts == 0) {
                e->dest[i] = result_zeros(ctx, e->op, nd, shape);
            } else {
                jac_tensor *t = jac_concat(ctx, nparts, parts, 0);
                if (e->place != PLACE_ROWS)
                    t = jac_transpose(ctx, t, 0, 1);
                e->dest[i] = jac_reshape(ctx, t, nd, shape);
            }
            if (e->dest[i] == NULL)
                return ctx->status;
        }
    }
    return JAC_OK;
}

/* Runs the engine: allocates destinations (zeros without create-graph),
 * runs the blocks and, with create-graph, assembles the parts. */
static jac_status engine_run(engine *e, int64_t chunk)
{
    jac_ctx *ctx = e->ctx;
    size_t npairs = e->nseeded * e->nres;
    jac_status st = plan_blocks(e, choose_chunk(e, chunk));
    size_t pbytes = 0;
    if (st == JAC_OK && e->create) {
        pbytes = (npairs * e->nparts_per_pair + 1) * sizeof(jac_tensor *);
        e->parts = jac__alloc(ctx, pbytes);
        if (e->parts == NULL)
            st = jac__error(ctx, JAC_ERR_NO_MEMORY, "%s: out of memory", e->op);
        else
            memset(e->parts, 0, pbytes);
    }
    for (size_t s = 0; s < e->nseeded && st == JAC_OK && !e->create; s++) {
        for (size_t r = 0; r < e->nres && st == JAC_OK; r++) {
            int64_t shape[JAC_MAX_DIMS];
            int nd = dest_shape(e, s, r, shape);
            if (nd < 0) {
                st = jac__error(ctx, JAC_ERR_RANK,
                                "%s: the Jacobian block would exceed rank %d",
                                e->op, JAC_MAX_DIMS);
                break;
            }
            jac_tensor *z = result_zeros(ctx, e->op, nd, shape);
            e->dest[dest_index(e, s, r)] = z;
            if (z == NULL)
                st = ctx->status;
        }
    }
    if (st == JAC_OK)
        st = run_blocks(e);
    if (st == JAC_OK && e->create)
        st = assemble(e);
    jac__free(ctx, e->parts, pbytes);
    jac__free(ctx, e->blocks, (e->nblocks ? e->nblocks : 1) * sizeof(block));
    e->parts = NULL;
    e->blocks = NULL;
    return st;
}

/* ------------------------------------------------------------------------ */
/* jac_jacobian_ex                                                          */
/* ------------------------------------------------------------------------ */

static jac_status check_tensors(jac_ctx *ctx, const char *op, size_t n,
                                jac_tensor *const *ts, const char *what,
                                bool need_grad)
{
    char s[JAC__SHAPE_STR_MAX];
    if (n == 0 || ts == NULL)
        return jac__error(ctx, JAC_ERR_NULL_ARG, "%s: no %ss given", op, what);
    for (size_t i = 0; i < n; i++) {
        jac_status st = jac__check_named(ctx, op, ts[i], what, i);
        if (st != JAC_OK)
            return st;
        if (need_grad && !ts[i]->requires_grad)
            return jac__error(
                ctx, JAC_ERR_NO_GRAD,
                "%s: %s %zu of shape %s does not require gradients", op, what,
                i, jac__shape_str(s, sizeof s, ts[i]->ndim, ts[i]->shape));
    }
    return JAC_OK;
}

static jac_jacobian_opts resolve(const jac_jacobian_opts *opts)
{
    jac_jacobian_opts o = {0, 0, JAC_MODE_AUTO, NULL, NULL};
    return opts ? *opts : o;
}

/* The recorded g = J^T u for dummy seeds u (zeros that require gradients),
 * the heart of the double-backward trick: g is linear in u, so its
 * derivative with respect to u along v is J v. */
static jac_status transposed_product(jac_ctx *ctx, size_t ny,
                                     jac_tensor *const *ys, size_t nx,
                                     jac_tensor *const *xs, jac_tensor **u,
                                     jac_tensor **g)
{
    for (size_t k = 0; k < ny; k++) {
        if ((u[k] = jac_zeros(ctx, ys[k]->ndim, ys[k]->shape)) == NULL)
            return ctx->status;
        u[k]->requires_grad = true;
    }
    return jac_grad(ctx, ny, ys, u, nx, xs, JAC_CREATE_GRAPH | JAC_ALLOW_UNUSED,
                    g);
}

/* Forward mode by the double-backward trick: with dummy seeds u_k, the
 * recorded gradient g_i = sum_k J_ki^T u_k is linear in u, and its
 * derivative with respect to u_k along v is J_ki v: seeding g_i with unit
 * vectors yields columns. */
static jac_status jacobian_forward(jac_ctx *ctx, const char *op, size_t ny,
                                   jac_tensor *const *ys, size_t nx,
                                   jac_tensor *const *xs,
                                   const jac_jacobian_opts *o, jac_tensor **J)
{
    bool create = (o->flags & JAC_CREATE_GRAPH) != 0;
    size_t dbytes = ny * nx * sizeof(jac_tensor *);
    size_t bytes = (ny + nx) * sizeof(jac_tensor *) + dbytes;
    jac_tensor **u = jac__alloc(ctx, bytes);
    if (u == NULL)
        return jac__error(ctx, JAC_ERR_NO_MEMORY, "%s: out of memory", op);
    jac_tensor **g = u + ny, **out = g + nx; /* out: ny * nx blocks */
    jac_scope mark = jac_scope_begin(ctx);
    jac_status st = transposed_product(ctx, ny, ys, nx, xs, u, g);
    jac__plan *plan = NULL;
    if (st == JAC_OK)
        st = jac__plan_build(ctx, op, nx, g, ny, u, &plan);
    if (st == JAC_OK) {
        engine e = {.ctx = ctx,
                    .op = op,
                    .plan = plan,
                    .nseeded = nx,
                    .nres = ny,
                    .seeded = g,
                    .res = u,
                    .place = PLACE_COLUMNS,
                    .reps = 1,
                    .create = create,
                    .dest = out,
                    .progress = o->progress,
                    .progress_user = o->progress_user};
        st = engine_run(&e, o->chunk);
    }
    jac__plan_free(ctx, plan);
    if (st == JAC_OK) {
        /* Without create-graph only the results survive the scope. */
        if (!create)
            jac_scope_end(ctx, mark, out, ny * nx);
        memcpy(J, out, dbytes);
    } else {
        jac_scope_end(ctx, mark, NULL, 0);
    }
    jac__free(ctx, u, bytes);
    return st;
}

/* A block of zeros that no pass computes is an error unless
 * JAC_ALLOW_UNUSED: an output that depends on no input, or an input no
 * output depends on, is more often a mistake (recording off, an input
 * marked too late) than intended; the message says which. */
static jac_status check_used(jac_ctx *ctx, const char *op,
                             const jac__plan *plan, size_t ny,
                             jac_tensor *const *ys, size_t nx,
                             jac_tensor *const *xs)
{
    for (size_t k = 0; k < ny; k++)
        if (!jac__plan_output_used(plan, k) && nx > 0)
            return jac__unreached(ctx, op, ny, ys, k, 0, xs[0]);
    for (size_t i = 0; i < nx; i++)
        if (!jac__plan_input_used(plan, i))
            return jac__unreached(ctx, op, ny, ys, SIZE_MAX, i, xs[i]);
    return JAC_OK;
}

/* With symmetric (the Jacobian of a gradient), a result the sparse path
 * gave is symmetrised already, and *symmetric says so. */
static jac_status jacobian_impl(jac_ctx *ctx, const char *op, size_t ny,
                                jac_tensor *const *ys, size_t nx,
                                jac_tensor *const *xs,
                                const jac_jacobian_opts *opts, jac_tensor **J,
                                bool *symmetric)
{
    jac_jacobian_opts o = resolve(opts);
    jac_status st;
    if ((st = check_tensors(ctx, op, ny, ys, "output", false)) != JAC_OK ||
        (st = check_tensors(ctx, op, nx, xs, "input", true)) != JAC_OK)
        return st;
    if (J == NULL)
        return jac__error(ctx, JAC_ERR_NULL_ARG, "%s: J is NULL", op);
    if (o.chunk < 0 || (o.mode != JAC_MODE_AUTO && o.mode != JAC_MODE_REVERSE &&
                        o.mode != JAC_MODE_FORWARD))
        return jac__error(ctx, JAC_ERR_VALUE,
                          "%s: chunk %lld or mode %d is invalid", op,
                          (long long)o.chunk, (int)o.mode);
    for (size_t k = 0; k < ny; k++)
        for (size_t i = 0; i < nx; i++)
            if (ys[k]->ndim + xs[i]->ndim > JAC_MAX_DIMS)
                return jac__error(ctx, JAC_ERR_RANK,
                                  "%s: ranks %d + %d of output %zu and input "
                                  "%zu exceed %d",
                                  op, ys[k]->ndim, xs[i]->ndim, k, i,
                                  JAC_MAX_DIMS);
    jac__plan *plan = NULL;
    if ((st = jac__plan_build(ctx, op, ny, ys, nx, xs, &plan)) != JAC_OK)
        return st;
    if (!(o.flags & JAC_ALLOW_UNUSED) &&
        (st = check_used(ctx, op, plan, ny, ys, nx, xs)) != JAC_OK) {
        jac__plan_free(ctx, plan);
        return st;
    }
    /* A sparse Jacobian (an elementwise function's diagonal, a stencil)
     * takes only as many sweeps as its colours. */
    bool done = false;
    st = jac__jacobian_sparse(ctx, op, ny, ys, nx, xs, &o, symmetric != NULL, J,
                              &done);
    if (symmetric != NULL)
        *symmetric = done;
    if (st != JAC_OK || done) {
        jac__plan_free(ctx, plan);
        return st;
    }
    if (o.mode == JAC_MODE_AUTO) {
        int64_t rows = 0, cols = 0;
        for (size_t k = 0; k < ny; k++)
            if (jac__plan_output_used(plan, k))
                rows += ys[k]->numel;
        for (size_t i = 0; i < nx; i++)
            cols += xs[i]->numel;
        o.mode = cols < rows ? JAC_MODE_FORWARD : JAC_MODE_REVERSE;
    }
    if (o.mode == JAC_MODE_FORWARD) {
        jac__plan_free(ctx, plan);
        return jacobian_forward(ctx, op, ny, ys, nx, xs, &o, J);
    }
    size_t dbytes = ny * nx * sizeof(jac_tensor *);
    jac_tensor **out = jac__alloc(ctx, dbytes);
    if (out == NULL) {
        jac__plan_free(ctx, plan);
        return jac__error(ctx, JAC_ERR_NO_MEMORY, "%s: out of memory", op);
    }
    jac_scope mark = jac_scope_begin(ctx);
    engine e = {.ctx = ctx,
                .op = op,
                .plan = plan,
                .nseeded = ny,
                .nres = nx,
                .seeded = ys,
                .res = xs,
                .place = PLACE_ROWS,
                .reps = 1,
                .create = (o.flags & JAC_CREATE_GRAPH) != 0,
                .dest = out,
                .progress = o.progress,
                .progress_user = o.progress_user};
    st = engine_run(&e, o.chunk);
    jac__plan_free(ctx, plan);
    if (st == JAC_OK)
        memcpy(J, out, dbytes);
    else
        jac_scope_end(ctx, mark, NULL, 0);
    jac__free(ctx, out, dbytes);
    return st;
}

static jac_status jacobian_ex_unguarded(jac_ctx *ctx, size_t ny,
                                        jac_tensor *const *ys, size_t nx,
                                        jac_tensor *const *xs,
                                        const jac_jacobian_opts *opts,
                                        jac_tensor **J)
{
    if (ctx == NULL)
        return JAC_ERR_NULL_ARG;
    return jacobian_impl(ctx, "jacobian", ny, ys, nx, xs, opts, J, NULL);
}

/* One thread at a time: see jac__enter. */
jac_status jac_jacobian_ex(jac_ctx *ctx, size_t ny, jac_tensor *const *ys,
                           size_t nx, jac_tensor *const *xs,
                           const jac_jacobian_opts *opts, jac_tensor **J)
{
    JAC__HELD(ctx, jac_status, JAC_ERR_STATE,
              jacobian_ex_unguarded(ctx, ny, ys, nx, xs, opts, J));
}

static jac_tensor *jacobian_unguarded(jac_ctx *ctx, jac_tensor *y,
                                      jac_tensor *x, unsigned flags)
{
    if (ctx == NULL)
        return NULL;
    if (!jac__check_arg(ctx, "jacobian", y) ||
        !jac__check_arg(ctx, "jacobian", x))
        return NULL;
    jac_jacobian_opts o = {flags & (JAC_CREATE_GRAPH | JAC_ALLOW_UNUSED), 0,
                           JAC_MODE_AUTO, NULL, NULL};
    jac_tensor *J = NULL;
    if (jacobian_impl(ctx, "jacobian", 1, &y, 1, &x, &o, &J, NULL) != JAC_OK)
        return NULL;
    return J;
}

/* One thread at a time: see jac__enter. */
jac_tensor *jac_jacobian(jac_ctx *ctx, jac_tensor *y, jac_tensor *x,
                         unsigned flags)
{
    JAC__HELD(ctx, jac_tensor *, NULL, jacobian_unguarded(ctx, y, x, flags));
}

/* ------------------------------------------------------------------------ */
/* The functional API                                                       */
/* ------------------------------------------------------------------------ */

/* Inputs for a functional driver: each input that requires gradients is used
 * as it is under create-graph; otherwise a leaf copy that requires them. */
static jac_status prepare_inputs(jac_ctx *ctx, const char *op, size_t n,
                                 jac_tensor *const *inputs, bool create,
                                 jac_tensor **dst)
{
    if (n == 0 || inputs == NULL)
        return jac__error(ctx, JAC_ERR_NULL_ARG, "%s: no inputs given", op);
    for (size_t i = 0; i < n; i++) {
        jac_status st = jac__check_named(ctx, op, inputs[i], "input", i);
        if (st != JAC_OK)
            return st;
        if (create && inputs[i]->requires_grad) {
            dst[i] = inputs[i];
            continue;
        }
        dst[i] = jac_detach(ctx, inputs[i]);
        if (dst[i] == NULL)
            return ctx->status;
        dst[i]->requires_grad = true;
    }
    return JAC_OK;
}

jac_status jac__call_fn(jac_ctx *ctx, const char *op, jac_fn fn, void *user,
                        jac_tensor *const *inputs, size_t noutputs,
                        jac_tensor **outputs, bool record)
{
    if (fn == NULL)
        return jac__error(ctx, JAC_ERR_NULL_ARG, "%s: fn is NULL", op);
    for (size_t k = 0; k < noutputs; k++)
        outputs[k] = NULL;
    bool was = jac_set_grad_enabled(ctx, record);
    jac_status st = fn(ctx, inputs, outputs, user);
    jac_set_grad_enabled(ctx, was);
    if (st != JAC_OK)
        return jac__error(ctx, JAC_ERR_CALLBACK,
                          "%s: the function failed with %s", op,
                          jac_status_name(st));
    for (size_t k = 0; k < noutputs; k++) {
        if (outputs[k] == NULL)
            return jac__error(ctx, JAC_ERR_CALLBACK,
                              "%s: the function left output %zu unset", op, k);
        if (!jac__check_arg(ctx, op, outputs[k]))
            return JAC_ERR_CONTEXT;
    }
    return JAC_OK;
}

/* Scratch arrays of tensor pointers for the functional drivers. */
typedef struct scratch {
    jac_ctx *ctx;
    size_t bytes;
    jac_tensor **p;
} scratch;

static jac_tensor **scratch_get(scratch *s, jac_ctx *ctx, size_t n)
{
    s->ctx = ctx;
    s->bytes = (n ? n : 1) * sizeof(jac_tensor *);
    s->p = jac__alloc(ctx, s->bytes);
    if (s->p == NULL)
        jac__error(ctx, JAC_ERR_NO_MEMORY, "out of memory");
    else
        memset(s->p, 0, s->bytes);
    return s->p;
}

static void scratch_put(scratch *s) { jac__free(s->ctx, s->p, s->bytes); }

/* Finishes a functional call: without create-graph only the results survive
 * the scope; on failure nothing does. */
static void finish(jac_ctx *ctx, jac_scope mark, jac_status st, bool create,
                   jac_tensor **keep, size_t nkeep)
{
    if (st != JAC_OK)
        jac_scope_end(ctx, mark, NULL, 0);
    else if (!create)
        jac_scope_end(ctx, mark, keep, nkeep);
}

/* After finish: on success the n results res go to dst and, unless outputs
 * is NULL, the function's nys outputs ys go to outputs. */
static void deliver(jac_status st, jac_tensor **dst, jac_tensor *const *res,
                    size_t n, jac_tensor **outputs, jac_tensor *const *ys,
                    size_t nys)
{
    if (st != JAC_OK)
        return;
    memcpy(dst, res, n * sizeof(jac_tensor *));
    if (outputs)
        memcpy(outputs, ys, nys * sizeof(jac_tensor *));
}

static jac_status
jacobian_fn_unguarded(jac_ctx *ctx, jac_fn fn, void *user, size_t ninputs,
                      jac_tensor *const *inputs, size_t noutputs,
                      const jac_jacobian_opts *opts, jac_tensor **J)
{
    if (ctx == NULL)
        return JAC_ERR_NULL_ARG;
    const char *op = "jacobian_fn";
    if (J == NULL || noutputs == 0)
        return jac__error(ctx, JAC_ERR_NULL_ARG, "%s: J is NULL or no outputs",
                          op);
    bool create = opts && (opts->flags & JAC_CREATE_GRAPH);
    scratch sc;
    jac_tensor **w = scratch_get(&sc, ctx, ninputs + noutputs * (1 + ninputs));
    if (w == NULL)
        return ctx->status;
    jac_tensor **xs = w, **ys = w + ninputs, **out = ys + noutputs;
    jac_scope mark = jac_scope_begin(ctx);
    jac_status st = prepare_inputs(ctx, op, ninputs, inputs, create, xs);
    if (st == JAC_OK)
        st = jac__call_fn(ctx, op, fn, user, xs, noutputs, ys, true);
    if (st == JAC_OK)
        st = jacobian_impl(ctx, op, noutputs, ys, ninputs, xs, opts, out, NULL);
    finish(ctx, mark, st, create, out, noutputs * ninputs);
    deliver(st, J, out, noutputs * ninputs, NULL, NULL, 0);
    scratch_put(&sc);
    return st;
}

/* One thread at a time: see jac__enter. */
jac_status jac_jacobian_fn(jac_ctx *ctx, jac_fn fn, void *user, size_t ninputs,
                           jac_tensor *const *inputs, size_t noutputs,
                           const jac_jacobian_opts *opts, jac_tensor **J)
{
    JAC__HELD(ctx, jac_status, JAC_ERR_STATE,
              jacobian_fn_unguarded(ctx, fn, user, ninputs, inputs, noutputs,
                                    opts, J));
}

static jac_tensor *hessian_unguarded(jac_ctx *ctx, jac_fn fn, void *user,
                                     jac_tensor *x,
                                     const jac_jacobian_opts *opts)
{
    if (ctx == NULL)
        return NULL;
    const char *op = "hessian";
    jac_jacobian_opts o = resolve(opts);
    bool create = (o.flags & JAC_CREATE_GRAPH) != 0;
    jac_tensor *xs = NULL, *y = NULL, *g = NULL, *H = NULL;
    bool symmetric = false;
    char s[JAC__SHAPE_STR_MAX];
    jac_scope mark = jac_scope_begin(ctx);
    jac_status st = prepare_inputs(ctx, op, 1, &x, create, &xs);
    if (st == JAC_OK)
        st = jac__call_fn(ctx, op, fn, user, &xs, 1, &y, true);
    if (st == JAC_OK && y->numel != 1)
        st = jac__error(ctx, JAC_ERR_SHAPE,
                        "%s: the function's output has shape %s; a Hessian "
                        "needs one element",
                        op, jac__shape_str(s, sizeof s, y->ndim, y->shape));
    if (st == JAC_OK && 2 * xs->ndim > JAC_MAX_DIMS)
        st = jac__error(ctx, JAC_ERR_RANK, "%s: rank 2 * %d exceeds %d", op,
                        xs->ndim, JAC_MAX_DIMS);
    /* The output must depend on x (unless allowed); its gradient need not
     * (a linear function has a zero Hessian). */
    if (st == JAC_OK)
        st = jac_grad(ctx, 1, &y, NULL, 1, &xs,
                      JAC_CREATE_GRAPH | (o.flags & JAC_ALLOW_UNUSED), &g);
    if (st == JAC_OK) {
        /* Rows are Hessian-vector products; reverse mode over the gradient,
         * then symmetrised so that H == H^T exactly. */
        o.mode = JAC_MODE_REVERSE;
        o.flags |= JAC_ALLOW_UNUSED;
        st = jacobian_impl(ctx, op, 1, &g, 1, &xs, &o, &H, &symmetric);
    }
    if (st == JAC_OK && symmetric) {
        /* The sparse path averaged the pairs already. */
    } else if (st == JAC_OK && !create) {
        /* The same average in place, in tiles that stay in cache: 8 rows
         * at a time, as many as a cache set holds when rows lie a power
         * of two apart. */
        int64_t n = xs->numel;
        double *h = H->data;
        for (int64_t i0 = 0; i0 < n; i0 += 8)
            for (int64_t j0 = i0; j0 < n; j0 += 8)
                for (int64_t i = i0; i < i0 + 8 && i < n; i++)
                    for (int64_t j = j0 > i + 1 ? j0 : i + 1;
                         j < j0 + 8 && j < n; j++) {
                        double a = 0.5 * (h[i * n + j] + h[j * n + i]);
                        h[i * n + j] = h[j * n + i] = a;
                    }
    } else if (st == JAC_OK) {
        int64_t n = xs->numel, sq[2] = {n, n};
        bool was = jac_set_grad_enabled(ctx, create);
        jac_tensor *M = jac_reshape(ctx, H, 2, sq);
        jac_tensor *S = jac_mul_scalar(
            ctx, jac_add(ctx, M, jac_transpose(ctx, M, 0, 1)), 0.5);
        H = jac_reshape(ctx, S, H->ndim, H->shape);
        jac_set_grad_enabled(ctx, was);
        if (H == NULL)
            st = ctx->status;
    }
    finish(ctx, mark, st, create, &H, 1);
    return st == JAC_OK ? H : NULL;
}

/* One thread at a time: see jac__enter. */
jac_tensor *jac_hessian(jac_ctx *ctx, jac_fn fn, void *user, jac_tensor *x,
                        const jac_jacobian_opts *opts)
{
    JAC__HELD(ctx, jac_tensor *, NULL,
              hessian_unguarded(ctx, fn, user, x, opts));
}

static jac_status vjp_unguarded(jac_ctx *ctx, jac_fn fn, void *user,
                                size_t ninputs, jac_tensor *const *inputs,
                                size_t noutputs, jac_tensor *const *v,
                                unsigned flags, jac_tensor **outputs,
                                jac_tensor **vjps)
{
    if (ctx == NULL)
        return JAC_ERR_NULL_ARG;
    const char *op = "vjp";
    if (vjps == NULL || noutputs == 0)
        return jac__error(ctx, JAC_ERR_NULL_ARG,
                          "%s: vjps is NULL or no outputs", op);
    bool create = (flags & JAC_CREATE_GRAPH) != 0;
    scratch sc;
    jac_tensor **w = scratch_get(&sc, ctx, 2 * ninputs + 2 * noutputs);
    if (w == NULL)
        return ctx->status;
    jac_tensor **xs = w, **ys = xs + ninputs, **res = ys + noutputs;
    jac_tensor **keep = res + ninputs;
    jac_scope mark = jac_scope_begin(ctx);
    jac_status st = prepare_inputs(ctx, op, ninputs, inputs, create, xs);
    if (st == JAC_OK)
        st = jac__call_fn(ctx, op, fn, user, xs, noutputs, ys, true);
    if (st == JAC_OK)
        st = jac_grad(ctx, noutputs, ys, v, ninputs, xs,
                      JAC_ALLOW_UNUSED | JAC_RETAIN_GRAPH |
                          (create ? JAC_CREATE_GRAPH : 0u),
                      res);
    memcpy(keep, ys, noutputs * sizeof(jac_tensor *));
    finish(ctx, mark, st, create, res, ninputs + noutputs);
    deliver(st, vjps, res, ninputs, outputs, ys, noutputs);
    scratch_put(&sc);
    return st;
}

/* One thread at a time: see jac__enter. */
jac_status jac_vjp(jac_ctx *ctx, jac_fn fn, void *user, size_t ninputs,
                   jac_tensor *const *inputs, size_t noutputs,
                   jac_tensor *const *v, unsigned flags, jac_tensor **outputs,
                   jac_tensor **vjps)
{
    JAC__HELD(ctx, jac_status, JAC_ERR_STATE,
              vjp_unguarded(ctx, fn, user, ninputs, inputs, noutputs, v, flags,
                            outputs, vjps));
}

static jac_status jvp_unguarded(jac_ctx *ctx, jac_fn fn, void *user,
                                size_t ninputs, jac_tensor *const *inputs,
                                size_t noutputs, jac_tensor *const *v,
                                unsigned flags, jac_tensor **outputs,
                                jac_tensor **jvps)
{
    if (ctx == NULL)
        return JAC_ERR_NULL_ARG;
    const char *op = "jvp";
    if (jvps == NULL || v == NULL || noutputs == 0)
        return jac__error(ctx, JAC_ERR_NULL_ARG,
                          "%s: jvps or v is NULL, or no outputs", op);
    bool create = (flags & JAC_CREATE_GRAPH) != 0;
    scratch sc;
    jac_tensor **w = scratch_get(&sc, ctx, 2 * ninputs + 4 * noutputs);
    if (w == NULL)
        return ctx->status;
    jac_tensor **xs = w, **g = xs + ninputs, **ys = g + ninputs;
    jac_tensor **u = ys + noutputs, **res = u + noutputs;
    jac_scope mark = jac_scope_begin(ctx);
    jac_status st = prepare_inputs(ctx, op, ninputs, inputs, create, xs);
    if (st == JAC_OK)
        st = jac__call_fn(ctx, op, fn, user, xs, noutputs, ys, true);
    for (size_t i = 0; i < ninputs && st == JAC_OK; i++)
        if (!jac__check_arg(ctx, op, v[i]) || v[i]->ndim != xs[i]->ndim ||
            memcmp(v[i]->shape, xs[i]->shape,
                   (size_t)v[i]->ndim * sizeof(int64_t)) != 0)
            st = jac__error(ctx, JAC_ERR_SHAPE,
                            "%s: v[%zu] is missing or not shaped like input "
                            "%zu",
                            op, i, i);
    /* d<g, v>/du = J v. */
    if (st == JAC_OK)
        st = transposed_product(ctx, noutputs, ys, ninputs, xs, u, g);
    if (st == JAC_OK)
        /* g holds one tensor per input and u one per output: not swapped.
         * NOLINTNEXTLINE(readability-suspicious-call-argument) */
        st = jac_grad(ctx, ninputs, g, v, noutputs, u,
                      JAC_ALLOW_UNUSED | (create ? JAC_CREATE_GRAPH : 0u), res);
    memcpy(res + noutputs, ys, noutputs * sizeof(jac_tensor *));
    finish(ctx, mark, st, create, res, 2 * noutputs);
    deliver(st, jvps, res, noutputs, outputs, ys, noutputs);
    scratch_put(&sc);
    return st;
}

/* One thread at a time: see jac__enter. */
jac_status jac_jvp(jac_ctx *ctx, jac_fn fn, void *user, size_t ninputs,
                   jac_tensor *const *inputs, size_t noutputs,
                   jac_tensor *const *v, unsigned flags, jac_tensor **outputs,
                   jac_tensor **jvps)
{
    JAC__HELD(ctx, jac_status, JAC_ERR_STATE,
              jvp_unguarded(ctx, fn, user, ninputs, inputs, noutputs, v, flags,
                            outputs, jvps));
}

/* v shaped like x, or (k, x.shape...) with first's k when batched. */
static jac_status check_vector(jac_ctx *ctx, const char *op,
                               const jac_tensor *v, size_t i,
                               const jac_tensor *x, const jac_tensor *first,
                               bool batched)
{
    int lead = batched ? 1 : 0;
    bool ok = v->ndim == x->ndim + lead &&
              memcmp(v->shape + lead, x->shape,
                     (size_t)x->ndim * sizeof(int64_t)) == 0 &&
              (!batched || v->shape[0] == first->shape[0]);
    if (ok)
        return JAC_OK;
    char s1[JAC__SHAPE_STR_MAX], s2[JAC__SHAPE_STR_MAX];
    return jac__error(ctx, JAC_ERR_SHAPE,
                      "%s: v[%zu] has shape %s but input %zu has shape %s%s",
                      op, i, jac__shape_str(s1, sizeof s1, v->ndim, v->shape),
                      i, jac__shape_str(s2, sizeof s2, x->ndim, x->shape),
                      batched ? " (with JAC_BATCHED_SEEDS every v[i] is (k, "
                                "input shape...) with one k)"
                              : "");
}

static jac_status hvp_unguarded(jac_ctx *ctx, jac_fn fn, void *user,
                                size_t ninputs, jac_tensor *const *inputs,
                                jac_tensor *const *v, unsigned flags,
                                jac_tensor **output, jac_tensor **hvps)
{
    if (ctx == NULL)
        return JAC_ERR_NULL_ARG;
    const char *op = "hvp";
    if (hvps == NULL || v == NULL)
        return jac__error(ctx, JAC_ERR_NULL_ARG, "%s: hvps or v is NULL", op);
    bool create = (flags & JAC_CREATE_GRAPH) != 0;
    scratch sc;
    jac_tensor **w = scratch_get(&sc, ctx, 3 * ninputs + 1);
    if (w == NULL)
        return ctx->status;
    jac_tensor **xs = w, **g = xs + ninputs, **res = g + ninputs;
    jac_tensor *y = NULL;
    char s[JAC__SHAPE_STR_MAX];
    jac_scope mark = jac_scope_begin(ctx);
    jac_status st = prepare_inputs(ctx, op, ninputs, inputs, create, xs);
    for (size_t i = 0; i < ninputs && st == JAC_OK; i++)
        st = jac__check_named(ctx, op, v[i], "v", i);
    for (size_t i = 0; i < ninputs && st == JAC_OK; i++)
        st = check_vector(ctx, op, v[i], i, xs[i], v[0],
                          (flags & JAC_BATCHED_SEEDS) != 0);
    if (st == JAC_OK)
        st = jac__call_fn(ctx, op, fn, user, xs, 1, &y, true);
    if (st == JAC_OK && y->numel != 1)
        st = jac__error(ctx, JAC_ERR_SHAPE,
                        "%s: the function's output has shape %s; a Hessian "
                        "needs one element",
                        op, jac__shape_str(s, sizeof s, y->ndim, y->shape));
    if (st == JAC_OK)
        st = jac_grad(ctx, 1, &y, NULL, ninputs, xs,
                      JAC_CREATE_GRAPH | JAC_ALLOW_UNUSED, g);
    /* H v = d<grad f, v>/dx: one more backward pass seeded with v (k of
     * them at once under JAC_BATCHED_SEEDS: the gradient is recorded once). */
    if (st == JAC_OK)
        st = jac_grad(ctx, ninputs, g, v, ninputs, xs,
                      JAC_ALLOW_UNUSED | (create ? JAC_CREATE_GRAPH : 0u) |
                          (flags & JAC_BATCHED_SEEDS),
                      res);
    res[ninputs] = y;
    finish(ctx, mark, st, create, res, ninputs + 1);
    deliver(st, hvps, res, ninputs, output, &y, 1);
    scratch_put(&sc);
    return st;
}

/* One thread at a time: see jac__enter. */
jac_status jac_hvp(jac_ctx *ctx, jac_fn fn, void *user, size_t ninputs,
                   jac_tensor *const *inputs, jac_tensor *const *v,
                   unsigned flags, jac_tensor **output, jac_tensor **hvps)
{
    JAC__HELD(
        ctx, jac_status, JAC_ERR_STATE,
        hvp_unguarded(ctx, fn, user, ninputs, inputs, v, flags, output, hvps));
}

static jac_tensor *batch_jacobian_unguarded(jac_ctx *ctx, jac_fn fn, void *user,
                                            jac_tensor *x,
                                            const jac_jacobian_opts *opts)
{
    if (ctx == NULL)
        return NULL;
    const char *op = "batch_jacobian";
    jac_jacobian_opts o = resolve(opts);
    bool create = (o.flags & JAC_CREATE_GRAPH) != 0;
    jac_tensor *xs = NULL, *y = NULL, *J = NULL;
    char s1[JAC__SHAPE_STR_MAX], s2[JAC__SHAPE_STR_MAX];
    jac_scope mark = jac_scope_begin(ctx);
    jac_status st = prepare_inputs(ctx, op, 1, &x, create, &xs);
    if (st == JAC_OK && xs->ndim < 1)
        st = jac__error(ctx, JAC_ERR_RANK,
                        "%s: the input needs a leading batch axis", op);
    if (st == JAC_OK)
        st = jac__call_fn(ctx, op, fn, user, &xs, 1, &y, true);
    if (st == JAC_OK && (y->ndim < 1 || y->shape[0] != xs->shape[0]))
        st = jac__error(ctx, JAC_ERR_SHAPE,
                        "%s: output %s and input %s must share the batch "
                        "axis",
                        op, jac__shape_str(s1, sizeof s1, y->ndim, y->shape),
                        jac__shape_str(s2, sizeof s2, xs->ndim, xs->shape));
    if (st == JAC_OK && y->ndim + xs->ndim > JAC_MAX_DIMS)
        st = jac__error(ctx, JAC_ERR_RANK, "%s: the result exceeds rank %d", op,
                        JAC_MAX_DIMS);
    jac__plan *plan = NULL;
    if (st == JAC_OK)
        st = jac__plan_build(ctx, op, 1, &y, 1, &xs, &plan);
    if (st == JAC_OK) {
        engine e = {.ctx = ctx,
                    .op = op,
                    .plan = plan,
                    .nseeded = 1,
                    .nres = 1,
                    .seeded = &y,
                    .res = &xs,
                    .place = PLACE_SAMPLES,
                    .reps = xs->shape[0],
                    .create = create,
                    .dest = &J,
                    .progress = o.progress,
                    .progress_user = o.progress_user};
        if (e.reps == 0) {
            int64_t shape[JAC_MAX_DIMS];
            J = result_zeros(ctx, op, dest_shape(&e, 0, 0, shape), shape);
            st = J ? JAC_OK : ctx->status;
        } else {
            st = engine_run(&e, o.chunk);
        }
    }
    jac__plan_free(ctx, plan);
    finish(ctx, mark, st, create, &J, 1);
    return st == JAC_OK ? J : NULL;
}

/* One thread at a time: see jac__enter. */
jac_tensor *jac_batch_jacobian(jac_ctx *ctx, jac_fn fn, void *user,
                               jac_tensor *x, const jac_jacobian_opts *opts)
{
    JAC__HELD(ctx, jac_tensor *, NULL,
              batch_jacobian_unguarded(ctx, fn, user, x, opts));
}
