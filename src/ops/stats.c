/*
 * Statistical reductions: mean, prod, max and min, logsumexp, var and std,
 * vector norms, softmax and log_softmax.
 *
 * Most are composites of differentiable ops (mean = sum / N, var from the
 * centred values, logsumexp and softmax shifted by a constant maximum), so
 * they are differentiable to any order with no rule of their own. Four need
 * a dedicated op:
 *
 * - prod, whose gradient is the product of the other elements. Dividing the
 *   product by the element fails at zeros, so the rule builds "the product
 *   of the others" from exclusive prefix and suffix products, made of two
 *   internal ops (group_shift and group_scan, below) that involve no
 *   division and whose own rules are written with the same two ops. First,
 *   second and higher derivatives are therefore exact with any number of
 *   zeros.
 * - max and min, which pass the cotangent to the extreme elements, ties
 *   sharing it evenly (a constant weight mask).
 * - the 2-norm, whose gradient a / |a| is taken as 0 where |a| = 0.
 *
 * Reductions work on "groups": the elements that reduce to one output
 * element, visited in row-major order of the reduced axes.
 *
 * SPDX-License-Identifier: MIT
 */
#include "ops/ops.h"

#include <math.h>

/* ------------------------------------------------------------------------ */
/* Groups of a reduction                                                    */
/* ------------------------------------------------------------------------ */

/* The elements of group o are at outer[o] + inner[j], j = 0 .. n - 1, and
 * the groups come in the row-major order of the kept axes, which is the
 * order of the reduced output. */
typedef struct groups {
    int64_t n; /* elements per group: the product of the reduced extents */
    int64_t m; /* number of groups: the product of the kept extents */
    int64_t *inner;
    int64_t *outer;
    size_t bytes;
} groups;

/* Writes the offsets of every index over the axes selected by sel, in
 * row-major order of those axes. */
static void fill_offsets(int ndim, const int64_t *shape, const int64_t *stride,
                         uint32_t sel, int64_t *dst)
{
    int64_t sshape[JAC_MAX_DIMS], sstride[JAC_MAX_DIMS];
    int k = 0;
    for (int i = 0; i < ndim; i++) {
        if (sel & (1u << i)) {
            sshape[k] = shape[i];
            sstride[k++] = stride[i];
        }
    }
    const int64_t *strides[1] = {sstride};
    jac__iter it;
    int64_t rows = jac__iter_init(&it, k, sshape, 1, strides);
    for (int64_t r = 0; r < rows; r++, jac__iter_next(&it)) {
        for (int64_t i = 0; i < it.inner; i++)
            dst[i] = it.off[0] + i * it.step[0];
        dst += it.inner;
    }
}

static jac_status groups_make(jac_ctx *ctx, const char *op, int ndim,
                              const int64_t *shape, uint32_t mask, groups *gr)
{
    int64_t stride[JAC_MAX_DIMS];
    jac__contiguous_strides(ndim, shape, 1, stride);
    gr->n = 1;
    gr->m = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        if (mask & (1u << i))
            gr->n *= shape[i];
        else
            gr->m *= shape[i];
    }
    gr->inner = gr->outer = NULL;
    gr->bytes = 0;
    if (gr->n == 0 || gr->m == 0)
        return JAC_OK;
    gr->bytes = (size_t)(gr->n + gr->m) * sizeof(int64_t);
    int64_t *buf = jac__alloc(ctx, gr->bytes);
    if (buf == NULL) {
        gr->bytes = 0;
        return jac__error(ctx, JAC_ERR_NO_MEMORY, "%s: out of memory", op);
    }
    gr->inner = buf;
    gr->outer = buf + gr->n;
    fill_offsets(ndim, shape, stride, mask, gr->inner);
    fill_offsets(ndim, shape, stride, ~mask, gr->outer);
    return JAC_OK;
}

static void groups_free(jac_ctx *ctx, groups *gr)
{
    if (gr->bytes)
        jac__free(ctx, gr->inner, gr->bytes);
    gr->inner = gr->outer = NULL;
    gr->bytes = 0;
}

/* ------------------------------------------------------------------------ */
/* Sparsity rules of reductions, softmax and scans                          */
/* ------------------------------------------------------------------------ */

enum { GROUP_REDUCE, GROUP_WHOLE, GROUP_SCAN };

/* Links of node n over the groups of its input 0's shape under mask: an
 * output element per group reads the group (a reduction); an element
 * reads its whole group (softmax); or reads its group up to itself in
 * the direction dir (a scan, in every input of the input's shape). */
