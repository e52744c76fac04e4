/**
 * @file
 * libjacobian's GSL adapter: the callbacks of GSL's multidimensional root
 * finding (gsl_multiroot_function_fdf) and nonlinear least squares
 * (gsl_multifit_nlinear_fdf, with the second directional derivative fvv of
 * geodesic acceleration) from recorded functions (jac_program).
 *
 * Link with -ljacobian_gsl -ljacobian -lgsl -lgslcblas (CMake:
 * jacobian::jacobian_gsl and jacobian::jacobian; pkg-config:
 * jacobian-gsl). The adapter is built only when CMake finds GSL; the core
 * library never depends on it.
 *
 * Use: record the function with one input of n elements (x) and one
 * output (F(x), n elements for a root, m residuals for a fit) and any
 * parameters, fill a jac_gsl with the program (and the parameter buffers,
 * if any), fill GSL's function struct from it, and free the adapter's
 * workspace after the solve:
 *
 *     jac_gsl state = {.program = f};
 *     gsl_multiroot_function_fdf fdf;
 *     jac_gsl_multiroot_fdf_init(&fdf, &state);
 *     gsl_multiroot_fdfsolver_set(solver, &fdf, x);
 *     ... iterate; a GSL_EBADFUNC from GSL means state.status says why ...
 *     jac_gsl_release(&state);
 *
 * The callbacks return GSL_SUCCESS, or GSL_EBADFUNC when an evaluation
 * fails (a size that does not match the program's shapes, a failed
 * replay): the first failure is kept in status and message, and the
 * output is filled with NaN rather than numbers that could pass for
 * results. They do not call GSL's error handler.
 *
 * Vectors and matrices of any stride are accepted: x, v and the outputs
 * are copied through the adapter's workspace when their stride (or the
 * matrix's tda) is not the dense one. The workspace, and the derived
 * program of fvv, are made on first use and freed by jac_gsl_release.
 *
 * A jac_gsl is the state of one function: do not share one between
 * threads. The program itself may be shared.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JACOBIAN_GSL_H
#define JACOBIAN_GSL_H

#include <jacobian.h>

#include <gsl/gsl_matrix.h>
#include <gsl/gsl_multifit_nlinear.h>
#include <gsl/gsl_multiroots.h>
#include <gsl/gsl_vector.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * @def JAC_GSL_API
 * Marks the functions the adapter library exports, as JAC_API does for the
 * core library.
 */
#if defined(JAC_STATIC_DEFINE)
#define JAC_GSL_API
#elif defined(_WIN32)
#ifdef JAC_GSL_BUILDING_LIBRARY
#define JAC_GSL_API __declspec(dllexport)
#else
#define JAC_GSL_API __declspec(dllimport)
#endif
#elif defined(__GNUC__) && __GNUC__ >= 4
#define JAC_GSL_API __attribute__((visibility("default")))
#else
#define JAC_GSL_API
#endif

/** The most parameters a program given to the adapter may have. */
#define JAC_GSL_MAX_PARAMS 59

/** The length of jac_gsl's message, with its terminating zero. */
#define JAC_GSL_MESSAGE_MAX 256

/** The adapter's workspace (opaque): scratch buffers and derived
 *  programs, made on first use, freed by jac_gsl_release. */
typedef struct jac_gsl_work jac_gsl_work;

/**
 * The state of one GSL function, passed as GSL's params. Fill the first
 * two members (a designated initialiser leaves the others zero, as they
 * must start); the adapter writes the others.
 */
