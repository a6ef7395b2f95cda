"""Export a PyTorch member to ONNX and prove the file computes what the module computes.

The export uses PyTorch's TorchScript-based exporter (``dynamo=False``). In torch 2.13 it is
fast (well under a second for a small CNN), deterministic (same bytes on every run) and honours
opset 17, which TensorRT 10.3 (JetPack 6) parses. The torch.export-based exporter takes several
seconds even for a tiny model and cannot write opset 17: it emits opset 18 and its down-conversion
fails. The batch dimension is dynamic (named ``batch``); every other dimension is fixed.

After export the file is checked with ``onnx.checker.check_model(full_check=True)`` and run with
ONNX Runtime on seeded random inputs at batch sizes 1 and 3 (which proves the dynamic batch works);
the largest absolute difference from PyTorch is reported. The file is written under a temporary
name and moved into place only after every check passed, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from edge_committee._lazy import require
from edge_committee.errors import EdgeCommitteeError

#: batch sizes the parity check cycles through; 1 and 3 prove the batch dimension is dynamic
PARITY_BATCH_SIZES = (1, 3)
MIN_OPSET = 17


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_onnx` wrote and how closely ONNX Runtime reproduces PyTorch.

    Attributes:
        path: the ONNX file written.
        opset: the default-domain opset of the file.
        max_abs_diff: largest absolute difference between PyTorch and ONNX Runtime outputs.
        tolerance: the tolerance it was checked against (absolute).
        input_shape: the per-sample input shape (without the batch dimension).
    """

    path: str
    opset: int
    max_abs_diff: float
    tolerance: float
    input_shape: tuple[int, ...]


def export_onnx(
    model: Any,
    input_shape: Sequence[int],
    out_path: str | os.PathLike,
    opset: int = MIN_OPSET,
    input_name: str = "input",
    output_name: str = "logits",
    parity_tolerance: float = 1e-4,
    parity_samples: int = 8,
    seed: int = 0,
) -> ExportReport:
    """Export ``model`` to ONNX with a dynamic batch dimension and check it against PyTorch.

    Args:
        model: a ``torch.nn.Module`` with one tensor input and one tensor output; it is put in
            ``eval()`` mode (and left there).
        input_shape: the full per-sample input shape, e.g. (C, H, W) or (H, W, C); the batch
            dimension is prepended and made dynamic.
        out_path: where to write the ONNX file (parent folders are created).
        opset: default-domain ONNX opset, at least 17 (default 17).
        input_name: name of the graph input (default "input").
        output_name: name of the graph output (default "logits").
        parity_tolerance: largest allowed absolute difference between PyTorch and ONNX Runtime
            outputs (default 1e-4).
        parity_samples: number of random samples compared, at least 4; they run in batches of
            1 and 3 alternately (default 8: batches 1, 3, 1, 3).
        seed: seed of the random parity inputs (standard normal, float32; default 0).

    Raises:
        EdgeCommitteeError: bad arguments, a model that cannot be exported, a file the ONNX
            checker rejects, or outputs that differ from PyTorch's by more than the tolerance.
    """
    torch = require("torch")
    shape = _check_args(model, input_shape, opset, parity_tolerance, parity_samples)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    device = _module_device(model)
    inputs = _parity_inputs(shape, parity_samples, seed)
    expected = [_torch_forward(model, x, device) for x in inputs]
    with _temporary_path(out_path) as tmp:
        example = torch.from_numpy(inputs[0]).to(device)
        _torch_export(model, example, tmp, opset, input_name, output_name)
        written_opset = _check_onnx(tmp, out_path)
        got = _run_onnx(tmp, input_name, inputs)
        diff = max(_max_abs_diff(e, g, out_path) for e, g in zip(expected, got))
        if not diff <= parity_tolerance:
            raise EdgeCommitteeError(
                f"{out_path}: ONNX Runtime output differs from PyTorch by max |diff| = "
                f"{diff:.3g}, above the tolerance {parity_tolerance:.3g} "
                f"({parity_samples} random samples, batch sizes {PARITY_BATCH_SIZES}); "
                "the model may use an op the exporter maps inexactly, or pass a larger "
                "parity_tolerance"
            )
        os.replace(tmp, out_path)
    return ExportReport(str(out_path), written_opset, float(diff), float(parity_tolerance), shape)


