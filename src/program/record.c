/*
 * Recording sections and their compilation into programs.
 *
 * jac_program_begin marks the inputs and parameters and where the tape
 * stands; jac_program_end walks the tape back from the outputs to find the
 * nodes they need, forward again to find the ones that depend on the
 * inputs or parameters (the others are constants), and writes those as
 * instructions over a value array. Anything that would make a replay
 * differ from recording afresh is refused here, by name.
 *
 * SPDX-License-Identifier: MIT
 */
#include "ops/arith.h"
#include "program/program.h"

#include <stdio.h>
#include <stdlib.h>

/* ------------------------------------------------------------------------ */
/* Program memory                                                           */
/* ------------------------------------------------------------------------ */

void *jac__prog_alloc(jac_program *prog, size_t bytes)
{
    if (bytes == 0)
        bytes = 1;
    void *p = prog->alloc.alloc(bytes, prog->alloc.user);
    if (p != NULL)
        atomic_fetch_add(&prog->bytes, bytes);
    return p;
}

void jac__prog_free(jac_program *prog, void *p, size_t bytes)
{
    if (p == NULL)
        return;
    atomic_fetch_sub(&prog->bytes, bytes == 0 ? 1 : bytes);
    prog->alloc.free(p, prog->alloc.user);
}

/* ------------------------------------------------------------------------ */
/* Sections                                                                 */
/* ------------------------------------------------------------------------ */

/* depth: the nesting of held calls (jac__enter) at which the recorded
 * code runs. */
static jac_status begin_unguarded(jac_ctx *ctx, size_t ninputs,
                                  jac_tensor *const *inputs, size_t nparams,
                                  jac_tensor *const *params, int depth)
{
    const char *op = "program_begin";
    if (ctx->section.open)
        return jac__error(ctx, JAC_ERR_STATE,
                          "%s: a recording is already open in this context "
                          "(end it with jac_program_end first)",
                          op);
    if ((ninputs > 0 && inputs == NULL) || (nparams > 0 && params == NULL))
        return jac__error(ctx, JAC_ERR_NULL_ARG, "%s: inputs or params is NULL",
                          op);
    for (size_t i = 0; i < ninputs; i++)
        if (jac__check_named(ctx, op, inputs[i], "input", i) != JAC_OK)
            return ctx->status;
    for (size_t i = 0; i < nparams; i++)
        if (jac__check_named(ctx, op, params[i], "param", i) != JAC_OK)
            return ctx->status;
    size_t n = ninputs + nparams;
    for (size_t i = 0; i < n; i++) {
        const jac_tensor *t = i < ninputs ? inputs[i] : params[i - ninputs];
        for (size_t j = 0; j < i; j++) {
            const jac_tensor *u = j < ninputs ? inputs[j] : params[j - ninputs];
            if (u == t)
                return jac__error(ctx, JAC_ERR_VALUE,
                                  "%s: argument %zu is argument %zu again "
                                  "(inputs and parameters must be distinct)",
                                  op, i, j);
        }
    }
    /* The arguments, then whether each required gradients before. */
    jac_tensor **args = jac__alloc(ctx, n * (sizeof(jac_tensor *) + 1) + 1);
    if (args == NULL)
        return jac__error(ctx, JAC_ERR_NO_MEMORY, "%s: out of memory", op);
    bool *was = (bool *)(void *)(args + n);
    for (size_t i = 0; i < n; i++) {
        args[i] = i < ninputs ? inputs[i] : params[i - ninputs];
        was[i] = args[i]->requires_grad;
        /* Ops on the arguments must be recorded. */
        args[i]->requires_grad = true;
    }
    ctx->section = (struct jac__section){.open = true,
                                         .start = ctx->nnodes,
                                         .start_seq = ctx->next_seq,
                                         .depth = depth,
                                         .ninputs = ninputs,
                                         .nargs = n,
                                         .args = args};
    return JAC_OK;
}

jac_status jac_program_begin(jac_ctx *ctx, size_t ninputs,
                             jac_tensor *const *inputs, size_t nparams,
                             jac_tensor *const *params)
{
    if (ctx == NULL)
        return JAC_ERR_NULL_ARG;
    JAC__HELD(
        ctx, jac_status, JAC_ERR_STATE,
        begin_unguarded(ctx, ninputs, inputs, nparams, params, ctx->depth - 1));
}

static jac_status end_unguarded(jac_ctx *ctx, size_t noutputs,
                                jac_tensor *const *outputs, unsigned flags,
                                jac_program **program)
{
    const char *op = "program_end";
    if (program == NULL) {
        jac__section_close(ctx);
        return jac__error(ctx, JAC_ERR_NULL_ARG, "%s: program is NULL", op);
    }
    *program = NULL;
    if (!ctx->section.open)
        return jac__error(ctx, JAC_ERR_STATE,
                          "%s: no recording is open (start one with "
                          "jac_program_begin)",
                          op);
    jac_status st = JAC_OK;
    if (flags & ~(unsigned)JAC_PROGRAM_READS_OK)
        st = jac__error(ctx, JAC_ERR_VALUE, "%s: unknown flags 0x%x", op,
                        flags & ~(unsigned)JAC_PROGRAM_READS_OK);
    if (st == JAC_OK)
        st = jac__program_compile(ctx, op, noutputs, outputs, flags, program);
    jac__section_close(ctx);
    return st;
}

