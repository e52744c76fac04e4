/*
 * The SUNDIALS adapter: CVODE's, IDA's and KINSOL's user functions
 * evaluate a recorded function (jac_program) through the public API only.
 * Each call checks the solver's vector lengths and matrix sizes against
 * the program's shapes first, so that a mismatch is a status, never a
 * number computed from the wrong buffer.
 *
 * Every Jacobian comes from one sparse plan of the program, in row order
 * (CSR). Its entries are mapped once onto the matrix the solver sees: the
 * n x n pattern (for IDA, the union of the dF/dy and dF/dy' blocks, whose
 * plan columns are y's n then y''s n), kept both in CSR and in CSC order
 * with, for each plan entry, its position in either; dense and band
 * positions are computed from the row and column as they are written.
 *
 * SPDX-License-Identifier: MIT
 */
#include "jacobian_sundials.h"

#include <cvode/cvode.h>
#include <cvode/cvode_ls.h>
#include <ida/ida.h>
#include <ida/ida_ls.h>
#include <kinsol/kinsol.h>
#include <kinsol/kinsol_ls.h>
#include <sunmatrix/sunmatrix_band.h>
#include <sunmatrix/sunmatrix_dense.h>
#include <sunmatrix/sunmatrix_sparse.h>

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The callbacks have the solvers' types: a mismatch does not compile. */
#define JAC_SUNDIALS_IS(fn, type) _Generic(&(fn), type : 1, default : 0)
_Static_assert(
    JAC_SUNDIALS_IS(jac_sundials_cvode_rhs, CVRhsFn) &&
        JAC_SUNDIALS_IS(jac_sundials_cvode_jac, CVLsJacFn) &&
        JAC_SUNDIALS_IS(jac_sundials_cvode_jtimes, CVLsJacTimesVecFn) &&
        JAC_SUNDIALS_IS(jac_sundials_ida_res, IDAResFn) &&
        JAC_SUNDIALS_IS(jac_sundials_ida_jac, IDALsJacFn) &&
        JAC_SUNDIALS_IS(jac_sundials_ida_jtimes, IDALsJacTimesVecFn) &&
        JAC_SUNDIALS_IS(jac_sundials_kinsol_sys, KINSysFn) &&
        JAC_SUNDIALS_IS(jac_sundials_kinsol_jac, KINLsJacFn) &&
        JAC_SUNDIALS_IS(jac_sundials_kinsol_jtimes, KINLsJacTimesVecFn),
    "the adapter's callbacks have the solvers' types");

/* The solver a callback serves: what the program's inputs and parameters
 * must be. */
typedef enum solver { CVODE, IDA, KINSOL } solver;

struct jac_sundials_work {
    jac_allocator allocator;     /* what the workspace was allocated with */
    const jac_program *made_for; /* the program the workspace is for */
    int64_t n;                   /* y's (and F's) numel */
    int64_t ninputs;             /* the program's inputs: 1, or 2 (IDA) */
    double *scratch;             /* n: c_j v for IDA's JVP */
    /* The plan and the matrix's pattern; all NULL until the first
     * Jacobian (or jac_sundials_nnz, jac_sundials_bandwidths). */
    jac_sparse *plan;
    int64_t nnz;      /* the plan's entries */
    double *values;   /* nnz: the plan's values, in CSR order */
    int64_t *rowptr;  /* n + 1: the plan's rows */
    int64_t *colidx;  /* nnz: the plan's columns (0 .. ninputs n - 1) */
    int64_t mnnz;     /* the matrix's entries (<= nnz) */
    int64_t *csr_ptr; /* n + 1, then mnnz: the matrix's pattern, CSR */
    int64_t *csr_idx;
    int64_t *csc_ptr; /* n + 1, then mnnz: the same, CSC */
    int64_t *csc_idx;
    int64_t *to_csr; /* nnz: plan entry k's place in the CSR values */
    int64_t *to_csc; /* nnz: and in the CSC values */
    int csr_direct;  /* the plan's values are the CSR values as they are */
    int64_t mu, ml;  /* the pattern's bandwidths */
};

