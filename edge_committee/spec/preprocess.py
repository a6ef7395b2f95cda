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
   - ``crop_then_resize``: TensorFlow's ``tf.image.central_crop(image, crop_pct)`` first, then
     resize the crop to ``size`` (the ``tf`` preset);

   with ``interpolation`` ``bilinear``, ``bicubic``, ``nearest`` or ``nearest-exact``, computed
   as ``resize_impl`` does it: ``pil`` (default; ``Image.resize`` on uint8 images: always
   antialiased, 22-bit fixed-point weights, rounded to uint8 after each pass; ``nearest`` and
   ``nearest-exact`` are the same) or ``torch`` (``F.interpolate`` on float tensors,
   ``align_corners=False``; ``antialias`` false by default as in ``F.interpolate``, true as in
   torchvision's v2 transforms; ``nearest`` is PyTorch's legacy ``floor(i * scale)``) or ``tf``
   (``tf.image.resize``: half-pixel centres, no antialias; bilinear or nearest);
3. normalize in float32: either ``(x / 255 - mean) / std`` (mean/std on the [0, 1] scale,
   per channel) or ``x * scale + offset`` on the raw 0..255 values;
4. layout ``NCHW`` or ``NHWC``.

A timm ``pretrained_cfg`` dict can be given as ``timm: {...}`` (see :meth:`Preprocessing.from_timm`),
TensorFlow's eval preprocessing as ``tf: {central_fraction: 0.875, method: bilinear}``.

``execution``: how the CPU runs the plan, ``exact`` (default, bit for bit) or ``fast`` (PyTorch's
uint8 resize, within one grey level; see :mod:`edge_committee.preprocess.cpu`). The plan itself,
its executors and its reference live in :mod:`edge_committee.preprocess`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Mapping, Sequence

import numpy as np

from edge_committee.errors import EdgeCommitteeError, SpecError
from edge_committee.preprocess.filters import IMPL_INTERPOLATIONS, INTERPOLATIONS, RESIZE_IMPLS, RESIZE_POLICIES, resize_matrix
from edge_committee.preprocess.plan import PreprocessPlan, ResizeStep, build_plan

RESIZE_MODES = RESIZE_POLICIES
COLORS = ("gray", "rgb")
CHANNEL_ORDERS = ("RGB", "BGR")
LAYOUTS = ("NCHW", "NHWC")
MAX_SIZE = 8192  #: largest height, width or resize_size accepted (pixels)
#: how the CPU executes a plan: ``exact`` (bit for bit the framework's result) or ``fast`` (see preprocess/cpu.py)
EXECUTIONS = ("exact", "fast")
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
    execution: str = "exact"

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
        if "tf" in d:
            d = _merge_tf(d, where)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known, key=str)
        if unknown:
            raise SpecError(
                f"{where}: unknown key {_short(unknown[0])}; allowed keys: {', '.join(sorted(known))}, timm, tf"
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
            ("execution", EXECUTIONS),
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
        if self.interpolation not in IMPL_INTERPOLATIONS[self.resize_impl]:
            raise SpecError(f"{where}.interpolation: {self.interpolation!r} is not available with resize_impl: "
                            f"{self.resize_impl}; use one of {', '.join(IMPL_INTERPOLATIONS[self.resize_impl])}")
        if self.resize_impl == "tf" and self.antialias:
            raise SpecError(f"{where}.antialias: true is not supported with resize_impl: tf (tf.image.resize's "
                            "antialias path is a different kernel); drop it or use resize_impl: torch")
        if self.execution not in EXECUTIONS:
            raise SpecError(f"{where}.execution: {_short(self.execution)} is not allowed; use one of "
                            f"{', '.join(EXECUTIONS)}")
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
        return build_plan(self, (int(source_hw[0]), int(source_hw[1])), int(source_channels))

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
        from edge_committee.preprocess.cpu import execute

        return execute(self.plan(x.shape[1:3], x.shape[3]), x, self.execution)

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


def _merge_tf(d: dict, where: str) -> dict:
    """Expand ``tf: {central_fraction, method}`` (TF's eval preprocessing) into spec keys.

    ``tf.image.central_crop(image, central_fraction)`` then ``tf.image.resize(size, method)``
    (half-pixel centres, no antialias): ``resize: crop_then_resize``, ``resize_impl: tf``.
    """
    cfg = d.pop("tf")
    w = f"{where}.tf"
    if not isinstance(cfg, Mapping):
        raise SpecError(f"{w}: expected a mapping such as {{central_fraction: 0.875, method: bilinear}}, "
                        f"got {type(cfg).__name__}")
    unknown = sorted(set(cfg) - {"central_fraction", "method"}, key=str)
    if unknown:
        raise SpecError(f"{w}: unknown key {_short(unknown[0])}; the keys are central_fraction, method")
    out = {"resize": "crop_then_resize", "crop_pct": cfg.get("central_fraction", 1.0),
           "interpolation": cfg.get("method", "bilinear"), "resize_impl": "tf"}
    for key, value in d.items():
        if key in out and _canon(out[key]) != _canon(value):
            raise SpecError(f"{where}.{key}: {_short(value)} contradicts the tf preset's {_short(out[key])}; "
                            "drop one of them")
    out.update(d)
    return out


def _canon(v: Any) -> Any:
    return [float(x) if _is_number(x) else x for x in v] if isinstance(v, (list, tuple)) else v
