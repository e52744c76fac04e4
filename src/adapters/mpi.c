/*
 * The MPI component: one Jacobian's seeds shared among the ranks of a
 * communicator. Each rank sweeps a contiguous run of whole blocks of seeds
 * through the core's parts (program/share.h); the rows then travel by
 * MPI_Allgatherv (every rank gets the result) or MPI_Alltoallv (every
 * entry to the rank owning its row).
 *
 * Every call runs in steps that each rank takes in the same order: local
 * work (checks, layout, buffers, sweeps) that may fail, then a collective
 * agreement on whether any rank failed (an MPI_Allreduce of the lowest
 * failing rank, then that rank's status and message broadcast), and only
 * when none did the next collective. So a rank that fails never leaves
 * the others waiting in a collective it will not join.
 *
 * SPDX-License-Identifier: MIT
 */
#include "jacobian_mpi.h"

#include "program/share.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The buffers of a workspace: a result or part of it (B, or J^T), the
 * entries sent and received, the plan's coordinates, and the counts and
 * ranges of the ranks. */
enum { BUF_RESULT, BUF_SEND, BUF_RECV, BUF_INDEX, BUF_COUNTS, NBUF };

struct jac_mpi_work {
    jac_allocator alloc;
    void *buf[NBUF];
    size_t cap[NBUF];
};

static void *system_alloc(size_t size, void *user)
{
    (void)user;
    return malloc(size);
}

static void system_free(void *ptr, void *user)
{
    (void)user;
    free(ptr);
}

void jac_mpi_release(jac_mpi *state)
{
    if (state == NULL || state->work == NULL)
        return;
    jac_mpi_work *work = state->work;
    for (int b = 0; b < NBUF; b++)
        if (work->buf[b] != NULL)
            work->alloc.free(work->buf[b], work->alloc.user);
    work->alloc.free(work, work->alloc.user);
    state->work = NULL;
}

/* One collective call on one rank: its state, its name, and the first
 * failure on this rank (before the ranks agree) or of any rank (after). */
typedef struct call {
    jac_mpi *state;
    const char *name;
    jac_status status;
    char message[JAC_MPI_MESSAGE_MAX];
} call;

/* Keeps the first failure of this rank's part of the call. */
static void fail(call *c, jac_status status, const char *format, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static void fail(call *c, jac_status status, const char *format, ...)
{
    if (c->status != JAC_OK)
        return;
    va_list args;
    va_start(args, format);
    c->status = status;
    (void)vsnprintf(c->message, sizeof c->message, format, args);
    va_end(args);
}

/* A failed jac_* call: its status and the core's message. */
static void fail_core(call *c, jac_status status)
{
    fail(c, status, "%s", jac_program_errmsg());
}

/* Starts a call: false (nothing can be reported to the other ranks) when
 * state is NULL or its communicator is MPI_COMM_NULL. */
static bool begin(call *c, jac_mpi *state, const char *name)
{
    c->state = state;
    c->name = name;
    c->status = JAC_OK;
    c->message[0] = '\0';
    if (state == NULL)
        return false;
    state->calls++;
    if (state->comm == MPI_COMM_NULL) {
        if (state->status == JAC_OK) {
            state->status = JAC_ERR_NULL_ARG;
            (void)snprintf(state->message, sizeof state->message,
                           "%s: the communicator is MPI_COMM_NULL", name);
        }
        return false;
    }
    if (MPI_Comm_rank(state->comm, &state->rank) != MPI_SUCCESS ||
        MPI_Comm_size(state->comm, &state->size) != MPI_SUCCESS) {
        if (state->status == JAC_OK) {
            state->status = JAC_ERR_STATE;
            (void)snprintf(state->message, sizeof state->message,
                           "%s: MPI_Comm_rank or MPI_Comm_size failed", name);
        }
        return false;
    }
    return true;
}

/* Collective: whether any rank failed so far. When one did, every rank
 * takes the status and message of the lowest failing rank, with the call
 * and that rank named. Returns the agreed status. */
static jac_status agree(call *c)
{
    jac_mpi *s = c->state;
    int mine = c->status != JAC_OK ? s->rank : s->size;
    int first = s->size;
    if (MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, s->comm) !=
        MPI_SUCCESS) {
        c->status = JAC_OK;
        fail(c, JAC_ERR_STATE, "%s: rank %d of %d: MPI_Allreduce failed",
             c->name, s->rank, s->size);
        return c->status;
    }
    if (first == s->size)
        return JAC_OK;
    int code = (int)c->status;
    char text[JAC_MPI_MESSAGE_MAX];
    memcpy(text, c->message, sizeof text);
    if (MPI_Bcast(&code, 1, MPI_INT, first, s->comm) != MPI_SUCCESS ||
        MPI_Bcast(text, (int)sizeof text, MPI_CHAR, first, s->comm) !=
            MPI_SUCCESS) {
        code = (int)JAC_ERR_STATE;
        (void)snprintf(text, sizeof text, "MPI_Bcast failed");
    }
    text[sizeof text - 1] = '\0';
    c->status = (jac_status)code;
    int shown = (int)(sizeof c->message / 2);
    (void)snprintf(c->message, sizeof c->message, "%s: rank %d of %d: %.*s",
                   c->name, first, s->size, shown, text);
    return c->status;
}

