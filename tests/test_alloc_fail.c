/*
 * Allocation failures: a complete run (a graph, a gradient with create-graph
 * and its own gradient, jac_backward, Jacobians in reverse mode, by blocks
 * and in forward mode, a threaded Jacobian, a Hessian) is repeated with the
 * k-th allocation failing, for every k. Each run must end in a clean
 * out-of-memory error (or, when the failure was absorbed, in the right
 * answer), keep every result finished before the failure, leak nothing, and
 * leave the context usable: after its scope is released the same run gives
 * the right answer again.
 *
 * The allocation points are counted from a run without failures. Under
 * valgrind the suite tries every JAC_ALLOC_FAIL_STRIDE-th point (default 7)
 * so that it stays within the CI budget; natively and under ASan it tries
 * every point. The environment variable JAC_ALLOC_FAIL_STRIDE overrides the
 * stride in both cases.
 *
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"

#include "ops/ops.h"
#include "program/share.h"

#include <pthread.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define HAVE_VALGRIND_H 1
#endif
#endif

/* ------------------------------------------------------------------------ */
/* A failing allocator                                                      */
/* ------------------------------------------------------------------------ */

/* Every block carries its size in front, so that the allocator knows the
 * bytes outstanding and can tell the context's own accounting wrong. */
#define BLOCK_HEADER 16
#define BLOCK_MAGIC 0x5a5a5a5aU

typedef struct failing_allocator {
    pthread_mutex_t lock; /* worker threads of a threaded Jacobian share it */
    size_t calls;         /* allocations asked for */
    size_t fail_at;       /* 1-based call to refuse; 0: never */
    bool sticky;          /* refuse every call from fail_at on */
    size_t refused;
    size_t live_blocks;
    size_t live_bytes;
    size_t bad_frees; /* frees of pointers this allocator did not make */
} failing_allocator;

static void *failing_alloc(size_t size, void *user)
{
    failing_allocator *a = user;
    pthread_mutex_lock(&a->lock);
    size_t call = ++a->calls;
    bool refuse = a->fail_at != 0 &&
                  (call == a->fail_at || (a->sticky && call > a->fail_at));
    if (refuse) {
        a->refused++;
        pthread_mutex_unlock(&a->lock);
        return NULL;
    }
    unsigned char *p = malloc(size + BLOCK_HEADER);
    if (p != NULL) {
        memcpy(p, &size, sizeof size);
        uint32_t magic = BLOCK_MAGIC;
        memcpy(p + sizeof size, &magic, sizeof magic);
        a->live_blocks++;
        a->live_bytes += size;
    }
    pthread_mutex_unlock(&a->lock);
    return p ? p + BLOCK_HEADER : NULL;
}

static void failing_free(void *ptr, void *user)
{
    failing_allocator *a = user;
    if (ptr == NULL) {
        return;
    }
    unsigned char *p = (unsigned char *)ptr - BLOCK_HEADER;
    size_t size;
    uint32_t magic;
    memcpy(&size, p, sizeof size);
    memcpy(&magic, p + sizeof size, sizeof magic);
    pthread_mutex_lock(&a->lock);
    if (magic != BLOCK_MAGIC) {
        a->bad_frees++;
        pthread_mutex_unlock(&a->lock);
        return;
    }
    a->live_blocks--;
    a->live_bytes -= size;
    pthread_mutex_unlock(&a->lock);
    magic = 0;
    memcpy(p + sizeof size, &magic, sizeof magic);
    free(p);
}

static void allocator_init(failing_allocator *a)
{
    memset(a, 0, sizeof *a);
    pthread_mutex_init(&a->lock, NULL);
}

static void allocator_arm(failing_allocator *a, size_t fail_at, bool sticky)
{
    pthread_mutex_lock(&a->lock);
    a->calls = 0;
    a->fail_at = fail_at;
    a->sticky = sticky;
    a->refused = 0;
    pthread_mutex_unlock(&a->lock);
}

/* The context holds exactly the bytes it says it holds: its own struct
 * (allocated before any accounting starts) plus jac_ctx_memory. */
static void assert_accounting(const failing_allocator *a, const jac_ctx *ctx)
{
    assert_int_equal(a->bad_frees, 0);
    assert_int_equal(a->live_bytes, jac_ctx_memory(ctx) + sizeof(jac_ctx));
}

/* How many allocation points to skip between two tries. */
static size_t stride(void)
{
    const char *env = getenv("JAC_ALLOC_FAIL_STRIDE");
    if (env != NULL && atoi(env) > 0) {
        return (size_t)atoi(env);
    }
#ifdef HAVE_VALGRIND_H
    if (RUNNING_ON_VALGRIND) {
        return 7;
    }
#endif
    return 1;
}

/* ------------------------------------------------------------------------ */
/* The run                                                                  */
/* ------------------------------------------------------------------------ */

/* f(x) for x of shape (3): every op family takes part (elementwise, unary,
 * reductions, matmul, LAPACK, shape ops), and the result has shape (3). */
static jac_tensor *model(jac_ctx *ctx, jac_tensor *x)
{
    static const double w[] = {0.5, -0.2, 0.1, 0.3, 0.4, -0.6};
    jac_tensor *W = jac_tensor_new(ctx, 2, TU_SHAPE(2, 3), w);
    jac_tensor *h = jac_tanh(ctx, jac_matmul(ctx, W, x));
    jac_tensor *s = jac_sin(ctx, jac_slice(ctx, x, 0, 0, 2, 1));
    jac_tensor *m = jac_add(ctx, jac_mul_scalar(ctx, jac_eye(ctx, 2), 2.0),
                            jac_outer(ctx, s, h));
    jac_tensor *d = jac_reshape(ctx, jac_det(ctx, m), 1, TU_SHAPE(1));
    jac_tensor *parts[2] = {jac_mul(ctx, h, s), d};
    jac_tensor *y = jac_concat(ctx, 2, parts, 0);
    jac_tensor *lse = jac_logsumexp(ctx, x, 0, NULL, false);
    return jac_add(ctx, jac_mul(ctx, y, jac_sigmoid(ctx, x)), lse);
}

/* A scalar of x (3) that passes through most other ops once, so that their
 * forward kernels and (under create-graph, twice differentiated) their
 * rules meet the failing allocator too. */
