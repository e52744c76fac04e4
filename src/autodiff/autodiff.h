/*
 * The autodiff layer: backward plans and sweeps over the tape.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JAC_AUTODIFF_H
#define JAC_AUTODIFF_H

#include "ops/ops.h"

/* ------------------------------------------------------------------------ */
/* Backward plans (backward.c)                                             */
/*                                                                          */
/* A plan lists, newest first, the tape nodes that lie between the given    */
/* inputs and outputs, with a cotangent slot for every tensor involved. It  */
/* is built once and then run for any number of seeds (one Jacobian row or  */
/* block per run); running only reads it.                                   */
/* ------------------------------------------------------------------------ */

typedef struct jac__plan jac__plan;

jac_status jac__plan_build(jac_ctx *ctx, const char *op, size_t noutputs,
                           jac_tensor *const *outputs, size_t ninputs,
                           jac_tensor *const *inputs, jac__plan **result);
/* As jac__plan_build; without prune, the steps that reach no output stay
 * in the plan (runs skip them), which saves a sweep for a plan run once. */
jac_status jac__plan_build_ex(jac_ctx *ctx, const char *op, size_t noutputs,
                              jac_tensor *const *outputs, size_t ninputs,
                              jac_tensor *const *inputs, bool prune,
                              jac__plan **result);
/* Calls a user function with recording on or off and checks that it set
 * every output; a failure becomes JAC_ERR_CALLBACK naming op. */
jac_status jac__call_fn(jac_ctx *ctx, const char *op, jac_fn fn, void *user,
                        jac_tensor *const *inputs, size_t noutputs,
                        jac_tensor **outputs, bool record);
/* Rough bytes of cotangents one seed needs when the plan runs. */
size_t jac__plan_bytes_per_seed(const jac__plan *plan);
void jac__plan_free(jac_ctx *ctx, jac__plan *plan);
/* Whether output k depends on any input. */
bool jac__plan_output_used(const jac__plan *plan, size_t k);
/* Whether any output depends on input i (a pruned plan's steps tell). */
bool jac__plan_input_used(const jac__plan *plan, size_t i);
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

/* Reports, as JAC_ERR_UNUSED_INPUT of op, why input i (x) reaches none of
 * the outputs (k == SIZE_MAX) or not output k: marked with
 * jac_set_requires_grad after the output was computed; an output with no
 * history (recording off); or simply unused, which JAC_ALLOW_UNUSED
 * allows. */
jac_status jac__unreached(jac_ctx *ctx, const char *op, size_t noutputs,
                          jac_tensor *const *outputs, size_t k, size_t i,
                          const jac_tensor *x);

#endif /* JAC_AUTODIFF_H */
