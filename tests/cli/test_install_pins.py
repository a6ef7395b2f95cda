"""The README's install keeps the CPU torch it names: pip's resolution of the packages that depend on
torch, with the README's ``-c constraints.txt``, keeps torch at the README's version and pulls no
CUDA wheels. Resolution only (``pip install --dry-run --report``, ``--ignore-installed``); skipped
when pip cannot reach its index."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: the test extras that depend on torch (and once pulled a CUDA build through torchvision)
TORCH_DEPENDENTS = ("onnx2torch", "efficientnet-lite-pytorch")


def _readme_torch() -> str:
    versions = set(re.findall(r"torch==([\d.]+)", (ROOT / "README.md").read_text(encoding="utf-8")))
    assert len(versions) == 1, f"the README names torch versions {versions}"
    return versions.pop()


def _test_extras() -> list[str]:
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "extras_require":
            return list(ast.literal_eval(node.value)["test"])
    raise AssertionError("setup.py has no extras_require")


@pytest.mark.slow
def test_resolution_keeps_the_readmes_cpu_torch(tmp_path: Path):
    torch = _readme_torch()
    reqs = [r for r in _test_extras() if re.split(r"[<>=!~\[; ]", r)[0] in TORCH_DEPENDENTS]
    assert len(reqs) == len(TORCH_DEPENDENTS), reqs
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report",
           str(report), "-c", str(ROOT / "constraints.txt"), f"torch=={torch}", *reqs]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=ROOT)
    except subprocess.TimeoutExpired:
        pytest.skip("pip could not resolve within 240 s (no index reachable?)")
    if out.returncode != 0:
        if "ResolutionImpossible" in out.stderr or "conflict" in out.stderr.lower():
            pytest.fail(f"the README's pins cannot be resolved together: {out.stderr[-2000:]}")
        pytest.skip(f"pip cannot resolve here (offline?): {out.stderr.strip().splitlines()[-1:]}")
    installed = {i["metadata"]["name"].lower(): i["metadata"]["version"]
                 for i in json.loads(report.read_text())["install"]}
    assert installed["torch"].split("+")[0] == torch, installed["torch"]
    cuda = sorted(n for n in installed if n.startswith("nvidia-") or n.startswith("triton"))
    assert not cuda, f"CUDA wheels in the resolved set: {cuda}"
