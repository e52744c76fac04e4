/**
 * @file
 * libjacobian: reverse-mode automatic differentiation over n-dimensional
 * float64 tensors, built for Jacobians, Hessians and higher derivatives.
 *
 * This header is the whole public API. Read it top to bottom: context,
 * tensors, scopes, ops, autodiff, Jacobian drivers, interop, checks.
 * docs/guide.md is a tutorial.
 *
 * Ownership in one sentence: every tensor belongs to the context that made
 * it and lives until that context is freed or a scope that contains it is
 * released; callers never free tensors one by one.
 *
 * Errors in one sentence: functions that make a tensor return NULL on
 * failure, the others return a jac_status; the context keeps the first error
 * (code and one-line message naming the op and the shapes) until
 * jac_clear_error(), and an op handed a NULL tensor returns NULL (recording
 * JAC_ERR_NULL_ARG only if no error is kept yet), so a whole expression can
 * be written without checks and checked once at its end.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JACOBIAN_H
#define JACOBIAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/** @defgroup version Version and export
 * Version numbers of the header and of the linked library.
 * @{ */
/* ------------------------------------------------------------------------ */

/** The major version of this header (0.x: the API may change at every minor
 *  version). */
#define JAC_VERSION_MAJOR 0
/** The minor version of this header. */
#define JAC_VERSION_MINOR 1
/** The patch version of this header. */
#define JAC_VERSION_PATCH 0
/** The version as one number: major * 10000 + minor * 100 + patch. */
#define JAC_VERSION_NUMBER                                                     \
    (JAC_VERSION_MAJOR * 10000 + JAC_VERSION_MINOR * 100 + JAC_VERSION_PATCH)
/** The version of this header as "major.minor.patch". */
#define JAC_VERSION_STRING "0.1.0"

/**
 * @def JAC_API
 * Marks the functions the library exports: default visibility with GCC and
 * Clang, dllexport/dllimport on Windows. Define JAC_STATIC_DEFINE when
 * linking the static library on Windows (the CMake target
 * jacobian::jacobian_static does it for you; with pkg-config, add
 * -DJAC_STATIC_DEFINE yourself). Elsewhere it changes nothing.
 */
#if defined(JAC_STATIC_DEFINE)
#define JAC_API
#elif defined(_WIN32)
#ifdef JAC_BUILDING_LIBRARY
#define JAC_API __declspec(dllexport)
#else
#define JAC_API __declspec(dllimport)
#endif
#elif defined(__GNUC__) && __GNUC__ >= 4
#define JAC_API __attribute__((visibility("default")))
#else
#define JAC_API
#endif

/** The version of the linked library, as JAC_VERSION_NUMBER. */
JAC_API int jac_version_number(void);
/** The version of the linked library, as "major.minor.patch" (static string).
 */
JAC_API const char *jac_version_string(void);

/** @} */

/* ------------------------------------------------------------------------ */
/** @defgroup status Status codes
 * What a call can report, as codes with names and descriptions.
 * @{ */
/* ------------------------------------------------------------------------ */

/**
 * Every status code as X(name, value, description): one table generates the
 * enum jac_status, jac_status_name() and jac_status_string(). The
 * description is the text jac_status_string() returns.
 */
#define JAC_STATUS_TABLE(X)                                                    \
    X(JAC_OK, 0, "no error")                                                   \
    X(JAC_ERR_NULL_ARG, 1, "a required argument is NULL")                      \
    X(JAC_ERR_NO_MEMORY, 2, "out of memory")                                   \
    X(JAC_ERR_SHAPE, 3, "shapes do not match")                                 \
    X(JAC_ERR_RANK, 4, "rank out of range")                                    \
    X(JAC_ERR_OVERFLOW, 5, "size overflows")                                   \
    X(JAC_ERR_AXIS, 6, "axis out of range")                                    \
    X(JAC_ERR_VALUE, 7, "invalid argument value")                              \
    X(JAC_ERR_CONTEXT, 8, "tensor belongs to another context or was released") \
    X(JAC_ERR_NO_SEED, 9, "non-scalar output needs a seed")                    \
    X(JAC_ERR_SEED_SHAPE, 10, "seed shape does not match its output")          \
    X(JAC_ERR_UNUSED_INPUT, 11, "input is not used by the outputs")            \
    X(JAC_ERR_NO_GRAD, 12, "input does not require gradients")                 \
    X(JAC_ERR_RELEASED, 13, "graph was already released")                      \
    X(JAC_ERR_CHECK_FAILED, 14, "derivative check failed")                     \
    X(JAC_ERR_STATE, 15, "call not allowed in this state")                     \
    X(JAC_ERR_CALLBACK, 16, "user callback failed")                            \
    X(JAC_ERR_CANCELLED, 17, "cancelled by the progress callback")

/** Every status a call can report. JAC_OK is zero; errors are positive.
 *  The meaning of each code is listed in JAC_STATUS_TABLE. */
typedef enum jac_status {
#define JAC__STATUS_ENUM(name, value, text) name = value,
    JAC_STATUS_TABLE(JAC__STATUS_ENUM)
#undef JAC__STATUS_ENUM
} jac_status;

/** A static string describing a status code ("out of memory", ...). */
JAC_API const char *jac_status_string(jac_status status);
/** The enum name of a status code ("JAC_ERR_SHAPE", ...). */
JAC_API const char *jac_status_name(jac_status status);

/** @} */

/* ------------------------------------------------------------------------ */
/** @defgroup context Context
 * A context owns tensors, the tape and the error state; use one context per
 * thread, or hand a context from thread to thread between calls. The calls
 * that run backward passes (jac_grad, jac_backward, the Jacobian and
 * functional drivers, the checks, jac_export_dot) and jac_scope_end hold the
 * context while they run: another thread calling one of them meanwhile gets
 * JAC_ERR_STATE, and an op NULL, without anything of the context being
 * touched (so no message is recorded). Two threads making ops on one
 * context at the same moment, outside such calls, are not detected.
 * @{ */
/* ------------------------------------------------------------------------ */

/** The largest rank a tensor may have. */
#define JAC_MAX_DIMS 8

/** A context: the allocator, every tensor it made, the tape, the first
 *  error. Opaque; made by jac_ctx_new, freed by jac_ctx_free. */
typedef struct jac_ctx jac_ctx;
/** An n-dimensional float64 tensor, immutable once made. Opaque; owned by
 *  its context. */
typedef struct jac_tensor jac_tensor;

/**
 * Allocator hooks, per context. alloc returns NULL on failure; free accepts
 * NULL. The library never calls the C allocator behind a context that has
 * hooks.
 */
typedef struct jac_allocator {
    /** Returns size bytes aligned for any type, or NULL. */
    void *(*alloc)(size_t size, void *user);
    /** Frees a block from alloc; accepts NULL. */
    void (*free)(void *ptr, void *user);
    /** Passed to alloc and free as their last argument. */
    void *user;
} jac_allocator;

/** A new context using malloc/free; NULL when out of memory. */
JAC_API jac_ctx *jac_ctx_new(void);
/** A new context using the given allocator (copied); NULL on failure. */
JAC_API jac_ctx *jac_ctx_new_with_allocator(const jac_allocator *allocator);
/** Frees the context and every tensor it owns. Accepts NULL. */
JAC_API void jac_ctx_free(jac_ctx *ctx);

/** The first error recorded since the last jac_clear_error (JAC_OK if none). */
JAC_API jac_status jac_errcode(const jac_ctx *ctx);
/** One line naming the op, the argument and the shapes; "" when no error.
 *  The string belongs to the context and stays valid until the next error
 *  is recorded or cleared. */
JAC_API const char *jac_errmsg(const jac_ctx *ctx);
/** Forgets the recorded error so that the next one is kept. */
JAC_API void jac_clear_error(jac_ctx *ctx);

/** Bytes the context currently holds from its allocator (pools included,
 *  the contexts its threaded Jacobians keep for their threads, and the
 *  plan the dense Jacobian drivers keep of their last recording). */
JAC_API size_t jac_ctx_memory(const jac_ctx *ctx);
/** Number of live tensors the context owns. */
JAC_API size_t jac_ctx_tensor_count(const jac_ctx *ctx);
/** Number of nodes on the tape. */
JAC_API size_t jac_ctx_tape_length(const jac_ctx *ctx);

/**
 * Turns recording on or off and returns the previous setting. With recording
 * off (no-grad mode) ops compute values only and append nothing to the tape;
 * their results do not require gradients.
 */
JAC_API bool jac_set_grad_enabled(jac_ctx *ctx, bool enabled);
/** Whether ops are currently recorded. */
JAC_API bool jac_is_grad_enabled(const jac_ctx *ctx);

/** Debug checks of a context (jac_ctx_set_checks), off by default. */
enum jac_check_flags {
    /** Released tensors are never reused: any later use of a tensor that a
     *  scope released is reported (JAC_ERR_CONTEXT, "released"), however
     *  many tensors came after it. Each released header (under 200 bytes)
     *  then stays with the context until it is freed. Without this check a
     *  released tensor is reported as long as fewer than 256 tensors of its
     *  context have been released after it; later its memory may hold a new
     *  tensor, which a stale pointer would then read. */
    JAC_CHECK_STALE = 1u << 0,
    /** Anomaly mode: the output of every recorded op, and every gradient a
     *  backward step produces, is checked for NaN and infinity; the first
     *  one fails with JAC_ERR_VALUE naming the op and its tape index. */
    JAC_CHECK_ANOMALY = 1u << 1
};

