/*
 * The MPI component under mpirun -np 1, 2 and 4 (tests/mpi/run_mpi.sh):
 * every shared result is compared, bit for bit, with what one process
 * computes alone (the core's own call on one thread, and the component on
 * MPI_COMM_SELF with the same blocks), so that results agree across rank
 * counts; the values themselves against finite differences and the dense
 * Jacobian; and a failure on one rank must give every rank the same error.
 *
 * Each check counts its failures on its own rank; control flow never
 * depends on a check, so every rank makes the same collective calls. The
 * failures are summed at the end and rank 0 reports.
 *
 * SPDX-License-Identifier: MIT
 */
#include "jacobian_mpi.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int rank, size, failures;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            failures++;                                                        \
            fprintf(stderr, "rank %d of %d: %s:%d: ", rank, size, __FILE__,    \
                    __LINE__);                                                 \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
        }                                                                      \
    } while (0)

static double *alloc_doubles(int64_t n)
{
    double *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
    if (p == NULL) {
        fprintf(stderr, "rank %d: out of memory\n", rank);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    return p;
}

static bool all_nan(const double *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isnan(v[i]))
            return false;
    return true;
}

static double largest_gap(const double *a, const double *b, int64_t n)
{
    double worst = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]) / (1.0 + fabs(b[i]));
        if (!(d <= worst))
            worst = d;
    }
    return worst;
}

/* ------------------------------------------------------------------------ */
/* Functions                                                                */
/* ------------------------------------------------------------------------ */

/* A two-layer network x -> tanh(W2 tanh(W1 x + b1)) * (1 + x0^2): dense. */
static jac_status network(jac_ctx *ctx, jac_tensor *const *in, jac_tensor **out,
                          void *user)
{
    (void)user;
    jac_tensor *x = in[0], *W1 = in[1], *b1 = in[2], *W2 = in[3];
    jac_tensor *h = jac_tanh(ctx, jac_add(ctx, jac_matmul(ctx, W1, x), b1));
    jac_tensor *y = jac_tanh(ctx, jac_matmul(ctx, W2, h));
    jac_tensor *x0 = jac_slice(ctx, x, 0, 0, 1, 1);
    out[0] = jac_mul(ctx, y, jac_add_scalar(ctx, jac_square(ctx, x0), 1.0));
    return out[0] ? JAC_OK : jac_errcode(ctx);
}

typedef struct net {
    int64_t n, h, m;
    double *x, *W1, *b1, *W2;
    jac_program *prog;
} net;

static void net_make(net *N, int64_t n, int64_t h, int64_t m)
{
    N->n = n;
    N->h = h;
    N->m = m;
    N->x = alloc_doubles(n);
    N->W1 = alloc_doubles(h * n);
    N->b1 = alloc_doubles(h);
    N->W2 = alloc_doubles(m * h);
    for (int64_t i = 0; i < n; i++)
        N->x[i] = 0.3 * sin(0.7 * (double)i + 0.2);
    for (int64_t i = 0; i < h * n; i++)
        N->W1[i] = 0.4 * cos(0.37 * (double)i + 0.1);
    for (int64_t i = 0; i < h; i++)
        N->b1[i] = 0.05 * (double)(i % 7) - 0.1;
    for (int64_t i = 0; i < m * h; i++)
        N->W2[i] = 0.3 * sin(0.23 * (double)i + 1.3);
    jac_ctx *ctx = jac_ctx_new();
    int64_t sx[2] = {n, 1}, sw1[2] = {h, n}, sb[2] = {h, 1}, sw2[2] = {m, h};
    jac_tensor *t[4] = {
        jac_tensor_new(ctx, 2, sx, N->x), jac_tensor_new(ctx, 2, sw1, N->W1),
        jac_tensor_new(ctx, 2, sb, N->b1), jac_tensor_new(ctx, 2, sw2, N->W2)};
    N->prog = NULL;
    jac_status st =
        jac_program_record(ctx, network, NULL, 1, t, 3, t + 1, 1, 0, &N->prog);
    CHECK(st == JAC_OK, "recording the network: %s", jac_errmsg(ctx));
    jac_ctx_free(ctx);
}

