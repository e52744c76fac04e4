/*
 * The core layer: contexts, memory pools, errors, tensors, the tape that
 * ops append to, and broadcasting. It knows nothing of any particular op:
 * a tape node holds an op number and the op's parameters, and the op layer
 * (src/ops/ops.h) says what the numbers mean.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JAC_CORE_H
#define JAC_CORE_H

#include "jacobian.h"

#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Tensors                                                                  */
/* ------------------------------------------------------------------------ */

#define JAC__TENSOR_MAGIC 0x4a414354u /* "JACT" */
#define JAC__QUARANTINE 256
#define JAC__HEADER_CHUNK 256
#define JAC__TENSOR_DEAD 0xdeadbeefu
#define JAC__MARKS 64 /* leaves whose marking the context remembers */

/* Reference-counted storage: reshape shares it instead of copying. */
typedef struct jac__buf {
    int64_t refcount;
    size_t bytes;    /* usable bytes after the header */
    int64_t pad_[2]; /* a 32-byte header keeps the data aligned */
    /* double data[] follows, 16-byte aligned */
} jac__buf;

#define JAC__BUF_DATA(b) ((double *)(void *)((char *)(b) + sizeof(jac__buf)))

/* For the loops that stream cotangent blocks: with GCC on x86-64, also
 * compiled for AVX2 and AVX-512, the variant picked when the library loads
 * (by the CPU it runs on), so one portable build still uses wide vectors.
 * Without -ffast-math and with FP contraction off (ISO C), every variant
 * computes the same bits. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) &&         \
    !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define JAC__VECTORIZED                                                        \
    __attribute__((target_clones("default", "avx2", "arch=x86-64-v4")))
#else
#define JAC__VECTORIZED
#endif

/* For a helper that takes the op as an argument: inlined into each caller,
 * where the op is a constant, so its switch folds to the one case. */
#if defined(__GNUC__)
#define JAC__FOLD inline __attribute__((always_inline))
#else
#define JAC__FOLD inline
#endif

/* Tensors of up to this many elements keep their values in the header: no
 * storage block to allocate, release or miss in the cache. */
#define JAC__INLINE_NUMEL 4

/* Three cache lines, ordered by use: the first holds what building and
 * running backward plans and ending scopes read for every tensor (they walk
 * tens of thousands of headers per call), the second the inline values and
 * bookkeeping, the third the shape. */
struct jac_tensor {
    _Alignas(64) uint32_t magic;
    int ndim;
    int64_t numel;
    double *data;  /* into buf, or into small */
    jac__buf *buf; /* NULL for inline values */
    int64_t node;  /* tape index of the op that made it; -1 for leaves */
    /* Scratch for building a backward plan (single-threaded): */
    uint64_t stamp;   /* plan id that last visited this tensor */
    jac_tensor *grad; /* gradient accumulated by jac_backward */
    int32_t plan_slot;
    bool requires_grad;
    bool keep; /* scratch for jac_scope_end */
    /* Made by an op that ran with recording off although an input required
     * gradients (or from such a tensor), or detached: it lost its history,
     * which messages about unused inputs then say. */
    bool untracked;
    double small[JAC__INLINE_NUMEL];
    jac_ctx *ctx;
    size_t slot;  /* position in the context's tensor registry */
    uint64_t seq; /* creation order, strictly increasing */
    /* The context's next_seq when jac_tensor_fill or jac_tensor_assign last
     * replaced its values (0: never): a node made before then used the old
     * values, and a backward pass through it is refused. */
    uint64_t assigned_seq;
    int64_t shape[JAC_MAX_DIMS];
};

/* Whether t alone holds its values, so that they may change in place. */
static inline bool jac__sole_owner(const jac_tensor *t)
{
    return t->buf == NULL || t->buf->refcount == 1;
}

/* ------------------------------------------------------------------------ */
/* Tape nodes                                                               */
/* ------------------------------------------------------------------------ */

#define JAC__NODE_INLINE_INPUTS 2