jac_status jac_program_end(jac_ctx *ctx, size_t noutputs,
                           jac_tensor *const *outputs, unsigned flags,
                           jac_program **program)
{
    if (ctx == NULL)
        return JAC_ERR_NULL_ARG;
    JAC__HELD(ctx, jac_status, JAC_ERR_STATE,
              end_unguarded(ctx, noutputs, outputs, flags, program));
}

static jac_status record_unguarded(jac_ctx *ctx, jac_fn fn, void *user,
                                   size_t ninputs, jac_tensor *const *inputs,
                                   size_t nparams, jac_tensor *const *params,
                                   size_t noutputs, unsigned flags,
                                   jac_program **program)
{
    const char *op = "program_record";
    if (program == NULL || fn == NULL || noutputs == 0)
        return jac__error(ctx, JAC_ERR_NULL_ARG,
                          "%s: program or fn is NULL, or no outputs", op);
    *program = NULL;
    if ((ninputs > 0 && inputs == NULL) || (nparams > 0 && params == NULL))
        return jac__error(ctx, JAC_ERR_NULL_ARG, "%s: inputs or params is NULL",
                          op);
    size_t n = ninputs + nparams;
    size_t bytes = (n + noutputs) * sizeof(jac_tensor *);
    jac_tensor **copies = jac__alloc(ctx, bytes);
    if (copies == NULL)
        return jac__error(ctx, JAC_ERR_NO_MEMORY, "%s: out of memory", op);
    jac_tensor **outs = copies + n;
    jac_scope mark = jac_scope_begin(ctx);
    bool was = jac_set_grad_enabled(ctx, true);
    jac_status st = JAC_OK;
    for (size_t i = 0; i < n && st == JAC_OK; i++) {
        jac_tensor *t = i < ninputs ? inputs[i] : params[i - ninputs];
        st = jac__check_named(ctx, op, t, i < ninputs ? "input" : "param",
                              i < ninputs ? i : i - ninputs);
        if (st == JAC_OK && (copies[i] = jac_tensor_copy(ctx, t)) == NULL)
            st = ctx->status;
    }
    if (st == JAC_OK)
        st = begin_unguarded(ctx, ninputs, copies, nparams, copies + ninputs,
                             ctx->depth);
    if (st == JAC_OK) {
        st = jac__call_fn(ctx, op, fn, user, copies, noutputs, outs, true);
        if (st == JAC_OK)
            st = jac__program_compile(ctx, op, noutputs, outs, flags, program);
        jac__section_close(ctx);
    }
    jac_set_grad_enabled(ctx, was);
    jac_scope_end(ctx, mark, NULL, 0);
    jac__free(ctx, copies, bytes);
    return st;
}

jac_status jac_program_record(jac_ctx *ctx, jac_fn fn, void *user,
                              size_t ninputs, jac_tensor *const *inputs,
                              size_t nparams, jac_tensor *const *params,
                              size_t noutputs, unsigned flags,
                              jac_program **program)
{
    if (ctx == NULL)
        return JAC_ERR_NULL_ARG;
    JAC__HELD(ctx, jac_status, JAC_ERR_STATE,
              record_unguarded(ctx, fn, user, ninputs, inputs, nparams, params,
                               noutputs, flags, program));
}

/* ------------------------------------------------------------------------ */
/* Compilation                                                              */
/* ------------------------------------------------------------------------ */

/* Which form on doubles an op has: a function (functions.h) or an
 * arithmetic op (arith.h); 0 for none. */
enum { FORM_NONE, FORM_FUNCTION, FORM_ARITH };

static int scalar_form(int op)
{
    switch (op) {
#define FUNCTION_FORM(e, rule, value, derivative, mask) case JAC__OP_##e:
        JAC__FUNCTIONS(FUNCTION_FORM)
#undef FUNCTION_FORM
        return FORM_FUNCTION;
#define ARITH_FORM(e, rule, value, da, db) case JAC__OP_##e:
        JAC__ARITH(ARITH_FORM)
#undef ARITH_FORM
        return FORM_ARITH;
    default:
        return FORM_NONE;
    }
}

enum { KIND_ARG, KIND_CONST, KIND_OP };

/* What the compilation knows of a tensor (found through its stamp and
 * plan_slot): kept small, as there is one per recorded op. */
typedef struct tinfo {
    uint64_t off;
    uint32_t last_instr; /* the last instruction that reads it */
    uint8_t kind;
    uint8_t last_opnd; /* which of its operands */
    bool diff;         /* depends on an input */
    bool used;         /* some differentiated operand reads it */
    bool output;       /* a program output */
    bool konst;        /* off is in prog->consts */
    uint32_t uses;     /* reads by differentiated operands */
    int32_t top;       /* the tensor instruction that makes it, or -1 */
} tinfo;

typedef struct compiler {
    jac_ctx *ctx;
    const char *op;
    const struct jac__section *sec;
    uint64_t id;
    tinfo *ti;
    size_t nti, cap_ti;
    jac_tensor **consts; /* constant tensors, in value order */
    size_t nconsts, cap_consts;
    size_t *nodes; /* active nodes, in tape order */
    size_t nnodes, cap_nodes;
    unsigned char *need; /* per tape node */
} compiler;