static void net_free(net *N)
{
    jac_program_free(N->prog);
    free(N->x);
    free(N->W1);
    free(N->b1);
    free(N->W2);
}

static jac_tensor *grid_slice(jac_ctx *ctx, jac_tensor *p, int64_t r0,
                              int64_t r1, int64_t c0, int64_t c1)
{
    return jac_slice(ctx, jac_slice(ctx, p, 0, r0, r1, 1), 1, c0, c1, 1);
}

/* The 2-D Bratu residual (4u - neighbours) / h^2 - 6 exp(u), N x N. */
static jac_status bratu(jac_ctx *ctx, jac_tensor *const *in, jac_tensor **out,
                        void *user)
{
    int64_t N = *(const int64_t *)user;
    double h = 1.0 / (double)(N + 1);
    jac_tensor *u = in[0];
    jac_tensor *p =
        jac_pad(ctx, u, (const int64_t[]){1, 1}, (const int64_t[]){1, 1});
    jac_tensor *f = jac_mul_scalar(ctx, u, 4.0);
    f = jac_sub(ctx, f, grid_slice(ctx, p, 0, N, 1, N + 1));
    f = jac_sub(ctx, f, grid_slice(ctx, p, 2, N + 2, 1, N + 1));
    f = jac_sub(ctx, f, grid_slice(ctx, p, 1, N + 1, 0, N));
    f = jac_sub(ctx, f, grid_slice(ctx, p, 1, N + 1, 2, N + 2));
    out[0] = jac_sub(ctx, jac_div_scalar(ctx, f, h * h),
                     jac_mul_scalar(ctx, jac_exp(ctx, u), 6.0));
    return out[0] ? JAC_OK : jac_errcode(ctx);
}

/* An energy whose Hessian is sparse: sum (u_right - u)^2 (u_down - u)^2 +
 * sum cos(u) over the grid. */
static jac_status energy(jac_ctx *ctx, jac_tensor *const *in, jac_tensor **out,
                         void *user)
{
    int64_t N = *(const int64_t *)user;
    jac_tensor *u = in[0];
    jac_tensor *dx = jac_sub(ctx, grid_slice(ctx, u, 1, N, 0, N - 1),
                             grid_slice(ctx, u, 0, N - 1, 0, N - 1));
    jac_tensor *dy = jac_sub(ctx, grid_slice(ctx, u, 0, N - 1, 1, N),
                             grid_slice(ctx, u, 0, N - 1, 0, N - 1));
    jac_tensor *e =
        jac_sum(ctx, jac_mul(ctx, jac_square(ctx, dx), jac_square(ctx, dy)));
    out[0] = jac_add(ctx, e, jac_sum(ctx, jac_cos(ctx, u)));
    return out[0] ? JAC_OK : jac_errcode(ctx);
}

static jac_program *record_grid(jac_fn fn, int64_t *N, double *u)
{
    int64_t n = *N * *N, shape[2] = {*N, *N};
    for (int64_t k = 0; k < n; k++)
        u[k] = 0.4 * sin(0.3 * (double)k + 0.7);
    jac_ctx *ctx = jac_ctx_new();
    jac_tensor *x = jac_tensor_new(ctx, 2, shape, u);
    jac_program *prog = NULL;
    jac_status st = jac_program_record(ctx, fn, N, 1, &x, 0, NULL, 1, 0, &prog);
    CHECK(st == JAC_OK, "recording a grid function: %s", jac_errmsg(ctx));
    jac_ctx_free(ctx);
    return prog;
}

/* ------------------------------------------------------------------------ */
/* Dense Jacobians                                                          */
/* ------------------------------------------------------------------------ */

/* The component's J against the core's (bitwise, block 0), against one
 * process with the same small blocks (bitwise), and against central
 * differences. */
