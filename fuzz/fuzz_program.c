/*
 * libFuzzer harness: the input bytes are decoded into a program of tensor
 * creations (ordinary and hostile shapes and values), ops, backward passes,
 * Jacobian and functional drivers, scopes, thread settings, .npy and DOT
 * streams, run on a context whose allocator may refuse the k-th allocation.
 *
 * Invariants, besides "no crash, no undefined behaviour, no leak" (the
 * sanitizers): every refusal leaves a status in range with a non-empty
 * message; every tensor returned is alive and consistent; the context's
 * memory accounting matches its allocator, and nothing is held after
 * jac_ctx_free; .npy round trips are exact. When the header asks for it,
 * the forward part of the program is replayed as a function of its first
 * leaf, and where that function is smooth and well-conditioned its gradient
 * must agree with central finite differences, and recorded as a program
 * and evaluated at a second point it must give the values and gradient of
 * recording afresh there, bitwise.
 *
 * Input layout: byte 0 flags (bits 0-1: engine threads - 1; bit 2: refuse
 * allocation k; bit 3: finite-difference check), bytes 1-2: k (little
 * endian), then instructions: an opcode byte and its operand bytes. Missing
 * bytes read as zero, so every input is a valid program.
 *
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L /* fmemopen, open_memstream */

#include "jacobian.h"

#include "ops/ops.h" /* sizeof(jac_ctx), for the memory accounting check */

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Failing out loud                                                         */
/* ------------------------------------------------------------------------ */

static void broken(const char *what, const jac_ctx *ctx)
{
    fprintf(stderr, "fuzz_program: invariant broken: %s (%s: %s)\n", what,
            jac_status_name(jac_errcode(ctx)), jac_errmsg(ctx));
    abort();
}

/* ------------------------------------------------------------------------ */
/* The allocator: counts, refuses allocation k and anything above 8 MiB     */
/* ------------------------------------------------------------------------ */

#define HEADER 16

typedef struct hooks {
    uint64_t calls; /* atomic: worker threads allocate too */
    uint64_t fail_at;
    int64_t live_bytes;
    int64_t live_blocks;
} hooks;

static void *hook_alloc(size_t size, void *user)
{
    hooks *h = user;
    uint64_t call = __atomic_add_fetch(&h->calls, 1, __ATOMIC_RELAXED);
    if (call == h->fail_at || size > ((size_t)8 << 20)) {
        return NULL;
    }
    unsigned char *p = malloc(size + HEADER);
    if (p == NULL) {
        return NULL;
    }
    memcpy(p, &size, sizeof size);
    __atomic_add_fetch(&h->live_bytes, (int64_t)size, __ATOMIC_RELAXED);
    __atomic_add_fetch(&h->live_blocks, 1, __ATOMIC_RELAXED);
    return p + HEADER;
}

static void hook_free(void *ptr, void *user)
{
    hooks *h = user;
    if (ptr == NULL) {
        return;
    }
    unsigned char *p = (unsigned char *)ptr - HEADER;
    size_t size;
    memcpy(&size, p, sizeof size);
    __atomic_sub_fetch(&h->live_bytes, (int64_t)size, __ATOMIC_RELAXED);
    __atomic_sub_fetch(&h->live_blocks, 1, __ATOMIC_RELAXED);
    free(p);
}

/* ------------------------------------------------------------------------ */
/* Reading the input                                                        */
/* ------------------------------------------------------------------------ */

typedef struct reader {
    const uint8_t *p;
    size_t n, i;
} reader;

static uint8_t u8(reader *r) { return r->i < r->n ? r->p[r->i++] : 0; }

/* A value: mostly moderate numbers, sometimes the special ones. */
static double value(reader *r, bool *smooth)
{
    static const double special[] = {0.0,       -0.0,  NAN,    INFINITY,
                                     -INFINITY, 1e300, -1e300, 1e-310,
                                     1.0,       -1.0,  0.5,    2.0};
    uint8_t b = u8(r);
    if (b < 24) {
        double v = special[b % 12];
        if (!isfinite(v) || fabs(v) > 1e3 || (v != 0 && fabs(v) < 1e-300)) {
            *smooth = false;
        }
        return v;
    }
    return ((double)b - 140.0) / 29.0; /* about -4 .. 4 */
}

static int64_t extent(reader *r) { return u8(r) % 5; }

/* Extents that a hostile caller passes. */
static int64_t hostile_extent(reader *r)
{
    static const int64_t table[] = {
        -1,         INT64_MIN,        INT64_MAX, (int64_t)1 << 62,
        3000000000, (int64_t)1 << 31, 0,         1,
        2,          INT64_MAX / 2 + 1};
    return table[u8(r) % (sizeof table / sizeof table[0])];
}

/* A signed integer: small mostly, sometimes an extreme. */
static int64_t integer(reader *r)
{
    uint8_t b = u8(r);
    if (b == 255) {
        return INT64_MAX;
    }
    if (b == 254) {
        return INT64_MIN;
    }
    return (int64_t)(int8_t)b % 8;
}

static int axis(reader *r)
{
    uint8_t b = u8(r);
    if (b == 255) {
        return INT32_MIN;
    }
    if (b == 254) {
        return INT32_MAX;
    }
    return (int)(b % 11) - 5; /* -5 .. 5 */
}

/* ------------------------------------------------------------------------ */
/* The machine                                                              */
/* ------------------------------------------------------------------------ */

#define NREG 16
#define MAX_NUMEL 4096    /* drivers skip larger tensors: keeps runs short */
#define MAX_TAPE 2000     /* and longer tapes (create-graph passes pile up) */
#define WORK_BUDGET 40000 /* passes x tape length, per input */

typedef struct machine {
    jac_ctx *ctx, *other;
    jac_tensor *reg[NREG];
    reader in;
    /* Replay: forward ops only, as a function of the first leaf. */
    bool replay;
    jac_tensor *override;
    jac_tensor *leaf; /* the first leaf made (or the override) */
    int pc;           /* instruction index */
    int op;           /* its opcode, for the trace */
    int want_out;     /* replay: the instruction whose result is the output */
    int out_pc;       /* last instruction giving a result requiring grad */
    jac_tensor *out;
    bool smooth;
    double biggest; /* replay: largest |value| of any result, inf for NaN */
    int64_t work;   /* spent of WORK_BUDGET */
} machine;

/* Whether a driver call of about `passes` backward passes through the tape
 * would exceed the program's budget of work (rules run); charges it if
 * not. Keeps every input within a fraction of a second. */
static bool over_budget(machine *m, int64_t passes)
{
    int64_t tape = (int64_t)jac_ctx_tape_length(m->ctx);
    int64_t cost = (passes + 1) * (tape + 1);
    if (tape > MAX_TAPE || cost > WORK_BUDGET - m->work) {
        return true;
    }
    m->work += cost;
    return false;
}

