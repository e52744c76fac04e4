/*
 * bratu2d: Newton's method on the two-dimensional Bratu problem, with the
 * Jacobian as a sparse matrix that costs five sweeps whatever its size.
 *
 *   -(u_xx + u_yy) = lambda exp(u) on the unit square, u = 0 on its edges,
 *
 * on an N x N grid of interior points (h = 1 / (N + 1), lambda = 6), with
 * the five-point Laplacian and row-major unknowns u[i,j]:
 *
 *   F[i,j] = (4 u[i,j] - u[i-1,j] - u[i+1,j] - u[i,j-1] - u[i,j+1]) / h^2
 *            - lambda exp(u[i,j]).
 *
 * The default N = 316 gives n = N^2 = 99 856 unknowns: a dense Jacobian
 * would take 80 GB, but a row of J has at most 5 nonzeros, 5n - 4N in all.
 *
 * The residual is written with tensor ops (the grid padded with its zero
 * boundary, then four shifted slices of it) and recorded once by
 * jac_program_record, with lambda as a parameter. jac_sparse_jacobian_plan
 * then finds J's pattern through the recording and colours it: entries of
 * one colour never collide, so one compressed sweep per colour gives every
 * nonzero. Each Newton step makes one call, jac_sparse_jacobian, which
 * writes F and refills J's values in place in the plan's order; no tensor is
 * made and nothing is recorded again.
 *
 * J du = -F is solved by UMFPACK (SuiteSparse's sparse LU) when the build
 * found it (JAC_HAVE_UMFPACK): the values come in column order (CSC, as
 * UMFPACK takes them), the ordering and symbolic analysis are done once
 * since the pattern never changes, and each step factorises and solves.
 * Without it, by conjugate gradients with a Jacobi preconditioner, written
 * here (the CG linear_solve says why CG applies).
 *
 * The program checks that Newton's method brings ||F||_inf below 1e-10
 * times its value at u = 0 (or down to F's rounding error, on very fine
 * grids) within 10 steps, that the pattern has 5n - 4N entries, and, for
 * N <= 40, that the sparse J agrees with the dense one of
 * jac_program_jacobian entry by entry. It then solves again on a grid of
 * side 100 or 101 and checks that max(u) on the two grids agrees within
 * the O(h^2) error of the discretisation.
 *
 * Usage: bratu2d [N]     (N from 3 to 1000; 316 by default)
 *
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include <jacobian.h>

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef JAC_HAVE_UMFPACK
#include <umfpack.h>
#endif

static const double LAMBDA = 6.0;
/* Newton stops when ||F||_inf falls below this times ||F(0)||_inf (or to
 * the rounding error of F on very fine grids). */
static const double TOL = 1e-10;
/* |max u(N) - max u(reference)| may be this times |h^2 - h_ref^2|: the
 * constant of the O(h^2) error is about 1.8 for even N, 0.16 for odd N. */
static const double H2_FACTOR = 3.0;
enum {
    N_DEFAULT = 316,
    N_MAX = 1000,
    N_REF = 100,      /* the grid of the h^2 check (101 for odd N) */
    N_DENSE_MAX = 40, /* the dense check's largest grid (20 MB) */
    MAX_STEPS = 10
};

/* ------------------------------------------------------------------------ */
/* The residual, recorded once                                              */
/* ------------------------------------------------------------------------ */

/* The N x N block of the padded grid p whose corner is (r0, c0). */
static jac_tensor *shifted(jac_ctx *ctx, jac_tensor *p, int64_t r0, int64_t c0,
                           int64_t N)
{
    return jac_slice(ctx, jac_slice(ctx, p, 0, r0, r0 + N, 1), 1, c0, c0 + N,
                     1);
}

/* F(u; lambda) on the N x N grid (*user is N): the zero boundary is the
 * padding, and the four neighbours of every point are four slices. */
