/*
 * Batched seeds against the row loop: for a function of tensors, one
 * backward pass with a block of B seeds (JAC_BATCHED_SEEDS) must give, row
 * for row, what B separate passes give. Used by every op suite, with and
 * without create-graph (a batched pass recorded for a second derivative).
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef LIBJACOBIAN_BATCHCHECK_H
#define LIBJACOBIAN_BATCHCHECK_H

#include "testutil.h"

#define TU_BATCH 3

/* Deterministic seed values in [-1, 1). */
static inline double tu_seed_value(int64_t i)
{
    return sin(0.731 * (double)i + 0.3) * 0.9;
}

static inline void tu_assert_batched_matches_rows_at(jac_ctx *ctx, jac_fn fn,
                                                     void *user, size_t ninputs,
                                                     jac_tensor *const *inputs,
                                                     size_t noutputs,
                                                     unsigned extra_flags,
                                                     const char *file, int line)
{
    jac_scope mark = jac_scope_begin(ctx);
    jac_tensor *outs[8] = {0}, *seeds[8] = {0}, *row_seeds[8] = {0};
    jac_tensor *batched[8] = {0}, *single[8] = {0};
    if (noutputs > 8 || ninputs > 8) {
        print_error("batchcheck: at most 8 inputs and outputs\n");
        tu_fail_at(file, line);
    }
    tu_assert_ok_at(ctx, fn(ctx, inputs, outs, user), file, line);
    for (size_t k = 0; k < noutputs; k++) {
        int64_t shape[JAC_MAX_DIMS + 1];
        int nd = jac_tensor_ndim(outs[k]);
        shape[0] = TU_BATCH;
        memcpy(shape + 1, jac_tensor_shape(outs[k]),
               (size_t)nd * sizeof(int64_t));
        seeds[k] = jac_zeros(ctx, nd + 1, shape);
        if (seeds[k] == NULL)
            tu_assert_no_error_at(ctx, file, line);
        double *d = (double *)jac_tensor_data(seeds[k]);
        for (int64_t e = 0; e < jac_tensor_numel(seeds[k]); e++)
            d[e] = tu_seed_value(e + 17 * (int64_t)k);
    }
    unsigned flags = JAC_RETAIN_GRAPH | JAC_ALLOW_UNUSED | extra_flags;
    tu_assert_ok_at(ctx,
                    jac_grad(ctx, noutputs, outs, seeds, ninputs, inputs,
                             flags | JAC_BATCHED_SEEDS, batched),
                    file, line);
    for (int64_t b = 0; b < TU_BATCH; b++) {
        for (size_t k = 0; k < noutputs; k++) {
            row_seeds[k] = jac_slice(ctx, seeds[k], 0, b, b + 1, 1);
            row_seeds[k] =
                jac_reshape(ctx, row_seeds[k], jac_tensor_ndim(outs[k]),
                            jac_tensor_shape(outs[k]));
            if (row_seeds[k] == NULL)
                tu_assert_no_error_at(ctx, file, line);
        }
        tu_assert_ok_at(ctx,
                        jac_grad(ctx, noutputs, outs, row_seeds, ninputs,
                                 inputs, flags, single),
                        file, line);
        for (size_t i = 0; i < ninputs; i++) {
            int64_t n = jac_tensor_numel(single[i]);
            if (jac_tensor_ndim(batched[i]) != jac_tensor_ndim(inputs[i]) + 1 ||
                jac_tensor_numel(batched[i]) != TU_BATCH * n) {
                print_error("batchcheck: input %zu: batched gradient has the "
                            "wrong shape\n",
                            i);
                tu_fail_at(file, line);
            }
            const double *got = jac_tensor_data(batched[i]) + b * n;
            const double *want = jac_tensor_data(single[i]);
            for (int64_t e = 0; e < n; e++) {
                double tol = 1e-12 + 1e-10 * fabs(want[e]);
                if (!(fabs(got[e] - want[e]) <= tol) &&
                    !(isnan(got[e]) && isnan(want[e]))) {
                    print_error("batchcheck: input %zu, seed %lld, element "
                                "%lld: batched %.17g, row loop %.17g\n",
                                i, (long long)b, (long long)e, got[e], want[e]);
                    tu_fail_at(file, line);
                }
            }
        }
    }
    tu_assert_ok_at(ctx, jac_scope_end(ctx, mark, NULL, 0), file, line);
}

