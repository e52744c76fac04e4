/*
 * What a program evaluates at a new point: values, VJPs, JVPs, Jacobians
 * in blocks of seeds (on several threads), Hessians and their products.
 *
 * Everything is a forward sweep and backward sweeps of some program: the
 * JVP and the forward-mode Jacobian are backward sweeps of the derived VJP
 * program (seeds as inputs: its gradient with respect to the seeds is
 * J v), the Hessian and its products those of the derived gradient
 * program (weights as parameters).
 *
 * SPDX-License-Identifier: MIT
 */
#include "program/program.h"
#include "program/share.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>

/* The calling thread's last error of a program call. */
static _Thread_local char last_message[512];

const char *jac_program_errmsg(void) { return last_message; }

jac_status jac__program_fail(jac_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_message, sizeof last_message, fmt, ap);
    va_end(ap);
    return st;
}

/* Ends a call that used ws: its error becomes the thread's message. */
static jac_status finish(jac_program *prog, jac__ws *ws, jac_status st)
{
    if (st != JAC_OK && ws != NULL)
        snprintf(last_message, sizeof last_message, "%s", ws->message);
    jac__ws_give(prog, ws);
    return st;
}

static jac__ws *take(jac_program *prog, const char *op, jac_status *st)
{
    jac__ws *ws = jac__ws_take(prog);
    *st = ws ? JAC_OK
             : jac__program_fail(JAC_ERR_NO_MEMORY,
                                 "%s: out of memory for a workspace", op);
    return ws;
}

/* ------------------------------------------------------------------------ */
/* Introspection                                                            */
/* ------------------------------------------------------------------------ */

size_t jac_program_count(const jac_program *prog, char which)
{
    if (prog == NULL)
        return 0;
    switch (which) {
    case 'i':
        return prog->ninputs;
    case 'p':
        return prog->nparams;
    case 'o':
        return prog->noutputs;
    default:
        return 0;
    }
}

int jac_program_shape(const jac_program *prog, char which, size_t k,
                      int64_t *shape, int64_t *numel)
{
    const jac__pval *v = NULL;
    if (prog != NULL && which == 'i' && k < prog->ninputs)
        v = &prog->args[k];
    else if (prog != NULL && which == 'p' && k < prog->nparams)
        v = &prog->args[prog->ninputs + k];
    else if (prog != NULL && which == 'o' && k < prog->noutputs)
        v = &prog->outs[k];
    if (v == NULL)
        return -1;
    if (shape != NULL)
        memcpy(shape, v->shape, sizeof v->shape);
    if (numel != NULL)
        *numel = v->numel;
    return v->ndim;
}

size_t jac_program_length(const jac_program *prog, size_t *bytes)
{
    if (bytes != NULL)
        *bytes = prog ? atomic_load(&prog->bytes) : 0;
    return prog ? prog->ncode : 0;
}

jac_status jac_program_set_threads(jac_program *prog, int threads)
{
    if (prog == NULL)
        return jac__program_fail(JAC_ERR_NULL_ARG,
                                 "program_set_threads: program is NULL");
    if (threads < 1 || threads > 1024)
        return jac__program_fail(
            JAC_ERR_VALUE, "program_set_threads: %d threads; give 1 to 1024",
            threads);
    prog->threads = threads;
    return JAC_OK;
}

/* ------------------------------------------------------------------------ */
/* Values and products                                                      */
/* ------------------------------------------------------------------------ */

static void copy_outputs(const jac__ws *ws, double *const *outputs)
{
    if (outputs == NULL)
        return;
    for (size_t k = 0; k < ws->prog->noutputs; k++)
        if (outputs[k] != NULL)
            memcpy(outputs[k], jac__replay_output(ws, k),
                   (size_t)ws->prog->outs[k].numel * sizeof(double));
}