static jac_status group_links(jac_ctx *ctx, const jac__node *n, jac__links *L,
                              uint32_t mask, int kind, int dir)
{
    const char *op = jac__ops[n->op].name;
    const jac_tensor *a = n->in[0];
    groups gr;
    if (groups_make(ctx, op, a->ndim, a->shape, mask, &gr) != JAC_OK)
        return ctx->status;
    /* Where each element sits: its group and its place in it. */
    size_t bytes = kind == GROUP_REDUCE ? 0 : 2 * (size_t)a->numel * 8;
    int64_t *where = bytes ? jac__alloc(ctx, bytes) : NULL;
    jac_status st = JAC_OK;
    if (bytes && where == NULL)
        st = jac__error(ctx, JAC_ERR_NO_MEMORY, "%s: out of memory", op);
    for (int64_t g = 0; g < gr.m && where != NULL && gr.bytes; g++)
        for (int64_t j = 0; j < gr.n; j++) {
            where[2 * (gr.outer[g] + gr.inner[j])] = g;
            where[2 * (gr.outer[g] + gr.inner[j]) + 1] = j;
        }
    int64_t nout = kind == GROUP_REDUCE ? gr.m : a->numel;
    int nin = kind == GROUP_SCAN ? n->nin : 1;
    for (int64_t o = 0; o < nout && st == JAC_OK; o++) {
        int64_t g = kind == GROUP_REDUCE ? o : where[2 * o];
        int64_t lo = 0, hi = gr.n;
        if (kind == GROUP_SCAN) {
            int64_t at = where[2 * o + 1];
            lo = dir > 0 ? 0 : at;
            hi = dir > 0 ? at + 1 : gr.n;
        }
        for (int j = 0; j < nin && st == JAC_OK; j++)
            for (int64_t k = lo; k < hi; k++)
                if (!jac__links_add(L, j, gr.outer[g] + gr.inner[k])) {
                    st = jac__error(ctx, JAC_ERR_NO_MEMORY, "%s: out of memory",
                                    op);
                    break;
                }
        jac__links_row(L);
    }
    /* An empty group still has its output element (of no reads). */
    for (int64_t o = L->row; o < n->out->numel && st == JAC_OK; o++)
        jac__links_row(L);
    if (bytes)
        jac__free(ctx, where, bytes);
    groups_free(ctx, &gr);
    return st;
}

/* Reductions over the axes of their mask: sum, prod, max, min, norm. */
jac_status jac__deps_reduce(jac_ctx *ctx, const jac__node *n, jac__links *L)
{
    return group_links(ctx, n, L, n->p.reduce.axes_mask, GROUP_REDUCE, 0);
}

/* sum_to_shape: the axes past the kept leading ones that the output lacks
 * or holds with extent 1 are summed. */
jac_status jac__deps_sum_to(jac_ctx *ctx, const jac__node *n, jac__links *L)
{
    const jac_tensor *a = n->in[0], *y = n->out;
    int nlead = n->p.sum_to.nlead, shift = a->ndim - y->ndim;
    uint32_t mask = 0;
    for (int d = nlead; d < a->ndim; d++)
        if (d - shift < nlead || y->shape[d - shift] == 1)
            mask |= 1u << d;
    return group_links(ctx, n, L, mask, GROUP_REDUCE, 0);
}

/* softmax and log_softmax: each element reads its whole group. */
jac_status jac__deps_groups(jac_ctx *ctx, const jac__node *n, jac__links *L)
{
    return group_links(ctx, n, L, n->p.reduce.axes_mask, GROUP_WHOLE, 0);
}

/* Scans (cumsum, group_scan): each element reads its group up to itself. */
jac_status jac__deps_scan(jac_ctx *ctx, const jac__node *n, jac__links *L)
{
    return group_links(ctx, n, L, n->p.scan.axes_mask, GROUP_SCAN,
                       n->p.scan.dir);
}

/* The product of the reduced extents (1 when no axis is reduced). */
static int64_t group_size(const jac_tensor *a, uint32_t mask)
{
    int64_t n = 1;
    for (int i = 0; i < a->ndim; i++)
        if (mask & (1u << i))
            n *= a->shape[i];
    return n;
}

/* The shape of a reduced over mask: reduced axes dropped, or kept as 1. */
static int reduced_shape(const jac_tensor *a, uint32_t mask, bool keepdim,
                         int64_t *shape)
{
    int nd = 0;
    for (int i = 0; i < a->ndim; i++) {
        if (!(mask & (1u << i)))
            shape[nd++] = a->shape[i];
        else if (keepdim)
            shape[nd++] = 1;
    }
    return nd;
}

/* One value per group, written to out[o] for group o (gr->n > 0). */
typedef void group_fn(const jac_tensor *a, const groups *gr, double *out);

/* a reduced over mask (reduced axes dropped, or kept as 1 with keepdim): a
 * new tensor of kernel's value for every group, or of empty where the
 * groups have no elements. op names the caller in messages. */
static jac_tensor *group_reduce(jac_ctx *ctx, const char *op,
                                const jac_tensor *a, uint32_t mask,
                                bool keepdim, group_fn *kernel, double empty)
{
    int64_t shape[JAC_MAX_DIMS];
    int nd = reduced_shape(a, mask, keepdim, shape);
    jac_tensor *y = jac__tensor_alloc(ctx, op, nd, shape);
    if (y == NULL)
        return NULL;
    groups gr;
    if (groups_make(ctx, op, a->ndim, a->shape, mask, &gr) != JAC_OK)
        return NULL;
    if (gr.bytes)
        kernel(a, &gr, y->data);
    else
        for (int64_t o = 0; o < y->numel; o++)
            y->data[o] = empty;
    groups_free(ctx, &gr);
    return y;
}

/* group_reduce recorded as the reduction kind over mask. */
static jac_tensor *reduce_op(jac_ctx *ctx, const char *op, jac__op kind,
                             jac_tensor *a, uint32_t mask, bool keepdim,
                             group_fn *kernel, double empty)
{
    jac_tensor *y = group_reduce(ctx, op, a, mask, keepdim, kernel, empty);
    if (y == NULL)
        return NULL;
    JAC__PARAMS(p);
    p.reduce.axes_mask = mask;
    p.reduce.keepdim = keepdim;
    return jac__record_result(ctx, kind, y, 1, &a, &p);
}

/* ------------------------------------------------------------------------ */
/* Helpers of the composites and rules                                      */
/* ------------------------------------------------------------------------ */

