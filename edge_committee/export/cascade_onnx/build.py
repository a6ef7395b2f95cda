"""The whole cascade as one ONNX graph: preprocessing, members, gates, survivors and early exit.

::

    images uint8 (N, H, W, C) -> Cast -> initial state -> If(N > 0)
      then: [Gather survivors] -> preprocess_0 -> member_0 -> gate_0 -> If(anyone survives)
              then: Gather survivors -> preprocess_1 -> member_1 -> gate_1 -> If(...) ...
              else: the state as it is
      else: the initial state
    -> labels (N,) int32, confidence (N,) float32, exit_stage (N,) int32, flags (N,) int32, probs (N, C) float32

The state (running probability sum, label, confidence, exit stage, flag) is indexed by the
original sample, so both branches of every ``If`` return the same shapes (TensorRT needs equal
ranks, in practice equal shapes). ``compact`` runs member k+1 on the gathered survivors only;
``mask`` runs it on all rows and lets an ``alive`` mask decide whose state changes (static shapes).
Nothing of member k+1 runs when no sample survives stage k. An ensemble is the degenerate cascade
whose thresholds never let a sample exit early.

A clip cascade (a video bundle, ``views``) takes ``clips`` uint8 (N, T, H, W, C) instead: each stage
gathers its member's view (the frames of :meth:`~edge_committee.cascade.clips.ClipView.indices` for
``T``, fixed at export), preprocesses them as (n * frames, H, W, C) images and stacks them as the
member's (n, C, frames, H', W') input; the rest is the same graph.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Sequence

import numpy as np

from edge_committee._lazy import require
from edge_committee.export.cascade_onnx._graph import GraphBuilder, rename_inputs
from edge_committee.export.cascade_onnx.errors import FusedExportError
from edge_committee.export.cascade_onnx.gate import STATE, GatedStage, add_gate, check_form, state_out, survivors_out
from edge_committee.export.cascade_onnx.inline import MemberSource, default_opset, inline_member, read_member
from edge_committee.preprocess.onnx_ops import add_preprocessing, check_plan, check_precision, output_shape

#: names of the fused file's input (a clip cascade's: CLIPS) and outputs
INPUT = "images"
CLIPS = "clips"
OUTPUTS = ("labels", "confidence", "exit_stage", "flags", "probs")
#: lowest default-domain opset of a fused file (the standard gate's minimum)
MIN_OPSET = 13
#: metadata_props keys
META_PREFIX = "edge_committee."
#: the largest ONNX file without external data (protobuf's limit)
PROTOBUF_LIMIT = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class CascadeDef:
    """The committee a fused file encodes: members in order, K-1 thresholds, confidence function.

    ``combiners``: a learned committee's stage combiners (:class:`~edge_committee.cascade.learned.Combiner`,
    stage ``k`` over members ``0..k``); empty for the average.
    """

    members: tuple[str, ...]
    thresholds: tuple[float, ...]
    confidence: str = "max_prob"
    kind: str = "cascade"  #: ``cascade`` or ``ensemble`` (thresholds that never exit early), ``learned_...``
    combiners: tuple = dataclasses.field(default=(), compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", tuple(self.members))
        object.__setattr__(self, "combiners", tuple(self.combiners or ()))
        object.__setattr__(self, "thresholds", tuple(float(t) for t in self.thresholds))
        if not self.members:
            raise FusedExportError("the committee has no members")
        if len(self.thresholds) != len(self.members) - 1:
            raise FusedExportError(f"{len(self.members)} members need {len(self.members) - 1} thresholds "
                                   f"(one per stage but the last); got {len(self.thresholds)}")

    def to_dict(self) -> dict:
        out = {"kind": self.kind, "members": list(self.members), "thresholds": list(self.thresholds),
               "confidence": self.confidence}
        if self.combiners:
            from edge_committee.cascade.learned import FORM

            out["combiner"] = FORM
        return out


@dataclasses.dataclass(frozen=True)
class Source:
    """The raw images the fused file takes: uint8 (N, height, width, channels)."""

    height: int
    width: int
    channels: int

    def __post_init__(self) -> None:
        if self.height <= 0 or self.width <= 0 or self.channels not in (1, 3):
            raise FusedExportError(f"source size {self.height}x{self.width}x{self.channels} is not valid; "
                                   "height and width must be positive and channels 1 or 3")

    def __str__(self) -> str:
        return f"{self.height}x{self.width}x{self.channels}"


@dataclasses.dataclass
class _Stage:
    plan: Any
    member_input: str
    input_dtype: int
    gated: GatedStage
    view: np.ndarray | None = None  #: a clip cascade: the member's frame indices into the clip


@dataclasses.dataclass
class _Context:
    """What every stage's builder needs: the stages, the images tensor, the form."""

    stages: list[_Stage]
    images: str
    form: str
    num_classes: int
    tp: Any
    preprocess: str = "exact"
    clip_frames: int | None = None  #: a clip cascade: frames per clip (the input's T)