static jac_status bratu(jac_ctx *ctx, jac_tensor *const *in, jac_tensor **out,
                        void *user)
{
    int64_t N = *(const int64_t *)user;
    double h = 1.0 / (double)(N + 1);
    jac_tensor *u = in[0], *lambda = in[1];
    jac_tensor *p =
        jac_pad(ctx, u, (const int64_t[]){1, 1}, (const int64_t[]){1, 1});
    jac_tensor *f = jac_mul_scalar(ctx, u, 4.0);
    f = jac_sub(ctx, f, shifted(ctx, p, 0, 1, N)); /* u[i-1,j] */
    f = jac_sub(ctx, f, shifted(ctx, p, 2, 1, N)); /* u[i+1,j] */
    f = jac_sub(ctx, f, shifted(ctx, p, 1, 0, N)); /* u[i,j-1] */
    f = jac_sub(ctx, f, shifted(ctx, p, 1, 2, N)); /* u[i,j+1] */
    out[0] = jac_sub(ctx, jac_div_scalar(ctx, f, h * h),
                     jac_mul(ctx, lambda, jac_exp(ctx, u)));
    return out[0] != NULL ? JAC_OK : jac_errcode(ctx);
}

/* Records F for the grid side N; NULL (with a message) on failure. The
 * context goes right after: the program holds all it needs. */
static jac_program *record_residual(int64_t N)
{
    jac_ctx *ctx = jac_ctx_new();
    if (ctx == NULL)
        return NULL;
    jac_tensor *u = jac_zeros(ctx, 2, (const int64_t[]){N, N});
    jac_tensor *lambda = jac_scalar(ctx, LAMBDA);
    jac_program *program = NULL;
    if (u != NULL && lambda != NULL)
        jac_program_record(ctx, bratu, &N, 1, &u, 1, &lambda, 1, 0, &program);
    if (program == NULL)
        fprintf(stderr, "bratu2d: recording failed: %s\n", jac_errmsg(ctx));
    jac_ctx_free(ctx);
    return program;
}

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double norm_inf(const double *v, int64_t n)
{
    double m = 0.0;
    for (int64_t k = 0; k < n; k++)
        m = fmax(m, fabs(v[k]));
    return m;
}

/* ------------------------------------------------------------------------ */
/* The linear solver: UMFPACK, or conjugate gradients                       */
/* ------------------------------------------------------------------------ */

#ifdef JAC_HAVE_UMFPACK
typedef SuiteSparse_long index_t;
/* UMFPACK takes the matrix by columns. */
static const bool BY_COLUMNS = true;
static const char SOLVER_NAME[] = "UMFPACK sparse LU";
#else
typedef int64_t index_t;
/* The matrix-vector product of CG reads it by rows. */
static const bool BY_COLUMNS = false;
static const char SOLVER_NAME[] = "conjugate gradients, Jacobi "
                                  "preconditioner";
#endif

/* J's structure (compressed: pointers and indices, in the plan's order) and
 * the solver's state; made once per grid. */
typedef struct linear {
    int64_t n;
    index_t *ptr, *idx;
#ifdef JAC_HAVE_UMFPACK
    void *symbolic, *numeric;
    double control[UMFPACK_CONTROL], info[UMFPACK_INFO];
#else
    double *r, *z, *p, *q, *dinv; /* dinv: the preconditioner, 1 / J_ii */
    double eta;                   /* relative tolerance of the next solve */
    long its;                     /* iterations of the last solve */
#endif
} linear;

static void linear_free(linear *s)
{
    free(s->ptr);
    free(s->idx);
#ifdef JAC_HAVE_UMFPACK
    umfpack_dl_free_symbolic(&s->symbolic);
    umfpack_dl_free_numeric(&s->numeric);
#else
    free(s->r);
    free(s->z);
    free(s->p);
    free(s->q);
    free(s->dinv);
#endif
}

