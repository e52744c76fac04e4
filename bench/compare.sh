#!/usr/bin/env bash
# Runs libjacobian's benchmark (build/bench/jacobian_bench), the PyTorch
# reference and the ADOL-C reference on this machine in one run, measures
# cblas_dgemm, profiles every missed target, prints the comparison and writes
# docs/benchmarks.md and docs/benchmarks.png. The sparse problems (P6, P7)
# are measured against the sparse references (adolc_sparse_reference.cpp,
# torch_sparse_reference.py) in the same run, into a section of their own.
#
# usage: bench/compare.sh [--rounds N] [--no-profile] [--report-only DIR]
#                         [--out DIR] [--docs DIR] [--no-install]
#                         [--only-sparse | --no-sparse]
#
#   --rounds N         measure everything N times (default 1); each
#                      implementation is then represented by its best
#                      median over the rounds, which a busy machine
#                      disturbs less (about 9 minutes per round)
#   --no-profile       skip the perf profiles of missed targets
#   --report-only DIR  do not measure: rebuild the report from the results
#                      of an earlier run kept in DIR
#   --out DIR          keep the raw results there (default
#                      build/bench/results)
#   --docs DIR         write benchmarks.md and benchmarks.png there
#                      (default docs/)
#   --no-install       install nothing; a reference whose packages are
#                      missing (python3-torch, libadolc-dev, libcolpack-dev)
#                      is skipped and the report has only the lines measured
#   --only-sparse      measure only the sparse problems (and P3 n=512's
#                      Hessian, for its target) and rewrite only the sparse
#                      section of docs/benchmarks.md: about 8 minutes, most
#                      of them in PyTorch's dense matrices of n = 10^4
#                      (results in build/bench/results-sparse by default)
#   --no-sparse        leave the sparse problems out (their section is then
#                      not in the page)
#
# Environment:
#   JAC_SHARED_DIR   the shared/ folder with bench/PROBLEMS.md and the
#                    references (default: ../shared beside the repository)
#   JAC_BUILD_DIR    the build tree holding bench/jacobian_bench (default
#                    build/); jacobian_bench is built there (and the tree
#                    configured when it is not yet)
#   JAC_BENCH_ARGS   extra arguments for jacobian_bench (P1..P5)
#   JAC_SPARSE_ARGS  extra arguments for jacobian_bench on P6, P7
#   BENCH_BUDGET     seconds per PyTorch variant (torch_reference.py's knob)
#   ADOLC_BUDGET     seconds per ADOL-C variant (default 1.0)
#   PYTHON           the Python with python3-torch (default /usr/bin/python3)
#   JAC_NO_INSTALL=1 the same as --no-install
#
# Without a reference (not installed, or failing to build or run) the
# report still has our own lines: every variant with its checksums, the
# replay of recorded functions against the dynamic variants and P4's floor.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shared=${JAC_SHARED_DIR:-$root/../shared}
build=${JAC_BUILD_DIR:-$root/build}
python=${PYTHON:-/usr/bin/python3}
bench=$build/bench/jacobian_bench
out=$build/bench/results
docs=$root/docs
profile=1
report_only=
rounds=1
no_install=${JAC_NO_INSTALL:-0}
sparse=1
only_sparse=0
out_given=0

while (($#)); do
    case $1 in
        --no-profile) profile=0 ;;
        --report-only) report_only=$2; out=$2; out_given=1; shift ;;
        --out) out=$2; out_given=1; shift ;;
        --only-sparse) only_sparse=1 ;;
        --no-sparse) sparse=0 ;;
        --docs) docs=$2; shift ;;
        --no-install) no_install=1 ;;
        --rounds) rounds=$2; shift ;;
        -h|--help) sed -n '2,50p' "$0"; exit 0 ;;
        *) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

if [[ ! $rounds =~ ^[1-9][0-9]*$ ]]; then
    echo "compare.sh: --rounds needs a positive whole number" >&2
    exit 2
fi
if ((only_sparse && !sparse)); then
    echo "compare.sh: --only-sparse and --no-sparse exclude each other" >&2
    exit 2
fi
# A run of the sparse part alone keeps its results apart from a full run's.
if ((only_sparse && !out_given)); then
    out=$build/bench/results-sparse
fi
# Rebuilding a report: the kept results say which kind of run made them.
if [[ -n $report_only && -f $report_only/machine.txt ]] &&
        grep -q '^mode=sparse$' "$report_only/machine.txt"; then
    only_sparse=1
    sparse=1
fi
refdir=$shared/bench
if [[ ! -f $refdir/PROBLEMS.md ]]; then
    echo "compare.sh: $refdir/PROBLEMS.md not found; set JAC_SHARED_DIR" >&2
    exit 1
fi
mkdir -p "$out" "$docs"
out=$(cd "$out" && pwd)
docs=$(cd "$docs" && pwd)

say() { printf '\n==== %s (%ds)\n' "$*" "$SECONDS" >&2; }

