/*
 * Sparse plans: a pattern, its colouring, the seeds of each colour and the
 * recovery of every entry, built once per program; each evaluation is one
 * block engine run over the colours and a gather.
 *
 * The sweeps are reverse sweeps of one program, seeded with the sum of
 * the unit vectors of a colour:
 * - REVERSE (rows coloured): the program itself; the inputs' adjoints are
 *   S^T J, row c holding J[r][.] for the rows r of colour c;
 * - FORWARD (columns coloured): the program's VJP program u -> J^T u; the
 *   adjoints of its seed inputs are J S;
 * - Hessians: the gradient program of sum_k <w_k, y_k>; the adjoints of
 *   its inputs are S^T H = (H S)^T.
 * B holds one compressed row per colour; direct recovery reads each entry
 * at one place of B, substitution (acyclic colourings) solves for them.
 *
 * SPDX-License-Identifier: MIT
 */
#include "program/share.h"
#include "sparse/sparse.h"

#include <stdio.h>
#include <string.h>

static void *get(const jac_program *prog, size_t bytes)
{
    return prog->alloc.alloc(bytes ? bytes : 1, prog->alloc.user);
}

static void put(const jac_program *prog, void *p)
{
    if (p != NULL)
        prog->alloc.free(p, prog->alloc.user);
}

void jac_sparse_free(jac_sparse *plan)
{
    if (plan == NULL)
        return;
    const jac_program *prog = plan->prog;
    jac__csr_free(&prog->alloc, &plan->pat);
    put(prog, plan->colour);
    put(prog, plan->cptr);
    put(prog, plan->cmem);
    put(prog, plan->B);
    put(prog, plan->row);
    put(prog, plan->col);
    put(prog, plan->src);
    put(prog, plan->at);
    put(prog, plan->full);
    jac__subst_free(&prog->alloc, &plan->subst);
    jac_program *owned = plan->tape ? plan->prog : NULL;
    put(prog, plan);
    jac_program_free(owned);
}

static jac_status oom(const char *op)
{
    return jac__program_fail(JAC_ERR_NO_MEMORY, "%s: out of memory", op);
}

/* ------------------------------------------------------------------------ */
/* Building                                                                 */
/* ------------------------------------------------------------------------ */

/* The seed rows of each colour, in a compressed list. */
static jac_status members(jac_sparse *plan, int64_t nvert, const char *op)
{
    const jac_program *prog = plan->prog;
    int64_t nc = plan->ncolors;
    plan->cptr = get(prog, (size_t)(nc + 1) * sizeof(int64_t));
    plan->cmem = get(prog, (size_t)nvert * sizeof(int64_t));
    if (plan->cptr == NULL || plan->cmem == NULL)
        return oom(op);
    memset(plan->cptr, 0, (size_t)(nc + 1) * sizeof(int64_t));
    for (int64_t v = 0; v < nvert; v++)
        plan->cptr[plan->colour[v] + 1]++;
    for (int64_t c = 0; c < nc; c++)
        plan->cptr[c + 1] += plan->cptr[c];
    for (int64_t v = 0; v < nvert; v++)
        plan->cmem[plan->cptr[plan->colour[v]]++] = v;
    for (int64_t c = nc; c > 0; c--)
        plan->cptr[c] = plan->cptr[c - 1];
    plan->cptr[0] = 0;
    return JAC_OK;
}

/* The entries of the plan in value order (the triangle asked for, by rows
 * or by columns), each with its index t in pat. */
static jac_status entries(jac_sparse *plan, const char *op)
{
    const jac_program *prog = plan->prog;
    const jac__csr *p = &plan->pat;
    jac_triangle tri = plan->hessian ? plan->opts.triangle : JAC_TRIANGLE_FULL;
    int64_t n = 0;
    for (int64_t r = 0; r < p->nrows; r++)
        for (int64_t t = p->ptr[r]; t < p->ptr[r + 1]; t++)
            n += tri == JAC_TRIANGLE_FULL ||
                 (tri == JAC_TRIANGLE_LOWER ? p->idx[t] <= r : p->idx[t] >= r);
    plan->nnz = n;
    plan->row = get(prog, (size_t)n * sizeof(int64_t));
    plan->col = get(prog, (size_t)n * sizeof(int64_t));
    plan->at = get(prog, (size_t)n * sizeof(int64_t));
    int64_t *count = get(prog, (size_t)(p->ncols + 1) * sizeof(int64_t));
    if (plan->row == NULL || plan->col == NULL || plan->at == NULL ||
        count == NULL) {
        put(prog, count);
        return oom(op);
    }
    /* By columns: a counting sort keeps the rows ascending. */
    memset(count, 0, (size_t)(p->ncols + 1) * sizeof(int64_t));
    for (int64_t r = 0, k = 0; r < p->nrows; r++)
        for (int64_t t = p->ptr[r]; t < p->ptr[r + 1]; t++) {
            int64_t c = p->idx[t];
            if (tri != JAC_TRIANGLE_FULL &&
                (tri == JAC_TRIANGLE_LOWER ? c > r : c < r))
                continue;
            if (plan->opts.by_columns) {
                count[c + 1]++;
                continue;
            }
            plan->row[k] = r;
            plan->col[k] = c;
            plan->at[k++] = t;
        }
    if (plan->opts.by_columns) {
        for (int64_t c = 0; c < p->ncols; c++)
            count[c + 1] += count[c];
        for (int64_t r = 0; r < p->nrows; r++)
            for (int64_t t = p->ptr[r]; t < p->ptr[r + 1]; t++) {
                int64_t c = p->idx[t];
                if (tri != JAC_TRIANGLE_FULL &&
                    (tri == JAC_TRIANGLE_LOWER ? c > r : c < r))
                    continue;
                int64_t k = count[c]++;
                plan->row[k] = r;
                plan->col[k] = c;
                plan->at[k] = t;
            }
    }
    put(prog, count);
    return JAC_OK;
}

