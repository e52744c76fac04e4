/*
 * Helpers shared by the libjacobian test suites.
 *
 * - tu_tensor / tu_leaf: a tensor from a literal shape and values.
 * - tu_assert_close / tu_assert_tensor: compare doubles with a message that
 *   names the first element out of tolerance.
 * - tu_fd_jacobian: a central finite-difference Jacobian of a jac_fn that
 *   does not use the library's own checker: it evaluates the function on
 *   perturbed copies of the inputs with recording switched off.
 * - tu_gradcheck / tu_gradgradcheck: run the library's checkers and, on
 *   failure, print jac_errmsg before failing the test.
 *
 * Every helper reports the caller's file and line on failure.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef LIBJACOBIAN_TESTUTIL_H
#define LIBJACOBIAN_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jacobian.h"

/* A literal shape or list of values, usable as a macro argument:
 * tu_tensor(ctx, TU_SHAPE(2, 3), TU_VALUES(1, 2, 3, 4, 5, 6)). */
#define TU_SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define TU_VALUES(...) ((const double[]){__VA_ARGS__})
#define TU_COUNT(array) (sizeof(array) / sizeof((array)[0]))

/* Tolerances used throughout: values computed by a few exact float
 * operations, and derivatives against central differences. */
#define TU_EXACT 0.0
#define TU_TIGHT 1e-12
#define TU_FD_TOL 1e-6

static inline void tu_fail_at(const char *file, int line) { _fail(file, line); }

/* Fails unless ctx holds no error; prints the error otherwise. */
static inline void tu_assert_no_error_at(const jac_ctx *ctx, const char *file,
                                         int line)
{
    if (jac_errcode(ctx) != JAC_OK) {
        print_error("unexpected error %s: %s\n",
                    jac_status_name(jac_errcode(ctx)), jac_errmsg(ctx));
        tu_fail_at(file, line);
    }
}
#define tu_assert_no_error(ctx) tu_assert_no_error_at((ctx), __FILE__, __LINE__)

/* Fails unless status is JAC_OK; prints the context's message otherwise. */
static inline void tu_assert_ok_at(const jac_ctx *ctx, jac_status status,
                                   const char *file, int line)
{
    if (status != JAC_OK) {
        print_error("call failed with %s: %s\n", jac_status_name(status),
                    ctx ? jac_errmsg(ctx) : "(no context)");
        tu_fail_at(file, line);
    }
}
#define tu_assert_ok(ctx, status)                                              \
    tu_assert_ok_at((ctx), (status), __FILE__, __LINE__)

/* A tensor of the given shape and values; fails the test when the number of
 * values does not match the shape or when the library refuses. */
static inline jac_tensor *tu_tensor_at(jac_ctx *ctx, int ndim,
                                       const int64_t *shape,
                                       const double *values, size_t nvalues,
                                       const char *file, int line)
{
    size_t numel = 1;
    for (int i = 0; i < ndim; ++i) {
        numel *= (size_t)shape[i];
    }
    if (numel != nvalues) {
        print_error("test bug: shape holds %zu elements, %zu values given\n",
                    numel, nvalues);
        tu_fail_at(file, line);
    }
    jac_tensor *t = jac_tensor_new(ctx, ndim, shape, values);
    if (t == NULL) {
        print_error("jac_tensor_new failed: %s\n", jac_errmsg(ctx));
        tu_fail_at(file, line);
    }
    return t;
}
#define tu_tensor(ctx, shape, values)                                          \
    tu_tensor_at((ctx), (int)TU_COUNT(shape), (shape), (values),               \
                 TU_COUNT(values), __FILE__, __LINE__)

/* As tu_tensor, marked as requiring gradients. */
static inline jac_tensor *tu_leaf_at(jac_ctx *ctx, int ndim,
                                     const int64_t *shape, const double *values,
                                     size_t nvalues, const char *file, int line)
{
    jac_tensor *t = tu_tensor_at(ctx, ndim, shape, values, nvalues, file, line);
    tu_assert_ok_at(ctx, jac_set_requires_grad(t, true), file, line);
    return t;
}
#define tu_leaf(ctx, shape, values)                                            \
    tu_leaf_at((ctx), (int)TU_COUNT(shape), (shape), (values),                 \
               TU_COUNT(values), __FILE__, __LINE__)

