"""A small node list with unique names: what every part of the fused graph is built with.

onnx.helper makes single nodes; this keeps the nodes and initializers of one graph (the main
graph or one ``If`` branch) together and names everything ``<prefix><hint>_<n>`` so that names
never collide across members, stages and branches (ONNX names are global over all subgraphs).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_committee._lazy import require


class GraphBuilder:
    """Nodes, initializers and unique names for one ONNX graph.

    Args:
        prefix: put before every generated name (e.g. ``"s1/pre."``).
    """

    def __init__(self, prefix: str) -> None:
        self.onnx = require("onnx")
        self.prefix = prefix
        self.nodes: list = []
        self.initializers: list = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{self.prefix}{hint}_{self._count}"

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, outputs: list[str] | None = None,
           **attrs: Any) -> str:
        """Append one node; returns its (first) output name."""
        outputs = outputs or [self.name(hint or op_type.lower())]
        node = self.onnx.helper.make_node(op_type, inputs, outputs, name=self.name(op_type), **attrs)
        self.nodes.append(node)
        return outputs[0]

    def const(self, value: Any, hint: str, dtype: Any = None) -> str:
        """An initializer holding ``value`` (a NumPy array or scalar; ``dtype`` overrides its type)."""
        arr = np.asarray(value, dtype=dtype)
        name = self.name(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(arr, name))
        return name

    def graph(self, name: str, inputs: list, outputs: list) -> Any:
        """The GraphProto of the nodes so far."""
        return self.onnx.helper.make_graph(self.nodes, name, inputs, outputs, self.initializers)


def rename_inputs(nodes: list, mapping: dict[str, str]) -> None:
    """Rewire node inputs named in ``mapping``, also inside subgraphs (outer-scope references)."""
    for node in nodes:
        for i, name in enumerate(node.input):
            if name in mapping:
                node.input[i] = mapping[name]
        for attr in node.attribute:
            if attr.HasField("g"):
                rename_inputs(list(attr.g.node), mapping)
            for sub in attr.graphs:
                rename_inputs(list(sub.node), mapping)


def walk_nodes(graph: Any):
    """Every node of ``graph`` and of its subgraphs, depth first, with the graph holding it."""
    for node in graph.node:
        yield node, graph
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from walk_nodes(attr.g)
            for sub in attr.graphs:
                yield from walk_nodes(sub)
