/*
 * Shape ops: reshape (shares storage) and the reshapes flatten, squeeze and
 * unsqueeze; slice and its adjoint slice_scatter; concat, stack and split;
 * index_select and gather with their adjoints index_add and scatter_add;
 * where; pad. Every adjoint pair is differentiated by the other member of
 * the pair, so all of them work to any order.
 *
 * SPDX-License-Identifier: MIT
 */
#include "ops/ops.h"

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
        jac__error(ctx, JAC_ERR_RANK, "reshape: rank %d is outside 0..%d", ndim,
                   JAC_MAX_DIMS);
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
                   (long long)a->numel,
                   jac__shape_str(s2, sizeof s2, ndim, shape));
        return NULL;
    }
    jac_tensor *y = jac__tensor_view(ctx, a, ndim, s);
    if (y == NULL)
        return NULL;
    return jac__record_result(ctx, JAC__OP_RESHAPE, y, 1, &a, NULL);
}

jac_tensor *jac__apply_reshape(jac_ctx *ctx, const jac__node *n,
                               jac_tensor *const *ins)
{
    return jac_reshape(ctx, ins[0], n->out->ndim, n->out->shape);
}

jac_tensor *jac__reshape_batched(jac_ctx *ctx, const char *op, jac_tensor *t,
                                 int nbatch, int ndim, const int64_t *shape)
{
    if (t == NULL)
        return NULL;
    int64_t s[JAC_MAX_DIMS];
    int n = jac__batched_shape(t, nbatch, ndim, shape, s);
    if (n < 0) {
        jac__error(ctx, JAC_ERR_RANK, "%s: batched gradient exceeds rank %d",
                   op, JAC_MAX_DIMS);
        return NULL;
    }
    return jac_reshape(ctx, t, n, s);
}

jac_status jac__vjp_reshape(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                            const bool *need, jac_tensor **gin)
{
    (void)need;
    const jac_tensor *a = node->in[0];
    gin[0] = jac__reshape_batched(
        ctx, "reshape", g, jac__batch_ndim(g, node->out), a->ndim, a->shape);
    return gin[0] ? JAC_OK : ctx->status;
}

bool jac__raw_reshape(const jac__node *n, int64_t batch, const double *g,
                      const jac__onehot_rows *onehot, const bool *need,
                      const bool *add, double *const *gin)
{
    (void)onehot;
    (void)need;
    int64_t count = batch * n->out->numel;
    if (jac__raw_adds(n, add))
        for (int64_t i = 0; i < count; i++)
            gin[0][i] += g[i];
    else
        memcpy(gin[0], g, (size_t)count * sizeof(double));
    return true;
}

/* ------------------------------------------------------------------------ */
/* slice and slice_scatter                                                  */
/* ------------------------------------------------------------------------ */

/* Product of the extents before and after axis. */
static void outer_inner(int ndim, const int64_t *shape, int axis,
                        int64_t *outer, int64_t *inner)
{
    *outer = 1;
    *inner = 1;
    for (int i = 0; i < axis; i++)
        *outer *= shape[i];
    for (int i = axis + 1; i < ndim; i++)
        *inner *= shape[i];
}

/* Copies the positions start, start + step, ... (count of them) of an axis
 * between a tensor full of shape (batch * outer, big, inner) and a dense
 * part of shape (batch * outer, count, inner), to the part or back. */
static void slice_move(int64_t batch, int64_t outer, int64_t big, int64_t inner,
                       int64_t start, int64_t step, int64_t count, double *full,
                       double *part, bool to_part)
{
    if (batch == 0 || outer == 0 || inner == 0 || count == 0)
        return; /* empty: the other extents may be huge */
    int64_t shape[3] = {batch * outer, count, inner};
    /* (A single position may come with any step.) */
    int64_t fs[3] = {big * inner, count > 1 ? step * inner : 0, 1};
    int64_t ps[3] = {count * inner, inner, 1};
    /* Blocks of one element: the sliced axis is the inner loop. */
    int nd = inner == 1 ? 2 : 3;
    if (to_part)
        jac__strided_copy(nd, shape, full + start * inner, fs, part, ps);
    else
        jac__strided_copy(nd, shape, part, ps, full + start * inner, fs);
}

/* As slice_move to the part, the positions added to the part's values. */
static void slice_add(int64_t batch, int64_t outer, int64_t big, int64_t inner,
                      int64_t start, int64_t step, int64_t count,
                      const double *full, double *part)
{
    for (int64_t r = 0; r < batch * outer; r++) {
        const double *f = full + (r * big + start) * inner;
        double *d = part + r * count * inner;
        for (int64_t c = 0; c < count; c++, f += step * inner, d += inner)
            for (int64_t i = 0; i < inner; i++)
                d[i] += f[i];
    }
}

/* As slice_move back, the part's values added into the positions. */
static void slice_add_back(int64_t batch, int64_t outer, int64_t big,
                           int64_t inner, int64_t start, int64_t step,
                           int64_t count, const double *part, double *full)
{
    for (int64_t r = 0; r < batch * outer; r++) {
        double *f = full + (r * big + start) * inner;
        const double *p = part + r * count * inner;
        for (int64_t c = 0; c < count; c++, f += step * inner, p += inner)
            for (int64_t i = 0; i < inner; i++)
                f[i] += p[i];
    }
}

/* Zeros where a tensor full of shape (batch * outer, big, inner) is not
 * at the positions start, start + step, ... (count of them) of its axis:
 * what slice_move back leaves as it was. (A step other than 1 zeros all.) */
static void zero_outside(int64_t batch, int64_t outer, int64_t big,
                         int64_t inner, int64_t start, int64_t step,
                         int64_t count, double *full)
{
    if (step != 1 || count == 0) {
        memset(full, 0, (size_t)(batch * outer * big * inner) * sizeof(double));
        return;
    }
    int64_t head = start * inner, tail = (big - start - count) * inner;
    for (int64_t r = 0; r < batch * outer; r++) {
        double *f = full + r * big * inner;
        for (int64_t i = 0; i < head; i++)
            f[i] = 0.0;
        f += (start + count) * inner;
        for (int64_t i = 0; i < tail; i++)
            f[i] = 0.0;
    }
}

/* Zero added where a tensor full of shape (batch * outer, big, inner) is
 * not at the positions start .. start + count - 1 of its axis. */
