/*
 * The Jacobian engine: blocks of rows, forward mode, threads, create-graph in
 * every mode, the functional drivers, progress and cancellation.
 *
 * SPDX-License-Identifier: MIT
 */
#include "batchcheck.h"

/* |got - want| <= tol, with both values printed on failure. */
static void assert_near_at(double got, double want, double tol,
                           const char *file, int line)
{
    if (!(fabs(got - want) <= tol)) {
        print_error("%.17g differs from %.17g by more than %g\n", got, want,
                    tol);
        _fail(file, line);
    }
}
#define assert_near(got, want, tol)                                            \
    assert_near_at((got), (want), (tol), __FILE__, __LINE__)

/* ------------------------------------------------------------------------ */
/* Functions under test                                                     */
/* ------------------------------------------------------------------------ */

/* y0 = tanh(W x) (2), y1 = sum(x * x) (rank 0), y2 = W * 3 (constant in x). */
static jac_status two_outputs(jac_ctx *ctx, jac_tensor *const *in,
                              jac_tensor **out, void *user)
{
    (void)user;
    jac_tensor *x = in[0], *W = in[1];
    out[0] = jac_tanh(ctx, jac_matmul(ctx, W, x));
    out[1] = jac_sum(ctx, jac_mul(ctx, x, x));
    return jac_errcode(ctx);
}

/* A scalar function with a dense third derivative: sum(tanh(A x)) + x0 x1^2. */
static jac_status dense_scalar(jac_ctx *ctx, jac_tensor *const *in,
                               jac_tensor **out, void *user)
{
    jac_tensor *A = user, *x = in[0];
    jac_tensor *x0 = jac_slice(ctx, x, 0, 0, 1, 1);
    jac_tensor *x1 = jac_slice(ctx, x, 0, 1, 2, 1);
    jac_tensor *c = jac_sum(ctx, jac_mul(ctx, x0, jac_mul(ctx, x1, x1)));
    out[0] =
        jac_add(ctx, jac_sum(ctx, jac_tanh(ctx, jac_matmul(ctx, A, x))), c);
    return jac_errcode(ctx);
}

/* A small network applied to each row of a batch X (B, 3) -> (B, 2). */
typedef struct net {
    jac_tensor *W1, *b1, *W2;
} net;

static jac_status per_sample_net(jac_ctx *ctx, jac_tensor *const *in,
                                 jac_tensor **out, void *user)
{
    net *n = user;
    jac_tensor *h = jac_tanh(
        ctx,
        jac_add(ctx, jac_matmul(ctx, in[0], jac_transpose(ctx, n->W1, 0, 1)),
                n->b1));
    out[0] = jac_matmul(ctx, h, jac_transpose(ctx, n->W2, 0, 1));
    return jac_errcode(ctx);
}

static jac_tensor *smooth(jac_ctx *ctx, int ndim, const int64_t *shape,
                          double phase)
{
    jac_tensor *t = jac_zeros(ctx, ndim, shape);
    double *d = (double *)jac_tensor_data(t);
    for (int64_t i = 0; i < jac_tensor_numel(t); i++)
        d[i] = 0.5 * sin(0.37 * (double)i + phase);
    return t;
}

static int setup(void **state)
{
    *state = jac_ctx_new();
    return *state ? 0 : -1;
}

