/*
 * Threads: several threads, each with its own context, computing Jacobians
 * at once; the threaded Jacobian engine of one context (jac_ctx_set_threads)
 * giving the same bits as one thread; progress and cancellation from worker
 * threads; errors raised in a worker reaching the caller. Built with
 * -DJAC_TSAN=ON this suite runs under ThreadSanitizer (ctest -L threads).
 *
 * Worker threads never call cmocka: they record what they saw, and the main
 * thread checks it after joining them.
 *
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"

#include <pthread.h>

/* ------------------------------------------------------------------------ */
/* The functions                                                            */
/* ------------------------------------------------------------------------ */

#define NX 5
#define NY 6

/* f(x) for x (5): (6) values mixing matmul, elementwise ops, a reduction
 * and shape ops, so that every block of a Jacobian runs several rules. */
static jac_tensor *model(jac_ctx *ctx, jac_tensor *x)
{
    static const double w[4 * NX] = {0.5,  -0.2, 0.1,  0.3,  -0.4, 0.3, 0.4,
                                     -0.6, 0.2,  0.1,  -0.1, 0.2,  0.3, 0.5,
                                     -0.3, 0.7,  -0.5, 0.2,  0.1,  0.4};
    jac_tensor *W = jac_tensor_new(ctx, 2, TU_SHAPE(4, NX), w);
    jac_tensor *h = jac_tanh(ctx, jac_matmul(ctx, W, x));
    jac_tensor *s = jac_sin(ctx, jac_slice(ctx, x, 0, 1, NX, 1));
    jac_tensor *hs = jac_mul(ctx, h, s);
    jac_tensor *lse = jac_logsumexp(ctx, x, 0, NULL, false);
    jac_tensor *prod = jac_prod(ctx, jac_exp(ctx, jac_mul_scalar(ctx, x, 0.2)));
    jac_tensor *parts[3] = {hs, jac_reshape(ctx, lse, 1, TU_SHAPE(1)),
                            jac_reshape(ctx, prod, 1, TU_SHAPE(1))};
    return jac_concat(ctx, 3, parts, 0);
}

static jac_status model_fn(jac_ctx *ctx, jac_tensor *const *inputs,
                           jac_tensor **outputs, void *user)
{
    (void)user;
    outputs[0] = model(ctx, inputs[0]);
    return outputs[0] ? JAC_OK : jac_errcode(ctx);
}

static jac_status loss_fn(jac_ctx *ctx, jac_tensor *const *inputs,
                          jac_tensor **outputs, void *user)
{
    (void)user;
    outputs[0] = jac_sum(ctx, jac_square(ctx, model(ctx, inputs[0])));
    return outputs[0] ? JAC_OK : jac_errcode(ctx);
}

/* y = tanh(X) * X per row: for jac_batch_jacobian. */
static jac_status rowwise_fn(jac_ctx *ctx, jac_tensor *const *inputs,
                             jac_tensor **outputs, void *user)
{
    (void)user;
    outputs[0] = jac_mul(ctx, jac_tanh(ctx, inputs[0]), inputs[0]);
    return outputs[0] ? JAC_OK : jac_errcode(ctx);
}

static const double x_values[NX] = {0.3, -0.5, 0.8, 0.1, -0.2};

/* ------------------------------------------------------------------------ */
/* One round of work, and its reference                                     */
/* ------------------------------------------------------------------------ */

enum {
    R_ROWS,    /* reverse mode, row by row */
    R_BLOCKS,  /* reverse mode, blocks of 2 rows */
    R_FORWARD, /* forward mode, one column per pass */
    R_HESSIAN,
    R_BATCH,    /* jac_batch_jacobian */
    R_GRADGRAD, /* gradient of |grad|^2 through create-graph */
    R_FN,       /* jac_jacobian_fn, forward mode in blocks of 2 */
    R_COUNT
};

#define R_MAX (NY * NX)

typedef struct results {
    double v[R_COUNT][R_MAX];
    int64_t n[R_COUNT];
} results;

static bool copy_out(results *r, int k, const jac_tensor *t)
{
    if (t == NULL || jac_tensor_numel(t) > R_MAX) {
        return false;
    }
    r->n[k] = jac_tensor_numel(t);
    memcpy(r->v[k], jac_tensor_data(t), (size_t)r->n[k] * sizeof(double));
    return true;
}

/* Computes every result in ctx (inside a scope, released at the end).
 * Returns JAC_OK or the context's error. */
