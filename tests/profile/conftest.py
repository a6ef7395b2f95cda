"""Fixtures for the profile tests: the tiny committee's bundle, profiled with a fast timing rule."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edge_committee.profile import TimingConfig

#: a few calls per timing: the tests check structure and bookkeeping, not speed
FAST = TimingConfig(warmup_s=0.0, min_warmup=1, min_iters=3, min_time_s=0.0, max_time_s=0.02, check_s=0.0)
FAST_ARGS = ["--warmup", "0", "--min-iters", "3", "--min-time", "0", "--max-time", "0.02"]


@pytest.fixture
def fast_timing(monkeypatch):
    """Make every profile in the test (builds included) use :data:`FAST`."""
    from edge_committee.profile import profiler

    monkeypatch.setattr(profiler, "DEFAULT_TIMING", FAST)
    return FAST


@pytest.fixture(scope="session")
def _bundles(tmp_path_factory, request) -> dict[str, Path]:
    """The tiny committee's bundle built once per session, and a copy profiled on this device."""
    from edge_committee.pipeline import build
    from edge_committee.profile import profile_bundle, write_profile

    root = tmp_path_factory.mktemp("tiny")
    spec = request.getfixturevalue("tiny_committee_factory")(root)
    plain = root / "bundle"
    build(spec, plain, cache_dir=root / "cache", log=lambda s: None)
    profiled = root / "profiled"
    shutil.copytree(plain, profiled)
    write_profile(profiled, profile_bundle(profiled, "onnxrt", [1, 4], 1, timing=FAST, show_progress=False))
    return {"plain": plain, "profiled": profiled}


@pytest.fixture
def built_bundle(_bundles, tmp_path: Path) -> Path:
    """A fresh copy of the tiny bundle (overrides the root conftest's, which rebuilds each time)."""
    return Path(shutil.copytree(_bundles["plain"], tmp_path / "bundle"))


@pytest.fixture
def profiled_bundle(_bundles, tmp_path: Path) -> Path:
    """A fresh copy of the tiny bundle with a profile of this device (onnxrt, 1 thread) at batch 1 and 4."""
    return Path(shutil.copytree(_bundles["profiled"], tmp_path / "bundle"))


def timing(ms: float, p90: float | None = None) -> dict:
    return {"median_ms": ms, "p90_ms": p90 or ms * 1.2, "p99_ms": (p90 or ms * 1.2) * 1.1, "mean_ms": ms,
            "min_ms": ms * 0.9, "iterations": 10, "stable": True, "compute_median_ms": None}


def synthetic_profile(members: dict[str, dict[int, float]], overhead: float = 0.01, key: str = "onnxrt-test-1c-t1",
                      preprocess: float = 0.02) -> dict:
    """A valid profile document with the given member medians (ms) per batch size; every overhead
    (call, gather, gate) costs ``overhead`` ms per call and preprocessing ``preprocess`` ms per sample,
    timed apart; in a one-stage runtime call (``stage``) the overhead costs twice its parts."""
    batches = sorted(next(iter(members.values())))
    by_batch = lambda f: {str(b): timing(f(b)) for b in batches}
    return {
        "schema": "edge_committee.profile/1",
        "name": key,
        "created": "2026-01-01T00:00:00+00:00",
        "duration_s": 1.0,
        "fingerprint": {"key": key, "backend": "onnxrt", "threads": 1, "cpu": "Test CPU", "cores": 1,
                        "clocks": {}, "device": {}, "versions": {}},
        "method": {},
        "batch_sizes": batches,
        "source_shape": [12, 12, 3],
        "members": {n: {"file": f"members/{n}.onnx", "sha256": "", "precision": "fp32",
                        "batches": {str(b): timing(ms) for b, ms in t.items()},
                        "stage": {str(b): timing(ms + overhead + 2 * (2 * overhead + preprocess * b))
                                  for b, ms in t.items()}}
                    for n, t in members.items()},
        "overhead": {"call": by_batch(lambda b: overhead), "gather": by_batch(lambda b: overhead),
                     "gate": by_batch(lambda b: overhead),
                     "preprocess": {n: by_batch(lambda b: preprocess * b) for n in members}},
    }