static jac_status oom(compiler *c)
{
    return jac__error(c->ctx, JAC_ERR_NO_MEMORY,
                      "%s: out of memory compiling the recording", c->op);
}

static bool stamped(const compiler *c, const jac_tensor *t)
{
    return t->stamp == c->id;
}

static tinfo *info(compiler *c, const jac_tensor *t)
{
    return &c->ti[t->plan_slot];
}

/* Registers t with kind; NULL when out of memory or past the index
 * range. */
static tinfo *add_info(compiler *c, jac_tensor *t, uint8_t kind, bool diff)
{
    if (c->nti >= INT32_MAX || jac__grow(c->ctx, (void **)&c->ti, &c->cap_ti,
                                         c->nti + 1, sizeof(tinfo)) != JAC_OK)
        return NULL;
    t->stamp = c->id;
    t->plan_slot = (int32_t)c->nti;
    tinfo *ti = &c->ti[c->nti++];
    memset(ti, 0, sizeof *ti);
    ti->kind = kind;
    ti->diff = diff;
    ti->top = -1;
    return ti;
}

static const char *arg_name(const compiler *c, size_t i, size_t *index)
{
    *index = i < c->sec->ninputs ? i : i - c->sec->ninputs;
    return i < c->sec->ninputs ? "input" : "param";
}

/* A tensor the program reads as a constant: refused when it may depend on
 * an input after all. */
static jac_status add_constant(compiler *c, jac_tensor *t)
{
    if (t->magic != JAC__TENSOR_MAGIC)
        return jac__error(c->ctx, JAC_ERR_CONTEXT,
                          "%s: a tensor the outputs depend on was released "
                          "before the recording ended",
                          c->op);
    if (t->untracked && t->seq >= c->sec->start_seq) {
        char s[JAC__SHAPE_STR_MAX];
        return jac__error(
            c->ctx, JAC_ERR_STATE,
            "%s: a tensor of shape %s that the outputs depend on was computed "
            "from the values of the inputs without a history a replay could "
            "follow: with recording off, by jac_detach or jac_tensor_copy, by "
            "a derivative pass or driver without JAC_CREATE_GRAPH",
            c->op, jac__shape_str(s, sizeof s, t->ndim, t->shape));
    }
    if (t->assigned_seq > c->sec->start_seq) {
        char s[JAC__SHAPE_STR_MAX];
        return jac__error(c->ctx, JAC_ERR_STATE,
                          "%s: the values of a tensor of shape %s that the "
                          "outputs depend on were replaced in place during "
                          "the recording",
                          c->op,
                          jac__shape_str(s, sizeof s, t->ndim, t->shape));
    }
    if (add_info(c, t, KIND_CONST, false) == NULL ||
        jac__grow(c->ctx, (void **)&c->consts, &c->cap_consts, c->nconsts + 1,
                  sizeof(jac_tensor *)) != JAC_OK)
        return oom(c);
    c->consts[c->nconsts++] = t;
    return JAC_OK;
}

/* Marks the nodes the outputs need, newest first, stopping at the
 * arguments. */
static jac_status mark_needed(compiler *c, size_t noutputs,
                              jac_tensor *const *outputs)
{
    jac_ctx *ctx = c->ctx;
    c->need = jac__alloc(ctx, ctx->nnodes + 1);
    if (c->need == NULL)
        return oom(c);
    memset(c->need, 0, ctx->nnodes + 1);
    for (size_t k = 0; k < noutputs; k++)
        if (!stamped(c, outputs[k]) && outputs[k]->node >= 0 &&
            (size_t)outputs[k]->node < ctx->nnodes)
            c->need[outputs[k]->node] = 1;
    for (size_t i = ctx->nnodes; i-- > 0;) {
        if (!c->need[i])
            continue;
        const jac__node *n = jac__node_at(ctx, (int64_t)i);
        for (int j = 0; j < n->nin; j++) {
            const jac_tensor *t = n->in[j];
            if (t->magic != JAC__TENSOR_MAGIC)
                return jac__error(ctx, JAC_ERR_CONTEXT,
                                  "%s: input %d of %s (tape index %zu) was "
                                  "released before the recording ended",
                                  c->op, j, jac__ops[n->op].name, i);
            if (!stamped(c, t) && t->node >= 0 && (size_t)t->node < i)
                c->need[t->node] = 1;
        }
    }
    return JAC_OK;
}

/* Refusals of an active node. */
static jac_status check_node(compiler *c, const jac__node *n, size_t i,
                             unsigned flags)
{
    const char *name = jac__ops[n->op].name;
    if (i < c->sec->start)
        return jac__error(c->ctx, JAC_ERR_STATE,
                          "%s: %s (tape index %zu) was computed from the "
                          "inputs before jac_program_begin; compute it "
                          "inside the recording",
                          c->op, name, i);
    if (n->released)
        return jac__error(c->ctx, JAC_ERR_RELEASED,
                          "%s: the graph through %s (tape index %zu) was "
                          "released by a backward pass without "
                          "JAC_RETAIN_GRAPH",
                          c->op, name, i);
    if (n->read && !(flags & JAC_PROGRAM_READS_OK))
        return jac__error(
            c->ctx, JAC_ERR_STATE,
            "%s: the recording read the values of %s (tape index %zu), "
            "which depend on the inputs; a replay cannot follow a decision "
            "taken on them: write the branch with the comparison ops and "
            "jac_where (jac_where(ctx, jac_gt(ctx, x, c), a, b)), or pass "
            "JAC_PROGRAM_READS_OK if the reads decide nothing",
            c->op, name, i);
    if (n->out->magic != JAC__TENSOR_MAGIC)
        return jac__error(c->ctx, JAC_ERR_CONTEXT,
                          "%s: the output of %s (tape index %zu) was released "
                          "before the recording ended",
                          c->op, name, i);
    return JAC_OK;
}

