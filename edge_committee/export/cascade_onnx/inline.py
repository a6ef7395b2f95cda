"""Members made ready to inline: loaded, checked, at the cascade's opset, pruned to the logits, prefixed.

A member can be inlined when it has one image input of float type with a free batch dimension
and a first output of (M, classes) float logits. Everything else is refused with one line naming
the member and why (:class:`FusedExportError`). Local functions are inlined first
(``onnx.inliner``), the default-domain opset is raised to the cascade's with
``onnx.version_converter``, nodes that do not feed the logits are dropped, and every name gets the
stage prefix (``onnx.compose.add_prefix``) so members never collide.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from edge_committee._lazy import require
from edge_committee.export.cascade_onnx._graph import walk_nodes
from edge_committee.export.cascade_onnx.errors import FusedExportError
from edge_committee.spec.preprocess import Preprocessing

_DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclasses.dataclass(frozen=True)
class MemberSource:
    """One member to fuse: its name, ONNX file and preprocessing."""

    name: str
    path: Path
    preprocessing: Preprocessing


@dataclasses.dataclass
class InlinedMember:
    """A member ready to be placed in the fused graph (all names carry ``prefix``)."""

    name: str
    model: Any  #: ModelProto: one input, the logits as its only output
    input: str
    input_dtype: int  #: ONNX element type of the input (FLOAT or FLOAT16)
    logits: str


def default_opset(model: Any) -> int | None:
    return next((o.version for o in model.opset_import if o.domain in _DEFAULT_DOMAINS), None)


def _fail(src: MemberSource, why: str) -> FusedExportError:
    return FusedExportError(f"member {src.name!r} ({src.path}) cannot be inlined: {why}")


def read_member(src: MemberSource) -> Any:
    """Load the member's ONNX (external data included) with its local functions inlined."""
    onnx = require("onnx")
    try:
        model = onnx.load(os.fspath(src.path))
    except FileNotFoundError:
        raise _fail(src, "the file does not exist") from None
    except Exception as exc:  # a corrupt file: protobuf errors have no common base class
        raise _fail(src, f"it is not a readable ONNX file ({exc})") from None
    if model.functions:
        model = require("onnx.inliner").inline_local_functions(model)
    if default_opset(model) is None:
        raise _fail(src, "it imports no default-domain opset")
    return model


def _real_inputs(graph: Any) -> list:
    # IR < 4 files list initializers as inputs too; they are weights, not what the cascade feeds
    weights = {t.name for t in graph.initializer}
    return [i for i in graph.input if i.name not in weights]


def _dims(info: Any) -> list:
    """int, str (symbolic) or None per dimension; [] when the shape is unknown."""
    t = info.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]


