/*
 * The GSL adapter (jacobian_gsl.h): F, its Jacobian and the second
 * directional derivative fvv against hand-written ones at several points,
 * vectors and matrices of GSL with strides (views), sizes that do not
 * match the program (GSL_EBADFUNC, a status and NaN, never a number), and
 * two problems solved through GSL: the 2-D Bratu problem by
 * gsl_multiroot_fdfsolver_hybridsj and an exponential fit by
 * gsl_multifit_nlinear with geodesic acceleration.
 *
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"

#include <gsl/gsl_errno.h>
#include <jacobian_gsl.h>

enum { N = 3, M = 4 };

/* ------------------------------------------------------------------------ */
/* A small map of R^3 to R^4, recorded and by hand                          */
/* ------------------------------------------------------------------------ */

/* F(x; p) = (p x0^2 x1, sin(x1) x2, exp(x0 x2), x0 + x1^3), p one element. */
static jac_program *record_map(jac_ctx *ctx)
{
    jac_tensor *x = jac_zeros(ctx, 1, TU_SHAPE(N));
    jac_tensor *p = jac_zeros(ctx, 1, TU_SHAPE(1));
    tu_assert_ok(ctx, jac_program_begin(ctx, 1, &x, 1, &p));
    jac_tensor *x0 = jac_slice(ctx, x, 0, 0, 1, 1);
    jac_tensor *x1 = jac_slice(ctx, x, 0, 1, 2, 1);
    jac_tensor *x2 = jac_slice(ctx, x, 0, 2, 3, 1);
    jac_tensor *parts[M] = {
        jac_mul(ctx, p, jac_mul(ctx, jac_square(ctx, x0), x1)),
        jac_mul(ctx, jac_sin(ctx, x1), x2),
        jac_exp(ctx, jac_mul(ctx, x0, x2)),
        jac_add(ctx, x0, jac_pow_scalar(ctx, x1, 3.0)),
    };
    jac_tensor *f = jac_concat(ctx, M, parts, 0);
    jac_program *program = NULL;
    tu_assert_ok(ctx, jac_program_end(ctx, 1, &f, 0, &program));
    return program;
}

static void map_hand(const double *x, double p, double *f, double *J)
{
    double e = exp(x[0] * x[2]);
    f[0] = p * x[0] * x[0] * x[1];
    f[1] = sin(x[1]) * x[2];
    f[2] = e;
    f[3] = x[0] + x[1] * x[1] * x[1];
    const double rows[M][N] = {
        {2.0 * p * x[0] * x[1], p * x[0] * x[0], 0.0},
        {0.0, cos(x[1]) * x[2], sin(x[1])},
        {x[2] * e, 0.0, x[0] * e},
        {1.0, 3.0 * x[1] * x[1], 0.0},
    };
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++)
            J[i * N + j] = rows[i][j];
}

/* fvv_k = v^T (Hess f_k) v. */
static void map_fvv_hand(const double *x, const double *v, double p,
                         double *fvv)
{
    double e = exp(x[0] * x[2]);
    fvv[0] = 2.0 * p * x[1] * v[0] * v[0] + 4.0 * p * x[0] * v[0] * v[1];
    fvv[1] = -sin(x[1]) * x[2] * v[1] * v[1] + 2.0 * cos(x[1]) * v[1] * v[2];
    fvv[2] = e * (x[2] * x[2] * v[0] * v[0] + x[0] * x[0] * v[2] * v[2] +
                  2.0 * (1.0 + x[0] * x[2]) * v[0] * v[2]);
    fvv[3] = 6.0 * x[1] * v[1] * v[1];
}

static const double points[3][N] = {
    {0.5, -1.0, 2.0}, {0.0, 0.0, 0.0}, {-1.3, 0.7, 0.4}};
static const double directions[3][N] = {
    {1.0, 2.0, -0.5}, {0.3, -1.0, 2.0}, {-0.7, 0.1, 1.1}};

/* ------------------------------------------------------------------------ */
/* Tests                                                                    */
/* ------------------------------------------------------------------------ */

