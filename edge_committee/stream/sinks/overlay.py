"""Draw a result on its frame (label, confidence, exit stage, fps), on the CPU with Pillow; a video
bundle's frame shows its latest clip's label and that clip's frame span; a segmentation result is
drawn by :mod:`~edge_committee.stream.sinks.seg_overlay`."""

from __future__ import annotations

import functools

import numpy as np

from edge_committee._lazy import require
from edge_committee.stream.types import FrameResult

#: frames smaller than this (px, height) are scaled up by an integer factor so the text is legible
MIN_HEIGHT = 240


@functools.lru_cache(maxsize=4)
def _font(size: int):
    ImageFont = require("PIL.ImageFont")
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def upscale(image: np.ndarray, min_height: int = MIN_HEIGHT) -> np.ndarray:
    """(H, W, 3) RGB at least ``min_height`` tall (nearest, integer factor); gray becomes RGB."""
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    factor = -(-min_height // image.shape[0])
    if factor > 1:
        image = image.repeat(factor, axis=0).repeat(factor, axis=1)
    return image


def draw_overlay(image: np.ndarray, result: FrameResult, fps: float | None) -> np.ndarray:
    """A copy of ``image`` (upscaled if small) with the result drawn in a box at the top left; a
    segmentation result has its class map, deferred tiles and legend drawn instead
    (:func:`~edge_committee.stream.sinks.seg_overlay.draw_segmentation`)."""
    if getattr(result, "class_map", None) is not None:
        from edge_committee.stream.sinks.seg_overlay import draw_segmentation

        return draw_segmentation(image, result, fps)
    Image = require("PIL.Image")
    ImageDraw = require("PIL.ImageDraw")
    canvas = Image.fromarray(np.ascontiguousarray(upscale(image)))
    size = max(10, canvas.height // 16)
    font = _font(size)
    lines = [f"{result.label}  {result.confidence:.2f}",
             f"exit stage {result.exit_stage} ({result.exit_member})",
             *([f"clip frames {result.clip_span[0]}-{result.clip_span[1]}"]
               if getattr(result, "clip_span", None) is not None else []),
             f"{fps:.1f} fps  {result.latency_ms:.0f} ms" if fps is not None else f"{result.latency_ms:.0f} ms"]
    draw = ImageDraw.Draw(canvas)
    pad = max(2, size // 4)
    w = max(draw.textlength(t, font=font) for t in lines)
    draw.rectangle([0, 0, int(w) + 2 * pad, len(lines) * (size + pad) + pad], fill=(0, 0, 0))
    for i, t in enumerate(lines):
        draw.text((pad, pad + i * (size + pad)), t, fill=(255, 255, 0), font=font)
    return np.asarray(canvas)
