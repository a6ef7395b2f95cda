"""The member models of an exported repository, one per cascade member, for three backends.

- ``onnxruntime``: Triton's ONNX Runtime backend (NVIDIA's containers); ``1/model.onnx``.
- ``tensorrt``: the ``tensorrt_plan`` platform, for members with engines that ``edge-committee
  compile`` stored in the bundle (``manifest["tensorrt"]``); ``1/<engine file>``, one per compute
  capability (``cc_model_filenames``).
- ``python-ort``: a Python-backend model hosting the SDK's ONNX Runtime runner, for servers with
  neither backend (the ``tritonserver`` of ``nvidia-pytriton``).

Tensor names, types and dims come from the member's ONNX file (engines keep the ONNX names and
types), checked against its preprocessing.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

from edge_committee.errors import BundleError, EdgeCommitteeError
from edge_committee.serve.triton.config import (
    ONNX_TO_TRITON,
    TRITON_TO_NUMPY,
    ModelConfig,
    TensorConfig,
)
from edge_committee.spec.preprocess import Preprocessing



@dataclasses.dataclass(frozen=True)
class MemberIO:
    """A member's tensors as Triton sees them (dims without the batch dimension)."""

    input: TensorConfig
    output: TensorConfig

    def describe(self) -> dict:
        """The fields of a ``cascade.json`` member entry that the BLS runner needs."""
        return {"input": self.input.name, "output": self.output.name,
                "input_dtype": TRITON_TO_NUMPY[self.input.data_type],
                "input_dims": list(self.input.dims), "num_classes": int(self.output.dims[0])}


@dataclasses.dataclass(frozen=True)
class Engine:
    """A compiled TensorRT engine of one member, as listed in the bundle's manifest."""

    file: str  #: relative to the bundle
    compute_capability: str  #: "8.7"
    max_batch: int  #: the largest batch of its optimization profile


def member_io(onnx_path: Path, pp: Preprocessing, num_labels: int, dims: tuple[int, ...] | None = None,
              output_rank: int = 2) -> MemberIO:
    """Read the member's input and output from its ONNX file; fail naming the file.

    ``dims``: the input dims to serve (without the batch; default the preprocessing's shape; -1 for a
    size that varies, as a segmentation member's height and width); ``output_rank`` 4: dense logits
    ``(N, C, h, w)``, served as dims ``(C, -1, -1)``."""
    onnx = _onnx()
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    init = {t.name for t in graph.initializer}
    inputs = [t for t in graph.input if t.name not in init]
    if len(inputs) != 1 or not graph.output:
        raise BundleError(f"{onnx_path}: a member needs one input and an output; it has {len(inputs)} "
                          f"inputs and {len(graph.output)} outputs")
    x, y = inputs[0], graph.output[0]
    want = tuple(pp.input_shape(1)[1:]) if dims is None else tuple(dims)
    dims = _dims(x, onnx_path)
    if dims[0] > 0:
        raise BundleError(f"{onnx_path}: input {x.name!r} has a fixed batch size {dims[0]}; Triton's dynamic "
                          "batching needs a dynamic batch dimension (re-export the member with one)")
    if any(d > 0 and w > 0 and d != w for d, w in zip(dims[1:], want)) or len(dims) - 1 != len(want):
        raise BundleError(f"{onnx_path}: input {x.name!r} has shape {dims} but the member's preprocessing "
                          f"makes (batch, {', '.join(map(str, want))})")
    out_dims = _dims(y, onnx_path)
    classes = out_dims[1] if output_rank == 4 and len(out_dims) == 4 else out_dims[-1]
    classes = classes if classes > 0 else num_labels
    served = (classes,) if output_rank == 2 else (classes, -1, -1)
    return MemberIO(TensorConfig(x.name, _triton_type(x, onnx_path), tuple(want)),
                    TensorConfig(y.name, _triton_type(y, onnx_path), served))


