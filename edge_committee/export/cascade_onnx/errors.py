"""Errors of the fused-cascade export: a user's bundle or choice that cannot be fused."""

from edge_committee.errors import EdgeCommitteeError


class FusedExportError(EdgeCommitteeError):
    """The cascade cannot be written as one ONNX file (the message says which part and why)."""
