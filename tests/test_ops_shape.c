/*
 * Shape ops and random tensors: stack, split, flatten, squeeze, unsqueeze,
 * index_select, gather, where, pad, rand_uniform and rand_normal.
 *
 * Values are checked against numbers computed once with PyTorch (and the
 * random generator against a reimplementation of its documented algorithm)
 * and pasted here as literals. Derivatives are checked against finite
 * differences: first derivatives of the op alone, second derivatives of
 * sin(op(...)), since a linear op alone has a zero second derivative and the
 * sin makes the gradient run through the op's own backward rule (index_add,
 * scatter_add, where, slice), whose derivative is then checked as well.
 *
 * SPDX-License-Identifier: MIT
 */
#include "batchcheck.h"
#include "testutil.h"

/* ---------------------------------------------------------------------- */
/* One op with its parameters, as a jac_fn                                 */
/* ---------------------------------------------------------------------- */

typedef struct shape_case shape_case;
/* Writes the op's outputs (c->nout of them) for inputs in. */
typedef void (*apply_fn)(jac_ctx *ctx, jac_tensor *const *in, jac_tensor **out,
                         const shape_case *c);

struct shape_case {
    apply_fn apply;
    size_t nin;  /* tensor inputs */
    size_t nout; /* outputs (split: one per piece) */
    int axis;
    int axis1;                   /* flatten: end axis */
    size_t n;                    /* index_select: entries of index */
    int64_t index[32];           /* index_select, gather */
    int64_t sizes[JAC_MAX_DIMS]; /* split: sizes; gather: index shape */
    int64_t before[JAC_MAX_DIMS], after[JAC_MAX_DIMS]; /* pad */
    jac_tensor *cond;                                  /* where */
    bool then_sin;
};

static jac_status run_case(jac_ctx *ctx, jac_tensor *const *in,
                           jac_tensor **out, void *user)
{
    const shape_case *c = user;
    for (size_t k = 0; k < c->nout; k++)
        out[k] = NULL;
    c->apply(ctx, in, out, c);
    for (size_t k = 0; k < c->nout; k++) {
        if (out[k] != NULL && c->then_sin)
            out[k] = jac_sin(ctx, out[k]);
        if (out[k] == NULL)
            return jac_errcode(ctx) != JAC_OK ? jac_errcode(ctx)
                                              : JAC_ERR_STATE;
    }
    return JAC_OK;
}

static void apply_stack(jac_ctx *ctx, jac_tensor *const *in, jac_tensor **out,
                        const shape_case *c)
{
    out[0] = jac_stack(ctx, c->nin, in, c->axis);
}
static void apply_split(jac_ctx *ctx, jac_tensor *const *in, jac_tensor **out,
                        const shape_case *c)
{
    jac_split(ctx, in[0], c->axis, c->nout, c->sizes, out);
}
static void apply_flatten(jac_ctx *ctx, jac_tensor *const *in, jac_tensor **out,
                          const shape_case *c)
{
    out[0] = jac_flatten(ctx, in[0], c->axis, c->axis1);
}
static void apply_squeeze(jac_ctx *ctx, jac_tensor *const *in, jac_tensor **out,
                          const shape_case *c)
{
    out[0] = jac_squeeze(ctx, in[0], c->axis);
}
static void apply_unsqueeze(jac_ctx *ctx, jac_tensor *const *in,
                            jac_tensor **out, const shape_case *c)
{
    out[0] = jac_unsqueeze(ctx, in[0], c->axis);
}
static void apply_index_select(jac_ctx *ctx, jac_tensor *const *in,
                               jac_tensor **out, const shape_case *c)
{
    out[0] = jac_index_select(ctx, in[0], c->axis, c->n, c->index);
}
static void apply_gather(jac_ctx *ctx, jac_tensor *const *in, jac_tensor **out,
                         const shape_case *c)
{
    out[0] = jac_gather(ctx, in[0], c->axis, c->sizes, c->index);
}
static void apply_where(jac_ctx *ctx, jac_tensor *const *in, jac_tensor **out,
                        const shape_case *c)
{
    out[0] = jac_where(ctx, c->cond, in[0], in[1]);
}
static void apply_pad(jac_ctx *ctx, jac_tensor *const *in, jac_tensor **out,
                      const shape_case *c)
{
    out[0] = jac_pad(ctx, in[0], c->before, c->after);
}

/*
 * Every derivative check for one case: first derivatives of the op and of
 * sin(op), second derivatives of sin(op), and batched seeds against the row
 * loop (plain and under create-graph) for both.
 */
static void check_case(jac_ctx *ctx, shape_case c, jac_tensor *const *in)
{
    c.then_sin = false;
    tu_gradcheck(ctx, run_case, &c, c.nin, in, c.nout);
    tu_assert_batched_matches_rows(ctx, run_case, &c, c.nin, in, c.nout);
    c.then_sin = true;
    tu_gradcheck(ctx, run_case, &c, c.nin, in, c.nout);
    tu_gradgradcheck(ctx, run_case, &c, c.nin, in, c.nout);
    tu_assert_batched_matches_rows(ctx, run_case, &c, c.nin, in, c.nout);
}

/* The gradient of sum(w * op(x)) for a fixed w, by jac_grad. */
static jac_tensor *weighted_grad(jac_ctx *ctx, jac_tensor *y, jac_tensor *w,
                                 jac_tensor *x)
{
    jac_tensor *g = NULL;
    jac_tensor *loss = jac_sum(ctx, jac_mul(ctx, y, w));
    tu_assert_ok(ctx, jac_grad(ctx, 1, &loss, NULL, 1, &x, 0, &g));
    return g;
}

/* arange(n) as a tensor of the given shape. */
static jac_tensor *arange_shaped(jac_ctx *ctx, double n, int ndim,
                                 const int64_t *shape)
{
    return jac_reshape(ctx, jac_arange(ctx, 0, n, 1), ndim, shape);
}

/* ---------------------------------------------------------------------- */
/* stack                                                                   */
/* ---------------------------------------------------------------------- */

static void test_stack_joins_tensors_along_a_new_axis(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *ab[2] = {
        arange_shaped(ctx, 6, 2, TU_SHAPE(2, 3)),
        jac_add_scalar(ctx, arange_shaped(ctx, 6, 2, TU_SHAPE(2, 3)), 10)};
    tu_assert_tensor(jac_stack(ctx, 2, ab, 0), TU_SHAPE(2, 2, 3),
                     TU_VALUES(0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15), 0.0);
    tu_assert_tensor(jac_stack(ctx, 2, ab, 1), TU_SHAPE(2, 2, 3),
                     TU_VALUES(0, 1, 2, 10, 11, 12, 3, 4, 5, 13, 14, 15), 0.0);
    tu_assert_tensor(jac_stack(ctx, 2, ab, 2), TU_SHAPE(2, 3, 2),
                     TU_VALUES(0, 10, 1, 11, 2, 12, 3, 13, 4, 14, 5, 15), 0.0);
    tu_assert_tensor(jac_stack(ctx, 2, ab, -1), TU_SHAPE(2, 3, 2),
                     TU_VALUES(0, 10, 1, 11, 2, 12, 3, 13, 4, 14, 5, 15), 0.0);
    jac_tensor *scalars[3] = {jac_scalar(ctx, 1), jac_scalar(ctx, 2),
                              jac_scalar(ctx, 3)};
    tu_assert_tensor(jac_stack(ctx, 3, scalars, 0), TU_SHAPE(3),
                     TU_VALUES(1, 2, 3), 0.0);
    tu_assert_tensor(jac_stack(ctx, 1, scalars, -1), TU_SHAPE(1), TU_VALUES(1),
                     0.0);
    tu_assert_no_error(ctx);
}

static void test_stack_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *scalars[3] = {tu_scalar_leaf(ctx, 0.3),
                              tu_scalar_leaf(ctx, -0.7),
                              tu_scalar_leaf(ctx, 1.1)};
    check_case(ctx, (shape_case){.apply = apply_stack, .nin = 3, .nout = 1},
               scalars);
    jac_tensor *mats[2] = {tu_smooth_leaf(ctx, TU_SHAPE(2, 3), 0.0),
                           tu_smooth_leaf(ctx, TU_SHAPE(2, 3), 1.0)};
    for (int axis = -3; axis <= 2; axis++)
        check_case(ctx,
                   (shape_case){
                       .apply = apply_stack, .nin = 2, .nout = 1, .axis = axis},
                   mats);
    jac_tensor *cols[3] = {tu_smooth_leaf(ctx, TU_SHAPE(3, 1, 2), 0.0),
                           tu_smooth_leaf(ctx, TU_SHAPE(3, 1, 2), 2.0),
                           tu_smooth_leaf(ctx, TU_SHAPE(3, 1, 2), 4.0)};
    check_case(
        ctx, (shape_case){.apply = apply_stack, .nin = 3, .nout = 1, .axis = 1},
        cols);
}

