"""The gate of a learned committee in standard ONNX ops (both forms): :func:`.learned.learned_gate_step`.

Stage ``k`` of a learned cascade decides on its own combiner over members ``0..k``
(:class:`~edge_committee.cascade.learned.Combiner`, read from the bundle's ``combiner/stage<k>.onnx``)::

    lp_k   = Where(ok, LogSoftmax(Where(ok, x_k, 0)), 0)       # non-finite rows add nothing
    cnt_k  = cnt_{k-1} + ok                                    # stages with finite logits
    z      = ((b + w_0 * lp_0) + w_1 * lp_1) + ... + w_k * lp_k   # the reference's order of adds
    probs  = Where(cnt_k == 0, 0, Softmax(z))

then the confidence of ``probs``, the threshold, the exits, the labels (-1 and NaN where no stage
contributed) and the compaction exactly as the plain gate. ``prob_sum`` holds each sample's
*combined* probabilities at the last stage it ran (as :class:`LearnedGateState`), so the fused
file's final ``probs = prob_sum / round(row sum)`` divides by exactly 1 and returns them unchanged.

**What the state carries.** ``LearnedGateState`` keeps each member's log-probabilities of every
sample by original index. Here stage ``k`` writes ``lp_k`` as an (N, C) tensor by original index
(``lp_out``; ``ScatterND`` into zeros in the compact form, all N rows as they are in the mask form)
and the running count ``contributed_out`` (N,); stage ``j > k`` reads them from the enclosing scope
(its graph is nested in stage ``k``'s ``If`` branch) and gathers its active rows. They never leave
through an ``If``, so the five state tensors that do, and both branches' shapes, are those of the
plain cascade.

The ``CascadeGate`` plugin implements the plain average only, so a learned committee has no
``compact``/``plugin`` form: :func:`check_learned` refuses it and names the TensorRT form that
works (``mask``/``standard`` with ``--preprocess float32``, whose ops are all parser-supported).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edge_committee._lazy import require
from edge_committee.cascade.reference import check_confidence_name
from edge_committee.export.cascade_onnx.errors import FusedExportError
from edge_committee.gate.onnx_gate import (
    GATE_INPUTS,
    GATE_OUTPUTS,
    MASK_GATE_INPUTS,
    MASK_GATE_OUTPUTS,
    MIN_OPSET,
    _Builder,
    _confidence,
    _dim,
    _gated_copy,
    compact_gate_outputs,
    everyone_exits,
    exits_at,
    finite_rows,
    mask_gate_outputs,
)

#: the extra outputs of a learned stage that is not the last (read by the later stages)
LEARNED_OUTPUTS = ("lp_out", "contributed_out")


def check_learned(combiners: Sequence[Any], num_members: int, num_classes: int, gate: str) -> None:
    """Raise :class:`FusedExportError` unless ``combiners`` are stage ``k``'s prefix combiners (k+1 members, C)."""
    if gate == "plugin":
        raise FusedExportError("the CascadeGate plugin averages the members' probabilities, so it cannot run this "
                               "learned committee; for TensorRT export the mask form: --form mask --gate standard "
                               "--preprocess float32 (its ops are all TensorRT-parsable)")
    if len(combiners) != num_members:
        raise FusedExportError(f"a learned committee of {num_members} members needs one combiner per stage; "
                               f"got {len(combiners)}")
    for k, comb in enumerate(combiners):
        if comb.num_members != k + 1 or comb.num_classes != num_classes:
            raise FusedExportError(f"stage {k}'s combiner combines {comb.num_members} members and {comb.num_classes} "
                                   f"classes; expected {k + 1} members and {num_classes} classes")


def input_keys(stage: int, form: str) -> tuple[str, ...]:
    """The gate inputs of a learned stage: the plain gate's, then ``lp0..lp{k-1}`` and ``contributed``."""
    extra = tuple(f"lp{j}" for j in range(stage)) + (("contributed",) if stage else ())
    return (MASK_GATE_INPUTS if form == "mask" else GATE_INPUTS) + extra


def output_keys(stage: int, num_stages: int, form: str) -> tuple[str, ...]:
    """The gate outputs of a learned stage: the plain gate's, then ``lp_out``/``contributed_out`` but last."""
    extra = LEARNED_OUTPUTS if stage < num_stages - 1 else ()
    return (MASK_GATE_OUTPUTS if form == "mask" else GATE_OUTPUTS) + extra


