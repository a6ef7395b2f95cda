"""The exported tiny cascade on a real Triton server (the bundled one), over HTTP and gRPC.

One server for the module (started once, stopped by its pid); every client loop is bounded.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edge_committee.serve.triton.export import export_triton
from edge_committee.serve.triton.server import ServerError, TritonServer

from .conftest import needs_server

OUTPUTS = ("labels", "confidence", "exit_stage", "flags", "probs")


@pytest.fixture(scope="module")
def server(tiny_cascade: Path, tmp_path_factory):
    needs_server()
    repo = export_triton(tiny_cascade, tmp_path_factory.mktemp("repo") / "model_repository",
                         member_backend="python-ort", max_batch=64, threads=1)
    srv = TritonServer(repo.path, http_port=0, grpc_port=0)
    srv.start()
    yield srv
    assert srv.stop() == 0  # a clean shutdown


@pytest.fixture(scope="module")
def expected(tiny_cascade: Path, tiny_images: np.ndarray):
    import edge_committee as ec

    with ec.load(tiny_cascade) as model:
        pred = model.predict(tiny_images)
    assert len(set(pred.exit_stage.tolist())) == 3  # every stage is exercised
    return pred


def infer(client, module, images: np.ndarray, model: str = "tiny", dtype: str = "UINT8", version: str = "") -> dict:
    x = module.InferInput("images", list(images.shape), dtype)
    x.set_data_from_numpy(images)
    result = client.infer(model, [x], outputs=[module.InferRequestedOutput(n) for n in OUTPUTS],
                          model_version=version)
    return {n: result.as_numpy(n) for n in OUTPUTS}


def send_split(client, module, images: np.ndarray, seed: int, model: str = "tiny", version: str = "") -> dict:
    """The split in requests of 1..40 images; the answers concatenated."""
    rng = np.random.default_rng(seed)
    parts, i = [], 0
    while i < len(images):
        n = int(rng.integers(1, 41))
        parts.append(infer(client, module, images[i : i + n], model, version=version))
        i += n
    return {k: np.concatenate([p[k] for p in parts]) for k in OUTPUTS}


def assert_same(got: dict, pred) -> None:
    np.testing.assert_array_equal(got["labels"][:, 0], pred.labels)
    np.testing.assert_array_equal(got["exit_stage"][:, 0], pred.exit_stage)
    np.testing.assert_array_equal(got["flags"][:, 0], pred.flags)
    np.testing.assert_allclose(got["confidence"][:, 0], pred.confidence, atol=1e-6)
    np.testing.assert_allclose(got["probs"], pred.probs, atol=1e-6)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_answers_equal_the_python_api(server, expected, tiny_images, protocol):
    module = pytest.importorskip(f"tritonclient.{protocol}")
    client = module.InferenceServerClient(server.http_url if protocol == "http" else server.grpc_url)
    try:
        assert_same(send_split(client, module, tiny_images, seed=0), expected)
    finally:
        client.close()


def test_concurrent_clients_are_batched(server, expected, tiny_images):
    import tritonclient.http as th

    def client_run(seed: int) -> dict:
        client = th.InferenceServerClient(server.http_url)
        try:
            return send_split(client, th, tiny_images, seed)
        finally:
            client.close()

    stats = th.InferenceServerClient(server.http_url)
    before = {m: _counts(stats, m) for m in ("tiny", "tiny.small", "tiny.large")}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(client_run, range(1, 9)))
    for got in answers:
        assert_same(got, expected)
    for model, (inferences0, executions0) in before.items():
        inferences, executions = _counts(stats, model)
        assert inferences - inferences0 > executions - executions0 > 0, model  # batches larger than 1
    stats.close()


def _counts(client, model: str) -> tuple[int, int]:
    s = client.get_inference_statistics(model)["model_stats"][0]
    return int(s["inference_count"]), int(s["execution_count"])


def test_malformed_requests_get_errors_and_the_server_keeps_serving(server, expected, tiny_images):
    import tritonclient.http as th
    from tritonclient.utils import InferenceServerException

    client = th.InferenceServerClient(server.http_url)
    bad = [(tiny_images[:4].astype(np.float32), "FP32", "data-type is 'FP32'"),
           (tiny_images[:4, :, :, 0], "UINT8", "unexpected shape"),  # [N, H, W]: one dimension short
           (np.zeros((2, 12, 12, 2), np.uint8), "UINT8", r"shape \[N, H, W, 1\|3\]")]  # refused by the model
    try:
        for images, dtype, message in bad:
            with pytest.raises(InferenceServerException, match=message) as info:
                infer(client, th, images, dtype=dtype)
            assert info.value.status() == "400"  # the client's mistake, not a server error
        got = infer(client, th, tiny_images[:50])
        np.testing.assert_array_equal(got["labels"][:, 0], expected.labels[:50])
    finally:
        client.close()


def test_the_repository_names_its_bundle(server, tiny_cascade):

    import tritonclient.grpc as tg

    client = tg.InferenceServerClient(server.grpc_url)
    try:
        config = client.get_model_config("tiny", as_json=True)["config"]
    finally:
        client.close()
    digest = json.loads((tiny_cascade / "manifest.json").read_text())["manifest_sha256"]  # inspect's identity
    assert config["parameters"]["edge_committee.manifest_sha256"]["string_value"] == digest


def test_classification_extension_answers_class_names(server, expected, tiny_images, tiny_cascade):
    import tritonclient.http as th

    from .conftest import manifest

    labels = manifest(tiny_cascade)["labels"]
    client = th.InferenceServerClient(server.http_url)
    try:
        x = th.InferInput("images", [5, *tiny_images.shape[1:]], "UINT8")
        x.set_data_from_numpy(tiny_images[:5])
        top = client.infer("tiny", [x], outputs=[th.InferRequestedOutput("probs", class_count=2)]).as_numpy("probs")
    finally:
        client.close()
    # "probability:index:name", best first: the names come from labels.txt (label_filename)
    best = [row[0].decode().split(":") for row in top]
    assert [int(b[1]) for b in best] == expected.labels[:5].tolist()
    assert [b[2] for b in best] == [labels[i] for i in expected.labels[:5]]


def test_fused_form_two_versions_and_metrics(tiny_cascade: Path, tiny_images, expected, tmp_path: Path):
    """export-triton --form fused (python-ort: the bundled server has no onnxruntime backend) as versions
    1 and 2 side by side; both answer as predict does, in the [N, 1] shapes of the BLS model."""
    needs_server()
    import urllib.request

    import tritonclient.http as th

    size = "x".join(map(str, tiny_images.shape[1:]))
    repo = tmp_path / "repo"
    export_triton(tiny_cascade, repo, form="fused", member_backend="python-ort", source_size=size, name="fused")
    r = export_triton(tiny_cascade, repo, form="fused", member_backend="python-ort", source_size=size, name="fused",
                      version=2, version_policy="all")
    assert r.versions == (1, 2)
    with TritonServer(repo, http_port=0, grpc_port=0, metrics_port=0) as srv:
        client = th.InferenceServerClient(srv.http_url)
        try:
            for version in ("1", "2"):
                assert client.is_model_ready("fused", version)
                got = send_split(client, th, tiny_images, seed=3, model="fused", version=version)
                assert got["labels"].shape == (len(tiny_images), 1)
                assert_same(got, expected)
        finally:
            client.close()
        with urllib.request.urlopen(srv.metrics_url, timeout=10) as resp:
            metrics = resp.read().decode()
        assert 'nv_inference_request_success{model="fused",version="2"}' in metrics


def test_serve_refuses_a_repository_its_server_cannot_load(tiny_cascade: Path, tmp_path: Path):
    needs_server()
    repo = export_triton(tiny_cascade, tmp_path / "repo").path  # onnxruntime members: NVIDIA's container only
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "edge_committee", "serve", str(repo), "--http-port", "0",
                          "--grpc-port", "0"], capture_output=True, text=True, timeout=120)
    err = out.stderr.strip()
    assert out.returncode == 1 and len(err.splitlines()) == 1, err
    assert "Triton's onnxruntime backend, which this tritonserver (bundled" in err
    assert "--member-backend python-ort" in err and time.monotonic() - start < 60  # before any server starts


def test_a_member_that_fails_to_load_is_named(tiny_cascade: Path, tmp_path: Path):
    needs_server()
    repo = export_triton(tiny_cascade, tmp_path / "repo", member_backend="python-ort")
    broken = repo.path / "tiny.medium" / "1" / "model.onnx"
    broken.unlink()  # a hard link to the bundle's file: replace it, never write through it
    broken.write_bytes(b"this is not an ONNX file")
    from edge_committee.serve.triton.integrity import write_model_marker

    write_model_marker(broken.parent.parent, repo.manifest_sha256)  # past the integrity check: ORT's own error
    srv = TritonServer(repo.path, http_port=0, grpc_port=0, log_path=tmp_path / "server.log")
    with pytest.raises(ServerError) as info:
        srv.start(timeout_s=120)
    message = str(info.value)
    assert "model 'tiny.medium' failed to load" in message and "ONNX Runtime cannot load" in message
    assert "\n" not in message
    assert not srv.running()


def test_serve_cli_starts_and_stops_cleanly(tiny_cascade: Path, tmp_path: Path):
    needs_server()
    proc = subprocess.Popen([sys.executable, "-m", "edge_committee", "serve", str(tiny_cascade), "--http-port", "0",
                             "--grpc-port", "0", "--metrics-port", "0", "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        ready = _read_until(proc, "ready:", timeout_s=120)
        m = re.search(r"http://([\d.]+):(\d+) and grpc ([\d.:]+); metrics \S+; server pid (\d+)", ready)
        assert m and m.group(1) == "127.0.0.1", ready
        metrics = re.search(r"metrics (http://127\.0\.0\.1:\d+/metrics);", ready)
        assert metrics, ready
        import urllib.request

        with urllib.request.urlopen(metrics.group(1), timeout=10) as resp:
            assert b"nv_inference_request_success" in resp.read()
        import tritonclient.http as th

        client = th.InferenceServerClient(f"127.0.0.1:{m.group(2)}")
        assert client.is_model_ready("tiny")
        client.close()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "stopped (tritonserver exit code 0)" in out
        assert not _alive(int(m.group(4)))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _read_until(proc: subprocess.Popen, marker: str, timeout_s: float) -> str:
    """The first stdout line containing ``marker`` (bounded by the process ending or ``timeout_s``)."""
    deadline, seen = time.monotonic() + timeout_s, []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return line
    raise AssertionError(f"no {marker!r} line; output: {''.join(seen)}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_an_edited_cascade_json_refuses_to_load(tiny_cascade: Path, tmp_path: Path):
    """t3 S18: thresholds edited in an exported repository were served silently under the bundle's digest."""
    needs_server()
    repo = export_triton(tiny_cascade, tmp_path / "repo", member_backend="python-ort")
    path = repo.path / "tiny" / "1" / "cascade.json"
    spec = json.loads(path.read_text())
    spec["thresholds"] = [0.0 for _ in spec["thresholds"]]
    path.write_text(json.dumps(spec))
    srv = TritonServer(repo.path, http_port=0, grpc_port=0, log_path=tmp_path / "server.log")
    with pytest.raises(ServerError) as info:
        srv.start(timeout_s=120)
    message = str(info.value)
    assert "model 'tiny' failed to load" in message and "cascade.json: checksum mismatch" in message, message
    assert "\n" not in message and not srv.running()