static void
test_stack_of_one_tensor_with_itself_adds_both_gradients(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1, 2));
    jac_tensor *xx[2] = {x, x};
    jac_tensor *w = tu_tensor(ctx, TU_SHAPE(2, 2), TU_VALUES(1, 2, 3, 4));
    tu_assert_tensor(weighted_grad(ctx, jac_stack(ctx, 2, xx, 0), w, x),
                     TU_SHAPE(2), TU_VALUES(4, 6), 0.0);
}

static void test_stack_rejects_bad_arguments(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *ab[2] = {jac_zeros(ctx, 2, TU_SHAPE(2, 3)),
                         jac_zeros(ctx, 2, TU_SHAPE(3, 2))};
    assert_null(jac_stack(ctx, 2, ab, 0));
    tu_assert_error(ctx, JAC_ERR_SHAPE);
    tu_assert_contains(jac_errmsg(ctx), "stack");
    tu_assert_contains(jac_errmsg(ctx), "(3, 2)");
    jac_clear_error(ctx);

    ab[1] = ab[0];
    assert_null(jac_stack(ctx, 2, ab, 3));
    tu_assert_error(ctx, JAC_ERR_AXIS);
    tu_assert_contains(jac_errmsg(ctx), "stack");
    jac_clear_error(ctx);
    assert_null(jac_stack(ctx, 2, ab, -4));
    tu_assert_error(ctx, JAC_ERR_AXIS);
    jac_clear_error(ctx);

    assert_null(jac_stack(ctx, 0, ab, 0));
    tu_assert_error(ctx, JAC_ERR_NULL_ARG);
    tu_assert_contains(jac_errmsg(ctx), "stack");
    jac_clear_error(ctx);

    jac_tensor *big[1] = {jac_zeros(ctx, 8, TU_SHAPE(1, 1, 1, 1, 1, 1, 1, 1))};
    assert_null(jac_stack(ctx, 1, big, 0));
    tu_assert_error(ctx, JAC_ERR_RANK);
    tu_assert_contains(jac_errmsg(ctx), "stack");
    jac_clear_error(ctx);

    jac_tensor *with_null[2] = {ab[0], NULL};
    assert_null(jac_stack(ctx, 2, with_null, 0));
    tu_assert_error(ctx, JAC_ERR_NULL_ARG);
}

/* ---------------------------------------------------------------------- */
/* split                                                                   */
/* ---------------------------------------------------------------------- */

static void
test_split_cuts_consecutive_pieces_including_empty_ones(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *m = arange_shaped(ctx, 10, 2, TU_SHAPE(2, 5));
    jac_tensor *pieces[3];
    tu_assert_ok(ctx, jac_split(ctx, m, 1, 3, TU_SHAPE(2, 0, 3), pieces));
    tu_assert_tensor(pieces[0], TU_SHAPE(2, 2), TU_VALUES(0, 1, 5, 6), 0.0);
    tu_assert_shape(pieces[1], TU_SHAPE(2, 0));
    tu_assert_tensor(pieces[2], TU_SHAPE(2, 3), TU_VALUES(2, 3, 4, 7, 8, 9),
                     0.0);
    tu_assert_ok(ctx, jac_split(ctx, m, -2, 2, TU_SHAPE(1, 1), pieces));
    tu_assert_tensor(pieces[0], TU_SHAPE(1, 5), TU_VALUES(0, 1, 2, 3, 4), 0.0);
    tu_assert_tensor(pieces[1], TU_SHAPE(1, 5), TU_VALUES(5, 6, 7, 8, 9), 0.0);
    /* An empty axis splits into empty pieces. */
    jac_tensor *e = jac_zeros(ctx, 2, TU_SHAPE(0, 3));
    tu_assert_ok(ctx, jac_split(ctx, e, 0, 2, TU_SHAPE(0, 0), pieces));
    tu_assert_shape(pieces[0], TU_SHAPE(0, 3));
    tu_assert_shape(pieces[1], TU_SHAPE(0, 3));
    tu_assert_no_error(ctx);
}

static void test_split_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *v = tu_smooth_leaf(ctx, TU_SHAPE(5), 0.0);
    check_case(ctx,
               (shape_case){.apply = apply_split,
                            .nin = 1,
                            .nout = 2,
                            .axis = 0,
                            .sizes = {2, 3}},
               &v);
    jac_tensor *m = tu_smooth_leaf(ctx, TU_SHAPE(2, 5), 0.5);
    check_case(ctx,
               (shape_case){.apply = apply_split,
                            .nin = 1,
                            .nout = 3,
                            .axis = 1,
                            .sizes = {1, 0, 4}},
               &m);
    jac_tensor *c = tu_smooth_leaf(ctx, TU_SHAPE(3, 2, 4), 1.0);
    check_case(ctx,
               (shape_case){.apply = apply_split,
                            .nin = 1,
                            .nout = 2,
                            .axis = 0,
                            .sizes = {1, 2}},
               &c);
    check_case(ctx,
               (shape_case){.apply = apply_split,
                            .nin = 1,
                            .nout = 3,
                            .axis = -1,
                            .sizes = {2, 1, 1}},
               &c);
}

static void test_split_rejects_bad_arguments(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *m = jac_zeros(ctx, 2, TU_SHAPE(2, 5));
    jac_tensor *pieces[2] = {m, m};
    assert_int_equal(jac_split(ctx, m, 1, 2, TU_SHAPE(2, 2), pieces),
                     JAC_ERR_VALUE);
    tu_assert_error(ctx, JAC_ERR_VALUE);
    tu_assert_contains(jac_errmsg(ctx), "split");
    tu_assert_contains(jac_errmsg(ctx), "extent 5");
    assert_null(pieces[0]);
    assert_null(pieces[1]);
    jac_clear_error(ctx);

    assert_int_equal(jac_split(ctx, m, 1, 2, TU_SHAPE(6, -1), pieces),
                     JAC_ERR_VALUE);
    tu_assert_contains(jac_errmsg(ctx), "split");
    tu_assert_contains(jac_errmsg(ctx), "-1");
    jac_clear_error(ctx);

    assert_int_equal(jac_split(ctx, m, 1, 2, TU_SHAPE(3, 3), pieces),
                     JAC_ERR_VALUE);
    jac_clear_error(ctx);

    assert_int_equal(jac_split(ctx, m, 2, 2, TU_SHAPE(1, 1), pieces),
                     JAC_ERR_AXIS);
    tu_assert_contains(jac_errmsg(ctx), "split");
    jac_clear_error(ctx);

    assert_int_equal(
        jac_split(ctx, jac_scalar(ctx, 1), 0, 1, TU_SHAPE(1), pieces),
        JAC_ERR_AXIS);
    jac_clear_error(ctx);

    assert_int_equal(jac_split(ctx, m, 1, 2, NULL, pieces), JAC_ERR_NULL_ARG);
    tu_assert_contains(jac_errmsg(ctx), "split");
    jac_clear_error(ctx);

    assert_int_equal(jac_split(ctx, NULL, 0, 2, TU_SHAPE(1, 1), pieces),
                     JAC_ERR_NULL_ARG);
    tu_assert_error(ctx, JAC_ERR_NULL_ARG);
}

/* ---------------------------------------------------------------------- */
/* flatten, squeeze, unsqueeze                                             */
/* ---------------------------------------------------------------------- */

static void test_flatten_merges_a_range_of_axes(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *c = arange_shaped(ctx, 24, 3, TU_SHAPE(2, 3, 4));
    jac_tensor *f = jac_flatten(ctx, c, 1, 2);
    tu_assert_shape(f, TU_SHAPE(2, 12));
    tu_assert_close(jac_tensor_data(f), jac_tensor_data(c), 24, 0.0, 0.0);
    tu_assert_shape(jac_flatten(ctx, c, 0, 1), TU_SHAPE(6, 4));
    tu_assert_shape(jac_flatten(ctx, c, 0, -1), TU_SHAPE(24));
    tu_assert_shape(jac_flatten(ctx, c, -2, -2), TU_SHAPE(2, 3, 4));
    tu_assert_tensor(jac_flatten(ctx, jac_scalar(ctx, 5), 0, -1), TU_SHAPE(1),
                     TU_VALUES(5), 0.0);
    tu_assert_shape(
        jac_flatten(ctx, jac_zeros(ctx, 3, TU_SHAPE(2, 0, 3)), 1, 2),
        TU_SHAPE(2, 0));
    tu_assert_no_error(ctx);
}

