#!/bin/bash
# bench/serve.sh — cwba serve under load, loopback only (wrk from Debian):
#   1. requests/s and p50/p99 latency at 1, 4, 16, 64 connections for
#      ResNet18 split after layer3: the reference model (64 px, 10 classes)
#      and 224 px with 1000 classes (synthetic weights, --weights synthetic:1);
#   2. dynamic batching against --max-batch 1 at 16 connections (64 px),
#      alternating rounds, the median of the per-round ratios;
#   3. resident memory of the server at start, after a warm-up and after
#      REQUESTS more answered requests (64 px, 16 connections).
# Beside requests/s, the server's CPU time per request (user + system, from
# /proc): on a shared machine wall-clock throughput follows the other load,
# the work per request much less.
# Prints markdown tables (docs/performance.md, "cwba serve").
#
#   bench/serve.sh              env: BUILD (default build/), DURATION (s per
#                               point, default 10), ROUNDS (default 3),
#                               REQUESTS (default 100000), MAX_SECONDS (bound
#                               on part 3, default 1800), THREADS (default 2),
#                               PARTS (default "1 2 3")
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${BUILD:-$root/build}
bin=$build/cwba
dur=${DURATION:-10}
rounds=${ROUNDS:-3}
requests=${REQUESTS:-100000}
max_seconds=${MAX_SECONDS:-1800}
threads=${THREADS:-2}
parts=${PARTS:-1 2 3}
command -v wrk >/dev/null || { echo "bench/serve.sh: needs wrk (Debian package wrk)" >&2; exit 1; }
[ -x "$bin" ] || { echo "bench/serve.sh: no $bin (make build)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/cwba-serve-bench-XXXXXX)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

"$bin" encode --model resnet18 --split layer3 --quant uniform --bits 4 --limit 1 \
    --out "$tmp/s64" >/dev/null
"$bin" encode --model resnet18 --weights synthetic:1 --input-size 224 --split layer3 \
    --quant uniform --bits 4 --limit 1 --out "$tmp/s224" >/dev/null

cat >"$tmp/post.lua" <<'EOF'
local f = assert(io.open(os.getenv("CWBA_STREAM"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/octet-stream"
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %.1f %.2f %.2f %d\n", summary.requests,
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, e.connect + e.read + e.write + e.status + e.timeout))
end
EOF

# start_server ARGS...: sets pid, port
start_server() {
    rm -f "$tmp/port"
    "$bin" serve --split layer3 --listen 127.0.0.1:0 --port-file "$tmp/port" --quiet \
        --threads "$threads" --queue 1024 "$@" 2>"$tmp/serve.log" &
    pid=$!
    for _ in $(seq 600); do [ -s "$tmp/port" ] && break; sleep 0.1; done
    [ -s "$tmp/port" ] || { cat "$tmp/serve.log" >&2; exit 1; }
    port=$(cat "$tmp/port")
}
stop_server() { kill "$pid"; wait "$pid" || { echo "server exit $?" >&2; exit 1; }; pid=; }
metric() { curl -s "http://127.0.0.1:$port/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }
# batch count and streams batched, from one scrape
batches() {
    curl -s "http://127.0.0.1:$port/metrics" |
        awk '$1 == "cwba_batch_size_count" { c = $2 } $1 == "cwba_batch_size_sum" { s = $2 } END { print c, s }'
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status"; }

# point STREAM CONNECTIONS SECONDS: "req/s p50 p99 errors mean_batch cpu_ms_per_request"
point() {
    local b0 s0 out c0 c1
    read -r b0 s0 < <(batches)
    c0=$(cpu_ticks)
    out=$(CWBA_STREAM=$1 wrk -t $(( $2 < 2 ? 1 : 2 )) -c "$2" -d "${3}s" --timeout 10s \
        -s "$tmp/post.lua" "http://127.0.0.1:$port/v1/decode" | awk '$1 == "RESULT"')
    local b1 s1
    c1=$(cpu_ticks)
    read -r b1 s1 < <(batches)
    echo "$out" | awk -v b="$((b1 - b0))" -v s="$((s1 - s0))" -v c="$((c1 - c0))" \
        -v hz="$(getconf CLK_TCK)" \
        '{ printf "%s %s %s %s %.1f %.2f\n", $3, $4, $5, $6, b ? s / b : 0, $2 ? c * 1000 / hz / $2 : 0 }'
}

echo "## cwba serve, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, --threads $threads, ${dur} s per point"
echo "(load average before: $(cut -d' ' -f1-3 /proc/loadavg))"
if [[ " $parts " == *" 1 "* ]]; then
echo
echo "| model | connections | requests/s | p50 ms | p99 ms | errors | mean batch | server CPU ms/request |"
echo "|---|---|---|---|---|---|---|---|"
for m in 64 224; do
    if [ $m = 64 ]; then start_server --model resnet18; else
        start_server --model resnet18 --weights synthetic:1 --input-size 224; fi
    point "$tmp/s$m/000000.cwb" 4 2 >/dev/null # warm-up: workspaces grow once
    for c in 1 4 16 64; do
        read -r rps p50 p99 err mb cpu < <(point "$tmp/s$m/000000.cwb" $c "$dur")
        echo "| ResNet18 layer3, $m px | $c | $rps | $p50 | $p99 | $err | $mb | $cpu |"
    done
    stop_server
done
fi

median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
if [[ " $parts " == *" 2 "* ]]; then
echo
echo "Dynamic batching (default --max-batch 32) against --max-batch 1, 64 px, 16 connections:"
echo
echo "| round | batched req/s | batch 1 req/s | ratio | batched CPU ms/req | batch 1 CPU ms/req | CPU ratio |"
echo "|---|---|---|---|---|---|---|"
ratios=
cratios=
for r in $(seq "$rounds"); do
    start_server --model resnet18
    point "$tmp/s64/000000.cwb" 4 2 >/dev/null
    read -r rb _ _ _ _ cb < <(point "$tmp/s64/000000.cwb" 16 "$dur")
    stop_server
    start_server --model resnet18 --max-batch 1
    point "$tmp/s64/000000.cwb" 4 2 >/dev/null
    read -r r1 _ _ _ _ c1 < <(point "$tmp/s64/000000.cwb" 16 "$dur")
    stop_server
    ratio=$(awk -v a="$rb" -v b="$r1" 'BEGIN { printf "%.2f", a / b }')
    cratio=$(awk -v a="$cb" -v b="$c1" 'BEGIN { printf "%.2f", (a > 0 ? b / a : 0) }')
    ratios="$ratios $ratio"
    cratios="$cratios $cratio"
    echo "| $r | $rb | $r1 | ${ratio}x | $cb | $c1 | ${cratio}x |"
done
echo
echo "median ratio of requests/s $(echo $ratios | median)x (target >= 3x);" \
    "median ratio of CPU per request $(echo $cratios | median)x"
fi

[[ " $parts " == *" 3 "* ]] || exit 0
echo
start_server --model resnet18
rss0=$(rss_kb)
point "$tmp/s64/000000.cwb" 16 3 >/dev/null
rss1=$(rss_kb)
ok0=$(metric 'cwba_requests_total{code="200"}')
t0=$(date +%s)
while :; do
    ok=$(metric 'cwba_requests_total{code="200"}')
    [ $((ok - ok0)) -ge "$requests" ] && break
    [ $(( $(date +%s) - t0 )) -ge "$max_seconds" ] && { echo "(stopped after ${max_seconds} s)"; break; }
    point "$tmp/s64/000000.cwb" 16 10 >/dev/null
done
rss2=$(rss_kb)
stop_server
echo "Resident memory (64 px, 16 connections): at start ${rss0} kB, after warm-up ${rss1} kB," \
    "after $((ok - ok0)) more requests ${rss2} kB:" \
    "$(awk -v a="$rss1" -v b="$rss2" 'BEGIN { printf "%+.1f%%", (b - a) * 100 / a }') since the warm-up" \
    "(target <= +10%)"
