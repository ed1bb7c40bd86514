#!/usr/bin/python3
"""Real torchvision checkpoints through `cwba infer`, compared with torch.

For every architecture cwba builds, builds the torchvision model (random initialisation,
seeded; batch-norm running statistics and affine parameters drawn at random
too, so that they matter), writes its state_dict as torch.save does (.pth)
or as safetensors, runs

    cwba infer --model ARCH --weights FILE --input-size S --data fmnist:DIR:test
               --limit N --batch N --save-logits OUT.npy

and compares the logits with the torchvision model's on the same images,
preprocessed as the model cards say (tools/make_reference.py's
preprocess_fmnist). Bound: max |cwba - torch| <= 1e-5 * max(1, max |torch|),
the tolerance of tests/test_ref_models.c; every case's figure is printed.

    /usr/bin/python3 tools/check_checkpoints.py --cwba build/cwba [--tmp DIR]

Exit status 0: all within the bound; 1: a difference; 77: torch or the
Fashion-MNIST files are missing (CTest reports the test as skipped).
"""

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
    import torchvision
except ImportError as e:  # CTest: SKIP_RETURN_CODE 77
    print("skipped: %s" % e)
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_reference import fmnist_images, preprocess_fmnist  # noqa: E402

RTOL = 1e-5
# (arch, input size, classes, file format): every architecture cwba builds,
# at sizes that keep the run short (32 px is the smallest every VGG and
# ResNet takes; AlexNet needs 63); .pth as torch.save writes it (zip), one
# in the legacy (pre-1.6) format, and some as safetensors.
CASES = (("resnet50", 64, 10, "pth"), ("vgg11_bn", 32, 10, "pth"),
         ("resnet18", 64, 10, "safetensors"), ("resnet34", 32, 10, "pth-legacy"),
         ("resnet101", 32, 10, "pth"), ("resnet152", 32, 10, "safetensors"),
         ("vgg11", 32, 10, "safetensors"), ("vgg13", 32, 10, "pth"), ("vgg13_bn", 32, 10, "pth"),
         ("vgg16", 32, 10, "pth"), ("vgg16_bn", 32, 10, "safetensors"), ("vgg19", 32, 10, "pth"),
         ("vgg19_bn", 32, 10, "pth"), ("alexnet", 64, 10, "pth"))
IMAGES = 4


def randomize(model, gen):
    """Batch-norm statistics and affine parameters away from 1 / 0."""
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.copy_(1 + 0.2 * (torch.rand(mod.weight.shape, generator=gen) - 0.5))
                mod.bias.copy_(0.2 * (torch.rand(mod.bias.shape, generator=gen) - 0.5))
                mod.running_mean.copy_(0.2 * (torch.rand(mod.running_mean.shape, generator=gen) - 0.5))
                mod.running_var.copy_(0.5 + torch.rand(mod.running_var.shape, generator=gen))


def save_safetensors(sd, path):
    """The safetensors layout: u64 header length, JSON header, raw data."""
    header, blobs, off = {}, [], 0
    for k, t in sd.items():
        a = t.detach().cpu().contiguous().numpy()
        dtype = {np.float32: "F32", np.int64: "I64"}[a.dtype.type]
        b = a.tobytes()
        header[k] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cwba", required=True, help="the cwba executable")
    ap.add_argument("--fmnist", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--tmp", help="directory for the checkpoints (default: a temporary one)")
    args = ap.parse_args()
    if not os.path.exists(os.path.join(args.fmnist, "t10k-images-idx3-ubyte.gz")):
        print("skipped: no Fashion-MNIST in %s" % args.fmnist)
        return 77
    torch.set_num_threads(2)
    print("torch %s, torchvision %s" % (torch.__version__, torchvision.__version__))
    imgs, _ = fmnist_images(args.fmnist, IMAGES)
    failed = 0
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for i, (arch, size, classes, fmt) in enumerate(CASES):
            gen = torch.Generator().manual_seed(1000 + i)
            torch.manual_seed(1000 + i)
            model = getattr(torchvision.models, arch)(weights=None, num_classes=classes)
            randomize(model, gen)
            model.eval()
            path = os.path.join(tmp, "%s.%s" % (arch, "pth" if fmt.startswith("pth") else fmt))
            if fmt == "pth":
                torch.save(model.state_dict(), path)
            elif fmt == "pth-legacy":
                torch.save(model.state_dict(), path, _use_new_zipfile_serialization=False)
            else:
                save_safetensors(model.state_dict(), path)
            x = preprocess_fmnist(imgs, size=size)
            with torch.no_grad():
                ref = model(x).numpy()
            del model
            out = os.path.join(tmp, "%s_logits.npy" % arch)
            cmd = [args.cwba, "infer", "--model", arch, "--weights", path, "--input-size",
                   str(size), "--data", "fmnist:%s:test" % args.fmnist, "--limit", str(IMAGES),
                   "--batch", str(IMAGES), "--save-logits", out]
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            os.remove(path)
            if r.returncode != 0:
                print("%s: cwba infer failed (%d): %s" % (arch, r.returncode, r.stderr.strip()))
                failed += 1
                continue
            got = np.load(out)
            if got.shape != ref.shape:
                print("%s: logits shape %s, torch %s" % (arch, got.shape, ref.shape))
                failed += 1
                continue
            scale = max(1.0, float(np.abs(ref).max()))
            diff = float(np.abs(got.astype(np.float64) - ref).max())
            ok = diff <= RTOL * scale
            print("%-9s %-11s %3d px: max |cwba - torch| = %.3g = %.3g of max(1, max|torch|) "
                  "(bound %g) %s" % (arch, fmt, size, diff, diff / scale, RTOL,
                                     "ok" if ok else "FAIL"))
            failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
