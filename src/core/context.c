/*
 * The context: allocator and pools, error state, the tensor registry and
 * scopes (which release the tensors and nodes made after a mark; beside the
 * registry so that releasing a tensor inlines).
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/core.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

/* ------------------------------------------------------------------------ */
/* Version and status strings                                               */
/* ------------------------------------------------------------------------ */

int jac_version_number(void) { return JAC_VERSION_NUMBER; }

const char *jac_version_string(void) { return JAC_VERSION_STRING; }

const char *jac_status_string(jac_status status)
{
    switch (status) {
#define JAC__STATUS_TEXT(name, value, text)                                    \
    case name:                                                                 \
        return text;
        JAC_STATUS_TABLE(JAC__STATUS_TEXT)
#undef JAC__STATUS_TEXT
    }
    return "unknown status";
}

const char *jac_status_name(jac_status status)
{
    switch (status) {
#define JAC__STATUS_NAME(name, value, text)                                    \
    case name:                                                                 \
        return #name;
        JAC_STATUS_TABLE(JAC__STATUS_NAME)
#undef JAC__STATUS_NAME
    }
    return "JAC_UNKNOWN";
}

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

jac_status jac__error(jac_ctx *ctx, jac_status code, const char *fmt, ...)
{
    if (ctx == NULL || ctx->status != JAC_OK)
        return code;
    ctx->status = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->message, sizeof ctx->message, fmt, ap);
    va_end(ap);
    return code;
}

jac_status jac_errcode(const jac_ctx *ctx)
{
    return ctx ? ctx->status : JAC_ERR_NULL_ARG;
}

const char *jac_errmsg(const jac_ctx *ctx)
{
    if (ctx == NULL)
        return "context is NULL";
    return ctx->status == JAC_OK ? "" : ctx->message;
}

void jac_clear_error(jac_ctx *ctx)
{
    if (ctx) {
        ctx->status = JAC_OK;
        ctx->message[0] = '\0';
    }
}

const char *jac__shape_str(char *buf, size_t size, int ndim,
                           const int64_t *shape)
{
    size_t n = 0;
    n += (size_t)snprintf(buf, size, "(");
    /* A rank above the limit is being refused: its extents are not read. */
    int shown = ndim > JAC_MAX_DIMS ? 0 : ndim;
    for (int i = 0; i < shown && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%lld", i ? ", " : "",
                              (long long)shape[i]);
    if (n < size)
        snprintf(buf + n, size - n, ndim > JAC_MAX_DIMS ? "rank %d)" : ")",
                 ndim);
    return buf;
}

/* ------------------------------------------------------------------------ */
/* Memory                                                                   */
/* ------------------------------------------------------------------------ */

/* A chunk: its list link, up to 63 bytes to reach a cache line, then the
 * headers. */
#define HEADER_CHUNK_BYTES                                                     \
    (sizeof(void *) + 63 + JAC__HEADER_CHUNK * sizeof(jac_tensor))
_Static_assert(sizeof(jac_tensor) % 64 == 0,
               "tensor headers are whole cache lines");

static void *default_alloc(size_t size, void *user)
{
    (void)user;
    return malloc(size);
}

static void default_free(void *ptr, void *user)
{
    (void)user;
    free(ptr);
}

static void *raw_alloc(jac_ctx *ctx, size_t bytes)
{
    void *p = ctx->alloc.alloc(bytes, ctx->alloc.user);
    if (p)
        ctx->memory += bytes;
    return p;
}

static void raw_free(jac_ctx *ctx, void *ptr, size_t bytes)
{
    ctx->alloc.free(ptr, ctx->alloc.user);
    ctx->memory -= bytes;
}

/* Every block up to 64 MiB comes from per-class free lists (powers of two
 * from 64 bytes), so a loop that makes and releases the same tensors, tapes
 * and plans stops calling the allocator after its first iteration: no
 * allocator cost and no fresh pages in the hot path. */
static int size_class_of(size_t total)
{
    if (total <= 64)
        return 0;
    /* The smallest k with 64 << k >= total. */
    int k = 64 - __builtin_clzll((unsigned long long)(total - 1)) - 6;
    return k < JAC__POOL_CLASSES ? k : -1;
}

