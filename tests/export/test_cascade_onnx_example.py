"""The example committee (Fashion-MNIST, PyTorch members) as one fused file equals the runtime.

Built on a slice of the data (two members, 500 validation and 500 test images) to stay fast; the
full 10,000-image test split is compared by ``benchmarks/bench_fused.py`` (docs/fused_benchmark.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ..example.test_fashion_mnist import FMNIST, SPEC, build_slice

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not FMNIST.is_dir(), reason="needs the Debian package dataset-fashion-mnist"),
]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    from edge_committee.spec import load_spec

    from edge_committee.bundle.bundle import edit_bundle

    members = [m for m in load_spec(SPEC).members if m.name in ("phi0", "phi4")]
    root = build_slice(tmp_path_factory, "fm_fused", 500, members=tuple(members))
    with edit_bundle(root) as ed:  # the full build's cascade (a 500-image slice may choose phi4 alone)
        ed.manifest["cascade"].update(kind="cascade", members=["phi0", "phi4"], thresholds=[0.941666305065155])
    return root


def test_fused_example_equals_runtime_on_the_test_slice(bundle, tmp_path):
    import onnxruntime as ort

    import edge_committee as ec
    from edge_committee.cli.main import main
    from edge_committee.data.readers import read_idx

    images = read_idx(FMNIST / "t10k-images-idx3-ubyte.gz")[:500, ..., None]
    out = tmp_path / "cascade.onnx"
    assert main(["export-onnx", str(bundle), "--out", str(out), "--source-size", "28x28"]) == 0
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])  # plain onnxruntime
    labels, conf, stage, flags, probs = sess.run(None, {"images": images})
    ref = ec.load(bundle).predict(images)
    assert len(ec.load(bundle).members) == 2 and set(ref.exit_stage) == {0, 1}
    np.testing.assert_array_equal(labels, ref.labels)
    np.testing.assert_array_equal(stage, ref.exit_stage)
    np.testing.assert_array_equal(flags, ref.flags)
    np.testing.assert_allclose(conf, ref.confidence, atol=1e-5)
    np.testing.assert_allclose(probs, ref.probs, atol=1e-5)