typedef struct jac__node {
    int op; /* a jac__op of the op layer */
    int nin;
    bool released;
    /* For an elementwise op on one-element tensors: d out / d in[j], taken
     * when the op ran, so that an unrecorded pass needs nothing else. */
    bool has_partials;
    /* User code read the output's values (jac_tensor_data, _item, _get)
     * while a recorded function was being recorded (see jac__section). */
    bool read;
    double partial[2];
    jac_tensor *in_inline[JAC__NODE_INLINE_INPUTS];
    jac_tensor **in; /* points at in_inline, or at a pooled array for more */
    jac_tensor *out;
    /* Op parameters that the backward rule needs besides the tensors (the
     * tag, like any in C, has file scope: jac__params below). */
    union jac__params {
        double scalar; /* pow_scalar */
        struct {
            double alpha, beta; /* y = alpha * x + beta */
            bool divide;        /* y = x / beta (alpha = 1 / beta) */
        } affine; /* and the functions' parameters (functions.c) */
        struct {
            int axis;
            int64_t start, stop, step;
        } slice; /* slice, slice_scatter */
        struct {
            int axis0, axis1;
        } transpose;
        struct {
            uint32_t axes_mask;
            bool keepdim;
        } reduce; /* sum, prod, max, min, norm */
        struct {
            uint32_t axes_mask;
            int dir; /* +1 along the axes' order, -1 against it */
        } scan;      /* ops that run along axes: shifts, scans, running sums */
        struct {
            int nlead; /* leading axes kept as they are (sum_to) */
        } sum_to;
        struct {
            int axis;
        } concat;
        struct {
            int axis;  /* past the nlead leading axes (gather) */
            int nlead; /* leading axes the index does not cover */
        } index;       /* index_select, index_add, gather, scatter_add */
        struct {
            double lo, hi;
        } clamp;
        struct {
            int8_t perm[JAC_MAX_DIMS]; /* axis i of out is axis perm[i] */
        } permute;
        struct {
            int64_t offset;   /* > 0 above the main diagonal */
            int axis1, axis2; /* of the tensor holding the full matrix */
        } diagonal;           /* diagonal, diag_embed */
        struct {
            bool vector; /* b is (..., n) rather than (..., n, k) */
        } solve;
        struct {
            bool lower; /* which triangle of the matrix is read */
            bool trans; /* solve with its transpose */
        } triangular;   /* triangular_solve */
        struct {
            bool vectors; /* computed with the eigenvectors (eigh_values) */
        } eigh;
        struct {
            uint32_t axes_mask;
            bool finite_only; /* an infinite maximum becomes 0 */
        } shift;              /* max_shift */
    } p;
} jac__node;

typedef union jac__params jac__params;

/* Nodes live in fixed blocks so that pointers stay valid while a backward
 * rule records new nodes (create-graph). */
#define JAC__NODE_BLOCK_BITS 10
#define JAC__NODE_BLOCK (1u << JAC__NODE_BLOCK_BITS)

/* ------------------------------------------------------------------------ */
/* Context                                                                  */
/* ------------------------------------------------------------------------ */

/* Pool classes: 64 bytes << k. Larger blocks go to the allocator directly. */
#define JAC__POOL_CLASSES 21

struct jac_ctx {
    jac_allocator alloc;
    size_t memory; /* bytes held from the allocator */

    /* A worker context (one per thread of a threaded Jacobian) reads the
     * tensors and tape of its parent; everything it makes is its own. */
    const jac_ctx *parent;
    int threads;
    size_t memory_budget;
    /* The worker contexts of this context's threaded Jacobians, kept with
     * their pools from one call to the next. */
    jac_ctx **workers;
    size_t nworkers, cap_workers;

    jac_status status;
    char message[512];

    bool grad_enabled;
    unsigned checks; /* jac_check_flags */
    /* The thread inside a call that runs passes over the context (a token
     * of it), or NULL; depth counts that thread's nested calls. */
    _Atomic(const void *) holder;
    int depth;
    /* The largest assigned_seq of any tensor: 0 while no value was ever
     * replaced in place, which spares backward passes the check. */
    uint64_t assigned_seq_max;
    /* The latest leaves marked with jac_set_requires_grad, in a ring: when
     * an input reaches no output, whether it was marked after the output
     * was computed tells the user why. */
    struct {
        const jac_tensor *t;
        uint64_t seq, at; /* its seq (it may be released), next_seq then */
    } marks[JAC__MARKS];
    unsigned nmarks;
    uint64_t next_seq;
    uint64_t next_plan_id;