# ---------------------------------------------------------------------------------------------- stages
def _prepare_stages(members: Sequence[MemberSource], cascade: CascadeDef, source: Source, num_classes: int,
                    form: str, gate: str, preprocess: str, opset: int, models: list, views: Sequence | None = None,
                    clip_frames: int | None = None) -> list[_Stage]:
    stages, k_total = [], len(members)
    for k, (src, model) in enumerate(zip(members, models)):
        plan = src.preprocessing.plan((source.height, source.width), source.channels)
        check_plan(plan, src.name, form, gate, preprocess)
        expect, view = output_shape(plan), None
        if views is not None:  # a clip member takes (n, C, frames, H', W')
            if plan.layout != "NCHW":
                raise FusedExportError(f"member {src.name!r}: a video member's frames are stacked as (N, C, T, H, W); "
                                       "its preprocessing must have layout NCHW")
            view = views[k].indices(clip_frames).astype(np.int64)
            expect = (expect[0], len(view), *expect[1:])
        # the member under s<k>/member/, its gate under s<k>/gate., the glue under s<k>/: no name can collide
        inl = inline_member(src, model, f"s{k}/member/", opset, expect, num_classes)
        threshold = cascade.thresholds[k] if k < k_total - 1 else math.inf
        combiner = cascade.combiners[k] if cascade.combiners else None
        gated = add_gate(inl.model, inl.logits, k, k_total, threshold, cascade.confidence, form, gate, f"s{k}/",
                         combiner, tuple(f"s{j}/" for j in range(k_total)))
        stages.append(_Stage(plan, inl.input, inl.input_dtype, gated, view))
    return stages


def _state_infos(ctx: _Context, names: dict[str, str]) -> list:
    """Value infos of the five state tensors under ``names``."""
    mk, tp = require("onnx").helper.make_tensor_value_info, ctx.tp
    types = {"prob_sum": tp.FLOAT, "label": tp.INT32, "conf": tp.FLOAT, "exit_stage": tp.INT32, "flag": tp.INT32}
    return [mk(names[k], types[k], ["N", ctx.num_classes] if k == "prob_sum" else ["N"]) for k in STATE]


def _if(g: GraphBuilder, ctx: _Context, cond: str, then_graph: Any, else_graph: Any, hint: str,
        names: dict[str, str] | None = None) -> dict[str, str]:
    """An If node returning the state; its outputs are ``names`` or ``<prefix><hint>.<state>``."""
    outs = names or {k: f"{g.prefix}{hint}.{k}" for k in STATE}
    g.op("If", [cond], outputs=[outs[k] for k in STATE], then_branch=then_graph, else_branch=else_graph)
    return outs


def _skip_graph(ctx: _Context, k: int, state: dict[str, str]) -> Any:
    """The branch taken when nobody reaches stage ``k``: the state unchanged."""
    g = GraphBuilder(f"skip{k}/")
    outs = {s: f"skip{k}/{s}" for s in STATE}
    for s in STATE:
        g.op("Identity", [state[s]], outputs=[outs[s]])
    return g.graph(f"skip_stage{k}", [], _state_infos(ctx, outs))


