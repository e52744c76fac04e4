/*
 * The IPOPT adapter: IPOPT's five callbacks evaluate one recorded function
 * (jac_program) of x with outputs f and g, through the public API only.
 *
 * Two sparse plans are made once per program. The Jacobian plan covers the
 * whole program: its rows are f (row 0, the gradient) and then g, so one
 * compressed evaluation gives f, g, the gradient and the constraint
 * Jacobian together; in the plan's row order the f row's entries come
 * first and the constraint entries are the rest, in IPOPT's order already.
 * The Hessian plan is of the weighted sum obj_factor f + lambda^T g, lower
 * triangle, with the weights given per call.
 *
 * The last point is kept with its values and derivatives, so that IPOPT's
 * calls at one point (eval_f and eval_g; eval_grad_f and eval_jac_g) cost
 * one evaluation and one sparse Jacobian. Each call checks IPOPT's sizes
 * against the program's first, so that a mismatch is a status, never a
 * number computed from the wrong buffer.
 *
 * SPDX-License-Identifier: MIT
 */
#include "jacobian_ipopt.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The structures are exported as int32_t into IPOPT's Index arrays. */
_Static_assert(sizeof(Index) == sizeof(int32_t), "IPOPT's Index is 32 bits");

struct jac_ipopt_work {
    jac_allocator allocator;     /* the hooks that made this workspace */
    const jac_program *made_for; /* the program the plans were made from */
    int index_style;             /* of the structures below */
    jac_sparse_method jacobian_method; /* the plans' methods, as asked for */
    jac_sparse_method hessian_method;
    size_t n;                     /* variables */
    size_t m;                     /* constraints */
    jac_sparse *jacobian;         /* rows: f, then g; columns: x */
    jac_sparse *hessian;          /* lower triangle of the Lagrangian */
    size_t nnz_f;                 /* entries of the f row (the first ones) */
    size_t nnz_jac;               /* entries of the whole Jacobian plan */
    size_t nnz_hess;              /* entries of the Hessian plan */
    Index *jac_rows, *jac_cols;   /* nnz_jac: rows of g from 0 (or 1) */
    Index *hess_rows, *hess_cols; /* nnz_hess */
    double *x;                    /* n: the last point */
    double *fg;                   /* 1 + m: f and g at x */
    double *jac_values;           /* nnz_jac: the plan's values at x */
    int have_x, have_values, have_jacobian;
};

/* Keeps the first failure of state. Returns FALSE. */
static Bool fail(jac_ipopt *state, jac_status status, const char *format, ...)
{
    if (state->status == JAC_OK) {
        va_list args;
        va_start(args, format);
        state->status = status;
        (void)vsnprintf(state->message, sizeof state->message, format, args);
        va_end(args);
    }
    return FALSE;
}

static void fill_nan(double *values, Index count)
{
    if (values == NULL)
        return;
    for (Index i = 0; i < count; i++)
        values[i] = NAN;
}

static void *work_alloc(const jac_allocator *allocator, size_t bytes)
{
    if (allocator->alloc != NULL)
        return allocator->alloc(bytes, allocator->user);
    return malloc(bytes);
}

static void work_free(const jac_allocator *allocator, void *ptr)
{
    if (allocator->alloc != NULL) {
        if (allocator->free != NULL)
            allocator->free(ptr, allocator->user);
    } else {
        free(ptr);
    }
}

void jac_ipopt_release(jac_ipopt *state)
{
    if (state == NULL || state->work == NULL)
        return;
    jac_ipopt_work *work = state->work;
    jac_allocator allocator = work->allocator;
    jac_sparse_free(work->jacobian);
    jac_sparse_free(work->hessian);
    /* Every array lives in one block, whose start is jac_rows. */
    work_free(&allocator, work->jac_rows);
    work_free(&allocator, work);
    state->work = NULL;
}

/* The sizes of the program of state: one input of *n elements, an output
 * f of one element and, when there are two outputs, g of *m. Returns 0
 * (after fail) otherwise. */
