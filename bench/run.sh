#!/bin/sh
# bench/run.sh — every performance figure of docs/performance.md in one run:
# cwba next to PyTorch (Debian python3-torch) and ONNX Runtime (npm
# onnxruntime-node), same thread count, same machine, same run, contenders
# interleaved, same-run ratios of medians. Also reachable as `make bench`.
#
#   bench/run.sh [bench.py options]     e.g. --only forward,probe --rounds 3
#
# Environment: BUILD (default build/: the Release build with bench/cwba_bench),
# CWBA_BENCH_WORK (default /tmp/cwba-bench: inputs, ONNX exports, results).
# First run: installs onnxruntime-node into bench/node_modules (npm, with
# --ignore-scripts: its CPU library ships inside the package), writes the
# shared inputs and exports the ONNX models (a few minutes, cached after).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${BUILD:-$root/build}
work=${CWBA_BENCH_WORK:-/tmp/cwba-bench}
case $build in /*) ;; *) build=$PWD/$build ;; esac

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 1
if ! log=$(cmake --build "$build" --target cwba_bench -j2 2>&1); then
  printf '%s\n' "$log" | tail -n 30 >&2
  exit 1
fi

if [ ! -d "$here/node_modules/onnxruntime-node" ]; then
  (cd "$here" && npm install --ignore-scripts --no-package-lock --no-audit --no-fund >&2)
fi

exec /usr/bin/python3 "$root/tools/bench.py" --build "$build" --work "$work" "$@"
