"""Which Triton models we wrote, and whether their files are still the ones we wrote.

Every model folder ``export-triton`` writes holds :data:`MODEL_MARKER`, ``edge_committee.model.json``:
the bundle's manifest sha256 and the sha256 of every file of the model (``config.pbtxt``,
``1/cascade.json``, ``1/model.onnx``, the copied SDK, ...). It serves two purposes:

- **Ownership.** A re-export replaces only model folders that carry the marker; a user's own models
  beside ours are left alone (:mod:`edge_committee.serve.triton.repository`).
- **Integrity at load.** The cascade model (and each ``python-ort`` member) checks its own folder,
  and the cascade model every member folder, when Triton loads it (:func:`verify_model`): an
  edited ``cascade.json`` or a swapped ``model.onnx`` refuses to load, so the
  ``edge_committee.manifest_sha256`` a server reports always describes what it runs. Like the
  bundle's checksums this detects changes, it does not authenticate (anyone who can edit a file
  can rewrite the marker).

Pure standard library: the module is copied into the exported models' ``_sdk``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

MODEL_MARKER = "edge_committee.model.json"
FORMAT = 1
#: written by Python when the server imports the copied SDK: not part of what we exported
_IGNORED_DIRS = {"__pycache__"}


class IntegrityError(RuntimeError):
    """A model folder's files differ from what export-triton wrote (raised inside the server)."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def model_files(folder: Path) -> list[str]:
    """Relative POSIX paths of the model's files (the marker and ``__pycache__`` excluded)."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in _IGNORED_DIRS)
        rel = Path(root).relative_to(folder)
        out += [(rel / f).as_posix() for f in sorted(files) if not (rel == Path(".") and f == MODEL_MARKER)]
    return out


def write_model_marker(folder: Path, manifest_sha256: str) -> dict:
    """Record every file of the model folder ``folder`` with its sha256 (call after writing them)."""
    doc = {"format": FORMAT, "written_by": "edge_committee export-triton", "manifest_sha256": manifest_sha256,
           "files": {rel: _sha256(folder / rel) for rel in model_files(folder)}}
    (folder / MODEL_MARKER).unlink(missing_ok=True)  # may link to an earlier export's marker: never write through
    (folder / MODEL_MARKER).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return doc


def read_model_marker(folder: Path) -> dict | None:
    """The marker of ``folder``, or None when there is none or it is not ours."""
    path = Path(folder) / MODEL_MARKER
    try:
        if path.is_symlink() or not path.is_file():
            return None
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("files"), dict):
        return None
    return doc


def is_our_model(folder: Path) -> bool:
    return read_model_marker(folder) is not None


def verify_model(folder: str | os.PathLike) -> str | None:
    """Why the model folder's files are not the ones export-triton wrote, or None when they are."""
    folder = Path(folder)
    doc = read_model_marker(folder)
    if doc is None:
        return (f"{folder}: no readable {MODEL_MARKER} (not written by export-triton, or edited); "
                "export the bundle again")
    for rel, digest in sorted(doc["files"].items()):
        path = folder / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            return f"{folder / MODEL_MARKER}: file {rel!r} leaves the model folder"
        if not path.is_file():
            return f"{path}: missing (listed in {MODEL_MARKER}); export the bundle again"
        if _sha256(path) != digest:
            return (f"{path}: checksum mismatch (changed since export-triton wrote it, so the model no longer "
                    f"matches manifest sha256 {str(doc.get('manifest_sha256'))[:12]}); export the bundle again")
    return None


def require_intact(*folders: str | os.PathLike) -> None:
    """Raise :class:`IntegrityError` naming the first folder whose files changed (server-side check)."""
    for folder in folders:
        problem = verify_model(folder)
        if problem is not None:
            raise IntegrityError(problem)