static int program_sizes(jac_ipopt *state, const char *who, size_t *n,
                         size_t *m)
{
    const jac_program *program = state->program;
    if (program == NULL) {
        (void)fail(state, JAC_ERR_NULL_ARG, "%s: the program is NULL", who);
        return 0;
    }
    size_t ninputs = jac_program_count(program, 'i');
    size_t noutputs = jac_program_count(program, 'o');
    if (ninputs != 1 || noutputs < 1 || noutputs > 2) {
        (void)fail(state, JAC_ERR_SHAPE,
                   "%s: the program has %zu inputs and %zu outputs; the "
                   "adapter takes one input (x) and outputs f and g (or f "
                   "alone)",
                   who, ninputs, noutputs);
        return 0;
    }
    int64_t in = 0, nf = 0, ng = 0;
    (void)jac_program_shape(program, 'i', 0, NULL, &in);
    (void)jac_program_shape(program, 'o', 0, NULL, &nf);
    if (noutputs == 2)
        (void)jac_program_shape(program, 'o', 1, NULL, &ng);
    if (nf != 1) {
        (void)fail(state, JAC_ERR_SHAPE,
                   "%s: the program's first output (f) has %lld elements; "
                   "the objective has one",
                   who, (long long)nf);
        return 0;
    }
    if (in < 1 || in > INT_MAX || ng > INT_MAX) {
        (void)fail(state, JAC_ERR_VALUE,
                   "%s: the program has %lld variables and %lld constraints; "
                   "IPOPT takes from 1 to %d of each",
                   who, (long long)in, (long long)ng, INT_MAX);
        return 0;
    }
    *n = (size_t)in;
    *m = (size_t)ng;
    return 1;
}

