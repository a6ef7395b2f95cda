"""A tiny segmentation committee built in code: frames of three intensity bands, two conv members.

Frames are (H, W) uint8: background near 40, class 1 rectangles near 200, class 2 rectangles near
120, plus Gaussian noise. Each member scores class c by ``(mu_c x - mu_c^2 / 2) / s^2`` on the
normalized pixel (a Gaussian band classifier): ``small`` on 2x2-averaged pixels with shifted band
centres (output stride 2, so the SDK resizes its logits), ``large`` on 3x3-averaged pixels at full
resolution (less noise, right centres). Both are fully convolutional with dynamic H and W.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

LABELS = ["background", "bright", "middle"]
MU = np.array([40.0, 200.0, 120.0]) / 255.0
FRAME = (16, 32)
PREPROCESSING = {"size": list(FRAME), "color": "gray", "scale": 1 / 255, "offset": 0.0}


def make_frames(n: int, seed: int, size: tuple[int, int] = FRAME) -> tuple[np.ndarray, np.ndarray]:
    """(n, H, W) uint8 frames and (n, H, W) uint8 class maps."""
    rng = np.random.default_rng(seed)
    h, w = size
    y = np.zeros((n, h, w), np.uint8)
    for i in range(n):
        for _ in range(rng.integers(1, 5)):
            c = rng.integers(1, 3)
            a, b = rng.integers(0, h - 3), rng.integers(0, w - 3)
            y[i, a:a + rng.integers(3, 9), b:b + rng.integers(3, 12)] = c
    x = (MU * 255)[y] + rng.normal(0, 45, y.shape)
    return np.clip(x, 0, 255).astype(np.uint8), y


def seg_member(path: Path, kind: str, seed: int = 0) -> Path:
    """Write the ``small`` or ``large`` band classifier as ONNX (input ``image`` (N, 1, H, W))."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    s2 = 0.12 ** 2
    mu = MU + (np.random.default_rng(seed).normal(0, 0.08, 3) if kind == "small" else 0.0)
    k = 3 if kind == "large" else 1
    weight = np.repeat((mu / s2)[:, None, None, None], k * k, axis=2).reshape(3, 1, k, k) / (k * k)
    bias = -(mu ** 2) / (2 * s2)
    nodes, src = [], "image"
    if kind == "small":
        nodes.append(helper.make_node("AveragePool", ["image"], ["pooled"], kernel_shape=[2, 2], strides=[2, 2]))
        src = "pooled"
    nodes.append(helper.make_node("Conv", [src, "W", "B"], ["logits"], pads=[k // 2] * 4))
    graph = helper.make_graph(
        nodes, kind,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, "height", "width"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3, "oh", "ow"])],
        [numpy_helper.from_array(weight.astype(np.float32), "W"),
         numpy_helper.from_array(bias.astype(np.float32), "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def write_tiny_segmentation(tmp_path: Path, tile=(8, 8), margin: int = 2, frames: int = 12) -> Path:
    """Members, validation/test .npz splits and a segmentation spec in ``tmp_path``; returns the spec."""
    for name in ("small", "large"):
        seg_member(tmp_path / f"{name}.onnx", name)
    for split, seed in (("val", 1), ("test", 2)):
        x, y = make_frames(frames, seed)
        np.savez(tmp_path / f"{split}.npz", x=x, y=y)
    spec = {
        "name": "tiny-seg",
        "task": "segmentation",
        "segmentation": {"tile": list(tile), "margin": margin},
        "labels": LABELS,
        "members": [{"name": n, "onnx": f"{n}.onnx", "preprocessing": dict(PREPROCESSING)} for n in ("small", "large")],
        "data": {"validation": {"format": "npz", "path": "val.npz"}, "test": {"format": "npz", "path": "test.npz"}},
        "budget": {"macs": "largest", "kind": "mean"},
        "evaluation": {"batch_size": 8, "threads": 1},
    }
    path = tmp_path / "committee.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def build_tiny_segmentation(tmp_path: Path, frames: int = 12) -> Path:
    """The tiny segmentation committee built in ``tmp_path`` (small -> large, some tiles deferred); returns the bundle."""
    import edge_committee as ec

    ec.build(write_tiny_segmentation(tmp_path, frames=frames), tmp_path / "bundle", log=lambda s: None, threads=1)
    return tmp_path / "bundle"