jac_status jac_program_eval(jac_program *prog, const double *const *args,
                            double *const *outputs)
{
    if (prog == NULL || outputs == NULL)
        return jac__program_fail(JAC_ERR_NULL_ARG,
                                 "program_eval: program or outputs is "
                                 "NULL");
    jac_status st;
    jac__ws *ws = take(prog, "program_eval", &st);
    if (ws == NULL)
        return st;
    st = jac__replay_forward(ws, args, false);
    if (st == JAC_OK)
        copy_outputs(ws, outputs);
    return finish(prog, ws, st);
}

/* Seeds given per output (NULL for zero), one row. */
static void seed_given(const jac__ws *ws, size_t k, int64_t batch,
                       double *adjoint, void *user)
{
    const double *const *seeds = user;
    (void)batch;
    size_t n = (size_t)ws->prog->outs[k].numel * sizeof(double);
    if (seeds[k] != NULL)
        memcpy(adjoint, seeds[k], n);
    else
        memset(adjoint, 0, n);
}

static const double one = 1.0;

/* Seeds of ones, one row. */
static void seed_ones(const jac__ws *ws, size_t k, int64_t batch,
                      double *adjoint, void *user)
{
    (void)batch;
    (void)user;
    for (int64_t i = 0; i < ws->prog->outs[k].numel; i++)
        adjoint[i] = 1.0;
}

jac_status jac__program_seeds(const jac_program *prog, const char *op,
                              const double *const *seeds,
                              const double *const **out)
{
    static const double *const unit[1] = {&one};
    if (seeds != NULL) {
        *out = seeds;
        return JAC_OK;
    }
    if (prog->noutputs != 1 || prog->outs[0].numel != 1)
        return jac__program_fail(
            JAC_ERR_NO_SEED,
            "%s: seeds are NULL but the program has %zu outputs, "
            "the first of %lld elements: only a single one-element "
            "output has a default seed",
            op, prog->noutputs, (long long)prog->outs[0].numel);
    *out = unit;
    return JAC_OK;
}

/* The gradients of a one-seed sweep into grads (NULL entries skipped). */
static void copy_grads(const jac__ws *ws, size_t first, size_t n,
                       double *const *grads)
{
    for (size_t i = 0; i < n; i++) {
        if (grads[i] == NULL)
            continue;
        size_t bytes = (size_t)ws->prog->args[first + i].numel * sizeof(double);
        const double *a = jac__replay_adjoint(ws, first + i, 1);
        if (a != NULL)
            memcpy(grads[i], a, bytes);
        else
            memset(grads[i], 0, bytes);
    }
}

static jac_status vjp_into(jac_program *prog, const char *op,
                           const double *const *args,
                           const double *const *seeds, double *const *outputs,
                           size_t first, size_t n, double *const *grads)
{
    if (n > 0 && grads == NULL)
        return jac__program_fail(JAC_ERR_NULL_ARG, "%s: grads is NULL", op);
    jac_status st = jac__program_seeds(prog, op, seeds, &seeds);
    if (st != JAC_OK)
        return st;
    jac__ws *ws = take(prog, op, &st);
    if (ws == NULL)
        return st;
    st = jac__replay_forward(ws, args, true);
    if (st == JAC_OK)
        st = jac__replay_backward(ws, 1, seed_given, (void *)seeds);
    if (st == JAC_OK) {
        copy_outputs(ws, outputs);
        copy_grads(ws, first, n, grads);
    }
    return finish(prog, ws, st);
}

jac_status jac_program_vjp(jac_program *prog, const double *const *args,
                           const double *const *seeds, double *const *outputs,
                           double *const *grads)
{
    if (prog == NULL)
        return jac__program_fail(JAC_ERR_NULL_ARG,
                                 "program_vjp: program is NULL");
    return vjp_into(prog, "program_vjp", args, seeds, outputs, 0, prog->ninputs,
                    grads);
}

