/**
 * @file
 * libjacobian's IPOPT adapter: the five callbacks of IPOPT's C interface
 * (IpStdCInterface.h) from one recorded function (jac_program), with a
 * sparse Jacobian of the constraints and a sparse lower triangle of the
 * Hessian of the Lagrangian, both by colouring.
 *
 * Link with -ljacobian_ipopt -ljacobian -lipopt (CMake:
 * jacobian::jacobian_ipopt and jacobian::jacobian; pkg-config:
 * jacobian-ipopt). The adapter is built only when CMake finds IPOPT; the
 * core library never depends on it.
 *
 * Use: record the problem as one program with one input x (n elements)
 * and two outputs, the objective f (one element) and the constraints g
 * (m elements), or the objective alone when there are no constraints;
 * fill a jac_ipopt with it and let the adapter make IPOPT's problem:
 *
 *     jac_ipopt state = {.program = p};
 *     IpoptProblem nlp = jac_ipopt_create(&state, x_L, x_U, g_L, g_U);
 *     if (nlp == NULL) ... state.message says why ...
 *     AddIpoptIntOption(nlp, "print_level", 0);
 *     IpoptSolve(nlp, x, NULL, &f, NULL, NULL, NULL, &state);
 *     if (state.status != JAC_OK) ... state.message says why ...
 *     FreeIpoptProblem(nlp);
 *     jac_ipopt_release(&state);
 *
 * (or jac_ipopt_prepare for the sizes, then CreateIpoptProblem with the
 * callbacks below). The user data of every callback is the jac_ipopt.
 *
 * What a call costs: f and g at a new point are one evaluation of the
 * program (jac_program_eval); the gradient of f and the Jacobian of g at
 * a point are one sparse Jacobian of the whole program (its f row is the
 * gradient), made on the first of eval_grad_f and eval_jac_g at that
 * point and kept for the other; the Hessian of the Lagrangian is one
 * sparse Hessian with weights (obj_factor, lambda) at each call (IPOPT
 * asks for one per iterate), no re-recording. Values and first
 * derivatives are computed once per point: new_x tells the adapter when
 * x changed, and a point that differs from the last is treated as new
 * even when IPOPT says otherwise.
 *
 * On failure (a size that does not match the program's, a failed
 * evaluation, no memory) the callback keeps the first failure in status
 * and message, fills its outputs with NaN rather than numbers that could
 * pass for results, and returns FALSE, on which IPOPT stops (IpoptSolve
 * then returns an error status). The adapter never prints.
 *
 * A jac_ipopt is the state of one problem: do not share one between
 * threads or between two solves at once. The program itself may be
 * shared.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JACOBIAN_IPOPT_H
#define JACOBIAN_IPOPT_H

#include <jacobian.h>

#include <IpStdCInterface.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * @def JAC_IPOPT_API
 * Marks the functions the adapter library exports, as JAC_API does for the
 * core library.
 */
#if defined(JAC_STATIC_DEFINE)
#define JAC_IPOPT_API
#elif defined(_WIN32)
#ifdef JAC_IPOPT_BUILDING_LIBRARY
#define JAC_IPOPT_API __declspec(dllexport)
#else
#define JAC_IPOPT_API __declspec(dllimport)
#endif
#elif defined(__GNUC__) && __GNUC__ >= 4
#define JAC_IPOPT_API __attribute__((visibility("default")))
#else
#define JAC_IPOPT_API
#endif

/** The most parameters a program given to the adapter may have. */
#define JAC_IPOPT_MAX_PARAMS 61

/** The length of jac_ipopt's message, with its terminating zero. */
#define JAC_IPOPT_MESSAGE_MAX 256

/** The adapter's workspace (opaque): the sparse plans, their structures
 *  and the values of the last point, made by jac_ipopt_prepare (or the
 *  first callback), freed by jac_ipopt_release. */
typedef struct jac_ipopt_work jac_ipopt_work;

/**
 * The state of one IPOPT problem, passed as IPOPT's user data. Fill the
 * first members you need (a designated initialiser leaves the others
 * zero, as they must start); the adapter writes the others.
 */
