"""The profiler times with NumPy's BLAS on one thread, as the runtime runs a large call.

Timed with its threads, a preprocessing product waited for a second core: on a loaded machine a
batch-64 preprocessing measured 0.46 ms or 8-16 ms from one run to the next (docs/latency.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_committee.profile import profile_bundle
from edge_committee.spec.preprocess import Preprocessing

from .conftest import FAST

threadpoolctl = pytest.importorskip("threadpoolctl")


def _blas_threads() -> list[int]:
    return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]


def test_every_preprocessing_the_profiler_times_runs_on_one_blas_thread(built_bundle: Path, monkeypatch):
    """Spied at the preprocessing and at the member's inference (every stage runs both)."""
    from edge_committee.backend.base.runner import BaseRunner

    seen: list[list[int]] = []

    def spy(cls, name):
        original = getattr(cls, name)

        def wrapper(self, *args, **kwargs):
            seen.append(_blas_threads())
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, wrapper)

    spy(Preprocessing, "__call__")
    spy(BaseRunner, "infer")
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        if not _blas_threads() or max(_blas_threads()) < 2:
            pytest.skip("NumPy's BLAS cannot run 2 threads here")
        profile_bundle(built_bundle, "onnxrt", [1, 64], 1, timing=FAST, show_progress=False)
        after = _blas_threads()
    assert seen and all(t == [1] * len(t) for t in seen), seen[:3]
    assert max(after) == 2  # the caller's setting is given back
