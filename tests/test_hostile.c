/*
 * Hostile input: every public function given NULL in each pointer argument
 * (and NULL entries inside the arrays it reads), ranks above the limit,
 * negative and overflowing extents, NaN and infinity in the data, tensors of
 * another context or of a released scope, repeated inputs to jac_grad, and
 * zero-size tensors through every op. Nothing may crash, abort, print or
 * read freed memory; every refusal is a status with a message.
 *
 * The NULL table is checked against include/jacobian.h itself: a public
 * function without a row, or a row whose count of pointer arguments differs
 * from the prototype, fails the suite. An op whose only pointer arguments
 * are the context and its tensors may have its row in the op test table
 * (tests/op_rows.h) instead, where test_optable.c gives it NULL for each.
 *
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L /* mkstemp */

#include "op_rows.h"
#include "testutil.h"

#include <ctype.h>
#include <stdint.h>
#include <unistd.h>

/* Hostile inputs tried by the whole suite, reported at its end. */
static size_t inputs_tried;

/* ------------------------------------------------------------------------ */
/* Fixture                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct fixture {
    jac_ctx *ctx;
    jac_tensor *v3;    /* (3) leaf requiring gradients */
    jac_tensor *m2;    /* (2, 2) symmetric positive definite leaf */
    jac_tensor *b2;    /* (2) constant */
    jac_tensor *y;     /* sum(sin(v3)), a recorded scalar */
    jac_tensor *ym;    /* m2 * m2, a recorded (2, 2) */
    jac_tensor *cond;  /* (3) of zeros and ones */
    jac_program *prog; /* sum(v3^2), recorded */
    jac_sparse *jplan; /* the sparse Jacobian of prog */
    jac_sparse *hplan; /* the sparse Hessian of prog */
    FILE *sink;        /* scratch stream for printing and writing */
    FILE *npy;         /* a stream holding one .npy array */
    char path[64];     /* a file holding one .npy array */
} fixture;

static fixture fx;

static jac_status sum_of_squares_fn(jac_ctx *ctx, jac_tensor *const *inputs,
                                    jac_tensor **outputs, void *user)
{
    (void)user;
    outputs[0] = jac_sum(ctx, jac_square(ctx, inputs[0]));
    return outputs[0] ? JAC_OK : jac_errcode(ctx);
}

static jac_status rowwise_fn(jac_ctx *ctx, jac_tensor *const *inputs,
                             jac_tensor **outputs, void *user)
{
    (void)user;
    outputs[0] = jac_tanh(ctx, inputs[0]);
    return outputs[0] ? JAC_OK : jac_errcode(ctx);
}

static int setup_fixture(void **state)
{
    (void)state;
    memset(&fx, 0, sizeof fx);
    fx.ctx = jac_ctx_new();
    if (fx.ctx == NULL) {
        return -1;
    }
    fx.v3 = jac_tensor_new(fx.ctx, 1, TU_SHAPE(3), TU_VALUES(0.5, 1.0, 1.5));
    fx.m2 =
        jac_tensor_new(fx.ctx, 2, TU_SHAPE(2, 2), TU_VALUES(2, 0.5, 0.5, 1));
    fx.b2 = jac_tensor_new(fx.ctx, 1, TU_SHAPE(2), TU_VALUES(1, -1));
    fx.cond = jac_tensor_new(fx.ctx, 1, TU_SHAPE(3), TU_VALUES(1, 0, 1));
    if (fx.v3 == NULL || fx.m2 == NULL || fx.b2 == NULL || fx.cond == NULL) {
        return -1;
    }
    jac_set_requires_grad(fx.v3, true);
    jac_set_requires_grad(fx.m2, true);
    fx.y = jac_sum(fx.ctx, jac_sin(fx.ctx, fx.v3));
    fx.ym = jac_mul(fx.ctx, fx.m2, fx.m2);
    if (jac_program_record(fx.ctx, sum_of_squares_fn, NULL, 1, &fx.v3, 0, NULL,
                           1, 0, &fx.prog) != JAC_OK ||
        jac_sparse_jacobian_plan(fx.prog, NULL, &fx.jplan) != JAC_OK ||
        jac_sparse_hessian_plan(fx.prog, NULL, &fx.hplan) != JAC_OK)
        return -1;
    fx.sink = tmpfile();
    fx.npy = tmpfile();
    snprintf(fx.path, sizeof fx.path, "/tmp/jac_hostile_XXXXXX");
    int fd = mkstemp(fx.path);
    if (fx.y == NULL || fx.ym == NULL || fx.sink == NULL || fx.npy == NULL ||
        fd < 0) {
        return -1;
    }
    close(fd);
    if (jac_save_npy(fx.m2, fx.path) != JAC_OK ||
        jac_write_npy(fx.m2, fx.npy) != JAC_OK) {
        return -1;
    }
    return 0;
}

