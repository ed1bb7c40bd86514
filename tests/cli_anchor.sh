#!/bin/bash
# evaluate --codec: the standard-codec anchors through the reference ResNet18
# (defaults: Fashion-MNIST test images, split layer3) on a few images:
#  - one JSON row per quality with the contract fields; the rate rises with
#    quality and the output MSE falls between the extreme qualities;
#  - the same command gives the same rows on a second run and at another
#    thread count (timings aside): HEVC's x265 runs single-threaded;
#  - bad parameters give one error line and exit 2.
# usage: cli_anchor.sh CWBA_BINARY SOURCE_DIR
set -u
BIN=$(readlink -f "$1")
TMP=$(mktemp -d /tmp/cwba-anchor-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

M=(evaluate --model resnet18 --split layer3 --limit 4 --json)
field() { grep -o "\"$1\":[^,}]*" | cut -d: -f2; }
for spec in "jpeg 10,50,90" "webp 10,50,90" "hevc 45,32,20"; do
    set -- $spec
    c=$1 q=$2
    "$BIN" "${M[@]}" --codec "$c" --quality "$q" >"$TMP/$c.json" 2>"$TMP/err" || { fail "$c: $(cat "$TMP/err")"; continue; }
    [ "$(wc -l <"$TMP/$c.json")" -eq 3 ] || fail "$c: $(wc -l <"$TMP/$c.json") rows, expected 3"
    for f in codec quality images mse feature_mse top1 agree bytes_per_image bits_per_element bits_per_pixel; do
        [ "$(field $f <"$TMP/$c.json" | wc -l)" -eq 3 ] || fail "$c: field $f missing"
    done
    [ "$(field codec <"$TMP/$c.json" | sort -u)" = "\"$c\"" ] || fail "$c: codec field"
    [ "$(field images <"$TMP/$c.json" | sort -u)" = 4 ] || fail "$c: images field"
    field bytes_per_image <"$TMP/$c.json" | awk 'NR > 1 && $1 <= p { bad = 1 } { p = $1 } END { exit bad }' ||
        fail "$c: bytes_per_image does not rise with quality: $(field bytes_per_image <"$TMP/$c.json" | tr '\n' ' ')"
    field mse <"$TMP/$c.json" | awk 'NR == 1 { a = $1 } { z = $1 } END { exit !(z < a) }' ||
        fail "$c: output MSE does not fall: $(field mse <"$TMP/$c.json" | tr '\n' ' ')"
    [ "$(grep -c '"header_bytes":16,' "$TMP/$c.json")" -eq 3 ] || fail "$c: header_bytes"
    # 256x4x4 elements = 64x64 input pixels: the two per-unit rates agree
    [ "$(field bits_per_element <"$TMP/$c.json")" = "$(field bits_per_pixel <"$TMP/$c.json")" ] ||
        fail "$c: bits per element and per pixel differ at 256x4x4 / 64x64"
    echo "ok   $c: $(field bytes_per_image <"$TMP/$c.json" | tr '\n' ' ')bytes/image"
done
strip_time() { sed 's/"seconds_per_image":[^,]*,//' "$1"; }
"$BIN" "${M[@]}" --codec hevc --quality 45,32,20 --threads 1 >"$TMP/hevc2.json" || fail "hevc rerun"
[ "$(strip_time "$TMP/hevc.json" | sed 's/"threads":[0-9]*//')" = \
  "$(strip_time "$TMP/hevc2.json" | sed 's/"threads":[0-9]*//')" ] || fail "hevc rows differ between runs"

EXPECT_RC=2
. "$(dirname "$0")/lib_cli.sh"
E=(evaluate --model resnet18 --split layer3 --limit 1)
expect_error "unknown codec 'vvc'" "${E[@]}" --codec vvc --quality 30
expect_error "needs --quality" "${E[@]}" --codec jpeg
expect_error "QP 60 is outside 0..51" "${E[@]}" --codec hevc --quality 30,60
expect_error "quality 0 is outside 1..100" "${E[@]}" --codec jpeg --quality 0
expect_error "out of range" "${E[@]}" --codec webp --quality 101
expect_error "not an integer" "${E[@]}" --codec webp --quality high
expect_error "--bits does not apply with --codec" "${E[@]}" --codec jpeg --quality 50 --bits 4
expect_error "--quant does not apply with --codec" "${E[@]}" --codec jpeg --quality 50 --quant uniform
expect_error "--quality applies to --codec only" "${E[@]}" --quant uniform --quality 50
expect_error "--quant is required" "${E[@]}"

[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all anchor CLI checks passed"
