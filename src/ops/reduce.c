/*
 * Reductions and their adjoint, broadcasting: sum over axes, sum_to_shape
 * and expand. The last two undo each other, which is what lets every
 * broadcasting op write its backward rule with differentiable ops.
 *
 * SPDX-License-Identifier: MIT
 */
#include "ops/ops.h"

/* ------------------------------------------------------------------------ */
/* The reduction kernel                                                     */
/* ------------------------------------------------------------------------ */

/* out[...] = sum of a over the axes in mask; out is laid out as a's shape
 * with the reduced axes removed (equivalently, kept with extent 1). */
static void reduce_kernel(const jac_tensor *a, uint32_t mask, double *out,
                          int64_t out_numel)
{
    memset(out, 0, (size_t)out_numel * sizeof(double));
    if (a->numel == 0)
        return;
    int n = a->ndim;
    if (out_numel == 1) {
        double s = 0.0;
        for (int64_t i = 0; i < a->numel; i++)
            s += a->data[i];
        out[0] = s;
        return;
    }
    /* out read as a's shape: stride 0 on the reduced axes. */
    int64_t os[JAC_MAX_DIMS], as[JAC_MAX_DIMS];
    int64_t stride = 1;
    for (int i = n - 1; i >= 0; i--) {
        if (mask & (1u << i)) {
            os[i] = 0;
        } else {
            os[i] = stride;
            stride *= a->shape[i];
        }
    }
    jac__contiguous_strides(n, a->shape, 1, as);
    const int64_t *strides[2] = {as, os};
    jac__iter it;
    int64_t rows = jac__iter_init(&it, n, a->shape, 2, strides);
    int64_t inner = it.inner;
    for (int64_t r = 0; r < rows; r++, jac__iter_next(&it)) {
        const double *src = a->data + it.off[0];
        double *dst = out + it.off[1];
        if (it.step[1] == 0) {
            double s = 0.0;
            for (int64_t i = 0; i < inner; i++)
                s += src[i];
            dst[0] += s;
        } else { /* a kept innermost axis: stride 1 in out */
            for (int64_t i = 0; i < inner; i++)
                dst[i] += src[i];
        }
    }
}

/* ------------------------------------------------------------------------ */
/* sum over axes                                                            */
/* ------------------------------------------------------------------------ */

static jac_tensor *sum_mask(jac_ctx *ctx, jac_tensor *a, uint32_t mask,
                            bool keepdim)
{
    int64_t shape[JAC_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < a->ndim; i++) {
        if (mask & (1u << i)) {
            if (keepdim)
                shape[nd++] = 1;
        } else {
            shape[nd++] = a->shape[i];
        }
    }
    jac_tensor *y = jac__tensor_alloc(ctx, "sum", nd, shape);
    if (y == NULL)
        return NULL;
    reduce_kernel(a, mask, y->data, y->numel);
    JAC__PARAMS(p);
    p.reduce.axes_mask = mask;
    p.reduce.keepdim = keepdim;
    return jac__record_result(ctx, JAC__OP_SUM_AXES, y, 1, &a, &p);
}

jac_tensor *jac_sum(jac_ctx *ctx, jac_tensor *a)
{
    return jac_sum_axes(ctx, a, 0, NULL, false);
}

bool jac__axes_mask(jac_ctx *ctx, const char *op, const jac_tensor *a,
                    int naxes, const int *axes, uint32_t *mask)
{
    char s[JAC__SHAPE_STR_MAX];
    *mask = 0;
    if (axes == NULL) {
        *mask = a->ndim ? (1u << a->ndim) - 1u : 0u;
        return true;
    }
    if (naxes < 0) {
        jac__error(ctx, JAC_ERR_VALUE, "%s: naxes %d is negative", op, naxes);
        return false;
    }
    for (int i = 0; i < naxes; i++) {
        int ax = jac__axis(axes[i], a->ndim);
        if (ax < 0 || (*mask & (1u << ax))) {
            jac__error(ctx, JAC_ERR_AXIS,
                       "%s: axis %d is out of range or repeated for shape %s",
                       op, axes[i],
                       jac__shape_str(s, sizeof s, a->ndim, a->shape));
            return false;
        }
        *mask |= 1u << ax;
    }
    return true;
}

