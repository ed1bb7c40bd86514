"""The original release's algorithm_wrap.channel_wise_bit_allocation_algorithm,
with its arguments, return values and file layout (docs/api.md)."""
import os

import numpy as np

from . import _lib
from . import (NUM_BITS, _Backend, _feature, _is_torch, _quant, append_table, calibrate, dorefa,
               evaluate, mse)


def _backend(net_structure, fun_network_forward_inference):
    if fun_network_forward_inference is not None:
        if not callable(fun_network_forward_inference):
            raise TypeError("cwba: fun_network_forward_inference must be callable or None")
        return lambda batch: fun_network_forward_inference(net_structure, batch)
    if callable(net_structure):
        return net_structure
    try:
        layers = list(net_structure)
    except TypeError:
        raise TypeError("cwba: net_structure must be a callable or a sequence of callables when "
                        "fun_network_forward_inference is None") from None
    if not layers or not all(callable(f) for f in layers):
        raise TypeError("cwba: net_structure must be a non-empty sequence of callables")

    def run(batch):
        for f in layers:
            batch = f(batch)
        return batch
    return run


def _table_path(csv_path, csv_name, b):
    name = str(csv_name)
    if not name or "/" in name:
        raise ValueError("cwba: csv_name must be a plain file name, got %r" % name)
    if not name.endswith(".csv"):
        name += ".csv"
    return os.path.join(os.fspath(csv_path), str(b), name)


def channel_wise_bit_allocation_algorithm(flag, bits, gpuid, x, net_structure, quant_mode, net_mode,
                                          reserve_interval, alpha, beta, csv_path, csv_name,
                                          dorefa_clip_value, fun_network_forward_inference, *,
                                          max_batch=64):
    """The original's function for one image.

    x: the intermediate feature (1, C, H, W) (NumPy or torch). The back end
    is fun_network_forward_inference(net_structure, batch), or, when that is
    None, net_structure applied to the batch (a callable, or a sequence of
    callables applied in order); it is called with batches of up to
    max_batch features (1: one at a time) and must return (B, K).

    flag 0: calibration; the image's allocation at each bit depth b = 2..7
      is appended as one row to {csv_path}/{b}/{csv_name}.csv (".csv" added
      unless present; folders created). `bits`, `net_mode`, `reserve_interval`,
      `alpha`, `beta` and `dorefa_clip_value` are not used. Returns 0.
    flag 1: the output MSE at `bits` of this image: uniform/log with the
      table ./quant_interval_{net_mode}/{bits}.csv (relative to the current
      directory), `reserve_interval` online greedy steps and priority
      weights alpha, beta; dorefa with clip dorefa_clip_value (no table).
      Returns the MSE (a float).

    gpuid is accepted and not used: the back end runs where its modules are
    (a torch x is handed back to it on x's device)."""
    del gpuid
    flag = int(flag)
    if flag not in (0, 1):
        raise ValueError("cwba: flag must be 0 (interval table) or 1 (mse), got %d" % flag)
    q = _quant(quant_mode)
    g = _backend(net_structure, fun_network_forward_inference)
    a = _feature(x)
    if flag == 0:
        if q == _quant("dorefa"):
            raise ValueError("cwba: flag 0 needs quant_mode 'uniform' or 'log' (DoReFa has no table)")
        rows = calibrate(x, g, quant_mode, max_batch=max_batch)
        paths = [_table_path(csv_path, csv_name, b) for b in range(2, 2 + NUM_BITS)]
        for path, row in zip(paths, rows):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            append_table(path, row)
        return 0
    if q == _quant("dorefa"):
        be = _Backend(g, a, max_batch, x if _is_torch(x) else None)
        y0 = be.reference(a)
        y = be(np.asarray(dorefa(a, bits, dorefa_clip_value))[None])[0]
        return mse(y, y0)
    bits = int(bits)
    if not _lib.CWBA_BITS_MIN <= bits <= _lib.CWBA_BITS_MAX:
        raise ValueError("cwba: bits %d outside %d..%d" % (bits, _lib.CWBA_BITS_MIN, _lib.CWBA_BITS_MAX))
    table = os.path.join(".", "quant_interval_%s" % net_mode, "%d.csv" % bits)
    return evaluate(x, g, table, bits, quant_mode, reserve=int(reserve_interval), alpha=float(alpha),
                    beta=float(beta), max_batch=max_batch).mse
