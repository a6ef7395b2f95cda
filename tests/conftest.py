"""Shared fixtures: a tiny committee of plain ONNX files built in code, with its data.

The task: 4 classes, the class is the brightest quadrant of a 12x12 RGB image. Each member is a
linear model (Flatten -> Gemm) whose weights sum the pixels of each quadrant, plus noise that
makes the small member weaker. The members differ in input size, normalization, colour, channel
order and layout, as real committees do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

LABELS = ["top-left", "top-right", "bottom-left", "bottom-right"]

MEMBERS = {
    # name: (preprocessing, noise std of the weights)
    "small": ({"size": [6, 6], "color": "gray", "mean": [0.5], "std": [0.25]}, 0.9),
    "medium": ({"size": [8, 8], "color": "rgb", "scale": 0.0078125, "offset": -1.0, "layout": "NHWC",
                "channel_order": "BGR"}, 0.35),
    "large": ({"size": [12, 12], "color": "rgb", "mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]}, 0.05),
}


def make_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 12, 12, 3) uint8 images and their labels (the brightest quadrant)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    base = rng.integers(0, 200, (n, 12, 12, 3)).astype(np.int32)
    boost = rng.integers(5, 40, n)
    for i, c in enumerate(labels):
        r, q = divmod(int(c), 2)
        base[i, 6 * r : 6 * r + 6, 6 * q : 6 * q + 6] += boost[i]
    return np.clip(base, 0, 255).astype(np.uint8), labels.astype(np.int64)


def linear_member(path: Path, pp: dict, noise: float, seed: int) -> Path:
    """Write a Flatten -> Gemm ONNX model summing each quadrant of its input (plus noise)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edge_committee.spec.preprocess import Preprocessing

    p = Preprocessing.from_dict(pp)
    shape = p.input_shape(1)[1:]
    h, w = p.size
    quad = np.zeros((4,) + (h, w), np.float32)
    for c in range(4):
        r, q = divmod(c, 2)
        quad[c, r * h // 2 : (r + 1) * h // 2, q * w // 2 : (q + 1) * w // 2] = 1.0
    ch = p.channels
    per_pixel = np.repeat(quad[..., None], ch, axis=-1)  # (4, h, w, ch)
    if p.layout == "NCHW":
        per_pixel = per_pixel.transpose(0, 3, 1, 2)
    weights = per_pixel.reshape(4, -1) / per_pixel[0].sum() * 40.0
    rng = np.random.default_rng(seed)
    weights = weights + rng.normal(0, noise * weights.std(), weights.shape).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"], axis=1),
         helper.make_node("Gemm", ["flat", "W", "b"], ["logits"], transB=1)],
        "linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *shape])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(weights.astype(np.float32), "W"),
         numpy_helper.from_array(np.zeros(4, np.float32), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def tiny_committee(tmp_path: Path) -> Path:
    """A spec file for three plain ONNX members, with validation and test .npz splits."""
    return write_tiny_committee(tmp_path)


@pytest.fixture(scope="session")
def tiny_committee_factory():
    """:func:`write_tiny_committee`, for fixtures of a wider scope than one test."""
    return write_tiny_committee


def write_tiny_committee(tmp_path: Path) -> Path:
    """Write the tiny committee's members, splits and spec into ``tmp_path``; return the spec."""
    for i, (name, (pp, noise)) in enumerate(MEMBERS.items()):
        linear_member(tmp_path / f"{name}.onnx", pp, noise, seed=i)
    for split, seed, n in (("val", 1, 300), ("test", 2, 300)):
        x, y = make_images(n, seed)
        np.savez(tmp_path / f"{split}.npz", x=x, y=y)
    spec = {
        "name": "tiny",
        "labels": LABELS,
        "members": [{"name": n, "onnx": f"{n}.onnx", "preprocessing": pp} for n, (pp, _) in MEMBERS.items()],
        "data": {"validation": {"format": "npz", "path": "val.npz"},
                 "test": {"format": "npz", "path": "test.npz"}},
        "budget": {"macs": "largest", "kind": "worst"},
        "selection": {"max_members": 3},
        "evaluation": {"batch_size": 64, "threads": 1},
    }
    path = tmp_path / "committee.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def built_bundle(tiny_committee: Path, cache_dir: Path) -> Path:
    from edge_committee.pipeline import build

    out = tiny_committee.parent / "bundle"
    build(tiny_committee, out, cache_dir=cache_dir, log=lambda s: None)
    return out


@pytest.fixture
def learned_committee(tiny_committee: Path) -> Path:
    """The tiny committee's spec with a learned combiner, budgeted to a small > medium cascade."""
    spec = yaml.safe_load(tiny_committee.read_text())
    spec["combiner"] = {"kind": "learned", "folds": 3}
    spec["budget"] = {"macs": 1000, "kind": "worst"}  # small and medium, not large
    tiny_committee.write_text(yaml.safe_dump(spec, sort_keys=False))
    return tiny_committee


@pytest.fixture
def built_learned_bundle(learned_committee: Path, cache_dir: Path) -> Path:
    """A bundle built (and selected) from :func:`learned_committee`."""
    from edge_committee.pipeline import build

    out = learned_committee.parent / "bundle"
    build(learned_committee, out, cache_dir=cache_dir, log=lambda s: None)
    return out