/**
 * Turns debug checks (jac_check_flags, or-ed) on or off for ctx; they cost
 * nothing when off. A new context takes them from the environment variable
 * JAC_CHECKS, a comma-separated list of "stale" and "anomaly" (or "all").
 * Unknown bits fail with JAC_ERR_VALUE.
 */
JAC_API jac_status jac_ctx_set_checks(jac_ctx *ctx, unsigned checks);
/** The debug checks of ctx (0 for NULL). */
JAC_API unsigned jac_ctx_checks(const jac_ctx *ctx);

/** @} */

/* ------------------------------------------------------------------------ */
/** @defgroup tensors Tensors
 * Making tensors, reading their shape and values, and marking the inputs
 * to differentiate with respect to.
 * @{ */
/* ------------------------------------------------------------------------ */

/**
 * A tensor of rank ndim (0 to JAC_MAX_DIMS) and the given extents, with the
 * values copied from data (row-major, numel values). data may be NULL for
 * zeros. Fails on a NULL shape with ndim > 0, a rank above JAC_MAX_DIMS, a
 * negative extent or an element count that overflows.
 */
JAC_API jac_tensor *jac_tensor_new(jac_ctx *ctx, int ndim, const int64_t *shape,
                                   const double *data);
/** A tensor of zeros of the given shape. */
JAC_API jac_tensor *jac_zeros(jac_ctx *ctx, int ndim, const int64_t *shape);
/** A tensor of ones of the given shape. */
JAC_API jac_tensor *jac_ones(jac_ctx *ctx, int ndim, const int64_t *shape);
/** A tensor of the given shape with every element equal to value. */
JAC_API jac_tensor *jac_full(jac_ctx *ctx, int ndim, const int64_t *shape,
                             double value);
/** The n x n identity matrix; n must be non-negative. */
JAC_API jac_tensor *jac_eye(jac_ctx *ctx, int64_t n);
/** The rank-1 tensor start, start + step, ... strictly before stop (as
 *  NumPy's arange); step must be non-zero and finite. */
JAC_API jac_tensor *jac_arange(jac_ctx *ctx, double start, double stop,
                               double step);
/** A rank-0 tensor holding value. */
JAC_API jac_tensor *jac_scalar(jac_ctx *ctx, double value);
/** A new leaf tensor with the same shape and values; it records no history
 *  and does not require gradients. */
JAC_API jac_tensor *jac_tensor_copy(jac_ctx *ctx, const jac_tensor *t);
/** Same as jac_tensor_copy: the value of t cut from the graph. */
JAC_API jac_tensor *jac_detach(jac_ctx *ctx, const jac_tensor *t);

/** The rank of t (0 for scalars, -1 for NULL). */
JAC_API int jac_tensor_ndim(const jac_tensor *t);
/** The extents of t (ndim values; NULL for NULL). Owned by t. */
JAC_API const int64_t *jac_tensor_shape(const jac_tensor *t);
/** The extent of axis (negative counts from the end); -1 when out of range. */
JAC_API int64_t jac_tensor_dim(const jac_tensor *t, int axis);
/** The number of elements of t (1 for scalars, 0 for NULL). */
JAC_API int64_t jac_tensor_numel(const jac_tensor *t);
/** The values of t, row-major, read-only; owned by t. NULL for NULL. */
JAC_API const double *jac_tensor_data(const jac_tensor *t);
/** The single value of a one-element tensor. For a tensor of another size
 *  it returns NaN and records JAC_ERR_SHAPE in t's context. */
JAC_API double jac_tensor_item(const jac_tensor *t);
/** The value at the given multi-index (ndim entries). Out of range it
 *  returns NaN and records JAC_ERR_VALUE in t's context (JAC_ERR_NULL_ARG
 *  for a NULL index). */
JAC_API double jac_tensor_get(const jac_tensor *t, const int64_t *index);
/**
 * Replaces the values of the leaf t in place by numel(t) values (the way to
 * fill a tensor, or to update parameters in a training loop): its address,
 * shape, requires_grad and gradient stay. A graph recorded before that used
 * t's old values can no longer be differentiated: a backward pass through
 * it fails with JAC_ERR_STATE naming the op. Fails with JAC_ERR_STATE when t
 * is the result of an op, JAC_ERR_NULL_ARG for NULL values.
 */
JAC_API jac_status jac_tensor_fill(jac_tensor *t, const double *values);
/** jac_tensor_fill with the values of src, which must have t's shape (and
 *  may be computed from t itself: w = w - lr * g). */
JAC_API jac_status jac_tensor_assign(jac_tensor *t, const jac_tensor *src);
/** The context that owns t. */
JAC_API jac_ctx *jac_tensor_ctx(const jac_tensor *t);

/**
 * Marks a leaf tensor as an input to differentiate with respect to.
 * Fails with JAC_ERR_STATE on a tensor that an op produced (a non-leaf).
 */
JAC_API jac_status jac_set_requires_grad(jac_tensor *t, bool requires_grad);
/** Whether gradients flow into t (a marked leaf or a result of one). */
JAC_API bool jac_requires_grad(const jac_tensor *t);
/** Whether t was made by the user rather than by a recorded op. */
JAC_API bool jac_is_leaf(const jac_tensor *t);
/** The gradient accumulated into leaf t by jac_backward, or NULL. */
JAC_API jac_tensor *jac_tensor_grad(const jac_tensor *t);
/** Sets the accumulated gradient of t to zeros (keeps the tensor); no-op
 *  when there is none. */
JAC_API jac_status jac_zero_grad(jac_tensor *t);

/**
 * Prints t to out in nested brackets, as NumPy does: on one line when it
 * fits, else one row per line. Returns JAC_ERR_NULL_ARG on NULL arguments.
 */
JAC_API jac_status jac_tensor_print(const jac_tensor *t, FILE *out);

/** @} */

/* ------------------------------------------------------------------------ */
/** @defgroup scopes Scopes: flat memory in long loops
 * Releasing the tensors and tape nodes of one iteration of a loop at once.
 * @{ */
/* ------------------------------------------------------------------------ */

/** A position in the context's history of tensors and tape nodes. */
typedef struct jac_scope {
    size_t tensors; /**< tensors the context held at the mark */
    size_t nodes;   /**< tape nodes at the mark */
} jac_scope;

/** Marks the current position; pass it to jac_scope_end. */
JAC_API jac_scope jac_scope_begin(jac_ctx *ctx);

/**
 * Releases every tensor created since mark, and the tape nodes recorded since,
 * except the nkeep tensors in keep (and the accumulated .grad of surviving
 * leaves). A kept tensor keeps its value and its address but loses its
 * history: it becomes a leaf, and requires gradients only if it was a leaf
 * that did. Pointers to released tensors must not be used again.
 */
JAC_API jac_status jac_scope_end(jac_ctx *ctx, jac_scope mark,
                                 jac_tensor *const *keep, size_t nkeep);

/** @} */

/* ------------------------------------------------------------------------ */
/** @defgroup ops_arithmetic Ops: arithmetic
 *
 * Every op takes the context first and returns a new tensor owned by it,
 * or NULL on failure. Binary ops broadcast as NumPy does: shapes align on
 * the right, and an extent of 1 stretches. Every op is differentiable to
 * any order.
 * @{ */
/* ------------------------------------------------------------------------ */

/** a + b, broadcast. */
JAC_API jac_tensor *jac_add(jac_ctx *ctx, jac_tensor *a, jac_tensor *b);
/** a - b, broadcast. */
JAC_API jac_tensor *jac_sub(jac_ctx *ctx, jac_tensor *a, jac_tensor *b);
/** a * b elementwise, broadcast. */
JAC_API jac_tensor *jac_mul(jac_ctx *ctx, jac_tensor *a, jac_tensor *b);
/** a / b elementwise, broadcast; division by zero follows IEEE 754. */
JAC_API jac_tensor *jac_div(jac_ctx *ctx, jac_tensor *a, jac_tensor *b);
/**
 * a ** b elementwise, broadcast, for a tensor exponent. Defined for a > 0 and
 * any b, and for a = 0 with b > 0 (value 0). The derivative in a is
 * b * a ** (b - 1) (taken as 0 where b == 0); in b it is a ** b * log(a),
 * taken as 0 where a == 0 and b >= 0 (as PyTorch). A negative base gives NaN
 * unless b is an integer (C pow() semantics).
 */
JAC_API jac_tensor *jac_pow(jac_ctx *ctx, jac_tensor *a, jac_tensor *b);
/** The larger of a and b elementwise, broadcast; at ties the gradient is
 *  split evenly between a and b. */