static int teardown(void **state)
{
    jac_ctx_free(*state);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Modes agree                                                              */
/* ------------------------------------------------------------------------ */

static void
test_every_mode_equals_the_row_loop_for_several_outputs_and_inputs(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *in[2] = {smooth(ctx, 1, TU_SHAPE(3), 0.1),
                         smooth(ctx, 2, TU_SHAPE(2, 3), 0.7)};
    jac_set_requires_grad(in[0], true);
    jac_set_requires_grad(in[1], true);
    tu_assert_batched_matches_rows(ctx, two_outputs, NULL, 2, in, 2);
}

/* Products with the engine's one-hot seeds are gathers while the cotangent
 * keeps that form. These shapes end it in each way: a sum of a tensor with
 * itself, a second consumer adding into the copy, a batch of samples, and
 * a vector times a matrix (out[0], out[1], out[2], out[3]). */
static jac_status onehot_cases(jac_ctx *ctx, jac_tensor *const *in,
                               jac_tensor **out, void *user)
{
    jac_tensor *A = user, *x = in[0], *X = in[1];
    jac_tensor *y = jac_matmul(ctx, A, x);
    out[0] = jac_add(ctx, y, y);
    out[1] = jac_sub(ctx, jac_reshape(ctx, y, 2, TU_SHAPE(1, 4)),
                     jac_sin(ctx, jac_reshape(ctx, y, 2, TU_SHAPE(1, 4))));
    out[2] = jac_add(ctx, jac_matmul(ctx, X, jac_transpose(ctx, A, 0, 1)),
                     jac_tanh(ctx, jac_sum(ctx, X)));
    out[3] = jac_matmul(ctx, jac_tanh(ctx, x), jac_transpose(ctx, A, 0, 1));
    return jac_errcode(ctx);
}

static void test_one_hot_seeds_give_the_row_loop_numbers(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *A = smooth(ctx, 2, TU_SHAPE(4, 3), 0.2);
    jac_tensor *in[2] = {smooth(ctx, 1, TU_SHAPE(3), 0.1),
                         smooth(ctx, 2, TU_SHAPE(5, 3), 0.6)};
    jac_set_requires_grad(in[0], true);
    jac_set_requires_grad(in[1], true);
    tu_assert_batched_matches_rows(ctx, onehot_cases, A, 2, in, 4);
    /* y + y through the gather: twice A. */
    jac_tensor *y = jac_matmul(ctx, A, in[0]);
    jac_tensor *yy = jac_add(ctx, y, y);
    jac_tensor *J = jac_jacobian(ctx, yy, in[0], 0);
    const double *a = jac_tensor_data(A), *j = jac_tensor_data(J);
    for (int e = 0; e < 12; e++)
        assert_true(j[e] == 2.0 * a[e]);
}

static void test_threaded_jacobians_keep_their_thread_contexts(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *A = smooth(ctx, 2, TU_SHAPE(6, 5), 0.2);
    jac_tensor *x = smooth(ctx, 1, TU_SHAPE(5), 0.1);
    jac_set_requires_grad(x, true);
    tu_assert_ok(ctx, jac_ctx_set_threads(ctx, 2));
    /* Three blocks of two rows each: once a thread has run one, its pools
     * hold all a block needs. Which thread takes which block varies (one
     * may take all three), so memory grows when a thread runs its first
     * block: in the first call, and at most once more. */
    jac_jacobian_opts o = {0, 2, JAC_MODE_REVERSE, NULL, NULL};
    size_t before = jac_ctx_memory(ctx), memory[40];
    int increases = 0;
    for (int round = 0; round < 40; round++) {
        jac_scope mark = jac_scope_begin(ctx);
        jac_tensor *y = jac_tanh(ctx, jac_matmul(ctx, A, x)), *J = NULL;
        tu_assert_ok(ctx, jac_jacobian_ex(ctx, 1, &y, 1, &x, &o, &J));
        tu_assert_ok(ctx, jac_scope_end(ctx, mark, NULL, 0));
        memory[round] = jac_ctx_memory(ctx);
        if (round > 0) {
            assert_true(memory[round] >= memory[round - 1]);
            increases += memory[round] > memory[round - 1];
        }
    }
    /* The threads' contexts and their pools stay for the next call, and
     * count as the context's memory. */
    assert_true(memory[0] > before);
    assert_true(increases <= 1);
    tu_assert_ok(ctx, jac_ctx_set_threads(ctx, 1));
}

/* ------------------------------------------------------------------------ */
/* Progress and cancellation                                                */
/* ------------------------------------------------------------------------ */

typedef struct progress_log {
    int64_t calls, last_done, total;
    bool monotonic;
    int64_t cancel_after; /* cancel at this call (0: never) */
} progress_log;

static int record_progress(int64_t done, int64_t total, void *user)
{
    progress_log *p = user;
    p->calls++;
    if (done < p->last_done)
        p->monotonic = false;
    p->last_done = done;
    p->total = total;
    return p->cancel_after > 0 && p->calls >= p->cancel_after;
}

static void test_auto_mode_runs_columns_for_tall_and_rows_for_wide(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = smooth(ctx, 1, TU_SHAPE(2), 0.3);
    jac_set_requires_grad(x, true);
    jac_tensor *tall =
        jac_sin(ctx, jac_matmul(ctx, smooth(ctx, 2, TU_SHAPE(6, 2), 1.1), x));
    jac_tensor *w = smooth(ctx, 1, TU_SHAPE(6), 0.2);
    jac_set_requires_grad(w, true);
    jac_tensor *wide =
        jac_sin(ctx, jac_matmul(ctx, smooth(ctx, 2, TU_SHAPE(2, 6), 0.4), w));
    progress_log p = {0, 0, 0, true, 0};
    jac_jacobian_opts o = {0, 1, JAC_MODE_AUTO, record_progress, &p};
    jac_tensor *J = NULL;
    tu_assert_ok(ctx, jac_jacobian_ex(ctx, 1, &tall, 1, &x, &o, &J));
    assert_int_equal(p.total, 2); /* two columns */
    assert_int_equal(p.calls, 2);
    tu_assert_shape(J, TU_SHAPE(6, 2));
    p = (progress_log){0, 0, 0, true, 0};
    tu_assert_ok(ctx, jac_jacobian_ex(ctx, 1, &wide, 1, &w, &o, &J));
    assert_int_equal(p.total, 2); /* two rows */
    tu_assert_shape(J, TU_SHAPE(2, 6));
    o.mode = JAC_MODE_REVERSE;
    p = (progress_log){0, 0, 0, true, 0};
    tu_assert_ok(ctx, jac_jacobian_ex(ctx, 1, &tall, 1, &x, &o, &J));
    assert_int_equal(p.total, 6); /* forced reverse: six rows */
}

static void test_progress_counts_every_row_and_ends_at_the_total(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = smooth(ctx, 1, TU_SHAPE(10), 0.3);
    jac_set_requires_grad(x, true);
    jac_tensor *y = jac_exp(ctx, jac_mul_scalar(ctx, x, 0.5));
    for (int threads = 1; threads <= 2; threads++) {
        tu_assert_ok(ctx, jac_ctx_set_threads(ctx, threads));
        progress_log p = {0, 0, 0, true, 0};
        jac_jacobian_opts o = {0, 3, JAC_MODE_REVERSE, record_progress, &p};
        jac_tensor *J = NULL;
        tu_assert_ok(ctx, jac_jacobian_ex(ctx, 1, &y, 1, &x, &o, &J));
        assert_true(p.monotonic);
        assert_int_equal(p.total, 10);
        assert_int_equal(p.last_done, 10);
        assert_true(p.calls >= 1 && p.calls <= 4); /* blocks of 3: 4 blocks */
        if (threads == 1)
            assert_int_equal(p.calls, 4);
    }
    tu_assert_ok(ctx, jac_ctx_set_threads(ctx, 1));
}

static void
test_cancelling_returns_cancelled_and_leaves_the_result_untouched(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = smooth(ctx, 1, TU_SHAPE(8), 0.3);
    jac_set_requires_grad(x, true);
    jac_tensor *y = jac_exp(ctx, x);
    for (int threads = 1; threads <= 2; threads++) {
        tu_assert_ok(ctx, jac_ctx_set_threads(ctx, threads));
        size_t before = jac_ctx_tensor_count(ctx);
        progress_log p = {0, 0, 0, true, 2};
        jac_jacobian_opts o = {0, 1, JAC_MODE_REVERSE, record_progress, &p};
        jac_tensor *sentinel = (jac_tensor *)&p;
        jac_tensor *J = sentinel;
        assert_int_equal(jac_jacobian_ex(ctx, 1, &y, 1, &x, &o, &J),
                         JAC_ERR_CANCELLED);
        assert_ptr_equal(J, sentinel);
        tu_assert_error(ctx, JAC_ERR_CANCELLED);
        tu_assert_contains(jac_errmsg(ctx), "cancelled");
        assert_int_equal(jac_ctx_tensor_count(ctx), before);
        jac_clear_error(ctx);
    }
    tu_assert_ok(ctx, jac_ctx_set_threads(ctx, 1));
    /* The graph is intact: a second run gives the right answer. */
    jac_tensor *J = jac_jacobian(ctx, y, x, 0);
    assert_non_null(J);
    assert_near(jac_tensor_get(J, TU_SHAPE(3, 3)), exp(jac_tensor_data(x)[3]),
                1e-15);
}

/* An elementwise function of a (2, 3) input: sin(x) x + exp(x) / 3 with
 * a broadcast constant row. */
static jac_tensor *elementwise_f(jac_ctx *ctx, jac_tensor *x)
{
    jac_tensor *row =
        jac_tensor_new(ctx, 1, TU_SHAPE(3), TU_VALUES(0.5, -1.0, 2.0));
    jac_tensor *y = jac_mul(ctx, jac_sin(ctx, x), x);
    y = jac_add(ctx, y, jac_div_scalar(ctx, jac_exp(ctx, x), 3.0));
    return jac_mul(ctx, y, row);
}

/* Every entry equal (== for numbers, both NaN, and the same shape). */
static void assert_same_jacobian(const jac_tensor *got, const jac_tensor *want)
{
    assert_int_equal(jac_tensor_ndim(got), jac_tensor_ndim(want));
    assert_memory_equal(jac_tensor_shape(got), jac_tensor_shape(want),
                        (size_t)jac_tensor_ndim(want) * sizeof(int64_t));
    const double *g = jac_tensor_data(got), *w = jac_tensor_data(want);
    for (int64_t e = 0; e < jac_tensor_numel(want); e++) {
        if (!(g[e] == w[e]) && !(isnan(g[e]) && isnan(w[e]))) {
            print_error("element %lld: %.17g, want %.17g\n", (long long)e, g[e],
                        w[e]);
            fail();
        }
    }
}

static void test_an_elementwise_function_has_a_diagonal_jacobian(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = smooth(ctx, 2, TU_SHAPE(2, 3), 0.4);
    jac_set_requires_grad(x, true);
    jac_tensor *y = elementwise_f(ctx, x);
    jac_jacobian_opts rows = {0, 1, JAC_MODE_REVERSE, NULL, NULL};
    jac_tensor *ref = NULL;
    tu_assert_ok(ctx, jac_jacobian_ex(ctx, 1, &y, 1, &x, &rows, &ref));
    const double *r = jac_tensor_data(ref);
    for (int64_t i = 0; i < 6; i++) {
        double xi = jac_tensor_data(x)[i], c = (double[]){0.5, -1, 2}[i % 3];
        assert_near(r[i * 6 + i], (cos(xi) * xi + sin(xi) + exp(xi) / 3.0) * c,
                    1e-14);
    }
    /* The automatic chunk in either mode and on two threads takes the
     * diagonal from one pass: the same numbers as the row loop. */
    for (int threads = 1; threads <= 2; threads++) {
        tu_assert_ok(ctx, jac_ctx_set_threads(ctx, threads));
        for (int mode = 0; mode < 3; mode++) {
            progress_log p = {0, 0, 0, true, 0};
            jac_jacobian_opts o = {0, 0,
                                   (jac_mode[]){JAC_MODE_AUTO, JAC_MODE_REVERSE,
                                                JAC_MODE_FORWARD}[mode],
                                   record_progress, &p};
            jac_tensor *J = NULL;
            tu_assert_ok(ctx, jac_jacobian_ex(ctx, 1, &y, 1, &x, &o, &J));
            assert_same_jacobian(J, ref);
            assert_int_equal(p.last_done, 6);
            assert_int_equal(p.total, 6);
        }
    }
    tu_assert_ok(ctx, jac_ctx_set_threads(ctx, 1));
    /* Cancelling leaves the result untouched. */
    progress_log p = {0, 0, 0, true, 1};
    jac_jacobian_opts o = {0, 0, JAC_MODE_REVERSE, record_progress, &p};
    jac_tensor *sentinel = (jac_tensor *)&p, *J = sentinel;
    size_t before = jac_ctx_tensor_count(ctx);
    assert_int_equal(jac_jacobian_ex(ctx, 1, &y, 1, &x, &o, &J),
                     JAC_ERR_CANCELLED);
    assert_ptr_equal(J, sentinel);
    assert_int_equal(jac_ctx_tensor_count(ctx), before);
    jac_clear_error(ctx);
}

static void
test_an_infinite_derivative_leaves_structural_zeros_exact(void **state)
{
    jac_ctx *ctx = *state;
    /* d sqrt(x) / dx is infinite at 0. The row loop's zero seeds meet it (0
     * times infinity is NaN); the automatic chunk knows the Jacobian of an
     * elementwise function is diagonal and keeps every other entry 0. */
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(3), TU_VALUES(0.25, 0.0, 4.0));
    jac_tensor *y = jac_sqrt(ctx, x);
    jac_jacobian_opts rows = {0, 1, JAC_MODE_REVERSE, NULL, NULL};
    jac_jacobian_opts automatic = {0, 0, JAC_MODE_REVERSE, NULL, NULL};
    jac_tensor *ref = NULL, *J = NULL;
    tu_assert_ok(ctx, jac_jacobian_ex(ctx, 1, &y, 1, &x, &rows, &ref));
    tu_assert_ok(ctx, jac_jacobian_ex(ctx, 1, &y, 1, &x, &automatic, &J));
    assert_true(isinf(jac_tensor_data(ref)[4]));
    assert_true(isnan(jac_tensor_data(ref)[1]));
    const double *j = jac_tensor_data(J), *r = jac_tensor_data(ref);
    for (int64_t i = 0; i < 9; i++) {
        if (i % 4 == 0)
            assert_true(j[i] == r[i]); /* the diagonal: 1, inf, 0.25 */
        else
            assert_true(j[i] == 0.0);
    }
    /* A NaN input likewise: its own entry is NaN, the rest exact. */
    jac_tensor *xn = tu_leaf(ctx, TU_SHAPE(3), TU_VALUES(1.0, NAN, 2.0));
    jac_tensor *yn = jac_exp(ctx, xn);
    tu_assert_ok(ctx, jac_jacobian_ex(ctx, 1, &yn, 1, &xn, &automatic, &J));
    j = jac_tensor_data(J);
    for (int64_t i = 0; i < 9; i++)
        assert_true(i == 4 ? isnan(j[i]) : i % 4 == 0 ? j[i] > 0 : j[i] == 0);
}

