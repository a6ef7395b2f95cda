"""The gate after each inlined member: the project's own ONNX gate (:mod:`edge_committee.gate.onnx_gate`).

Three ways, one per (form, gate) pair:

- ``compact`` + ``standard``: :func:`append_gate` in standard ops (Compress/ScatterND), for ONNX Runtime;
- ``compact`` + ``plugin``: :func:`append_gate` as the ``CascadeGate`` plugin node, for TensorRT;
- ``mask`` + ``standard``: :func:`append_mask_gate`, static shapes only (every stage on all rows).

The result is the stage: member + gate as one model whose gate inputs are still free graph inputs;
:func:`gate_wiring` says which state tensor feeds which of them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from edge_committee.export.cascade_onnx.errors import FusedExportError
from edge_committee.gate.onnx_gate import (
    GATE_INPUTS,
    GATE_OUTPUTS,
    MASK_GATE_INPUTS,
    MASK_GATE_OUTPUTS,
    append_gate,
    append_mask_gate,
)

FORMS = ("compact", "mask")
GATES = ("standard", "plugin")
#: the state every stage passes on (both gate forms), in this order
STATE = ("prob_sum", "label", "conf", "exit_stage", "flag")


def check_form(form: str, gate: str) -> None:
    """Raise :class:`FusedExportError` for an unknown or impossible form/gate pair."""
    if form not in FORMS:
        raise FusedExportError(f"form {form!r} is not known; use one of {', '.join(FORMS)}")
    if gate not in GATES:
        raise FusedExportError(f"gate {gate!r} is not known; use one of {', '.join(GATES)}")
    if form == "mask" and gate == "plugin":
        raise FusedExportError("the CascadeGate plugin compacts the survivors, so it cannot build the mask form; "
                               "use --gate standard with --form mask (its ops are all TensorRT-parsable)")


@dataclasses.dataclass
class GatedStage:
    """One member with its gate appended (names carry the stage prefix)."""

    model: Any  #: ModelProto: inputs = member input + gate inputs; outputs = gate outputs
    inputs: dict[str, str]  #: gate input key (``active``/``alive``, ``prob_sum`` ...) -> graph input name
    outputs: dict[str, str]  #: gate output key (``prob_sum_out`` ... ``survivors``/``alive_out``) -> name


def add_gate(member_model: Any, logits: str, stage: int, num_stages: int, threshold: float, kind: str,
             form: str, gate: str, prefix: str) -> GatedStage:
    """Append stage ``stage``'s gate to an inlined member; ``threshold`` is ignored at the last stage."""
    prefix = prefix + "gate."
    if form == "mask":
        model = append_mask_gate(member_model, stage, num_stages, threshold, kind, logits=logits,
                                 num_samples="N", prefix=prefix)
        return GatedStage(model, {k: prefix + k for k in MASK_GATE_INPUTS},
                          {k: prefix + k for k in MASK_GATE_OUTPUTS})
    model = append_gate(member_model, stage, num_stages, threshold, kind, logits=logits, num_samples="N",
                        use_plugin=gate == "plugin", prefix=prefix)
    return GatedStage(model, {k: prefix + k for k in GATE_INPUTS}, {k: prefix + k for k in GATE_OUTPUTS})


def state_out(stage: GatedStage) -> dict[str, str]:
    """The stage's updated state tensors, keyed like :data:`STATE`."""
    return {k: stage.outputs[k + "_out"] for k in STATE}


def survivors_out(stage: GatedStage, form: str) -> tuple[str, str]:
    """(who continues, is anyone left): survivors [S] int32 and num_survivors, or alive_out and any_alive."""
    if form == "mask":
        return stage.outputs["alive_out"], stage.outputs["any_alive"]
    return stage.outputs["survivors"], stage.outputs["num_survivors"]
