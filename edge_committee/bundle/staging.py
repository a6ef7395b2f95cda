"""Replacing a bundle folder safely: a staging sibling, a lock, one atomic swap, leftovers swept.

A bundle ``DIR`` is written into a hidden sibling ``.DIR.ec-stage-XXXXXXXX`` and swapped in by
:meth:`StagingDir.commit`:

- **Only our bundles are replaced.** An existing ``DIR`` is replaced only if its ``manifest.json``
  is an edge_committee manifest and every file in it is listed there (nothing of the user's would
  be deleted); anything else is refused with one line unless ``force=True`` (``build --force``).
- **Locked.** Writers of one destination take an exclusive ``fcntl.flock`` on ``.DIR.lock`` next
  to it for the swap (and :func:`~edge_committee.bundle.edit_bundle` for its whole
  read-modify-write), so concurrent builds and re-selects never interleave.
- **Atomic.** Where Linux offers ``renameat2(RENAME_EXCHANGE)`` the new and the old folder trade
  places in one step: a reader always finds a complete bundle at ``DIR``. Elsewhere two renames
  run under a journal ``.DIR.swap``; a crash between them is rolled forward by the next writer.
- **Nothing accumulates.** A staging folder is flock-ed while it is alive; at start a writer
  removes unlocked ``.DIR.ec-stage-*`` / ``.DIR.ec-old-*`` folders older than an hour (left by a
  ``kill -9``), and the staging folder gets the permissions the umask gives (not ``mkdtemp``'s 0700).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

from edge_committee._util import current_umask, write_bytes_atomic
from edge_committee.bundle.manifest import MANIFEST, looks_like_ours, parse_manifest
from edge_committee.errors import BundleError

try:
    import fcntl
except ImportError:  # not POSIX: threads are still serialized, processes are not
    fcntl = None  # type: ignore[assignment]

STAGE_TAG = "ec-stage-"
OLD_TAG = "ec-old-"
#: Leftovers younger than this may belong to a live writer on a file system without flock.
STALE_AFTER_S = 3600.0
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


# ------------------------------------------------------------------------------ names
def lock_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.lock")


def journal_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.swap")


def _leftover(dest: Path, name: str, path: Path) -> bool:
    """True if ``name`` (a sibling of ``dest``) is one of our staging or old folders for ``dest``."""
    prefix = f".{dest.name}."
    if not name.startswith(prefix):
        return False
    rest = name[len(prefix):]
    if rest.startswith((STAGE_TAG, OLD_TAG)):
        return True
    # folders of edge_committee < 0.1.1: ".DIR.old.<pid>" and mkdtemp's ".DIR.<8 chars>" holding members/
    return bool(re.fullmatch(r"old\.\d+", rest)) or (
        bool(re.fullmatch(r"[a-z0-9_]{8}", rest)) and (path / "members").is_dir()
    )


# ------------------------------------------------------------------------------ lock
class _PathLock:
    def __init__(self) -> None:
        self.thread_lock = threading.RLock()
        self.depth = 0
        self.fd: int | None = None


_LOCKS: dict[str, _PathLock] = {}
_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def bundle_lock(dest: str | os.PathLike) -> Iterator[None]:
    """Hold the exclusive writer lock of the bundle at ``dest`` (re-entrant within a thread).

    Between processes: ``fcntl.flock`` on ``.<name>.lock`` beside ``dest``, removed again by the
    holder on release (a waiter that then holds a lock on the removed file notices and retries).
    Between threads of this process: a lock per destination.
    """
    dest = Path(dest).resolve()
    with _LOCKS_GUARD:
        lk = _LOCKS.setdefault(str(dest), _PathLock())
    with lk.thread_lock:
        if lk.depth == 0 and fcntl is not None:
            dest.parent.mkdir(parents=True, exist_ok=True)
            lk.fd = _acquire_lock_file(lock_path(dest))
        lk.depth += 1
        try:
            yield
        finally:
            lk.depth -= 1
            if lk.depth == 0 and lk.fd is not None:
                with contextlib.suppress(OSError):
                    os.unlink(lock_path(dest))  # still holding it: nobody else owns this file
                os.close(lk.fd)  # closing releases the flock
                lk.fd = None


def _acquire_lock_file(path: Path) -> int:
    """An fd with an exclusive flock on ``path``, the file that is at ``path`` now (not a removed one)."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # the umask applies
        except PermissionError:  # another user's lock file: flock works on a read-only descriptor too
            fd = os.open(path, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the previous holder removed it while we waited: lock the new one


def _try_lock_dir(path: Path) -> int | None:
    """An fd holding an exclusive flock on folder ``path``, or None if another process holds it."""
    if fcntl is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


# ------------------------------------------------------------------------------ swap
def _renameat2():
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_RENAMEAT2 = _renameat2()


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns False when the C library, kernel or file system does not offer it.
    """
    if _RENAMEAT2 is None:
        return False
    rc = _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _unique_sibling(dest: Path, tag: str) -> Path:
    while True:
        p = dest.with_name(f".{dest.name}.{tag}{secrets.token_hex(4)}")
        if not os.path.lexists(p):
            return p


def _two_renames(staging: Path, dest: Path) -> Path:
    """Swap without RENAME_EXCHANGE: old aside, new in, under a journal that :func:`recover` reads."""
    old = _unique_sibling(dest, OLD_TAG)
    journal = journal_path(dest)
    write_bytes_atomic(journal, json.dumps({"old": old.name, "new": staging.name}).encode())
    os.rename(dest, old)
    os.rename(staging, dest)
    journal.unlink()
    return old


def recover(dest: Path) -> None:
    """Finish a swap that a crash interrupted between its two renames (call under the lock)."""
    journal = journal_path(dest)
    try:
        doc = json.loads(journal.read_text(encoding="utf-8"))
        old, new = dest.with_name(doc["old"]), dest.with_name(doc["new"])
    except FileNotFoundError:
        return
    except (OSError, ValueError, KeyError, TypeError):
        journal.unlink(missing_ok=True)  # unreadable: nothing can be done with it
        return
    if not (_leftover(dest, old.name, old) and _leftover(dest, new.name, new)):
        journal.unlink(missing_ok=True)  # not names we write: never act on them
        return
    if not dest.exists():
        # the new bundle was complete (a swap starts after the manifest is written): roll forward
        if new.is_dir():
            os.rename(new, dest)
        elif old.is_dir():
            os.rename(old, dest)
    if dest.exists() and old.is_dir():
        shutil.rmtree(old, ignore_errors=True)
    journal.unlink(missing_ok=True)


def sweep_stale(dest: Path, max_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove our staging / old folders next to ``dest`` that no live writer holds and are old."""
    removed = []
    now = time.time()
    try:
        entries = list(os.scandir(dest.parent))
    except OSError:
        return removed
    for entry in entries:
        path = Path(entry.path)
        try:
            if not entry.is_dir(follow_symlinks=False) or not _leftover(dest, entry.name, path):
                continue
            if now - entry.stat(follow_symlinks=False).st_mtime < max_age_s:
                continue
        except OSError:
            continue
        fd = _try_lock_dir(path)
        if fd is None and fcntl is not None:
            continue  # a live writer holds it
        try:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        finally:
            if fd is not None:
                os.close(fd)
    return removed


# ------------------------------------------------------------------------------ the destination
def replace_refusal(dest: Path) -> str | None:
    """Why the folder ``dest`` must not be replaced without ``force`` (None: it is one of our bundles)."""
    try:
        names = os.listdir(dest)
    except OSError as exc:
        return f"{dest} cannot be read ({exc.strerror}); choose another --out"
    if not names:
        return None
    manifest_path = dest / MANIFEST
    if not manifest_path.is_file():
        return (f"{dest} exists and is not a bundle (no {MANIFEST}); choose another --out, remove it, "
                "or pass --force to replace it")
    try:
        manifest = parse_manifest(manifest_path)
        why = looks_like_ours(manifest)
    except BundleError as exc:
        manifest, why = None, str(exc).split(": ", 1)[-1]
    if why is not None or manifest is None:
        return (f"{dest} is not an edge_committee bundle ({MANIFEST}: {why}); replacing it would delete its "
                "files: choose another --out, or pass --force to replace it")
    listed = set(manifest["files"]) | {MANIFEST}
    extra = sorted(rel for rel in list_files(dest) if rel not in listed)
    if extra:
        more = f" and {len(extra) - 1} more" if len(extra) > 1 else ""
        return (f"{dest} holds files its manifest does not list ({extra[0]}{more}); replacing it would delete "
                "them: move them out (or build with --force to replace the whole folder)")
    return None


def list_files(root: Path) -> Iterator[str]:
    """Relative POSIX paths of every non-directory entry under ``root`` (links not followed)."""
    for folder, dirs, files in os.walk(root):
        rel = Path(folder).relative_to(root)
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            yield (rel / name).as_posix()


class StagingDir:
    """A hidden sibling of ``dest`` that replaces ``dest`` on :meth:`commit` (see the module doc).

    Used as a context manager; on an exception (Ctrl-C and SIGTERM in the CLI included) the staging
    folder is removed and ``dest`` is left as it was.

    Args:
        dest: the bundle folder to write or replace.
        force: replace ``dest`` even if it is not one of our bundles (default False).
    """

    def __init__(self, dest: str | os.PathLike, force: bool = False) -> None:
        self.dest = Path(dest).resolve()
        self.force = force
        self.path: Path | None = None
        self._fd: int | None = None

    def __enter__(self) -> Path:
        self._check_dest()  # before any work: a wrong --out fails at once
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        sweep_stale(self.dest)
        self.path = Path(tempfile.mkdtemp(prefix=f".{self.dest.name}.{STAGE_TAG}", dir=self.dest.parent))
        os.chmod(self.path, 0o777 & ~current_umask())  # readable by others as the umask allows
        self._fd = _try_lock_dir(self.path)  # marks it live for sweep_stale
        return self.path

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._discard()

    def _discard(self) -> None:
        if self.path is not None and self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)
        self._release()

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _check_dest(self) -> None:
        if self.dest.exists() and not self.dest.is_dir():
            raise BundleError(f"{self.dest} is a file, not a bundle folder; choose another --out")
        if self.dest.is_dir() and not self.force:
            why = replace_refusal(self.dest)
            if why is not None:
                raise BundleError(why)

    def commit(self) -> Path:
        """Swap the staging folder in at ``dest`` (under the lock) and remove the old bundle."""
        assert self.path is not None
        old: Path | None = None
        try:
            with bundle_lock(self.dest):
                recover(self.dest)
                self._check_dest()
                if not self.dest.exists():
                    os.rename(self.path, self.dest)
                elif exchange(self.path, self.dest):
                    old = self.path  # now holds the previous bundle
                else:
                    try:
                        old = _two_renames(self.path, self.dest)
                    except BaseException:
                        recover(self.dest)  # interrupted between the renames: finish the swap now
                        raise
        except BaseException:
            if old is None:
                self._discard()
            raise
        finally:
            self._release()
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.dest
