"""tools/train_fmnist.py: its recipes are the committed cards', its
augmentation is the cards' preprocessing of a shifted/mirrored window, its
pruning keeps exactly round(d * numel) weights, and a two-batch CPU run of
ResNet18 writes a card that `cwba infer` (the card's sha256 checked on
loading) reproduces: logits within 1e-4 of the card's. Skipped without torch."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

SRC = os.environ.get("CWBA_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
CLI = os.environ.get("CWBA_BIN", "cwba")
FMNIST = "/usr/share/datasets/fashion-mnist"
sys.path.insert(0, os.path.join(SRC, "tools"))
try:
    import torch
    import train_fmnist as T
    from make_reference import preprocess_fmnist, read_safetensors
except ImportError as e:  # no torch: nothing to train with
    raise unittest.SkipTest("torch missing: %s" % e)


def card(arch):
    with open(os.path.join(SRC, "models", "%s_fmnist64.json" % arch)) as f:
        return json.load(f)


class TrainFmnist(unittest.TestCase):
    def test_recipes_are_the_committed_cards(self):
        for arch in ("alexnet", "vgg16", "resnet18"):
            c, r = card(arch), T.recipe_for(arch)
            self.assertEqual(r["train"], c["train"], arch)
            self.assertEqual(r["density"], c.get("classifier_density"), arch)
            self.assertEqual(r["f16"], "weights_dtype" in c, arch)
            self.assertEqual((c["input"]["mean"], c["input"]["std"], c["input"]["size"]),
                             (T.MEAN, T.STD, T.SIZE))
        self.assertIs(T.recipe_for("vgg11"), T.RECIPES["vgg"])
        self.assertIs(T.recipe_for("resnet50"), T.RECIPES["resnet"])

    @unittest.skipUnless(os.path.isdir(FMNIST), "no Fashion-MNIST")
    def test_augmentation_is_the_cards_preprocessing(self):
        u8, _ = T.fmnist_split(FMNIST, "t10k")
        u8 = u8[:4]
        ref = preprocess_fmnist(u8.numpy(), 64, T.MEAN, T.STD)
        z = torch.zeros(4, dtype=torch.long)
        self.assertEqual(float((T.crop_flip(u8, z + 3, z + 3, z.bool()) - ref).abs().max()), 0.0)
        self.assertEqual(float((T.crop_flip(u8, z + 3, z + 3, ~z.bool()) - ref.flip(-1)).abs().max()), 0.0)
        # A window shifted by one pixel down: row 0 of the 28x28 source is zero padding.
        shifted = T.crop_flip(u8, z + 2, z + 3, z.bool())
        self.assertGreater(float((shifted - ref).abs().max()), 0.1)

    def test_pruning_keeps_round_d_numel(self):
        torch.manual_seed(0)
        m = torch.nn.Module()
        m.classifier = torch.nn.Sequential(torch.nn.Linear(300, 70), torch.nn.ReLU(),
                                           torch.nn.Linear(70, 50), torch.nn.Linear(50, 3))
        w0 = m.classifier[0].weight.detach().clone()
        T.prune_masks(m, T.DENSITY)
        w = m.classifier[0].weight.detach()
        self.assertEqual(int((w != 0).sum()), round(0.01 * w.numel()))
        self.assertEqual(int((m.classifier[2].weight != 0).sum()), round(0.05 * 70 * 50))
        self.assertEqual(int((m.classifier[3].weight != 0).sum()), 150)  # third Linear untouched
        # The kept weights are the largest in magnitude.
        self.assertGreaterEqual(float(w[w != 0].abs().min()), float(w0[w == 0].abs().max()))

    def test_f16_safetensors_round_trip(self):
        sd = {"b": torch.arange(6, dtype=torch.float16).view(2, 3), "a": torch.tensor([7.5])}
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "x.safetensors")
            with open(p, "wb") as f:
                f.write(T.safetensors_bytes(sd, {"arch": "t"}))
            back = read_safetensors(p)
        np.testing.assert_array_equal(np.asarray(back["b"]), np.arange(6).reshape(2, 3))
        np.testing.assert_array_equal(np.asarray(back["a"]), [7.5])

    @unittest.skipUnless(os.path.isdir(FMNIST), "no Fashion-MNIST")
    def test_smoke_run_is_reproduced_by_cwba(self):
        with tempfile.TemporaryDirectory() as d:
            p = subprocess.run([sys.executable, os.path.join(SRC, "tools", "train_fmnist.py"), "resnet18",
                                "--out", d, "--device", "cpu", "--epochs", "1", "--batch", "32",
                                "--max-batches", "2", "--eval-limit", "64"],
                               capture_output=True, text=True, timeout=600)
            self.assertEqual(p.returncode, 0, p.stderr)
            with open(os.path.join(d, "resnet18_fmnist64.json")) as f:
                c = json.load(f)
            ref = card("resnet18")
            self.assertEqual(list(c), list(ref))
            self.assertEqual(c["input"], ref["input"])
            self.assertEqual(c["labels_first16"], ref["labels_first16"])
            self.assertEqual((c["train"]["max_batches"], c["train"]["eval_images"]), (2, 64))
            logits = np.array(c["reference_logits_first16"], dtype=np.float64)
            self.assertEqual(logits.shape, (16, 10))
            self.assertTrue(0 <= c["test_top1"] <= 1)
            out = os.path.join(d, "logits.npy")
            env = dict(os.environ, CWBA_MODELS=d)
            q = subprocess.run([CLI, "infer", "--model", "resnet18", "--limit", "16", "--batch", "16",
                                "--save-logits", out], capture_output=True, text=True, env=env)
            self.assertEqual(q.returncode, 0, q.stderr)  # includes the card's sha256 check
            got = np.load(out).astype(np.float64)
            diff = float(np.abs(got - logits).max())
            bound = 1e-4 * max(1.0, float(np.abs(logits).max()))
            print("cwba vs card logits: max |diff| %.3g (bound %.3g)" % (diff, bound))
            self.assertLessEqual(diff, bound)


if __name__ == "__main__":
    unittest.main()
