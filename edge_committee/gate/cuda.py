"""The gate on a CUDA device: one kernel launch per stage on caller-owned device buffers.

Buffers are any objects with ``__cuda_array_interface__`` (CuPy arrays, PyTorch CUDA tensors, Numba
device arrays), C-contiguous. Nothing here imports torch or cupy.
"""

from __future__ import annotations

from typing import Any

from edge_committee.cascade.reference import CONFIDENCE_CODES, check_confidence_name
from edge_committee.errors import DependencyError
from edge_committee.gate import _ext

_TYPESTR = {"float32": ("<f4",), "float16": ("<f2",), "int32": ("<i4",)}


def _device_buffer(obj: Any, name: str, dtypes: tuple[str, ...], ndim: int) -> tuple[int, tuple[int, ...], str]:
    """(pointer, shape, dtype name) of a C-contiguous device array; ValueError/TypeError otherwise."""
    try:
        iface = obj.__cuda_array_interface__
    except AttributeError:
        raise TypeError(
            f"gate_step_cuda: '{name}' must be a CUDA array (CuPy, PyTorch CUDA tensor, ...), got {type(obj).__name__}"
        ) from None
    shape = tuple(int(s) for s in iface["shape"])
    typestr = iface["typestr"]
    dtype = next((d for d in dtypes if typestr in _TYPESTR[d]), None)
    if dtype is None:
        raise TypeError(f"gate_step_cuda: '{name}' must be {' or '.join(dtypes)}, got typestr {typestr!r}")
    if len(shape) != ndim:
        raise ValueError(f"gate_step_cuda: '{name}' must be {ndim}-D, got shape {shape}")
    strides = iface.get("strides")
    if strides is not None:
        step = int(typestr[2:])
        for extent, stride in zip(reversed(shape), reversed(tuple(strides))):
            if extent > 1 and stride != step:
                raise ValueError(f"gate_step_cuda: '{name}' must be C-contiguous, got strides {strides}")
            step *= max(extent, 1)
    return int(iface["data"][0]), shape, dtype


def _stream_handle(stream: Any) -> int:
    """A cudaStream_t as int from None, an int, a torch/cupy stream or a ``__cuda_stream__`` object."""
    if stream is None:
        return 0
    if isinstance(stream, int):
        return stream
    if hasattr(stream, "__cuda_stream__"):
        return int(stream.__cuda_stream__()[1])
    for attr in ("cuda_stream", "ptr", "handle"):  # torch.cuda.Stream, cupy Stream, cuda.core Stream
        if hasattr(stream, attr):
            return int(getattr(stream, attr))
    raise TypeError(f"gate_step_cuda: cannot get a CUDA stream handle from {type(stream).__name__}")


def _cuda_extension():
    ext = _ext.load()
    if ext is None or not getattr(ext, "has_cuda", False):
        reason = _ext.error() or "it was built without CUDA (EC_BUILD_CUDA=0 or no nvcc)"
        raise DependencyError(f"the CUDA gate needs edge_committee._C built with CUDA ({reason}); {_ext.BUILD_HINT}")
    return ext


