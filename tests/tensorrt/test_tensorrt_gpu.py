"""On a machine with TensorRT (builder) and a CUDA GPU: compile a bundle for real and run it.

Skips itself elsewhere (every CI and development machine of this project: no TensorRT builder
installs from the registries). On a Jetson or a GPU workstation with TensorRT this is the
end-to-end check: engines built, fingerprinted, loaded through ``backend="tensorrt"``, and their
predictions equal to ONNX Runtime's on the same images.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.gpu, pytest.mark.tensorrt]


@pytest.fixture
def real_trt():
    trt = pytest.importorskip("tensorrt", reason="needs the full TensorRT (builder) Python module")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU visible to PyTorch")
    return trt


def test_compiled_bundle_predicts_like_onnx_runtime(bundle, real_trt):
    from edge_committee.backend.tensorrt.compiler import compile_bundle
    from edge_committee.backend.tensorrt.fingerprint import BuildOptions
    from edge_committee.runtime.cascade import CascadeModel

    entries = compile_bundle(bundle, BuildOptions(max_batch=16, opt_batch=4), log=print)
    assert all(e["fingerprint"]["tensorrt"] == real_trt.__version__ for e in entries)
    images = np.random.default_rng(0).integers(0, 256, (40, 12, 12, 1), dtype=np.uint8)  # > max_batch: chunked
    with CascadeModel(bundle) as ref, CascadeModel(bundle, backend="tensorrt") as trt_model:
        want, got = ref.predict(images), trt_model.predict(images)
    np.testing.assert_array_equal(got.exit_stage, want.exit_stage)
    np.testing.assert_array_equal(got.labels, want.labels)
    np.testing.assert_allclose(got.probs, want.probs, atol=2e-3)  # TF32/FP16 kernels vs ONNX Runtime FP32