void *jac__alloc(jac_ctx *ctx, size_t bytes)
{
    int k = size_class_of(bytes);
    if (k < 0)
        return raw_alloc(ctx, bytes);
    void *p = ctx->pool[k];
    if (p) {
        ctx->pool[k] = *(void **)p;
        return p;
    }
    return raw_alloc(ctx, (size_t)64 << k);
}

void jac__free(jac_ctx *ctx, void *ptr, size_t bytes)
{
    if (ptr == NULL)
        return;
    int k = size_class_of(bytes);
    if (k < 0) {
        raw_free(ctx, ptr, bytes);
        return;
    }
    *(void **)ptr = ctx->pool[k];
    ctx->pool[k] = ptr;
}

jac_status jac__grow(jac_ctx *ctx, void **arr, size_t *cap, size_t need,
                     size_t elem)
{
    if (need <= *cap)
        return JAC_OK;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2 / elem)
            return JAC_ERR_NO_MEMORY;
        ncap *= 2;
    }
    void *p = jac__alloc(ctx, ncap * elem);
    if (p == NULL)
        return JAC_ERR_NO_MEMORY;
    if (*arr) {
        memcpy(p, *arr, *cap * elem);
        jac__free(ctx, *arr, *cap * elem);
    }
    *arr = p;
    *cap = ncap;
    return JAC_OK;
}

jac__buf *jac__buf_alloc(jac_ctx *ctx, size_t data_bytes)
{
    jac__buf *b = jac__alloc(ctx, sizeof(jac__buf) + data_bytes);
    if (b) {
        b->refcount = 1;
        b->bytes = data_bytes;
    }
    return b;
}

void jac__buf_release(jac_ctx *ctx, jac__buf *b)
{
    if (b != NULL && --b->refcount == 0)
        jac__free(ctx, b, sizeof(jac__buf) + b->bytes);
}

/* ------------------------------------------------------------------------ */
/* Context lifetime                                                         */
/* ------------------------------------------------------------------------ */

static void header_release(jac_ctx *ctx, jac_tensor *t);
static jac_tensor *header_carve(jac_ctx *ctx);

/* The checks JAC_CHECKS names: "stale", "anomaly" or "all", separated by
 * commas; anything else is ignored. */
static unsigned checks_from_environment(void)
{
    /* getenv races only with a concurrent setenv, which a program that
     * wants JAC_CHECKS to mean something does not do. */
    const char *v = getenv("JAC_CHECKS"); // NOLINT(concurrency-mt-unsafe)
    unsigned checks = 0;
    while (v && *v) {
        size_t n = strcspn(v, ",");
        if (n == 5 && strncmp(v, "stale", 5) == 0)
            checks |= JAC_CHECK_STALE;
        else if (n == 7 && strncmp(v, "anomaly", 7) == 0)
            checks |= JAC_CHECK_ANOMALY;
        else if (n == 3 && strncmp(v, "all", 3) == 0)
            checks |= JAC_CHECK_STALE | JAC_CHECK_ANOMALY;
        v += n + (v[n] == ',');
    }
    return checks;
}

jac_ctx *jac_ctx_new_with_allocator(const jac_allocator *allocator)
{
    if (allocator == NULL || allocator->alloc == NULL ||
        allocator->free == NULL)
        return NULL;
    jac_ctx *ctx = allocator->alloc(sizeof *ctx, allocator->user);
    if (ctx == NULL)
        return NULL;
    memset(ctx, 0, sizeof *ctx);
    atomic_init(&ctx->kept_bytes, 0);
    ctx->alloc = *allocator;
    ctx->grad_enabled = true;
    ctx->next_seq = 1;
    ctx->next_plan_id = 1;
    ctx->threads = 1;
    ctx->memory_budget = (size_t)64 << 20;
    ctx->checks = checks_from_environment();
    for (size_t i = 0; i < JAC__QUARANTINE; i++) {
        jac_tensor *t = header_carve(ctx);
        if (t == NULL) {
            jac_ctx_free(ctx);
            return NULL;
        }
        header_release(ctx, t);
    }
    return ctx;
}

