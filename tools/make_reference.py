#!/usr/bin/python3
"""Reference activations from torchvision for tests/test_ref_models.c.

The C networks (src/nn) claim to compute exactly what torchvision's AlexNet,
VGG16 and ResNet18 compute in eval mode. This script runs the torchvision
models (Debian python3-torch / python3-torchvision, CPU, float32) and records,
at every split point and at the logits, enough of each tensor to check that
claim without committing whole activations:

  shape, sum, sum of squares, sum of |x|, max |x| (sums in float64 over the
  whole (N, C, H, W) tensor), and 256 values at the deterministic flat indices
      idx_j = j * (numel // 256) + (j * 7919) % max(1, numel // 256),  j = 0..255
  -- or every value when numel <= 4096 -- plus the full logits.

Two cases per architecture (the other torchvision networks, MORE_ARCHS:
synth224 only, with 64 samples per split point):

  fmnist64  the project's reference models (models/<arch>_fmnist64.safetensors[.xz],
            read here with lzma + a small safetensors reader, F16 -> float32),
            input = the first 2 Fashion-MNIST test images preprocessed as the
            model cards say (x/255 -> bilinear 64x64, align_corners=False,
            antialias=False -> (x - 0.2860)/0.3530 -> 3 identical channels).
            The preprocessed input is saved once in fmnist_input.json (one
            plane per image, since the 3 channels are identical).
  synth224  ImageNet geometry: 224x224 input, 1000 classes, weights from the
            synthetic generator of docs/synthetic-weights.md (seed 1),
            implemented below in numpy bit-for-bit, input = the stream
            "input" with seed 2, shape (1, 3, 224, 224).

Also written: synthetic_vectors.json -- raw generator streams (float32 bits)
and, for every float tensor of the three synthetic state dicts (1000
classes, seed 1), its shape, the sha256 of its float32 bytes, its first 8
values and its sums; tests/test_ref_synthetic.c checks the C generator
against it bit for bit.

Floats are written with 9 significant digits, which round-trips float32.

Run from the repository root (takes a few minutes on 2 cores):

    /usr/bin/python3 tools/make_reference.py

Optional: --out DIR (default tests/data/ref), --fmnist DIR
(default /usr/share/datasets/fashion-mnist), --only resnet50,vgg11,...
(only those synth224 files). The output is deterministic for
a given torch build; the torch/torchvision versions are recorded in every file.
"""

import argparse
import gzip
import hashlib
import json
import lzma
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

ARCHS = ("alexnet", "vgg16", "resnet18")
# The other torchvision networks cwba builds: synth224 only (no trained
# reference models), 64 samples per split point to keep the files small.
MORE_ARCHS = ("resnet34", "resnet50", "resnet101", "resnet152", "vgg11", "vgg11_bn", "vgg13",
              "vgg13_bn", "vgg16_bn", "vgg19", "vgg19_bn")
MORE_SAMPLES = 64
NUM_SAMPLES = 256
FULL_LIMIT = 4096
FMNIST_IMAGES = 2
SYNTH_WEIGHT_SEED = 1
SYNTH_INPUT_SEED = 2
SYNTH_SIZE = 224
SYNTH_CLASSES = 1000

# ------------------------------------------------------------ safetensors

_ST_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": None, "F64": "<f8",
              "I64": "<i8", "I32": "<i4", "U8": "u1"}


def read_safetensors(path):
    """Returns {name: float32 ndarray} for the float tensors of a safetensors
    file (".xz" decompressed first); integer tensors are skipped."""
    with open(path, "rb") as f:
        raw = f.read()
    if path.endswith(".xz"):
        raw = lzma.decompress(raw)
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hlen].decode("utf-8"))
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = info["dtype"]
        if dt.startswith("I") or dt.startswith("U"):
            continue
        b, e = info["data_offsets"]
        buf = raw[base + b:base + e]
        if dt == "BF16":
            u16 = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << np.uint32(16)
            arr = u16.view(np.float32)
        else:
            arr = np.frombuffer(buf, dtype=_ST_DTYPES[dt]).astype(np.float32)
        out[name] = arr.reshape(info["shape"]).copy()
    return out


