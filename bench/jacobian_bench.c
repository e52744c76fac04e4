/*
 * jacobian_bench: times libjacobian on the benchmark problems P1..P5 (see
 * docs/benchmarks.md for the problems, the reference values and how to
 * compare with PyTorch and ADOL-C) and prints one JSON line per measurement.
 *
 *   jacobian_bench                      every problem, size, variant, thread
 *   jacobian_bench --problems P1,P3 --sizes small --threads 1
 *   jacobian_bench --check              smallest sizes once; exit 1 on a
 *                                       checksum that differs from the
 *                                       reference
 *   jacobian_bench --gemm               this machine's cblas_dgemm GFLOP/s
 *
 * Every timed repetition is one complete computation from the input values:
 * the input tensor is built from its values, the function is recorded, the
 * Jacobian (or Hessian, or gradient) is computed, and the repetition's scope
 * is released. The weights of P2 and P5 are constants of the function,
 * built once per context outside the timed region (as the references do).
 * Timing: one warm-up (its result gives the checksums), then repetitions
 * until at least --min-repeats and --budget seconds; median and minimum of
 * CLOCK_MONOTONIC intervals.
 *
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L

#include <jacobian.h>

#include <cblas.h>

#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------------ */
/* Problems, sizes and reference values (PROBLEMS.md)                       */
/* ------------------------------------------------------------------------ */

enum { P1, P2, P3, P4, P5, NPROBLEMS };

static const char *const problem_names[NPROBLEMS] = {
    "P1_square", "P2_mlp", "P3_rosenbrock", "P4_chain", "P5_batch_mlp"};

enum { TIER_SMALL = 1, TIER_MEDIUM = 2, TIER_LARGE = 4, TIER_ALL = 7 };

typedef struct size_def {
    int problem;
    const char *size;
    int64_t a, b, c; /* n | (n_in, hidden, n_out) | k | B */
    int tiers;       /* which of --sizes small/medium/large select it */
    double ref_sum, ref_fro, ref_j00;
} size_def;

/* PyTorch 1.13.1, float64; ADOL-C 2.7.2 agrees to 1e-11. */
static const size_def size_table[] = {
    {P1, "n=2", 2, 0, 0, TIER_SMALL, 1.4856886720455875, 1.0597593343884502,
     0.64421768723769102},
    {P1, "n=256", 256, 0, 0, TIER_MEDIUM, 4.0965276809403131,
     11.372683751084219, 0.64421768723769102},
    {P1, "n=2048", 2048, 0, 0, TIER_LARGE, 0.52653562316776548,
     32.024981209967308, 0.64421768723769102},
    {P2, "16-32-16", 16, 32, 16, TIER_SMALL, -0.31407040894689525,
     0.42722832080584455, 0.026841722018463098},
    {P2, "128-512-128", 128, 512, 128, TIER_MEDIUM, -0.073235137776548109,
     0.088305095922735694, 0.00072895702567606026},
    {P2, "512-2048-512", 512, 2048, 512, TIER_LARGE, -0.00026738786052256554,
     0.026009785692566793, 5.5047805988081658e-05},
    {P3, "n=64", 64, 0, 0, TIER_SMALL, 22102.920748172011, 3505.0845285148939,
     -41.789268396615455},
    {P3, "n=512", 512, 0, 0, TIER_LARGE, 176572.65928334248, 9953.4572405315776,
     -41.789268396615455},
    {P4, "k=10000", 10000, 0, 0, TIER_ALL, 0.00073974788001393,
     0.00073974788001393, 0.00073974788001393},
    {P5, "B=64", 64, 0, 0, TIER_ALL, -4.6970480864790822, 0.70808530018179627,
     0.00072895702567606026},
};
#define NSIZES (sizeof size_table / sizeof size_table[0])

/* The size of P2 that P5 applies to every row. */
static const int64_t P5_N_IN = 128, P5_HIDDEN = 512, P5_N_OUT = 128;

/* The smallest size of each problem: the sizes --check runs by default. */
static bool is_smallest(const size_def *sd)
{
    return (sd->tiers & TIER_SMALL) != 0;
}

/* ------------------------------------------------------------------------ */
/* Variants                                                                 */
/* ------------------------------------------------------------------------ */

enum {
    V_ROWLOOP, /* chunk 1, reverse: one backward pass per output element */
    V_BATCHED, /* blocks of seeds, reverse; best chunk of a few tried */
    V_FORWARD, /* blocks of columns by Jacobian-vector products */
    V_HESSIAN, /* P3 only: jac_hessian */
    V_GRAD,    /* P4 only: one jac_grad */
    NVARIANTS
};

static const char *const variant_names[NVARIANTS] = {
    "rowloop", "batched", "forward", "hessian", "grad"};

static bool variant_applies(int problem, int variant)
{
    switch (problem) {
    case P1:
    case P2:
        return variant == V_ROWLOOP || variant == V_BATCHED ||
               variant == V_FORWARD;
    case P3:
        return variant != V_GRAD;
    case P4:
        return variant == V_GRAD;
    case P5: /* jac_batch_jacobian has no forward mode */
        return variant == V_ROWLOOP || variant == V_BATCHED;
    default:
        return false;
    }
}

/* One way to run a variant: the chunk and the split of the threads between
 * the Jacobian driver and OpenBLAS. */
typedef struct config {
    int variant;
    int64_t chunk;
    int jac_threads;
    int blas_threads;
} config;

