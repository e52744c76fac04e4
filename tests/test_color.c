/*
 * Colourings of sparsity patterns (src/sparse/color.c): column and row
 * colourings never put two columns (rows) that share a row (column) in
 * one colour; star colourings leave no two-coloured path on four
 * vertices and acyclic ones no two-coloured cycle, each checked here from
 * its definition on random, banded, arrow, block-diagonal and degenerate
 * patterns in every vertex order; a Hessian comes back from its
 * compressed form exactly (star) or to rounding (substitution); the
 * stencil patterns of the benchmarks get their optimal colour counts; and
 * every allocation failure is reported cleanly, without a leak.
 *
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"

#include "sparse/sparse.h"

static const int all_orders[] = {
    JAC_ORDER_BEST, JAC_ORDER_NATURAL, JAC_ORDER_LARGEST_FIRST,
    JAC_ORDER_SMALLEST_LAST, JAC_ORDER_INCIDENCE_DEGREE};
#define NORDERS ((int)TU_COUNT(all_orders))

/* ------------------------------------------------------------------------ */
/* Allocators                                                               */
/* ------------------------------------------------------------------------ */

/* Counts the blocks it hands out and refuses the fail_at-th request. */
typedef struct counting {
    int64_t calls, fail_at, live;
} counting;

static void *counting_alloc(size_t size, void *user)
{
    counting *c = user;
    if (++c->calls == c->fail_at)
        return NULL;
    void *p = malloc(size);
    if (p != NULL)
        c->live++;
    return p;
}

static void counting_free(void *ptr, void *user)
{
    counting *c = user;
    if (ptr != NULL) {
        c->live--;
        free(ptr);
    }
}

static counting plain_count;
static const jac_allocator plain = {counting_alloc, counting_free,
                                    &plain_count};

/* ------------------------------------------------------------------------ */
/* Patterns                                                                 */
/* ------------------------------------------------------------------------ */

static uint64_t lcg(uint64_t *state)
{
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return *state >> 33;
}

static double unit(uint64_t *state)
{
    return (double)lcg(state) / 2147483648.0;
}

/* A pattern from a dense 0/1 matrix, row-major. */
static jac__csr from_dense(int64_t nrows, int64_t ncols, const unsigned char *d)
{
    jac__csr p = {nrows, ncols, malloc((size_t)(nrows + 1) * 8), NULL};
    int64_t nnz = 0;
    for (int64_t k = 0; k < nrows * ncols; k++)
        nnz += d[k] != 0;
    p.idx = malloc((size_t)(nnz + 1) * 8);
    assert_non_null(p.ptr);
    assert_non_null(p.idx);
    nnz = 0;
    p.ptr[0] = 0;
    for (int64_t r = 0; r < nrows; r++) {
        for (int64_t c = 0; c < ncols; c++)
            if (d[r * ncols + c])
                p.idx[nnz++] = c;
        p.ptr[r + 1] = nnz;
    }
    return p;
}

static void pat_free(jac__csr *p)
{
    free(p->ptr);
    free(p->idx);
}

static unsigned char *dense_random(int64_t nrows, int64_t ncols, double density,
                                   uint64_t seed)
{
    unsigned char *d = calloc((size_t)(nrows * ncols + 1), 1);
    assert_non_null(d);
    for (int64_t k = 0; k < nrows * ncols; k++)
        d[k] = unit(&seed) < density;
    return d;
}

/* Makes a square dense matrix symmetric (d | d^T); the diagonal is set
 * everywhere (diag 1), nowhere (0) or at random (-1). */
static void symmetrise(int64_t n, unsigned char *d, int diag, uint64_t seed)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < i; j++)
            d[i * n + j] = d[j * n + i] = d[i * n + j] | d[j * n + i];
    for (int64_t i = 0; i < n; i++)
        d[i * n + i] = diag < 0 ? unit(&seed) < 0.5 : diag != 0;
}

static unsigned char *dense_banded(int64_t n, int64_t lower, int64_t upper)
{
    unsigned char *d = calloc((size_t)(n * n + 1), 1);
    assert_non_null(d);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++)
            d[i * n + j] = j - i <= upper && i - j <= lower;
    return d;
}

/* One dense row, one dense column, the diagonal. */
static unsigned char *dense_arrow(int64_t n)
{
    unsigned char *d = calloc((size_t)(n * n + 1), 1);
    assert_non_null(d);
    for (int64_t i = 0; i < n; i++)
        d[i] = d[i * n] = d[i * n + i] = 1;
    return d;
}

