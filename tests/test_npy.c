/*
 * NumPy .npy files: round trips of every rank, files NumPy wrote, files
 * NumPy reads, and malformed files that must fail cleanly.
 *
 * The NumPy tests run /usr/bin/python3 (Debian's python3-numpy); without it
 * they are skipped with a message.
 *
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */

#include "testutil.h"

#include <stdlib.h>
#include <unistd.h>

#define PYTHON "/usr/bin/python3"

/* A scratch directory per run, removed at the end. */
static char scratch_dir[64];

static int make_scratch(void **state)
{
    (void)state;
    const char *tmp = getenv("TMPDIR");
    snprintf(scratch_dir, sizeof scratch_dir, "%s/jac_npy_XXXXXX",
             tmp && strlen(tmp) < 40 ? tmp : "/tmp");
    return mkdtemp(scratch_dir) ? 0 : -1;
}

static int remove_scratch(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* The path of a scratch file. */
static const char *scratch(const char *name)
{
    static char path[4][256];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, sizeof path[0], "%s/%s", scratch_dir, name);
    return p;
}

/* The values every test array holds: exact in binary, so NumPy and C make
 * the same doubles. */
static double value_at(int64_t i) { return (double)i / 8.0 - 3.0; }

static jac_tensor *pattern(jac_ctx *ctx, int ndim, const int64_t *shape)
{
    jac_tensor *t = jac_zeros(ctx, ndim, shape);
    assert_non_null(t);
    double *d = (double *)jac_tensor_data(t);
    for (int64_t i = 0; i < jac_tensor_numel(t); i++)
        d[i] = value_at(i);
    return t;
}

static void assert_pattern(const jac_tensor *t, int ndim, const int64_t *shape)
{
    tu_assert_shape_at(t, ndim, shape, __FILE__, __LINE__);
    for (int64_t i = 0; i < jac_tensor_numel(t); i++)
        assert_true(jac_tensor_data(t)[i] == value_at(i));
}

/* Shapes of rank 0 to 8, one of them empty. */
static const int64_t rank_shapes[JAC_MAX_DIMS + 1][JAC_MAX_DIMS] = {
    {0},
    {5},
    {2, 3},
    {2, 0, 4},
    {1, 2, 3, 2},
    {2, 1, 2, 1, 3},
    {1, 2, 1, 2, 1, 2},
    {2, 1, 1, 2, 1, 1, 2},
    {1, 2, 1, 1, 2, 1, 1, 3}};

