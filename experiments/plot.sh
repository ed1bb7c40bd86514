#!/bin/bash
# PNG plots from experiments/results/<config>.csv (gnuplot from Debian):
#   plots/<config>-mse.png   output MSE against nominal bits (log scale)
#   plots/<config>-top1.png  top-1 accuracy against exact code bits per element
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p plots
for csv in results/*.csv; do
    cfg=$(basename "$csv" .csv)
    case "$cfg" in all | rd-points | bdrate) continue ;; esac # not per-configuration tables
    # standalone rows are a 100-image timing sample: not plotted
    mapfile -t methods < <(tail -n +2 "$csv" | cut -d, -f2 | grep -v standalone | sort -u)
    floattop=$(tail -n +2 "$csv" | cut -d, -f11 | grep -v '^$' | head -1)
    # one distinct colour per method (gnuplot's default cycle repeats purple)
    colors=('#1b9e77' '#d95f02' '#7570b3' '#e7298a' '#66a61e' '#e6ab02' '#a6761d' '#666666' '#1f78b4' '#b2182b')
    p1="" p2="" i=0
    for m in "${methods[@]}"; do
        src="< awk -F, -v m='$m' 'NR>1 && \$2==m' $csv"
        lc="lc rgb '${colors[i % ${#colors[@]}]}'"
        p1+="\"$src\" using 6:8 with linespoints $lc title '$m', "
        p2+="\"$src\" using 13:10 with linespoints $lc title '$m', "
        i=$((i + 1))
    done
    gnuplot <<GP
set terminal pngcairo size 900,600 noenhanced
set datafile separator ","
set key outside right
set grid
set output "plots/$cfg-mse.png"
set title "$cfg: output MSE vs bits (Fashion-MNIST test, $(tail -n +2 "$csv" | head -1 | cut -d, -f7) images)"
set xlabel "nominal bits per element"
set ylabel "output MSE (logits)"
set logscale y
plot ${p1%, }
set output "plots/$cfg-top1.png"
set title "$cfg: top-1 vs exact code bits per element (float model: ${floattop:-n/a})"
set xlabel "exact code bits per element"
set ylabel "top-1 accuracy"
unset logscale y
$( [ -n "$floattop" ] && echo "set arrow from graph 0, first $floattop to graph 1, first $floattop nohead dt 2" )
plot ${p2%, }
GP
done
echo "plots in experiments/plots/" >&2
