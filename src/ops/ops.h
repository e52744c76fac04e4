/*
 * The op layer: the op table and what every op says about itself. Op files
 * (one per family of the math) see the core and the tape's recording call;
 * nothing of backward plans, slots or seeds.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JAC_OPS_H
#define JAC_OPS_H

#include "core/core.h"

/* ------------------------------------------------------------------------ */
/* The op table                                                             */
/*                                                                          */
/* One row per recorded op:                                                 */
/*   X(ENUM, name, arity, class, rule, raw, onehot, deps, curv)             */
/* - name: the op's name in messages;                                       */
/* - arity: its tensor inputs (0: any number);                              */
/* - class: UNARY and BINARY are elementwise (output element i reads        */
/*   element i of each input, BINARY after broadcasting); REDUCE, LINALG,   */
/*   LAPACK and SHAPE are not;                                              */
/* - rule: the backward rule jac__vjp_<rule>, written with differentiable   */
/*   ops, so that it records itself under create-graph; it also names       */
/*   jac__apply_<rule>, which computes the op anew from a node;             */
/* - raw: RAW(k) when jac__raw_<k> computes the input cotangents of an      */
/*   unrecorded pass straight into buffers, NORAW when the rule always runs;*/
/* - onehot: bit j set when a cotangent made of one-hot rows passes         */
/*   unchanged into input j (when that input has the output's size);        */
/* - deps: the sparsity rule jac__deps_<deps>: which input elements each    */
/*   output element reads at some point (see jac__links below);             */
/* - curv: where the op's second derivatives can be non-zero, for Hessian   */
/*   patterns: LIN (nowhere: linear or piecewise linear), SELF (each input  */
/*   element with itself: a function of one element), CROSS (an element of */
/*   input 0 with one of input 1: a product), DIV (CROSS, and input 1 with  */
/*   itself), ALL (any two elements an output element reads).               */
/* The engine and the drivers learn everything about an op from its row;    */
/* the rule and the kernels sit together in the op's family file.           */
/* ------------------------------------------------------------------------ */

