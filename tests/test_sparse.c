/*
 * Sparse Jacobians and Hessians: for every row of the op table the
 * pattern holds every entry that is non-zero in the dense Jacobian and
 * Hessian at several points, and the sparse values equal the dense ones;
 * on the benchmark problems the pattern is exact and the colours minimal;
 * every method, triangle and export agrees; plans reused at new points
 * agree with fresh ones.
 *
 * SPDX-License-Identifier: MIT
 */
#include "op_rows.h"
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

OP_ROWS_TABLE

static void point_values(const op_row *r, int k, int point, int64_t n,
                         double *v)
{
    for (int64_t i = 0; i < n; i++)
        v[i] =
            r->lo +
            (r->hi - r->lo) *
                (0.5 + 0.45 * sin(1.1 * (double)i + 0.37 * (double)(i * i) +
                                  1.9 * (double)k + 0.7 + 2.9 * (double)point));
}

/* Whether (r, c) is in the plan's structure (COO, 64-bit, 0-based). */
typedef struct structure {
    int64_t nnz, rows, cols;
    int64_t *r, *c;
    int64_t *slot; /* dense: index of the entry or -1 */
} structure;

static void structure_of(const jac_sparse *plan, structure *s)
{
    s->nnz = jac_sparse_nnz(plan);
    jac_sparse_dims(plan, &s->rows, &s->cols);
    s->r = malloc((size_t)s->nnz * sizeof(int64_t) + 8);
    s->c = malloc((size_t)s->nnz * sizeof(int64_t) + 8);
    s->slot = malloc((size_t)(s->rows * s->cols) * sizeof(int64_t) + 8);
    assert_int_equal(jac_sparse_coo(plan, JAC_INDEX_INT64, s->r, s->c), JAC_OK);
    for (int64_t t = 0; t < s->rows * s->cols; t++)
        s->slot[t] = -1;
    for (int64_t k = 0; k < s->nnz; k++) {
        assert_true(s->r[k] >= 0 && s->r[k] < s->rows);
        assert_true(s->c[k] >= 0 && s->c[k] < s->cols);
        assert_int_equal(s->slot[s->r[k] * s->cols + s->c[k]], -1);
        s->slot[s->r[k] * s->cols + s->c[k]] = k;
    }
}

static void structure_free(structure *s)
{
    free(s->r);
    free(s->c);
    free(s->slot);
}

static bool close_to(double a, double b, double scale)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b);
    return fabs(a - b) <= 1e-12 * (fabs(a) + fabs(b) + scale);
}

/* Every non-zero of dense (rows x cols) lies in the structure (in the lower
 * triangle, for one), and values equal dense there. */
static void assert_matches_dense(const char *label, const char *what,
                                 const structure *s, const double *values,
                                 const double *dense, jac_triangle tri)
{
    double scale = 0.0;
    for (int64_t t = 0; t < s->rows * s->cols; t++)
        if (isfinite(dense[t]) && fabs(dense[t]) > scale)
            scale = fabs(dense[t]);
    for (int64_t i = 0; i < s->rows; i++)
        for (int64_t j = 0; j < s->cols; j++) {
            if ((tri == JAC_TRIANGLE_LOWER && j > i) ||
                (tri == JAC_TRIANGLE_UPPER && j < i))
                continue;
            double d = dense[i * s->cols + j];
            int64_t k = s->slot[i * s->cols + j];
            if (k < 0 && d != 0.0) {
                print_error("%s: %s entry (%lld, %lld) = %.17g is not in the "
                            "pattern\n",
                            label, what, (long long)i, (long long)j, d);
                fail();
            }
            if (k >= 0 && !close_to(values[k], d, scale)) {
                print_error("%s: %s entry (%lld, %lld): sparse %.17g, dense "
                            "%.17g\n",
                            label, what, (long long)i, (long long)j, values[k],
                            d);
                fail();
            }
        }
}

/* Every row: recorded at point 0; at points 1 to 3 the sparse Jacobian and
 * the sparse Hessian of <w, y> hold the dense ones. */
static void test_rows_patterns_hold(void **state)
{
    (void)state;
    for (size_t ri = 0; ri < TU_COUNT(op_rows_table); ri++) {
        const op_row *r = &op_rows_table[ri];
        jac_ctx *ctx = jac_ctx_new();
        assert_non_null(ctx);
        op_rows_shape s[4];
        op_rows_shapes(r, s);
        jac_tensor *in[4];
        double vals[4][64];
        int64_t n = 0;
        for (int k = 0; k < r->nin; k++) {
            point_values(r, k, 0, s[k].numel, vals[k]);
            in[k] = jac_tensor_new(ctx, s[k].ndim, s[k].shape, vals[k]);
            n += s[k].numel;
        }
        jac_program *prog = NULL;
        if (jac_program_record(ctx, op_rows_run, (void *)r, (size_t)r->nin, in,
                               0, NULL, 1, 0, &prog) != JAC_OK) {
            print_error("%s: record: %s\n", r->label, jac_errmsg(ctx));
            fail();
        }
        int64_t m;
        assert_true(jac_program_shape(prog, 'o', 0, NULL, &m) >= 0);
        jac_sparse *jp = NULL, *hp = NULL;
        if (jac_sparse_jacobian_plan(prog, NULL, &jp) != JAC_OK ||
            jac_sparse_hessian_plan(prog, NULL, &hp) != JAC_OK) {
            print_error("%s: plan: %s\n", r->label, jac_program_errmsg());
            fail();
        }
        structure sj, sh;
        structure_of(jp, &sj);
        structure_of(hp, &sh);
        assert_int_equal(sj.rows, m);
        assert_int_equal(sj.cols, n);
        assert_int_equal(sh.rows, n);
        double *J = malloc((size_t)(m * n) * sizeof(double) + 8);
        double *H = malloc((size_t)(n * n) * sizeof(double) + 8);
        double *jv = malloc((size_t)sj.nnz * sizeof(double) + 8);
        double *hv = malloc((size_t)sh.nnz * sizeof(double) + 8);
        double *w = malloc((size_t)m * sizeof(double) + 8);
        for (int64_t i = 0; i < m; i++)
            w[i] = 0.75 + 0.5 * sin(2.1 * (double)i + 0.4);
        for (int point = 1; point <= 3; point++) {
            const double *args[4];
            double *Jk[4], *Hk[16];
            int64_t at = 0;
            for (int k = 0; k < r->nin; k++) {
                point_values(r, k, point, s[k].numel, vals[k]);
                args[k] = vals[k];
            }
            /* The dense Jacobian in blocks (output, input k), then as one
             * m x n matrix. */
            double *blk = malloc((size_t)(m * n) * sizeof(double) + 8);
            for (int k = 0; k < r->nin; k++) {
                Jk[k] = blk + m * at;
                at += s[k].numel;
            }
            tu_assert_ok(NULL, jac_program_jacobian(prog, args, NULL, Jk));
            for (int64_t i = 0; i < m; i++)
                for (int k = 0, c0 = 0; k < r->nin; c0 += (int)s[k++].numel)
                    for (int64_t c = 0; c < s[k].numel; c++)
                        J[i * n + c0 + c] = Jk[k][i * s[k].numel + c];
            double *hblk = malloc((size_t)(n * n) * sizeof(double) + 8);
            at = 0;
            for (int a = 0; a < r->nin; a++)
                for (int b = 0; b < r->nin; b++) {
                    Hk[a * r->nin + b] = hblk + at;
                    at += s[a].numel * s[b].numel;
                }
            const double *wk[1] = {w};
            tu_assert_ok(NULL, jac_program_hessian(prog, args, wk, Hk));
            for (int a = 0, r0 = 0; a < r->nin; r0 += (int)s[a++].numel)
                for (int b = 0, c0 = 0; b < r->nin; c0 += (int)s[b++].numel)
                    for (int64_t i = 0; i < s[a].numel; i++)
                        for (int64_t j = 0; j < s[b].numel; j++)
                            H[(r0 + i) * n + c0 + j] =
                                Hk[a * r->nin + b][i * s[b].numel + j];
            free(blk);
            free(hblk);
            tu_assert_ok(NULL, jac_sparse_jacobian(jp, args, jv, NULL));
            assert_matches_dense(r->label, "Jacobian", &sj, jv, J,
                                 JAC_TRIANGLE_FULL);
            tu_assert_ok(NULL, jac_sparse_hessian(hp, args, wk, hv));
            assert_matches_dense(r->label, "Hessian", &sh, hv, H,
                                 JAC_TRIANGLE_FULL);
        }
        structure_free(&sj);
        structure_free(&sh);
        free(J);
        free(H);
        free(jv);
        free(hv);
        free(w);
        jac_sparse_free(jp);
        jac_sparse_free(hp);
        jac_program_free(prog);
        jac_ctx_free(ctx);
    }
}

