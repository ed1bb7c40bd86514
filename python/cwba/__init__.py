"""cwba: channel-wise bit allocation for deep visual feature quantization.

A Python interface to libcwba.so (the C library of this project), on NumPy
arrays. torch tensors are accepted wherever arrays are, and results come back
as torch tensors when the input was one.

A *back end* is any callable from a batch of features (B, C, H, W) to outputs
(B, K): a torch module, a function over NumPy arrays, or a split of a
built-in model (cwba.Model(...).split("layer3")). The library calls it with
batches of up to `max_batch` features while it computes probe errors.

    import cwba, numpy as np
    m = cwba.Model("resnet18")                 # reference model, models/ of the checkout
    sp = m.split("layer3")                     # (256, 4, 4) feature
    img, _ = cwba.Dataset("fmnist")[0]
    x = sp.front(img[None])[0]                 # (256, 4, 4)
    rows = cwba.calibrate(x, sp)               # (6, 256): allocations at bits 2..7
    r = cwba.evaluate(x, sp, rows[1:2], bits=3, reserve=10)
    data = cwba.encode(x, r.n, model="resnet18", split="layer3")
    xhat = cwba.decode(data).xhat              # == r.xhat

`channel_wise_bit_allocation_algorithm` is the original release's function,
with its arguments and file layout. Errors of the library raise cwba.Error
with its one-line message; an exception raised by a back end propagates
unchanged out of the call that ran it.
"""
import collections
import ctypes
import os

import numpy as np

from . import _lib
from ._lib import Error

__all__ = [
    "Error", "version", "set_threads", "get_threads", "quantize", "dorefa", "feature_range",
    "budget", "mse", "calibrate", "evaluate", "Evaluation", "read_table", "append_table",
    "encode", "decode", "Decoded", "Model", "Split", "Dataset",
    "channel_wise_bit_allocation_algorithm",
]

_L = _lib.lib
_P = ctypes.POINTER
_f32p = _P(ctypes.c_float)
_i32p = _P(ctypes.c_int)
_u32p = _P(ctypes.c_uint32)
_u8p = _P(ctypes.c_uint8)
NUM_BITS = _lib.CWBA_BITS_MAX - _lib.CWBA_BITS_MIN + 1  # table rows per calibration image


def version():
    """The linked library's version, "MAJOR.MINOR.PATCH"."""
    return _L.cwba_version().decode()


def set_threads(n):
    """Threads of every parallel kernel (results never depend on it)."""
    _L.cwba_set_threads(int(n))


def get_threads():
    return _L.cwba_get_threads()


# ------------------------------------------------------------ arrays, torch

def _is_torch(x):
    return type(x).__module__.split(".")[0] == "torch"


def _array(x, dtype=np.float32, name="array"):
    """x (ndarray, torch tensor or sequence) as a C-contiguous array of dtype."""
    if _is_torch(x):
        x = x.detach().cpu().numpy()
    try:
        return np.ascontiguousarray(x, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise TypeError("cwba: %s must be a numeric array (%s)" % (name, e)) from None


def _like(out, ref):
    """out as a torch tensor on ref's device when ref is one, else as is."""
    if _is_torch(ref):
        import torch
        return torch.from_numpy(out).to(ref.device)
    return out


def _err():
    return _lib.cwba_error()


def _call(fn, *args):
    err = _err()
    _lib.check(fn(*args, ctypes.byref(err)), err)


def _fp(a):
    return a.ctypes.data_as(_f32p)


def _ip(a):
    return a.ctypes.data_as(_i32p)


def _quant(q):
    out = ctypes.c_int()
    _call(_L.cwba_quant_parse, str(q).encode(), ctypes.byref(out))
    return out.value


def _feature(x, name="x"):
    """A single feature (C, H, W), also given as (1, C, H, W)."""
    a = _array(x, name=name)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 3:
        raise ValueError("cwba: %s must be one feature (C, H, W) or (1, C, H, W), got shape %s"
                         % (name, a.shape))
    return a


# --------------------------------------------------------------- quantizers

def feature_range(x):
    """(min, max) over all values of x, as the quantizers use them."""
    a = _array(x, name="x")
    mn, mx = ctypes.c_float(), ctypes.c_float()
    _L.cwba_feature_range(_fp(a), a.size, ctypes.byref(mn), ctypes.byref(mx))
    return mn.value, mx.value


def quantize(x, n, quant="uniform", *, return_codes=False):
    """Quantizes and dequantizes the feature x (C, H, W) with n intervals per
    channel (an int, or C ints) on its global range; uniform or log.
    Returns xhat (and the codes, uint32, with return_codes=True)."""
    a = _feature(x)
    C = a.shape[0]
    n = np.ascontiguousarray(np.broadcast_to(np.asarray(n, dtype=np.int64), (C,)), dtype=np.int32)
    xhat = np.empty_like(a)
    codes = np.empty(a.shape, dtype=np.uint32) if return_codes else None
    _call(_L.cwba_quantize_feature, _quant(quant), _fp(a), C, a.shape[1] * a.shape[2], _ip(n),
          _fp(xhat), codes.ctypes.data_as(_u32p) if return_codes else None)
    xhat = _like(xhat.reshape(np.shape(x)), x)
    return (xhat, _like(codes.reshape(np.shape(x)), x)) if return_codes else xhat


def dorefa(x, bits, clip=0.9):
    """DoReFa baseline: round(clamp(x, 0, clip) * (2^bits - 1)) / (2^bits - 1)."""
    bits = int(bits)
    if not 1 <= bits <= 16:
        raise ValueError("cwba: dorefa bits %d outside 1..16" % bits)
    a = _array(x, name="x")
    out = np.empty_like(a)
    _L.cwba_dorefa(_fp(a), a.size, bits, float(clip), _fp(out))
    return _like(out, x)


def budget(bits, C):
    """T_b = (2^bits - 1) * C intervals in total."""
    return _L.cwba_budget(int(bits), int(C))


def mse(a, b):
    """mean((a - b)^2) accumulated in double (the library's figure)."""
    a, b = _array(a, name="a"), _array(b, name="b")
    if a.shape != b.shape:
        raise ValueError("cwba: mse of shapes %s and %s" % (a.shape, b.shape))
    return _L.cwba_mse(_fp(a), _fp(b), a.size)


# ---------------------------------------------------------------- back ends

class _Backend:
    """A Python callable behind a cwba_backend. Exceptions raised by the
    callable (or a wrong output shape) abort the library call: the callback
    returns an error status and the exception is re-raised afterwards."""

    def __init__(self, fn, x, max_batch, ref=None):
        if not callable(fn):
            raise TypeError("cwba: the back end must be callable, got %s" % type(fn).__name__)
        max_batch = int(max_batch)
        if max_batch < 1:
            raise ValueError("cwba: max_batch %d must be at least 1" % max_batch)
        self.fn, self.ref, self.exc = fn, ref, None
        self.shape = tuple(x.shape)
        self.K = None
        self.cfn = _lib.BACKEND_FN(self._run)
        self.c = _lib.cwba_backend(self.shape[0], self.shape[1], self.shape[2], 0, max_batch,
                                   self.cfn, None)

    def __call__(self, batch):
        """batch (B, C, H, W) float32 -> outputs (B, K) float32."""
        B = batch.shape[0]
        arg = batch
        if self.ref is not None:  # a torch feature: the back end is fed torch
            import torch
            arg = torch.from_numpy(batch).to(self.ref.device)
        out = self.fn(arg)
        try:
            y = _array(out, name="the back end's output")
        except TypeError as e:
            raise TypeError("cwba: the back end returned %s, not an array" % type(out).__name__) from e
        if y.ndim < 1 or y.shape[0] != B or (self.K is not None and y.size != B * self.K) or y.size == 0:
            raise ValueError("cwba: the back end returned shape %s for a batch of %d, expected (%d, %s)"
                             % (tuple(y.shape), B, B, self.K if self.K is not None else "K"))
        y = y.reshape(B, -1)
        if self.K is None:
            self.K = y.shape[1]
            self.c.K = self.K
        return y

    def _run(self, ctx, feat, batch, logits, err):
        try:
            a = np.ctypeslib.as_array(feat, shape=(batch,) + self.shape).copy()
            y = self(a)
            np.ctypeslib.as_array(logits, shape=(batch * self.K,))[:] = y.ravel()
            return 0
        except BaseException as e:  # noqa: B902 - anything, even KeyboardInterrupt, aborts
            self.exc = e
            if err:
                msg = ("back end raised %s: %s" % (type(e).__name__, e)).replace("\n", " ")
                err[0].status = 1
                err[0].msg = msg.encode("utf-8", "replace")[:511]
            return 1  # CWBA_E_ARG

    def reference(self, x):
        """y0 = g(x) for the feature x (C, H, W), which also fixes K."""
        return self(x[None])[0].copy()

    def check(self, status, err):
        if self.exc is not None:
            e, self.exc = self.exc, None
            raise e
        _lib.check(status, err)


def calibrate(x, backend, quant="uniform", *, max_batch=64, naive=False, return_stats=False):
    """The original's --flag 0 for one image: greedy allocation from one
    interval per channel up to 127 per channel on average. x: the feature
    (C, H, W). Returns the allocations at bits 2..7 as int32 (6, C) (row
    b - 2), with a dict of pass/probe/step counts when return_stats.
    naive=True runs the original's method (every step recomputes all C
    probes): the same rows, C times more back-end passes."""
    a = _feature(x)
    be = _Backend(backend, a, max_batch, x if _is_torch(x) else None)
    y0 = be.reference(a)
    rows = np.empty((NUM_BITS, a.shape[0]), dtype=np.int32)
    stats = _lib.cwba_alloc_stats()
    err = _err()
    fn = _L.cwba_calibrate_image_naive if naive else _L.cwba_calibrate_image
    st = fn(ctypes.byref(be.c), _quant(quant), _fp(a), _fp(y0), _ip(rows), ctypes.byref(stats),
            ctypes.byref(err))
    be.check(st, err)
    stats = {"passes": stats.passes + 1, "probes": stats.probes, "steps": stats.steps}
    return (rows, stats) if return_stats else rows


class _Table:
    """An interval table (rows, C) as the library's cwba_table (borrowed data)."""

    def __init__(self, table, C):
        if isinstance(table, (str, bytes, os.PathLike)):
            table = read_table(table, C)
        t = np.ascontiguousarray(_array(table, dtype=np.int64, name="table"), dtype=np.int32)
        if t.ndim == 1:
            t = t[None]
        if t.ndim != 2 or t.shape[1] != C or t.shape[0] < 1:
            raise ValueError("cwba: the table must be (rows, %d), got shape %s" % (C, t.shape))
        if (t < 1).any():
            raise ValueError("cwba: table entries must be positive interval counts")
        self.data = t
        self.c = _lib.cwba_table(C, t.shape[0], _ip(t))


Evaluation = collections.namedtuple("Evaluation", "mse n xhat passes")
Evaluation.__doc__ = """mse: output MSE against y0 = g(x); n: the final allocation (C,) int32;
xhat: the quantized feature (C, H, W); passes: back-end passes made."""


def evaluate(x, backend, table, bits, quant="uniform", *, reserve=0, alpha=0.9, beta=0.1,
             max_batch=64):
    """The original's --flag 1 for one image at one bit depth: base allocation
    from the table's column means, priority top-up, `reserve` online greedy
    steps, quantization and the output MSE. table: (rows, C) ints or a CSV
    file (the --flag 0 format)."""
    a = _feature(x)
    tab = _Table(table, a.shape[0])
    be = _Backend(backend, a, max_batch, x if _is_torch(x) else None)
    y0 = be.reference(a)
    p = _lib.cwba_eval_params(_quant(quant), int(bits), int(reserve), float(alpha), float(beta))
    n = np.empty(a.shape[0], dtype=np.int32)
    xhat = np.empty_like(a)
    m = ctypes.c_double()
    stats = _lib.cwba_alloc_stats()
    err = _err()
    st = _L.cwba_evaluate_image(ctypes.byref(be.c), None, ctypes.byref(tab.c), ctypes.byref(p),
                                _fp(a), _fp(y0), _ip(n), _fp(xhat), ctypes.byref(m),
                                ctypes.byref(stats), ctypes.byref(err))
    be.check(st, err)
    return Evaluation(m.value, n, _like(xhat.reshape(np.shape(x)), x), stats.passes + 1)


def read_table(path, channels=None):
    """An interval table file (CSV, C positive integers a row) as int32 (rows, C);
    channels, when given, is the required C."""
    t = _lib.cwba_table()
    _call(_L.cwba_table_read, os.fsencode(path), int(channels or 0), ctypes.byref(t))
    try:
        return np.ctypeslib.as_array(t.data, shape=(t.rows, t.C)).copy()
    finally:
        _L.cwba_table_free(ctypes.byref(t))


def append_table(path, rows):
    """Appends rows (C ints, or (rows, C)) to a table file, atomically."""
    r = np.ascontiguousarray(_array(rows, dtype=np.int64, name="rows"), dtype=np.int32)
    if r.ndim == 1:
        r = r[None]
    if r.ndim != 2:
        raise ValueError("cwba: rows must be (rows, C), got shape %s" % (r.shape,))
    _call(_L.cwba_table_append, os.fsencode(path), _ip(r), r.shape[0], r.shape[1])


# -------------------------------------------------------------- bitstreams

Decoded = collections.namedtuple("Decoded", "xhat n codes info")
Decoded.__doc__ = """xhat: the dequantized feature (C, H, W) float32; n: interval counts (C,);
codes: (C, H, W) uint32; info: dict of the header (model, split, quant, mn, mx, bits, clip, mode)."""


def _name_bytes(s, what):
    b = str(s).encode()
    if len(b) > _lib.STREAM_NAME_MAX:
        raise ValueError("cwba: %s name longer than %d bytes" % (what, _lib.STREAM_NAME_MAX))
    return b


def encode(x, n=None, quant="uniform", *, bits=None, clip=0.9, model="model", split="split",
           mode="auto"):
    """Encodes one feature (C, H, W) as a cwba bitstream (docs/bitstream.md):
    uniform/log with n intervals per channel (an int or C ints); dorefa with
    `bits` and `clip`. Returns the bytes."""
    a = _feature(x)
    C, H, W = a.shape
    q = _quant(quant)
    info = _lib.cwba_stream_info()
    info.model, info.split = _name_bytes(model, "model"), _name_bytes(split, "split")
    info.C, info.H, info.W, info.quant = C, H, W, q
    md = ctypes.c_int()
    _call(_L.cwba_stream_mode_parse, str(mode).encode(), ctypes.byref(md))
    info.mode = md.value
    if quant == "dorefa" or q == _quant("dorefa"):
        if bits is None:
            raise ValueError("cwba: dorefa encoding needs bits")
        info.bits, info.clip = int(bits), float(clip)
        nn = None if n is None else np.ascontiguousarray(np.broadcast_to(np.asarray(n), (C,)), np.int32)
    else:
        if n is None:
            raise ValueError("cwba: %s encoding needs n (intervals per channel)" % quant)
        nn = np.ascontiguousarray(np.broadcast_to(np.asarray(n, dtype=np.int64), (C,)), np.int32)
    nptr = None if nn is None else _ip(nn)
    cap = _L.cwba_stream_bound(ctypes.byref(info), nptr)
    if cap == 0:
        raise Error("cwba: feature %dx%dx%d outside the bitstream's limits" % (C, H, W), "CWBA_E_ARG")
    buf = np.empty(cap, dtype=np.uint8)
    written = ctypes.c_size_t()
    _call(_L.cwba_stream_encode_feature, ctypes.byref(info), _fp(a), nptr, buf.ctypes.data_as(_u8p),
          cap, ctypes.byref(written), None, None)
    return buf[:written.value].tobytes()


def decode(data):
    """Decodes a bitstream (bytes) into a Decoded (xhat, n, codes, info)."""
    buf = np.frombuffer(bytes(data), dtype=np.uint8)
    ptr = buf.ctypes.data_as(_u8p)
    info = _lib.cwba_stream_info()
    _call(_L.cwba_stream_decode_header, ptr, buf.size, ctypes.byref(info))
    C, H, W = info.C, info.H, info.W
    n = np.empty(C, dtype=np.int32)
    codes = np.empty((C, H, W), dtype=np.uint32)
    xhat = np.empty((C, H, W), dtype=np.float32)
    _call(_L.cwba_stream_decode, ptr, buf.size, ctypes.byref(info), _ip(n), C,
          codes.ctypes.data_as(_u32p), _fp(xhat), codes.size)
    meta = {"model": info.model.decode(), "split": info.split.decode(), "C": C, "H": H, "W": W,
            "quant": _L.cwba_quant_name(info.quant).decode(), "mn": info.mn, "mx": info.mx,
            "bits": info.bits, "clip": info.clip,
            "mode": _L.cwba_stream_mode_name(info.mode).decode()}
    return Decoded(xhat, n, codes, meta)


# ------------------------------------------------------------------ models

def _models_dir():
    env = os.environ.get("CWBA_MODELS")
    if env:
        return env
    return os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        "models")


class Model:
    """A built-in network (torchvision AlexNet, VGG16, ResNet18, eval mode).

    Model("resnet18") loads the project's reference model (models/ of the
    checkout, or $CWBA_MODELS); Model("resnet18", "resnet18-f37072fd.pth",
    input_size=224) any torchvision state dict (.pth or safetensors). Not
    safe for concurrent calls."""

    def __init__(self, arch, weights=None, input_size=None, conv="direct"):
        a = ctypes.c_int()
        _call(_L.cwba_arch_parse, str(arch).encode(), ctypes.byref(a))
        self.arch = _L.cwba_arch_name(a.value).decode()
        if weights is None:
            base = os.path.join(_models_dir(), "%s_fmnist64.safetensors" % self.arch)
            weights = base if os.path.exists(base) else base + ".xz"
            if input_size is None:
                input_size = 64
        self.weights = os.fspath(weights)
        w = ctypes.c_void_p()
        _call(_L.cwba_weights_load, os.fsencode(self.weights), ctypes.byref(w))
        m = ctypes.c_void_p()
        try:
            _call(_L.cwba_model_create, a.value, w, int(input_size or 224), ctypes.byref(m))
        finally:
            _L.cwba_weights_free(w)
        self._m = m
        if conv != "direct":
            c = ctypes.c_int()
            _call(_L.cwba_conv_algo_parse, str(conv).encode(), ctypes.byref(c))
            _call(_L.cwba_model_set_conv_algo, self._m, c.value)
        self.num_classes = _L.cwba_model_num_classes(m)
        self.input_size = _L.cwba_model_input_size(m)
        self.splits = [_L.cwba_model_split_name(m, i).decode()
                       for i in range(_L.cwba_model_num_splits(m))]

    load = classmethod(lambda cls, *a, **k: cls(*a, **k))

    def close(self):
        """Frees the model (also done when it is garbage collected)."""
        if getattr(self, "_m", None):
            _L.cwba_model_free(self._m)
            self._m = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may be gone already
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _handle(self):
        if not self._m:
            raise Error("cwba: the model was closed", "CWBA_E_ARG")
        return self._m

    def _images(self, images):
        a = _array(images, name="images")
        S = self.input_size
        if a.ndim == 3:
            a = a[None]
        if a.ndim != 4 or a.shape[1:] != (3, S, S):
            raise ValueError("cwba: images must be (B, 3, %d, %d), got shape %s" % (S, S, a.shape))
        return a

    def forward(self, images):
        """Logits (B, K) of images (B, 3, S, S)."""
        a = self._images(images)
        out = np.empty((a.shape[0], self.num_classes), dtype=np.float32)
        _call(_L.cwba_model_forward, self._handle(), _fp(a), a.shape[0], _fp(out))
        return _like(out, images)

    __call__ = forward

    def split(self, name):
        """The model cut after module `name` (e.g. "layer3", "features.5")."""
        i = ctypes.c_int()
        _call(_L.cwba_model_find_split, self._handle(), str(name).encode(), ctypes.byref(i))
        return Split(self, i.value)

    def features(self, images, split):
        """The split's features (B, C, H, W) of images (B, 3, S, S)."""
        return self.split(split).front(images)


