/*
 * The GSL adapter: GSL's root-finding and nonlinear least-squares
 * callbacks evaluate a recorded function (jac_program) through the public
 * API only. Each call checks GSL's sizes against the program's shapes
 * first, so that a mismatch is a status, never a number computed from the
 * wrong buffer. Vectors of stride 1 and matrices with tda == size2 are
 * read and written in place; others go through the workspace.
 *
 * SPDX-License-Identifier: MIT
 */
#include "jacobian_gsl.h"

#include <gsl/gsl_errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

struct jac_gsl_work {
    size_t n;   /* the program input's numel (x) */
    size_t m;   /* the program output's numel (F) */
    double *x;  /* n: x when its stride is not 1 */
    double *v;  /* n: v when its stride is not 1 */
    double *f;  /* m: F when its stride is not 1 */
    double *J;  /* m * n: the Jacobian when tda != n */
    double *w;  /* m: zero weights of the fvv program */
    double *hv; /* n: the fvv program's other tangent, discarded */
    /* fvv: the VJP program g(x, w) = J(x)^T w, and its own VJP program
     * h(x, w, u) = (sum_k w_k Hess f_k u, J(x) u); see jac_gsl_nlinear_fvv.
     */
    jac_program *vjp;
    jac_program *jvp;
    const jac_program *made_for; /* the program the above were made from */
};

/* Keeps the first failure of state. Returns GSL_EBADFUNC. */
static int fail(jac_gsl *state, jac_status status, const char *format, ...)
{
    if (state->status == JAC_OK) {
        va_list args;
        va_start(args, format);
        state->status = status;
        (void)vsnprintf(state->message, sizeof state->message, format, args);
        va_end(args);
    }
    return GSL_EBADFUNC;
}

static void vector_nan(gsl_vector *v)
{
    if (v != NULL)
        for (size_t i = 0; i < v->size; i++)
            v->data[i * v->stride] = NAN;
}

static void matrix_nan(gsl_matrix *A)
{
    if (A != NULL)
        for (size_t i = 0; i < A->size1; i++)
            for (size_t j = 0; j < A->size2; j++)
                A->data[i * A->tda + j] = NAN;
}

static void free_work(jac_gsl_work *work)
{
    free(work->x);
    free(work->v);
    free(work->f);
    free(work->J);
    free(work->w);
    free(work->hv);
    jac_program_free(work->vjp);
    jac_program_free(work->jvp);
    free(work);
}

void jac_gsl_release(jac_gsl *state)
{
    if (state == NULL || state->work == NULL)
        return;
    free_work(state->work);
    state->work = NULL;
}

/* The workspace for a program of n inputs and m outputs, remade when the
 * program changed. NULL (after fail) when out of memory. */
static jac_gsl_work *workspace(jac_gsl *state, const char *who, size_t n,
                               size_t m)
{
    jac_gsl_work *work = state->work;
    if (work != NULL && work->made_for == state->program && work->n == n &&
        work->m == m)
        return work;
    jac_gsl_release(state);
    work = calloc(1, sizeof *work);
    if (work != NULL) {
        work->n = n;
        work->m = m;
        work->made_for = state->program;
        work->x = malloc(n * sizeof(double));
        work->v = malloc(n * sizeof(double));
        work->f = malloc(m * sizeof(double));
        work->J = malloc(m * n * sizeof(double));
        work->w = calloc(m, sizeof(double));
        work->hv = malloc(n * sizeof(double));
    }
    if (work == NULL || work->x == NULL || work->v == NULL || work->f == NULL ||
        work->J == NULL || work->w == NULL || work->hv == NULL) {
        if (work != NULL)
            free_work(work);
        (void)fail(state, JAC_ERR_NO_MEMORY, "%s: out of memory", who);
        return NULL;
    }
    state->work = work;
    return work;
}

/* The sizes of the program of state: one input of *n elements and one
 * output of *m. Returns 0 (after fail, when who is not NULL) otherwise. */
