"""INT8 members: explicit Q/DQ quantization, calibrated, in the form TensorRT accepts.

TensorRT 11 has no implicit INT8 calibration: the scales must be in the ONNX as
QuantizeLinear/DequantizeLinear (Q/DQ) pairs, int8, symmetric (zero-point 0), per-tensor for
activations and per-channel on the output-channel axis for weights (design.md §4). NVIDIA's
ModelOpt (``nvidia-modelopt``) produces that but does not install here, so this uses
onnxruntime's ``quantize_static`` with the only settings that give the same form:

- ``QuantFormat.QDQ``, ``QuantType.QInt8`` for activations and weights, ``per_channel=True``;
- ``extra_options``: ``ActivationSymmetric`` and ``WeightSymmetric`` (zero-point 0),
  ``QuantizeBias=False`` (TensorRT's DequantizeLinear takes int8, not int32 biases), and
  ``OpTypesToExcludeOutputQuantization`` for Conv/Gemm/MatMul: Q/DQ go on the *inputs* of the
  weighted layers (where TensorRT and ModelOpt put them), and the logits stay float.

Calibration methods: ``minmax`` (the observed range), ``entropy`` (KL-divergence threshold on
histograms, TensorRT's classic calibrator), ``percentile`` (the ``percentile``-th percentile of
|x|). Calibration is deterministic: the same inputs in the same order give the same scales.

Every result is checked with ``onnx.checker`` and :func:`~edge_committee.precision.qdq_check.
check_qdq` before it is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_committee._lazy import require
from edge_committee.errors import EdgeCommitteeError, SpecError
from edge_committee.precision._onnx import (
    check_model,
    constants,
    load_model,
    prune_opsets,
    save_model,
)
from edge_committee.precision.qdq_check import check_qdq

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
#: ops whose outputs get no Q/DQ: quantize the inputs of weighted layers, not their outputs
_NO_OUTPUT_QDQ = ["Conv", "ConvTranspose", "Gemm", "MatMul"]
#: ``exclude`` keyword: the first convolution and the classifier stay float
SENSITIVE = "sensitive"


@dataclasses.dataclass(frozen=True)
class Int8Config:
    """How to quantize one member.

    Attributes:
        method: ``minmax`` (default), ``entropy`` or ``percentile``.
        percentile: for ``percentile``: the percentile of |x| kept (default 99.999).
        exclude: node names kept in float, or ``"sensitive"`` (the first Conv and the
            classifier Gemm/MatMul, see :func:`sensitive_nodes`), or a list mixing names and
            ``"sensitive"``. Default: none.
        batch_size: largest calibration batch (memory only); the batch used is the largest
            size <= this that divides the sample count (see :func:`even_batch_size`). Default 32.
        pre_process: run onnxruntime's ``quant_pre_process`` (shape inference and graph
            optimisation, e.g. folding a BatchNormalization left in the graph). Default True.
    """

    method: str = "minmax"
    percentile: float = 99.999
    exclude: tuple[str, ...] = ()
    batch_size: int = 32
    pre_process: bool = True

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise SpecError(
                f"int8 method {self.method!r} is not allowed; use one of "
                f"{', '.join(CALIBRATION_METHODS)}"
            )
        if not 50.0 < float(self.percentile) <= 100.0:
            raise SpecError(f"int8 percentile {self.percentile!r} must be in (50, 100]")
        excl = (self.exclude,) if isinstance(self.exclude, str) else tuple(self.exclude or ())
        object.__setattr__(self, "exclude", excl)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["exclude"] = list(self.exclude)
        return d


class ArrayCalibrationReader:
    """An onnxruntime ``CalibrationDataReader`` over preprocessed float32 inputs (N, ...).

    Yields ``{input_name: batch}`` in order; ``rewind()`` starts again. onnxruntime accepts any
    object with ``get_next`` (its ``CalibrationDataReader.__subclasshook__``), so importing
    this class does not import onnxruntime.
    """

    def __init__(self, inputs: np.ndarray, input_name: str, batch_size: int = 32) -> None:
        if len(inputs) == 0:
            raise EdgeCommitteeError("calibration needs at least one sample; got none")
        self.inputs = np.ascontiguousarray(inputs, dtype=np.float32)
        self.input_name = input_name
        self.batch_size = int(batch_size)
        self._start, self._end, self._pos = 0, len(self.inputs), 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._pos >= self._end:
            return None
        stop = min(self._pos + self.batch_size, self._end)
        batch = {self.input_name: self.inputs[self._pos : stop]}
        self._pos = stop
        return batch

    def rewind(self) -> None:
        self._pos = self._start

    def set_range(self, start_index: int, end_index: int) -> None:
        self._start, self._end = int(start_index), min(int(end_index), len(self.inputs))
        self._pos = self._start

    def __len__(self) -> int:
        return len(self.inputs)

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        batch = self.get_next()
        if batch is None:
            raise StopIteration
        return batch


def sensitive_nodes(model_or_path: Any) -> list[str]:
    """The first Conv and the classifier (the last Gemm or MatMul) in graph order.

    These hold most of INT8's accuracy loss on small CNNs: the first convolution sees raw pixels
    with few input channels (little to gain from INT8), the classifier produces the logits.
    """
    model = _as_model(model_or_path)
    nodes = list(model.graph.node)
    first_conv = next((n.name for n in nodes if n.op_type == "Conv"), None)
    classifier = next((n.name for n in reversed(nodes) if n.op_type in ("Gemm", "MatMul")), None)
    return [n for n in (first_conv, classifier) if n]


def resolve_exclude(model, exclude: Sequence[str]) -> list[str]:
    """Expand ``"sensitive"`` and check that every named node exists."""
    names = {n.name for n in model.graph.node}
    out: list[str] = []
    for item in exclude:
        for name in sensitive_nodes(model) if item == SENSITIVE else [item]:
            if name not in names:
                some = ", ".join(sorted(n for n in names if n)[:8])
                raise EdgeCommitteeError(
                    f"int8 exclude: no node named {name!r} in the model (nodes include: {some})"
                )
            if name not in out:
                out.append(name)
    return out


def int8_from_fp32(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    calib_inputs: np.ndarray,
    config: Int8Config = Int8Config(),
) -> dict:
    """Quantize the float32 ONNX ``src`` to a Q/DQ INT8 ``dst`` calibrated on ``calib_inputs``.

    Args:
        calib_inputs: preprocessed float32 member inputs (N, ...), e.g. from
            ``CalibrationSample.preprocess(member_preprocessing)``.

    Returns:
        ``{"config": ..., "excluded_nodes": [...], "qdq": QdqReport.to_dict()}``.

    Raises:
        EdgeCommitteeError: unknown excluded node, or a result that fails onnx.checker or the
            Q/DQ check (then nothing is written).
    """
    quant = require("onnxruntime.quantization")
    model = load_model(src)
    _name_nodes(model)
    excluded = resolve_exclude(model, config.exclude)
    input_name = _single_input(model, src)
    with tempfile.TemporaryDirectory(prefix="ec-int8-") as tmp:
        named = Path(tmp) / "named.onnx"
        save_model(model, named)
        model_in = named
        if config.pre_process:
            model_in = Path(tmp) / "pre.onnx"
            with _quiet():
                quant.shape_inference.quant_pre_process(str(named), str(model_in))
        out = Path(tmp) / "int8.onnx"
        batch = even_batch_size(len(calib_inputs), config.batch_size)
        reader = ArrayCalibrationReader(calib_inputs, input_name, batch)
        with _quiet():
            quant.quantize_static(
                str(model_in),
                str(out),
                reader,
                quant_format=quant.QuantFormat.QDQ,
                per_channel=True,
                activation_type=quant.QuantType.QInt8,
                weight_type=quant.QuantType.QInt8,
                nodes_to_exclude=excluded,
                calibrate_method=_method(quant, config.method),
                extra_options=_extra_options(config),
            )
        result = load_model(out)
    prune_opsets(result)
    check_model(result, f"the INT8 quantization of {src}")
    report = check_qdq(result)
    save_model(result, dst)
    return {"config": config.to_dict(), "excluded_nodes": excluded, "qdq": report.to_dict()}


def qdq_scales(model_or_path: Any) -> dict[str, list[float]]:
    """Scale of every Q/DQ node by the tensor it (de)quantizes: for comparing calibrations."""
    model = _as_model(model_or_path)
    consts = constants(model)
    return {
        f"{n.op_type}:{n.input[0]}": np.asarray(consts[n.input[1]], np.float64).ravel().tolist()
        for n in model.graph.node
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.input[1] in consts
    }


# ---------------------------------------------------------------------------------- helpers
def even_batch_size(n: int, batch_size: int) -> int:
    """The largest batch size <= ``batch_size`` that divides ``n``.

    onnxruntime's histogram calibrators (entropy, percentile) stack the outputs of all batches
    and fail on a shorter last batch, so every batch must have the same size.
    """
    for b in range(max(1, min(int(batch_size), n)), 0, -1):
        if n % b == 0:
            return b
    return 1


def _extra_options(config: Int8Config) -> dict:
    opts: dict[str, Any] = {
        "ActivationSymmetric": True,
        "WeightSymmetric": True,
        "QuantizeBias": False,
        "OpTypesToExcludeOutputQuantization": list(_NO_OUTPUT_QDQ),
        # histogram calibrators: collect |x| so the chosen range is symmetric about 0
        "CalibTensorRangeSymmetric": True,
    }
    if config.method == "percentile":
        opts["CalibPercentile"] = float(config.percentile)
    return opts


def _method(quant, name: str):
    return {
        "minmax": quant.CalibrationMethod.MinMax,
        "entropy": quant.CalibrationMethod.Entropy,
        "percentile": quant.CalibrationMethod.Percentile,
    }[name]


def _as_model(model_or_path: Any):
    if isinstance(model_or_path, (str, os.PathLike)):
        return load_model(model_or_path)
    return model_or_path


def _name_nodes(model) -> None:
    """Give unnamed nodes stable names (exclusion and error messages go by name)."""
    taken = {n.name for n in model.graph.node if n.name}
    for i, n in enumerate(model.graph.node):
        if not n.name:
            name = f"{n.op_type}_{i}"
            while name in taken:
                name += "_"
            n.name = name
            taken.add(name)


def _single_input(model, src) -> str:
    inits = {t.name for t in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise EdgeCommitteeError(
            f"{src}: a member must have exactly one input; it has {len(inputs)} ({', '.join(inputs)})"
        )
    return inputs[0]


@contextlib.contextmanager
def _quiet():
    """onnxruntime's calibrators print progress to stdout; keep the caller's output clean."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield
