"""Plugin test fixtures: TensorRT headers from the kernel-lens wheel, and a cached plugin build.

No NVIDIA package ships TensorRT headers; the MIT ``kernel-lens`` wheel vendors TensorRT's
Apache-2.0 headers. They are downloaded at test time (never committed); without network or nvcc
the plugin tests skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import _build_ext

BUILD_CACHE = Path(os.environ.get("EC_TEST_BUILD_CACHE", Path(tempfile.gettempdir()) / "edge_committee-tests"))
#: One architecture keeps the test build short; the GPU machine and Jetson override it.
TEST_CUDA_ARCHS = os.environ.get("EC_TEST_CUDA_ARCHS", "90")


def _find_header_dir(folder: Path) -> Path | None:
    hits = sorted(folder.rglob("NvInferRuntime.h"))
    return hits[0].parent if hits else None


def tensorrt_headers() -> Path:
    """A folder with NvInferRuntime.h: $EC_TEST_TENSORRT_HEADERS, else unpacked from the kernel-lens wheel."""
    explicit = os.environ.get("EC_TEST_TENSORRT_HEADERS")
    if explicit:
        found = _find_header_dir(Path(explicit))
        if found is None:
            pytest.fail(f"EC_TEST_TENSORRT_HEADERS={explicit} holds no NvInferRuntime.h")
        return found
    folder = BUILD_CACHE / "kernel-lens"
    found = _find_header_dir(folder / "unpacked") if folder.is_dir() else None
    if found is not None:
        return found
    folder.mkdir(parents=True, exist_ok=True)
    wheels = sorted(folder.glob("kernel_lens-*.whl"))
    if not wheels:
        cmd = [sys.executable, "-m", "pip", "download", "kernel-lens", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", str(folder)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"could not download the kernel-lens wheel for TensorRT headers: {exc}")
        wheels = sorted(folder.glob("kernel_lens-*.whl"))
        if proc.returncode != 0 or not wheels:
            pytest.skip(f"could not download the kernel-lens wheel for TensorRT headers: {proc.stderr.strip()[-300:]}")
    with zipfile.ZipFile(wheels[-1]) as wheel:
        members = [m for m in wheel.namelist() if m.endswith(".h")]
        wheel.extractall(folder / "unpacked", members)
    found = _find_header_dir(folder / "unpacked")
    if found is None:
        pytest.skip(f"{wheels[-1].name} holds no NvInferRuntime.h")
    return found


@pytest.fixture(scope="session")
def trt_headers() -> Path:
    return tensorrt_headers()


@pytest.fixture(scope="session")
def plugin_build(trt_headers) -> dict[str, Path]:
    """libedge_committee_plugins.so and the C++ harness, built against ``trt_headers`` (cached)."""
    try:
        _build_ext.find_cmake()
    except _build_ext.NativeBuildError as exc:
        pytest.skip(str(exc))
    if shutil.which("nvcc") is None and not Path("/usr/local/cuda/bin/nvcc").exists():
        pytest.skip("the plugin needs nvcc (the CUDA kernel), which is not installed")
    found = _build_ext.cmake_build_cached(
        BUILD_CACHE, "plugin", ("plugin", "plugin_test"), cuda="ON", tensorrt="ON", python=False, tests=True,
        cuda_archs=TEST_CUDA_ARCHS, tensorrt_root=str(trt_headers), log=lambda line: None,
    )
    return found
