/*
 * Shape ops: reshape (shares storage), slice and its adjoint slice_scatter,
 * concat.
 *
 * SPDX-License-Identifier: MIT
 */
#include "internal.h"

/* ------------------------------------------------------------------------ */
/* reshape                                                                  */
/* ------------------------------------------------------------------------ */

jac_tensor *jac_reshape(jac_ctx *ctx, jac_tensor *a, int ndim,
                        const int64_t *shape)
{
    if (ctx == NULL || !jac__check_arg(ctx, "reshape", a))
        return NULL;
    char s1[JAC__SHAPE_STR_MAX], s2[JAC__SHAPE_STR_MAX];
    if (ndim < 0 || ndim > JAC_MAX_DIMS) {
        jac__error(ctx, JAC_ERR_RANK, "reshape: rank %d is outside 0..%d",
                   ndim, JAC_MAX_DIMS);
        return NULL;
    }
    if (ndim > 0 && shape == NULL) {
        jac__error(ctx, JAC_ERR_NULL_ARG, "reshape: shape is NULL");
        return NULL;
    }
    int64_t s[JAC_MAX_DIMS];
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < ndim; i++) {
        s[i] = shape[i];
        if (shape[i] == -1 && infer < 0) {
            infer = i;
            continue;
        }
        if (shape[i] < 0) {
            jac__error(ctx, JAC_ERR_VALUE,
                       "reshape: invalid extent %lld in shape %s",
                       (long long)shape[i],
                       jac__shape_str(s1, sizeof s1, ndim, shape));
            return NULL;
        }
        if (shape[i] != 0 && known > INT64_MAX / shape[i]) {
            jac__error(ctx, JAC_ERR_OVERFLOW,
                       "reshape: element count of shape %s overflows",
                       jac__shape_str(s1, sizeof s1, ndim, shape));
            return NULL;
        }
        known *= shape[i];
    }
    if (infer >= 0 && known != 0 && a->numel % known == 0)
        s[infer] = a->numel / known;
    if ((infer >= 0 && (known == 0 || a->numel % known != 0)) ||
        (infer < 0 && known != a->numel)) {
        jac__error(ctx, JAC_ERR_SHAPE,
                   "reshape: cannot reshape %s (%lld elements) to %s",
                   jac__shape_str(s1, sizeof s1, a->ndim, a->shape),
                   (long long)a->numel, jac__shape_str(s2, sizeof s2, ndim, shape));
        return NULL;
    }
    jac_tensor *y = jac__tensor_view(ctx, a, ndim, s);
    if (y == NULL)
        return NULL;
    bool failed;
    jac__record(ctx, JAC__OP_RESHAPE, y, 1, &a, &failed);
    return failed ? NULL : y;
}

jac_status jac__vjp_reshape(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                            const bool *need, jac_tensor **gin)
{
    (void)need;
    const jac_tensor *a = node->in[0];
    int64_t s[JAC_MAX_DIMS];
    int n = jac__batched_shape(g, jac__batch_ndim(g, node->out), a->ndim,
                               a->shape, s);
    if (n < 0)
        return jac__error(ctx, JAC_ERR_RANK,
                          "reshape: batched gradient exceeds rank %d",
                          JAC_MAX_DIMS);
    gin[0] = jac_reshape(ctx, g, n, s);
    return gin[0] ? JAC_OK : ctx->status;
}

/* ------------------------------------------------------------------------ */
/* slice and slice_scatter                                                  */
/* ------------------------------------------------------------------------ */

/* Copies elements start, start + step, ... (count of them) along axis between
 * a dense tensor src and the strided positions of dst, or back (scatter). */
static void slice_copy(const int64_t *big_shape, int ndim, int axis,
                       int64_t start, int64_t step, int64_t count,
                       double *big, double *small, bool to_small)
{
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < axis; i++)
        outer *= big_shape[i];
    for (int i = axis + 1; i < ndim; i++)
        inner *= big_shape[i];
    int64_t n = big_shape[axis];
    size_t bytes = (size_t)inner * sizeof(double);
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t i = 0; i < count; i++) {
            double *b = big + (o * n + start + i * step) * inner;
            double *s = small + (o * count + i) * inner;
            if (to_small)
                memcpy(s, b, bytes);
            else
                memcpy(b, s, bytes);
        }
    }
}

