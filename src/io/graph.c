/*
 * A picture of the tape: Graphviz DOT export.
 *
 * Every recorded op becomes an ellipse labelled with its tape index, op name
 * and output shape; the tensors an op reads that no shown op made (leaves,
 * and values made outside the selected part) become boxes. Edges run from
 * the tensors an op reads to the op, so the picture reads top to bottom in
 * execution order. Released nodes are dashed and grey.
 *
 * Selecting a part of the tape uses the same two sweeps as a backward plan:
 * forward from the inputs (a node is reached when it reads a reached tensor)
 * and backward from the outputs (a node is kept when its output is read by a
 * kept node or is an output).
 *
 * SPDX-License-Identifier: MIT
 */
#include "ops/ops.h"

#include <stdio.h>

enum {
    FROM_INPUTS = 1u << 0, /* depends on an input (or no inputs given) */
    TO_OUTPUTS = 1u << 1,  /* leads to an output (or no outputs given) */
    SHOWN = FROM_INPUTS | TO_OUTPUTS
};

typedef struct dot_writer {
    jac_ctx *ctx;
    FILE *out;
    const unsigned char *flags; /* per tape node */
    size_t noutputs, ninputs;
    jac_tensor *const *outputs;
    jac_tensor *const *inputs;
    uint64_t drawn; /* stamp of the tensors already drawn as boxes */
} dot_writer;

/* Position of t in list, or -1. */
static long find(const jac_tensor *t, size_t n, jac_tensor *const *list)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] == t)
            return (long)i;
    return -1;
}

static bool node_shown(const dot_writer *w, int64_t node)
{
    return node >= 0 && (w->flags[node] & SHOWN) == SHOWN;
}

/* The op-specific parameters worth seeing, as " (...)" or "". */
static void op_details(char *buf, size_t size, const jac__node *n)
{
    buf[0] = '\0';
    switch (n->op) {
    case JAC__OP_AFFINE:
        snprintf(buf, size, "\\n%g x + %g", n->p.affine.alpha,
                 n->p.affine.beta);
        break;
    case JAC__OP_POW_SCALAR:
        snprintf(buf, size, "\\nx ** %g", n->p.scalar);
        break;
    case JAC__OP_TRANSPOSE:
        snprintf(buf, size, "\\naxes %d, %d", n->p.transpose.axis0,
                 n->p.transpose.axis1);
        break;
    case JAC__OP_SLICE:
        snprintf(buf, size, "\\naxis %d, %lld:%lld:%lld", n->p.slice.axis,
                 (long long)n->p.slice.start, (long long)n->p.slice.stop,
                 (long long)n->p.slice.step);
        break;
    default:
        break;
    }
}

/* Draws t as a box once: a leaf, or a value no shown op made. */
static void draw_tensor(dot_writer *w, jac_tensor *t)
{
    if (t->stamp == w->drawn)
        return;
    t->stamp = w->drawn;
    char s[JAC__SHAPE_STR_MAX];
    jac__shape_str(s, sizeof s, t->ndim, t->shape);
    long in = find(t, w->ninputs, w->inputs);
    long out = find(t, w->noutputs, w->outputs);
    char role[64] = "";
    if (in >= 0 && out >= 0)
        snprintf(role, sizeof role, "input %ld, output %ld\\n", in, out);
    else if (in >= 0)
        snprintf(role, sizeof role, "input %ld\\n", in);
    else if (out >= 0)
        snprintf(role, sizeof role, "output %ld\\n", out);
    const char *kind, *style;
    if (t->node < 0 && t->requires_grad) {
        kind = "leaf, requires grad";
        style = "style=\"rounded,filled\", fillcolor=\"#cfe2f3\"";
    } else if (t->node < 0) {
        kind = "leaf";
        style = "style=rounded";
    } else {
        kind = "value of #";
        style = "style=\"rounded,dotted\"";
    }
    fprintf(w->out, "    t%llu [shape=box, %s%s, label=\"%s%s",
            (unsigned long long)t->seq, style,
            out >= 0 ? ", peripheries=2" : "", role, kind);
    if (t->node >= 0)
        fprintf(w->out, "%lld %s", (long long)t->node,
                jac__ops[jac__node_at(w->ctx, t->node)->op].name);
    fprintf(w->out, "\\n%s\"];\n", s);
}

static void draw_node(dot_writer *w, int64_t i)
{
    const jac__node *n = jac__node_at(w->ctx, i);
    for (int j = 0; j < n->nin; j++)
        if (!node_shown(w, n->in[j]->node))
            draw_tensor(w, n->in[j]);

    char s[JAC__SHAPE_STR_MAX], details[128];
    jac__shape_str(s, sizeof s, n->out->ndim, n->out->shape);
    op_details(details, sizeof details, n);
    long in = find(n->out, w->ninputs, w->inputs);
    long out = find(n->out, w->noutputs, w->outputs);
    char role[64] = "";
    if (in >= 0)
        snprintf(role, sizeof role, "\\ninput %ld", in);
    if (out >= 0)
        snprintf(role + strlen(role), sizeof role - strlen(role),
                 "\\noutput %ld", out);
    fprintf(w->out, "    n%lld [label=\"#%lld %s%s\\n%s%s%s\"%s%s];\n",
            (long long)i, (long long)i, jac__ops[n->op].name, details, s, role,
            n->released ? "\\nreleased" : "", out >= 0 ? ", peripheries=2" : "",
            n->released ? ", style=dashed, color=grey55, fontcolor=grey40"
                        : "");
    for (int j = 0; j < n->nin; j++) {
        const jac_tensor *t = n->in[j];
        if (node_shown(w, t->node))
            fprintf(w->out, "    n%lld -> n%lld", (long long)t->node,
                    (long long)i);
        else
            fprintf(w->out, "    t%llu -> n%lld", (unsigned long long)t->seq,
                    (long long)i);
        /* Operand order matters for sub, div, matmul, ... */
        if (n->nin > 1)
            fprintf(w->out, " [headlabel=\"%d\"]", j);
        fputs(";\n", w->out);
    }
}