jac_tensor *jac_sum_axes(jac_ctx *ctx, jac_tensor *a, int naxes,
                         const int *axes, bool keepdim)
{
    uint32_t mask;
    if (!jac__reduce_args(ctx, "sum", a, naxes, axes, &mask))
        return NULL;
    return sum_mask(ctx, a, mask, keepdim);
}

jac_tensor *jac_sum_axis(jac_ctx *ctx, jac_tensor *a, int axis, bool keepdim)
{
    return jac_sum_axes(ctx, a, 1, &axis, keepdim);
}

jac_tensor *jac__apply_sum_axes(jac_ctx *ctx, const jac__node *n,
                                jac_tensor *const *ins)
{
    int axes[JAC_MAX_DIMS];
    int naxes = jac__mask_axes(n->p.reduce.axes_mask, axes);
    return jac_sum_axes(ctx, ins[0], naxes, axes, n->p.reduce.keepdim);
}

/* gin[0] = g (batch ++ the output shape of a summing op on a) reshaped to
 * batch ++ kshape (a's rank, with extents of 1 where the op summed) and
 * expanded to batch ++ a's shape: the cotangent spread back over what was
 * summed. op names the op in messages. */
static jac_status spread_back(jac_ctx *ctx, const char *op,
                              const jac__node *node, jac_tensor *g,
                              const int64_t *kshape, jac_tensor **gin)
{
    const jac_tensor *a = node->in[0];
    int nb = jac__batch_ndim(g, node->out);
    jac_tensor *r = jac__reshape_batched(ctx, op, g, nb, a->ndim, kshape);
    if (r == NULL)
        return ctx->status;
    int64_t full[JAC_MAX_DIMS]; /* of r's rank */
    int nf = jac__batched_shape(g, nb, a->ndim, a->shape, full);
    gin[0] = jac_expand(ctx, r, nf, full);
    return gin[0] ? JAC_OK : ctx->status;
}

/* The cotangent of a sum is spread back over the summed axes. */
jac_status jac__vjp_sum_axes(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                             const bool *need, jac_tensor **gin)
{
    (void)need;
    const jac_tensor *a = node->in[0];
    int64_t kshape[JAC_MAX_DIMS];
    for (int i = 0; i < a->ndim; i++)
        kshape[i] = (node->p.reduce.axes_mask & (1u << i)) ? 1 : a->shape[i];
    return spread_back(ctx, "sum", node, g, kshape, gin);
}

/* sum over every axis: each element receives its batch's cotangent. */
JAC__VECTORIZED bool jac__raw_sum(const jac__node *n, int64_t batch,
                                  const double *g,
                                  const jac__onehot_rows *onehot,
                                  const bool *need, const bool *add,
                                  double *const *gin)
{
    if (jac__raw_adds(n, add))
        return false;
    (void)onehot;
    (void)need;
    const jac_tensor *x = n->in[0];
    if (n->out->numel != 1)
        return false;
    for (int64_t b = 0; b < batch; b++)
        for (int64_t i = 0; i < x->numel; i++)
            gin[0][b * x->numel + i] = g[b];
    return true;
}

/* ------------------------------------------------------------------------ */
/* sum_to (the adjoint of expand)                                           */
/* ------------------------------------------------------------------------ */

int jac__batched_shape(const jac_tensor *g, int nbatch, int ndim,
                       const int64_t *shape, int64_t *dst)
{
    if (nbatch + ndim > JAC_MAX_DIMS)
        return -1;
    /* shape may alias dst: move it first. */
    memmove(dst + nbatch, shape, (size_t)ndim * sizeof(int64_t));
    memcpy(dst, g->shape, (size_t)nbatch * sizeof(int64_t));
    return nbatch + ndim;
}

/* Whether shape (rank ndim) broadcasts to exactly a's shape past nlead. */
static bool broadcasts_to(const jac_tensor *a, int nlead, int ndim,
                          const int64_t *shape)
{
    int rest = a->ndim - nlead;
    if (ndim > rest)
        return false;
    for (int k = 0; k < ndim; k++) {
        int64_t want = a->shape[a->ndim - ndim + k];
        if (shape[k] != want && shape[k] != 1)
            return false;
    }
    return true;
}