/* A function that mixes elements is not diagonal. */
static void test_a_mixing_function_is_not_taken_as_diagonal(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(3), TU_VALUES(0.5, 1.0, 2.0));
    /* Element i of y = x * x[::-1]-like mix through a matmul, and through
     * a broadcast of the sum. */
    jac_tensor *y1 = jac_mul(ctx, x, jac_sum(ctx, x));
    jac_jacobian_opts automatic = {0, 0, JAC_MODE_REVERSE, NULL, NULL};
    jac_tensor *J = NULL;
    tu_assert_ok(ctx, jac_jacobian_ex(ctx, 1, &y1, 1, &x, &automatic, &J));
    /* d(x_i s)/dx_j = delta_ij s + x_i, s = 3.5 */
    tu_assert_tensor(J, TU_SHAPE(3, 3),
                     TU_VALUES(4.0, 0.5, 0.5, 1.0, 4.5, 1.0, 2.0, 2.0, 5.5),
                     1e-15);
}

static void test_automatic_chunk_follows_the_memory_budget(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = smooth(ctx, 1, TU_SHAPE(16), 0.3);
    jac_set_requires_grad(x, true);
    /* Not elementwise (the sum mixes elements), so blocks of rows run. */
    jac_tensor *y = jac_tanh(ctx, jac_mul(ctx, x, jac_sum(ctx, x)));
    progress_log p = {0, 0, 0, true, 0};
    jac_jacobian_opts o = {0, 0, JAC_MODE_REVERSE, record_progress, &p};
    jac_tensor *J = NULL;
    tu_assert_ok(ctx, jac_jacobian_ex(ctx, 1, &y, 1, &x, &o, &J));
    assert_int_equal(p.calls, 1); /* 64 MiB holds all 16 rows */
    tu_assert_ok(ctx, jac_ctx_set_memory_budget(ctx, 1));
    p = (progress_log){0, 0, 0, true, 0};
    tu_assert_ok(ctx, jac_jacobian_ex(ctx, 1, &y, 1, &x, &o, &J));
    assert_int_equal(p.calls, 16); /* a tiny budget: one row per pass */
    tu_assert_ok(ctx, jac_ctx_set_memory_budget(ctx, (size_t)64 << 20));
    assert_int_equal(jac_ctx_set_memory_budget(ctx, 0), JAC_ERR_VALUE);
    jac_clear_error(ctx);
}