/* Finds the active nodes (those that read an argument or an active node's
 * output) in tape order, and the constants they read. */
static jac_status find_active(compiler *c, unsigned flags)
{
    jac_ctx *ctx = c->ctx;
    for (size_t i = 0; i < ctx->nnodes; i++) {
        if (!c->need[i])
            continue;
        jac__node *n = jac__node_at(ctx, (int64_t)i);
        bool active = false, diff = false;
        for (int j = 0; j < n->nin; j++) {
            const jac_tensor *t = n->in[j];
            if (stamped(c, t) && info(c, t)->kind != KIND_CONST) {
                active = true;
                diff = diff || info(c, t)->diff;
            }
        }
        if (!active || stamped(c, n->out))
            continue;
        jac_status st = check_node(c, n, i, flags);
        if (st != JAC_OK)
            return st;
        for (int j = 0; j < n->nin && st == JAC_OK; j++)
            if (!stamped(c, n->in[j]))
                st = add_constant(c, n->in[j]);
        if (st != JAC_OK)
            return st;
        if (add_info(c, n->out, KIND_OP, diff) == NULL ||
            jac__grow(ctx, (void **)&c->nodes, &c->cap_nodes, c->nnodes + 1,
                      sizeof(size_t)) != JAC_OK)
            return oom(c);
        c->nodes[c->nnodes++] = i;
    }
    return JAC_OK;
}

static void set_pval(jac__pval *v, const jac_tensor *t, uint64_t off)
{
    v->off = off;
    v->konst = false;
    v->numel = t->numel;
    v->ndim = t->ndim;
    memset(v->shape, 0, sizeof v->shape);
    memcpy(v->shape, t->shape, (size_t)t->ndim * sizeof(int64_t));
}

/* Whether node n becomes a scalar instruction. */
static bool is_scalar(const compiler *c, const jac__node *n)
{
    int form = scalar_form(n->op);
    if (form == FORM_NONE || n->out->numel != 1 ||
        n->nin != (form == FORM_ARITH ? 2 : 1))
        return false;
    for (int j = 0; j < n->nin; j++) {
        const jac_tensor *t = n->in[j];
        if (t->numel != 1 || c->ti[t->plan_slot].off > UINT32_MAX)
            return false;
    }
    return true;
}

/* The parameters of a function instruction, shared with the previous one
 * of the same op when equal bit for bit: a clamp to [0, -0] returns -0
 * where one to [0, 0] returns 0, so == would share the wrong ones. */
static jac_status fparams_index(compiler *c, jac_program *prog,
                                const jac__node *n, size_t *last,
                                uint32_t *index)
{
    jac__fn_params q = jac__fn_params_of(n);
    size_t k = last[n->op];
    if (k != SIZE_MAX && jac__same_bits(prog->fparams[k].c0, q.c0) &&
        jac__same_bits(prog->fparams[k].c1, q.c1) &&
        prog->fparams[k].divide == q.divide) {
        *index = (uint32_t)k;
        return JAC_OK;
    }
    if (prog->nfparams >= UINT32_MAX)
        return oom(c);
    if (prog->nfparams == prog->cap_fparams) {
        size_t ncap = prog->cap_fparams ? 2 * prog->cap_fparams : 16;
        jac__fn_params *p = jac__prog_alloc(prog, ncap * sizeof *p);
        if (p == NULL)
            return oom(c);
        if (prog->nfparams)
            memcpy(p, prog->fparams, prog->nfparams * sizeof *p);
        jac__prog_free(prog, prog->fparams, prog->cap_fparams * sizeof *p);
        prog->fparams = p;
        prog->cap_fparams = ncap;
    }
    prog->fparams[prog->nfparams] = q;
    last[n->op] = prog->nfparams;
    *index = (uint32_t)prog->nfparams++;
    return JAC_OK;
}

/* Counts what the instructions need, then allocates the program's
 * arrays. */
static jac_status alloc_code(compiler *c, jac_program *prog)
{
    size_t ntops = 0, ntins = 0;
    for (size_t k = 0; k < c->nnodes; k++) {
        const jac__node *n = jac__node_at(c->ctx, (int64_t)c->nodes[k]);
        if (!is_scalar(c, n)) {
            ntops++;
            ntins += (size_t)n->nin;
        }
    }
    prog->ncode = c->nnodes;
    prog->ntops = ntops;
    prog->ntins = ntins;
    prog->code = jac__prog_alloc(prog, c->nnodes * sizeof(jac__instr));
    prog->tops = jac__prog_alloc(prog, ntops * sizeof(jac__top));
    prog->tins = jac__prog_alloc(prog, ntins * sizeof(jac__tin));
    if (prog->code == NULL || prog->tops == NULL || prog->tins == NULL)
        return oom(c);
    return JAC_OK;
}