jac_ctx *jac__ctx_worker_new(const jac_ctx *parent)
{
    jac_ctx *w = jac_ctx_new_with_allocator(&parent->alloc);
    if (w) {
        w->parent = parent;
        w->grad_enabled = false;
        w->checks = parent->checks;
    }
    return w;
}

jac_ctx *jac__ctx_worker(jac_ctx *parent, size_t index)
{
    if (index < parent->nworkers) {
        jac_clear_error(parent->workers[index]);
        parent->workers[index]->checks = parent->checks;
        return parent->workers[index];
    }
    if (jac__grow(parent, (void **)&parent->workers, &parent->cap_workers,
                  parent->nworkers + 1, sizeof(jac_ctx *)) != JAC_OK)
        return NULL;
    jac_ctx *w = jac__ctx_worker_new(parent);
    if (w)
        parent->workers[parent->nworkers++] = w;
    return w;
}

jac_status jac_ctx_set_threads(jac_ctx *ctx, int threads)
{
    if (ctx == NULL)
        return JAC_ERR_NULL_ARG;
    if (threads < 1 || threads > 256)
        return jac__error(ctx, JAC_ERR_VALUE,
                          "ctx_set_threads: %d threads is outside 1..256",
                          threads);
    ctx->threads = threads;
    return JAC_OK;
}

int jac_ctx_threads(const jac_ctx *ctx) { return ctx ? ctx->threads : 0; }

jac_status jac_ctx_set_checks(jac_ctx *ctx, unsigned checks)
{
    if (ctx == NULL)
        return JAC_ERR_NULL_ARG;
    if (checks & ~(unsigned)(JAC_CHECK_STALE | JAC_CHECK_ANOMALY))
        return jac__error(ctx, JAC_ERR_VALUE,
                          "ctx_set_checks: unknown check bits 0x%x", checks);
    ctx->checks = checks;
    return JAC_OK;
}

unsigned jac_ctx_checks(const jac_ctx *ctx) { return ctx ? ctx->checks : 0; }

jac_status jac_ctx_set_memory_budget(jac_ctx *ctx, size_t bytes)
{
    if (ctx == NULL)
        return JAC_ERR_NULL_ARG;
    if (bytes == 0)
        return jac__error(ctx, JAC_ERR_VALUE,
                          "ctx_set_memory_budget: the budget must be positive");
    ctx->memory_budget = bytes;
    return JAC_OK;
}

jac_ctx *jac_ctx_new(void)
{
    jac_allocator a = {default_alloc, default_free, NULL};
    return jac_ctx_new_with_allocator(&a);
}

void jac__section_close(jac_ctx *ctx)
{
    size_t n = ctx->section.nargs;
    if (ctx->section.args != NULL) {
        /* The arguments' requires_grad as it was before the recording. */
        const bool *was = (const bool *)(void *)(ctx->section.args + n);
        for (size_t i = 0; i < n; i++) {
            jac_tensor *t = ctx->section.args[i];
            if (t->magic == JAC__TENSOR_MAGIC && t->ctx == ctx && t->node < 0)
                t->requires_grad = was[i];
        }
    }
    jac__free(ctx, ctx->section.args, n * (sizeof(jac_tensor *) + 1) + 1);
    memset(&ctx->section, 0, sizeof ctx->section);
}

/* The kept hooks put the block's size in a header of alignment for any
 * type before the block. */
#define KEPT_HEADER sizeof(max_align_t)

static void *kept_alloc(size_t bytes, void *user)
{
    jac_ctx *ctx = user;
    if (bytes > SIZE_MAX - KEPT_HEADER)
        return NULL;
    unsigned char *p = ctx->alloc.alloc(bytes + KEPT_HEADER, ctx->alloc.user);
    if (p == NULL)
        return NULL;
    memcpy(p, &bytes, sizeof bytes);
    atomic_fetch_add(&ctx->kept_bytes, bytes + KEPT_HEADER);
    return p + KEPT_HEADER;
}

static void kept_free(void *ptr, void *user)
{
    jac_ctx *ctx = user;
    if (ptr == NULL)
        return;
    unsigned char *p = (unsigned char *)ptr - KEPT_HEADER;
    size_t bytes;
    memcpy(&bytes, p, sizeof bytes);
    atomic_fetch_sub(&ctx->kept_bytes, bytes + KEPT_HEADER);
    ctx->alloc.free(p, ctx->alloc.user);
}

