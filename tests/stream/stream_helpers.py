"""Helpers the stream tests share: frames with known content and synthetic videos (PyAV)."""

from __future__ import annotations

import importlib.util
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

_ROOT_CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"


def _root():
    """tests/conftest.py as a module (its committee builders are reused, not copied)."""
    spec = importlib.util.spec_from_file_location("ec_tests_root_conftest", _ROOT_CONFTEST)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ROOT = _root()
#: frames are the tiny committee's 12x12 images scaled up 4x (codecs prefer sizes of 16 or more)
SCALE = 4


def frames(n: int, seed: int = 5) -> np.ndarray:
    """(n, 48, 48, 3) uint8: the tiny committee's test images, each pixel a 4x4 block."""
    x, _ = ROOT.make_images(n, seed)
    return x.repeat(SCALE, axis=1).repeat(SCALE, axis=2)


def write_video(path: Path, images: np.ndarray, codec: str = "ffv1", fps: int = 25) -> Path:
    """Encode RGB ``images`` into ``path`` (FFV1 in RGB is lossless; libx264 is not)."""
    with av.open(str(path), mode="w") as out:
        s = out.add_stream(codec, rate=fps)
        s.height, s.width = images.shape[1:3]
        s.pix_fmt = "bgr0" if codec == "ffv1" else "yuv420p"
        for i, im in enumerate(images):
            f = av.VideoFrame.from_ndarray(im, format="rgb24")
            f.pts, f.time_base = i, Fraction(1, fps)
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def decode_all(path: Path) -> np.ndarray:
    """Every frame of ``path`` as RGB, decoded by PyAV directly (the reference for lossy files)."""
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
