/*
 * Internal structures shared by the library's source files. Nothing here is
 * part of the public API; names shared between files start with jac__.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JAC_INTERNAL_H
#define JAC_INTERNAL_H

#include "jacobian.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* The op table                                                             */
/*                                                                          */
/* X(ENUM, name, vjp): every recorded op, its name in messages, and the     */
/* backward rule jac__vjp_<vjp> defined in the op's family file beside its  */
/* forward kernel.                                                          */
/* ------------------------------------------------------------------------ */

#define JAC__OP_TABLE(X)                                                       \
    JAC__OPS_ELEMENTWISE(X)                                                    \
    JAC__OPS_UNARY(X)                                                          \
    JAC__OPS_REDUCE(X)                                                         \
    JAC__OPS_LINALG(X)                                                         \
    JAC__OPS_LAPACK(X)                                                         \
    JAC__OPS_SHAPE(X)

/* elementwise.c */
#define JAC__OPS_ELEMENTWISE(X)                                                \
    X(ADD, "add", add)                                                         \
    X(SUB, "sub", sub)                                                         \
    X(MUL, "mul", mul)                                                         \
    X(DIV, "div", div)                                                         \
    X(AFFINE, "affine", affine)                                                \
    X(POW_SCALAR, "pow_scalar", pow_scalar)                                    \
    X(EXP, "exp", exp)                                                         \
    X(LOG, "log", log)                                                         \
    X(SIN, "sin", sin)                                                         \
    X(COS, "cos", cos)                                                         \
    X(TANH, "tanh", tanh)

/* unary.c */
#define JAC__OPS_UNARY(X)                                                      \
    X(ABS, "abs", abs)                                                         \
    X(SIGN, "sign", sign)                                                      \
    X(SQRT, "sqrt", sqrt)                                                      \
    X(RSQRT, "rsqrt", rsqrt)                                                   \
    X(SQUARE, "square", square)                                                \
    X(RECIPROCAL, "reciprocal", reciprocal)                                    \
    X(EXPM1, "expm1", expm1)                                                   \
    X(LOG1P, "log1p", log1p)                                                   \
    X(TAN, "tan", tan)                                                         \
    X(ASIN, "asin", asin)                                                      \
    X(ACOS, "acos", acos)                                                      \
    X(ATAN, "atan", atan)                                                      \
    X(SINH, "sinh", sinh)                                                      \
    X(COSH, "cosh", cosh)                                                      \
    X(ASINH, "asinh", asinh)                                                   \
    X(SIGMOID, "sigmoid", sigmoid)                                             \
    X(RELU, "relu", relu)                                                      \
    X(SOFTPLUS, "softplus", softplus)                                          \
    X(ERF, "erf", erf)                                                         \
    X(CLAMP, "clamp", clamp)                                                   \
    X(POW, "pow", pow)                                                         \
    X(MAXIMUM, "maximum", maximum)                                             \
    X(MINIMUM, "minimum", minimum)                                             \
    X(ATAN2, "atan2", atan2)

/* reduce.c, reduce_stats.c */
#define JAC__OPS_REDUCE(X)                                                     \
    X(SUM_AXES, "sum", sum_axes)                                               \
    X(SUM_TO, "sum_to_shape", sum_to)                                          \
    X(EXPAND, "expand", expand)                                                \
    X(PROD_AXES, "prod", prod_axes)                                            \
    X(MAX_AXES, "max", max_axes)                                               \
    X(MIN_AXES, "min", min_axes)                                               \
    X(NORM2, "norm", norm2)                                                    \
    X(GROUP_SHIFT, "group_shift", group_shift)                                 \
    X(GROUP_SCAN, "group_scan", group_scan)

/* linalg.c */
#define JAC__OPS_LINALG(X)                                                     \
    X(MATMUL, "matmul", matmul)                                                \
    X(TRANSPOSE, "transpose", transpose)                                       \
    X(PERMUTE, "permute", permute)                                             \
    X(DIAGONAL, "diagonal", diagonal)                                          \
    X(DIAG_EMBED, "diag_embed", diag_embed)

/* lapack.c */
#define JAC__OPS_LAPACK(X)                                                     \
    X(SOLVE, "solve", solve)                                                   \
    X(INVERSE, "inverse", inverse)                                             \
    X(DET, "det", det)                                                         \
    X(LOGDET, "logdet", logdet)                                                \
    X(CHOLESKY, "cholesky", cholesky)                                          \
    X(TRIANGULAR_SOLVE, "triangular_solve", triangular_solve)