/* The plans, the structures and the buffers of state's program. */
static int make_work(jac_ipopt *state, const char *who)
{
    size_t n = 0, m = 0;
    if (!program_sizes(state, who, &n, &m))
        return 0;
    if (state->index_style != 0 && state->index_style != 1) {
        (void)fail(state, JAC_ERR_VALUE,
                   "%s: index_style is %d; IPOPT's are 0 (C) and 1 (Fortran)",
                   who, state->index_style);
        return 0;
    }
    jac_sparse_method method = state->jacobian_method;
    if (method != JAC_SPARSE_AUTO && method != JAC_SPARSE_FORWARD &&
        method != JAC_SPARSE_REVERSE) {
        (void)fail(state, JAC_ERR_VALUE,
                   "%s: jacobian_method is %d; a Jacobian is AUTO, FORWARD "
                   "or REVERSE",
                   who, (int)method);
        return 0;
    }
    jac_sparse_method hmethod = state->hessian_method;
    if (hmethod != JAC_SPARSE_AUTO && hmethod != JAC_SPARSE_STAR &&
        hmethod != JAC_SPARSE_ACYCLIC) {
        (void)fail(state, JAC_ERR_VALUE,
                   "%s: hessian_method is %d; a Hessian is AUTO, STAR or "
                   "ACYCLIC",
                   who, (int)hmethod);
        return 0;
    }
    jac_ipopt_work *work = work_alloc(&state->allocator, sizeof *work);
    if (work == NULL) {
        (void)fail(state, JAC_ERR_NO_MEMORY, "%s: out of memory", who);
        return 0;
    }
    memset(work, 0, sizeof *work);
    work->allocator = state->allocator;
    work->made_for = state->program;
    work->index_style = state->index_style;
    work->jacobian_method = method;
    work->hessian_method = hmethod;
    work->n = n;
    work->m = m;
    state->work = work;

    jac_sparse_opts jopts = {.method = method};
    jac_sparse_opts hopts = {.method = hmethod, .triangle = JAC_TRIANGLE_LOWER};
    jac_status status =
        jac_sparse_jacobian_plan(state->program, &jopts, &work->jacobian);
    if (status == JAC_OK)
        status =
            jac_sparse_hessian_plan(state->program, &hopts, &work->hessian);
    if (status != JAC_OK) {
        (void)fail(state, status, "%s: %s", who, jac_program_errmsg());
        jac_ipopt_release(state);
        return 0;
    }
    int64_t nnz_jac = jac_sparse_nnz(work->jacobian);
    int64_t nnz_hess = jac_sparse_nnz(work->hessian);
    if (nnz_jac > INT_MAX || nnz_hess > INT_MAX) {
        (void)fail(state, JAC_ERR_VALUE,
                   "%s: the Jacobian has %lld nonzeros and the Hessian's "
                   "lower triangle %lld; IPOPT's indices hold %d",
                   who, (long long)nnz_jac, (long long)nnz_hess, INT_MAX);
        jac_ipopt_release(state);
        return 0;
    }
    work->nnz_jac = (size_t)nnz_jac;
    work->nnz_hess = (size_t)nnz_hess;

    /* One block: the structures (Index), then the values (double). */
    size_t indices = 2 * (work->nnz_jac + work->nnz_hess);
    size_t index_bytes = indices * sizeof(Index);
    index_bytes =
        (index_bytes + sizeof(double) - 1) / sizeof(double) * sizeof(double);
    size_t doubles = n + 1 + m + work->nnz_jac;
    unsigned char *block =
        work_alloc(&work->allocator, index_bytes + doubles * sizeof(double));
    if (block == NULL) {
        (void)fail(state, JAC_ERR_NO_MEMORY, "%s: out of memory", who);
        jac_ipopt_release(state);
        return 0;
    }
    work->jac_rows = (Index *)(void *)block;
    work->jac_cols = work->jac_rows + work->nnz_jac;
    work->hess_rows = work->jac_cols + work->nnz_jac;
    work->hess_cols = work->hess_rows + work->nnz_hess;
    work->x = (double *)(void *)(block + index_bytes);
    work->fg = work->x + n;
    work->jac_values = work->fg + 1 + m;

    /* 32-bit indices (JAC_INDEX_INT32 is 0), from 0 or 1. */
    unsigned flags = work->index_style == 1 ? JAC_INDEX_ONE_BASED : 0u;
    status =
        jac_sparse_coo(work->jacobian, flags, work->jac_rows, work->jac_cols);
    if (status == JAC_OK)
        status = jac_sparse_coo(work->hessian, flags, work->hess_rows,
                                work->hess_cols);
    if (status != JAC_OK) {
        (void)fail(state, status, "%s: %s", who, jac_program_errmsg());
        jac_ipopt_release(state);
        return 0;
    }
    /* The plan's values are by rows: row 0 (f) first. The constraint rows
     * are rows 1.. of the plan and rows 0.. of IPOPT's Jacobian. */
    Index first = (Index)work->index_style;
    while (work->nnz_f < work->nnz_jac && work->jac_rows[work->nnz_f] == first)
        work->nnz_f++;
    for (size_t k = work->nnz_f; k < work->nnz_jac; k++)
        work->jac_rows[k]--;
    return 1;
}

/* Frees the workspace of state when it was made for another program or
 * other options. */
static void drop_stale_work(jac_ipopt *state)
{
    const jac_ipopt_work *work = state->work;
    if (work != NULL && (work->made_for != state->program ||
                         work->index_style != state->index_style ||
                         work->jacobian_method != state->jacobian_method ||
                         work->hessian_method != state->hessian_method))
        jac_ipopt_release(state);
}

jac_status jac_ipopt_prepare(jac_ipopt *state, Index *n, Index *m,
                             Index *nele_jac, Index *nele_hess)
{
    Index sizes[4] = {0, 0, 0, 0};
    jac_status status = JAC_ERR_NULL_ARG;
    if (state != NULL) {
        drop_stale_work(state);
        if (state->work != NULL || make_work(state, "jac_ipopt_prepare")) {
            const jac_ipopt_work *work = state->work;
            sizes[0] = (Index)work->n;
            sizes[1] = (Index)work->m;
            sizes[2] = (Index)(work->nnz_jac - work->nnz_f);
            sizes[3] = (Index)work->nnz_hess;
            status = JAC_OK;
        } else {
            status = state->status;
        }
    }
    Index *out[4] = {n, m, nele_jac, nele_hess};
    for (int k = 0; k < 4; k++)
        if (out[k] != NULL)
            *out[k] = sizes[k];
    return status;
}