/* Marks the nodes that read an input, directly or through other nodes. */
static void sweep_from_inputs(jac_ctx *ctx, unsigned char *flags,
                              size_t ninputs, jac_tensor *const *inputs)
{
    if (ninputs == 0) {
        for (size_t i = 0; i < ctx->nnodes; i++)
            flags[i] |= FROM_INPUTS;
        return;
    }
    uint64_t id = ctx->next_plan_id++;
    for (size_t k = 0; k < ninputs; k++)
        inputs[k]->stamp = id;
    for (size_t i = 0; i < ctx->nnodes; i++) {
        jac__node *n = jac__node_at(ctx, (int64_t)i);
        for (int j = 0; j < n->nin; j++) {
            if (n->in[j]->stamp == id) {
                flags[i] |= FROM_INPUTS;
                n->out->stamp = id;
                break;
            }
        }
    }
}

/* Marks the nodes whose output an output depends on. */
static void sweep_to_outputs(jac_ctx *ctx, unsigned char *flags,
                             size_t noutputs, jac_tensor *const *outputs)
{
    if (noutputs == 0) {
        for (size_t i = 0; i < ctx->nnodes; i++)
            flags[i] |= TO_OUTPUTS;
        return;
    }
    for (size_t k = 0; k < noutputs; k++)
        if (outputs[k]->node >= 0)
            flags[outputs[k]->node] |= TO_OUTPUTS;
    for (size_t i = ctx->nnodes; i-- > 0;) {
        if (!(flags[i] & TO_OUTPUTS))
            continue;
        const jac__node *n = jac__node_at(ctx, (int64_t)i);
        for (int j = 0; j < n->nin; j++)
            if (n->in[j]->node >= 0)
                flags[n->in[j]->node] |= TO_OUTPUTS;
    }
}

static jac_status check_list(jac_ctx *ctx, size_t n, jac_tensor *const *ts,
                             const char *what)
{
    if (n > 0 && ts == NULL)
        return jac__error(ctx, JAC_ERR_NULL_ARG, "export_dot: %ss is NULL",
                          what);
    for (size_t k = 0; k < n; k++) {
        jac_status st = jac__check_named(ctx, "export_dot", ts[k], what, k);
        if (st != JAC_OK)
            return st;
    }
    return JAC_OK;
}

static jac_status export_dot_unguarded(jac_ctx *ctx, size_t noutputs,
                                       jac_tensor *const *outputs,
                                       size_t ninputs,
                                       jac_tensor *const *inputs, FILE *out)
{
    if (ctx == NULL)
        return JAC_ERR_NULL_ARG;
    if (out == NULL)
        return jac__error(ctx, JAC_ERR_NULL_ARG, "export_dot: out is NULL");
    jac_status st = check_list(ctx, noutputs, outputs, "output");
    if (st == JAC_OK)
        st = check_list(ctx, ninputs, inputs, "input");
    if (st != JAC_OK)
        return st;

    size_t bytes = ctx->nnodes ? ctx->nnodes : 1;
    unsigned char *flags = jac__alloc(ctx, bytes);
    if (flags == NULL)
        return jac__error(ctx, JAC_ERR_NO_MEMORY, "export_dot: out of memory");
    memset(flags, 0, bytes);
    sweep_from_inputs(ctx, flags, ninputs, inputs);
    sweep_to_outputs(ctx, flags, noutputs, outputs);

    size_t shown = 0, released = 0;
    for (size_t i = 0; i < ctx->nnodes; i++) {
        if ((flags[i] & SHOWN) == SHOWN) {
            shown++;
            released += jac__node_at(ctx, (int64_t)i)->released;
        }
    }
    dot_writer w = {ctx,     out,     flags,  noutputs,
                    ninputs, outputs, inputs, ctx->next_plan_id++};
    fprintf(out,
            "// libjacobian tape: %zu nodes, %zu shown, %zu of them "
            "released\n",
            ctx->nnodes, shown, released);
    fputs("digraph tape {\n"
          "    node [fontname=\"Helvetica\", fontsize=10];\n"
          "    edge [fontname=\"Helvetica\", fontsize=8, color=grey30];\n",
          out);
    for (size_t i = 0; i < ctx->nnodes; i++)
        if ((flags[i] & SHOWN) == SHOWN)
            draw_node(&w, (int64_t)i);
    /* Outputs and inputs that no shown node reads or makes still appear. */
    for (size_t k = 0; k < noutputs; k++)
        if (!node_shown(&w, outputs[k]->node))
            draw_tensor(&w, outputs[k]);
    for (size_t k = 0; k < ninputs; k++)
        if (!node_shown(&w, inputs[k]->node))
            draw_tensor(&w, inputs[k]);
    fputs("}\n", out);
    jac__free(ctx, flags, bytes);

    if (fflush(out) != 0 || ferror(out))
        return jac__error(ctx, JAC_ERR_VALUE, "export_dot: write failed");
    return JAC_OK;
}

/* One thread at a time: see jac__enter. */
jac_status jac_export_dot(jac_ctx *ctx, size_t noutputs,
                          jac_tensor *const *outputs, size_t ninputs,
                          jac_tensor *const *inputs, FILE *out)
{
    JAC__HELD(
        ctx, jac_status, JAC_ERR_STATE,
        export_dot_unguarded(ctx, noutputs, outputs, ninputs, inputs, out));
}