static void check_dense(net *N, jac_mpi_mode mode, const char *what)
{
    int64_t m = N->m, n = N->n;
    const double *args[4] = {N->x, N->W1, N->b1, N->W2};
    double *J = alloc_doubles(m * n), *ref = alloc_doubles(m * n);
    double *alone = alloc_doubles(m * n);

    /* The core on one thread: the engine's block, as block 0 takes. */
    (void)jac_program_set_threads(N->prog, 1);
    double *blocks[1] = {ref};
    CHECK(jac_program_jacobian(N->prog, args, NULL, blocks) == JAC_OK,
          "%s: jac_program_jacobian: %s", what, jac_program_errmsg());
    jac_mpi world = {.comm = MPI_COMM_WORLD};
    jac_status st = jac_mpi_jacobian(&world, N->prog, args, mode, J);
    CHECK(st == JAC_OK, "%s: %s", what, world.message);
    /* Forced the other way round, the sweeps differ from the core's pick. */
    bool core_mode =
        mode == JAC_MPI_AUTO || (mode == JAC_MPI_FORWARD) == (m > n);
    if (core_mode)
        CHECK(memcmp(J, ref, (size_t)(m * n) * sizeof(double)) == 0,
              "%s: not bitwise the core's Jacobian", what);
    CHECK(largest_gap(J, ref, m * n) < 1e-13, "%s: off the core's by %g", what,
          largest_gap(J, ref, m * n));

    /* Small blocks: many per rank, compared with one process alone. */
    for (int64_t block = 1; block <= 5; block += 4) {
        jac_mpi shared = {.comm = MPI_COMM_WORLD, .block = block};
        jac_mpi self = {.comm = MPI_COMM_SELF, .block = block};
        (void)jac_program_set_threads(N->prog, 2);
        st = jac_mpi_jacobian(&shared, N->prog, args, mode, J);
        CHECK(st == JAC_OK, "%s, block %lld: %s", what, (long long)block,
              shared.message);
        st = jac_mpi_jacobian(&self, N->prog, args, mode, alone);
        CHECK(st == JAC_OK, "%s, block %lld alone: %s", what, (long long)block,
              self.message);
        CHECK(memcmp(J, alone, (size_t)(m * n) * sizeof(double)) == 0,
              "%s, block %lld: %d ranks differ from one", what,
              (long long)block, size);
        /* The other ranks' rows (or columns) came over, and no more. */
        int64_t moved = shared.bytes_received / (int64_t)sizeof(double);
        CHECK(size == 1 ? moved == 0 : moved > 0 && moved <= m * n,
              "%s, block %lld: %lld doubles received", what, (long long)block,
              (long long)moved);
        CHECK(self.bytes_received == 0, "%s: one rank received %lld bytes",
              what, (long long)self.bytes_received);
        CHECK(largest_gap(J, ref, m * n) < 1e-13,
              "%s, block %lld: off the core's by %g", what, (long long)block,
              largest_gap(J, ref, m * n));
        jac_mpi_release(&shared);
        jac_mpi_release(&self);
    }

    /* Central differences of the program's values. */
    double *xp = alloc_doubles(n), *yp = alloc_doubles(m),
           *ym = alloc_doubles(m);
    double worst = 0.0;
    for (int64_t j = 0; j < n; j++) {
        memcpy(xp, N->x, (size_t)n * sizeof(double));
        double step = 1e-6;
        const double *a[4] = {xp, N->W1, N->b1, N->W2};
        xp[j] = N->x[j] + step;
        (void)jac_program_eval(N->prog, a, (double *const[]){yp});
        xp[j] = N->x[j] - step;
        (void)jac_program_eval(N->prog, a, (double *const[]){ym});
        for (int64_t i = 0; i < m; i++) {
            double fd = (yp[i] - ym[i]) / (2.0 * step);
            double d = fabs(fd - J[i * n + j]);
            if (d > worst)
                worst = d;
        }
    }
    CHECK(worst < 1e-7, "%s: off central differences by %g", what, worst);
    free(xp);
    free(yp);
    free(ym);
    CHECK(world.calls == 1 && world.status == JAC_OK, "%s: state", what);
    jac_mpi_release(&world);
    free(J);
    free(ref);
    free(alone);
}

