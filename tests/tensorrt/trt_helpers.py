"""Helpers for the TensorRT tests (a module of its own: ``conftest`` is not importable by name safely)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import fake_trt
from edge_committee.backend.tensorrt.gpu import GpuInfo

ORIN = GpuInfo("Orin", "8.7")
#: modules a real TensorRT could come from; hidden so that only the fake answers
_TRT_MODULES = ("tensorrt", "tensorrt_bindings", "tensorrt_lean_bindings", "tensorrt_lean")


def install_fake(monkeypatch, knobs: fake_trt.Knobs | None = None):
    """Install a fresh fake as ``tensorrt`` (and hide every real TensorRT module); returns it."""
    fake = fake_trt.make_fake(knobs)
    for name in _TRT_MODULES:
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: import raises ImportError
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    return fake


def linear_onnx(path: Path, side: int, classes: int = 4) -> None:
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
    linear_onnx(root / "members" / "a.onnx", 6)
    linear_onnx(root / "members" / "b.fp16.onnx", 8)
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
