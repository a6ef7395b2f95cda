"""Resize weights and crop geometry, computed exactly as PIL, PyTorch and TensorFlow compute them.

Every function here returns plain numbers that :func:`~edge_committee.preprocess.plan.build_plan`
folds into a :class:`~edge_committee.preprocess.plan.PreprocessPlan`: per spatial axis one
``(n_out, n_in)`` float64 matrix (crops and zero padding folded in), stored banded, and, for PIL,
rounding after each pass.

**PIL** (``Image.resize`` on uint8 ``L``/``RGB`` images, Pillow's ``Resample.c``): bilinear and
bicubic (a = -0.5) are separable filters widened by the scale factor when downscaling (always
antialiased). Pillow computes the coefficients in double, normalises each row, converts them to
22-bit fixed point (rounding half away from zero) and rounds and clips to uint8 after each pass. So
``weights = k / 2**22`` with integer ``k`` and a ``round_clip`` after each step reproduce it bit
for bit when the plan is applied in float64. Pillow up to 12 always runs the horizontal pass
first; Pillow 13 runs the vertical pass first for some size pairs (no simple rule fits the
measurements), so :func:`pil_pass_order` reads the order from the installed Pillow once per
size pair with a probe image.
Nearest is Pillow's affine nearest-neighbour scaling: source index ``floor(x0 + (i + 0.5) * s)``
with the position accumulated step by step in double, as Pillow does.

**PyTorch** (``torch.nn.functional.interpolate`` on float tensors, ``align_corners=False``,
which is also what torchvision's ``Resize`` does to float tensors): bilinear (two taps at
``(i + 0.5) * s - 0.5``, clamped at 0), bicubic (four taps, A = -0.75, indices clamped to the
border), ``nearest`` (legacy: ``floor(i * s)``), ``nearest-exact`` (``floor((i + 0.5) * s)``)
and, with ``antialias=True``, the PIL-style widened filters (bicubic with a = -0.5) without
fixed point. Index arithmetic is done in float32, as PyTorch does for float tensors.

**TensorFlow** (``tf.image.resize``, TF 2, ``antialias=False``: half-pixel centres): bilinear
computes ``in = (out + 0.5) * scale - 0.5`` in float32, reads ``floor(in)`` and ``ceil(in)``
clamped to the image, which is PyTorch's bilinear without antialiasing tap for tap; nearest
reads ``min(floor((out + 0.5) * scale), n - 1)``, PyTorch's ``nearest-exact``. The ``tf`` crop
(``tf.image.central_crop``) starts at ``int((n - n * fraction) / 2)`` (float64) and keeps
``n - 2 * start``, and is taken *before* the resize (:func:`tf_central_crop`).
"""

from __future__ import annotations

import functools
import math

import numpy as np

PIL_PRECISION_BITS = 22  #: Pillow's fixed-point precision of 8-bit resampling (32 - 8 - 2)
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "nearest-exact")
RESIZE_IMPLS = ("pil", "torch", "tf")
RESIZE_POLICIES = ("stretch", "center_crop", "shorter_side", "squash", "crop_then_resize")
#: interpolations each resize_impl can compute
IMPL_INTERPOLATIONS = {"pil": INTERPOLATIONS, "torch": INTERPOLATIONS, "tf": ("bilinear", "nearest")}

#: Pillow's ``L24`` luma in 16-bit fixed point: L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16
PIL_LUMA = np.array([19595, 38470, 7471], np.float64) / 65536.0
#: torchvision's ``rgb_to_grayscale`` on float tensors (no rounding)
TORCH_LUMA = np.array([0.2989, 0.587, 0.114], np.float64)


def _triangle(x: float) -> float:
    x = abs(x)
    return 1.0 - x if x < 1.0 else 0.0


def _cubic(a: float):
    def f(x: float) -> float:
        x = abs(x)
        if x < 1.0:
            return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
        if x < 2.0:
            return (((x - 5.0) * x + 8.0) * x - 4.0) * a
        return 0.0

    return f


