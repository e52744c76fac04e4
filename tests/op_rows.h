/*
 * The op test table: one row per public op, read by test_optable.c (every
 * recorded op of src/ops/ops.h must be reached by some row, and each row's
 * first and second derivatives, raw kernels and NULL arguments are
 * checked) and by test_hostile.c (a public function with a row here needs
 * no row of its own in the NULL table).
 *
 * X(label, function, nin, shapes, lo, hi, call)
 * - function: the public function the row calls (for the header checks);
 * - nin: tensor inputs, in[0] .. in[nin - 1];
 * - shapes: their shapes, e.g. "2,3 3" for a (2, 3) and a (3); "" for
 *   rank 0 is written "-";
 * - lo, hi: the inputs' values lie in (lo, hi), away from kinks and
 *   singularities the row does not mean to test;
 * - call: the call, in parentheses, an expression of ctx and in[].
 *
 * A new op adds its row here, reaching the op alone where it can.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef LIBJACOBIAN_OP_ROWS_H
#define LIBJACOBIAN_OP_ROWS_H

#include "jacobian.h"

#include <stdlib.h>

/* A (3, 3) matrix that is well conditioned for any in[0] of the row's
 * domain, and one that is symmetric positive definite. */
#define OP_ROWS_WELL(ctx, a)                                                   \
    jac_add((ctx), (a), jac_mul_scalar((ctx), jac_eye((ctx), 3), 3.0))
#define OP_ROWS_SPD(ctx, a)                                                    \
    OP_ROWS_WELL((ctx), jac_matmul((ctx), (a), jac_transpose((ctx), (a), 0, 1)))

/* The symmetric part of a (3, 3), and its eigenvalues or eigenvectors. */
#define OP_ROWS_SYM(ctx, a)                                                    \
    jac_mul_scalar((ctx),                                                      \
                   jac_add((ctx), (a), jac_transpose((ctx), (a), 0, 1)), 0.5)
static inline jac_tensor *op_rows_eigh(jac_ctx *ctx, jac_tensor *a,
                                       bool vectors)
{
    jac_tensor *w = NULL, *v = NULL;
    if (jac_eigh(ctx, a, &w, &v) != JAC_OK)
        return NULL;
    return vectors ? v : w;
}

/* A constant (4) condition of zeros and ones. */
#define OP_ROWS_COND(ctx)                                                      \
    jac_tensor_new((ctx), 1, (const int64_t[]){4},                             \
                   (const double[]){1.0, 0.0, 0.0, 1.0})

