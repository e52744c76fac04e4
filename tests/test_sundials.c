/*
 * The SUNDIALS adapter (jacobian_sundials.h): CVODE's right-hand side,
 * IDA's residual and KINSOL's system, their Jacobians into dense, band
 * (bandwidths exact and wider) and sparse (CSR and CSC) matrices and their
 * Jacobian-times-vector products, against hand-written derivatives and
 * finite differences; a band too narrow for the pattern, a sparse matrix
 * too small for it, sizes and programs that do not match (-1, a status
 * and NaN, never a number), every allocation of the adapter failed in
 * turn, and an IDA solve of a problem with a known solution.
 *
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"

#include <jacobian_sundials.h>

#include <ida/ida.h>
#include <nvector/nvector_serial.h>
#include <sundials/sundials_context.h>
#include <sunlinsol/sunlinsol_dense.h>
#include <sunmatrix/sunmatrix_band.h>
#include <sunmatrix/sunmatrix_dense.h>
#include <sunmatrix/sunmatrix_sparse.h>

#include <string.h>

enum { N = 6 };

/* ------------------------------------------------------------------------ */
/* A chain of N states, recorded three ways and written by hand             */
/* ------------------------------------------------------------------------ */

/* y shifted by one: (0, y_0 .. y_{n-2}) (down) or (y_1 .. y_{n-1}, 0). */
static jac_tensor *shift(jac_ctx *ctx, jac_tensor *y, int down)
{
    jac_tensor *part = down ? jac_slice(ctx, y, 0, 0, N - 1, 1)
                            : jac_slice(ctx, y, 0, 1, N, 1);
    return jac_pad(ctx, part, TU_SHAPE(down ? 1 : 0), TU_SHAPE(down ? 0 : 1));
}

/* f_i(t, y; p) = t y_i^2 + p (y_{i-1} - 2 y_i + y_{i+1}) + y_i y_{i+1},
 * with y_{-1} = y_N = 0: tridiagonal. */
static jac_tensor *chain(jac_ctx *ctx, jac_tensor *t, jac_tensor *y,
                         jac_tensor *p)
{
    jac_tensor *prev = shift(ctx, y, 1), *next = shift(ctx, y, 0);
    jac_tensor *lap =
        jac_add(ctx, jac_sub(ctx, prev, jac_mul_scalar(ctx, y, 2.0)), next);
    jac_tensor *f = jac_mul(ctx, t, jac_square(ctx, y));
    f = jac_add(ctx, f, jac_mul(ctx, p, lap));
    return jac_add(ctx, f, jac_mul(ctx, y, next));
}

static void chain_hand(double t, const double *y, double p, double *f,
                       double *J /* row-major N x N, or NULL */)
{
    for (int i = 0; i < N; i++) {
        double prev = i > 0 ? y[i - 1] : 0.0, next = i < N - 1 ? y[i + 1] : 0.0;
        if (f != NULL)
            f[i] =
                t * y[i] * y[i] + p * (prev - 2.0 * y[i] + next) + y[i] * next;
        if (J == NULL)
            continue;
        for (int j = 0; j < N; j++)
            J[i * N + j] = 0.0;
        J[i * N + i] = 2.0 * t * y[i] - 2.0 * p + next;
        if (i > 0)
            J[i * N + i - 1] = p;
        if (i < N - 1)
            J[i * N + i + 1] = p + y[i];
    }
}

/* CVODE: input y, parameters t and p. */
static jac_program *record_cvode(jac_ctx *ctx)
{
    jac_tensor *y = jac_zeros(ctx, 1, TU_SHAPE(N));
    jac_tensor *params[2] = {jac_zeros(ctx, 1, TU_SHAPE(1)),
                             jac_zeros(ctx, 1, TU_SHAPE(1))};
    tu_assert_ok(ctx, jac_program_begin(ctx, 1, &y, 2, params));
    jac_tensor *f = chain(ctx, params[0], y, params[1]);
    jac_program *program = NULL;
    tu_assert_ok(ctx, jac_program_end(ctx, 1, &f, 0, &program));
    return program;
}

/* IDA: F(t, y, y'; p) = (1 + y_i^2) y'_i - f_i(t, y; p), inputs y and y',
 * parameters t and p. */
