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

/* One row: d[t * di] = s[t * si], t < n. The rows are often short (slices
 * with one element per block, rows of cotangents), where these loops, which
 * the compiler vectorises, copy quicker than a call to memcpy would. */
static inline void copy_row(int64_t n, const double *s, int64_t si, double *d,
                            int64_t di)
{
    if (di == 1 && si == 1) {
        for (int64_t t = 0; t < n; t++)
            d[t] = s[t];
    } else if (di == 1 && si == 0) {
        double v = s[0];
        for (int64_t t = 0; t < n; t++)
            d[t] = v;
    } else if (di == 1) {
        for (int64_t t = 0; t < n; t++)
            d[t] = s[t * si];
    } else {
        for (int64_t t = 0; t < n; t++)
            d[t * di] = s[t * si];
    }
}

JAC__VECTORIZED void jac__strided_copy(int ndim, const int64_t *shape,
                                       const double *src, const int64_t *ss,
                                       double *dst, const int64_t *ds)
{
    /* Leading axes of extent 1 move nothing; a single row needs no walk. */
    while (ndim > 1 && shape[0] == 1) {
        shape++;
        ss++;
        ds++;
        ndim--;
    }
    if (ndim <= 1) {
        if (ndim == 0)
            dst[0] = src[0];
        else
            copy_row(shape[0], src, ss[0], dst, ds[0]);
        return;
    }
    jac__iter it;
    const int64_t *strides[2] = {ss, ds};
    int64_t rows = jac__iter_init(&it, ndim, shape, 2, strides);
    for (int64_t r = 0; r < rows; r++, jac__iter_next(&it))
        copy_row(it.inner, src + it.off[0], it.step[0], dst + it.off[1],
                 it.step[1]);
}
