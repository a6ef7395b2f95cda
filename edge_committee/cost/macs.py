"""Multiply-accumulates (MACs) of one member, counted from its ONNX graph at batch 1.

Convention (the one the committee paper's FLOPs and most model zoos use):

* **Conv** (1-D/2-D/3-D, grouped and depthwise included): ``N*Cout*prod(out spatial) *
  (Cin/groups)*prod(kernel)``; bias adds are not counted.
* **ConvTranspose**: ``N*Cin*prod(in spatial) * (Cout/groups)*prod(kernel)`` (every product of
  the scatter, including those that land in cropped padding); bias not counted.
* **Gemm**: ``M*N*K``; alpha, beta and C are not counted.
* **MatMul** (batched and broadcast included; 1-D operands per numpy): ``prod(output) * K``.
* The quantized forms count like their float op: QLinearConv and ConvInteger as Conv,
  QLinearMatMul and MatMulInteger as MatMul.
* **Every other op counts 0 MACs**: elementwise ops and activations, BatchNormalization,
  pooling, reductions, Softmax, resizing, shape ops, Q/DQ. They are reported separately in
  :attr:`MacsReport.other_ops` as node counts per op type, so a reader sees what was left out.
  Ops inside control-flow subgraphs (If, Loop, Scan) are not visited; model-local functions are
  inlined first and counted.

FLOPs are reported as 2 x MACs. Shapes come from ``onnx.shape_inference`` (with data
propagation) after the batch dimension of every graph input is fixed to 1; a symbolic dimension
other than the batch must be given in ``input_shapes``. When static inference leaves the shape
of a counted node's tensor unknown (padding computed from the input size at run time, as TF
ports and timm ``pad_type='same'`` models do), the model is run once with ONNX Runtime at those
input shapes (zeros, batch 1) and the shapes are read from that run
(:attr:`MacsReport.shapes_from` says which source was used).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from edge_committee._lazy import require
from edge_committee.errors import EdgeCommitteeError


@dataclass(frozen=True)
class NodeMacs:
    """MACs of one counted node (``name`` is the node's name, or ``op_type#index`` if unnamed)."""

    name: str
    op_type: str
    macs: int


@dataclass(frozen=True)
class MacsReport:
    """MACs of one ONNX model at the batch it was counted at (1 unless the model fixes it).

    Attributes:
        total_macs: multiply-accumulates of the counted ops (see the module docstring).
        per_op_type: MACs per counted op type, e.g. {"Conv": ..., "Gemm": ...}.
        other_ops: number of nodes per op type counted as 0 MACs.
        per_node: MACs of every counted node, in graph order.
        batch: the batch size the count is for.
    """

    total_macs: int
    per_op_type: dict[str, int]
    other_ops: dict[str, int] = field(default_factory=dict)
    per_node: list[NodeMacs] = field(default_factory=list)
    batch: int = 1
    shapes_from: str = "onnx"  #: ``onnx`` (static inference) or ``onnxruntime`` (one run)

    @property
    def flops(self) -> int:
        """Floating-point operations, 2 x MACs."""
        return 2 * self.total_macs

    def to_dict(self, nodes: bool = False) -> dict[str, Any]:
        """A JSON-ready dict (without the per-node list unless ``nodes``)."""
        out: dict[str, Any] = {
            "total_macs": self.total_macs,
            "flops": self.flops,
            "batch": self.batch,
            "shapes_from": self.shapes_from,
            "per_op_type": dict(self.per_op_type),
            "other_ops": dict(self.other_ops),
        }
        if nodes:
            out["per_node"] = [vars(n) for n in self.per_node]
        return out


def count_macs(
    model: Any,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> MacsReport:
    """Count the MACs of an ONNX model at batch 1.

    Args:
        model: a path to an ONNX file or an ``onnx.ModelProto`` (not modified).
        input_shapes: optional full shapes (batch included) for graph inputs by name, for models
            with symbolic dimensions other than the batch.

    Raises:
        EdgeCommitteeError: the file cannot be read, an input has an unknown dimension, or the
            shape of a counted node's tensor cannot be inferred (the node is named).
    """
    onnx = require("onnx")
    proto = _load(model)
    batch = _fix_input_shapes(proto, dict(input_shapes or {}))
    fixed = proto  # infer_shapes returns a new model: this one stays as it was, for the ORT run
    try:
        proto = onnx.shape_inference.infer_shapes(proto, strict_mode=False, data_prop=True)
    except Exception as exc:  # InferenceError, or a C++ error on a malformed graph
        raise EdgeCommitteeError(f"{_label(model)}: ONNX shape inference failed: {exc}") from None
    shapes = _known_shapes(proto.graph)
    missing = _unknown_counted(proto.graph, shapes)
    shapes_from, why = "onnx", ""
    if missing:
        found, why = _shapes_from_onnxruntime(model, fixed, missing)
        shapes.update(found)
        shapes_from = "onnxruntime"
    per_node: list[NodeMacs] = []
    other: dict[str, int] = {}
    for index, node in enumerate(proto.graph.node):
        rule = _RULES.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if rule is None:
            key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
            other[key] = other.get(key, 0) + 1
            continue
        name = node.name or f"{node.op_type}#{index}"
        per_node.append(NodeMacs(name, node.op_type, int(rule(_ShapeOf(node, name, shapes, model, why)))))
    per_type: dict[str, int] = {}
    for n in per_node:
        per_type[n.op_type] = per_type.get(n.op_type, 0) + n.macs
    return MacsReport(sum(per_type.values()), per_type, other, per_node, batch, shapes_from)


def _unknown_counted(graph: Any, shapes: dict) -> list[str]:
    """Tensors of counted nodes (inputs and outputs) whose shape static inference left unknown."""
    names: list[str] = []
    for node in graph.node:
        if node.domain in ("", "ai.onnx") and node.op_type in _RULES:
            names += [t for t in (*node.input, *node.output) if t and t not in shapes and t not in names]
    return names


def _shapes_from_onnxruntime(model: Any, proto: Any, names: list[str]) -> tuple[dict, str]:
    """Run ``proto`` (inputs already fixed; a private copy, changed here) once on zeros with ONNX Runtime.

    Returns the shapes of ``names`` and, when the run failed, why (else "").
    """
    onnx = require("onnx")
    ort = require("onnxruntime")
    probe = proto
    if not hasattr(model, "graph"):  # a path: bring external weights in (ORT needs constants' values)
        require("onnx.external_data_helper").load_external_data_for_model(
            probe, os.path.dirname(os.path.abspath(model)))
    outputs = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in outputs)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    initializers = {t.name for t in proto.graph.initializer}
    feeds = {}
    for value in proto.graph.input:
        if value.name not in initializers:
            tt = value.type.tensor_type
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
            feeds[value.name] = np.zeros([d.dim_value for d in tt.shape.dim], dtype)
    try:
        sess = ort.InferenceSession(probe.SerializeToString(), sess_options=opts,
                                    providers=["CPUExecutionProvider"])
        wanted = [o.name for o in sess.get_outputs()]
        values = sess.run(wanted, feeds)
    except Exception as exc:  # an op ORT lacks, a model over 2 GB...
        text = str(exc).strip()
        return {}, text.splitlines()[0][:200] if text else type(exc).__name__
    return {n: tuple(int(d) for d in v.shape) for n, v in zip(wanted, values) if n in names}, ""


# --- loading and shape fixing -------------------------------------------------------------------


def _load(model: Any) -> Any:
    onnx = require("onnx")
    if isinstance(model, onnx.ModelProto):
        proto = onnx.ModelProto()
        proto.CopyFrom(model)
    else:
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise EdgeCommitteeError(f"ONNX file not found: {path}")
        try:
            # only shapes are needed: leave external weight data on disk
            proto = onnx.load(path, load_external_data=False)
        except Exception as exc:
            raise EdgeCommitteeError(f"cannot read ONNX file {path}: {exc}") from None
    if proto.functions:
        proto = require("onnx.inliner").inline_local_functions(proto)
    return proto


def _fix_input_shapes(proto: Any, given: dict[str, Sequence[int]]) -> int:
    """Set every graph input's shape concretely (batch 1 unless given); return the batch size."""
    initializers = {t.name for t in proto.graph.initializer}
    names = [i.name for i in proto.graph.input if i.name not in initializers]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise EdgeCommitteeError(
            f"input_shapes names {unknown}, which are not graph inputs; inputs are {names}"
        )
    batches = set()
    for value in proto.graph.input:
        if value.name in initializers:
            continue
        if value.name in given:
            _set_dims(value, given[value.name])
        dims = value.type.tensor_type.shape.dim
        if len(dims) and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1  # clears dim_param: the dims share a oneof
        bad = [i for i, d in enumerate(dims) if not d.HasField("dim_value")]
        if bad:
            raise EdgeCommitteeError(
                f"graph input '{value.name}' has unknown dimension(s) {bad} besides the batch; "
                "pass input_shapes={name: full shape}"
            )
        if len(dims):
            batches.add(dims[0].dim_value)
    # drop declared output shapes: a symbolic 'batch' there would conflict with the inferred 1
    for value in proto.graph.output:
        value.type.tensor_type.ClearField("shape")
    return batches.pop() if len(batches) == 1 else 1


def _set_dims(value: Any, shape: Sequence[int]) -> None:
    tensor_shape = value.type.tensor_type.shape
    tensor_shape.ClearField("dim")
    for d in shape:
        if int(d) <= 0:
            raise EdgeCommitteeError(f"input_shapes['{value.name}'] must be positive, got {shape}")
        tensor_shape.dim.add().dim_value = int(d)


def _known_shapes(graph: Any) -> dict[str, tuple[int, ...]]:
    """Names -> fully known shapes, from initializers, inputs, value_info and outputs."""
    shapes = {t.name: tuple(int(d) for d in t.dims) for t in graph.initializer}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        tt = value.type.tensor_type
        if not tt.HasField("shape"):
            continue
        if all(d.HasField("dim_value") for d in tt.shape.dim):
            shapes.setdefault(value.name, tuple(int(d.dim_value) for d in tt.shape.dim))
    for node in graph.node:  # Constant outputs may lack value_info in older models
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    shapes.setdefault(node.output[0], tuple(int(d) for d in attr.t.dims))
    return shapes


class _ShapeOf:
    """Shape lookup for one node's inputs and outputs that names the node when one is unknown."""

    def __init__(self, node: Any, name: str, shapes: dict, model: Any, why: str = "") -> None:
        self.node, self.name, self._shapes, self._model, self._why = node, name, shapes, model, why

    def input(self, i: int) -> tuple[int, ...]:
        return self._get(self.node.input[i] if i < len(self.node.input) else "")

    def output(self, i: int = 0) -> tuple[int, ...]:
        return self._get(self.node.output[i])

    def _get(self, tensor: str) -> tuple[int, ...]:
        if tensor not in self._shapes:
            raise EdgeCommitteeError(
                f"{_label(self._model)}: cannot infer the shape of '{tensor}' at node "
                f"'{self.name}' ({self.node.op_type}); MACs need static shapes at batch 1, and one "
                f"ONNX Runtime run could not tell it either ({self._why or 'not produced'})"
            )
        return self._shapes[tensor]


def _label(model: Any) -> str:
    return "ONNX model" if hasattr(model, "graph") else str(model)


# --- counting rules -----------------------------------------------------------------------------


def _conv(s: _ShapeOf, weight: int = 1) -> int:
    # W is [Cout, Cin/groups, *kernel]; each output element takes prod(W.shape[1:]) MACs
    return math.prod(s.output()) * math.prod(s.input(weight)[1:])


def _conv_transpose(s: _ShapeOf) -> int:
    # W is [Cin, Cout/groups, *kernel]; each input element scatters prod(W.shape[1:]) products
    return math.prod(s.input(0)) * math.prod(s.input(1)[1:])


def _gemm(s: _ShapeOf) -> int:
    a = s.input(0)
    trans_a = next((attr.i for attr in s.node.attribute if attr.name == "transA"), 0)
    k = a[0] if trans_a else a[-1]
    return math.prod(s.output()) * k


def _matmul(s: _ShapeOf, a_index: int = 0) -> int:
    # output has the broadcast batch dims, M and N; each element takes K MACs (K = A's last dim,
    # also when A is 1-D)
    return math.prod(s.output()) * s.input(a_index)[-1]


_RULES: dict[str, Callable[[_ShapeOf], int]] = {
    "Conv": _conv,
    "ConvInteger": _conv,
    "QLinearConv": lambda s: _conv(s, weight=3),
    "ConvTranspose": _conv_transpose,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "MatMulInteger": _matmul,
    "QLinearMatMul": _matmul,
}