static jac_status compute(jac_ctx *ctx, results *r)
{
    jac_scope mark = jac_scope_begin(ctx);
    jac_status st = JAC_ERR_STATE;
    jac_tensor *x = jac_tensor_new(ctx, 1, TU_SHAPE(NX), x_values);
    if (x == NULL || jac_set_requires_grad(x, true) != JAC_OK) {
        goto done;
    }
    jac_tensor *y = model(ctx, x);
    const struct {
        int64_t chunk;
        jac_mode mode;
    } drivers[3] = {
        {1, JAC_MODE_REVERSE}, {2, JAC_MODE_REVERSE}, {1, JAC_MODE_FORWARD}};
    for (int k = 0; k < 3; k++) {
        jac_jacobian_opts o = {0, drivers[k].chunk, drivers[k].mode, NULL,
                               NULL};
        jac_tensor *J = NULL;
        if (y == NULL || jac_jacobian_ex(ctx, 1, &y, 1, &x, &o, &J) != JAC_OK ||
            !copy_out(r, R_ROWS + k, J)) {
            goto done;
        }
    }
    jac_jacobian_opts rows = {0, 1, JAC_MODE_REVERSE, NULL, NULL};
    if (!copy_out(r, R_HESSIAN, jac_hessian(ctx, loss_fn, NULL, x, &rows))) {
        goto done;
    }
    jac_tensor *X = jac_reshape(ctx, x, 2, TU_SHAPE(NX, 1));
    if (!copy_out(r, R_BATCH,
                  jac_batch_jacobian(ctx, rowwise_fn, NULL, X, &rows))) {
        goto done;
    }
    jac_jacobian_opts cols = {0, 2, JAC_MODE_FORWARD, NULL, NULL};
    jac_tensor *Jf = NULL;
    if (jac_jacobian_fn(ctx, model_fn, NULL, 1, &x, 1, &cols, &Jf) != JAC_OK ||
        !copy_out(r, R_FN, Jf)) {
        goto done;
    }
    jac_tensor *loss = jac_sum(ctx, jac_square(ctx, y)), *g = NULL, *gg = NULL;
    if (loss == NULL ||
        jac_grad(ctx, 1, &loss, NULL, 1, &x, JAC_CREATE_GRAPH, &g) != JAC_OK) {
        goto done;
    }
    jac_tensor *n = jac_sum(ctx, jac_square(ctx, g));
    if (n == NULL || jac_grad(ctx, 1, &n, NULL, 1, &x, 0, &gg) != JAC_OK ||
        !copy_out(r, R_GRADGRAD, gg)) {
        goto done;
    }
    st = JAC_OK;
done:
    if (st != JAC_OK && jac_errcode(ctx) != JAC_OK) {
        st = jac_errcode(ctx);
    }
    jac_scope_end(ctx, mark, NULL, 0);
    return st;
}

/* Index of the first result that differs in any bit, or -1. */
static int first_difference(const results *a, const results *b)
{
    for (int k = 0; k < R_COUNT; k++) {
        if (a->n[k] != b->n[k] ||
            memcmp(a->v[k], b->v[k], (size_t)a->n[k] * sizeof(double)) != 0) {
            return k;
        }
    }
    return -1;
}

static results reference;

static int setup_reference(void **state)
{
    (void)state;
    jac_ctx *ctx = jac_ctx_new();
    if (ctx == NULL) {
        return -1;
    }
    memset(&reference, 0, sizeof reference);
    jac_status st = compute(ctx, &reference);
    jac_ctx_free(ctx);
    return st == JAC_OK ? 0 : -1;
}

/* ------------------------------------------------------------------------ */
/* A thread-safe allocator shared by every context                          */
/* ------------------------------------------------------------------------ */

typedef struct shared_allocator {
    pthread_mutex_t lock;
    size_t live;
} shared_allocator;

static void *shared_alloc(size_t size, void *user)
{
    shared_allocator *a = user;
    void *p = malloc(size);
    if (p != NULL) {
        pthread_mutex_lock(&a->lock);
        a->live++;
        pthread_mutex_unlock(&a->lock);
    }
    return p;
}

static void shared_free(void *ptr, void *user)
{
    shared_allocator *a = user;
    if (ptr != NULL) {
        pthread_mutex_lock(&a->lock);
        a->live--;
        pthread_mutex_unlock(&a->lock);
    }
    free(ptr);
}

/* ------------------------------------------------------------------------ */
/* Several contexts at once                                                 */
/* ------------------------------------------------------------------------ */

typedef struct job {
    int threads; /* the engine's threads inside this job's context */
    int rounds;
    const jac_allocator *hooks; /* NULL: malloc */
    int mismatches;
    int errors;
    char message[256];
} job;