class Split:
    """A model cut at a split point: front (images -> features) and back
    (features -> logits). Calling it runs the back end, so a Split is a back
    end for calibrate, evaluate and the original's function."""

    def __init__(self, model, index):
        self.model, self.index = model, index
        self.name = _L.cwba_model_split_name(model._handle(), index).decode()
        c, h, w = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        _L.cwba_model_split_shape(model._handle(), index, ctypes.byref(c), ctypes.byref(h),
                                  ctypes.byref(w))
        self.shape = (c.value, h.value, w.value)

    def front(self, images):
        a = self.model._images(images)
        out = np.empty((a.shape[0],) + self.shape, dtype=np.float32)
        _call(_L.cwba_model_forward_front, self.model._handle(), self.index, _fp(a), a.shape[0],
              _fp(out))
        return _like(out, images)

    def back(self, features):
        a = _array(features, name="features")
        if a.ndim == 3:
            a = a[None]
        if a.ndim != 4 or a.shape[1:] != self.shape:
            raise ValueError("cwba: features must be (B, %d, %d, %d), got shape %s"
                             % (self.shape + (a.shape,)))
        out = np.empty((a.shape[0], self.model.num_classes), dtype=np.float32)
        _call(_L.cwba_model_forward_back, self.model._handle(), self.index, _fp(a), a.shape[0],
              _fp(out))
        return _like(out, features)

    __call__ = back