static int teardown_fixture(void **state)
{
    (void)state;
    jac_sparse_free(fx.jplan);
    jac_sparse_free(fx.hplan);
    jac_program_free(fx.prog);
    if (fx.sink) {
        fclose(fx.sink);
    }
    if (fx.npy) {
        fclose(fx.npy);
    }
    if (fx.path[0]) {
        remove(fx.path);
    }
    jac_ctx_free(fx.ctx);
    memset(&fx, 0, sizeof fx);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The NULL table                                                           */
/* ------------------------------------------------------------------------ */

typedef enum {
    RES_POINTER, /* returns a tensor or context: NULL means refused */
    RES_STATUS,  /* returns a jac_status */
    RES_CHECKED, /* the row checks the returned value itself */
    RES_VOID
} result_kind;

typedef struct outcome {
    result_kind kind;
    bool ok; /* made / JAC_OK / the value the row expects */
} outcome;

static outcome pointer_result(const void *p)
{
    return (outcome){RES_POINTER, p != NULL};
}

static outcome status_result(jac_status st)
{
    return (outcome){RES_STATUS, st == JAC_OK};
}

static outcome checked(bool ok) { return (outcome){RES_CHECKED, ok}; }

static outcome void_result(void) { return (outcome){RES_VOID, true}; }

/* Argument i, or NULL when the row is asked to pass NULL there. */
#define P(i, ...) (null_at == (i) ? NULL : (__VA_ARGS__))
/* Whether the row passes NULL at position i. */
#define IS_NULL(i) (null_at == (i))

typedef outcome (*row_fn)(int null_at);

typedef struct row {
    const char *name;
    int nptr;          /* pointer arguments of the prototype, in order */
    int nextra;        /* further NULLs: entries of the arrays it reads */
    unsigned optional; /* bit i: NULL at position i is allowed */
    bool ctx_first;    /* argument 0 is the context that records errors */
    row_fn run;
} row;

/* Context, error state, counters. */

static outcome row_ctx_new(int null_at)
{
    (void)null_at;
    jac_ctx *c = jac_ctx_new();
    outcome o = pointer_result(c);
    jac_ctx_free(c);
    return o;
}

static void *plain_alloc(size_t size, void *user)
{
    (void)user;
    return malloc(size);
}

static void plain_free(void *ptr, void *user)
{
    (void)user;
    free(ptr);
}

static outcome row_ctx_new_with_allocator(int null_at)
{
    jac_allocator a = {plain_alloc, plain_free, NULL};
    jac_ctx *c = jac_ctx_new_with_allocator(P(0, &a));
    outcome o = pointer_result(c);
    jac_ctx_free(c);
    if (null_at < 0) {
        /* Hooks that are NULL are refused too. */
        jac_allocator no_alloc = {NULL, plain_free, NULL};
        jac_allocator no_free = {plain_alloc, NULL, NULL};
        o.ok = o.ok && jac_ctx_new_with_allocator(&no_alloc) == NULL &&
               jac_ctx_new_with_allocator(&no_free) == NULL;
    }
    return o;
}

static outcome row_ctx_free(int null_at)
{
    jac_ctx *c = jac_ctx_new();
    jac_ctx_free(P(0, c));
    if (IS_NULL(0)) {
        jac_ctx_free(c);
    }
    return void_result();
}

static outcome row_errcode(int null_at)
{
    jac_status st = jac_errcode(P(0, fx.ctx));
    return checked(IS_NULL(0) ? st == JAC_ERR_NULL_ARG : st == JAC_OK);
}

static outcome row_errmsg(int null_at)
{
    const char *m = jac_errmsg(P(0, fx.ctx));
    return checked(m != NULL && (IS_NULL(0) ? m[0] != '\0' : m[0] == '\0'));
}

static outcome row_clear_error(int null_at)
{
    jac_clear_error(P(0, fx.ctx));
    return void_result();
}

static outcome row_ctx_memory(int null_at)
{
    size_t n = jac_ctx_memory(P(0, fx.ctx));
    return checked(IS_NULL(0) ? n == 0 : n > 0);
}

static outcome row_ctx_tensor_count(int null_at)
{
    size_t n = jac_ctx_tensor_count(P(0, fx.ctx));
    return checked(IS_NULL(0) ? n == 0 : n > 0);
}

static outcome row_ctx_tape_length(int null_at)
{
    size_t n = jac_ctx_tape_length(P(0, fx.ctx));
    return checked(IS_NULL(0) ? n == 0 : n > 0);
}

static outcome row_set_grad_enabled(int null_at)
{
    bool was = jac_set_grad_enabled(P(0, fx.ctx), true);
    return checked(IS_NULL(0) ? !was : was);
}

static outcome row_is_grad_enabled(int null_at)
{
    bool on = jac_is_grad_enabled(P(0, fx.ctx));
    return checked(IS_NULL(0) ? !on : on);
}

static outcome row_ctx_set_threads(int null_at)
{
    return status_result(jac_ctx_set_threads(P(0, fx.ctx), 1));
}

static outcome row_ctx_threads(int null_at)
{
    int n = jac_ctx_threads(P(0, fx.ctx));
    return checked(IS_NULL(0) ? n == 0 : n == 1);
}

static outcome row_ctx_set_checks(int null_at)
{
    return status_result(jac_ctx_set_checks(P(0, fx.ctx), 0));
}

static outcome row_ctx_checks(int null_at)
{
    unsigned c = jac_ctx_checks(P(0, fx.ctx));
    return checked(c == 0);
}

static outcome row_eigh(int null_at)
{
    jac_tensor *w = NULL, *v = NULL;
    return status_result(
        jac_eigh(P(0, fx.ctx), P(1, fx.m2), P(2, &w), P(3, &v)));
}

static outcome row_ctx_set_memory_budget(int null_at)
{
    return status_result(
        jac_ctx_set_memory_budget(P(0, fx.ctx), (size_t)64 << 20));
}

static outcome row_version_number(int null_at)
{
    (void)null_at;
    return checked(jac_version_number() == JAC_VERSION_NUMBER);
}

static outcome row_version_string(int null_at)
{
    (void)null_at;
    return checked(strcmp(jac_version_string(), JAC_VERSION_STRING) == 0);
}

static outcome row_status_string(int null_at)
{
    (void)null_at;
    /* Out-of-range codes still give a string. */
    return checked(jac_status_string((jac_status)-1) != NULL &&
                   jac_status_string((jac_status)999) != NULL &&
                   jac_status_string(JAC_OK) != NULL);
}

static outcome row_status_name(int null_at)
{
    (void)null_at;
    return checked(jac_status_name((jac_status)-1) != NULL &&
                   jac_status_name((jac_status)999) != NULL &&
                   strcmp(jac_status_name(JAC_ERR_SHAPE), "JAC_ERR_SHAPE") ==
                       0);
}

/* Making tensors. */

static outcome row_tensor_new(int null_at)
{
    return pointer_result(jac_tensor_new(P(0, fx.ctx), 1, P(1, TU_SHAPE(2)),
                                         P(2, TU_VALUES(1, 2))));
}

static outcome row_zeros(int null_at)
{
    return pointer_result(jac_zeros(P(0, fx.ctx), 2, P(1, TU_SHAPE(2, 2))));
}

static outcome row_ones(int null_at)
{
    return pointer_result(jac_ones(P(0, fx.ctx), 2, P(1, TU_SHAPE(2, 2))));
}

static outcome row_full(int null_at)
{
    return pointer_result(jac_full(P(0, fx.ctx), 2, P(1, TU_SHAPE(2, 2)), 3.0));
}

static outcome row_eye(int null_at)
{
    return pointer_result(jac_eye(P(0, fx.ctx), 3));
}

static outcome row_arange(int null_at)
{
    return pointer_result(jac_arange(P(0, fx.ctx), 0, 3, 1));
}

static outcome row_scalar(int null_at)
{
    return pointer_result(jac_scalar(P(0, fx.ctx), 2.0));
}

static outcome row_tensor_copy(int null_at)
{
    return pointer_result(jac_tensor_copy(P(0, fx.ctx), P(1, fx.v3)));
}

static outcome row_detach(int null_at)
{
    return pointer_result(jac_detach(P(0, fx.ctx), P(1, fx.v3)));
}

static outcome row_rand_uniform(int null_at)
{
    return pointer_result(
        jac_rand_uniform(P(0, fx.ctx), 1, P(1, TU_SHAPE(4)), 0, 1, 7));
}

static outcome row_rand_normal(int null_at)
{
    return pointer_result(
        jac_rand_normal(P(0, fx.ctx), 1, P(1, TU_SHAPE(4)), 0, 1, 7));
}

/* Reading tensors. */

static outcome row_tensor_ndim(int null_at)
{
    int n = jac_tensor_ndim(P(0, fx.m2));
    return checked(IS_NULL(0) ? n == -1 : n == 2);
}

static outcome row_tensor_shape(int null_at)
{
    const int64_t *s = jac_tensor_shape(P(0, fx.m2));
    return checked(IS_NULL(0) ? s == NULL : s != NULL && s[0] == 2);
}

static outcome row_tensor_dim(int null_at)
{
    int64_t d = jac_tensor_dim(P(0, fx.m2), -1);
    return checked(IS_NULL(0) ? d == -1 : d == 2);
}

static outcome row_tensor_numel(int null_at)
{
    int64_t n = jac_tensor_numel(P(0, fx.m2));
    return checked(IS_NULL(0) ? n == 0 : n == 4);
}

static outcome row_tensor_data(int null_at)
{
    const double *d = jac_tensor_data(P(0, fx.m2));
    return checked(IS_NULL(0) ? d == NULL : d != NULL && d[0] == 2.0);
}

static outcome row_tensor_item(int null_at)
{
    double v = jac_tensor_item(P(0, fx.y));
    return checked(IS_NULL(0) ? isnan(v) : !isnan(v));
}

static outcome row_tensor_get(int null_at)
{
    double v = jac_tensor_get(P(0, fx.m2), P(1, TU_SHAPE(1, 1)));
    return checked(null_at >= 0 ? isnan(v) : v == 1.0);
}

/* b2 given its own values back: the fixture stays as it was. */
static outcome row_tensor_fill(int null_at)
{
    return status_result(jac_tensor_fill(P(0, fx.b2), P(1, TU_VALUES(1, -1))));
}

static outcome row_tensor_assign(int null_at)
{
    return status_result(jac_tensor_assign(P(0, fx.b2), P(1, fx.b2)));
}

static outcome row_tensor_ctx(int null_at)
{
    jac_ctx *c = jac_tensor_ctx(P(0, fx.m2));
    return checked(IS_NULL(0) ? c == NULL : c == fx.ctx);
}

static outcome row_set_requires_grad(int null_at)
{
    return status_result(jac_set_requires_grad(P(0, fx.v3), true));
}

static outcome row_requires_grad(int null_at)
{
    bool r = jac_requires_grad(P(0, fx.v3));
    return checked(IS_NULL(0) ? !r : r);
}

static outcome row_is_leaf(int null_at)
{
    bool r = jac_is_leaf(P(0, fx.v3));
    return checked(IS_NULL(0) ? !r : r);
}

static outcome row_tensor_grad(int null_at)
{
    /* v3 has a .grad once jac_backward ran (its row comes first). */
    jac_tensor *g = jac_tensor_grad(P(0, fx.v3));
    return checked(IS_NULL(0) ? g == NULL : g != NULL);
}

static outcome row_zero_grad(int null_at)
{
    return status_result(jac_zero_grad(P(0, fx.v3)));
}

static outcome row_tensor_print(int null_at)
{
    return status_result(jac_tensor_print(P(0, fx.m2), P(1, fx.sink)));
}

/* Scopes. */

static outcome row_scope_begin(int null_at)
{
    jac_scope s = jac_scope_begin(P(0, fx.ctx));
    return checked(IS_NULL(0) ? s.tensors == 0 && s.nodes == 0 : s.tensors > 0);
}

static outcome row_scope_end(int null_at)
{
    jac_scope s = jac_scope_begin(fx.ctx);
    jac_tensor *t = jac_scalar(fx.ctx, 1.0);
    jac_tensor *keep[1] = {IS_NULL(2) ? NULL : t};
    jac_status st = jac_scope_end(P(0, fx.ctx), s, P(1, keep), 1);
    if (IS_NULL(0)) {
        jac_scope_end(fx.ctx, s, NULL, 0); /* tidy up */
    }
    return status_result(st);
}

/* Ops of one tensor. */

#define UNARY_ROW(name)                                                        \
    static outcome row_##name(int null_at)                                     \
    {                                                                          \
        return pointer_result(jac_##name(P(0, fx.ctx), P(1, fx.m2)));          \
    }
#define UNARY_OPS(X)                                                           \
    X(neg)                                                                     \
    X(exp)                                                                     \
    X(log)                                                                     \
    X(sin)                                                                     \
    X(cos)                                                                     \
    X(tanh)                                                                    \
    X(abs)                                                                     \
    X(sign)                                                                    \
    X(sqrt)                                                                    \
    X(rsqrt)                                                                   \
    X(square)                                                                  \
    X(reciprocal)                                                              \
    X(expm1)                                                                   \
    X(log1p)                                                                   \
    X(tan)                                                                     \
    X(asin)                                                                    \
    X(acos)                                                                    \
    X(atan)                                                                    \
    X(sinh)                                                                    \
    X(cosh)                                                                    \
    X(asinh)                                                                   \
    X(sigmoid)                                                                 \
    X(relu)                                                                    \
    X(softplus)                                                                \
    X(erf)                                                                     \
    X(sum)                                                                     \
    X(mean)                                                                    \
    X(prod)                                                                    \
    X(max)                                                                     \
    X(min)                                                                     \
    X(trace)                                                                   \
    X(inverse)                                                                 \
    X(det)                                                                     \
    X(logdet)                                                                  \
    X(cholesky)
UNARY_OPS(UNARY_ROW)

#define SCALAR_ROW(name)                                                       \
    static outcome row_##name(int null_at)                                     \
    {                                                                          \
        return pointer_result(jac_##name(P(0, fx.ctx), P(1, fx.m2), 2.0));     \
    }
#define SCALAR_OPS(X)                                                          \
    X(add_scalar)                                                              \
    X(sub_scalar)                                                              \
    X(mul_scalar)                                                              \
    X(div_scalar)                                                              \
    X(pow_scalar)
SCALAR_OPS(SCALAR_ROW)

static outcome row_rsub_scalar(int null_at)
{
    return pointer_result(jac_rsub_scalar(P(0, fx.ctx), 2.0, P(1, fx.m2)));
}

static outcome row_clamp(int null_at)
{
    return pointer_result(jac_clamp(P(0, fx.ctx), P(1, fx.m2), 0.0, 1.0));
}

#define BINARY_ROW(name)                                                       \
    static outcome row_##name(int null_at)                                     \
    {                                                                          \
        return pointer_result(                                                 \
            jac_##name(P(0, fx.ctx), P(1, fx.m2), P(2, fx.m2)));               \
    }
#define BINARY_OPS(X)                                                          \
    X(add)                                                                     \
    X(sub)                                                                     \
    X(mul)                                                                     \
    X(div)                                                                     \
    X(pow)                                                                     \
    X(maximum)                                                                 \
    X(minimum)                                                                 \
    X(atan2)                                                                   \
    X(matmul)                                                                  \
    X(solve)
BINARY_OPS(BINARY_ROW)

static outcome row_dot(int null_at)
{
    return pointer_result(jac_dot(P(0, fx.ctx), P(1, fx.v3), P(2, fx.v3)));
}

static outcome row_outer(int null_at)
{
    return pointer_result(jac_outer(P(0, fx.ctx), P(1, fx.v3), P(2, fx.b2)));
}

/* Reductions over a set of axes: NULL axes means every axis. */
#define AXES_ROW(name)                                                         \
    static outcome row_##name(int null_at)                                     \
    {                                                                          \
        return pointer_result(jac_##name(P(0, fx.ctx), P(1, fx.m2), 1,         \
                                         P(2, (const int[]){0}), false));      \
    }
#define AXES_OPS(X)                                                            \
    X(sum_axes)                                                                \
    X(mean_axes)                                                               \
    X(prod_axes)                                                               \
    X(max_axes)                                                                \
    X(min_axes)                                                                \
    X(logsumexp)
AXES_OPS(AXES_ROW)

static outcome row_var(int null_at)
{
    return pointer_result(jac_var(P(0, fx.ctx), P(1, fx.m2), 1,
                                  P(2, (const int[]){0}), 1.0, false));
}

static outcome row_std(int null_at)
{
    return pointer_result(jac_std(P(0, fx.ctx), P(1, fx.m2), 1,
                                  P(2, (const int[]){0}), 1.0, false));
}

static outcome row_norm(int null_at)
{
    return pointer_result(jac_norm(P(0, fx.ctx), P(1, fx.m2), 2.0, 1,
                                   P(2, (const int[]){0}), false));
}

static outcome row_sum_axis(int null_at)
{
    return pointer_result(jac_sum_axis(P(0, fx.ctx), P(1, fx.m2), 1, true));
}

static outcome row_softmax(int null_at)
{
    return pointer_result(jac_softmax(P(0, fx.ctx), P(1, fx.m2), 1));
}

static outcome row_log_softmax(int null_at)
{
    return pointer_result(jac_log_softmax(P(0, fx.ctx), P(1, fx.m2), 0));
}

static outcome row_sum_to_shape(int null_at)
{
    return pointer_result(
        jac_sum_to_shape(P(0, fx.ctx), P(1, fx.m2), 1, P(2, TU_SHAPE(2))));
}

static outcome row_expand(int null_at)
{
    return pointer_result(
        jac_expand(P(0, fx.ctx), P(1, fx.m2), 3, P(2, TU_SHAPE(3, 2, 2))));
}

/* Linear algebra and shapes. */

static outcome row_transpose(int null_at)
{
    return pointer_result(jac_transpose(P(0, fx.ctx), P(1, fx.m2), 0, 1));
}

static outcome row_permute(int null_at)
{
    return pointer_result(
        jac_permute(P(0, fx.ctx), P(1, fx.m2), P(2, (const int[]){1, 0})));
}

static outcome row_diagonal(int null_at)
{
    return pointer_result(jac_diagonal(P(0, fx.ctx), P(1, fx.m2), 0, 0, 1));
}

static outcome row_reshape(int null_at)
{
    return pointer_result(
        jac_reshape(P(0, fx.ctx), P(1, fx.m2), 1, P(2, TU_SHAPE(4))));
}

static outcome row_slice(int null_at)
{
    return pointer_result(jac_slice(P(0, fx.ctx), P(1, fx.v3), 0, 0, 2, 1));
}

static outcome row_concat(int null_at)
{
    jac_tensor *ts[2] = {fx.v3, IS_NULL(2) ? NULL : fx.v3};
    return pointer_result(jac_concat(P(0, fx.ctx), 2, P(1, ts), 0));
}

static outcome row_stack(int null_at)
{
    jac_tensor *ts[2] = {fx.v3, IS_NULL(2) ? NULL : fx.v3};
    return pointer_result(jac_stack(P(0, fx.ctx), 2, P(1, ts), 0));
}

static outcome row_split(int null_at)
{
    jac_tensor *out[2] = {NULL, NULL};
    jac_status st = jac_split(P(0, fx.ctx), P(1, fx.v3), 0, 2,
                              P(2, TU_SHAPE(1, 2)), P(3, out));
    return status_result(st);
}

static outcome row_flatten(int null_at)
{
    return pointer_result(jac_flatten(P(0, fx.ctx), P(1, fx.m2), 0, -1));
}

static outcome row_squeeze(int null_at)
{
    jac_tensor *a = jac_reshape(fx.ctx, fx.v3, 2, TU_SHAPE(1, 3));
    return pointer_result(jac_squeeze(P(0, fx.ctx), P(1, a), 0));
}

static outcome row_unsqueeze(int null_at)
{
    return pointer_result(jac_unsqueeze(P(0, fx.ctx), P(1, fx.v3), -1));
}

static outcome row_index_select(int null_at)
{
    return pointer_result(jac_index_select(P(0, fx.ctx), P(1, fx.v3), 0, 2,
                                           P(2, TU_SHAPE(2, 0))));
}

static outcome row_gather(int null_at)
{
    return pointer_result(jac_gather(P(0, fx.ctx), P(1, fx.m2), 1,
                                     P(2, TU_SHAPE(2, 1)),
                                     P(3, TU_SHAPE(1, 0))));
}

static outcome row_where(int null_at)
{
    return pointer_result(
        jac_where(P(0, fx.ctx), P(1, fx.cond), P(2, fx.v3), P(3, fx.v3)));
}

static outcome row_pad(int null_at)
{
    return pointer_result(jac_pad(P(0, fx.ctx), P(1, fx.v3), P(2, TU_SHAPE(1)),
                                  P(3, TU_SHAPE(2))));
}

/* Autodiff. */

static outcome row_grad(int null_at)
{
    /* 0 ctx, 1 outputs, 2 grad_outputs (optional for a scalar), 3 inputs,
     * 4 grads; entries: 5 outputs[0], 6 grad_outputs[0] (optional),
     * 7 inputs[0]. */
    jac_tensor *outs[1] = {IS_NULL(5) ? NULL : fx.y};
    jac_tensor *seeds[1] = {IS_NULL(6) ? NULL : jac_scalar(fx.ctx, 1.0)};
    jac_tensor *ins[1] = {IS_NULL(7) ? NULL : fx.v3};
    jac_tensor *grads[1] = {NULL};
    return status_result(jac_grad(P(0, fx.ctx), 1, P(1, outs), P(2, seeds), 1,
                                  P(3, ins), JAC_RETAIN_GRAPH, P(4, grads)));
}

static outcome row_backward(int null_at)
{
    jac_tensor *seed = jac_scalar(fx.ctx, 1.0);
    return status_result(
        jac_backward(P(0, fx.ctx), P(1, fx.y), P(2, seed), JAC_RETAIN_GRAPH));
}

static outcome row_jacobian(int null_at)
{
    return pointer_result(
        jac_jacobian(P(0, fx.ctx), P(1, fx.ym), P(2, fx.m2), 0));
}

static outcome row_jacobian_ex(int null_at)
{
    /* 0 ctx, 1 ys, 2 xs, 3 opts (optional), 4 J; 5 ys[0], 6 xs[0]. */
    jac_tensor *ys[1] = {IS_NULL(5) ? NULL : fx.ym};
    jac_tensor *xs[1] = {IS_NULL(6) ? NULL : fx.m2};
    jac_jacobian_opts o = {0, 1, JAC_MODE_FORWARD, NULL, NULL};
    jac_tensor *J[1] = {NULL};
    return status_result(jac_jacobian_ex(P(0, fx.ctx), 1, P(1, ys), 1, P(2, xs),
                                         P(3, &o), P(4, J)));
}

/* The functional API: 0 ctx, 1 fn, 2 user (optional), ... */

static outcome row_jacobian_fn(int null_at)
{
    /* 3 inputs, 4 opts (optional), 5 J; 6 inputs[0]. */
    jac_tensor *ins[1] = {IS_NULL(6) ? NULL : fx.m2};
    jac_tensor *J[1] = {NULL};
    return status_result(
        jac_jacobian_fn(P(0, fx.ctx), P(1, rowwise_fn), P(2, (void *)&fx), 1,
                        P(3, ins), 1, P(4, &(jac_jacobian_opts){0}), P(5, J)));
}

static outcome row_hessian(int null_at)
{
    /* 3 x, 4 opts (optional). */
    return pointer_result(jac_hessian(P(0, fx.ctx), P(1, sum_of_squares_fn),
                                      P(2, (void *)&fx), P(3, fx.v3),
                                      P(4, &(jac_jacobian_opts){0})));
}

static outcome row_vjp(int null_at)
{
    /* 3 inputs, 4 v (optional: one-element output), 5 outputs (optional),
     * 6 vjps; 7 inputs[0], 8 v[0] (optional). */
    jac_tensor *ins[1] = {IS_NULL(7) ? NULL : fx.v3};
    jac_tensor *v[1] = {IS_NULL(8) ? NULL : jac_scalar(fx.ctx, 2.0)};
    jac_tensor *outs[1] = {NULL}, *vjps[1] = {NULL};
    return status_result(jac_vjp(P(0, fx.ctx), P(1, sum_of_squares_fn),
                                 P(2, (void *)&fx), 1, P(3, ins), 1, P(4, v), 0,
                                 P(5, outs), P(6, vjps)));
}

static outcome row_jvp(int null_at)
{
    /* 3 inputs, 4 v, 5 outputs (optional), 6 jvps; 7 inputs[0], 8 v[0]. */
    jac_tensor *ins[1] = {IS_NULL(7) ? NULL : fx.v3};
    jac_tensor *v[1] = {IS_NULL(8) ? NULL : fx.v3};
    jac_tensor *outs[1] = {NULL}, *jvps[1] = {NULL};
    return status_result(jac_jvp(P(0, fx.ctx), P(1, rowwise_fn),
                                 P(2, (void *)&fx), 1, P(3, ins), 1, P(4, v), 0,
                                 P(5, outs), P(6, jvps)));
}

static outcome row_hvp(int null_at)
{
    /* 3 inputs, 4 v, 5 output (optional), 6 hvps; 7 inputs[0], 8 v[0]. */
    jac_tensor *ins[1] = {IS_NULL(7) ? NULL : fx.v3};
    jac_tensor *v[1] = {IS_NULL(8) ? NULL : fx.v3};
    jac_tensor *out = NULL, *hvps[1] = {NULL};
    return status_result(jac_hvp(P(0, fx.ctx), P(1, sum_of_squares_fn),
                                 P(2, (void *)&fx), 1, P(3, ins), P(4, v), 0,
                                 P(5, &out), P(6, hvps)));
}

static outcome row_batch_jacobian(int null_at)
{
    /* 3 x, 4 opts (optional). */
    return pointer_result(jac_batch_jacobian(P(0, fx.ctx), P(1, rowwise_fn),
                                             P(2, (void *)&fx), P(3, fx.m2),
                                             P(4, &(jac_jacobian_opts){0})));
}

static const jac_check_opts check_opts = {1e-6, 1e-5, 1e-3, 0};

static outcome row_gradcheck(int null_at)
{
    /* 3 inputs, 4 opts (optional); 5 inputs[0]. */
    jac_tensor *ins[1] = {IS_NULL(5) ? NULL : fx.v3};
    return status_result(jac_gradcheck(P(0, fx.ctx), P(1, sum_of_squares_fn),
                                       P(2, (void *)&fx), 1, P(3, ins), 1,
                                       P(4, &check_opts)));
}

static outcome row_gradgradcheck(int null_at)
{
    jac_tensor *ins[1] = {IS_NULL(5) ? NULL : fx.v3};
    return status_result(jac_gradgradcheck(
        P(0, fx.ctx), P(1, sum_of_squares_fn), P(2, (void *)&fx), 1, P(3, ins),
        1, P(4, &check_opts)));
}

/* Interop. */

static outcome row_export_dot(int null_at)
{
    /* 0 ctx, 1 outputs, 2 inputs, 3 out; 4 outputs[0], 5 inputs[0]. */
    jac_tensor *outs[1] = {IS_NULL(4) ? NULL : fx.y};
    jac_tensor *ins[1] = {IS_NULL(5) ? NULL : fx.v3};
    return status_result(jac_export_dot(P(0, fx.ctx), 1, P(1, outs), 1,
                                        P(2, ins), P(3, fx.sink)));
}

static outcome row_save_npy(int null_at)
{
    return status_result(jac_save_npy(P(0, fx.m2), P(1, fx.path)));
}

static outcome row_write_npy(int null_at)
{
    return status_result(jac_write_npy(P(0, fx.m2), P(1, fx.sink)));
}

static outcome row_load_npy(int null_at)
{
    return pointer_result(jac_load_npy(P(0, fx.ctx), P(1, fx.path)));
}

static outcome row_read_npy(int null_at)
{
    rewind(fx.npy);
    return pointer_result(jac_read_npy(P(0, fx.ctx), P(1, fx.npy)));
}

/* Recorded functions. */
static outcome row_program_begin(int null_at)
{
    /* 1 inputs, 2 params (optional: none); 3 inputs[0]. */
    jac_tensor *ins[1] = {IS_NULL(3) ? NULL : fx.v3};
    jac_tensor *const *none = NULL;
    jac_status st =
        jac_program_begin(P(0, fx.ctx), 1, P(1, ins), 0, P(2, none));
    if (st == JAC_OK) {
        jac_program *p = NULL;
        jac_tensor *y = jac_exp(fx.ctx, fx.v3);
        st = jac_program_end(fx.ctx, 1, &y, 0, &p);
        jac_program_free(p);
    }
    return status_result(st);
}

static outcome row_program_end(int null_at)
{
    /* 1 outputs, 2 program; 3 outputs[0]. */
    jac_status st = jac_program_begin(fx.ctx, 1, &fx.v3, 0, NULL);
    if (st != JAC_OK)
        return status_result(st);
    jac_program *p = NULL;
    jac_tensor *outs[1] = {IS_NULL(3) ? NULL : jac_sin(fx.ctx, fx.v3)};
    st = jac_program_end(P(0, fx.ctx), 1, P(1, outs), 0, P(2, &p));
    jac_program_free(p);
    if (IS_NULL(0)) {
        jac_program *q = NULL;
        if (jac_program_end(fx.ctx, 1, &fx.v3, 0, &q) == JAC_OK)
            jac_program_free(q);
    }
    return status_result(st);
}

static outcome row_program_record(int null_at)
{
    /* 1 fn, 2 user (optional), 3 inputs, 4 params (optional: none), 5
     * program; 6 inputs[0]. */
    jac_tensor *ins[1] = {IS_NULL(6) ? NULL : fx.v3};
    jac_tensor *const *none = NULL;
    jac_program *p = NULL;
    jac_status st = jac_program_record(P(0, fx.ctx), P(1, sum_of_squares_fn),
                                       P(2, (void *)&fx), 1, P(3, ins), 0,
                                       P(4, none), 1, 0, P(5, &p));
    jac_program_free(p);
    return status_result(st);
}

static outcome row_program_free(int null_at)
{
    jac_program *p = NULL;
    if (jac_program_gradient(fx.prog, 0, &p) != JAC_OK)
        return status_result(JAC_ERR_STATE);
    jac_program_free(P(0, p));
    if (IS_NULL(0))
        jac_program_free(p);
    return void_result();
}

static outcome row_program_errmsg(int null_at)
{
    (void)null_at;
    return pointer_result(jac_program_errmsg());
}

static outcome row_program_count(int null_at)
{
    size_t n = jac_program_count(P(0, fx.prog), 'i');
    return (outcome){RES_CHECKED, n == (IS_NULL(0) ? 0u : 1u)};
}

static outcome row_program_shape(int null_at)
{
    /* 0 program, 1 shape (optional), 2 numel (optional). */
    int64_t shape[JAC_MAX_DIMS], numel = 0;
    int nd =
        jac_program_shape(P(0, fx.prog), 'i', 0, P(1, shape), P(2, &numel));
    return (outcome){RES_CHECKED, nd == (IS_NULL(0) ? -1 : 1)};
}

static outcome row_program_length(int null_at)
{
    /* 0 program, 1 bytes (optional). */
    size_t bytes = 0;
    size_t n = jac_program_length(P(0, fx.prog), P(1, &bytes));
    return (outcome){RES_CHECKED, IS_NULL(0) ? n == 0 : n > 0};
}

static outcome row_program_set_threads(int null_at)
{
    return status_result(jac_program_set_threads(P(0, fx.prog), 1));
}

static const double prog_x[3] = {0.1, -0.2, 0.3};

static outcome row_program_eval(int null_at)
{
    /* 0 program, 1 args, 2 outputs; 3 args[0], 4 outputs[0]. */
    double y;
    const double *args[1] = {IS_NULL(3) ? NULL : prog_x};
    double *outs[1] = {IS_NULL(4) ? NULL : &y};
    return status_result(
        jac_program_eval(P(0, fx.prog), P(1, args), P(2, outs)));
}

static outcome row_program_vjp(int null_at)
{
    /* 0 program, 1 args, 2 seeds (optional), 3 outputs (optional), 4
     * grads; 5 args[0], 6 seeds[0] (optional), 7 outputs[0] (optional), 8
     * grads[0] (optional). */
    double y, g[3], one = 1.0;
    const double *args[1] = {IS_NULL(5) ? NULL : prog_x};
    const double *seeds[1] = {IS_NULL(6) ? NULL : &one};
    double *outs[1] = {IS_NULL(7) ? NULL : &y};
    double *grads[1] = {IS_NULL(8) ? NULL : g};
    return status_result(jac_program_vjp(P(0, fx.prog), P(1, args), P(2, seeds),
                                         P(3, outs), P(4, grads)));
}

static outcome row_program_jvp(int null_at)
{
    /* 0 program, 1 args, 2 v, 3 outputs (optional), 4 jvps; 5 args[0], 6
     * v[0] (optional), 7 outputs[0] (optional), 8 jvps[0] (optional). */
    double y, j;
    const double *args[1] = {IS_NULL(5) ? NULL : prog_x};
    const double *v[1] = {IS_NULL(6) ? NULL : prog_x};
    double *outs[1] = {IS_NULL(7) ? NULL : &y};
    double *jvps[1] = {IS_NULL(8) ? NULL : &j};
    return status_result(jac_program_jvp(P(0, fx.prog), P(1, args), P(2, v),
                                         P(3, outs), P(4, jvps)));
}

static outcome row_program_jacobian(int null_at)
{
    /* 0 program, 1 args, 2 outputs (optional), 3 J; 4 args[0], 5
     * outputs[0] (optional), 6 J[0] (optional). */
    double y, J[3];
    const double *args[1] = {IS_NULL(4) ? NULL : prog_x};
    double *outs[1] = {IS_NULL(5) ? NULL : &y};
    double *Js[1] = {IS_NULL(6) ? NULL : J};
    return status_result(
        jac_program_jacobian(P(0, fx.prog), P(1, args), P(2, outs), P(3, Js)));
}

static outcome row_program_hessian(int null_at)
{
    /* 0 program, 1 args, 2 weights (optional), 3 H; 4 args[0], 5
     * weights[0] (optional), 6 H[0] (optional). */
    double H[9], w = 2.0;
    const double *args[1] = {IS_NULL(4) ? NULL : prog_x};
    const double *ws[1] = {IS_NULL(5) ? NULL : &w};
    double *Hs[1] = {IS_NULL(6) ? NULL : H};
    return status_result(
        jac_program_hessian(P(0, fx.prog), P(1, args), P(2, ws), P(3, Hs)));
}

static outcome row_program_hvp(int null_at)
{
    /* 0 program, 1 args, 2 weights (optional), 3 v, 4 hvps; 5 args[0], 6
     * weights[0] (optional), 7 v[0] (optional), 8 hvps[0] (optional). */
    double hv[3], w = 2.0;
    const double *args[1] = {IS_NULL(5) ? NULL : prog_x};
    const double *ws[1] = {IS_NULL(6) ? NULL : &w};
    const double *v[1] = {IS_NULL(7) ? NULL : prog_x};
    double *hs[1] = {IS_NULL(8) ? NULL : hv};
    return status_result(jac_program_hvp(P(0, fx.prog), P(1, args), P(2, ws),
                                         P(3, v), P(4, hs)));
}

static outcome row_program_gradient(int null_at)
{
    /* 0 program, 1 result. */
    jac_program *p = NULL;
    jac_status st = jac_program_gradient(P(0, fx.prog), 0, P(1, &p));
    jac_program_free(p);
    return status_result(st);
}

static outcome row_sparse_jacobian_plan(int null_at)
{
    /* 0 program, 1 opts (optional), 2 plan. */
    jac_sparse_opts o = {0};
    jac_sparse *plan = NULL;
    jac_status st =
        jac_sparse_jacobian_plan(P(0, fx.prog), P(1, &o), P(2, &plan));
    jac_sparse_free(plan);
    return status_result(st);
}

static outcome row_sparse_hessian_plan(int null_at)
{
    /* 0 program, 1 opts (optional), 2 plan. */
    jac_sparse_opts o = {.triangle = JAC_TRIANGLE_LOWER};
    jac_sparse *plan = NULL;
    jac_status st =
        jac_sparse_hessian_plan(P(0, fx.prog), P(1, &o), P(2, &plan));
    jac_sparse_free(plan);
    return status_result(st);
}

static outcome row_sparse_jacobian(int null_at)
{
    /* 0 plan, 1 args, 2 values, 3 outputs (optional); 4 args[0], 5
     * outputs[0] (optional). */
    double v[3], y;
    const double *args[1] = {IS_NULL(4) ? NULL : prog_x};
    double *outs[1] = {IS_NULL(5) ? NULL : &y};
    return status_result(
        jac_sparse_jacobian(P(0, fx.jplan), P(1, args), P(2, v), P(3, outs)));
}

static outcome row_sparse_hessian(int null_at)
{
    /* 0 plan, 1 args, 2 weights (optional), 3 values; 4 args[0], 5
     * weights[0] (optional: zero). */
    double v[3], w = 2.0;
    const double *args[1] = {IS_NULL(4) ? NULL : prog_x};
    const double *ws[1] = {IS_NULL(5) ? NULL : &w};
    return status_result(
        jac_sparse_hessian(P(0, fx.hplan), P(1, args), P(2, ws), P(3, v)));
}

static outcome row_sparse_nnz(int null_at)
{
    return (outcome){RES_CHECKED,
                     jac_sparse_nnz(P(0, fx.hplan)) == (IS_NULL(0) ? 0 : 3)};
}

static outcome row_sparse_colors(int null_at)
{
    return (outcome){RES_CHECKED,
                     jac_sparse_colors(P(0, fx.hplan)) == (IS_NULL(0) ? 0 : 1)};
}

static outcome row_sparse_method_used(int null_at)
{
    jac_sparse_method m = jac_sparse_method_used(P(0, fx.hplan));
    return (outcome){RES_CHECKED,
                     m == (IS_NULL(0) ? JAC_SPARSE_AUTO : JAC_SPARSE_STAR)};
}

static outcome row_sparse_dims(int null_at)
{
    /* 0 plan, 1 rows (optional), 2 cols (optional). */
    int64_t r = -1, c = -1;
    jac_sparse_dims(P(0, fx.jplan), P(1, &r), P(2, &c));
    return (outcome){RES_CHECKED, IS_NULL(0) ? r <= 0 && c <= 0
                                             : (r == 1 || IS_NULL(1)) &&
                                                   (c == 3 || IS_NULL(2))};
}

static outcome row_sparse_csr(int null_at)
{
    /* 0 plan, 1 ptr, 2 idx. */
    int32_t ptr[4], idx[3];
    return status_result(
        jac_sparse_csr(P(0, fx.hplan), 0, P(1, ptr), P(2, idx)));
}

static outcome row_sparse_coo(int null_at)
{
    /* 0 plan, 1 rows, 2 cols. */
    int64_t r[3], c[3];
    return status_result(
        jac_sparse_coo(P(0, fx.hplan), JAC_INDEX_INT64, P(1, r), P(2, c)));
}

static outcome row_sparse_free(int null_at)
{
    jac_sparse *plan = NULL;
    if (jac_sparse_jacobian_plan(fx.prog, NULL, &plan) != JAC_OK)
        return status_result(JAC_ERR_STATE);
    jac_sparse_free(P(0, plan));
    if (IS_NULL(0))
        jac_sparse_free(plan);
    return void_result();
}

static outcome row_sparse_jacobian_tape(int null_at)
{
    /* 0 ctx, 1 outputs, 2 inputs, 3 opts (optional), 4 plan, 5 values; 6
     * outputs[0], 7 inputs[0]. */
    jac_tensor *outs[1] = {IS_NULL(6) ? NULL : fx.y};
    jac_tensor *ins[1] = {IS_NULL(7) ? NULL : fx.v3};
    jac_sparse_opts o = {0};
    jac_sparse *plan = NULL;
    double v[3];
    jac_status st =
        jac_sparse_jacobian_tape(P(0, fx.ctx), 1, P(1, outs), 1, P(2, ins),
                                 P(3, &o), P(4, &plan), P(5, v));
    jac_sparse_free(plan);
    return status_result(st);
}

static outcome row_sparse_hessian_tape(int null_at)
{
    /* 0 ctx, 1 output, 2 inputs, 3 opts (optional), 4 plan, 5 values; 6
     * inputs[0]. */
    jac_tensor *ins[1] = {IS_NULL(6) ? NULL : fx.v3};
    jac_sparse *plan = NULL;
    double v[3];
    jac_status st =
        jac_sparse_hessian_tape(P(0, fx.ctx), P(1, fx.y), 1, P(2, ins),
                                P(3, NULL), P(4, &plan), P(5, v));
    jac_sparse_free(plan);
    return status_result(st);
}

#define BIT(i) (1u << (i))
#define CTX_ROW(name, nptr, nextra, optional)                                  \
    {                                                                          \
        "jac_" #name, nptr, nextra, optional, true, row_##name                 \
    }
#define FREE_ROW(name, nptr, nextra, optional)                                 \
    {                                                                          \
        "jac_" #name, nptr, nextra, optional, false, row_##name                \
    }
#define UNARY_ENTRY(name) CTX_ROW(name, 2, 0, 0),
#define SCALAR_ENTRY(name) CTX_ROW(name, 2, 0, 0),
#define BINARY_ENTRY(name) CTX_ROW(name, 3, 0, 0),
#define AXES_ENTRY(name) CTX_ROW(name, 3, 0, BIT(2)),

static const row rows[] = {
    FREE_ROW(version_number, 0, 0, 0),
    FREE_ROW(version_string, 0, 0, 0),
    FREE_ROW(status_string, 0, 0, 0),
    FREE_ROW(status_name, 0, 0, 0),
    FREE_ROW(ctx_new, 0, 0, 0),
    FREE_ROW(ctx_new_with_allocator, 1, 0, 0),
    FREE_ROW(ctx_free, 1, 0, 0),
    FREE_ROW(errcode, 1, 0, 0),
    FREE_ROW(errmsg, 1, 0, 0),
    FREE_ROW(clear_error, 1, 0, 0),
    FREE_ROW(ctx_memory, 1, 0, 0),
    FREE_ROW(ctx_tensor_count, 1, 0, 0),
    FREE_ROW(ctx_tape_length, 1, 0, 0),
    FREE_ROW(set_grad_enabled, 1, 0, 0),
    FREE_ROW(is_grad_enabled, 1, 0, 0),
    FREE_ROW(ctx_set_threads, 1, 0, 0),
    FREE_ROW(ctx_threads, 1, 0, 0),
    FREE_ROW(ctx_set_memory_budget, 1, 0, 0),
    FREE_ROW(ctx_set_checks, 1, 0, 0),
    FREE_ROW(ctx_checks, 1, 0, 0),
    CTX_ROW(tensor_new, 3, 0, BIT(2)),
    CTX_ROW(zeros, 2, 0, 0),
    CTX_ROW(ones, 2, 0, 0),
    CTX_ROW(full, 2, 0, 0),
    CTX_ROW(eye, 1, 0, 0),
    CTX_ROW(arange, 1, 0, 0),
    CTX_ROW(scalar, 1, 0, 0),
    CTX_ROW(tensor_copy, 2, 0, 0),
    CTX_ROW(detach, 2, 0, 0),
    CTX_ROW(rand_uniform, 2, 0, 0),
    CTX_ROW(rand_normal, 2, 0, 0),
    FREE_ROW(tensor_ndim, 1, 0, 0),
    FREE_ROW(tensor_shape, 1, 0, 0),
    FREE_ROW(tensor_dim, 1, 0, 0),
    FREE_ROW(tensor_numel, 1, 0, 0),
    FREE_ROW(tensor_data, 1, 0, 0),
    FREE_ROW(tensor_item, 1, 0, 0),
    FREE_ROW(tensor_get, 2, 0, 0),
    FREE_ROW(tensor_fill, 2, 0, 0),
    FREE_ROW(tensor_assign, 2, 0, 0),
    FREE_ROW(tensor_ctx, 1, 0, 0),
    FREE_ROW(set_requires_grad, 1, 0, 0),
    FREE_ROW(requires_grad, 1, 0, 0),
    FREE_ROW(is_leaf, 1, 0, 0),
    CTX_ROW(backward, 3, 0, BIT(2)), /* before tensor_grad: makes v3.grad */
    FREE_ROW(tensor_grad, 1, 0, 0),
    FREE_ROW(zero_grad, 1, 0, 0),
    FREE_ROW(tensor_print, 2, 0, 0),
    CTX_ROW(scope_begin, 1, 0, 0),
    /* keep[0] == NULL is skipped, as documented. */
    CTX_ROW(scope_end, 2, 1, BIT(2)),
    UNARY_OPS(UNARY_ENTRY) SCALAR_OPS(SCALAR_ENTRY)
        CTX_ROW(rsub_scalar, 2, 0, 0),
    CTX_ROW(clamp, 2, 0, 0),
    BINARY_OPS(BINARY_ENTRY) CTX_ROW(dot, 3, 0, 0),
    CTX_ROW(outer, 3, 0, 0),
    AXES_OPS(AXES_ENTRY) CTX_ROW(var, 3, 0, BIT(2)),
    CTX_ROW(std, 3, 0, BIT(2)),
    CTX_ROW(norm, 3, 0, BIT(2)),
    CTX_ROW(sum_axis, 2, 0, 0),
    CTX_ROW(softmax, 2, 0, 0),
    CTX_ROW(log_softmax, 2, 0, 0),
    CTX_ROW(sum_to_shape, 3, 0, 0),
    CTX_ROW(expand, 3, 0, 0),
    CTX_ROW(transpose, 2, 0, 0),
    CTX_ROW(permute, 3, 0, 0),
    CTX_ROW(diagonal, 2, 0, 0),
    CTX_ROW(reshape, 3, 0, 0),
    CTX_ROW(slice, 2, 0, 0),
    CTX_ROW(concat, 2, 1, 0),
    CTX_ROW(stack, 2, 1, 0),
    CTX_ROW(split, 4, 0, 0),
    CTX_ROW(flatten, 2, 0, 0),
    CTX_ROW(squeeze, 2, 0, 0),
    CTX_ROW(unsqueeze, 2, 0, 0),
    CTX_ROW(index_select, 3, 0, 0),
    CTX_ROW(gather, 4, 0, 0),
    CTX_ROW(where, 4, 0, 0),
    CTX_ROW(eigh, 4, 0, BIT(2) | BIT(3)),
    CTX_ROW(pad, 4, 0, 0),
    CTX_ROW(grad, 5, 3, BIT(2) | BIT(6)),
    CTX_ROW(jacobian, 3, 0, 0),
    CTX_ROW(jacobian_ex, 5, 2, BIT(3)),
    CTX_ROW(jacobian_fn, 6, 1, BIT(2) | BIT(4)),
    CTX_ROW(hessian, 5, 0, BIT(2) | BIT(4)),
    CTX_ROW(vjp, 7, 2, BIT(2) | BIT(4) | BIT(5) | BIT(8)),
    CTX_ROW(jvp, 7, 2, BIT(2) | BIT(5)),
    CTX_ROW(hvp, 7, 2, BIT(2) | BIT(5)),
    CTX_ROW(batch_jacobian, 5, 0, BIT(2) | BIT(4)),
    CTX_ROW(gradcheck, 5, 1, BIT(2) | BIT(4)),
    CTX_ROW(gradgradcheck, 5, 1, BIT(2) | BIT(4)),
    CTX_ROW(export_dot, 4, 2, 0),
    CTX_ROW(program_begin, 3, 1, BIT(2)),
    CTX_ROW(program_end, 3, 1, 0),
    CTX_ROW(program_record, 6, 1, BIT(2) | BIT(4)),
    FREE_ROW(program_free, 1, 0, BIT(0)),
    FREE_ROW(program_errmsg, 0, 0, 0),
    FREE_ROW(program_count, 1, 0, 0),
    FREE_ROW(program_shape, 3, 0, 0),
    FREE_ROW(program_length, 2, 0, 0),
    FREE_ROW(program_set_threads, 1, 0, 0),
    FREE_ROW(program_eval, 3, 2, BIT(4)),
    FREE_ROW(program_vjp, 5, 4, BIT(2) | BIT(3) | BIT(6) | BIT(7) | BIT(8)),
    FREE_ROW(program_jvp, 5, 4, BIT(3) | BIT(6) | BIT(7) | BIT(8)),
    FREE_ROW(program_jacobian, 4, 3, BIT(2) | BIT(5) | BIT(6)),
    FREE_ROW(program_hessian, 4, 3, BIT(2) | BIT(5) | BIT(6)),
    FREE_ROW(program_hvp, 5, 4, BIT(2) | BIT(6) | BIT(7) | BIT(8)),
    FREE_ROW(program_gradient, 2, 0, 0),
    FREE_ROW(sparse_jacobian_plan, 3, 0, BIT(1)),
    FREE_ROW(sparse_hessian_plan, 3, 0, BIT(1)),
    FREE_ROW(sparse_jacobian, 4, 2, BIT(3) | BIT(5)),
    FREE_ROW(sparse_hessian, 4, 2, BIT(2) | BIT(5)),
    FREE_ROW(sparse_nnz, 1, 0, 0),
    FREE_ROW(sparse_colors, 1, 0, 0),
    FREE_ROW(sparse_method_used, 1, 0, 0),
    FREE_ROW(sparse_dims, 3, 0, BIT(1) | BIT(2)),
    FREE_ROW(sparse_csr, 3, 0, 0),
    FREE_ROW(sparse_coo, 3, 0, 0),
    FREE_ROW(sparse_free, 1, 0, BIT(0)),
    CTX_ROW(sparse_jacobian_tape, 6, 2, BIT(3) | BIT(5)),
    CTX_ROW(sparse_hessian_tape, 6, 1, BIT(3) | BIT(5)),
    FREE_ROW(save_npy, 2, 0, 0),
    FREE_ROW(write_npy, 2, 0, 0),
    CTX_ROW(load_npy, 2, 0, 0),
    CTX_ROW(read_npy, 2, 0, 0),
};

/* The public functions of the op test table and their tensor inputs. */
typedef struct op_function {
    const char *name;
    int nin;
} op_function;
#define OP_FUNCTION(label, function, nin, shapes, lo, hi, call)                \
    {#function, nin},
static const op_function op_functions[] = {OP_ROWS(OP_FUNCTION)};
#undef OP_FUNCTION

/* The tensor inputs of name's row in the op test table, or -1. */
static int op_row_inputs(const char *name)
{
    for (size_t i = 0; i < TU_COUNT(op_functions); i++)
        if (strcmp(op_functions[i].name, name) == 0)
            return op_functions[i].nin;
    return -1;
}

static const row *find_row(const char *name)
{
    for (size_t i = 0; i < TU_COUNT(rows); i++) {
        if (strcmp(rows[i].name, name) == 0) {
            return &rows[i];
        }
    }
    return NULL;
}

/* Runs one row with NULL at position null_at (-1: none) and checks what it
 * did. Returns false, after printing why, when it misbehaved. */
static bool try_row(const row *r, int null_at)
{
    jac_clear_error(fx.ctx);
    outcome o = r->run(null_at);
    inputs_tried++;
    bool allowed = null_at >= 0 && (r->optional & BIT(null_at)) != 0;
    bool want_ok = null_at < 0 || allowed;
    const char *what = null_at < 0 ? "valid arguments" : "a NULL argument";
    if (o.kind == RES_VOID) {
        return true;
    }
    if (o.kind == RES_CHECKED) {
        if (!o.ok) {
            print_error("%s with %s (position %d): unexpected result\n",
                        r->name, what, null_at);
        }
        return o.ok;
    }
    if (o.ok != want_ok) {
        print_error("%s with %s (position %d): %s, want %s (%s)\n", r->name,
                    what, null_at, o.ok ? "succeeded" : "failed",
                    want_ok ? "success" : "a refusal", jac_errmsg(fx.ctx));
        return false;
    }
    bool ctx_given = r->ctx_first && null_at != 0;
    if (!ctx_given) {
        return true;
    }
    if (want_ok && jac_errcode(fx.ctx) != JAC_OK) {
        print_error("%s with %s (position %d) left an error: %s\n", r->name,
                    what, null_at, jac_errmsg(fx.ctx));
        return false;
    }
    if (!want_ok && (jac_errcode(fx.ctx) != JAC_ERR_NULL_ARG ||
                     jac_errmsg(fx.ctx)[0] == '\0')) {
        print_error("%s with NULL at position %d recorded %s (\"%s\"), want "
                    "JAC_ERR_NULL_ARG with a message\n",
                    r->name, null_at, jac_status_name(jac_errcode(fx.ctx)),
                    jac_errmsg(fx.ctx));
        return false;
    }
    return true;
}

static void test_null_in_every_pointer_argument_is_refused_cleanly(void **state)
{
    (void)state;
    size_t bad = 0, calls = 0;
    for (size_t i = 0; i < TU_COUNT(rows); i++) {
        const row *r = &rows[i];
        for (int k = -1; k < r->nptr + r->nextra; k++) {
            bad += !try_row(r, k);
            calls++;
        }
    }
    jac_clear_error(fx.ctx);
    /* The fixture survived. */
    tu_assert_tensor(fx.m2, TU_SHAPE(2, 2), TU_VALUES(2, 0.5, 0.5, 1), 0.0);
    print_message("%zu functions, %zu calls with NULL arguments or valid "
                  "ones\n",
                  TU_COUNT(rows), calls);
    assert_int_equal(bad, 0);
}

/* ------------------------------------------------------------------------ */
/* The table covers the header                                              */
/* ------------------------------------------------------------------------ */

/* The public header, found next to this file's own source. */
static char *read_header(void)
{
    char path[1024];
    const char *self = __FILE__;
    const char *slash = strrchr(self, '/');
    if (slash == NULL || (size_t)(slash - self) + 32 > sizeof path) {
        return NULL;
    }
    snprintf(path, sizeof path, "%.*s/../include/jacobian.h",
             (int)(slash - self), self);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = (cap + 4096) * 2;
            char *grown = realloc(text, cap);
            if (grown == NULL) {
                free(text);
                fclose(f);
                return NULL;
            }
            text = grown;
        }
        size_t n = fread(text + len, 1, 4096, f);
        len += n;
        if (n == 0) {
            break;
        }
    }
    fclose(f);
    text[len] = '\0';
    return text;
}

/* Counts the pointer parameters of a prototype's parameter list: those
 * with a '*' and those of the function pointer types. */
static int count_pointers(const char *params, size_t len)
{
    int count = 0;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && params[i] != ',') {
            continue;
        }
        const char *p = params + start;
        size_t n = i - start;
        while (n > 0 && isspace((unsigned char)*p)) {
            p++;
            n--;
        }
        bool pointer = memchr(p, '*', n) != NULL ||
                       (n >= 7 && strncmp(p, "jac_fn ", 7) == 0) ||
                       (n >= 16 && strncmp(p, "jac_progress_fn ", 16) == 0);
        count += pointer;
        start = i + 1;
    }
    return count;
}