static int64_t slice_count(int64_t start, int64_t stop, int64_t step)
{
    return start < stop ? (stop - start + step - 1) / step : 0;
}

jac_tensor *jac_slice(jac_ctx *ctx, jac_tensor *a, int axis, int64_t start,
                      int64_t stop, int64_t step)
{
    if (ctx == NULL || !jac__check_arg(ctx, "slice", a))
        return NULL;
    char s[JAC__SHAPE_STR_MAX];
    int ax = jac__axis(axis, a->ndim);
    if (ax < 0) {
        jac__error(ctx, JAC_ERR_AXIS, "slice: axis %d is out of range for %s",
                   axis, jac__shape_str(s, sizeof s, a->ndim, a->shape));
        return NULL;
    }
    if (step <= 0) {
        jac__error(ctx, JAC_ERR_VALUE, "slice: step %lld must be positive",
                   (long long)step);
        return NULL;
    }
    int64_t n = a->shape[ax];
    if (start < 0)
        start = start < -n ? 0 : start + n;
    if (stop < 0)
        stop = stop < -n ? 0 : stop + n;
    start = start > n ? n : start;
    stop = stop > n ? n : stop;
    int64_t count = slice_count(start, stop, step);
    int64_t shape[JAC_MAX_DIMS];
    memcpy(shape, a->shape, (size_t)a->ndim * sizeof(int64_t));
    shape[ax] = count;
    jac_tensor *y = jac__tensor_alloc(ctx, "slice", a->ndim, shape);
    if (y == NULL)
        return NULL;
    slice_copy(a->shape, a->ndim, ax, start, step, count, a->data, y->data,
               true);
    bool failed;
    jac__node *node = jac__record(ctx, JAC__OP_SLICE, y, 1, &a, &failed);
    if (failed)
        return NULL;
    if (node) {
        node->p.slice.axis = ax;
        node->p.slice.start = start;
        node->p.slice.stop = stop;
        node->p.slice.step = step;
    }
    return y;
}

jac_tensor *jac__slice_scatter(jac_ctx *ctx, jac_tensor *g, int ndim,
                               const int64_t *shape, int axis, int64_t start,
                               int64_t stop, int64_t step)
{
    int64_t count = slice_count(start, stop, step);
    bool ok = g->ndim == ndim && axis >= 0 && axis < ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = g->shape[i] == (i == axis ? count : shape[i]);
    if (!ok) {
        char s1[JAC__SHAPE_STR_MAX], s2[JAC__SHAPE_STR_MAX];
        jac__error(ctx, JAC_ERR_SHAPE,
                   "slice_scatter: %s does not fit a slice of %s",
                   jac__shape_str(s1, sizeof s1, g->ndim, g->shape),
                   jac__shape_str(s2, sizeof s2, ndim, shape));
        return NULL;
    }
    jac_tensor *y = jac__tensor_alloc(ctx, "slice_scatter", ndim, shape);
    if (y == NULL)
        return NULL;
    memset(y->data, 0, (size_t)y->numel * sizeof(double));
    slice_copy(shape, ndim, axis, start, step, count, y->data, g->data, false);
    bool failed;
    jac__node *node = jac__record(ctx, JAC__OP_SLICE_SCATTER, y, 1, &g, &failed);
    if (failed)
        return NULL;
    if (node) {
        node->p.slice.axis = axis;
        node->p.slice.start = start;
        node->p.slice.stop = stop;
        node->p.slice.step = step;
    }
    return y;
}

/* The cotangent of a slice lands back at the sliced positions, zeros
 * elsewhere; the cotangent of that scatter is the same slice. */
jac_status jac__vjp_slice(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                          const bool *need, jac_tensor **gin)
{
    (void)need;
    const jac_tensor *a = node->in[0];
    int nb = jac__batch_ndim(g, node->out);
    int64_t s[JAC_MAX_DIMS];
    int n = jac__batched_shape(g, nb, a->ndim, a->shape, s);
    if (n < 0)
        return jac__error(ctx, JAC_ERR_RANK,
                          "slice: batched gradient exceeds rank %d",
                          JAC_MAX_DIMS);
    gin[0] = jac__slice_scatter(ctx, g, n, s, nb + node->p.slice.axis,
                                node->p.slice.start, node->p.slice.stop,
                                node->p.slice.step);
    return gin[0] ? JAC_OK : ctx->status;
}