def outer_wiring(stage: int, prefixes: Sequence[str]) -> dict[str, str]:
    """Stage ``stage``'s extra gate inputs -> the earlier stages' outputs they read (enclosing scope).

    ``prefixes[j]``: the gate prefix of stage ``j`` (``s<j>/gate.`` in the fused file).
    """
    mine = prefixes[stage]
    wiring = {mine + f"lp{j}": prefixes[j] + "lp_out" for j in range(stage)}
    if stage:
        wiring[mine + "contributed"] = prefixes[stage - 1] + "contributed_out"
    return wiring


# ---------------------------------------------------------------------------------------------- ops
def _finite_log_probs(b: _Builder, x: str) -> tuple[str, str]:
    """(ok [M] bool, log-probabilities [M,C] with non-finite rows 0): ``learned.log_probs`` in ONNX."""
    tp = b.onnx.TensorProto
    zero = b.const(0.0, tp.FLOAT, "zero")
    ok2, ok = finite_rows(b, x)
    lp = b.op("LogSoftmax", [b.op("Where", [ok2, x, zero], "logits_finite")], "log_probs_all", axis=1)
    return ok, b.op("Where", [ok2, lp, zero], "log_probs")


def _combine(b: _Builder, combiner: Any, rows: Sequence[str], count: str) -> tuple[str, str]:
    """(stage probabilities [M,C], empty [M]): Softmax(b + sum w_m * rows[m]) in the reference's order, 0 where
    no stage contributed (count == 0)."""
    tp = b.onnx.TensorProto
    z = b.const(combiner.bias.tolist(), tp.FLOAT, "bias", [combiner.num_classes])
    for m, lp in enumerate(rows):
        w = b.const(combiner.weights[m].tolist(), tp.FLOAT, f"weight{m}", [combiner.num_classes])
        z = b.op("Add", [z, b.op("Mul", [w, lp], f"term{m}")], f"z{m}")
    probs = b.op("Softmax", [z], "combined", axis=1)
    empty = b.op("Equal", [count, b.const(0.0, tp.FLOAT, "zero")], "empty")
    empty2 = b.op("Unsqueeze", [empty, b.const([1], tp.INT64, "axis1", [1])], "empty_2d")
    return b.op("Where", [empty2, b.const(0.0, tp.FLOAT, "zero"), probs], "probs"), empty


def _compact_learned_gate(b: _Builder, x: str, stage: int, num_stages: int, threshold: float, kind: str,
                          combiner: Any, ins: dict[str, str], outs: dict[str, str]) -> None:
    """``learned_gate_step`` on the M active rows, state by original index (Compress/ScatterND)."""
    tp = b.onnx.TensorProto
    active = ins["active"]
    one_axis = b.const([1], tp.INT64, "axis1", [1])
    index = b.op("Unsqueeze", [b.op("Cast", [active], to=tp.INT64), one_axis], "scatter_index")  # [M, 1]
    ok, lp = _finite_log_probs(b, x)
    okf = b.op("Cast", [ok], "ok_f", to=tp.FLOAT)
    count = okf if stage == 0 else b.op("Add", [b.op("Gather", [ins["contributed"], active], "count_before", axis=0),
                                                okf], "count")
    rows = [b.op("Gather", [ins[f"lp{j}"], active], f"lp{j}_rows", axis=0) for j in range(stage)] + [lp]
    probs, empty = _combine(b, combiner, rows, count)
    b.op("ScatterND", [ins["prob_sum"], index, probs], outputs=[outs["prob_sum_out"]])
    conf = _confidence(b, probs, kind, combiner.num_classes)
    everyone = everyone_exits(b, active) if stage == num_stages - 1 else None
    exits = exits_at(b, conf, ok, stage, num_stages, threshold, everyone)
    compact_gate_outputs(b, probs, conf, empty, exits, ok, active, index, stage, ins, outs)
    if stage < num_stages - 1:  # what the later stages read, by original index
        zeros = b.op("ConstantOfShape", [b.op("Shape", [ins["prob_sum"]], "nc")], "zeros_nc",
                     value=b.onnx.helper.make_tensor("zero", tp.FLOAT, [1], [0.0]))
        b.op("ScatterND", [zeros, index, lp], outputs=[outs["lp_out"]])
        before = ins["contributed"] if stage else b.op(
            "ConstantOfShape", [b.op("Shape", [ins["conf"]], "n")], "zeros_n",
            value=b.onnx.helper.make_tensor("zero", tp.FLOAT, [1], [0.0]))
        b.op("ScatterND", [before, index, count], outputs=[outs["contributed_out"]])


