"""A tiny video committee built in code: clips that brighten, darken or stay flat, two 3-D conv members.

Clips are (N, T, H, W) uint8 (default 8 frames of 8x8): a base level plus ``slope * t`` per frame
(slope +12, -12 or 0 grey levels per frame by class) plus strong pixel noise. Each member is one
``Conv`` whose kernel covers its whole view (N, 1, T', H', W') and scores the brightness trend with a
centred ramp over its frames: ``small`` sees 2 frames 4 apart at 4x4 (a noisy estimate), ``large``
all 8 frames at 8x8 (a better one). Input ``clip``, output ``logits`` (N, 3), dynamic batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

LABELS = ["brighten", "darken", "flat"]
CLIP = (8, 8, 8)
VIEWS = {"small": {"frames": 2, "stride": 4, "size": 4}, "large": {"frames": 8, "stride": 1, "size": 8}}


def make_clips(n: int, seed: int, clip=CLIP) -> tuple[np.ndarray, np.ndarray]:
    """(n, T, H, W) uint8 clips and (n,) int64 labels."""
    rng = np.random.default_rng(seed)
    t, h, w = clip
    y = rng.integers(0, 3, n)
    slope = np.array([12.0, -12.0, 0.0])[y] * rng.uniform(0.3, 1.2, n)
    base = rng.uniform(60, 190, n) - slope * (t - 1) / 2
    x = base[:, None, None, None] + slope[:, None, None, None] * np.arange(t)[None, :, None, None]
    x = x + rng.normal(0, 40, (n, t, h, w))
    return np.clip(x, 0, 255).round().astype(np.uint8), y.astype(np.int64)


def clip_member(path: Path, kind: str) -> Path:
    """Write member ``small`` or ``large`` as ONNX (input ``clip`` (N, 1, T', S, S) on the [0, 1] scale)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    v = VIEWS[kind]
    f, s = v["frames"], v["size"]
    times = v["stride"] * (np.arange(f) - (f - 1) / 2)  # frame times of the view, centred
    ramp = times / (times ** 2).sum() / (s * s)  # least-squares slope per frame, averaged over pixels
    gain = 255 / 12 * 1.5
    weight = np.stack([gain * ramp, -gain * ramp, np.zeros(f)])[:, None, :, None, None] * np.ones((1, 1, 1, s, s))
    bias = np.array([-0.6, -0.6, 0.0])
    graph = helper.make_graph(
        [helper.make_node("Conv", ["clip", "W", "B"], ["scores"]),
         helper.make_node("Flatten", ["scores"], ["logits"], axis=1)], kind,
        [helper.make_tensor_value_info("clip", TensorProto.FLOAT, ["batch", 1, f, s, s])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(weight.astype(np.float32), "W"),
         numpy_helper.from_array(bias.astype(np.float32), "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def write_tiny_video(tmp_path: Path, clips: int = 40) -> Path:
    """Members, validation/test .npz splits and a video spec in ``tmp_path``; returns the spec path."""
    for name in VIEWS:
        clip_member(tmp_path / f"{name}.onnx", name)
    for split, seed in (("val", 1), ("test", 2)):
        x, y = make_clips(clips, seed)
        np.savez(tmp_path / f"{split}.npz", x=x, y=y)
    members = [{"name": n, "onnx": f"{n}.onnx", "view": {"frames": v["frames"], "stride": v["stride"]},
                "preprocessing": {"size": [v["size"]] * 2, "color": "gray", "scale": 1 / 255, "offset": 0.0}}
               for n, v in VIEWS.items()]
    spec = {
        "name": "tiny-video", "task": "video", "video": {"clip_frames": CLIP[0]}, "labels": LABELS,
        "members": members,
        "data": {"validation": {"format": "npz", "path": "val.npz"}, "test": {"format": "npz", "path": "test.npz"}},
        "budget": {"macs": "largest", "kind": "mean"},
        "evaluation": {"batch_size": 16, "threads": 1},
    }
    path = tmp_path / "committee.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path
