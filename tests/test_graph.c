/*
 * The DOT export of the tape: which nodes are drawn, how they are labelled
 * (op, shape, leaves, released nodes, outputs and inputs), and that Graphviz
 * accepts the result when it is installed.
 *
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L /* open_memstream, mkstemp */

#include "testutil.h"

#include <ctype.h>
#include <stdlib.h>
#include <unistd.h>

/* The DOT text of an export, in a malloc'ed string (free it). */
static char *export_at(jac_ctx *ctx, size_t noutputs,
                       jac_tensor *const *outputs, size_t ninputs,
                       jac_tensor *const *inputs, const char *file, int line)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    if (f == NULL)
        tu_fail_at(file, line);
    jac_status st = jac_export_dot(ctx, noutputs, outputs, ninputs, inputs, f);
    fclose(f);
    tu_assert_ok_at(ctx, st, file, line);
    return text;
}
#define export(ctx, no, outs, ni, ins)                                         \
    export_at((ctx), (no), (outs), (ni), (ins), __FILE__, __LINE__)

/* What a DOT text holds, line by line. */
typedef struct dot_summary {
    int ops;         /* "    n<i> [label=...]" */
    int boxes;       /* "    t<seq> [shape=box, ...]" */
    int edges;       /* "    a -> b" */
    int released;    /* op nodes marked released */
    int leaves;      /* boxes of leaves */
    int grad_leaves; /* boxes of leaves that require gradients */
} dot_summary;

static dot_summary summarize(const char *text)
{
    dot_summary s = {0, 0, 0, 0, 0, 0};
    const char *line = text;
    while (line && *line) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char buf[512];
        snprintf(buf, sizeof buf, "%.*s", (int)(len < 511 ? len : 511), line);
        if (strstr(buf, " -> ")) {
            s.edges++;
        } else if (strncmp(buf, "    n", 5) == 0 &&
                   isdigit((unsigned char)buf[5])) {
            s.ops++;
            s.released += strstr(buf, "\\nreleased\"") != NULL;
        } else if (strncmp(buf, "    t", 5) == 0 &&
                   isdigit((unsigned char)buf[5])) {
            s.boxes++;
            s.leaves += strstr(buf, "label=\"leaf") != NULL ||
                        strstr(buf, "\\nleaf") != NULL;
            s.grad_leaves += strstr(buf, "leaf, requires grad") != NULL;
        }
        line = end ? end + 1 : NULL;
    }
    return s;
}

/* y = tanh(x W + b), loss = sum(y * y): 5 ops, 3 leaves. */
typedef struct small_net {
    jac_tensor *x, *W, *b, *y, *loss;
} small_net;

static small_net make_net(jac_ctx *ctx)
{
    small_net n;
    n.x = tu_tensor(ctx, TU_SHAPE(2, 3), TU_VALUES(1, 2, 3, 4, 5, 6));
    n.W = tu_leaf(ctx, TU_SHAPE(3, 4),
                  TU_VALUES(.1, .2, .3, .4, .5, .6, .7, .8, .9, 1, 1.1, 1.2));
    n.b = tu_leaf(ctx, TU_SHAPE(4), TU_VALUES(.1, -.1, .2, -.2));
    n.y = jac_tanh(ctx, jac_add(ctx, jac_matmul(ctx, n.x, n.W), n.b));
    n.loss = jac_sum(ctx, jac_mul(ctx, n.y, n.y));
    assert_non_null(n.loss);
    return n;
}

static void test_the_whole_tape_shows_every_op_with_its_shape(void **state)
{
    jac_ctx *ctx = *state;
    small_net n = make_net(ctx);
    char *dot = export(ctx, 0, NULL, 0, NULL);
    dot_summary s = summarize(dot);
    assert_int_equal(s.ops, 5);
    assert_int_equal((size_t)s.ops, jac_ctx_tape_length(ctx));
    assert_int_equal(s.boxes, 3);
    assert_int_equal(s.leaves, 3);
    assert_int_equal(s.grad_leaves, 2); /* W and b, not x */
    /* matmul 2, add 2, tanh 1, mul 2, sum 1 */
    assert_int_equal(s.edges, 8);
    assert_int_equal(s.released, 0);
    tu_assert_contains(dot, "digraph tape {");
    tu_assert_contains(dot, "// libjacobian tape: 5 nodes, 5 shown, 0 of them "
                            "released");
    tu_assert_contains(dot, "n0 [label=\"#0 matmul\\n(2, 4)\"]");
    tu_assert_contains(dot, "n1 [label=\"#1 add\\n(2, 4)\"]");
    tu_assert_contains(dot, "n2 [label=\"#2 tanh\\n(2, 4)\"]");
    tu_assert_contains(dot, "n3 [label=\"#3 mul\\n(2, 4)\"]");
    tu_assert_contains(dot, "n4 [label=\"#4 sum\\n()\"]");
    tu_assert_contains(dot, "label=\"leaf\\n(2, 3)\"");
    tu_assert_contains(dot, "label=\"leaf, requires grad\\n(3, 4)\"");
    tu_assert_contains(dot, "label=\"leaf, requires grad\\n(4)\"");
    /* y * y reads tanh twice, as operands 0 and 1. */
    tu_assert_contains(dot, "n2 -> n3 [headlabel=\"0\"];");
    tu_assert_contains(dot, "n2 -> n3 [headlabel=\"1\"];");
    tu_assert_contains(dot, "n3 -> n4;");
    assert_int_equal(dot[strlen(dot) - 2], '}');
    free(dot);
    (void)n;
}

