"""The onnxrt-fused backend's memory is bounded (t3 MEDIUM #9, LOW #15): at most ``max_sizes``
sessions, least recently used dropped; batches run in chunks; answers unchanged."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from edge_committee.runtime import CascadeModel  # noqa: E402

from .test_cascade_onnx import tiny_bundle  # noqa: E402


def test_sessions_are_an_lru_of_max_sizes(tmp_path):
    from edge_committee.backend.onnxrt_fused import executor as ex

    bundle, x = tiny_bundle(tmp_path)
    sizes = [(12, 12), (9, 10), (12, 12), (11, 7), (12, 12)]  # A B A C A: LRU drops B, keeps A
    builds = []
    real = ex.FusedOnnxExecutor._build

    def counting(self, key):
        builds.append(key[:2])
        return real(self, key)

    ex.FusedOnnxExecutor._build = counting
    try:
        with CascadeModel(bundle, backend="onnxrt-fused", threads=1, max_sizes=2) as model, \
                CascadeModel(bundle, threads=1) as ref:
            for h, w in sizes:
                imgs = np.ascontiguousarray(x[:6, :h, :w])
                got, want = model.predict(imgs), ref.predict(imgs)
                np.testing.assert_array_equal(got.labels, want.labels)
                np.testing.assert_array_equal(got.exit_stage, want.exit_stage)
                sessions = model.executor._sessions
                assert len(sessions) <= 2 and set(model.executor.origins) == set(sessions)
            assert [k[:2] for k in model.executor._sessions] == [(11, 7), (12, 12)]
    finally:
        ex.FusedOnnxExecutor._build = real
    assert builds == [(12, 12), (9, 10), (11, 7)]  # A stayed cached throughout: built once


def test_a_large_batch_runs_in_chunks_with_the_same_answers(tmp_path):
    bundle, x = tiny_bundle(tmp_path, n=64)
    with CascadeModel(bundle, backend="onnxrt-fused", threads=1, chunk=7) as small, \
            CascadeModel(bundle, backend="onnxrt-fused", threads=1) as whole:
        a, b = small.predict(x), whole.predict(x)
    for field in ("labels", "exit_stage", "flags"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-6)
    with pytest.raises(Exception, match="must be >= 1"):
        CascadeModel(bundle, backend="onnxrt-fused", chunk=0).__enter__()