/* Keeps the first failure of state. Returns -1. */
static int fail(jac_sundials *state, jac_status status, const char *format, ...)
{
    if (state->status == JAC_OK) {
        va_list args;
        va_start(args, format);
        state->status = status;
        (void)vsnprintf(state->message, sizeof state->message, format, args);
        va_end(args);
    }
    return -1;
}

static void vector_nan(N_Vector v)
{
    if (v == NULL)
        return;
    double *data = N_VGetArrayPointer(v);
    sunindextype length = N_VGetLength(v);
    if (data != NULL)
        for (sunindextype i = 0; i < length; i++)
            data[i] = NAN;
}

static void fill_nan(double *data, sunindextype count)
{
    if (data != NULL)
        for (sunindextype i = 0; i < count; i++)
            data[i] = NAN;
}

static void matrix_nan(SUNMatrix A)
{
    if (A == NULL)
        return;
    switch (SUNMatGetID(A)) {
    case SUNMATRIX_DENSE:
        fill_nan(SM_DATA_D(A), SM_LDATA_D(A));
        break;
    case SUNMATRIX_BAND:
        fill_nan(SM_DATA_B(A), SM_LDATA_B(A));
        break;
    case SUNMATRIX_SPARSE:
        fill_nan(SM_DATA_S(A), SM_NNZ_S(A));
        break;
    default:
        break;
    }
}