/* Writes raw bytes to a scratch file and returns its path. */
static const char *write_bytes(const char *name, const void *bytes, size_t n)
{
    const char *path = scratch(name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
    return path;
}

/* A file of format version major.0 with the given header text (padded as
 * NumPy does) followed by nbytes of data. */
static const char *write_npy_raw(const char *name, int major, const char *dict,
                                 const void *data, size_t nbytes)
{
    static char buf[8192];
    size_t pre = major == 1 ? 10 : 12;
    size_t len = strlen(dict);
    size_t pad = (64 - (pre + len + 1) % 64) % 64;
    size_t hlen = len + pad + 1;
    assert_true(pre + hlen + nbytes <= sizeof buf);
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (char)major;
    buf[7] = 0;
    memset(buf + 8, 0, pre - 8);
    buf[8] = (char)(hlen & 0xff);
    buf[9] = (char)(hlen >> 8);
    memcpy(buf + pre, dict, len);
    memset(buf + pre + len, ' ', pad);
    buf[pre + hlen - 1] = '\n';
    if (nbytes > 0)
        memcpy(buf + pre + hlen, data, nbytes);
    return write_bytes(name, buf, pre + hlen + nbytes);
}

/* A file holding the bytes of a string literal, without its NUL. */
#define write_literal(name, literal)                                           \
    write_bytes((name), (literal), sizeof(literal) - 1)

/* A version 1.0 file with the given header and value_at(0 .. nvalues - 1),
 * little-endian. */
static const char *write_npy_text(const char *name, const char *dict,
                                  size_t nvalues)
{
    double values[64];
    assert_true(nvalues <= 64);
    for (size_t i = 0; i < nvalues; i++)
        values[i] = value_at((int64_t)i);
    return write_npy_raw(name, 1, dict, values, nvalues * sizeof(double));
}

/* ------------------------------------------------------------------------ */
/* Round trips                                                              */
/* ------------------------------------------------------------------------ */

static void test_every_rank_round_trips_through_a_file(void **state)
{
    jac_ctx *ctx = *state;
    for (int ndim = 0; ndim <= JAC_MAX_DIMS; ndim++) {
        const int64_t *shape = rank_shapes[ndim];
        jac_tensor *t = pattern(ctx, ndim, shape);
        const char *path = scratch("rank.npy");
        tu_assert_ok(ctx, jac_save_npy(t, path));
        jac_tensor *back = jac_load_npy(ctx, path);
        assert_non_null(back);
        assert_pattern(back, ndim, shape);
        assert_true(jac_is_leaf(back));
        assert_false(jac_requires_grad(back));
    }
    tu_assert_no_error(ctx);
}

static void test_the_header_is_what_numpy_writes(void **state)
{
    jac_ctx *ctx = *state;
    const char *path = scratch("header.npy");
    tu_assert_ok(ctx, jac_save_npy(pattern(ctx, 2, TU_SHAPE(2, 3)), path));
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char head[129] = {0};
    assert_int_equal(fread(head, 1, 128, f), 128);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    /* 10 bytes of preamble and the dict padded to 128 bytes (a header
     * length of 118), then 6 doubles. */
    assert_int_equal(size, 128 + 6 * 8);
    assert_memory_equal(head, "\x93NUMPY\x01\x00\x76\x00", 10);
    const char *dict = "{'descr': '<f8', 'fortran_order': False, "
                       "'shape': (2, 3), }";
    assert_memory_equal(head + 10, dict, strlen(dict));
    for (size_t i = 10 + strlen(dict); i < 127; i++)
        assert_int_equal(head[i], ' ');
    assert_int_equal(head[127], '\n');
}

static void test_several_arrays_follow_one_another_in_a_stream(void **state)
{
    jac_ctx *ctx = *state;
    const char *path = scratch("stream.npy");
    FILE *f = fopen(path, "wb+");
    assert_non_null(f);
    tu_assert_ok(ctx, jac_write_npy(pattern(ctx, 1, TU_SHAPE(3)), f));
    tu_assert_ok(ctx, jac_write_npy(pattern(ctx, 0, NULL), f));
    tu_assert_ok(ctx, jac_write_npy(pattern(ctx, 2, TU_SHAPE(2, 2)), f));
    rewind(f);
    assert_pattern(jac_read_npy(ctx, f), 1, TU_SHAPE(3));
    assert_pattern(jac_read_npy(ctx, f), 0, NULL);
    assert_pattern(jac_read_npy(ctx, f), 2, TU_SHAPE(2, 2));
    /* The end of the stream is not an array. */
    assert_null(jac_read_npy(ctx, f));
    tu_assert_error(ctx, JAC_ERR_VALUE);
    tu_assert_contains(jac_errmsg(ctx), "read_npy: stream: empty file");
    fclose(f);
}

static void test_hand_written_headers_in_other_spellings_load(void **state)
{
    jac_ctx *ctx = *state;
    /* Keys in another order, double quotes, no trailing comma, Python 2's
     * long suffix, blanks. */
    const char *path = write_npy_text(
        "spelling.npy",
        "{ \"shape\" : ( 2L ,3 ) , 'fortran_order':False,'descr':\"<f8\"}", 6);
    assert_pattern(jac_load_npy(ctx, path), 2, TU_SHAPE(2, 3));
    tu_assert_no_error(ctx);
}

static void test_big_endian_values_are_converted(void **state)
{
    jac_ctx *ctx = *state;
    unsigned char data[3 * 8];
    for (int i = 0; i < 3; i++) {
        double v = value_at(i);
        unsigned char b[8];
        memcpy(b, &v, 8);
        for (int k = 0; k < 8; k++)
            data[8 * i + k] = b[7 - k]; /* the test hosts are little-endian */
    }
    const char *path = write_npy_raw("big.npy", 1,
                                     "{'descr': '>f8', 'fortran_order': False, "
                                     "'shape': (3,), }",
                                     data, sizeof data);
    assert_pattern(jac_load_npy(ctx, path), 1, TU_SHAPE(3));
}

static void test_fortran_order_is_transposed_to_row_major(void **state)
{
    jac_ctx *ctx = *state;
    /* Column-major data of a (2, 3, 2) array whose row-major values are
     * value_at(0..11): element (i, j, k) sits at i + 2 j + 6 k. */
    double data[12];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 2; k++)
                data[i + 2 * j + 6 * k] = value_at(i * 6 + j * 2 + k);
    const char *path = write_npy_raw("fortran.npy", 1,
                                     "{'descr': '<f8', 'fortran_order': True, "
                                     "'shape': (2, 3, 2), }",
                                     data, sizeof data);
    assert_pattern(jac_load_npy(ctx, path), 3, TU_SHAPE(2, 3, 2));
}