/* A rank-0 leaf requiring gradients. */
static inline jac_tensor *tu_scalar_leaf_at(jac_ctx *ctx, double value,
                                            const char *file, int line)
{
    jac_tensor *t = jac_scalar(ctx, value);
    if (t == NULL) {
        print_error("jac_scalar failed: %s\n", jac_errmsg(ctx));
        tu_fail_at(file, line);
    }
    tu_assert_ok_at(ctx, jac_set_requires_grad(t, true), file, line);
    return t;
}
#define tu_scalar_leaf(ctx, value)                                             \
    tu_scalar_leaf_at((ctx), (value), __FILE__, __LINE__)

/* A leaf requiring gradients, of any shape, with values f(i) = a smooth,
 * non-repeating function of the flat index (in (0.2, 1.8), so that log and
 * fractional powers are defined). */
static inline jac_tensor *tu_smooth_leaf_at(jac_ctx *ctx, int ndim,
                                            const int64_t *shape, double phase,
                                            const char *file, int line)
{
    size_t numel = 1;
    for (int i = 0; i < ndim; ++i) {
        numel *= (size_t)shape[i];
    }
    double *values = malloc((numel ? numel : 1) * sizeof *values);
    if (values == NULL) {
        tu_fail_at(file, line);
        return NULL;
    }
    for (size_t i = 0; i < numel; ++i) {
        values[i] = 1.0 + 0.8 * sin(0.9 * (double)i + phase);
    }
    jac_tensor *t = jac_tensor_new(ctx, ndim, shape, values);
    free(values);
    if (t == NULL) {
        print_error("jac_tensor_new failed: %s\n", jac_errmsg(ctx));
        tu_fail_at(file, line);
    }
    tu_assert_ok_at(ctx, jac_set_requires_grad(t, true), file, line);
    return t;
}
#define tu_smooth_leaf(ctx, shape, phase)                                      \
    tu_smooth_leaf_at((ctx), (int)TU_COUNT(shape), (shape), (phase), __FILE__, \
                      __LINE__)

/* Fails unless |got[i] - want[i]| <= atol + rtol * |want[i]| for every i.
 * NaNs compare equal to NaNs and infinities to the same infinity. */
static inline void tu_assert_close_at(const double *got, const double *want,
                                      size_t n, double atol, double rtol,
                                      const char *file, int line)
{
    if (got == NULL) {
        print_error("got NULL data (want %zu values)\n", n);
        tu_fail_at(file, line);
        return;
    }
    for (size_t i = 0; i < n; ++i) {
        double g = got[i];
        double w = want[i];
        if (isnan(w) && isnan(g)) {
            continue;
        }
        if (isinf(w) && g == w) {
            continue;
        }
        double diff = fabs(g - w);
        if (!(diff <= atol + rtol * fabs(w))) {
            print_error("element %zu of %zu: got %.17g, want %.17g "
                        "(diff %.3g, atol %.3g, rtol %.3g)\n",
                        i, n, g, w, diff, atol, rtol);
            tu_fail_at(file, line);
        }
    }
}
#define tu_assert_close(got, want, n, atol, rtol)                              \
    tu_assert_close_at((got), (want), (n), (atol), (rtol), __FILE__, __LINE__)

/* Fails unless t has exactly the given shape. */
static inline void tu_assert_shape_at(const jac_tensor *t, int ndim,
                                      const int64_t *shape, const char *file,
                                      int line)
{
    if (t == NULL) {
        print_error("tensor is NULL\n");
        tu_fail_at(file, line);
        return;
    }
    bool same = jac_tensor_ndim(t) == ndim;
    for (int i = 0; same && i < ndim; ++i) {
        same = jac_tensor_shape(t)[i] == shape[i];
    }
    if (!same) {
        char got[160] = "";
        char want[160] = "";
        size_t used = 0;
        for (int i = 0; i < jac_tensor_ndim(t) && used < sizeof got - 24; ++i) {
            used += (size_t)snprintf(got + used, sizeof got - used, "%s%lld",
                                     i ? ", " : "",
                                     (long long)jac_tensor_shape(t)[i]);
        }
        used = 0;
        for (int i = 0; i < ndim && used < sizeof want - 24; ++i) {
            used += (size_t)snprintf(want + used, sizeof want - used, "%s%lld",
                                     i ? ", " : "", (long long)shape[i]);
        }
        print_error("shape (%s) of rank %d, want (%s) of rank %d\n", got,
                    jac_tensor_ndim(t), want, ndim);
        tu_fail_at(file, line);
    }
}
#define tu_assert_shape(t, shape)                                              \
    tu_assert_shape_at((t), (int)TU_COUNT(shape), (shape), __FILE__, __LINE__)