static int program_sizes(jac_gsl *state, const char *who, size_t *n, size_t *m)
{
    const jac_program *program = state->program;
    if (program == NULL) {
        if (who != NULL)
            (void)fail(state, JAC_ERR_NULL_ARG, "%s: the program is NULL", who);
        return 0;
    }
    size_t ninputs = jac_program_count(program, 'i');
    size_t noutputs = jac_program_count(program, 'o');
    if (ninputs != 1 || noutputs != 1) {
        if (who != NULL)
            (void)fail(state, JAC_ERR_SHAPE,
                       "%s: the program has %zu inputs and %zu outputs; the "
                       "adapter takes one of each",
                       who, ninputs, noutputs);
        return 0;
    }
    int64_t in = 0, out = 0;
    (void)jac_program_shape(program, 'i', 0, NULL, &in);
    (void)jac_program_shape(program, 'o', 0, NULL, &out);
    *n = (size_t)in;
    *m = (size_t)out;
    return 1;
}

/* The call's dense view of x (in place or copied). */
static const double *dense_in(const gsl_vector *x, double *copy)
{
    if (x->stride == 1)
        return x->data;
    for (size_t i = 0; i < x->size; i++)
        copy[i] = x->data[i * x->stride];
    return copy;
}

static double *dense_out(gsl_vector *f, double *copy)
{
    return f->stride == 1 ? f->data : copy;
}

static void scatter_out(gsl_vector *f, const double *dense)
{
    if (dense == f->data)
        return;
    for (size_t i = 0; i < f->size; i++)
        f->data[i * f->stride] = dense[i];
}

static double *dense_matrix(gsl_matrix *A, double *copy)
{
    return A->tda == A->size2 ? A->data : copy;
}

static void scatter_matrix(gsl_matrix *A, const double *dense)
{
    if (dense == A->data)
        return;
    for (size_t i = 0; i < A->size1; i++)
        for (size_t j = 0; j < A->size2; j++)
            A->data[i * A->tda + j] = dense[i * A->size2 + j];
}

/* Checks the program of state against x (n), f (m rows) and J (m x n),
 * any of f and J NULL when not asked for, and sets up args (x, then the
 * parameters). Returns the workspace, or NULL (after fail) on a mismatch.
 */
static jac_gsl_work *prepare(jac_gsl *state, const char *who,
                             const gsl_vector *x, const gsl_vector *f,
                             const gsl_matrix *J, const double **args)
{
    size_t n = 0, m = 0;
    if (x == NULL || (f == NULL && J == NULL)) {
        (void)fail(state, JAC_ERR_NULL_ARG, "%s: %s is NULL", who,
                   x == NULL ? "x" : "the output");
        return NULL;
    }
    if (!program_sizes(state, who, &n, &m))
        return NULL;
    if (x->size != n || (f != NULL && f->size != m) ||
        (J != NULL && (J->size1 != m || J->size2 != n))) {
        (void)fail(state, JAC_ERR_SHAPE,
                   "%s: GSL passes x of %zu, f of %zu and J of %zu x %zu; the "
                   "program maps %zu elements to %zu",
                   who, x->size, f != NULL ? f->size : m,
                   J != NULL ? J->size1 : m, J != NULL ? J->size2 : n, n, m);
        return NULL;
    }
    size_t nparams = jac_program_count(state->program, 'p');
    if (nparams > JAC_GSL_MAX_PARAMS) {
        (void)fail(state, JAC_ERR_VALUE,
                   "%s: the program has %zu parameters, more than %d", who,
                   nparams, JAC_GSL_MAX_PARAMS);
        return NULL;
    }
    for (size_t k = 0; k < nparams; k++) {
        if (state->params == NULL || state->params[k] == NULL) {
            (void)fail(state, JAC_ERR_NULL_ARG,
                       "%s: the program has %zu parameters; params[%zu] is "
                       "NULL",
                       who, nparams, k);
            return NULL;
        }
        args[k + 1] = state->params[k];
    }
    jac_gsl_work *work = workspace(state, who, n, m);
    if (work != NULL)
        args[0] = dense_in(x, work->x);
    return work;
}

