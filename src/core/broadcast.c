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
 * axes). */
void jac__broadcast_strides(const jac_tensor *t, int n, const int64_t *shape,
                            int64_t *strides)
{
    int64_t s = 1;
    for (int i = n - 1; i >= 0; i--) {
        int k = i - (n - t->ndim);
        if (k < 0 || t->shape[k] == 1 || shape[i] == 1) {
            strides[i] = 0;
        } else {
            strides[i] = s;
        }
        if (k >= 0)
            s *= t->shape[k];
    }
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
    int64_t sa[JAC_MAX_DIMS], idx[JAC_MAX_DIMS] = {0};
    jac__broadcast_strides(a, n, y->shape, sa);
    int64_t inner = y->shape[n - 1];
    int64_t outer = y->numel / inner;
    int64_t oa = 0, s = sa[n - 1];
    double *out = y->data;
    for (int64_t o = 0; o < outer; o++) {
        const double *src = a->data + oa;
        if (s == 1)
            memcpy(out, src, (size_t)inner * sizeof(double));
        else
            for (int64_t i = 0; i < inner; i++)
                out[i] = src[0];
        out += inner;
        for (int d = n - 2; d >= 0; d--) {
            oa += sa[d];
            if (++idx[d] < y->shape[d])
                break;
            oa -= sa[d] * y->shape[d];
            idx[d] = 0;
        }
    }
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