/* Collective, after the ranks agreed that none failed: whether the n
 * values of v are the same on every rank; a JAC_ERR_SHAPE naming what
 * (what[j]) and the range of values otherwise. */
static jac_status same_everywhere(call *c, const int64_t *v, int n,
                                  const char *const *what)
{
    int64_t mine[16] = {0}, low[16] = {0};
    for (int j = 0; j < n; j++) {
        mine[j] = v[j];
        mine[n + j] = -v[j];
    }
    if (MPI_Allreduce(mine, low, 2 * n, MPI_INT64_T, MPI_MIN, c->state->comm) !=
        MPI_SUCCESS) {
        fail(c, JAC_ERR_STATE, "%s: rank %d of %d: MPI_Allreduce failed",
             c->name, c->state->rank, c->state->size);
        return c->status;
    }
    for (int j = 0; j < n; j++)
        if (low[j] != -low[n + j]) {
            fail(c, JAC_ERR_SHAPE,
                 "%s: the ranks' programs or plans differ: %s from %lld to "
                 "%lld (every rank must record the same function and make "
                 "the same plan)",
                 c->name, what[j], (long long)low[j], (long long)-low[n + j]);
            return c->status;
        }
    return JAC_OK;
}

/* Ends a call: on failure, NaN in the count values of out and the
 * failure kept in the state (the first one). */
static jac_status finish(call *c, double *out, int64_t count)
{
    jac_mpi *s = c->state;
    if (c->status == JAC_OK)
        return JAC_OK;
    for (int64_t i = 0; out != NULL && i < count; i++)
        out[i] = NAN;
    if (s->status == JAC_OK) {
        s->status = c->status;
        memcpy(s->message, c->message, sizeof s->message);
    }
    return c->status;
}

/* At least bytes in buffer which of the workspace, or NULL (after fail). */
static void *reserve(call *c, int which, size_t bytes)
{
    jac_mpi *s = c->state;
    if (s->work == NULL) {
        jac_allocator al = s->allocator;
        if (al.alloc == NULL || al.free == NULL) {
            al.alloc = system_alloc;
            al.free = system_free;
            al.user = NULL;
        }
        jac_mpi_work *work = al.alloc(sizeof *work, al.user);
        if (work == NULL) {
            fail(c, JAC_ERR_NO_MEMORY, "%s: out of memory for a workspace",
                 c->name);
            return NULL;
        }
        memset(work, 0, sizeof *work);
        work->alloc = al;
        s->work = work;
    }
    jac_mpi_work *w = s->work;
    if (w->buf[which] != NULL && w->cap[which] >= bytes)
        return w->buf[which];
    if (w->buf[which] != NULL)
        w->alloc.free(w->buf[which], w->alloc.user);
    w->cap[which] = 0;
    w->buf[which] = w->alloc.alloc(bytes ? bytes : 1, w->alloc.user);
    if (w->buf[which] == NULL) {
        fail(c, JAC_ERR_NO_MEMORY, "%s: out of memory for %zu bytes", c->name,
             bytes);
        return NULL;
    }
    w->cap[which] = bytes;
    return w->buf[which];
}

