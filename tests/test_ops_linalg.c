/*
 * Linear algebra ops: permute, dot, outer, trace, diagonal, and through
 * LAPACK solve, inverse, det, logdet, cholesky (and the internal
 * triangular_solve behind cholesky's backward rule).
 *
 * Values are checked against numbers computed with PyTorch and NumPy (as
 * literals: the suite needs neither). Every op's first and second
 * derivatives are checked against finite differences at 2x2, 3x3, a batch
 * of matrices and the op's other shapes, and batched seeds against the row
 * loop. A linear op has a zero second derivative, so it is also checked
 * inside sin(), which makes the double backward go through its rule.
 *
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"

#include "batchcheck.h"
#include "ops/ops.h"

/* ---------------------------------------------------------------------- */
/* One op with its parameters, as a jac_fn                                 */
/* ---------------------------------------------------------------------- */

typedef enum la_op {
    LA_PERMUTE,
    LA_DIAGONAL,
    LA_DOT,
    LA_OUTER,
    LA_TRACE,
    LA_SOLVE,
    LA_INVERSE,
    LA_DET,
    LA_LOGDET,
    LA_CHOLESKY,         /* of the input itself (its lower triangle) */
    LA_CHOLESKY_OF_GRAM, /* of B B^T + n I, B the input */
    LA_TRIANGULAR_SOLVE
} la_op;

typedef struct la_case {
    la_op op;
    int perm[JAC_MAX_DIMS]; /* permute */
    int64_t offset;         /* diagonal */
    int axis1, axis2;       /* diagonal */
    bool lower, trans;      /* triangular_solve */
    bool then_sin;          /* apply sin to the result */
} la_case;

/* B B^T + n I over the last two axes: symmetric positive definite for any
 * B, and it stays so under finite-difference moves of B. */
static jac_tensor *gram(jac_ctx *ctx, jac_tensor *b)
{
    int64_t n = jac_tensor_dim(b, -1);
    jac_tensor *bbt = jac_matmul(ctx, b, jac_transpose(ctx, b, -1, -2));
    return jac_add(ctx, bbt, jac_mul_scalar(ctx, jac_eye(ctx, n), (double)n));
}

static jac_tensor *apply(jac_ctx *ctx, jac_tensor *const *in, const la_case *c)
{
    switch (c->op) {
    case LA_PERMUTE:
        return jac_permute(ctx, in[0], c->perm);
    case LA_DIAGONAL:
        return jac_diagonal(ctx, in[0], c->offset, c->axis1, c->axis2);
    case LA_DOT:
        return jac_dot(ctx, in[0], in[1]);
    case LA_OUTER:
        return jac_outer(ctx, in[0], in[1]);
    case LA_TRACE:
        return jac_trace(ctx, in[0]);
    case LA_SOLVE:
        return jac_solve(ctx, in[0], in[1]);
    case LA_INVERSE:
        return jac_inverse(ctx, in[0]);
    case LA_DET:
        return jac_det(ctx, in[0]);
    case LA_LOGDET:
        return jac_logdet(ctx, in[0]);
    case LA_CHOLESKY:
        return jac_cholesky(ctx, in[0]);
    case LA_CHOLESKY_OF_GRAM:
        return jac_cholesky(ctx, gram(ctx, in[0]));
    case LA_TRIANGULAR_SOLVE:
        return jac__triangular_solve(ctx, in[0], in[1], c->lower, c->trans);
    }
    return NULL;
}

static jac_status run_case(jac_ctx *ctx, jac_tensor *const *in,
                           jac_tensor **out, void *user)
{
    const la_case *c = user;
    jac_tensor *y = apply(ctx, in, c);
    if (c->then_sin) {
        y = jac_sin(ctx, y);
    }
    out[0] = y;
    if (y == NULL) {
        return jac_errcode(ctx) != JAC_OK ? jac_errcode(ctx) : JAC_ERR_STATE;
    }
    return JAC_OK;
}

/* First and second derivatives against finite differences, and batched
 * seeds against the row loop (plain and under create-graph). */
static void check_case_at(jac_ctx *ctx, la_case c, size_t ninputs,
                          jac_tensor *const *inputs, const char *file, int line)
{
    tu_gradcheck_at(ctx, run_case, &c, ninputs, inputs, 1, file, line);
    tu_gradgradcheck_at(ctx, run_case, &c, ninputs, inputs, 1, file, line);
    tu_assert_batched_matches_rows_at(ctx, run_case, &c, ninputs, inputs, 1, 0u,
                                      file, line);
    tu_assert_batched_matches_rows_at(ctx, run_case, &c, ninputs, inputs, 1,
                                      JAC_CREATE_GRAPH, file, line);
}
#define check_case(ctx, c, ninputs, inputs)                                    \
    check_case_at((ctx), (c), (ninputs), (inputs), __FILE__, __LINE__)

/* A leaf (..., n, n) of smooth values in (-0.8, 0.8) plus n on the
 * diagonal: strictly diagonally dominant with a positive diagonal, so it is
 * invertible with a positive determinant, well inside the smooth domain. */
static jac_tensor *matrix_leaf_at(jac_ctx *ctx, int ndim, const int64_t *shape,
                                  double phase, const char *file, int line)
{
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        numel *= shape[i];
    }
    int64_t n = shape[ndim - 1];
    double *v = malloc((size_t)(numel ? numel : 1) * sizeof *v);
    if (v == NULL) {
        tu_fail_at(file, line);
        return NULL;
    }
    for (int64_t e = 0; e < numel; e++) {
        int64_t i = (e / n) % n, j = e % n;
        v[e] = 0.8 * sin(0.9 * (double)e + phase) + (i == j ? (double)n : 0);
    }
    jac_tensor *t = tu_leaf_at(ctx, ndim, shape, v, (size_t)numel, file, line);
    free(v);
    return t;
}
#define matrix_leaf(ctx, shape, phase)                                         \
    matrix_leaf_at((ctx), (int)TU_COUNT(shape), (shape), (phase), __FILE__,    \
                   __LINE__)

/* Fails unless the context holds code with a message naming op (and
 * mentioning extra when given); then clears the error. */
static void assert_error_names_at(jac_ctx *ctx, jac_status code, const char *op,
                                  const char *extra, const char *file, int line)
{
    tu_assert_error_at(ctx, code, file, line);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s:", op);
    tu_assert_contains_at(jac_errmsg(ctx), prefix, file, line);
    if (extra != NULL) {
        tu_assert_contains_at(jac_errmsg(ctx), extra, file, line);
    }
    jac_clear_error(ctx);
}
#define assert_error_names(ctx, code, op, extra)                               \
    assert_error_names_at((ctx), (code), (op), (extra), __FILE__, __LINE__)

/* The 3x3 matrices of the value tests, as PyTorch saw them. */
#define A3_VALUES TU_VALUES(4, -2, 1, 3, 6, -4, 2, 1, 8)
#define B3_VALUES TU_VALUES(2, 1, 0.5, 1, 3, 1, -0.5, 1, 4)
#define SPD_VALUES TU_VALUES(4, 2, 0.6, 2, 5, 1.5, 0.6, 1.5, 3)

/* ---------------------------------------------------------------------- */
/* permute                                                                 */
/* ---------------------------------------------------------------------- */

static void test_permute_reorders_axes_as_torch(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x =
        jac_reshape(ctx, jac_arange(ctx, 0, 24, 1), 3, TU_SHAPE(2, 3, 4));
    jac_tensor *y = jac_permute(ctx, x, (const int[]){2, 0, 1});
    tu_assert_tensor(y, TU_SHAPE(4, 2, 3),
                     TU_VALUES(0, 4, 8, 12, 16, 20, 1, 5, 9, 13, 17, 21, 2, 6,
                               10, 14, 18, 22, 3, 7, 11, 15, 19, 23),
                     TU_EXACT);
    y = jac_permute(ctx, x, (const int[]){1, 0, 2});
    tu_assert_tensor(y, TU_SHAPE(3, 2, 4),
                     TU_VALUES(0, 1, 2, 3, 12, 13, 14, 15, 4, 5, 6, 7, 16, 17,
                               18, 19, 8, 9, 10, 11, 20, 21, 22, 23),
                     TU_EXACT);
    y = jac_permute(ctx, x, (const int[]){0, 1, 2});
    tu_assert_tensor(y, TU_SHAPE(2, 3, 4),
                     TU_VALUES(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
                               15, 16, 17, 18, 19, 20, 21, 22, 23),
                     TU_EXACT);
}

