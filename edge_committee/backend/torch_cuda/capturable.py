"""Make real ONNX exports convert to capturable PyTorch modules: shapes folded to constants, Python-int shapes.

A stage is captured as a CUDA graph only if its member never reads a device value on the host.
onnx2torch's Reshape reads its target shape from a tensor (``torch.any(shape == 0)``,
``torch.Size(shape)``), and its Pad (opset >= 11) calls ``pads.tolist()``: host syncs, so one such
node switches graph mode off for the whole model. Real exports are full of them: PyTorch's
TorchScript exporter writes ``F.pad`` with computed pads (EfficientNet's 'same' padding: Shape,
ConstantOfShape, Concat, Reshape, Slice, Transpose, Cast, Pad) and ``x.view(x.size(0), -1)`` as
Shape -> Gather -> Unsqueeze -> Concat -> Reshape.

Two steps, at conversion time (:class:`.loader.ModuleFromOnnx`):

1. :func:`fold_shapes` (ONNX): every small shape-valued tensor (computed only from constants and the
   *shapes* of tensors, all of whose dimensions but the batch are fixed) is evaluated with
   ``onnx.reference`` at batch 1 and batch 2. What does not change becomes an initializer; a Reshape
   target that changes only in its first entry, as the batch, becomes ``[0, ...]`` (ONNX: copy the
   input's first dimension) or ``[-1, ...]``. Dead nodes are
   removed. The model keeps its dynamic batch.
2. :func:`static_modules` (torch.fx): a Reshape, Pad or Slice whose shape/pads/bounds are now constant
   buffers is replaced by a module that holds them as Python ints (``StaticReshape``, onnx2torch's
   ``OnnxPadStatic``, ``StaticSlice``).

:func:`host_reads` runs a module once under a dispatch mode and lists the ops that read a device
value on the host (``.item()``, ``Size(tensor)``, ``nonzero``, ...): the tests assert it is empty for
every member of both examples.
"""

from __future__ import annotations

import dataclasses
from typing import Any

#: ONNX ops evaluated when all their inputs are known (shape arithmetic; never a heavy op)
SHAPE_OPS = frozenset({
    "Shape", "Size", "Constant", "ConstantOfShape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice",
    "Reshape", "Transpose", "Cast", "Identity", "Add", "Sub", "Mul", "Div", "Range", "Equal", "Where", "Expand",
    "ReduceProd", "Floor", "Ceil", "Max", "Min", "Neg", "Abs", "Mod", "Not", "And", "Or", "Less", "Greater",
})
#: tensors larger than this are never folded (a shape has a handful of entries)
MAX_FOLD_ELEMENTS = 1024
#: aten ops that read a device value on the host (a sync; uncapturable)
HOST_READ_OPS = ("_local_scalar_dense", "item", "nonzero", "is_nonzero", "equal", "masked_select", "unique",
                 "_unique2", "repeat_interleave")


@dataclasses.dataclass
class FoldReport:
    """What :func:`fold_shapes` did: tensors made constant, Reshape targets made batch-free, nodes removed."""

    constants: int = 0
    batch_reshapes: int = 0
    removed_nodes: int = 0
    skipped: str | None = None  #: why nothing more was folded (ONNX shape inference failed), else None


def _static_shapes(onnx, model) -> tuple[dict[str, list], str | None]:
    """{tensor: dims} from ONNX shape inference (ints, or the batch symbol), and the batch symbol."""
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    g = inferred.graph
    batch = None
    if g.input and g.input[0].type.tensor_type.shape.dim:
        d0 = g.input[0].type.tensor_type.shape.dim[0]
        batch = d0.dim_param if d0.HasField("dim_param") else None
    shapes = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
    return shapes, batch


