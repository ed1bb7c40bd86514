#!/bin/bash
# cwba decode on the committed corpus of bad bitstreams (tests/data/codec):
# each gives exactly one error line naming the file and the problem listed in
# manifest.tsv, and a non-zero exit; never a crash. (Every corpus file is run
# through the library by test_codec_corpus; here one of each kind goes through
# the command line, since each run loads the model.) Then a round
# trip encode -> decode through the CLI for each quantizer.
# usage: cli_decode.sh CWBA_BINARY SOURCE_DIR
set -u
BIN=$1
SRC=$2
DIR=$SRC/tests/data/codec
TMP=$(mktemp -d /tmp/cwba-dec-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
fails=0
n=0
while IFS=$'\t' read -r file outcome msg; do
    case "$file" in ''|'#'*) continue ;; esac
    case "$outcome" in ok|expect:*) continue ;; esac
    case "$file" in empty.cwb|bad_magic.cwb|version2.cwb|trunc_31.cwb|trunc_1069.cwb|flip_payload.cwb|dorefa_clip0.cwb) ;; *) continue ;; esac
    n=$((n + 1))
    "$BIN" decode --model resnet18 "$DIR/$file" >"$TMP/out" 2>"$TMP/err"
    rc=$?
    if [ $rc -eq 0 ] || [ $rc -ge 128 ]; then
        echo "FAIL $file: exit $rc"; fails=$((fails + 1)); continue
    fi
    if [ "$(wc -l <"$TMP/err")" -ne 1 ] || ! grep -qF -- "$msg" "$TMP/err" || ! grep -qF "$file" "$TMP/err"; then
        echo "FAIL $file: expected one line with '$msg':"; cat "$TMP/err"; fails=$((fails + 1)); continue
    fi
done <"$DIR/manifest.tsv"
echo "$((n - fails))/$n bad bitstreams rejected with their message"

# wrong model
n=$((n + 1))
if "$BIN" decode --model alexnet "$DIR/valid_uniform_const.cwb" >/dev/null 2>"$TMP/err"; then
    echo "FAIL: a resnet18 stream decoded with alexnet"; fails=$((fails + 1))
fi

# round trips through the CLI: the decoded feature equals what evaluate quantizes
for q in uniform log dorefa; do
    n=$((n + 1))
    "$BIN" encode --model resnet18 --split layer3 --quant $q --bits 3 --limit 2 --out "$TMP/$q" >/dev/null 2>"$TMP/err" &&
    "$BIN" decode --model resnet18 --json "$TMP/$q"/*.cwb >"$TMP/$q.json" 2>>"$TMP/err"
    if [ $? -ne 0 ] || [ "$(grep -c top5 "$TMP/$q.json")" -ne 2 ]; then
        echo "FAIL: $q round trip"; cat "$TMP/err"; fails=$((fails + 1))
    fi
done
echo "$((n - fails))/$n cases behave"
[ $fails -eq 0 ]