/* ------------------------------------------------------------------------ */
/* The benchmark problems: exact patterns, minimal colours                  */
/* ------------------------------------------------------------------------ */

static jac_tensor *grid_slice(jac_ctx *ctx, jac_tensor *p, int64_t r0,
                              int64_t r1, int64_t c0, int64_t c1)
{
    return jac_slice(ctx, jac_slice(ctx, p, 0, r0, r1, 1), 1, c0, c1, 1);
}

/* P6: F = (4u - neighbours) / h^2 - lambda exp(u) on an N x N grid. */
static jac_status bratu(jac_ctx *ctx, jac_tensor *const *in, jac_tensor **out,
                        void *user)
{
    int64_t N = *(const int64_t *)user;
    double h = 1.0 / (double)(N + 1);
    jac_tensor *u = in[0];
    jac_tensor *p =
        jac_pad(ctx, u, (const int64_t[]){1, 1}, (const int64_t[]){1, 1});
    jac_tensor *f = jac_mul_scalar(ctx, u, 4.0);
    f = jac_sub(ctx, f, grid_slice(ctx, p, 0, N, 1, N + 1));
    f = jac_sub(ctx, f, grid_slice(ctx, p, 2, N + 2, 1, N + 1));
    f = jac_sub(ctx, f, grid_slice(ctx, p, 1, N + 1, 0, N));
    f = jac_sub(ctx, f, grid_slice(ctx, p, 1, N + 1, 2, N + 2));
    out[0] = jac_sub(ctx, jac_div_scalar(ctx, f, h * h),
                     jac_mul_scalar(ctx, jac_exp(ctx, u), 6.0));
    return out[0] ? JAC_OK : jac_errcode(ctx);
}

/* P7: the energy whose gradient is P6's F. */
static jac_status energy(jac_ctx *ctx, jac_tensor *const *in, jac_tensor **out,
                         void *user)
{
    int64_t N = *(const int64_t *)user;
    double h = 1.0 / (double)(N + 1);
    jac_tensor *u = in[0];
    jac_tensor *p =
        jac_pad(ctx, u, (const int64_t[]){1, 1}, (const int64_t[]){1, 1});
    jac_tensor *dx = jac_sub(ctx, grid_slice(ctx, p, 1, N + 2, 1, N + 1),
                             grid_slice(ctx, p, 0, N + 1, 1, N + 1));
    jac_tensor *dy = jac_sub(ctx, grid_slice(ctx, p, 1, N + 1, 1, N + 2),
                             grid_slice(ctx, p, 1, N + 1, 0, N + 1));
    jac_tensor *e = jac_add(ctx, jac_sum(ctx, jac_square(ctx, dx)),
                            jac_sum(ctx, jac_square(ctx, dy)));
    e = jac_div_scalar(ctx, e, 2.0 * h * h);
    out[0] = jac_sub(ctx, e,
                     jac_mul_scalar(ctx, jac_sum(ctx, jac_exp(ctx, u)), 6.0));
    return out[0] ? JAC_OK : jac_errcode(ctx);
}

/* P7: Rosenbrock, sum 100 (x[i+1] - x[i]^2)^2 + (1 - x[i])^2. */
static jac_status rosenbrock(jac_ctx *ctx, jac_tensor *const *in,
                             jac_tensor **out, void *user)
{
    int64_t n = *(const int64_t *)user;
    jac_tensor *a = jac_slice(ctx, in[0], 0, 0, n - 1, 1);
    jac_tensor *b = jac_slice(ctx, in[0], 0, 1, n, 1);
    jac_tensor *t = jac_sub(ctx, b, jac_square(ctx, a));
    jac_tensor *f = jac_add(ctx, jac_mul_scalar(ctx, jac_square(ctx, t), 100.0),
                            jac_square(ctx, jac_rsub_scalar(ctx, 1.0, a)));
    out[0] = jac_sum(ctx, f);
    return out[0] ? JAC_OK : jac_errcode(ctx);
}