#define tu_assert_rank0(t) tu_assert_shape_at((t), 0, NULL, __FILE__, __LINE__)

/* Fails unless t has the given shape and values (to atol, relative 0). */
static inline void tu_assert_tensor_at(const jac_tensor *t, int ndim,
                                       const int64_t *shape,
                                       const double *values, size_t nvalues,
                                       double atol, const char *file, int line)
{
    tu_assert_shape_at(t, ndim, shape, file, line);
    if ((size_t)jac_tensor_numel(t) != nvalues) {
        print_error("test bug: %zu values for %lld elements\n", nvalues,
                    (long long)jac_tensor_numel(t));
        tu_fail_at(file, line);
    }
    tu_assert_close_at(jac_tensor_data(t), values, nvalues, atol, 0.0, file,
                       line);
}
#define tu_assert_tensor(t, shape, values, atol)                               \
    tu_assert_tensor_at((t), (int)TU_COUNT(shape), (shape), (values),          \
                        TU_COUNT(values), (atol), __FILE__, __LINE__)

/* Fails unless t is a rank-0 tensor holding value (to atol). */
static inline void tu_assert_scalar_at(const jac_tensor *t, double value,
                                       double atol, const char *file, int line)
{
    tu_assert_shape_at(t, 0, NULL, file, line);
    tu_assert_close_at(jac_tensor_data(t), &value, 1, atol, 0.0, file, line);
}
#define tu_assert_scalar(t, value, atol)                                       \
    tu_assert_scalar_at((t), (value), (atol), __FILE__, __LINE__)

/* Fails unless haystack contains needle; prints both otherwise. */
static inline void tu_assert_contains_at(const char *haystack,
                                         const char *needle, const char *file,
                                         int line)
{
    if (haystack == NULL || strstr(haystack, needle) == NULL) {
        print_error("message \"%s\" does not contain \"%s\"\n",
                    haystack ? haystack : "(NULL)", needle);
        tu_fail_at(file, line);
    }
}
#define tu_assert_contains(haystack, needle)                                   \
    tu_assert_contains_at((haystack), (needle), __FILE__, __LINE__)

/* Fails unless ctx holds error code, with a non-empty message. */
static inline void tu_assert_error_at(const jac_ctx *ctx, jac_status code,
                                      const char *file, int line)
{
    if (jac_errcode(ctx) != code) {
        print_error("error %s (%s), want %s\n",
                    jac_status_name(jac_errcode(ctx)), jac_errmsg(ctx),
                    jac_status_name(code));
        tu_fail_at(file, line);
    }
    if (jac_errmsg(ctx) == NULL || jac_errmsg(ctx)[0] == '\0') {
        print_error("error %s has an empty message\n", jac_status_name(code));
        tu_fail_at(file, line);
    }
}
#define tu_assert_error(ctx, code)                                             \
    tu_assert_error_at((ctx), (code), __FILE__, __LINE__)

/*
 * The central finite-difference Jacobian of output out_index of fn with
 * respect to input in_index, written row-major into jac (numel(output) x
 * numel(input) values). It uses nothing of the library's autodiff: every
 * evaluation runs in no-grad mode on fresh copies of the inputs, one element
 * moved by +eps or -eps. Returns false (after printing why) if fn fails.
 */
