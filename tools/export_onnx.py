#!/usr/bin/python3
"""ONNX models for the ONNX Runtime contender of bench/run.sh.

    export_onnx.py DIR [ARCH,ARCH,...]   (only those forward models, and the probes)

Exports, with torch.onnx.export (opset 13), the same torchvision modules
tools/bench_torch.py times:

    forward_<arch>_<size>_b<batch>.onnx   whole network, static input shape
        (alexnet, vgg16, resnet18) x (224 batch 1, 64 batch 64), resnet50 224 batch 1
    probe_<size>.onnx                     ResNet18 after layer3 (layer4 ->
        avgpool -> flatten -> fc), dynamic batch axis, size 64 and 224

and DIR/export.json: {name: "ok" | "failed: <first line of the error>"}.
Exports that fail are recorded, not fatal: torch 1.13 cannot export
AlexNet/VGG16 at 64 px, whose adaptive average pool (to 6x6 / 7x7) then has
an output size that does not divide its input size.

A file that already exists is kept (the export of VGG16 takes a while and
writes ~0.5 GB); delete DIR to redo them.
"""

import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_torch as bt  # noqa: E402

FORWARD = [(arch, size, batch) for size, batch in ((224, 1), (64, 64))
           for arch in ("alexnet", "vgg16", "resnet18")] + [("resnet50", 224, 1)]


def export(module, x, path, dynamic_batch):
    kw = {}
    if dynamic_batch:
        kw["dynamic_axes"] = {"x": {0: "batch"}, "y": {0: "batch"}}
    tmp = path + ".tmp"
    with torch.no_grad():
        torch.onnx.export(module, x, tmp, opset_version=13, input_names=["x"],
                          output_names=["y"], do_constant_folding=True, **kw)
    os.replace(tmp, path)


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    archs = sys.argv[2].split(",") if len(sys.argv) == 3 else None
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    manifest_path = os.path.join(d, "export.json")
    manifest = {}
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
    jobs = [("forward_%s_%d_b%d" % (a, s, b), a, s, b) for a, s, b in FORWARD
            if archs is None or a in archs]
    jobs += [("probe_%d" % s, None, s, 1) for s in (64, 224)]
    for name, arch, size, batch in jobs:
        path = os.path.join(d, name + ".onnx")
        if os.path.exists(path) or manifest.get(name, "").startswith("failed"):
            continue
        try:
            if arch:
                export(bt.build(arch, size), torch.zeros(batch, 3, size, size), path, False)
            else:
                back = bt.resnet_back(bt.build("resnet18", size))
                export(back, torch.zeros(bt.probe_shape(size, 2)), path, True)
            manifest[name] = "ok"
        except Exception as e:  # recorded in the manifest, reported by bench.py
            manifest[name] = "failed: " + str(e).splitlines()[0][:200]
        print("%s: %s" % (name, manifest[name]), file=sys.stderr)
        with open(manifest_path + ".tmp", "w") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
        os.replace(manifest_path + ".tmp", manifest_path)


if __name__ == "__main__":
    main()