static void test_squeeze_and_unsqueeze_remove_and_add_an_axis(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *m = arange_shaped(ctx, 6, 3, TU_SHAPE(3, 1, 2));
    tu_assert_tensor(jac_squeeze(ctx, m, 1), TU_SHAPE(3, 2),
                     TU_VALUES(0, 1, 2, 3, 4, 5), 0.0);
    tu_assert_shape(jac_squeeze(ctx, m, -2), TU_SHAPE(3, 2));
    tu_assert_scalar(jac_squeeze(ctx, jac_full(ctx, 1, TU_SHAPE(1), 4), 0), 4,
                     0.0);
    tu_assert_shape(jac_squeeze(ctx, jac_zeros(ctx, 2, TU_SHAPE(0, 1)), 1),
                    TU_SHAPE(0));

    jac_tensor *v = arange_shaped(ctx, 6, 2, TU_SHAPE(2, 3));
    tu_assert_tensor(jac_unsqueeze(ctx, v, 0), TU_SHAPE(1, 2, 3),
                     TU_VALUES(0, 1, 2, 3, 4, 5), 0.0);
    tu_assert_shape(jac_unsqueeze(ctx, v, 1), TU_SHAPE(2, 1, 3));
    tu_assert_shape(jac_unsqueeze(ctx, v, 2), TU_SHAPE(2, 3, 1));
    tu_assert_shape(jac_unsqueeze(ctx, v, -1), TU_SHAPE(2, 3, 1));
    tu_assert_shape(jac_unsqueeze(ctx, v, -3), TU_SHAPE(1, 2, 3));
    tu_assert_tensor(jac_unsqueeze(ctx, jac_scalar(ctx, 7), 0), TU_SHAPE(1),
                     TU_VALUES(7), 0.0);
    tu_assert_shape(jac_unsqueeze(ctx, jac_zeros(ctx, 1, TU_SHAPE(0)), 0),
                    TU_SHAPE(1, 0));
    tu_assert_no_error(ctx);
}

static void test_select_takes_one_index_and_drops_the_axis(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *m = arange_shaped(ctx, 6, 2, TU_SHAPE(2, 3));
    tu_assert_tensor(jac_select(ctx, m, 0, 1), TU_SHAPE(3), TU_VALUES(3, 4, 5),
                     0.0);
    tu_assert_tensor(jac_select(ctx, m, 1, -1), TU_SHAPE(2), TU_VALUES(2, 5),
                     0.0);
    tu_assert_scalar(jac_select(ctx, jac_select(ctx, m, 1, 0), 0, 1), 3, 0.0);
    tu_assert_no_error(ctx);
    assert_null(jac_select(ctx, m, 0, 2));
    tu_assert_error(ctx, JAC_ERR_VALUE);
    tu_assert_contains(jac_errmsg(ctx), "select: index 2");
    tu_assert_contains(jac_errmsg(ctx), "(2, 3)");
    jac_clear_error(ctx);
    assert_null(jac_select(ctx, m, 2, 0));
    tu_assert_error(ctx, JAC_ERR_AXIS);
    tu_assert_contains(jac_errmsg(ctx), "select");
    jac_clear_error(ctx);
    assert_null(jac_select(ctx, jac_scalar(ctx, 1.0), 0, 0));
    tu_assert_error(ctx, JAC_ERR_AXIS);
}

static void
test_reshape_family_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *s = tu_scalar_leaf(ctx, 0.4);
    jac_tensor *c = tu_smooth_leaf(ctx, TU_SHAPE(2, 3, 4), 0.0);
    jac_tensor *m = tu_smooth_leaf(ctx, TU_SHAPE(3, 1, 2), 1.0);
    jac_tensor *one = tu_smooth_leaf(ctx, TU_SHAPE(1), 2.0);
    check_case(ctx,
               (shape_case){.apply = apply_flatten,
                            .nin = 1,
                            .nout = 1,
                            .axis = 0,
                            .axis1 = -1},
               &s);
    check_case(
        ctx,
        (shape_case){
            .apply = apply_flatten, .nin = 1, .nout = 1, .axis = 1, .axis1 = 2},
        &c);
    check_case(ctx,
               (shape_case){.apply = apply_flatten,
                            .nin = 1,
                            .nout = 1,
                            .axis = 0,
                            .axis1 = -1},
               &c);
    check_case(
        ctx,
        (shape_case){.apply = apply_squeeze, .nin = 1, .nout = 1, .axis = 1},
        &m);
    check_case(
        ctx,
        (shape_case){.apply = apply_squeeze, .nin = 1, .nout = 1, .axis = 0},
        &one);
    check_case(
        ctx,
        (shape_case){.apply = apply_unsqueeze, .nin = 1, .nout = 1, .axis = 0},
        &s);
    check_case(
        ctx,
        (shape_case){.apply = apply_unsqueeze, .nin = 1, .nout = 1, .axis = -1},
        &m);
    check_case(
        ctx,
        (shape_case){.apply = apply_unsqueeze, .nin = 1, .nout = 1, .axis = 2},
        &c);
}

static void test_reshape_family_rejects_bad_axes(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *c = jac_zeros(ctx, 3, TU_SHAPE(2, 3, 4));
    assert_null(jac_flatten(ctx, c, 2, 1));
    tu_assert_error(ctx, JAC_ERR_AXIS);
    tu_assert_contains(jac_errmsg(ctx), "flatten");
    tu_assert_contains(jac_errmsg(ctx), "(2, 3, 4)");
    jac_clear_error(ctx);
    assert_null(jac_flatten(ctx, c, 0, 3));
    tu_assert_error(ctx, JAC_ERR_AXIS);
    jac_clear_error(ctx);
    assert_null(jac_flatten(ctx, jac_scalar(ctx, 1), 0, 1));
    tu_assert_error(ctx, JAC_ERR_AXIS);
    jac_clear_error(ctx);

    assert_null(jac_squeeze(ctx, c, 1));
    tu_assert_error(ctx, JAC_ERR_SHAPE);
    tu_assert_contains(jac_errmsg(ctx), "squeeze");
    tu_assert_contains(jac_errmsg(ctx), "extent 3");
    jac_clear_error(ctx);
    assert_null(jac_squeeze(ctx, c, 3));
    tu_assert_error(ctx, JAC_ERR_AXIS);
    tu_assert_contains(jac_errmsg(ctx), "squeeze");
    jac_clear_error(ctx);
    assert_null(jac_squeeze(ctx, jac_scalar(ctx, 1), 0));
    tu_assert_error(ctx, JAC_ERR_AXIS);
    jac_clear_error(ctx);

    assert_null(jac_unsqueeze(ctx, c, 4));
    tu_assert_error(ctx, JAC_ERR_AXIS);
    tu_assert_contains(jac_errmsg(ctx), "unsqueeze");
    jac_clear_error(ctx);
    assert_null(jac_unsqueeze(ctx, c, -5));
    tu_assert_error(ctx, JAC_ERR_AXIS);
    jac_clear_error(ctx);
    jac_tensor *big = jac_zeros(ctx, 8, TU_SHAPE(1, 1, 1, 1, 1, 1, 1, 1));
    assert_null(jac_unsqueeze(ctx, big, 0));
    tu_assert_error(ctx, JAC_ERR_RANK);
    tu_assert_contains(jac_errmsg(ctx), "unsqueeze");
    jac_clear_error(ctx);

    /* A NULL input keeps the first error. */
    assert_null(jac_squeeze(ctx, c, 1));
    assert_null(jac_unsqueeze(ctx, jac_flatten(ctx, NULL, 0, 0), 0));
    tu_assert_error(ctx, JAC_ERR_SHAPE);
    tu_assert_contains(jac_errmsg(ctx), "squeeze");
}

/* ---------------------------------------------------------------------- */
/* index_select                                                            */
/* ---------------------------------------------------------------------- */

/* 1.5 * arange(12) - 2 as (3, 4). */
static jac_tensor *matrix_3x4(jac_ctx *ctx)
{
    jac_tensor *r = arange_shaped(ctx, 12, 2, TU_SHAPE(3, 4));
    return jac_sub_scalar(ctx, jac_mul_scalar(ctx, r, 1.5), 2);
}