/* The block-based share of rank p among size ranks of seeds seeds:
 * [*s0, *s1), whole blocks of block seeds (the last may be short). */
static void share_of(int64_t seeds, int64_t block, int p, int size, int64_t *s0,
                     int64_t *s1)
{
    int64_t nb = (seeds + block - 1) / block;
    int64_t b0 = nb * p / size, b1 = nb * (p + 1) / size;
    *s0 = b0 * block < seeds ? b0 * block : seeds;
    *s1 = b1 * block < seeds ? b1 * block : seeds;
}

/* The rank whose share holds seed c: the last whose first block is at
 * or before c's block b, that is the largest p with nb p / size <= b
 * (which never has an empty share: the next one starts after b). */
static int owner_of(int64_t seeds, int64_t block, int size, int64_t c)
{
    int64_t nb = (seeds + block - 1) / block, b = c / block;
    int64_t p = ((b + 1) * size - 1) / nb;
    return p < size - 1 ? (int)p : size - 1;
}

/* The block of seeds: the state's, or the engine's (engine). */
static int64_t block_for(call *c, int64_t engine)
{
    int64_t block = c->state->block;
    if (block < 0) {
        fail(c, JAC_ERR_VALUE, "%s: block %lld; give 0 or a positive count",
             c->name, (long long)block);
        return 1;
    }
    return block > 0 ? block : engine;
}

/* Collective: the shares of seeds seeds, each rows of width doubles, from
 * every rank's share into place in rows on every rank (in place). */
static void gather_rows(call *c, double *rows, int64_t seeds, int64_t width,
                        int64_t block, int *counts)
{
    jac_mpi *s = c->state;
    if (seeds == 0 || width == 0)
        return;
    int *displs = counts + s->size;
    for (int p = 0; p < s->size; p++) {
        int64_t s0, s1;
        share_of(seeds, block, p, s->size, &s0, &s1);
        counts[p] = (int)(s1 - s0);
        displs[p] = (int)s0;
    }
    MPI_Datatype row;
    int rc = MPI_Type_contiguous((int)width, MPI_DOUBLE, &row);
    if (rc == MPI_SUCCESS) {
        rc = MPI_Type_commit(&row);
        if (rc == MPI_SUCCESS)
            rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, rows,
                                counts, displs, row, s->comm);
        (void)MPI_Type_free(&row);
    }
    if (rc != MPI_SUCCESS)
        fail(c, JAC_ERR_STATE, "%s: rank %d of %d: MPI_Allgatherv failed",
             c->name, s->rank, s->size);
    else
        s->bytes_received +=
            (seeds - counts[s->rank]) * width * (int64_t)sizeof(double);
}

/* Whether counts fit MPI's int counts. */
static bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

/* ------------------------------------------------------------------------ */
/* Dense Jacobians                                                          */
/* ------------------------------------------------------------------------ */

