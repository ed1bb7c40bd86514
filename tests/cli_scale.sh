#!/bin/bash
# Sweeps split across processes (docs/scale.md), on the reference ResNet18
# split after layer4 (fast calibration), 1 thread per process:
#  - mpirun --oversubscribe -np 3 (loopback only) writes the interval tables
#    byte for byte as one process does;
#  - calibrate --shard K/N for K = 1..3 and cwba merge give the same bytes; a
#    rerun of a finished shard redoes nothing; a missing shard is an error
#    naming it and writes nothing;
#  - a rank killed mid-run fails the job with an error, leaves only whole
#    rows, and a rerun completes to the same table;
#  - evaluate under mpirun -np 3 prints the same JSON Lines but for seconds_per_image.
# usage: cli_scale.sh CWBA_BINARY
set -u
BIN=$(readlink -f "$1")
TMP=$(mktemp -d /tmp/cwba-scale-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
same_tables() {
    for b in 2 3 4 5 6 7; do cmp -s "$1/$b.csv" "$2/$b.csv" || { fail "$3: $b.csv differs"; return; }; done
}
A=(--model resnet18 --split layer4 --quant uniform --limit 5 --threads 1)
"$BIN" calibrate "${A[@]}" --table "$TMP/one" >/dev/null 2>&1 || fail "one process"

# shards + merge
for k in 1 2 3; do
    "$BIN" calibrate "${A[@]}" --table "$TMP/sh" --shard $k/3 >/dev/null 2>&1 || fail "shard $k"
done
mv "$TMP/sh.shard-2-of-3" "$TMP/hidden"
"$BIN" merge --table "$TMP/sh" --shards 3 >/dev/null 2>"$TMP/err" && fail "merge without shard 2 succeeded"
grep -q "shard 2 of 3" "$TMP/err" || fail "missing shard not named: $(cat "$TMP/err")"
[ -e "$TMP/sh" ] && fail "merge without shard 2 wrote output"
mv "$TMP/hidden" "$TMP/sh.shard-2-of-3"
"$BIN" calibrate "${A[@]}" --table "$TMP/sh" --shard 2/3 >/dev/null 2>"$TMP/err" || fail "rerun shard"
grep -q "resuming, 2 of 2" "$TMP/err" || fail "rerun of a finished shard did work: $(cat "$TMP/err")"
"$BIN" merge --table "$TMP/sh" --shards 3 >/dev/null || fail "merge"
same_tables "$TMP/one" "$TMP/sh" "shards + merge"
"$BIN" calibrate "${A[@]}" --table "$TMP/x" --shard 4/3 >/dev/null 2>&1 && fail "--shard 4/3 accepted"

if command -v mpirun >/dev/null && ldd "$BIN" | grep -q libmpi; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    # Open MPI's own start-up allocations (MCA components, unwound without
    # symbols) are never freed and fail LeakSanitizer in the ASan run; the
    # ranks keep ASan's memory checks, only leak detection is off for them
    # (the single-process runs above keep it).
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
    MPI=(mpirun --oversubscribe --mca btl self,tcp --mca btl_tcp_if_include lo
         --mca oob_tcp_if_include lo)
    timeout 300 "${MPI[@]}" -np 3 "$BIN" calibrate "${A[@]}" --table "$TMP/three" \
        >"$TMP/out" 2>&1 || fail "mpirun -np 3: $(tail -3 "$TMP/out")"
    same_tables "$TMP/one" "$TMP/three" "mpirun -np 3"

    # evaluate: the same JSON Lines but for the timing field
    E=(evaluate --model resnet18 --split layer4 --quant uniform --alloc channel --table "$TMP/one"
       --reserve 0,10 --bits 2,4 --limit 7 --threads 1 --json)
    "$BIN" "${E[@]}" 2>/dev/null | sed 's/"seconds_per_image":[^,]*,//' >"$TMP/e1" || fail "evaluate"
    timeout 300 "${MPI[@]}" -np 3 "$BIN" "${E[@]}" 2>/dev/null |
        sed 's/"seconds_per_image":[^,]*,//' >"$TMP/e3" || fail "mpirun -np 3 evaluate"
    [ "$(wc -l <"$TMP/e1")" = 4 ] || fail "evaluate printed $(wc -l <"$TMP/e1") lines"
    cmp -s "$TMP/e1" "$TMP/e3" || fail "mpirun -np 3 evaluate differs: $(diff "$TMP/e1" "$TMP/e3" | head -3)"

    # a rank killed after the first round: the job fails, the rows kept are whole
    timeout 300 "${MPI[@]}" -np 2 "$BIN" calibrate "${A[@]}" --table "$TMP/k" >"$TMP/out" 2>&1 &
    job=$!
    for _ in $(seq 1 600); do
        [ -s "$TMP/k/7.csv" ] && break
        sleep 0.1
    done
    victim=$(pgrep -P "$(pgrep -P $job | head -1)" | tail -1)
    [ -n "$victim" ] && kill -9 "$victim"
    wait $job && fail "job with a killed rank succeeded"
    grep -qi "rank" "$TMP/out" || fail "no error naming a rank: $(tail -3 "$TMP/out")"
    rows=$(wc -l <"$TMP/k/2.csv")
    [ "$rows" -ge 1 ] && [ "$rows" -lt 5 ] || fail "killed run kept $rows rows"
    timeout 300 "${MPI[@]}" -np 2 "$BIN" calibrate "${A[@]}" --table "$TMP/k" >"$TMP/out" 2>&1 ||
        fail "rerun after the kill: $(tail -3 "$TMP/out")"
    grep -q "resuming, $rows of 5" "$TMP/out" || fail "rerun did not resume: $(tail -3 "$TMP/out")"
    same_tables "$TMP/one" "$TMP/k" "rerun after a killed rank"
else
    echo "no MPI in $BIN: mpirun checks skipped"
fi
[ $fails -eq 0 ] && echo "cli_scale: all checks passed"
exit $((fails > 0))
