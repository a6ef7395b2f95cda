""""Fashion actions": 16-frame clips in which a real Fashion-MNIST item performs one of 8 motions.

A clip is ``(T, H, W)`` uint8 grayscale (default 16 frames of 64x64) with one label: the motion of
the *actor* item, one of :data:`ACTIONS` (move left/right/up/down, rotate clockwise/counter-
clockwise, zoom in/out). The actor moves at a random speed (0.05 to 1.2 of the full rate: slow clips
are the hard ones) on a textured, noisy background, while a second item (slightly smaller and
dimmer) drifts at a constant random velocity: a competing motion. Each frame is rendered by one
affine warp of the 28x28 item per item (bilinear), so a frame is exact for its sub-pixel pose.

Item sources: ``train`` clips use train[0:50000] of the Debian ``dataset-fashion-mnist`` package,
``validation`` clips train[50000:60000], ``test`` clips the official t10k split: the splits never
share an item image. Clip ``i`` of a split is deterministic in ``SPLIT_SEEDS[split] + i``.

    python examples/fashion_actions/clips.py          # writes data/{validation,test}.npz (x, y)
"""

from __future__ import annotations

import argparse
import gzip
import math
from pathlib import Path

import numpy as np
from PIL import Image

DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
ACTIONS = ("move_left", "move_right", "move_up", "move_down", "rotate_cw", "rotate_ccw", "zoom_in", "zoom_out")
CLIP = (16, 64, 64)  #: frames, height, width
SPLITS = {"train": ("train", 0, 50000), "validation": ("train", 50000, 60000), "test": ("t10k", 0, 10000)}
SPLIT_CLIPS = {"validation": 600, "test": 600}
SPLIT_SEEDS = {"train": 0, "validation": 1_000_000, "test": 2_000_000}
#: full-rate motion per frame: px for moves, degrees for rotations, log-scale for zooms
MOVE_PX, TURN_DEG, ZOOM_LOG = 1.6, 6.0, 0.035
SPEED = (0.05, 1.2)
NOISE = 0.2  #: pixel noise sigma on the [0, 1] scale


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_items(split: str, data_dir: Path = DATA_DIR) -> np.ndarray:
    """The item images (N, 28, 28) uint8 of ``split``'s pool."""
    stem, start, stop = SPLITS[split]
    return _read_idx(data_dir / f"{stem}-images-idx3-ubyte.gz")[start:stop]


def _render(item: Image.Image, size: tuple[int, int], cx: float, cy: float, angle_deg: float,
            scale: float) -> np.ndarray:
    """The item (28x28, float 'F' image) drawn with its centre at (cx, cy), rotated and scaled: (H, W) in [0, 1]."""
    h, w = size
    a = math.radians(angle_deg)
    cos, sin = math.cos(a) / scale, math.sin(a) / scale
    # output pixel (x, y) -> item pixel: inverse rotation and scale about the centres
    coeffs = (cos, sin, 14 - cos * cx - sin * cy, -sin, cos, 14 + sin * cx - cos * cy)
    return np.asarray(item.transform((w, h), Image.AFFINE, coeffs, Image.BILINEAR), np.float32) / 255.0


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    coarse = rng.random((h // 16 + 2, w // 16 + 2)).astype(np.float32)
    im = Image.fromarray(coarse, mode="F").resize((w + 32, h + 32), Image.BILINEAR)
    return 0.15 + 0.25 * np.asarray(im)[16:16 + h, 16:16 + w]


def make_clip(seed: int, items: np.ndarray, clip: tuple[int, int, int] = CLIP) -> tuple[np.ndarray, int]:
    """One clip (T, H, W) uint8 and its action index, deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    t_len, h, w = clip
    label = int(rng.integers(0, len(ACTIONS)))
    speed = rng.uniform(*SPEED)
    actor = Image.fromarray(items[rng.integers(0, len(items))]).convert("F")
    other = Image.fromarray(items[rng.integers(0, len(items))]).convert("F")
    scale = rng.uniform(0.75, 1.1) * min(h, w) / 64
    span = t_len - 1
    step = np.zeros(2)
    if label < 4:  # left, right, up, down
        step = speed * MOVE_PX * np.array([(-1, 0), (1, 0), (0, -1), (0, 1)][label], float)
    start = np.array([w, h]) / 2 - step * span / 2 + rng.uniform(-0.15, 0.15, 2) * np.array([w, h])
    turn = speed * TURN_DEG * {4: -1, 5: 1}.get(label, 0)
    zoom = speed * ZOOM_LOG * {6: 1, 7: -1}.get(label, 0)
    angle0 = rng.uniform(-30, 30)
    o_pos = rng.uniform(0.15, 0.85, 2) * np.array([w, h])
    o_vel = rng.uniform(0, 1.2 * MOVE_PX) * np.array([math.cos(th := rng.uniform(0, 2 * math.pi)), math.sin(th)])
    o_scale, o_angle = scale * rng.uniform(0.6, 0.9), rng.uniform(-30, 30)
    contrast = rng.uniform(0.45, 0.8)
    o_contrast = contrast * rng.uniform(0.5, 0.9)
    bg = _background(rng, h, w)
    frames = np.empty((t_len, h, w), np.uint8)
    for t in range(t_len):
        frame = bg.copy()
        ox, oy = o_pos + o_vel * (t - span / 2)
        frame += o_contrast * _render(other, (h, w), ox, oy, o_angle, o_scale)
        cx, cy = start + step * t
        s = scale * math.exp(zoom * (t - span / 2))
        a = _render(actor, (h, w), cx, cy, angle0 + turn * t, s)
        frame = frame * (1 - a) + (frame + contrast) * a
        frame += rng.normal(0, NOISE, (h, w)).astype(np.float32)
        frames[t] = (np.clip(frame, 0, 1) * 255 + 0.5).astype(np.uint8)
    return frames, label


def make_split(split: str, clips: int, clip: tuple[int, int, int] = CLIP, data_dir: Path = DATA_DIR,
               first: int = 0, items: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Clips ``first .. first+clips-1`` of ``split``: (N, T, H, W) uint8 clips and (N,) int64 action labels."""
    items = load_items(split, data_dir) if items is None else items
    base = SPLIT_SEEDS[split]
    out = [make_clip(base + first + i, items, clip) for i in range(clips)]
    return np.stack([x for x, _ in out]), np.asarray([y for _, y in out], np.int64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "data")
    ap.add_argument("--data-dir", type=Path, default=DATA_DIR)
    ap.add_argument("--clips", type=int, default=None, help="clips per split (default: 600 each)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for split, n in SPLIT_CLIPS.items():
        x, y = make_split(split, args.clips or n, data_dir=args.data_dir)
        np.savez(args.out / f"{split}.npz", x=x, y=y)
        print(f"{args.out / (split + '.npz')}: {x.shape[0]} clips of {x.shape[1]} frames {x.shape[2]}x{x.shape[3]}")


if __name__ == "__main__":
    main()
