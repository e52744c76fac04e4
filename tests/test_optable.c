/*
 * The op table, row by row: every recorded op of src/ops/ops.h is reached
 * by some row of tests/op_rows.h, and for every row the first and second
 * derivatives match finite differences, every Jacobian mode (blocks,
 * forward, threads, create-graph) matches the row loop, the raw kernels of
 * an unrecorded pass match the differentiable rules (bitwise where the
 * description of an elementwise op promises it), a NULL context or input gives
 * NULL with the first error kept, and every allocation of the row and its
 * gradient may fail cleanly. Every node the row and its gradient record,
 * applied anew (jac__ops[op].apply) to its inputs or to copies of other
 * values, gives the recorded output bit for bit.
 *
 * SPDX-License-Identifier: MIT
 */
#include "batchcheck.h"
#include "op_rows.h"
#include "testutil.h"

#include "ops/ops.h"

OP_ROWS_TABLE

/* The row's inputs: leaves of its shapes with values spread over (lo, hi)
 * by a smooth, non-repeating function of the flat index, shifted by phase
 * (other values of the same kind for another phase). */
static int make_inputs_at(jac_ctx *ctx, const op_row *r, double phase,
                          jac_tensor **in)
{
    const char *p = r->shapes;
    for (int k = 0; k < r->nin; k++) {
        int64_t shape[JAC_MAX_DIMS];
        int ndim = 0;
        while (*p == ' ')
            p++;
        if (*p == '-') {
            p++;
        } else {
            while (*p >= '0' && *p <= '9') {
                shape[ndim++] = strtoll(p, (char **)&p, 10);
                if (*p == ',')
                    p++;
            }
        }
        int64_t numel = 1;
        for (int i = 0; i < ndim; i++)
            numel *= shape[i];
        double values[64];
        assert_true(numel <= 64);
        for (int64_t i = 0; i < numel; i++)
            values[i] =
                r->lo +
                (r->hi - r->lo) *
                    (0.5 + 0.45 * sin(0.9 * (double)i + 0.31 * (double)(i * i) +
                                      1.7 * (double)k + 0.3 + phase));
        in[k] = jac_tensor_new(ctx, ndim, shape, values);
        if (in[k] == NULL || jac_set_requires_grad(in[k], true) != JAC_OK) {
            print_error("%s: inputs: %s\n", r->label, jac_errmsg(ctx));
            return -1;
        }
    }
    return 0;
}

static int make_inputs(jac_ctx *ctx, const op_row *r, jac_tensor **in)
{
    return make_inputs_at(ctx, r, 0.0, in);
}

/* Marks every op on the tape of ctx as seen. */
static void note_tape(const jac_ctx *ctx, bool *seen)
{
    for (size_t i = 0; i < ctx->nnodes; i++)
        seen[jac__node_at(ctx, (int64_t)i)->op] = true;
}

/* Whether every node on the tape from index first is elementwise with inputs of
 * its output's size: then the raw kernels and the rules compute the same
 * operations, and their results agree bitwise. */
static bool all_plain_elementwise(const jac_ctx *ctx, size_t first)
{
    for (size_t i = first; i < ctx->nnodes; i++) {
        const jac__node *n = jac__node_at(ctx, (int64_t)i);
        if (!jac__op_elementwise(n->op))
            return false;
        for (int j = 0; j < n->nin; j++)
            if (n->in[j]->numel != n->out->numel)
                return false;
    }
    return true;
}

/* The gradient of sum(w * y) without and with JAC_CREATE_GRAPH (raw
 * kernels against rules), bitwise. */
static void assert_raw_bitwise(jac_ctx *ctx, const op_row *r,
                               jac_tensor *const *in, jac_tensor *y)
{
    jac_tensor *seed = jac_ones(ctx, jac_tensor_ndim(y), jac_tensor_shape(y));
    assert_non_null(seed);
    jac_tensor *raw[3] = {0}, *rule[3] = {0};
    unsigned flags = JAC_RETAIN_GRAPH | JAC_ALLOW_UNUSED;
    tu_assert_ok(ctx,
                 jac_grad(ctx, 1, &y, &seed, (size_t)r->nin, in, flags, raw));
    tu_assert_ok(ctx, jac_grad(ctx, 1, &y, &seed, (size_t)r->nin, in,
                               flags | JAC_CREATE_GRAPH, rule));
    for (int k = 0; k < r->nin; k++) {
        if (raw[k] == NULL && rule[k] == NULL)
            continue;
        assert_non_null(raw[k]);
        assert_non_null(rule[k]);
        int64_t n = jac_tensor_numel(rule[k]);
        assert_int_equal(jac_tensor_numel(raw[k]), n);
        if (memcmp(jac_tensor_data(raw[k]), jac_tensor_data(rule[k]),
                   (size_t)n * sizeof(double)) != 0) {
            print_error("%s: input %d: the raw kernel and the rule differ\n",
                        r->label, k);
            fail();
        }
    }
}