static jac_program *record_ida(jac_ctx *ctx)
{
    jac_tensor *inputs[2] = {jac_zeros(ctx, 1, TU_SHAPE(N)),
                             jac_zeros(ctx, 1, TU_SHAPE(N))};
    jac_tensor *params[2] = {jac_zeros(ctx, 1, TU_SHAPE(1)),
                             jac_zeros(ctx, 1, TU_SHAPE(1))};
    tu_assert_ok(ctx, jac_program_begin(ctx, 2, inputs, 2, params));
    jac_tensor *m = jac_add_scalar(ctx, jac_square(ctx, inputs[0]), 1.0);
    jac_tensor *F = jac_sub(ctx, jac_mul(ctx, m, inputs[1]),
                            chain(ctx, params[0], inputs[0], params[1]));
    jac_program *program = NULL;
    tu_assert_ok(ctx, jac_program_end(ctx, 1, &F, 0, &program));
    return program;
}

static void ida_hand(double t, double cj, const double *y, const double *yp,
                     double p, double *F, double *J)
{
    double f[N];
    chain_hand(t, y, p, f, J);
    for (int i = 0; i < N; i++) {
        F[i] = (1.0 + y[i] * y[i]) * yp[i] - f[i];
        for (int j = 0; j < N; j++)
            J[i * N + j] = -J[i * N + j];
        J[i * N + i] += 2.0 * y[i] * yp[i] + cj * (1.0 + y[i] * y[i]);
    }
}

/* KINSOL: input u, parameter p; F(u; p) = f(t = 0.5, u; p) - 1. */
static jac_program *record_kinsol(jac_ctx *ctx)
{
    jac_tensor *u = jac_zeros(ctx, 1, TU_SHAPE(N));
    jac_tensor *p = jac_zeros(ctx, 1, TU_SHAPE(1));
    tu_assert_ok(ctx, jac_program_begin(ctx, 1, &u, 1, &p));
    jac_tensor *half = jac_full(ctx, 1, TU_SHAPE(1), 0.5);
    jac_tensor *F = jac_sub_scalar(ctx, chain(ctx, half, u, p), 1.0);
    jac_program *program = NULL;
    tu_assert_ok(ctx, jac_program_end(ctx, 1, &F, 0, &program));
    return program;
}

static const double point[N] = {0.3, -1.2, 0.8, 2.0, -0.4, 1.1};
static const double slope[N] = {1.0, 0.5, -2.0, 0.25, 3.0, -0.7};
static const double direction[N] = {0.2, -1.0, 0.6, 1.5, -0.3, 0.9};
static const double P = 0.7, T = 1.3, CJ = 2.5;
static const double *const user_params[1] = {&P};

/* ------------------------------------------------------------------------ */
/* Fixtures, vectors and matrices                                           */
/* ------------------------------------------------------------------------ */

