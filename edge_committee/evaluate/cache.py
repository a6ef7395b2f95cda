"""On-disk cache of member outputs, keyed by the model's content hash and the data's hash.

A second build over the same members and data reads the logits back instead of running the
members again. The cache folder is ``$EDGE_COMMITTEE_CACHE`` or ``~/.cache/edge_committee``;
an entry is ``<key>.npy`` plus ``<key>.json`` (its shape, dtype and the sha256 of the key and the
array's bytes), each written to a temporary name, then renamed. An entry is used only if it
matches its record (shape, dtype, digest), so a flipped bit, a truncated file, a forged array or
an entry copied under another key is recomputed, never trusted. The digest detects corruption
and replacement by anything that does not also rewrite the record; like the cache itself it is
as trustworthy as the account that owns the folder. Temporary files older than an hour (left
by a killed build) are removed when a cache is opened.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from edge_committee._util import atomic_path, sha256_file, write_bytes_atomic

__all__ = ["OutputCache", "default_cache_dir", "sha256_file"]

#: Temporary files younger than this may belong to a build that is still writing them.
STALE_TEMP_S = 3600.0


def default_cache_dir() -> Path:
    env = os.environ.get("EDGE_COMMITTEE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "edge_committee"


class OutputCache:
    """Maps (model hash, preprocessing, data hash, backend) -> logits (N, C) float32."""

    def __init__(self, root: str | os.PathLike | None = None, enabled: bool = True) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.enabled = enabled
        self.hits = 0
        self.misses = 0
        if enabled:
            sweep_temp_files(self.root / "outputs")

    @staticmethod
    def key(model_sha256: str, preprocessing: dict, data_hash: str, backend: str) -> str:
        blob = json.dumps(
            {"model": model_sha256, "pp": preprocessing, "data": data_hash, "backend": backend},
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / "outputs" / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        """The cached logits for ``key``, or None (absent, disabled, or not matching its record)."""
        path = self._path(key)
        out = self._read(key, path) if self.enabled and path.is_file() else None
        if out is None:
            self.misses += 1
        else:
            self.hits += 1
        return out

    def _read(self, key: str, path: Path) -> np.ndarray | None:
        try:
            record = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
            out = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):  # a damaged entry is recomputed, not trusted
            return None
        ok = (isinstance(record, dict) and record.get("shape") == list(out.shape)
              and record.get("dtype") == out.dtype.str and out.ndim == 2
              and record.get("sha256") == _digest(key, out))
        return out if ok else None

    def put(self, key: str, logits: np.ndarray) -> None:
        if not self.enabled:
            return
        arr = np.ascontiguousarray(logits, np.float32)
        path = self._path(key)
        with atomic_path(path) as tmp:
            np.save(tmp, arr)
        record = {"shape": list(arr.shape), "dtype": arr.dtype.str, "sha256": _digest(key, arr)}
        write_bytes_atomic(path.with_suffix(".json"), json.dumps(record).encode("utf-8"))


def _digest(key: str, arr: np.ndarray) -> str:
    """sha256 of the key, dtype, shape and bytes: an entry is bound to its key (no copies under another)."""
    h = hashlib.sha256(f"{key}|{arr.dtype.str}|{arr.shape}|".encode())
    h.update(np.ascontiguousarray(arr).data)
    return h.hexdigest()


def sweep_temp_files(folder: Path, max_age_s: float = STALE_TEMP_S) -> int:
    """Remove temporary files (``.*.tmp*``, from :func:`~edge_committee._util.atomic_path`) older than
    ``max_age_s`` under ``folder`` and its sub-folders, one level deep. Returns how many went."""
    removed, now = 0, time.time()
    try:
        subdirs = [e.path for e in os.scandir(folder) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return 0
    for sub in subdirs:
        try:
            entries = list(os.scandir(sub))
        except OSError:
            continue
        for e in entries:
            try:
                stale = (e.name.startswith(".") and ".tmp" in e.name and e.is_file(follow_symlinks=False)
                         and now - e.stat(follow_symlinks=False).st_mtime > max_age_s)
                if stale:
                    os.unlink(e.path)
                    removed += 1
            except OSError:
                continue
    return removed
