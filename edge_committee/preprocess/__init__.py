"""Preprocessing: one plan (the specification), several executors side by side.

- :mod:`.filters` -- resize weights and crop geometry exactly as PIL, PyTorch and TensorFlow compute them;
- :mod:`.plan` -- :class:`PreprocessPlan`, built by ``Preprocessing.plan()`` (``spec/preprocess.py`` holds
  the YAML-facing keys), with its NumPy reference :meth:`PreprocessPlan.apply`;
- :mod:`.cpu` -- the plan at native speed on the CPU (banded C++ resampler; ``exact`` and ``fast`` modes);
- :mod:`.shared` -- one batch's preprocessing across a cascade's members (decode once, resize once per geometry);
- :mod:`.torch_exec` -- the plan on torch tensors (the device runtime; integer or float32 taps, never float64);
- :mod:`.onnx_ops` -- the plan as ONNX ops (the fused cascade file; banded Gather, no dense matrices).

Importing this package imports neither torch nor onnx.
"""

from edge_committee.preprocess.plan import Geometry, PreprocessPlan, ResizeStep, build_plan

__all__ = ["Geometry", "PreprocessPlan", "ResizeStep", "build_plan"]
