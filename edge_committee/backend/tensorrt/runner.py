"""A TensorRT engine as a :class:`~edge_committee.backend.base.device.DeviceMember`.

Works with the full ``tensorrt`` module or the lean runtime (``tensorrt_lean``): it only
deserializes and runs. ``enqueue`` sets the tensor addresses of the runtime's torch buffers and
calls ``execute_async_v3`` on the given stream, with no host synchronization and no allocation once
warmed up for a batch size (FP16 outputs use one scratch buffer, allocated on first use), so the
device runtime can capture it into a CUDA graph. As TensorRT requires, run ``enqueue`` once for a
batch size before capturing it.

**One execution context per batch size** (up to :data:`MAX_CONTEXTS`; the device runtime's buckets
are 9 up to 256): TensorRT documents a captured ``enqueueV3`` as valid for the shapes at capture
time, so a context whose input shape changed must not have its old graphs replayed (review #7).
Here a context's shape is set once and never changes, so every (stage, bucket) graph the runtime
captured stays valid whatever other buckets ran in between. The contexts share one device-memory
block (``USER_MANAGED``, sized ``device_memory_size_v2``: the largest any shape needs), allocated
once at activation: they run one at a time on one stream. Batch sizes beyond :data:`MAX_CONTEXTS`
share one more context that is reshaped per call (eager use only, e.g. the host-loop runner).

Before TensorRT sees a file, :meth:`activate` checks its checksum, that this machine has a CUDA
GPU, the fingerprint against it (when given), and that TensorRT's runtime started. The GPU check
comes first because TensorRT cannot fail cleanly without one: ``trt.Runtime(logger)`` then only
logs an error and returns a broken object, and deserializing through it *or merely freeing it*
crashes the process (seen with the 11.4 lean runtime on a machine without a GPU driver).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from edge_committee.backend.base.device import DeviceMember
from edge_committee.backend.tensorrt.compat import capturing_logger, import_runtime, keep_broken, module_version
from edge_committee.backend.tensorrt.fingerprint import EngineMismatchError, Fingerprint, describe_machine, runs_here
from edge_committee.errors import BundleError, EdgeCommitteeError

_DTYPES = {"FLOAT": "float32", "HALF": "float16", "INT32": "int32", "UINT8": "uint8", "INT64": "int64",
           "BOOL": "bool", "INT8": "int8"}


#: distinct batch sizes that get an execution context of their own (see the module docstring)
MAX_CONTEXTS = 16


class EngineLoadError(EdgeCommitteeError):
    """TensorRT could not start, or could not deserialize or run an engine file."""


def dtype_name(trt: ModuleType, dtype: Any) -> str:
    """``trt.DataType.HALF`` -> ``"float16"`` (numpy/torch spelling)."""
    for key, name in _DTYPES.items():
        if dtype == getattr(trt.DataType, key, None):
            return name
    return str(dtype)


def start_runtime(trt: ModuleType, logger: Any, host_code: bool = False) -> Any:
    """A ``trt.Runtime``; refuses one whose creation logged an error (no GPU, driver too old).

    A runtime whose creation failed crashes the process when it is freed, so it is never freed
    (:func:`~edge_committee.backend.tensorrt.compat.keep_broken`).
    """
    runtime = trt.Runtime(logger)
    if runtime is None or logger.errors():
        keep_broken(runtime)
        raise EngineLoadError(f"TensorRT ({trt.__name__} {module_version(trt)}) cannot start a runtime on this "
                              f"machine: {logger.last_error()}; TensorRT needs an NVIDIA GPU with a matching driver")
    if host_code:  # version-compatible engines carry the lean runtime (and plugins) as host code
        runtime.engine_host_code_allowed = True
    return runtime


def read_engine(path: Path, expected_sha256: str | None) -> bytes:
    """The engine file's bytes, refusing a missing, empty or corrupt (checksum mismatch) file."""
    if not path.is_file():
        raise BundleError(f"engine {path} does not exist")
    data = path.read_bytes()
    if not data:
        raise BundleError(f"engine {path} is empty (an interrupted copy?); rebuild it with edge-committee compile")
    if expected_sha256 is not None:
        import hashlib

        got = hashlib.sha256(data).hexdigest()
        if got != expected_sha256:
            raise BundleError(f"engine {path} is corrupt: sha256 {got[:12]}, the manifest says {expected_sha256[:12]}; "
                              "copy the bundle again or rebuild it with edge-committee compile")
    return data


