"""One member of an edge_committee bundle as a Python-backend model running ONNX Runtime.

Written by ``export-triton --member-backend python-ort`` for servers without Triton's
``onnxruntime`` backend. ``model.onnx`` beside this file; the session is the SDK's own ONNX
Runtime runner, from the copy of ``edge_committee`` in ``_sdk/`` (see
``edge_committee/serve/triton/member_ort.py``). Needs the ``onnxruntime`` package in the
server's Python environment.
"""

import os
import sys

# this export's copy of the SDK first, even where another edge_committee is installed
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "_sdk"))

from edge_committee.serve.triton.member_ort import OrtMemberModel as TritonPythonModel

__all__ = ["TritonPythonModel"]