/* Dense blocks of sizes 1, 2, 3, 4, 5, 1, 2, ... down the diagonal. */
static unsigned char *dense_blocks(int64_t n)
{
    unsigned char *d = calloc((size_t)(n * n + 1), 1);
    assert_non_null(d);
    for (int64_t start = 0, size = 1; start < n;
         start += size, size = size % 5 + 1)
        for (int64_t i = start; i < start + size && i < n; i++)
            for (int64_t j = start; j < start + size && j < n; j++)
                d[i * n + j] = 1;
    return d;
}

/* The 5-point stencil on an N x N grid, diagonal included. */
static jac__csr grid5(int64_t N)
{
    int64_t n = N * N;
    jac__csr p = {n, n, malloc((size_t)(n + 1) * 8),
                  malloc((size_t)(5 * n + 1) * 8)};
    assert_non_null(p.ptr);
    assert_non_null(p.idx);
    int64_t q = 0;
    p.ptr[0] = 0;
    for (int64_t y = 0; y < N; y++)
        for (int64_t x = 0; x < N; x++) {
            int64_t k = y * N + x;
            if (y > 0)
                p.idx[q++] = k - N;
            if (x > 0)
                p.idx[q++] = k - 1;
            p.idx[q++] = k;
            if (x < N - 1)
                p.idx[q++] = k + 1;
            if (y < N - 1)
                p.idx[q++] = k + N;
            p.ptr[k + 1] = q;
        }
    return p;
}

static jac__csr tridiagonal(int64_t n)
{
    jac__csr p = {n, n, malloc((size_t)(n + 1) * 8),
                  malloc((size_t)(3 * n + 1) * 8)};
    assert_non_null(p.ptr);
    assert_non_null(p.idx);
    int64_t q = 0;
    p.ptr[0] = 0;
    for (int64_t k = 0; k < n; k++) {
        if (k > 0)
            p.idx[q++] = k - 1;
        p.idx[q++] = k;
        if (k < n - 1)
            p.idx[q++] = k + 1;
        p.ptr[k + 1] = q;
    }
    return p;
}

/* The transpose, by a counting sort. */
static jac__csr transposed(const jac__csr *p)
{
    int64_t nnz = p->ptr[p->nrows];
    jac__csr t = {p->ncols, p->nrows, calloc((size_t)(p->ncols + 2), 8),
                  malloc((size_t)(nnz + 1) * 8)};
    assert_non_null(t.ptr);
    assert_non_null(t.idx);
    for (int64_t k = 0; k < nnz; k++)
        t.ptr[p->idx[k] + 1]++;
    for (int64_t c = 0; c < p->ncols; c++)
        t.ptr[c + 1] += t.ptr[c];
    int64_t *next = malloc((size_t)(p->ncols + 1) * 8);
    assert_non_null(next);
    memcpy(next, t.ptr, (size_t)p->ncols * 8);
    for (int64_t r = 0; r < p->nrows; r++)
        for (int64_t k = p->ptr[r]; k < p->ptr[r + 1]; k++)
            t.idx[next[p->idx[k]]++] = r;
    free(next);
    return t;
}

/* The adjacency graph of a square pattern: p | p^T without the diagonal,
 * rows sorted (a merge of the sorted rows of p and p^T). */
static jac__csr adjacency(const jac__csr *p)
{
    jac__csr t = transposed(p);
    int64_t n = p->nrows, nnz = p->ptr[n];
    jac__csr g = {n, n, malloc((size_t)(n + 1) * 8),
                  malloc((size_t)(2 * nnz + 1) * 8)};
    assert_non_null(g.ptr);
    assert_non_null(g.idx);
    int64_t q = 0;
    g.ptr[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t a = p->ptr[i], b = t.ptr[i];
        while (a < p->ptr[i + 1] || b < t.ptr[i + 1]) {
            int64_t x = a < p->ptr[i + 1] ? p->idx[a] : INT64_MAX;
            int64_t y = b < t.ptr[i + 1] ? t.idx[b] : INT64_MAX;
            int64_t j = x < y ? x : y;
            a += x == j;
            b += y == j;
            if (j != i)
                g.idx[q++] = j;
        }
        g.ptr[i + 1] = q;
    }
    pat_free(&t);
    return g;
}

/* ------------------------------------------------------------------------ */
/* Checkers, from the definitions                                           */
/* ------------------------------------------------------------------------ */