static inline bool tu_fd_jacobian(jac_ctx *ctx, jac_fn fn, void *user,
                                  size_t ninputs, jac_tensor *const *inputs,
                                  size_t noutputs, size_t out_index,
                                  size_t in_index, double eps, double *jac)
{
    bool ok = false;
    bool was_enabled = jac_set_grad_enabled(ctx, false);
    jac_tensor **args = calloc(ninputs, sizeof *args);
    jac_tensor **plus = calloc(noutputs, sizeof *plus);
    jac_tensor **minus = calloc(noutputs, sizeof *minus);
    const jac_tensor *x = inputs[in_index];
    size_t nx = (size_t)jac_tensor_numel(x);
    double *moved = malloc((nx ? nx : 1) * sizeof *moved);
    if (args == NULL || plus == NULL || minus == NULL || moved == NULL) {
        goto done;
    }
    for (size_t i = 0; i < ninputs; ++i) {
        args[i] = jac_tensor_copy(ctx, inputs[i]);
        if (args[i] == NULL) {
            print_error("tu_fd_jacobian: copy failed: %s\n", jac_errmsg(ctx));
            goto done;
        }
    }
    size_t ny = 0;
    for (size_t k = 0; k < nx; ++k) {
        memcpy(moved, jac_tensor_data(x), nx * sizeof *moved);
        double x0 = moved[k];
        moved[k] = x0 + eps;
        args[in_index] =
            jac_tensor_new(ctx, jac_tensor_ndim(x), jac_tensor_shape(x), moved);
        if (args[in_index] == NULL || fn(ctx, args, plus, user) != JAC_OK) {
            print_error("tu_fd_jacobian: f(x + eps e_%zu) failed: %s\n", k,
                        jac_errmsg(ctx));
            goto done;
        }
        moved[k] = x0 - eps;
        args[in_index] =
            jac_tensor_new(ctx, jac_tensor_ndim(x), jac_tensor_shape(x), moved);
        if (args[in_index] == NULL || fn(ctx, args, minus, user) != JAC_OK) {
            print_error("tu_fd_jacobian: f(x - eps e_%zu) failed: %s\n", k,
                        jac_errmsg(ctx));
            goto done;
        }
        const double *yp = jac_tensor_data(plus[out_index]);
        const double *ym = jac_tensor_data(minus[out_index]);
        ny = (size_t)jac_tensor_numel(plus[out_index]);
        /* Actual step: x0 + eps and x0 - eps are rounded. */
        double h = (x0 + eps) - (x0 - eps);
        for (size_t r = 0; r < ny; ++r) {
            jac[r * nx + k] = (yp[r] - ym[r]) / h;
        }
    }
    ok = true;
done:
    jac_set_grad_enabled(ctx, was_enabled);
    free(args);
    free(plus);
    free(minus);
    free(moved);
    return ok;
}

/*
 * Fails unless jac_jacobian of output out_index with respect to input
 * in_index, evaluated by the library's reverse mode, matches tu_fd_jacobian
 * to tol (absolute and relative).
 */
static inline void tu_assert_jacobian_matches_fd_at(
    jac_ctx *ctx, jac_fn fn, void *user, size_t ninputs,
    jac_tensor *const *inputs, size_t noutputs, size_t out_index,
    size_t in_index, double tol, const char *file, int line)
{
    jac_tensor **outputs = calloc(noutputs, sizeof *outputs);
    if (outputs == NULL) {
        tu_fail_at(file, line);
        return;
    }
    tu_assert_ok_at(ctx, fn(ctx, inputs, outputs, user), file, line);
    jac_tensor *y = outputs[out_index];
    jac_tensor *x = inputs[in_index];
    jac_tensor *jac = jac_jacobian(ctx, y, x, 0);
    if (jac == NULL) {
        print_error("jac_jacobian failed: %s\n", jac_errmsg(ctx));
        free(outputs);
        tu_fail_at(file, line);
        return;
    }
    /* Shape y.shape ++ x.shape. */
    int64_t shape[2 * JAC_MAX_DIMS];
    int ny = jac_tensor_ndim(y);
    int nx = jac_tensor_ndim(x);
    for (int i = 0; i < ny; ++i) {
        shape[i] = jac_tensor_shape(y)[i];
    }
    for (int i = 0; i < nx; ++i) {
        shape[ny + i] = jac_tensor_shape(x)[i];
    }
    tu_assert_shape_at(jac, ny + nx, shape, file, line);
    size_t n = (size_t)jac_tensor_numel(jac);
    double *fd = malloc((n ? n : 1) * sizeof *fd);
    if (fd == NULL) {
        free(outputs);
        tu_fail_at(file, line);
        return;
    }
    bool ok = tu_fd_jacobian(ctx, fn, user, ninputs, inputs, noutputs,
                             out_index, in_index, 1e-6, fd);
    free(outputs);
    if (!ok) {
        free(fd);
        tu_fail_at(file, line);
        return;
    }
    double *want = fd;
    tu_assert_close_at(jac_tensor_data(jac), want, n, tol, tol, file, line);
    free(fd);
}
#define tu_assert_jacobian_matches_fd(ctx, fn, user, ninputs, inputs,          \
                                      noutputs, out_index, in_index)           \
    tu_assert_jacobian_matches_fd_at((ctx), (fn), (user), (ninputs), (inputs), \
                                     (noutputs), (out_index), (in_index),      \
                                     TU_FD_TOL, __FILE__, __LINE__)

