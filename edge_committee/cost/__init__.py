"""Cost stage: MACs / FLOPs of a member counted from its ONNX graph.

onnx is imported only when a function runs, never when this package is imported.
"""

from edge_committee.cost.macs import MacsReport, NodeMacs, count_macs

__all__ = ["MacsReport", "NodeMacs", "count_macs"]
