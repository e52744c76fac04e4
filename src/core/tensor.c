/*
 * The tensor core: creation, access and printing.
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/core.h"

#include <math.h>

/* ------------------------------------------------------------------------ */
/* Creation                                                                 */
/* ------------------------------------------------------------------------ */

jac_tensor *jac_tensor_new(jac_ctx *ctx, int ndim, const int64_t *shape,
                           const double *data)
{
    if (ctx == NULL)
        return NULL;
    jac_tensor *t = jac__tensor_alloc(ctx, "tensor_new", ndim, shape);
    if (t == NULL)
        return NULL;
    if (data)
        memcpy(t->data, data, (size_t)t->numel * sizeof(double));
    else
        memset(t->data, 0, (size_t)t->numel * sizeof(double));
    return t;
}

jac_tensor *jac_zeros(jac_ctx *ctx, int ndim, const int64_t *shape)
{
    return jac_full(ctx, ndim, shape, 0.0);
}

jac_tensor *jac_ones(jac_ctx *ctx, int ndim, const int64_t *shape)
{
    return jac_full(ctx, ndim, shape, 1.0);
}

jac_tensor *jac_full(jac_ctx *ctx, int ndim, const int64_t *shape, double value)
{
    if (ctx == NULL)
        return NULL;
    jac_tensor *t = jac__tensor_alloc(ctx, "full", ndim, shape);
    if (t == NULL)
        return NULL;
    for (int64_t i = 0; i < t->numel; i++)
        t->data[i] = value;
    t->untracked = false; /* its values depend on no tensor's */
    return t;
}

jac_tensor *jac_eye(jac_ctx *ctx, int64_t n)
{
    if (ctx == NULL)
        return NULL;
    if (n < 0) {
        jac__error(ctx, JAC_ERR_VALUE, "eye: size %lld is negative",
                   (long long)n);
        return NULL;
    }
    int64_t shape[2] = {n, n};
    jac_tensor *t = jac_zeros(ctx, 2, shape);
    if (t == NULL)
        return NULL;
    for (int64_t i = 0; i < n; i++)
        t->data[i * n + i] = 1.0;
    return t;
}

jac_tensor *jac_arange(jac_ctx *ctx, double start, double stop, double step)
{
    if (ctx == NULL)
        return NULL;
    if (step == 0.0 || !isfinite(step) || !isfinite(start) || !isfinite(stop)) {
        jac__error(ctx, JAC_ERR_VALUE,
                   "arange: start %g, stop %g and step %g must be finite, "
                   "step non-zero",
                   start, stop, step);
        return NULL;
    }
    double count = ceil((stop - start) / step);
    if (count < 0)
        count = 0;
    if (count > 9.0e15) {
        jac__error(ctx, JAC_ERR_OVERFLOW, "arange: %g elements are too many",
                   count);
        return NULL;
    }
    int64_t n = (int64_t)count;
    jac_tensor *t = jac__tensor_alloc(ctx, "arange", 1, &n);
    if (t == NULL)
        return NULL;
    for (int64_t i = 0; i < n; i++)
        t->data[i] = start + (double)i * step;
    t->untracked = false; /* its values depend on no tensor's */
    return t;
}

jac_tensor *jac_scalar(jac_ctx *ctx, double value)
{
    return jac_full(ctx, 0, NULL, value);
}

/* t's values cut from the graph: a leaf that remembers having lost the
 * history of t, if t had one (a recording refuses it as a constant). */
static jac_tensor *cut(jac_ctx *ctx, const char *op, const jac_tensor *t)
{
    if (ctx == NULL || !jac__check_arg(ctx, op, t))
        return NULL;
    jac_tensor *d = jac_tensor_new(ctx, t->ndim, t->shape, t->data);
    if (d)
        d->untracked = t->requires_grad || t->untracked;
    return d;
}

jac_tensor *jac_tensor_copy(jac_ctx *ctx, const jac_tensor *t)
{
    return cut(ctx, "tensor_copy", t);
}

jac_tensor *jac_detach(jac_ctx *ctx, const jac_tensor *t)
{
    return cut(ctx, "detach", t);
}

/* ------------------------------------------------------------------------ */
/* Access                                                                   */
/* ------------------------------------------------------------------------ */

static bool alive(const jac_tensor *t)
{
    return t != NULL && t->magic == JAC__TENSOR_MAGIC;
}

int jac_tensor_ndim(const jac_tensor *t) { return alive(t) ? t->ndim : -1; }

const int64_t *jac_tensor_shape(const jac_tensor *t)
{
    return alive(t) ? t->shape : NULL;
}