static jac_program *record_grid(jac_ctx *ctx, jac_fn fn, int64_t *N, int ndim,
                                double *u)
{
    int64_t n = ndim == 2 ? *N * *N : *N;
    for (int64_t k = 0; k < n; k++)
        u[k] = ndim == 2 ? 0.1 * sin(0.3 * (double)k + 0.7)
                         : 0.5 * sin(0.3 * (double)k + 0.7);
    int64_t shape[2] = {*N, *N};
    jac_tensor *x = jac_tensor_new(ctx, ndim, ndim == 2 ? shape : N, u);
    jac_program *prog = NULL;
    tu_assert_ok(ctx,
                 jac_program_record(ctx, fn, N, 1, &x, 0, NULL, 1, 0, &prog));
    return prog;
}

/* The closed-form value of P6's J (= P7 energy's Hessian) at (k, l). */
static double bratu_entry(int64_t N, const double *u, int64_t k, int64_t l)
{
    double h2 = 1.0 / ((double)(N + 1) * (double)(N + 1));
    if (k == l)
        return 4.0 / h2 - 6.0 * exp(u[k]);
    return -1.0 / h2;
}

static void test_bratu_exact(void **state)
{
    (void)state;
    int64_t N = 12, n = N * N;
    jac_ctx *ctx = jac_ctx_new();
    double *u = malloc((size_t)n * sizeof(double));
    jac_program *f = record_grid(ctx, bratu, &N, 2, u);
    jac_program *e = record_grid(ctx, energy, &N, 2, u);
    jac_sparse *jp, *hp;
    tu_assert_ok(NULL, jac_sparse_jacobian_plan(f, NULL, &jp));
    tu_assert_ok(NULL, jac_sparse_hessian_plan(e, NULL, &hp));
    assert_int_equal(jac_sparse_nnz(jp), 5 * n - 4 * N);
    assert_int_equal(jac_sparse_nnz(hp), 5 * n - 4 * N);
    assert_int_equal(jac_sparse_colors(jp), 5);
    assert_int_equal(jac_sparse_colors(hp), 5);
    double *jv = malloc((size_t)(5 * n) * sizeof(double));
    double *hv = malloc((size_t)(5 * n) * sizeof(double));
    int64_t *r = malloc((size_t)(5 * n) * sizeof(int64_t));
    int64_t *c = malloc((size_t)(5 * n) * sizeof(int64_t));
    const double *args[1] = {u};
    tu_assert_ok(NULL, jac_sparse_jacobian(jp, args, jv, NULL));
    tu_assert_ok(NULL, jac_sparse_hessian(hp, args, NULL, hv));
    tu_assert_ok(NULL, jac_sparse_coo(jp, JAC_INDEX_INT64, r, c));
    for (int64_t k = 0; k < jac_sparse_nnz(jp); k++) {
        int64_t di = r[k] / N - c[k] / N, dj = r[k] % N - c[k] % N;
        assert_true(labs((long)di) + labs((long)dj) <= 1);
        double want = bratu_entry(N, u, r[k], c[k]);
        assert_true(fabs(jv[k] - want) <= 1e-12 * fabs(want));
        assert_true(fabs(hv[k] - want) <= 1e-9 * fabs(want));
    }
    jac_sparse_free(jp);
    jac_sparse_free(hp);
    jac_program_free(f);
    jac_program_free(e);
    free(u);
    free(jv);
    free(hv);
    free(r);
    free(c);
    jac_ctx_free(ctx);
}

static void test_rosenbrock_exact(void **state)
{
    (void)state;
    int64_t n = 512;
    jac_ctx *ctx = jac_ctx_new();
    double *x = malloc((size_t)n * sizeof(double));
    jac_program *f = record_grid(ctx, rosenbrock, &n, 1, x);
    jac_sparse_opts o = {.triangle = JAC_TRIANGLE_LOWER};
    jac_sparse *hp;
    tu_assert_ok(NULL, jac_sparse_hessian_plan(f, &o, &hp));
    assert_int_equal(jac_sparse_nnz(hp), 2 * n - 1);
    assert_int_equal(jac_sparse_colors(hp), 3);
    double *v = malloc((size_t)(2 * n) * sizeof(double));
    int64_t *r = malloc((size_t)(2 * n) * sizeof(int64_t));
    int64_t *c = malloc((size_t)(2 * n) * sizeof(int64_t));
    const double *args[1] = {x};
    tu_assert_ok(NULL, jac_sparse_hessian(hp, args, NULL, v));
    tu_assert_ok(NULL, jac_sparse_coo(hp, JAC_INDEX_INT64, r, c));
    for (int64_t k = 0; k < 2 * n - 1; k++) {
        int64_t i = r[k], j = c[k];
        double want;
        if (i == j)
            want = i == n - 1 ? 200.0
                              : 1200.0 * x[i] * x[i] - 400.0 * x[i + 1] + 2.0 +
                                    (i >= 1 ? 200.0 : 0.0);
        else
            want = -400.0 * x[j];
        assert_true(i - j == 0 || i - j == 1);
        assert_true(fabs(v[k] - want) <= 1e-12 * (fabs(want) + 1.0));
    }
    jac_sparse_free(hp);
    jac_program_free(f);
    free(x);
    free(v);
    free(r);
    free(c);
    jac_ctx_free(ctx);
}

/* ------------------------------------------------------------------------ */
/* Methods, triangles and exports agree                                     */
/* ------------------------------------------------------------------------ */

/* An arrow: y_0 = sum(x), y_i = x_i * x_0 + x_i^3 (one dense row, one
 * dense column), and a scalar with a dense row and column in its Hessian. */
static jac_status arrow(jac_ctx *ctx, jac_tensor *const *in, jac_tensor **out,
                        void *user)
{
    int64_t n = *(const int64_t *)user;
    jac_tensor *x = in[0];
    jac_tensor *x0 = jac_slice(ctx, x, 0, 0, 1, 1);
    jac_tensor *rest = jac_slice(ctx, x, 0, 1, n, 1);
    jac_tensor *y =
        jac_add(ctx, jac_mul(ctx, rest, x0), jac_pow_scalar(ctx, rest, 3.0));
    out[0] = jac_concat(
        ctx, 2,
        (jac_tensor *const[]){
            jac_reshape(ctx, jac_sum(ctx, x), 1, (const int64_t[]){1}), y},
        0);
    return out[0] ? JAC_OK : jac_errcode(ctx);
}

static jac_status arrow_sum(jac_ctx *ctx, jac_tensor *const *in,
                            jac_tensor **out, void *user)
{
    jac_tensor *y;
    jac_status st = arrow(ctx, in, &y, user);
    out[0] = st == JAC_OK
                 ? jac_add(ctx, jac_sum(ctx, y),
                           jac_sum(ctx, jac_pow_scalar(ctx, in[0], 4.0)))
                 : NULL;
    return out[0] ? JAC_OK : jac_errcode(ctx);
}