jac_tensor *jac__sum_to(jac_ctx *ctx, jac_tensor *a, int nlead, int ndim,
                        const int64_t *shape)
{
    char s1[JAC__SHAPE_STR_MAX], s2[JAC__SHAPE_STR_MAX];
    if (ndim < 0 || nlead < 0 || nlead + ndim > JAC_MAX_DIMS ||
        !broadcasts_to(a, nlead, ndim, shape)) {
        jac__error(ctx, JAC_ERR_SHAPE,
                   "sum_to_shape: shape %s does not broadcast to %s",
                   jac__shape_str(s1, sizeof s1, ndim < 0 ? 0 : ndim, shape),
                   jac__shape_str(s2, sizeof s2, a->ndim, a->shape));
        return NULL;
    }
    int64_t oshape[JAC_MAX_DIMS];
    memcpy(oshape, a->shape, (size_t)nlead * sizeof(int64_t));
    if (ndim > 0)
        memcpy(oshape + nlead, shape, (size_t)ndim * sizeof(int64_t));
    uint32_t mask = 0;
    int drop = a->ndim - nlead - ndim;
    for (int i = nlead; i < a->ndim; i++) {
        int k = i - nlead - drop;
        if (k < 0 || (shape[k] == 1 && a->shape[i] != 1))
            mask |= 1u << i;
    }
    jac_tensor *y =
        jac__tensor_alloc(ctx, "sum_to_shape", nlead + ndim, oshape);
    if (y == NULL)
        return NULL;
    if (mask == 0)
        memcpy(y->data, a->data, (size_t)a->numel * sizeof(double));
    else
        reduce_kernel(a, mask, y->data, y->numel);
    JAC__PARAMS(p);
    p.sum_to.nlead = nlead;
    return jac__record_result(ctx, JAC__OP_SUM_TO, y, 1, &a, &p);
}

jac_tensor *jac_sum_to_shape(jac_ctx *ctx, jac_tensor *a, int ndim,
                             const int64_t *shape)
{
    if (ctx == NULL || !jac__check_arg(ctx, "sum_to_shape", a))
        return NULL;
    if (ndim > 0 && shape == NULL) {
        jac__error(ctx, JAC_ERR_NULL_ARG, "sum_to_shape: shape is NULL");
        return NULL;
    }
    return jac__sum_to(ctx, a, 0, ndim, shape);
}

/* The kept shape is the output's past its nlead leading axes. */
jac_tensor *jac__apply_sum_to(jac_ctx *ctx, const jac__node *n,
                              jac_tensor *const *ins)
{
    if (!jac__apply_args(ctx, n, ins))
        return NULL;
    int nlead = n->p.sum_to.nlead;
    return jac__sum_to(ctx, ins[0], nlead, n->out->ndim - nlead,
                       n->out->shape + nlead);
}

jac_tensor *jac__sum_to_batched(jac_ctx *ctx, jac_tensor *g, int nbatch,
                                int ndim, const int64_t *shape)
{
    if (g->ndim - nbatch == ndim &&
        memcmp(g->shape + nbatch, shape, (size_t)ndim * sizeof(int64_t)) == 0)
        return g;
    return jac__sum_to(ctx, g, nbatch, ndim, shape);
}

/* The cotangent of sum_to is spread back: the kept shape padded with ones
 * to the input's rank (so that it aligns past the batch axes). */
jac_status jac__vjp_sum_to(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                           const bool *need, jac_tensor **gin)
{
    (void)need;
    const jac_tensor *a = node->in[0];
    const jac_tensor *y = node->out;
    int nlead = node->p.sum_to.nlead;
    int64_t padded[JAC_MAX_DIMS];
    int rest_in = a->ndim - nlead, rest_out = y->ndim - nlead;
    for (int i = 0; i < nlead; i++)
        padded[i] = a->shape[i];
    for (int i = 0; i < rest_in - rest_out; i++)
        padded[nlead + i] = 1;
    memcpy(padded + nlead + rest_in - rest_out, y->shape + nlead,
           (size_t)rest_out * sizeof(int64_t));
    return spread_back(ctx, "sum_to_shape", node, g, padded, gin);
}