def _stage_graph(ctx: _Context, k: int, who: str, state: dict[str, str]) -> Any:
    """Stage ``k`` and everything after it, as the then-branch of ``If(anyone reaches stage k)``.

    ``who``: the samples that reach it (``active`` indices for compact, the ``alive`` mask for mask).
    """
    st = ctx.stages[k]
    g = GraphBuilder(f"s{k}/")
    x = ctx.images
    if ctx.form == "compact" and k > 0:
        x = g.op("Gather", [x, who], "survivor_images", axis=0)
    if st.view is None:
        add_preprocessing(g, st.plan, x, st.member_input, st.input_dtype, ctx.preprocess)
    else:
        _add_view(g, ctx, st, x)
    wiring = {st.gated.inputs["alive" if ctx.form == "mask" else "active"]: who}
    wiring.update({st.gated.inputs[s]: state[s] for s in STATE})
    wiring.update(st.gated.outer)  # a learned gate's reads of earlier stages (enclosing scope)
    nodes = list(st.gated.model.graph.node)
    rename_inputs(nodes, wiring)
    g.nodes.extend(nodes)
    g.initializers.extend(st.gated.model.graph.initializer)
    new_state = state_out(st.gated)
    if k < len(ctx.stages) - 1:
        next_who, more = survivors_out(st.gated, ctx.form)
        if ctx.form == "compact":
            more = g.op("Greater", [more, g.const(np.int32(0), "zero")], "anyone_survives")
        new_state = _if(g, ctx, more, _stage_graph(ctx, k + 1, next_who, new_state),
                        _skip_graph(ctx, k + 1, new_state), "after")
    return g.graph(f"stage{k}", [], _state_infos(ctx, new_state))


def _add_view(g: GraphBuilder, ctx: _Context, st: _Stage, clips: str) -> None:
    """A clip member's input from float clips (n, T, H, W, C): its view's frames, each preprocessed as an image,
    stacked as (n, C', frames, H', W') (what :func:`edge_committee.cascade.clips.clip_input` makes)."""
    frames = g.op("Gather", [clips, g.const(st.view, "view")], "view_frames", axis=1)  # (n, F, H, W, C)
    hwc = g.op("Slice", [g.op("Shape", [frames], "clip_shape"), g.const(np.array([2], np.int64), "from"),
                         g.const(np.array([5], np.int64), "to")], "hwc")
    flat = g.op("Reshape", [frames, g.op("Concat", [g.const(np.array([-1], np.int64), "all"), hwc], "flat_shape",
                                         axis=0)], "view_images")  # (n * F, H, W, C)
    pre = g.name("view_input")
    add_preprocessing(g, st.plan, flat, pre, st.input_dtype, ctx.preprocess)  # (n * F, C', H', W')
    c, h, w = output_shape(st.plan)
    stacked = g.op("Reshape", [pre, g.const(np.array([-1, len(st.view), c, h, w], np.int64), "stack_shape")],
                   "view_stacked")
    g.op("Transpose", [stacked], outputs=[st.member_input], perm=[0, 2, 1, 3, 4])


# ---------------------------------------------------------------------------------------------- main graph
def _initial_state(g: GraphBuilder, ctx: _Context, images: str) -> tuple[str, dict[str, str]]:
    """(who enters stage 0, the state before stage 0), for N = the batch size of ``images``."""
    helper, tp = g.onnx.helper, ctx.tp
    n = g.op("Shape", [images], "n", start=0, end=1)  # [1] int64

    def filled(shape: str, dtype: int, value: Any, hint: str) -> str:
        return g.op("ConstantOfShape", [shape], hint, value=helper.make_tensor(hint, dtype, [1], [value]))

    nc = g.op("Concat", [n, g.const(np.array([ctx.num_classes], np.int64), "classes")], "n_classes", axis=0)
    minus1 = filled(n, tp.INT32, -1, "minus1")  # label and exit_stage start as -1
    state = {"prob_sum": filled(nc, tp.FLOAT, 0.0, "prob_sum0"), "label": minus1,
             "conf": filled(n, tp.FLOAT, math.nan, "conf0"), "exit_stage": minus1,
             "flag": filled(n, tp.INT32, 0, "flag0")}
    if ctx.form == "mask":
        return filled(n, tp.BOOL, True, "alive0"), state
    count = g.op("Cast", [g.op("Squeeze", [n, g.const(np.array([0], np.int64), "axis0")], "n_scalar")],
                 "n_i32", to=tp.INT32)
    active = g.op("Range", [g.const(np.int32(0), "start"), count, g.const(np.int32(1), "delta")], "active0")
    return active, state


