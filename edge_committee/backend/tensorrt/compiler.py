"""``edge-committee compile``: build a bundle's engines on this machine and store them in the bundle.

Every engine is built by :func:`~edge_committee.backend.tensorrt.build.build_engine`, named after
what it runs on (``members/phi0.fp16.sm87.trt10.3.engine``), fingerprinted, written into the
bundle through :func:`~edge_committee.bundle.edit_bundle` (all engines or none: a failed build
leaves the bundle as it was) and listed with its checksum. The timing cache is kept in the bundle
per GPU and TensorRT version and reused by the next compile.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Callable

from edge_committee._util import sha256_file, write_bytes_atomic
from edge_committee.backend.tensorrt.build import build_engine
from edge_committee.backend.tensorrt.compat import import_builder, module_version, short_version
from edge_committee.backend.tensorrt.engines import SECTION, put_engine
from edge_committee.backend.tensorrt.fingerprint import BuildOptions, Fingerprint, cascade_engine_file, engine_file
from edge_committee.backend.tensorrt import gpu as _gpu
from edge_committee.backend.tensorrt.gpu import GpuInfo
from edge_committee.bundle.bundle import edit_bundle, read_manifest
from edge_committee.errors import BundleError

LOG = logging.getLogger("edge_committee")


@dataclasses.dataclass
class Target:
    """One engine to build: a member's ONNX file, or the fused cascade file (``member`` None)."""

    member: str | None
    onnx: Path
    precision: str
    sha256: str
    rel: str | None  #: the ONNX file relative to the bundle, when it is one of its files

    @property
    def label(self) -> str:
        return f"{self.member} ({self.precision})" if self.member else f"fused cascade {self.onnx.name}"


def member_targets(manifest: dict, root: Path, all_members: bool = False) -> list[Target]:
    """The cascade's members (or every member of the bundle), in cascade order."""
    by_name = {m["name"]: m for m in manifest["members"]}
    names = list(by_name) if all_members else list(manifest["cascade"]["members"])
    return [Target(n, root / by_name[n]["file"], by_name[n]["precision"], by_name[n]["sha256"], by_name[n]["file"])
            for n in names]


def find_fused_onnx(manifest: dict, root: Path) -> Path:
    """The bundle's fused-cascade ONNX file with the plugin gate (``export-onnx --gate plugin --into-bundle``).

    Read from the manifest's ``fused_onnx`` entries (gate ``plugin``, for the current cascade);
    exactly one must match.
    """
    cascade = manifest.get("cascade") or {}
    hits = sorted(e["file"] for e in manifest.get("fused_onnx", [])
                  if e.get("gate") == "plugin" and e.get("file") in manifest.get("files", {})
                  and (e.get("cascade") or {}).get("members") == cascade.get("members")
                  and (e.get("cascade") or {}).get("thresholds") == cascade.get("thresholds"))
    if len(hits) != 1:
        found = f"found {hits}" if hits else "found none"
        raise BundleError(f"{root}: --whole needs one fused cascade ONNX file with the plugin gate for the "
                          f"bundle's cascade ({found}); make it with `edge-committee export-onnx {root} --gate "
                          f"plugin --preprocess float32 --into-bundle`, or pass a file: --whole FILE")
    return root / hits[0]


def whole_target(manifest: dict, root: Path, path: str | None) -> Target:
    onnx = Path(path) if path else find_fused_onnx(manifest, root)
    if not onnx.is_file():
        raise BundleError(f"--whole {onnx}: no such file; make it with "
                          f"`edge-committee export-onnx {root} --gate plugin`")
    try:
        rel = onnx.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        rel = None
    return Target(None, onnx, "mixed", sha256_file(onnx), rel)


def machine_key(tensorrt: str, gpu: GpuInfo) -> str:
    """``"sm87.trt10.3"``: what a timing cache is specific to."""
    return f"{gpu.sm}.trt{short_version(tensorrt)}"


def _read_timing_cache(manifest: dict, root: Path, key: str) -> bytes | None:
    rel = manifest.get(SECTION, {}).get("timing_caches", {}).get(key)
    return (root / rel).read_bytes() if rel and (root / rel).is_file() else None


def _plugin() -> tuple[str, str]:
    from edge_committee.gate.plugin import plugin_library_path

    path = plugin_library_path()
    return path, sha256_file(path)


def compile_bundle(root: str | Path, options: BuildOptions = BuildOptions(), whole: str | bool | None = None,
                   all_members: bool = False, log: Callable[[str], None] = LOG.info) -> list[dict[str, Any]]:
    """Build engines for a bundle on this machine's GPU 0 and store them in it; returns the new entries.

    Args:
        root: the bundle folder.
        options: see :class:`~edge_committee.backend.tensorrt.fingerprint.BuildOptions`.
        whole: build the fused cascade as one engine instead of the members: a path to the fused
            ONNX file, or True to use the one in the bundle.
        all_members: build every member of the bundle, not only the cascade's.
        log: where the progress lines go (one per engine, with its build time).
    """
    root = Path(root)
    manifest = read_manifest(root)
    if whole and (manifest.get("cascade") or {}).get("combiner"):  # the plugin gate averages
        raise BundleError(f"{root}: --whole builds the fused file's CascadeGate plugin, which averages; this bundle's "
                          "committee has a learned combiner: compile the member engines (drop --whole), which the "
                          "device runtime runs with the learned gate")
    trt = import_builder()
    tensorrt, gpu = module_version(trt), _gpu.gpu_info(0)
    if whole:
        if options.dla_core is not None:
            raise BundleError("--whole with --dla: the fused cascade's If and plugin layers cannot run on DLA; "
                              "compile the members for DLA instead (drop --whole)")
        targets = [whole_target(manifest, root, whole if isinstance(whole, str) else None)]
        plugin, plugin_sha = _plugin()
    else:
        targets, plugin, plugin_sha = member_targets(manifest, root, all_members), None, None
    key = machine_key(tensorrt, gpu)
    cache = _read_timing_cache(manifest, root, key)
    log(f"compiling {len(targets)} engine(s) with TensorRT {tensorrt} on {gpu.name} ({gpu.sm})"
        + (" reusing the bundle's timing cache" if cache else ""))
    entries = []
    with edit_bundle(root) as ed:
        for i, t in enumerate(targets, 1):
            log(f"[{i}/{len(targets)}] {t.label}: building ...")
            res = build_engine(trt, t.onnx, options, t.precision, cache, plugin)
            cache = res.timing_cache or cache
            fp = Fingerprint(tensorrt, gpu.name, gpu.compute_capability, t.sha256, options.to_dict(), plugin_sha,
                             res.typing)
            rel = engine_file(t.member, t.precision, fp) if t.member else cascade_engine_file(fp)
            write_bytes_atomic(ed.add(rel), res.engine)
            entry = {"member": t.member, "kind": "member" if t.member else "cascade", "file": rel,
                     "precision": t.precision, "onnx": t.rel, "fingerprint": fp.to_dict(),
                     "build_seconds": round(res.seconds, 3), "inputs": {k: list(v) for k, v in res.inputs.items()},
                     "max_batch": res.max_batch}
            put_engine(ed.manifest, entry)
            entries.append(entry)
            log(f"[{i}/{len(targets)}] {t.label}: built in {res.seconds:.1f} s -> {rel} "
                f"({len(res.engine) / 1e6:.2f} MB)")
        if cache:
            cache_rel = f"timing.{key}.cache"
            write_bytes_atomic(ed.add(cache_rel), cache)
            ed.manifest[SECTION].setdefault("timing_caches", {})[key] = cache_rel
    return entries