/* shape.c */
#define JAC__OPS_SHAPE(X)                                                      \
    X(RESHAPE, "reshape", reshape)                                             \
    X(SLICE, "slice", slice)                                                   \
    X(SLICE_SCATTER, "slice_scatter", slice_scatter)                           \
    X(CONCAT, "concat", concat)                                                \
    X(INDEX_SELECT, "index_select", index_select)                              \
    X(INDEX_ADD, "index_add", index_add)                                       \
    X(GATHER, "gather", gather)                                                \
    X(SCATTER_ADD, "scatter_add", scatter_add)                                 \
    X(WHERE, "where", where)                                                   \
    X(PAD, "pad", pad)

typedef enum jac__op {
#define JAC__OP_ENUM(e, name, vjp) JAC__OP_##e,
    JAC__OP_TABLE(JAC__OP_ENUM)
#undef JAC__OP_ENUM
        JAC__OP_COUNT
} jac__op;

/* ------------------------------------------------------------------------ */
/* Tensors                                                                  */
/* ------------------------------------------------------------------------ */

#define JAC__TENSOR_MAGIC 0x4a414354u /* "JACT" */
#define JAC__QUARANTINE 256
#define JAC__HEADER_CHUNK 256
#define JAC__TENSOR_DEAD 0xdeadbeefu

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
    double small[JAC__INLINE_NUMEL];
    jac_ctx *ctx;
    size_t slot;  /* position in the context's tensor registry */
    uint64_t seq; /* creation order, strictly increasing */
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
    jac__op op;
    int nin;
    bool released;
    /* For an elementwise op on one-element tensors: d out / d in[j], taken
     * when the op ran, so that an unrecorded pass needs nothing else. */
    bool has_partials;
    double partial[2];
    jac_tensor *in_inline[JAC__NODE_INLINE_INPUTS];
    jac_tensor **in; /* points at in_inline, or at a pooled array for more */
    jac_tensor *out;
    /* Op parameters that the backward rule needs besides the tensors. */
    union {
        double scalar; /* pow_scalar */
        struct {
            double alpha, beta; /* y = alpha * x + beta */
        } affine;
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
            int dir; /* +1 along the group order, -1 against it */
        } scan;      /* group_shift, group_scan (reduce_stats.c) */
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
    } p;
} jac__node;

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
    uint64_t next_seq;
    uint64_t next_plan_id;

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

void *jac__alloc(jac_ctx *ctx, size_t bytes);
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

/* Validates a tensor argument of op: non-NULL (without a new error when one
 * is already kept), alive, and owned by ctx. */
bool jac__check_arg(jac_ctx *ctx, const char *op, const jac_tensor *t);

/* Like jac__check_arg for a numbered argument of a driver ("input 2"):
 * returns JAC_OK, or the error recorded (JAC_ERR_NULL_ARG naming the
 * argument, or JAC_ERR_CONTEXT). */
jac_status jac__check_named(jac_ctx *ctx, const char *op, const jac_tensor *t,
                            const char *what, size_t index);

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

/* Appends a node for out = op(ins) when recording is on and an input
 * requires gradients. Returns the node (for parameters) or NULL when nothing
 * was recorded; on allocation failure releases nothing and sets *failed. */
jac__node *jac__record(jac_ctx *ctx, jac__op op, jac_tensor *out, int nin,
                       jac_tensor *const *ins, bool *failed);

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

extern const char *const jac__op_names[JAC__OP_COUNT];

/* Turns a reduction's axes argument (NULL for all axes) into a bit mask of
 * normalised axes; reports JAC_ERR_AXIS naming op on a bad or repeated axis.
 * Returns false on error. */
bool jac__axes_mask(jac_ctx *ctx, const char *op, const jac_tensor *a,
                    int naxes, const int *axes, uint32_t *mask);

/* ------------------------------------------------------------------------ */
/* Backward rules                                                           */
/*                                                                          */
/* A rule receives the node, the cotangent g of its output, and need[i]    */
/* telling which inputs want a cotangent. g has shape batch ++ out.shape,   */
/* where batch is zero or more leading axes (batched seeds, nested         */
/* create-graph passes); the rule writes gin[i] of shape batch ++           */
/* in[i].shape using public, differentiable ops only, so the rule records   */
/* itself under create-graph. Returns JAC_OK or the context's error.        */
/* ------------------------------------------------------------------------ */