static void *work_alloc(const jac_allocator *allocator, size_t size)
{
    if (size == 0)
        size = 1;
    return allocator->alloc != NULL ? allocator->alloc(size, allocator->user)
                                    : malloc(size);
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

/* Frees the plan and the pattern, keeping the rest of the workspace. */
static void free_pattern(jac_sundials_work *work)
{
    const jac_allocator *a = &work->allocator;
    jac_sparse_free(work->plan);
    work->plan = NULL;
    int64_t **arrays[] = {&work->rowptr,  &work->colidx,  &work->csr_ptr,
                          &work->csr_idx, &work->csc_ptr, &work->csc_idx,
                          &work->to_csr,  &work->to_csc};
    for (size_t k = 0; k < sizeof arrays / sizeof arrays[0]; k++) {
        work_free(a, *arrays[k]);
        *arrays[k] = NULL;
    }
    work_free(a, work->values);
    work->values = NULL;
}

void jac_sundials_release(jac_sundials *state)
{
    if (state == NULL || state->work == NULL)
        return;
    jac_sundials_work *work = state->work;
    jac_allocator allocator = work->allocator;
    free_pattern(work);
    work_free(&allocator, work->scratch);
    work_free(&allocator, work);
    state->work = NULL;
}

/* The workspace of state's program (n elements, ninputs inputs), remade
 * when the program changed. NULL (after fail) when out of memory. */
static jac_sundials_work *workspace(jac_sundials *state, const char *who,
                                    int64_t n, int64_t ninputs)
{
    jac_sundials_work *work = state->work;
    if (work != NULL && work->made_for == state->program && work->n == n &&
        work->ninputs == ninputs)
        return work;
    jac_sundials_release(state);
    jac_allocator allocator = {0};
    if (state->allocator != NULL)
        allocator = *state->allocator;
    work = work_alloc(&allocator, sizeof *work);
    if (work == NULL) {
        (void)fail(state, JAC_ERR_NO_MEMORY, "%s: out of memory", who);
        return NULL;
    }
    memset(work, 0, sizeof *work);
    work->allocator = allocator;
    work->made_for = state->program;
    work->n = n;
    work->ninputs = ninputs;
    work->scratch = work_alloc(&allocator, (size_t)n * sizeof(double));
    if (work->scratch == NULL) {
        work_free(&allocator, work);
        (void)fail(state, JAC_ERR_NO_MEMORY, "%s: out of memory", who);
        return NULL;
    }
    state->work = work;
    return work;
}

static int compare_index(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/*
 * The matrix's pattern from the plan's: row by row, the plan's columns
 * folded onto 0 .. n - 1 (y' column n + j adds to y column j), made
 * unique and sorted; then the same pattern by columns, and each plan
 * entry's place in both. mark and place are scratch of n each, row of
 * max(n, nnz).
 */
static void fold_pattern(jac_sundials_work *work, int64_t *mark, int64_t *place,
                         int64_t *row)
{
    int64_t n = work->n;
    for (int64_t j = 0; j < n; j++)
        mark[j] = -1;
    work->csr_ptr[0] = 0;
    work->mu = 0;
    work->ml = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t count = 0;
        for (int64_t k = work->rowptr[i]; k < work->rowptr[i + 1]; k++) {
            int64_t j = work->colidx[k] % n;
            if (mark[j] != i) {
                mark[j] = i;
                row[count++] = j;
            }
        }
        qsort(row, (size_t)count, sizeof *row, compare_index);
        int64_t start = work->csr_ptr[i];
        for (int64_t t = 0; t < count; t++) {
            work->csr_idx[start + t] = row[t];
            place[row[t]] = start + t;
            if (row[t] - i > work->mu)
                work->mu = row[t] - i;
            if (i - row[t] > work->ml)
                work->ml = i - row[t];
        }
        for (int64_t k = work->rowptr[i]; k < work->rowptr[i + 1]; k++)
            work->to_csr[k] = place[work->colidx[k] % n];
        work->csr_ptr[i + 1] = start + count;
    }
    work->mnnz = work->csr_ptr[n];
    work->csr_direct = work->mnnz == work->nnz;
    for (int64_t k = 0; k < work->nnz && work->csr_direct; k++)
        work->csr_direct = work->to_csr[k] == k;
    /* By columns: count, prefix sums, then rows in increasing order, which
     * leaves each column's rows sorted. */
    for (int64_t j = 0; j <= n; j++)
        work->csc_ptr[j] = 0;
    for (int64_t p = 0; p < work->mnnz; p++)
        work->csc_ptr[work->csr_idx[p] + 1]++;
    for (int64_t j = 0; j < n; j++) {
        work->csc_ptr[j + 1] += work->csc_ptr[j];
        mark[j] = work->csc_ptr[j];
    }
    int64_t *csr_to_csc = row; /* row is done with; it has nnz places */
    for (int64_t i = 0; i < n; i++)
        for (int64_t p = work->csr_ptr[i]; p < work->csr_ptr[i + 1]; p++) {
            csr_to_csc[p] = mark[work->csr_idx[p]]++;
            work->csc_idx[csr_to_csc[p]] = i;
        }
    for (int64_t k = 0; k < work->nnz; k++)
        work->to_csc[k] = csr_to_csc[work->to_csr[k]];
}

/* Makes the plan and the matrix's pattern when not made yet. Returns 0, or
 * -1 after fail. */
static int ensure_pattern(jac_sundials *state, jac_sundials_work *work,
                          const char *who)
{
    if (work->plan != NULL)
        return 0;
    /* Rows first, whatever the caller's by_columns: the pattern is folded
     * and mapped from the plan's CSR structure. */
    jac_sparse_opts opts = {0};
    if (state->sparse_opts != NULL)
        opts = *state->sparse_opts;
    opts.by_columns = false;
    jac_status status =
        jac_sparse_jacobian_plan(state->program, &opts, &work->plan);
    if (status != JAC_OK)
        return fail(state, status, "%s: the sparse plan: %s", who,
                    jac_program_errmsg());
    const jac_allocator *a = &work->allocator;
    int64_t n = work->n, nnz = jac_sparse_nnz(work->plan);
    size_t index = sizeof(int64_t), ptrs = (size_t)(n + 1) * index;
    size_t entries = (size_t)nnz * index;
    work->nnz = nnz;
    work->values = work_alloc(a, (size_t)nnz * sizeof(double));
    work->rowptr = work_alloc(a, ptrs);
    work->colidx = work_alloc(a, entries);
    work->csr_ptr = work_alloc(a, ptrs);
    work->csr_idx = work_alloc(a, entries);
    work->csc_ptr = work_alloc(a, ptrs);
    work->csc_idx = work_alloc(a, entries);
    work->to_csr = work_alloc(a, entries);
    work->to_csc = work_alloc(a, entries);
    size_t longest = (size_t)(nnz > n ? nnz : n);
    int64_t *scratch = work_alloc(a, (2 * (size_t)n + longest) * index);
    if (work->values == NULL || work->rowptr == NULL || work->colidx == NULL ||
        work->csr_ptr == NULL || work->csr_idx == NULL ||
        work->csc_ptr == NULL || work->csc_idx == NULL ||
        work->to_csr == NULL || work->to_csc == NULL || scratch == NULL) {
        work_free(a, scratch);
        free_pattern(work);
        return fail(state, JAC_ERR_NO_MEMORY, "%s: out of memory", who);
    }
    status =
        jac_sparse_csr(work->plan, JAC_INDEX_INT64, work->rowptr, work->colidx);
    if (status != JAC_OK) {
        work_free(a, scratch);
        free_pattern(work);
        return fail(state, status, "%s: the plan's structure: %s", who,
                    jac_program_errmsg());
    }
    fold_pattern(work, scratch, scratch + n, scratch + 2 * n);
    work_free(a, scratch);
    return 0;
}

/* One callback's arguments for the program: the inputs, then t (CVODE,
 * IDA), then the caller's parameters. */
typedef struct call {
    const double *args[JAC_SUNDIALS_MAX_PARAMS + 3];
    double t;
    int64_t n;
    jac_sundials_work *work;
} call;

/* The data of v, which must have n elements. Returns NULL after fail. */
static double *vector_data(jac_sundials *state, const char *who,
                           const char *name, N_Vector v, int64_t n)
{
    if (v == NULL) {
        (void)fail(state, JAC_ERR_NULL_ARG, "%s: %s is NULL", who, name);
        return NULL;
    }
    double *data = N_VGetArrayPointer(v);
    if (data == NULL) {
        (void)fail(state, JAC_ERR_VALUE,
                   "%s: %s gives no data (N_VGetArrayPointer is NULL)", who,
                   name);
        return NULL;
    }
    int64_t length = (int64_t)N_VGetLength(v);
    if (length != n) {
        (void)fail(state, JAC_ERR_SHAPE,
                   "%s: %s has %lld elements; the program's y has %lld", who,
                   name, (long long)length, (long long)n);
        return NULL;
    }
    return data;
}

/* The program's sizes for the solver kind: *n elements in each input and
 * in the output. Returns 0, or -1 (after fail, when who is not NULL). */
static int program_sizes(jac_sundials *state, const char *who, solver kind,
                         int64_t *n)
{
    const jac_program *program = state->program;
    if (program == NULL)
        return who == NULL ? -1
                           : fail(state, JAC_ERR_NULL_ARG,
                                  "%s: the program is NULL", who);
    size_t want_inputs = kind == IDA ? 2 : 1, want_t = kind == KINSOL ? 0 : 1;
    size_t ninputs = jac_program_count(program, 'i');
    size_t nparams = jac_program_count(program, 'p');
    size_t noutputs = jac_program_count(program, 'o');
    int64_t t_numel = 0;
    if (want_t != 0)
        (void)jac_program_shape(program, 'p', 0, NULL, &t_numel);
    if (ninputs != want_inputs || noutputs != 1 || nparams < want_t ||
        (want_t != 0 && t_numel != 1)) {
        if (who == NULL)
            return -1;
        return fail(state, JAC_ERR_SHAPE,
                    "%s: the program has %zu inputs, %zu parameters and %zu "
                    "outputs; %s takes %zu input%s, %s and one output",
                    who, ninputs, nparams, noutputs,
                    kind == CVODE ? "CVODE"
                    : kind == IDA ? "IDA"
                                  : "KINSOL",
                    want_inputs, want_inputs == 1 ? " (y)" : "s (y, y')",
                    want_t != 0 ? "t (one element) as the first parameter"
                                : "the caller's parameters");
    }
    int64_t out = 0;
    (void)jac_program_shape(program, 'o', 0, NULL, &out);
    for (size_t i = 0; i < ninputs; i++) {
        int64_t in = 0;
        (void)jac_program_shape(program, 'i', i, NULL, &in);
        if (in != out) {
            if (who == NULL)
                return -1;
            return fail(state, JAC_ERR_SHAPE,
                        "%s: the program's input %zu has %lld elements and "
                        "its output %lld; the solver's system is square",
                        who, i, (long long)in, (long long)out);
        }
    }
    *n = out;
    return 0;
}

/* Checks the program of state for the solver kind and y (and yp, for
 * IDA), and sets up c. Returns 0, or -1 after fail. */
static int begin_call(jac_sundials *state, const char *who, solver kind,
                      sunrealtype t, N_Vector y, N_Vector yp, call *c)
{
    if (program_sizes(state, who, kind, &c->n) != 0)
        return -1;
    size_t ninputs = kind == IDA ? 2 : 1, nt = kind == KINSOL ? 0 : 1;
    size_t nuser = jac_program_count(state->program, 'p') - nt;
    if (nuser > JAC_SUNDIALS_MAX_PARAMS)
        return fail(state, JAC_ERR_VALUE,
                    "%s: the program has %zu parameters of the caller, more "
                    "than %d",
                    who, nuser, JAC_SUNDIALS_MAX_PARAMS);
    for (size_t k = 0; k < nuser; k++) {
        if (state->params == NULL || state->params[k] == NULL)
            return fail(state, JAC_ERR_NULL_ARG,
                        "%s: the program has %zu parameters of the caller; "
                        "params[%zu] is NULL",
                        who, nuser, k);
        c->args[ninputs + nt + k] = state->params[k];
    }
    c->args[0] = vector_data(state, who, kind == KINSOL ? "u" : "y", y, c->n);
    if (c->args[0] == NULL)
        return -1;
    if (kind == IDA) {
        c->args[1] = vector_data(state, who, "yp", yp, c->n);
        if (c->args[1] == NULL)
            return -1;
    }
    c->t = (double)t;
    if (nt != 0)
        c->args[ninputs] = &c->t;
    c->work = workspace(state, who, c->n, (int64_t)ninputs);
    return c->work == NULL ? -1 : 0;
}

/* out = F at the call's arguments. */
static int evaluate(jac_sundials *state, const char *who, solver kind,
                    sunrealtype t, N_Vector y, N_Vector yp, N_Vector out,
                    const char *out_name)
{
    if (state == NULL) {
        vector_nan(out);
        return -1;
    }
    state->evaluations++;
    call c;
    double *f = NULL;
    if (begin_call(state, who, kind, t, y, yp, &c) != 0 ||
        (f = vector_data(state, who, out_name, out, c.n)) == NULL) {
        vector_nan(out);
        return -1;
    }
    double *outputs[1] = {f};
    jac_status status = jac_program_eval(state->program, c.args, outputs);
    if (status != JAC_OK) {
        vector_nan(out);
        return fail(state, status, "%s: %s", who, jac_program_errmsg());
    }
    return 0;
}

/* The plan's values at the call's arguments into work->values, or into
 * direct (the sparse matrix's values) when it is not NULL. */
static int plan_values(jac_sundials *state, const char *who, call *c,
                       double *direct)
{
    jac_status status =
        jac_sparse_jacobian(c->work->plan, c->args,
                            direct != NULL ? direct : c->work->values, NULL);
    if (status != JAC_OK)
        return fail(state, status, "%s: %s", who, jac_program_errmsg());
    return 0;
}

/* The plan's values added into a column-major matrix: entry (i, j) at
 * j ld + i (dense), or at j ld + i - j + s_mu (band, with band_offset =
 * s_mu); y' columns (j >= n) fold onto j - n, times cj. */
static void scatter_rows(const jac_sundials_work *work, double *data,
                         int64_t ld, int64_t band_offset, int band, double cj)
{
    int64_t n = work->n;
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = work->rowptr[i]; k < work->rowptr[i + 1]; k++) {
            int64_t j = work->colidx[k];
            double value = work->values[k];
            if (j >= n) {
                j -= n;
                value *= cj;
            }
            int64_t pos = band ? j * ld + (i - j + band_offset) : j * ld + i;
            data[pos] += value;
        }
}

