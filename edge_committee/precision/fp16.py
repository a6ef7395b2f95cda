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
