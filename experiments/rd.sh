#!/bin/bash
# Rate-distortion points and BD-rates (experiments/README.md, docs/anchors.md):
#   - the standard-codec anchors (cwba evaluate --codec jpeg|webp|hevc) on
#     the test images of run.sh (every EVERY-th, in chunks of CHUNK), written
#     as JSON Lines to raw-rd/<config>/<codec>/chunk-NNN.jsonl;
#   - results/rd-points.csv: one row per (config, method, point), image-
#     weighted means over the first ceil(RD_IMAGES / CHUNK) chunks of each
#     method: the anchors, and `uniform` from run.sh's uniform-none chunks
#     (bits 2..7; bytes per image = the smaller of the fixed and adaptive
#     payload means, side information included: the mode one would pick for
#     the configuration);
#   - results/bdrate.csv: `cwba bdrate` against jpeg, webp and hevc.
#
#   experiments/rd.sh                                   # everything, resumable
#   RD_IMAGES=300 CONFIGS="resnet18:layer3" experiments/rd.sh
#
# CHUNK must stay run.sh's (100): the uniform curve is read from run.sh's
# chunks, and every curve of a configuration must cover the same images.
#
# Resumable: a chunk's file is written atomically (tmp + mv) when it
# finishes and skipped when present; rerun to continue. Methods other than
# uniform that have chunks under raw-rd/<config>/<method>/ in the same JSON
# form (a "quality" or "bits" key, bytes_per_image, bits_per_element, mse,
# top1, images) are collected as well.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN=${CWBA:-$ROOT/build/cwba}
EXP=$ROOT/experiments
CONFIGS=${CONFIGS:-"resnet18:layer3 alexnet:features.5 resnet18:layer2 resnet18:layer1 vgg16:features.30"}
RD_IMAGES=${RD_IMAGES:-1000}
EVERY=${EVERY:-10}
CHUNK=${CHUNK:-100}
THREADS=${THREADS:-2}
FIT=${FIT:-cubic}
# codec | qualities (JPEG/WebP quality; HEVC QP), worst to best
CODECS=${CODECS:-"jpeg|5,10,20,35,50,70,90 webp|5,10,20,35,50,70,90 hevc|47,42,37,32,27,22,17"}
# our rate-distortion allocation (cwba evaluate --alloc rd): Lagrange
# multipliers (output MSE per bit per element), best to worst quality
RD_LAMBDAS=${RD_LAMBDAS:-"0.000001,0.00001,0.0001,0.0003,0.001,0.003,0.01,0.03"}

[ -x "$BIN" ] || { echo "build first: make build" >&2; exit 1; }
say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