/* Where each entry is read in B, for direct recovery. */
static jac_status sources(jac_sparse *plan, const char *op)
{
    const jac_program *prog = plan->prog;
    plan->src = get(prog, (size_t)plan->nnz * sizeof(int64_t));
    if (plan->src == NULL)
        return oom(op);
    if (plan->method == JAC_SPARSE_STAR) {
        size_t bytes = (size_t)plan->pat.ptr[plan->pat.nrows] * sizeof(int64_t);
        int64_t *all = get(prog, bytes);
        if (all == NULL)
            return oom(op);
        bool ok =
            jac__star_sources(&plan->pat, plan->colour, plan->ncolors, all);
        for (int64_t k = 0; k < plan->nnz && ok; k++)
            plan->src[k] = all[plan->at[k]];
        put(prog, all);
        if (!ok)
            return jac__program_fail(JAC_ERR_VALUE,
                                     "%s: the colouring does not allow "
                                     "direct recovery",
                                     op);
        return JAC_OK;
    }
    for (int64_t k = 0; k < plan->nnz; k++)
        plan->src[k] =
            plan->method == JAC_SPARSE_REVERSE
                ? plan->colour[plan->row[k]] * plan->ncols + plan->col[k]
                : plan->colour[plan->col[k]] * plan->nrows + plan->row[k];
    return JAC_OK;
}

/* A sweep's cost per seed, by what it reads (as the block engine
 * counts it). */
static double sweep_cost(const jac_program *p)
{
    return (double)(p->nvalues - p->diff_off) + p->work_per_seed;
}

/* Colours the pattern by the method asked for (AUTO: the cheaper sweeps),
 * and makes the program the sweeps run; with passes > 0 (a dense
 * driver's), gives up (ncolors -1) when the colours take more than half
 * of them. */
static jac_status colour(jac_sparse *plan, int64_t passes, const char *op)
{
    jac_program *prog = plan->prog;
    const jac_allocator *al = &prog->alloc;
    jac__csr *p = &plan->pat;
    int order = (int)plan->opts.order;
    jac_sparse_method m = plan->opts.method;
    jac_status st = JAC_OK;
    if (plan->hessian) {
        if (m == JAC_SPARSE_AUTO)
            m = JAC_SPARSE_STAR;
        plan->colour = get(prog, (size_t)p->nrows * sizeof(int64_t));
        if (plan->colour == NULL)
            return oom(op);
        plan->ncolors = m == JAC_SPARSE_STAR
                            ? jac__color_star(al, p, order, plan->colour)
                            : jac__color_acyclic(al, p, order, plan->colour);
        if (plan->ncolors < 0)
            return oom(op);
        plan->method = m;
        plan->bstride = plan->ncols;
        plan->swept = jac__program_derived(prog, JAC__DERIVED_GRAD, &st);
        return plan->swept ? members(plan, p->nrows, op) : st;
    }
    int64_t *rows = NULL, *cols = NULL, nr = -1, nc = -1;
    if (m != JAC_SPARSE_FORWARD) {
        rows = get(prog, (size_t)p->nrows * sizeof(int64_t));
        nr = rows ? jac__color_rows(al, p, order, rows) : -1;
    }
    if (m != JAC_SPARSE_REVERSE && nr != 0) {
        cols = get(prog, (size_t)p->ncols * sizeof(int64_t));
        nc = cols ? jac__color_columns(al, p, order, cols) : -1;
    }
    if ((m != JAC_SPARSE_FORWARD && nr < 0) ||
        (m == JAC_SPARSE_FORWARD && nc < 0) ||
        (m == JAC_SPARSE_AUTO && nr != 0 && nc < 0)) {
        put(prog, rows);
        put(prog, cols);
        return oom(op);
    }
    int64_t fewest = nr < 0 ? nc : nc < 0 ? nr : nr < nc ? nr : nc;
    if (passes > 0 && 2 * fewest > passes) {
        put(prog, rows);
        put(prog, cols);
        plan->ncolors = -1; /* the dense driver's passes are as cheap */
        return JAC_OK;
    }
    /* A forward sweep runs the VJP program, which holds the program and
     * its reverse; it pays only with fewer colours. */
    bool forward = m == JAC_SPARSE_FORWARD;
    jac_program *q = NULL;
    if (m == JAC_SPARSE_AUTO && nr > 0 && nc < nr) {
        q = jac__program_derived(prog, JAC__DERIVED_VJP, &st);
        if (q == NULL) {
            put(prog, rows);
            put(prog, cols);
            return st;
        }
        forward = (double)nc * sweep_cost(q) < (double)nr * sweep_cost(prog);
    }
    if (forward && q == NULL)
        q = jac__program_derived(prog, JAC__DERIVED_VJP, &st);
    put(prog, forward ? rows : cols);
    plan->colour = forward ? cols : rows;
    plan->ncolors = forward ? nc : nr;
    plan->method = forward ? JAC_SPARSE_FORWARD : JAC_SPARSE_REVERSE;
    plan->bstride = forward ? plan->nrows : plan->ncols;
    plan->swept = forward ? q : prog;
    if (plan->swept == NULL)
        return st;
    return members(plan, forward ? p->ncols : p->nrows, op);
}