/* Writes the instructions; operands' write flags come after. */
static jac_status emit(compiler *c, jac_program *prog)
{
    size_t last[JAC__OP_COUNT], itop = 0, itin = 0;
    for (size_t k = 0; k < JAC__OP_COUNT; k++)
        last[k] = SIZE_MAX;
    jac_status st = alloc_code(c, prog);
    for (size_t k = 0; k < c->nnodes && st == JAC_OK; k++) {
        const jac__node *n = jac__node_at(c->ctx, (int64_t)c->nodes[k]);
        const tinfo *out = info(c, n->out);
        jac__instr *in = &prog->code[k];
        in->flags = out->diff ? JAC__I_DIFF_OUT : 0;
        if (is_scalar(c, n)) {
            const tinfo *a = info(c, n->in[0]);
            in->op = (uint16_t)n->op;
            in->a = (uint32_t)a->off;
            in->flags |= a->diff ? JAC__I_DIFF_A : 0;
            if (n->nin == 2) {
                const tinfo *b = info(c, n->in[1]);
                in->b = (uint32_t)b->off;
                in->flags |= b->diff ? JAC__I_DIFF_B : 0;
            } else {
                st = fparams_index(c, prog, n, last, &in->b);
                prog->npartials += jac__fn_keeps_partial(n->op);
            }
            continue;
        }
        jac__top *top = &prog->tops[itop];
        memset(top, 0, sizeof *top);
        in->op = JAC__TENSOR_INSTR;
        in->a = (uint32_t)itop++;
        in->b = 0; /* unused: every byte of the code is set */
        top->op = n->op;
        top->nin = n->nin;
        top->p = n->p;
        top->diff_out = out->diff;
        top->first = itin;
        top->hint = -1;
        info(c, n->out)->top = (int32_t)(itop - 1);
        set_pval(&top->out, n->out, out->off);
        for (int j = 0; j < n->nin; j++) {
            const jac_tensor *t = n->in[j];
            jac__tin *ti = &prog->tins[itin++];
            set_pval(&ti->v, t, info(c, t)->off);
            ti->v.konst = info(c, t)->konst;
            ti->diff = info(c, t)->diff;
            ti->write = false;
            if (ti->diff) /* cotangents only for differentiated inputs */
                top->scratch += t->numel;
            prog->work_per_seed += (double)t->numel;
        }
        if (top->scratch > prog->scratch)
            prog->scratch = top->scratch;
    }
    return st;
}

/* Operand j of instruction k reads t: the last such read of a
 * differentiated value, per value, is its first contribution in reverse
 * order, which writes the adjoint. Reads by one instruction of the same
 * value keep the first operand, as the backward adds the operands'
 * contributions in order. */
static void note_use(compiler *c, const jac_tensor *t, size_t k, int j)
{
    tinfo *ti = info(c, t);
    if (ti->diff)
        ti->uses++;
    if (!ti->diff || (ti->used && ti->last_instr == k))
        return;
    ti->used = true;
    ti->last_instr = (uint32_t)k;
    ti->last_opnd = (uint8_t)j;
}

static void set_writes(compiler *c, jac_program *prog)
{
    for (size_t k = 0; k < c->nnodes; k++) {
        const jac__node *n = jac__node_at(c->ctx, (int64_t)c->nodes[k]);
        for (int j = 0; j < n->nin; j++)
            note_use(c, n->in[j], k, j);
    }
    for (size_t k = 0; k < c->nnodes; k++) {
        const jac__node *n = jac__node_at(c->ctx, (int64_t)c->nodes[k]);
        jac__instr *in = &prog->code[k];
        for (int j = 0; j < n->nin; j++) {
            const tinfo *ti = info(c, n->in[j]);
            if (!ti->used || ti->output || ti->last_instr != k ||
                ti->last_opnd != j)
                continue;
            if (in->op != JAC__TENSOR_INSTR)
                in->flags |= j == 0 ? JAC__I_WRITE_A : JAC__I_WRITE_B;
            else
                prog->tins[prog->tops[in->a].first + (size_t)j].write = true;
        }
    }
}

/* Which seeds reach which tensor instructions unchanged (jac__top.hint):
 * from an output that nothing else reads, back through the inputs that an
 * op passes one-hot cotangents to (its table row says) when only that op
 * reads them. */
static void set_hints(compiler *c, jac_program *prog, size_t noutputs,
                      jac_tensor *const *outputs)
{
    int64_t start = 0;
    for (size_t k = 0; k < noutputs; k++) {
        prog->out_start[k] = start;
        start += outputs[k]->numel;
        const tinfo *ti = info(c, outputs[k]);
        if (prog->out_seed[k] == JAC__SEED_WRITE && ti->uses == 0 &&
            ti->top >= 0 && k <= INT32_MAX)
            prog->tops[ti->top].hint = (int)k;
    }
    for (size_t k = c->nnodes; k-- > 0;) {
        const jac__node *n = jac__node_at(c->ctx, (int64_t)c->nodes[k]);
        const jac__instr *in = &prog->code[k];
        if (in->op != JAC__TENSOR_INSTR || prog->tops[in->a].hint < 0)
            continue;
        for (int j = 0; j < n->nin; j++) {
            const tinfo *ti = info(c, n->in[j]);
            if ((jac__ops[n->op].onehot_inputs & (1u << j)) && ti->diff &&
                ti->uses == 1 && !ti->output && ti->top >= 0 &&
                n->in[j]->numel == n->out->numel)
                prog->tops[ti->top].hint = prog->tops[in->a].hint;
        }
    }
}