/* jac_sum_axes over the axes of mask (a may be NULL from a failed op). */
static jac_tensor *sum_mask(jac_ctx *ctx, jac_tensor *a, uint32_t mask,
                            bool keepdim)
{
    if (a == NULL)
        return NULL;
    int axes[JAC_MAX_DIMS], n = 0;
    for (int i = 0; i < a->ndim; i++)
        if (mask & (1u << i))
            axes[n++] = i;
    return jac_sum_axes(ctx, a, n, axes, keepdim);
}

/* g (batch ++ reduced shape) reshaped to batch ++ the keep-dims shape, so
 * that it broadcasts against the input of the reduction. */
static jac_tensor *keepdim_cotangent(jac_ctx *ctx, const jac__node *node,
                                     jac_tensor *g)
{
    const jac_tensor *a = node->in[0];
    int64_t kshape[JAC_MAX_DIMS];
    reduced_shape(a, node->p.reduce.axes_mask, true, kshape);
    return jac__reshape_batched(ctx, jac__ops[node->op].name, g,
                                jac__batch_ndim(g, node->out), a->ndim, kshape);
}

/* ------------------------------------------------------------------------ */
/* group_shift and group_scan: the division-free pieces of prod's rule      */
/*                                                                          */
/* Within each group, with j the position in the group:                     */
/*   group_shift(x, dir)_j   = x_{j - dir}, 0 past the ends;                */
/*   group_scan(a, b, dir)_j = b_j + a_j * y_{j - dir}, where the first     */
/*                             element of the scan is b alone.              */
/* Their adjoints are the same ops run the other way:                       */
/*   shift:  gx = group_shift(g, -dir);                                     */
/*   scan:   z = group_scan(group_shift(a, -dir), g, -dir), gb = z,         */
/*           ga = z * group_shift(y, dir).                                  */
/* Batch axes in front of a cotangent are kept by shifting the mask.        */
/* ------------------------------------------------------------------------ */

static jac_tensor *group_shift(jac_ctx *ctx, jac_tensor *x, uint32_t mask,
                               int dir)
{
    if (!jac__check_arg(ctx, "group_shift", x))
        return NULL;
    jac_tensor *y = jac__tensor_alloc(ctx, "group_shift", x->ndim, x->shape);
    if (y == NULL)
        return NULL;
    groups gr;
    if (groups_make(ctx, "group_shift", x->ndim, x->shape, mask, &gr) != JAC_OK)
        return NULL;
    if (gr.bytes) {
        for (int64_t o = 0; o < gr.m; o++) {
            const double *src = x->data + gr.outer[o];
            double *dst = y->data + gr.outer[o];
            for (int64_t j = 0; j < gr.n; j++) {
                int64_t k = j - dir;
                dst[gr.inner[j]] =
                    (k >= 0 && k < gr.n) ? src[gr.inner[k]] : 0.0;
            }
        }
    }
    groups_free(ctx, &gr);
    JAC__PARAMS(p);
    p.scan.axes_mask = mask;
    p.scan.dir = dir;
    return jac__record_result(ctx, JAC__OP_GROUP_SHIFT, y, 1, &x, &p);
}

static jac_tensor *group_scan(jac_ctx *ctx, jac_tensor *a, jac_tensor *b,
                              uint32_t mask, int dir)
{
    jac_tensor *ins[2] = {a, b};
    if (!jac__check_args(ctx, "group_scan", 2, ins))
        return NULL;
    if (a->ndim != b->ndim ||
        memcmp(a->shape, b->shape, (size_t)a->ndim * sizeof(int64_t)) != 0) {
        char s1[JAC__SHAPE_STR_MAX], s2[JAC__SHAPE_STR_MAX];
        jac__error(ctx, JAC_ERR_SHAPE, "group_scan: shapes %s and %s differ",
                   jac__shape_str(s1, sizeof s1, a->ndim, a->shape),
                   jac__shape_str(s2, sizeof s2, b->ndim, b->shape));
        return NULL;
    }
    jac_tensor *y = jac__tensor_alloc(ctx, "group_scan", b->ndim, b->shape);
    if (y == NULL)
        return NULL;
    groups gr;
    if (groups_make(ctx, "group_scan", b->ndim, b->shape, mask, &gr) != JAC_OK)
        return NULL;
    if (gr.bytes) {
        for (int64_t o = 0; o < gr.m; o++) {
            const double *ca = a->data + gr.outer[o];
            const double *cb = b->data + gr.outer[o];
            double *dst = y->data + gr.outer[o];
            double prev = 0.0;
            for (int64_t step = 0; step < gr.n; step++) {
                int64_t off = gr.inner[dir > 0 ? step : gr.n - 1 - step];
                /* The first element takes b alone: no 0 * inf there. */
                prev = step == 0 ? cb[off] : cb[off] + ca[off] * prev;
                dst[off] = prev;
            }
        }
    }
    groups_free(ctx, &gr);
    JAC__PARAMS(p);
    p.scan.axes_mask = mask;
    p.scan.dir = dir;
    return jac__record_result(ctx, JAC__OP_GROUP_SCAN, y, 2, ins, &p);
}

jac_tensor *jac__apply_group_shift(jac_ctx *ctx, const jac__node *n,
                                   jac_tensor *const *ins)
{
    if (!jac__apply_args(ctx, n, ins))
        return NULL;
    return group_shift(ctx, ins[0], n->p.scan.axes_mask, n->p.scan.dir);
}

jac_tensor *jac__apply_group_scan(jac_ctx *ctx, const jac__node *n,
                                  jac_tensor *const *ins)
{
    if (!jac__apply_args(ctx, n, ins))
        return NULL;
    return group_scan(ctx, ins[0], ins[1], n->p.scan.axes_mask, n->p.scan.dir);
}