static void test_permute_of_rank_0_and_empty_tensors(void **state)
{
    jac_ctx *ctx = *state;
    tu_assert_scalar(jac_permute(ctx, jac_scalar(ctx, 2.5), NULL), 2.5,
                     TU_EXACT);
    jac_tensor *e = jac_zeros(ctx, 3, TU_SHAPE(2, 0, 3));
    jac_tensor *y = jac_permute(ctx, e, (const int[]){2, 0, 1});
    tu_assert_shape(y, TU_SHAPE(3, 2, 0));
    tu_assert_no_error(ctx);
}

static void test_permute_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    for (int s = 0; s < 2; s++) {
        jac_tensor *x0 = tu_scalar_leaf(ctx, 0.7);
        check_case(ctx, ((la_case){.op = LA_PERMUTE, .then_sin = s}), 1, &x0);
        jac_tensor *x2 = tu_smooth_leaf(ctx, TU_SHAPE(2, 3), 0.1);
        check_case(ctx,
                   ((la_case){.op = LA_PERMUTE, .perm = {1, 0}, .then_sin = s}),
                   1, &x2);
        jac_tensor *x3 = tu_smooth_leaf(ctx, TU_SHAPE(2, 3, 4), 0.2);
        check_case(
            ctx,
            ((la_case){.op = LA_PERMUTE, .perm = {2, 0, 1}, .then_sin = s}), 1,
            &x3);
        jac_tensor *x4 = tu_smooth_leaf(ctx, TU_SHAPE(2, 1, 3, 2), 0.3);
        check_case(
            ctx,
            ((la_case){.op = LA_PERMUTE, .perm = {3, 1, 0, 2}, .then_sin = s}),
            1, &x4);
    }
}

static void test_permute_rejects_non_permutations(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = jac_zeros(ctx, 3, TU_SHAPE(2, 3, 4));
    assert_null(jac_permute(ctx, x, (const int[]){0, 0, 1}));
    assert_error_names(ctx, JAC_ERR_AXIS, "permute", "(0, 0, 1)");
    assert_null(jac_permute(ctx, x, (const int[]){0, 1, 3}));
    assert_error_names(ctx, JAC_ERR_AXIS, "permute", "(2, 3, 4)");
    assert_null(jac_permute(ctx, x, (const int[]){-1, 0, 1}));
    assert_error_names(ctx, JAC_ERR_AXIS, "permute", NULL);
    assert_null(jac_permute(ctx, x, NULL));
    assert_error_names(ctx, JAC_ERR_NULL_ARG, "permute", NULL);
}

/* ---------------------------------------------------------------------- */
/* dot, outer, trace                                                       */
/* ---------------------------------------------------------------------- */

static void test_dot_outer_trace_values_match_torch(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(1, 2, 3));
    jac_tensor *b = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(4, -5, 6));
    tu_assert_scalar(jac_dot(ctx, a, b), 12, TU_EXACT);
    jac_tensor *c = tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(4, -5));
    tu_assert_tensor(jac_outer(ctx, a, c), TU_SHAPE(3, 2),
                     TU_VALUES(4, -5, 8, -10, 12, -15), TU_EXACT);
    jac_tensor *m = tu_tensor(ctx, TU_SHAPE(2, 3), TU_VALUES(1, 2, 3, 4, 5, 6));
    tu_assert_scalar(jac_trace(ctx, m), 6, TU_EXACT);
    tu_assert_scalar(jac_trace(ctx, tu_tensor(ctx, TU_SHAPE(3, 3), A3_VALUES)),
                     18, TU_EXACT);
    /* Empty vectors and matrices. */
    jac_tensor *e = jac_zeros(ctx, 1, TU_SHAPE(0));
    tu_assert_scalar(jac_dot(ctx, e, e), 0, TU_EXACT);
    tu_assert_shape(jac_outer(ctx, e, a), TU_SHAPE(0, 3));
    tu_assert_scalar(jac_trace(ctx, jac_zeros(ctx, 2, TU_SHAPE(0, 2))), 0,
                     TU_EXACT);
}

static void
test_dot_outer_trace_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    for (int s = 0; s < 2; s++) {
        jac_tensor *ab[2] = {tu_smooth_leaf(ctx, TU_SHAPE(3), 0.1),
                             tu_smooth_leaf(ctx, TU_SHAPE(3), 1.1)};
        check_case(ctx, ((la_case){.op = LA_DOT, .then_sin = s}), 2, ab);
        jac_tensor *uv[2] = {tu_smooth_leaf(ctx, TU_SHAPE(3), 0.4),
                             tu_smooth_leaf(ctx, TU_SHAPE(2), 1.7)};
        check_case(ctx, ((la_case){.op = LA_OUTER, .then_sin = s}), 2, uv);
        jac_tensor *m3 = tu_smooth_leaf(ctx, TU_SHAPE(3, 3), 0.5);
        check_case(ctx, ((la_case){.op = LA_TRACE, .then_sin = s}), 1, &m3);
        jac_tensor *m23 = tu_smooth_leaf(ctx, TU_SHAPE(2, 3), 0.6);
        check_case(ctx, ((la_case){.op = LA_TRACE, .then_sin = s}), 1, &m23);
        jac_tensor *m32 = tu_smooth_leaf(ctx, TU_SHAPE(3, 2), 0.7);
        check_case(ctx, ((la_case){.op = LA_TRACE, .then_sin = s}), 1, &m32);
    }
}

static void test_dot_outer_trace_reject_bad_shapes(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *v3 = jac_zeros(ctx, 1, TU_SHAPE(3));
    jac_tensor *v2 = jac_zeros(ctx, 1, TU_SHAPE(2));
    jac_tensor *m = jac_zeros(ctx, 2, TU_SHAPE(3, 3));
    assert_null(jac_dot(ctx, v3, v2));
    assert_error_names(ctx, JAC_ERR_SHAPE, "dot", "(3) and (2)");
    assert_null(jac_dot(ctx, m, v3));
    assert_error_names(ctx, JAC_ERR_RANK, "dot", "(3, 3)");
    assert_null(jac_outer(ctx, v3, m));
    assert_error_names(ctx, JAC_ERR_RANK, "outer", "(3, 3)");
    assert_null(jac_outer(ctx, jac_scalar(ctx, 1), v2));
    assert_error_names(ctx, JAC_ERR_RANK, "outer", NULL);
    assert_null(jac_trace(ctx, v3));
    assert_error_names(ctx, JAC_ERR_RANK, "trace", "(3)");
    assert_null(jac_trace(ctx, jac_zeros(ctx, 3, TU_SHAPE(2, 3, 3))));
    assert_error_names(ctx, JAC_ERR_RANK, "trace", "(2, 3, 3)");
}

/* ---------------------------------------------------------------------- */
/* diagonal                                                                */
/* ---------------------------------------------------------------------- */