/* Takes the plan's structure (in index_t, whatever that is). */
static int linear_init(linear *s, const jac_sparse *plan)
{
    memset(s, 0, sizeof *s);
    jac_sparse_dims(plan, &s->n, NULL);
    int64_t nnz = jac_sparse_nnz(plan);
    int64_t *ptr = malloc((size_t)(s->n + 1) * sizeof *ptr);
    int64_t *idx = malloc((size_t)nnz * sizeof *idx);
    s->ptr = malloc((size_t)(s->n + 1) * sizeof *s->ptr);
    s->idx = malloc((size_t)nnz * sizeof *s->idx);
    int ok = ptr != NULL && idx != NULL && s->ptr != NULL && s->idx != NULL &&
             jac_sparse_csr(plan, JAC_INDEX_INT64, ptr, idx) == JAC_OK;
    for (int64_t k = 0; ok && k <= s->n; k++)
        s->ptr[k] = (index_t)ptr[k];
    for (int64_t k = 0; ok && k < nnz; k++)
        s->idx[k] = (index_t)idx[k];
    free(ptr);
    free(idx);
#ifdef JAC_HAVE_UMFPACK
    umfpack_dl_defaults(s->control);
#else
    size_t bytes = (size_t)s->n * sizeof(double);
    s->r = malloc(bytes);
    s->z = malloc(bytes);
    s->p = malloc(bytes);
    s->q = malloc(bytes);
    s->dinv = malloc(bytes);
    ok = ok && s->r != NULL && s->z != NULL && s->p != NULL && s->q != NULL &&
         s->dinv != NULL;
#endif
    return ok;
}

#ifdef JAC_HAVE_UMFPACK
/* x = J^-1 b by LU: the symbolic analysis (fill-reducing ordering) on the
 * first call only, the numeric factorisation on every call. */
static int linear_solve(linear *s, const double *values, const double *b,
                        double *x)
{
    SuiteSparse_long status = UMFPACK_OK;
    if (s->symbolic == NULL)
        status = umfpack_dl_symbolic(s->n, s->n, s->ptr, s->idx, values,
                                     &s->symbolic, s->control, s->info);
    if (status == UMFPACK_OK) {
        umfpack_dl_free_numeric(&s->numeric);
        status = umfpack_dl_numeric(s->ptr, s->idx, values, s->symbolic,
                                    &s->numeric, s->control, s->info);
    }
    if (status == UMFPACK_OK)
        status = umfpack_dl_solve(UMFPACK_A, s->ptr, s->idx, values, x, b,
                                  s->numeric, s->control, s->info);
    if (status != UMFPACK_OK)
        fprintf(stderr, "bratu2d: UMFPACK failed with status %ld\n",
                (long)status);
    return status == UMFPACK_OK;
}
#else
static double dot(const double *a, const double *b, int64_t n)
{
    double s = 0.0;
    for (int64_t k = 0; k < n; k++)
        s += a[k] * b[k];
    return s;
}

/* y = J x, J by rows (CSR). */
static void matvec(const linear *s, const double *values, const double *x,
                   double *y)
{
    for (int64_t i = 0; i < s->n; i++) {
        double t = 0.0;
        for (index_t k = s->ptr[i]; k < s->ptr[i + 1]; k++)
            t += values[k] * x[s->idx[k]];
        y[i] = t;
    }
}

/*
 * x = J^-1 b by the preconditioned conjugate gradient method, from x = 0
 * until ||b - J x||_2 <= eta ||b||_2.
 *
 * CG needs J symmetric positive definite. J = A / h^2 - lambda diag(exp(u)),
 * A the five-point Laplacian, is symmetric. Newton's method from u = 0
 * climbs monotonically to the lower (minimal) solution u*, since exp is
 * convex and increasing: each iterate u_k is a subsolution with
 * u_k <= u* (up to the small errors of inexact solves), so lambda exp(u_k) <=
 * lambda exp(u*) entry by entry and J(u_k) - J(u*) is positive semidefinite.
 * J(u*) is positive definite, as the lower branch is the stable one (lambda = 6
 * is below the fold, at about 6.81). The preconditioner is J's diagonal,
 * positive for the same reason; a step that meets a direction of non-positive
 * curvature fails.
 */