static void add_zero_outside(int64_t batch, int64_t outer, int64_t big,
                             int64_t inner, int64_t start, int64_t count,
                             double *full)
{
    int64_t head = start * inner, tail = (big - start - count) * inner;
    for (int64_t r = 0; r < batch * outer; r++) {
        double *f = full + r * big * inner;
        for (int64_t i = 0; i < head; i++)
            f[i] += 0.0;
        f += (start + count) * inner;
        for (int64_t i = 0; i < tail; i++)
            f[i] += 0.0;
    }
}

static int64_t slice_count(int64_t start, int64_t stop, int64_t step)
{
    return start < stop ? (stop - start - 1) / step + 1 : 0;
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
    int64_t outer, inner;
    outer_inner(a->ndim, a->shape, ax, &outer, &inner);
    slice_move(1, outer, a->shape[ax], inner, start, step, count, a->data,
               y->data, true);
    JAC__PARAMS(p);
    p.slice.axis = ax;
    p.slice.start = start;
    p.slice.stop = stop;
    p.slice.step = step;
    return jac__record_result(ctx, JAC__OP_SLICE, y, 1, &a, &p);
}

/* The node keeps the bounds normalised, which normalise to themselves. */
jac_tensor *jac__apply_slice(jac_ctx *ctx, const jac__node *n,
                             jac_tensor *const *ins)
{
    return jac_slice(ctx, ins[0], n->p.slice.axis, n->p.slice.start,
                     n->p.slice.stop, n->p.slice.step);
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
    int64_t outer, inner;
    outer_inner(ndim, shape, axis, &outer, &inner);
    slice_move(1, outer, shape[axis], inner, start, step, count, y->data,
               g->data, false);
    JAC__PARAMS(p);
    p.slice.axis = axis;
    p.slice.start = start;
    p.slice.stop = stop;
    p.slice.step = step;
    return jac__record_result(ctx, JAC__OP_SLICE_SCATTER, y, 1, &g, &p);
}

/* The full shape is the output's. */
jac_tensor *jac__apply_slice_scatter(jac_ctx *ctx, const jac__node *n,
                                     jac_tensor *const *ins)
{
    if (!jac__apply_args(ctx, n, ins))
        return NULL;
    return jac__slice_scatter(ctx, ins[0], n->out->ndim, n->out->shape,
                              n->p.slice.axis, n->p.slice.start,
                              n->p.slice.stop, n->p.slice.step);
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

bool jac__raw_slice(const jac__node *n, int64_t batch, const double *g,
                    const jac__onehot_rows *onehot, const bool *need,
                    const bool *add, double *const *gin)
{
    (void)onehot;
    (void)need;
    bool scatter = n->op == JAC__OP_SLICE_SCATTER;
    const jac_tensor *full = scatter ? n->out : n->in[0];
    const jac_tensor *part = scatter ? n->in[0] : n->out;
    int axis = n->p.slice.axis;
    int64_t outer, inner;
    outer_inner(full->ndim, full->shape, axis, &outer, &inner);
    int64_t count = part->shape[axis];
    bool adds = jac__raw_adds(n, add);
    if (scatter && adds) {
        slice_add(batch, outer, full->shape[axis], inner, n->p.slice.start,
                  n->p.slice.step, count, g, gin[0]);
    } else if (scatter) {
        slice_move(batch, outer, full->shape[axis], inner, n->p.slice.start,
                   n->p.slice.step, count, (double *)g, gin[0], true);
    } else if (adds) {
        /* The full tensor's cotangent is g at the sliced positions and
         * zero elsewhere, added as the rule's sum adds it (-0 + 0 is 0):
         * a pass over the positions, and zeros added outside them. */
        if (n->p.slice.step != 1)
            return false;
        slice_add_back(batch, outer, full->shape[axis], inner, n->p.slice.start,
                       n->p.slice.step, count, g, gin[0]);
        add_zero_outside(batch, outer, full->shape[axis], inner,
                         n->p.slice.start, count, gin[0]);
    } else {
        zero_outside(batch, outer, full->shape[axis], inner, n->p.slice.start,
                     n->p.slice.step, count, gin[0]);
        slice_move(batch, outer, full->shape[axis], inner, n->p.slice.start,
                   n->p.slice.step, count, gin[0], (double *)g, false);
    }
    return true;
}

/* ------------------------------------------------------------------------ */
/* concat                                                                   */
/* ------------------------------------------------------------------------ */

/* The prologue of concat and stack: one tensor or more (but not more than
 * an int counts), each a valid argument of op. */
static bool tensor_list_args(jac_ctx *ctx, const char *op, size_t n,
                             jac_tensor *const *ts)
{
    if (ctx == NULL)
        return false;
    if (n == 0 || ts == NULL) {
        jac__error(ctx, JAC_ERR_NULL_ARG, "%s: no tensors given", op);
        return false;
    }
    if (n > INT32_MAX) {
        jac__error(ctx, JAC_ERR_VALUE, "%s: too many tensors", op);
        return false;
    }
    return jac__check_args(ctx, op, n, ts);
}

jac_tensor *jac_concat(jac_ctx *ctx, size_t n, jac_tensor *const *ts, int axis)
{
    if (!tensor_list_args(ctx, "concat", n, ts))
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
        if (t->shape[ax] > INT64_MAX - shape[ax]) {
            jac__error(ctx, JAC_ERR_OVERFLOW,
                       "concat: the extents along axis %d overflow", ax);
            return NULL;
        }
        shape[ax] += t->shape[ax];
    }
    jac_tensor *y = jac__tensor_alloc(ctx, "concat", t0->ndim, shape);
    if (y == NULL)
        return NULL;
    /* An empty result copies nothing (its other extents may be huge). */
    int64_t outer = y->numel ? 1 : 0, inner = 1;
    for (int d = 0; outer && d < ax; d++)
        outer *= shape[d];
    for (int d = ax + 1; outer && d < t0->ndim; d++)
        inner *= shape[d];
    int64_t row = shape[ax] * inner, off = 0;
    for (size_t i = 0; outer && i < n; i++) {
        int64_t len = ts[i]->shape[ax] * inner;
        for (int64_t o = 0; o < outer; o++)
            memcpy(y->data + o * row + off, ts[i]->data + o * len,
                   (size_t)len * sizeof(double));
        off += len;
    }
    JAC__PARAMS(p);
    p.concat.axis = ax;
    return jac__record_result(ctx, JAC__OP_CONCAT, y, (int)n, ts, &p);
}