static void test_values_match_hand(void **state)
{
    jac_program *program = record_map(*state);
    double p = 2.5;
    const double *params[1] = {&p};
    jac_gsl s = {.program = program, .params = params};
    gsl_vector *x = gsl_vector_alloc(N), *v = gsl_vector_alloc(N);
    gsl_vector *f = gsl_vector_alloc(M), *f2 = gsl_vector_alloc(M);
    gsl_vector *fvv = gsl_vector_alloc(M);
    gsl_matrix *J = gsl_matrix_alloc(M, N), *J2 = gsl_matrix_alloc(M, N);
    for (int k = 0; k < 3; k++) {
        p = k == 1 ? -0.75 : 2.5; /* the parameter is read per call */
        for (int j = 0; j < N; j++) {
            gsl_vector_set(x, (size_t)j, points[k][j]);
            gsl_vector_set(v, (size_t)j, directions[k][j]);
        }
        double want_f[M], want_J[M * N], want_fvv[M];
        map_hand(points[k], p, want_f, want_J);
        map_fvv_hand(points[k], directions[k], p, want_fvv);
        assert_int_equal(jac_gsl_multiroot_f(x, &s, f), GSL_SUCCESS);
        tu_assert_close(f->data, want_f, M, 1e-15, 1e-14);
        assert_int_equal(jac_gsl_multiroot_df(x, &s, J), GSL_SUCCESS);
        tu_assert_close(J->data, want_J, M * N, 1e-14, 1e-13);
        assert_int_equal(jac_gsl_multiroot_fdf(x, &s, f2, J2), GSL_SUCCESS);
        tu_assert_close(f2->data, want_f, M, 1e-15, 1e-14);
        tu_assert_close(J2->data, want_J, M * N, 1e-14, 1e-13);
        assert_int_equal(jac_gsl_nlinear_f(x, &s, f), GSL_SUCCESS);
        tu_assert_close(f->data, want_f, M, 1e-15, 1e-14);
        assert_int_equal(jac_gsl_nlinear_df(x, &s, J), GSL_SUCCESS);
        tu_assert_close(J->data, want_J, M * N, 1e-14, 1e-13);
        assert_int_equal(jac_gsl_nlinear_fvv(x, v, &s, fvv), GSL_SUCCESS);
        tu_assert_close(fvv->data, want_fvv, M, 1e-13, 1e-13);
    }
    assert_int_equal(s.status, JAC_OK);
    assert_string_equal(s.message, "");
    assert_int_equal(s.evaluations, 9);
    assert_int_equal(s.jacobians, 9);
    assert_int_equal(s.fvvs, 3);
    jac_gsl_release(&s);
    assert_null(s.work);
    jac_gsl_release(&s); /* twice is fine */
    gsl_vector_free(x);
    gsl_vector_free(v);
    gsl_vector_free(f);
    gsl_vector_free(f2);
    gsl_vector_free(fvv);
    gsl_matrix_free(J);
    gsl_matrix_free(J2);
    jac_program_free(program);
}

/* Views with strides: every second element of a vector, a submatrix whose
 * tda is wider than its rows. Elements outside the views stay as they
 * were. */
static void test_strided_views(void **state)
{
    jac_program *program = record_map(*state);
    double p = 1.5;
    const double *params[1] = {&p};
    jac_gsl s = {.program = program, .params = params};
    double xs[2 * N], vs[3 * N], fs[2 * M], fvvs[3 * M], Js[M * 5];
    for (int k = 0; k < 3; k++) {
        for (size_t i = 0; i < TU_COUNT(fs); i++)
            fs[i] = -7.0;
        for (size_t i = 0; i < TU_COUNT(fvvs); i++)
            fvvs[i] = -7.0;
        for (size_t i = 0; i < TU_COUNT(Js); i++)
            Js[i] = -7.0;
        for (int j = 0; j < N; j++) {
            xs[2 * j] = points[k][j];
            xs[2 * j + 1] = 99.0;
            vs[3 * j] = directions[k][j];
            vs[3 * j + 1] = vs[3 * j + 2] = -99.0;
        }
        gsl_vector_view x = gsl_vector_view_array_with_stride(xs, 2, N);
        gsl_vector_view v = gsl_vector_view_array_with_stride(vs, 3, N);
        gsl_vector_view f = gsl_vector_view_array_with_stride(fs, 2, M);
        gsl_vector_view fvv = gsl_vector_view_array_with_stride(fvvs, 3, M);
        gsl_matrix_view J = gsl_matrix_view_array_with_tda(Js, M, N, 5);
        assert_int_equal(
            jac_gsl_multiroot_fdf(&x.vector, &s, &f.vector, &J.matrix),
            GSL_SUCCESS);
        assert_int_equal(
            jac_gsl_nlinear_fvv(&x.vector, &v.vector, &s, &fvv.vector),
            GSL_SUCCESS);
        double want_f[M], want_J[M * N], want_fvv[M];
        map_hand(points[k], p, want_f, want_J);
        map_fvv_hand(points[k], directions[k], p, want_fvv);
        for (int i = 0; i < M; i++) {
            tu_assert_close(&fs[2 * i], &want_f[i], 1, 1e-15, 1e-14);
            assert_true(fs[2 * i + 1] == -7.0);
            tu_assert_close(&fvvs[3 * i], &want_fvv[i], 1, 1e-13, 1e-13);
            assert_true(fvvs[3 * i + 1] == -7.0 && fvvs[3 * i + 2] == -7.0);
            tu_assert_close(&Js[5 * i], &want_J[i * N], N, 1e-14, 1e-13);
            assert_true(Js[5 * i + 3] == -7.0 && Js[5 * i + 4] == -7.0);
        }
    }
    assert_int_equal(s.status, JAC_OK);
    jac_gsl_release(&s);
    jac_program_free(program);
}