JAC_API jac_tensor *jac_maximum(jac_ctx *ctx, jac_tensor *a, jac_tensor *b);
/** The smaller of a and b elementwise, broadcast; ties as jac_maximum. */
JAC_API jac_tensor *jac_minimum(jac_ctx *ctx, jac_tensor *a, jac_tensor *b);
/** atan2(a, b) elementwise (the angle of the point (b, a)), broadcast; the
 *  derivative is undefined (NaN) at a = b = 0. */
JAC_API jac_tensor *jac_atan2(jac_ctx *ctx, jac_tensor *a, jac_tensor *b);

/** a + c for a double c. */
JAC_API jac_tensor *jac_add_scalar(jac_ctx *ctx, jac_tensor *a, double c);
/** a - c for a double c. */
JAC_API jac_tensor *jac_sub_scalar(jac_ctx *ctx, jac_tensor *a, double c);
/** a * c for a double c. */
JAC_API jac_tensor *jac_mul_scalar(jac_ctx *ctx, jac_tensor *a, double c);
/** a / c for a double c (IEEE 754 at c = 0). */
JAC_API jac_tensor *jac_div_scalar(jac_ctx *ctx, jac_tensor *a, double c);
/** c - a for a double c. */
JAC_API jac_tensor *jac_rsub_scalar(jac_ctx *ctx, double c, jac_tensor *a);
/**
 * a ** p elementwise for a double exponent p, with C pow() semantics: a
 * negative base with a non-integer p gives NaN, 0 ** p with p < 0 gives inf.
 * The derivative p * a ** (p - 1) is taken as exactly 0 when p == 0.
 */
JAC_API jac_tensor *jac_pow_scalar(jac_ctx *ctx, jac_tensor *a, double p);
/** @} */

/** @defgroup ops_elementwise Ops: elementwise functions
 * Functions applied to every element, and their derivatives.
 * @{ */

/** -a. */
JAC_API jac_tensor *jac_neg(jac_ctx *ctx, jac_tensor *a);
/** e ** a. */
JAC_API jac_tensor *jac_exp(jac_ctx *ctx, jac_tensor *a);
/** Natural logarithm (NaN below 0, -inf at 0, as IEEE 754 says). */
JAC_API jac_tensor *jac_log(jac_ctx *ctx, jac_tensor *a);
/** sin(a). */
JAC_API jac_tensor *jac_sin(jac_ctx *ctx, jac_tensor *a);
/** cos(a). */
JAC_API jac_tensor *jac_cos(jac_ctx *ctx, jac_tensor *a);
/** tanh(a). */
JAC_API jac_tensor *jac_tanh(jac_ctx *ctx, jac_tensor *a);
/** |a|; the derivative at 0 is taken as 0. */
JAC_API jac_tensor *jac_abs(jac_ctx *ctx, jac_tensor *a);
/** -1, 0 or 1 by the sign of a; its derivative is 0 everywhere. */
JAC_API jac_tensor *jac_sign(jac_ctx *ctx, jac_tensor *a);
/** Square root (NaN below 0; the derivative is inf at 0). */
JAC_API jac_tensor *jac_sqrt(jac_ctx *ctx, jac_tensor *a);
/** 1 / sqrt(a). */
JAC_API jac_tensor *jac_rsqrt(jac_ctx *ctx, jac_tensor *a);
/** a * a. */
JAC_API jac_tensor *jac_square(jac_ctx *ctx, jac_tensor *a);
/** 1 / a. */
JAC_API jac_tensor *jac_reciprocal(jac_ctx *ctx, jac_tensor *a);
/** e ** a - 1, accurate near 0. */
JAC_API jac_tensor *jac_expm1(jac_ctx *ctx, jac_tensor *a);
/** log(1 + a), accurate near 0. */
JAC_API jac_tensor *jac_log1p(jac_ctx *ctx, jac_tensor *a);
/** tan(a). */
JAC_API jac_tensor *jac_tan(jac_ctx *ctx, jac_tensor *a);
/** asin(a), defined on [-1, 1] (derivative inf at the ends). */
JAC_API jac_tensor *jac_asin(jac_ctx *ctx, jac_tensor *a);
/** acos(a), defined on [-1, 1] (derivative -inf at the ends). */
JAC_API jac_tensor *jac_acos(jac_ctx *ctx, jac_tensor *a);
/** atan(a). */
JAC_API jac_tensor *jac_atan(jac_ctx *ctx, jac_tensor *a);
/** sinh(a). */
JAC_API jac_tensor *jac_sinh(jac_ctx *ctx, jac_tensor *a);
/** cosh(a). */
JAC_API jac_tensor *jac_cosh(jac_ctx *ctx, jac_tensor *a);
/** asinh(a). */
JAC_API jac_tensor *jac_asinh(jac_ctx *ctx, jac_tensor *a);
/** 1 / (1 + e ** -a), computed without overflow for large |a|. */
JAC_API jac_tensor *jac_sigmoid(jac_ctx *ctx, jac_tensor *a);
/** max(a, 0); the derivative at 0 is taken as 0. */
JAC_API jac_tensor *jac_relu(jac_ctx *ctx, jac_tensor *a);
/** log(1 + e ** a), computed without overflow for large |a|. */
JAC_API jac_tensor *jac_softplus(jac_ctx *ctx, jac_tensor *a);
/** The error function erf(a). */
JAC_API jac_tensor *jac_erf(jac_ctx *ctx, jac_tensor *a);
/**
 * a limited to [lo, hi]; pass -INFINITY or INFINITY for a missing bound.
 * The derivative is 1 strictly inside, 0 outside, and 1 at a bound (as
 * PyTorch). Fails with JAC_ERR_VALUE when lo > hi or a bound is NaN.
 */
JAC_API jac_tensor *jac_clamp(jac_ctx *ctx, jac_tensor *a, double lo,
                              double hi);
/** @} */

/** @defgroup ops_reductions Ops: reductions
 *
 * Reductions over a set of axes share one convention: axes lists naxes
 * distinct axes (negative counts from the end), or is NULL for all axes;
 * keepdim keeps the reduced axes as extents of 1. A repeated or out-of-range
 * axis fails with JAC_ERR_AXIS.
 * @{ */

/** The sum of all elements, as a rank-0 tensor. */
JAC_API jac_tensor *jac_sum(jac_ctx *ctx, jac_tensor *a);
/** The sum along one axis (negative counts from the end); keepdim keeps it
 *  as an extent of 1. */
JAC_API jac_tensor *jac_sum_axis(jac_ctx *ctx, jac_tensor *a, int axis,
                                 bool keepdim);
/** The sum over the given axes (see the convention above). */
JAC_API jac_tensor *jac_sum_axes(jac_ctx *ctx, jac_tensor *a, int naxes,
                                 const int *axes, bool keepdim);
/** The mean of all elements (NaN for none). */
JAC_API jac_tensor *jac_mean(jac_ctx *ctx, jac_tensor *a);
/** The mean over the given axes. */
JAC_API jac_tensor *jac_mean_axes(jac_ctx *ctx, jac_tensor *a, int naxes,
                                  const int *axes, bool keepdim);
/** The product of all elements. First and second derivatives are exact when
 *  one or several elements are zero. */
JAC_API jac_tensor *jac_prod(jac_ctx *ctx, jac_tensor *a);
/** The product over the given axes (zeros handled as jac_prod). */
JAC_API jac_tensor *jac_prod_axes(jac_ctx *ctx, jac_tensor *a, int naxes,
                                  const int *axes, bool keepdim);
/** The largest element; tied maxima share the gradient evenly. Fails with
 *  JAC_ERR_VALUE on an empty tensor. */
JAC_API jac_tensor *jac_max(jac_ctx *ctx, jac_tensor *a);
/** The largest element over the given axes; ties share the gradient. */
JAC_API jac_tensor *jac_max_axes(jac_ctx *ctx, jac_tensor *a, int naxes,
                                 const int *axes, bool keepdim);
/** The smallest element; ties share the gradient evenly. */
JAC_API jac_tensor *jac_min(jac_ctx *ctx, jac_tensor *a);
/** The smallest element over the given axes; ties share the gradient. */
JAC_API jac_tensor *jac_min_axes(jac_ctx *ctx, jac_tensor *a, int naxes,
                                 const int *axes, bool keepdim);
/** The running sum along axis (negative counts from the end), as
 *  torch.cumsum: element i along the axis is the sum of elements 0..i. The
 *  result has a's shape; a rank-0 a takes axis 0 or -1. Differentiable to
 *  any order. Fails with JAC_ERR_AXIS for an axis out of range. */
JAC_API jac_tensor *jac_cumsum(jac_ctx *ctx, jac_tensor *a, int axis);
/** log(sum(exp(a))) over the given axes, computed stably (shifted by the
 *  maximum), so inputs such as 1000 give finite results. */
JAC_API jac_tensor *jac_logsumexp(jac_ctx *ctx, jac_tensor *a, int naxes,
                                  const int *axes, bool keepdim);
/** The variance over the given axes, dividing by N - correction (1 for the
 *  sample variance, 0 for the population variance). */
JAC_API jac_tensor *jac_var(jac_ctx *ctx, jac_tensor *a, int naxes,
                            const int *axes, double correction, bool keepdim);