static jac_status check_opts(const jac_sparse_opts *o, bool hessian,
                             const char *op)
{
    bool ok = (unsigned)o->order <= JAC_ORDER_INCIDENCE_DEGREE &&
              (unsigned)o->triangle <= JAC_TRIANGLE_UPPER &&
              (unsigned)o->method <= JAC_SPARSE_ACYCLIC;
    if (ok && hessian)
        ok = o->method == JAC_SPARSE_AUTO || o->method == JAC_SPARSE_STAR ||
             o->method == JAC_SPARSE_ACYCLIC;
    if (ok && !hessian)
        ok =
            o->method <= JAC_SPARSE_REVERSE && o->triangle == JAC_TRIANGLE_FULL;
    if (!ok)
        return jac__program_fail(
            JAC_ERR_VALUE,
            "%s: options method %d, order %d, triangle %d are not valid for "
            "a %s",
            op, (int)o->method, (int)o->order, (int)o->triangle,
            hessian ? "Hessian (methods AUTO, STAR, ACYCLIC)"
                    : "Jacobian (methods AUTO, FORWARD, REVERSE; triangle "
                      "FULL)");
    return JAC_OK;
}

/* The largest count of entries in a row of p, and in a column: lower
 * bounds of the column and the row colourings' colours. */
static void largest_counts(const jac_program *prog, const jac__csr *p,
                           int64_t *in_row, int64_t *in_col, bool *ok)
{
    *in_row = *in_col = 0;
    int64_t *count = get(prog, (size_t)p->ncols * sizeof(int64_t));
    *ok = count != NULL;
    if (count == NULL)
        return;
    memset(count, 0, (size_t)p->ncols * sizeof(int64_t));
    for (int64_t r = 0; r < p->nrows; r++) {
        if (p->ptr[r + 1] - p->ptr[r] > *in_row)
            *in_row = p->ptr[r + 1] - p->ptr[r];
        for (int64_t t = p->ptr[r]; t < p->ptr[r + 1]; t++)
            if (++count[p->idx[t]] > *in_col)
                *in_col = count[p->idx[t]];
    }
    put(prog, count);
}

/* A plan; with passes > 0, none (*result NULL) unless its colours take at
 * most half as many sweeps as passes. */
