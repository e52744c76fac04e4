/*
 * Colourings of sparsity patterns for compressed Jacobians and Hessians,
 * and the recovery of a Hessian's entries from its compressed form.
 *
 * Every colouring here is greedy: vertices are visited in some order and
 * each takes a colour that its already coloured neighbourhood allows. The
 * vertex orders, the distance-2 colouring of columns and rows, and the
 * star and acyclic colourings follow Gebremedhin, Manne and Pothen, "What
 * color is your Jacobian? Graph coloring for computing derivatives", SIAM
 * Review 47(4), 2005 (GMP), and Gebremedhin, Tarafdar, Manne and Pothen,
 * "New acyclic and star coloring algorithms with application to computing
 * Hessians", SIAM J. Sci. Comput. 29(3), 2007 (GTMP).
 *
 * Work is linear in the size of the distance-2 neighbourhoods: arrays are
 * flat int64_t, allocated once per call and only when a step needs them
 * (fresh pages cost as much as a sweep at n = 10^6), "seen" marks are
 * stamped with the vertex or a running tick rather than cleared, and the
 * dynamic orders keep their vertices in bucket queues.
 *
 * SPDX-License-Identifier: MIT
 */
#include "sparse/sparse.h"

#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Memory: every array of a call comes from one pool, so that any failure  */
/* releases everything with a single call; a failure sticks, so that a run  */
/* of allocations is checked once.                                          */
/* ------------------------------------------------------------------------ */

enum { POOL_MAX = 40 };

typedef struct pool {
    const jac_allocator *al;
    int count;
    bool failed;
    void *blocks[POOL_MAX];
} pool;

static int64_t *pool_get(pool *p, int64_t count)
{
    void *block = NULL;
    /* One spare element: a zero-length array is still a distinct block. */
    if (count >= 0 && (uint64_t)count < SIZE_MAX / sizeof(int64_t) - 1 &&
        p->count < POOL_MAX)
        block =
            p->al->alloc(((size_t)count + 1) * sizeof(int64_t), p->al->user);
    if (block != NULL)
        p->blocks[p->count++] = block;
    else
        p->failed = true;
    return block;
}

/* *a, allocated on first use; false when out of memory. */
static bool pool_need(pool *p, int64_t **a, int64_t count)
{
    if (*a == NULL)
        *a = pool_get(p, count);
    return *a != NULL;
}

static void pool_release(pool *p)
{
    while (p->count > 0)
        p->al->free(p->blocks[--p->count], p->al->user);
}

static void fill(int64_t *a, int64_t n, int64_t value)
{
    for (int64_t i = 0; i < n; i++)
        a[i] = value;
}

/* ------------------------------------------------------------------------ */
/* Graphs                                                                   */
/* ------------------------------------------------------------------------ */

/* The graph a colouring works on. A distance-2 graph reaches the
 * neighbours of vertex v through its nets idx[ptr[v] .. ptr[v + 1]), net
 * r holding the vertices nidx[nptr[r] .. nptr[r + 1]): columns through
 * rows, or rows through columns. A closed one is an adjacency (nptr ==
 * ptr) whose vertices also count as nets of themselves, so that v reaches
 * N(v) and N(w) for each w in N(v): its distance-2 colouring is one of the
 * symmetric matrix with its diagonal. A distance-1 graph (nptr NULL)
 * lists the neighbours of v at idx[ptr[v] .. ptr[v + 1]). */
typedef struct cgraph {
    int64_t n;
    const int64_t *ptr, *idx;
    const int64_t *nptr, *nidx;
    bool closed;
} cgraph;

/* The transpose of an nrows x ncols pattern, rows ascending in each
 * column since the rows are scanned in order. */
static int transpose(pool *p, int64_t nrows, int64_t ncols, const int64_t *ptr,
                     const int64_t *idx, int64_t **tptr, int64_t **tidx)
{
    int64_t nnz = ptr[nrows];
    int64_t *tp = pool_get(p, ncols + 1), *ti = pool_get(p, nnz);
    if (tp == NULL || ti == NULL)
        return -1;
    fill(tp, ncols + 1, 0);
    for (int64_t k = 0; k < nnz; k++)
        tp[idx[k] + 1]++;
    for (int64_t c = 0; c < ncols; c++)
        tp[c + 1] += tp[c];
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t k = ptr[r]; k < ptr[r + 1]; k++)
            ti[tp[idx[k]]++] = r;
    for (int64_t c = ncols; c > 0; c--)
        tp[c] = tp[c - 1];
    tp[0] = 0;
    *tptr = tp;
    *tidx = ti;
    return 0;
}

/* The adjacency graph of a square pattern, without the diagonal, and for
 * each of its positions the mirror: mirror[p] is where (j, i) is stored
 * when p stores (i, j). */
typedef struct sym {
    int64_t n;
    int64_t *ptr, *idx, *mirror;
} sym;

/* Pairs each entry (i, j) of a square pattern, i != j, with its mirror
 * (j, i), by a cursor per row: rows are visited in order, so the entries
 * (j, i) of row j with i > j are met in their stored order. Records the
 * pairs in mirror when not NULL; false when some entry has no mirror (the
 * pattern is not symmetric). The diagonal is skipped. */
static bool pair_up(int64_t n, const int64_t *ptr, const int64_t *idx,
                    int64_t *cursor, int64_t *mirror)
{
    for (int64_t j = 0; j < n; j++) {
        int64_t k = ptr[j];
        while (k < ptr[j + 1] && idx[k] <= j)
            k++;
        cursor[j] = k;
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = ptr[i]; k < ptr[i + 1] && idx[k] < i; k++) {
            int64_t j = idx[k], r = cursor[j]++;
            if (r == ptr[j + 1] || idx[r] != i)
                return false;
            if (mirror != NULL) {
                mirror[k] = r;
                mirror[r] = k;
            }
        }
    for (int64_t j = 0; j < n; j++)
        if (cursor[j] != ptr[j + 1])
            return false;
    return true;
}

/* Row i of the union of pat and its transpose (tptr, tidx), less the
 * diagonal, into out when not NULL; its length. */
