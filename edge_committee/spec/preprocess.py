"""Per-member preprocessing: raw uint8 images -> the member's input tensor.

The metadata travels with the member (timm ``PretrainedCfg`` style) and every call site derives
the transform from it; nothing is hard-coded elsewhere.

Raw images are uint8 ``(N, H, W, C)`` arrays with ``C`` = 1 (grayscale) or 3 (RGB), or lists of
``(H, W, C)`` arrays of different sizes. The steps, in order, each as the framework the member
was trained with computes it (``resize_impl``):

1. colour: convert to the member's ``color`` (``gray``: PIL's ``convert("L")``, rounded to
   uint8, or torchvision's unrounded ``rgb_to_grayscale``; ``rgb``: the gray channel
   repeated), then reorder channels to ``channel_order`` (``RGB`` or ``BGR``);
2. resize (``resize`` policy) to ``size`` = (height, width):

   - ``stretch`` (default): resize straight to ``size``;
   - ``center_crop``: timm's eval transform: scale size ``floor(size / crop_pct)``; a square
     scale size resizes the shorter side to it (torchvision ``Resize(int)``), otherwise both
     sides cover it keeping the ratio (timm ``ResizeKeepRatio``); then ``CenterCrop(size)``;
   - ``shorter_side``: torchvision's ``Resize(resize_size)`` then ``CenterCrop(size)``
     (``resize_size`` defaults to ``floor(min(size) / crop_pct)``; a crop larger than the
     image pads with zeros, as torchvision does);
   - ``squash``: timm's ``crop_mode: squash``: stretch to ``floor(size / crop_pct)``, then
     centre crop;

   with ``interpolation`` ``bilinear``, ``bicubic``, ``nearest`` or ``nearest-exact``, computed
   as ``resize_impl`` does it: ``pil`` (default; ``Image.resize`` on uint8 images: always
   antialiased, 22-bit fixed-point weights, rounded to uint8 after each pass; ``nearest`` and
   ``nearest-exact`` are the same) or ``torch`` (``F.interpolate`` on float tensors,
   ``align_corners=False``; ``antialias`` false by default as in ``F.interpolate``, true as in
   torchvision's v2 transforms; ``nearest`` is PyTorch's legacy ``floor(i * scale)``);
3. normalize in float32: either ``(x / 255 - mean) / std`` (mean/std on the [0, 1] scale,
   per channel) or ``x * scale + offset`` on the raw 0..255 values;
4. layout ``NCHW`` or ``NHWC``.

A timm ``pretrained_cfg`` dict can be given as ``timm: {...}`` (see :meth:`Preprocessing.from_timm`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Mapping, Sequence

import numpy as np

from edge_committee.errors import EdgeCommitteeError, SpecError
from edge_committee.spec import resize as _rs
from edge_committee.spec.resize import INTERPOLATIONS, RESIZE_IMPLS, resize_matrix

RESIZE_MODES = _rs.RESIZE_POLICIES
COLORS = ("gray", "rgb")
CHANNEL_ORDERS = ("RGB", "BGR")
LAYOUTS = ("NCHW", "NHWC")
MAX_SIZE = 8192  #: largest height, width or resize_size accepted (pixels)
#: float64 working set of :meth:`PreprocessPlan.apply` per chunk of images (bytes)
_CHUNK_BYTES = 64 << 20
#: timm pretrained_cfg keys that do not change the preprocessing (ignored by from_timm)
_TIMM_IGNORED = frozenset({
    "url", "file", "state_dict", "hf_hub_id", "hf_hub_filename", "source", "architecture", "tag",
    "custom_load", "test_input_size", "min_input_size", "fixed_input_size", "test_crop_pct",
    "num_classes", "label_offset", "label_names", "label_descriptions", "pool_size",
    "test_pool_size", "first_conv", "classifier", "license", "description", "origin_url",
    "paper_name", "paper_ids", "notes", "hf_hub_revision",
})


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
    resize_impl: str = "pil"
    antialias: bool | None = None
    resize_size: int | None = None

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
        d = dict(d)
        if "timm" in d:
            d = _merge_timm(d, where)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known, key=str)
        if unknown:
            raise SpecError(
                f"{where}: unknown key {_short(unknown[0])}; allowed keys: {', '.join(sorted(known))}, timm"
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
            ("resize_impl", RESIZE_IMPLS),
        ):
            if key in kw and (not isinstance(kw[key], str) or kw[key] not in allowed):
                raise SpecError(
                    f"{where}.{key}: {_short(kw[key])} is not allowed; use one of {', '.join(allowed)}"
                )
        _check_numbers(kw, where)
        pp = cls(**kw)
        pp._validate(where)
        return pp

    @classmethod
    def from_timm(cls, cfg: Mapping[str, Any], where: str = "timm", **overrides: Any) -> "Preprocessing":
        """The eval preprocessing of a timm ``pretrained_cfg`` (``model.pretrained_cfg``).

        Uses ``input_size`` (C, H, W), ``interpolation``, ``mean``, ``std``, ``crop_pct``
        (default 0.875) and ``crop_mode`` (``center`` default, ``squash``); timm resizes PIL
        images, so ``resize_impl`` is ``pil``. ``overrides`` are further spec keys (``layout``...).
        """
        return cls.from_dict({"timm": dict(cfg), **overrides}, where)

    def _validate(self, where: str) -> None:
        if self.resize_size is not None and self.resize != "shorter_side":
            raise SpecError(f"{where}.resize_size: only used with resize: shorter_side (resize is {self.resize!r})")
        if self.antialias is not None and self.interpolation.startswith("nearest") and self.antialias:
            raise SpecError(f"{where}.antialias: true needs interpolation bilinear or bicubic, not {self.interpolation!r}")
        if self.resize_impl == "pil" and self.antialias is False:
            raise SpecError(
                f"{where}.antialias: false is not possible with resize_impl: pil (PIL always antialiases); "
                "use resize_impl: torch for F.interpolate without antialiasing"
            )
        has_ms = self.mean is not None or self.std is not None
        has_so = self.scale is not None or self.offset is not None
        if has_ms and has_so:
            raise SpecError(f"{where}: give either mean/std or scale/offset, not both")
        if has_ms:
            for key in ("mean", "std"):
                v = getattr(self, key)
                if v is None or len(v) not in (1, self.channels):
                    raise SpecError(
                        f"{where}.{key}: {_short(v)} must be a list of 1 or {self.channels} numbers "
                        f"(color is {self.color!r})"
                    )
            if any(float(s) == 0.0 for s in self.std):
                raise SpecError(f"{where}.std: {list(self.std)!r} contains 0")
        if has_so and (self.scale is None or self.offset is None):
            raise SpecError(f"{where}: scale and offset must be given together")
        mul, add = self._affine()
        if not (np.isfinite(mul).all() and np.isfinite(add).all()):
            raise SpecError(
                f"{where}: the normalization overflows float32 (std too close to 0 or scale/offset too "
                "large); check mean/std (on the [0, 1] scale) or scale/offset"
            )

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
            raise EdgeCommitteeError(
                f"raw images must be (N, H, W, 1|3) uint8; got shape {tuple(x.shape)} "
                "(convert RGBA/CMYK/2-channel images to RGB or gray first)"
            )
        if x.shape[1] == 0 or x.shape[2] == 0:
            raise EdgeCommitteeError(f"an image has zero height or width (shape {tuple(x.shape[1:])}); remove it")
        return self.plan(x.shape[1:3], x.shape[3]).apply(x)

    def _resize_steps(self, in_h: int, in_w: int) -> tuple["ResizeStep", ...]:
        mid_h, mid_w = _rs.resized_size(self.resize, (in_h, in_w), self.size, float(self.crop_pct),
                                        self.resize_size)
        out_h, out_w = self.size
        antialias = self.antialias if self.resize_impl == "torch" else True
        wy = resize_matrix(in_h, mid_h, self.interpolation, self.resize_impl, antialias)
        wx = resize_matrix(in_w, mid_w, self.interpolation, self.resize_impl, antialias)
        wy = _rs.crop_rows(wy, _rs.center_offset(mid_h, out_h), out_h)
        wx = _rs.crop_rows(wx, _rs.center_offset(mid_w, out_w), out_w)
        if self.resize_impl == "torch":  # float tensors: no rounding, the order does not matter
            return (ResizeStep("w", wx, False), ResizeStep("h", wy, False))
        # PIL works on uint8 images: two passes, each rounded and clipped, in Pillow's order
        first, _ = _rs.pil_pass_order((in_h, in_w), (mid_h, mid_w), self.interpolation)
        steps = {"w": ResizeStep("w", wx, True), "h": ResizeStep("h", wy, True)}
        return (steps[first], steps["h" if first == "w" else "w"])

    def _color_matrix(self, source_channels: int) -> tuple[np.ndarray, bool]:
        if self.color == "gray":
            if source_channels == 1:
                return np.ones((1, 1), np.float64), False
            luma = _rs.PIL_LUMA if self.resize_impl == "pil" else _rs.TORCH_LUMA
            return luma[:, None].copy(), self.resize_impl == "pil"
        m = np.ones((1, 3), np.float64) if source_channels == 1 else np.eye(3, dtype=np.float64)
        return (m[:, ::-1].copy() if self.channel_order == "BGR" else m), False

    def _affine(self) -> tuple[np.ndarray, np.ndarray]:
        c = self.channels
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            if self.scale is not None:
                return (np.full(c, self.scale, np.float64).astype(np.float32),
                        np.full(c, self.offset, np.float64).astype(np.float32))
            if self.mean is not None:
                mean = np.broadcast_to(np.asarray(self.mean, np.float64), (c,))
                std = np.broadcast_to(np.asarray(self.std, np.float64), (c,))
                return (1.0 / (255.0 * std)).astype(np.float32), (-mean / std).astype(np.float32)
        return np.full(c, 1.0 / 255.0, np.float32), np.zeros(c, np.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class ResizeStep:
    """Resize one spatial axis: ``out[..., i, ...] = sum_j weights[i, j] * in[..., j, ...]``.

    Crops are folded in (the matrix has only the kept rows; a row of zeros is zero padding).
    ``round_clip``: afterwards round half up and clip to 0..255, as a pipeline working on uint8
    images (PIL) does between passes.
    """

    axis: str  #: ``h`` (rows) or ``w`` (columns)
    weights: np.ndarray  #: (n_out, n_in) float64 (PIL's are exact multiples of 2**-22)
    round_clip: bool = False


@dataclasses.dataclass(frozen=True, eq=False)
class PreprocessPlan:
    """One member's preprocessing for one source size, as plain arrays (see :meth:`Preprocessing.plan`).

    Applied to uint8 ``(N, H, W, C_in)`` images, in order: ``x @ color`` (channel mix: luma,
    gray to RGB, BGR swap; then round half up/clip to 0..255 if ``color_round``), each resize
    step, ``x * mul + add`` per channel (float32), then ``layout``.

    Dtypes: ``color`` and the steps' ``weights`` are float64, ``mul``/``add`` float32. A plan
    with ``color_round`` or a ``round_clip`` step (the PIL path) reproduces PIL bit for bit
    only when the mixing and resizing run in float64 (the weights have 22 fractional bits);
    float32 arithmetic can move a rounding by one grey level. Plans without rounding (the
    torch path) are meant for float32 arithmetic, as PyTorch does.
    """

    source_hw: tuple[int, int]
    source_channels: int
    color: np.ndarray  #: (C_in, C_out) float64
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

    @property
    def exact(self) -> bool:
        """Whether the plan rounds between steps (and so is applied in float64)."""
        return self.color_round or any(s.round_clip for s in self.steps)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C_in) -> float32 member input (in chunks that bound the memory)."""
        if tuple(x.shape[1:]) != (*self.source_hw, self.source_channels):
            raise ValueError(f"plan for {(*self.source_hw, self.source_channels)} images got {x.shape[1:]}")
        per_image = 8 * max(1, math.prod(x.shape[1:]), math.prod((*self.out_hw, self.color.shape[1])))
        chunk = max(1, _CHUNK_BYTES // per_image)
        if x.shape[0] <= chunk:
            return self._apply(x)
        return np.concatenate([self._apply(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)])

    def _apply(self, x: np.ndarray) -> np.ndarray:
        dt = np.float64 if self.exact else np.float32
        y = x.astype(dt)
        if not _is_identity(self.color):
            y = y @ self.color.astype(dt, copy=False)
            if self.color_round:
                y = np.clip(np.floor(y + 0.5), 0, 255)
        for s in self.steps:
            if s.weights.shape[0] == s.weights.shape[1] and _is_identity(s.weights):
                continue
            y = _resize_axis(y, s.weights.astype(dt, copy=False), 1 if s.axis == "h" else 2)
            if s.round_clip:
                y = np.clip(np.floor(y + 0.5), 0, 255)
        y = y.astype(np.float32) * self.mul + self.add
        if self.layout == "NCHW":
            y = y.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(y, dtype=np.float32)


def _resize_axis(y: np.ndarray, w: np.ndarray, axis: int) -> np.ndarray:
    """``w`` (n_out, n_in) applied along ``axis`` of y, as one matrix product (BLAS)."""
    moved = np.moveaxis(y, axis, -1)
    out = moved.reshape(-1, moved.shape[-1]) @ w.T
    return np.moveaxis(out.reshape(*moved.shape[:-1], w.shape[0]), -1, axis)


def _is_identity(m: np.ndarray) -> bool:
    return m.shape[0] == m.shape[1] and np.array_equal(m, np.eye(m.shape[0], dtype=m.dtype))


@functools.lru_cache(maxsize=256)
def _plan(pp: Preprocessing, source_hw: tuple[int, int], source_channels: int) -> PreprocessPlan:
    if source_channels not in (1, 3):
        raise EdgeCommitteeError(f"raw images must have 1 or 3 channels; got {source_channels}")
    mul, add = pp._affine()
    color, color_round = pp._color_matrix(source_channels)
    return PreprocessPlan(source_hw, source_channels, color, color_round,
                          pp._resize_steps(*source_hw), mul, add, pp.layout)


# ------------------------------------------------------------------------------ validation
def _short(value: Any, limit: int = 60) -> str:
    """repr() of a user's value, cut to ``limit`` characters (values may be huge)."""
    import reprlib

    r = reprlib.Repr()
    r.maxstring, r.maxother, r.maxlist, r.maxtuple, r.maxdict = limit, limit, 6, 6, 6
    text = r.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_numbers(kw: dict, where: str) -> None:
    """Types and ranges of the numeric keys (finite floats; bools are not numbers)."""
    if "crop_pct" in kw and not (_is_number(kw["crop_pct"]) and 0.0 < kw["crop_pct"] <= 1.0):
        raise SpecError(f"{where}.crop_pct: {_short(kw['crop_pct'])} must be a number in (0, 1]")
    for key in ("scale", "offset"):
        if kw.get(key) is not None and not _is_number(kw[key]):
            raise SpecError(f"{where}.{key}: {_short(kw[key])} must be a finite number")
    for key in ("mean", "std"):
        v = kw.get(key)
        if v is None:
            continue
        if not isinstance(v, (list, tuple)) or not v or not all(_is_number(x) for x in v):
            raise SpecError(f"{where}.{key}: {_short(v)} must be a list of finite numbers")
        kw[key] = tuple(float(x) for x in v)
    if kw.get("antialias") is not None and not isinstance(kw["antialias"], bool):
        raise SpecError(f"{where}.antialias: {_short(kw['antialias'])} must be true or false")
    rs = kw.get("resize_size")
    if rs is not None and not (isinstance(rs, int) and not isinstance(rs, bool) and 0 < rs <= MAX_SIZE):
        raise SpecError(f"{where}.resize_size: {_short(rs)} must be an integer in 1..{MAX_SIZE}")


def _size(value: Any, where: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_SIZE for v in value)
    ):
        raise SpecError(f"{where}: {_short(value)} must be [height, width] of integers in 1..{MAX_SIZE}")
    return (int(value[0]), int(value[1]))


