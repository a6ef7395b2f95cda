"""Finding 6: output-cache entries carry shape, dtype and digest and are verified on read (probe I9);
finding 17: cache temp files left by a killed build are swept (probe I6)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from edge_committee.evaluate.cache import OutputCache

KEY = "ab" + "0" * 62
OTHER = "cd" + "1" * 62


@pytest.fixture
def cache(tmp_path: Path) -> OutputCache:
    c = OutputCache(tmp_path / "cache")
    c.put(KEY, np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32))
    return c


def _entry(cache: OutputCache, key: str = KEY) -> Path:
    return cache.root / "outputs" / key[:2] / f"{key}.npy"


def test_an_intact_entry_is_read(cache: OutputCache):
    out = cache.get(KEY)
    assert out is not None and out.shape == (50, 4) and out.dtype == np.float32 and cache.hits == 1


def test_a_flipped_byte_is_recomputed(cache: OutputCache):
    path = _entry(cache)
    data = bytearray(path.read_bytes())
    data[-7] ^= 0x10  # a byte of the array data: still a valid .npy
    path.write_bytes(bytes(data))
    assert np.load(path).shape == (50, 4)
    assert cache.get(KEY) is None and cache.misses == 1


def test_a_forged_entry_is_recomputed(cache: OutputCache):
    labels = np.arange(50) % 4
    np.save(_entry(cache), (10 * np.eye(4, dtype=np.float32)[labels]))  # probe I9: one-hot of the labels
    assert cache.get(KEY) is None


def test_an_entry_copied_to_another_key_is_recomputed(cache: OutputCache):
    src = _entry(cache)
    dst = _entry(cache, OTHER)
    dst.parent.mkdir(parents=True)
    for p in src.parent.iterdir():
        if p.name.startswith(KEY):
            shutil.copy(p, dst.parent / p.name.replace(KEY, OTHER))
    assert cache.get(OTHER) is None


def test_stale_temp_files_are_swept(tmp_path: Path):
    folder = tmp_path / "cache" / "outputs" / "ab"
    folder.mkdir(parents=True)
    old, young = folder / f".{KEY}.npy.k3j4h5g6.tmp.npy", folder / f".{OTHER}.npy.a1b2c3d4.tmp.npy"
    for p in (old, young):
        p.write_bytes(b"partial")
    hour_ago = time.time() - 2 * 3600
    os.utime(old, (hour_ago, hour_ago))
    OutputCache(tmp_path / "cache")
    assert not old.exists() and young.exists()


def test_a_poisoned_cache_does_not_reach_the_bundle(tiny_committee: Path, cache_dir: Path):
    """Probe I9 end to end: one-hot entries made the report show 100 % for every member."""
    from edge_committee.pipeline import build

    clean = build(tiny_committee, tiny_committee.parent / "clean", cache_dir=cache_dir, log=lambda s: None)
    entries = sorted((cache_dir / "outputs").rglob("*.npy"))
    assert len(entries) == 6  # 3 members x 2 splits
    with np.load(tiny_committee.parent / "val.npz") as z:
        labels = z["y"]
    for p in entries:
        n, c = np.load(p).shape
        np.save(p, 10 * np.eye(c, dtype=np.float32)[labels[:n] % c])
    again = build(tiny_committee, tiny_committee.parent / "again", cache_dir=cache_dir, log=lambda s: None)
    assert [m["accuracy"] for m in again["members"]] == [m["accuracy"] for m in clean["members"]]
    with np.load(tiny_committee.parent / "clean" / "outputs.npz") as a, \
            np.load(tiny_committee.parent / "again" / "outputs.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])