/** sqrt(jac_var(...)). At zero variance the gradient is NaN (0 / 0), as
 *  PyTorch's; jac_norm's is 0 at 0 (docs/design.md lists these
 *  conventions). */
JAC_API jac_tensor *jac_std(jac_ctx *ctx, jac_tensor *a, int naxes,
                            const int *axes, double correction, bool keepdim);
/** The vector norm over the given axes: p = 1 (sum of |a|), 2 (Euclidean)
 *  or INFINITY (max |a|); other p fail with JAC_ERR_VALUE. The gradient of
 *  the 2-norm at 0 is taken as 0. */
JAC_API jac_tensor *jac_norm(jac_ctx *ctx, jac_tensor *a, double p, int naxes,
                             const int *axes, bool keepdim);
/** exp(a) / sum(exp(a)) along axis, computed stably. One op with its own
 *  rule (y (g - sum(g y))), so derivatives of every order are exact where
 *  they vanish. */
JAC_API jac_tensor *jac_softmax(jac_ctx *ctx, jac_tensor *a, int axis);
/** a - logsumexp(a) along axis, computed stably. One op with its own rule
 *  (g - softmax(a) sum(g)), so that, for example, log_softmax over one
 *  element is identically 0 with every derivative exactly 0. */
JAC_API jac_tensor *jac_log_softmax(jac_ctx *ctx, jac_tensor *a, int axis);
/** Sums a over the broadcast axes so that the result has the given shape,
 *  which a's shape must broadcast to (the adjoint of jac_expand). */
JAC_API jac_tensor *jac_sum_to_shape(jac_ctx *ctx, jac_tensor *a, int ndim,
                                     const int64_t *shape);
/** a broadcast to the given shape, as NumPy's broadcast_to (materialised). */
JAC_API jac_tensor *jac_expand(jac_ctx *ctx, jac_tensor *a, int ndim,
                               const int64_t *shape);
/** @} */

/** @defgroup ops_linalg Ops: linear algebra
 * Matrix products, transposes, traces and diagonals.
 * @{ */

/**
 * Matrix product with NumPy's matmul rules: 1-D operands are promoted to a
 * row (left) or a column (right) and the added axis removed from the result;
 * leading batch axes broadcast. Uses cblas_dgemm / cblas_dgemv.
 */
JAC_API jac_tensor *jac_matmul(jac_ctx *ctx, jac_tensor *a, jac_tensor *b);
/** a with axes axis0 and axis1 swapped (materialised). */
JAC_API jac_tensor *jac_transpose(jac_ctx *ctx, jac_tensor *a, int axis0,
                                  int axis1);
/** a with its axes reordered: axis i of the result is axis perm[i] of a;
 *  perm must be a permutation of 0 .. ndim - 1. */
JAC_API jac_tensor *jac_permute(jac_ctx *ctx, jac_tensor *a, const int *perm);
/** The inner product of two vectors of equal length, as a rank-0 tensor. */
JAC_API jac_tensor *jac_dot(jac_ctx *ctx, jac_tensor *a, jac_tensor *b);
/** The outer product a[i] * b[j] of two vectors. */
JAC_API jac_tensor *jac_outer(jac_ctx *ctx, jac_tensor *a, jac_tensor *b);
/** The sum of the diagonal of a matrix, as a rank-0 tensor. */
JAC_API jac_tensor *jac_trace(jac_ctx *ctx, jac_tensor *a);
/**
 * The diagonal of a taken over axis1 and axis2, with the given offset (> 0
 * above the main diagonal); those axes are removed and the diagonal becomes
 * the last axis, as NumPy's diagonal.
 */
JAC_API jac_tensor *jac_diagonal(jac_ctx *ctx, jac_tensor *a, int64_t offset,
                                 int axis1, int axis2);
/** @} */

/** @defgroup ops_lapack Ops: dense linear algebra (LAPACK)
 *
 * Dense linear algebra through LAPACK. Matrices are the last two axes; any
 * leading axes are a batch. A singular matrix (solve, inverse, and the
 * derivative of det) or one that is not positive definite (cholesky) fails
 * with JAC_ERR_VALUE, naming the op and the batch element, never a silent
 * NaN; so does a matrix holding NaN or infinity (solve, inverse, the
 * derivative of det, logdet, cholesky, lstsq, pinv, eigh; det itself
 * returns NaN then). All are differentiable to second order.
 * @{ */

/** x with a x = b, for square a (..., n, n) and b (..., n) or (..., n, k). */
JAC_API jac_tensor *jac_solve(jac_ctx *ctx, jac_tensor *a, jac_tensor *b);
/** The inverse of square a. */
JAC_API jac_tensor *jac_inverse(jac_ctx *ctx, jac_tensor *a);
/** The determinant of square a (0 for a singular matrix). */
JAC_API jac_tensor *jac_det(jac_ctx *ctx, jac_tensor *a);
/** log(det(a)) for square a with a positive determinant (JAC_ERR_VALUE
 *  otherwise). */
JAC_API jac_tensor *jac_logdet(jac_ctx *ctx, jac_tensor *a);
/** The lower-triangular l with l l^T = a, for symmetric positive definite
 *  a; only the lower triangle of a is read. */
JAC_API jac_tensor *jac_cholesky(jac_ctx *ctx, jac_tensor *a);
/**
 * The least-squares solution x of a x = b, minimising |a x - b|, for a
 * matrix a (m, n) with m >= n and full column rank, and b (m) or (m, k);
 * x has shape (n) or (n, k). Computed by Householder QR. A rank-deficient a
 * (a diagonal entry of R below m eps max|R_ii|) fails with JAC_ERR_VALUE,
 * since x is then not unique; a wide a (m < n) with JAC_ERR_SHAPE (see
 * jac_pinv). Differentiable to any order.
 */
JAC_API jac_tensor *jac_lstsq(jac_ctx *ctx, jac_tensor *a, jac_tensor *b);
/** The pseudo-inverse of a matrix a (m, n) of full rank: (a^T a)^-1 a^T when
 *  a is tall, a^T (a a^T)^-1 when it is wide, through jac_lstsq; pinv(a) b
 *  is then the least-squares or the least-norm solution of a x = b. A
 *  rank-deficient a fails with JAC_ERR_VALUE. */
JAC_API jac_tensor *jac_pinv(jac_ctx *ctx, jac_tensor *a);
/**
 * Eigenvalues (ascending, shape (..., n)) and eigenvectors (the columns of
 * shape (..., n, n)) of a symmetric matrix or batch of them, of which only
 * the lower triangle is read. Each eigenvector is signed so that its
 * largest entry (the first of equal ones) is positive. Either of values and
 * vectors may be NULL (not both). Differentiable to any order where the
 * eigenvalues are distinct, the gradient being the one for symmetric
 * changes of a (symmetrised); at repeated eigenvalues the eigenvectors are
 * not unique and their gradient is infinite or NaN, while the eigenvalues'
 * stays finite. NaN or infinity in a fails with JAC_ERR_VALUE.
 */
JAC_API jac_status jac_eigh(jac_ctx *ctx, jac_tensor *a, jac_tensor **values,
                            jac_tensor **vectors);
/** @} */

/** @defgroup ops_shape Ops: shape
 * Reshaping, slicing, joining, indexing and padding.
 * @{ */

/** The same values in a new shape of equal element count; at most one extent
 *  may be -1, which is inferred. */
JAC_API jac_tensor *jac_reshape(jac_ctx *ctx, jac_tensor *a, int ndim,
                                const int64_t *shape);
/**
 * Elements start, start + step, ... before stop along axis, with Python's
 * slice rules: negative start/stop count from the end, both are clamped to
 * the extent, and step must be positive.
 */
JAC_API jac_tensor *jac_slice(jac_ctx *ctx, jac_tensor *a, int axis,
                              int64_t start, int64_t stop, int64_t step);
/** Joins n tensors along axis; all other extents must agree. */
JAC_API jac_tensor *jac_concat(jac_ctx *ctx, size_t n, jac_tensor *const *ts,
                               int axis);
/** Stacks n tensors of one shape along a new axis (0 .. ndim). */
JAC_API jac_tensor *jac_stack(jac_ctx *ctx, size_t n, jac_tensor *const *ts,
                              int axis);
/**
 * Splits a along axis into n consecutive pieces of the given sizes, which
 * must add up to the extent; writes the pieces to out (n entries).
 */
JAC_API jac_status jac_split(jac_ctx *ctx, jac_tensor *a, int axis, size_t n,
                             const int64_t *sizes, jac_tensor **out);
/** a with axes start_axis .. end_axis (inclusive; negative counts from the
 *  end) merged into one. */
JAC_API jac_tensor *jac_flatten(jac_ctx *ctx, jac_tensor *a, int start_axis,
                                int end_axis);
/** a without axis, which must have extent 1. */
JAC_API jac_tensor *jac_squeeze(jac_ctx *ctx, jac_tensor *a, int axis);
/** a with a new axis of extent 1 at position axis (0 .. ndim; negative
 *  counts from the end of the result). */
