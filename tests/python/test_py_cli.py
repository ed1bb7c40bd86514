"""The original's function in Python against the cwba command line on the
reference ResNet18: the back end is the model's split as a NumPy callable
(cwba.Split), the features are the CLI's. flag 0 must write the very bytes
`cwba main_model --flag 0` writes; flag 1 must give the MSEs of `cwba evaluate`
(printed to 9 digits) and `cwba main_model --flag 1` (5 digits). Split
layer4 (512x2x2 at 64 px) keeps the back end cheap."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import numpy as np

import cwba

CLI = os.environ.get("CWBA_BIN", "cwba")
SPLIT = "layer4"
BITS = range(2, 8)
RESERVE = 3
N_EVAL = 2


def run_cli(*args):
    p = subprocess.run([CLI] + list(args), capture_output=True, text=True)
    if p.returncode != 0:
        raise AssertionError("cwba %s failed: %s" % (" ".join(args), p.stderr.strip()))
    return p.stdout


class TestAgainstCli(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.old = os.getcwd()
        os.chdir(cls.tmp.name)
        cls.model = cwba.Model("resnet18")
        cls.split = cls.model.split(SPLIT)

    @classmethod
    def tearDownClass(cls):
        os.chdir(cls.old)
        cls.tmp.cleanup()

    def original(self, flag, bits, x, csv_path="py"):
        # as the original's scripts call it: the back end through fun_network_forward_inference
        return cwba.channel_wise_bit_allocation_algorithm(
            flag, bits, 0, x, self.split, "uniform", "resnet", RESERVE, 0.9, 0.1, csv_path,
            "resnet18", 0.9, lambda net, batch: net(batch))

    def test_tables_then_mse(self):
        run_cli("main_model", "--flag", "0", "--model", "resnet18", "--quant_mode", "uniform",
                "--split", SPLIT, "--limit", "1", "--csv_path", "cli", "--csv_name", "resnet18")
        train = cwba.Dataset("fmnist:/usr/share/datasets/fashion-mnist:train")
        x = self.split.front(train[0][0][None])  # (1, 512, 2, 2)
        self.assertEqual(self.original(0, 2, x), 0)
        os.makedirs("quant_interval_resnet")
        for b in BITS:
            with open("cli/%d/resnet18.csv" % b, "rb") as f:
                want = f.read()
            with open("py/%d/resnet18.csv" % b, "rb") as f:
                self.assertEqual(f.read(), want, "bits %d" % b)
            shutil.copy("py/%d/resnet18.csv" % b, "quant_interval_resnet/%d.csv" % b)

        test = cwba.Dataset("fmnist")
        mses = {b: [] for b in BITS}
        for i in range(N_EVAL):
            x = self.split.front(test[i][0][None])
            for b in BITS:
                mses[b].append(self.original(1, b, x))
        out = run_cli("evaluate", "--model", "resnet18", "--split", SPLIT, "--quant", "uniform",
                      "--alloc", "channel", "--table", "quant_interval_resnet", "--bits", "2,3,4,5,6,7",
                      "--reserve", str(RESERVE), "--limit", str(N_EVAL), "--json")
        rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        by_bits = {r["bits"]: r for r in rows if "bits" in r and r.get("alloc") == "channel"}
        self.assertEqual(sorted(by_bits), list(BITS))
        for b in BITS:
            mean = sum(mses[b]) / N_EVAL  # the CLI's order: sum over images, then / N
            self.assertEqual("%.9g" % mean, "%.9g" % by_bits[b]["mse"], "bits %d" % b)
        out = run_cli("main_model", "--flag", "1", "--model", "resnet18", "--quant_mode", "uniform",
                      "--split", SPLIT, "--reserve_interval", str(RESERVE), "--limit", str(N_EVAL),
                      "--every", "1")
        printed = {int(line.split()[1]): line.split()[3] for line in out.splitlines()
                   if line.startswith("bits ")}
        for b in BITS:
            self.assertEqual("%.5g" % (sum(mses[b]) / N_EVAL), printed[b], "bits %d" % b)


if __name__ == "__main__":
    unittest.main()
