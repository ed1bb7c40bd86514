#!/bin/bash
# The layer rules of docs/architecture.md, checked on the sources and on the
# compiled objects:
#   core -> nothing · io -> core · nn -> core, io · quant -> core ·
#   codec -> core, quant · programs -> the public headers (include/) only.
# 1. includes: every #include "..." of a layer names its own folder's files
#    or the public header of an allowed layer (public headers obey the same
#    rules); 2. symbols: every library symbol an object uses is defined in
#    its own layer or an allowed one; 3. no two files depend on each other's
#    symbols (cycles such as pth.c <-> safetensors.c).
# usage: lib_layers.sh SOURCE_DIR OBJECT_DIR   (OBJECT_DIR holds src/<layer>/*.c.o)
set -u
src=$1
obj=$2
status=0
bad() { echo "lib_layers: $*" >&2; status=1; }

allowed() { # layer -> layers it may use (itself included)
  case $1 in
    core) echo "core" ;;
    io) echo "io core" ;;
    nn) echo "nn core io" ;;
    quant) echo "quant core" ;;
    codec) echo "codec core quant" ;;
    *) echo "" ;;
  esac
}
may_use() { [[ " $(allowed "$1") " == *" $2 "* ]]; }

# ---- 1. includes
check_includes() { # file layer
  local f=$1 layer=$2 inc dep
  while IFS= read -r inc; do
    case $inc in
      cwba.h) [ "$layer" = programs ] || bad "$f includes cwba.h (the umbrella header is for programs)"; continue ;;
      cwba/*.h) dep=${inc#cwba/}; dep=${dep%.h}; [ "$dep" = rd ] && dep=quant ;; # rd.h: quant's BD-rate
      */*) dep=${inc%%/*} ;;
      *) if [ -e "$(dirname "$f")/$inc" ]; then continue; fi
         bad "$f includes \"$inc\", not a file of its folder"; continue ;;
    esac
    if [ "$layer" = programs ]; then
      [[ $inc == cwba/* ]] || bad "$f includes \"$inc\": programs use the public headers only"
      [ -e "$src/include/$inc" ] || bad "$f includes \"$inc\", not a public header"
    elif [ "$layer" = public ]; then
      hl=$(basename "$f" .h); [ "$hl" = rd ] && hl=quant
      may_use "$hl" "$dep" || bad "$f includes \"$inc\""
    else
      may_use "$layer" "$dep" || bad "$f ($layer) includes \"$inc\" ($dep)"
    fi
  done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
}
for layer in core io nn quant codec; do
  for f in "$src"/src/$layer/*.[ch]; do check_includes "$f" "$layer"; done
done
for f in "$src"/include/cwba/*.h; do check_includes "$f" public; done
for f in "$src"/programs/*.[ch]; do check_includes "$f" programs; done

# ---- 2 and 3. symbols
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=0
for o in "$obj"/src/*/*.c.o; do
  [ -e "$o" ] || { bad "no objects under $obj/src"; break; }
  rel=${o#"$obj"/src/}
  file=${rel%.o}
  nm "$o" | awk -v f="$file" '$2 ~ /^[TDBRC]$/ {print $3, f}' >>"$tmp/def"
  nm -u "$o" | awk -v f="$file" '{print $2, f}' >>"$tmp/use"
  n=$((n + 1))
done
sort -k1,1 "$tmp/def" >"$tmp/def.s"
sort -k1,1 "$tmp/use" >"$tmp/use.s"
# user-file defining-file symbol, for library symbols only
join -o 1.2,2.2,1.1 "$tmp/use.s" "$tmp/def.s" | sort -u >"$tmp/edges"
while read -r user def sym; do
  [ "$user" = "$def" ] && continue
  lu=${user%%/*}
  ld=${def%%/*}
  may_use "$lu" "$ld" || bad "src/$user ($lu) uses $sym of src/$def ($ld)"
done <"$tmp/edges"
awk '$1 != $2 {print $1, $2}' "$tmp/edges" | sort -u >"$tmp/pairs"
awk '{print $2, $1}' "$tmp/pairs" | sort -u | comm -12 - "$tmp/pairs" |
  awk '$1 < $2 {print}' |
  # The anchor dispatcher and its codec back ends share helpers by design:
  # one component split over files, not a cycle between components.
  grep -Ev '^codec/anchor\.c codec/anchor_[a-z]+\.c$' | while read -r a b; do
    bad "src/$a and src/$b use each other's symbols (a cycle)"
    echo x >>"$tmp/cycle"
  done
[ -e "$tmp/cycle" ] && status=1
[ $status = 0 ] && echo "lib_layers: includes and symbols of $n objects follow the layer rules, no file cycles"
exit $status