/* ------------------------------------------------------------------------ */
/* Zero blocks, shapes, errors                                              */
/* ------------------------------------------------------------------------ */

static void
test_an_output_that_ignores_an_input_gives_a_zero_block(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = smooth(ctx, 1, TU_SHAPE(3), 0.3);
    jac_tensor *z = smooth(ctx, 2, TU_SHAPE(2, 2), 0.9);
    jac_set_requires_grad(x, true);
    jac_set_requires_grad(z, true);
    jac_tensor *ys[2] = {jac_sin(ctx, x), jac_mul_scalar(ctx, z, 2.0)};
    jac_tensor *xs[2] = {x, z};
    jac_tensor *J[4] = {0};
    progress_log p = {0, 0, 0, true, 0};
    /* Each output ignores one input; every input reaches some output, and
     * every output depends on some input: no flag needed. */
    jac_jacobian_opts o = {0, 1, JAC_MODE_REVERSE, record_progress, &p};
    tu_assert_ok(ctx, jac_jacobian_ex(ctx, 2, ys, 2, xs, &o, J));
    tu_assert_shape(J[0], TU_SHAPE(3, 3));
    tu_assert_shape(J[1], TU_SHAPE(3, 2, 2));
    tu_assert_shape(J[2], TU_SHAPE(2, 2, 3));
    tu_assert_shape(J[3], TU_SHAPE(2, 2, 2, 2));
    for (int64_t i = 0; i < 12; i++) {
        assert_true(jac_tensor_data(J[1])[i] == 0.0);
        assert_true(jac_tensor_data(J[2])[i] == 0.0);
    }
    assert_near(jac_tensor_get(J[3], TU_SHAPE(1, 0, 1, 0)), 2.0, 0.0);
    assert_near(jac_tensor_get(J[3], TU_SHAPE(1, 0, 0, 1)), 0.0, 0.0);
    /* A constant output adds no rows to the work; it must be allowed. */
    jac_tensor *c = jac_ones(ctx, 1, TU_SHAPE(5));
    jac_tensor *ys2[2] = {jac_sin(ctx, x), c};
    jac_tensor *J2[2] = {0};
    p = (progress_log){0, 0, 0, true, 0};
    assert_int_equal(jac_jacobian_ex(ctx, 2, ys2, 1, &x, &o, J2),
                     JAC_ERR_UNUSED_INPUT);
    tu_assert_contains(jac_errmsg(ctx), "output 1 (shape (5)) is a constant");
    jac_clear_error(ctx);
    o.flags = JAC_ALLOW_UNUSED;
    p = (progress_log){0, 0, 0, true, 0};
    tu_assert_ok(ctx, jac_jacobian_ex(ctx, 2, ys2, 1, &x, &o, J2));
    assert_int_equal(p.total, 3);
    tu_assert_shape(J2[1], TU_SHAPE(5, 3));
}

