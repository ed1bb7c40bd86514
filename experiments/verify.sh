#!/bin/bash
# Recomputes committed evaluation chunks with the current build and checks that
# every figure except the timing ones (seconds_per_image, passes_per_image,
# threads) is identical: the check that an optimisation left the results of
# experiments/ unchanged.
#
#   experiments/verify.sh CONFIG METHOD [CHUNK]   e.g. resnet18-layer3 log-channel 0
#   LIMIT=20 experiments/verify.sh ...            only the chunk's first 20 images
#
# CONFIG and METHOD name a directory experiments/raw/CONFIG/METHOD; the options
# are those of run.sh for that method. With LIMIT the means cover fewer images
# and cannot be compared with the committed chunk, so the script then runs the
# chunk's first LIMIT images twice, at 1 and 2 threads, and compares those.
set -euo pipefail
cd "$(dirname "$0")/.."
EXP=$(pwd)/experiments
BIN=${CWBA:-$(pwd)/build/cwba}
cfg=${1:?usage: verify.sh CONFIG METHOD [CHUNK]}
mid=${2:?usage: verify.sh CONFIG METHOD [CHUNK]}
k=${3:-0}
CHUNK=${CHUNK:-100}
EVERY=${EVERY:-10}
LOG_RESERVE=${LOG_RESERVE:-20}
model=${cfg%%-*}
split=${cfg#*-}
ref="$EXP/raw/$cfg/$mid/chunk-$(printf %03d "$k").jsonl"
[ -s "$ref" ] || { echo "verify: no committed chunk $ref" >&2; exit 2; }
case "$mid" in
uniform-none) opts="--quant uniform --alloc none" ;;
log-none) opts="--quant log --alloc none" ;;
dorefa) opts="--quant dorefa --alloc none" ;;
uniform-channel) opts="--quant uniform --alloc channel --table $EXP/tables/$cfg-uniform --reserve 0,10,20,30,40" ;;
uniform-channel-standalone) opts="--quant uniform --alloc channel --table $EXP/tables/$cfg-uniform --reserve 0,10,20,30,40 --fresh-probes" ;;
log-channel) opts="--quant log --alloc channel --table $EXP/tables/$cfg-log --reserve $LOG_RESERVE" ;;
*) echo "verify: unknown method $mid" >&2; exit 2 ;;
esac
n=$(sed -n 's/.*"images":\([0-9]*\).*/\1/p' "$ref" | head -1)
# bytes_per_image, bits_per_element_stream, bits_per_pixel and input_pixels
# came after these chunks (the first three restate the fixed and adaptive
# stream sizes, which are compared, in the field's units).
strip() { sed -E 's/,"(seconds_per_image|passes_per_image|threads|bytes_per_image|bits_per_element_stream|bits_per_pixel|input_pixels)":[^,}]*//g; s/,"conv":"direct"//' "$1"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run() { # threads limit out
    # shellcheck disable=SC2086
    "$BIN" evaluate --model "$model" --split "$split" --offset $((k * CHUNK * EVERY)) --every "$EVERY" \
        --limit "$2" --threads "$1" --json $opts >"$3"
}
if [ -n "${LIMIT:-}" ]; then
    run 1 "$LIMIT" "$tmp/t1"
    run 2 "$LIMIT" "$tmp/t2"
    if diff <(strip "$tmp/t1") <(strip "$tmp/t2") >"$tmp/d"; then
        echo "verify: $cfg $mid chunk $k, first $LIMIT images: identical at 1 and 2 threads"
        exit 0
    fi
    echo "verify: $cfg $mid chunk $k differs between 1 and 2 threads:" >&2
    cat "$tmp/d" >&2
    exit 1
fi
run 2 "$n" "$tmp/new"
if diff <(strip "$ref") <(strip "$tmp/new") >"$tmp/d"; then
    echo "verify: $cfg $mid chunk $k ($n images): identical to the committed results"
    exit 0
fi
echo "verify: $cfg $mid chunk $k differs from the committed results:" >&2
cat "$tmp/d" >&2
exit 1