class Dataset:
    """Images of a dataset spec ("fmnist[:DIR[:train|:test]]", "imagenet:DIR",
    "folder:DIR"), preprocessed for the networks: ds[i] -> (image (3, S, S),
    label or -1). size: the input side (the kind's default when None)."""

    def __init__(self, spec="fmnist", size=None):
        # The kinds' defaults, spelt out so that the image size is known here.
        pp = _L.cwba_preprocess_fmnist() if str(spec).split(":")[0] == "fmnist" \
            else _L.cwba_preprocess_imagenet()
        if size is not None:
            pp.size = int(size)
        self.size = pp.size
        d = ctypes.c_void_p()
        _call(_L.cwba_dataset_open, str(spec).encode(), ctypes.byref(pp), ctypes.byref(d))
        self._d = d
        self.has_labels = bool(_L.cwba_dataset_has_labels(d))

    def __len__(self):
        return _L.cwba_dataset_count(self._d)

    def __getitem__(self, i):
        n = len(self)
        if not -n <= i < n:
            raise IndexError("cwba: image %d of %d" % (i, n))
        out = np.empty((3, self.size, self.size), dtype=np.float32)
        lab = ctypes.c_int()
        _call(_L.cwba_dataset_get, self._d, i % n, _fp(out), ctypes.byref(lab))
        return out, lab.value

    def images(self, start, count):
        """Images start..start+count-1 as (count, 3, S, S) and their labels."""
        pairs = [self[i] for i in range(start, start + count)]
        return np.stack([p[0] for p in pairs]), np.array([p[1] for p in pairs])

    def close(self):
        if getattr(self, "_d", None):
            _L.cwba_dataset_free(self._d)
            self._d = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may be gone already
            pass


from ._original import channel_wise_bit_allocation_algorithm  # noqa: E402
