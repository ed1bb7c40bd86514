#!/usr/bin/python3
"""Train a Fashion-MNIST reference network and write its model card.

    /usr/bin/python3 tools/train_fmnist.py ARCH [ARCH ...] [--out models]
        [--device auto|cpu|cuda] [--fmnist DIR]
        smoke-test options: [--epochs N] [--finetune-epochs N] [--batch N]
                            [--max-batches N] [--eval-limit N]

ARCH is any torchvision classification network by name (resnet34, resnet50,
vgg11, ...), built with num_classes=10. The recipe is the one the cards of the
three committed reference models record (models/*_fmnist64.json, "train"):

- ResNets (and any other network): resnet18's recipe, 18 epochs, batch 512,
  SGD nesterov momentum 0.9 weight decay 5e-4, OneCycle max_lr 0.2; F32
  safetensors, uncompressed.
- VGG: vgg16's recipe, 12 epochs, batch 256, OneCycle max_lr 0.02 and
  gradient-norm clipping at 5; then the first two classifier Linear layers are
  magnitude-pruned to densities 0.01 and 0.05 (the round(d * numel) weights of
  largest |w| are kept, biases untouched) and fine-tuned for 3 more epochs with
  the same optimiser settings and a fresh OneCycle, the masks re-applied after
  every step; written as F16 safetensors, xz-compressed (the released model
  is defined by those fp16 values: the card's figures are computed from them).
- AlexNet: alexnet's recipe, the VGG one with 14 + 4 epochs.

Common to all: augmentation pad 3 (zeros) + random crop 28 + horizontal flip on
the 28x28 image, then the cards' preprocessing (x/255, bilinear resize to 64
with align_corners=False and no antialias, (x - 0.286) / 0.353, replicated to
3 channels); label smoothing 0.1; bf16 autocast; seed 0.

Outputs, per ARCH, in --out: ARCH_fmnist64.safetensors[.xz] and
ARCH_fmnist64.json (arch, test top-1 on the 10,000 test images, input,
train, sha256 of the uncompressed safetensors, the logits of the first 16
test images rounded to 5 decimals, their labels, torch/torchvision versions).
The card's figures are computed in float32 with TF32 off; the 16 logits on
the CPU. A run with any smoke-test option records it in the card's "train"
("max_batches", "eval_images") so that it cannot pass for a reference.

Exit status 0: written; 77: torch or the Fashion-MNIST files are missing.
"""

import argparse
import gzip
import hashlib
import json
import lzma
import os
import struct
import sys

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
    import torchvision
except ImportError as e:  # CTest: SKIP_RETURN_CODE 77
    print("skipped: %s" % e)
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_reference import fmnist_images, preprocess_fmnist  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEAN, STD, SIZE = 0.286, 0.353, 64
AUG = "pad3 random-crop28 + hflip"


def _recipe(epochs, batch, max_lr, clip=None, finetune=None, density=None):
    opt = "SGD nesterov m0.9 wd5e-4 OneCycle max_lr%g" % max_lr + (" clip%g" % clip if clip else "")
    train = {"epochs": epochs}
    if finetune:
        train["finetune_after_prune"] = finetune
    train.update({"batch": batch, "opt": opt, "aug": AUG, "label_smoothing": 0.1,
                  "bf16_autocast": True, "seed": 0})
    return {"train": train, "max_lr": max_lr, "clip": clip, "density": density,
            "f16": density is not None}


DENSITY = {"classifier linear 1": 0.01, "classifier linear 2": 0.05}
RECIPES = {
    "resnet": _recipe(18, 512, 0.2),
    "vgg": _recipe(12, 256, 0.02, clip=5, finetune=3, density=DENSITY),
    "alexnet": _recipe(14, 256, 0.02, clip=5, finetune=4, density=DENSITY),
}


def recipe_for(arch):
    """The committed card whose network is closest: alexnet, vgg16 or resnet18."""
    if arch == "alexnet":
        return RECIPES["alexnet"]
    return RECIPES["vgg" if arch.startswith("vgg") else "resnet"]


def fmnist_split(fmnist_dir, split):
    """(N, 28, 28) uint8 tensor and (N,) int64 labels of a whole split."""
    with gzip.open(os.path.join(fmnist_dir, "%s-images-idx3-ubyte.gz" % split), "rb") as f:
        raw = f.read()
    magic, n, h, w = struct.unpack(">IIII", raw[:16])
    if magic != 2051 or h != 28 or w != 28:
        raise ValueError("%s: not a 28x28 IDX image file" % split)
    imgs = np.frombuffer(raw, dtype=np.uint8, count=n * h * w, offset=16).reshape(n, h, w)
    with gzip.open(os.path.join(fmnist_dir, "%s-labels-idx1-ubyte.gz" % split), "rb") as f:
        labels = np.frombuffer(f.read(), dtype=np.uint8, count=n, offset=8)
    return torch.from_numpy(imgs.copy()), torch.from_numpy(labels.astype(np.int64))


