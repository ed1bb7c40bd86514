#!/usr/bin/python3
"""Driver of bench/run.sh: cwba next to PyTorch and ONNX Runtime, one run.

The machine is shared and noisy, so every comparison is a ratio of medians
measured in this same run, with the contenders interleaved: the three
contender processes (bench/cwba_bench, tools/bench_torch.py,
bench/ort_bench.js) load their models once and then wait on stdin; for each
round and each case the driver asks each contender in turn (the order rotates
from round to round) for a few timed repetitions, with a short pause between
contenders so that one's idle threads never overlap the next one's run.

Sections (all by default, or --only a,b,...):
  machine   lscpu facts, the nominal peak and a measured FMA peak
  forward   whole-network forward passes (224 batch 1, 64 batch 64)
  probe     the ResNet18 back end after layer3 at batch 1, 16, 64
  memory    peak resident memory of one pass, a fresh process per case
  quant     quantize+dequantize and bitstream throughput
  eval      evaluation with online iterations (reserve 40), cwba vs the
            original's method (tools/original_method.py)
  calib     calibration passes and time per image, cwba vs the original

Prints the tables (Markdown) on stdout and writes every raw figure to
WORK/results.json.
"""

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PY = "/usr/bin/python3"
WINO = "cwba-winograd"  # cwba with --conv winograd (CWBA_BENCH_CONV)
SECTIONS = ("machine", "forward", "probe", "memory", "quant", "eval", "calib")

# (arch, size, batch, reps per round)
FORWARD = [("alexnet", 224, 1, 5), ("vgg16", 224, 1, 2), ("resnet18", 224, 1, 4),
           ("resnet50", 224, 1, 2),
           ("alexnet", 64, 64, 2), ("vgg16", 64, 64, 1), ("resnet18", 64, 64, 2)]
# (size, batch, reps per round)
PROBE = [(64, 1, 40), (64, 16, 8), (64, 64, 3), (224, 1, 6), (224, 16, 2), (224, 64, 1)]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run_json(cmd, env=None, timeout=None):
    """Runs a command whose last stdout line is a JSON object."""
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd), r.returncode,
                                                   r.stderr.strip()[-500:]))
    return json.loads(r.stdout.strip().splitlines()[-1])


