"""The device runtime: the cascade on one CUDA stream, with the state on the GPU (every GPU backend's executor).

Per batch: the raw uint8 frames are uploaded once (from pinned memory, or taken as a CUDA tensor);
stage ``k`` gathers the frames of the samples still active, runs member ``k``'s preprocessing on the
GPU (:class:`.preprocess.TorchPlan`), the member (any :class:`DeviceMember`), and the gate
(:func:`edge_committee.gate.gate_step_cuda`), which updates the state in place and compacts the
survivors; the outputs are copied back once at the end. Two modes:

- ``host``: one replay per stage of the stage's CUDA graph for the survivors' batch-size bucket,
  then one 4-byte read of the survivor count (the only host wait between stages);
- ``graph``: the whole cascade as one CUDA graph whose later stages sit in conditional nodes
  (:mod:`.graph`); the host launches it and waits once. With SWITCH nodes (CUDA >= 12.8) every stage
  runs at its survivors' bucket; with IF nodes only (12.4) every stage runs at the first bucket, so
  batches whose first bucket exceeds :data:`.buckets.IF_GRAPH_MAX_BUCKET` take the host loop
  instead (:func:`.buckets.choose_path`; :attr:`last_path` says which ran). Falls back to ``host``
  where the driver, PyTorch or ``cuda.bindings`` cannot build it, and says why (:attr:`mode`,
  :attr:`mode_reason`, and a log line).

On the CPU (``device="cpu"``, for tests and debugging) the same stage functions run eagerly, with
the gate in torch ops (:func:`.gate.gate_step_torch`): the same code path minus graphs and kernels.

Why this is not :class:`edge_committee.runtime.cascade.HostLoop`: HostLoop keeps the state on the host
(:class:`GateState`) and indexes NumPy arrays between stages; here the state, the survivor indices
and their count stay on the device, a stage must be capturable (no host sync, no data-dependent
shapes), so the loop only chooses each stage's bucket from the count. The semantics are the same
(the gate, the mean probabilities at the exit stage as ``GateState.mean_probs``), and the tests
compare the two.

Fixed shapes make stages capturable: the survivors of a stage are padded to a bucket ``b`` (a
power of two by default); padded slots point at *sink* rows of the state (``capacity + j``) and
read image row 0, so their results never touch a real sample. After each gate a small step
(:func:`.gate.fix_survivors_torch` / its CUDA twin) counts the real survivors and rewrites the
padded slots.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Sequence


from edge_committee._lazy import require
from edge_committee.backend.base.device import DeviceMember
from edge_committee.backend.device.buckets import bucket_for, choose_path, default_buckets
from edge_committee.backend.device.gate import cuda_gate_step, gate_step_torch
from edge_committee.cascade.reference import check_confidence_name
from edge_committee.errors import EdgeCommitteeError
from edge_committee.runtime.cascade import Executor, Prediction, empty_outputs, run_by_shape
from edge_committee.spec.preprocess import Preprocessing

LOG = logging.getLogger("edge_committee")

MODES = ("graph", "host")
GATE_IMPLS = ("auto", "cuda", "torch")


class DeviceCascade(Executor):
    """Runs a cascade of :class:`DeviceMember` s on one device (see the module docstring).

    Args:
        members: the members, in cascade order (activated and deactivated by this executor).
        preprocessing: each member's preprocessing.
        thresholds: one per stage but the last.
        confidence: the confidence function.
        labels: the class names.
        device: a CUDA device ordinal (default 0), ``"cuda:N"``, or ``"cpu"`` (eager, for tests).
        mode: ``graph`` (default; falls back to ``host`` where unavailable) or ``host``.
        max_batch: the largest batch run at once (default 256); larger inputs run in chunks.
        buckets: the batch sizes stages are captured for (default: powers of two up to max_batch).
        gate_impl: ``auto`` (the CUDA gate kernel when ``edge_committee._C`` has CUDA, else torch
            ops), ``cuda`` or ``torch``.
        tf32: allow TF32 in FP32 convolutions and matmuls (default False: FP32 means FP32).
        exact_preprocessing: run plans that round between steps (PIL's) in float64, bit-exact with
            the NumPy path (default True); False runs them in float32 (faster where float64 is
            slow, e.g. Jetson; a value at a .5 tie may round one grey level the other way).
        combiners: a learned committee's stage combiners (stage ``k`` over members ``0..k``); its
            gate then runs as torch ops (:mod:`.learned`), captured like the rest. None: the average.
    """

    #: ``CascadeModel.predict`` passes CUDA tensors through to :meth:`run`
    accepts_device_arrays = True

    def __init__(self, members: Sequence[DeviceMember], preprocessing: Sequence[Preprocessing],
                 thresholds: Sequence[float], confidence: str, labels: Sequence[str], device: Any = 0,
                 mode: str = "graph", max_batch: int = 256, buckets: Sequence[int] | None = None,
                 gate_impl: str = "auto", tf32: bool = False, exact_preprocessing: bool = True,
                 combiners: Sequence[Any] | None = None) -> None:
        if mode not in MODES:
            raise EdgeCommitteeError(f"mode {mode!r} is not known; use one of {', '.join(MODES)}")
        if gate_impl not in GATE_IMPLS:
            raise EdgeCommitteeError(f"gate_impl {gate_impl!r} is not known; use one of {', '.join(GATE_IMPLS)}")
        if len(members) != len(preprocessing) or not members:
            raise EdgeCommitteeError(f"{len(members)} members but {len(preprocessing)} preprocessing entries")
        if int(max_batch) < 1:
            raise EdgeCommitteeError(f"max_batch must be >= 1; got {max_batch}")
        self.members = list(members)
        self.preprocessing = list(preprocessing)
        self.thresholds = [float(t) for t in thresholds][: len(members) - 1] + [float("inf")]
        self.confidence = check_confidence_name(confidence)
        self.labels = list(labels)
        self.requested_mode = mode
        self.buckets = tuple(sorted(set(int(b) for b in (buckets or default_buckets(int(max_batch))))))
        if self.buckets[0] < 1:
            raise EdgeCommitteeError(f"batch buckets must be >= 1; got {self.buckets}")
        self.capacity = self.buckets[-1]
        self.gate_impl = gate_impl
        self.tf32 = tf32
        self.exact_preprocessing = bool(exact_preprocessing)
        self.device_arg = device
        if combiners is not None:
            from edge_committee.backend.device.learned import check_combiners

            combiners = check_combiners(combiners, len(self.members))
            if gate_impl == "cuda":
                raise EdgeCommitteeError("gate_impl 'cuda' is the averaging kernel; a learned committee's gate runs as "
                                         "torch ops: use gate_impl 'auto' or 'torch'")
        self.combiners = combiners
        #: ``CascadeModel`` refuses a learned bundle unless this runtime was given its combiners
        self.supports_learned_combiner = combiners is not None
        #: the mode that runs: ``graph``, ``host`` or ``eager`` (CPU); set by :meth:`activate`
        self.mode: str | None = None
        #: why ``graph`` was not used, if it was requested and is unavailable
        self.mode_reason: str | None = None
        self.gate_name: str | None = None
        #: graph mode: SWITCH nodes available (per-stage buckets inside the graph)
        self.switch_ok = False
        #: the path the last batch took: ``switch``, ``if``, ``host`` or ``eager``
        self.last_path: str | None = None
        self._contexts: dict[tuple[int, int, int], Any] = {}
        self.active = False

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "DeviceCascade":
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.deactivate()

    def activate(self) -> None:
        torch = require("torch")
        self.torch = torch
        self.device = _as_device(torch, self.device_arg)
        self.is_cuda = self.device.type == "cuda"
        with self.device_context():
            self._activate()

    def _activate(self) -> None:
        torch = self.torch
        for m in self.members:
            m.activate(self.device.index if self.is_cuda else "cpu")
        self.num_classes = self._check_members()
        self.stream = torch.cuda.Stream(device=self.device) if self.is_cuda else None
        self.gate_step, self.gate_name = self._choose_gate()
        #: the CUDA gate kernel also does the survivor fix-up and sets the next conditional (one launch per
        #: stage instead of two); EC_FUSED_GATE=0 turns it off
        self.gate_fuses_fix = self.gate_name.startswith("CUDA kernel") and _fused_gate_available()
        self.kernels = self._load_kernels() if self.is_cuda else None
        self.mode, self.mode_reason = self._choose_mode()
        if self.is_cuda:
            torch.cuda.synchronize(self.device)  # weights were copied on the current stream; stages use their own
        LOG.info("device runtime on %s: %s mode%s; gate: %s", self.device, self.mode,
                 f" ({self.mode_reason})" if self.mode_reason else "", self.gate_name)
        self.active = True

    def deactivate(self) -> None:
        for ctx in self._contexts.values():
            ctx.close()
        self._contexts.clear()
        for m in self.members:
            m.deactivate()
        self.active = False

    def _check_members(self) -> int:
        classes = {m.num_classes for m in self.members}
        if len(classes) != 1 or classes != {len(self.labels)}:
            raise EdgeCommitteeError(f"members give {sorted(classes)} classes; the bundle has "
                                     f"{len(self.labels)} labels")
        for m, pp in zip(self.members, self.preprocessing):
            want = tuple(pp.input_shape(1)[1:])
            if tuple(m.input_shape) != want:
                raise EdgeCommitteeError(f"member {m.name}: input shape {tuple(m.input_shape)} does not match its "
                                         f"preprocessing {want}")
            if m.max_batch is not None and m.max_batch < self.capacity:
                raise EdgeCommitteeError(f"member {m.name} accepts batches up to {m.max_batch}; "
                                         f"set max_batch <= {m.max_batch}")
        return classes.pop()

    def _choose_gate(self):
        if self.combiners is not None:
            from edge_committee.backend.device.learned import LearnedTorchGate

            return LearnedTorchGate(self.combiners, self.device), "learned combiner (torch ops)"
        if not self.is_cuda or self.gate_impl == "torch":
            return gate_step_torch, "torch ops"
        try:
            return cuda_gate_step(), "CUDA kernel (edge_committee._C)"
        except EdgeCommitteeError as exc:
            if self.gate_impl == "cuda":
                raise
            LOG.warning("the CUDA gate kernel is not available (%s); the gate runs as torch ops", exc)
            return gate_step_torch, "torch ops"

    def gate_buffers(self, rows: int) -> dict:
        """The gate's extra state buffers of ``rows`` rows (a learned gate's; {} for the average)."""
        make = getattr(self.gate_step, "buffers", None)
        return make(rows, self.num_classes, self.device) if make else {}

    def _load_kernels(self):
        from edge_committee.backend.device.kernels import kernels_for

        try:
            return kernels_for(self.device.index or 0, self.torch.cuda.get_device_capability(self.device))
        except Exception as exc:  # noqa: BLE001 - no cuda.bindings/NVRTC: the torch ops do the same
            LOG.warning("the device runtime's CUDA kernels are unavailable (%s); using torch ops", exc)
            return None

    def _choose_mode(self) -> tuple[str, str | None]:
        if not self.is_cuda:
            return "eager", None
        if self.requested_mode == "host":
            return "host", None
        from edge_committee.backend.device.graph import graph_mode_unavailable

        reason = graph_mode_unavailable(self.torch)
        if reason is None and self.kernels is None:
            reason = "the setter kernel could not be compiled (see the warning above)"
        if reason is None:
            import os

            from edge_committee.backend.device.graph import switch_available

            # EC_GRAPH_SWITCH=0: IF nodes only, as on a 12.4..12.7 driver (tests, debugging)
            self.switch_ok = switch_available() and os.environ.get("EC_GRAPH_SWITCH", "1") != "0"
        return ("host", reason) if reason else ("graph", None)

    # ------------------------------------------------------------------ running
    def run(self, images) -> Prediction:
        if not self.active:
            self.activate()
        with self.device_context():
            return self._run(images)

    def _run(self, images) -> Prediction:
        torch = self.torch
        if isinstance(images, torch.Tensor):
            return self._run_tensor(images)
        out = run_by_shape(images, self.num_classes, lambda b: self._run_batch(b, on_device=False), self.capacity)
        return Prediction(out["labels"], out["probs"], out["confidence"], out["exit_stage"], out["flags"], self.labels)

    def _run_tensor(self, images) -> Prediction:
        torch = self.torch
        if images.dtype != torch.uint8:
            raise EdgeCommitteeError(f"predict expects raw uint8 images; got a tensor of {images.dtype}")
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise EdgeCommitteeError(f"predict expects images (N, H, W[, 1|3]); got a tensor of shape "
                                     f"{tuple(images.shape)}")
        if images.device != self.device:
            raise EdgeCommitteeError(f"the images are on {images.device}; this model runs on {self.device}")
        parts = [self._run_batch(images[s:s + self.capacity], on_device=True)
                 for s in range(0, images.shape[0], self.capacity)] or [self._empty_device_outputs()]
        cat = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        return Prediction(cat["labels"], cat["probs"], cat["confidence"], cat["exit_stage"], cat["flags"], self.labels)

    def _empty_device_outputs(self) -> dict:
        torch = self.torch
        i32 = dict(dtype=torch.int32, device=self.device)
        return {"labels": torch.zeros(0, **i32), "probs": torch.zeros(0, self.num_classes, device=self.device),
                "confidence": torch.zeros(0, device=self.device), "exit_stage": torch.zeros(0, **i32),
                "flags": torch.zeros(0, **i32)}

    def _run_batch(self, frames, on_device: bool) -> dict:
        """One batch of at most ``capacity`` same-shaped frames -> output arrays (or device tensors)."""
        n = len(frames)
        if n == 0:
            return self._empty_device_outputs() if on_device else empty_outputs(0, self.num_classes)
        ctx = self._context(tuple(int(s) for s in frames.shape[1:]))
        ctx.upload(frames, n)
        b0 = self.bucket(n)
        graph = self._graph(ctx, b0) if self.mode == "graph" else None
        self.last_path = graph.kind if graph is not None else ("host" if self.is_cuda else "eager")
        if graph is None or graph.separate_setters:
            ctx.clear_slots()  # the stages' fix-up must set no condition outside a fused-setter graph
        with ctx.stream_context():
            if graph is not None:
                graph.launch(self.stream)
            else:
                self._run_host_loop(ctx, n, b0)
        return ctx.download(n, on_device)

    def _graph(self, ctx, b: int):
        """The conditional cascade graph for first bucket ``b``, or None for the host loop (this batch, or
        for good after a failure)."""
        path = choose_path(b, self.switch_ok, True)
        if path == "host":
            return None
        try:
            return ctx.graph(b, path)
        except Exception as exc:  # noqa: BLE001 - say why once, then take the next path for good
            why = f"the conditional {path} graph failed: {type(exc).__name__}: {exc}"
            if path == "switch":
                self.switch_ok, self.mode_reason = False, why
                LOG.warning("device runtime: %s; using IF nodes and the host loop", why)
                return self._graph(ctx, b)
            self.mode, self.mode_reason = "host", why
            LOG.warning("device runtime: graph mode is unavailable (%s); running the host loop", self.mode_reason)
            return None

    def _run_host_loop(self, ctx, n: int, b0: int) -> None:
        """One replay per stage; between stages, one 4-byte read of the real survivor count."""
        count, last = n, len(self.members) - 1
        for k in range(len(self.members)):
            ctx.stage(k, self.bucket(count) if k else b0)()
            if k < last:
                count = ctx.read_count()
                if count == 0:
                    break
        ctx.finalize(b0)()

    def bucket(self, n: int) -> int:
        """The smallest bucket holding ``n`` samples."""
        return bucket_for(n, self.buckets)

    def _context(self, shape: tuple[int, int, int]):
        if shape not in self._contexts:
            from edge_committee.backend.device.stages import ShapeContext

            self._contexts[shape] = ShapeContext(self, shape)
        return self._contexts[shape]

    def warmup(self, shape: tuple[int, int, int], batch_sizes: Sequence[int] | None = None) -> None:
        """Capture the graphs for source images of ``shape`` (H, W, C) and these batch sizes now."""
        if not self.active:
            self.activate()
        with self.device_context():
            self._warmup(tuple(int(s) for s in shape), batch_sizes)

    def _warmup(self, shape: tuple[int, int, int], batch_sizes: Sequence[int] | None) -> None:
        ctx = self._context(shape)
        for n in batch_sizes or self.buckets:
            b = self.bucket(int(n))
            if self.mode != "graph" or self._graph(ctx, b) is None:
                for k in range(len(self.members)):
                    ctx.stage(k, b)
                ctx.finalize(b)

    def precision_context(self):
        """Disable TF32 while FP32 work is captured or run (unless ``tf32``)."""
        torch = self.torch
        if self.tf32 or not self.is_cuda:
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        for module in (torch.backends.cudnn, torch.backends.cuda.matmul):  # read when a kernel is chosen
            stack.callback(setattr, module, "allow_tf32", module.allow_tf32)
            module.allow_tf32 = False
        return stack

    def device_context(self):
        """Make this runtime's GPU the current device (kernels load into its context)."""
        torch = self.torch
        return torch.cuda.device(self.device) if self.is_cuda else contextlib.nullcontext()


def _fused_gate_available() -> bool:
    import os

    from edge_committee.gate.cuda import fuses_fix

    return os.environ.get("EC_FUSED_GATE", "1") != "0" and fuses_fix()


def _as_device(torch, device):
    if isinstance(device, torch.device):
        return device if device.type == "cpu" or device.index is not None else torch.device("cuda", 0)
    if isinstance(device, int):
        return torch.device("cuda", device)
    dev = torch.device(device)
    return torch.device("cuda", 0) if dev.type == "cuda" and dev.index is None else dev

