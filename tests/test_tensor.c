/*
 * Tensors: creation, queries, copies, printing, limits on rank and size,
 * version and status strings.
 *
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"

/* ---------------------------------------------------------------------- */
/* Creation                                                                */
/* ---------------------------------------------------------------------- */

static void test_tensor_new_copies_the_data(void **state)
{
    jac_ctx *ctx = *state;
    double data[6] = {1, 2, 3, 4, 5, 6};
    jac_tensor *t = jac_tensor_new(ctx, 2, TU_SHAPE(2, 3), data);
    assert_non_null(t);
    assert_ptr_not_equal(jac_tensor_data(t), data);
    data[0] = 100.0;
    data[5] = -100.0;
    tu_assert_tensor(t, TU_SHAPE(2, 3), TU_VALUES(1, 2, 3, 4, 5, 6), 0.0);
}

static void test_tensor_new_with_null_data_is_zeros(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *t = jac_tensor_new(ctx, 2, TU_SHAPE(2, 2), NULL);
    tu_assert_tensor(t, TU_SHAPE(2, 2), TU_VALUES(0, 0, 0, 0), 0.0);
}

static void test_zeros_ones_and_full_fill_every_element(void **state)
{
    jac_ctx *ctx = *state;
    tu_assert_tensor(jac_zeros(ctx, 2, TU_SHAPE(3, 2)), TU_SHAPE(3, 2),
                     TU_VALUES(0, 0, 0, 0, 0, 0), 0.0);
    tu_assert_tensor(jac_ones(ctx, 1, TU_SHAPE(4)), TU_SHAPE(4),
                     TU_VALUES(1, 1, 1, 1), 0.0);
    tu_assert_tensor(jac_full(ctx, 3, TU_SHAPE(1, 2, 2), -2.5),
                     TU_SHAPE(1, 2, 2), TU_VALUES(-2.5, -2.5, -2.5, -2.5), 0.0);
    tu_assert_scalar(jac_full(ctx, 0, NULL, 7.25), 7.25, 0.0);
    tu_assert_scalar(jac_ones(ctx, 0, NULL), 1.0, 0.0);
    tu_assert_no_error(ctx);
}

static void test_eye_is_the_identity(void **state)
{
    jac_ctx *ctx = *state;
    tu_assert_tensor(jac_eye(ctx, 3), TU_SHAPE(3, 3),
                     TU_VALUES(1, 0, 0, 0, 1, 0, 0, 0, 1), 0.0);
    tu_assert_tensor(jac_eye(ctx, 1), TU_SHAPE(1, 1), TU_VALUES(1), 0.0);
    jac_tensor *empty = jac_eye(ctx, 0);
    tu_assert_shape(empty, TU_SHAPE(0, 0));
    assert_int_equal(jac_tensor_numel(empty), 0);
    tu_assert_no_error(ctx);
}

static void test_eye_of_negative_size_fails(void **state)
{
    jac_ctx *ctx = *state;
    assert_null(jac_eye(ctx, -1));
    tu_assert_error(ctx, JAC_ERR_VALUE);
}

static void test_arange_counts_up_to_but_excluding_stop(void **state)
{
    jac_ctx *ctx = *state;
    tu_assert_tensor(jac_arange(ctx, 0, 5, 1), TU_SHAPE(5),
                     TU_VALUES(0, 1, 2, 3, 4), 0.0);
    tu_assert_tensor(jac_arange(ctx, 2, 8, 3), TU_SHAPE(2), TU_VALUES(2, 5),
                     0.0);
    tu_assert_tensor(jac_arange(ctx, 2, 9, 3), TU_SHAPE(3), TU_VALUES(2, 5, 8),
                     0.0);
    tu_assert_no_error(ctx);
}