static void test_driver_errors_are_clear(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = smooth(ctx, 1, TU_SHAPE(3), 0.3);
    jac_tensor *y = jac_sin(ctx, x);
    jac_tensor *J = NULL;
    assert_int_equal(jac_jacobian_ex(ctx, 1, &y, 1, &x, NULL, &J),
                     JAC_ERR_NO_GRAD);
    tu_assert_contains(jac_errmsg(ctx), "input 0");
    jac_clear_error(ctx);
    jac_set_requires_grad(x, true);
    y = jac_sin(ctx, x);
    jac_jacobian_opts bad = {0, -1, JAC_MODE_AUTO, NULL, NULL};
    assert_int_equal(jac_jacobian_ex(ctx, 1, &y, 1, &x, &bad, &J),
                     JAC_ERR_VALUE);
    jac_clear_error(ctx);
    assert_int_equal(jac_jacobian_ex(ctx, 1, &y, 1, &x, NULL, NULL),
                     JAC_ERR_NULL_ARG);
    jac_clear_error(ctx);
    jac_tensor *none[1] = {NULL};
    assert_int_equal(jac_jacobian_ex(ctx, 1, none, 1, &x, NULL, &J),
                     JAC_ERR_NULL_ARG);
    tu_assert_contains(jac_errmsg(ctx), "output 0");
    jac_clear_error(ctx);
    assert_int_equal(jac_ctx_set_threads(ctx, 0), JAC_ERR_VALUE);
    jac_clear_error(ctx);
    jac_tensor *big = jac_zeros(ctx, 5, TU_SHAPE(1, 1, 1, 1, 2));
    jac_set_requires_grad(big, true);
    jac_tensor *yb = jac_sin(ctx, big);
    assert_null(jac_jacobian(ctx, yb, big, 0));
    tu_assert_error(ctx, JAC_ERR_RANK);
    jac_clear_error(ctx);
}

/* ------------------------------------------------------------------------ */
/* Reference checksums (P2 small, P3 small of the benchmark problems)       */
/* ------------------------------------------------------------------------ */

static jac_tensor *bench_weight(jac_ctx *ctx, int64_t rows, int64_t cols, int s)
{
    jac_tensor *W = jac_zeros(ctx, 2, TU_SHAPE(rows, cols));
    double *d = (double *)jac_tensor_data(W);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++)
            d[i * cols + j] = sin(0.37 * (double)i + 0.11 * (double)j + s) /
                              sqrt((double)cols);
    return W;
}

static jac_tensor *bench_bias(jac_ctx *ctx, int64_t rows, int s)
{
    jac_tensor *b = jac_zeros(ctx, 1, &rows);
    double *d = (double *)jac_tensor_data(b);
    for (int64_t i = 0; i < rows; i++)
        d[i] = 0.01 * cos(0.5 * (double)i + s);
    return b;
}

static jac_tensor *bench_input(jac_ctx *ctx, int64_t n)
{
    jac_tensor *x = jac_zeros(ctx, 1, &n);
    double *d = (double *)jac_tensor_data(x);
    for (int64_t j = 0; j < n; j++)
        d[j] = 0.5 * sin(0.3 * (double)j + 0.7);
    return x;
}

static void checksums(const jac_tensor *J, double *sum, double *fro)
{
    *sum = 0;
    *fro = 0;
    for (int64_t i = 0; i < jac_tensor_numel(J); i++) {
        double v = jac_tensor_data(J)[i];
        *sum += v;
        *fro += v * v;
    }
    *fro = sqrt(*fro);
}

static void test_mlp_jacobian_matches_the_reference_checksums(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = bench_input(ctx, 16);
    jac_set_requires_grad(x, true);
    jac_tensor *h = jac_tanh(
        ctx, jac_add(ctx, jac_matmul(ctx, bench_weight(ctx, 32, 16, 1), x),
                     bench_bias(ctx, 32, 1)));
    h = jac_tanh(ctx,
                 jac_add(ctx, jac_matmul(ctx, bench_weight(ctx, 32, 32, 2), h),
                         bench_bias(ctx, 32, 2)));
    jac_tensor *y =
        jac_add(ctx, jac_matmul(ctx, bench_weight(ctx, 16, 32, 3), h),
                bench_bias(ctx, 16, 3));
    const jac_jacobian_opts modes[3] = {{0, 1, JAC_MODE_REVERSE, NULL, NULL},
                                        {0, 0, JAC_MODE_REVERSE, NULL, NULL},
                                        {0, 0, JAC_MODE_FORWARD, NULL, NULL}};
    for (int m = 0; m < 3; m++) {
        jac_tensor *J = NULL;
        tu_assert_ok(ctx, jac_jacobian_ex(ctx, 1, &y, 1, &x, &modes[m], &J));
        double sum, fro;
        checksums(J, &sum, &fro);
        assert_near(sum, -0.31407040894689525, 1e-9 * 0.43);
        assert_near(fro, 0.42722832080584455, 1e-9 * 0.43);
        assert_near(jac_tensor_data(J)[0], 0.026841722018463098, 1e-9 * 0.03);
    }
}