def check_fingerprint(path: Path, fp: Fingerprint, trt: ModuleType, device: int, fix: str) -> None:
    """Refuse an engine built for another TensorRT or GPU, naming both and the fix."""
    from edge_committee.backend.tensorrt import gpu as _gpu

    gpu = _gpu.gpu_info(device)
    reason = runs_here(fp, module_version(trt), gpu)
    if reason is not None:
        raise EngineMismatchError(f"engine {path} was built for {fp.machine()} and cannot run on "
                                  f"{describe_machine(module_version(trt), gpu)} ({reason}); rebuild it with: {fix}")


class TensorRTMember(DeviceMember):
    """One member's engine on the GPU.

    Args:
        engine_path: the ``.engine`` file.
        name: the member's name (default: the file name).
        fingerprint: the engine's fingerprint (from the bundle manifest); checked against this
            machine on :meth:`activate`. None: not checked (a file from elsewhere).
        expected_sha256: the manifest's checksum of the file; None: not checked.
        fix: the command that rebuilds the engine, for error messages.
        trt: the TensorRT module to use (default: ``tensorrt``, else the lean runtime).
    """

    def __init__(self, engine_path: str | os.PathLike, name: str | None = None, fingerprint: Fingerprint | None = None,
                 expected_sha256: str | None = None, fix: str = "edge-committee compile BUNDLE",
                 trt: ModuleType | None = None) -> None:
        self.path = Path(engine_path)
        self.name = name or self.path.name
        self.fingerprint = fingerprint
        self.expected_sha256 = expected_sha256
        self.fix = fix
        self._trt = trt
        self._engine = self._context = self._runtime = self._scratch = self._memory = None
        self._contexts: dict[int, Any] = {}
        self._bound: int | None = None

    # -- loading --------------------------------------------------------------------------
    def activate(self, device: int = 0) -> None:
        trt = self._trt or import_runtime()
        data = read_engine(self.path, self.expected_sha256)
        from edge_committee.backend.tensorrt import gpu as _gpu

        _gpu.gpu_info(device)  # no GPU: refuse before TensorRT creates a runtime it cannot free
        if self.fingerprint is not None:
            check_fingerprint(self.path, self.fingerprint, trt, device, self.fix)
        vc = bool(self.fingerprint and self.fingerprint.build_options.version_compatible)
        with _on_device(device):
            self._logger = capturing_logger(trt)
            self._runtime = start_runtime(trt, self._logger, host_code=vc)
            self._engine = self._runtime.deserialize_cuda_engine(data)
            if self._engine is None:
                raise EngineLoadError(f"TensorRT could not deserialize {self.path}: {self._logger.last_error()}; "
                                      "the file is corrupt or from another TensorRT version or GPU; "
                                      f"rebuild it with: {self.fix}")
            self._bind_io(trt)
            self._trt, self.device, self._bound, self._contexts = trt, device, None, {}
            self._memory = self._allocate(int(self._engine.device_memory_size_v2), device)
            self._context = self._new_context()  # the shared one (beyond MAX_CONTEXTS); proves one can be made

    def _bind_io(self, trt: ModuleType) -> None:
        engine = self._engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or len(outputs) != 1:
            raise EngineLoadError(f"{self.path}: a member engine needs one input and one output; it has inputs "
                                  f"{inputs} and outputs {outputs}")
        self._in, self._out = inputs[0], outputs[0]
        shape = tuple(engine.get_tensor_shape(self._in))
        self.input_shape = tuple(int(d) for d in shape[1:])
        self.input_dtype = dtype_name(trt, engine.get_tensor_dtype(self._in))
        self.output_dtype = dtype_name(trt, engine.get_tensor_dtype(self._out))
        self.num_classes = int(tuple(engine.get_tensor_shape(self._out))[-1])
        if shape[0] < 0:
            self.max_batch = int(tuple(engine.get_tensor_profile_shape(self._in, 0)[2])[0])
        else:
            self.max_batch = int(shape[0])

    def _new_context(self) -> Any:
        trt = self._trt
        ctx = self._engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
        if ctx is None:
            raise EngineLoadError(f"TensorRT could not create an execution context for {self.path}: "
                                  f"{self._logger.last_error()} (out of GPU memory?)")
        ctx.set_device_memory(int(self._memory.data_ptr()), int(self._engine.device_memory_size_v2))
        return ctx

    @staticmethod
    def _allocate(nbytes: int, device: int):
        """The contexts' shared device memory (a torch tensor, kept while active)."""
        import torch

        return torch.empty(max(nbytes, 1), dtype=torch.uint8, device=f"cuda:{device}")

    def _context_for(self, b: int) -> Any:
        """The execution context of batch ``b``: its own, with its shape set once (see the module docstring)."""
        ctx = self._contexts.get(b)
        if ctx is None and len(self._contexts) < MAX_CONTEXTS:
            ctx = self._new_context()
            self._set_shape(ctx, b)
            self._contexts[b] = ctx
        if ctx is None:  # beyond MAX_CONTEXTS: the shared context, reshaped when the batch changes
            ctx = self._context
            if b != self._bound:
                self._set_shape(ctx, b)
                self._bound = b
        return ctx

    def _set_shape(self, ctx, b: int) -> None:
        if not ctx.set_input_shape(self._in, (b, *self.input_shape)):
            raise EngineLoadError(f"{self.path}: TensorRT refused batch {b}: {self._logger.last_error()}")

    def deactivate(self) -> None:
        # the contexts before the engine before the runtime: TensorRT's required destruction order
        self._context = self._scratch = None
        self._contexts = {}
        self._engine = None
        self._runtime = None
        self._memory = None

    # -- running --------------------------------------------------------------------------
    def enqueue(self, inp, out, stream) -> None:
        """Run ``inp`` (B, *input_shape) into ``out`` (B, num_classes) float32 on ``stream``.

        ``stream`` is a ``torch.cuda.Stream`` or a raw ``cudaStream_t`` handle (int).
        """
        if self._context is None:
            raise RuntimeError(f"member {self.name!r} is not active; call activate() first")
        b = int(inp.shape[0])
        if b == 0:
            return
        self._check_batch(inp, out, b)
        ctx = self._context_for(b)
        target = out if self.output_dtype == "float32" else self._scratch_for(out, b)
        ctx.set_tensor_address(self._in, int(inp.data_ptr()))
        ctx.set_tensor_address(self._out, int(target.data_ptr()))
        handle = int(getattr(stream, "cuda_stream", stream))
        if not ctx.execute_async_v3(handle):
            raise EngineLoadError(f"{self.path}: TensorRT failed to enqueue batch {b}: {self._logger.last_error()}")
        if target is not out:
            import torch

            with torch.cuda.stream(stream):
                out[:b].copy_(target)

    def _check_batch(self, inp, out, b: int) -> None:
        if b > self.max_batch:
            raise EdgeCommitteeError(f"{self.name}: batch {b} is larger than the engine's --max-batch "
                                     f"{self.max_batch}; "
                                     f"split the batch or rebuild with a larger --max-batch ({self.fix})")
        if tuple(inp.shape[1:]) != self.input_shape:
            raise EdgeCommitteeError(f"{self.name}: input has shape {tuple(inp.shape)}, the engine takes "
                                     f"(B, {', '.join(map(str, self.input_shape))}); check the member's preprocessing")
        got = str(inp.dtype).replace("torch.", "")
        if got != self.input_dtype:
            raise EdgeCommitteeError(f"{self.name}: input is {got}, the engine takes {self.input_dtype}")
        if not inp.is_contiguous() or not out.is_contiguous():
            raise EdgeCommitteeError(f"{self.name}: input and output tensors must be contiguous")

    def _scratch_for(self, out, b: int):
        """A (max_batch, C) buffer of the engine's output dtype (FP16 engines), allocated once."""
        if self._scratch is None:
            import torch

            self._scratch = torch.empty((self.max_batch, self.num_classes), dtype=getattr(torch, self.output_dtype),
                                        device=out.device)
        return self._scratch[:b]


class _on_device:
    """Make CUDA device ``device`` current while TensorRT creates its objects (torch, when loaded)."""

    def __init__(self, device: int) -> None:
        self.device, self._ctx = device, None

    def __enter__(self) -> None:
        torch = sys.modules.get("torch")
        if self.device != 0 or torch is not None:
            if torch is None:
                from edge_committee._lazy import require

                torch = require("torch")
            if torch.cuda.is_available():
                self._ctx = torch.cuda.device(self.device)
                self._ctx.__enter__()

    def __exit__(self, *exc) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(*exc)
