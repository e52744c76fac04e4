/**
 * @file
 * libjacobian's NLopt adapter: the objective and constraint callbacks of
 * NLopt (nlopt.h) from recorded functions (jac_program), with gradients
 * only when NLopt asks for them.
 *
 * Link with -ljacobian_nlopt -ljacobian -lnlopt (CMake:
 * jacobian::jacobian_nlopt and jacobian::jacobian; pkg-config:
 * jacobian-nlopt). The adapter is built only when CMake finds NLopt; the
 * core library never depends on it.
 *
 * Use: record the function with one input of n elements (the optimisation
 * variable x) and any parameters, fill a jac_nlopt with the program (and
 * the parameter buffers and the optimiser, if any), and pass the callback
 * with the jac_nlopt as its data:
 *
 *     jac_nlopt obj = {.program = f, .opt = opt};
 *     nlopt_set_min_objective(opt, jac_nlopt_objective, &obj);
 *     nlopt_result r = nlopt_optimize(opt, x, &fmin);
 *     if (obj.status != JAC_OK) ... obj.message says why ...
 *
 * NLopt callbacks cannot return an error. When an evaluation fails (a
 * shape that does not match the program's, a failed replay), the adapter
 * keeps the first failure in status and message, calls nlopt_force_stop on
 * opt when it is set (nlopt_optimize then returns NLOPT_FORCED_STOP), and
 * hands NLopt NaN values (and NaN gradients) rather than numbers that
 * could pass for results. Check status after nlopt_optimize.
 *
 * A jac_nlopt is the state of one callback: give each objective and each
 * constraint its own, and do not share one between threads. The program
 * itself may be shared.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JACOBIAN_NLOPT_H
#define JACOBIAN_NLOPT_H

#include <jacobian.h>
#include <nlopt.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * @def JAC_NLOPT_API
 * Marks the functions the adapter library exports, as JAC_API does for the
 * core library.
 */
#if defined(JAC_STATIC_DEFINE)
#define JAC_NLOPT_API
#elif defined(_WIN32)
#ifdef JAC_NLOPT_BUILDING_LIBRARY
#define JAC_NLOPT_API __declspec(dllexport)
#else
#define JAC_NLOPT_API __declspec(dllimport)
#endif
#elif defined(__GNUC__) && __GNUC__ >= 4
#define JAC_NLOPT_API __attribute__((visibility("default")))
#else
#define JAC_NLOPT_API
#endif

/** The most parameters a program given to the adapter may have. */
#define JAC_NLOPT_MAX_PARAMS 63

/** The length of jac_nlopt's message, with its terminating zero. */
#define JAC_NLOPT_MESSAGE_MAX 256

/**
 * The state of one NLopt callback, passed as its data. Fill the first
 * three members (a designated initialiser leaves the others zero, as they
 * must start); the adapter writes the others.
 */
typedef struct jac_nlopt {
    /** The recorded function: exactly one input (x, of n elements) and one
     *  output (one element for an objective, m for a vector constraint).
     *  Not owned: the caller frees it after the optimisation. */
    jac_program *program;
    /** One buffer per parameter of the program, in order (each of the
     *  parameter's numel values), read at every call, so that they may be
     *  changed between optimisations; NULL when the program has none.
     *  Not owned. */
    const double *const *params;
    /** The optimiser to stop on a failed evaluation (nlopt_force_stop);
     *  may be NULL, and then only NaN values tell NLopt. Not owned. */
    nlopt_opt opt;
    /** JAC_OK, or the first failure of an evaluation: JAC_ERR_NULL_ARG (no
     *  program, or parameters missing), JAC_ERR_SHAPE (n or m does not
     *  match the program), JAC_ERR_VALUE (too many parameters), or the
     *  status of the failed jac_program_* call. Kept until reset to
     *  JAC_OK by the caller. */
    jac_status status;
    /** What failed, in one line ("" while status is JAC_OK). */
    char message[JAC_NLOPT_MESSAGE_MAX];
    /** Calls of the callback so far (with and without gradient). */
    unsigned long evaluations;
    /** Calls of the callback that asked for the gradient or Jacobian. */
    unsigned long gradients;
} jac_nlopt;

/**
 * NLopt objective (nlopt_func) of a recorded scalar function: data is a
 * jac_nlopt whose program has one input of n elements and one output of
 * one element. Returns f(x); when grad is not NULL, also writes the n
 * elements of the gradient into grad, by one reverse pass
 * (jac_program_vjp); when grad is NULL, evaluates the value only
 * (jac_program_eval). x and grad are NLopt's; nothing is allocated once
 * the program's first call of each kind has run. On failure (see
 * jac_nlopt::status) returns NaN, fills grad with NaN and stops opt.
 */
JAC_NLOPT_API double jac_nlopt_objective(unsigned n, const double *x,
                                         double *grad, void *data);

/**
 * NLopt vector constraint (nlopt_mfunc, for
 * nlopt_add_inequality_mconstraint and nlopt_add_equality_mconstraint) of
 * a recorded function: data is a jac_nlopt whose program has one input of
 * n elements and one output of m elements. Writes c(x) into result (m
 * values); when grad is not NULL, also writes the Jacobian, m rows of n
 * (row-major, grad[i * n + j] = d c_i / d x_j, NLopt's layout), by
 * jac_program_jacobian. On failure (see jac_nlopt::status) fills result
 * (and grad) with NaN and stops opt.
 */
JAC_NLOPT_API void jac_nlopt_mconstraint(unsigned m, double *result, unsigned n,
                                         const double *x, double *grad,
                                         void *data);

/**
 * NLopt scalar constraint (nlopt_func, for nlopt_add_inequality_constraint
 * and nlopt_add_equality_constraint): the same as jac_nlopt_objective,
 * which it is; named so that a constraint reads as one.
 */
JAC_NLOPT_API double jac_nlopt_constraint(unsigned n, const double *x,
                                          double *grad, void *data);

#ifdef __cplusplus
}
#endif

#endif /* JACOBIAN_NLOPT_H */
