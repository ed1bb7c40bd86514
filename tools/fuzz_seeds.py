#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/).

Seeds are small valid files of each format, copied from the project's test
data or made here with the standard library only, plus edge cases that the
parsers must reject cleanly. Run from the repository root:
    python3 tools/fuzz_seeds.py
It rewrites fuzz/corpus/ (never fuzz/regressions/, which holds findings)."""
import gzip
import json
import lzma
import os
import shutil
import struct
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def copy(target, src, name=None):
    put(target, name or os.path.basename(src), open(os.path.join(ROOT, src), "rb").read())


# ------------------------------------------------------------ safetensors
def safetensors(tensors, metadata=None, pad=True):
    """tensors: list of (name, dtype, shape, raw bytes)."""
    header, data = {}, b""
    for name, dt, shape, raw in tensors:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata is not None:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def gen_safetensors():
    f32 = struct.pack("<6f", 1.0, -2.5, 0.0, 3.25, float("inf"), -0.0)
    put("safetensors", "f32_2x3.safetensors", safetensors([("conv.weight", "F32", [2, 3], f32)]))
    put("safetensors", "mixed.safetensors", safetensors([
        ("a", "F16", [2, 2], struct.pack("<4H", 0x3C00, 0x0001, 0x7C00, 0xFE00)),
        ("b", "BF16", [3], struct.pack("<3H", 0x3F80, 0xC000, 0x0001)),
        ("c", "F64", [1], struct.pack("<d", 1e-300)),
        ("bn.num_batches_tracked", "I64", [], struct.pack("<q", 7)),
        ("empty", "F32", [0, 4], b""),
        ("scalar", "F32", [], struct.pack("<f", 2.0)),
    ], metadata={"format": "pt"}))
    put("safetensors", "empty_header.safetensors", safetensors([]))
    put("safetensors", "f32.safetensors.xz",
        lzma.compress(safetensors([("w", "F32", [4], struct.pack("<4f", 1, 2, 3, 4))])))
    # Rejected: offsets past the data, shape/offset mismatch, duplicate key, header too long.
    put("safetensors", "bad_offsets.safetensors", safetensors([("w", "F32", [4], b"\0" * 8)]))
    h = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    put("safetensors", "bad_duplicate.safetensors", struct.pack("<Q", len(h)) + h + b"\0" * 4)
    put("safetensors", "bad_hlen.safetensors", struct.pack("<Q", 1 << 40) + b"{}")
    h = b'{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}'
    put("safetensors", "bad_shape_overflow.safetensors", struct.pack("<Q", len(h)) + h + b"\0" * 4)


# ------------------------------------------------------------------- npy
def npy(descr, shape, raw, major=1, fortran=False):
    shp = f"({shape[0]},)" if len(shape) == 1 else "(" + ", ".join(str(s) for s in shape) + ")"
    d = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shp}, }}".encode()
    pre = 10 if major == 1 else 12
    total = (pre + len(d) + 1 + 63) // 64 * 64
    d += b" " * (total - pre - len(d) - 1) + b"\n"
    hl = struct.pack("<H", len(d)) if major == 1 else struct.pack("<I", len(d))
    return b"\x93NUMPY" + bytes([major, 0]) + hl + d + raw


def gen_npy():
    put("npy", "f4_2x3.npy", npy("<f4", [2, 3], struct.pack("<6f", *range(6))))
    put("npy", "f8_4.npy", npy("<f8", [4], struct.pack("<4d", 1.5, -1e300, 1e-320, 0.0)))
    put("npy", "f2_2x2.npy", npy("<f2", [2, 2], struct.pack("<4H", 0x3C00, 0x8001, 0x7C00, 0x7E00)))
    put("npy", "scalar.npy", npy("<f4", [], struct.pack("<f", 3.0)))
    put("npy", "empty.npy", npy("<f4", [0, 5], b""))
    put("npy", "v2_1x1x1.npy", npy("<f4", [1, 1, 1], struct.pack("<f", 1.0), major=2))
    put("npy", "v3_3.npy", npy("<f4", [3], struct.pack("<3f", 1, 2, 3), major=3))
    # Rejected: Fortran order, big-endian, too little data, 9 dimensions.
    put("npy", "bad_fortran.npy", npy("<f4", [2], struct.pack("<2f", 1, 2), fortran=True))
    put("npy", "bad_bigendian.npy", npy(">f4", [2], struct.pack(">2f", 1, 2)))
    put("npy", "bad_short.npy", npy("<f4", [4], struct.pack("<2f", 1, 2)))
    put("npy", "bad_9dims.npy", npy("<f4", [1] * 9, struct.pack("<f", 1)))
    copy("npy", "tests/data/io/resize_src.npy")
    copy("npy", "tests/data/io/ramp28_u8.npy")


# ------------------------------------------------------------- model cards
def gen_card():
    copy("card", "models/resnet18_fmnist64.json")
    card = {"arch": "alexnet", "sha256": "ab" * 32, "test_top1": 0.5,
            "input": {"size": 8, "mean": 0.1, "std": 0.2},
            "reference_logits_first16": [[1.0, 2.0, -3.5], [0.0, 1e30, -1e-30]]}
    put("card", "small.json", json.dumps(card).encode())
    del card["reference_logits_first16"]
    put("card", "no_logits.json", json.dumps(card).encode())
    card["reference_logits_first16"] = [[1.0, 2.0], [3.0]]
    put("card", "bad_ragged.json", json.dumps(card).encode())
    card["reference_logits_first16"] = [[0.0] * 64] + [[]] * 64
    put("card", "bad_long_row0.json", json.dumps(card).encode())
    card = {"arch": "x" * 40, "sha256": "zz", "test_top1": 2}
    put("card", "bad_fields.json", json.dumps(card).encode())
    put("card", "bad_json.json", b'{"arch": "resnet18", "sha256": ')


# -------------------------------------------------------- interval tables
def gen_table():
    put("table", "3x4.csv", b"1,2,3,4\n5,6,7,8\n9,10,11,12\n")
    put("table", "crlf_spaces.csv", b" 2, 3 ,4\r\n2,3,4\r\n")
    put("table", "one_value.csv", b"7")
    put("table", "wide.csv", (",".join(str(1 + i % 127) for i in range(256)) + "\n").encode() * 3)
    put("table", "bad_zero.csv", b"1,0,3\n")
    put("table", "bad_ragged.csv", b"1,2,3\n1,2\n")
    put("table", "bad_empty_line.csv", b"1,2\n\n1,2\n")
    put("table", "bad_too_large.csv", b"1,99999999999\n")
    put("table", "bad_sign.csv", b"-1,2\n")
    put("table", "bad_nul.csv", b"1,2\x003\n")


# --------------------------------------------------------------- IDX files
def idx(magic, dims, payload):
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + payload


def gen_idx():
    # The first byte of an input picks which file it is (fuzz/fuzz_idx.c).
    imgs = idx(0x803, [3, 2, 4], bytes(range(24)))
    put("idx", "images_3x2x4", b"\0" + imgs)
    put("idx", "images_3x2x4.gz", b"\0" + gzip.compress(imgs, mtime=0))
    labels = idx(0x801, [5], bytes([0, 9, 3, 3, 1]))
    put("idx", "labels_5", b"\1" + labels)
    put("idx", "labels_5.gz", b"\1" + gzip.compress(labels, mtime=0))
    real = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
    if os.path.exists(real):
        with gzip.open(real) as f:
            head = f.read(16 + 4 * 784)
        put("idx", "fmnist_first4.gz", b"\0" + gzip.compress(idx(0x803, [4, 28, 28], head[16:]), mtime=0))
    real = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz"
    if os.path.exists(real):
        with gzip.open(real) as f:
            head = f.read(8 + 64)
        put("idx", "fmnist_labels64", b"\1" + idx(0x801, [64], head[8:]))
    # Rejected: a bad label, a wrong magic, trailing bytes, a zero dimension,
    # cut gzip data (a header claiming far more than the file holds is in
    # fuzz/regressions/idx/).
    put("idx", "bad_label", b"\1" + idx(0x801, [2], bytes([1, 10])))
    put("idx", "bad_magic", b"\0" + idx(0x801, [1, 1, 1], b"\0"))
    put("idx", "bad_trailing", b"\0" + idx(0x803, [1, 1, 1], b"\0\0"))
    put("idx", "bad_zero_dim", b"\0" + idx(0x803, [1, 0, 1], b""))
    put("idx", "bad_gzip.gz", b"\0" + gzip.compress(imgs, mtime=0)[:-12])


# ------------------------------------------------------------------ images
def png(w, h, ctype, depth, rows, interlace=0, extra=b""):
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, interlace)
    raw = b"".join(b"\0" + r for r in rows)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def gen_image():
    for src in ["tests/data/imagenet/images/c_small_100x80.jpg", "tests/data/imagenet/images/q_square_224.jpg",
                "tests/data/imagenet/images/m_tiny_7x3.png", "tests/data/imagenet/images/n_gray1bit_33x40.png",
                "tests/data/imagenet/images/i_gray16_64x48.png", "tests/data/imagenet/images/g_palette_150x200.png",
                "tests/data/imagenet/datasets/flat/ILSVRC2012_val_00000001.JPEG",
                "tests/data/imagenet/datasets/flat/ILSVRC2012_val_00000002.png",
                "tests/data/imagenet/images/f_progressive_400x300.jpg",
                "tests/data/imagenet/images/e_cmyk_240x320.jpg",
                "tests/data/imagenet/images/d_gray_300x260.jpg"]:
        copy("image", src)
    put("image", "rgb8_2x2.png", png(2, 2, 2, 8, [bytes([255, 0, 0, 0, 255, 0]), bytes([0, 0, 255, 9, 9, 9])]))
    put("image", "rgba16_1x1.png", png(1, 1, 6, 16, [bytes(range(8))]))
    put("image", "la8_3x1.png", png(3, 1, 4, 8, [bytes(range(6))]))
    put("image", "gray2_5x2.png", png(5, 2, 0, 2, [bytes([0x1B, 0x60]), bytes([0xE4, 0x00])]))
    # Adam7 of 2x2: pass 1 holds (0,0), pass 6 (1,0), pass 7 row 1.
    put("image", "gray8_2x2_interlaced.png", png(2, 2, 0, 8, [b"\x10", b"\x20", b"\x30\x40"], interlace=1))
    plte = struct.pack(">I", 6) + b"PLTE" + bytes([1, 2, 3, 4, 5, 6])
    plte += struct.pack(">I", zlib.crc32(plte[4:]) & 0xFFFFFFFF)
    put("image", "palette4_3x1_index_past_plte.png", png(3, 1, 3, 4, [bytes([0x01, 0x50])], extra=plte))
    put("image", "bad_truncated.png", png(4, 4, 2, 8, [bytes(12)] * 4)[:-20])
    put("image", "bad_huge_ihdr.png", png(16384, 16384, 6, 8, [bytes(4)]))
    put("image", "gif_magic.gif", b"GIF89a\1\0\1\0\0\0\0;")
    jpg = open(os.path.join(ROOT, "tests/data/imagenet/images/c_small_100x80.jpg"), "rb").read()
    put("image", "bad_truncated.jpg", jpg[: len(jpg) // 2])


# ---------------------------------------------------------------- .pth files
def gen_pth():
    d = os.path.join(ROOT, "tests/data/imagenet/pth")
    for name in sorted(os.listdir(d)):
        copy("pth", os.path.join("tests/data/imagenet/pth", name))


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    gen_safetensors()
    gen_npy()
    gen_card()
    gen_table()
    gen_idx()
    gen_image()
    gen_pth()
    for t in sorted(os.listdir(OUT)):
        print(t, len(os.listdir(os.path.join(OUT, t))), "seeds")


if __name__ == "__main__":
    main()
