"""TensorRT test fixtures: the recording fake installed as ``tensorrt``, a fake GPU, a tiny bundle.

No TensorRT builder installs here (design.md §5), so the build and run paths are tested against
``fake_trt`` and the names they use are checked against the real bindings by
``test_tensorrt_api_surface.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from trt_helpers import ORIN, install_fake, make_bundle  # noqa: E402


@pytest.fixture
def fake_trt_module(monkeypatch):
    """A fresh fake ``tensorrt`` (TensorRT 10.3) in ``sys.modules``; ``.knobs`` changes its behaviour."""
    return install_fake(monkeypatch)


@pytest.fixture
def gpu(monkeypatch):
    """This 'machine' has an Orin (sm87); change ``gpu.current`` to move the bundle to another GPU."""
    from edge_committee.backend.tensorrt import gpu as gpu_module

    class Machine:
        current = ORIN

    monkeypatch.setattr(gpu_module, "gpu_info", lambda device=0: Machine.current)
    from edge_committee.backend.tensorrt import runner

    class DeviceMemory:  # the execution contexts' shared device memory, which torch would allocate on a GPU
        def __init__(self, nbytes: int, device: int) -> None:
            self.nbytes = nbytes

        def data_ptr(self) -> int:
            return 0xD000

    monkeypatch.setattr(runner.TensorRTMember, "_allocate", staticmethod(DeviceMemory))
    return Machine


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return make_bundle(tmp_path / "bundle")