# ---------------------------------------------------------------- packages
# Installs what is missing unless --no-install; never fails the run (a
# missing reference is skipped below).
need_packages() {
    ((no_install)) && return 0
    local missing=() p
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
                grep -q 'install ok installed'; then
            missing+=("$p")
        fi
    done
    ((${#missing[@]} == 0)) && return 0
    local sudo=()
    [[ $(id -u) -ne 0 ]] && sudo=(sudo)
    say "installing ${missing[*]}"
    { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends "${missing[@]}"; } ||
        { echo "compare.sh: could not install ${missing[*]}" >&2; return 1; }
}

if [[ -z $report_only ]] && ((only_sparse)); then
    need_packages python3-torch libadolc-dev libcolpack-dev g++ || true
elif [[ -z $report_only ]]; then
    sparse_pkgs=()
    if ((sparse)); then
        sparse_pkgs=(libcolpack-dev)
    fi
    need_packages python3-torch libadolc-dev "${sparse_pkgs[@]}" g++ \
        python3-matplotlib || true
    if ((profile)) && ! command -v perf >/dev/null; then
        need_packages linux-perf || need_packages valgrind || true
    fi
else
    need_packages python3-matplotlib || true
fi

# ---------------------------------------------------------------- measure
if [[ -z $report_only ]]; then
    # Brought up to date (a no-op when it is), configured first if need be.
    say "building $bench"
    if [[ ! -f $build/CMakeCache.txt ]]; then
        cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
    fi
    # Timings of an unoptimised or instrumented build say nothing.
    btype=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt")
    if [[ $btype != Release ]]; then
        echo "compare.sh: $build is a '${btype:-default}' build; configure" \
             "it with -DCMAKE_BUILD_TYPE=Release or set JAC_BUILD_DIR" >&2
        exit 1
    fi
    if grep -q '^JAC_SANITIZE:BOOL=ON\|^JAC_TSAN:BOOL=ON' \
            "$build/CMakeCache.txt"; then
        echo "compare.sh: $build is a sanitizer build; use another" \
             "JAC_BUILD_DIR" >&2
        exit 1
    fi
    cmake --build "$build" -j"$(nproc)" --target jacobian_bench >/dev/null
    check_args=()
    if ((only_sparse)); then
        check_args=(--problems "P3,P6,P7")
    elif ((!sparse)); then
        check_args=(--problems "P1,P2,P3,P4,P5")
    fi
    "$bench" --check "${check_args[@]}" >/dev/null ||
        echo "compare.sh: jacobian_bench --check fails; the report will" \
             "say which checksums differ" >&2

    rm -f "$out/profiles.json"
    say "machine"
    {
        echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
        echo "tree=$(git -C "$root" describe --always --dirty 2>/dev/null ||
            echo unknown)"
        echo "cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
        echo "cores=$(nproc)"
        echo "memory=$(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
        echo "kernel=$(uname -r)"
        echo "os=$(sed -n 's/^PRETTY_NAME=//p' /etc/os-release | tr -d '"')"
        echo "cc=$(cc --version | head -1)"
        echo "openblas=$(dpkg-query -W -f='${Version}' libopenblas0-pthread 2>/dev/null || echo unknown)"
        echo "torch=$("$python" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo missing) (python3-torch $(dpkg-query -W -f='${Version}' python3-torch 2>/dev/null))"
        echo "adolc=$(dpkg-query -W -f='${Version}' libadolc-dev 2>/dev/null || echo missing)"
        echo "colpack=$(dpkg-query -W -f='${Version}' libcolpack-dev 2>/dev/null || echo missing)"
        echo "openblas_coretype=${OPENBLAS_CORETYPE:-unset}"
        echo "load_before=$(cut -d' ' -f1-3 /proc/loadavg)"
        echo "rounds=$rounds"
        if ((only_sparse)); then
            echo "mode=sparse"
        else
            echo "mode=full"
        fi
    } >"$out/machine.txt"
    cat "$out/machine.txt" >&2

    # The ADOL-C references are built first, in a temporary folder, each
    # with the command in the file's own "// Build:" line. Without them (no
    # libadolc-dev or libcolpack-dev, no g++) the run goes on without
    # ADOL-C.
    adolc_dir=$(mktemp -d)
    trap 'rm -rf "$adolc_dir"' EXIT
    # build_reference NAME FALLBACK: builds NAME.cpp; fails when it cannot
    build_reference() {
        local name=$1 fallback=$2 cmd
        [[ -f /usr/include/adolc/adolc.h && -f $refdir/$name.cpp ]] ||
            return 1
        command -v g++ >/dev/null || return 1
        cp "$refdir/$name.cpp" "$adolc_dir/"
        cmd=$(sed -n 's|^// Build: *||p' "$refdir/$name.cpp" | head -1)
        if [[ ! $cmd =~ ^g\+\+\ .*$name\.cpp ]]; then
            cmd=$fallback
        fi
        echo "$cmd" >&2
        (cd "$adolc_dir" && bash -c "$cmd")
    }
    have_adolc=0
    if ((!only_sparse)); then
        say "building the ADOL-C reference"
        build_reference adolc_reference \
            'g++ -O2 -ffp-contract=off -std=c++14 -o adolc_reference adolc_reference.cpp -ladolc' &&
            have_adolc=1
        if ((!have_adolc)); then
            echo "compare.sh: ADOL-C (libadolc-dev) is not available; the" \
                 "report will have no ADOL-C lines" >&2
        fi
    fi
    have_adolc_sparse=0
    if ((sparse)); then
        say "building the sparse ADOL-C reference"
        if [[ -f /usr/include/ColPack/ColPackHeaders.h ]] &&
                build_reference adolc_sparse_reference \
                    'g++ -O2 -ffp-contract=off -std=c++14 -o adolc_sparse_reference adolc_sparse_reference.cpp -ladolc -lColPack -lgomp'; then
            have_adolc_sparse=1
        else
            echo "compare.sh: ADOL-C with ColPack (libadolc-dev," \
                 "libcolpack-dev) is not available; the sparse section" \
                 "will have no ADOL-C lines" >&2
        fi
    fi
    have_torch=1
    if ! "$python" -c 'import torch' 2>/dev/null ||
            [[ ! -f $refdir/torch_reference.py ]]; then
        have_torch=0
        echo "compare.sh: PyTorch is not available to $python; the report" \
             "will have no PyTorch lines" >&2
    fi
    have_torch_sparse=$have_torch
    if ((sparse && have_torch)) &&
            [[ ! -f $refdir/torch_sparse_reference.py ]]; then
        have_torch_sparse=0
        echo "compare.sh: $refdir/torch_sparse_reference.py not found; the" \
             "sparse section will have no PyTorch lines" >&2
    fi

    # The sparse problems: each (problem, size) runs in a process of its
    # own, ADOL-C's as its file says (its adouble store only grows within a
    # process) and ours too, each variant apart, so that the peak resident
    # set of a process is that of one variant. /usr/bin/time gives that
    # peak for every process. Our dense variant only where the dense matrix
    # is small.
    sparse_cases=(
        "P6_bratu2d N=32 dense"
        "P6_bratu2d N=100"
        "P6_bratu2d N=316"
        "P6_bratu2d N=1000"
        "P7_bratu2d_energy N=100"
        "P7_bratu2d_energy N=316"
        "P7_rosenbrock n=512 dense"
        "P7_rosenbrock n=10000"
        "P7_rosenbrock n=100000"
    )
    timed=()
    if [[ -x /usr/bin/time ]]; then
        timed=(/usr/bin/time -a -f)
    fi
    # peak KEY FILE COMMAND...: runs COMMAND, appending "KEY peak_kB" to
    # FILE when /usr/bin/time is there
    peak() {
        local key=$1 file=$2
        shift 2
        if ((${#timed[@]})); then
            "${timed[@]}" "$key %M" -o "$file" "$@"
        else
            "$@"
        fi
    }
    run_sparse_round() {
        local round=$1 case prob size extra v rc
        say "round $round: sparse problems, libjacobian"
        for case in "${sparse_cases[@]}"; do
            read -r prob size extra <<<"$case"
            for v in replay dynamic $extra; do
                # shellcheck disable=SC2086
                peak "$prob $size $v" "$out/ours-sparse-rss.txt" \
                    "$bench" --problems "$prob" --sizes "$size" \
                    --variants "$v" --threads 1 ${JAC_SPARSE_ARGS:-} \
                    >>"$out/ours-sparse.jsonl" 2>>"$out/ours-sparse.log" ||
                    echo "compare.sh: jacobian_bench $prob $size $v" \
                         "reported failures (see ours-sparse.jsonl)" >&2
            done
        done
        if ((only_sparse)); then
            # P3 n=512's Hessian, for its target (a full run has it).
            "$bench" --problems P3 --sizes n=512 --variants hessian \
                --threads 1 >>"$out/ours-p3.jsonl" \
                2>>"$out/ours-sparse.log" ||
                echo "compare.sh: jacobian_bench P3 reported failures" >&2
        fi
        if ((have_torch_sparse)); then
            say "round $round: sparse problems, PyTorch"
            (cd "$out" && BENCH_ONLY=P6,P7 OMP_NUM_THREADS=1 \
                OPENBLAS_NUM_THREADS=1 "$python" \
                "$refdir/torch_sparse_reference.py" --threads 1 \
                >>"$out/torch-sparse.jsonl" 2>>"$out/torch-sparse.log") ||
                echo "compare.sh: torch_sparse_reference.py failed (see" \
                     "torch-sparse.log)" >&2
            if ((only_sparse)); then
                # P3 for its target, after P2 as in a full run: in a
                # process that starts with P3, glibc maps and unmaps
                # PyTorch's temporaries on every call (see below), which
                # would flatter us.
                (cd "$out" && BENCH_ONLY=P2,P3 OMP_NUM_THREADS=1 \
                    OPENBLAS_NUM_THREADS=1 "$python" \
                    "$refdir/torch_reference.py" --threads 1 \
                    >>"$out/torch-p3.jsonl" 2>>"$out/torch-sparse.log") ||
                    echo "compare.sh: torch_reference.py (P3) failed" >&2
            fi
        fi
        ((have_adolc_sparse)) || return 0
        say "round $round: sparse problems, ADOL-C"
        for case in "${sparse_cases[@]}"; do
            read -r prob size extra <<<"$case"
            rc=0
            (cd "$adolc_dir" && BENCH_ONLY=$prob BENCH_SIZE=${size#*=} \
                peak "$prob $size" "$out/adolc-sparse-rss.txt" \
                ./adolc_sparse_reference "${ADOLC_BUDGET:-1.0}" \
                >>"$out/adolc-sparse.jsonl") || rc=$?
            if ((rc == 2)); then
                echo "compare.sh: ADOL-C spilled a buffer to disk on" \
                     "$prob $size; its times are pessimistic" >&2
                rm -f "$adolc_dir"/ADOLC-*.tap
            elif ((rc != 0)); then
                echo "compare.sh: adolc_sparse_reference $prob $size" \
                     "exited $rc" >&2
            fi
        done
    }

    # dgemm before and after everything else; the report uses the faster
    # of the two, so that a busy moment cannot flatter the GEMM fraction.
    if ((!only_sparse)); then
        say "cblas_dgemm"
        "$bench" --gemm --budget 1 | tee "$out/gemm.jsonl" >&2
    fi

    # Each program runs every problem in one process, as it is meant to be
    # run: a reference's times can depend on what ran before in its process
    # (PyTorch's P3 n=512 "batched" takes 16-48 ms instead of 2 ms in a
    # process that starts with P3, because glibc then maps and unmaps its
    # large temporaries on every call). With --rounds the sequence repeats.
    : >"$out/ours.jsonl"
    : >"$out/ours.log"
    : >"$out/torch.jsonl"
    : >"$out/torch.log"
    : >"$out/adolc.jsonl"
    for f in ours-sparse.jsonl ours-sparse.log ours-sparse-rss.txt \
            ours-p3.jsonl torch-sparse.jsonl torch-sparse.log torch-p3.jsonl \
            adolc-sparse.jsonl adolc-sparse-rss.txt sparse-check.txt; do
        : >"$out/$f"
    done
    for ((round = 1; round <= rounds; round++)); do
        if ((only_sparse)); then
            run_sparse_round "$round"
            continue
        fi
        say "round $round: libjacobian"
        # shellcheck disable=SC2086
        "$bench" --problems P1,P2,P3,P4,P5 ${JAC_BENCH_ARGS:-} \
            >>"$out/ours.jsonl" 2>>"$out/ours.log" ||
            echo "compare.sh: jacobian_bench reported failures" \
                 "(see ours.jsonl)" >&2

        if ((have_torch)); then
            say "round $round: PyTorch"
            (cd "$out" && BENCH_OUT="$out/torch-round.jsonl" \
                "$python" "$refdir/torch_reference.py" \
                >>"$out/torch.log" 2>&1) ||
                echo "compare.sh: torch_reference.py failed (see" \
                     "torch.log)" >&2
            cat "$out/torch-round.jsonl" >>"$out/torch.jsonl" 2>/dev/null ||
                true
            rm -f "$out/torch-round.jsonl"
        fi

        if ((have_adolc)); then
            say "round $round: ADOL-C"
            rc=0
            (cd "$adolc_dir" && ./adolc_reference "${ADOLC_BUDGET:-1.0}" \
                >>"$out/adolc.jsonl") || rc=$?
            if ((rc == 2)); then
                echo "compare.sh: ADOL-C spilled a buffer to disk; its" \
                     "times are pessimistic" >&2
                rm -f "$adolc_dir"/ADOLC-*.tap
            elif ((rc != 0)); then
                echo "compare.sh: adolc_reference exited $rc" >&2
            fi
        fi
        if ((sparse)); then
            run_sparse_round "$round"
        fi
    done
    grep -h '^jacobian_bench:' "$out/ours.log" >&2 || true
    if ((sparse)); then
        # Every sparse line against the closed forms of PROBLEMS.md.
        "$python" "$refdir/reference_values.py" --check \
            "$out/ours-sparse.jsonl" "$out/adolc-sparse.jsonl" \
            "$out/torch-sparse.jsonl" >"$out/sparse-check.txt" 2>&1 ||
            echo "compare.sh: reference_values.py --check found" \
                 "disagreements or errors (see sparse-check.txt)" >&2
    fi

    if ((!only_sparse)); then
        say "cblas_dgemm again"
        "$bench" --gemm --budget 1 | tee -a "$out/gemm.jsonl" >&2
    fi
    echo "load_after=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/machine.txt"
fi

# ---------------------------------------------------------------- report
say "report"
profile_tool=none
if ((profile)) && [[ -z $report_only ]]; then
    if command -v perf >/dev/null &&
            perf record -q -o /dev/null -- true >/dev/null 2>&1; then
        profile_tool=perf
    elif command -v valgrind >/dev/null; then
        profile_tool=callgrind
    fi
fi

# The sparse section first (OUT/sparse.md): the page includes it, or, after
# --only-sparse, it replaces the section of the page there is.
sparse_md=
# A profile of the warm sparse sweep (P6 N=316, replay): what bounds it.
if ((sparse)) && [[ $profile_tool == perf ]]; then
    if perf record -q -F 1999 -o "$out/perf-sparse.data" -- "$bench" \
        --problems P6_bratu2d --sizes N=316 --variants replay --threads 1 \
        --budget 3 >/dev/null 2>&1; then
        perf report -i "$out/perf-sparse.data" --stdio -q --sort symbol \
            --percent-limit 1.5 2>/dev/null >"$out/sparse-profile.txt" || true
    fi
    rm -f "$out/perf-sparse.data"
fi
if ((sparse)); then
    sparse_mode=full
    if ((only_sparse)); then
        sparse_mode=sparse
    fi
"$python" - "$out" "$sparse_mode" <<'PY'
# The sparse section of docs/benchmarks.md (P6, P7 of PROBLEMS.md), from
# the results in OUT: written to OUT/sparse.md, and a summary on stdout.
import json
import os
import re
import sys

out, mode = sys.argv[1:3]

SPARSE = [("P6_bratu2d", "N=32"), ("P6_bratu2d", "N=100"),
          ("P6_bratu2d", "N=316"), ("P6_bratu2d", "N=1000"),
          ("P7_bratu2d_energy", "N=100"), ("P7_bratu2d_energy", "N=316"),
          ("P7_rosenbrock", "n=512"), ("P7_rosenbrock", "n=10000"),
          ("P7_rosenbrock", "n=100000")]
GB_MIB = 1e9 / 2 ** 20  # 1 GB in MiB, the unit of peak_rss_mb


def load(name):
    rows = []
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return rows
    for line in open(path):
        line = line.strip()
        if line.startswith("{"):
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass
    return rows


def load_rss(name):
    """Peak resident set (MiB) of each process, from /usr/bin/time."""
    rss = {}
    path = os.path.join(out, name)
    if os.path.exists(path):
        for line in open(path):
            f = line.split()
            if len(f) >= 3 and f[-1].isdigit():
                key = tuple(f[:-1])
                rss[key] = max(rss.get(key, 0.0), int(f[-1]) / 1024.0)
    return rss


ours_all = load("ours-sparse.jsonl")
adolc_all = load("adolc-sparse.jsonl")
torch_all = load("torch-sparse.jsonl")
if mode == "sparse":
    p3_ours, p3_torch = load("ours-p3.jsonl"), load("torch-p3.jsonl")
else:
    p3_ours, p3_torch = load("ours.jsonl"), load("torch.jsonl")
ours_rss = load_rss("ours-sparse-rss.txt")
adolc_rss = load_rss("adolc-sparse-rss.txt")
if mode == "full" and not (ours_all or adolc_all or torch_all):
    # results of a run without the sparse problems: no section
    open(os.path.join(out, "sparse.md"), "w").close()
    sys.exit(0)
machine = {}
if os.path.exists(os.path.join(out, "machine.txt")):
    for line in open(os.path.join(out, "machine.txt")):
        k, _, v = line.rstrip("\n").partition("=")
        machine[k] = v


def fmt_t(t):
    if t is None:
        return "–"
    if t >= 1:
        return "%.2f s" % t
    if t >= 1e-3:
        return "%.3g ms" % (t * 1e3)
    return "%.3g µs" % (t * 1e6)


def fmt_r(x):
    return "–" if x is None else "%.3g×" % x


def lines(rows, problem, size, variant=None, ok=True):
    return [r for r in rows if r.get("problem") == problem
            and r.get("size") == size and r.get("threads", 1) == 1
            and (variant is None or r.get("variant") == variant)
            and (("median_s" in r) == ok)]


def best(rows, problem, size, variant, key="median_s"):
    """The line of the variant with the least value of key over the runs
    (rounds), or None."""
    c = [r for r in lines(rows, problem, size, variant) if key in r]
    return min(c, key=lambda r: r[key]) if c else None


def rel_ok(a, b):
    for k in ("sum", "fro", "j00"):
        if not abs(a[k] - b[k]) <= 1e-9 * abs(b[k]):
            return False
    return a.get("nnz") is None or b.get("nnz") is None or \
        a["nnz"] == b["nnz"]


def ratio(anchor, ours):
    return anchor / ours if anchor is not None and ours else None


ADOLC_WARM, ADOLC_RETAPE = "values", "tape+values"
ADOLC_COLD = "tape+pattern+color+values"

L = []
w = L.append
summary = []  # (problem, size, what, ours, anchor, ratio)
w("<!-- sparse section: rewritten by bench/compare.sh, also alone with "
  "--only-sparse -->")
w("## Sparse Jacobians and Hessians (P6, P7)")
w("")
if mode == "sparse":
    w("Measured by `bench/compare.sh --only-sparse` on %s (tree %s, load "
      "average %s before, %s after), apart from the rest of this page: "
      "compare these figures only with each other." % (
          machine.get("date", "?"), machine.get("tree", "?"),
          machine.get("load_before", "?"), machine.get("load_after", "?")))
    w("")
w("The sparse problems of `PROBLEMS.md`: P6 is the sparse Jacobian of the "
  "2-D Bratu residual F(u) on an N × N grid (5-point pattern), P7 the "
  "sparse Hessians of the Bratu energy (whose gradient is F) and of "
  "Rosenbrock's function (tridiagonal). Every result holds all the "
  "nonzeros of the full matrix (both triangles of a Hessian), on one "
  "thread. Each (problem, size) runs in a process of its own, ours (each "
  "variant apart) as ADOL-C's.")
w("")
w("- our `replay`: the function recorded once with `jac_program_record`; "
  "*cold* is recording + `jac_sparse_jacobian_plan` / "
  "`jac_sparse_hessian_plan` (pattern, colouring, seeds) + one "
  "evaluation, *warm* one `jac_sparse_jacobian` / `jac_sparse_hessian` "
  "with the plan (P6 also returns F). Against ADOL-C's `values` (existing "
  "tape, pattern and seed) and `tape+pattern+color+values`.")
w("- our `dynamic`: the function recorded on the dynamic tape on every "
  "call, then `jac_sparse_jacobian_tape` / `jac_sparse_hessian_tape`; "
  "*cold* is the first call (it makes the plan), *warm* a new recording "
  "whose plan is reused after its structural check. Against ADOL-C's "
  "`tape+values` (re-taped, pattern and seed reused) and "
  "`tape+pattern+color+values`.")
w("- PyTorch has no sparse Jacobian: its best dense variant "
  "(`rowloop`, `functional_vec`), where the dense matrix fits in 2 GB, "
  "against our `dynamic` (both record on every call). Our `dense` "
  "variant is `jac_jacobian` / `jac_hessian` for scale.")
w("")
w("Ratios are anchor time ÷ our time (medians; above 1 we are faster). "
  "ADOL-C 2.7.2 with ColPack 1.0.10, called step by step as its "
  "`sparse_jac` / `sparse_hess` drivers do (`shared/bench/"
  "adolc_sparse_reference.cpp`).")
w("")

phases = []  # rows of the per-phase table
any_rows = False
for problem, size in SPARSE:
    rp, rp_cold = (best(ours_all, problem, size, "replay"),
                   best(ours_all, problem, size, "replay", "cold_s"))
    dy, dy_cold = (best(ours_all, problem, size, "dynamic"),
                   best(ours_all, problem, size, "dynamic", "cold_s"))
    dn = best(ours_all, problem, size, "dense")
    errs = lines(ours_all, problem, size, ok=False)
    errs = [e for e in errs if "error" in e]
    # a failed variant may still have cold times
    if dy_cold is None:
        dy_cold = next((e for e in errs if e.get("variant") == "dynamic"
                        and "cold_s" in e), None)
    if rp_cold is None:
        rp_cold = next((e for e in errs if e.get("variant") == "replay"
                        and "cold_s" in e), None)
    ad = {v: best(adolc_all, problem, size, v) for v in
          (ADOLC_WARM, ADOLC_RETAPE, ADOLC_COLD, "pattern+color+values")}
    th = [r for r in lines(torch_all, problem, size)]
    tb = min(th, key=lambda r: r["median_s"]) if th else None
    tskip = [r for r in torch_all if r.get("problem") == problem and
             r.get("size") == size and "skipped" in r]
    if not (rp or dy or dn or errs or any(ad.values()) or tb):
        continue
    any_rows = True
    ref = rp or dy or dn
    n = None
    if ref is not None:
        n = int(size.split("=")[1])
        n = n * n if problem != "P7_rosenbrock" else n
    w("### %s %s%s" % (problem, size,
                       " (n = %d unknowns)" % n if n else ""))
    w("")
    w("| comparison | ours | anchor | anchor ÷ ours |")
    w("|---|---|---|---|")

    def row(what, o, okey, a, akey, label):
        ot = o.get(okey) if o else None
        at = a.get(akey) if a else None
        r = ratio(at, ot)
        w("| %s | %s | %s | %s |" % (what, fmt_t(ot), fmt_t(at), fmt_r(r)))
        summary.append((problem, size, label, ot, at, r))
        return r

    row("warm, tape kept: `replay` vs ADOL-C `values`", rp, "median_s",
        ad[ADOLC_WARM], "median_s", "replay warm / values")
    row("warm, recorded again: `dynamic` vs ADOL-C `tape+values`", dy,
        "median_s", ad[ADOLC_RETAPE], "median_s",
        "dynamic warm / tape+values")
    row("cold: `replay` vs ADOL-C `tape+pattern+color+values`", rp_cold,
        "cold_s", ad[ADOLC_COLD], "median_s", "replay cold / cold")
    row("cold: `dynamic` vs ADOL-C `tape+pattern+color+values`", dy_cold,
        "cold_s", ad[ADOLC_COLD], "median_s", "dynamic cold / cold")
    if tb is not None:
        row("PyTorch dense `%s` vs our `dynamic` warm" % tb["variant"], dy,
            "median_s", tb, "median_s", "dynamic warm / torch")
        row("PyTorch dense `%s` vs our `dynamic` cold" % tb["variant"],
            dy_cold, "cold_s", tb, "median_s", "dynamic cold / torch")
        if dn is not None:
            row("PyTorch dense `%s` vs our `dense`" % tb["variant"], dn,
                "median_s", tb, "median_s", "dense / torch")
    elif tskip:
        w("| PyTorch dense | | skipped: %s | |" % tskip[0]["skipped"])
    w("")
    notes = []
    cols = []
    for name, r in (("replay", rp), ("dynamic", dy)):
        if r is not None:
            cols.append("%s %d (%s)" % (name, r["colors"], r["method"]))
    a0 = next((a for a in ad.values() if a is not None), None)
    if cols or a0:
        notes.append("colours: ours %s; ADOL-C %s" % (
            ", ".join(cols) or "–", a0["colors"] if a0 else "–"))
    if ref is not None:
        notes.append("nnz %d" % ref["nnz"] + (
            " (ADOL-C %d, stored %d)" % (a0["nnz"], a0["nnz_stored"])
            if a0 else ""))
    mem = []
    for name, r in (("replay", rp), ("dynamic", dy), ("dense", dn)):
        if r is not None:
            p = ours_rss.get((problem, size, name))
            mem.append("%s %.0f MiB (library %.0f MiB%s)" % (
                name, r["peak_rss_mb"], r["ctx_peak_mb"],
                ", process %.0f MiB" % p if p else ""))
    if mem:
        notes.append("our peak resident set: " + "; ".join(mem))
    if (problem, size) in adolc_rss:
        notes.append("ADOL-C process peak %.0f MiB" %
                     adolc_rss[(problem, size)])
    checks = []
    for name, r in (("replay", rp), ("dynamic", dy), ("dense", dn)):
        if r is None:
            continue
        if r.get("check") != "ok":
            checks.append("our %s ≠ PROBLEMS.md (%s)" % (
                name, r.get("check_failed", "?")))
        for aname, a in (("ADOL-C", a0), ("PyTorch", tb)):
            if a is not None and not rel_ok(r, a):
                checks.append("our %s ≠ %s" % (name, aname))
    notes.append("checksums: " + ("; ".join(checks) if checks else
                                  "all agree with PROBLEMS.md and the "
                                  "anchors to 1e-9, nnz exact"))
    for e in errs:
        notes.append("**our `%s` failed**: %s" % (e.get("variant"),
                                                  e["error"]))
    for s_ in notes:
        w("- " + s_)
    w("")
    phases.append((problem, size, rp_cold, dy_cold, ad[ADOLC_COLD]))

if not any_rows:
    w("No sparse results in this run.")
    w("")

# ------------------------------------------------------------ targets
TARGETS = []  # (text, value, threshold, unit)


def find(problem, size, label):
    for s in summary:
        if s[:3] == (problem, size, label):
            return s[5]
    return None


for problem, size in (("P6_bratu2d", "N=316"), ("P6_bratu2d", "N=1000"),
                      ("P7_rosenbrock", "n=100000"),
                      ("P7_bratu2d_energy", "N=316")):
    TARGETS.append(("%s %s warm `replay` ≥ 2× faster than ADOL-C `values`"
                    % (problem, size),
                    find(problem, size, "replay warm / values"), 2.0))
    TARGETS.append(("%s %s warm `dynamic` ≥ 2× faster than ADOL-C "
                    "`tape+values`" % (problem, size),
                    find(problem, size, "dynamic warm / tape+values"), 2.0))
    if problem == "P6_bratu2d":
        c = [(find(problem, size, lab), v) for lab, v in
             (("replay cold / cold", "replay"),
              ("dynamic cold / cold", "dynamic"))]
        c = [x for x in c if x[0] is not None]
        b = max(c) if c else (None, "")
        TARGETS.append(("%s %s cold ≥ 2× faster than ADOL-C "
                        "`tape+pattern+color+values` (our faster cold: "
                        "`%s`)" % (problem, size, b[1]), b[0], 2.0))
# P3 n=512: the default jac_hessian against PyTorch's best, one thread.
p3o = [r for r in p3_ours if r.get("problem") == "P3_rosenbrock"
       and r.get("size") == "n=512" and r.get("variant") == "hessian"
       and r.get("threads") == 1 and "median_s" in r]
p3t = [r for r in p3_torch if r.get("problem") == "P3_rosenbrock"
       and r.get("size") == "n=512" and r.get("threads") == 1
       and "median_s" in r]
p3_line = None
if p3o and p3t:
    o = min(p3o, key=lambda r: r["median_s"])
    t = min(p3t, key=lambda r: r["median_s"])
    p3_line = (o, t)
    TARGETS.append(("P3_rosenbrock n=512 Hessian by the default "
                    "`jac_hessian` ≥ 20× faster than PyTorch's best dense "
                    "variant (`%s`, %s against our %s)" % (
                        t["variant"], fmt_t(t["median_s"]),
                        fmt_t(o["median_s"])),
                    t["median_s"] / o["median_s"], 20.0))
else:
    TARGETS.append(("P3_rosenbrock n=512 Hessian by the default "
                    "`jac_hessian` ≥ 20× faster than PyTorch's best dense "
                    "variant", None, 20.0))
mem_targets = []
for name in ("replay", "dynamic"):
    r = best(ours_all, "P6_bratu2d", "N=1000", name)
    peak = None
    if r is not None:
        peak = max(r["peak_rss_mb"],
                   ours_rss.get(("P6_bratu2d", "N=1000", name), 0.0))
    else:
        e = [x for x in lines(ours_all, "P6_bratu2d", "N=1000", name,
                              ok=False) if x.get("peak_rss_mb", -1) > 0]
        peak = e[0]["peak_rss_mb"] if e else None
    mem_targets.append(("P6_bratu2d N=1000 `%s`: peak resident set below "
                        "1 GB (%.1f MiB)" % (name, GB_MIB), peak))

w("### Targets")
w("")
nmet = nev = 0
for text, v, thr in TARGETS:
    if v is None:
        w("- not evaluated: %s" % text)
        continue
    nev += 1
    nmet += v >= thr
    w("- %s: %s (%s)" % ("met" if v >= thr else "**missed**", text,
                         fmt_r(v)))
for text, peak in mem_targets:
    if peak is None:
        w("- not evaluated: %s" % text)
        continue
    nev += 1
    nmet += peak < GB_MIB
    w("- %s: %s (%.0f MiB)" % ("met" if peak < GB_MIB else "**missed**",
                               text, peak))
w("")
w("%d of %d evaluated targets met (medians). The memory figures are the "
  "peak resident set of the process that ran the variant (VmHWM, started "
  "again before the variant; the larger of that and `/usr/bin/time`'s "
  "maximum for the process)." % (nmet, nev))
w("")

# ------------------------------------------------------------ phases
if phases:
    w("### Where the cold time goes")
    w("")
    w("Medians of the phases of the cold runs. Ours, `replay`: "
      "`jac_program_record`, the plan (sparsity pattern, colouring, seeds "
      "and recovery, which the API makes in one call), the first "
      "evaluation (its workspaces are made on first use); `dynamic`: the "
      "recording on the tape, then the call that compiles the recording, "
      "makes the plan and evaluates it. ADOL-C: tape, pattern, colouring, "
      "compressed sweep, recovery.")
    w("")
    w("| problem | size | replay: record / plan / first sweep | "
      "dynamic: record / call | ADOL-C: tape / pattern / color / sweep / "
      "recover |")
    w("|---|---|---|---|---|")
    for problem, size, rc, dc, ac in phases:
        def ph(r, keys):
            if r is None or not all(k in r for k in keys):
                return "–"
            return " / ".join(fmt_t(r[k]) for k in keys)
        w("| %s | %s | %s | %s | %s |" % (
            problem, size, ph(rc, ("record_s", "plan_s", "sweep_s")),
            ph(dc, ("record_s", "tape_call_s")),
            ph(ac, ("tape_s", "pattern_s", "color_s", "sweep_s",
                    "recover_s"))))
    w("")

prof = os.path.join(out, "sparse-profile.txt")
if os.path.exists(prof):
    rows = []
    for line in open(prof):
        m = re.match(r"\s*([\d.]+)%\s+\[(.)\]\s+(.*\S)", line)
        if m:
            # perf's empty trailing columns ("-      -") dropped
            sym = re.sub(r"(\s+-)+$", "", m.group(3)).strip()
            rows.append((float(m.group(1)), sym +
                         (" (kernel)" if m.group(2) == "k" else "")))
    if rows:
        w("### Where the warm time goes")
        w("")
        w("`perf record` of the P6 N=316 `replay` benchmark "
          "(`build/bench/jacobian_bench --problems P6_bratu2d --sizes N=316 "
          "--variants replay --threads 1 --budget 3`), symbols above "
          "1.5%. The process also measures the cold case, whose pattern "
          "walk (`make_set`, `walk_start`) and fresh pages (the kernel's "
          "page faults) show here too; the rest is the warm sweep:")
        w("")
        w("| share | symbol |")
        w("|---|---|")
        for pct, sym in rows[:14]:
            w("| %.1f%% | `%s` |" % (pct, sym))
        w("")
        w("The sweep is bound by memory traffic, not arithmetic. The "
          "residual is 19 tensor values per grid point (the padded grid, "
          "eight slices, the differences, the exponential); a reverse sweep "
          "reads and writes an adjoint of each for every colour, and the "
          "replay copies each tensor op's output into the program's value "
          "array (`memmove`). The reverse sweep adds each op's cotangent "
          "straight into its input's adjoint (a slice only its own "
          "positions, `jac__raw_slice`), but every op is still a pass over "
          "the grid for each colour (`dense_sub_*`, `jac__raw_unary`). "
          "ADOL-C's `fov_forward` "
          "streams its scalar tape once with the five tangents of each "
          "live location in cache. Closing the gap needs the replay to "
          "write tensor outputs in place, then sweeps fused over "
          "tiles of the grid. The cold misses are the plan, most of it "
          "the pattern walk (an index domain for each of the 19 values per "
          "grid point, where ADOL-C's `jac_pat` walks scalar locations), "
          "and the first evaluation, which makes the workspace (its "
          "fresh pages): the table above.")
        w("")

chk = os.path.join(out, "sparse-check.txt")
if os.path.exists(chk):
    last = [l for l in open(chk) if "line(s) checked" in l]
    if last:
        w("`shared/bench/reference_values.py --check` on every sparse line "
          "of this run (ours, ADOL-C, PyTorch): %s" % last[-1].strip() +
          ".")
        w("")
w("<!-- end of the sparse section -->")

with open(os.path.join(out, "sparse.md"), "w") as fh:
    fh.write("\n".join(L) + "\n")

# ------------------------------------------------------------ stdout
print("%-18s %-9s %-28s %11s %11s %9s" % ("problem", "size", "comparison",
                                          "ours", "anchor", "anc/ours"))
for problem, size, label, ot, at, r in summary:
    print("%-18s %-9s %-28s %11s %11s %9s" % (problem, size, label,
                                              fmt_t(ot), fmt_t(at),
                                              fmt_r(r)))
print()
for text, v, thr in TARGETS:
    print("%-4s %s: %s" % ("n/a" if v is None else "ok" if v >= thr
                           else "MISS", text.replace("`", ""), fmt_r(v)))
for text, peak in mem_targets:
    print("%-4s %s: %s" % ("n/a" if peak is None else "ok"
                           if peak < GB_MIB else "MISS",
                           text.replace("`", ""),
                           "–" if peak is None else "%.0f MiB" % peak))
print("\nsparse: %d of %d targets met; wrote %s/sparse.md" % (nmet, nev, out))
PY
    sparse_md=$out/sparse.md
fi

if ((only_sparse)); then
    "$python" - "$sparse_md" "$docs/benchmarks.md" <<'PY'
# Puts the sparse section into the page: in place of the one it has, else
# before its "## Machine" section, else at its end.
import os
import sys

section = open(sys.argv[1]).read()
page = sys.argv[2]
BEGIN = "<!-- sparse section:"
END = "<!-- end of the sparse section -->"
text = open(page).read() if os.path.exists(page) else \
    "# Benchmarks\n\n"
if BEGIN in text and END in text:
    a = text.index(BEGIN)
    b = text.index(END) + len(END)
    text = text[:a] + section.rstrip("\n") + text[b:]
elif "\n## Machine" in text:
    a = text.index("\n## Machine") + 1
    text = text[:a] + section + "\n" + text[a:]
else:
    text = text.rstrip("\n") + "\n\n" + section
with open(page, "w") as fh:
    fh.write(text)
print("wrote the sparse section of %s" % page)
PY
    exit 0
fi

"$python" - "$out" "$docs" "$bench" "$profile_tool" "$sparse_md" <<'PY'
import json
import os
import re
import subprocess
import sys

out, docs, bench, profile_tool, sparse_md = sys.argv[1:6]

SIZES = {  # problem -> sizes in PROBLEMS.md order
    "P1_square": ["n=2", "n=256", "n=2048"],
    "P2_mlp": ["16-32-16", "128-512-128", "512-2048-512"],
    "P3_rosenbrock": ["n=64", "n=512"],
    "P4_chain": ["k=10000", "k=100000", "k=1000000"],
    "P5_batch_mlp": ["B=64"],
}
ORDER = [(p, s) for p in SIZES for s in SIZES[p]]
SHORT = {"P1_square": "P1", "P2_mlp": "P2", "P3_rosenbrock": "P3",
         "P4_chain": "P4", "P5_batch_mlp": "P5"}


def load(name):
    rows = []
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return rows
    for line in open(path):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:
            pass
    return rows


ours = [r for r in load("ours.jsonl") if "median_s" in r]
errors = [r for r in load("ours.jsonl") if "error" in r]
torch = [r for r in load("torch.jsonl") if "median_s" in r]
adolc = [r for r in load("adolc.jsonl") if "median_s" in r]
gemm = load("gemm.jsonl")
machine = {}
if os.path.exists(os.path.join(out, "machine.txt")):
    for line in open(os.path.join(out, "machine.txt")):
        k, _, v = line.rstrip("\n").partition("=")
        machine[k] = v


DYNAMIC = ("rowloop", "batched", "forward", "hessian", "grad")


def comparable(impl, r):
    """Only complete computations that record inside the timed region (our
    `replay` records once outside it, `floor` is no AD at all: both have
    their own section)."""
    v = r["variant"]
    if impl == "pytorch":
        return r["problem"] != "P4_chain" or v == "fwd+bwd"
    if impl == "adolc":
        return v.startswith("tape+") or v.startswith("tape_keep+")
    return v in DYNAMIC


def adolc_replay(r):
    """ADOL-C's drivers on an existing tape that deliver the whole result
    (`jacobian`, `hessian`, `gradient`, their alternatives such as
    `fov_reverse` or `hessian2`, P5's `..._per_sample`): what our `replay`
    does. Not the partial sweeps (`zos_forward_only`) nor the FTZ/DAZ run
    whose result differs."""
    v = r["variant"]
    return not (v.startswith("tape") or v == "zos_forward_only"
                or "result_differs" in v)


def best(rows, impl, problem, size, threads):
    c = [r for r in rows if r["problem"] == problem and r["size"] == size
         and r["threads"] == threads and comparable(impl, r)]
    return min(c, key=lambda r: r["median_s"]) if c else None


def agree(a, b, problem, size):
    """Checksums equal to 1e-9 relative (P2 large's sum: 1e-9 of fro)."""
    bad = []
    for k in ("sum", "fro", "j00"):
        scale = abs(b[k])
        if k == "sum" and problem == "P2_mlp" and size == "512-2048-512":
            scale = abs(b["fro"])
        # P4 k=1e6: the derivative underflows; any two values below the
        # smallest normal double agree
        if not (abs(a[k] - b[k]) <= 1e-9 * scale
                or abs(a[k] - b[k]) <= 2.2250738585072014e-308):
            bad.append(k)
    if "value" in a and "value" in b and \
            not abs(a["value"] - b["value"]) <= 1e-9 * abs(b["value"]):
        bad.append("value")
    return bad


def fmt_t(t):
    if t is None:
        return "–"
    if t >= 1:
        return "%.2f s" % t
    if t >= 1e-3:
        return "%.3g ms" % (t * 1e3)
    return "%.3g µs" % (t * 1e6)


def fmt_r(x):
    if x is None:
        return "–"
    return "%.3g×" % x


def fmt_rr(median_ratio, min_ratio):
    """The ratio of medians, and of minima in parentheses."""
    if median_ratio is None:
        return "–"
    return "%s (%s)" % (fmt_r(median_ratio), fmt_r(min_ratio))


thread_counts = sorted({r["threads"] for r in ours}) or [1]


# ------------------------------------------------------------ comparison
table = []  # one dict per (problem, size, threads)
for problem, size in ORDER:
    for t in thread_counts:
        o = best(ours, "libjacobian", problem, size, t)
        if o is None:
            continue
        tb = best(torch, "pytorch", problem, size, t)
        ab = best(adolc, "adolc", problem, size, t)
        checks = []
        allours = [r for r in ours if r["problem"] == problem
                   and r["size"] == size]
        failed = [r["variant"] + "/t%d" % r["threads"] for r in allours
                  if r.get("check") != "ok"]
        if failed:
            checks.append("ours≠ref: " + ",".join(failed))
        for name, ref in (("PyTorch", tb), ("ADOL-C", ab)):
            if ref is not None:
                bad = agree(o, ref, problem, size)
                if bad:
                    checks.append("≠%s (%s)" % (name, ",".join(bad)))
        table.append({
            "problem": problem, "size": size, "threads": t, "ours": o,
            "torch": tb, "adolc": ab,
            "r_torch": tb["median_s"] / o["median_s"] if tb else None,
            "r_adolc": ab["median_s"] / o["median_s"] if ab else None,
            # the same ratios from the fastest repetitions, which a busy
            # machine disturbs less
            "m_torch": tb["min_s"] / o["min_s"] if tb else None,
            "m_adolc": ab["min_s"] / o["min_s"] if ab else None,
            "check": "; ".join(checks) if checks else "agree",
        })


def row(problem, size, t):
    for r in table:
        if r["problem"] == problem and r["size"] == size and r["threads"] == t:
            return r
    return None


# ------------------------------------------------------------ GEMM bound
gemm_rate = {}  # (shape, threads) -> GFLOP/s, the faster measurement
gemm_best = {}  # (shape, threads) -> that measurement
for g in gemm:
    if "gflops" in g:
        key = (g["shape"], g["threads"])
        if g["gflops"] > gemm_rate.get(key, 0.0):
            gemm_rate[key] = g["gflops"]
            gemm_best[key] = g
GEMM_SHAPE = {("P2_mlp", "512-2048-512"): "P2_large",
              ("P5_batch_mlp", "B=64"): "P5"}
bound = []  # (problem, size, t, gflops_ours, gflops_dgemm, fraction)
for (problem, size), shape in GEMM_SHAPE.items():
    for t in thread_counts:
        r = row(problem, size, t)
        rate = gemm_rate.get((shape, t))
        if r is None or rate is None or "gemm_flops" not in r["ours"]:
            continue
        achieved = r["ours"]["gemm_flops"] / r["ours"]["median_s"] * 1e-9
        best_rate = gemm_best[(shape, t)]["gflops_best"]
        best_ours = r["ours"]["gemm_flops"] / r["ours"]["min_s"] * 1e-9
        bound.append((problem, size, t, achieved, rate, achieved / rate,
                      best_ours / best_rate))


def bound_of(problem, size, t, fastest=False):
    for b in bound:
        if b[:3] == (problem, size, t):
            return b[6] if fastest else b[5]
    return None


# ------------------------------------------------------------ targets
TARGETS = [  # (problem, size, anchor, threshold, text)
    ("P4_chain", "k=10000", "torch", 300, "≥ 300× PyTorch"),
    ("P4_chain", "k=10000", "adolc", 1 / 1.5, "no slower than 1.5× ADOL-C"),
    ("P1_square", "n=2048", "torch", 10, "≥ 10× PyTorch"),
    ("P1_square", "n=2048", "adolc", 5, "≥ 5× ADOL-C"),
    ("P1_square", "n=256", "torch", 5, "≥ 5× PyTorch"),
    ("P1_square", "n=256", "adolc", 1.5, "≥ 1.5× ADOL-C"),
    ("P2_mlp", "16-32-16", "torch", 5, "≥ 5× PyTorch"),
    ("P2_mlp", "16-32-16", "adolc", 1.5, "≥ 1.5× ADOL-C"),
    ("P3_rosenbrock", "n=64", "torch", 5, "≥ 5× PyTorch"),
    ("P3_rosenbrock", "n=64", "adolc", 1.5, "≥ 1.5× ADOL-C"),
    ("P2_mlp", "128-512-128", "torch", 1, "≥ 1× PyTorch"),
    ("P2_mlp", "512-2048-512", "torch", 1, "≥ 1× PyTorch"),
    ("P2_mlp", "512-2048-512", "gemm", 0.6, "≥ 60% of the GEMM bound"),
    ("P3_rosenbrock", "n=512", "torch", 2, "≥ 2× PyTorch"),
    ("P5_batch_mlp", "B=64", "torch", 1.5, "≥ 1.5× PyTorch"),
]
results = []  # (target, [(t, value)], met, missed threads, [(t, by min)])
for tg in TARGETS:
    problem, size, anchor, thr, text = tg
    vals, mins = [], []
    for t in thread_counts:
        if anchor == "gemm":
            v = bound_of(problem, size, t)
            m = bound_of(problem, size, t, fastest=True)
        else:
            r = row(problem, size, t)
            v = r and r["r_torch" if anchor == "torch" else "r_adolc"]
            m = r and r["m_torch" if anchor == "torch" else "m_adolc"]
        if v is not None:
            vals.append((t, v))
            mins.append((t, m))
    missed = [t for t, v in vals if v < thr]
    met = bool(vals) and not missed
    results.append((tg, vals, met, missed, mins))


def fmt_target_value(anchor, v):
    return "%.0f%%" % (100 * v) if anchor == "gemm" else fmt_r(v)


# ------------------------------------------------------------ profiles
CATEGORIES = [  # (label, predicate on (dso, symbol))
    ("idle threads yielding (sched_yield)", lambda d, s: "sched_yield" in s),
    ("OpenBLAS kernels", lambda d, s: "openblas" in d or "blas" in d),
    ("libm (sin, tanh, pow...)", lambda d, s: d.startswith("libm")),
    ("kernel (page faults, scheduling)", lambda d, s: d.startswith("[k")
     or d == "[kernel.kallsyms]"),
    ("libc (malloc/free, memset, memcpy)", lambda d, s: d.startswith("libc")),
    ("benchmark's own setup, untimed (weights, checksums)",
     lambda d, s: d == "jacobian_bench" and re.match(
         r"(case_init|case_constants|checksums|data_[xXWb])\b", s)),
    ("libjacobian", lambda d, s: d == "jacobian_bench"),
]


def run_profile(key, o):
    """perf record (or callgrind) of one configuration; returns the command
    and [(percent, dso, symbol)]."""
    cfg = "%d,%d,%d" % (o["chunk"], o["jac_threads"], o["blas_threads"])
    # callgrind runs some 50 times slower: a far shorter budget.
    budget = "3" if profile_tool == "perf" else "0.1"
    cmd = [bench, "--problems", o["problem"], "--sizes", o["size"],
           "--variants", o["variant"], "--threads", str(o["threads"]),
           "--fixed", cfg, "--budget", budget, "--min-repeats", "3",
           "--max-repeats", "100000000"]
    data = os.path.join(out, "perf-%s.data" % key)
    rows = []
    try:
        if profile_tool == "perf":
            subprocess.run(["perf", "record", "-q", "-F", "1999", "-o", data,
                            "--"] + cmd, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=True)
            rep = subprocess.run(
                ["perf", "report", "-i", data, "--stdio", "-q",
                 "--sort", "dso,symbol", "--percent-limit", "0.5"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                check=True).stdout
            merged = {}
            for line in rep.splitlines():
                m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*\S)", line)
                if not m:
                    continue
                # drop perf's empty trailing columns ("-      -")
                sym = re.sub(r"(\s+-)+$", "", m.group(4)).strip()
                if re.match(r"0x[0-9a-f]+$", sym):
                    sym = "(addresses without symbols)"
                if m.group(3) == "k":
                    sym += " [kernel]"
                key = (m.group(2), sym)
                merged[key] = merged.get(key, 0.0) + float(m.group(1))
            rows = [(pct, dso, sym) for (dso, sym), pct in merged.items()]
            os.remove(data)
        elif profile_tool == "callgrind":
            cg = data + ".cg"
            subprocess.run(["valgrind", "--tool=callgrind",
                            "--callgrind-out-file=" + cg] + cmd,
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=True)
            rep = subprocess.run(["callgrind_annotate", cg],
                                 stdout=subprocess.PIPE, text=True).stdout
            total = None
            for line in rep.splitlines():
                m = re.match(r"\s*([\d,]+)\s+\(?\s*([\d.]+)%\)?\s+(\S+):(\S+)",
                             line)
                if m and "PROGRAM TOTALS" not in line:
                    rows.append((float(m.group(2)),
                                 os.path.basename(m.group(3)), m.group(4)))
            os.remove(cg)
    except (OSError, subprocess.CalledProcessError) as e:
        print("profile of %s failed: %s" % (key, e), file=sys.stderr)
    rows.sort(key=lambda r: -r[0])
    shown = [c for c in cmd]
    shown[0] = "build/bench/jacobian_bench"
    return " ".join(shown), rows


def categorise(rows):
    total = {}
    for pct, dso, sym in rows:
        label = "other"
        for name, pred in CATEGORIES:
            if pred(dso if not sym.endswith("[kernel]") else "[k]", sym):
                label = name
                break
        total[label] = total.get(label, 0.0) + pct
    return sorted(total.items(), key=lambda kv: -kv[1])


profiles = []  # (key, title, command, rows)
if profile_tool != "none":
    done = set()
    for tg, vals, met, missed, mins in results:
        if met or not missed:
            continue
        problem, size, anchor, thr, text = tg
        t = missed[0]
        r = row(problem, size, t)
        if r is None:
            continue
        o = r["ours"]
        key = "%s-%s-%s-t%d" % (SHORT[problem], re.sub(r"[^\w]", "",
                                size), o["variant"], t)
        if key in done:
            continue
        done.add(key)
        print("profiling %s" % key, file=sys.stderr)
        cmd, rows = run_profile(key, o)
        title = "%s %s, %s, %d thread%s" % (problem, size, o["variant"], t,
                                            "s" if t > 1 else "")
        profiles.append((key, title, cmd, rows, [x for x in results
                         if x[0][0] == problem and x[0][1] == size
                         and not x[2]]))
    with open(os.path.join(out, "profiles.json"), "w") as fh:
        json.dump({"tool": profile_tool, "profiles": profiles}, fh)
elif os.path.exists(os.path.join(out, "profiles.json")):
    # --report-only: the profiles of the run that measured
    kept = json.load(open(os.path.join(out, "profiles.json")))
    profile_tool, profiles = kept["tool"], kept["profiles"]


# ------------------------------------------------------------ chart
chart_ok = False
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = ["%s\n%s" % (SHORT[p], s) for p, s in ORDER
              if row(p, s, thread_counts[0])]
    keys = [(p, s) for p, s in ORDER if row(p, s, thread_counts[0])]
    series = []
    for t in thread_counts:
        series.append(("PyTorch ÷ ours, %d thread%s" % (t, "s" if t > 1
                       else ""), [(row(p, s, t) or {}).get("r_torch")
                                  for p, s in keys]))
    series.append(("ADOL-C ÷ ours, 1 thread",
                   [(row(p, s, 1) or {}).get("r_adolc") for p, s in keys]))
    fig, ax = plt.subplots(figsize=(11, 5))
    width = 0.8 / len(series)
    for i, (name, vals) in enumerate(series):
        xs = [k + (i - (len(series) - 1) / 2) * width
              for k in range(len(keys))]
        ax.bar([x for x, v in zip(xs, vals) if v],
               [v for v in vals if v], width, label=name)
    ax.set_yscale("log")
    ax.axhline(1.0, color="black", linewidth=0.8)
    # The PyTorch targets as short black marks.
    for k, (p, s) in enumerate(keys):
        for tg in TARGETS:
            if tg[0] == p and tg[1] == s and tg[2] == "torch":
                ax.plot([k - 0.45, k + 0.45], [tg[3], tg[3]], color="black",
                        linestyle="--", linewidth=1)
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("speed-up of libjacobian (anchor time ÷ ours)")
    ax.set_title("libjacobian against PyTorch and ADOL-C "
                 "(higher is faster; dashed: PyTorch target)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12),
              ncol=len(series))
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(docs, "benchmarks.png"), dpi=110)
    chart_ok = True
except Exception as e:  # the table is what matters; say why there is none
    print("chart not written: %s" % e, file=sys.stderr)


# ------------------------------------------------------------ markdown
L = []
w = L.append
w("# Benchmarks")
w("")
w("libjacobian against PyTorch's autograd (1.13, float64, CPU) and ADOL-C "
  "(2.7.2, tape-based, operator overloading) on the five problems of "
  "`shared/bench/PROBLEMS.md`, measured in one run on one machine, and "
  "on its sparse problems (P6, P7) in a section of their own. This "
  "page is generated by `bench/compare.sh`; do not edit it by hand.")
w("")
w("Ratios are *anchor time ÷ our time* at the same thread count: above 1 "
  "we are faster. Times are medians of complete computations (input "
  "tensor built from its values, function recorded, Jacobian computed, "
  "memory released). ADOL-C is compared through its `tape+…` variants, "
  "which record the tape inside the timed region as we do; it runs on "
  "one thread only. PyTorch's P4 entry is its `fwd+bwd` variant. For each "
  "implementation the fastest of its variants is shown. Functions "
  "recorded once and replayed are compared in their own section below.")
w("")
busy = [t for t in thread_counts if t > 1 and gemm_rate.get(("square", t))
        and gemm_rate.get(("square", 1))
        and gemm_rate[("square", t)] < 1.4 * gemm_rate[("square", 1)]]
rounds = int(machine.get("rounds", "1") or 1)
if rounds > 1:
    w("Everything was measured in %d rounds (ours, PyTorch, ADOL-C, each "
      "over all problems); every figure is the best median of its "
      "implementation over the rounds." % rounds)
    w("")
w("These machines are shared and noisy (the same figure can move by 1.7× "
  "between runs; the load average is given below): read ratios near a "
  "target as \"about equal\".")
w("")
if busy:
    w("**In this run `cblas_dgemm` on %s threads was hardly faster than on "
      "one (%.0f against %.0f GFLOP/s): other work held the other core, and "
      "the figures for more than one thread are unreliable.**" % (
          busy[0], gemm_rate[("square", busy[0])], gemm_rate[("square", 1)]))
    w("")
missing = [name for name, rows in (("PyTorch", torch), ("ADOL-C", adolc))
           if not rows]
if missing:
    w("**%s %s not measured in this run (not installed, or it failed): "
      "%s columns are empty and the targets against %s are not "
      "evaluated; our own lines, their checksums and the replay section "
      "are complete.**" % (" and ".join(missing),
                            "was" if len(missing) == 1 else "were",
                            "its" if len(missing) == 1 else "their",
                            "it" if len(missing) == 1 else "them"))
    w("")
if chart_ok:
    w("![speed-up against PyTorch and ADOL-C](benchmarks.png)")
    w("")

w("## Results")
w("")
w("| problem | size | threads | ours (variant) | PyTorch (variant) | "
  "PyTorch ÷ ours | ADOL-C (variant) | ADOL-C ÷ ours | our memory | "
  "checksums |")
w("|---|---|---|---|---|---|---|---|---|---|")
for r in table:
    o, tb, ab = r["ours"], r["torch"], r["adolc"]
    w("| %s | %s | %d | %s (%s) | %s | %s | %s | %s | %.1f MB | %s |" % (
        r["problem"], r["size"], r["threads"], fmt_t(o["median_s"]),
        o["variant"] + ("" if o["variant"] in ("rowloop", "grad", "hessian")
                        else ", chunk %d" % o["chunk"]),
        "%s (%s)" % (fmt_t(tb["median_s"]), tb["variant"]) if tb else "–",
        fmt_rr(r["r_torch"], r["m_torch"]),
        "%s (%s)" % (fmt_t(ab["median_s"]), ab["variant"]) if ab else "–",
        fmt_rr(r["r_adolc"], r["m_adolc"]), o.get("ctx_peak_mb", float("nan")),
        r["check"]))
w("")
w("The ratios are of medians, with the ratio of the fastest repetitions "
  "in parentheses. *our memory* is the peak of the bytes the context held from its "
  "allocator during the measurement (worker contexts included). The "
  "process-wide peak resident set (`peak_rss_mb`, VmHWM) is on every JSON "
  "line too; it only grows over a run, so it says little per problem. "
  "*checksums*: `agree` when our sum, Frobenius norm and first element "
  "match PROBLEMS.md for every variant and match the anchors' to 1e-9 "
  "relative.")
w("")

w("## Targets")
w("")
w("| problem | size | target | measured (medians) | from fastest runs | met |")
w("|---|---|---|---|---|---|")
nmet = 0
for tg, vals, met, missed, mins in results:
    problem, size, anchor, thr, text = tg
    nmet += met
    meas = ", ".join("%d thr: %s" % (t, fmt_target_value(anchor, v))
                     for t, v in vals) or "not measured"
    fast = ", ".join("%d thr: %s" % (t, fmt_target_value(anchor, v))
                     for t, v in mins) or "–"
    w("| %s | %s | %s | %s | %s | %s |" % (
        problem, size, text, meas, fast,
        "yes" if met else "**no**" if vals else "not evaluated"))
w("")
nevaluated = sum(1 for x in results if x[1])
w("%d of %d targets met. A target is met when it holds, by medians, at "
  "every thread count measured for its anchor (ADOL-C: one thread)."
  % (nmet, nevaluated))
if nevaluated < len(results):
    w("%d target%s could not be evaluated: %s anchor was not measured."
      % (len(results) - nevaluated,
         "s" if len(results) - nevaluated > 1 else "",
         "their" if len(results) - nevaluated > 1 else "its"))
w("")

# P2 large may hold at most 3 x (Jacobian + weights): every thread count.
P2L_IN, P2L_HID, P2L_OUT = 512, 2048, 512
mem_base = 8 * (P2L_OUT * P2L_IN  # the Jacobian
                + P2L_HID * P2L_IN + P2L_HID * P2L_HID + P2L_OUT * P2L_HID
                + 2 * P2L_HID + P2L_OUT) / 2 ** 20  # weights and biases
mem_rows = []
for t in thread_counts:
    r = row("P2_mlp", "512-2048-512", t)
    if r is not None and r["ours"].get("ctx_peak_mb", -1) >= 0:
        mem_rows.append((t, r["ours"]["ctx_peak_mb"], r["ours"]["variant"]))
# ------------------------------------------------------------ replay
def ours_best(problem, size, t, variants):
    c = [r for r in ours if r["problem"] == problem and r["size"] == size
         and r["threads"] == t and r["variant"] in variants]
    return min(c, key=lambda r: r["median_s"]) if c else None


replay = []  # one dict per (problem, size, threads) with a replay line
for problem, size in ORDER:
    for t in thread_counts:
        rp = ours_best(problem, size, t, ("replay",))
        if rp is None:
            continue
        dyn = ours_best(problem, size, t, DYNAMIC)
        fl = ours_best(problem, size, t, ("floor",))
        ad = [r for r in adolc if r["problem"] == problem
              and r["size"] == size and r["threads"] == t and adolc_replay(r)]
        ad = min(ad, key=lambda r: r["median_s"]) if ad else None
        checks = []
        if rp.get("check") != "ok":
            checks.append("replay≠ref")
        if fl is not None and fl.get("check") != "ok":
            checks.append("floor≠ref")
        for name, other in (("dynamic", dyn), ("floor", fl),
                            ("ADOL-C", ad)):
            if other is not None:
                bad = agree(rp, other, problem, size)
                if bad:
                    checks.append("≠%s (%s)" % (name, ",".join(bad)))

        def ratio(a, b, key):
            return a[key] / b[key] if a and b and b[key] > 0 else None
        replay.append({
            "problem": problem, "size": size, "threads": t, "replay": rp,
            "dynamic": dyn, "floor": fl, "adolc": ad,
            "r_dyn": ratio(dyn, rp, "median_s"),
            "m_dyn": ratio(dyn, rp, "min_s"),
            "r_adolc": ratio(ad, rp, "median_s"),
            "m_adolc": ratio(ad, rp, "min_s"),
            "r_floor": ratio(rp, fl, "median_s"),
            "m_floor": ratio(rp, fl, "min_s"),
            "check": "; ".join(checks) if checks else "agree",
        })


def fmt_mb(x):
    return "–" if x is None or x < 0 else "%.1f MB" % x


def cfg(r):
    return "%d×%d" % (r["jac_threads"], r["blas_threads"])


w("## Recorded once, replayed")
w("")
w("`replay` records the function once into a `jac_program`, outside the "
  "timed region, and times only the program's result at the point: "
  "`jac_program_jacobian` (P1, P2; P5 as the Jacobian of the batch-summed "
  "outputs, whose rows hold every sample's), `jac_program_hessian` (P3), "
  "`jac_program_vjp` with the default seed (P4). That is what ADOL-C's "
  "drivers do on an existing tape, so its column here is the fastest of "
  "those (`jacobian`, `hessian`, `gradient` and their alternatives), not "
  "its `tape+…` variants. *dynamic* is our fastest variant that records "
  "in the timed region (the Results table). `floor` is P4 by a "
  "hand-written C loop with no AD (x and dx/dx0 updated together): "
  "*replay ÷ floor* is what the recorded program costs over plain C. "
  "*threads* is the driver×OpenBLAS split that ran. *memory*: for the "
  "replay, the peak of what the program and its calls held (the "
  "recording context is freed once the program is made); for the "
  "dynamic variant, its context's peak. *recording* is the one untimed "
  "recording (its time; the peak memory it took).")
w("")
w("| problem | size | threads | replay | dynamic (variant) | dynamic ÷ "
  "replay | ADOL-C replay (variant) | ADOL-C ÷ replay | floor | replay ÷ "
  "floor | program | memory: replay / dynamic | recording | checksums |")
w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for x in replay:
    rp, dyn, ad, fl = x["replay"], x["dynamic"], x["adolc"], x["floor"]
    prog = "–"
    if "program_ops" in rp:
        prog = "%d ops, %.1f B/op" % (rp["program_ops"],
                                      rp["program_bytes_per_op"])
    w("| %s | %s | %d | %s (%s) | %s | %s | %s | %s | %s | %s | %s | "
      "%s / %s | %s, %s | %s |" % (
          x["problem"], x["size"], x["threads"], fmt_t(rp["median_s"]),
          cfg(rp),
          "%s (%s)" % (fmt_t(dyn["median_s"]), dyn["variant"]) if dyn
          else "–", fmt_rr(x["r_dyn"], x["m_dyn"]),
          "%s (%s)" % (fmt_t(ad["median_s"]), ad["variant"]) if ad else "–",
          fmt_rr(x["r_adolc"], x["m_adolc"]),
          fmt_t(fl["median_s"]) if fl else "–",
          fmt_rr(x["r_floor"], x["m_floor"]), prog,
          fmt_mb(rp.get("ctx_peak_mb")),
          fmt_mb(dyn.get("ctx_peak_mb") if dyn else None),
          fmt_t(rp.get("record_s")), fmt_mb(rp.get("record_peak_mb")),
          x["check"]))
w("")
w("Ratios as above: medians, and in parentheses the fastest repetitions; "
  "*dynamic ÷ replay* and *ADOL-C ÷ replay* above 1 mean the replay is "
  "faster, *replay ÷ floor* is how many times the plain C loop's time the "
  "replay takes." + (
      " P4 k=1000000: dx/dx0 = 5.04e-434 underflows float64, so every "
      "float64 result there is a subnormal or 0 (checked against 0 with a "
      "tolerance of the smallest normal double; x_k is checked instead), "
      "and part of the time goes to subnormal arithmetic."
      if any(x["size"] == "k=1000000" for x in replay) else ""))
w("")

# The targets of recorded functions, each with what the profiles of the
# runs that missed it show.
replay_why = {
    "p4_adolc": "P4 is latency-bound in both: each step's value and adjoint "
                "wait for the one before. The replay keeps the last value "
                "and adjoint in registers as well as in memory and takes sin "
                "and its derivative from one sincos (perf: __sincos 57 %, "
                "forward 14 %, backward 16 %).",
    "p4_floor": "perf of the replay at k=10000: __sincos_fma 57 % (the same "
                "call the hand loop makes), the forward sweep 14 %, the "
                "backward sweep 16 %: what the interpreter adds is about one "
                "dispatch and one store per recorded op on top of the "
                "arithmetic; measured alone it is 1.3x the loop, and the "
                "ratio moves with the machine's load.",
    "small": "The same kernels dominate both paths (perf of P2 16-32-16: "
             "dgemm_small 36 %, tanh 18 %, the elementwise backward kernels "
             "10 %): what the dynamic path adds over a replay, recording a "
             "few nodes and building a backward plan, is a small share of a "
             "few microseconds. A replay runs each tensor op through its "
             "generic apply entry (an output from the pool, copied into the "
             "value array) and its rule or raw kernel; forward kernels into "
             "preassigned buffers would remove the copies.",
    "hessian": "The Hessian by replay sweeps the derived gradient program "
               "with blocks of one-hot seeds over every element (perf of P3 "
               "n=512: the elementwise backward kernels 40 %, slice copies "
               "7 %, the cotangent adds of tensor instructions 7 %), while "
               "the dynamic double-backward keeps one-element cotangents in "
               "its plan slots and one-hot seeds as gathers through more "
               "ops; the replay passes one-hot seeds only through the ops "
               "whose table row says they pass them on.",
    "diag": "P1 by replay takes the one-pass diagonal path that the "
            "dynamic drivers take (one sweep seeded with ones): both spend "
            "their time writing the n x n Jacobian, zeros off the "
            "diagonal; these ratios are within what the same binary moves "
            "between runs here.",
    "gemm": "Both paths spend their time in the same GEMMs (91 % of the "
            "GEMM bound for P2 large); these ratios are within what the "
            "same binary moves between runs here.",
    "batch": "P5 by replay is the Jacobian of the batch-summed outputs: both "
             "paths run at about 80 % of the GEMM bound, and the replay "
             "copies each tensor op's (B x hidden) output into its value "
             "array on top.",
}


def replay_row(problem, size, threads=1):
    for x in replay:
        if x["problem"] == problem and x["size"] == size and \
                x["threads"] == threads:
            return x
    return None


replay_targets = []
p4 = replay_row("P4_chain", "k=10000")
if p4 is not None:
    replay_targets.append(
        ("P4 k=10000 replayed gradient at least 1.2x faster than ADOL-C's "
         "`gradient`", p4["r_adolc"], lambda v: v >= 1.2, "p4_adolc"))
    replay_targets.append(
        ("P4 k=10000 replay within 1.5x of the hand-written loop (replay "
         "÷ floor)", p4["r_floor"], lambda v: v <= 1.5, "p4_floor"))
for prob, size in (("P2_mlp", "16-32-16"), ("P3_rosenbrock", "n=64")):
    x = replay_row(prob, size)
    if x is not None:
        replay_targets.append(
            ("%s %s replay at least 1.5x faster than the dynamic path"
             % (prob, size), x["r_dyn"], lambda v: v >= 1.5,
             "small" if prob == "P2_mlp" else "hessian"))
for x in replay:
    if x["r_dyn"] is not None and x["r_dyn"] < 1.0:
        why = {"P1_square": "diag", "P3_rosenbrock": "hessian",
               "P5_batch_mlp": "batch"}.get(x["problem"], "small")
        if x["problem"] == "P2_mlp" and x["size"] != "16-32-16":
            why = "gemm"
        replay_targets.append(
            ("%s %s, %d thread(s): replay no slower than the dynamic path"
             % (x["problem"], x["size"], x["threads"]), x["r_dyn"],
             lambda v: v >= 1.0, why))
if replay_targets:
    w("Targets of recorded functions (medians):")
    w("")
    said = set()
    for text, value, met, why in replay_targets:
        if value is None:
            w("- not evaluated: %s" % text)
        elif met(value):
            w("- met: %s (%s)" % (text, fmt_r(value)))
        else:
            w("- **missed**: %s (%s). %s" % (
                text, fmt_r(value),
                "(As above.)" if why in said else replay_why[why]))
            said.add(why)
    w("Every other replay row is no slower than the dynamic path.")
    w("")

w("## Memory")
w("")
w("P2 large may hold at most 3 × (Jacobian + weights) = 3 × %.1f MB = "
  "%.1f MB. The figure below is the peak of the bytes the context held "
  "from its allocator while the fastest configuration ran in a fresh "
  "context (weights, Jacobian, tape, cotangent blocks, pooled free blocks "
  "and worker contexts included)." % (mem_base, 3 * mem_base))
w("")
w("| threads | variant | peak | × (Jacobian + weights) | within 3× |")
w("|---|---|---|---|---|")
for t, peak, variant in mem_rows:
    w("| %d | %s | %.1f MB | %.2f | %s |" % (
        t, variant, peak, peak / mem_base,
        "yes" if peak <= 3 * mem_base else "**no**"))
w("")

w("## GEMM bound")
w("")
w("The Jacobian of P2 as matrix products costs "
  "2·n_out·hidden·(hidden + n_in) flops per sample (the product with the "
  "identity seed is free): 5.37 GFLOP for P2 large, and 64 × 83.9 MFLOP "
  "= 5.37 GFLOP for P5. The bound is that work at the speed of this "
  "machine's `cblas_dgemm` on the shape of the dominant product, measured "
  "in the same run (`jacobian_bench --gemm`, before and after the other "
  "measurements; the faster of the two is used).")
w("")
w("| problem | size | threads | dgemm shape | dgemm GFLOP/s | ours GFLOP/s "
  "| fraction of bound | same from fastest runs |")
w("|---|---|---|---|---|---|---|---|")
for problem, size, t, ach, rate, frac, frac_min in bound:
    shape = gemm_best[(GEMM_SHAPE[(problem, size)], t)]
    w("| %s | %s | %d | %d×%d·%d×%d | %.1f | %.1f | %.0f%% | %.0f%% |" % (
        problem, size, t, shape["m"], shape["k"], shape["k"], shape["n"],
        rate, ach, 100 * frac, 100 * frac_min))
w("")

w("## All our variants")
w("")
w("Median times; `batched` and `forward` show the chunk chosen among those "
  "tried (0 = automatic), and the split of the threads between the "
  "driver and OpenBLAS (driver×BLAS); `replay` the split.")
w("")
w("| problem | size | threads | rowloop | batched | forward | hessian / grad "
  "| replay | floor |")
w("|---|---|---|---|---|---|---|---|---|")
for problem, size in ORDER:
    for t in thread_counts:
        cells = []
        for vs in (("rowloop",), ("batched",), ("forward",),
                   ("hessian", "grad"), ("replay",), ("floor",)):
            c = [r for r in ours if r["problem"] == problem
                 and r["size"] == size and r["threads"] == t
                 and r["variant"] in vs]
            if not c:
                cells.append("–")
                continue
            r = min(c, key=lambda x: x["median_s"])
            extra = ""
            if r["variant"] in ("batched", "forward"):
                extra = " (chunk %d, %d×%d)" % (r["chunk"], r["jac_threads"],
                                                r["blas_threads"])
            elif r["variant"] == "replay":
                extra = " (%s)" % cfg(r)
            cells.append(fmt_t(r["median_s"]) + extra)
        if any(c != "–" for c in cells):
            w("| %s | %s | %d | %s |" % (problem, size, t, " | ".join(cells)))
if errors:
    w("")
    w("Failed measurements:")
    w("")
    for e in errors:
        w("- %s %s %s, %s threads: %s" % (e["problem"], e["size"],
                                          e["variant"], e["threads"],
                                          e["error"]))
w("")

w("## Where the time goes in missed targets")
w("")
if not profiles:
    w("No profiles in this run (all targets met, or profiling was "
      "disabled or unavailable).")
    w("")
for key, title, cmd, rows, missed_here in profiles:
    w("### %s" % title)
    w("")
    w("Missed: " + "; ".join("%s (%s)" % (
        x[0][4], ", ".join("%d thr: %s" % (t, fmt_target_value(x[0][2], v))
                           for t, v in x[1])) for x in missed_here) + ".")
    w("")
    # A target against PyTorch on a GEMM-bound problem has a ceiling: our
    # time can not go below the bound, so the ratio can not exceed
    # PyTorch's time divided by the bound's.
    for x in missed_here:
        problem, size, anchor = x[0][0], x[0][1], x[0][2]
        shape = GEMM_SHAPE.get((problem, size))
        if anchor != "torch" or shape is None:
            continue
        for t, v in x[1]:
            r = row(problem, size, t)
            rate = gemm_rate.get((shape, t))
            if r is None or rate is None or r["torch"] is None or \
                    "gemm_flops" not in r["ours"]:
                continue
            t_bound = r["ours"]["gemm_flops"] / (rate * 1e9)
            ceiling = r["torch"]["median_s"] / t_bound
            frac = bound_of(problem, size, t)
            w("Ceiling, %d thread%s: the matrix products alone take %s at "
              "this machine's dgemm speed (%.1f GFLOP/s), so no "
              "implementation of this algorithm can be more than %s "
              "PyTorch's %s here; we reach %.0f%% of that bound, and %s "
              "would need %.0f%%." % (
                  t, "s" if t > 1 else "", fmt_t(t_bound), rate,
                  fmt_r(ceiling), fmt_t(r["torch"]["median_s"]),
                  100 * (frac or 0), x[0][4],
                  100 * x[0][3] / ceiling if ceiling > 0 else 0))
            w("")
    w("Profiled with `%s` (`%s`)." % (profile_tool, cmd))
    w("")
    if not rows:
        w("(no samples)")
        w("")
        continue
    cats = categorise(rows)
    w("By component: " + ", ".join("%s %.0f%%" % (k, v) for k, v in cats
                                   if v >= 1) + ".")
    w("")
    w("| self % | where | function |")
    w("|---|---|---|")
    for pct, dso, sym in rows[:12]:
        w("| %.1f | %s | `%s` |" % (pct, dso, sym))
    w("")

if sparse_md and os.path.exists(sparse_md):
    L.extend(open(sparse_md).read().rstrip("\n").split("\n"))
    w("")

w("## Machine")
w("")
for k, label in (("date", "date"), ("tree", "libjacobian tree (git)"),
                 ("cpu", "CPU"), ("cores", "cores"),
                 ("memory", "memory"), ("os", "OS"), ("kernel", "kernel"),
                 ("cc", "C compiler"), ("openblas", "OpenBLAS"),
                 ("openblas_coretype", "OPENBLAS_CORETYPE"),
                 ("torch", "PyTorch"), ("adolc", "ADOL-C"),
                 ("load_before", "load average before"),
                 ("load_after", "load average after")):
    if k in machine:
        w("- %s: %s" % (label, machine[k]))
for t in thread_counts:
    rates = ", ".join("%s %.1f" % (s, r) for (s, tt), r in
                      sorted(gemm_rate.items()) if tt == t)
    if rates:
        w("- cblas_dgemm GFLOP/s, %d thread%s: %s" % (t, "s" if t > 1 else "",
                                                     rates))
w("")

w("## How to reproduce")
w("")
w("```sh")
w("cmake -S . -B build -DCMAKE_BUILD_TYPE=Release")
w("cmake --build build -j --target jacobian_bench")
w("build/bench/jacobian_bench --check      # checksums of the smallest sizes")
w("build/bench/jacobian_bench > ours.jsonl # every problem; a few minutes")
w("bench/compare.sh                        # ours, PyTorch, ADOL-C, dgemm, "
  "profiles, this page")
w("bench/compare.sh --rounds 2             # the same, best of two rounds")
w("bench/compare.sh --only-sparse          # P6, P7 alone: their section, "
  "about 8 minutes")
w("```")
w("")
w("`compare.sh` installs what it lacks with apt-get (`python3-torch`, "
  "`libadolc-dev`, `python3-matplotlib`; not with `--no-install`, and a "
  "reference it cannot install, build or run is left out of the report), "
  "brings `build/bench/"
  "jacobian_bench` up to date (another build tree with `JAC_BUILD_DIR`), "
  "finds the references in `../shared/bench` (override with "
  "`JAC_SHARED_DIR`), builds the ADOL-C reference in a temporary folder "
  "with the command in its first lines, and runs ours, PyTorch and ADOL-C, "
  "each over all problems in one process as its script is meant to be "
  "run (a reference's times can depend on what ran before in its "
  "process). It profiles our best configuration for every missed "
  "target with `perf record` (callgrind when perf is unavailable), keeps "
  "the raw JSON lines in `build/bench/results/` and rewrites this page and "
  "`docs/benchmarks.png` (elsewhere with `--docs DIR`). `bench/compare.sh "
  "--report-only build/bench/results` rebuilds the page from kept "
  "results. A full run "
  "takes about 10 minutes per round, most of it in the references. The "
  "sparse problems need `libcolpack-dev` as well; each of their (problem, "
  "size) pairs runs in a process of its own, ours once per variant, and "
  "`--only-sparse` measures them alone (with P3 n=512's Hessian for its "
  "target), keeps its results in `build/bench/results-sparse/` and "
  "rewrites only their section of this page.")
w("")
w("`jacobian_bench` options: `--problems P1,P3` (P6, P7 or full names "
  "such as P7_rosenbrock), `--sizes small|medium|"
  "large|n=2048,...`, `--variants rowloop,batched,forward,hessian,grad,"
  "replay,floor,dynamic,dense`, `--threads 1,2`, `--budget S` (seconds per "
  "measurement), `--min-repeats N`, `--max-repeats N` (P4's big sizes cap "
  "it at 20 and 5 unless this or `--repeats` is given), `--repeats N`, "
  "`--chunks 0,8,32` (chunk sizes tried), "
  "`--no-tune`, `--fixed C,J,B` (one configuration), `--gemm`, `--check`, "
  "`--list`. Each line:")
w("")
w("```json")
ex = next((r for r in ours if r["problem"] == "P2_mlp"
           and r["size"] == "128-512-128" and r["variant"] == "batched"), None)
if ex:
    ex = {k: v for k, v in ex.items() if k != "tuning"}
    w(json.dumps(ex))
w("```")
w("")
w("Variants: `rowloop` is the reference algorithm (chunk 1, reverse mode: "
  "one backward pass per output element); `batched` runs blocks of seeds "
  "through one backward pass and reports the fastest of the chunk sizes "
  "tried (a short trial of each, then a full measurement of the winner; "
  "the trials are in the line's `tuning` field); `forward` builds columns "
  "by Jacobian-vector products; `hessian` is `jac_hessian` (P3); `grad` is "
  "one `jac_grad` (P4); `replay` is the recorded program's result (see "
  "above; its line adds `record_s`, `record_peak_mb`, `program_ops`, "
  "`program_bytes` and `program_bytes_per_op`); `floor` is P4's plain C "
  "loop. P3 builds the Hessian by reverse over reverse: the "
  "gradient with `JAC_CREATE_GRAPH`, then the Jacobian of the gradient. "
  "P5 uses `jac_batch_jacobian` over a batched forward pass "
  "(X W^T + b). With 2 threads the benchmark also tries giving both "
  "threads to OpenBLAS instead of the driver (`jac_threads`, "
  "`blas_threads` on each line); with 1 thread OpenBLAS runs on one "
  "thread. The weights of P2 and P5 are constants of the function, built "
  "once outside the timed region, as in both references.")
w("")
w("On P6 and P7 the variants are `replay`, `dynamic` and `dense` (see "
  "their section); each line has `median_s` (the warm time), `cold_s`, "
  "`warm_s`, `nnz`, `colors`, `method`, the phases of the cold runs "
  "(`record_s`, `plan_s`, `sweep_s` for `replay`; `record_s`, "
  "`tape_call_s`, `release_s` and their `warm_` counterparts for "
  "`dynamic`), `peak_rss_mb` (the process's peak resident set since the "
  "variant started) and `ctx_peak_mb` (the peak of what the context, its "
  "programs and plans held).")
w("")

with open(os.path.join(docs, "benchmarks.md"), "w") as fh:
    fh.write("\n".join(L))

# ------------------------------------------------------------ stdout
print("%-14s %-13s %3s %11s %-14s %11s %9s %11s %9s  %s" % (
    "problem", "size", "thr", "ours", "variant", "pytorch", "pt/ours",
    "adolc", "ad/ours", "checksums"))
for r in table:
    o, tb, ab = r["ours"], r["torch"], r["adolc"]
    print("%-14s %-13s %3d %11s %-14s %11s %9s %11s %9s  %s" % (
        r["problem"], r["size"], r["threads"], fmt_t(o["median_s"]),
        o["variant"], fmt_t(tb and tb["median_s"]), fmt_r(r["r_torch"]),
        fmt_t(ab and ab["median_s"]), fmt_r(r["r_adolc"]), r["check"]))
print()
print("%-14s %-10s %3s %11s %-5s %11s %-9s %9s %11s %9s %11s %9s  %s" % (
    "problem", "size", "thr", "replay", "split", "dynamic", "variant",
    "dyn/rep", "adolc rep", "ad/rep", "floor", "rep/floor", "checksums"))
for x in replay:
    rp, dyn, ad, fl = x["replay"], x["dynamic"], x["adolc"], x["floor"]
    print("%-14s %-10s %3d %11s %-5s %11s %-9s %9s %11s %9s %11s %9s  %s" % (
        x["problem"], x["size"], x["threads"], fmt_t(rp["median_s"]), cfg(rp),
        fmt_t(dyn and dyn["median_s"]), dyn["variant"] if dyn else "–",
        fmt_r(x["r_dyn"]), fmt_t(ad and ad["median_s"]), fmt_r(x["r_adolc"]),
        fmt_t(fl and fl["median_s"]), fmt_r(x["r_floor"]), x["check"]))
print()
for problem, size, t, ach, rate, frac, frac_min in bound:
    print("GEMM bound %s %s %d thr: %.1f of %.1f GFLOP/s = %.0f%%" % (
        problem, size, t, ach, rate, 100 * frac))
print()
for tg, vals, met, missed, mins in results:
    print("%-4s %s %s %s: %s" % ("ok" if met else "MISS" if vals else "n/a",
                                 tg[0], tg[1], tg[4],
                                 ", ".join("%d thr %s" % (t, fmt_target_value(
                                     tg[2], v)) for t, v in vals)))
for t, peak, variant in mem_rows:
    print("%-4s P2_mlp 512-2048-512 memory, %d thr: %.1f MB of at most %.1f"
          % ("ok" if peak <= 3 * mem_base else "MISS", t, peak, 3 * mem_base))
print("\n%d of %d targets met (%d not evaluated); wrote %s/benchmarks.md%s" % (
    nmet, nevaluated, len(results) - nevaluated, docs,
    " and benchmarks.png" if chart_ok else ""))
PY
