"""Triton model configurations (``config.pbtxt``) as typed dataclasses, written as protobuf text.

The fields are those of Triton's ``ModelConfig`` message (``model_config.proto``) that an exported
repository uses: name, backend or platform, max batch size, inputs and outputs with their data
types and dims (without the batch dimension), dynamic batching, instance groups, the model file
names per compute capability (TensorRT plans) and string parameters. The tests parse the text
with ``tritonclient``'s own ``model_config_pb2``, so a typo here fails there.
"""

from __future__ import annotations

import dataclasses
import json

#: ONNX element type name -> Triton data type
#: how a member model is served: ONNX Runtime backend, a Python-backend ORT session, or a TensorRT plan
MEMBER_BACKENDS = ("onnxruntime", "python-ort", "tensorrt")
ONNX_TO_TRITON = {"FLOAT": "TYPE_FP32", "FLOAT16": "TYPE_FP16", "UINT8": "TYPE_UINT8",
                  "INT32": "TYPE_INT32", "INT64": "TYPE_INT64"}

#: Triton data type -> NumPy dtype name
TRITON_TO_NUMPY = {"TYPE_FP32": "float32", "TYPE_FP16": "float16", "TYPE_UINT8": "uint8",
                   "TYPE_INT32": "int32", "TYPE_INT64": "int64"}


@dataclasses.dataclass(frozen=True)
class TensorConfig:
    """One input or output: ``dims`` exclude the batch dimension; -1 is a variable size."""

    name: str
    data_type: str  #: a Triton type, e.g. ``TYPE_FP32``
    dims: tuple[int, ...]
    #: the model's own shape when it differs (``()``: the model's tensor is batch-only, ``(N,)``)
    reshape: tuple[int, ...] | None = None
    #: a file of class names beside ``config.pbtxt`` (the classification extension answers names)
    label_filename: str | None = None

    def to_text(self) -> str:
        dims = ", ".join(str(int(d)) for d in self.dims)
        extra = ""
        if self.reshape is not None:
            extra += f"\n    reshape: {{ shape: [ {', '.join(str(int(d)) for d in self.reshape)} ] }}"
        if self.label_filename:
            extra += f"\n    label_filename: {_q(self.label_filename)}"
        return f"  {{\n    name: {_q(self.name)}\n    data_type: {self.data_type}\n    dims: [ {dims} ]{extra}\n  }}"


@dataclasses.dataclass(frozen=True)
class Warmup:
    """One ``model_warmup`` sample: zeros of every input at ``batch_size``, run when the model loads,
    so the first real requests do not pay the session's start-up."""

    name: str
    batch_size: int
    inputs: tuple[TensorConfig, ...]

    def to_text(self) -> str:
        parts = [f"    name: {_q(self.name)}", f"    batch_size: {int(self.batch_size)}"]
        for t in self.inputs:
            dims = ", ".join(str(int(d)) for d in t.dims)
            parts.append(f"    inputs {{\n      key: {_q(t.name)}\n      value: {{ data_type: {t.data_type} "
                         f"dims: [ {dims} ] zero_data: true }}\n    }}")
        return "  {\n" + "\n".join(parts) + "\n  }"