static void *job_main(void *arg)
{
    job *j = arg;
    jac_ctx *ctx =
        j->hooks ? jac_ctx_new_with_allocator(j->hooks) : jac_ctx_new();
    if (ctx == NULL || jac_ctx_set_threads(ctx, j->threads) != JAC_OK) {
        j->errors++;
        snprintf(j->message, sizeof j->message, "no context");
        jac_ctx_free(ctx);
        return NULL;
    }
    for (int r = 0; r < j->rounds; r++) {
        results got;
        memset(&got, 0, sizeof got);
        jac_status st = compute(ctx, &got);
        if (st != JAC_OK) {
            j->errors++;
            snprintf(j->message, sizeof j->message, "round %d: %s", r,
                     jac_errmsg(ctx));
            jac_clear_error(ctx);
            continue;
        }
        int k = first_difference(&got, &reference);
        if (k >= 0) {
            j->mismatches++;
            snprintf(j->message, sizeof j->message,
                     "round %d: result %d differs from one thread's", r, k);
        }
    }
    jac_ctx_free(ctx);
    return NULL;
}

static void run_jobs(job *jobs, int n)
{
    pthread_t ids[8];
    assert_true(n <= 8);
    for (int i = 0; i < n; i++) {
        assert_int_equal(pthread_create(&ids[i], NULL, job_main, &jobs[i]), 0);
    }
    for (int i = 0; i < n; i++) {
        pthread_join(ids[i], NULL);
    }
    for (int i = 0; i < n; i++) {
        if (jobs[i].errors || jobs[i].mismatches) {
            print_error("job %d (%d engine threads): %d errors, %d "
                        "mismatches; last: %s\n",
                        i, jobs[i].threads, jobs[i].errors, jobs[i].mismatches,
                        jobs[i].message);
        }
        assert_int_equal(jobs[i].errors, 0);
        assert_int_equal(jobs[i].mismatches, 0);
    }
}

static void
test_threads_with_their_own_contexts_compute_jacobians_at_once(void **state)
{
    (void)state;
    job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (job){1, 6, NULL, 0, 0, ""};
    }
    run_jobs(jobs, 4);
}

/* Contexts that each run a threaded engine, all at once, allocating
 * through one shared (locked) allocator. */
static void test_threaded_engines_in_several_contexts_run_at_once(void **state)
{
    (void)state;
    shared_allocator shared = {PTHREAD_MUTEX_INITIALIZER, 0};
    jac_allocator hooks = {shared_alloc, shared_free, &shared};
    job jobs[3];
    for (int i = 0; i < 3; i++) {
        jobs[i] = (job){2 + i, 4, &hooks, 0, 0, ""};
    }
    run_jobs(jobs, 3);
    assert_int_equal(shared.live, 0);
}

/* ------------------------------------------------------------------------ */
/* The threaded engine of one context                                       */
/* ------------------------------------------------------------------------ */

static void test_threaded_engine_gives_the_bits_of_one_thread(void **state)
{
    (void)state;
    jac_ctx *ctx = jac_ctx_new();
    assert_non_null(ctx);
    const int counts[] = {2, 3, 4, 8, 64};
    for (size_t i = 0; i < TU_COUNT(counts); i++) {
        tu_assert_ok(ctx, jac_ctx_set_threads(ctx, counts[i]));
        results got;
        memset(&got, 0, sizeof got);
        tu_assert_ok(ctx, compute(ctx, &got));
        int k = first_difference(&got, &reference);
        if (k >= 0) {
            print_error("%d threads: result %d differs\n", counts[i], k);
            fail();
        }
    }
    assert_int_equal(jac_ctx_tensor_count(ctx), 0);
    jac_ctx_free(ctx);
}

/* Progress from worker threads: counted under a lock by the library, so a
 * callback that is not thread-safe itself must never see two calls at
 * once. */
typedef struct progress_probe {
    int inside; /* calls running now (plain int: TSan flags a race) */
    int most;   /* most calls seen running at once */
    int64_t last, total, calls;
    int64_t cancel_at; /* return non-zero at this call (0: never) */
    bool monotonic;
} progress_probe;

static int probe_progress(int64_t done, int64_t total, void *user)
{
    progress_probe *p = user;
    p->inside++;
    if (p->inside > p->most) {
        p->most = p->inside;
    }
    p->monotonic = p->monotonic && done > p->last && done <= total;
    p->last = done;
    p->total = total;
    p->calls++;
    bool cancel = p->cancel_at != 0 && p->calls >= p->cancel_at;
    p->inside--;
    return cancel ? 1 : 0;
}

