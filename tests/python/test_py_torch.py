"""torch tensors where the API takes arrays: accepted, fed to a back end as
torch when the feature is torch, returned as torch; the drop-in with a torch
back end and any gpuid gives the NumPy back end's tables and MSE bit for bit.
Skipped without torch (Debian python3-torch)."""
import os
import tempfile
import unittest

import numpy as np

import cwba

try:
    import torch
except ImportError:  # pragma: no cover - the CI installs python3-torch
    torch = None

RNG = np.random.default_rng(7)
X = RNG.random((1, 6, 3, 3), dtype=np.float32) * 2
W = RNG.standard_normal((54, 4)).astype(np.float32)


def torch_backend(batch):
    """(B, C, H, W) torch -> (B, 4) torch; refuses anything else."""
    if not isinstance(batch, torch.Tensor):
        raise TypeError("the torch back end got %s" % type(batch))
    return batch.reshape(batch.shape[0], -1) @ torch.from_numpy(W)


def numpy_backend(batch):
    """The same arithmetic (torch's matmul) on NumPy arrays."""
    assert isinstance(batch, np.ndarray)
    return torch_backend(torch.from_numpy(np.ascontiguousarray(batch))).numpy()


@unittest.skipIf(torch is None, "needs torch")
class TestTorch(unittest.TestCase):
    def test_quantizers_take_and_return_torch(self):
        t = torch.from_numpy(X[0].copy())
        for q in ("uniform", "log"):
            got = cwba.quantize(t, 5, q)
            self.assertIsInstance(got, torch.Tensor)
            np.testing.assert_array_equal(got.numpy(), cwba.quantize(X[0], 5, q))
        got = cwba.dorefa(t, 3)
        self.assertIsInstance(got, torch.Tensor)
        np.testing.assert_array_equal(got.numpy(), cwba.dorefa(X[0], 3))

    def test_calibrate_evaluate_with_torch(self):
        t = torch.from_numpy(X[0].copy())
        rows_t = cwba.calibrate(t, torch_backend, max_batch=5)
        rows_n = cwba.calibrate(X[0], numpy_backend, max_batch=64)
        np.testing.assert_array_equal(rows_t, rows_n)
        r_t = cwba.evaluate(t, torch_backend, rows_n, 3, reserve=2, max_batch=1)
        r_n = cwba.evaluate(X[0], numpy_backend, rows_n, 3, reserve=2)
        self.assertEqual(r_t.mse, r_n.mse)
        self.assertIsInstance(r_t.xhat, torch.Tensor)
        np.testing.assert_array_equal(r_t.xhat.numpy(), r_n.xhat)
        np.testing.assert_array_equal(r_t.n, r_n.n)

    def test_drop_in_torch_backend_and_gpuid(self):
        old = os.getcwd()
        with tempfile.TemporaryDirectory() as d:
            os.chdir(d)
            try:
                results = {}
                # gpuid is accepted in any of the original's forms and changes nothing
                for gpuid, x, fun in ((0, torch.from_numpy(X.copy()), torch_backend),
                                      ("1", torch.from_numpy(X.copy()), torch_backend),
                                      (None, X, numpy_backend)):
                    tag = str(gpuid)
                    self.assertEqual(cwba.channel_wise_bit_allocation_algorithm(
                        0, 2, gpuid, x, fun, "uniform", "t", 0, 0.9, 0.1, "ca" + tag, "t", 0.9,
                        None), 0)
                    tables = [cwba.read_table("ca%s/%d/t.csv" % (tag, b)) for b in range(2, 8)]
                    os.makedirs("quant_interval_t", exist_ok=True)
                    for b in range(2, 8):
                        with open("ca%s/%d/t.csv" % (tag, b)) as src, \
                                open("quant_interval_t/%d.csv" % b, "w") as dst:
                            dst.write(src.read())
                    mse = cwba.channel_wise_bit_allocation_algorithm(
                        1, 4, gpuid, x, [fun], "uniform", "t", 3, 0.9, 0.1, ".", "t", 0.9, None,
                        max_batch=2)
                    self.assertIsInstance(mse, float)
                    results[tag] = (tables, mse)
                base = results["None"]
                for tag in ("0", "1"):
                    for a, b in zip(results[tag][0], base[0]):
                        np.testing.assert_array_equal(a, b)
                    self.assertEqual(results[tag][1], base[1])
            finally:
                os.chdir(old)


if __name__ == "__main__":
    unittest.main()
