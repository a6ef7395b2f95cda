"""A plan, executed on the CPU at native speed: the banded resampler of ``edge_committee._C``.

Two modes (a member's ``execution`` key, or ``predict``/``run --preprocess``):

- ``exact`` (default): the plan's result bit for bit. PIL plans run Pillow's own 8-bit fixed-point
  arithmetic (int32 weights ``k / 2**22``, a rounded uint8 after each pass, in Pillow's pass order),
  torch/tf plans the same taps in float32. Only the crop window is computed, so this is faster
  than Pillow, which resizes the whole image before the crop. Without the extension the NumPy
  reference (:meth:`PreprocessPlan.resized`, banded) runs instead: same result, about Pillow's speed.
- ``fast``: PIL plans with bilinear or bicubic resize of RGB images through
  ``torch.nn.functional.interpolate`` on uint8 tensors (``antialias=True``, PyTorch's SIMD kernels):
  within one grey level of Pillow on a fraction of the values (docs/preprocessing_benchmark.md),
  several times faster at camera sizes. Other plans (gray, whose uint8 kernel PyTorch does not
  vectorize), or no torch installed: the exact path.

Colour: a channel *selection* (gray to RGB, RGB to BGR) is applied after resizing, folded into the
normalization (each output channel reads one resized channel), so it costs nothing; PIL's luma
(``convert("L")``) runs before, as Pillow does. Normalization is a per-channel 256-entry float32
table for uint8 values (bit-identical to ``float32(v) * mul + add``).
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

from edge_committee.preprocess.plan import PreprocessPlan, ResizeStep
from edge_committee.preprocess.filters import PIL_PRECISION_BITS

MODES = ("exact", "fast")


def execute(plan: PreprocessPlan, x: np.ndarray, mode: str = "exact") -> np.ndarray:
    """uint8 (N, H, W, C_in) -> float32 member input, as ``mode`` computes it (see the module docstring)."""
    values, channel_of = resize(plan, x, mode)
    return normalize(plan, values, channel_of)


def resize(plan: PreprocessPlan, x: np.ndarray, mode: str = "exact") -> tuple[np.ndarray, tuple[int, ...]]:
    """The plan's colour and resize steps: (values, channel_of).

    ``values``: (N, H', W', C_r) uint8 for PIL plans, float32 otherwise; output channel ``c`` of the
    member reads ``values[..., channel_of[c]]``.
    """
    if mode not in MODES:
        raise ValueError(f"preprocessing mode {mode!r} is not known; use {' or '.join(MODES)}")
    if tuple(x.shape[1:]) != (*plan.source_hw, plan.source_channels):
        raise ValueError(f"plan for {(*plan.source_hw, plan.source_channels)} images got {x.shape[1:]}")
    x = np.ascontiguousarray(x, np.uint8)
    channel_of = channels(plan)
    h, w = plan.step("h"), plan.step("w")
    if _native_luma(plan, x):  # Pillow's L and both passes in one native call (gray is exact in fast mode too)
        (rs, rc), (cs, cc) = _band(h, x.shape[1], True), _band(w, x.shape[2], True)
        return _ext().resample_u8(x, rs, rc, cs, cc, plan.vertical_first, PIL_PRECISION_BITS, True), channel_of
    if plan.color_selection is None:  # a mix (luma): before the resize, as Pillow and torchvision do
        x = _mix(plan, x)
    if plan.exact:
        if mode == "fast":
            fast = _torch_uint8(plan, x)
            if fast is not None:
                return fast, channel_of
        return _fixed_u8(plan, x, h, w), channel_of
    return _float(plan, x, h, w), channel_of


def normalize(plan: PreprocessPlan, values: np.ndarray, channel_of: tuple[int, ...]) -> np.ndarray:
    """Resized values -> float32 member input: per-channel ``v * mul + add`` (a table for uint8), then the layout."""
    n, oh, ow = values.shape[:3]
    c_out = len(channel_of)
    if plan.layout == "NCHW":
        out = np.empty((n, c_out, oh, ow), np.float32)
        dst = [out[:, c] for c in range(c_out)]
    else:
        out = np.empty((n, oh, ow, c_out), np.float32)
        dst = [out[..., c] for c in range(c_out)]
    for c, src in enumerate(channel_of):
        if values.dtype == np.uint8:
            np.take(plan.lut[c], values[..., src], out=dst[c])
        else:
            np.multiply(values[..., src], plan.mul[c], out=dst[c])
            dst[c] += plan.add[c]
    return out


# ------------------------------------------------------------------------------------- colour
def channels(plan: PreprocessPlan) -> tuple[int, ...]:
    """The resized channel each output channel reads (a selection's columns; a mix's outputs in order)."""
    sel = plan.color_selection
    return sel if sel is not None else tuple(range(plan.out_channels))


def _mix(plan: PreprocessPlan, x: np.ndarray) -> np.ndarray:
    """The colour mix (luma): uint8 with PIL's rounding, else float32 as torchvision computes it."""
    if plan.color_round:
        ext = _ext()
        if ext is not None and plan.source_channels == 3 and _is_pil_luma(plan.color):
            return ext.rgb_to_luma_u8(x)
        y = x.astype(np.float64) @ plan.color
        return np.clip(np.floor(y + 0.5), 0, 255).astype(np.uint8)
    return x.astype(np.float32) @ plan.color.astype(np.float32)