static int64_t merged_row(const jac__csr *pat, const int64_t *tptr,
                          const int64_t *tidx, int64_t i, int64_t *out)
{
    int64_t a = pat->ptr[i], ae = pat->ptr[i + 1];
    int64_t b = tptr[i], be = tptr[i + 1], k = 0;
    while (a < ae || b < be) {
        int64_t j;
        if (b == be || (a < ae && pat->idx[a] < tidx[b])) {
            j = pat->idx[a++];
        } else if (a == ae || tidx[b] < pat->idx[a]) {
            j = tidx[b++];
        } else {
            j = pat->idx[a++];
            b++;
        }
        if (j != i) {
            if (out != NULL)
                out[k] = j;
            k++;
        }
    }
    return k;
}

/* A symmetric pattern gives its adjacency by dropping the diagonal; any
 * other is first made symmetric as the union with its transpose (so that
 * a pattern given as one triangle still yields the whole graph). */
static int build_sym(pool *p, const jac__csr *pat, sym *s)
{
    int64_t n = pat->nrows, m = 0, *tptr, *tidx;
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = pat->ptr[i]; k < pat->ptr[i + 1]; k++)
            m += pat->idx[k] != i;
    s->n = n;
    s->ptr = pool_get(p, n + 1);
    s->idx = pool_get(p, m);
    s->mirror = pool_get(p, m);
    int64_t *cursor = pool_get(p, n);
    if (p->failed)
        return -1;
    m = 0;
    s->ptr[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t k = pat->ptr[i]; k < pat->ptr[i + 1]; k++)
            if (pat->idx[k] != i)
                s->idx[m++] = pat->idx[k];
        s->ptr[i + 1] = m;
    }
    if (pair_up(n, s->ptr, s->idx, cursor, s->mirror))
        return 0;

    if (transpose(p, n, n, pat->ptr, pat->idx, &tptr, &tidx) != 0)
        return -1;
    for (int64_t i = 0; i < n; i++)
        s->ptr[i + 1] = s->ptr[i] + merged_row(pat, tptr, tidx, i, NULL);
    s->idx = pool_get(p, s->ptr[n]);
    s->mirror = pool_get(p, s->ptr[n]);
    if (p->failed)
        return -1;
    for (int64_t i = 0; i < n; i++)
        merged_row(pat, tptr, tidx, i, s->idx + s->ptr[i]);
    return pair_up(n, s->ptr, s->idx, cursor, s->mirror) ? 0 : -1;
}

/* ------------------------------------------------------------------------ */
/* Vertex orders                                                            */
/* ------------------------------------------------------------------------ */

/* What the colourings of one call share: the graphs, the scratch (each
 * array allocated on first use, sized for n vertices: colours, degrees
 * and ticks all fit in n + 2) and the best colouring so far. */
typedef struct search {
    pool p;
    int64_t n;
    const cgraph *d2; /* the distance-2 graph */
    const sym *g;     /* star and acyclic: the adjacency */
    cgraph d1;        /* the same as a distance-1 graph */
    int64_t *ord;     /* the vertex order (NULL: natural) */
    int64_t *ord_buf; /* where it is kept when not natural */
    int64_t *key;     /* degree, or -1 once a vertex left its queue */
    int64_t *next, *prev, *head; /* bucket queue: doubly linked by key */
    int64_t *mark; /* tick of the last neighbour listing that saw v */
    int64_t *buf;  /* that listing */
    int64_t tick;
    int64_t *forb; /* forb[c + 1] == v: colour c is forbidden for v */
    int64_t *when; /* position in the order of each coloured vertex */
    int64_t *stamp, *stamp2, *aux; /* per colour, stamped by vertex */
    int64_t *star, *hub;           /* star colouring */
    int64_t *parent, *size, *from_v, *from_w; /* acyclic colouring */
    int64_t *colour;                          /* the caller's array */
    int64_t *trial;                           /* the other buffer */
    int64_t *best_at; /* which of the two holds the best so far */
    int64_t best;
    int64_t bound; /* no colouring of the kind has fewer colours */
    int64_t cyc;   /* colours of the cyclic rule: a distance-2 bound */
} search;

/* The distinct neighbours of v other than v, in *out; their number. A
 * distance-1 graph answers with its row, a distance-2 one gathers the
 * vertices of v's nets into s->buf under a fresh tick. */
static int64_t neighbours(search *s, const cgraph *g, int64_t v,
                          const int64_t **out)
{
    if (g->nptr == NULL) {
        *out = g->idx + g->ptr[v];
        return g->ptr[v + 1] - g->ptr[v];
    }
    int64_t t = s->tick++, k = 0;
    s->mark[v] = t;
    for (int64_t a = g->ptr[v]; a < g->ptr[v + 1]; a++) {
        int64_t r = g->idx[a], b = g->nptr[r] - (g->closed ? 1 : 0);
        for (; b < g->nptr[r + 1]; b++) {
            int64_t u = b < g->nptr[r] ? r : g->nidx[b];
            if (s->mark[u] != t) {
                s->mark[u] = t;
                s->buf[k++] = u;
            }
        }
    }
    *out = s->buf;
    return k;
}

/* Degrees into s->key; the largest. */
static int64_t degrees(search *s, const cgraph *g)
{
    int64_t maxdeg = 0;
    for (int64_t v = 0; v < g->n; v++) {
        const int64_t *nb;
        s->key[v] = neighbours(s, g, v, &nb);
        if (s->key[v] > maxdeg)
            maxdeg = s->key[v];
    }
    return maxdeg;
}

static void bq_push(search *s, int64_t v, int64_t k)
{
    s->key[v] = k;
    s->prev[v] = -1;
    s->next[v] = s->head[k];
    if (s->head[k] >= 0)
        s->prev[s->head[k]] = v;
    s->head[k] = v;
}

static void bq_pop(search *s, int64_t v)
{
    if (s->prev[v] >= 0)
        s->next[s->prev[v]] = s->next[v];
    else
        s->head[s->key[v]] = s->next[v];
    if (s->next[v] >= 0)
        s->prev[s->next[v]] = s->prev[v];
    s->key[v] = -1;
}

/* Largest first (Welsh and Powell): by decreasing degree in the graph
 * coloured (for distance-2 colourings the exact distance-2 degree, not a
 * proxy), ties in vertex order; a counting sort. */