static void test_arange_with_negative_step_counts_down(void **state)
{
    jac_ctx *ctx = *state;
    tu_assert_tensor(jac_arange(ctx, 5, 0, -1.5), TU_SHAPE(4),
                     TU_VALUES(5, 3.5, 2, 0.5), 0.0);
    tu_assert_tensor(jac_arange(ctx, 1, -2, -1), TU_SHAPE(3),
                     TU_VALUES(1, 0, -1), 0.0);
    tu_assert_no_error(ctx);
}

static void test_arange_with_fractional_step(void **state)
{
    jac_ctx *ctx = *state;
    tu_assert_tensor(jac_arange(ctx, 0, 1, 0.25), TU_SHAPE(4),
                     TU_VALUES(0, 0.25, 0.5, 0.75), 0.0);
    /* NumPy: ceil((1 - 0) / 0.3) = 4 elements. */
    tu_assert_tensor(jac_arange(ctx, 0, 1, 0.3), TU_SHAPE(4),
                     TU_VALUES(0, 0.3, 0.6, 0.9), 1e-15);
    tu_assert_no_error(ctx);
}

static void test_arange_of_an_empty_range_is_empty(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *same = jac_arange(ctx, 3, 3, 1);
    tu_assert_shape(same, TU_SHAPE(0));
    jac_tensor *wrong_way = jac_arange(ctx, 0, 5, -1);
    tu_assert_shape(wrong_way, TU_SHAPE(0));
    jac_tensor *backwards = jac_arange(ctx, 5, 0, 2);
    tu_assert_shape(backwards, TU_SHAPE(0));
    assert_int_equal(jac_tensor_numel(backwards), 0);
    tu_assert_no_error(ctx);
}

static void test_arange_with_zero_or_non_finite_step_fails(void **state)
{
    jac_ctx *ctx = *state;
    assert_null(jac_arange(ctx, 0, 5, 0));
    tu_assert_error(ctx, JAC_ERR_VALUE);
    jac_clear_error(ctx);
    assert_null(jac_arange(ctx, 0, 5, NAN));
    tu_assert_error(ctx, JAC_ERR_VALUE);
    jac_clear_error(ctx);
    assert_null(jac_arange(ctx, 0, 5, INFINITY));
    tu_assert_error(ctx, JAC_ERR_VALUE);
}

static void test_scalar_is_rank_0_with_one_element(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *s = jac_scalar(ctx, 5.0);
    assert_non_null(s);
    assert_int_equal(jac_tensor_ndim(s), 0);
    assert_int_equal(jac_tensor_numel(s), 1);
    assert_true(jac_tensor_item(s) == 5.0);
    assert_true(jac_tensor_data(s)[0] == 5.0);
    assert_true(jac_tensor_get(s, NULL) == 5.0);
    assert_int_equal(jac_tensor_dim(s, 0), -1);
    assert_int_equal(jac_tensor_dim(s, -1), -1);
    assert_false(jac_requires_grad(s));
    assert_true(jac_is_leaf(s));
    assert_null(jac_tensor_grad(s));
}

static void test_zero_extent_gives_an_empty_tensor(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *t = jac_zeros(ctx, 2, TU_SHAPE(0, 3));
    tu_assert_shape(t, TU_SHAPE(0, 3));
    assert_int_equal(jac_tensor_numel(t), 0);
    tu_assert_no_error(ctx);
}

/* ---------------------------------------------------------------------- */
/* Queries                                                                 */
/* ---------------------------------------------------------------------- */

static void test_shape_ndim_numel_and_dim_describe_the_tensor(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *t = jac_zeros(ctx, 3, TU_SHAPE(2, 3, 4));
    assert_int_equal(jac_tensor_ndim(t), 3);
    assert_int_equal(jac_tensor_numel(t), 24);
    const int64_t *shape = jac_tensor_shape(t);
    assert_non_null(shape);
    assert_int_equal(shape[0], 2);
    assert_int_equal(shape[1], 3);
    assert_int_equal(shape[2], 4);
    assert_int_equal(jac_tensor_dim(t, 0), 2);
    assert_int_equal(jac_tensor_dim(t, 2), 4);
    assert_int_equal(jac_tensor_dim(t, -1), 4);
    assert_int_equal(jac_tensor_dim(t, -3), 2);
    assert_int_equal(jac_tensor_dim(t, 3), -1);
    assert_int_equal(jac_tensor_dim(t, -4), -1);
    assert_ptr_equal(jac_tensor_ctx(t), ctx);
}