/* The fused kernels of an unrecorded pass against the op's rule: the same
 * gradient with and without JAC_CREATE_GRAPH (which always runs the rules),
 * for plain and batched seeds. */
static inline void tu_assert_fused_matches_rules_at(jac_ctx *ctx, jac_fn fn,
                                                    void *user, size_t ninputs,
                                                    jac_tensor *const *inputs,
                                                    size_t noutputs,
                                                    const char *file, int line)
{
    jac_scope mark = jac_scope_begin(ctx);
    jac_tensor *outs[8] = {0}, *seeds[8] = {0};
    jac_tensor *fused[8] = {0}, *rules[8] = {0};
    tu_assert_ok_at(ctx, fn(ctx, inputs, outs, user), file, line);
    for (int batched = 0; batched < 2; batched++) {
        for (size_t k = 0; k < noutputs; k++) {
            int64_t shape[JAC_MAX_DIMS + 1];
            int nd = jac_tensor_ndim(outs[k]);
            shape[0] = 2;
            memcpy(shape + batched, jac_tensor_shape(outs[k]),
                   (size_t)nd * sizeof(int64_t));
            seeds[k] = jac_zeros(ctx, nd + batched, shape);
            if (seeds[k] == NULL)
                tu_assert_no_error_at(ctx, file, line);
            double *d = (double *)jac_tensor_data(seeds[k]);
            for (int64_t e = 0; e < jac_tensor_numel(seeds[k]); e++)
                d[e] = tu_seed_value(3 * e + 5 * (int64_t)k + 1);
        }
        unsigned flags = JAC_RETAIN_GRAPH | JAC_ALLOW_UNUSED |
                         (batched ? JAC_BATCHED_SEEDS : 0u);
        tu_assert_ok_at(
            ctx,
            jac_grad(ctx, noutputs, outs, seeds, ninputs, inputs, flags, fused),
            file, line);
        tu_assert_ok_at(ctx,
                        jac_grad(ctx, noutputs, outs, seeds, ninputs, inputs,
                                 flags | JAC_CREATE_GRAPH, rules),
                        file, line);
        for (size_t i = 0; i < ninputs; i++) {
            int64_t n = jac_tensor_numel(rules[i]);
            if (jac_tensor_numel(fused[i]) != n ||
                jac_tensor_ndim(fused[i]) != jac_tensor_ndim(rules[i])) {
                print_error("fused: input %zu has the wrong shape\n", i);
                tu_fail_at(file, line);
            }
            const double *f = jac_tensor_data(fused[i]);
            const double *r = jac_tensor_data(rules[i]);
            for (int64_t e = 0; e < n; e++) {
                double tol = 1e-13 + 1e-12 * fabs(r[e]);
                if (!(fabs(f[e] - r[e]) <= tol) &&
                    !(isnan(f[e]) && isnan(r[e]))) {
                    print_error("fused: input %zu element %lld: unrecorded "
                                "pass %.17g, recorded rules %.17g\n",
                                i, (long long)e, f[e], r[e]);
                    tu_fail_at(file, line);
                }
            }
        }
    }
    tu_assert_ok_at(ctx, jac_scope_end(ctx, mark, NULL, 0), file, line);
}

/* Every Jacobian driver mode against the row-by-row reference: blocks of
 * rows, forward mode (columns), two threads (bitwise equal to one), and
 * create-graph. */
