"""A bundle's cascade as one ONNX file: resolve what to fuse, build it, write it (atomically, checked).

The file records in its metadata_props the sha256 of the bundle's ``manifest.json`` at export
time (before the file itself is added to the bundle), the committee it encodes, the members'
files and checksums, the labels and the source size. Written into a bundle, it is listed in the
manifest under ``fused_onnx`` (with its checksum in ``files``) through :func:`edit_bundle`.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from edge_committee import __version__
from edge_committee._lazy import require
from edge_committee._util import atomic_path, check_output_file, sha256_file
from edge_committee.bundle import DIGEST_KEY, read_manifest
from edge_committee.bundle.bundle import MANIFEST, edit_bundle
from edge_committee.export.cascade_onnx.build import CascadeDef, Source, build_cascade_model
from edge_committee.export.cascade_onnx.errors import FusedExportError
from edge_committee.export.cascade_onnx.inline import MemberSource
from edge_committee.spec.preprocess import Preprocessing

#: manifest key listing the fused files a bundle holds
MANIFEST_KEY = "fused_onnx"


LOG = logging.getLogger("edge_committee")


def cascade_from_manifest(manifest: dict, root: Path) -> CascadeDef:
    """The bundle's chosen committee, or a one-line error when it has none."""
    c = manifest.get("cascade") or {}
    if not c.get("members"):
        raise FusedExportError(f"{root / MANIFEST}: the bundle has no chosen cascade; choose one with "
                               f"'edge-committee select {root} ...' or name the members with --members")
    members = list(c["members"])
    thresholds = [float(t) for t in c.get("thresholds", [])][: len(members) - 1]
    return CascadeDef(members, thresholds, c.get("confidence", "max_prob"), c.get("kind", "cascade"),
                      stage_combiners(manifest, root))


def stage_combiners(manifest: dict, root: Path) -> tuple:
    """A learned committee's stage combiners, read from the files its manifest lists; () for the average."""
    from edge_committee.cascade.learned_onnx import bundle_stage_combiners

    return tuple(bundle_stage_combiners(root, manifest))


def combiner_files(manifest: dict) -> list[dict]:
    """[{file, sha256}] of a learned committee's stage files (what a fused file records), [] for the average."""
    comb = (manifest.get("cascade") or {}).get("combiner") or {}
    return [{"file": f, "sha256": manifest.get("files", {}).get(f)} for f in comb.get("files") or []]


def parse_source_size(text: str) -> tuple[int, ...]:
    """``"640x480"`` -> (480, 640); ``"640x480x3"`` -> (480, 640, 3).

    Text is **width x height** (the order camera URIs, OpenCV, FFmpeg and jetson-utils use); the
    result is in NumPy's shape order, (height, width[, channels]), as tuples are everywhere else.
    """
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", text or "")
    if not match:
        raise FusedExportError(f"--source-size {text!r} is not WxH or WxHxC: width x height in pixels, as camera "
                               "URIs write it (e.g. 640x480, or 640x480x3 for color)")
    w, h, c = match.groups()
    return (int(h), int(w)) if c is None else (int(h), int(w), int(c))


def describe_size(source) -> str:
    """``"640x480x3 (width 640, height 480, 3 channels)"``: the size with its axes named."""
    return (f"{source.width}x{source.height}x{source.channels} (width {source.width}, height {source.height}, "
            f"{source.channels} channel{'s' if source.channels > 1 else ''})")


def resolve_source(manifest: dict, preprocessing: list[Preprocessing], size: Any = None,
                   channels: int | None = None) -> Source:
    """The source size: ``size`` (``WxH[xC]`` text, width first, or an (H, W[, C]) tuple), else the validation images' recorded size.

    Channels, when neither ``size`` nor the manifest gives them: 1 when every member is gray
    (a grayscale dataset), else 3.
    """
    dims = parse_source_size(size) if isinstance(size, str) else tuple(size or ())
    if not dims:
        dims = tuple((manifest.get("data", {}).get("validation") or {}).get("image_shape") or ())
    if not dims:
        raise FusedExportError("the bundle records no image size for its validation data, so --source-size is "
                               "required: the camera's width x height (WxH, e.g. 640x480), see docs/fused_onnx.md")
    if len(dims) not in (2, 3):
        raise FusedExportError(f"source size {dims} must be (height, width) or (height, width, channels) as a "
                               "tuple, or 'WxH' / 'WxHxC' as text")
    if channels is None:
        channels = dims[2] if len(dims) == 3 else (1 if all(p.color == "gray" for p in preprocessing) else 3)
    return Source(int(dims[0]), int(dims[1]), int(channels))


def members_from_bundle(root: Path, manifest: dict, names: list[str]) -> list[MemberSource]:
    by_name = {m["name"]: m for m in manifest["members"]}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise FusedExportError(f"{root / MANIFEST}: no member named {unknown[0]!r}; the bundle has {sorted(by_name)}")
    return [MemberSource(n, root / by_name[n]["file"], Preprocessing.from_dict(by_name[n]["preprocessing"],
                                                                               f"member {n!r} preprocessing"))
            for n in names]