static void test_queries_on_null_return_the_documented_values(void **state)
{
    (void)state;
    assert_int_equal(jac_tensor_ndim(NULL), -1);
    assert_null(jac_tensor_shape(NULL));
    assert_int_equal(jac_tensor_numel(NULL), 0);
    assert_null(jac_tensor_data(NULL));
    assert_int_equal(jac_tensor_dim(NULL, 0), -1);
    assert_true(isnan(jac_tensor_item(NULL)));
    assert_false(jac_requires_grad(NULL));
    assert_null(jac_tensor_grad(NULL));
}

static void test_get_reads_row_major_elements(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *t =
        tu_tensor(ctx, TU_SHAPE(2, 3), TU_VALUES(10, 11, 12, 20, 21, 22));
    assert_true(jac_tensor_get(t, TU_SHAPE(0, 0)) == 10);
    assert_true(jac_tensor_get(t, TU_SHAPE(0, 2)) == 12);
    assert_true(jac_tensor_get(t, TU_SHAPE(1, 0)) == 20);
    assert_true(jac_tensor_get(t, TU_SHAPE(1, 2)) == 22);
    jac_tensor *cube = jac_arange(ctx, 0, 24, 1);
    jac_tensor *r3 = jac_reshape(ctx, cube, 3, TU_SHAPE(2, 3, 4));
    assert_true(jac_tensor_get(r3, TU_SHAPE(1, 2, 3)) == 23);
    assert_true(jac_tensor_get(r3, TU_SHAPE(1, 0, 2)) == 14);
}

static void test_get_out_of_range_is_nan(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *t = tu_tensor(ctx, TU_SHAPE(2, 3), TU_VALUES(1, 2, 3, 4, 5, 6));
    assert_true(isnan(jac_tensor_get(t, TU_SHAPE(2, 0))));
    assert_true(isnan(jac_tensor_get(t, TU_SHAPE(0, 3))));
    assert_true(isnan(jac_tensor_get(t, TU_SHAPE(-1, 0))));
}

static void test_item_reads_one_element_tensors_only(void **state)
{
    jac_ctx *ctx = *state;
    assert_true(jac_tensor_item(jac_scalar(ctx, -3.5)) == -3.5);
    jac_tensor *one = tu_tensor(ctx, TU_SHAPE(1, 1, 1), TU_VALUES(4.25));
    assert_true(jac_tensor_item(one) == 4.25);
    jac_tensor *two = tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(1, 2));
    assert_true(isnan(jac_tensor_item(two)));
    jac_tensor *none = jac_zeros(ctx, 1, TU_SHAPE(0));
    assert_true(isnan(jac_tensor_item(none)));
}

/* NaN alone could be a value: the misuse is also an error in the context. */
static void test_item_and_get_misuse_is_recorded_in_the_context(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *three = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(1, 2, 3));
    assert_true(isnan(jac_tensor_item(three)));
    tu_assert_error(ctx, JAC_ERR_SHAPE);
    tu_assert_contains(jac_errmsg(ctx), "tensor_item");
    tu_assert_contains(jac_errmsg(ctx), "(3)");
    jac_clear_error(ctx);
    assert_true(isnan(jac_tensor_get(three, TU_SHAPE(3))));
    tu_assert_error(ctx, JAC_ERR_VALUE);
    tu_assert_contains(jac_errmsg(ctx), "tensor_get: index 3");
    jac_clear_error(ctx);
    assert_true(isnan(jac_tensor_get(three, NULL)));
    tu_assert_error(ctx, JAC_ERR_NULL_ARG);
    jac_clear_error(ctx);
    assert_true(jac_tensor_get(three, TU_SHAPE(2)) == 3.0);
    tu_assert_no_error(ctx);
}

