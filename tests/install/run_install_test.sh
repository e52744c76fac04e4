#!/usr/bin/env bash
# Installs a built libjacobian into a scratch prefix, then builds and runs
# tests/install/consumer.c against it twice: with find_package(jacobian) and
# with pkg-config; and tests/install/consumer_nlopt.c, consumer_gsl.c and
# consumer_ipopt.c, consumer_sundials.c and consumer_mpi.c both ways when
# the NLopt, GSL, IPOPT and SUNDIALS adapters and the MPI component were
# installed (consumer_mpi runs as one MPI process).
#
# usage: run_install_test.sh BUILD_DIR [LIBDIR]
#   LIBDIR is the tree's CMAKE_INSTALL_LIBDIR (lib, lib64 or
#   lib/x86_64-linux-gnu); the default is read from BUILD_DIR's cache.
# environment: CC (compiler), JAC_CONSUMER_FLAGS (extra compile and link
#   flags, e.g. the sanitizers the library was built with).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:?usage: run_install_test.sh BUILD_DIR [LIBDIR]}" && pwd)
libdir=${2:-$(sed -n 's/^CMAKE_INSTALL_LIBDIR:[A-Z]*=//p' "$build/CMakeCache.txt")}
libdir=${libdir:-lib}
cc=${CC:-cc}
flags=${JAC_CONSUMER_FLAGS:-}

# The MPI consumer runs as one MPI process; under LeakSanitizer, Open MPI's
# own leaks are held back as for the MPI tests (tests/mpi/run_mpi.sh).
run_mpi_consumer() {
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0" \
    LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$here/../mpi/lsan.supp:print_suppressions=0" \
        "$@"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

echo "== install into $prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null

echo "== find_package(jacobian)"
cmake -S "$here" -B "$work/consumer-build" \
    -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_C_COMPILER="$cc" \
    -DCMAKE_C_FLAGS="$flags" \
    -DCMAKE_EXE_LINKER_FLAGS="$flags" >/dev/null
cmake --build "$work/consumer-build" >/dev/null
"$work/consumer-build/consumer"
"$work/consumer-build/consumer_static"
if [[ -f $prefix/include/jacobian_nlopt.h ]]; then
    "$work/consumer-build/consumer_nlopt"
fi
if [[ -f $prefix/include/jacobian_gsl.h ]]; then
    "$work/consumer-build/consumer_gsl"
fi
if [[ -f $prefix/include/jacobian_ipopt.h ]]; then
    "$work/consumer-build/consumer_ipopt"
fi
if [[ -f $prefix/include/jacobian_sundials.h ]]; then
    "$work/consumer-build/consumer_sundials"
fi
if [[ -f $prefix/include/jacobian_mpi.h ]]; then
    run_mpi_consumer "$work/consumer-build/consumer_mpi"
fi

echo "== pkg-config jacobian"
pc_flags=$(PKG_CONFIG_PATH="$prefix/$libdir/pkgconfig" \
    pkg-config --cflags --libs jacobian)
# shellcheck disable=SC2086 # flags are word lists on purpose
"$cc" -std=c11 $flags "$here/consumer.c" -o "$work/consumer-pc" \
    $pc_flags -lm -Wl,-rpath,"$prefix/$libdir"
"$work/consumer-pc"

if [[ -f $prefix/$libdir/pkgconfig/jacobian-nlopt.pc ]]; then
    echo "== pkg-config jacobian-nlopt"
    pc_flags=$(PKG_CONFIG_PATH="$prefix/$libdir/pkgconfig" \
        pkg-config --cflags --libs jacobian-nlopt)
    # shellcheck disable=SC2086 # flags are word lists on purpose
    "$cc" -std=c11 $flags "$here/consumer_nlopt.c" -o "$work/consumer-nlopt-pc" \
        $pc_flags -lm -Wl,-rpath,"$prefix/$libdir"
    "$work/consumer-nlopt-pc"
fi

if [[ -f $prefix/$libdir/pkgconfig/jacobian-gsl.pc ]]; then
    echo "== pkg-config jacobian-gsl"
    pc_flags=$(PKG_CONFIG_PATH="$prefix/$libdir/pkgconfig" \
        pkg-config --cflags --libs jacobian-gsl)
    # shellcheck disable=SC2086 # flags are word lists on purpose
    "$cc" -std=c11 $flags "$here/consumer_gsl.c" -o "$work/consumer-gsl-pc" \
        $pc_flags -lm -Wl,-rpath,"$prefix/$libdir"
    "$work/consumer-gsl-pc"
fi

if [[ -f $prefix/$libdir/pkgconfig/jacobian-ipopt.pc ]]; then
    echo "== pkg-config jacobian-ipopt"
    pc_flags=$(PKG_CONFIG_PATH="$prefix/$libdir/pkgconfig" \
        pkg-config --cflags --libs jacobian-ipopt)
    # shellcheck disable=SC2086 # flags are word lists on purpose
    "$cc" -std=c11 $flags "$here/consumer_ipopt.c" -o "$work/consumer-ipopt-pc" \
        $pc_flags -lm -Wl,-rpath,"$prefix/$libdir"
    "$work/consumer-ipopt-pc"
fi
if [[ -f $prefix/$libdir/pkgconfig/jacobian-sundials.pc ]]; then
    echo "== pkg-config jacobian-sundials"
    pc_flags=$(PKG_CONFIG_PATH="$prefix/$libdir/pkgconfig" \
        pkg-config --cflags --libs jacobian-sundials)
    # Debian's SUNDIALS has no .pc files: its modules are named here.
    # shellcheck disable=SC2086 # flags are word lists on purpose
    "$cc" -std=c11 $flags "$here/consumer_sundials.c" \
        -o "$work/consumer-sundials-pc" $pc_flags -lsundials_kinsol \
        -lsundials_nvecserial -lsundials_sunmatrixdense \
        -lsundials_sunlinsoldense -lm -Wl,-rpath,"$prefix/$libdir"
    "$work/consumer-sundials-pc"
fi
if [[ -f $prefix/$libdir/pkgconfig/jacobian-mpi.pc ]]; then
    echo "== pkg-config jacobian-mpi (mpicc over $cc)"
    pc_flags=$(PKG_CONFIG_PATH="$prefix/$libdir/pkgconfig" \
        pkg-config --cflags --libs jacobian-mpi)
    # shellcheck disable=SC2086 # flags are word lists on purpose
    OMPI_CC="$cc" mpicc -std=c11 $flags "$here/consumer_mpi.c" \
        -o "$work/consumer-mpi-pc" $pc_flags -lm -Wl,-rpath,"$prefix/$libdir"
    run_mpi_consumer "$work/consumer-mpi-pc"
fi

echo "install test passed"