static jac_tensor *R(machine *m, reader *r) { return m->reg[u8(r) % NREG]; }

/* With FUZZ_TRACE set in the environment, every stored result is printed
 * (to read a crashing input). */
static int trace = -1;

static void trace_result(const machine *m, int dst, const jac_tensor *t)
{
    if (trace < 0) {
        trace = getenv("FUZZ_TRACE") != NULL;
    }
    if (!trace) {
        return;
    }
    fprintf(stderr, "%s pc %d op %d -> r%d: ", m->replay ? "replay" : "run",
            m->pc, m->op, dst);
    if (t == NULL) {
        fprintf(stderr, "NULL (%s)\n", jac_errmsg(m->ctx));
        return;
    }
    (void)jac_tensor_print(t, stderr);
}

/* Checks a tensor a call returned: consistent when made, and a recorded
 * error with a message when refused. */
static void check_result(machine *m, const jac_tensor *t)
{
    if (t == NULL) {
        jac_status st = jac_errcode(m->ctx);
        if (st == JAC_OK) {
            broken("a call returned NULL without an error", m->ctx);
        }
        if (st < 0 || st > JAC_ERR_CANCELLED || jac_errmsg(m->ctx)[0] == '\0') {
            broken("an error without a status in range or a message", m->ctx);
        }
        return;
    }
    if (jac_errcode(m->ctx) != JAC_OK) {
        broken("a call that made a tensor left an error", m->ctx);
    }
    int n = jac_tensor_ndim(t);
    if (n < 0 || n > JAC_MAX_DIMS || jac_tensor_ctx(t) != m->ctx ||
        jac_tensor_data(t) == NULL) {
        broken("a returned tensor is not alive in its context", m->ctx);
    }
    int64_t numel = 1;
    for (int i = 0; i < n; i++) {
        numel *= jac_tensor_shape(t)[i];
    }
    if (numel != jac_tensor_numel(t)) {
        broken("a returned tensor's numel differs from its shape", m->ctx);
    }
}

static void check_status(machine *m, jac_status st)
{
    if (trace > 0 && st != JAC_OK) {
        fprintf(stderr, "%s pc %d: %s\n", m->replay ? "replay" : "run", m->pc,
                jac_errmsg(m->ctx));
    }
    if (st < 0 || st > JAC_ERR_CANCELLED) {
        broken("a status out of range", m->ctx);
    }
    if (st == JAC_OK && jac_errcode(m->ctx) != JAC_OK) {
        broken("a call that succeeded left an error", m->ctx);
    }
    if (st != JAC_OK &&
        (jac_errcode(m->ctx) == JAC_OK || jac_errmsg(m->ctx)[0] == '\0')) {
        broken("a failed call left no error", m->ctx);
    }
}

/* Stores a result, checks it, and forgets the error so that the next call
 * records its own. */
static void put(machine *m, reader *r, jac_tensor *t)
{
    int dst = u8(r) % NREG;
    trace_result(m, dst, t);
    check_result(m, t);
    jac_clear_error(m->ctx);
    m->reg[dst] = t;
    if (t != NULL && m->replay && m->pc == m->want_out) {
        m->out = t;
    }
    /* Values far from 1 anywhere on the way make the reverse pass lose
     * digits that the forward values never show (inverse of an inverse of
     * a nearly singular matrix): such programs are not well-conditioned. */
    for (int64_t i = 0;
         t != NULL && m->replay && i < jac_tensor_numel(t) && i < MAX_NUMEL;
         i++) {
        double v = fabs(jac_tensor_data(t)[i]);
        m->biggest = isnan(v) ? INFINITY : v > m->biggest ? v : m->biggest;
    }
    if (t != NULL && jac_requires_grad(t) && jac_tensor_numel(t) <= 64 &&
        jac_tensor_numel(t) > 0) {
        m->out_pc = m->pc;
    }
}

/* In a replay, a matrix about to be inverted (solve, inverse, det, logdet,
 * cholesky) must be well-conditioned for the finite-difference check: the
 * derivative of its inverse cancels terms of size cond(A)^2 that the
 * forward values never show. cond(A) is estimated as |A|_F |A^-1|_F. */
static void note_conditioning(machine *m, jac_tensor *a)
{
    if (!m->replay || a == NULL || jac_tensor_ctx(a) != m->ctx ||
        jac_tensor_ndim(a) < 2) {
        return;
    }
    bool was = jac_set_grad_enabled(m->ctx, false);
    jac_tensor *inv = jac_inverse(m->ctx, a);
    double na = 0, ni = 0;
    for (int64_t i = 0; inv != NULL && i < jac_tensor_numel(a); i++) {
        na += jac_tensor_data(a)[i] * jac_tensor_data(a)[i];
        ni += jac_tensor_data(inv)[i] * jac_tensor_data(inv)[i];
    }
    if (inv == NULL || !(sqrt(na) * sqrt(ni) < 1e4)) {
        m->smooth = false;
    }
    jac_clear_error(m->ctx);
    jac_set_grad_enabled(m->ctx, was);
}

typedef jac_tensor *(*unary_fn)(jac_ctx *, jac_tensor *);
typedef jac_tensor *(*binary_fn)(jac_ctx *, jac_tensor *, jac_tensor *);
typedef jac_tensor *(*scalar_fn)(jac_ctx *, jac_tensor *, double);

static const unary_fn smooth_unary[] = {
    jac_neg,      jac_exp,     jac_log,   jac_sin,    jac_cos,
    jac_tanh,     jac_sqrt,    jac_rsqrt, jac_square, jac_reciprocal,
    jac_expm1,    jac_log1p,   jac_tan,   jac_asin,   jac_acos,
    jac_atan,     jac_sinh,    jac_cosh,  jac_asinh,  jac_sigmoid,
    jac_softplus, jac_erf,     jac_sum,   jac_mean,   jac_prod,
    jac_trace,    jac_inverse, jac_det,   jac_logdet, jac_cholesky};
static const unary_fn kinked_unary[] = {jac_abs, jac_sign, jac_relu, jac_max,
                                        jac_min};
static const binary_fn smooth_binary[] = {
    jac_add,   jac_sub,    jac_mul,   jac_div, jac_pow,
    jac_atan2, jac_matmul, jac_solve, jac_dot, jac_outer};
static const binary_fn kinked_binary[] = {jac_maximum, jac_minimum};
static const scalar_fn scalar_ops[] = {jac_add_scalar, jac_sub_scalar,
                                       jac_mul_scalar, jac_div_scalar,
                                       jac_pow_scalar};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Up to four distinct tensors requiring gradients among the registers. */