static void test_a_backward_pass_marks_the_nodes_it_released(void **state)
{
    jac_ctx *ctx = *state;
    small_net n = make_net(ctx);
    jac_tensor *g = NULL;
    /* Retained: nothing released. */
    tu_assert_ok(
        ctx, jac_grad(ctx, 1, &n.loss, NULL, 1, &n.b, JAC_RETAIN_GRAPH, &g));
    char *dot = export(ctx, 0, NULL, 0, NULL);
    assert_int_equal(summarize(dot).released, 0);
    free(dot);
    /* The gradient in b goes through add, tanh, mul and sum, not matmul. */
    tu_assert_ok(ctx, jac_grad(ctx, 1, &n.loss, NULL, 1, &n.b, 0, &g));
    dot = export(ctx, 0, NULL, 0, NULL);
    dot_summary s = summarize(dot);
    assert_int_equal(s.ops, 5);
    assert_int_equal(s.released, 4);
    tu_assert_contains(dot, "n0 [label=\"#0 matmul\\n(2, 4)\"]");
    tu_assert_contains(dot, "#1 add\\n(2, 4)\\nreleased\", style=dashed");
    tu_assert_contains(dot, "4 of them released");
    free(dot);
}

static void test_outputs_select_the_nodes_that_lead_to_them(void **state)
{
    jac_ctx *ctx = *state;
    small_net n = make_net(ctx);
    /* A second, unrelated branch. */
    jac_tensor *other = jac_exp(ctx, jac_mul_scalar(ctx, n.W, 2.0));
    assert_non_null(other);
    assert_int_equal(jac_ctx_tape_length(ctx), 7);

    char *dot = export(ctx, 1, &n.loss, 0, NULL);
    dot_summary s = summarize(dot);
    assert_int_equal(s.ops, 5);
    assert_int_equal(s.boxes, 3);
    assert_null(strstr(dot, "exp"));
    tu_assert_contains(dot, "#4 sum\\n()\\noutput 0\", peripheries=2");
    tu_assert_contains(dot, "7 nodes, 5 shown");
    free(dot);

    dot = export(ctx, 1, &other, 0, NULL);
    s = summarize(dot);
    assert_int_equal(s.ops, 2);
    assert_int_equal(s.boxes, 1);
    tu_assert_contains(dot, "#5 affine\\n2 x + 0\\n(3, 4)");
    tu_assert_contains(dot, "#6 exp\\n(3, 4)\\noutput 0");
    free(dot);

    /* The hidden layer as output: matmul, add, tanh only. */
    dot = export(ctx, 1, &n.y, 0, NULL);
    assert_int_equal(summarize(dot).ops, 3);
    free(dot);
}

static void test_inputs_select_the_nodes_that_depend_on_them(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *a = tu_leaf(ctx, TU_SHAPE(3), TU_VALUES(1, 2, 3));
    jac_tensor *b = tu_leaf(ctx, TU_SHAPE(3), TU_VALUES(4, 5, 6));
    jac_tensor *fa = jac_sin(ctx, a);                     /* #0 */
    jac_tensor *fb = jac_cos(ctx, b);                     /* #1 */
    jac_tensor *sum = jac_sum(ctx, jac_add(ctx, fa, fb)); /* #2, #3 */
    assert_non_null(sum);

    /* From a to the sum: sin, add, sum; cos(b) is a value made outside. */
    char *dot = export(ctx, 1, &sum, 1, &a);
    dot_summary s = summarize(dot);
    assert_int_equal(s.ops, 3);
    assert_null(strstr(dot, "n1 ["));
    tu_assert_contains(dot, "label=\"input 0\\nleaf, requires grad\\n(3)\"");
    tu_assert_contains(dot, "label=\"value of #1 cos\\n(3)\"");
    tu_assert_contains(dot, "style=\"rounded,dotted\"");
    free(dot);

    /* Inputs alone: every node downstream of b. */
    dot = export(ctx, 0, NULL, 1, &b);
    s = summarize(dot);
    assert_int_equal(s.ops, 3);
    tu_assert_contains(dot, "#1 cos");
    assert_null(strstr(dot, "n0 ["));
    free(dot);

    /* An input that is itself a node output is labelled on its node. */
    dot = export(ctx, 1, &sum, 1, &fa);
    tu_assert_contains(dot, "value of #0 sin\\n(3)");
    tu_assert_contains(dot, "input 0\\nvalue of #0 sin");
    free(dot);
}