#: interpolation -> (filter support at scale 1, filter), for the widened (antialiased) filters
_AA_FILTERS = {"bilinear": (1.0, _triangle), "bicubic": (2.0, _cubic(-0.5))}


def resize_matrix(n_in: int, n_out: int, interpolation: str = "bilinear", impl: str = "pil",
                  antialias: bool | None = None) -> np.ndarray:
    """(n_out, n_in) float64 weights resizing one axis as ``impl`` (``pil`` or ``torch``) does.

    ``antialias`` only matters for ``torch`` (default False, as ``F.interpolate``); PIL always
    antialiases bilinear and bicubic; ``tf`` is ``tf.image.resize`` without antialiasing.
    """
    if impl not in RESIZE_IMPLS or interpolation not in IMPL_INTERPOLATIONS[impl]:
        raise ValueError(f"unknown interpolation {interpolation!r} or resize impl {impl!r}")
    if impl == "tf":  # half-pixel centres, no antialias: PyTorch's taps (see the module docstring)
        if interpolation == "bilinear":
            return _torch_linear_matrix(n_in, n_out)
        return _one_hot(_torch_nearest_index(n_in, n_out, exact=True), n_in)
    if impl == "pil":
        if interpolation in ("nearest", "nearest-exact"):
            return _one_hot(_pil_nearest_index(n_in, n_out), n_in)
        return _pil_filter_matrix(n_in, n_out, interpolation)
    if interpolation == "nearest":
        return _one_hot(_torch_nearest_index(n_in, n_out, exact=False), n_in)
    if interpolation == "nearest-exact":
        return _one_hot(_torch_nearest_index(n_in, n_out, exact=True), n_in)
    if antialias:
        return _aa_matrix(n_in, n_out, interpolation, np.float32)
    if interpolation == "bilinear":
        return _torch_linear_matrix(n_in, n_out)
    return _torch_cubic_matrix(n_in, n_out)


def _one_hot(index: np.ndarray, n_in: int) -> np.ndarray:
    w = np.zeros((len(index), n_in), np.float64)
    w[np.arange(len(index)), index] = 1.0
    return w


# --------------------------------------------------------------------------------------- PIL
def _aa_matrix(n_in: int, n_out: int, interpolation: str, dtype) -> np.ndarray:
    """The widened separable filter of Pillow's ``precompute_coeffs`` (and PyTorch's antialias).

    ``dtype`` is the arithmetic of the index and filter computation: float64 for Pillow,
    float32 for PyTorch's float tensors. Rows are normalised to sum to 1.
    """
    support0, filt = _AA_FILTERS[interpolation]
    f = dtype
    scale = f(n_in) / f(n_out)
    filterscale = max(scale, f(1.0))
    support = f(support0) * filterscale
    invscale = f(1.0) / filterscale
    w = np.zeros((n_out, n_in), np.float64)
    for i in range(n_out):
        center = scale * (f(i) + f(0.5))
        xmin = max(int(center - support + f(0.5)), 0)  # C casts truncate toward zero
        xmax = min(int(center + support + f(0.5)), n_in)
        taps = [f(filt(float((f(j) - center + f(0.5)) * invscale))) for j in range(xmin, xmax)]
        total = sum(taps, f(0.0))
        for j, t in zip(range(xmin, xmax), taps):
            w[i, j] = float(t / total) if total != 0 else float(t)
    return w


def _pil_filter_matrix(n_in: int, n_out: int, interpolation: str) -> np.ndarray:
    """Pillow's coefficients in 22-bit fixed point (``normalize_coeffs_8bpc``), as k / 2**22."""
    w = _aa_matrix(n_in, n_out, interpolation, np.float64) * (1 << PIL_PRECISION_BITS)
    k = np.where(w < 0, np.trunc(w - 0.5), np.trunc(w + 0.5))  # C: (int)(x +- 0.5)
    return k / float(1 << PIL_PRECISION_BITS)