static jac_tensor *zoo(jac_ctx *ctx, jac_tensor *x)
{
    jac_tensor *pos = jac_add_scalar(ctx, jac_square(ctx, x), 1.0);
    jac_tensor *rows[3] = {x, jac_sin(ctx, x), jac_cos(ctx, x)};
    jac_tensor *M = jac_stack(ctx, 3, rows, 0); /* (3, 3) */
    jac_tensor *MMt = jac_matmul(ctx, M, jac_transpose(ctx, M, 0, 1));
    jac_tensor *I3 = jac_mul_scalar(ctx, jac_eye(ctx, 3), 3.0);
    jac_tensor *S = jac_add(ctx, MMt, I3); /* positive definite */
    jac_tensor *cond = jac_tensor_new(ctx, 1, TU_SHAPE(3), TU_VALUES(1, 0, 1));
    jac_tensor *padded = jac_pad(ctx, x, TU_SHAPE(1), TU_SHAPE(2)); /* (6) */
    jac_tensor *pieces[2] = {NULL, NULL};
    if (jac_split(ctx, padded, 0, 2, TU_SHAPE(4, 2), pieces) != JAC_OK) {
        return NULL;
    }
    jac_tensor *M3 = jac_reshape(ctx, M, 3, TU_SHAPE(1, 3, 3));
    jac_tensor *parts[] = {
        jac_cholesky(ctx, S),
        jac_solve(ctx, S, pos),
        jac_inverse(ctx, S),
        jac_logdet(ctx, S),
        jac_pow(ctx, pos, jac_tanh(ctx, x)),
        jac_maximum(ctx, x, jac_mul_scalar(ctx, x, 0.5)),
        jac_minimum(ctx, x, jac_rsub_scalar(ctx, 0.2, x)),
        jac_clamp(ctx, x, -0.4, 0.7),
        jac_atan2(ctx, x, pos),
        jac_softmax(ctx, M, 1),
        jac_log_softmax(ctx, M, 0),
        jac_var(ctx, M, 1, (const int[]){1}, 1.0, false),
        jac_std(ctx, pos, 0, NULL, 0.0, true),
        jac_norm(ctx, M, 2.0, 0, NULL, false),
        jac_prod(ctx, pos),
        jac_max_axes(ctx, M, 1, (const int[]){0}, true),
        jac_min(ctx, x),
        jac_mean_axes(ctx, M, 1, (const int[]){1}, false),
        jac_permute(ctx, M3, (const int[]){2, 0, 1}),
        jac_diagonal(ctx, M, 1, 0, 1),
        jac_trace(ctx, S),
        jac_dot(ctx, x, pos),
        jac_index_select(ctx, x, 0, 4, TU_SHAPE(2, 0, 0, 1)),
        jac_gather(ctx, M, 1, TU_SHAPE(3, 1), TU_SHAPE(2, 0, 1)),
        jac_where(ctx, cond, x, pos),
        jac_mul(ctx, pieces[0], pieces[0]),
        jac_flatten(ctx, jac_squeeze(ctx, jac_unsqueeze(ctx, M, 0), 0), 0, 1),
        jac_sum_to_shape(ctx, jac_expand(ctx, x, 2, TU_SHAPE(2, 3)), 1,
                         TU_SHAPE(3)),
        jac_abs(ctx, jac_sqrt(ctx, jac_exp(ctx, jac_log(ctx, pos)))),
        jac_softplus(ctx, jac_erf(ctx, jac_asinh(ctx, x))),
        jac_relu(ctx, jac_div(ctx, x, pos)),
        jac_atan(ctx, jac_asin(ctx, jac_mul_scalar(ctx, x, 0.5))),
        jac_logsumexp(ctx, M, 1, (const int[]){0}, false),
    };
    jac_tensor *total = jac_scalar(ctx, 0.0);
    for (size_t i = 0; i < TU_COUNT(parts); i++) {
        total = jac_add(ctx, total, jac_sum(ctx, parts[i]));
    }
    return total;
}

static jac_tensor *loss_of(jac_ctx *ctx, jac_tensor *x)
{
    return jac_sum(ctx, jac_square(ctx, model(ctx, x)));
}

static jac_status loss_fn(jac_ctx *ctx, jac_tensor *const *inputs,
                          jac_tensor **outputs, void *user)
{
    (void)user;
    outputs[0] = loss_of(ctx, inputs[0]);
    return outputs[0] ? JAC_OK : jac_errcode(ctx);
}

/* A pointer no call may write: drivers must leave outputs untouched when
 * they fail. */
static char untouched_storage;
#define UNTOUCHED ((jac_tensor *)(void *)&untouched_storage)

/* y = tanh(x) * x per sample: a batch function for jac_batch_jacobian. */
static jac_status rowwise_fn(jac_ctx *ctx, jac_tensor *const *inputs,
                             jac_tensor **outputs, void *user)
{
    (void)user;
    outputs[0] = jac_mul(ctx, jac_tanh(ctx, inputs[0]), inputs[0]);
    return outputs[0] ? JAC_OK : jac_errcode(ctx);
}

static jac_status model_fn(jac_ctx *ctx, jac_tensor *const *inputs,
                           jac_tensor **outputs, void *user)
{
    (void)user;
    outputs[0] = model(ctx, inputs[0]);
    return outputs[0] ? JAC_OK : jac_errcode(ctx);
}

/* The functional drivers in turn; their results are summed into one (9)
 * tensor. */
static jac_status functional(jac_ctx *ctx, jac_tensor *x, jac_tensor **out)
{
    jac_tensor *v = jac_tensor_new(ctx, 1, TU_SHAPE(3), TU_VALUES(1, -2, 0.5));
    if (v == NULL) {
        return jac_errcode(ctx);
    }
    jac_tensor *vjp = UNTOUCHED, *jvp = UNTOUCHED, *hvp = UNTOUCHED;
    jac_tensor *y = UNTOUCHED, *loss = UNTOUCHED;
    jac_status st = jac_vjp(ctx, model_fn, NULL, 1, &x, 1, &v, 0, &y, &vjp);
    if (st != JAC_OK) {
        assert_ptr_equal(vjp, UNTOUCHED);
        assert_ptr_equal(y, UNTOUCHED);
        return st;
    }
    st = jac_jvp(ctx, model_fn, NULL, 1, &x, 1, &v, 0, NULL, &jvp);
    if (st != JAC_OK) {
        assert_ptr_equal(jvp, UNTOUCHED);
        return st;
    }
    st = jac_hvp(ctx, loss_fn, NULL, 1, &x, &v, 0, &loss, &hvp);
    if (st != JAC_OK) {
        assert_ptr_equal(hvp, UNTOUCHED);
        assert_ptr_equal(loss, UNTOUCHED);
        return st;
    }
    jac_tensor *X = jac_reshape(ctx, x, 2, TU_SHAPE(3, 1));
    jac_tensor *B =
        X ? jac_batch_jacobian(ctx, rowwise_fn, NULL, X, NULL) : NULL;
    if (B == NULL) {
        return jac_errcode(ctx);
    }
    jac_tensor *all[6] = {vjp, jvp,
                          hvp, jac_reshape(ctx, B, 1, TU_SHAPE(3)),
                          y,   jac_reshape(ctx, loss, 1, TU_SHAPE(1))};
    *out = jac_concat(ctx, 6, all, 0); /* (16) */
    return *out ? JAC_OK : jac_errcode(ctx);
}

