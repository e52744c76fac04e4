#!/usr/bin/env bash
# Runs examples/graph and renders the DOT file it writes with Graphviz; the
# PNG must be a real image. Exits 77 (skipped) when dot is not installed.
#
#   tests/render_graph.sh <path to the graph example>
set -euo pipefail

example=$1
if ! command -v dot >/dev/null; then
    echo "skipped: Graphviz's dot is not installed (apt-get install graphviz)"
    exit 77
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

"$example" "$dir/graph.dot"
dot -Tpng "$dir/graph.dot" -o "$dir/graph.png"
# A PNG starts with \x89PNG.
if [[ $(head -c 4 "$dir/graph.png" | tail -c 3) != PNG ]]; then
    echo "dot did not write a PNG" >&2
    exit 1
fi
echo "rendered $(wc -c <"$dir/graph.png") bytes of PNG"
