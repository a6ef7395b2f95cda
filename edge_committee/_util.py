"""Small helpers every stage shares: atomic writes, file hashes, progress bars."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

from edge_committee.errors import OutputError


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device node"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def refuse_unsafe_target(path: str | os.PathLike) -> None:
    """Raise :class:`OutputError` if ``path`` exists and is not a regular file (links not followed).

    Replacing a path with a new file (temp name + ``os.replace``) turns a device node such as
    ``/dev/null`` into a regular file for every process on the machine, and a link into a file
    where the link was; a folder cannot be replaced at all. None of these is ever written.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputError(f"{path}: cannot be checked before writing ({exc.strerror}); choose another "
                          "path") from None
    if stat.S_ISLNK(st.st_mode):
        raise OutputError(f"{path} is a symbolic link (to {os.readlink(path)}); it is never replaced or "
                          "followed: give the real file's path or another name")
    if not stat.S_ISREG(st.st_mode):
        raise OutputError(f"{path} is {_kind(st.st_mode)}, not a regular file; it is never replaced: "
                          "choose a file name")


def check_output_file(path: str | os.PathLike, force: bool = False,
                      ours: Callable[[Path], bool] | None = None, flag: str = "--out") -> Path:
    """Refuse to write ``path`` unless nothing is there, or a regular file we may replace is.

    A regular file is replaced only with ``force`` or when ``ours(path)`` says we wrote it (an
    earlier output of the same command). Call it before the work, so a wrong path fails at once;
    :func:`atomic_path` checks the target again (without ``ours``) just before the rename.
    """
    path = Path(path)
    refuse_unsafe_target(path)
    if path.exists() and not force and not (ours is not None and _safe_call(ours, path)):
        raise OutputError(f"{flag} {path} exists and was not written by edge_committee; choose another name, "
                          "or pass --force to replace it")
    return path


def _safe_call(ours: Callable[[Path], bool], path: Path) -> bool:
    try:
        return bool(ours(path))
    except Exception:  # an unreadable or foreign file is simply not ours
        return False


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path in ``path``'s folder; on success it replaces ``path``, on error it goes.

    The temp file keeps ``path``'s suffix, so tools that look at the extension (ONNX savers,
    ``np.save``/``np.savez``) behave as they would on ``path``. The file is made readable by all
    (0644), like a file written directly, not private as ``mkstemp`` leaves it. A ``path`` that
    exists and is not a regular file (device node, FIFO, socket, folder, symbolic link) is refused
    with :class:`~edge_committee.errors.OutputError`, before writing and again before the rename;
    whether a regular file may be replaced is the caller's call (:func:`check_output_file`).
    """
    path = Path(path)
    refuse_unsafe_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        refuse_unsafe_target(path)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def progress(iterable: Iterable, total: int | None = None, desc: str = "", unit: str = "it"):
    """A tqdm progress bar on stderr (silent when tqdm is missing or output is not a terminal)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is a dependency, but a bar is never worth failing for
        return iterable
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, disable=None)


def bars_and_logs():
    """A context where log lines are written above the progress bars instead of through them."""
    try:
        from tqdm.contrib.logging import logging_redirect_tqdm
    except ImportError:
        return contextlib.nullcontext()
    return logging_redirect_tqdm([logging.getLogger("edge_committee")])


def current_umask() -> int:
    """The process umask, read without changing it where Linux shows it (else set and restored)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_BLAS_CONTROLLER: tuple | None = None  #: (len(sys.modules) when scanned, ThreadpoolController)


def blas_single_thread():
    """A context manager that keeps NumPy's BLAS on one thread (threadpoolctl), restoring it after.

    The runtime's and the evaluation's matrix products (preprocessing plans) are small; left to
    several BLAS threads, those threads keep spinning after each product and take the cores the
    inference backend's own threads need (measured: a member at batch 64 ran 2x slower right after
    a preprocessing product). A no-op when threadpoolctl is missing.
    """
    global _BLAS_CONTROLLER
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return contextlib.nullcontext()
    # a module imported since the last scan may have loaded another BLAS (scipy's, torch's): scan again then
    if _BLAS_CONTROLLER is None or _BLAS_CONTROLLER[0] != len(sys.modules):
        _BLAS_CONTROLLER = (len(sys.modules), ThreadpoolController())
    return _BLAS_CONTROLLER[1].limit(limits=1, user_api="blas")