static size_t leaves(machine *m, jac_tensor **out)
{
    size_t n = 0;
    for (int i = 0; i < NREG && n < 4; i++) {
        jac_tensor *t = m->reg[i];
        if (t == NULL || !jac_requires_grad(t) || jac_tensor_ctx(t) != m->ctx ||
            jac_tensor_numel(t) > MAX_NUMEL) {
            continue;
        }
        bool seen = false;
        for (size_t k = 0; k < n; k++) {
            seen = seen || out[k] == t;
        }
        if (!seen) {
            out[n++] = t;
        }
    }
    return n;
}

/* A function of one input for the functional drivers: a chain of up to
 * four smooth unary ops, summed when a scalar is needed. */
typedef struct chain {
    uint8_t ops[4];
    bool scalar;
} chain;

static jac_status chain_fn(jac_ctx *ctx, jac_tensor *const *inputs,
                           jac_tensor **outputs, void *user)
{
    const chain *c = user;
    jac_tensor *t = inputs[0];
    for (int i = 0; i < 4; i++) {
        t = smooth_unary[c->ops[i] % 22](ctx, t); /* the elementwise ones */
    }
    outputs[0] = c->scalar ? jac_sum(ctx, t) : t;
    return outputs[0] ? JAC_OK : jac_errcode(ctx);
}

typedef struct progress_state {
    int64_t calls, cancel_at;
} progress_state;

static int progress(int64_t done, int64_t total, void *user)
{
    progress_state *p = user;
    if (done < 1 || done > total) {
        abort();
    }
    return ++p->calls == p->cancel_at;
}

/* ------------------------------------------------------------------------ */
/* Instructions                                                             */
/* ------------------------------------------------------------------------ */

enum {
    OP_NEW,
    OP_NEW_HOSTILE,
    OP_UNARY,
    OP_KINKED,
    OP_BINARY,
    OP_SCALAR,
    OP_REDUCE,
    OP_SHAPE,
    OP_INDEX,
    OP_GRAD,
    OP_BACKWARD,
    OP_JACOBIAN,
    OP_FUNCTIONAL,
    OP_SCOPE,
    OP_CONTROL,
    OP_STREAM,
    OP_COUNT
};

static void op_new(machine *m, reader *r)
{
    int ndim = u8(r) % 4;
    int64_t shape[3];
    for (int i = 0; i < ndim; i++) {
        shape[i] = extent(r);
    }
    uint8_t how = u8(r);
    double data[64];
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        numel *= shape[i];
    }
    for (int64_t i = 0; i < numel; i++) {
        data[i] = how & 1 ? value(r, &m->smooth)
                          : 0.3 * sin(1.7 * (double)i + (double)(how >> 1));
    }
    jac_tensor *t = NULL;
    bool first_leaf = (how & 2) && m->leaf == NULL;
    if (first_leaf && m->override != NULL) {
        t = m->override; /* replay: the function's argument */
    } else if ((how & 12) == 12 && !m->replay) {
        t = jac_rand_normal(m->ctx, ndim, shape, 0.0, 1.0, how);
    } else {
        t = jac_tensor_new(m->ctx, ndim, shape, data);
    }
    if (t != NULL && (how & 2)) {
        if (jac_set_requires_grad(t, true) != JAC_OK) {
            broken("set_requires_grad refused a leaf", m->ctx);
        }
        if (m->leaf == NULL) {
            m->leaf = t;
        }
    }
    put(m, r, t);
}

static void op_new_hostile(machine *m, reader *r)
{
    static const int ranks[] = {-1, 9, 8, 0, 1, 2, 3, INT32_MIN};
    int ndim = ranks[u8(r) % COUNT(ranks)];
    int64_t shape[9];
    for (int i = 0; i < 9; i++) {
        shape[i] = hostile_extent(r);
    }
    jac_tensor *t;
    switch (u8(r) % 4) {
    case 0:
        t = jac_zeros(m->ctx, ndim, shape);
        break;
    case 1:
        t = jac_full(m->ctx, ndim, shape, value(r, &m->smooth));
        break;
    case 2:
        t = jac_reshape(m->ctx, R(m, r), ndim, shape);
        break;
    default:
        t = jac_expand(m->ctx, R(m, r), ndim, shape);
        break;
    }
    put(m, r, t);
}

static void op_reduce(machine *m, reader *r)
{
    jac_tensor *a = R(m, r);
    int naxes = u8(r) % 4;
    int axes[3];
    for (int i = 0; i < 3; i++) {
        axes[i] = axis(r);
    }
    const int *ax = naxes == 0 ? NULL : axes;
    bool keep = u8(r) & 1;
    jac_tensor *t;
    switch (u8(r) % 13) {
    case 0:
        t = jac_sum_axes(m->ctx, a, naxes, ax, keep);
        break;
    case 1:
        t = jac_mean_axes(m->ctx, a, naxes, ax, keep);
        break;
    case 2:
        t = jac_prod_axes(m->ctx, a, naxes, ax, keep);
        break;
    case 3:
        m->smooth = false;
        t = jac_max_axes(m->ctx, a, naxes, ax, keep);
        break;
    case 4:
        m->smooth = false;
        t = jac_min_axes(m->ctx, a, naxes, ax, keep);
        break;
    case 5:
        t = jac_logsumexp(m->ctx, a, naxes, ax, keep);
        break;
    case 6:
        t = jac_var(m->ctx, a, naxes, ax, (double)(u8(r) % 3), keep);
        break;
    case 7:
        t = jac_std(m->ctx, a, naxes, ax, (double)(u8(r) % 3), keep);
        break;
    case 8: {
        static const double ps[] = {1.0, 2.0, INFINITY, 3.0};
        double p = ps[u8(r) % 4];
        if (p != 2.0) {
            m->smooth = false;
        }
        t = jac_norm(m->ctx, a, p, naxes, ax, keep);
        break;
    }
    case 9:
        t = jac_softmax(m->ctx, a, axes[0]);
        break;
    case 10:
        t = jac_log_softmax(m->ctx, a, axes[0]);
        break;
    case 11:
        t = jac_sum_axis(m->ctx, a, axes[0], keep);
        break;
    case 12:
    default: {
        int64_t shape[3];
        for (int i = 0; i < 3; i++) {
            shape[i] = extent(r);
        }
        t = keep ? jac_sum_to_shape(m->ctx, a, naxes, shape)
                 : jac_expand(m->ctx, a, naxes, shape);
        break;
    }
    }
    put(m, r, t);
}