typedef struct jac_gsl {
    /** The recorded function: exactly one input (x, of n elements) and one
     *  output (n elements for a root, m residuals for a fit). Not owned:
     *  the caller frees it after the solve (and after jac_gsl_release). */
    jac_program *program;
    /** One buffer per parameter of the program, in order (each of the
     *  parameter's numel values), read at every call; NULL when the
     *  program has none. Not owned. */
    const double *const *params;
    /** JAC_OK, or the first failure of an evaluation: JAC_ERR_NULL_ARG (no
     *  program, or parameters missing), JAC_ERR_SHAPE (a size does not
     *  match the program), JAC_ERR_VALUE (too many parameters),
     *  JAC_ERR_NO_MEMORY (no workspace), or the status of the failed
     *  jac_program_* call. Kept until reset to JAC_OK by the caller. */
    jac_status status;
    /** What failed, in one line ("" while status is JAC_OK). */
    char message[JAC_GSL_MESSAGE_MAX];
    /** Calls that evaluated F (f and fdf). */
    unsigned long evaluations;
    /** Calls that evaluated the Jacobian (df and fdf). */
    unsigned long jacobians;
    /** Calls of fvv. */
    unsigned long fvvs;
    /** The workspace; NULL until first needed. */
    jac_gsl_work *work;
} jac_gsl;

/**
 * F(x) into f (gsl_multiroot_function_fdf's f, and
 * gsl_multifit_nlinear_fdf's f): params is a jac_gsl; x has the program
 * input's n elements, f its output's. By jac_program_eval.
 */
JAC_GSL_API int jac_gsl_multiroot_f(const gsl_vector *x, void *params,
                                    gsl_vector *f);
/**
 * The Jacobian of F at x into J (rows: outputs, columns: x; any tda), by
 * jac_program_jacobian.
 */
JAC_GSL_API int jac_gsl_multiroot_df(const gsl_vector *x, void *params,
                                     gsl_matrix *J);
/** F(x) and its Jacobian in one call (one jac_program_jacobian). */
JAC_GSL_API int jac_gsl_multiroot_fdf(const gsl_vector *x, void *params,
                                      gsl_vector *f, gsl_matrix *J);
/**
 * Fills *fdf with the three callbacks above, n (the program input's
 * numel; 0 when the program is not one of one input and one output) and
 * state as its params. Does not evaluate anything.
 */
JAC_GSL_API void jac_gsl_multiroot_fdf_init(gsl_multiroot_function_fdf *fdf,
                                            jac_gsl *state);

/** The residuals into f (gsl_multifit_nlinear_fdf's f). */
JAC_GSL_API int jac_gsl_nlinear_f(const gsl_vector *x, void *params,
                                  gsl_vector *f);
/** The Jacobian of the residuals (gsl_multifit_nlinear_fdf's df). */
JAC_GSL_API int jac_gsl_nlinear_df(const gsl_vector *x, void *params,
                                   gsl_matrix *J);
/**
 * The second directional derivative of the residuals along v
 * (gsl_multifit_nlinear_fdf's fvv, for geodesic acceleration):
 * fvv_k = sum_ij d2 f_k / dx_i dx_j v_i v_j, exact. Computed as one JVP
 * (along v in x) of the program that returns J(x) u, derived from the
 * program once (on the first call) by differentiating its VJP program:
 * the cost of a call is a fixed multiple of one evaluation of the
 * residuals, whatever m (about ten evaluations, or 1.5 Jacobians, for the
 * exponential fit of examples/gsl_solvers.c), against m Hessian-vector
 * products for one residual at a time.
 */
JAC_GSL_API int jac_gsl_nlinear_fvv(const gsl_vector *x, const gsl_vector *v,
                                    void *params, gsl_vector *fvv);
/**
 * Fills *fdf with f, df and fvv above, n (residuals: the program output's
 * numel) and p (the program input's numel), both 0 when the program is
 * not one of one input and one output, and state as its params.
 */
JAC_GSL_API void jac_gsl_nlinear_fdf_init(gsl_multifit_nlinear_fdf *fdf,
                                          jac_gsl *state);

/** Frees the workspace and derived programs of state (not its program);
 *  state may be used again. Accepts NULL. */
JAC_GSL_API void jac_gsl_release(jac_gsl *state);

#ifdef __cplusplus
}
#endif

#endif /* JACOBIAN_GSL_H */
