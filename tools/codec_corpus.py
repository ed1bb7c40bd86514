#!/usr/bin/env python3
"""Writes tests/data/codec/: valid bitstreams and a corpus of bad ones.

This is a second, independent encoder of the format, written from
docs/bitstream.md alone (it shares no code with src/codec). The C decoder must
accept its valid streams and return exactly the codes listed in the matching
.expect files, and must reject every bad stream with the message listed in
manifest.tsv.

Usage: python3 tools/codec_corpus.py [OUTDIR]   (default tests/data/codec)
"""
import math
import os
import struct
import sys
import zlib

MAX_N = (1 << 24) - 1


# ----------------------------------------------------------- range encoder
class RangeEncoder:
    def __init__(self):
        self.low = 0
        self.range = 0xFFFFFFFF
        self.cache = 0
        self.pending = 1
        self.out = bytearray()

    def _shift(self):
        if self.low < 0xFF000000 or self.low >= (1 << 32):
            carry = self.low >> 32
            self.out.append((self.cache + carry) & 0xFF)
            for _ in range(self.pending - 1):
                self.out.append((0xFF + carry) & 0xFF)
            self.pending = 0
            self.cache = (self.low >> 24) & 0xFF
        self.pending += 1
        self.low = (self.low & 0x00FFFFFF) << 8

    def _normalize(self):
        while self.range < (1 << 24):
            self.range = (self.range << 8) & 0xFFFFFFFF
            self._shift()

    def uniform16(self, v, M):
        assert 2 <= M <= 65536 and 0 <= v < M
        r = self.range // M
        self.low += r * v
        self.range = r
        self._normalize()

    def uniform(self, v, M):
        assert 1 <= M <= (1 << 24) and 0 <= v < M
        while M > 65536:
            self.uniform16(v & 255, 256)
            v >>= 8
            M = (M + 255) // 256
        if M > 1:
            self.uniform16(v, M)

    def bit(self, b, probs, i):
        p = probs[i]
        bound = (self.range >> 16) * p
        if not b:
            self.range = bound
            probs[i] = p + ((65536 - p) >> 5)
        else:
            self.low += bound
            self.range -= bound
            probs[i] = p - (p >> 5)
        self._normalize()

    def finish(self):
        hi = self.low + self.range
        for s in (32, 24, 16, 8):
            v = -(-self.low // (1 << s)) * (1 << s)
            if v < hi:
                self.low = v
                break
        for _ in range(5):
            self._shift()
        data = bytes(self.out)
        assert data[0] == 0, "the first byte out is always 0"
        return data[1:].rstrip(b"\x00")


def bitlength(v):
    return v.bit_length()


def value_model(enc, probs, v, n):
    """docs/bitstream.md §6.1; probs is a list of 48 ints."""
    enc.bit(1 if v else 0, probs, 0)
    if v == 0:
        return
    emax = bitlength(n) - 1
    e = bitlength(v) - 1
    for i in range(emax):
        more = 1 if e > i else 0
        enc.bit(more, probs, 1 + i)
        if not more:
            break
    if e == 0:
        return
    r = v - (1 << e)
    cnt = n - (1 << e) + 1 if e == emax else (1 << e)
    if cnt == (1 << e):
        half = 1 << (e - 1)
        enc.bit(1 if r >= half else 0, probs, 24 + e)
        enc.uniform(r % half, half)
    else:
        enc.uniform(r, cnt)


def new_sets(count):
    return [[32768] * 48 for _ in range(count)]


# ------------------------------------------------------------------ format
def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def name(s):
    b = s.encode("ascii")
    return bytes([len(b)]) + b


def f32(x):
    return struct.pack("<f", x)


def side_section(n, nmin, span, ncode):
    enc = RangeEncoder()
    if ncode == 1:
        for nc in n:
            enc.uniform(nc - nmin, span + 1)
    else:
        sets = new_sets(26)
        prev = 0
        for c, nc in enumerate(n):
            t = 0 if c == 0 else 1 + bitlength(prev)
            prev = nc - nmin
            value_model(enc, sets[t], prev, span)
    return enc.finish()


def payload(codes, n, C, H, W, mode):
    enc = RangeEncoder()
    sets = new_sets(24 * 26) if mode == 1 else None
    for c in range(C):
        q = codes[c]
        for y in range(H):
            for x in range(W):
                v = q[y * W + x]
                if mode == 0:
                    enc.uniform(v, n[c] + 1)
                    continue
                if y == 0 and x == 0:
                    t = 0
                else:
                    if y == 0:
                        m = q[x - 1]
                    elif x == 0:
                        m = q[(y - 1) * W]
                    else:
                        m = (q[y * W + x - 1] + q[(y - 1) * W + x] + 1) >> 1
                    t = 1 + bitlength(m)
                k = bitlength(n[c])
                value_model(enc, sets[(k - 1) * 26 + t], v, n[c])
    return enc.finish()


def stream(model, split, C, H, W, quant, n, codes, mode=0, ncode=None, mn=0.0, mx=1.0,
           bits=4, clip=0.9, version=1, flags=0, magic=b"CWBA", raw=None):
    """Builds a stream. `raw` may override encoded pieces to make bad streams."""
    raw = raw or {}
    h = bytearray(magic) + bytes([version, flags]) + name(model) + name(split)
    h += struct.pack("<HHH", C, H, W) + bytes([quant])
    if quant == 2:
        h += bytes([bits]) + f32(clip)
    else:
        h += raw.get("mn", f32(mn)) + raw.get("mx", f32(mx))
    h += bytes([mode])
    if quant != 2:
        nmin, nmax = min(n), max(n)
        if ncode is None:
            ncode = 0 if nmin == nmax else 1
        h += bytes([ncode]) + raw.get("nmin", varint(nmin))
        if ncode != 0:
            side = raw["side"] if "side" in raw else side_section(n, nmin, nmax - nmin, ncode)
            h += varint(nmax - nmin) + raw.get("side_len", varint(len(side))) + side
    flat = quant != 2 and mn == mx
    if "payload" in raw:
        pay = raw["payload"]
    else:
        pay = b"" if flat else payload(codes, n, C, H, W, mode)
    h += raw.get("payload_len", varint(len(pay))) + pay
    return bytes(h) + struct.pack("<I", zlib.crc32(bytes(h)) & 0xFFFFFFFF)


def expect_file(n, codes):
    out = bytearray()
    out += struct.pack("<I", len(n))
    for nc in n:
        out += struct.pack("<I", nc)
    for q in codes:
        for v in q:
            out += struct.pack("<I", v)
    return bytes(out)


def with_crc(body):
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "codec")
    os.makedirs(out, exist_ok=True)
    manifest = []
    files = {}

    def put(fname, data, status, text):
        files[fname] = data
        manifest.append((fname, status, text))

    # Deterministic codes: a ReLU-like pattern (many zeros, small values
    # next to small values) and a uniform-looking one.
    def relu_codes(n, C, H, W):
        codes = []
        for c in range(C):
            row = []
            for i in range(H * W):
                y, x = divmod(i, W)
                s = math.sin(0.7 * c + 1.3 * y) * math.cos(0.9 * x - 0.4 * c)
                row.append(0 if s < 0.3 else min(n[c], int((s - 0.3) * 1.6 * n[c])))
            codes.append(row)
        return codes

    def spread_codes(n, C, H, W):
        return [[(c * 131 + i * 29 + (i * i) % 17) % (n[c] + 1) for i in range(H * W)]
                for c in range(C)]

    # ---------------------------------------------------------- valid
    C, H, W = 256, 4, 4
    n = [3] * C
    codes = spread_codes(n, C, H, W)
    good = stream("resnet18", "layer3", C, H, W, 0, n, codes, mn=0.0, mx=5.5)
    put("valid_uniform_const.cwb", good, "ok", "valid_uniform_const.expect")
    files["valid_uniform_const.expect"] = expect_file(n, codes)

    C, H, W = 192, 3, 3
    n2 = [1 + (c * 7) % 20 for c in range(C)]
    codes2 = spread_codes(n2, C, H, W)
    good2 = stream("alexnet", "features.5", C, H, W, 1, n2, codes2, mn=-0.25, mx=9.0, ncode=1)
    put("valid_log_fixed_side.cwb", good2, "ok", "valid_log_fixed_side.expect")
    files["valid_log_fixed_side.expect"] = expect_file(n2, codes2)

    C, H, W = 512, 2, 2
    n3 = [1 + (c % 9) * (c % 4) for c in range(C)]
    codes3 = relu_codes(n3, C, H, W)
    good3 = stream("vgg16", "features.30", C, H, W, 0, n3, codes3, mode=1, ncode=2, mn=0.0, mx=3.0)
    put("valid_adaptive.cwb", good3, "ok", "valid_adaptive.expect")
    files["valid_adaptive.expect"] = expect_file(n3, codes3)

    C, H, W = 64, 16, 16
    n4 = [1000 + 37 * c for c in range(C)]
    n4[5] = MAX_N
    codes4 = relu_codes(n4, C, H, W)
    good4 = stream("resnet18", "layer1", C, H, W, 0, n4, codes4, mode=1, ncode=1, mn=0.0, mx=2.0)
    put("valid_adaptive_large_n.cwb", good4, "ok", "valid_adaptive_large_n.expect")
    files["valid_adaptive_large_n.expect"] = expect_file(n4, codes4)

    C, H, W = 64, 4, 4
    n5 = [15] * C
    codes5 = relu_codes(n5, C, H, W)
    good5 = stream("resnet18", "layer3", C, H, W, 2, n5, codes5, bits=4, clip=0.9)
    put("valid_dorefa.cwb", good5, "ok", "valid_dorefa.expect")
    files["valid_dorefa.expect"] = expect_file(n5, codes5)

    C, H, W = 8, 2, 3
    n6 = [2] * C
    codes6 = [[0] * (H * W) for _ in range(C)]
    good6 = stream("resnet18", "layer3", C, H, W, 0, n6, codes6, mn=1.5, mx=1.5)
    put("valid_flat.cwb", good6, "ok", "valid_flat.expect")
    files["valid_flat.expect"] = expect_file(n6, codes6)

    # --------------------------------------------- wrong model (valid stream)
    put("wrong_model.cwb", good2, "expect:resnet18:layer3", "is for model 'alexnet' split 'features.5'")

    # ------------------------------------------------------------ bad
    F = "format"
    put("empty.cwb", b"", F, "ends inside field 'magic'")
    put("bad_magic.cwb", b"CWBB" + good[4:], F, "not a cwba bitstream")
    put("png_magic.cwb", b"\x89PNG\r\n\x1a\n" + good[8:], F, "not a cwba bitstream")
    put("version0.cwb", with_crc(good[:4] + b"\x00" + good[5:-4]), "unsupported",
        "unsupported bitstream version 0")
    put("version2.cwb", with_crc(good[:4] + b"\x02" + good[5:-4]), "unsupported",
        "unsupported bitstream version 2")
    put("flags.cwb", with_crc(good[:5] + b"\x02" + good[6:-4]), F, "flags 0x02")
    # Truncations at several points of the header, payload and CRC.
    hdr_len = len(good) - 4 - len(payload(codes, n, 256, 4, 4, 0))
    for cut, what in ((4, "'version'"), (9, "'model name'"), (23, "'C'"), (31, "'mn'"),
                      (hdr_len - 1, "'payload length'"), (hdr_len + 10, "payload length says"),
                      (len(good) - 1, "payload length says")):
        put("trunc_%d.cwb" % cut, good[:cut], F, what)
    put("trunc_adaptive_side.cwb", good3[:60], F, "truncated bitstream")
    flip = bytearray(good)
    flip[hdr_len + 17] ^= 0x10
    put("flip_payload.cwb", bytes(flip), F, "CRC mismatch")
    flip = bytearray(good)
    flip[-1] ^= 0x80
    put("flip_crc.cwb", bytes(flip), F, "CRC mismatch")
    flip = bytearray(good3)
    flip[len(good3) // 2] ^= 0x01
    put("flip_adaptive.cwb", bytes(flip), F, "CRC mismatch")
    put("trailing_bytes.cwb", good + b"\x00\x00", F, "length mismatch")

    def bad(fname, text, status=F, **kw):
        args = dict(model="resnet18", split="layer3", C=256, H=4, W=4, quant=0, n=n, codes=codes,
                    mn=0.0, mx=5.5)
        args.update(kw)
        put(fname, stream(**args), status, text)

    bad("oversized_C.cwb", "C = 9000 out of range", C=9000, n=[3] * 9000, codes=[[0] * 16] * 9000,
        raw={"payload": b""})
    bad("oversized_HW.cwb", "out of range 1..4096", H=5000, raw={"payload": b""})
    bad("oversized_elems.cwb", "more than 2^28 elements", C=8192, H=4096, W=4096, n=[3],
        raw={"payload": b""})
    bad("zero_C.cwb", "C = 0 out of range", C=0, n=[3], raw={"payload": b""})
    bad("n_zero.cwb", "n_c = 0 out of range", raw={"nmin": varint(0)})
    bad("n_too_large.cwb", "out of range 1..16777215", raw={"nmin": varint(MAX_N + 1)})
    bad("n_span_overflow.cwb", "n_c range", n=[MAX_N - 1] * 255 + [MAX_N + 5],
        raw={"side": b"\x01", "payload": b""})
    bad("payload_len_long.cwb", "payload length says", raw={"payload_len": varint(len(
        payload(codes, n, 256, 4, 4, 0)) + 5)})
    bad("payload_len_short.cwb", "length mismatch", raw={"payload_len": varint(len(
        payload(codes, n, 256, 4, 4, 0)) - 40)})
    bad("payload_len_huge.cwb", "exceeds the bound", raw={"payload_len": varint(0xFFFFFFFF)})
    bad("varint_overlong.cwb", "shortest form", raw={"nmin": b"\x83\x00"})
    bad("varint_6bytes.cwb", "longer than 5 bytes", raw={"payload_len": b"\xff" * 6})
    bad("quant_unknown.cwb", "quantizer 3 unknown", quant=3)
    bad("mode_unknown.cwb", "payload mode 2 unknown", mode=2, raw={"payload": b"\x01"})
    bad("ncode_unknown.cwb", "n_c coding 4 unknown", ncode=4, raw={"side": b""})
    bad("mn_nan.cwb", "'mn' is not a finite number", raw={"mn": b"\x00\x00\xc0\x7f"})
    bad("mx_inf.cwb", "'mx' is not a finite number", raw={"mx": b"\x00\x00\x80\x7f"})
    bad("mn_gt_mx.cwb", "> mx", mn=2.0, mx=1.0)
    bad("model_space.cwb", "contains byte 0x20", model="res net")
    bad("model_empty.cwb", "model name length 0", model="")
    bad("split_long.cwb", "split name length 40", split="x" * 40)
    bad("dorefa_bits0.cwb", "dorefa bits 0 out of range", quant=2, bits=0)
    bad("dorefa_bits17.cwb", "dorefa bits 17 out of range", quant=2, bits=17)
    bad("dorefa_clip0.cwb", "dorefa clip 0 is not finite", quant=2, clip=0.0)
    bad("flat_payload.cwb", "must have an empty mode-0 payload", mn=1.0, mx=1.0,
        raw={"payload": b"\x12\x34"})
    # Entropy-coded data no encoder produces, behind a correct CRC.
    bad("payload_tail.cwb", "payload corrupt", n=[2] * 256, codes=[[0] * 16] * 256,
        raw={"payload": b"\xff\xff\xff\xff"})
    bad("payload_trailing_zero.cwb", "payload corrupt",
        raw={"payload": payload(codes, n, 256, 4, 4, 0) + b"\x00"})
    bad("payload_extra_bytes.cwb", "payload corrupt",
        raw={"payload": payload(codes, n, 256, 4, 4, 0) + b"\x01\x02\x03\x04\x05\x06"})
    bad("side_tail.cwb", "side information corrupt", n=[1, 3] * 128, codes=[[0] * 16] * 256, ncode=1,
        raw={"side": b"\xff\xff\xff\xff"})
    bad("side_len_huge.cwb", "side information length", n=[1, 3] * 128, codes=[[0] * 16] * 256, ncode=1,
        raw={"side_len": varint(100000)})
    bad("side_len_lies.cwb", "truncated bitstream", n=[1, 3] * 128, codes=[[0] * 16] * 256, ncode=1,
        raw={"side_len": varint(60)})

    for fname, data in files.items():
        with open(os.path.join(out, fname), "wb") as f:
            f.write(data)
    with open(os.path.join(out, "manifest.tsv"), "w") as f:
        f.write("# file\texpected outcome\tmessage substring or expected-codes file\n")
        for row in manifest:
            f.write("\t".join(row) + "\n")
    print("wrote %d files to %s" % (len(files) + 1, out))


if __name__ == "__main__":
    main()