static void order_largest_first(search *s, const cgraph *g)
{
    int64_t n = g->n, maxdeg = degrees(s, g), *count = s->head;
    fill(count, maxdeg + 1, 0);
    for (int64_t v = 0; v < n; v++)
        count[maxdeg - s->key[v]]++;
    int64_t sum = 0;
    for (int64_t d = 0; d <= maxdeg; d++) {
        int64_t c = count[d];
        count[d] = sum;
        sum += c;
    }
    for (int64_t v = 0; v < n; v++)
        s->ord[count[maxdeg - s->key[v]]++] = v;
}

/* Smallest last (Matula and Beck): repeatedly remove a vertex of least
 * degree in what remains; colour in the reverse of removal. The least
 * degree drops by at most one per removal, so the scan for it is linear
 * overall. */
static void order_smallest_last(search *s, const cgraph *g)
{
    int64_t n = g->n, maxdeg = degrees(s, g), low = 0;
    fill(s->head, maxdeg + 1, -1);
    for (int64_t v = n - 1; v >= 0; v--)
        bq_push(s, v, s->key[v]);
    for (int64_t pos = n - 1; pos >= 0; pos--) {
        while (s->head[low] < 0)
            low++;
        int64_t v = s->head[low];
        bq_pop(s, v);
        s->ord[pos] = v;
        const int64_t *nb;
        int64_t m = neighbours(s, g, v, &nb);
        for (int64_t a = 0; a < m; a++) {
            int64_t u = nb[a], k = s->key[u];
            if (k > 0) {
                bq_pop(s, u);
                bq_push(s, u, k - 1);
            }
        }
        if (low > 0)
            low--;
    }
}

/* Incidence degree (Coleman and More): next the vertex with the most
 * neighbours already ordered, starting from one of largest degree; the
 * largest incidence rises by at most one per update, so the scan down for
 * it is linear overall. */
static void order_incidence(search *s, const cgraph *g)
{
    int64_t n = g->n, high = 0, first = 0;
    degrees(s, g);
    for (int64_t v = 1; v < n; v++)
        if (s->key[v] > s->key[first])
            first = v;
    fill(s->head, n + 1, -1);
    for (int64_t v = n - 1; v >= 0; v--)
        if (v != first)
            bq_push(s, v, 0);
    bq_push(s, first, 0);
    for (int64_t pos = 0; pos < n; pos++) {
        while (s->head[high] < 0)
            high--;
        int64_t v = s->head[high];
        bq_pop(s, v);
        s->ord[pos] = v;
        const int64_t *nb;
        int64_t m = neighbours(s, g, v, &nb);
        for (int64_t a = 0; a < m; a++) {
            int64_t u = nb[a], k = s->key[u];
            if (k >= 0) {
                bq_pop(s, u);
                bq_push(s, u, k + 1);
                if (k + 1 > high)
                    high = k + 1;
            }
        }
    }
}

/* The order into s->ord (left NULL for the natural order, which also
 * stands in for values outside jac_color_order); -1 when out of memory. */
static int make_order(search *s, const cgraph *g, int order)
{
    pool *p = &s->p;
    int64_t n = g->n;
    s->ord = NULL;
    if (order != JAC_ORDER_LARGEST_FIRST && order != JAC_ORDER_SMALLEST_LAST &&
        order != JAC_ORDER_INCIDENCE_DEGREE)
        return 0;
    pool_need(p, &s->ord_buf, n);
    pool_need(p, &s->key, n);
    pool_need(p, &s->head, n + 1);
    if (order != JAC_ORDER_LARGEST_FIRST) {
        pool_need(p, &s->next, n);
        pool_need(p, &s->prev, n);
    }
    if (g->nptr != NULL && s->mark == NULL) {
        pool_need(p, &s->buf, n);
        if (pool_need(p, &s->mark, n))
            fill(s->mark, n, -1);
    }
    if (p->failed)
        return -1;
    s->ord = s->ord_buf;
    if (order == JAC_ORDER_LARGEST_FIRST)
        order_largest_first(s, g);
    else if (order == JAC_ORDER_SMALLEST_LAST)
        order_smallest_last(s, g);
    else
        order_incidence(s, g);
    return 0;
}

/* The smallest colour not forbidden for v. */
static int64_t first_free(const int64_t *forb, int64_t v, int64_t from)
{
    int64_t c = from;
    while (forb[c + 1] == v)
        c++;
    return c;
}

/* ------------------------------------------------------------------------ */
/* Distance-2 colouring                                                     */
/* ------------------------------------------------------------------------ */

/* Greedy distance-2 colouring (GMP section 3): a vertex avoids the colour
 * of every vertex sharing a net with it. For columns through rows this is
 * the partial distance-2 colouring of the bipartite graph (Curtis, Powell
 * and Reid's grouping, as Coleman and More cast it as graph colouring);
 * for a closed adjacency it is a distance-2 colouring, which is also a
 * star colouring.
 *
 * Two rules choose among the allowed colours. First fit takes the
 * smallest. The cyclic rule (cyc > 0, the lower bound of the pattern)
 * takes the first allowed colour after the colour of the neighbour
 * coloured last, cyclically in 0 .. cyc - 1, and only above those when
 * none is allowed. First fit in the natural order colours the first
 * grid line of a 5-point stencil 0 1 2 0 1 2 ... and then needs 7
 * colours; the cyclic rule repeats along each line the succession the
 * neighbours already show, which lays down the lattice colourings
 * (x + 2 y mod 5 for the 5-point stencil, x + 3 y mod 9 for the 9-point
 * one) that meet the bound, on grids of any shape. */