#: the final state's names: the file's outputs, except the running sum that ``probs`` is made from
_FINAL = dict(zip(STATE, ("prob_sum", *OUTPUTS[:4])))


def _outputs(g: GraphBuilder, ctx: _Context, final: dict[str, str]) -> list:
    """The file's outputs: the final state and ``probs``, the mean over the stages that contributed.

    As :func:`edge_committee.cascade.reference.contributions`: each contributing stage added a
    softmax row summing to 1, so the rounded row sum (at least 1) is their number. A learned
    committee's ``prob_sum`` holds its combination (row sum 1, or 0): divided by exactly 1.
    """
    tp, mk = ctx.tp, g.onnx.helper.make_tensor_value_info
    total = g.op("ReduceSum", [final["prob_sum"], g.const(np.array([1], np.int64), "axis1")], "total", keepdims=1)
    count = g.op("Max", [g.op("Round", [total], "total_rounded"), g.const(np.float32(1.0), "one")], "contributions")
    g.op("Div", [final["prob_sum"], count], outputs=["probs"])
    return [mk("labels", tp.INT32, ["N"]), mk("confidence", tp.FLOAT, ["N"]), mk("exit_stage", tp.INT32, ["N"]),
            mk("flags", tp.INT32, ["N"]), mk("probs", tp.FLOAT, ["N", ctx.num_classes])]


def _main_graph(ctx: _Context, source: Source) -> Any:
    g = GraphBuilder("main/")
    tp = ctx.tp
    name, clip = (INPUT, []) if ctx.clip_frames is None else (CLIPS, [ctx.clip_frames])
    images_in = g.onnx.helper.make_tensor_value_info(name, tp.UINT8, ["N", *clip, source.height, source.width,
                                                                     source.channels])
    # uint8 is only a network input type in TensorRT: cast once, gather float rows later
    g.op("Cast", [name], outputs=[ctx.images], to=tp.FLOAT)
    who, state = _initial_state(g, ctx, ctx.images)
    nonempty = g.op("Greater", [g.op("Size", [ctx.images], "num_pixels"), g.const(np.int64(0), "zero")], "nonempty")
    final = _if(g, ctx, nonempty, _stage_graph(ctx, 0, who, state), _skip_graph(ctx, 0, state), "cascade",
                names=_FINAL)
    outputs = _outputs(g, ctx, final)
    return g.graph("edge_committee_cascade", [images_in], outputs)


# ---------------------------------------------------------------------------------------------- model
def _opset_imports(stages: list[_Stage], opset: int) -> list:
    helper = require("onnx").helper
    versions: dict[str, int] = {"": opset}
    for st in stages:
        for o in st.gated.model.opset_import:
            domain = "" if o.domain == "ai.onnx" else o.domain
            if domain and versions.setdefault(domain, o.version) != o.version:
                raise FusedExportError(f"members import domain {domain!r} at versions {versions[domain]} and "
                                       f"{o.version}; re-export them at one version")
    return [helper.make_opsetid(d, v) for d, v in versions.items()]


def cascade_opset(models: Sequence[Any]) -> int:
    """The fused file's default-domain opset: the highest of the members' (and at least MIN_OPSET)."""
    return max([MIN_OPSET] + [default_opset(m) or MIN_OPSET for m in models])


