/*
 * Broadcasting: the shape two shapes broadcast to, the strides that read a
 * tensor as if stretched to a larger shape, and the copy that stretches it.
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/core.h"

int jac__broadcast_shape(int na, const int64_t *sa, int nb, const int64_t *sb,
                         int64_t *out)
{
    int n = na > nb ? na : nb;
    for (int i = 0; i < n; i++) {
        int64_t da = i < n - na ? 1 : sa[i - (n - na)];
        int64_t db = i < n - nb ? 1 : sb[i - (n - nb)];
        if (da != db && da != 1 && db != 1)
            return -1;
        out[i] = da == 1 ? db : da;
    }
    return n;
}

/* Element strides of t when broadcast to a shape of rank n (0 on stretched
 * axes). t broadcasts to shape, so t's extent is 1 wherever shape's is: the
 * rank of shape is all that is read. */
void jac__broadcast_strides(const jac_tensor *t, int n, const int64_t *shape,
                            int64_t *strides)
{
    (void)shape;
    jac__stretch_strides(t->ndim, t->shape, 1, n, strides);
}

/* Copies a into y, stretching a's broadcast axes (the expand kernel). */
void jac__broadcast_copy(const jac_tensor *a, jac_tensor *y)
{
    if (y->numel == 0)
        return;
    int n = y->ndim;
    if (n == 0 || a->numel == y->numel) {
        memcpy(y->data, a->data, (size_t)y->numel * sizeof(double));
        return;
    }
    int64_t sa[JAC_MAX_DIMS], sy[JAC_MAX_DIMS];
    jac__broadcast_strides(a, n, y->shape, sa);
    jac__contiguous_strides(n, y->shape, 1, sy);
    jac__strided_copy(n, y->shape, a->data, sa, y->data, sy);
}

/* Whether t, broadcast to out, repeats along leading axes only: its shape,
 * without leading ones, equals out's trailing extents. Element i of out
 * then reads t at i % t->numel. */
bool jac__is_suffix(const jac_tensor *t, const jac_tensor *out)
{
    if (t->numel == out->numel)
        return true; /* broadcast without stretching: the same layout */
    int lead = 0;
    while (lead < t->ndim && t->shape[lead] == 1)
        lead++;
    int rest = t->ndim - lead;
    if (rest > out->ndim)
        return false;
    return memcmp(t->shape + lead, out->shape + out->ndim - rest,
                  (size_t)rest * sizeof(int64_t)) == 0;
}