def _pil_nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """Pillow's ``ImagingScaleAffine``: the source position accumulates in double."""
    step = n_in / n_out
    pos = step * 0.5
    out = np.empty(n_out, np.int64)
    for i in range(n_out):
        out[i] = min(max(int(pos) if pos >= 0 else -1, 0), n_in - 1)
        pos += step
    return out


#: largest probe image (pixels) for :func:`pil_pass_order`; larger sizes keep horizontal first
_PROBE_MAX_PIXELS = 16 << 20


@functools.lru_cache(maxsize=4096)
def pil_pass_order(in_hw: tuple[int, int], out_hw: tuple[int, int], interpolation: str) -> tuple[str, str]:
    """The order of Pillow's two uint8 passes for this size pair: ``("w", "h")`` or ``("h", "w")``.

    Resizes seeded random probe images with the installed Pillow and keeps the order whose rounded
    two-pass result equals Pillow's; a probe on which both orders agree (small outputs often do) is
    followed by another, up to ``_PROBES``. Horizontal first when only one axis changes, when Pillow
    is not installed, or when neither order matches.
    """
    (h, w), (ho, wo) = in_hw, out_hw
    if interpolation not in _AA_FILTERS or h == ho or w == wo or h * w > _PROBE_MAX_PIXELS:
        return ("w", "h")
    try:
        from PIL import Image
    except ImportError:
        return ("w", "h")
    resample = Image.Resampling.BILINEAR if interpolation == "bilinear" else Image.Resampling.BICUBIC
    wy, wx = _pil_filter_matrix(h, ho, interpolation), _pil_filter_matrix(w, wo, interpolation)
    rng = np.random.default_rng(h * 7919 + w)
    for _ in range(_PROBES):  # a probe on which both orders agree tells nothing: take another
        probe = rng.integers(0, 256, (h, w), dtype=np.uint8)
        ref = np.asarray(Image.fromarray(probe).resize((wo, ho), resample), np.float64)
        x = probe.astype(np.float64)
        w_first = np.array_equal(_round_clip(wy @ _round_clip(x @ wx.T)), ref)
        h_first = np.array_equal(_round_clip(_round_clip(wy @ x) @ wx.T), ref)
        if w_first != h_first:
            return ("w", "h") if w_first else ("h", "w")
        if not w_first:  # neither: not Pillow's two-pass arithmetic; keep the historical order
            break
    return ("w", "h")


#: random probe images tried before the order is taken as horizontal first (both orders agreeing
#: on every one means they agree in general for that size pair, or nearly so)
_PROBES = 8


def _round_clip(y: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(y + 0.5), 0, 255)


# ------------------------------------------------------------------------------------ PyTorch
def _torch_scale(n_in: int, n_out: int) -> np.float32:
    return np.float32(n_in) / np.float32(n_out)


def _torch_nearest_index(n_in: int, n_out: int, exact: bool) -> np.ndarray:
    """``nearest_idx`` / ``nearest_neighbor_exact_compute_source_index`` of ATen (float32)."""
    if n_out == n_in:
        return np.arange(n_out)
    if n_out == 2 * n_in and not exact:
        return np.arange(n_out) >> 1
    scale = _torch_scale(n_in, n_out)
    i = np.arange(n_out, dtype=np.float32)
    src = np.floor(((i + np.float32(0.5)) if exact else i) * scale)
    return np.minimum(src.astype(np.int64), n_in - 1)


def _torch_linear_matrix(n_in: int, n_out: int) -> np.ndarray:
    scale = _torch_scale(n_in, n_out)
    w = np.zeros((n_out, n_in), np.float64)
    for i in range(n_out):
        src = max(scale * (np.float32(i) + np.float32(0.5)) - np.float32(0.5), np.float32(0.0))
        i0 = min(int(np.floor(src)), n_in - 1)
        lam1 = min(max(src - np.float32(i0), np.float32(0.0)), np.float32(1.0))
        i1 = i0 + (1 if i0 < n_in - 1 else 0)
        w[i, i0] += float(np.float32(1.0) - lam1)
        w[i, i1] += float(lam1)
    return w


