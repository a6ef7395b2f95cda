"""``backend="tensorrt"``: a bundle's engines behind the cascade facade.

:func:`device_members` is the factory the device runtime (PyTorch-CUDA / TensorRT members, host
loop or one CUDA graph: the GPU-runtime issue) takes: one
:class:`~edge_committee.backend.tensorrt.runner.TensorRTMember` per cascade member, each checked
against this machine's fingerprint.

:func:`cascade_executor` (registered as the ``tensorrt`` cascade backend) runs those members in
the device runtime (:mod:`edge_committee.backend.device`: host loop or one CUDA graph), exactly as
the PyTorch-CUDA members run. ``host_loop=True`` runs them in the CPU :class:`HostLoop` instead,
each wrapped in :class:`DeviceMemberRunner` (NumPy in, one host-to-device copy, ``enqueue``, one
stream sync, NumPy out). ``whole=True`` runs the fused cascade engine (``compile --whole``) as one
executor.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from edge_committee._lazy import require
from edge_committee.backend.base.runner import BaseRunner
from edge_committee.backend.tensorrt.compat import capturing_logger, import_runtime, module_version
from edge_committee.backend.tensorrt.engines import candidates, compile_command, require_listed, select_engine
from edge_committee.backend.tensorrt.fingerprint import Fingerprint
from edge_committee.backend.tensorrt import gpu as _gpu
from edge_committee.backend.tensorrt.runner import (
    EngineLoadError,
    TensorRTMember,
    check_fingerprint,
    dtype_name,
    read_engine,
    start_runtime,
)
from edge_committee.errors import EdgeCommitteeError
from edge_committee.runtime.cascade import Executor, HostLoop, Prediction

#: outputs of a fused cascade engine, by name (the fused-ONNX file's outputs)
CASCADE_OUTPUTS = ("labels", "confidence", "exit_stage", "flags", "probs")


def device_members(model, device: int = 0, dla: int | None = None,
                   trt: ModuleType | None = None) -> list[TensorRTMember]:
    """One inactive :class:`TensorRTMember` per member of ``model``'s cascade, in cascade order.

    Args:
        model: a loaded :class:`~edge_committee.runtime.CascadeModel`.
        device: the CUDA device the engines run on.
        dla: use the engines built for this DLA core (``compile --dla N``); None: the GPU engines.
        trt: the TensorRT module (default: ``tensorrt``, else the lean runtime).

    Raises (one line each, naming the fix): no TensorRT; no engine for a member; an engine built
    for another TensorRT, GPU or ONNX file.
    """
    for name in model.members:  # a bundle never compiled fails here, whatever this machine has
        candidates(model.manifest, model.root, name, dla)
    trt = trt or import_runtime()
    tensorrt, gpu = module_version(trt), _gpu.gpu_info(device)
    members = []
    for name in model.members:
        entry = select_engine(model.manifest, model.root, name, tensorrt, gpu, dla)
        path = require_listed(model.manifest, model.root, entry)
        fp = Fingerprint.from_dict(entry["fingerprint"])
        members.append(TensorRTMember(path, name, fp, model.manifest["files"][entry["file"]],
                                      compile_command(model.root, fp), trt))
    return members


class DeviceMemberRunner(BaseRunner):
    """A :class:`DeviceMember` as a host :class:`BaseRunner`: NumPy batches in and out, via torch.

    Args:
        member: the device member.
        device: CUDA device index.
    """

    def __init__(self, member, device: int = 0) -> None:
        super().__init__(member.name)
        self.member, self.device = member, device

    def activate_impl(self) -> None:
        torch = require("torch")
        if not torch.cuda.is_available():
            raise EdgeCommitteeError("--backend tensorrt needs a CUDA GPU visible to PyTorch "
                                     "(torch.cuda.is_available() is False); install a CUDA build of torch, "
                                     "or use --backend onnxrt")
        self.member.activate(self.device)
        self._torch, self._stream = torch, torch.cuda.Stream(self.device)

    def deactivate_impl(self) -> None:
        self.member.deactivate()

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        torch, m = self._torch, self.member
        step = m.max_batch or len(batch)
        outs = []
        with torch.cuda.stream(self._stream):
            for i in range(0, len(batch), step):
                chunk = np.ascontiguousarray(batch[i:i + step], dtype=m.input_dtype)
                x = torch.from_numpy(chunk).to(f"cuda:{self.device}", non_blocking=False)
                out = torch.empty((len(chunk), m.num_classes), dtype=torch.float32, device=x.device)
                m.enqueue(x, out, self._stream)
                outs.append(out)
            host = [o.cpu() for o in outs]  # synchronizes the stream
        return torch.cat(host).numpy()

    def input_shape(self) -> tuple | None:
        return ("batch", *self.member.input_shape) if self.is_active else None

    def num_classes(self) -> int:
        return int(self.member.num_classes)


class WholeEngineExecutor(Executor):
    """The fused cascade engine (``compile --whole``): raw uint8 images in, a :class:`Prediction` out.

    The CascadeGate plugin library is loaded into TensorRT's registry before deserializing (a
    version-compatible engine carries it and needs host code allowed instead).
    """

    def __init__(self, model, device: int = 0, trt: ModuleType | None = None) -> None:
        from edge_committee.backend.tensorrt.compiler import _plugin

        self.model, self.device = model, device
        candidates(model.manifest, model.root, None)
        self.trt = trt or import_runtime()
        self.plugin, plugin_sha = _plugin()
        gpu = _gpu.gpu_info(device)
        self.entry = select_engine(model.manifest, model.root, None, module_version(self.trt), gpu,
                                   plugin_sha256=plugin_sha)
        self.path = require_listed(model.manifest, model.root, self.entry)
        self.fp = Fingerprint.from_dict(self.entry["fingerprint"])
        self.fix = compile_command(model.root, self.fp, whole=True)

    def activate(self) -> None:
        trt, torch = self.trt, require("torch")
        data = read_engine(self.path, self.model.manifest["files"][self.entry["file"]])
        check_fingerprint(self.path, self.fp, trt, self.device, self.fix)
        vc = self.fp.build_options.version_compatible
        if not vc:
            from edge_committee.gate.plugin import register_plugin

            register_plugin(trt, self.plugin)
        self._logger = capturing_logger(trt)
        with torch.cuda.device(self.device):
            self._runtime = start_runtime(trt, self._logger, host_code=vc)
            self._engine = self._runtime.deserialize_cuda_engine(data)
            if self._engine is None:
                raise EngineLoadError(f"TensorRT could not deserialize {self.path}: {self._logger.last_error()}; "
                                      f"rebuild it with: {self.fix}")
            self._context = self._engine.create_execution_context()
            self._stream = torch.cuda.Stream(self.device)
        self._io()

    def _io(self) -> None:
        e, trt = self._engine, self.trt
        names = [e.get_tensor_name(i) for i in range(e.num_io_tensors)]
        inputs = [n for n in names if e.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        missing = [n for n in CASCADE_OUTPUTS if n not in names]
        if len(inputs) != 1 or missing:
            raise EngineLoadError(f"{self.path}: a fused cascade engine takes one image input and returns "
                                  f"{list(CASCADE_OUTPUTS)}; it has inputs {inputs} and outputs "
                                  f"{[n for n in names if n not in inputs]}")
        self._in = inputs[0]
        shape = tuple(e.get_tensor_shape(self._in))
        self.max_batch = int(tuple(e.get_tensor_profile_shape(self._in, 0)[2])[0]) if shape[0] < 0 else int(shape[0])
        self._dtypes = {n: dtype_name(trt, e.get_tensor_dtype(n)) for n in CASCADE_OUTPUTS}

    def deactivate(self) -> None:
        self._context = self._engine = self._runtime = None

    def run(self, images) -> Prediction:
        if not isinstance(images, np.ndarray):
            images = np.stack(images)  # the fused file takes one image size
        parts = [self._run_chunk(images[i:i + self.max_batch]) for i in range(0, len(images), self.max_batch)]
        if not parts:
            parts = [{n: np.zeros((0,) + ((len(self.model.labels),) if n == "probs" else ()), np.float32)
                      for n in CASCADE_OUTPUTS}]
        cat = {n: np.concatenate([p[n] for p in parts]) for n in CASCADE_OUTPUTS}
        return Prediction(cat["labels"].astype(np.int32), cat["probs"].astype(np.float32),
                          cat["confidence"].astype(np.float32), cat["exit_stage"].astype(np.int32),
                          cat["flags"].astype(np.int32), self.model.labels)

    def _run_chunk(self, chunk: np.ndarray) -> dict[str, np.ndarray]:
        torch, ctx = require("torch"), self._context
        with torch.cuda.stream(self._stream):
            x = torch.from_numpy(np.ascontiguousarray(chunk)).to(f"cuda:{self.device}")
            if not ctx.set_input_shape(self._in, tuple(x.shape)):
                raise EngineLoadError(f"{self.path}: TensorRT refused input shape {tuple(x.shape)}: "
                                      f"{self._logger.last_error()}")
            ctx.set_tensor_address(self._in, int(x.data_ptr()))
            outs = {}
            for n in CASCADE_OUTPUTS:
                shape = tuple(int(d) for d in ctx.get_tensor_shape(n))
                outs[n] = torch.empty(shape, dtype=getattr(torch, self._dtypes[n]), device=x.device)
                ctx.set_tensor_address(n, int(outs[n].data_ptr()))
            if not ctx.execute_async_v3(int(self._stream.cuda_stream)):
                raise EngineLoadError(f"{self.path}: TensorRT failed to run: {self._logger.last_error()}")
            return {n: t.cpu().numpy() for n, t in outs.items()}


def cascade_executor(model, threads: int | None = None, device: int = 0, dla: int | None = None,
                     whole: bool = False, host_loop: bool = False, **options: Any) -> Executor:
    """The ``tensorrt`` cascade backend: the bundle's engines in the device runtime.

    Args:
        model: the loaded bundle.
        threads: unused (ONNX Runtime's option; accepted so every backend takes the same call).
        device: CUDA device index (default 0).
        dla: run the engines built for this DLA core.
        whole: run the fused cascade engine (``compile --whole``) instead of the member engines.
        host_loop: run the member engines in the CPU :class:`HostLoop` (NumPy between stages, one
            copy each way per stage) instead of the device runtime; for debugging.
        **options: the device runtime's options (``mode``, ``max_batch``, ``buckets``, ``gate_impl``,
            ``exact_preprocessing``; see :class:`edge_committee.backend.device.DeviceCascade`).
            ``max_batch`` defaults to the smallest engine's.
    """
    if whole:
        if options or host_loop:
            raise EdgeCommitteeError(f"backend tensorrt with whole=True takes only device; got {sorted(options)}")
        return WholeEngineExecutor(model, device)
    members = device_members(model, device, dla)
    if host_loop:
        if options:
            raise EdgeCommitteeError(f"backend tensorrt with host_loop=True takes only device and dla; "
                                     f"got {sorted(options)}")
        runners = [DeviceMemberRunner(m, device) for m in members]
        return HostLoop(runners, model.preprocessing, model.thresholds, model.confidence, model.labels,
                        model._gate)
    from edge_committee.backend.device import executor_for

    if "max_batch" not in options and "buckets" not in options:
        options["max_batch"] = min(m.fingerprint.build_options.max_batch for m in members)
    return executor_for(model, members, device=device, **options)
