"""The gate in ONNX: a ``CascadeGate`` plugin node for TensorRT, or the same step in standard ONNX ops.

:func:`append_gate` adds one cascade stage after a member's logits. Both forms have the same graph
inputs and outputs (names below, after ``prefix``), so a runtime can feed either:

=================  ==============  =====  ==============================================================
name               shape           type   meaning
=================  ==============  =====  ==============================================================
active             [M]             int32  original indices of the M samples this member ran on
prob_sum           [N, C]          float  running sum of member probabilities (original index)
label              [N]             int32  final label (-1 until the sample exits)
conf               [N]             float  final confidence (NaN until the sample exits)
exit_stage         [N]             int32  stage the sample exited at (-1 until then)
flag               [N]             int32  1 if some member gave non-finite logits for the sample
prob_sum_out ...   as the inputs          the updated state (``prob_sum_out``, ``label_out``, ...)
survivors          [S]             int32  original indices of the survivors, stable order
num_survivors      []              int32  S
=================  ==============  =====  ==============================================================

The plugin form is one node ``CascadeGate`` (domain ``edge_committee``) with the string attributes
``plugin_version`` = "1" and ``plugin_namespace`` = "edge_committee" that TensorRT's ONNX parser uses
to map an unknown op to a registered plugin, plus ``threshold``, ``stage``, ``num_stages``,
``confidence`` (code). The standard form (opset >= 13) runs under ONNX Runtime, which has no plugin.
onnx is imported only when these functions run.
"""

from __future__ import annotations

import math
from typing import Any

from edge_committee._lazy import require
from edge_committee.cascade.reference import CONFIDENCE_CODES, check_confidence_name
from edge_committee.gate.plugin import PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION

#: Domain of the plugin node; imported at version 1 so checkers and ONNX Runtime accept the model.
GATE_DOMAIN = "edge_committee"
GATE_INPUTS = ("active", "prob_sum", "label", "conf", "exit_stage", "flag")
GATE_OUTPUTS = ("prob_sum_out", "label_out", "conf_out", "exit_stage_out", "flag_out", "survivors", "num_survivors")
#: Lowest default-domain opset the standard-op form supports.
MIN_OPSET = 13


class _Builder:
    """Appends nodes with unique, prefixed names; hides opset differences of the Reduce* ops."""

    def __init__(self, onnx: Any, prefix: str, opset: int) -> None:
        self.onnx, self.prefix, self.opset = onnx, prefix, opset
        self.nodes: list = []
        self.initializers: list = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{self.prefix}{hint}_{self._count}"

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, outputs: list[str] | None = None,
           **attrs: Any) -> str:
        outputs = outputs or [self.name(hint or op_type.lower())]
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, outputs, name=self.name(op_type), **attrs))
        return outputs[0]

    def const(self, value: Any, dtype: Any, hint: str, dims: list[int] | None = None) -> str:
        name = self.name(hint)
        values = value if isinstance(value, list) else [value]
        self.initializers.append(self.onnx.helper.make_tensor(name, dtype, dims if dims is not None else [], values))
        return name

    def reduce(self, op_type: str, x: str, axis: int, keepdims: int, hint: str) -> str:
        # ReduceSum takes axes as an input from opset 13, the other Reduce* ops from opset 18.
        if op_type == "ReduceSum" or self.opset >= 18:
            axes = self.const([axis], self.onnx.TensorProto.INT64, "axes", [1])
            return self.op(op_type, [x, axes], hint, keepdims=keepdims)
        return self.op(op_type, [x], hint, axes=[axis], keepdims=keepdims)


def _names(prefix: str) -> tuple[dict[str, str], dict[str, str]]:
    return {k: prefix + k for k in GATE_INPUTS}, {k: prefix + k for k in GATE_OUTPUTS}