def _torch_cubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    a = np.float32(-0.75)

    def conv1(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def conv2(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    scale = _torch_scale(n_in, n_out)
    w = np.zeros((n_out, n_in), np.float64)
    for i in range(n_out):
        src = scale * (np.float32(i) + np.float32(0.5)) - np.float32(0.5)
        i0 = int(np.floor(src))
        t = np.float32(src - np.float32(i0))
        coeffs = (conv2(t + 1), conv1(t), conv1(np.float32(1) - t), conv2(np.float32(2) - t))
        for j, c in enumerate(coeffs):
            w[i, min(max(i0 - 1 + j, 0), n_in - 1)] += float(np.float32(c))
    return w


# ------------------------------------------------------------------------------- geometry
def shorter_side_size(in_hw: tuple[int, int], short: int) -> tuple[int, int]:
    """torchvision ``Resize(int)``: the shorter side to ``short``, the longer ``int(short * long / short_in)``."""
    h, w = in_hw
    s_in, l_in = (w, h) if w <= h else (h, w)
    new_long = int(short * l_in / s_in)
    return (new_long, short) if w <= h else (short, new_long)


def keep_ratio_size(in_hw: tuple[int, int], target: tuple[int, int]) -> tuple[int, int]:
    """timm ``ResizeKeepRatio`` (longest=0): scale so both sides cover ``target``."""
    h, w = in_hw
    ratio = min(h / target[0], w / target[1])
    return (round(h / ratio), round(w / ratio))


def center_offset(size: int, crop: int) -> int:
    """Index of the first kept row of torchvision's ``CenterCrop`` (negative: zero padding)."""
    if crop > size:
        return -((crop - size) // 2)
    return int(round((size - crop) / 2.0))


def crop_rows(weights: np.ndarray, start: int, n: int) -> np.ndarray:
    """Rows ``start .. start + n`` of ``weights``; rows outside it are zero (padding with 0)."""
    out = np.zeros((n, weights.shape[1]), weights.dtype)
    lo, hi = max(start, 0), min(start + n, weights.shape[0])
    if hi > lo:
        out[lo - start : hi - start] = weights[lo:hi]
    return out


def tf_central_crop(n: int, fraction: float) -> tuple[int, int]:
    """``tf.image.central_crop`` along one axis: (start, size) with start ``int((n - n * fraction) / 2)``."""
    if fraction >= 1.0:
        return 0, n
    start = int((float(n) - float(n) * fraction) / 2)
    return start, n - 2 * start


def embed_columns(weights: np.ndarray, start: int, n_in: int) -> np.ndarray:
    """A matrix reading a crop of ``weights.shape[1]`` inputs from ``start``, as a matrix over ``n_in`` inputs."""
    out = np.zeros((weights.shape[0], n_in), weights.dtype)
    out[:, start:start + weights.shape[1]] = weights
    return out


def resized_size(policy: str, in_hw: tuple[int, int], size: tuple[int, int], crop_pct: float,
                 resize_size: int | None) -> tuple[int, int]:
    """The size the image is resized to before the centre crop to ``size`` (see Preprocessing)."""
    if policy in ("stretch", "crop_then_resize"):
        return size
    scale = (math.floor(size[0] / crop_pct), math.floor(size[1] / crop_pct))
    if policy == "squash":
        return scale
    if policy == "shorter_side":
        return shorter_side_size(in_hw, resize_size if resize_size is not None else min(scale))
    if scale[0] == scale[1]:  # timm: Resize(int) for a square scale size, else ResizeKeepRatio
        return shorter_side_size(in_hw, scale[0])
    return keep_ratio_size(in_hw, scale)