static int64_t greedy_d2(search *s, int64_t cyc, int64_t *colour)
{
    const cgraph *g = s->d2;
    const int64_t *ptr = g->ptr, *idx = g->idx, *nptr = g->nptr;
    const int64_t *nidx = g->nidx, *ord = s->ord;
    int64_t *forb = s->forb, n = g->n, ncolors = 0;
    /* Times are only needed to find the latest neighbour off the natural
     * order. */
    int64_t *when = cyc > 0 && ord != NULL ? s->when : NULL;
    fill(colour, n, -1);
    fill(forb, n + 2, -1);
    if (when != NULL)
        fill(when, n, -1);
    for (int64_t t = 0; t < n; t++) {
        int64_t v = ord == NULL ? t : ord[t], latest = -1, c;
        if (ord == NULL) {
            /* Rows are sorted (as jac__csr promises) and the vertices
             * before v are the coloured ones: each net's coloured members
             * are a prefix, its last one the latest. */
            for (int64_t a = ptr[v]; a < ptr[v + 1]; a++) {
                int64_t r = idx[a], b = nptr[r], e = nptr[r + 1];
                if (g->closed && r < v) {
                    forb[colour[r] + 1] = v;
                    latest = r > latest ? r : latest;
                }
                for (; b < e && nidx[b] < v; b++)
                    forb[colour[nidx[b]] + 1] = v;
                if (b > nptr[r] && nidx[b - 1] > latest)
                    latest = nidx[b - 1];
            }
        } else {
            /* In a closed graph the net r also holds r itself. */
            int64_t at = -1;
            for (int64_t a = ptr[v]; a < ptr[v + 1]; a++) {
                int64_t r = idx[a], b = nptr[r] - (g->closed ? 1 : 0);
                for (; b < nptr[r + 1]; b++) {
                    int64_t u = b < nptr[r] ? r : nidx[b];
                    forb[colour[u] + 1] = v;
                    if (when != NULL && when[u] > at) {
                        at = when[u];
                        latest = u;
                    }
                }
            }
        }
        if (cyc > 0) {
            int64_t start = latest < 0 ? cyc - 1 : colour[latest] % cyc;
            c = -1;
            for (int64_t d = 1; d <= cyc && c < 0; d++) {
                int64_t k = start + d < cyc ? start + d : start + d - cyc;
                if (forb[k + 1] != v)
                    c = k;
            }
            if (c < 0)
                c = first_free(forb, v, cyc);
            if (when != NULL)
                when[v] = t;
        } else {
            c = first_free(forb, v, 0);
        }
        colour[v] = c;
        if (c >= ncolors)
            ncolors = c + 1;
    }
    return ncolors;
}

/* ------------------------------------------------------------------------ */
/* Star colouring                                                           */
/* ------------------------------------------------------------------------ */

/* Greedy star colouring with two-coloured stars (GTMP section 4). The
 * edges between two colour classes must form stars; each star keeps its
 * hub (its centre, or -1 while it is a single edge). Colouring v with c
 * adds the edges from v to its coloured neighbours w (colour a):
 * - if v has two or more neighbours of colour a, v becomes the hub of a
 *   new (a, c) star, so no such w may already have a neighbour of colour
 *   c: every colour next to w is forbidden;
 * - if w is v's only neighbour of colour a, v joins w's (a, c) star as a
 *   leaf, which needs w to be its hub: a colour x next to w is forbidden
 *   when x is the hub of the star holding the edge (w, x).
 * A two-coloured path on four vertices would break one of these when its
 * last vertex was coloured, so the result is a star colouring. Work is
 * the sum over vertices of deg(w)^2, as for distance-2 colouring.
 *
 * stamp[a] is 2 v when v has one neighbour of colour a and 2 v + 1 when
 * it has more; stamp2[a] == v says that aux[a] is the new star of v with
 * colour a. */
static int64_t greedy_star(search *s, int64_t *colour)
{
    const sym *g = s->g;
    const int64_t *ptr = g->ptr, *idx = g->idx, *ord = s->ord;
    int64_t *forb = s->forb, *stamp = s->stamp, *star = s->star;
    int64_t *hub = s->hub, n = g->n, ncolors = 0, nstars = 0;
    fill(colour, n, -1);
    fill(forb, n + 2, -1);
    fill(stamp, n + 1, -1);
    fill(s->stamp2, n + 1, -1);
    for (int64_t t = 0; t < n; t++) {
        int64_t v = ord == NULL ? t : ord[t];
        for (int64_t p = ptr[v]; p < ptr[v + 1]; p++) {
            int64_t a = colour[idx[p]];
            if (a >= 0) {
                forb[a + 1] = v;
                bool again = stamp[a] == 2 * v || stamp[a] == 2 * v + 1;
                stamp[a] = again ? 2 * v + 1 : 2 * v;
            }
        }
        for (int64_t p = ptr[v]; p < ptr[v + 1]; p++) {
            int64_t w = idx[p], a = colour[w];
            if (a < 0)
                continue;
            bool many = stamp[a] == 2 * v + 1;
            for (int64_t q = ptr[w]; q < ptr[w + 1]; q++) {
                int64_t x = idx[q], b = colour[x];
                if (b >= 0 && x != v && (many || hub[star[q]] == x))
                    forb[b + 1] = v;
            }
        }
        int64_t c = first_free(forb, v, 0);
        colour[v] = c;
        if (c >= ncolors)
            ncolors = c + 1;

        /* The new edges join their stars. */
        for (int64_t p = ptr[v]; p < ptr[v + 1]; p++) {
            int64_t w = idx[p], a = colour[w], st = -1;
            if (a < 0)
                continue;
            if (stamp[a] == 2 * v + 1) {
                if (s->stamp2[a] != v) {
                    s->stamp2[a] = v;
                    s->aux[a] = nstars;
                    hub[nstars++] = v;
                }
                st = s->aux[a];
            } else {
                for (int64_t q = ptr[w]; q < ptr[w + 1] && st < 0; q++)
                    if (colour[idx[q]] == c && idx[q] != v)
                        st = star[q];
                if (st >= 0) {
                    hub[st] = w;
                } else {
                    st = nstars++;
                    hub[st] = -1;
                }
            }
            star[p] = st;
            star[g->mirror[p]] = st;
        }
    }
    return ncolors;
}

/* ------------------------------------------------------------------------ */
/* Acyclic colouring                                                        */
/* ------------------------------------------------------------------------ */