jac_status jac__vjp_group_shift(jac_ctx *ctx, const jac__node *node,
                                jac_tensor *g, const bool *need,
                                jac_tensor **gin)
{
    (void)need;
    int nb = jac__batch_ndim(g, node->out);
    gin[0] =
        group_shift(ctx, g, node->p.scan.axes_mask << nb, -node->p.scan.dir);
    return gin[0] ? JAC_OK : ctx->status;
}

jac_status jac__vjp_group_scan(jac_ctx *ctx, const jac__node *node,
                               jac_tensor *g, const bool *need,
                               jac_tensor **gin)
{
    int nb = jac__batch_ndim(g, node->out);
    uint32_t mask = node->p.scan.axes_mask;
    int dir = node->p.scan.dir;
    jac_tensor *coef = group_shift(ctx, node->in[0], mask, -dir);
    if (coef != NULL && nb > 0)
        coef = jac_expand(ctx, coef, g->ndim, g->shape);
    jac_tensor *z = group_scan(ctx, coef, g, mask << nb, -dir);
    if (z == NULL)
        return ctx->status;
    if (need[1])
        gin[1] = z;
    if (need[0]) {
        gin[0] = jac_mul(ctx, z, group_shift(ctx, node->out, mask, dir));
        if (gin[0] == NULL)
            return ctx->status;
    }
    return JAC_OK;
}

/* A constant with 1 at the first (end = 0) or last (end = 1) position of
 * every group and 0 elsewhere. */
static jac_tensor *group_end_marker(jac_ctx *ctx, const jac_tensor *x,
                                    uint32_t mask, int end)
{
    jac_tensor *e = jac_zeros(ctx, x->ndim, x->shape);
    if (e == NULL)
        return NULL;
    groups gr;
    if (groups_make(ctx, "prod", x->ndim, x->shape, mask, &gr) != JAC_OK)
        return NULL;
    if (gr.bytes) {
        int64_t j = end ? gr.n - 1 : 0;
        for (int64_t o = 0; o < gr.m; o++)
            e->data[gr.outer[o] + gr.inner[j]] = 1.0;
    }
    groups_free(ctx, &gr);
    return e;
}

/* For every element, the product of the other elements of its group:
 * (exclusive prefix product) * (exclusive suffix product), exact with
 * zeros, differentiable to any order. */
static jac_tensor *prod_of_others(jac_ctx *ctx, jac_tensor *x, uint32_t mask)
{
    jac_tensor *first = group_end_marker(ctx, x, mask, 0);
    jac_tensor *last = group_end_marker(ctx, x, mask, 1);
    if (first == NULL || last == NULL)
        return NULL;
    jac_tensor *before =
        group_scan(ctx, group_shift(ctx, x, mask, 1), first, mask, 1);
    jac_tensor *after =
        group_scan(ctx, group_shift(ctx, x, mask, -1), last, mask, -1);
    if (before == NULL || after == NULL)
        return NULL;
    return jac_mul(ctx, before, after);
}

/* ------------------------------------------------------------------------ */
/* mean                                                                     */
/* ------------------------------------------------------------------------ */

/* sum / N; N = 0 gives 0 / 0 = NaN, as for an empty mean in NumPy. */
static jac_tensor *mean_mask(jac_ctx *ctx, jac_tensor *a, uint32_t mask,
                             bool keepdim)
{
    return jac_div_scalar(ctx, sum_mask(ctx, a, mask, keepdim),
                          (double)group_size(a, mask));
}

jac_tensor *jac_mean(jac_ctx *ctx, jac_tensor *a)
{
    return jac_mean_axes(ctx, a, 0, NULL, false);
}

jac_tensor *jac_mean_axes(jac_ctx *ctx, jac_tensor *a, int naxes,
                          const int *axes, bool keepdim)
{
    uint32_t mask;
    if (!jac__reduce_args(ctx, "mean", a, naxes, axes, &mask))
        return NULL;
    return mean_mask(ctx, a, mask, keepdim);
}

/* ------------------------------------------------------------------------ */
/* prod                                                                     */
/* ------------------------------------------------------------------------ */

static void prod_kernel(const jac_tensor *a, const groups *gr, double *out)
{
    for (int64_t o = 0; o < gr->m; o++) {
        const double *src = a->data + gr->outer[o];
        double p = 1.0;
        for (int64_t j = 0; j < gr->n; j++)
            p *= src[gr->inner[j]];
        out[o] = p;
    }
}

jac_tensor *jac_prod(jac_ctx *ctx, jac_tensor *a)
{
    return jac_prod_axes(ctx, a, 0, NULL, false);
}

jac_tensor *jac_prod_axes(jac_ctx *ctx, jac_tensor *a, int naxes,
                          const int *axes, bool keepdim)
{
    uint32_t mask;
    if (!jac__reduce_args(ctx, "prod", a, naxes, axes, &mask))
        return NULL;
    /* The product of no elements is 1. */
    return reduce_op(ctx, "prod", JAC__OP_PROD_AXES, a, mask, keepdim,
                     prod_kernel, 1.0);
}

jac_tensor *jac__apply_prod_axes(jac_ctx *ctx, const jac__node *n,
                                 jac_tensor *const *ins)
{
    int axes[JAC_MAX_DIMS];
    int naxes = jac__mask_axes(n->p.reduce.axes_mask, axes);
    return jac_prod_axes(ctx, ins[0], naxes, axes, n->p.reduce.keepdim);
}

