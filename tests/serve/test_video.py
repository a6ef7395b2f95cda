"""export-triton on a video bundle: the clip cascade as a BLS model (uint8 clips in, each member model on
its own view of the clips still active), checked on the bundled server against ec.load(bundle).predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

import edge_committee as ec  # noqa: E402
from edge_committee.cli.main import main  # noqa: E402
from edge_committee.errors import EdgeCommitteeError  # noqa: E402
from edge_committee.serve.triton.export import export_triton  # noqa: E402
from edge_committee.serve.triton.server import TritonServer  # noqa: E402
from edge_committee.serve.triton.tasks import check_clips  # noqa: E402
from tests.video_helpers import make_clips, write_tiny_video  # noqa: E402

from .conftest import needs_server  # noqa: E402
from .test_export import parse_config  # noqa: E402

OUTPUTS = ("labels", "confidence", "exit_stage", "flags", "probs")


@pytest.fixture(scope="module")
def video_bundle(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("video")
    ec.build(write_tiny_video(d, clips=120), d / "bundle", threads=1, log=lambda s: None)
    return d / "bundle"


@pytest.fixture(scope="module")
def clips() -> np.ndarray:
    """40 clips of 8 frames at 24x24 RGB (each member resizes its own frames)."""
    x, _ = make_clips(40, seed=9, clip=(8, 24, 24))
    return np.repeat(x[..., None], 3, axis=-1)


@pytest.fixture(scope="module")
def expected(video_bundle, clips):
    with ec.load(video_bundle, threads=1) as model:
        pred = model.predict(clips)
    assert 0 < (pred.exit_stage > 0).sum() < len(clips)  # both members answer some clips
    return pred


def test_the_repository_describes_the_clip_cascade(video_bundle, tmp_path, capsys):
    out = tmp_path / "repo"
    assert main(["export-triton", str(video_bundle), "--out", str(out), "--max-batch", "16", "--single", "large"]) == 0
    said = capsys.readouterr().out
    assert "video): uint8 clips [N, T, H, W, C] -> labels [N, 1]" in said and "probs [N, 3]" in said
    cfg, mc = parse_config(out / "tiny-video" / "config.pbtxt")
    assert [(i.name, list(i.dims), i.data_type) for i in cfg.input] == [("clips", [-1, -1, -1, -1], mc.TYPE_UINT8)]
    assert {o.name: list(o.dims) for o in cfg.output} == {"labels": [1], "confidence": [1], "exit_stage": [1],
                                                          "flags": [1], "probs": [3]}
    small, _ = parse_config(out / "tiny-video.small" / "config.pbtxt")
    large, _ = parse_config(out / "tiny-video.large" / "config.pbtxt")
    assert list(small.input[0].dims) == [1, 2, 4, 4] and list(large.input[0].dims) == [1, 8, 8, 8]  # own views
    assert [list(w.inputs["clip"].dims) for w in small.model_warmup] == [[1, 2, 4, 4]]
    spec = json.loads((out / "tiny-video" / "1" / "cascade.json").read_text())
    assert spec["task"] == "video" and spec["video"] == {"clip_frames": 8}
    assert [m["view"] for m in spec["members"]] == [{"frames": 2, "stride": 4}, {"frames": 8, "stride": 1}]
    alone = json.loads((out / "tiny-video.large.alone" / "1" / "cascade.json").read_text())
    assert [m["name"] for m in alone["members"]] == ["large"] and alone["thresholds"] == []


def test_tensorrt_members_are_refused_in_one_line(video_bundle, tmp_path):
    with pytest.raises(EdgeCommitteeError, match="has no TensorRT engines") as err:
        export_triton(video_bundle, tmp_path / "repo", member_backend="tensorrt")
    assert "\n" not in str(err.value) and not (tmp_path / "repo").exists()


def test_the_fused_form_takes_clips_of_one_size(video_bundle, tmp_path):
    out = tmp_path / "repo"
    export_triton(video_bundle, out, form="fused", source_size="24x24x3")
    cfg, mc = parse_config(out / "tiny-video" / "config.pbtxt")
    assert cfg.backend == "onnxruntime" and [(i.name, list(i.dims)) for i in cfg.input] == [("clips", [8, 24, 24, 3])]
    assert [o.name for o in cfg.output] == list(OUTPUTS) and list(cfg.output[0].dims) == [1]
    assert [list(w.inputs["clips"].dims) for w in cfg.model_warmup][0] == [8, 24, 24, 3]


def test_clip_requests_are_checked_in_one_line():
    spec = {"members": [{"view": {"frames": 2, "stride": 4}}, {"view": {"frames": 8}}]}
    ok = np.zeros((2, 8, 4, 4, 1), np.uint8)
    assert check_clips(ok, spec) is None
    assert "uint8" in check_clips(ok.astype(np.float32), spec)
    assert "[N, T, H, W, 1|3]" in check_clips(np.zeros((2, 8, 4, 4), np.uint8), spec)
    assert "span 8 frames: send at least 8" in check_clips(ok[:, :5], spec)
    assert "empty" in check_clips(ok[:, :, :0], spec)


def _infer(client, module, x: np.ndarray, model: str = "tiny-video") -> dict:
    t = module.InferInput("clips", list(x.shape), "UINT8")
    t.set_data_from_numpy(x)
    result = client.infer(model, [t], outputs=[module.InferRequestedOutput(n) for n in OUTPUTS])
    return {n: result.as_numpy(n) for n in OUTPUTS}


@pytest.mark.parametrize("form", ["bls", "fused"])
def test_the_server_answers_as_the_python_api(video_bundle, clips, expected, tmp_path, form):
    needs_server()
    import tritonclient.grpc as tg
    import tritonclient.http as th
    from tritonclient.utils import InferenceServerException

    repo = export_triton(video_bundle, tmp_path / "repo", member_backend="python-ort", max_batch=16, threads=1,
                         form=form, source_size="24x24x3", singles=["large"] if form == "bls" else ())
    with TritonServer(repo.path, http_port=0, grpc_port=0) as server:
        http = th.InferenceServerClient(server.http_url)
        grpc = tg.InferenceServerClient(server.grpc_url)
        try:
            parts, start = [], 0
            for i, n in enumerate([1, 7, 16, 3, 13]):  # 40 clips in requests of several sizes, both protocols
                client, module = (http, th) if i % 2 == 0 else (grpc, tg)
                parts.append(_infer(client, module, clips[start:start + n]))
                start += n
            got = {k: np.concatenate([p[k] for p in parts]) for k in OUTPUTS}
            assert got["labels"].shape == (40, 1) and got["probs"].shape == (40, 3)
            np.testing.assert_array_equal(got["labels"][:, 0], expected.labels)
            np.testing.assert_array_equal(got["exit_stage"][:, 0], expected.exit_stage)
            np.testing.assert_array_equal(got["flags"][:, 0], expected.flags)
            np.testing.assert_allclose(got["confidence"][:, 0], expected.confidence, atol=1e-6)
            np.testing.assert_allclose(got["probs"], expected.probs, atol=1e-6)
            if form == "fused":  # one model of a fixed clip size: Triton itself refuses another shape
                t = th.InferInput("clips", [2, 5, 24, 24, 3], "UINT8")
                t.set_data_from_numpy(clips[:2, :5])
                with pytest.raises(InferenceServerException, match="unexpected shape"):
                    http.infer("tiny-video", [t])
                return
            # the large member alone: every clip at stage 0, its labels those of the large member's view
            with ec.load(video_bundle, threads=1) as model:
                alone = model.executor.runners[1].infer(_large_view(model, clips[:8]))
            one = _infer(http, th, clips[:8], "tiny-video.large.alone")
            np.testing.assert_array_equal(one["labels"][:, 0], alone.argmax(axis=1))
            assert (one["exit_stage"] == 0).all()
            # longer clips than the bundle's are taken (views centred, as predict does); short ones refused
            t = th.InferInput("clips", [2, 5, 24, 24, 3], "UINT8")
            t.set_data_from_numpy(clips[:2, :5])
            with pytest.raises(InferenceServerException, match="views span 8 frames"):
                http.infer("tiny-video", [t])
            gray = th.InferInput("clips", [2, 8, 24, 24, 1], "UINT8")
            gray.set_data_from_numpy(clips[:2, ..., :1])
            answer = http.infer("tiny-video", [gray], outputs=[th.InferRequestedOutput("labels")])
            assert answer.as_numpy("labels").shape == (2, 1) and answer.as_numpy("probs") is None
        finally:
            http.close()
            grpc.close()


def _large_view(model, clips: np.ndarray) -> np.ndarray:
    """The large member's input for ``clips``, as the host loop makes it."""
    from edge_committee.cascade.clips import clip_input

    return clip_input(clips, model.views[1], model.preprocessing[1])