static void scatter_sparse(const jac_sundials_work *work, double *data,
                           const int64_t *to, double cj)
{
    for (int64_t p = 0; p < work->mnnz; p++)
        data[p] = 0.0;
    for (int64_t k = 0; k < work->nnz; k++)
        data[to[k]] +=
            work->colidx[k] >= work->n ? cj * work->values[k] : work->values[k];
}

static void copy_indices(sunindextype *to, const int64_t *from, int64_t count)
{
    for (int64_t k = 0; k < count; k++)
        to[k] = (sunindextype)from[k];
}

static int check_square(jac_sundials *state, const char *who, const char *kind,
                        sunindextype rows, sunindextype cols, int64_t n)
{
    if (rows == n && cols == n)
        return 0;
    return fail(state, JAC_ERR_SHAPE,
                "%s: the %s matrix is %lld x %lld; the program's Jacobian "
                "is %lld x %lld",
                who, kind, (long long)rows, (long long)cols, (long long)n,
                (long long)n);
}

static int fill_sparse(jac_sundials *state, const char *who, call *c,
                       SUNMatrix A, double cj)
{
    jac_sundials_work *work = c->work;
    int type = SM_SPARSETYPE_S(A);
    if (type != CSR_MAT && type != CSC_MAT)
        return fail(state, JAC_ERR_VALUE,
                    "%s: the sparse matrix's type is %d, neither CSR_MAT "
                    "nor CSC_MAT",
                    who, type);
    if (SM_NNZ_S(A) < work->mnnz &&
        SUNSparseMatrix_Reallocate(A, (sunindextype)work->mnnz) != 0)
        return fail(state, JAC_ERR_NO_MEMORY,
                    "%s: the sparse matrix holds %lld entries, the pattern "
                    "%lld, and SUNSparseMatrix_Reallocate failed",
                    who, (long long)SM_NNZ_S(A), (long long)work->mnnz);
    double *data = SM_DATA_S(A);
    int direct = type == CSR_MAT && work->csr_direct;
    if (plan_values(state, who, c, direct ? data : NULL) != 0)
        return -1;
    if (!direct)
        scatter_sparse(work, data,
                       type == CSR_MAT ? work->to_csr : work->to_csc, cj);
    int csr = type == CSR_MAT;
    copy_indices(SM_INDEXPTRS_S(A), csr ? work->csr_ptr : work->csc_ptr,
                 work->n + 1);
    copy_indices(SM_INDEXVALS_S(A), csr ? work->csr_idx : work->csc_idx,
                 work->mnnz);
    return 0;
}