/* Values of a plan as a dense matrix (a triangle mirrored). */
static void to_dense(const jac_sparse *plan, const double *v, double *D)
{
    structure s;
    structure_of(plan, &s);
    memset(D, 0, (size_t)(s.rows * s.cols) * sizeof(double));
    for (int64_t k = 0; k < s.nnz; k++) {
        D[s.r[k] * s.cols + s.c[k]] = v[k];
        D[s.c[k] * s.cols + s.r[k]] =
            s.rows == s.cols && D[s.c[k] * s.cols + s.r[k]] == 0.0
                ? v[k]
                : D[s.c[k] * s.cols + s.r[k]];
    }
    structure_free(&s);
}

static void test_methods_agree(void **state)
{
    (void)state;
    int64_t n = 9;
    jac_ctx *ctx = jac_ctx_new();
    double x[9];
    for (int64_t i = 0; i < n; i++)
        x[i] = 0.3 + 0.1 * (double)i;
    jac_tensor *t = jac_tensor_new(ctx, 1, &n, x);
    jac_program *f = NULL, *g = NULL;
    tu_assert_ok(ctx,
                 jac_program_record(ctx, arrow, &n, 1, &t, 0, NULL, 1, 0, &f));
    tu_assert_ok(
        ctx, jac_program_record(ctx, arrow_sum, &n, 1, &t, 0, NULL, 1, 0, &g));
    const double *args[1] = {x};
    double ref[81], D[81], v[81];
    double *Jk[1] = {ref};
    tu_assert_ok(NULL, jac_program_jacobian(f, args, NULL, Jk));
    jac_sparse_method jm[3] = {JAC_SPARSE_AUTO, JAC_SPARSE_FORWARD,
                               JAC_SPARSE_REVERSE};
    for (int m = 0; m < 3; m++)
        for (int bycol = 0; bycol < 2; bycol++)
            for (int order = 0; order <= JAC_ORDER_INCIDENCE_DEGREE; order++) {
                jac_sparse_opts o = {.method = jm[m],
                                     .order = (jac_color_order)order,
                                     .by_columns = bycol != 0};
                jac_sparse *p;
                tu_assert_ok(NULL, jac_sparse_jacobian_plan(f, &o, &p));
                assert_int_equal(jac_sparse_nnz(p), 3 * n - 2);
                if (jm[m] != JAC_SPARSE_AUTO)
                    assert_int_equal(jac_sparse_method_used(p), jm[m]);
                double y[9];
                double *outs[1] = {y};
                tu_assert_ok(NULL, jac_sparse_jacobian(p, args, v, outs));
                assert_true(fabs(y[0] - 6.3) < 1e-12);
                structure s;
                structure_of(p, &s);
                memset(D, 0, sizeof D);
                for (int64_t k = 0; k < s.nnz; k++)
                    D[s.r[k] * n + s.c[k]] = v[k];
                for (int64_t k = 0; k < n * n; k++)
                    assert_true(fabs(D[k] - ref[k]) <=
                                1e-12 * (1 + fabs(ref[k])));
                structure_free(&s);
                jac_sparse_free(p);
            }
    double *Hk[1] = {ref};
    tu_assert_ok(NULL, jac_program_hessian(g, args, NULL, Hk));
    jac_sparse_method hm[3] = {JAC_SPARSE_AUTO, JAC_SPARSE_STAR,
                               JAC_SPARSE_ACYCLIC};
    for (int m = 0; m < 3; m++)
        for (int tri = 0; tri <= JAC_TRIANGLE_UPPER; tri++)
            for (int bycol = 0; bycol < 2; bycol++) {
                jac_sparse_opts o = {.method = hm[m],
                                     .triangle = (jac_triangle)tri,
                                     .by_columns = bycol != 0};
                jac_sparse *p;
                tu_assert_ok(NULL, jac_sparse_hessian_plan(g, &o, &p));
                assert_int_equal(jac_sparse_nnz(p), tri == JAC_TRIANGLE_FULL
                                                        ? 3 * n - 2
                                                        : 2 * n - 1);
                tu_assert_ok(NULL, jac_sparse_hessian(p, args, NULL, v));
                to_dense(p, v, D);
                for (int64_t k = 0; k < n * n; k++)
                    assert_true(fabs(D[k] - ref[k]) <=
                                1e-10 * (1 + fabs(ref[k])));
                jac_sparse_free(p);
            }
    jac_program_free(f);
    jac_program_free(g);
    jac_ctx_free(ctx);
}

/* CSR (and CSC for by_columns) in every index flavour describe the same
 * entries as the coordinates. */
static void test_exports(void **state)
{
    (void)state;
    int64_t n = 9;
    jac_ctx *ctx = jac_ctx_new();
    double x[9] = {0};
    jac_tensor *t = jac_tensor_new(ctx, 1, &n, x);
    jac_program *f = NULL;
    tu_assert_ok(ctx,
                 jac_program_record(ctx, arrow, &n, 1, &t, 0, NULL, 1, 0, &f));
    for (int bycol = 0; bycol < 2; bycol++) {
        jac_sparse_opts o = {.by_columns = bycol != 0};
        jac_sparse *p;
        tu_assert_ok(NULL, jac_sparse_jacobian_plan(f, &o, &p));
        int64_t nnz = jac_sparse_nnz(p), r[32], c[32];
        tu_assert_ok(NULL, jac_sparse_coo(p, JAC_INDEX_INT64, r, c));
        for (unsigned flags = 0; flags < 4; flags++) {
            int64_t p64[32], i64[32], cr[32], cc[32];
            int32_t p32[32], i32[32];
            bool wide = flags & JAC_INDEX_INT64;
            int64_t base = (flags & JAC_INDEX_ONE_BASED) ? 1 : 0;
            tu_assert_ok(
                NULL, jac_sparse_csr(p, flags, wide ? (void *)p64 : (void *)p32,
                                     wide ? (void *)i64 : (void *)i32));
            tu_assert_ok(NULL, jac_sparse_coo(p, flags,
                                              wide ? (void *)cr : (void *)p32,
                                              wide ? (void *)cc : (void *)i32));
            if (!wide)
                for (int64_t k = 0; k < nnz; k++) {
                    cr[k] = p32[k];
                    cc[k] = i32[k];
                }
            for (int64_t k = 0; k < nnz; k++) {
                assert_int_equal(cr[k], r[k] + base);
                assert_int_equal(cc[k], c[k] + base);
            }
            tu_assert_ok(
                NULL, jac_sparse_csr(p, flags, wide ? (void *)p64 : (void *)p32,
                                     wide ? (void *)i64 : (void *)i32));
            for (int64_t maj = 0, k = 0; maj < n; maj++) {
                int64_t lo = wide ? p64[maj] : p32[maj];
                int64_t hi = wide ? p64[maj + 1] : p32[maj + 1];
                assert_int_equal(lo - base, k);
                for (; k < hi - base; k++) {
                    int64_t minor = wide ? i64[k] : i32[k];
                    assert_int_equal(bycol ? c[k] : r[k], maj);
                    assert_int_equal(minor - base, bycol ? r[k] : c[k]);
                }
            }
        }
        jac_sparse_free(p);
    }
    jac_program_free(f);
    jac_ctx_free(ctx);
}

