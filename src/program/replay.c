/*
 * Replaying a program: workspaces, the forward sweep and the backward
 * sweep over its instructions.
 *
 * Scalar instructions expand the rows of functions.h and arith.h inline,
 * in one switch. A tensor instruction runs its op's apply entry in the
 * workspace's private context on tensor headers that point into the value
 * array, and backward its raw kernel, or its rule when the kernel does not
 * cover the case; with pooled memory, neither reaches the allocator once a
 * call of the kind has run.
 *
 * SPDX-License-Identifier: MIT
 */
#include "ops/arith.h"
#include "program/program.h"

#include <stdio.h>

/* ------------------------------------------------------------------------ */
/* Workspaces                                                               */
/* ------------------------------------------------------------------------ */

static void *ws_alloc(const jac_program *prog, size_t bytes)
{
    return prog->alloc.alloc(bytes == 0 ? 1 : bytes, prog->alloc.user);
}

static void ws_release(const jac_program *prog, void *p)
{
    if (p != NULL)
        prog->alloc.free(p, prog->alloc.user);
}

jac_status jac__ws_error(jac__ws *ws, jac_status code, const char *fmt, ...)
{
    if (ws->status != JAC_OK)
        return code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ws->message, sizeof ws->message, fmt, ap);
    va_end(ap);
    ws->status = code;
    return code;
}

/* The error of the private context, moved into ws. */
static jac_status ctx_error(jac__ws *ws)
{
    jac_status st = jac_errcode(ws->ctx);
    if (st == JAC_OK)
        st = JAC_ERR_STATE;
    jac__ws_error(ws, st, "%s", jac_errmsg(ws->ctx));
    jac_clear_error(ws->ctx);
    return st;
}

/* A tensor header over values that the workspace owns: never registered,
 * never released, read and written by the ops in place. */
static void shadow_init(jac_tensor *t, jac_ctx *ctx, const jac__pval *v,
                        double *data)
{
    memset(t, 0, sizeof *t);
    t->magic = JAC__TENSOR_MAGIC;
    t->ndim = v->ndim;
    t->numel = v->numel;
    memcpy(t->shape, v->shape, sizeof t->shape);
    t->data = data;
    t->node = -1;
    t->ctx = ctx;
}

/* Where a value lies in ws. */
static double *value_at(const jac__ws *ws, const jac__pval *v)
{
    return v->konst ? ws->prog->consts + v->off : ws->v + v->off;
}

static int max_nin(const jac_program *prog)
{
    int m = 1;
    for (size_t k = 0; k < prog->ntops; k++)
        if (prog->tops[k].nin > m)
            m = prog->tops[k].nin;
    return m;
}