IpoptProblem jac_ipopt_create(jac_ipopt *state, Number *x_L, Number *x_U,
                              Number *g_L, Number *g_U)
{
    static const char who[] = "jac_ipopt_create";
    if (state == NULL)
        return NULL;
    Index n = 0, m = 0, nele_jac = 0, nele_hess = 0;
    if (jac_ipopt_prepare(state, &n, &m, &nele_jac, &nele_hess) != JAC_OK)
        return NULL;
    if (x_L == NULL || x_U == NULL || (m > 0 && (g_L == NULL || g_U == NULL))) {
        (void)fail(state, JAC_ERR_NULL_ARG,
                   "%s: %s is NULL (the problem has %d variables and %d "
                   "constraints)",
                   who,
                   x_L == NULL   ? "x_L"
                   : x_U == NULL ? "x_U"
                   : g_L == NULL ? "g_L"
                                 : "g_U",
                   n, m);
        return NULL;
    }
    IpoptProblem problem = CreateIpoptProblem(
        n, x_L, x_U, m, g_L, g_U, nele_jac, nele_hess, state->index_style,
        jac_ipopt_eval_f, jac_ipopt_eval_g, jac_ipopt_eval_grad_f,
        jac_ipopt_eval_jac_g, jac_ipopt_eval_h);
    if (problem == NULL)
        (void)fail(state, JAC_ERR_NO_MEMORY,
                   "%s: CreateIpoptProblem returned NULL for %d variables, %d "
                   "constraints, %d and %d nonzeros",
                   who, n, m, nele_jac, nele_hess);
    return problem;
}

/* The workspace of state for a call of IPOPT's sizes n and (when has_m)
 * m, made when needed. NULL (after fail) on a mismatch. */
static jac_ipopt_work *checked_work(jac_ipopt *state, const char *who, Index n,
                                    int has_m, Index m)
{
    drop_stale_work(state);
    if (state->work == NULL && !make_work(state, who))
        return NULL;
    jac_ipopt_work *work = state->work;
    if (n < 0 || (size_t)n != work->n ||
        (has_m && (m < 0 || (size_t)m != work->m))) {
        if (has_m)
            (void)fail(state, JAC_ERR_SHAPE,
                       "%s: IPOPT passes n = %d, m = %d; the program has %zu "
                       "variables and %zu constraints",
                       who, n, m, work->n, work->m);
        else
            (void)fail(state, JAC_ERR_SHAPE,
                       "%s: IPOPT passes n = %d; the program has %zu "
                       "variables",
                       who, n, work->n);
        return NULL;
    }
    return work;
}

/* Takes x as the current point: the cached results are dropped when IPOPT
 * says it is new or when it differs from the last one. */
static int set_point(jac_ipopt *state, jac_ipopt_work *work, const char *who,
                     const Number *x, Bool new_x)
{
    if (x == NULL) {
        (void)fail(state, JAC_ERR_NULL_ARG, "%s: x is NULL", who);
        return 0;
    }
    size_t bytes = work->n * sizeof(double);
    if (new_x || !work->have_x || memcmp(work->x, x, bytes) != 0) {
        memcpy(work->x, x, bytes);
        work->have_x = 1;
        work->have_values = 0;
        work->have_jacobian = 0;
    }
    return 1;
}

/* args: x, then the parameters. */
static int set_args(jac_ipopt *state, const jac_ipopt_work *work,
                    const char *who, const double **args)
{
    size_t nparams = jac_program_count(state->program, 'p');
    if (nparams > JAC_IPOPT_MAX_PARAMS) {
        (void)fail(state, JAC_ERR_VALUE,
                   "%s: the program has %zu parameters, more than %d", who,
                   nparams, JAC_IPOPT_MAX_PARAMS);
        return 0;
    }
    args[0] = work->x;
    for (size_t k = 0; k < nparams; k++) {
        if (state->params == NULL || state->params[k] == NULL) {
            (void)fail(state, JAC_ERR_NULL_ARG,
                       "%s: the program has %zu parameters; params[%zu] is "
                       "NULL",
                       who, nparams, k);
            return 0;
        }
        args[k + 1] = state->params[k];
    }
    return 1;
}