/* ------------------------------------------------------------------------ */
/* Plans reused                                                             */
/* ------------------------------------------------------------------------ */

/* A plan of a dynamic recording serves a new recording of the same code at
 * another point, and agrees with the program's plan there; a recording of
 * other code is refused. */
static void test_tape_plans(void **state)
{
    (void)state;
    int64_t N = 6, n = N * N;
    jac_ctx *ctx = jac_ctx_new();
    double u[36], v1[180], v2[180];
    jac_program *f = record_grid(ctx, bratu, &N, 2, u);
    jac_sparse *pp, *tp = NULL, *hp = NULL;
    tu_assert_ok(NULL, jac_sparse_jacobian_plan(f, NULL, &pp));
    int64_t nnz = jac_sparse_nnz(pp), shape[2] = {N, N};
    for (int point = 0; point < 3; point++) {
        for (int64_t k = 0; k < n; k++)
            u[k] = 0.2 * cos(0.7 * (double)k + (double)point);
        jac_scope mark = jac_scope_begin(ctx);
        jac_tensor *x = jac_tensor_new(ctx, 2, shape, u), *y = NULL;
        jac_set_requires_grad(x, true);
        tu_assert_ok(ctx, bratu(ctx, &x, &y, &N));
        tu_assert_ok(
            ctx, jac_sparse_jacobian_tape(ctx, 1, &y, 1, &x, NULL, &tp, v1));
        assert_int_equal(jac_sparse_nnz(tp), nnz);
        const double *args[1] = {u};
        tu_assert_ok(NULL, jac_sparse_jacobian(pp, args, v2, NULL));
        for (int64_t k = 0; k < nnz; k++)
            assert_true(v1[k] == v2[k]);
        /* The energy's Hessian through the tape, against the Jacobian. */
        jac_tensor *e = NULL;
        tu_assert_ok(ctx, energy(ctx, &x, &e, &N));
        tu_assert_ok(ctx,
                     jac_sparse_hessian_tape(ctx, e, 1, &x, NULL, &hp, v1));
        for (int64_t k = 0; k < nnz; k++)
            assert_true(fabs(v1[k] - v2[k]) <= 1e-9 * fabs(v2[k]));
        jac_scope_end(ctx, mark, NULL, 0);
    }
    /* A plan alone (values NULL) sizes the values of the calls after it;
     * values NULL with a plan made is refused. */
    jac_sparse *alone = NULL;
    jac_tensor *x0 = jac_tensor_new(ctx, 2, shape, u), *y0 = NULL;
    jac_set_requires_grad(x0, true);
    tu_assert_ok(ctx, bratu(ctx, &x0, &y0, &N));
    tu_assert_ok(
        ctx, jac_sparse_jacobian_tape(ctx, 1, &y0, 1, &x0, NULL, &alone, NULL));
    assert_int_equal(jac_sparse_nnz(alone), nnz);
    assert_int_equal(
        jac_sparse_jacobian_tape(ctx, 1, &y0, 1, &x0, NULL, &alone, NULL),
        JAC_ERR_NULL_ARG);
    jac_clear_error(ctx);
    jac_sparse_free(alone);
    /* Other code on the same shapes: refused, the plan left as it was. */
    jac_tensor *x = jac_tensor_new(ctx, 2, shape, u);
    jac_set_requires_grad(x, true);
    jac_tensor *y = jac_exp(ctx, x);
    assert_int_equal(jac_sparse_jacobian_tape(ctx, 1, &y, 1, &x, NULL, &tp, v1),
                     JAC_ERR_STATE);
    assert_non_null(strstr(jac_errmsg(ctx), "not the one the plan was made"));
    jac_clear_error(ctx);
    /* A program's plan is not a tape plan. */
    assert_int_equal(jac_sparse_jacobian_tape(ctx, 1, &y, 1, &x, NULL, &pp, v1),
                     JAC_ERR_VALUE);
    jac_clear_error(ctx);
    jac_sparse_free(tp);
    jac_sparse_free(hp);
    jac_sparse_free(pp);
    jac_program_free(f);
    jac_ctx_free(ctx);
}

/* A branch counts both sides; a plan made at one side serves the other. */
static jac_status branch(jac_ctx *ctx, jac_tensor *const *in, jac_tensor **out,
                         void *user)
{
    (void)user;
    jac_tensor *a = jac_slice(ctx, in[0], 0, 0, 2, 1);
    jac_tensor *b = jac_slice(ctx, in[0], 0, 2, 4, 1);
    out[0] =
        jac_where(ctx, jac_gt(ctx, a, b), jac_sin(ctx, a), jac_mul(ctx, b, b));
    return out[0] ? JAC_OK : jac_errcode(ctx);
}

static void test_branch_both_sides(void **state)
{
    (void)state;
    jac_ctx *ctx = jac_ctx_new();
    int64_t n = 4;
    double x[4] = {1.0, 1.0, 0.0, 0.0};
    jac_tensor *t = jac_tensor_new(ctx, 1, &n, x);
    jac_program *f = NULL;
    tu_assert_ok(
        ctx, jac_program_record(ctx, branch, NULL, 1, &t, 0, NULL, 1, 0, &f));
    jac_sparse *p, *h;
    tu_assert_ok(NULL, jac_sparse_jacobian_plan(f, NULL, &p));
    assert_int_equal(jac_sparse_nnz(p), 4);
    jac_sparse_opts lower = {.triangle = JAC_TRIANGLE_LOWER};
    tu_assert_ok(NULL, jac_sparse_hessian_plan(f, &lower, &h));
    assert_int_equal(jac_sparse_nnz(h), 4);
    double v[4], w[2] = {1.0, 1.0};
    const double *ws[1] = {w};
    double y[4] = {0.0, 0.0, 2.0, 3.0}; /* the other side */
    const double *args[1] = {y};
    tu_assert_ok(NULL, jac_sparse_jacobian(p, args, v, NULL));
    int64_t r[4], c[4];
    tu_assert_ok(NULL, jac_sparse_coo(p, JAC_INDEX_INT64, r, c));
    for (int k = 0; k < 4; k++)
        assert_true(c[k] < 2 ? v[k] == 0.0 : v[k] == 2.0 * y[c[k]]);
    tu_assert_ok(NULL, jac_sparse_hessian(h, args, ws, v));
    tu_assert_ok(NULL, jac_sparse_coo(h, JAC_INDEX_INT64, r, c));
    for (int k = 0; k < 4; k++)
        assert_true(r[k] < 2 ? v[k] == 0.0 : v[k] == 2.0);
    jac_sparse_free(p);
    jac_sparse_free(h);
    jac_program_free(f);
    jac_ctx_free(ctx);
}

