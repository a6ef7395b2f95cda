"""The bundle: a directory holding everything a deployment needs, with a checked manifest.

Layout::

    manifest.json          schema version, members, chosen cascade, sha256 of every file and of itself
    members/<name>.onnx    one ONNX file per member (and per precision: <name>.int8.onnx ...)
    outputs.npz            cached member logits per split ("<member>/<split>", "labels/<split>")
    report.md report.json  the build report; selection.png the trade-off plot

A bundle is written into a hidden sibling folder and swapped into place under a lock
(:mod:`edge_committee.bundle.staging`), so a crash never leaves a half-written bundle and a reader
never sees none. :func:`read_manifest` checks the schema, confines every path to the bundle, and
verifies the manifest's own checksum and every file's (:mod:`edge_committee.bundle.manifest`),
failing with one line naming the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edge_committee._util import atomic_path, sha256_file, write_bytes_atomic
from edge_committee.bundle.manifest import (
    DIGEST_KEY,
    MANIFEST,
    MAX_MANIFEST_BYTES,
    MEMBER_REQUIRED,
    REQUIRED,
    SCHEMA_VERSION,
    bundle_relpath,
    check_digest,
    check_paths,
    check_schema,
    manifest_digest,
    parse_manifest,
    resolve_in_bundle,
)
from edge_committee.bundle.staging import StagingDir, bundle_lock, journal_path, list_files, recover
from edge_committee.errors import BundleError

OUTPUTS = "outputs.npz"
_REQUIRED = REQUIRED  # kept for older imports
_MEMBER_REQUIRED = MEMBER_REQUIRED
#: A reader that finds the bundle mid-swap (another process re-selecting) reads it again, this long (s).
_READ_PATIENCE_S = 2.0


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to ``path`` through a temporary name in the same folder (keys in their order)."""
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode("utf-8"))


