"""Build ``edge_committee._C`` with CUDA for the GPU checks (the tests' cached build) and print where it is.

    python3 benchmarks/gpu/build_extension.py ARCHS ENV_FILE

``ARCHS``: CUDA architectures, e.g. ``90`` or ``87``; ``auto`` asks PyTorch for this GPU's. Appends
``export EC_EXTENSION_PATH=...`` to ``ENV_FILE`` (the check script sources it).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def gpu_arch() -> str:
    """This GPU's architecture as CMake spells it (``90`` on an H100/H200, ``87`` on a Jetson Orin)."""
    import torch

    major, minor = torch.cuda.get_device_capability(0)
    return f"{major}{minor}"


def main(archs: str, env_file: str) -> int:
    import _build_ext

    archs = gpu_arch() if archs == "auto" else archs
    found = _build_ext.cmake_build_cached("/tmp/ec-test-build", "ext-cuda", ("extension",), cuda="ON",
                                          tensorrt="OFF", python=True, cuda_archs=archs)
    print(f"archs {archs}: {found}")
    with open(env_file, "a") as f:
        f.write(f"export EC_EXTENSION_PATH={found['extension']}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
