/*
 * Sparsity patterns of a program, found through its instructions.
 *
 * Jacobian: every value element v gets its index domain X_v, the input
 * elements it depends on, in one forward pass: an instruction's output
 * element takes the union of the domains of the elements its op's
 * sparsity rule links it to (the op table's deps column). The rows of the
 * Jacobian are the outputs' domains. A rule links every element a branch
 * may read, so the pattern holds at every point.
 *
 * Hessian of sum_k <w_k, y_k>: a non-zero second derivative of an op at an
 * output element o that reaches an output couples the domains of what o
 * reads (the curv column): X_a x X_a for a function of one element (SELF),
 * X_a x X_b for a product (CROSS), both and X_b x X_b for a quotient (DIV),
 * X_o x X_o otherwise (ALL); the union over all of them is the pattern
 * (Walther, "Computing sparse Hessians with automatic differentiation",
 * 2008, with domains over tensors). Liveness is taken per value element:
 * an element that reaches no output couples nothing.
 *
 * SPDX-License-Identifier: MIT
 */
#include "sparse/sparse.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Memory                                                                   */
/* ------------------------------------------------------------------------ */

static void *get(const jac_allocator *al, size_t bytes)
{
    return al->alloc(bytes ? bytes : 1, al->user);
}

static void put(const jac_allocator *al, void *p)
{
    if (p != NULL)
        al->free(p, al->user);
}

/* Grows *buf (of *cap int64s) to hold need; false when out of memory. */
static bool grow(const jac_allocator *al, int64_t **buf, int64_t *cap,
                 int64_t used, int64_t need)
{
    if (need <= *cap)
        return true;
    int64_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    int64_t *p = get(al, (size_t)c * sizeof(int64_t));
    if (p == NULL)
        return false;
    if (used > 0)
        memcpy(p, *buf, (size_t)used * sizeof(int64_t));
    put(al, *buf);
    *buf = p;
    *cap = c;
    return true;
}