JAC_API jac_tensor *jac_unsqueeze(jac_ctx *ctx, jac_tensor *a, int axis);
/** The entries of a at one index along axis, with that axis removed, as
 *  torch.select: jac_select(ctx, y, 0, 1) is y[1]. A negative index counts
 *  from the end. Fails with JAC_ERR_AXIS for a bad axis and JAC_ERR_VALUE
 *  for an index out of range. */
JAC_API jac_tensor *jac_select(jac_ctx *ctx, jac_tensor *a, int axis,
                               int64_t index);
/** The entries index[0 .. n-1] of a along axis (repeats allowed); the
 *  gradient adds up over repeats. An index out of range fails with
 *  JAC_ERR_VALUE. */
JAC_API jac_tensor *jac_index_select(jac_ctx *ctx, jac_tensor *a, int axis,
                                     size_t n, const int64_t *index);
/**
 * out[i][j]... = a[..][index[i][j]...][..] along axis, as torch.gather:
 * index has rank a's rank and the shape index_shape (extents no larger than
 * a's on the other axes); the result has index_shape. The gradient scatters
 * and adds.
 */
JAC_API jac_tensor *jac_gather(jac_ctx *ctx, jac_tensor *a, int axis,
                               const int64_t *index_shape,
                               const int64_t *index);
/** Elementwise cond ? a : b, where cond is non-zero; all three broadcast.
 *  No gradient flows into cond. */
JAC_API jac_tensor *jac_where(jac_ctx *ctx, jac_tensor *cond, jac_tensor *a,
                              jac_tensor *b);
/**
 * 1.0 where a > b and 0.0 elsewhere, elementwise, broadcast: the cond of a
 * branch jac_where(ctx, jac_gt(ctx, x, c), f, g). A comparison with NaN is
 * false. The derivative is exactly zero: each input's gradient is zeros
 * of its shape, whatever the incoming gradient holds (infinity and NaN
 * too), constants under JAC_CREATE_GRAPH. Recorded, like any op, when an
 * input requires gradients.
 */
JAC_API jac_tensor *jac_gt(jac_ctx *ctx, jac_tensor *a, jac_tensor *b);
/** 1.0 where a >= b, else 0.0 (false with NaN); as jac_gt. */
JAC_API jac_tensor *jac_ge(jac_ctx *ctx, jac_tensor *a, jac_tensor *b);
/** 1.0 where a < b, else 0.0 (false with NaN); as jac_gt. */
JAC_API jac_tensor *jac_lt(jac_ctx *ctx, jac_tensor *a, jac_tensor *b);
/** 1.0 where a <= b, else 0.0 (false with NaN); as jac_gt. */
JAC_API jac_tensor *jac_le(jac_ctx *ctx, jac_tensor *a, jac_tensor *b);
/** 1.0 where a == b, else 0.0 (NaN equals nothing, not even NaN; -0.0
 *  equals 0.0); as jac_gt. */
JAC_API jac_tensor *jac_eq(jac_ctx *ctx, jac_tensor *a, jac_tensor *b);
/** 1.0 where a != b, else 0.0: true wherever a or b is NaN; as jac_gt. */
JAC_API jac_tensor *jac_ne(jac_ctx *ctx, jac_tensor *a, jac_tensor *b);
/** a padded with zeros: before[i] and after[i] (non-negative) elements on
 *  each side of axis i. */
JAC_API jac_tensor *jac_pad(jac_ctx *ctx, jac_tensor *a, const int64_t *before,
                            const int64_t *after);

/** @} */

/* ------------------------------------------------------------------------ */
/** @defgroup random Random tensors
 *
 * Reproducible from the seed alone, on every machine and run.
 * @{ */
/* ------------------------------------------------------------------------ */

/** Uniform values in [lo, hi). */
JAC_API jac_tensor *jac_rand_uniform(jac_ctx *ctx, int ndim,
                                     const int64_t *shape, double lo, double hi,
                                     uint64_t seed);
/** Normal values with the given mean and standard deviation. */
JAC_API jac_tensor *jac_rand_normal(jac_ctx *ctx, int ndim,
                                    const int64_t *shape, double mean,
                                    double std, uint64_t seed);

/** @} */

/* ------------------------------------------------------------------------ */
/** @defgroup autodiff Reverse-mode autodiff
 * Gradients of outputs with respect to inputs, by backward passes over
 * the tape.
 * @{ */
/* ------------------------------------------------------------------------ */

/** Flags of jac_grad, jac_backward and the Jacobian drivers. */
enum jac_grad_flags {
    /** Keep the graph so that another pass can run through it. */
    JAC_RETAIN_GRAPH = 1u << 0,
    /** Record the pass itself, so the results can be differentiated again
     *  (implies JAC_RETAIN_GRAPH). */
    JAC_CREATE_GRAPH = 1u << 1,
    /** An input the outputs do not use gets a zero gradient, not an error. */
    JAC_ALLOW_UNUSED = 1u << 2,
    /** The leading axis of every seed is a batch of independent seeds; each
     *  gradient gets the same leading axis. */
    JAC_BATCHED_SEEDS = 1u << 3
};

/**
 * Gradients of the outputs with respect to the inputs: grads[i] receives
 * sum_k (d outputs[k] / d inputs[i])^T grad_outputs[k], shaped like
 * inputs[i] (with the batch axis in front under JAC_BATCHED_SEEDS).
 *
 * grad_outputs may be NULL, or hold NULL entries, only for one-element
 * outputs (seed 1). Every input must require gradients. Without
 * JAC_RETAIN_GRAPH the pass releases the nodes it visited, and a later pass
 * through them fails with JAC_ERR_RELEASED. On failure grads is left
 * untouched. The gradients belong to ctx.
 */
JAC_API jac_status jac_grad(jac_ctx *ctx, size_t noutputs,
                            jac_tensor *const *outputs,
                            jac_tensor *const *grad_outputs, size_t ninputs,
                            jac_tensor *const *inputs, unsigned flags,
                            jac_tensor **grads);

/**
 * Accumulates d output / d leaf (seeded by seed, which may be NULL for a
 * one-element output) into the .grad of every leaf requiring gradients that
 * output depends on (see jac_tensor_grad). Flags as jac_grad, less
 * JAC_ALLOW_UNUSED and JAC_BATCHED_SEEDS.
 */
JAC_API jac_status jac_backward(jac_ctx *ctx, jac_tensor *output,
                                jac_tensor *seed, unsigned flags);

/** @} */

/* ------------------------------------------------------------------------ */
/** @defgroup jacobians Jacobians
 * Whole Jacobians, row by row or in blocks, in reverse or forward mode.
 * @{ */
/* ------------------------------------------------------------------------ */

/** How a Jacobian is built. */
typedef enum jac_mode {
    /** Forward mode when the input has fewer elements than the outputs that
     *  depend on it, reverse mode otherwise. */
    JAC_MODE_AUTO = 0,
    /** Rows by backward passes (vector-Jacobian products). */
    JAC_MODE_REVERSE = 1,
    /** Columns by Jacobian-vector products (the double-backward trick: the
     *  backward pass is recorded with a dummy seed u, and differentiating
     *  J^T u with respect to u gives J v). */
    JAC_MODE_FORWARD = 2
} jac_mode;

/**
 * Progress of a long Jacobian or Hessian: called after each block with the
 * rows (or columns) done and the total. With several threads it is called
 * from the thread that finished the block, but never concurrently. Returning
 * non-zero cancels the call: no further block starts, and the call fails
 * with JAC_ERR_CANCELLED, leaving no partial result.
 */
typedef int (*jac_progress_fn)(int64_t done, int64_t total, void *user);

/** Options of the Jacobian drivers; a NULL pointer means all defaults. */
typedef struct jac_jacobian_opts {
    /** JAC_CREATE_GRAPH makes the result differentiable. Without
     *  JAC_ALLOW_UNUSED, an output that depends on none of the inputs, or an
     *  input that no output depends on, fails with JAC_ERR_UNUSED_INPUT (as
     *  in jac_grad), with a message that says why (recording off, an input
     *  marked after the output was computed, a constant); with it, such
     *  blocks are zeros computed without any pass. Other flags are
     *  ignored. */
    unsigned flags;
    /** Rows (reverse) or columns (forward) per pass: 1 is the row-by-row
     *  reference algorithm; 0 chooses the largest block whose cotangents fit
     *  in the context's memory budget (jac_ctx_set_memory_budget), and,
     *  without JAC_CREATE_GRAPH, first finds the Jacobian's sparsity
     *  pattern: when its colours take at most half the passes (an
     *  elementwise function has one, a stencil a handful), only those
     *  compressed passes run (see "Sparse Jacobians and Hessians"), and
     *  entries outside the pattern are exactly 0 even where a derivative
     *  is infinite or NaN (the row loop has NaN there: zero seeds times
     *  the derivative). The context keeps the last recording's pattern
     *  verdict and plan (in jac_ctx_memory, until jac_ctx_free): a loop
     *  that records the same code at every call finds the pattern once. */
    int64_t chunk;
    /** Reverse, forward, or chosen by shape (the default). */
    jac_mode mode;
    /** Optional progress callback (NULL for none). */
    jac_progress_fn progress;
    /** Passed to progress as its last argument. */
    void *progress_user;
} jac_jacobian_opts;

