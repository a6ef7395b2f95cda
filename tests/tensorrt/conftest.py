"""TensorRT test fixtures: the recording fake installed as ``tensorrt``, a fake GPU, a tiny bundle.

No TensorRT builder installs here (design.md §5), so the build and run paths are tested against
``fake_trt`` and the names they use are checked against the real bindings by
``test_tensorrt_api_surface.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import fake_trt  # noqa: E402

from edge_committee.backend.tensorrt.gpu import GpuInfo  # noqa: E402

ORIN = GpuInfo("Orin", "8.7")
#: modules a real TensorRT could come from; hidden so that only the fake answers
_TRT_MODULES = ("tensorrt", "tensorrt_bindings", "tensorrt_lean_bindings", "tensorrt_lean")


def install_fake(monkeypatch, knobs: fake_trt.Knobs | None = None):
    fake = fake_trt.make_fake(knobs)
    for name in _TRT_MODULES:
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: import raises ImportError
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    return fake


@pytest.fixture
def fake_trt_module(monkeypatch):
    """A fresh fake ``tensorrt`` (TensorRT 10.3) in ``sys.modules``; ``.knobs`` changes its behaviour."""
    return install_fake(monkeypatch)


@pytest.fixture
def gpu(monkeypatch):
    """This 'machine' has an Orin (sm87); change ``gpu.current`` to move the bundle to another GPU."""
    from edge_committee.backend.tensorrt import gpu as gpu_module

    class Machine:
        current = ORIN

    monkeypatch.setattr(gpu_module, "gpu_info", lambda device=0: Machine.current)
    return Machine


def _linear_onnx(path: Path, side: int, classes: int = 4) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(side).normal(size=(classes, side * side)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"], axis=1),
         helper.make_node("Gemm", ["flat", "W", "b"], ["logits"], transB=1)],
        "linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, side, side])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.zeros(classes, np.float32), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def make_bundle(root: Path) -> Path:
    """A two-member bundle (``a`` FP32, ``b.fp16`` FP16) with a cascade a -> b.fp16, written in code."""
    from edge_committee.bundle.bundle import SCHEMA_VERSION, finalize_manifest

    (root / "members").mkdir(parents=True)
    _linear_onnx(root / "members" / "a.onnx", 6)
    _linear_onnx(root / "members" / "b.fp16.onnx", 8)
    labels = ["w", "x", "y", "z"]

    def member(name: str, file: str, precision: str, side: int) -> dict:
        return {"name": name, "base": name.split(".")[0], "file": file, "sha256": "", "macs": side * side * 4,
                "preprocessing": {"size": [side, side], "color": "gray", "mean": [0.5], "std": [0.25]},
                "labels": labels, "precision": precision}

    manifest = {"schema_version": SCHEMA_VERSION, "name": "tiny-trt", "labels": labels,
                "members": [member("a", "members/a.onnx", "fp32", 6), member("b.fp16", "members/b.fp16.onnx", "fp16", 8)],
                "cascade": {"members": ["a", "b.fp16"], "thresholds": [0.6], "confidence": "max_prob"},
                "files": {}}
    finalize_manifest(root, manifest)
    return root


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return make_bundle(tmp_path / "bundle")