def _gated_copy(onnx: Any, model: Any, logits: str | None, stage: int, num_stages: int, kind: str):
    """Checks shared by both gate forms; returns (copy of the model, its graph, logits name, info, dtype)."""
    check_confidence_name(kind)
    if not 0 <= stage < num_stages:
        raise ValueError(f"stage {stage} is outside [0, {num_stages})")
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        model = onnx.load(model)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    logits = logits or graph.output[0].name
    info = _logits_info(graph, logits)
    if info is None:
        raise ValueError(f"the model has no tensor named {logits!r} (outputs: {[o.name for o in graph.output]})")
    elem = info.type.tensor_type.elem_type
    if elem not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16):
        raise ValueError(f"logits {logits!r} must be float32 or float16, got {onnx.TensorProto.DataType.Name(elem)}")
    return out, graph, logits, info, elem


def _standard_gate(b: _Builder, logits: str, logits_float: bool, stage: int, num_stages: int, threshold: float,
                   kind: str, num_classes: int | None, ins: dict[str, str], outs: dict[str, str]) -> None:
    """reference.gate_step in standard ONNX ops (static shapes except the compacted survivors)."""
    tp = b.onnx.TensorProto
    x = logits if logits_float else b.op("Cast", [logits], "logits_f32", to=tp.FLOAT)
    ok2, ok = finite_rows(b, x)
    one_axis = b.const([1], tp.INT64, "axis1", [1])
    zero = b.const(0.0, tp.FLOAT, "zero")
    probs = b.op("Softmax", [b.op("Where", [ok2, x, zero], "logits_finite")], "probs", axis=1)
    probs = b.op("Where", [ok2, probs, zero], "probs_ok")
    active = ins["active"]
    index = b.op("Unsqueeze", [b.op("Cast", [active], to=tp.INT64), one_axis], "scatter_index")  # [M, 1]
    rows = b.op("Add", [b.op("Gather", [ins["prob_sum"], active], "rows", axis=0), probs], "rows_new")
    b.op("ScatterND", [ins["prob_sum"], index, rows], outputs=[outs["prob_sum_out"]])
    mean, total_2d = mean_over_contributions(b, rows)
    conf = _confidence(b, mean, kind, num_classes)
    everyone = everyone_exits(b, active) if stage == num_stages - 1 else None
    exits = exits_at(b, conf, ok, stage, num_stages, threshold, everyone)
    empty = b.op("Not", [b.op("Greater", [b.op("Squeeze", [total_2d, one_axis], "total"), zero])], "empty")
    compact_gate_outputs(b, mean, conf, empty, exits, ok, active, index, stage, ins, outs)


def finite_rows(b: _Builder, x: str) -> tuple[str, str]:
    """(ok [M, 1], ok [M]) bool: True where every logit of the row is finite (reference.finite_rows)."""
    tp = b.onnx.TensorProto
    bad = b.op("Or", [b.op("IsNaN", [x]), b.op("IsInf", [x])], "nonfinite")
    row_bad = b.reduce("ReduceMax", b.op("Cast", [bad], to=tp.FLOAT), 1, 1, "row_nonfinite")
    ok2 = b.op("Equal", [row_bad, b.const(0.0, tp.FLOAT, "zero")], "ok_2d")
    return ok2, b.op("Squeeze", [ok2, b.const([1], tp.INT64, "axis1", [1])], "ok")


def mean_over_contributions(b: _Builder, prob_sum: str) -> tuple[str, str]:
    """(mean [M, C], row total [M, 1]) of running probability sums: divided by the stages that
    contributed (reference.contributions), each of which added a row summing to 1."""
    tp = b.onnx.TensorProto
    total_2d = b.reduce("ReduceSum", prob_sum, 1, 1, "total_2d")
    count = b.op("Max", [b.op("Round", [total_2d], "total_rounded"), b.const(1.0, tp.FLOAT, "one_f")], "count")
    return b.op("Div", [prob_sum, count], "mean"), total_2d


def everyone_exits(b: _Builder, active: str) -> str:
    """[M] bool all True, one per active sample (the last stage)."""
    tp = b.onnx.TensorProto
    return b.op("ConstantOfShape", [b.op("Shape", [active], "m")], "everyone",
                value=b.onnx.helper.make_tensor("true", tp.BOOL, [1], [True]))