static void test_versions_2_and_3_load(void **state)
{
    jac_ctx *ctx = *state;
    const double data[2] = {value_at(0), value_at(1)};
    const char *dict =
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }";
    assert_pattern(
        jac_load_npy(ctx, write_npy_raw("v2.npy", 2, dict, data, sizeof data)),
        1, TU_SHAPE(2));
    assert_pattern(
        jac_load_npy(ctx, write_npy_raw("v3.npy", 3, dict, data, sizeof data)),
        1, TU_SHAPE(2));
}

/* ------------------------------------------------------------------------ */
/* Malformed files                                                          */
/* ------------------------------------------------------------------------ */

/* Loading path fails with code, a message naming the file and what, and
 * leaves nothing behind: a second failure keeps the context's tensor count
 * and memory as they were (the first may fill the context's pools). */
static void assert_load_fails_at(jac_ctx *ctx, const char *path,
                                 jac_status code, const char *what,
                                 const char *file, int line)
{
    size_t before = jac_ctx_tensor_count(ctx), memory = 0;
    for (int run = 0; run < 2; run++) {
        jac_clear_error(ctx);
        if (jac_load_npy(ctx, path) != NULL) {
            print_error("loading %s succeeded\n", path);
            _fail(file, line);
        }
        tu_assert_error_at(ctx, code, file, line);
        tu_assert_contains_at(jac_errmsg(ctx), path, file, line);
        tu_assert_contains_at(jac_errmsg(ctx), what, file, line);
        if (jac_ctx_tensor_count(ctx) != before ||
            (run == 1 && jac_ctx_memory(ctx) != memory)) {
            print_error("a failed load kept %zu tensors, %zu bytes\n",
                        jac_ctx_tensor_count(ctx) - before,
                        jac_ctx_memory(ctx) - memory);
            _fail(file, line);
        }
        memory = jac_ctx_memory(ctx);
    }
    jac_clear_error(ctx);
}
#define assert_load_fails(ctx, path, code, what)                               \
    assert_load_fails_at((ctx), (path), (code), (what), __FILE__, __LINE__)

static void test_files_that_are_not_npy_fail_cleanly(void **state)
{
    jac_ctx *ctx = *state;
    assert_load_fails(ctx, scratch("missing.npy"), JAC_ERR_VALUE,
                      "cannot open");
    assert_load_fails(ctx, write_literal("empty.npy", ""), JAC_ERR_VALUE,
                      "empty file");
    assert_load_fails(ctx, write_literal("magic.npy", "PK\x03\x04 a zip"),
                      JAC_ERR_VALUE, "bad magic");
    assert_load_fails(ctx, write_literal("short.npy", "\x93NUMPY\x01"),
                      JAC_ERR_VALUE, "truncated");
    assert_load_fails(ctx, write_literal("version.npy", "\x93NUMPY\x04\x00"),
                      JAC_ERR_VALUE, "version 4.0");
    assert_load_fails(ctx, write_literal("len.npy", "\x93NUMPY\x01\x00\x30"),
                      JAC_ERR_VALUE, "truncated");
    assert_load_fails(
        ctx, write_literal("hlen.npy", "\x93NUMPY\x01\x00\x30\x00{'descr'"),
        JAC_ERR_VALUE, "truncated in the header");
    assert_load_fails(
        ctx, write_literal("huge.npy", "\x93NUMPY\x02\x00\x00\x00\x00\x7f"),
        JAC_ERR_VALUE, "too long");
}

