#!/usr/bin/env bash
# Runs a program under Open MPI's mpirun with NP ranks on this machine
# only: more ranks than cores allowed (--oversubscribe), shared memory and
# loopback transports only (no network interface is probed), ranks that
# yield their core when they wait, and --allow-run-as-root when run as
# root (containers). mpirun's own --timeout ends a hung run.
# tests/mpi/lsan.supp holds Open MPI's leaks back from LeakSanitizer.
#
# usage: run_mpi.sh NP PROGRAM [ARGS...]
# environment: JAC_MPIRUN (the mpirun to use), JAC_MPI_TIMEOUT (seconds,
#   default 100).
set -euo pipefail

np=${1:?usage: run_mpi.sh NP PROGRAM [ARGS...]}
shift
mpirun=${JAC_MPIRUN:-mpirun}
options=(-np "$np" --oversubscribe --timeout "${JAC_MPI_TIMEOUT:-100}"
    --mca btl self,vader --mca btl_vader_single_copy_mechanism none
    --mca oob_tcp_if_include lo --mca mpi_yield_when_idle 1
    -x OPENBLAS_NUM_THREADS=1)
# Under the sanitizers: Open MPI's own leaks are suppressed; they are
# found by module only when the unwinder walks every frame.
here=$(cd "$(dirname "$0")" && pwd)
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$here/lsan.supp:print_suppressions=0"
options+=(-x ASAN_OPTIONS -x LSAN_OPTIONS)
if [[ -n ${UBSAN_OPTIONS:-} ]]; then
    options+=(-x UBSAN_OPTIONS)
fi
if [[ $(id -u) == 0 ]]; then
    options+=(--allow-run-as-root)
fi
exec "$mpirun" "${options[@]}" "$@"