def _mask_learned_gate(b: _Builder, x: str, stage: int, num_stages: int, threshold: float, kind: str,
                       combiner: Any, ins: dict[str, str], outs: dict[str, str]) -> None:
    """``learned_gate_step`` on all N rows, updating only the ``alive`` ones (static shapes, no ScatterND)."""
    tp = b.onnx.TensorProto
    alive = ins["alive"]
    one_axis = b.const([1], tp.INT64, "axis1", [1])
    ok, lp = _finite_log_probs(b, x)
    okf = b.op("Cast", [ok], "ok_f", to=tp.FLOAT)
    # rows that are not alive compute values nobody reads: a later stage's alive rows are alive here
    count = okf if stage == 0 else b.op("Add", [ins["contributed"], okf], "count")
    probs, empty = _combine(b, combiner, [ins[f"lp{j}"] for j in range(stage)] + [lp], count)
    alive2 = b.op("Unsqueeze", [alive, one_axis], "alive_2d")
    b.op("Where", [alive2, probs, ins["prob_sum"]], outputs=[outs["prob_sum_out"]])
    conf = _confidence(b, probs, kind, combiner.num_classes)
    exits = exits_at(b, conf, ok, stage, num_stages, threshold, alive)
    if stage < num_stages - 1:
        exits = b.op("And", [alive, exits], "exits")
    mask_gate_outputs(b, probs, conf, empty, exits, ok, alive, stage, ins, outs)
    if stage < num_stages - 1:
        b.op("Identity", [lp], outputs=[outs["lp_out"]])
        b.op("Identity", [count], outputs=[outs["contributed_out"]])


# ---------------------------------------------------------------------------------------------- model
def append_learned_gate(
    model: Any,
    stage: int,
    num_stages: int,
    threshold: float,
    kind: str,
    combiner: Any,
    *,
    logits: str,
    form: str = "compact",
    num_samples: int | str = "N",
    prefix: str = "gate.",
) -> Any:
    """A copy of ``model`` with stage ``stage``'s learned gate after its ``logits`` (float32/16, (M, C)).

    Inputs and outputs after ``prefix``: those of :func:`input_keys` and :func:`output_keys`
    (the plain gate's of the same form, plus the log-probabilities and contribution counts of the
    earlier stages, (N, C) and (N,) float32 by original index). ``combiner``: stage ``stage``'s
    :class:`~edge_committee.cascade.learned.Combiner` (``stage + 1`` members). Standard ops only
    (opset >= 13); the result passes ``onnx.checker.check_model``.
    """
    onnx = require("onnx")
    check_confidence_name(kind)
    if not 0 <= stage < num_stages or combiner.num_members != stage + 1:
        raise ValueError(f"stage {stage} of {num_stages} needs a combiner of {stage + 1} members; "
                         f"got {combiner.num_members}")
    out, graph, logits, info, elem = _gated_copy(onnx, model, logits, stage, num_stages, kind)
    opset = next((o.version for o in out.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset < MIN_OPSET:
        raise ValueError(f"the learned gate needs default-domain opset >= {MIN_OPSET}, the model has {opset}")
    c = combiner.num_classes
    m_dim = (_dim(info, 0) or "num_active") if form == "compact" else num_samples
    ins = {k: prefix + k for k in input_keys(stage, form)}
    outs = {k: prefix + k for k in output_keys(stage, num_stages, form)}
    tp, mk = onnx.TensorProto, onnx.helper.make_tensor_value_info
    types = {"active": (tp.INT32, [m_dim]), "alive": (tp.BOOL, [num_samples]), "prob_sum": (tp.FLOAT, [num_samples, c]),
             "label": (tp.INT32, [num_samples]), "conf": (tp.FLOAT, [num_samples]),
             "exit_stage": (tp.INT32, [num_samples]), "flag": (tp.INT32, [num_samples]),
             "contributed": (tp.FLOAT, [num_samples]), "lp": (tp.FLOAT, [num_samples, c]),
             "survivors": (tp.INT32, [prefix + "num_survivors"]), "num_survivors": (tp.INT32, []),
             "any_alive": (tp.BOOL, [])}

    def info_of(key: str, name: str) -> Any:
        base = key.removesuffix("_out")
        base = "lp" if base.startswith("lp") else base
        dtype, shape = types[base]
        return mk(name, dtype, shape)

    graph.input.extend([info_of(k, n) for k, n in ins.items()])
    kept = [o for o in graph.output if o.name != logits]
    del graph.output[:]
    graph.output.extend(kept + [info_of(k, n) for k, n in outs.items()])
    b = _Builder(onnx, prefix, opset)
    x = logits if elem == tp.FLOAT else b.op("Cast", [logits], "logits_f32", to=tp.FLOAT)
    build = _mask_learned_gate if form == "mask" else _compact_learned_gate
    build(b, x, stage, num_stages, threshold, kind, combiner, ins, outs)
    graph.node.extend(b.nodes)
    graph.initializer.extend(b.initializers)
    onnx.checker.check_model(out)
    return out