static void test_diagonal_follows_numpy_offsets(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *m =
        jac_reshape(ctx, jac_arange(ctx, 0, 12, 1), 2, TU_SHAPE(3, 4));
    tu_assert_tensor(jac_diagonal(ctx, m, 0, 0, 1), TU_SHAPE(3),
                     TU_VALUES(0, 5, 10), TU_EXACT);
    tu_assert_tensor(jac_diagonal(ctx, m, 1, 0, 1), TU_SHAPE(3),
                     TU_VALUES(1, 6, 11), TU_EXACT);
    tu_assert_tensor(jac_diagonal(ctx, m, -1, 0, 1), TU_SHAPE(2),
                     TU_VALUES(4, 9), TU_EXACT);
    tu_assert_tensor(jac_diagonal(ctx, m, 3, 0, 1), TU_SHAPE(1), TU_VALUES(3),
                     TU_EXACT);
    tu_assert_tensor(jac_diagonal(ctx, m, -2, 0, 1), TU_SHAPE(1), TU_VALUES(8),
                     TU_EXACT);
    /* Past the corner the diagonal is empty, as NumPy's. */
    tu_assert_shape(jac_diagonal(ctx, m, 5, 0, 1), TU_SHAPE(0));
    tu_assert_shape(jac_diagonal(ctx, m, -3, 0, 1), TU_SHAPE(0));
    tu_assert_shape(jac_diagonal(ctx, m, INT64_MAX, 0, 1), TU_SHAPE(0));
    tu_assert_shape(jac_diagonal(ctx, m, INT64_MIN, 0, 1), TU_SHAPE(0));
    /* Swapped axes take the diagonal of the transpose. */
    tu_assert_tensor(jac_diagonal(ctx, m, 1, 1, 0), TU_SHAPE(2),
                     TU_VALUES(4, 9), TU_EXACT);
    tu_assert_no_error(ctx);
}

static void test_diagonal_over_other_axes_moves_it_last(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x =
        jac_reshape(ctx, jac_arange(ctx, 0, 24, 1), 3, TU_SHAPE(2, 3, 4));
    tu_assert_tensor(jac_diagonal(ctx, x, 0, 0, 2), TU_SHAPE(3, 2),
                     TU_VALUES(0, 13, 4, 17, 8, 21), TU_EXACT);
    tu_assert_tensor(jac_diagonal(ctx, x, 1, 2, 0), TU_SHAPE(3, 1),
                     TU_VALUES(12, 16, 20), TU_EXACT);
    tu_assert_tensor(jac_diagonal(ctx, x, -1, 1, 2), TU_SHAPE(2, 2),
                     TU_VALUES(4, 9, 16, 21), TU_EXACT);
    tu_assert_tensor(jac_diagonal(ctx, x, -1, -1, -3), TU_SHAPE(3, 2),
                     TU_VALUES(1, 14, 5, 18, 9, 22), TU_EXACT);
}

static void test_diagonal_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    const int64_t offsets[] = {0, 1, -1, -2, 4};
    for (int s = 0; s < 2; s++) {
        for (size_t k = 0; k < TU_COUNT(offsets); k++) {
            jac_tensor *m = tu_smooth_leaf(ctx, TU_SHAPE(3, 4), 0.3);
            check_case(ctx,
                       ((la_case){.op = LA_DIAGONAL,
                                  .offset = offsets[k],
                                  .axis1 = 0,
                                  .axis2 = 1,
                                  .then_sin = s}),
                       1, &m);
        }
        jac_tensor *x = tu_smooth_leaf(ctx, TU_SHAPE(2, 3, 4), 0.8);
        check_case(ctx,
                   ((la_case){.op = LA_DIAGONAL,
                              .offset = 1,
                              .axis1 = 2,
                              .axis2 = 0,
                              .then_sin = s}),
                   1, &x);
        check_case(ctx,
                   ((la_case){.op = LA_DIAGONAL,
                              .offset = -1,
                              .axis1 = 1,
                              .axis2 = -1,
                              .then_sin = s}),
                   1, &x);
        jac_tensor *b = tu_smooth_leaf(ctx, TU_SHAPE(2, 3, 3), 0.9);
        check_case(
            ctx,
            ((la_case){
                .op = LA_DIAGONAL, .axis1 = -2, .axis2 = -1, .then_sin = s}),
            1, &b);
    }
}

/* The adjoint embeds the cotangent on the diagonal: zeros elsewhere. */
static void test_diagonal_gradient_is_the_embedded_seed(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *m = tu_smooth_leaf(ctx, TU_SHAPE(3, 4), 0.3);
    jac_tensor *d = jac_diagonal(ctx, m, 1, 0, 1);
    jac_tensor *seed = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(1, 2, 3));
    jac_tensor *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &d, &seed, 1, &m, 0, &g));
    tu_assert_tensor(g, TU_SHAPE(3, 4),
                     TU_VALUES(0, 1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 3), TU_EXACT);
}

static void test_diagonal_rejects_bad_axes(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *m = jac_zeros(ctx, 2, TU_SHAPE(3, 4));
    assert_null(jac_diagonal(ctx, m, 0, 1, 1));
    assert_error_names(ctx, JAC_ERR_AXIS, "diagonal", "(3, 4)");
    assert_null(jac_diagonal(ctx, m, 0, 0, -2));
    assert_error_names(ctx, JAC_ERR_AXIS, "diagonal", NULL);
    assert_null(jac_diagonal(ctx, m, 0, 0, 2));
    assert_error_names(ctx, JAC_ERR_AXIS, "diagonal", NULL);
    assert_null(jac_diagonal(ctx, jac_zeros(ctx, 1, TU_SHAPE(3)), 0, 0, 1));
    assert_error_names(ctx, JAC_ERR_RANK, "diagonal", "(3)");
}

/* ---------------------------------------------------------------------- */
/* inverse                                                                 */
/* ---------------------------------------------------------------------- */

static void test_inverse_values_match_torch(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = tu_tensor(ctx, TU_SHAPE(3, 3), A3_VALUES);
    jac_tensor *inv = jac_inverse(ctx, a);
    tu_assert_tensor(inv, TU_SHAPE(3, 3),
                     TU_VALUES(0.1977186311787072, 0.06463878326996197,
                               0.007604562737642585, -0.12167300380228138,
                               0.11406844106463879, 0.07224334600760457,
                               -0.034220532319391636, -0.030418250950570346,
                               0.1140684410646388),
                     TU_TIGHT);
    jac_tensor *ab = tu_tensor(
        ctx, TU_SHAPE(2, 3, 3),
        TU_VALUES(4, -2, 1, 3, 6, -4, 2, 1, 8, 2, 1, 0.5, 1, 3, 1, -0.5, 1, 4));
    tu_assert_tensor(
        jac_inverse(ctx, ab), TU_SHAPE(2, 3, 3),
        TU_VALUES(
            0.1977186311787072, 0.06463878326996197, 0.007604562737642585,
            -0.12167300380228138, 0.11406844106463879, 0.07224334600760457,
            -0.034220532319391636, -0.030418250950570346, 0.1140684410646388,
            0.5866666666666667, -0.1866666666666667, -0.026666666666666658,
            -0.24000000000000002, 0.44000000000000006, -0.08000000000000002,
            0.13333333333333333, -0.13333333333333333, 0.26666666666666666),
        TU_TIGHT);
}

static void test_inverse_times_matrix_is_identity(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = matrix_leaf(ctx, TU_SHAPE(2, 4, 4), 0.4);
    jac_tensor *p = jac_matmul(ctx, jac_inverse(ctx, a), a);
    jac_tensor *q = jac_matmul(ctx, a, jac_inverse(ctx, a));
    const double eye2[] = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1,
                           1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};
    tu_assert_close(jac_tensor_data(p), eye2, 32, 1e-14, 0);
    tu_assert_close(jac_tensor_data(q), eye2, 32, 1e-14, 0);
    /* Not the identity before the product: the check can fail. */
    assert_true(fabs(jac_tensor_data(a)[1]) > 1e-3);
}

static void test_inverse_gradient_matches_torch(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = tu_leaf(ctx, TU_SHAPE(3, 3), A3_VALUES);
    jac_tensor *w = tu_tensor(ctx, TU_SHAPE(3, 3),
                              TU_VALUES(1, 0, 0, -2, 0.5, 0, 3, 1, -1));
    jac_tensor *y = jac_sum(ctx, jac_mul(ctx, jac_inverse(ctx, a), w));
    jac_tensor *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 1, &a, 0, &g));
    tu_assert_tensor(g, TU_SHAPE(3, 3),
                     TU_VALUES(-0.06102444736804058, 0.0495453165435383,
                               0.0047853807341439085, 0.04841764374213882,
                               -0.03623010308085993, -0.011377929419248508,
                               -0.049436886466480666, 0.016091023435353995,
                               0.024606398820280765),
                     1e-15);
}

