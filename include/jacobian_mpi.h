/**
 * @file
 * libjacobian's MPI component: one Jacobian (dense or sparse) or sparse
 * Hessian shared among the processes of an MPI communicator, SPMD.
 *
 * Link with -ljacobian_mpi -ljacobian and MPI (CMake:
 * jacobian::jacobian_mpi, jacobian::jacobian and MPI::MPI_C; pkg-config:
 * jacobian-mpi, with mpicc). The component is built only when CMake finds
 * MPI; the core library never depends on it.
 *
 * Use: every rank records the same function (jac_program_begin ..
 * jac_program_end with the same ops and shapes), makes the same sparse
 * plan from it when a sparse result is wanted (colourings are
 * deterministic: the same program gives the same plan on every rank), and
 * calls the same functions of this header with the same arguments:
 *
 *     jac_mpi state = {.comm = MPI_COMM_WORLD};
 *     jac_mpi_jacobian(&state, f, args, JAC_MPI_AUTO, J);  // on every rank
 *     if (state.status != JAC_OK) ... state.message says why ...
 *     jac_mpi_release(&state);
 *
 * The seeds of the result (its rows swept in reverse, its columns swept
 * forward, a sparse plan's colours) are cut into blocks of a fixed number
 * of seeds, counted from seed 0 whatever the number of ranks; each rank
 * sweeps a contiguous run of whole blocks by replay, and the results are
 * then gathered (MPI_Allgatherv) on every rank, or, for jac_mpi_sparse_rows,
 * sent to the rank owning each row (MPI_Alltoallv). A block is swept by
 * the same arithmetic on whichever rank holds it, so the result is the
 * same, bit for bit, on any number of ranks, 1 included; with block 0 (the
 * engine's own block) it is also, bit for bit, what jac_sparse_jacobian
 * and jac_sparse_hessian give on one thread, and what jac_program_jacobian
 * gives for a program whose pattern is too dense for colours (for a
 * sparse one it takes the colours: use a sparse plan and
 * jac_mpi_sparse_jacobian there).
 *
 * Errors are collective: when a call fails on some rank (an argument that
 * does not fit, a failed replay, no memory), every rank of the
 * communicator returns the status of the lowest failing rank, with its
 * message prefixed by the call and that rank ("jac_mpi_jacobian: rank 1
 * of 4: ..."), and the result is filled with NaN; no rank waits for
 * another that has given up. Ranks whose programs or plans differ in
 * shape get JAC_ERR_SHAPE. A NULL state, or a communicator that is not
 * valid on every rank, cannot be reported to the other ranks. MPI's own
 * failures follow the communicator's error handler.
 *
 * A jac_mpi is the state of one communicator's calls: every rank has its
 * own, and none is shared between threads. Programs and plans may serve
 * other calls between these, but not during one.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JACOBIAN_MPI_H
#define JACOBIAN_MPI_H

#include <jacobian.h>
#include <mpi.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * @def JAC_MPI_API
 * Marks the functions the component library exports, as JAC_API does for
 * the core library.
 */
#if defined(JAC_STATIC_DEFINE)
#define JAC_MPI_API
#elif defined(_WIN32)
#ifdef JAC_MPI_BUILDING_LIBRARY
#define JAC_MPI_API __declspec(dllexport)
#else
#define JAC_MPI_API __declspec(dllimport)
#endif
#elif defined(__GNUC__) && __GNUC__ >= 4
#define JAC_MPI_API __attribute__((visibility("default")))
#else
#define JAC_MPI_API
#endif

/** The length of jac_mpi's message, with its terminating zero. */
#define JAC_MPI_MESSAGE_MAX 320

/** The component's workspace (opaque): buffers kept between calls, freed
 *  by jac_mpi_release. */
typedef struct jac_mpi_work jac_mpi_work;

/** Which seeds a dense Jacobian is swept by. */
typedef enum jac_mpi_mode {
    /** As jac_program_jacobian: reverse when the rows are no more than
     *  the columns, forward otherwise. */
    JAC_MPI_AUTO = 0,
    /** Rows: reverse sweeps of the program. */
    JAC_MPI_REVERSE = 1,
    /** Columns: reverse sweeps of the program's VJP program. */
    JAC_MPI_FORWARD = 2
} jac_mpi_mode;

/**
 * The state of one rank's calls. Fill comm (and, if wanted, block and
 * allocator); a designated initialiser leaves the others zero, as they
 * must start. The component writes the others.
 */