enum {
    STEP_GRAPH,      /* y = f(x), loss */
    STEP_GRAD,       /* g = d loss / dx with create-graph */
    STEP_GRADGRAD,   /* d |g|^2 / dx through the recorded gradient */
    STEP_BACKWARD,   /* jac_backward into x.grad */
    STEP_JAC_ROWS,   /* reverse mode, row by row */
    STEP_JAC_BLOCK,  /* reverse mode, one block of rows */
    STEP_JAC_FWD,    /* forward mode */
    STEP_JAC_CREATE, /* reverse mode with create-graph, then its gradient */
    STEP_HESSIAN,    /* jac_hessian of the loss */
    STEP_ZOO,        /* many ops: d2 zoo / dx2 through create-graph */
    STEP_FUNCTIONAL, /* jac_vjp, jac_jvp, jac_hvp, jac_batch_jacobian */
    STEP_COUNT
};

static const char *const step_names[STEP_COUNT] = {"graph",
                                                   "grad",
                                                   "gradgrad",
                                                   "backward",
                                                   "jacobian rows",
                                                   "jacobian block",
                                                   "jacobian forward",
                                                   "jacobian create-graph",
                                                   "hessian",
                                                   "op zoo",
                                                   "functional"};

typedef struct run {
    jac_tensor *result[STEP_COUNT];
    int failed_step; /* STEP_COUNT when every step succeeded */
    jac_status status;
} run;

static jac_status step(jac_ctx *ctx, int which, jac_tensor *x,
                       jac_tensor **keep, jac_tensor **result)
{
    jac_tensor *out = UNTOUCHED;
    jac_status st = JAC_OK;
    jac_jacobian_opts o = {0, 1, JAC_MODE_REVERSE, NULL, NULL};
    switch (which) {
    case STEP_GRAPH:
        keep[0] = model(ctx, x);                          /* y */
        keep[1] = jac_sum(ctx, jac_square(ctx, keep[0])); /* loss */
        out = keep[1];
        st = out ? JAC_OK : jac_errcode(ctx);
        break;
    case STEP_GRAD:
        st = jac_grad(ctx, 1, &keep[1], NULL, 1, &x,
                      JAC_CREATE_GRAPH | JAC_RETAIN_GRAPH, &out);
        keep[2] = out;
        break;
    case STEP_GRADGRAD: {
        jac_tensor *n = jac_sum(ctx, jac_square(ctx, keep[2]));
        st = n ? jac_grad(ctx, 1, &n, NULL, 1, &x, JAC_RETAIN_GRAPH, &out)
               : jac_errcode(ctx);
        break;
    }
    case STEP_BACKWARD:
        st = jac_backward(ctx, keep[1], NULL, JAC_RETAIN_GRAPH);
        if (st == JAC_OK) {
            out = jac_tensor_grad(x);
        }
        break;
    case STEP_JAC_ROWS:
        st = jac_jacobian_ex(ctx, 1, &keep[0], 1, &x, &o, &out);
        break;
    case STEP_JAC_BLOCK:
        o.chunk = 0;
        st = jac_jacobian_ex(ctx, 1, &keep[0], 1, &x, &o, &out);
        break;
    case STEP_JAC_FWD:
        o.mode = JAC_MODE_FORWARD;
        st = jac_jacobian_ex(ctx, 1, &keep[0], 1, &x, &o, &out);
        break;
    case STEP_JAC_CREATE: {
        o.flags = JAC_CREATE_GRAPH;
        o.chunk = 2;
        jac_tensor *J = UNTOUCHED;
        st = jac_jacobian_ex(ctx, 1, &keep[0], 1, &x, &o, &J);
        if (st != JAC_OK) {
            assert_ptr_equal(J, UNTOUCHED);
            break;
        }
        jac_tensor *t = jac_trace(ctx, J);
        st = t ? jac_grad(ctx, 1, &t, NULL, 1, &x, JAC_RETAIN_GRAPH, &out)
               : jac_errcode(ctx);
        break;
    }
    case STEP_HESSIAN:
        out = jac_hessian(ctx, loss_fn, NULL, x, NULL);
        st = out ? JAC_OK : jac_errcode(ctx);
        break;
    case STEP_ZOO: {
        jac_tensor *z = zoo(ctx, x), *g = NULL;
        st = z ? jac_grad(ctx, 1, &z, NULL, 1, &x, JAC_CREATE_GRAPH, &g)
               : jac_errcode(ctx);
        jac_tensor *n = st == JAC_OK ? jac_sum(ctx, jac_sin(ctx, g)) : NULL;
        if (st == JAC_OK) {
            st = n ? jac_grad(ctx, 1, &n, NULL, 1, &x, 0, &out)
                   : jac_errcode(ctx);
        }
        break;
    }
    case STEP_FUNCTIONAL:
        st = functional(ctx, x, &out);
        break;
    default:
        fail();
    }
    if (st != JAC_OK) {
        /* Status calls leave their outputs untouched on failure. */
        if (which != STEP_GRAPH && which != STEP_HESSIAN) {
            assert_ptr_equal(out, UNTOUCHED);
        }
        return st;
    }
    *result = out;
    return JAC_OK;
}

static jac_status run_all(jac_ctx *ctx, run *r, int nsteps)
{
    static const double xv[] = {0.3, -0.5, 0.8};
    jac_tensor *keep[3] = {NULL, NULL, NULL};
    memset(r->result, 0, sizeof r->result);
    r->failed_step = STEP_COUNT;
    r->status = JAC_OK;
    jac_tensor *x = jac_tensor_new(ctx, 1, TU_SHAPE(3), xv);
    if (x == NULL) {
        r->failed_step = STEP_GRAPH;
        r->status = jac_errcode(ctx);
        return r->status;
    }
    jac_set_requires_grad(x, true);
    for (int s = 0; s < nsteps; s++) {
        jac_status st = step(ctx, s, x, keep, &r->result[s]);
        if (st != JAC_OK) {
            r->failed_step = s;
            r->status = st;
            return st;
        }
    }
    return JAC_OK;
}

/* The values of a run without failures, copied out of their context. */
typedef struct reference {
    double values[STEP_COUNT][16];
    int64_t numel[STEP_COUNT];
    int nsteps;         /* steps run: the first nsteps of the list */
    size_t allocations; /* allocation calls of a whole run in a new context */
} reference;

static void assert_matches(const reference *ref, int s, const jac_tensor *t)
{
    if (t == NULL || jac_tensor_numel(t) != ref->numel[s]) {
        print_error("step '%s': result missing or of the wrong size\n",
                    step_names[s]);
        fail();
    }
    /* The same operations in the same order: the same bits. */
    const double *d = jac_tensor_data(t);
    for (int64_t i = 0; i < ref->numel[s]; i++) {
        if (memcmp(&d[i], &ref->values[s][i], sizeof(double)) != 0) {
            print_error("step '%s', element %lld: got %.17g, want %.17g\n",
                        step_names[s], (long long)i, d[i], ref->values[s][i]);
            fail();
        }
    }
}

