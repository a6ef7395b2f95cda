"""Export a bundle as a Triton Inference Server model repository.

Layout (``NAME`` is the bundle's name unless given)::

    model_repository/
      edge_committee.json              what was exported: bundle, manifest sha256, models
      NAME/config.pbtxt                the cascade: Python backend (BLS), raw uint8 images in
      NAME/1/model.py, cascade.json    the SDK's host loop; members, preprocessing, thresholds
      NAME/1/_sdk/edge_committee/...   the pure-Python modules that loop needs (copied)
      NAME.MEMBER/config.pbtxt         one model per cascade member (see members.py)
      NAME.MEMBER/1/model.onnx | *.engine (+ model.py, _sdk/ for python-ort)

Every ``config.pbtxt`` carries the bundle's manifest sha256 as the parameter
``edge_committee.manifest_sha256``, so a client can ask the server which bundle it serves. Every
model folder holds ``edge_committee.model.json``, the sha256 of each of its files: the models
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
from edge_committee._util import sha256_file
from edge_committee.bundle import MANIFEST, read_manifest
from edge_committee.errors import EdgeCommitteeError
from edge_committee.serve.triton import bls
from edge_committee.serve.triton.config import MEMBER_BACKENDS, ModelConfig, TensorConfig
from edge_committee.serve.triton.integrity import write_model_marker
from edge_committee.serve.triton.members import (
    member_config,
    member_engines,
    member_io,
    python_ort_io,
    write_member_files,
)
from edge_committee.serve.triton.repository import MARKER, RepoStaging
from edge_committee.spec.preprocess import Preprocessing

LOG = logging.getLogger("edge_committee")
TEMPLATES = Path(__file__).resolve().parent / "model_templates"
#: the modules a Python-backend model imports; export copies them and everything they import
SDK_ENTRIES = ("edge_committee.serve.triton.bls", "edge_committee.serve.triton.member_ort")
SHA_PARAM = "edge_committee.manifest_sha256"


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


def export_triton(bundle: str | os.PathLike, out: str | os.PathLike, max_batch: int = 64,
                  member_backend: str = "onnxruntime", instances: int = 1, threads: int | None = None,
                  name: str | None = None, singles: Sequence[str] = (), queue_delay_us: int = 0,
                  tensorrt_version: str | None = None, force: bool = False) -> TritonExport:
    """Write a Triton model repository for ``bundle``'s cascade into ``out`` (atomically).

    Args:
        bundle: the bundle folder (every checksum is verified).
        out: the repository folder. In an earlier export only the models we wrote are replaced
            (the user's other models stay); any other non-empty folder is refused unless ``force``
            (see :mod:`edge_committee.serve.triton.repository`).
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
        force: add the models to a folder that is not an earlier export, replacing model folders
            of the same names.
    """
    _check_args(member_backend, max_batch, instances)
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    digest = sha256_file(bundle / MANIFEST)
    cascade = _model_name(name or manifest["name"])
    by_name = {m["name"]: m for m in manifest["members"]}
    members = list(manifest["cascade"]["members"])
    unknown = [s for s in singles if s not in by_name]
    if unknown:
        raise EdgeCommitteeError(f"singles: {unknown[0]!r} is not a member of {bundle}; members: {', '.join(by_name)}")
    used = list(dict.fromkeys(members + list(singles)))
    engines = {m: member_engines(manifest, bundle, m, tensorrt_version) if member_backend == "tensorrt" else []
               for m in used}
    params = ((SHA_PARAM, digest), ("edge_committee.bundle", str(manifest["name"])))
    staging = RepoStaging(out, force=force)
    with staging as stage:
        entries = {}
        for m in used:
            entries[m] = _write_member(stage, bundle, manifest, by_name[m], f"{cascade}.{_model_name(m)}",
                                       member_backend, engines[m], max_batch, instances, threads,
                                       queue_delay_us, params)
        spec = _cascade_spec(manifest, digest, members, entries, bundle)
        _write_cascade(stage, cascade, spec, max_batch, instances, queue_delay_us, params)
        single_models = {}
        for m in singles:
            single = dict(spec, members=[entries[m]], thresholds=[])
            single_models[m] = f"{cascade}.{_model_name(m)}.alone"
            _write_cascade(stage, single_models[m], single, max_batch, instances, queue_delay_us, params)
        result = TritonExport(Path(out).resolve(), cascade, {m: entries[m]["model"] for m in members},
                              single_models, member_backend, digest, max_batch)
        for model in [cascade, *dict.fromkeys(e["model"] for e in entries.values()), *single_models.values()]:
            write_model_marker(stage / model, digest)  # what is ours, and what the models verify at load
        _write_marker(stage / MARKER, result, bundle, manifest)
    staging.commit()
    LOG.info("wrote %s: cascade model %r, %d member models (%s)", result.path, cascade, len(used), member_backend)
    return result


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


def _check_args(member_backend: str, max_batch: int, instances: int) -> None:
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
                  engines: list, max_batch: int, instances: int, threads: int | None,
                  queue_delay_us: int, params: tuple) -> dict:
    """Write one member model; returns its ``cascade.json`` entry."""
    pp = Preprocessing.from_dict(member["preprocessing"], where=f"member {member['name']}")
    onnx_file = bundle / member["file"]
    io = member_io(onnx_file, pp, len(manifest["labels"]))
    if backend == "python-ort":
        io = python_ort_io(io)
    mb = max_batch
    if backend == "tensorrt":
        mb = min([max_batch] + [e.max_batch for e in engines])
        if mb < max_batch:
            LOG.info("member %s: max batch %d (its engines' profile)", member["name"], mb)
    cfg = member_config(model, backend, io, mb, instances, queue_delay_us, params, engines, threads)
    folder = stage / model
    write_member_files(folder / "1", backend, bundle, onnx_file, engines, TEMPLATES)
    (folder / "config.pbtxt").write_text(cfg.to_text(), encoding="utf-8")
    if backend == "python-ort":
        copy_sdk(folder / "1" / "_sdk")
    return {"name": member["name"], "model": model, "max_batch": mb, "preprocessing": member["preprocessing"],
            **io.describe()}


def _cascade_spec(manifest: dict, digest: str, members: list[str], entries: dict, bundle: Path | None = None) -> dict:
    c = manifest["cascade"]
    spec = {"bundle": manifest["name"], "manifest_sha256": digest, "labels": list(manifest["labels"]),
            "confidence": c["confidence"], "thresholds": [float(t) for t in c["thresholds"]][: len(members) - 1],
            "members": [entries[m] for m in members]}
    if c.get("combiner") and bundle is not None:  # a learned committee: its stage combiners' numbers
        from edge_committee.cascade.learned_onnx import bundle_stage_combiners

        spec["combiner"] = [comb.to_dict() for comb in bundle_stage_combiners(bundle, manifest)]
    return spec


def cascade_config(model: str, num_classes: int, max_batch: int, instances: int, queue_delay_us: int,
                   params: tuple) -> ModelConfig:
    """The BLS model's config: uint8 images [N, H, W, C] in; Prediction's fields out."""
    outputs = (TensorConfig("labels", "TYPE_INT32", (1,)), TensorConfig("confidence", "TYPE_FP32", (1,)),
               TensorConfig("exit_stage", "TYPE_INT32", (1,)), TensorConfig("flags", "TYPE_INT32", (1,)),
               TensorConfig("probs", "TYPE_FP32", (num_classes,)))
    assert [o.name for o in outputs] == list(bls.OUTPUTS)
    return ModelConfig(name=model, backend="python", max_batch_size=max_batch, instance_count=instances,
                       instance_kind="KIND_CPU", queue_delay_us=queue_delay_us, parameters=params,
                       inputs=(TensorConfig(bls.INPUT, "TYPE_UINT8", (-1, -1, -1)),), outputs=outputs)


def _write_cascade(stage: Path, model: str, spec: dict, max_batch: int, instances: int,
                   queue_delay_us: int, params: tuple) -> None:
    folder = stage / model / "1"
    folder.mkdir(parents=True)
    cfg = cascade_config(model, len(spec["labels"]), max_batch, instances, queue_delay_us, params)
    (stage / model / "config.pbtxt").write_text(cfg.to_text(), encoding="utf-8")
    (folder / bls.CASCADE_JSON).write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    shutil.copyfile(TEMPLATES / "cascade_model.py", folder / "model.py")
    copy_sdk(folder / "_sdk")


def _write_marker(path: Path, result: TritonExport, bundle: Path, manifest: dict) -> None:
    info = {"format": 1, "edge_committee": __version__, "bundle": manifest["name"],
            "bundle_path": str(bundle.resolve()), "manifest_sha256": result.manifest_sha256,
            "member_backend": result.member_backend, "max_batch": result.max_batch,
            "cascade_model": result.cascade_model, "member_models": result.member_models,
            "single_models": result.single_models, "labels": list(manifest["labels"])}
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