/* Offsets: parameters and one-element constants, then the inputs and the
 * active nodes' outputs; larger constants go to prog->consts. */
static jac_status place_values(compiler *c, jac_program *prog,
                               jac_tensor *const *args)
{
    const struct jac__section *sec = c->sec;
    uint64_t off = 0, koff = 0;
    for (size_t i = sec->ninputs; i < sec->nargs; i++) {
        info(c, args[i])->off = off;
        set_pval(&prog->args[i], args[i], off);
        off += (uint64_t)args[i]->numel;
    }
    for (size_t i = 0; i < c->nconsts; i++) {
        const jac_tensor *t = c->consts[i];
        if (t->numel == 1) {
            info(c, t)->off = off++;
        } else {
            info(c, t)->off = koff;
            info(c, t)->konst = true;
            koff += (uint64_t)t->numel;
        }
    }
    prog->diff_off = off;
    for (size_t i = 0; i < sec->ninputs; i++) {
        info(c, args[i])->off = off;
        set_pval(&prog->args[i], args[i], off);
        off += (uint64_t)args[i]->numel;
    }
    prog->code_off = off;
    for (size_t k = 0; k < c->nnodes; k++) {
        const jac_tensor *t = jac__node_at(c->ctx, (int64_t)c->nodes[k])->out;
        info(c, t)->off = off;
        off += (uint64_t)t->numel;
    }
    prog->nvalues = off;
    prog->nconst = koff;
    prog->consts = jac__prog_alloc(prog, koff * sizeof(double));
    prog->v0 = jac__prog_alloc(prog, prog->diff_off * sizeof(double));
    if (prog->consts == NULL || prog->v0 == NULL)
        return oom(c);
    memset(prog->v0, 0, prog->diff_off * sizeof(double));
    for (size_t i = 0; i < c->nconsts; i++) {
        const jac_tensor *t = c->consts[i];
        const tinfo *ti = info(c, t);
        memcpy(ti->konst ? prog->consts + ti->off : prog->v0 + ti->off, t->data,
               (size_t)t->numel * sizeof(double));
    }
    return JAC_OK;
}

static jac_status check_args(compiler *c, unsigned flags)
{
    const struct jac__section *sec = c->sec;
    for (size_t i = 0; i < sec->nargs; i++) {
        const jac_tensor *t = sec->args[i];
        size_t index;
        const char *what = arg_name(c, i, &index);
        if (t->magic != JAC__TENSOR_MAGIC)
            return jac__error(c->ctx, JAC_ERR_CONTEXT,
                              "%s: %s %zu was released during the recording",
                              c->op, what, index);
        if (t->assigned_seq > sec->start_seq)
            return jac__error(c->ctx, JAC_ERR_STATE,
                              "%s: the values of %s %zu were replaced in "
                              "place during the recording",
                              c->op, what, index);
    }
    if (sec->arg_read && !(flags & JAC_PROGRAM_READS_OK)) {
        size_t index;
        const char *what = arg_name(c, sec->read_arg, &index);
        return jac__error(
            c->ctx, JAC_ERR_STATE,
            "%s: the recording read the values of %s %zu; a replay cannot "
            "follow a decision taken on them: write the branch with the "
            "comparison ops and jac_where (jac_where(ctx, jac_gt(ctx, x, c), "
            "a, b)), or pass JAC_PROGRAM_READS_OK if the reads decide nothing",
            c->op, what, index);
    }
    if (c->ctx->nnodes < sec->start)
        return jac__error(c->ctx, JAC_ERR_STATE,
                          "%s: a scope ended during the recording released "
                          "ops recorded before it began",
                          c->op);
    return JAC_OK;
}

/* A read of any value computed from the arguments during the recording
 * may have decided which ops ran, whether or not the outputs need it:
 * the nodes that depend on the arguments are found anew over the whole
 * section (c->need is free again). */
static jac_status check_reads(compiler *c, unsigned flags)
{
    jac_ctx *ctx = c->ctx;
    if (flags & JAC_PROGRAM_READS_OK)
        return JAC_OK;
    unsigned char *dep = c->need;
    memset(dep, 0, ctx->nnodes + 1);
    for (size_t i = c->sec->start; i < ctx->nnodes; i++) {
        const jac__node *n = jac__node_at(ctx, (int64_t)i);
        for (int j = 0; j < n->nin && !dep[i]; j++) {
            const jac_tensor *t = n->in[j];
            if (t->magic != JAC__TENSOR_MAGIC)
                continue;
            bool arg = stamped(c, t) && info(c, t)->kind == KIND_ARG;
            bool from = t->node >= (int64_t)c->sec->start &&
                        (size_t)t->node < i && dep[t->node];
            dep[i] = arg || from;
        }
        if (dep[i] && n->read)
            return jac__error(
                ctx, JAC_ERR_STATE,
                "%s: the recording read the values of %s (tape index %zu), "
                "which depend on the inputs; a replay cannot follow a "
                "decision taken on them: write the branch with the "
                "comparison ops and jac_where (jac_where(ctx, jac_gt(ctx, x, "
                "c), a, b)), or pass JAC_PROGRAM_READS_OK if the reads "
                "decide nothing",
                c->op, jac__ops[n->op].name, i);
    }
    return JAC_OK;
}