jac_allocator jac__kept_hooks(jac_ctx *ctx)
{
    return (jac_allocator){.alloc = kept_alloc, .free = kept_free, .user = ctx};
}

void jac_ctx_free(jac_ctx *ctx)
{
    if (ctx == NULL)
        return;
    if (ctx->kept_drop != NULL)
        ctx->kept_drop(ctx);
    jac__section_close(ctx);
    for (size_t i = 0; i < ctx->nworkers; i++)
        jac_ctx_free(ctx->workers[i]);
    jac__free(ctx, ctx->workers, ctx->cap_workers * sizeof(jac_ctx *));
    jac__tape_truncate(ctx, 0);
    for (size_t i = 0; i < ctx->nblocks; i++)
        jac__free(ctx, ctx->blocks[i], JAC__NODE_BLOCK * sizeof(jac__node));
    jac__free(ctx, ctx->blocks, ctx->cap_blocks * sizeof(jac__node *));
    for (size_t i = 0; i < ctx->ntensors; i++)
        jac__tensor_release(ctx, ctx->tensors[i]);
    jac__free(ctx, ctx->tensors, ctx->cap_tensors * sizeof(jac_tensor *));
    while (ctx->header_chunks) {
        void *c = ctx->header_chunks;
        ctx->header_chunks = *(void **)c;
        raw_free(ctx, c, HEADER_CHUNK_BYTES);
    }
    for (int k = 0; k < JAC__POOL_CLASSES; k++) {
        while (ctx->pool[k]) {
            void *p = ctx->pool[k];
            ctx->pool[k] = *(void **)p;
            raw_free(ctx, p, (size_t)64 << k);
        }
    }
    jac_allocator a = ctx->alloc;
    a.free(ctx, a.user);
}

size_t jac_ctx_memory(const jac_ctx *ctx)
{
    if (ctx == NULL)
        return 0;
    size_t total = ctx->memory + atomic_load(&ctx->kept_bytes);
    for (size_t i = 0; i < ctx->nworkers; i++)
        total += sizeof(jac_ctx) + jac_ctx_memory(ctx->workers[i]);
    return total;
}

size_t jac_ctx_tensor_count(const jac_ctx *ctx)
{
    return ctx ? ctx->ntensors : 0;
}

size_t jac_ctx_tape_length(const jac_ctx *ctx) { return ctx ? ctx->nnodes : 0; }

bool jac_set_grad_enabled(jac_ctx *ctx, bool enabled)
{
    if (ctx == NULL)
        return false;
    bool old = ctx->grad_enabled;
    ctx->grad_enabled = enabled;
    return old;
}

bool jac_is_grad_enabled(const jac_ctx *ctx)
{
    return ctx ? ctx->grad_enabled : false;
}

/* ------------------------------------------------------------------------ */
/* Tensors: allocation and registry                                         */
/* ------------------------------------------------------------------------ */

int64_t jac__numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return -1;
        if (shape[i] != 0 && n > INT64_MAX / shape[i])
            return -1;
        n *= shape[i];
    }
    return n;
}

static void header_release(jac_ctx *ctx, jac_tensor *t)
{
    t->magic = JAC__TENSOR_DEAD;
    t->grad = NULL;
    if (ctx->free_tail)
        ctx->free_tail->grad = t;
    else
        ctx->free_head = t;
    ctx->free_tail = t;
    ctx->nfree++;
}

/* A fresh header from the current chunk, or from a new one. */
static jac_tensor *header_carve(jac_ctx *ctx)
{
    if (ctx->header_left == 0) {
        char *c = raw_alloc(ctx, HEADER_CHUNK_BYTES);
        if (c == NULL)
            return NULL;
        *(void **)c = ctx->header_chunks;
        ctx->header_chunks = c;
        /* The first 64-byte boundary past the link, reached from c (not
         * made from an integer, which hides where the pointer points). */
        char *first = c + sizeof(void *);
        first += -(uintptr_t)first & 63;
        ctx->header_next = (jac_tensor *)(void *)first;
        ctx->header_left = JAC__HEADER_CHUNK;
    }
    ctx->header_left--;
    return ctx->header_next++;
}