def member_config(name: str, backend: str, io: MemberIO, max_batch: int, instances: int,
                  queue_delay_us: int, parameters: tuple[tuple[str, str], ...],
                  engines: list[Engine] = (), threads: int | None = None, extra: dict | None = None) -> ModelConfig:
    """The ``config.pbtxt`` of one member model (for ``python-ort``, pass :func:`python_ort_io`'s ``io``).

    ``extra``: more :class:`ModelConfig` fields (version policy, preferred batch sizes, warm-up).
    """
    common = {"name": name, "inputs": (io.input,), "outputs": (io.output,), "max_batch_size": max_batch,
              "instance_count": instances, "queue_delay_us": queue_delay_us, **(extra or {})}
    if backend == "onnxruntime":
        # no instance kind: Triton puts the instances on the GPU when there is one, else the CPU
        return ModelConfig(backend="onnxruntime", default_model_filename="model.onnx",
                           parameters=parameters, **common)
    if backend == "tensorrt":
        ccs = tuple((e.compute_capability, Path(e.file).name) for e in engines)
        default = Path(engines[0].file).name if len(engines) == 1 else None
        return ModelConfig(platform="tensorrt_plan", default_model_filename=default, cc_model_filenames=ccs,
                           instance_kind="KIND_GPU", parameters=parameters, **common)
    params = parameters + (("threads", str(int(threads or 0))),)
    return ModelConfig(backend="python", instance_kind="KIND_CPU", parameters=params, **common)


def python_ort_io(io: MemberIO) -> MemberIO:
    """The tensors of a ``python-ort`` member: float32 in and out whatever the ONNX file's types."""
    return MemberIO(dataclasses.replace(io.input, data_type="TYPE_FP32"),
                    dataclasses.replace(io.output, data_type="TYPE_FP32"))


def member_engines(manifest: dict, bundle: Path, member: str, tensorrt_version: str | None = None) -> list[Engine]:
    """The GPU engines of ``member`` that ``edge-committee compile`` listed in ``manifest["tensorrt"]``.

    Triton picks a plan by compute capability only (``cc_model_filenames``), so there must be one
    engine per compute capability: ``tensorrt_version`` (e.g. "10.3", the target's TensorRT) picks
    among engines built with several versions. DLA engines are left out (Triton runs plans on the
    GPU). Refuses, in one line naming the ``compile`` command, when there is none.
    """
    from edge_committee.backend.tensorrt.engines import compile_command, engine_entries
    from edge_committee.backend.tensorrt.fingerprint import Fingerprint

    found = []
    for e in engine_entries(manifest):
        if e.get("member") != member or e.get("kind", "member") != "member":
            continue
        fp = Fingerprint.from_dict(e["fingerprint"])
        if fp.build_options.dla_core is None and _version_matches(fp.tensorrt, tensorrt_version):
            max_batch = int(e.get("max_batch") or fp.build_options.max_batch)
            found.append((Engine(e["file"], fp.compute_capability, max_batch), fp.tensorrt))
    if not found:
        which = f" built with TensorRT {tensorrt_version}" if tensorrt_version else ""
        raise EdgeCommitteeError(
            f"{bundle}: member {member!r} has no GPU TensorRT engine{which} in the manifest, so --member-backend "
            f"tensorrt cannot be exported; build engines on the target with: {compile_command(bundle)} (or export "
            "with --member-backend onnxruntime)")
    by_cc: dict[str, list[str]] = {}
    for engine, version in found:
        by_cc.setdefault(engine.compute_capability, []).append(version)
    clash = {cc: v for cc, v in by_cc.items() if len(v) > 1}
    if clash:
        cc, versions = next(iter(clash.items()))
        raise EdgeCommitteeError(
            f"{bundle}: member {member!r} has engines for compute capability {cc} from TensorRT "
            f"{', '.join(sorted(versions))}; Triton picks one per compute capability: choose the server's "
            "TensorRT with --tensorrt-version (e.g. 10.3)")
    for engine, _ in found:
        if not (bundle / engine.file).is_file():
            raise BundleError(f"{bundle / engine.file}: engine of member {member!r} listed in the manifest is missing")
    return [engine for engine, _ in found]


def _version_matches(version: str, wanted: str | None) -> bool:
    """``"10.3.0.26"`` matches ``"10.3"`` and ``"10.3.0.26"`` (and anything when ``wanted`` is None)."""
    if not wanted:
        return True
    have, want = version.split("."), wanted.split(".")
    return have[: len(want)] == want


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