static jac_status compile(compiler *c, jac_program *prog, size_t noutputs,
                          jac_tensor *const *outputs, unsigned flags)
{
    const struct jac__section *sec = c->sec;
    jac_status st = check_args(c, flags);
    for (size_t i = 0; i < sec->nargs && st == JAC_OK; i++)
        if (add_info(c, sec->args[i], KIND_ARG, i < sec->ninputs) == NULL)
            st = oom(c);
    if (st == JAC_OK)
        st = mark_needed(c, noutputs, outputs);
    if (st == JAC_OK)
        st = find_active(c, flags);
    if (st == JAC_OK)
        st = check_reads(c, flags);
    for (size_t k = 0; k < noutputs && st == JAC_OK; k++)
        if (!stamped(c, outputs[k]))
            st = add_constant(c, outputs[k]);
    if (st != JAC_OK)
        return st;
    for (size_t k = 0; k < noutputs; k++)
        info(c, outputs[k])->output = true;
    st = place_values(c, prog, sec->args);
    if (st == JAC_OK)
        st = emit(c, prog);
    if (st != JAC_OK)
        return st;
    set_writes(c, prog);
    prog->diagonal = sec->ninputs == 1 && noutputs == 1 &&
                     info(c, outputs[0])->diff &&
                     outputs[0]->numel == sec->args[0]->numel;
    for (size_t k = 0; k < prog->ntops && prog->diagonal; k++) {
        const jac__top *top = &prog->tops[k];
        prog->diagonal = jac__op_elementwise(top->op);
        for (int j = 0; j < top->nin && prog->diagonal; j++) {
            const jac__tin *ti = &prog->tins[top->first + (size_t)j];
            prog->diagonal = !ti->diff || ti->v.numel == top->out.numel;
        }
    }
    int64_t widest = 0;
    for (size_t i = 0; i < sec->nargs; i++) {
        prog->nx0 += (uint64_t)sec->args[i]->numel;
        if (sec->args[i]->numel > widest)
            widest = sec->args[i]->numel;
    }
    for (size_t k = 0; k < noutputs; k++)
        if (outputs[k]->numel > widest)
            widest = outputs[k]->numel;
    prog->nzeros = (uint64_t)widest;
    prog->x0 = jac__prog_alloc(prog, prog->nx0 * sizeof(double));
    prog->zeros = jac__prog_alloc(prog, prog->nzeros * sizeof(double));
    if (prog->x0 == NULL || prog->zeros == NULL)
        return oom(c);
    memset(prog->zeros, 0, prog->nzeros * sizeof(double));
    for (size_t i = 0, at = 0; i < sec->nargs; i++) {
        memcpy(prog->x0 + at, sec->args[i]->data,
               (size_t)sec->args[i]->numel * sizeof(double));
        at += (size_t)sec->args[i]->numel;
    }
    for (size_t k = 0; k < noutputs; k++) {
        set_pval(&prog->outs[k], outputs[k], info(c, outputs[k])->off);
        prog->outs[k].konst = info(c, outputs[k])->konst;
    }
    for (size_t i = 0; i < sec->ninputs; i++) {
        const tinfo *ti = info(c, sec->args[i]);
        prog->reached[i] = ti->used || ti->output;
    }
    for (size_t k = 0; k < noutputs; k++) {
        const tinfo *ti = info(c, outputs[k]);
        prog->out_seed[k] = ti->diff ? JAC__SEED_WRITE : JAC__SEED_NONE;
        for (size_t j = 0; j < k && ti->diff; j++)
            if (outputs[j] == outputs[k])
                prog->out_seed[k] = JAC__SEED_ADD;
    }
    set_hints(c, prog, noutputs, outputs);
    return JAC_OK;
}

static jac_program *program_new(jac_ctx *ctx, const jac_allocator *hooks,
                                size_t nargs, size_t noutputs)
{
    jac_program *prog = hooks->alloc(sizeof *prog, hooks->user);
    if (prog == NULL)
        return NULL;
    memset(prog, 0, sizeof *prog);
    prog->alloc = *hooks;
    atomic_init(&prog->bytes, sizeof *prog);
    atomic_init(&prog->kept, NULL);
    atomic_init(&prog->kept_making, 0);
    prog->threads = ctx->threads;
    prog->memory_budget = ctx->memory_budget;
    for (size_t i = 0; i < JAC__WS_POOL; i++)
        atomic_init(&prog->pool[i], NULL);
    for (size_t i = 0; i < JAC__DERIVED_COUNT; i++)
        atomic_init(&prog->derived[i], NULL);
    prog->args = jac__prog_alloc(prog, nargs * sizeof(jac__pval));
    prog->outs = jac__prog_alloc(prog, noutputs * sizeof(jac__pval));
    prog->reached = jac__prog_alloc(prog, nargs * sizeof(bool));
    prog->out_seed = jac__prog_alloc(prog, noutputs);
    prog->out_start = jac__prog_alloc(prog, noutputs * sizeof(int64_t));
    if (prog->args == NULL || prog->outs == NULL || prog->reached == NULL ||
        prog->out_seed == NULL || prog->out_start == NULL) {
        jac_program_free(prog);
        return NULL;
    }
    memset(prog->reached, 0, nargs * sizeof(bool));
    return prog;
}