static void test_a_lone_leaf_output_and_an_empty_tape_are_drawn(void **state)
{
    jac_ctx *ctx = *state;
    char *dot = export(ctx, 0, NULL, 0, NULL);
    dot_summary s = summarize(dot);
    assert_int_equal(s.ops + s.boxes + s.edges, 0);
    tu_assert_contains(dot, "0 nodes, 0 shown");
    free(dot);

    jac_tensor *x = tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(1, 2));
    dot = export(ctx, 1, &x, 1, &x);
    s = summarize(dot);
    assert_int_equal(s.boxes, 1);
    tu_assert_contains(dot, "input 0, output 0\\nleaf\\n(2)");
    free(dot);
}

static void test_create_graph_passes_appear_on_the_tape(void **state)
{
    jac_ctx *ctx = *state;
    jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1, 2));
    jac_tensor *f = jac_sum(ctx, jac_pow_scalar(ctx, x, 3.0));
    jac_tensor *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &f, NULL, 1, &x, JAC_CREATE_GRAPH, &g));
    size_t before = jac_ctx_tape_length(ctx);
    assert_true(before > 2);
    char *dot = export(ctx, 1, &g, 1, &x);
    dot_summary s = summarize(dot);
    assert_true(s.ops >= 1);
    assert_true((size_t)s.ops <= before);
    tu_assert_contains(dot, "x ** 2");
    tu_assert_contains(dot, "output 0");
    free(dot);
    /* Exporting reads the tape only. */
    assert_int_equal(jac_ctx_tape_length(ctx), before);
}

static void test_bad_arguments_are_reported(void **state)
{
    jac_ctx *ctx = *state;
    assert_int_equal(jac_export_dot(NULL, 0, NULL, 0, NULL, stdout),
                     JAC_ERR_NULL_ARG);
    assert_int_equal(jac_export_dot(ctx, 0, NULL, 0, NULL, NULL),
                     JAC_ERR_NULL_ARG);
    tu_assert_error(ctx, JAC_ERR_NULL_ARG);
    jac_clear_error(ctx);
    assert_int_equal(jac_export_dot(ctx, 1, NULL, 0, NULL, stdout),
                     JAC_ERR_NULL_ARG);
    tu_assert_contains(jac_errmsg(ctx), "export_dot: outputs is NULL");
    jac_clear_error(ctx);
    jac_tensor *none[2] = {NULL, NULL};
    assert_int_equal(jac_export_dot(ctx, 0, NULL, 2, none, stdout),
                     JAC_ERR_NULL_ARG);
    tu_assert_contains(jac_errmsg(ctx), "export_dot: input 0 is NULL");
    jac_clear_error(ctx);

    jac_ctx *other = jac_ctx_new();
    jac_tensor *foreign = jac_scalar(other, 1.0);
    assert_int_equal(jac_export_dot(ctx, 1, &foreign, 0, NULL, stdout),
                     JAC_ERR_CONTEXT);
    tu_assert_error(ctx, JAC_ERR_CONTEXT);
    jac_ctx_free(other);
    jac_clear_error(ctx);

    if (access("/dev/full", W_OK) == 0) {
        FILE *full = fopen("/dev/full", "w");
        assert_non_null(full);
        make_net(ctx);
        assert_int_equal(jac_export_dot(ctx, 0, NULL, 0, NULL, full),
                         JAC_ERR_VALUE);
        tu_assert_contains(jac_errmsg(ctx), "export_dot: write failed");
        fclose(full);
    }
}

/* Graphviz parses what we write, for a tape with every kind of mark. */
static void test_graphviz_accepts_the_output(void **state)
{
    jac_ctx *ctx = *state;
    if (system("command -v dot >/dev/null 2>&1") != 0) {
        print_message("skipped: Graphviz's dot is not installed "
                      "(apt-get install graphviz)\n");
        skip();
    }
    small_net n = make_net(ctx);
    jac_tensor *g = NULL;
    tu_assert_ok(ctx, jac_grad(ctx, 1, &n.loss, NULL, 1, &n.b, 0, &g));
    jac_tensor *h =
        jac_sum(ctx, jac_slice(ctx, jac_transpose(ctx, n.W, 0, 1), 0, 1, 3, 1));
    assert_non_null(h);
    char path[] = "/tmp/jac_graph_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    tu_assert_ok(ctx, jac_export_dot(ctx, 1, &h, 0, NULL, f));
    tu_assert_ok(ctx, jac_export_dot(ctx, 0, NULL, 0, NULL, f));
    fclose(f);
    char cmd[128];
    /* Two graphs in one file: dot reads both. */
    snprintf(cmd, sizeof cmd, "dot -Tcanon '%s' >/dev/null", path);
    int rc = system(cmd);
    remove(path);
    assert_int_equal(rc, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_the_whole_tape_shows_every_op_with_its_shape),
        TU_TEST(test_a_backward_pass_marks_the_nodes_it_released),
        TU_TEST(test_outputs_select_the_nodes_that_lead_to_them),
        TU_TEST(test_inputs_select_the_nodes_that_depend_on_them),
        TU_TEST(test_a_lone_leaf_output_and_an_empty_tape_are_drawn),
        TU_TEST(test_create_graph_passes_appear_on_the_tape),
        TU_TEST(test_bad_arguments_are_reported),
        TU_TEST(test_graphviz_accepts_the_output),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