static void
test_every_row_matches_finite_differences_and_its_rules(void **state)
{
    jac_ctx *ctx = *state;
    for (size_t i = 0; i < TU_COUNT(op_rows_table); i++) {
        const op_row *r = &op_rows_table[i];
        jac_scope mark = jac_scope_begin(ctx);
        jac_tensor *in[3] = {0};
        assert_int_equal(make_inputs(ctx, r, in), 0);
        print_message("%s\n", r->label);
        tu_check_derivatives(ctx, op_rows_run, (void *)r, (size_t)r->nin, in,
                             1);
        tu_assert_fused_matches_rules_at(ctx, op_rows_run, (void *)r,
                                         (size_t)r->nin, in, 1, __FILE__,
                                         __LINE__);
        tu_assert_modes_agree_at(ctx, op_rows_run, (void *)r, (size_t)r->nin,
                                 in, 1, __FILE__, __LINE__);
        jac_scope inner = jac_scope_begin(ctx);
        jac_tensor *y = r->call(ctx, in);
        tu_assert_no_error(ctx);
        if (all_plain_elementwise(ctx, inner.nodes))
            assert_raw_bitwise(ctx, r, in, y);
        tu_assert_ok(ctx, jac_scope_end(ctx, inner, NULL, 0));
        tu_assert_ok(ctx, jac_scope_end(ctx, mark, NULL, 0));
    }
}

/* Every op, including those only the rules of others record (expand,
 * slice_scatter, ...), appears on the tape of a row or of its gradient
 * built with JAC_CREATE_GRAPH. */
static void test_every_op_of_the_table_is_reached_by_a_row(void **state)
{
    jac_ctx *ctx = *state;
    bool seen[JAC__OP_COUNT] = {false};
    for (size_t i = 0; i < TU_COUNT(op_rows_table); i++) {
        const op_row *r = &op_rows_table[i];
        jac_scope mark = jac_scope_begin(ctx);
        jac_tensor *in[3] = {0}, *g[3] = {0};
        assert_int_equal(make_inputs(ctx, r, in), 0);
        jac_tensor *y = jac_sum(ctx, jac_sin(ctx, r->call(ctx, in)));
        tu_assert_no_error(ctx);
        tu_assert_ok(ctx, jac_grad(ctx, 1, &y, NULL, (size_t)r->nin, in,
                                   JAC_CREATE_GRAPH | JAC_ALLOW_UNUSED, g));
        note_tape(ctx, seen);
        tu_assert_ok(ctx, jac_scope_end(ctx, mark, NULL, 0));
    }
    int missing = 0;
    for (int op = 0; op < JAC__OP_COUNT; op++) {
        if (!seen[op]) {
            print_error("op '%s' of src/ops/ops.h is reached by no row of "
                        "tests/op_rows.h: add one\n",
                        jac__ops[op].name);
            missing++;
        }
    }
    assert_int_equal(missing, 0);
}

/* NULL for the context or for any input: NULL back and the error kept. */
static void test_null_arguments_give_null_and_keep_the_first_error(void **state)
{
    jac_ctx *ctx = *state;
    for (size_t i = 0; i < TU_COUNT(op_rows_table); i++) {
        const op_row *r = &op_rows_table[i];
        jac_scope mark = jac_scope_begin(ctx);
        jac_tensor *in[3] = {0};
        assert_int_equal(make_inputs(ctx, r, in), 0);
        assert_null(r->call(NULL, in));
        for (int k = 0; k < r->nin; k++) {
            jac_tensor *held = in[k];
            in[k] = NULL;
            jac_clear_error(ctx);
            if (r->call(ctx, in) != NULL) {
                print_error("%s: NULL input %d gave a tensor\n", r->label, k);
                fail();
            }
            tu_assert_error(ctx, JAC_ERR_NULL_ARG);
            in[k] = held;
        }
        jac_clear_error(ctx);
        tu_assert_ok(ctx, jac_scope_end(ctx, mark, NULL, 0));
    }
}