/* As jac__program_compile, the program's memory from hooks. */
static jac_status compile_with(jac_ctx *ctx, const char *op, size_t noutputs,
                               jac_tensor *const *outputs, unsigned flags,
                               const jac_allocator *hooks, jac_program **result)
{
    if (noutputs == 0 || outputs == NULL)
        return jac__error(ctx, JAC_ERR_NULL_ARG, "%s: no outputs", op);
    for (size_t k = 0; k < noutputs; k++)
        if (jac__check_named(ctx, op, outputs[k], "output", k) != JAC_OK)
            return ctx->status;
    compiler c = {
        .ctx = ctx, .op = op, .sec = &ctx->section, .id = ctx->next_plan_id++};
    jac_program *prog = program_new(ctx, hooks, c.sec->nargs, noutputs);
    if (prog == NULL)
        return oom(&c);
    prog->ninputs = c.sec->ninputs;
    prog->nparams = c.sec->nargs - c.sec->ninputs;
    prog->noutputs = noutputs;
    jac_status st = compile(&c, prog, noutputs, outputs, flags);
    jac__free(ctx, c.ti, c.cap_ti * sizeof(tinfo));
    jac__free(ctx, c.consts, c.cap_consts * sizeof(jac_tensor *));
    jac__free(ctx, c.nodes, c.cap_nodes * sizeof(size_t));
    jac__free(ctx, c.need, ctx->nnodes + 1);
    if (st != JAC_OK) {
        jac_program_free(prog);
        return st;
    }
    *result = prog;
    return JAC_OK;
}

jac_status jac__program_compile(jac_ctx *ctx, const char *op, size_t noutputs,
                                jac_tensor *const *outputs, unsigned flags,
                                jac_program **result)
{
    return compile_with(ctx, op, noutputs, outputs, flags, &ctx->alloc, result);
}

jac_status jac__program_compile_tape(jac_ctx *ctx, const char *op,
                                     size_t noutputs,
                                     jac_tensor *const *outputs, size_t ninputs,
                                     jac_tensor *const *inputs,
                                     const jac_allocator *hooks,
                                     jac_program **result)
{
    for (size_t i = 0; inputs != NULL && i < ninputs; i++)
        if (jac__check_named(ctx, op, inputs[i], "input", i) != JAC_OK)
            return ctx->status;
        else if (!inputs[i]->requires_grad)
            return jac__error(ctx, JAC_ERR_NO_GRAD,
                              "%s: input %zu does not require gradients", op,
                              i);
    jac_status st = begin_unguarded(ctx, ninputs, inputs, 0, NULL, ctx->depth);
    if (st != JAC_OK)
        return st;
    /* The whole tape, as it was recorded: no op before a begin to refuse,
     * and the dynamic recording's constants and reads are what they were
     * at this point, which is the only point this program describes. */
    ctx->section.open = false;
    ctx->section.start = 0;
    ctx->section.start_seq = UINT64_MAX;
    st = compile_with(ctx, op, noutputs, outputs, JAC_PROGRAM_READS_OK,
                      hooks != NULL ? hooks : &ctx->alloc, result);
    jac__section_close(ctx);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Freeing and introspection                                                */
/* ------------------------------------------------------------------------ */

void jac_program_free(jac_program *prog)
{
    if (prog == NULL)
        return;
    jac__program_kept_free(prog);
    for (size_t i = 0; i < JAC__WS_POOL; i++)
        jac__ws_free(atomic_exchange(&prog->pool[i], NULL));
    for (size_t i = 0; i < JAC__DERIVED_COUNT; i++)
        jac_program_free(atomic_exchange(&prog->derived[i], NULL));
    size_t nargs = prog->ninputs + prog->nparams;
    jac__prog_free(prog, prog->args, nargs * sizeof(jac__pval));
    jac__prog_free(prog, prog->outs, prog->noutputs * sizeof(jac__pval));
    jac__prog_free(prog, prog->reached, nargs * sizeof(bool));
    jac__prog_free(prog, prog->out_seed, prog->noutputs);
    jac__prog_free(prog, prog->out_start, prog->noutputs * sizeof(int64_t));
    jac__prog_free(prog, prog->consts, prog->nconst * sizeof(double));
    jac__prog_free(prog, prog->v0, prog->diff_off * sizeof(double));
    jac__prog_free(prog, prog->x0, prog->nx0 * sizeof(double));
    jac__prog_free(prog, prog->zeros, prog->nzeros * sizeof(double));
    jac__prog_free(prog, prog->code, prog->ncode * sizeof(jac__instr));
    jac__prog_free(prog, prog->tops, prog->ntops * sizeof(jac__top));
    jac__prog_free(prog, prog->tins, prog->ntins * sizeof(jac__tin));
    jac__prog_free(prog, prog->fparams,
                   prog->cap_fparams * sizeof(jac__fn_params));
    jac_allocator a = prog->alloc;
    a.free(prog, a.user);
}
