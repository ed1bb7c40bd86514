"""ctypes declarations of libcwba.so (include/cwba/*.h), one to one.

The library is found, in this order, at $CWBA_LIBRARY, in the build folders
of the checkout this package sits in (build/libcwba.so.N), beside the
installed package (written by cmake --install), and on the linker's path.
ctypes releases the GIL during every call into the library; back-end
callbacks take it again while they run Python.
"""
import ctypes
import ctypes.util
import os

SOVERSION = 0
CWBA_BITS_MIN, CWBA_BITS_MAX = 2, 7
STREAM_NAME_MAX = 31

c_int, c_float, c_double, c_char_p, c_void_p, c_size_t = (
    ctypes.c_int, ctypes.c_float, ctypes.c_double, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t)
P = ctypes.POINTER


class Error(RuntimeError):
    """A library error: `status` is the cwba_status name (e.g. "CWBA_E_ARG"),
    str(e) its one-line message."""

    def __init__(self, message, status="CWBA_E_ARG"):
        super().__init__(message)
        self.status = status


class cwba_error(ctypes.Structure):
    _fields_ = [("status", c_int), ("msg", ctypes.c_char * 512)]


BACKEND_FN = ctypes.CFUNCTYPE(c_int, c_void_p, P(c_float), c_int, P(c_float), P(cwba_error))


class cwba_backend(ctypes.Structure):
    _fields_ = [("C", c_int), ("H", c_int), ("W", c_int), ("K", c_int), ("max_batch", c_int),
                ("run", BACKEND_FN), ("ctx", c_void_p)]


class cwba_alloc_stats(ctypes.Structure):
    _fields_ = [("passes", ctypes.c_uint64), ("probes", ctypes.c_uint64), ("steps", ctypes.c_uint64)]


class cwba_table(ctypes.Structure):
    _fields_ = [("C", c_int), ("rows", c_int), ("data", P(c_int))]


class cwba_eval_params(ctypes.Structure):
    _fields_ = [("quant", c_int), ("bits", c_int), ("reserve", c_int),
                ("alpha", c_double), ("beta", c_double)]


class cwba_stream_info(ctypes.Structure):
    _fields_ = [("model", ctypes.c_char * (STREAM_NAME_MAX + 1)),
                ("split", ctypes.c_char * (STREAM_NAME_MAX + 1)),
                ("C", c_int), ("H", c_int), ("W", c_int), ("quant", c_int),
                ("mn", c_float), ("mx", c_float), ("bits", c_int), ("clip", c_float), ("mode", c_int)]


class cwba_stream_stats(ctypes.Structure):
    _fields_ = [("header_bytes", c_size_t), ("side_bytes", c_size_t), ("payload_bytes", c_size_t),
                ("total_bytes", c_size_t), ("ideal_bits", c_double), ("mode", c_int)]


class cwba_preprocess(ctypes.Structure):
    _fields_ = [("size", c_int), ("mean", c_float * 3), ("std", c_float * 3), ("resize", c_int)]


def _candidates():
    env = os.environ.get("CWBA_LIBRARY")
    if env:
        yield env
        return
    name = "libcwba.so.%d" % SOVERSION
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for build in ("build", "build-asan"):
        yield os.path.join(root, build, name)
    try:
        from . import _installed
        yield _installed.LIBRARY
    except ImportError:
        pass
    found = ctypes.util.find_library("cwba")
    if found:
        yield found


def _load():
    tried = []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append(path)
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            tried.append("%s (%s)" % (path, e))
    raise ImportError("cwba: libcwba.so.%d not found (set CWBA_LIBRARY or run make build); tried: %s"
                      % (SOVERSION, ", ".join(tried) or "nothing"))


lib, path = _load()