/* An allocator that refuses the k-th request (counting from 1) and every
 * one after it, and counts what is outstanding. */
typedef struct refusing {
    size_t calls, fail_at, live;
} refusing;

static void *refusing_alloc(size_t size, void *user)
{
    refusing *r = user;
    if (r->fail_at > 0 && ++r->calls >= r->fail_at)
        return NULL;
    void *p = malloc(size);
    r->live += p != NULL;
    return p;
}

static void refusing_free(void *ptr, void *user)
{
    refusing *r = user;
    r->live -= ptr != NULL;
    free(ptr);
}

/* Runs the row and its gradient with create-graph in a fresh context whose
 * allocator refuses from the k-th request on (0: never). Returns the status
 * of the run; the context is freed and must hold nothing. */
static jac_status run_refusing(const op_row *r, size_t k)
{
    refusing a = {0, 0, 0};
    jac_allocator hooks = {refusing_alloc, refusing_free, &a};
    jac_ctx *ctx = jac_ctx_new_with_allocator(&hooks);
    assert_non_null(ctx);
    jac_tensor *in[3] = {0}, *g[3] = {0};
    assert_int_equal(make_inputs(ctx, r, in), 0);
    a.fail_at = k;
    jac_tensor *y = jac_sum(ctx, r->call(ctx, in));
    jac_status st = y ? jac_grad(ctx, 1, &y, NULL, (size_t)r->nin, in,
                                 JAC_CREATE_GRAPH | JAC_ALLOW_UNUSED, g)
                      : jac_errcode(ctx);
    if (st != JAC_OK && st != JAC_ERR_NO_MEMORY) {
        print_error("%s: allocation %zu refused: %s\n", r->label, k,
                    jac_errmsg(ctx));
        fail();
    }
    jac_ctx_free(ctx);
    assert_int_equal(a.live, 0);
    return st;
}

/* Every allocation an op makes, forward and backward, is refused in turn:
 * each refusal is a clean out-of-memory error that leaks nothing. */
static void test_every_allocation_of_every_row_may_fail(void **state)
{
    (void)state;
    for (size_t i = 0; i < TU_COUNT(op_rows_table); i++) {
        size_t k = 1;
        while (run_refusing(&op_rows_table[i], k) == JAC_ERR_NO_MEMORY)
            k++;
        assert_true(k > 1); /* some allocation was refused */
        print_message("%s: %zu allocation points\n", op_rows_table[i].label,
                      k - 1);
    }
}

/* ------------------------------------------------------------------------ */
/* Applying a node anew (jac__ops[op].apply)                                */
/* ------------------------------------------------------------------------ */

/* The flags of the gradient whose tape the apply tests walk as well: it
 * reaches the ops that only rules record (expand, slice_scatter, ...). */
#define APPLY_GRAD_FLAGS                                                       \
    (JAC_CREATE_GRAPH | JAC_RETAIN_GRAPH | JAC_ALLOW_UNUSED)

/* Records the row on inputs of the given phase, and the gradient of
 * sum(sin(row)) with create-graph; *first is the index of the first node
 * they recorded (the last is ctx->nnodes - 1). Returns the status. */
static jac_status record_row(jac_ctx *ctx, const op_row *r, double phase,
                             size_t *first)
{
    jac_tensor *in[3] = {0}, *g[3] = {0};
    if (make_inputs_at(ctx, r, phase, in) != 0)
        return jac_errcode(ctx);
    *first = ctx->nnodes;
    jac_tensor *y = jac_sum(ctx, jac_sin(ctx, r->call(ctx, in)));
    return y ? jac_grad(ctx, 1, &y, NULL, (size_t)r->nin, in, APPLY_GRAD_FLAGS,
                        g)
             : jac_errcode(ctx);
}