/* ------------------------------------------------------------------------ */
/* Options                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct options {
    bool problems[NPROBLEMS];
    bool variants[NVARIANTS];
    const char *sizes; /* comma list of tiers or exact sizes; NULL: all */
    int threads[8];
    int nthreads;
    double budget;
    double tune_budget;
    int min_rep, max_rep;
    int64_t chunks[16];
    int nchunks;
    bool tune;
    bool fixed; /* --fixed: one configuration, no tuning */
    config fixed_cfg;
    bool check;
    bool gemm;
    bool plain_alloc; /* --plain-alloc: the library's own malloc/free */
} options;

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: jacobian_bench [options]\n"
        "  --problems LIST   P1,P2,P3,P4,P5 (default all)\n"
        "  --sizes LIST      small,medium,large or exact sizes such as\n"
        "                    n=2048,16-32-16 (default all)\n"
        "  --variants LIST   rowloop,batched,forward,hessian,grad (default "
        "all)\n"
        "  --threads LIST    thread counts (default 1,2)\n"
        "  --budget S        seconds of repetitions per measurement (0.4)\n"
        "  --min-repeats N   at least N timed repetitions (5)\n"
        "  --max-repeats N   at most N timed repetitions (2000)\n"
        "  --repeats N       exactly N timed repetitions (sets both)\n"
        "  --chunks LIST     chunk sizes tried for batched and forward\n"
        "                    (default 0,8,32,128,512; 0 = automatic)\n"
        "  --no-tune         batched and forward use the automatic chunk only\n"
        "  --fixed C,J,B     run chunk C with J driver threads and B OpenBLAS\n"
        "                    threads only (for profiling one configuration)\n"
        "  --plain-alloc     contexts use malloc/free directly (ctx_peak_mb\n"
        "                    is then -1)\n"
        "  --check           run the smallest sizes (or --sizes) once and\n"
        "                    exit 1 unless the checksums match PROBLEMS.md\n"
        "  --gemm            measure cblas_dgemm GFLOP/s and exit\n"
        "  --list            list problems and sizes\n"
        "  --help\n");
}

static bool list_has(const char *list, const char *word)
{
    size_t n = strlen(word);
    const char *p = list;
    while (p && *p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, word, n) == 0)
            return true;
        p = end ? end + 1 : NULL;
    }
    return false;
}

/* Parses a comma list of integers; returns the count or -1. */
static int parse_ints(const char *s, int64_t *out, int max)
{
    int n = 0;
    while (*s) {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s || n == max || v < 0)
            return -1;
        out[n++] = (int64_t)v;
        s = end;
        if (*s == ',')
            s++;
        else if (*s)
            return -1;
    }
    return n;
}

static bool size_selected(const options *o, const size_def *sd)
{
    if (o->sizes == NULL)
        return o->check ? is_smallest(sd) : true;
    if (list_has(o->sizes, "all") || list_has(o->sizes, sd->size))
        return true;
    return ((sd->tiers & TIER_SMALL) && list_has(o->sizes, "small")) ||
           ((sd->tiers & TIER_MEDIUM) && list_has(o->sizes, "medium")) ||
           ((sd->tiers & TIER_LARGE) && list_has(o->sizes, "large"));
}

static int parse_options(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    for (int p = 0; p < NPROBLEMS; p++)
        o->problems[p] = true;
    for (int v = 0; v < NVARIANTS; v++)
        o->variants[v] = true;
    o->threads[0] = 1;
    o->threads[1] = 2;
    o->nthreads = 2;
    o->budget = 0.4;
    o->min_rep = 5;
    o->max_rep = 2000;
    const int64_t chunks[] = {0, 8, 32, 128, 512};
    o->nchunks = (int)(sizeof chunks / sizeof chunks[0]);
    memcpy(o->chunks, chunks, sizeof chunks);
    o->tune = true;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = true;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--list") == 0) {
            for (size_t s = 0; s < NSIZES; s++)
                printf("%s %s\n", problem_names[size_table[s].problem],
                       size_table[s].size);
            exit(0);
        } else if (strcmp(a, "--check") == 0) {
            o->check = true;
            takes = false;
        } else if (strcmp(a, "--gemm") == 0) {
            o->gemm = true;
            takes = false;
        } else if (strcmp(a, "--plain-alloc") == 0) {
            o->plain_alloc = true;
            takes = false;
        } else if (strcmp(a, "--no-tune") == 0) {
            o->tune = false;
            takes = false;
        } else if (val == NULL) {
            fprintf(stderr,
                    "jacobian_bench: unknown option or missing "
                    "value: %s\n",
                    a);
            return -1;
        } else if (strcmp(a, "--problems") == 0) {
            for (int p = 0; p < NPROBLEMS; p++) {
                char id[4] = {'P', (char)('1' + p), 0, 0};
                o->problems[p] =
                    list_has(val, id) || list_has(val, problem_names[p]);
            }
        } else if (strcmp(a, "--variants") == 0) {
            for (int v = 0; v < NVARIANTS; v++)
                o->variants[v] = list_has(val, variant_names[v]);
        } else if (strcmp(a, "--sizes") == 0) {
            o->sizes = val;
        } else if (strcmp(a, "--threads") == 0) {
            int64_t t[8];
            int n = parse_ints(val, t, 8);
            if (n <= 0)
                return -1;
            for (int k = 0; k < n; k++) {
                if (t[k] < 1 || t[k] > 256)
                    return -1;
                o->threads[k] = (int)t[k];
            }
            o->nthreads = n;
        } else if (strcmp(a, "--budget") == 0) {
            o->budget = atof(val);
        } else if (strcmp(a, "--min-repeats") == 0) {
            o->min_rep = atoi(val);
        } else if (strcmp(a, "--max-repeats") == 0) {
            o->max_rep = atoi(val);
        } else if (strcmp(a, "--repeats") == 0) {
            o->min_rep = o->max_rep = atoi(val);
            o->budget = 0.0;
        } else if (strcmp(a, "--fixed") == 0) {
            int64_t f[3];
            if (parse_ints(val, f, 3) != 3 || f[1] < 1 || f[1] > 256 ||
                f[2] < 1 || f[2] > 256)
                return -1;
            o->fixed = true;
            o->fixed_cfg.chunk = f[0];
            o->fixed_cfg.jac_threads = (int)f[1];
            o->fixed_cfg.blas_threads = (int)f[2];
        } else if (strcmp(a, "--chunks") == 0) {
            o->nchunks = parse_ints(val, o->chunks, 16);
            if (o->nchunks <= 0)
                return -1;
        } else {
            fprintf(stderr, "jacobian_bench: unknown option %s\n", a);
            return -1;
        }
        if (takes)
            i++;
    }
    if (o->min_rep < 1)
        o->min_rep = 1;
    if (o->max_rep < o->min_rep)
        o->max_rep = o->min_rep;
    o->tune_budget = o->budget / 4.0;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Time and memory                                                          */