/* Colours lie in 0 .. k - 1 and k is the number used. */
static void check_range(const int64_t *colour, int64_t n, int64_t k)
{
    int64_t top = -1;
    for (int64_t v = 0; v < n; v++) {
        assert_true(colour[v] >= 0 && colour[v] < k);
        if (colour[v] > top)
            top = colour[v];
    }
    assert_int_equal(k, top + 1);
}

/* No two vertices in one net (row of p) share a colour. */
static void check_nets(const jac__csr *p, const int64_t *colour, int64_t nv,
                       int64_t k)
{
    check_range(colour, nv, k);
    int64_t *seen = malloc((size_t)(k + 1) * 8);
    assert_non_null(seen);
    for (int64_t c = 0; c <= k; c++)
        seen[c] = -1;
    for (int64_t r = 0; r < p->nrows; r++)
        for (int64_t q = p->ptr[r]; q < p->ptr[r + 1]; q++) {
            int64_t c = colour[p->idx[q]];
            if (seen[c] == r)
                fail_msg("net %lld holds colour %lld twice", (long long)r,
                         (long long)c);
            seen[c] = r;
        }
    free(seen);
}

static void check_columns(const jac__csr *p, const int64_t *colour, int64_t k)
{
    check_nets(p, colour, p->ncols, k);
}

static void check_rows(const jac__csr *p, const int64_t *colour, int64_t k)
{
    jac__csr t = transposed(p);
    check_nets(&t, colour, p->nrows, k);
    pat_free(&t);
}

static void check_distance1(const jac__csr *g, const int64_t *colour, int64_t k)
{
    check_range(colour, g->nrows, k);
    for (int64_t i = 0; i < g->nrows; i++)
        for (int64_t q = g->ptr[i]; q < g->ptr[i + 1]; q++)
            if (colour[i] == colour[g->idx[q]])
                fail_msg("neighbours %lld and %lld share colour %lld",
                         (long long)i, (long long)g->idx[q],
                         (long long)colour[i]);
}

/* Star: a path a - b - c - d coloured x y x y would show up at its middle
 * edge (b, c) as a neighbour a of b coloured like c and a neighbour d of
 * c coloured like b. */
static void check_star(const jac__csr *g, const int64_t *colour, int64_t k)
{
    check_distance1(g, colour, k);
    for (int64_t b = 0; b < g->nrows; b++)
        for (int64_t q = g->ptr[b]; q < g->ptr[b + 1]; q++) {
            int64_t c = g->idx[q];
            for (int64_t qa = g->ptr[b]; qa < g->ptr[b + 1]; qa++) {
                int64_t a = g->idx[qa];
                if (a == c || colour[a] != colour[c])
                    continue;
                for (int64_t qd = g->ptr[c]; qd < g->ptr[c + 1]; qd++) {
                    int64_t d = g->idx[qd];
                    if (d != b && d != a && colour[d] == colour[b])
                        fail_msg("path %lld %lld %lld %lld has 2 colours",
                                 (long long)a, (long long)b, (long long)c,
                                 (long long)d);
                }
            }
        }
}

static int64_t dsu_find(int64_t *parent, int64_t x)
{
    while (parent[x] != x)
        x = parent[x] = parent[parent[x]];
    return x;
}

/* Acyclic: the subgraph of colours x and y lives on the nodes (v, y) for
 * v of colour x and (w, x) for w of colour y, one union-find over all
 * pairs; an edge whose ends are already joined closes a cycle. */
static void check_acyclic(const jac__csr *g, const int64_t *colour, int64_t k)
{
    check_distance1(g, colour, k);
    int64_t n = g->nrows, nodes = n * k;
    int64_t *parent = malloc((size_t)(nodes + 1) * 8);
    assert_non_null(parent);
    for (int64_t x = 0; x < nodes; x++)
        parent[x] = x;
    for (int64_t i = 0; i < n; i++)
        for (int64_t q = g->ptr[i]; q < g->ptr[i + 1]; q++) {
            int64_t j = g->idx[q];
            if (j < i)
                continue;
            int64_t a = dsu_find(parent, i * k + colour[j]);
            int64_t b = dsu_find(parent, j * k + colour[i]);
            if (a == b)
                fail_msg("edge %lld %lld closes a two-coloured cycle",
                         (long long)i, (long long)j);
            parent[a] = b;
        }
    free(parent);
}

/* ------------------------------------------------------------------------ */
/* Recovery                                                                 */
/* ------------------------------------------------------------------------ */

