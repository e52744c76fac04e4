/*
 * The program layer: recorded functions (jac_program), compiled from the
 * tape of a recording section and replayed on flat buffers.
 *
 * A program's values (inputs, parameters, constants, then the output of
 * every recorded op, in tape order) live in one array of doubles, each at
 * an offset. An op on one-element values whose row has a form on doubles
 * (the functions of functions.h, the arithmetic of arith.h) is a 12-byte
 * scalar instruction that the replay runs inline; any other op is a tensor
 * instruction that runs the op's own code (its apply entry forward, its
 * raw kernel or rule backward) on tensor headers that point into the
 * array. Nothing about a particular op lives here: the op table says it.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JAC_PROGRAM_H
#define JAC_PROGRAM_H

#include "drivers/drivers.h"
#include "ops/functions.h"

#include <stdatomic.h>

/* The op number of a tensor instruction. */
#define JAC__TENSOR_INSTR 0xffffu

/* Flags of an instruction's operands: the operand is differentiated (its
 * adjoint is wanted), and the backward pass writes its adjoint rather than
 * adding to it (this is its first contribution in reverse order). */
enum {
    JAC__I_DIFF_A = 1u << 0,
    JAC__I_DIFF_B = 1u << 1,
    JAC__I_WRITE_A = 1u << 2,
    JAC__I_WRITE_B = 1u << 3,
    /* The output depends on a differentiated input: the backward runs. */
    JAC__I_DIFF_OUT = 1u << 4
};

/* One recorded op. A scalar instruction's output is the next value after
 * the previous instruction's output; a and b are the value offsets of its
 * inputs (b, for a function of one input, indexes its parameters in
 * prog->fparams). A tensor instruction has op JAC__TENSOR_INSTR and a
 * indexes prog->tops. */
typedef struct jac__instr {
    uint16_t op;
    uint16_t flags;
    uint32_t a, b;
} jac__instr;

/* A value: where it starts in the value array, or in prog->consts for a
 * constant of more than one element (konst), and its shape. */
typedef struct jac__pval {
    uint64_t off;
    bool konst;
    int64_t numel;
    int ndim;
    int64_t shape[JAC_MAX_DIMS];
} jac__pval;

/* An input of a tensor instruction. */
typedef struct jac__tin {
    jac__pval v;
    bool diff, write; /* as JAC__I_DIFF_* and JAC__I_WRITE_* */
} jac__tin;

/* A tensor instruction: the node it replays (op, parameters), its inputs
 * prog->tins[first .. first + nin - 1], and its output. */
typedef struct jac__top {
    int op, nin;
    bool diff_out;
    jac__params p;
    size_t first;
    jac__pval out;
    int64_t scratch; /* doubles of input cotangents per seed */
    /* The output whose seed reaches this instruction's output unchanged
     * (through ops that pass one-hot cotangents on, with no other
     * contribution), or -1: a block of one-hot seeds within that output
     * is a one-hot cotangent here, which the raw kernel may exploit. */
    int hint;
} jac__top;

typedef struct jac__ws jac__ws;

/* Workspaces kept for later calls: a call takes one (or makes one) and
 * puts it back, so that concurrent calls never share one. */
#define JAC__WS_POOL 16

/* How an output's seed enters its adjoint: not at all (the output depends
 * on no input), written, or added (the output appears twice). */
enum { JAC__SEED_NONE, JAC__SEED_WRITE, JAC__SEED_ADD };

/* Derived programs, made on first use and kept. */
enum { JAC__DERIVED_VJP, JAC__DERIVED_GRAD, JAC__DERIVED_COUNT };