static int all_nan(const gsl_vector *v)
{
    for (size_t i = 0; i < v->size; i++)
        if (!isnan(gsl_vector_get(v, i)))
            return 0;
    return 1;
}

static void test_mismatches_are_errors(void **state)
{
    jac_program *program = record_map(*state);
    double p = 1.0;
    const double *params[1] = {&p};
    gsl_vector *x = gsl_vector_calloc(N), *x4 = gsl_vector_calloc(N + 1);
    gsl_vector *f = gsl_vector_calloc(M), *f3 = gsl_vector_calloc(M - 1);
    gsl_matrix *J = gsl_matrix_calloc(M, N), *Jt = gsl_matrix_calloc(N, M);

    /* x of the wrong size. */
    jac_gsl s = {.program = program, .params = params};
    assert_int_equal(jac_gsl_multiroot_f(x4, &s, f), GSL_EBADFUNC);
    assert_int_equal(s.status, JAC_ERR_SHAPE);
    assert_non_null(strstr(s.message, "jac_gsl_multiroot_f"));
    assert_true(all_nan(f));
    /* The first failure is kept. */
    assert_int_equal(jac_gsl_multiroot_f(x, &s, f), GSL_SUCCESS);
    assert_int_equal(s.status, JAC_ERR_SHAPE);

    /* f of the wrong size, J transposed, v of the wrong size. */
    jac_gsl s2 = {.program = program, .params = params};
    assert_int_equal(jac_gsl_nlinear_f(x, &s2, f3), GSL_EBADFUNC);
    assert_int_equal(s2.status, JAC_ERR_SHAPE);
    assert_true(all_nan(f3));
    jac_gsl s3 = {.program = program, .params = params};
    assert_int_equal(jac_gsl_multiroot_fdf(x, &s3, f, Jt), GSL_EBADFUNC);
    assert_int_equal(s3.status, JAC_ERR_SHAPE);
    assert_true(all_nan(f) && isnan(gsl_matrix_get(Jt, 0, 0)));
    jac_gsl s4 = {.program = program, .params = params};
    assert_int_equal(jac_gsl_nlinear_fvv(x, x4, &s4, f), GSL_EBADFUNC);
    assert_int_equal(s4.status, JAC_ERR_SHAPE);
    assert_true(all_nan(f));

    /* Missing parameters, no program. */
    jac_gsl s5 = {.program = program};
    assert_int_equal(jac_gsl_nlinear_df(x, &s5, J), GSL_EBADFUNC);
    assert_int_equal(s5.status, JAC_ERR_NULL_ARG);
    assert_true(isnan(gsl_matrix_get(J, M - 1, N - 1)));
    jac_gsl s6 = {0};
    assert_int_equal(jac_gsl_multiroot_df(x, &s6, J), GSL_EBADFUNC);
    assert_int_equal(s6.status, JAC_ERR_NULL_ARG);
    assert_int_equal(jac_gsl_multiroot_f(x, NULL, f), GSL_EBADFUNC);

    /* The init helpers take the sizes from the program (0 without). */
    gsl_multiroot_function_fdf rf;
    jac_gsl_multiroot_fdf_init(&rf, &s6);
    assert_int_equal(rf.n, 0);
    gsl_multifit_nlinear_fdf nf;
    jac_gsl_nlinear_fdf_init(&nf, &s2);
    assert_int_equal(nf.n, M);
    assert_int_equal(nf.p, N);
    assert_ptr_equal(nf.fvv, jac_gsl_nlinear_fvv);

    /* A root solver on a map of 3 to 4 elements fails, with a status. */
    gsl_multiroot_fdfsolver *solver =
        gsl_multiroot_fdfsolver_alloc(gsl_multiroot_fdfsolver_hybridsj, N);
    gsl_multiroot_function_fdf bad = {.f = jac_gsl_multiroot_f,
                                      .df = jac_gsl_multiroot_df,
                                      .fdf = jac_gsl_multiroot_fdf,
                                      .n = N,
                                      .params = &s5};
    s5.status = JAC_OK;
    s5.params = params;
    /* GSL 2.7's hybridsj ignores the status of the first evaluation (in
     * _set), which then leaves NaN; the first iteration fails. */
    gsl_error_handler_t *old = gsl_set_error_handler_off();
    (void)gsl_multiroot_fdfsolver_set(solver, &bad, x);
    assert_int_equal(s5.status, JAC_ERR_SHAPE);
    assert_true(all_nan(solver->f));
    assert_int_not_equal(gsl_multiroot_fdfsolver_iterate(solver), GSL_SUCCESS);
    gsl_set_error_handler(old);
    assert_int_equal(s5.status, JAC_ERR_SHAPE);
    gsl_multiroot_fdfsolver_free(solver);

    jac_gsl_release(&s);
    jac_gsl_release(&s2);
    jac_gsl_release(&s3);
    jac_gsl_release(&s4);
    jac_gsl_release(&s5);
    gsl_vector_free(x);
    gsl_vector_free(x4);
    gsl_vector_free(f);
    gsl_vector_free(f3);
    gsl_matrix_free(J);
    gsl_matrix_free(Jt);
    jac_program_free(program);
}

