#!/bin/bash
# Merges the per-chunk JSON Lines of experiments/raw/<config>/<method>/ into
# experiments/results/<config>.csv and results/all.csv: image-weighted means
# per (method, bits). Pure awk: the JSON is the flat one-object-per-line that
# `cwba evaluate --json` prints.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p results
header="config,method,quant,alloc,reserve,bits,images,mse,feature_mse,top1,float_top1,agree,bits_per_element,stream_bits_per_element,stream_bits_per_element_adaptive,passes_per_image,seconds_per_image,stream_bytes,stream_bytes_adaptive"
echo "$header" >results/all.csv.tmp
for dir in raw/*/; do
    [ -d "$dir" ] || continue
    cfg=$(basename "$dir")
    for mdir in "$dir"*/; do
    mid=$(basename "$mdir")
    find "$mdir" -name 'chunk-*.jsonl' -print0 | sort -z | xargs -0 -r cat | awk -v cfg="$cfg" -v mid="$mid" '
    function val(k,   m) {
        if (match($0, "\"" k "\":[^,}]*")) { m = substr($0, RSTART + length(k) + 3, RLENGTH - length(k) - 3); gsub(/"/, "", m); return m }
        return ""
    }
    {
        q = val("quant"); a = val("alloc"); r = val("reserve"); b = val("bits"); n = val("images") + 0
        key = q SUBSEP a SUBSEP r SUBSEP b
        if (!(key in N)) { order[++nk] = key }
        N[key] += n
        split("mse feature_mse top1 float_top1 agree bits_per_element stream_bits_per_element stream_bits_per_element_adaptive passes_per_image seconds_per_image stream_bytes stream_bytes_adaptive", F, " ")
        for (i = 1; i <= 12; i++) { v = val(F[i]); if (v == "null") nullf[key, i] = 1; S[key, i] += (v + 0) * n }
    }
    END {
        for (j = 1; j <= nk; j++) {
            key = order[j]; split(key, K, SUBSEP)
            method = (K[1] == "dorefa") ? "DoReFa quantization" : (K[2] == "none" ? K[1] " w/o BitAlloc" : "Ours(" K[3] " iter) " K[1])
            if (mid ~ /standalone$/) method = method " standalone"
            line = cfg "," method "," K[1] "," K[2] "," K[3] "," K[4] "," N[key]
            for (i = 1; i <= 12; i++) line = line "," (((key, i) in nullf) ? "" : sprintf("%.8g", S[key, i] / N[key]))
            print line
        }
    }'
    done | sort -t, -k2,2 -k6,6n >"results/$cfg.body"
    { echo "$header"; cat "results/$cfg.body"; } >"results/$cfg.csv.tmp"
    mv "results/$cfg.csv.tmp" "results/$cfg.csv"
    cat "results/$cfg.body" >>results/all.csv.tmp
    rm -f "results/$cfg.body"
done
mv results/all.csv.tmp results/all.csv
echo "wrote $(ls results/*.csv | wc -l) files in experiments/results/" >&2