# ------------------------------------------------- synthetic generator (numpy)
# docs/synthetic-weights.md is the definition; this must stay bit-identical to
# src/nn's cwba_synthetic_fill / cwba_weights_synthetic.

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for c in data:
        h = ((h ^ c) * 0x100000001B3) & M64
    return h


def synth_stream(name, seed, n):
    """r_0..r_{n-1} in [-1, 1), float32, for tensor `name`."""
    s = fnv1a64(name.encode("utf-8")) ^ seed
    i = np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(s) + i * np.uint64(GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24)
    return np.float32(2) * u - np.float32(1)


def synth_state_dict(sd, seed):
    """Synthetic values for every float tensor of a torchvision state_dict."""
    out = {}
    for k, t in sd.items():
        if not t.is_floating_point():
            continue
        r = synth_stream(k, seed, t.numel()).reshape(tuple(t.shape))
        mod = k.rsplit(".", 1)[0]
        is_bn = (mod + ".running_mean") in sd
        if k.endswith(".running_mean"):
            v = np.float32(0.1) * r
        elif k.endswith(".running_var"):
            v = np.float32(1) + np.float32(0.5) * r
        elif is_bn and k.endswith(".weight"):
            v = np.float32(1) + np.float32(0.1) * r
        elif is_bn and k.endswith(".bias"):
            v = np.float32(0.1) * r
        elif k.endswith(".weight"):
            fan_in = int(np.prod(t.shape[1:]))
            v = r * np.float32(np.sqrt(6.0 / fan_in))
        else:
            v = r * np.float32(0.01)
        assert v.dtype == np.float32, k
        out[k] = v
    return out


# ------------------------------------------------------------ data + models


def fmnist_images(fmnist_dir, count):
    """(count, 28, 28) uint8 and labels of the first test images."""
    with gzip.open(os.path.join(fmnist_dir, "t10k-images-idx3-ubyte.gz"), "rb") as f:
        raw = f.read()
    magic, n, h, w = struct.unpack(">IIII", raw[:16])
    assert magic == 2051 and h == 28 and w == 28 and n >= count
    imgs = np.frombuffer(raw, dtype=np.uint8, count=count * h * w, offset=16)
    with gzip.open(os.path.join(fmnist_dir, "t10k-labels-idx1-ubyte.gz"), "rb") as f:
        lraw = f.read()
    labels = np.frombuffer(lraw, dtype=np.uint8, count=count, offset=8)
    return imgs.reshape(count, h, w), [int(v) for v in labels]


def preprocess_fmnist(imgs_u8, size=64, mean=0.2860, std=0.3530):
    """The model cards' preprocessing; returns (N, 3, size, size) float32."""
    x = torch.from_numpy(imgs_u8.astype(np.float32)).unsqueeze(1) / 255.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                      antialias=False)
    x = (x - mean) / std
    return x.repeat(1, 3, 1, 1).contiguous()


def build_model(arch, num_classes):
    ctor = getattr(torchvision.models, arch)
    return ctor(weights=None, num_classes=num_classes)


def split_modules(model, arch):
    """(split name, module) in network order, names as in include/cwba/nn.h."""
    if arch.startswith(("alexnet", "vgg")):
        return [("features.%d" % k, m) for k, m in enumerate(model.features)]
    out = [(n, getattr(model, n)) for n in ("conv1", "bn1", "relu", "maxpool")]
    for layer in (1, 2, 3, 4):
        seq = getattr(model, "layer%d" % layer)
        for b in range(len(seq)):
            out.append(("layer%d.%d" % (layer, b), seq[b]))
    return out


def run_with_splits(model, arch, x):
    """Forward pass that captures every split point's output (cloned, since
    the in-place ReLUs would otherwise overwrite conv outputs)."""
    feats = {}
    handles = []
    splits = split_modules(model, arch)
    for name, mod in splits:
        def hook(_m, _inp, out, name=name):
            assert name not in feats, "module %s ran twice" % name
            feats[name] = out.detach().clone()
        handles.append(mod.register_forward_hook(hook))
    with torch.no_grad():
        logits = model(x)
    for h in handles:
        h.remove()
    return [(n, feats[n]) for n, _ in splits], logits