def exits_at(b: _Builder, conf: str, ok: str, stage: int, num_stages: int, threshold: float,
             everyone: str | None) -> str:
    """Who exits: ``everyone`` at the last stage, else finite rows whose confidence reaches the threshold."""
    if stage == num_stages - 1:
        return everyone
    above = b.op("GreaterOrEqual", [conf, b.const(float(threshold), b.onnx.TensorProto.FLOAT, "threshold")], "above")
    return b.op("And", [ok, above], "exits_ok")


def compact_gate_outputs(b: _Builder, probs: str, conf: str, empty: str, exits: str, ok: str, active: str,
                         index: str, stage: int, ins: dict[str, str], outs: dict[str, str]) -> None:
    """The state a compact-form gate stage writes for its M active rows (label, conf, exit stage, flag,
    by original ``index``) and the survivors, compacted in order, with their count. Shared by the
    plain and learned gates."""
    tp = b.onnx.TensorProto
    label_exit, conf_exit = label_and_conf(b, probs, conf, empty)

    def update(state: str, condition: str, value: str, keep_when_true: bool = False) -> None:
        old = b.op("Gather", [ins[state], active], state + "_old", axis=0)
        new = b.op("Where", [condition, old, value] if keep_when_true else [condition, value, old], state + "_new")
        b.op("ScatterND", [ins[state], index, new], outputs=[outs[state + "_out"]])

    update("label", exits, label_exit)
    update("conf", exits, conf_exit)
    update("exit_stage", exits, b.const(int(stage), tp.INT32, "stage"))
    update("flag", ok, b.const(1, tp.INT32, "one_i"), keep_when_true=True)
    survivors = b.op("Compress", [active, b.op("Not", [exits], "continues")], outputs=[outs["survivors"]], axis=0)
    b.op("Cast", [b.op("Size", [survivors], "num_survivors_i64")], outputs=[outs["num_survivors"]], to=tp.INT32)


def _logits_info(graph: Any, name: str) -> Any:
    for info in list(graph.output) + list(graph.value_info) + list(graph.input):
        if info.name == name:
            return info
    return None


def _dim(info: Any, axis: int) -> Any:
    """The int or symbolic name of a dimension of a value info, else None."""
    try:
        d = info.type.tensor_type.shape.dim[axis]
    except (AttributeError, IndexError):
        return None
    if d.HasField("dim_value"):
        return int(d.dim_value)
    return d.dim_param or None


