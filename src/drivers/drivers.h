/*
 * The drivers layer: Jacobian blocks, the functional API and the
 * derivative checks, built on backward plans.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JAC_DRIVERS_H
#define JAC_DRIVERS_H

#include "autodiff/autodiff.h"

/* The sparse path of the dense drivers, defined by the sparse layer above
 * (sparse/dense.c), which knows patterns: with the automatic chunk and no
 * create-graph, when the Jacobian of ys in xs has few enough colours, it
 * computes J (blocks as jac_jacobian_ex returns them) and sets *done;
 * with symmetric (J square, the Jacobian of a gradient) it averages J and
 * its transpose, as a Hessian's result is. Otherwise, or when anything
 * stops it, it leaves *done false and the context as it was, and the
 * block engine runs. The failures it reports: out of memory for a few
 * pointers, and a cancellation by the progress callback. */
jac_status jac__jacobian_sparse(jac_ctx *ctx, const char *op, size_t ny,
                                jac_tensor *const *ys, size_t nx,
                                jac_tensor *const *xs,
                                const jac_jacobian_opts *o, bool symmetric,
                                jac_tensor **J, bool *done);

#endif /* JAC_DRIVERS_H */