jac_program *jac__program_derived(jac_program *prog, int kind, jac_status *st)
{
    jac_program *d = atomic_load(&prog->derived[kind]);
    if (d != NULL) {
        *st = JAC_OK;
        return d;
    }
    unsigned flags = kind == JAC__DERIVED_VJP ? JAC_PROGRAM_SEEDS_AS_INPUTS : 0;
    *st = jac_program_gradient(prog, flags, &d);
    if (*st != JAC_OK)
        return NULL;
    jac_program *none = NULL;
    if (!atomic_compare_exchange_strong(&prog->derived[kind], &none, d)) {
        jac_program_free(d); /* another thread was first */
        d = none;
    }
    return d;
}

/* Arguments of a derived program: the inputs, then extra (one per output:
 * seeds or weights) when the extras are inputs, then the parameters, then
 * the extras when they are parameters; into a (ninputs + nparams +
 * noutputs entries). */
void jac__derived_args(const jac_program *prog, const double *const *args,
                       const double *const *extra, bool extra_inputs,
                       const double **a)
{
    size_t at = 0;
    for (size_t i = 0; i < prog->ninputs; i++)
        a[at++] = args[i];
    if (extra_inputs)
        for (size_t k = 0; k < prog->noutputs; k++)
            a[at++] = extra[k] ? extra[k] : prog->zeros;
    for (size_t i = 0; i < prog->nparams; i++)
        a[at++] = args[prog->ninputs + i];
    if (!extra_inputs)
        for (size_t k = 0; k < prog->noutputs; k++)
            /* extra has noutputs entries (one for a single output).
             * NOLINTNEXTLINE(clang-analyzer-core.uninitialized.Branch) */
            a[at++] = extra[k] ? extra[k] : prog->zeros;
}

/* Small argument lists live on the stack; longer ones are refused rather
 * than allocated. */
#define MAX_ARGS 64

jac_status jac__program_arity(const jac_program *prog, const char *op)
{
    if (prog->ninputs + prog->nparams + prog->noutputs > MAX_ARGS)
        return jac__program_fail(
            JAC_ERR_VALUE,
            "%s: %zu inputs, %zu parameters and %zu outputs: derived "
            "evaluations take at most %d in all",
            op, prog->ninputs, prog->nparams, prog->noutputs, MAX_ARGS);
    return JAC_OK;
}

jac_status jac_program_jvp(jac_program *prog, const double *const *args,
                           const double *const *v, double *const *outputs,
                           double *const *jvps)
{
    const char *op = "program_jvp";
    if (prog == NULL || jvps == NULL || v == NULL || args == NULL)
        return jac__program_fail(JAC_ERR_NULL_ARG,
                                 "%s: program, args, v or jvps is NULL", op);
    jac_status st = jac__program_arity(prog, op);
    if (st != JAC_OK)
        return st;
    jac_program *q = jac__program_derived(prog, JAC__DERIVED_VJP, &st);
    if (q == NULL)
        return st;
    const double *a[MAX_ARGS];
    const double *none[MAX_ARGS] = {NULL};
    jac__derived_args(prog, args, none, true, a);
    /* d <g, v> / d u = J v, read at the seeds' positions. */
    st = vjp_into(q, op, a, v, NULL, prog->ninputs, prog->noutputs, jvps);
    if (st == JAC_OK && outputs != NULL)
        st = jac_program_eval(prog, args, outputs);
    return st;
}

static jac_status weights_of(const jac_program *prog, const char *op,
                             const double *const *weights,
                             const double *const **out)
{
    return jac__program_seeds(prog, op, weights, out);
}

/* The derived gradient program of prog (made on first use) in *gp, and in
 * a its arguments for args and the weights (NULL: the single one-element
 * output's weight 1). */
static jac_status gradient_call(jac_program *prog, const char *op,
                                const double *const *args,
                                const double *const *weights, const double **a,
                                jac_program **gp)
{
    jac_status st = jac__program_arity(prog, op);
    if (st == JAC_OK)
        st = weights_of(prog, op, weights, &weights);
    if (st != JAC_OK)
        return st;
    if ((*gp = jac__program_derived(prog, JAC__DERIVED_GRAD, &st)) == NULL)
        return st;
    jac__derived_args(prog, args, weights, false, a);
    return JAC_OK;
}