#define OP_ROWS(X)                                                             \
    /* arith.c */                                                              \
    X(add, jac_add, 2, "2,3 3", -1.0, 1.0, (jac_add(ctx, in[0], in[1])))       \
    X(sub, jac_sub, 2, "3 2,3", -1.0, 1.0, (jac_sub(ctx, in[0], in[1])))       \
    X(mul, jac_mul, 2, "2,3 2,3", -1.0, 1.0, (jac_mul(ctx, in[0], in[1])))     \
    X(mul_broadcast, jac_mul, 2, "2,1 1,3", -1.0, 1.0,                         \
      (jac_mul(ctx, in[0], in[1])))                                            \
    X(div, jac_div, 2, "2,3 2,3", 0.5, 2.0, (jac_div(ctx, in[0], in[1])))      \
    X(div_broadcast, jac_div, 2, "2,3 -", 0.5, 2.0,                            \
      (jac_div(ctx, in[0], in[1])))                                            \
    X(pow, jac_pow, 2, "2,3 3", 0.5, 2.0, (jac_pow(ctx, in[0], in[1])))        \
    X(maximum, jac_maximum, 2, "4 4", -1.0, 1.0,                               \
      (jac_maximum(ctx, in[0], in[1])))                                        \
    X(minimum, jac_minimum, 2, "4 4", -1.0, 1.0,                               \
      (jac_minimum(ctx, in[0], in[1])))                                        \
    X(atan2, jac_atan2, 2, "4 4", 0.5, 2.0, (jac_atan2(ctx, in[0], in[1])))    \
    /* compare.c: piecewise constant, so finite differences away from ties     \
     * are 0; where_gt is a branch on one */                                   \
    X(gt, jac_gt, 2, "2,3 3", -1.0, 1.0, (jac_gt(ctx, in[0], in[1])))          \
    X(ge, jac_ge, 2, "3 2,3", -1.0, 1.0, (jac_ge(ctx, in[0], in[1])))          \
    X(lt, jac_lt, 2, "2,1 1,3", -1.0, 1.0, (jac_lt(ctx, in[0], in[1])))        \
    X(le, jac_le, 2, "2,3 -", -1.0, 1.0, (jac_le(ctx, in[0], in[1])))          \
    X(eq, jac_eq, 2, "2,3 3", -1.0, 1.0, (jac_eq(ctx, in[0], in[1])))          \
    X(eq_self, jac_eq, 1, "2,3", -1.0, 1.0, (jac_eq(ctx, in[0], in[0])))       \
    X(ne, jac_ne, 2, "4 4", -1.0, 1.0, (jac_ne(ctx, in[0], in[1])))            \
    X(where_gt, jac_where, 2, "2,3 3", -1.0, 1.0,                              \
      (jac_where(ctx, jac_gt(ctx, in[0], in[1]), jac_sin(ctx, in[0]),          \
                 jac_mul(ctx, in[0], in[1]))))                                 \
    /* functions.c */                                                          \
    X(affine, jac_add_scalar, 1, "2,3", -1.0, 1.0,                             \
      (jac_add_scalar(ctx, jac_mul_scalar(ctx, in[0], 1.5), 0.25)))            \
    X(div_scalar, jac_div_scalar, 1, "4", -1.0, 1.0,                           \
      (jac_div_scalar(ctx, in[0], 3.0)))                                       \
    X(pow_scalar, jac_pow_scalar, 1, "4", 0.5, 2.0,                            \
      (jac_pow_scalar(ctx, in[0], 3.5)))                                       \
    X(exp, jac_exp, 1, "2,3", -1.0, 1.0, (jac_exp(ctx, in[0])))                \
    X(log, jac_log, 1, "2,3", 0.5, 2.0, (jac_log(ctx, in[0])))                 \
    X(sin, jac_sin, 1, "2,3", -2.0, 2.0, (jac_sin(ctx, in[0])))                \
    X(cos, jac_cos, 1, "2,3", -2.0, 2.0, (jac_cos(ctx, in[0])))                \
    X(tanh, jac_tanh, 1, "2,3", -2.0, 2.0, (jac_tanh(ctx, in[0])))             \
    X(abs, jac_abs, 1, "5", -1.0, 1.0, (jac_abs(ctx, in[0])))                  \
    X(sign, jac_sign, 1, "5", -1.0, 1.0, (jac_sign(ctx, in[0])))               \
    X(sqrt, jac_sqrt, 1, "5", 0.5, 2.0, (jac_sqrt(ctx, in[0])))                \
    X(rsqrt, jac_rsqrt, 1, "5", 0.5, 2.0, (jac_rsqrt(ctx, in[0])))             \
    X(square, jac_square, 1, "5", -1.0, 1.0, (jac_square(ctx, in[0])))         \
    X(reciprocal, jac_reciprocal, 1, "5", 0.5, 2.0,                            \
      (jac_reciprocal(ctx, in[0])))                                            \
    X(expm1, jac_expm1, 1, "5", -1.0, 1.0, (jac_expm1(ctx, in[0])))            \
    X(log1p, jac_log1p, 1, "5", -0.5, 1.0, (jac_log1p(ctx, in[0])))            \
    X(tan, jac_tan, 1, "5", -1.0, 1.0, (jac_tan(ctx, in[0])))                  \
    X(asin, jac_asin, 1, "5", -0.8, 0.8, (jac_asin(ctx, in[0])))               \
    X(acos, jac_acos, 1, "5", -0.8, 0.8, (jac_acos(ctx, in[0])))               \
    X(atan, jac_atan, 1, "5", -2.0, 2.0, (jac_atan(ctx, in[0])))               \
    X(sinh, jac_sinh, 1, "5", -2.0, 2.0, (jac_sinh(ctx, in[0])))               \
    X(cosh, jac_cosh, 1, "5", -2.0, 2.0, (jac_cosh(ctx, in[0])))               \
    X(asinh, jac_asinh, 1, "5", -2.0, 2.0, (jac_asinh(ctx, in[0])))            \
    X(sigmoid, jac_sigmoid, 1, "5", -3.0, 3.0, (jac_sigmoid(ctx, in[0])))      \
    X(relu, jac_relu, 1, "5", -1.0, 1.0, (jac_relu(ctx, in[0])))               \
    X(softplus, jac_softplus, 1, "5", -3.0, 3.0, (jac_softplus(ctx, in[0])))   \
    X(erf, jac_erf, 1, "5", -2.0, 2.0, (jac_erf(ctx, in[0])))                  \
    X(clamp, jac_clamp, 1, "5", -1.0, 1.0, (jac_clamp(ctx, in[0], -0.5, 0.5))) \
    /* reduce.c */                                                             \
    X(sum, jac_sum, 1, "2,3", -1.0, 1.0, (jac_sum(ctx, in[0])))                \
    X(sum_axis, jac_sum_axis, 1, "2,3,2", -1.0, 1.0,                           \
      (jac_sum_axis(ctx, in[0], 1, true)))                                     \
    X(sum_to_shape, jac_sum_to_shape, 1, "2,3,4", -1.0, 1.0,                   \
      (jac_sum_to_shape(ctx, in[0], 2, (const int64_t[]){3, 1})))              \
    X(expand, jac_expand, 1, "3,1", -1.0, 1.0,                                 \
      (jac_expand(ctx, in[0], 3, (const int64_t[]){2, 3, 4})))                 \
    X(cumsum, jac_cumsum, 1, "2,3,2", -1.0, 1.0, (jac_cumsum(ctx, in[0], 1)))  \
    X(cumsum_last, jac_cumsum, 1, "4", -1.0, 1.0,                              \
      (jac_cumsum(ctx, in[0], -1)))                                            \
    /* stats.c */                                                              \
    X(prod, jac_prod, 1, "2,3", 0.5, 2.0, (jac_prod(ctx, in[0])))              \
    X(prod_axes, jac_prod_axes, 1, "2,3", -1.0, 1.0,                           \
      (jac_prod_axes(ctx, in[0], 1, (const int[]){1}, false)))                 \
    X(max, jac_max, 1, "2,3", -1.0, 1.0, (jac_max(ctx, in[0])))                \
    X(min, jac_min, 1, "2,3", -1.0, 1.0, (jac_min(ctx, in[0])))                \
    X(norm, jac_norm, 1, "2,3", -1.0, 1.0,                                     \
      (jac_norm(ctx, in[0], 2.0, 1, (const int[]){0}, false)))                 \
    X(softmax, jac_softmax, 1, "2,3", -2.0, 2.0, (jac_softmax(ctx, in[0], 1))) \
    X(logsumexp, jac_logsumexp, 1, "2,3", -2.0, 2.0,                           \
      (jac_logsumexp(ctx, in[0], 1, (const int[]){1}, false)))                 \
    X(log_softmax, jac_log_softmax, 1, "2,3", -2.0, 2.0,                       \
      (jac_log_softmax(ctx, in[0], 0)))                                        \
    /* linalg.c */                                                             \
    X(matmul, jac_matmul, 2, "2,3 3,4", -1.0, 1.0,                             \
      (jac_matmul(ctx, in[0], in[1])))                                         \
    X(matvec, jac_matmul, 2, "2,3 3", -1.0, 1.0,                               \
      (jac_matmul(ctx, in[0], in[1])))                                         \
    X(matmul_batched, jac_matmul, 2, "2,2,3 3,2", -1.0, 1.0,                   \
      (jac_matmul(ctx, in[0], in[1])))                                         \
    X(transpose, jac_transpose, 1, "2,3", -1.0, 1.0,                           \
      (jac_transpose(ctx, in[0], 0, 1)))                                       \
    X(permute, jac_permute, 1, "2,3,4", -1.0, 1.0,                             \
      (jac_permute(ctx, in[0], (const int[]){2, 0, 1})))                       \
    X(diagonal, jac_diagonal, 1, "3,4", -1.0, 1.0,                             \
      (jac_diagonal(ctx, in[0], 1, 0, 1)))                                     \
    /* lapack.c */                                                             \
    X(solve, jac_solve, 2, "3,3 3,2", -1.0, 1.0,                               \
      (jac_solve(ctx, OP_ROWS_WELL(ctx, in[0]), in[1])))                       \
    X(inverse, jac_inverse, 1, "3,3", -1.0, 1.0,                               \
      (jac_inverse(ctx, OP_ROWS_WELL(ctx, in[0]))))                            \
    X(det, jac_det, 1, "3,3", -1.0, 1.0,                                       \
      (jac_det(ctx, OP_ROWS_WELL(ctx, in[0]))))                                \
    X(logdet, jac_logdet, 1, "3,3", -1.0, 1.0,                                 \
      (jac_logdet(ctx, OP_ROWS_SPD(ctx, in[0]))))                              \
    X(cholesky, jac_cholesky, 1, "3,3", -1.0, 1.0,                             \
      (jac_cholesky(ctx, OP_ROWS_SPD(ctx, in[0]))))                            \
    X(lstsq, jac_lstsq, 2, "4,3 4,2", -1.0, 1.0,                               \
      (jac_lstsq(ctx, in[0], in[1])))                                          \
    X(lstsq_vector, jac_lstsq, 2, "4,2 4", -1.0, 1.0,                          \
      (jac_lstsq(ctx, in[0], in[1])))                                          \
    X(pinv_wide, jac_pinv, 1, "2,3", -1.0, 1.0, (jac_pinv(ctx, in[0])))        \
    X(pinv_tall, jac_pinv, 1, "3,2", -1.0, 1.0, (jac_pinv(ctx, in[0])))        \
    X(eigh_values, jac_eigh, 1, "3,3", -1.0, 1.0,                              \
      (op_rows_eigh(ctx, OP_ROWS_SYM(ctx, in[0]), false)))                     \
    X(eigh_vectors, jac_eigh, 1, "3,3", -1.0, 1.0,                             \
      (op_rows_eigh(ctx, OP_ROWS_SYM(ctx, in[0]), true)))                      \
    /* shape.c */                                                              \
    X(reshape, jac_reshape, 1, "2,3", -1.0, 1.0,                               \
      (jac_reshape(ctx, in[0], 2, (const int64_t[]){3, 2})))                   \
    X(slice, jac_slice, 1, "5,2", -1.0, 1.0,                                   \
      (jac_slice(ctx, in[0], 0, 1, 5, 2)))                                     \
    X(select, jac_select, 1, "3,4", -1.0, 1.0,                                 \
      (jac_select(ctx, in[0], 0, -2)))                                         \
    X(concat, jac_concat, 2, "2,3 1,3", -1.0, 1.0,                             \
      (jac_concat(ctx, 2, (jac_tensor *const[]){in[0], in[1]}, 0)))            \
    X(index_select, jac_index_select, 1, "2,3", -1.0, 1.0,                     \
      (jac_index_select(ctx, in[0], 1, 3, (const int64_t[]){2, 0, 2})))        \
    X(gather, jac_gather, 1, "2,3", -1.0, 1.0,                                 \
      (jac_gather(ctx, in[0], 1, (const int64_t[]){2, 2},                      \
                  (const int64_t[]){0, 2, 1, 1})))                             \
    X(where, jac_where, 2, "4 4", -1.0, 1.0,                                   \
      (jac_where(ctx, OP_ROWS_COND(ctx), in[0], in[1])))                       \
    X(pad, jac_pad, 1, "2,3", -1.0, 1.0,                                       \
      (jac_pad(ctx, in[0], (const int64_t[]){1, 0}, (const int64_t[]){0, 2})))