jac_status jac_mpi_jacobian(jac_mpi *state, jac_program *program,
                            const double *const *args, jac_mpi_mode mode,
                            double *J)
{
    call c;
    if (!begin(&c, state, "jac_mpi_jacobian"))
        return state == NULL ? JAC_ERR_NULL_ARG : state->status;
    bool forward = false, laid_out = false;
    int64_t seeds = 0, width = 0, block = 1, engine = 1;
    if ((unsigned)mode > JAC_MPI_FORWARD)
        fail(&c, JAC_ERR_VALUE,
             "%s: mode %d; give JAC_MPI_AUTO, JAC_MPI_REVERSE or "
             "JAC_MPI_FORWARD",
             c.name, (int)mode);
    else if (program != NULL) {
        int want = mode == JAC_MPI_AUTO ? -1 : mode == JAC_MPI_FORWARD;
        jac_status st =
            jac__dense_layout(program, want, &forward, &seeds, &width, &engine);
        if (st != JAC_OK)
            fail_core(&c, st);
        laid_out = st == JAC_OK;
    }
    if (program == NULL || args == NULL || J == NULL)
        fail(&c, JAC_ERR_NULL_ARG, "%s: %s is NULL", c.name,
             program == NULL ? "the program"
             : args == NULL  ? "args"
                             : "J");
    block = block_for(&c, engine);
    if (laid_out && (!fits_int(seeds) || !fits_int(width)))
        fail(&c, JAC_ERR_SHAPE,
             "%s: a %lld x %lld Jacobian has more rows or columns than MPI "
             "counts hold",
             c.name, (long long)(forward ? width : seeds),
             (long long)(forward ? seeds : width));
    /* On failure J gets NaN wherever its size is known. */
    int64_t total = laid_out ? seeds * width : 0;
    double *rows = J;
    int *counts =
        reserve(&c, BUF_COUNTS, 2 * (size_t)state->size * sizeof(int));
    if (c.status == JAC_OK && forward)
        rows =
            reserve(&c, BUF_RESULT, (size_t)(seeds * width) * sizeof(double));
    if (agree(&c) != JAC_OK)
        return finish(&c, J, total);
    static const char *const what[] = {"seeds", "width", "block", "forward"};
    int64_t shape[] = {seeds, width, block, forward};
    if (same_everywhere(&c, shape, 4, what) != JAC_OK)
        return finish(&c, J, total);
    int64_t s0, s1;
    share_of(seeds, block, state->rank, state->size, &s0, &s1);
    double t0 = MPI_Wtime();
    jac_status st =
        jac__dense_part(program, args, forward, block, s0, s1, rows);
    if (st != JAC_OK)
        fail_core(&c, st);
    double t1 = MPI_Wtime();
    state->seconds_sweeps += t1 - t0;
    if (agree(&c) != JAC_OK)
        return finish(&c, J, total);
    gather_rows(&c, rows, seeds, width, block, counts);
    if (c.status == JAC_OK && forward)
        for (int64_t i = 0; i < width; i++)
            for (int64_t j = 0; j < seeds; j++)
                J[i * seeds + j] = rows[j * width + i];
    state->seconds_exchange += MPI_Wtime() - t1;
    return finish(&c, J, total);
}

/* ------------------------------------------------------------------------ */
/* Sparse Jacobians and Hessians                                            */
/* ------------------------------------------------------------------------ */

static bool is_hessian_plan(const jac_sparse *plan)
{
    jac_sparse_method m = jac_sparse_method_used(plan);
    return m == JAC_SPARSE_STAR || m == JAC_SPARSE_ACYCLIC;
}

/* The checks and layout shared by the sparse calls. */
static void sparse_layout(call *c, jac_sparse *plan, bool hessian,
                          const double *const *args, int64_t *ncolors,
                          int64_t *stride, int64_t *block)
{
    *ncolors = *stride = 0;
    *block = 1;
    int64_t engine = 1;
    if (plan == NULL || args == NULL) {
        fail(c, JAC_ERR_NULL_ARG, "%s: %s is NULL", c->name,
             plan == NULL ? "the plan" : "args");
        return;
    }
    if (is_hessian_plan(plan) != hessian) {
        fail(c, JAC_ERR_VALUE, "%s: the plan is a %s's", c->name,
             hessian ? "Jacobian" : "Hessian");
        return;
    }
    jac_status st = jac__sparse_layout(plan, ncolors, stride, &engine);
    if (st != JAC_OK)
        fail_core(c, st);
    *block = block_for(c, engine);
    if (c->status == JAC_OK && (!fits_int(*ncolors) || !fits_int(*stride) ||
                                !fits_int(jac_sparse_nnz(plan))))
        fail(c, JAC_ERR_SHAPE,
             "%s: %lld colours of %lld doubles, %lld entries: more than MPI "
             "counts hold",
             c->name, (long long)*ncolors, (long long)*stride,
             (long long)jac_sparse_nnz(plan));
}

