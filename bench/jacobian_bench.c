/*
 * jacobian_bench: times libjacobian on the benchmark problems P1..P7 (see
 * docs/benchmarks.md for the problems, the reference values and how to
 * compare with PyTorch and ADOL-C) and prints one JSON line per measurement.
 *
 *   jacobian_bench                      every problem, size, variant, thread
 *   jacobian_bench --problems P1,P3 --sizes small --threads 1
 *   jacobian_bench --problems P6 --sizes N=1000 --variants replay
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
 * Two variants time something else, and say so in their name: `replay`
 * records the function once into a jac_program outside the timed region and
 * times only the program's Jacobian / Hessian / gradient at the point (what
 * ADOL-C's `jacobian`, `hessian` and `gradient` do on an existing tape), and
 * `floor` (P4) is a hand-written C loop with no AD at all.
 * The sparse problems P6 and P7 (sparse Jacobian and Hessians through the
 * plans of jac_sparse_*) time each variant twice: cold (from nothing: the
 * recording, the sparsity pattern, the colouring and one evaluation) and
 * warm (what a Newton step pays once the plan exists); their line's
 * median_s is the warm time (see sparse_once).
 * Timing: one warm-up (its result gives the checksums), then repetitions
 * until at least --min-repeats and --budget seconds; median and minimum of
 * CLOCK_MONOTONIC intervals.
 *
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L

#include <jacobian.h>

#include <cblas.h>

#include <float.h>
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

enum { P1, P2, P3, P4, P5, P6, P7E, P7R, NPROBLEMS };

static const char *const problem_names[NPROBLEMS] = {
    "P1_square",    "P2_mlp",     "P3_rosenbrock",     "P4_chain",
    "P5_batch_mlp", "P6_bratu2d", "P7_bratu2d_energy", "P7_rosenbrock"};

/* The short names --problems accepts besides the full ones (P7 selects
 * both of its problems). */
static const char *const problem_ids[NPROBLEMS] = {"P1", "P2", "P3", "P4",
                                                   "P5", "P6", "P7", "P7"};

/* P6 and P7: sparse Jacobians and Hessians (plans of jac_sparse_*). */
static bool is_sparse(int problem) { return problem >= P6; }

enum { TIER_SMALL = 1, TIER_MEDIUM = 2, TIER_LARGE = 4, TIER_ALL = 7 };

typedef struct size_def {
    int problem;
    const char *size;
    int64_t a, b, c; /* n | (n_in, hidden, n_out) | k | B | N (grid) */
    int tiers;       /* which of --sizes small/medium/large select it */
    double ref_sum, ref_fro, ref_j00;
    double ref_value; /* P4: x_k, checked as well; 0: none */
    double abs_tol;   /* checksums within this of the reference also agree */
    int max_rep;      /* at most this many timed repetitions (0: no cap) */
    int64_t ref_nnz;  /* P6, P7: entries of the full matrix; 0: none */
} size_def;

/* PyTorch 1.13.1, float64; ADOL-C 2.7.2 agrees to 1e-11.
 *
 * P4 k=100000 and k=1000000 are not in PROBLEMS.md: their values are those
 * of the recurrence in 40-digit arithmetic (mpmath; the floor loop in long
 * double agrees to 2e-14), rounded to double; the floor loop and the
 * replay in float64 agree with them to 1e-13. At k=1000000 the derivative,
 * 5.0399643600942005e-434, is below the smallest double: a float64
 * computation ends in a subnormal that no longer shrinks (each step's
 * factor 1 - 0.001 rounds away; the floor loop stops at 499 * 2^-1074) or
 * in 0, depending on the order of its operations. Its checksums are
 * therefore 0 with an absolute tolerance of DBL_MIN, and x_k (value),
 * which is checked for every P4 size, is what that size verifies. The big
 * sizes cap their repetitions: the dynamic variant records 3k tape nodes
 * per repetition (k=1e6: ~1.2 GB and 0.15-0.4 s). */
static const size_def size_table[] = {
    {P1, "n=2", 2, 0, 0, TIER_SMALL, 1.4856886720455875, 1.0597593343884502,
     0.64421768723769102, 0, 0, 0, 0},
    {P1, "n=256", 256, 0, 0, TIER_MEDIUM, 4.0965276809403131,
     11.372683751084219, 0.64421768723769102, 0, 0, 0, 0},
    {P1, "n=2048", 2048, 0, 0, TIER_LARGE, 0.52653562316776548,
     32.024981209967308, 0.64421768723769102, 0, 0, 0, 0},
    {P2, "16-32-16", 16, 32, 16, TIER_SMALL, -0.31407040894689525,
     0.42722832080584455, 0.026841722018463098, 0, 0, 0, 0},
    {P2, "128-512-128", 128, 512, 128, TIER_MEDIUM, -0.073235137776548109,
     0.088305095922735694, 0.00072895702567606026, 0, 0, 0, 0},
    {P2, "512-2048-512", 512, 2048, 512, TIER_LARGE, -0.00026738786052256554,
     0.026009785692566793, 5.5047805988081658e-05, 0, 0, 0, 0},
    {P3, "n=64", 64, 0, 0, TIER_SMALL, 22102.920748172011, 3505.0845285148939,
     -41.789268396615455, 0, 0, 0, 0},
    {P3, "n=512", 512, 0, 0, TIER_LARGE, 176572.65928334248, 9953.4572405315776,
     -41.789268396615455, 0, 0, 0, 0},
    {P4, "k=10000", 10000, 0, 0, TIER_ALL, 0.00073974788001393,
     0.00073974788001393, 0.00073974788001393, 3.1412383323702526, 0, 0, 0},
    {P4, "k=100000", 100000, 0, 0, TIER_MEDIUM, 5.7946082617662026e-43,
     5.7946082617662026e-43, 5.7946082617662026e-43, 3.1415926535897931, 0, 20,
     0},
    {P4, "k=1000000", 1000000, 0, 0, TIER_LARGE, 0.0, 0.0, 0.0,
     3.1415926535897931, DBL_MIN, 5, 0},
    {P5, "B=64", 64, 0, 0, TIER_ALL, -4.6970480864790822, 0.70808530018179627,
     0.00072895702567606026, 0, 0, 0, 0},
    /* P6, P7: exact closed forms (reference_values.py beside PROBLEMS.md);
     * N is the grid side (n = N^2 unknowns), n the length of x. */
    {P6, "N=32", 32, 0, 0, TIER_SMALL, 133232.88161235378, 155184.54556914431,
     4349.6007471718303, 0, 0, 0, 4992},
    {P6, "N=100", 100, 0, 0, TIER_MEDIUM, 4020246.2834424218,
     4556923.0165487649, 40797.600747171833, 0, 0, 0, 49600},
    {P6, "N=316", 316, 0, 0, TIER_LARGE, 126417460.74710576, 141963900.74108985,
     401949.60074717185, 0, 0, 0, 498016},
    {P6, "N=1000", 1000, 0, 0, TIER_LARGE, 4001988987.0896358,
     4480631187.6396103, 4007997.6007471718, 0, 0, 0, 4996000},
    {P7E, "N=100", 100, 0, 0, TIER_SMALL, 4020246.2834424218,
     4556923.0165487649, 40797.600747171833, 0, 0, 0, 49600},
    {P7E, "N=316", 316, 0, 0, TIER_LARGE, 126417460.74710576,
     141963900.74108985, 401949.60074717185, 0, 0, 0, 498016},
    {P7R, "n=512", 512, 0, 0, TIER_SMALL, 176572.65928334248,
     9953.4572405315757, -41.789268396615455, 0, 0, 0, 1534},
    {P7R, "n=10000", 10000, 0, 0, TIER_MEDIUM, 3516305.7809907156,
     44166.064289792754, -41.789268396615455, 0, 0, 0, 29998},
    {P7R, "n=100000", 100000, 0, 0, TIER_LARGE, 35197546.272548191,
     139695.11370422292, -41.789268396615455, 0, 0, 0, 299998},
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
    V_REPLAY,  /* recorded once (untimed) into a jac_program; timed: replay */
    V_FLOOR,   /* P4 only: a hand-written C loop, no AD */
    V_DYNAMIC, /* P6, P7: recorded each time, jac_sparse_*_tape */
    V_DENSE,   /* P6, P7 small sizes: the dense jac_jacobian / jac_hessian */
    NVARIANTS
};

