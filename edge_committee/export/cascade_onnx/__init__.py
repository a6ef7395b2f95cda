"""The whole cascade as one ONNX file (preprocessing, members, gates, early exit); see docs/fused_onnx.md.

- :func:`build_cascade_model` -- the graph, from member files, a committee and a source size;
- :func:`export_cascade_onnx` -- from a bundle: resolve the cascade and source size, write the file
  atomically (and into the bundle, listed in its manifest, when asked).

onnx is imported only when these functions run.
"""

from edge_committee.export.cascade_onnx.build import (
    INPUT,
    OUTPUTS,
    CascadeDef,
    Source,
    build_cascade_model,
    read_metadata,
)
from edge_committee.export.cascade_onnx.errors import FusedExportError
from edge_committee.export.cascade_onnx.gate import FORMS, GATES
from edge_committee.export.cascade_onnx.inline import MemberSource

__all__ = ["FORMS", "GATES", "INPUT", "OUTPUTS", "CascadeDef", "FusedExportError", "MemberSource", "Source",
           "build_cascade_model", "read_metadata"]