/**
 * The Jacobian dy/dx, of shape y.shape ++ x.shape, with default options
 * (blocks of rows within the memory budget, mode chosen by shape) and the
 * given flags (JAC_CREATE_GRAPH makes the result differentiable: the
 * Jacobian of a gradient built with JAC_CREATE_GRAPH is a Hessian, and
 * JAC_ALLOW_UNUSED allows a y that does not depend on x, such as the
 * gradient of a linear function: zeros then). x must require gradients.
 * y's graph is kept for further passes.
 */
JAC_API jac_tensor *jac_jacobian(jac_ctx *ctx, jac_tensor *y, jac_tensor *x,
                                 unsigned flags);

/**
 * Every block d ys[k] / d xs[i] of the Jacobian, written to
 * J[k * nx + i] with shape ys[k].shape ++ xs[i].shape. opts may be NULL.
 * With chunk = 1 and JAC_MODE_REVERSE this is the reference algorithm: one
 * backward pass per output element, seeded with e_i. Outputs that do not
 * depend on an input give zero blocks without a pass. On failure J is left
 * untouched.
 */
JAC_API jac_status jac_jacobian_ex(jac_ctx *ctx, size_t ny,
                                   jac_tensor *const *ys, size_t nx,
                                   jac_tensor *const *xs,
                                   const jac_jacobian_opts *opts,
                                   jac_tensor **J);

/**
 * Sets how many threads the Jacobian drivers may use for blocks of rows or
 * columns when JAC_CREATE_GRAPH is off (default 1). Results are bitwise
 * identical for any thread count. With more than one thread the context's
 * allocator hooks must be thread-safe.
 */
JAC_API jac_status jac_ctx_set_threads(jac_ctx *ctx, int threads);
/** The thread setting of the context. */
JAC_API int jac_ctx_threads(const jac_ctx *ctx);
/** Sets the memory, in bytes, that an automatic chunk size may use for the
 *  cotangents of one block (default 64 MiB). */
JAC_API jac_status jac_ctx_set_memory_budget(jac_ctx *ctx, size_t bytes);

/** @} */

/* ------------------------------------------------------------------------ */
/** @defgroup functional The functional API
 *
 * The functional drivers evaluate fn at inputs. An input that does not
 * require gradients is replaced by a leaf copy that does; with
 * JAC_CREATE_GRAPH an input that requires gradients is used as it is, so the
 * results stay differentiable with respect to it.
 * @{ */
/* ------------------------------------------------------------------------ */

/**
 * A differentiable function of tensors: read inputs, write every one of the
 * caller's expected outputs, and return JAC_OK (or the error of ctx). Used
 * by the functional drivers and the checkers.
 */
typedef jac_status (*jac_fn)(jac_ctx *ctx, jac_tensor *const *inputs,
                             jac_tensor **outputs, void *user);

/** Every block d fn_k / d inputs_i, in J[k * ninputs + i] (see
 *  jac_jacobian_ex). */
JAC_API jac_status jac_jacobian_fn(jac_ctx *ctx, jac_fn fn, void *user,
                                   size_t ninputs, jac_tensor *const *inputs,
                                   size_t noutputs,
                                   const jac_jacobian_opts *opts,
                                   jac_tensor **J);

/**
 * The Hessian of a function with one input x and a one-element output, of
 * shape x.shape ++ x.shape. Rows are Hessian-vector products (the Jacobian
 * of the gradient; with the automatic chunk only its colours when it is
 * sparse) and the result is symmetrised, (H + H^T) / 2, so it is
 * symmetric exactly. opts as jac_jacobian_ex.
 */
JAC_API jac_tensor *jac_hessian(jac_ctx *ctx, jac_fn fn, void *user,
                                jac_tensor *x, const jac_jacobian_opts *opts);

/**
 * The vector-Jacobian products sum_k v[k]^T d fn_k / d inputs_i into
 * vjps[i] (shaped like inputs[i]), and the function values into outputs
 * (noutputs entries; may be NULL). v[k] is shaped like output k; NULL entries
 * are allowed for one-element outputs (seed 1). flags: JAC_CREATE_GRAPH.
 */
JAC_API jac_status jac_vjp(jac_ctx *ctx, jac_fn fn, void *user, size_t ninputs,
                           jac_tensor *const *inputs, size_t noutputs,
                           jac_tensor *const *v, unsigned flags,
                           jac_tensor **outputs, jac_tensor **vjps);

/**
 * The Jacobian-vector products sum_i d fn_k / d inputs_i v[i] into jvps[k]
 * (shaped like output k), and the function values into outputs (may be
 * NULL), by the double-backward trick. v[i] is shaped like inputs[i].
 * flags: JAC_CREATE_GRAPH.
 */
JAC_API jac_status jac_jvp(jac_ctx *ctx, jac_fn fn, void *user, size_t ninputs,
                           jac_tensor *const *inputs, size_t noutputs,
                           jac_tensor *const *v, unsigned flags,
                           jac_tensor **outputs, jac_tensor **jvps);

/**
 * The Hessian-vector products H v of a function with a one-element output:
 * hvps[i] = sum_j d2 fn / d inputs_i d inputs_j v[j], and the value into
 * *output (may be NULL). flags: JAC_CREATE_GRAPH, and JAC_BATCHED_SEEDS for
 * k products in one call: every v[i] then has shape (k, inputs[i].shape...)
 * and hvps[i] gets the same, the gradient being recorded once for all k.
 */
JAC_API jac_status jac_hvp(jac_ctx *ctx, jac_fn fn, void *user, size_t ninputs,
                           jac_tensor *const *inputs, jac_tensor *const *v,
                           unsigned flags, jac_tensor **output,
                           jac_tensor **hvps);

/**
 * Per-sample Jacobians. fn maps a batch X of shape (B, ...) to one output of
 * shape (B, ...), treating every sample (row) on its own, as a network
 * applied to a batch does. The result has shape (B, out..., in...): for each
 * b the Jacobian of sample b's output with respect to sample b's input. The
 * cross-sample blocks, zero for such a function, are never computed: one
 * pass seeds the same output element in every sample at once. opts as
 * jac_jacobian_ex (forward mode is not used).
 */
JAC_API jac_tensor *jac_batch_jacobian(jac_ctx *ctx, jac_fn fn, void *user,
                                       jac_tensor *x,
                                       const jac_jacobian_opts *opts);

/** @} */

/* ------------------------------------------------------------------------ */
/** @defgroup programs Recorded functions: record once, evaluate anywhere
 * A recorded function (jac_program) holds the ops that computed some
 * outputs from some inputs, in a compact form that evaluates them again at
 * new input values, with their derivatives, written into caller buffers:
 * no tensors, no re-recording, and no allocation once a call of a kind has
 * run. Record it with jac_program_begin ... jac_program_end around ordinary
 * ops, or with jac_program_record from a jac_fn. It is self-contained
 * (valid after the tensors and the context it was recorded in are freed)
 * and may be evaluated from several threads at once (each concurrent call
 * uses a workspace of its own, made on first need with the recording
 * context's allocator hooks, which are then called from those threads).
 *
 * Arguments of an evaluation are one buffer per input (row-major, the
 * input's numel values), then one per parameter: a parameter is an input
 * that is not differentiated (data, weights, time) and may change from
 * call to call. The replay cannot follow a C `if` on a value: write
 * branches with the comparison ops and jac_where, which replay both ways.
 * A recording during which user code read a value computed from the
 * inputs (jac_tensor_data, jac_tensor_item, jac_tensor_get) is refused
 * unless JAC_PROGRAM_READS_OK says those reads steer no control flow.
 *
 * Errors of evaluations are returned as statuses, with a message for the
 * calling thread from jac_program_errmsg; outputs are left as they were
 * (blocks of a Jacobian or Hessian may hold part of the result). The JVP,
 * the Hessian and its products, and Jacobians with more output than input
 * elements evaluate a derived program, made on first use and kept; they
 * take programs of at most 64 inputs, parameters and outputs together.
 * @{ */
/* ------------------------------------------------------------------------ */

/** A recorded function. Opaque; freed by jac_program_free. */
typedef struct jac_program jac_program;

/** Flags of jac_program_end and jac_program_record. */
enum jac_program_flags {
    /** The recording read values computed from the inputs, and those reads
     *  did not decide which ops ran: record anyway. */
    JAC_PROGRAM_READS_OK = 1u << 0
};

/**
 * Starts recording a function of the given inputs (to differentiate) and
 * parameters (not differentiated), distinct tensors of ctx. Ops on them
 * until jac_program_end are recorded whatever jac_set_requires_grad said
 * (the inputs and parameters require gradients until then). Fails with
 * JAC_ERR_STATE when a recording is already open in ctx.
 */
JAC_API jac_status jac_program_begin(jac_ctx *ctx, size_t ninputs,
                                     jac_tensor *const *inputs, size_t nparams,
                                     jac_tensor *const *params);
