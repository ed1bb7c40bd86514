#!/usr/bin/python3
"""Reference data for the ImageNet path tests (tests/test_imagenet_*.c).

Run with Debian's python3-torch, python3-torchvision, python3-pil:

    /usr/bin/python3 tools/make_imagenet_reference.py [pth] [images] [datasets]

Writes under tests/data/imagenet/:
  pth/     small torch.save checkpoints in the zip and the legacy format, plus
           files the loader must reject. Tensor values follow value(b, i) below,
           which tests/test_imagenet_pth.c recomputes.
  images/  small JPEG/PNG images of many sizes and colour types; index.txt
           lists for each the sizes and the sha256 of Pillow's decoded RGB,
           of Resize(256)'s uint8 output and of the final float32 tensor
           (ToTensor + Normalize after CenterCrop(224)); for a few, the
           reference crop itself is committed as <name>.crop.png.
  datasets/ tiny ImageFolder tree and flat layouts with label files, and
           tree_expected.txt: ImageFolder's order, labels and tensor hashes.
Everything is deterministic (fixed seeds), so re-running reproduces the files.
"""
import collections
import io
import os
import pickle
import sys
import zipfile

import numpy as np
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "imagenet")


def value(b, i):
    """Element i (C order of the tensor it is stored in) of a tensor with base b:
    exactly representable in float16 and bfloat16."""
    return b + (((i * 7) % 23) - 11) * 0.125


def filled(b, shape, dtype=torch.float32):
    n = int(np.prod(shape)) if len(shape) else 1
    t = torch.tensor([value(b, i) for i in range(n)], dtype=torch.float64)
    return t.reshape(shape).to(dtype)


def tiny_state_dict():
    sd = collections.OrderedDict()
    sd["conv.weight"] = filled(0, (4, 3, 3, 3))
    sd["conv.bias"] = filled(1, (4,))
    sd["bn.running_mean"] = filled(2, (4,))
    sd["bn.num_batches_tracked"] = torch.tensor(7, dtype=torch.int64)
    sd["half"] = filled(3, (5, 2), torch.float16)
    sd["bf"] = filled(4, (3, 4), torch.bfloat16)
    sd["dbl"] = filled(5, (2, 2), torch.float64)
    x = filled(6, (3, 5))
    sd["tview"] = x.t()  # (5, 3), strides (1, 5): not contiguous
    y = filled(7, (12,))
    sd["shared_a"] = y[2:5]  # offset 2 into a shared storage
    sd["shared_b"] = y[5:9].view(2, 2)  # offset 5, same storage
    sd["param"] = torch.nn.Parameter(filled(-1, (2, 3)))
    sd["empty"] = torch.zeros((0, 4))
    return sd


class _FakeStorage:
    pass


class _BadTensor:
    """Pickles like a tensor whose size needs 10 elements of a 4-element storage."""

    def __init__(self, st):
        self.st = st

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2,
                (self.st, 0, (10,), (1,), False, collections.OrderedDict()))


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _FakeStorage):
            return ("storage", torch.FloatStorage, "0", "cpu", 4)
        return None