# (name, restype, argtypes); every status-returning function has restype c_int.
_S = c_int
_E = P(cwba_error)
_PROTOS = [
    ("cwba_version", c_char_p, []),
    ("cwba_status_name", c_char_p, [c_int]),
    ("cwba_set_threads", None, [c_int]),
    ("cwba_get_threads", c_int, []),
    ("cwba_quant_parse", _S, [c_char_p, P(c_int), _E]),
    ("cwba_quant_name", c_char_p, [c_int]),
    ("cwba_feature_range", None, [P(c_float), c_size_t, P(c_float), P(c_float)]),
    ("cwba_quantize_feature", _S, [c_int, P(c_float), c_int, c_int, P(c_int), P(c_float),
                                   P(ctypes.c_uint32), _E]),
    ("cwba_dorefa", None, [P(c_float), c_size_t, c_int, c_float, P(c_float)]),
    ("cwba_budget", ctypes.c_long, [c_int, c_int]),
    ("cwba_mse", c_double, [P(c_float), P(c_float), c_size_t]),
    ("cwba_calibrate_image", _S, [P(cwba_backend), c_int, P(c_float), P(c_float), P(c_int),
                                  P(cwba_alloc_stats), _E]),
    ("cwba_calibrate_image_naive", _S, [P(cwba_backend), c_int, P(c_float), P(c_float), P(c_int),
                                        P(cwba_alloc_stats), _E]),
    ("cwba_table_read", _S, [c_char_p, c_int, P(cwba_table), _E]),
    ("cwba_table_append", _S, [c_char_p, P(c_int), c_int, c_int, _E]),
    ("cwba_table_free", None, [P(cwba_table)]),
    ("cwba_probe_cache_create", _S, [P(cwba_backend), c_int, P(c_float), P(c_float), P(c_void_p), _E]),
    ("cwba_probe_cache_free", None, [c_void_p]),
    ("cwba_evaluate_image", _S, [P(cwba_backend), c_void_p, P(cwba_table), P(cwba_eval_params),
                                 P(c_float), P(c_float), P(c_int), P(c_float), P(c_double),
                                 P(cwba_alloc_stats), _E]),
    ("cwba_stream_bound", c_size_t, [P(cwba_stream_info), P(c_int)]),
    ("cwba_stream_encode_feature", _S, [P(cwba_stream_info), P(c_float), P(c_int), P(ctypes.c_uint8),
                                        c_size_t, P(c_size_t), P(c_float), P(cwba_stream_stats), _E]),
    ("cwba_stream_decode_header", _S, [P(ctypes.c_uint8), c_size_t, P(cwba_stream_info), _E]),
    ("cwba_stream_decode", _S, [P(ctypes.c_uint8), c_size_t, P(cwba_stream_info), P(c_int), c_size_t,
                                P(ctypes.c_uint32), P(c_float), c_size_t, _E]),
    ("cwba_stream_mode_parse", _S, [c_char_p, P(c_int), _E]),
    ("cwba_stream_mode_name", c_char_p, [c_int]),
    ("cwba_weights_load", _S, [c_char_p, P(c_void_p), _E]),
    ("cwba_weights_free", None, [c_void_p]),
    ("cwba_arch_parse", _S, [c_char_p, P(c_int), _E]),
    ("cwba_arch_name", c_char_p, [c_int]),
    ("cwba_model_create", _S, [c_int, c_void_p, c_int, P(c_void_p), _E]),
    ("cwba_model_free", None, [c_void_p]),
    ("cwba_model_num_classes", c_int, [c_void_p]),
    ("cwba_model_input_size", c_int, [c_void_p]),
    ("cwba_model_num_splits", c_int, [c_void_p]),
    ("cwba_model_split_name", c_char_p, [c_void_p, c_int]),
    ("cwba_model_split_shape", None, [c_void_p, c_int, P(c_int), P(c_int), P(c_int)]),
    ("cwba_model_find_split", _S, [c_void_p, c_char_p, P(c_int), _E]),
    ("cwba_model_forward", _S, [c_void_p, P(c_float), c_int, P(c_float), _E]),
    ("cwba_model_forward_front", _S, [c_void_p, c_int, P(c_float), c_int, P(c_float), _E]),
    ("cwba_model_forward_back", _S, [c_void_p, c_int, P(c_float), c_int, P(c_float), _E]),
    ("cwba_model_set_conv_algo", _S, [c_void_p, c_int, _E]),
    ("cwba_conv_algo_parse", _S, [c_char_p, P(c_int), _E]),
    ("cwba_preprocess_fmnist", cwba_preprocess, []),
    ("cwba_preprocess_imagenet", cwba_preprocess, []),
    ("cwba_dataset_open", _S, [c_char_p, P(cwba_preprocess), P(c_void_p), _E]),
    ("cwba_dataset_count", c_int, [c_void_p]),
    ("cwba_dataset_has_labels", c_int, [c_void_p]),
    ("cwba_dataset_get", _S, [c_void_p, c_int, P(c_float), P(c_int), _E]),
    ("cwba_dataset_free", None, [c_void_p]),
]
for _name, _res, _args in _PROTOS:
    _f = getattr(lib, _name)
    _f.restype = _res
    _f.argtypes = _args


STATUS_NAMES = ("CWBA_OK", "CWBA_E_ARG", "CWBA_E_IO", "CWBA_E_FORMAT", "CWBA_E_NOMEM",
                "CWBA_E_SHAPE", "CWBA_E_UNSUPPORTED", "CWBA_E_INTERNAL")


def check(status, err):
    """Raises Error with the library's one-line message when status is not CWBA_OK."""
    if status != 0:
        name = STATUS_NAMES[status] if 0 <= status < len(STATUS_NAMES) else "CWBA_E_INTERNAL"
        raise Error(err.msg.decode("utf-8", "replace"), name)