/* The Jacobian (dF/dy + cj dF/dy' when the program has y') into A. */
static int fill_matrix(jac_sundials *state, const char *who, call *c,
                       SUNMatrix A, double cj)
{
    jac_sundials_work *work = c->work;
    int64_t n = c->n;
    if (A == NULL)
        return fail(state, JAC_ERR_NULL_ARG, "%s: the matrix is NULL", who);
    if (ensure_pattern(state, work, who) != 0)
        return -1;
    switch (SUNMatGetID(A)) {
    case SUNMATRIX_DENSE:
        if (check_square(state, who, "dense", SM_ROWS_D(A), SM_COLUMNS_D(A),
                         n) != 0 ||
            plan_values(state, who, c, NULL) != 0)
            return -1;
        memset(SM_DATA_D(A), 0, (size_t)SM_LDATA_D(A) * sizeof(double));
        scatter_rows(work, SM_DATA_D(A), n, 0, 0, cj);
        return 0;
    case SUNMATRIX_BAND:
        if (check_square(state, who, "band", SM_ROWS_B(A), SM_COLUMNS_B(A),
                         n) != 0)
            return -1;
        if (work->mu > SM_UBAND_B(A) || work->ml > SM_LBAND_B(A))
            return fail(state, JAC_ERR_SHAPE,
                        "%s: the Jacobian's pattern has bandwidths mu = %lld, "
                        "ml = %lld; the band matrix mu = %lld, ml = %lld",
                        who, (long long)work->mu, (long long)work->ml,
                        (long long)SM_UBAND_B(A), (long long)SM_LBAND_B(A));
        if (plan_values(state, who, c, NULL) != 0)
            return -1;
        memset(SM_DATA_B(A), 0, (size_t)SM_LDATA_B(A) * sizeof(double));
        scatter_rows(work, SM_DATA_B(A), SM_LDIM_B(A), SM_SUBAND_B(A), 1, cj);
        return 0;
    case SUNMATRIX_SPARSE:
        if (check_square(state, who, "sparse", SM_ROWS_S(A), SM_COLUMNS_S(A),
                         n) != 0)
            return -1;
        return fill_sparse(state, who, c, A, cj);
    default:
        return fail(state, JAC_ERR_VALUE,
                    "%s: the matrix is of SUNMatrix_ID %d; the adapter fills "
                    "dense, band and sparse matrices",
                    who, (int)SUNMatGetID(A));
    }
}