#define JAC__OP_TABLE(X)                                                       \
    /* arith.c */                                                              \
    X(ADD, "add", 2, BINARY, add, RAW(binary), 3, broadcast, LIN)              \
    X(SUB, "sub", 2, BINARY, sub, RAW(binary), 1, broadcast, LIN)              \
    X(MUL, "mul", 2, BINARY, mul, RAW(binary), 0, broadcast, CROSS)            \
    X(DIV, "div", 2, BINARY, div, RAW(binary), 0, broadcast, DIV)              \
    X(AFFINE, "affine", 1, UNARY, affine, RAW(unary), 0, broadcast, LIN)       \
    X(POW, "pow", 2, BINARY, pow, NORAW, 0, broadcast, ALL)                    \
    X(MAXIMUM, "maximum", 2, BINARY, maximum, NORAW, 0, broadcast, LIN)        \
    X(MINIMUM, "minimum", 2, BINARY, minimum, NORAW, 0, broadcast, LIN)        \
    X(ATAN2, "atan2", 2, BINARY, atan2, NORAW, 0, broadcast, ALL)              \
    /* compare.c */                                                            \
    X(GT, "gt", 2, BINARY, gt, RAW(zeros), 0, none, LIN)                       \
    X(GE, "ge", 2, BINARY, ge, RAW(zeros), 0, none, LIN)                       \
    X(LT, "lt", 2, BINARY, lt, RAW(zeros), 0, none, LIN)                       \
    X(LE, "le", 2, BINARY, le, RAW(zeros), 0, none, LIN)                       \
    X(EQ, "eq", 2, BINARY, eq, RAW(zeros), 0, none, LIN)                       \
    X(NE, "ne", 2, BINARY, ne, RAW(zeros), 0, none, LIN)                       \
    /* functions.c */                                                          \
    X(POW_SCALAR, "pow_scalar", 1, UNARY, pow_scalar, RAW(unary), 0,           \
      broadcast, SELF)                                                         \
    X(EXP, "exp", 1, UNARY, exp, RAW(unary), 0, broadcast, SELF)               \
    X(LOG, "log", 1, UNARY, log, RAW(unary), 0, broadcast, SELF)               \
    X(SIN, "sin", 1, UNARY, sin, RAW(unary), 0, broadcast, SELF)               \
    X(COS, "cos", 1, UNARY, cos, RAW(unary), 0, broadcast, SELF)               \
    X(TANH, "tanh", 1, UNARY, tanh, RAW(unary), 0, broadcast, SELF)            \
    X(ABS, "abs", 1, UNARY, abs, RAW(unary), 0, broadcast, LIN)                \
    X(SIGN, "sign", 1, UNARY, sign, RAW(unary), 0, none, LIN)                  \
    X(SQRT, "sqrt", 1, UNARY, sqrt, RAW(unary), 0, broadcast, SELF)            \
    X(RSQRT, "rsqrt", 1, UNARY, rsqrt, RAW(unary), 0, broadcast, SELF)         \
    X(SQUARE, "square", 1, UNARY, square, RAW(unary), 0, broadcast, SELF)      \
    X(RECIPROCAL, "reciprocal", 1, UNARY, reciprocal, RAW(unary), 0,           \
      broadcast, SELF)                                                         \
    X(EXPM1, "expm1", 1, UNARY, expm1, RAW(unary), 0, broadcast, SELF)         \
    X(LOG1P, "log1p", 1, UNARY, log1p, RAW(unary), 0, broadcast, SELF)         \
    X(TAN, "tan", 1, UNARY, tan, RAW(unary), 0, broadcast, SELF)               \
    X(ASIN, "asin", 1, UNARY, asin, RAW(unary), 0, broadcast, SELF)            \
    X(ACOS, "acos", 1, UNARY, acos, RAW(unary), 0, broadcast, SELF)            \
    X(ATAN, "atan", 1, UNARY, atan, RAW(unary), 0, broadcast, SELF)            \
    X(SINH, "sinh", 1, UNARY, sinh, RAW(unary), 0, broadcast, SELF)            \
    X(COSH, "cosh", 1, UNARY, cosh, RAW(unary), 0, broadcast, SELF)            \
    X(ASINH, "asinh", 1, UNARY, asinh, RAW(unary), 0, broadcast, SELF)         \
    X(SIGMOID, "sigmoid", 1, UNARY, sigmoid, RAW(unary), 0, broadcast, SELF)   \
    X(RELU, "relu", 1, UNARY, relu, RAW(unary), 0, broadcast, LIN)             \
    X(SOFTPLUS, "softplus", 1, UNARY, softplus, RAW(unary), 0, broadcast,      \
      SELF)                                                                    \
    X(ERF, "erf", 1, UNARY, erf, RAW(unary), 0, broadcast, SELF)               \
    X(CLAMP, "clamp", 1, UNARY, clamp, RAW(unary), 0, broadcast, LIN)          \
    /* reduce.c */                                                             \
    X(SUM_AXES, "sum", 1, REDUCE, sum_axes, RAW(sum), 0, reduce, LIN)          \
    X(SUM_TO, "sum_to_shape", 1, REDUCE, sum_to, RAW(sum_to), 0, sum_to, LIN)  \
    X(EXPAND, "expand", 1, REDUCE, expand, RAW(expand), 0, broadcast, LIN)     \
    X(CUMSUM, "cumsum", 1, REDUCE, cumsum, RAW(cumsum), 0, scan, LIN)          \
    /* stats.c */                                                              \
    X(PROD_AXES, "prod", 1, REDUCE, prod_axes, NORAW, 0, reduce, ALL)          \
    X(MAX_AXES, "max", 1, REDUCE, max_axes, NORAW, 0, reduce, LIN)             \
    X(MIN_AXES, "min", 1, REDUCE, min_axes, NORAW, 0, reduce, LIN)             \
    X(NORM2, "norm", 1, REDUCE, norm2, NORAW, 0, reduce, ALL)                  \
    X(MAX_SHIFT, "max_shift", 1, REDUCE, max_shift, RAW(zeros), 0, none, LIN)  \
    X(SOFTMAX, "softmax", 1, REDUCE, softmax, NORAW, 0, groups, ALL)           \
    X(LOG_SOFTMAX, "log_softmax", 1, REDUCE, log_softmax, NORAW, 0, groups,    \
      ALL)                                                                     \
    X(GROUP_SHIFT, "group_shift", 1, REDUCE, group_shift, NORAW, 0, move, LIN) \
    X(GROUP_SCAN, "group_scan", 2, REDUCE, group_scan, NORAW, 0, scan, ALL)    \
    /* linalg.c */                                                             \
    X(MATMUL, "matmul", 2, LINALG, matmul, RAW(matmul), 0, matmul, CROSS)      \
    X(TRANSPOSE, "transpose", 1, LINALG, transpose, RAW(transpose), 0, move,   \
      LIN)                                                                     \
    X(PERMUTE, "permute", 1, LINALG, permute, NORAW, 0, move, LIN)             \
    X(DIAGONAL, "diagonal", 1, LINALG, diagonal, NORAW, 0, move, LIN)          \
    X(DIAG_EMBED, "diag_embed", 1, LINALG, diag_embed, NORAW, 0, move, LIN)    \
    /* lapack.c */                                                             \
    X(SOLVE, "solve", 2, LAPACK, solve, NORAW, 0, dense, ALL)                  \
    X(INVERSE, "inverse", 1, LAPACK, inverse, NORAW, 0, dense, ALL)            \
    X(DET, "det", 1, LAPACK, det, NORAW, 0, dense, ALL)                        \
    X(LOGDET, "logdet", 1, LAPACK, logdet, NORAW, 0, dense, ALL)               \
    X(CHOLESKY, "cholesky", 1, LAPACK, cholesky, NORAW, 0, dense, ALL)         \
    X(TRIANGULAR_SOLVE, "triangular_solve", 2, LAPACK, triangular_solve,       \
      NORAW, 0, dense, ALL)                                                    \
    X(LSTSQ, "lstsq", 2, LAPACK, lstsq, NORAW, 0, dense, ALL)                  \
    X(EIGH_VALUES, "eigh_values", 1, LAPACK, eigh_values, NORAW, 0, dense,     \
      ALL)                                                                     \
    X(EIGH_VECTORS, "eigh_vectors", 1, LAPACK, eigh_vectors, NORAW, 0, dense,  \
      ALL)                                                                     \
    /* shape.c */                                                              \
    X(RESHAPE, "reshape", 1, SHAPE, reshape, RAW(reshape), 1, move, LIN)       \
    X(SLICE, "slice", 1, SHAPE, slice, RAW(slice), 0, move, LIN)               \
    X(SLICE_SCATTER, "slice_scatter", 1, SHAPE, slice_scatter, RAW(slice), 0,  \
      move, LIN)                                                               \
    X(CONCAT, "concat", 0, SHAPE, concat, NORAW, 0, move, LIN)                 \
    X(INDEX_SELECT, "index_select", 2, SHAPE, index_select, NORAW, 0, select,  \
      LIN)                                                                     \
    X(INDEX_ADD, "index_add", 2, SHAPE, index_add, NORAW, 0, scatter, LIN)     \
    X(GATHER, "gather", 2, SHAPE, gather, NORAW, 0, select, LIN)               \
    X(SCATTER_ADD, "scatter_add", 2, SHAPE, scatter_add, NORAW, 0, scatter,    \
      LIN)                                                                     \
    X(WHERE, "where", 3, SHAPE, where, NORAW, 0, where, LIN)                   \
    X(PAD, "pad", 2, SHAPE, pad, NORAW, 0, select, LIN)