/**
 * Ends the recording of ctx and makes *program compute the outputs from
 * the inputs and parameters given to jac_program_begin. Tensors the
 * outputs depend on that depend on neither are constants of the program.
 * Fails, with no program, when the recording read a value computed from
 * the inputs (unless flags has JAC_PROGRAM_READS_OK: the message names the
 * op and says how to write the branch with jac_where), when a value the
 * outputs depend on was computed from the inputs with recording off or
 * before jac_program_begin, or was replaced in place; the recording is
 * closed either way. The tensors and the tape are left as they are.
 */
JAC_API jac_status jac_program_end(jac_ctx *ctx, size_t noutputs,
                                   jac_tensor *const *outputs, unsigned flags,
                                   jac_program **program);
/**
 * Records fn at example inputs and parameters (tensors of ctx, copied: fn
 * sees copies that it receives as inputs[0 .. ninputs - 1] followed by the
 * parameters) and makes *program of its noutputs outputs. flags as for
 * jac_program_end. What fn made is released before the call returns.
 */
JAC_API jac_status jac_program_record(jac_ctx *ctx, jac_fn fn, void *user,
                                      size_t ninputs, jac_tensor *const *inputs,
                                      size_t nparams, jac_tensor *const *params,
                                      size_t noutputs, unsigned flags,
                                      jac_program **program);
/** Frees a recorded function. Accepts NULL. */
JAC_API void jac_program_free(jac_program *program);

/** The message of the last failed evaluation of a recorded function on
 *  the calling thread ("" when none failed). */
JAC_API const char *jac_program_errmsg(void);

/** The number of inputs, parameters or outputs (which: 'i', 'p', 'o'); 0
 *  for NULL or another which. */
JAC_API size_t jac_program_count(const jac_program *program, char which);
/** The rank of input, parameter or output k (which: 'i', 'p', 'o'), its
 *  extents in shape (JAC_MAX_DIMS values, may be NULL) and its numel in
 *  *numel (may be NULL); -1 when out of range. */
JAC_API int jac_program_shape(const jac_program *program, char which, size_t k,
                              int64_t *shape, int64_t *numel);
/** The number of recorded ops, and in *bytes (may be NULL) the bytes the
 *  program holds besides the workspaces of its calls. */
JAC_API size_t jac_program_length(const jac_program *program, size_t *bytes);
/** Threads for jac_program_jacobian and jac_program_hessian (1 by default:
 *  the recording context's setting is taken at recording); not to be
 *  changed while another thread evaluates the program. */
JAC_API jac_status jac_program_set_threads(jac_program *program, int threads);

/** The outputs at args (inputs then parameters): outputs[k] receives the
 *  numel values of output k (NULL entries are skipped). */
JAC_API jac_status jac_program_eval(jac_program *program,
                                    const double *const *args,
                                    double *const *outputs);
/**
 * A vector-Jacobian product at args: grads[i] = sum_k J_ki^T seeds[k],
 * each of input i's numel. seeds[k] may be NULL for zero; seeds itself
 * NULL means a seed of 1 for a single one-element output (the gradient).
 * outputs may be NULL (or its entries NULL) when the values are not
 * wanted; grads[i] may be NULL to skip input i.
 */
JAC_API jac_status jac_program_vjp(jac_program *program,
                                   const double *const *args,
                                   const double *const *seeds,
                                   double *const *outputs,
                                   double *const *grads);
/**
 * A Jacobian-vector product at args: jvps[k] = sum_i J_ki v[i] (v[i] NULL
 * for zero). outputs as for jac_program_vjp.
 */
JAC_API jac_status jac_program_jvp(jac_program *program,
                                   const double *const *args,
                                   const double *const *v,
                                   double *const *outputs, double *const *jvps);
/**
 * Every block of the Jacobian at args: J[k * ninputs + i] receives
 * d output_k / d input_i, row-major (output k's numel rows, input i's
 * numel columns); entries of J may be NULL to skip a block. Passes are
 * batched in blocks of seeds within the memory budget of the recording
 * context, reverse or forward by shape, on the program's threads. The
 * first call finds the sparsity pattern: when its colours take at most
 * half the passes, the program keeps that plan (in jac_program_length's
 * bytes) and every call runs only the compressed passes, with exact zeros
 * outside the pattern (see "Sparse Jacobians and Hessians"). Calls at
 * once wait for the first call's plan and then sweep its colours each in
 * buffers of its own, so that every call gives the same bits.
 */
JAC_API jac_status jac_program_jacobian(jac_program *program,
                                        const double *const *args,
                                        double *const *outputs,
                                        double *const *J);
/**
 * The Hessian at args of sum_k <weights[k], output_k> (weights NULL: the
 * single one-element output itself), H[i * ninputs + j] receiving
 * d2 / d input_i d input_j, row-major; entries may be NULL. The weights
 * change per call without re-recording (a Lagrangian's multipliers).
 */
JAC_API jac_status jac_program_hessian(jac_program *program,
                                       const double *const *args,
                                       const double *const *weights,
                                       double *const *H);
/** The Hessian of the same weighted sum times v (v[i] per input, NULL for
 *  zero): hvps[i] per input. */
JAC_API jac_status jac_program_hvp(jac_program *program,
                                   const double *const *args,
                                   const double *const *weights,
                                   const double *const *v, double *const *hvps);
/**
 * The recorded function of the gradient: *result has the inputs of
 * program, then its parameters followed by one weight per output (shaped
 * like the output) as parameters, and one output per input: the gradient
 * of sum_k <weight_k, output_k>. With JAC_PROGRAM_SEEDS_AS_INPUTS the
 * weights are inputs instead (after the inputs): a VJP that can be
 * differentiated in the weights too. It is a program like any other:
 * evaluate it, differentiate it again, ask for its Jacobian.
 */
JAC_API jac_status jac_program_gradient(jac_program *program, unsigned flags,
                                        jac_program **result);
/** Flag of jac_program_gradient. */
#define JAC_PROGRAM_SEEDS_AS_INPUTS (1u << 1)

/** @} */

/* ------------------------------------------------------------------------ */
/** @defgroup sparse Sparse Jacobians and Hessians
 *
 * Sparse derivatives of a recorded function (a jac_program), or of a
 * dynamic recording: the sparsity pattern is found through the recording,
 * valid at every point (both sides of a jac_where count), the rows or
 * columns are coloured so that entries sharing a colour never collide,
 * and one compressed sweep per colour gives every nonzero. A plan holds
 * the pattern, the colouring, the seeds and the recovery, built once;
 * each evaluation refills caller-owned values in the plan's order (CSR or
 * COO by rows, or by columns for CSC), without allocating. Structural
 * entries stay in the pattern even where their value is zero.
 * @{ */

/** Vertex orders of the greedy colourings. */
typedef enum jac_color_order {
    JAC_ORDER_BEST = 0,      /**< try each order, keep the fewest colours */
    JAC_ORDER_NATURAL,       /**< rows or columns as numbered */
    JAC_ORDER_LARGEST_FIRST, /**< by decreasing degree */
    JAC_ORDER_SMALLEST_LAST, /**< repeatedly remove a vertex of least degree */
    JAC_ORDER_INCIDENCE_DEGREE /**< most neighbours already ordered first */
} jac_color_order;

/** How a plan computes its compressed derivatives. */
typedef enum jac_sparse_method {
    /** Jacobians: the cheaper of FORWARD and REVERSE (colours times the
     * cost of one sweep of each); Hessians: STAR. */
    JAC_SPARSE_AUTO = 0,
    JAC_SPARSE_FORWARD, /**< columns coloured, J S by forward sweeps */
    JAC_SPARSE_REVERSE, /**< rows coloured, S^T J by reverse sweeps */
    JAC_SPARSE_STAR,    /**< Hessians: star colouring, direct recovery */
    JAC_SPARSE_ACYCLIC  /**< Hessians: acyclic colouring, substitution */
} jac_sparse_method;

/** The part of a symmetric Hessian a plan's values hold. */
typedef enum jac_triangle {
    JAC_TRIANGLE_FULL = 0, /**< both triangles */
    JAC_TRIANGLE_LOWER,    /**< row >= column */
    JAC_TRIANGLE_UPPER     /**< row <= column */
} jac_triangle;

/** Index flavours of an exported structure (combine with |). */
enum {
    JAC_INDEX_INT32 = 0,    /**< int32_t indices (the default) */
    JAC_INDEX_INT64 = 1,    /**< int64_t indices */
    JAC_INDEX_ONE_BASED = 2 /**< indices count from 1 (Fortran, IPOPT) */
};

/** Options of a plan; zero-initialised means automatic choices. */
typedef struct jac_sparse_opts {
    jac_sparse_method method; /**< how colours are computed */
    jac_color_order order;    /**< the vertex order of the colouring */
    jac_triangle triangle;    /**< Hessians only */
    /** Values in column order (CSC) rather than row order (CSR, COO). */
    bool by_columns;
} jac_sparse_opts;

/** A sparse plan: pattern, colouring, seeds and recovery. */
typedef struct jac_sparse jac_sparse;

/**
 * A plan for the sparse Jacobian of program: a row per element of its
 * outputs (one output after another), a column per element of its inputs.
 * The pattern holds at every point; the colouring is the one of opts
 * (NULL: automatic). The program must outlive the plan. On success *plan
 * is the caller's to free with jac_sparse_free; errors (a status, and
 * jac_program_errmsg) leave *plan NULL.
 */
