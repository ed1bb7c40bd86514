#!/bin/bash
# cwba bdrate: an rd-points table in, a bdrate table out. Exact answers on
# constructed curves (rates 0.8x the anchor's at the same MSE and top-1:
# -20 %), NA rows with a reason on stderr for curves BD-rate is not defined
# on, and one error line with exit 2 for bad tables and options.
# usage: cli_bdrate.sh CWBA_BINARY SOURCE_DIR
set -u
BIN=$(readlink -f "$1")
TMP=$(mktemp -d /tmp/cwba-bdrate-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
H=config,method,point,images,bytes_per_image,bits_per_element,mse,top1

{
    echo $H
    for p in 1 2 3 4 5; do
        b=$((100 * 2 ** p))
        mse=$(awk -v p=$p 'BEGIN { printf "%.6g", 0.3 / p ^ 2 }')
        t=$(awk -v p=$p 'BEGIN { printf "%.4f", 0.5 + 0.08 * p }')
        echo "cfg,jpeg,q$p,100,$b,$(awk -v b=$b 'BEGIN { print b * 8 / 4096 }'),$mse,$t"
        echo "cfg,ours,b$p,100,$(awk -v b=$b 'BEGIN { print 0.8 * b }'),1,$mse,$t"
        # three points only: NA
        [ $p -le 3 ] && echo "cfg,short,b$p,100,$b,1,$mse,$t"
        # far better quality than the anchor ever reaches: no overlap
        echo "cfg,far,b$p,100,$b,1,$(awk -v p=$p 'BEGIN { printf "%.6g", 1e-9 / p }'),NA"
    done
    # another configuration without the anchor
    for p in 1 2 3 4; do echo "other,ours,b$p,100,$((p * 10)),1,0.$p,0.5"; done
} >"$TMP/rd.csv"

"$BIN" bdrate --points "$TMP/rd.csv" --anchor jpeg --out "$TMP/bd.csv" 2>"$TMP/err" || fail "bdrate: $(cat "$TMP/err")"
[ "$(head -1 "$TMP/bd.csv")" = "config,method,anchor,metric,bd_rate_percent" ] || fail "header: $(head -1 "$TMP/bd.csv")"
grep -qx "cfg,ours,jpeg,mse,-20.0000" "$TMP/bd.csv" || fail "ours vs jpeg mse is not -20: $(cat "$TMP/bd.csv")"
grep -qx "cfg,ours,jpeg,top1,-20.0000" "$TMP/bd.csv" || fail "ours vs jpeg top1 is not -20"
grep -qx "cfg,short,jpeg,mse,NA" "$TMP/bd.csv" || fail "3-point curve is not NA"
grep -q "short vs jpeg, mse: NA (test curve: 3 points, BD-rate needs 4" "$TMP/err" || fail "no reason for the 3-point curve: $(cat "$TMP/err")"
grep -qx "cfg,far,jpeg,mse,NA" "$TMP/bd.csv" || fail "no-overlap curve is not NA"
grep -q "far vs jpeg, mse: NA (BD-rate: no overlap" "$TMP/err" || fail "no reason for no overlap"
grep -q "far vs jpeg, top1: NA (top1 missing)" "$TMP/err" || fail "no reason for missing top1"
grep -q "other has no 'jpeg' curve" "$TMP/err" || fail "no note for the configuration without the anchor"
[ "$(wc -l <"$TMP/bd.csv")" -eq 7 ] || fail "$(wc -l <"$TMP/bd.csv") lines, expected 7"
# pchip agrees on an exact scaling; stdout without --out
"$BIN" bdrate --points "$TMP/rd.csv" --anchor jpeg --fit pchip 2>/dev/null | grep -qx "cfg,ours,jpeg,mse,-20.0000" ||
    fail "pchip is not -20"
# anchor list: ours against jpeg and jpeg against ours (+25 %)
"$BIN" bdrate --points "$TMP/rd.csv" --anchor jpeg,ours 2>/dev/null | grep -qx "cfg,jpeg,ours,mse,25.0000" ||
    fail "jpeg vs ours is not +25"

. "$(dirname "$0")/lib_cli.sh"
expect_error "--points is required" bdrate --anchor jpeg
expect_error "no curve of the anchor method 'hevc'" bdrate --points "$TMP/rd.csv" --anchor hevc
expect_error "unknown BD-rate fit 'akima'" bdrate --points "$TMP/rd.csv" --anchor jpeg --fit akima
printf 'config,method,rate\n' >"$TMP/h.csv"
expect_error "header must be" bdrate --points "$TMP/h.csv" --anchor jpeg
{ echo $H; echo "c,jpeg,q1,10,-5,1,0.1,0.5"; } >"$TMP/neg.csv"
expect_error "neg.csv:2: .*positive" bdrate --points "$TMP/neg.csv" --anchor jpeg
{ echo $H; echo "c,jpeg,q1,10,5,1,0.1"; } >"$TMP/short.csv"
expect_error "short.csv:2: expected 8" bdrate --points "$TMP/short.csv" --anchor jpeg
{ echo $H; echo "c,jpeg,q1,10,5,1,0.1,0.5"; echo "c,jpeg,q1,10,6,1,0.1,0.5"; } >"$TMP/dup.csv"
expect_error "point q1 of c jpeg listed twice" bdrate --points "$TMP/dup.csv" --anchor jpeg
expect_error "No such file|cannot open|missing" bdrate --points "$TMP/missing.csv" --anchor jpeg --out "$TMP/o.csv"
[ -e "$TMP/o.csv" ] && fail "an output file was left after an error"

[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all bdrate CLI checks passed"
