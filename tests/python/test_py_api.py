"""The Python package on NumPy back ends: the original's function against the
original release's own outputs (tests/data/quant/toy_golden.json), the
pythonic API, and the error contract (library errors raise cwba.Error with
the one-line message; a back end that raises or returns a wrong shape is a
clean exception). Run with PYTHONPATH=python (CTest sets it)."""
import json
import os
import tempfile
import threading
import time
import unittest

import numpy as np

import cwba

SRC = os.environ.get("CWBA_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))


def load_json(*path):
    with open(os.path.join(SRC, *path)) as f:
        return json.load(f)


GOLDEN = load_json("tests", "data", "quant", "toy_golden.json")


def toy_backend(batch):
    """The golden file's back end: y_i = sum of v[i::5], v the feature flattened (C, H, W)."""
    v = np.asarray(batch, dtype=np.float32).reshape(batch.shape[0], -1)
    return np.stack([v[:, i::5].sum(axis=1, dtype=np.float32) for i in range(5)], axis=1)


def feature(seed):
    return np.asarray(GOLDEN["feature"]["seed%d" % seed], dtype=np.float32)[None]  # (1, 8, 3, 3)


class InTempDir(unittest.TestCase):
    def setUp(self):
        self._old = os.getcwd()
        self._tmp = tempfile.TemporaryDirectory()
        os.chdir(self._tmp.name)

    def tearDown(self):
        os.chdir(self._old)
        self._tmp.cleanup()


def drop_in(flag, bits, x, net, fun, quant="uniform", net_mode="toy", reserve=0, csv_path="ca",
            csv_name="toy", **kw):
    return cwba.channel_wise_bit_allocation_algorithm(
        flag, bits, 0, x, net, quant, net_mode, reserve, GOLDEN["alpha"], GOLDEN["beta"], csv_path,
        csv_name, 0.9, fun, **kw)


class TestOriginalToy(InTempDir):
    def calibrate_seeds(self, **kw):
        for seed in (1, 2, 3):
            self.assertEqual(drop_in(0, 2, feature(seed), toy_backend, None, **kw), 0)

    def test_flag0_tables_equal_the_originals(self):
        for max_batch in (64, 7, 1):
            with self.subTest(max_batch=max_batch):
                self.calibrate_seeds(csv_path="ca%d" % max_batch, max_batch=max_batch)
                for b in range(2, 8):
                    got = cwba.read_table(os.path.join("ca%d" % max_batch, str(b), "toy.csv"))
                    np.testing.assert_array_equal(got, GOLDEN["flag0_tables_from_seeds_1_2_3"][str(b)])

    def test_flag0_callable_forms(self):
        # net_structure as a sequence of callables, and through fun_network_forward_inference
        drop_in(0, 2, feature(1), [lambda b: b * 1.0, toy_backend], None, csv_path="seq")
        drop_in(0, 2, feature(1), "ignored", lambda net, b: toy_backend(b), csv_path="fun")
        for b in range(2, 8):
            want = GOLDEN["flag0_tables_from_seeds_1_2_3"][str(b)][0]
            np.testing.assert_array_equal(cwba.read_table("seq/%d/toy.csv" % b)[0], want)
            np.testing.assert_array_equal(cwba.read_table("fun/%d/toy.csv" % b)[0], want)

    def test_flag1_mse_equal_the_originals(self):
        os.makedirs("quant_interval_toy")
        for b, rows in GOLDEN["flag0_tables_from_seeds_1_2_3"].items():
            cwba.append_table("quant_interval_toy/%s.csv" % b, rows)
        for case in GOLDEN["flag1"]:
            got = drop_in(1, case["bits"], feature(case["seed"]), toy_backend, None,
                          reserve=case["reserve"])
            self.assertIsInstance(got, float)
            self.assertEqual("%.5g" % got, "%.5g" % case["mse"], case)
            # the pythonic API gives the same figure and the re-implementation's allocation
            r = cwba.evaluate(feature(case["seed"]), toy_backend,
                              "quant_interval_toy/%d.csv" % case["bits"], case["bits"],
                              reserve=case["reserve"], alpha=GOLDEN["alpha"], beta=GOLDEN["beta"],
                              max_batch=3)
            self.assertEqual(r.mse, got)
            np.testing.assert_array_equal(r.n, case["n_final_by_reimplementation"])

    def test_flag1_dorefa(self):
        x = feature(4)
        got = drop_in(1, 3, x, toy_backend, None, quant="dorefa")
        xh = np.round(np.clip(x, 0, 0.9) * 7).astype(np.float32) / np.float32(7)
        want = np.mean((toy_backend(xh).astype(np.float64) - toy_backend(x)) ** 2)
        self.assertAlmostEqual(got, want, places=6)
        self.assertGreater(got, 0)


class TestErrors(InTempDir):
    def test_library_errors_are_one_line_exceptions(self):
        with self.assertRaises(cwba.Error) as c:
            drop_in(0, 2, feature(1), toy_backend, None, quant="unniform")
        self.assertIn("uniform", str(c.exception))
        self.assertEqual(c.exception.status, "CWBA_E_ARG")
        with self.assertRaises(cwba.Error) as c:  # no table for flag 1
            drop_in(1, 3, feature(4), toy_backend, None, net_mode="missing")
        self.assertEqual(c.exception.status, "CWBA_E_IO")
        self.assertIn("quant_interval_missing", str(c.exception))
        self.assertNotIn("\n", str(c.exception))
        os.makedirs("quant_interval_bad")
        with open("quant_interval_bad/3.csv", "w") as f:
            f.write("1,2,3\n")
        with self.assertRaises(cwba.Error) as c:  # 3 columns for 8 channels
            drop_in(1, 3, feature(4), toy_backend, None, net_mode="bad")
        self.assertEqual(c.exception.status, "CWBA_E_FORMAT")
        with self.assertRaises(cwba.Error):
            cwba.Model("resnet19")
        with self.assertRaises(cwba.Error):
            cwba.decode(b"not a stream")

    def test_argument_errors(self):
        with self.assertRaises(ValueError):
            drop_in(2, 2, feature(1), toy_backend, None)
        with self.assertRaises(ValueError):  # DoReFa has no table
            drop_in(0, 2, feature(1), toy_backend, None, quant="dorefa")
        with self.assertRaises(ValueError):
            drop_in(0, 2, np.zeros((2, 8, 3, 3), np.float32), toy_backend, None)
        with self.assertRaises(TypeError):
            drop_in(0, 2, feature(1), None, None)
        with self.assertRaises(ValueError):
            drop_in(0, 2, feature(1), toy_backend, None, max_batch=0)
        with self.assertRaises(ValueError):
            drop_in(1, 9, feature(4), toy_backend, None)

    def test_backend_exceptions_propagate(self):
        class Boom(Exception):
            pass
        calls = []

        def late_failure(b):  # fails in the middle of the greedy, inside the library
            calls.append(b.shape[0])
            if len(calls) == 5:
                raise Boom("layer 3 exploded")
            return toy_backend(b)
        with self.assertRaises(Boom):
            cwba.calibrate(feature(1), late_failure)
        self.assertEqual(len(calls), 5)  # aborted at once, no call after the failure
        with self.assertRaises(ZeroDivisionError):
            drop_in(0, 2, feature(1), lambda b: 1 / 0, None)
        self.assertFalse(os.path.exists("ca"))  # nothing written on failure

    def test_backend_wrong_shapes(self):
        n = [0]

        def shrinking(b):
            n[0] += 1
            y = toy_backend(b)
            return y if n[0] < 3 else y[:, :4]
        for bad in (lambda b: toy_backend(b)[:1].repeat(2, 0),  # wrong batch
                    lambda b: np.zeros((b.shape[0], 0)),          # no outputs
                    shrinking):                                   # K changes
            with self.assertRaises(ValueError) as c:
                cwba.calibrate(feature(1), bad)
            self.assertIn("back end returned shape", str(c.exception))
        with self.assertRaises(TypeError):
            cwba.calibrate(feature(1), lambda b: "logits")
        calls = [0]

        def inf_later(b):
            calls[0] += 1
            return toy_backend(b) * (np.inf if calls[0] > 2 else 1)
        for bad, msg in ((lambda b: toy_backend(b) * np.inf, "reference logit 0 is not finite"),
                         (inf_later, "back end returned a non-finite logit")):
            with self.assertRaises(cwba.Error) as c:  # the library's checks of the outputs
                cwba.calibrate(feature(1), bad)
            self.assertIn(msg, str(c.exception))


class TestApi(unittest.TestCase):
    def test_quantizers(self):
        x = feature(4)[0]
        mn, mx = cwba.feature_range(x)
        self.assertEqual((mn, mx), (float(x.min()), float(x.max())))
        n = np.arange(1, 9)
        xh, codes = cwba.quantize(x, n, return_codes=True)
        for c in range(8):  # the uniform formula in float32, ties to even
            q = np.round((x[c] - np.float32(mn)) / np.float32(mx - mn) * np.float32(n[c]))
            np.testing.assert_array_equal(codes[c], q)
            np.testing.assert_array_equal(
                xh[c], (q * np.float32(mx - mn)) / np.float32(n[c]) + np.float32(mn))
        self.assertEqual(cwba.budget(3, 8), 56)
        np.testing.assert_array_equal(cwba.quantize(x, 7, "log").shape, x.shape)
        d = cwba.dorefa(x, 2, 0.9)
        np.testing.assert_array_equal(d, np.round(np.clip(x, 0, 0.9) * 3).astype(np.float32) / 3)

    def test_encode_decode(self):
        x = feature(5)[0]
        n = [1, 3, 7, 15, 2, 4, 6, 8]
        data = cwba.encode(x, n, model="toy", split="s")
        d = cwba.decode(data)
        np.testing.assert_array_equal(d.xhat, cwba.quantize(x, n))
        np.testing.assert_array_equal(d.n, n)
        self.assertEqual((d.info["model"], d.info["split"], d.info["quant"]), ("toy", "s", "uniform"))
        dd = cwba.decode(cwba.encode(x, quant="dorefa", bits=3, clip=0.9))
        np.testing.assert_array_equal(dd.xhat, cwba.dorefa(x, 3, 0.9))
        with self.assertRaises(cwba.Error):  # a flipped byte fails the CRC
            cwba.decode(data[:-1] + bytes([data[-1] ^ 1]))

    def test_model_against_its_card(self):
        card = load_json("models", "resnet18_fmnist64.json")
        m = cwba.Model("resnet18")
        ds = cwba.Dataset("fmnist")
        imgs, labels = ds.images(0, 4)
        np.testing.assert_array_equal(labels, card["labels_first16"][:4])
        logits = m.forward(imgs)
        ref = np.asarray(card["reference_logits_first16"][:4], dtype=np.float32)
        self.assertLess(np.abs(logits - ref).max(), 1e-4 * np.abs(ref).max())
        sp = m.split("layer3")
        self.assertEqual(sp.shape, (256, 4, 4))
        feats = m.features(imgs, "layer3")
        np.testing.assert_array_equal(sp(feats), logits)  # front + back == forward, bit for bit
        self.assertIn("layer3", m.splits)
        with self.assertRaises(cwba.Error):
            m.split("layer9")
        with self.assertRaises(ValueError):
            m.forward(np.zeros((1, 3, 32, 32), np.float32))

    def test_gil_released_during_library_work(self):
        m = cwba.Model("resnet18")
        imgs = np.zeros((32, 3, 64, 64), np.float32)
        ticks = [0]
        stop = threading.Event()

        def spin():
            while not stop.is_set():
                ticks[0] += 1
                time.sleep(0)
        t = threading.Thread(target=spin)
        t.start()
        try:
            before = ticks[0]
            m.forward(imgs)
            during = ticks[0] - before
        finally:
            stop.set()
            t.join()
        self.assertGreater(during, 10)  # the other thread ran while the C forward pass did

    def test_version(self):
        self.assertRegex(cwba.version(), r"^\d+\.\d+\.\d+$")


if __name__ == "__main__":
    unittest.main()
