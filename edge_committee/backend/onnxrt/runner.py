"""ONNX Runtime on the CPU: the embedded default backend that runs everywhere."""

from __future__ import annotations

import os

import numpy as np

from edge_committee._lazy import require
from edge_committee.backend.base.runner import BaseRunner
from edge_committee.errors import EdgeCommitteeError


class OnnxrtRunner(BaseRunner):
    """Runs an ONNX file with ONNX Runtime.

    Args:
        path: the ONNX file.
        threads: intra-op threads (default: the machine's cores, as ONNX Runtime chooses).
        providers: execution providers (default: CPU).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        threads: int | None = None,
        providers: list[str] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name or os.path.basename(str(path)))
        self.path = str(path)
        self.threads = threads
        self.providers = providers or ["CPUExecutionProvider"]
        self._sess = None

    def activate_impl(self) -> None:
        ort = require("onnxruntime")
        opts = ort.SessionOptions()
        if self.threads:
            opts.intra_op_num_threads = int(self.threads)
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self._sess = ort.InferenceSession(self.path, sess_options=opts, providers=self.providers)
        except Exception as exc:
            raise EdgeCommitteeError(f"ONNX Runtime cannot load {self.path}: {exc}") from None
        inputs = self._sess.get_inputs()
        if len(inputs) != 1:
            raise EdgeCommitteeError(
                f"{self.path}: a member must have exactly one input; it has {len(inputs)} "
                f"({', '.join(i.name for i in inputs)})"
            )
        self._input = inputs[0]
        self._output = self._sess.get_outputs()[0]

    def deactivate_impl(self) -> None:
        self._sess = None

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        want = np.float16 if self._input.type == "tensor(float16)" else np.float32
        batch = batch.astype(want, copy=False)
        if self._input.shape and self._input.shape[0] == 1 and batch.shape[0] > 1:
            # a model exported with a fixed batch of 1 runs one sample at a time
            return np.concatenate([self.infer_impl(batch[i : i + 1]) for i in range(batch.shape[0])])
        out = self._sess.run([self._output.name], {self._input.name: batch})
        return out[0].astype(np.float32, copy=False)

    def input_shape(self) -> tuple | None:
        return tuple(self._input.shape) if self._sess is not None else None

    def num_classes(self) -> int:
        return int(self._output.shape[-1])