/* ------------------------------------------------------------------------ */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* VmHWM of /proc/self/status in MiB: the process-wide peak resident set. */
static double peak_rss_mb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    double mb = -1.0;
    char line[256];
    if (f == NULL)
        return mb;
    while (fgets(line, sizeof line, f)) {
        long kb;
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) {
            mb = (double)kb / 1024.0;
            break;
        }
    }
    fclose(f);
    return mb;
}

/* An allocator that counts the bytes a context (and its worker contexts,
 * which share the hooks) holds, and the peak of that count. The size is
 * kept in a header so that free can subtract it. */
typedef struct counter {
    atomic_size_t current;
    atomic_size_t peak;
} counter;

#define COUNT_HEADER 16

static void *count_alloc(size_t size, void *user)
{
    counter *c = user;
    if (size > SIZE_MAX - COUNT_HEADER)
        return NULL;
    unsigned char *p = malloc(size + COUNT_HEADER);
    if (p == NULL)
        return NULL;
    memcpy(p, &size, sizeof size);
    size_t cur = atomic_fetch_add(&c->current, size) + size;
    size_t peak = atomic_load(&c->peak);
    while (cur > peak && !atomic_compare_exchange_weak(&c->peak, &peak, cur))
        ;
    return p + COUNT_HEADER;
}

static void count_free(void *ptr, void *user)
{
    counter *c = user;
    if (ptr == NULL)
        return;
    unsigned char *p = (unsigned char *)ptr - COUNT_HEADER;
    size_t size;
    memcpy(&size, p, sizeof size);
    atomic_fetch_sub(&c->current, size);
    free(p);
}

static void counter_reset_peak(counter *c)
{
    atomic_store(&c->peak, atomic_load(&c->current));
}

static double counter_peak_mb(counter *c)
{
    return (double)atomic_load(&c->peak) / (1024.0 * 1024.0);
}

/* ------------------------------------------------------------------------ */
/* Data and the functions                                                   */
/* ------------------------------------------------------------------------ */

typedef struct bench_case {
    const size_def *sd;
    int problem;
    int64_t n_in, hidden, n_out; /* P2, P5 */
    int64_t n;                   /* P1, P3: length of x; P4: k; P5: B */
    double *x;                   /* input values: x, or X for P5 */
    double *w[3], *wt[3], *b[3]; /* weights, transposed weights, biases */
    /* Constants of the function, built once per context. */
    jac_tensor *W[3], *WT[3], *bias[3];
} bench_case;

static double *data_x(int64_t n)
{
    double *x = malloc((size_t)(n > 0 ? n : 1) * sizeof *x);
    if (x == NULL)
        return NULL;
    for (int64_t j = 0; j < n; j++)
        x[j] = 0.5 * sin(0.3 * (double)j + 0.7);
    return x;
}

static double *data_X(int64_t B, int64_t n)
{
    double *X = malloc((size_t)(B * n) * sizeof *X);
    if (X == NULL)
        return NULL;
    for (int64_t r = 0; r < B; r++)
        for (int64_t j = 0; j < n; j++)
            X[r * n + j] = 0.5 * sin(0.3 * (double)j + 0.7 + 0.01 * (double)r);
    return X;
}

/* W of layer s (rows x cols) into w, and its transpose into wt. */
static bool data_W(int64_t rows, int64_t cols, int s, double **w, double **wt)
{
    *w = malloc((size_t)(rows * cols) * sizeof **w);
    *wt = malloc((size_t)(rows * cols) * sizeof **wt);
    if (*w == NULL || *wt == NULL)
        return false;
    double sc = sqrt((double)cols);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            double v = sin(0.37 * (double)i + 0.11 * (double)j + s) / sc;
            (*w)[i * cols + j] = v;
            (*wt)[j * rows + i] = v;
        }
    return true;
}

static double *data_b(int64_t rows, int s)
{
    double *b = malloc((size_t)rows * sizeof *b);
    if (b == NULL)
        return NULL;
    for (int64_t i = 0; i < rows; i++)
        b[i] = 0.01 * cos(0.5 * (double)i + s);
    return b;
}