def make_pth():
    d = os.path.join(ROOT, "pth")
    os.makedirs(d, exist_ok=True)
    sd = tiny_state_dict()
    torch.save(sd, os.path.join(d, "tiny_zip.pth"))
    torch.save(sd, os.path.join(d, "tiny_legacy.pth"), _use_new_zipfile_serialization=False)
    torch.save(sd, os.path.join(d, "tiny_proto4.pth"), pickle_protocol=4)
    dp = collections.OrderedDict(("module." + k, v) for k, v in sd.items())
    torch.save(dp, os.path.join(d, "tiny_module.pth"))
    torch.save(dp, os.path.join(d, "tiny_module_legacy.pth"), _use_new_zipfile_serialization=False)
    torch.save({"epoch": 3, "arch": "tiny", "state_dict": sd}, os.path.join(d, "tiny_ckpt.pth"))
    # The same archive with every member deflated (other zip writers do this).
    with zipfile.ZipFile(os.path.join(d, "tiny_zip.pth")) as zin, \
            zipfile.ZipFile(os.path.join(d, "tiny_deflate.pth"), "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename.replace("tiny_zip/", "tiny_deflate/"), zin.read(info.filename))
    # Rejected: an object the loader does not understand.
    import argparse
    torch.save({"args": argparse.Namespace(lr=0.1), "w": torch.ones(2)}, os.path.join(d, "bad_global.pth"))
    # Rejected: a tensor larger than its storage (hand-made pickle in a torch-style zip).
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(collections.OrderedDict([("w", _BadTensor(_FakeStorage()))]))
    with zipfile.ZipFile(os.path.join(d, "bad_extent.pth"), "w", zipfile.ZIP_STORED) as z:
        z.writestr("bad_extent/data.pkl", buf.getvalue())
        z.writestr("bad_extent/data/0", np.arange(4, dtype="<f4").tobytes())
        z.writestr("bad_extent/version", "3\n")
    # Rejected: a storage the pickle names but the archive lacks.
    with zipfile.ZipFile(os.path.join(d, "tiny_zip.pth")) as zin, \
            zipfile.ZipFile(os.path.join(d, "bad_missing.pth"), "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            if info.filename.endswith("/data/1"):
                continue
            zout.writestr(info.filename.replace("tiny_zip/", "bad_missing/"), zin.read(info.filename))
    for f in sorted(os.listdir(d)):
        print("pth/%s %d bytes" % (f, os.path.getsize(os.path.join(d, f))))


# ---------------------------------------------------------------- images

# Images whose reference crop is committed as PNG (the rest carry hashes only,
# to keep tests/data small).
CROP_PNG = "agm"
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def synth(w, h, seed, noise=1.0):
    """A deterministic, photo-like RGB image: smooth shading, hard-edged
    shapes (to exercise ringing and clipping in the resampler) and mild noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    for c in range(3):
        fx, fy, ph = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 6.3)
        img[..., c] = 128 + 70 * np.sin(fx * 2 * np.pi * x / w + ph) * np.cos(fy * 2 * np.pi * y / h)
    for _ in range(6):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = rng.uniform(0.05, 0.3) * w, rng.uniform(0.05, 0.3) * h
        col = rng.integers(0, 256, 3)
        m = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 < 1
        img[m] = col
    # a black/white stripe pattern: full-range edges
    sx = int(rng.uniform(0.1, 0.6) * w)
    img[: h // 5, sx: sx + max(4, w // 8)] = np.where((x[: h // 5, sx: sx + max(4, w // 8)] // 2) % 2 == 0, 255, 0)[..., None]
    img += rng.normal(0, noise, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def png_chunk(kind, data):
    import struct
    import zlib
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png(path, arr, color_type, bit_depth, interlace=False):
    """A minimal PNG writer for what Pillow cannot write (16-bit RGB, Adam7)."""
    import struct
    import zlib
    h, w = arr.shape[:2]
    bps = bit_depth // 8
    chans = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]

    def rows(a):
        out = b""
        for r in a:
            flat = r.reshape(-1)
            out += b"\x00" + (flat.astype(">u2").tobytes() if bps == 2 else flat.astype(np.uint8).tobytes())
        return out

    a = arr.reshape(h, w, chans)
    if interlace:
        raw = b""
        for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)):
            sub = a[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                raw += rows(sub)
    else:
        raw = rows(a)
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 1 if interlace else 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b""))


def make_sources(d):
    from PIL import Image
    imgs = []

    def add(name):
        imgs.append(name)
        return os.path.join(d, name)

    Image.fromarray(synth(500, 375, 1)).save(add("a_rgb_500x375.jpg"), quality=85)
    Image.fromarray(synth(333, 500, 2)).save(add("b_rgb444_333x500.jpg"), quality=90, subsampling=0)
    Image.fromarray(synth(100, 80, 3)).save(add("c_small_100x80.jpg"), quality=90)
    Image.fromarray(synth(300, 260, 4)[..., 1]).save(add("d_gray_300x260.jpg"), quality=85)
    Image.fromarray(synth(240, 320, 5)).convert("CMYK").save(add("e_cmyk_240x320.jpg"), quality=85)
    Image.fromarray(synth(400, 300, 6)).save(add("f_progressive_400x300.jpg"), quality=80, progressive=True, subsampling=1)
    Image.fromarray(synth(150, 200, 7, noise=0)).convert("P", palette=Image.ADAPTIVE, colors=60).save(add("g_palette_150x200.png"))
    alpha = np.tile(np.linspace(0, 255, 160).astype(np.uint8), (110, 1))
    rgba = np.dstack([synth(160, 110, 8, noise=0), alpha])
    Image.fromarray(rgba, "RGBA").save(add("h_rgba_160x110.png"))
    g16 = (synth(64, 48, 10)[..., 0].astype(np.uint16) * 3)  # values up to 765: Pillow clamps to 255
    write_png(add("i_gray16_64x48.png"), g16, 0, 16)
    la = np.dstack([synth(90, 120, 11)[..., 2], synth(90, 120, 12)[..., 0]])
    Image.fromarray(la, "LA").save(add("j_la_90x120.png"))
    rgb16 = synth(70, 50, 13).astype(np.uint16) * 257 + np.arange(70, dtype=np.uint16)[None, :, None]
    write_png(add("k_rgb16_70x50.png"), rgb16, 2, 16)
    Image.fromarray(synth(256, 300, 14)).save(add("l_exact_256x300.jpg"), quality=80)
    Image.fromarray(synth(7, 3, 15)).save(add("m_tiny_7x3.png"))
    Image.fromarray(synth(33, 40, 16)[..., 0] > 128).save(add("n_gray1bit_33x40.png"))
    write_png(add("o_interlaced_120x90.png"), synth(120, 90, 17, noise=0), 2, 8, interlace=True)
    Image.fromarray(synth(900, 110, 18)).save(add("p_wide_900x110.jpg"), quality=80)
    Image.fromarray(synth(224, 224, 19)).save(add("q_square_224.jpg"), quality=85)
    return imgs


def make_images():
    import hashlib
    from PIL import Image
    import torchvision.transforms as T

    d = os.path.join(ROOT, "images")
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        os.remove(os.path.join(d, f))
    names = make_sources(d)
    resize, crop = T.Resize(256), T.CenterCrop(224)
    norm = T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])
    lines = ["# name width height resized_w resized_h sha256(decoded RGB) sha256(resized RGB) "
             "sha256(tensor float32 LE); reference crop (some): <name>.crop.png"]
    for n in names:
        with open(os.path.join(d, n), "rb") as f:
            img = Image.open(f)
            img = img.convert("RGB")  # torchvision's pil_loader
        dec = np.asarray(img)
        r = resize(img)
        c = crop(r)
        t = norm(c)
        arr_c = np.asarray(c)
        # The tensor is float32 (u8 / 255 - mean) / std, elementwise: the C test
        # rebuilds it from the crop with exactly this, so check it here.
        m32 = np.array(MEAN, dtype=np.float32)[:, None, None]
        s32 = np.array(STD, dtype=np.float32)[:, None, None]
        ref = (arr_c.transpose(2, 0, 1).astype(np.float32) / np.float32(255) - m32) / s32
        assert np.array_equal(ref, t.numpy()), n
        if n[0] in CROP_PNG:  # full reference pixels for a few; hashes for all
            c.save(os.path.join(d, n + ".crop.png"), optimize=True)
        h = lambda a: hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
        lines.append("%s %d %d %d %d %s %s %s" % (n, img.size[0], img.size[1], r.size[0], r.size[1], h(dec),
                                                  h(np.asarray(r)), h(t.numpy().astype("<f4"))))
    with open(os.path.join(d, "index.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    total = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    for f in sorted(os.listdir(d)):
        print("images/%s %d bytes" % (f, os.path.getsize(os.path.join(d, f))))
    print("images total %d bytes" % total)


# ------------------------------------------------------------- datasets

def make_datasets():
    """Tiny directory layouts for tests/test_imagenet_dataset.c, with the
    order, labels and tensor hashes torchvision's ImageFolder gives."""
    import hashlib
    import shutil
    from PIL import Image
    import torchvision.datasets as D
    import torchvision.transforms as T

    d = os.path.join(ROOT, "datasets")
    shutil.rmtree(d, ignore_errors=True)
    tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(MEAN, STD)])

    def img(path, seed, w=24, h=18, fmt=None):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(synth(w, h, seed)).save(path, format=fmt, quality=90)

    tree = os.path.join(d, "tree")
    img(os.path.join(tree, "n01440764", "b.jpg"), 101)
    img(os.path.join(tree, "n01440764", "A.JPEG"), 102, 30, 20, "JPEG")
    img(os.path.join(tree, "n01440764", "sub", "c.png"), 103, 16, 26)
    img(os.path.join(tree, "n01440764", "sub-x", "d.png"), 104)
    img(os.path.join(tree, "n01440764", "sub", "deep", "c2.png"), 108)  # after sub-x: '-' < '/'
    img(os.path.join(tree, "n01443537", "e.png"), 105, 40, 12)
    with open(os.path.join(tree, "n01443537", "notes.txt"), "w") as f:
        f.write("not an image\n")
    img(os.path.join(tree, "n01443537", "f.BMP"), 106, fmt="BMP")  # listed, not decodable
    img(os.path.join(tree, "n02_other", "g.jpg"), 107)
    with open(os.path.join(tree, "n02_other", "g.jpg"), "rb") as f:
        data = f.read()
    with open(os.path.join(tree, "n02_other", "h_truncated.jpg"), "wb") as f:
        f.write(data[: len(data) // 2])
    ds = D.ImageFolder(tree)
    lines = []
    for path, label in ds.samples:
        rel = os.path.relpath(path, tree)
        try:
            with open(path, "rb") as f:
                t = tf(Image.open(f).convert("RGB"))
            h = hashlib.sha256(t.numpy().astype("<f4").tobytes()).hexdigest()
        except Exception:
            h = "unreadable"
        lines.append("%s %d %s" % (rel, label, h))
    with open(os.path.join(d, "tree_expected.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")

    flat = os.path.join(d, "flat")
    names = ["ILSVRC2012_val_00000003.JPEG", "ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.png"]
    for i, n in enumerate(names):
        img(os.path.join(flat, n), 200 + i, 20 + 4 * i, 18)
    with open(os.path.join(flat, "val.txt"), "w") as f:  # Caffe style: file label
        f.write("ILSVRC2012_val_00000002.png 7\nILSVRC2012_val_00000001.JPEG 65\nILSVRC2012_val_00000003.JPEG 0\n")
    with open(os.path.join(d, "flat_bare_labels.txt"), "w") as f:  # sorted order: 1, 2, 3
        f.write("65\n7\n0\n")
    with open(os.path.join(d, "flat_solution.csv"), "w") as f:  # Kaggle style
        f.write("ImageId,PredictionString\n"
                "ILSVRC2012_val_00000001,n01751748 1 2 3 4 n01751748 5 6 7 8\n"
                "ILSVRC2012_val_00000003,n01440764 1 2 3 4\n"
                "ILSVRC2012_val_00000002,n09999999 1 2 3 4\n")
    for root, _, files in sorted(os.walk(d)):
        for fn in sorted(files):
            print("datasets/%s %d bytes" % (os.path.relpath(os.path.join(root, fn), d),
                                            os.path.getsize(os.path.join(root, fn))))


if __name__ == "__main__":
    what = sys.argv[1:] or ["pth", "images", "datasets"]
    if "pth" in what:
        make_pth()
    if "images" in what:
        make_images()
    if "datasets" in what:
        make_datasets()