/* A released header once JAC__QUARANTINE later ones have been released,
 * never under JAC_CHECK_STALE; else a fresh one. */
static jac_tensor *header_alloc(jac_ctx *ctx)
{
    if (ctx->nfree >= JAC__QUARANTINE && !(ctx->checks & JAC_CHECK_STALE)) {
        jac_tensor *t = ctx->free_head;
        ctx->free_head = t->grad;
        if (ctx->free_head == NULL)
            ctx->free_tail = NULL;
        ctx->nfree--;
        return t;
    }
    return header_carve(ctx);
}

/* Makes a header for buf (taking its reference) and registers it. */
static jac_tensor *tensor_register(jac_ctx *ctx, const char *op, int ndim,
                                   const int64_t *shape, int64_t numel,
                                   jac__buf *buf)
{
    if (ctx->ntensors == ctx->cap_tensors &&
        jac__grow(ctx, (void **)&ctx->tensors, &ctx->cap_tensors,
                  ctx->ntensors + 1, sizeof(jac_tensor *)) != JAC_OK) {
        jac__error(ctx, JAC_ERR_NO_MEMORY, "%s: out of memory", op);
        return NULL;
    }
    jac_tensor *t = header_alloc(ctx);
    if (t == NULL) {
        jac__error(ctx, JAC_ERR_NO_MEMORY, "%s: out of memory", op);
        return NULL;
    }
    t->magic = JAC__TENSOR_MAGIC;
    t->ndim = ndim;
    if (ndim > 0)
        memcpy(t->shape, shape, (size_t)ndim * sizeof(int64_t));
    t->numel = numel;
    t->buf = buf;
    t->data = buf ? JAC__BUF_DATA(buf) : t->small;
    t->ctx = ctx;
    t->node = -1;
    t->slot = ctx->ntensors;
    t->seq = ctx->next_seq++;
    t->assigned_seq = 0;
    t->grad = NULL;
    t->requires_grad = false;
    t->keep = false;
    /* Made inside a derivative pass or driver during a recording: computed
     * from the inputs' values, it has no history a replay could follow
     * unless an op records it (jac__tape_append then makes it a node's). */
    t->untracked = ctx->section.open && ctx->depth > ctx->section.depth;
    t->stamp = 0;
    t->plan_slot = -1;
    ctx->tensors[ctx->ntensors++] = t;
    return t;
}

/* Whether the product of the non-zero extents of a shape (with no negative
 * extent) fits in int64: then so does every stride, also of an empty tensor
 * such as (0, 2^62, 4), whose kernels still multiply its extents. */
static bool extents_fit(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == 0)
            continue;
        if (shape[i] > INT64_MAX / n)
            return false;
        n *= shape[i];
    }
    return true;
}

jac_tensor *jac__tensor_alloc(jac_ctx *ctx, const char *op, int ndim,
                              const int64_t *shape)
{
    char s[JAC__SHAPE_STR_MAX];
    if (ndim < 0 || ndim > JAC_MAX_DIMS) {
        jac__error(ctx, JAC_ERR_RANK, "%s: rank %d is outside 0..%d", op, ndim,
                   JAC_MAX_DIMS);
        return NULL;
    }
    if (ndim > 0 && shape == NULL) {
        jac__error(ctx, JAC_ERR_NULL_ARG, "%s: shape is NULL", op);
        return NULL;
    }
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            jac__error(ctx, JAC_ERR_VALUE, "%s: negative extent in shape %s",
                       op, jac__shape_str(s, sizeof s, ndim, shape));
            return NULL;
        }
    }
    int64_t numel = jac__numel(ndim, shape);
    if (numel < 0 || (uint64_t)numel > (SIZE_MAX - 4096) / sizeof(double) ||
        !extents_fit(ndim, shape)) {
        jac__error(ctx, JAC_ERR_OVERFLOW,
                   "%s: element count of shape %s overflows", op,
                   jac__shape_str(s, sizeof s, ndim, shape));
        return NULL;
    }
    jac__buf *buf = NULL;
    if (numel > JAC__INLINE_NUMEL &&
        (buf = jac__buf_alloc(ctx, (size_t)numel * sizeof(double))) == NULL) {
        jac__error(ctx, JAC_ERR_NO_MEMORY,
                   "%s: out of memory for shape %s (%llu bytes)", op,
                   jac__shape_str(s, sizeof s, ndim, shape),
                   (unsigned long long)numel * sizeof(double));
        return NULL;
    }
    jac_tensor *t = tensor_register(ctx, op, ndim, shape, numel, buf);
    if (t == NULL)
        jac__buf_release(ctx, buf);
    return t;
}