static void case_free(bench_case *bc)
{
    free(bc->x);
    for (int s = 0; s < 3; s++) {
        free(bc->w[s]);
        free(bc->wt[s]);
        free(bc->b[s]);
    }
}

static bool case_init(bench_case *bc, const size_def *sd)
{
    memset(bc, 0, sizeof *bc);
    bc->sd = sd;
    bc->problem = sd->problem;
    switch (sd->problem) {
    case P1:
    case P3:
        bc->n = sd->a;
        bc->x = data_x(bc->n);
        return bc->x != NULL;
    case P4:
        bc->n = sd->a;
        return true;
    case P2:
        bc->n_in = sd->a;
        bc->hidden = sd->b;
        bc->n_out = sd->c;
        bc->x = data_x(bc->n_in);
        break;
    case P5:
        bc->n = sd->a;
        bc->n_in = P5_N_IN;
        bc->hidden = P5_HIDDEN;
        bc->n_out = P5_N_OUT;
        bc->x = data_X(bc->n, bc->n_in);
        break;
    default:
        return false;
    }
    int64_t rows[3] = {bc->hidden, bc->hidden, bc->n_out};
    int64_t cols[3] = {bc->n_in, bc->hidden, bc->hidden};
    for (int s = 0; s < 3; s++) {
        if (!data_W(rows[s], cols[s], s + 1, &bc->w[s], &bc->wt[s]))
            return false;
        bc->b[s] = data_b(rows[s], s + 1);
        if (bc->b[s] == NULL)
            return false;
    }
    return bc->x != NULL;
}

/* The weights as tensors of ctx (outside any timed region). */
static bool case_constants(bench_case *bc, jac_ctx *ctx)
{
    if (bc->problem != P2 && bc->problem != P5)
        return true;
    int64_t rows[3] = {bc->hidden, bc->hidden, bc->n_out};
    int64_t cols[3] = {bc->n_in, bc->hidden, bc->hidden};
    /* P2 multiplies by W, P5 (rows of X) by W^T: each holds only its own,
     * so that the context's memory is the problem's. */
    for (int s = 0; s < 3; s++) {
        int64_t shape[2] = {rows[s], cols[s]}, tshape[2] = {cols[s], rows[s]};
        bc->W[s] = bc->WT[s] = NULL;
        if (bc->problem == P2)
            bc->W[s] = jac_tensor_new(ctx, 2, shape, bc->w[s]);
        else
            bc->WT[s] = jac_tensor_new(ctx, 2, tshape, bc->wt[s]);
        bc->bias[s] = jac_tensor_new(ctx, 1, &rows[s], bc->b[s]);
        if (!(bc->W[s] || bc->WT[s]) || !bc->bias[s])
            return false;
    }
    return true;
}

/* P1: y = x ** 2. */
static jac_tensor *f_square(jac_ctx *ctx, jac_tensor *x)
{
    return jac_pow_scalar(ctx, x, 2.0);
}

/* P2: y = W3 tanh(W2 tanh(W1 x + b1) + b2) + b3 for one sample x. */
static jac_tensor *f_mlp(jac_ctx *ctx, const bench_case *bc, jac_tensor *x)
{
    jac_tensor *h =
        jac_tanh(ctx, jac_add(ctx, jac_matmul(ctx, bc->W[0], x), bc->bias[0]));
    h = jac_tanh(ctx, jac_add(ctx, jac_matmul(ctx, bc->W[1], h), bc->bias[1]));
    return jac_add(ctx, jac_matmul(ctx, bc->W[2], h), bc->bias[2]);
}

/* P5: the same network on a batch, one sample per row: X W^T + b. */
static jac_tensor *f_mlp_batch(jac_ctx *ctx, const bench_case *bc,
                               jac_tensor *X)
{
    jac_tensor *h =
        jac_tanh(ctx, jac_add(ctx, jac_matmul(ctx, X, bc->WT[0]), bc->bias[0]));
    h = jac_tanh(ctx, jac_add(ctx, jac_matmul(ctx, h, bc->WT[1]), bc->bias[1]));
    return jac_add(ctx, jac_matmul(ctx, h, bc->WT[2]), bc->bias[2]);
}

/* P3: sum 100 (x[1:] - x[:-1]^2)^2 + (1 - x[:-1])^2. */
static jac_tensor *f_rosenbrock(jac_ctx *ctx, jac_tensor *x)
{
    int64_t n = jac_tensor_numel(x);
    jac_tensor *head = jac_slice(ctx, x, 0, 0, -1, 1);
    jac_tensor *tail = jac_slice(ctx, x, 0, 1, n, 1);
    jac_tensor *valley = jac_sub(ctx, tail, jac_pow_scalar(ctx, head, 2.0));
    jac_tensor *steep =
        jac_mul_scalar(ctx, jac_pow_scalar(ctx, valley, 2.0), 100.0);
    jac_tensor *gentle =
        jac_pow_scalar(ctx, jac_rsub_scalar(ctx, 1.0, head), 2.0);
    return jac_sum(ctx, jac_add(ctx, steep, gentle));
}

static jac_status fn_rosenbrock(jac_ctx *ctx, jac_tensor *const *in,
                                jac_tensor **out, void *user)
{
    (void)user;
    out[0] = f_rosenbrock(ctx, in[0]);
    return out[0] ? JAC_OK : jac_errcode(ctx);
}

