"""The engines a bundle holds: the manifest's ``tensorrt`` section, and choosing one for this machine.

``manifest["tensorrt"]``::

    {"engines": [{"member": "phi0", "kind": "member", "file": "members/phi0.fp16.sm87.trt10.3.engine",
                  "precision": "fp16", "fingerprint": {...}, "build_seconds": 41.2,
                  "input": "input", "max_batch": 64}, ...,
                 {"member": null, "kind": "cascade", "file": "cascade.sm87.trt10.3.engine", "onnx": "...", ...}],
     "timing_caches": {"sm87.trt10.3": "timing.sm87.trt10.3.cache"}}

Engines for several machines can live in one bundle (their names differ by GPU and version); a
loader takes the one whose fingerprint matches this machine. Every file is listed and
checksummed in the manifest like any other bundle file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_committee.backend.tensorrt.fingerprint import (
    EngineMismatchError,
    Fingerprint,
    describe_machine,
    runs_here,
)
from edge_committee.backend.tensorrt.gpu import GpuInfo
from edge_committee.errors import BundleError

SECTION = "tensorrt"


def engine_entries(manifest: dict) -> list[dict[str, Any]]:
    """Every engine entry of a manifest (empty when the bundle was never compiled)."""
    return list(manifest.get(SECTION, {}).get("engines", []))


def put_engine(manifest: dict, entry: dict[str, Any]) -> None:
    """Add an engine entry, replacing any entry for the same file."""
    section = manifest.setdefault(SECTION, {"engines": [], "timing_caches": {}})
    section["engines"] = [e for e in section.get("engines", []) if e["file"] != entry["file"]] + [entry]


def compile_command(root: Path | str, fp: Fingerprint | None = None, whole: bool = False) -> str:
    """The ``edge-committee compile`` line that (re)builds an engine with ``fp``'s options."""
    flags = fp.build_options.cli_flags() if fp is not None else ""
    return " ".join(p for p in ("edge-committee compile", str(root), flags, "--whole" if whole else "") if p)


def _member_sha(manifest: dict, member: str) -> str | None:
    for m in manifest.get("members", []):
        if m["name"] == member:
            return m.get("sha256")
    return None


def candidates(manifest: dict, root: Path, member: str | None, dla_core: int | None = None) -> list[dict[str, Any]]:
    """The engine entries for ``member`` (None: the fused cascade), DLA core ``dla_core`` first-class.

    With ``dla_core`` None, GPU engines are preferred but a DLA-only bundle still loads. Raises
    :class:`BundleError` naming the ``compile`` command when there is none (no TensorRT needed).
    """
    kind = "member" if member is not None else "cascade"
    found = [e for e in engine_entries(manifest) if e.get("member") == member and e.get("kind", "member") == kind]
    dla = {id(e): Fingerprint.from_dict(e["fingerprint"]).build_options.dla_core for e in found}
    if dla_core is not None:
        found = [e for e in found if dla[id(e)] == dla_core]
    else:
        found = [e for e in found if dla[id(e)] is None] or found
    if not found:
        what = f"member {member!r}" if member is not None else "the fused cascade"
        where = f" for DLA core {dla_core}" if dla_core is not None else ""
        fix = (compile_command(root) + (f" --dla {dla_core}" if dla_core is not None else "")
               + ("" if member else " --whole"))
        from edge_committee.backend.tensorrt.compat import compile_blocker, other_backends

        blocker = compile_blocker()
        if blocker:  # never send the user to a command that cannot run here
            raise BundleError(f"{root}: the bundle has no TensorRT engine for {what}{where}, and this machine cannot "
                              f"build one ({blocker}): build it on the target device with: {fix}; here use "
                              f"--backend {other_backends()}")
        raise BundleError(f"{root}: the bundle has no TensorRT engine for {what}{where}; build it on this "
                          f"machine with: {fix}")
    return found


def select_engine(manifest: dict, root: Path, member: str | None, tensorrt: str, gpu: GpuInfo,
                  dla_core: int | None = None, plugin_sha256: str | None = None) -> dict[str, Any]:
    """The engine entry for ``member`` (None: the fused cascade) that runs on this machine.

    Raises :class:`BundleError` when the bundle has no such engine and :class:`EngineMismatchError`
    when none of its engines fits this machine (or one is stale: built from another ONNX file or
    plugin library); both say the ``compile`` command that fixes it.
    """
    found = candidates(manifest, root, member, dla_core)
    here = describe_machine(tensorrt, gpu)
    problems = []
    for entry in found:
        fp = Fingerprint.from_dict(entry["fingerprint"])
        reason = runs_here(fp, tensorrt, gpu) or _stale(manifest, entry, fp, plugin_sha256)
        if reason is None:
            return entry
        problems.append((entry, fp, reason))
    entry, fp, reason = problems[0]
    from edge_committee.backend.tensorrt.compat import builder_installed

    where = "" if builder_installed() else (" on a machine with this GPU and the full TensorRT (this one has only "
                                            "the runtime, which cannot build engines)")
    raise EngineMismatchError(
        f"engine {root / entry['file']} was built for {fp.machine()} (onnx {fp.onnx_sha256[:12]}"
        f"{', plugin ' + fp.plugin_sha256[:12] if fp.plugin_sha256 else ''}) and cannot run here: {reason}; "
        f"this machine has {here}; rebuild it{where} with: {compile_command(root, fp, whole=member is None)}"
    )


def _stale(manifest: dict, entry: dict, fp: Fingerprint, plugin_sha256: str | None) -> str | None:
    if entry.get("kind", "member") == "member":
        current = _member_sha(manifest, entry["member"])
        if current is not None and current != fp.onnx_sha256:
            return (f"its ONNX file changed since (sha256 {fp.onnx_sha256[:12]} when built, "
                    f"{current[:12]} now)")
    else:
        onnx = entry.get("onnx")
        current = manifest.get("files", {}).get(onnx) if onnx else None
        if current is not None and current != fp.onnx_sha256:
            return (f"the fused cascade file {onnx} changed since (sha256 {fp.onnx_sha256[:12]} when built, "
                    f"{current[:12]} now)")
    if fp.plugin_sha256 and plugin_sha256 and fp.plugin_sha256 != plugin_sha256:
        return (f"it was parsed with another CascadeGate plugin library (sha256 {fp.plugin_sha256[:12]}, "
                f"this machine's is {plugin_sha256[:12]})")
    return None


def require_listed(manifest: dict, root: Path, entry: dict) -> Path:
    """The engine's path, checking the manifest lists it (a bundle file must be checksummed)."""
    rel = entry["file"]
    if rel not in manifest.get("files", {}):
        raise BundleError(f"{root / 'manifest.json'}: engine {rel} is not listed in 'files'; recompile the bundle")
    return root / rel