/* Calls that cannot work fail by name and leave values alone. */
static void test_refusals(void **state)
{
    (void)state;
    jac_ctx *ctx = jac_ctx_new();
    int64_t n = 4;
    double x[4] = {1.0, 2.0, 3.0, 4.0}, v[16] = {7.0};
    jac_tensor *t = jac_tensor_new(ctx, 1, &n, x);
    jac_program *f = NULL;
    tu_assert_ok(
        ctx, jac_program_record(ctx, branch, NULL, 1, &t, 0, NULL, 1, 0, &f));
    jac_sparse *p = NULL;
    jac_sparse_opts bad = {.method = JAC_SPARSE_STAR};
    assert_int_equal(jac_sparse_jacobian_plan(f, &bad, &p), JAC_ERR_VALUE);
    assert_null(p);
    assert_non_null(strstr(jac_program_errmsg(), "sparse_jacobian_plan"));
    jac_sparse_opts tri = {.triangle = JAC_TRIANGLE_LOWER};
    assert_int_equal(jac_sparse_jacobian_plan(f, &tri, &p), JAC_ERR_VALUE);
    jac_sparse_opts fwd = {.method = JAC_SPARSE_FORWARD};
    assert_int_equal(jac_sparse_hessian_plan(f, &fwd, &p), JAC_ERR_VALUE);
    tu_assert_ok(NULL, jac_sparse_jacobian_plan(f, NULL, &p));
    const double *args[1] = {x};
    /* A Jacobian's plan asked for a Hessian, and one output without
     * weights. */
    assert_int_equal(jac_sparse_hessian(p, args, NULL, v), JAC_ERR_VALUE);
    assert_true(v[0] == 7.0);
    jac_sparse *h = NULL;
    tu_assert_ok(NULL, jac_sparse_hessian_plan(f, NULL, &h));
    assert_int_equal(jac_sparse_hessian(h, args, NULL, v), JAC_ERR_NO_SEED);
    assert_int_equal(jac_sparse_jacobian(h, args, v, NULL), JAC_ERR_VALUE);
    assert_int_equal(jac_sparse_csr(p, 8u, v, v), JAC_ERR_VALUE);
    assert_true(v[0] == 7.0);
    jac_sparse_free(p);
    jac_sparse_free(h);
    jac_program_free(f);
    jac_ctx_free(ctx);
}

/* ------------------------------------------------------------------------ */
/* The dense drivers                                                        */
/* ------------------------------------------------------------------------ */

static jac_status rosenbrock_fn(jac_ctx *ctx, jac_tensor *const *in,
                                jac_tensor **out, void *user)
{
    return rosenbrock(ctx, in, out, user);
}

/* j is the dense Jacobian of bratu on N x N at u (whose centre is NaN
 * and whose element 3 is infinite): exact zeros outside the stencil,
 * the closed form inside. */
static void assert_bratu_jacobian(int64_t N, const double *u, const double *j)
{
    int64_t n = N * N;
    for (int64_t r = 0; r < n; r++)
        for (int64_t c = 0; c < n; c++) {
            int64_t d =
                labs((long)(r / N - c / N)) + labs((long)(r % N - c % N));
            double v = j[r * n + c];
            double h2 = (double)((N + 1) * (N + 1));
            if (d > 1)
                assert_true(v == 0.0 && !signbit(v));
            else if (c == 24 || c == 3)
                continue; /* 0 times NaN may reach it, as in any sweep */
            else if (r != c)
                assert_true(fabs(v + h2) <= 1e-12 * h2);
            else if (r == 24)
                assert_true(isnan(v));
            else if (r == 3)
                assert_true(isinf(v));
            else
                assert_true(fabs(v - bratu_entry(N, u, r, c)) <=
                            1e-12 * fabs(v));
        }
}

/* jac_jacobian of a stencil and jac_hessian of Rosenbrock take the sparse
 * path: entries outside the pattern are exactly zero even where the
 * input holds NaN or infinity, and the rest are the closed forms. */
static void test_dense_drivers_use_patterns(void **state)
{
    (void)state;
    int64_t N = 7, n = N * N, shape[2] = {N, N};
    jac_ctx *ctx = jac_ctx_new();
    double u[49];
    for (int64_t k = 0; k < n; k++)
        u[k] = 0.1 * sin(0.3 * (double)k + 0.7);
    u[24] = NAN; /* the centre */
    u[3] = INFINITY;
    jac_tensor *x = jac_tensor_new(ctx, 2, shape, u), *y = NULL;
    jac_set_requires_grad(x, true);
    tu_assert_ok(ctx, bratu(ctx, &x, &y, &N));
    jac_tensor *J = jac_jacobian(ctx, y, x, 0);
    assert_non_null(J);
    assert_bratu_jacobian(N, u, jac_tensor_data(J));
    /* A Hessian: tridiagonal, symmetric, the closed form. */
    int64_t m = 40;
    double xv[40];
    for (int64_t i = 0; i < m; i++)
        xv[i] = 0.5 * sin(0.3 * (double)i + 0.7);
    jac_tensor *xt = jac_tensor_new(ctx, 1, &m, xv);
    jac_tensor *H = jac_hessian(ctx, rosenbrock_fn, &m, xt, NULL);
    assert_non_null(H);
    const double *h = jac_tensor_data(H);
    for (int64_t i = 0; i < m; i++)
        for (int64_t k = 0; k < m; k++) {
            double v = h[i * m + k], want = 0.0;
            if (i == k)
                want = i == m - 1 ? 200.0
                                  : 1200.0 * xv[i] * xv[i] - 400.0 * xv[i + 1] +
                                        2.0 + (i >= 1 ? 200.0 : 0.0);
            else if (labs((long)(i - k)) == 1)
                want = -400.0 * xv[i < k ? i : k];
            assert_true(v == h[k * m + i]);
            assert_true(fabs(v - want) <= 1e-12 * (fabs(want) + 1.0));
        }
    jac_ctx_free(ctx);
}