/* A symmetric value for entry (i, j), never zero. */
static double entry_value(int64_t i, int64_t j)
{
    uint64_t s =
        (uint64_t)(i < j ? i : j) * 1000003u + (uint64_t)(i < j ? j : i) + 17u;
    lcg(&s);
    double v = 0.25 + 1.75 * unit(&s);
    return lcg(&s) & 1u ? v : -v;
}

/* B = H S, colour-major: B[c n + i] sums H[i][j] over j of colour c. */
static double *compress(const jac__csr *p, const int64_t *colour, int64_t k)
{
    int64_t n = p->nrows;
    double *B = calloc((size_t)(k * n + 1), sizeof(double));
    assert_non_null(B);
    for (int64_t i = 0; i < n; i++)
        for (int64_t q = p->ptr[i]; q < p->ptr[i + 1]; q++)
            B[colour[p->idx[q]] * n + i] += entry_value(i, p->idx[q]);
    return B;
}

static void check_direct(const jac__csr *p, const int64_t *colour, int64_t k)
{
    int64_t nnz = p->ptr[p->nrows];
    int64_t *src = malloc((size_t)(nnz + 1) * 8);
    assert_non_null(src);
    assert_true(jac__star_sources(p, colour, k, src));
    double *B = compress(p, colour, k);
    for (int64_t i = 0; i < p->nrows; i++)
        for (int64_t q = p->ptr[i]; q < p->ptr[i + 1]; q++) {
            assert_true(src[q] >= 0 && src[q] < k * p->nrows);
            /* One term in the sum: bitwise the entry. */
            if (B[src[q]] != entry_value(i, p->idx[q]))
                fail_msg("entry (%lld, %lld): %.17g, not %.17g", (long long)i,
                         (long long)p->idx[q], B[src[q]],
                         entry_value(i, p->idx[q]));
        }
    free(B);
    free(src);
}

static void check_substitution(const jac__csr *p, const int64_t *colour,
                               int64_t k)
{
    jac__subst s;
    int64_t nnz = p->ptr[p->nrows];
    assert_int_equal(jac__subst_build(&plain, p, colour, k, &s), JAC_OK);
    assert_int_equal(s.nnz, nnz);
    double *B = compress(p, colour, k), scale = 1.0;
    for (int64_t x = 0; x < k * p->nrows; x++)
        scale = fmax(scale, fabs(B[x]));
    double *values = malloc((size_t)(nnz + 1) * sizeof(double));
    assert_non_null(values);
    jac__subst_apply(&s, B, values);
    for (int64_t i = 0; i < p->nrows; i++)
        for (int64_t q = p->ptr[i]; q < p->ptr[i + 1]; q++) {
            double want = entry_value(i, p->idx[q]);
            if (fabs(values[q] - want) > 1e-12 * scale)
                fail_msg("entry (%lld, %lld): %.17g, not %.17g", (long long)i,
                         (long long)p->idx[q], values[q], want);
        }
    /* Mirrors are computed alike, so they agree to the bit. */
    for (int64_t i = 0; i < p->nrows; i++)
        for (int64_t q = p->ptr[i]; q < p->ptr[i + 1]; q++)
            for (int64_t r = p->ptr[p->idx[q]]; r < p->ptr[p->idx[q] + 1]; r++)
                if (p->idx[r] == i)
                    assert_memory_equal(&values[q], &values[r], sizeof(double));
    jac__subst_free(&plain, &s);
    assert_null(s.order);
    free(values);
    free(B);
}

/* ------------------------------------------------------------------------ */
/* Drivers over patterns and orders                                         */
/* ------------------------------------------------------------------------ */

/* Column and row colourings in every order; BEST is no worse than any. */
static void check_bipartite(const jac__csr *p)
{
    int64_t *colour = malloc((size_t)(p->ncols + p->nrows + 1) * 8);
    int64_t best_c = 0, best_r = 0;
    assert_non_null(colour);
    for (int o = 0; o < NORDERS; o++) {
        int64_t k = jac__color_columns(&plain, p, all_orders[o], colour);
        check_columns(p, colour, k);
        if (o == 0)
            best_c = k;
        assert_true(best_c <= k);
        k = jac__color_rows(&plain, p, all_orders[o], colour);
        check_rows(p, colour, k);
        if (o == 0)
            best_r = k;
        assert_true(best_r <= k);
    }
    assert_int_equal(plain_count.live, 0);
    free(colour);
}