JAC_API jac_status jac_sparse_jacobian_plan(jac_program *program,
                                            const jac_sparse_opts *opts,
                                            jac_sparse **plan);
/**
 * A plan for the sparse Hessian of sum_k <w_k, y_k> (y_k the outputs of
 * program, the weights w_k given at each evaluation) in its inputs: the
 * Hessian of the Lagrangian of an optimiser without re-recording. The
 * pattern holds for every point and every weights; opts.triangle picks
 * the part the values hold. As jac_sparse_jacobian_plan otherwise.
 */
JAC_API jac_status jac_sparse_hessian_plan(jac_program *program,
                                           const jac_sparse_opts *opts,
                                           jac_sparse **plan);
/**
 * The nonzeros of the Jacobian at args (the program's inputs, then its
 * parameters) into values (jac_sparse_nnz of them, in the plan's order),
 * and the outputs' values into outputs unless it is NULL. Allocates
 * nothing once the program's workspaces exist. A plan serves one call at
 * a time (JAC_ERR_STATE otherwise); values are untouched on error.
 */
JAC_API jac_status jac_sparse_jacobian(jac_sparse *plan,
                                       const double *const *args,
                                       double *values, double *const *outputs);
/**
 * The nonzeros of the Hessian of sum_k <weights[k], y_k> at args into
 * values; weights may be NULL for a single one-element output (weight 1).
 * As jac_sparse_jacobian otherwise.
 */
JAC_API jac_status jac_sparse_hessian(jac_sparse *plan,
                                      const double *const *args,
                                      const double *const *weights,
                                      double *values);
/** Entries of the plan's values (0 for a NULL plan). */
JAC_API int64_t jac_sparse_nnz(const jac_sparse *plan);
/** Colours, i.e. compressed sweeps per evaluation. */
JAC_API int64_t jac_sparse_colors(const jac_sparse *plan);
/** The method the plan uses (AUTO resolved to one of the others). */
JAC_API jac_sparse_method jac_sparse_method_used(const jac_sparse *plan);
/** The matrix's rows and columns (either pointer may be NULL). */
JAC_API void jac_sparse_dims(const jac_sparse *plan, int64_t *rows,
                             int64_t *cols);
/**
 * The structure in compressed form: row pointers (rows + 1 of them) and
 * column indices (nnz), or, for a plan made with by_columns, column
 * pointers (cols + 1) and row indices: CSR or CSC in value order. Index
 * type and base per flags (JAC_INDEX_*); JAC_ERR_VALUE when 32-bit
 * indices cannot hold the matrix.
 */
JAC_API jac_status jac_sparse_csr(const jac_sparse *plan, unsigned flags,
                                  void *ptr, void *idx);
/** The structure as coordinates: rows[k], cols[k] of value k (nnz each). */
JAC_API jac_status jac_sparse_coo(const jac_sparse *plan, unsigned flags,
                                  void *rows, void *cols);
/** Frees a plan; accepts NULL. */
JAC_API void jac_sparse_free(jac_sparse *plan);

/**
 * The sparse Jacobian of outputs in inputs (which must require gradients)
 * from ctx's dynamic recording, into values. With *plan NULL, a plan is
 * made (pattern, colouring; opts as for jac_sparse_jacobian_plan) and
 * returned in *plan, the caller's to free. With a plan from an earlier
 * call, the new recording is checked to be the same code (the same ops in
 * the same order on the same shapes, parameters and indices) and the plan
 * is reused; any difference fails with JAC_ERR_STATE. values may be NULL
 * when the call makes the plan: then only the plan is made, and
 * jac_sparse_nnz(*plan) sizes the values of later calls. The graph is
 * left as it is. Errors are ctx's.
 */
JAC_API jac_status jac_sparse_jacobian_tape(jac_ctx *ctx, size_t noutputs,
                                            jac_tensor *const *outputs,
                                            size_t ninputs,
                                            jac_tensor *const *inputs,
                                            const jac_sparse_opts *opts,
                                            jac_sparse **plan, double *values);
/** The sparse Hessian of a one-element output in inputs from ctx's dynamic
 *  recording; as jac_sparse_jacobian_tape. */
JAC_API jac_status jac_sparse_hessian_tape(jac_ctx *ctx, jac_tensor *output,
                                           size_t ninputs,
                                           jac_tensor *const *inputs,
                                           const jac_sparse_opts *opts,
                                           jac_sparse **plan, double *values);

/** @} */

/** @defgroup interop Interop: DOT and .npy
 * The tape as a Graphviz graph, and tensors as NumPy .npy files.
 * @{ */
/* ------------------------------------------------------------------------ */

/**
 * Writes the tape, or part of it, to out as a Graphviz DOT graph (render it
 * with `dot -Tpng`). Each op is an ellipse labelled with its tape index, op
 * name and output shape; each leaf it reads is a box (filled when it
 * requires gradients); released nodes are dashed and marked "released";
 * the given outputs have a double border and the inputs are labelled.
 *
 * With noutputs == 0 and ninputs == 0 the whole tape is drawn. Outputs keep
 * only the nodes that lead to them, inputs only the nodes that depend on
 * them; with both, the nodes between. A tensor made by a node that is left
 * out is drawn as a dotted box. Reads the tape only. Fails with
 * JAC_ERR_NULL_ARG or JAC_ERR_CONTEXT on bad arguments and JAC_ERR_VALUE when
 * writing fails.
 */
JAC_API jac_status jac_export_dot(jac_ctx *ctx, size_t noutputs,
                                  jac_tensor *const *outputs, size_t ninputs,
                                  jac_tensor *const *inputs, FILE *out);

/**
 * Saves t to path as a NumPy .npy file (format version 1.0, '<f8', C order),
 * byte for byte what numpy.save writes for the same float64 array; any rank.
 * Errors go to t's context: JAC_ERR_VALUE naming the file when it cannot be
 * opened or written (a partly written file is left as it is; loading it
 * fails). A NULL or released t gives JAC_ERR_NULL_ARG or JAC_ERR_CONTEXT
 * without a recorded error.
 */
JAC_API jac_status jac_save_npy(const jac_tensor *t, const char *path);

/** As jac_save_npy, to an open binary stream, which is left open after the
 *  array; several arrays may follow one another in one stream. */
JAC_API jac_status jac_write_npy(const jac_tensor *t, FILE *out);

/**
 * Loads a .npy file into a new leaf tensor owned by ctx (it does not
 * require gradients). Reads format versions 1.0, 2.0 and 3.0 of a float64
 * array: '<f8', or '>f8' converted to the host's order; a Fortran-ordered
 * file (fortran_order True) is transposed into row-major order, so the
 * tensor has the shape and values NumPy shows. Bytes after the array are
 * ignored.
 *
 * Returns NULL on failure, with an error naming the file and the problem:
 * JAC_ERR_VALUE when the file cannot be opened or is not such an array (bad
 * magic or version, truncated, malformed header, another dtype, data too
 * short), JAC_ERR_RANK above JAC_MAX_DIMS dimensions, JAC_ERR_OVERFLOW for a
 * shape whose size overflows, JAC_ERR_NO_MEMORY.
 */
JAC_API jac_tensor *jac_load_npy(jac_ctx *ctx, const char *path);

/** As jac_load_npy, from an open binary stream, which is left just after
 *  the array (so several arrays can be read from one stream in turn). */
JAC_API jac_tensor *jac_read_npy(jac_ctx *ctx, FILE *in);

/** @} */

/* ------------------------------------------------------------------------ */
/** @defgroup checks Derivative checks
 * First and second derivatives compared with finite differences.
 * @{ */
/* ------------------------------------------------------------------------ */

/** Tolerances of the checkers; a NULL pointer means the defaults. */
typedef struct jac_check_opts {
    double eps;    /**< finite-difference step (default 1e-6) */
    double atol;   /**< absolute tolerance (default 1e-5) */
    double rtol;   /**< relative tolerance (default 1e-3) */
    uint64_t seed; /**< seed of the random grad_outputs in gradgradcheck */
} jac_check_opts;

/**
 * Compares every first derivative of fn at inputs (each must require
 * gradients) with central finite differences. Returns JAC_OK, or
 * JAC_ERR_CHECK_FAILED with a message naming the output, the input, the
 * element and both values.
 */
JAC_API jac_status jac_gradcheck(jac_ctx *ctx, jac_fn fn, void *user,
                                 size_t ninputs, jac_tensor *const *inputs,
                                 size_t noutputs, const jac_check_opts *opts);

/**
 * Checks second derivatives: the gradient of sum_k <outputs[k], v_k> for
 * fixed pseudo-random v_k, built with JAC_CREATE_GRAPH, is itself checked by
 * jac_gradcheck. Same results as jac_gradcheck.
 */
JAC_API jac_status jac_gradgradcheck(jac_ctx *ctx, jac_fn fn, void *user,
                                     size_t ninputs, jac_tensor *const *inputs,
                                     size_t noutputs,
                                     const jac_check_opts *opts);

/** @} */

#ifdef __cplusplus
}
#endif

#endif /* JACOBIAN_H */