static void test_malformed_headers_fail_cleanly(void **state)
{
    jac_ctx *ctx = *state;
    static const struct {
        const char *dict;
        jac_status code;
        const char *what;
    } cases[] = {
        {"('descr', '<f8')", JAC_ERR_VALUE, "not a dict"},
        {"{'descr': '<f8', 'fortran_order': False}", JAC_ERR_VALUE,
         "missing key 'shape'"},
        {"{'descr': '<f8', 'shape': (2,), 'fortran_order': False, 'x': 1}",
         JAC_ERR_VALUE, "unexpected key 'x'"},
        {"{'descr': '<f8', 'descr': '<f8', 'shape': (2,)}", JAC_ERR_VALUE,
         "appears twice"},
        {"{'descr': '<f8' 'fortran_order': False, 'shape': (2,)}",
         JAC_ERR_VALUE, "expected ','"},
        {"{'descr': '<f8', 'fortran_order': Maybe, 'shape': (2,)}",
         JAC_ERR_VALUE, "fortran_order"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (2,)} x",
         JAC_ERR_VALUE, "text after the dict"},
        {"{'descr': '<f8", JAC_ERR_VALUE, "unterminated string"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}",
         JAC_ERR_VALUE, "dtype '<f4' is not float64"},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (2,)}",
         JAC_ERR_VALUE, "dtype '|u1'"},
        {"{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (2,)}",
         JAC_ERR_VALUE, "structured dtypes"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (2)}",
         JAC_ERR_VALUE, "(n,)"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': [2, 3]}",
         JAC_ERR_VALUE, "not a tuple"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (2, -3)}",
         JAC_ERR_VALUE, "negative extent"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3.5)}",
         JAC_ERR_VALUE, "expected ',' or ')'"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (2 3)}",
         JAC_ERR_VALUE, "expected ',' or ')'"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,"
         "1)}",
         JAC_ERR_RANK, "rank above JAC_MAX_DIMS"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': "
         "(99999999999999999999,)}",
         JAC_ERR_OVERFLOW, "overflows"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': "
         "(4294967296, 4294967296)}",
         JAC_ERR_OVERFLOW, "element count of shape (4294967296, 4294967296)"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (4, 1000000000)}",
         JAC_ERR_VALUE, "data too short"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (5,)}",
         JAC_ERR_VALUE, "data too short: 32 bytes for the 5 values"},
    };
    for (size_t i = 0; i < TU_COUNT(cases); i++) {
        char name[32];
        snprintf(name, sizeof name, "bad%zu.npy", i);
        /* Four values of data after each header. */
        const char *path = write_npy_text(name, cases[i].dict, 4);
        assert_load_fails(ctx, path, cases[i].code, cases[i].what);
    }
}

/* The bytes of a small valid file. */
static size_t valid_file(jac_ctx *ctx, unsigned char *buf, size_t size)
{
    const char *path = scratch("valid.npy");
    tu_assert_ok(ctx, jac_save_npy(pattern(ctx, 2, TU_SHAPE(2, 3)), path));
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, size, f);
    fclose(f);
    return n;
}

static void test_every_truncation_fails_cleanly(void **state)
{
    jac_ctx *ctx = *state;
    unsigned char buf[512];
    size_t n = valid_file(ctx, buf, sizeof buf);
    for (size_t cut = 0; cut < n; cut++) {
        const char *path = write_bytes("cut.npy", buf, cut);
        const char *what = cut == 0    ? "empty file"
                           : cut < 10  ? "truncated"
                           : cut < 128 ? "truncated in the header"
                                       : "data too short";
        assert_load_fails(ctx, path, JAC_ERR_VALUE, what);
    }
}