static void test_progress_is_never_called_concurrently(void **state)
{
    (void)state;
    jac_ctx *ctx = jac_ctx_new();
    tu_assert_ok(ctx, jac_ctx_set_threads(ctx, 4));
    jac_tensor *x =
        tu_leaf(ctx, TU_SHAPE(NX), TU_VALUES(0.3, -0.5, 0.8, 0.1, -0.2));
    jac_tensor *y = jac_exp(ctx, jac_outer(ctx, x, x)); /* (5, 5): 25 rows */
    const jac_mode modes[] = {JAC_MODE_REVERSE, JAC_MODE_FORWARD};
    for (size_t m = 0; m < TU_COUNT(modes); m++) {
        progress_probe p = {0, 0, 0, 0, 0, 0, true};
        jac_jacobian_opts o = {0, 1, modes[m], probe_progress, &p};
        jac_tensor *J = NULL;
        tu_assert_ok(ctx, jac_jacobian_ex(ctx, 1, &y, 1, &x, &o, &J));
        assert_int_equal(p.most, 1);
        assert_true(p.monotonic);
        assert_int_equal(p.last, p.total);
        assert_int_equal(p.calls, modes[m] == JAC_MODE_REVERSE ? 25 : NX);
    }
    jac_ctx_free(ctx);
}

static void test_cancelling_from_a_worker_stops_every_thread(void **state)
{
    (void)state;
    jac_ctx *ctx = jac_ctx_new();
    tu_assert_ok(ctx, jac_ctx_set_threads(ctx, 3));
    jac_tensor *x =
        tu_leaf(ctx, TU_SHAPE(NX), TU_VALUES(0.3, -0.5, 0.8, 0.1, -0.2));
    jac_tensor *y = jac_exp(ctx, jac_outer(ctx, x, x));
    size_t tensors = jac_ctx_tensor_count(ctx);
    for (int64_t at = 1; at <= 5; at++) {
        progress_probe p = {0, 0, 0, 0, 0, at, true};
        jac_jacobian_opts o = {0, 1, JAC_MODE_REVERSE, probe_progress, &p};
        jac_tensor *sentinel = (jac_tensor *)(void *)&p, *J = sentinel;
        assert_int_equal(jac_jacobian_ex(ctx, 1, &y, 1, &x, &o, &J),
                         JAC_ERR_CANCELLED);
        assert_ptr_equal(J, sentinel);
        assert_int_equal(p.calls, at); /* no call after the cancelling one */
        assert_int_equal(p.most, 1);
        tu_assert_error(ctx, JAC_ERR_CANCELLED);
        jac_clear_error(ctx);
        assert_int_equal(jac_ctx_tensor_count(ctx), tensors);
    }
    /* Still usable. */
    jac_tensor *J = jac_jacobian(ctx, y, x, 0);
    assert_non_null(J);
    tu_assert_close(&(double){jac_tensor_get(J, TU_SHAPE(0, 0, 0))},
                    &(double){2 * 0.3 * exp(0.09)}, 1, 1e-15, 0.0);
    jac_ctx_free(ctx);
}

/* A rule that fails in a worker (the derivative of det at a singular
 * matrix) reports its own message through the calling context. */
static void test_an_error_in_a_worker_reaches_the_caller(void **state)
{
    (void)state;
    jac_ctx *ctx = jac_ctx_new();
    tu_assert_ok(ctx, jac_ctx_set_threads(ctx, 2));
    jac_tensor *A = tu_leaf(ctx, TU_SHAPE(2, 2), TU_VALUES(1, 2, 2, 4));
    jac_tensor *flat = jac_reshape(ctx, A, 1, TU_SHAPE(4));
    jac_tensor *z = jac_mul(ctx, flat, jac_det(ctx, A)); /* (4) */
    size_t tensors = jac_ctx_tensor_count(ctx);
    jac_jacobian_opts o = {0, 1, JAC_MODE_REVERSE, NULL, NULL};
    jac_tensor *J = NULL;
    jac_status st = jac_jacobian_ex(ctx, 1, &z, 1, &A, &o, &J);
    if (st == JAC_OK) {
        /* A library may define the derivative of det at a singular
         * matrix; then it must agree with one thread. */
        tu_assert_ok(ctx, jac_ctx_set_threads(ctx, 1));
        jac_tensor *J1 = NULL;
        tu_assert_ok(ctx, jac_jacobian_ex(ctx, 1, &z, 1, &A, &o, &J1));
        assert_memory_equal(jac_tensor_data(J), jac_tensor_data(J1),
                            16 * sizeof(double));
    } else {
        assert_int_equal(st, JAC_ERR_VALUE);
        tu_assert_error(ctx, JAC_ERR_VALUE);
        tu_assert_contains(jac_errmsg(ctx), "det");
        assert_int_equal(jac_ctx_tensor_count(ctx), tensors);
    }
    jac_ctx_free(ctx);
}