jac_status jac__vjp_slice_scatter(jac_ctx *ctx, const jac__node *node,
                                  jac_tensor *g, const bool *need,
                                  jac_tensor **gin)
{
    (void)need;
    int nb = jac__batch_ndim(g, node->out);
    gin[0] = jac_slice(ctx, g, nb + node->p.slice.axis, node->p.slice.start,
                       node->p.slice.stop, node->p.slice.step);
    return gin[0] ? JAC_OK : ctx->status;
}

/* ------------------------------------------------------------------------ */
/* concat                                                                   */
/* ------------------------------------------------------------------------ */

jac_tensor *jac_concat(jac_ctx *ctx, size_t n, jac_tensor *const *ts, int axis)
{
    if (ctx == NULL)
        return NULL;
    if (n == 0 || ts == NULL) {
        jac__error(ctx, JAC_ERR_NULL_ARG, "concat: no tensors given");
        return NULL;
    }
    if (n > INT32_MAX) {
        jac__error(ctx, JAC_ERR_VALUE, "concat: too many tensors");
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        if (!jac__check_arg(ctx, "concat", ts[i]))
            return NULL;
    const jac_tensor *t0 = ts[0];
    char s1[JAC__SHAPE_STR_MAX], s2[JAC__SHAPE_STR_MAX];
    int ax = jac__axis(axis, t0->ndim);
    if (ax < 0) {
        jac__error(ctx, JAC_ERR_AXIS, "concat: axis %d is out of range for %s",
                   axis, jac__shape_str(s1, sizeof s1, t0->ndim, t0->shape));
        return NULL;
    }
    int64_t shape[JAC_MAX_DIMS];
    memcpy(shape, t0->shape, (size_t)t0->ndim * sizeof(int64_t));
    shape[ax] = 0;
    for (size_t i = 0; i < n; i++) {
        const jac_tensor *t = ts[i];
        bool ok = t->ndim == t0->ndim;
        for (int d = 0; ok && d < t0->ndim; d++)
            ok = d == ax || t->shape[d] == t0->shape[d];
        if (!ok) {
            jac__error(ctx, JAC_ERR_SHAPE,
                       "concat: shapes %s and %s differ outside axis %d",
                       jac__shape_str(s1, sizeof s1, t0->ndim, t0->shape),
                       jac__shape_str(s2, sizeof s2, t->ndim, t->shape), ax);
            return NULL;
        }
        shape[ax] += t->shape[ax];
    }
    jac_tensor *y = jac__tensor_alloc(ctx, "concat", t0->ndim, shape);
    if (y == NULL)
        return NULL;
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < ax; d++)
        outer *= shape[d];
    for (int d = ax + 1; d < t0->ndim; d++)
        inner *= shape[d];
    int64_t row = shape[ax] * inner, off = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t len = ts[i]->shape[ax] * inner;
        for (int64_t o = 0; o < outer; o++)
            memcpy(y->data + o * row + off, ts[i]->data + o * len,
                   (size_t)len * sizeof(double));
        off += len;
    }
    bool failed;
    jac__node *node = jac__record(ctx, JAC__OP_CONCAT, y, (int)n, ts, &failed);
    if (failed)
        return NULL;
    if (node)
        node->p.concat.axis = ax;
    return y;
}

jac_status jac__vjp_concat(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                           const bool *need, jac_tensor **gin)
{
    int nb = jac__batch_ndim(g, node->out);
    int ax = node->p.concat.axis;
    int64_t off = 0;
    for (int i = 0; i < node->nin; i++) {
        int64_t len = node->in[i]->shape[ax];
        if (need[i] &&
            !(gin[i] = jac_slice(ctx, g, nb + ax, off, off + len, 1)))
            return ctx->status;
        off += len;
    }
    return JAC_OK;
}
