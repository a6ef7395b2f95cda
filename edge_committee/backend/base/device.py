"""The device-member interface: a member that runs on a CUDA stream into device buffers.

Every GPU backend implements it (PyTorch-CUDA members, TensorRT engines), and the device runtime
(:mod:`edge_committee.runtime`, the GPU issue) runs any of them unchanged, in host-loop mode or
captured into one CUDA graph. Tensors are ``torch.Tensor`` on the GPU: torch is what every NVIDIA
platform ships (JetPack included), and a TensorRT engine takes their ``data_ptr()`` directly.

Contract:

- ``activate(device)`` loads the model and allocates what it needs; ``deactivate()`` frees it.
- ``enqueue(inp, out, stream)`` runs the first ``inp.shape[0]`` samples: ``inp`` is the member's
  preprocessed input (``input_dtype``, shape ``(B, *input_shape)``), ``out`` a preallocated
  ``(B, num_classes)`` float32 tensor the logits are written into. It only *enqueues* work on
  ``stream`` (a ``torch.cuda.Stream``): no host synchronization, no allocation once warmed up for
  that batch size, so that a CUDA graph can capture it.
- ``max_batch``: the largest ``B`` accepted (an engine's optimization profile); ``None`` = any.
"""

from __future__ import annotations

import abc


class DeviceMember(abc.ABC):
    """One member on the GPU (see the module docstring for the contract)."""

    name: str
    input_shape: tuple[int, ...]  #: per-sample input shape, e.g. (3, 224, 224) for NCHW
    input_dtype: str  #: "float32" or "float16"
    num_classes: int
    max_batch: int | None = None

    def __enter__(self) -> "DeviceMember":
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.deactivate()

    @abc.abstractmethod
    def activate(self, device: int = 0) -> None: ...

    @abc.abstractmethod
    def deactivate(self) -> None: ...

    @abc.abstractmethod
    def enqueue(self, inp, out, stream) -> None:
        """Enqueue inference of ``inp`` (B, ...) into ``out`` (B, C) float32 on ``stream``."""