/* f and J (either may be NULL) at x. */
static int evaluate(jac_gsl *state, const char *who, const gsl_vector *x,
                    gsl_vector *f, gsl_matrix *J)
{
    if (state == NULL) {
        vector_nan(f);
        matrix_nan(J);
        return GSL_EBADFUNC;
    }
    if (f != NULL)
        state->evaluations++;
    if (J != NULL)
        state->jacobians++;
    const double *args[JAC_GSL_MAX_PARAMS + 1];
    jac_gsl_work *work = prepare(state, who, x, f, J, args);
    if (work == NULL) {
        vector_nan(f);
        matrix_nan(J);
        return GSL_EBADFUNC;
    }
    double *fd = f != NULL ? dense_out(f, work->f) : NULL;
    double *outputs[1] = {fd};
    jac_status status;
    if (J == NULL) {
        status = jac_program_eval(state->program, args, outputs);
    } else {
        double *Jd[1] = {dense_matrix(J, work->J)};
        status = jac_program_jacobian(state->program, args, outputs, Jd);
        if (status == JAC_OK)
            scatter_matrix(J, Jd[0]);
    }
    if (status != JAC_OK) {
        vector_nan(f);
        matrix_nan(J);
        return fail(state, status, "%s: %s", who, jac_program_errmsg());
    }
    if (f != NULL)
        scatter_out(f, fd);
    return GSL_SUCCESS;
}

int jac_gsl_multiroot_f(const gsl_vector *x, void *params, gsl_vector *f)
{
    return evaluate(params, "jac_gsl_multiroot_f", x, f, NULL);
}

int jac_gsl_multiroot_df(const gsl_vector *x, void *params, gsl_matrix *J)
{
    return evaluate(params, "jac_gsl_multiroot_df", x, NULL, J);
}

int jac_gsl_multiroot_fdf(const gsl_vector *x, void *params, gsl_vector *f,
                          gsl_matrix *J)
{
    if (f == NULL || J == NULL) {
        jac_gsl *state = params;
        vector_nan(f);
        matrix_nan(J);
        return state == NULL ? GSL_EBADFUNC
                             : fail(state, JAC_ERR_NULL_ARG,
                                    "jac_gsl_multiroot_fdf: %s is NULL",
                                    f == NULL ? "f" : "J");
    }
    return evaluate(params, "jac_gsl_multiroot_fdf", x, f, J);
}

void jac_gsl_multiroot_fdf_init(gsl_multiroot_function_fdf *fdf, jac_gsl *state)
{
    if (fdf == NULL)
        return;
    size_t n = 0, m = 0;
    fdf->f = jac_gsl_multiroot_f;
    fdf->df = jac_gsl_multiroot_df;
    fdf->fdf = jac_gsl_multiroot_fdf;
    fdf->n = state != NULL && program_sizes(state, NULL, &n, &m) ? n : 0;
    fdf->params = state;
}

int jac_gsl_nlinear_f(const gsl_vector *x, void *params, gsl_vector *f)
{
    return evaluate(params, "jac_gsl_nlinear_f", x, f, NULL);
}

int jac_gsl_nlinear_df(const gsl_vector *x, void *params, gsl_matrix *J)
{
    return evaluate(params, "jac_gsl_nlinear_df", x, NULL, J);
}