def append_gate(
    model: Any,
    stage: int,
    num_stages: int,
    threshold: float,
    kind: str = "max_prob",
    *,
    logits: str | None = None,
    num_samples: int | str = "num_samples",
    use_plugin: bool = True,
    prefix: str = "gate.",
    keep_logits: bool = False,
) -> Any:
    """Return a copy of ``model`` (ModelProto or path) with one cascade gate stage after its logits.

    ``logits``: name of the member output holding the (M, C) logits (default: the first graph output).
    ``num_samples``: N, the number of original samples (int) or a symbolic dimension name.
    ``use_plugin``: True for the TensorRT ``CascadeGate`` node, False for standard ONNX ops (any
    backend; needs default-domain opset >= 13). The result passes ``onnx.checker.check_model``.
    """
    onnx = require("onnx")
    out, graph, logits, info, elem = _gated_copy(onnx, model, logits, stage, num_stages, kind)
    m_dim = _dim(info, 0) or "num_active"
    c_dim = _dim(info, 1) or "num_classes"
    num_classes = c_dim if isinstance(c_dim, int) else None
    opset = next((o.version for o in out.opset_import if o.domain in ("", "ai.onnx")), None)
    if not use_plugin and (opset is None or opset < MIN_OPSET):
        raise ValueError(f"the standard-op gate needs default-domain opset >= {MIN_OPSET}, the model has {opset}")

    ins, outs = _names(prefix)
    tp, mk = onnx.TensorProto, onnx.helper.make_tensor_value_info
    graph.input.extend([
        mk(ins["active"], tp.INT32, [m_dim]),
        mk(ins["prob_sum"], tp.FLOAT, [num_samples, c_dim]),
        mk(ins["label"], tp.INT32, [num_samples]),
        mk(ins["conf"], tp.FLOAT, [num_samples]),
        mk(ins["exit_stage"], tp.INT32, [num_samples]),
        mk(ins["flag"], tp.INT32, [num_samples]),
    ])
    if not keep_logits:
        kept = [o for o in graph.output if o.name != logits]
        del graph.output[:]
        graph.output.extend(kept)
    graph.output.extend([
        mk(outs["prob_sum_out"], tp.FLOAT, [num_samples, c_dim]),
        mk(outs["label_out"], tp.INT32, [num_samples]),
        mk(outs["conf_out"], tp.FLOAT, [num_samples]),
        mk(outs["exit_stage_out"], tp.INT32, [num_samples]),
        mk(outs["flag_out"], tp.INT32, [num_samples]),
        mk(outs["survivors"], tp.INT32, [prefix + "num_survivors"]),
        mk(outs["num_survivors"], tp.INT32, []),
    ])

    if use_plugin:
        graph.node.append(onnx.helper.make_node(
            PLUGIN_NAME,
            [logits] + [ins[k] for k in GATE_INPUTS],
            [outs[k] for k in GATE_OUTPUTS],
            name=f"{prefix}{PLUGIN_NAME}",
            domain=GATE_DOMAIN,
            plugin_version=PLUGIN_VERSION,
            plugin_namespace=PLUGIN_NAMESPACE,
            threshold=float(threshold),
            stage=int(stage),
            num_stages=int(num_stages),
            confidence=CONFIDENCE_CODES[kind],
        ))
        if not any(o.domain == GATE_DOMAIN for o in out.opset_import):
            out.opset_import.append(onnx.helper.make_opsetid(GATE_DOMAIN, 1))
    else:
        b = _Builder(onnx, prefix, opset)
        _standard_gate(b, logits, elem == tp.FLOAT, stage, num_stages, threshold, kind, num_classes, ins, outs)
        graph.node.extend(b.nodes)
        graph.initializer.extend(b.initializers)
    onnx.checker.check_model(out)
    return out


def make_gate_model(
    num_classes: int,
    stage: int,
    num_stages: int,
    threshold: float,
    kind: str = "max_prob",
    *,
    logits_dtype: str = "float32",
    num_samples: int | str = "num_samples",
    use_plugin: bool = True,
    opset: int = 17,
    prefix: str = "gate.",
) -> Any:
    """A model that is only the gate: input ``logits`` [M, C] plus the state inputs (see module doc)."""
    onnx = require("onnx")
    tp = onnx.TensorProto
    elem = {"float32": tp.FLOAT, "float16": tp.FLOAT16}[logits_dtype]
    graph = onnx.helper.make_graph(
        [], "cascade_gate",
        [onnx.helper.make_tensor_value_info("logits", elem, ["num_active", num_classes])],
        [onnx.helper.make_tensor_value_info("logits", elem, ["num_active", num_classes])],
    )
    opsets = [onnx.helper.make_opsetid("", opset)]
    # The lowest IR version that carries this opset: runtimes older than the onnx package still load it.
    model = onnx.helper.make_model(graph, opset_imports=opsets, producer_name="edge_committee",
                                   ir_version=onnx.helper.find_min_ir_version_for(opsets))
    return append_gate(model, stage, num_stages, threshold, kind, logits="logits", num_samples=num_samples,
                       use_plugin=use_plugin, prefix=prefix)


# ---------------------------------------------------------------------------------------------- mask form
#: The mask gate's state: ``alive`` [N] bool replaces ``active``; no compaction, static shapes only.
MASK_GATE_INPUTS = ("alive", "prob_sum", "label", "conf", "exit_stage", "flag")
MASK_GATE_OUTPUTS = ("prob_sum_out", "label_out", "conf_out", "exit_stage_out", "flag_out", "alive_out", "any_alive")