static void make_reference(reference *ref, int threads, int nsteps)
{
    failing_allocator a;
    allocator_init(&a);
    jac_allocator hooks = {failing_alloc, failing_free, &a};
    jac_ctx *ctx = jac_ctx_new_with_allocator(&hooks);
    assert_non_null(ctx);
    tu_assert_ok(ctx, jac_ctx_set_threads(ctx, threads));
    run r;
    ref->nsteps = nsteps;
    tu_assert_ok(ctx, run_all(ctx, &r, nsteps));
    for (int s = 0; s < nsteps; s++) {
        ref->numel[s] = jac_tensor_numel(r.result[s]);
        assert_true(ref->numel[s] > 0 && ref->numel[s] <= 16);
        memcpy(ref->values[s], jac_tensor_data(r.result[s]),
               (size_t)ref->numel[s] * sizeof(double));
    }
    jac_ctx_free(ctx);
    ref->allocations = a.calls;
    assert_int_equal(a.live_blocks, 0);
    pthread_mutex_destroy(&a.lock);
}

/* Sanity of the reference: the Jacobians agree with each other, and the
 * Hessian is symmetric, so the run is worth repeating. */
static void test_reference_run_is_consistent(void **state)
{
    (void)state;
    reference ref;
    make_reference(&ref, 1, STEP_COUNT);
    tu_assert_close(ref.values[STEP_JAC_BLOCK], ref.values[STEP_JAC_ROWS], 9,
                    1e-14, 0.0);
    tu_assert_close(ref.values[STEP_JAC_FWD], ref.values[STEP_JAC_ROWS], 9,
                    1e-14, 0.0);
    tu_assert_close(ref.values[STEP_BACKWARD], ref.values[STEP_GRAD], 3, 1e-14,
                    0.0);
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 3; j++) {
            assert_true(ref.values[STEP_HESSIAN][i * 3 + j] ==
                        ref.values[STEP_HESSIAN][j * 3 + i]);
        }
    }
    print_message("a complete run makes %zu allocations\n", ref.allocations);
    assert_true(ref.allocations > 100);
}

/* ------------------------------------------------------------------------ */
/* Every allocation point                                                   */
/* ------------------------------------------------------------------------ */

typedef struct sweep_stats {
    size_t points;   /* allocation points tried */
    size_t failures; /* runs that ended in an out-of-memory error */
    size_t absorbed; /* runs whose refused allocation did not matter */
} sweep_stats;

/* One run with allocation k refused (and every later one when sticky),
 * then the checks: a clean error or the right answer, earlier results
 * intact, the context usable again, and nothing leaked. */
static void try_point(const reference *ref, size_t k, bool sticky, int threads,
                      sweep_stats *stats)
{
    failing_allocator a;
    allocator_init(&a);
    allocator_arm(&a, k, sticky);
    jac_allocator hooks = {failing_alloc, failing_free, &a};
    jac_ctx *ctx = jac_ctx_new_with_allocator(&hooks);
    if (ctx == NULL) {
        /* Refused while making the context itself: nothing may be held. */
        assert_int_equal(a.live_blocks, 0);
        stats->points++;
        stats->failures++;
        pthread_mutex_destroy(&a.lock);
        return;
    }
    if (threads > 1) {
        tu_assert_ok(ctx, jac_ctx_set_threads(ctx, threads));
    }
    jac_scope mark = jac_scope_begin(ctx);
    run r;
    jac_status st = run_all(ctx, &r, ref->nsteps);
    stats->points++;
    if (st == JAC_OK) {
        /* The refused allocation was absorbed: the answer must be right. */
        tu_assert_no_error(ctx);
        for (int s = 0; s < ref->nsteps; s++) {
            assert_matches(ref, s, r.result[s]);
        }
        stats->absorbed++;
    } else {
        stats->failures++;
        if (jac_errcode(ctx) != JAC_ERR_NO_MEMORY ||
            strstr(jac_errmsg(ctx), "out of memory") == NULL) {
            print_error("allocation %zu%s: step '%s' failed with %s (%s): "
                        "%s\n",
                        k, sticky ? " onwards" : "", step_names[r.failed_step],
                        jac_status_name(st), jac_status_name(jac_errcode(ctx)),
                        jac_errmsg(ctx));
            fail();
        }
        /* Whatever finished before the failure is intact. */
        for (int s = 0; s < r.failed_step; s++) {
            assert_matches(ref, s, r.result[s]);
        }
        assert_true(jac_is_grad_enabled(ctx));
    }
    assert_accounting(&a, ctx);

    /* Usable again: release the scope, clear the error, run once more. */
    allocator_arm(&a, 0, false);
    tu_assert_ok(ctx, jac_scope_end(ctx, mark, NULL, 0));
    jac_clear_error(ctx);
    assert_int_equal(jac_ctx_tensor_count(ctx), 0);
    assert_int_equal(jac_ctx_tape_length(ctx), 0);
    tu_assert_ok(ctx, run_all(ctx, &r, ref->nsteps));
    for (int s = 0; s < ref->nsteps; s++) {
        assert_matches(ref, s, r.result[s]);
    }
    assert_accounting(&a, ctx);
    jac_ctx_free(ctx);
    assert_int_equal(a.bad_frees, 0);
    if (a.live_blocks != 0) {
        print_error("allocation %zu%s: %zu blocks (%zu bytes) leaked\n", k,
                    sticky ? " onwards" : "", a.live_blocks, a.live_bytes);
        fail();
    }
    pthread_mutex_destroy(&a.lock);
}

static void sweep(bool sticky, int threads, int nsteps)
{
    reference ref;
    make_reference(&ref, threads, nsteps);
    sweep_stats stats = {0, 0, 0};
    size_t step_k = stride();
    /* A few points past the end prove that the count was complete. */
    for (size_t k = 1; k <= ref.allocations + 2; k += step_k) {
        try_point(&ref, k, sticky, threads, &stats);
    }
    print_message("%s%s: %zu allocation points tried (stride %zu): %zu "
                  "out-of-memory errors, %zu absorbed\n",
                  sticky ? "failing from point k on" : "failing point k",
                  threads > 1 ? ", 2 threads" : "", stats.points, step_k,
                  stats.failures, stats.absorbed);
    assert_true(stats.failures > 0);
    assert_int_equal(stats.points, (ref.allocations + 2 - 1) / step_k + 1);
}

static void test_every_single_allocation_failure_is_clean(void **state)
{
    (void)state;
    sweep(false, 1, STEP_COUNT);
}

static void test_every_allocation_failing_from_k_on_is_clean(void **state)
{
    (void)state;
    sweep(true, 1, STEP_COUNT);
}

/* With two threads the allocation order varies from run to run, so a point
 * may land anywhere; each run must still end cleanly. The run stops after
 * the Jacobians, the steps that use the threads. */
