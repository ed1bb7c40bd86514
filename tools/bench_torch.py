#!/usr/bin/python3
"""The PyTorch contender of bench/run.sh, and the benchmark's shared inputs.

    bench_torch.py prepare DIR     writes the inputs every contender reads:
        input_224_b1.f32   (1, 3, 224, 224): the synthetic stream "input", seed 2
                           (cwba's 224 image 0, docs/synthetic-weights.md)
        input_64_b64.f32   (64, 3, 64, 64): Fashion-MNIST test images 0..63,
                           preprocessed as the model cards say
        feat_S.f32         ResNet18's layer3 feature of image 0 (S = 64: the
                           reference model, 256x4x4; S = 224: random init, 256x14x14)
        probe_S_bB.f32     (B, 256, H, W): B copies of feat_S, copy b with channel
                           b mod 256 quantized to 1 interval on the feature's
                           global range (a probe, SPEC 2.2), B in PROBE_BATCHES
    bench_torch.py serve DIR       line protocol on stdin, as bench/cwba_bench.c:
        forward ARCH SIZE BATCH REPS | probe SIZE BATCH REPS | quit
        -> one JSON line {"ok": true, "t": [seconds per rep]}
    bench_torch.py mem forward ARCH SIZE BATCH DIR | mem probe SIZE BATCH DIR
        peak resident memory of one pass in this fresh process
    bench_torch.py flops           floating-point operations per sample of every
        case (2 per multiply-add of the convolutions and linear layers)

Weights: 64 px = models/<arch>_fmnist64 (10 classes); 224 = torchvision's
random initialisation with 1000 classes (torch.manual_seed(0)); timing does
not depend on the values. Threads: torch.set_num_threads(CWBA_BENCH_THREADS,
default 2); eval mode, torch.no_grad().
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
import torchvision  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import make_reference as ref  # noqa: E402  (safetensors reader, synthetic stream, fmnist)

PROBE_BATCHES = (1, 16, 64)
FMNIST_DIR = "/usr/share/datasets/fashion-mnist"

torch.set_num_threads(THREADS)


def weights_path(arch):
    for cand in ("%s_fmnist64.safetensors" % arch, "%s_fmnist64.safetensors.xz" % arch):
        p = os.path.join(ROOT, "models", cand)
        if os.path.exists(p):
            return p
    raise FileNotFoundError("models/%s_fmnist64.safetensors[.xz]" % arch)


def build(arch, size):
    """The torchvision model used for (arch, size), eval mode."""
    if size == 64:
        m = ref.build_model(arch, 10)
        sd = {k: torch.from_numpy(v) for k, v in ref.read_safetensors(weights_path(arch)).items()}
        missing, unexpected = m.load_state_dict(sd, strict=False)
        assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), \
            (missing, unexpected)
    elif size == 224:
        torch.manual_seed(0)
        m = ref.build_model(arch, 1000)
    else:
        raise ValueError("size %d: use 64 or 224" % size)
    return m.eval()


def resnet_front(m):
    """ResNet18 up to and including layer3."""
    return torch.nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool, m.layer1, m.layer2, m.layer3)


def resnet_back(m):
    """ResNet18 after layer3: layer4 -> avgpool -> flatten -> fc."""
    return torch.nn.Sequential(m.layer4, m.avgpool, torch.nn.Flatten(1), m.fc).eval()


def read_f32(path, shape):
    a = np.fromfile(path, dtype="<f4")
    n = int(np.prod(shape))
    if a.size != n:
        raise ValueError("%s: %d floats, expected %d" % (path, a.size, n))
    return torch.from_numpy(a.reshape(shape).copy())


def input_shape(size, batch):
    return (batch, 3, size, size)


def probe_shape(size, batch):
    s = 4 if size == 64 else 14
    return (batch, 256, s, s)


# ------------------------------------------------------------------ prepare

def probe_copies(feat, batch):
    """(batch, C, H, W): copy b with channel b mod C quantized to one interval
    on the global range (uniform quantizer of SPEC 2.1, n = 1)."""
    C = feat.shape[0]
    mn, mx = feat.min(), feat.max()
    out = feat.unsqueeze(0).repeat(batch, 1, 1, 1)
    for b in range(batch):
        c = b % C
        q = torch.round((feat[c] - mn) / (mx - mn) * 1.0)
        out[b, c] = q * (mx - mn) / 1.0 + mn
    return out.contiguous()


def prepare(d):
    os.makedirs(d, exist_ok=True)
    x224 = ref.synth_stream("input", 2, 3 * 224 * 224).reshape(1, 3, 224, 224)
    x224.astype("<f4").tofile(os.path.join(d, "input_224_b1.f32"))
    imgs, _ = ref.fmnist_images(FMNIST_DIR, 64)
    x64 = ref.preprocess_fmnist(imgs)
    x64.numpy().astype("<f4").tofile(os.path.join(d, "input_64_b64.f32"))
    with torch.no_grad():
        for size, x in ((64, x64[:1]), (224, torch.from_numpy(x224))):
            m = build("resnet18", size)
            feat = resnet_front(m)(x)[0].contiguous()
            feat.numpy().astype("<f4").tofile(os.path.join(d, "feat_%d.f32" % size))
            for b in PROBE_BATCHES:
                probe_copies(feat, b).numpy().astype("<f4").tofile(
                    os.path.join(d, "probe_%d_b%d.f32" % (size, b)))
    print(json.dumps({"ok": True, "dir": d}))


# ------------------------------------------------------------------ cases

class Contender:
    def __init__(self, d):
        self.dir = d
        self.models = {}
        self.warm = set()

    def model(self, arch, size):
        key = (arch, size)
        if key not in self.models:
            self.models[key] = build(arch, size)
        return self.models[key]

    def case(self, cmd, arch, size, batch):
        """(module, input) of a forward or probe case."""
        if cmd == "forward":
            x = read_f32(os.path.join(self.dir, "input_%d_b%d.f32" % (size, batch)),
                         input_shape(size, batch))
            return self.model(arch, size), x
        key = ("back", size)
        if key not in self.models:
            self.models[key] = resnet_back(self.model("resnet18", size))
        x = read_f32(os.path.join(self.dir, "probe_%d_b%d.f32" % (size, batch)),
                     probe_shape(size, batch))
        return self.models[key], x

    def run(self, cmd, arch, size, batch, reps):
        m, x = self.case(cmd, arch, size, batch)
        key = (cmd, arch, size, batch)
        with torch.no_grad():
            if key not in self.warm:
                for _ in range(2):
                    m(x)
                self.warm.add(key)
            t = []
            for _ in range(reps):
                t0 = time.perf_counter()
                m(x)
                t.append(time.perf_counter() - t0)
        return t


def parse(words):
    """(cmd, arch, size, batch, reps) of a forward/probe command."""
    if words[0] == "forward" and len(words) == 5:
        return "forward", words[1], int(words[2]), int(words[3]), int(words[4])
    if words[0] == "probe" and len(words) == 4:
        return "probe", "resnet18", int(words[1]), int(words[2]), int(words[3])
    raise ValueError("bad command: %s" % " ".join(words))


def serve(d):
    c = Contender(d)
    print(json.dumps({"ok": True, "ready": "torch", "threads": torch.get_num_threads(),
                      "torch": torch.__version__}), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        try:
            t = c.run(*parse(words))
            print(json.dumps({"ok": True, "t": t}), flush=True)
        except Exception as e:  # the driver reports it and goes on
            print(json.dumps({"ok": False, "error": str(e).splitlines()[0][:300]}), flush=True)


def status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def mem(args):
    if args[0] == "probe":
        cmd, arch, size, batch, d = "probe", "resnet18", int(args[1]), int(args[2]), args[3]
    else:
        cmd, arch, size, batch, d = "forward", args[1], int(args[2]), int(args[3]), args[4]
    c = Contender(d)
    m, x = c.case(cmd, arch, size, batch)
    load_peak = status_kb("VmHWM")
    before = status_kb("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    with torch.no_grad():
        m(x)
    run_peak = status_kb("VmHWM")
    nbytes = sum(4 * t.numel() for t in m.state_dict().values() if t.is_floating_point())
    print(json.dumps({"ok": True, "weights_f32_bytes": nbytes, "load_peak_kb": load_peak,
                      "rss_before_run_kb": before, "run_peak_kb": run_peak if reset else -1,
                      "peak_reset": reset}))


def count_flops(module, x):
    """2 x multiply-adds of Conv2d and Linear layers for one forward of x,
    divided by the batch."""
    total = [0]

    def conv_hook(m, _inp, out):
        total[0] += 2 * out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear_hook(m, _inp, out):
        total[0] += 2 * out.numel() * m.in_features

    hs = []
    for mod in module.modules():
        if isinstance(mod, torch.nn.Conv2d):
            hs.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, torch.nn.Linear):
            hs.append(mod.register_forward_hook(linear_hook))
    with torch.no_grad():
        module(x)
    for h in hs:
        h.remove()
    return total[0] // x.shape[0]


def flops():
    out = {}
    for size in (64, 224):
        for arch in ("alexnet", "vgg16", "resnet18") + (("resnet50",) if size == 224 else ()):
            m = ref.build_model(arch, 10 if size == 64 else 1000).eval()
            out["forward %s %d" % (arch, size)] = count_flops(m, torch.zeros(1, 3, size, size))
            if arch == "resnet18":
                out["probe %d" % size] = count_flops(resnet_back(m), torch.zeros(probe_shape(size, 1)))
    print(json.dumps(out))


def main():
    a = sys.argv[1:]
    if a == ["flops"]:
        flops()
        return
    if len(a) == 2 and a[0] == "prepare":
        prepare(a[1])
    elif len(a) == 2 and a[0] == "serve":
        serve(a[1])
    elif len(a) >= 5 and a[0] == "mem":
        mem(a[1:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