static jac_status rosenbrock(jac_ctx *ctx, jac_tensor *const *in,
                             jac_tensor **out, void *user)
{
    (void)user;
    jac_tensor *x = in[0];
    int64_t n = jac_tensor_numel(x);
    jac_tensor *head = jac_slice(ctx, x, 0, 0, n - 1, 1);
    jac_tensor *tail = jac_slice(ctx, x, 0, 1, n, 1);
    jac_tensor *a = jac_sub(ctx, tail, jac_pow_scalar(ctx, head, 2.0));
    jac_tensor *b = jac_rsub_scalar(ctx, 1.0, head);
    out[0] = jac_add(
        ctx, jac_mul_scalar(ctx, jac_sum(ctx, jac_mul(ctx, a, a)), 100.0),
        jac_sum(ctx, jac_mul(ctx, b, b)));
    return jac_errcode(ctx);
}

static void
test_hessian_driver_matches_the_reference_and_is_symmetric(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = bench_input(ctx, 64);
    for (int threads = 1; threads <= 2; threads++) {
        tu_assert_ok(ctx, jac_ctx_set_threads(ctx, threads));
        jac_tensor *H = jac_hessian(ctx, rosenbrock, NULL, x, NULL);
        assert_non_null(H);
        tu_assert_shape(H, TU_SHAPE(64, 64));
        double sum, fro;
        checksums(H, &sum, &fro);
        assert_near(sum, 22102.920748172011, 1e-9 * 22102.92);
        assert_near(fro, 3505.0845285148939, 1e-9 * 3505.08);
        assert_near(jac_tensor_data(H)[0], -41.789268396615455, 1e-9 * 41.8);
        const double *h = jac_tensor_data(H);
        for (int i = 0; i < 64; i++)
            for (int j = 0; j < 64; j++)
                assert_true(h[i * 64 + j] == h[j * 64 + i]);
    }
    tu_assert_ok(ctx, jac_ctx_set_threads(ctx, 1));
    assert_false(jac_requires_grad(x)); /* the caller's input is untouched */
}

/* ------------------------------------------------------------------------ */
/* Higher order                                                             */
/* ------------------------------------------------------------------------ */

static jac_tensor *hessian_at(jac_ctx *ctx, jac_tensor *A, const double *xv,
                              unsigned flags, jac_tensor **xout)
{
    jac_tensor *x = jac_tensor_new(ctx, 1, TU_SHAPE(3), xv);
    jac_set_requires_grad(x, true);
    jac_tensor *y = NULL, *g = NULL;
    dense_scalar(ctx, &x, &y, A);
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, 1, &x, JAC_CREATE_GRAPH, &g));
    if (xout)
        *xout = x;
    return jac_jacobian(ctx, g, x, flags);
}

static void
test_third_derivative_matches_finite_differences_of_the_hessian(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *A = smooth(ctx, 2, TU_SHAPE(3, 3), 0.4);
    const double x0[3] = {0.3, -0.4, 0.25};
    for (int mode = 0; mode < 3; mode++) {
        jac_tensor *x = NULL;
        jac_tensor *H = hessian_at(ctx, A, x0, JAC_CREATE_GRAPH, &x);
        jac_jacobian_opts o = {0, mode == 0 ? 1 : 0,
                               mode == 2 ? JAC_MODE_FORWARD : JAC_MODE_REVERSE,
                               NULL, NULL};
        jac_tensor *T = NULL;
        tu_assert_ok(ctx, jac_jacobian_ex(ctx, 1, &H, 1, &x, &o, &T));
        tu_assert_shape(T, TU_SHAPE(3, 3, 3));
        const double eps = 1e-5;
        for (int k = 0; k < 3; k++) {
            double xp[3], xm[3];
            memcpy(xp, x0, sizeof xp);
            memcpy(xm, x0, sizeof xm);
            xp[k] += eps;
            xm[k] -= eps;
            jac_tensor *Hp = hessian_at(ctx, A, xp, 0, NULL);
            jac_tensor *Hm = hessian_at(ctx, A, xm, 0, NULL);
            for (int i = 0; i < 3; i++) {
                for (int j = 0; j < 3; j++) {
                    double fd = (jac_tensor_data(Hp)[i * 3 + j] -
                                 jac_tensor_data(Hm)[i * 3 + j]) /
                                (2 * eps);
                    double t = jac_tensor_get(T, TU_SHAPE(i, j, k));
                    assert_near(t, fd, 1e-7);
                }
            }
        }
        /* Third derivatives of a smooth function are symmetric. */
        assert_near(jac_tensor_get(T, TU_SHAPE(0, 1, 2)),
                    jac_tensor_get(T, TU_SHAPE(2, 0, 1)), 1e-12);
        /* d^3 (x0 x1^2) / dx0 dx1 dx1 = 2 is part of T[0][1][1]. */
        assert_true(fabs(jac_tensor_get(T, TU_SHAPE(0, 1, 1))) > 0.0);
    }
}

/* ------------------------------------------------------------------------ */
/* The functional API                                                       */
/* ------------------------------------------------------------------------ */