/* y = tanh(A x) at x: the dense driver's Jacobian, and the row loop's. */
static void tanh_of_product(jac_ctx *ctx, const double *a, const double *xv,
                            int64_t n, jac_tensor **J, jac_tensor **R)
{
    int64_t shape[2] = {n, n};
    jac_tensor *A = jac_tensor_new(ctx, 2, shape, a);
    jac_tensor *x = jac_tensor_new(ctx, 1, &n, xv);
    jac_set_requires_grad(x, true);
    jac_tensor *y = jac_tanh(ctx, jac_matmul(ctx, A, x));
    *J = jac_jacobian(ctx, y, x, 0);
    jac_jacobian_opts rows = {.chunk = 1};
    tu_assert_ok(ctx, jac_jacobian_ex(ctx, 1, &y, 1, &x, &rows, R));
    assert_non_null(*J);
}

/* The dense drivers keep the last recording's plan: a recording of the
 * same code at new values reuses it; the same ops on a constant matrix of
 * another pattern (which a stale plan would get wrong), or other code,
 * make a new one; a pattern too dense to pay is kept as that verdict.
 * Each result equals the row loop's. */
static void test_dense_drivers_keep_plan(void **state)
{
    (void)state;
    enum { n = 6 };
    double diag[n * n] = {0}, full[n * n], xv[n];
    for (int64_t i = 0; i < n; i++)
        diag[i * n + i] = 1.0 + 0.1 * (double)i;
    for (int64_t t = 0; t < n * n; t++)
        full[t] = 0.2 * cos(0.7 * (double)t + 0.1);
    jac_ctx *ctx = jac_ctx_new();
    const double *mats[] = {diag, diag, full, full, diag};
    size_t kept = 0;
    for (int round = 0; round < 5; round++) {
        for (int64_t i = 0; i < n; i++)
            xv[i] = 0.3 * sin((double)(round * n + i));
        jac_scope mark = jac_scope_begin(ctx);
        jac_tensor *J = NULL, *R = NULL;
        tanh_of_product(ctx, mats[round], xv, n, &J, &R);
        const double *j = jac_tensor_data(J), *r = jac_tensor_data(R);
        for (int64_t t = 0; t < n * n; t++) {
            assert_true(close_to(j[t], r[t], 1.0));
            if (mats[round] == diag && t / n != t % n)
                assert_true(j[t] == 0.0);
            if (mats[round] == full)
                assert_true(j[t] != 0.0);
        }
        jac_scope_end(ctx, mark, NULL, 0);
        /* The same code again keeps the memory it had. */
        if (round == 1 || round == 3)
            assert_int_equal(jac_ctx_memory(ctx), kept);
        kept = jac_ctx_memory(ctx);
    }
    jac_ctx_free(ctx);
}

typedef struct program_call {
    jac_program *prog;
    const double *u;
    double *J;
    jac_status status;
} program_call;

static void *program_jacobian_call(void *arg)
{
    program_call *c = arg;
    const double *args[1] = {c->u};
    double *J[1] = {c->J};
    for (int round = 0; round < 4 && c->status == JAC_OK; round++)
        c->status = jac_program_jacobian(c->prog, args, NULL, J);
    return NULL;
}

/* jac_program_jacobian takes the colours of a sparse pattern: exact zeros
 * outside it at NaN and infinite points, the closed form inside; the plan
 * made at the first call serves the next ones, and calls from several
 * threads at once (one holds the plan, the others run the block engine)
 * give the same bits. A dense program's Jacobian is unchanged. */
static void test_program_jacobian_uses_pattern(void **state)
{
    (void)state;
    int64_t N = 7, n = N * N;
    jac_ctx *ctx = jac_ctx_new();
    double u[49];
    jac_program *f = record_grid(ctx, bratu, &N, 2, u);
    u[24] = NAN;
    u[3] = INFINITY;
    double *J = malloc((size_t)(4 * n * n) * sizeof(double));
    double *out = malloc((size_t)n * sizeof(double));
    const double *args[1] = {u};
    size_t before = 0;
    for (int round = 0; round < 2; round++) {
        double *Jp[1] = {J}, *outs[1] = {out};
        tu_assert_ok(NULL, jac_program_jacobian(f, args, outs, Jp));
        assert_bratu_jacobian(N, u, J);
        assert_true(isnan(out[24]));
        size_t bytes = 0;
        (void)jac_program_length(f, &bytes);
        if (round == 1)
            assert_int_equal(bytes, before); /* the plan of the first call */
        before = bytes;
    }
    /* Threads on the program whose plan is made, then on a new recording
     * of it, whose plan the first call makes while the others wait: the
     * same bits as one call alone. */
    double u2[49];
    jac_program *f2 = record_grid(ctx, bratu, &N, 2, u2);
    for (int round = 0; round < 2; round++) {
        program_call calls[3];
        pthread_t threads[3];
        for (int t = 0; t < 3; t++) {
            calls[t] = (program_call){.prog = round == 0 ? f : f2,
                                      .u = u,
                                      .J = J + (size_t)((t + 1) * n * n)};
            assert_int_equal(pthread_create(&threads[t], NULL,
                                            program_jacobian_call, &calls[t]),
                             0);
        }
        for (int t = 0; t < 3; t++) {
            assert_int_equal(pthread_join(threads[t], NULL), 0);
            tu_assert_ok(NULL, calls[t].status);
            assert_memory_equal(calls[t].J, J,
                                (size_t)(n * n) * sizeof(double));
        }
    }
    jac_program_free(f2);
    /* A dense Jacobian (every output reads every input): the engine's. */
    enum { m = 5 };
    double a[m * m], xv[m], Jd[m * m], Jr[m * m];
    for (int t = 0; t < m * m; t++)
        a[t] = 0.3 * cos((double)t);
    for (int i = 0; i < m; i++)
        xv[i] = 0.1 * (double)i;
    int64_t ms = m, shape[2] = {m, m};
    jac_tensor *A = jac_tensor_new(ctx, 2, shape, a);
    jac_tensor *x = jac_tensor_new(ctx, 1, &ms, xv);
    jac_program *g = NULL;
    tu_assert_ok(ctx, jac_program_begin(ctx, 1, &x, 1, &A));
    jac_tensor *y = jac_tanh(ctx, jac_matmul(ctx, A, x));
    tu_assert_ok(ctx, jac_program_end(ctx, 1, &y, 0, &g));
    const double *gargs[2] = {xv, a};
    double *Jdp[1] = {Jd};
    tu_assert_ok(NULL, jac_program_jacobian(g, gargs, NULL, Jdp));
    jac_jacobian_opts rows = {.chunk = 1};
    jac_tensor *R = NULL;
    jac_set_requires_grad(x, true);
    tu_assert_ok(ctx, jac_jacobian_ex(ctx, 1, &y, 1, &x, &rows, &R));
    memcpy(Jr, jac_tensor_data(R), sizeof Jr);
    for (int t = 0; t < m * m; t++)
        assert_true(close_to(Jd[t], Jr[t], 1.0) && Jd[t] != 0.0);
    jac_program_free(g);
    jac_program_free(f);
    free(J);
    free(out);
    jac_ctx_free(ctx);
}

