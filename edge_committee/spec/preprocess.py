"""Per-member preprocessing: raw uint8 images -> the member's input tensor.

The metadata travels with the member (timm ``PretrainedCfg`` style) and every call site derives
the transform from it; nothing is hard-coded elsewhere.

Raw images are uint8 ``(N, H, W, C)`` arrays with ``C`` = 1 (grayscale) or 3 (RGB), or lists of
``(H, W, C)`` arrays of different sizes. The steps, in order:

1. colour: convert to the member's ``color`` (``gray``: ITU-R 601 luma, as PIL; ``rgb``: the gray
   channel repeated), then reorder channels to ``channel_order`` (``RGB`` or ``BGR``);
2. resize to ``size`` = (height, width): ``stretch`` resizes directly; ``center_crop`` resizes
   the shorter side to ``size / crop_pct`` (keeping the aspect ratio) and crops the centre;
   ``bilinear`` is PIL's antialiased triangle filter (exact for up- and down-scaling), done as
   two matrix products so a whole batch is resized at once; ``nearest`` picks the nearest pixel;
3. normalize in float32: either ``(x / 255 - mean) / std`` (mean/std on the [0, 1] scale,
   per channel) or ``x * scale + offset`` on the raw 0..255 values;
4. layout ``NCHW`` or ``NHWC``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping, Sequence

import numpy as np

from edge_committee.errors import SpecError

RESIZE_MODES = ("stretch", "center_crop")
INTERPOLATIONS = ("bilinear", "nearest")
COLORS = ("gray", "rgb")
CHANNEL_ORDERS = ("RGB", "BGR")
LAYOUTS = ("NCHW", "NHWC")
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How one member turns raw images into its input tensor (see the module docstring)."""

    size: tuple[int, int]
    resize: str = "stretch"
    crop_pct: float = 1.0
    interpolation: str = "bilinear"
    color: str = "rgb"
    channel_order: str = "RGB"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    scale: float | None = None
    offset: float | None = None
    layout: str = "NCHW"

    def __post_init__(self) -> None:
        # lists from YAML/JSON become tuples, so the dataclass is hashable and plans can be cached
        for key in ("size", "mean", "std"):
            v = getattr(self, key)
            if isinstance(v, list):
                object.__setattr__(self, key, tuple(v))

    @property
    def channels(self) -> int:
        return 1 if self.color == "gray" else 3

    def input_shape(self, batch: int | str = "N") -> tuple:
        """The member's input shape for ``batch`` samples."""
        h, w = self.size
        if self.layout == "NCHW":
            return (batch, self.channels, h, w)
        return (batch, h, w, self.channels)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "preprocessing") -> "Preprocessing":
        """Validate a spec mapping; errors name the key, the value and what is allowed."""
        if not isinstance(d, Mapping):
            raise SpecError(f"{where}: expected a mapping, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SpecError(
                f"{where}: unknown key {unknown[0]!r}; allowed keys: {', '.join(sorted(known))}"
            )
        if "size" not in d:
            raise SpecError(f"{where}: missing key 'size' (input [height, width], e.g. [28, 28])")
        kw = dict(d)
        kw["size"] = _size(d["size"], f"{where}.size")
        for key, allowed in (
            ("resize", RESIZE_MODES),
            ("interpolation", INTERPOLATIONS),
            ("color", COLORS),
            ("channel_order", CHANNEL_ORDERS),
            ("layout", LAYOUTS),
        ):
            if key in kw and kw[key] not in allowed:
                raise SpecError(
                    f"{where}.{key}: {kw[key]!r} is not allowed; use one of {', '.join(allowed)}"
                )
        pp = cls(**kw)
        pp._validate(where)
        return pp

    def _validate(self, where: str) -> None:
        if not (0.0 < float(self.crop_pct) <= 1.0):
            raise SpecError(f"{where}.crop_pct: {self.crop_pct!r} must be in (0, 1]")
        has_ms = self.mean is not None or self.std is not None
        has_so = self.scale is not None or self.offset is not None
        if has_ms and has_so:
            raise SpecError(f"{where}: give either mean/std or scale/offset, not both")
        if has_ms:
            for key in ("mean", "std"):
                v = getattr(self, key)
                if v is None or len(v) not in (1, self.channels):
                    raise SpecError(
                        f"{where}.{key}: {v!r} must be a list of 1 or {self.channels} numbers "
                        f"(color is {self.color!r})"
                    )
            if any(float(s) == 0.0 for s in self.std):
                raise SpecError(f"{where}.std: {list(self.std)!r} contains 0")
        if has_so and (self.scale is None or self.offset is None):
            raise SpecError(f"{where}: scale and offset must be given together")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["size"] = list(self.size)
        for key in ("mean", "std"):
            if d[key] is not None:
                d[key] = [float(x) for x in d[key]]
        return {k: v for k, v in d.items() if v is not None}

    # ------------------------------------------------------------------ application
    def plan(self, source_hw: tuple[int, int], source_channels: int = 3) -> "PreprocessPlan":
        """Every number a runtime needs to reproduce this preprocessing for one source size.

        The NumPy path (:meth:`__call__`), the fused ONNX file, the GPU runtime and the Triton
        model all execute this plan, so they agree by construction; only the plan's builder
        knows about interpolations, crop policies and colour rules.
        """
        return _plan(self, (int(source_hw[0]), int(source_hw[1])), int(source_channels))

    def __call__(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Raw uint8 images -> float32 member input (see the module docstring)."""
        if isinstance(images, np.ndarray) and images.ndim == 4:
            return self._apply_batch(images)
        if isinstance(images, np.ndarray) and images.ndim == 3 and images.shape[-1] not in (1, 3):
            return self._apply_batch(images[..., None])  # (N, H, W) grayscale
        outs = [self._apply_batch(np.asarray(im)[None]) for im in images]
        if not outs:
            return np.zeros(self.input_shape(0), np.float32)
        return np.concatenate(outs, axis=0)

    def _apply_batch(self, x: np.ndarray) -> np.ndarray:
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4 or x.shape[-1] not in (1, 3):
            raise ValueError(
                f"raw images must be (N, H, W, 1|3) uint8; got shape {tuple(x.shape)}"
            )
        return self.plan(x.shape[1:3], x.shape[3]).apply(x)

    def _resize_steps(self, in_h: int, in_w: int) -> tuple["ResizeStep", ...]:
        out_h, out_w = self.size
        if self.resize == "center_crop":
            scaled = (int(out_h / self.crop_pct), int(out_w / self.crop_pct))
            ratio = max(scaled[0] / in_h, scaled[1] / in_w)
            mid_h, mid_w = max(out_h, round(in_h * ratio)), max(out_w, round(in_w * ratio))
        else:
            mid_h, mid_w = out_h, out_w
        top, left = (mid_h - out_h) // 2, (mid_w - out_w) // 2
        wy = resize_matrix(in_h, mid_h, self.interpolation)[top : top + out_h]
        wx = resize_matrix(in_w, mid_w, self.interpolation)[left : left + out_w]
        return (ResizeStep("h", wy), ResizeStep("w", wx))

    def _color_matrix(self, source_channels: int) -> np.ndarray:
        if self.color == "gray":
            return np.ones((1, 1), np.float32) if source_channels == 1 else _LUMA[:, None].copy()
        m = np.ones((1, 3), np.float32) if source_channels == 1 else np.eye(3, dtype=np.float32)
        return m[:, ::-1].copy() if self.channel_order == "BGR" else m

    def _affine(self) -> tuple[np.ndarray, np.ndarray]:
        c = self.channels
        if self.scale is not None:
            return np.full(c, self.scale, np.float32), np.full(c, self.offset, np.float32)
        if self.mean is not None:
            mean = np.broadcast_to(np.asarray(self.mean, np.float64), (c,))
            std = np.broadcast_to(np.asarray(self.std, np.float64), (c,))
            return (1.0 / (255.0 * std)).astype(np.float32), (-mean / std).astype(np.float32)
        return np.full(c, 1.0 / 255.0, np.float32), np.zeros(c, np.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class ResizeStep:
    """Resize one spatial axis: ``out[..., i, ...] = sum_j weights[i, j] * in[..., j, ...]``.

    Crops are folded in (the matrix has only the kept rows). ``round_clip``: afterwards round
    half up and clip to 0..255, as a pipeline working on uint8 images (PIL) does between passes.
    """

    axis: str  #: ``h`` (rows) or ``w`` (columns)
    weights: np.ndarray  #: (n_out, n_in) float32
    round_clip: bool = False


@dataclasses.dataclass(frozen=True, eq=False)
class PreprocessPlan:
    """One member's preprocessing for one source size, as plain arrays (see :meth:`Preprocessing.plan`).

    Applied to uint8 ``(N, H, W, C_in)`` images, in order: ``x @ color`` (channel mix: luma,
    gray to RGB, BGR swap; then round/clip if ``color_round``), each resize step, ``x * mul + add``
    per channel (all in float32), then ``layout``.
    """

    source_hw: tuple[int, int]
    source_channels: int
    color: np.ndarray  #: (C_in, C_out) float32
    color_round: bool
    steps: tuple[ResizeStep, ...]
    mul: np.ndarray  #: (C_out,) float32
    add: np.ndarray  #: (C_out,) float32
    layout: str

    @property
    def out_hw(self) -> tuple[int, int]:
        h, w = self.source_hw
        for s in self.steps:
            h, w = (s.weights.shape[0], w) if s.axis == "h" else (h, s.weights.shape[0])
        return h, w

    def apply(self, x: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C_in) -> float32 member input."""
        if tuple(x.shape[1:]) != (*self.source_hw, self.source_channels):
            raise ValueError(f"plan for {(*self.source_hw, self.source_channels)} images got {x.shape[1:]}")
        y = x.astype(np.float32)
        if not _is_identity(self.color):
            y = y @ self.color
            if self.color_round:
                y = np.clip(np.floor(y + np.float32(0.5)), 0, 255)
        for s in self.steps:
            if s.weights.shape[0] == s.weights.shape[1] and _is_identity(s.weights):
                continue
            sub = "oh,nhwc->nowc" if s.axis == "h" else "ow,nhwc->nhoc"
            y = np.einsum(sub, s.weights.astype(np.float32, copy=False), y)
            if s.round_clip:
                y = np.clip(np.floor(y + np.float32(0.5)), 0, 255)
        y = y * self.mul + self.add
        if self.layout == "NCHW":
            y = y.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(y, dtype=np.float32)


def _is_identity(m: np.ndarray) -> bool:
    return m.shape[0] == m.shape[1] and np.array_equal(m, np.eye(m.shape[0], dtype=m.dtype))


@functools.lru_cache(maxsize=256)
def _plan(pp: Preprocessing, source_hw: tuple[int, int], source_channels: int) -> PreprocessPlan:
    if source_channels not in (1, 3):
        raise ValueError(f"raw images must have 1 or 3 channels; got {source_channels}")
    mul, add = pp._affine()
    return PreprocessPlan(source_hw, source_channels, pp._color_matrix(source_channels), False,
                          pp._resize_steps(*source_hw), mul, add, pp.layout)


def resize_matrix(n_in: int, n_out: int, interpolation: str = "bilinear") -> np.ndarray:
    """(n_out, n_in) float32 weights resizing one axis, as PIL does (half-pixel centres).

    ``bilinear`` uses the triangle filter widened by the scale factor when downscaling
    (antialiasing), so each output pixel averages every input pixel it covers.
    """
    scale = n_in / n_out
    centers = (np.arange(n_out) + 0.5) * scale
    if interpolation == "nearest":
        w = np.zeros((n_out, n_in), np.float32)
        w[np.arange(n_out), np.clip(np.floor(centers).astype(int), 0, n_in - 1)] = 1.0
        return w
    support = max(scale, 1.0)
    pos = np.arange(n_in) + 0.5
    w = np.clip(1.0 - np.abs(pos[None, :] - centers[:, None]) / support, 0.0, None)
    w /= w.sum(axis=1, keepdims=True)
    return w.astype(np.float32)


def _size(value: Any, where: str) -> tuple[int, int]:
    if isinstance(value, int):
        value = [value, value]
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, int) and v > 0 for v in value)
    ):
        raise SpecError(f"{where}: {value!r} must be [height, width] of positive integers")
    return (int(value[0]), int(value[1]))
