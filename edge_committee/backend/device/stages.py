"""Buffers and stage functions of the device runtime for one source image shape (see :mod:`.runtime`).

Device state (``capacity`` = the largest bucket; rows ``capacity + j`` are the sinks of padded slot ``j``):
``prob_sum`` (2 cap, C) float32, ``istate`` (3, 2 cap) int32 = label, exit stage, flag; ``conf``
(2 cap,) float32; two survivor-index buffers used in turn (``act``), the image rows to gather
(``gidx``), the gate's survivor count and the real survivor count (``real``).

Stage ``k`` for bucket ``b`` (:meth:`ShapeContext._stage_fn`), all enqueued on the runtime's stream:
[stage 0: reset rows 0..b-1, indices 0..n-1 plus sinks] -> gather ``frames[gidx[:b]]`` ->
preprocessing -> member -> gate (``act[k % 2][:b]`` -> survivors in ``act[(k+1) % 2]``) -> [not the
last stage: fix the survivors, count the real ones into ``real``, set the next stage's conditional
(:mod:`.graph`); the CUDA gate kernel does this in its own last block, else one more kernel]. :meth:`ShapeContext._finalize_fn`
writes the mean probabilities at the exit stage and the other outputs; :meth:`ShapeContext.download`
copies them back once.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Callable

import numpy as np

from edge_committee.backend.device.gate import contributions_torch, fix_survivors_torch
from edge_committee.preprocess.torch_exec import TorchPlan

LOG = logging.getLogger("edge_committee")


class Segment:
    """A piece of stream work: run eagerly (CPU), or captured once as a CUDA graph and replayed.

    On CUDA, ``fn`` runs once uncaptured first (cuDNN algorithm choice, lazy initialization, the gate's
    workspace), then is captured with ``keep_graph=True`` so :mod:`.graph` can copy it into the
    conditional cascade graph. Segments are made lazily, possibly between two stages of a run, so
    the warm-up runs inside ``preserve()``, which restores the state it changed.
    """

    def __init__(self, fn: Callable[[], None], runtime, pool, preserve: Callable | None = None,
                 name: str = "segment") -> None:
        self.fn, self.name, self.runtime = fn, name, runtime
        self.graph = None
        #: why this segment runs eagerly on a GPU (it could not be captured), else None
        self.capture_error: str | None = None
        if runtime.is_cuda:
            torch = runtime.torch
            with runtime.precision_context():
                with torch.cuda.stream(runtime.stream), (preserve() if preserve else contextlib.nullcontext()):
                    fn()  # the warm-up really runs: ``preserve`` puts the state back afterwards
                runtime.stream.synchronize()
                self.graph = self._capture(torch, fn, runtime, pool)

    def _capture(self, torch, fn, runtime, pool):
        graph = torch.cuda.CUDAGraph(keep_graph=True)
        try:
            with torch.cuda.graph(graph, pool=pool, stream=runtime.stream):
                fn()
            graph.instantiate()
            return graph
        except Exception as exc:  # noqa: BLE001 - e.g. a member that reads a device value on the host
            self.capture_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            LOG.warning("device runtime: %s cannot be captured as a CUDA graph (%s); it runs eagerly, "
                        "and graph mode is off", self.name, self.capture_error)
            return None

    def __call__(self) -> None:
        if self.graph is None:
            with self.runtime.precision_context():
                self.fn()
        else:
            self.graph.replay()  # on the current stream: the runtime runs inside its stream's context

    def raw(self) -> int:
        """The captured ``cudaGraph_t`` as an int (RuntimeError if it could not be captured)."""
        if self.graph is None:
            raise RuntimeError(f"{self.name} could not be captured ({self.capture_error})")
        return self.graph.raw_cuda_graph()


class ShapeContext:
    """Everything the runtime keeps for source images of one (H, W, C): buffers, plans, graphs."""

    def __init__(self, runtime, shape: tuple[int, int, int]) -> None:
        torch = runtime.torch
        self.rt, self.torch, self.shape = runtime, torch, shape
        cap, c, dev = runtime.capacity, runtime.num_classes, runtime.device
        self.cap = cap
        i32 = dict(dtype=torch.int32, device=dev)
        host = dict(pin_memory=True) if runtime.is_cuda else {}
        self.frames = torch.zeros((cap, *shape), dtype=torch.uint8, device=dev)
        self.frames_host = torch.zeros((cap, *shape), dtype=torch.uint8, **host)
        self.n_host, self.n_dev = torch.zeros(1, dtype=torch.int32, **host), torch.zeros(1, **i32)
        self.prob_sum = torch.zeros((2 * cap, c), dtype=torch.float32, device=dev)
        self.istate = torch.tensor(np.stack([np.full(2 * cap, -1), np.full(2 * cap, -1), np.zeros(2 * cap)]),
                                   **i32)
        self.reset_template = self.istate[:, :cap].clone()
        self.label, self.exit_stage, self.flag = self.istate[0], self.istate[1], self.istate[2]
        self.conf = torch.full((2 * cap,), float("nan"), dtype=torch.float32, device=dev)
        self.pos = torch.arange(cap, **i32)
        self.act = [self.pos + cap, self.pos + cap]
        self.gidx = torch.zeros(cap, **i32)
        self.gate_count, self.real = torch.zeros(1, **i32), torch.zeros(1, **i32)
        #: row k: {handle, kind} of stage k's conditional node in the graph being launched (0: host loop)
        self.slots = torch.zeros((len(runtime.members), 2), dtype=torch.int64, device=dev)
        self.buckets_dev = torch.tensor(runtime.buckets, **i32)
        self.real_host = torch.zeros(1, dtype=torch.int32, **host)
        self.logits = torch.zeros((cap, c), dtype=torch.float32, device=dev)
        self.probs_out = torch.zeros((cap, c), dtype=torch.float32, device=dev)
        self.meta_out = torch.zeros((4, cap), **i32)
        self.probs_host = torch.zeros((cap, c), dtype=torch.float32, **host)
        self.meta_host = torch.zeros((4, cap), dtype=torch.int32, **host)
        self.plans = [TorchPlan(pp.plan(shape[:2], shape[2]), dev, getattr(torch, m.input_dtype),
                                runtime.exact_preprocessing)
                      for m, pp in zip(runtime.members, runtime.preprocessing)]
        self.pool = torch.cuda.graph_pool_handle() if runtime.is_cuda else None
        #: a learned gate's per-sample state (log-probabilities, contributions; ``.learned``), else {}
        self.gate_buffers = runtime.gate_buffers(2 * cap)
        self._stages: dict[tuple[int, int], Segment] = {}
        self._finals: dict[int, Segment] = {}
        self._graphs: dict[tuple[str, int], object] = {}
        if runtime.is_cuda:
            torch.cuda.synchronize(dev)  # the buffers were filled on the current stream; the runtime uses its own
            self._prime_gate()

    def _prime_gate(self) -> None:
        """Grow the CUDA gate's module-owned workspace to ``capacity`` rows before any capture.

        The extension keeps one workspace per stream and reallocates it when a larger batch comes;
        a graph captured before that would keep the freed pointer. One uncaptured call at the
        largest size (on sink rows only) makes every later call fit.
        """
        rt, cap = self.rt, self.cap
        with self.torch.cuda.stream(rt.stream):
            rt.gate_step(self.prob_sum, self.label, self.conf, self.exit_stage, self.flag, self.act[0][:cap],
                         self.logits[:cap], self.act[1], self.gate_count, 0, 2, 2.0, rt.confidence, stream=rt.stream,
                         **self.gate_buffers)
        rt.stream.synchronize()

    # ------------------------------------------------------------------ stage functions
    def _fix(self, src, count, b: int, out, next_stage: int | None = None) -> None:
        """The survivor fix-up; after stage ``next_stage - 1`` it also sets ``next_stage``'s condition."""
        kernels = self.rt.kernels
        if kernels is not None:
            slot = self.slots[next_stage] if next_stage is not None else None
            kernels.fix_survivors(src, count, b, self.cap, out, self.gidx, self.real, stream=self.rt.stream,
                                  slot=slot, buckets=self.buckets_dev)
        else:
            fix_survivors_torch(src, count, b, self.cap, out, self.gidx, self.real, self.pos)

    def _fix_args(self, b: int, next_stage: int) -> dict:
        """The CUDA gate's fused fix-up (``GateFix``): the same writes as :meth:`_fix`, in the gate's launch."""
        return {"rows": b, "capacity": self.cap, "gather_index": self.gidx, "real_count": self.real,
                "slot": self.slots[next_stage], "buckets": self.buckets_dev}

    def _reset(self, b: int) -> None:
        self.prob_sum[:b].zero_()
        self.conf[:b].fill_(float("nan"))
        self.istate[:, :b].copy_(self.reset_template[:, :b])

    def _stage_fn(self, k: int, b: int) -> Callable[[], None]:
        rt = self.rt
        last = len(rt.members) - 1

        def stage() -> None:
            a_in, a_out = self.act[k % 2], self.act[(k + 1) % 2]
            if k == 0:
                self._reset(b)
                self._fix(None, self.n_dev, b, a_in)
            x = self.frames.index_select(0, self.gidx[:b])
            rt.members[k].enqueue(self.plans[k](x), self.logits[:b], rt.stream)
            fused = rt.gate_fuses_fix and k < last  # the gate kernel's last block does the fix-up and the setter
            extra = {**self.gate_buffers, "fix": self._fix_args(b, k + 1)} if fused else self.gate_buffers
            rt.gate_step(self.prob_sum, self.label, self.conf, self.exit_stage, self.flag, a_in[:b], self.logits[:b],
                         a_out, self.gate_count, k, last + 1, rt.thresholds[k], rt.confidence, stream=rt.stream,
                         **extra)
            if k < last and not fused:
                self._fix(a_out, self.gate_count, b, a_out, next_stage=k + 1)

        return stage

    def _finalize_fn(self, b: int) -> Callable[[], None]:
        torch = self.torch

        def finalize() -> None:
            ps = self.prob_sum[:b]  # the mean over the stages that contributed, as GateState.mean_probs
            torch.div(ps, contributions_torch(ps)[:, None], out=self.probs_out[:b])
            self.meta_out[:3, :b].copy_(self.istate[:, :b])
            self.meta_out[3, :b].copy_(self.conf[:b].view(torch.int32))

        return finalize

    @contextlib.contextmanager
    def preserve(self):
        """Restore every buffer a stage or finalize writes (used around warm-ups; on the stream)."""
        buffers = [self.prob_sum, self.istate, self.conf, *self.act, self.gidx, self.gate_count, self.real,
                   self.logits, self.probs_out, self.meta_out, *self.gate_buffers.values()]
        saved = [t.clone() for t in buffers]
        try:
            yield
        finally:
            for t, old in zip(buffers, saved):
                t.copy_(old)

    def stage(self, k: int, b: int) -> Segment:
        if (k, b) not in self._stages:
            self.clear_slots()  # the warm-up runs the fix-up eagerly: no graph's handle may be set outside it
            self._stages[k, b] = Segment(self._stage_fn(k, b), self.rt, self.pool, self.preserve,
                                         f"stage {k} ({self.rt.members[k].name}) at batch {b}")
        return self._stages[k, b]

    def finalize(self, b: int) -> Segment:
        if b not in self._finals:
            self._finals[b] = Segment(self._finalize_fn(b), self.rt, self.pool, self.preserve, f"finalize at batch {b}")
        return self._finals[b]

    def graph(self, b: int, kind: str = "if"):
        """The conditional cascade graph of ``kind`` (``switch`` or ``if``) for first bucket ``b`` (built on first use).

        ``switch``: later stages at every bucket ``<= b`` (one SWITCH case each); ``if``: at ``b``.
        """
        if (kind, b) not in self._graphs:
            from edge_committee.backend.device.graph import ConditionalCascadeGraph

            later = [x for x in self.rt.buckets if x <= b] if kind == "switch" else [b]
            stages = [{b: self.stage(0, b).raw()}] + [{x: self.stage(k, x).raw() for x in later}
                                                      for k in range(1, len(self.rt.members))]
            g = ConditionalCascadeGraph(stages, self.finalize(b).raw(), self.real, self.rt.kernels, self.rt.stream,
                                        kind=kind, slots=self.slots, buckets_dev=self.buckets_dev)
            g.upload(self.rt.stream)
            self._graphs[kind, b] = g
        return self._graphs[kind, b]

    def clear_slots(self) -> None:
        """No conditional handles for the stages' fix-up (host loop, separate setter nodes); on the stream."""
        if self.rt.kernels is not None:
            with self.stream_context():
                self.slots.zero_()

    # ------------------------------------------------------------------ host side
    def stream_context(self):
        rt = self.rt
        return self.torch.cuda.stream(rt.stream) if rt.is_cuda else contextlib.nullcontext()

    def upload(self, frames, n: int) -> None:
        """Put ``n`` frames (NumPy, or a tensor on the device) and ``n`` on the device (async)."""
        torch = self.torch
        self.n_host[0] = n
        if self.rt.is_cuda:  # the caller's stream may still write the input or read the last outputs
            self.rt.stream.wait_stream(torch.cuda.current_stream(self.rt.device))
        if isinstance(frames, torch.Tensor):
            with self.stream_context():
                self.frames[:n].copy_(frames)
                self.n_dev.copy_(self.n_host, non_blocking=True)
            return
        np.copyto(self.frames_host[:n].numpy(), frames)
        with self.stream_context():
            self.frames[:n].copy_(self.frames_host[:n], non_blocking=True)
            self.n_dev.copy_(self.n_host, non_blocking=True)

    def read_count(self) -> int:
        """The real survivor count after the last stage run (4 bytes back; waits for the stream)."""
        if not self.rt.is_cuda:
            return int(self.real[0])
        self.real_host.copy_(self.real, non_blocking=True)
        self.rt.stream.synchronize()
        return int(self.real_host[0])

    def download(self, n: int, on_device: bool) -> dict:
        """The outputs of the last run, rows 0..n-1: NumPy arrays, or tensors on the device.

        Copied back once, after the last stage: two async copies into pinned memory, one wait.
        """
        if on_device:  # copied on the caller's stream (the next upload waits for it), so they are the caller's
            if self.rt.is_cuda:
                self.rt.stream.synchronize()
            meta, probs = self.meta_out[:, :n].clone(), self.probs_out[:n].clone()
            return {"labels": meta[0], "exit_stage": meta[1], "flags": meta[2],
                    "confidence": meta[3].view(self.torch.float32), "probs": probs}
        if self.rt.is_cuda:
            with self.stream_context():
                self.probs_host[:n].copy_(self.probs_out[:n], non_blocking=True)
                self.meta_host.copy_(self.meta_out, non_blocking=True)
            self.rt.stream.synchronize()
        probs = self.probs_out if not self.rt.is_cuda else self.probs_host
        meta = (self.meta_out if not self.rt.is_cuda else self.meta_host)[:, :n].numpy().copy()
        return {"labels": meta[0], "exit_stage": meta[1], "flags": meta[2], "confidence": meta[3].view(np.float32),
                "probs": probs[:n].numpy().copy()}

    def close(self) -> None:
        for g in self._graphs.values():
            g.close()
        self._graphs.clear()
        self._stages.clear()
        self._finals.clear()