int64_t jac_tensor_dim(const jac_tensor *t, int axis)
{
    if (!alive(t))
        return -1;
    int a = jac__axis(axis, t->ndim);
    return a < 0 ? -1 : t->shape[a];
}

int64_t jac_tensor_numel(const jac_tensor *t)
{
    return alive(t) ? t->numel : 0;
}

void jac__note_read(const jac_tensor *t)
{
    jac_ctx *ctx = t->ctx;
    if (!ctx->section.open)
        return;
    if (t->node >= (int64_t)ctx->section.start &&
        (size_t)t->node < ctx->nnodes) {
        jac__node_at(ctx, t->node)->read = true;
        return;
    }
    for (size_t i = 0; i < ctx->section.nargs && !ctx->section.arg_read; i++)
        if (ctx->section.args[i] == t) {
            ctx->section.arg_read = true;
            ctx->section.read_arg = i;
        }
}

const double *jac_tensor_data(const jac_tensor *t)
{
    if (!alive(t))
        return NULL;
    jac__note_read(t);
    return t->data;
}

double jac_tensor_item(const jac_tensor *t)
{
    if (!alive(t))
        return NAN;
    jac__note_read(t);
    if (t->numel != 1) {
        char s[JAC__SHAPE_STR_MAX];
        jac__error(t->ctx, JAC_ERR_SHAPE,
                   "tensor_item: the tensor has shape %s, %lld elements; item "
                   "reads a tensor of one (jac_tensor_get reads one of many)",
                   jac__shape_str(s, sizeof s, t->ndim, t->shape),
                   (long long)t->numel);
        return NAN;
    }
    return t->data[0];
}

double jac_tensor_get(const jac_tensor *t, const int64_t *index)
{
    if (!alive(t))
        return NAN;
    jac__note_read(t);
    if (t->ndim > 0 && index == NULL) {
        jac__error(t->ctx, JAC_ERR_NULL_ARG, "tensor_get: index is NULL");
        return NAN;
    }
    int64_t off = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (index[i] < 0 || index[i] >= t->shape[i]) {
            char s[JAC__SHAPE_STR_MAX];
            jac__error(t->ctx, JAC_ERR_VALUE,
                       "tensor_get: index %lld is out of range for axis %d "
                       "of shape %s",
                       (long long)index[i], i,
                       jac__shape_str(s, sizeof s, t->ndim, t->shape));
            return NAN;
        }
        off = off * t->shape[i] + index[i];
    }
    return t->data[off];
}

/* Replaces the values of the leaf t by numel(t) values (which may be t's
 * own): storage shared with a reshaped view is first made t's alone, so
 * the view keeps the old values. */
static jac_status overwrite(jac_tensor *t, const char *op, const double *values)
{
    jac_ctx *ctx = t->ctx;
    if (t->node >= 0)
        return jac__error(ctx, JAC_ERR_STATE,
                          "%s: the tensor is the result of an op (tape index "
                          "%lld), not a leaf; only a leaf's values can be "
                          "replaced",
                          op, (long long)t->node);
    if (!jac__sole_owner(t)) {
        jac__buf *b = jac__buf_alloc(ctx, (size_t)t->numel * sizeof(double));
        if (b == NULL)
            return jac__error(ctx, JAC_ERR_NO_MEMORY, "%s: out of memory", op);
        memcpy(JAC__BUF_DATA(b), t->data, (size_t)t->numel * sizeof(double));
        if (values == t->data)
            values = JAC__BUF_DATA(b);
        jac__buf_release(ctx, t->buf);
        t->buf = b;
        t->data = JAC__BUF_DATA(b);
    }
    if (t->numel > 0)
        memmove(t->data, values, (size_t)t->numel * sizeof(double));
    t->assigned_seq = ctx->next_seq;
    ctx->assigned_seq_max = ctx->next_seq;
    return JAC_OK;
}

jac_status jac_tensor_fill(jac_tensor *t, const double *values)
{
    if (!alive(t))
        return JAC_ERR_NULL_ARG;
    if (values == NULL && t->numel > 0)
        return jac__error(t->ctx, JAC_ERR_NULL_ARG,
                          "tensor_fill: values is "
                          "NULL");
    return overwrite(t, "tensor_fill", values);
}

jac_status jac_tensor_assign(jac_tensor *t, const jac_tensor *src)
{
    if (!alive(t))
        return JAC_ERR_NULL_ARG;
    jac_status st = jac__check_named(t->ctx, "tensor_assign", src, "src", 0);
    if (st != JAC_OK)
        return st;
    if (src->ndim != t->ndim ||
        memcmp(src->shape, t->shape, (size_t)t->ndim * sizeof(int64_t)) != 0) {
        char s1[JAC__SHAPE_STR_MAX], s2[JAC__SHAPE_STR_MAX];
        return jac__error(t->ctx, JAC_ERR_SHAPE,
                          "tensor_assign: src has shape %s, the tensor %s",
                          jac__shape_str(s1, sizeof s1, src->ndim, src->shape),
                          jac__shape_str(s2, sizeof s2, t->ndim, t->shape));
    }
    return overwrite(t, "tensor_assign", src->data);
}