static void
test_every_corrupted_header_byte_loads_or_fails_cleanly(void **state)
{
    jac_ctx *ctx = *state;
    unsigned char buf[512];
    size_t n = valid_file(ctx, buf, sizeof buf);
    static const unsigned char swaps[] = {0, ' ', '\'', ')', ',', '9', 0xff};
    for (size_t i = 0; i < 128; i++) {
        for (size_t k = 0; k < sizeof swaps; k++) {
            unsigned char copy[512];
            memcpy(copy, buf, n);
            copy[i] = swaps[k];
            const char *path = write_bytes("flip.npy", copy, n);
            size_t before = jac_ctx_tensor_count(ctx);
            jac_tensor *t = jac_load_npy(ctx, path);
            if (t == NULL) {
                assert_int_not_equal(jac_errcode(ctx), JAC_OK);
                tu_assert_contains(jac_errmsg(ctx), path);
                assert_int_equal(jac_ctx_tensor_count(ctx), before);
            }
            jac_clear_error(ctx);
        }
    }
}

static void test_a_stream_that_ends_early_fails_cleanly(void **state)
{
    jac_ctx *ctx = *state;
    /* A pipe cannot tell its length in advance: the short read is caught
     * after the allocation, which is rolled back. */
    const char *path = write_npy_text(
        "pipe.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (9,)}",
        4);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "cat '%s'", path);
    FILE *in = popen(cmd, "r");
    assert_non_null(in);
    size_t before = jac_ctx_tensor_count(ctx);
    assert_null(jac_read_npy(ctx, in));
    pclose(in);
    tu_assert_error(ctx, JAC_ERR_VALUE);
    tu_assert_contains(jac_errmsg(ctx), "data too short: 4 of the 9 values");
    assert_int_equal(jac_ctx_tensor_count(ctx), before);
}

static void test_bad_arguments_are_reported(void **state)
{
    jac_ctx *ctx = *state;
    assert_null(jac_load_npy(NULL, "x.npy"));
    assert_null(jac_load_npy(ctx, NULL));
    tu_assert_error(ctx, JAC_ERR_NULL_ARG);
    jac_clear_error(ctx);
    assert_null(jac_read_npy(ctx, NULL));
    tu_assert_error(ctx, JAC_ERR_NULL_ARG);
    jac_clear_error(ctx);

    assert_int_equal(jac_save_npy(NULL, "x.npy"), JAC_ERR_NULL_ARG);
    jac_tensor *t = jac_scalar(ctx, 1.0);
    assert_int_equal(jac_save_npy(t, NULL), JAC_ERR_NULL_ARG);
    tu_assert_error(ctx, JAC_ERR_NULL_ARG);
    jac_clear_error(ctx);
    assert_int_equal(jac_write_npy(t, NULL), JAC_ERR_NULL_ARG);
    jac_clear_error(ctx);

    /* A directory that does not exist: the message names the file. */
    const char *path = scratch("no/such/dir.npy");
    assert_int_equal(jac_save_npy(t, path), JAC_ERR_VALUE);
    tu_assert_contains(jac_errmsg(ctx), path);
    tu_assert_contains(jac_errmsg(ctx), "cannot open for writing");
    jac_clear_error(ctx);

    /* A released tensor. */
    jac_scope mark = jac_scope_begin(ctx);
    jac_tensor *gone = jac_scalar(ctx, 2.0);
    tu_assert_ok(ctx, jac_scope_end(ctx, mark, NULL, 0));
    assert_int_equal(jac_save_npy(gone, scratch("gone.npy")), JAC_ERR_CONTEXT);
}

static void test_a_failed_write_is_reported(void **state)
{
    jac_ctx *ctx = *state;
    if (access("/dev/full", W_OK) != 0) {
        print_message("skipped: no /dev/full to fail writes\n");
        skip();
    }
    FILE *full = fopen("/dev/full", "wb");
    assert_non_null(full);
    jac_tensor *t = pattern(ctx, 1, TU_SHAPE(4096));
    assert_int_equal(jac_write_npy(t, full), JAC_ERR_VALUE);
    tu_assert_contains(jac_errmsg(ctx), "write_npy: stream: write failed");
    fclose(full);
    jac_clear_error(ctx);
    assert_int_equal(jac_save_npy(t, "/dev/full"), JAC_ERR_VALUE);
    tu_assert_contains(jac_errmsg(ctx), "save_npy: '/dev/full': write failed");
}

