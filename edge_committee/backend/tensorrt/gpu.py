"""The GPU an engine is built for or run on: its name and compute capability.

Engines are tied to the GPU they were built on, so both go into an engine's fingerprint. Read
through the CUDA driver API: cuda-python (``cuda.bindings.driver``) when installed, else the
driver library itself via ctypes (``libcuda.so.1`` ships with every NVIDIA driver and JetPack, so
a Jetson with TensorRT from JetPack needs nothing more).
"""

from __future__ import annotations

import ctypes
import dataclasses

from edge_committee.errors import EdgeCommitteeError

_CC_MAJOR, _CC_MINOR = 75, 76  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_{MAJOR,MINOR}


@dataclasses.dataclass(frozen=True)
class GpuInfo:
    """One CUDA device: ``name`` as the driver reports it (e.g. ``"Orin"``) and ``compute_capability`` ("8.7")."""

    name: str
    compute_capability: str

    @property
    def sm(self) -> str:
        """``"sm87"``: the compute capability as it appears in engine file names."""
        return "sm" + self.compute_capability.replace(".", "")


class NoGpuError(EdgeCommitteeError):
    """No CUDA device can be queried on this machine."""


def _via_cuda_python(device: int) -> GpuInfo | None:
    try:
        from cuda.bindings import driver
    except ImportError:
        return None
    try:
        (err,) = driver.cuInit(0)
    except Exception as exc:  # cuda-bindings 13 raises (DynamicLibNotFoundError) when libcuda is absent
        raise NoGpuError(f"CUDA cannot start on this machine ({type(exc).__name__}: {exc}): "
                         "no NVIDIA GPU or driver") from None
    if int(err) != 0:
        raise NoGpuError(f"CUDA cannot start on this machine (cuInit error {int(err)}): no NVIDIA GPU or driver")
    err, dev = driver.cuDeviceGet(device)
    if int(err) != 0:
        raise NoGpuError(f"CUDA device {device} does not exist (cuDeviceGet error {int(err)})")
    _, name = driver.cuDeviceGetName(256, dev)
    attr = driver.CUdevice_attribute
    _, major = driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev)
    _, minor = driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev)
    return GpuInfo(name.split(b"\0")[0].decode(errors="replace").strip(), f"{major}.{minor}")


def _via_ctypes(device: int) -> GpuInfo:
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        raise NoGpuError("no NVIDIA driver on this machine (libcuda.so.1 not found): "
                         "TensorRT needs an NVIDIA GPU") from None
    err = cuda.cuInit(0)
    if err != 0:
        raise NoGpuError(f"CUDA cannot start on this machine (cuInit error {err}): no NVIDIA GPU visible")
    dev = ctypes.c_int()
    if cuda.cuDeviceGet(ctypes.byref(dev), device) != 0:
        raise NoGpuError(f"CUDA device {device} does not exist on this machine")
    name = ctypes.create_string_buffer(256)
    cuda.cuDeviceGetName(name, 256, dev)
    major, minor = ctypes.c_int(), ctypes.c_int()
    cuda.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, dev)
    cuda.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, dev)
    return GpuInfo(name.value.decode(errors="replace").strip(), f"{major.value}.{minor.value}")


def gpu_info(device: int = 0) -> GpuInfo:
    """Name and compute capability of CUDA device ``device``; :class:`NoGpuError` without one."""
    return _via_cuda_python(device) or _via_ctypes(device)