static jac_status plan_new(jac_program *prog, const jac_sparse_opts *opts,
                           bool hessian, int64_t passes, jac_sparse **result)
{
    const char *op = hessian ? "sparse_hessian_plan" : "sparse_jacobian_plan";
    if (result == NULL || prog == NULL)
        return jac__program_fail(JAC_ERR_NULL_ARG,
                                 "%s: program or plan is NULL", op);
    *result = NULL;
    jac_sparse_opts none = {0};
    if (opts == NULL)
        opts = &none;
    jac_status st = check_opts(opts, hessian, op);
    if (st == JAC_OK)
        st = jac__program_arity(prog, op);
    if (st != JAC_OK)
        return st;
    jac_sparse *plan = get(prog, sizeof *plan);
    if (plan == NULL)
        return oom(op);
    memset(plan, 0, sizeof *plan);
    atomic_init(&plan->busy, 0);
    plan->prog = prog;
    plan->hessian = hessian;
    plan->opts = *opts;
    for (size_t i = 0; i < prog->ninputs; i++)
        plan->ncols += prog->args[i].numel;
    for (size_t k = 0; k < prog->noutputs; k++)
        plan->nrows += prog->outs[k].numel;
    if (hessian)
        plan->nrows = plan->ncols;
    st = hessian ? jac__pattern_hessian(prog, &plan->pat)
                 : jac__pattern_jacobian(prog, &plan->pat);
    if (st == JAC_OK && passes > 0) {
        int64_t in_row, in_col;
        bool ok;
        largest_counts(prog, &plan->pat, &in_row, &in_col, &ok);
        if (!ok)
            st = oom(op);
        else if (2 * (in_row < in_col ? in_row : in_col) > passes)
            plan->ncolors = -1; /* too dense to pay */
    }
    if (st == JAC_OK && plan->ncolors == 0)
        st = colour(plan, passes, op);
    if (st == JAC_OK && plan->ncolors < 0) {
        jac_sparse_free(plan);
        return JAC_OK;
    }
    if (st == JAC_OK)
        st = entries(plan, op);
    if (st == JAC_OK && plan->method == JAC_SPARSE_ACYCLIC) {
        st = jac__subst_build(&prog->alloc, &plan->pat, plan->colour,
                              plan->ncolors, &plan->subst);
        if (st == JAC_ERR_NO_MEMORY)
            st = oom(op);
        else if (st != JAC_OK)
            st = jac__program_fail(st, "%s: the colouring is not acyclic", op);
        plan->full =
            st == JAC_OK
                ? get(prog, (size_t)plan->pat.ptr[plan->nrows] * sizeof(double))
                : NULL;
        if (st == JAC_OK && plan->full == NULL)
            st = oom(op);
    } else if (st == JAC_OK) {
        st = sources(plan, op);
        /* Direct recovery reads B through src alone. */
        put(prog, plan->at);
        plan->at = NULL;
    }
    if (st == JAC_OK) {
        size_t nb = (size_t)(plan->ncolors * plan->bstride);
        if ((plan->B = get(prog, nb * sizeof(double))) == NULL)
            st = oom(op);
    }
    if (st != JAC_OK) {
        jac_sparse_free(plan);
        return st;
    }
    *result = plan;
    return JAC_OK;
}

jac_status jac_sparse_jacobian_plan(jac_program *program,
                                    const jac_sparse_opts *opts,
                                    jac_sparse **plan)
{
    return plan_new(program, opts, false, 0, plan);
}

jac_status jac_sparse_hessian_plan(jac_program *program,
                                   const jac_sparse_opts *opts,
                                   jac_sparse **plan)
{
    return plan_new(program, opts, true, 0, plan);
}

/* ------------------------------------------------------------------------ */
/* Evaluation                                                               */
/* ------------------------------------------------------------------------ */

/* Where the sweeps of a plan put the compressed rows: colour c at
 * rows + (c - c0) * stride (B itself, or a part of it). */
typedef struct colour_rows {
    jac_sparse *plan;
    double *rows;
    int64_t c0;
} colour_rows;

/* Seeds of colours r0 .. r0 + batch - 1 into output k of the swept
 * program. */
static void seed_colours(const jac__ws *ws, size_t k, int64_t r0, int64_t batch,
                         double *adjoint, void *user)
{
    const jac_sparse *plan = ((const colour_rows *)user)->plan;
    const jac_program *sw = ws->prog;
    int64_t start = sw->out_start[k], m = sw->outs[k].numel;
    memset(adjoint, 0, (size_t)(batch * m) * sizeof(double));
    for (int64_t b = 0; b < batch; b++) {
        int64_t c = r0 + b;
        for (int64_t t = plan->cptr[c]; t < plan->cptr[c + 1]; t++) {
            int64_t r = plan->cmem[t] - start;
            if (r >= 0 && r < m)
                adjoint[b * m + r] = 1.0;
        }
    }
}

/* The compressed rows of colours r0 .. r0 + batch - 1. */
static void place_colours(const jac__ws *ws, int64_t r0, int64_t batch,
                          void *user)
{
    const colour_rows *to = user;
    const jac_sparse *plan = to->plan;
    const jac_program *prog = plan->prog, *sw = ws->prog;
    size_t first = plan->method == JAC_SPARSE_FORWARD ? prog->ninputs : 0;
    size_t n =
        plan->method == JAC_SPARSE_FORWARD ? prog->noutputs : prog->ninputs;
    for (int64_t b = 0; b < batch; b++) {
        double *dst = to->rows + (r0 + b - to->c0) * plan->bstride;
        for (size_t i = 0; i < n; i++) {
            int64_t ni = sw->args[first + i].numel;
            const double *a = jac__replay_adjoint(ws, first + i, batch);
            if (a != NULL)
                memcpy(dst, a + b * ni, (size_t)ni * sizeof(double));
            else
                memset(dst, 0, (size_t)ni * sizeof(double));
            dst += ni;
        }
    }
}