/* ------------------------------------------------------------------------ */
/* Two problems solved through GSL                                          */
/* ------------------------------------------------------------------------ */

enum { GRID = 6 };

/* The 2-D Bratu residual on a GRID x GRID grid, lambda a parameter. */
static jac_program *record_bratu(jac_ctx *ctx)
{
    const int64_t G = GRID;
    double h = 1.0 / (double)(G + 1);
    jac_tensor *u = jac_zeros(ctx, 2, TU_SHAPE(G, G));
    jac_tensor *lambda = jac_zeros(ctx, 1, TU_SHAPE(1));
    tu_assert_ok(ctx, jac_program_begin(ctx, 1, &u, 1, &lambda));
    jac_tensor *pad = jac_pad(ctx, u, TU_SHAPE(1, 1), TU_SHAPE(1, 1));
    static const int64_t corners[4][2] = {{0, 1}, {2, 1}, {1, 0}, {1, 2}};
    jac_tensor *f = jac_mul_scalar(ctx, u, 4.0);
    for (int k = 0; k < 4; k++) {
        int64_t r = corners[k][0], c = corners[k][1];
        f = jac_sub(ctx, f,
                    jac_slice(ctx, jac_slice(ctx, pad, 0, r, r + G, 1), 1, c,
                              c + G, 1));
    }
    f = jac_sub(ctx, jac_mul_scalar(ctx, f, 1.0 / (h * h)),
                jac_mul(ctx, lambda, jac_exp(ctx, u)));
    jac_program *program = NULL;
    tu_assert_ok(ctx, jac_program_end(ctx, 1, &f, 0, &program));
    return program;
}

static void test_bratu_converges(void **state)
{
    jac_program *program = record_bratu(*state);
    const double lambda = 6.0;
    const double *params[1] = {&lambda};
    jac_gsl s = {.program = program, .params = params};
    gsl_multiroot_function_fdf fdf;
    jac_gsl_multiroot_fdf_init(&fdf, &s);
    assert_int_equal(fdf.n, GRID * GRID);
    gsl_vector *u = gsl_vector_calloc(fdf.n);
    gsl_multiroot_fdfsolver *solver =
        gsl_multiroot_fdfsolver_alloc(gsl_multiroot_fdfsolver_hybridsj, fdf.n);
    assert_int_equal(gsl_multiroot_fdfsolver_set(solver, &fdf, u), GSL_SUCCESS);
    int status = GSL_CONTINUE, iterations = 0;
    while (status == GSL_CONTINUE && iterations < 50) {
        iterations++;
        if (gsl_multiroot_fdfsolver_iterate(solver) != GSL_SUCCESS)
            break;
        status = gsl_multiroot_test_residual(solver->f, 1e-10);
    }
    assert_int_equal(status, GSL_SUCCESS);
    assert_int_equal(s.status, JAC_OK);
    assert_true(s.jacobians >= 1);
    /* Symmetric: u[i,j] = u[j,i]; positive inside. */
    const gsl_vector *root = gsl_multiroot_fdfsolver_root(solver);
    for (int i = 0; i < GRID; i++)
        for (int j = 0; j < GRID; j++) {
            double a = gsl_vector_get(root, (size_t)(i * GRID + j));
            double b = gsl_vector_get(root, (size_t)(j * GRID + i));
            assert_true(a > 0.0);
            assert_true(fabs(a - b) < 1e-9);
        }
    gsl_multiroot_fdfsolver_free(solver);
    gsl_vector_free(u);
    jac_gsl_release(&s);
    jac_program_free(program);
}

