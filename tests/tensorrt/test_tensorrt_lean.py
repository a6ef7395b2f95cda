"""The real TensorRT lean runtime (``tensorrt-lean-cu13-*``, in the test extra) with the runner module.

The lean runtime deserializes and runs engines but cannot build them, and without a GPU its
``Runtime`` is created broken (it only logs an error) and deserializing through it kills the
process. These tests show the runner refuses a corrupt engine and a runtime that did not start
with one clear line, and never crashes. The TensorRT calls run in a child process, so a crash
would fail one test instead of ending the whole run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import fake_trt
import pytest
from trt_helpers import install_fake

from edge_committee.backend.tensorrt.compiler import compile_bundle

pytestmark = pytest.mark.tensorrt

lean = pytest.importorskip("tensorrt_lean_bindings", reason="the TensorRT lean runtime (test extra) is not installed")

CHILD = textwrap.dedent("""
    import json, sys
    import tensorrt_lean_bindings as trt
    from edge_committee.backend.tensorrt import gpu
    from edge_committee.backend.tensorrt.runner import TensorRTMember
    from edge_committee.errors import EdgeCommitteeError
    args = json.loads(sys.argv[1])
    if args.get("fingerprint"):
        from edge_committee.backend.tensorrt.fingerprint import Fingerprint
        gpu.gpu_info = lambda device=0: gpu.GpuInfo("Orin", "8.7")  # the engine's GPU, so TensorRT is reached
        args["fingerprint"] = Fingerprint.from_dict(args["fingerprint"])
    try:
        TensorRTMember(args.pop("path"), trt=trt, **args).activate()
        print(json.dumps({"ok": True}))
    except EdgeCommitteeError as exc:
        print(json.dumps({"ok": False, "type": type(exc).__name__, "message": str(exc)}))
""")


def activate_in_child(path, **kwargs) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps({"path": str(path), **kwargs})],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"the child crashed (exit {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_lean_runtime_refuses_a_file_that_is_not_an_engine(tmp_path):
    junk = tmp_path / "junk.engine"
    junk.write_bytes(b"\x08\x07ONNX, not a TensorRT plan" * 20)
    result = activate_in_child(junk)
    assert result["ok"] is False and "\n" not in result["message"]
    # without a GPU: refused before TensorRT makes a runtime; with one, TensorRT itself refuses the file
    assert (result["type"] == "NoGpuError" or (result["type"] == "EngineLoadError"
            and f"TensorRT could not deserialize {junk}" in result["message"])), result


def test_a_runtime_that_failed_to_start_is_refused_and_never_freed():
    """Without a GPU the lean runtime's Runtime() only logs an error; freeing that object crashes the
    process. start_runtime refuses it and keeps it alive, so the child exits cleanly."""
    code = textwrap.dedent("""
        import gc, json
        import tensorrt_lean_bindings as trt
        from edge_committee.backend.tensorrt.compat import capturing_logger
        from edge_committee.backend.tensorrt.runner import EngineLoadError, start_runtime
        try:
            start_runtime(trt, capturing_logger(trt))
            print(json.dumps({"started": True}))
        except EngineLoadError as exc:
            gc.collect()
            print(json.dumps({"started": False, "message": str(exc)}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"the child crashed (exit {proc.returncode}): {proc.stderr[-1500:]}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["started"]:
        pytest.skip("this machine has a working GPU: the runtime started")
    assert result["message"].startswith(f"TensorRT (tensorrt_lean_bindings {lean.__version__}) cannot start a runtime "
                                        "on this machine: ")


def test_lean_runtime_is_never_handed_a_corrupt_engine(bundle, monkeypatch, gpu):
    install_fake(monkeypatch, fake_trt.Knobs(version=lean.__version__))
    (entry, _) = compile_bundle(bundle, log=lambda s: None)
    engine = bundle / entry["file"]
    sha = json.loads((bundle / "manifest.json").read_text())["files"][entry["file"]]
    engine.write_bytes(engine.read_bytes()[:-100])  # truncated in transfer
    result = activate_in_child(engine, expected_sha256=sha, fingerprint=entry["fingerprint"])
    assert result == {"ok": False, "type": "BundleError", "message": result["message"]}
    assert result["message"].startswith(f"engine {engine} is corrupt: sha256 ")
    assert "copy the bundle again or rebuild it with edge-committee compile" in result["message"]


def test_lean_runtime_refuses_an_engine_for_another_machine(bundle, monkeypatch, gpu):
    install_fake(monkeypatch, fake_trt.Knobs(version="10.3.0.26"))
    (entry, _) = compile_bundle(bundle, log=lambda s: None)
    result = activate_in_child(bundle / entry["file"], fingerprint=entry["fingerprint"])
    assert result["type"] == "EngineMismatchError"
    assert f"was built for TensorRT 10.3.0.26 on Orin (sm87) and cannot run on TensorRT {lean.__version__} on Orin" in \
        result["message"]


def test_the_capturing_logger_subclasses_the_real_ilogger():
    from edge_committee.backend.tensorrt.compat import capturing_logger

    logger = capturing_logger(lean)
    assert isinstance(logger, lean.ILogger)
    logger.log(lean.ILogger.Severity.ERROR, "first")
    logger.log(lean.ILogger.Severity.INFO, "chatter")
    assert logger.errors() == ["first"] and logger.last_error() == "first"
