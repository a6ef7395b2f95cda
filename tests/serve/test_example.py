"""The real example (Fashion-MNIST, a slice build) exported, served and answering like the Python API.

Needs torch, the Debian package dataset-fashion-mnist and the bundled server (all installed by
``.ci/run``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from .conftest import needs_server
from .test_server import assert_same, send_split

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "examples" / "fashion_mnist" / "committee.yaml"
FMNIST = Path("/usr/share/datasets/fashion-mnist")
N = 500  #: images of each split in the slice (the cascade it selects has three stages)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not FMNIST.is_dir(), reason="needs the Debian package dataset-fashion-mnist"),
]


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    needs_server()
    from edge_committee.pipeline import build
    from edge_committee.spec import load_spec

    spec = load_spec(SPEC)
    data = dict(spec.data)
    data["validation"] = {**data["validation"], "start": 50000, "stop": 50000 + N}
    data["test"] = {**data["test"], "stop": N}
    out = tmp_path_factory.mktemp("fm") / "bundle"
    build(dataclasses.replace(spec, data=data), out, cache_dir=out.parent / "cache", log=lambda s: None)
    return out


def test_example_serves_like_the_python_api(example: Path, tmp_path: Path):
    import tritonclient.grpc as tg
    import tritonclient.http as th

    import edge_committee as ec
    from edge_committee.data.readers import read_idx
    from edge_committee.serve.triton.export import export_triton
    from edge_committee.serve.triton.server import TritonServer

    images = read_idx(FMNIST / "t10k-images-idx3-ubyte.gz")[:N, :, :, None]  # the slice's test split
    with ec.load(example) as model:
        pred = model.predict(images)
    assert len(model.members) >= 2 and pred.exit_stage.max() >= 1  # a cascade that really exits late
    repo = export_triton(example, tmp_path / "model_repository", member_backend="python-ort", threads=1)
    with TritonServer(repo.path, http_port=0, grpc_port=0) as server:
        for module, url in ((th, server.http_url), (tg, server.grpc_url)):
            client = module.InferenceServerClient(url)
            try:
                got = send_split(client, module, images, seed=3, model=repo.cascade_model)
            finally:
                client.close()
            assert_same(got, pred)
