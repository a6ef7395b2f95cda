"""Fixtures for the profile tests: the tiny committee's bundle, profiled with a fast timing rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_committee.profile import TimingConfig

#: a few calls per timing: the tests check structure and bookkeeping, not speed
FAST = TimingConfig(warmup_s=0.0, min_warmup=1, min_iters=3, min_time_s=0.0, max_time_s=0.02, check_s=0.0)
FAST_ARGS = ["--warmup", "0", "--min-iters", "3", "--min-time", "0", "--max-time", "0.02"]


@pytest.fixture
def fast_timing(monkeypatch):
    """Make every profile in the test (builds included) use :data:`FAST`."""
    import edge_committee.profile.profiler as profiler

    monkeypatch.setattr(profiler, "DEFAULT_TIMING", FAST)
    return FAST


@pytest.fixture
def profiled_bundle(built_bundle: Path) -> Path:
    """The tiny bundle with a profile of this device (onnxrt, 1 thread) at batch 1 and 4."""
    from edge_committee.profile import profile_bundle, write_profile

    doc = profile_bundle(built_bundle, "onnxrt", [1, 4], 1, timing=FAST, show_progress=False)
    write_profile(built_bundle, doc)
    return built_bundle