/* The rows as a table of functions, for the suites that walk it: each
 * row's call as a function of ctx and in[], and op_rows_table[]. Expand
 * OP_ROWS_TABLE once in a test file. */
typedef jac_tensor *op_rows_call_fn(jac_ctx *ctx, jac_tensor *const *in);

typedef struct op_row {
    const char *label;
    const char *function;
    int nin;
    const char *shapes;
    double lo, hi;
    op_rows_call_fn *call;
} op_row;

#define OP_ROWS_CALL(label, function, nin, shapes, lo, hi, call)               \
    static jac_tensor *op_rows_call_##label(jac_ctx *ctx,                      \
                                            jac_tensor *const *in)             \
    {                                                                          \
        return call;                                                           \
    }
#define OP_ROWS_ENTRY(label, function, nin, shapes, lo, hi, call)              \
    {#label, #function, nin, shapes, lo, hi, op_rows_call_##label},
#define OP_ROWS_TABLE                                                          \
    OP_ROWS(OP_ROWS_CALL)                                                      \
    static const op_row op_rows_table[] = {OP_ROWS(OP_ROWS_ENTRY)};

/* The shape of an input of a row, from its shapes string ("2,3 4": one
 * shape per input, "-" for a scalar). */
typedef struct op_rows_shape {
    int ndim;
    int64_t shape[JAC_MAX_DIMS];
    int64_t numel;
} op_rows_shape;

static inline void op_rows_shapes(const op_row *r, op_rows_shape *s)
{
    const char *p = r->shapes;
    for (int k = 0; k < r->nin; k++) {
        s[k].ndim = 0;
        while (*p == ' ')
            p++;
        if (*p == '-') {
            p++;
        } else {
            while (*p >= '0' && *p <= '9') {
                s[k].shape[s[k].ndim++] = strtoll(p, (char **)&p, 10);
                if (*p == ',')
                    p++;
            }
        }
        s[k].numel = 1;
        for (int i = 0; i < s[k].ndim; i++)
            s[k].numel *= s[k].shape[i];
    }
}

/* A row as a jac_fn (user: the row). */
static inline jac_status op_rows_run(jac_ctx *ctx, jac_tensor *const *in,
                                     jac_tensor **out, void *user)
{
    const op_row *r = user;
    out[0] = r->call(ctx, in);
    if (out[0] == NULL)
        return jac_errcode(ctx) != JAC_OK ? jac_errcode(ctx) : JAC_ERR_STATE;
    return JAC_OK;
}

#endif /* LIBJACOBIAN_OP_ROWS_H */