static void test_inverse_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    la_case c = {.op = LA_INVERSE};
    jac_tensor *a2 = matrix_leaf(ctx, TU_SHAPE(2, 2), 0.1);
    check_case(ctx, c, 1, &a2);
    jac_tensor *a3 = matrix_leaf(ctx, TU_SHAPE(3, 3), 0.2);
    check_case(ctx, c, 1, &a3);
    jac_tensor *ab = matrix_leaf(ctx, TU_SHAPE(2, 3, 3), 0.3);
    check_case(ctx, c, 1, &ab);
    jac_tensor *a1 = matrix_leaf(ctx, TU_SHAPE(1, 1), 0.4);
    check_case(ctx, c, 1, &a1);
}

static void test_inverse_of_empty_matrices(void **state)
{
    jac_ctx *ctx = *state;
    tu_assert_shape(jac_inverse(ctx, jac_zeros(ctx, 2, TU_SHAPE(0, 0))),
                    TU_SHAPE(0, 0));
    tu_assert_shape(jac_inverse(ctx, jac_zeros(ctx, 3, TU_SHAPE(0, 3, 3))),
                    TU_SHAPE(0, 3, 3));
    tu_assert_no_error(ctx);
}

static void
test_inverse_of_singular_matrix_names_the_batch_element(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = tu_tensor(ctx, TU_SHAPE(3, 2, 2),
                              TU_VALUES(1, 0, 0, 1, 1, 2, 2, 4, 2, 0, 0, 2));
    assert_null(jac_inverse(ctx, a));
    assert_error_names(ctx, JAC_ERR_VALUE, "inverse", "matrix 1 ");
    assert_null(jac_inverse(ctx, jac_zeros(ctx, 2, TU_SHAPE(2, 3))));
    assert_error_names(ctx, JAC_ERR_SHAPE, "inverse", "(2, 3)");
    assert_null(jac_inverse(ctx, jac_zeros(ctx, 1, TU_SHAPE(3))));
    assert_error_names(ctx, JAC_ERR_RANK, "inverse", "(3)");
}

/* Extents beyond LAPACK's int are refused before any call, even when the
 * batch is empty. */
static void test_lapack_ops_refuse_extents_beyond_int(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *big = jac_zeros(ctx, 3, TU_SHAPE(0, 3000000000, 3000000000));
    jac_tensor *v = jac_zeros(ctx, 2, TU_SHAPE(0, 3000000000));
    tu_assert_no_error(ctx);
    assert_null(jac_inverse(ctx, big));
    assert_error_names(ctx, JAC_ERR_OVERFLOW, "inverse", "3000000000");
    assert_null(jac_det(ctx, big));
    assert_error_names(ctx, JAC_ERR_OVERFLOW, "det", NULL);
    assert_null(jac_logdet(ctx, big));
    assert_error_names(ctx, JAC_ERR_OVERFLOW, "logdet", NULL);
    assert_null(jac_cholesky(ctx, big));
    assert_error_names(ctx, JAC_ERR_OVERFLOW, "cholesky", NULL);
    assert_null(jac_solve(ctx, big, v));
    assert_error_names(ctx, JAC_ERR_OVERFLOW, "solve", NULL);
    jac_tensor *a = jac_zeros(ctx, 2, TU_SHAPE(2, 2));
    jac_tensor *rhs = jac_zeros(ctx, 3, TU_SHAPE(0, 2, 3000000000));
    assert_null(jac_solve(ctx, a, rhs));
    assert_error_names(ctx, JAC_ERR_OVERFLOW, "solve", "right-hand sides");
}

/* ---------------------------------------------------------------------- */
/* det and logdet                                                          */
/* ---------------------------------------------------------------------- */

static void test_det_values_match_torch(void **state)
{
    jac_ctx *ctx = *state;
    tu_assert_scalar(jac_det(ctx, tu_tensor(ctx, TU_SHAPE(3, 3), A3_VALUES)),
                     263.0, 1e-12);
    /* A row interchange flips the sign. */
    tu_assert_scalar(
        jac_det(ctx, tu_tensor(ctx, TU_SHAPE(2, 2), TU_VALUES(0, 2, 3, 1))),
        -6.0, 1e-14);
    tu_assert_scalar(
        jac_det(ctx, tu_tensor(ctx, TU_SHAPE(2, 2), TU_VALUES(1, 2, 3, 4))),
        -2.0, 1e-14);
    jac_tensor *ab = tu_tensor(
        ctx, TU_SHAPE(2, 3, 3),
        TU_VALUES(4, -2, 1, 3, 6, -4, 2, 1, 8, 2, 1, 0.5, 1, 3, 1, -0.5, 1, 4));
    tu_assert_tensor(jac_det(ctx, ab), TU_SHAPE(2), TU_VALUES(263.0, 18.75),
                     1e-12);
    tu_assert_scalar(
        jac_det(ctx, tu_tensor(ctx, TU_SHAPE(1, 1), TU_VALUES(-3.5))), -3.5,
        TU_EXACT);
}

static void test_det_of_singular_and_empty_matrices(void **state)
{
    jac_ctx *ctx = *state;
    tu_assert_scalar(
        jac_det(ctx, tu_tensor(ctx, TU_SHAPE(2, 2), TU_VALUES(1, 2, 2, 4))), 0,
        TU_EXACT);
    tu_assert_scalar(jac_det(ctx, jac_zeros(ctx, 2, TU_SHAPE(3, 3))), 0,
                     TU_EXACT);
    /* The determinant of a 0 x 0 matrix is 1, as PyTorch's. */
    tu_assert_tensor(jac_det(ctx, jac_zeros(ctx, 3, TU_SHAPE(2, 0, 0))),
                     TU_SHAPE(2), TU_VALUES(1, 1), TU_EXACT);
    tu_assert_tensor(jac_logdet(ctx, jac_zeros(ctx, 3, TU_SHAPE(2, 0, 0))),
                     TU_SHAPE(2), TU_VALUES(0, 0), TU_EXACT);
    tu_assert_shape(jac_det(ctx, jac_zeros(ctx, 3, TU_SHAPE(0, 3, 3))),
                    TU_SHAPE(0));
    tu_assert_no_error(ctx);
}

static void test_det_gradient_matches_torch(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = tu_leaf(ctx, TU_SHAPE(3, 3), A3_VALUES);
    jac_tensor *d = jac_det(ctx, a);
    jac_tensor *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &d, NULL, 1, &a, 0, &g));
    tu_assert_tensor(g, TU_SHAPE(3, 3),
                     TU_VALUES(52, -32, -9, 17, 30, -8, 2, 19, 30), 1e-12);
}

static void test_det_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    la_case c = {.op = LA_DET};
    jac_tensor *a2 = matrix_leaf(ctx, TU_SHAPE(2, 2), 0.1);
    check_case(ctx, c, 1, &a2);
    jac_tensor *a3 = matrix_leaf(ctx, TU_SHAPE(3, 3), 0.2);
    check_case(ctx, c, 1, &a3);
    jac_tensor *ab = matrix_leaf(ctx, TU_SHAPE(2, 3, 3), 0.3);
    check_case(ctx, c, 1, &ab);
    /* A negative determinant (rows swapped). */
    jac_tensor *n3 =
        tu_leaf(ctx, TU_SHAPE(3, 3),
                TU_VALUES(0.3, 2.5, -0.4, 3.1, 0.2, 0.5, -0.6, 0.7, 2.2));
    check_case(ctx, c, 1, &n3);
}

static void test_det_derivative_at_a_singular_matrix_fails(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a =
        tu_leaf(ctx, TU_SHAPE(2, 2, 2), TU_VALUES(2, 0, 0, 2, 1, 2, 2, 4));
    jac_tensor *d = jac_sum(ctx, jac_det(ctx, a));
    tu_assert_scalar(d, 4, 1e-14);
    jac_tensor *g = NULL;
    assert_int_equal(jac_grad(ctx, 1, &d, NULL, 1, &a, 0, &g), JAC_ERR_VALUE);
    assert_null(g);
    assert_error_names(ctx, JAC_ERR_VALUE, "det", "matrix 1 ");
}