enum { POINTS = 40 };

/* r_i(A, lambda, b; t, y) = A exp(-lambda t_i) + b - y_i. */
static jac_program *record_expfit(jac_ctx *ctx)
{
    jac_tensor *x = jac_zeros(ctx, 1, TU_SHAPE(3));
    jac_tensor *data[2] = {jac_zeros(ctx, 1, TU_SHAPE(POINTS)),
                           jac_zeros(ctx, 1, TU_SHAPE(POINTS))};
    tu_assert_ok(ctx, jac_program_begin(ctx, 1, &x, 2, data));
    jac_tensor *A = jac_slice(ctx, x, 0, 0, 1, 1);
    jac_tensor *lambda = jac_slice(ctx, x, 0, 1, 2, 1);
    jac_tensor *b = jac_slice(ctx, x, 0, 2, 3, 1);
    jac_tensor *model = jac_add(
        ctx,
        jac_mul(ctx, A,
                jac_exp(ctx, jac_neg(ctx, jac_mul(ctx, lambda, data[0])))),
        b);
    jac_tensor *r = jac_sub(ctx, model, data[1]);
    jac_program *program = NULL;
    tu_assert_ok(ctx, jac_program_end(ctx, 1, &r, 0, &program));
    return program;
}

static void test_expfit_converges(void **state)
{
    jac_program *program = record_expfit(*state);
    double t[POINTS], y[POINTS];
    for (int i = 0; i < POINTS; i++) {
        t[i] = (double)i;
        /* A deterministic pseudo-noise of amplitude 0.01. */
        y[i] = 5.0 * exp(-0.1 * t[i]) + 1.0 + 0.01 * sin(1.7 * t[i] + 0.3);
    }
    const double *params[2] = {t, y};
    jac_gsl s = {.program = program, .params = params};
    gsl_multifit_nlinear_fdf fdf;
    jac_gsl_nlinear_fdf_init(&fdf, &s);
    assert_int_equal(fdf.n, POINTS);
    assert_int_equal(fdf.p, 3);
    gsl_multifit_nlinear_parameters fit =
        gsl_multifit_nlinear_default_parameters();
    fit.trs = gsl_multifit_nlinear_trs_lmaccel;
    gsl_multifit_nlinear_workspace *work = gsl_multifit_nlinear_alloc(
        gsl_multifit_nlinear_trust, &fit, fdf.n, fdf.p);
    double start[3] = {1.0, 1.0, 0.0};
    gsl_vector_view x0 = gsl_vector_view_array(start, 3);
    assert_int_equal(gsl_multifit_nlinear_init(&x0.vector, &fdf, work),
                     GSL_SUCCESS);
    int info = 0;
    int status = gsl_multifit_nlinear_driver(100, 1e-10, 1e-10, 0.0, NULL, NULL,
                                             &info, work);
    assert_int_equal(status, GSL_SUCCESS);
    assert_int_equal(s.status, JAC_OK);
    assert_true(s.fvvs > 0);
    const gsl_vector *x = gsl_multifit_nlinear_position(work);
    tu_assert_close(x->data, TU_VALUES(5.0, 0.1, 1.0), 3, 0.02, 0.0);
    gsl_multifit_nlinear_free(work);
    jac_gsl_release(&s);
    jac_program_free(program);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_values_match_hand),     TU_TEST(test_strided_views),
        TU_TEST(test_mismatches_are_errors), TU_TEST(test_bratu_converges),
        TU_TEST(test_expfit_converges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