static jac__ws *ws_new(jac_program *prog)
{
    jac__ws *ws = ws_alloc(prog, sizeof *ws);
    if (ws == NULL)
        return NULL;
    memset(ws, 0, sizeof *ws);
    ws->prog = prog;
    ws->ctx = jac_ctx_new_with_allocator(&prog->alloc);
    ws->v = ws_alloc(prog, prog->nvalues * sizeof(double));
    size_t nshadow = prog->ntins + prog->ntops;
    /* Headers are cache-line aligned. */
    ws->shadow_mem = ws_alloc(prog, nshadow * sizeof(jac_tensor) + 64);
    ws->nodes = ws_alloc(prog, prog->ntops * sizeof(jac__node));
    ws->ins = ws_alloc(prog, prog->ntins * sizeof(jac_tensor *));
    ws->nmax = max_nin(prog);
    /* need and add, gin and direct: one block each. */
    ws->need = ws_alloc(prog, 2 * (size_t)ws->nmax * sizeof(bool));
    ws->gin = ws_alloc(prog, 2 * (size_t)ws->nmax * sizeof(double *));
    ws->tgin = ws_alloc(prog, (size_t)ws->nmax * sizeof(jac_tensor *));
    ws->partials = ws_alloc(prog, prog->npartials * sizeof(double));
    if (ws->ctx == NULL || ws->v == NULL || ws->shadow_mem == NULL ||
        ws->nodes == NULL || ws->ins == NULL || ws->need == NULL ||
        ws->gin == NULL || ws->tgin == NULL || ws->partials == NULL) {
        jac__ws_free(ws);
        return NULL;
    }
    ws->add = ws->need + ws->nmax;
    ws->direct = ws->gin + ws->nmax;
    jac_set_grad_enabled(ws->ctx, false);
    char *mem = ws->shadow_mem;
    ws->shadow =
        (jac_tensor *)(void *)(mem + ((64 - (uintptr_t)mem % 64) % 64));
    memcpy(ws->v, prog->v0, prog->diff_off * sizeof(double));
    for (size_t k = 0; k < prog->ntops; k++) {
        const jac__top *top = &prog->tops[k];
        jac__node *n = &ws->nodes[k];
        memset(n, 0, sizeof *n);
        n->op = top->op;
        n->nin = top->nin;
        n->p = top->p;
        n->in = ws->ins + top->first;
        n->out = &ws->shadow[prog->ntins + k];
        shadow_init(n->out, ws->ctx, &top->out, value_at(ws, &top->out));
        for (int j = 0; j < top->nin; j++) {
            const jac__tin *ti = &prog->tins[top->first + (size_t)j];
            jac_tensor *t = &ws->shadow[top->first + (size_t)j];
            shadow_init(t, ws->ctx, &ti->v, value_at(ws, &ti->v));
            n->in[j] = t;
        }
    }
    return ws;
}

void jac__ws_free(jac__ws *ws)
{
    if (ws == NULL)
        return;
    const jac_program *prog = ws->prog;
    jac_ctx_free(ws->ctx);
    ws_release(prog, ws->v);
    ws_release(prog, ws->adj);
    ws_release(prog, ws->scratch);
    ws_release(prog, ws->shadow_mem);
    ws_release(prog, ws->nodes);
    ws_release(prog, ws->ins);
    ws_release(prog, ws->need);
    ws_release(prog, ws->gin);
    ws_release(prog, ws->tgin);
    ws_release(prog, ws->partials);
    ws_release(prog, ws);
}

jac__ws *jac__ws_take(jac_program *prog)
{
    for (size_t i = 0; i < JAC__WS_POOL; i++) {
        jac__ws *ws = atomic_exchange(&prog->pool[i], NULL);
        if (ws != NULL) {
            ws->status = JAC_OK;
            ws->block_count = 0;
            ws->message[0] = '\0';
            return ws;
        }
    }
    return ws_new(prog);
}

void jac__ws_give(jac_program *prog, jac__ws *ws)
{
    if (ws == NULL)
        return;
    for (size_t i = 0; i < JAC__WS_POOL; i++) {
        jac__ws *none = NULL;
        if (atomic_compare_exchange_strong(&prog->pool[i], &none, ws))
            return;
    }
    jac__ws_free(ws);
}

/* ws, made for a program of the same code as prog, serves prog: its
 * constants and its tensor headers' constant data are prog's. */
static void ws_rebind(jac__ws *ws, jac_program *prog)
{
    ws->prog = prog;
    memcpy(ws->v, prog->v0, prog->diff_off * sizeof(double));
    for (size_t k = 0; k < prog->ntops; k++) {
        const jac__top *top = &prog->tops[k];
        ws->nodes[k].out->data = value_at(ws, &top->out);
        for (int j = 0; j < top->nin; j++)
            ws->nodes[k].in[j]->data =
                value_at(ws, &prog->tins[top->first + (size_t)j].v);
    }
}

void jac__ws_adopt(jac_program *to, jac_program *from)
{
    for (size_t i = 0; i < JAC__WS_POOL; i++) {
        jac__ws *ws = atomic_exchange(&from->pool[i], NULL);
        if (ws != NULL) {
            ws_rebind(ws, to);
            jac__ws_give(to, ws);
        }
    }
}

