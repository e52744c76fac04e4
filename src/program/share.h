/*
 * Parts of a Jacobian: the few internal entries that libjacobian exports
 * (with jac__ names, outside jacobian.h) for libjacobian_mpi, which shares
 * the seeds of one Jacobian among processes.
 *
 * The seeds of a Jacobian (its rows swept in reverse, its columns swept
 * forward, or the colours of a sparse plan) are swept in blocks of a fixed
 * number of seeds, counted from seed 0. A part is a run of whole blocks;
 * each block is swept by the same arithmetic whichever part holds it, so
 * the parts put together are, bit for bit, what one part of every seed
 * gives. With the block the engine itself would take on one thread, that
 * is what jac_program_jacobian and jac_sparse_jacobian give on one thread.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JAC_SHARE_H
#define JAC_SHARE_H

#include "jacobian.h"

#include <stdbool.h>
#include <stdint.h>

/* The layout of prog's dense Jacobian: forward (1) sweeps its columns,
 * reverse (0) its rows, and -1 picks as jac_program_jacobian does
 * (*forward says what was picked). *seeds is the count of seeds, *width
 * the length of the row each seed gives (a row of J, or a row of J^T),
 * *block the seeds of a block when one thread sweeps them all. A forward
 * layout makes the derived VJP program (it may fail: out of memory, more
 * than 64 arguments); errors through jac_program_errmsg. */
JAC_API jac_status jac__dense_layout(jac_program *prog, int forward,
                                     bool *forward_used, int64_t *seeds,
                                     int64_t *width, int64_t *block);

/* Seeds s0 .. s1 - 1 of prog's dense Jacobian at args, in blocks of block
 * seeds counted from 0 (s0 a multiple of block), into rows s0 .. s1 - 1
 * of dest, the seeds x width matrix of jac__dense_layout: rows of J
 * (reverse), or rows of J^T (forward). A program whose Jacobian is
 * diagonal fills all of dest, as jac_program_jacobian does. */
JAC_API jac_status jac__dense_part(jac_program *prog, const double *const *args,
                                   bool forward, int64_t block, int64_t s0,
                                   int64_t s1, double *dest);

/* The layout of a sparse plan: its colours (seeds), the doubles of one
 * colour's compressed row (stride), and the engine's one-thread block. */
JAC_API jac_status jac__sparse_layout(const jac_sparse *plan, int64_t *ncolors,
                                      int64_t *stride, int64_t *block);

/* Colours c0 .. c1 - 1 of plan at args (and weights, for a Hessian plan;
 * NULL as for jac_sparse_hessian), in blocks of block colours counted from
 * 0 (c0 a multiple of block): colour c's compressed row into
 * rows + (c - c0) * stride. */
JAC_API jac_status jac__sparse_part(jac_sparse *plan, const double *const *args,
                                    const double *const *weights, int64_t block,
                                    int64_t c0, int64_t c1, double *rows);

/* The plan's values (jac_sparse_nnz of them, in its order) from B, every
 * colour's compressed row. */
JAC_API jac_status jac__sparse_recover(jac_sparse *plan, const double *B,
                                       double *values);

/* Where each value is read in B (jac_sparse_nnz entries), or NULL when
 * the plan recovers its values by substitution (an acyclic colouring). */
JAC_API const int64_t *jac__sparse_sources(const jac_sparse *plan);

#endif /* JAC_SHARE_H */