static int count_progress(int64_t done, int64_t total, void *user)
{
    assert_true(done >= 1 && done <= total);
    (*(int *)user)++;
    return 0;
}

/* An empty Jacobian through the sparse path reports no progress (there
 * is no row to report), a sparse one reports all its rows once. */
static void test_dense_progress(void **state)
{
    (void)state;
    jac_ctx *ctx = jac_ctx_new();
    jac_tensor *x = jac_ones(ctx, 1, (const int64_t[]){4});
    jac_set_requires_grad(x, true);
    jac_tensor *empty = jac_slice(ctx, jac_exp(ctx, x), 0, 2, 2, 1);
    jac_tensor *y = jac_exp(ctx, x);
    int calls = 0;
    jac_jacobian_opts o = {.progress = count_progress, .progress_user = &calls};
    jac_tensor *J = NULL;
    tu_assert_ok(ctx, jac_jacobian_ex(ctx, 1, &empty, 1, &x, &o, &J));
    assert_int_equal(jac_tensor_numel(J), 0);
    assert_int_equal(calls, 0);
    tu_assert_ok(ctx, jac_jacobian_ex(ctx, 1, &y, 1, &x, &o, &J));
    assert_int_equal(calls, 1);
    jac_ctx_free(ctx);
}

/* Colours shared among threads give the same bits as one thread, and a
 * plan serves calls from several threads in turn. */
static void test_threads_agree(void **state)
{
    (void)state;
    int64_t N = 100, n = N * N;
    jac_ctx *ctx = jac_ctx_new();
    double *u = malloc((size_t)n * sizeof(double));
    jac_program *f = record_grid(ctx, bratu, &N, 2, u);
    jac_program *e = record_grid(ctx, energy, &N, 2, u);
    int64_t nnz = 5 * n - 4 * N;
    double *v[2][2];
    for (int threads = 1; threads <= 2; threads++) {
        tu_assert_ok(NULL, jac_program_set_threads(f, threads));
        tu_assert_ok(NULL, jac_program_set_threads(e, threads));
        jac_sparse *jp, *hp;
        tu_assert_ok(NULL, jac_sparse_jacobian_plan(f, NULL, &jp));
        tu_assert_ok(NULL, jac_sparse_hessian_plan(e, NULL, &hp));
        const double *args[1] = {u};
        for (int k = 0; k < 2; k++)
            v[threads - 1][k] = malloc((size_t)nnz * sizeof(double));
        tu_assert_ok(NULL,
                     jac_sparse_jacobian(jp, args, v[threads - 1][0], NULL));
        tu_assert_ok(NULL,
                     jac_sparse_hessian(hp, args, NULL, v[threads - 1][1]));
        jac_sparse_free(jp);
        jac_sparse_free(hp);
    }
    for (int k = 0; k < 2; k++) {
        assert_memory_equal(v[0][k], v[1][k], (size_t)nnz * sizeof(double));
        free(v[0][k]);
        free(v[1][k]);
    }
    jac_program_free(f);
    jac_program_free(e);
    free(u);
    jac_ctx_free(ctx);
}

typedef struct counter {
    long calls;
} counter;

static void *count_alloc(size_t size, void *user)
{
    ((counter *)user)->calls++;
    return malloc(size);
}

static void count_free(void *p, void *user)
{
    (void)user;
    free(p);
}

/* Once a plan has run, its evaluations allocate nothing, whatever the
 * method: forward and reverse Jacobians, star and acyclic Hessians. */
static void test_no_allocation_when_warm(void **state)
{
    (void)state;
    counter c = {0};
    jac_allocator a = {count_alloc, count_free, &c};
    jac_ctx *ctx = jac_ctx_new_with_allocator(&a);
    int64_t N = 10;
    double u[100];
    jac_program *f = record_grid(ctx, bratu, &N, 2, u);
    jac_program *e = record_grid(ctx, energy, &N, 2, u);
    jac_sparse_opts o[4] = {
        {.method = JAC_SPARSE_REVERSE},
        {.method = JAC_SPARSE_FORWARD},
        {.method = JAC_SPARSE_STAR},
        {.method = JAC_SPARSE_ACYCLIC, .triangle = JAC_TRIANGLE_LOWER}};
    jac_sparse *plans[4];
    for (int m = 0; m < 4; m++)
        tu_assert_ok(NULL, m < 2
                               ? jac_sparse_jacobian_plan(f, &o[m], &plans[m])
                               : jac_sparse_hessian_plan(e, &o[m], &plans[m]));
    double v[500], F[100];
    const double *args[1] = {u};
    double *outs[1] = {F};
    for (int round = 0; round < 3; round++) {
        long before = c.calls;
        for (int m = 0; m < 4; m++)
            tu_assert_ok(NULL,
                         m < 2 ? jac_sparse_jacobian(plans[m], args, v, outs)
                               : jac_sparse_hessian(plans[m], args, NULL, v));
        if (round > 0 && c.calls != before) {
            print_error("round %d: %ld allocations\n", round, c.calls - before);
            fail();
        }
        u[7] += 0.01;
    }
    for (int m = 0; m < 4; m++)
        jac_sparse_free(plans[m]);
    jac_program_free(f);
    jac_program_free(e);
    jac_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows_patterns_hold),
        cmocka_unit_test(test_bratu_exact),
        cmocka_unit_test(test_rosenbrock_exact),
        cmocka_unit_test(test_methods_agree),
        cmocka_unit_test(test_exports),
        cmocka_unit_test(test_tape_plans),
        cmocka_unit_test(test_branch_both_sides),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_dense_drivers_use_patterns),
        cmocka_unit_test(test_dense_drivers_keep_plan),
        cmocka_unit_test(test_program_jacobian_uses_pattern),
        cmocka_unit_test(test_threads_agree),
        cmocka_unit_test(test_dense_progress),
        cmocka_unit_test(test_no_allocation_when_warm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