def build_from_bundle(root: str | os.PathLike, manifest: dict | None = None, *, cascade: CascadeDef | None = None,
                      source_size: Any = None, channels: int | None = None, form: str = "compact",
                      gate: str = "standard", preprocess: str = "exact") -> tuple[Any, CascadeDef, Source]:
    """(model, committee, source) for a bundle's chosen cascade, or ``cascade`` over its members."""
    root = Path(root)
    manifest = manifest if manifest is not None else read_manifest(root)
    if manifest.get("task") == "segmentation":
        return _build_tiles(root, manifest, cascade, source_size, channels, form, gate, preprocess)
    if manifest.get("task") == "video":
        return _build_clips(root, manifest, cascade, source_size, channels, form, gate, preprocess)
    cascade = cascade or cascade_from_manifest(manifest, root)
    members = members_from_bundle(root, manifest, list(cascade.members))
    source = resolve_source(manifest, [m.preprocessing for m in members], source_size, channels)
    by_name = {m["name"]: m for m in manifest["members"]}
    meta = {
        "manifest_sha256": manifest[DIGEST_KEY],  # the identity inspect, serve and Triton show
        "bundle": manifest.get("name", root.name),
        "members": [{"name": n, "file": by_name[n]["file"], "sha256": by_name[n].get("sha256"),
                     "precision": by_name[n].get("precision")} for n in cascade.members],
        "labels": list(manifest["labels"]),
        "version": __version__,
    }
    if cascade.combiners:  # the stage files the gates embed (a loader checks them against the bundle)
        meta["combiner"] = combiner_files(manifest)
    model = build_cascade_model(members, cascade, source, len(manifest["labels"]), form=form, gate=gate,
                                preprocess=preprocess, metadata=meta)
    return model, cascade, source


def _build_tiles(root: Path, manifest: dict, cascade: CascadeDef | None, source_size: Any, channels: int | None,
                 form: str, gate: str, preprocess: str) -> tuple[Any, CascadeDef, Source]:
    """A segmentation bundle's tile cascade as one file (:mod:`.tiles`); the source defaults to the frame."""
    from edge_committee.cascade.tiles import TileGrid
    from edge_committee.export.cascade_onnx.tiles import build_tile_cascade_model

    if form != "compact" or gate != "standard":
        raise FusedExportError(f"--form {form} --gate {gate}: a segmentation bundle's fused file is built in the compact "
                               "form with standard ONNX ops only; leave --form and --gate out")
    c = manifest["cascade"]
    cascade = cascade or CascadeDef(list(c["members"]), [float(t) for t in c["thresholds"]][: len(c["members"]) - 1],
                                    c.get("confidence", "max_prob"), c.get("kind", "cascade"))
    members = members_from_bundle(root, manifest, list(cascade.members))
    seg = manifest["segmentation"]
    if source_size is None:
        source_size = tuple(seg["frame"])
    source = resolve_source(manifest, [m.preprocessing for m in members], source_size, channels)
    meta = {"manifest_sha256": manifest[DIGEST_KEY], "bundle": manifest.get("name", root.name),
            "labels": list(manifest["labels"]), "version": __version__}
    model = build_tile_cascade_model(members, list(cascade.thresholds), TileGrid(tuple(seg["tile"]), int(seg["margin"])),
                                     seg["confidence"], source, len(manifest["labels"]), preprocess=preprocess,
                                     metadata=meta)
    return model, cascade, source


def _build_clips(root: Path, manifest: dict, cascade: CascadeDef | None, source_size: Any, channels: int | None,
                 form: str, gate: str, preprocess: str) -> tuple[Any, CascadeDef, Source]:
    """A video bundle's clip cascade as one file taking ``clips`` (N, clip_frames, H, W, C); the frame size
    defaults to the validation clips'."""
    from edge_committee.cascade.clips import ClipView

    if gate != "standard":
        raise FusedExportError("--gate plugin: a video bundle's fused file uses standard ONNX ops only (TensorRT "
                               "engines are not built for video members); leave --gate out")
    cascade = cascade or cascade_from_manifest(manifest, root)
    members = members_from_bundle(root, manifest, list(cascade.members))
    by_name = {m["name"]: m for m in manifest["members"]}
    if source_size is None:
        shape = (manifest.get("data", {}).get("validation") or {}).get("clip_shape") or []
        source_size = tuple(shape[1:]) or None
    source = resolve_source(manifest, [m.preprocessing for m in members], source_size, channels)
    meta = {"manifest_sha256": manifest[DIGEST_KEY], "bundle": manifest.get("name", root.name),
            "members": [{"name": n, "file": by_name[n]["file"], "sha256": by_name[n].get("sha256")}
                        for n in cascade.members],
            "labels": list(manifest["labels"]), "version": __version__}
    model = build_cascade_model(members, cascade, source, len(manifest["labels"]), form=form, gate=gate,
                                preprocess=preprocess, metadata=meta,
                                views=[ClipView(**by_name[n]["view"]) for n in cascade.members],
                                clip_frames=int(manifest["video"]["clip_frames"]))
    return model, cascade, source