/* d prod / d x_i = the product of the other elements (never prod / x_i). */
jac_status jac__vjp_prod_axes(jac_ctx *ctx, const jac__node *node,
                              jac_tensor *g, const bool *need, jac_tensor **gin)
{
    (void)need;
    jac_tensor *gk = keepdim_cotangent(ctx, node, g);
    jac_tensor *others =
        gk ? prod_of_others(ctx, node->in[0], node->p.reduce.axes_mask) : NULL;
    gin[0] = others ? jac_mul(ctx, gk, others) : NULL;
    return gin[0] ? JAC_OK : ctx->status;
}

/* ------------------------------------------------------------------------ */
/* max and min                                                              */
/* ------------------------------------------------------------------------ */

/* The largest (want_max) or smallest element of every group into out; a
 * NaN in a group makes its result NaN. Needs gr.n > 0. */
static void extreme_kernel(const jac_tensor *a, const groups *gr, bool want_max,
                           double *out)
{
    for (int64_t o = 0; o < gr->m; o++) {
        const double *src = a->data + gr->outer[o];
        double v = src[gr->inner[0]];
        for (int64_t j = 1; j < gr->n && !isnan(v); j++) {
            double x = src[gr->inner[j]];
            if (isnan(x) || (want_max ? x > v : x < v))
                v = x;
        }
        out[o] = v;
    }
}

static void max_kernel(const jac_tensor *a, const groups *gr, double *out)
{
    extreme_kernel(a, gr, true, out);
}

static void min_kernel(const jac_tensor *a, const groups *gr, double *out)
{
    extreme_kernel(a, gr, false, out);
}

static jac_tensor *extreme_mask(jac_ctx *ctx, const char *op, jac__op kind,
                                jac_tensor *a, uint32_t mask, bool keepdim)
{
    if (a == NULL)
        return NULL;
    if (group_size(a, mask) == 0) {
        char s[JAC__SHAPE_STR_MAX];
        jac__error(ctx, JAC_ERR_VALUE,
                   "%s: cannot reduce an empty set of elements (shape %s)", op,
                   jac__shape_str(s, sizeof s, a->ndim, a->shape));
        return NULL;
    }
    return reduce_op(ctx, op, kind, a, mask, keepdim,
                     kind == JAC__OP_MAX_AXES ? max_kernel : min_kernel, 0.0);
}

/* max or min (kind) over axes. */
static jac_tensor *extreme_axes(jac_ctx *ctx, jac__op kind, jac_tensor *a,
                                int naxes, const int *axes, bool keepdim)
{
    const char *op = jac__ops[kind].name;
    uint32_t mask;
    if (!jac__reduce_args(ctx, op, a, naxes, axes, &mask))
        return NULL;
    return extreme_mask(ctx, op, kind, a, mask, keepdim);
}

jac_tensor *jac_max(jac_ctx *ctx, jac_tensor *a)
{
    return jac_max_axes(ctx, a, 0, NULL, false);
}

jac_tensor *jac_max_axes(jac_ctx *ctx, jac_tensor *a, int naxes,
                         const int *axes, bool keepdim)
{
    return extreme_axes(ctx, JAC__OP_MAX_AXES, a, naxes, axes, keepdim);
}

jac_tensor *jac_min(jac_ctx *ctx, jac_tensor *a)
{
    return jac_min_axes(ctx, a, 0, NULL, false);
}

jac_tensor *jac_min_axes(jac_ctx *ctx, jac_tensor *a, int naxes,
                         const int *axes, bool keepdim)
{
    return extreme_axes(ctx, JAC__OP_MIN_AXES, a, naxes, axes, keepdim);
}

/* jac_norm's infinity norm records max too; the values are the same. */
jac_tensor *jac__apply_max_axes(jac_ctx *ctx, const jac__node *n,
                                jac_tensor *const *ins)
{
    int axes[JAC_MAX_DIMS];
    int naxes = jac__mask_axes(n->p.reduce.axes_mask, axes);
    return jac_max_axes(ctx, ins[0], naxes, axes, n->p.reduce.keepdim);
}

jac_tensor *jac__apply_min_axes(jac_ctx *ctx, const jac__node *n,
                                jac_tensor *const *ins)
{
    int axes[JAC_MAX_DIMS];
    int naxes = jac__mask_axes(n->p.reduce.axes_mask, axes);
    return jac_min_axes(ctx, ins[0], naxes, axes, n->p.reduce.keepdim);
}

/* Ties share the cotangent: each element equal to its group's result gets
 * 1 / (number of such elements), the others 0. The weights are a constant,
 * which makes the second derivative 0, as it is away from ties (at a tie
 * the derivative does not exist and this split is the convention). */
/* The same weights recorded (create-graph), of comparisons: a tie is an
 * element equal to the result, or NaN where the result is. */
static jac_tensor *tie_weights(jac_ctx *ctx, const jac__node *node)
{
    jac_tensor *x = node->in[0];
    int64_t kshape[JAC_MAX_DIMS];
    int nk = reduced_shape(x, node->p.reduce.axes_mask, true, kshape);
    jac_tensor *yk = jac_reshape(ctx, node->out, nk, kshape);
    jac_tensor *nan = jac_mul(ctx, jac_ne(ctx, x, x), jac_ne(ctx, yk, yk));
    jac_tensor *tie = jac_add(ctx, jac_eq(ctx, x, yk), nan);
    return jac_div(ctx, tie,
                   sum_mask(ctx, tie, node->p.reduce.axes_mask, true));
}