/* Greedy acyclic colouring with two-coloured trees (GTMP section 3). The
 * edges between two colour classes must form a forest; its trees are the
 * sets of a union-find over edges (an edge is named by its position in
 * the lower triangle of the adjacency). Colouring v with c closes a cycle
 * exactly when two neighbours of v of one colour a lie in the same (a, c)
 * tree; that tree is met through both, as the tree of an edge (w, x) with
 * x of colour c, so c is forbidden when one tree is reached through two
 * different neighbours of v. Afterwards the edges from v to its
 * neighbours of colour a join each other and the (a, c) tree of each
 * such neighbour.
 *
 * stamp[a] == v says that aux[a] is an edge from v to colour a. */
static int64_t uf_find(int64_t *parent, int64_t e)
{
    while (parent[e] != e) {
        parent[e] = parent[parent[e]]; /* path halving */
        e = parent[e];
    }
    return e;
}

static void uf_union(search *s, int64_t a, int64_t b)
{
    a = uf_find(s->parent, a);
    b = uf_find(s->parent, b);
    if (a == b)
        return;
    if (s->size[a] < s->size[b]) {
        int64_t t = a;
        a = b;
        b = t;
    }
    s->parent[b] = a;
    s->size[a] += s->size[b];
}

static int64_t edge_id(const sym *g, int64_t p)
{
    return g->mirror[p] < p ? g->mirror[p] : p;
}

static int64_t greedy_acyclic(search *s, int64_t *colour)
{
    const sym *g = s->g;
    const int64_t *ptr = g->ptr, *idx = g->idx, *ord = s->ord;
    int64_t *forb = s->forb, n = g->n, m = ptr[n], ncolors = 0;
    fill(colour, n, -1);
    fill(forb, n + 2, -1);
    fill(s->stamp, n + 1, -1);
    fill(s->from_v, m, -1);
    for (int64_t e = 0; e < m; e++) {
        s->parent[e] = e;
        s->size[e] = 1;
    }
    for (int64_t t = 0; t < n; t++) {
        int64_t v = ord == NULL ? t : ord[t];
        for (int64_t p = ptr[v]; p < ptr[v + 1]; p++)
            forb[colour[idx[p]] + 1] = v;
        for (int64_t p = ptr[v]; p < ptr[v + 1]; p++) {
            int64_t w = idx[p];
            if (colour[w] < 0)
                continue;
            for (int64_t q = ptr[w]; q < ptr[w + 1]; q++) {
                int64_t x = idx[q], b = colour[x];
                /* A colour already forbidden needs no second reason. */
                if (b < 0 || x == v || forb[b + 1] == v)
                    continue;
                int64_t root = uf_find(s->parent, edge_id(g, q));
                if (s->from_v[root] != v) {
                    s->from_v[root] = v;
                    s->from_w[root] = w;
                } else if (s->from_w[root] != w) {
                    forb[b + 1] = v;
                }
            }
        }
        int64_t c = first_free(forb, v, 0);
        colour[v] = c;
        if (c >= ncolors)
            ncolors = c + 1;

        for (int64_t p = ptr[v]; p < ptr[v + 1]; p++) {
            int64_t w = idx[p], a = colour[w], e = edge_id(g, p);
            if (a < 0)
                continue;
            if (s->stamp[a] != v) {
                s->stamp[a] = v;
                s->aux[a] = e;
            } else {
                uf_union(s, e, s->aux[a]);
            }
            for (int64_t q = ptr[w]; q < ptr[w + 1]; q++)
                if (colour[idx[q]] == c && idx[q] != v) {
                    uf_union(s, e, edge_id(g, q));
                    break;
                }
        }
    }
    return ncolors;
}

/* ------------------------------------------------------------------------ */
/* Trying orders                                                            */
/* ------------------------------------------------------------------------ */

/* What one try colours: kinds are nested (a distance-2 colouring is a
 * star colouring, a star colouring is acyclic); the distance-2 kind is
 * tried with the cyclic colour choice and with first fit. */
enum { KIND_D2_CYCLIC, KIND_D2, KIND_STAR, KIND_ACYCLIC };

/* The orders in the sequence JAC_ORDER_BEST tries them: the natural order
 * first, as it costs no ordering and sweeps memory in order. */
static const int best_orders[] = {JAC_ORDER_NATURAL, JAC_ORDER_SMALLEST_LAST,
                                  JAC_ORDER_INCIDENCE_DEGREE,
                                  JAC_ORDER_LARGEST_FIRST};

/* One colouring of the given kind and order into whichever buffer does
 * not hold the best so far, kept when it beats it. Returns 1 once the
 * lower bound is met, 0 to go on, -1 when out of memory. */
static int try_one(search *s, int kind, int order)
{
    pool *p = &s->p;
    int64_t n = s->n, m = s->g != NULL ? s->g->ptr[n] : 0, k;
    int64_t *into = s->colour;
    if (s->best_at != NULL && pool_need(p, &s->trial, n))
        into = s->best_at == s->colour ? s->trial : s->colour;
    pool_need(p, &s->forb, n + 2);
    if (kind >= KIND_STAR) {
        pool_need(p, &s->stamp, n + 1);
        pool_need(p, &s->aux, n + 1);
    }
    if (kind == KIND_STAR) {
        pool_need(p, &s->stamp2, n + 1);
        pool_need(p, &s->star, m);
        pool_need(p, &s->hub, m / 2 + 1);
    } else if (kind == KIND_ACYCLIC) {
        pool_need(p, &s->parent, m);
        pool_need(p, &s->size, m);
        pool_need(p, &s->from_v, m);
        pool_need(p, &s->from_w, m);
    }
    /* Star and acyclic colourings order by the degrees of the graph they
     * colour, distance-2 colourings by distance-2 degrees. */
    if (p->failed || make_order(s, kind >= KIND_STAR ? &s->d1 : s->d2, order))
        return -1;
    /* The cyclic rule off the natural order needs the times. */
    if (kind == KIND_D2_CYCLIC && s->ord != NULL && !pool_need(p, &s->when, n))
        return -1;
    if (kind == KIND_D2_CYCLIC)
        k = greedy_d2(s, s->cyc, into);
    else if (kind == KIND_D2)
        k = greedy_d2(s, 0, into);
    else if (kind == KIND_STAR)
        k = greedy_star(s, into);
    else
        k = greedy_acyclic(s, into);
    if (k < s->best) {
        s->best = k;
        s->best_at = into;
    }
    return s->best <= s->bound;
}