jac_status jac__replay_reserve(jac__ws *ws, int64_t batch)
{
    const jac_program *prog = ws->prog;
    if (batch <= ws->adj_batch)
        return JAC_OK;
    uint64_t nadj = prog->nvalues - prog->diff_off;
    int64_t out_max = 0;
    for (size_t k = 0; k < prog->noutputs; k++)
        if (prog->outs[k].numel > out_max)
            out_max = prog->outs[k].numel;
    int64_t per = prog->scratch > out_max ? prog->scratch : out_max;
    if (nadj > (uint64_t)(INT64_MAX / 8) / (uint64_t)batch ||
        per > INT64_MAX / 8 / batch)
        return jac__ws_error(ws, JAC_ERR_OVERFLOW,
                             "program: adjoints of %lld seeds overflow",
                             (long long)batch);
    double *adj = ws_alloc(prog, (size_t)(nadj * (uint64_t)batch) * 8);
    double *scratch = ws_alloc(prog, (size_t)(per * batch) * 8);
    if (adj == NULL || scratch == NULL) {
        ws_release(prog, adj);
        ws_release(prog, scratch);
        return jac__ws_error(ws, JAC_ERR_NO_MEMORY,
                             "program: out of memory for the adjoints of %lld "
                             "seeds",
                             (long long)batch);
    }
    ws_release(prog, ws->adj);
    ws_release(prog, ws->scratch);
    ws->adj = adj;
    ws->scratch = scratch;
    ws->adj_batch = batch;
    return JAC_OK;
}

/* ------------------------------------------------------------------------ */
/* Forward                                                                  */
/* ------------------------------------------------------------------------ */

static jac_status forward_top(jac__ws *ws, size_t k)
{
    const jac__top *top = &ws->prog->tops[k];
    jac__node *n = &ws->nodes[k];
    jac_scope mark = jac_scope_begin(ws->ctx);
    jac_tensor *y = jac__ops[top->op].apply(ws->ctx, n, n->in);
    jac_status st = JAC_OK;
    if (y == NULL)
        st = ctx_error(ws);
    else if (y->numel != top->out.numel)
        st = jac__ws_error(ws, JAC_ERR_STATE,
                           "program: %s made %lld values where %lld were "
                           "recorded",
                           jac__ops[top->op].name, (long long)y->numel,
                           (long long)top->out.numel);
    else
        memcpy(n->out->data, y->data, (size_t)y->numel * sizeof(double));
    jac_scope_end(ws->ctx, mark, NULL, 0);
    return st;
}

/* The instructions, inlined with and without keeping partials. The last
 * value computed stays in a register too (last, at offset last_off): in a
 * chain, the next instruction reads it from there rather than waiting for
 * the store to reach memory. */