static void test_dense(void)
{
    net wide, tall;
    net_make(&wide, 40, 30, 25); /* rows < columns: reverse */
    net_make(&tall, 12, 20, 50); /* rows > columns: forward */
    check_dense(&wide, JAC_MPI_AUTO, "dense reverse (auto)");
    check_dense(&wide, JAC_MPI_FORWARD, "dense forward on a wide J");
    check_dense(&tall, JAC_MPI_AUTO, "dense forward (auto)");
    check_dense(&tall, JAC_MPI_REVERSE, "dense reverse on a tall J");
    net_free(&wide);
    net_free(&tall);
}

/* ------------------------------------------------------------------------ */
/* Sparse Jacobians and Hessians                                            */
/* ------------------------------------------------------------------------ */

/* The plan's values gathered (against the core and one process alone,
 * bitwise), and left distributed by rows (against the gathered ones). */
static void check_sparse(jac_program *prog, jac_sparse *plan, const double *u,
                         const char *what)
{
    bool hessian = jac_sparse_method_used(plan) == JAC_SPARSE_STAR ||
                   jac_sparse_method_used(plan) == JAC_SPARSE_ACYCLIC;
    int64_t nnz = jac_sparse_nnz(plan), nrows;
    jac_sparse_dims(plan, &nrows, NULL);
    const double *args[1] = {u};
    double *v = alloc_doubles(nnz), *ref = alloc_doubles(nnz);
    double *alone = alloc_doubles(nnz);
    (void)jac_program_set_threads(prog, 1);
    jac_status st = hessian ? jac_sparse_hessian(plan, args, NULL, ref)
                            : jac_sparse_jacobian(plan, args, ref, NULL);
    CHECK(st == JAC_OK, "%s: the core: %s", what, jac_program_errmsg());

    for (int64_t block = 0; block <= 2; block++) {
        jac_mpi shared = {.comm = MPI_COMM_WORLD, .block = block};
        jac_mpi self = {.comm = MPI_COMM_SELF, .block = block};
        st = hessian ? jac_mpi_sparse_hessian(&shared, plan, args, NULL, v)
                     : jac_mpi_sparse_jacobian(&shared, plan, args, v);
        CHECK(st == JAC_OK, "%s, block %lld: %s", what, (long long)block,
              shared.message);
        st = hessian ? jac_mpi_sparse_hessian(&self, plan, args, NULL, alone)
                     : jac_mpi_sparse_jacobian(&self, plan, args, alone);
        CHECK(st == JAC_OK, "%s, block %lld alone: %s", what, (long long)block,
              self.message);
        CHECK(memcmp(v, alone, (size_t)nnz * sizeof(double)) == 0,
              "%s, block %lld: %d ranks differ from one", what,
              (long long)block, size);
        if (block == 0)
            CHECK(memcmp(v, ref, (size_t)nnz * sizeof(double)) == 0,
                  "%s: not bitwise the core's values", what);
        CHECK(largest_gap(v, ref, nnz) < 1e-13, "%s: off the core's by %g",
              what, largest_gap(v, ref, nnz));

        /* Distributed: this rank's rows only, PETSc-style ownership. */
        int64_t first = -1, end = -1;
        jac_mpi_ownership(&shared, nrows, &first, &end);
        int64_t *ptr = malloc((size_t)(nrows + 1) * sizeof(int64_t));
        int64_t *idx = malloc((size_t)(nnz > 0 ? nnz : 1) * sizeof(int64_t));
        if (ptr == NULL || idx == NULL)
            MPI_Abort(MPI_COMM_WORLD, 2);
        (void)jac_sparse_csr(plan, JAC_INDEX_INT64, ptr, idx);
        int64_t own = ptr[end] - ptr[first];
        double *mine = alloc_doubles(own);
        st = jac_mpi_sparse_rows(&shared, plan, args, NULL, first, end, mine);
        CHECK(st == JAC_OK, "%s, block %lld, rows: %s", what, (long long)block,
              shared.message);
        CHECK(memcmp(mine, v + ptr[first], (size_t)own * sizeof(double)) == 0,
              "%s, block %lld: rows %lld..%lld differ from the gathered ones",
              what, (long long)block, (long long)first, (long long)end);
        /* Uneven ranges: the last rank owns everything from row 1. */
        int64_t f2 =
            rank == size - 1 ? (size > 1 ? 1 : 0) : (rank == 0 ? 0 : 1);
        int64_t e2 = rank == size - 1 ? nrows : 1;
        if (size == 1)
            f2 = 0;
        int64_t own2 = ptr[e2] - ptr[f2];
        double *mine2 = alloc_doubles(own2);
        st = jac_mpi_sparse_rows(&shared, plan, args, NULL, f2, e2, mine2);
        CHECK(st == JAC_OK, "%s, uneven rows: %s", what, shared.message);
        CHECK(memcmp(mine2, v + ptr[f2], (size_t)own2 * sizeof(double)) == 0,
              "%s: uneven rows differ from the gathered ones", what);
        free(mine2);
        free(mine);
        free(ptr);
        free(idx);
        jac_mpi_release(&shared);
        jac_mpi_release(&self);
    }
    free(v);
    free(ref);
    free(alone);
}

