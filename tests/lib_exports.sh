#!/bin/bash
# libcwba.so exports the public API only: every defined dynamic symbol is
# cwba_-prefixed, cwba_version is among them, and the soname is versioned.
# usage: lib_exports.sh LIBCWBA.so
set -u
lib=$1
fail() { echo "lib_exports: $*" >&2; exit 1; }
[ -f "$lib" ] || fail "no library at $lib"
# (type A: the version node CWBA_0 of src/cwba.map, not a symbol)
syms=$(nm -D --defined-only "$lib" | awk '$2 != "A" {print $3}' | sed 's/@.*//' | sort -u) || fail "nm failed"
[ -n "$syms" ] || fail "no exported symbols"
bad=$(printf '%s\n' "$syms" | grep -v '^cwba_' || true)
[ -z "$bad" ] || fail "symbols without the cwba_ prefix are exported: $(echo $bad | head -c 400)"
printf '%s\n' "$syms" | grep -qx cwba_version || fail "cwba_version is not exported"
printf '%s\n' "$syms" | grep -qx cwba_calibrate_image || fail "cwba_calibrate_image is not exported"
soname=$(objdump -p "$lib" | awk '$1 == "SONAME" {print $2}')
[[ "$soname" =~ ^libcwba\.so\.[0-9]+$ ]] || fail "soname '$soname' is not libcwba.so.N"
echo "lib_exports: $(printf '%s\n' "$syms" | wc -l) symbols, all cwba_*; soname $soname"