static inline void tu_assert_modes_agree_at(jac_ctx *ctx, jac_fn fn, void *user,
                                            size_t ninputs,
                                            jac_tensor *const *inputs,
                                            size_t noutputs, const char *file,
                                            int line)
{
    enum { NMODES = 6 };
    static const struct {
        jac_mode mode;
        int64_t chunk;
        int threads;
        unsigned flags;
    } modes[NMODES] = {
        {JAC_MODE_REVERSE, 1, 1, 0}, {JAC_MODE_REVERSE, 2, 1, 0},
        {JAC_MODE_REVERSE, 0, 2, 0}, {JAC_MODE_FORWARD, 1, 1, 0},
        {JAC_MODE_FORWARD, 0, 2, 0}, {JAC_MODE_REVERSE, 2, 1, JAC_CREATE_GRAPH},
    };
    jac_scope mark = jac_scope_begin(ctx);
    jac_tensor *ref[64] = {0}, *got[64] = {0}, *threaded_ref[64] = {0};
    size_t nblocks = ninputs * noutputs;
    if (nblocks > 64) {
        print_error("modes: too many blocks\n");
        tu_fail_at(file, line);
    }
    int threads = jac_ctx_threads(ctx);
    for (int m = 0; m < NMODES; m++) {
        jac_jacobian_opts o = {modes[m].flags, modes[m].chunk, modes[m].mode,
                               NULL, NULL};
        tu_assert_ok_at(ctx, jac_ctx_set_threads(ctx, modes[m].threads), file,
                        line);
        jac_tensor **dst = m == 0 ? ref : got;
        tu_assert_ok_at(
            ctx,
            jac_jacobian_fn(ctx, fn, user, ninputs, inputs, noutputs, &o, dst),
            file, line);
        if (m == 2 || m == 4) {
            /* The same mode on one thread must give the same bits. */
            tu_assert_ok_at(ctx, jac_ctx_set_threads(ctx, 1), file, line);
            tu_assert_ok_at(ctx,
                            jac_jacobian_fn(ctx, fn, user, ninputs, inputs,
                                            noutputs, &o, threaded_ref),
                            file, line);
            for (size_t b = 0; b < nblocks; b++) {
                size_t bytes =
                    (size_t)jac_tensor_numel(got[b]) * sizeof(double);
                if (memcmp(jac_tensor_data(got[b]),
                           jac_tensor_data(threaded_ref[b]), bytes) != 0) {
                    print_error("modes: block %zu differs between one and "
                                "two threads (mode %d)\n",
                                b, m);
                    tu_fail_at(file, line);
                }
            }
        }
        if (m == 0)
            continue;
        for (size_t b = 0; b < nblocks; b++) {
            int64_t n = jac_tensor_numel(ref[b]);
            if (jac_tensor_numel(got[b]) != n ||
                jac_tensor_ndim(got[b]) != jac_tensor_ndim(ref[b])) {
                print_error("modes: block %zu has the wrong shape (mode %d)\n",
                            b, m);
                tu_fail_at(file, line);
            }
            const double *g = jac_tensor_data(got[b]),
                         *r = jac_tensor_data(ref[b]);
            for (int64_t e = 0; e < n; e++) {
                double tol = 1e-12 + 1e-9 * fabs(r[e]);
                if (!(fabs(g[e] - r[e]) <= tol) &&
                    !(isnan(g[e]) && isnan(r[e]))) {
                    print_error("modes: block %zu element %lld: mode %d gives "
                                "%.17g, the row loop %.17g\n",
                                b, (long long)e, m, g[e], r[e]);
                    tu_fail_at(file, line);
                }
            }
        }
    }
    tu_assert_ok_at(ctx, jac_ctx_set_threads(ctx, threads), file, line);
    tu_assert_ok_at(ctx, jac_scope_end(ctx, mark, NULL, 0), file, line);
}

/* Checks batched seeds against the row loop, plain and under create-graph,
 * every Jacobian driver mode against the row-by-row reference, and the
 * fused kernels against the rules. */
#define tu_assert_batched_matches_rows(ctx, fn, user, ninputs, inputs,         \
                                       noutputs)                               \
    do {                                                                       \
        tu_assert_batched_matches_rows_at((ctx), (fn), (user), (ninputs),      \
                                          (inputs), (noutputs), 0u, __FILE__,  \
                                          __LINE__);                           \
        tu_assert_batched_matches_rows_at(                                     \
            (ctx), (fn), (user), (ninputs), (inputs), (noutputs),              \
            JAC_CREATE_GRAPH, __FILE__, __LINE__);                             \
        tu_assert_modes_agree_at((ctx), (fn), (user), (ninputs), (inputs),     \
                                 (noutputs), __FILE__, __LINE__);              \
        tu_assert_fused_matches_rules_at((ctx), (fn), (user), (ninputs),       \
                                         (inputs), (noutputs), __FILE__,       \
                                         __LINE__);                            \
    } while (0)

#endif /* LIBJACOBIAN_BATCHCHECK_H */