def version_policy_text(policy: str) -> str:
    """``latest[:N]``, ``all`` or ``specific:1,2`` as Triton's ``version_policy`` message; fails in one line."""
    kind, _, arg = str(policy).partition(":")
    try:
        if kind == "latest":
            n = int(arg or 1)
            if n >= 1:
                return f"latest {{ num_versions: {n} }}"
        elif kind == "all" and not arg:
            return "all { }"
        elif kind == "specific":
            versions = [int(v) for v in arg.split(",")]
            if versions and min(versions) >= 1:
                return f"specific {{ versions: [ {', '.join(map(str, versions))} ] }}"
    except ValueError:
        pass
    from edge_committee.errors import EdgeCommitteeError

    raise EdgeCommitteeError(f"--version-policy {policy!r}: expected latest, latest:N, all or specific:V1,V2 "
                             "(N and the versions positive integers), e.g. latest:2")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The parts of a Triton ``config.pbtxt`` an exported repository writes.

    Exactly one of ``backend`` (``python``, ``onnxruntime``) and ``platform``
    (``tensorrt_plan``) is set. ``instance_kind`` is ``KIND_CPU``, ``KIND_GPU`` or ``None``
    (Triton's default: the GPU when there is one, else the CPU). ``queue_delay_us`` is the dynamic
    batcher's wait for more requests (0: batch what is already queued; default 0).
    """

    name: str
    inputs: tuple[TensorConfig, ...]
    outputs: tuple[TensorConfig, ...]
    max_batch_size: int
    backend: str | None = None
    platform: str | None = None
    default_model_filename: str | None = None
    cc_model_filenames: tuple[tuple[str, str], ...] = ()
    instance_count: int = 1
    instance_kind: str | None = None
    dynamic_batching: bool = True
    queue_delay_us: int = 0
    parameters: tuple[tuple[str, str], ...] = ()
    #: ``dynamic_batching.preferred_batch_size`` (e.g. the batch sizes the bundle was profiled at)
    preferred_batch_sizes: tuple[int, ...] = ()
    version_policy: str | None = None  #: ``latest[:N]``, ``all`` or ``specific:1,2`` (None: Triton's default)
    warmup: tuple[Warmup, ...] = ()

    def __post_init__(self) -> None:
        if (self.backend is None) == (self.platform is None):
            raise ValueError(f"model {self.name!r}: set exactly one of backend and platform")
        if self.max_batch_size < 0 or self.instance_count < 1 or self.queue_delay_us < 0:
            raise ValueError(f"model {self.name!r}: max_batch_size >= 0, instance_count >= 1, "
                             "queue_delay_us >= 0")

    def to_text(self) -> str:
        """The ``config.pbtxt`` text."""
        lines = [f"name: {_q(self.name)}"]
        lines.append(f"backend: {_q(self.backend)}" if self.backend else f"platform: {_q(self.platform)}")
        lines.append(f"max_batch_size: {int(self.max_batch_size)}")
        if self.default_model_filename:
            lines.append(f"default_model_filename: {_q(self.default_model_filename)}")
        for cc, filename in self.cc_model_filenames:
            lines.append(f"cc_model_filenames {{ key: {_q(cc)} value: {_q(filename)} }}")
        lines.append("input [\n" + ",\n".join(t.to_text() for t in self.inputs) + "\n]")
        lines.append("output [\n" + ",\n".join(t.to_text() for t in self.outputs) + "\n]")
        if self.version_policy:
            lines.append(f"version_policy: {{ {version_policy_text(self.version_policy)} }}")
        if self.dynamic_batching and self.max_batch_size > 0:
            preferred = [int(b) for b in self.preferred_batch_sizes if 1 <= int(b) <= self.max_batch_size]
            pref = f"\n  preferred_batch_size: [ {', '.join(map(str, preferred))} ]" if preferred else ""
            lines.append(f"dynamic_batching {{{pref}\n  max_queue_delay_microseconds: {int(self.queue_delay_us)}\n}}")
        kind = f"\n    kind: {self.instance_kind}" if self.instance_kind else ""
        lines.append(f"instance_group [\n  {{\n    count: {int(self.instance_count)}{kind}\n  }}\n]")
        for key, value in self.parameters:
            lines.append(f"parameters {{\n  key: {_q(key)}\n  value: {{ string_value: {_q(value)} }}\n}}")
        if self.warmup:
            lines.append("model_warmup [\n" + ",\n".join(w.to_text() for w in self.warmup) + "\n]")
        return "\n".join(lines) + "\n"


def _q(text: str) -> str:
    """A protobuf text-format string literal (JSON's escapes of quotes, backslashes and newlines are valid there)."""
    return json.dumps(str(text), ensure_ascii=False)