static int jacobian(jac_sundials *state, const char *who, solver kind,
                    sunrealtype t, double cj, N_Vector y, N_Vector yp,
                    SUNMatrix A)
{
    if (state == NULL) {
        matrix_nan(A);
        return -1;
    }
    state->jacobians++;
    call c;
    if (begin_call(state, who, kind, t, y, yp, &c) != 0 ||
        fill_matrix(state, who, &c, A, cj) != 0) {
        matrix_nan(A);
        return -1;
    }
    return 0;
}

/* Jv = J v (IDA: (dF/dy + cj dF/dy') v). */
static int jtimes(jac_sundials *state, const char *who, solver kind,
                  sunrealtype t, double cj, N_Vector y, N_Vector yp, N_Vector v,
                  N_Vector Jv)
{
    if (state == NULL) {
        vector_nan(Jv);
        return -1;
    }
    state->jtimes++;
    call c;
    const double *vd = NULL;
    double *jvd = NULL;
    if (begin_call(state, who, kind, t, y, yp, &c) != 0 ||
        (vd = vector_data(state, who, "v", v, c.n)) == NULL ||
        (jvd = vector_data(state, who, "Jv", Jv, c.n)) == NULL) {
        vector_nan(Jv);
        return -1;
    }
    const double *tangents[2] = {vd, NULL};
    if (kind == IDA) {
        for (int64_t i = 0; i < c.n; i++)
            c.work->scratch[i] = cj * vd[i];
        tangents[1] = c.work->scratch;
    }
    double *jvps[1] = {jvd};
    jac_status status =
        jac_program_jvp(state->program, c.args, tangents, NULL, jvps);
    if (status != JAC_OK) {
        vector_nan(Jv);
        return fail(state, status, "%s: %s", who, jac_program_errmsg());
    }
    return 0;
}

