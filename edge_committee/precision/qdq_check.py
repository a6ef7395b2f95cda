"""Checks that a Q/DQ (INT8) ONNX model is quantized the way TensorRT accepts (design.md §4).

Rules, for every ``QuantizeLinear`` / ``DequantizeLinear`` node:

1. standard ONNX domain; scale and zero-point are constants (initializers or Constant nodes);
   scales are finite and positive; no blocked quantization (``block_size``);
2. the quantized type is int8: the zero-point's type (a QuantizeLinear without one would
   produce uint8; a DequantizeLinear without one takes its input's type) — so uint8 and int32
   (quantized biases) fail;
3. every zero-point is 0 (symmetric quantization);
4. activations (anything computed at run time) are per-tensor: one scale;
5. weights (constants) feeding the weight input of a layer are per-channel on that layer's
   output-channel axis, one scale per output channel:

   ========================  ============  ==========================================
   consumer (input 1)        weight shape  axis
   ========================  ============  ==========================================
   Conv                      (K, C/g, ...)  0
   ConvTranspose             (C, K/g, ...)  1
   Gemm, transB=1            (N, K)         0 (torch ``Linear`` exports this way)
   Gemm, transB=0            (K, N)         1
   MatMul, constant B        (..., K, N)    rank-1 (the last axis: N, the output features)
   ========================  ============  ==========================================

   TensorRT's "axis 0" for weights is the output-channel axis of Conv and of ``Linear``-style
   Gemm; for a (K, N) MatMul/Gemm weight the output channels are the last axis, which is what
   onnxruntime's quantizer and TensorRT both use there. Other constants (e.g. one added or
   multiplied) may be per-tensor; per-channel there fails, TensorRT supports it on weights only;
6. a QuantizeLinear output feeds only DequantizeLinear nodes (TensorRT fuses Q/DQ pairs).

:func:`check_qdq` raises :class:`QdqError` (an :class:`~edge_committee.errors.EdgeCommitteeError`)
naming every offending node, or returns a :class:`QdqReport`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from edge_committee.errors import EdgeCommitteeError
from edge_committee.precision._onnx import constants, load_model

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
_INT8 = 3  # onnx.TensorProto.INT8
_TYPE_NAMES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32",
               10: "float16", 17: "float8e4m3fn", 21: "uint4", 22: "int4"}  # fmt: skip
_NP_TO_ONNX = {np.dtype(np.int8): 3, np.dtype(np.uint8): 2, np.dtype(np.int32): 6,
               np.dtype(np.int16): 5, np.dtype(np.uint16): 4, np.dtype(np.float32): 1}  # fmt: skip


class QdqError(EdgeCommitteeError):
    """A Q/DQ model TensorRT would not accept; ``problems`` lists every offending node."""

    def __init__(self, message: str, problems: list[str]) -> None:
        super().__init__(message)
        self.problems = problems


@dataclasses.dataclass
class QdqReport:
    """What a passing model contains."""

    quantize_nodes: int
    dequantize_nodes: int
    #: (node name, weight tensor, axis, channels) of each per-channel weight
    weights: list[tuple[str, str, int, int]]
    #: activation tensors quantized per-tensor
    activations: list[str]
    #: layers whose weight input is dequantized (Conv/Gemm/MatMul run in INT8 by TensorRT)
    int8_layers: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "quantize_nodes": self.quantize_nodes,
            "dequantize_nodes": self.dequantize_nodes,
            "per_channel_weights": len(self.weights),
            "per_tensor_activations": len(self.activations),
            "int8_layers": list(self.int8_layers),
        }


def check_qdq(model_or_path: Any, require_qdq: bool = True) -> QdqReport:
    """Check every Q/DQ node against the module's rules; raise naming each offending node.

    Args:
        model_or_path: an ``onnx.ModelProto`` or a path to one.
        require_qdq: fail when the model has no Q/DQ node at all (it is then no INT8 model).
    """
    where = str(model_or_path) if isinstance(model_or_path, (str, os.PathLike)) else "model"
    model = load_model(model_or_path) if isinstance(model_or_path, (str, os.PathLike)) else model_or_path
    return _Checker(model, where).run(require_qdq)


def _label(node) -> str:
    name = node.name or f"(unnamed, output {node.output[0]!r})"
    return f"{node.op_type} {name!r}" if node.name else f"{node.op_type} {name}"


class _Checker:
    def __init__(self, model, where: str) -> None:
        self.model, self.where = model, where
        self.consts = constants(model)
        self.producer = {o: n for n in model.graph.node for o in n.output}
        self.consumers: dict[str, list[tuple[Any, int]]] = {}
        for n in model.graph.node:
            for i, name in enumerate(n.input):
                self.consumers.setdefault(name, []).append((n, i))
        self.elem_types = {
            vi.name: vi.type.tensor_type.elem_type
            for vi in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output)
        }
        self.problems: list[str] = []
        self.weights: list[tuple[str, str, int, int]] = []
        self.activations: list[str] = []
        self.layers: set[str] = set()

    def run(self, require_qdq: bool) -> QdqReport:
        nodes = [n for n in self.model.graph.node if n.op_type in QDQ_OPS]
        if require_qdq and not nodes:
            raise EdgeCommitteeError(
                f"{self.where}: no QuantizeLinear/DequantizeLinear node; it is not an INT8 "
                "(Q/DQ) model"
            )
        for node in nodes:
            self._check(node)
        if self.problems:
            shown = "; ".join(self.problems[:10])
            more = f"; and {len(self.problems) - 10} more" if len(self.problems) > 10 else ""
            raise QdqError(
                f"{self.where}: {len(self.problems)} Q/DQ problem(s) TensorRT would not accept "
                f"(it needs int8, zero-point 0, per-tensor activations, per-channel weights): "
                f"{shown}{more}",
                self.problems,
            )
        return QdqReport(
            quantize_nodes=sum(n.op_type == "QuantizeLinear" for n in nodes),
            dequantize_nodes=sum(n.op_type == "DequantizeLinear" for n in nodes),
            weights=self.weights,
            activations=self.activations,
            int8_layers=sorted(self.layers),
        )

    def _fail(self, node, msg: str) -> None:
        self.problems.append(f"{_label(node)}: {msg}")

    # ---------------------------------------------------------------------------- one node
    def _check(self, node) -> None:
        if node.domain not in ("", "ai.onnx"):
            self._fail(node, f"domain {node.domain!r}; use the standard ONNX operator")
        if any(a.name == "block_size" and a.i != 0 for a in node.attribute):
            self._fail(node, "blocked quantization (block_size); TensorRT INT8 needs per-channel")
        scale = self._scale(node)
        if scale is None:
            return
        weight = self._weight_of(node)
        if weight is not None and self._is_bias(node):
            self._fail(node, f"bias {weight!r} is quantized; TensorRT needs float biases")
            return
        qtype = self._quant_type(node)
        if qtype is not None and qtype != _INT8:
            self._fail(node, f"quantized type is {_TYPE_NAMES.get(qtype, qtype)}, must be int8")
        zp = self._zero_point(node)
        if zp is not None and np.any(zp != 0):
            vals = np.unique(zp)[:4].tolist()
            self._fail(node, f"zero-point is {vals} (must be 0: TensorRT needs symmetric quantization)")
        if node.op_type == "QuantizeLinear":
            for consumer, _ in self.consumers.get(node.output[0], []):
                if consumer.op_type != "DequantizeLinear":
                    self._fail(node, f"its output feeds {_label(consumer)}, not a DequantizeLinear")
        if weight is None:
            self._check_activation(node, scale)
        elif node.op_type == "DequantizeLinear":
            self._check_weight(node, scale, weight)

    def _scale(self, node) -> np.ndarray | None:
        if len(node.input) < 2 or node.input[1] not in self.consts:
            self._fail(node, "scale is not a constant (TensorRT needs build-time scales)")
            return None
        scale = np.asarray(self.consts[node.input[1]], np.float64)
        if scale.ndim > 1:
            self._fail(node, f"scale has shape {scale.shape}; must be a scalar or 1-D")
            return None
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            self._fail(node, "scale has zero, negative or non-finite values")
        return scale

    def _zero_point(self, node) -> np.ndarray | None:
        if len(node.input) < 3 or not node.input[2]:
            return None
        if node.input[2] not in self.consts:
            self._fail(node, "zero-point is not a constant")
            return None
        return np.asarray(self.consts[node.input[2]])

    def _quant_type(self, node) -> int | None:
        if len(node.input) >= 3 and node.input[2] in self.consts:
            return _NP_TO_ONNX.get(self.consts[node.input[2]].dtype, -1)
        if node.op_type == "QuantizeLinear":
            for a in node.attribute:
                if a.name == "output_dtype" and a.i:
                    return int(a.i)
            return 2  # ONNX default without a zero-point: uint8
        x = node.input[0]
        if x in self.consts:
            return _NP_TO_ONNX.get(self.consts[x].dtype, -1)
        if x in self.elem_types:
            return self.elem_types[x]
        prod = self.producer.get(x)
        if prod is not None and prod.op_type == "QuantizeLinear":
            return self._quant_type(prod)
        self._fail(node, "cannot tell its quantized type (no zero-point, input type unknown)")
        return None

    def _weight_of(self, node) -> str | None:
        """The constant this node quantizes, or None for an activation."""
        x = node.input[0]
        if x in self.consts:
            return x
        prod = self.producer.get(x)
        if node.op_type == "DequantizeLinear" and prod is not None and prod.op_type == "QuantizeLinear":
            return prod.input[0] if prod.input[0] in self.consts else None
        return None

    def _is_bias(self, node) -> bool:
        out = node.output[0]
        if node.op_type == "QuantizeLinear":  # weight Q/DQ pair: look behind its DequantizeLinear
            dqs = [c for c, _ in self.consumers.get(out, []) if c.op_type == "DequantizeLinear"]
            return any(self._is_bias(dq) for dq in dqs)
        return any(
            i == 2 and c.op_type in ("Conv", "ConvTranspose", "Gemm")
            for c, i in self.consumers.get(out, [])
        )

    @staticmethod
    def _axis(node, rank: int) -> int:
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        return axis + rank if axis < 0 else axis

    def _check_activation(self, node, scale: np.ndarray) -> None:
        if scale.size != 1:
            self._fail(
                node,
                f"activation {node.input[0]!r} is quantized per-channel ({scale.size} scales, "
                f"axis {self._axis(node, 4)}); TensorRT needs per-tensor activations",
            )
        elif node.op_type == "QuantizeLinear":
            self.activations.append(node.input[0])

    def _check_weight(self, node, scale: np.ndarray, weight: str) -> None:
        shape = np.shape(self.consts[weight])
        layers = [(c, i) for c, i in self.consumers.get(node.output[0], [])]
        expected = {_expected_axis(c, i, len(shape)) for c, i in layers}
        expected.discard(None)
        if not expected:  # a constant that is no layer's weight: per-tensor is fine
            if scale.size != 1:
                self._fail(node, f"constant {weight!r} is per-channel but feeds no Conv/Gemm/MatMul weight input")
            return
        if len(expected) > 1:
            self._fail(node, f"weight {weight!r} feeds layers that need different axes {sorted(expected)}")
            return
        want = expected.pop()
        if scale.size == 1 and shape[want] != 1:
            self._fail(
                node,
                f"weight {weight!r} is quantized per-tensor; it must be per-channel on axis {want} "
                f"({shape[want]} scales for shape {tuple(shape)})",
            )
            return
        axis = self._axis(node, len(shape))
        if axis != want or scale.size != shape[want]:
            self._fail(
                node,
                f"weight {weight!r} of shape {tuple(shape)} is quantized on axis {axis} with "
                f"{scale.size} scales; it must be per-channel on axis {want} ({shape[want]} scales)",
            )
            return
        self.weights.append((node.name or node.output[0], weight, want, int(scale.size)))
        self.layers.update(c.name or c.output[0] for c, i in layers if i == 1)


def _expected_axis(consumer, index: int, rank: int) -> int | None:
    """The output-channel axis of ``consumer``'s weight input, or None if ``index`` is none."""
    if index != 1:
        return None
    op = consumer.op_type
    if op == "Conv":
        return 0
    if op == "ConvTranspose":
        return 1
    if op == "Gemm":
        trans_b = next((a.i for a in consumer.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    if op == "MatMul":
        return rank - 1
    return None
