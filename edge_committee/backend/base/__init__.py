from edge_committee.backend.base.runner import BaseRunner

__all__ = ["BaseRunner"]
