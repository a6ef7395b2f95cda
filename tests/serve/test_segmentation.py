"""export-triton on a segmentation bundle: the tile cascade as a BLS model (member 0 on the frames,
the large member on the deferred tiles' windows), checked on the bundled server against ec.load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from edge_committee.cli.main import main  # noqa: E402
from edge_committee.errors import EdgeCommitteeError  # noqa: E402
from edge_committee.serve.triton.export import export_triton  # noqa: E402
from edge_committee.serve.triton.server import TritonServer  # noqa: E402
from tests.dense_helpers import build_tiny_segmentation, make_frames  # noqa: E402

from .conftest import needs_server  # noqa: E402
from .test_export import parse_config  # noqa: E402

OUTPUTS = ("class_map", "probs", "histogram", "tile_confidence", "tile_exit_stage", "tile_flags", "tiles_deferred")


@pytest.fixture(scope="module")
def seg_bundle(tmp_path_factory) -> Path:
    return build_tiny_segmentation(tmp_path_factory.mktemp("seg"))


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """40 frames of another size than the members' (48x96 RGB: each member resizes them itself)."""
    x, _ = make_frames(40, 21)
    return np.repeat(x.repeat(3, axis=1).repeat(3, axis=2)[..., None], 3, axis=-1)


@pytest.fixture(scope="module")
def expected(seg_bundle, frames):
    import edge_committee as ec

    with ec.load(seg_bundle, threads=1) as model:
        pred = model.predict(frames)
    assert 0 < (pred.tile_exit_stage > 0).sum() < pred.tile_exit_stage.size  # both stages answer some tiles
    return pred


def test_the_repository_describes_the_tile_cascade(seg_bundle, tmp_path, capsys):
    out = tmp_path / "repo"
    assert main(["export-triton", str(seg_bundle), "--out", str(out), "--max-batch", "16", "--single", "large"]) == 0
    said = capsys.readouterr().out
    assert "segmentation" in said and "class_map [N, 16, 32]" in said and "tiles_deferred [N, 1]" in said
    cfg, mc = parse_config(out / "tiny-seg" / "config.pbtxt")
    dims = {o.name: list(o.dims) for o in cfg.output}
    assert dims == {"class_map": [16, 32], "probs": [3, 16, 32], "histogram": [3], "tile_confidence": [8],
                    "tile_exit_stage": [8], "tile_flags": [8], "tiles_deferred": [1]}
    assert cfg.output[0].data_type == mc.TYPE_INT32 and cfg.output[2].data_type == mc.TYPE_INT64
    member, _ = parse_config(out / "tiny-seg.large" / "config.pbtxt")
    assert list(member.input[0].dims) == [1, -1, -1] and list(member.output[0].dims) == [3, -1, -1]
    assert [list(w.inputs["image"].dims) for w in member.model_warmup] == [[1, 16, 32]]  # warmed on a frame
    spec = json.loads((out / "tiny-seg" / "1" / "cascade.json").read_text())
    assert spec["task"] == "segmentation" and spec["segmentation"]["tile"] == [8, 8]
    assert spec["segmentation"]["margin"] == 2 and spec["members"][0]["num_classes"] == 3
    alone = json.loads((out / "tiny-seg.large.alone" / "1" / "cascade.json").read_text())
    assert [m["name"] for m in alone["members"]] == ["large"] and alone["thresholds"] == []


def test_tensorrt_members_are_refused_in_one_line(seg_bundle, tmp_path):
    with pytest.raises(EdgeCommitteeError, match="has no TensorRT engines .* python-ort") as err:
        export_triton(seg_bundle, tmp_path / "repo", member_backend="tensorrt")
    assert "\n" not in str(err.value) and not (tmp_path / "repo").exists()


def test_the_fused_form_has_the_bls_models_outputs(seg_bundle, tmp_path):
    out = tmp_path / "repo"
    export_triton(seg_bundle, out, form="fused", source_size="96x48x3")
    cfg, mc = parse_config(out / "tiny-seg" / "config.pbtxt")
    assert cfg.backend == "onnxruntime" and list(cfg.input[0].dims) == [48, 96, 3]
    assert [o.name for o in cfg.output] == list(OUTPUTS)
    assert {o.name: list(o.dims) for o in cfg.output}["tiles_deferred"] == [1]


def _infer(client, module, images: np.ndarray, model: str = "tiny-seg") -> dict:
    x = module.InferInput("images", list(images.shape), "UINT8")
    x.set_data_from_numpy(images)
    result = client.infer(model, [x], outputs=[module.InferRequestedOutput(n) for n in OUTPUTS])
    return {n: result.as_numpy(n) for n in OUTPUTS}


@pytest.mark.parametrize("form", ["bls", "fused"])
def test_the_server_answers_as_the_python_api(seg_bundle, frames, expected, tmp_path, form):
    needs_server()
    import tritonclient.grpc as tg
    import tritonclient.http as th
    from tritonclient.utils import InferenceServerException

    repo = export_triton(seg_bundle, tmp_path / "repo", member_backend="python-ort", max_batch=16, threads=1,
                         form=form, source_size="96x48x3")
    with TritonServer(repo.path, http_port=0, grpc_port=0) as server:
        http = th.InferenceServerClient(server.http_url)
        grpc = tg.InferenceServerClient(server.grpc_url)
        try:
            parts, sizes = [], [1, 7, 16, 3, 13]  # 40 frames in requests of several sizes, both protocols
            start = 0
            for i, n in enumerate(sizes):
                client, module = (http, th) if i % 2 == 0 else (grpc, tg)
                parts.append(_infer(client, module, frames[start:start + n]))
                start += n
            got = {k: np.concatenate([p[k] for p in parts]) for k in OUTPUTS}
            np.testing.assert_array_equal(got["class_map"], expected.labels)
            np.testing.assert_array_equal(got["tile_exit_stage"], expected.tile_exit_stage)
            np.testing.assert_array_equal(got["tile_flags"], expected.tile_flags)
            np.testing.assert_array_equal(got["histogram"], expected.histogram())
            np.testing.assert_array_equal(got["tiles_deferred"][:, 0], (expected.tile_exit_stage > 0).sum(axis=1))
            np.testing.assert_allclose(got["tile_confidence"], expected.tile_confidence, atol=1e-6)
            np.testing.assert_allclose(got["probs"], expected.probs, atol=1e-6)
            # a request for one output gets that one only; a malformed one is the client's error
            x = th.InferInput("images", [2, 48, 96, 3], "UINT8")
            x.set_data_from_numpy(frames[:2])
            one = http.infer("tiny-seg", [x], outputs=[th.InferRequestedOutput("histogram")])
            assert one.as_numpy("histogram").shape == (2, 3) and one.as_numpy("class_map") is None
            bad = th.InferInput("images", [1, 48, 96, 2], "UINT8")
            bad.set_data_from_numpy(np.zeros((1, 48, 96, 2), np.uint8))
            with pytest.raises(InferenceServerException, match=r"shape \[N, H, W, 1\|3\]|unexpected shape"):
                http.infer("tiny-seg", [bad])  # refused by the BLS model, or by Triton (the fused file's fixed size)
        finally:
            http.close()
            grpc.close()
