/*
 * The NLopt adapter: NLopt's objective and constraint callbacks evaluate a
 * recorded function (jac_program) through the public API only. Each call
 * checks NLopt's sizes against the program's shapes first, so that a
 * mismatch is a status, never a number computed from the wrong buffer.
 *
 * SPDX-License-Identifier: MIT
 */
#include "jacobian_nlopt.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

/* Keeps the first failure of state and stops its optimiser. */
static void fail(jac_nlopt *state, jac_status status, const char *format, ...)
{
    if (state->status == JAC_OK) {
        va_list args;
        va_start(args, format);
        state->status = status;
        (void)vsnprintf(state->message, sizeof state->message, format, args);
        va_end(args);
    }
    if (state->opt != NULL)
        (void)nlopt_force_stop(state->opt);
}

static void fill_nan(double *values, size_t count)
{
    if (values == NULL)
        return;
    for (size_t i = 0; i < count; i++)
        values[i] = NAN;
}

/* Checks the program of state against n inputs and m outputs and sets up
 * args (x, then the parameters). Returns 0 (after fail) on a mismatch. */
static int prepare(jac_nlopt *state, const char *who, unsigned m, unsigned n,
                   const double *x, const double **args)
{
    const jac_program *program = state->program;
    if (program == NULL || x == NULL) {
        fail(state, JAC_ERR_NULL_ARG, "%s: %s is NULL", who,
             program == NULL ? "the program" : "x");
        return 0;
    }
    int64_t in = 0, out = 0;
    size_t ninputs = jac_program_count(program, 'i');
    size_t noutputs = jac_program_count(program, 'o');
    size_t nparams = jac_program_count(program, 'p');
    if (ninputs != 1 || noutputs != 1) {
        fail(state, JAC_ERR_SHAPE,
             "%s: the program has %zu inputs and %zu outputs; the adapter "
             "takes one of each",
             who, ninputs, noutputs);
        return 0;
    }
    (void)jac_program_shape(program, 'i', 0, NULL, &in);
    (void)jac_program_shape(program, 'o', 0, NULL, &out);
    if (in != (int64_t)n || out != (int64_t)m) {
        fail(state, JAC_ERR_SHAPE,
             "%s: NLopt passes n = %u, m = %u; the program's input has %lld "
             "elements and its output %lld",
             who, n, m, (long long)in, (long long)out);
        return 0;
    }
    if (nparams > JAC_NLOPT_MAX_PARAMS) {
        fail(state, JAC_ERR_VALUE,
             "%s: the program has %zu parameters, more than %d", who, nparams,
             JAC_NLOPT_MAX_PARAMS);
        return 0;
    }
    args[0] = x;
    for (size_t k = 0; k < nparams; k++) {
        if (state->params == NULL || state->params[k] == NULL) {
            fail(state, JAC_ERR_NULL_ARG,
                 "%s: the program has %zu parameters; params[%zu] is NULL", who,
                 nparams, k);
            return 0;
        }
        args[k + 1] = state->params[k];
    }
    return 1;
}

double jac_nlopt_objective(unsigned n, const double *x, double *grad,
                           void *data)
{
    jac_nlopt *state = data;
    if (state == NULL) {
        fill_nan(grad, n);
        return NAN;
    }
    state->evaluations++;
    if (grad != NULL)
        state->gradients++;
    const double *args[JAC_NLOPT_MAX_PARAMS + 1];
    if (!prepare(state, "jac_nlopt_objective", 1, n, x, args)) {
        fill_nan(grad, n);
        return NAN;
    }
    double value = NAN;
    double *outputs[1] = {&value};
    jac_status status;
    if (grad == NULL) {
        status = jac_program_eval(state->program, args, outputs);
    } else {
        double *grads[1] = {grad};
        status = jac_program_vjp(state->program, args, NULL, outputs, grads);
    }
    if (status != JAC_OK) {
        fail(state, status, "jac_nlopt_objective: %s", jac_program_errmsg());
        fill_nan(grad, n);
        return NAN;
    }
    return value;
}

double jac_nlopt_constraint(unsigned n, const double *x, double *grad,
                            void *data)
{
    return jac_nlopt_objective(n, x, grad, data);
}

void jac_nlopt_mconstraint(unsigned m, double *result, unsigned n,
                           const double *x, double *grad, void *data)
{
    jac_nlopt *state = data;
    size_t entries = (size_t)m * n;
    if (state == NULL) {
        fill_nan(result, m);
        fill_nan(grad, entries);
        return;
    }
    state->evaluations++;
    if (grad != NULL)
        state->gradients++;
    const double *args[JAC_NLOPT_MAX_PARAMS + 1];
    if (result == NULL) {
        fail(state, JAC_ERR_NULL_ARG, "jac_nlopt_mconstraint: result is NULL");
        fill_nan(grad, entries);
        return;
    }
    if (!prepare(state, "jac_nlopt_mconstraint", m, n, x, args)) {
        fill_nan(result, m);
        fill_nan(grad, entries);
        return;
    }
    double *outputs[1] = {result};
    jac_status status;
    if (grad == NULL) {
        status = jac_program_eval(state->program, args, outputs);
    } else {
        double *J[1] = {grad};
        status = jac_program_jacobian(state->program, args, outputs, J);
    }
    if (status != JAC_OK) {
        fail(state, status, "jac_nlopt_mconstraint: %s", jac_program_errmsg());
        fill_nan(result, m);
        fill_nan(grad, entries);
    }
}