jac_tensor *jac__apply_concat(jac_ctx *ctx, const jac__node *n,
                              jac_tensor *const *ins)
{
    return jac_concat(ctx, (size_t)n->nin, ins, n->p.concat.axis);
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

/* ------------------------------------------------------------------------ */
/* stack and split                                                          */
/* ------------------------------------------------------------------------ */

/* Stacking is unsqueeze (a reshape that shares storage) followed by concat,
 * so it needs no backward rule of its own. */
jac_tensor *jac_stack(jac_ctx *ctx, size_t n, jac_tensor *const *ts, int axis)
{
    if (!tensor_list_args(ctx, "stack", n, ts))
        return NULL;
    const jac_tensor *t0 = ts[0];
    char s1[JAC__SHAPE_STR_MAX], s2[JAC__SHAPE_STR_MAX];
    for (size_t i = 1; i < n; i++) {
        const jac_tensor *t = ts[i];
        if (t->ndim != t0->ndim ||
            memcmp(t->shape, t0->shape, (size_t)t0->ndim * sizeof(int64_t)) !=
                0) {
            jac__error(ctx, JAC_ERR_SHAPE,
                       "stack: tensor %zu has shape %s, tensor 0 has %s", i,
                       jac__shape_str(s1, sizeof s1, t->ndim, t->shape),
                       jac__shape_str(s2, sizeof s2, t0->ndim, t0->shape));
            return NULL;
        }
    }
    if (t0->ndim >= JAC_MAX_DIMS) {
        jac__error(ctx, JAC_ERR_RANK,
                   "stack: stacking tensors of shape %s exceeds rank %d",
                   jac__shape_str(s1, sizeof s1, t0->ndim, t0->shape),
                   JAC_MAX_DIMS);
        return NULL;
    }
    int ax = jac__axis(axis, t0->ndim + 1);
    if (ax < 0) {
        jac__error(ctx, JAC_ERR_AXIS,
                   "stack: axis %d is out of range for stacking shape %s "
                   "(0..%d)",
                   axis, jac__shape_str(s1, sizeof s1, t0->ndim, t0->shape),
                   t0->ndim);
        return NULL;
    }
    size_t bytes = n * sizeof(jac_tensor *);
    jac_tensor **u = jac__alloc(ctx, bytes);
    if (u == NULL) {
        jac__error(ctx, JAC_ERR_NO_MEMORY, "stack: out of memory");
        return NULL;
    }
    jac_tensor *y = NULL;
    size_t done = 0;
    for (; done < n; done++)
        if ((u[done] = jac_unsqueeze(ctx, ts[done], ax)) == NULL)
            break;
    if (done == n)
        y = jac_concat(ctx, n, u, ax);
    jac__free(ctx, u, bytes);
    return y;
}

/* The pieces are slices, so their gradients need no rule of their own. On
 * failure every entry of out is set to NULL. */
jac_status jac_split(jac_ctx *ctx, jac_tensor *a, int axis, size_t n,
                     const int64_t *sizes, jac_tensor **out)
{
    if (ctx == NULL)
        return JAC_ERR_NULL_ARG;
    if (n > 0 && (sizes == NULL || out == NULL))
        return jac__error(ctx, JAC_ERR_NULL_ARG,
                          "split: sizes or out is NULL for %zu pieces", n);
    /* cppcheck-suppress unreadVariable ; kept for a goto fail that forgets */
    jac_status st = JAC_OK;
    char s[JAC__SHAPE_STR_MAX];
    int ax = -1;
    if (!jac__check_arg(ctx, "split", a)) {
        st = ctx->status;
        goto fail;
    }
    ax = jac__axis(axis, a->ndim);
    if (ax < 0) {
        st = jac__error(ctx, JAC_ERR_AXIS,
                        "split: axis %d is out of range for %s", axis,
                        jac__shape_str(s, sizeof s, a->ndim, a->shape));
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        if (sizes[i] < 0) {
            st = jac__error(ctx, JAC_ERR_VALUE,
                            "split: size %lld of piece %zu is negative",
                            (long long)sizes[i], i);
            goto fail;
        }
    }
    int64_t extent = a->shape[ax], total = 0;
    for (size_t i = 0; i < n; i++) {
        if (sizes[i] > extent - total) {
            total = extent + 1; /* more than the extent: reported below */
            break;
        }
        total += sizes[i];
    }
    if (total != extent) {
        st = jac__error(ctx, JAC_ERR_VALUE,
                        "split: the %zu sizes do not add up to extent %lld of "
                        "axis %d of %s",
                        n, (long long)extent, ax,
                        jac__shape_str(s, sizeof s, a->ndim, a->shape));
        goto fail;
    }
    int64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        out[i] = jac_slice(ctx, a, ax, off, off + sizes[i], 1);
        if (out[i] == NULL) {
            st = ctx->status;
            goto fail;
        }
        off += sizes[i];
    }
    return JAC_OK;
fail:
    for (size_t i = 0; out != NULL && i < n; i++)
        out[i] = NULL;
    return st;
}

/* ------------------------------------------------------------------------ */
/* flatten, squeeze, unsqueeze: reshapes                                    */
/* ------------------------------------------------------------------------ */

/* A rank-0 tensor flattens to one element of rank 1 (axes 0 and -1 name its
 * single implicit axis), as in PyTorch. */
jac_tensor *jac_flatten(jac_ctx *ctx, jac_tensor *a, int start_axis,
                        int end_axis)
{
    if (ctx == NULL || !jac__check_arg(ctx, "flatten", a))
        return NULL;
    char s[JAC__SHAPE_STR_MAX];
    int nd = a->ndim > 0 ? a->ndim : 1;
    const int64_t one = 1;
    const int64_t *in = a->ndim > 0 ? a->shape : &one;
    int lo = jac__axis(start_axis, nd), hi = jac__axis(end_axis, nd);
    if (lo < 0 || hi < 0 || lo > hi) {
        jac__error(ctx, JAC_ERR_AXIS,
                   "flatten: axes %d .. %d are out of range or reversed for "
                   "%s",
                   start_axis, end_axis,
                   jac__shape_str(s, sizeof s, a->ndim, a->shape));
        return NULL;
    }
    int64_t shape[JAC_MAX_DIMS];
    int k = 0;
    for (int i = 0; i < lo; i++)
        shape[k++] = in[i];
    int64_t merged = 1;
    for (int i = lo; i <= hi; i++)
        merged *= in[i]; /* cannot overflow: numel fits */
    shape[k++] = merged;
    for (int i = hi + 1; i < nd; i++)
        shape[k++] = in[i];
    return jac_reshape(ctx, a, k, shape);
}

/* Unlike PyTorch, an axis whose extent is not 1 is an error (JAC_ERR_SHAPE),
 * not a silent no-op. */