def augment(u8, gen):
    """Pad 3 + random crop 28 + random horizontal flip, per image, then the
    cards' preprocessing. u8: (B, 28, 28) uint8 on the training device."""
    b = u8.shape[0]
    oy = torch.randint(0, 7, (b,), generator=gen)
    ox = torch.randint(0, 7, (b,), generator=gen)
    flip = torch.rand(b, generator=gen) < 0.5
    return crop_flip(u8, oy.to(u8.device), ox.to(u8.device), flip.to(u8.device))


def crop_flip(u8, oy, ox, flip):
    """The 28x28 window at (oy, ox) of each zero-padded (34x34) image,
    mirrored where flip, preprocessed as the cards say; (B, 3, 64, 64)."""
    b = u8.shape[0]
    x = F.pad(u8.float() / 255.0, (3, 3, 3, 3))
    r = torch.arange(28, device=u8.device)
    rows = (oy[:, None] + r)[:, :, None]
    cols = ox[:, None] + torch.where(flip[:, None], 27 - r, r)
    x = x[torch.arange(b, device=u8.device)[:, None, None], rows, cols[:, None, :]]
    x = F.interpolate(x.unsqueeze(1), size=(SIZE, SIZE), mode="bilinear", align_corners=False,
                      antialias=False)
    return ((x - MEAN) / STD).repeat(1, 3, 1, 1)


def prunable(model):
    lin = [m for m in getattr(model, "classifier", []) if isinstance(m, torch.nn.Linear)]
    if len(lin) < 2:
        raise ValueError("the pruning recipe needs two Linear layers in model.classifier")
    return lin[:2]


def prune_masks(model, density):
    masks = []
    for lin, d in zip(prunable(model), density.values()):
        w = lin.weight.detach()
        k = int(round(d * w.numel()))
        keep = torch.zeros(w.numel(), dtype=torch.bool, device=w.device)
        keep[torch.topk(w.abs().flatten(), k).indices] = True
        masks.append((lin, keep.view_as(w)))
    apply_masks(masks)
    return masks


def apply_masks(masks):
    with torch.no_grad():
        for lin, keep in masks:
            lin.weight.mul_(keep)