typedef struct fixture {
    jac_ctx *ctx;
    SUNContext sun;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    f->ctx = jac_ctx_new();
    if (f->ctx == NULL || SUNContext_Create(NULL, &f->sun) != 0) {
        jac_ctx_free(f->ctx);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    SUNContext_Free(&f->sun);
    jac_ctx_free(f->ctx);
    free(f);
    return 0;
}

static N_Vector vector_of(SUNContext sun, const double *values, int n)
{
    N_Vector v = N_VNew_Serial(n, sun);
    assert_non_null(v);
    if (values != NULL)
        memcpy(N_VGetArrayPointer(v), values, (size_t)n * sizeof(double));
    else
        N_VConst(0.0, v);
    return v;
}

/* Entry (i, j) of a dense, band or sparse matrix (0 outside its
 * structure). */
static double entry(SUNMatrix A, sunindextype i, sunindextype j)
{
    switch (SUNMatGetID(A)) {
    case SUNMATRIX_DENSE:
        return SM_ELEMENT_D(A, i, j);
    case SUNMATRIX_BAND:
        if (j - i > SM_UBAND_B(A) || i - j > SM_LBAND_B(A))
            return 0.0;
        return SM_ELEMENT_B(A, i, j);
    default: {
        int csr = SM_SPARSETYPE_S(A) == CSR_MAT;
        sunindextype outer = csr ? i : j, inner = csr ? j : i;
        const sunindextype *ptr = SM_INDEXPTRS_S(A), *idx = SM_INDEXVALS_S(A);
        for (sunindextype k = ptr[outer]; k < ptr[outer + 1]; k++)
            if (idx[k] == inner)
                return SM_DATA_S(A)[k];
        return 0.0;
    }
    }
}

static void assert_matrix(SUNMatrix A, const double *want /* row-major */)
{
    double got[N * N];
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            got[i * N + j] = entry(A, i, j);
    tu_assert_close(got, want, N * N, 1e-12, 1e-12);
}

/* The matrices of each kind the adapter fills, N x N. */
enum { KINDS = 6 };
static SUNMatrix matrix_of(SUNContext sun, int kind)
{
    switch (kind) {
    case 0:
        return SUNDenseMatrix(N, N, sun);
    case 1: /* the pattern's own bandwidths */
        return SUNBandMatrix(N, 1, 1, sun);
    case 2: /* wider, with storage for the band solver's fill */
        return SUNBandMatrixStorage(N, 2, 3, 5, sun);
    case 3:
        return SUNSparseMatrix(N, N, 3 * N, CSR_MAT, sun);
    case 4:
        return SUNSparseMatrix(N, N, 3 * N, CSC_MAT, sun);
    default: /* too small: the adapter grows it */
        return SUNSparseMatrix(N, N, 2, CSR_MAT, sun);
    }
}

static int all_nan(const double *x, sunindextype n)
{
    for (sunindextype i = 0; i < n; i++)
        if (!isnan(x[i]))
            return 0;
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Values and derivatives                                                   */
/* ------------------------------------------------------------------------ */

static void test_cvode_matches_hand_in_every_matrix_kind(void **state)
{
    fixture *fx = *state;
    jac_program *program = record_cvode(fx->ctx);
    jac_sundials s = {.program = program, .params = user_params};
    N_Vector y = vector_of(fx->sun, point, N), f = vector_of(fx->sun, NULL, N);
    double want_f[N], want_J[N * N];
    chain_hand(T, point, P, want_f, want_J);
    assert_int_equal(jac_sundials_cvode_rhs(T, y, f, &s), 0);
    tu_assert_close(N_VGetArrayPointer(f), want_f, N, 1e-13, 1e-13);
    for (int kind = 0; kind < KINDS; kind++) {
        SUNMatrix A = matrix_of(fx->sun, kind);
        assert_int_equal(
            jac_sundials_cvode_jac(T, y, f, A, &s, NULL, NULL, NULL), 0);
        assert_matrix(A, want_J);
        /* As the solvers do between calls: zeroed (a sparse matrix's
         * structure too), then refilled at another point. */
        double other[N], want_other[N * N];
        for (int i = 0; i < N; i++)
            other[i] = point[i] + 0.1 * slope[i];
        memcpy(N_VGetArrayPointer(y), other, sizeof other);
        chain_hand(T + 0.5, other, P, NULL, want_other);
        SUNMatZero(A);
        assert_int_equal(
            jac_sundials_cvode_jac(T + 0.5, y, f, A, &s, NULL, NULL, NULL), 0);
        assert_matrix(A, want_other);
        memcpy(N_VGetArrayPointer(y), point, sizeof point);
        if (kind == KINDS - 1)
            assert_true(SM_NNZ_S(A) >= 3 * N - 2);
        SUNMatDestroy(A);
    }
    assert_int_equal(s.status, JAC_OK);
    assert_int_equal(s.jacobians, 2 * KINDS);
    assert_int_equal(jac_sundials_nnz(&s), 3 * N - 2);
    sunindextype mu = -1, ml = -1;
    assert_int_equal(jac_sundials_bandwidths(&s, &mu, &ml), 0);
    assert_int_equal(mu, 1);
    assert_int_equal(ml, 1);
    N_VDestroy(y);
    N_VDestroy(f);
    jac_sundials_release(&s);
    jac_program_free(program);
}

/* The caller's plan options are used (by_columns is not the adapter's
 * concern: the values are right in every matrix whatever it says). */
static void test_plan_options_are_honoured(void **state)
{
    fixture *fx = *state;
    jac_program *program = record_ida(fx->ctx);
    N_Vector y = vector_of(fx->sun, point, N),
             yp = vector_of(fx->sun, slope, N);
    double want_F[N], want_J[N * N];
    ida_hand(T, CJ, point, slope, P, want_F, want_J);
    const jac_sparse_opts options[2] = {
        {.method = JAC_SPARSE_FORWARD, .by_columns = true},
        {.method = JAC_SPARSE_REVERSE, .order = JAC_ORDER_NATURAL}};
    for (int k = 0; k < 2; k++) {
        jac_sundials s = {.program = program,
                          .params = user_params,
                          .sparse_opts = &options[k]};
        for (int kind = 0; kind < KINDS; kind++) {
            SUNMatrix A = matrix_of(fx->sun, kind);
            assert_int_equal(jac_sundials_ida_jac(T, CJ, y, yp, NULL, A, &s,
                                                  NULL, NULL, NULL),
                             0);
            assert_matrix(A, want_J);
            SUNMatDestroy(A);
        }
        assert_int_equal(s.status, JAC_OK);
        jac_sundials_release(&s);
    }
    N_VDestroy(y);
    N_VDestroy(yp);
    jac_program_free(program);
}

/* The hand-written Jacobian itself against central differences of the
 * adapter's right-hand side, so that the two checks do not share an
 * error. */
static void test_cvode_jacobian_matches_finite_differences(void **state)
{
    fixture *fx = *state;
    jac_program *program = record_cvode(fx->ctx);
    jac_sundials s = {.program = program, .params = user_params};
    N_Vector y = vector_of(fx->sun, point, N);
    N_Vector fp = vector_of(fx->sun, NULL, N), fm = vector_of(fx->sun, NULL, N);
    SUNMatrix A = SUNSparseMatrix(N, N, 3 * N, CSC_MAT, fx->sun);
    assert_int_equal(jac_sundials_cvode_jac(T, y, fp, A, &s, NULL, NULL, NULL),
                     0);
    const double h = 1e-6;
    double *yd = N_VGetArrayPointer(y);
    for (int j = 0; j < N; j++) {
        yd[j] = point[j] + h;
        assert_int_equal(jac_sundials_cvode_rhs(T, y, fp, &s), 0);
        yd[j] = point[j] - h;
        assert_int_equal(jac_sundials_cvode_rhs(T, y, fm, &s), 0);
        yd[j] = point[j];
        for (int i = 0; i < N; i++) {
            double fd =
                (N_VGetArrayPointer(fp)[i] - N_VGetArrayPointer(fm)[i]) /
                (2.0 * h);
            assert_true(fabs(fd - entry(A, i, j)) < 1e-7);
        }
    }
    SUNMatDestroy(A);
    N_VDestroy(y);
    N_VDestroy(fp);
    N_VDestroy(fm);
    jac_sundials_release(&s);
    jac_program_free(program);
}

static void test_ida_jacobian_combines_both_blocks(void **state)
{
    fixture *fx = *state;
    jac_program *program = record_ida(fx->ctx);
    jac_sundials s = {.program = program, .params = user_params};
    N_Vector y = vector_of(fx->sun, point, N),
             yp = vector_of(fx->sun, slope, N);
    N_Vector r = vector_of(fx->sun, NULL, N);
    double want_F[N], want_J[N * N];
    ida_hand(T, CJ, point, slope, P, want_F, want_J);
    assert_int_equal(jac_sundials_ida_res(T, y, yp, r, &s), 0);
    tu_assert_close(N_VGetArrayPointer(r), want_F, N, 1e-13, 1e-13);
    for (int kind = 0; kind < KINDS; kind++) {
        SUNMatrix A = matrix_of(fx->sun, kind);
        assert_int_equal(
            jac_sundials_ida_jac(T, CJ, y, yp, r, A, &s, NULL, NULL, NULL), 0);
        assert_matrix(A, want_J);
        SUNMatDestroy(A);
    }
    /* The union of the blocks: the diagonal appears in both. */
    assert_int_equal(jac_sundials_nnz(&s), 3 * N - 2);
    /* JTimes against the dense J v. */
    N_Vector v = vector_of(fx->sun, direction, N);
    N_Vector Jv = vector_of(fx->sun, NULL, N);
    assert_int_equal(
        jac_sundials_ida_jtimes(T, y, yp, r, v, Jv, CJ, &s, NULL, NULL), 0);
    double want_Jv[N] = {0};
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            want_Jv[i] += want_J[i * N + j] * direction[j];
    tu_assert_close(N_VGetArrayPointer(Jv), want_Jv, N, 1e-12, 1e-12);
    assert_int_equal(s.status, JAC_OK);
    N_VDestroy(y);
    N_VDestroy(yp);
    N_VDestroy(r);
    N_VDestroy(v);
    N_VDestroy(Jv);
    jac_sundials_release(&s);
    jac_program_free(program);
}

static void test_jtimes_match_dense_products(void **state)
{
    fixture *fx = *state;
    jac_program *cvode = record_cvode(fx->ctx);
    jac_program *kinsol = record_kinsol(fx->ctx);
    jac_sundials sc = {.program = cvode, .params = user_params};
    jac_sundials sk = {.program = kinsol, .params = user_params};
    N_Vector y = vector_of(fx->sun, point, N),
             v = vector_of(fx->sun, direction, N);
    N_Vector Jv = vector_of(fx->sun, NULL, N), f = vector_of(fx->sun, NULL, N);
    double want_f[N], J[N * N], want_Jv[N];
    for (int pass = 0; pass < 2; pass++) {
        double t = pass == 0 ? T : 0.5;
        chain_hand(t, point, P, want_f, J);
        for (int i = 0; i < N; i++) {
            want_Jv[i] = 0.0;
            for (int j = 0; j < N; j++)
                want_Jv[i] += J[i * N + j] * direction[j];
        }
        if (pass == 0) {
            assert_int_equal(
                jac_sundials_cvode_jtimes(v, Jv, T, y, f, &sc, NULL), 0);
        } else {
            sunbooleantype new_u = SUNTRUE;
            assert_int_equal(jac_sundials_kinsol_jtimes(v, Jv, y, &new_u, &sk),
                             0);
            assert_int_equal(new_u, SUNFALSE);
            assert_int_equal(jac_sundials_kinsol_sys(y, f, &sk), 0);
            for (int i = 0; i < N; i++)
                want_f[i] -= 1.0;
            tu_assert_close(N_VGetArrayPointer(f), want_f, N, 1e-13, 1e-13);
            SUNMatrix A = SUNBandMatrix(N, 1, 1, fx->sun);
            assert_int_equal(jac_sundials_kinsol_jac(y, f, A, &sk, NULL, NULL),
                             0);
            assert_matrix(A, J);
            SUNMatDestroy(A);
        }
        tu_assert_close(N_VGetArrayPointer(Jv), want_Jv, N, 1e-12, 1e-12);
    }
    assert_int_equal(sc.status, JAC_OK);
    assert_int_equal(sk.status, JAC_OK);
    assert_int_equal(sc.jtimes, 1);
    assert_int_equal(sk.jtimes, 1);
    N_VDestroy(y);
    N_VDestroy(v);
    N_VDestroy(Jv);
    N_VDestroy(f);
    jac_sundials_release(&sc);
    jac_sundials_release(&sk);
    jac_program_free(cvode);
    jac_program_free(kinsol);
}

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

static void test_band_too_narrow_is_an_error(void **state)
{
    fixture *fx = *state;
    jac_program *program = record_cvode(fx->ctx);
    jac_sundials s = {.program = program, .params = user_params};
    N_Vector y = vector_of(fx->sun, point, N);
    SUNMatrix A = SUNBandMatrix(N, 0, 1, fx->sun);
    assert_int_equal(
        jac_sundials_cvode_jac(T, y, NULL, A, &s, NULL, NULL, NULL), -1);
    assert_int_equal(s.status, JAC_ERR_SHAPE);
    tu_assert_contains(s.message, "jac_sundials_cvode_jac");
    tu_assert_contains(s.message, "mu = 1, ml = 1");
    tu_assert_contains(s.message, "mu = 0, ml = 1");
    assert_true(all_nan(SM_DATA_B(A), SM_LDATA_B(A)));
    SUNMatDestroy(A);
    N_VDestroy(y);
    jac_sundials_release(&s);
    jac_program_free(program);
}

static void test_mismatches_are_errors(void **state)
{
    fixture *fx = *state;
    jac_program *cvode = record_cvode(fx->ctx);
    jac_program *ida = record_ida(fx->ctx);
    N_Vector y = vector_of(fx->sun, point, N), f = vector_of(fx->sun, NULL, N);
    N_Vector short_y = vector_of(fx->sun, point, N - 1);
    N_Vector long_f = vector_of(fx->sun, NULL, N + 1);

    /* y of the wrong length: -1, a status naming the call and sizes, NaN. */
    jac_sundials s = {.program = cvode, .params = user_params};
    assert_int_equal(jac_sundials_cvode_rhs(T, short_y, f, &s), -1);
    assert_int_equal(s.status, JAC_ERR_SHAPE);
    tu_assert_contains(s.message, "jac_sundials_cvode_rhs: y has 5 elements");
    assert_true(all_nan(N_VGetArrayPointer(f), N));
    /* The first failure is kept. */
    assert_int_equal(jac_sundials_cvode_rhs(T, y, long_f, &s), -1);
    tu_assert_contains(s.message, "y has 5");
    s.status = JAC_OK;
    assert_int_equal(jac_sundials_cvode_rhs(T, y, long_f, &s), -1);
    tu_assert_contains(s.message, "ydot has 7 elements");
    assert_true(all_nan(N_VGetArrayPointer(long_f), N + 1));

    /* A matrix of the wrong size. */
    s.status = JAC_OK;
    SUNMatrix big = SUNDenseMatrix(N + 1, N + 1, fx->sun);
    assert_int_equal(jac_sundials_cvode_jac(T, y, f, big, &s, NULL, NULL, NULL),
                     -1);
    assert_int_equal(s.status, JAC_ERR_SHAPE);
    tu_assert_contains(s.message, "the dense matrix is 7 x 7");
    assert_true(all_nan(SM_DATA_D(big), SM_LDATA_D(big)));
    SUNMatDestroy(big);

    /* A parameter missing. */
    jac_sundials none = {.program = cvode};
    assert_int_equal(jac_sundials_cvode_rhs(T, y, f, &none), -1);
    assert_int_equal(none.status, JAC_ERR_NULL_ARG);
    tu_assert_contains(none.message, "params[0] is NULL");

    /* No program; a program of the wrong solver. */
    jac_sundials empty = {0};
    assert_int_equal(jac_sundials_kinsol_sys(y, f, &empty), -1);
    assert_int_equal(empty.status, JAC_ERR_NULL_ARG);
    tu_assert_contains(empty.message, "the program is NULL");
    assert_int_equal(jac_sundials_nnz(&empty), -1);
    jac_sundials wrong = {.program = cvode, .params = user_params};
    N_Vector yp = vector_of(fx->sun, slope, N);
    assert_int_equal(jac_sundials_ida_res(T, y, yp, f, &wrong), -1);
    assert_int_equal(wrong.status, JAC_ERR_SHAPE);
    tu_assert_contains(wrong.message, "IDA takes 2 inputs");
    jac_sundials ida_state = {.program = ida, .params = user_params};
    assert_int_equal(jac_sundials_ida_res(T, y, NULL, f, &ida_state), -1);
    assert_int_equal(ida_state.status, JAC_ERR_NULL_ARG);
    tu_assert_contains(ida_state.message, "yp is NULL");

    /* No state: -1 and NaN, nothing else to write to. */
    assert_int_equal(jac_sundials_cvode_rhs(T, y, f, NULL), -1);
    assert_true(all_nan(N_VGetArrayPointer(f), N));

    N_VDestroy(y);
    N_VDestroy(yp);
    N_VDestroy(f);
    N_VDestroy(short_y);
    N_VDestroy(long_f);
    jac_sundials_release(&s);
    jac_sundials_release(&wrong);
    jac_sundials_release(&ida_state);
    jac_program_free(cvode);
    jac_program_free(ida);
}

/* An allocator that refuses its fail_at-th call (and every later one when
 * sticky) and counts live blocks. */
typedef struct counting {
    size_t calls, fail_at, live, refused;
    int sticky;
} counting;

static void *counting_alloc(size_t size, void *user)
{
    counting *c = user;
    ++c->calls;
    if (c->fail_at != 0 &&
        (c->calls == c->fail_at || (c->sticky && c->calls > c->fail_at))) {
        c->refused++;
        return NULL;
    }
    void *p = malloc(size);
    if (p != NULL)
        c->live++;
    return p;
}

static void counting_free(void *ptr, void *user)
{
    counting *c = user;
    if (ptr != NULL)
        c->live--;
    free(ptr);
}

static void test_allocation_failures_are_errors(void **state)
{
    fixture *fx = *state;
    jac_program *program = record_ida(fx->ctx);
    N_Vector y = vector_of(fx->sun, point, N),
             yp = vector_of(fx->sun, slope, N);
    double want_F[N], want_J[N * N];
    ida_hand(T, CJ, point, slope, P, want_F, want_J);
    size_t failures = 0;
    for (size_t fail_at = 1;; fail_at++) {
        counting c = {.fail_at = fail_at};
        jac_allocator allocator = {counting_alloc, counting_free, &c};
        jac_sundials s = {
            .program = program, .params = user_params, .allocator = &allocator};
        SUNMatrix A = SUNSparseMatrix(N, N, 3 * N, CSC_MAT, fx->sun);
        int rc =
            jac_sundials_ida_jac(T, CJ, y, yp, NULL, A, &s, NULL, NULL, NULL);
        if (c.calls < fail_at) {
            /* Every allocation has been failed once: this run had none
             * refused, and must be right. */
            assert_int_equal(rc, 0);
            assert_matrix(A, want_J);
            jac_sundials_release(&s);
            assert_int_equal(c.live, 0);
            SUNMatDestroy(A);
            break;
        }
        failures++;
        assert_int_equal(rc, -1);
        assert_int_equal(s.status, JAC_ERR_NO_MEMORY);
        tu_assert_contains(s.message, "jac_sundials_ida_jac: out of memory");
        assert_true(all_nan(SM_DATA_S(A), SM_NNZ_S(A)));
        /* The state recovers: the next call allocates what is missing. */
        s.status = JAC_OK;
        assert_int_equal(
            jac_sundials_ida_jac(T, CJ, y, yp, NULL, A, &s, NULL, NULL, NULL),
            0);
        assert_matrix(A, want_J);
        jac_sundials_release(&s);
        assert_int_equal(c.live, 0);
        SUNMatDestroy(A);
    }
    /* The workspace, its scratch, the pattern's nine arrays and the
     * folding's scratch. */
    assert_true(failures >= 12);
    N_VDestroy(y);
    N_VDestroy(yp);
    jac_program_free(program);
}

/* A program recorded in a context whose allocator refuses everything once
 * the recording is done: the plan and the program's workspaces cannot be
 * made, and every callback says so, with NaN out. */
static void test_failures_of_the_core_are_errors(void **state)
{
    fixture *fx = *state;
    counting c = {0};
    jac_allocator allocator = {counting_alloc, counting_free, &c};
    jac_ctx *ctx = jac_ctx_new_with_allocator(&allocator);
    assert_non_null(ctx);
    jac_program *program = record_cvode(ctx);
    jac_ctx_free(ctx);
    c.fail_at = c.calls + 1;
    c.sticky = 1;
    jac_sundials s = {.program = program, .params = user_params};
    N_Vector y = vector_of(fx->sun, point, N), f = vector_of(fx->sun, NULL, N);
    N_Vector v = vector_of(fx->sun, direction, N);
    SUNMatrix A = SUNSparseMatrix(N, N, 3 * N, CSR_MAT, fx->sun);
    assert_int_equal(jac_sundials_cvode_jac(T, y, f, A, &s, NULL, NULL, NULL),
                     -1);
    assert_int_equal(s.status, JAC_ERR_NO_MEMORY);
    tu_assert_contains(s.message, "jac_sundials_cvode_jac: the sparse plan");
    assert_true(all_nan(SM_DATA_S(A), SM_NNZ_S(A)));
    s.status = JAC_OK;
    assert_int_equal(jac_sundials_cvode_jtimes(v, f, T, y, NULL, &s, NULL), -1);
    assert_int_not_equal(s.status, JAC_OK);
    tu_assert_contains(s.message, "jac_sundials_cvode_jtimes");
    assert_true(all_nan(N_VGetArrayPointer(f), N));
    s.status = JAC_OK;
    assert_int_equal(jac_sundials_cvode_rhs(T, y, f, &s), -1);
    assert_int_not_equal(s.status, JAC_OK);
    tu_assert_contains(s.message, "jac_sundials_cvode_rhs");
    assert_true(all_nan(N_VGetArrayPointer(f), N));
    assert_true(c.refused > 0);
    SUNMatDestroy(A);
    N_VDestroy(y);
    N_VDestroy(f);
    N_VDestroy(v);
    jac_sundials_release(&s);
    jac_program_free(program);
    assert_int_equal(c.live, 0);
}

/* ------------------------------------------------------------------------ */
/* A solve                                                                  */
/* ------------------------------------------------------------------------ */

/* IDA on (1 + y^2) y' = -y (1 + y^2), i.e. y' = -y, componentwise from
 * y(0) = (1, 2, ..., N): y(1) = y(0) / e. The residual couples y and y'
 * so that both blocks of the Jacobian matter. */
static void test_ida_solves_decay(void **state)
{
    fixture *fx = *state;
    jac_ctx *ctx = fx->ctx;
    jac_tensor *inputs[2] = {jac_zeros(ctx, 1, TU_SHAPE(N)),
                             jac_zeros(ctx, 1, TU_SHAPE(N))};
    jac_tensor *t = jac_zeros(ctx, 1, TU_SHAPE(1));
    tu_assert_ok(ctx, jac_program_begin(ctx, 2, inputs, 1, &t));
    jac_tensor *m = jac_add_scalar(ctx, jac_square(ctx, inputs[0]), 1.0);
    jac_tensor *F = jac_mul(ctx, m, jac_add(ctx, inputs[1], inputs[0]));
    jac_program *program = NULL;
    tu_assert_ok(ctx, jac_program_end(ctx, 1, &F, 0, &program));

    double y0[N], yp0[N];
    for (int i = 0; i < N; i++) {
        y0[i] = i + 1.0;
        yp0[i] = -y0[i];
    }
    N_Vector y = vector_of(fx->sun, y0, N), yp = vector_of(fx->sun, yp0, N);
    jac_sundials s = {.program = program};
    void *ida = IDACreate(fx->sun);
    assert_non_null(ida);
    assert_int_equal(IDAInit(ida, jac_sundials_ida_res, 0.0, y, yp),
                     IDA_SUCCESS);
    assert_int_equal(IDASStolerances(ida, 1e-8, 1e-10), IDA_SUCCESS);
    assert_int_equal(IDASetUserData(ida, &s), IDA_SUCCESS);
    SUNMatrix A = SUNDenseMatrix(N, N, fx->sun);
    SUNLinearSolver LS = SUNLinSol_Dense(y, A, fx->sun);
    assert_int_equal(IDASetLinearSolver(ida, LS, A), IDA_SUCCESS);
    assert_int_equal(IDASetJacFn(ida, jac_sundials_ida_jac), IDA_SUCCESS);
    sunrealtype tret = 0.0;
    assert_int_equal(IDASolve(ida, 1.0, &tret, y, yp, IDA_NORMAL), IDA_SUCCESS);
    double want[N];
    for (int i = 0; i < N; i++)
        want[i] = y0[i] * exp(-1.0);
    tu_assert_close(N_VGetArrayPointer(y), want, N, 0.0, 1e-6);
    assert_int_equal(s.status, JAC_OK);
    assert_true(s.jacobians > 0);
    assert_true(s.evaluations > s.jacobians);
    IDAFree(&ida);
    SUNLinSolFree(LS);
    SUNMatDestroy(A);
    N_VDestroy(y);
    N_VDestroy(yp);
    jac_sundials_release(&s);
    jac_program_free(program);
}

#define SUN_TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        SUN_TEST(test_cvode_matches_hand_in_every_matrix_kind),
        SUN_TEST(test_cvode_jacobian_matches_finite_differences),
        SUN_TEST(test_ida_jacobian_combines_both_blocks),
        SUN_TEST(test_plan_options_are_honoured),
        SUN_TEST(test_jtimes_match_dense_products),
        SUN_TEST(test_band_too_narrow_is_an_error),
        SUN_TEST(test_mismatches_are_errors),
        SUN_TEST(test_allocation_failures_are_errors),
        SUN_TEST(test_failures_of_the_core_are_errors),
        SUN_TEST(test_ida_solves_decay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