static void test_null_table_covers_every_public_function(void **state)
{
    (void)state;
    char *header = read_header();
    if (header == NULL) {
        print_message("include/jacobian.h not found from %s; skipped\n",
                      __FILE__);
        skip();
    }
    size_t functions = 0, missing = 0;
    for (char *p = strstr(header, "\nJAC_API "); p != NULL;
         p = strstr(p + 1, "\nJAC_API ")) {
        char *open = strchr(p, '(');
        char *semi = strchr(p, ';');
        if (open == NULL || semi == NULL || open > semi) {
            continue;
        }
        char *end = open;
        while (end > p && (isalnum((unsigned char)end[-1]) || end[-1] == '_')) {
            end--;
        }
        char name[64];
        size_t n = (size_t)(open - end);
        if (n == 0 || n >= sizeof name) {
            continue;
        }
        memcpy(name, end, n);
        name[n] = '\0';
        char *close = NULL;
        for (char *c = open; c < semi; c++) {
            if (*c == ')') {
                close = c;
            }
        }
        if (close == NULL) {
            continue;
        }
        functions++;
        int nptr = count_pointers(open + 1, (size_t)(close - open - 1));
        const row *r = find_row(name);
        int nin = op_row_inputs(name);
        if (r == NULL && nin >= 0 && nptr != 1 + nin) {
            print_error("%s has %d pointer arguments besides its context and "
                        "tensors: give it a row in the NULL table\n",
                        name, nptr - 1 - nin);
            missing++;
        } else if (r == NULL && nin < 0) {
            print_error("%s has no row in the NULL table nor in "
                        "tests/op_rows.h\n",
                        name);
            missing++;
        } else if (r != NULL && r->nptr != nptr) {
            print_error("%s has %d pointer arguments, its row says %d\n", name,
                        nptr, r->nptr);
            missing++;
        }
    }
    free(header);
    print_message("%zu public functions in include/jacobian.h, %zu rows\n",
                  functions, TU_COUNT(rows));
    assert_true(functions > 100);
    assert_int_equal(missing, 0);
}