/* ------------------------------------------------------------------------ */
/* One context, two threads                                                 */
/* ------------------------------------------------------------------------ */

typedef struct intruder {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool inside, done;
    jac_ctx *ctx;
    jac_tensor *x, *y;
    /* What the second thread saw. */
    jac_status grad_status, enter_status;
    bool op_refused;
} intruder;

/* The second thread: waits until the first is inside a Jacobian of the
 * context, then tries a gradient and an op on the same context. */
static void *intrude(void *arg)
{
    intruder *in = arg;
    pthread_mutex_lock(&in->lock);
    while (!in->inside)
        pthread_cond_wait(&in->cond, &in->lock);
    pthread_mutex_unlock(&in->lock);
    jac_tensor *g = NULL;
    in->grad_status = jac_grad(in->ctx, 1, &in->y, NULL, 1, &in->x, 0, &g);
    in->op_refused = jac_add(in->ctx, in->x, in->x) == NULL;
    in->enter_status =
        jac_scope_end(in->ctx, jac_scope_begin(in->ctx), NULL, 0);
    pthread_mutex_lock(&in->lock);
    in->done = true;
    pthread_cond_signal(&in->cond);
    pthread_mutex_unlock(&in->lock);
    return NULL;
}

/* The first thread's progress callback: lets the second in, and waits. */
static int hold_the_context(int64_t done, int64_t total, void *user)
{
    (void)done;
    (void)total;
    intruder *in = user;
    pthread_mutex_lock(&in->lock);
    in->inside = true;
    pthread_cond_signal(&in->cond);
    while (!in->done)
        pthread_cond_wait(&in->cond, &in->lock);
    pthread_mutex_unlock(&in->lock);
    return 0;
}

/* A second thread entering a context another thread is using is refused
 * with JAC_ERR_STATE (ops with NULL), touching nothing; the first thread's
 * call finishes as if alone. */
static void test_a_second_thread_in_a_busy_context_is_refused(void **state)
{
    (void)state;
    intruder in = {.inside = false, .done = false};
    pthread_mutex_init(&in.lock, NULL);
    pthread_cond_init(&in.cond, NULL);
    in.ctx = jac_ctx_new();
    assert_non_null(in.ctx);
    in.x = jac_tensor_new(in.ctx, 1, TU_SHAPE(NX),
                          TU_VALUES(0.1, 0.2, 0.3, 0.4, 0.5));
    jac_set_requires_grad(in.x, true);
    in.y = jac_sum(in.ctx, model(in.ctx, in.x));
    jac_tensor *f = model(in.ctx, in.x), *J = NULL;
    assert_non_null(in.y);
    assert_non_null(f);
    pthread_t id;
    assert_int_equal(pthread_create(&id, NULL, intrude, &in), 0);
    jac_jacobian_opts o = {0, 1, JAC_MODE_REVERSE, hold_the_context, &in};
    jac_status st = jac_jacobian_ex(in.ctx, 1, &f, 1, &in.x, &o, &J);
    assert_int_equal(pthread_join(id, NULL), 0);
    assert_int_equal(st, JAC_OK);
    assert_int_equal(in.grad_status, JAC_ERR_STATE);
    assert_true(in.op_refused);
    assert_int_equal(in.enter_status, JAC_ERR_STATE);
    tu_assert_no_error(in.ctx);
    /* Free again, the context serves the second thread's calls. */
    jac_tensor *g = NULL;
    tu_assert_ok(in.ctx, jac_grad(in.ctx, 1, &in.y, NULL, 1, &in.x, 0, &g));
    jac_ctx_free(in.ctx);
    pthread_cond_destroy(&in.cond);
    pthread_mutex_destroy(&in.lock);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_threads_with_their_own_contexts_compute_jacobians_at_once),
        cmocka_unit_test(test_threaded_engine_gives_the_bits_of_one_thread),
        cmocka_unit_test(test_threaded_engines_in_several_contexts_run_at_once),
        cmocka_unit_test(test_progress_is_never_called_concurrently),
        cmocka_unit_test(test_cancelling_from_a_worker_stops_every_thread),
        cmocka_unit_test(test_an_error_in_a_worker_reaches_the_caller),
        cmocka_unit_test(test_a_second_thread_in_a_busy_context_is_refused),
    };
    return cmocka_run_group_tests_name("threads", tests, setup_reference, NULL);
}