    /* An open recording of a recorded function (jac_program_begin): its
     * inputs then its parameters, the tape length and next_seq when it
     * began, and the first of them whose values user code read since. */
    struct jac__section {
        bool open;
        bool arg_read;
        size_t read_arg;
        size_t start;
        uint64_t start_seq;
        int depth; /* ctx->depth of the code being recorded */
        size_t ninputs, nargs;
        jac_tensor **args;
    } section;

    /* Registry of live tensors in creation order. */
    jac_tensor **tensors;
    size_t ntensors, cap_tensors;
    /* Above the registry position of every tensor that is some tensor's
     * .grad, so that jac_scope_end looks for .grads only when one may lie
     * inside the scope. */
    size_t grad_bound;

    /* Tape: nodes in blocks. */
    jac__node **blocks;
    size_t nblocks, cap_blocks;
    size_t nnodes;
    size_t nodes_with_arrays; /* nodes whose inputs live in a pooled array */

    /* Free lists. */
    /* Released tensor headers wait in a FIFO queue (linked through ->grad)
     * that always holds JAC__QUARANTINE of them: a header is reused only
     * after that many later releases, so a stale pointer is reported as
     * released rather than silently aliasing a new tensor. The queue starts
     * full, so memory is flat from the first iteration. */
    jac_tensor *free_head, *free_tail;
    size_t nfree;
    /* Headers are carved, cache-line aligned, from chunks of
     * JAC__HEADER_CHUNK (a list through each chunk's first word) and never
     * return to the allocator before the context goes. */
    void *header_chunks;
    jac_tensor *header_next;
    size_t header_left;
    void *pool[JAC__POOL_CLASSES];

    /* What a layer above keeps from one call to the next (the dense
     * drivers' last sparse plan, sparse/dense.c); kept_drop frees it at
     * jac_ctx_free. Its blocks come from jac__kept_hooks, which count them
     * in kept_bytes (part of jac_ctx_memory), from any thread. */
    void *kept;
    void (*kept_drop)(jac_ctx *ctx);
    _Atomic size_t kept_bytes;
};

/* ------------------------------------------------------------------------ */
/* Context services (context.c)                                             */
/* ------------------------------------------------------------------------ */