typedef struct jac_mpi {
    /** The communicator whose ranks share the work; every rank of it
     *  makes the same calls. Not owned. */
    MPI_Comm comm;
    /** Seeds per block: 0 for the block the engine takes on one thread
     *  (the same on every rank, as the program is), or a fixed count
     *  (smaller blocks share a small Jacobian among more ranks). Every
     *  rank must give the same. */
    int64_t block;
    /** The component's allocation hooks (alloc NULL: malloc and free). */
    jac_allocator allocator;
    /** This rank in the communicator, set by each call. */
    int rank;
    /** The communicator's size, set by each call. */
    int size;
    /** JAC_OK, or the first failure of a call (the same on every rank):
     *  JAC_ERR_NULL_ARG, JAC_ERR_SHAPE (the ranks' programs or plans
     *  differ, or a size does not fit), JAC_ERR_VALUE (a bad block, row
     *  range or mode), JAC_ERR_NO_MEMORY, JAC_ERR_STATE (an MPI call
     *  failed), or the status of the failed jac_* call. Kept until reset
     *  to JAC_OK by the caller. */
    jac_status status;
    /** What failed, in one line ("" while status is JAC_OK). */
    char message[JAC_MPI_MESSAGE_MAX];
    /** Calls made so far. */
    unsigned long calls;
    /** Seconds spent in this rank's sweeps, over all calls. */
    double seconds_sweeps;
    /** Seconds spent in the exchange of the results (waiting for the
     *  other ranks included), over all calls. */
    double seconds_exchange;
    /** Bytes this rank received from the other ranks' sweeps, over all
     *  calls (what the exchange moved to it). */
    int64_t bytes_received;
    /** The workspace; NULL until first needed. */
    jac_mpi_work *work;
} jac_mpi;

/**
 * The dense Jacobian of program at args (inputs then parameters, as
 * jac_program_jacobian takes them) into J on every rank: one row-major
 * matrix whose rows are the elements of the outputs in turn and whose
 * columns are those of the inputs in turn (for one input and one output,
 * what jac_program_jacobian writes into its one block). mode picks the
 * sweeps. Collective; returns the status every rank gets.
 */
JAC_MPI_API jac_status jac_mpi_jacobian(jac_mpi *state, jac_program *program,
                                        const double *const *args,
                                        jac_mpi_mode mode, double *J);

/**
 * The values of a sparse Jacobian plan at args (jac_sparse_nnz of them,
 * in the plan's order) into values on every rank. Collective.
 */
JAC_MPI_API jac_status jac_mpi_sparse_jacobian(jac_mpi *state, jac_sparse *plan,
                                               const double *const *args,
                                               double *values);

/**
 * The values of a sparse Hessian plan at args and weights (NULL as for
 * jac_sparse_hessian) into values on every rank. Collective.
 */
JAC_MPI_API jac_status jac_mpi_sparse_hessian(jac_mpi *state, jac_sparse *plan,
                                              const double *const *args,
                                              const double *const *weights,
                                              double *values);

/**
 * The rows this rank owns in a contiguous, PETSc-style split of n rows:
 * [*first, *end), the first n % size ranks one row more than the others.
 * Local: no communication. Does nothing when state or a result is NULL.
 */
JAC_MPI_API void jac_mpi_ownership(const jac_mpi *state, int64_t n,
                                   int64_t *first, int64_t *end);

/**
 * The values of rows [first_row, end_row) of a sparse plan (a Jacobian's,
 * weights NULL, or a Hessian's) at args, left distributed: values receives
 * the entries of those rows, in the plan's order, which must be by rows
 * (jac_sparse_csr's ptr[first_row] .. ptr[end_row] - 1, shifted to 0).
 * The ranks' ranges must follow each other in rank order and cover every
 * row (jac_mpi_ownership gives such ranges). Each rank sweeps its share
 * of the colours and sends every entry to the rank that owns its row:
 * no rank holds the whole result. Needs direct recovery (not
 * JAC_SPARSE_ACYCLIC). Collective.
 */
JAC_MPI_API jac_status jac_mpi_sparse_rows(jac_mpi *state, jac_sparse *plan,
                                           const double *const *args,
                                           const double *const *weights,
                                           int64_t first_row, int64_t end_row,
                                           double *values);

/** Frees the workspace of state (not the program, plan or communicator);
 *  accepts NULL. Local. */
JAC_MPI_API void jac_mpi_release(jac_mpi *state);

#ifdef __cplusplus
}
#endif

#endif /* JACOBIAN_MPI_H */