static void test_index_select_picks_entries_with_repeats(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = matrix_3x4(ctx);
    tu_assert_tensor(
        jac_index_select(ctx, x, 0, 3, TU_SHAPE(2, 0, 2)), TU_SHAPE(3, 4),
        TU_VALUES(10, 11.5, 13, 14.5, -2, -0.5, 1, 2.5, 10, 11.5, 13, 14.5),
        0.0);
    tu_assert_tensor(jac_index_select(ctx, x, -1, 5, TU_SHAPE(3, 1, 1, 0, 3)),
                     TU_SHAPE(3, 5),
                     TU_VALUES(2.5, -0.5, -0.5, -2, 2.5, 8.5, 5.5, 5.5, 4, 8.5,
                               14.5, 11.5, 11.5, 10, 14.5),
                     0.0);
    jac_tensor *c = arange_shaped(ctx, 24, 3, TU_SHAPE(2, 3, 4));
    tu_assert_tensor(
        jac_index_select(ctx, c, 1, 2, TU_SHAPE(2, 2)), TU_SHAPE(2, 2, 4),
        TU_VALUES(8, 9, 10, 11, 8, 9, 10, 11, 20, 21, 22, 23, 20, 21, 22, 23),
        0.0);
    tu_assert_shape(jac_index_select(ctx, x, 1, 0, NULL), TU_SHAPE(3, 0));
    tu_assert_shape(jac_index_select(ctx, jac_zeros(ctx, 2, TU_SHAPE(0, 2)), 1,
                                     1, TU_SHAPE(1)),
                    TU_SHAPE(0, 1));
    tu_assert_no_error(ctx);
}

static void test_index_select_gradient_adds_up_over_repeats(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = matrix_3x4(ctx);
    tu_assert_ok(ctx, jac_set_requires_grad(x, true));
    jac_tensor *w =
        jac_reshape(ctx, jac_arange(ctx, 1, 16, 1), 2, TU_SHAPE(3, 5));
    jac_tensor *y = jac_index_select(ctx, x, 1, 5, TU_SHAPE(3, 1, 1, 0, 3));
    tu_assert_tensor(weighted_grad(ctx, y, w, x), TU_SHAPE(3, 4),
                     TU_VALUES(4, 5, 0, 6, 9, 15, 0, 16, 14, 25, 0, 26), 0.0);
}

static void test_index_select_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *v = tu_smooth_leaf(ctx, TU_SHAPE(4), 0.0);
    check_case(ctx,
               (shape_case){.apply = apply_index_select,
                            .nin = 1,
                            .nout = 1,
                            .axis = 0,
                            .n = 3,
                            .index = {3, 0, 3}},
               &v);
    jac_tensor *m = tu_smooth_leaf(ctx, TU_SHAPE(3, 4), 1.0);
    check_case(ctx,
               (shape_case){.apply = apply_index_select,
                            .nin = 1,
                            .nout = 1,
                            .axis = 1,
                            .n = 5,
                            .index = {3, 1, 1, 0, 3}},
               &m);
    check_case(ctx,
               (shape_case){.apply = apply_index_select,
                            .nin = 1,
                            .nout = 1,
                            .axis = 0,
                            .n = 0},
               &m);
    jac_tensor *c = tu_smooth_leaf(ctx, TU_SHAPE(2, 3, 4), 2.0);
    check_case(ctx,
               (shape_case){.apply = apply_index_select,
                            .nin = 1,
                            .nout = 1,
                            .axis = 1,
                            .n = 4,
                            .index = {2, 2, 0, 1}},
               &c);
    check_case(ctx,
               (shape_case){.apply = apply_index_select,
                            .nin = 1,
                            .nout = 1,
                            .axis = -1,
                            .n = 2,
                            .index = {0, 3}},
               &c);
}

static void test_index_select_rejects_bad_indices_and_axes(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = jac_zeros(ctx, 2, TU_SHAPE(2, 3));
    assert_null(jac_index_select(ctx, x, 1, 3, TU_SHAPE(0, 3, 1)));
    tu_assert_error(ctx, JAC_ERR_VALUE);
    tu_assert_contains(jac_errmsg(ctx), "index_select");
    tu_assert_contains(jac_errmsg(ctx), "index 3");
    tu_assert_contains(jac_errmsg(ctx), "extent 3");
    jac_clear_error(ctx);

    assert_null(jac_index_select(ctx, x, 0, 2, TU_SHAPE(1, -1)));
    tu_assert_error(ctx, JAC_ERR_VALUE);
    tu_assert_contains(jac_errmsg(ctx), "index_select");
    tu_assert_contains(jac_errmsg(ctx), "index -1");
    tu_assert_contains(jac_errmsg(ctx), "extent 2");
    jac_clear_error(ctx);

    assert_null(jac_index_select(ctx, jac_zeros(ctx, 1, TU_SHAPE(0)), 0, 1,
                                 TU_SHAPE(0)));
    tu_assert_error(ctx, JAC_ERR_VALUE);
    tu_assert_contains(jac_errmsg(ctx), "extent 0");
    jac_clear_error(ctx);

    assert_null(jac_index_select(ctx, x, 2, 1, TU_SHAPE(0)));
    tu_assert_error(ctx, JAC_ERR_AXIS);
    tu_assert_contains(jac_errmsg(ctx), "index_select");
    jac_clear_error(ctx);

    assert_null(jac_index_select(ctx, jac_scalar(ctx, 1), 0, 1, TU_SHAPE(0)));
    tu_assert_error(ctx, JAC_ERR_AXIS);
    jac_clear_error(ctx);

    assert_null(jac_index_select(ctx, x, 0, 1, NULL));
    tu_assert_error(ctx, JAC_ERR_NULL_ARG);
    tu_assert_contains(jac_errmsg(ctx), "index_select");
}

/* ---------------------------------------------------------------------- */
/* gather                                                                  */
/* ---------------------------------------------------------------------- */

static void test_gather_follows_torch_gather(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *g = tu_tensor(ctx, TU_SHAPE(2, 3), TU_VALUES(1, 2, 3, 4, 5, 6));
    tu_assert_tensor(
        jac_gather(ctx, g, 1, TU_SHAPE(2, 2), TU_SHAPE(0, 0, 2, 1)),
        TU_SHAPE(2, 2), TU_VALUES(1, 1, 6, 5), 0.0);
    /* The index may be longer than a along axis, shorter elsewhere. */
    tu_assert_tensor(jac_gather(ctx, g, 0, TU_SHAPE(3, 3),
                                TU_SHAPE(1, 0, 1, 0, 0, 1, 1, 1, 0)),
                     TU_SHAPE(3, 3), TU_VALUES(4, 2, 6, 1, 2, 6, 4, 5, 3), 0.0);
    tu_assert_tensor(jac_gather(ctx, g, -1, TU_SHAPE(1, 2), TU_SHAPE(2, 0)),
                     TU_SHAPE(1, 2), TU_VALUES(3, 1), 0.0);
    jac_tensor *c = arange_shaped(ctx, 24, 3, TU_SHAPE(2, 3, 4));
    tu_assert_tensor(jac_gather(ctx, c, 2, TU_SHAPE(2, 2, 2),
                                TU_SHAPE(3, 0, 1, 1, 2, 2, 0, 3)),
                     TU_SHAPE(2, 2, 2), TU_VALUES(3, 0, 5, 5, 14, 14, 16, 19),
                     0.0);
    tu_assert_shape(jac_gather(ctx, g, 1, TU_SHAPE(2, 0), NULL),
                    TU_SHAPE(2, 0));
    tu_assert_shape(jac_gather(ctx, jac_zeros(ctx, 2, TU_SHAPE(0, 3)), 1,
                               TU_SHAPE(0, 5), NULL),
                    TU_SHAPE(0, 5));
    tu_assert_no_error(ctx);
}

static void test_gather_gradient_scatters_and_adds(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *g = tu_leaf(ctx, TU_SHAPE(2, 3), TU_VALUES(1, 2, 3, 4, 5, 6));
    jac_tensor *w = tu_tensor(ctx, TU_SHAPE(2, 2), TU_VALUES(1, 2, 3, 4));
    jac_tensor *y = jac_gather(ctx, g, 1, TU_SHAPE(2, 2), TU_SHAPE(0, 0, 2, 1));
    tu_assert_tensor(weighted_grad(ctx, y, w, g), TU_SHAPE(2, 3),
                     TU_VALUES(3, 0, 0, 0, 4, 3), 0.0);
}