/* Records an error unless one is already kept; always returns code. */
jac_status jac__error(jac_ctx *ctx, jac_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* The same double, bit for bit (a NaN is itself; -0 is not 0). */
static inline bool jac__same_bits(double a, double b)
{
    uint64_t x, y;
    memcpy(&x, &a, sizeof x);
    memcpy(&y, &b, sizeof y);
    return x == y;
}

void *jac__alloc(jac_ctx *ctx, size_t bytes);
/* Hooks over ctx's allocator that count what they hold in ctx->kept_bytes
 * (thread-safe when ctx's own hooks are): for what the context keeps
 * between calls in objects with allocators of their own (programs). */
jac_allocator jac__kept_hooks(jac_ctx *ctx);
void jac__free(jac_ctx *ctx, void *ptr, size_t bytes);
/* Grows *arr (elements of size elem) to hold at least need; JAC_OK or OOM. */
jac_status jac__grow(jac_ctx *ctx, void **arr, size_t *cap, size_t need,
                     size_t elem);

/* A new tensor of the given shape, uninitialised data (registered).
 * Checks rank, extents and overflow; op names the caller in messages. */
jac_tensor *jac__tensor_alloc(jac_ctx *ctx, const char *op, int ndim,
                              const int64_t *shape);
/* A new tensor with t's values in another shape of equal numel: shares t's
 * storage, or copies it when t belongs to a parent context (sharing would
 * update the parent's reference count from a worker thread). */
jac_tensor *jac__tensor_view(jac_ctx *ctx, jac_tensor *t, int ndim,
                             const int64_t *shape);
/* Storage of data_bytes (refcount 1), and dropping a reference to it. */
/* As jac__tensor_alloc with like's shape (quicker for tiny tensors). */
jac_tensor *jac__tensor_like(jac_ctx *ctx, const char *op,
                             const jac_tensor *like);
jac__buf *jac__buf_alloc(jac_ctx *ctx, size_t data_bytes);
void jac__buf_release(jac_ctx *ctx, jac__buf *b);
/* A new tensor over buf (taking its reference; released on failure); buf
 * must hold the shape's element count. */
jac_tensor *jac__tensor_wrap(jac_ctx *ctx, const char *op, int ndim,
                             const int64_t *shape, jac__buf *buf);
/* Frees a tensor's header and its reference to storage (not its grad). */
void jac__tensor_release(jac_ctx *ctx, jac_tensor *t);

/* The node at tape index i. */
static inline jac__node *jac__node_at(const jac_ctx *ctx, int64_t i)
{
    size_t u = (size_t)i;
    return &ctx->blocks[u >> JAC__NODE_BLOCK_BITS][u & (JAC__NODE_BLOCK - 1)];
}

/* One context, one thread at a time. The calls that run passes over the
 * context (jac_grad, the drivers, the checks, scope ends) take it for their
 * duration: jac__enter returns JAC_ERR_STATE, touching nothing else of ctx,
 * when another thread is inside such a call (nested calls of the same
 * thread are fine; NULL ctx passes through), and jac__leave ends the call.
 * Ops refuse (jac__check_arg) while another thread holds the context. */
jac_status jac__enter(jac_ctx *ctx);
void jac__leave(jac_ctx *ctx);
/* The body of such a call: returns what call returns, or refused when
 * another thread holds ctx. */
#define JAC__HELD(ctx, type, refused, call)                                    \
    do {                                                                       \
        if (jac__enter(ctx) != JAC_OK)                                         \
            return refused;                                                    \
        type held_result_ = (call);                                            \
        jac__leave(ctx);                                                       \
        return held_result_;                                                   \
    } while (0)

/* Validates a tensor argument of op: non-NULL (without a new error when one
 * is already kept), alive, and owned by ctx. */
bool jac__check_arg(jac_ctx *ctx, const char *op, const jac_tensor *t);

/* The prologue of an op on n tensors: false when ctx is NULL or when
 * jac__check_arg fails for one of ts[0], ..., ts[n - 1] (checked in that
 * order; the first failure is the error reported). */
static inline bool jac__check_args(jac_ctx *ctx, const char *op, size_t n,
                                   jac_tensor *const *ts)
{
    if (ctx == NULL)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!jac__check_arg(ctx, op, ts[i]))
            return false;
    return true;
}

/* Like jac__check_arg for a numbered argument of a driver ("input 2"):
 * returns JAC_OK, or the error recorded (JAC_ERR_NULL_ARG naming the
 * argument, or JAC_ERR_CONTEXT). */
jac_status jac__check_named(jac_ctx *ctx, const char *op, const jac_tensor *t,
                            const char *what, size_t index);

/* The inputs of a differentiation, inputs[0 .. n - 1], checked in order with
 * jac__check_named ("input i"): returns its error, or JAC_OK with *no_grad
 * the first input that does not require gradients (n when all do), which
 * the caller reports in its own words. */
jac_status jac__check_inputs(jac_ctx *ctx, const char *op, size_t n,
                             jac_tensor *const *inputs, size_t *no_grad);

/* Sets t's .grad to g (a tensor of g->ctx's registry). */
static inline void jac__set_grad(jac_tensor *t, jac_tensor *g)
{
    t->grad = g;
    if (g && g->slot >= g->ctx->grad_bound)
        g->ctx->grad_bound = g->slot + 1;
}

/* Whether an op on these inputs must be recorded. */
static inline bool jac__should_record(const jac_ctx *ctx, int n,
                                      jac_tensor *const *ins)
{
    if (!ctx->grad_enabled)
        return false;
    for (int i = 0; i < n; i++)
        if (ins[i]->requires_grad)
            return true;
    return false;
}

/* Appends a node for out = op(ins) (name for messages) when recording is on and
 * an input requires gradients. Returns the node (for parameters) or NULL when
 * nothing was recorded; on allocation failure releases nothing and sets
 * *failed. */
jac__node *jac__tape_append(jac_ctx *ctx, int op, const char *name,
                            jac_tensor *out, int nin, jac_tensor *const *ins,
                            bool *failed);