static int linear_solve(linear *s, const double *values, const double *b,
                        double *x)
{
    int64_t n = s->n;
    double *r = s->r, *z = s->z, *p = s->p, *q = s->q, *dinv = s->dinv;
    for (int64_t i = 0; i < n; i++) {
        double d = 0.0;
        for (index_t k = s->ptr[i]; k < s->ptr[i + 1]; k++)
            if (s->idx[k] == i)
                d = values[k];
        if (!(d > 0.0)) {
            fprintf(stderr, "bratu2d: J[%lld][%lld] = %g: CG does not apply\n",
                    (long long)i, (long long)i, d);
            return 0;
        }
        dinv[i] = 1.0 / d;
        x[i] = 0.0;
        r[i] = b[i];
        z[i] = dinv[i] * r[i];
        p[i] = z[i];
    }
    double stop = s->eta * sqrt(dot(b, b, n)), rz = dot(r, z, n);
    /* About N iterations per digit for the Laplacian; far more is a bug. */
    long max_its = 100 + 50 * (long)sqrt((double)n);
    for (s->its = 0; sqrt(dot(r, r, n)) > stop; s->its++) {
        if (s->its == max_its) {
            fprintf(stderr, "bratu2d: CG did not converge in %ld iterations\n",
                    max_its);
            return 0;
        }
        matvec(s, values, p, q);
        double pq = dot(p, q, n);
        if (!(pq > 0.0)) {
            fprintf(stderr, "bratu2d: J is not positive definite (p'Jp = %g)\n",
                    pq);
            return 0;
        }
        double alpha = rz / pq;
        for (int64_t i = 0; i < n; i++) {
            x[i] += alpha * p[i];
            r[i] -= alpha * q[i];
            z[i] = dinv[i] * r[i];
        }
        double rz_next = dot(r, z, n), beta = rz_next / rz;
        rz = rz_next;
        for (int64_t i = 0; i < n; i++)
            p[i] = z[i] + beta * p[i];
    }
    return 1;
}
#endif

/* ------------------------------------------------------------------------ */
/* The checks                                                               */
/* ------------------------------------------------------------------------ */

/* The sparse J (values, in the plan's order) against the dense Jacobian
 * of the program at args: every entry of the pattern equal to rounding,
 * every entry outside it zero. Returns 1 when they agree. */
static int check_dense(jac_program *program, const jac_sparse *plan,
                       const double *const *args, const double *values)
{
    int64_t n = 0, nnz = jac_sparse_nnz(plan);
    jac_sparse_dims(plan, &n, NULL);
    double *J = malloc((size_t)(n * n) * sizeof *J);
    int64_t *rows = malloc((size_t)nnz * sizeof *rows);
    int64_t *cols = malloc((size_t)nnz * sizeof *cols);
    int ok =
        J != NULL && rows != NULL && cols != NULL &&
        jac_program_jacobian(program, args, NULL, (double *[]){J}) == JAC_OK &&
        jac_sparse_coo(plan, JAC_INDEX_INT64, rows, cols) == JAC_OK;
    if (!ok)
        fprintf(stderr, "bratu2d: dense check failed to run: %s\n",
                jac_program_errmsg());
    double worst = 0.0;
    for (int64_t k = 0; ok && k < nnz; k++) {
        double *dense = &J[rows[k] * n + cols[k]];
        worst =
            fmax(worst, fabs(values[k] - *dense) / fmax(fabs(*dense), DBL_MIN));
        *dense = 0.0; /* what is left must be zero */
    }
    double outside = ok ? norm_inf(J, n * n) : 0.0;
    if (ok)
        printf("sparse J against the dense J (%lld x %lld): max relative "
               "difference %.1e, max |entry| outside the pattern %g\n",
               (long long)n, (long long)n, worst, outside);
    ok = ok && worst <= 1e-12 && outside == 0.0;
    free(J);
    free(rows);
    free(cols);
    return ok;
}

/* ------------------------------------------------------------------------ */
/* Newton's method on one grid                                              */
/* ------------------------------------------------------------------------ */

typedef struct run {
    int steps;         /* Jacobians evaluated */
    double f0, f;      /* ||F||_inf at u = 0 and at the end */
    double max_u;      /* of the solution */
    double first_s;    /* the first jac_sparse_jacobian call */
    double jacobian_s; /* the others */
} run;