/* ---------------------------------------------------------------------- */
/* Values replaced in place                                                */
/* ---------------------------------------------------------------------- */

static void test_fill_replaces_values_and_keeps_the_tensor(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *w = tu_leaf(ctx, TU_SHAPE(2, 3), TU_VALUES(1, 2, 3, 4, 5, 6));
    jac_tensor *view = jac_reshape(ctx, w, 1, TU_SHAPE(6)); /* shares */
    tu_assert_ok(ctx, jac_tensor_fill(w, TU_VALUES(6, 5, 4, 3, 2, 1)));
    tu_assert_tensor(w, TU_SHAPE(2, 3), TU_VALUES(6, 5, 4, 3, 2, 1), 0.0);
    assert_true(jac_requires_grad(w) && jac_is_leaf(w));
    /* The view made before keeps the values it was made with. */
    tu_assert_tensor(view, TU_SHAPE(6), TU_VALUES(1, 2, 3, 4, 5, 6), 0.0);
    jac_tensor *z = jac_zeros(ctx, 2, TU_SHAPE(2, 3));
    tu_assert_ok(ctx, jac_tensor_assign(w, jac_add(ctx, w, w)));
    tu_assert_tensor(w, TU_SHAPE(2, 3), TU_VALUES(12, 10, 8, 6, 4, 2), 0.0);
    tu_assert_ok(ctx, jac_tensor_assign(z, w));
    tu_assert_tensor(z, TU_SHAPE(2, 3), TU_VALUES(12, 10, 8, 6, 4, 2), 0.0);
}

static void test_fill_refuses_op_results_and_other_shapes(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *w = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1, 2));
    jac_tensor *y = jac_exp(ctx, w);
    assert_int_equal(jac_tensor_fill(y, TU_VALUES(0, 0)), JAC_ERR_STATE);
    tu_assert_contains(jac_errmsg(ctx), "not a leaf");
    jac_clear_error(ctx);
    assert_int_equal(jac_tensor_assign(w, jac_zeros(ctx, 1, TU_SHAPE(3))),
                     JAC_ERR_SHAPE);
    tu_assert_contains(jac_errmsg(ctx), "src has shape (3), the tensor (2)");
    jac_clear_error(ctx);
    assert_int_equal(jac_tensor_fill(w, NULL), JAC_ERR_NULL_ARG);
    jac_clear_error(ctx);
    tu_assert_tensor(w, TU_SHAPE(2), TU_VALUES(1, 2), 0.0);
}

/* ---------------------------------------------------------------------- */
/* Copies and leaves                                                       */
/* ---------------------------------------------------------------------- */

static void test_copy_has_the_same_values_in_new_storage(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *t = tu_leaf(ctx, TU_SHAPE(3), TU_VALUES(1, 2, 3));
    jac_tensor *c = jac_tensor_copy(ctx, t);
    assert_non_null(c);
    assert_ptr_not_equal(c, t);
    assert_ptr_not_equal(jac_tensor_data(c), jac_tensor_data(t));
    tu_assert_tensor(c, TU_SHAPE(3), TU_VALUES(1, 2, 3), 0.0);
    assert_true(jac_is_leaf(c));
    assert_false(jac_requires_grad(c));
}

static void test_detach_cuts_a_result_from_the_graph(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(2, 3));
    jac_tensor *y = jac_mul(ctx, x, x);
    assert_true(jac_requires_grad(y));
    assert_false(jac_is_leaf(y));
    jac_tensor *d = jac_detach(ctx, y);
    tu_assert_tensor(d, TU_SHAPE(2), TU_VALUES(4, 9), 0.0);
    assert_true(jac_is_leaf(d));
    assert_false(jac_requires_grad(d));
    jac_tensor *r0 = jac_detach(ctx, jac_sum(ctx, y));
    tu_assert_scalar(r0, 13, 0.0);
}