static void test_logdet_values_match_torch(void **state)
{
    jac_ctx *ctx = *state;
    tu_assert_scalar(
        jac_logdet(ctx, tu_tensor(ctx, TU_SHAPE(3, 3), SPD_VALUES)),
        3.708682081410116, 1e-14);
    /* A positive determinant with negative pivots and a row interchange. */
    tu_assert_scalar(
        jac_logdet(ctx, tu_tensor(ctx, TU_SHAPE(2, 2), TU_VALUES(0, -2, 3, 1))),
        log(6.0), 1e-14);
    tu_assert_scalar(jac_logdet(ctx, tu_tensor(ctx, TU_SHAPE(3, 3), A3_VALUES)),
                     log(263.0), 1e-14);
}

static void test_logdet_gradient_matches_torch(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = tu_leaf(ctx, TU_SHAPE(3, 3), SPD_VALUES);
    jac_tensor *d = jac_logdet(ctx, a);
    jac_tensor *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &d, NULL, 1, &a, 0, &g));
    tu_assert_tensor(g, TU_SHAPE(3, 3),
                     TU_VALUES(0.3125, -0.125, 0.0, -0.125, 0.2852941176470588,
                               -0.11764705882352942, 0.0, -0.11764705882352942,
                               0.3921568627450981),
                     1e-15);
}

static void test_logdet_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    la_case c = {.op = LA_LOGDET};
    jac_tensor *a2 = matrix_leaf(ctx, TU_SHAPE(2, 2), 0.5);
    check_case(ctx, c, 1, &a2);
    jac_tensor *a3 = matrix_leaf(ctx, TU_SHAPE(3, 3), 0.6);
    check_case(ctx, c, 1, &a3);
    jac_tensor *ab = matrix_leaf(ctx, TU_SHAPE(2, 3, 3), 0.7);
    check_case(ctx, c, 1, &ab);
}

static void test_logdet_rejects_singular_and_negative_determinants(void **state)
{
    jac_ctx *ctx = *state;
    assert_null(jac_logdet(ctx, tu_tensor(ctx, TU_SHAPE(2, 2, 2),
                                          TU_VALUES(2, 0, 0, 2, 1, 2, 3, 4))));
    assert_error_names(ctx, JAC_ERR_VALUE, "logdet", "matrix 1 ");
    assert_null(
        jac_logdet(ctx, tu_tensor(ctx, TU_SHAPE(2, 2), TU_VALUES(1, 2, 2, 4))));
    assert_error_names(ctx, JAC_ERR_VALUE, "logdet", "singular");
    assert_null(jac_logdet(ctx, jac_zeros(ctx, 2, TU_SHAPE(2, 3))));
    assert_error_names(ctx, JAC_ERR_SHAPE, "logdet", "(2, 3)");
    assert_null(jac_det(ctx, jac_zeros(ctx, 3, TU_SHAPE(4, 2, 3))));
    assert_error_names(ctx, JAC_ERR_SHAPE, "det", "(4, 2, 3)");
}

/* ---------------------------------------------------------------------- */
/* solve                                                                   */
/* ---------------------------------------------------------------------- */

static void test_solve_values_match_torch(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = tu_tensor(ctx, TU_SHAPE(3, 3), A3_VALUES);
    jac_tensor *b = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(1, -2, 3));
    tu_assert_tensor(jac_solve(ctx, a, b), TU_SHAPE(3),
                     TU_VALUES(0.09125475285171103, -0.1330798479087452,
                               0.36882129277566544),
                     1e-15);
    jac_tensor *bm =
        tu_tensor(ctx, TU_SHAPE(3, 2), TU_VALUES(1, 0, -2, 1, 3, 2));
    tu_assert_tensor(jac_solve(ctx, a, bm), TU_SHAPE(3, 2),
                     TU_VALUES(0.09125475285171104, 0.07984790874524714,
                               -0.1330798479087452, 0.2585551330798479,
                               0.36882129277566544, 0.19771863117870725),
                     1e-15);
    jac_tensor *ab = tu_tensor(
        ctx, TU_SHAPE(2, 3, 3),
        TU_VALUES(4, -2, 1, 3, 6, -4, 2, 1, 8, 2, 1, 0.5, 1, 3, 1, -0.5, 1, 4));
    /* b of shape a.shape[:-1] is a batch of vectors. */
    jac_tensor *bb =
        tu_tensor(ctx, TU_SHAPE(2, 3), TU_VALUES(1, -2, 3, 0.5, 0, -1));
    tu_assert_tensor(jac_solve(ctx, ab, bb), TU_SHAPE(2, 3),
                     TU_VALUES(0.09125475285171103, -0.1330798479087452,
                               0.36882129277566544, 0.32, -0.04, -0.2),
                     1e-15);
    /* A vector b broadcasts over a's batch. */
    tu_assert_tensor(jac_solve(ctx, ab, b), TU_SHAPE(2, 3),
                     TU_VALUES(0.09125475285171103, -0.1330798479087452,
                               0.36882129277566544, 0.88, -1.36, 1.2),
                     1e-14);
    /* One a for a batch of right-hand sides. */
    jac_tensor *b2 = tu_tensor(ctx, TU_SHAPE(2, 3, 2),
                               TU_VALUES(1, 0, -2, 1, 3, 2, 3, 1, -3, 3, 7, 5));
    tu_assert_tensor(
        jac_solve(ctx, a, b2), TU_SHAPE(2, 3, 2),
        TU_VALUES(0.09125475285171104, 0.07984790874524714, -0.1330798479087452,
                  0.2585551330798479, 0.36882129277566544, 0.19771863117870725,
                  0.45247148288973393, 0.42965779467680604, -0.2015209125475284,
                  0.5817490494296578, 0.7870722433460078, 0.44486692015209134),
        1e-14);
}

static void test_solve_gradient_matches_torch(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = tu_leaf(ctx, TU_SHAPE(3, 3), A3_VALUES);
    jac_tensor *b = tu_leaf(ctx, TU_SHAPE(3), TU_VALUES(1, -2, 3));
    jac_tensor *w = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(0.5, -1, 2));
    jac_tensor *y = jac_sum(ctx, jac_mul(ctx, jac_solve(ctx, a, b), w));
    jac_tensor *g[2] = {NULL, NULL};
    tu_assert_ok(ctx,
                 jac_grad(ctx, 1, &y, NULL, 2, (jac_tensor *[]){a, b}, 0, g));
    tu_assert_tensor(g[0], TU_SHAPE(3, 3),
                     TU_VALUES(-0.013879049863378103, 0.020240281050759725,
                               -0.05609449319781984, 0.013011609246916972,
                               -0.01897526348508724, 0.052588587372956096,
                               -0.014573002356547009, 0.02125229510329771,
                               -0.05889921785771084),
                     1e-16);
    tu_assert_tensor(
        g[1], TU_SHAPE(3),
        TU_VALUES(0.1520912547528517, -0.14258555133079848, 0.1596958174904943),
        1e-16);
}

static void test_solve_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    la_case c = {.op = LA_SOLVE};
    struct {
        int na, nb;
        int64_t a[4], b[4];
    } shapes[] = {
        {2, 1, {2, 2}, {2}},             /* 2x2, vector */
        {2, 2, {3, 3}, {3, 2}},          /* 3x3, two right-hand sides */
        {3, 2, {2, 3, 3}, {2, 3}},       /* batch of vectors */
        {3, 3, {2, 3, 3}, {2, 3, 1}},    /* batch of one-column b */
        {3, 1, {2, 3, 3}, {3}},          /* vector broadcast over a */
        {2, 3, {3, 3}, {2, 3, 2}},       /* a broadcast over b */
        {4, 3, {2, 1, 3, 3}, {4, 3, 1}}, /* both batches broadcast */
    };
    for (size_t k = 0; k < TU_COUNT(shapes); k++) {
        jac_tensor *in[2];
        in[0] = matrix_leaf_at(ctx, shapes[k].na, shapes[k].a, 0.1 * (double)k,
                               __FILE__, __LINE__);
        in[1] = tu_smooth_leaf_at(ctx, shapes[k].nb, shapes[k].b, 0.5, __FILE__,
                                  __LINE__);
        check_case(ctx, c, 2, in);
    }
}

