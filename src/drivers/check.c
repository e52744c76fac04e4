/*
 * Derivative checks against central finite differences.
 *
 * SPDX-License-Identifier: MIT
 */
#include "drivers/drivers.h"

#include <math.h>

static jac_check_opts resolve_opts(const jac_check_opts *opts)
{
    jac_check_opts o = {1e-6, 1e-5, 1e-3, 0};
    if (opts) {
        if (opts->eps > 0)
            o.eps = opts->eps;
        if (opts->atol >= 0)
            o.atol = opts->atol;
        if (opts->rtol >= 0)
            o.rtol = opts->rtol;
        o.seed = opts->seed;
    }
    return o;
}

static jac_status check_args(jac_ctx *ctx, const char *op, jac_fn fn,
                             size_t ninputs, jac_tensor *const *inputs,
                             size_t noutputs)
{
    if (fn == NULL || inputs == NULL || ninputs == 0 || noutputs == 0)
        return jac__error(ctx, JAC_ERR_NULL_ARG,
                          "%s: needs a function, inputs and outputs", op);
    size_t bad;
    jac_status checked = jac__check_inputs(ctx, op, ninputs, inputs, &bad);
    if (checked != JAC_OK || bad == ninputs)
        return checked;
    return jac__error(ctx, JAC_ERR_NO_GRAD,
                      "%s: input %zu does not require gradients", op, bad);
}

/* Compares the analytic Jacobian blocks with central differences, one input
 * element at a time. Inputs are perturbed in place and restored exactly. */
static jac_status gradcheck_impl(jac_ctx *ctx, const char *op, jac_fn fn,
                                 void *user, size_t ninputs,
                                 jac_tensor *const *inputs, size_t noutputs,
                                 const jac_check_opts *o)
{
    size_t obytes = 3 * noutputs * sizeof(jac_tensor *);
    jac_tensor **outs = jac__alloc(ctx, obytes);
    if (outs == NULL)
        return jac__error(ctx, JAC_ERR_NO_MEMORY, "%s: out of memory", op);
    jac_tensor **plus = outs + noutputs, **minus = plus + noutputs;
    jac_status st =
        jac__call_fn(ctx, op, fn, user, inputs, noutputs, outs, true);
    for (size_t i = 0; i < ninputs && st == JAC_OK; i++) {
        jac_tensor *x = inputs[i];
        for (size_t k = 0; k < noutputs && st == JAC_OK; k++) {
            jac_scope mark = jac_scope_begin(ctx);
            jac_tensor *J = jac_jacobian(ctx, outs[k], x, JAC_ALLOW_UNUSED);
            if (J == NULL) {
                st = ctx->status;
                break;
            }
            int64_t ny = outs[k]->numel;
            for (int64_t e = 0; e < x->numel && st == JAC_OK; e++) {
                jac_scope inner = jac_scope_begin(ctx);
                double orig = x->data[e];
                x->data[e] = orig + o->eps;
                st = jac__call_fn(ctx, op, fn, user, inputs, noutputs, plus,
                                  false);
                /* An output may share the input's storage (a reshape):
                 * keep its values before the input changes again. */
                for (size_t q = 0; q < noutputs && st == JAC_OK; q++)
                    if ((plus[q] = jac_tensor_copy(ctx, plus[q])) == NULL)
                        st = ctx->status;
                x->data[e] = orig - o->eps;
                if (st == JAC_OK)
                    st = jac__call_fn(ctx, op, fn, user, inputs, noutputs,
                                      minus, false);
                for (size_t q = 0; q < noutputs && st == JAC_OK; q++)
                    if ((minus[q] = jac_tensor_copy(ctx, minus[q])) == NULL)
                        st = ctx->status;
                x->data[e] = orig;
                for (int64_t r = 0; r < ny && st == JAC_OK; r++) {
                    double num =
                        (plus[k]->data[r] - minus[k]->data[r]) / (2.0 * o->eps);
                    double ana = J->data[r * x->numel + e];
                    bool bad =
                        !(fabs(ana - num) <= o->atol + o->rtol * fabs(num));
                    if (bad && !(isnan(ana) && isnan(num)))
                        st = jac__error(
                            ctx, JAC_ERR_CHECK_FAILED,
                            "%s: d output %zu [element %lld] / d input %zu "
                            "[element %lld]: analytic %.10g, numeric %.10g",
                            op, k, (long long)r, i, (long long)e, ana, num);
                }
                jac_scope_end(ctx, inner, NULL, 0);
            }
            jac_scope_end(ctx, mark, NULL, 0);
        }
    }
    jac__free(ctx, outs, obytes);
    return st;
}