/* Whether all n values are finite. */
bool jac__all_finite(const double *v, int64_t n);
/* Reports the first non-finite value of v (n values, shaped as given) as
 * an anomaly of op at tape index index; what says which result ("" for the
 * op's output, or e.g. "the backward of "). Returns JAC_ERR_VALUE. */
jac_status jac__anomaly(jac_ctx *ctx, const char *what, const char *op,
                        int64_t index, const double *v, int64_t n, int ndim,
                        const int64_t *shape);
/* The context's next_seq when t was last marked with
 * jac_set_requires_grad, as far as the context remembers; 0 if unknown. */
uint64_t jac__marked_at(const jac_ctx *ctx, const jac_tensor *t);
/* Notes that user code read t's values: while a recorded function is
 * being recorded, a value computed from its inputs steers nothing the
 * replay can follow (jac_program_end refuses it). */
void jac__note_read(const jac_tensor *t);
/* Closes ctx's open recording, if any (jac_program_end, jac_ctx_free). */
void jac__section_close(jac_ctx *ctx);
/* Drops the nodes from index nnodes on (scopes, jac_ctx_free). */
void jac__tape_truncate(jac_ctx *ctx, size_t nnodes);

/* Formats a shape as "(2, 3)" into buf; returns buf. */
const char *jac__shape_str(char *buf, size_t size, int ndim,
                           const int64_t *shape);
#define JAC__SHAPE_STR_MAX 200

/* Element count of a shape, or -1 on overflow. */
int64_t jac__numel(int ndim, const int64_t *shape);

/* Normalises a possibly negative axis against ndim; -1 when out of range. */
static inline int jac__axis(int axis, int ndim)
{
    if (axis < 0)
        axis += ndim;
    return (axis < 0 || axis >= ndim) ? -1 : axis;
}

/* Broadcast shape of two shapes; returns rank or -1 when incompatible. */
int jac__broadcast_shape(int na, const int64_t *sa, int nb, const int64_t *sb,
                         int64_t *out);
/* Element strides of t when broadcast to a shape of rank n (0 on stretched
 * axes). */
void jac__broadcast_strides(const jac_tensor *t, int n, const int64_t *shape,
                            int64_t *strides);
/* Copies a into y, stretching a's broadcast axes (the expand kernel). */
void jac__broadcast_copy(const jac_tensor *a, jac_tensor *y);
/* Whether t, broadcast to out, repeats along leading axes only: its shape,
 * without leading ones, equals out's trailing extents. Element i of out
 * then reads t at i % t->numel. */
bool jac__is_suffix(const jac_tensor *t, const jac_tensor *out);

/* ------------------------------------------------------------------------ */
/* N-d iteration (iter.c)                                                   */
/* ------------------------------------------------------------------------ */

#define JAC__ITER_MAX_OPS 4

/* Walks the rows of a shape: every index of its outer axes (all but the
 * innermost) in row-major order, keeping for each of up to
 * JAC__ITER_MAX_OPS operands the element offset of the row's first element
 * (off[k]) from that operand's strides. The caller runs the innermost axis
 * (inner elements, operand k step[k] apart) as a plain strided loop, so
 * that nothing is computed per element and the iterator moves once a row:
 *
 *     jac__iter it;
 *     const int64_t *strides[2] = {sa, sy};
 *     int64_t rows = jac__iter_init(&it, ndim, shape, 2, strides);
 *     for (int64_t r = 0; r < rows; r++, jac__iter_next(&it))
 *         for (int64_t i = 0; i < it.inner; i++)
 *             y[it.off[1] + i * it.step[1]] = f(a[it.off[0] + i * it.step[0]]);
 *
 * A rank-0 shape is one row of one element. */
typedef struct jac__iter {
    int nouter, nops;
    int64_t rows;  /* rows of the shape: 0 when it is empty */
    int64_t inner; /* extent of the innermost axis (1 at rank 0) */
    int64_t off[JAC__ITER_MAX_OPS];
    int64_t step[JAC__ITER_MAX_OPS];
    /* The innermost outer axis moves on every row: the rows left before it
     * wraps, and what off[k] gains when it moves. */
    int64_t left;
    int64_t carry_last[JAC__ITER_MAX_OPS];
    int64_t extent[JAC_MAX_DIMS], pos[JAC_MAX_DIMS];
    /* What off[k] gains when outer axis d moves on and the axes after it
     * wrap to 0. */
    int64_t carry[JAC_MAX_DIMS][JAC__ITER_MAX_OPS];
} jac__iter;

