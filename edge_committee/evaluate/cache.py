"""On-disk cache of member outputs, keyed by the model's content hash and the data's hash.

A second build over the same members and data reads the logits back instead of running the
members again. The cache folder is ``$EDGE_COMMITTEE_CACHE`` or ``~/.cache/edge_committee``;
entries are ``.npy`` files written to a temporary name, then renamed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from edge_committee._util import atomic_path, sha256_file

__all__ = ["OutputCache", "default_cache_dir", "sha256_file"]


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
        path = self._path(key)
        if not self.enabled or not path.is_file():
            self.misses += 1
            return None
        try:
            out = np.load(path, allow_pickle=False)
        except (OSError, ValueError):  # a damaged entry is recomputed, not trusted
            self.misses += 1
            return None
        self.hits += 1
        return out

    def put(self, key: str, logits: np.ndarray) -> None:
        if not self.enabled:
            return
        with atomic_path(self._path(key)) as tmp:
            np.save(tmp, np.ascontiguousarray(logits, np.float32))