/* Tries order with kind, or under JAC_ORDER_BEST every order with kind
 * and then with each kind nested in it, stopping at the lower bound. A
 * distance-2 colouring is tried with the cyclic rule, then first fit
 * (both under a single order too, unless the first meets the bound). Returns
 * the fewest colours, left in s->colour, or -1 when out of memory. */
static int64_t run(search *s, int order, int kind)
{
    const int norders = (int)(sizeof best_orders / sizeof *best_orders);
    int found = 0;
    s->best = INT64_MAX;
    s->best_at = NULL;
    if (s->n == 0)
        return 0;
    for (int top = kind; top >= KIND_D2 && found == 0; top--)
        for (int o = 0; o < norders && found == 0; o++) {
            int ord = order == JAC_ORDER_BEST ? best_orders[o] : order;
            if (order != JAC_ORDER_BEST && (o > 0 || top < kind))
                break;
            /* Within star and acyclic searches, distance-2 colourings
             * take twice the colours of star ones on irregular patterns
             * and tie on stencils: they are tried in the natural order
             * only, which needs no distance-2 ordering. */
            if (top == KIND_D2 && kind != KIND_D2 && o > 0)
                break;
            found = try_one(s, top == KIND_D2 ? KIND_D2_CYCLIC : top, ord);
            if (found == 0 && top == KIND_D2)
                found = try_one(s, KIND_D2, ord);
        }
    if (found < 0)
        return -1;
    if (s->best_at != s->colour)
        memcpy(s->colour, s->best_at, (size_t)s->n * sizeof *s->colour);
    return s->best;
}

/* ------------------------------------------------------------------------ */
/* Entry points: colourings                                                 */
/* ------------------------------------------------------------------------ */

/* Columns of pat, or its rows (by_rows), each vertex reaching the others
 * through the nets it lies in (rows for columns, columns for rows). Lower
 * bound: a net's vertices pairwise conflict, so the largest net needs as
 * many colours. */
static int64_t colour_bipartite(const jac_allocator *al, const jac__csr *pat,
                                bool by_rows, int order, int64_t *colour)
{
    search s;
    int64_t nv = by_rows ? pat->nrows : pat->ncols, result = -1;
    int64_t *tptr = NULL, *tidx = NULL;
    memset(&s, 0, sizeof s);
    s.p.al = al;
    if (!pool_need(&s.p, &s.forb, (nv > pat->ncols ? nv : pat->ncols) + 2))
        goto out;
    /* No two vertices in conflict (a diagonal, say): one colour, and no
     * graph to build. */
    bool apart = true;
    if (!by_rows) {
        for (int64_t r = 0; r < pat->nrows && apart; r++)
            apart = pat->ptr[r + 1] - pat->ptr[r] <= 1;
    } else {
        memset(s.forb, 0, (size_t)pat->ncols * sizeof(int64_t));
        for (int64_t t = 0; t < pat->ptr[pat->nrows] && apart; t++)
            apart = ++s.forb[pat->idx[t]] <= 1;
    }
    if (apart) {
        for (int64_t v = 0; v < nv; v++)
            colour[v] = 0;
        result = nv > 0 ? 1 : 0;
        goto out;
    }
    /* A symmetric pattern is its own transpose: the check needs one array
     * of n, which serves as forb afterwards, where the transpose would
     * cost a sweep and nnz more memory. */
    if (pat->nrows == pat->ncols &&
        pair_up(nv, pat->ptr, pat->idx, s.forb, NULL)) {
        tptr = pat->ptr;
        tidx = pat->idx;
    } else if (transpose(&s.p, pat->nrows, pat->ncols, pat->ptr, pat->idx,
                         &tptr, &tidx) != 0) {
        goto out;
    }
    cgraph d2 = {nv, tptr, tidx, pat->ptr, pat->idx, false};
    if (by_rows)
        d2 = (cgraph){nv, pat->ptr, pat->idx, tptr, tidx, false};
    s.n = nv;
    s.d2 = &d2;
    s.colour = colour;
    s.bound = nv > 0 ? 1 : 0;
    for (int64_t r = 0; r < (by_rows ? pat->ncols : pat->nrows); r++)
        if (d2.nptr[r + 1] - d2.nptr[r] > s.bound)
            s.bound = d2.nptr[r + 1] - d2.nptr[r];
    s.cyc = s.bound;
    result = run(&s, order, KIND_D2);
out:
    pool_release(&s.p);
    return result;
}

int64_t jac__color_columns(const jac_allocator *al, const jac__csr *pat,
                           int order, int64_t *colour)
{
    return colour_bipartite(al, pat, false, order, colour);
}

int64_t jac__color_rows(const jac_allocator *al, const jac__csr *pat, int order,
                        int64_t *colour)
{
    return colour_bipartite(al, pat, true, order, colour);
}

/* A lower bound on the colours of a colouring of g of the given kind
 * (star, or acyclic, which any star colouring also is): 2 with an edge;
 * 3 with a cycle, and for a star colouring also with a path on four
 * vertices (an edge whose ends both have another neighbour: a triangle
 * or such a path); and, as the edges between two classes of k form a
 * forest, the least k with (k - 1) n - k (k - 1) / 2 >= m for m edges.
 * -1 when out of memory. */
static int64_t lower_bound(pool *pl, const sym *g, int kind)
{
    int64_t n = g->n, m = g->ptr[n] / 2, bound = n > 0 ? 1 : 0, k = 1;
    if (m > 0)
        bound = 2;
    for (int64_t i = 0; i < n && kind == KIND_STAR && bound < 3; i++)
        for (int64_t p = g->ptr[i]; p < g->ptr[i + 1]; p++) {
            int64_t j = g->idx[p];
            if (g->ptr[i + 1] - g->ptr[i] >= 2 &&
                g->ptr[j + 1] - g->ptr[j] >= 2)
                bound = 3;
        }
    if (bound < 3 && m > 0) {
        /* A cycle: an edge joining two vertices already connected. */
        int64_t *parent = pool_get(pl, n);
        if (parent == NULL)
            return -1;
        for (int64_t v = 0; v < n; v++)
            parent[v] = v;
        for (int64_t i = 0; i < n; i++)
            for (int64_t p = g->ptr[i]; p < g->ptr[i + 1] && bound < 3; p++)
                if (g->idx[p] < i) {
                    int64_t a = uf_find(parent, i);
                    int64_t b = uf_find(parent, g->idx[p]);
                    bound = a == b ? 3 : bound;
                    parent[a] = b;
                }
    }
    while (k < n && (k - 1) * n - k * (k - 1) / 2 < m)
        k++;
    return k > bound ? k : bound;
}