static jac_status extreme_vjp(jac_ctx *ctx, const jac__node *node,
                              jac_tensor *g, jac_tensor **gin)
{
    const jac_tensor *x = node->in[0];
    const jac_tensor *y = node->out;
    jac_tensor *gk = keepdim_cotangent(ctx, node, g);
    if (gk == NULL)
        return ctx->status;
    if (jac__should_record(ctx, 1, node->in)) {
        gin[0] = jac_mul(ctx, gk, tie_weights(ctx, node));
        return gin[0] ? JAC_OK : ctx->status;
    }
    const char *op = jac__ops[node->op].name;
    jac_tensor *w = jac__tensor_alloc(ctx, op, x->ndim, x->shape);
    if (w == NULL)
        return ctx->status;
    groups gr;
    if (groups_make(ctx, op, x->ndim, x->shape, node->p.reduce.axes_mask,
                    &gr) != JAC_OK)
        return ctx->status;
    for (int64_t o = 0; o < gr.m && gr.bytes; o++) {
        double v = y->data[o];
        const double *src = x->data + gr.outer[o];
        double *dst = w->data + gr.outer[o];
        int64_t ties = 0;
        for (int64_t j = 0; j < gr.n; j++) {
            double e = src[gr.inner[j]];
            bool tie = e == v || (isnan(e) && isnan(v));
            dst[gr.inner[j]] = tie ? 1.0 : 0.0;
            ties += tie;
        }
        for (int64_t j = 0; j < gr.n; j++)
            dst[gr.inner[j]] /= (double)ties;
    }
    groups_free(ctx, &gr);
    gin[0] = jac_mul(ctx, gk, w);
    return gin[0] ? JAC_OK : ctx->status;
}

jac_status jac__vjp_max_axes(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                             const bool *need, jac_tensor **gin)
{
    (void)need;
    return extreme_vjp(ctx, node, g, gin);
}

jac_status jac__vjp_min_axes(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                             const bool *need, jac_tensor **gin)
{
    (void)need;
    return extreme_vjp(ctx, node, g, gin);
}

/* The maximum of every group, of the keep-dims shape, for the stable shift
 * of logsumexp and softmax: the shift cancels in the result, so it is an
 * op whose derivative is zero. It is recorded all the same (when a
 * requires gradients), so that a recorded function computes the shift
 * again at its new inputs rather than keeping the recorded point's. With
 * finite_only, an infinite maximum is replaced by 0, so that all -inf
 * gives log(0) = -inf and a +inf gives +inf instead of inf - inf = NaN (as
 * PyTorch's logsumexp). An empty group gets 0. */
static jac_tensor *max_shift(jac_ctx *ctx, const char *op, jac_tensor *a,
                             uint32_t mask, bool finite_only)
{
    jac_tensor *m = group_reduce(ctx, op, a, mask, true, max_kernel, 0.0);
    if (m == NULL)
        return NULL;
    if (finite_only)
        for (int64_t o = 0; o < m->numel; o++)
            if (isinf(m->data[o]))
                m->data[o] = 0.0;
    JAC__PARAMS(p);
    p.shift.axes_mask = mask;
    p.shift.finite_only = finite_only;
    return jac__record_result(ctx, JAC__OP_MAX_SHIFT, m, 1, &a, &p);
}

jac_status jac__vjp_max_shift(jac_ctx *ctx, const jac__node *node,
                              jac_tensor *g, const bool *need, jac_tensor **gin)
{
    return jac__zero_rule(ctx, node, g, need, gin);
}

jac_tensor *jac__apply_max_shift(jac_ctx *ctx, const jac__node *n,
                                 jac_tensor *const *ins)
{
    if (ctx == NULL || !jac__check_arg(ctx, "max_shift", ins[0]))
        return NULL;
    return max_shift(ctx, "logsumexp", ins[0], n->p.shift.axes_mask,
                     n->p.shift.finite_only);
}

/* ------------------------------------------------------------------------ */
/* logsumexp, softmax, log_softmax                                          */
/* ------------------------------------------------------------------------ */

/* log(sum(exp(a - m))) + m with m the constant group maximum: every exp is
 * at most 1, so large inputs do not overflow. */
jac_tensor *jac_logsumexp(jac_ctx *ctx, jac_tensor *a, int naxes,
                          const int *axes, bool keepdim)
{
    uint32_t mask;
    if (!jac__reduce_args(ctx, "logsumexp", a, naxes, axes, &mask))
        return NULL;
    jac_tensor *m = max_shift(ctx, "logsumexp", a, mask, true);
    if (m == NULL)
        return NULL;
    jac_tensor *s =
        sum_mask(ctx, jac_exp(ctx, jac_sub(ctx, a, m)), mask, keepdim);
    jac_tensor *mo = m;
    if (!keepdim) {
        int64_t shape[JAC_MAX_DIMS];
        int nd = reduced_shape(a, mask, false, shape);
        mo = jac_reshape(ctx, m, nd, shape);
    }
    return jac_add(ctx, jac_log(ctx, s), mo);
}

/* The mask of a softmax axis; a rank-0 tensor accepts axis 0 or -1 (a
 * softmax over one element, as PyTorch). */
static bool softmax_axis(jac_ctx *ctx, const char *op, const jac_tensor *a,
                         int axis, uint32_t *mask)
{
    if (a->ndim == 0 && (axis == 0 || axis == -1)) {
        *mask = 0;
        return true;
    }
    int ax = jac__axis(axis, a->ndim);
    if (ax < 0) {
        char s[JAC__SHAPE_STR_MAX];
        jac__error(ctx, JAC_ERR_AXIS,
                   "%s: axis %d is out of range for shape %s", op, axis,
                   jac__shape_str(s, sizeof s, a->ndim, a->shape));
        return false;
    }
    *mask = 1u << ax;
    return true;
}

