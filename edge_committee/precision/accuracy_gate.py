"""The accuracy gate: a lower-precision member is kept only if it stays close to FP32.

Not to be confused with the cascade gate (``edge_committee.cascade``). Every FP16 or INT8 model
is run with ONNX Runtime on the validation split (FP16 through
:func:`~edge_committee.precision.fp16.fp16_emulation`, since the CPU would otherwise run it in
float32) (the member's own preprocessing applied to the
raw images); its top-1 accuracy is compared with the FP32 model's on the same samples. It is
rejected when it loses more than ``tolerance_pts`` percentage points (default 1.0), and the
reason carries both accuracies, the loss and the tolerance.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from edge_committee.errors import EdgeCommitteeError

#: default largest allowed loss of top-1 accuracy, in percentage points
DEFAULT_TOLERANCE_PTS = 1.0


@dataclasses.dataclass(frozen=True)
class GateResult:
    accepted: bool
    reason: str
    accuracy: float
    reference: float

    @property
    def loss_pts(self) -> float:
        return self.reference - self.accuracy


def top1_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in percent."""
    labels = np.asarray(labels).reshape(-1)
    if len(logits) != len(labels) or len(labels) == 0:
        raise EdgeCommitteeError(f"{len(logits)} predictions for {len(labels)} labels")
    return float(np.mean(np.argmax(logits, axis=1) == labels) * 100.0)


def gate(
    precision: str, accuracy: float, reference: float, tolerance_pts: float = DEFAULT_TOLERANCE_PTS
) -> GateResult:
    """Accept ``precision`` unless it loses more than ``tolerance_pts`` points of top-1."""
    loss = reference - accuracy
    numbers = (
        f"{precision} top-1 {accuracy:.2f}% vs fp32 {reference:.2f}%"
        f" (loss {loss:+.2f} points, tolerance {tolerance_pts:.2f})"
    )
    if loss > tolerance_pts:
        return GateResult(False, f"rejected: {numbers}", accuracy, reference)
    return GateResult(True, f"accepted: {numbers}", accuracy, reference)


def evaluate_onnx(
    path: str | os.PathLike,
    raw_images,
    preprocessing,
    threads: int | None = None,
    batch_size: int = 256,
    desc: str | None = None,
) -> np.ndarray:
    """Logits (N, C) float32 of the ONNX model on raw uint8 images, batch by batch.

    ``raw_images``: a uint8 (N, H, W, C) array or a list of (H, W, C) arrays (``RawSplit.images``);
    ``preprocessing`` turns each batch into the model's input.
    """
    from edge_committee.evaluate import run_member

    return run_member(path, preprocessing, raw_images, batch_size, threads=threads,
                      desc=desc or os.path.basename(str(path)))