jac_tensor *jac_squeeze(jac_ctx *ctx, jac_tensor *a, int axis)
{
    if (ctx == NULL || !jac__check_arg(ctx, "squeeze", a))
        return NULL;
    char s[JAC__SHAPE_STR_MAX];
    int ax = jac__axis(axis, a->ndim);
    if (ax < 0) {
        jac__error(ctx, JAC_ERR_AXIS, "squeeze: axis %d is out of range for %s",
                   axis, jac__shape_str(s, sizeof s, a->ndim, a->shape));
        return NULL;
    }
    if (a->shape[ax] != 1) {
        jac__error(ctx, JAC_ERR_SHAPE,
                   "squeeze: axis %d of %s has extent %lld, not 1", ax,
                   jac__shape_str(s, sizeof s, a->ndim, a->shape),
                   (long long)a->shape[ax]);
        return NULL;
    }
    int64_t shape[JAC_MAX_DIMS];
    int k = 0;
    for (int i = 0; i < a->ndim; i++)
        if (i != ax)
            shape[k++] = a->shape[i];
    return jac_reshape(ctx, a, k, shape);
}

/* a[..., index, ...] along axis: a slice of one, squeezed. */
jac_tensor *jac_select(jac_ctx *ctx, jac_tensor *a, int axis, int64_t index)
{
    if (ctx == NULL || !jac__check_arg(ctx, "select", a))
        return NULL;
    char s[JAC__SHAPE_STR_MAX];
    int ax = jac__axis(axis, a->ndim);
    if (ax < 0) {
        jac__error(ctx, JAC_ERR_AXIS, "select: axis %d is out of range for %s",
                   axis, jac__shape_str(s, sizeof s, a->ndim, a->shape));
        return NULL;
    }
    int64_t n = a->shape[ax], i = index < 0 ? index + n : index;
    if (i < 0 || i >= n) {
        jac__error(ctx, JAC_ERR_VALUE,
                   "select: index %lld is out of range for axis %d of %s",
                   (long long)index, ax,
                   jac__shape_str(s, sizeof s, a->ndim, a->shape));
        return NULL;
    }
    return jac_squeeze(ctx, jac_slice(ctx, a, ax, i, i + 1, 1), ax);
}

jac_tensor *jac_unsqueeze(jac_ctx *ctx, jac_tensor *a, int axis)
{
    if (ctx == NULL || !jac__check_arg(ctx, "unsqueeze", a))
        return NULL;
    char s[JAC__SHAPE_STR_MAX];
    if (a->ndim >= JAC_MAX_DIMS) {
        jac__error(
            ctx, JAC_ERR_RANK, "unsqueeze: %s already has the largest rank %d",
            jac__shape_str(s, sizeof s, a->ndim, a->shape), JAC_MAX_DIMS);
        return NULL;
    }
    int ax = jac__axis(axis, a->ndim + 1);
    if (ax < 0) {
        jac__error(ctx, JAC_ERR_AXIS,
                   "unsqueeze: axis %d is out of range for %s (0..%d)", axis,
                   jac__shape_str(s, sizeof s, a->ndim, a->shape), a->ndim);
        return NULL;
    }
    int64_t shape[JAC_MAX_DIMS];
    for (int i = 0, k = 0; i <= a->ndim; i++)
        shape[i] = i == ax ? 1 : a->shape[k++];
    return jac_reshape(ctx, a, a->ndim + 1, shape);
}

/* ------------------------------------------------------------------------ */
/* Index tensors                                                            */
/*                                                                          */
/* index_select and gather keep their integer index as a float64 tensor    */
/* input of the node (in[1]), so that it lives as long as the graph and the */
/* rules can hand it on. It never requires gradients and is never an input  */
/* the user can differentiate with respect to, so need[1] is always false.  */
/* Entries are exact integers (every valid index is far below 2^53).        */
/* ------------------------------------------------------------------------ */

/* Checks that index[0 .. count-1] lie in 0 .. extent-1 (negative indices
 * are errors, not counted from the end) and copies them into a new tensor
 * of the given shape. */
static jac_tensor *index_tensor(jac_ctx *ctx, const char *op,
                                const jac_tensor *a, int ax, int ndim,
                                const int64_t *shape, const int64_t *index)
{
    int64_t count = jac__numel(ndim, shape);
    int64_t extent = a->shape[ax];
    char s[JAC__SHAPE_STR_MAX];
    for (int64_t i = 0; i < count; i++) {
        if (index[i] < 0 || index[i] >= extent) {
            jac__error(ctx, JAC_ERR_VALUE,
                       "%s: index %lld at position %lld is out of range for "
                       "extent %lld (axis %d of %s)",
                       op, (long long)index[i], (long long)i, (long long)extent,
                       ax, jac__shape_str(s, sizeof s, a->ndim, a->shape));
            return NULL;
        }
    }
    jac_tensor *t = jac__tensor_alloc(ctx, op, ndim, shape);
    if (t == NULL)
        return NULL;
    for (int64_t i = 0; i < count; i++)
        t->data[i] = (double)index[i];
    return t;
}

static inline int64_t index_at(const jac_tensor *idx, int64_t i)
{
    return (int64_t)idx->data[i];
}

/* For an apply, which hands the index tensor of a node to the internal
 * constructors (they check nothing): whether idx has rank ndim, extents no
 * larger than big's (rank ndim) off axis ax, and integers in 0 .. big[ax] -
 * 1 only; else the error naming op. */