static jac_status gradcheck_unguarded(jac_ctx *ctx, jac_fn fn, void *user,
                                      size_t ninputs, jac_tensor *const *inputs,
                                      size_t noutputs,
                                      const jac_check_opts *opts)
{
    if (ctx == NULL)
        return JAC_ERR_NULL_ARG;
    jac_status st = check_args(ctx, "gradcheck", fn, ninputs, inputs, noutputs);
    if (st != JAC_OK)
        return st;
    jac_check_opts o = resolve_opts(opts);
    jac_scope mark = jac_scope_begin(ctx);
    st = gradcheck_impl(ctx, "gradcheck", fn, user, ninputs, inputs, noutputs,
                        &o);
    jac_scope_end(ctx, mark, NULL, 0);
    return st;
}

/* One thread at a time: see jac__enter. */
jac_status jac_gradcheck(jac_ctx *ctx, jac_fn fn, void *user, size_t ninputs,
                         jac_tensor *const *inputs, size_t noutputs,
                         const jac_check_opts *opts)
{
    JAC__HELD(
        ctx, jac_status, JAC_ERR_STATE,
        gradcheck_unguarded(ctx, fn, user, ninputs, inputs, noutputs, opts));
}

/* ------------------------------------------------------------------------ */
/* gradgradcheck                                                            */
/* ------------------------------------------------------------------------ */

/* The function whose first derivatives are fn's second derivatives:
 * inputs -> grad(sum_k <fn_k(inputs), v_k>, inputs), recorded. */
typedef struct vjp_closure {
    jac_fn fn;
    void *user;
    size_t ninputs, noutputs;
    jac_tensor **seeds;
    jac_tensor **outs;
} vjp_closure;

static jac_status vjp_fn(jac_ctx *ctx, jac_tensor *const *inputs,
                         jac_tensor **outputs, void *user)
{
    vjp_closure *c = user;
    bool was = jac_set_grad_enabled(ctx, true);
    jac_status st = jac__call_fn(ctx, "gradgradcheck", c->fn, c->user, inputs,
                                 c->noutputs, c->outs, true);
    if (st == JAC_OK)
        st = jac_grad(ctx, c->noutputs, c->outs, c->seeds, c->ninputs, inputs,
                      JAC_CREATE_GRAPH | JAC_ALLOW_UNUSED, outputs);
    jac_set_grad_enabled(ctx, was);
    return st;
}

/* splitmix64: small, fast and the same on every machine. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static jac_status gradgradcheck_unguarded(jac_ctx *ctx, jac_fn fn, void *user,
                                          size_t ninputs,
                                          jac_tensor *const *inputs,
                                          size_t noutputs,
                                          const jac_check_opts *opts)
{
    if (ctx == NULL)
        return JAC_ERR_NULL_ARG;
    jac_status st =
        check_args(ctx, "gradgradcheck", fn, ninputs, inputs, noutputs);
    if (st != JAC_OK)
        return st;
    jac_check_opts o = resolve_opts(opts);
    size_t bytes = 2 * noutputs * sizeof(jac_tensor *);
    jac_tensor **work = jac__alloc(ctx, bytes);
    if (work == NULL)
        return jac__error(ctx, JAC_ERR_NO_MEMORY,
                          "gradgradcheck: out of memory");
    vjp_closure c = {fn, user, ninputs, noutputs, work, work + noutputs};
    jac_scope mark = jac_scope_begin(ctx);
    st = jac__call_fn(ctx, "gradgradcheck", fn, user, inputs, noutputs, c.outs,
                      true);
    uint64_t state = o.seed ^ 0x6a61636f6269616eull;
    for (size_t k = 0; k < noutputs && st == JAC_OK; k++) {
        jac_tensor *v = jac_zeros(ctx, c.outs[k]->ndim, c.outs[k]->shape);
        if (v == NULL) {
            st = ctx->status;
            break;
        }
        for (int64_t e = 0; e < v->numel; e++)
            v->data[e] = (double)(next_random(&state) >> 11) * 0x1.0p-52 - 1.0;
        c.seeds[k] = v;
    }
    if (st == JAC_OK)
        st = gradcheck_impl(ctx, "gradgradcheck", vjp_fn, &c, ninputs, inputs,
                            ninputs, &o);
    jac_scope_end(ctx, mark, NULL, 0);
    jac__free(ctx, work, bytes);
    return st;
}

/* One thread at a time: see jac__enter. */
jac_status jac_gradgradcheck(jac_ctx *ctx, jac_fn fn, void *user,
                             size_t ninputs, jac_tensor *const *inputs,
                             size_t noutputs, const jac_check_opts *opts)
{
    JAC__HELD(ctx, jac_status, JAC_ERR_STATE,
              gradgradcheck_unguarded(ctx, fn, user, ninputs, inputs, noutputs,
                                      opts));
}