jac_status jac_program_hvp(jac_program *prog, const double *const *args,
                           const double *const *weights, const double *const *v,
                           double *const *hvps)
{
    const char *op = "program_hvp";
    if (prog == NULL || hvps == NULL || v == NULL || args == NULL)
        return jac__program_fail(JAC_ERR_NULL_ARG,
                                 "%s: program, args, v or hvps is NULL", op);
    const double *a[MAX_ARGS];
    jac_program *gp = NULL;
    jac_status st = gradient_call(prog, op, args, weights, a, &gp);
    if (st != JAC_OK)
        return st;
    /* H is symmetric: the VJP of the gradient along v is H v. */
    return vjp_into(gp, op, a, v, NULL, 0, prog->ninputs, hvps);
}

/* ------------------------------------------------------------------------ */
/* Jacobians in blocks of seeds                                             */
/* ------------------------------------------------------------------------ */

/* A Jacobian by reverse sweeps of prog: the rows are the elements of its
 * outputs, the columns those of inputs [first, first + n); block (k, i)
 * goes to dest[k * n + i], or, transposed, to dest[i * noutputs + k]. */
typedef struct blocks {
    jac_program *prog;
    double *const *outputs; /* the program's values, when wanted */
    const char *op;
    const double *const *args;
    size_t first, n;
    bool transpose;
    int threads;
    double *const *dest;
    int64_t rows, chunk, nblocks;
    _Atomic int64_t next; /* the next block a thread takes */
    _Atomic int failed;
    /* Other seeds than one-hot rows, and what becomes of each block's
     * adjoints (jac__program_blocks); NULL for a Jacobian into dest. */
    jac__block_seed_fn *seed;
    jac__block_place_fn *place;
    void *user;
    /* A part of the seeds (jac__dense_part): seeds first_seed .. rows - 1
     * in blocks of the chunk set beforehand, the adjoints placed as rows
     * of one matrix of width columns (the inputs' elements in turn). */
    int64_t first_seed;
    double *full;
    int64_t width;
} blocks;

typedef struct block_seed {
    int64_t r0, count;
    const blocks *bl;
} block_seed;

static void seed_custom(const jac__ws *ws, size_t k, int64_t batch,
                        double *adjoint, void *user)
{
    const block_seed *s = user;
    s->bl->seed(ws, k, s->r0, batch, adjoint, s->bl->user);
}

/* Seeds of rows r0 .. r0 + count - 1: row b one-hot at global row r0 + b. */
static void seed_rows(const jac__ws *ws, size_t k, int64_t batch,
                      double *adjoint, void *user)
{
    const block_seed *s = user;
    const jac_program *prog = ws->prog;
    int64_t start = 0;
    for (size_t j = 0; j < k; j++)
        start += prog->outs[j].numel;
    int64_t m = prog->outs[k].numel;
    memset(adjoint, 0, (size_t)(batch * m) * sizeof(double));
    for (int64_t b = 0; b < s->count; b++) {
        int64_t r = s->r0 + b - start;
        if (r >= 0 && r < m)
            adjoint[b * m + r] = 1.0;
    }
}

static void place_rows(const blocks *bl, const jac__ws *ws, int64_t r0,
                       int64_t count)
{
    const jac_program *prog = bl->prog;
    for (int64_t b = 0; b < count; b++) {
        int64_t r = r0 + b;
        size_t k = 0;
        while (r >= prog->outs[k].numel)
            r -= prog->outs[k++].numel;
        int64_t m = prog->outs[k].numel;
        for (size_t i = 0; i < bl->n; i++) {
            size_t at = bl->transpose ? i * prog->noutputs + k : k * bl->n + i;
            double *d = bl->dest[at];
            if (d == NULL)
                continue;
            int64_t ni = prog->args[bl->first + i].numel;
            const double *a = jac__replay_adjoint(ws, bl->first + i, count);
            for (int64_t c = 0; c < ni; c++) {
                double x = a ? a[b * ni + c] : 0.0;
                if (bl->transpose)
                    d[c * m + r] = x;
                else
                    d[r * ni + c] = x;
            }
        }
    }
}