def _confidence(b: _Builder, mean: str, kind: str, num_classes: int | None) -> str:
    """Confidence of each row of ``mean`` [M, C] -> [M] (reference.confidence in standard ops)."""
    tp = b.onnx.TensorProto
    if kind == "max_prob" or (kind == "margin" and num_classes is not None and num_classes < 2):
        return b.reduce("ReduceMax", mean, 1, 0, "conf")
    if kind == "margin":
        top2 = b.op("TopK", [mean, b.const([2], tp.INT64, "k2", [1])], "top2", axis=1)
        b.nodes[-1].output.append(b.name("top2_index"))
        first = b.op("Gather", [top2, b.const(0, tp.INT64, "i0")], "top1", axis=1)
        second = b.op("Gather", [top2, b.const(1, tp.INT64, "i1")], "top2nd", axis=1)
        return b.op("Sub", [first, second], "conf")
    zero = b.const(0.0, tp.FLOAT, "zero")  # neg_entropy: sum p log p with 0 log 0 = 0
    positive = b.op("Greater", [mean, zero], "positive")
    safe = b.op("Where", [positive, mean, b.const(1.0, tp.FLOAT, "one")], "safe")
    plogp = b.op("Where", [positive, b.op("Mul", [mean, b.op("Log", [safe])]), zero], "plogp")
    return b.reduce("ReduceSum", plogp, 1, 0, "conf")


def _mask_gate(b: _Builder, logits: str, logits_float: bool, stage: int, num_stages: int, threshold: float,
               kind: str, num_classes: int | None, ins: dict[str, str], outs: dict[str, str]) -> None:
    """reference.gate_step on all N rows, updating only the ``alive`` ones (no Compress/ScatterND/NonZero)."""
    tp = b.onnx.TensorProto
    x = logits if logits_float else b.op("Cast", [logits], "logits_f32", to=tp.FLOAT)
    zero = b.const(0.0, tp.FLOAT, "zero")
    one_axis = b.const([1], tp.INT64, "axis1", [1])
    ok2, ok = finite_rows(b, x)  # [N, 1], [N]
    alive = ins["alive"]
    probs = b.op("Softmax", [b.op("Where", [ok2, x, zero], "logits_finite")], "probs", axis=1)
    adds = b.op("And", [ok2, b.op("Unsqueeze", [alive, one_axis], "alive_2d")], "contributes")
    # a row that does not contribute adds exactly 0.0, so its running sum stays bit-identical
    total_sum = b.op("Add", [ins["prob_sum"], b.op("Where", [adds, probs, zero], "probs_used")],
                     outputs=[outs["prob_sum_out"]])
    mean, total_2d = mean_over_contributions(b, total_sum)
    conf = _confidence(b, mean, kind, num_classes)
    exits = exits_at(b, conf, ok, stage, num_stages, threshold, alive)
    if stage < num_stages - 1:
        exits = b.op("And", [alive, exits], "exits")
    empty = b.op("Not", [b.op("Greater", [b.op("Squeeze", [total_2d, one_axis], "total"), zero])], "empty")
    mask_gate_outputs(b, mean, conf, empty, exits, ok, alive, stage, ins, outs)


def label_and_conf(b: _Builder, probs: str, conf: str, empty: str) -> tuple[str, str]:
    """(label, confidence) of exiting rows: argmax and ``conf``, or -1 and NaN where ``empty``."""
    tp = b.onnx.TensorProto
    argmax = b.op("Cast", [b.op("ArgMax", [probs], axis=1, keepdims=0)], "argmax", to=tp.INT32)
    label = b.op("Where", [empty, b.const(-1, tp.INT32, "minus1"), argmax], "label_exit")
    return label, b.op("Where", [empty, b.const(math.nan, tp.FLOAT, "nan"), conf], "conf_exit")


