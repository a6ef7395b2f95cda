"""The device runtime's two small CUDA kernels, compiled at run time with NVRTC through ``cuda.bindings``.

- ``ec_fix_survivors``: the CUDA twin of :func:`.gate.fix_survivors_torch` (one launch, one block).
- ``ec_set_condition``: sets a graph's conditional handle to ``real_count[0] > 0`` with the device
  function ``cudaGraphSetConditional``; it is a kernel node of the conditional cascade graph
  (:mod:`.graph`), never launched on its own.

``cudaGraphSetConditional`` is declared here rather than taken from ``cuda_device_runtime_api.h``, so
NVRTC needs no include path; the call stays an external symbol that the driver resolves when the
module is loaded (as in any nvcc-built CUDA program; no relocatable device code is needed). NVRTC
ships with every CUDA build of PyTorch (the ``nvidia-cuda-nvrtc`` wheel) and with JetPack.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

from edge_committee._lazy import require

SOURCE = r"""
typedef unsigned long long ec_cond_handle;
extern "C" __device__ void cudaGraphSetConditional(ec_cond_handle handle, unsigned int value);

extern "C" __global__ void ec_fix_survivors(const int* src, const int* count, int b, int capacity,
                                            int* act_out, int* gidx_out, int* real_out)
{
    __shared__ int total;
    if (threadIdx.x == 0) total = 0;
    const int n = count[0];
    __syncthreads();
    int mine = 0;
    for (int j = threadIdx.x; j < b; j += blockDim.x)
    {
        const int v = src ? src[j] : j;  // src may alias act_out: entry j is read, then written, by one thread
        const bool valid = j < n && v >= 0 && v < capacity;
        act_out[j] = valid ? v : capacity + j;
        gidx_out[j] = valid ? v : 0;
        mine += valid ? 1 : 0;
    }
    atomicAdd(&total, mine);
    __syncthreads();
    if (threadIdx.x == 0) real_out[0] = total;
}

extern "C" __global__ void ec_set_condition(ec_cond_handle handle, const int* real_count)
{
    if (threadIdx.x == 0 && blockIdx.x == 0) cudaGraphSetConditional(handle, real_count[0] > 0 ? 1u : 0u);
}
"""

FIX_THREADS = 256


def driver():
    """``cuda.bindings.driver`` (or ``cuda.cuda`` of cuda-python < 12.6)."""
    try:
        return require("cuda.bindings.driver")
    except Exception:  # noqa: BLE001 - try the old module name before reporting the new one
        try:
            import cuda.cuda as old  # type: ignore[import-not-found]

            return old
        except ImportError:
            return require("cuda.bindings.driver")


def _nvrtc():
    try:
        return require("cuda.bindings.nvrtc")
    except Exception:  # noqa: BLE001
        try:
            import cuda.nvrtc as old  # type: ignore[import-not-found]

            return old
        except ImportError:
            return require("cuda.bindings.nvrtc")


def check(result: tuple, what: str) -> Any:
    """Unpack a cuda.bindings result ``(status, *values)``; RuntimeError naming ``what`` if it failed."""
    status, values = result[0], result[1:]
    if int(status) != 0:
        raise RuntimeError(f"{what} failed: {getattr(status, 'name', status)}")
    return values[0] if len(values) == 1 else values


def compile_source(source: str, capability: tuple[int, int]) -> bytes:
    """Compile ``source`` with NVRTC: a cubin for ``sm_XY``, else PTX for ``compute_XY`` (driver JIT)."""
    nvrtc = _nvrtc()
    errors = []
    cc = f"{capability[0]}{capability[1]}"
    for arch, getter in ((f"sm_{cc}", "CUBIN"), (f"compute_{cc}", "PTX")):
        prog = check(nvrtc.nvrtcCreateProgram(source.encode(), b"ec_device_kernels.cu", 0, [], []),
                     "nvrtcCreateProgram")
        opts = [f"--gpu-architecture={arch}".encode(), b"-default-device", b"--std=c++17"]
        status = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)[0]
        if int(status) == 0:
            size = check(getattr(nvrtc, f"nvrtcGet{getter}Size")(prog), f"nvrtcGet{getter}Size")
            image = b" " * size
            check(getattr(nvrtc, f"nvrtcGet{getter}")(prog, image), f"nvrtcGet{getter}")
            nvrtc.nvrtcDestroyProgram(prog)
            return image
        size = check(nvrtc.nvrtcGetProgramLogSize(prog), "nvrtcGetProgramLogSize")
        log = b" " * size
        nvrtc.nvrtcGetProgramLog(prog, log)
        nvrtc.nvrtcDestroyProgram(prog)
        errors.append(f"{arch}: {getattr(status, 'name', status)} {log.decode(errors='replace').strip()}")
    raise RuntimeError("NVRTC could not compile the device runtime's kernels: " + "; ".join(errors))


def pack_args(*args: tuple[Any, type]) -> tuple[Any, list]:
    """(void** array, keep-alive list) for ``cuLaunchKernel`` / kernel nodes from (value, ctypes type) pairs."""
    values = [ctype(value) for value, ctype in args]
    array = (ctypes.c_void_p * len(values))(*[ctypes.addressof(v) for v in values])
    return array, values


class DeviceKernels:
    """The compiled kernels for the current CUDA context (the device PyTorch uses).

    Args:
        capability: the device's compute capability, e.g. (9, 0).
    """

    def __init__(self, capability: tuple[int, int]) -> None:
        cu = driver()
        self.cu = cu
        image = compile_source(SOURCE, capability)
        self.module = check(cu.cuModuleLoadData(image), "cuModuleLoadData (device runtime kernels)")
        self.fix = check(cu.cuModuleGetFunction(self.module, b"ec_fix_survivors"), "cuModuleGetFunction")
        self.set_condition = check(cu.cuModuleGetFunction(self.module, b"ec_set_condition"), "cuModuleGetFunction")

    def fix_survivors(self, src, count, b: int, capacity: int, act_out, gidx_out, real_out, pos=None,
                      stream=None) -> None:
        """Launch ``ec_fix_survivors`` on ``stream`` (same arguments as :func:`.gate.fix_survivors_torch`)."""
        params, keep = pack_args(
            (0 if src is None else src.data_ptr(), ctypes.c_void_p), (count.data_ptr(), ctypes.c_void_p),
            (int(b), ctypes.c_int), (int(capacity), ctypes.c_int), (act_out.data_ptr(), ctypes.c_void_p),
            (gidx_out.data_ptr(), ctypes.c_void_p), (real_out.data_ptr(), ctypes.c_void_p),
        )
        handle = 0 if stream is None else stream.cuda_stream
        check(self.cu.cuLaunchKernel(self.fix, 1, 1, 1, FIX_THREADS, 1, 1, 0, self.cu.CUstream(handle),
                                     ctypes.addressof(params), 0), "cuLaunchKernel(ec_fix_survivors)")
        del keep


@functools.lru_cache(maxsize=None)
def kernels_for(device_index: int, capability: tuple[int, int]) -> DeviceKernels:
    """The kernels for one device, compiled and loaded once per process."""
    return DeviceKernels(capability)