/* Rows r0 .. r0 + count - 1 of one matrix: the adjoints of the inputs
 * first .. first + n - 1 side by side. */
static void place_full(const blocks *bl, const jac__ws *ws, int64_t r0,
                       int64_t count)
{
    for (int64_t b = 0; b < count; b++) {
        double *dst = bl->full + (r0 + b) * bl->width;
        for (size_t i = 0; i < bl->n; i++) {
            int64_t ni = bl->prog->args[bl->first + i].numel;
            const double *a = jac__replay_adjoint(ws, bl->first + i, count);
            if (a != NULL)
                memcpy(dst, a + b * ni, (size_t)ni * sizeof(double));
            else
                memset(dst, 0, (size_t)ni * sizeof(double));
            dst += ni;
        }
    }
}

/* Takes blocks until none are left or one failed. */
static jac_status run_some(blocks *bl, jac__ws *ws)
{
    jac_status st = jac__replay_forward(ws, bl->args, true);
    if (st == JAC_OK)
        st = jac__replay_reserve(ws, bl->chunk);
    while (st == JAC_OK && !atomic_load(&bl->failed)) {
        int64_t blk = atomic_fetch_add(&bl->next, 1);
        if (blk >= bl->nblocks)
            break;
        block_seed s = {bl->first_seed + blk * bl->chunk, bl->chunk, bl};
        if (s.r0 + s.count > bl->rows)
            s.count = bl->rows - s.r0;
        if (bl->seed != NULL) {
            st = jac__replay_backward(ws, s.count, seed_custom, &s);
            if (st == JAC_OK)
                bl->place(ws, s.r0, s.count, bl->user);
            continue;
        }
        ws->block_r0 = s.r0;
        ws->block_count = s.count;
        st = jac__replay_backward(ws, s.count, seed_rows, &s);
        ws->block_count = 0;
        if (st == JAC_OK && bl->full != NULL)
            place_full(bl, ws, s.r0, s.count);
        else if (st == JAC_OK)
            place_rows(bl, ws, s.r0, s.count);
    }
    if (st != JAC_OK)
        atomic_store(&bl->failed, 1);
    return st;
}

typedef struct worker {
    blocks *bl;
    jac__ws *ws;
    jac_status st;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    w->st = run_some(w->bl, w->ws);
    return NULL;
}

/* The seeds a block holds when one thread sweeps rows seeds. */
static int64_t single_chunk(const jac_program *prog, int64_t rows)
{
    uint64_t per = (prog->nvalues - prog->diff_off + (uint64_t)prog->scratch) *
                   sizeof(double);
    int64_t chunk = (int64_t)(prog->memory_budget / (per ? per : 1));
    if (chunk < 1)
        chunk = 1;
    if (chunk > rows)
        chunk = rows;
    /* Where the sweep is mostly elementwise (it reads little besides the
     * adjoints: no large matrix for a GEMM to amortise over many seeds),
     * a block whose adjoints stay within a few MB of cache is faster than
     * the largest the budget allows (P3 n=512 by replay: 1.6 ms against
     * 3.1 ms). */
    double nadj = (double)(prog->nvalues - prog->diff_off);
    if (prog->work_per_seed < 4.0 * nadj) {
        int64_t cached =
            (int64_t)((8 << 20) / (8.0 * (nadj > 1.0 ? nadj : 1.0)));
        if (cached < 16)
            cached = 16;
        if (chunk > cached)
            chunk = cached;
    }
    return chunk;
}

