"""The member models of an exported repository, one per cascade member, for three backends.

- ``onnxruntime``: Triton's ONNX Runtime backend (NVIDIA's containers); ``1/model.onnx``.
- ``tensorrt``: the ``tensorrt_plan`` platform, for members with compiled engines in the bundle;
  ``1/<engine file>``, one per compute capability (``cc_model_filenames``).
- ``python-ort``: a Python-backend model hosting the SDK's ONNX Runtime runner, for servers with
  neither backend (the ``tritonserver`` of ``nvidia-pytriton``).

Tensor names, types and dims come from the member's ONNX file (engines keep the ONNX names and
types), checked against its preprocessing.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from pathlib import Path

from edge_committee.errors import BundleError, EdgeCommitteeError
from edge_committee.serve.triton.config import ONNX_TO_TRITON, TRITON_TO_NUMPY, ModelConfig, TensorConfig
from edge_committee.spec.preprocess import Preprocessing

MEMBER_BACKENDS = ("onnxruntime", "python-ort", "tensorrt")


@dataclasses.dataclass(frozen=True)
class MemberIO:
    """A member's tensors as Triton sees them (dims without the batch dimension)."""

    input: TensorConfig
    output: TensorConfig

    def describe(self) -> dict:
        """The fields of a ``cascade.json`` member entry that the BLS runner needs."""
        return {"input": self.input.name, "output": self.output.name,
                "input_dtype": TRITON_TO_NUMPY[self.input.data_type],
                "input_dims": list(self.input.dims), "num_classes": int(self.output.dims[-1])}


@dataclasses.dataclass(frozen=True)
class Engine:
    """A compiled TensorRT engine of one member, as listed in the bundle's manifest."""

    file: str  #: relative to the bundle
    compute_capability: str | None  #: "8.7", or None when the entry does not say
    max_batch: int | None


def member_io(onnx_path: Path, pp: Preprocessing, num_labels: int) -> MemberIO:
    """Read the member's input and output from its ONNX file; fail naming the file."""
    onnx = _onnx()
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    init = {t.name for t in graph.initializer}
    inputs = [t for t in graph.input if t.name not in init]
    if len(inputs) != 1 or not graph.output:
        raise BundleError(f"{onnx_path}: a member needs one input and an output; it has {len(inputs)} "
                          f"inputs and {len(graph.output)} outputs")
    x, y = inputs[0], graph.output[0]
    want = pp.input_shape(1)[1:]
    dims = _dims(x, onnx_path)
    if dims[0] > 0:
        raise BundleError(f"{onnx_path}: input {x.name!r} has a fixed batch size {dims[0]}; Triton's dynamic "
                          "batching needs a dynamic batch dimension (re-export the member with one)")
    if any(d > 0 and d != w for d, w in zip(dims[1:], want)) or len(dims) - 1 != len(want):
        raise BundleError(f"{onnx_path}: input {x.name!r} has shape {dims} but the member's preprocessing "
                          f"makes (batch, {', '.join(map(str, want))})")
    classes = _dims(y, onnx_path)[-1]
    classes = classes if classes > 0 else num_labels
    return MemberIO(TensorConfig(x.name, _triton_type(x, onnx_path), tuple(want)),
                    TensorConfig(y.name, _triton_type(y, onnx_path), (classes,)))


def member_config(name: str, backend: str, io: MemberIO, max_batch: int, instances: int,
                  queue_delay_us: int, parameters: tuple[tuple[str, str], ...],
                  engines: list[Engine] = (), threads: int | None = None) -> ModelConfig:
    """The ``config.pbtxt`` of one member model (for ``python-ort``, pass :func:`python_ort_io`'s ``io``)."""
    common = {"name": name, "inputs": (io.input,), "outputs": (io.output,), "max_batch_size": max_batch,
              "instance_count": instances, "queue_delay_us": queue_delay_us}
    if backend == "onnxruntime":
        # no instance kind: Triton puts the instances on the GPU when there is one, else the CPU
        return ModelConfig(backend="onnxruntime", default_model_filename="model.onnx",
                           parameters=parameters, **common)
    if backend == "tensorrt":
        ccs = tuple((e.compute_capability, Path(e.file).name) for e in engines if e.compute_capability)
        default = Path(engines[0].file).name if len(engines) == 1 else None
        return ModelConfig(platform="tensorrt_plan", default_model_filename=default, cc_model_filenames=ccs,
                           instance_kind="KIND_GPU", parameters=parameters, **common)
    params = parameters + (("threads", str(int(threads or 0))),)
    return ModelConfig(backend="python", instance_kind="KIND_CPU", parameters=params, **common)


