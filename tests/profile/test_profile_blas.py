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


def test_a_blas_loaded_after_the_first_call_is_limited_too():
    """The runtime's limiter scans again when modules were imported since its last scan (scipy, torch
    bring their own BLAS); run in a fresh process so the libraries load in this order."""
    import subprocess
    import sys

    pytest.importorskip("scipy")
    code = ("import threadpoolctl\n"
            "from edge_committee._util import blas_single_thread\n"
            "with blas_single_thread(): pass\n"
            "import scipy.linalg\n"
            "with threadpoolctl.threadpool_limits(limits=2, user_api='blas'):\n"
            "    before = [i['num_threads'] for i in threadpoolctl.threadpool_info() if i['user_api'] == 'blas']\n"
            "    with blas_single_thread():\n"
            "        inside = [i['num_threads'] for i in threadpoolctl.threadpool_info() if i['user_api'] == 'blas']\n"
            "print(max(before), max(inside))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    before, inside = map(int, out.stdout.split())
    if before < 2:
        pytest.skip("the BLAS libraries here cannot run 2 threads")
    assert inside == 1
