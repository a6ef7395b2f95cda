""""Fashion streets": segmentation frames made of real Fashion-MNIST items (deterministic by seed).

A frame is a ``(H, W)`` uint8 grayscale image (default 192x384) with a ``(H, W)`` uint8 class map
of 11 classes: 0 = background, ``1 + k`` = Fashion-MNIST class ``k``. Each frame has a textured
background (low-frequency noise, a vertical gradient, pixel noise) with clutter strokes (hard
negatives), and 12 to 24 items pasted at random sizes (24 to 60 px) and contrasts (dark or light),
most of them in the lower part of the frame (a street-like layout: the top is mostly "sky", easy;
the bottom is crowded, hard). A pixel is labelled with the item's class where the item's own
intensity is above 0.3 (Fashion-MNIST items are bright on black); later items cover earlier ones.

Item sources: ``train`` frames use train[0:50000] of the Debian ``dataset-fashion-mnist`` package,
``validation`` frames train[50000:60000], ``test`` frames the official t10k split: the splits never
share an item image.

    python examples/fashion_streets/scenes.py --out data       # writes data/{validation,test}.npz
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np
from PIL import Image

DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ("background", "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot")
FRAME = (192, 384)
#: item image range of each split in the Debian files (file stem, start, stop)
SPLITS = {"train": ("train", 0, 50000), "validation": ("train", 50000, 60000), "test": ("t10k", 0, 10000)}
#: frames per split written by ``--out`` and the seed of each split's first frame
SPLIT_FRAMES = {"validation": 100, "test": 100}
SPLIT_SEEDS = {"train": 0, "validation": 1_000_000, "test": 2_000_000}


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_items(split: str, data_dir: Path = DATA_DIR) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,) int64) of the item pool of ``split``."""
    stem, start, stop = SPLITS[split]
    images = _read_idx(data_dir / f"{stem}-images-idx3-ubyte.gz")[start:stop]
    labels = _read_idx(data_dir / f"{stem}-labels-idx1-ubyte.gz")[start:stop].astype(np.int64)
    return images, labels


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a coarse random grid resized bilinearly."""
    coarse = rng.random((h // cell + 2, w // cell + 2)).astype(np.float32)
    im = Image.fromarray(coarse, mode="F").resize((w + 2 * cell, h + 2 * cell), Image.BILINEAR)
    return np.asarray(im)[cell:cell + h, cell:cell + w]


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    bg = 0.25 + 0.3 * _smooth_noise(rng, h, w, 48) + 0.15 * np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    bg += 0.08 * (_smooth_noise(rng, h, w, 6) - 0.5)
    for _ in range(rng.integers(4, 11)):  # clutter strokes: bright or dark lines, item-like contrast
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        length, angle = rng.integers(15, 60), rng.uniform(0, np.pi)
        t = np.linspace(0, 1, 2 * length)
        ys = np.clip((y0 + t * length * np.sin(angle)).astype(int), 0, h - 1)
        xs = np.clip((x0 + t * length * np.cos(angle)).astype(int), 0, w - 1)
        value = rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.5)
        for d in range(rng.integers(1, 4)):
            bg[np.clip(ys + d, 0, h - 1), xs] += value
    return bg


def make_frame(seed: int, items: np.ndarray, item_labels: np.ndarray,
               size: tuple[int, int] = FRAME) -> tuple[np.ndarray, np.ndarray]:
    """One frame: (image (H, W) uint8, class map (H, W) uint8), deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    h, w = size
    frame = _background(rng, h, w)
    target = np.zeros((h, w), np.uint8)
    count = int(rng.integers(12, 25) * (h * w) / (FRAME[0] * FRAME[1]) + 0.5)
    for _ in range(max(count, 1)):
        i = int(rng.integers(0, len(items)))
        s = int(rng.integers(24, 61))
        item = np.asarray(Image.fromarray(items[i]).resize((s, s), Image.BILINEAR), np.float32) / 255.0
        # 80 % of the items in the lower 60 % of the frame
        lo = int(0.4 * h) if rng.random() < 0.8 else 0
        y = int(rng.integers(min(lo, h - s // 2), max(h - s // 2, lo + 1))) - s // 2
        x = int(rng.integers(-s // 4, w - s + s // 4))
        contrast = rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 0.75)
        ys, xs = slice(max(y, 0), min(y + s, h)), slice(max(x, 0), min(x + s, w))
        patch = item[ys.start - y:ys.stop - y, xs.start - x:xs.stop - x]
        frame[ys, xs] = frame[ys, xs] * (1 - patch) + (frame[ys, xs] + contrast) * patch
        target[ys, xs] = np.where(patch > 0.3, 1 + item_labels[i], target[ys, xs])
    frame += rng.normal(0, 0.05, frame.shape).astype(np.float32)
    return (np.clip(frame, 0, 1) * 255 + 0.5).astype(np.uint8), target


def make_split(split: str, frames: int, size: tuple[int, int] = FRAME,
               data_dir: Path = DATA_DIR, first: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``first .. first+frames-1`` of ``split``: images (N, H, W) uint8, class maps (N, H, W) uint8."""
    items, labels = load_items(split, data_dir)
    base = SPLIT_SEEDS[split]
    out = [make_frame(base + first + i, items, labels, size) for i in range(frames)]
    return np.stack([x for x, _ in out]), np.stack([y for _, y in out])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "data")
    ap.add_argument("--data-dir", type=Path, default=DATA_DIR)
    ap.add_argument("--frames", type=int, default=None, help="frames per split (default: 100 each)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for split, n in SPLIT_FRAMES.items():
        x, y = make_split(split, args.frames or n, data_dir=args.data_dir)
        np.savez_compressed(args.out / f"{split}.npz", x=x, y=y)
        print(f"{args.out / (split + '.npz')}: {x.shape[0]} frames {x.shape[1]}x{x.shape[2]}")


if __name__ == "__main__":
    main()