typedef jac_status (*jac__vjp_fn)(jac_ctx *ctx, const jac__node *node,
                                  jac_tensor *g, const bool *need,
                                  jac_tensor **gin);

#define JAC__VJP_DECL(e, name, vjp)                                            \
    jac_status jac__vjp_##vjp(jac_ctx *ctx, const jac__node *node,             \
                              jac_tensor *g, const bool *need,                 \
                              jac_tensor **gin);
JAC__OP_TABLE(JAC__VJP_DECL)
#undef JAC__VJP_DECL

/* The derivative of a unary elementwise op at one element, as an
 * expression of x (its input), y (its output) and alpha (affine's factor);
 * an input cotangent is g times it. The fused loops, the partials taken
 * when an op on one element runs, and the one-element kernel all expand
 * this list, so their numbers agree bitwise. (log's, g / x, is not a
 * product and stays apart.) */
#define JAC__UNARY_DERIVATIVES(X)                                              \
    X(EXP, y)                                                                  \
    X(SIN, cos(x))                                                             \
    X(COS, -sin(x))                                                            \
    X(TANH, 1.0 - y * y)                                                       \
    X(AFFINE, alpha)

/* pow_scalar's derivative, mirroring its rule: 1 for p == 1, 2x for p == 2,
 * 3 x^2 (as x * x) for p == 3, p x^(p-1) otherwise; p == 0 gives exact
 * zeros instead (no factor). */
static inline double jac__pow_scalar_factor(double x, double p)
{
    if (p == 1.0)
        return 1.0;
    if (p == 2.0)
        return 2.0 * x;
    if (p == 3.0)
        return 3.0 * (x * x);
    return p * pow(x, p - 1.0);
}

/* Fused kernels for unrecorded passes (fused.c): write the input cotangents
 * of node n for batch stacked cotangents g into gin[j] (batch * in[j].numel
 * doubles each, for need[j]); return false, untouched, for a case they do not
 * cover, and the engine runs the op's rule instead. */
typedef bool (*jac__fused_fn)(const jac__node *n, int64_t batch,
                              const double *g, const bool *need,
                              double *const *gin);
extern const jac__fused_fn jac__fused_table[JAC__OP_COUNT];
/* The fused kernel of an elementwise op whose inputs and output have one
 * element each, without batch: writes the cotangent of every input (needed
 * or not) to gin; false for an op it does not cover. */
bool jac__fused_scalar(const jac__node *n, double g, double *gin);
/* Fills n->partial and sets has_partials when n is an elementwise op whose
 * inputs and output have one element and whose fused kernel is g times a
 * factor (then g * partial[j] is bitwise what the kernel gives). */
void jac__record_partials(jac__node *n);

/* Rule helpers (reduce.c). */

/* Number of batch axes of a cotangent g of a node output. */
static inline int jac__batch_ndim(const jac_tensor *g, const jac_tensor *out)
{
    return g->ndim - out->ndim;
}

/* Builds batch ++ shape from the first nbatch extents of g. Returns the rank
 * or -1 when it exceeds JAC_MAX_DIMS. */
int jac__batched_shape(const jac_tensor *g, int nbatch, int ndim,
                       const int64_t *shape, int64_t *dst);

/* Sums g (shape batch ++ s) down to batch ++ shape, where s broadcasts from
 * shape; returns g itself when nothing needs summing. */
jac_tensor *jac__sum_to_batched(jac_ctx *ctx, jac_tensor *g, int nbatch,
                                int ndim, const int64_t *shape);

/* Internal op constructors used by rules. */
jac_tensor *jac__sum_to(jac_ctx *ctx, jac_tensor *a, int nlead, int ndim,
                        const int64_t *shape);
jac_tensor *jac__slice_scatter(jac_ctx *ctx, jac_tensor *g, int ndim,
                               const int64_t *shape, int axis, int64_t start,
                               int64_t stop, int64_t step);
/* x with op(t) x = b for lower (or upper) triangular t (..., n, n), only
 * that triangle read, op(t) = t^T when trans; b (..., n, k); batch axes
 * broadcast (lapack.c). */
