"""The whole cascade as ONE CUDA graph whose later stages sit in conditional nodes (``cuda.bindings``).

Built from the stage graphs PyTorch captured (``torch.cuda.CUDAGraph(keep_graph=True)``; their memory
stays in PyTorch's graph pool while the runtime holds them), as a flat chain::

    slots <- this graph's handles -> stage 0 @ b0 -> COND h1 { stage 1 } -> COND h2 { stage 2 } ... -> finalize @ b0

Two kinds (:mod:`.buckets` chooses):

- ``switch`` (CUDA >= 12.8): ``COND`` is a SWITCH node with one case per bucket ``<= b0``; case ``i``
  runs stage ``k`` at bucket ``buckets[i]``, so every stage runs at its survivors' bucket;
- ``if`` (CUDA >= 12.4): ``COND`` is an IF node whose body runs stage ``k`` at ``b0``.

The condition of stage ``k + 1`` is set by the survivor fix-up at the end of stage ``k`` itself (the
CUDA gate kernel's last block, ``GateFix``, else ``ec_fix_and_set`` of :mod:`.kernels`): it reads
the handle from the context's *slots*, which the
graph's first node fills with its own handles. A stage that does not run leaves the survivor count
at 0, so no later stage runs either (a SWITCH value >= its size runs no case); handles are created
with ``CU_GRAPH_COND_ASSIGN_DEFAULT`` and a default that runs nothing. ``EC_GRAPH_SETTER=node`` adds
a separate setter node per stage instead (one more node; for telling problems apart on a new GPU).

Conditional IF nodes need a CUDA 12.4 driver, SWITCH 12.8 (:data:`MIN_DRIVER`,
:data:`MIN_SWITCH_DRIVER`); body graphs may hold only kernel, memcpy, memset, empty, child-graph and
conditional nodes, so a member whose capture holds anything else (an event or memory-allocation
node) fails to instantiate, and the runtime falls back to its host loop and says why.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any, Mapping, Sequence

from edge_committee.backend.device.kernels import DeviceKernels, check, driver, pack_args

#: The first driver version with conditional IF nodes set from a kernel (12.4 -> 12040).
MIN_DRIVER = 12040
#: The first driver version with SWITCH conditional nodes (12.8 -> 12080).
MIN_SWITCH_DRIVER = 12080
#: slot kinds read by ``ec_fix_and_set``
KIND_IF, KIND_SWITCH = 1, 2


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


def switch_available() -> bool:
    """True where the driver has SWITCH conditional nodes (call only after :func:`graph_mode_unavailable`)."""
    try:
        return driver_version() >= MIN_SWITCH_DRIVER
    except Exception:  # noqa: BLE001
        return False


def _torch():
    from edge_committee._lazy import require

    return require("torch")


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
        stages: per stage, ``{bucket: raw cudaGraph_t}``: stage 0 holds ``b0`` only; later stages hold
            ``b0`` (``if``) or every bucket ``<= b0`` (``switch``).
        finalize: the raw graph that gathers the outputs (at ``b0``).
        real_count: the int32 device tensor of one element the stages write their survivor count to.
        kernels: the compiled kernels (:class:`.kernels.DeviceKernels`).
        stream: the runtime's ``torch.cuda.Stream`` (its context owns the graph's handles).
        kind: ``switch`` or ``if``.
        slots: the (K, 2) int64 device tensor the stages' fix-up reads ``{handle, kind}`` of the next
            stage from (row ``k`` for stage ``k``).
        buckets_dev: the runtime's buckets (int32, on the device; the SWITCH values index them).
    """

    def __init__(self, stages: Sequence[Mapping[int, int]], finalize: int, real_count, kernels: DeviceKernels,
                 stream, kind: str = "if", slots=None, buckets_dev=None) -> None:
        cu = self.cu = driver()
        self._keep: list = []
        self.kind = kind
        self.separate_setters = os.environ.get("EC_GRAPH_SETTER", "fused") == "node" or slots is None
        self.graph = check(cu.cuGraphCreate(0), "cuGraphCreate")
        try:
            self._build(stages, finalize, real_count, kernels, stream, slots, buckets_dev)
            self.exec = check(cu.cuGraphInstantiate(self.graph, 0), "cuGraphInstantiate (conditional cascade graph)")
        except Exception:
            self.close()  # a partly built graph is not leaked (review #21)
            raise

    def _build(self, stages, finalize, real_count, kernels, stream, slots, buckets_dev) -> None:
        cu, torch = self.cu, _torch()
        ctx = check(cu.cuStreamGetCtx(cu.CUstream(stream.cuda_stream)), "cuStreamGetCtx")
        kind_id = KIND_SWITCH if self.kind == "switch" else KIND_IF
        b0 = next(iter(stages[0]))
        cases = sorted(b for b in stages[1]) if len(stages) > 1 else []
        handles = [0] * len(stages)  # row k: the handle of stage k's conditional node (row 0 unused)
        for k in range(1, len(stages)):
            default = len(cases) if self.kind == "switch" else 0  # nothing runs unless a stage says so
            handles[k] = check(cu.cuGraphConditionalHandleCreate(self.graph, ctx, default,
                                                                 cu.CU_GRAPH_COND_ASSIGN_DEFAULT),
                               "cuGraphConditionalHandleCreate")
        deps: list = []
        if not self.separate_setters:  # first node: this graph's handles into the slots the stages read
            table = [[int(h), kind_id if k else 0] for k, h in enumerate(handles)]
            self.table = torch.tensor(table, dtype=torch.int64, device=slots.device)
            deps = [self._add_kernel(kernels.copy_slots, [], (self.table.data_ptr(), ctypes.c_void_p),
                                     (slots.data_ptr(), ctypes.c_void_p), (slots.numel(), ctypes.c_int))]
        deps = [check(cu.cuGraphAddChildGraphNode(self.graph, deps, len(deps), cu.CUgraph(int(stages[0][b0]))),
                      "cuGraphAddChildGraphNode(stage 0)")]
        for k in range(1, len(stages)):
            if self.separate_setters:
                deps = [self._add_kernel(kernels.set_condition, deps, (int(handles[k]), ctypes.c_uint64),
                                         (real_count.data_ptr(), ctypes.c_void_p), (kind_id, ctypes.c_uint64),
                                         (buckets_dev.data_ptr(), ctypes.c_void_p), (len(cases), ctypes.c_int))]
            order = cases if self.kind == "switch" else [b0]
            node, bodies = self._add_conditional(deps, handles[k], ctx, len(order))
            for i, b in enumerate(order):
                check(cu.cuGraphAddChildGraphNode(bodies[i], [], 0, cu.CUgraph(int(stages[k][b]))),
                      f"cuGraphAddChildGraphNode(stage {k} at bucket {b})")
            deps = [node]
        check(cu.cuGraphAddChildGraphNode(self.graph, deps, len(deps), cu.CUgraph(int(finalize))),
              "cuGraphAddChildGraphNode(finalize)")

    def _add_kernel(self, func, deps, *args):
        cu = self.cu
        params, keep = pack_args(*args)
        self._keep += [params, keep]
        node = cu.CUDA_KERNEL_NODE_PARAMS()
        node.func = func
        node.gridDimX = node.gridDimY = node.gridDimZ = 1
        node.blockDimX = node.blockDimY = node.blockDimZ = 1
        node.sharedMemBytes = 0
        node.kernelParams = ctypes.addressof(params)
        return check(cu.cuGraphAddKernelNode(self.graph, deps, len(deps), node), "cuGraphAddKernelNode")

    def _add_conditional(self, deps, handle, ctx, size: int):
        cu = self.cu
        params = cu.CUgraphNodeParams()
        params.type = cu.CUgraphNodeType.CU_GRAPH_NODE_TYPE_CONDITIONAL
        params.conditional.handle = handle
        params.conditional.type = (cu.CUgraphConditionalNodeType.CU_GRAPH_COND_TYPE_SWITCH if self.kind == "switch"
                                   else cu.CUgraphConditionalNodeType.CU_GRAPH_COND_TYPE_IF)
        params.conditional.size = size
        params.conditional.ctx = ctx
        node = _add_node(cu, self.graph, deps, params)
        return node, [params.conditional.phGraph_out[i] for i in range(size)]

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