struct jac_program {
    jac_allocator alloc;
    size_t ninputs, nparams, noutputs;
    jac__pval *args; /* inputs then parameters */
    jac__pval *outs;
    /* The value array: parameters and one-element constants, whose first
     * values v0 holds, then from diff_off on the inputs and the outputs of
     * the instructions: the values that have adjoints. Constants of more
     * elements stay in consts, where tensor instructions read them. */
    uint64_t nvalues, diff_off;
    double *v0;
    uint64_t nconst;
    double *consts;
    /* Where the first instruction's output lies. */
    uint64_t code_off;
    jac__instr *code;
    size_t ncode;
    jac__top *tops;
    size_t ntops;
    jac__tin *tins;
    size_t ntins;
    jac__fn_params *fparams;
    size_t nfparams, cap_fparams;
    /* Scalar instructions whose partial the forward sweep keeps for the
     * backward one (jac__fn_keeps_partial). */
    size_t npartials;
    int64_t scratch; /* the largest top's scratch */
    /* Doubles a backward sweep reads per seed, roughly: every adjoint and
     * every input of a tensor instruction (which decides threads). */
    double work_per_seed;
    /* One input, one output of its size, and only elementwise ops on
     * differentiated values of the output's size between them: the
     * Jacobian is diagonal. */
    bool diagonal;
    /* Every adjoint starts with a write (a seed, or the first contribution
     * in reverse order): none needs zeroing but those of the inputs that
     * reach no output, which reached says. out_seed says how output k's
     * seed enters (JAC__SEED_*). */
    bool *reached;
    uint8_t *out_seed;
    int64_t *out_start; /* first Jacobian row of each output */
    /* The arguments' values at the recording (for derived programs), and
     * zeros for the largest argument or output. */
    double *x0, *zeros;
    uint64_t nx0, nzeros;
    int threads;
    size_t memory_budget;
    _Atomic size_t bytes; /* counted from any thread making plans */
    _Atomic(jac__ws *) pool[JAC__WS_POOL];
    _Atomic(jac_program *) derived[JAC__DERIVED_COUNT];
    /* The sparse plan of jac_program_jacobian, or its verdict that the
     * pattern is too dense to pay (sparse/dense.c), made by the first call
     * that wins kept_making, freed by jac__program_kept_free. */
    _Atomic(void *) kept;
    _Atomic int kept_making;
};

/* Allocation through the program's hooks (counted in prog->bytes). */
void *jac__prog_alloc(jac_program *prog, size_t bytes);
void jac__prog_free(jac_program *prog, void *p, size_t bytes);

/* Records st and a message as the calling thread's last program error
 * (jac_program_errmsg); returns st. */
