"""FP16 members: the float32 ONNX converted to float16 tensors with onnxconverter-common.

TensorRT 11 builds strongly typed networks, so FP16 must live in the ONNX itself (design.md §4).
``onnxconverter_common.float16.convert_float_to_float16`` is the established converter (used by
ONNX Runtime's own transformer tools): it converts initializers and value types and inserts
Casts around ops it keeps in float32. With ``keep_io_types`` (the default) the model still takes
and returns float32, so callers and the cascade gate see the same interface at every precision.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Sequence

from edge_committee._lazy import require
from edge_committee.precision._onnx import check_model, load_model, save_model

LOG = logging.getLogger("edge_committee")


def fp16_from_fp32(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    keep_io_types: bool = True,
    op_block_list: Sequence[str] | None = None,
    node_block_list: Sequence[str] | None = None,
) -> Path:
    """Write ``dst``, a float16 copy of the float32 ONNX ``src``; returns ``dst``.

    Args:
        keep_io_types: keep float32 inputs and outputs (Casts at the edges). Default True.
        op_block_list: op types to leave in float32 (default: the converter's own list).
        node_block_list: node names to leave in float32.

    The result passes ``onnx.checker`` (full check) before it is written; nothing is written
    on failure.
    """
    f16 = require("onnxconverter_common.float16")
    model = load_model(src)
    kwargs = {"keep_io_types": keep_io_types, "disable_shape_infer": False}
    if op_block_list is not None:
        kwargs["op_block_list"] = list(op_block_list)
    if node_block_list is not None:
        kwargs["node_block_list"] = list(node_block_list)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        converted = f16.convert_float_to_float16(model, **kwargs)
    clamped = [str(w.message) for w in caught if "truncated" in str(w.message)]
    if clamped:  # values beyond the converter's limits (|x| > 1e4 or < 1e-7) are clamped
        LOG.warning("%s: FP16 conversion clamped %d values (%s)", src, len(clamped), clamped[0])
    check_model(converted, f"the FP16 conversion of {src}")
    return save_model(converted, dst)


def fp16_emulation(fp16_src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Write ``dst``: the FP16 model as float32 ops whose every output is rounded to float16.

    ONNX Runtime's x86 CPU provider has few float16 kernels. It wraps the others in Casts to
    float32 and then drops the Casts between consecutive such ops, so the FP16 file runs as
    float32 with float16 weights: an activation beyond float16's range (65504) never overflows
    there, though it does on the GPU. Here every float16 tensor of ``fp16_src`` is produced in
    float32 and passed through an explicit Cast to float16 and back, which ONNX Runtime keeps:
    float16 storage of every tensor with float32 arithmetic, as TensorRT's FP16 kernels
    (float32 accumulation) behave. The accuracy gate evaluates FP16 members this way.
    """
    onnx = require("onnx")
    numpy_helper = require("onnx.numpy_helper")
    helper = require("onnx.helper")
    f16, f32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    model = onnx.shape_inference.infer_shapes(load_model(fp16_src))
    g = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.input, *g.value_info, *g.output]}

    def widen(t):
        if t.data_type == f16:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype("float32"), t.name))

    for t in g.initializer:
        widen(t)
    nodes = []
    for v in g.input:  # float16 inputs (keep_io_types=False): take float32, round on entry
        if v.type.tensor_type.elem_type == f16:
            v.type.tensor_type.elem_type = f32
            nodes += _round_trip(helper, v.name + "__in", v.name, f16, f32)
            _rename_uses(g.node, v.name, v.name + "__in")
    for n in g.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                widen(a.t)
        nodes.append(n)
        for i, out in enumerate(n.output):
            if types.get(out) != f16:
                continue
            n.output[i] = out + "__f32"
            if n.op_type == "Cast":  # the converter's Cast to float16: round, then back
                nodes.append(helper.make_node("Cast", [out + "__f32"], [out], to=f32))
            else:
                nodes += _round_trip(helper, out + "__f32", out, f16, f32)
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    for v in g.output:
        if v.type.tensor_type.elem_type == f16:
            v.type.tensor_type.elem_type = f32
    check_model(model, f"the FP16 emulation of {fp16_src}")
    return save_model(model, dst)


def _round_trip(helper, src: str, dst: str, f16: int, f32: int) -> list:
    return [
        helper.make_node("Cast", [src], [dst + "__f16"], to=f16),
        helper.make_node("Cast", [dst + "__f16"], [dst], to=f32),
    ]


def _rename_uses(nodes, old: str, new: str) -> None:
    for n in nodes:
        for i, name in enumerate(n.input):
            if name == old:
                n.input[i] = new