jac_ctx *jac_tensor_ctx(const jac_tensor *t)
{
    return alive(t) ? t->ctx : NULL;
}

jac_status jac_set_requires_grad(jac_tensor *t, bool requires_grad)
{
    if (!alive(t))
        return JAC_ERR_NULL_ARG;
    if (t->node >= 0)
        return jac__error(t->ctx, JAC_ERR_STATE,
                          "set_requires_grad: the tensor is the result of an "
                          "op, not a leaf");
    if (requires_grad && !t->requires_grad) {
        jac_ctx *ctx = t->ctx;
        unsigned k = ctx->nmarks++ % JAC__MARKS;
        ctx->marks[k].t = t;
        ctx->marks[k].seq = t->seq;
        ctx->marks[k].at = ctx->next_seq;
    }
    t->requires_grad = requires_grad;
    return JAC_OK;
}

uint64_t jac__marked_at(const jac_ctx *ctx, const jac_tensor *t)
{
    for (unsigned k = 0; k < JAC__MARKS; k++)
        if (ctx->marks[k].t == t && ctx->marks[k].seq == t->seq)
            return ctx->marks[k].at;
    return 0;
}

bool jac_requires_grad(const jac_tensor *t)
{
    return alive(t) && t->requires_grad;
}

bool jac_is_leaf(const jac_tensor *t) { return alive(t) && t->node < 0; }

jac_tensor *jac_tensor_grad(const jac_tensor *t)
{
    return alive(t) ? t->grad : NULL;
}

jac_status jac_zero_grad(jac_tensor *t)
{
    if (!alive(t))
        return JAC_ERR_NULL_ARG;
    if (t->grad && t->grad->node < 0 && jac__sole_owner(t->grad)) {
        memset(t->grad->data, 0, (size_t)t->grad->numel * sizeof(double));
    } else if (t->grad) {
        /* The gradient is part of a graph or shares storage: replace it
         * rather than write behind the tape's back. */
        jac_tensor *z = jac_zeros(t->ctx, t->grad->ndim, t->grad->shape);
        if (z == NULL)
            return t->ctx->status;
        jac__set_grad(t, z);
    }
    return JAC_OK;
}

/* ------------------------------------------------------------------------ */
/* Printing                                                                 */
/* ------------------------------------------------------------------------ */

/* Prints the block of t starting at element off for axis dim. With out NULL
 * it only counts the characters a one-line form would take. */
static size_t print_block(FILE *out, const jac_tensor *t, int dim, int64_t off,
                          int64_t stride, bool multiline)
{
    size_t n = 0;
    char num[40];
    if (dim == t->ndim) {
        int len = snprintf(num, sizeof num, "%.*g", 8, t->data[off]);
        if (len > 0 && strcmp(num, "-0") == 0) {
            num[0] = '0';
            num[1] = '\0';
            len = 1;
        }
        if (out)
            fputs(num, out);
        return (size_t)(len > 0 ? len : 0);
    }
    int64_t inner = stride / (t->shape[dim] ? t->shape[dim] : 1);
    if (out)
        fputc('[', out);
    n++;
    for (int64_t i = 0; i < t->shape[dim]; i++) {
        if (i > 0) {
            if (multiline && dim < t->ndim - 1) {
                if (out) {
                    fputc(',', out);
                    for (int k = 0; k < t->ndim - 1 - dim; k++)
                        fputc('\n', out);
                    for (int k = 0; k <= dim; k++)
                        fputc(' ', out);
                }
            } else {
                if (out)
                    fputs(", ", out);
                n += 2;
            }
        }
        n += print_block(out, t, dim + 1, off + i * inner, inner, multiline);
    }
    if (out)
        fputc(']', out);
    return n + 1;
}

jac_status jac_tensor_print(const jac_tensor *t, FILE *out)
{
    if (!alive(t) || out == NULL)
        return JAC_ERR_NULL_ARG;
    if (t->numel == 0) {
        /* As NumPy's str(): the extents of an empty tensor may multiply to
         * anything, (3e9, 3e9, 0), so no brackets are nested for them. */
        fputs("[]\n", out);
        return JAC_OK;
    }
    size_t width = print_block(NULL, t, 0, 0, t->numel, false);
    print_block(out, t, 0, 0, t->numel, width > 72);
    fputc('\n', out);
    return JAC_OK;
}