class Server:
    """A contender process speaking the line protocol."""

    def __init__(self, name, cmd, env):
        self.name = name
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, env=env, bufsize=1)
        self.hello = self._read()

    def _read(self):
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError("%s contender exited (code %s)" % (self.name, self.p.poll()))
        return json.loads(line)

    def ask(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        return self._read()

    def close(self):
        try:
            self.p.stdin.write("quit\n")
            self.p.stdin.flush()
            self.p.wait(timeout=60)
        except Exception:
            self.p.kill()


def med(v):
    return statistics.median(v) if v else None


def fmt(v, unit="", digits=3):
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    if abs(v) >= 10 ** digits:
        return "%.0f%s" % (v, unit)
    return ("%." + str(digits) + "g%s") % (v, unit)


def ratio(a, b):
    return a / b if a is not None and b is not None and b > 0 else None


# ------------------------------------------------------------------ machine

def lscpu():
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    info = {}
    for line in out.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            info[k.strip()] = v.strip()
    return info


def machine(cwba_bin, threads):
    info = lscpu()
    flags = set(info.get("Flags", "").split())
    mhz = None
    with open("/proc/cpuinfo") as f:
        m = re.search(r"^cpu MHz\s*:\s*([\d.]+)", f.read(), re.M)
        if m:
            mhz = float(m.group(1))
    lanes = 16 if "avx512f" in flags else (8 if "avx2" in flags else 4)
    # Two FMA pipes per core (true of every x86 core with AVX2/AVX-512 FMA since
    # Haswell / Zen 2; Zen 5 and server Intel cores run them at 512 bits).
    fma_pipes = 2 if "fma" in flags else 1
    per_cycle = fma_pipes * lanes * 2
    meas = run_json([cwba_bin, "peak"], env=env_for(threads))
    # /proc/cpuinfo's "cpu MHz" is the base (TSC) frequency under a hypervisor;
    # the cores may boost above it. The measured clock can only read low (when
    # another process takes the core), so the peak uses the larger of the two.
    clock_mhz = max(mhz or 0, meas["clock_hz"] / 1e6)
    peak = threads * clock_mhz * 1e6 * per_cycle
    return {
        "model_name": info.get("Model name"), "cpus": info.get("CPU(s)"),
        "cores_per_socket": info.get("Core(s) per socket"),
        "threads_per_core": info.get("Thread(s) per core"), "cpu_family": info.get("CPU family"),
        "flags": sorted(f for f in flags if f in ("avx2", "fma", "avx512f", "avx512_bf16",
                                                   "avx512_vnni", "avx_vnni", "f16c")),
        "cpu_mhz": mhz, "peak_clock_mhz": clock_mhz, "flops_per_cycle_per_core": per_cycle,
        "threads": threads,
        "nominal_peak_gflops": peak / 1e9, "measured_clock_ghz": meas["clock_hz"] / 1e9,
        "measured_fma_gflops": meas["fma_gflops_measured"],
        "kernel": platform.release(), "date": datetime.date.today().isoformat(),
    }


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def env_for(threads, torch_wait=None):
    env = dict(os.environ)
    env["CWBA_BENCH_THREADS"] = str(threads)
    env["OMP_NUM_THREADS"] = str(threads)
    env["OPENBLAS_NUM_THREADS"] = str(threads)
    if torch_wait:
        env["OMP_WAIT_POLICY"] = torch_wait
    return env


# ------------------------------------------------------------------ timing

def interleaved(servers, cases, rounds, pause):
    """cases: list of (key, command, reps). Returns {key: {contender: [times]}},
    the errors, and {key: {contender: [median of each round's repetitions]}}."""
    res = {key: {s.name: [] for s in servers} for key, _, _ in cases}
    per_round = {key: {s.name: [] for s in servers} for key, _, _ in cases}
    errors = {}
    for r in range(rounds):
        for i, (key, command, reps) in enumerate(cases):
            k = (r + i) % len(servers)
            for s in servers[k:] + servers[:k]:
                if (key, s.name) in errors:
                    continue
                # One untimed repetition first: after the pause the host
                # hands the cores back slowly (first passes of a round ran
                # 1.5-9x slower, cwba and ONNX Runtime alike), and the
                # figures are meant to be steady-state ones.
                s.ask("%s 1" % command)
                ans = s.ask("%s %d" % (command, reps))
                if ans.get("ok"):
                    res[key][s.name].extend(ans["t"])
                    per_round[key][s.name].append(med(ans["t"]))
                else:
                    errors[(key, s.name)] = ans.get("error", "failed")
                time.sleep(pause)
        log("  round %d/%d done" % (r + 1, rounds))
    return res, {"%s|%s" % k: v for k, v in errors.items()}, per_round


def paired(per_round, n, base):
    """Median over rounds of the ratio n / base within each round: the two
    ran a second apart, so a slow stretch of the host that spans a round
    cancels, and bursts that hit one contender in a few rounds do not move
    the median."""
    a, b = per_round.get(n, []), per_round.get(base, [])
    if not a or len(a) != len(b):
        return None
    return med([x / y for x, y in zip(a, b) if y])


def timing_table(title, rows, names, flops, peak, per_sample_div, errors, note_fn, per_round):
    """rows: [(key, label, batch)], flops: per-sample flops by key; names[0] is
    the cwba contender every ratio is taken against."""
    out = []
    base = names[0]
    hdr = "| case | " + " | ".join("%s ms" % n for n in names) + " | " + \
        " | ".join("%s / %s" % (n, base) for n in names[1:]) + " | " + \
        " | ".join("paired: %s / %s" % (n, base) for n in names[1:]) + " | " + \
        " | ".join("min: %s / %s" % (n, base) for n in names[1:]) + \
        " | %s GFLOP/s | %s %% of peak |" % (base, base)
    out.append("### " + title)
    out.append("")
    out.append(hdr)
    out.append("|" + "---|" * (hdr.count("|") - 1))
    summary = {}
    for key, label, batch, res in rows:
        m = {n: med(res.get(n, [])) for n in names}
        cells = []
        for n in names:
            if m[n] is None:
                e = errors.get("%s|%s" % (key, n))
                cells.append(note_fn(key, n, e))
            else:
                cells.append(fmt(1e3 * m[n] / per_sample_div(batch)))
        mn = {n: min(res[n]) if res.get(n) else None for n in names}
        pr = per_round.get(key, {})
        ratios = [fmt(ratio(m[n], m[base]), "x") for n in names[1:]] + \
            [fmt(paired(pr, n, base), "x") for n in names[1:]] + \
            [fmt(ratio(mn[n], mn[base]), "x") for n in names[1:]]
        gf = flops.get(key)
        gfs = gf * batch / m[base] / 1e9 if gf and m[base] else None
        out.append("| %s | %s | %s | %s | %s |" % (
            label, " | ".join(cells), " | ".join(ratios), fmt(gfs),
            fmt(100 * gfs / peak if gfs and peak else None, "%", 2)))
        summary[key] = {"median_s": m, "samples": {n: len(res.get(n, [])) for n in names},
                        "min_s": mn,
                        "gflops_cwba": gfs, "batch": batch,
                        "ratio_vs_cwba": {n: ratio(m[n], m[base]) for n in names[1:]},
                        "paired_ratio_vs_cwba": {n: paired(pr, n, base) for n in names[1:]}}
    out.append("")
    return out, summary


def target_line(who, summ, rows, others):
    """The forward target: cwba at least as fast as the faster of PyTorch and
    ONNX Runtime on every case (summ's base contender is `who`)."""
    verdicts = []
    for key, label, _, _ in rows:
        md = summ[key]["median_s"]
        base = next(iter(md))
        o = [md[n] for n in others if md.get(n)]
        po = [summ[key]["paired_ratio_vs_cwba"][n] for n in others
              if summ[key]["paired_ratio_vs_cwba"].get(n)]
        if md.get(base) and o:
            verdicts.append((label, min(o) / md[base], min(po) if po else None))
    met = [v for v in verdicts if v[1] >= 1.0]
    pmet = [v for v in verdicts if v[2] is not None and v[2] >= 1.0]
    return ("Target (%s): at least as fast as the faster of PyTorch and ONNX Runtime on every "
            "case: on the medians of all repetitions %s (%d of %d), on the paired per-round "
            "ratios %s (%d of %d); faster-of-two / %s, medians (paired): %s." % (
                who, "met" if len(met) == len(verdicts) else "NOT met", len(met), len(verdicts),
                "met" if len(pmet) == len(verdicts) else "NOT met", len(pmet), len(verdicts),
                who, ", ".join("%s %.2fx (%s)" % (l, r, "%.2fx" % p if p else "n/a")
                               for l, r, p in verdicts)))


# ------------------------------------------------------------------ main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--work", default="/tmp/cwba-bench")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--pause", type=float, default=0.15, help="seconds between contenders")
    ap.add_argument("--only", default=",".join(SECTIONS))
    ap.add_argument("--torch-wait", default="PASSIVE",
                    help="OMP_WAIT_POLICY for PyTorch (PASSIVE: see docs/performance.md)")
    ap.add_argument("--eval-images", type=int, default=3)
    ap.add_argument("--archs", help="forward and memory cases of these architectures only "
                    "(comma-separated, e.g. resnet50)")
    a = ap.parse_args()
    if a.archs:
        global FORWARD
        FORWARD = [f for f in FORWARD if f[0] in a.archs.split(",")]
    only = set(a.only.split(","))
    cwba_bin = os.path.join(a.build, "bench", "cwba_bench")
    onnx_dir = os.path.join(a.work, "onnx")
    env = env_for(a.threads)
    tenv = env_for(a.threads, a.torch_wait)
    results = {"threads": a.threads, "torch_omp_wait_policy": a.torch_wait,
               "loadavg_start": loadavg()}
    lines = []
    t_start = time.time()

    if not os.path.exists(os.path.join(a.work, "probe_224_b64.f32")):
        log("preparing inputs in %s" % a.work)
        run_json([PY, os.path.join(ROOT, "tools", "bench_torch.py"), "prepare", a.work], env=tenv)
    flops = run_json([PY, os.path.join(ROOT, "tools", "bench_torch.py"), "flops"], env=tenv)

    mach = machine(cwba_bin, a.threads)
    results["machine"] = mach
    peak = mach["nominal_peak_gflops"]
    lines += [
        "## Machine", "",
        "- CPU: %s (family %s), %s CPUs, %s threads per core; flags: %s" % (
            mach["model_name"], mach["cpu_family"], mach["cpus"], mach["threads_per_core"],
            " ".join(mach["flags"])),
        "- Threads used by every contender: %d; date %s; kernel %s" % (
            a.threads, mach["date"], mach["kernel"]),
        "- Clock: %.0f MHz base (/proc/cpuinfo), %.2f GHz measured in this run (a chain of "
        "dependent adds, 1 per cycle); the peak uses the larger, %.0f MHz" % (
            mach["cpu_mhz"] or 0, mach["measured_clock_ghz"], mach["peak_clock_mhz"]),
        "- Peak (float32, %d threads): %d cores x %.0f MHz x %d FLOP/cycle "
        "(2 FMA pipes x %d lanes x 2, from the avx512f/fma flags) = **%.0f GFLOP/s**; "
        "an FMA-only loop on %d threads reached %.0f GFLOP/s (%.0f%%) in this run" % (
            a.threads, a.threads, mach["peak_clock_mhz"], mach["flops_per_cycle_per_core"],
            mach["flops_per_cycle_per_core"] // 4, peak, a.threads, mach["measured_fma_gflops"],
            100 * mach["measured_fma_gflops"] / peak if peak else 0),
        ""]
    print("\n".join(lines), flush=True)

    def note(key, name, err):
        if name == "ort" and err and "missing" in err:
            return "export failed"
        return "error" if err else "n/a"

    if "forward" in only or "probe" in only:
        with open(os.path.join(onnx_dir, "export.json")) if os.path.exists(
                os.path.join(onnx_dir, "export.json")) else open(os.devnull) as f:
            txt = f.read()
        results["onnx_export"] = json.loads(txt) if txt else {}
        if not all(v == "ok" or v.startswith("failed") for v in results["onnx_export"].values()) \
                or len(results["onnx_export"]) < 9:
            log("exporting ONNX models to %s (once; VGG16 takes minutes)" % onnx_dir)
            subprocess.run([PY, os.path.join(ROOT, "tools", "export_onnx.py"), onnx_dir] +
                           ([a.archs] if a.archs else []), env=tenv, check=True)
            with open(os.path.join(onnx_dir, "export.json")) as f:
                results["onnx_export"] = json.load(f)
        log("starting contenders")
        wenv = dict(env, CWBA_BENCH_CONV="winograd")
        servers = [Server("cwba", [cwba_bin, "serve", a.work], env),
                   Server("torch", [PY, os.path.join(ROOT, "tools", "bench_torch.py"), "serve",
                                    a.work], tenv),
                   Server("ort", ["node", os.path.join(ROOT, "bench", "ort_bench.js"), "serve", a.work,
                                  onnx_dir], env)]
        # cwba with --conv winograd: forward passes only (the probes' back end,
        # ResNet18 layer4 on 2x2 or 7x7 planes, has no layer it applies to)
        wserver = Server(WINO, [cwba_bin, "serve", a.work], wenv)
        results["contenders"] = {s.name: s.hello for s in servers + [wserver]}
        names = [s.name for s in servers]
        try:
            if "forward" in only:
                cases = [("forward %s %d" % (ar, s), "forward %s %d %d" % (ar, s, b), r)
                         for ar, s, b, r in FORWARD]
                log("forward passes: %d rounds" % a.rounds)
                res, errs, rnd = interleaved(servers + [wserver], cases, a.rounds, a.pause)
                rows = [("forward %s %d" % (ar, s), "%s %dx%d batch %d" % (ar, s, s, b), b,
                         res["forward %s %d" % (ar, s)]) for ar, s, b, _ in FORWARD]
                out, summ = timing_table(
                    "Forward pass (median ms per batch; ratio > 1: cwba faster; min: ratio of the fastest repetitions)", rows, names, flops,
                    peak, lambda b: 1, errs, note, rnd)
                wnames = [WINO] + names
                wout, wsumm = timing_table(
                    "Forward pass with `--conv winograd` (the same run; ratio > 1: cwba with "
                    "Winograd arithmetic faster)", rows, wnames, flops, peak, lambda b: 1, errs, note, rnd)
                results["forward"] = {"summary": summ, "summary_winograd": wsumm, "errors": errs,
                                      "raw": res, "per_round": rnd}
                out.append(target_line("cwba", summ, rows, names[1:]))
                out.append("")
                out += wout
                out.append(target_line("cwba --conv winograd", wsumm, rows, names[1:]))
                out.append("")
                fails = [k for k, v in results["onnx_export"].items() if v.startswith("failed")]
                if fails:
                    out.append("ONNX export failed (torch %s) for: %s — %s" % (
                        results["contenders"]["torch"].get("torch"), ", ".join(sorted(fails)),
                        results["onnx_export"][sorted(fails)[0]][8:120]))
                    out.append("")
                print("\n".join(out), flush=True)
                lines += out
            if "probe" in only:
                cases = [("probe %d b%d" % (s, b), "probe %d %d" % (s, b), r) for s, b, r in PROBE]
                log("probe passes: %d rounds" % a.rounds)
                res, errs, rnd = interleaved(servers, cases, a.rounds, a.pause)
                rows = [("probe %d b%d" % (s, b), "ResNet18 after layer3, %s, batch %d" % (
                    "256x4x4 (64 px)" if s == 64 else "256x14x14 (224 px)", b), b,
                    res["probe %d b%d" % (s, b)]) for s, b, _ in PROBE]
                pf = {"probe %d b%d" % (s, b): flops["probe %d" % s] for s, b, _ in PROBE}
                out, summ = timing_table(
                    "Probe pass (median ms per pass = per perturbed copy; ratio > 1: cwba faster; min: ratio of the fastest repetitions)", rows,
                    names, pf, peak, lambda b: b, errs, note, rnd)
                best = min(summ["probe 64 b%d" % b]["median_s"]["cwba"] / b
                           for s, b, _ in PROBE if s == 64 and summ["probe 64 b%d" % b]["median_s"]["cwba"])
                out.append("Target <= 0.5 ms per 256x4x4 pass with %d threads: cwba best %.3f ms "
                           "per pass (%s); at batch 1 %.3f ms." % (
                               a.threads, 1e3 * best, "met" if best <= 0.5e-3 else "NOT met",
                               1e3 * summ["probe 64 b1"]["median_s"]["cwba"]))
                out.append("")
                results["probe"] = {"summary": summ, "errors": errs, "raw": res, "per_round": rnd}
                print("\n".join(out), flush=True)
                lines += out
        finally:
            for s in servers + [wserver]:
                s.close()

    if "memory" in only:
        log("memory: fresh process per case")
        out = ["### Peak resident memory of one pass (MB, VmHWM reset before the pass; "
               "in brackets: peak including model loading)", "",
               "| case | cwba | torch | ort |", "|---|---|---|---|"]
        mem = {}
        mcases = [("forward", ar, s, b, False) for ar, s, b, _ in FORWARD] + \
                 [("probe", "resnet18", s, b, False) for s, b in ((64, 64), (224, 64))] + \
                 [("forward", ar, s, b, True) for ar, s, b, _ in FORWARD if ar != "alexnet"]
        for kind, ar, s, b, wino in mcases:
            key = "%s %s %d b%d" % (kind, ar, s, b) + (" winograd" if wino else "")
            args = ["forward", ar, str(s), str(b)] if kind == "forward" else ["probe", str(s), str(b)]
            row = {}
            for name, cmd, e in (
                    ("cwba", [cwba_bin, "mem"] + args + [a.work],
                     dict(env, CWBA_BENCH_CONV="winograd") if wino else env),
                    ("torch", [PY, os.path.join(ROOT, "tools", "bench_torch.py"), "mem"] + args + [a.work], tenv),
                    ("ort", ["node", os.path.join(ROOT, "bench", "ort_bench.js"), "mem"] + args + [a.work, onnx_dir], env)):
                if wino and name != "cwba":
                    row[name] = {"ok": False, "error": "winograd is cwba's"}
                    continue
                try:
                    row[name] = run_json(cmd, env=e, timeout=900)
                except Exception as ex:  # e.g. no ONNX model for this case
                    row[name] = {"ok": False, "error": str(ex)[-200:]}
            mem[key] = row

            def cell(r):
                if not r.get("ok"):
                    return "n/a"
                return "%.0f (%.0f)" % (r["run_peak_kb"] / 1024, r["load_peak_kb"] / 1024)
            out.append("| %s | %s | %s | %s |" % (key, cell(row["cwba"]), cell(row["torch"]),
                                                  cell(row["ort"])))
        for key, who in (("forward vgg16 224 b1", "cwba"),
                         ("forward vgg16 224 b1 winograd", "cwba --conv winograd")):
            v = mem.get(key, {}).get("cwba", {})
            if v.get("ok"):
                r = v["run_peak_kb"] * 1024 / v["weights_f32_bytes"]
                out += ["", "VGG16 224 batch 1 in %s: peak resident memory during the forward %.0f MB "
                        "= **%.2fx** its float32 weights (%.0f MB; target <= 1.5x: %s); peak including "
                        "model creation %.2fx." % (who, v["run_peak_kb"] / 1024, r,
                                                  v["weights_f32_bytes"] / 2**20,
                                                  "met" if r <= 1.5 else "NOT met",
                                                  v["load_peak_kb"] * 1024 / v["weights_f32_bytes"])]
        out.append("")
        results["memory"] = mem
        print("\n".join(out), flush=True)
        lines += out

    if "quant" in only:
        log("quantizer and bitstream throughput")
        q = run_json([cwba_bin, "quant"], env=env)
        out = ["### Quantize + dequantize (cwba_quantize_feature, one core, codes written)", "",
               "| quantizer | feature | us per feature | GB/s of float32 input |", "|---|---|---|---|"]
        for c in q["cases"]:
            out.append("| %s | %dx%d | %.1f | %.2f |" % (c["quant"], c["C"], c["HW"],
                                                          1e6 * c["seconds"], c["gbps"]))
        worst = min(c["gbps"] for c in q["cases"])
        out += ["", "Target >= 1 GB/s of float32 feature per core: %s (slowest case %.2f GB/s)." % (
            "met" if worst >= 1.0 else "NOT met", worst)]
        results["quant"] = q
        try:
            cd = run_json([cwba_bin, "codec"], env=env, timeout=600)
            out += ["", "### Bitstream (cwba_stream_encode / decode, one core, %dx%dx%d feature)" % (
                cd["C"], cd["H"], cd["W"]), "",
                "| bits | mode | bits/element | encode Melem/s | decode Melem/s | encode MB/s of float32 |",
                "|---|---|---|---|---|---|"]
            for c in cd["cases"]:
                out.append("| %d | %s | %.3f | %.1f | %.1f | %.0f |" % (
                    c["bits"], c["mode"], c["bits_per_element"], c["encode_melem_s"],
                    c["decode_melem_s"], 4 * c["encode_melem_s"]))
            results["codec"] = cd
        except Exception as ex:
            out.append("bitstream: %s" % ex)
        out.append("")
        print("\n".join(out), flush=True)
        lines += out

    if "eval" in only:
        log("evaluation with online iterations")
        ev_cases = [("resnet18", 224, "layer3", 1), ("resnet18", 64, "layer3", 2),
                    ("alexnet", 64, "features.5", 2), ("vgg16", 64, "features.30", 2)]
        out = ["### Evaluation, reserve 40, 2 bits, uniform (seconds per image, front end + y0 + "
               "allocation + final pass)", "",
               "| model / split | feature | cwba s/image | cwba passes/image | original's method s/image | "
               "original passes/image | speed-up |", "|---|---|---|---|---|---|---|"]
        ev = {}
        for ar, s, sp, osteps in ev_cases:
            key = "%s %d %s" % (ar, s, sp)
            c = run_json([cwba_bin, "evaluate", ar, str(s), sp, "2", "40", str(a.eval_images)],
                         env=env, timeout=3000)
            o = run_json([PY, os.path.join(ROOT, "tools", "original_method.py"), "evaluate", ar,
                          str(s), sp, "2", "40", str(osteps), "1"], env=tenv, timeout=3000)
            ev[key] = {"cwba": c, "original": o}
            out.append("| %s %s (%s) | %dx%dx%d | %.3g | %.0f | %s (%d of %.0f steps timed) | %.0f | **%.0fx** |" % (
                ar, sp, "synthetic 1000-class" if s == 224 else "Fashion-MNIST model", c["C"], c["H"],
                c["W"], c["seconds_per_image"], c["passes_per_image"], fmt(o["seconds_per_image"]),
                o["measured_steps"], o["online_steps"], o["passes_per_image"],
                o["seconds_per_image"] / c["seconds_per_image"]))
            log("  %s done" % key)
        out.append("")
        out.append("The original's figure for ResNet18 layer3 at 40 iterations: 9.0 s/image on a GPU "
                   "(ImageNet, 224 px).")
        t224 = ev["resnet18 224 layer3"]["cwba"]["seconds_per_image"]
        out.append("Target <= 2 s per image (ResNet18 layer3, 224 px, reserve 40, %d threads): %s "
                   "(%.2f s)." % (a.threads, "met" if t224 <= 2.0 else "NOT met", t224))
        out.append("")
        results["eval"] = ev
        print("\n".join(out), flush=True)
        lines += out

    if "calib" in only:
        log("calibration")
        out = ["### Calibration (uniform, bits 2..7, one image; ResNet18 layer3)", "",
               "| input | cwba s/image | cwba passes/image | minimum C + steps | original C x steps | "
               "original's method s/image | speed-up |", "|---|---|---|---|---|---|---|"]
        cal = {}
        for s, cwba_steps, osteps in ((64, 0, 2), (224, 400, 1)):
            c = run_json([cwba_bin, "calibrate", "resnet18", str(s), "layer3", "1", str(cwba_steps)],
                         env=env, timeout=3000)
            o = run_json([PY, os.path.join(ROOT, "tools", "original_method.py"), "calibrate",
                          "resnet18", str(s), "layer3", str(osteps), "1"], env=tenv, timeout=3000)
            cal[s] = {"cwba": c, "original": o}
            C, steps = c["C"], c["total_steps"]
            out.append("| %dx%d (%dx%dx%d) | %.3g%s | %.0f%s | %d | %d | %s (%d of %d steps timed, "
                       "extrapolated) | **%.0fx** |" % (
                           s, s, C, c["H"], c["W"], c["seconds_per_image"],
                           " (%d of %d steps timed, extrapolated)" % (c["measured_steps_per_image"], steps)
                           if c["bounded"] else "", c["passes_per_image"],
                           " (extrapolated)" if c["bounded"] else "", C + steps, C * steps,
                           fmt(o["seconds_per_image"]), o["measured_steps"], steps,
                           o["seconds_per_image"] / c["seconds_per_image"]))
            log("  calibration %d done" % s)
        worst = min(cal[s]["original"]["seconds_per_image"] / cal[s]["cwba"]["seconds_per_image"]
                    for s in cal)
        out.append("")
        out.append("Target >= 100x faster than the original's method for calibration: %s "
                   "(smallest speed-up %.0fx)." % ("met" if worst >= 100 else "NOT met", worst))
        out.append("")
        results["calib"] = cal
        print("\n".join(out), flush=True)
        lines += out

    results["seconds"] = time.time() - t_start
    results["loadavg_end"] = loadavg()
    tail = ["Load average (1, 5, 15 min) at the start %s, at the end %s; %.0f s in all." % (
        results["loadavg_start"], results["loadavg_end"], results["seconds"]), ""]
    print("\n".join(tail), flush=True)
    lines += tail
    os.makedirs(a.work, exist_ok=True)
    with open(os.path.join(a.work, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    with open(os.path.join(a.work, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    log("done in %.0f s; raw figures in %s/results.json" % (results["seconds"], a.work))


if __name__ == "__main__":
    main()