def run_phase(model, rec, imgs, labels, epochs, batch, max_batches, dev, gen, masks, log):
    opt = torch.optim.SGD(model.parameters(), lr=rec["max_lr"], momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    steps = len(imgs) // batch
    if max_batches:
        steps = min(steps, max_batches)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=rec["max_lr"], total_steps=epochs * steps)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    model.train()
    for ep in range(epochs):
        perm = torch.randperm(len(imgs), generator=gen)
        total = 0.0
        for s in range(steps):
            idx = perm[s * batch:(s + 1) * batch].to(dev)
            x = augment(imgs[idx], gen)
            with torch.autocast(dev.type, dtype=torch.bfloat16):
                loss = loss_fn(model(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if rec["clip"]:
                torch.nn.utils.clip_grad_norm_(model.parameters(), rec["clip"])
            opt.step()
            sched.step()
            if masks:
                apply_masks(masks)
            total += float(loss)
        log("  epoch %d/%d: mean loss %.4f over %d batches" % (ep + 1, epochs, total / steps, steps))


def safetensors_bytes(sd, metadata):
    """The safetensors layout: u64 header length, JSON header (names sorted),
    raw little-endian data."""
    header, blobs, off = {"__metadata__": metadata}, [], 0
    for k in sorted(sd):
        a = sd[k].detach().cpu().contiguous().numpy()
        dtype = {np.float32: "F32", np.float16: "F16", np.int64: "I64"}[a.dtype.type]
        b = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[k] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


@torch.no_grad()
def evaluate(model, fmnist_dir, dev, limit):
    imgs, labels = fmnist_split(fmnist_dir, "t10k")
    n = limit or len(imgs)
    model.eval()
    correct = 0
    for s in range(0, n, 500):
        e = min(n, s + 500)
        x = preprocess_fmnist(imgs[s:e].numpy(), SIZE, MEAN, STD).to(dev)
        correct += int((model(x).argmax(1).cpu() == labels[s:e]).sum())
    first, lab16 = fmnist_images(fmnist_dir, 16)
    cpu = model.to("cpu")
    logits = cpu(preprocess_fmnist(first, SIZE, MEAN, STD)).double()
    model.to(dev)
    rounded = (torch.round(logits * 1e5) / 1e5).float()
    return correct / n, n, [[float(v) for v in row] for row in rounded.tolist()], lab16


def train_one(arch, a, dev, log):
    rec = recipe_for(arch)
    train = dict(rec["train"])
    epochs = a.epochs if a.epochs is not None else train["epochs"]
    finetune = a.finetune_epochs if a.finetune_epochs is not None else train.get("finetune_after_prune", 0)
    batch = a.batch or train["batch"]
    train["epochs"] = epochs
    if "finetune_after_prune" in train:
        train["finetune_after_prune"] = finetune
    train["batch"] = batch
    if a.max_batches:
        train["max_batches"] = a.max_batches
    if a.eval_limit:
        train["eval_images"] = a.eval_limit
    train["bf16_autocast"] = True

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = torchvision.models.__dict__[arch](num_classes=10).to(dev)
    imgs, labels = fmnist_split(a.fmnist, "train")
    imgs, labels = imgs.to(dev), labels.to(dev)
    log("%s on %s: %d epochs, batch %d" % (arch, dev, epochs, batch))
    run_phase(model, rec, imgs, labels, epochs, batch, a.max_batches, dev, gen, None, log)
    if rec["density"]:
        masks = prune_masks(model, rec["density"])
        log("%s: pruned the classifier to %s; fine-tuning %d epochs" % (arch, rec["density"], finetune))
        run_phase(model, rec, imgs, labels, finetune, batch, a.max_batches, dev, gen, masks, log)

    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if rec["f16"]:
        sd = {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}
        # The released model is these fp16 values: the card is computed from them.
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
    data = safetensors_bytes(sd, {"num_classes": "10", "arch": "torchvision.%s" % arch})
    top1, n, logits, lab16 = evaluate(model, a.fmnist, dev, a.eval_limit)

    card = {"arch": "%s (torchvision, num_classes=10)" % arch,
            "dataset": "Fashion-MNIST (t10k test set)", "test_top1": round(top1, 4)}
    if rec["f16"]:
        card["weights_dtype"] = "F16 (the released model is defined by these fp16 values)"
        card["classifier_density"] = rec["density"]
    card["input"] = {"size": SIZE, "channels": 3,
                     "resize": "bilinear align_corners=False antialias=False from 28x28",
                     "scale": "x/255", "mean": MEAN, "std": STD, "replicate_gray_to_rgb": True}
    card["train"] = train
    card["sha256"] = hashlib.sha256(data).hexdigest()
    card["reference_logits_first16"] = logits
    card["labels_first16"] = lab16
    card["torch"] = torch.__version__
    card["torchvision"] = torchvision.__version__

    base = os.path.join(a.out, "%s_fmnist64" % arch)
    if rec["f16"]:
        write_atomic(base + ".safetensors.xz", lzma.compress(data, format=lzma.FORMAT_XZ,
                                                             check=lzma.CHECK_CRC64, preset=a.xz_preset))
    else:
        write_atomic(base + ".safetensors", data)
    write_atomic(base + ".json", (json.dumps(card, indent=1) + "\n").encode())
    log("%s: top-1 %.4f on %d test images; wrote %s.json" % (arch, top1, n, base))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("arch", nargs="+", help="torchvision network names")
    ap.add_argument("--out", default=os.path.join(ROOT, "models"))
    ap.add_argument("--fmnist", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N")
    ap.add_argument("--epochs", type=int, help="smoke test: override the recipe's epochs")
    ap.add_argument("--finetune-epochs", type=int, help="smoke test: override the fine-tuning epochs")
    ap.add_argument("--batch", type=int, help="smoke test: override the recipe's batch")
    ap.add_argument("--max-batches", type=int, help="smoke test: at most N batches per epoch")
    ap.add_argument("--eval-limit", type=int, help="smoke test: top-1 on the first N test images")
    ap.add_argument("--xz-preset", type=int, default=9, help="xz level of F16 files (default 9)")
    a = ap.parse_args()
    if not os.path.exists(os.path.join(a.fmnist, "train-images-idx3-ubyte.gz")):
        print("skipped: no Fashion-MNIST in %s" % a.fmnist)
        return 77
    for arch in a.arch:
        if not callable(torchvision.models.__dict__.get(arch)):
            print("error: torchvision has no network '%s'" % arch, file=sys.stderr)
            return 2
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device)
    # The card's float32 figures must not come from TF32 arithmetic.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    os.makedirs(a.out, exist_ok=True)
    for arch in a.arch:
        train_one(arch, a, dev, lambda m: print(m, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