static void test_gather_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *v = tu_smooth_leaf(ctx, TU_SHAPE(4), 0.0);
    check_case(ctx,
               (shape_case){.apply = apply_gather,
                            .nin = 1,
                            .nout = 1,
                            .axis = 0,
                            .sizes = {5},
                            .index = {3, 0, 3, 1, 3}},
               &v);
    jac_tensor *m = tu_smooth_leaf(ctx, TU_SHAPE(2, 3), 1.0);
    check_case(ctx,
               (shape_case){.apply = apply_gather,
                            .nin = 1,
                            .nout = 1,
                            .axis = 1,
                            .sizes = {2, 2},
                            .index = {0, 0, 2, 1}},
               &m);
    check_case(ctx,
               (shape_case){.apply = apply_gather,
                            .nin = 1,
                            .nout = 1,
                            .axis = 0,
                            .sizes = {3, 3},
                            .index = {1, 0, 1, 0, 0, 1, 1, 1, 0}},
               &m);
    check_case(ctx,
               (shape_case){.apply = apply_gather,
                            .nin = 1,
                            .nout = 1,
                            .axis = 1,
                            .sizes = {2, 0}},
               &m);
    jac_tensor *c = tu_smooth_leaf(ctx, TU_SHAPE(2, 3, 4), 2.0);
    check_case(ctx,
               (shape_case){.apply = apply_gather,
                            .nin = 1,
                            .nout = 1,
                            .axis = 2,
                            .sizes = {2, 2, 2},
                            .index = {3, 0, 1, 1, 2, 2, 0, 3}},
               &c);
    check_case(ctx,
               (shape_case){.apply = apply_gather,
                            .nin = 1,
                            .nout = 1,
                            .axis = 1,
                            .sizes = {1, 4, 3},
                            .index = {2, 0, 1, 1, 1, 2, 0, 2, 2, 2, 0, 0}},
               &c);
}

/* The third derivative runs through scatter_add's rule (gather) and the
 * rule of that gather (scatter_add) again. */
static jac_status gather_gradient_fn(jac_ctx *ctx, jac_tensor *const *in,
                                     jac_tensor **out, void *user)
{
    (void)user;
    bool was = jac_set_grad_enabled(ctx, true);
    jac_tensor *y =
        jac_gather(ctx, in[0], 1, TU_SHAPE(2, 3), TU_SHAPE(2, 2, 0, 1, 0, 1));
    jac_tensor *loss = jac_sum(ctx, jac_sin(ctx, jac_mul(ctx, y, y)));
    jac_status st =
        loss ? jac_grad(ctx, 1, &loss, NULL, 1, in, JAC_CREATE_GRAPH, out)
             : jac_errcode(ctx);
    jac_set_grad_enabled(ctx, was);
    return st;
}

static void test_gather_third_derivative_matches_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *m = tu_smooth_leaf(ctx, TU_SHAPE(2, 3), 0.5);
    tu_gradcheck(ctx, gather_gradient_fn, NULL, 1, &m, 1);
    tu_gradgradcheck(ctx, gather_gradient_fn, NULL, 1, &m, 1);
}

static void test_gather_rejects_bad_indices_and_shapes(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *g = jac_zeros(ctx, 2, TU_SHAPE(2, 3));
    assert_null(jac_gather(ctx, g, 1, TU_SHAPE(2, 2), TU_SHAPE(0, 1, 7, 1)));
    tu_assert_error(ctx, JAC_ERR_VALUE);
    tu_assert_contains(jac_errmsg(ctx), "gather");
    tu_assert_contains(jac_errmsg(ctx), "index 7");
    tu_assert_contains(jac_errmsg(ctx), "extent 3");
    jac_clear_error(ctx);

    assert_null(jac_gather(ctx, g, 0, TU_SHAPE(1, 2), TU_SHAPE(0, -2)));
    tu_assert_error(ctx, JAC_ERR_VALUE);
    tu_assert_contains(jac_errmsg(ctx), "index -2");
    tu_assert_contains(jac_errmsg(ctx), "extent 2");
    jac_clear_error(ctx);

    /* Longer than a on an axis other than the gathered one. */
    assert_null(jac_gather(ctx, g, 1, TU_SHAPE(3, 1), TU_SHAPE(0, 0, 0)));
    tu_assert_error(ctx, JAC_ERR_SHAPE);
    tu_assert_contains(jac_errmsg(ctx), "gather");
    tu_assert_contains(jac_errmsg(ctx), "(3, 1)");
    jac_clear_error(ctx);

    assert_null(jac_gather(ctx, g, 1, TU_SHAPE(-1, 1), TU_SHAPE(0)));
    tu_assert_error(ctx, JAC_ERR_VALUE);
    jac_clear_error(ctx);

    assert_null(jac_gather(ctx, g, -3, TU_SHAPE(1, 1), TU_SHAPE(0)));
    tu_assert_error(ctx, JAC_ERR_AXIS);
    tu_assert_contains(jac_errmsg(ctx), "gather");
    jac_clear_error(ctx);

    assert_null(jac_gather(ctx, jac_scalar(ctx, 1), 0, NULL, TU_SHAPE(0)));
    tu_assert_error(ctx, JAC_ERR_AXIS);
    jac_clear_error(ctx);

    assert_null(jac_gather(ctx, g, 0, NULL, TU_SHAPE(0)));
    tu_assert_error(ctx, JAC_ERR_NULL_ARG);
    jac_clear_error(ctx);
    assert_null(jac_gather(ctx, g, 0, TU_SHAPE(1, 1), NULL));
    tu_assert_error(ctx, JAC_ERR_NULL_ARG);
}

/* ---------------------------------------------------------------------- */
/* where                                                                   */
/* ---------------------------------------------------------------------- */

static void
test_where_picks_a_where_cond_is_nonzero_and_broadcasts(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *cond = tu_tensor(ctx, TU_SHAPE(3, 1), TU_VALUES(1, 0, 2));
    jac_tensor *a = tu_tensor(ctx, TU_SHAPE(4), TU_VALUES(10, 20, 30, 40));
    jac_tensor *b = jac_scalar(ctx, -1);
    tu_assert_tensor(jac_where(ctx, cond, a, b), TU_SHAPE(3, 4),
                     TU_VALUES(10, 20, 30, 40, -1, -1, -1, -1, 10, 20, 30, 40),
                     0.0);
    /* Negative and NaN conditions are non-zero; -0.0 is zero. */
    jac_tensor *c2 = tu_tensor(ctx, TU_SHAPE(4), TU_VALUES(-3, NAN, -0.0, 0));
    tu_assert_tensor(jac_where(ctx, c2, a, b), TU_SHAPE(4),
                     TU_VALUES(10, 20, -1, -1), 0.0);
    tu_assert_scalar(jac_where(ctx, jac_scalar(ctx, 0), jac_scalar(ctx, 1),
                               jac_scalar(ctx, 2)),
                     2, 0.0);
    tu_assert_shape(jac_where(ctx, jac_zeros(ctx, 2, TU_SHAPE(0, 1)), a, b),
                    TU_SHAPE(0, 4));
    tu_assert_no_error(ctx);
}

static void test_where_gradient_splits_between_a_and_b(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *cond = tu_tensor(ctx, TU_SHAPE(3, 1), TU_VALUES(1, 0, 2));
    jac_tensor *a = tu_leaf(ctx, TU_SHAPE(4), TU_VALUES(10, 20, 30, 40));
    jac_tensor *b = tu_scalar_leaf(ctx, -1);
    jac_tensor *w =
        jac_reshape(ctx, jac_arange(ctx, 1, 13, 1), 2, TU_SHAPE(3, 4));
    jac_tensor *y = jac_where(ctx, cond, a, b);
    jac_tensor *loss = jac_sum(ctx, jac_mul(ctx, y, w));
    jac_tensor *ab[2] = {a, b}, *g[2] = {NULL, NULL};
    tu_assert_ok(ctx, jac_grad(ctx, 1, &loss, NULL, 2, ab, 0, g));
    tu_assert_tensor(g[0], TU_SHAPE(4), TU_VALUES(10, 12, 14, 16), 0.0);
    tu_assert_scalar(g[1], 26, 0.0);
}

static void test_where_condition_gets_no_gradient(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *cond = tu_leaf(ctx, TU_SHAPE(3), TU_VALUES(1, 0, 0.5));
    jac_tensor *a = tu_leaf(ctx, TU_SHAPE(3), TU_VALUES(1, 2, 3));
    jac_tensor *b = jac_full(ctx, 1, TU_SHAPE(3), 9);
    jac_tensor *loss = jac_sum(ctx, jac_where(ctx, cond, a, b));
    jac_tensor *ins[2] = {cond, a}, *g[2] = {NULL, NULL};
    tu_assert_ok(ctx, jac_grad(ctx, 1, &loss, NULL, 2, ins, 0, g));
    tu_assert_tensor(g[0], TU_SHAPE(3), TU_VALUES(0, 0, 0), 0.0);
    tu_assert_tensor(g[1], TU_SHAPE(3), TU_VALUES(1, 0, 1), 0.0);
    /* A condition alone does not make the result differentiable. */
    assert_false(jac_requires_grad(jac_where(ctx, cond, b, b)));
    assert_true(jac_requires_grad(jac_where(ctx, cond, b, a)));
    tu_assert_no_error(ctx);
}

