#!/usr/bin/env python3
"""Reference data for tests/test_io_preprocess.c, made with PyTorch.

Preprocessing of the reference models' cards (SPEC section 5):
  uint8 28x28 -> x/255 (float32) -> F.interpolate(size=64, mode='bilinear',
  align_corners=False, antialias=False) -> (x - 0.2860)/0.3530 -> 3 channels.

Replicating the gray plane to 3 channels before the resize gives the same
values as replicating after it in exact arithmetic; we do it first because
torch's CPU kernel for C >= 2 is the generic one that cwba mirrors bit for bit,
while torch 1.13 sends single-channel (N,1,H,W) inputs through another kernel
whose sums round differently (at most 1 ulp; printed below for the record).

Writes into tests/data/io/:
  fmnist_test_first4_input.npy  (4, 3, 64, 64) preprocessed test images 0..3
  ramp28_u8.npy                 (28, 28) synthetic uint8 ramp, stored as float32
  ramp28_input.npy              (3, 64, 64) the ramp preprocessed
  resize_src.npy                (28, 28) test image 0 / 255
  resize_20x36.npy              (20, 36) bilinear resize of resize_src (down in H, up in W)
Usage: /usr/bin/python3 tools/make_preprocess_reference.py [FMNIST_DIR]
"""
import gzip
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "io")
MEAN, STD, SIZE = 0.2860, 0.3530, 64


def load_images(d, n):
    with gzip.open(os.path.join(d, "t10k-images-idx3-ubyte.gz"), "rb") as f:
        raw = f.read()
    assert int.from_bytes(raw[:4], "big") == 0x803
    return np.frombuffer(raw[16:16 + n * 784], np.uint8).reshape(n, 28, 28)


def resize(x, h, w):
    """x: (N, 1, H, W) float32 -> (N, 1, h, w), through torch's C >= 2 kernel."""
    n = x.shape[0]
    y = F.interpolate(x.expand(n, 3, x.shape[2], x.shape[3]).contiguous(), size=(h, w),
                      mode="bilinear", align_corners=False, antialias=False)
    return y[:, :1].contiguous()


def preprocess(u8):
    """u8: (N, 28, 28) uint8 -> (N, 3, 64, 64) float32."""
    x = torch.from_numpy(u8.astype(np.float32)).unsqueeze(1) / 255.0
    y = resize(x, SIZE, SIZE)
    single = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    print("  single-channel kernel differs by at most %.3g (%d of %d values)"
          % ((single - y).abs().max().item(), (single != y).sum().item(), y.numel()))
    mean = torch.tensor(MEAN, dtype=torch.float32)
    std = torch.tensor(STD, dtype=torch.float32)
    y = (y - mean) / std
    return y.expand(-1, 3, -1, -1).contiguous().numpy()


def save(name, a):
    a = np.ascontiguousarray(a, dtype="<f4")
    np.save(os.path.join(OUT, name), a)
    print("wrote %s %s (%d bytes)" % (name, a.shape, os.path.getsize(os.path.join(OUT, name))))


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
    os.makedirs(OUT, exist_ok=True)
    imgs = load_images(d, 4)
    save("fmnist_test_first4_input.npy", preprocess(imgs))

    i, j = np.mgrid[0:28, 0:28]
    ramp = ((i * 9 + j * 5) % 256).astype(np.uint8)  # covers 0..255 with sharp wraps
    save("ramp28_u8.npy", ramp.astype(np.float32))
    save("ramp28_input.npy", preprocess(ramp[None])[0])

    src = torch.from_numpy(imgs[0].astype(np.float32)) / 255.0
    save("resize_src.npy", src.numpy())
    save("resize_20x36.npy", resize(src[None, None], 20, 36)[0, 0].numpy())


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
