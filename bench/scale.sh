#!/bin/bash
# Calibration scaling on this machine: 1 process vs mpirun -np 2, 1 thread
# each, the same images; prints seconds, speed-up and parallel efficiency
# (docs/scale.md). usage: bench/scale.sh [BUILD_DIR] [IMAGES] [SPLIT]
set -eu
BIN=$(readlink -f "${1:-build}/cwba")
N=${2:-6}
SPLIT=${3:-layer4}
TMP=$(mktemp -d /tmp/cwba-scale-bench-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPI=(mpirun --oversubscribe --mca btl self,tcp --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo)
A=(calibrate --model resnet18 --split "$SPLIT" --quant uniform --limit "$N" --threads 1)
t() { local s; s=$(date +%s.%N); "$@" >/dev/null 2>"$TMP/err" || { cat "$TMP/err"; exit 1; }; echo "$(date +%s.%N) - $s" | bc -l; }
t1=$(t "$BIN" "${A[@]}" --table "$TMP/a")
t2=$(t "${MPI[@]}" -np 2 "$BIN" "${A[@]}" --table "$TMP/b")
for b in 2 3 4 5 6 7; do cmp -s "$TMP/a/$b.csv" "$TMP/b/$b.csv" || { echo "tables differ"; exit 1; }; done
passes=$(grep -o '[0-9]* back-end passes' "$TMP/err" | head -1)
printf 'resnet18 %s, %d images, 1 thread per rank (%s per image)\n' "$SPLIT" "$N" "$passes"
printf '1 rank : %8.2f s\n2 ranks: %8.2f s  (mpirun start-up included)\n' "$t1" "$t2"
printf 'speed-up %.2f, efficiency %.0f%%\n' "$(echo "$t1 / $t2" | bc -l)" "$(echo "100 * $t1 / (2 * $t2)" | bc -l)"