static void test_where_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *s[2] = {tu_scalar_leaf(ctx, 0.3), tu_scalar_leaf(ctx, -0.6)};
    check_case(ctx,
               (shape_case){.apply = apply_where,
                            .nin = 2,
                            .nout = 1,
                            .cond = jac_scalar(ctx, 1)},
               s);
    check_case(ctx,
               (shape_case){.apply = apply_where,
                            .nin = 2,
                            .nout = 1,
                            .cond = jac_scalar(ctx, 0)},
               s);
    /* Broadcasting all three: cond (3, 1), a (4), b (). */
    jac_tensor *bc[2] = {tu_smooth_leaf(ctx, TU_SHAPE(4), 0.0),
                         tu_scalar_leaf(ctx, 0.7)};
    check_case(ctx,
               (shape_case){
                   .apply = apply_where,
                   .nin = 2,
                   .nout = 1,
                   .cond = tu_tensor(ctx, TU_SHAPE(3, 1), TU_VALUES(1, 0, 2))},
               bc);
    /* a (2, 1, 3), b (4, 1), cond (1, 4, 1): result (2, 4, 3). */
    jac_tensor *ab[2] = {tu_smooth_leaf(ctx, TU_SHAPE(2, 1, 3), 1.0),
                         tu_smooth_leaf(ctx, TU_SHAPE(4, 1), 2.0)};
    check_case(ctx,
               (shape_case){.apply = apply_where,
                            .nin = 2,
                            .nout = 1,
                            .cond = tu_tensor(ctx, TU_SHAPE(1, 4, 1),
                                              TU_VALUES(0, 1, 1, 0))},
               ab);
    /* Same shapes, non-square. */
    jac_tensor *mm[2] = {tu_smooth_leaf(ctx, TU_SHAPE(2, 3), 0.5),
                         tu_smooth_leaf(ctx, TU_SHAPE(2, 3), 1.5)};
    check_case(ctx,
               (shape_case){.apply = apply_where,
                            .nin = 2,
                            .nout = 1,
                            .cond = tu_tensor(ctx, TU_SHAPE(2, 3),
                                              TU_VALUES(1, 0, 0, 1, 1, 0))},
               mm);
}

static void test_where_rejects_shapes_that_do_not_broadcast(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = jac_zeros(ctx, 1, TU_SHAPE(4));
    jac_tensor *b = jac_zeros(ctx, 1, TU_SHAPE(3));
    assert_null(jac_where(ctx, jac_scalar(ctx, 1), a, b));
    tu_assert_error(ctx, JAC_ERR_SHAPE);
    tu_assert_contains(jac_errmsg(ctx), "where");
    tu_assert_contains(jac_errmsg(ctx), "(4)");
    tu_assert_contains(jac_errmsg(ctx), "(3)");
    jac_clear_error(ctx);
    assert_null(jac_where(ctx, jac_zeros(ctx, 2, TU_SHAPE(2, 3)), a, a));
    tu_assert_error(ctx, JAC_ERR_SHAPE);
    tu_assert_contains(jac_errmsg(ctx), "(2, 3)");
    jac_clear_error(ctx);
    assert_null(jac_where(ctx, NULL, a, a));
    tu_assert_error(ctx, JAC_ERR_NULL_ARG);
}

/* ---------------------------------------------------------------------- */
/* pad                                                                     */
/* ---------------------------------------------------------------------- */

static void test_pad_surrounds_the_tensor_with_zeros(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *p = tu_tensor(ctx, TU_SHAPE(2, 3), TU_VALUES(1, 2, 3, 4, 5, 6));
    tu_assert_tensor(
        jac_pad(ctx, p, TU_SHAPE(1, 0), TU_SHAPE(0, 2)), TU_SHAPE(3, 5),
        TU_VALUES(0, 0, 0, 0, 0, 1, 2, 3, 0, 0, 4, 5, 6, 0, 0), 0.0);
    tu_assert_tensor(jac_pad(ctx, tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(1, 2)),
                             TU_SHAPE(3), TU_SHAPE(1)),
                     TU_SHAPE(6), TU_VALUES(0, 0, 0, 1, 2, 0), 0.0);
    tu_assert_tensor(jac_pad(ctx, p, TU_SHAPE(0, 0), TU_SHAPE(0, 0)),
                     TU_SHAPE(2, 3), TU_VALUES(1, 2, 3, 4, 5, 6), 0.0);
    tu_assert_scalar(jac_pad(ctx, jac_scalar(ctx, 3), NULL, NULL), 3, 0.0);
    /* An empty tensor pads to zeros; padding nothing stays empty. */
    tu_assert_tensor(jac_pad(ctx, jac_zeros(ctx, 2, TU_SHAPE(0, 2)),
                             TU_SHAPE(1, 0), TU_SHAPE(0, 1)),
                     TU_SHAPE(1, 3), TU_VALUES(0, 0, 0), 0.0);
    tu_assert_shape(jac_pad(ctx, jac_zeros(ctx, 2, TU_SHAPE(0, 2)),
                            TU_SHAPE(0, 1), TU_SHAPE(0, 1)),
                    TU_SHAPE(0, 4));
    tu_assert_no_error(ctx);
}

static void test_pad_gradient_is_the_interior(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *p = tu_leaf(ctx, TU_SHAPE(2, 3), TU_VALUES(1, 2, 3, 4, 5, 6));
    jac_tensor *w =
        jac_reshape(ctx, jac_arange(ctx, 1, 16, 1), 2, TU_SHAPE(3, 5));
    jac_tensor *y = jac_pad(ctx, p, TU_SHAPE(1, 0), TU_SHAPE(0, 2));
    tu_assert_tensor(weighted_grad(ctx, y, w, p), TU_SHAPE(2, 3),
                     TU_VALUES(6, 7, 8, 11, 12, 13), 0.0);
}

static void test_pad_derivatives_match_finite_difference(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *s = tu_scalar_leaf(ctx, 0.4);
    check_case(ctx, (shape_case){.apply = apply_pad, .nin = 1, .nout = 1}, &s);
    jac_tensor *v = tu_smooth_leaf(ctx, TU_SHAPE(4), 0.0);
    check_case(ctx,
               (shape_case){.apply = apply_pad,
                            .nin = 1,
                            .nout = 1,
                            .before = {3},
                            .after = {1}},
               &v);
    jac_tensor *m = tu_smooth_leaf(ctx, TU_SHAPE(2, 3), 1.0);
    check_case(ctx,
               (shape_case){.apply = apply_pad,
                            .nin = 1,
                            .nout = 1,
                            .before = {1, 0},
                            .after = {0, 2}},
               &m);
    check_case(ctx,
               (shape_case){.apply = apply_pad,
                            .nin = 1,
                            .nout = 1,
                            .before = {0, 0},
                            .after = {0, 0}},
               &m);
    jac_tensor *c = tu_smooth_leaf(ctx, TU_SHAPE(2, 3, 2), 2.0);
    check_case(ctx,
               (shape_case){.apply = apply_pad,
                            .nin = 1,
                            .nout = 1,
                            .before = {0, 1, 2},
                            .after = {1, 0, 0}},
               &c);
    jac_tensor *e = tu_smooth_leaf(ctx, TU_SHAPE(0, 3), 0.0);
    check_case(ctx,
               (shape_case){.apply = apply_pad,
                            .nin = 1,
                            .nout = 1,
                            .before = {1, 0},
                            .after = {1, 1}},
               &e);
}

static void test_pad_rejects_negative_padding(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *p = jac_zeros(ctx, 2, TU_SHAPE(2, 3));
    assert_null(jac_pad(ctx, p, TU_SHAPE(0, -1), TU_SHAPE(0, 0)));
    tu_assert_error(ctx, JAC_ERR_VALUE);
    tu_assert_contains(jac_errmsg(ctx), "pad");
    tu_assert_contains(jac_errmsg(ctx), "-1");
    tu_assert_contains(jac_errmsg(ctx), "(2, 3)");
    jac_clear_error(ctx);
    assert_null(jac_pad(ctx, p, TU_SHAPE(0, 0), TU_SHAPE(-4, 0)));
    tu_assert_error(ctx, JAC_ERR_VALUE);
    jac_clear_error(ctx);
    assert_null(jac_pad(ctx, p, TU_SHAPE(0, INT64_MAX), TU_SHAPE(0, 0)));
    tu_assert_error(ctx, JAC_ERR_OVERFLOW);
    tu_assert_contains(jac_errmsg(ctx), "pad");
    jac_clear_error(ctx);
    assert_null(jac_pad(ctx, p, NULL, TU_SHAPE(0, 0)));
    tu_assert_error(ctx, JAC_ERR_NULL_ARG);
    tu_assert_contains(jac_errmsg(ctx), "pad");
}

