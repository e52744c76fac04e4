/*
 * Strong scaling of the MPI component (include/jacobian_mpi.h) on the
 * problems of docs/benchmarks.md: P2 (the dense Jacobian of the
 * 512-2048-512 network, reverse, 512 seeds) and P6 (the sparse Jacobian of
 * the 2-D Bratu residual at N = 1000: a million unknowns, 5 colours),
 * gathered on every rank and, for P6, left in each rank's rows.
 *
 *     mpirun -np 1 bench/jacobian_mpi_bench
 *     mpirun -np 2 bench/jacobian_mpi_bench [--block B] [--repeats R]
 *     [--only P2|P6]
 *
 * One line per measurement, from rank 0: the median over the repeats
 * (after one warm-up) of the slowest rank's wall time per call, the parts
 * of it spent in this rank's sweeps and in the exchange (both the slowest
 * rank's, per call), the bytes each rank receives, and the checksums of
 * the result (sum, Frobenius norm, J[0][0]) against the reference values
 * of docs/benchmarks.md. Each rank sweeps on one thread (OpenBLAS's
 * threads too: run with OPENBLAS_NUM_THREADS=1), so that ranks, not
 * threads, share the cores.
 *
 * SPDX-License-Identifier: MIT
 */
#include "jacobian_mpi.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int rank, size;

