/**
 * @file
 * libjacobian's SUNDIALS adapter: the right-hand side, residual and system
 * functions of CVODE, IDA and KINSOL, their Jacobians (into a dense, band
 * or sparse SUNMatrix) and their Jacobian-times-vector products, from
 * recorded functions (jac_program).
 *
 * Link with -ljacobian_sundials -ljacobian and the SUNDIALS libraries the
 * solve uses (CMake: jacobian::jacobian_sundials and jacobian::jacobian;
 * pkg-config: jacobian-sundials). The adapter is built only when CMake
 * finds SUNDIALS (6.x, with its SUNContext API); the core library never
 * depends on it.
 *
 * The recorded function, by solver:
 * - CVODE, y' = f(t, y): one input y (n elements), one output f (n); the
 *   first parameter is t (one element), then the caller's parameters.
 * - IDA, F(t, y, y') = 0: two inputs y and y' (n elements each), one
 *   output F (n); the first parameter is t, then the caller's.
 * - KINSOL, F(u) = 0: one input u (n), one output F (n); the caller's
 *   parameters only.
 *
 * Use: record the function, fill a jac_sundials with the program (and the
 * parameter buffers, if any), give it to the solver as its user data and
 * the adapter's callbacks as its functions, and free the adapter's
 * workspace after the solve:
 *
 *     jac_sundials state = {.program = f};
 *     CVodeInit(cvode, jac_sundials_cvode_rhs, t0, y);
 *     CVodeSetUserData(cvode, &state);
 *     CVodeSetLinearSolver(cvode, LS, A);
 *     CVodeSetJacFn(cvode, jac_sundials_cvode_jac);
 *     ... CVode(...); a failure of the solver's functions means
 *         state.status says why ...
 *     jac_sundials_release(&state);
 *
 * Every Jacobian is computed through one sparse plan of the program
 * (jac_sparse_jacobian_plan: its pattern and colouring, made on the first
 * Jacobian call and kept), so that band and sparse Jacobians cost a few
 * compressed sweeps, whatever n. The matrix's entries outside the pattern
 * are written as zeros. A band matrix must hold the pattern (an entry
 * outside its bandwidths is an error, not dropped); a sparse matrix (CSR_MAT
 * or CSC_MAT) receives its structure from the plan at every call (the
 * solvers zero sparse matrices, structure included, between calls) and is
 * grown with SUNSparseMatrix_Reallocate when its capacity is smaller than
 * the pattern. jac_sundials_nnz and jac_sundials_bandwidths size the matrix
 * before the solve.
 *
 * The callbacks return 0, or -1 (an unrecoverable failure for the solver)
 * when an evaluation fails (a vector or matrix that does not match the
 * program's shapes, a matrix kind the adapter does not fill, a failed
 * replay, no memory): the first failure is kept in status and message, and
 * the output is filled with NaN rather than numbers that could pass for
 * results. They never print.
 *
 * The vectors must give their data with N_VGetArrayPointer (serial,
 * OpenMP, pthreads N_Vectors). A jac_sundials is the state of one solve:
 * do not share one between threads. The program itself may be shared.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JACOBIAN_SUNDIALS_H
#define JACOBIAN_SUNDIALS_H

#include <jacobian.h>

#include <sundials/sundials_matrix.h>
#include <sundials/sundials_nvector.h>
#include <sundials/sundials_types.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * @def JAC_SUNDIALS_API
 * Marks the functions the adapter library exports, as JAC_API does for the
 * core library.
 */
#if defined(JAC_STATIC_DEFINE)
#define JAC_SUNDIALS_API
#elif defined(_WIN32)
#ifdef JAC_SUNDIALS_BUILDING_LIBRARY
#define JAC_SUNDIALS_API __declspec(dllexport)
#else
#define JAC_SUNDIALS_API __declspec(dllimport)
#endif
#elif defined(__GNUC__) && __GNUC__ >= 4
#define JAC_SUNDIALS_API __attribute__((visibility("default")))
#else
#define JAC_SUNDIALS_API
#endif

/** The most parameters of the caller (besides t) a program may have. */
#define JAC_SUNDIALS_MAX_PARAMS 58

/** The length of jac_sundials's message, with its terminating zero. */
#define JAC_SUNDIALS_MESSAGE_MAX 256

/** The adapter's workspace (opaque): the sparse plan, the matrix layout
 *  and scratch buffers, made on first use, freed by jac_sundials_release. */
typedef struct jac_sundials_work jac_sundials_work;

/**
 * The state of one solve, passed as the solver's user data. Fill the first
 * four members (a designated initialiser leaves the others zero, as they
 * must start); the adapter writes the others.
 */
typedef struct jac_sundials {
    /** The recorded function (see the file's description for its inputs
     *  and parameters by solver). Not owned: the caller frees it after the
     *  solve (and after jac_sundials_release). */
    jac_program *program;
    /** One buffer per parameter of the caller (the program's parameters
     *  after t, for CVODE and IDA), in order, read at every call; NULL
     *  when there are none. Not owned. */
    const double *const *params;
    /** The options of the sparse plan (colouring order, method); NULL:
     *  the automatic choices. by_columns is ignored: the adapter orders
     *  the values for each matrix itself. Read when the plan is made. Not
     *  owned. */
    const jac_sparse_opts *sparse_opts;
    /** The hooks the adapter allocates its workspace with; NULL: malloc
     *  and free. (The program's own workspaces and the sparse plan use the
     *  hooks of the context the program was recorded in.) Not owned. */
    const jac_allocator *allocator;
    /** JAC_OK, or the first failure of an evaluation: JAC_ERR_NULL_ARG (no
     *  program, a vector, a matrix or a parameter missing), JAC_ERR_SHAPE (a
     *  size does not match the program, a band too narrow for the
     *  pattern), JAC_ERR_VALUE (a matrix kind the adapter does not fill,
     *  too many parameters), JAC_ERR_NO_MEMORY, or the status of the
     *  failed jac_program_* or jac_sparse_* call. Kept until reset to
     *  JAC_OK by the caller. */
    jac_status status;
    /** What failed, in one line ("" while status is JAC_OK). */
    char message[JAC_SUNDIALS_MESSAGE_MAX];
    /** Calls of the right-hand side, residual or system function. */
    unsigned long evaluations;
    /** Calls of the Jacobian functions. */
    unsigned long jacobians;
    /** Calls of the Jacobian-times-vector functions. */
    unsigned long jtimes;
    /** The workspace; NULL until first needed. */
    jac_sundials_work *work;
} jac_sundials;