/* Every entry of a sparse Jacobian plan against the dense Jacobian. */
static void check_against_dense(jac_program *prog, jac_sparse *plan,
                                const double *u, const char *what)
{
    int64_t nnz = jac_sparse_nnz(plan), nrows, ncols;
    jac_sparse_dims(plan, &nrows, &ncols);
    double *v = alloc_doubles(nnz), *D = alloc_doubles(nrows * ncols);
    int64_t *r = malloc((size_t)nnz * sizeof(int64_t));
    int64_t *c = malloc((size_t)nnz * sizeof(int64_t));
    if (r == NULL || c == NULL)
        MPI_Abort(MPI_COMM_WORLD, 2);
    const double *args[1] = {u};
    jac_mpi world = {.comm = MPI_COMM_WORLD, .block = 1};
    CHECK(jac_mpi_sparse_jacobian(&world, plan, args, v) == JAC_OK, "%s: %s",
          what, world.message);
    (void)jac_program_jacobian(prog, args, NULL, (double *const[]){D});
    (void)jac_sparse_coo(plan, JAC_INDEX_INT64, r, c);
    double worst = 0.0, covered = 0.0, total = 0.0;
    for (int64_t k = 0; k < nnz; k++) {
        double d = fabs(v[k] - D[r[k] * ncols + c[k]]);
        worst = d > worst ? d : worst;
        covered += fabs(D[r[k] * ncols + c[k]]);
    }
    for (int64_t k = 0; k < nrows * ncols; k++)
        total += fabs(D[k]);
    CHECK(worst < 1e-9, "%s: off the dense Jacobian by %g", what, worst);
    CHECK(covered == total, "%s: the pattern misses entries", what);
    jac_mpi_release(&world);
    free(v);
    free(D);
    free(r);
    free(c);
}

