#!/usr/bin/python3
"""The original release's method as it ran (SPEC section 2), in PyTorch, for
the timing comparison of bench/run.sh: every greedy step recomputes the probe
error of all C channels, one back-end pass per channel at batch 1, i.e.
C x steps passes (cwba needs C + steps, in batches).

    original_method.py calibrate ARCH SIZE SPLIT STEPS [IMAGES]
        calibration (--flag 0) of IMAGES images (default 1): the first STEPS
        greedy steps from n = 1 are timed, the remaining T_7 - C - STEPS
        steps are extrapolated at the measured cost per step.
    original_method.py evaluate ARCH SIZE SPLIT BITS RESERVE STEPS [IMAGES]
        evaluation (--flag 1) with the benchmark's synthetic interval table
        (the formula of bench/cwba_bench.c), alpha 0.9, beta 0.1, uniform
        quantizer: the front end, y0, priority, base allocation, top-up and
        the final quantized pass are timed in full; of the R' = min(R, L)
        online steps the first min(STEPS, R') are timed and the rest
        extrapolated at the measured cost per step.

Both print one JSON line. Models and images are those of bench/cwba_bench.c:
SIZE 64 = the reference models in models/ on Fashion-MNIST test images 0..;
SIZE 224 = the synthetic weights (seed 1, 1000 classes) of
docs/synthetic-weights.md on the synthetic stream "input" with seed 2 + image
index, so cwba and this script see the same features. Threads:
CWBA_BENCH_THREADS (default 2).
"""

import json
import os
import sys

THREADS = int(os.environ.get("CWBA_BENCH_THREADS", "2"))
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(THREADS))

import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_torch as bt  # noqa: E402
import make_reference as ref  # noqa: E402

torch.set_num_threads(THREADS)
BITS_MAX = 7


def build(arch, size):
    if size == 64:
        return bt.build(arch, 64)
    m = ref.build_model(arch, 1000)
    sd = {k: torch.from_numpy(v) for k, v in ref.synth_state_dict(m.state_dict(), 1).items()}
    m.load_state_dict(sd, strict=False)
    return m.eval()


def split_model(m, arch, split):
    """(front, back) modules for a split point (SPEC section 1)."""
    if arch in ("alexnet", "vgg16"):
        k = int(split.split(".")[1])
        front = m.features[:k + 1]
        back = torch.nn.Sequential(m.features[k + 1:], m.avgpool, torch.nn.Flatten(1),
                                   m.classifier)
        return front.eval(), back.eval()
    order = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    if split not in order:
        raise ValueError("split %s: use one of %s" % (split, " ".join(order)))
    i = order.index(split) + 1
    front = torch.nn.Sequential(*[getattr(m, n) for n in order[:i]])
    back = torch.nn.Sequential(*[getattr(m, n) for n in order[i:]], m.avgpool,
                               torch.nn.Flatten(1), m.fc)
    return front.eval(), back.eval()


class Images:
    def __init__(self, size):
        self.size = size
        self.fm = None

    def get(self, i):
        if self.size == 224:
            x = ref.synth_stream("input", 2 + i, 3 * 224 * 224).reshape(1, 3, 224, 224)
            return torch.from_numpy(x)
        if self.fm is None or self.fm.shape[0] <= i:
            imgs, _ = ref.fmnist_images(bt.FMNIST_DIR, max(16, i + 1))
            self.fm = ref.preprocess_fmnist(imgs)
        return self.fm[i:i + 1].clone()


def quant_channel(xc, n, mn, mx):
    """Uniform quantizer of SPEC 2.1 on the global range, float32."""
    return torch.round((xc - mn) / (mx - mn) * n) * (mx - mn) / n + mn


def probe_errors(back, x, y0, n, mn, mx):
    """The original's inner loop: C probes, one batch-1 pass each."""
    C = x.shape[1]
    e = torch.empty(C, dtype=torch.float64)
    for c in range(C):
        xp = x.clone()
        xp[0, c] = quant_channel(x[0, c], float(n[c]), mn, mx)
        e[c] = torch.mean((back(xp) - y0) ** 2).item()
    return e


def greedy(back, x, y0, n, steps, mn, mx):
    for _ in range(steps):
        e = probe_errors(back, x, y0, n, mn, mx)
        n[int(torch.argmax(e))] += 1  # first maximum: lowest index on ties


