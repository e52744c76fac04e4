/*
 * The sparse layer: sparsity patterns of recorded functions, colourings of
 * them, and compressed Jacobians and Hessians evaluated through the
 * program layer's block engine.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JAC_SPARSE_H
#define JAC_SPARSE_H

#include "program/program.h"

/* ------------------------------------------------------------------------ */
/* Patterns                                                                 */
/* ------------------------------------------------------------------------ */

/* A sparsity pattern in compressed rows: the columns of row r are
 * idx[ptr[r] .. ptr[r + 1]), ascending, without repeats. */
typedef struct jac__csr {
    int64_t nrows, ncols;
    int64_t *ptr; /* nrows + 1 */
    int64_t *idx; /* ptr[nrows] */
} jac__csr;

void jac__csr_free(const jac_allocator *al, jac__csr *p);
/* The position of column j in row i of pat (by bisection), or -1
 * (color.c). */
int64_t jac__csr_find(const jac__csr *pat, int64_t i, int64_t j);

/* The Jacobian pattern of prog: a row per output element (the outputs one
 * after another), a column per input element (likewise), valid at every
 * point. Through prog's allocator; errors through jac__program_fail. */
jac_status jac__pattern_jacobian(jac_program *prog, jac__csr *J);
/* The pattern of the Hessian of sum_k <w_k, y_k> in the inputs, for any
 * weights and any point: symmetric, both triangles. */
jac_status jac__pattern_hessian(jac_program *prog, jac__csr *H);

/* ------------------------------------------------------------------------ */
/* Colourings (color.c)                                                     */
/*                                                                          */
/* Every colouring writes colour[v] in 0 .. ncolors - 1 for each vertex v   */
/* and returns ncolors, or -1 when out of memory (through al). order is a   */
/* jac_color_order of jacobian.h: one vertex order, or JAC_ORDER_BEST to    */
/* try each and keep the fewest colours (stopping early at a lower bound).  */
/* A vertex with no entries gets colour 0.                                  */
/* ------------------------------------------------------------------------ */

/* Columns of pat, partial distance-2 on the bipartite graph: two columns
 * with an entry in a common row differ. B = J S, S[c][colour[c]] = 1,
 * gives J[r][c] = B[colour[c] * nrows + r] (colour-major storage). */
int64_t jac__color_columns(const jac_allocator *al, const jac__csr *pat,
                           int order, int64_t *colour);
/* Rows of pat: two rows with an entry in a common column differ.
 * B = S^T J gives J[r][c] = B[colour[r] * ncols + c]. */
int64_t jac__color_rows(const jac_allocator *al, const jac__csr *pat, int order,
                        int64_t *colour);
/* A star colouring of the symmetric pattern pat (square, both triangles;
 * the diagonal may or may not be present): adjacent vertices differ and
 * every path on four vertices uses at least three colours, so that each
 * entry of H is read directly from B = H S. */
int64_t jac__color_star(const jac_allocator *al, const jac__csr *pat, int order,
                        int64_t *colour);
/* An acyclic colouring of the symmetric pattern pat: adjacent vertices
 * differ and every cycle uses at least three colours; entries of H come
 * from B = H S by substitution. */
int64_t jac__color_acyclic(const jac_allocator *al, const jac__csr *pat,
                           int order, int64_t *colour);

/* Direct recovery of a symmetric pattern under a star colouring: src[k],
 * for entry k of pat in its order, is the position in B = H S
 * (colour-major, B[c * n + i]) that holds it. Returns false when a colour
 * does not allow direct recovery of some entry (not a star colouring). */
bool jac__star_sources(const jac__csr *pat, const int64_t *colour,
                       int64_t ncolors, int64_t *src);

/* Recovery by substitution under an acyclic colouring: entries of pat are
 * computed in the order order[0 .. nnz), entry k as B[src[k]] minus the
 * sum of the entries sub[ptr[k] .. ptr[k + 1]) (already computed). */
typedef struct jac__subst {
    int64_t nnz;
    int64_t *order, *src, *ptr, *sub;
} jac__subst;

/* Builds s for pat and an acyclic colouring (through al); returns
 * JAC_ERR_NO_MEMORY, JAC_ERR_VALUE when the colouring is not acyclic, or
 * JAC_OK. jac__subst_free releases it (a zeroed s too). */
jac_status jac__subst_build(const jac_allocator *al, const jac__csr *pat,
                            const int64_t *colour, int64_t ncolors,
                            jac__subst *s);
void jac__subst_free(const jac_allocator *al, jac__subst *s);
/* values[k] for every entry k of the pattern s was built for, from B. */
void jac__subst_apply(const jac__subst *s, const double *B, double *values);

/* ------------------------------------------------------------------------ */
/* Plans (plan.c)                                                           */
/* ------------------------------------------------------------------------ */

struct jac_sparse {
    jac_program *prog;
    bool tape;          /* made from a dynamic recording: owns prog */
    jac_program *swept; /* prog, or a derived program of it */
    bool hessian;
    jac_sparse_opts opts;
    jac_sparse_method method;
    int64_t nrows, ncols;
    jac__csr pat; /* the full pattern */
    int64_t ncolors;
    int64_t *colour;
    int64_t *cptr, *cmem; /* the seed rows of each colour */
    int64_t bstride;      /* one compressed row of B */
    double *B;
    /* The entries in value order, and where each comes from: a place of
     * B, or (substitution) an entry of pat. */
    int64_t nnz;
    int64_t *row, *col;
    int64_t *src;
    int64_t *at; /* substitution only */
    jac__subst subst;
    double *full;
    _Atomic int busy;
};

/* A plan of prog for a dense driver that would otherwise run passes
 * sweeps: *plan is NULL (and JAC_OK returned) when the pattern is too
 * dense for its colours to take fewer. Errors through jac__program_fail. */
jac_status jac__sparse_plan_dense(jac_program *prog,
                                  const jac_sparse_opts *opts, int64_t passes,
                                  jac_sparse **plan);

/* Whether q is p recorded again: the same instructions in the same order,
 * on values of the same shapes at the same places, with the same
 * parameters and the same indices (the constants a sparsity rule reads). */
bool jac__program_same(const jac_program *p, const jac_program *q);
/* plan, made for a program that q is recorded again (jac__program_same),
 * serves q from now on, with the workspaces of the program it served,
 * which is freed. On error (no derived program of q) nothing changed. */
jac_status jac__sparse_rebind(jac_sparse *plan, jac_program *q);

/* As jac_sparse_jacobian, the compressed rows in B (ncolors * bstride
 * doubles of the caller's) rather than the plan's: without holding the
 * plan, so that calls at once each with their own B give the same bits. */
jac_status jac__sparse_jacobian_into(jac_sparse *plan,
                                     const double *const *args, double *B,
                                     double *values, double *const *outputs);

#endif /* JAC_SPARSE_H */