typedef struct jac_ipopt {
    /** The recorded problem: exactly one input (x, of n elements) and
     *  either two outputs, f (one element) and g (m elements), or one
     *  output f (m = 0). Not owned: the caller frees it after the solve
     *  (and after jac_ipopt_release). */
    jac_program *program;
    /** One buffer per parameter of the program, in order (each of the
     *  parameter's numel values), read at every new point; NULL when the
     *  program has none. Change them only between solves. Not owned. */
    const double *const *params;
    /** IPOPT's index style of the structures: 0 for C (from 0), 1 for
     *  Fortran (from 1). jac_ipopt_create passes it to IPOPT. */
    int index_style;
    /** How the sparse Jacobian is computed: JAC_SPARSE_AUTO (0, the
     *  default: the cheaper of forward and reverse colourings, which for
     *  a dense f row is reverse), JAC_SPARSE_FORWARD or JAC_SPARSE_REVERSE. */
    jac_sparse_method jacobian_method;
    /** How the sparse Hessian is computed: JAC_SPARSE_AUTO (0, the
     *  default: JAC_SPARSE_STAR, direct recovery), JAC_SPARSE_STAR or
     *  JAC_SPARSE_ACYCLIC (fewer colours, so fewer sweeps, for values
     *  recovered by substitution; for LuksanVlcek1 2 colours against 3). */
    jac_sparse_method hessian_method;
    /** Hooks for the adapter's own workspace (zero: malloc and free). The
     *  plans use the allocator of the context the program was recorded
     *  in. Copied by jac_ipopt_prepare. */
    jac_allocator allocator;
    /** JAC_OK, or the first failure: JAC_ERR_NULL_ARG (no program, or
     *  parameters or an output missing), JAC_ERR_SHAPE (a size that does
     *  not match the program, or a program that is not of one input and
     *  one or two outputs), JAC_ERR_VALUE (too many parameters, a bad
     *  index style, a problem too large for IPOPT's int indices),
     *  JAC_ERR_NO_MEMORY, or the status of the failed jac_program_* or
     *  jac_sparse_* call. Kept until reset to JAC_OK by the caller. */
    jac_status status;
    /** What failed, in one line ("" while status is JAC_OK). */
    char message[JAC_IPOPT_MESSAGE_MAX];
    /** Evaluations of f and g (one per point asked for). */
    unsigned long evaluations;
    /** Sparse Jacobians (gradient of f and Jacobian of g, one per point). */
    unsigned long jacobians;
    /** Sparse Hessians of the Lagrangian. */
    unsigned long hessians;
    /** The workspace; NULL until prepared. */
    jac_ipopt_work *work;
} jac_ipopt;

/**
 * Makes the sparse plans of state's program (a Jacobian plan of the whole
 * program and a lower-triangle Hessian plan of the Lagrangian) and the
 * workspace, and returns IPOPT's sizes: the variables n, the constraints
 * m, the nonzeros of the constraint Jacobian nele_jac and of the lower
 * triangle of the Hessian nele_hess (any pointer may be NULL). Does
 * nothing but return the sizes when the workspace is already made for
 * this program and these options (index style, methods); the callbacks
 * prepare state themselves when it is not. Returns JAC_OK, or state's
 * status (its first failure) when this call fails; the sizes are then 0.
 */
JAC_IPOPT_API jac_status jac_ipopt_prepare(jac_ipopt *state, Index *n, Index *m,
                                           Index *nele_jac, Index *nele_hess);

/**
 * jac_ipopt_prepare, then CreateIpoptProblem with the sizes, the bounds
 * (x_L and x_U of n values, g_L and g_U of m; IPOPT copies them; g_L and
 * g_U may be NULL when m is 0), state's index style and the five
 * callbacks below. The caller frees the problem with FreeIpoptProblem
 * and passes state as IpoptSolve's user data. NULL on failure (in
 * state's status and message).
 */
JAC_IPOPT_API IpoptProblem jac_ipopt_create(jac_ipopt *state, Number *x_L,
                                            Number *x_U, Number *g_L,
                                            Number *g_U);

/** f(x) into *obj_value (Eval_F_CB; user_data is the jac_ipopt). */
JAC_IPOPT_API Bool jac_ipopt_eval_f(Index n, Number *x, Bool new_x,
                                    Number *obj_value, UserDataPtr user_data);
/** The gradient of f, n values, into grad_f (Eval_Grad_F_CB). */
JAC_IPOPT_API Bool jac_ipopt_eval_grad_f(Index n, Number *x, Bool new_x,
                                         Number *grad_f, UserDataPtr user_data);
/** g(x), m values, into g (Eval_G_CB). */
JAC_IPOPT_API Bool jac_ipopt_eval_g(Index n, Number *x, Bool new_x, Index m,
                                    Number *g, UserDataPtr user_data);
/**
 * The Jacobian of g (Eval_Jac_G_CB): when values is NULL, its structure
 * (iRow, jCol: nele_jac coordinates in state's index style; x is not
 * read); otherwise the nele_jac values at x in that order.
 */
JAC_IPOPT_API Bool jac_ipopt_eval_jac_g(Index n, Number *x, Bool new_x, Index m,
                                        Index nele_jac, Index *iRow,
                                        Index *jCol, Number *values,
                                        UserDataPtr user_data);
/**
 * The lower triangle (row >= column) of the Hessian of the Lagrangian
 * obj_factor * Hess f + sum_i lambda_i Hess g_i (Eval_H_CB): when values
 * is NULL, its structure (iRow, jCol: nele_hess coordinates); otherwise
 * the values at x, obj_factor and lambda, in that order.
 */
JAC_IPOPT_API Bool jac_ipopt_eval_h(Index n, Number *x, Bool new_x,
                                    Number obj_factor, Index m, Number *lambda,
                                    Bool new_lambda, Index nele_hess,
                                    Index *iRow, Index *jCol, Number *values,
                                    UserDataPtr user_data);

/** Frees the plans and workspace of state (not its program); state may be
 *  prepared again. Accepts NULL. */
JAC_IPOPT_API void jac_ipopt_release(jac_ipopt *state);

#ifdef __cplusplus
}
#endif

#endif /* JACOBIAN_IPOPT_H */