/* Solves F(u) = 0 on the N x N grid from u = 0; prints the plan and each
 * step when verbose. Returns 1 when Newton's method converged and the
 * checks passed. */
static int solve(int64_t N, int verbose, run *out)
{
    int64_t n = N * N;
    double inv_h2 = (double)((N + 1) * (N + 1));
    memset(out, 0, sizeof *out);
    double t0 = seconds();
    jac_program *program = record_residual(N);
    if (program == NULL)
        return 0;
    double t1 = seconds();
    jac_sparse_opts opts = {.by_columns = BY_COLUMNS};
    jac_sparse *plan = NULL;
    if (jac_sparse_jacobian_plan(program, &opts, &plan) != JAC_OK) {
        fprintf(stderr, "bratu2d: plan failed: %s\n", jac_program_errmsg());
        jac_program_free(program);
        return 0;
    }
    double t2 = seconds();
    int64_t nnz = jac_sparse_nnz(plan);
    if (verbose) {
        printf("grid %lld x %lld: n = %lld unknowns, lambda = %g\n",
               (long long)N, (long long)N, (long long)n, LAMBDA);
        printf("residual recorded in %.1f ms: %zu ops\n", 1e3 * (t1 - t0),
               jac_program_length(program, NULL));
        printf("sparse plan in %.1f ms: nnz = %lld (5n - 4N = %lld), "
               "%lld colours, %s sweeps, values by %s\n",
               1e3 * (t2 - t1), (long long)nnz, (long long)(5 * n - 4 * N),
               (long long)jac_sparse_colors(plan),
               jac_sparse_method_used(plan) == JAC_SPARSE_FORWARD ? "forward"
                                                                  : "reverse",
               BY_COLUMNS ? "columns (CSC)" : "rows (CSR)");
        printf("linear solver: %s\n\n", SOLVER_NAME);
    }
    int ok = nnz == 5 * n - 4 * N;
    if (!ok)
        fprintf(stderr, "bratu2d: nnz = %lld, not 5n - 4N = %lld\n",
                (long long)nnz, (long long)(5 * n - 4 * N));

    double *u = calloc((size_t)n, sizeof *u);
    double *F = malloc((size_t)n * sizeof *F);
    double *b = malloc((size_t)n * sizeof *b);
    double *du = malloc((size_t)n * sizeof *du);
    double *values = malloc((size_t)nnz * sizeof *values);
    linear solver;
    ok = linear_init(&solver, plan) && u != NULL && F != NULL && b != NULL &&
         du != NULL && values != NULL && ok;
    if (verbose)
        printf("step  ||F||_inf     relative     Jacobian (ms)  solve (ms)"
#ifndef JAC_HAVE_UMFPACK
               "  CG its"
#endif
               "\n");

    const double lambda = LAMBDA;
    const double *args[2] = {u, &lambda}; /* the input, then the parameter */
    int converged = 0;
    for (int step = 0; ok && !converged; step++) {
        /* F(u) into F and J(u) into values: one call, no allocation. */
        double ta = seconds();
        jac_status st =
            jac_sparse_jacobian(plan, args, values, (double *[]){F});
        double tb = seconds();
        if (st != JAC_OK) {
            fprintf(stderr, "bratu2d: %s\n", jac_program_errmsg());
            ok = 0;
            break;
        }
        out->steps++;
        if (step == 0)
            out->first_s = tb - ta;
        else
            out->jacobian_s += tb - ta;
        out->f = norm_inf(F, n);
        if (step == 0)
            out->f0 = out->f;
        /* F's largest terms, 4 u / h^2, carry rounding errors of about
         * eps times themselves, and so does F: on fine grids that, not
         * TOL, is as small as F gets. */
        double noise = 8.0 * DBL_EPSILON * 4.0 * norm_inf(u, n) * inv_h2;
        converged = out->f <= fmax(TOL * out->f0, noise);
        if (!converged && step == MAX_STEPS) {
            fprintf(stderr, "bratu2d: no convergence in %d steps\n", MAX_STEPS);
            ok = 0;
        }
        double tc = seconds();
        if (ok && !converged) {
            for (int64_t k = 0; k < n; k++)
                b[k] = -F[k];
#ifndef JAC_HAVE_UMFPACK
            /* An inexact Newton step: the forcing term shrinks with the
             * residual, which keeps the convergence quadratic. */
            solver.eta = fmin(1e-2, out->f / out->f0);
#endif
            ok = linear_solve(&solver, values, b, du);
            for (int64_t k = 0; ok && k < n; k++)
                u[k] += du[k];
        }
        if (verbose) {
            printf("%4d  %.6e  %.3e  %13.2f", step, out->f, out->f / out->f0,
                   1e3 * (tb - ta));
            if (!converged)
                printf("  %10.2f", 1e3 * (seconds() - tc));
#ifndef JAC_HAVE_UMFPACK
            if (!converged)
                printf("  %6ld", solver.its);
#endif
            printf("\n");
        }
    }
    out->max_u = -INFINITY;
    for (int64_t k = 0; ok && k < n; k++)
        out->max_u = fmax(out->max_u, u[k]);
    /* values hold J at the solution: compare it with the dense J there. */
    if (ok && N <= N_DENSE_MAX)
        ok = check_dense(program, plan, args, values);

    linear_free(&solver);
    free(u);
    free(F);
    free(b);
    free(du);
    free(values);
    jac_sparse_free(plan);
    jac_program_free(program);
    return ok;
}