nchunks=$(( (RD_IMAGES + CHUNK - 1) / CHUNK ))
# chunk by chunk over all configurations, so that an interrupted run leaves
# every configuration with the same images done
# COLLECT_ONLY=1: no evaluation, only the tables and plots from the chunks
# present (a curve with a chunk missing is left out and named on stderr)
for ((k = 0; k < nchunks; k++)); do
    [ -n "${COLLECT_ONLY:-}" ] && break
    for cfg in $CONFIGS; do
        model=${cfg%%:*}
        split=${cfg#*:}
        name="$model-$split"
        n=$CHUNK
        if (( (k + 1) * CHUNK > RD_IMAGES )); then n=$(( RD_IMAGES - k * CHUNK )); fi
        for spec in $CODECS; do
            codec=${spec%%|*}
            quals=${spec#*|}
            out="$EXP/raw-rd/$name/$codec/chunk-$(printf %03d "$k").jsonl"
            [ -s "$out" ] && continue
            [ -e "$EXP/.pause" ] && { say "paused (experiments/.pause)"; while [ -e "$EXP/.pause" ]; do sleep 5; done; }
            mkdir -p "$(dirname "$out")"
            say "$name: $codec, images $((k * CHUNK))..$((k * CHUNK + n - 1)) of $RD_IMAGES"
            "$BIN" evaluate --model "$model" --split "$split" --codec "$codec" --quality "$quals" \
                --offset $(( k * CHUNK * EVERY )) --every "$EVERY" --limit "$n" --threads "$THREADS" \
                --json >"$out.tmp"
            mv "$out.tmp" "$out"
        done
        # the lower anchor: zstd and xz of uniform's codes (evaluate --general)
        out="$EXP/raw-rd-general/$name/chunk-$(printf %03d "$k").jsonl"
        if [ ! -s "$out" ]; then
            mkdir -p "$(dirname "$out")"
            say "$name: zstd/xz of uniform's codes, images $((k * CHUNK))..$((k * CHUNK + n - 1)) of $RD_IMAGES"
            "$BIN" evaluate --model "$model" --split "$split" --quant uniform --general \
                --offset $(( k * CHUNK * EVERY )) --every "$EVERY" --limit "$n" --threads "$THREADS" \
                --json >"$out.tmp"
            mv "$out.tmp" "$out"
        fi
        out="$EXP/raw-rd/$name/rd/chunk-$(printf %03d "$k").jsonl"
        [ -s "$out" ] && continue
        [ -e "$EXP/.pause" ] && { say "paused (experiments/.pause)"; while [ -e "$EXP/.pause" ]; do sleep 5; done; }
        mkdir -p "$(dirname "$out")"
        say "$name: rd, images $((k * CHUNK))..$((k * CHUNK + n - 1)) of $RD_IMAGES"
        "$BIN" evaluate --model "$model" --split "$split" --quant uniform --alloc rd --lambda "$RD_LAMBDAS" \
            --offset $(( k * CHUNK * EVERY )) --every "$EVERY" --limit "$n" --threads "$THREADS" \
            --json >"$out.tmp"
        mv "$out.tmp" "$out"
    done
done

# Image-weighted means of the first $nchunks chunks of one method's
# directory; bits per element = bytes * 8 / (C*H*W).
collect() { # config method dir elements [reserve] [rate key]
    local cfg=$1 method=$2 dir=$3 elems=$4 reserve=${5:-} rkey=${6:-bytes_per_image} files=() k f
    for ((k = 0; k < nchunks; k++)); do
        f="$dir/chunk-$(printf %03d "$k").jsonl"
        [ -s "$f" ] || { say "$cfg $method: chunk $k missing, curve left out"; return 0; }
        files+=("$f")
    done
    cat "${files[@]}" | awk -v cfg="$cfg" -v method="$method" -v el="$elems" -v res="$reserve" -v rkey="$rkey" '
    function val(k,   m) {
        if (match($0, "\"" k "\":[^,}]*")) { m = substr($0, RSTART + length(k) + 3, RLENGTH - length(k) - 3); gsub(/"/, "", m); return m }
        return ""
    }
    res != "" && val("reserve") != res { next }
    {
        p = val("quality") != "" ? "q" val("quality") : val("lambda") != "" ? "l" val("lambda") : "b" val("bits")
        n = val("images") + 0
        if (!(p in N)) order[++np] = p
        N[p] += n
        if (val(rkey) != "") B[p] += val(rkey) * n
        else { F[p] += val("stream_bytes") * n; A[p] += val("stream_bytes_adaptive") * n }
        M[p] += val("mse") * n
        t = val("top1"); if (t == "null" || t == "") nat[p] = 1; else T[p] += t * n
    }
    END {
        for (j = 1; j <= np; j++) {
            p = order[j]
            b = (p in B) ? B[p] / N[p] : (A[p] < F[p] ? A[p] : F[p]) / N[p]
            printf "%s,%s,%s,%d,%.2f,%.6f,%.9g,%s\n", cfg, method, p, N[p], b, b * 8 / el, M[p] / N[p],
                (p in nat) ? "NA" : sprintf("%.6f", T[p] / N[p])
        }
    }'
}

mkdir -p "$EXP/results"
tmp="$EXP/results/rd-points.csv.tmp"
echo "config,method,point,images,bytes_per_image,bits_per_element,mse,top1" >"$tmp"
for cfg in $CONFIGS; do
    model=${cfg%%:*}
    split=${cfg#*:}
    name="$model-$split"
    elems=$("$BIN" layers --model "$model" | awk -v s="$split" '$1 == s { print $2 * $4 * $6 }')
    collect "$name" uniform "$EXP/raw/$name/uniform-none" "$elems" >>"$tmp"
    # the original's method: its allocation with 40 online iterations,
    # coded by our bitstream (run.sh's uniform-channel chunks, reserve 40)
    collect "$name" original "$EXP/raw/$name/uniform-channel" "$elems" 40 >>"$tmp"
    collect "$name" zstd "$EXP/raw-rd-general/$name" "$elems" "" zstd_bytes_per_image >>"$tmp"
    collect "$name" xz "$EXP/raw-rd-general/$name" "$elems" "" xz_bytes_per_image >>"$tmp"
    for mdir in "$EXP/raw-rd/$name"/*/; do
        [ -d "$mdir" ] && collect "$name" "$(basename "$mdir")" "$mdir" "$elems" >>"$tmp"
    done
done
# every curve of a configuration must come from the same images
awk -F, 'NR > 1 { if (($1 in n) && n[$1] != $4) { print "rd.sh: " $1 " " $2 " has " $4 " images, other curves " n[$1] " (CHUNK must be run.sh'"'"'s)"; bad = 1; exit } n[$1] = $4 }
    END { exit bad }' "$tmp" >&2 || { rm -f "$tmp"; exit 1; }
mv "$tmp" "$EXP/results/rd-points.csv"
say "wrote experiments/results/rd-points.csv ($(($(wc -l <"$EXP/results/rd-points.csv") - 1)) points)"
"$BIN" bdrate --points "$EXP/results/rd-points.csv" --anchor original,uniform,jpeg,webp,hevc --fit "$FIT" \
    --out "$EXP/results/bdrate.csv"
say "wrote experiments/results/bdrate.csv"
# the MSE BD-rates as a markdown table (pasted into experiments/README.md)
awk -F, 'NR > 1 && $4 == "mse" {
        if (!($1 in cs)) { cs[$1] = 1; cfg[++nc] = $1 }
        if (!($2 in ms)) { ms[$2] = 1; meth[++nm] = $2 }
        v[$1, $2, $3] = $5
    }
    function cell(c, m, a) { return ((c, m, a) in v) ? (v[c, m, a] == "NA" ? "NA" : sprintf("%+.1f %%", v[c, m, a])) : "—" }
    END {
        print "| configuration | method | vs original | vs uniform | vs jpeg | vs webp | vs hevc |"
        print "|---|---|---:|---:|---:|---:|---:|"
        for (i = 1; i <= nc; i++)
            for (j = 1; j <= nm; j++)
                if ((cfg[i], meth[j], "original") in v || (cfg[i], meth[j], "jpeg") in v || (cfg[i], meth[j], "webp") in v || (cfg[i], meth[j], "hevc") in v)
                    printf "| %s | %s | %s | %s | %s | %s | %s |\n", cfg[i], meth[j], cell(cfg[i], meth[j], "original"), cell(cfg[i], meth[j], "uniform"), cell(cfg[i], meth[j], "jpeg"),
                        cell(cfg[i], meth[j], "webp"), cell(cfg[i], meth[j], "hevc")
    }' "$EXP/results/bdrate.csv" >"$EXP/results/bdrate.md.tmp"
mv "$EXP/results/bdrate.md.tmp" "$EXP/results/bdrate.md"

# Rate-MSE and rate-top-1 plots per configuration (gnuplot from Debian).
command -v gnuplot >/dev/null || { say "no gnuplot: plots skipped"; exit 0; }
mkdir -p "$EXP/plots"
pts="$EXP/results/rd-points.csv"
colors=('#1b9e77' '#d95f02' '#7570b3' '#e7298a' '#66a61e' '#e6ab02' '#a6761d' '#666666')
for cfg in $(tail -n +2 "$pts" | cut -d, -f1 | awk '!seen[$0]++'); do
    mapfile -t methods < <(awk -F, -v c="$cfg" 'NR > 1 && $1 == c && !seen[$2]++ { print $2 }' "$pts")
    images=$(awk -F, -v c="$cfg" 'NR > 1 && $1 == c { print $4; exit }' "$pts")
    p1="" p2="" i=0
    for m in "${methods[@]}"; do
        src="< awk -F, -v c='$cfg' -v m='$m' 'NR>1 && \$1==c && \$2==m' $pts | sort -t, -k5,5g"
        lc="lc rgb '${colors[i % ${#colors[@]}]}'"
        p1+="\"$src\" using 5:7 with linespoints $lc title '$m', "
        p2+="\"$src\" using 5:8 with linespoints $lc title '$m', "
        i=$((i + 1))
    done
    gnuplot <<GP
set terminal pngcairo size 900,600 noenhanced
set datafile separator ","
set key outside right
set grid
set logscale x
set xlabel "bytes per image (whole stream, side information included)"
set output "$EXP/plots/$cfg-rd-mse.png"
set title "$cfg: output MSE vs rate ($images Fashion-MNIST test images)"
set ylabel "output MSE (logits)"
set logscale y
set format y "%g"
plot ${p1%, }
set output "$EXP/plots/$cfg-rd-top1.png"
set title "$cfg: top-1 vs rate ($images Fashion-MNIST test images)"
set ylabel "top-1 accuracy"
unset logscale y
set format y "%.2f"
plot ${p2%, }
GP
done
say "plots in experiments/plots/*-rd-*.png"