static void test_requires_grad_is_set_on_leaves_only(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(1, 2));
    assert_false(jac_requires_grad(x));
    assert_int_equal(jac_set_requires_grad(x, true), JAC_OK);
    assert_true(jac_requires_grad(x));
    jac_tensor *y = jac_exp(ctx, x);
    assert_true(jac_requires_grad(y));
    assert_int_equal(jac_set_requires_grad(y, false), JAC_ERR_STATE);
    tu_assert_error(ctx, JAC_ERR_STATE);
    jac_clear_error(ctx);
    assert_int_equal(jac_set_requires_grad(x, false), JAC_OK);
    assert_false(jac_requires_grad(x));
    assert_false(jac_requires_grad(jac_exp(ctx, x)));
    assert_int_equal(jac_set_requires_grad(NULL, true), JAC_ERR_NULL_ARG);
}

static void test_grad_enabled_switch_returns_the_previous_setting(void **state)
{
    jac_ctx *ctx = *state;
    assert_true(jac_is_grad_enabled(ctx));
    assert_true(jac_set_grad_enabled(ctx, false));
    assert_false(jac_is_grad_enabled(ctx));
    assert_false(jac_set_grad_enabled(ctx, true));
    assert_true(jac_is_grad_enabled(ctx));
}

/* ---------------------------------------------------------------------- */
/* Printing                                                                */
/* ---------------------------------------------------------------------- */

/* What jac_tensor_print writes, without one trailing newline. */
static char *printed(const jac_tensor *t)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(jac_tensor_print(t, f), JAC_OK);
    long size = ftell(f);
    assert_true(size >= 0);
    rewind(f);
    char *text = calloc((size_t)size + 1, 1);
    assert_non_null(text);
    size_t got = fread(text, 1, (size_t)size, f);
    fclose(f);
    assert_int_equal(got, (size_t)size);
    if (size > 0 && text[size - 1] == '\n') {
        text[size - 1] = '\0';
    }
    return text;
}

#define assert_printed(t, want)                                                \
    do {                                                                       \
        char *text_ = printed(t);                                              \
        if (strcmp(text_, (want)) != 0) {                                      \
            print_error("printed \"%s\", want \"%s\"\n", text_, (want));       \
            free(text_);                                                       \
            fail();                                                            \
        }                                                                      \
        free(text_);                                                           \
    } while (0)

static void test_print_matrix_on_one_line(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *t = tu_tensor(ctx, TU_SHAPE(2, 2), TU_VALUES(4, 0, 0, 6));
    assert_printed(t, "[[4, 0], [0, 6]]");
}

static void test_print_rank_0_is_the_bare_number(void **state)
{
    jac_ctx *ctx = *state;
    assert_printed(jac_scalar(ctx, 5), "5");
}

static void test_print_rank_1_and_fractions(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *t = tu_tensor(ctx, TU_SHAPE(3), TU_VALUES(1, 2.5, -3));
    assert_printed(t, "[1, 2.5, -3]");
}

static void test_print_rank_3_nests_brackets(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *t =
        tu_tensor(ctx, TU_SHAPE(2, 2, 2), TU_VALUES(1, 2, 3, 4, 5, 6, 7, 8));
    assert_printed(t, "[[[1, 2], [3, 4]], [[5, 6], [7, 8]]]");
}

static void test_print_of_an_empty_tensor_is_empty_brackets(void **state)
{
    jac_ctx *ctx = *state;
    assert_printed(jac_zeros(ctx, 1, TU_SHAPE(0)), "[]");
}

static void test_print_of_a_long_tensor_uses_several_lines(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *t = jac_full(ctx, 2, TU_SHAPE(4, 40), 1.0 / 3.0);
    char *text = printed(t);
    assert_non_null(strchr(text, '\n'));
    assert_true(text[0] == '[' && text[1] == '[');
    assert_true(text[strlen(text) - 1] == ']');
    free(text);
}