/* f and g at the current point, evaluated once. */
static int point_values(jac_ipopt *state, jac_ipopt_work *work, const char *who)
{
    if (work->have_values)
        return 1;
    const double *args[JAC_IPOPT_MAX_PARAMS + 1];
    if (!set_args(state, work, who, args))
        return 0;
    double *outputs[2] = {work->fg, work->fg + 1};
    state->evaluations++;
    jac_status status = jac_program_eval(state->program, args, outputs);
    if (status != JAC_OK) {
        (void)fail(state, status, "%s: %s", who, jac_program_errmsg());
        return 0;
    }
    work->have_values = 1;
    return 1;
}

/* The sparse Jacobian of f and g (and their values) at the current point,
 * evaluated once. */
static int point_jacobian(jac_ipopt *state, jac_ipopt_work *work,
                          const char *who)
{
    if (work->have_jacobian)
        return 1;
    const double *args[JAC_IPOPT_MAX_PARAMS + 1];
    if (!set_args(state, work, who, args))
        return 0;
    double *outputs[2] = {work->fg, work->fg + 1};
    state->jacobians++;
    jac_status status =
        jac_sparse_jacobian(work->jacobian, args, work->jac_values, outputs);
    if (status != JAC_OK) {
        work->have_values = 0; /* the outputs may be partly written */
        (void)fail(state, status, "%s: %s", who, jac_program_errmsg());
        return 0;
    }
    work->have_values = 1;
    work->have_jacobian = 1;
    return 1;
}

Bool jac_ipopt_eval_f(Index n, Number *x, Bool new_x, Number *obj_value,
                      UserDataPtr user_data)
{
    static const char who[] = "jac_ipopt_eval_f";
    jac_ipopt *state = user_data;
    if (obj_value != NULL)
        *obj_value = NAN;
    if (state == NULL)
        return FALSE;
    if (obj_value == NULL)
        return fail(state, JAC_ERR_NULL_ARG, "%s: obj_value is NULL", who);
    jac_ipopt_work *work = checked_work(state, who, n, 0, 0);
    if (work == NULL || !set_point(state, work, who, x, new_x) ||
        !point_values(state, work, who))
        return FALSE;
    *obj_value = work->fg[0];
    return TRUE;
}

Bool jac_ipopt_eval_grad_f(Index n, Number *x, Bool new_x, Number *grad_f,
                           UserDataPtr user_data)
{
    static const char who[] = "jac_ipopt_eval_grad_f";
    jac_ipopt *state = user_data;
    fill_nan(grad_f, n);
    if (state == NULL)
        return FALSE;
    if (grad_f == NULL)
        return fail(state, JAC_ERR_NULL_ARG, "%s: grad_f is NULL", who);
    jac_ipopt_work *work = checked_work(state, who, n, 0, 0);
    if (work == NULL || !set_point(state, work, who, x, new_x) ||
        !point_jacobian(state, work, who))
        return FALSE;
    memset(grad_f, 0, work->n * sizeof(double));
    Index base = (Index)work->index_style;
    for (size_t k = 0; k < work->nnz_f; k++)
        grad_f[work->jac_cols[k] - base] = work->jac_values[k];
    return TRUE;
}

Bool jac_ipopt_eval_g(Index n, Number *x, Bool new_x, Index m, Number *g,
                      UserDataPtr user_data)
{
    static const char who[] = "jac_ipopt_eval_g";
    jac_ipopt *state = user_data;
    fill_nan(g, m);
    if (state == NULL)
        return FALSE;
    if (g == NULL && m > 0)
        return fail(state, JAC_ERR_NULL_ARG, "%s: g is NULL", who);
    jac_ipopt_work *work = checked_work(state, who, n, 1, m);
    if (work == NULL || !set_point(state, work, who, x, new_x) ||
        !point_values(state, work, who))
        return FALSE;
    if (work->m > 0)
        memcpy(g, work->fg + 1, work->m * sizeof(double));
    return TRUE;
}