static jac_status run_blocks(blocks *bl)
{
    jac_program *prog = bl->prog;
    for (size_t k = 0; k < prog->noutputs && bl->seed == NULL && !bl->full; k++)
        bl->rows += prog->outs[k].numel;
    int64_t span = bl->rows - bl->first_seed;
    if (span <= 0)
        return JAC_OK;
    int threads = bl->threads > 1 ? bl->threads : 1;
    /* Threads pay for themselves only past some work: what a sweep reads
     * per seed, times the seeds. */
    double work =
        ((double)(prog->nvalues - prog->diff_off) + prog->work_per_seed) *
        (double)span;
    if (work < 262144.0)
        threads = 1;
    /* A chunk set beforehand (a part of the seeds) stays, so that each
     * block is swept alike however the seeds are shared out. */
    int64_t chunk = bl->chunk;
    if (chunk <= 0) {
        chunk = single_chunk(prog, span);
        /* Every thread gets a share of the rows. */
        if (threads > 1 && chunk * threads > span)
            chunk = (span + threads - 1) / threads;
    }
    bl->chunk = chunk;
    bl->nblocks = (span + chunk - 1) / chunk;
    if (threads > bl->nblocks)
        threads = (int)bl->nblocks;
    atomic_init(&bl->next, 0);
    atomic_init(&bl->failed, 0);
    worker w[64];
    if (threads > 64)
        threads = 64;
    jac_status st = JAC_OK;
    int started = 0;
    pthread_t tid[64];
    for (int t = 0; t < threads; t++) {
        w[t].bl = bl;
        w[t].st = JAC_OK;
        jac_status took;
        w[t].ws = take(prog, bl->op, &took);
        if (w[t].ws == NULL) {
            /* Without a workspace of its own a thread does not start, and
             * the others take its blocks; without any, the call fails. */
            if (t == 0)
                st = took;
            break;
        }
        started++;
    }
    int running = 1;
    for (int t = 1; t < started; t++)
        if (pthread_create(&tid[t], NULL, worker_main, &w[t]) == 0)
            running++;
        else
            break;
    if (started > 0) {
        w[0].st = run_some(bl, w[0].ws);
        /* Its forward sweep left the outputs' values. */
        if (w[0].st == JAC_OK)
            copy_outputs(w[0].ws, bl->outputs);
    }
    for (int t = 1; t < running; t++)
        pthread_join(tid[t], NULL);
    for (int t = 0; t < started; t++) {
        if (st == JAC_OK && w[t].st != JAC_OK) {
            st = w[t].st;
            snprintf(last_message, sizeof last_message, "%s", w[t].ws->message);
        }
        jac__ws_give(prog, w[t].ws);
    }
    return st;
}

jac_status jac__program_blocks(jac_program *prog, const char *op,
                               const double *const *args,
                               double *const *outputs, int64_t rows,
                               jac__block_seed_fn *seed,
                               jac__block_place_fn *place, void *user)
{
    blocks bl = {.prog = prog,
                 .outputs = outputs,
                 .op = op,
                 .args = args,
                 .threads = prog->threads,
                 .rows = rows,
                 .seed = seed,
                 .place = place,
                 .user = user};
    return run_blocks(&bl);
}

jac_status jac__program_blocks_part(jac_program *prog, const char *op,
                                    const double *const *args, int64_t s0,
                                    int64_t s1, int64_t block,
                                    jac__block_seed_fn *seed,
                                    jac__block_place_fn *place, void *user)
{
    blocks bl = {.prog = prog,
                 .op = op,
                 .args = args,
                 .threads = prog->threads,
                 .rows = s1,
                 .chunk = block,
                 .first_seed = s0,
                 .seed = seed,
                 .place = place,
                 .user = user};
    return run_blocks(&bl);
}

static jac_status check_dest(const char *op, double *const *dest)
{
    if (dest == NULL)
        return jac__program_fail(JAC_ERR_NULL_ARG,
                                 "%s: the result array is NULL", op);
    return JAC_OK;
}

/* The Jacobian of a program whose Jacobian is diagonal, by one backward
 * sweep seeded with ones: its entries off the diagonal are exactly 0 even
 * where a derivative is infinite or NaN, as the dynamic drivers give
 * them. */