static void test_print_rejects_null_arguments(void **state)
{
    jac_ctx *ctx = *state;
    assert_int_equal(jac_tensor_print(NULL, stdout), JAC_ERR_NULL_ARG);
    assert_int_equal(jac_tensor_print(jac_scalar(ctx, 1), NULL),
                     JAC_ERR_NULL_ARG);
}

/* ---------------------------------------------------------------------- */
/* Limits                                                                  */
/* ---------------------------------------------------------------------- */

static void test_every_rank_from_0_to_8_works(void **state)
{
    jac_ctx *ctx = *state;
    const int64_t shape[JAC_MAX_DIMS] = {2, 1, 2, 1, 2, 1, 2, 1};
    for (int ndim = 0; ndim <= JAC_MAX_DIMS; ++ndim) {
        jac_tensor *t = jac_ones(ctx, ndim, shape);
        assert_non_null(t);
        assert_int_equal(jac_tensor_ndim(t), ndim);
        int64_t numel = 1;
        for (int i = 0; i < ndim; ++i) {
            numel *= shape[i];
        }
        assert_int_equal(jac_tensor_numel(t), numel);
        /* And ops keep working on it. */
        jac_tensor *s = jac_sum(ctx, jac_mul_scalar(ctx, t, 2.0));
        tu_assert_scalar(s, 2.0 * (double)numel, 0.0);
    }
    tu_assert_no_error(ctx);
}