/* softmax (exp(a - m) / sum(exp(a - m)), m the constant maximum along the
 * axis) or log_softmax ((a - m) - log(sum(exp(a - m)))), computed without
 * recording and recorded as one op with a rule of its own: a composite
 * rule would differentiate a - logsumexp(a) term by term and lose the
 * exact cancellation that makes, say, log_softmax over one element
 * identically 0 to every order. As PyTorch, a +inf or an all -inf slice
 * gives NaN. */
static jac_tensor *softmax_op(jac_ctx *ctx, jac__op op, jac_tensor *a, int axis)
{
    const char *name = jac__ops[op].name;
    uint32_t mask;
    if (ctx == NULL || !jac__check_arg(ctx, name, a) ||
        !softmax_axis(ctx, name, a, axis, &mask))
        return NULL;
    bool was = jac_set_grad_enabled(ctx, false);
    jac_tensor *y = NULL, *m = max_shift(ctx, name, a, mask, false);
    jac_tensor *shifted = m ? jac_sub(ctx, a, m) : NULL;
    jac_tensor *e = jac_exp(ctx, shifted);
    jac_tensor *s = sum_mask(ctx, e, mask, true);
    if (op == JAC__OP_SOFTMAX)
        y = jac_div(ctx, e, s);
    else
        y = jac_sub(ctx, shifted, jac_log(ctx, s));
    jac_set_grad_enabled(ctx, was);
    if (y == NULL)
        return NULL;
    y->untracked = false; /* its history is the node recorded next */
    bool failed;
    jac__node *node = jac__record(ctx, op, y, 1, &a, &failed);
    if (failed)
        return NULL;
    if (node)
        node->p.reduce.axes_mask = mask;
    return y;
}

jac_tensor *jac_softmax(jac_ctx *ctx, jac_tensor *a, int axis)
{
    return softmax_op(ctx, JAC__OP_SOFTMAX, a, axis);
}

jac_tensor *jac_log_softmax(jac_ctx *ctx, jac_tensor *a, int axis)
{
    return softmax_op(ctx, JAC__OP_LOG_SOFTMAX, a, axis);
}

/* The axis of a softmax node: its mask's one bit (none for rank 0, where
 * axis 0 names the single element). */
static int softmax_node_axis(const jac__node *n)
{
    int axes[JAC_MAX_DIMS];
    return jac__mask_axes(n->p.reduce.axes_mask, axes) > 0 ? axes[0] : 0;
}

jac_tensor *jac__apply_softmax(jac_ctx *ctx, const jac__node *n,
                               jac_tensor *const *ins)
{
    return jac_softmax(ctx, ins[0], softmax_node_axis(n));
}

jac_tensor *jac__apply_log_softmax(jac_ctx *ctx, const jac__node *n,
                                   jac_tensor *const *ins)
{
    return jac_log_softmax(ctx, ins[0], softmax_node_axis(n));
}

/* With y = softmax(a): g_a = y (g - sum(g y)) along the axis; sums keep the
 * batch axes of g in front. Written with ops, as every rule. */
jac_status jac__vjp_softmax(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                            const bool *need, jac_tensor **gin)
{
    (void)need;
    jac_tensor *y = node->out;
    uint32_t mask = node->p.reduce.axes_mask << jac__batch_ndim(g, node->out);
    jac_tensor *gy = sum_mask(ctx, jac_mul(ctx, g, y), mask, true);
    gin[0] = jac_mul(ctx, y, jac_sub(ctx, g, gy));
    return gin[0] ? JAC_OK : ctx->status;
}

/* With y = log_softmax(a): g_a = g - softmax(a) sum(g), softmax(a) being
 * exp(y). */
jac_status jac__vjp_log_softmax(jac_ctx *ctx, const jac__node *node,
                                jac_tensor *g, const bool *need,
                                jac_tensor **gin)
{
    (void)need;
    uint32_t mask = node->p.reduce.axes_mask << jac__batch_ndim(g, node->out);
    jac_tensor *sg = sum_mask(ctx, g, mask, true);
    gin[0] = jac_sub(ctx, g, jac_mul(ctx, jac_exp(ctx, node->out), sg));
    return gin[0] ? JAC_OK : ctx->status;
}

/* ------------------------------------------------------------------------ */
/* var and std                                                              */
/* ------------------------------------------------------------------------ */

/* sum((a - mean)^2) / max(0, N - correction), as PyTorch: when N -
 * correction <= 0 the division is by 0, giving inf, or NaN when the sum is
 * 0 (a single element, or an empty reduction). */
static jac_tensor *var_mask(jac_ctx *ctx, jac_tensor *a, uint32_t mask,
                            double correction, bool keepdim)
{
    double dof = (double)group_size(a, mask) - correction;
    if (!(dof > 0.0))
        dof = 0.0;
    jac_tensor *centred = jac_sub(ctx, a, mean_mask(ctx, a, mask, true));
    jac_tensor *squares = jac_mul(ctx, centred, centred);
    return jac_div_scalar(ctx, sum_mask(ctx, squares, mask, keepdim), dof);
}

static bool var_args(jac_ctx *ctx, const char *op, jac_tensor *a, int naxes,
                     const int *axes, double correction, uint32_t *mask)
{
    if (!jac__reduce_args(ctx, op, a, naxes, axes, mask))
        return false;
    if (!isfinite(correction)) {
        jac__error(ctx, JAC_ERR_VALUE, "%s: correction %g is not finite", op,
                   correction);
        return false;
    }
    return true;
}

