"""A writer or reader of one bundle folder, run as a separate process by test_swap.py.

    python swap_worker.py writer DEST N TAG   commit N small bundles to DEST; prints {"errors": k}
    python swap_worker.py reader DEST STOP    read DEST until the file STOP exists; prints counts
    python swap_worker.py crash DEST          commit with two renames and die between them
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from edge_committee.bundle import StagingDir, finalize_manifest, read_manifest


def manifest(tag: str) -> dict:
    return {
        "schema_version": 1, "name": "race", "labels": ["a", "b"],
        "members": [{"name": "m", "file": "members/m.onnx", "sha256": "", "macs": 1, "precision": "fp32",
                     "preprocessing": {"size": [4, 4], "color": "gray"}, "labels": None}],
        "cascade": {"kind": "single", "members": ["m"], "thresholds": [], "confidence": "max_prob"},
        "files": {}, "tag": tag,
    }


def commit_one(dest: Path, tag: str) -> None:
    staging = StagingDir(dest)
    with staging as root:
        (root / "members").mkdir()
        (root / "members" / "m.onnx").write_bytes(tag.encode() * 1000)  # differs per commit
        (root / "payload.bin").write_bytes(os.urandom(4096))
        finalize_manifest(root, manifest(tag))
    staging.commit()


def writer(dest: Path, n: int, tag: str) -> None:
    errors = 0
    for i in range(n):
        try:
            commit_one(dest, f"{tag}-{i}")
        except Exception as exc:  # noqa: BLE001 - counted and shown: the test asserts there are none
            errors += 1
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    print(json.dumps({"errors": errors}))


def reader(dest: Path, stop: Path) -> None:
    ok, errors, deadline = 0, {}, time.monotonic() + 30.0
    while not stop.exists() and time.monotonic() < deadline:
        try:
            read_manifest(dest)
            ok += 1
        except Exception as exc:  # noqa: BLE001 - counted by type and first message
            errors.setdefault(type(exc).__name__, str(exc))
            errors[type(exc).__name__ + "#"] = errors.get(type(exc).__name__ + "#", 0) + 1
    print(json.dumps({"ok": ok, "errors": errors}))


def crash(dest: Path) -> None:
    """Commit over DEST with the two-rename fallback and die right after the first rename (probe I7)."""
    from edge_committee.bundle import staging as st

    st.exchange = lambda a, b: False  # as on a kernel or file system without RENAME_EXCHANGE
    real_rename = os.rename

    def rename(src, dst):
        real_rename(src, dst)
        if Path(src) == dest.resolve():
            os._exit(9)  # SIGKILL-like: no cleanup runs

    st.os.rename = rename
    commit_one(dest, "new")


if __name__ == "__main__":
    role, dest = sys.argv[1], Path(sys.argv[2])
    if role == "writer":
        writer(dest, int(sys.argv[3]), sys.argv[4])
    elif role == "reader":
        reader(dest, Path(sys.argv[3]))
    else:
        crash(dest)