static void test_solve_rejects_bad_shapes_and_singular_matrices(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = jac_eye(ctx, 3);
    assert_null(jac_solve(ctx, a, jac_zeros(ctx, 1, TU_SHAPE(2))));
    assert_error_names(ctx, JAC_ERR_SHAPE, "solve",
                       "(3, 3) and b of shape (2)");
    assert_null(jac_solve(ctx, a, jac_zeros(ctx, 2, TU_SHAPE(2, 3))));
    assert_error_names(ctx, JAC_ERR_SHAPE, "solve", NULL);
    assert_null(jac_solve(ctx, jac_zeros(ctx, 3, TU_SHAPE(2, 3, 3)),
                          jac_zeros(ctx, 3, TU_SHAPE(3, 3, 1))));
    assert_error_names(ctx, JAC_ERR_SHAPE, "solve", "(3, 3, 1)");
    assert_null(jac_solve(ctx, a, jac_scalar(ctx, 1)));
    assert_error_names(ctx, JAC_ERR_RANK, "solve", NULL);
    assert_null(jac_solve(ctx, jac_zeros(ctx, 2, TU_SHAPE(3, 2)),
                          jac_zeros(ctx, 1, TU_SHAPE(3))));
    assert_error_names(ctx, JAC_ERR_SHAPE, "solve", "square");
    assert_null(jac_solve(ctx, jac_zeros(ctx, 1, TU_SHAPE(3)),
                          jac_zeros(ctx, 1, TU_SHAPE(3))));
    assert_error_names(ctx, JAC_ERR_RANK, "solve", NULL);
    jac_tensor *sing =
        tu_tensor(ctx, TU_SHAPE(2, 2, 2), TU_VALUES(1, 0, 0, 1, 1, 2, 2, 4));
    assert_null(jac_solve(ctx, sing, jac_ones(ctx, 1, TU_SHAPE(2))));
    assert_error_names(ctx, JAC_ERR_VALUE, "solve", "matrix 1 ");
}

/* ---------------------------------------------------------------------- */
/* cholesky                                                                */
/* ---------------------------------------------------------------------- */

static void test_cholesky_values_match_torch(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = tu_tensor(ctx, TU_SHAPE(3, 3), SPD_VALUES);
    tu_assert_tensor(jac_cholesky(ctx, a), TU_SHAPE(3, 3),
                     TU_VALUES(2, 0, 0, 1, 2, 0, 0.3, 0.6, 1.5968719422671311),
                     1e-15);
    /* A batch: S and S S / 4 + I. */
    jac_tensor *b =
        tu_tensor(ctx, TU_SHAPE(2, 3, 3),
                  TU_VALUES(4, 2, 0.6, 2, 5, 1.5, 0.6, 1.5, 3, 6.09, 4.725, 1.8,
                            4.725, 8.8125, 3.3, 1.8, 3.3, 3.9025));
    tu_assert_tensor(jac_cholesky(ctx, b), TU_SHAPE(2, 3, 3),
                     TU_VALUES(2, 0, 0, 1, 2, 0, 0.3, 0.6, 1.5968719422671311,
                               2.467792535850613, 0, 0, 1.9146666226427171,
                               2.2686012704170673, 0, 0.729396808625797,
                               0.8390404698627946, 1.6329394922956952),
                     1e-14);
    tu_assert_tensor(jac_logdet(ctx, b), TU_SHAPE(2),
                     TU_VALUES(3.708682081410116, 4.425738524421526), 1e-14);
}

static void test_cholesky_factor_times_its_transpose_is_the_matrix(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *bm = tu_smooth_leaf(ctx, TU_SHAPE(2, 4, 4), 0.2);
    jac_tensor *a = gram(ctx, bm);
    jac_tensor *l = jac_cholesky(ctx, a);
    jac_tensor *llt = jac_matmul(ctx, l, jac_transpose(ctx, l, -1, -2));
    tu_assert_close(jac_tensor_data(llt), jac_tensor_data(a), 32, 1e-14, 0);
    /* Lower triangular, positive diagonal. */
    for (int64_t m = 0; m < 2; m++) {
        for (int64_t i = 0; i < 4; i++) {
            for (int64_t j = 0; j < 4; j++) {
                double v = jac_tensor_get(l, (const int64_t[]){m, i, j});
                if (j > i) {
                    assert_true(v == 0.0);
                } else if (j == i) {
                    assert_true(v > 0.0);
                }
            }
        }
    }
}

static void test_cholesky_reads_only_the_lower_triangle(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = tu_tensor(ctx, TU_SHAPE(3, 3),
                              TU_VALUES(4, 99, -7, 2, 5, 1e300, 0.6, 1.5, 3));
    tu_assert_tensor(jac_cholesky(ctx, a), TU_SHAPE(3, 3),
                     TU_VALUES(2, 0, 0, 1, 2, 0, 0.3, 0.6, 1.5968719422671311),
                     1e-15);
}

/* The gradient is that of the function of A's lower triangle: zero above
 * the diagonal, and below it twice PyTorch's symmetric gradient. */
static void test_cholesky_gradient_lives_in_the_lower_triangle(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = tu_leaf(ctx, TU_SHAPE(3, 3), SPD_VALUES);
    jac_tensor *w = tu_tensor(ctx, TU_SHAPE(3, 3),
                              TU_VALUES(1, 0, 0, -2, 0.5, 0, 3, 1, -1));
    jac_tensor *y = jac_sum(ctx, jac_mul(ctx, jac_cholesky(ctx, a), w));
    jac_tensor *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 1, &a, 0, &g));
    tu_assert_tensor(g, TU_SHAPE(3, 3),
                     TU_VALUES(0.4375, 0, 0, -1.125, 0.021819906901168265, 0,
                               1.25, 0.6878672873255449, -0.31311214554257477),
                     1e-15);
}

static void test_cholesky_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    /* Through A = B B^T + n I: FD moves keep A symmetric and SPD. */
    la_case gram_case = {.op = LA_CHOLESKY_OF_GRAM};
    jac_tensor *b2 = tu_smooth_leaf(ctx, TU_SHAPE(2, 2), 0.1);
    check_case(ctx, gram_case, 1, &b2);
    jac_tensor *b3 = tu_smooth_leaf(ctx, TU_SHAPE(3, 3), 0.2);
    check_case(ctx, gram_case, 1, &b3);
    jac_tensor *bb = tu_smooth_leaf(ctx, TU_SHAPE(2, 3, 3), 0.3);
    check_case(ctx, gram_case, 1, &bb);
    /* On A itself: moves above the diagonal change nothing, and moves
     * below it keep A positive definite. */
    la_case direct = {.op = LA_CHOLESKY};
    jac_tensor *a3 = matrix_leaf(ctx, TU_SHAPE(3, 3), 0.4);
    check_case(ctx, direct, 1, &a3);
    jac_tensor *ab = matrix_leaf(ctx, TU_SHAPE(2, 3, 3), 0.5);
    check_case(ctx, direct, 1, &ab);
}

static void test_cholesky_rejects_matrices_not_positive_definite(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a =
        tu_tensor(ctx, TU_SHAPE(2, 2, 2), TU_VALUES(2, 0, 0, 2, 1, 2, 2, 1));
    assert_null(jac_cholesky(ctx, a));
    assert_error_names(ctx, JAC_ERR_VALUE, "cholesky", "matrix 1 ");
    assert_null(jac_cholesky(ctx, jac_zeros(ctx, 2, TU_SHAPE(2, 2))));
    assert_error_names(ctx, JAC_ERR_VALUE, "cholesky", "positive definite");
    assert_null(jac_cholesky(ctx, jac_zeros(ctx, 2, TU_SHAPE(2, 3))));
    assert_error_names(ctx, JAC_ERR_SHAPE, "cholesky", "(2, 3)");
    tu_assert_shape(jac_cholesky(ctx, jac_zeros(ctx, 3, TU_SHAPE(4, 0, 0))),
                    TU_SHAPE(4, 0, 0));
    tu_assert_no_error(ctx);
}

