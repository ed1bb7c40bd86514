#!/usr/bin/env python3
"""The original release's README examples, through cwba's drop-in
channel_wise_bit_allocation_algorithm, with PyTorch as the back end.

The network is torchvision's resnet18(num_classes=10) holding the project's
reference weights (models/resnet18_fmnist64.safetensors), cut after layer3 as
the original did: the front end (conv1 .. layer3) makes the feature x
(1, 256, 4, 4) of each Fashion-MNIST image, and the back end is the list of
torch modules [layer4, avgpool, flatten, fc] run by
fun_network_forward_inference, exactly the shape of the original's call.

  README example 1: --flag 0 --quant_mode 'uniform' --csv_path './channel_allocation/'
                    (interval tables, one row per image, for bits 2..7)
  README example 2: --flag 1 --quant_mode 'unniform' --net_mode 'resnet'
                    --reserve_interval 20 --alpha 0.9 --beta 0.1
                    (the misspelt mode is rejected with the valid ones; run
                    with 'uniform'), and DoReFa for comparison.

Bounded for a test: --calib-images and --eval-images images (defaults 2 and
2; one calibration image is about 33,000 back-end passes, ~1.1e12
multiply-adds through layer4 at 64 px; with one image the table's shares
are whole numbers and leave no interval for the reserve). The tables and MSEs are checked (rows sum to the budget, MSEs fall with
the bits) and the MSEs compared with the same run on cwba's own ResNet18
back end. Run from a scratch directory: it writes ./channel_allocation and
./quant_interval_resnet there.

    PYTHONPATH=python python3 examples/original_readme.py
"""
import argparse
import json
import os
import shutil
import struct
import sys
import time

# One thread for torch and its BLAS unless told otherwise: OpenBLAS's own
# thread pool on a busy machine made each small layer4 call take ~1 s
# (0.04 s with one thread).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402

import cwba

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_safetensors(path):
    """A state dict from a safetensors file (F32 and I64 tensors), without the
    safetensors package: 8-byte header length, JSON header, data."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    dtypes = {"F32": torch.float32, "I64": torch.int64}
    state = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        state[name] = torch.frombuffer(bytearray(data[b:e]), dtype=dtypes[t["dtype"]]).reshape(t["shape"])
    return state


def torchvision_resnet18(weights):
    net = torchvision.models.resnet18(num_classes=10)
    net.load_state_dict(load_safetensors(weights))
    return net.eval()


def fun_network_forward_inference(net_structure, batch):
    """The original's callback: run the back-end modules on a batch."""
    with torch.no_grad():
        for module in net_structure:
            batch = module(batch)
    return batch