/** CVODE's right-hand side (CVRhsFn): ydot = f(t, y), by jac_program_eval.
 *  user_data is a jac_sundials. */
JAC_SUNDIALS_API int jac_sundials_cvode_rhs(sunrealtype t, N_Vector y,
                                            N_Vector ydot, void *user_data);
/**
 * CVODE's Jacobian (CVLsJacFn): J = df/dy at (t, y) into a dense, band or
 * sparse SUNMatrix of n x n, by the program's sparse plan. fy and the
 * temporaries are not used.
 */
JAC_SUNDIALS_API int jac_sundials_cvode_jac(sunrealtype t, N_Vector y,
                                            N_Vector fy, SUNMatrix J,
                                            void *user_data, N_Vector tmp1,
                                            N_Vector tmp2, N_Vector tmp3);
/** CVODE's Jacobian-times-vector (CVLsJacTimesVecFn): Jv = (df/dy) v at
 *  (t, y), by jac_program_jvp. fy and tmp are not used. */
JAC_SUNDIALS_API int jac_sundials_cvode_jtimes(N_Vector v, N_Vector Jv,
                                               sunrealtype t, N_Vector y,
                                               N_Vector fy, void *user_data,
                                               N_Vector tmp);

/** IDA's residual (IDAResFn): rr = F(t, y, y'), by jac_program_eval. */
JAC_SUNDIALS_API int jac_sundials_ida_res(sunrealtype t, N_Vector y,
                                          N_Vector yp, N_Vector rr,
                                          void *user_data);
/**
 * IDA's Jacobian (IDALsJacFn): J = dF/dy + c_j dF/dy' at (t, y, y') into a
 * dense, band or sparse SUNMatrix of n x n, by the program's sparse plan
 * (both blocks in one plan; the matrix's pattern is the union of theirs).
 * r and the temporaries are not used.
 */
JAC_SUNDIALS_API int jac_sundials_ida_jac(sunrealtype t, sunrealtype c_j,
                                          N_Vector y, N_Vector yp, N_Vector r,
                                          SUNMatrix J, void *user_data,
                                          N_Vector tmp1, N_Vector tmp2,
                                          N_Vector tmp3);
/**
 * IDA's Jacobian-times-vector (IDALsJacTimesVecFn): Jv = (dF/dy + c_j
 * dF/dy') v, one jac_program_jvp with tangents v and c_j v. rr and the
 * temporaries are not used.
 */
JAC_SUNDIALS_API int jac_sundials_ida_jtimes(sunrealtype t, N_Vector y,
                                             N_Vector yp, N_Vector rr,
                                             N_Vector v, N_Vector Jv,
                                             sunrealtype c_j, void *user_data,
                                             N_Vector tmp1, N_Vector tmp2);

/** KINSOL's system function (KINSysFn): fval = F(u), by jac_program_eval. */
JAC_SUNDIALS_API int jac_sundials_kinsol_sys(N_Vector u, N_Vector fval,
                                             void *user_data);
/** KINSOL's Jacobian (KINLsJacFn): J = dF/du into a dense, band or sparse
 *  SUNMatrix of n x n, by the program's sparse plan. fu and the
 *  temporaries are not used. */
JAC_SUNDIALS_API int jac_sundials_kinsol_jac(N_Vector u, N_Vector fu,
                                             SUNMatrix J, void *user_data,
                                             N_Vector tmp1, N_Vector tmp2);
/** KINSOL's Jacobian-times-vector (KINLsJacTimesVecFn): Jv = (dF/du) v,
 *  by jac_program_jvp; sets *new_u to false (nothing is kept per u). */
JAC_SUNDIALS_API int jac_sundials_kinsol_jtimes(N_Vector v, N_Vector Jv,
                                                N_Vector u,
                                                sunbooleantype *new_u,
                                                void *user_data);

/**
 * The nonzeros of the n x n matrix the Jacobian callbacks write for the
 * program of state (for IDA, of the union of dF/dy and dF/dy'): the NNZ to
 * give SUNSparseMatrix. Makes the sparse plan if it is not made yet; -1
 * (with status and message) on failure.
 */
JAC_SUNDIALS_API int64_t jac_sundials_nnz(jac_sundials *state);
/**
 * The upper and lower bandwidths of that matrix's pattern into *mu and
 * *ml: the smallest SUNBandMatrix that holds it. As jac_sundials_nnz
 * otherwise; returns 0, or -1 on failure (*mu and *ml untouched).
 */
JAC_SUNDIALS_API int jac_sundials_bandwidths(jac_sundials *state,
                                             sunindextype *mu,
                                             sunindextype *ml);

/** Frees the workspace and the sparse plan of state (not its program);
 *  state may be used again. Accepts NULL. */
JAC_SUNDIALS_API void jac_sundials_release(jac_sundials *state);

#ifdef __cplusplus
}
#endif

#endif /* JACOBIAN_SUNDIALS_H */