static void test_threaded_jacobian_allocation_failures_are_clean(void **state)
{
    (void)state;
    sweep(false, 2, STEP_JAC_FWD + 1);
}

/* ------------------------------------------------------------------------ */
/* Recorded functions                                                       */
/* ------------------------------------------------------------------------ */

/* A function with scalar instructions (a chain on one element) and tensor
 * ones (a matrix product, a reduction), a parameter, two outputs. */
static jac_status program_fn(jac_ctx *ctx, jac_tensor *const *in,
                             jac_tensor **out, void *user)
{
    (void)user;
    jac_tensor *W =
        jac_reshape(ctx, jac_arange(ctx, 0.0, 6.0, 1.0), 2, TU_SHAPE(2, 3));
    jac_tensor *h = jac_tanh(ctx, jac_matmul(ctx, jac_sin(ctx, W), in[0]));
    jac_tensor *s = jac_sum(ctx, jac_exp(ctx, h));
    for (int i = 0; i < 3; i++)
        s = jac_add(ctx, s, jac_mul_scalar(ctx, jac_sin(ctx, s), 0.1));
    out[0] = jac_mul(ctx, s, in[1]);
    out[1] = jac_mul(ctx, h, in[1]);
    return out[0] && out[1] ? JAC_OK : jac_errcode(ctx);
}

/* Everything a program evaluates, into r (NULL allowed for a call's
 * results when it failed): returns the first failure, after trying every
 * call. */
#define PROGRAM_RESULTS 64
static jac_status program_calls(jac_program *prog, int threads, double *r)
{
    static const double x[3] = {0.2, -0.4, 0.7}, c = 1.5, w1[2] = {1.0, -2.0};
    const double *args[2] = {x, &c};
    jac_status first = JAC_OK, st;
#define KEEP(call)                                                             \
    do {                                                                       \
        st = (call);                                                           \
        if (st != JAC_OK && first == JAC_OK)                                   \
            first = st;                                                        \
    } while (0)
    KEEP(jac_program_set_threads(prog, threads));
    double *y[2] = {r, r + 1}; /* 3 values */
    KEEP(jac_program_eval(prog, args, y));
    const double *seeds[2] = {TU_VALUES(1.0), w1};
    double *g[1] = {r + 3}; /* 3 */
    KEEP(jac_program_vjp(prog, args, seeds, NULL, g));
    double *J[2] = {r + 6, r + 9}; /* 3 + 6 */
    KEEP(jac_program_jacobian(prog, args, NULL, J));
    const double *w[2] = {TU_VALUES(0.5), w1};
    double *H[1] = {r + 15}; /* 9 */
    KEEP(jac_program_hessian(prog, args, w, H));
    const double *v[1] = {x};
    double *jv[2] = {r + 24, r + 25}; /* 1 + 2 */
    KEEP(jac_program_jvp(prog, args, v, NULL, jv));
    double *hv[1] = {r + 27}; /* 3 */
    KEEP(jac_program_hvp(prog, args, w, v, hv));
    jac_program *gp = NULL;
    KEEP(jac_program_gradient(prog, JAC_PROGRAM_SEEDS_AS_INPUTS, &gp));
    if (gp != NULL) {
        const double *gargs[4] = {x, TU_VALUES(1.0), w1, &c};
        double *gg[1] = {r + 30}; /* 3 */
        KEEP(jac_program_eval(gp, gargs, gg));
        jac_program_free(gp);
    }
#undef KEEP
    return first;
}

/* Records the program on a failing allocator and runs every call with
 * allocation k failing (k = 0: none), in both phases: recording, then
 * evaluation on a program recorded without failures. */
static void program_point(size_t k, bool in_recording, int threads,
                          const double *want, size_t *failures)
{
    failing_allocator a;
    allocator_init(&a);
    jac_allocator hooks = {failing_alloc, failing_free, &a};
    if (in_recording)
        allocator_arm(&a, k, false);
    jac_ctx *ctx = jac_ctx_new_with_allocator(&hooks);
    jac_program *prog = NULL;
    jac_status st = ctx ? JAC_OK : JAC_ERR_NO_MEMORY;
    if (ctx != NULL) {
        jac_tensor *in[2] = {jac_tensor_new(ctx, 1, TU_SHAPE(3), NULL),
                             jac_scalar(ctx, 1.0)};
        st = jac_program_record(ctx, program_fn, NULL, 1, in, 1, in + 1, 2, 0,
                                &prog);
        if (st != JAC_OK) {
            /* The callback's failure says what made it fail. */
            assert_int_equal(jac_errcode(ctx), JAC_ERR_NO_MEMORY);
            assert_null(prog);
        }
        jac_ctx_free(ctx);
    }
    if (prog != NULL) {
        if (!in_recording)
            allocator_arm(&a, k, false);
        double r[PROGRAM_RESULTS];
        st = program_calls(prog, threads, r);
        if (st != JAC_OK) {
            assert_int_equal(st, JAC_ERR_NO_MEMORY);
            tu_assert_contains(jac_program_errmsg(), "memory");
            (*failures)++;
        } else if (threads == 1) {
            assert_memory_equal(r, want, 33 * sizeof(double));
        }
        /* The program still works once memory is back. */
        allocator_arm(&a, 0, false);
        tu_assert_ok(NULL, program_calls(prog, threads, r));
        if (threads == 1)
            assert_memory_equal(r, want, 33 * sizeof(double));
        jac_program_free(prog);
    } else if (k != 0) {
        (*failures)++;
    }
    if (a.live_blocks != 0 || a.bad_frees != 0) {
        print_error("program, allocation %zu (%s): %zu blocks leaked, %zu bad "
                    "frees\n",
                    k, in_recording ? "recording" : "evaluating", a.live_blocks,
                    a.bad_frees);
        fail();
    }
    pthread_mutex_destroy(&a.lock);
}

static void program_sweep(bool in_recording, int threads)
{
    /* The reference, and the allocations a run makes. */
    failing_allocator a;
    allocator_init(&a);
    jac_allocator hooks = {failing_alloc, failing_free, &a};
    jac_ctx *ctx = jac_ctx_new_with_allocator(&hooks);
    assert_non_null(ctx);
    jac_tensor *in[2] = {jac_tensor_new(ctx, 1, TU_SHAPE(3), NULL),
                         jac_scalar(ctx, 1.0)};
    jac_program *prog = NULL;
    if (in_recording)
        allocator_arm(&a, 0, false);
    tu_assert_ok(ctx, jac_program_record(ctx, program_fn, NULL, 1, in, 1,
                                         in + 1, 2, 0, &prog));
    size_t points = a.calls;
    jac_ctx_free(ctx);
    allocator_arm(&a, 0, false);
    double want[PROGRAM_RESULTS];
    tu_assert_ok(NULL, program_calls(prog, 1, want));
    if (!in_recording)
        points = a.calls;
    jac_program_free(prog);
    pthread_mutex_destroy(&a.lock);
    size_t failures = 0, tried = 0, step_k = stride();
    for (size_t k = 1; k <= points + 2; k += step_k, tried++)
        program_point(k, in_recording, threads, want, &failures);
    print_message("program %s%s: %zu allocation points tried, %zu failures\n",
                  in_recording ? "recording" : "evaluations",
                  threads > 1 ? ", 2 threads" : "", tried, failures);
    assert_true(failures > 0);
}