# ---------------------------------------------------------------- summaries


def f9(v):
    """float32 value as a float that json prints with <= 9 significant digits."""
    return float("%.9g" % float(v))


def sample_indices(numel, nsamp=NUM_SAMPLES):
    if numel <= FULL_LIMIT:
        return list(range(numel))
    step = numel // nsamp
    return [j * step + (j * 7919) % max(1, step) for j in range(nsamp)]


def summarize(name, t, nsamp=NUM_SAMPLES):
    a = t.numpy().astype(np.float32)
    flat = a.reshape(-1)
    d = flat.astype(np.float64)
    idx = sample_indices(flat.size, nsamp)
    return {
        "name": name,
        "shape": list(a.shape),
        "numel": int(flat.size),
        "sum": float(d.sum()),
        "sumsq": float((d * d).sum()),
        "sumabs": float(np.abs(d).sum()),
        "maxabs": float(np.abs(d).max()),
        "full": flat.size <= FULL_LIMIT,
        "values": [f9(flat[i]) for i in idx],
    }


def header(arch, case, nsamp=NUM_SAMPLES):
    obj = {
        "format": "cwba-ref-1",
        "generator": "tools/make_reference.py",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "arch": arch,
        "case": case,
        "sample_rule": "numel <= %d: all values; else idx_j = j*(numel//%d) + "
                       "(j*7919) %% max(1, numel//%d), j = 0..%d"
                       % (FULL_LIMIT, nsamp, nsamp, nsamp - 1),
    }
    if nsamp != NUM_SAMPLES:
        obj["num_samples"] = nsamp
    return obj


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.write("\n")
    os.replace(tmp, path)
    print("  wrote %s (%d bytes)" % (path, os.path.getsize(path)))


# -------------------------------------------------------------------- cases


def case_fmnist(root, out_dir, fmnist_dir):
    imgs, labels = fmnist_images(fmnist_dir, 16)
    x16 = preprocess_fmnist(imgs)
    x = x16[:FMNIST_IMAGES].contiguous()
    inp = header("input", "fmnist64")
    del inp["arch"]
    inp.update({
        "dataset": "fashion-mnist t10k",
        "indices": list(range(FMNIST_IMAGES)),
        "labels": labels[:FMNIST_IMAGES],
        "shape": list(x.shape),
        "note": "the 3 channels are identical; 'planes' holds channel 0 of each image, "
                "(N, H, W) row-major",
        "planes": [f9(v) for v in x[:, 0].reshape(-1).numpy()],
    })
    write_json(os.path.join(out_dir, "fmnist_input.json"), inp)

    for arch in ARCHS:
        wpath = None
        for cand in ("%s_fmnist64.safetensors" % arch, "%s_fmnist64.safetensors.xz" % arch):
            if os.path.exists(os.path.join(root, "models", cand)):
                wpath = "models/" + cand
                break
        assert wpath is not None, "no weights for " + arch
        sd = read_safetensors(os.path.join(root, wpath))
        model = build_model(arch, 10)
        missing, unexpected = model.load_state_dict(
            {k: torch.from_numpy(v) for k, v in sd.items()}, strict=False)
        # Only integer num_batches_tracked may be missing (the reader skips them).
        assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), \
            (missing, unexpected)
        model.eval()

        # Sanity check of this script against the model card (16 images).
        with open(os.path.join(root, "models", "%s_fmnist64.json" % arch)) as f:
            card = json.load(f)
        with torch.no_grad():
            l16 = model(x16).numpy()
        card_diff = float(np.abs(l16 - np.array(card["reference_logits_first16"])).max())
        print("  %s: max |logits - card reference_logits_first16| = %.3g" % (arch, card_diff))

        feats, logits = run_with_splits(model, arch, x)
        obj = header(arch, "fmnist64")
        obj.update({
            "weights": wpath,
            "input": "fmnist_input.json",
            "input_size": 64,
            "num_classes": 10,
            "batch": FMNIST_IMAGES,
            "card_logits_max_abs_diff": card_diff,
            "splits": [summarize(n, t) for n, t in feats],
            "logits": [[f9(v) for v in row] for row in logits.numpy()],
        })
        write_json(os.path.join(out_dir, "%s_fmnist64.json" % arch), obj)