/*
 * fvv_k = v^T (Hess f_k) v, exactly, with public calls only. Let
 * g(x, w) = J(x)^T w be the VJP program of F (jac_program_gradient with
 * JAC_PROGRAM_SEEDS_AS_INPUTS: inputs x, w). Its own VJP program, again
 * with the seeds as inputs, is h(x, w, u) = grad_{x,w} <u, g(x, w)>
 * = grad_{x,w} w^T J(x) u, whose outputs are
 *   h_x = sum_k w_k (Hess f_k) u   (n elements)
 *   h_w = J(x) u                   (m elements: the JVP, as a program).
 * One JVP of h at (x, w = 0, u = v) along (v, 0, 0) then gives, in its
 * h_w part, d/dt J(x + t v) v = (v^T (Hess f_k) v)_k: fvv. Cost: h is F
 * differentiated twice in reverse, and its JVP a forward sweep of that: a
 * fixed multiple of one evaluation of F whatever m (measured: about ten
 * evaluations, 1.5 Jacobians, for the 100-residual exponential fit of
 * examples/gsl_solvers.c), against m Hessian-vector products (one per
 * residual, jac_program_hvp with weights e_k) the direct way. The two
 * derived programs are made on the first call and kept in the workspace.
 */
int jac_gsl_nlinear_fvv(const gsl_vector *x, const gsl_vector *v, void *params,
                        gsl_vector *fvv)
{
    static const char who[] = "jac_gsl_nlinear_fvv";
    jac_gsl *state = params;
    if (state == NULL) {
        vector_nan(fvv);
        return GSL_EBADFUNC;
    }
    state->fvvs++;
    const double *args[JAC_GSL_MAX_PARAMS + 1];
    if (v == NULL) {
        vector_nan(fvv);
        return fail(state, JAC_ERR_NULL_ARG, "%s: v is NULL", who);
    }
    jac_gsl_work *work = prepare(state, who, x, fvv, NULL, args);
    if (work == NULL) {
        vector_nan(fvv);
        return GSL_EBADFUNC;
    }
    if (v->size != work->n) {
        vector_nan(fvv);
        return fail(state, JAC_ERR_SHAPE,
                    "%s: v has %zu elements; the program's input %zu", who,
                    v->size, work->n);
    }
    jac_status status = JAC_OK;
    if (work->jvp == NULL) {
        if (work->vjp == NULL)
            status = jac_program_gradient(
                state->program, JAC_PROGRAM_SEEDS_AS_INPUTS, &work->vjp);
        if (status == JAC_OK)
            status = jac_program_gradient(
                work->vjp, JAC_PROGRAM_SEEDS_AS_INPUTS, &work->jvp);
        if (status != JAC_OK) {
            vector_nan(fvv);
            return fail(state, status, "%s: deriving the program: %s", who,
                        jac_program_errmsg());
        }
    }
    /* h's arguments: x, w, u, then the parameters of F. */
    size_t nparams = jac_program_count(state->program, 'p');
    const double *hargs[JAC_GSL_MAX_PARAMS + 3];
    const double *vd = dense_in(v, work->v);
    hargs[0] = args[0];
    hargs[1] = work->w;
    hargs[2] = vd;
    for (size_t k = 0; k < nparams; k++)
        hargs[k + 3] = args[k + 1];
    const double *tangent[3] = {vd, NULL, NULL};
    double *fd = dense_out(fvv, work->f);
    double *jvps[2] = {work->hv, fd};
    status = jac_program_jvp(work->jvp, hargs, tangent, NULL, jvps);
    if (status != JAC_OK) {
        vector_nan(fvv);
        return fail(state, status, "%s: %s", who, jac_program_errmsg());
    }
    scatter_out(fvv, fd);
    return GSL_SUCCESS;
}

void jac_gsl_nlinear_fdf_init(gsl_multifit_nlinear_fdf *fdf, jac_gsl *state)
{
    if (fdf == NULL)
        return;
    size_t n = 0, m = 0;
    int ok = state != NULL && program_sizes(state, NULL, &n, &m);
    fdf->f = jac_gsl_nlinear_f;
    fdf->df = jac_gsl_nlinear_df;
    fdf->fvv = jac_gsl_nlinear_fvv;
    fdf->n = ok ? m : 0;
    fdf->p = ok ? n : 0;
    fdf->params = state;
    fdf->nevalf = 0;
    fdf->nevaldf = 0;
    fdf->nevalfvv = 0;
}
