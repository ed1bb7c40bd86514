# Shared by the command-line tests that source it (cli_anchor.sh,
# cli_bdrate.sh): they set BIN, TMP and fails first.
#
# expect_error "<grep -E pattern>" args...: the command must exit non-zero
# (exactly $EXPECT_RC when that is set) with one line on stderr matching
# the pattern.
expect_error() {
    local pat=$1
    shift
    "$BIN" "$@" >"$TMP/out" 2>"$TMP/err"
    local rc=$? lines
    lines=$(wc -l <"$TMP/err")
    if [ $rc -eq 0 ] || { [ -n "${EXPECT_RC:-}" ] && [ $rc -ne "$EXPECT_RC" ]; } ||
        [ "$lines" -ne 1 ] || ! grep -qE -e "$pat" "$TMP/err"; then
        echo "FAIL [$*]: rc=$rc, $lines lines: $(cat "$TMP/err")"
        fails=$((fails + 1))
        return
    fi
    echo "ok   [$*] -> $(cat "$TMP/err")"
}
