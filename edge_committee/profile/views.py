"""A temporary view of a bundle whose committee is other members (one member alone, for bench and
for profiling through a cascade backend), so it runs through the facade like the bundle itself."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from edge_committee.bundle import MANIFEST
from edge_committee.bundle.manifest import DIGEST_KEY, manifest_digest

#: manifest sections that encode one particular cascade (a fused file, a whole-cascade engine)
_FUSED_KEY = "fused_onnx"
_TRT_KEY = "tensorrt"


def view_manifest(manifest: dict, members: Sequence[str], thresholds: Sequence[float] = ()) -> dict:
    """A copy of ``manifest`` whose committee is ``members`` (a cascade with ``thresholds``), without
    the artifacts that encode the bundle's own cascade."""
    doc = json.loads(json.dumps(manifest))
    doc["cascade"] = {"kind": "single" if len(members) == 1 else "cascade", "members": list(members),
                      "thresholds": list(thresholds),
                      "confidence": manifest["cascade"].get("confidence", "max_prob")}
    doc.pop(_FUSED_KEY, None)
    engines = (doc.get(_TRT_KEY) or {}).get("engines")
    if engines:
        doc[_TRT_KEY]["engines"] = [e for e in engines if e.get("kind") != "cascade"]
    doc.pop(DIGEST_KEY, None)
    doc[DIGEST_KEY] = manifest_digest(doc)
    return doc


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system, or no hard links here
        shutil.copy2(src, dst)


def _make_dir(root: Path) -> Path:
    """A hidden sibling of the bundle (hard links work there), else a folder in the system temp."""
    try:
        return Path(tempfile.mkdtemp(prefix=f".{root.name}.view-", dir=root.parent))
    except OSError:
        return Path(tempfile.mkdtemp(prefix="ec-view-"))


@contextlib.contextmanager
def member_view(root: str | os.PathLike, manifest: dict, members: Sequence[str],
                thresholds: Sequence[float] = ()) -> Iterator[Path]:
    """A temporary bundle with every file of ``root`` (hard-linked) whose committee is ``members``
    (its manifest re-checksummed; the files are the bundle's, checked when it was read). Removed
    on exit."""
    root = Path(root)
    view = _make_dir(root)
    try:
        for rel in manifest.get("files", {}):
            if (root / rel).is_file():
                _link(root / rel, view / rel)
        (view / MANIFEST).write_text(json.dumps(view_manifest(manifest, members, thresholds)), encoding="utf-8")
        yield view
    finally:
        shutil.rmtree(view, ignore_errors=True)
