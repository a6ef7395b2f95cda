"""A learned combiner (:mod:`.learned`) as a small ONNX graph, and back.

Graph of a combiner over M members and C classes (standard ops only, any opset >= 13)::

    inputs  logits_0 .. logits_{M-1}: float32 (batch, C)
    per input m:  finite = Equal(x - x, 0)                      # NaN/Inf give NaN - NaN
                  ok_m   = Equal(MatMul(Cast(finite), 1_C), C)   # (batch, 1): every logit finite
                  lp_m   = LogSoftmax(Where(ok_m, x, 0)) * ok_m  # non-finite rows add nothing
    z = Sum(lp_0 * w_0, ..., lp_{M-1} * w_{M-1}, b)
    output  probs = Softmax(z): float32 (batch, C)

The weights are initializers ``w_<m>`` (C,) and ``b`` (C,); metadata ``edge_committee.form``
and ``edge_committee.members`` name the form and the members. :func:`combiner_from_onnx` reads
the numbers back, so the file in a bundle is the single source of the combination: the NumPy
reference, the host loop and the ONNX file itself all use these initializers. (A sample no
member gave finite logits gets ``softmax(b)`` from the file; the gate, which counts
contributions, reports it with label -1, as the reference does.)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from edge_committee._lazy import require
from edge_committee.cascade.learned import FORM, Combiner
from edge_committee.errors import BundleError


def combiner_onnx(combiner: Combiner, opset: int = 17):
    """The ONNX model (``onnx.ModelProto``) of ``combiner``; inputs ``logits_<m>``, output ``probs``."""
    onnx = require("onnx")
    from onnx import TensorProto, helper, numpy_helper

    m, c = combiner.num_members, combiner.num_classes
    nodes, inits, terms = [], [numpy_helper.from_array(np.ones((c, 1), np.float32), "ones"),
                               numpy_helper.from_array(np.array(float(c), np.float32), "num_classes"),
                               numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
                               numpy_helper.from_array(combiner.bias, "b")], []
    for i in range(m):
        x, p = f"logits_{i}", f"m{i}_"
        inits.append(numpy_helper.from_array(combiner.weights[i], f"w_{i}"))
        nodes += [
            helper.make_node("Sub", [x, x], [p + "diff"]),
            helper.make_node("Equal", [p + "diff", "zero"], [p + "finite"]),
            helper.make_node("Cast", [p + "finite"], [p + "finite_f"], to=TensorProto.FLOAT),
            helper.make_node("MatMul", [p + "finite_f", "ones"], [p + "count"]),
            helper.make_node("Equal", [p + "count", "num_classes"], [p + "ok"]),
            helper.make_node("Cast", [p + "ok"], [p + "ok_f"], to=TensorProto.FLOAT),
            helper.make_node("Where", [p + "ok", x, "zero"], [p + "safe"]),
            helper.make_node("LogSoftmax", [p + "safe"], [p + "lp"], axis=1),
            helper.make_node("Mul", [p + "lp", p + "ok_f"], [p + "lp_ok"]),
            helper.make_node("Mul", [p + "lp_ok", f"w_{i}"], [p + "term"]),
        ]
        terms.append(p + "term")
    nodes += [helper.make_node("Sum", terms + ["b"], ["z"]),
              helper.make_node("Softmax", ["z"], ["probs"], axis=1)]
    graph = helper.make_graph(
        nodes, "learned_combiner",
        [helper.make_tensor_value_info(f"logits_{i}", TensorProto.FLOAT, ["batch", c]) for i in range(m)],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", c])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="edge_committee")
    model.ir_version = 8
    helper.set_model_props(model, {"edge_committee.form": FORM,
                                   "edge_committee.members": json.dumps(list(combiner.members))})
    onnx.checker.check_model(model)
    return model


def save_combiner(combiner: Combiner, path: str | os.PathLike, opset: int = 17) -> None:
    """Write ``combiner`` as ONNX to ``path`` (through a temporary name)."""
    from edge_committee._util import write_bytes_atomic

    write_bytes_atomic(path, combiner_onnx(combiner, opset).SerializeToString())


def combiner_from_onnx(path: str | os.PathLike) -> Combiner:
    """Read a combiner written by :func:`save_combiner` (its initializers are the numbers)."""
    onnx = require("onnx")
    from onnx import numpy_helper

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises several types for unreadable files
        raise BundleError(f"{path}: not a readable ONNX combiner ({exc})") from None
    props = {p.key: p.value for p in model.metadata_props}
    if props.get("edge_committee.form") != FORM:
        raise BundleError(f"{path}: combiner form {props.get('edge_committee.form')!r} is not {FORM!r}; "
                          "rebuild the bundle with this edge_committee")
    arrays = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    m = sum(1 for k in arrays if k.startswith("w_"))
    weights = np.stack([arrays[f"w_{i}"] for i in range(m)])
    return Combiner(weights, arrays["b"], tuple(json.loads(props.get("edge_committee.members", "[]"))))


def run_combiner_onnx(path: str | os.PathLike, member_logits: Sequence[np.ndarray]) -> np.ndarray:
    """Run a combiner file with ONNX Runtime (CPU): (N, C) probabilities."""
    ort = require("onnxruntime")
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    feeds = {f"logits_{i}": np.ascontiguousarray(x, np.float32) for i, x in enumerate(member_logits)}
    return sess.run(["probs"], feeds)[0]


def bundle_stage_combiners(root: str | os.PathLike, manifest: dict) -> list[Combiner]:
    """A learned committee's stage combiners, read from the files its manifest lists ([] for the average).

    Raises :class:`BundleError` unless there is one listed file per cascade stage.
    """
    from pathlib import Path

    from edge_committee.bundle.manifest import resolve_in_bundle

    cascade = manifest.get("cascade") or {}
    comb = cascade.get("combiner")
    if not comb:
        return []
    files = list(comb.get("files") or [])
    stages = len(cascade.get("members") or [])
    listed = manifest.get("files", {})
    if len(files) != stages or any(f not in listed for f in files):
        raise BundleError(f"{Path(root) / 'manifest.json'}: the learned combiner needs one listed file per stage "
                          f"({stages}); got {files}; rebuild or re-select the bundle")
    return [combiner_from_onnx(resolve_in_bundle(root, f)) for f in files]
