/*
 * The backward engine: backward plans, jac_grad and jac_backward.
 *
 * Nodes are appended to the tape in execution order, so walking the tape
 * from the newest node back is already a reverse topological order: a
 * tensor's cotangent is complete by the time the node that made it is
 * reached, because every node that consumed it is newer. No graph sort and
 * no hashing are needed; the plan only marks which nodes lie between the
 * inputs (a forward sweep) and the outputs (a backward sweep).
 *
 * SPDX-License-Identifier: MIT
 */
#include "autodiff/autodiff.h"

typedef struct plan_step {
    jac__node *node; /* on the tape, whose blocks never move */
    int32_t out_slot;
    int32_t first_in; /* index of the node's first input in in_slots */
} plan_step;

struct jac__plan {
    const jac_ctx *tape; /* the context whose tape the steps index */
    size_t noutputs, ninputs;
    jac_tensor **outputs; /* copied: runs read their shapes */
    jac_tensor **inputs;
    int32_t *output_slot; /* per output; -1 when it uses no input */
    int32_t *input_slot;  /* per input */
    plan_step *steps;     /* oldest first; the plan's are first_step.. */
    size_t first_step, nsteps, cap_steps;
    int32_t *in_slots; /* per step input: slot, or -1 when not needed */
    size_t nin_slots, cap_in;
    size_t nslots;
    int32_t ninput_slots; /* slots 0 .. ninput_slots - 1 are the inputs' */
    int max_nin;
    /* Without the backward sweep, steps that reach no output are still
     * listed; a run skips them (no cotangent ever arrives) but must then
     * note which steps it visited to release only those. */
    bool pruned;
};

/* Arrays of n elements, never of zero bytes. */
static size_t array_bytes(size_t n, size_t elem) { return (n ? n : 1) * elem; }

void jac__plan_free(jac_ctx *ctx, jac__plan *plan)
{
    if (plan == NULL)
        return;
    jac__free(ctx, plan->outputs,
              array_bytes(plan->noutputs, sizeof(jac_tensor *)));
    jac__free(ctx, plan->inputs,
              array_bytes(plan->ninputs, sizeof(jac_tensor *)));
    jac__free(ctx, plan->output_slot, array_bytes(plan->noutputs, 4));
    jac__free(ctx, plan->input_slot, array_bytes(plan->ninputs, 4));
    jac__free(ctx, plan->steps, plan->cap_steps * sizeof(plan_step));
    jac__free(ctx, plan->in_slots, plan->cap_in * sizeof(int32_t));
    jac__free(ctx, plan, sizeof *plan);
}

bool jac__plan_output_used(const jac__plan *plan, size_t k)
{
    return plan->output_slot[k] >= 0;
}

bool jac__plan_input_used(const jac__plan *plan, size_t i)
{
    int32_t slot = plan->input_slot[i];
    for (size_t k = 0; k < plan->noutputs; k++)
        if (plan->output_slot[k] == slot)
            return true;
    for (size_t r = plan->first_step; r < plan->nsteps; r++) {
        const plan_step *s = &plan->steps[r];
        for (int j = 0; j < s->node->nin; j++)
            if (plan->in_slots[s->first_in + j] == slot)
                return true;
    }
    return false;
}

/* Each step holds about its output's cotangent and one per needed input,
 * and a rule makes a few temporaries of those sizes. */
size_t jac__plan_bytes_per_seed(const jac__plan *plan)
{
    double total = 0;
    for (size_t r = plan->first_step; r < plan->nsteps; r++) {
        const jac__node *n = plan->steps[r].node;
        total += (double)n->out->numel;
        for (int j = 0; j < n->nin; j++)
            if (plan->in_slots[plan->steps[r].first_in + j] >= 0)
                total += 2.0 * (double)n->in[j]->numel;
    }
    for (size_t i = 0; i < plan->ninputs; i++)
        total += 1.0;
    total *= 2.0 * sizeof(double);
    return total > (double)SIZE_MAX / 2 ? SIZE_MAX / 2 : (size_t)total + 64;
}

/* The first tape index whose output is newer than seq (outputs' seq grows
 * with the tape index). */
