"""The precision stage's entry point: FP32, FP16 and INT8 variants of a member, gated.

:func:`make_precision_variants` is what the build pipeline calls, once per member. It writes
``<member>.<precision>.onnx`` files, evaluates each on the validation split with ONNX Runtime,
and marks each accepted or rejected by the accuracy gate. Fallback order is INT8 -> FP16 -> FP32
(FP32, the reference, is always accepted).

Precision modes (:func:`resolve_precisions`):

- ``"fp32"``, ``"fp16"``, ``"int8"``: that precision, falling back down the chain when the gate
  rejects it; later precisions are built only when needed. :func:`choose_variant` returns the one
  to deploy.
- ``"auto"``: build all three; every accepted one is a candidate for the selection stage, which
  weighs accuracy against measured latency.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_committee.calibration import CalibrationConfig, CalibrationSample, load_calibration
from edge_committee.calibration._atomic import atomic_path
from edge_committee.calibration.record import sha256_file
from edge_committee.errors import EdgeCommitteeError, SpecError
from edge_committee.precision.accuracy_gate import (
    DEFAULT_TOLERANCE_PTS,
    evaluate_onnx,
    gate,
    top1_accuracy,
)
from edge_committee.precision.fp16 import fp16_emulation, fp16_from_fp32
from edge_committee.precision.int8 import SENSITIVE, Int8Config, int8_from_fp32

LOG = logging.getLogger("edge_committee")
PRECISIONS = ("fp32", "fp16", "int8")
MODES = PRECISIONS + ("auto",)
_CHAINS = {
    "fp32": ("fp32",),
    "fp16": ("fp16", "fp32"),
    "int8": ("int8", "fp16", "fp32"),
    "auto": ("fp32", "fp16", "int8"),
}


@dataclasses.dataclass
class PrecisionVariant:
    """One member at one precision, with its validation result.

    Attributes:
        member: the member's name.
        precision: ``fp32``, ``fp16`` or ``int8``.
        path: the ONNX file, ``<out_dir>/<member>.<precision>.onnx``.
        val_logits: (N, C) float32 logits on the validation split (ONNX Runtime, CPU).
        val_accuracy: top-1 on the validation split, percent.
        fp32_accuracy: the FP32 reference's top-1 on the same samples, percent.
        accepted: passed the accuracy gate (FP32 always does).
        reason: the gate's verdict with the numbers.
        max_abs_diff: largest |logit - fp32 logit| on the validation split.
        calibration: the ``CalibrationRecord`` as a dict (INT8 only).
        quantization: INT8 settings, excluded nodes and the Q/DQ check summary (INT8 only).
        sha256: of the ONNX file.
    """

    member: str
    precision: str
    path: Path
    val_logits: np.ndarray
    val_accuracy: float
    fp32_accuracy: float
    accepted: bool
    reason: str
    max_abs_diff: float = 0.0
    calibration: dict | None = None
    quantization: dict | None = None
    sha256: str = ""

    def to_dict(self, relative_to: str | os.PathLike | None = None) -> dict[str, Any]:
        """Manifest entry (without the logits). ``file`` is relative to ``relative_to`` if given."""
        path = Path(self.path)
        file = os.path.relpath(path, relative_to) if relative_to is not None else str(path)
        return {
            "precision": self.precision,
            "file": Path(file).as_posix(),
            "sha256": self.sha256,
            "val_accuracy": round(self.val_accuracy, 4),
            "fp32_val_accuracy": round(self.fp32_accuracy, 4),
            "accepted": self.accepted,
            "reason": self.reason,
            "max_abs_diff_vs_fp32": float(self.max_abs_diff),
            "calibration": self.calibration,
            "quantization": self.quantization,
        }


def resolve_precisions(mode: str) -> tuple[str, ...]:
    """The precisions a mode considers, in order: its fallback chain, or all three for auto.

    ``"int8"`` -> ``("int8", "fp16", "fp32")``; ``"fp16"`` -> ``("fp16", "fp32")``;
    ``"fp32"`` -> ``("fp32",)``; ``"auto"`` -> ``("fp32", "fp16", "int8")``.
    """
    if mode not in _CHAINS:
        raise SpecError(f"precision {mode!r} is not allowed; use one of {', '.join(MODES)}")
    return _CHAINS[mode]


def choose_variant(variants: Sequence[PrecisionVariant], mode: str) -> PrecisionVariant:
    """The variant a single-precision mode deploys: the first accepted one down its chain.

    For ``"auto"`` the fastest accepted variant is the selection stage's call; here it returns
    the lowest accepted precision (INT8, else FP16, else FP32) as a default.
    """
    chain = resolve_precisions(mode) if mode != "auto" else ("int8", "fp16", "fp32")
    by_precision = {v.precision: v for v in variants}
    for p in chain:
        v = by_precision.get(p)
        if v is not None and v.accepted:
            return v
    raise EdgeCommitteeError(f"no accepted variant among {[v.precision for v in variants]}")


def make_precision_variants(
    fp32_onnx: str | os.PathLike,
    preprocessing,
    val_split,
    calib: CalibrationConfig | CalibrationSample | None = None,
    precisions: str | Sequence[str] = "auto",
    out_dir: str | os.PathLike = ".",
    member_name: str | None = None,
    tolerance_pts: float = DEFAULT_TOLERANCE_PTS,
    int8_method: str = "minmax",
    exclude: str | Sequence[str] | None = None,
    threads: int | None = None,
    fp32_val_logits: np.ndarray | None = None,
    int8_config: Int8Config | None = None,
    retry_int8_without_sensitive: bool = True,
    keep_io_types: bool = True,
    batch_size: int = 256,
) -> list[PrecisionVariant]:
    """Build, evaluate and gate the precision variants of one member.

    Args:
        fp32_onnx: the member's float32 ONNX (from the export stage).
        preprocessing: the member's :class:`~edge_committee.spec.preprocess.Preprocessing`.
        val_split: a labelled :class:`~edge_committee.data.readers.RawSplit` (raw uint8 images).
        calib: calibration data for INT8: a :class:`CalibrationConfig` (read here) or a
            :class:`CalibrationSample` already read (share one across members); the member's
            preprocessing is applied to it. Needed only when INT8 is built.
        precisions: a mode (``"fp32"``, ``"fp16"``, ``"int8"``, ``"auto"``; see
            :func:`resolve_precisions`) or an explicit list of precisions to build (all built).
        out_dir: where ``<member>.<precision>.onnx`` files go (created).
        member_name: file name stem; default: ``fp32_onnx``'s stem up to the first dot.
        tolerance_pts: largest allowed loss of top-1 vs FP32, percentage points (default 1.0).
        int8_method: ``minmax`` (default), ``entropy`` or ``percentile``.
        exclude: nodes kept in float in INT8: names, ``"sensitive"`` (first Conv, classifier),
            or None (quantize everything; the default).
        threads: ONNX Runtime intra-op threads for evaluation (default: ORT's choice).
        fp32_val_logits: FP32 logits on ``val_split`` if already computed (skips that run).
        int8_config: full INT8 settings; overrides ``int8_method`` and ``exclude``.
        retry_int8_without_sensitive: when INT8 fails the gate and the sensitive nodes were
            quantized, quantize again with them in float before falling back (default True).
        keep_io_types: FP16 keeps float32 inputs and outputs (default True).
        batch_size: validation batch size (default 256).

    Returns:
        The variants built, FP32 first, then in the order they were built.

    Raises:
        EdgeCommitteeError: no labels in ``val_split``, INT8 without ``calib``, unreadable
            calibration data (naming the file), or an invalid model.
    """
    if isinstance(precisions, str):
        chain, lazy = resolve_precisions(precisions), precisions != "auto"
    else:
        chain, lazy = tuple(precisions), False
        for p in chain:
            resolve_precisions(p)
    if val_split.labels is None:
        raise EdgeCommitteeError(
            "the accuracy gate needs a labelled validation split; this one has no labels"
        )
    src = Path(fp32_onnx)
    name = member_name or src.name.split(".")[0]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ctx = _Context(name, out, preprocessing, val_split, threads, batch_size, tolerance_pts)

    fp32 = ctx.reference(src, fp32_val_logits)
    variants = [fp32]
    for p in chain:
        if p == "fp32":
            if lazy:
                break  # the fallback reached the reference
            continue
        if p == "fp16":
            v = ctx.fp16(src, keep_io_types)
        else:
            cfg = int8_config or Int8Config(method=int8_method, exclude=exclude)
            v = ctx.int8(src, calib, cfg, retry_int8_without_sensitive)
        variants.append(v)
        LOG.info("%s: %s", name, v.reason)
        if lazy and v.accepted:
            break
    return variants


@dataclasses.dataclass
class _Context:
    member: str
    out: Path
    preprocessing: Any
    val: Any
    threads: int | None
    batch_size: int
    tolerance: float
    ref_logits: np.ndarray | None = None
    ref_acc: float = 0.0

    def path(self, precision: str) -> Path:
        return self.out / f"{self.member}.{precision}.onnx"

    def evaluate(self, path: Path, precision: str) -> np.ndarray:
        if precision == "fp16":  # float16 rounding of every tensor, as on the GPU
            with tempfile.TemporaryDirectory(prefix="ec-fp16-") as tmp:
                emulated = fp16_emulation(path, Path(tmp) / "emulated.onnx")
                return self._run(emulated, precision)
        return self._run(path, precision)

    def _run(self, path: Path, precision: str) -> np.ndarray:
        return evaluate_onnx(
            path, self.val.images, self.preprocessing, self.threads, self.batch_size,
            desc=f"{self.member} {precision} validation",
        )  # fmt: skip

    def reference(self, src: Path, logits: np.ndarray | None) -> PrecisionVariant:
        dst = self.path("fp32")
        if not dst.exists() or not os.path.samefile(src, dst):
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)
        if logits is None:
            logits = self.evaluate(dst, "fp32")
        elif len(logits) != len(self.val):
            raise EdgeCommitteeError(
                f"fp32_val_logits has {len(logits)} rows; the validation split has {len(self.val)}"
            )
        self.ref_logits = np.asarray(logits, np.float32)
        self.ref_acc = top1_accuracy(self.ref_logits, self.val.labels)
        return PrecisionVariant(
            self.member, "fp32", dst, self.ref_logits, self.ref_acc, self.ref_acc, True,
            f"reference: fp32 top-1 {self.ref_acc:.2f}%", sha256=sha256_file(dst),
        )  # fmt: skip

    def gated(self, precision: str, path: Path, **extra) -> PrecisionVariant:
        logits = self.evaluate(path, precision)
        acc = top1_accuracy(logits, self.val.labels)
        verdict = gate(precision, acc, self.ref_acc, self.tolerance)
        diff = np.abs(logits - self.ref_logits)
        diff = float(np.inf if np.isnan(diff).any() else diff.max(initial=0.0))
        return PrecisionVariant(
            self.member, precision, path, logits, acc, self.ref_acc, verdict.accepted,
            verdict.reason, diff, sha256=sha256_file(path), **extra,
        )  # fmt: skip

    def fp16(self, src: Path, keep_io_types: bool) -> PrecisionVariant:
        path = fp16_from_fp32(src, self.path("fp16"), keep_io_types=keep_io_types)
        return self.gated("fp16", path)

    def int8(self, src: Path, calib, cfg: Int8Config, retry: bool) -> PrecisionVariant:
        if calib is None:
            raise EdgeCommitteeError(
                f"{self.member}: INT8 needs calibration data; give a calibration source "
                "(precision.int8.calibration in the spec)"
            )
        sample = load_calibration(calib) if isinstance(calib, CalibrationConfig) else calib
        inputs = sample.preprocess(self.preprocessing)
        record = sample.record.with_method(cfg.method).to_dict()
        v = self._int8_once(src, inputs, cfg, record)
        if not v.accepted and retry and SENSITIVE not in cfg.exclude:
            first = v.val_accuracy
            cfg2 = dataclasses.replace(cfg, exclude=cfg.exclude + (SENSITIVE,))
            v = self._int8_once(src, inputs, cfg2, record)
            kept = ", ".join(v.quantization["excluded_nodes"])
            v.reason += f" [second try, with {kept} in float; all-INT8 had {first:.2f}%]"
        return v

    def _int8_once(self, src: Path, inputs: np.ndarray, cfg: Int8Config, record: dict):
        path = self.path("int8")
        info = int8_from_fp32(src, path, inputs, cfg)
        return self.gated("int8", path, calibration=record, quantization=info)