def _evaluate(onnx, model, shapes: dict, batch_symbol: str | None, batch: int) -> dict[str, Any]:
    """Values of the shape-valued tensors at ``batch`` (numpy arrays), by topological evaluation."""
    import numpy as np
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    known: dict[str, Any] = {}
    for init in model.graph.initializer:
        if np.prod(init.dims, dtype=np.int64) <= MAX_FOLD_ELEMENTS:
            known[init.name] = numpy_helper.to_array(init)
    for node in model.graph.node:
        if node.op_type not in SHAPE_OPS:
            continue
        if node.op_type in ("Shape", "Size"):
            dims = shapes.get(node.input[0])
            if dims is None:
                continue
            dims = [batch if d == batch_symbol and batch_symbol is not None else d for d in dims]
            if not all(isinstance(d, int) and d > 0 for d in dims):
                continue
            if node.op_type == "Size":
                known[node.output[0]] = np.array(int(np.prod(dims)), dtype=np.int64)
                continue
            attrs = {a.name: a.i for a in node.attribute}
            start, end = attrs.get("start", 0), attrs.get("end", len(dims))
            known[node.output[0]] = np.array(dims[start:end], dtype=np.int64)
            continue
        inputs = [i for i in node.input if i]
        if not all(i in known for i in inputs):
            continue
        try:
            values = ReferenceEvaluator(node).run(None, {i: known[i] for i in inputs})
        except Exception:  # noqa: BLE001 - an op the reference cannot run here: leave it to the converter
            continue
        for name, value in zip(node.output, values):
            value = np.asarray(value)
            if value.size <= MAX_FOLD_ELEMENTS:
                known[name] = value
    return known


def fold_shapes(model) -> tuple[Any, FoldReport]:
    """Fold the shape computations of ``model`` (an ``onnx.ModelProto``, changed in place) into constants.

    Returns ``(model, report)``; see the module docstring. A model with nothing to fold is returned
    unchanged.
    """
    from edge_committee._lazy import require

    onnx = require("onnx")
    report = FoldReport()
    graph = model.graph
    report.removed_nodes += _inline_identities(graph)
    if not any(n.op_type in ("Shape", "Size", "ConstantOfShape") or n.op_type in ("Reshape", "Pad") for n in
               graph.node):
        return model, report
    for _ in range(3):  # a folded Pad lets shape inference carry the batch further: fold again
        if not _fold_once(onnx, model, report):
            break
    return model, report


def _fold_once(onnx, model, report: FoldReport) -> bool:
    import numpy as np
    from onnx import numpy_helper

    graph = model.graph
    before = (report.constants, report.batch_reshapes)
    try:
        shapes, symbol = _static_shapes(onnx, model)
    except Exception as exc:  # noqa: BLE001 - a model ONNX cannot infer: convert it as it is (maybe uncapturable)
        report.skipped = f"shape inference failed: {type(exc).__name__}: {exc}"
        return False
    one, two = (_evaluate(onnx, model, shapes, symbol, b) for b in (1, 2))
    initializers = {i.name for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    added: dict[str, str] = {}
    for node in graph.node:
        if node.op_type in SHAPE_OPS and all(o in one for o in node.output):
            continue  # folded itself, or feeds only other shape ops (removed below if dead)
        for pos, name in enumerate(node.input):
            if not name or name in initializers or name not in one or name not in two or name not in producers:
                continue
            a, b = one[name], two[name]
            if a.shape == b.shape and np.array_equal(a, b):
                new, value = f"{name}__folded", a
            elif (node.op_type == "Reshape" and pos == 1 and a.ndim == 1 and a.shape == b.shape and a.size > 1
                  and a[0] == 1 and b[0] == 2 and np.array_equal(a[1:], b[1:])):
                # the batch: 0 (copy the input's first dimension) where that is the batch, else -1 (inferred)
                first = 0 if (shapes.get(node.input[0]) or [None])[0] == symbol and symbol else -1
                if first == -1 and -1 in a[1:]:
                    continue
                new, value = f"{name}__batch", np.concatenate([[first], a[1:]]).astype(a.dtype)
                report.batch_reshapes += 1
            else:
                continue
            if new not in added:
                graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(value), new))
                added[new] = name
                report.constants += new.endswith("__folded")
            node.input[pos] = new
    report.removed_nodes += _remove_dead_nodes(graph)
    return (report.constants, report.batch_reshapes) != before


def _inline_identities(graph) -> int:
    """Point the consumers of ``Identity(initializer)`` at the initializer itself (the TorchScript exporter
    writes them for shared weights; onnx2torch looks Conv biases up among the initializers only)."""
    inits = {i.name for i in graph.initializer}
    outputs = {o.name for o in graph.output}
    alias = {n.output[0]: n.input[0] for n in graph.node
             if n.op_type == "Identity" and n.input[0] in inits and n.output[0] not in outputs}
    if not alias:
        return 0
    for node in graph.node:
        for pos, name in enumerate(node.input):
            if name in alias:
                node.input[pos] = alias[name]
    keep = [n for n in graph.node if not (n.op_type == "Identity" and n.output[0] in alias)]
    del graph.node[:]
    graph.node.extend(keep)
    return len(alias)


