"""Findings 12, 8 and 17: a locked, atomic bundle swap; umask permissions; stale leftovers swept.

Concurrency is exercised with real processes (tests/bundle/swap_worker.py), bounded in count and time.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_committee.bundle import StagingDir, read_manifest

WORKER = Path(__file__).with_name("swap_worker.py")


def _worker(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKER), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}."))


def test_concurrent_writers_and_a_reader(tmp_path: Path):
    """Probe C2 + C4: 2 writers x 60 commits to one folder while a reader reads it in a loop."""
    dest, stop = tmp_path / "race", tmp_path / "stop"
    subprocess.run([sys.executable, str(WORKER), "writer", str(dest), "1", "first"], check=True, capture_output=True)
    reader = _worker("reader", dest, stop)
    writers = [_worker("writer", dest, 60, tag) for tag in ("a", "b")]
    results = [w.communicate(timeout=60) for w in writers]
    stop.touch()
    out, err = reader.communicate(timeout=60)
    for (w_out, w_err), w in zip(results, writers):
        assert w.returncode == 0 and json.loads(w_out) == {"errors": 0}, w_err
    counts = json.loads(out)
    assert counts["errors"] == {} and counts["ok"] > 0, counts
    assert read_manifest(dest)["tag"].split("-")[0] in ("a", "b")
    assert _leftovers(dest) == []


def test_crash_between_the_two_renames_is_recovered(tmp_path: Path):
    """Probe I7, on the fallback without RENAME_EXCHANGE: the next reader or writer rolls forward."""
    dest = tmp_path / "crash"
    subprocess.run([sys.executable, str(WORKER), "writer", str(dest), "1", "old"], check=True, capture_output=True)
    r = subprocess.run([sys.executable, str(WORKER), "crash", str(dest)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 9, r.stderr
    assert not dest.exists()  # the crash left no bundle at DEST ...
    assert read_manifest(dest)["tag"] == "new"  # ... and a reader finds the new, complete one
    assert _leftovers(dest) == []


def test_commit_uses_an_atomic_exchange_when_available(tmp_path: Path, monkeypatch):
    from edge_committee.bundle import staging as st

    dest = tmp_path / "b"
    (dest / "x").mkdir(parents=True)
    probe = tmp_path / "probe"
    probe.mkdir()
    if not st.exchange(probe, dest):
        pytest.skip("this kernel or file system has no renameat2(RENAME_EXCHANGE)")
    assert (probe / "x").is_dir() and not (dest / "x").exists()  # swapped in one step
    renames = []
    monkeypatch.setattr(st.os, "rename", lambda *a: renames.append(a) or os.replace(*a))
    sys.path.insert(0, str(WORKER.parent))
    try:
        import swap_worker
    finally:
        sys.path.remove(str(WORKER.parent))
    swap_worker.commit_one(tmp_path / "c", "one")  # first commit: a plain rename
    swap_worker.commit_one(tmp_path / "c", "two")  # replacing: the exchange, no rename
    assert len(renames) == 1 and read_manifest(tmp_path / "c")["tag"] == "two"


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_bundle_folder_permissions_follow_the_umask(tmp_path: Path, umask):
    """Probe X5: the folder was 0700 (mkdtemp) while its files were 0644."""
    old = os.umask(umask)
    try:
        staging = StagingDir(tmp_path / "b")
        with staging as root:
            (root / "f").write_text("x")
        staging.commit()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o777 & ~umask


def test_stale_leftovers_are_swept_and_live_ones_kept(tmp_path: Path):
    """Probe I2/I5: leftovers of killed writers are removed when the next one starts."""
    from edge_committee.bundle import staging as st

    dest = tmp_path / "K"
    hour_ago = time.time() - 2 * 3600
    names = {"stale_stage": ".K.ec-stage-abcd1234", "stale_old": ".K.ec-old-abcd1234", "legacy": ".K.old.4242",
             "young": ".K.ec-stage-young123", "live": ".K.ec-stage-live1234", "foreign": ".K.mine"}
    for key, name in names.items():
        (tmp_path / name / "members").mkdir(parents=True)
        if key != "young":
            os.utime(tmp_path / name, (hour_ago, hour_ago))
    live = st._try_lock_dir(tmp_path / names["live"])  # a writer that is still running
    try:
        staging = StagingDir(dest)
        with staging as root:
            (root / "f").write_text("x")
        staging.commit()
    finally:
        os.close(live)
    assert _leftovers(dest) == sorted([names["young"], names["live"], names["foreign"]])