/* ------------------------------------------------------------------------ */
/* Out of memory                                                            */
/* ------------------------------------------------------------------------ */

typedef struct counting_allocator {
    size_t calls, fail_at; /* fail the fail_at-th call (1-based; 0: never) */
} counting_allocator;

static void *counting_alloc(size_t size, void *user)
{
    counting_allocator *a = user;
    if (++a->calls == a->fail_at)
        return NULL;
    return malloc(size);
}

static void counting_free(void *ptr, void *user)
{
    (void)user;
    free(ptr);
}

static void test_loading_fails_cleanly_at_every_allocation(void **state)
{
    (void)state;
    const char *path = scratch("oom.npy");
    {
        jac_ctx *ctx = jac_ctx_new();
        tu_assert_ok(ctx, jac_save_npy(pattern(ctx, 2, TU_SHAPE(3, 40)), path));
        jac_ctx_free(ctx);
    }
    for (size_t k = 1;; k++) {
        counting_allocator a = {0, 0};
        jac_allocator hooks = {counting_alloc, counting_free, &a};
        jac_ctx *ctx = jac_ctx_new_with_allocator(&hooks);
        assert_non_null(ctx);
        size_t base = a.calls;
        a.fail_at = base + k;
        jac_tensor *t = jac_load_npy(ctx, path);
        bool failed = a.calls >= a.fail_at;
        if (failed) {
            assert_null(t);
            tu_assert_error(ctx, JAC_ERR_NO_MEMORY);
            tu_assert_contains(jac_errmsg(ctx), "load_npy");
            assert_int_equal(jac_ctx_tensor_count(ctx), 0);
        } else {
            assert_pattern(t, 2, TU_SHAPE(3, 40));
        }
        jac_ctx_free(ctx);
        if (!failed)
            break;
    }
}

/* ------------------------------------------------------------------------ */
/* NumPy                                                                    */
/* ------------------------------------------------------------------------ */

static bool have_numpy(void)
{
    static int cached = -1;
    if (cached < 0)
        cached = system(PYTHON " -c 'import numpy' >/dev/null 2>&1") == 0;
    return cached == 1;
}

/* Runs a Python program with NumPy, in the scratch directory. */
static int run_python(const char *program)
{
    const char *path = scratch("script.py");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("import numpy as np, sys, io\n"
          "def pattern(shape):\n"
          "    return (np.arange(int(np.prod(shape)), dtype=np.float64) / 8.0"
          " - 3.0).reshape(shape)\n",
          f);
    fputs(program, f);
    fclose(f);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cd '%s' && " PYTHON " '%s'", scratch_dir, path);
    return system(cmd);
}

#define SKIP_WITHOUT_NUMPY()                                                   \
    do {                                                                       \
        if (!have_numpy()) {                                                   \
            print_message("skipped: " PYTHON " with NumPy is not installed "   \
                          "(apt-get install python3-numpy)\n");                \
            skip();                                                            \
        }                                                                      \
    } while (0)

/* Python's spelling of rank_shapes[ndim]. */
static void python_shapes(char *buf, size_t size)
{
    size_t n = (size_t)snprintf(buf, size, "shapes = [");
    for (int ndim = 0; ndim <= JAC_MAX_DIMS; ndim++) {
        n += (size_t)snprintf(buf + n, size - n, "(");
        for (int k = 0; k < ndim; k++)
            n += (size_t)snprintf(buf + n, size - n, "%lld,",
                                  (long long)rank_shapes[ndim][k]);
        n += (size_t)snprintf(buf + n, size - n, "), ");
    }
    snprintf(buf + n, size - n, "]\n");
}