def _merge_timm(d: dict, where: str) -> dict:
    """Expand ``timm: {pretrained_cfg}`` into spec keys; an explicit key may not contradict it."""
    cfg = d.pop("timm")
    w = f"{where}.timm"
    if not isinstance(cfg, Mapping):
        raise SpecError(f"{w}: expected a mapping (a timm pretrained_cfg), got {type(cfg).__name__}")
    unknown = sorted(set(cfg) - _TIMM_IGNORED - {"input_size", "interpolation", "mean", "std", "crop_pct",
                                                  "crop_mode"}, key=str)
    if unknown:
        raise SpecError(f"{w}: unknown key {_short(unknown[0])}; the preprocessing keys are input_size, "
                        "interpolation, mean, std, crop_pct, crop_mode")
    size = cfg.get("input_size", (3, 224, 224))
    if not isinstance(size, (list, tuple)) or len(size) != 3 or size[0] not in (1, 3):
        raise SpecError(f"{w}.input_size: {_short(size)} must be [channels (1 or 3), height, width]")
    mode = cfg.get("crop_mode", "center") or "center"
    if mode not in ("center", "squash"):
        raise SpecError(f"{w}.crop_mode: {_short(mode)} is not supported; use center or squash")
    out = {
        "size": list(size[1:]),
        "color": "gray" if size[0] == 1 else "rgb",
        "resize": "center_crop" if mode == "center" else "squash",
        "crop_pct": 0.875 if cfg.get("crop_pct") is None else cfg["crop_pct"],
        "interpolation": cfg.get("interpolation", "bilinear") or "bilinear",
        "resize_impl": "pil",
        "mean": cfg.get("mean", (0.485, 0.456, 0.406)),
        "std": cfg.get("std", (0.229, 0.224, 0.225)),
    }
    if isinstance(out["mean"], (list, tuple)) and isinstance(out["std"], (list, tuple)):
        out["mean"], out["std"] = list(out["mean"]), list(out["std"])
    for key, value in d.items():
        if key in out and _canon(out[key]) != _canon(value):
            raise SpecError(f"{where}.{key}: {_short(value)} contradicts timm's {_short(out[key])}; drop one of them")
    out.update(d)
    return out


def _canon(v: Any) -> Any:
    return [float(x) if _is_number(x) else x for x in v] if isinstance(v, (list, tuple)) else v
