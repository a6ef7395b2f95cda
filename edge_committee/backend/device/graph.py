"""The whole cascade as ONE CUDA graph whose later stages sit in conditional IF nodes (``cuda.bindings``).

Built from the stage graphs PyTorch captured (``torch.cuda.CUDAGraph(keep_graph=True)``; their memory
stays in PyTorch's graph pool while the runtime holds them) and one setter kernel per stage::

    stage 0 -> set(h1) -> IF h1 { stage 1 -> set(h2) -> IF h2 { stage 2 ... } } -> finalize

``set(h)`` (:data:`.kernels.SOURCE`, ``ec_set_condition``) writes ``real_count > 0`` into the
handle, so a later stage runs only when some sample survived, and the host never waits between
stages. Each stage graph is added as a child-graph node (a copy); the handles are created with
``CU_GRAPH_COND_ASSIGN_DEFAULT`` and default 0, so every launch starts with every IF closed.

Conditional IF nodes need a CUDA 12.4 driver (:data:`MIN_DRIVER`); body graphs may hold only kernel,
memcpy, memset, empty, child-graph and conditional nodes, so a member whose capture holds anything
else (an event or memory-allocation node) fails to instantiate, and the runtime falls back to its
host loop and says why.
"""

from __future__ import annotations

import ctypes
from typing import Any, Sequence

from edge_committee.backend.device.kernels import DeviceKernels, check, driver, pack_args

#: The first driver version with conditional IF nodes set from a kernel (12.4 -> 12040).
MIN_DRIVER = 12040


def driver_version() -> int:
    """The CUDA driver's version as an int (13000 = 13.0)."""
    return int(check(driver().cuDriverGetVersion(), "cuDriverGetVersion"))


def graph_mode_unavailable(torch) -> str | None:
    """Why the conditional graph cannot be built here, or None if it can (checked before any capture)."""
    if not hasattr(torch.cuda.CUDAGraph, "raw_cuda_graph"):
        return f"PyTorch {torch.__version__} cannot hand out a captured graph (CUDAGraph.raw_cuda_graph needs >= 2.7)"
    try:
        version = driver_version()
    except Exception as exc:  # noqa: BLE001 - cuda-bindings missing or no driver: say which
        return f"cuda.bindings is not usable ({exc})"
    if version < MIN_DRIVER:
        return f"the CUDA driver is {version // 1000}.{version % 1000 // 10}; conditional graph nodes need 12.4"
    return None


def _add_node(cu, graph, deps: Sequence[Any], params) -> Any:
    """cuGraphAddNode across cuda-bindings versions (12.x: no edge data; 13.x: edge data argument)."""
    if hasattr(cu, "cuGraphAddNode_v2"):
        return check(cu.cuGraphAddNode_v2(graph, list(deps), None, len(deps), params), "cuGraphAddNode_v2")
    if "dependencyData" in (cu.cuGraphAddNode.__doc__ or "").split("\n", 1)[0]:
        return check(cu.cuGraphAddNode(graph, list(deps), None, len(deps), params), "cuGraphAddNode")
    return check(cu.cuGraphAddNode(graph, list(deps), len(deps), params), "cuGraphAddNode")


class ConditionalCascadeGraph:
    """An instantiated cascade graph (see the module docstring); ``launch(stream)`` runs it.

    Args:
        stages: the raw ``cudaGraph_t`` (int) of each stage, in order.
        finalize: the raw graph that gathers the outputs after the last stage that ran.
        real_count: the int32 device tensor of one element the stages write their survivor count to.
        kernels: the compiled setter kernel.
        stream: the runtime's ``torch.cuda.Stream`` (its context owns the graph's handles).
    """

    def __init__(self, stages: Sequence[int], finalize: int, real_count, kernels: DeviceKernels, stream) -> None:
        cu = self.cu = driver()
        self._keep: list = []
        self.graph = check(cu.cuGraphCreate(0), "cuGraphCreate")
        ctx = check(cu.cuStreamGetCtx(cu.CUstream(stream.cuda_stream)), "cuStreamGetCtx")
        parent, deps, top_last = self.graph, [], None
        for k, stage in enumerate(stages):
            node = check(cu.cuGraphAddChildGraphNode(parent, deps, len(deps), cu.CUgraph(int(stage))),
                         f"cuGraphAddChildGraphNode(stage {k})")
            if k == 0:
                top_last = node
            if k + 1 == len(stages):
                break
            handle = check(cu.cuGraphConditionalHandleCreate(parent, ctx, 0, cu.CU_GRAPH_COND_ASSIGN_DEFAULT),
                           "cuGraphConditionalHandleCreate")
            setter = self._add_setter(parent, [node], kernels, handle, real_count)
            cond, body = self._add_if(parent, [setter], handle, ctx)
            if k == 0:
                top_last = cond
            parent, deps = body, []
        check(cu.cuGraphAddChildGraphNode(self.graph, [top_last], 1, cu.CUgraph(int(finalize))),
              "cuGraphAddChildGraphNode(finalize)")
        self.exec = check(cu.cuGraphInstantiate(self.graph, 0), "cuGraphInstantiate (conditional cascade graph)")

    def _add_setter(self, graph, deps, kernels: DeviceKernels, handle, real_count):
        cu = self.cu
        params, keep = pack_args((int(handle), ctypes.c_uint64), (real_count.data_ptr(), ctypes.c_void_p))
        self._keep += [params, keep]
        node = cu.CUDA_KERNEL_NODE_PARAMS()
        node.func = kernels.set_condition
        node.gridDimX = node.gridDimY = node.gridDimZ = 1
        node.blockDimX = node.blockDimY = node.blockDimZ = 1
        node.sharedMemBytes = 0
        node.kernelParams = ctypes.addressof(params)
        return check(cu.cuGraphAddKernelNode(graph, deps, len(deps), node), "cuGraphAddKernelNode(ec_set_condition)")

    def _add_if(self, graph, deps, handle, ctx):
        cu = self.cu
        params = cu.CUgraphNodeParams()
        params.type = cu.CUgraphNodeType.CU_GRAPH_NODE_TYPE_CONDITIONAL
        params.conditional.handle = handle
        params.conditional.type = cu.CUgraphConditionalNodeType.CU_GRAPH_COND_TYPE_IF
        params.conditional.size = 1
        params.conditional.ctx = ctx
        node = _add_node(cu, graph, deps, params)
        return node, params.conditional.phGraph_out[0]

    def upload(self, stream) -> None:
        check(self.cu.cuGraphUpload(self.exec, self.cu.CUstream(stream.cuda_stream)), "cuGraphUpload")

    def launch(self, stream) -> None:
        """Enqueue the whole cascade on ``stream`` (a ``torch.cuda.Stream``); returns at once."""
        check(self.cu.cuGraphLaunch(self.exec, self.cu.CUstream(stream.cuda_stream)), "cuGraphLaunch")

    def close(self) -> None:
        if getattr(self, "exec", None) is not None:
            self.cu.cuGraphExecDestroy(self.exec)
            self.exec = None
        if getattr(self, "graph", None) is not None:
            self.cu.cuGraphDestroy(self.graph)
            self.graph = None