int jac_sundials_cvode_rhs(sunrealtype t, N_Vector y, N_Vector ydot,
                           void *user_data)
{
    return evaluate(user_data, "jac_sundials_cvode_rhs", CVODE, t, y, NULL,
                    ydot, "ydot");
}

int jac_sundials_cvode_jac(sunrealtype t, N_Vector y, N_Vector fy, SUNMatrix J,
                           void *user_data, N_Vector tmp1, N_Vector tmp2,
                           N_Vector tmp3)
{
    (void)fy;
    (void)tmp1;
    (void)tmp2;
    (void)tmp3;
    return jacobian(user_data, "jac_sundials_cvode_jac", CVODE, t, 0.0, y, NULL,
                    J);
}

int jac_sundials_cvode_jtimes(N_Vector v, N_Vector Jv, sunrealtype t,
                              N_Vector y, N_Vector fy, void *user_data,
                              N_Vector tmp)
{
    (void)fy;
    (void)tmp;
    return jtimes(user_data, "jac_sundials_cvode_jtimes", CVODE, t, 0.0, y,
                  NULL, v, Jv);
}

int jac_sundials_ida_res(sunrealtype t, N_Vector y, N_Vector yp, N_Vector rr,
                         void *user_data)
{
    return evaluate(user_data, "jac_sundials_ida_res", IDA, t, y, yp, rr, "rr");
}