/* All the values of a plan on every rank. */
static jac_status sparse_all(jac_mpi *state, const char *name, jac_sparse *plan,
                             bool hessian, const double *const *args,
                             const double *const *weights, double *values)
{
    call c;
    if (!begin(&c, state, name))
        return state == NULL ? JAC_ERR_NULL_ARG : state->status;
    int64_t ncolors, stride, block;
    sparse_layout(&c, plan, hessian, args, &ncolors, &stride, &block);
    int64_t nnz = plan != NULL ? jac_sparse_nnz(plan) : 0;
    if (values == NULL && c.status == JAC_OK)
        fail(&c, JAC_ERR_NULL_ARG, "%s: values is NULL", name);
    int *counts =
        reserve(&c, BUF_COUNTS, 2 * (size_t)state->size * sizeof(int));
    double *B = NULL;
    if (c.status == JAC_OK)
        B = reserve(&c, BUF_RESULT,
                    (size_t)(ncolors * stride) * sizeof(double));
    if (agree(&c) != JAC_OK)
        return finish(&c, values, nnz);
    int64_t rows = 0, cols = 0;
    jac_sparse_dims(plan, &rows, &cols);
    static const char *const what[] = {"colours", "compressed row", "block",
                                       "entries", "rows",           "columns"};
    int64_t shape[] = {ncolors, stride, block, nnz, rows, cols};
    if (same_everywhere(&c, shape, 6, what) != JAC_OK)
        return finish(&c, values, nnz);
    int64_t c0, c1;
    share_of(ncolors, block, state->rank, state->size, &c0, &c1);
    double t0 = MPI_Wtime();
    jac_status st =
        jac__sparse_part(plan, args, weights, block, c0, c1, B + c0 * stride);
    if (st != JAC_OK)
        fail_core(&c, st);
    double t1 = MPI_Wtime();
    state->seconds_sweeps += t1 - t0;
    if (agree(&c) != JAC_OK)
        return finish(&c, values, nnz);
    gather_rows(&c, B, ncolors, stride, block, counts);
    if (c.status == JAC_OK &&
        (st = jac__sparse_recover(plan, B, values)) != JAC_OK)
        fail_core(&c, st);
    state->seconds_exchange += MPI_Wtime() - t1;
    (void)agree(&c);
    return finish(&c, values, nnz);
}

jac_status jac_mpi_sparse_jacobian(jac_mpi *state, jac_sparse *plan,
                                   const double *const *args, double *values)
{
    return sparse_all(state, "jac_mpi_sparse_jacobian", plan, false, args, NULL,
                      values);
}

jac_status jac_mpi_sparse_hessian(jac_mpi *state, jac_sparse *plan,
                                  const double *const *args,
                                  const double *const *weights, double *values)
{
    return sparse_all(state, "jac_mpi_sparse_hessian", plan, true, args,
                      weights, values);
}

void jac_mpi_ownership(const jac_mpi *state, int64_t n, int64_t *first,
                       int64_t *end)
{
    int rank = 0, size = 1;
    if (state == NULL || first == NULL || end == NULL ||
        state->comm == MPI_COMM_NULL ||
        MPI_Comm_rank(state->comm, &rank) != MPI_SUCCESS ||
        MPI_Comm_size(state->comm, &size) != MPI_SUCCESS)
        return;
    if (n < 0)
        n = 0;
    int64_t base = n / size, extra = n % size;
    *first = rank * base + (rank < extra ? rank : extra);
    *end = *first + base + (rank < extra ? 1 : 0);
}

/* The rank whose rows [range[2p], range[2p + 1]) hold row r, walking on
 * from rank *q: the rows come in ascending order, and the ranges follow
 * each other up to the last row. */
static int next_owner(const int64_t *range, int *q, int64_t r)
{
    while (r >= range[2 * (size_t)*q + 1])
        (*q)++;
    return *q;
}