def _remove_dead_nodes(graph) -> int:
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    removed = len(graph.node) - len(keep)
    if removed:
        del graph.node[:]
        graph.node.extend(reversed(keep))
        used = {i for n in graph.node for i in n.input}
        inits = [i for i in graph.initializer if i.name in used or i.name in {o.name for o in graph.output}]
        del graph.initializer[:]
        graph.initializer.extend(inits)
    return removed


# ---------------------------------------------------------------------------------------------- torch.fx
def _static_reshape_class():
    torch = __import__("torch")

    class StaticReshape(torch.nn.Module):
        """``x.reshape(shape)`` with the shape as Python ints (0 copies the input's dimension, as ONNX)."""

        def __init__(self, shape: tuple[int, ...]) -> None:
            super().__init__()
            self.shape = tuple(int(d) for d in shape)

        def forward(self, x):
            return x.reshape([x.shape[i] if d == 0 else d for i, d in enumerate(self.shape)])

        def extra_repr(self) -> str:
            return f"shape={self.shape}"

    return StaticReshape


def _static_slice_class():
    torch = __import__("torch")

    class StaticSlice(torch.nn.Module):
        """ONNX Slice with constant starts/ends/axes/steps as Python slices (onnx2torch's own arithmetic)."""

        def __init__(self, starts, ends, axes=None, steps=None) -> None:
            from onnx2torch.node_converters.slice import _get_slices

            super().__init__()
            ints = lambda a: None if a is None else [int(v) for v in a.tolist()]  # noqa: E731
            flip, pos, neg = _get_slices(*(ints(a) for a in (starts, ends)),
                                         *(None if a is None else a.cpu() for a in (axes, steps)))
            py = lambda s: s if not isinstance(s, slice) else slice(  # noqa: E731
                *(None if v is None else int(v) for v in (s.start, s.stop, s.step)))
            self.flip = [int(d) for d in flip]
            self.pos, self.neg = tuple(py(s) for s in pos), tuple(py(s) for s in neg)

        def forward(self, x):
            if self.flip:
                x = torch.flip(x, dims=self.flip)
            if self.pos:
                x = x[self.pos]
            if self.neg:
                x = x[self.neg]
            return x

    return StaticSlice


def _constant(module, node):
    """The tensor a ``get_attr`` fx node refers to, else None."""
    if getattr(node, "op", None) != "get_attr":
        return None
    obj = module
    for part in node.target.split("."):
        obj = getattr(obj, part)
    return obj


def static_modules(module) -> int:
    """Replace onnx2torch's Reshape, Pad and Slice modules whose shape/pads/bounds are constant buffers by
    modules that hold them as Python ints (no host read when run). Returns how many were replaced."""
    from onnx2torch.node_converters.pad import OnnxPadDynamic, OnnxPadStatic
    from onnx2torch.node_converters.reshape import OnnxReshape
    from onnx2torch.node_converters.slice import OnnxSlice

    static_reshape, static_slice = _static_reshape_class(), _static_slice_class()
    replaced = 0
    for node in list(module.graph.nodes):
        if node.op != "call_module":
            continue
        target = module.get_submodule(node.target)
        consts = [None if a is None else _constant(module, a) for a in node.args[1:]]
        if not consts or any(c is None and a is not None for c, a in zip(consts, node.args[1:])):
            continue
        if isinstance(target, OnnxSlice) and consts[0] is not None and consts[1] is not None:
            new = static_slice(*consts)
        elif any(c is None for c in consts):
            continue
        elif isinstance(target, OnnxReshape):
            new = static_reshape(consts[0].tolist())
        elif isinstance(target, OnnxPadDynamic):
            value = float(consts[1].item()) if len(consts) > 1 and consts[1].numel() else 0.0
            mode = {"replicate": "edge"}.get(target.mode, target.mode)
            new = OnnxPadStatic.create_from_onnx_params(consts[0].tolist(), mode, value)
        else:
            continue
        module.add_submodule(node.target, new)
        node.args = node.args[:1]
        replaced += 1
    if replaced:
        module.graph.eliminate_dead_code()
        module.recompile()
    return replaced


def host_reads(module, example) -> list[str]:
    """The aten ops that read a device value on the host while ``module(example)`` runs (empty = capturable
    as far as host syncs go), e.g. ``['_local_scalar_dense', 'nonzero']``."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    seen: list[str] = []

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            if name in HOST_READ_OPS:
                seen.append(name)
            return func(*args, **(kwargs or {}))

    with torch.no_grad(), Recorder():
        module(example)
    return seen