static size_t first_node_after(const jac_ctx *ctx, uint64_t seq)
{
    size_t lo = 0, hi = ctx->nnodes;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (jac__node_at(ctx, (int64_t)mid)->out->seq <= seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* A node whose input j had its values replaced after the node used them:
 * its saved values are stale, and differentiating through it would give a
 * wrong result. */
static jac_status stale_input(jac_ctx *ctx, const char *op, const jac__node *n,
                              int j)
{
    char s[JAC__SHAPE_STR_MAX];
    const jac_tensor *x = n->in[j];
    return jac__error(ctx, JAC_ERR_STATE,
                      "%s: input %d (shape %s) of '%s' (tape index %lld) was "
                      "replaced by jac_tensor_fill or jac_tensor_assign after "
                      "the op used it; record the graph again from the new "
                      "values",
                      op, j, jac__shape_str(s, sizeof s, x->ndim, x->shape),
                      jac__ops[n->op].name, (long long)n->out->node);
}

/* Forward sweep: stamp the inputs, then every node fed by a stamped tensor,
 * between the oldest input and the newest output; each stamped tensor gets a
 * cotangent slot. */
static jac_status forward_sweep(jac_ctx *ctx, jac__plan *plan, uint64_t id,
                                jac_tensor *const *outputs,
                                jac_tensor *const *inputs)
{
    int32_t nslots = 0;
    uint64_t oldest = UINT64_MAX;
    for (size_t i = 0; i < plan->ninputs; i++) {
        jac_tensor *x = inputs[i];
        if (x->stamp != id) {
            x->stamp = id;
            x->plan_slot = nslots++;
        }
        plan->input_slot[i] = x->plan_slot;
        if (x->seq < oldest)
            oldest = x->seq;
    }
    plan->ninput_slots = nslots;
    int64_t newest = -1;
    for (size_t k = 0; k < plan->noutputs; k++)
        if (outputs[k]->node > newest)
            newest = outputs[k]->node;
    int64_t first = (int64_t)first_node_after(ctx, oldest);
    /* Size the arrays for every node in range once, rather than doubling. */
    if (newest >= first) {
        size_t range = (size_t)(newest - first + 1);
        if (jac__grow(ctx, (void **)&plan->steps, &plan->cap_steps, range,
                      sizeof(plan_step)) != JAC_OK ||
            jac__grow(ctx, (void **)&plan->in_slots, &plan->cap_in, 2 * range,
                      sizeof(int32_t)) != JAC_OK)
            return JAC_ERR_NO_MEMORY;
    }
    for (int64_t t = first; t <= newest; t++) {
        jac__node *n = jac__node_at(ctx, t);
        /* Only nodes of more than two inputs (concat) can outgrow. */
        if (plan->nin_slots + (size_t)n->nin > plan->cap_in &&
            jac__grow(ctx, (void **)&plan->in_slots, &plan->cap_in,
                      plan->nin_slots + (size_t)n->nin,
                      sizeof(int32_t)) != JAC_OK)
            return JAC_ERR_NO_MEMORY;
        /* The input slots are written first and kept only when one is
         * stamped, which makes the node active. */
        int32_t *in_slots = plan->in_slots + plan->nin_slots;
        bool active = false;
        for (int j = 0; j < n->nin; j++) {
            const jac_tensor *x = n->in[j];
            in_slots[j] = x->stamp == id ? x->plan_slot : -1;
            active |= in_slots[j] >= 0;
        }
        if (!active)
            continue;
        plan_step *s = &plan->steps[plan->nsteps++];
        s->node = n;
        s->first_in = (int32_t)plan->nin_slots;
        plan->nin_slots += (size_t)n->nin;
        if (n->out->stamp != id) {
            n->out->stamp = id;
            n->out->plan_slot = nslots++;
        }
        s->out_slot = n->out->plan_slot;
        if (n->nin > plan->max_nin)
            plan->max_nin = n->nin;
    }
    for (size_t k = 0; k < plan->noutputs; k++)
        plan->output_slot[k] =
            outputs[k]->stamp == id ? outputs[k]->plan_slot : -1;
    plan->nslots = (size_t)nslots;
    return JAC_OK;
}

/* Backward sweep: keep only the steps whose output reaches an output,
 * moved (in order) to the end of the array, from first_step on. */
static jac_status backward_sweep(jac_ctx *ctx, jac__plan *plan)
{
    size_t bytes = array_bytes(plan->nslots, sizeof(bool));
    bool *live = jac__alloc(ctx, bytes);
    if (live == NULL)
        return JAC_ERR_NO_MEMORY;
    memset(live, 0, bytes);
    for (size_t k = 0; k < plan->noutputs; k++)
        if (plan->output_slot[k] >= 0)
            live[plan->output_slot[k]] = true;
    size_t w = plan->nsteps; /* w > r: a write never overtakes the read */
    /* A step's input slots run up to the next step's (the tape's nodes are
     * not read again). */
    size_t end = plan->nin_slots;
    for (size_t r = plan->nsteps; r-- > 0;) {
        plan_step s = plan->steps[r];
        size_t begin = (size_t)s.first_in;
        if (live[s.out_slot]) {
            for (size_t j = begin; j < end; j++)
                if (plan->in_slots[j] >= 0)
                    live[plan->in_slots[j]] = true;
            plan->steps[--w] = s;
        }
        end = begin;
    }
    jac__free(ctx, live, bytes);
    plan->first_step = w;
    return JAC_OK;
}

jac_status jac__plan_build(jac_ctx *ctx, const char *op, size_t noutputs,
                           jac_tensor *const *outputs, size_t ninputs,
                           jac_tensor *const *inputs, jac__plan **result)
{
    return jac__plan_build_ex(ctx, op, noutputs, outputs, ninputs, inputs, true,
                              result);
}

jac_status jac__plan_build_ex(jac_ctx *ctx, const char *op, size_t noutputs,
                              jac_tensor *const *outputs, size_t ninputs,
                              jac_tensor *const *inputs, bool prune,
                              jac__plan **result)
{
    jac__plan *plan = jac__alloc(ctx, sizeof *plan);
    if (plan == NULL)
        return jac__error(ctx, JAC_ERR_NO_MEMORY, "%s: out of memory", op);
    memset(plan, 0, sizeof *plan);
    plan->tape = ctx;
    plan->noutputs = noutputs;
    plan->ninputs = ninputs;
    plan->max_nin = 2;
    plan->outputs =
        jac__alloc(ctx, array_bytes(noutputs, sizeof(jac_tensor *)));
    plan->inputs = jac__alloc(ctx, array_bytes(ninputs, sizeof(jac_tensor *)));
    plan->output_slot = jac__alloc(ctx, array_bytes(noutputs, 4));
    plan->input_slot = jac__alloc(ctx, array_bytes(ninputs, 4));
    jac_status st = JAC_ERR_NO_MEMORY;
    if (plan->outputs && plan->inputs) {
        memcpy(plan->outputs, outputs, noutputs * sizeof(jac_tensor *));
        memcpy(plan->inputs, inputs, ninputs * sizeof(jac_tensor *));
    }
    if (plan->outputs && plan->inputs && plan->output_slot && plan->input_slot)
        st = forward_sweep(ctx, plan, ctx->next_plan_id++, outputs, inputs);
    plan->pruned = prune;
    if (st == JAC_OK && prune)
        st = backward_sweep(ctx, plan);
    if (st != JAC_OK) {
        jac__plan_free(ctx, plan);
        return jac__error(ctx, st,
                          "%s: out of memory building the backward plan", op);
    }
    *result = plan;
    return JAC_OK;
}

/* The first of outputs lo..hi-1 with no history that is not x itself: a
 * constant as far as the inputs go (NULL when none). */
static const jac_tensor *constant_output(jac_tensor *const *outputs, size_t lo,
                                         size_t hi, const jac_tensor *x,
                                         size_t *which)
{
    for (size_t o = lo; o < hi; o++) {
        if (outputs[o]->node < 0 && outputs[o] != x) {
            *which = o;
            return outputs[o];
        }
    }
    return NULL;
}

jac_status jac__unreached(jac_ctx *ctx, const char *op, size_t noutputs,
                          jac_tensor *const *outputs, size_t k, size_t i,
                          const jac_tensor *x)
{
    char s1[JAC__SHAPE_STR_MAX], s2[JAC__SHAPE_STR_MAX];
    jac__shape_str(s2, sizeof s2, x->ndim, x->shape);
    /* The outputs to explain: output k, or all of them. */
    size_t lo = k == SIZE_MAX ? 0 : k, hi = k == SIZE_MAX ? noutputs : k + 1;
    uint64_t marked = jac__marked_at(ctx, x);
    for (size_t o = lo; o < hi; o++) {
        if (marked > outputs[o]->seq)
            return jac__error(
                ctx, JAC_ERR_UNUSED_INPUT,
                "%s: input %zu (shape %s) was marked with "
                "jac_set_requires_grad after output %zu (shape %s) was "
                "computed, so nothing recorded connects them: mark the input "
                "first, then compute the output",
                op, i, s2, o,
                jac__shape_str(s1, sizeof s1, outputs[o]->ndim,
                               outputs[o]->shape));
    }
    size_t o = 0;
    const jac_tensor *c = constant_output(outputs, lo, hi, x, &o);
    if (c != NULL && c->untracked)
        return jac__error(
            ctx, JAC_ERR_UNUSED_INPUT,
            "%s: output %zu (shape %s) has no history: it was computed with "
            "recording off (jac_set_grad_enabled(ctx, false), a pass without "
            "JAC_CREATE_GRAPH, or jac_detach), so input %zu (shape %s) does "
            "not reach it; compute it with recording on",
            op, o, jac__shape_str(s1, sizeof s1, c->ndim, c->shape), i, s2);
    /* Marked only after other tensors were made, perhaps from it; unless
     * the output in question is plainly a constant. */
    if (marked > x->seq + 1 && (k == SIZE_MAX || c == NULL))
        return jac__error(
            ctx, JAC_ERR_UNUSED_INPUT,
            "%s: input %zu (shape %s) reaches no output. It was marked with "
            "jac_set_requires_grad after other tensors were computed: if the "
            "outputs were computed from it before, mark it first and compute "
            "them again; if they do not use it, pass JAC_ALLOW_UNUSED for "
            "zeros",
            op, i, s2);
    if (c != NULL)
        return jac__error(
            ctx, JAC_ERR_UNUSED_INPUT,
            "%s: output %zu (shape %s) is a constant: no input requiring "
            "gradients went into it (as with the gradient of a function "
            "linear in input %zu, shape %s); pass JAC_ALLOW_UNUSED for zeros",
            op, o, jac__shape_str(s1, sizeof s1, c->ndim, c->shape), i, s2);
    if (k == SIZE_MAX)
        return jac__error(ctx, JAC_ERR_UNUSED_INPUT,
                          "%s: input %zu of shape %s is not used by the "
                          "outputs (pass JAC_ALLOW_UNUSED for a zero gradient)",
                          op, i, s2);
    return jac__error(
        ctx, JAC_ERR_UNUSED_INPUT,
        "%s: output %zu (shape %s) does not depend on input %zu "
        "(shape %s) (pass JAC_ALLOW_UNUSED for a zero block)",
        op, k,
        jac__shape_str(s1, sizeof s1, outputs[k]->ndim, outputs[k]->shape), i,
        s2);
}

/* ------------------------------------------------------------------------ */
/* Running a plan                                                           */
/* ------------------------------------------------------------------------ */

/* A cotangent under way: a tensor t (a seed, or a rule's result); or, in
 * an unrecorded pass, storage buf the run owns and may add into (which
 * becomes a result tensor without a copy); or, when buf is SLOT_INLINE, a
 * single number v held in the slot itself, so that chains of one-element ops
 * need no storage at all. Empty: t and buf both NULL. */
typedef struct slot {
    union {
        jac_tensor *t;
        double v;
    };
    jac__buf *buf;
} slot;

/* Only its address is used, as a buf no allocation can equal; it is never
 * written through. */
static const char slot_inline_tag;
#define SLOT_INLINE ((jac__buf *)(void *)&slot_inline_tag)

static bool slot_empty(const slot *s) { return s->buf == NULL && s->t == NULL; }

/* Storage of the run in the slot (not a tensor, not a number). */
static bool slot_owns(const slot *s)
{
    return s->buf != NULL && s->buf != SLOT_INLINE;
}

typedef struct run {
    jac_ctx *ctx;
    const char *op;
    bool create;
    int nbatch; /* batch axes in front of every cotangent */
    const int64_t *batch_shape;
    int64_t batch; /* their product */
    slot *slots;
    bool made_buffers; /* whether any slot may own storage */
    /* The slot whose cotangent has the seeds' one-hot form, or -1, and
     * that form. */
    int32_t onehot_slot;
    jac__onehot_rows onehot;
} run;

static double *slot_data(slot *s)
{
    if (s->buf == SLOT_INLINE)
        return &s->v;
    return s->buf ? JAC__BUF_DATA(s->buf) : s->t ? s->t->data : NULL;
}

static void slot_clear(run *r, slot *s)
{
    if (slot_owns(s))
        jac__buf_release(r->ctx, s->buf);
    s->buf = NULL;
    s->t = NULL;
}

/* Storage for batch stacked cotangents of numel elements. */
static jac__buf *buffer(run *r, int64_t numel)
{
    jac__buf *b =
        jac__buf_alloc(r->ctx, (size_t)(r->batch * numel) * sizeof(double));
    r->made_buffers = true;
    if (b == NULL)
        jac__error(r->ctx, JAC_ERR_NO_MEMORY, "%s: out of memory", r->op);
    return b;
}

/* acc[i] += d[i]. */
JAC__VECTORIZED static void add_into(double *acc, const double *d, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        acc[i] += d[i];
}

/* Adds storage the run owns into a slot (taking it over). */
static void add_buffer(run *r, slot *s, jac__buf *b, int64_t n)
{
    double *d = JAC__BUF_DATA(b);
    if (s->buf == SLOT_INLINE) { /* n == 1 */
        d[0] += s->v;
        s->t = NULL;
        s->buf = b;
        return;
    }
    if (s->buf) {
        add_into(JAC__BUF_DATA(s->buf), d, n);
        jac__buf_release(r->ctx, b);
        return;
    }
    if (s->t)
        add_into(d, s->t->data, n);
    s->t = NULL;
    s->buf = b;
}

/* Adds a tensor cotangent into a slot: recorded under create-graph, else by
 * plain arithmetic into storage of the run. */
static jac_status add_tensor(run *r, slot *s, jac_tensor *g)
{
    if (slot_empty(s)) {
        s->t = g;
        return JAC_OK;
    }
    if (s->buf == SLOT_INLINE) { /* only in unrecorded passes; one element */
        s->v += g->data[0];
        return JAC_OK;
    }
    if (r->create) {
        jac_tensor *sum = jac_add(r->ctx, s->t, g);
        if (sum == NULL)
            return r->ctx->status;
        s->t = sum;
        return JAC_OK;
    }
    if (s->buf) {
        add_into(JAC__BUF_DATA(s->buf), g->data, g->numel);
        return JAC_OK;
    }
    jac__buf *b = buffer(r, g->numel / (r->batch ? r->batch : 1));
    if (b == NULL)
        return r->ctx->status;
    memcpy(JAC__BUF_DATA(b), g->data, (size_t)g->numel * sizeof(double));
    add_buffer(r, s, b, g->numel);
    return JAC_OK;
}

/* The slot's cotangent as a tensor of shape batch ++ like.shape. */
static jac_tensor *slot_tensor(run *r, slot *s, const jac_tensor *like)
{
    if (s->buf == NULL)
        return s->t;
    int64_t shape[JAC_MAX_DIMS];
    int nd = r->nbatch + like->ndim;
    memcpy(shape, r->batch_shape, (size_t)r->nbatch * sizeof(int64_t));
    memcpy(shape + r->nbatch, like->shape,
           (size_t)like->ndim * sizeof(int64_t));
    if (s->buf == SLOT_INLINE) {
        double v = s->v;
        s->buf = NULL;
        s->t = jac__tensor_alloc(r->ctx, r->op, nd, shape);
        if (s->t)
            s->t->data[0] = v;
        return s->t;
    }
    jac__buf *b = s->buf;
    s->buf = NULL;
    s->t = jac__tensor_wrap(r->ctx, r->op, nd, shape, b);
    return s->t;
}

/* A rule must return batch ++ input shape; anything else is a library bug,
 * reported rather than allowed to corrupt memory later. */
static bool shape_is(const jac_tensor *g, const run *r, const jac_tensor *ref)
{
    if (g->ndim != r->nbatch + ref->ndim)
        return false;
    if (memcmp(g->shape, r->batch_shape, (size_t)r->nbatch * sizeof(int64_t)) !=
        0)
        return false;
    return memcmp(g->shape + r->nbatch, ref->shape,
                  (size_t)ref->ndim * sizeof(int64_t)) == 0;
}

/* Tries the raw kernel of an unrecorded pass (told when g is one-hot);
 * *done tells whether it ran. */
static jac_status step_raw(run *r, const jac__node *n, slot *g,
                           const int32_t *slots, bool *need, bool onehot,
                           bool *done)
{
    *done = false;
    jac__raw_fn *f = jac__ops[n->op].raw;
    if (f == NULL || n->nin > 2)
        return JAC_OK;
    jac__buf *b[2] = {NULL, NULL};
    double *gin[2] = {NULL, NULL};
    for (int j = 0; j < n->nin; j++) {
        if (!need[j])
            continue;
        if ((b[j] = buffer(r, n->in[j]->numel)) == NULL) {
            jac__buf_release(r->ctx, b[0]);
            return r->ctx->status;
        }
        gin[j] = JAC__BUF_DATA(b[j]);
    }
    *done = f(n, r->batch, slot_data(g), onehot ? &r->onehot : NULL, need, NULL,
              gin);
    for (int j = 0; j < n->nin; j++) {
        if (b[j] == NULL)
            continue;
        if (*done)
            add_buffer(r, &r->slots[slots[j]], b[j],
                       r->batch * n->in[j]->numel);
        else
            jac__buf_release(r->ctx, b[j]);
    }
    return JAC_OK;
}

/* Adds one number into a slot of a one-element cotangent. */
static void slot_add_scalar(slot *s, double x)
{
    if (s->buf == SLOT_INLINE) {
        s->v += x;
    } else if (s->buf) {
        JAC__BUF_DATA(s->buf)[0] += x;
    } else {
        s->v = s->t ? s->t->data[0] + x : x;
        s->buf = SLOT_INLINE;
    }
}

/* An unrecorded step whose needed inputs have one element each (and no
 * batch): the raw kernel writes their cotangents to the stack and they go
 * straight into the slots, with no storage. *done tells whether it ran. */
static void step_scalar(run *r, const jac__node *n, slot *g,
                        const int32_t *slots, const bool *need, bool *done)
{
    *done = false;
    jac__raw_fn *f = jac__ops[n->op].raw;
    if (f == NULL || n->nin > 2 || r->batch != 1)
        return;
    for (int j = 0; j < n->nin; j++)
        if (need[j] && n->in[j]->numel != 1)
            return;
    double v[2] = {0.0, 0.0};
    double *gin[2] = {&v[0], &v[1]};
    if (!f(n, 1, slot_data(g), NULL, need, NULL, gin))
        return;
    for (int j = 0; j < n->nin; j++)
        if (need[j])
            slot_add_scalar(&r->slots[slots[j]], v[j]);
    *done = true;
}

/* The common case of step_scalar, kept short: an elementwise op whose
 * inputs and output have one element each and whose partials were taken
 * when it ran; no tensor is touched. */
static inline bool step_one(run *r, const jac__node *n, slot *g,
                            const int32_t *slots)
{
    if (!n->has_partials)
        return false;
    double v[2], gv = *slot_data(g);
    v[0] = gv * n->partial[0];
    v[1] = gv * n->partial[1];
    if (slots[0] >= 0)
        slot_add_scalar(&r->slots[slots[0]], v[0]);
    if (n->nin == 2 && slots[1] >= 0)
        slot_add_scalar(&r->slots[slots[1]], v[1]);
    return true;
}

/* Runs the op's rule, written with differentiable ops. */
static jac_status step_rule(run *r, const jac__node *n, slot *g,
                            const int32_t *slots, const bool *need,
                            jac_tensor **gin)
{
    jac_tensor *gt = slot_tensor(r, g, n->out);
    if (gt == NULL)
        return r->ctx->status;
    for (int j = 0; j < n->nin; j++)
        gin[j] = NULL;
    jac_status st = jac__ops[n->op].rule(r->ctx, n, gt, need, gin);
    for (int j = 0; j < n->nin && st == JAC_OK; j++) {
        if (!need[j])
            continue;
        if (gin[j] == NULL || !shape_is(gin[j], r, n->in[j]))
            return jac__error(r->ctx, JAC_ERR_STATE,
                              "%s: internal error: the rule of '%s' gave a "
                              "gradient of the wrong shape",
                              r->op, jac__ops[n->op].name);
        st = add_tensor(r, &r->slots[slots[j]], gin[j]);
    }
    return st;
}

/* Anomaly mode: the gradients of n's inputs after its step must be
 * finite. */
static jac_status check_step(run *r, const jac__node *n, const int32_t *slots)
{
    for (int j = 0; j < n->nin; j++) {
        if (slots[j] < 0)
            continue;
        slot *s = &r->slots[slots[j]];
        const jac_tensor *x = n->in[j];
        int64_t count = s->buf == SLOT_INLINE ? 1
                        : s->buf              ? r->batch * x->numel
                        : s->t                ? s->t->numel
                                              : 0;
        const double *v = slot_data(s);
        if (count > 0 && !jac__all_finite(v, count))
            return jac__anomaly(r->ctx, "the backward of ",
                                jac__ops[n->op].name, n->out->node, v, count,
                                x->ndim, x->shape);
    }
    return JAC_OK;
}

/* Whether the one-hot form of g survives op n into input j unchanged (the
 * op's row says whether it copies g into that input) . */
static bool keeps_onehot(const jac__node *n, int j)
{
    return (jac__ops[n->op].onehot_inputs >> j & 1u) != 0 &&
           n->in[j]->numel == n->out->numel;
}

/* Before step n (output slot out): whether its cotangent is the one-hot
 * one; ends the form when the step adds into that slot; *copy_to gets the
 * input slot that will hold an exact copy of it, or -1. */
static bool onehot_step(run *r, const jac__node *n, int32_t out,
                        const int32_t *slots, int32_t *copy_to)
{
    bool onehot = out == r->onehot_slot;
    for (int j = 0; j < n->nin && r->onehot_slot >= 0; j++) {
        if (slots[j] == r->onehot_slot)
            r->onehot_slot = -1;
        else if (onehot && *copy_to < 0 && slots[j] >= 0 &&
                 slot_empty(&r->slots[slots[j]]) && keeps_onehot(n, j))
            *copy_to = slots[j];
    }
    if (n->nin == 2 && slots[0] == slots[1])
        *copy_to = -1; /* x + x: twice the one-hot, not a copy */
    return onehot;
}

jac_status jac__plan_run(jac_ctx *ctx, const char *op, const jac__plan *plan,
                         jac_tensor *const *seeds, unsigned flags,
                         jac_tensor **grads)
{
    return jac__plan_run_hinted(ctx, op, plan, seeds, flags, NULL, grads);
}

jac_status jac__plan_run_hinted(jac_ctx *ctx, const char *op,
                                const jac__plan *plan, jac_tensor *const *seeds,
                                unsigned flags, const jac__onehot *hint,
                                jac_tensor **grads)
{
    run r = {.ctx = ctx,
             .op = op,
             .create = (flags & JAC_CREATE_GRAPH) != 0,
             .batch = 1,
             .onehot_slot = -1};
    bool retain = r.create || (flags & JAC_RETAIN_GRAPH) != 0;
    for (size_t k = 0; k < plan->noutputs; k++) {
        if (seeds[k]) {
            r.nbatch = seeds[k]->ndim - plan->outputs[k]->ndim;
            r.batch_shape = seeds[k]->shape;
            for (int i = 0; i < r.nbatch; i++)
                r.batch *= seeds[k]->shape[i];
            break;
        }
    }
    size_t nneed = (size_t)plan->max_nin;
    size_t nvisited = plan->pruned ? 0 : plan->nsteps;
    size_t bytes = plan->nslots * sizeof(slot) +
                   nneed * (sizeof(jac_tensor *) + sizeof(bool)) + nvisited;
    void *scratch = jac__alloc(ctx, bytes ? bytes : 1);
    if (scratch == NULL)
        return jac__error(ctx, JAC_ERR_NO_MEMORY, "%s: out of memory", op);
    memset(scratch, 0, bytes ? bytes : 1);
    r.slots = scratch;
    jac_tensor **gin = (jac_tensor **)(r.slots + plan->nslots);
    bool *need = (bool *)(gin + nneed);
    bool *visited = nvisited ? need + nneed : NULL;

    bool was_enabled = ctx->grad_enabled;
    ctx->grad_enabled = r.create;
    jac_status st = JAC_OK;
    bool scalar_ok = !r.create && r.batch == 1;
    /* Whether a value was replaced in place since the oldest step was
     * recorded; only then is every step checked for stale inputs. */
    bool stale = plan->nsteps > plan->first_step &&
                 plan->tape->assigned_seq_max >
                     plan->steps[plan->first_step].node->out->seq;

    for (size_t k = 0; k < plan->noutputs && st == JAC_OK; k++)
        if (seeds[k] && plan->output_slot[k] >= 0)
            st = add_tensor(&r, &r.slots[plan->output_slot[k]], seeds[k]);
    if (hint && !r.create && hint->output < plan->noutputs &&
        seeds[hint->output] && plan->output_slot[hint->output] >= 0 &&
        hint->reps > 0 && r.batch == hint->count &&
        plan->outputs[hint->output]->numel % hint->reps == 0 &&
        /* the seed alone in its slot (no other output shares it) */
        r.slots[plan->output_slot[hint->output]].t == seeds[hint->output] &&
        r.slots[plan->output_slot[hint->output]].buf == NULL) {
        r.onehot_slot = plan->output_slot[hint->output];
        r.onehot =
            (jac__onehot_rows){hint->r0, hint->count, hint->reps,
                               plan->outputs[hint->output]->numel / hint->reps};
    }

    for (size_t i = plan->nsteps; i-- > plan->first_step && st == JAC_OK;) {
        const plan_step *s = &plan->steps[i];
        slot *g = &r.slots[s->out_slot];
        if (slot_empty(g))
            continue;
        const jac__node *n = s->node;
        if (visited)
            visited[i] = true;
        for (int j = 0; stale && j < n->nin; j++)
            if (n->in[j]->assigned_seq > n->out->seq) {
                st = stale_input(ctx, op, n, j);
                break;
            }
        if (st != JAC_OK)
            break;
        if (n->released) {
            st = jac__error(ctx, JAC_ERR_RELEASED,
                            "%s: the graph through '%s' was already released "
                            "by an earlier pass; pass JAC_RETAIN_GRAPH to "
                            "that pass to run another",
                            op, jac__ops[n->op].name);
            break;
        }
        const int32_t *slots = plan->in_slots + s->first_in;
        /* A one-hot cotangent stays one only until something else is added
         * to it; a copy of it into an empty input slot is one too. */
        bool onehot = false;
        int32_t copy_to = -1;
        if (r.onehot_slot >= 0)
            onehot = onehot_step(&r, n, s->out_slot, slots, &copy_to);
        bool done = scalar_ok && step_one(&r, n, g, slots);
        for (int j = 0; j < n->nin && !done; j++)
            need[j] = slots[j] >= 0;
        if (!r.create && !done)
            step_scalar(&r, n, g, slots, need, &done);
        if (!r.create && !done)
            st = step_raw(&r, n, g, slots, need, onehot, &done);
        if (onehot)
            r.onehot_slot = done ? copy_to : -1;
        if (st == JAC_OK && !done)
            st = step_rule(&r, n, g, slots, need, gin);
        if (st == JAC_OK && (ctx->checks & JAC_CHECK_ANOMALY))
            st = check_step(&r, n, slots);
        /* Every consumer of this tensor is newer, so its cotangent is
         * complete and no longer needed, unless the tensor is an input too
         * (made from another input): then it is a result. */
        if (s->out_slot >= plan->ninput_slots)
            slot_clear(&r, g);
    }
    ctx->grad_enabled = was_enabled;

    for (size_t i = 0; i < plan->ninputs && st == JAC_OK; i++) {
        slot *x = &r.slots[plan->input_slot[i]];
        grads[i] = NULL;
        if (slot_empty(x))
            continue;
        if ((grads[i] = slot_tensor(&r, x, plan->inputs[i])) == NULL)
            st = ctx->status;
    }
    if (st == JAC_OK && !retain && ctx == plan->tape)
        for (size_t i = plan->first_step; i < plan->nsteps; i++)
            if (visited == NULL || visited[i])
                plan->steps[i].node->released = true;
    for (size_t i = 0; r.made_buffers && i < plan->nslots; i++)
        if (slot_owns(&r.slots[i]))
            jac__buf_release(ctx, r.slots[i].buf);
    jac__free(ctx, scratch, bytes ? bytes : 1);
    return st;
}

/* ------------------------------------------------------------------------ */
/* jac_grad                                                                 */
/* ------------------------------------------------------------------------ */

static bool same_shape(const jac_tensor *t, int offset, const jac_tensor *ref)
{
    return t->ndim == offset + ref->ndim &&
           memcmp(t->shape + offset, ref->shape,
                  (size_t)ref->ndim * sizeof(int64_t)) == 0;
}

/* Checks the outputs and seeds and fills seeds_out (one-element outputs
 * without a seed get 1). */
static jac_status prepare_seeds(jac_ctx *ctx, const char *op, size_t noutputs,
                                jac_tensor *const *outputs,
                                jac_tensor *const *grad_outputs, unsigned flags,
                                jac_tensor **seeds_out)
{
    bool batched = (flags & JAC_BATCHED_SEEDS) != 0;
    int64_t batch = -1;
    char s1[JAC__SHAPE_STR_MAX], s2[JAC__SHAPE_STR_MAX];
    for (size_t k = 0; k < noutputs; k++) {
        jac_tensor *y = outputs[k];
        jac_status st = jac__check_named(ctx, op, y, "output", k);
        if (st != JAC_OK)
            return st;
        jac_tensor *seed = grad_outputs ? grad_outputs[k] : NULL;
        if (seed == NULL) {
            if (batched)
                return jac__error(ctx, JAC_ERR_NO_SEED,
                                  "%s: output %zu has no seed, which "
                                  "JAC_BATCHED_SEEDS requires",
                                  op, k);
            if (y->numel != 1)
                return jac__error(
                    ctx, JAC_ERR_NO_SEED,
                    "%s: output %zu of shape %s has %lld elements and needs "
                    "a seed in grad_outputs",
                    op, k, jac__shape_str(s1, sizeof s1, y->ndim, y->shape),
                    (long long)y->numel);
            seeds_out[k] = jac_ones(ctx, y->ndim, y->shape);
            if (seeds_out[k] == NULL)
                return ctx->status;
            continue;
        }
        if (!jac__check_arg(ctx, op, seed))
            return JAC_ERR_CONTEXT;
        if (!same_shape(seed, batched ? 1 : 0, y) ||
            (batched && batch >= 0 && seed->shape[0] != batch))
            return jac__error(
                ctx, JAC_ERR_SEED_SHAPE,
                "%s: seed %zu has shape %s but output %zu has shape %s%s", op,
                k, jac__shape_str(s1, sizeof s1, seed->ndim, seed->shape), k,
                jac__shape_str(s2, sizeof s2, y->ndim, y->shape),
                batched ? " (with JAC_BATCHED_SEEDS the seed is (B, ...) with "
                          "one B for all outputs)"
                        : "");
        if (batched)
            batch = seed->shape[0];
        seeds_out[k] = seed;
    }
    return JAC_OK;
}

/* Zeros of shape batch ++ x.shape. */
static jac_tensor *zeros_like_batched(jac_ctx *ctx, const jac_tensor *x,
                                      int64_t batch)
{
    int64_t s[JAC_MAX_DIMS + 1];
    int n = 0;
    if (batch >= 0)
        s[n++] = batch;
    memcpy(s + n, x->shape, (size_t)x->ndim * sizeof(int64_t));
    if (n + x->ndim > JAC_MAX_DIMS) {
        jac__error(ctx, JAC_ERR_RANK, "grad: batched gradient exceeds rank %d",
                   JAC_MAX_DIMS);
        return NULL;
    }
    return jac_zeros(ctx, n + x->ndim, s);
}

static jac_status grad_impl(jac_ctx *ctx, const char *op, size_t noutputs,
                            jac_tensor *const *outputs,
                            jac_tensor *const *grad_outputs, size_t ninputs,
                            jac_tensor *const *inputs, unsigned flags,
                            jac_tensor **grads)
{
    char s[JAC__SHAPE_STR_MAX];
    if (noutputs == 0 || outputs == NULL)
        return jac__error(ctx, JAC_ERR_NULL_ARG, "%s: no outputs given", op);
    if (ninputs == 0 || inputs == NULL || grads == NULL)
        return jac__error(ctx, JAC_ERR_NULL_ARG,
                          "%s: no inputs or no place for the gradients", op);
    size_t bad;
    jac_status checked = jac__check_inputs(ctx, op, ninputs, inputs, &bad);
    if (checked != JAC_OK)
        return checked;
    if (bad < ninputs)
        return jac__error(
            ctx, JAC_ERR_NO_GRAD,
            "%s: input %zu of shape %s does not require gradients (call "
            "jac_set_requires_grad on it before using it)",
            op, bad,
            jac__shape_str(s, sizeof s, inputs[bad]->ndim, inputs[bad]->shape));

    jac_scope mark = jac_scope_begin(ctx);
    jac_tensor *stack_buf[16];
    size_t need_bytes = (noutputs + ninputs) * sizeof(jac_tensor *);
    jac_tensor **work =
        noutputs + ninputs <= 16 ? stack_buf : jac__alloc(ctx, need_bytes);
    if (work == NULL)
        return jac__error(ctx, JAC_ERR_NO_MEMORY, "%s: out of memory", op);
    jac_tensor **seeds = work, **res = work + noutputs;
    jac__plan *plan = NULL;
    jac_status st =
        prepare_seeds(ctx, op, noutputs, outputs, grad_outputs, flags, seeds);
    if (st == JAC_OK)
        st = jac__plan_build_ex(ctx, op, noutputs, outputs, ninputs, inputs,
                                false, &plan); /* run once: no pruning */
    if (st == JAC_OK)
        st = jac__plan_run(ctx, op, plan, seeds, flags, res);
    int64_t batch =
        st == JAC_OK && (flags & JAC_BATCHED_SEEDS) ? seeds[0]->shape[0] : -1;
    for (size_t i = 0; i < ninputs && st == JAC_OK; i++) {
        if (res[i])
            continue;
        if (!(flags & JAC_ALLOW_UNUSED)) {
            st = jac__unreached(ctx, op, noutputs, outputs, SIZE_MAX, i,
                                inputs[i]);
            break;
        }
        res[i] = zeros_like_batched(ctx, inputs[i], batch);
        if (res[i] == NULL)
            st = ctx->status;
    }
    jac__plan_free(ctx, plan);

    if (st != JAC_OK) {
        jac_scope_end(ctx, mark, NULL, 0);
    } else {
        if (!(flags & JAC_CREATE_GRAPH))
            jac_scope_end(ctx, mark, res, ninputs);
        memcpy(grads, res, ninputs * sizeof(jac_tensor *));
    }
    if (work != stack_buf)
        jac__free(ctx, work, need_bytes);
    return st;
}

static jac_status grad_unguarded(jac_ctx *ctx, size_t noutputs,
                                 jac_tensor *const *outputs,
                                 jac_tensor *const *grad_outputs,
                                 size_t ninputs, jac_tensor *const *inputs,
                                 unsigned flags, jac_tensor **grads)
{
    if (ctx == NULL)
        return JAC_ERR_NULL_ARG;
    return grad_impl(ctx, "grad", noutputs, outputs, grad_outputs, ninputs,
                     inputs, flags, grads);
}

/* One thread at a time: see jac__enter. */
jac_status jac_grad(jac_ctx *ctx, size_t noutputs, jac_tensor *const *outputs,
                    jac_tensor *const *grad_outputs, size_t ninputs,
                    jac_tensor *const *inputs, unsigned flags,
                    jac_tensor **grads)
{
    JAC__HELD(ctx, jac_status, JAC_ERR_STATE,
              grad_unguarded(ctx, noutputs, outputs, grad_outputs, ninputs,
                             inputs, flags, grads));
}

/* ------------------------------------------------------------------------ */
/* jac_backward                                                             */
/* ------------------------------------------------------------------------ */

/* The leaves requiring gradients that y depends on, oldest first. */
static jac_status collect_leaves(jac_ctx *ctx, jac_tensor *y,
                                 jac_tensor ***leaves, size_t *nleaves,
                                 size_t *cap)
{
    uint64_t id = ctx->next_plan_id++;
    y->stamp = id;
    *nleaves = 0;
    if (y->node < 0) {
        if (y->requires_grad) {
            if (jac__grow(ctx, (void **)leaves, cap, 1, sizeof(jac_tensor *)) !=
                JAC_OK)
                return JAC_ERR_NO_MEMORY;
            (*leaves)[(*nleaves)++] = y;
        }
        return JAC_OK;
    }
    for (int64_t t = y->node; t >= 0; t--) {
        jac__node *n = jac__node_at(ctx, t);
        if (n->out->stamp != id)
            continue;
        for (int j = 0; j < n->nin; j++) {
            jac_tensor *x = n->in[j];
            if (!x->requires_grad || x->stamp == id)
                continue;
            x->stamp = id;
            if (x->node >= 0)
                continue;
            if (jac__grow(ctx, (void **)leaves, cap, *nleaves + 1,
                          sizeof(jac_tensor *)) != JAC_OK)
                return JAC_ERR_NO_MEMORY;
            (*leaves)[(*nleaves)++] = x;
        }
    }
    return JAC_OK;
}

/* Whether jac_backward may add g into the accumulated gradient acc in place:
 * acc is a plain leaf that shares its storage with nothing. */
static bool grad_in_place(const jac_tensor *acc, const jac_tensor *g,
                          bool create)
{
    return !create && acc->node < 0 && jac__sole_owner(acc) &&
           acc->ndim == g->ndim;
}

static jac_status backward_unguarded(jac_ctx *ctx, jac_tensor *output,
                                     jac_tensor *seed, unsigned flags)
{
    if (ctx == NULL)
        return JAC_ERR_NULL_ARG;
    jac_status named = jac__check_named(ctx, "backward", output, "output", 0);
    if (named != JAC_OK)
        return named;
    if (flags & (JAC_ALLOW_UNUSED | JAC_BATCHED_SEEDS))
        return jac__error(ctx, JAC_ERR_VALUE,
                          "backward: JAC_ALLOW_UNUSED and JAC_BATCHED_SEEDS "
                          "do not apply");
    jac_tensor **leaves = NULL;
    size_t nleaves = 0, cap = 0;
    if (collect_leaves(ctx, output, &leaves, &nleaves, &cap) != JAC_OK) {
        jac__free(ctx, leaves, cap * sizeof(jac_tensor *));
        return jac__error(ctx, JAC_ERR_NO_MEMORY, "backward: out of memory");
    }
    if (nleaves == 0) {
        jac__free(ctx, leaves, cap * sizeof(jac_tensor *));
        return jac__error(ctx, JAC_ERR_NO_GRAD,
                          "backward: the output depends on no leaf that "
                          "requires gradients");
    }
    size_t gbytes = nleaves * sizeof(jac_tensor *);
    jac_tensor **g = jac__alloc(ctx, gbytes);
    if (g == NULL) {
        jac__free(ctx, leaves, cap * sizeof(jac_tensor *));
        return jac__error(ctx, JAC_ERR_NO_MEMORY, "backward: out of memory");
    }
    jac_scope mark = jac_scope_begin(ctx);
    jac_status st = grad_impl(ctx, "backward", 1, &output, &seed, nleaves,
                              leaves, flags, g);
    bool create = (flags & JAC_CREATE_GRAPH) != 0;
    /* Two phases, so that a failure changes no .grad: first every new
     * .grad tensor is made (into g), then the in-place sums and the
     * assignments, which cannot fail. */
    for (size_t i = 0; i < nleaves && st == JAC_OK; i++) {
        jac_tensor *acc = leaves[i]->grad;
        if (acc == NULL) {
            if (!create)
                g[i] = jac_tensor_copy(ctx, g[i]);
        } else if (!grad_in_place(acc, g[i], create)) {
            bool was = jac_set_grad_enabled(ctx, create);
            g[i] = jac_add(ctx, acc, g[i]);
            jac_set_grad_enabled(ctx, was);
        }
        if (g[i] == NULL)
            st = ctx->status;
    }
    for (size_t i = 0; i < nleaves && st == JAC_OK; i++) {
        jac_tensor *x = leaves[i], *acc = x->grad;
        if (acc != NULL && grad_in_place(acc, g[i], create)) {
            for (int64_t e = 0; e < acc->numel; e++)
                acc->data[e] += g[i]->data[e];
        } else {
            jac__set_grad(x, g[i]);
        }
    }
    /* The new .grad tensors survive (scopes keep the .grad of survivors);
     * the pass's other results go. Under create-graph the graph stays,
     * unless the pass failed. */
    if (st != JAC_OK || !create)
        jac_scope_end(ctx, mark, NULL, 0);
    jac__free(ctx, g, gbytes);
    jac__free(ctx, leaves, cap * sizeof(jac_tensor *));
    return st;
}

/* One thread at a time: see jac__enter. */
jac_status jac_backward(jac_ctx *ctx, jac_tensor *output, jac_tensor *seed,
                        unsigned flags)
{
    JAC__HELD(ctx, jac_status, JAC_ERR_STATE,
              backward_unguarded(ctx, output, seed, flags));
}