/* jac_gradcheck that fails the test, printing jac_errmsg, unless it passes. */
static inline void tu_gradcheck_at(jac_ctx *ctx, jac_fn fn, void *user,
                                   size_t ninputs, jac_tensor *const *inputs,
                                   size_t noutputs, const char *file, int line)
{
    jac_status status =
        jac_gradcheck(ctx, fn, user, ninputs, inputs, noutputs, NULL);
    if (status != JAC_OK) {
        print_error("jac_gradcheck: %s: %s\n", jac_status_name(status),
                    jac_errmsg(ctx));
        tu_fail_at(file, line);
    }
    tu_assert_no_error_at(ctx, file, line);
}
#define tu_gradcheck(ctx, fn, user, ninputs, inputs, noutputs)                 \
    tu_gradcheck_at((ctx), (fn), (user), (ninputs), (inputs), (noutputs),      \
                    __FILE__, __LINE__)

/* jac_gradgradcheck that fails the test, printing jac_errmsg, unless it
 * passes. */
static inline void tu_gradgradcheck_at(jac_ctx *ctx, jac_fn fn, void *user,
                                       size_t ninputs,
                                       jac_tensor *const *inputs,
                                       size_t noutputs, const char *file,
                                       int line)
{
    jac_status status =
        jac_gradgradcheck(ctx, fn, user, ninputs, inputs, noutputs, NULL);
    if (status != JAC_OK) {
        print_error("jac_gradgradcheck: %s: %s\n", jac_status_name(status),
                    jac_errmsg(ctx));
        tu_fail_at(file, line);
    }
    tu_assert_no_error_at(ctx, file, line);
}
#define tu_gradgradcheck(ctx, fn, user, ninputs, inputs, noutputs)             \
    tu_gradgradcheck_at((ctx), (fn), (user), (ninputs), (inputs), (noutputs),  \
                        __FILE__, __LINE__)

/* Both checks: first and second derivatives against finite differences. */
#define tu_check_derivatives(ctx, fn, user, ninputs, inputs, noutputs)         \
    do {                                                                       \
        tu_gradcheck_at((ctx), (fn), (user), (ninputs), (inputs), (noutputs),  \
                        __FILE__, __LINE__);                                   \
        tu_gradgradcheck_at((ctx), (fn), (user), (ninputs), (inputs),          \
                            (noutputs), __FILE__, __LINE__);                   \
    } while (0)

/* cmocka fixtures: a fresh context per test in *state. */
static inline int tu_setup_ctx(void **state)
{
    jac_ctx *ctx = jac_ctx_new();
    *state = ctx;
    return ctx == NULL ? -1 : 0;
}

static inline int tu_teardown_ctx(void **state)
{
    jac_ctx_free(*state);
    *state = NULL;
    return 0;
}

#define TU_TEST(name)                                                          \
    cmocka_unit_test_setup_teardown(name, tu_setup_ctx, tu_teardown_ctx)

#endif /* LIBJACOBIAN_TESTUTIL_H */