typedef enum jac__op {
#define JAC__OP_ENUM(e, name, arity, cls, rule, raw, onehot, deps, curv)       \
    JAC__OP_##e,
    JAC__OP_TABLE(JAC__OP_ENUM)
#undef JAC__OP_ENUM
        JAC__OP_COUNT
} jac__op;

typedef enum jac__op_class {
    JAC__CLASS_UNARY,
    JAC__CLASS_BINARY,
    JAC__CLASS_REDUCE,
    JAC__CLASS_LINALG,
    JAC__CLASS_LAPACK,
    JAC__CLASS_SHAPE
} jac__op_class;

/* A backward rule receives the node, the cotangent g of its output, and
 * need[i] telling which inputs want a cotangent. g has shape batch ++
 * out.shape, where batch is zero or more leading axes (batched seeds,
 * nested create-graph passes); the rule writes gin[i] of shape batch ++
 * in[i].shape using public, differentiable ops only, so the rule records
 * itself under create-graph. Returns JAC_OK or the context's error. */
typedef jac_status jac__vjp_fn(jac_ctx *ctx, const jac__node *node,
                               jac_tensor *g, const bool *need,
                               jac_tensor **gin);

/* A cotangent of count stacked rows, row k zero but for ones at the flat
 * positions t * m + r0 + k of the op's output, t < reps: the form of the
 * Jacobian engine's seeds, in which a product with the cotangent is a
 * gather. */
