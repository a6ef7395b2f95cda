"""The device runtime's two small CUDA kernels, compiled at run time with NVRTC through ``cuda.bindings``.

- ``ec_fix_and_set``: the CUDA twin of :func:`.gate.fix_survivors_torch` (one launch, one block),
  fused with the conditional setter of the next stage: when the stage runs inside a conditional
  cascade graph (:mod:`.graph`), its *slot* holds that graph's handle for the next stage and its kind,
  and the kernel's last step calls ``cudaGraphSetConditional`` with ``real > 0`` (IF) or the survivors'
  bucket index (SWITCH, :func:`.buckets.switch_value`); a zero handle (the host loop) sets nothing.
  The handle is read from device memory because the stage graph is captured once and shared by the
  conditional graphs of every first bucket; each graph writes its handles into the slots first
  (``ec_copy_slots``, one node per launch).
- ``ec_set_condition``: the same setter as a kernel node of its own (``EC_GRAPH_SETTER=node``: one
  more node per stage; kept to tell a setter problem from a fused-kernel problem on a first GPU).

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

// IF (kind 1): real > 0; SWITCH (kind 2): the index of the smallest bucket >= real, nb (no case) when 0
__device__ unsigned int ec_condition_value(int real, unsigned long long kind, const int* buckets, int nb)
{
    if (kind != 2ull) return real > 0 ? 1u : 0u;
    if (real <= 0) return (unsigned int)nb;
    for (int i = 0; i < nb; ++i)
        if (buckets[i] >= real) return (unsigned int)i;
    return (unsigned int)nb;
}

// slot: {handle, kind} of the next stage's conditional node in the graph being launched; null or a
// zero handle (host loop): nothing is set
extern "C" __global__ void ec_fix_and_set(const int* src, const int* count, int b, int capacity,
                                          int* act_out, int* gidx_out, int* real_out,
                                          const unsigned long long* slot, const int* buckets, int nb)
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
    if (threadIdx.x == 0)
    {
        real_out[0] = total;
        const unsigned long long handle = slot ? slot[0] : 0ull;
        if (handle != 0ull) cudaGraphSetConditional(handle, ec_condition_value(total, slot[1], buckets, nb));
    }
}

extern "C" __global__ void ec_copy_slots(const unsigned long long* src, unsigned long long* dst, int n)
{
    for (int i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
}

extern "C" __global__ void ec_set_condition(ec_cond_handle handle, const int* real_count, unsigned long long kind,
                                            const int* buckets, int nb)
{
    if (threadIdx.x == 0 && blockIdx.x == 0)
        cudaGraphSetConditional(handle, ec_condition_value(real_count[0], kind, buckets, nb));
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
        get = lambda name: check(cu.cuModuleGetFunction(self.module, name.encode()), f"cuModuleGetFunction({name})")
        self.fix, self.copy_slots, self.set_condition = get("ec_fix_and_set"), get("ec_copy_slots"), get(
            "ec_set_condition")

    def fix_survivors(self, src, count, b: int, capacity: int, act_out, gidx_out, real_out, pos=None,
                      stream=None, slot=None, buckets=None) -> None:
        """Launch ``ec_fix_and_set`` on ``stream`` (arguments as :func:`.gate.fix_survivors_torch`).

        ``slot``: a (2,) int64 device tensor ``{handle, kind}`` read when the kernel runs (see the module
        docstring); ``buckets``: the runtime's buckets as an int32 device tensor (SWITCH values).
        """
        ptr = lambda t: 0 if t is None else t.data_ptr()  # noqa: E731
        params, keep = pack_args(
            (ptr(src), ctypes.c_void_p), (count.data_ptr(), ctypes.c_void_p),
            (int(b), ctypes.c_int), (int(capacity), ctypes.c_int), (act_out.data_ptr(), ctypes.c_void_p),
            (gidx_out.data_ptr(), ctypes.c_void_p), (real_out.data_ptr(), ctypes.c_void_p),
            (ptr(slot), ctypes.c_void_p), (ptr(buckets), ctypes.c_void_p),
            (0 if buckets is None else int(buckets.numel()), ctypes.c_int),
        )
        handle = 0 if stream is None else stream.cuda_stream
        check(self.cu.cuLaunchKernel(self.fix, 1, 1, 1, FIX_THREADS, 1, 1, 0, self.cu.CUstream(handle),
                                     ctypes.addressof(params), 0), "cuLaunchKernel(ec_fix_and_set)")
        del keep


@functools.lru_cache(maxsize=None)
def kernels_for(device_index: int, capability: tuple[int, int]) -> DeviceKernels:
    """The kernels for one device, compiled and loaded once per process."""
    return DeviceKernels(capability)
