#!/bin/bash
# evaluate --alloc rd and --general through the reference ResNet18 (layer3,
# Fashion-MNIST test images) on a few images:
#  - --lambda: one row per lambda; the real rate falls and the output MSE
#    rises from the smallest to the largest lambda, which drops channels and
#    reaches under one bit per element;
#  - --bytes: every image's stream fits its target (over_target 0);
#  - rows are the same at 1 and 2 threads and with --fresh-probes (timings,
#    passes and threads aside);
#  - --general: zstd and xz sizes on each row;
#  - bad combinations give one error line and exit 2.
# usage: cli_rd.sh CWBA_BINARY SOURCE_DIR
set -u
BIN=$(readlink -f "$1")
TMP=$(mktemp -d /tmp/cwba-rd-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
field() { grep -o "\"$1\":[^,}]*" | cut -d: -f2; }

M=(evaluate --model resnet18 --split layer3 --quant uniform --limit 3 --json)
"$BIN" "${M[@]}" --alloc rd --lambda 0.0001,0.003,1 >"$TMP/l.json" 2>"$TMP/err" || fail "lambda: $(cat "$TMP/err")"
[ "$(wc -l <"$TMP/l.json")" -eq 3 ] || fail "lambda: $(wc -l <"$TMP/l.json") rows, expected 3"
[ "$(field alloc <"$TMP/l.json" | sort -u)" = '"rd"' ] || fail "alloc field"
field bytes_per_image <"$TMP/l.json" | awk 'NR > 1 && $1 >= p { bad = 1 } { p = $1 } END { exit bad }' ||
    fail "rate does not fall with lambda: $(field bytes_per_image <"$TMP/l.json" | tr '\n' ' ')"
field mse <"$TMP/l.json" | awk 'NR > 1 && $1 <= p { bad = 1 } { p = $1 } END { exit bad }' ||
    fail "MSE does not rise with lambda: $(field mse <"$TMP/l.json" | tr '\n' ' ')"
field bits_per_element_stream <"$TMP/l.json" | tail -1 | awk '{ exit !($1 < 1) }' ||
    fail "largest lambda: not under 1 bit per element"
field dropped_channels <"$TMP/l.json" | tail -1 | awk '{ exit !($1 > 0) }' || fail "largest lambda drops nothing"
echo "ok   lambda: $(field bytes_per_image <"$TMP/l.json" | tr '\n' ' ')bytes/image"

strip() { sed 's/"passes_per_image":[^,]*,//; s/"seconds_per_image":[^,]*,//; s/"threads":[0-9]*//' "$1"; }
"$BIN" "${M[@]}" --alloc rd --lambda 0.0001,0.003,1 --threads 1 --fresh-probes >"$TMP/l1.json" || fail "rerun"
[ "$(strip "$TMP/l.json")" = "$(strip "$TMP/l1.json")" ] || fail "rows differ at 1 thread / fresh probes"

"$BIN" "${M[@]}" --alloc rd --bytes 300,600 >"$TMP/b.json" 2>"$TMP/err" || fail "bytes: $(cat "$TMP/err")"
[ "$(field over_target <"$TMP/b.json" | sort -u)" = 0 ] || fail "bytes: some image over its target"
field bytes_per_image <"$TMP/b.json" | awk 'NR == 1 && $1 > 300 { bad = 1 } NR == 2 && $1 > 600 { bad = 1 } END { exit bad }' ||
    fail "bytes: mean over target: $(field bytes_per_image <"$TMP/b.json" | tr '\n' ' ')"
echo "ok   bytes: $(field bytes_per_image <"$TMP/b.json" | tr '\n' ' ')bytes/image"

"$BIN" "${M[@]}" --bits 2,4 --general >"$TMP/g.json" 2>"$TMP/err" || fail "general: $(cat "$TMP/err")"
[ "$(field zstd_bytes_per_image <"$TMP/g.json" | wc -l)" -eq 2 ] || fail "general: zstd field"
[ "$(field xz_bytes_per_image <"$TMP/g.json" | wc -l)" -eq 2 ] || fail "general: xz field"

for bad in "--alloc rd" "--alloc rd --lambda 1 --bytes 5" "--alloc rd --lambda x" "--alloc rd --lambda -1" \
    "--alloc rd --bytes 0.5" "--alloc rd --lambda 1 --bits 3,4" "--lambda 1" "--alloc rd --lambda 1 --reserve 3"; do
    "$BIN" "${M[@]}" $bad >/dev/null 2>"$TMP/err"
    rc=$?
    [ $rc -eq 2 ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] || fail "'$bad': exit $rc, $(cat "$TMP/err")"
done
[ $fails -eq 0 ] && echo "all rd CLI checks passed"
exit $((fails > 0))