def test_serve_takes_a_video_bundle(video_bundle, clips, expected):
    """``edge-committee serve BUNDLE`` exports the video bundle itself and answers clips; SIGTERM stops it."""
    needs_server()
    import re
    import signal
    import subprocess
    import sys

    import tritonclient.http as th

    from .test_server import _alive, _read_until

    proc = subprocess.Popen([sys.executable, "-m", "edge_committee", "serve", str(video_bundle), "--http-port", "0",
                             "--grpc-port", "0", "--metrics-port", "0", "--threads", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        ready = _read_until(proc, "ready:", timeout_s=120)
        m = re.search(r"http://(127\.0\.0\.1):(\d+) and grpc .*server pid (\d+)", ready)
        assert m and "model 'tiny-video'" in ready, ready
        client = th.InferenceServerClient(f"127.0.0.1:{m.group(2)}")
        try:
            t = th.InferInput("clips", [5, 8, 24, 24, 3], "UINT8")
            t.set_data_from_numpy(clips[:5])
            got = client.infer("tiny-video", [t]).as_numpy("labels")[:, 0]
        finally:
            client.close()
        np.testing.assert_array_equal(got, expected.labels[:5])
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "stopped (tritonserver exit code 0)" in out
        assert not _alive(int(m.group(3)))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