static int64_t colour_symmetric(const jac_allocator *al, const jac__csr *pat,
                                int order, int kind, int64_t *colour)
{
    search s;
    sym g;
    int64_t result = -1;
    memset(&s, 0, sizeof s);
    s.p.al = al;
    if (build_sym(&s.p, pat, &g) == 0) {
        cgraph d2 = {g.n, g.ptr, g.idx, g.ptr, g.idx, true};
        s.n = g.n;
        s.g = &g;
        s.d2 = &d2;
        s.d1 = (cgraph){g.n, g.ptr, g.idx, NULL, NULL, false};
        s.colour = colour;
        s.bound = lower_bound(&s.p, &g, kind);
        /* A closed neighbourhood is a clique of the distance-2 graph. */
        for (int64_t i = 0; i < g.n; i++)
            if (g.ptr[i + 1] - g.ptr[i] + 1 > s.cyc)
                s.cyc = g.ptr[i + 1] - g.ptr[i] + 1;
        if (s.bound >= 0)
            result = run(&s, order, kind);
    }
    pool_release(&s.p);
    return result;
}

int64_t jac__color_star(const jac_allocator *al, const jac__csr *pat, int order,
                        int64_t *colour)
{
    return colour_symmetric(al, pat, order, KIND_STAR, colour);
}

int64_t jac__color_acyclic(const jac_allocator *al, const jac__csr *pat,
                           int order, int64_t *colour)
{
    return colour_symmetric(al, pat, order, KIND_ACYCLIC, colour);
}

/* ------------------------------------------------------------------------ */
/* Direct recovery                                                          */
/* ------------------------------------------------------------------------ */

/* src doubles as the scratch of jac__star_sources, which has no
 * allocator: the slots of row i first hold the colours of its columns,
 * sorted, and the answers about entry k are then set as flag bits above
 * the colours (which stay below 2^61, as a colour is below n). */
#define FLAG_ROW ((int64_t)1 << 62) /* read from row i: B[c(j) n + i] */
#define FLAG_COL ((int64_t)1 << 61) /* read from row j: B[c(i) n + j] */
#define LOW_BITS (FLAG_COL - 1)

static void sift_down(int64_t *a, int64_t root, int64_t len)
{
    for (;;) {
        int64_t child = 2 * root + 1;
        if (child >= len)
            return;
        if (child + 1 < len && a[child + 1] > a[child])
            child++;
        if (a[root] >= a[child])
            return;
        int64_t t = a[root];
        a[root] = a[child];
        a[child] = t;
        root = child;
    }
}

/* Sorts a[0 .. len) in place (a heap sort: no allocator here). */
static void sort_int64(int64_t *a, int64_t len)
{
    for (int64_t r = len / 2 - 1; r >= 0; r--)
        sift_down(a, r, len);
    for (int64_t end = len - 1; end > 0; end--) {
        int64_t t = a[0];
        a[0] = a[end];
        a[end] = t;
        sift_down(a, 0, end);
    }
}

/* Whether value occurs exactly once in the sorted low bits of
 * a[lo .. hi). */
static bool unique_in(const int64_t *a, int64_t lo, int64_t hi, int64_t value)
{
    int64_t l = lo, h = hi;
    while (l < h) {
        int64_t mid = l + (h - l) / 2;
        if ((a[mid] & LOW_BITS) < value)
            l = mid + 1;
        else
            h = mid;
    }
    return l < hi && (a[l] & LOW_BITS) == value &&
           (l + 1 == hi || (a[l + 1] & LOW_BITS) != value);
}

int64_t jac__csr_find(const jac__csr *pat, int64_t i, int64_t j)
{
    int64_t l = pat->ptr[i], h = pat->ptr[i + 1];
    while (l < h) {
        int64_t mid = l + (h - l) / 2;
        if (pat->idx[mid] < j)
            l = mid + 1;
        else
            h = mid;
    }
    return l < pat->ptr[i + 1] && pat->idx[l] == j ? l : -1;
}

static bool colours_valid(int64_t n, const int64_t *colour, int64_t ncolors)
{
    int64_t limit = ncolors < n ? ncolors : n;
    for (int64_t v = 0; v < n; v++)
        if (colour[v] < 0 || colour[v] >= limit)
            return false;
    return true;
}

/* B[c n + i] sums H[i][k] over the columns k of row i of colour c, so
 * H[i][j] is B[c(j) n + i] when j is the only column of its colour in row
 * i (the diagonal counting with the colour of i), or by symmetry
 * B[c(i) n + j] when i is the only one of its colour in row j. A star
 * colouring leaves one of the two for every entry (GMP 2005, section
 * 4.2). */
bool jac__star_sources(const jac__csr *pat, const int64_t *colour,
                       int64_t ncolors, int64_t *src)
{
    int64_t n = pat->nrows;
    const int64_t *ptr = pat->ptr, *idx = pat->idx;
    if (!colours_valid(n, colour, ncolors))
        return false;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t k = ptr[i]; k < ptr[i + 1]; k++)
            src[k] = colour[idx[k]];
        sort_int64(src + ptr[i], ptr[i + 1] - ptr[i]);
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = ptr[i]; k < ptr[i + 1]; k++) {
            int64_t j = idx[k];
            if (unique_in(src, ptr[i], ptr[i + 1], colour[j]))
                src[k] |= FLAG_ROW;
            else if (j != i && jac__csr_find(pat, j, i) >= 0 &&
                     unique_in(src, ptr[j], ptr[j + 1], colour[i]))
                src[k] |= FLAG_COL;
        }
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = ptr[i]; k < ptr[i + 1]; k++) {
            int64_t j = idx[k];
            if (src[k] & FLAG_ROW)
                src[k] = colour[j] * n + i;
            else if (src[k] & FLAG_COL)
                src[k] = colour[i] * n + j;
            else
                return false;
        }
    return true;
}