def original(flag, bits, x, net_structure, quant_mode, reserve, csv_path="./channel_allocation/",
             fun=fun_network_forward_inference, gpuid=0):
    return cwba.channel_wise_bit_allocation_algorithm(
        flag, bits, gpuid, x, net_structure, quant_mode, "resnet", reserve, 0.9, 0.1, csv_path,
        "resnet18", 0.9, fun)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calib-images", type=int, default=2)
    ap.add_argument("--eval-images", type=int, default=2)
    ap.add_argument("--reserve", type=int, default=20, help="reserve_interval (README: 20)")
    ap.add_argument("--weights", default=os.path.join(ROOT, "models", "resnet18_fmnist64.safetensors"))
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress shows up under CTest too
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    t_start = time.time()

    net = torchvision_resnet18(args.weights)
    front = torch.nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2,
                                net.layer3)
    net_structure = [net.layer4, net.avgpool, torch.nn.Flatten(1), net.fc]
    ours = cwba.Model("resnet18", args.weights, input_size=64).split("layer3")

    def feature(image):
        with torch.no_grad():
            return front(torch.from_numpy(image[None]))  # (1, 256, 4, 4) torch tensor

    # The torch back end against cwba's own forward pass (same weights).
    train = cwba.Dataset("fmnist:/usr/share/datasets/fashion-mnist:train")
    x0 = feature(train[0][0])
    y_torch = fun_network_forward_inference(net_structure, x0).numpy()
    y_cwba = ours(x0.numpy())
    gap = float(np.abs(y_torch - y_cwba).max() / np.abs(y_cwba).max())
    print("torch back end vs cwba's: largest logit difference %.2e of the largest logit" % gap)
    assert gap < 1e-4, gap
    # torch in, torch out: the package hands tensors back as tensors.
    assert isinstance(ours(x0), torch.Tensor) and torch.equal(ours(x0), torch.from_numpy(y_cwba))
    xq = cwba.quantize(x0, 7)
    assert isinstance(xq, torch.Tensor) and xq.shape == x0.shape

    # README example 1: interval tables (flag 0).
    shutil.rmtree("channel_allocation", ignore_errors=True)
    t0 = time.time()
    for i in range(args.calib_images):
        out = original(0, 2, feature(train[i][0]), net_structure, "uniform", 0)
        assert out == 0, out
    print("flag 0: %d images in %.1f s -> ./channel_allocation/{2..7}/resnet18.csv"
          % (args.calib_images, time.time() - t0))
    shutil.rmtree("quant_interval_resnet", ignore_errors=True)
    os.makedirs("quant_interval_resnet")
    for b in range(2, 8):
        rows = cwba.read_table("channel_allocation/%d/resnet18.csv" % b, 256)
        assert rows.shape == (args.calib_images, 256), rows.shape
        assert (rows >= 1).all() and (rows.sum(axis=1) == cwba.budget(b, 256)).all(), b
        shutil.copy("channel_allocation/%d/resnet18.csv" % b, "quant_interval_resnet/%d.csv" % b)

    # README example 2, as written: the misspelt quant_mode is an error.
    test = cwba.Dataset("fmnist")
    x = feature(test[0][0])
    try:
        original(1, 2, x, net_structure, "unniform", args.reserve)
        raise AssertionError("'unniform' was accepted")
    except cwba.Error as e:
        print("flag 1 --quant_mode 'unniform': cwba.Error: %s" % e)
        assert "uniform" in str(e)

    # README example 2 with 'uniform' (and DoReFa), torch and cwba back ends.
    t0 = time.time()
    table = {"uniform": {}, "uniform, reserve 0": {}, "dorefa": {}, "uniform (cwba back end)": {}}
    torch_be = (net_structure, fun_network_forward_inference)
    for i in range(args.eval_images):
        x = feature(test[i][0])
        for b in range(2, 8):
            for row, mode, reserve, (ns, fun) in (
                    ("uniform", "uniform", args.reserve, torch_be),
                    ("uniform, reserve 0", "uniform", 0, torch_be),
                    ("dorefa", "dorefa", args.reserve, torch_be),
                    ("uniform (cwba back end)", "uniform", args.reserve, (ours, None))):
                m = original(1, b, x if fun else x.numpy(), ns, mode, reserve, fun=fun)
                assert np.isfinite(m) and m >= 0, (row, b, m)
                table[row].setdefault(b, []).append(m)
    print("flag 1: %d images in %.1f s, reserve_interval %d, output MSE (mean over images):"
          % (args.eval_images, time.time() - t0, args.reserve))
    print("%-26s" % "bits" + "".join("%11d" % b for b in range(2, 8)))
    for row, per_bits in table.items():
        print("%-26s" % row + "".join("%11.4g" % np.mean(per_bits[b]) for b in range(2, 8)))
    u = [np.mean(table["uniform"][b]) for b in range(2, 8)]
    c = [np.mean(table["uniform (cwba back end)"][b]) for b in range(2, 8)]
    assert u[-1] < u[0], u
    r0 = [np.mean(table["uniform, reserve 0"][b]) for b in range(2, 8)]
    if args.reserve > 0 and args.calib_images > 1:
        assert r0 != u, "the reserve changed no allocation"
    for b, (a, o) in enumerate(zip(u, c), start=2):
        # The two back ends differ by float roundings; the allocations, and so
        # the MSEs, agree unless a greedy step meets a near-tie.
        assert abs(a - o) <= 0.05 * max(a, o) + 1e-12, (b, a, o)
    print("done in %.1f s" % (time.time() - t_start), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
