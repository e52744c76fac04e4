#!/usr/bin/env bash
# Runs every solver example of examples/ (each solves its problems with
# libjacobian's adapter and with hand-written derivatives, and times both)
# one after the other, in one run, on one OpenBLAS thread, and keeps their
# output: the side-by-side table of docs/solvers.md is written from such a
# run. An example whose solver was not found by CMake is reported as
# skipped.
#
# usage: bench/solvers.sh [BUILD_DIR] [OUTPUT]
#   BUILD_DIR  a configured Release tree (default build/; configured and
#              built there when it is not yet)
#   OUTPUT     where the examples' output goes (default
#              BUILD_DIR/solvers-run.txt); it is printed as well
set -euo pipefail

cd "$(dirname "$0")/.."
build=${1:-build}
output=${2:-$build/solvers-run.txt}

if [[ ! -f $build/CMakeCache.txt ]]; then
    cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$build" -j2 >/dev/null

examples=(nlopt_rosenbrock gsl_solvers ipopt_problems cvode_robertson
          cvode_brusselator kinsol_bratu)
export OPENBLAS_NUM_THREADS=1
{
    echo "# bench/solvers.sh, $(date -u '+%Y-%m-%d %H:%M UTC')," \
        "$(git rev-parse --short HEAD), $(nproc) cores," \
        "load $(cut -d' ' -f1 /proc/loadavg)"
    for name in "${examples[@]}"; do
        echo
        echo "## $name"
        if [[ -x $build/examples/$name ]]; then
            "$build/examples/$name" 2>&1
        else
            echo "skipped: not built (its solver was not found by CMake)"
        fi
    done
} | tee "$output"
