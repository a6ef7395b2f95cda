"""Write files so that a reader never sees half of one: a temp name beside it, then os.replace."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from edge_committee._util import atomic_path, write_bytes_atomic

__all__ = ["atomic_path", "write_bytes_atomic", "write_json_atomic"]


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON (stable bytes for stable hashes)."""
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    return write_bytes_atomic(path, text.encode("utf-8"))