static void test_rank_9_fails_with_rank_error(void **state)
{
    jac_ctx *ctx = *state;
    const int64_t shape[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    assert_null(jac_tensor_new(ctx, 9, shape, NULL));
    tu_assert_error(ctx, JAC_ERR_RANK);
    jac_clear_error(ctx);
    assert_null(jac_zeros(ctx, 9, shape));
    tu_assert_error(ctx, JAC_ERR_RANK);
    jac_clear_error(ctx);
    assert_null(jac_tensor_new(ctx, -1, shape, NULL));
    tu_assert_error(ctx, JAC_ERR_RANK);
}

static void test_negative_extent_fails_with_value_error(void **state)
{
    jac_ctx *ctx = *state;
    assert_null(jac_tensor_new(ctx, 2, TU_SHAPE(2, -3), NULL));
    tu_assert_error(ctx, JAC_ERR_VALUE);
    jac_clear_error(ctx);
    assert_null(jac_ones(ctx, 1, TU_SHAPE(-1)));
    tu_assert_error(ctx, JAC_ERR_VALUE);
}

static void test_extents_whose_product_overflows_fail(void **state)
{
    jac_ctx *ctx = *state;
    const int64_t big = (int64_t)1 << 32;
    assert_null(jac_tensor_new(ctx, 2, TU_SHAPE(big, big), NULL));
    tu_assert_error(ctx, JAC_ERR_OVERFLOW);
    jac_clear_error(ctx);
    assert_null(jac_zeros(ctx, 3, TU_SHAPE(INT64_MAX / 2, 2, 2)));
    tu_assert_error(ctx, JAC_ERR_OVERFLOW);
    jac_clear_error(ctx);
    /* 2^62 elements fit in int64 but their bytes do not fit in size_t. */
    const int64_t half = (int64_t)1 << 31;
    assert_null(jac_zeros(ctx, 2, TU_SHAPE(half, half)));
    jac_status code = jac_errcode(ctx);
    assert_true(code == JAC_ERR_OVERFLOW || code == JAC_ERR_NO_MEMORY);
}

static void test_null_shape_with_positive_rank_fails(void **state)
{
    jac_ctx *ctx = *state;
    assert_null(jac_tensor_new(ctx, 2, NULL, NULL));
    tu_assert_error(ctx, JAC_ERR_NULL_ARG);
}

static void test_null_context_returns_null(void **state)
{
    (void)state;
    assert_null(jac_tensor_new(NULL, 1, TU_SHAPE(2), NULL));
    assert_null(jac_zeros(NULL, 1, TU_SHAPE(2)));
    assert_null(jac_scalar(NULL, 1.0));
    assert_null(jac_eye(NULL, 2));
    assert_null(jac_arange(NULL, 0, 1, 1));
}

/* ---------------------------------------------------------------------- */
/* Allocator hooks                                                         */
/* ---------------------------------------------------------------------- */

typedef struct counting_allocator {
    size_t allocs;
    size_t frees;
    size_t fail_after; /* 0: never fail */
} counting_allocator;

static void *counting_alloc(size_t size, void *user)
{
    counting_allocator *a = user;
    if (a->fail_after != 0 && a->allocs >= a->fail_after) {
        return NULL;
    }
    a->allocs++;
    return malloc(size);
}

static void counting_free(void *ptr, void *user)
{
    counting_allocator *a = user;
    if (ptr != NULL) {
        a->frees++;
    }
    free(ptr);
}

static void test_allocator_hooks_see_every_allocation(void **state)
{
    (void)state;
    counting_allocator counts = {0, 0, 0};
    jac_allocator hooks = {counting_alloc, counting_free, &counts};
    jac_ctx *ctx = jac_ctx_new_with_allocator(&hooks);
    assert_non_null(ctx);
    jac_tensor *x = jac_scalar(ctx, 2.0);
    jac_set_requires_grad(x, true);
    jac_tensor *y = jac_mul(ctx, jac_exp(ctx, x), x);
    jac_tensor *g = NULL;
    assert_int_equal(jac_grad(ctx, 1, &y, NULL, 1, &x, 0, &g), JAC_OK);
    /* d/dx x e^x = (1 + x) e^x */
    tu_assert_scalar(g, 3.0 * exp(2.0), 1e-12);
    assert_true(counts.allocs > 0);
    assert_true(jac_ctx_memory(ctx) > 0);
    jac_ctx_free(ctx);
    assert_int_equal(counts.allocs, counts.frees);
}

static void test_failed_allocation_is_an_error_not_a_crash(void **state)
{
    (void)state;
    /* Let the context itself be made, then fail sooner or later; every
     * failure must be a NULL with JAC_ERR_NO_MEMORY. */
    for (size_t limit = 1; limit < 40; ++limit) {
        counting_allocator counts = {0, 0, limit};
        jac_allocator hooks = {counting_alloc, counting_free, &counts};
        jac_ctx *ctx = jac_ctx_new_with_allocator(&hooks);
        if (ctx == NULL) {
            assert_int_equal(counts.allocs, counts.frees);
            continue;
        }
        jac_tensor *big = jac_zeros(ctx, 2, TU_SHAPE(64, 64));
        jac_tensor *r = jac_matmul(ctx, big, big);
        jac_tensor *s = jac_sum(ctx, jac_exp(ctx, r));
        if (s == NULL) {
            assert_int_equal(jac_errcode(ctx), JAC_ERR_NO_MEMORY);
        } else {
            tu_assert_scalar(s, 64.0 * 64.0, 0.0);
        }
        jac_ctx_free(ctx);
        assert_int_equal(counts.allocs, counts.frees);
    }
}

/* ---------------------------------------------------------------------- */
/* Version and status strings                                              */
/* ---------------------------------------------------------------------- */

static void test_version_macros_equal_the_runtime_calls(void **state)
{
    (void)state;
    assert_int_equal(jac_version_number(), JAC_VERSION_NUMBER);
    assert_string_equal(jac_version_string(), JAC_VERSION_STRING);
    char built[32];
    snprintf(built, sizeof built, "%d.%d.%d", JAC_VERSION_MAJOR,
             JAC_VERSION_MINOR, JAC_VERSION_PATCH);
    assert_string_equal(jac_version_string(), built);
}

static void test_status_strings_and_names_follow_the_table(void **state)
{
    (void)state;
#define CHECK_STATUS(name, value, text)                                        \
    assert_int_equal((int)(name), (value));                                    \
    assert_string_equal(jac_status_name(name), #name);                         \
    assert_string_equal(jac_status_string(name), (text));
    JAC_STATUS_TABLE(CHECK_STATUS)
#undef CHECK_STATUS
    assert_string_equal(jac_status_string(JAC_ERR_SHAPE),
                        "shapes do not match");
    assert_string_equal(jac_status_name(JAC_ERR_RELEASED), "JAC_ERR_RELEASED");
    /* A value outside the table still gets a string. */
    assert_non_null(jac_status_string((jac_status)999));
    assert_non_null(jac_status_name((jac_status)999));
    assert_non_null(jac_status_string((jac_status)-1));
}

static void test_a_fresh_context_has_no_error(void **state)
{
    jac_ctx *ctx = *state;
    assert_int_equal(jac_errcode(ctx), JAC_OK);
    assert_non_null(jac_errmsg(ctx));
    assert_string_equal(jac_errmsg(ctx), "");
    assert_int_equal(jac_ctx_tape_length(ctx), 0);
    jac_ctx_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_tensor_new_copies_the_data),
        TU_TEST(test_tensor_new_with_null_data_is_zeros),
        TU_TEST(test_zeros_ones_and_full_fill_every_element),
        TU_TEST(test_eye_is_the_identity),
        TU_TEST(test_eye_of_negative_size_fails),
        TU_TEST(test_arange_counts_up_to_but_excluding_stop),
        TU_TEST(test_arange_with_negative_step_counts_down),
        TU_TEST(test_arange_with_fractional_step),
        TU_TEST(test_arange_of_an_empty_range_is_empty),
        TU_TEST(test_arange_with_zero_or_non_finite_step_fails),
        TU_TEST(test_scalar_is_rank_0_with_one_element),
        TU_TEST(test_zero_extent_gives_an_empty_tensor),
        TU_TEST(test_shape_ndim_numel_and_dim_describe_the_tensor),
        TU_TEST(test_queries_on_null_return_the_documented_values),
        TU_TEST(test_get_reads_row_major_elements),
        TU_TEST(test_get_out_of_range_is_nan),
        TU_TEST(test_item_reads_one_element_tensors_only),
        TU_TEST(test_item_and_get_misuse_is_recorded_in_the_context),
        TU_TEST(test_fill_replaces_values_and_keeps_the_tensor),
        TU_TEST(test_fill_refuses_op_results_and_other_shapes),
        TU_TEST(test_copy_has_the_same_values_in_new_storage),
        TU_TEST(test_detach_cuts_a_result_from_the_graph),
        TU_TEST(test_requires_grad_is_set_on_leaves_only),
        TU_TEST(test_grad_enabled_switch_returns_the_previous_setting),
        TU_TEST(test_print_matrix_on_one_line),
        TU_TEST(test_print_rank_0_is_the_bare_number),
        TU_TEST(test_print_rank_1_and_fractions),
        TU_TEST(test_print_rank_3_nests_brackets),
        TU_TEST(test_print_of_an_empty_tensor_is_empty_brackets),
        TU_TEST(test_print_of_a_long_tensor_uses_several_lines),
        TU_TEST(test_print_rejects_null_arguments),
        TU_TEST(test_every_rank_from_0_to_8_works),
        TU_TEST(test_rank_9_fails_with_rank_error),
        TU_TEST(test_negative_extent_fails_with_value_error),
        TU_TEST(test_extents_whose_product_overflows_fail),
        TU_TEST(test_null_shape_with_positive_rank_fails),
        TU_TEST(test_null_context_returns_null),
        TU_TEST(test_allocator_hooks_see_every_allocation),
        TU_TEST(test_failed_allocation_is_an_error_not_a_crash),
        TU_TEST(test_version_macros_equal_the_runtime_calls),
        TU_TEST(test_status_strings_and_names_follow_the_table),
        TU_TEST(test_a_fresh_context_has_no_error),
    };
    return cmocka_run_group_tests_name("tensor", tests, NULL, NULL);
}