static jac_status diagonal_jacobian(jac_program *prog,
                                    const double *const *args,
                                    double *const *outputs, double *J)
{
    int64_t n = prog->outs[0].numel;
    jac_status st;
    jac__ws *ws = take(prog, "program_jacobian", &st);
    if (ws == NULL)
        return st;
    st = jac__replay_forward(ws, args, true);
    if (st == JAC_OK)
        st = jac__replay_backward(ws, 1, seed_ones, NULL);
    if (st == JAC_OK) {
        const double *d = jac__replay_adjoint(ws, 0, 1);
        copy_outputs(ws, outputs);
        if (J != NULL) {
            memset(J, 0, (size_t)(n * n) * sizeof(double));
            for (int64_t i = 0; i < n; i++)
                J[i * n + i] = d ? d[i] : 0.0;
        }
    }
    return finish(prog, ws, st);
}

jac_status jac_program_jacobian(jac_program *prog, const double *const *args,
                                double *const *outputs, double *const *J)
{
    const char *op = "program_jacobian";
    if (prog == NULL)
        return jac__program_fail(JAC_ERR_NULL_ARG, "%s: program is NULL", op);
    jac_status st = check_dest(op, J);
    if (st != JAC_OK)
        return st;
    int64_t rows = 0, cols = 0;
    for (size_t k = 0; k < prog->noutputs; k++)
        rows += prog->outs[k].numel;
    for (size_t i = 0; i < prog->ninputs; i++)
        cols += prog->args[i].numel;
    if (prog->diagonal)
        return diagonal_jacobian(prog, args, outputs, J[0]);
    bool done = false;
    if (args != NULL && ((st = jac__program_jacobian_sparse(
                              prog, args, outputs, J, &done)) != JAC_OK ||
                         done))
        return st;
    if (rows <= cols) {
        blocks bl = {.prog = prog,
                     .outputs = outputs,
                     .op = op,
                     .args = args,
                     .first = 0,
                     .n = prog->ninputs,
                     .threads = prog->threads,
                     .dest = J};
        st = run_blocks(&bl);
        if (bl.rows > 0)
            outputs = NULL; /* the first thread's forward sweep filled them */
    } else {
        /* Forward: the rows of the VJP program's Jacobian in its seeds are
         * the columns of this one. */
        st = jac__program_arity(prog, op);
        jac_program *q = st == JAC_OK
                             ? jac__program_derived(prog, JAC__DERIVED_VJP, &st)
                             : NULL;
        if (q == NULL)
            return st;
        const double *a[MAX_ARGS];
        const double *none[MAX_ARGS] = {NULL};
        if (args == NULL)
            return jac__program_fail(JAC_ERR_NULL_ARG, "%s: args is NULL", op);
        jac__derived_args(prog, args, none, true, a);
        blocks bl = {.prog = q,
                     .op = op,
                     .args = a,
                     .first = prog->ninputs,
                     .n = prog->noutputs,
                     .transpose = true,
                     .threads = prog->threads,
                     .dest = J};
        st = run_blocks(&bl);
    }
    if (st == JAC_OK && outputs != NULL)
        st = jac_program_eval(prog, args, outputs);
    return st;
}

jac_status jac_program_hessian(jac_program *prog, const double *const *args,
                               const double *const *weights, double *const *H)
{
    const char *op = "program_hessian";
    if (prog == NULL || args == NULL)
        return jac__program_fail(JAC_ERR_NULL_ARG,
                                 "%s: program or args is NULL", op);
    const double *a[MAX_ARGS];
    jac_program *gp = NULL;
    jac_status st = check_dest(op, H);
    if (st == JAC_OK)
        st = gradient_call(prog, op, args, weights, a, &gp);
    if (st != JAC_OK)
        return st;
    blocks bl = {.prog = gp,
                 .op = op,
                 .args = a,
                 .first = 0,
                 .n = prog->ninputs,
                 .threads = prog->threads,
                 .dest = H};
    return run_blocks(&bl);
}