/* ---------------------------------------------------------------------- */
/* triangular_solve (internal)                                             */
/* ---------------------------------------------------------------------- */

static void test_triangular_solve_reads_one_triangle(void **state)
{
    jac_ctx *ctx = *state;
    /* Lower part [[2, 0], [1, 4]], upper part [[2, 3], [0, 4]]. */
    jac_tensor *t = tu_tensor(ctx, TU_SHAPE(2, 2), TU_VALUES(2, 3, 1, 4));
    jac_tensor *b = tu_tensor(ctx, TU_SHAPE(2, 1), TU_VALUES(2, 9));
    tu_assert_tensor(jac__triangular_solve(ctx, t, b, true, false),
                     TU_SHAPE(2, 1), TU_VALUES(1, 2), 1e-15);
    /* [[2, 1], [0, 4]] x = b */
    tu_assert_tensor(jac__triangular_solve(ctx, t, b, true, true),
                     TU_SHAPE(2, 1), TU_VALUES(-0.125, 2.25), 1e-15);
    /* [[2, 3], [0, 4]] x = b */
    tu_assert_tensor(jac__triangular_solve(ctx, t, b, false, false),
                     TU_SHAPE(2, 1), TU_VALUES(-2.375, 2.25), 1e-15);
    /* [[2, 0], [3, 4]] x = b */
    tu_assert_tensor(jac__triangular_solve(ctx, t, b, false, true),
                     TU_SHAPE(2, 1), TU_VALUES(1, 1.5), 1e-15);
    jac_tensor *z = tu_tensor(ctx, TU_SHAPE(2, 2), TU_VALUES(1, 0, 5, 0));
    assert_null(jac__triangular_solve(ctx, z, b, true, false));
    assert_error_names(ctx, JAC_ERR_VALUE, "triangular_solve", "singular");
}

static void
test_triangular_solve_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    for (int f = 0; f < 4; f++) {
        la_case c = {.op = LA_TRIANGULAR_SOLVE,
                     .lower = (f & 1) != 0,
                     .trans = (f & 2) != 0};
        jac_tensor *in[2] = {matrix_leaf(ctx, TU_SHAPE(3, 3), 0.3 * f),
                             tu_smooth_leaf(ctx, TU_SHAPE(3, 2), 0.2)};
        check_case(ctx, c, 2, in);
        jac_tensor *bin[2] = {matrix_leaf(ctx, TU_SHAPE(2, 3, 3), 0.1),
                              tu_smooth_leaf(ctx, TU_SHAPE(3, 1), 0.7)};
        check_case(ctx, c, 2, bin);
        jac_tensor *bcast[2] = {matrix_leaf(ctx, TU_SHAPE(2, 2), 0.9),
                                tu_smooth_leaf(ctx, TU_SHAPE(2, 2, 3), 0.4)};
        check_case(ctx, c, 2, bcast);
    }
}

/* ---------------------------------------------------------------------- */
/* Shared behaviour                                                        */
/* ---------------------------------------------------------------------- */

/* A NULL input after an error returns NULL and keeps the first error. */
static void test_ops_keep_the_first_error_on_null_inputs(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *bad = jac_inverse(ctx, jac_zeros(ctx, 2, TU_SHAPE(2, 3)));
    assert_null(bad);
    tu_assert_error(ctx, JAC_ERR_SHAPE);
    assert_null(jac_det(ctx, bad));
    assert_null(jac_logdet(ctx, bad));
    assert_null(jac_cholesky(ctx, bad));
    assert_null(jac_inverse(ctx, bad));
    assert_null(jac_solve(ctx, bad, bad));
    assert_null(jac_permute(ctx, bad, NULL));
    assert_null(jac_diagonal(ctx, bad, 0, 0, 1));
    assert_null(jac_dot(ctx, bad, bad));
    assert_null(jac_outer(ctx, bad, bad));
    assert_null(jac_trace(ctx, bad));
    assert_error_names(ctx, JAC_ERR_SHAPE, "inverse", NULL);
    assert_null(jac_trace(ctx, NULL));
    assert_error_names(ctx, JAC_ERR_NULL_ARG, "trace", NULL);
}

/* The gradient of sum(sin(op(x))), recorded: its second derivatives are
 * the op's third, which run the rules of the ops that the op's own rule
 * recorded (inverse inside det's, triangular_solve inside cholesky's). */
static jac_status run_gradient(jac_ctx *ctx, jac_tensor *const *in,
                               jac_tensor **out, void *user)
{
    bool was = jac_set_grad_enabled(ctx, true);
    jac_tensor *y = NULL;
    jac_status st = run_case(ctx, in, &y, user);
    if (st == JAC_OK) {
        y = jac_sum(ctx, jac_sin(ctx, y));
        st = y ? jac_grad(ctx, 1, &y, NULL, 1, in, JAC_CREATE_GRAPH, out)
               : jac_errcode(ctx);
    }
    jac_set_grad_enabled(ctx, was);
    return st;
}

static void test_third_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    la_case cases[] = {{.op = LA_DET},
                       {.op = LA_LOGDET},
                       {.op = LA_INVERSE},
                       {.op = LA_CHOLESKY_OF_GRAM},
                       {.op = LA_CHOLESKY}};
    for (size_t k = 0; k < TU_COUNT(cases); k++) {
        jac_tensor *a = cases[k].op == LA_CHOLESKY_OF_GRAM
                            ? tu_smooth_leaf(ctx, TU_SHAPE(2, 2), 0.6)
                            : matrix_leaf(ctx, TU_SHAPE(2, 2), 0.2);
        tu_gradgradcheck(ctx, run_gradient, &cases[k], 1, &a, 1);
    }
    la_case c = {.op = LA_SOLVE};
    jac_tensor *in[2] = {matrix_leaf(ctx, TU_SHAPE(2, 2), 0.3),
                         tu_smooth_leaf(ctx, TU_SHAPE(2), 0.8)};
    tu_gradgradcheck(ctx, run_gradient, &c, 1, in, 1);
}

/* ---------------------------------------------------------------------- */
/* lstsq, pinv, eigh                                                       */
/* ---------------------------------------------------------------------- */

static void test_lstsq_and_pinv_solve_worked_examples(void **state)
{
    jac_ctx *ctx = *state;
    /* a^T a = [[2, 1], [1, 2]], a^T b = [4, 5]: x = [1, 2], residual 0. */
    jac_tensor *a = tu_tensor(ctx, TU_SHAPE(3, 2), TU_VALUES(1, 0, 0, 1, 1, 1));
    jac_tensor *b = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(1, 2, 3));
    tu_assert_tensor(jac_lstsq(ctx, a, b), TU_SHAPE(2), TU_VALUES(1, 2), 1e-15);
    /* An inconsistent system: the normal equations' solution. */
    jac_tensor *b2 = tu_tensor(ctx, TU_SHAPE(3, 1), TU_VALUES(1, 1, 0));
    tu_assert_tensor(jac_lstsq(ctx, a, b2), TU_SHAPE(2, 1),
                     TU_VALUES(1.0 / 3.0, 1.0 / 3.0), 1e-15);
    /* pinv of a row vector is its transpose over its squared norm. */
    jac_tensor *row = tu_tensor(ctx, TU_SHAPE(1, 3), TU_VALUES(1, 2, 3));
    tu_assert_tensor(jac_pinv(ctx, row), TU_SHAPE(3, 1),
                     TU_VALUES(1.0 / 14, 2.0 / 14, 3.0 / 14), 1e-16);
    jac_tensor *p = jac_pinv(ctx, a); /* (a^T a)^-1 a^T */
    tu_assert_tensor(
        p, TU_SHAPE(2, 3),
        TU_VALUES(2.0 / 3, -1.0 / 3, 1.0 / 3, -1.0 / 3, 2.0 / 3, 1.0 / 3),
        1e-15);
    tu_assert_no_error(ctx);
}