def mask_gate_outputs(b: _Builder, probs: str, conf: str, empty: str, exits: str, ok: str, alive: str, stage: int,
                      ins: dict[str, str], outs: dict[str, str]) -> None:
    """The state a mask-form gate stage writes (label, conf, exit stage, flag, alive, any_alive), by
    original index; ``exits`` is a subset of ``alive``. Shared by the plain and learned gates."""
    tp = b.onnx.TensorProto
    label_exit, conf_exit = label_and_conf(b, probs, conf, empty)
    b.op("Where", [exits, label_exit, ins["label"]], outputs=[outs["label_out"]])
    b.op("Where", [exits, conf_exit, ins["conf"]], outputs=[outs["conf_out"]])
    b.op("Where", [exits, b.const(int(stage), tp.INT32, "stage"), ins["exit_stage"]], outputs=[outs["exit_stage_out"]])
    flagged = b.op("And", [alive, b.op("Not", [ok])], "flagged")
    b.op("Where", [flagged, b.const(1, tp.INT32, "one_i"), ins["flag"]], outputs=[outs["flag_out"]])
    alive_out = b.op("Xor", [alive, exits], outputs=[outs["alive_out"]])
    still = b.reduce("ReduceSum", b.op("Cast", [alive_out], to=tp.FLOAT), 0, 0, "num_alive")
    b.op("Greater", [still, b.const(0.0, tp.FLOAT, "zero")], outputs=[outs["any_alive"]])


def append_mask_gate(
    model: Any,
    stage: int,
    num_stages: int,
    threshold: float,
    kind: str = "max_prob",
    *,
    logits: str | None = None,
    num_samples: int | str = "num_samples",
    prefix: str = "gate.",
) -> Any:
    """Return a copy of ``model`` with one *mask* gate stage after its (N, C) logits.

    The member runs on all N samples; ``alive`` [N] bool marks the samples still in the cascade
    and only their state changes, so every shape is static (for TensorRT and other runtimes that
    refuse data-dependent shapes). Inputs ``alive, prob_sum, label, conf, exit_stage, flag`` and
    outputs ``prob_sum_out ... flag_out, alive_out, any_alive`` (a bool scalar) after ``prefix``;
    the semantics are :func:`edge_committee.cascade.reference.gate_step` on the alive rows.
    Standard ops only (opset >= 13).
    """
    onnx = require("onnx")
    out, graph, logits, info, elem = _gated_copy(onnx, model, logits, stage, num_stages, kind)
    c_dim = _dim(info, 1) or "num_classes"
    opset = next((o.version for o in out.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset < MIN_OPSET:
        raise ValueError(f"the mask gate needs default-domain opset >= {MIN_OPSET}, the model has {opset}")
    ins = {k: prefix + k for k in MASK_GATE_INPUTS}
    outs = {k: prefix + k for k in MASK_GATE_OUTPUTS}
    tp, mk = onnx.TensorProto, onnx.helper.make_tensor_value_info
    types = {"alive": tp.BOOL, "prob_sum": tp.FLOAT, "label": tp.INT32, "conf": tp.FLOAT, "exit_stage": tp.INT32,
             "flag": tp.INT32}
    shape = {k: [num_samples, c_dim] if k == "prob_sum" else [num_samples] for k in types}
    graph.input.extend([mk(ins[k], types[k], shape[k]) for k in MASK_GATE_INPUTS])
    kept = [o for o in graph.output if o.name != logits]
    del graph.output[:]
    graph.output.extend(kept)
    graph.output.extend([mk(outs[k + "_out"], types[k], shape[k]) for k in MASK_GATE_INPUTS[1:] + ("alive",)])
    graph.output.append(mk(outs["any_alive"], tp.BOOL, []))
    b = _Builder(onnx, prefix, opset)
    _mask_gate(b, logits, elem == tp.FLOAT, stage, num_stages, threshold, kind,
               c_dim if isinstance(c_dim, int) else None, ins, outs)
    graph.node.extend(b.nodes)
    graph.initializer.extend(b.initializers)
    onnx.checker.check_model(out)
    return out
