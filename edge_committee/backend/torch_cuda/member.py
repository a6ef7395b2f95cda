"""A member run by PyTorch on a CUDA device: a :class:`DeviceMember` converted from the bundle's ONNX file."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from edge_committee._lazy import require
from edge_committee.backend.base.device import DeviceMember
from edge_committee.backend.torch_cuda.loader import ModuleFromOnnx
from edge_committee.errors import EdgeCommitteeError

#: precision name -> (torch dtype attribute, input_dtype string)
PRECISIONS = {"fp32": ("float32", "float32"), "fp16": ("float16", "float16")}


def onnx_io(path: str | os.PathLike) -> tuple[tuple[int, ...], int]:
    """(per-sample input shape, number of classes) read from an ONNX file's declared input and output."""
    onnx = require("onnx")
    model = onnx.load(str(path), load_external_data=False)
    if len(model.graph.input) != 1 or len(model.graph.output) != 1:
        raise EdgeCommitteeError(f"{path}: a member must have one input and one output")

    def dims(value_info) -> list:
        return [d.dim_value if d.HasField("dim_value") else d.dim_param
                for d in value_info.type.tensor_type.shape.dim]

    shape, out = dims(model.graph.input[0]), dims(model.graph.output[0])
    if len(out) != 2 or not isinstance(out[1], int) or not all(isinstance(d, int) and d > 0 for d in shape[1:]):
        raise EdgeCommitteeError(f"{path}: expected input (batch, fixed dims...) and output (batch, classes); "
                                 f"got {shape} -> {out}")
    return tuple(shape[1:]), int(out[1])


class TorchMember(DeviceMember):
    """One member as a PyTorch module on the GPU (FP32 or FP16), converted from ONNX by onnx2torch.

    ``activate(device)`` takes a CUDA device ordinal, or ``"cpu"``: on the CPU the same module runs
    eagerly, which the CPU tests of the device runtime use. ``enqueue`` runs the module under
    ``torch.no_grad`` on ``stream`` and copies the logits into ``out`` (float32); once warmed up for a
    batch size it allocates only from PyTorch's caching allocator, so ``torch.cuda.graph`` captures it.

    Args:
        path: the member's ONNX file.
        name: the member's name (default: the file name).
        precision: ``fp32`` (default) or ``fp16`` (weights and input in half precision; logits are
            still written as float32).
    """

    def __init__(self, path: str | os.PathLike, name: str | None = None, precision: str = "fp32") -> None:
        if precision not in PRECISIONS:
            raise EdgeCommitteeError(f"precision {precision!r} is not known; use one of {', '.join(PRECISIONS)}")
        self.path = Path(path)
        self.name = name or self.path.name
        self.precision = precision
        self.input_dtype = PRECISIONS[precision][1]
        self.input_shape, self.num_classes = onnx_io(self.path)
        self.module = None
        self.device = None

    def activate(self, device: int | str = 0) -> None:
        torch = require("torch")
        self.device = torch.device(device) if isinstance(device, str) else torch.device("cuda", int(device))
        dtype = getattr(torch, PRECISIONS[self.precision][0])
        self.module = ModuleFromOnnx(self.path)().to(device=self.device, dtype=dtype)

    def deactivate(self) -> None:
        self.module = None

    def enqueue(self, inp, out, stream) -> None:
        """Run ``inp`` (B, *input_shape) of ``input_dtype`` into ``out`` (B, classes) float32 on ``stream``."""
        torch = require("torch")
        ctx = torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()
        with ctx, torch.no_grad():
            out.copy_(self.module(inp))