/* Starts it at the first row of shape (rank ndim) for nops operands, operand
 * k with element strides strides[k] (rank ndim; 0 repeats an axis). Returns
 * the number of rows. */
static inline int64_t jac__iter_init(jac__iter *it, int ndim,
                                     const int64_t *shape, int nops,
                                     const int64_t *const *strides)
{
    int nouter = ndim > 0 ? ndim - 1 : 0;
    it->nouter = nouter;
    it->nops = nops;
    it->inner = ndim > 0 ? shape[ndim - 1] : 1;
    /* An empty shape has no rows; its other extents may multiply to more
     * than an int64_t holds, so they are not multiplied. */
    it->rows = it->inner > 0;
    for (int d = 0; d < nouter && it->rows; d++)
        if (shape[d] == 0)
            it->rows = 0;
    for (int d = 0; d < nouter && it->rows; d++)
        it->rows *= shape[d];
    for (int k = 0; k < nops; k++) {
        it->off[k] = 0;
        it->step[k] = ndim > 0 ? strides[k][ndim - 1] : 0;
    }
    if (it->rows == 0)
        return 0; /* nothing to walk (and strides may be meaningless) */
    /* Moving axis d on by one while the axes after it wrap to 0: its
     * stride, less the distance those axes have walked. */
    int64_t walked[JAC__ITER_MAX_OPS] = {0};
    for (int d = nouter - 1; d >= 0; d--) {
        it->extent[d] = shape[d];
        it->pos[d] = 0;
        for (int k = 0; k < nops; k++) {
            it->carry[d][k] = strides[k][d] - walked[k];
            walked[k] += strides[k][d] * (shape[d] - 1);
        }
    }
    it->left = nouter > 0 ? shape[nouter - 1] : 1;
    for (int k = 0; k < nops; k++)
        it->carry_last[k] = nouter > 0 ? it->carry[nouter - 1][k] : 0;
    return it->rows;
}

/* jac__iter_next when the innermost outer axis wraps. */
static inline void jac__iter_wrap(jac__iter *it)
{
    int d = it->nouter - 1;
    if (d < 0)
        return;
    it->left = it->extent[d];
    d--;
    while (d >= 0 && ++it->pos[d] == it->extent[d])
        it->pos[d--] = 0;
    if (d < 0)
        return;
    for (int k = 0; k < it->nops; k++)
        it->off[k] += it->carry[d][k];
}

/* Moves it to the next row (past the last one it stops moving). */
static inline void jac__iter_next(jac__iter *it)
{
    if (--it->left > 0) {
        for (int k = 0; k < it->nops; k++)
            it->off[k] += it->carry_last[k];
        return;
    }
    jac__iter_wrap(it);
}

/* Row-major element strides of shape (rank ndim) whose elements are unit
 * apart. */
void jac__contiguous_strides(int ndim, const int64_t *shape, int64_t unit,
                             int64_t *strides);
/* Strides of a row-major block of shape (rank ndim, elements unit apart)
 * read as if broadcast to rank n: the axes align on the right, and missing
 * axes and axes of extent 1 get stride 0. */
void jac__stretch_strides(int ndim, const int64_t *shape, int64_t unit, int n,
                          int64_t *strides);
/* For every index i of shape (rank ndim): dst[i . ds] = src[i . ss]. */
void jac__strided_copy(int ndim, const int64_t *shape, const double *src,
                       const int64_t *ss, double *dst, const int64_t *ds);

/* A context for a worker thread that reads parent's tensors and tape;
 * recording is off in it. Free with jac_ctx_free. */
jac_ctx *jac__ctx_worker_new(const jac_ctx *parent);
/* Worker context number index of parent: the one kept from an earlier
 * call (with its error cleared) or a new one; NULL when out of memory. */
jac_ctx *jac__ctx_worker(jac_ctx *parent, size_t index);

#endif /* JAC_CORE_H */
