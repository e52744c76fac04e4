/*
 * Derived programs: a program's ops rebuilt as tensor ops on a private
 * context, differentiated there with JAC_CREATE_GRAPH, and the recorded
 * gradient compiled into a program of its own.
 *
 * SPDX-License-Identifier: MIT
 */
#include "program/program.h"

#include <stdio.h>

void jac__shape_only(jac_tensor *t, const jac__pval *v)
{
    memset(t, 0, sizeof *t);
    t->magic = JAC__TENSOR_MAGIC;
    t->ndim = v->ndim;
    t->numel = v->numel;
    memcpy(t->shape, v->shape, sizeof t->shape);
    t->node = -1;
}

/* t as the recorded shape of v (a one-element value may come back from a
 * scalar instruction with another rank). */
static jac_tensor *as_recorded(jac_ctx *ctx, jac_tensor *t, const jac__pval *v)
{
    if (t == NULL)
        return NULL;
    if (t->ndim == v->ndim &&
        memcmp(t->shape, v->shape, (size_t)v->ndim * sizeof(int64_t)) == 0)
        return t;
    return jac_reshape(ctx, t, v->ndim, v->shape);
}

typedef struct rebuild {
    jac_program *prog;
    jac_ctx *ctx;
    jac_tensor **at; /* the tensor starting at each value offset */
    jac_tensor **konst;
    uint64_t *konst_off;
    size_t nkonst;
} rebuild;

/* The tensor of a value: an argument or instruction output, a one-element
 * constant, or a larger constant (made once each). */
static jac_tensor *value_tensor(rebuild *r, const jac__pval *v)
{
    /* An empty value holds nothing, and may share its offset with the
     * value after it. */
    if (v->numel == 0)
        return jac_zeros(r->ctx, v->ndim, v->shape);
    if (v->konst) {
        for (size_t k = 0; k < r->nkonst; k++)
            if (r->konst_off[k] == v->off)
                return r->konst[k];
        jac_tensor *t =
            jac_tensor_new(r->ctx, v->ndim, v->shape, r->prog->consts + v->off);
        r->konst[r->nkonst] = t;
        r->konst_off[r->nkonst++] = v->off;
        return t;
    }
    if (r->at[v->off] == NULL)
        r->at[v->off] = jac_scalar(r->ctx, r->prog->v0[v->off]);
    return as_recorded(r->ctx, r->at[v->off], v);
}

static jac_tensor *scalar_at(rebuild *r, uint32_t off)
{
    if (r->at[off] == NULL)
        r->at[off] = jac_scalar(r->ctx, r->prog->v0[off]);
    return r->at[off];
}

static jac_status run(rebuild *r, jac_tensor *const *args, jac_tensor **outputs)
{
    jac_program *prog = r->prog;
    jac_ctx *ctx = r->ctx;
    for (size_t i = 0; i < prog->ninputs + prog->nparams; i++)
        if (prog->args[i].numel > 0)
            r->at[prog->args[i].off] = args[i];
    uint64_t cur = prog->code_off;
    for (size_t k = 0; k < prog->ncode; k++) {
        jac__instr in = prog->code[k];
        jac__node n;
        memset(&n, 0, sizeof n);
        jac_tensor out, *ins[2], *y;
        if (in.op == JAC__TENSOR_INSTR) {
            const jac__top *top = &prog->tops[in.a];
            jac_tensor *tins[64];
            if (top->nin > 64)
                return jac__error(ctx, JAC_ERR_VALUE,
                                  "program_gradient: %s with %d inputs",
                                  jac__ops[top->op].name, top->nin);
            for (int j = 0; j < top->nin; j++)
                if ((tins[j] = value_tensor(
                         r, &prog->tins[top->first + (size_t)j].v)) == NULL)
                    return ctx->status;
            n.op = top->op;
            n.nin = top->nin;
            n.p = top->p;
            n.in = tins;
            jac__shape_only(&out, &top->out);
            n.out = &out;
            y = jac__ops[top->op].apply(ctx, &n, tins);
            cur = top->out.off;
        } else {
            bool arith = jac__ops[in.op].arity == 2;
            ins[0] = scalar_at(r, in.a);
            ins[1] = arith ? scalar_at(r, in.b) : NULL;
            if (ins[0] == NULL || (arith && ins[1] == NULL))
                return ctx->status;
            n.op = in.op;
            n.nin = arith ? 2 : 1;
            if (!arith) {
                const jac__fn_params *q = &prog->fparams[in.b];
                n.p.affine.alpha = q->c0;
                n.p.affine.beta = q->c1;
                n.p.affine.divide = q->divide;
            }
            n.in = ins;
            jac__pval pv = {.numel = 1};
            jac__shape_only(&out, &pv);
            n.out = &out;
            y = jac__ops[in.op].apply(ctx, &n, ins);
        }
        if (y == NULL)
            return ctx->status;
        if (y->numel > 0)
            r->at[cur] = y;
        cur += (uint64_t)y->numel;
    }
    for (size_t k = 0; k < prog->noutputs; k++)
        if ((outputs[k] = value_tensor(r, &prog->outs[k])) == NULL)
            return ctx->status;
    return JAC_OK;
}