def _native_luma(plan: PreprocessPlan, x: np.ndarray) -> bool:
    return (plan.color_round and x.shape[3] == 3 and _is_pil_luma(plan.color) and _ext() is not None
            and all(s.fixed_is_exact for s in plan.steps))


def _is_pil_luma(color: np.ndarray) -> bool:
    from edge_committee.preprocess.filters import PIL_LUMA

    return color.shape == (3, 1) and np.array_equal(color[:, 0], PIL_LUMA)


# ------------------------------------------------------------------------------------- resize
@functools.lru_cache(maxsize=1)
def _ext():
    """The compiled extension (``edge_committee._C``) when it has the resampler, else None.

    None also where the gate package is absent: a Triton model's copied SDK holds the pure-Python
    modules only, and runs the NumPy reference.
    """
    try:
        from edge_committee.gate import _ext as gate_ext
    except ImportError:
        return None
    mod = gate_ext.load()
    return mod if mod is not None and hasattr(mod, "resample_u8") else None


def native() -> bool:
    """True when the compiled resampler runs (else the NumPy reference does)."""
    return _ext() is not None


def _band(step: ResizeStep | None, n: int, fixed: bool) -> tuple[np.ndarray, np.ndarray]:
    if step is None:  # the axis is not resized: one tap of weight 1
        one = (1 << PIL_PRECISION_BITS) if fixed else 1.0
        return np.arange(n, dtype=np.int32), np.full((n, 1), one, np.int32 if fixed else np.float32)
    return step.start, (step.fixed if fixed else np.ascontiguousarray(step.taps, np.float32))


def _fixed_u8(plan: PreprocessPlan, x: np.ndarray, h: ResizeStep | None, w: ResizeStep | None) -> np.ndarray:
    ext = _ext()
    if ext is None or not all(s.fixed_is_exact for s in plan.steps):  # the reference: float64, exact
        return plan.resized(x, color=False).astype(np.uint8)
    (rs, rc), (cs, cc) = _band(h, x.shape[1], True), _band(w, x.shape[2], True)
    return ext.resample_u8(x, rs, rc, cs, cc, plan.vertical_first, PIL_PRECISION_BITS)


def _float(plan: PreprocessPlan, x: np.ndarray, h: ResizeStep | None, w: ResizeStep | None) -> np.ndarray:
    ext = _ext()
    if ext is None:
        return plan.resized(x, color=False).astype(np.float32)
    (rs, rc), (cs, cc) = _band(h, x.shape[1], False), _band(w, x.shape[2], False)
    return ext.resample_f32(x, rs, rc, cs, cc, _vertical_first_is_cheaper(x.shape[1:3], h, w))


def _vertical_first_is_cheaper(in_hw, h: ResizeStep | None, w: ResizeStep | None) -> bool:
    """Float passes commute: run first the order that computes fewer taps."""
    if h is None or w is None:
        return False
    th, tw = h.taps.shape[1], w.taps.shape[1]
    rows = int(h.start.max() - h.start.min()) + th
    cols = int(w.start.max() - w.start.min()) + tw
    h_first = rows * w.n_out * tw + h.n_out * w.n_out * th
    v_first = h.n_out * cols * th + h.n_out * w.n_out * tw
    return v_first < h_first


def _torch_uint8(plan: PreprocessPlan, x: np.ndarray) -> np.ndarray | None:
    """Fast mode: PyTorch's uint8 antialiased resize to the geometry's size, then the crop (None: not possible)."""
    g = plan.geometry
    if g is None or g.interpolation not in ("bilinear", "bicubic") or x.shape[3] != 3:
        return None  # PyTorch's fast uint8 kernel is for 3 (and 4) channels; gray is faster exact
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    with warnings.catch_warnings():  # a read-only frame (np.load(mmap_mode=...)) is only read here
        warnings.simplefilter("ignore", UserWarning)
        t = torch.from_numpy(x).permute(0, 3, 1, 2)  # channels-last NCHW view: PyTorch's fast uint8 path
    with torch.inference_mode():
        y = F.interpolate(t, size=g.mid_hw, mode=g.interpolation, antialias=True, align_corners=False)
    y = y.permute(0, 2, 3, 1).numpy()
    return _crop(y, g.offset, plan.out_hw)


def _crop(y: np.ndarray, offset: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """The (out_h, out_w) window at ``offset`` of (N, H, W, C) ``y``; outside ``y`` is zero."""
    (oy, ox), (oh, ow) = offset, out_hw
    if oy >= 0 and ox >= 0 and oy + oh <= y.shape[1] and ox + ow <= y.shape[2]:
        return np.ascontiguousarray(y[:, oy:oy + oh, ox:ox + ow])
    out = np.zeros((y.shape[0], oh, ow, y.shape[3]), y.dtype)
    sy, sx = max(oy, 0), max(ox, 0)
    ey, ex = min(oy + oh, y.shape[1]), min(ox + ow, y.shape[2])
    if ey > sy and ex > sx:
        out[:, sy - oy:ey - oy, sx - ox:ex - ox] = y[:, sy:ey, sx:ex]
    return out
