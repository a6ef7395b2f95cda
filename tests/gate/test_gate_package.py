"""edge_committee.gate imports cheaply, falls back to the NumPy reference, and says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_committee.cascade.reference import GateState, gate_step
from edge_committee.errors import DependencyError

ROOT = Path(__file__).resolve().parents[2]

_PROBE = r"""
import json, logging, sys
import numpy as np
logging.basicConfig(level=logging.WARNING)
import edge_committee.gate as gate
from edge_committee.cascade.reference import GateState
heavy = sorted(m for m in ("torch", "tensorrt", "onnx", "onnxruntime", "cupy") if m in sys.modules)
state = GateState.start(3, 4)
gate.gate_step_cpu(state, np.eye(3, 4, dtype=np.float32) * 5, 0, 2, 0.5)
gate.gate_step_cpu(state, np.zeros((state.active.size, 4), np.float32), 1, 2, 0.5)
print(json.dumps({"backend": gate.backend, "available": gate.available(), "heavy": heavy,
                  "label": state.label.tolist()}))
"""


def _probe(env_extra: dict) -> tuple[dict, str]:
    env = {k: v for k, v in os.environ.items() if k != "EC_EXTENSION_PATH"}
    env.update(env_extra)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, cwd=ROOT, check=False,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_import_is_light_and_falls_back_with_one_warning(tmp_path):
    result, stderr = _probe({"EC_EXTENSION_PATH": str(tmp_path / "missing_C.so")})
    assert result["heavy"] == []
    assert result["backend"] == "numpy" and result["available"] is False
    assert result["label"] == [0, 1, 2]
    assert stderr.count("NumPy reference") == 1  # warned once, although the gate ran twice


def test_extension_backend_when_built(native_ext):
    # Point the probe at the module the fixture found (installed, or a test build): the probe runs
    # from the source tree, which holds no built extension after a non-editable install.
    result, stderr = _probe({"EC_EXTENSION_PATH": native_ext.__file__})
    assert result["backend"] == "extension" and result["heavy"] == []
    assert "NumPy reference" not in stderr


def test_plugin_library_path_says_how_to_build(monkeypatch, tmp_path):
    from edge_committee import gate

    monkeypatch.setenv("EC_PLUGIN_LIBRARY", str(tmp_path / "nope.so"))
    with pytest.raises(DependencyError, match="EC_BUILD_TENSORRT=1"):
        gate.plugin_library_path()


def test_plugin_loader_error_says_how_to_build(native_ext, tmp_path):
    fake = tmp_path / "libfake.so"
    fake.write_bytes(b"not an ELF file")
    with pytest.raises(RuntimeError, match="EC_BUILD_TENSORRT=1"):
        native_ext.load_plugin_library(str(fake))


def test_cuda_gate_without_cuda_is_a_clear_error(native_ext):
    from edge_committee import gate

    if getattr(native_ext, "has_cuda", False):
        pytest.skip("this extension has the CUDA gate")
    with pytest.raises(DependencyError, match="CUDA"):
        gate.gate_step_cuda(*([None] * 9), 0, 2, 0.5)


def test_plugin_fields_match_the_reference_codes():
    from edge_committee import gate

    assert gate.plugin_fields(1, 3, 0.7, "neg_entropy") == {
        "threshold": 0.7, "stage": 1, "num_stages": 3, "confidence": 2}
    with pytest.raises(ValueError):
        gate.plugin_fields(3, 3, 0.7)
    assert gate_step(GateState.start(1, 2), np.zeros((1, 2)), 0, 1, 0.0).label.tolist() == [0]