jac_tensor *jac__tensor_like(jac_ctx *ctx, const char *op,
                             const jac_tensor *like)
{
    if (like->numel > JAC__INLINE_NUMEL)
        return jac__tensor_alloc(ctx, op, like->ndim, like->shape);
    /* A shape that already exists needs no checks. */
    return tensor_register(ctx, op, like->ndim, like->shape, like->numel, NULL);
}

jac_tensor *jac__tensor_view(jac_ctx *ctx, jac_tensor *t, int ndim,
                             const int64_t *shape)
{
    if (t->ctx != ctx || t->buf == NULL) {
        jac_tensor *c = jac__tensor_alloc(ctx, "reshape", ndim, shape);
        if (c)
            memcpy(c->data, t->data, (size_t)t->numel * sizeof(double));
        return c;
    }
    if (!extents_fit(ndim, shape)) {
        char s[JAC__SHAPE_STR_MAX];
        jac__error(ctx, JAC_ERR_OVERFLOW,
                   "reshape: element count of shape %s overflows",
                   jac__shape_str(s, sizeof s, ndim, shape));
        return NULL;
    }
    t->buf->refcount++;
    jac_tensor *v =
        tensor_register(ctx, "reshape", ndim, shape, t->numel, t->buf);
    if (v == NULL)
        t->buf->refcount--;
    return v;
}

jac_tensor *jac__tensor_wrap(jac_ctx *ctx, const char *op, int ndim,
                             const int64_t *shape, jac__buf *buf)
{
    jac_tensor *t =
        tensor_register(ctx, op, ndim, shape, jac__numel(ndim, shape), buf);
    if (t == NULL)
        jac__buf_release(ctx, buf);
    return t;
}

void jac__tensor_release(jac_ctx *ctx, jac_tensor *t)
{
    jac__buf_release(ctx, t->buf);
    t->buf = NULL;
    t->data = NULL;
    header_release(ctx, t);
}

/* This thread's token: the address of a thread-local byte. */
#if defined(__GNUC__)
__attribute__((tls_model("initial-exec")))
#endif
static _Thread_local char thread_token;

jac_status jac__enter(jac_ctx *ctx)
{
    if (ctx == NULL)
        return JAC_OK;
    const void *me = &thread_token, *none = NULL;
    if (atomic_compare_exchange_strong_explicit(&ctx->holder, &none, me,
                                                memory_order_acquire,
                                                memory_order_relaxed)) {
        ctx->depth = 1;
        return JAC_OK;
    }
    if (none == me) {
        ctx->depth++;
        return JAC_OK;
    }
    return JAC_ERR_STATE;
}

void jac__leave(jac_ctx *ctx)
{
    if (ctx != NULL && --ctx->depth == 0)
        atomic_store_explicit(&ctx->holder, NULL, memory_order_release);
}

/* Whether another thread is inside a call that holds ctx. */
static bool held_elsewhere(const jac_ctx *ctx)
{
    const void *h = atomic_load_explicit(&ctx->holder, memory_order_relaxed);
    return h != NULL && h != &thread_token;
}

bool jac__check_arg(jac_ctx *ctx, const char *op, const jac_tensor *t)
{
    if (__builtin_expect(held_elsewhere(ctx), 0))
        return false; /* the other thread owns ctx's error state */
    if (t == NULL) {
        jac__error(ctx, JAC_ERR_NULL_ARG, "%s: tensor argument is NULL", op);
        return false;
    }
    if (t->magic != JAC__TENSOR_MAGIC) {
        jac__error(ctx, JAC_ERR_CONTEXT,
                   "%s: tensor was released (used after its scope ended)", op);
        return false;
    }
    if (t->ctx != ctx && t->ctx != ctx->parent) {
        jac__error(ctx, JAC_ERR_CONTEXT,
                   "%s: tensor belongs to another context", op);
        return false;
    }
    return true;
}