static void test_lstsq_refuses_rank_deficient_wide_and_non_finite(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *b = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(1, 2, 3));
    jac_tensor *rank1 =
        tu_tensor(ctx, TU_SHAPE(3, 2), TU_VALUES(1, 2, 2, 4, 3, 6));
    assert_null(jac_lstsq(ctx, rank1, b));
    tu_assert_error(ctx, JAC_ERR_VALUE);
    tu_assert_contains(jac_errmsg(ctx), "full column rank");
    jac_clear_error(ctx);
    assert_null(jac_pinv(ctx, rank1));
    tu_assert_contains(jac_errmsg(ctx), "pinv");
    jac_clear_error(ctx);
    jac_tensor *wide =
        tu_tensor(ctx, TU_SHAPE(2, 3), TU_VALUES(1, 0, 0, 0, 1, 0));
    assert_null(jac_lstsq(ctx, wide, jac_ones(ctx, 1, TU_SHAPE(2))));
    tu_assert_error(ctx, JAC_ERR_SHAPE);
    tu_assert_contains(jac_errmsg(ctx), "jac_pinv");
    jac_clear_error(ctx);
    jac_tensor *nan =
        tu_tensor(ctx, TU_SHAPE(3, 2), TU_VALUES(1, 0, 0, NAN, 1, 1));
    assert_null(jac_lstsq(ctx, nan, b));
    tu_assert_error(ctx, JAC_ERR_VALUE);
    tu_assert_contains(jac_errmsg(ctx), "lstsq: a (shape (3, 2)) holds nan");
    jac_clear_error(ctx);
}

static void test_eigh_of_a_known_matrix(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = tu_tensor(ctx, TU_SHAPE(2, 2), TU_VALUES(2, 1, 1, 2));
    jac_tensor *w = NULL, *v = NULL;
    tu_assert_ok(ctx, jac_eigh(ctx, a, &w, &v));
    tu_assert_tensor(w, TU_SHAPE(2), TU_VALUES(1, 3), 1e-15);
    double r = sqrt(0.5);
    /* Columns (1, -1)/sqrt 2 and (1, 1)/sqrt 2, each with its largest
     * (first of equal) entry positive. */
    tu_assert_tensor(v, TU_SHAPE(2, 2), TU_VALUES(r, r, -r, r), 1e-15);
    /* Values alone; only the lower triangle is read. */
    jac_tensor *lower = tu_tensor(ctx, TU_SHAPE(2, 2), TU_VALUES(2, 99, 1, 2));
    jac_tensor *w2 = NULL;
    tu_assert_ok(ctx, jac_eigh(ctx, lower, &w2, NULL));
    tu_assert_tensor(w2, TU_SHAPE(2), TU_VALUES(1, 3), 1e-15);
    /* d lambda / dA = v v^T (symmetric). */
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2, 2), TU_VALUES(2, 1, 1, 2));
    jac_tensor *wx = NULL;
    tu_assert_ok(ctx, jac_eigh(ctx, x, &wx, NULL));
    jac_tensor *top = jac_select(ctx, wx, 0, 1), *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &top, NULL, 1, &x, 0, &g));
    tu_assert_tensor(g, TU_SHAPE(2, 2), TU_VALUES(0.5, 0.5, 0.5, 0.5), 1e-15);
    assert_int_equal(jac_eigh(ctx, a, NULL, NULL), JAC_ERR_NULL_ARG);
    jac_clear_error(ctx);
    jac_tensor *inf =
        tu_tensor(ctx, TU_SHAPE(2, 2), TU_VALUES(1, 0, INFINITY, 1));
    assert_int_equal(jac_eigh(ctx, inf, &w, NULL), JAC_ERR_VALUE);
    jac_clear_error(ctx);
}

/* Every LAPACK op refuses NaN and infinity in its matrix, naming itself,
 * where it used to return NaN with JAC_OK. */
static void test_non_finite_matrices_are_refused_naming_the_op(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *m = tu_leaf(ctx, TU_SHAPE(2, 2), TU_VALUES(2, NAN, 0, 2));
    jac_tensor *v = tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(1, 1));
    const char *names[] = {"solve", "inverse", "logdet", "cholesky"};
    for (int k = 0; k < 4; k++) {
        jac_tensor *r = k == 0   ? jac_solve(ctx, m, v)
                        : k == 1 ? jac_inverse(ctx, m)
                        : k == 2 ? jac_logdet(ctx, m)
                                 : jac_cholesky(ctx, m);
        assert_null(r);
        tu_assert_error(ctx, JAC_ERR_VALUE);
        tu_assert_contains(jac_errmsg(ctx), names[k]);
        tu_assert_contains(jac_errmsg(ctx), "nan");
        jac_clear_error(ctx);
    }
    /* det itself is NaN; its derivative, which needs the inverse, fails. */
    jac_tensor *d = jac_det(ctx, m), *g = NULL;
    assert_true(isnan(jac_tensor_item(d)));
    assert_int_equal(jac_grad(ctx, 1, &d, NULL, 1, &m, 0, &g), JAC_ERR_VALUE);
    tu_assert_contains(jac_errmsg(ctx), "det");
    jac_clear_error(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_lstsq_and_pinv_solve_worked_examples),
        TU_TEST(test_lstsq_refuses_rank_deficient_wide_and_non_finite),
        TU_TEST(test_eigh_of_a_known_matrix),
        TU_TEST(test_non_finite_matrices_are_refused_naming_the_op),
        TU_TEST(test_permute_reorders_axes_as_torch),
        TU_TEST(test_permute_of_rank_0_and_empty_tensors),
        TU_TEST(test_permute_derivatives_match_finite_difference),
        TU_TEST(test_permute_rejects_non_permutations),
        TU_TEST(test_dot_outer_trace_values_match_torch),
        TU_TEST(test_dot_outer_trace_derivatives_match_finite_difference),
        TU_TEST(test_dot_outer_trace_reject_bad_shapes),
        TU_TEST(test_diagonal_follows_numpy_offsets),
        TU_TEST(test_diagonal_over_other_axes_moves_it_last),
        TU_TEST(test_diagonal_derivatives_match_finite_difference),
        TU_TEST(test_diagonal_gradient_is_the_embedded_seed),
        TU_TEST(test_diagonal_rejects_bad_axes),
        TU_TEST(test_inverse_values_match_torch),
        TU_TEST(test_inverse_times_matrix_is_identity),
        TU_TEST(test_inverse_gradient_matches_torch),
        TU_TEST(test_inverse_derivatives_match_finite_difference),
        TU_TEST(test_inverse_of_empty_matrices),
        TU_TEST(test_inverse_of_singular_matrix_names_the_batch_element),
        TU_TEST(test_lapack_ops_refuse_extents_beyond_int),
        TU_TEST(test_det_values_match_torch),
        TU_TEST(test_det_of_singular_and_empty_matrices),
        TU_TEST(test_det_gradient_matches_torch),
        TU_TEST(test_det_derivatives_match_finite_difference),
        TU_TEST(test_det_derivative_at_a_singular_matrix_fails),
        TU_TEST(test_logdet_values_match_torch),
        TU_TEST(test_logdet_gradient_matches_torch),
        TU_TEST(test_logdet_derivatives_match_finite_difference),
        TU_TEST(test_logdet_rejects_singular_and_negative_determinants),
        TU_TEST(test_solve_values_match_torch),
        TU_TEST(test_solve_gradient_matches_torch),
        TU_TEST(test_solve_derivatives_match_finite_difference),
        TU_TEST(test_solve_rejects_bad_shapes_and_singular_matrices),
        TU_TEST(test_cholesky_values_match_torch),
        TU_TEST(test_cholesky_factor_times_its_transpose_is_the_matrix),
        TU_TEST(test_cholesky_reads_only_the_lower_triangle),
        TU_TEST(test_cholesky_gradient_lives_in_the_lower_triangle),
        TU_TEST(test_cholesky_derivatives_match_finite_difference),
        TU_TEST(test_cholesky_rejects_matrices_not_positive_definite),
        TU_TEST(test_triangular_solve_reads_one_triangle),
        TU_TEST(test_triangular_solve_derivatives_match_finite_difference),
        TU_TEST(test_ops_keep_the_first_error_on_null_inputs),
        TU_TEST(test_third_derivatives_match_finite_difference),
    };
    return cmocka_run_group_tests_name("ops_linalg", tests, NULL, NULL);
}
