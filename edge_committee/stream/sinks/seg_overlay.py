"""Draw a segmentation result on its frame: the class map blended in, the deferred tiles outlined,
and a legend panel at the right (classes present by share, tiles deferred, fps, latency).

The class map is on the members' input grid; it is scaled to the frame (upscaled like the
classification overlay when small) by nearest neighbour. Each class has a fixed colour
(:func:`palette`), blended at :data:`ALPHA`; pixels no member labelled (class -1) stay as they are.
The legend panel's width depends only on the class names and the frame height, so every frame of
a source has one size (as a video file needs).
"""

from __future__ import annotations

import colorsys
import functools

import numpy as np

from edge_committee._lazy import require
from edge_committee.stream.sinks.overlay import _font, upscale

#: weight of the class colour in the overlay
ALPHA = 0.45
#: outline colour of the tiles a later member ran on
DEFERRED = (255, 255, 255)


@functools.lru_cache(maxsize=8)
def palette(num_classes: int) -> np.ndarray:
    """(C, 3) uint8: well-separated colours (hues a golden-ratio step apart), the same for every run."""
    rgb = [colorsys.hsv_to_rgb((c * 0.618033988749895) % 1.0, 0.85 if c % 2 else 0.65, 1.0 if c % 3 else 0.8)
           for c in range(num_classes)]
    return np.round(np.asarray(rgb) * 255).astype(np.uint8).reshape(num_classes, 3)


def blend(rgb: np.ndarray, class_map: np.ndarray, num_classes: int) -> np.ndarray:
    """``rgb`` (H, W, 3) uint8 with ``class_map`` (h, w) scaled to it (nearest) and blended in."""
    h, w = class_map.shape
    rows = np.arange(rgb.shape[0]) * h // rgb.shape[0]
    cols = np.arange(rgb.shape[1]) * w // rgb.shape[1]
    lab = class_map[rows[:, None], cols[None, :]]
    valid = lab >= 0
    colour = palette(num_classes)[np.where(valid, lab, 0)].astype(np.float32)
    mixed = rgb.astype(np.float32) * (1 - ALPHA) + colour * ALPHA
    out = np.where(valid[..., None], np.round(mixed), rgb)
    return out.astype(np.uint8)


def _lines(result, fps: float | None) -> list[str]:
    later = ", ".join(result.members[1:]) or "none"
    speed = f"{fps:.1f} fps  {result.latency_ms:.0f} ms" if fps is not None else f"{result.latency_ms:.0f} ms"
    return [f"deferred {result.tiles_deferred}/{result.tiles} tiles", f"to {later}", speed]


@functools.lru_cache(maxsize=16)
def panel_width(labels: tuple[str, ...], size: int) -> int:
    """The legend panel's width in px for these class names at this font size (one per source)."""
    ImageDraw, Image = require("PIL.ImageDraw"), require("PIL.Image")
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    font = _font(size)
    texts = [f"{name}  100%" for name in labels] + ["deferred 9999/9999 tiles", "999.9 fps  9999 ms"]
    pad = max(2, size // 4)
    return int(max(draw.textlength(t, font=font) for t in texts)) + size + 4 * pad


def draw_segmentation(image: np.ndarray, result, fps: float | None) -> np.ndarray:
    """``image`` (upscaled if small) with the class map blended in and deferred tiles outlined, and the
    legend panel to its right: an (H, W + panel, 3) uint8 array."""
    Image, ImageDraw = require("PIL.Image"), require("PIL.ImageDraw")
    k = len(result.label_names)
    rgb = blend(upscale(image), result.class_map, k)
    height, width = rgb.shape[:2]
    size = max(10, height // 16)
    font = _font(size)
    pad = max(2, size // 4)
    canvas = Image.new("RGB", (width + panel_width(tuple(result.label_names), size), height), (0, 0, 0))
    canvas.paste(Image.fromarray(rgb), (0, 0))
    draw = ImageDraw.Draw(canvas)
    rows, cols = result.tile_grid
    line = max(1, height // 120)
    for t in np.flatnonzero(result.tile_exit_stage > 0):
        r, c = divmod(int(t), cols)
        x0, x1 = c * width // cols, (c + 1) * width // cols - 1
        y0, y1 = r * height // rows, (r + 1) * height // rows - 1
        draw.rectangle([x0, y0, x1, y1], outline=DEFERRED, width=line)
    y = pad
    for text in _lines(result, fps):
        draw.text((width + pad, y), text, fill=(255, 255, 0), font=font)
        y += size + pad
    total = max(int(result.histogram.sum()), 1)
    colours = palette(k)
    for c in np.argsort(-result.histogram, kind="stable"):
        if result.histogram[c] == 0 or y + size > height:
            break
        draw.rectangle([width + pad, y, width + pad + size - 1, y + size - 1], fill=tuple(int(v) for v in colours[c]))
        share = 100.0 * result.histogram[c] / total
        draw.text((width + 2 * pad + size, y), f"{result.label_names[c]}  {share:.0f}%", fill=(255, 255, 255),
                  font=font)
        y += size + pad
    return np.asarray(canvas)