jac_status jac__program_fail(jac_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* The dense Jacobian of prog by the colours of its pattern, when they
 * take at most half the passes of the block engine: *done says whether it
 * ran (otherwise, and when another call holds the plan, the engine runs).
 * Defined by the sparse layer (sparse/dense.c), as jac__program_kept_free,
 * which frees what it keeps in prog->kept. */
jac_status jac__program_jacobian_sparse(jac_program *prog,
                                        const double *const *args,
                                        double *const *outputs,
                                        double *const *J, bool *done);
void jac__program_kept_free(jac_program *prog);

/* Compiles ctx's open recording section into a new program (record.c). */
jac_status jac__program_compile(jac_ctx *ctx, const char *op, size_t noutputs,
                                jac_tensor *const *outputs, unsigned flags,
                                jac_program **result);

/* Compiles the graph of ctx's dynamic tape from inputs (which must
 * require gradients) to outputs into a new program: the dynamic
 * recording as a program of its own, for the sparse drivers. The
 * program's memory comes from hooks (NULL: ctx's allocator). */
jac_status jac__program_compile_tape(jac_ctx *ctx, const char *op,
                                     size_t noutputs,
                                     jac_tensor *const *outputs, size_t ninputs,
                                     jac_tensor *const *inputs,
                                     const jac_allocator *hooks,
                                     jac_program **result);

/* ------------------------------------------------------------------------ */
/* Replay (replay.c)                                                        */
/* ------------------------------------------------------------------------ */

/* A workspace: the value array, adjoints for batch seeds, scratch, and the
 * tensor headers and nodes of the tensor instructions, over a private
 * context in which tensor ops run. */
struct jac__ws {
    jac_program *prog;
    jac_ctx *ctx;
    double *v;
    double *adj;
    int64_t adj_batch;
    double *scratch;
    int64_t scratch_batch;
    double *partials; /* prog->npartials, in instruction order */
    /* The block of one-hot seeds being swept (count 0: other seeds). */
    int64_t block_r0, block_count;
    jac_tensor *shadow; /* ntins inputs, then ntops outputs (aligned) */
    void *shadow_mem;
    jac__node *nodes; /* one per top */
    jac_tensor **ins; /* ntins pointers, the nodes' inputs */
    /* Per input of the widest tensor instruction: whether its cotangent is
     * wanted, where it goes, and the rule's result. */
    int nmax;
    bool *need;
    bool *add; /* inputs whose cotangent a raw kernel adds (after need) */
    double **gin;
    double **direct; /* where it adds them (after gin) */
    jac_tensor **tgin;
    jac_status status;
    char message[512];
};

/* A workspace of prog for this call (kept from an earlier call, or new);
 * NULL when out of memory. */
jac__ws *jac__ws_take(jac_program *prog);
/* Puts ws back for later calls (or frees it). */
void jac__ws_give(jac_program *prog, jac__ws *ws);
void jac__ws_free(jac__ws *ws);
/* Moves the workspaces kept by from, a program of the same code as to
 * (the same instructions, shapes and places), to to: a new recording of
 * the same code needs no new memory. */
void jac__ws_adopt(jac_program *to, jac_program *from);
/* Records an error in ws; returns code. */
jac_status jac__ws_error(jac__ws *ws, jac_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Copies args (inputs then parameters) into ws's values and runs every
 * instruction; with partials, keeps what a backward sweep will need. */
jac_status jac__replay_forward(jac__ws *ws, const double *const *args,
                               bool partials);
/* Makes room for batch seeds (adjoints and scratch). */
jac_status jac__replay_reserve(jac__ws *ws, int64_t batch);
/* The backward sweep for batch stacked seeds after a forward: seeds of
 * output k are written by set_seed(ws, k, batch, adjoint, user) into the
 * output's adjoint (batch rows of its numel, row b for seed b); then the
 * adjoint of input i is jac__replay_adjoint(ws, i, batch). */
typedef void jac__seed_fn(const jac__ws *ws, size_t k, int64_t batch,
                          double *adjoint, void *user);
jac_status jac__replay_backward(jac__ws *ws, int64_t batch,
                                jac__seed_fn *set_seed, void *user);
/* Where the adjoints of input i lie after a backward sweep (batch rows of
 * its numel), or NULL when input i reaches no output (its adjoint is 0). */
const double *jac__replay_adjoint(const jac__ws *ws, size_t i, int64_t batch);
/* The values of output k after a forward sweep. */
const double *jac__replay_output(const jac__ws *ws, size_t k);

/* Reverse sweeps of prog at args in blocks of seeds, on the program's
 * threads (evaluate.c): rows seeds in all; seed writes seeds r0 .. r0 +
 * batch - 1 into output k's adjoint (batch rows of its numel); place then
 * reads the inputs' adjoints (jac__replay_adjoint). outputs, when not
 * NULL, receive the program's values. Hooks run on several threads at
 * once, each block once. */
typedef void jac__block_seed_fn(const jac__ws *ws, size_t k, int64_t r0,
                                int64_t batch, double *adjoint, void *user);
typedef void jac__block_place_fn(const jac__ws *ws, int64_t r0, int64_t batch,
                                 void *user);
jac_status jac__program_blocks(jac_program *prog, const char *op,
                               const double *const *args,
                               double *const *outputs, int64_t rows,
                               jac__block_seed_fn *seed,
                               jac__block_place_fn *place, void *user);
/* As jac__program_blocks for seeds s0 .. s1 - 1 only, in blocks of block
 * seeds from s0 (whatever the threads), for a part of a Jacobian
 * (share.h). */
jac_status jac__program_blocks_part(jac_program *prog, const char *op,
                                    const double *const *args, int64_t s0,
                                    int64_t s1, int64_t block,
                                    jac__block_seed_fn *seed,
                                    jac__block_place_fn *place, void *user);
/* The seeds of a block when one thread sweeps rows seeds of prog (1 for
 * none), as jac__program_blocks takes them. */
int64_t jac__program_single_chunk(const jac_program *prog, int64_t rows);
/* The derived program of the kind (JAC__DERIVED_*), made on first use and
 * kept; NULL with *st on error (evaluate.c). */
jac_program *jac__program_derived(jac_program *prog, int kind, jac_status *st);
/* Arguments of a derived program for args and extra (seeds or weights of
 * each output; NULL entries are zeros), into a (evaluate.c). */
void jac__derived_args(const jac_program *prog, const double *const *args,
                       const double *const *extra, bool extra_inputs,
                       const double **a);

/* seeds, or 1 for a single one-element output when seeds is NULL (an
 * error naming op otherwise), into *out. */
jac_status jac__program_seeds(const jac_program *prog, const char *op,
                              const double *const *seeds,
                              const double *const **out);
/* JAC_OK, or an error naming op when the arguments and outputs of a
 * derived evaluation are more than its argument list holds (64). */
jac_status jac__program_arity(const jac_program *prog, const char *op);

/* t as a stand-in for a recorded tensor of value v: its shape, no data
 * (apply entries and sparsity rules read a node's shapes) (derive.c). */
void jac__shape_only(jac_tensor *t, const jac__pval *v);

/* Builds prog's ops on ctx from tensors args (inputs then parameters),
 * recording them as ops do: outputs[k] receives output k (a tensor of
 * ctx). For derived programs (derive.c). */
jac_status jac__program_rebuild(jac_program *prog, jac_ctx *ctx,
                                jac_tensor *const *args, jac_tensor **outputs);

#endif /* JAC_PROGRAM_H */