/* ---------------------------------------------------------------------- */
/* Zero-size tensors through every op, forward and backward                */
/* ---------------------------------------------------------------------- */

static void test_shape_ops_pass_zero_size_tensors_through(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *e = jac_zeros(ctx, 2, TU_SHAPE(2, 0));
    tu_assert_ok(ctx, jac_set_requires_grad(e, true));
    jac_tensor *m = tu_smooth_leaf(ctx, TU_SHAPE(2, 3), 0.0);

    jac_tensor *ee[2] = {e, e};
    tu_assert_shape(jac_stack(ctx, 2, ee, 1), TU_SHAPE(2, 2, 0));
    jac_tensor *me[2] = {m, e};
    jac_tensor *cat = jac_concat(ctx, 2, me, 1);
    tu_assert_shape(cat, TU_SHAPE(2, 3));
    tu_assert_shape(jac_slice(ctx, m, 1, 2, 2, 1), TU_SHAPE(2, 0));
    tu_assert_shape(jac_flatten(ctx, e, 0, 1), TU_SHAPE(0));
    tu_assert_shape(jac_unsqueeze(ctx, e, 1), TU_SHAPE(2, 1, 0));
    tu_assert_shape(jac_index_select(ctx, e, 0, 3, TU_SHAPE(1, 1, 0)),
                    TU_SHAPE(3, 0));
    tu_assert_shape(jac_gather(ctx, e, 0, TU_SHAPE(2, 0), NULL),
                    TU_SHAPE(2, 0));
    tu_assert_shape(jac_where(ctx, jac_scalar(ctx, 1), e, jac_scalar(ctx, 2)),
                    TU_SHAPE(2, 0));
    jac_tensor *pad = jac_pad(ctx, e, TU_SHAPE(0, 1), TU_SHAPE(1, 1));
    tu_assert_tensor(pad, TU_SHAPE(3, 2), TU_VALUES(0, 0, 0, 0, 0, 0), 0.0);

    /* Gradients through all of them reach both inputs with the right shape. */
    jac_tensor *loss = jac_add(
        ctx, jac_sum(ctx, jac_mul(ctx, cat, cat)),
        jac_add(
            ctx,
            jac_sum(ctx, jac_index_select(ctx, jac_stack(ctx, 2, ee, 0), 1, 2,
                                          TU_SHAPE(1, 0))),
            jac_sum(ctx,
                    jac_pad(ctx, jac_gather(ctx, e, 1, TU_SHAPE(1, 0), NULL),
                            TU_SHAPE(1, 2), TU_SHAPE(0, 0)))));
    jac_tensor *ins[2] = {m, e}, *g[2] = {NULL, NULL};
    tu_assert_ok(ctx, jac_grad(ctx, 1, &loss, NULL, 2, ins, 0, g));
    tu_assert_shape(g[0], TU_SHAPE(2, 3));
    tu_assert_close(jac_tensor_data(g[0]),
                    jac_tensor_data(jac_mul_scalar(ctx, m, 2)), 6, 0.0, 0.0);
    tu_assert_shape(g[1], TU_SHAPE(2, 0));
    tu_assert_no_error(ctx);
}

/* ---------------------------------------------------------------------- */
/* Random tensors                                                          */
/* ---------------------------------------------------------------------- */

/* Reference values from a separate implementation of the algorithm
 * documented in src/random.c. */
static void test_rand_uniform_first_values_are_pinned(void **state)
{
    jac_ctx *ctx = *state;
    tu_assert_tensor(jac_rand_uniform(ctx, 1, TU_SHAPE(6), 0, 1, 0),
                     TU_SHAPE(6),
                     TU_VALUES(0.88331080821364261, 0.43152799704850997,
                               0.026433771592597743, 0.97088197815382848,
                               0.10634669156721244, 0.32732576421812576),
                     0.0);
    tu_assert_tensor(jac_rand_uniform(ctx, 2, TU_SHAPE(2, 3), 0, 1, 42),
                     TU_SHAPE(2, 3),
                     TU_VALUES(0.59611887183020762, 0.16036538759857721,
                               0.16639780398145976, 0.048025795475956312,
                               0.98081400578932709, 0.23512246455814023),
                     0.0);
    tu_assert_tensor(jac_rand_uniform(ctx, 1, TU_SHAPE(6), -2, 3, 42),
                     TU_SHAPE(6),
                     TU_VALUES(0.98059435915103821, -1.1981730620071138,
                               -1.1680109800927012, -1.7598710226202186,
                               2.9040700289466352, -0.82438767720929884),
                     0.0);
    tu_assert_scalar(jac_rand_uniform(ctx, 0, NULL, 0, 1, 0),
                     0.88331080821364261, 0.0);
    tu_assert_no_error(ctx);
}

/* The normals go through the C library's log and cos: pinned to a few
 * ulps rather than bit for bit (see src/random.c). */
static void test_rand_normal_first_values_are_pinned(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *z = jac_rand_normal(ctx, 1, TU_SHAPE(6), 0, 1, 0);
    tu_assert_shape(z, TU_SHAPE(6));
    tu_assert_close(jac_tensor_data(z),
                    TU_VALUES(-1.8839083333524405, 0.22760793546360525,
                              -0.22143788059715477, 0.083418544195663927,
                              0.71708264942187339, 0.06961828150383062),
                    6, 1e-15, 1e-14);
    z = jac_rand_normal(ctx, 2, TU_SHAPE(3, 2), 1, 0.5, 42);
    tu_assert_shape(z, TU_SHAPE(3, 2));
    tu_assert_close(jac_tensor_data(z),
                    TU_VALUES(1.3594599375831982, 1.2880310689195253,
                              1.1312375651816566, 1.2318935421585404,
                              1.0329246443457567, 1.6420504699030212),
                    6, 1e-15, 1e-14);
    /* std 0 gives the mean everywhere. */
    tu_assert_tensor(jac_rand_normal(ctx, 1, TU_SHAPE(3), 2.5, 0, 9),
                     TU_SHAPE(3), TU_VALUES(2.5, 2.5, 2.5), 0.0);
    tu_assert_no_error(ctx);
}

/* A random tensor of either kind with seed 7. */
static jac_tensor *rand_kind(jac_ctx *ctx, int normal, int ndim,
                             const int64_t *shape)
{
    return normal ? jac_rand_normal(ctx, ndim, shape, 0, 1, 7)
                  : jac_rand_uniform(ctx, ndim, shape, 0, 1, 7);
}

static void test_rand_values_depend_only_on_seed_and_position(void **state)
{
    jac_ctx *ctx = *state;
    for (int kind = 0; kind < 2; kind++) {
        jac_tensor *small = rand_kind(ctx, kind, 2, TU_SHAPE(2, 3));
        jac_tensor *large = rand_kind(ctx, kind, 1, TU_SHAPE(1000));
        jac_tensor *again = rand_kind(ctx, kind, 3, TU_SHAPE(10, 10, 10));
        tu_assert_close(jac_tensor_data(small), jac_tensor_data(large), 6, 0.0,
                        0.0);
        tu_assert_close(jac_tensor_data(again), jac_tensor_data(large), 1000,
                        0.0, 0.0);
        /* Not all equal: the test above cannot pass on a constant. */
        assert_true(jac_tensor_data(large)[0] != jac_tensor_data(large)[1]);
        assert_false(jac_requires_grad(large));
        assert_true(jac_is_leaf(large));
    }
    tu_assert_no_error(ctx);
}

static void test_rand_different_seeds_give_different_values(void **state)
{
    jac_ctx *ctx = *state;
    const uint64_t seeds[4] = {0, 1, 0x9e3779b97f4a7c15ull, UINT64_MAX};
    const int64_t n = 1000;
    for (int kind = 0; kind < 2; kind++) {
        const double *d[4];
        for (int s = 0; s < 4; s++) {
            jac_tensor *t = kind ? jac_rand_normal(ctx, 1, &n, 0, 1, seeds[s])
                                 : jac_rand_uniform(ctx, 1, &n, 0, 1, seeds[s]);
            assert_non_null(t);
            d[s] = jac_tensor_data(t);
        }
        /* No value of one stream appears anywhere in another (which also
         * rules out a stream that is another one shifted). */
        for (int s = 0; s < 4; s++)
            for (int r = s + 1; r < 4; r++)
                for (int64_t i = 0; i < n; i++)
                    for (int64_t j = 0; j < n; j++)
                        if (d[s][i] == d[r][j]) {
                            print_error("seeds %d and %d share value %.17g\n",
                                        s, r, d[s][i]);
                            fail();
                        }
    }
}

