#!/bin/bash
# Markdown tables from experiments/results/<config>.csv into
# experiments/results/<config>.md: the original's table (output MSE against
# bits, runtime), accuracy, rate, and the MSE ratio uniform / ours beside the
# original's own ratio (experiments/original-results/).
set -euo pipefail
cd "$(dirname "$0")"
orig_for() {
    case "$1" in
    resnet18-layer1) echo original-results/ResNet18_layer1.csv ;;
    resnet18-layer2) echo original-results/ResNet18_layer2.csv ;;
    resnet18-layer3) echo original-results/ResNet18_layer3.csv ;;
    alexnet-features.5) echo original-results/AlexNet.csv ;;
    vgg16-features.30) echo original-results/VGG16_13th.csv ;;
    esac
}
for csv in results/*.csv; do
    cfg=$(basename "$csv" .csv)
    case "$cfg" in all | rd-points | bdrate) continue ;; esac # not per-configuration tables
    orig=$(orig_for "$cfg")
    # Every configuration runs at 64x64 input pixels (run.sh's models).
    awk -F, -v cfg="$cfg" -v orig="$orig" -v pixels=4096 '
    BEGIN {
        # The original tables name their bit depths in the second line
        # (",2,3,4,5,6,7," -- VGG16s only 2..5); the last column is runtime.
        if (orig != "") while ((getline line < orig) > 0) {
            n = split(line, f, ",")
            if (f[1] == "" && nbits == 0) { for (i = 2; i <= n; i++) if (f[i] ~ /^[0-9]+$/) { bitcol[f[i]] = i; nbits++ } ; continue }
            if (f[1] == "Uniform w/o BitAlloc") for (b in bitcol) ou[b] = f[bitcol[b]]
            if (f[1] ~ /^Ours\(/) { r = f[1]; gsub(/[^0-9]/, "", r); for (b in bitcol) oo[r, b] = f[bitcol[b]] }
        }
    }
    NR == 1 { next }
    {
        m = $2; if (!(m in seen)) { seen[m] = 1; order[++nm] = m }
        b = $6; mse[m, b] = $8; top[m, b] = $10; agr[m, b] = $12; cb[m, b] = $13; sf[m, b] = $14; sa[m, b] = $15
        pas[m] += $16; sec[m] += $17; cnt[m]++; bf[m, b] = $18; ba[m, b] = $19; imgs[m] = $7; ft = $11; res[m] = $5
    }
    function row(m, arr,   s, b) { s = "| " m " (" imgs[m] ")"; for (b = 2; b <= 7; b++) s = s sprintf(" | %.4g", arr[m, b]); return s }
    END {
        # methods in the original order
        for (i = 1; i <= nm; i++) { m = order[i]; k = (m ~ /^uniform w/) ? 1 : (m ~ /^log w/) ? 2 : (m ~ /^DoReFa/) ? 3 : (m ~ /standalone/) ? 6 : (m ~ / log$/) ? 5 : 4; key[i] = k * 1000 + res[m] }
        for (i = 1; i <= nm; i++) for (j = i + 1; j <= nm; j++) if (key[j] < key[i]) { t = key[i]; key[i] = key[j]; key[j] = t; t = order[i]; order[i] = order[j]; order[j] = t }
        printf "### %s\n\nFashion-MNIST test images, every 10th (the count is in brackets after each method); float model top-1 on the baseline rows images: %s.\n\n", cfg, ft
        print "Output MSE (the original'"'"'s metric), seconds and back-end passes per image:\n"
        print "| method (images) | 2 | 3 | 4 | 5 | 6 | 7 | s/image | passes/image |"
        print "|---|---|---|---|---|---|---|---|---|"
        for (i = 1; i <= nm; i++) { m = order[i]; printf "%s | %.3g | %.1f |\n", row(m, mse), sec[m] / cnt[m], pas[m] / cnt[m] }
        print "\nTop-1 accuracy (agreement with the float model):\n"
        print "| method | 2 | 3 | 4 | 5 | 6 | 7 |"
        print "|---|---|---|---|---|---|---|"
        for (i = 1; i <= nm; i++) { m = order[i]; s = "| " m; for (b = 2; b <= 7; b++) s = s sprintf(" | %.4f (%.3f)", top[m, b], agr[m, b]); print s " |" }
        print "\nRate, bits per element: exact code cost / real bitstream (fixed payload) / real bitstream (adaptive payload), side information included:\n"
        print "| method | 2 | 3 | 4 | 5 | 6 | 7 |"
        print "|---|---|---|---|---|---|---|"
        for (i = 1; i <= nm; i++) { m = order[i]; if (m ~ /standalone/) continue; s = "| " m; for (b = 2; b <= 7; b++) s = s sprintf(" | %.2f / %.2f / %.2f", cb[m, b], sf[m, b], sa[m, b]); print s " |" }
        print "\nRate in the field'"'"'s units, the whole stream: bytes per image and bits per input pixel (64×64), fixed / adaptive payload:\n"
        print "| method | 2 | 3 | 4 | 5 | 6 | 7 |"
        print "|---|---|---|---|---|---|---|"
        for (i = 1; i <= nm; i++) { m = order[i]; if (m ~ /standalone/) continue; s = "| " m; for (b = 2; b <= 7; b++) s = s sprintf(" | %.0f / %.0f B, %.3f / %.3f bpp", bf[m, b], ba[m, b], bf[m, b] * 8 / pixels, ba[m, b] * 8 / pixels); print s " |" }
        if (orig != "") {
            print "\nMSE ratio uniform w/o allocation ÷ ours (> 1: channel-wise allocation helps) — ours on Fashion-MNIST, [the original on ImageNet]:\n"
            print "| reserve | 2 | 3 | 4 | 5 | 6 | 7 |"
            print "|---|---|---|---|---|---|---|"
            for (i = 1; i <= nm; i++) { m = order[i]; if (m !~ /^Ours.*uniform$/) continue; r = res[m]; s = "| " r
                for (b = 2; b <= 7; b++) s = s sprintf(" | %.2f [%s]", mse["uniform w/o BitAlloc", b] / mse[m, b], ((r, b) in oo) ? sprintf("%.2f", ou[b] / oo[r, b]) : "-")
                print s " |" }
        }
        print ""
    }' "$csv" >"results/$cfg.md.tmp"
    mv "results/$cfg.md.tmp" "results/$cfg.md"
done

# Paste the tables into README.md between its results markers, in the
# order of run.sh's configurations, each followed by its plots.
if grep -q '^<!-- results:begin' README.md; then
    {
        sed '/^<!-- results:begin/q' README.md
        for cfg in resnet18-layer3 alexnet-features.5 resnet18-layer2 resnet18-layer1 vgg16-features.30; do
            [ -s "results/$cfg.md" ] || continue
            echo
            cat "results/$cfg.md"
            echo "Plots: [\`plots/$cfg-mse.png\`](plots/$cfg-mse.png) (output MSE against bits, log scale),"
            echo "[\`plots/$cfg-top1.png\`](plots/$cfg-top1.png) (top-1 against exact code bits per element)."
            echo
        done
        sed -n '/^<!-- results:end/,$p' README.md
    } >README.md.tmp
    mv README.md.tmp README.md
fi