static JAC__FOLD jac_status run_forward(jac__ws *ws, bool keep)
{
    const jac_program *prog = ws->prog;
    double *v = ws->v, *kept = ws->partials;
    const jac__instr *code = prog->code;
    const jac__fn_params *fp = prog->fparams;
    uint64_t cur = prog->code_off, last_off = UINT64_MAX;
    double last = 0.0;
#define OPERAND(off) ((off) == last_off ? last : v[off])
    for (size_t k = 0; k < prog->ncode; k++) {
        jac__instr in = code[k];
        switch (in.op) {
#define FUNCTION_CASE(e, rule, value, derivative, mask)                        \
    case JAC__OP_##e:                                                          \
        if (keep && jac__fn_keeps_partial(JAC__OP_##e)) {                      \
            bool has;                                                          \
            last = jac__fn_value_partial(JAC__OP_##e, OPERAND(in.a), fp[in.b], \
                                         &has, kept++);                        \
        } else {                                                               \
            last = jac__fn_value(JAC__OP_##e, OPERAND(in.a), fp[in.b]);        \
        }                                                                      \
        v[cur] = last;                                                         \
        last_off = cur++;                                                      \
        break;
            JAC__FUNCTIONS(FUNCTION_CASE)
#undef FUNCTION_CASE
#define ARITH_CASE(e, rule, value, da, db)                                     \
    case JAC__OP_##e:                                                          \
        last = jac__arith_value(JAC__OP_##e, OPERAND(in.a), OPERAND(in.b));    \
        v[cur] = last;                                                         \
        last_off = cur++;                                                      \
        break;
            JAC__ARITH(ARITH_CASE)
#undef ARITH_CASE
        default: {
            jac_status st = forward_top(ws, in.a);
            if (st != JAC_OK)
                return st;
            const jac__top *top = &prog->tops[in.a];
            cur = top->out.off + (uint64_t)top->out.numel;
            last_off = UINT64_MAX;
            break;
        }
        }
    }
#undef OPERAND
    return JAC_OK;
}

jac_status jac__replay_forward(jac__ws *ws, const double *const *args,
                               bool partials)
{
    const jac_program *prog = ws->prog;
    size_t nargs = prog->ninputs + prog->nparams;
    if (nargs > 0 && args == NULL)
        return jac__ws_error(ws, JAC_ERR_NULL_ARG, "program: args is NULL");
    for (size_t i = 0; i < nargs; i++) {
        if (args[i] == NULL && prog->args[i].numel > 0)
            return jac__ws_error(ws, JAC_ERR_NULL_ARG,
                                 "program: %s %zu is NULL",
                                 i < prog->ninputs ? "input" : "param",
                                 i < prog->ninputs ? i : i - prog->ninputs);
        if (prog->args[i].numel > 0)
            memcpy(ws->v + prog->args[i].off, args[i],
                   (size_t)prog->args[i].numel * sizeof(double));
    }
    return partials ? run_forward(ws, true) : run_forward(ws, false);
}

/* ------------------------------------------------------------------------ */
/* Backward                                                                 */
/* ------------------------------------------------------------------------ */

/* d += s, n values. */
static void deliver(double *d, const double *s, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        d[i] += s[i];
}

/* The input cotangents of a tensor instruction by its rule, run in the
 * private context on a copy of the output's adjoint. */
static jac_status rule_cotangents(jac__ws *ws, size_t k, int64_t batch,
                                  const double *g)
{
    const jac__top *top = &ws->prog->tops[k];
    jac__node *n = &ws->nodes[k];
    const char *name = jac__ops[top->op].name;
    int64_t shape[JAC_MAX_DIMS + 1];
    int nd = top->out.ndim;
    if (batch > 1) {
        if (nd + 1 > JAC_MAX_DIMS)
            return jac__ws_error(ws, JAC_ERR_RANK,
                                 "program: %s: batched adjoints exceed rank %d",
                                 name, JAC_MAX_DIMS);
        shape[0] = batch;
        memcpy(shape + 1, top->out.shape, (size_t)nd * sizeof(int64_t));
        nd++;
    } else {
        memcpy(shape, top->out.shape, (size_t)nd * sizeof(int64_t));
    }
    jac_scope mark = jac_scope_begin(ws->ctx);
    jac_status st = JAC_OK;
    jac_tensor *gt = jac__tensor_alloc(ws->ctx, name, nd, shape);
    if (gt == NULL)
        st = ctx_error(ws);
    for (int j = 0; j < top->nin; j++)
        ws->tgin[j] = NULL;
    if (st == JAC_OK) {
        memcpy(gt->data, g, (size_t)gt->numel * sizeof(double));
        if (jac__ops[top->op].rule(ws->ctx, n, gt, ws->need, ws->tgin) !=
            JAC_OK)
            st = ctx_error(ws);
    }
    for (int j = 0; j < top->nin && st == JAC_OK; j++) {
        if (!ws->need[j])
            continue;
        int64_t m = batch * n->in[j]->numel;
        const jac_tensor *r = ws->tgin[j];
        if (r == NULL)
            memset(ws->gin[j], 0, (size_t)m * sizeof(double));
        else if (r->numel != m)
            st = jac__ws_error(ws, JAC_ERR_STATE,
                               "program: the rule of %s gave %lld values for "
                               "input %d where %lld were expected",
                               name, (long long)r->numel, j, (long long)m);
        else
            memcpy(ws->gin[j], r->data, (size_t)m * sizeof(double));
    }
    jac_scope_end(ws->ctx, mark, NULL, 0);
    return st;
}

/* An input whose adjoint this instruction writes first gets its cotangent
 * straight there; the others go to scratch and are added. */
static jac_status backward_top(jac__ws *ws, size_t k, int64_t batch)
{
    const jac_program *prog = ws->prog;
    const jac__top *top = &prog->tops[k];
    const jac__tin *tins = &prog->tins[top->first];
    jac__node *n = &ws->nodes[k];
    uint64_t ub = (uint64_t)batch;
    const double *g = ws->adj + (top->out.off - prog->diff_off) * ub;
    double *s = ws->scratch;
    bool any = false, adds = false, shared = false;
    for (int j = 0; j < top->nin; j++) {
        ws->need[j] = tins[j].diff;
        ws->add[j] = false;
        ws->gin[j] = s;
        if (!tins[j].diff)
            continue;
        any = true;
        ws->add[j] = !tins[j].write;
        adds = adds || ws->add[j];
        for (int i = 0; i < j; i++)
            shared = shared || (tins[i].diff && tins[i].v.off == tins[j].v.off);
        if (tins[j].write)
            ws->gin[j] = ws->adj + (tins[j].v.off - prog->diff_off) * ub;
        else
            s += batch * tins[j].v.numel;
    }
    if (!any)
        return JAC_OK;
    /* Seeds of one output, one-hot, reach this output unchanged. */
    jac__onehot_rows oh, *hint = NULL;
    if (top->hint >= 0 && ws->block_count == batch) {
        int64_t start = prog->out_start[top->hint];
        int64_t m = prog->outs[top->hint].numel;
        oh = (jac__onehot_rows){ws->block_r0 - start, batch, 1, m};
        if (oh.r0 >= 0 && oh.r0 + batch <= m)
            hint = &oh;
    }
    jac__raw_fn *raw = jac__ops[top->op].raw;
    /* A kernel that can add its cotangents straight into adjoints that
     * hold contributions already spares a buffer and a pass (not when two
     * inputs are one value: one of them may be its first write). */
    if (raw != NULL && adds && !shared) {
        for (int j = 0; j < top->nin; j++)
            ws->direct[j] =
                ws->add[j] ? ws->adj + (tins[j].v.off - prog->diff_off) * ub
                           : ws->gin[j];
        if (raw(n, batch, g, hint, ws->need, ws->add, ws->direct))
            return JAC_OK;
    }
    if (raw == NULL || !raw(n, batch, g, hint, ws->need, NULL, ws->gin)) {
        jac_status st = rule_cotangents(ws, k, batch, g);
        if (st != JAC_OK)
            return st;
    }
    for (int j = 0; j < top->nin; j++)
        if (tins[j].diff && !tins[j].write)
            deliver(ws->adj + (tins[j].v.off - prog->diff_off) * ub, ws->gin[j],
                    batch * tins[j].v.numel);
    return JAC_OK;
}

/* The sweep over the instructions, inlined for one seed and for any. */
static JAC__FOLD jac_status sweep(jac__ws *ws, int64_t batch)
{
    const jac_program *prog = ws->prog;
    const double *v = ws->v;
    double *adj = ws->adj;
    uint64_t base = prog->diff_off, ub = (uint64_t)batch;
    const jac__instr *code = prog->code;
    const jac__fn_params *fp = prog->fparams;
    const double *kept = ws->partials + prog->npartials;
    uint64_t cur = prog->nvalues;
    /* With one seed, the adjoint written last stays in a register too, as
     * values do in the forward sweep. */
    uint64_t last_off = UINT64_MAX;
    double last = 0.0;
    for (size_t k = prog->ncode; k-- > 0;) {
        jac__instr in = code[k];
        if (in.op == JAC__TENSOR_INSTR) {
            const jac__top *top = &prog->tops[in.a];
            cur = top->out.off;
            last_off = UINT64_MAX;
            if (top->diff_out) {
                jac_status st = backward_top(ws, in.a, batch);
                if (st != JAC_OK)
                    return st;
            }
            continue;
        }
        cur--;
        /* The adjoints of the output and of the differentiated inputs. */
        const double *g = adj + (cur - base) * ub;
#define ADJ(off) (adj + ((uint64_t)(off)-base) * ub)
#define G(b) (batch == 1 && cur == last_off ? last : g[b])
#define DELIVER(off, b, d, write)                                              \
    do {                                                                       \
        double *dst_ = ADJ(off);                                               \
        dst_[b] = (write) ? (d) : dst_[b] + (d);                               \
        if (batch == 1) {                                                      \
            last = dst_[b];                                                    \
            last_off = (off);                                                  \
        }                                                                      \
    } while (0)
        switch (in.op) {
#define FUNCTION_CASE(e, rule, value, derivative, mask)                        \
    case JAC__OP_##e: {                                                        \
        /* The partial this instruction kept, if it keeps one. */              \
        double partial = jac__fn_keeps_partial(JAC__OP_##e) ? *--kept : 0.0;   \
        if (!(in.flags & JAC__I_DIFF_OUT))                                     \
            break;                                                             \
        for (int64_t b = 0; b < batch; b++) {                                  \
            double gb = G(b);                                                  \
            double d = jac__fn_keeps_partial(JAC__OP_##e)                      \
                           ? gb * partial                                      \
                           : jac__fn_cotangent(JAC__OP_##e, v[in.a], v[cur],   \
                                               gb, fp[in.b]);                  \
            DELIVER(in.a, b, d, in.flags &JAC__I_WRITE_A);                     \
        }                                                                      \
        break;                                                                 \
    }
            JAC__FUNCTIONS(FUNCTION_CASE)
#undef FUNCTION_CASE
#define ARITH_CASE(e, rule, value, d_a, d_b)                                   \
    case JAC__OP_##e:                                                          \
        if (!(in.flags & JAC__I_DIFF_OUT))                                     \
            break;                                                             \
        for (int64_t b = 0; b < batch; b++) {                                  \
            double x = v[in.a], y = v[in.b], r = v[cur], gb = G(b);            \
            if (in.flags & JAC__I_DIFF_A) {                                    \
                double d = jac__arith_cotangent(JAC__OP_##e, 0, x, y, r, gb);  \
                DELIVER(in.a, b, d, in.flags &JAC__I_WRITE_A);                 \
            }                                                                  \
            if (in.flags & JAC__I_DIFF_B) {                                    \
                double d = jac__arith_cotangent(JAC__OP_##e, 1, x, y, r, gb);  \
                DELIVER(in.b, b, d, in.flags &JAC__I_WRITE_B);                 \
            }                                                                  \
        }                                                                      \
        break;
            JAC__ARITH(ARITH_CASE)
#undef ARITH_CASE
#undef DELIVER
#undef G
#undef ADJ
        default:
            break;
        }
    }
    return JAC_OK;
}

jac_status jac__replay_backward(jac__ws *ws, int64_t batch,
                                jac__seed_fn *set_seed, void *user)
{
    const jac_program *prog = ws->prog;
    jac_status st = jac__replay_reserve(ws, batch);
    if (st != JAC_OK)
        return st;
    for (size_t k = 0; k < prog->noutputs; k++) {
        const jac__pval *o = &prog->outs[k];
        if (prog->out_seed[k] == JAC__SEED_NONE)
            continue;
        double *d = ws->adj + (o->off - prog->diff_off) * (uint64_t)batch;
        if (prog->out_seed[k] == JAC__SEED_WRITE) {
            set_seed(ws, k, batch, d, user);
        } else {
            set_seed(ws, k, batch, ws->scratch, user);
            deliver(d, ws->scratch, batch * o->numel);
        }
    }
    return batch == 1 ? sweep(ws, 1) : sweep(ws, batch);
}

const double *jac__replay_adjoint(const jac__ws *ws, size_t i, int64_t batch)
{
    const jac_program *prog = ws->prog;
    if (!prog->reached[i])
        return NULL;
    return ws->adj + (prog->args[i].off - prog->diff_off) * (uint64_t)batch;
}

/* The values of output k after a forward sweep. */
const double *jac__replay_output(const jac__ws *ws, size_t k)
{
    return value_at(ws, &ws->prog->outs[k]);
}