/* Whether t has ref's shape and, bit for bit, its values. */
static bool same_bits(const jac_tensor *t, const jac_tensor *ref)
{
    return t->ndim == ref->ndim &&
           memcmp(t->shape, ref->shape, (size_t)t->ndim * sizeof(int64_t)) ==
               0 &&
           (t->numel == 0 ||
            memcmp(t->data, ref->data, (size_t)t->numel * sizeof(double)) == 0);
}

/* Applies node n of the row's tape (tape index index) to ins, which must
 * give ref bit for bit and, when an input requires gradients, record one
 * node: n's op on ins, with parameters that apply again to the same bits. */
static void assert_apply(jac_ctx *ctx, const op_row *r, size_t index,
                         const jac__node *n, jac_tensor *const *ins,
                         const jac_tensor *ref, const char *what)
{
    const char *name = jac__ops[n->op].name;
    size_t before = ctx->nnodes;
    bool records = jac__should_record(ctx, n->nin, ins);
    jac_tensor *t = jac__ops[n->op].apply(ctx, n, ins);
    if (t == NULL || !same_bits(t, ref)) {
        print_error(
            "%s: node %zu ('%s') applied to %s: %s\n", r->label, index, name,
            what, t ? "not the recorded output, bit for bit" : jac_errmsg(ctx));
        fail();
    }
    if (ctx->nnodes != before + (records ? 1u : 0u)) {
        print_error("%s: node %zu ('%s') applied to %s recorded %zu nodes\n",
                    r->label, index, name, what, ctx->nnodes - before);
        fail();
    }
    if (!records)
        return;
    const jac__node *m = jac__node_at(ctx, (int64_t)before);
    assert_int_equal(m->op, n->op);
    assert_int_equal(m->nin, n->nin);
    assert_ptr_equal(m->out, t);
    for (int j = 0; j < n->nin; j++)
        if (ins[j]->requires_grad)
            assert_ptr_equal(m->in[j], ins[j]);
    jac_tensor *again = jac__ops[m->op].apply(ctx, m, ins);
    if (again == NULL || !same_bits(again, ref)) {
        print_error("%s: node %zu ('%s'): the node its apply recorded applies "
                    "to other values\n",
                    r->label, index, name);
        fail();
    }
}

/* Fresh leaves with the values of ins (n of them), each requiring
 * gradients where its original does. */
static void copy_inputs(jac_ctx *ctx, int n, jac_tensor *const *ins,
                        jac_tensor **copies)
{
    for (int j = 0; j < n; j++) {
        const jac_tensor *x = ins[j];
        copies[j] = jac_tensor_new(ctx, x->ndim, x->shape, x->data);
        assert_non_null(copies[j]);
        if (x->requires_grad)
            tu_assert_ok(ctx, jac_set_requires_grad(copies[j], true));
    }
}

/* For every row: each node that the row and its create-graph gradient
 * record, applied to its own inputs, gives its output bitwise (recording
 * on and off); applied to fresh copies of the inputs of the same node of a
 * second recording on other values, it gives that node's output bitwise.
 * And every op of the table is applied by some row. */
static void test_every_node_applies_anew_bitwise(void **state)
{
    jac_ctx *ctx = *state;
    bool seen[JAC__OP_COUNT] = {false};
    for (size_t i = 0; i < TU_COUNT(op_rows_table); i++) {
        const op_row *r = &op_rows_table[i];
        jac_scope mark = jac_scope_begin(ctx);
        size_t first = 0, first2 = 0;
        tu_assert_ok(ctx, record_row(ctx, r, 0.0, &first));
        size_t count = ctx->nnodes - first;
        tu_assert_ok(ctx, record_row(ctx, r, 1.1, &first2));
        if (ctx->nnodes - first2 != count) {
            print_error("%s: other values record %zu nodes, not %zu\n",
                        r->label, ctx->nnodes - first2, count);
            fail();
        }
        for (size_t k = 0; k < count; k++) {
            const jac__node *n = jac__node_at(ctx, (int64_t)(first + k));
            const jac__node *n2 = jac__node_at(ctx, (int64_t)(first2 + k));
            assert_int_equal(n2->op, n->op);
            assert_int_equal(n2->nin, n->nin);
            seen[n->op] = true;
            jac_scope inner = jac_scope_begin(ctx);
            assert_apply(ctx, r, k, n, n->in, n->out, "its own inputs");
            bool was = jac_set_grad_enabled(ctx, false);
            assert_apply(ctx, r, k, n, n->in, n->out,
                         "its own inputs, recording off");
            jac_set_grad_enabled(ctx, was);
            jac_tensor *copies[8];
            assert_true(n->nin <= 8);
            copy_inputs(ctx, n2->nin, n2->in, copies);
            assert_apply(ctx, r, k, n, copies, n2->out,
                         "copies of other values");
            tu_assert_no_error(ctx);
            tu_assert_ok(ctx, jac_scope_end(ctx, inner, NULL, 0));
        }
        tu_assert_ok(ctx, jac_scope_end(ctx, mark, NULL, 0));
    }
    int missing = 0;
    for (int op = 0; op < JAC__OP_COUNT; op++) {
        if (!seen[op]) {
            print_error("op '%s' of src/ops/ops.h is applied by no row of "
                        "tests/op_rows.h: add one\n",
                        jac__ops[op].name);
            missing++;
        }
    }
    assert_int_equal(missing, 0);
}