/* sum_to a suffix: the cotangent repeated over the summed leading axes. */
JAC__VECTORIZED bool jac__raw_sum_to(const jac__node *n, int64_t batch,
                                     const double *g,
                                     const jac__onehot_rows *onehot,
                                     const bool *need, const bool *add,
                                     double *const *gin)
{
    if (jac__raw_adds(n, add))
        return false;
    (void)onehot;
    (void)need;
    const jac_tensor *x = n->in[0], *y = n->out;
    if (n->p.sum_to.nlead != 0 || !jac__is_suffix(y, x))
        return false;
    int64_t m = y->numel, k = x->numel;
    for (int64_t b = 0; b < batch; b++)
        for (int64_t i = 0; i < k; i++)
            gin[0][b * k + i] = g[b * m + (m ? i % m : 0)];
    return true;
}

/* ------------------------------------------------------------------------ */
/* expand                                                                   */
/* ------------------------------------------------------------------------ */

jac_tensor *jac_expand(jac_ctx *ctx, jac_tensor *a, int ndim,
                       const int64_t *shape)
{
    if (ctx == NULL || !jac__check_arg(ctx, "expand", a))
        return NULL;
    char s1[JAC__SHAPE_STR_MAX], s2[JAC__SHAPE_STR_MAX];
    int64_t b[JAC_MAX_DIMS];
    if (ndim < 0 || ndim > JAC_MAX_DIMS || (ndim > 0 && shape == NULL)) {
        jac__error(ctx,
                   ndim < 0 || ndim > JAC_MAX_DIMS ? JAC_ERR_RANK
                                                   : JAC_ERR_NULL_ARG,
                   "expand: invalid target shape (rank %d)", ndim);
        return NULL;
    }
    int nb = jac__broadcast_shape(a->ndim, a->shape, ndim, shape, b);
    if (nb != ndim || memcmp(b, shape, (size_t)ndim * sizeof(int64_t)) != 0) {
        jac__error(ctx, JAC_ERR_SHAPE, "expand: shape %s cannot expand to %s",
                   jac__shape_str(s1, sizeof s1, a->ndim, a->shape),
                   jac__shape_str(s2, sizeof s2, ndim, shape));
        return NULL;
    }
    jac_tensor *y = jac__tensor_alloc(ctx, "expand", ndim, shape);
    if (y == NULL)
        return NULL;
    jac__broadcast_copy(a, y);
    return jac__record_result(ctx, JAC__OP_EXPAND, y, 1, &a, NULL);
}

/* The target shape is the output's. */
jac_tensor *jac__apply_expand(jac_ctx *ctx, const jac__node *n,
                              jac_tensor *const *ins)
{
    return jac_expand(ctx, ins[0], n->out->ndim, n->out->shape);
}

jac_status jac__vjp_expand(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                           const bool *need, jac_tensor **gin)
{
    (void)need;
    const jac_tensor *a = node->in[0];
    gin[0] = jac__sum_to_batched(ctx, g, jac__batch_ndim(g, node->out), a->ndim,
                                 a->shape);
    return gin[0] ? JAC_OK : ctx->status;
}

/* dst[b, j] = sum over r of src[b, r * m + j]: a cotangent of n elements per
 * batch summed down to a suffix of m elements. */
JAC__VECTORIZED static void reduce_suffix(int64_t batch, int64_t n, int64_t m,
                                          const double *src, double *dst)
{
    for (int64_t b = 0; b < batch; b++) {
        double *d = dst + b * m;
        const double *s = src + b * n;
        for (int64_t j = 0; j < m; j++)
            d[j] = 0.0;
        for (int64_t r = 0; m > 0 && r < n / m; r++)
            for (int64_t j = 0; j < m; j++)
                d[j] += s[r * m + j];
    }
}

/* expand of a suffix: the cotangent summed over the repeated leading axes. */
bool jac__raw_expand(const jac__node *n, int64_t batch, const double *g,
                     const jac__onehot_rows *onehot, const bool *need,
                     const bool *add, double *const *gin)
{
    (void)onehot;
    (void)need;
    const jac_tensor *x = n->in[0], *y = n->out;
    if (jac__raw_adds(n, add) || !jac__is_suffix(x, y))
        return false;
    reduce_suffix(batch, y->numel, x->numel, g, gin[0]);
    return true;
}

/* ------------------------------------------------------------------------ */
/* cumsum                                                                   */
/* ------------------------------------------------------------------------ */

/* Running sums of x along the middle axis (extent n) of an (outer, n,
 * inner) layout, from the front (dir 1) or from the end (dir -1). */