static void test_numpy_reads_our_files_byte_for_byte(void **state)
{
    SKIP_WITHOUT_NUMPY();
    jac_ctx *ctx = *state;
    for (int ndim = 0; ndim <= JAC_MAX_DIMS; ndim++) {
        char name[32];
        snprintf(name, sizeof name, "ours%d.npy", ndim);
        tu_assert_ok(ctx, jac_save_npy(pattern(ctx, ndim, rank_shapes[ndim]),
                                       scratch(name)));
    }
    char program[2048];
    python_shapes(program, sizeof program);
    strcat(program,
           "for ndim, shape in enumerate(shapes):\n"
           "    name = 'ours%d.npy' % ndim\n"
           "    a = np.load(name)\n"
           "    want = pattern(shape)\n"
           "    assert a.dtype == np.float64, (name, a.dtype)\n"
           "    assert a.shape == shape, (name, a.shape, shape)\n"
           "    assert np.array_equal(a, want), name\n"
           "    buf = io.BytesIO()\n"
           "    np.save(buf, want)\n"
           "    assert open(name, 'rb').read() == buf.getvalue(), name\n");
    assert_int_equal(run_python(program), 0);
}

static void test_we_read_files_numpy_wrote(void **state)
{
    SKIP_WITHOUT_NUMPY();
    jac_ctx *ctx = *state;
    char program[2048];
    python_shapes(program, sizeof program);
    strcat(program,
           "for ndim, shape in enumerate(shapes):\n"
           "    np.save('numpy%d.npy' % ndim, pattern(shape))\n"
           "np.save('fortran.npy', np.asfortranarray(pattern((2, 3, 4))))\n"
           "np.save('big.npy', pattern((3, 2)).astype('>f8'))\n"
           "with open('v2.npy', 'wb') as f:\n"
           "    np.lib.format.write_array(f, pattern((2, 5)), "
           "version=(2, 0))\n"
           "with open('two.npy', 'wb') as f:\n"
           "    np.save(f, pattern((4,)))\n"
           "    np.save(f, pattern((1, 3)))\n"
           "np.save('float32.npy', pattern((2,)).astype(np.float32))\n");
    assert_int_equal(run_python(program), 0);

    for (int ndim = 0; ndim <= JAC_MAX_DIMS; ndim++) {
        char name[32];
        snprintf(name, sizeof name, "numpy%d.npy", ndim);
        assert_pattern(jac_load_npy(ctx, scratch(name)), ndim,
                       rank_shapes[ndim]);
    }
    assert_pattern(jac_load_npy(ctx, scratch("fortran.npy")), 3,
                   TU_SHAPE(2, 3, 4));
    assert_pattern(jac_load_npy(ctx, scratch("big.npy")), 2, TU_SHAPE(3, 2));
    assert_pattern(jac_load_npy(ctx, scratch("v2.npy")), 2, TU_SHAPE(2, 5));
    FILE *f = fopen(scratch("two.npy"), "rb");
    assert_non_null(f);
    assert_pattern(jac_read_npy(ctx, f), 1, TU_SHAPE(4));
    assert_pattern(jac_read_npy(ctx, f), 2, TU_SHAPE(1, 3));
    fclose(f);
    tu_assert_no_error(ctx);

    assert_null(jac_load_npy(ctx, scratch("float32.npy")));
    tu_assert_error(ctx, JAC_ERR_VALUE);
    tu_assert_contains(jac_errmsg(ctx), "dtype '<f4' is not float64");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_every_rank_round_trips_through_a_file),
        TU_TEST(test_the_header_is_what_numpy_writes),
        TU_TEST(test_several_arrays_follow_one_another_in_a_stream),
        TU_TEST(test_hand_written_headers_in_other_spellings_load),
        TU_TEST(test_big_endian_values_are_converted),
        TU_TEST(test_fortran_order_is_transposed_to_row_major),
        TU_TEST(test_versions_2_and_3_load),
        TU_TEST(test_files_that_are_not_npy_fail_cleanly),
        TU_TEST(test_malformed_headers_fail_cleanly),
        TU_TEST(test_every_truncation_fails_cleanly),
        TU_TEST(test_every_corrupted_header_byte_loads_or_fails_cleanly),
        TU_TEST(test_a_stream_that_ends_early_fails_cleanly),
        TU_TEST(test_bad_arguments_are_reported),
        TU_TEST(test_a_failed_write_is_reported),
        TU_TEST(test_loading_fails_cleanly_at_every_allocation),
        TU_TEST(test_numpy_reads_our_files_byte_for_byte),
        TU_TEST(test_we_read_files_numpy_wrote),
    };
    return cmocka_run_group_tests(tests, make_scratch, remove_scratch);
}