int main(int argc, char **argv)
{
    int64_t N = N_DEFAULT;
    if (argc > 1) {
        char *end = NULL;
        long side = strtol(argv[1], &end, 10);
        if (argc > 2 || end == argv[1] || *end != '\0' || side < 3 ||
            side > N_MAX) {
            fprintf(stderr,
                    "usage: bratu2d [N]  (grid side, 3 to %d; %d by "
                    "default)\n",
                    N_MAX, N_DEFAULT);
            return 2;
        }
        N = side;
    }
    printf("Bratu problem on the unit square, Newton's method with sparse "
           "Jacobians\n");
    run fine, coarse;
    int ok = solve(N, 1, &fine);
    if (ok)
        printf("converged in %d Newton steps: ||F||_inf = %.2e (%.1e of "
               "||F(0)||_inf)\nF and J: %.2f ms per call after the first, "
               "%.2f ms for the first (which makes the workspaces)\n",
               fine.steps - 1, fine.f, fine.f / fine.f0,
               1e3 * fine.jacobian_s / (fine.steps - 1), 1e3 * fine.first_s);

    /* The same problem on a grid of side about 100: max(u) differs by
     * O(h^2). The maximum of u is at the centre of the square, which is a
     * grid point when N is odd; when N is even the grid's maximum is h/2
     * off in each direction, lower by about 1.7 h^2 (h^2 / 8 times
     * lambda exp(u) there). So the other grid has N's parity. */
    int64_t R = N_REF + N % 2;
    if (R == N)
        R = N_REF / 2 + N % 2;
    ok = ok && solve(R, 0, &coarse);
    if (ok) {
        double h2 = 1.0 / (double)((N + 1) * (N + 1));
        double r2 = 1.0 / (double)((R + 1) * (R + 1));
        double diff = fabs(fine.max_u - coarse.max_u);
        double bound = H2_FACTOR * fabs(h2 - r2);
        /* Richardson: the value at h = 0 if the error is c h^2. */
        double limit = (r2 * fine.max_u - h2 * coarse.max_u) / (r2 - h2);
        printf("max(u) = %.6f on the %lldx%lld grid, %.6f on the %lldx%lld "
               "grid (%d steps);\n  difference %.2e (at most %.2e, O(h^2)); "
               "extrapolated to h = 0: %.6f\n",
               fine.max_u, (long long)N, (long long)N, coarse.max_u,
               (long long)R, (long long)R, coarse.steps - 1, diff, bound,
               limit);
        if (diff > bound) {
            fprintf(stderr,
                    "bratu2d: max(u) differs between the grids by "
                    "more than %.2e\n",
                    bound);
            ok = 0;
        }
    }
    printf("%s\n", ok ? "OK" : "FAILED");
    return ok ? 0 : 1;
}