static void *need(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (p == NULL) {
        fprintf(stderr, "rank %d: out of memory for %zu bytes\n", rank, bytes);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    return p;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, by_value);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The slowest rank's value of x. */
static double slowest(double x)
{
    double worst = x;
    MPI_Allreduce(&x, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return worst;
}

/* What one measured call does: the call, and its result for the
 * checksums (count values, where the whole result is on every rank). */
typedef struct measured {
    const char *problem, *size, *variant;
    jac_status (*call)(struct measured *m);
    jac_mpi state;
    jac_program *prog;
    jac_sparse *plan;
    const double **args;
    double *result;
    int64_t count;
    int64_t first_row, end_row;
    int64_t rows, cols;
    double ref_sum, ref_fro, ref_j00;
} measured;

static jac_status call_dense(measured *m)
{
    return jac_mpi_jacobian(&m->state, m->prog, m->args, JAC_MPI_REVERSE,
                            m->result);
}

static jac_status call_sparse(measured *m)
{
    return jac_mpi_sparse_jacobian(&m->state, m->plan, m->args, m->result);
}

static jac_status call_rows(measured *m)
{
    return jac_mpi_sparse_rows(&m->state, m->plan, m->args, NULL, m->first_row,
                               m->end_row, m->result);
}

/* Sum, Frobenius norm and the (0, 0) entry of the result, over every rank
 * when it is distributed (each rank's rows). */
static void checksums(const measured *m, bool distributed, double *sum,
                      double *fro, double *j00)
{
    double local[2] = {0.0, 0.0}, all[2];
    for (int64_t k = 0; k < m->count; k++) {
        local[0] += m->result[k];
        local[1] += m->result[k] * m->result[k];
    }
    if (distributed)
        MPI_Allreduce(local, all, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    else
        memcpy(all, local, sizeof all);
    *sum = all[0];
    *fro = sqrt(all[1]);
    double first = m->count > 0 && (!distributed || m->first_row == 0)
                       ? m->result[0]
                       : -INFINITY;
    MPI_Allreduce(&first, j00, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
}

static int run(measured *m, int repeats, bool distributed)
{
    double *wall = need((size_t)repeats * sizeof(double));
    double *sweeps = need((size_t)repeats * sizeof(double));
    double *exchange = need((size_t)repeats * sizeof(double));
    jac_status st = m->call(m); /* warm-up: workspaces, derived programs */
    int64_t b0 = m->state.bytes_received;
    for (int r = 0; r < repeats && st == JAC_OK; r++) {
        double s0 = m->state.seconds_sweeps, e0 = m->state.seconds_exchange;
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        st = m->call(m);
        double t1 = MPI_Wtime();
        wall[r] = slowest(t1 - t0);
        sweeps[r] = slowest(m->state.seconds_sweeps - s0);
        exchange[r] = slowest(m->state.seconds_exchange - e0);
    }
    if (st != JAC_OK) {
        if (rank == 0)
            fprintf(stderr, "%s %s: %s\n", m->problem, m->variant,
                    m->state.message);
        return 1;
    }
    double sum, fro, j00;
    checksums(m, distributed, &sum, &fro, &j00);
    bool ok = fabs(sum - m->ref_sum) <= 1e-9 * fabs(m->ref_fro) &&
              fabs(fro - m->ref_fro) <= 1e-9 * fabs(m->ref_fro) &&
              fabs(j00 - m->ref_j00) <= 1e-9 * fabs(m->ref_j00);
    /* The most bytes a rank received in one call. */
    int64_t mine = (m->state.bytes_received - b0) / repeats, received = 0;
    MPI_Reduce(&mine, &received, 1, MPI_INT64_T, MPI_MAX, 0, MPI_COMM_WORLD);
    if (rank == 0)
        printf("{\"problem\": \"%s\", \"size\": \"%s\", \"variant\": \"%s\", "
               "\"ranks\": %d, \"block\": %lld, \"repeats\": %d, "
               "\"median_s\": %.6g, \"sweeps_s\": %.6g, \"exchange_s\": "
               "%.6g, \"received_bytes\": %lld, \"sum\": %.17g, \"fro\": "
               "%.17g, \"j00\": %.17g, \"checksums\": \"%s\"}\n",
               m->problem, m->size, m->variant, size, (long long)m->state.block,
               repeats, median(wall, repeats), median(sweeps, repeats),
               median(exchange, repeats), (long long)received, sum, fro, j00,
               ok ? "match" : "DIFFER");
    free(wall);
    free(sweeps);
    free(exchange);
    jac_mpi_release(&m->state);
    return ok ? 0 : 1;
}

/* ------------------------------------------------------------------------ */
/* P2: y = W3 tanh(W2 tanh(W1 x + b1) + b2) + b3, 512-2048-512              */
/* ------------------------------------------------------------------------ */

static double *weights(int64_t rows, int64_t cols, int s)
{
    double *w = need((size_t)(rows * cols) * sizeof(double));
    double scale = sqrt((double)cols);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++)
            w[i * cols + j] =
                sin(0.37 * (double)i + 0.11 * (double)j + (double)s) / scale;
    return w;
}

static double *bias(int64_t rows, int s)
{
    double *b = need((size_t)rows * sizeof(double));
    for (int64_t i = 0; i < rows; i++)
        b[i] = 0.01 * cos(0.5 * (double)i + (double)s);
    return b;
}

static int bench_p2(int64_t block, int repeats)
{
    int64_t n = 512, h = 2048, m = 512;
    int64_t rows[3] = {h, h, m}, cols[3] = {n, h, h};
    double *x = need((size_t)n * sizeof(double)), *W[3], *b[3];
    for (int64_t j = 0; j < n; j++)
        x[j] = 0.5 * sin(0.3 * (double)j + 0.7);
    jac_ctx *ctx = jac_ctx_new();
    jac_tensor *Wt[3], *bt[3];
    for (int s = 0; s < 3; s++) {
        W[s] = weights(rows[s], cols[s], s + 1);
        b[s] = bias(rows[s], s + 1);
        int64_t shape[2] = {rows[s], cols[s]};
        Wt[s] = jac_tensor_new(ctx, 2, shape, W[s]);
        bt[s] = jac_tensor_new(ctx, 1, &rows[s], b[s]);
    }
    jac_tensor *xt = jac_tensor_new(ctx, 1, &n, x);
    jac_program *prog = NULL;
    if (jac_program_begin(ctx, 1, &xt, 0, NULL) == JAC_OK) {
        jac_tensor *y =
            jac_tanh(ctx, jac_add(ctx, jac_matmul(ctx, Wt[0], xt), bt[0]));
        y = jac_tanh(ctx, jac_add(ctx, jac_matmul(ctx, Wt[1], y), bt[1]));
        y = jac_add(ctx, jac_matmul(ctx, Wt[2], y), bt[2]);
        (void)jac_program_end(ctx, 1, &y, 0, &prog);
    }
    jac_ctx_free(ctx);
    if (prog == NULL) {
        fprintf(stderr, "P2: recording failed\n");
        return 1;
    }
    (void)jac_program_set_threads(prog, 1);
    const double *args[1] = {x};
    measured me = {.problem = "P2_mlp",
                   .size = "512-2048-512",
                   .variant = "mpi_gathered",
                   .call = call_dense,
                   .state = {.comm = MPI_COMM_WORLD, .block = block},
                   .prog = prog,
                   .args = args,
                   .result = need((size_t)(m * n) * sizeof(double)),
                   .count = m * n,
                   .ref_sum = -0.00026738786052256554,
                   .ref_fro = 0.026009785692566793,
                   .ref_j00 = 5.5047805988081658e-05};
    int failed = run(&me, repeats, false);
    free(me.result);
    jac_program_free(prog);
    free(x);
    for (int s = 0; s < 3; s++) {
        free(W[s]);
        free(b[s]);
    }
    return failed;
}

/* ------------------------------------------------------------------------ */
/* P6: the 2-D Bratu residual, N = 1000                                     */
/* ------------------------------------------------------------------------ */

static jac_tensor *grid_slice(jac_ctx *ctx, jac_tensor *p, int64_t r0,
                              int64_t r1, int64_t c0, int64_t c1)
{
    return jac_slice(ctx, jac_slice(ctx, p, 0, r0, r1, 1), 1, c0, c1, 1);
}

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

static int bench_p6(int64_t block, int repeats)
{
    int64_t N = 1000, n = N * N, shape[2] = {N, N};
    double *u = need((size_t)n * sizeof(double));
    for (int64_t k = 0; k < n; k++)
        u[k] = 0.1 * sin(0.3 * (double)k + 0.7);
    jac_ctx *ctx = jac_ctx_new();
    jac_tensor *ut = jac_tensor_new(ctx, 2, shape, u);
    jac_program *prog = NULL;
    jac_status st =
        jac_program_record(ctx, bratu, &N, 1, &ut, 0, NULL, 1, 0, &prog);
    jac_ctx_free(ctx);
    jac_sparse *plan = NULL;
    if (st == JAC_OK)
        st = jac_sparse_jacobian_plan(prog, NULL, &plan);
    if (st != JAC_OK) {
        fprintf(stderr, "P6: %s\n", jac_program_errmsg());
        return 1;
    }
    (void)jac_program_set_threads(prog, 1);
    int64_t nnz = jac_sparse_nnz(plan);
    const double *args[1] = {u};
    measured me = {.problem = "P6_bratu2d",
                   .size = "N=1000",
                   .variant = "mpi_gathered",
                   .call = call_sparse,
                   .state = {.comm = MPI_COMM_WORLD, .block = block},
                   .plan = plan,
                   .args = args,
                   .result = need((size_t)nnz * sizeof(double)),
                   .count = nnz,
                   .ref_sum = 4001988987.0896358,
                   .ref_fro = 4480631187.6396103,
                   .ref_j00 = 4007997.6007471718};
    int failed = run(&me, repeats, false);

    /* Distributed: this rank's rows only. */
    int64_t *ptr = need((size_t)(n + 1) * sizeof(int64_t));
    int64_t *idx = need((size_t)nnz * sizeof(int64_t));
    (void)jac_sparse_csr(plan, JAC_INDEX_INT64, ptr, idx);
    jac_mpi_ownership(&me.state, n, &me.first_row, &me.end_row);
    me.variant = "mpi_rows";
    me.call = call_rows;
    me.count = ptr[me.end_row] - ptr[me.first_row];
    failed |= run(&me, repeats, true);
    free(ptr);
    free(idx);
    free(me.result);
    jac_sparse_free(plan);
    jac_program_free(prog);
    free(u);
    return failed;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int64_t block = 0;
    int repeats = 5;
    const char *only = NULL;
    for (int a = 1; a + 1 < argc; a += 2) {
        if (strcmp(argv[a], "--block") == 0)
            block = strtoll(argv[a + 1], NULL, 10);
        else if (strcmp(argv[a], "--repeats") == 0)
            repeats = atoi(argv[a + 1]);
        else if (strcmp(argv[a], "--only") == 0)
            only = argv[a + 1];
    }
    if (repeats < 1)
        repeats = 1;
    int failed = 0;
    /* P2's 512 rows in blocks of 128 (4 blocks: shares for up to 4 ranks;
     * smaller blocks cost more per seed, docs/distributed.md); P6's 5
     * colours one by one. */
    if (only == NULL || strcmp(only, "P2") == 0)
        failed |= bench_p2(block > 0 ? block : 128, repeats);
    if (only == NULL || strcmp(only, "P6") == 0)
        failed |= bench_p6(block > 0 ? block : 1, repeats);
    MPI_Finalize();
    return failed;
}