static void op_shape(machine *m, reader *r)
{
    jac_tensor *a = R(m, r);
    jac_tensor *t = NULL;
    uint8_t b = u8(r);
    switch (b % 13) {
    case 0: {
        int ndim = u8(r) % 4;
        int64_t shape[3];
        for (int i = 0; i < 3; i++) {
            shape[i] = integer(r);
        }
        t = jac_reshape(m->ctx, a, ndim, shape);
        break;
    }
    case 1: {
        int a0 = axis(r), a1 = axis(r);
        t = jac_transpose(m->ctx, a, a0, a1);
        break;
    }
    case 2: {
        int perm[8];
        for (int i = 0; i < 8; i++) {
            perm[i] = axis(r);
        }
        t = jac_permute(m->ctx, a, perm);
        break;
    }
    case 3: {
        int ax = axis(r);
        int64_t start = integer(r), stop = integer(r), step = integer(r);
        t = jac_slice(m->ctx, a, ax, start, stop, step);
        break;
    }
    case 4:
    case 5: {
        bool concat = b % 13 == 4;
        size_t n = 1 + u8(r) % 3;
        jac_tensor *ts[3];
        ts[0] = a;
        ts[1] = R(m, r);
        ts[2] = R(m, r);
        int ax = axis(r);
        t = concat ? jac_concat(m->ctx, n, ts, ax)
                   : jac_stack(m->ctx, n, ts, ax);
        break;
    }
    case 6: {
        jac_tensor *out[3] = {NULL, NULL, NULL};
        size_t n = 1 + u8(r) % 3;
        int64_t sizes[3];
        for (int i = 0; i < 3; i++) {
            sizes[i] = integer(r);
        }
        int ax = axis(r);
        jac_status st = jac_split(m->ctx, a, ax, n, sizes, out);
        check_status(m, st);
        if (st == JAC_OK) {
            for (size_t i = 0; i < n; i++) {
                check_result(m, out[i]);
            }
        }
        t = st == JAC_OK ? out[0] : NULL;
        if (t == NULL) {
            jac_clear_error(m->ctx);
            return;
        }
        break;
    }
    case 7: {
        int a0 = axis(r), a1 = axis(r);
        t = jac_flatten(m->ctx, a, a0, a1);
        break;
    }
    case 8:
        t = jac_squeeze(m->ctx, a, axis(r));
        break;
    case 9:
        t = jac_unsqueeze(m->ctx, a, axis(r));
        break;
    case 10: {
        int64_t before[8], after[8];
        for (int i = 0; i < 8; i++) {
            before[i] = integer(r);
            after[i] = integer(r);
        }
        t = jac_pad(m->ctx, a, before, after);
        break;
    }
    case 11: {
        int64_t offset = integer(r);
        int a0 = axis(r), a1 = axis(r);
        t = jac_diagonal(m->ctx, a, offset, a0, a1);
        break;
    }
    default:
        /* A copy is a new leaf: the replay's function goes through it, its
         * gradient does not. */
        m->smooth = false;
        t = jac_tensor_copy(m->ctx, a);
        break;
    }
    put(m, r, t);
}

static void op_index(machine *m, reader *r)
{
    jac_tensor *a = R(m, r);
    int64_t index[16];
    for (int i = 0; i < 16; i++) {
        index[i] = integer(r);
    }
    jac_tensor *t;
    switch (u8(r) % 3) {
    case 0: {
        int ax = axis(r);
        size_t n = u8(r) % 17;
        t = jac_index_select(m->ctx, a, ax, n, index);
        break;
    }
    case 1: {
        /* An index shape of a's rank whose entries fit in index[16]; the
         * bytes read do not depend on a, so that replays decode alike. */
        int64_t shape[8];
        for (int i = 0; i < 8; i++) {
            shape[i] = extent(r) % 3;
        }
        int n = jac_tensor_ndim(a) > 0 ? jac_tensor_ndim(a) : 1;
        int64_t prod = 1;
        for (int i = 0; i < n && i < 8; i++) {
            if (prod * shape[i] > 16) {
                shape[i] = 1;
            }
            prod *= shape[i];
        }
        int ax = axis(r);
        t = jac_gather(m->ctx, a, ax, shape, index);
        break;
    }
    default: {
        m->smooth = false;
        jac_tensor *cond = R(m, r);
        jac_tensor *other = R(m, r);
        t = jac_where(m->ctx, cond, a, other);
        break;
    }
    }
    put(m, r, t);
}

static void op_grad(machine *m, reader *r)
{
    jac_tensor *xs[4];
    size_t nx = leaves(m, xs);
    jac_tensor *y = R(m, r);
    uint8_t b = u8(r);
    unsigned flags = b & 15u;
    if (nx == 0 || y == NULL || jac_tensor_numel(y) > MAX_NUMEL ||
        over_budget(m, b & 8 ? 8 : 1)) {
        return;
    }
    jac_tensor *seed = NULL;
    if (b & 16) {
        seed = jac_ones(m->ctx, jac_tensor_ndim(y), jac_tensor_shape(y));
    } else if (b & 32) {
        seed = R(m, r); /* possibly of the wrong shape */
    }
    jac_tensor *g[4] = {NULL, NULL, NULL, NULL};
    jac_tensor *sentinel = (jac_tensor *)(void *)m;
    for (size_t i = 0; i < nx; i++) {
        g[i] = sentinel;
    }
    jac_status st = jac_grad(m->ctx, 1, &y, &seed, nx, xs, flags, g);
    check_status(m, st);
    for (size_t i = 0; i < nx; i++) {
        if (st != JAC_OK && g[i] != sentinel) {
            broken("a failed jac_grad wrote its results", m->ctx);
        }
        if (st == JAC_OK) {
            check_result(m, g[i]);
        }
    }
    jac_clear_error(m->ctx);
    if (st == JAC_OK) {
        m->reg[u8(r) % NREG] = g[0];
    }
}

static void op_backward(machine *m, reader *r)
{
    jac_tensor *y = R(m, r);
    uint8_t b = u8(r);
    if (y == NULL || jac_tensor_numel(y) > MAX_NUMEL || over_budget(m, 1)) {
        return;
    }
    jac_tensor *seed = b & 8 ? R(m, r) : NULL;
    jac_status st = jac_backward(m->ctx, y, seed, b & 7u);
    check_status(m, st);
    jac_clear_error(m->ctx);
}

static void op_jacobian(machine *m, reader *r)
{
    jac_tensor *xs[4];
    size_t nx = leaves(m, xs);
    jac_tensor *ys[2];
    ys[0] = R(m, r);
    ys[1] = R(m, r);
    size_t ny = 1 + u8(r) % 2;
    uint8_t b = u8(r);
    nx = nx > 2 ? 2 : nx;
    if (nx == 0) {
        return;
    }
    int64_t rows = 0, cols = 0;
    for (size_t k = 0; k < ny; k++) {
        rows += ys[k] ? jac_tensor_numel(ys[k]) : 0;
    }
    for (size_t i = 0; i < nx; i++) {
        cols += jac_tensor_numel(xs[i]);
    }
    if (rows * cols > MAX_NUMEL || rows > 256 ||
        over_budget(m, rows < cols ? rows : cols)) {
        return;
    }
    progress_state p = {0, b & 64 ? 1 + (int64_t)(u8(r) % 4) : 0};
    jac_jacobian_opts o = {b & 1 ? JAC_CREATE_GRAPH : 0u, (int64_t)(b >> 1) % 4,
                           (jac_mode)((b >> 3) % 3), b & 128 ? progress : NULL,
                           &p};
    jac_tensor *J[4] = {NULL, NULL, NULL, NULL};
    jac_status st = jac_jacobian_ex(m->ctx, ny, ys, nx, xs, &o, J);
    check_status(m, st);
    if (st == JAC_OK) {
        for (size_t i = 0; i < ny * nx; i++) {
            check_result(m, J[i]);
        }
        m->reg[u8(r) % NREG] = J[0];
    }
    jac_clear_error(m->ctx);
}