static void test_vjp_jvp_and_hvp_agree_with_the_jacobian(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *in[2] = {smooth(ctx, 1, TU_SHAPE(3), 0.1),
                         smooth(ctx, 2, TU_SHAPE(2, 3), 0.7)};
    jac_tensor *J[4] = {0};
    tu_assert_ok(ctx,
                 jac_jacobian_fn(ctx, two_outputs, NULL, 2, in, 2, NULL, J));
    /* vjp with v = (v0 (2), v1 scalar). */
    jac_tensor *v[2] = {tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(0.3, -1.2)),
                        jac_scalar(ctx, 0.7)};
    jac_tensor *outs[2] = {0}, *vj[2] = {0};
    tu_assert_ok(ctx,
                 jac_vjp(ctx, two_outputs, NULL, 2, in, 2, v, 0, outs, vj));
    tu_assert_shape(vj[0], TU_SHAPE(3));
    tu_assert_shape(vj[1], TU_SHAPE(2, 3));
    for (int i = 0; i < 3; i++) {
        double want = 0.3 * jac_tensor_get(J[0], TU_SHAPE(0, i)) -
                      1.2 * jac_tensor_get(J[0], TU_SHAPE(1, i)) +
                      0.7 * jac_tensor_data(J[2])[i];
        assert_near(jac_tensor_data(vj[0])[i], want, 1e-14);
    }
    double sq = 0;
    for (int i = 0; i < 3; i++)
        sq += jac_tensor_data(in[0])[i] * jac_tensor_data(in[0])[i];
    assert_near(jac_tensor_item(outs[1]), sq, 1e-15);
    /* jvp with tangents (t0 (3), t1 (2, 3)). */
    jac_tensor *t[2] = {tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(1.0, -0.5, 0.25)),
                        smooth(ctx, 2, TU_SHAPE(2, 3), 2.0)};
    jac_tensor *jv[2] = {0};
    tu_assert_ok(ctx,
                 jac_jvp(ctx, two_outputs, NULL, 2, in, 2, t, 0, NULL, jv));
    for (int r = 0; r < 2; r++) {
        double want = 0;
        for (int i = 0; i < 3; i++)
            want +=
                jac_tensor_get(J[0], TU_SHAPE(r, i)) * jac_tensor_data(t[0])[i];
        for (int i = 0; i < 6; i++)
            want += jac_tensor_data(J[1])[r * 6 + i] * jac_tensor_data(t[1])[i];
        assert_near(jac_tensor_data(jv[0])[r], want, 1e-14);
    }
    double want1 = 0;
    for (int i = 0; i < 3; i++)
        want1 += jac_tensor_data(J[2])[i] * jac_tensor_data(t[0])[i];
    assert_near(jac_tensor_item(jv[1]), want1, 1e-14);
    /* hvp of a scalar function against its Hessian. */
    jac_tensor *A = smooth(ctx, 2, TU_SHAPE(3, 3), 0.4);
    jac_tensor *x = smooth(ctx, 1, TU_SHAPE(3), 0.2);
    jac_tensor *H = jac_hessian(ctx, dense_scalar, A, x, NULL);
    assert_non_null(H);
    jac_tensor *hv = NULL, *val = NULL;
    tu_assert_ok(ctx,
                 jac_hvp(ctx, dense_scalar, A, 1, &x, &t[0], 0, &val, &hv));
    for (int i = 0; i < 3; i++) {
        double want = 0;
        for (int j = 0; j < 3; j++)
            want += jac_tensor_data(H)[i * 3 + j] * jac_tensor_data(t[0])[j];
        assert_near(jac_tensor_data(hv)[i], want, 1e-13);
    }
    assert_int_equal(jac_tensor_ndim(val), 0);
}

/* k Hessian-vector products in one call equal k calls, bitwise. */
static void test_batched_hvp_equals_one_call_per_vector(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *A = smooth(ctx, 2, TU_SHAPE(3, 3), 0.4);
    jac_tensor *x = smooth(ctx, 1, TU_SHAPE(3), 0.2);
    jac_tensor *V = smooth(ctx, 2, TU_SHAPE(4, 3), 1.3);
    jac_tensor *hv = NULL, *val = NULL;
    tu_assert_ok(ctx, jac_hvp(ctx, dense_scalar, A, 1, &x, &V,
                              JAC_BATCHED_SEEDS, &val, &hv));
    tu_assert_shape(hv, TU_SHAPE(4, 3));
    for (int64_t k = 0; k < 4; k++) {
        jac_tensor *vk = jac_select(ctx, V, 0, k), *one = NULL;
        tu_assert_ok(ctx,
                     jac_hvp(ctx, dense_scalar, A, 1, &x, &vk, 0, NULL, &one));
        assert_memory_equal(jac_tensor_data(hv) + 3 * k, jac_tensor_data(one),
                            3 * sizeof(double));
    }
    /* A vector without the batch axis is refused. */
    jac_tensor *v = jac_select(ctx, V, 0, 0);
    assert_int_equal(
        jac_hvp(ctx, dense_scalar, A, 1, &x, &v, JAC_BATCHED_SEEDS, NULL, &hv),
        JAC_ERR_SHAPE);
    tu_assert_contains(jac_errmsg(ctx), "hvp: v[0] has shape (3)");
    tu_assert_contains(jac_errmsg(ctx), "JAC_BATCHED_SEEDS");
    jac_clear_error(ctx);
}

