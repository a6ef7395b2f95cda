"""Loaders for PyTorch members: a ``torch.nn.Module`` from a member's ONNX file, through onnx2torch.

``ModuleFromOnnx(path)()`` converts the bundle's ONNX file (the artifact every backend shares) to a
PyTorch ``fx.GraphModule``, with its shape computations folded to constants and Reshape/Pad holding
Python ints, so that the module never reads a device value on the host (:mod:`.capturable`). onnx2torch converts the example's members and real MobileNetV2 /
EfficientNet-Lite exports with a max |diff| of about 1e-6 to 7e-6 against ONNX Runtime (tested in
``tests/backend/test_torch_cuda_convert.py``).

onnx2torch imports torchvision at import time, only for its NMS and RoiAlign converters. The
torchvision wheel on PyPI is a CUDA build: next to the CPU torch wheel its custom ops do not load and
``import torchvision`` raises. A classifier needs neither converter, so when torchvision cannot be
imported, onnx2torch is imported against a stand-in whose ``ops`` raise a clear error if a model ever
uses them; the stand-in is removed from ``sys.modules`` right after, so nothing else sees it.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import types
from pathlib import Path

from edge_committee._lazy import require
from edge_committee.backend.torch_cuda.capturable import fold_shapes, static_modules
from edge_committee.errors import DependencyError, EdgeCommitteeError

LOG = logging.getLogger("edge_committee")

_ONNX2TORCH_PIP = "pip install onnx2torch torch==<your torch version> (pin torch so pip keeps your build)"


def _torchvision_error() -> str | None:
    """Why ``import torchvision`` fails here, or None when it works (or is simply absent)."""
    before = set(sys.modules)
    try:
        importlib.import_module("torchvision")
        return None
    except ImportError as exc:
        if getattr(exc, "name", None) == "torchvision":
            return None  # not installed: onnx2torch's own import reports it
        reason = str(exc)
    except Exception as exc:  # noqa: BLE001 - a CUDA torchvision under CPU torch raises RuntimeError
        reason = f"{type(exc).__name__}: {exc}"
    for name in set(sys.modules) - before:  # forget the half-imported package
        if name == "torchvision" or name.startswith("torchvision."):
            del sys.modules[name]
    return reason


def _torchvision_stand_in(reason: str) -> types.ModuleType:
    def unavailable(*_args, **_kwargs):
        raise DependencyError(
            f"this model uses a torchvision op (NMS or RoiAlign), but torchvision does not import here "
            f"({reason}); install the torchvision build that matches your torch"
        )

    tv = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    ops.nms = ops.box_convert = ops.roi_align = unavailable
    tv.ops = ops
    return tv


def import_onnx2torch() -> types.ModuleType:
    """The ``onnx2torch`` module (see the module docstring about torchvision)."""
    require("torch")
    if "onnx2torch" in sys.modules:
        return sys.modules["onnx2torch"]
    if importlib.util.find_spec("onnx2torch") is None:
        raise DependencyError(f"the torch-cuda backend converts ONNX members with onnx2torch, which is not "
                              f"installed; install it with: {_ONNX2TORCH_PIP}")
    reason = _torchvision_error()
    if reason is None:
        return importlib.import_module("onnx2torch")
    stand_in = _torchvision_stand_in(reason)
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = stand_in, stand_in.ops
    try:
        module = importlib.import_module("onnx2torch")
    finally:
        for name in ("torchvision", "torchvision.ops"):
            if sys.modules.get(name) in (stand_in, stand_in.ops):
                del sys.modules[name]
    LOG.debug("onnx2torch imported without torchvision (%s); its NMS/RoiAlign converters are disabled", reason)
    return module


class ModuleFromOnnx:
    """Loader: ``ModuleFromOnnx(path)()`` -> a ``torch.nn.Module`` in eval mode, on the CPU, float32.

    Args:
        path: an ONNX file with one input and one output (a member of a bundle).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __call__(self):
        onnx = require("onnx")
        onnx2torch = import_onnx2torch()
        if not self.path.is_file():
            raise EdgeCommitteeError(f"{self.path}: no such ONNX file")
        model = onnx.load(str(self.path))
        qdq = sorted({n.op_type for n in model.graph.node} & {"QuantizeLinear", "DequantizeLinear"})
        if qdq:
            raise EdgeCommitteeError(
                f"{self.path}: an INT8 member ({', '.join(qdq)} nodes) cannot run on torch-cuda; run it with TensorRT, "
                "or build the bundle with precision fp32 or fp16 for this backend"
            )
        model, report = fold_shapes(model)  # capturable: no shape read from a tensor (capturable.py)
        try:
            module = onnx2torch.convert(model)
        except Exception as exc:  # noqa: BLE001 - an unsupported op is the user's model, not our bug
            raise EdgeCommitteeError(
                f"{self.path}: onnx2torch cannot convert this model ({type(exc).__name__}: {exc}); "
                "run it with --backend onnxrt, or export an FP32 ONNX file with standard ops"
            ) from None
        static = static_modules(module)
        LOG.debug("%s: %s; %d Reshape/Pad modules with Python-int shapes", self.path.name, report, static)
        return module.eval()
