"""Gate test fixtures: the native extension (built for the tests when it is not installed)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
for path in (str(ROOT), str(Path(__file__).resolve().parent)):  # _build_ext, gate_cases
    if path not in sys.path:
        sys.path.insert(0, path)

import _build_ext
from edge_committee.gate import _ext

#: Where test builds are cached (keyed by a hash of plugins/ and cmake/).
BUILD_CACHE = Path(os.environ.get("EC_TEST_BUILD_CACHE", Path(tempfile.gettempdir()) / "edge_committee-tests"))


def build_extension(cuda: bool) -> Path:
    """Build edge_committee._C for the tests (cached); skip when cmake or pybind11 is missing."""
    try:
        _build_ext.find_cmake()
        _build_ext.pybind11_cmake_dir()
    except _build_ext.NativeBuildError as exc:
        pytest.skip(f"edge_committee._C is not built and cannot be built here: {exc}")
    found = _build_ext.cmake_build_cached(
        BUILD_CACHE, "ext-cuda" if cuda else "ext-cpu", ("extension",),
        cuda="ON" if cuda else "OFF", tensorrt="OFF", python=True, log=lambda line: None,
    )
    return found["extension"]


def use_extension(path: Path):
    os.environ["EC_EXTENSION_PATH"] = str(path)
    _ext.reset()
    module = _ext.load()
    assert module is not None, f"built {path} but it does not import: {_ext.error()}"
    return module


@pytest.fixture(scope="session")
def load_native_build():
    """A function: (cuda: bool) -> the extension module built for the tests and now in use."""
    return lambda cuda: use_extension(build_extension(cuda=cuda))


@pytest.fixture(scope="session")
def native_ext():
    """The extension module: the installed / EC_EXTENSION_PATH one, else a CPU-only test build."""
    module = _ext.load()
    if module is not None:
        return module
    if os.environ.get("EC_EXTENSION_PATH"):
        pytest.fail(f"EC_EXTENSION_PATH={os.environ['EC_EXTENSION_PATH']} does not import: {_ext.error()}")
    return use_extension(build_extension(cuda=False))