def case_synth(out_dir, archs=ARCHS, nsamp=NUM_SAMPLES):
    x = synth_stream("input", SYNTH_INPUT_SEED, 3 * SYNTH_SIZE * SYNTH_SIZE)
    x = torch.from_numpy(x.reshape(1, 3, SYNTH_SIZE, SYNTH_SIZE).copy())
    for arch in archs:
        model = build_model(arch, SYNTH_CLASSES)
        sd = model.state_dict()
        synth = synth_state_dict(sd, SYNTH_WEIGHT_SEED)
        missing, unexpected = model.load_state_dict(
            {k: torch.from_numpy(v) for k, v in synth.items()}, strict=False)
        assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
        model.eval()
        feats, logits = run_with_splits(model, arch, x)
        obj = header(arch, "synth224", nsamp)
        obj.update({
            "weights": {"synthetic_seed": SYNTH_WEIGHT_SEED},
            "input": {"synthetic_name": "input", "seed": SYNTH_INPUT_SEED},
            "input_size": SYNTH_SIZE,
            "num_classes": SYNTH_CLASSES,
            "batch": 1,
            "splits": [summarize(n, t, nsamp) for n, t in feats],
            "logits": [[f9(v) for v in row] for row in logits.numpy()],
        })
        write_json(os.path.join(out_dir, "%s_synth224.json" % arch), obj)


def case_vectors(out_dir):
    """Raw generator outputs and whole synthetic tensors' summaries."""
    def bits(a):
        return ["0x%08x" % int(v) for v in np.asarray(a, dtype=np.float32).view(np.uint32)]

    streams = []
    for name, seed, n in (("input", 0, 8), ("input", SYNTH_INPUT_SEED, 8),
                          ("features.0.weight", 1, 8), ("fc.bias", 12345, 8),
                          ("layer3.1.bn2.running_var", 0xFFFFFFFFFFFFFFFF, 8)):
        r = synth_stream(name, seed, n)
        streams.append({"name": name, "seed": str(seed), "fnv1a64": "0x%016x" % fnv1a64(name.encode()),
                        "bits": bits(r)})
    # Every float tensor of every architecture: shape, sha256 of its float32
    # little-endian bytes (a bit-exact check of the whole tensor), sums for
    # diagnostics and its first 8 values.
    tensors = []
    for arch in ARCHS:
        sd = build_model(arch, SYNTH_CLASSES).state_dict()
        synth = synth_state_dict(sd, SYNTH_WEIGHT_SEED)
        for k, t in synth.items():
            v = np.ascontiguousarray(t.reshape(-1), dtype="<f4")
            d = v.astype(np.float64)
            tensors.append({"arch": arch, "name": k, "shape": list(t.shape),
                            "sha256": hashlib.sha256(v.tobytes()).hexdigest(),
                            "first_bits": bits(v[:8]),
                            "sum": float(d.sum()), "sumsq": float((d * d).sum())})
    obj = header("generator", "synthetic")
    del obj["arch"], obj["sample_rule"]
    obj.update({"num_classes": SYNTH_CLASSES, "weight_seed": SYNTH_WEIGHT_SEED,
                "streams": streams, "tensors": tensors})
    write_json(os.path.join(out_dir, "synthetic_vectors.json"), obj)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(root, "tests", "data", "ref"))
    ap.add_argument("--fmnist", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--only", help="comma-separated architectures of MORE_ARCHS: write only "
                    "their synth224 files")
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)  # only affects the throw-away default initialisation
    os.makedirs(args.out, exist_ok=True)
    print("torch %s, torchvision %s" % (torch.__version__, torchvision.__version__))
    if args.only:
        only = args.only.split(",")
        assert all(a in MORE_ARCHS for a in only), only
        case_synth(args.out, only, MORE_SAMPLES)
        return 0
    case_vectors(args.out)
    case_fmnist(root, args.out, args.fmnist)
    case_synth(args.out)
    case_synth(args.out, MORE_ARCHS, MORE_SAMPLES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