typedef struct jac__onehot_rows {
    int64_t r0, count, reps, m;
} jac__onehot_rows;

/* A raw kernel: the input cotangents of node n for batch stacked
 * cotangents g (batch ++ out.shape), written into gin[j] (batch *
 * in[j].numel doubles) for each need[j]; where add (NULL: nowhere) has
 * add[j], added to what gin[j] holds instead, which spares the engine a
 * buffer and a pass to add it (the engine never asks it of two inputs on
 * one buffer). onehot, when not NULL, says that g has that form (count ==
 * batch), which a kernel may exploit. Returns false, before writing
 * anything, for a case it does not cover (adding, for kernels that only
 * write); the engine then writes into buffers of its own, or runs the
 * op's rule, which stays the reference. */
typedef bool jac__raw_fn(const jac__node *n, int64_t batch, const double *g,
                         const jac__onehot_rows *onehot, const bool *need,
                         const bool *add, double *const *gin);

/* Whether add asks node n's raw kernel to add any cotangent. */
static inline bool jac__raw_adds(const jac__node *n, const bool *add)
{
    for (int j = 0; add != NULL && j < n->nin; j++)
        if (add[j])
            return true;
    return false;
}

/* Computes node n's op anew on the tensors ins (n->nin of them, shaped as
 * n->in[] were, values possibly different) with n's parameters (n->p, n->nin,
 * and n->out's shape where the op keeps a parameter there), by the same
 * call the user made, so that it records on ctx as that call would and its
 * value is bitwise what that call computes on ins. NULL on error (ctx's). */
typedef jac_tensor *jac__apply_fn(jac_ctx *ctx, const jac__node *n,
                                  jac_tensor *const *ins);

/* Where an op's second derivatives can be non-zero (the curv column). */
typedef enum jac__curv {
    JAC__CURV_LIN,
    JAC__CURV_SELF,
    JAC__CURV_CROSS,
    JAC__CURV_DIV,
    JAC__CURV_ALL
} jac__curv;

/* What a sparsity rule fills: for each output element o in order, the
 * input elements it reads, at[ptr[o] .. ptr[o + 1]), element e of input j
 * numbered base[j] + e. A rule adds an element with jac__links_add and
 * ends each output element's list with jac__links_row; an element may
 * appear twice in a list. The engine sets ctx (a private context in which
 * a rule may run ops), base (n->nin + 1 entries) and ptr (out numel + 1),
 * and frees at. */
typedef struct jac__links {
    jac_ctx *ctx;
    const int64_t *base;
    int64_t *ptr;
    int64_t *at;
    int64_t n, cap, row;
} jac__links;

/* Makes room for one more entry; false when out of memory (sparsity.c). */
bool jac__links_grow(jac__links *L);
/* Room for at least need entries in all; false when out of memory. */
bool jac__links_reserve(jac__links *L, int64_t need);

