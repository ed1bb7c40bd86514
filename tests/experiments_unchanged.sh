#!/bin/bash
# The committed results of experiments/ must not drift: recompute a few of
# their chunks with this build and require every figure but the timings to be
# identical (experiments/verify.sh), then check 1 vs 2 threads on a
# channel-wise run. Usage: experiments_unchanged.sh CWBA_BINARY SOURCE_DIR
set -euo pipefail
export CWBA=$1
v=$2/experiments/verify.sh
for m in uniform-none log-none dorefa log-channel; do
    "$v" resnet18-layer3 "$m" 0
done
LIMIT=8 "$v" resnet18-layer3 uniform-channel 0