static jac_status fn_mlp_batch(jac_ctx *ctx, jac_tensor *const *in,
                               jac_tensor **out, void *user)
{
    out[0] = f_mlp_batch(ctx, user, in[0]);
    return out[0] ? JAC_OK : jac_errcode(ctx);
}

/* A leaf from values that requires gradients. */
static jac_tensor *input(jac_ctx *ctx, int ndim, const int64_t *shape,
                         const double *values)
{
    jac_tensor *x = jac_tensor_new(ctx, ndim, shape, values);
    if (x && jac_set_requires_grad(x, true) != JAC_OK)
        return NULL;
    return x;
}

/* One complete computation; the result (Jacobian, Hessian or gradient) or
 * NULL with the error in ctx. *value receives P4's x_k. */
static jac_tensor *compute(bench_case *bc, jac_ctx *ctx, const config *c,
                           double *value)
{
    jac_jacobian_opts opts = {0, c->chunk, JAC_MODE_REVERSE, NULL, NULL};
    if (c->variant == V_FORWARD)
        opts.mode = JAC_MODE_FORWARD;
    jac_tensor *J = NULL, *x = NULL, *y = NULL;
    switch (bc->problem) {
    case P1:
    case P2: {
        int64_t n = bc->problem == P1 ? bc->n : bc->n_in;
        x = input(ctx, 1, &n, bc->x);
        y = bc->problem == P1 ? f_square(ctx, x) : f_mlp(ctx, bc, x);
        if (y == NULL ||
            jac_jacobian_ex(ctx, 1, &y, 1, &x, &opts, &J) != JAC_OK)
            return NULL;
        return J;
    }
    case P3: {
        x = input(ctx, 1, &bc->n, bc->x);
        if (x == NULL)
            return NULL;
        if (c->variant == V_HESSIAN)
            return jac_hessian(ctx, fn_rosenbrock, NULL, x, &opts);
        y = f_rosenbrock(ctx, x);
        jac_tensor *g = NULL;
        if (y == NULL ||
            jac_grad(ctx, 1, &y, NULL, 1, &x, JAC_CREATE_GRAPH, &g) != JAC_OK ||
            jac_jacobian_ex(ctx, 1, &g, 1, &x, &opts, &J) != JAC_OK)
            return NULL;
        return J;
    }
    case P4: {
        x = jac_scalar(ctx, 0.5);
        if (x == NULL || jac_set_requires_grad(x, true) != JAC_OK)
            return NULL;
        y = x;
        for (int64_t i = 0; i < bc->n; i++)
            y = jac_add(ctx, y, jac_mul_scalar(ctx, jac_sin(ctx, y), 0.001));
        if (y == NULL || jac_grad(ctx, 1, &y, NULL, 1, &x, 0, &J) != JAC_OK)
            return NULL;
        *value = jac_tensor_item(y);
        return J;
    }
    case P5: {
        int64_t shape[2] = {bc->n, bc->n_in};
        x = jac_tensor_new(ctx, 2, shape, bc->x);
        if (x == NULL)
            return NULL;
        return jac_batch_jacobian(ctx, fn_mlp_batch, bc, x, &opts);
    }
    default:
        return NULL;
    }
}

/* ------------------------------------------------------------------------ */
/* Checksums                                                                */
/* ------------------------------------------------------------------------ */

typedef struct sums {
    double sum, fro, j00, value;
} sums;

static sums checksums(const jac_tensor *J, double value)
{
    sums s = {0, 0, 0, value};
    const double *d = jac_tensor_data(J);
    int64_t n = jac_tensor_numel(J);
    for (int64_t i = 0; i < n; i++) {
        s.sum += d[i];
        s.fro += d[i] * d[i];
    }
    /* One number (P4): the reference takes fro as |J| (no squaring). */
    s.fro = n == 1 ? fabs(d[0]) : sqrt(s.fro);
    s.j00 = n > 0 ? d[0] : NAN;
    return s;
}

static bool close_to(double got, double want, double scale)
{
    return fabs(got - want) <= 1e-9 * scale;
}

/* Which checksums differ from the reference; "" when none. */
static const char *check_sums(const size_def *sd, const sums *s)
{
    static char buf[128];
    buf[0] = 0;
    /* P2 large's sum cancels heavily: compared to 1e-9 of fro. */
    double sum_scale = fabs(sd->ref_sum);
    if (sd->problem == P2 && (sd->tiers & TIER_LARGE))
        sum_scale = fabs(sd->ref_fro);
    if (!close_to(s->sum, sd->ref_sum, sum_scale))
        strcat(buf, buf[0] ? ",sum" : "sum");
    if (!close_to(s->fro, sd->ref_fro, fabs(sd->ref_fro)))
        strcat(buf, buf[0] ? ",fro" : "fro");
    if (!close_to(s->j00, sd->ref_j00, fabs(sd->ref_j00)))
        strcat(buf, buf[0] ? ",j00" : "j00");
    return buf;
}

/* ------------------------------------------------------------------------ */
/* Timing                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct result {
    double median, min;
    int reps;
    sums s;
} result;

static void apply_threads(jac_ctx *ctx, const config *c)
{
    jac_ctx_set_threads(ctx, c->jac_threads);
    openblas_set_num_threads(c->blas_threads);
}

/* One repetition in its own scope: its time, and its checksums when asked
 * (computed outside the timed interval). */