def _check_args(model: Any, input_shape: Sequence[int], opset: int, tolerance: float,
                samples: int) -> tuple[int, ...]:
    torch = require("torch")
    if not isinstance(model, torch.nn.Module):
        raise EdgeCommitteeError(
            f"export_onnx needs a torch.nn.Module, got {type(model).__name__}"
        )
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if not shape or any(d <= 0 for d in shape):
        raise EdgeCommitteeError(
            f"input_shape must be the per-sample shape as positive integers, e.g. (3, 224, 224); "
            f"got {input_shape!r}"
        )
    if int(opset) < MIN_OPSET:
        raise EdgeCommitteeError(f"opset must be at least {MIN_OPSET}; got {opset}")
    if not tolerance >= 0:
        raise EdgeCommitteeError(f"parity_tolerance must be >= 0; got {tolerance}")
    if int(samples) < sum(PARITY_BATCH_SIZES):
        raise EdgeCommitteeError(
            f"parity_samples must be at least {sum(PARITY_BATCH_SIZES)} so that batch sizes "
            f"{PARITY_BATCH_SIZES} are both checked; got {samples}"
        )
    return shape


def _module_device(model: Any) -> Any:
    torch = require("torch")
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def _parity_inputs(shape: tuple[int, ...], samples: int, seed: int) -> list[np.ndarray]:
    """Seeded standard-normal batches whose sizes cycle 1, 3, 1, 3, ... up to ``samples``."""
    rng = np.random.default_rng(seed)
    batches, left, i = [], int(samples), 0
    while left > 0:
        n = min(PARITY_BATCH_SIZES[i % len(PARITY_BATCH_SIZES)], left)
        batches.append(rng.standard_normal((n, *shape), dtype=np.float32))
        left, i = left - n, i + 1
    return batches


def _torch_forward(model: Any, x: np.ndarray, device: Any) -> np.ndarray:
    torch = require("torch")
    with torch.no_grad():
        y = model(torch.from_numpy(x).to(device))
    if not isinstance(y, torch.Tensor):
        raise EdgeCommitteeError(
            f"a member's forward must return one tensor (the logits); "
            f"{type(model).__name__} returned {type(y).__name__}"
        )
    return y.detach().float().cpu().numpy()


@contextlib.contextmanager
def _temporary_path(final: Path) -> Iterator[Path]:
    """A sibling temporary path, removed on exit unless it was moved into place."""
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _torch_export(model: Any, example: Any, path: Path, opset: int, input_name: str,
                  output_name: str) -> None:
    torch = require("torch")
    with warnings.catch_warnings():
        # the TorchScript exporter announces its own deprecation on every call
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        try:
            torch.onnx.export(
                model, (example,), str(path),
                dynamo=False,
                opset_version=int(opset),
                input_names=[input_name],
                output_names=[output_name],
                dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
                do_constant_folding=True,
            )
        except torch.onnx.errors.UnsupportedOperatorError as exc:
            raise EdgeCommitteeError(
                f"cannot export {type(model).__name__} to ONNX opset {opset}: {exc}"
            ) from None


def _check_onnx(tmp: Path, final: Path) -> int:
    """Run the full ONNX checker; return the file's default-domain opset."""
    onnx = require("onnx")
    try:
        onnx.checker.check_model(str(tmp), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EdgeCommitteeError(
            f"{final}: the exported model fails onnx.checker (full_check): {first}"
        ) from None
    proto = onnx.load(str(tmp), load_external_data=False)
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def _run_onnx(path: Path, input_name: str, batches: list[np.ndarray]) -> list[np.ndarray]:
    ort = require("onnxruntime")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # tiny batches; leave the other cores alone
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    return [sess.run(None, {input_name: x})[0].astype(np.float32, copy=False) for x in batches]


def _max_abs_diff(expected: np.ndarray, got: np.ndarray, path: Path) -> float:
    """Largest |expected - got|; a NaN or inf on one side only counts as an infinite difference."""
    if expected.shape != got.shape:
        raise EdgeCommitteeError(
            f"{path}: ONNX Runtime output shape {got.shape} differs from PyTorch's "
            f"{expected.shape}"
        )
    if expected.size == 0:
        return 0.0
    same = (expected == got) | (np.isnan(expected) & np.isnan(got))
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(same, 0.0, np.abs(expected.astype(np.float64) - got))
    return float(np.nan_to_num(diff, nan=np.inf).max())