def file_checksums(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` except the manifest, keyed by POSIX relative path."""
    return {rel: sha256_file(root / rel) for rel in sorted(list_files(root)) if rel != MANIFEST}


def finalize_manifest(root: Path, manifest: dict, only_listed: bool = False,
                      known: dict[str, tuple[tuple, str]] | None = None) -> dict:
    """Fill in member and file checksums, then the manifest's own, and write ``manifest.json`` atomically.

    By default every file under ``root`` is listed (a fresh build); with ``only_listed`` only
    the keys already in ``manifest["files"]`` are hashed (an edit: stray files stay unlisted).
    ``known``: ``{rel: (file identity, sha256)}`` of files verified a moment ago; one whose
    identity (:func:`_identity_of`) is unchanged keeps its digest instead of being hashed again.
    """
    if only_listed:
        files = {}
        for rel in manifest.get("files", {}):
            path = resolve_in_bundle(root, rel, f"{root / MANIFEST}: files")
            if not path.is_file():
                raise BundleError(f"{path}: listed in the manifest but missing from the bundle")
            ident, digest = (known or {}).get(rel, (None, None))
            files[rel] = digest if ident is not None and ident == _identity_of(path) else sha256_file(path)
        manifest["files"] = files
    else:
        manifest["files"] = file_checksums(root)
    names = [m["name"] for m in manifest["members"]]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise BundleError(f"two bundle members are named {dup!r}; member names must be unique")
    for m in manifest["members"]:
        if m["file"] not in manifest["files"]:
            raise BundleError(f"member {m['name']!r}: its file {m['file']!r} is not in the bundle")
        m["sha256"] = manifest["files"][m["file"]]
    manifest.pop(DIGEST_KEY, None)
    manifest[DIGEST_KEY] = manifest_digest(manifest)
    write_json_atomic(root / MANIFEST, manifest)
    return manifest


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
        bundle_relpath(rel, "BundleEdit.add")
        self.added.add(rel)
        self.removed.discard(rel)
        p = self.path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def remove(self, rel: str) -> None:
        """Drop a file from the bundle and from the manifest's checksums."""
        bundle_relpath(rel, "BundleEdit.remove")
        self.removed.add(rel)
        self.added.discard(rel)
        (self.path / rel).unlink(missing_ok=True)


@contextlib.contextmanager
def edit_bundle(root: str | os.PathLike, verify: bool = True) -> Iterator[BundleEdit]:
    """Change a bundle atomically: add files, change the manifest, then swap it in one step.

    ``with edit_bundle(dir) as ed:`` writes into ``ed.path`` (declaring each new file with
    ``ed.add(rel)``) and changes ``ed.manifest``; on a clean exit the manifest is finalized
    (checksums of the listed and added files, then its own) and the staging folder replaces the
    bundle. The bundle's writer lock is held throughout, so concurrent edits run one after the
    other, each on the result of the previous one. On an exception (or Ctrl-C) the bundle is left
    exactly as it was. Files the manifest does not list are never carried over.
    """
    root = Path(root)
    with bundle_lock(root):
        manifest = read_manifest(root, verify=verify)
        staging = StagingDir(root)
        with staging as stage:
            linked = _link_listed(root, stage, manifest)
            # files verified just now keep their digests unless the edit replaced them
            verified = {rel: (ident, manifest["files"][rel]) for rel, ident in linked.items()} if verify else None
            ed = BundleEdit(stage, json.loads(json.dumps(manifest)))
            yield ed
            listed = set(ed.manifest.get("files", {})) | ed.added
            ed.manifest["files"] = {rel: "" for rel in sorted(listed - ed.removed)}
            finalize_manifest(stage, ed.manifest, only_listed=True, known=verified)
        staging.commit()


def _identity_of(path: Path) -> tuple:
    """(device, inode, size, mtime): a file written anew (atomically, or in place) changes it."""
    st = path.stat()
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _link_listed(src: Path, dst: Path, manifest: dict) -> dict[str, tuple]:
    """Hard-link (or copy, across file systems) every listed file of bundle ``src`` into ``dst``.

    Returns each staged file's identity (:func:`_identity_of`), by relative path.
    """
    import shutil

    staged = {}
    for rel in manifest["files"]:
        a = resolve_in_bundle(src, rel)
        if not a.is_file():
            continue  # verify=False on a damaged bundle: finalize_manifest names it
        b = dst / rel
        b.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)
        staged[rel] = _identity_of(b)
    return staged


def save_outputs(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write the cached outputs ``.npz`` through a temporary name."""
    with atomic_path(path) as tmp:  # keeps the .npz suffix, so np.savez adds none
        np.savez(tmp, **arrays)


def load_outputs(root: Path) -> dict[str, np.ndarray]:
    path = root / OUTPUTS
    if not path.is_file():
        raise BundleError(f"{path}: missing; the bundle has no cached outputs (rebuild it)")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise BundleError(
            f"{path}: not a cached-outputs archive edge_committee wrote ({exc}); rebuild the bundle"
        ) from None


def verify_files(root: Path, manifest: dict) -> list[str]:
    """Problems with the bundle: its manifest's checksum, files missing, changed or unlisted. Empty when intact."""
    root = Path(root)
    problems = []
    digest_problem = check_digest(root / MANIFEST, manifest)
    if digest_problem:
        problems.append(digest_problem)
    listed = manifest.get("files", {})
    for rel, digest in listed.items():
        try:
            p = resolve_in_bundle(root, rel)
        except BundleError as exc:  # never read a file outside the bundle
            problems.append(str(exc))
            continue
        try:
            same = p.is_file() and sha256_file(p) == digest
        except OSError:  # removed while we read it
            same = None
        if not p.is_file() or same is None:
            problems.append(f"{p}: missing (listed in {MANIFEST})")
        elif not same:
            problems.append(f"{p}: checksum mismatch (file changed since the bundle was built)")
    for m in manifest.get("members", []):
        if m.get("file") not in listed:
            problems.append(f"{root / str(m.get('file'))}: member {m.get('name')!r} file not listed")
    for rel in sorted(list_files(root)):
        if rel != MANIFEST and rel not in listed:
            problems.append(f"{root / rel}: not listed in {MANIFEST} (added after the build); move it out of "
                            "the bundle")
    return problems


def read_manifest(root: str | os.PathLike, verify: bool = True) -> dict:
    """Read ``manifest.json``: schema, paths confined to the bundle, and (``verify``) every checksum.

    ``verify=False`` skips the checksums (the manifest's own included) but never the schema and
    path checks. A bundle replaced while it is read (a concurrent re-select) is read again, for up
    to :data:`_READ_PATIENCE_S`; a swap a crash interrupted is finished first.
    """
    root = Path(root)
    deadline = time.monotonic() + _READ_PATIENCE_S
    attempt = 0
    while True:
        if not root.exists() and journal_path(root.resolve()).exists():
            _finish_interrupted_swap(root)
        identity = _identity(root)
        try:
            return _read_once(root, verify)
        except BundleError:
            if time.monotonic() > deadline or not _swapped(root, identity):
                raise
        attempt += 1
        time.sleep(min(0.002 * attempt, 0.05))


def _finish_interrupted_swap(root: Path) -> None:
    """Roll forward a swap whose writer died between its two renames (needs write access; else a no-op)."""
    with contextlib.suppress(OSError):
        with bundle_lock(root):
            recover(root.resolve())


def _identity(root: Path) -> tuple | None:
    """What changes when the folder at ``root`` is replaced: the folder's inode and ctime, the manifest's bytes.

    The inode alone is not enough: a removed bundle's inode is soon reused by the next staging folder.
    """
    try:
        st = os.stat(root)
        path = root / MANIFEST
        manifest = path.read_bytes() if path.stat().st_size <= MAX_MANIFEST_BYTES else b""
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_ctime_ns, hashlib.sha256(manifest).digest()


def _swapped(root: Path, before: tuple | None) -> bool:
    """True if the folder at ``root`` was replaced since ``before``, or a swap is under way."""
    return _identity(root) != before or journal_path(root.resolve()).exists()


def _read_once(root: Path, verify: bool) -> dict:
    path = root / MANIFEST
    if not root.is_dir():
        raise BundleError(f"bundle folder not found: {root}")
    if not path.is_file():
        raise BundleError(f"{path}: missing; {root} is not a bundle (build one with edge-committee build)")
    manifest = parse_manifest(path)
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise BundleError(
            f"{path}: schema_version {version!r} is not supported (this edge_committee reads "
            f"{SCHEMA_VERSION}); rebuild the bundle or upgrade edge_committee"
        )
    check_schema(path, manifest)
    check_paths(root, manifest)
    if verify:
        problems = verify_files(root, manifest)
        if problems:
            raise BundleError(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    return manifest


def iter_members(manifest: dict) -> Iterator[dict]:
    yield from manifest["members"]
