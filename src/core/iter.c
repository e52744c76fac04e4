/*
 * N-d iteration: the one loop that walks the rows of a shape for up to
 * JAC__ITER_MAX_OPS operands, each read through its own strides, and the
 * strided copy built on it (permute, transpose, diagonal, slice, pad,
 * expand, Fortran-order reading).
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/core.h"

void jac__contiguous_strides(int ndim, const int64_t *shape, int64_t unit,
                             int64_t *strides)
{
    int64_t s = unit;
    for (int d = ndim - 1; d >= 0; d--) {
        strides[d] = s;
        s *= shape[d];
    }
}

void jac__stretch_strides(int ndim, const int64_t *shape, int64_t unit, int n,
                          int64_t *strides)
{
    int64_t s = unit;
    for (int i = n - 1; i >= 0; i--) {
        int k = i - (n - ndim);
        strides[i] = (k < 0 || shape[k] == 1) ? 0 : s;
        if (k >= 0)
            s *= shape[k];
    }
}

int64_t jac__iter_init(jac__iter *it, int ndim, const int64_t *shape, int nops,
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
    return it->rows;
}

void jac__strided_copy(int ndim, const int64_t *shape, const double *src,
                       const int64_t *ss, double *dst, const int64_t *ds)
{
    jac__iter it;
    const int64_t *strides[2] = {ss, ds};
    int64_t rows = jac__iter_init(&it, ndim, shape, 2, strides);
    int64_t n = it.inner, si = it.step[0], di = it.step[1];
    for (int64_t r = 0; r < rows; r++, jac__iter_next(&it)) {
        const double *s = src + it.off[0];
        double *d = dst + it.off[1];
        if (si == 1 && di == 1) {
            memcpy(d, s, (size_t)n * sizeof(double));
        } else if (di == 1 && si == 0) {
            for (int64_t t = 0; t < n; t++)
                d[t] = s[0];
        } else if (di == 1) {
            for (int64_t t = 0; t < n; t++)
                d[t] = s[t * si];
        } else {
            for (int64_t t = 0; t < n; t++)
                d[t * di] = s[t * si];
        }
    }
}
