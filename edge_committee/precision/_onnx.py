"""Small ONNX helpers shared by the precision stage (onnx is imported when first needed)."""

from __future__ import annotations

import os
from pathlib import Path

from edge_committee._lazy import require
from edge_committee.calibration._atomic import atomic_path
from edge_committee.errors import EdgeCommitteeError


def load_model(path: str | os.PathLike):
    onnx = require("onnx")
    try:
        return onnx.load(str(path))
    except FileNotFoundError:
        raise EdgeCommitteeError(f"ONNX file not found: {path}") from None
    except Exception as exc:
        raise EdgeCommitteeError(f"cannot read ONNX file {path}: {exc}") from None


def check_model(model, what: str) -> None:
    """onnx.checker with full (shape-inferring) checks; a failure names ``what``."""
    onnx = require("onnx")
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise EdgeCommitteeError(f"{what} fails onnx.checker: {exc}") from None


def save_model(model, path: str | os.PathLike) -> Path:
    """Save atomically: a temp file beside ``path``, then os.replace."""
    onnx = require("onnx")
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    return Path(path)


def prune_opsets(model) -> None:
    """Drop opset imports of domains no node uses (ORT's optimizer adds several)."""
    used = {n.domain or "" for n in model.graph.node}
    keep = [o for o in model.opset_import if (o.domain or "") in used or (o.domain or "") == ""]
    del model.opset_import[:]
    model.opset_import.extend(keep)


def initializers(model) -> dict:
    return {t.name: t for t in model.graph.initializer}


def constants(model) -> dict:
    """name -> numpy array for every initializer and Constant node output."""
    numpy_helper = require("onnx.numpy_helper")
    out = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output:
            for a in n.attribute:
                if a.name == "value":
                    out[n.output[0]] = numpy_helper.to_array(a.t)
    return out