void jac__csr_free(const jac_allocator *al, jac__csr *p)
{
    put(al, p->ptr);
    put(al, p->idx);
    p->ptr = p->idx = NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void sort_row(int64_t *v, int64_t n)
{
    if (n > 32) {
        qsort(v, (size_t)n, sizeof *v, cmp_i64);
        return;
    }
    for (int64_t i = 1; i < n; i++) {
        int64_t x = v[i], j = i;
        for (; j > 0 && v[j - 1] > x; j--)
            v[j] = v[j - 1];
        v[j] = x;
    }
}

/* ------------------------------------------------------------------------ */
/* Domains                                                                  */
/* ------------------------------------------------------------------------ */

/* Coupled pairs (p, q), p <= q: a bit matrix when the inputs are few, else
 * a list kept short by merging repeats now and then. */
typedef struct pairs {
    const jac_allocator *al;
    int64_t n;
    uint64_t *bits; /* n * n bits, row p */
    int64_t *list;  /* 2 per pair */
    int64_t len, cap, merged;
    int64_t *mark, *count; /* n each, for merging */
    bool full;             /* every pair: a dense Hessian */
} pairs;

/* Domain entries live in chunks that never move, so that an element whose
 * domain is another's (it reads one element, or copies one) shares it. */
typedef struct chunk {
    struct chunk *next;
    int64_t cap, used;
    int32_t data[];
} chunk;

#define CHUNK_MIN (1 << 20)

typedef struct walk {
    jac_program *prog;
    const jac_allocator *al;
    jac_ctx *ctx; /* where rules run */
    int64_t ncols;
    /* The domain of value element v (from diff_off on): dom[v], len[v]. */
    uint64_t nv, next;
    const int32_t **dom;
    int32_t *len;
    chunk *chunks;
    int32_t *cols; /* 0 .. ncols - 1: the inputs' domains */
    int64_t *mark; /* ncols stamps */
    int64_t stamp;
    bool *live;     /* nv: the element reaches an output (Hessians) */
    pairs *pairs;   /* couplings, for a Hessian */
    int32_t *buf;   /* 2 * ncols, for unions (Hessians) */
    uint64_t *offs; /* the links of a tensor instruction as offsets */
    int64_t noffs;
    /* The tensor instruction being read: shapes of its inputs and output,
     * its links and their numbering. */
    jac_tensor *shape; /* aligned as a tensor must be, within shape_mem */
    void *shape_mem;
    int nshape;
    jac__links links;
    int64_t *base;
    jac_status status;
} walk;

/* Couplings of an instruction's output elements (Hessians, below). */
static jac_status couple_top(walk *w, const jac__top *top);
static bool couple_scalar(walk *w, jac__instr in, uint64_t out);

static jac_status fail_oom(walk *w, const char *what)
{
    w->status =
        jac__program_fail(JAC_ERR_NO_MEMORY, "sparse: %s: out of memory", what);
    return w->status;
}

/* Whether the value element at off varies (has a domain). */
static bool varies(const walk *w, uint64_t off, bool konst)
{
    return !konst && off >= w->prog->diff_off &&
           off - w->prog->diff_off < w->nv;
}

static const int32_t *dom(const walk *w, uint64_t off, int64_t *len)
{
    uint64_t v = off - w->prog->diff_off;
    *len = w->len[v];
    return w->dom[v];
}

/* Room for n entries in the newest chunk; NULL when out of memory. */
static int32_t *room(walk *w, int64_t n)
{
    chunk *c = w->chunks;
    if (c == NULL || c->cap - c->used < n) {
        int64_t cap = n > CHUNK_MIN ? n : CHUNK_MIN;
        c = get(w->al, sizeof(chunk) + (size_t)cap * sizeof(int32_t));
        if (c == NULL)
            return NULL;
        c->next = w->chunks;
        c->cap = cap;
        c->used = 0;
        w->chunks = c;
    }
    return c->data + c->used;
}

/* Domains for the values before off that no instruction makes (none,
 * normally); false when off lies behind the values already made. */
static bool reach(walk *w, uint64_t off)
{
    uint64_t v = off - w->prog->diff_off;
    if (off < w->prog->diff_off || v < w->next)
        return false;
    for (; w->next < v; w->next++) {
        w->dom[w->next] = NULL;
        w->len[w->next] = 0;
    }
    return true;
}

/* The next value element's domain: the union of the domains of the n
 * elements at offs[0 .. n) (UINT64_MAX: a constant; repeats allowed). One
 * domain, or the same one read again, is shared rather than copied. */
static bool make_set(walk *w, const uint64_t *offs, int64_t n)
{
    const int32_t *one = NULL;
    int64_t total = 0, onelen = 0;
    bool shared = true;
    for (int64_t t = 0; t < n; t++) {
        int64_t len = 0;
        const int32_t *d = offs[t] == UINT64_MAX ? NULL : dom(w, offs[t], &len);
        if (len == 0)
            continue;
        if (len == w->ncols) {
            /* Every input: nothing can be added (dense parts stay cheap). */
            one = w->cols;
            onelen = len;
            shared = true;
            break;
        }
        if (one == NULL) {
            one = d;
            onelen = len;
        } else if (d != one) {
            shared = false;
        }
        total += len;
    }
    uint64_t v = w->next++;
    if (shared) {
        w->dom[v] = one;
        w->len[v] = (int32_t)onelen;
        return true;
    }
    int32_t *out = room(w, total);
    if (out == NULL)
        return false;
    int64_t k = 0;
    w->stamp++;
    for (int64_t t = 0; t < n && k < w->ncols; t++) {
        int64_t len = 0;
        const int32_t *d = offs[t] == UINT64_MAX ? NULL : dom(w, offs[t], &len);
        for (int64_t e = 0; e < len; e++)
            if (w->mark[d[e]] != w->stamp) {
                w->mark[d[e]] = w->stamp;
                out[k++] = d[e];
            }
    }
    if (k == w->ncols) {
        w->dom[v] = w->cols; /* the shared domain of every input */
        w->len[v] = (int32_t)k;
        return true;
    }
    w->chunks->used += k;
    w->dom[v] = out;
    w->len[v] = (int32_t)k;
    return true;
}

/* The node of tensor instruction top: shapes of its inputs (with the
 * values of constant ones) and of its output, for its sparsity rule. */
static jac_status top_node(walk *w, const jac__top *top, jac__node *n,
                           jac_tensor **ins)
{
    jac_program *prog = w->prog;
    memset(n, 0, sizeof *n);
    n->op = top->op;
    n->nin = top->nin;
    n->p = top->p;
    n->in = ins;
    n->out = &w->shape[top->nin];
    for (int j = 0; j <= top->nin; j++) {
        const jac__pval *v =
            j < top->nin ? &prog->tins[top->first + (size_t)j].v : &top->out;
        jac_tensor *t = &w->shape[j];
        jac__shape_only(t, v);
        if (j < top->nin) {
            ins[j] = t;
            bool param = false;
            for (size_t i = prog->ninputs; i < prog->ninputs + prog->nparams;
                 i++)
                param |= !v->konst && prog->args[i].numel > 0 &&
                         v->off < prog->args[i].off +
                                      (uint64_t)prog->args[i].numel &&
                         prog->args[i].off < v->off + (uint64_t)v->numel;
            if (v->konst)
                t->data = prog->consts + v->off;
            else if (v->off < prog->diff_off && !param)
                t->data = prog->v0 + v->off;
        }
        w->base[j + 1] = w->base[j] + (j < top->nin ? v->numel : 0);
    }
    return JAC_OK;
}

/* Runs the sparsity rule of tensor instruction top into w->links. */
static jac_status top_links(walk *w, const jac__top *top)
{
    if (top->nin + 1 > w->nshape) {
        size_t align = _Alignof(jac_tensor);
        size_t bytes = (size_t)(top->nin + 1) * sizeof(jac_tensor) + align;
        void *s = get(w->al, bytes);
        int64_t *b = get(w->al, (size_t)(top->nin + 2) * sizeof(int64_t));
        if (s == NULL || b == NULL) {
            put(w->al, s);
            put(w->al, b);
            return fail_oom(w, jac__ops[top->op].name);
        }
        put(w->al, w->shape_mem);
        put(w->al, w->base);
        w->shape_mem = s;
        w->shape =
            (jac_tensor *)(void *)((char *)s +
                                   (align - (uintptr_t)s % align) % align);
        w->base = b;
        w->nshape = top->nin + 1;
    }
    jac__node n;
    jac_tensor *ins[JAC__NODE_INLINE_INPUTS > 8 ? JAC__NODE_INLINE_INPUTS : 8];
    jac_tensor **in = top->nin <= 8 ? ins : NULL;
    size_t ibytes = (size_t)top->nin * sizeof(jac_tensor *);
    if (in == NULL && (in = get(w->al, ibytes)) == NULL)
        return fail_oom(w, jac__ops[top->op].name);
    w->base[0] = 0;
    top_node(w, top, &n, in);
    jac__links *L = &w->links;
    size_t pbytes = (size_t)(top->out.numel + 1) * sizeof(int64_t);
    L->ctx = w->ctx;
    L->base = w->base;
    L->ptr = jac__alloc(w->ctx, pbytes);
    L->n = 0;
    L->row = 0;
    jac_status st = JAC_OK;
    if (L->ptr == NULL) {
        st = fail_oom(w, jac__ops[top->op].name);
    } else {
        L->ptr[0] = 0;
        jac_scope mark = jac_scope_begin(w->ctx);
        st = jac__ops[top->op].deps(w->ctx, &n, L);
        jac_scope_end(w->ctx, mark, NULL, 0);
        if (st == JAC_OK && L->row != top->out.numel)
            st = JAC_ERR_VALUE;
        if (st != JAC_OK)
            w->status =
                jac__program_fail(st, "sparse: %s",
                                  st == JAC_ERR_VALUE && w->ctx->status == 0
                                      ? "a rule left elements without links"
                                      : jac_errmsg(w->ctx));
    }
    if (in != ins)
        put(w->al, in);
    if (st != JAC_OK && L->ptr != NULL) {
        jac__free(w->ctx, L->ptr, pbytes);
        L->ptr = NULL;
    }
    return st == JAC_OK ? JAC_OK : w->status;
}

static void links_done(walk *w, const jac__top *top)
{
    jac__links *L = &w->links;
    jac__free(w->ctx, L->ptr, (size_t)(top->out.numel + 1) * sizeof(int64_t));
    L->ptr = NULL;
}

/* The value offset of link l of the instruction, or UINT64_MAX for an
 * element of a constant. */
static uint64_t link_off(const walk *w, const jac__top *top, int64_t l,
                         int *input)
{
    int j = 0;
    while (l >= w->base[j + 1])
        j++;
    *input = j;
    const jac__pval *v = &w->prog->tins[top->first + (size_t)j].v;
    uint64_t off = v->off + (uint64_t)(l - w->base[j]);
    return varies(w, off, v->konst) ? off : UINT64_MAX;
}

static jac_status domains_of_top(walk *w, const jac__top *top)
{
    jac_status st = top_links(w, top);
    if (st != JAC_OK)
        return st;
    const jac__links *L = &w->links;
    bool ok = top->out.numel == 0 || reach(w, top->out.off);
    if (!ok)
        st = w->status =
            jac__program_fail(JAC_ERR_VALUE, "sparse: values out of order");
    /* The links as value offsets, once. */
    if (ok && L->n > w->noffs) {
        put(w->al, w->offs);
        w->offs = get(w->al, (size_t)L->n * sizeof(uint64_t));
        w->noffs = w->offs ? L->n : 0;
        ok = w->offs != NULL;
    }
    for (int64_t t = 0; t < L->n && ok; t++) {
        int j;
        w->offs[t] = link_off(w, top, L->at[t], &j);
    }
    for (int64_t o = 0; o < top->out.numel && ok; o++) {
        /* offs is NULL while no instruction has had a link. */
        const uint64_t *offs = w->offs ? w->offs + L->ptr[o] : NULL;
        ok = make_set(w, offs, L->ptr[o + 1] - L->ptr[o]);
    }
    if (ok && st == JAC_OK && w->pairs != NULL &&
        jac__ops[top->op].curv != JAC__CURV_LIN)
        st = couple_top(w, top);
    links_done(w, top);
    if (!ok && st == JAC_OK)
        st = fail_oom(w, "pattern");
    return st;
}

/* The domains of every value: inputs, then each instruction's output;
 * and, for a Hessian, the couplings of each instruction. */
static jac_status find_domains(walk *w)
{
    jac_program *prog = w->prog;
    for (size_t i = 0, col = 0; i < prog->ninputs; i++) {
        const jac__pval *v = &prog->args[i];
        if (v->numel > 0 && !reach(w, v->off))
            return w->status = jac__program_fail(JAC_ERR_VALUE,
                                                 "sparse: values out of order");
        for (int64_t e = 0; e < v->numel; e++, col++) {
            w->dom[w->next] = w->cols + col;
            w->len[w->next++] = 1;
        }
    }
    uint64_t cur = prog->code_off;
    for (size_t k = 0; k < prog->ncode; k++) {
        jac__instr in = prog->code[k];
        if (in.op == JAC__TENSOR_INSTR) {
            const jac__top *top = &prog->tops[in.a];
            jac_status st = domains_of_top(w, top);
            if (st != JAC_OK)
                return st;
            cur = top->out.off + (uint64_t)top->out.numel;
            continue;
        }
        if (!reach(w, cur))
            return w->status = jac__program_fail(JAC_ERR_VALUE,
                                                 "sparse: values out of order");
        uint64_t offs[2];
        int n = 0;
        if (jac__ops[in.op].deps != jac__deps_none) {
            if (varies(w, in.a, false))
                offs[n++] = in.a;
            if (jac__ops[in.op].arity == 2 && varies(w, in.b, false))
                offs[n++] = in.b;
        }
        bool ok = make_set(w, offs, n);
        if (ok && w->pairs != NULL)
            ok = couple_scalar(w, in, cur);
        if (!ok)
            return fail_oom(w, "pattern");
        cur++;
    }
    if (w->nv > 0 && !reach(w, prog->diff_off + w->nv))
        return w->status = jac__program_fail(JAC_ERR_VALUE,
                                             "sparse: values out of order");
    return JAC_OK;
}

static jac_status find_live(walk *w);

static jac_status walk_start(walk *w, jac_program *prog, pairs *P)
{
    memset(w, 0, sizeof *w);
    w->prog = prog;
    w->al = &prog->alloc;
    for (size_t i = 0; i < prog->ninputs; i++)
        w->ncols += prog->args[i].numel;
    if (w->ncols > INT32_MAX)
        return w->status = jac__program_fail(
                   JAC_ERR_VALUE,
                   "sparse: %lld input elements: patterns take at most %d",
                   (long long)w->ncols, INT32_MAX);
    w->nv = prog->nvalues - prog->diff_off;
    w->dom = get(w->al, (size_t)w->nv * sizeof(int32_t *));
    w->len = get(w->al, (size_t)w->nv * sizeof(int32_t));
    w->mark = get(w->al, (size_t)w->ncols * sizeof(int64_t));
    w->cols = get(w->al, (size_t)w->ncols * sizeof(int32_t));
    w->ctx = jac_ctx_new_with_allocator(&prog->alloc);
    if (w->dom == NULL || w->len == NULL || w->mark == NULL ||
        w->cols == NULL || w->ctx == NULL)
        return fail_oom(w, "pattern");
    memset(w->mark, 0, (size_t)w->ncols * sizeof(int64_t));
    for (int64_t c = 0; c < w->ncols; c++)
        w->cols[c] = (int32_t)c;
    if (P != NULL) {
        w->pairs = P;
        jac_status st = find_live(w);
        if (st != JAC_OK)
            return st;
    }
    return find_domains(w);
}

static void walk_end(walk *w)
{
    while (w->chunks != NULL) {
        chunk *c = w->chunks;
        w->chunks = c->next;
        put(w->al, c);
    }
    put(w->al, (void *)w->dom);
    put(w->al, w->len);
    put(w->al, w->cols);
    put(w->al, w->mark);
    put(w->al, w->live);
    put(w->al, w->shape_mem);
    put(w->al, w->base);
    put(w->al, w->buf);
    put(w->al, w->offs);
    if (w->links.at != NULL)
        jac__free(w->ctx, w->links.at, (size_t)w->links.cap * sizeof(int64_t));
    jac_ctx_free(w->ctx);
}

/* ------------------------------------------------------------------------ */
/* Jacobian                                                                 */
/* ------------------------------------------------------------------------ */

jac_status jac__pattern_jacobian(jac_program *prog, jac__csr *J)
{
    memset(J, 0, sizeof *J);
    walk w;
    jac_status st = walk_start(&w, prog, NULL);
    int64_t rows = 0, nnz = 0;
    for (size_t k = 0; k < prog->noutputs; k++)
        rows += prog->outs[k].numel;
    J->nrows = rows;
    J->ncols = w.ncols;
    if (st == JAC_OK) {
        J->ptr = get(w.al, (size_t)(rows + 1) * sizeof(int64_t));
        if (J->ptr == NULL)
            st = fail_oom(&w, "pattern");
    }
    for (size_t k = 0, r = 0; k < prog->noutputs && st == JAC_OK; k++) {
        const jac__pval *v = &prog->outs[k];
        for (int64_t e = 0; e < v->numel; e++, r++) {
            int64_t len = 0;
            if (varies(&w, v->off + (uint64_t)e, v->konst))
                dom(&w, v->off + (uint64_t)e, &len);
            J->ptr[r] = nnz;
            nnz += len;
        }
    }
    if (st == JAC_OK) {
        J->ptr[rows] = nnz;
        if ((J->idx = get(w.al, (size_t)nnz * sizeof(int64_t))) == NULL)
            st = fail_oom(&w, "pattern");
    }
    for (size_t k = 0, r = 0; k < prog->noutputs && st == JAC_OK; k++) {
        const jac__pval *v = &prog->outs[k];
        for (int64_t e = 0; e < v->numel; e++, r++) {
            int64_t len = J->ptr[r + 1] - J->ptr[r];
            if (len == 0)
                continue;
            const int32_t *d = dom(&w, v->off + (uint64_t)e, &len);
            for (int64_t t = 0; t < len; t++)
                J->idx[J->ptr[r] + t] = d[t];
            if (d != w.cols) /* the domain of every input is in order */
                sort_row(J->idx + J->ptr[r], len);
        }
    }
    walk_end(&w);
    if (st != JAC_OK)
        jac__csr_free(&prog->alloc, J);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Hessian                                                                  */
/* ------------------------------------------------------------------------ */

#define BITS_MAX_INPUTS 8192

static bool pairs_merge(pairs *P);

static bool pair_add(pairs *P, int64_t p, int64_t q)
{
    if (p > q) {
        int64_t t = p;
        p = q;
        q = t;
    }
    if (P->bits != NULL) {
        uint64_t b = (uint64_t)p * (uint64_t)P->n + (uint64_t)q;
        P->bits[b >> 6] |= 1ull << (b & 63);
        return true;
    }
    if (P->len + 2 > P->cap) {
        if (P->len > 4 * P->merged + (1 << 22) && !pairs_merge(P))
            return false;
        if (!grow(P->al, &P->list, &P->cap, P->len, P->len + 2))
            return false;
    }
    P->list[P->len++] = p;
    P->list[P->len++] = q;
    return true;
}

/* Sorts the list by p and drops repeats (a counting sort and stamps). */
static bool pairs_merge(pairs *P)
{
    int64_t np = P->len / 2;
    int64_t *sorted = get(P->al, (size_t)P->len * sizeof(int64_t));
    if (sorted == NULL)
        return false;
    memset(P->count, 0, (size_t)(P->n + 1) * sizeof(int64_t));
    for (int64_t t = 0; t < np; t++)
        P->count[P->list[2 * t] + 1]++;
    for (int64_t p = 0; p < P->n; p++)
        P->count[p + 1] += P->count[p];
    for (int64_t t = 0; t < np; t++) {
        int64_t at = P->count[P->list[2 * t]]++;
        sorted[2 * at] = P->list[2 * t];
        sorted[2 * at + 1] = P->list[2 * t + 1];
    }
    for (int64_t q = 0; q < P->n; q++)
        P->mark[q] = -1;
    int64_t out = 0;
    for (int64_t t = 0; t < np; t++) {
        int64_t p = sorted[2 * t], q = sorted[2 * t + 1];
        if (P->mark[q] == p)
            continue;
        P->mark[q] = p;
        P->list[out++] = p;
        P->list[out++] = q;
    }
    put(P->al, sorted);
    P->len = out;
    P->merged = out;
    return true;
}

static bool couple(pairs *P, const int32_t *x, int64_t nx, const int32_t *y,
                   int64_t ny)
{
    /* Once every pair is in, nothing more can be. */
    if (P->full)
        return true;
    if (nx == P->n && ny == P->n) {
        P->full = true;
        return true;
    }
    for (int64_t s = 0; s < nx; s++)
        for (int64_t t = 0; t < ny; t++)
            if (!pair_add(P, x[s], y[t]))
                return false;
    return true;
}

/* Marks live every element an output or a live instruction reads. */
static jac_status find_live(walk *w)
{
    jac_program *prog = w->prog;
    bool *live = w->live = get(w->al, (size_t)w->nv);
    w->buf = get(w->al, (size_t)(2 * w->ncols) * sizeof(int32_t));
    if (live == NULL || w->buf == NULL)
        return fail_oom(w, "pattern");
    memset(live, 0, (size_t)w->nv);
    uint64_t d0 = prog->diff_off;
    for (size_t k = 0; k < prog->noutputs; k++) {
        const jac__pval *v = &prog->outs[k];
        for (int64_t e = 0; e < v->numel; e++)
            if (varies(w, v->off + (uint64_t)e, v->konst))
                live[v->off + (uint64_t)e - d0] = true;
    }
    /* Where each scalar instruction's output lies, then back to front. */
    uint64_t *outs = get(w->al, prog->ncode * sizeof(uint64_t));
    if (outs == NULL)
        return fail_oom(w, "pattern");
    for (size_t k = 0, cur = prog->code_off; k < prog->ncode; k++) {
        jac__instr in = prog->code[k];
        if (in.op == JAC__TENSOR_INSTR) {
            const jac__top *top = &prog->tops[in.a];
            cur = top->out.off + (uint64_t)top->out.numel;
        } else {
            outs[k] = cur++;
        }
    }
    for (size_t k = prog->ncode; k-- > 0;) {
        jac__instr in = prog->code[k];
        if (in.op != JAC__TENSOR_INSTR) {
            uint64_t out = outs[k];
            if (!live[out - d0] || jac__ops[in.op].deps == jac__deps_none)
                continue;
            if (varies(w, in.a, false))
                live[in.a - d0] = true;
            if (jac__ops[in.op].arity == 2 && varies(w, in.b, false))
                live[in.b - d0] = true;
            continue;
        }
        const jac__top *top = &prog->tops[in.a];
        bool used = false;
        for (int64_t e = 0; e < top->out.numel && !used; e++)
            used = live[top->out.off + (uint64_t)e - d0];
        for (int j = 0; j < top->nin && used; j++) {
            const jac__pval *v = &prog->tins[top->first + (size_t)j].v;
            for (int64_t e = 0; e < v->numel; e++)
                if (varies(w, v->off + (uint64_t)e, v->konst))
                    live[v->off + (uint64_t)e - d0] = true;
        }
    }
    put(w->al, outs);
    return JAC_OK;
}

/* The union of the domains of the links of output element o from input
 * j, into buf (room for ncols). */
static int64_t link_union(walk *w, const jac__top *top, int64_t o, int j,
                          int32_t *buf)
{
    const jac__links *L = &w->links;
    int64_t n = 0;
    w->stamp++;
    for (int64_t t = L->ptr[o]; t < L->ptr[o + 1]; t++) {
        int input;
        uint64_t off = link_off(w, top, L->at[t], &input);
        if (off == UINT64_MAX || input != j)
            continue;
        int64_t len;
        const int32_t *d = dom(w, off, &len);
        for (int64_t s = 0; s < len; s++)
            if (w->mark[d[s]] != w->stamp) {
                w->mark[d[s]] = w->stamp;
                buf[n++] = d[s];
            }
    }
    return n;
}

/* The couplings of a live output element (domain o) reading x, and y
 * (input 1's domains) for CROSS and DIV. */
static bool couple_curv(pairs *P, jac__curv curv, const int32_t *o, int64_t no,
                        const int32_t *x, int64_t nx, const int32_t *y,
                        int64_t ny)
{
    switch (curv) {
    case JAC__CURV_CROSS:
        return couple(P, x, nx, y, ny);
    case JAC__CURV_DIV:
        return couple(P, x, nx, y, ny) && couple(P, y, ny, y, ny);
    case JAC__CURV_SELF:
        return couple(P, x, nx, x, nx) && couple(P, y, ny, y, ny);
    case JAC__CURV_ALL:
        return couple(P, o, no, o, no);
    default:
        return true;
    }
}

static bool couple_scalar(walk *w, jac__instr in, uint64_t out)
{
    jac__curv curv = jac__ops[in.op].curv;
    if (curv == JAC__CURV_LIN || !w->live[out - w->prog->diff_off])
        return true;
    int64_t nx = 0, ny = 0, no;
    const int32_t *x = NULL, *y = NULL, *o = dom(w, out, &no);
    if (varies(w, in.a, false))
        x = dom(w, in.a, &nx);
    if (jac__ops[in.op].arity == 2 && varies(w, in.b, false))
        y = dom(w, in.b, &ny);
    return couple_curv(w->pairs, curv, o, no, x, nx, y, ny);
}

static jac_status couple_top(walk *w, const jac__top *top)
{
    jac__curv curv = jac__ops[top->op].curv;
    uint64_t d0 = w->prog->diff_off;
    const jac__links *L = &w->links;
    bool ok = true;
    for (int64_t o = 0; o < top->out.numel && ok; o++) {
        uint64_t off = top->out.off + (uint64_t)o;
        if (!w->live[off - d0])
            continue;
        int64_t no;
        const int32_t *d = dom(w, off, &no);
        if (curv == JAC__CURV_ALL) {
            ok = couple(w->pairs, d, no, d, no);
        } else if (curv == JAC__CURV_SELF) {
            for (int64_t t = L->ptr[o]; t < L->ptr[o + 1] && ok; t++) {
                int j;
                uint64_t at = link_off(w, top, L->at[t], &j);
                int64_t len = 0;
                const int32_t *x = at == UINT64_MAX ? NULL : dom(w, at, &len);
                ok = couple(w->pairs, x, len, x, len);
            }
        } else {
            int64_t nx = link_union(w, top, o, 0, w->buf);
            int64_t ny = link_union(w, top, o, 1, w->buf + nx);
            ok =
                couple_curv(w->pairs, curv, d, no, w->buf, nx, w->buf + nx, ny);
        }
    }
    return ok ? JAC_OK : fail_oom(w, "pattern");
}

/* The full symmetric pattern of the pairs. */
static jac_status pairs_csr(pairs *P, jac__csr *H)
{
    int64_t n = P->n;
    H->nrows = H->ncols = n;
    H->ptr = get(P->al, (size_t)(n + 1) * sizeof(int64_t));
    if (H->ptr == NULL)
        return JAC_ERR_NO_MEMORY;
    memset(H->ptr, 0, (size_t)(n + 1) * sizeof(int64_t));
    if (P->full) {
        for (int64_t p = 0; p < n; p++)
            H->ptr[p + 1] = (p + 1) * n;
        H->idx = get(P->al, (size_t)(n * n) * sizeof(int64_t));
        if (H->idx == NULL)
            return JAC_ERR_NO_MEMORY;
        for (int64_t t = 0; t < n * n; t++)
            H->idx[t] = t % n;
        return JAC_OK;
    }
    int64_t np = P->len / 2;
    if (P->bits != NULL) {
        for (int64_t p = 0; p < n; p++)
            for (int64_t q = p; q < n; q++) {
                uint64_t b = (uint64_t)p * (uint64_t)n + (uint64_t)q;
                if (P->bits[b >> 6] >> (b & 63) & 1u) {
                    H->ptr[p + 1]++;
                    if (q != p)
                        H->ptr[q + 1]++;
                }
            }
    } else {
        for (int64_t t = 0; t < np; t++) {
            H->ptr[P->list[2 * t] + 1]++;
            if (P->list[2 * t + 1] != P->list[2 * t])
                H->ptr[P->list[2 * t + 1] + 1]++;
        }
    }
    for (int64_t p = 0; p < n; p++)
        H->ptr[p + 1] += H->ptr[p];
    H->idx = get(P->al, (size_t)H->ptr[n] * sizeof(int64_t));
    if (H->idx == NULL)
        return JAC_ERR_NO_MEMORY;
    int64_t *at = P->count; /* n + 1 */
    memcpy(at, H->ptr, (size_t)n * sizeof(int64_t));
    if (P->bits != NULL) {
        for (int64_t p = 0; p < n; p++)
            for (int64_t q = p; q < n; q++) {
                uint64_t b = (uint64_t)p * (uint64_t)n + (uint64_t)q;
                if (P->bits[b >> 6] >> (b & 63) & 1u) {
                    H->idx[at[p]++] = q;
                    if (q != p)
                        H->idx[at[q]++] = p;
                }
            }
    } else {
        for (int64_t t = 0; t < np; t++) {
            int64_t p = P->list[2 * t], q = P->list[2 * t + 1];
            H->idx[at[p]++] = q;
            if (q != p)
                H->idx[at[q]++] = p;
        }
    }
    for (int64_t p = 0; p < n; p++)
        sort_row(H->idx + H->ptr[p], H->ptr[p + 1] - H->ptr[p]);
    return JAC_OK;
}

jac_status jac__pattern_hessian(jac_program *prog, jac__csr *H)
{
    memset(H, 0, sizeof *H);
    int64_t n = 0;
    for (size_t i = 0; i < prog->ninputs; i++)
        n += prog->args[i].numel;
    pairs P = {.al = &prog->alloc, .n = n};
    jac_status st = JAC_OK;
    P.mark = get(P.al, (size_t)(n + 1) * sizeof(int64_t));
    P.count = get(P.al, (size_t)(n + 1) * sizeof(int64_t));
    if (n <= BITS_MAX_INPUTS) {
        size_t words = ((size_t)(n * n) + 63) / 64;
        if ((P.bits = get(P.al, words * 8)) != NULL)
            memset(P.bits, 0, words * 8);
    }
    if (P.mark == NULL || P.count == NULL ||
        (n <= BITS_MAX_INPUTS && P.bits == NULL))
        st = jac__program_fail(JAC_ERR_NO_MEMORY,
                               "sparse: pattern: out of memory");
    walk w;
    memset(&w, 0, sizeof w);
    if (st == JAC_OK)
        st = walk_start(&w, prog, &P);
    if (st == JAC_OK && P.bits == NULL && !P.full && !pairs_merge(&P))
        st = fail_oom(&w, "pattern");
    if (st == JAC_OK && pairs_csr(&P, H) != JAC_OK)
        st = fail_oom(&w, "pattern");
    put(P.al, P.bits);
    put(P.al, P.list);
    put(P.al, P.mark);
    put(P.al, P.count);
    if (w.prog != NULL)
        walk_end(&w);
    if (st != JAC_OK)
        jac__csr_free(&prog->alloc, H);
    return st;
}
