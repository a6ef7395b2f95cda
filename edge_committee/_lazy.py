"""Import heavy optional dependencies where they are used, with a message naming the package."""

from __future__ import annotations

import importlib
import types

from edge_committee.errors import DependencyError

#: module name -> pip requirement that provides it
_PIP_NAMES = {
    "torch": "torch==2.13.0 (CPU build)",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "onnxconverter_common": "onnxconverter-common",
    "yaml": "pyyaml",
    "safetensors": "safetensors",
    "matplotlib": "matplotlib",
    "tqdm": "tqdm",
    "PIL": "pillow",
    "tensorrt": "tensorrt-cu12 or tensorrt-cu13 (on Jetson: JetPack ships it; see docs/tensorrt.md)",
    "cv2": "opencv-python-headless",
    "scipy": "scipy (or: pip install edge-committee[committees])",
    "av": "av (PyAV; or: pip install edge-committee[stream])",
    "onnx2torch": "onnx2torch torch==<your torch version>",
    "cuda": "cuda-bindings (the major version of your CUDA driver, e.g. cuda-bindings>=13,<14)",
    "tritonclient": "'tritonclient[http,grpc]'",
    "pytriton": "--no-deps nvidia-pytriton==0.7.0 (the bundled tritonserver; it pins numpy<2, which it does not need here)",
}


def require(name: str) -> types.ModuleType:
    """Import module ``name`` now, or raise :class:`DependencyError` saying what to install."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        top = name.split(".")[0]
        pip = _PIP_NAMES.get(top, top)
        raise DependencyError(
            f"this step needs the Python package '{top}', which is not installed "
            f"({exc}); install it with: pip install {pip}"
        ) from exc
