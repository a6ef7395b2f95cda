"""A segmentation bundle's tile cascade as one ONNX graph (``export-onnx`` on ``task: segmentation``).

::

    images uint8 (N, Hs, Ws, C) -> Cast -> preprocess_k (once per distinct preprocessing)
    -> member_0 on the frames -> resize to (H, W) -> split into tiles -> gate_0 (every tile)
    -> If(a tile is still active): windows of every tile (reflect pad, constant gathers), Gather the
         active ones -> member_1 -> resize to the window -> centre -> gate_1 (ScatterND into the state)
    -> If(...) member_2 ...                      (one If per later stage; nothing runs when no tile is left)
    -> class_map (N, H, W) int32, probs (N, C, H, W), histogram (N, C) int64 (pixels per class),
       tile_confidence (N, T), tile_exit_stage (N, T) int32, tile_flags (N, T) int32, tiles_deferred (N, 1) int32

The state is indexed by flat tile ``n * T + t`` (the reference's order) and holds the running
probability sum, the stages that contributed, the flag, the exit stage and the confidence at exit:
the same semantics as :func:`edge_committee.cascade.tiles.tile_gate_step` (non-finite logits: no
contribution, no early exit, flagged; ``conf >= t`` exits; the last stage exits every tile). The tile
confidence is ``mean_max_prob`` (its mean taken in float64, as the reference does). The compact form
only: later members run on the gathered windows of the active tiles.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from edge_committee._lazy import require
from edge_committee.cascade.tiles import TileGrid
from edge_committee.export.cascade_onnx._graph import GraphBuilder, rename_inputs
from edge_committee.export.cascade_onnx.errors import FusedExportError
from edge_committee.export.cascade_onnx.inline import MemberSource, default_opset, inline_member, read_member
from edge_committee.preprocess.onnx_ops import add_preprocessing, check_plan, check_precision

INPUT = "images"
#: the BLS model's outputs, in its order (:mod:`edge_committee.serve.triton.tasks`), so Triton serves either alike
OUTPUTS = ("class_map", "probs", "histogram", "tile_confidence", "tile_exit_stage", "tile_flags", "tiles_deferred")
STATE = ("sum", "count", "flag", "exit_stage", "conf", "active")
MIN_OPSET = 13


class _Tiles:
    """Graph-building helpers that depend on the opset (Reduce* take ``axes`` as an input from 18)."""

    def __init__(self, g: GraphBuilder, opset: int) -> None:
        self.g, self.opset, self.tp = g, opset, require("onnx").TensorProto

    def reduce(self, op: str, x: str, axes: Sequence[int], keepdims: int = 0) -> str:
        if self.opset >= 18 or (op == "ReduceSum" and self.opset >= 13):
            return self.g.op(op, [x, self.g.const(np.array(axes, np.int64), "axes")], keepdims=keepdims)
        return self.g.op(op, [x], axes=list(axes), keepdims=keepdims)

    def i64(self, values, hint: str = "c") -> str:
        return self.g.const(np.asarray(values, np.int64), hint)

    def finite_tiles(self, logits: str) -> tuple[str, str]:
        """(logits with non-finite values zeroed, (M,) bool: every value of the tile finite)."""
        g = self.g
        bad = g.op("Or", [g.op("IsNaN", [logits]), g.op("IsInf", [logits])])
        ok = g.op("Not", [g.op("Cast", [self.reduce("ReduceMax", g.op("Cast", [bad], to=self.tp.INT32), [1, 2, 3])],
                                      to=self.tp.BOOL)])
        return g.op("Where", [bad, g.const(np.float32(0), "zero"), logits]), ok

    def confidence(self, mean: str) -> str:
        """``mean_max_prob``: the tile mean (in float64) of the per-pixel largest probability -> (M,) float32."""
        g = self.g
        best = g.op("Cast", [self.reduce("ReduceMax", mean, [1])], to=self.tp.DOUBLE)
        return g.op("Cast", [self.reduce("ReduceMean", best, [1, 2])], to=self.tp.FLOAT)


def _inline(k: int, src: MemberSource, num_classes: int, opset: int, model: Any):
    return inline_member(src, model, f"s{k}/member/", opset, (0, 0, 0), num_classes, dense=True)


def _output_size(src: MemberSource, size: tuple[int, int], channels: int) -> tuple[int, int]:
    """The member's logits size on an input of ``size`` (ONNX Runtime, once at export)."""
    ort = require("onnxruntime")
    sess = ort.InferenceSession(str(src.path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    dtype = np.float16 if "float16" in inp.type else np.float32
    out = sess.run([sess.get_outputs()[0].name], {inp.name: np.zeros((1, channels, *size), dtype)})[0]
    return int(out.shape[2]), int(out.shape[3])


def _member_logits(g: GraphBuilder, t: _Tiles, inl, x: str, out_size: tuple[int, int], size: tuple[int, int],
                   wiring_dtype: int) -> str:
    """Member ``inl`` on ``x`` (float32 member input): float32 logits resized to ``size`` (half-pixel bilinear)."""
    if wiring_dtype != t.tp.FLOAT:
        x = g.op("Cast", [x], to=wiring_dtype)
    nodes = list(inl.model.graph.node)
    rename_inputs(nodes, {inl.input: x})
    g.nodes.extend(nodes)
    g.initializers.extend(inl.model.graph.initializer)
    logits = g.op("Cast", [inl.logits], "logits", to=t.tp.FLOAT)
    if tuple(out_size) == tuple(size):
        return logits
    nc = g.op("Slice", [g.op("Shape", [logits]), t.i64([0]), t.i64([2])], "nc")
    sizes = g.op("Concat", [nc, t.i64(list(size), "hw")], "sizes", axis=0)
    return g.op("Resize", [logits, "", "", sizes], "resized", mode="linear",
                coordinate_transformation_mode="half_pixel")


def _split(g: GraphBuilder, t: _Tiles, dense: str, c: int, grid: TileGrid, shape: tuple[int, int]) -> str:
    """(N, C, H, W) -> (N * T, C, th, tw), row-major tiles (:meth:`TileGrid.split`)."""
    (th, tw), (r, q) = grid.tile, shape
    x = g.op("Reshape", [dense, t.i64([-1, c, r, th, q, tw])])
    x = g.op("Transpose", [x], perm=[0, 2, 4, 1, 3, 5])
    return g.op("Reshape", [x, t.i64([-1, c, th, tw])], "tiles")


def _merge(g: GraphBuilder, t: _Tiles, tiles: str, c: int, grid: TileGrid, shape: tuple[int, int], out: str) -> str:
    """Inverse of :func:`_split`: (N * T, C, th, tw) -> (N, C, H, W)."""
    (th, tw), (r, q) = grid.tile, shape
    x = g.op("Reshape", [tiles, t.i64([-1, r, q, c, th, tw])])
    x = g.op("Transpose", [x], perm=[0, 3, 1, 4, 2, 5])
    return g.op("Reshape", [x, t.i64([-1, c, r * th, q * tw])], outputs=[out])


def _windows(g: GraphBuilder, t: _Tiles, x: str, grid: TileGrid, shape: tuple[int, int], ch: int) -> str:
    """Every tile's window (reflect-padded by the margin): (N, Ch, H, W) -> (N * T, Ch, wh, ww)."""
    (th, tw), (r, q), m = grid.tile, shape, grid.margin
    wh, ww = grid.window
    if m:
        x = g.op("Pad", [x, t.i64([0, 0, m, m, 0, 0, m, m])], "padded", mode="reflect")
    rows = (np.arange(r)[:, None] * th + np.arange(wh)[None]).astype(np.int64)  # (R, wh) padded rows
    cols = (np.arange(q)[:, None] * tw + np.arange(ww)[None]).astype(np.int64)  # (Q, ww)
    x = g.op("Gather", [x, g.const(rows, "rows")], axis=2)  # (N, Ch, R, wh, Wp)
    x = g.op("Gather", [x, g.const(cols, "cols")], axis=4)  # (N, Ch, R, wh, Q, ww)
    x = g.op("Transpose", [x], perm=[0, 2, 4, 1, 3, 5])
    return g.op("Reshape", [x, t.i64([-1, ch, wh, ww])], "windows")


def _gate(g: GraphBuilder, t: _Tiles, state: dict, tile_logits: str, stage: int, last: bool, threshold: float,
          idx: str | None) -> dict:
    """One gate step on the active tiles (``idx``: their flat indices; None: every tile, stage 0)."""
    tp = t.tp
    x, ok = t.finite_tiles(tile_logits)
    probs = g.op("Mul", [g.op("Softmax", [x], axis=1),
                         g.op("Unsqueeze", [g.op("Cast", [ok], to=tp.FLOAT), t.i64([1, 2, 3])])], "probs")
    okf, oki = g.op("Cast", [ok], to=tp.FLOAT), g.op("Cast", [ok], to=tp.INT32)
    new = dict(state)
    if idx is None:  # every tile: the state is this stage's alone
        new["sum"], new["count"], new["flag"] = probs, okf, g.op("Sub", [g.const(np.int32(1), "one"), oki])
        take = lambda name: new[name]  # noqa: E731
    else:
        where = g.op("Unsqueeze", [idx, t.i64([1])], "where")

        def scatter(name: str, value: str) -> None:
            new[name] = g.op("ScatterND", [state[name], where, value], name)

        def take(name: str) -> str:
            return g.op("Gather", [new[name], idx], axis=0)

        scatter("sum", g.op("Add", [take("sum"), probs]))
        scatter("count", g.op("Add", [take("count"), okf]))
        scatter("flag", g.op("Max", [take("flag"), g.op("Sub", [g.const(np.int32(1), "one"), oki])]))
    count = take("count")
    mean = g.op("Div", [take("sum"), g.op("Unsqueeze", [g.op("Max", [count, g.const(np.float32(1), "one_f")]),
                                                        t.i64([1, 2, 3])])], "mean")
    conf = t.confidence(mean)
    if last:  # every tile exits
        exits = g.op("ConstantOfShape", [g.op("Shape", [conf])], "exits",
                     value=require("onnx").helper.make_tensor("true", tp.BOOL, [1], [True]))
    else:
        exits = g.op("And", [ok, g.op("GreaterOrEqual", [conf, g.const(np.float32(threshold), "t")])], "exits")
    nan = g.const(np.float32(math.nan), "nan")
    exit_conf = g.op("Where", [g.op("Greater", [count, g.const(np.float32(0), "zero_f")]), conf, nan])
    stage_c = g.const(np.int32(stage), "stage")
    if idx is None:
        new["exit_stage"] = g.op("Where", [exits, stage_c, g.const(np.int32(-1), "minus1")], "exit_stage")
        new["conf"] = g.op("Where", [exits, exit_conf, nan], "conf")
        base = g.op("Range", [t.i64(0), g.op("Squeeze", [g.op("Shape", [exits])]), t.i64(1)], "all_tiles")
    else:
        where = g.op("Unsqueeze", [idx, t.i64([1])], "where2")
        new["exit_stage"] = g.op("ScatterND", [state["exit_stage"], where,
                                               g.op("Where", [exits, stage_c, take("exit_stage")])], "exit_stage")
        new["conf"] = g.op("ScatterND", [state["conf"], where, g.op("Where", [exits, exit_conf, take("conf")])],
                           "conf")
        base = idx
    keep = g.op("Squeeze", [g.op("NonZero", [g.op("Not", [exits])]), t.i64([0])], "keep")
    new["active"] = g.op("Gather", [base, keep], "active", axis=0)
    return new


def _state_infos(helper, tp, names: dict) -> list:
    types = {"sum": tp.FLOAT, "count": tp.FLOAT, "flag": tp.INT32, "exit_stage": tp.INT32, "conf": tp.FLOAT,
             "active": tp.INT64}
    return [helper.make_tensor_value_info(names[k], types[k], None) for k in STATE]


def build_tile_cascade_model(members: Sequence[MemberSource], thresholds: Sequence[float], grid: TileGrid,
                             confidence: str, source, num_classes: int, *, preprocess: str = "exact",
                             metadata: dict | None = None) -> Any:
    """The fused tile cascade as a ModelProto (checked with ``onnx.checker``); see the module docstring."""
    import json

    onnx = require("onnx")
    helper, tp = onnx.helper, onnx.TensorProto
    if confidence != "mean_max_prob":
        raise FusedExportError(f"tile confidence {confidence!r}: the fused file computes mean_max_prob only; "
                               "run the bundle with edge_committee.load or export-triton")
    check_precision(preprocess)
    models = [read_member(m) for m in members]
    opset = max([MIN_OPSET] + [default_opset(m) or MIN_OPSET for m in models])
    frame = tuple(members[0].preprocessing.size)
    shape, c, k_total = grid.shape(frame), int(num_classes), len(members)
    g = GraphBuilder("main/")
    t = _Tiles(g, opset)
    images = g.op("Cast", [INPUT], "images_f32", to=tp.FLOAT)
    inputs, inlined = {}, []
    for k, src in enumerate(members):
        plan = src.preprocessing.plan((source.height, source.width), source.channels)
        check_plan(plan, src.name, "compact", "standard", preprocess)
        key = json.dumps(src.preprocessing.to_dict(), sort_keys=True)
        if key not in inputs:
            inputs[key] = f"main/input{k}"
            add_preprocessing(g, plan, images, inputs[key], tp.FLOAT, preprocess)
        inlined.append(_inline(k, src, c, opset, models[k]))
    size0 = _output_size(members[0], frame, members[0].preprocessing.channels)
    dtype0 = models[0].graph.input[0].type.tensor_type.elem_type
    logits0 = _member_logits(g, t, inlined[0], inputs[json.dumps(members[0].preprocessing.to_dict(), sort_keys=True)], size0, frame, dtype0)
    state = _gate(g, t, {}, _split(g, t, logits0, c, grid, shape), 0, k_total == 1,
                  thresholds[0] if k_total > 1 else math.inf, None)
    for k in range(1, k_total):
        src, inl = members[k], inlined[k]
        b = GraphBuilder(f"s{k}/")
        tb = _Tiles(b, opset)
        win = _windows(b, tb, inputs[json.dumps(src.preprocessing.to_dict(), sort_keys=True)], grid, shape,
                       src.preprocessing.channels)
        win = b.op("Gather", [win, state["active"]], "active_windows", axis=0)
        size = _output_size(src, grid.window, src.preprocessing.channels)
        dtype = models[k].graph.input[0].type.tensor_type.elem_type
        logits = _member_logits(b, tb, inl, win, size, grid.window, dtype)
        m = grid.margin
        centre = b.op("Slice", [logits, tb.i64([m, m]), tb.i64([m + grid.tile[0], m + grid.tile[1]]),
                                tb.i64([2, 3])], "centre") if m else logits
        new = _gate(b, tb, state, centre, k, k == k_total - 1,
                    thresholds[k] if k < k_total - 1 else math.inf, state["active"])
        outs = {s: f"s{k}/out.{s}" for s in STATE}
        for s in STATE:
            b.op("Identity", [new[s]], outputs=[outs[s]])
        then = b.graph(f"stage{k}", [], _state_infos(helper, tp, outs))
        e = GraphBuilder(f"skip{k}/")
        eouts = {s: f"skip{k}/{s}" for s in STATE}
        for s in STATE:
            e.op("Identity", [state[s]], outputs=[eouts[s]])
        skip = e.graph(f"skip{k}", [], _state_infos(helper, tp, eouts))
        anyone = g.op("Greater", [g.op("Size", [state["active"]]), t.i64(0)], f"reach{k}")
        state = {s: f"main/after{k}.{s}" for s in STATE}
        g.op("If", [anyone], outputs=[state[s] for s in STATE], then_branch=then, else_branch=skip)
    mean = g.op("Div", [state["sum"], g.op("Unsqueeze", [g.op("Max", [state["count"], g.const(np.float32(1), "one")]),
                                                         t.i64([1, 2, 3])])], "mean_final")
    label = g.op("Cast", [g.op("ArgMax", [mean], axis=1, keepdims=1)], to=tp.INT32)
    contributed = g.op("Greater", [state["count"], g.const(np.float32(0), "zero")])
    label = g.op("Where", [g.op("Unsqueeze", [contributed, t.i64([1, 2, 3])]), label, g.const(np.int32(-1), "m1")])
    class_map = _merge(g, t, label, 1, grid, shape, "main/class_map4")
    g.op("Squeeze", [class_map, t.i64([1])], outputs=["class_map"])
    _merge(g, t, mean, c, grid, shape, "probs")
    per_frame = t.i64([-1, shape[0] * shape[1]])
    for name, value in (("tile_confidence", state["conf"]), ("tile_exit_stage", state["exit_stage"]),
                        ("tile_flags", state["flag"])):
        g.op("Reshape", [value, per_frame], outputs=[name])
    # pixels per class (unlabelled pixels, class -1, count in none) and tiles past the first member
    same = g.op("Equal", [g.op("Unsqueeze", ["class_map", t.i64([3])]), g.const(np.arange(c, dtype=np.int32), "classes")])
    g.op("Identity", [t.reduce("ReduceSum", g.op("Cast", [same], to=tp.INT64), [1, 2])], outputs=["histogram"])
    later = g.op("Cast", [g.op("Greater", ["tile_exit_stage", g.const(np.int32(0), "zero_i")])], to=tp.INT32)
    g.op("Identity", [t.reduce("ReduceSum", later, [1], keepdims=1)], outputs=["tiles_deferred"])
    h, w = frame
    tcount = shape[0] * shape[1]
    outputs = [helper.make_tensor_value_info("class_map", tp.INT32, ["N", h, w]),
               helper.make_tensor_value_info("probs", tp.FLOAT, ["N", c, h, w]),
               helper.make_tensor_value_info("tile_confidence", tp.FLOAT, ["N", tcount]),
               helper.make_tensor_value_info("tile_exit_stage", tp.INT32, ["N", tcount]),
               helper.make_tensor_value_info("tile_flags", tp.INT32, ["N", tcount]),
               helper.make_tensor_value_info("histogram", tp.INT64, ["N", c]),
               helper.make_tensor_value_info("tiles_deferred", tp.INT32, ["N", 1])]
    outputs.sort(key=lambda v: OUTPUTS.index(v.name))
    images_in = helper.make_tensor_value_info(INPUT, tp.UINT8, ["N", source.height, source.width, source.channels])
    graph = g.graph("edge_committee_tile_cascade", [images_in], outputs)
    opsets = [helper.make_opsetid("", opset)]
    ir = max([helper.find_min_ir_version_for(opsets)] + [m.ir_version for m in models])
    model = helper.make_model(graph, opset_imports=opsets, ir_version=ir, producer_name="edge_committee",
                              doc_string=f"edge_committee tile cascade {' > '.join(m.name for m in members)}")
    props = {"task": "segmentation", "cascade": {"members": [m.name for m in members],
                                                 "thresholds": [float(x) for x in thresholds[: k_total - 1]]},
             "segmentation": {"tile": list(grid.tile), "margin": grid.margin, "confidence": confidence},
             "source": [source.height, source.width, source.channels], "preprocess": preprocess,
             "outputs": list(OUTPUTS), **(metadata or {})}
    helper.set_model_props(model, {f"edge_committee.{k}": v if isinstance(v, str) else json.dumps(v)
                                   for k, v in props.items()})
    onnx.checker.check_model(model, full_check=True)
    return model