/* Takes plan for one call; an error naming op when another holds it. */
static jac_status hold(jac_sparse *plan, const char *op)
{
    int idle = 0;
    if (!atomic_compare_exchange_strong(&plan->busy, &idle, 1))
        return jac__program_fail(JAC_ERR_STATE,
                                 "%s: the plan is in use by another call "
                                 "(a plan serves one call at a time)",
                                 op);
    return JAC_OK;
}

/* The arguments of the plan's sweeps for args and weights, in a (64
 * entries): args itself when the program is swept. */
static jac_status sweep_args_of(const jac_sparse *plan, const char *op,
                                const double *const *args,
                                const double *const *weights, const double **a,
                                const double *const **sweep_args)
{
    const jac_program *prog = plan->prog;
    *sweep_args = args;
    if (plan->hessian) {
        jac_status st = jac__program_seeds(prog, op, weights, &weights);
        if (st != JAC_OK)
            return st;
        jac__derived_args(prog, args, weights, false, a);
        *sweep_args = a;
    } else if (plan->method == JAC_SPARSE_FORWARD) {
        const double *none[64] = {NULL};
        jac__derived_args(prog, args, none, true, a);
        *sweep_args = a;
    }
    return JAC_OK;
}

/* The values from the compressed rows B. */
static void recover(jac_sparse *plan, const double *B, double *values)
{
    if (plan->method == JAC_SPARSE_ACYCLIC) {
        jac__subst_apply(&plan->subst, B, plan->full);
        for (int64_t k = 0; k < plan->nnz; k++)
            values[k] = plan->full[plan->at[k]];
    } else {
        for (int64_t k = 0; k < plan->nnz; k++)
            values[k] = B[plan->src[k]];
    }
}

/* The sweeps of plan at args, their compressed rows into B (the plan's,
 * or a caller's of ncolors * bstride doubles), the values recovered. */
static jac_status sweep_into(jac_sparse *plan, const char *op,
                             const double *const *args,
                             const double *const *weights, double *B,
                             double *values, double *const *outputs)
{
    jac_program *prog = plan->prog;
    const double *a[64];
    const double *const *sweep_args = args;
    jac_status st = sweep_args_of(plan, op, args, weights, a, &sweep_args);
    bool direct_outputs = plan->swept == prog;
    colour_rows to = {plan, B, 0};
    if (st == JAC_OK && plan->ncolors > 0)
        st = jac__program_blocks(plan->swept, op, sweep_args,
                                 direct_outputs ? outputs : NULL, plan->ncolors,
                                 seed_colours, place_colours, &to);
    if (st == JAC_OK && outputs != NULL &&
        (!direct_outputs || plan->ncolors == 0))
        st = jac_program_eval(prog, args, outputs);
    if (st == JAC_OK)
        recover(plan, B, values);
    return st;
}

jac_status jac__sparse_jacobian_into(jac_sparse *plan,
                                     const double *const *args, double *B,
                                     double *values, double *const *outputs)
{
    return sweep_into(plan, "sparse_jacobian", args, NULL, B, values, outputs);
}