/* ------------------------------------------------------------------------ */
/* Recovery by substitution                                                 */
/* ------------------------------------------------------------------------ */

/* Under an acyclic colouring the entries (i, k) of row i whose columns
 * share a colour b form a group whose sum is B[b n + i]; once all but one
 * entry of a group are known, the last is B[b n + i] less the others,
 * and its mirror (k, i) is the same number. The groups of a pair of
 * colours are the vertices of that pair's two-coloured forest and each
 * off-diagonal entry is an edge, so peeling leaves (groups with one
 * unknown left) from all forests at once reaches every entry, each once
 * (GTMP 2007, section 5, done here with a queue of groups rather than
 * tree by tree). A group that never gets down to one unknown lies on a
 * two-coloured cycle. A diagonal entry is a group of its own. The mirror
 * repeats its twin's formula, so that both come out bitwise equal. */
jac_status jac__subst_build(const jac_allocator *al, const jac__csr *pat,
                            const int64_t *colour, int64_t ncolors,
                            jac__subst *s)
{
    /* Scratch in p, the arrays of s in out (kept on success). */
    pool p = {al, 0, false, {0}}, out = {al, 0, false, {0}};
    int64_t n = pat->nrows, nnz = pat->ptr[n], ngroups = 0, done = 0;
    const int64_t *ptr = pat->ptr, *idx = pat->idx;
    jac_status status = JAC_ERR_NO_MEMORY;
    memset(s, 0, sizeof *s);
    if (!colours_valid(n, colour, ncolors))
        return JAC_ERR_VALUE;
    int64_t *row = pool_get(&p, nnz), *mirror = pool_get(&p, nnz);
    int64_t *perm = pool_get(&p, nnz), *byrow = pool_get(&p, nnz);
    int64_t *grp = pool_get(&p, nnz), *from = pool_get(&p, nnz);
    int64_t *gstart = pool_get(&p, nnz + 1), *gleft = pool_get(&p, nnz);
    int64_t *queue = pool_get(&p, nnz), *count = pool_get(&p, n + 1);
    s->nnz = nnz;
    s->order = pool_get(&out, nnz);
    s->src = pool_get(&out, nnz);
    s->ptr = pool_get(&out, nnz + 1);
    if (p.failed || out.failed)
        goto fail;

    status = JAC_ERR_VALUE;
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = ptr[i]; k < ptr[i + 1]; k++) {
            int64_t j = idx[k];
            row[k] = i;
            mirror[k] = j == i ? k : jac__csr_find(pat, j, i);
            if (mirror[k] < 0 || (j != i && colour[i] == colour[j]))
                goto fail;
        }

    /* Entries by row, then by colour of column (two stable counting
     * sorts); runs of equal (row, colour) are the groups. */
    fill(count, n + 1, 0);
    for (int64_t k = 0; k < nnz; k++)
        count[colour[idx[k]] + 1]++;
    for (int64_t c = 0; c < n; c++)
        count[c + 1] += count[c];
    for (int64_t k = 0; k < nnz; k++)
        perm[count[colour[idx[k]]]++] = k;
    memcpy(count, ptr, (size_t)n * sizeof *count);
    for (int64_t t = 0; t < nnz; t++)
        byrow[count[row[perm[t]]]++] = perm[t];
    int64_t nq = 0, head = 0;
    for (int64_t t = 0; t < nnz; t++) {
        int64_t k = byrow[t];
        if (t == 0 || row[k] != row[byrow[t - 1]] ||
            colour[idx[k]] != colour[idx[byrow[t - 1]]])
            gstart[ngroups++] = t;
        grp[k] = ngroups - 1;
        from[k] = -1;
    }
    gstart[ngroups] = nnz;
    for (int64_t g = 0; g < ngroups; g++) {
        gleft[g] = gstart[g + 1] - gstart[g];
        if (gleft[g] == 1)
            queue[nq++] = g;
    }

    while (head < nq) {
        int64_t g = queue[head++], k = -1;
        if (gleft[g] != 1)
            continue;
        for (int64_t t = gstart[g]; t < gstart[g + 1]; t++)
            if (from[byrow[t]] < 0)
                k = byrow[t];
        int64_t m = mirror[k];
        from[k] = k;
        s->order[done++] = k;
        gleft[g] = 0;
        if (m != k) {
            from[m] = k;
            s->order[done++] = m;
            if (--gleft[grp[m]] == 1)
                queue[nq++] = grp[m];
        }
    }
    if (done != nnz)
        goto fail;

    s->ptr[0] = 0;
    for (int64_t k = 0; k < nnz; k++) {
        int64_t f = from[k], g = grp[f];
        s->src[k] = colour[idx[f]] * n + row[f];
        s->ptr[k + 1] = s->ptr[k] + gstart[g + 1] - gstart[g] - 1;
    }
    status = JAC_ERR_NO_MEMORY;
    s->sub = pool_get(&out, s->ptr[nnz]);
    if (s->sub == NULL)
        goto fail;
    for (int64_t k = 0; k < nnz; k++) {
        int64_t f = from[k], g = grp[f], q = s->ptr[k];
        for (int64_t t = gstart[g]; t < gstart[g + 1]; t++)
            if (byrow[t] != f)
                s->sub[q++] = byrow[t];
    }
    pool_release(&p);
    return JAC_OK;
fail:
    memset(s, 0, sizeof *s);
    pool_release(&out);
    pool_release(&p);
    return status;
}

void jac__subst_free(const jac_allocator *al, jac__subst *s)
{
    al->free(s->order, al->user);
    al->free(s->src, al->user);
    al->free(s->ptr, al->user);
    al->free(s->sub, al->user);
    memset(s, 0, sizeof *s);
}

void jac__subst_apply(const jac__subst *s, const double *B, double *values)
{
    for (int64_t t = 0; t < s->nnz; t++) {
        int64_t k = s->order[t];
        double v = B[s->src[k]];
        for (int64_t q = s->ptr[k]; q < s->ptr[k + 1]; q++)
            v -= values[s->sub[q]];
        values[k] = v;
    }
}