/* ------------------------------------------------------------------------ */
/* Released tensors and tensors of another context in every row             */
/* ------------------------------------------------------------------------ */

/* Rows that read none of the fixture's tensors. */
static const char *const tensorless[] = {"jac_sparse_jacobian_plan",
                                         "jac_sparse_hessian_plan",
                                         "jac_sparse_jacobian",
                                         "jac_sparse_hessian",
                                         "jac_sparse_nnz",
                                         "jac_sparse_colors",
                                         "jac_sparse_method_used",
                                         "jac_sparse_dims",
                                         "jac_sparse_csr",
                                         "jac_sparse_coo",
                                         "jac_sparse_free",
                                         "jac_program_free",
                                         "jac_program_errmsg",
                                         "jac_program_count",
                                         "jac_program_shape",
                                         "jac_program_length",
                                         "jac_program_set_threads",
                                         "jac_program_eval",
                                         "jac_program_vjp",
                                         "jac_program_jvp",
                                         "jac_program_jacobian",
                                         "jac_program_hessian",
                                         "jac_program_hvp",
                                         "jac_program_gradient",
                                         "jac_version_number",
                                         "jac_version_string",
                                         "jac_status_string",
                                         "jac_status_name",
                                         "jac_ctx_new",
                                         "jac_ctx_new_with_allocator",
                                         "jac_ctx_free",
                                         "jac_errcode",
                                         "jac_errmsg",
                                         "jac_clear_error",
                                         "jac_ctx_memory",
                                         "jac_ctx_tensor_count",
                                         "jac_ctx_tape_length",
                                         "jac_set_grad_enabled",
                                         "jac_is_grad_enabled",
                                         "jac_ctx_set_threads",
                                         "jac_ctx_threads",
                                         "jac_ctx_set_memory_budget",
                                         "jac_ctx_set_checks",
                                         "jac_ctx_checks",
                                         "jac_tensor_new",
                                         "jac_zeros",
                                         "jac_ones",
                                         "jac_full",
                                         "jac_eye",
                                         "jac_arange",
                                         "jac_scalar",
                                         "jac_rand_uniform",
                                         "jac_rand_normal",
                                         "jac_scope_begin",
                                         "jac_scope_end",
                                         "jac_load_npy",
                                         "jac_read_npy"};