jac_tensor *jac_var(jac_ctx *ctx, jac_tensor *a, int naxes, const int *axes,
                    double correction, bool keepdim)
{
    uint32_t mask;
    if (!var_args(ctx, "var", a, naxes, axes, correction, &mask))
        return NULL;
    return var_mask(ctx, a, mask, correction, keepdim);
}

/* var ** 0.5; where the variance is 0 the derivative is inf * 0 = NaN, as
 * in PyTorch. */
jac_tensor *jac_std(jac_ctx *ctx, jac_tensor *a, int naxes, const int *axes,
                    double correction, bool keepdim)
{
    uint32_t mask;
    if (!var_args(ctx, "std", a, naxes, axes, correction, &mask))
        return NULL;
    return jac_pow_scalar(ctx, var_mask(ctx, a, mask, correction, keepdim),
                          0.5);
}

/* ------------------------------------------------------------------------ */
/* norm                                                                     */
/* ------------------------------------------------------------------------ */

/* sqrt(sum(a^2)) over each group, scaled by a power of two near the
 * largest |a| so that neither overflow nor underflow spoils it (the scaling
 * is exact, so ordinary inputs round as the plain formula). */
static void norm2_kernel(const jac_tensor *a, const groups *gr, double *out)
{
    for (int64_t o = 0; o < gr->m; o++) {
        const double *src = a->data + gr->outer[o];
        double big = 0.0;
        bool nan = false;
        for (int64_t j = 0; j < gr->n; j++) {
            double v = fabs(src[gr->inner[j]]);
            if (isnan(v))
                nan = true;
            else if (v > big)
                big = v;
        }
        if (nan) {
            out[o] = (double)NAN;
            continue;
        }
        if (big == 0.0 || isinf(big)) {
            out[o] = big;
            continue;
        }
        int e;
        frexp(big, &e);
        double s = 0.0;
        for (int64_t j = 0; j < gr->n; j++) {
            double r = ldexp(src[gr->inner[j]], -e);
            s += r * r;
        }
        out[o] = ldexp(sqrt(s), e);
    }
}

/* d|a|/da = a / |a|, with |a| the recorded output so that the rule is
 * differentiable again; where |a| = 0 (so a = 0) the divisor is replaced by
 * 1, which makes the gradient there 0. */
jac_status jac__vjp_norm2(jac_ctx *ctx, const jac__node *node, jac_tensor *g,
                          const bool *need, jac_tensor **gin)
{
    (void)need;
    jac_tensor *x = node->in[0];
    jac_tensor *y = node->out;
    int64_t kshape[JAC_MAX_DIMS];
    int nk = reduced_shape(x, node->p.reduce.axes_mask, true, kshape);
    jac_tensor *gk = keepdim_cotangent(ctx, node, g);
    jac_tensor *yk = jac_reshape(ctx, y, nk, kshape), *zero;
    if (jac__should_record(ctx, 1, &x)) {
        /* Recorded (create-graph): a comparison, so that a recorded
         * function takes it again at its new inputs. */
        zero = jac_eq(ctx, yk, jac_scalar(ctx, 0.0));
    } else {
        zero = jac__tensor_alloc(ctx, "norm", nk, kshape);
        if (zero != NULL)
            for (int64_t o = 0; o < y->numel; o++)
                zero->data[o] = y->data[o] == 0.0 ? 1.0 : 0.0;
    }
    if (gk == NULL || zero == NULL)
        return ctx->status;
    jac_tensor *safe = jac_add(ctx, yk, zero);
    gin[0] = jac_mul(ctx, gk, jac_div(ctx, x, safe));
    return gin[0] ? JAC_OK : ctx->status;
}

/* p = 1: sum(a * sign(a)), sign of zero derivative (gradient sign(a), 0 at 0);
 * p = INFINITY: max(a * sign(a)), ties splitting the gradient as max does;
 * p = 2: the dedicated op above. */
jac_tensor *jac_norm(jac_ctx *ctx, jac_tensor *a, double p, int naxes,
                     const int *axes, bool keepdim)
{
    uint32_t mask;
    if (ctx == NULL || !jac__check_arg(ctx, "norm", a))
        return NULL;
    if (!(p == 1.0 || p == 2.0 || p == (double)INFINITY)) {
        jac__error(ctx, JAC_ERR_VALUE,
                   "norm: p = %g is not supported (use 1, 2 or INFINITY)", p);
        return NULL;
    }
    if (!jac__axes_mask(ctx, "norm", a, naxes, axes, &mask))
        return NULL;
    if (p == 2.0)
        return reduce_op(ctx, "norm", JAC__OP_NORM2, a, mask, keepdim,
                         norm2_kernel, 0.0);
    /* sign is an op of zero derivative, so that a recorded function
     * computes it again at its new inputs. */
    jac_tensor *abs = jac_mul(ctx, a, jac_sign(ctx, a));
    if (p == 1.0)
        return sum_mask(ctx, abs, mask, keepdim);
    return extreme_mask(ctx, "norm", JAC__OP_MAX_AXES, abs, mask, keepdim);
}

jac_tensor *jac__apply_norm2(jac_ctx *ctx, const jac__node *n,
                             jac_tensor *const *ins)
{
    int axes[JAC_MAX_DIMS];
    int naxes = jac__mask_axes(n->p.reduce.axes_mask, axes);
    return jac_norm(ctx, ins[0], 2.0, naxes, axes, n->p.reduce.keepdim);
}