jac_tensor *jac__triangular_solve(jac_ctx *ctx, jac_tensor *t, jac_tensor *b,
                                  bool lower, bool trans);

/* Broadcast shape of two shapes; returns rank or -1 when incompatible. */
int jac__broadcast_shape(int na, const int64_t *sa, int nb, const int64_t *sb,
                         int64_t *out);

/* ------------------------------------------------------------------------ */
/* Backward plans (autograd.c)                                              */
/*                                                                          */
/* A plan lists, newest first, the tape nodes that lie between the given    */
/* inputs and outputs, with a cotangent slot for every tensor involved. It  */
/* is built once and then run for any number of seeds (one Jacobian row or  */
/* block per run); running only reads it.                                   */
/* ------------------------------------------------------------------------ */

typedef struct jac__plan jac__plan;

jac_status jac__plan_build(jac_ctx *ctx, const char *op, size_t noutputs,
                           jac_tensor *const *outputs, size_t ninputs,
                           jac_tensor *const *inputs, jac__plan **plan);
/* As jac__plan_build; without prune, the steps that reach no output stay
 * in the plan (runs skip them), which saves a sweep for a plan run once. */
jac_status jac__plan_build_ex(jac_ctx *ctx, const char *op, size_t noutputs,
                              jac_tensor *const *outputs, size_t ninputs,
                              jac_tensor *const *inputs, bool prune,
                              jac__plan **plan);
/* Calls a user function with recording on or off and checks that it set
 * every output; a failure becomes JAC_ERR_CALLBACK naming op. */
jac_status jac__call_fn(jac_ctx *ctx, const char *op, jac_fn fn, void *user,
                        jac_tensor *const *inputs, size_t noutputs,
                        jac_tensor **outputs, bool record);
/* Rough bytes of cotangents one seed needs when the plan runs. */
size_t jac__plan_bytes_per_seed(const jac__plan *plan);
/* A context for a worker thread that reads parent's tensors and tape;
 * recording is off in it. Free with jac_ctx_free. */
jac_ctx *jac__ctx_worker_new(const jac_ctx *parent);
/* Worker context number index of parent: the one kept from an earlier
 * call (with its error cleared) or a new one; NULL when out of memory. */
jac_ctx *jac__ctx_worker(jac_ctx *parent, size_t index);
void jac__plan_free(jac_ctx *ctx, jac__plan *plan);
/* Whether output k depends on any input. */
bool jac__plan_output_used(const jac__plan *plan, size_t k);
/* Whether every step is an elementwise op whose used inputs have the size of
 * its output, so that output element i depends on input element i only (a
 * Jacobian between equal-sized tensors is then diagonal). */
bool jac__plan_is_elementwise(const jac__plan *plan);
/* Runs the plan in ctx (the plan's own context, or a worker of it): seeds[k]
 * (batch ++ outputs[k].shape, or NULL to skip output k), grads[i] receives the
 * cotangent of input i or NULL when none arrived. Honours JAC_CREATE_GRAPH and
 * JAC_RETAIN_GRAPH. */
jac_status jac__plan_run(jac_ctx *ctx, const char *op, const jac__plan *plan,
                         jac_tensor *const *seeds, unsigned flags,
                         jac_tensor **grads);

/* What the Jacobian engine knows of its seeds: stacked row k of the seed
 * of output `output` (count rows) is zero but for ones at the flat
 * positions t * m + r0 + k, t < reps (m = numel / reps). A product with such
 * a seed is a gather, which unrecorded passes use while the cotangent keeps
 * that form (through sums and reshapes). */
typedef struct jac__onehot {
    size_t output;
    int64_t r0, count, reps;
} jac__onehot;

/* jac__plan_run with the seeds described by hint (NULL: nothing known). */
jac_status jac__plan_run_hinted(jac_ctx *ctx, const char *op,
                                const jac__plan *plan, jac_tensor *const *seeds,
                                unsigned flags, const jac__onehot *hint,
                                jac_tensor **grads);

/* The fused matmul kernel for a cotangent of one-hot rows (see
 * jac__onehot; m is the output's numel per repetition): false for a case
 * it does not cover. */
bool jac__fused_matmul_onehot(const jac__node *n, const jac__onehot *h,
                              int64_t m, const bool *need, double *const *gin);

#endif /* JAC_INTERNAL_H */