static inline bool jac__links_add(jac__links *L, int j, int64_t e)
{
    if (L->n == L->cap && !jac__links_grow(L))
        return false;
    L->at[L->n++] = L->base[j] + e;
    return true;
}

static inline void jac__links_row(jac__links *L) { L->ptr[++L->row] = L->n; }

/* A sparsity rule: the links of node n, whose inputs n->in[j] have their
 * shapes, and their values (data) only when they are constant over every
 * evaluation (an index, a condition recorded as a constant); data is NULL
 * for an input that varies. The lists must hold every element whose
 * derivative can be non-zero at some point, so a branch counts both sides.
 * Returns JAC_OK or ctx's error. */
typedef jac_status jac__deps_fn(jac_ctx *ctx, const jac__node *n,
                                jac__links *L);

/* Shared pieces of sparsity rules (sparsity.c): the broadcast rule over
 * inputs first .. nin - 1; and links from a map of input elements (in the
 * numbering of L->base, from 0) to output elements (-1: none), for the
 * inputs j with use[j]. */
jac_status jac__deps_broadcast_from(jac_ctx *ctx, const jac__node *n,
                                    jac__links *L, int first);
/* Whether the sparsity rule of op reads the values of its input j (an
 * index): a pattern holds only for those values. */
bool jac__deps_reads_input(int op, int j);
jac_status jac__links_transposed(jac_ctx *ctx, const jac__node *n,
                                 jac__links *L, const int64_t *map,
                                 const bool *use);

/* What the engine and the drivers know of an op: its row of the table. */
typedef struct jac__op_info {
    const char *name;
    int arity;
    jac__op_class cls;
    jac__vjp_fn *rule;
    jac__raw_fn *raw; /* NULL when the rule always runs */
    unsigned onehot_inputs;
    jac__curv curv;
    jac__apply_fn *apply; /* jac__apply_<rule> */
    jac__deps_fn *deps;   /* jac__deps_<deps> */
} jac__op_info;

extern const jac__op_info jac__ops[JAC__OP_COUNT];

/* Rescans x. A row's raw column, RAW(k) or NORAW, is pasted onto a prefix
 * naming a macro, JAC__DECLARE_RAW(k) for instance; a compiler rescans that
 * with the (k) that follows it, but cppcheck's preprocessor does not unless
 * the paste sits inside another macro's argument, as here. */
#define JAC__EXPAND(x) x

/* Whether output element i of op reads element i of each input only. */
static inline bool jac__op_elementwise(int op)
{
    return jac__ops[op].cls == JAC__CLASS_UNARY ||
           jac__ops[op].cls == JAC__CLASS_BINARY;
}

#define JAC__DECLARE_RULE(e, name, arity, cls, rule, raw, onehot, deps, curv)  \
    jac__vjp_fn jac__vjp_##rule;                                               \
    jac__apply_fn jac__apply_##rule;
JAC__OP_TABLE(JAC__DECLARE_RULE)
#undef JAC__DECLARE_RULE
/* Sparsity rules, declared once each (several ops share one). */
#define JAC__DEPS_ROW(e, name, arity, cls, rule, raw, onehot, deps, curv)      \
    jac__deps_fn jac__deps_##deps;