def python_ort_io(io: MemberIO) -> MemberIO:
    """The tensors of a ``python-ort`` member: float32 in and out whatever the ONNX file's types."""
    return MemberIO(dataclasses.replace(io.input, data_type="TYPE_FP32"),
                    dataclasses.replace(io.output, data_type="TYPE_FP32"))


def member_engines(manifest: dict, member: dict) -> list[Engine]:
    """The TensorRT engines the manifest lists for ``member`` (possibly none).

    Accepted forms: ``member["engines"]`` as a list of ``{"file": ..., "compute_capability": ...,
    "max_batch": ...}`` entries (or of file names), or a top-level ``manifest["engines"]`` list of
    such entries with a ``"member"`` key. ``compute_capability`` may be "8.7", "sm87", 87 or [8, 7],
    also inside a ``"fingerprint"`` mapping.
    """
    entries = list(member.get("engines") or [])
    entries += [e for e in manifest.get("engines") or [] if isinstance(e, dict) and e.get("member") == member["name"]]
    out = []
    for e in entries:
        e = {"file": e} if isinstance(e, str) else e
        fp = e.get("fingerprint") if isinstance(e.get("fingerprint"), dict) else {}
        cc = e.get("compute_capability", fp.get("compute_capability"))
        mb = e.get("max_batch", (e.get("build_options") or {}).get("max_batch"))
        out.append(Engine(str(e["file"]), _cc(cc), int(mb) if mb else None))
    return out


def check_engines(bundle: Path, member: str, engines: list[Engine]) -> None:
    """Refuse, in one line, engines that are missing or cannot be told apart by Triton."""
    if not engines:
        raise EdgeCommitteeError(
            f"{bundle}: member {member!r} has no TensorRT engine in the manifest, so --member-backend tensorrt "
            "cannot be exported; compile engines on the target first (edge-committee compile), or use "
            "--member-backend onnxruntime")
    for e in engines:
        if not (bundle / e.file).is_file():
            raise BundleError(f"{bundle / e.file}: engine of member {member!r} listed in the manifest is missing")
    names = [Path(e.file).name for e in engines]
    if len(engines) > 1 and (any(e.compute_capability is None for e in engines) or len(set(names)) < len(names)):
        raise BundleError(f"{bundle}: member {member!r} has {len(engines)} engines; Triton picks one by compute "
                          "capability, so each needs a distinct file name and a compute_capability entry")


def write_member_files(folder: Path, backend: str, bundle: Path, onnx_file: Path,
                       engines: list[Engine], templates: Path) -> None:
    """The version folder ``folder`` (``<model>/1``) of one member model."""
    folder.mkdir(parents=True)
    if backend == "tensorrt":
        for e in engines:
            _link_or_copy(bundle / e.file, folder / Path(e.file).name)
        return
    _link_or_copy(onnx_file, folder / "model.onnx")
    if backend == "python-ort":
        shutil.copyfile(templates / "member_ort_model.py", folder / "model.py")


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link a bundle file into the repository (same file system), else copy it."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _onnx():
    from edge_committee._lazy import require

    return require("onnx")


def _dims(value_info, path: Path) -> list[int]:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        raise BundleError(f"{path}: tensor {value_info.name!r} has no shape")
    return [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]


def _triton_type(value_info, path: Path) -> str:
    onnx = _onnx()
    elem = onnx.TensorProto.DataType.Name(value_info.type.tensor_type.elem_type)
    if elem not in ONNX_TO_TRITON:
        raise BundleError(f"{path}: tensor {value_info.name!r} has type {elem}; expected FLOAT or FLOAT16")
    return ONNX_TO_TRITON[elem]


def _cc(value) -> str | None:
    """A compute capability as Triton's ``cc_model_filenames`` key ("8.7")."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return f"{int(value[0])}.{int(value[1])}"
    text = str(value).lower().removeprefix("sm_").removeprefix("sm")
    m = re.fullmatch(r"(\d+)\.(\d+)", text) or re.fullmatch(r"(\d+)(\d)", text)
    if not m:
        raise BundleError(f"engine compute capability {value!r} is not understood; expected e.g. '8.7' or 'sm87'")
    return f"{int(m.group(1))}.{int(m.group(2))}"