/* Star and acyclic colourings of a square pattern in every order, with
 * their recoveries; BEST is no worse than any single order. */
static void check_symmetric(const jac__csr *p)
{
    jac__csr g = adjacency(p);
    int64_t *colour = malloc((size_t)(p->nrows + 1) * 8);
    int64_t best_s = 0, best_a = 0;
    assert_non_null(colour);
    for (int o = 0; o < NORDERS; o++) {
        int64_t k = jac__color_star(&plain, p, all_orders[o], colour);
        check_star(&g, colour, k);
        check_acyclic(&g, colour, k);
        check_direct(p, colour, k);
        check_substitution(p, colour, k);
        if (o == 0)
            best_s = k;
        assert_true(best_s <= k);

        k = jac__color_acyclic(&plain, p, all_orders[o], colour);
        check_acyclic(&g, colour, k);
        check_substitution(p, colour, k);
        if (o == 0)
            best_a = k;
        assert_true(best_a <= k);
    }
    assert_true(best_a <= best_s);
    assert_int_equal(plain_count.live, 0);
    free(colour);
    pat_free(&g);
}

static void check_dense(int64_t nrows, int64_t ncols, unsigned char *d,
                        bool symmetric)
{
    jac__csr p = from_dense(nrows, ncols, d);
    check_bipartite(&p);
    if (symmetric)
        check_symmetric(&p);
    pat_free(&p);
    free(d);
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                    */
/* ------------------------------------------------------------------------ */

static void test_columns_and_rows_of_random_patterns(void **state)
{
    (void)state;
    static const int64_t shapes[][2] = {{1, 7},   {7, 1},   {13, 29},
                                        {40, 40}, {60, 25}, {90, 120}};
    static const double densities[] = {0.0, 0.02, 0.1, 0.3, 0.7, 1.0};
    uint64_t seed = 1;
    for (size_t s = 0; s < TU_COUNT(shapes); s++)
        for (size_t d = 0; d < TU_COUNT(densities); d++)
            check_dense(
                shapes[s][0], shapes[s][1],
                dense_random(shapes[s][0], shapes[s][1], densities[d], seed++),
                false);
}

static void test_columns_and_rows_of_structured_patterns(void **state)
{
    (void)state;
    static const int64_t bands[][2] = {{0, 0}, {1, 1}, {2, 0},
                                       {0, 3}, {5, 5}, {7, 2}};
    for (size_t b = 0; b < TU_COUNT(bands); b++)
        check_dense(50, 50, dense_banded(50, bands[b][0], bands[b][1]), false);
    check_dense(40, 40, dense_arrow(40), false);
    check_dense(45, 45, dense_blocks(45), false);

    /* Empty rows and columns among random ones. */
    unsigned char *d = dense_random(30, 35, 0.2, 99);
    for (int64_t r = 0; r < 30; r += 4)
        memset(d + r * 35, 0, 35);
    for (int64_t r = 0; r < 30; r++)
        for (int64_t c = 1; c < 35; c += 5)
            d[r * 35 + c] = 0;
    check_dense(30, 35, d, false);
}

static void test_star_and_acyclic_of_random_symmetric_patterns(void **state)
{
    (void)state;
    static const int64_t sizes[] = {1, 2, 5, 30, 80};
    static const double densities[] = {0.02, 0.1, 0.3, 0.8};
    uint64_t seed = 7;
    for (size_t s = 0; s < TU_COUNT(sizes); s++)
        for (size_t d = 0; d < TU_COUNT(densities); d++)
            for (int diag = -1; diag <= 1; diag++) {
                int64_t n = sizes[s];
                unsigned char *m = dense_random(n, n, densities[d], seed);
                symmetrise(n, m, diag, seed++);
                check_dense(n, n, m, true);
            }
}

static void test_star_and_acyclic_of_structured_patterns(void **state)
{
    (void)state;
    static const int64_t bands[] = {0, 1, 2, 4, 9};
    for (size_t b = 0; b < TU_COUNT(bands); b++) {
        unsigned char *d = dense_banded(60, bands[b], bands[b]);
        symmetrise(60, d, 1, 0);
        check_dense(60, 60, d, true);
        d = dense_banded(60, bands[b], bands[b]);
        symmetrise(60, d, 0, 0);
        check_dense(60, 60, d, true);
    }
    check_dense(40, 40, dense_arrow(40), true);
    unsigned char *d = dense_arrow(40);
    symmetrise(40, d, 0, 0);
    check_dense(40, 40, d, true);
    check_dense(45, 45, dense_blocks(45), true);

    /* Isolated vertices among random ones. */
    d = dense_random(40, 40, 0.15, 5);
    symmetrise(40, d, -1, 5);
    for (int64_t v = 0; v < 40; v += 3)
        for (int64_t u = 0; u < 40; u++)
            d[v * 40 + u] = d[u * 40 + v] = 0;
    check_dense(40, 40, d, true);

    jac__csr g = grid5(9);
    check_bipartite(&g);
    check_symmetric(&g);
    pat_free(&g);
}

/* 0 x 0, 0 x 3, 3 x 0, 1 x 1 with and without its entry, all empty. */
static void test_degenerate_patterns(void **state)
{
    (void)state;
    int64_t ptr0[4] = {0, 0, 0, 0}, ptr1[2] = {0, 1}, idx1[1] = {0};
    int64_t colour[4] = {9, 9, 9, 9};
    jac__csr empty = {0, 0, ptr0, NULL};
    for (int o = 0; o < NORDERS; o++) {
        assert_int_equal(jac__color_columns(&plain, &empty, o, colour), 0);
        assert_int_equal(jac__color_rows(&plain, &empty, o, colour), 0);
        assert_int_equal(jac__color_star(&plain, &empty, o, colour), 0);
        assert_int_equal(jac__color_acyclic(&plain, &empty, o, colour), 0);
    }
    jac__subst s;
    assert_int_equal(jac__subst_build(&plain, &empty, colour, 0, &s), JAC_OK);
    assert_int_equal(s.nnz, 0);
    jac__subst_apply(&s, NULL, NULL);
    jac__subst_free(&plain, &s);
    assert_true(jac__star_sources(&empty, colour, 0, NULL));

    jac__csr wide = {0, 3, ptr0, NULL}, tall = {3, 0, ptr0, NULL};
    assert_int_equal(jac__color_columns(&plain, &wide, 0, colour), 1);
    assert_int_equal(colour[0] + colour[1] + colour[2], 0);
    assert_int_equal(jac__color_rows(&plain, &wide, 0, colour), 0);
    assert_int_equal(jac__color_rows(&plain, &tall, 0, colour), 1);
    assert_int_equal(jac__color_columns(&plain, &tall, 0, colour), 0);

    /* Three isolated vertices: one colour, 0. */
    jac__csr none = {3, 3, ptr0, NULL};
    for (int o = 0; o < NORDERS; o++) {
        colour[0] = colour[1] = colour[2] = 9;
        assert_int_equal(jac__color_star(&plain, &none, o, colour), 1);
        assert_int_equal(colour[0] + colour[1] + colour[2], 0);
        assert_int_equal(jac__color_acyclic(&plain, &none, o, colour), 1);
        assert_int_equal(colour[0] + colour[1] + colour[2], 0);
    }

    jac__csr one = {1, 1, ptr1, idx1};
    for (int o = 0; o < NORDERS; o++) {
        assert_int_equal(jac__color_columns(&plain, &one, o, colour), 1);
        assert_int_equal(jac__color_star(&plain, &one, o, colour), 1);
        assert_int_equal(colour[0], 0);
    }
    /* An order outside the enum is taken as the natural one. */
    assert_int_equal(jac__color_columns(&plain, &one, 42, colour), 1);
    assert_int_equal(jac__color_star(&plain, &one, -3, colour), 1);
    check_dense(1, 1, dense_random(1, 1, 1.0, 1), true);
    check_dense(1, 1, dense_random(1, 1, 0.0, 1), true);
    assert_int_equal(plain_count.live, 0);
}

/* A pattern given by one triangle is coloured as the whole symmetric one. */
static void test_one_triangle_colours_the_symmetric_pattern(void **state)
{
    (void)state;
    unsigned char *d = dense_random(50, 50, 0.1, 3);
    symmetrise(50, d, 1, 3);
    jac__csr full = from_dense(50, 50, d);
    for (int64_t i = 0; i < 50; i++)
        for (int64_t j = i + 1; j < 50; j++)
            d[i * 50 + j] = 0;
    jac__csr lower = from_dense(50, 50, d);
    jac__csr g = adjacency(&full);
    int64_t colour[50];
    for (int o = 0; o < NORDERS; o++) {
        int64_t k = jac__color_star(&plain, &lower, o, colour);
        check_star(&g, colour, k);
        k = jac__color_acyclic(&plain, &lower, o, colour);
        check_acyclic(&g, colour, k);
    }
    pat_free(&g);
    pat_free(&lower);
    pat_free(&full);
    free(d);
}

static void test_non_star_colourings_are_refused(void **state)
{
    (void)state;
    /* The path 0 - 1 - 2 - 3 coloured 0 1 0 1: proper, not star. */
    unsigned char d[16] = {1, 1, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 1, 1};
    jac__csr p = from_dense(4, 4, d);
    int64_t bad[4] = {0, 1, 0, 1}, good[4] = {0, 1, 0, 2}, src[10];
    assert_false(jac__star_sources(&p, bad, 2, src));
    assert_true(jac__star_sources(&p, good, 3, src));
    /* Colours out of range. */
    int64_t out[4] = {0, 1, 0, 7};
    assert_false(jac__star_sources(&p, out, 3, src));
    /* An acyclic colouring that is not star still substitutes. */
    check_substitution(&p, bad, 2);
    pat_free(&p);
}

static void test_substitution_refuses_cycles_and_asymmetry(void **state)
{
    (void)state;
    jac__subst s;
    /* The cycle 0 - 1 - 2 - 3 - 0 coloured 0 1 0 1. */
    unsigned char d[16] = {1, 1, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1, 1};
    jac__csr p = from_dense(4, 4, d);
    int64_t cyc[4] = {0, 1, 0, 1}, same[4] = {0, 0, 1, 2};
    int64_t ok[4] = {0, 1, 0, 2}, out[4] = {0, 1, 0, 3};
    assert_int_equal(jac__subst_build(&plain, &p, cyc, 2, &s), JAC_ERR_VALUE);
    assert_null(s.order);
    assert_int_equal(jac__subst_build(&plain, &p, same, 3, &s), JAC_ERR_VALUE);
    assert_int_equal(jac__subst_build(&plain, &p, out, 3, &s), JAC_ERR_VALUE);
    check_substitution(&p, ok, 3);
    pat_free(&p);

    unsigned char a[9] = {1, 1, 0, 0, 1, 1, 0, 0, 1};
    p = from_dense(3, 3, a);
    int64_t c3[3] = {0, 1, 2};
    assert_int_equal(jac__subst_build(&plain, &p, c3, 3, &s), JAC_ERR_VALUE);
    pat_free(&p);
    assert_int_equal(plain_count.live, 0);
}

/* The benchmark patterns: the 5-point stencil (P6) takes 5 colours, the
 * optimum, by columns and as a star colouring (ColPack's smallest-last
 * star colouring takes 6); a tridiagonal matrix (P7) takes 3. */
static void test_stencil_colour_counts(void **state)
{
    (void)state;
    static const int64_t sides[] = {32, 316};
    for (size_t s = 0; s < TU_COUNT(sides); s++) {
        jac__csr p = grid5(sides[s]);
        int64_t *colour = malloc((size_t)p.nrows * 8);
        assert_non_null(colour);
        int64_t k = jac__color_columns(&plain, &p, JAC_ORDER_BEST, colour);
        check_columns(&p, colour, k);
        assert_int_equal(k, 5);
        k = jac__color_rows(&plain, &p, JAC_ORDER_BEST, colour);
        check_rows(&p, colour, k);
        assert_int_equal(k, 5);
        k = jac__color_star(&plain, &p, JAC_ORDER_BEST, colour);
        jac__csr g = adjacency(&p);
        check_star(&g, colour, k);
        assert_int_equal(k, 5);
        check_direct(&p, colour, k);
        k = jac__color_acyclic(&plain, &p, JAC_ORDER_BEST, colour);
        check_acyclic(&g, colour, k);
        assert_true(k <= 5);
        check_substitution(&p, colour, k);
        pat_free(&g);
        pat_free(&p);
        free(colour);
    }
    static const int64_t lengths[] = {512, 100000};
    for (size_t s = 0; s < TU_COUNT(lengths); s++) {
        jac__csr p = tridiagonal(lengths[s]);
        int64_t *colour = malloc((size_t)p.nrows * 8);
        assert_non_null(colour);
        int64_t k = jac__color_columns(&plain, &p, JAC_ORDER_BEST, colour);
        check_columns(&p, colour, k);
        assert_int_equal(k, 3);
        k = jac__color_star(&plain, &p, JAC_ORDER_BEST, colour);
        jac__csr g = adjacency(&p);
        check_star(&g, colour, k);
        assert_int_equal(k, 3);
        check_direct(&p, colour, k);
        k = jac__color_acyclic(&plain, &p, JAC_ORDER_BEST, colour);
        check_acyclic(&g, colour, k);
        assert_int_equal(k, 2);
        check_substitution(&p, colour, k);
        pat_free(&g);
        pat_free(&p);
        free(colour);
    }
    assert_int_equal(plain_count.live, 0);
}

/* Fails the first, second, ... allocation of each call until one
 * succeeds: every failure returns -1 (JAC_ERR_NO_MEMORY) and leaves no
 * block behind. */
typedef int64_t (*colouring)(const jac_allocator *, const jac__csr *, int,
                             int64_t *);

static void sweep_failures(const jac__csr *p, colouring fn, int order)
{
    int64_t *colour = malloc((size_t)(p->nrows + p->ncols + 1) * 8);
    assert_non_null(colour);
    for (int64_t fail_at = 1;; fail_at++) {
        counting c = {0, fail_at, 0};
        jac_allocator al = {counting_alloc, counting_free, &c};
        int64_t k = fn(&al, p, order, colour);
        assert_int_equal(c.live, 0);
        if (k >= 0) {
            assert_true(c.calls < fail_at);
            assert_true(fail_at > 1);
            break;
        }
        assert_int_equal(k, -1);
        assert_true(fail_at < 200);
    }
    free(colour);
}

static void sweep_subst_failures(const jac__csr *p, const int64_t *colour,
                                 int64_t k)
{
    for (int64_t fail_at = 1;; fail_at++) {
        counting c = {0, fail_at, 0};
        jac_allocator al = {counting_alloc, counting_free, &c};
        jac__subst s;
        jac_status st = jac__subst_build(&al, p, colour, k, &s);
        if (st == JAC_OK) {
            assert_true(c.calls < fail_at);
            jac__subst_free(&al, &s);
            assert_int_equal(c.live, 0);
            break;
        }
        assert_int_equal(st, JAC_ERR_NO_MEMORY);
        assert_null(s.order);
        assert_int_equal(c.live, 0);
        assert_true(fail_at < 200);
    }
}

static void test_allocation_failures_are_clean(void **state)
{
    (void)state;
    /* Symmetric (no transpose), square but not symmetric (transpose,
     * symmetrised graph), rectangular. */
    unsigned char *sd = dense_random(30, 30, 0.15, 11);
    symmetrise(30, sd, -1, 11);
    jac__csr sym = from_dense(30, 30, sd);
    unsigned char *ad = dense_random(30, 30, 0.15, 12);
    jac__csr asym = from_dense(30, 30, ad);
    unsigned char *rd = dense_random(20, 35, 0.2, 13);
    jac__csr rect = from_dense(20, 35, rd);
    for (int o = 0; o < NORDERS; o++) {
        sweep_failures(&sym, jac__color_columns, all_orders[o]);
        sweep_failures(&asym, jac__color_columns, all_orders[o]);
        sweep_failures(&rect, jac__color_columns, all_orders[o]);
        sweep_failures(&rect, jac__color_rows, all_orders[o]);
        sweep_failures(&sym, jac__color_star, all_orders[o]);
        sweep_failures(&asym, jac__color_star, all_orders[o]);
        sweep_failures(&sym, jac__color_acyclic, all_orders[o]);
        sweep_failures(&asym, jac__color_acyclic, all_orders[o]);
    }
    int64_t colour[30];
    int64_t k = jac__color_acyclic(&plain, &sym, JAC_ORDER_BEST, colour);
    sweep_subst_failures(&sym, colour, k);
    pat_free(&sym);
    pat_free(&asym);
    pat_free(&rect);
    free(sd);
    free(ad);
    free(rd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_columns_and_rows_of_random_patterns),
        cmocka_unit_test(test_columns_and_rows_of_structured_patterns),
        cmocka_unit_test(test_star_and_acyclic_of_random_symmetric_patterns),
        cmocka_unit_test(test_star_and_acyclic_of_structured_patterns),
        cmocka_unit_test(test_degenerate_patterns),
        cmocka_unit_test(test_one_triangle_colours_the_symmetric_pattern),
        cmocka_unit_test(test_non_star_colourings_are_refused),
        cmocka_unit_test(test_substitution_refuses_cycles_and_asymmetry),
        cmocka_unit_test(test_stencil_colour_counts),
        cmocka_unit_test(test_allocation_failures_are_clean),
    };
    return cmocka_run_group_tests_name("color", tests, NULL, NULL);
}