int jac_sundials_ida_jac(sunrealtype t, sunrealtype c_j, N_Vector y,
                         N_Vector yp, N_Vector r, SUNMatrix J, void *user_data,
                         N_Vector tmp1, N_Vector tmp2, N_Vector tmp3)
{
    (void)r;
    (void)tmp1;
    (void)tmp2;
    (void)tmp3;
    return jacobian(user_data, "jac_sundials_ida_jac", IDA, t, (double)c_j, y,
                    yp, J);
}

int jac_sundials_ida_jtimes(sunrealtype t, N_Vector y, N_Vector yp, N_Vector rr,
                            N_Vector v, N_Vector Jv, sunrealtype c_j,
                            void *user_data, N_Vector tmp1, N_Vector tmp2)
{
    (void)rr;
    (void)tmp1;
    (void)tmp2;
    return jtimes(user_data, "jac_sundials_ida_jtimes", IDA, t, (double)c_j, y,
                  yp, v, Jv);
}

int jac_sundials_kinsol_sys(N_Vector u, N_Vector fval, void *user_data)
{
    return evaluate(user_data, "jac_sundials_kinsol_sys", KINSOL, 0.0, u, NULL,
                    fval, "fval");
}

int jac_sundials_kinsol_jac(N_Vector u, N_Vector fu, SUNMatrix J,
                            void *user_data, N_Vector tmp1, N_Vector tmp2)
{
    (void)fu;
    (void)tmp1;
    (void)tmp2;
    return jacobian(user_data, "jac_sundials_kinsol_jac", KINSOL, 0.0, 1.0, u,
                    NULL, J);
}

int jac_sundials_kinsol_jtimes(N_Vector v, N_Vector Jv, N_Vector u,
                               sunbooleantype *new_u, void *user_data)
{
    if (new_u != NULL)
        *new_u = SUNFALSE;
    return jtimes(user_data, "jac_sundials_kinsol_jtimes", KINSOL, 0.0, 1.0, u,
                  NULL, v, Jv);
}

/* The workspace with its pattern for the program of state, whatever the
 * solver: IDA's when the program has two inputs. NULL after fail. */
static jac_sundials_work *pattern_of(jac_sundials *state, const char *who)
{
    /* Two inputs: IDA's y and y'; one: CVODE's or KINSOL's, whose checks
     * on the input and output are the same. */
    int64_t n = 0;
    solver kind = jac_program_count(state->program, 'i') == 2 ? IDA : KINSOL;
    if (program_sizes(state, who, kind, &n) != 0)
        return NULL;
    jac_sundials_work *work = workspace(state, who, n, kind == IDA ? 2 : 1);
    if (work == NULL || ensure_pattern(state, work, who) != 0)
        return NULL;
    return work;
}

int64_t jac_sundials_nnz(jac_sundials *state)
{
    if (state == NULL)
        return -1;
    jac_sundials_work *work = pattern_of(state, "jac_sundials_nnz");
    return work == NULL ? -1 : work->mnnz;
}

int jac_sundials_bandwidths(jac_sundials *state, sunindextype *mu,
                            sunindextype *ml)
{
    if (state == NULL)
        return -1;
    if (mu == NULL || ml == NULL)
        return fail(state, JAC_ERR_NULL_ARG,
                    "jac_sundials_bandwidths: %s is NULL",
                    mu == NULL ? "mu" : "ml");
    jac_sundials_work *work = pattern_of(state, "jac_sundials_bandwidths");
    if (work == NULL)
        return -1;
    *mu = (sunindextype)work->mu;
    *ml = (sunindextype)work->ml;
    return 0;
}