static bool index_fits(jac_ctx *ctx, const char *op, const jac_tensor *idx,
                       int ndim, const int64_t *big, int ax)
{
    char s[JAC__SHAPE_STR_MAX];
    bool ok = idx->ndim == ndim && ax >= 0 && ax < ndim;
    for (int d = 0; ok && d < ndim; d++)
        ok = d == ax || idx->shape[d] <= big[d];
    if (!ok) {
        jac__error(ctx, JAC_ERR_SHAPE, "%s: index of shape %s does not fit", op,
                   jac__shape_str(s, sizeof s, idx->ndim, idx->shape));
        return false;
    }
    for (int64_t i = 0; i < idx->numel; i++) {
        double v = idx->data[i];
        if (!(v >= 0.0 && v < (double)big[ax] && v == (double)(int64_t)v)) {
            jac__error(ctx, JAC_ERR_VALUE,
                       "%s: index %g at position %lld is not an index of "
                       "extent %lld",
                       op, v, (long long)i, (long long)big[ax]);
            return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------------------ */
/* index_select and its adjoint index_add                                   */
/* ------------------------------------------------------------------------ */

/* y = a with its axis ax replaced by the entries idx of that axis. */
static jac_tensor *index_select_t(jac_ctx *ctx, jac_tensor *a, int ax,
                                  jac_tensor *idx)
{
    int64_t shape[JAC_MAX_DIMS];
    memcpy(shape, a->shape, (size_t)a->ndim * sizeof(int64_t));
    int64_t n = idx->numel, extent = a->shape[ax];
    shape[ax] = n;
    jac_tensor *y = jac__tensor_alloc(ctx, "index_select", a->ndim, shape);
    if (y == NULL)
        return NULL;
    int64_t outer, inner;
    outer_inner(a->ndim, a->shape, ax, &outer, &inner);
    size_t bytes = (size_t)inner * sizeof(double);
    for (int64_t o = 0; o < outer && y->numel > 0; o++)
        for (int64_t k = 0; k < n; k++)
            memcpy(y->data + (o * n + k) * inner,
                   a->data + (o * extent + index_at(idx, k)) * inner, bytes);
    jac_tensor *ins[2] = {a, idx};
    JAC__PARAMS(p);
    p.index.axis = ax;
    return jac__record_result(ctx, JAC__OP_INDEX_SELECT, y, 2, ins, &p);
}

/* y = zeros with extent `extent` on axis ax, and y[.., idx[k], ..] +=
 * g[.., k, ..]: repeated indices add up. */
static jac_tensor *index_add_t(jac_ctx *ctx, jac_tensor *g, int ax,
                               jac_tensor *idx, int64_t extent)
{
    int64_t shape[JAC_MAX_DIMS];
    memcpy(shape, g->shape, (size_t)g->ndim * sizeof(int64_t));
    shape[ax] = extent;
    jac_tensor *y = jac__tensor_alloc(ctx, "index_add", g->ndim, shape);
    if (y == NULL)
        return NULL;
    memset(y->data, 0, (size_t)y->numel * sizeof(double));
    int64_t outer, inner, n = idx->numel;
    outer_inner(g->ndim, g->shape, ax, &outer, &inner);
    for (int64_t o = 0; o < outer && g->numel > 0; o++) {
        for (int64_t k = 0; k < n; k++) {
            const double *src = g->data + (o * n + k) * inner;
            double *dst = y->data + (o * extent + index_at(idx, k)) * inner;
            for (int64_t j = 0; j < inner; j++)
                dst[j] += src[j];
        }
    }
    jac_tensor *ins[2] = {g, idx};
    JAC__PARAMS(p);
    p.index.axis = ax;
    return jac__record_result(ctx, JAC__OP_INDEX_ADD, y, 2, ins, &p);
}

/* A scalar has no axis to index: rank 0 fails with JAC_ERR_AXIS. */
jac_tensor *jac_index_select(jac_ctx *ctx, jac_tensor *a, int axis, size_t n,
                             const int64_t *index)
{
    if (ctx == NULL || !jac__check_arg(ctx, "index_select", a))
        return NULL;
    char s[JAC__SHAPE_STR_MAX];
    int ax = jac__axis(axis, a->ndim);
    if (ax < 0) {
        jac__error(ctx, JAC_ERR_AXIS,
                   "index_select: axis %d is out of range for %s", axis,
                   jac__shape_str(s, sizeof s, a->ndim, a->shape));
        return NULL;
    }
    if (n > 0 && index == NULL) {
        jac__error(ctx, JAC_ERR_NULL_ARG, "index_select: index is NULL");
        return NULL;
    }
    if (n > (size_t)INT64_MAX / sizeof(double)) {
        jac__error(ctx, JAC_ERR_OVERFLOW, "index_select: %zu indices", n);
        return NULL;
    }
    int64_t count = (int64_t)n;
    jac_tensor *idx =
        index_tensor(ctx, "index_select", a, ax, 1, &count, index);
    return idx ? index_select_t(ctx, a, ax, idx) : NULL;
}

/* The index is the node's second input. */
jac_tensor *jac__apply_index_select(jac_ctx *ctx, const jac__node *n,
                                    jac_tensor *const *ins)
{
    int ax = n->p.index.axis;
    if (!jac__apply_args(ctx, n, ins) || ax >= ins[0]->ndim ||
        !index_fits(ctx, "index_select", ins[1], 1, ins[0]->shape + ax, 0))
        return NULL;
    return index_select_t(ctx, ins[0], ax, ins[1]);
}

/* The extent the entries are added into is the output's. */
jac_tensor *jac__apply_index_add(jac_ctx *ctx, const jac__node *n,
                                 jac_tensor *const *ins)
{
    int ax = n->p.index.axis;
    if (!jac__apply_args(ctx, n, ins))
        return NULL;
    const jac_tensor *g = ins[0], *idx = ins[1];
    if (ax >= g->ndim || ax >= n->out->ndim || idx->ndim != 1 ||
        idx->shape[0] != g->shape[ax]) {
        char s1[JAC__SHAPE_STR_MAX], s2[JAC__SHAPE_STR_MAX];
        jac__error(ctx, JAC_ERR_SHAPE,
                   "index_add: index of shape %s does not fit %s on axis %d",
                   jac__shape_str(s1, sizeof s1, idx->ndim, idx->shape),
                   jac__shape_str(s2, sizeof s2, g->ndim, g->shape), ax);
        return NULL;
    }
    if (!index_fits(ctx, "index_add", idx, 1, n->out->shape + ax, 0))
        return NULL;
    return index_add_t(ctx, ins[0], ax, ins[1], n->out->shape[ax]);
}

jac_status jac__vjp_index_select(jac_ctx *ctx, const jac__node *node,
                                 jac_tensor *g, const bool *need,
                                 jac_tensor **gin)
{
    (void)need; /* only in[0] can need a gradient */
    int nb = jac__batch_ndim(g, node->out);
    int ax = node->p.index.axis;
    gin[0] = index_add_t(ctx, g, nb + ax, node->in[1], node->in[0]->shape[ax]);
    return gin[0] ? JAC_OK : ctx->status;
}

jac_status jac__vjp_index_add(jac_ctx *ctx, const jac__node *node,
                              jac_tensor *g, const bool *need, jac_tensor **gin)
{
    (void)need;
    int nb = jac__batch_ndim(g, node->out);
    gin[0] = index_select_t(ctx, g, nb + node->p.index.axis, node->in[1]);
    return gin[0] ? JAC_OK : ctx->status;
}

/* ------------------------------------------------------------------------ */
/* gather and its adjoint scatter_add                                       */
/*                                                                          */
/* Both take nlead leading axes that the index does not cover (batch axes  */
/* of a cotangent); past them, big has shape S and small has the index's    */
/* shape, which is no larger than S except on axis.                         */
/* ------------------------------------------------------------------------ */

/* small[e] = big[e with its axis coordinate replaced by idx[e]] (gather), or
 * big[...] += small[e] (scatter), for one block of the leading axes. */
static void gather_kernel(const int64_t *big_shape, const jac_tensor *idx,
                          int ax, double *big, double *small, bool scatter)
{
    /* big read along idx's shape, its axis ax replaced by the index; small
     * and idx are laid out alike. */
    int r = idx->ndim;
    int64_t bs[JAC_MAX_DIMS], ss[JAC_MAX_DIMS];
    jac__contiguous_strides(r, big_shape, 1, bs);
    jac__contiguous_strides(r, idx->shape, 1, ss);
    int64_t jump = bs[ax];
    bs[ax] = 0;
    const int64_t *strides[2] = {bs, ss};
    jac__iter it;
    int64_t rows = jac__iter_init(&it, r, idx->shape, 2, strides);
    for (int64_t row = 0; row < rows; row++, jac__iter_next(&it)) {
        double *b = big + it.off[0];
        int64_t e = it.off[1];
        for (int64_t i = 0; i < it.inner; i++) {
            int64_t at = i * it.step[0] + index_at(idx, e + i) * jump;
            if (scatter)
                b[at] += small[e + i];
            else
                small[e + i] = b[at];
        }
    }
}

static jac_tensor *gather_t(jac_ctx *ctx, jac_tensor *a, int ax, int nlead,
                            jac_tensor *idx)
{
    int64_t shape[JAC_MAX_DIMS];
    memcpy(shape, a->shape, (size_t)nlead * sizeof(int64_t));
    memcpy(shape + nlead, idx->shape, (size_t)idx->ndim * sizeof(int64_t));
    jac_tensor *y = jac__tensor_alloc(ctx, "gather", nlead + idx->ndim, shape);
    if (y == NULL)
        return NULL;
    int64_t lead = jac__numel(nlead, a->shape);
    int64_t big = jac__numel(a->ndim - nlead, a->shape + nlead);
    for (int64_t b = 0; b < lead && y->numel > 0; b++)
        gather_kernel(a->shape + nlead, idx, ax, a->data + b * big,
                      y->data + b * idx->numel, false);
    jac_tensor *ins[2] = {a, idx};
    JAC__PARAMS(p);
    p.index.axis = ax;
    p.index.nlead = nlead;
    return jac__record_result(ctx, JAC__OP_GATHER, y, 2, ins, &p);
}

/* y of shape lead ++ big_shape, zeros, with g's entries added at the
 * gathered positions (repeated indices add up). */
static jac_tensor *scatter_add_t(jac_ctx *ctx, jac_tensor *g, int ax, int nlead,
                                 jac_tensor *idx, const int64_t *big_shape)
{
    int64_t shape[JAC_MAX_DIMS];
    memcpy(shape, g->shape, (size_t)nlead * sizeof(int64_t));
    memcpy(shape + nlead, big_shape, (size_t)idx->ndim * sizeof(int64_t));
    jac_tensor *y =
        jac__tensor_alloc(ctx, "scatter_add", nlead + idx->ndim, shape);
    if (y == NULL)
        return NULL;
    memset(y->data, 0, (size_t)y->numel * sizeof(double));
    int64_t lead = jac__numel(nlead, g->shape);
    int64_t big = jac__numel(idx->ndim, big_shape);
    for (int64_t b = 0; b < lead && g->numel > 0; b++)
        gather_kernel(big_shape, idx, ax, y->data + b * big,
                      g->data + b * idx->numel, true);
    jac_tensor *ins[2] = {g, idx};
    JAC__PARAMS(p);
    p.index.axis = ax;
    p.index.nlead = nlead;
    return jac__record_result(ctx, JAC__OP_SCATTER_ADD, y, 2, ins, &p);
}

/* As index_select, a scalar fails with JAC_ERR_AXIS; a negative index
 * extent is JAC_ERR_VALUE, one larger than a's off the axis JAC_ERR_SHAPE. */
jac_tensor *jac_gather(jac_ctx *ctx, jac_tensor *a, int axis,
                       const int64_t *index_shape, const int64_t *index)
{
    if (ctx == NULL || !jac__check_arg(ctx, "gather", a))
        return NULL;
    char s1[JAC__SHAPE_STR_MAX], s2[JAC__SHAPE_STR_MAX];
    int ax = jac__axis(axis, a->ndim);
    if (ax < 0) {
        jac__error(ctx, JAC_ERR_AXIS, "gather: axis %d is out of range for %s",
                   axis, jac__shape_str(s1, sizeof s1, a->ndim, a->shape));
        return NULL;
    }
    if (index_shape == NULL) {
        jac__error(ctx, JAC_ERR_NULL_ARG, "gather: index_shape is NULL");
        return NULL;
    }
    for (int d = 0; d < a->ndim; d++) {
        if (index_shape[d] < 0 || (d != ax && index_shape[d] > a->shape[d])) {
            jac__error(ctx, index_shape[d] < 0 ? JAC_ERR_VALUE : JAC_ERR_SHAPE,
                       "gather: index shape %s does not fit %s outside axis "
                       "%d",
                       jac__shape_str(s1, sizeof s1, a->ndim, index_shape),
                       jac__shape_str(s2, sizeof s2, a->ndim, a->shape), ax);
            return NULL;
        }
    }
    int64_t count = jac__numel(a->ndim, index_shape);
    if (count < 0) {
        jac__error(ctx, JAC_ERR_OVERFLOW,
                   "gather: element count of index shape %s overflows",
                   jac__shape_str(s1, sizeof s1, a->ndim, index_shape));
        return NULL;
    }
    if (count > 0 && index == NULL) {
        jac__error(ctx, JAC_ERR_NULL_ARG, "gather: index is NULL");
        return NULL;
    }
    jac_tensor *idx =
        index_tensor(ctx, "gather", a, ax, a->ndim, index_shape, index);
    return idx ? gather_t(ctx, a, ax, 0, idx) : NULL;
}

/* The index is the node's second input; a rule's gather keeps nlead
 * leading axes. */
jac_tensor *jac__apply_gather(jac_ctx *ctx, const jac__node *n,
                              jac_tensor *const *ins)
{
    int nlead = n->p.index.nlead;
    if (!jac__apply_args(ctx, n, ins))
        return NULL;
    const jac_tensor *a = ins[0];
    if (nlead > a->ndim || !index_fits(ctx, "gather", ins[1], a->ndim - nlead,
                                       a->shape + nlead, n->p.index.axis))
        return NULL;
    return gather_t(ctx, ins[0], n->p.index.axis, nlead, ins[1]);
}

/* The shape scattered into is the output's past the nlead leading axes,
 * which the cotangent ins[0] shares. */
jac_tensor *jac__apply_scatter_add(jac_ctx *ctx, const jac__node *n,
                                   jac_tensor *const *ins)
{
    int nlead = n->p.index.nlead;
    if (!jac__apply_args(ctx, n, ins))
        return NULL;
    const jac_tensor *g = ins[0], *idx = ins[1], *y = n->out;
    if (g->ndim != nlead + idx->ndim ||
        memcmp(g->shape + nlead, idx->shape,
               (size_t)idx->ndim * sizeof(int64_t)) != 0) {
        char s1[JAC__SHAPE_STR_MAX], s2[JAC__SHAPE_STR_MAX];
        jac__error(ctx, JAC_ERR_SHAPE,
                   "scatter_add: %s does not end in the index's shape %s",
                   jac__shape_str(s1, sizeof s1, g->ndim, g->shape),
                   jac__shape_str(s2, sizeof s2, idx->ndim, idx->shape));
        return NULL;
    }
    if (nlead > y->ndim || !index_fits(ctx, "scatter_add", idx, y->ndim - nlead,
                                       y->shape + nlead, n->p.index.axis))
        return NULL;
    return scatter_add_t(ctx, ins[0], n->p.index.axis, nlead, ins[1],
                         y->shape + nlead);
}

jac_status jac__vjp_gather(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                           const bool *need, jac_tensor **gin)
{
    (void)need;
    int nb = jac__batch_ndim(g, node->out);
    int nlead = node->p.index.nlead;
    gin[0] = scatter_add_t(ctx, g, node->p.index.axis, nb + nlead, node->in[1],
                           node->in[0]->shape + nlead);
    return gin[0] ? JAC_OK : ctx->status;
}

jac_status jac__vjp_scatter_add(jac_ctx *ctx, const jac__node *node,
                                jac_tensor *g, const bool *need,
                                jac_tensor **gin)
{
    (void)need;
    int nb = jac__batch_ndim(g, node->out);
    gin[0] = gather_t(ctx, g, node->p.index.axis, nb + node->p.index.nlead,
                      node->in[1]);
    return gin[0] ? JAC_OK : ctx->status;
}

/* ------------------------------------------------------------------------ */
/* where                                                                    */
/* ------------------------------------------------------------------------ */

/* The node records cond as in[0] so that the rule can reuse it, but only
 * when a or b requires gradients: cond alone never makes the result
 * differentiable. If cond does require gradients it receives zeros (the
 * derivative of a step, taken as 0 everywhere). */
jac_tensor *jac_where(jac_ctx *ctx, jac_tensor *cond, jac_tensor *a,
                      jac_tensor *b)
{
    jac_tensor *ins[3] = {cond, a, b};
    if (!jac__check_args(ctx, "where", 3, ins))
        return NULL;
    int64_t ab[JAC_MAX_DIMS], shape[JAC_MAX_DIMS];
    int nab = jac__broadcast_shape(a->ndim, a->shape, b->ndim, b->shape, ab);
    int n = nab < 0
                ? -1
                : jac__broadcast_shape(cond->ndim, cond->shape, nab, ab, shape);
    if (n < 0) {
        char s1[JAC__SHAPE_STR_MAX], s2[JAC__SHAPE_STR_MAX],
            s3[JAC__SHAPE_STR_MAX];
        jac__error(ctx, JAC_ERR_SHAPE,
                   "where: shapes %s (cond), %s and %s cannot be broadcast "
                   "together",
                   jac__shape_str(s1, sizeof s1, cond->ndim, cond->shape),
                   jac__shape_str(s2, sizeof s2, a->ndim, a->shape),
                   jac__shape_str(s3, sizeof s3, b->ndim, b->shape));
        return NULL;
    }
    jac_tensor *y = jac__tensor_alloc(ctx, "where", n, shape);
    if (y == NULL)
        return NULL;
    int64_t sc[JAC_MAX_DIMS], sa[JAC_MAX_DIMS], sb[JAC_MAX_DIMS];
    int64_t sy[JAC_MAX_DIMS];
    jac__broadcast_strides(cond, n, shape, sc);
    jac__broadcast_strides(a, n, shape, sa);
    jac__broadcast_strides(b, n, shape, sb);
    jac__contiguous_strides(n, shape, 1, sy);
    const int64_t *strides[4] = {sc, sa, sb, sy};
    jac__iter it;
    int64_t rows = jac__iter_init(&it, n, shape, 4, strides);
    for (int64_t r = 0; r < rows; r++, jac__iter_next(&it)) {
        const double *pc = cond->data + it.off[0];
        const double *pa = a->data + it.off[1], *pb = b->data + it.off[2];
        double *py = y->data + it.off[3];
        for (int64_t i = 0; i < it.inner; i++)
            py[i] = pc[i * it.step[0]] != 0.0 ? pa[i * it.step[1]]
                                              : pb[i * it.step[2]];
    }
    if (!ctx->grad_enabled || !(a->requires_grad || b->requires_grad))
        return y;
    return jac__record_result(ctx, JAC__OP_WHERE, y, 3, ins, NULL);
}

/* where reads both branches (which one depends on the point), never the
 * condition. */
jac_status jac__deps_where(jac_ctx *ctx, const jac__node *n, jac__links *L)
{
    return jac__deps_broadcast_from(ctx, n, L, 1);
}

jac_tensor *jac__apply_where(jac_ctx *ctx, const jac__node *n,
                             jac_tensor *const *ins)
{
    (void)n;
    return jac_where(ctx, ins[0], ins[1], ins[2]);
}

/* The cotangent goes to a where cond holds and to b elsewhere: where(cond,
 * g, 0) and where(cond, 0, g), each summed back to its input's shape. Using
 * where itself keeps the rule differentiable to any order. */
jac_status jac__vjp_where(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                          const bool *need, jac_tensor **gin)
{
    jac_tensor *cond = node->in[0];
    int nb = jac__batch_ndim(g, node->out);
    jac_tensor *zero = jac_scalar(ctx, 0.0);
    if (zero == NULL)
        return ctx->status;
    if (need[0]) {
        int64_t s[JAC_MAX_DIMS];
        int n = jac__batched_shape(g, nb, cond->ndim, cond->shape, s);
        if (n < 0)
            return jac__error(ctx, JAC_ERR_RANK,
                              "where: batched gradient exceeds rank %d",
                              JAC_MAX_DIMS);
        if ((gin[0] = jac_zeros(ctx, n, s)) == NULL)
            return ctx->status;
    }
    for (int i = 1; i <= 2; i++) {
        if (!need[i])
            continue;
        jac_tensor *picked = i == 1 ? jac_where(ctx, cond, g, zero)
                                    : jac_where(ctx, cond, zero, g);
        if (picked == NULL)
            return ctx->status;
        gin[i] = jac__sum_to_batched(ctx, picked, nb, node->in[i]->ndim,
                                     node->in[i]->shape);
        if (gin[i] == NULL)
            return ctx->status;
    }
    return JAC_OK;
}

/* ------------------------------------------------------------------------ */
/* pad                                                                      */
/* ------------------------------------------------------------------------ */

/* Copies a into y at offset before[i] on each axis i (y already zeroed). */
static void pad_copy(const jac_tensor *a, const int64_t *before, jac_tensor *y)
{
    if (a->numel == 0)
        return;
    int64_t as[JAC_MAX_DIMS], ys[JAC_MAX_DIMS];
    jac__contiguous_strides(a->ndim, a->shape, 1, as);
    jac__contiguous_strides(y->ndim, y->shape, 1, ys);
    int64_t off = 0;
    for (int d = 0; d < a->ndim; d++)
        off += before[d] * ys[d];
    jac__strided_copy(a->ndim, a->shape, a->data, as, y->data + off, ys);
}

/* The node keeps the leading pads as a float64 tensor input in[1] (one
 * entry per axis), like the index of gather; the trailing pads follow from
 * the shapes. */
jac_tensor *jac_pad(jac_ctx *ctx, jac_tensor *a, const int64_t *before,
                    const int64_t *after)
{
    if (ctx == NULL || !jac__check_arg(ctx, "pad", a))
        return NULL;
    char s[JAC__SHAPE_STR_MAX];
    if (a->ndim > 0 && (before == NULL || after == NULL)) {
        jac__error(ctx, JAC_ERR_NULL_ARG, "pad: before or after is NULL");
        return NULL;
    }
    int64_t shape[JAC_MAX_DIMS];
    for (int i = 0; i < a->ndim; i++) {
        if (before[i] < 0 || after[i] < 0) {
            jac__error(ctx, JAC_ERR_VALUE,
                       "pad: padding (%lld, %lld) of axis %d of %s is "
                       "negative",
                       (long long)before[i], (long long)after[i], i,
                       jac__shape_str(s, sizeof s, a->ndim, a->shape));
            return NULL;
        }
        if (before[i] > INT64_MAX - a->shape[i] ||
            after[i] > INT64_MAX - a->shape[i] - before[i]) {
            jac__error(ctx, JAC_ERR_OVERFLOW,
                       "pad: padding axis %d of %s overflows", i,
                       jac__shape_str(s, sizeof s, a->ndim, a->shape));
            return NULL;
        }
        shape[i] = a->shape[i] + before[i] + after[i];
    }
    jac_tensor *y = jac__tensor_alloc(ctx, "pad", a->ndim, shape);
    if (y == NULL)
        return NULL;
    memset(y->data, 0, (size_t)y->numel * sizeof(double));
    pad_copy(a, before, y);
    if (!jac__should_record(ctx, 1, &a))
        return y;
    int64_t nd = a->ndim;
    jac_tensor *offsets = jac__tensor_alloc(ctx, "pad", 1, &nd);
    if (offsets == NULL)
        return NULL;
    for (int i = 0; i < a->ndim; i++)
        offsets->data[i] = (double)before[i];
    jac_tensor *ins[2] = {a, offsets};
    return jac__record_result(ctx, JAC__OP_PAD, y, 2, ins, NULL);
}

/* The leading pads are the node's second input, the trailing ones what the
 * output's shape leaves; jac_pad records pads of its own as the user's
 * call did. */
jac_tensor *jac__apply_pad(jac_ctx *ctx, const jac__node *n,
                           jac_tensor *const *ins)
{
    if (!jac__apply_args(ctx, n, ins))
        return NULL;
    const jac_tensor *a = ins[0], *offsets = ins[1], *y = n->out;
    int64_t before[JAC_MAX_DIMS], after[JAC_MAX_DIMS];
    bool ok =
        y->ndim == a->ndim && offsets->ndim == 1 && offsets->numel == a->ndim;
    for (int i = 0; ok && i < a->ndim; i++) {
        double v = offsets->data[i];
        ok = v >= 0.0 && v <= (double)y->shape[i] && v == (double)(int64_t)v;
        before[i] = ok ? (int64_t)v : 0;
        after[i] = y->shape[i] - a->shape[i] - before[i];
    }
    if (!ok) {
        char s1[JAC__SHAPE_STR_MAX], s2[JAC__SHAPE_STR_MAX],
            s3[JAC__SHAPE_STR_MAX];
        jac__error(ctx, JAC_ERR_SHAPE,
                   "pad: %s with leading pads of shape %s does not pad to %s",
                   jac__shape_str(s1, sizeof s1, a->ndim, a->shape),
                   jac__shape_str(s2, sizeof s2, offsets->ndim, offsets->shape),
                   jac__shape_str(s3, sizeof s3, y->ndim, y->shape));
        return NULL;
    }
    return jac_pad(ctx, ins[0], before, after);
}

/* The cotangent of a pad is its interior: one slice per padded axis (a
 * differentiable crop whose own rule scatters back, i.e. pads again). */
jac_status jac__vjp_pad(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                        const bool *need, jac_tensor **gin)
{
    (void)need;
    const jac_tensor *a = node->in[0];
    const jac_tensor *offsets = node->in[1];
    int nb = jac__batch_ndim(g, node->out);
    jac_tensor *r = g;
    for (int i = 0; i < a->ndim && r != NULL; i++) {
        if (a->shape[i] == node->out->shape[i])
            continue;
        int64_t start = index_at(offsets, i);
        r = jac_slice(ctx, r, nb + i, start, start + a->shape[i], 1);
    }
    gin[0] = r;
    return r ? JAC_OK : ctx->status;
}