static bool reads_tensors(const row *r)
{
    for (size_t i = 0; i < TU_COUNT(tensorless); i++) {
        if (strcmp(tensorless[i], r->name) == 0) {
            return false;
        }
    }
    return true;
}

typedef struct tensor_set {
    jac_tensor *v3, *m2, *b2, *y, *ym, *cond;
} tensor_set;

static tensor_set fixture_tensors(void)
{
    return (tensor_set){fx.v3, fx.m2, fx.b2, fx.y, fx.ym, fx.cond};
}

static void use_tensors(tensor_set t)
{
    fx.v3 = t.v3;
    fx.m2 = t.m2;
    fx.b2 = t.b2;
    fx.y = t.y;
    fx.ym = t.ym;
    fx.cond = t.cond;
}

/* Tensors like the fixture's, made in ctx. */
static tensor_set make_tensors(jac_ctx *ctx)
{
    tensor_set t;
    t.v3 = jac_tensor_new(ctx, 1, TU_SHAPE(3), TU_VALUES(0.5, 1.0, 1.5));
    t.m2 = jac_tensor_new(ctx, 2, TU_SHAPE(2, 2), TU_VALUES(2, 0.5, 0.5, 1));
    t.b2 = jac_tensor_new(ctx, 1, TU_SHAPE(2), TU_VALUES(1, -1));
    t.cond = jac_tensor_new(ctx, 1, TU_SHAPE(3), TU_VALUES(1, 0, 1));
    jac_set_requires_grad(t.v3, true);
    jac_set_requires_grad(t.m2, true);
    t.y = jac_sum(ctx, jac_sin(ctx, t.v3));
    t.ym = jac_mul(ctx, t.m2, t.m2);
    assert_non_null(t.y);
    assert_non_null(t.ym);
    return t;
}

/* Tensors of the fixture's context whose scope has just ended. */
static tensor_set released_tensors(void)
{
    jac_scope mark = jac_scope_begin(fx.ctx);
    tensor_set t = make_tensors(fx.ctx);
    tu_assert_ok(fx.ctx, jac_scope_end(fx.ctx, mark, NULL, 0));
    return t;
}

/* Runs every row that reads tensors with the fixture's tensors replaced:
 * rows with a context must refuse with JAC_ERR_CONTEXT and a message
 * containing fragment; the others must not crash, and must report a
 * released tensor as absent. */
static void every_row_with(bool released, const char *fragment)
{
    tensor_set own = fixture_tensors();
    jac_ctx *other = released ? NULL : jac_ctx_new();
    tensor_set foreign = released ? own : make_tensors(other);
    size_t bad = 0, tried = 0;
    for (size_t i = 0; i < TU_COUNT(rows); i++) {
        const row *r = &rows[i];
        if (!reads_tensors(r)) {
            continue;
        }
        /* Fresh ones for every row: released headers stay recognisable
         * until JAC__QUARANTINE later releases. */
        use_tensors(released ? released_tensors() : foreign);
        jac_clear_error(fx.ctx);
        outcome o = r->run(-1);
        use_tensors(own);
        inputs_tried++;
        tried++;
        if (o.kind == RES_VOID) {
            continue;
        }
        if (r->ctx_first) {
            if (o.ok || jac_errcode(fx.ctx) != JAC_ERR_CONTEXT ||
                strstr(jac_errmsg(fx.ctx), fragment) == NULL) {
                print_error("%s with a %s tensor: %s, %s (\"%s\")\n", r->name,
                            released ? "released" : "foreign",
                            o.ok ? "succeeded" : "refused",
                            jac_status_name(jac_errcode(fx.ctx)),
                            jac_errmsg(fx.ctx));
                bad++;
            }
        } else if (released && o.ok && o.kind != RES_CHECKED) {
            print_error("%s accepted a released tensor\n", r->name);
            bad++;
        }
    }
    jac_clear_error(fx.ctx);
    jac_ctx_free(other);
    print_message("%zu rows given %s tensors\n", tried,
                  released ? "released" : "foreign");
    assert_int_equal(bad, 0);
}

static void test_a_released_tensor_is_reported_by_every_function(void **state)
{
    (void)state;
    every_row_with(true, "released");
}

static void
test_a_tensor_of_another_context_is_refused_by_every_function(void **state)
{
    (void)state;
    every_row_with(false, "another context");
}

/* ------------------------------------------------------------------------ */
/* Ranks, extents and integers out of range                                 */
/* ------------------------------------------------------------------------ */

/* Refuses blocks above 1 GiB, as a machine with little memory would: huge
 * but valid shapes then fail cleanly instead of taking the test host down
 * (ASan aborts on allocations of exabytes). */
static void *capped_alloc(size_t size, void *user)
{
    (void)user;
    return size > ((size_t)1 << 30) ? NULL : malloc(size);
}

static jac_ctx *capped_ctx(void)
{
    jac_allocator a = {capped_alloc, plain_free, NULL};
    jac_ctx *ctx = jac_ctx_new_with_allocator(&a);
    assert_non_null(ctx);
    return ctx;
}

/* A Jacobian too large for the allocator (64 GB here) fails naming the
 * Jacobian, its shape and its size, not the internal op that allocated. */
static void test_a_jacobian_too_large_names_itself_and_its_size(void **state)
{
    (void)state;
    jac_ctx *ctx = capped_ctx();
    jac_tensor *x = jac_ones(ctx, 1, TU_SHAPE(90000));
    jac_set_requires_grad(x, true);
    jac_tensor *y = jac_exp(ctx, x);
    assert_null(jac_jacobian(ctx, y, x, 0));
    tu_assert_error(ctx, JAC_ERR_NO_MEMORY);
    tu_assert_contains(jac_errmsg(ctx), "jacobian: out of memory for shape "
                                        "(90000, 90000) (64800000000 bytes)");
    jac_ctx_free(ctx);
}

/* Fails unless the call refused with code (any error when code is JAC_OK)
 * and a message; then clears the error. */