JAC__VECTORIZED static void running_sums(int64_t outer, int64_t n,
                                         int64_t inner, int dir,
                                         const double *x, double *y)
{
    for (int64_t o = 0; o < outer; o++) {
        const double *xo = x + o * n * inner;
        double *yo = y + o * n * inner;
        for (int64_t k = 0; k < n; k++) {
            int64_t i = dir > 0 ? k : n - 1 - k;
            const double *xi = xo + i * inner;
            double *yi = yo + i * inner;
            if (k == 0) {
                memcpy(yi, xi, (size_t)inner * sizeof(double));
                continue;
            }
            const double *prev = yi - dir * inner;
            for (int64_t j = 0; j < inner; j++)
                yi[j] = prev[j] + xi[j];
        }
    }
}

/* The (outer, n, inner) layout of t around axis, outer times batch. */
static void around_axis(const jac_tensor *t, int axis, int64_t batch,
                        int64_t *outer, int64_t *n, int64_t *inner)
{
    *outer = batch;
    *inner = 1;
    *n = t->ndim > 0 ? t->shape[axis] : 1;
    for (int i = 0; i < axis; i++)
        *outer *= t->shape[i];
    for (int i = axis + 1; i < t->ndim; i++)
        *inner *= t->shape[i];
}

/* cumsum along axis, or from the end for dir -1: its own adjoint, which is
 * how the rule differentiates it to any order. */
static jac_tensor *cumsum_dir(jac_ctx *ctx, jac_tensor *a, int axis, int dir)
{
    if (ctx == NULL || !jac__check_arg(ctx, "cumsum", a))
        return NULL;
    int ax = a->ndim == 0 && (axis == 0 || axis == -1)
                 ? 0
                 : jac__axis(axis, a->ndim);
    if (ax < 0) {
        char s[JAC__SHAPE_STR_MAX];
        jac__error(ctx, JAC_ERR_AXIS,
                   "cumsum: axis %d is out of range for "
                   "shape %s",
                   axis, jac__shape_str(s, sizeof s, a->ndim, a->shape));
        return NULL;
    }
    jac_tensor *y = jac__tensor_like(ctx, "cumsum", a);
    if (y == NULL)
        return NULL;
    int64_t outer, n, inner;
    around_axis(a, ax, 1, &outer, &n, &inner);
    running_sums(outer, n, inner, dir, a->data, y->data);
    bool failed;
    jac__node *node = jac__record(ctx, JAC__OP_CUMSUM, y, 1, &a, &failed);
    if (failed)
        return NULL;
    if (node) {
        node->p.scan.axes_mask = 1u << ax;
        node->p.scan.dir = dir;
    }
    return y;
}

jac_tensor *jac_cumsum(jac_ctx *ctx, jac_tensor *a, int axis)
{
    return cumsum_dir(ctx, a, axis, 1);
}

static int cumsum_axis(const jac__node *node)
{
    int axis = 0;
    while ((node->p.scan.axes_mask >> axis) > 1u)
        axis++;
    return axis;
}

/* The direction too: a rule's running sum from the end is replayed as
 * one. */
jac_tensor *jac__apply_cumsum(jac_ctx *ctx, const jac__node *n,
                              jac_tensor *const *ins)
{
    return cumsum_dir(ctx, ins[0], cumsum_axis(n), n->p.scan.dir);
}

/* The adjoint of a running sum is the running sum from the other end,
 * along the same axis of the cotangent (behind its batch axes). */
jac_status jac__vjp_cumsum(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                           const bool *need, jac_tensor **gin)
{
    (void)need;
    if (node->in[0]->ndim == 0) {
        gin[0] = g; /* one element: the identity */
        return JAC_OK;
    }
    int axis = cumsum_axis(node) + jac__batch_ndim(g, node->out);
    gin[0] = cumsum_dir(ctx, g, axis, -node->p.scan.dir);
    return gin[0] ? JAC_OK : ctx->status;
}

bool jac__raw_cumsum(const jac__node *n, int64_t batch, const double *g,
                     const jac__onehot_rows *onehot, const bool *need,
                     const bool *add, double *const *gin)
{
    (void)onehot;
    (void)need;
    if (jac__raw_adds(n, add))
        return false;
    int64_t outer, len, inner;
    around_axis(n->in[0], cumsum_axis(n), batch, &outer, &len, &inner);
    running_sums(outer, len, inner, -n->p.scan.dir, g, gin[0]);
    return true;
}