static void test_sparse(void)
{
    int64_t N = 9, n = N * N;
    double *u = alloc_doubles(n);
    jac_program *f = record_grid(bratu, &N, u);
    for (int method = JAC_SPARSE_FORWARD; method <= JAC_SPARSE_REVERSE;
         method++) {
        jac_sparse_opts opts = {.method = (jac_sparse_method)method};
        jac_sparse *plan = NULL;
        CHECK(jac_sparse_jacobian_plan(f, &opts, &plan) == JAC_OK, "plan: %s",
              jac_program_errmsg());
        const char *what = method == JAC_SPARSE_FORWARD
                               ? "sparse Jacobian, forward"
                               : "sparse Jacobian, reverse";
        check_sparse(f, plan, u, what);
        check_against_dense(f, plan, u, what);
        jac_sparse_free(plan);
    }
    jac_program *e = record_grid(energy, &N, u);
    for (int tri = JAC_TRIANGLE_FULL; tri <= JAC_TRIANGLE_LOWER; tri++) {
        jac_sparse_opts opts = {.method = JAC_SPARSE_STAR,
                                .triangle = (jac_triangle)tri};
        jac_sparse *plan = NULL;
        CHECK(jac_sparse_hessian_plan(e, &opts, &plan) == JAC_OK, "plan: %s",
              jac_program_errmsg());
        check_sparse(e, plan, u, "sparse Hessian");
        /* Against the dense Hessian. */
        int64_t nnz = jac_sparse_nnz(plan);
        double *v = alloc_doubles(nnz), *H = alloc_doubles(n * n);
        int64_t *r = malloc((size_t)nnz * sizeof(int64_t));
        int64_t *c = malloc((size_t)nnz * sizeof(int64_t));
        if (r == NULL || c == NULL)
            MPI_Abort(MPI_COMM_WORLD, 2);
        jac_mpi world = {.comm = MPI_COMM_WORLD, .block = 1};
        const double *args[1] = {u};
        CHECK(jac_mpi_sparse_hessian(&world, plan, args, NULL, v) == JAC_OK,
              "sparse Hessian: %s", world.message);
        (void)jac_program_hessian(e, args, NULL, (double *const[]){H});
        (void)jac_sparse_coo(plan, JAC_INDEX_INT64, r, c);
        double worst = 0.0;
        for (int64_t k = 0; k < nnz; k++) {
            double d = fabs(v[k] - H[r[k] * n + c[k]]);
            worst = d > worst ? d : worst;
        }
        CHECK(worst < 1e-10, "sparse Hessian: off the dense one by %g", worst);
        jac_mpi_release(&world);
        free(v);
        free(H);
        free(r);
        free(c);
        jac_sparse_free(plan);
    }
    /* An acyclic plan gathers, but cannot be left distributed. */
    jac_sparse_opts acyclic = {.method = JAC_SPARSE_ACYCLIC};
    jac_sparse *plan = NULL;
    CHECK(jac_sparse_hessian_plan(e, &acyclic, &plan) == JAC_OK, "plan: %s",
          jac_program_errmsg());
    int64_t nnz = jac_sparse_nnz(plan);
    double *v = alloc_doubles(nnz), *alone = alloc_doubles(nnz);
    const double *args[1] = {u};
    jac_mpi world = {.comm = MPI_COMM_WORLD, .block = 1};
    jac_mpi self = {.comm = MPI_COMM_SELF, .block = 1};
    CHECK(jac_mpi_sparse_hessian(&world, plan, args, NULL, v) == JAC_OK,
          "acyclic Hessian: %s", world.message);
    CHECK(jac_mpi_sparse_hessian(&self, plan, args, NULL, alone) == JAC_OK,
          "acyclic Hessian alone: %s", self.message);
    CHECK(memcmp(v, alone, (size_t)nnz * sizeof(double)) == 0,
          "acyclic Hessian: %d ranks differ from one", size);
    int64_t first = 0, end = 0;
    jac_mpi_ownership(&world, n, &first, &end);
    jac_status st =
        jac_mpi_sparse_rows(&world, plan, args, NULL, first, end, v);
    CHECK(st == JAC_ERR_VALUE && strstr(world.message, "substitution"),
          "acyclic rows: status %d, %s", (int)st, world.message);
    jac_mpi_release(&world);
    jac_mpi_release(&self);
    free(v);
    free(alone);
    jac_sparse_free(plan);
    jac_program_free(f);
    jac_program_free(e);
    free(u);
}

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