jac_status jac__program_rebuild(jac_program *prog, jac_ctx *ctx,
                                jac_tensor *const *args, jac_tensor **outputs)
{
    rebuild r = {.prog = prog, .ctx = ctx};
    size_t nk = prog->ntins + prog->noutputs;
    /* One more: an empty last value starts at nvalues. */
    size_t at_bytes = (prog->nvalues + 1) * sizeof(jac_tensor *);
    r.at = jac__alloc(ctx, at_bytes);
    r.konst = jac__alloc(ctx, nk * sizeof(jac_tensor *) + 1);
    r.konst_off = jac__alloc(ctx, nk * sizeof(uint64_t) + 1);
    jac_status st = JAC_ERR_NO_MEMORY;
    if (r.at != NULL && r.konst != NULL && r.konst_off != NULL) {
        memset(r.at, 0, at_bytes);
        st = run(&r, args, outputs);
    } else {
        jac__error(ctx, st, "program_gradient: out of memory");
    }
    jac__free(ctx, r.at, at_bytes);
    jac__free(ctx, r.konst, nk * sizeof(jac_tensor *) + 1);
    jac__free(ctx, r.konst_off, nk * sizeof(uint64_t) + 1);
    return st;
}

/* The tensors of a derived program's arguments, at the recording's
 * values: the inputs, the seeds (as inputs or after the parameters), the
 * parameters. */
static jac_status make_args(jac_program *prog, jac_ctx *ctx,
                            bool seeds_as_inputs, jac_tensor **xs,
                            jac_tensor **ps, jac_tensor **us)
{
    size_t at = 0;
    for (size_t i = 0; i < prog->ninputs + prog->nparams; i++) {
        const jac__pval *v = &prog->args[i];
        jac_tensor *t = jac_tensor_new(ctx, v->ndim, v->shape, prog->x0 + at);
        if (t == NULL)
            return ctx->status;
        at += (size_t)v->numel;
        if (i < prog->ninputs)
            xs[i] = t;
        else
            ps[i - prog->ninputs] = t;
    }
    for (size_t k = 0; k < prog->noutputs; k++) {
        const jac__pval *v = &prog->outs[k];
        if ((us[k] = jac_ones(ctx, v->ndim, v->shape)) == NULL)
            return ctx->status;
    }
    (void)seeds_as_inputs;
    return JAC_OK;
}

static jac_status gradient_in(jac_program *prog, jac_ctx *ctx, unsigned flags,
                              jac_program **result)
{
    bool seeds_in = (flags & JAC_PROGRAM_SEEDS_AS_INPUTS) != 0;
    size_t ni = prog->ninputs, np = prog->nparams, no = prog->noutputs;
    size_t nall = ni + np + no;
    /* Four blocks of nall: xs, ps and us; ins; pars; args. */
    jac_tensor **t = jac__alloc(ctx, (4 * nall + 1) * sizeof(jac_tensor *));
    if (t == NULL)
        return jac__error(ctx, JAC_ERR_NO_MEMORY,
                          "program_gradient: out of memory");
    jac_tensor **xs = t, **ps = xs + ni, **us = ps + np;
    jac_tensor **ins = us + no, **pars = ins + nall, **args = pars + nall;
    jac_status st = make_args(prog, ctx, seeds_in, xs, ps, us);
    size_t nin = 0, npar = 0;
    if (st == JAC_OK) {
        for (size_t i = 0; i < ni; i++)
            ins[nin++] = xs[i];
        for (size_t k = 0; k < no && seeds_in; k++)
            ins[nin++] = us[k];
        for (size_t i = 0; i < np; i++)
            pars[npar++] = ps[i];
        for (size_t k = 0; k < no && !seeds_in; k++)
            pars[npar++] = us[k];
        st = jac_program_begin(ctx, nin, ins, npar, pars);
    }
    if (st == JAC_OK) {
        memcpy(args, xs, ni * sizeof(jac_tensor *));
        memcpy(args + ni, ps, np * sizeof(jac_tensor *));
        jac_tensor **outs = ins + nin; /* room left in ins: no entries */
        jac_tensor **grads =
            jac__alloc(ctx, (no + ni + 1) * sizeof(jac_tensor *));
        if (grads == NULL)
            st = jac__error(ctx, JAC_ERR_NO_MEMORY,
                            "program_gradient: out of memory");
        (void)outs;
        if (st == JAC_OK)
            st = jac__program_rebuild(prog, ctx, args, grads);
        if (st == JAC_OK)
            st = jac_grad(ctx, no, grads, us, ni, xs,
                          JAC_CREATE_GRAPH | JAC_ALLOW_UNUSED, grads + no);
        if (st == JAC_OK)
            st = jac_program_end(ctx, ni, grads + no, JAC_PROGRAM_READS_OK,
                                 result);
        else
            jac__section_close(ctx);
        jac__free(ctx, grads, (no + ni + 1) * sizeof(jac_tensor *));
    }
    jac__free(ctx, t, (4 * nall + 1) * sizeof(jac_tensor *));
    return st;
}

jac_status jac_program_gradient(jac_program *prog, unsigned flags,
                                jac_program **result)
{
    if (prog == NULL || result == NULL) {
        return jac__program_fail(JAC_ERR_NULL_ARG,
                                 "program_gradient: program or result is "
                                 "NULL");
    }
    *result = NULL;
    jac_ctx *ctx = jac_ctx_new_with_allocator(&prog->alloc);
    if (ctx == NULL) {
        return jac__program_fail(JAC_ERR_NO_MEMORY,
                                 "program_gradient: out of memory");
    }
    jac_ctx_set_memory_budget(ctx, prog->memory_budget);
    jac_status st = gradient_in(prog, ctx, flags, result);
    if (st != JAC_OK)
        jac__program_fail(st, "%s", jac_errmsg(ctx));
    else
        (*result)->threads = prog->threads;
    jac_ctx_free(ctx);
    return st;
}