/* ------------------------------------------------------------------------ */
/* Parts of a Jacobian (share.h)                                            */
/* ------------------------------------------------------------------------ */

jac_status jac__dense_layout(jac_program *prog, int forward, bool *forward_used,
                             int64_t *seeds, int64_t *width, int64_t *block)
{
    const char *op = "dense_layout";
    if (prog == NULL || forward_used == NULL || seeds == NULL ||
        width == NULL || block == NULL)
        return jac__program_fail(JAC_ERR_NULL_ARG,
                                 "%s: program or a result is NULL", op);
    int64_t rows = 0, cols = 0;
    for (size_t k = 0; k < prog->noutputs; k++)
        rows += prog->outs[k].numel;
    for (size_t i = 0; i < prog->ninputs; i++)
        cols += prog->args[i].numel;
    bool fwd = forward < 0 ? rows > cols : forward != 0;
    jac_program *swept = prog;
    if (fwd) {
        jac_status st = jac__program_arity(prog, op);
        swept = st == JAC_OK ? jac__program_derived(prog, JAC__DERIVED_VJP, &st)
                             : NULL;
        if (swept == NULL)
            return st;
    }
    *forward_used = fwd;
    *seeds = fwd ? cols : rows;
    *width = fwd ? rows : cols;
    *block = *seeds > 0 ? single_chunk(swept, *seeds) : 1;
    return JAC_OK;
}

jac_status jac__dense_part(jac_program *prog, const double *const *args,
                           bool forward, int64_t block, int64_t s0, int64_t s1,
                           double *dest)
{
    const char *op = "dense_part";
    if (prog == NULL || args == NULL || dest == NULL)
        return jac__program_fail(JAC_ERR_NULL_ARG,
                                 "%s: program, args or dest is NULL", op);
    if (block < 1 || s0 < 0 || s1 < s0 || s0 % block != 0)
        return jac__program_fail(JAC_ERR_VALUE,
                                 "%s: seeds %lld .. %lld in blocks of %lld: "
                                 "the first must be a multiple of the block",
                                 op, (long long)s0, (long long)s1,
                                 (long long)block);
    if (prog->diagonal)
        return diagonal_jacobian(prog, args, NULL, dest);
    int64_t rows = 0, cols = 0;
    for (size_t k = 0; k < prog->noutputs; k++)
        rows += prog->outs[k].numel;
    for (size_t i = 0; i < prog->ninputs; i++)
        cols += prog->args[i].numel;
    if (s1 > (forward ? cols : rows))
        return jac__program_fail(JAC_ERR_VALUE, "%s: seeds up to %lld of %lld",
                                 op, (long long)s1,
                                 (long long)(forward ? cols : rows));
    /* Reverse: rows of J, by the program's own sweeps. Forward: rows of
     * J^T, by sweeps of the VJP program, whose seeds (inputs after the
     * program's inputs) have the adjoints wanted. */
    jac_program *swept = prog;
    const double *a[MAX_ARGS];
    const double *const *sweep_args = args;
    if (forward) {
        jac_status st = jac__program_arity(prog, op);
        swept = st == JAC_OK ? jac__program_derived(prog, JAC__DERIVED_VJP, &st)
                             : NULL;
        if (swept == NULL)
            return st;
        const double *none[MAX_ARGS] = {NULL};
        jac__derived_args(prog, args, none, true, a);
        sweep_args = a;
    }
    blocks bl = {.prog = swept,
                 .op = op,
                 .args = sweep_args,
                 .first = forward ? prog->ninputs : 0,
                 .n = forward ? prog->noutputs : prog->ninputs,
                 .threads = prog->threads,
                 .rows = s1,
                 .chunk = block,
                 .first_seed = s0,
                 .full = dest,
                 .width = forward ? rows : cols};
    return run_blocks(&bl);
}

int64_t jac__program_single_chunk(const jac_program *prog, int64_t rows)
{
    return rows > 0 ? single_chunk(prog, rows) : 1;
}