def gate_step_cuda(
    prob_sum: Any,
    label: Any,
    conf: Any,
    exit_stage: Any,
    flag: Any,
    active: Any,
    logits: Any,
    survivors: Any,
    survivor_count: Any,
    stage: int,
    num_stages: int,
    threshold: float,
    kind: str = "max_prob",
    stream: Any = None,
    fix: dict | None = None,
) -> None:
    """Enqueue one cascade stage on ``stream`` (default: the legacy default stream); returns at once.

    State (original sample index): ``prob_sum`` (N, C) float32, ``label`` / ``exit_stage`` / ``flag``
    (N,) int32, ``conf`` (N,) float32, all updated in place. ``active`` (M,) int32 original indices,
    ``logits`` (M, C) float32 or float16 in active order. Out: ``survivors`` (>= M,) int32 gets the
    survivors' original indices in stable order, ``survivor_count`` (1,) int32 their number (read it
    back, 4 bytes, or keep it on the device). Same semantics as ``reference.gate_step``.

    ``fix`` (the device runtime; needs :func:`fuses_fix`): ``{"rows", "capacity", "gather_index",
    "real_count", "slot", "buckets"}``: the survivor fix-up and the next stage's conditional in the same
    launch (``GateFix`` in ``plugins/cascadeGatePlugin/cascadeGateCommon.h``).
    """
    check_confidence_name(kind)
    ext = _cuda_extension()
    ps_ptr, (n, c), _ = _device_buffer(prob_sum, "prob_sum", ("float32",), 2)
    ptrs = {}
    for name, obj, dtype in (
        ("label", label, "int32"),
        ("conf", conf, "float32"),
        ("exit_stage", exit_stage, "int32"),
        ("flag", flag, "int32"),
    ):
        ptrs[name], shape, _ = _device_buffer(obj, name, (dtype,), 1)
        if shape != (n,):
            raise ValueError(f"gate_step_cuda: '{name}' has shape {shape}, expected ({n},) like prob_sum's rows")
    act_ptr, (m,), _ = _device_buffer(active, "active", ("int32",), 1)
    log_ptr, log_shape, log_dtype = _device_buffer(logits, "logits", ("float32", "float16"), 2)
    if log_shape != (m, c):
        raise ValueError(f"stage {stage}: logits have shape {log_shape}, expected ({m}, {c}) for the active samples")
    sur_ptr, (capacity,), _ = _device_buffer(survivors, "survivors", ("int32",), 1)
    if capacity < m:
        raise ValueError(f"gate_step_cuda: 'survivors' holds {capacity} entries, needs at least {m}")
    cnt_ptr, cnt_shape, _ = _device_buffer(survivor_count, "survivor_count", ("int32",), 1)
    if cnt_shape[0] < 1:
        raise ValueError("gate_step_cuda: 'survivor_count' needs at least one element")
    ext.gate_step_cuda(
        log_ptr, log_dtype, act_ptr, m, c, n, ps_ptr, ptrs["label"], ptrs["conf"], ptrs["exit_stage"],
        ptrs["flag"], sur_ptr, cnt_ptr, int(stage), int(num_stages), float(threshold), CONFIDENCE_CODES[kind],
        stream=_stream_handle(stream), **(_fix_args(ext, fix, capacity) if fix else {}),
    )


def fuses_fix() -> bool:
    """True when the built extension's gate can run the device runtime's fix-up in the same launch."""
    ext = _ext.load()
    return bool(ext is not None and getattr(ext, "has_cuda", False)
                and "fix_rows" in (getattr(ext.gate_step_cuda, "__doc__", "") or ""))


def _fix_args(ext, fix: dict, survivors_len: int) -> dict:
    if not fuses_fix():
        raise DependencyError(f"this edge_committee._C has no fused fix-up in its gate; {_ext.BUILD_HINT}")
    rows = int(fix["rows"])
    if not 0 < rows <= survivors_len:
        raise ValueError(f"gate_step_cuda: fix rows {rows} must be in [1, {survivors_len}] (the survivors buffer)")
    gather, (g,), _ = _device_buffer(fix["gather_index"], "gather_index", ("int32",), 1)
    real, _, _ = _device_buffer(fix["real_count"], "real_count", ("int32",), 1)
    if g < rows:
        raise ValueError(f"gate_step_cuda: 'gather_index' holds {g} entries, needs {rows}")
    slot = fix.get("slot")
    buckets = fix.get("buckets")
    return {"fix_rows": rows, "fix_capacity": int(fix["capacity"]), "fix_gather_index": gather,
            "fix_real_count": real, "fix_slot": 0 if slot is None else int(slot.data_ptr()),
            "fix_buckets": 0 if buckets is None else int(buckets.data_ptr()),
            "fix_num_buckets": 0 if buckets is None else int(buckets.numel())}


def cuda_available() -> bool:
    """True when the extension has the CUDA gate and the CUDA runtime sees a device."""
    ext = _ext.load()
    return bool(ext is not None and getattr(ext, "has_cuda", False) and ext.cuda_device_count() > 0)
