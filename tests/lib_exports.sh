#!/bin/bash
# libcwba.so exports the public API and nothing else: the set of defined
# dynamic symbols equals the set of functions declared in the public headers
# (include/cwba.h and what it includes, as the compiler sees them: gcc
# -aux-info), both ways; the soname is versioned.
# usage: lib_exports.sh LIBCWBA.so SOURCE_DIR CC
set -u
lib=$1
src=$2
cc=${3:-cc}
fail() { echo "lib_exports: $*" >&2; exit 1; }
[ -f "$lib" ] || fail "no library at $lib"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# (type A: the version node CWBA_0 of src/cwba.map, not a symbol)
nm -D --defined-only "$lib" | awk '$2 != "A" {print $3}' | sed 's/@.*//' | sort -u > "$tmp/exported" ||
  fail "nm failed"
[ -s "$tmp/exported" ] || fail "no exported symbols"
echo '#include <cwba.h>' > "$tmp/h.c"
(cd "$src" && "$cc" -std=c11 -Iinclude -aux-info "$tmp/aux" -fsyntax-only "$tmp/h.c") ||
  fail "the public headers do not compile"
# one line per declared function: /* include/cwba/x.h:N:NC */ extern T name (args);
# the function's name is the last identifier before " (" outside the argument list
grep -E '^/\* [^ ]*include/cwba[/.]' "$tmp/aux" | sed -E 's/^[^*]*\*\/ *//; s/ \(.*//; s/.* //; s/^\*+//' |
  sort -u > "$tmp/declared"
[ -s "$tmp/declared" ] || fail "no functions declared in the public headers"
extra=$(comm -23 "$tmp/exported" "$tmp/declared")
[ -z "$extra" ] || fail "exported but not declared in include/: $(echo $extra | head -c 600)"
missing=$(comm -13 "$tmp/exported" "$tmp/declared")
[ -z "$missing" ] || fail "declared in include/ but not exported (add to src/cwba.map): $(echo $missing | head -c 600)"
grep -qx cwba_version "$tmp/exported" || fail "cwba_version is not exported"
soname=$(objdump -p "$lib" | awk '$1 == "SONAME" {print $2}')
[[ "$soname" =~ ^libcwba\.so\.[0-9]+$ ]] || fail "soname '$soname' is not libcwba.so.N"
echo "lib_exports: $(wc -l < "$tmp/exported") symbols exported = declared in include/; soname $soname"