JAC__OP_TABLE(JAC__DEPS_ROW)
#undef JAC__DEPS_ROW
/* Raw kernels, declared once each (several ops may share one). */
#define JAC__RAW_ROW(e, name, arity, cls, rule, raw, onehot, deps, curv)       \
    JAC__EXPAND(JAC__DECLARE_##raw)
#define JAC__DECLARE_RAW(k) jac__raw_fn jac__raw_##k;
#define JAC__DECLARE_NORAW
JAC__OP_TABLE(JAC__RAW_ROW)
#undef JAC__RAW_ROW

/* The prologue of an apply that calls an internal constructor (one that
 * does not check its arguments): ctx and the n->nin tensors of ins checked
 * (jac__check_args, naming n's op). */
static inline bool jac__apply_args(jac_ctx *ctx, const jac__node *n,
                                   jac_tensor *const *ins)
{
    return jac__check_args(ctx, jac__ops[n->op].name, (size_t)n->nin, ins);
}

/* The axes of a bit mask, ascending, into axes (JAC_MAX_DIMS entries);
 * returns their count. */
static inline int jac__mask_axes(uint32_t mask, int *axes)
{
    int n = 0;
    for (int i = 0; i < JAC_MAX_DIMS; i++)
        if (mask & (1u << i))
            axes[n++] = i;
    return n;
}

/* Declares p, the parameters of a node, with every byte zero but the
 * fields set after it: recordings of the same call compare equal byte for
 * byte (a sparse plan checks a new recording so). */
#define JAC__PARAMS(p)                                                         \
    jac__params p;                                                             \
    memset(&p, 0, sizeof p)

/* Records out = op(ins) on the tape when recording is on and an input
 * requires gradients (see jac__tape_append). */
static inline jac__node *jac__record(jac_ctx *ctx, jac__op op, jac_tensor *out,
                                     int nin, jac_tensor *const *ins,
                                     bool *failed)
{
    return jac__tape_append(ctx, (int)op, jac__ops[op].name, out, nin, ins,
                            failed);
}

/* jac__record at the end of an op that made out: a node made gets the
 * parameters *params (none when params is NULL). Returns out, or NULL when
 * recording failed. */
static inline jac_tensor *jac__record_result(jac_ctx *ctx, jac__op op,
                                             jac_tensor *out, int nin,
                                             jac_tensor *const *ins,
                                             const jac__params *params)
{
    bool failed;
    jac__node *node = jac__record(ctx, op, out, nin, ins, &failed);
    if (failed)
        return NULL;
    if (node != NULL && params != NULL)
        node->p = *params;
    return out;
}

/* Turns a reduction's axes argument (NULL for all axes) into a bit mask of
 * normalised axes; reports JAC_ERR_AXIS naming op on a bad or repeated axis.
 * Returns false on error. */
bool jac__axes_mask(jac_ctx *ctx, const char *op, const jac_tensor *a,
                    int naxes, const int *axes, uint32_t *mask);

/* The prologue of a reduction over axes: ctx and a checked
 * (jac__check_args), then the axes turned into *mask (jac__axes_mask). */
static inline bool jac__reduce_args(jac_ctx *ctx, const char *op, jac_tensor *a,
                                    int naxes, const int *axes, uint32_t *mask)
{
    return jac__check_args(ctx, op, 1, &a) &&
           jac__axes_mask(ctx, op, a, naxes, axes, mask);
}

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

/* t reshaped to batch ++ shape, batch being its own first nbatch extents;
 * JAC_ERR_RANK naming op when that exceeds JAC_MAX_DIMS, and NULL for a
 * NULL t (a failed op before) (shape.c). */
jac_tensor *jac__reshape_batched(jac_ctx *ctx, const char *op, jac_tensor *t,
                                 int nbatch, int ndim, const int64_t *shape);

/* Sums g (shape batch ++ s) down to batch ++ shape, where s broadcasts from
 * shape; returns g itself when nothing needs summing. */
jac_tensor *jac__sum_to_batched(jac_ctx *ctx, jac_tensor *g, int nbatch,
                                int ndim, const int64_t *shape);

/* Zeros of batch ++ in[j].shape for each input j that needs a cotangent,
 * as constants whatever g holds: the rule of an op whose derivative is
 * zero (compare.c; its raw kernel is jac__raw_zeros). */
jac_status jac__zero_rule(jac_ctx *ctx, const jac__node *node,
                          const jac_tensor *g, const bool *need,
                          jac_tensor **gin);

/* The prologue of an elementwise op of two tensors: checks ab[0] and ab[1]
 * and makes the output of their broadcast shape (NULL, with the error
 * naming name and both shapes, when they do not broadcast) (arith.c). */
jac_tensor *jac__broadcast_result(jac_ctx *ctx, const char *name,
                                  jac_tensor *const *ab);

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

#endif /* JAC_OPS_H */