static void op_functional(machine *m, reader *r)
{
    chain c = {{0, 0, 0, 0}, false};
    for (int i = 0; i < 4; i++) {
        c.ops[i] = u8(r);
    }
    jac_tensor *x = R(m, r);
    uint8_t b = u8(r);
    if (x == NULL || jac_tensor_numel(x) > 64 ||
        over_budget(m, 2 * jac_tensor_numel(x) + 4)) {
        return;
    }
    jac_jacobian_opts o = {b & 8 ? JAC_CREATE_GRAPH : 0u, (int64_t)(b >> 4) % 3,
                           JAC_MODE_AUTO, NULL, NULL};
    unsigned flags = b & 8 ? JAC_CREATE_GRAPH : 0u;
    jac_tensor *t = NULL, *out = NULL;
    jac_status st = JAC_OK;
    switch (b % 8) {
    case 0:
        c.scalar = true;
        t = jac_hessian(m->ctx, chain_fn, &c, x, &o);
        break;
    case 1:
        t = jac_batch_jacobian(m->ctx, chain_fn, &c, x, &o);
        break;
    case 2: {
        jac_tensor *v = R(m, r);
        st = jac_vjp(m->ctx, chain_fn, &c, 1, &x, 1, &v, flags, &out, &t);
        break;
    }
    case 3: {
        jac_tensor *v = R(m, r);
        st = jac_jvp(m->ctx, chain_fn, &c, 1, &x, 1, &v, flags, &out, &t);
        break;
    }
    case 4: {
        jac_tensor *v = R(m, r);
        c.scalar = true;
        st = jac_hvp(m->ctx, chain_fn, &c, 1, &x, &v, flags, &out, &t);
        break;
    }
    case 5:
        st = jac_jacobian_fn(m->ctx, chain_fn, &c, 1, &x, 1, &o, &t);
        break;
    case 6:
        if (jac_tensor_numel(x) <= 8) {
            jac_check_opts co = {1e-6, 1e-4, 1e-3, b};
            st = jac_gradcheck(m->ctx, chain_fn, &c, 1, &x, 1, &co);
        }
        break;
    default:
        t = jac_jacobian(m->ctx, R(m, r), x, flags);
        break;
    }
    bool tensor_call = b % 8 <= 1 || b % 8 == 7;
    if (tensor_call) {
        check_result(m, t);
    } else {
        check_status(m, st);
        if (st == JAC_OK && b % 8 != 6) {
            check_result(m, t);
        }
    }
    jac_clear_error(m->ctx);
    m->reg[u8(r) % NREG] = t;
}

static void op_scope(machine *m, reader *r, jac_scope *marks, int *nmarks)
{
    uint8_t b = u8(r);
    if (b & 1) {
        if (*nmarks < 8) {
            marks[(*nmarks)++] = jac_scope_begin(m->ctx);
        }
        return;
    }
    if (*nmarks == 0) {
        return;
    }
    /* Keep up to two registers; the others made inside become stale, and
     * later instructions keep using them: the library must report them. */
    jac_tensor *keep[2];
    keep[0] = R(m, r);
    keep[1] = R(m, r);
    size_t nkeep = (b >> 1) % 3;
    jac_scope mark = marks[--(*nmarks)];
    jac_status st = jac_scope_end(m->ctx, mark, keep, nkeep);
    check_status(m, st);
    jac_clear_error(m->ctx);
    if (jac_ctx_tensor_count(m->ctx) < mark.tensors && st == JAC_OK) {
        broken("scope_end released tensors made before its mark", m->ctx);
    }
}

static void op_control(machine *m, reader *r)
{
    uint8_t b = u8(r);
    switch (b % 6) {
    case 0:
        check_status(m, jac_ctx_set_threads(m->ctx, 1 + (b >> 3) % 4));
        break;
    case 1:
        jac_set_grad_enabled(m->ctx, (b >> 3) & 1);
        break;
    case 2:
        check_status(m, jac_ctx_set_memory_budget(m->ctx, (size_t)(b >> 3)));
        break;
    case 3: {
        /* A tensor of another context in a register. */
        jac_tensor *t = jac_full(m->other, 1, (int64_t[]){2}, 1.0);
        if (t != NULL && (b & 8)) {
            jac_set_requires_grad(t, true);
        }
        m->reg[u8(r) % NREG] = t;
        break;
    }
    case 4:
        (void)jac_zero_grad(R(m, r)); /* any tensor, even stale or foreign */
        break;
    default: {
        jac_tensor *t = R(m, r);
        (void)jac_tensor_item(t);
        (void)jac_tensor_get(t, (int64_t[]){0, 0, 0, 0, 0, 0, 0, 0});
        (void)jac_tensor_dim(t, axis(r));
        (void)jac_is_leaf(t);
        (void)jac_tensor_grad(t);
        break;
    }
    }
    jac_clear_error(m->ctx);
}

/* .npy and DOT through memory streams, and .npy parsing of raw input
 * bytes. */
static void op_stream(machine *m, reader *r)
{
    uint8_t b = u8(r);
    jac_tensor *t = R(m, r);
    switch (b % 4) {
    case 0: {
        /* Round trip: the same shape and bits. */
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (f == NULL) {
            return;
        }
        jac_status st = jac_write_npy(t, f);
        fclose(f);
        if (st == JAC_OK && t != NULL && jac_tensor_numel(t) <= MAX_NUMEL) {
            FILE *g = fmemopen(buf, len, "rb");
            jac_tensor *u = g ? jac_read_npy(m->ctx, g) : NULL;
            if (g) {
                fclose(g);
            }
            if (u != NULL &&
                (jac_tensor_ndim(u) != jac_tensor_ndim(t) ||
                 memcmp(jac_tensor_shape(u), jac_tensor_shape(t),
                        (size_t)jac_tensor_ndim(t) * sizeof(int64_t)) != 0 ||
                 memcmp(jac_tensor_data(u), jac_tensor_data(t),
                        (size_t)jac_tensor_numel(t) * sizeof(double)) != 0)) {
                broken(".npy round trip changed the tensor", m->ctx);
            }
            check_result(m, u);
        }
        free(buf);
        break;
    }
    case 1: {
        /* The next bytes of the input, read as a .npy file. */
        size_t len = u8(r);
        if (len > r->n - r->i) {
            len = r->n - r->i;
        }
        if (len == 0) {
            return;
        }
        FILE *f = fmemopen((void *)(uintptr_t)(r->p + r->i), len, "rb");
        r->i += len;
        if (f == NULL) {
            return;
        }
        jac_tensor *u = jac_read_npy(m->ctx, f);
        fclose(f);
        check_result(m, u);
        if (u != NULL) {
            m->reg[b % NREG] = u;
        }
        break;
    }
    case 2: {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (f == NULL) {
            return;
        }
        jac_tensor *xs[4];
        size_t nx = leaves(m, xs);
        size_t nin = (b >> 2) & 1 ? nx : 0;
        jac_status st = jac_export_dot(m->ctx, t ? 1 : 0, &t, nin, xs, f);
        fclose(f);
        free(buf);
        check_status(m, st);
        break;
    }
    default: {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (f == NULL) {
            return;
        }
        if (jac_tensor_numel(t) <= MAX_NUMEL) {
            (void)jac_tensor_print(t, f);
        }
        fclose(f);
        free(buf);
        break;
    }
    }
    jac_clear_error(m->ctx);
}