/* Collective: every rank's row range into range (2 per rank), checked to
 * follow each other and cover nrows rows. */
static void ranges_of(call *c, int64_t first, int64_t end, int64_t nrows,
                      int64_t *range)
{
    jac_mpi *s = c->state;
    int64_t mine[2] = {first, end};
    if (MPI_Allgather(mine, 2, MPI_INT64_T, range, 2, MPI_INT64_T, s->comm) !=
        MPI_SUCCESS) {
        fail(c, JAC_ERR_STATE, "%s: rank %d of %d: MPI_Allgather failed",
             c->name, s->rank, s->size);
        return;
    }
    for (int p = 0; p < s->size; p++) {
        int64_t expect = p == 0 ? 0 : range[2 * (size_t)p - 1];
        if (range[2 * (size_t)p] != expect) {
            fail(c, JAC_ERR_VALUE,
                 "%s: rank %d owns rows from %lld, but the rows before end at "
                 "%lld: the ranges must follow each other in rank order",
                 c->name, p, (long long)range[2 * (size_t)p],
                 (long long)expect);
            return;
        }
    }
    if (range[2 * (size_t)s->size - 1] != nrows)
        fail(c, JAC_ERR_VALUE,
             "%s: the ranks' rows end at %lld of %lld rows: the ranges must "
             "cover every row",
             c->name, (long long)range[2 * (size_t)s->size - 1],
             (long long)nrows);
}