Bool jac_ipopt_eval_jac_g(Index n, Number *x, Bool new_x, Index m,
                          Index nele_jac, Index *iRow, Index *jCol,
                          Number *values, UserDataPtr user_data)
{
    static const char who[] = "jac_ipopt_eval_jac_g";
    jac_ipopt *state = user_data;
    fill_nan(values, nele_jac);
    if (state == NULL)
        return FALSE;
    jac_ipopt_work *work = checked_work(state, who, n, 1, m);
    if (work == NULL)
        return FALSE;
    size_t count = work->nnz_jac - work->nnz_f;
    if (nele_jac < 0 || (size_t)nele_jac != count)
        return fail(state, JAC_ERR_SHAPE,
                    "%s: IPOPT passes nele_jac = %d; the constraint Jacobian "
                    "has %zu nonzeros",
                    who, nele_jac, count);
    if (values == NULL) {
        if (count > 0 && (iRow == NULL || jCol == NULL))
            return fail(state, JAC_ERR_NULL_ARG,
                        "%s: the structure pass has %s NULL", who,
                        iRow == NULL ? "iRow" : "jCol");
        if (count > 0) {
            memcpy(iRow, work->jac_rows + work->nnz_f, count * sizeof(Index));
            memcpy(jCol, work->jac_cols + work->nnz_f, count * sizeof(Index));
        }
        return TRUE;
    }
    if (!set_point(state, work, who, x, new_x) ||
        !point_jacobian(state, work, who))
        return FALSE;
    if (count > 0)
        memcpy(values, work->jac_values + work->nnz_f, count * sizeof(double));
    return TRUE;
}

/* lambda is not written, but Eval_H_CB's signature has it non-const.
 * NOLINTBEGIN(readability-non-const-parameter) */
Bool jac_ipopt_eval_h(Index n, Number *x, Bool new_x, Number obj_factor,
                      Index m, Number *lambda, Bool new_lambda, Index nele_hess,
                      Index *iRow, Index *jCol, Number *values,
                      UserDataPtr user_data)
/* NOLINTEND(readability-non-const-parameter) */
{
    static const char who[] = "jac_ipopt_eval_h";
    jac_ipopt *state = user_data;
    (void)new_lambda; /* the weights are read at every call */
    fill_nan(values, nele_hess);
    if (state == NULL)
        return FALSE;
    jac_ipopt_work *work = checked_work(state, who, n, 1, m);
    if (work == NULL)
        return FALSE;
    if (nele_hess < 0 || (size_t)nele_hess != work->nnz_hess)
        return fail(state, JAC_ERR_SHAPE,
                    "%s: IPOPT passes nele_hess = %d; the lower triangle of "
                    "the Hessian has %zu nonzeros",
                    who, nele_hess, work->nnz_hess);
    if (values == NULL) {
        if (work->nnz_hess > 0 && (iRow == NULL || jCol == NULL))
            return fail(state, JAC_ERR_NULL_ARG,
                        "%s: the structure pass has %s NULL", who,
                        iRow == NULL ? "iRow" : "jCol");
        if (work->nnz_hess > 0) {
            memcpy(iRow, work->hess_rows, work->nnz_hess * sizeof(Index));
            memcpy(jCol, work->hess_cols, work->nnz_hess * sizeof(Index));
        }
        return TRUE;
    }
    if (work->m > 0 && lambda == NULL)
        return fail(state, JAC_ERR_NULL_ARG, "%s: lambda is NULL (m = %zu)",
                    who, work->m);
    if (!set_point(state, work, who, x, new_x))
        return FALSE;
    const double *args[JAC_IPOPT_MAX_PARAMS + 1];
    if (!set_args(state, work, who, args))
        return FALSE;
    const double *weights[2] = {&obj_factor, lambda};
    state->hessians++;
    jac_status status =
        jac_sparse_hessian(work->hessian, args, weights, values);
    if (status != JAC_OK) {
        fill_nan(values, nele_hess);
        return fail(state, status, "%s: %s", who, jac_program_errmsg());
    }
    return TRUE;
}