def _check_io(src: MemberSource, model: Any, expect: tuple[int, ...], num_classes: int) -> None:
    tp = require("onnx").TensorProto
    inputs = _real_inputs(model.graph)
    if len(inputs) != 1:
        raise _fail(src, f"it has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                         "the cascade feeds exactly one image tensor")
    x = inputs[0]
    if x.type.tensor_type.elem_type not in (tp.FLOAT, tp.FLOAT16):
        raise _fail(src, f"its input {x.name!r} is {tp.DataType.Name(x.type.tensor_type.elem_type)}; "
                         "expected float32 or float16")
    dims = _dims(x)
    if dims and len(dims) != len(expect) + 1:
        raise _fail(src, f"its input {x.name!r} has rank {len(dims)}; expected {len(expect) + 1} (batch, {expect})")
    if dims and isinstance(dims[0], int):
        raise _fail(src, f"its input {x.name!r} has a fixed batch size {dims[0]}; the cascade runs each member "
                         "on a varying number of samples: export it with a dynamic batch dimension")
    if dims and any(isinstance(d, int) and d != e for d, e in zip(dims[1:], expect)):
        raise _fail(src, f"its input {x.name!r} is {tuple(dims[1:])} but its preprocessing gives {expect}")
    if not model.graph.output:
        raise _fail(src, "it has no output")
    y = model.graph.output[0]
    if y.type.tensor_type.elem_type not in (tp.FLOAT, tp.FLOAT16):
        raise _fail(src, f"its first output {y.name!r} is {tp.DataType.Name(y.type.tensor_type.elem_type)}; "
                         "the gate needs float32 or float16 logits")
    out_dims = _dims(y)
    if out_dims and (len(out_dims) != 2 or (isinstance(out_dims[1], int) and out_dims[1] != num_classes)):
        raise _fail(src, f"its first output {y.name!r} has shape {out_dims}; expected (batch, {num_classes}) logits")


def _convert_opset(src: MemberSource, model: Any, opset: int) -> Any:
    have = default_opset(model)
    if have == opset:
        return model
    try:
        converted = require("onnx.version_converter").convert_version(model, opset)
    except Exception as exc:  # the converter raises RuntimeError/ValueError/C++ errors
        raise _fail(src, f"converting it from opset {have} to the cascade's opset {opset} failed ({exc}); "
                         f"re-export it at opset {opset}") from None
    return converted


def _prune_to(model: Any, output: str) -> None:
    """Keep only ``output`` and the nodes and weights it depends on (in place)."""
    graph = model.graph
    needed, kept = {output}, []
    for node in reversed(graph.node):
        if not any(o in needed for o in node.output):
            continue
        kept.append(node)
        for inner, _ in walk_nodes_of(node):
            needed.update(i for i in inner.input if i)
    kept.reverse()
    keep_out = [o for o in graph.output if o.name == output]
    keep_init = [t for t in graph.initializer if t.name in needed]
    for field, values in (("node", kept), ("output", keep_out), ("initializer", keep_init)):
        copies = [type(v)() for v in values]
        for c, v in zip(copies, values):
            c.CopyFrom(v)
        del getattr(graph, field)[:]
        getattr(graph, field).extend(copies)
    weights = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights or i.name in needed]
    if len(inputs) != len(graph.input):
        copies = [type(i)() for i in inputs]
        for c, i in zip(copies, inputs):
            c.CopyFrom(i)
        del graph.input[:]
        graph.input.extend(copies)
    del graph.value_info[:]  # symbolic dims of different members must not be unified; ORT re-infers


def walk_nodes_of(node: Any):
    """``node`` itself and every node of its subgraphs."""
    yield node, None
    for attr in node.attribute:
        if attr.HasField("g"):
            yield from walk_nodes(attr.g)
        for sub in attr.graphs:
            yield from walk_nodes(sub)


def _name_nodes(graph: Any, prefix: str) -> None:
    # ORT's profiler reports nodes by name: every inlined node gets one, under its stage prefix
    for i, (node, _) in enumerate(walk_nodes(graph)):
        if not node.name:
            node.name = f"{prefix}node_{i}"


def _check_dense_io(src: MemberSource, model: Any, num_classes: int) -> None:
    """A segmentation member: one float image input with a free batch, float (N, classes, h, w) logits."""
    tp = require("onnx").TensorProto
    inputs = _real_inputs(model.graph)
    if len(inputs) != 1 or inputs[0].type.tensor_type.elem_type not in (tp.FLOAT, tp.FLOAT16):
        raise _fail(src, "a segmentation member needs exactly one float32/float16 image input")
    dims = _dims(inputs[0])
    if dims and (len(dims) != 4 or isinstance(dims[0], int)):
        raise _fail(src, f"its input has shape {dims}; expected (batch, channels, height, width) with a free batch")
    y = model.graph.output[0] if model.graph.output else None
    out_dims = _dims(y) if y is not None else []
    if y is None or y.type.tensor_type.elem_type not in (tp.FLOAT, tp.FLOAT16) or (out_dims and (
            len(out_dims) != 4 or (isinstance(out_dims[1], int) and out_dims[1] != num_classes))):
        raise _fail(src, f"its first output must be float (batch, {num_classes}, height, width) logits")


def inline_member(src: MemberSource, model: Any, prefix: str, opset: int,
                  expect: tuple[int, ...], num_classes: int, dense: bool = False) -> InlinedMember:
    """Check ``model`` (from :func:`read_member`) and return it ready to inline under ``prefix``
    (``dense``: a segmentation member, (N, C, h, w) logits on inputs of any height and width)."""
    onnx = require("onnx")
    if dense:
        _check_dense_io(src, model, num_classes)
    else:
        _check_io(src, model, expect, num_classes)
    model = _convert_opset(src, model, opset)
    logits = model.graph.output[0].name
    _prune_to(model, logits)
    input_name = _real_inputs(model.graph)[0].name
    input_dtype = _real_inputs(model.graph)[0].type.tensor_type.elem_type
    model = onnx.compose.add_prefix(model, prefix)
    _name_nodes(model.graph, prefix)
    return InlinedMember(src.name, model, prefix + input_name, input_dtype, prefix + logits)