/* Whether every rank holds the same message as rank 0. */
static bool same_message(const char *message)
{
    char root[JAC_MPI_MESSAGE_MAX];
    memcpy(root, message, sizeof root);
    MPI_Bcast(root, (int)sizeof root, MPI_CHAR, 0, MPI_COMM_WORLD);
    int same = strcmp(root, message) == 0, all = 0;
    MPI_Allreduce(&same, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return all == 1;
}

/* Fails every allocation on the rank given as user data. */
static void *fail_on_rank(size_t bytes, void *user)
{
    return *(const int *)user == rank ? NULL : malloc(bytes);
}

static void release(void *p, void *user)
{
    (void)user;
    free(p);
}

static void test_failing_rank(void)
{
    net N;
    net_make(&N, 20, 10, 15);
    int64_t total = N.m * N.n;
    double *J = alloc_doubles(total);
    const double *args[4] = {N.x, N.W1, N.b1, N.W2};
    int last = size - 1;
    char expect[64];

    /* Bad input on the last rank only: args NULL. */
    jac_mpi s = {.comm = MPI_COMM_WORLD};
    jac_status st = jac_mpi_jacobian(&s, N.prog, rank == last ? NULL : args,
                                     JAC_MPI_AUTO, J);
    snprintf(expect, sizeof expect, "jac_mpi_jacobian: rank %d of %d: ", last,
             size);
    CHECK(st == JAC_ERR_NULL_ARG && s.status == JAC_ERR_NULL_ARG,
          "args NULL on rank %d: status %d", last, (int)st);
    CHECK(strncmp(s.message, expect, strlen(expect)) == 0 &&
              strstr(s.message, "args is NULL") != NULL,
          "args NULL: message '%s'", s.message);
    CHECK(same_message(s.message), "args NULL: the ranks' messages differ");
    CHECK(all_nan(J, total), "args NULL: J is not NaN");
    /* The first failure stays; the next call still works. */
    st = jac_mpi_jacobian(&s, N.prog, args, JAC_MPI_AUTO, J);
    CHECK(st == JAC_OK && s.status == JAC_ERR_NULL_ARG && !all_nan(J, total),
          "after a failure: status %d, kept %d", (int)st, (int)s.status);
    jac_mpi_release(&s);

    /* A different program on the last rank. */
    net other;
    net_make(&other, 21, 10, 15);
    const double *oargs[4] = {other.x, other.W1, other.b1, other.W2};
    jac_mpi d = {.comm = MPI_COMM_WORLD};
    double *Jo = alloc_doubles(other.m * other.n);
    st = jac_mpi_jacobian(&d, rank == last ? other.prog : N.prog,
                          rank == last ? oargs : args, JAC_MPI_AUTO,
                          rank == last ? Jo : J);
    if (size > 1) {
        CHECK(st == JAC_ERR_SHAPE && strstr(d.message, "differ") != NULL,
              "different programs: status %d, '%s'", (int)st, d.message);
        CHECK(same_message(d.message),
              "different programs: the ranks' messages differ");
        CHECK(all_nan(rank == last ? Jo : J,
                      rank == last ? other.m * other.n : total),
              "different programs: J is not NaN");
    } else {
        CHECK(st == JAC_OK, "one rank, other program: %s", d.message);
    }
    jac_mpi_release(&d);
    free(Jo);
    net_free(&other);

    /* A bad block on rank 0 only. */
    jac_mpi b = {.comm = MPI_COMM_WORLD, .block = rank == 0 ? -3 : 0};
    st = jac_mpi_jacobian(&b, N.prog, args, JAC_MPI_AUTO, J);
    CHECK(st == JAC_ERR_VALUE && strstr(b.message, "rank 0 of") != NULL &&
              strstr(b.message, "block -3") != NULL,
          "bad block: status %d, '%s'", (int)st, b.message);
    CHECK(same_message(b.message), "bad block: the ranks' messages differ");
    jac_mpi_release(&b);

    /* No memory on the last rank: the workspace cannot be made. */
    jac_mpi a = {.comm = MPI_COMM_WORLD,
                 .allocator = {fail_on_rank, release, &last}};
    st = jac_mpi_jacobian(&a, N.prog, args, JAC_MPI_FORWARD, J);
    CHECK(st == JAC_ERR_NO_MEMORY &&
              strncmp(a.message, expect, strlen(expect)) == 0,
          "no memory: status %d, '%s'", (int)st, a.message);
    CHECK(same_message(a.message), "no memory: the ranks' messages differ");
    CHECK(all_nan(J, total), "no memory: J is not NaN");
    jac_mpi_release(&a);

    /* No memory for the forward transpose on the last rank only: the
     * workspace exists, its second buffer fails. */
    int never = -1;
    jac_mpi a2 = {.comm = MPI_COMM_WORLD,
                  .allocator = {fail_on_rank, release, &never}};
    st = jac_mpi_jacobian(&a2, N.prog, args, JAC_MPI_REVERSE, J);
    CHECK(st == JAC_OK, "reverse with an allocator: %s", a2.message);
    never = last;
    st = jac_mpi_jacobian(&a2, N.prog, args, JAC_MPI_FORWARD, J);
    CHECK(st == JAC_ERR_NO_MEMORY && strstr(a2.message, "bytes") != NULL,
          "no memory for J^T: status %d, '%s'", (int)st, a2.message);
    CHECK(all_nan(J, total), "no memory for J^T: J is not NaN");
    never = -1;
    jac_mpi_release(&a2);

    /* A sparse call with a bad row range on the last rank. */
    int64_t Ng = 6, n = Ng * Ng;
    double *u = alloc_doubles(n);
    jac_program *f = record_grid(bratu, &Ng, u);
    jac_sparse *plan = NULL;
    CHECK(jac_sparse_jacobian_plan(f, NULL, &plan) == JAC_OK, "plan: %s",
          jac_program_errmsg());
    jac_mpi r = {.comm = MPI_COMM_WORLD};
    int64_t first = 0, end = 0;
    jac_mpi_ownership(&r, n, &first, &end);
    double *vals = alloc_doubles(jac_sparse_nnz(plan));
    const double *uargs[1] = {u};
    st = jac_mpi_sparse_rows(&r, plan, uargs, NULL, first,
                             rank == last ? n + 1 : end, vals);
    CHECK(st == JAC_ERR_VALUE && strstr(r.message, "rows [") != NULL,
          "bad rows: status %d, '%s'", (int)st, r.message);
    CHECK(same_message(r.message), "bad rows: the ranks' messages differ");
    /* Ranges with a gap between ranks (none with one rank). */
    r.status = JAC_OK;
    st = jac_mpi_sparse_rows(&r, plan, uargs, NULL,
                             rank == 0 ? first : first + 1, end, vals);
    if (size > 1)
        CHECK(st == JAC_ERR_VALUE && strstr(r.message, "follow") != NULL,
              "gapped rows: status %d, '%s'", (int)st, r.message);
    else
        CHECK(st == JAC_OK, "one rank's rows: %s", r.message);
    /* A Hessian call with a Jacobian's plan, on every rank. */
    r.status = JAC_OK;
    st = jac_mpi_sparse_hessian(&r, plan, uargs, NULL, vals);
    CHECK(st == JAC_ERR_VALUE && strstr(r.message, "Jacobian's") != NULL,
          "Jacobian plan to the Hessian call: %d, '%s'", (int)st, r.message);
    CHECK(all_nan(vals, jac_sparse_nnz(plan)), "wrong plan: not NaN");
    jac_mpi_release(&r);
    jac_mpi_release(NULL);
    CHECK(jac_mpi_jacobian(NULL, N.prog, args, JAC_MPI_AUTO, J) ==
              JAC_ERR_NULL_ARG,
          "NULL state");
    free(vals);
    free(u);
    jac_sparse_free(plan);
    jac_program_free(f);
    free(J);
    net_free(&N);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const char *only = argc > 1 ? argv[1] : "all";
    if (strcmp(only, "all") == 0 || strcmp(only, "dense") == 0)
        test_dense();
    if (strcmp(only, "all") == 0 || strcmp(only, "sparse") == 0)
        test_sparse();
    if (strcmp(only, "all") == 0 || strcmp(only, "errors") == 0)
        test_failing_rank();
    int total = 0;
    MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0)
        printf("test_mpi %s on %d ranks: %s (%d failed checks)\n", only, size,
               total == 0 ? "passed" : "FAILED", total);
    MPI_Finalize();
    return total == 0 ? 0 : 1;
}
