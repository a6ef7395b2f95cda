"""Small helpers every stage shares: atomic writes, file hashes, progress bars."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path in ``path``'s folder; on success it replaces ``path``, on error it goes.

    The temp file keeps ``path``'s suffix, so tools that look at the extension (ONNX savers,
    ``np.save``/``np.savez``) behave as they would on ``path``. The file is made readable by all
    (0644), like a file written directly, not private as ``mkstemp`` leaves it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
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