def synthetic_table(C, bits, rows=4):
    r = np.arange(rows)[:, None]
    c = np.arange(C)[None, :]
    return 1 + (37 * c + 101 * r) % ((1 << (bits + 1)) - 2)


def priority_order(x, alpha, beta):
    xc = x[0].reshape(x.shape[1], -1).double()
    m = xc.mean(1)
    s = xc.std(1, unbiased=True)
    S = s.sum()
    p = alpha * m / m.sum() + beta * torch.exp(-s / S) / torch.exp(-s / S).sum()
    return sorted(range(len(p)), key=lambda i: -float(p[i]))  # stable: ties keep index order


def base_allocation(avg, bits, order):
    C = len(avg)
    T = ((1 << bits) - 1) * C
    n = np.maximum(1, np.floor(avg / avg.sum() * T)).astype(np.int64)
    while n.sum() > T:  # repair: one interval at a time from the lowest priority up
        for c in reversed(order):
            if n.sum() <= T:
                break
            if n[c] > 1:
                n[c] -= 1
    return n, T - int(n.sum())


def cmd_calibrate(arch, size, split, steps, images):
    m = build(arch, size)
    front, back = split_model(m, arch, split)
    imgs = Images(size)
    secs, per_step = [], []
    with torch.no_grad():
        for i in range(images):
            img = imgs.get(i)
            t0 = time.perf_counter()
            x = front(img)
            y0 = back(x)
            C = x.shape[1]
            total = ((1 << BITS_MAX) - 1) * C - C
            mn, mx = float(x.min()), float(x.max())
            n = [1] * C
            t1 = time.perf_counter()
            greedy(back, x, y0, n, steps, mn, mx)
            t2 = time.perf_counter()
            per_step.append((t2 - t1) / steps)
            secs.append((t1 - t0) + per_step[-1] * total)
    print(json.dumps({"ok": True, "arch": arch, "size": size, "split": split, "C": C,
                      "images": images, "measured_steps": steps, "total_steps": total,
                      "seconds_per_step": float(np.median(per_step)),
                      "seconds_per_image": float(np.median(secs)),
                      "passes_per_image": C * total + 1, "threads": torch.get_num_threads()}))


def cmd_evaluate(arch, size, split, bits, reserve, steps, images):
    m = build(arch, size)
    front, back = split_model(m, arch, split)
    imgs = Images(size)
    secs, rsteps = [], []
    with torch.no_grad():
        for i in range(-1, images):  # image -1: an untimed warm-up on image 0
            img = imgs.get(max(i, 0))
            t0 = time.perf_counter()
            x = front(img)
            y0 = back(x)
            C = x.shape[1]
            mn, mx = float(x.min()), float(x.max())
            avg = synthetic_table(C, bits).mean(0)
            order = priority_order(x, 0.9, 0.1)
            n, L = base_allocation(avg, bits, order)
            R = min(reserve, L)
            for j in range(L - R):
                n[order[j % C]] += 1
            n = [int(v) for v in n]
            timed = min(steps, R) if i >= 0 else min(1, R)
            t1 = time.perf_counter()
            greedy(back, x, y0, n, timed, mn, mx)
            t2 = time.perf_counter()
            xq = x.clone()
            for c in range(C):
                xq[0, c] = quant_channel(x[0, c], float(n[c]), mn, mx)
            float(torch.mean((back(xq) - y0) ** 2))
            t3 = time.perf_counter()
            if i < 0:
                continue
            step = (t2 - t1) / timed if timed else 0.0
            secs.append((t1 - t0) + step * R + (t3 - t2))
            rsteps.append(R)
    print(json.dumps({"ok": True, "arch": arch, "size": size, "split": split, "C": C,
                      "bits": bits, "reserve": reserve, "images": images,
                      "measured_steps": min(steps, min(rsteps)), "online_steps": float(np.mean(rsteps)),
                      "seconds_per_image": float(np.median(secs)),
                      "passes_per_image": 2 + C * float(np.mean(rsteps)),
                      "threads": torch.get_num_threads()}))


def main():
    a = sys.argv[1:]
    if len(a) in (5, 6) and a[0] == "calibrate":
        cmd_calibrate(a[1], int(a[2]), a[3], int(a[4]), int(a[5]) if len(a) == 6 else 1)
    elif len(a) in (7, 8) and a[0] == "evaluate":
        cmd_evaluate(a[1], int(a[2]), a[3], int(a[4]), int(a[5]), int(a[6]),
                     int(a[7]) if len(a) == 8 else 1)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
