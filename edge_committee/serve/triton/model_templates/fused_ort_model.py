"""An edge_committee cascade as one fused ONNX file in a Python-backend model running ONNX Runtime.

Written by ``export-triton --form fused --member-backend python-ort`` for servers without Triton's
``onnxruntime`` backend (the one ``nvidia-pytriton`` bundles). ``model.onnx`` beside this file is
the ``export-onnx`` file; the session code is in the copy of ``edge_committee`` in ``_sdk/``
(``edge_committee/serve/triton/member_ort.py``). Needs ``onnxruntime`` in the server's Python.
"""

import os
import sys

# this export's copy of the SDK first, even where another edge_committee is installed
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "_sdk"))

from edge_committee.serve.triton.member_ort import FusedOrtModel as TritonPythonModel

__all__ = ["TritonPythonModel"]