static void test_program_allocation_failures_are_clean(void **state)
{
    (void)state;
    program_sweep(true, 1);
    program_sweep(false, 1);
    program_sweep(false, 2);
}

/* ------------------------------------------------------------------------ */
/* Sparse plans                                                             */
/* ------------------------------------------------------------------------ */

/* Every sparse call on prog (and on a dynamic recording in ctx), values
 * into r: plans of each method, their evaluations, the exports. */
#define SPARSE_RESULTS 96
static jac_status sparse_calls(jac_ctx *ctx, jac_program *prog, double *r)
{
    memset(r, 0, SPARSE_RESULTS * sizeof(double));
    static const double x[3] = {0.2, -0.4, 0.7}, c = 1.5, w1[2] = {1.0, -2.0};
    const double *args[2] = {x, &c}, *w[2] = {TU_VALUES(0.5), w1};
    jac_status first = JAC_OK, st;
#define KEEP(call)                                                             \
    do {                                                                       \
        st = (call);                                                           \
        if (st != JAC_OK && first == JAC_OK)                                   \
            first = st;                                                        \
    } while (0)
    jac_sparse_opts opts[4] = {
        {.method = JAC_SPARSE_AUTO},
        {.method = JAC_SPARSE_FORWARD, .by_columns = true},
        {.method = JAC_SPARSE_STAR},
        {.method = JAC_SPARSE_ACYCLIC, .triangle = JAC_TRIANGLE_LOWER}};
    for (int m = 0; m < 4; m++) {
        jac_sparse *p = NULL;
        double *v = r + 9 * m;
        if (m < 2)
            KEEP(jac_sparse_jacobian_plan(prog, &opts[m], &p));
        else
            KEEP(jac_sparse_hessian_plan(prog, &opts[m], &p));
        if (p == NULL)
            continue;
        if (m < 2)
            KEEP(jac_sparse_jacobian(p, args, v, NULL));
        else
            KEEP(jac_sparse_hessian(p, args, w, v));
        int64_t rows[9], cols[9];
        KEEP(jac_sparse_coo(p, JAC_INDEX_INT64, rows, cols));
        jac_sparse_free(p);
    }
    /* The dense Jacobian forward, as parts of it are made for the MPI
     * component (program/share.h): J^T, 3 x 3, after the tape's results. */
    bool fwd;
    int64_t seeds = 0, width = 0, block = 1;
    KEEP(jac__dense_layout(prog, 1, &fwd, &seeds, &width, &block));
    if (st == JAC_OK && seeds * width == 9)
        KEEP(jac__dense_part(prog, args, true, 1, 0, seeds, r + 54));
    /* A dynamic recording, its plan, and the plan reused. */
    jac_scope mark = jac_scope_begin(ctx);
    jac_tensor *in[2] = {jac_tensor_new(ctx, 1, TU_SHAPE(3), x),
                         jac_scalar(ctx, c)};
    jac_sparse *tp = NULL;
    for (int round = 0; round < 2; round++) {
        jac_tensor *y[2] = {NULL, NULL};
        jac_set_requires_grad(in[0], true);
        KEEP(program_fn(ctx, in, y, NULL));
        if (y[0] != NULL)
            KEEP(jac_sparse_jacobian_tape(ctx, 2, y, 1, in, NULL, &tp,
                                          r + 36 + 9 * round));
        jac_clear_error(ctx);
    }
    jac_sparse_free(tp);
    /* The dense driver's plan, made and then kept for the same code; and
     * a recorded difference (two slices), whose jac_program_jacobian
     * makes and keeps its plan. */
    for (int round = 0; round < 2; round++) {
        jac_set_requires_grad(in[0], true);
        jac_tensor *y = jac_mul(ctx, jac_exp(ctx, in[0]), in[0]);
        jac_tensor *J = y != NULL ? jac_jacobian(ctx, y, in[0], 0) : NULL;
        if (J != NULL)
            memcpy(r + 64 + 9 * round, jac_tensor_data(J), 9 * sizeof(double));
        else
            KEEP(jac_errcode(ctx));
        jac_clear_error(ctx);
    }
    jac_program *diff = NULL;
    if (jac_program_begin(ctx, 1, in, 0, NULL) == JAC_OK) {
        jac_tensor *d = jac_sub(ctx, jac_slice(ctx, in[0], 0, 1, 3, 1),
                                jac_slice(ctx, in[0], 0, 0, 2, 1));
        KEEP(jac_program_end(ctx, 1, &d, 0, &diff));
    } else {
        KEEP(jac_errcode(ctx));
    }
    jac_clear_error(ctx);
    for (int round = 0; round < 2 && diff != NULL; round++) {
        double *Jd[1] = {r + 82 + 6 * round};
        KEEP(jac_program_jacobian(diff, args, NULL, Jd));
    }
    jac_program_free(diff);
    jac_scope_end(ctx, mark, NULL, 0);
#undef KEEP
    return first;
}

static void sparse_point(size_t k, const double *want, size_t *failures)
{
    failing_allocator a;
    allocator_init(&a);
    jac_allocator hooks = {failing_alloc, failing_free, &a};
    jac_ctx *ctx = jac_ctx_new_with_allocator(&hooks);
    assert_non_null(ctx);
    jac_tensor *in[2] = {jac_tensor_new(ctx, 1, TU_SHAPE(3), NULL),
                         jac_scalar(ctx, 1.0)};
    jac_program *prog = NULL;
    tu_assert_ok(ctx, jac_program_record(ctx, program_fn, NULL, 1, in, 1,
                                         in + 1, 2, 0, &prog));
    allocator_arm(&a, k, false);
    double r[SPARSE_RESULTS];
    jac_status st = sparse_calls(ctx, prog, r);
    if (st != JAC_OK) {
        assert_int_equal(st, JAC_ERR_NO_MEMORY);
        (*failures)++;
    } else {
        assert_memory_equal(r, want, 63 * sizeof(double));
    }
    allocator_arm(&a, 0, false);
    tu_assert_ok(NULL, sparse_calls(ctx, prog, r));
    assert_memory_equal(r, want, 63 * sizeof(double));
    jac_program_free(prog);
    jac_ctx_free(ctx);
    if (a.live_blocks != 0 || a.bad_frees != 0) {
        print_error("sparse, allocation %zu: %zu blocks leaked, %zu bad "
                    "frees\n",
                    k, a.live_blocks, a.bad_frees);
        fail();
    }
    pthread_mutex_destroy(&a.lock);
}