/* Takes the blocks that ctx's pools hold aside, so that what follows
 * allocates afresh (the gradient leaves its temporaries there, which would
 * serve every apply), and gives them back (for jac_ctx_free). */
static void take_pools(jac_ctx *ctx, void **aside)
{
    for (int k = 0; k < JAC__POOL_CLASSES; k++) {
        aside[k] = ctx->pool[k];
        ctx->pool[k] = NULL;
    }
}

static void give_pools(jac_ctx *ctx, void *const *aside)
{
    for (int k = 0; k < JAC__POOL_CLASSES; k++) {
        void **last = aside[k];
        if (last == NULL)
            continue;
        while (*last != NULL)
            last = *last;
        *last = ctx->pool[k];
        ctx->pool[k] = aside[k];
    }
}

/* Records the row and its gradient in a fresh context, then applies every
 * node they recorded to its own inputs with the allocator refusing from
 * the k-th request on: the first failure must be a clean out-of-memory
 * error, and the context must hold nothing once freed. Returns the status
 * of the applies. */
static jac_status apply_refusing(const op_row *r, size_t k)
{
    refusing a = {0, 0, 0};
    jac_allocator hooks = {refusing_alloc, refusing_free, &a};
    jac_ctx *ctx = jac_ctx_new_with_allocator(&hooks);
    assert_non_null(ctx);
    size_t first = 0;
    tu_assert_ok(ctx, record_row(ctx, r, 0.0, &first));
    size_t last = ctx->nnodes;
    void *aside[JAC__POOL_CLASSES];
    take_pools(ctx, aside);
    a.fail_at = k;
    jac_status st = JAC_OK;
    for (size_t i = first; i < last && st == JAC_OK; i++) {
        const jac__node *n = jac__node_at(ctx, (int64_t)i);
        if (jac__ops[n->op].apply(ctx, n, n->in) == NULL)
            st = jac_errcode(ctx);
    }
    if (st != JAC_OK && st != JAC_ERR_NO_MEMORY) {
        print_error("%s: allocation %zu of the applies refused: %s\n", r->label,
                    k, jac_errmsg(ctx));
        fail();
    }
    give_pools(ctx, aside);
    jac_ctx_free(ctx);
    assert_int_equal(a.live, 0);
    return st;
}

/* (A row of tensors of up to four elements, whose values sit in their
 * headers, may apply without allocating at all.) */
static void test_every_allocation_of_an_apply_may_fail(void **state)
{
    (void)state;
    size_t refused = 0;
    for (size_t i = 0; i < TU_COUNT(op_rows_table); i++) {
        size_t k = 1;
        while (apply_refusing(&op_rows_table[i], k) == JAC_ERR_NO_MEMORY)
            k++;
        refused += k - 1;
    }
    assert_true(refused > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_every_row_matches_finite_differences_and_its_rules),
        TU_TEST(test_every_op_of_the_table_is_reached_by_a_row),
        TU_TEST(test_null_arguments_give_null_and_keep_the_first_error),
        cmocka_unit_test(test_every_allocation_of_every_row_may_fail),
        TU_TEST(test_every_node_applies_anew_bitwise),
        cmocka_unit_test(test_every_allocation_of_an_apply_may_fail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