static bool run_once(bench_case *bc, jac_ctx *ctx, const config *c,
                     double *seconds, sums *s)
{
    double value = NAN;
    double t0 = now();
    jac_scope mark = jac_scope_begin(ctx);
    jac_tensor *J = compute(bc, ctx, c, &value);
    double t1 = now();
    if (J && s)
        *s = checksums(J, value);
    double t2 = now();
    jac_scope_end(ctx, mark, NULL, 0);
    *seconds = (t1 - t0) + (now() - t2);
    return J != NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Times c: a warm-up, then at least min_rep repetitions and budget
 * seconds. A warm-up longer than give_up (seconds) ends the measurement
 * there, with the warm-up as the only time (used when trying chunk sizes).
 * A warm-up longer than 1 s is counted as a repetition and lowers min_rep
 * to 3, as the references do, to keep the slowest variants affordable. */
static bool measure(bench_case *bc, jac_ctx *ctx, const config *c,
                    double budget, int min_rep, int max_rep, double give_up,
                    result *r)
{
    apply_threads(ctx, c);
    double tw;
    if (!run_once(bc, ctx, c, &tw, &r->s))
        return false;
    if (tw > give_up) {
        r->median = r->min = tw;
        r->reps = 1;
        return true;
    }
    int cap = 64, n = 0;
    double *t = malloc((size_t)cap * sizeof *t);
    if (t == NULL)
        return false;
    if (tw > 1.0) { /* dominated by steady-state work: count it */
        t[n++] = tw;
        if (min_rep > 3)
            min_rep = 3;
    }
    double start = now();
    while (n < min_rep || (n < max_rep && now() - start < budget)) {
        if (n == cap) {
            double *more = realloc(t, 2 * (size_t)cap * sizeof *t);
            if (more == NULL)
                break;
            t = more;
            cap *= 2;
        }
        if (!run_once(bc, ctx, c, &t[n], NULL)) {
            free(t);
            return false;
        }
        n++;
    }
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    r->reps = n;
    r->min = t[0];
    r->median = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
    free(t);
    return true;
}

/* ------------------------------------------------------------------------ */
/* Output                                                                   */
/* ------------------------------------------------------------------------ */

/* Flops of the Jacobian of P2 (per sample) as GEMMs, reverse mode: the
 * products of the n_out seed rows with W3^T... that are not trivial, i.e.
 * 2 n_out hidden (hidden + n_in), times the samples for P5. */
static double gemm_flops(const bench_case *bc)
{
    double per = 2.0 * (double)bc->n_out * (double)bc->hidden *
                 ((double)bc->hidden + (double)bc->n_in);
    if (bc->problem == P5)
        return per * (double)bc->n;
    return bc->problem == P2 ? per : 0.0;
}

static void print_error(const bench_case *bc, const config *c, int threads,
                        jac_ctx *ctx)
{
    printf("{\"impl\": \"libjacobian\", \"problem\": \"%s\", \"size\": \"%s\", "
           "\"variant\": \"%s\", \"threads\": %d, \"error\": \"",
           problem_names[bc->problem], bc->sd->size, variant_names[c->variant],
           threads);
    for (const char *m = jac_errmsg(ctx); *m; m++)
        if (*m != '"' && *m != '\\')
            putchar(*m);
    printf("\", \"peak_rss_mb\": %.1f}\n", peak_rss_mb());
    fflush(stdout);
}

typedef struct tuning {
    int n;
    config cfg[32];
    double median[32];
} tuning;

static void print_result(const bench_case *bc, const config *c, int threads,
                         const result *r, double ctx_peak_mb, const tuning *tu)
{
    const char *bad = check_sums(bc->sd, &r->s);
    printf("{\"impl\": \"libjacobian\", \"problem\": \"%s\", \"size\": \"%s\", "
           "\"variant\": \"%s\", \"threads\": %d, \"median_s\": %.9g, "
           "\"min_s\": %.9g, \"repeats\": %d, \"sum\": %.17g, \"fro\": %.17g, "
           "\"j00\": %.17g, \"peak_rss_mb\": %.1f, \"ctx_peak_mb\": %.2f, "
           "\"check\": \"%s\", \"chunk\": %lld, \"jac_threads\": %d, "
           "\"blas_threads\": %d",
           problem_names[bc->problem], bc->sd->size, variant_names[c->variant],
           threads, r->median, r->min, r->reps, r->s.sum, r->s.fro, r->s.j00,
           peak_rss_mb(), ctx_peak_mb, bad[0] ? "fail" : "ok",
           (long long)c->chunk, c->jac_threads, c->blas_threads);
    if (bad[0])
        printf(", \"check_failed\": \"%s\"", bad);
    if (bc->problem == P4)
        printf(", \"ns_per_op\": %.4g, \"value\": %.17g",
               r->median / (3.0 * (double)bc->n) * 1e9, r->s.value);
    if (gemm_flops(bc) > 0)
        printf(", \"gemm_flops\": %.6g", gemm_flops(bc));
    if (tu && tu->n > 1) {
        printf(", \"tuning\": [");
        for (int i = 0; i < tu->n; i++)
            printf("%s{\"chunk\": %lld, \"jac_threads\": %d, "
                   "\"blas_threads\": %d, \"median_s\": %.6g}",
                   i ? ", " : "", (long long)tu->cfg[i].chunk,
                   tu->cfg[i].jac_threads, tu->cfg[i].blas_threads,
                   tu->median[i]);
        printf("]");
    }
    printf("}\n");
    fflush(stdout);
}

/* ------------------------------------------------------------------------ */
/* Running the benchmark                                                    */
/* ------------------------------------------------------------------------ */

/* Output elements (rows of the Jacobian) of one sample: the largest useful
 * chunk. */
static int64_t rows_of(const bench_case *bc)
{
    switch (bc->problem) {
    case P1:
    case P3:
        return bc->n;
    case P2:
    case P5:
        return bc->n_out;
    default:
        return 1;
    }
}

/* The configurations tried for a variant at a thread count. */
static int configs_for(const options *o, const bench_case *bc, int variant,
                       int threads, config *out)
{
    int n = 0;
    config base = {variant, 0, threads, 1};
    if (o->fixed) {
        base = o->fixed_cfg;
        base.variant = variant;
        out[n++] = base;
        return n;
    }
    if (variant == V_ROWLOOP) {
        base.chunk = 1;
        out[n++] = base;
        return n;
    }
    if (variant == V_GRAD || variant == V_HESSIAN || !o->tune) {
        out[n++] = base;
        return n;
    }
    int64_t m = rows_of(bc);
    /* The chunks asked for, and with several threads one block per
     * thread. */
    int64_t wanted[17];
    int nwanted = 0;
    for (int k = 0; k < o->nchunks && k < 16; k++)
        wanted[nwanted++] = o->chunks[k];
    if (threads > 1)
        wanted[nwanted++] = (m + threads - 1) / threads;
    for (int k = 0; k < nwanted; k++) {
        int64_t c = wanted[k] > m ? m : wanted[k];
        bool seen = false;
        for (int j = 0; j < n; j++)
            seen = seen || out[j].chunk == c;
        if (!seen) {
            base.chunk = c;
            out[n++] = base;
        }
    }
    /* With several threads, also give them all to OpenBLAS instead (one
     * block of seeds, threaded GEMMs). */
    if (threads > 1) {
        config b = {variant, 0, 1, threads};
        out[n++] = b;
        b.chunk = m;
        out[n++] = b;
    }
    return n;
}

static int run_benchmark(const options *o)
{
    int failures = 0;
    for (size_t s = 0; s < NSIZES; s++) {
        const size_def *sd = &size_table[s];
        if (!o->problems[sd->problem] || !size_selected(o, sd))
            continue;
        bench_case bc;
        if (!case_init(&bc, sd)) {
            fprintf(stderr, "jacobian_bench: out of memory\n");
            case_free(&bc);
            return 1;
        }
        for (int ti = 0; ti < o->nthreads; ti++) {
            int threads = o->threads[ti];
            counter cnt;
            atomic_init(&cnt.current, 0);
            atomic_init(&cnt.peak, 0);
            jac_allocator alloc = {count_alloc, count_free, &cnt};
            jac_ctx *ctx = o->plain_alloc ? jac_ctx_new()
                                          : jac_ctx_new_with_allocator(&alloc);
            if (ctx == NULL || !case_constants(&bc, ctx)) {
                fprintf(stderr, "jacobian_bench: out of memory\n");
                jac_ctx_free(ctx);
                case_free(&bc);
                return 1;
            }
            for (int v = 0; v < NVARIANTS; v++) {
                if (!o->variants[v] || !variant_applies(sd->problem, v))
                    continue;
                tuning tu = {0};
                tu.n = configs_for(o, &bc, v, threads, tu.cfg);
                int best = 0;
                if (tu.n > 1) {
                    /* Short measurements; a candidate whose first run is
                     * twice as slow as the best so far is not repeated. */
                    for (int k = 0; k < tu.n; k++) {
                        result r;
                        double give_up = k ? 2.0 * tu.median[best] : INFINITY;
                        if (!measure(&bc, ctx, &tu.cfg[k], o->tune_budget, 3,
                                     o->max_rep, give_up, &r)) {
                            tu.median[k] = INFINITY;
                            jac_clear_error(ctx);
                            continue;
                        }
                        tu.median[k] = r.median;
                        if (r.median < tu.median[best])
                            best = k;
                    }
                }
                /* The final measurement in a fresh context, whose pools
                 * hold nothing from the configurations tried: its peak is
                 * the memory this configuration needs (constants
                 * included). */
                jac_ctx *fresh = o->plain_alloc
                                     ? jac_ctx_new()
                                     : jac_ctx_new_with_allocator(&alloc);
                if (fresh == NULL || !case_constants(&bc, fresh)) {
                    fprintf(stderr, "jacobian_bench: out of memory\n");
                    jac_ctx_free(fresh);
                    jac_ctx_free(ctx);
                    case_free(&bc);
                    return 1;
                }
                jac_ctx_free(ctx);
                ctx = fresh;
                result r;
                counter_reset_peak(&cnt);
                if (!measure(&bc, ctx, &tu.cfg[best], o->budget, o->min_rep,
                             o->max_rep, INFINITY, &r)) {
                    print_error(&bc, &tu.cfg[best], threads, ctx);
                    jac_clear_error(ctx);
                    failures++;
                    continue;
                }
                print_result(&bc, &tu.cfg[best], threads, &r,
                             o->plain_alloc ? -1.0 : counter_peak_mb(&cnt),
                             &tu);
                if (check_sums(sd, &r.s)[0])
                    failures++;
            }
            jac_ctx_free(ctx);
        }
        case_free(&bc);
    }
    openblas_set_num_threads(1);
    return failures ? 1 : 0;
}

/* --check: each applicable variant of the selected sizes once, on one and
 * two threads, against the reference checksums. */
static int run_check(const options *o)
{
    int failures = 0, checks = 0;
    for (size_t s = 0; s < NSIZES; s++) {
        const size_def *sd = &size_table[s];
        if (!o->problems[sd->problem] || !size_selected(o, sd))
            continue;
        bench_case bc;
        jac_ctx *ctx = NULL;
        if (!case_init(&bc, sd) || (ctx = jac_ctx_new()) == NULL ||
            !case_constants(&bc, ctx)) {
            fprintf(stderr, "jacobian_bench: out of memory\n");
            jac_ctx_free(ctx);
            case_free(&bc);
            return 1;
        }
        for (int ti = 0; ti < o->nthreads; ti++) {
            for (int v = 0; v < NVARIANTS; v++) {
                if (!o->variants[v] || !variant_applies(sd->problem, v))
                    continue;
                config c = {v, v == V_ROWLOOP ? 1 : 0, o->threads[ti], 1};
                apply_threads(ctx, &c);
                sums r = {NAN, NAN, NAN, NAN};
                double t;
                checks++;
                const char *label = problem_names[sd->problem];
                if (!run_once(&bc, ctx, &c, &t, &r)) {
                    printf("FAIL %s %s %s threads=%d: %s\n", label, sd->size,
                           variant_names[v], c.jac_threads, jac_errmsg(ctx));
                    jac_clear_error(ctx);
                    failures++;
                    continue;
                }
                const char *bad = check_sums(sd, &r);
                if (bad[0]) {
                    printf("FAIL %s %s %s threads=%d: %s differ: "
                           "sum %.17g (want %.17g), fro %.17g (want %.17g), "
                           "j00 %.17g (want %.17g)\n",
                           label, sd->size, variant_names[v], c.jac_threads,
                           bad, r.sum, sd->ref_sum, r.fro, sd->ref_fro, r.j00,
                           sd->ref_j00);
                    failures++;
                } else {
                    printf("ok   %s %s %s threads=%d (%.3g s)\n", label,
                           sd->size, variant_names[v], c.jac_threads, t);
                }
            }
        }
        jac_ctx_free(ctx);
        case_free(&bc);
    }
    openblas_set_num_threads(1);
    printf("%d of %d checks passed\n", checks - failures, checks);
    return failures || checks == 0 ? 1 : 0;
}

/* ------------------------------------------------------------------------ */
/* cblas_dgemm GFLOP/s                                                      */
/* ------------------------------------------------------------------------ */

/* The shapes of the dominant GEMMs of a batched reverse pass: P2 large (a
 * block of 512 seeds through W2, 2048 x 2048), P5 (128 seeds x 64 samples
 * through W2, 512 x 512), and a square reference. */
static int run_gemm(const options *o)
{
    static const struct {
        const char *name;
        int m, n, k;
    } shapes[] = {{"P2_large", 512, 2048, 2048},
                  {"P5", 8192, 512, 512},
                  {"square", 1024, 1024, 1024}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int m = shapes[s].m, n = shapes[s].n, k = shapes[s].k;
        double *A = malloc((size_t)m * (size_t)k * sizeof *A);
        double *B = malloc((size_t)k * (size_t)n * sizeof *B);
        double *C = malloc((size_t)m * (size_t)n * sizeof *C);
        if (!A || !B || !C) {
            free(A);
            free(B);
            free(C);
            return 1;
        }
        for (size_t i = 0; i < (size_t)m * (size_t)k; i++)
            A[i] = sin(0.001 * (double)i);
        for (size_t i = 0; i < (size_t)k * (size_t)n; i++)
            B[i] = cos(0.001 * (double)i);
        for (int ti = 0; ti < o->nthreads; ti++) {
            openblas_set_num_threads(o->threads[ti]);
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0,
                        A, k, B, n, 0.0, C, n); /* warm-up */
            double t[200];
            int reps = 0;
            double start = now();
            while (reps < 3 || (reps < 200 && now() - start < o->budget)) {
                double t0 = now();
                cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k,
                            1.0, A, k, B, n, 0.0, C, n);
                t[reps++] = now() - t0;
            }
            qsort(t, (size_t)reps, sizeof t[0], cmp_double);
            double med =
                reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
            double flops = 2.0 * m * (double)n * k;
            printf("{\"impl\": \"cblas_dgemm\", \"shape\": \"%s\", \"m\": %d, "
                   "\"n\": %d, \"k\": %d, \"threads\": %d, \"median_s\": %.6g, "
                   "\"min_s\": %.6g, \"repeats\": %d, \"gflops\": %.4g, "
                   "\"gflops_best\": %.4g}\n",
                   shapes[s].name, m, n, k, o->threads[ti], med, t[0], reps,
                   flops / med * 1e-9, flops / t[0] * 1e-9);
            fflush(stdout);
        }
        free(A);
        free(B);
        free(C);
    }
    openblas_set_num_threads(1);
    return 0;
}

int main(int argc, char **argv)
{
    options o;
    if (parse_options(argc, argv, &o) != 0) {
        usage(stderr);
        return 2;
    }
    if (o.gemm)
        return run_gemm(&o);
    if (o.check)
        return run_check(&o);
    double t0 = now();
    int rc = run_benchmark(&o);
    fprintf(stderr, "jacobian_bench: %.1f s\n", now() - t0);
    return rc;
}