jac_status jac__check_named(jac_ctx *ctx, const char *op, const jac_tensor *t,
                            const char *what, size_t index)
{
    if (t == NULL)
        return jac__error(ctx, JAC_ERR_NULL_ARG, "%s: %s %zu is NULL", op, what,
                          index);
    return jac__check_arg(ctx, op, t) ? JAC_OK : JAC_ERR_CONTEXT;
}

/* ------------------------------------------------------------------------ */
/* Scopes                                                                   */
/* ------------------------------------------------------------------------ */

jac_scope jac_scope_begin(jac_ctx *ctx)
{
    jac_scope s = {0, 0};
    if (ctx) {
        s.tensors = ctx->ntensors;
        s.nodes = ctx->nnodes;
    }
    return s;
}

/* Keeps the .grad of a surviving tensor when it was made inside the scope. */
static bool keep_grad(const jac_tensor *t, size_t mark)
{
    jac_tensor *g = t->grad;
    if (g && g->slot >= mark && !g->keep) {
        g->keep = true;
        return true;
    }
    return false;
}

static jac_status scope_end_unguarded(jac_ctx *ctx, jac_scope mark,
                                      jac_tensor *const *keep, size_t nkeep)
{
    if (ctx == NULL)
        return JAC_ERR_NULL_ARG;
    if (mark.tensors > ctx->ntensors || mark.nodes > ctx->nnodes)
        return jac__error(ctx, JAC_ERR_VALUE,
                          "scope_end: the mark is newer than the context "
                          "(ended twice, or out of order?)");
    if (nkeep > 0 && keep == NULL)
        return jac__error(ctx, JAC_ERR_NULL_ARG, "scope_end: keep is NULL");
    for (size_t i = 0; i < nkeep; i++) {
        if (keep[i] == NULL)
            continue;
        if (!jac__check_arg(ctx, "scope_end", keep[i]))
            return ctx->status;
    }
    for (size_t i = 0; i < nkeep; i++)
        if (keep[i])
            keep[i]->keep = true;
    /* No .grad inside the scope: none to keep, and no walk over the
     * tensors older than the scope. */
    bool changed = ctx->grad_bound > mark.tensors;
    for (size_t i = 0; changed && i < mark.tensors; i++)
        keep_grad(ctx->tensors[i], mark.tensors);
    while (changed) {
        changed = false;
        for (size_t i = mark.tensors; i < ctx->ntensors; i++)
            if (ctx->tensors[i]->keep)
                changed |= keep_grad(ctx->tensors[i], mark.tensors);
    }

    size_t w = mark.tensors;
    for (size_t i = mark.tensors; i < ctx->ntensors; i++) {
        jac_tensor *t = ctx->tensors[i];
        if (t->keep) {
            t->keep = false;
            if (t->node >= 0) {
                t->node = -1;
                t->requires_grad = false;
            }
            t->slot = w;
            ctx->tensors[w++] = t;
        } else {
            jac__tensor_release(ctx, t);
        }
    }
    for (size_t i = 0; i < nkeep; i++)
        if (keep[i])
            keep[i]->keep = false;
    ctx->ntensors = w;
    if (ctx->grad_bound > w)
        ctx->grad_bound = w; /* the survivors moved down, never up */
    jac__tape_truncate(ctx, mark.nodes);
    return JAC_OK;
}

/* One thread at a time: see jac__enter. */
jac_status jac_scope_end(jac_ctx *ctx, jac_scope mark, jac_tensor *const *keep,
                         size_t nkeep)
{
    JAC__HELD(ctx, jac_status, JAC_ERR_STATE,
              scope_end_unguarded(ctx, mark, keep, nkeep));
}

jac_status jac__check_inputs(jac_ctx *ctx, const char *op, size_t n,
                             jac_tensor *const *inputs, size_t *no_grad)
{
    for (size_t i = 0; i < n; i++) {
        jac_status st = jac__check_named(ctx, op, inputs[i], "input", i);
        if (st != JAC_OK)
            return st;
        if (!inputs[i]->requires_grad) {
            *no_grad = i;
            return JAC_OK;
        }
    }
    *no_grad = n;
    return JAC_OK;
}