static jac_status evaluate(jac_sparse *plan, const char *op,
                           const double *const *args,
                           const double *const *weights, double *values,
                           double *const *outputs)
{
    if (plan == NULL || args == NULL || values == NULL)
        return jac__program_fail(JAC_ERR_NULL_ARG,
                                 "%s: plan, args or values is NULL", op);
    jac_status st = hold(plan, op);
    if (st != JAC_OK)
        return st;
    st = sweep_into(plan, op, args, weights, plan->B, values, outputs);
    atomic_store(&plan->busy, 0);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Parts of a plan's colours (share.h)                                      */
/* ------------------------------------------------------------------------ */

jac_status jac__sparse_layout(const jac_sparse *plan, int64_t *ncolors,
                              int64_t *stride, int64_t *block)
{
    if (plan == NULL || ncolors == NULL || stride == NULL || block == NULL)
        return jac__program_fail(JAC_ERR_NULL_ARG,
                                 "sparse_layout: plan or a result is NULL");
    *ncolors = plan->ncolors;
    *stride = plan->bstride;
    *block = jac__program_single_chunk(plan->swept, plan->ncolors);
    return JAC_OK;
}

/* rows is written by the sweeps' place hook, through to, which the check
 * does not follow.
 * NOLINTBEGIN(readability-non-const-parameter) */
jac_status jac__sparse_part(jac_sparse *plan, const double *const *args,
                            const double *const *weights, int64_t block,
                            int64_t c0, int64_t c1, double *rows)
/* NOLINTEND(readability-non-const-parameter) */
{
    const char *op = "sparse_part";
    if (plan == NULL || args == NULL || (rows == NULL && c1 > c0))
        return jac__program_fail(JAC_ERR_NULL_ARG,
                                 "%s: plan, args or rows is NULL", op);
    if (block < 1 || c0 < 0 || c1 < c0 || c1 > plan->ncolors || c0 % block != 0)
        return jac__program_fail(
            JAC_ERR_VALUE,
            "%s: colours %lld .. %lld of %lld in blocks of %lld: the first "
            "must be a multiple of the block",
            op, (long long)c0, (long long)c1, (long long)plan->ncolors,
            (long long)block);
    if (!plan->hessian && weights != NULL)
        return jac__program_fail(JAC_ERR_VALUE,
                                 "%s: weights given for a Jacobian's plan", op);
    jac_status st = hold(plan, op);
    if (st != JAC_OK)
        return st;
    const double *a[64];
    const double *const *sweep_args = args;
    st = sweep_args_of(plan, op, args, weights, a, &sweep_args);
    colour_rows to = {plan, rows, c0};
    if (st == JAC_OK && c1 > c0)
        st = jac__program_blocks_part(plan->swept, op, sweep_args, c0, c1,
                                      block, seed_colours, place_colours, &to);
    atomic_store(&plan->busy, 0);
    return st;
}

jac_status jac__sparse_recover(jac_sparse *plan, const double *B,
                               double *values)
{
    const char *op = "sparse_recover";
    if (plan == NULL || (values == NULL && plan->nnz > 0) ||
        (B == NULL && plan->ncolors > 0))
        return jac__program_fail(JAC_ERR_NULL_ARG,
                                 "%s: plan, B or values is NULL", op);
    jac_status st = hold(plan, op);
    if (st != JAC_OK)
        return st;
    recover(plan, B, values);
    atomic_store(&plan->busy, 0);
    return JAC_OK;
}

const int64_t *jac__sparse_sources(const jac_sparse *plan)
{
    return plan != NULL && plan->method != JAC_SPARSE_ACYCLIC ? plan->src
                                                              : NULL;
}

jac_status jac_sparse_jacobian(jac_sparse *plan, const double *const *args,
                               double *values, double *const *outputs)
{
    const char *op = "sparse_jacobian";
    if (plan != NULL && plan->hessian)
        return jac__program_fail(JAC_ERR_VALUE,
                                 "%s: the plan is a Hessian's (use "
                                 "jac_sparse_hessian)",
                                 op);
    return evaluate(plan, op, args, NULL, values, outputs);
}

jac_status jac_sparse_hessian(jac_sparse *plan, const double *const *args,
                              const double *const *weights, double *values)
{
    const char *op = "sparse_hessian";
    if (plan != NULL && !plan->hessian)
        return jac__program_fail(JAC_ERR_VALUE,
                                 "%s: the plan is a Jacobian's (use "
                                 "jac_sparse_jacobian)",
                                 op);
    return evaluate(plan, op, args, weights, values, NULL);
}

/* ------------------------------------------------------------------------ */
/* Structure                                                                */
/* ------------------------------------------------------------------------ */

int64_t jac_sparse_nnz(const jac_sparse *plan) { return plan ? plan->nnz : 0; }

int64_t jac_sparse_colors(const jac_sparse *plan)
{
    return plan ? plan->ncolors : 0;
}

jac_sparse_method jac_sparse_method_used(const jac_sparse *plan)
{
    return plan ? plan->method : JAC_SPARSE_AUTO;
}

void jac_sparse_dims(const jac_sparse *plan, int64_t *rows, int64_t *cols)
{
    if (rows != NULL)
        *rows = plan ? plan->nrows : 0;
    if (cols != NULL)
        *cols = plan ? plan->ncols : 0;
}

/* Checks an export's arguments: known flags, and 32-bit indices only
 * where every index and count fits. */
static jac_status check_export(const jac_sparse *plan, unsigned flags,
                               const void *a, const void *b, const char *op)
{
    if (plan == NULL || a == NULL || b == NULL)
        return jac__program_fail(JAC_ERR_NULL_ARG,
                                 "%s: plan or an index array is NULL", op);
    if (flags & ~(unsigned)(JAC_INDEX_INT64 | JAC_INDEX_ONE_BASED))
        return jac__program_fail(JAC_ERR_VALUE, "%s: unknown flags 0x%x", op,
                                 flags);
    int64_t big = plan->nnz;
    if (plan->nrows > big)
        big = plan->nrows;
    if (plan->ncols > big)
        big = plan->ncols;
    if (!(flags & JAC_INDEX_INT64) && big + 1 > INT32_MAX)
        return jac__program_fail(
            JAC_ERR_VALUE,
            "%s: %lld entries of a %lld x %lld matrix do not fit 32-bit "
            "indices (use JAC_INDEX_INT64)",
            op, (long long)plan->nnz, (long long)plan->nrows,
            (long long)plan->ncols);
    return JAC_OK;
}

static void put_index(void *dst, int64_t k, int64_t v, unsigned flags)
{
    v += (flags & JAC_INDEX_ONE_BASED) ? 1 : 0;
    if (flags & JAC_INDEX_INT64)
        ((int64_t *)dst)[k] = v;
    else
        ((int32_t *)dst)[k] = (int32_t)v;
}

jac_status jac_sparse_coo(const jac_sparse *plan, unsigned flags, void *rows,
                          void *cols)
{
    jac_status st = check_export(plan, flags, rows, cols, "sparse_coo");
    if (st != JAC_OK)
        return st;
    for (int64_t k = 0; k < plan->nnz; k++) {
        put_index(rows, k, plan->row[k], flags);
        put_index(cols, k, plan->col[k], flags);
    }
    return JAC_OK;
}

jac_status jac_sparse_csr(const jac_sparse *plan, unsigned flags, void *ptr,
                          void *idx)
{
    jac_status st = check_export(plan, flags, ptr, idx, "sparse_csr");
    if (st != JAC_OK)
        return st;
    bool bycol = plan->opts.by_columns;
    const int64_t *major = bycol ? plan->col : plan->row;
    const int64_t *minor = bycol ? plan->row : plan->col;
    int64_t nmajor = bycol ? plan->ncols : plan->nrows;
    for (int64_t k = 0, at = 0; at <= nmajor; at++) {
        put_index(ptr, at, k, flags);
        while (k < plan->nnz && major[k] == at)
            k++;
    }
    for (int64_t k = 0; k < plan->nnz; k++)
        put_index(idx, k, minor[k], flags);
    return JAC_OK;
}

/* ------------------------------------------------------------------------ */
/* Plans of dynamic recordings                                              */
/* ------------------------------------------------------------------------ */

/* The same bytes: for objects whose every byte is set. */
static bool same_bytes(const void *a, const void *b, size_t n)
{
    return memcmp(a, b, n) == 0;
}

static bool same_value(const jac__pval *a, const jac__pval *b)
{
    return a->off == b->off && a->konst == b->konst && a->numel == b->numel &&
           a->ndim == b->ndim &&
           memcmp(a->shape, b->shape, (size_t)a->ndim * sizeof(int64_t)) == 0;
}

bool jac__program_same(const jac_program *p, const jac_program *q)
{
    if (p->ninputs != q->ninputs || p->noutputs != q->noutputs ||
        p->nvalues != q->nvalues || p->diff_off != q->diff_off ||
        p->code_off != q->code_off || p->ncode != q->ncode ||
        p->ntops != q->ntops || p->ntins != q->ntins ||
        p->nfparams != q->nfparams ||
        memcmp(p->code, q->code, p->ncode * sizeof(jac__instr)) != 0)
        return false;
    for (size_t i = 0; i < p->ninputs; i++)
        if (!same_value(&p->args[i], &q->args[i]))
            return false;
    for (size_t k = 0; k < p->noutputs; k++)
        if (!same_value(&p->outs[k], &q->outs[k]))
            return false;
    for (size_t k = 0; k < p->nfparams; k++) {
        const jac__fn_params *a = &p->fparams[k], *b = &q->fparams[k];
        if (!jac__same_bits(a->c0, b->c0) || !jac__same_bits(a->c1, b->c1) ||
            a->divide != b->divide)
            return false;
    }
    for (size_t k = 0; k < p->ntops; k++) {
        const jac__top *a = &p->tops[k], *b = &q->tops[k];
        /* Node parameters have every byte set (JAC__PARAMS), so equal
         * calls compare equal byte for byte. */
        bool same_params = same_bytes(&a->p, &b->p, sizeof a->p);
        if (a->op != b->op || a->nin != b->nin || a->first != b->first ||
            !same_value(&a->out, &b->out) || !same_params)
            return false;
        for (int j = 0; j < a->nin; j++) {
            const jac__pval *u = &p->tins[a->first + (size_t)j].v;
            const jac__pval *v = &q->tins[b->first + (size_t)j].v;
            if (!same_value(u, v))
                return false;
            if (u->konst && jac__deps_reads_input(a->op, j) &&
                memcmp(p->consts + u->off, q->consts + v->off,
                       (size_t)u->numel * sizeof(double)) != 0)
                return false;
        }
    }
    return true;
}

jac_status jac__sparse_rebind(jac_sparse *plan, jac_program *q)
{
    /* The plan serves the new program, whose derived programs carry the
     * new constants, and the old one's workspaces serve it too (no new
     * memory for a new recording). */
    jac_status st = JAC_OK;
    jac_program *swept = q;
    if (plan->method == JAC_SPARSE_FORWARD || plan->hessian)
        swept = jac__program_derived(
            q, plan->hessian ? JAC__DERIVED_GRAD : JAC__DERIVED_VJP, &st);
    if (swept == NULL)
        return st;
    if (swept == q || jac__program_same(plan->swept, swept))
        jac__ws_adopt(swept, plan->swept);
    jac_program *old = plan->prog;
    plan->prog = q;
    plan->swept = swept;
    jac_program_free(old);
    return JAC_OK;
}

/* The plan for the tape's graph from inputs to outputs, made or checked,
 * and its values at the recorded point. */
static jac_status tape_plan(jac_ctx *ctx, bool hessian, size_t noutputs,
                            jac_tensor *const *outputs, size_t ninputs,
                            jac_tensor *const *inputs,
                            const jac_sparse_opts *opts, jac_sparse **plan,
                            double *values)
{
    const char *op = hessian ? "sparse_hessian_tape" : "sparse_jacobian_tape";
    if (plan == NULL || outputs == NULL || (ninputs > 0 && inputs == NULL) ||
        ninputs == 0 || (values == NULL && *plan != NULL))
        return jac__error(ctx, JAC_ERR_NULL_ARG,
                          "%s: plan, outputs, inputs or (with a plan made "
                          "already) values is NULL",
                          op);
    if (*plan != NULL && (!(*plan)->tape || (*plan)->hessian != hessian))
        return jac__error(ctx, JAC_ERR_VALUE, "%s: the plan was made by %s", op,
                          !(*plan)->tape ? "a program's plan call"
                          : hessian      ? "jac_sparse_jacobian_tape"
                                         : "jac_sparse_hessian_tape");
    for (size_t k = 0; k < noutputs; k++)
        if (jac__check_named(ctx, op, outputs[k], "output", k) != JAC_OK)
            return ctx->status;
    if (hessian && (noutputs != 1 || outputs[0]->numel != 1))
        return jac__error(ctx, JAC_ERR_SHAPE,
                          "%s: the output must be one tensor of one element",
                          op);
    jac_program *q = NULL;
    jac_status st = jac__program_compile_tape(ctx, op, noutputs, outputs,
                                              ninputs, inputs, NULL, &q);
    if (st != JAC_OK)
        return st;
    jac_sparse *made = NULL;
    if (*plan == NULL) {
        st = plan_new(q, opts, hessian, 0, &made);
        if (st != JAC_OK) {
            jac_program_free(q);
            return jac__error(ctx, st, "%s", jac_program_errmsg());
        }
        made->tape = true;
    } else if (!jac__program_same((*plan)->prog, q)) {
        jac_program_free(q);
        return jac__error(ctx, JAC_ERR_STATE,
                          "%s: the recording is not the one the plan was "
                          "made for (another sequence of ops, shapes, "
                          "parameters or indices); make a new plan",
                          op);
    }
    jac_sparse *use = made ? made : *plan;
    if (made == NULL && (st = jac__sparse_rebind(use, q)) != JAC_OK) {
        jac_program_free(q);
        return jac__error(ctx, st, "%s", jac_program_errmsg());
    }
    const double *args[64];
    const double **a = ninputs <= 64 ? args : NULL;
    if (a == NULL)
        st = jac__program_fail(JAC_ERR_VALUE, "%s: %zu inputs: at most 64", op,
                               ninputs);
    for (size_t i = 0, at = 0; a != NULL && i < ninputs; i++) {
        a[i] = q->x0 + at;
        at += (size_t)q->args[i].numel;
    }
    /* values NULL: the plan only (its nnz sizes the values of the next
     * calls). */
    if (st == JAC_OK && values != NULL)
        st = hessian ? jac_sparse_hessian(use, a, NULL, values)
                     : jac_sparse_jacobian(use, a, values, NULL);
    if (st != JAC_OK) {
        jac_sparse_free(made);
        return jac__error(ctx, st, "%s", jac_program_errmsg());
    }
    if (made != NULL)
        *plan = made;
    return JAC_OK;
}

jac_status jac_sparse_jacobian_tape(jac_ctx *ctx, size_t noutputs,
                                    jac_tensor *const *outputs, size_t ninputs,
                                    jac_tensor *const *inputs,
                                    const jac_sparse_opts *opts,
                                    jac_sparse **plan, double *values)
{
    if (ctx == NULL)
        return JAC_ERR_NULL_ARG;
    JAC__HELD(ctx, jac_status, JAC_ERR_STATE,
              tape_plan(ctx, false, noutputs, outputs, ninputs, inputs, opts,
                        plan, values));
}

jac_status jac_sparse_hessian_tape(jac_ctx *ctx, jac_tensor *output,
                                   size_t ninputs, jac_tensor *const *inputs,
                                   const jac_sparse_opts *opts,
                                   jac_sparse **plan, double *values)
{
    if (ctx == NULL)
        return JAC_ERR_NULL_ARG;
    JAC__HELD(
        ctx, jac_status, JAC_ERR_STATE,
        tape_plan(ctx, true, 1, &output, ninputs, inputs, opts, plan, values));
}

jac_status jac__sparse_plan_dense(jac_program *prog,
                                  const jac_sparse_opts *opts, int64_t passes,
                                  jac_sparse **plan)
{
    return plan_new(prog, opts, false, passes > 0 ? passes : 1, plan);
}