static void assert_refused_at(jac_ctx *ctx, bool refused, jac_status code,
                              const char *what, const char *file, int line)
{
    inputs_tried++;
    if (!refused || jac_errcode(ctx) == JAC_OK ||
        (code != JAC_OK && jac_errcode(ctx) != code) ||
        jac_errmsg(ctx)[0] == '\0') {
        print_error("%s: %s with %s (\"%s\"), want a refusal with %s\n", what,
                    refused ? "refused" : "accepted",
                    jac_status_name(jac_errcode(ctx)), jac_errmsg(ctx),
                    code == JAC_OK ? "any error" : jac_status_name(code));
        tu_fail_at(file, line);
    }
    jac_clear_error(ctx);
}
#define REFUSED(ctx, t, code)                                                  \
    assert_refused_at((ctx), (t) == NULL, (code), #t, __FILE__, __LINE__)
#define REFUSED_STATUS(ctx, st, code)                                          \
    assert_refused_at((ctx), (st) != JAC_OK, (code), #st, __FILE__, __LINE__)

/* Fails unless the call made a tensor of the given shape without error. */
static void assert_made_at(jac_ctx *ctx, const jac_tensor *t, int ndim,
                           const int64_t *shape, const char *what,
                           const char *file, int line)
{
    inputs_tried++;
    if (t == NULL) {
        print_error("%s failed: %s\n", what, jac_errmsg(ctx));
        tu_fail_at(file, line);
    }
    tu_assert_shape_at(t, ndim, shape, file, line);
    tu_assert_no_error_at(ctx, file, line);
}
#define MADE(ctx, t, shape)                                                    \
    assert_made_at((ctx), (t), (int)TU_COUNT(shape), (shape), #t, __FILE__,    \
                   __LINE__)

static void test_ranks_outside_0_to_8_are_refused(void **state)
{
    (void)state;
    jac_ctx *ctx = capped_ctx();
    const int64_t *ones9 = TU_SHAPE(1, 1, 1, 1, 1, 1, 1, 1, 1);
    const int ranks[] = {9, 100, -1, INT32_MIN, INT32_MAX};
    jac_tensor *v = jac_ones(ctx, 1, TU_SHAPE(1));
    jac_tensor *r8 = jac_ones(ctx, 8, TU_SHAPE(1, 1, 1, 1, 1, 1, 1, 1));
    jac_set_requires_grad(r8, true);
    for (size_t i = 0; i < TU_COUNT(ranks); i++) {
        int n = ranks[i];
        REFUSED(ctx, jac_tensor_new(ctx, n, ones9, NULL), JAC_ERR_RANK);
        REFUSED(ctx, jac_zeros(ctx, n, ones9), JAC_ERR_RANK);
        REFUSED(ctx, jac_ones(ctx, n, ones9), JAC_ERR_RANK);
        REFUSED(ctx, jac_full(ctx, n, ones9, 1.0), JAC_ERR_RANK);
        REFUSED(ctx, jac_rand_uniform(ctx, n, ones9, 0, 1, 1), JAC_ERR_RANK);
        REFUSED(ctx, jac_rand_normal(ctx, n, ones9, 0, 1, 1), JAC_ERR_RANK);
        REFUSED(ctx, jac_reshape(ctx, v, n, ones9), JAC_ERR_RANK);
        REFUSED(ctx, jac_expand(ctx, v, n, ones9), JAC_ERR_RANK);
        REFUSED(ctx, jac_sum_to_shape(ctx, r8, n, ones9), JAC_OK);
    }
    /* Ops whose result would have rank 9. */
    REFUSED(ctx, jac_unsqueeze(ctx, r8, 0), JAC_ERR_RANK);
    jac_tensor *pair[2] = {r8, r8};
    REFUSED(ctx, jac_stack(ctx, 2, pair, 0), JAC_ERR_RANK);
    REFUSED(ctx, jac_jacobian(ctx, jac_sin(ctx, v), r8, 0), JAC_ERR_RANK);
    REFUSED(ctx, jac_jacobian(ctx, jac_sin(ctx, r8), r8, 0), JAC_ERR_RANK);
    jac_tensor *J = NULL;
    jac_tensor *y8 = jac_sin(ctx, r8);
    REFUSED_STATUS(ctx, jac_jacobian_ex(ctx, 1, &y8, 1, &r8, NULL, &J),
                   JAC_ERR_RANK);
    /* A batched seed adds an axis to a rank-8 output. */
    jac_tensor *seed9 = jac_ones(ctx, 8, TU_SHAPE(1, 1, 1, 1, 1, 1, 1, 1));
    jac_tensor *g = NULL;
    REFUSED_STATUS(ctx,
                   jac_grad(ctx, 1, &y8, &seed9, 1, &r8, JAC_BATCHED_SEEDS, &g),
                   JAC_OK);
    jac_ctx_free(ctx);
}

static void test_negative_extents_are_refused(void **state)
{
    (void)state;
    jac_ctx *ctx = capped_ctx();
    const int64_t bad[][2] = {{2, -1}, {-2, 3}, {INT64_MIN, 1}, {0, -1}};
    jac_tensor *v = jac_ones(ctx, 1, TU_SHAPE(2));
    jac_tensor *m = jac_ones(ctx, 2, TU_SHAPE(2, 3));
    for (size_t i = 0; i < TU_COUNT(bad); i++) {
        const int64_t *s = bad[i];
        REFUSED(ctx, jac_tensor_new(ctx, 2, s, NULL), JAC_ERR_VALUE);
        REFUSED(ctx, jac_zeros(ctx, 2, s), JAC_ERR_VALUE);
        REFUSED(ctx, jac_full(ctx, 2, s, 1.0), JAC_ERR_VALUE);
        REFUSED(ctx, jac_rand_normal(ctx, 2, s, 0, 1, 3), JAC_ERR_VALUE);
        REFUSED(ctx, jac_expand(ctx, v, 2, s), JAC_OK);
        REFUSED(ctx, jac_sum_to_shape(ctx, m, 2, s), JAC_OK);
        REFUSED(ctx, jac_pad(ctx, m, s, TU_SHAPE(0, 0)), JAC_ERR_VALUE);
        REFUSED(ctx, jac_pad(ctx, m, TU_SHAPE(0, 0), s), JAC_ERR_VALUE);
        REFUSED(ctx, jac_gather(ctx, m, 1, s, TU_SHAPE(0, 0, 0, 0, 0, 0)),
                JAC_OK);
    }
    /* reshape: -1 once is inferred; anything else negative is refused. */
    MADE(ctx, jac_reshape(ctx, m, 2, TU_SHAPE(-1, 2)), TU_SHAPE(3, 2));
    REFUSED(ctx, jac_reshape(ctx, m, 2, TU_SHAPE(-1, -1)), JAC_ERR_VALUE);
    REFUSED(ctx, jac_reshape(ctx, m, 2, TU_SHAPE(-2, -3)), JAC_ERR_VALUE);
    REFUSED(ctx, jac_reshape(ctx, m, 2, TU_SHAPE(INT64_MIN, -1)),
            JAC_ERR_VALUE);
    REFUSED(ctx, jac_eye(ctx, -1), JAC_ERR_VALUE);
    REFUSED(ctx, jac_eye(ctx, INT64_MIN), JAC_ERR_VALUE);
    /* Negative sizes, indices and steps. */
    jac_tensor *out[2] = {NULL, NULL};
    REFUSED_STATUS(ctx, jac_split(ctx, m, 1, 2, TU_SHAPE(-1, 4), out),
                   JAC_ERR_VALUE);
    REFUSED_STATUS(
        ctx, jac_split(ctx, m, 1, 2, TU_SHAPE(INT64_MIN, INT64_MIN + 3), out),
        JAC_ERR_VALUE);
    assert_null(out[0]);
    REFUSED(ctx, jac_index_select(ctx, m, 1, 1, TU_SHAPE(-1)), JAC_ERR_VALUE);
    REFUSED(ctx, jac_index_select(ctx, m, 1, 1, TU_SHAPE(INT64_MIN)),
            JAC_ERR_VALUE);
    REFUSED(ctx, jac_gather(ctx, m, 1, TU_SHAPE(1, 1), TU_SHAPE(-1)),
            JAC_ERR_VALUE);
    REFUSED(ctx, jac_slice(ctx, m, 1, 0, 3, 0), JAC_ERR_VALUE);
    REFUSED(ctx, jac_slice(ctx, m, 1, 0, 3, -1), JAC_ERR_VALUE);
    REFUSED(ctx, jac_slice(ctx, m, 1, 0, 3, INT64_MIN), JAC_ERR_VALUE);
    jac_ctx_free(ctx);
}

static void test_extents_whose_product_overflows_are_refused(void **state)
{
    (void)state;
    jac_ctx *ctx = capped_ctx();
    const int64_t big = (int64_t)1 << 32;
    const int64_t huge[][3] = {
        {big, big, 1},
        {3037000500, 3037000500, 2}, /* just past 2^63 */
        {INT64_MAX, 2, 1},
        {INT64_MAX, INT64_MAX, INT64_MAX},
        {(int64_t)1 << 62, 4, 1},
        /* Empty, but strides would overflow: refused as NumPy does. */
        {0, INT64_MAX, 2},
        {(int64_t)1 << 40, 0, (int64_t)1 << 40},
    };
    jac_tensor *v = jac_ones(ctx, 1, TU_SHAPE(1));
    for (size_t i = 0; i < TU_COUNT(huge); i++) {
        const int64_t *s = huge[i];
        REFUSED(ctx, jac_tensor_new(ctx, 3, s, NULL), JAC_ERR_OVERFLOW);
        REFUSED(ctx, jac_zeros(ctx, 3, s), JAC_ERR_OVERFLOW);
        REFUSED(ctx, jac_ones(ctx, 3, s), JAC_ERR_OVERFLOW);
        REFUSED(ctx, jac_rand_uniform(ctx, 3, s, 0, 1, 5), JAC_ERR_OVERFLOW);
        REFUSED(ctx, jac_expand(ctx, v, 3, s), JAC_ERR_OVERFLOW);
    }
    REFUSED(ctx, jac_eye(ctx, INT64_MAX), JAC_ERR_OVERFLOW);
    REFUSED(ctx, jac_eye(ctx, big), JAC_ERR_OVERFLOW);
    REFUSED(ctx, jac_arange(ctx, 0, 1e300, 1e-300), JAC_ERR_OVERFLOW);
    jac_tensor *empty = jac_zeros(ctx, 2, TU_SHAPE(0, 4));
    REFUSED(ctx, jac_reshape(ctx, empty, 3, TU_SHAPE(0, INT64_MAX, 4)),
            JAC_ERR_OVERFLOW);
    REFUSED(ctx, jac_reshape(ctx, empty, 3, TU_SHAPE(INT64_MAX, INT64_MAX, 0)),
            JAC_ERR_OVERFLOW);
    jac_tensor *m = jac_ones(ctx, 2, TU_SHAPE(2, 3));
    REFUSED(ctx, jac_pad(ctx, m, TU_SHAPE(INT64_MAX, 0), TU_SHAPE(1, 0)),
            JAC_ERR_OVERFLOW);
    REFUSED(ctx,
            jac_pad(ctx, m, TU_SHAPE(0, INT64_MAX), TU_SHAPE(0, INT64_MAX)),
            JAC_ERR_OVERFLOW);
    jac_tensor *out[3] = {NULL, NULL, NULL};
    REFUSED_STATUS(
        ctx, jac_split(ctx, m, 1, 3, TU_SHAPE(INT64_MAX, INT64_MAX, 5), out),
        JAC_ERR_VALUE);
    REFUSED(ctx,
            jac_gather(ctx, m, 1, TU_SHAPE(INT64_MAX, INT64_MAX), TU_SHAPE(0)),
            JAC_OK);
    REFUSED(ctx, jac_arange(ctx, -1e18, 1e18, 1e-3), JAC_ERR_OVERFLOW);
    /* The longest empty tensor, joined with itself along its long axis,
     * padded past the limit, stacked into a product beyond int64. */
    jac_tensor *wide = jac_zeros(ctx, 2, TU_SHAPE(0, INT64_MAX));
    MADE(ctx, wide, TU_SHAPE(0, INT64_MAX));
    jac_tensor *two[2] = {wide, wide};
    REFUSED(ctx, jac_concat(ctx, 2, two, 1), JAC_ERR_OVERFLOW);
    REFUSED(ctx, jac_pad(ctx, wide, TU_SHAPE(0, 1), TU_SHAPE(0, 0)),
            JAC_ERR_OVERFLOW);
    REFUSED(ctx, jac_stack(ctx, 2, two, 0), JAC_ERR_OVERFLOW);
    /* The diagonal of two unit axes in front of a 2^62 one: the stride of
     * the diagonal (2^62 + 2^62) is never formed as a signed sum. */
    jac_tensor *thin = jac_zeros(ctx, 4, TU_SHAPE(0, 1, 1, (int64_t)1 << 62));
    jac_set_requires_grad(thin, true);
    jac_tensor *d = jac_diagonal(ctx, thin, 0, 1, 2);
    MADE(ctx, d, TU_SHAPE(0, (int64_t)1 << 62, 1));
    jac_tensor *gd = NULL, *sd = jac_sum(ctx, d);
    tu_assert_ok(ctx,
                 jac_grad(ctx, 1, &sd, NULL, 1, &thin, JAC_CREATE_GRAPH, &gd));
    MADE(ctx, gd, TU_SHAPE(0, 1, 1, (int64_t)1 << 62));
    jac_ctx_free(ctx);
}

/* Op i of the huge-empty sweep applied to x of shape s; NULL past the
 * last. */
static jac_tensor *huge_op(jac_ctx *ctx, jac_tensor *x, const int64_t *s, int i)
{
    switch (i) {
    case 0:
        return jac_exp(ctx, x);
    case 1:
        return jac_transpose(ctx, x, 0, 2);
    case 2:
        return jac_permute(ctx, x, (const int[]){2, 0, 1});
    case 3:
        return jac_softmax(ctx, x, 2);
    case 4:
        return jac_log_softmax(ctx, x, 0);
    case 5:
        return jac_slice(ctx, x, 2, 1, INT64_MAX, 3);
    case 6:
        return jac_matmul(ctx, x, jac_transpose(ctx, x, 1, 2));
    case 7:
        return jac_diagonal(ctx, x, 0, 1, 2);
    case 8:
        return jac_diagonal(ctx, x, -5, 0, 2);
    case 9:
        return jac_trace(ctx, jac_slice(ctx, x, 0, 0, 1, 1));
    case 10:
        return jac_index_select(ctx, x, 1, 2, TU_SHAPE(0, 0));
    case 11:
        return jac_gather(ctx, x, 2, TU_SHAPE(s[0] ? 1 : 0, 1, 0), NULL);
    case 12:
        return jac_where(ctx, x, x, x);
    case 13:
        return jac_pad(ctx, x, TU_SHAPE(0, 0, 1), TU_SHAPE(1, 0, 0));
    case 14:
        return jac_flatten(ctx, x, 1, 2);
    case 15:
        return jac_flatten(ctx, x, 0, 1);
    case 16:
        return jac_reshape(ctx, x, 2, TU_SHAPE(s[0], -1));
    case 17:
        return jac_prod_axes(ctx, x, 1, (const int[]){1}, false);
    case 18:
        return jac_sum_axes(ctx, x, 1, (const int[]){2}, true);
    case 19:
        return jac_mean_axes(ctx, x, 2, (const int[]){0, 2}, false);
    case 20:
        return jac_max_axes(ctx, x, 1, (const int[]){1}, false);
    case 21:
        return jac_logsumexp(ctx, x, 1, (const int[]){0}, true);
    case 22:
        return jac_var(ctx, x, 1, (const int[]){2}, 1.0, false);
    case 23:
        return jac_norm(ctx, x, 2.0, 1, (const int[]){1}, true);
    case 24:
        return jac_sum_to_shape(ctx, x, 2, s + 1);
    case 25:
        return jac_expand(ctx, x, 4, TU_SHAPE(1, s[0], s[1], s[2]));
    case 26:
        return jac_inverse(ctx, x);
    case 27:
        return jac_det(ctx, x);
    case 28:
        return jac_cholesky(ctx, x);
    case 29:
        return jac_solve(ctx, x, x);
    case 30:
        return jac_pow(ctx, x, x);
    case 31:
        return jac_concat(ctx, 2, (jac_tensor *[]){x, x}, 1);
    case 32:
        return jac_stack(ctx, 2, (jac_tensor *[]){x, x}, 3);
    case 33:
        return jac_unsqueeze(ctx, x, 0);
    case 34:
        return jac_squeeze(ctx, jac_unsqueeze(ctx, x, 3), 3);
    default:
        return NULL;
    }
}

/* Empty tensors with the largest extents allowed (the product of the
 * non-zero extents fits in int64) go through ops, their rules and Jacobians
 * without overflowing a stride: each op gives an empty result, or refuses
 * cleanly when its result would be too large. */
static void test_empty_tensors_with_huge_extents_are_safe(void **state)
{
    (void)state;
    jac_ctx *ctx = capped_ctx();
    const int64_t g = 3000000000; /* g * g is just below 2^63 */
    const int64_t shapes[][3] = {{0, (int64_t)1 << 30, (int64_t)1 << 30},
                                 {0, g, g},
                                 {g, g, 0},
                                 {1, 0, INT64_MAX},
                                 {INT64_MAX, 1, 0}};
    size_t made = 0, refused = 0;
    for (size_t k = 0; k < TU_COUNT(shapes); k++) {
        jac_scope mark = jac_scope_begin(ctx);
        const int64_t *s = shapes[k];
        jac_tensor *x = jac_zeros(ctx, 3, s);
        assert_made_at(ctx, x, 3, s, "zeros", __FILE__, __LINE__);
        jac_set_requires_grad(x, true);
        jac_tensor *ys[35];
        for (int i = 0; i < 35; i++) {
            ys[i] = huge_op(ctx, x, s, i);
            inputs_tried++;
            if (ys[i] == NULL) {
                jac_status code = jac_errcode(ctx);
                if (code != JAC_ERR_OVERFLOW && code != JAC_ERR_NO_MEMORY &&
                    code != JAC_ERR_VALUE && code != JAC_ERR_SHAPE &&
                    code != JAC_ERR_RANK) {
                    print_error("shape %zu, op %d: %s (%s)\n", k, i,
                                jac_status_name(code), jac_errmsg(ctx));
                    fail();
                }
                jac_clear_error(ctx);
                refused++;
                continue;
            }
            made++;
            jac_tensor *seed =
                jac_zeros(ctx, jac_tensor_ndim(ys[i]), jac_tensor_shape(ys[i]));
            if (seed == NULL) {
                /* A reduction's result may be huge and real. */
                tu_assert_error(ctx, JAC_ERR_NO_MEMORY);
                jac_clear_error(ctx);
                continue;
            }
            jac_tensor *gx = NULL;
            jac_status st = jac_grad(
                ctx, 1, &ys[i], &seed, 1, &x,
                JAC_RETAIN_GRAPH | JAC_CREATE_GRAPH | JAC_ALLOW_UNUSED, &gx);
            if (st != JAC_OK) {
                /* Only memory may run out (a rule's temporary can be as
                 * large as a reduction's result). */
                tu_assert_error(ctx, JAC_ERR_NO_MEMORY);
                jac_clear_error(ctx);
                continue;
            }
            assert_int_equal(jac_tensor_numel(gx), 0);
            jac_tensor *J = jac_jacobian(ctx, ys[i], x, 0);
            inputs_tried++;
            if (J != NULL) {
                assert_int_equal(jac_tensor_numel(J), 0);
            } else {
                /* y.shape ++ x.shape: too large even empty, or too big. */
                assert_true(jac_errcode(ctx) == JAC_ERR_OVERFLOW ||
                            jac_errcode(ctx) == JAC_ERR_NO_MEMORY ||
                            jac_errcode(ctx) == JAC_ERR_RANK);
                jac_clear_error(ctx);
            }
        }
        tu_assert_ok(ctx, jac_scope_end(ctx, mark, NULL, 0));
    }
    print_message("huge empty tensors: %zu results made, %zu refused\n", made,
                  refused);
    assert_true(made > 100);
    jac_ctx_free(ctx);
}

static void test_out_of_range_integers_are_refused(void **state)
{
    (void)state;
    jac_ctx *ctx = capped_ctx();
    jac_tensor *m = jac_ones(ctx, 2, TU_SHAPE(3, 4));
    const int axes[] = {2, -3, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < TU_COUNT(axes); i++) {
        int ax = axes[i];
        REFUSED(ctx, jac_sum_axis(ctx, m, ax, false), JAC_ERR_AXIS);
        REFUSED(ctx, jac_sum_axes(ctx, m, 1, &ax, false), JAC_ERR_AXIS);
        REFUSED(ctx, jac_var(ctx, m, 1, &ax, 1.0, false), JAC_ERR_AXIS);
        REFUSED(ctx, jac_norm(ctx, m, 2.0, 1, &ax, true), JAC_ERR_AXIS);
        REFUSED(ctx, jac_softmax(ctx, m, ax), JAC_ERR_AXIS);
        REFUSED(ctx, jac_log_softmax(ctx, m, ax), JAC_ERR_AXIS);
        REFUSED(ctx, jac_transpose(ctx, m, ax, 0), JAC_ERR_AXIS);
        REFUSED(ctx, jac_diagonal(ctx, m, 0, 0, ax), JAC_ERR_AXIS);
        REFUSED(ctx, jac_slice(ctx, m, ax, 0, 1, 1), JAC_ERR_AXIS);
        REFUSED(ctx, jac_squeeze(ctx, m, ax), JAC_ERR_AXIS);
        REFUSED(ctx, jac_flatten(ctx, m, ax, 1), JAC_ERR_AXIS);
        REFUSED(ctx, jac_index_select(ctx, m, ax, 1, TU_SHAPE(0)),
                JAC_ERR_AXIS);
        REFUSED(ctx, jac_gather(ctx, m, ax, TU_SHAPE(1, 1), TU_SHAPE(0)),
                JAC_ERR_AXIS);
        REFUSED(ctx, jac_concat(ctx, 1, &m, ax), JAC_ERR_AXIS);
        jac_tensor *out[1] = {NULL};
        REFUSED_STATUS(ctx, jac_split(ctx, m, ax, 1, TU_SHAPE(3), out),
                       JAC_ERR_AXIS);
    }
    REFUSED(ctx, jac_unsqueeze(ctx, m, 3), JAC_ERR_AXIS);
    REFUSED(ctx, jac_stack(ctx, 1, &m, -4), JAC_ERR_AXIS);
    REFUSED(ctx, jac_sum_axes(ctx, m, -1, (const int[]){0}, false), JAC_OK);
    REFUSED(ctx, jac_sum_axes(ctx, m, 3, (const int[]){0, 1, 0}, false),
            JAC_ERR_AXIS);
    REFUSED(ctx, jac_permute(ctx, m, (const int[]){0, 0}), JAC_ERR_AXIS);
    REFUSED(ctx, jac_permute(ctx, m, (const int[]){-1, 0}), JAC_ERR_AXIS);
    REFUSED(ctx, jac_permute(ctx, m, (const int[]){INT32_MAX, 0}),
            JAC_ERR_AXIS);
    REFUSED(ctx, jac_diagonal(ctx, m, 0, 1, 1), JAC_ERR_AXIS);
    /* Offsets and slice bounds at the ends of int64 are clamped. */
    MADE(ctx, jac_diagonal(ctx, m, INT64_MIN, 0, 1), TU_SHAPE(0));
    MADE(ctx, jac_diagonal(ctx, m, INT64_MAX, 0, 1), TU_SHAPE(0));
    MADE(ctx, jac_slice(ctx, m, 1, INT64_MIN, INT64_MAX, INT64_MAX),
         TU_SHAPE(3, 1));
    MADE(ctx, jac_slice(ctx, m, 1, INT64_MAX, INT64_MIN, 1), TU_SHAPE(3, 0));
    /* Values out of their domain. */
    REFUSED(ctx, jac_clamp(ctx, m, NAN, 1.0), JAC_ERR_VALUE);
    REFUSED(ctx, jac_clamp(ctx, m, 2.0, 1.0), JAC_ERR_VALUE);
    REFUSED(ctx, jac_norm(ctx, m, 3.0, 0, NULL, false), JAC_ERR_VALUE);
    REFUSED(ctx, jac_norm(ctx, m, NAN, 0, NULL, false), JAC_ERR_VALUE);
    REFUSED(ctx, jac_var(ctx, m, 0, NULL, NAN, false), JAC_ERR_VALUE);
    REFUSED(ctx, jac_arange(ctx, 0, 1, 0), JAC_ERR_VALUE);
    REFUSED(ctx, jac_arange(ctx, 0, NAN, 1), JAC_ERR_VALUE);
    REFUSED(ctx, jac_arange(ctx, 0, 1, -INFINITY), JAC_ERR_VALUE);
    REFUSED(ctx, jac_rand_uniform(ctx, 1, TU_SHAPE(2), 1, 0, 1), JAC_ERR_VALUE);
    REFUSED(ctx, jac_rand_normal(ctx, 1, TU_SHAPE(2), NAN, 1, 1),
            JAC_ERR_VALUE);
    REFUSED(ctx, jac_rand_normal(ctx, 1, TU_SHAPE(2), 0, -1, 1), JAC_ERR_VALUE);
    REFUSED_STATUS(ctx, jac_ctx_set_threads(ctx, 0), JAC_ERR_VALUE);
    REFUSED_STATUS(ctx, jac_ctx_set_threads(ctx, INT32_MIN), JAC_ERR_VALUE);
    REFUSED_STATUS(ctx, jac_ctx_set_threads(ctx, 100000), JAC_ERR_VALUE);
    REFUSED_STATUS(ctx, jac_ctx_set_memory_budget(ctx, 0), JAC_ERR_VALUE);
    REFUSED_STATUS(ctx,
                   jac_scope_end(ctx, (jac_scope){SIZE_MAX, SIZE_MAX}, NULL, 0),
                   JAC_ERR_VALUE);
    REFUSED_STATUS(ctx, jac_scope_end(ctx, jac_scope_begin(ctx), NULL, 5),
                   JAC_ERR_NULL_ARG);
    assert_true(isnan(jac_tensor_get(m, TU_SHAPE(INT64_MIN, 0))));
    assert_true(isnan(jac_tensor_get(m, TU_SHAPE(3, 0))));
    assert_int_equal(jac_tensor_dim(m, INT32_MIN), -1);
    assert_int_equal(jac_tensor_dim(m, 2), -1);
    /* Driver options out of range, and the largest chunk. */
    jac_set_requires_grad(m, true);
    jac_tensor *y = jac_exp(ctx, m), *J = NULL;
    jac_jacobian_opts bad = {0, -5, (jac_mode)77, NULL, NULL};
    REFUSED_STATUS(ctx, jac_jacobian_ex(ctx, 1, &y, 1, &m, &bad, &J),
                   JAC_ERR_VALUE);
    const jac_mode modes[] = {JAC_MODE_REVERSE, JAC_MODE_FORWARD};
    for (int threads = 1; threads <= 3; threads += 2) {
        tu_assert_ok(ctx, jac_ctx_set_threads(ctx, threads));
        for (size_t i = 0; i < TU_COUNT(modes); i++) {
            jac_jacobian_opts most = {0, INT64_MAX, modes[i], NULL, NULL};
            tu_assert_ok(ctx, jac_jacobian_ex(ctx, 1, &y, 1, &m, &most, &J));
            tu_assert_close(&(double){jac_tensor_get(J, TU_SHAPE(1, 2, 1, 2))},
                            &(double){exp(1.0)}, 1, 1e-15, 0.0);
            inputs_tried++;
        }
    }
    /* Unknown flag bits are ignored; JAC_BATCHED_SEEDS among them needs
     * seeds. */
    jac_tensor *s = jac_sum(ctx, y), *g = NULL;
    REFUSED_STATUS(ctx, jac_grad(ctx, 1, &s, NULL, 1, &m, 0xffffffffu, &g),
                   JAC_ERR_NO_SEED);
    jac_ctx_free(ctx);
}

/* ------------------------------------------------------------------------ */
/* NaN and infinity                                                         */
/* ------------------------------------------------------------------------ */

/* Equal as IEEE values: both NaN, or equal with the same sign (so that
 * -0 and +0 differ). */
static bool same_value(double a, double b)
{
    return (isnan(a) && isnan(b)) || (a == b && signbit(a) == signbit(b));
}

typedef jac_tensor *(*unary_op)(jac_ctx *, jac_tensor *);
typedef jac_tensor *(*binary_fn)(jac_ctx *, jac_tensor *, jac_tensor *);

static void test_nan_and_inf_propagate_as_ieee_754_says(void **state)
{
    (void)state;
    jac_ctx *ctx = capped_ctx();
    static const double special[] = {NAN,   INFINITY, -INFINITY, 0.0, -0.0,
                                     1e308, -1e308,   5e-324,    1.0, -1.0};
    const int64_t n = (int64_t)TU_COUNT(special);
    jac_tensor *x = jac_tensor_new(ctx, 1, &n, special);
    jac_set_requires_grad(x, true);
    /* Ops computed by the C library function of the same name. */
    static const struct {
        const char *name;
        unary_op op;
        double (*ref)(double);
    } libm[] = {
        {"exp", jac_exp, exp},       {"log", jac_log, log},
        {"sin", jac_sin, sin},       {"cos", jac_cos, cos},
        {"tanh", jac_tanh, tanh},    {"abs", jac_abs, fabs},
        {"sqrt", jac_sqrt, sqrt},    {"expm1", jac_expm1, expm1},
        {"log1p", jac_log1p, log1p}, {"tan", jac_tan, tan},
        {"asin", jac_asin, asin},    {"acos", jac_acos, acos},
        {"atan", jac_atan, atan},    {"sinh", jac_sinh, sinh},
        {"cosh", jac_cosh, cosh},    {"asinh", jac_asinh, asinh},
        {"erf", jac_erf, erf},
    };
    for (size_t i = 0; i < TU_COUNT(libm); i++) {
        jac_tensor *y = libm[i].op(ctx, x);
        assert_non_null(y);
        for (int64_t k = 0; k < n; k++) {
            double want = libm[i].ref(special[k]);
            double got = jac_tensor_data(y)[k];
            inputs_tried++;
            if (!same_value(got, want)) {
                print_error("%s(%g) = %g, want %g\n", libm[i].name, special[k],
                            got, want);
                fail();
            }
        }
    }
    /* The others: NaN gives NaN, and the limits are exact. */
    static const struct {
        const char *name;
        unary_op op;
        double at_inf, at_minus_inf;
    } limits[] = {
        {"neg", jac_neg, -INFINITY, INFINITY},
        {"square", jac_square, INFINITY, INFINITY},
        {"reciprocal", jac_reciprocal, 0.0, -0.0},
        {"rsqrt", jac_rsqrt, 0.0, NAN},
        {"sign", jac_sign, 1.0, -1.0},
        {"sigmoid", jac_sigmoid, 1.0, 0.0},
        {"relu", jac_relu, INFINITY, 0.0},
        {"softplus", jac_softplus, INFINITY, 0.0},
    };
    for (size_t i = 0; i < TU_COUNT(limits); i++) {
        jac_tensor *y = limits[i].op(ctx, x);
        assert_non_null(y);
        const double *d = jac_tensor_data(y);
        inputs_tried += 3;
        if (!isnan(d[0]) || !same_value(d[1], limits[i].at_inf) ||
            !same_value(d[2], limits[i].at_minus_inf)) {
            print_error("%s(nan, inf, -inf) = (%g, %g, %g), want (nan, %g, "
                        "%g)\n",
                        limits[i].name, d[0], d[1], d[2], limits[i].at_inf,
                        limits[i].at_minus_inf);
            fail();
        }
    }
    assert_true(
        same_value(jac_tensor_data(jac_reciprocal(ctx, x))[3], INFINITY));
    assert_true(
        same_value(jac_tensor_data(jac_reciprocal(ctx, x))[4], -INFINITY));
    /* Binary ops. */
    jac_tensor *a =
        tu_tensor(ctx, TU_SHAPE(6), TU_VALUES(INFINITY, 0, 1, -1, 0, NAN));
    jac_tensor *b =
        tu_tensor(ctx, TU_SHAPE(6), TU_VALUES(-INFINITY, INFINITY, 0, 0, 0, 1));
    tu_assert_tensor(jac_add(ctx, a, b), TU_SHAPE(6),
                     TU_VALUES(NAN, INFINITY, 1, -1, 0, NAN), 0.0);
    tu_assert_tensor(jac_mul(ctx, a, b), TU_SHAPE(6),
                     TU_VALUES(-INFINITY, NAN, 0, -0.0, 0, NAN), 0.0);
    tu_assert_tensor(jac_div(ctx, a, b), TU_SHAPE(6),
                     TU_VALUES(NAN, 0, INFINITY, -INFINITY, NAN, NAN), 0.0);
    tu_assert_tensor(jac_maximum(ctx, a, b), TU_SHAPE(6),
                     TU_VALUES(INFINITY, INFINITY, 1, 0, 0, NAN), 0.0);
    tu_assert_tensor(jac_minimum(ctx, b, a), TU_SHAPE(6),
                     TU_VALUES(-INFINITY, 0, 0, -1, 0, NAN), 0.0);
    tu_assert_tensor(jac_pow_scalar(ctx, b, -1.0), TU_SHAPE(6),
                     TU_VALUES(-0.0, 0, INFINITY, INFINITY, INFINITY, 1), 0.0);
    tu_assert_tensor(jac_atan2(ctx, a, b), TU_SHAPE(6),
                     TU_VALUES(atan2(INFINITY, -INFINITY), 0, atan2(1, 0),
                               atan2(-1, 0), 0, NAN),
                     1e-15);
    inputs_tried += 36;
    /* Reductions: a NaN anywhere gives NaN; infinities as IEEE says. */
    for (int64_t at = 0; at < 3; at++) {
        double v[3] = {1, 2, 3};
        v[at] = NAN;
        jac_tensor *t = jac_tensor_new(ctx, 1, TU_SHAPE(3), v);
        jac_set_requires_grad(t, true);
        unary_op reduce[] = {jac_sum, jac_mean, jac_prod, jac_max, jac_min};
        for (size_t i = 0; i < TU_COUNT(reduce); i++) {
            jac_tensor *r = reduce[i](ctx, t);
            inputs_tried++;
            if (r == NULL || !isnan(jac_tensor_item(r))) {
                print_error("reduction %zu with NaN at %lld: %g\n", i,
                            (long long)at, jac_tensor_item(r));
                fail();
            }
            jac_tensor *g = NULL;
            tu_assert_ok(ctx, jac_grad(ctx, 1, &r, NULL, 1, &t, 0, &g));
        }
        assert_true(isnan(jac_tensor_item(jac_logsumexp(ctx, t, 0, NULL, 0))));
        assert_true(isnan(jac_tensor_item(jac_norm(ctx, t, 2, 0, NULL, 0))));
        assert_true(isnan(jac_tensor_item(jac_norm(ctx, t, 1, 0, NULL, 0))));
        assert_true(
            isnan(jac_tensor_item(jac_norm(ctx, t, INFINITY, 0, NULL, 0))));
        assert_true(isnan(jac_tensor_item(jac_var(ctx, t, 0, NULL, 1, 0))));
        jac_tensor *sm = jac_softmax(ctx, t, 0);
        for (int k = 0; k < 3; k++) {
            assert_true(isnan(jac_tensor_data(sm)[k]));
        }
        inputs_tried += 6;
    }
    jac_tensor *minf =
        tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(-INFINITY, -INFINITY));
    tu_assert_scalar(jac_logsumexp(ctx, minf, 0, NULL, false), -INFINITY, 0);
    jac_tensor *pinf = tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(INFINITY, 1));
    tu_assert_scalar(jac_logsumexp(ctx, pinf, 0, NULL, false), INFINITY, 0);
    tu_assert_scalar(jac_sum(ctx, pinf), INFINITY, 0);
    tu_assert_scalar(jac_norm(ctx, pinf, 2, 0, NULL, false), INFINITY, 0);
    tu_assert_scalar(jac_max(ctx, pinf), INFINITY, 0);
    jac_tensor *both =
        tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(INFINITY, -INFINITY));
    assert_true(isnan(jac_tensor_item(jac_sum(ctx, both))));
    inputs_tried += 7;
    /* Gradients through non-finite values run and carry NaN or inf. */
    jac_tensor *e = jac_sum(ctx, jac_exp(ctx, x)), *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &e, NULL, 1, &x, JAC_CREATE_GRAPH, &g));
    assert_true(isnan(jac_tensor_data(g)[0]));
    assert_true(same_value(jac_tensor_data(g)[1], INFINITY));
    assert_true(same_value(jac_tensor_data(g)[2], 0.0));
    jac_tensor *gg = NULL, *gs = jac_sum(ctx, g);
    tu_assert_ok(ctx, jac_grad(ctx, 1, &gs, NULL, 1, &x, 0, &gg));
    assert_true(isnan(jac_tensor_data(gg)[0]));
    jac_tensor *J = jac_jacobian(ctx, jac_tanh(ctx, x), x, 0);
    assert_non_null(J);
    assert_true(isnan(jac_tensor_get(J, TU_SHAPE(0, 0))));
    inputs_tried += 3;
    /* Linear algebra with non-finite entries: a result or a clean
     * refusal, never a crash. */
    const double bad[][4] = {{NAN, 1, 1, 2},
                             {INFINITY, 1, 1, 2},
                             {-INFINITY, 0, 0, -INFINITY},
                             {NAN, NAN, NAN, NAN}};
    for (size_t i = 0; i < TU_COUNT(bad); i++) {
        jac_tensor *M = jac_tensor_new(ctx, 2, TU_SHAPE(2, 2), bad[i]);
        jac_set_requires_grad(M, true);
        jac_tensor *v = jac_ones(ctx, 1, TU_SHAPE(2));
        /* One at a time, so that each refusal is the error kept. */
        for (int k = 0; k < 6; k++) {
            inputs_tried++;
            jac_tensor *rk = k == 0   ? jac_matmul(ctx, M, M)
                             : k == 1 ? jac_solve(ctx, M, v)
                             : k == 2 ? jac_inverse(ctx, M)
                             : k == 3 ? jac_det(ctx, M)
                             : k == 4 ? jac_logdet(ctx, M)
                                      : jac_cholesky(ctx, M);
            if (rk == NULL) {
                assert_true(jac_errcode(ctx) == JAC_ERR_VALUE);
                assert_true(jac_errmsg(ctx)[0] != '\0');
                jac_clear_error(ctx);
                continue;
            }
            jac_tensor *sr = jac_sum(ctx, rk), *gm = NULL;
            jac_status st = jac_grad(ctx, 1, &sr, NULL, 1, &M, 0, &gm);
            if (st != JAC_OK) {
                assert_true(jac_errcode(ctx) == JAC_ERR_VALUE);
                jac_clear_error(ctx);
            }
        }
    }
    jac_ctx_free(ctx);
}

