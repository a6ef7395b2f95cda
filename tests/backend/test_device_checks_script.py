"""benchmarks/gpu/run_device_checks.sh --dry-run on the CPU: every step, its limit and command; the plan fits.

The script must finish inside one device call (600 s cap): one global deadline (540 s), the benchmark
before memcheck, memcheck never fatal, pytest with ``-x``. bench_control.py runs on the CPU too.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu" / "run_device_checks.sh"
STEP = re.compile(r"^(\S+)\s+limit\s+(\d+)s\s+\((\w+)\s+ends by \+\s*(\d+)s\)\s+(.+)$")

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def dry_run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), "--dry-run"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "OUT": str(tmp_path), **env})


def steps(out: str) -> dict[str, tuple[int, str, str]]:
    found = {}
    for line in out.splitlines():
        m = STEP.match(line)
        if m:
            found[m[1]] = (int(m[2]), m[3], m[5])
    return found


def test_dry_run_lists_every_step_and_fits_540_s(tmp_path):
    proc = dry_run(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    plan = steps(proc.stdout)
    assert list(plan) == ["machine", "wheels", "carried", "build", "pytest", "bench", "control", "memcheck",
                          "imagenet"]
    total = sum(limit for limit, _, _ in plan.values())
    assert total <= 540 and f"planned: {total}s" in proc.stdout and "PLAN FITS" in proc.stdout
    assert plan["memcheck"][1] == "report" and "compute-sanitizer" in plan["memcheck"][2]
    assert all(kind == "fatal" for name, (_, kind, _) in plan.items() if name not in ("memcheck", "machine"))
    assert " -x " in plan["pytest"][2]
    files = [a for a in plan["pytest"][2].split() if a.startswith("tests/")]
    assert files[:2] == ["tests/backend/test_torch_cuda_gpu.py", "tests/gate/test_cuda_gate.py"]  # GPU ones first
    assert all((ROOT / f).is_file() for f in files)
    assert "bench_device.py" in plan["bench"][2] and "bench_control.py" in plan["control"][2]
    assert "build_extension.py auto" in plan["build"][2]  # the GPU's own architecture: H100/H200 90, Orin 87
    assert not (tmp_path / "device_checks.log").exists()  # a dry run runs nothing, writes no log


def test_a_run_past_its_deadline_skips_steps_and_still_summarizes(tmp_path):
    """The real (not dry) run with a deadline of 12 s and nothing carried: every step that would get under 10 s
    is skipped with a line, memcheck and imagenet say why they are skipped, the summary comes, exit 1."""
    proc = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OUT": str(tmp_path), "EC_DEADLINE_S": "12", "PATH": os.environ["PATH"],
                               "EC_CARRY": str(tmp_path / "nothing")})
    out = proc.stdout
    assert proc.returncode == 1 and "=== summary" in out and "FAILED:" in out
    assert "--- pytest: skipped" in out and "--- bench: skipped" in out
    assert "memcheck: skipped" in out and "imagenet: skipped" in out
    assert (tmp_path / "device_checks.log").read_text().count("=== summary") == 1


def test_dry_run_refuses_a_plan_over_the_deadline(tmp_path):
    proc = dry_run(tmp_path, EC_DEADLINE_S="300")
    assert proc.returncode == 1 and "PLAN DOES NOT FIT" in proc.stdout


def test_control_benchmark_runs_on_the_cpu(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "control.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu" / "bench_control.py"), "--cpu-smoke",
                           "--chains", "1", "2", "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    import json

    rows = json.loads(out.read_text())["rows"]
    assert [(r["mode"], r["stages"]) for r in rows] == [("graph", 1), ("graph", 2), ("host", 1), ("host", 2)]
    assert all("overhead_slope_us" in r for r in rows)


def test_device_benchmark_runs_on_the_cpu(built_bundle, tmp_path):
    """bench_device.py --cpu-smoke on the tiny bundle: every part, the slope, and the verdict with the MACs ratio."""
    pytest.importorskip("torch")
    if importlib.util.find_spec("onnx2torch") is None:
        pytest.skip("needs onnx2torch")
    import json

    import numpy as np

    images = tmp_path / "images.npy"
    np.save(images, np.load(built_bundle.parent / "test.npz")["x"][:256])
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu" / "bench_device.py"), "--cpu-smoke",
                           "--bundle", str(built_bundle), "--images", str(images), "--repeats", "3",
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert all("overhead_slope_us" in r for r in result["overhead"])
    assert any("MACs ratio" in v for v in result["verdicts"])