static void mean_and_std(const jac_tensor *t, double *mean, double *std)
{
    const double *d = jac_tensor_data(t);
    int64_t n = jac_tensor_numel(t);
    double s = 0.0, ss = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += d[i];
    *mean = s / (double)n;
    for (int64_t i = 0; i < n; i++)
        ss += (d[i] - *mean) * (d[i] - *mean);
    *std = sqrt(ss / (double)n);
}

static void test_rand_uniform_has_the_mean_and_std_of_its_interval(void **state)
{
    jac_ctx *ctx = *state;
    const int64_t n = 100000;
    double mean, std;
    /* Standard error of the mean: 5 / sqrt(12 n) = 0.0046; tolerance ~5x. */
    jac_tensor *u = jac_rand_uniform(ctx, 1, &n, -2, 3, 7);
    mean_and_std(u, &mean, &std);
    tu_assert_close(&mean, TU_VALUES(0.5), 1, 0.025, 0.0);
    tu_assert_close(&std, TU_VALUES(1.4433756729740643), 1, 0.01, 0.0);
    const double *d = jac_tensor_data(u);
    int64_t below_zero = 0;
    for (int64_t i = 0; i < n; i++) {
        assert_true(d[i] >= -2 && d[i] < 3);
        below_zero += d[i] < 0;
    }
    /* P(u < 0) = 0.4, standard error 0.0015. */
    tu_assert_close(TU_VALUES((double)below_zero / (double)n), TU_VALUES(0.4),
                    1, 0.008, 0.0);
    /* An empty interval gives its one point. */
    tu_assert_tensor(jac_rand_uniform(ctx, 1, TU_SHAPE(2), 1.5, 1.5, 3),
                     TU_SHAPE(2), TU_VALUES(1.5, 1.5), 0.0);
    tu_assert_shape(jac_rand_uniform(ctx, 2, TU_SHAPE(3, 0), 0, 1, 3),
                    TU_SHAPE(3, 0));
}

static void test_rand_normal_has_the_requested_mean_and_std(void **state)
{
    jac_ctx *ctx = *state;
    const int64_t n = 100000;
    double mean, std;
    /* Standard error of the mean: 0.5 / sqrt(n) = 0.0016; tolerance ~5x. */
    jac_tensor *z = jac_rand_normal(ctx, 1, &n, 1, 0.5, 7);
    mean_and_std(z, &mean, &std);
    tu_assert_close(&mean, TU_VALUES(1.0), 1, 0.008, 0.0);
    tu_assert_close(&std, TU_VALUES(0.5), 1, 0.006, 0.0);
    /* The shape of the bell: P(|z - mean| < std) = 0.6827 (s.e. 0.0015). */
    const double *d = jac_tensor_data(z);
    int64_t inside = 0;
    for (int64_t i = 0; i < n; i++) {
        assert_true(isfinite(d[i]));
        inside += fabs(d[i] - 1.0) < 0.5;
    }
    tu_assert_close(TU_VALUES((double)inside / (double)n), TU_VALUES(0.6827), 1,
                    0.008, 0.0);
    tu_assert_shape(jac_rand_normal(ctx, 1, TU_SHAPE(0), 0, 1, 3), TU_SHAPE(0));
}

static void test_rand_rejects_bad_parameters(void **state)
{
    jac_ctx *ctx = *state;
    assert_null(jac_rand_uniform(ctx, 1, TU_SHAPE(3), 1, 0, 0));
    tu_assert_error(ctx, JAC_ERR_VALUE);
    tu_assert_contains(jac_errmsg(ctx), "rand_uniform");
    jac_clear_error(ctx);
    assert_null(jac_rand_uniform(ctx, 1, TU_SHAPE(3), 0, INFINITY, 0));
    tu_assert_error(ctx, JAC_ERR_VALUE);
    jac_clear_error(ctx);
    assert_null(jac_rand_uniform(ctx, 1, TU_SHAPE(3), -1e308, 1e308, 0));
    tu_assert_error(ctx, JAC_ERR_VALUE);
    jac_clear_error(ctx);
    assert_null(jac_rand_uniform(ctx, 1, TU_SHAPE(3), NAN, 1, 0));
    tu_assert_error(ctx, JAC_ERR_VALUE);
    jac_clear_error(ctx);
    assert_null(jac_rand_uniform(ctx, 2, TU_SHAPE(3, -1), 0, 1, 0));
    tu_assert_error(ctx, JAC_ERR_VALUE);
    tu_assert_contains(jac_errmsg(ctx), "rand_uniform");
    jac_clear_error(ctx);
    assert_null(
        jac_rand_uniform(ctx, 9, TU_SHAPE(1, 1, 1, 1, 1, 1, 1, 1, 1), 0, 1, 0));
    tu_assert_error(ctx, JAC_ERR_RANK);
    jac_clear_error(ctx);

    assert_null(jac_rand_normal(ctx, 1, TU_SHAPE(3), 0, -1, 0));
    tu_assert_error(ctx, JAC_ERR_VALUE);
    tu_assert_contains(jac_errmsg(ctx), "rand_normal");
    jac_clear_error(ctx);
    assert_null(jac_rand_normal(ctx, 1, TU_SHAPE(3), NAN, 1, 0));
    tu_assert_error(ctx, JAC_ERR_VALUE);
    jac_clear_error(ctx);
    assert_null(jac_rand_normal(ctx, 1, NULL, 0, 1, 0));
    tu_assert_error(ctx, JAC_ERR_NULL_ARG);
    tu_assert_contains(jac_errmsg(ctx), "rand_normal");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_stack_joins_tensors_along_a_new_axis),
        TU_TEST(test_stack_derivatives_match_finite_difference),
        TU_TEST(test_stack_of_one_tensor_with_itself_adds_both_gradients),
        TU_TEST(test_stack_rejects_bad_arguments),
        TU_TEST(test_split_cuts_consecutive_pieces_including_empty_ones),
        TU_TEST(test_split_derivatives_match_finite_difference),
        TU_TEST(test_split_rejects_bad_arguments),
        TU_TEST(test_flatten_merges_a_range_of_axes),
        TU_TEST(test_squeeze_and_unsqueeze_remove_and_add_an_axis),
        TU_TEST(test_select_takes_one_index_and_drops_the_axis),
        TU_TEST(test_reshape_family_derivatives_match_finite_difference),
        TU_TEST(test_reshape_family_rejects_bad_axes),
        TU_TEST(test_index_select_picks_entries_with_repeats),
        TU_TEST(test_index_select_gradient_adds_up_over_repeats),
        TU_TEST(test_index_select_derivatives_match_finite_difference),
        TU_TEST(test_index_select_rejects_bad_indices_and_axes),
        TU_TEST(test_gather_follows_torch_gather),
        TU_TEST(test_gather_gradient_scatters_and_adds),
        TU_TEST(test_gather_derivatives_match_finite_difference),
        TU_TEST(test_gather_third_derivative_matches_finite_difference),
        TU_TEST(test_gather_rejects_bad_indices_and_shapes),
        TU_TEST(test_where_picks_a_where_cond_is_nonzero_and_broadcasts),
        TU_TEST(test_where_gradient_splits_between_a_and_b),
        TU_TEST(test_where_condition_gets_no_gradient),
        TU_TEST(test_where_derivatives_match_finite_difference),
        TU_TEST(test_where_rejects_shapes_that_do_not_broadcast),
        TU_TEST(test_pad_surrounds_the_tensor_with_zeros),
        TU_TEST(test_pad_gradient_is_the_interior),
        TU_TEST(test_pad_derivatives_match_finite_difference),
        TU_TEST(test_pad_rejects_negative_padding),
        TU_TEST(test_shape_ops_pass_zero_size_tensors_through),
        TU_TEST(test_rand_uniform_first_values_are_pinned),
        TU_TEST(test_rand_normal_first_values_are_pinned),
        TU_TEST(test_rand_values_depend_only_on_seed_and_position),
        TU_TEST(test_rand_different_seeds_give_different_values),
        TU_TEST(test_rand_uniform_has_the_mean_and_std_of_its_interval),
        TU_TEST(test_rand_normal_has_the_requested_mean_and_std),
        TU_TEST(test_rand_rejects_bad_parameters),
    };
    return cmocka_run_group_tests_name("ops_shape", tests, NULL, NULL);
}