/* ------------------------------------------------------------------------ */
/* Repeated inputs                                                          */
/* ------------------------------------------------------------------------ */

static void test_repeated_inputs_each_get_the_whole_gradient(void **state)
{
    (void)state;
    jac_ctx *ctx = capped_ctx();
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1, 2));
    jac_tensor *w = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(3, 4));
    jac_tensor *y = jac_sum(ctx, jac_mul(ctx, jac_mul(ctx, x, x), w));
    jac_tensor *ins[3] = {x, w, x}, *g[3] = {NULL, NULL, NULL};
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 3, ins, JAC_RETAIN_GRAPH, g));
    tu_assert_tensor(g[0], TU_SHAPE(2), TU_VALUES(6, 16), 0.0);
    tu_assert_tensor(g[1], TU_SHAPE(2), TU_VALUES(1, 4), 0.0);
    tu_assert_tensor(g[2], TU_SHAPE(2), TU_VALUES(6, 16), 0.0);
    /* Repeated outputs add up. */
    jac_tensor *outs[2] = {y, y};
    tu_assert_ok(ctx, jac_grad(ctx, 2, outs, NULL, 1, &x, JAC_RETAIN_GRAPH, g));
    tu_assert_tensor(g[0], TU_SHAPE(2), TU_VALUES(12, 32), 0.0);
    /* And with create-graph, the repeated results stay differentiable. */
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 3, ins, JAC_CREATE_GRAPH, g));
    jac_tensor *s = jac_sum(ctx, jac_add(ctx, g[0], g[2])), *h = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &s, NULL, 1, &x, JAC_RETAIN_GRAPH, &h));
    tu_assert_tensor(h, TU_SHAPE(2), TU_VALUES(12, 16), 0.0);
    /* Jacobians with a repeated input give the block twice. */
    jac_tensor *v = jac_mul(ctx, x, w), *J[4] = {NULL, NULL, NULL, NULL};
    jac_tensor *xs[2] = {x, x}, *vs[2] = {v, v};
    const jac_mode modes[] = {JAC_MODE_REVERSE, JAC_MODE_FORWARD};
    for (size_t i = 0; i < TU_COUNT(modes); i++) {
        jac_jacobian_opts o = {0, 1, modes[i], NULL, NULL};
        tu_assert_ok(ctx, jac_jacobian_ex(ctx, 2, vs, 2, xs, &o, J));
        for (int k = 0; k < 4; k++) {
            tu_assert_tensor(J[k], TU_SHAPE(2, 2), TU_VALUES(3, 0, 0, 4), 0.0);
        }
    }
    /* The same tensor as both operands of an op, and the same leaf twice in
     * jac_backward's graph. */
    jac_tensor *z =
        jac_sum(ctx, jac_matmul(ctx, jac_reshape(ctx, x, 2, TU_SHAPE(1, 2)),
                                jac_reshape(ctx, x, 2, TU_SHAPE(2, 1))));
    tu_assert_ok(ctx, jac_backward(ctx, z, NULL, 0));
    tu_assert_tensor(jac_tensor_grad(x), TU_SHAPE(2), TU_VALUES(2, 4), 0.0);
    inputs_tried += 8;
    jac_ctx_free(ctx);
}