static void test_sparse_allocation_failures_are_clean(void **state)
{
    (void)state;
    failing_allocator a;
    allocator_init(&a);
    jac_allocator hooks = {failing_alloc, failing_free, &a};
    jac_ctx *ctx = jac_ctx_new_with_allocator(&hooks);
    assert_non_null(ctx);
    jac_tensor *in[2] = {jac_tensor_new(ctx, 1, TU_SHAPE(3), NULL),
                         jac_scalar(ctx, 1.0)};
    jac_program *prog = NULL;
    tu_assert_ok(ctx, jac_program_record(ctx, program_fn, NULL, 1, in, 1,
                                         in + 1, 2, 0, &prog));
    allocator_arm(&a, 0, false);
    double want[SPARSE_RESULTS];
    tu_assert_ok(NULL, sparse_calls(ctx, prog, want));
    size_t points = a.calls;
    jac_program_free(prog);
    jac_ctx_free(ctx);
    pthread_mutex_destroy(&a.lock);
    size_t failures = 0, tried = 0, step_k = stride();
    for (size_t k = 1; k <= points + 2; k += step_k, tried++)
        sparse_point(k, want, &failures);
    print_message("sparse: %zu allocation points tried, %zu failures\n", tried,
                  failures);
    assert_true(failures > 0);
}

/* A program whose Jacobians are large enough for two threads to share. */
#define WIDE 64
static jac_status wide_fn(jac_ctx *ctx, jac_tensor *const *in, jac_tensor **out,
                          void *user)
{
    (void)user;
    jac_tensor *W = jac_reshape(ctx, jac_arange(ctx, 0.0, WIDE * WIDE, 1.0), 2,
                                TU_SHAPE(WIDE, WIDE));
    W = jac_mul_scalar(ctx, jac_cos(ctx, W), 0.125);
    out[0] = jac_tanh(ctx, jac_matmul(ctx, W, jac_sin(ctx, in[0])));
    return out[0] ? JAC_OK : jac_errcode(ctx);
}

/* The Jacobian and a Hessian on two threads: every allocation failing in
 * turn ends in out-of-memory or the right answer, bitwise. */
static jac_status wide_calls(jac_program *prog, double *J, double *H)
{
    static double x[WIDE], w[WIDE];
    for (int i = 0; i < WIDE; i++) {
        x[i] = 0.3 * sin(0.7 * i);
        w[i] = cos(0.2 * i);
    }
    const double *args[1] = {x}, *ws[1] = {w};
    double *Jp[1] = {J}, *Hp[1] = {H};
    jac_status st = jac_program_jacobian(prog, args, NULL, Jp);
    jac_status st2 = jac_program_hessian(prog, args, ws, Hp);
    return st != JAC_OK ? st : st2;
}

static void test_threaded_program_allocation_failures_are_clean(void **state)
{
    (void)state;
    failing_allocator a;
    allocator_init(&a);
    jac_allocator hooks = {failing_alloc, failing_free, &a};
    jac_ctx *ctx = jac_ctx_new_with_allocator(&hooks);
    assert_non_null(ctx);
    jac_tensor *x = jac_tensor_new(ctx, 1, TU_SHAPE(WIDE), NULL);
    jac_program *prog = NULL;
    tu_assert_ok(ctx, jac_program_record(ctx, wide_fn, NULL, 1, &x, 0, NULL, 1,
                                         0, &prog));
    jac_ctx_free(ctx);
    tu_assert_ok(NULL, jac_program_set_threads(prog, 2));
    static double want_J[WIDE * WIDE], want_H[WIDE * WIDE], J[WIDE * WIDE],
        H[WIDE * WIDE];
    allocator_arm(&a, 0, false);
    tu_assert_ok(NULL, wide_calls(prog, want_J, want_H));
    size_t points = a.calls;
    jac_program_free(prog);
    size_t failures = 0, tried = 0, step_k = stride();
    for (size_t k = 1; k <= points + 2; k += step_k, tried++) {
        allocator_arm(&a, 0, false);
        ctx = jac_ctx_new_with_allocator(&hooks);
        assert_non_null(ctx);
        x = jac_tensor_new(ctx, 1, TU_SHAPE(WIDE), NULL);
        tu_assert_ok(ctx, jac_program_record(ctx, wide_fn, NULL, 1, &x, 0, NULL,
                                             1, 0, &prog));
        jac_ctx_free(ctx);
        tu_assert_ok(NULL, jac_program_set_threads(prog, 2));
        allocator_arm(&a, k, false);
        jac_status st = wide_calls(prog, J, H);
        if (st != JAC_OK) {
            assert_int_equal(st, JAC_ERR_NO_MEMORY);
            failures++;
        } else {
            assert_memory_equal(J, want_J, sizeof J);
            assert_memory_equal(H, want_H, sizeof H);
        }
        allocator_arm(&a, 0, false);
        tu_assert_ok(NULL, wide_calls(prog, J, H));
        assert_memory_equal(J, want_J, sizeof J);
        assert_memory_equal(H, want_H, sizeof H);
        jac_program_free(prog);
        assert_int_equal(a.live_blocks, 0);
    }
    print_message("program on 2 threads: %zu allocation points tried, %zu "
                  "failures\n",
                  tried, failures);
    assert_true(failures > 0);
    pthread_mutex_destroy(&a.lock);
}

/* ------------------------------------------------------------------------ */
/* Smaller calls                                                            */
/* ------------------------------------------------------------------------ */

/* The context itself needs two allocations; failing either gives NULL and
 * holds nothing. */
static void test_context_creation_failure_holds_nothing(void **state)
{
    (void)state;
    for (size_t k = 1; k <= 3; k++) {
        failing_allocator a;
        allocator_init(&a);
        allocator_arm(&a, k, false);
        jac_allocator hooks = {failing_alloc, failing_free, &a};
        jac_ctx *ctx = jac_ctx_new_with_allocator(&hooks);
        if (k <= 2) {
            assert_null(ctx);
            assert_int_equal(a.live_blocks, 0);
        } else {
            assert_non_null(ctx);
            jac_ctx_free(ctx);
            assert_int_equal(a.live_blocks, 0);
        }
        pthread_mutex_destroy(&a.lock);
    }
}

/* A refused allocation inside an op returns NULL with a message naming the
 * op; the tensors made before it keep their values. */
