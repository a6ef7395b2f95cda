"""The bundle: a directory holding everything a deployment needs, with a checked manifest.

Layout::

    manifest.json          schema version, members, chosen cascade, sha256 of every file
    members/<name>.onnx    one ONNX file per member (and per precision: <name>.int8.onnx ...)
    outputs.npz            cached member logits per split ("<member>/<split>", "labels/<split>")
    report.md report.json  the build report; frontier.png the trade-off plot

A bundle is written into a temporary sibling folder and renamed into place, so a crash never
leaves a half-written bundle. :func:`read_manifest` checks the schema and every checksum and
fails naming the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edge_committee._util import atomic_path, sha256_file, write_bytes_atomic
from edge_committee.errors import BundleError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
OUTPUTS = "outputs.npz"
_REQUIRED = ("schema_version", "name", "labels", "members", "cascade", "files")
_MEMBER_REQUIRED = ("name", "file", "sha256", "macs", "preprocessing", "labels", "precision")


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to ``path`` through a temporary name in the same folder (keys in their order)."""
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode("utf-8"))


def file_checksums(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` except the manifest, keyed by POSIX relative path."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MANIFEST and not p.name.startswith("."):
            out[p.relative_to(root).as_posix()] = sha256_file(p)
    return out


def finalize_manifest(root: Path, manifest: dict, only_listed: bool = False) -> dict:
    """Fill in member and file checksums and write ``manifest.json`` atomically.

    By default every file under ``root`` is listed (a fresh build); with ``only_listed`` only
    the keys already in ``manifest["files"]`` are hashed (an edit: stray files stay unlisted).
    """
    if only_listed:
        manifest["files"] = {rel: sha256_file(root / rel) for rel in manifest.get("files", {})}
    else:
        manifest["files"] = file_checksums(root)
    for m in manifest["members"]:
        m["sha256"] = manifest["files"][m["file"]]
    write_json_atomic(root / MANIFEST, manifest)
    return manifest


class StagingDir:
    """A temporary sibling of ``dest`` that replaces ``dest`` on :meth:`commit`.

    Used as a context manager; on an exception the staging folder is removed and ``dest``
    is left as it was.
    """

    def __init__(self, dest: str | os.PathLike) -> None:
        self.dest = Path(dest).resolve()
        self.path: Path | None = None

    def __enter__(self) -> Path:
        self._check_dest()  # before any work: a wrong --out fails at once
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f".{self.dest.name}.", dir=self.dest.parent))
        return self.path

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and self.path is not None and self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)

    def _check_dest(self) -> None:
        if self.dest.exists() and not self.dest.is_dir():
            raise BundleError(f"{self.dest} is a file, not a bundle folder; choose another --out")
        if self.dest.is_dir() and not (self.dest / MANIFEST).is_file() and any(self.dest.iterdir()):
            raise BundleError(
                f"{self.dest} exists and is not a bundle (no {MANIFEST}); choose another --out or remove it"
            )

    def commit(self) -> Path:
        assert self.path is not None
        try:
            self._check_dest()
        except BundleError:
            shutil.rmtree(self.path, ignore_errors=True)
            raise
        old = None
        if self.dest.exists():
            old = self.dest.with_name(f".{self.dest.name}.old.{os.getpid()}")
            os.replace(self.dest, old)
        os.replace(self.path, self.dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.dest


class BundleEdit:
    """A change to an existing bundle in progress (see :func:`edit_bundle`).

    Attributes:
        path: the staging folder: every file of the bundle, hard-linked. Write new or changed
            files with :func:`~edge_committee._util.atomic_path` (a new inode), never in place:
            an in-place write would change the linked original too.
        manifest: a copy of the manifest to change.
    """

    def __init__(self, path: Path, manifest: dict) -> None:
        self.path = path
        self.manifest = manifest
        self.added: set[str] = set()
        self.removed: set[str] = set()

    def add(self, rel: str) -> Path:
        """Declare a file (relative POSIX path) that this edit writes; returns its staging path."""
        self.added.add(rel)
        self.removed.discard(rel)
        p = self.path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def remove(self, rel: str) -> None:
        """Drop a file from the bundle and from the manifest's checksums."""
        self.removed.add(rel)
        self.added.discard(rel)
        (self.path / rel).unlink(missing_ok=True)


@contextlib.contextmanager
def edit_bundle(root: str | os.PathLike, verify: bool = True) -> Iterator[BundleEdit]:
    """Change a bundle atomically: add files, change the manifest, then swap it in one step.

    ``with edit_bundle(dir) as ed:`` writes into ``ed.path`` (declaring each new file with
    ``ed.add(rel)``) and changes ``ed.manifest``; on a clean exit the manifest is finalized
    (checksums of the listed and added files) and the staging folder replaces the bundle. On an
    exception (or Ctrl-C) the bundle is left exactly as it was.
    """
    root = Path(root)
    manifest = read_manifest(root, verify=verify)
    staging = StagingDir(root)
    with staging as stage:
        _link_tree(root, stage)
        ed = BundleEdit(stage, json.loads(json.dumps(manifest)))
        yield ed
        known = set(ed.manifest.get("files", {})) | ed.added
        ed.manifest["files"] = {rel: "" for rel in sorted(known - ed.removed)}
        finalize_manifest(stage, ed.manifest, only_listed=True)
    staging.commit()


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link (or copy, across file systems) every file of ``src`` into ``dst``."""

    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link, dirs_exist_ok=True)


def save_outputs(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write the cached outputs ``.npz`` through a temporary name."""
    with atomic_path(path) as tmp:  # keeps the .npz suffix, so np.savez adds none
        np.savez(tmp, **arrays)


def load_outputs(root: Path) -> dict[str, np.ndarray]:
    path = root / OUTPUTS
    if not path.is_file():
        raise BundleError(f"{path}: missing; the bundle has no cached outputs (rebuild it)")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def verify_files(root: Path, manifest: dict) -> list[str]:
    """Problems with the bundle's files: missing, changed or unlisted. Empty when intact."""
    problems = []
    listed = manifest.get("files", {})
    for rel, digest in listed.items():
        p = root / rel
        if not p.is_file():
            problems.append(f"{p}: missing (listed in {MANIFEST})")
        elif sha256_file(p) != digest:
            problems.append(f"{p}: checksum mismatch (file changed since the bundle was built)")
    for m in manifest.get("members", []):
        if m.get("file") not in listed:
            problems.append(f"{root / str(m.get('file'))}: member {m.get('name')!r} file not listed")
    return problems


def read_manifest(root: str | os.PathLike, verify: bool = True) -> dict:
    """Read ``manifest.json``, check the schema and (by default) every checksum."""
    root = Path(root)
    path = root / MANIFEST
    if not root.is_dir():
        raise BundleError(f"bundle folder not found: {root}")
    if not path.is_file():
        raise BundleError(f"{path}: missing; {root} is not a bundle (build one with edge-committee build)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{path}: expected a JSON object")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(
            f"{path}: schema_version {version!r} is not supported (this edge_committee reads "
            f"{SCHEMA_VERSION}); rebuild the bundle or upgrade edge_committee"
        )
    for key in _REQUIRED:
        if key not in manifest:
            raise BundleError(f"{path}: missing key {key!r}")
    for i, m in enumerate(manifest["members"]):
        for key in _MEMBER_REQUIRED:
            if key not in m:
                raise BundleError(f"{path}: members[{i}] is missing key {key!r}")
    if verify:
        problems = verify_files(root, manifest)
        if problems:
            raise BundleError(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    return manifest


def iter_members(manifest: dict) -> Iterator[dict]:
    yield from manifest["members"]