/* Runs the program. In replay mode only the forward ops run, the first
 * leaf is m->override, and the state ops are skipped. */
static void run(machine *m, const uint8_t *data, size_t size)
{
    reader r = {data, size, 0};
    jac_scope marks[8];
    int nmarks = 0;
    m->pc = 0;
    m->smooth = true;
    while (r.i < r.n && m->pc < 256) {
        uint8_t op = u8(&r) % OP_COUNT;
        m->pc++;
        m->op = op;
        if (m->replay && (op > OP_INDEX || op == OP_NEW_HOSTILE)) {
            /* Consume nothing more: the replayed program is simply the
             * forward ops, read from the same bytes. */
            continue;
        }
        switch (op) {
        case OP_NEW:
            op_new(m, &r);
            break;
        case OP_NEW_HOSTILE:
            op_new_hostile(m, &r);
            break;
        case OP_UNARY: {
            uint8_t k = u8(&r);
            jac_tensor *a = R(m, &r);
            if (k % COUNT(smooth_unary) >= 26) { /* the LAPACK ops */
                note_conditioning(m, a);
            }
            put(m, &r, smooth_unary[k % COUNT(smooth_unary)](m->ctx, a));
            break;
        }
        case OP_KINKED:
            m->smooth = false;
            if (u8(&r) & 1) {
                uint8_t k = u8(&r);
                jac_tensor *a = R(m, &r);
                put(m, &r, kinked_unary[k % COUNT(kinked_unary)](m->ctx, a));
            } else {
                jac_tensor *a = R(m, &r);
                double lo = value(&r, &m->smooth), hi = value(&r, &m->smooth);
                put(m, &r, jac_clamp(m->ctx, a, lo, hi));
            }
            break;
        case OP_BINARY: {
            uint8_t k = u8(&r);
            jac_tensor *a = R(m, &r), *b = R(m, &r);
            if (k & 128) {
                m->smooth = false;
                put(m, &r,
                    kinked_binary[k % COUNT(kinked_binary)](m->ctx, a, b));
            } else {
                if (smooth_binary[k % COUNT(smooth_binary)] == jac_solve) {
                    note_conditioning(m, a);
                }
                put(m, &r,
                    smooth_binary[k % COUNT(smooth_binary)](m->ctx, a, b));
            }
            break;
        }
        case OP_SCALAR: {
            uint8_t k = u8(&r);
            jac_tensor *a = R(m, &r);
            double c = value(&r, &m->smooth);
            if (k & 128) {
                put(m, &r, jac_rsub_scalar(m->ctx, c, a));
            } else {
                put(m, &r, scalar_ops[k % COUNT(scalar_ops)](m->ctx, a, c));
            }
            break;
        }
        case OP_REDUCE:
            op_reduce(m, &r);
            break;
        case OP_SHAPE:
            op_shape(m, &r);
            break;
        case OP_INDEX:
            op_index(m, &r);
            break;
        case OP_GRAD:
            op_grad(m, &r);
            break;
        case OP_BACKWARD:
            op_backward(m, &r);
            break;
        case OP_JACOBIAN:
            op_jacobian(m, &r);
            break;
        case OP_FUNCTIONAL:
            op_functional(m, &r);
            break;
        case OP_SCOPE:
            op_scope(m, &r, marks, &nmarks);
            break;
        case OP_CONTROL:
            op_control(m, &r);
            break;
        default:
            op_stream(m, &r);
            break;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Gradients against finite differences                                     */
/* ------------------------------------------------------------------------ */

/* A machine that replays the program's forward part through x, its result
 * the output of instruction want. */
static machine replay_of(jac_ctx *ctx, jac_tensor *x, int want)
{
    machine m = {0};
    m.ctx = ctx;
    m.other = ctx;
    m.replay = true;
    m.override = x;
    m.want_out = want;
    return m;
}

/* The weighted sum of the output of instruction want in a replay with x as
 * the first leaf; false when the replay takes another path. */
static bool replay_value(const uint8_t *data, size_t size, jac_tensor *x,
                         int want, int64_t numel, double *loss)
{
    jac_ctx *ctx = jac_tensor_ctx(x);
    machine m = replay_of(ctx, x, want);
    bool was = jac_set_grad_enabled(ctx, false);
    jac_scope mark = jac_scope_begin(ctx);
    run(&m, data, size);
    bool ok = m.out != NULL && jac_tensor_numel(m.out) == numel;
    double s = 0;
    for (int64_t i = 0; ok && i < numel; i++) {
        s += jac_tensor_data(m.out)[i] * (0.7 + 0.1 * (double)(i % 5));
    }
    jac_scope_end(ctx, mark, NULL, 0);
    jac_set_grad_enabled(ctx, was);
    *loss = s;
    return ok && isfinite(s);
}

static void check_against_finite_differences(const uint8_t *data, size_t size)
{
    hooks capped = {0, 0, 0, 0};
    jac_allocator hooks_of = {hook_alloc, hook_free, &capped};
    jac_ctx *ctx = jac_ctx_new_with_allocator(&hooks_of);
    if (ctx == NULL) {
        return;
    }
    machine m = replay_of(ctx, NULL, -1);
    run(&m, data, size);
    if (!m.smooth || m.leaf == NULL || m.out_pc == 0 ||
        jac_tensor_numel(m.leaf) > 16 || jac_tensor_numel(m.leaf) == 0) {
        jac_ctx_free(ctx);
        return;
    }
    int want = m.out_pc;
    int64_t nx = jac_tensor_numel(m.leaf);
    double x0[16];
    memcpy(x0, jac_tensor_data(m.leaf), (size_t)nx * sizeof(double));
    int ndim = jac_tensor_ndim(m.leaf);
    int64_t shape[JAC_MAX_DIMS];
    memcpy(shape, jac_tensor_shape(m.leaf), (size_t)ndim * sizeof(int64_t));

    /* The gradient, by reverse mode, of the replay through x. */
    jac_tensor *x = jac_tensor_new(ctx, ndim, shape, x0);
    jac_set_requires_grad(x, true);
    machine g = replay_of(ctx, x, want);
    run(&g, data, size);
    if (g.out == NULL || !jac_requires_grad(g.out) || g.biggest > 1e4) {
        jac_ctx_free(ctx);
        return;
    }
    int64_t ny = jac_tensor_numel(g.out);
    double w[64];
    for (int64_t i = 0; i < ny; i++) {
        w[i] = 0.7 + 0.1 * (double)(i % 5);
        double v = jac_tensor_data(g.out)[i];
        if (!isfinite(v) || fabs(v) > 1e4) {
            jac_ctx_free(ctx);
            return; /* not well-conditioned enough to compare */
        }
    }
    jac_tensor *wt =
        jac_tensor_new(ctx, jac_tensor_ndim(g.out), jac_tensor_shape(g.out), w);
    jac_tensor *loss = jac_sum(ctx, jac_mul(ctx, g.out, wt)), *grad = NULL;
    jac_status st =
        loss ? jac_grad(ctx, 1, &loss, NULL, 1, &x, JAC_ALLOW_UNUSED, &grad)
             : jac_errcode(ctx);
    if (st != JAC_OK) {
        /* Allowed when clean: a derivative may be undefined (det at a
         * singular matrix). */
        g.ctx = ctx;
        check_status(&g, st);
        jac_ctx_free(ctx);
        return;
    }
    for (int64_t i = 0; i < nx; i++) {
        double fd[2];
        bool ok = true;
        for (int k = 0; k < 2 && ok; k++) {
            double h = (k ? 0.5e-5 : 1e-5) * (1.0 + fabs(x0[i]));
            double moved[16], fp = 0, fm = 0;
            memcpy(moved, x0, sizeof moved);
            moved[i] = x0[i] + h;
            jac_tensor *xp = jac_tensor_new(ctx, ndim, shape, moved);
            moved[i] = x0[i] - h;
            jac_tensor *xm = jac_tensor_new(ctx, ndim, shape, moved);
            double step = (x0[i] + h) - (x0[i] - h);
            ok = xp && xm && replay_value(data, size, xp, want, ny, &fp) &&
                 replay_value(data, size, xm, want, ny, &fm);
            fd[k] = (fp - fm) / step;
        }
        double a = jac_tensor_data(grad)[i];
        if (!ok || !isfinite(a) || !isfinite(fd[0]) || !isfinite(fd[1])) {
            continue;
        }
        /* Two step sizes that disagree mean the function is not smooth
         * enough here (a pole, a branch, roundoff); a huge derivative means
         * it is ill-conditioned (a nearly singular matrix), and the forward
         * values carry too few digits to judge either way: no verdict. */
        double spread = fabs(fd[0] - fd[1]);
        if (spread > 1e-4 * (1.0 + fabs(fd[1])) || fabs(fd[1]) > 1e4) {
            continue;
        }
        if (fabs(a - fd[1]) > 1e-3 * (1.0 + fabs(fd[1])) + 100.0 * spread) {
            fprintf(stderr,
                    "fuzz_program: d loss / d x[%lld] = %.17g by reverse "
                    "mode, %.17g (and %.17g) by finite differences\n",
                    (long long)i, a, fd[1], fd[0]);
            broken("a gradient disagrees with finite differences", ctx);
        }
    }
    jac_ctx_free(ctx);
}

/* ------------------------------------------------------------------------ */
/* Recorded functions against recording afresh                              */
/* ------------------------------------------------------------------------ */

/* The sparse Jacobian and Hessian of prog at args against the dense ones:
 * every entry that is not zero in the dense matrix lies in the pattern,
 * and the values agree there (compression adds only zeros). Where a dense
 * entry is not finite the comparison has no verdict. */
static void check_sparse(jac_program *prog, const double *const *args,
                         int64_t ny, int64_t nx, const double *w, jac_ctx *ctx)
{
    static double D[64 * 16], v[64 * 16];
    static int64_t r[64 * 16], c[64 * 16];
    for (int hess = 0; hess < 2; hess++) {
        int64_t rows = hess ? nx : ny;
        jac_sparse *plan = NULL;
        jac_status st = hess ? jac_sparse_hessian_plan(prog, NULL, &plan)
                             : jac_sparse_jacobian_plan(prog, NULL, &plan);
        double *Dp[1] = {D};
        const double *ws[1] = {w};
        if (st == JAC_OK)
            st = hess ? jac_program_hessian(prog, args, ws, Dp)
                      : jac_program_jacobian(prog, args, NULL, Dp);
        if (st == JAC_OK)
            st = hess ? jac_sparse_hessian(plan, args, ws, v)
                      : jac_sparse_jacobian(plan, args, v, NULL);
        if (st == JAC_OK)
            st = jac_sparse_coo(plan, JAC_INDEX_INT64, r, c);
        if (st != JAC_OK) {
            if (st < 0 || st > JAC_ERR_CANCELLED ||
                jac_program_errmsg()[0] == '\0')
                broken("a sparse call refused without a status or message",
                       ctx);
            jac_sparse_free(plan);
            continue;
        }
        bool finite = true;
        for (int64_t t = 0; t < rows * nx; t++)
            finite = finite && isfinite(D[t]);
        int64_t nnz = jac_sparse_nnz(plan);
        for (int64_t k = 0; k < nnz && finite; k++) {
            double d = D[r[k] * nx + c[k]];
            if (fabs(v[k] - d) > 1e-12 * (fabs(d) + 1.0) * (hess ? 1e3 : 1.0)) {
                fprintf(stderr,
                        "fuzz_program: %s (%lld, %lld): sparse %.17g, "
                        "dense %.17g\n",
                        hess ? "Hessian" : "Jacobian", (long long)r[k],
                        (long long)c[k], v[k], d);
                broken("a sparse value differs from the dense one", ctx);
            }
            D[r[k] * nx + c[k]] = 0.0;
        }
        for (int64_t t = 0; t < rows * nx && finite; t++)
            if (D[t] != 0.0) {
                fprintf(stderr,
                        "fuzz_program: %s entry (%lld, %lld) = %.17g "
                        "outside the pattern\n",
                        hess ? "Hessian" : "Jacobian", (long long)(t / nx),
                        (long long)(t % nx), D[t]);
                broken("a pattern misses a non-zero entry", ctx);
            }
        jac_sparse_free(plan);
    }
}

/* Whether n values agree bitwise (NaN matching NaN). */
static bool same_bits(const double *a, const double *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(double)) != 0 &&
            !(isnan(a[i]) && isnan(b[i])))
            return false;
    return true;
}

/* The replayed function recorded as a program at its first leaf's values
 * and evaluated at a second point must give the values and the gradient
 * of recording afresh there, bitwise. The machine's path is decided by the
 * bytes alone (its reads of values only judge conditioning), hence
 * JAC_PROGRAM_READS_OK; a second point where an op refuses takes another
 * path and is skipped. */
static void check_program_replay(const uint8_t *data, size_t size)
{
    hooks capped = {0, 0, 0, 0};
    jac_allocator hooks_of = {hook_alloc, hook_free, &capped};
    jac_ctx *ctx = jac_ctx_new_with_allocator(&hooks_of);
    if (ctx == NULL)
        return;
    machine m = replay_of(ctx, NULL, -1);
    run(&m, data, size);
    int64_t nx = m.leaf ? jac_tensor_numel(m.leaf) : 0;
    if (m.leaf == NULL || m.out_pc == 0 || nx > 16 || nx == 0) {
        jac_ctx_free(ctx);
        return;
    }
    int want = m.out_pc, ndim = jac_tensor_ndim(m.leaf);
    double x0[16], x1[16];
    int64_t shape[JAC_MAX_DIMS];
    memcpy(x0, jac_tensor_data(m.leaf), (size_t)nx * sizeof(double));
    memcpy(shape, jac_tensor_shape(m.leaf), (size_t)ndim * sizeof(int64_t));
    for (int64_t i = 0; i < nx; i++)
        x1[i] = x0[i] + 0.01 * (double)(i + 1);
    /* Record. */
    jac_tensor *x = jac_tensor_new(ctx, ndim, shape, x0);
    jac_program *prog = NULL;
    if (x == NULL || jac_program_begin(ctx, 1, &x, 0, NULL) != JAC_OK) {
        jac_ctx_free(ctx);
        return;
    }
    machine g = replay_of(ctx, x, want);
    size_t g0 = jac_ctx_tape_length(ctx);
    run(&g, data, size);
    size_t g1 = jac_ctx_tape_length(ctx);
    jac_tensor *out = g.out ? g.out : x;
    jac_status st = jac_program_end(ctx, 1, &out, JAC_PROGRAM_READS_OK, &prog);
    if (st != JAC_OK || g.out == NULL) {
        if (st != JAC_OK)
            check_status(&g, st);
        jac_program_free(prog);
        jac_ctx_free(ctx);
        return;
    }
    /* Afresh at the second point. */
    jac_tensor *xf = jac_tensor_new(ctx, ndim, shape, x1);
    jac_set_requires_grad(xf, true);
    machine f = replay_of(ctx, xf, want);
    size_t f0 = jac_ctx_tape_length(ctx);
    run(&f, data, size);
    /* The same ops, or another path (an op refused at the second point). */
    bool same_path = jac_ctx_tape_length(ctx) - f0 == g1 - g0;
    for (size_t i = 0; same_path && i < g1 - g0; i++)
        same_path = jac__node_at(ctx, (int64_t)(g0 + i))->op ==
                    jac__node_at(ctx, (int64_t)(f0 + i))->op;
    int64_t ny = jac_tensor_numel(g.out);
    if (!same_path || f.out == NULL || jac_tensor_numel(f.out) != ny ||
        ny > 64) {
        jac_program_free(prog);
        jac_ctx_free(ctx);
        return;
    }
    double y[64], w[64], gp[16];
    const double *args[1] = {x1}, *seeds[1] = {w};
    double *ys[1] = {y}, *gs[1] = {gp};
    for (int64_t i = 0; i < ny; i++)
        w[i] = 0.7 + 0.1 * (double)(i % 5);
    jac_status pst = jac_program_vjp(prog, args, seeds, ys, gs);
    if (pst != JAC_OK) {
        /* Memory may run out (the capped allocator), and an op may refuse
         * the values of the second point (det of NaN) that a derivative of
         * the fresh run did not reach: a clean refusal, with a message. */
        if (pst < 0 || pst > JAC_ERR_CANCELLED ||
            jac_program_errmsg()[0] == '\0')
            broken("a program refused without a status or message", ctx);
        jac_program_free(prog);
        jac_ctx_free(ctx);
        return;
    }
    if (!same_bits(y, jac_tensor_data(f.out), ny))
        broken("a program's value differs from recording afresh", ctx);
    jac_tensor *wt =
        jac_tensor_new(ctx, jac_tensor_ndim(f.out), jac_tensor_shape(f.out), w);
    jac_tensor *grad = NULL;
    if (wt != NULL && jac_requires_grad(f.out) &&
        jac_grad(ctx, 1, &f.out, &wt, 1, &xf, JAC_ALLOW_UNUSED, &grad) ==
            JAC_OK &&
        grad != NULL && !same_bits(gp, jac_tensor_data(grad), nx)) {
        for (int64_t i = 0; i < nx; i++)
            fprintf(
                stderr,
                "fuzz_program: gradient[%lld]: replay %.17g, afresh %.17g\n",
                (long long)i, gp[i], jac_tensor_data(grad)[i]);
        broken("a program's gradient differs from recording afresh", ctx);
    }
    check_sparse(prog, args, ny, nx, w, ctx);
    jac_program_free(prog);
    jac_ctx_free(ctx);
}

/* ------------------------------------------------------------------------ */
/* Entry point                                                              */
/* ------------------------------------------------------------------------ */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3) {
        return 0;
    }
    uint8_t flags = data[0];
    hooks h = {0, 0, 0, 0};
    if (flags & 4) {
        h.fail_at = (uint64_t)data[1] | (uint64_t)data[2] << 8;
    }
    jac_allocator a = {hook_alloc, hook_free, &h};
    machine m = {0};
    m.ctx = jac_ctx_new_with_allocator(&a);
    if (m.ctx == NULL) {
        if (h.live_blocks != 0) {
            abort();
        }
        return 0;
    }
    m.other = jac_ctx_new();
    m.want_out = -1;
    if (jac_ctx_set_threads(m.ctx, 1 + (flags & 3)) != JAC_OK) {
        broken("set_threads refused 1..4", m.ctx);
    }
    run(&m, data + 3, size - 3);
    /* The context's accounting matches what its allocator holds. */
    if (h.live_bytes != (int64_t)(jac_ctx_memory(m.ctx) + sizeof(jac_ctx))) {
        broken("jac_ctx_memory differs from the bytes the allocator holds",
               m.ctx);
    }
    jac_ctx_free(m.ctx);
    jac_ctx_free(m.other);
    if (h.live_blocks != 0 || h.live_bytes != 0) {
        fprintf(stderr, "fuzz_program: %lld blocks held after jac_ctx_free\n",
                (long long)h.live_blocks);
        abort();
    }
    if (flags & 8) {
        check_against_finite_differences(data + 3, size - 3);
        check_program_replay(data + 3, size - 3);
    }
    return 0;
}