static void test_failed_op_names_itself_and_spares_its_inputs(void **state)
{
    (void)state;
    failing_allocator a;
    allocator_init(&a);
    jac_allocator hooks = {failing_alloc, failing_free, &a};
    jac_ctx *ctx = jac_ctx_new_with_allocator(&hooks);
    assert_non_null(ctx);
    jac_tensor *x = tu_tensor(ctx, TU_SHAPE(2, 2), TU_VALUES(1, 2, 3, 4));
    allocator_arm(&a, 1, true);
    assert_null(jac_matmul(ctx, x, x));
    tu_assert_error(ctx, JAC_ERR_NO_MEMORY);
    tu_assert_contains(jac_errmsg(ctx), "matmul");
    tu_assert_contains(jac_errmsg(ctx), "out of memory");
    tu_assert_tensor(x, TU_SHAPE(2, 2), TU_VALUES(1, 2, 3, 4), 0.0);
    allocator_arm(&a, 0, false);
    jac_clear_error(ctx);
    jac_tensor *y = jac_matmul(ctx, x, x);
    tu_assert_tensor(y, TU_SHAPE(2, 2), TU_VALUES(7, 10, 15, 22), 0.0);
    jac_ctx_free(ctx);
    assert_int_equal(a.live_blocks, 0);
    pthread_mutex_destroy(&a.lock);
}

/* Filling a leaf whose storage a view shares needs storage of its own;
 * when that is refused, the leaf and the view keep their values. */
static void test_failed_fill_leaves_the_values_as_they_were(void **state)
{
    (void)state;
    failing_allocator a;
    allocator_init(&a);
    jac_allocator hooks = {failing_alloc, failing_free, &a};
    jac_ctx *ctx = jac_ctx_new_with_allocator(&hooks);
    assert_non_null(ctx);
    jac_tensor *w =
        tu_tensor(ctx, TU_SHAPE(2, 4), TU_VALUES(1, 2, 3, 4, 5, 6, 7, 8));
    jac_tensor *view = jac_reshape(ctx, w, 1, TU_SHAPE(8));
    const double nine[8] = {9, 9, 9, 9, 9, 9, 9, 9};
    allocator_arm(&a, 1, true);
    assert_int_equal(jac_tensor_fill(w, nine), JAC_ERR_NO_MEMORY);
    tu_assert_contains(jac_errmsg(ctx), "tensor_fill");
    allocator_arm(&a, 0, false);
    tu_assert_tensor(w, TU_SHAPE(2, 4), TU_VALUES(1, 2, 3, 4, 5, 6, 7, 8), 0.0);
    jac_clear_error(ctx);
    tu_assert_ok(ctx, jac_tensor_fill(w, nine));
    tu_assert_tensor(view, TU_SHAPE(8), TU_VALUES(1, 2, 3, 4, 5, 6, 7, 8), 0.0);
    tu_assert_tensor(w, TU_SHAPE(2, 4), nine, 0.0);
    jac_ctx_free(ctx);
    assert_int_equal(a.live_blocks, 0);
    pthread_mutex_destroy(&a.lock);
}

/* jac_backward into two leaves, one with a .grad already (accumulated in
 * place) and one without (a new tensor): whichever allocation fails, either
 * both .grad are updated or neither is, and the pass's temporaries go. */
static void test_failed_backward_leaves_every_grad_as_it_was(void **state)
{
    (void)state;
    size_t points = 0;
    /* Pools absorb most allocations; extra tensors in front move the point
     * where the registry must grow across the whole pass. */
    for (int pad = 0; pad < 32; pad++)
        for (size_t k = 1;; k++) {
            failing_allocator a;
            allocator_init(&a);
            jac_allocator hooks = {failing_alloc, failing_free, &a};
            jac_ctx *ctx = jac_ctx_new_with_allocator(&hooks);
            assert_non_null(ctx);
            for (int i = 0; i < pad; i++) {
                assert_non_null(jac_scalar(ctx, 0.0));
            }
            jac_tensor *x = tu_leaf(ctx, TU_SHAPE(2), TU_VALUES(1, 2));
            jac_tensor *w = tu_tensor(ctx, TU_SHAPE(2), TU_VALUES(3, 5));
            jac_tensor *y = jac_sum(ctx, jac_mul(ctx, x, w));
            tu_assert_ok(ctx, jac_backward(ctx, y, NULL, JAC_RETAIN_GRAPH));
            tu_assert_tensor(jac_tensor_grad(x), TU_SHAPE(2), TU_VALUES(3, 5),
                             0.0);
            /* Now w requires gradients too: a second pass adds into x.grad and
             * makes w.grad. */
            tu_assert_ok(ctx, jac_set_requires_grad(w, true));
            jac_tensor *z = jac_sum(ctx, jac_mul(ctx, x, w));
            size_t tensors = jac_ctx_tensor_count(ctx);
            size_t memory = jac_ctx_memory(ctx);
            allocator_arm(&a, k, false);
            jac_status st = jac_backward(ctx, z, NULL, 0);
            allocator_arm(&a, 0, false);
            if (st == JAC_OK) {
                tu_assert_tensor(jac_tensor_grad(x), TU_SHAPE(2),
                                 TU_VALUES(6, 10), 0.0);
                tu_assert_tensor(jac_tensor_grad(w), TU_SHAPE(2),
                                 TU_VALUES(1, 2), 0.0);
                jac_ctx_free(ctx);
                assert_int_equal(a.live_blocks, 0);
                pthread_mutex_destroy(&a.lock);
                break;
            }
            points++;
            tu_assert_error(ctx, JAC_ERR_NO_MEMORY);
            tu_assert_tensor(jac_tensor_grad(x), TU_SHAPE(2), TU_VALUES(3, 5),
                             0.0);
            assert_null(jac_tensor_grad(w));
            /* Nothing of the failed pass stays behind, and memory taken from
             * the allocator went back to the pools. */
            assert_int_equal(jac_ctx_tensor_count(ctx), tensors);
            assert_true(jac_ctx_memory(ctx) >= memory);
            assert_accounting(&a, ctx);
            jac_clear_error(ctx);
            tu_assert_ok(ctx, jac_backward(ctx, z, NULL, 0));
            tu_assert_tensor(jac_tensor_grad(x), TU_SHAPE(2), TU_VALUES(6, 10),
                             0.0);
            jac_ctx_free(ctx);
            assert_int_equal(a.live_blocks, 0);
            pthread_mutex_destroy(&a.lock);
        }
    assert_true(points > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_run_is_consistent),
        cmocka_unit_test(test_context_creation_failure_holds_nothing),
        cmocka_unit_test(test_failed_op_names_itself_and_spares_its_inputs),
        cmocka_unit_test(test_failed_fill_leaves_the_values_as_they_were),
        cmocka_unit_test(test_failed_backward_leaves_every_grad_as_it_was),
        cmocka_unit_test(test_every_single_allocation_failure_is_clean),
        cmocka_unit_test(test_every_allocation_failing_from_k_on_is_clean),
        cmocka_unit_test(test_threaded_jacobian_allocation_failures_are_clean),
        cmocka_unit_test(test_program_allocation_failures_are_clean),
        cmocka_unit_test(test_sparse_allocation_failures_are_clean),
        cmocka_unit_test(test_threaded_program_allocation_failures_are_clean),
    };
    return cmocka_run_group_tests_name("alloc_fail", tests, NULL, NULL);
}