jac_status jac_mpi_sparse_rows(jac_mpi *state, jac_sparse *plan,
                               const double *const *args,
                               const double *const *weights, int64_t first_row,
                               int64_t end_row, double *values)
{
    call c;
    if (!begin(&c, state, "jac_mpi_sparse_rows"))
        return state == NULL ? JAC_ERR_NULL_ARG : state->status;
    bool hessian = plan != NULL && is_hessian_plan(plan);
    int64_t ncolors, stride, block;
    sparse_layout(&c, plan, hessian, args, &ncolors, &stride, &block);
    int64_t nnz = plan != NULL ? jac_sparse_nnz(plan) : 0, nrows = 0;
    jac_sparse_dims(plan, &nrows, NULL);
    const int64_t *src = jac__sparse_sources(plan);
    if (c.status == JAC_OK && src == NULL)
        fail(&c, JAC_ERR_VALUE,
             "%s: the plan recovers its values by substitution (acyclic); "
             "distributed rows need direct recovery (JAC_SPARSE_STAR for a "
             "Hessian)",
             c.name);
    if (c.status == JAC_OK &&
        (first_row < 0 || end_row < first_row || end_row > nrows))
        fail(&c, JAC_ERR_VALUE, "%s: rows [%lld, %lld) of %lld", c.name,
             (long long)first_row, (long long)end_row, (long long)nrows);
    int64_t *row = NULL;
    if (c.status == JAC_OK &&
        (row = reserve(&c, BUF_INDEX, 2 * (size_t)nnz * sizeof(int64_t))) !=
            NULL) {
        jac_status st = jac_sparse_coo(plan, JAC_INDEX_INT64, row, row + nnz);
        if (st != JAC_OK)
            fail_core(&c, st);
        for (int64_t k = 1; k < nnz && c.status == JAC_OK; k++)
            if (row[k] < row[k - 1])
                fail(&c, JAC_ERR_VALUE,
                     "%s: the plan's values are by columns; distributed rows "
                     "need them by rows",
                     c.name);
    }
    /* This rank's values, and the entries its colours hold. */
    int64_t k0 = 0, k1 = 0, c0 = 0, c1 = 0, nsend = 0;
    if (c.status == JAC_OK) {
        while (k0 < nnz && row[k0] < first_row)
            k0++;
        k1 = k0;
        while (k1 < nnz && row[k1] < end_row)
            k1++;
        share_of(ncolors, block, state->rank, state->size, &c0, &c1);
        for (int64_t k = 0; k < nnz; k++)
            nsend += src[k] >= c0 * stride && src[k] < c1 * stride;
        if (values == NULL && k1 > k0)
            fail(&c, JAC_ERR_NULL_ARG, "%s: values is NULL", c.name);
    }
    size_t p = (size_t)state->size;
    void *counts_buf =
        reserve(&c, BUF_COUNTS, 2 * p * sizeof(int64_t) + 5 * p * sizeof(int));
    double *part = NULL, *send = NULL, *recv = NULL;
    if (c.status == JAC_OK) {
        part = reserve(&c, BUF_RESULT,
                       (size_t)((c1 - c0) * stride) * sizeof(double));
        send = reserve(&c, BUF_SEND, (size_t)nsend * sizeof(double));
        recv = reserve(&c, BUF_RECV, (size_t)(k1 - k0) * sizeof(double));
    }
    if (agree(&c) != JAC_OK)
        return finish(&c, values, k1 - k0);
    static const char *const what[] = {"colours", "compressed row", "block",
                                       "entries", "rows"};
    int64_t shape[] = {ncolors, stride, block, nnz, nrows};
    if (same_everywhere(&c, shape, 5, what) != JAC_OK)
        return finish(&c, values, k1 - k0);
    int64_t *range = counts_buf;
    int *sendcounts = (int *)(range + 2 * p);
    int *sdispls = sendcounts + p, *recvcounts = sdispls + p;
    int *rdispls = recvcounts + p, *cursor = rdispls + p;
    ranges_of(&c, first_row, end_row, nrows, range);
    if (c.status != JAC_OK) /* the same on every rank */
        return finish(&c, values, k1 - k0);
    double t0 = MPI_Wtime();
    jac_status st = jac__sparse_part(plan, args, weights, block, c0, c1, part);
    if (st != JAC_OK)
        fail_core(&c, st);
    double t1 = MPI_Wtime();
    state->seconds_sweeps += t1 - t0;
    if (agree(&c) != JAC_OK)
        return finish(&c, values, k1 - k0);
    /* Entry k travels from the rank of its colour to the rank of its row;
     * both sides walk the entries in order, so they agree on positions. */
    memset(sendcounts, 0, p * sizeof(int));
    memset(recvcounts, 0, p * sizeof(int));
    int to = 0;
    int64_t lo = c0 * stride, hi = c1 * stride; /* this rank's part of B */
    for (int64_t k = 0; k < nnz; k++)
        if (src[k] >= lo && src[k] < hi)
            sendcounts[next_owner(range, &to, row[k])]++;
    for (int64_t k = k0; k < k1; k++)
        recvcounts[owner_of(ncolors, block, state->size, src[k] / stride)]++;
    for (size_t q = 0, s = 0, r = 0; q < p; q++) {
        sdispls[q] = (int)s;
        rdispls[q] = (int)r;
        s += (size_t)sendcounts[q];
        r += (size_t)recvcounts[q];
    }
    memcpy(cursor, sdispls, p * sizeof(int));
    to = 0;
    for (int64_t k = 0; k < nnz; k++)
        if (src[k] >= lo && src[k] < hi)
            send[cursor[next_owner(range, &to, row[k])]++] =
                part[src[k] - c0 * stride];
    if (MPI_Alltoallv(send, sendcounts, sdispls, MPI_DOUBLE, recv, recvcounts,
                      rdispls, MPI_DOUBLE, state->comm) != MPI_SUCCESS)
        fail(&c, JAC_ERR_STATE, "%s: rank %d of %d: MPI_Alltoallv failed",
             c.name, state->rank, state->size);
    if (c.status == JAC_OK) {
        state->bytes_received +=
            (k1 - k0 - recvcounts[state->rank]) * (int64_t)sizeof(double);
        memcpy(cursor, rdispls, p * sizeof(int));
        for (int64_t k = k0; k < k1; k++)
            values[k - k0] = recv[cursor[owner_of(ncolors, block, state->size,
                                                  src[k] / stride)]++];
    }
    state->seconds_exchange += MPI_Wtime() - t1;
    return finish(&c, values, k1 - k0);
}