static const char *const variant_names[NVARIANTS] = {
    "rowloop", "batched", "forward", "hessian", "grad",
    "replay",  "floor",   "dynamic", "dense"};

/* The dense variant of P6 and P7 only where the dense matrix is small (at
 * most 1024 x 1024: 8 MB). */
static const int64_t DENSE_MAX_N = 1024;

static bool variant_applies(const size_def *sd, int variant)
{
    switch (sd->problem) {
    case P6:
    case P7E:
    case P7R: {
        int64_t n = sd->problem == P7R ? sd->a : sd->a * sd->a;
        return variant == V_DYNAMIC || variant == V_REPLAY ||
               (variant == V_DENSE && n <= DENSE_MAX_N);
    }
    case P1:
    case P2:
        return variant == V_ROWLOOP || variant == V_BATCHED ||
               variant == V_FORWARD || variant == V_REPLAY;
    case P3:
        return variant != V_GRAD && variant != V_FLOOR;
    case P4:
        return variant == V_GRAD || variant == V_REPLAY || variant == V_FLOOR;
    case P5: /* jac_batch_jacobian has no forward mode */
        return variant == V_ROWLOOP || variant == V_BATCHED ||
               variant == V_REPLAY;
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
    bool reps_given;  /* --repeats or --max-repeats: no per-size cap */
} options;

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: jacobian_bench [options]\n"
        "  --problems LIST   P1,P2,P3,P4,P5,P6,P7 or full names such as\n"
        "                    P7_rosenbrock (default all)\n"
        "  --sizes LIST      small,medium,large or exact sizes such as\n"
        "                    n=2048,16-32-16 (default all)\n"
        "  --variants LIST   rowloop,batched,forward,hessian,grad,replay,\n"
        "                    floor,dynamic,dense (default all)\n"
        "  --threads LIST    thread counts (default 1,2)\n"
        "  --budget S        seconds of repetitions per measurement (0.4)\n"
        "  --min-repeats N   at least N timed repetitions (5)\n"
        "  --max-repeats N   at most N timed repetitions (2000; P4's big\n"
        "                    sizes cap it lower unless this or --repeats\n"
        "                    is given)\n"
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
            for (int p = 0; p < NPROBLEMS; p++)
                o->problems[p] = list_has(val, problem_ids[p]) ||
                                 list_has(val, problem_names[p]);
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
            o->reps_given = true;
        } else if (strcmp(a, "--repeats") == 0) {
            o->min_rep = o->max_rep = atoi(val);
            o->budget = 0.0;
            o->reps_given = true;
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
    /* V_REPLAY: the recorded function, the buffer its calls write the
     * result into (nres values; P5 also tmp), and what recording it took. */
    jac_program *prog;
    double *res, *tmp;
    int64_t nres;
    double record_s, record_peak_mb;
    size_t prog_ops, prog_bytes; /* jac_program_length after the calls */
    char errmsg[512];            /* why recording or replaying failed */
    /* P6, P7 (x holds u, or Rosenbrock's x; n its length): */
    int64_t N;          /* grid side (P6, P7 energy) */
    bool cold;          /* the next runs are cold (from nothing) or warm */
    bool collect;       /* timed runs append their phases to ph */
    jac_sparse *plan;   /* the plan of the last run (dynamic, replay) */
    double *vals;       /* its values */
    double *fout;       /* P6 replay: F, which the sweep gives as well */
    int64_t nnz, k00;   /* entries of a plan; index of entry (0, 0) */
    int64_t colors;     /* of the last run's plan (dense: n) */
    const char *method; /* the plan's method */
    /* Phases of the timed runs: ph[p][i] of run i (see sparse_once). */
    double *ph[3];
    int nph, capph;
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
    for (int p = 0; p < 3; p++)
        free(bc->ph[p]);
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
    case P6:
    case P7E:
        /* u[k] = 0.1 sin(0.3 k + 0.7) on the N x N grid, row-major */
        bc->N = sd->a;
        bc->n = sd->a * sd->a;
        bc->x = data_x(bc->n);
        if (bc->x == NULL)
            return false;
        for (int64_t k = 0; k < bc->n; k++)
            bc->x[k] = 0.1 * sin(0.3 * (double)k + 0.7);
        return true;
    case P7R:
        bc->n = sd->a;
        bc->x = data_x(bc->n);
        return bc->x != NULL;
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

/* P4: k times x = x + 0.001 sin(x) (3 ops per step). */
static jac_tensor *f_chain(jac_ctx *ctx, jac_tensor *x, int64_t k)
{
    jac_tensor *y = x;
    for (int64_t i = 0; i < k; i++)
        y = jac_add(ctx, y, jac_mul_scalar(ctx, jac_sin(ctx, y), 0.001));
    return y;
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
        y = f_chain(ctx, x, bc->n);
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
/* Recorded once, replayed (V_REPLAY); P4's floor (V_FLOOR)                 */
/* ------------------------------------------------------------------------ */

/* Memory of the replay variant: the program and what its calls allocate
 * go through alloc (counting into cnt) when one is given. */
typedef struct replay_mem {
    const jac_allocator *alloc; /* NULL: plain malloc/free */
    counter *cnt;
} replay_mem;

static void *rm_alloc(const replay_mem *m, size_t bytes)
{
    return m->alloc ? m->alloc->alloc(bytes, m->alloc->user) : malloc(bytes);
}

static void rm_free(const replay_mem *m, void *p)
{
    if (m->alloc)
        m->alloc->free(p, m->alloc->user);
    else
        free(p);
}

/* Records bc's function, at bc's point, into bc->prog. rec is a context
 * made for the recording (the caller frees it): the weights of P2 and P5
 * are built in it as constants, which the program copies.
 *
 * P5 records the batched network of X (B x n_in) followed by a sum over
 * the batch, g(X) = sum_b Y[b, :] (n_out values): the samples are
 * independent, so row r of g's Jacobian (n_out x B*n_in) holds row r of
 * every per-sample Jacobian, which is what jac_batch_jacobian's stacked
 * seeds compute; one jac_program_jacobian gives all B Jacobians in
 * n_out seeds (blocks of seeds within the memory budget, on the program's
 * threads), reordered to (B, n_out, n_in) in the timed region. Replaying
 * a recording of one sample B times (64 calls of jac_program_jacobian, no
 * reordering) gives the same checksums and was about as fast but not
 * faster: medians 189-201 ms against 188-191 ms for this one on one
 * thread, 197-208 ms against 197-202 ms on two (three interleaved runs
 * each, a busy 2-core machine); both are OpenBLAS-bound (69-75% in
 * dgemm_kernel), the per-sample products being B times narrower. */
static jac_status record_program(bench_case *bc, jac_ctx *rec)
{
    bench_case k = *bc; /* the same function on constants of rec */
    jac_tensor *x = NULL, *y = NULL;
    if (bc->problem == P2 || bc->problem == P5) {
        int64_t rows[3] = {bc->hidden, bc->hidden, bc->n_out};
        int64_t cols[3] = {bc->n_in, bc->hidden, bc->hidden};
        for (int s = 0; s < 3; s++) {
            int64_t shape[2] = {rows[s], cols[s]};
            int64_t tshape[2] = {cols[s], rows[s]};
            k.W[s] = k.WT[s] = NULL;
            if (bc->problem == P2)
                k.W[s] = jac_tensor_new(rec, 2, shape, bc->w[s]);
            else
                k.WT[s] = jac_tensor_new(rec, 2, tshape, bc->wt[s]);
            k.bias[s] = jac_tensor_new(rec, 1, &rows[s], bc->b[s]);
            if (!(k.W[s] || k.WT[s]) || !k.bias[s])
                return jac_errcode(rec);
        }
    }
    switch (bc->problem) {
    case P1:
    case P3:
        x = jac_tensor_new(rec, 1, &bc->n, bc->x);
        break;
    case P2:
        x = jac_tensor_new(rec, 1, &bc->n_in, bc->x);
        break;
    case P4:
        x = jac_scalar(rec, 0.5);
        break;
    case P5: {
        int64_t shape[2] = {bc->n, bc->n_in};
        x = jac_tensor_new(rec, 2, shape, bc->x);
        break;
    }
    default:
        return JAC_ERR_VALUE;
    }
    if (x == NULL)
        return jac_errcode(rec);
    jac_status st = jac_program_begin(rec, 1, &x, 0, NULL);
    if (st != JAC_OK)
        return st;
    switch (bc->problem) {
    case P1:
        y = f_square(rec, x);
        break;
    case P2:
        y = f_mlp(rec, &k, x);
        break;
    case P3:
        y = f_rosenbrock(rec, x);
        break;
    case P4:
        y = f_chain(rec, x, bc->n);
        break;
    default: /* P5 */
        y = jac_sum_axis(rec, f_mlp_batch(rec, &k, x), 0, false);
        break;
    }
    if (y == NULL) {
        /* Close the recording; the op's error stays the message. */
        char msg[512];
        st = jac_errcode(rec);
        snprintf(msg, sizeof msg, "%s", jac_errmsg(rec));
        jac_program *none = NULL;
        jac_program_end(rec, 0, NULL, 0, &none);
        jac_program_free(none);
        snprintf(bc->errmsg, sizeof bc->errmsg, "recording: %.480s", msg);
        return st != JAC_OK ? st : JAC_ERR_VALUE;
    }
    return jac_program_end(rec, 1, &y, 0, &bc->prog);
}

/* Untimed: records the program of c (in a context that is freed at once,
 * so that only the program remains) and makes its result buffers. */
static bool replay_prepare(bench_case *bc, const config *c, const replay_mem *m)
{
    bc->errmsg[0] = 0;
    bc->prog = NULL;
    bc->res = bc->tmp = NULL;
    if (m->cnt)
        counter_reset_peak(m->cnt);
    jac_ctx *rec =
        m->alloc ? jac_ctx_new_with_allocator(m->alloc) : jac_ctx_new();
    if (rec == NULL) {
        snprintf(bc->errmsg, sizeof bc->errmsg, "out of memory");
        return false;
    }
    double t0 = now();
    jac_status st = record_program(bc, rec);
    bc->record_s = now() - t0;
    if (st != JAC_OK && bc->errmsg[0] == 0)
        snprintf(bc->errmsg, sizeof bc->errmsg, "recording: %.480s",
                 jac_errmsg(rec));
    jac_ctx_free(rec);
    bc->record_peak_mb = m->cnt ? counter_peak_mb(m->cnt) : -1.0;
    if (st != JAC_OK)
        return false;
    switch (bc->problem) {
    case P1:
    case P3:
        bc->nres = bc->n * bc->n;
        break;
    case P2:
        bc->nres = bc->n_out * bc->n_in;
        break;
    case P4:
        bc->nres = 1;
        break;
    default:
        bc->nres = bc->n * bc->n_out * bc->n_in;
        break;
    }
    size_t bytes = (size_t)bc->nres * sizeof(double);
    bc->res = rm_alloc(m, bytes);
    if (bc->problem == P5)
        bc->tmp = rm_alloc(m, bytes);
    if (bc->res == NULL || (bc->problem == P5 && bc->tmp == NULL)) {
        snprintf(bc->errmsg, sizeof bc->errmsg, "out of memory");
        return false;
    }
    if (jac_program_set_threads(bc->prog, c->jac_threads) != JAC_OK) {
        snprintf(bc->errmsg, sizeof bc->errmsg, "%s", jac_program_errmsg());
        return false;
    }
    return true;
}

static void replay_release(bench_case *bc, const replay_mem *m)
{
    jac_program_free(bc->prog);
    if (bc->res)
        rm_free(m, bc->res);
    if (bc->tmp)
        rm_free(m, bc->tmp);
    bc->prog = NULL;
    bc->res = bc->tmp = NULL;
}

/* Timed: the program's result at bc's point into bc->res; *value receives
 * P4's x_k. */
static bool replay_run(bench_case *bc, double *value)
{
    static const double x0 = 0.5;
    const double *args[1] = {bc->problem == P4 ? &x0 : bc->x};
    double *res[1] = {bc->problem == P5 ? bc->tmp : bc->res};
    jac_status st;
    switch (bc->problem) {
    case P1:
    case P2:
    case P5:
        st = jac_program_jacobian(bc->prog, args, NULL, res);
        break;
    case P3:
        st = jac_program_hessian(bc->prog, args, NULL, res);
        break;
    default: { /* P4: the gradient, seeds NULL */
        double *out[1] = {value};
        st = jac_program_vjp(bc->prog, args, NULL, out, res);
        break;
    }
    }
    if (st != JAC_OK) {
        snprintf(bc->errmsg, sizeof bc->errmsg, "%s", jac_program_errmsg());
        return false;
    }
    if (bc->problem == P5) {
        /* tmp[r][b][j] -> res[b][r][j] */
        int64_t B = bc->n, m = bc->n_out, n = bc->n_in;
        for (int64_t b = 0; b < B; b++)
            for (int64_t r = 0; r < m; r++)
                memcpy(bc->res + (b * m + r) * n, bc->tmp + (r * B + b) * n,
                       (size_t)n * sizeof(double));
    }
    return true;
}

/* P4's floor: x_k and dx_k/dx0 by a hand-written loop, no AD (the
 * derivative is multiplied by 1 + 0.001 cos x before each step). Not
 * inlined, so that it stays between the clock readings. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static double
chain_floor(int64_t k, double *deriv)
{
    double x = 0.5, d = 1.0;
    for (int64_t i = 0; i < k; i++) {
        d *= 1.0 + 0.001 * cos(x);
        x = x + 0.001 * sin(x);
    }
    *deriv = d;
    return x;
}

/* ------------------------------------------------------------------------ */
/* Checksums                                                                */
/* ------------------------------------------------------------------------ */

typedef struct sums {
    double sum, fro, j00, value;
    int64_t nnz; /* P6, P7: entries of the full matrix; -1: not counted */
} sums;

static sums checksums_of(const double *d, int64_t n, double value)
{
    sums s = {0, 0, 0, value, -1};
    for (int64_t i = 0; i < n; i++) {
        s.sum += d[i];
        s.fro += d[i] * d[i];
    }
    /* One number (P4): the reference takes fro as |J| (no squaring). */
    s.fro = n == 1 ? fabs(d[0]) : sqrt(s.fro);
    s.j00 = n > 0 ? d[0] : NAN;
    return s;
}

static sums checksums(const jac_tensor *J, double value)
{
    return checksums_of(jac_tensor_data(J), jac_tensor_numel(J), value);
}

static bool close_to(double got, double want, double scale, double abs_tol)
{
    return fabs(got - want) <= 1e-9 * scale || fabs(got - want) <= abs_tol;
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
    if (!close_to(s->sum, sd->ref_sum, sum_scale, sd->abs_tol))
        strcat(buf, buf[0] ? ",sum" : "sum");
    if (!close_to(s->fro, sd->ref_fro, fabs(sd->ref_fro), sd->abs_tol))
        strcat(buf, buf[0] ? ",fro" : "fro");
    if (!close_to(s->j00, sd->ref_j00, fabs(sd->ref_j00), sd->abs_tol))
        strcat(buf, buf[0] ? ",j00" : "j00");
    if (sd->ref_value != 0 &&
        !close_to(s->value, sd->ref_value, fabs(sd->ref_value), 0.0))
        strcat(buf, buf[0] ? ",value" : "value");
    if (sd->ref_nnz > 0 && s->nnz != sd->ref_nnz)
        strcat(buf, buf[0] ? ",nnz" : "nnz");
    return buf;
}

/* ------------------------------------------------------------------------ */
/* Sparse Jacobians and Hessians (P6, P7)                                   */
/* ------------------------------------------------------------------------ */

/* Rows r0 .. r1 - 1 and columns c0 .. c1 - 1 of the grid p. */
static jac_tensor *grid_slice(jac_ctx *ctx, jac_tensor *p, int64_t r0,
                              int64_t r1, int64_t c0, int64_t c1)
{
    return jac_slice(ctx, jac_slice(ctx, p, 0, r0, r1, 1), 1, c0, c1, 1);
}

/* The (N + 2) x (N + 2) grid of u with a border of zeros. */
static jac_tensor *pad_grid(jac_ctx *ctx, jac_tensor *u)
{
    static const int64_t one[2] = {1, 1};
    return jac_pad(ctx, u, one, one);
}

/* P6: F = (4u - u[i-1,j] - u[i+1,j] - u[i,j-1] - u[i,j+1]) / h^2
 * - lambda exp(u), lambda = 6; the neighbours are slices of the padded
 * grid, so a neighbour outside the grid is 0. */
static jac_tensor *f_bratu(jac_ctx *ctx, jac_tensor *u, int64_t N)
{
    double h = 1.0 / (double)(N + 1);
    jac_tensor *p = pad_grid(ctx, u);
    jac_tensor *f = jac_mul_scalar(ctx, u, 4.0);
    f = jac_sub(ctx, f, grid_slice(ctx, p, 0, N, 1, N + 1));
    f = jac_sub(ctx, f, grid_slice(ctx, p, 2, N + 2, 1, N + 1));
    f = jac_sub(ctx, f, grid_slice(ctx, p, 1, N + 1, 0, N));
    f = jac_sub(ctx, f, grid_slice(ctx, p, 1, N + 1, 2, N + 2));
    return jac_sub(ctx, jac_div_scalar(ctx, f, h * h),
                   jac_mul_scalar(ctx, jac_exp(ctx, u), 6.0));
}

/* P7 energy: (sum(dx^2) + sum(dy^2)) / (2 h^2) - lambda sum(exp(u)), with
 * dx = P[1:, 1:-1] - P[:-1, 1:-1] and dy = P[1:-1, 1:] - P[1:-1, :-1] of
 * the padded grid P. Its gradient is P6's F. */
static jac_tensor *f_energy(jac_ctx *ctx, jac_tensor *u, int64_t N)
{
    double h = 1.0 / (double)(N + 1);
    jac_tensor *p = pad_grid(ctx, u);
    jac_tensor *dx = jac_sub(ctx, grid_slice(ctx, p, 1, N + 2, 1, N + 1),
                             grid_slice(ctx, p, 0, N + 1, 1, N + 1));
    jac_tensor *dy = jac_sub(ctx, grid_slice(ctx, p, 1, N + 1, 1, N + 2),
                             grid_slice(ctx, p, 1, N + 1, 0, N + 1));
    jac_tensor *e = jac_add(ctx, jac_sum(ctx, jac_square(ctx, dx)),
                            jac_sum(ctx, jac_square(ctx, dy)));
    e = jac_div_scalar(ctx, e, 2.0 * h * h);
    return jac_sub(ctx, e,
                   jac_mul_scalar(ctx, jac_sum(ctx, jac_exp(ctx, u)), 6.0));
}

/* P7 Rosenbrock: sum 100 (x[i+1] - x[i]^2)^2 + (1 - x[i])^2 with squares
 * (P3 writes the same function with pow). */
static jac_tensor *f_rosenbrock_sq(jac_ctx *ctx, jac_tensor *x)
{
    if (x == NULL)
        return NULL;
    int64_t n = jac_tensor_numel(x);
    jac_tensor *a = jac_slice(ctx, x, 0, 0, n - 1, 1);
    jac_tensor *b = jac_slice(ctx, x, 0, 1, n, 1);
    jac_tensor *t = jac_sub(ctx, b, jac_square(ctx, a));
    jac_tensor *f = jac_add(ctx, jac_mul_scalar(ctx, jac_square(ctx, t), 100.0),
                            jac_square(ctx, jac_rsub_scalar(ctx, 1.0, a)));
    return jac_sum(ctx, f);
}

static jac_tensor *f_sparse(jac_ctx *ctx, const bench_case *bc, jac_tensor *u)
{
    switch (bc->problem) {
    case P6:
        return f_bratu(ctx, u, bc->N);
    case P7E:
        return f_energy(ctx, u, bc->N);
    default:
        return f_rosenbrock_sq(ctx, u);
    }
}

static jac_status fn_sparse(jac_ctx *ctx, jac_tensor *const *in,
                            jac_tensor **out, void *user)
{
    out[0] = f_sparse(ctx, user, in[0]);
    return out[0] ? JAC_OK : jac_errcode(ctx);
}

/* The problem's unknowns as a tensor: the N x N grid, or Rosenbrock's x. */
static jac_tensor *sparse_input(const bench_case *bc, jac_ctx *ctx,
                                bool requires_grad)
{
    int64_t grid[2] = {bc->N, bc->N};
    bool is_grid = bc->problem != P7R;
    int ndim = is_grid ? 2 : 1;
    const int64_t *shape = is_grid ? grid : &bc->n;
    return requires_grad ? input(ctx, ndim, shape, bc->x)
                         : jac_tensor_new(ctx, ndim, shape, bc->x);
}

/* P6 has a Jacobian, P7 a Hessian (of a one-element output, weight 1). */
static bool sparse_hessian(const bench_case *bc) { return bc->problem != P6; }

static const char *method_name(jac_sparse_method m)
{
    switch (m) {
    case JAC_SPARSE_FORWARD:
        return "forward";
    case JAC_SPARSE_REVERSE:
        return "reverse";
    case JAC_SPARSE_STAR:
        return "star";
    case JAC_SPARSE_ACYCLIC:
        return "acyclic";
    default:
        return "auto";
    }
}

/* Records the function into *prog (the input tensor is released again). */
static jac_status sparse_record(bench_case *bc, jac_ctx *ctx,
                                jac_program **prog)
{
    jac_scope mark = jac_scope_begin(ctx);
    jac_tensor *x = sparse_input(bc, ctx, false);
    jac_status st =
        x ? jac_program_record(ctx, fn_sparse, bc, 1, &x, 0, NULL, 1, 0, prog)
          : jac_errcode(ctx);
    if (st != JAC_OK)
        snprintf(bc->errmsg, sizeof bc->errmsg, "recording: %.480s",
                 jac_errmsg(ctx));
    jac_scope_end(ctx, mark, NULL, 0);
    return st;
}

/* The plan of prog with the default options (FULL triangle for the
 * Hessians, so that both triangles are in the values). */
static jac_status sparse_plan(bench_case *bc, jac_program *prog,
                              jac_sparse **plan)
{
    jac_status st = sparse_hessian(bc)
                        ? jac_sparse_hessian_plan(prog, NULL, plan)
                        : jac_sparse_jacobian_plan(prog, NULL, plan);
    if (st != JAC_OK)
        snprintf(bc->errmsg, sizeof bc->errmsg, "plan: %.490s",
                 jac_program_errmsg());
    return st;
}

/* One evaluation of the replay's plan at bc's point into bc->vals (and F
 * into bc->fout for P6: the reverse sweeps of the program give it). */
static jac_status sparse_eval(bench_case *bc)
{
    const double *args[1] = {bc->x};
    jac_status st;
    if (sparse_hessian(bc)) {
        st = jac_sparse_hessian(bc->plan, args, NULL, bc->vals);
    } else {
        double *outs[1] = {bc->fout};
        st = jac_sparse_jacobian(bc->plan, args, bc->vals, outs);
    }
    if (st != JAC_OK)
        snprintf(bc->errmsg, sizeof bc->errmsg, "evaluation: %.480s",
                 jac_program_errmsg());
    return st;
}

/* Frees what the last sparse run kept (its plan first: the program must
 * outlive it). */
static void sparse_release(bench_case *bc)
{
    jac_sparse_free(bc->plan);
    jac_program_free(bc->prog);
    free(bc->vals);
    free(bc->fout);
    bc->plan = NULL;
    bc->prog = NULL;
    bc->vals = bc->fout = NULL;
}

/* Untimed, once per size: a plan of the recorded function gives the
 * number of entries (which sizes the values of the dynamic variant's
 * first call: the plan it makes has the same pattern), the colours and the
 * place of entry (0, 0) in the plan's order. */
static bool sparse_probe(bench_case *bc)
{
    bc->errmsg[0] = 0;
    bc->k00 = -1;
    jac_ctx *ctx = jac_ctx_new();
    jac_program *prog = NULL;
    jac_sparse *plan = NULL;
    bool ok = ctx != NULL && sparse_record(bc, ctx, &prog) == JAC_OK &&
              sparse_plan(bc, prog, &plan) == JAC_OK;
    if (ok) {
        bc->nnz = jac_sparse_nnz(plan);
        bc->colors = jac_sparse_colors(plan);
        size_t bytes = (size_t)(bc->nnz > 0 ? bc->nnz : 1) * sizeof(int64_t);
        int64_t *r = malloc(bytes), *c = malloc(bytes);
        ok = r && c && jac_sparse_coo(plan, JAC_INDEX_INT64, r, c) == JAC_OK;
        for (int64_t k = 0; ok && k < bc->nnz && bc->k00 < 0; k++)
            if (r[k] == 0 && c[k] == 0)
                bc->k00 = k;
        if (!ok)
            snprintf(bc->errmsg, sizeof bc->errmsg, "coordinates: %.480s",
                     r && c ? jac_program_errmsg() : "out of memory");
        free(r);
        free(c);
    } else if (ctx == NULL) {
        snprintf(bc->errmsg, sizeof bc->errmsg, "out of memory");
    }
    jac_sparse_free(plan);
    jac_program_free(prog);
    jac_ctx_free(ctx);
    return ok;
}

/* The checksums of bc->vals, the full matrix's entries. */
static void sparse_sums(const bench_case *bc, sums *s)
{
    *s = checksums_of(bc->vals, bc->nnz, NAN);
    s->j00 = bc->k00 >= 0 ? bc->vals[bc->k00] : 0.0;
    s->nnz = bc->nnz;
}

/* The entries a plan made in a run has: the probe's, or an error. */
static bool sparse_same_nnz(bench_case *bc)
{
    if (jac_sparse_nnz(bc->plan) == bc->nnz)
        return true;
    snprintf(bc->errmsg, sizeof bc->errmsg,
             "the plan has %lld entries, the probe's %lld",
             (long long)jac_sparse_nnz(bc->plan), (long long)bc->nnz);
    return false;
}

static void add_phases(bench_case *bc, double a, double b, double c)
{
    if (bc->nph == bc->capph) {
        int cap = bc->capph ? 2 * bc->capph : 64;
        for (int p = 0; p < 3; p++) {
            double *more = realloc(bc->ph[p], (size_t)cap * sizeof(double));
            if (more == NULL)
                return;
            bc->ph[p] = more;
        }
        bc->capph = cap;
    }
    bc->ph[0][bc->nph] = a;
    bc->ph[1][bc->nph] = b;
    bc->ph[2][bc->nph] = c;
    bc->nph++;
}

/*
 * One run of a sparse variant; *seconds is its time.
 * - dense: the dense Jacobian (jac_jacobian) or Hessian (jac_hessian) of a
 *   new recording, as for P1..P5; nothing is reused.
 * - dynamic: the function recorded on the tape, then
 *   jac_sparse_{jacobian,hessian}_tape. Cold (bc->cold): from nothing, the
 *   call makes the plan; warm: the plan of an earlier call is reused after
 *   its structural check. Phases: recording, the call, releasing the
 *   recording.
 * - replay: cold: jac_program_record, the plan, one evaluation (phases:
 *   record, plan, sweep); warm: one evaluation of the plan at the point.
 * A cold run frees what the run before kept first, outside its time; the
 * plan, program and values of the last run stay in bc.
 */
static bool sparse_once(bench_case *bc, jac_ctx *ctx, const config *c,
                        double *seconds, sums *s)
{
    bool collect = bc->collect && s == NULL;
    bool hess = sparse_hessian(bc);
    bool ok = false;
    switch (c->variant) {
    case V_DENSE: {
        double t0 = now();
        jac_scope mark = jac_scope_begin(ctx);
        jac_tensor *x = sparse_input(bc, ctx, true), *J = NULL;
        if (x != NULL && hess) {
            J = jac_hessian(ctx, fn_sparse, bc, x, NULL);
        } else if (x != NULL) {
            jac_tensor *y = f_sparse(ctx, bc, x);
            J = y ? jac_jacobian(ctx, y, x, 0) : NULL;
        }
        double t1 = now();
        if (J && s) {
            *s = checksums(J, NAN);
            const double *d = jac_tensor_data(J);
            s->nnz = 0;
            for (int64_t k = 0; k < jac_tensor_numel(J); k++)
                s->nnz += d[k] != 0.0;
        }
        bc->colors = bc->n;
        double t2 = now();
        jac_scope_end(ctx, mark, NULL, 0);
        *seconds = (t1 - t0) + (now() - t2);
        return J != NULL;
    }
    case V_DYNAMIC: {
        if (bc->cold)
            sparse_release(bc);
        double t0 = now();
        jac_scope mark = jac_scope_begin(ctx);
        jac_tensor *x = sparse_input(bc, ctx, true);
        jac_tensor *y = x ? f_sparse(ctx, bc, x) : NULL;
        double t1 = now();
        jac_status st = y ? JAC_OK : jac_errcode(ctx);
        if (st == JAC_OK && bc->vals == NULL &&
            (bc->vals = malloc((size_t)bc->nnz * sizeof(double))) == NULL)
            st = JAC_ERR_NO_MEMORY;
        if (st == JAC_OK)
            st = hess ? jac_sparse_hessian_tape(ctx, y, 1, &x, NULL, &bc->plan,
                                                bc->vals)
                      : jac_sparse_jacobian_tape(ctx, 1, &y, 1, &x, NULL,
                                                 &bc->plan, bc->vals);
        double t2 = now();
        if (st != JAC_OK)
            snprintf(bc->errmsg, sizeof bc->errmsg, "%.500s",
                     st == JAC_ERR_NO_MEMORY && bc->vals == NULL
                         ? "out of memory"
                         : jac_errmsg(ctx));
        ok = st == JAC_OK && sparse_same_nnz(bc);
        if (ok && s)
            sparse_sums(bc, s);
        double t3 = now();
        jac_scope_end(ctx, mark, NULL, 0);
        double t4 = now();
        *seconds = (t2 - t0) + (t4 - t3);
        if (collect)
            add_phases(bc, t1 - t0, t2 - t1, t4 - t3);
        break;
    }
    case V_REPLAY: {
        if (!bc->cold) {
            double t0 = now();
            ok = sparse_eval(bc) == JAC_OK;
            *seconds = now() - t0;
            if (ok && s)
                sparse_sums(bc, s);
            return ok;
        }
        sparse_release(bc);
        double t0 = now();
        ok = sparse_record(bc, ctx, &bc->prog) == JAC_OK;
        double t1 = now();
        ok = ok &&
             jac_program_set_threads(bc->prog, c->jac_threads) == JAC_OK &&
             sparse_plan(bc, bc->prog, &bc->plan) == JAC_OK;
        double t2 = now();
        if (ok) {
            size_t nv = (size_t)jac_sparse_nnz(bc->plan);
            bc->vals = malloc((nv ? nv : 1) * sizeof(double));
            bc->fout = hess ? NULL : malloc((size_t)bc->n * sizeof(double));
            ok = bc->vals && (hess || bc->fout);
            if (!ok)
                snprintf(bc->errmsg, sizeof bc->errmsg, "out of memory");
        }
        ok = ok && sparse_eval(bc) == JAC_OK;
        double t3 = now();
        *seconds = t3 - t0;
        ok = ok && sparse_same_nnz(bc);
        if (ok && s)
            sparse_sums(bc, s);
        if (collect)
            add_phases(bc, t1 - t0, t2 - t1, t3 - t2);
        break;
    }
    default:
        return false;
    }
    if (ok && bc->plan) {
        bc->colors = jac_sparse_colors(bc->plan);
        bc->method = method_name(jac_sparse_method_used(bc->plan));
    }
    return ok;
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
    if (is_sparse(bc->problem))
        return sparse_once(bc, ctx, c, seconds, s);
    double value = NAN;
    if (c->variant == V_REPLAY || c->variant == V_FLOOR) {
        /* Nothing of ctx: the program's buffers, or the loop's numbers. */
        double d = NAN;
        bool ok = true;
        double t0 = now();
        if (c->variant == V_REPLAY)
            ok = replay_run(bc, &value);
        else
            value = chain_floor(bc->n, &d);
        *seconds = now() - t0;
        if (ok && s)
            *s = c->variant == V_REPLAY ? checksums_of(bc->res, bc->nres, value)
                                        : checksums_of(&d, 1, value);
        return ok;
    }
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

/* Why c failed: the program's message for the replay, else ctx's. */
static const char *failure(const bench_case *bc, const config *c,
                           const jac_ctx *ctx)
{
    if ((c->variant == V_REPLAY || is_sparse(bc->problem)) && bc->errmsg[0])
        return bc->errmsg;
    return jac_errmsg(ctx);
}

static void print_error(const bench_case *bc, const config *c, int threads,
                        jac_ctx *ctx)
{
    printf("{\"impl\": \"libjacobian\", \"problem\": \"%s\", \"size\": \"%s\", "
           "\"variant\": \"%s\", \"threads\": %d, \"error\": \"",
           problem_names[bc->problem], bc->sd->size, variant_names[c->variant],
           threads);
    for (const char *m = failure(bc, c, ctx); *m; m++)
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
    if (c->variant == V_REPLAY) {
        /* The recording, untimed, and the program's size. ctx_peak_mb is
         * the peak of what the program and its calls held (the recording
         * context is gone by then), record_peak_mb that of the recording
         * (its context, tape and the program). */
        printf(", \"record_s\": %.6g, \"record_peak_mb\": %.2f, "
               "\"program_ops\": %zu, \"program_bytes\": %zu, "
               "\"program_bytes_per_op\": %.2f",
               bc->record_s, bc->record_peak_mb, bc->prog_ops, bc->prog_bytes,
               bc->prog_ops ? (double)bc->prog_bytes / (double)bc->prog_ops
                            : 0.0);
    }
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

/* measure() of c. The replay's program is recorded before (untimed) and
 * freed after; *peak_mb is then the peak of what the program and its calls
 * held (counted in m->cnt), else that of ctx's counter cnt (NULL: -1). */
static bool measure_variant(bench_case *bc, jac_ctx *ctx, const config *c,
                            double budget, int min_rep, int max_rep,
                            double give_up, const replay_mem *m, counter *cnt,
                            result *r, double *peak_mb)
{
    counter *which = c->variant == V_REPLAY ? m->cnt : cnt;
    bool ok = c->variant != V_REPLAY || replay_prepare(bc, c, m);
    if (which)
        counter_reset_peak(which);
    ok = ok && measure(bc, ctx, c, budget, min_rep, max_rep, give_up, r);
    *peak_mb = which ? counter_peak_mb(which) : -1.0;
    if (c->variant == V_REPLAY) {
        bc->prog_ops = jac_program_length(bc->prog, &bc->prog_bytes);
        replay_release(bc, m);
    }
    return ok;
}

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
    if (variant == V_FLOOR) { /* one thread, whatever the setting */
        base.jac_threads = 1;
        out[n++] = base;
        return n;
    }
    if (variant == V_REPLAY) {
        /* The program's threads (jac_program_set_threads) take the seed
         * blocks; as for batched, several threads are also tried on
         * OpenBLAS instead (P4's single gradient has no blocks). */
        out[n++] = base;
        if (threads > 1 && o->tune && bc->problem != P4) {
            config b = {variant, 0, 1, threads};
            out[n++] = b;
        }
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

/* ------------------------------------------------------------------------ */
/* Running the sparse problems                                              */
/* ------------------------------------------------------------------------ */

/* Starts the process's peak resident set (VmHWM) again from the current
 * one (Linux: "5" into /proc/self/clear_refs); false when it cannot. */
static bool reset_peak_rss(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f == NULL)
        return false;
    bool ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}

static double median_of(double *v, int n)
{
    if (n <= 0)
        return NAN;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* A sparse variant: the cold result, the warm one (dense: the same) and
 * the medians of their phases. */
typedef struct sparse_result {
    result cold, warm;
    double cold_ph[3], warm_ph[3];
    bool cold_ok, warm_ok;
} sparse_result;

static void phase_medians(bench_case *bc, double *out)
{
    for (int p = 0; p < 3; p++)
        out[p] = median_of(bc->ph[p], bc->nph);
}

/* Measures c's cold runs, then (sparse variants) its warm runs after one
 * untimed cold run that leaves the plan, and for the values NaN, which
 * the warm-up has to overwrite: its checksums are its own. */
static bool sparse_measure(bench_case *bc, jac_ctx *ctx, const config *c,
                           double budget, int min_rep, int max_rep,
                           sparse_result *sr)
{
    memset(sr, 0, sizeof *sr);
    for (int p = 0; p < 3; p++)
        sr->cold_ph[p] = sr->warm_ph[p] = NAN;
    bc->errmsg[0] = 0;
    bc->method = c->variant == V_DENSE ? "dense" : "";
    bc->cold = true;
    bc->collect = true;
    bc->nph = 0;
    sr->cold_ok =
        measure(bc, ctx, c, budget, min_rep, max_rep, INFINITY, &sr->cold);
    phase_medians(bc, sr->cold_ph);
    sparse_release(bc);
    if (c->variant == V_DENSE || !sr->cold_ok) {
        sr->warm = sr->cold;
        sr->warm_ok = sr->cold_ok;
        return sr->cold_ok;
    }
    double t;
    bc->collect = false;
    sr->warm_ok = sparse_once(bc, ctx, c, &t, NULL);
    if (sr->warm_ok) {
        for (int64_t k = 0; k < bc->nnz; k++)
            bc->vals[k] = NAN;
        bc->cold = false;
        bc->collect = true;
        bc->nph = 0;
        sr->warm_ok =
            measure(bc, ctx, c, budget, min_rep, max_rep, INFINITY, &sr->warm);
        phase_medians(bc, sr->warm_ph);
    }
    sparse_release(bc);
    bc->cold = true;
    return sr->warm_ok;
}

/* ", key: v" on the current JSON line; null when there is no value (no
 * timed run gave one). */
static void print_number(const char *key, double v)
{
    if (isnan(v))
        printf(", \"%s\": null", key);
    else
        printf(", \"%s\": %.6g", key, v);
}

static void print_sparse_result(const bench_case *bc, const config *c,
                                int threads, const sparse_result *sr,
                                double ctx_peak_mb, double rss_mb)
{
    const result *w = &sr->warm, *k = &sr->cold;
    char bad[160];
    snprintf(bad, sizeof bad, "%s", check_sums(bc->sd, &w->s));
    const char *cold_bad = check_sums(bc->sd, &k->s);
    if (c->variant != V_DENSE && cold_bad[0]) {
        size_t used = strlen(bad);
        snprintf(bad + used, sizeof bad - used, "%scold:%s", used ? "," : "",
                 cold_bad);
    }
    printf("{\"impl\": \"libjacobian\", \"problem\": \"%s\", \"size\": \"%s\", "
           "\"variant\": \"%s\", \"threads\": %d, \"median_s\": %.9g, "
           "\"min_s\": %.9g, \"repeats\": %d, \"sum\": %.17g, \"fro\": %.17g, "
           "\"j00\": %.17g, \"nnz\": %lld, \"nnz_stored\": %lld, "
           "\"colors\": %lld, \"cold_s\": %.9g, \"warm_s\": %.9g, "
           "\"cold_min_s\": %.9g, \"cold_repeats\": %d, \"method\": \"%s\", "
           "\"peak_rss_mb\": %.1f, \"ctx_peak_mb\": %.2f, \"check\": \"%s\", "
           "\"chunk\": 0, \"jac_threads\": %d, \"blas_threads\": %d",
           problem_names[bc->problem], bc->sd->size, variant_names[c->variant],
           threads, w->median, w->min, w->reps, w->s.sum, w->s.fro, w->s.j00,
           (long long)w->s.nnz,
           (long long)(c->variant == V_DENSE ? bc->n * bc->n : bc->nnz),
           (long long)bc->colors, k->median, w->median, k->min, k->reps,
           bc->method, rss_mb, ctx_peak_mb, bad[0] ? "fail" : "ok",
           c->jac_threads, c->blas_threads);
    if (bad[0])
        printf(", \"check_failed\": \"%s\"", bad);
    /* Medians of the phases of the cold runs (and of the warm ones). */
    static const char *const replay_keys[3] = {"record_s", "plan_s", "sweep_s"};
    static const char *const dynamic_keys[6] = {
        "record_s",      "tape_call_s",      "release_s",
        "warm_record_s", "warm_tape_call_s", "warm_release_s"};
    if (c->variant == V_REPLAY)
        for (int p = 0; p < 3; p++)
            print_number(replay_keys[p], sr->cold_ph[p]);
    else if (c->variant == V_DYNAMIC)
        for (int p = 0; p < 6; p++)
            print_number(dynamic_keys[p],
                         p < 3 ? sr->cold_ph[p] : sr->warm_ph[p - 3]);
    printf("}\n");
    fflush(stdout);
}

/* Every selected variant of one sparse size at one thread count, each in
 * a fresh context whose allocations are counted (ctx_peak_mb: the peak of
 * what the context, its programs and plans held) and with the process's
 * peak resident set started again (peak_rss_mb). */
static int run_sparse(const options *o, bench_case *bc, int threads)
{
    int failures = 0;
    config probe_cfg = {V_REPLAY, 0, 1, 1};
    if (!sparse_probe(bc)) {
        jac_ctx *none = jac_ctx_new();
        print_error(bc, &probe_cfg, threads, none);
        jac_ctx_free(none);
        return 1;
    }
    for (int v = 0; v < NVARIANTS; v++) {
        if (!o->variants[v] || !variant_applies(bc->sd, v))
            continue;
        config c = {v, 0, threads, 1};
        counter cnt;
        atomic_init(&cnt.current, 0);
        atomic_init(&cnt.peak, 0);
        jac_allocator alloc = {count_alloc, count_free, &cnt};
        jac_ctx *ctx =
            o->plain_alloc ? jac_ctx_new() : jac_ctx_new_with_allocator(&alloc);
        if (ctx == NULL) {
            fprintf(stderr, "jacobian_bench: out of memory\n");
            return failures + 1;
        }
        bool rss_reset = reset_peak_rss();
        sparse_result sr;
        bool ok =
            sparse_measure(bc, ctx, &c, o->budget, o->min_rep, o->max_rep, &sr);
        double rss = rss_reset ? peak_rss_mb() : -1.0;
        if (!sr.cold_ok) {
            print_error(bc, &c, threads, ctx);
            failures++;
        } else if (!ok) {
            /* Warm runs failed: the error, with what the cold ones gave. */
            printf("{\"impl\": \"libjacobian\", \"problem\": \"%s\", "
                   "\"size\": \"%s\", \"variant\": \"%s\", \"threads\": %d, "
                   "\"error\": \"warm: ",
                   problem_names[bc->problem], bc->sd->size, variant_names[v],
                   threads);
            for (const char *m = failure(bc, &c, ctx); *m; m++)
                if (*m != '"' && *m != '\\')
                    putchar(*m);
            printf("\", \"cold_s\": %.9g, \"cold_min_s\": %.9g, "
                   "\"cold_repeats\": %d, \"nnz\": %lld, \"colors\": %lld, "
                   "\"peak_rss_mb\": %.1f}\n",
                   sr.cold.median, sr.cold.min, sr.cold.reps,
                   (long long)sr.cold.s.nnz, (long long)bc->colors, rss);
            fflush(stdout);
            failures++;
        } else {
            print_sparse_result(bc, &c, threads, &sr,
                                o->plain_alloc ? -1.0 : counter_peak_mb(&cnt),
                                rss);
            if (check_sums(bc->sd, &sr.warm.s)[0] ||
                check_sums(bc->sd, &sr.cold.s)[0])
                failures++;
        }
        jac_ctx_free(ctx);
    }
    return failures;
}

/* --check of a sparse size: each variant once cold and, for the sparse
 * ones, once warm. */
static int check_sparse(const options *o, bench_case *bc, int threads,
                        int *checks)
{
    int failures = 0;
    const char *label = problem_names[bc->problem];
    if (!sparse_probe(bc)) {
        printf("FAIL %s %s probe: %s\n", label, bc->sd->size, bc->errmsg);
        (*checks)++;
        return 1;
    }
    for (int v = 0; v < NVARIANTS; v++) {
        if (!o->variants[v] || !variant_applies(bc->sd, v))
            continue;
        config c = {v, 0, threads, 1};
        jac_ctx *ctx = jac_ctx_new();
        if (ctx == NULL)
            return failures + 1;
        apply_threads(ctx, &c);
        for (int warm = 0; warm < (v == V_DENSE ? 1 : 2); warm++) {
            sums r = {NAN, NAN, NAN, NAN, -1};
            double t = 0.0;
            (*checks)++;
            bc->errmsg[0] = 0;
            bc->cold = true;
            bc->collect = false;
            bool ok = sparse_once(bc, ctx, &c, &t, warm ? NULL : &r);
            if (ok && warm) {
                for (int64_t k = 0; k < bc->nnz; k++)
                    bc->vals[k] = NAN;
                bc->cold = false;
                ok = sparse_once(bc, ctx, &c, &t, &r);
            }
            sparse_release(bc);
            bc->cold = true;
            const char *what = v == V_DENSE ? "" : warm ? " warm" : " cold";
            if (!ok) {
                printf("FAIL %s %s %s%s threads=%d: %s\n", label, bc->sd->size,
                       variant_names[v], what, threads, failure(bc, &c, ctx));
                jac_clear_error(ctx);
                failures++;
                continue;
            }
            const char *bad = check_sums(bc->sd, &r);
            if (bad[0]) {
                printf("FAIL %s %s %s%s threads=%d: %s differ: sum %.17g "
                       "(want %.17g), fro %.17g (want %.17g), j00 %.17g "
                       "(want %.17g), nnz %lld (want %lld)\n",
                       label, bc->sd->size, variant_names[v], what, threads,
                       bad, r.sum, bc->sd->ref_sum, r.fro, bc->sd->ref_fro,
                       r.j00, bc->sd->ref_j00, (long long)r.nnz,
                       (long long)bc->sd->ref_nnz);
                failures++;
            } else {
                printf("ok   %s %s %s%s threads=%d (%.3g s)\n", label,
                       bc->sd->size, variant_names[v], what, threads, t);
            }
        }
        jac_ctx_free(ctx);
    }
    return failures;
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
        if (is_sparse(sd->problem)) {
            for (int ti = 0; ti < o->nthreads; ti++)
                failures += run_sparse(o, &bc, o->threads[ti]);
            case_free(&bc);
            continue;
        }
        for (int ti = 0; ti < o->nthreads; ti++) {
            int threads = o->threads[ti];
            counter cnt;
            atomic_init(&cnt.current, 0);
            atomic_init(&cnt.peak, 0);
            jac_allocator alloc = {count_alloc, count_free, &cnt};
            /* The replay's programs count apart from the contexts. */
            counter pcnt;
            atomic_init(&pcnt.current, 0);
            atomic_init(&pcnt.peak, 0);
            jac_allocator palloc = {count_alloc, count_free, &pcnt};
            replay_mem rm = {o->plain_alloc ? NULL : &palloc,
                             o->plain_alloc ? NULL : &pcnt};
            counter *cnt_or_null = o->plain_alloc ? NULL : &cnt;
            /* P4's big sizes cap the repetitions. */
            int max_rep = o->max_rep, min_rep = o->min_rep;
            if (sd->max_rep > 0 && !o->reps_given && sd->max_rep < max_rep)
                max_rep = sd->max_rep;
            if (min_rep > max_rep)
                min_rep = max_rep;
            jac_ctx *ctx = o->plain_alloc ? jac_ctx_new()
                                          : jac_ctx_new_with_allocator(&alloc);
            if (ctx == NULL || !case_constants(&bc, ctx)) {
                fprintf(stderr, "jacobian_bench: out of memory\n");
                jac_ctx_free(ctx);
                case_free(&bc);
                return 1;
            }
            for (int v = 0; v < NVARIANTS; v++) {
                if (!o->variants[v] || !variant_applies(sd, v))
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
                        double unused;
                        if (!measure_variant(&bc, ctx, &tu.cfg[k],
                                             o->tune_budget,
                                             min_rep < 3 ? min_rep : 3, max_rep,
                                             give_up, &rm, NULL, &r, &unused)) {
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
                double peak;
                if (!measure_variant(&bc, ctx, &tu.cfg[best], o->budget,
                                     min_rep, max_rep, INFINITY, &rm,
                                     cnt_or_null, &r, &peak)) {
                    print_error(&bc, &tu.cfg[best], threads, ctx);
                    jac_clear_error(ctx);
                    failures++;
                    continue;
                }
                print_result(&bc, &tu.cfg[best], threads, &r, peak, &tu);
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
        if (is_sparse(sd->problem)) {
            if (!case_init(&bc, sd)) {
                fprintf(stderr, "jacobian_bench: out of memory\n");
                case_free(&bc);
                return 1;
            }
            for (int ti = 0; ti < o->nthreads; ti++)
                failures += check_sparse(o, &bc, o->threads[ti], &checks);
            case_free(&bc);
            continue;
        }
        if (!case_init(&bc, sd) || (ctx = jac_ctx_new()) == NULL ||
            !case_constants(&bc, ctx)) {
            fprintf(stderr, "jacobian_bench: out of memory\n");
            jac_ctx_free(ctx);
            case_free(&bc);
            return 1;
        }
        for (int ti = 0; ti < o->nthreads; ti++) {
            for (int v = 0; v < NVARIANTS; v++) {
                if (!o->variants[v] || !variant_applies(sd, v))
                    continue;
                config c = {v, v == V_ROWLOOP ? 1 : 0, o->threads[ti], 1};
                apply_threads(ctx, &c);
                sums r = {NAN, NAN, NAN, NAN, -1};
                double t;
                checks++;
                const char *label = problem_names[sd->problem];
                replay_mem rm = {NULL, NULL};
                bool ok = v != V_REPLAY || replay_prepare(&bc, &c, &rm);
                ok = ok && run_once(&bc, ctx, &c, &t, &r);
                if (v == V_REPLAY)
                    replay_release(&bc, &rm);
                if (!ok) {
                    printf("FAIL %s %s %s threads=%d: %s\n", label, sd->size,
                           variant_names[v], c.jac_threads,
                           failure(&bc, &c, ctx));
                    jac_clear_error(ctx);
                    failures++;
                    continue;
                }
                const char *bad = check_sums(sd, &r);
                if (bad[0]) {
                    printf("FAIL %s %s %s threads=%d: %s differ: "
                           "sum %.17g (want %.17g), fro %.17g (want %.17g), "
                           "j00 %.17g (want %.17g)",
                           label, sd->size, variant_names[v], c.jac_threads,
                           bad, r.sum, sd->ref_sum, r.fro, sd->ref_fro, r.j00,
                           sd->ref_j00);
                    if (sd->ref_value != 0)
                        printf(", value %.17g (want %.17g)", r.value,
                               sd->ref_value);
                    printf("\n");
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