/* ------------------------------------------------------------------------ */
/* Zero-size tensors through every op                                       */
/* ------------------------------------------------------------------------ */

/* Runs y = op(x), a gradient with create-graph and its own gradient, and
 * the Jacobian in both modes. Returns whether op refused (cleanly). */
static bool through_the_engine(jac_ctx *ctx, const char *name, jac_tensor *x,
                               jac_tensor *y)
{
    inputs_tried++;
    if (y == NULL) {
        jac_status code = jac_errcode(ctx);
        if (code == JAC_OK || code == JAC_ERR_NO_MEMORY ||
            jac_errmsg(ctx)[0] == '\0') {
            print_error("%s of an empty tensor: NULL with %s (\"%s\")\n", name,
                        jac_status_name(code), jac_errmsg(ctx));
            fail();
        }
        jac_clear_error(ctx);
        return true;
    }
    tu_assert_no_error(ctx);
    jac_tensor *seed = jac_ones(ctx, jac_tensor_ndim(y), jac_tensor_shape(y));
    jac_tensor *g = NULL;
    jac_status st = jac_grad(ctx, 1, &y, &seed, 1, &x,
                             JAC_CREATE_GRAPH | JAC_ALLOW_UNUSED, &g);
    if (st != JAC_OK) {
        print_error("%s: gradient failed: %s\n", name, jac_errmsg(ctx));
        fail();
    }
    assert_int_equal(jac_tensor_ndim(g), jac_tensor_ndim(x));
    assert_int_equal(jac_tensor_numel(g), 0);
    jac_tensor *gs = jac_sum(ctx, g), *gg = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &gs, NULL, 1, &x,
                               JAC_ALLOW_UNUSED | JAC_RETAIN_GRAPH, &gg));
    if (jac_tensor_ndim(y) + jac_tensor_ndim(x) <= JAC_MAX_DIMS) {
        const jac_mode modes[] = {JAC_MODE_REVERSE, JAC_MODE_FORWARD};
        for (size_t i = 0; i < TU_COUNT(modes); i++) {
            jac_jacobian_opts o = {i ? JAC_CREATE_GRAPH : 0u, 0, modes[i], NULL,
                                   NULL};
            jac_tensor *J = NULL;
            st = jac_jacobian_ex(ctx, 1, &y, 1, &x, &o, &J);
            if (st != JAC_OK) {
                print_error("%s: Jacobian failed: %s\n", name, jac_errmsg(ctx));
                fail();
            }
            assert_int_equal(jac_tensor_numel(J), 0);
        }
    }
    return false;
}

typedef jac_tensor *(*empty_op)(jac_ctx *ctx, jac_tensor *x);

#define EMPTY_OP(id, expr)                                                     \
    static jac_tensor *empty_##id(jac_ctx *ctx, jac_tensor *x)                 \
    {                                                                          \
        return (expr);                                                         \
    }
#define EMPTY_OPS(X)                                                           \
    X(add, jac_add(ctx, x, x))                                                 \
    X(sub_broadcast, jac_sub(ctx, x, jac_ones(ctx, 0, NULL)))                  \
    X(mul, jac_mul(ctx, x, x))                                                 \
    X(div, jac_div(ctx, x, x))                                                 \
    X(pow, jac_pow(ctx, x, x))                                                 \
    X(maximum, jac_maximum(ctx, x, x))                                         \
    X(minimum, jac_minimum(ctx, x, jac_zeros(ctx, 0, NULL)))                   \
    X(atan2, jac_atan2(ctx, x, x))                                             \
    X(gt, jac_gt(ctx, x, x))                                                   \
    X(ge_broadcast, jac_ge(ctx, x, jac_ones(ctx, 0, NULL)))                    \
    X(lt, jac_lt(ctx, x, x))                                                   \
    X(le, jac_le(ctx, x, x))                                                   \
    X(eq, jac_eq(ctx, x, x))                                                   \
    X(ne_broadcast, jac_ne(ctx, jac_zeros(ctx, 0, NULL), x))                   \
    X(add_scalar, jac_add_scalar(ctx, x, 1))                                   \
    X(sub_scalar, jac_sub_scalar(ctx, x, 1))                                   \
    X(mul_scalar, jac_mul_scalar(ctx, x, 2))                                   \
    X(div_scalar, jac_div_scalar(ctx, x, 2))                                   \
    X(rsub_scalar, jac_rsub_scalar(ctx, 1, x))                                 \
    X(pow_scalar, jac_pow_scalar(ctx, x, 3))                                   \
    X(clamp, jac_clamp(ctx, x, -1, 1))                                         \
    X(sum_axis, jac_sum_axis(ctx, x, -1, true))                                \
    X(sum_axes, jac_sum_axes(ctx, x, 1, (const int[]){0}, false))              \
    X(mean_axes, jac_mean_axes(ctx, x, 1, (const int[]){-1}, true))            \
    X(prod_axes, jac_prod_axes(ctx, x, 1, (const int[]){0}, false))            \
    X(max_axes, jac_max_axes(ctx, x, 1, (const int[]){0}, false))              \
    X(min_axes, jac_min_axes(ctx, x, 1, (const int[]){-1}, true))              \
    X(logsumexp, jac_logsumexp(ctx, x, 0, NULL, false))                        \
    X(logsumexp_axis, jac_logsumexp(ctx, x, 1, (const int[]){-1}, false))      \
    X(var, jac_var(ctx, x, 0, NULL, 1.0, false))                               \
    X(std, jac_std(ctx, x, 1, (const int[]){0}, 0.0, true))                    \
    X(norm1, jac_norm(ctx, x, 1.0, 0, NULL, false))                            \
    X(norm2, jac_norm(ctx, x, 2.0, 1, (const int[]){-1}, false))               \
    X(norm_inf, jac_norm(ctx, x, INFINITY, 0, NULL, false))                    \
    X(softmax, jac_softmax(ctx, x, -1))                                        \
    X(log_softmax, jac_log_softmax(ctx, x, 0))                                 \
    X(sum_to_shape, jac_sum_to_shape(ctx, x, jac_tensor_ndim(x) - 1,           \
                                     jac_tensor_shape(x) + 1))                 \
    X(expand, jac_expand(ctx, x, 2, (int64_t[]){2, jac_tensor_dim(x, -1)}))    \
    X(matmul_left,                                                             \
      jac_matmul(ctx, jac_ones(ctx, 1, (int64_t[]){jac_tensor_dim(x, 0)}), x)) \
    X(matmul_right,                                                            \
      jac_matmul(ctx, x,                                                       \
                 jac_ones(ctx, 2, (int64_t[]){jac_tensor_dim(x, -1), 3})))     \
    X(matmul_self, jac_matmul(ctx, x, jac_transpose(ctx, x, 0, -1)))           \
    X(transpose, jac_transpose(ctx, x, 0, -1))                                 \
    X(permute,                                                                 \
      jac_permute(ctx,                                                         \
                  jac_reshape(ctx, x, 2, (int64_t[]){jac_tensor_numel(x), 1}), \
                  (const int[]){1, 0}))                                        \
    X(dot,                                                                     \
      jac_dot(ctx, jac_flatten(ctx, x, 0, -1), jac_flatten(ctx, x, 0, -1)))    \
    X(outer, jac_outer(ctx, jac_flatten(ctx, x, 0, -1),                        \
                       jac_ones(ctx, 1, (int64_t[]){2})))                      \
    X(trace, jac_trace(ctx, x))                                                \
    X(diagonal, jac_diagonal(ctx, x, 1, 0, -1))                                \
    X(solve, jac_solve(ctx, x, x))                                             \
    X(reshape, jac_reshape(ctx, x, 1, (int64_t[]){0}))                         \
    X(slice, jac_slice(ctx, x, 0, 1, 5, 2))                                    \
    X(concat, jac_concat(ctx, 2, (jac_tensor *[]){x, x}, -1))                  \
    X(stack, jac_stack(ctx, 2, (jac_tensor *[]){x, x}, 0))                     \
    X(flatten, jac_flatten(ctx, x, 0, -1))                                     \
    X(squeeze, jac_squeeze(ctx, jac_unsqueeze(ctx, x, 0), 0))                  \
    X(index_select_none, jac_index_select(ctx, x, 0, 0, NULL))                 \
    X(index_select, jac_index_select(ctx, x, -1, 2, (int64_t[]){0, 0}))        \
    X(gather, jac_gather(ctx, x, 0, jac_tensor_shape(x), NULL))                \
    X(where, jac_where(ctx, x, x, jac_ones(ctx, 0, NULL)))                     \
    X(pad, jac_pad(ctx, x, (int64_t[]){1, 0, 0}, (int64_t[]){0, 2, 0}))        \
    X(split, split_first(ctx, x))

/* The first of two pieces of x split along its last axis. */
static jac_tensor *split_first(jac_ctx *ctx, jac_tensor *x)
{
    int64_t e = jac_tensor_dim(x, -1);
    jac_tensor *out[2] = {NULL, NULL};
    if (jac_split(ctx, x, -1, 2, (int64_t[]){e / 2, e - e / 2}, out) !=
        JAC_OK) {
        return NULL;
    }
    return out[0];
}

EMPTY_OPS(EMPTY_OP)

static const struct {
    const char *name;
    empty_op op;
} empty_ops[] = {
#define EMPTY_ENTRY(id, expr) {#id, empty_##id},
    EMPTY_OPS(EMPTY_ENTRY)
#undef EMPTY_ENTRY
};

static void test_zero_size_tensors_pass_through_every_op(void **state)
{
    (void)state;
    jac_ctx *ctx = capped_ctx();
    const struct {
        int ndim;
        int64_t shape[3];
    } shapes[] = {
        {1, {0}}, {2, {2, 0}}, {2, {0, 3}}, {2, {0, 0}}, {3, {2, 0, 3}}};
    static const unary_op unary[] = {
        jac_neg,    jac_exp,        jac_log,   jac_sin,      jac_cos,
        jac_tanh,   jac_abs,        jac_sign,  jac_sqrt,     jac_rsqrt,
        jac_square, jac_reciprocal, jac_expm1, jac_log1p,    jac_tan,
        jac_asin,   jac_acos,       jac_atan,  jac_sinh,     jac_cosh,
        jac_asinh,  jac_sigmoid,    jac_relu,  jac_softplus, jac_erf,
        jac_sum,    jac_mean,       jac_prod,  jac_max,      jac_min,
        jac_trace,  jac_inverse,    jac_det,   jac_logdet,   jac_cholesky};
    size_t refused = 0, ran = 0;
    for (size_t s = 0; s < TU_COUNT(shapes); s++) {
        jac_scope mark = jac_scope_begin(ctx);
        jac_tensor *x = jac_zeros(ctx, shapes[s].ndim, shapes[s].shape);
        jac_set_requires_grad(x, true);
        for (size_t i = 0; i < TU_COUNT(unary); i++) {
            refused += through_the_engine(ctx, "unary op", x, unary[i](ctx, x));
            ran++;
        }
        for (size_t i = 0; i < TU_COUNT(empty_ops); i++) {
            refused += through_the_engine(ctx, empty_ops[i].name, x,
                                          empty_ops[i].op(ctx, x));
            ran++;
        }
        tu_assert_ok(ctx, jac_scope_end(ctx, mark, NULL, 0));
    }
    /* Values of empty reductions: the identity of the operation. */
    jac_tensor *e = jac_zeros(ctx, 2, TU_SHAPE(2, 0));
    tu_assert_scalar(jac_sum(ctx, e), 0.0, 0.0);
    tu_assert_scalar(jac_prod(ctx, e), 1.0, 0.0);
    tu_assert_scalar(jac_logsumexp(ctx, e, 0, NULL, false), -INFINITY, 0.0);
    assert_true(isnan(jac_tensor_item(jac_mean(ctx, e))));
    jac_tensor *z = jac_zeros(ctx, 2, TU_SHAPE(0, 0));
    tu_assert_scalar(jac_det(ctx, z), 1.0, 0.0);
    tu_assert_scalar(jac_logdet(ctx, z), 0.0, 0.0);
    tu_assert_scalar(jac_trace(ctx, z), 0.0, 0.0);
    tu_assert_tensor(jac_matmul(ctx, e, jac_zeros(ctx, 2, TU_SHAPE(0, 2))),
                     TU_SHAPE(2, 2), TU_VALUES(0, 0, 0, 0), 0.0);
    REFUSED(ctx, jac_max(ctx, e), JAC_ERR_VALUE);
    print_message("%zu op applications to empty tensors, %zu refused "
                  "cleanly\n",
                  ran, refused);
    jac_ctx_free(ctx);
}

/* A non-empty input that reaches the output only through an empty tensor
 * (a scalar of it broadcast against an empty slice of it) has a gradient of
 * exact zeros, in every pass: unrecorded, recorded, and Jacobian rows. */
static void test_gradients_through_an_empty_intermediate_are_zero(void **state)
{
    (void)state;
    jac_ctx *ctx = capped_ctx();
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2, 3), TU_VALUES(1, 2, 3, 4, 5, 6));
    jac_tensor *s = jac_logsumexp(ctx, x, 0, NULL, false);
    jac_tensor *e = jac_slice(ctx, x, 1, 0, 0, 1); /* (2, 0) */
    binary_fn ops[] = {jac_add, jac_sub,   jac_mul,     jac_div,
                       jac_pow, jac_atan2, jac_maximum, jac_minimum};
    unary_op reductions[] = {jac_sum, jac_mean, jac_prod};
    for (size_t i = 0; i < TU_COUNT(ops); i++) {
        jac_tensor *pair[2] = {ops[i](ctx, s, e), ops[i](ctx, e, s)};
        for (int k = 0; k < 2; k++) {
            for (size_t r = 0; r < TU_COUNT(reductions); r++) {
                jac_tensor *y = reductions[r](ctx, pair[k]);
                const unsigned flags[] = {JAC_RETAIN_GRAPH, JAC_CREATE_GRAPH};
                for (size_t f = 0; f < TU_COUNT(flags); f++) {
                    jac_tensor *g = NULL;
                    tu_assert_ok(
                        ctx, jac_grad(ctx, 1, &y, NULL, 1, &x, flags[f], &g));
                    tu_assert_tensor(g, TU_SHAPE(2, 3),
                                     TU_VALUES(0, 0, 0, 0, 0, 0), 0.0);
                    inputs_tried++;
                }
                jac_tensor *J = jac_jacobian(ctx, y, x, 0);
                tu_assert_tensor(J, TU_SHAPE(2, 3), TU_VALUES(0, 0, 0, 0, 0, 0),
                                 0.0);
            }
        }
    }
    jac_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_jacobian_too_large_names_itself_and_its_size),
        cmocka_unit_test(test_null_table_covers_every_public_function),
        cmocka_unit_test_setup_teardown(
            test_null_in_every_pointer_argument_is_refused_cleanly,
            setup_fixture, teardown_fixture),
        cmocka_unit_test_setup_teardown(
            test_a_released_tensor_is_reported_by_every_function, setup_fixture,
            teardown_fixture),
        cmocka_unit_test_setup_teardown(
            test_a_tensor_of_another_context_is_refused_by_every_function,
            setup_fixture, teardown_fixture),
        cmocka_unit_test(test_ranks_outside_0_to_8_are_refused),
        cmocka_unit_test(test_negative_extents_are_refused),
        cmocka_unit_test(test_extents_whose_product_overflows_are_refused),
        cmocka_unit_test(test_empty_tensors_with_huge_extents_are_safe),
        cmocka_unit_test(test_out_of_range_integers_are_refused),
        cmocka_unit_test(test_nan_and_inf_propagate_as_ieee_754_says),
        cmocka_unit_test(test_repeated_inputs_each_get_the_whole_gradient),
        cmocka_unit_test(test_zero_size_tensors_pass_through_every_op),
        cmocka_unit_test(test_gradients_through_an_empty_intermediate_are_zero),
    };
    int failed = cmocka_run_group_tests_name("hostile", tests, NULL, NULL);
    print_message("hostile inputs tried: %zu\n", inputs_tried);
    return failed;
}
