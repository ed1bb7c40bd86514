#!/bin/bash
# End-to-end flows through the command line on the reference ResNet18, split
# after layer4 (512x2x2: the back end is avgpool + fc, so calibration is fast):
#  - calibrate writes DIR/2.csv..7.csv with one row of 512 positive integers per
#    image whose sum is the budget T_b = (2^b-1)*512, and resumes an interrupted run;
#  - evaluate --json reports every contract field, the channel-wise allocation
#    meets the budget exactly, and results are identical at 1 and 2 threads;
#  - the original's main_model flags and file layout work (flag 0 then flag 1).
# usage: cli_flow.sh CWBA_BINARY SOURCE_DIR
set -u
BIN=$(readlink -f "$1")
TMP=$(mktemp -d /tmp/cwba-flow-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

M=(--model resnet18 --split layer4)
"$BIN" calibrate "${M[@]}" --quant uniform --table "$TMP/t" --limit 2 >/dev/null || fail "calibrate"
for b in 2 3 4 5 6 7; do
    rows=$(wc -l <"$TMP/t/$b.csv")
    [ "$rows" -eq 2 ] || fail "$b.csv has $rows rows"
    awk -F, -v b=$b -v f="$b.csv" '{ s = 0; for (i = 1; i <= NF; i++) { if ($i !~ /^[0-9]+$/ || $i < 1) bad = 1; s += $i }
        if (NF != 512 || s != (2^b - 1) * 512 || bad) { print "FAIL: " f " row " NR ": " NF " cols, sum " s; exit 1 } }' \
        "$TMP/t/$b.csv" || fails=$((fails + 1))
done
# resume: asking for 3 images adds exactly one row and keeps the first two
cp "$TMP/t/4.csv" "$TMP/before.csv"
"$BIN" calibrate "${M[@]}" --quant uniform --table "$TMP/t" --limit 3 >/dev/null 2>"$TMP/err" || fail "resume"
grep -q "resuming, 2 of 3" "$TMP/err" || fail "no resume notice: $(cat "$TMP/err")"
[ "$(wc -l <"$TMP/t/4.csv")" -eq 3 ] || fail "resume did not append one row"
[ "$(head -2 "$TMP/t/4.csv")" = "$(cat "$TMP/before.csv")" ] || fail "resume changed earlier rows"
# an interrupted run that appended to some files only is repaired
head -2 "$TMP/t/7.csv" >"$TMP/t7" && mv "$TMP/t7" "$TMP/t/7.csv"
"$BIN" calibrate "${M[@]}" --quant uniform --table "$TMP/t" --limit 3 >/dev/null 2>&1 || fail "repair"
for b in 2 3 4 5 6 7; do [ "$(wc -l <"$TMP/t/$b.csv")" -eq 3 ] || fail "repair: $b.csv"; done

# evaluate: JSON contract fields, determinism across thread counts
E=(evaluate "${M[@]}" --quant uniform --alloc channel --table "$TMP/t" --bits 2,5 --reserve 0,7 --limit 4 --json)
"$BIN" "${E[@]}" --threads 1 >"$TMP/e1.json" || fail "evaluate t1"
"$BIN" "${E[@]}" --threads 2 >"$TMP/e2.json" || fail "evaluate t2"
[ "$(wc -l <"$TMP/e1.json")" -eq 4 ] || fail "expected 4 JSON lines"
for k in model split quant alloc bits reserve images mse feature_mse top1 agree bits_per_element \
         passes_per_image seconds_per_image stream_bytes; do
    grep -q "\"$k\":" "$TMP/e1.json" || fail "JSON lacks $k"
done
strip() { sed -E 's/"seconds_per_image":[^,}]*//; s/"threads":[0-9]+//' "$1"; }
[ "$(strip "$TMP/e1.json")" = "$(strip "$TMP/e2.json")" ] || fail "results differ between 1 and 2 threads"
grep '"reserve":7' "$TMP/e1.json" | grep -q '"passes_per_image":1.000' && fail "reserve 7 made no probe passes"
# baselines
"$BIN" evaluate "${M[@]}" --quant log --alloc none --bits 3 --limit 3 --json | grep -q '"bits_per_element":3.0' ||
    fail "log baseline: 3 bits per element"
"$BIN" evaluate "${M[@]}" --quant dorefa --bits 4 --dorefa-clip 2.5 --limit 3 --json | grep -q '"quant":"dorefa"' ||
    fail "dorefa baseline"

# --conv winograd: reported, and evaluate's figures within rounding of direct
# arithmetic (the feature after layer4 is 512x2x2; the front end has
# Winograd layers at 16x16..4x4 where the CPU has AVX-512)
"$BIN" evaluate "${M[@]}" --quant uniform --bits 4 --limit 3 --json --conv winograd >"$TMP/w.json" || fail "evaluate --conv winograd"
grep -q '"conv":"winograd"' "$TMP/w.json" || fail "evaluate --conv winograd not reported: $(cat "$TMP/w.json")"
"$BIN" evaluate "${M[@]}" --quant uniform --bits 4 --limit 3 --json >"$TMP/d.json" || fail "evaluate direct"
grep -q '"conv":"direct"' "$TMP/d.json" || fail "evaluate direct arithmetic not reported"
for k in mse feature_mse; do
    dv=$(sed -E "s/.*\"$k\":([^,]*).*/\1/" "$TMP/d.json"); wv=$(sed -E "s/.*\"$k\":([^,]*).*/\1/" "$TMP/w.json")
    awk -v d="$dv" -v w="$wv" 'BEGIN { e = d - w; if (e < 0) e = -e; a = d < 0 ? -d : d; exit !(e <= 1e-3 * a + 1e-12) }' ||
        fail "winograd $k $wv not within rounding of direct $dv"
done

# the original's command line and file layout
cd "$TMP"
"$BIN" main_model --gpuid 1 --flag 0 --model 'resnet18' --quant_mode 'uniform' --csv_path './channel_allocation/' \
    --csv_name 'resnet' --split layer4 --limit 2 >/dev/null || fail "main_model flag 0"
for b in 2 3 4 5 6 7; do
    [ -s "channel_allocation/$b/resnet.csv" ] || fail "main_model flag 0 did not write channel_allocation/$b/resnet.csv"
    mkdir -p quant_interval_resnet && cp "channel_allocation/$b/resnet.csv" "quant_interval_resnet/$b.csv"
done
"$BIN" main_model --gpuid 0 --flag 1 --model 'resnet18' --quant_mode 'uniform' --net_mode 'resnet' \
    --reserve_interval 20 --alpha 0.9 --beta 0.1 --split layer4 --limit 3 >"$TMP/mm.txt" || fail "main_model flag 1"
[ "$(grep -c '^bits [2-7]  mse' "$TMP/mm.txt")" -eq 6 ] || fail "main_model flag 1 output: $(cat "$TMP/mm.txt")"
"$BIN" main_model --gpuid 0 --flag 1 --model 'resnet18' --quant_mode 'unniform' --net_mode 'resnet' \
    --reserve_interval 20 --alpha 0.9 --beta 0.1 2>"$TMP/err" && fail "unniform accepted"
grep -q "uniform" "$TMP/err" || fail "unniform message does not list the valid modes"

[ $fails -eq 0 ] && echo "all flows behave"
[ $fails -eq 0 ]