def build_cascade_model(
    members: Sequence[MemberSource],
    cascade: CascadeDef,
    source: Source,
    num_classes: int,
    *,
    form: str = "compact",
    gate: str = "standard",
    preprocess: str = "exact",
    metadata: dict[str, Any] | None = None,
    views: Sequence[Any] | None = None,
    clip_frames: int | None = None,
) -> Any:
    """The fused cascade as a ModelProto (checked with ``onnx.checker``, full check).

    Args:
        members: one :class:`MemberSource` per cascade stage, in order.
        cascade: members, thresholds and confidence function.
        source: the raw image size the file takes (fixed; see docs/fused_onnx.md).
        num_classes: C, the number of labels.
        form: ``compact`` (survivors gathered) or ``mask`` (static shapes).
        gate: ``standard`` (any ONNX runtime) or ``plugin`` (the TensorRT ``CascadeGate`` node).
        preprocess: ``exact`` (plans that round between steps run in float64, bit-exact; not for
            TensorRT) or ``float32`` (everything in float32); see :mod:`.preprocess`.
        metadata: extra metadata_props (values that are not strings are stored as JSON).
        views, clip_frames: a clip cascade (a video bundle): each member's
            :class:`~edge_committee.cascade.clips.ClipView` and the frames per clip; the file then takes
            ``clips`` uint8 (N, clip_frames, H, W, C).
    """
    onnx = require("onnx")
    check_form(form, gate)
    check_precision(preprocess)
    if [m.name for m in members] != list(cascade.members):
        raise FusedExportError(f"members {[m.name for m in members]} do not match the cascade {list(cascade.members)}")
    if cascade.combiners:
        from edge_committee.export.cascade_onnx.learned_gate import check_learned

        check_learned(cascade.combiners, len(members), num_classes, gate)
    models = [read_member(m) for m in members]
    opset = cascade_opset(models)
    if views is not None and (len(views) != len(members) or not clip_frames or clip_frames < 1):
        raise FusedExportError(f"a clip cascade needs one view per member and clip_frames >= 1; got {len(views)} views "
                               f"for {len(members)} members, clip_frames {clip_frames}")
    stages = _prepare_stages(members, cascade, source, num_classes, form, gate, preprocess, opset, models, views,
                             clip_frames)
    ctx = _Context(stages, "images_f32", form, num_classes, onnx.TensorProto, preprocess,
                   clip_frames if views is not None else None)
    opsets = _opset_imports(stages, opset)
    min_ir = onnx.helper.find_min_ir_version_for(opsets, ignore_unknown=True)  # (the plugin domain is unknown)
    ir_version = max([min_ir] + [m.ir_version for m in models])
    model = onnx.helper.make_model(_main_graph(ctx, source), opset_imports=opsets, ir_version=ir_version,
                                   producer_name="edge_committee", doc_string=_doc(cascade, source, form, gate,
                                                                                   ctx.clip_frames))
    props = {"cascade": cascade.to_dict(), "source": dataclasses.asdict(source), "form": form, "gate": gate,
             "preprocess": preprocess, "outputs": list(OUTPUTS), **(metadata or {})}
    if ctx.clip_frames is not None:  # what a loader needs to feed it: the clip length and each member's view
        props.update(input=CLIPS, clip_frames=ctx.clip_frames, views=[v.to_dict() for v in views])
    onnx.helper.set_model_props(model, {META_PREFIX + k: v if isinstance(v, str) else json.dumps(v)
                                        for k, v in props.items()})
    if model.ByteSize() >= PROTOBUF_LIMIT:
        raise FusedExportError(f"the fused cascade is {model.ByteSize() / 2**30:.1f} GB, over the 2 GB limit of one "
                               "ONNX file; fuse fewer or smaller members")
    onnx.checker.check_model(model, full_check=True)
    return model


def _doc(cascade: CascadeDef, source: Source, form: str, gate: str, clip_frames: int | None = None) -> str:
    probs = ("the stage's learned combination at the exit stage" if cascade.combiners
             else "mean probabilities at the exit stage")
    what = (f"Input 'images': uint8 (N, {source.height}, {source.width}, {source.channels})" if clip_frames is None else
            f"Input 'clips': uint8 (N, {clip_frames}, {source.height}, {source.width}, {source.channels}), one row "
            "per clip")
    return (f"edge_committee {cascade.kind} {' -> '.join(cascade.members)} (thresholds {list(cascade.thresholds)}, "
            f"{cascade.confidence}), {form} form, {gate} gate. {what}. "
            "Outputs: labels (N,) int32 (-1: no member gave finite logits), "
            "confidence (N,) float32, exit_stage (N,) int32, flags (N,) int32 (1: a member gave non-finite "
            f"logits), probs (N, C) float32 ({probs}).")


def read_metadata(model_or_props: Any) -> dict[str, Any]:
    """The ``edge_committee.*`` metadata_props of a fused file (JSON values decoded), keys unprefixed."""
    props = getattr(model_or_props, "metadata_props", None)
    items = {p.key: p.value for p in props} if props is not None else dict(model_or_props)
    out = {}
    for key, value in items.items():
        if key.startswith(META_PREFIX):
            try:
                out[key[len(META_PREFIX):]] = json.loads(value)
            except ValueError:
                out[key[len(META_PREFIX):]] = value
    return out
