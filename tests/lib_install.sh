#!/bin/bash
# cmake --install into a temporary prefix, then two consumers of the installed
# library: a C program built with `cc t.c $(pkg-config --cflags --libs cwba)`
# alone, and a CMake project using find_package(cwba) and cwba::cwba. Both
# call the library (version, a quantizer, an error message) and check it.
# usage: lib_install.sh BUILD_DIR SOURCE_DIR [PYTHON]   (with PYTHON, the
# installed Python package is imported too)
set -eu
build=$1
src=$2
python=${3:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "lib_install: $*" >&2; exit 1; }
cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log" >&2; fail "cmake --install failed"; }
for f in include/cwba.h include/cwba/core.h include/cwba/quant.h bin/cwba; do
  [ -e "$tmp/prefix/$f" ] || fail "$f not installed"
done
pc=$(find "$tmp/prefix" -name cwba.pc | head -1)
[ -n "$pc" ] || fail "cwba.pc not installed"
libdir=$(dirname "$(dirname "$pc")")
[ -e "$libdir/libcwba.a" ] || fail "libcwba.a not installed"
ls "$libdir"/libcwba.so.* >/dev/null 2>&1 || fail "libcwba.so.N not installed"

mkdir "$tmp/c"
cat >"$tmp/c/t.c" <<'C'
#include <cwba.h>
#include <stdio.h>
#include <string.h>
int main(void)
{
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", CWBA_VERSION_MAJOR, CWBA_VERSION_MINOR, CWBA_VERSION_PATCH);
    if (strcmp(cwba_version(), want)) return 1;
    /* uniform, 4 intervals on [0, 1]: 0.3 -> code 1 (1.2 rounds to 1), back to 0.25 */
    if (cwba_quant_code_ref(CWBA_QUANT_UNIFORM, 0.3f, 0.0f, 1.0f, 4) != 1) return 2;
    if (cwba_quant_dequant_ref(CWBA_QUANT_UNIFORM, 1, 0.0f, 1.0f, 4) != 0.25f) return 3;
    cwba_error err;
    cwba_quant q;
    if (cwba_quant_parse("unniform", &q, &err) != CWBA_E_ARG || !strstr(err.msg, "uniform")) return 4;
    printf("ok %s\n", cwba_version());
    return 0;
}
C
export PKG_CONFIG_PATH="$(dirname "$pc")"
( cd "$tmp/c" && cc t.c $(pkg-config --cflags --libs cwba) -o t ) || fail "pkg-config consumer did not build"
out=$(LD_LIBRARY_PATH="$libdir" "$tmp/c/t") || fail "pkg-config consumer failed (exit $?)"
[ "$out" = "ok $("$tmp/prefix/bin/cwba" --version | awk '{print $2}')" ] || fail "pkg-config consumer printed '$out'"
# libcwba.a with the dependencies the .pc file names (their shared libraries:
# Debian ships no static libcurl dependencies).
( cd "$tmp/c" && cc t.c $(pkg-config --cflags cwba) "$libdir/libcwba.a" \
    $(pkg-config --libs $(pkg-config --print-requires-private cwba)) -lpthread -lm -o ts ) ||
  fail "static consumer did not build"
"$tmp/c/ts" >/dev/null || fail "static consumer failed"
# libcwba.a's global symbols are the public API only: a program with its own
# functions named as the library's internals links with it and keeps them.
bad=$(nm -g --defined-only "$libdir/libcwba.a" | awk 'NF == 3 {print $3}' | grep -v '^cwba_[a-z]' || true)
[ -z "$bad" ] || fail "libcwba.a exposes internal symbols: $(echo $bad | head -c 400)"
cat >"$tmp/c/own.c" <<'C'
#include <cwba.h>
#include <string.h>
int nn_blk_conv(int x) { return x + 1; }
int rc_enc_bit(int x) { return x + 2; }
float cwba__logf(float x) { return x; }
int main(void)
{
    return nn_blk_conv(1) == 2 && rc_enc_bit(1) == 3 && cwba__logf(2.0f) == 2.0f &&
                   cwba_quant_code_ref(CWBA_QUANT_UNIFORM, 0.3f, 0.0f, 1.0f, 4) == 1 &&
                   strlen(cwba_version()) > 0
               ? 0
               : 1;
}
C
( cd "$tmp/c" && cc own.c $(pkg-config --cflags cwba) "$libdir/libcwba.a" \
    $(pkg-config --libs $(pkg-config --print-requires-private cwba)) -lpthread -lm -o own ) ||
  fail "a program defining nn_blk_conv, rc_enc_bit, cwba__logf does not link with libcwba.a"
"$tmp/c/own" || fail "a program defining internal names got the library's"

mkdir "$tmp/cm"
cp "$tmp/c/t.c" "$tmp/cm/t.c"
cat >"$tmp/cm/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.18)
project(consumer C)
find_package(cwba 0.1 REQUIRED)
add_executable(t t.c)
target_link_libraries(t PRIVATE cwba::cwba)
CM
cmake -S "$tmp/cm" -B "$tmp/cm/b" -DCMAKE_PREFIX_PATH="$tmp/prefix" >"$tmp/cm.log" 2>&1 || { cat "$tmp/cm.log" >&2; fail "find_package consumer did not configure"; }
cmake --build "$tmp/cm/b" >>"$tmp/cm.log" 2>&1 || { cat "$tmp/cm.log" >&2; fail "find_package consumer did not build"; }
"$tmp/cm/b/t" >/dev/null || fail "find_package consumer failed"

# docs/api.md's C example against the installed package.
mkdir "$tmp/doc"
c_block() { awk -v k="$1" '/^```c$/ {on = (++n == k); next} /^```/ {on = 0} on' "$src/docs/api.md"; }
c_block 1 >"$tmp/doc/ten.c"
( cd "$tmp/doc" && cc -Wall -Wextra -Werror ten.c $(pkg-config --cflags --libs cwba) -o ten ) || fail "docs/api.md's ten-line C example did not build"
out=$(LD_LIBRARY_PATH="$libdir" "$tmp/doc/ten" | sed -n 2p) || fail "docs/api.md's ten-line C example failed"
[ "$out" = "0.3 -> 1 -> 0.25" ] || fail "docs/api.md's ten-line C example printed '$out'"
c_block 2 >"$tmp/doc/t.c"
[ -s "$tmp/doc/t.c" ] || fail "no C example in docs/api.md"
( cd "$tmp/doc" && cc -Wall -Wextra -Werror t.c $(pkg-config --cflags --libs cwba) -o t ) || fail "docs/api.md's C example did not build"
out=$(LD_LIBRARY_PATH="$libdir" "$tmp/doc/t" "$src/models/resnet18_fmnist64.safetensors") || fail "docs/api.md's C example failed"
[[ "$out" =~ ^cwba\ [0-9.]+:\ 3\ bits,\ output\ mse\ [0-9] ]] || fail "docs/api.md's C example printed '$out'"

# The installed Python package finds the installed library.
pydir=$(find "$tmp/prefix" -path '*/cwba/__init__.py' | head -1)
if [ -n "$python" ]; then
  [ -n "$pydir" ] || fail "the Python package was not installed"
  v=$(cd "$tmp" && env -u CWBA_LIBRARY PYTHONPATH="$(dirname "$(dirname "$pydir")")" "$python" -c 'import cwba; print(cwba.version())') || fail "installed Python package did not import"
  [ "$v" = "$("$tmp/prefix/bin/cwba" --version | awk '{print $2}')" ] || fail "installed Python package reports '$v'"
fi
echo "lib_install: pkg-config (shared, static), find_package and Python consumers ok"
