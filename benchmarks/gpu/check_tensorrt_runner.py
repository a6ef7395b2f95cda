"""What the TensorRT runner can show on a GPU machine that has the lean runtime but no TensorRT builder.

The project's GPU machine (H200, CUDA 13) has no TensorRT and no registry access; the lean runtime
wheels (``tensorrt-lean-cu13-bindings`` + ``-libs``, 44 MB) can be carried there and installed with
``--no-index``. No engine can be built there (no builder), so no engine is run: this checks the
parts of the load path that need a real GPU.

1. ``gpu_info`` (cuda-python, then the ctypes driver path) agrees with ``torch.cuda``.
2. The lean runtime starts a ``Runtime`` on the GPU (``start_runtime``), which it cannot without one.
3. A file that is not an engine: TensorRT's own deserializer refuses it (None, error logged) and
   ``TensorRTMember.activate`` reports that in one line (on a CPU machine this is unreachable).
4. An engine whose fingerprint names another GPU is refused naming this GPU (``EngineMismatchError``).

    PYTHONPATH=/tmp/site python3 benchmarks/gpu/check_tensorrt_runner.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edge_committee.backend.tensorrt import compat, gpu  # noqa: E402
from edge_committee.backend.tensorrt.fingerprint import BuildOptions, EngineMismatchError, Fingerprint  # noqa: E402
from edge_committee.backend.tensorrt.runner import EngineLoadError, TensorRTMember, start_runtime  # noqa: E402


def check(name: str, ok: bool, detail: str) -> bool:
    print(f"--- {name}: {'ok' if ok else 'FAILED'}: {detail}")
    return ok


def main() -> int:
    import torch

    trt = compat.import_runtime()
    print(f"TensorRT module {trt.__name__} {trt.__version__}; torch {torch.__version__} cuda {torch.version.cuda}")
    props = torch.cuda.get_device_properties(0)
    want = gpu.GpuInfo(props.name, f"{props.major}.{props.minor}")
    ok = check("gpu_info", gpu.gpu_info(0) == want and gpu._via_ctypes(0) == want, f"{gpu.gpu_info(0)} vs torch {want}")
    logger = compat.capturing_logger(trt)
    runtime = start_runtime(trt, logger)
    ok &= check("runtime", runtime is not None and not logger.errors(), f"started, {len(logger.messages)} messages")
    with tempfile.TemporaryDirectory() as tmp:
        junk = Path(tmp) / "junk.engine"
        junk.write_bytes(b"\x08\x07not a TensorRT plan" * 64)
        try:
            TensorRTMember(junk, trt=trt).activate()
            ok &= check("corrupt engine", False, "accepted")
        except EngineLoadError as exc:
            ok &= check("corrupt engine", "could not deserialize" in str(exc) and "\n" not in str(exc), str(exc))
        other = Fingerprint(trt.__version__, "Orin", "8.7", "0" * 64, BuildOptions().to_dict())
        try:
            TensorRTMember(junk, fingerprint=other, trt=trt).activate()
            ok &= check("fingerprint", False, "accepted")
        except EngineMismatchError as exc:
            ok &= check("fingerprint", want.name in str(exc) and "sm87" in str(exc), str(exc))
    print("TENSORRT RUNNER CHECK:", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
