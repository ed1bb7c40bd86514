#!/bin/bash
# Regenerates every table and plot of experiments/README.md (issue: the
# original's result tables on our three trained networks, with accuracy).
#
#   experiments/run.sh            # everything (resumable: rerun to continue)
#   CONFIGS="resnet18:layer3" experiments/run.sh   # one configuration
#
# Resumable: calibration appends one table row per image and resumes where it
# stopped (changing CALIB_IMAGES after evaluation chunks exist would mix
# tables: delete experiments/raw/<config> then); evaluation runs in chunks of CHUNK test images whose JSON Lines are
# written atomically and skipped when present. Delete experiments/raw/ or
# experiments/tables/ to start afresh.
#
# The channel-wise rows run the five reserves of one image through one probe
# cache (exact: a probe error depends only on its channel and n), so their
# MSE/accuracy columns cost about one reserve's passes; their seconds and
# passes per image are then incremental. The "-standalone" method recomputes
# every reserve on its own, on the first CHUNK images only: that is where the
# runtime column of the README comes from.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN=${CWBA:-$ROOT/build/cwba}
EXP=$ROOT/experiments
CONFIGS=${CONFIGS:-"resnet18:layer3 alexnet:features.5 resnet18:layer2 resnet18:layer1 vgg16:features.30"}
CALIB_IMAGES=${CALIB_IMAGES:-16}   # training images per interval table (see README)
EVAL_IMAGES=${EVAL_IMAGES:-1000}   # test images, every EVERY-th
EVERY=${EVERY:-10}
CHUNK=${CHUNK:-100}
THREADS=${THREADS:-2}
LOG_RESERVE=${LOG_RESERVE:-20}

[ -x "$BIN" ] || { echo "build first: make build" >&2; exit 1; }

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# `touch experiments/.pause` holds the run before its next chunk (e.g. while a
# benchmark needs the machine to itself), so no chunk's timing includes the
# pause; removing the file resumes it.
pause_point() {
    if [ -e "$EXP/.pause" ]; then
        say "paused (experiments/.pause exists)"
        while [ -e "$EXP/.pause" ]; do sleep 5; done
        say "resumed"
    fi
}

for cfg in $CONFIGS; do
    model=${cfg%%:*}
    split=${cfg#*:}
    name="$model-$split"
    for q in uniform log; do
        tdir="$EXP/tables/$name-$q"
        pause_point
        say "$name: calibrating ($q) on $CALIB_IMAGES training images -> $tdir"
        "$BIN" calibrate --model "$model" --split "$split" --quant "$q" --table "$tdir" \
            --limit "$CALIB_IMAGES" --threads "$THREADS" >/dev/null
    done
    nchunks=$(( (EVAL_IMAGES + CHUNK - 1) / CHUNK ))
    for ((k = 0; k < nchunks; k++)); do
        n=$CHUNK
        if (( (k + 1) * CHUNK > EVAL_IMAGES )); then n=$(( EVAL_IMAGES - k * CHUNK )); fi
        offset=$(( k * CHUNK * EVERY ))
        common=(--model "$model" --split "$split" --offset "$offset" --every "$EVERY" --limit "$n"
                --threads "$THREADS" --json)
        # method-id | evaluate options
        while IFS='|' read -r mid opts; do
            [ -n "$mid" ] || continue
            # standalone timings (no probe sharing between reserves): first chunk only
            case "$mid" in *-standalone) [ "$k" -eq 0 ] || continue ;; esac
            out="$EXP/raw/$name/$mid/chunk-$(printf %03d "$k").jsonl"
            [ -s "$out" ] && continue
            pause_point
            mkdir -p "$(dirname "$out")"
            say "$name: $mid, images $((k * CHUNK))..$((k * CHUNK + n - 1)) of $EVAL_IMAGES"
            # shellcheck disable=SC2086
            "$BIN" evaluate "${common[@]}" $opts >"$out.tmp"
            mv "$out.tmp" "$out"
        done <<METHODS
uniform-none|--quant uniform --alloc none
log-none|--quant log --alloc none
dorefa|--quant dorefa --alloc none
uniform-channel|--quant uniform --alloc channel --table $EXP/tables/$name-uniform --reserve 0,10,20,30,40
uniform-channel-standalone|--quant uniform --alloc channel --table $EXP/tables/$name-uniform --reserve 0,10,20,30,40 --fresh-probes
log-channel|--quant log --alloc channel --table $EXP/tables/$name-log --reserve $LOG_RESERVE
METHODS
    done
done
say "aggregating"
"$EXP/aggregate.sh"
"$EXP/report.sh"
if command -v gnuplot >/dev/null; then
    say "plotting"
    "$EXP/plot.sh"
fi
say "done: $EXP/results/"