static void
test_functional_drivers_with_create_graph_stay_differentiable(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *A = smooth(ctx, 2, TU_SHAPE(3, 3), 0.4);
    jac_tensor *x = smooth(ctx, 1, TU_SHAPE(3), 0.2);
    jac_set_requires_grad(x, true);
    jac_tensor *v = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(0.2, 0.1, -0.3));
    jac_tensor *hv = NULL;
    tu_assert_ok(ctx, jac_hvp(ctx, dense_scalar, A, 1, &x, &v, JAC_CREATE_GRAPH,
                              NULL, &hv));
    assert_true(jac_requires_grad(hv));
    /* d/dx <H(x) v, w> equals the third derivative contracted twice. */
    jac_tensor *T = NULL;
    jac_tensor *Hc = jac_hessian(
        ctx, dense_scalar, A, x,
        &(jac_jacobian_opts){JAC_CREATE_GRAPH, 0, JAC_MODE_AUTO, NULL, NULL});
    assert_non_null(Hc);
    T = jac_jacobian(ctx, Hc, x, 0);
    assert_non_null(T);
    jac_tensor *g = NULL;
    jac_tensor *s = jac_sum(ctx, hv);
    tu_assert_ok(ctx, jac_grad(ctx, 1, &s, NULL, 1, &x, 0, &g));
    for (int k = 0; k < 3; k++) {
        double want = 0;
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++)
                want += jac_tensor_get(T, TU_SHAPE(i, j, k)) *
                        jac_tensor_data(v)[j];
        assert_near(jac_tensor_data(g)[k], want, 1e-12);
    }
}

static void test_batch_jacobian_equals_each_sample_jacobian(void **state)
{
    jac_ctx *ctx = *state;
    net n = {smooth(ctx, 2, TU_SHAPE(5, 3), 0.1),
             smooth(ctx, 1, TU_SHAPE(5), 0.5),
             smooth(ctx, 2, TU_SHAPE(2, 5), 0.9)};
    const int64_t B = 4;
    jac_tensor *X = smooth(ctx, 2, TU_SHAPE(B, 3), 0.3);
    for (int m = 0; m < 4; m++) {
        jac_jacobian_opts o = {m == 3 ? JAC_CREATE_GRAPH : 0u, m == 0 ? 1 : 0,
                               JAC_MODE_AUTO, NULL, NULL};
        tu_assert_ok(ctx, jac_ctx_set_threads(ctx, m == 2 ? 2 : 1));
        jac_tensor *J = jac_batch_jacobian(ctx, per_sample_net, &n, X, &o);
        assert_non_null(J);
        tu_assert_shape(J, TU_SHAPE(B, 2, 3));
        for (int64_t b = 0; b < B; b++) {
            jac_tensor *xb = jac_reshape(ctx, jac_slice(ctx, X, 0, b, b + 1, 1),
                                         2, TU_SHAPE(1, 3));
            jac_tensor *Jb = NULL;
            tu_assert_ok(ctx, jac_jacobian_fn(ctx, per_sample_net, &n, 1, &xb,
                                              1, NULL, &Jb));
            tu_assert_shape(Jb, TU_SHAPE(1, 2, 1, 3));
            for (int i = 0; i < 6; i++)
                assert_near(jac_tensor_data(J)[b * 6 + i],
                            jac_tensor_data(Jb)[i], 1e-14);
        }
    }
    tu_assert_ok(ctx, jac_ctx_set_threads(ctx, 1));
}

static jac_status elementwise_sin(jac_ctx *ctx, jac_tensor *const *in,
                                  jac_tensor **out, void *user)
{
    (void)user;
    out[0] = jac_sin(ctx, in[0]);
    return jac_errcode(ctx);
}

static void test_functional_errors_name_the_driver(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = smooth(ctx, 1, TU_SHAPE(3), 0.2);
    jac_tensor *in[2] = {x, smooth(ctx, 2, TU_SHAPE(2, 3), 0.7)};
    /* A Hessian of a function with several output elements. */
    assert_null(jac_hessian(ctx, elementwise_sin, NULL, x, NULL));
    tu_assert_error(ctx, JAC_ERR_SHAPE);
    tu_assert_contains(jac_errmsg(ctx), "hessian");
    jac_clear_error(ctx);
    jac_tensor *J[4];
    assert_int_equal(jac_jacobian_fn(ctx, NULL, NULL, 2, in, 2, NULL, J),
                     JAC_ERR_NULL_ARG);
    tu_assert_contains(jac_errmsg(ctx), "jacobian_fn");
    jac_clear_error(ctx);
    jac_tensor *bad_v[2] = {jac_zeros(ctx, 1, TU_SHAPE(4)), in[1]};
    jac_tensor *jv[2];
    assert_int_equal(
        jac_jvp(ctx, two_outputs, NULL, 2, in, 2, bad_v, 0, NULL, jv),
        JAC_ERR_SHAPE);
    tu_assert_contains(jac_errmsg(ctx), "jvp");
    jac_clear_error(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_every_mode_equals_the_row_loop_for_several_outputs_and_inputs,
            setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_one_hot_seeds_give_the_row_loop_numbers, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_threaded_jacobians_keep_their_thread_contexts, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_auto_mode_runs_columns_for_tall_and_rows_for_wide, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_progress_counts_every_row_and_ends_at_the_total, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_cancelling_returns_cancelled_and_leaves_the_result_untouched,
            setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_an_elementwise_function_has_a_diagonal_jacobian, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_an_infinite_derivative_leaves_structural_zeros_exact, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_a_mixing_function_is_not_taken_as_diagonal, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_automatic_chunk_follows_the_memory_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_an_output_that_ignores_an_input_gives_a_zero_block, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_driver_errors_are_clear, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_mlp_jacobian_matches_the_reference_checksums, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_hessian_driver_matches_the_reference_and_is_symmetric, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_third_derivative_matches_finite_differences_of_the_hessian,
            setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_vjp_jvp_and_hvp_agree_with_the_jacobian, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_batched_hvp_equals_one_call_per_vector, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_functional_drivers_with_create_graph_stay_differentiable,
            setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_batch_jacobian_equals_each_sample_jacobian, setup, teardown),
        cmocka_unit_test_setup_teardown(test_functional_errors_name_the_driver,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