def bundle_file_name(source: Source, form: str, gate: str) -> str:
    """Where a fused file lives in a bundle, named by what varies (the size as ``WxHxC``)."""
    return f"fused/cascade.{source.width}x{source.height}x{source.channels}.{form}.{gate}.onnx"


def write_model(model: Any, path: str | os.PathLike) -> Path:
    """Save through a temporary name, run the full ``onnx.checker`` on the file, then rename."""
    onnx = require("onnx")
    with atomic_path(path) as tmp:
        onnx.save(model, os.fspath(tmp))
        onnx.checker.check_model(os.fspath(tmp), full_check=True)
    return Path(path)


def is_our_export(path: Path) -> bool:
    """True if ``path`` is an ONNX file written by :func:`export_cascade_onnx` (its metadata says so)."""
    onnx = require("onnx")
    model = onnx.load(os.fspath(path), load_external_data=False)
    return any(p.key == "edge_committee.manifest_sha256" for p in model.metadata_props)


def enclosing_bundle(path: Path) -> Path | None:
    """The edge_committee bundle folder ``path`` would be written into, if any (links resolved)."""
    from edge_committee.bundle.manifest import looks_like_ours, parse_manifest
    from edge_committee.errors import BundleError

    for folder in Path(os.path.realpath(path)).parents:
        candidate = folder / MANIFEST
        if candidate.is_file():
            try:
                if looks_like_ours(parse_manifest(candidate)) is None:
                    return folder
            except BundleError:
                continue
    return None


def check_out(out: str | os.PathLike, force: bool = False) -> Path:
    """Refuse an ``--out`` inside a bundle, a non-regular target, or a file not ours without ``force``."""
    out = Path(out)
    inside = enclosing_bundle(out)
    if inside is not None:  # a member or the manifest overwritten outside the bundle's lock breaks it
        raise FusedExportError(f"--out {out} is inside the bundle {inside}; a file is added to a bundle only "
                               "with --into-bundle (listed and checksummed): choose a path outside it")
    return check_output_file(out, force=force, ours=is_our_export)


def _add_to_bundle(root: Path, model: Any, cascade: CascadeDef, source: Source, form: str, gate: str) -> Path:
    rel = bundle_file_name(source, form, gate)
    meta = {p.key: p.value for p in model.metadata_props}
    with edit_bundle(root) as ed:
        write_model(model, ed.add(rel))
        entries = [e for e in ed.manifest.get(MANIFEST_KEY, []) if e.get("file") != rel]
        entries.append({"file": rel, "source": [source.height, source.width, source.channels], "form": form,
                        "gate": gate, "cascade": cascade.to_dict(),
                        "manifest_sha256": meta["edge_committee.manifest_sha256"]})
        ed.manifest[MANIFEST_KEY] = entries
    return root / rel


def export_cascade_onnx(
    bundle: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    into_bundle: bool = False,
    cascade: CascadeDef | None = None,
    source_size: Any = None,
    channels: int | None = None,
    form: str = "compact",
    gate: str = "standard",
    preprocess: str = "exact",
    force: bool = False,
) -> list[Path]:
    """Write the bundle's cascade (or ``cascade``) as one ONNX file; returns the paths written.

    Args:
        out: a file to write (atomically); ``None`` to write only into the bundle.
        into_bundle: also add the file to the bundle as ``fused/cascade.<H>x<W>x<C>.<form>.<gate>.onnx``,
            listed in its manifest (the bundle is swapped in one step).
        source_size: ``"WxH"``/``"WxHxC"`` (width x height, as camera URIs) or an (H, W[, C]) tuple; default: the validation images' size if the
            manifest records it.
        form, gate, preprocess: see :func:`build_cascade_model`.
        force: replace an existing ``out`` that is not an earlier export (default False). A
            device node, link, folder or a path inside a bundle is refused even then.
    """
    if out is None and not into_bundle:
        raise FusedExportError("nothing to write: give --out FILE, --into-bundle, or both")
    if out is not None:
        check_out(out, force)  # before the (long) build: a wrong --out fails at once
    root = Path(bundle)
    model, cascade, source = build_from_bundle(root, cascade=cascade, source_size=source_size, channels=channels,
                                               form=form, gate=gate, preprocess=preprocess)
    LOG.info("source size %s", describe_size(source))
    written = []
    if out is not None:
        written.append(write_model(model, out))
    if into_bundle:
        written.append(_add_to_bundle(root, model, cascade, source, form, gate))
    return written
