#!/bin/bash
# Command-line contract: bad input -> exactly one line on stderr that names the
# problem, a non-zero exit, and no output file left behind.
# usage: cli_errors.sh CWBA_BINARY SOURCE_DIR
set -u
BIN=$1
SRC=$2
TMP=$(mktemp -d /tmp/cwba-cli-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
fails=0
n=0

# expect_error "<grep -E pattern for the message>" args...
expect_error() {
    local pat=$1
    shift
    n=$((n + 1))
    "$BIN" "$@" >"$TMP/out" 2>"$TMP/err"
    local rc=$?
    local lines
    lines=$(wc -l <"$TMP/err")
    if [ $rc -eq 0 ]; then
        echo "FAIL [$*]: exit 0, expected an error"; fails=$((fails + 1)); return
    fi
    if [ "$lines" -ne 1 ]; then
        echo "FAIL [$*]: $lines lines on stderr, expected 1:"; cat "$TMP/err"; fails=$((fails + 1)); return
    fi
    if ! grep -qE "$pat" "$TMP/err"; then
        echo "FAIL [$*]: message does not match /$pat/: $(cat "$TMP/err")"; fails=$((fails + 1)); return
    fi
    echo "ok   [$*] -> rc=$rc: $(cat "$TMP/err")"
}

expect_error "unknown command" frobnicate
n=$((n + 1))
if CWBA_MAX_ISA=avx9 "$BIN" --version >"$TMP/out" 2>"$TMP/err" || [ "$(wc -l <"$TMP/err")" -ne 1 ] ||
    ! grep -q "CWBA_MAX_ISA='avx9' is not an instruction set" "$TMP/err"; then
    echo "FAIL [CWBA_MAX_ISA=avx9 --version]: $(cat "$TMP/err")"; fails=$((fails + 1))
else
    echo "ok   [CWBA_MAX_ISA=avx9 --version] -> $(cat "$TMP/err")"
fi
n=$((n + 1))
if ! CWBA_MAX_ISA=scalar "$BIN" --version | grep -q "(kernels: scalar)"; then
    echo "FAIL [CWBA_MAX_ISA=scalar --version]: $(CWBA_MAX_ISA=scalar "$BIN" --version 2>&1)"; fails=$((fails + 1))
fi
expect_error "alexnet|vgg16|resnet18|unknown model" layers --model lenet
expect_error "required" layers
expect_error "resnet50 has no reference model.*--weights" layers --model resnet50
expect_error "synthetic:SEED needs a decimal seed" layers --model vgg11 --weights synthetic:x
expect_error "unknown model 'resnet200' \(expected alexnet, vgg11.*resnet152\)" layers --model resnet200
expect_error "unknown split point 'layer3.6' for resnet50 \(expected .*layerN.M\)" \
    infer --model resnet50 --weights synthetic:1 --input-size 32 --split layer3.6 --save-feature "$TMP/f.npy"
expect_error "unknown model 'lenet'" fetch-weights lenet
expect_error "unknown option" layers --model resnet18 --colour red
expect_error "unknown convolution arithmetic 'fft' \(direct, winograd\)" infer --model resnet18 --conv fft
expect_error "not an integer" infer --model resnet18 --limit ten
expect_error "not an integer" infer --model resnet18 --limit 5x
expect_error "out of range" infer --model resnet18 --threads 0
expect_error "needs a value" infer --model resnet18 --limit
expect_error "given twice" infer --model resnet18 --limit 1 --limit 2
expect_error "split" infer --model resnet18 --split layer9 --save-feature "$TMP/f.npy" --limit 1
expect_error "fashion|fmnist|t10k|No such file|cannot open" infer --model resnet18 --data "fmnist:$TMP/nothing" --limit 1
expect_error "dataset|kind|fmnist" infer --model resnet18 --data "mnist:$TMP" --limit 1
expect_error "weights|open|No such" infer --model resnet18 --weights "$TMP/missing.safetensors" --limit 1
printf 'garbage' >"$TMP/bad.safetensors"
expect_error "bad.safetensors" infer --model resnet18 --weights "$TMP/bad.safetensors" --limit 1
head -c 100000 "$SRC/models/resnet18_fmnist64.safetensors" >"$TMP/trunc.safetensors"
expect_error "trunc.safetensors" infer --model resnet18 --weights "$TMP/trunc.safetensors" --limit 1
expect_error "uniform|log|dorefa" evaluate --model resnet18 --split layer3 --quant unniform --alloc none --limit 1
expect_error "valid|uniform" main_model --flag 1 --model resnet18 --quant_mode unniform --net_mode resnet
expect_error "out of range" evaluate --model resnet18 --split layer3 --quant uniform --alloc none --bits 8 --limit 1
expect_error "out of range" evaluate --model resnet18 --split layer3 --quant uniform --alloc none --bits 1 --limit 1
expect_error "finite" evaluate --model resnet18 --split layer3 --quant uniform --alloc channel --table "$TMP" --alpha nan --limit 1
expect_error "finite" evaluate --model resnet18 --split layer3 --quant uniform --alloc channel --table "$TMP" --beta inf --limit 1
expect_error "table" evaluate --model resnet18 --split layer3 --quant uniform --alloc channel --limit 1
expect_error "2.csv|cannot open|No such" evaluate --model resnet18 --split layer3 --quant uniform --alloc channel --table "$TMP/none" --bits 2 --limit 1
mkdir -p "$TMP/t"
printf '1,2,3\n' >"$TMP/t/2.csv"
expect_error "2.csv.*(column|256)" evaluate --model resnet18 --split layer3 --quant uniform --alloc channel --table "$TMP/t" --bits 2 --limit 1
python3 -c "print(','.join(['3']*255+['x']))" >"$TMP/t/2.csv" 2>/dev/null || printf '%s\n' "$(printf '3,%.0s' $(seq 255))x" >"$TMP/t/2.csv"
expect_error "2.csv" evaluate --model resnet18 --split layer3 --quant uniform --alloc channel --table "$TMP/t" --bits 2 --limit 1
printf '%s\n' "$(printf '3,%.0s' $(seq 255))0" >"$TMP/t/2.csv"
expect_error "2.csv" evaluate --model resnet18 --split layer3 --quant uniform --alloc channel --table "$TMP/t" --bits 2 --limit 1
: >"$TMP/t/2.csv"
expect_error "2.csv" evaluate --model resnet18 --split layer3 --quant uniform --alloc channel --table "$TMP/t" --bits 2 --limit 1
expect_error "flag" main_model --flag 2 --model resnet18 --quant_mode uniform
# a failed calibrate leaves no table file behind
expect_error "split" calibrate --model resnet18 --split nowhere --quant uniform --table "$TMP/cal" --limit 1
if ls "$TMP/cal"/*.csv >/dev/null 2>&1; then echo "FAIL: calibrate left files"; fails=$((fails + 1)); fi
if ls "$TMP"/*.tmp.* >/dev/null 2>&1; then echo "FAIL: temp files left"; fails=$((fails + 1)); fi

echo "$((n - fails))/$n error cases behave"
[ $fails -eq 0 ]
