"""Export a bundle as a Triton Inference Server model repository.

Layout (``NAME`` is the bundle's name unless given)::

    model_repository/
      edge_committee.json              what was exported: bundle, manifest sha256, models
      NAME/config.pbtxt                the cascade: Python backend (BLS), raw uint8 images in, the
                                       outputs of the bundle's task out (tasks.py)
      NAME/1/model.py, cascade.json    the SDK's host loop; members, preprocessing, thresholds
      NAME/1/_sdk/edge_committee/...   the pure-Python modules that loop needs (copied)
      NAME.MEMBER/config.pbtxt         one model per cascade member (see members.py)
      NAME.MEMBER/1/model.onnx | *.engine (+ model.py, _sdk/ for python-ort)

Every ``config.pbtxt`` carries the bundle's identity, the manifest's own ``manifest_sha256`` (what
``edge-committee inspect`` prints; the fused file's metadata and ``serve``'s ready line carry the
same), as the parameter ``edge_committee.manifest_sha256``, so a client can ask the server which bundle it serves.
Every model folder holds ``edge_committee.model.json``, the sha256 of each of its files: the models
verify them when Triton loads them and refuse to start if any changed
(:mod:`~edge_committee.serve.triton.integrity`). The models are written into a temporary sibling
folder and renamed into place; in an existing repository only our models are replaced
(:mod:`~edge_committee.serve.triton.repository`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from edge_committee import __version__
from edge_committee.bundle import DIGEST_KEY, read_manifest
from edge_committee.errors import EdgeCommitteeError
from edge_committee.serve.triton import bls
from edge_committee.serve.triton.config import (
    MEMBER_BACKENDS,
    ModelConfig,
    TensorConfig,
    Warmup,
    version_policy_text,
)
from edge_committee.serve.triton.integrity import write_model_marker
from edge_committee.serve.triton.members import (
    _link_or_copy,
    member_config,
    member_engines,
    member_io,
    python_ort_io,
    write_member_files,
)
from edge_committee.serve.triton.repository import MARKER, RepoStaging, exported_models
from edge_committee.serve.triton.tasks import LABELS_FILE, describe_outputs, task_kind
from edge_committee.spec.preprocess import Preprocessing

LOG = logging.getLogger("edge_committee")
TEMPLATES = Path(__file__).resolve().parent / "model_templates"
#: the modules a Python-backend model imports; export copies them and everything they import
SDK_ENTRIES = ("edge_committee.serve.triton.bls", "edge_committee.serve.triton.member_ort")
SHA_PARAM = "edge_committee.manifest_sha256"

FORMS = ("bls", "fused")


@dataclasses.dataclass(frozen=True)
class TritonExport:
    """What :func:`export_triton` wrote."""

    path: Path
    cascade_model: str
    member_models: dict[str, str]  #: member name -> Triton model name
    single_models: dict[str, str]  #: member name -> a one-member cascade model (``singles=``)
    member_backend: str
    manifest_sha256: str
    max_batch: int
    form: str = "bls"
    version: int = 1
    versions: tuple[int, ...] = (1,)  #: every version of the cascade model now in the repository
    task: str = "classification"  #: the bundle's task (its cascade model's outputs: :mod:`.tasks`)
    outputs: str = ""  #: the cascade model's outputs and their shapes, for a summary line
    input: str = "uint8 images [N, H, W, C]"  #: the cascade model's input, for a summary line


@dataclasses.dataclass(frozen=True)
class _Common:
    """What every model of one export shares."""

    max_batch: int
    instances: int
    queue_delay_us: int
    params: tuple
    version: int
    version_policy: str
    preferred: tuple[int, ...]
    warmup: bool

    def extra(self, max_batch: int | None = None) -> dict:
        mb = self.max_batch if max_batch is None else max_batch
        return {"version_policy": self.version_policy,
                "preferred_batch_sizes": tuple(b for b in self.preferred if b <= mb)}

    def warmups(self, inputs: tuple, max_batch: int) -> tuple:
        """Zeros at batch 1 and at the largest preferred batch: the sizes the first requests come in."""
        if not self.warmup:
            return ()
        sizes = sorted({1, *[b for b in self.preferred if b <= max_batch]})
        sizes = sizes[:1] + sizes[-1:] if len(sizes) > 1 else sizes
        return tuple(Warmup(f"zeros_batch{b}", b, inputs) for b in sizes)


def export_triton(bundle: str | os.PathLike, out: str | os.PathLike, max_batch: int = 64,
                  member_backend: str = "onnxruntime", instances: int = 1, threads: int | None = None,
                  name: str | None = None, singles: Sequence[str] = (), queue_delay_us: int = 0,
                  tensorrt_version: str | None = None, *, form: str = "bls", source_size=None,
                  version: int | None = None, version_policy: str = "latest:1", warmup: bool = True,
                  preferred_batch_sizes: Sequence[int] | None = None, force: bool = False) -> TritonExport:
    """Write a Triton model repository for ``bundle``'s cascade into ``out`` (atomically).

    Args:
        bundle: the bundle folder (every checksum is verified).
        out: the repository folder. In an earlier export only the models we wrote are replaced
            (the user's other models stay; with ``version``, our models keep their earlier versions);
            any other non-empty folder is refused unless ``force`` (see
            :mod:`edge_committee.serve.triton.repository`).
        max_batch: ``max_batch_size`` of every model (default 64).
        member_backend: ``onnxruntime`` (NVIDIA's containers; default), ``tensorrt`` (compiled
            engines listed in the manifest) or ``python-ort`` (servers with only the Python
            backend, such as the one ``nvidia-pytriton`` bundles).
        instances: instances per model (``instance_group`` count; default 1).
        threads: ONNX Runtime intra-op threads per ``python-ort`` instance (default: its own).
        name: the cascade model's name (default: the bundle's name).
        singles: members to serve also alone, each as a one-member cascade model
            ``NAME.MEMBER.alone`` with the same raw-image interface (for comparisons).
        queue_delay_us: the dynamic batcher's wait for more requests, in microseconds (default 0).
        tensorrt_version: with ``tensorrt``, the server's TensorRT (e.g. "10.3"), to pick among
            engines built with several versions for one GPU (default: any, if unambiguous).
        form: ``bls`` (default: the cascade as a Python BLS model calling one model per member)
            or ``fused`` (the ``export-onnx`` file as one ONNX Runtime model; ``member_backend``
            ``onnxruntime`` or ``python-ort``; needs ``source_size`` unless the bundle records one).
        source_size: with ``fused``, the raw images' ``WxH[xC]`` (width x height) (see ``export-onnx``).
        version: write the models as this version and keep the versions already in ``out``
            (refused if ``out`` has it); None (default): replace ``out`` with version 1.
        version_policy: every model's ``version_policy``: ``latest[:N]`` (default ``latest:1``),
            ``all`` or ``specific:V1,V2``.
        warmup: ``model_warmup`` with zero inputs for every model whose input shape is fixed
            (members, fused), so the first requests do not pay session start-up (default on).
        preferred_batch_sizes: ``dynamic_batching.preferred_batch_size`` (default: the batch
            sizes the bundle's latency profiles measured, if any).
        force: add the models to a folder that is not an earlier export, replacing model folders
            of the same names.
    """
    _check_args(member_backend, max_batch, instances, form, version)
    version_policy_text(version_policy)  # one line now, not a broken config later
    if name is not None and not re.sub(r"[^A-Za-z0-9_.-]", "", str(name)).lstrip("."):  # '' or nothing usable
        raise EdgeCommitteeError(f"--name {name!r}: expected a model name of letters, digits, '_', '-' or '.'; "
                                 "leave --name out to use the bundle's name")
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    kind = task_kind(manifest.get("task"))
    if kind.name != "classification" and member_backend == "tensorrt":
        raise EdgeCommitteeError(f"{bundle}: a {kind.name} bundle has no TensorRT engines ('compile' builds them for "
                                 "classification bundles only); use --member-backend onnxruntime or python-ort")
    digest = manifest[DIGEST_KEY]  # the bundle's identity, as inspect prints it
    cascade = _model_name(name or manifest["name"])
    by_name = {m["name"]: m for m in manifest["members"]}
    members = list(manifest["cascade"]["members"])
    unknown = [s for s in singles if s not in by_name]
    if unknown:
        raise EdgeCommitteeError(f"singles: {unknown[0]!r} is not a member of {bundle}; members: {', '.join(by_name)}")
    preferred = tuple(preferred_batch_sizes) if preferred_batch_sizes is not None else profiled_batch_sizes(manifest)
    params = ((SHA_PARAM, digest), ("edge_committee.bundle", str(manifest["name"])))
    common = _Common(int(max_batch), int(instances), int(queue_delay_us), params, int(version or 1),
                     version_policy, preferred, warmup)
    staging = _RepoStaging(out, keep_versions=version is not None, force=force)
    with staging as stage:
        if form == "fused":
            result = _export_fused(stage, bundle, manifest, cascade, member_backend, common, digest, source_size,
                                   threads)
        else:
            result = _export_bls(stage, bundle, manifest, cascade, members, singles, by_name, member_backend, common,
                                 digest, threads, tensorrt_version)
        result = dataclasses.replace(result, path=Path(out).resolve(), versions=_versions(stage / cascade),
                                     task=kind.name, outputs=_outputs_line(manifest, kind, form),
                                     input=kind.input_text)
        for model in sorted(p for p in stage.iterdir() if p.is_dir()):  # every model folder staged is ours
            write_model_marker(model, digest)  # what is ours, and what the models verify at load
        _write_marker(stage / MARKER, result, bundle, manifest)
    staging.commit()
    LOG.info("wrote %s: cascade model %r version %d, %d member models (%s)", result.path, cascade, common.version,
             len(result.member_models), member_backend)
    return result


def profiled_batch_sizes(manifest: dict) -> tuple[int, ...]:
    """The batch sizes above 1 the bundle's latency profiles measured (``edge-committee profile``), sorted.

    1 is left out: any single queued request would form a "preferred" batch at once, so the batcher
    would never wait ``max_queue_delay_microseconds`` for more.
    """
    sizes = {int(b) for p in (manifest.get("profiles") or {}).values() for b in (p.get("batch_sizes") or ())}
    return tuple(sorted(b for b in sizes if b > 1))


def _export_bls(stage: Path, bundle: Path, manifest: dict, cascade: str, members: list, singles: Sequence[str],
                by_name: dict, member_backend: str, common: _Common, digest: str, threads: int | None,
                tensorrt_version: str | None) -> TritonExport:
    used = list(dict.fromkeys(members + list(singles)))
    engines = {m: member_engines(manifest, bundle, m, tensorrt_version) if member_backend == "tensorrt" else []
               for m in used}
    entries = {}
    for m in used:
        entries[m] = _write_member(stage, bundle, manifest, by_name[m], f"{cascade}.{_model_name(m)}",
                                   member_backend, engines[m], threads, common)
    spec = _cascade_spec(manifest, digest, members, entries, bundle)
    _write_cascade(stage, cascade, spec, common)
    single_models = {}
    for m in singles:
        single = dict(spec, members=[entries[m]], thresholds=[])
        single_models[m] = f"{cascade}.{_model_name(m)}.alone"
        _write_cascade(stage, single_models[m], single, common)
    return TritonExport(stage, cascade, {m: entries[m]["model"] for m in members}, single_models, member_backend,
                        digest, common.max_batch, "bls", common.version)


def _export_fused(stage: Path, bundle: Path, manifest: dict, model: str, backend: str, common: _Common,
                  digest: str, source_size, threads: int | None = None) -> TritonExport:
    """The ``export-onnx`` file (compact form, exact preprocessing) as one model ``model``."""
    from edge_committee.export.cascade_onnx.export import build_from_bundle, write_model

    onnx_model, _, source = build_from_bundle(bundle, manifest, source_size=source_size)
    folder = stage / model / str(common.version)
    folder.mkdir(parents=True)
    write_model(onnx_model, folder / "model.onnx")
    if backend == "python-ort":  # ONNX Runtime intra-op threads of its session (0: its default)
        common = dataclasses.replace(common, params=common.params + (("threads", str(int(threads or 0))),))
    outputs = None
    if manifest.get("task") == "segmentation":  # the tile cascade file answers the BLS model's outputs
        outputs = task_kind("segmentation").outputs({"labels": manifest["labels"],
                                                     "segmentation": manifest["segmentation"]})
    clips = None
    if manifest.get("task") == "video":  # the clip cascade file takes clips of the bundle's length at one frame size
        clips = TensorConfig(task_kind("video").input, "TYPE_UINT8",
                             (int(manifest["video"]["clip_frames"]), source.height, source.width, source.channels))
    cfg = fused_config(model, source, len(manifest["labels"]), backend, common, outputs, clips)
    _write_model_config(stage / model, cfg, manifest)
    if backend == "python-ort":
        shutil.copyfile(TEMPLATES / "fused_ort_model.py", folder / "model.py")
        copy_sdk(folder / "_sdk")
    return TritonExport(stage, model, {}, {}, backend, digest, common.max_batch, "fused", common.version)


def fused_config(model: str, source, num_classes: int, backend: str, common: _Common,
                 outputs: tuple | None = None, images: TensorConfig | None = None) -> ModelConfig:
    """A fused file's config: uint8 images [N, H, W, C] in (``images``: another input, as a clip cascade's
    ``clips`` [N, T, H, W, C]); the BLS model's outputs and shapes out.

    The file's per-sample outputs are rank 1, ``(N,)``; ``reshape { shape: [] }`` has Triton
    present them as ``[N, 1]``, as the BLS model answers, so a client reads both the same way.
    (A Python-backend model makes the ``[N, 1]`` itself: Triton's reshape is for the model's own
    tensors, which that model writes.)
    """
    scalar = None if backend == "python-ort" else ()
    outputs = outputs or (TensorConfig("labels", "TYPE_INT32", (1,), scalar),
               TensorConfig("confidence", "TYPE_FP32", (1,), scalar),
               TensorConfig("exit_stage", "TYPE_INT32", (1,), scalar),
               TensorConfig("flags", "TYPE_INT32", (1,), scalar),
               TensorConfig("probs", "TYPE_FP32", (num_classes,), label_filename=LABELS_FILE))
    images = images or TensorConfig(bls.INPUT, "TYPE_UINT8", (source.height, source.width, source.channels))
    kind = {"backend": "python", "instance_kind": "KIND_CPU"} if backend == "python-ort" else {
        "backend": "onnxruntime", "default_model_filename": "model.onnx"}
    return ModelConfig(name=model, max_batch_size=common.max_batch, instance_count=common.instances,
                       queue_delay_us=common.queue_delay_us, parameters=common.params, inputs=(images,),
                       outputs=outputs, warmup=common.warmups((images,), common.max_batch), **kind,
                       **common.extra())


def read_export(repository: str | os.PathLike) -> dict:
    """The ``edge_committee.json`` of an exported repository; fails naming the folder."""
    path = Path(repository) / MARKER
    if not path.is_file():
        raise EdgeCommitteeError(f"{repository}: not a repository written by export-triton (no {MARKER})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise EdgeCommitteeError(f"{path}: not valid JSON ({exc}); export the bundle again") from None


def is_export(path: str | os.PathLike) -> bool:
    return (Path(path) / MARKER).is_file()


class _RepoStaging(RepoStaging):
    """:class:`RepoStaging` that, with ``keep_versions``, first links the earlier export's model folders
    (ours only: the user's other models are never touched) into the staging folder, so the new
    version is added beside the versions already there."""

    def __init__(self, dest, keep_versions: bool = False, force: bool = False) -> None:
        super().__init__(dest, force=force)
        self.keep_versions = keep_versions

    def __enter__(self) -> Path:
        path = super().__enter__()
        if self.keep_versions and is_export(self.dest):
            listed = exported_models(self.dest)
            try:
                for model in sorted(listed):
                    if (self.dest / model).is_dir() and not (self.dest / model).is_symlink():
                        shutil.copytree(self.dest / model, path / model, copy_function=_link_or_copy)
            except BaseException:
                self._discard()
                raise
        return path


def _check_args(member_backend: str, max_batch: int, instances: int, form: str = "bls",
                version: int | None = None) -> None:
    if form not in FORMS:
        raise EdgeCommitteeError(f"form {form!r} is not known; use one of {', '.join(FORMS)}")
    if form == "fused" and member_backend == "tensorrt":
        raise EdgeCommitteeError("--form fused writes the export-onnx file for Triton's onnxruntime backend (or "
                                 "python-ort); for TensorRT use --form bls --member-backend tensorrt")
    if version is not None and not 1 <= int(version) <= 1 << 30:
        raise EdgeCommitteeError(f"--version {version} must be a positive integer (Triton's version folders), "
                                 "e.g. --version 2")
    if member_backend not in MEMBER_BACKENDS:
        raise EdgeCommitteeError(f"member backend {member_backend!r} is not known; "
                                 f"use one of {', '.join(MEMBER_BACKENDS)}")
    if not 1 <= int(max_batch) <= 1 << 16:
        raise EdgeCommitteeError(f"max batch {max_batch} must be between 1 and 65536")
    if int(instances) < 1:
        raise EdgeCommitteeError(f"instances {instances} must be at least 1")


def _model_name(text: str) -> str:
    """A Triton model (folder) name: letters, digits, '_', '-', '.'; no leading dot."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(text)).lstrip(".")
    return name or "cascade"


def _write_member(stage: Path, bundle: Path, manifest: dict, member: dict, model: str, backend: str,
                  engines: list, threads: int | None, common: _Common) -> dict:
    """Write one member model; returns its ``cascade.json`` entry."""
    pp = Preprocessing.from_dict(member["preprocessing"], where=f"member {member['name']}")
    onnx_file = bundle / member["file"]
    kind = task_kind(manifest.get("task"))
    io = member_io(onnx_file, pp, len(manifest["labels"]), kind.member_dims(pp, member), kind.member_output_rank)
    warm = io.input
    if kind.member_output_rank != 2:  # dense logits: the python-ort runner checks their rank; warm up on frames
        common = dataclasses.replace(common, params=common.params + (("output_rank", str(kind.member_output_rank)),))
        warm = dataclasses.replace(io.input, dims=tuple(pp.input_shape(1)[1:]))
    if backend == "python-ort":
        io = python_ort_io(io)
        warm = dataclasses.replace(warm, data_type=io.input.data_type)
    if kind.member_output_rank == 2:  # class names for Triton's classification extension
        io = dataclasses.replace(io, output=dataclasses.replace(io.output, label_filename=LABELS_FILE))
    mb = common.max_batch
    if backend == "tensorrt":
        mb = min([mb] + [e.max_batch for e in engines])
        if mb < common.max_batch:
            LOG.info("member %s: max batch %d (its engines' profile)", member["name"], mb)
    cfg = member_config(model, backend, io, mb, common.instances, common.queue_delay_us, common.params, engines,
                        threads, extra={**common.extra(mb), "warmup": common.warmups((warm,), mb)})
    folder = stage / model
    _check_new_version(folder / str(common.version))
    write_member_files(folder / str(common.version), backend, bundle, onnx_file, engines, TEMPLATES)
    _write_model_config(folder, cfg, manifest)
    if backend == "python-ort":
        copy_sdk(folder / str(common.version) / "_sdk")
    entry = {"name": member["name"], "model": model, "version": common.version, "max_batch": mb,
             "preprocessing": member["preprocessing"], **io.describe()}
    if member.get("view"):  # a video member's frames of the clip
        entry["view"] = dict(member["view"])
    return entry


def _check_new_version(folder: Path) -> None:
    if folder.exists():
        have = ", ".join(str(v) for v in _versions(folder.parent))
        raise EdgeCommitteeError(f"model {folder.parent.name!r} already has version {folder.name} (versions: {have}); "
                                 "choose a new --version, or leave --version out to replace the repository")


def _versions(model_folder: Path) -> tuple[int, ...]:
    return tuple(sorted(int(p.name) for p in model_folder.iterdir() if p.is_dir() and p.name.isdigit()))


def _write_model_config(folder: Path, cfg: ModelConfig, manifest: dict) -> None:
    """``config.pbtxt`` and the ``labels.txt`` its outputs name."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in ("config.pbtxt", LABELS_FILE):  # may be links to an earlier export's files: never write through
        (folder / f).unlink(missing_ok=True)
    (folder / "config.pbtxt").write_text(cfg.to_text(), encoding="utf-8")
    (folder / LABELS_FILE).write_text("".join(f"{label}\n" for label in manifest["labels"]), encoding="utf-8")


def _cascade_spec(manifest: dict, digest: str, members: list[str], entries: dict, bundle: Path | None = None) -> dict:
    c = manifest["cascade"]
    spec = {"bundle": manifest["name"], "manifest_sha256": digest, "task": manifest.get("task", "classification"),
            "labels": list(manifest["labels"]), "confidence": c["confidence"],
            "thresholds": [float(t) for t in c["thresholds"]][: len(members) - 1],
            "members": [entries[m] for m in members]}
    if manifest.get("segmentation"):  # the tile grid, tile confidence and frame of a tile cascade
        spec["segmentation"] = dict(manifest["segmentation"])
    if manifest.get("video"):  # the clip length the members' views were built for
        spec["video"] = dict(manifest["video"])
    if c.get("combiner") and bundle is not None:  # a learned committee: its stage combiners' numbers
        from edge_committee.cascade.learned_onnx import bundle_stage_combiners

        spec["combiner"] = [comb.to_dict() for comb in bundle_stage_combiners(bundle, manifest)]
    return spec


def cascade_config(model: str, spec: dict, max_batch: int, instances: int, queue_delay_us: int,
                   params: tuple, **extra) -> ModelConfig:
    """The BLS model's config: uint8 images [N, H, W, C] in; the outputs of the bundle's task out
    (:mod:`~edge_committee.serve.triton.tasks`: a classifier's Prediction fields, a tile cascade's class
    map, histogram and tile exits).

    No ``model_warmup``: its warm-up would call the member models through BLS while Triton may
    still be loading them (Triton orders the loading of ensembles, not of BLS models); the
    members warm up themselves.
    """
    kind = task_kind(spec.get("task"))
    return ModelConfig(name=model, backend="python", max_batch_size=max_batch, instance_count=instances,
                       instance_kind="KIND_CPU", queue_delay_us=queue_delay_us, parameters=params,
                       inputs=(TensorConfig(kind.input, "TYPE_UINT8", kind.input_dims),), outputs=kind.outputs(spec),
                       **extra)


def _outputs_line(manifest: dict, kind, form: str) -> str:
    """The cascade model's outputs and shapes (the fused file answers as the BLS model does)."""
    spec = {"labels": manifest["labels"], "segmentation": manifest.get("segmentation")}
    return describe_outputs(kind.outputs(spec))


def _write_cascade(stage: Path, model: str, spec: dict, common: _Common) -> None:
    folder = stage / model / str(common.version)
    _check_new_version(folder)
    folder.mkdir(parents=True)
    cfg = cascade_config(model, spec, common.max_batch, common.instances, common.queue_delay_us,
                         common.params, **common.extra())
    _write_model_config(stage / model, cfg, {"labels": spec["labels"]})
    (folder / bls.CASCADE_JSON).write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    shutil.copyfile(TEMPLATES / "cascade_model.py", folder / "model.py")
    copy_sdk(folder / "_sdk")


def _write_marker(path: Path, result: TritonExport, bundle: Path, manifest: dict) -> None:
    info = {"format": 1, "edge_committee": __version__, "bundle": manifest["name"],
            "bundle_path": str(bundle.resolve()), "manifest_sha256": result.manifest_sha256,
            "member_backend": result.member_backend, "max_batch": result.max_batch,
            "cascade_model": result.cascade_model, "member_models": result.member_models,
            "single_models": result.single_models, "labels": list(manifest["labels"]),
            "form": result.form, "version": result.version, "versions": list(result.versions),
            "task": result.task}
    path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def copy_sdk(dest: Path) -> list[str]:
    """Copy the pure-Python modules the exported models import (and theirs) into ``dest``.

    The closure is what a fresh interpreter has loaded after importing :data:`SDK_ENTRIES`, so
    it follows the SDK's imports as they are, not a hand-kept list. Returns the module names.
    """
    files = _sdk_closure()
    root = Path(files["edge_committee"]).parent
    for file in files.values():
        rel = Path(file).relative_to(root)
        target = dest / "edge_committee" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, target)
    return sorted(files)


@functools.lru_cache(maxsize=1)
def _sdk_closure() -> dict[str, str]:
    """module name -> source file of every ``edge_committee`` module the entries load."""
    code = ("import importlib, json, sys\n"
            "for m in sys.argv[1:]: importlib.import_module(m)\n"
            "print(json.dumps({k: getattr(v, '__file__', None) for k, v in sys.modules.items()"
            " if k == 'edge_committee' or k.startswith('edge_committee.')}))")
    out = subprocess.run([sys.executable, "-c", code, *SDK_ENTRIES], capture_output=True, text=True, check=True)
    files = json.loads(out.stdout)
    bad = {k: f for k, f in files.items() if not (f or "").endswith(".py")}
    if bad:  # a compiled module cannot be copied into a server's Python: a bug in the SDK's imports
        raise RuntimeError(f"the Triton models would import non-Python modules: {bad}")
    return files
