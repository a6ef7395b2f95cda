/*
 * edge_committee._C: the cascade gate on NumPy arrays (CPU) and on device pointers (CUDA).
 */
#include "bindings.h"

#include "cascadeGateCpu.h"
#ifdef EC_WITH_CUDA
#include "cascadeGateKernel.h"
#endif

#include <pybind11/numpy.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>

namespace py = pybind11;

namespace edge_committee
{
namespace python
{
namespace
{

//! Check one NumPy argument: kind ('f' or 'i'), item size, rank, C order, writeability.
void checkArray(py::array const& a, char const* name, char kind, std::vector<ssize_t> const& itemSizes, int32_t ndim,
    bool writeable)
{
    std::string const what = std::string("gate_step_cpu: '") + name + "'";
    bool sizeOk = false;
    for (ssize_t size : itemSizes)
    {
        sizeOk = sizeOk || a.itemsize() == size;
    }
    if (a.dtype().kind() != kind || !sizeOk)
    {
        std::string expected = kind == 'f' ? (itemSizes.size() > 1 ? "float32 or float16" : "float32") : "int32";
        throw py::type_error(what + " must be " + expected + ", got " + std::string(py::str(a.dtype())));
    }
    if (a.ndim() != ndim)
    {
        throw py::value_error(what + " must be " + std::to_string(ndim) + "-D, got " + std::to_string(a.ndim()) + "-D");
    }
    if (!(a.flags() & py::array::c_style))
    {
        throw py::value_error(what + " must be C-contiguous (use numpy.ascontiguousarray)");
    }
    if (writeable && !a.writeable())
    {
        throw py::value_error(what + " must be writeable: the gate updates it in place");
    }
}

py::array_t<int32_t> gateStepCpu(py::array probSum, py::array label, py::array conf, py::array exitStage,
    py::array flag, py::array active, py::array logits, int32_t stage, int32_t numStages, float threshold,
    int32_t confidence)
{
    checkArray(probSum, "prob_sum", 'f', {4}, 2, true);
    checkArray(label, "label", 'i', {4}, 1, true);
    checkArray(conf, "conf", 'f', {4}, 1, true);
    checkArray(exitStage, "exit_stage", 'i', {4}, 1, true);
    checkArray(flag, "flag", 'i', {4}, 1, true);
    checkArray(active, "active", 'i', {4}, 1, false);
    checkArray(logits, "logits", 'f', {4, 2}, 2, false);
    ssize_t const n = probSum.shape(0);
    ssize_t const c = probSum.shape(1);
    for (py::array const* a : {&label, &conf, &exitStage, &flag})
    {
        if (a->shape(0) != n)
        {
            throw py::value_error("gate_step_cpu: label, conf, exit_stage and flag must have prob_sum's "
                + std::to_string(n) + " rows");
        }
    }
    if (logits.shape(0) != active.shape(0) || logits.shape(1) != c)
    {
        throw py::value_error("gate_step_cpu: logits have shape (" + std::to_string(logits.shape(0)) + ", "
            + std::to_string(logits.shape(1)) + "), expected (" + std::to_string(active.shape(0)) + ", "
            + std::to_string(c) + ") for the active samples");
    }
    if (n > INT32_MAX || c > INT32_MAX || active.shape(0) > INT32_MAX)
    {
        throw py::value_error("gate_step_cpu: dimensions above 2^31 - 1 are not supported");
    }
    py::array_t<int32_t> survivors(active.shape(0));
    int32_t count = 0;

    gate::GateParams p;
    p.logits = logits.data();
    p.logitsType = logits.itemsize() == 2 ? gate::LogitsType::kHALF : gate::LogitsType::kFLOAT;
    p.active = static_cast<int32_t const*>(active.data());
    p.numActive = static_cast<int32_t>(active.shape(0));
    p.numClasses = static_cast<int32_t>(c);
    p.numSamples = static_cast<int32_t>(n);
    p.probSum = static_cast<float*>(probSum.mutable_data());
    p.label = static_cast<int32_t*>(label.mutable_data());
    p.conf = static_cast<float*>(conf.mutable_data());
    p.exitStage = static_cast<int32_t*>(exitStage.mutable_data());
    p.flag = static_cast<int32_t*>(flag.mutable_data());
    p.survivors = survivors.mutable_data();
    p.survivorCount = &count;
    p.stage = stage;
    p.numStages = numStages;
    p.threshold = threshold;
    p.confidence = static_cast<gate::ConfidenceKind>(confidence);

    char const* error = nullptr;
    {
        py::gil_scoped_release release;
        error = gate::cascadeGateCpu(p);
    }
    if (error != nullptr)
    {
        throw py::value_error(std::string("gate_step_cpu: ") + error);
    }
    survivors.resize({static_cast<ssize_t>(count)});
    return survivors;
}

#ifdef EC_WITH_CUDA

void checkCuda(cudaError_t status, char const* what)
{
    if (status != cudaSuccess)
    {
        throw std::runtime_error(std::string("gate_step_cuda: ") + what + ": " + cudaGetErrorName(status) + " ("
            + cudaGetErrorString(status) + ")");
    }
}

//!
//! \brief Workspaces owned by the module, one per (device, stream), zeroed once on their stream.
//!
//! A launch leaves its workspace zeroed, so launches in one stream can share it; different streams
//! get different workspaces because launches on them may overlap.
//!
class WorkspaceCache
{
public:
    std::pair<void*, size_t> get(size_t bytes, cudaStream_t stream)
    {
        int32_t device = 0;
        checkCuda(cudaGetDevice(&device), "cudaGetDevice");
        std::lock_guard<std::mutex> lock(mMutex);
        Entry& entry = mEntries[{device, reinterpret_cast<uintptr_t>(stream)}];
        if (entry.bytes < bytes)
        {
            size_t grown = entry.bytes == 0 ? 4096 : entry.bytes;
            while (grown < bytes)
            {
                grown *= 2;
            }
            if (entry.ptr != nullptr)
            {
                checkCuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
                cudaFree(entry.ptr);
                entry = Entry{};
            }
            checkCuda(cudaMalloc(&entry.ptr, grown), "cudaMalloc(workspace)");
            entry.bytes = grown;
            checkCuda(gate::cascadeGateWorkspaceReset(entry.ptr, grown, stream), "zeroing the workspace");
        }
        return {entry.ptr, entry.bytes};
    }

private:
    struct Entry
    {
        void* ptr{nullptr};
        size_t bytes{0};
    };
    std::mutex mMutex;
    std::map<std::pair<int32_t, uintptr_t>, Entry> mEntries;
};

WorkspaceCache& workspaceCache()
{
    static auto* cache = new WorkspaceCache(); // never destroyed: no CUDA calls at interpreter exit
    return *cache;
}

void gateStepCuda(uintptr_t logits, std::string const& logitsDtype, uintptr_t active, int32_t numActive,
    int32_t numClasses, int32_t numSamples, uintptr_t probSum, uintptr_t label, uintptr_t conf, uintptr_t exitStage,
    uintptr_t flag, uintptr_t survivors, uintptr_t survivorCount, int32_t stage, int32_t numStages, float threshold,
    int32_t confidence, uintptr_t stream, uintptr_t workspace, size_t workspaceBytes, int32_t fixRows,
    int32_t fixCapacity, uintptr_t fixGatherIndex, uintptr_t fixRealCount, uintptr_t fixSlot, uintptr_t fixBuckets,
    int32_t fixNumBuckets)
{
    gate::GateParams p;
    p.fix.rows = fixRows;
    p.fix.capacity = fixCapacity;
    p.fix.gatherIndex = reinterpret_cast<int32_t*>(fixGatherIndex);
    p.fix.realCount = reinterpret_cast<int32_t*>(fixRealCount);
    p.fix.slot = reinterpret_cast<unsigned long long const*>(fixSlot);
    p.fix.buckets = reinterpret_cast<int32_t const*>(fixBuckets);
    p.fix.numBuckets = fixNumBuckets;
    if (logitsDtype == "float32")
    {
        p.logitsType = gate::LogitsType::kFLOAT;
    }
    else if (logitsDtype == "float16")
    {
        p.logitsType = gate::LogitsType::kHALF;
    }
    else
    {
        throw py::value_error("gate_step_cuda: logits_dtype must be 'float32' or 'float16', got '" + logitsDtype + "'");
    }
    p.logits = reinterpret_cast<void const*>(logits);
    p.active = reinterpret_cast<int32_t const*>(active);
    p.numActive = numActive;
    p.numClasses = numClasses;
    p.numSamples = numSamples;
    p.probSum = reinterpret_cast<float*>(probSum);
    p.label = reinterpret_cast<int32_t*>(label);
    p.conf = reinterpret_cast<float*>(conf);
    p.exitStage = reinterpret_cast<int32_t*>(exitStage);
    p.flag = reinterpret_cast<int32_t*>(flag);
    p.survivors = reinterpret_cast<int32_t*>(survivors);
    p.survivorCount = reinterpret_cast<int32_t*>(survivorCount);
    p.stage = stage;
    p.numStages = numStages;
    p.threshold = threshold;
    p.confidence = static_cast<gate::ConfidenceKind>(confidence);
    if (char const* error = gate::validateGateParams(p))
    {
        throw py::value_error(std::string("gate_step_cuda: ") + error);
    }
    auto const cudaStream = reinterpret_cast<cudaStream_t>(stream);
    void* ws = reinterpret_cast<void*>(workspace);
    size_t wsBytes = workspaceBytes;
    if (ws != nullptr && wsBytes < gate::cascadeGateWorkspaceSize(numActive))
    {
        throw py::value_error("gate_step_cuda: workspace_bytes is below workspace_size(num_active)");
    }
    {
        py::gil_scoped_release release;
        if (ws == nullptr)
        {
            std::tie(ws, wsBytes) = workspaceCache().get(gate::cascadeGateWorkspaceSize(numActive), cudaStream);
        }
        checkCuda(gate::cascadeGateEnqueue(p, ws, wsBytes, cudaStream), "kernel launch");
    }
}

int32_t cudaDeviceCount()
{
    int32_t count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess)
    {
        cudaGetLastError(); // no driver or no device: report 0, clear the error
        return 0;
    }
    return count;
}

#endif // EC_WITH_CUDA

} // namespace

void bindGate(py::module_& m)
{
    m.def("gate_step_cpu", &gateStepCpu, py::arg("prob_sum"), py::arg("label"), py::arg("conf"),
        py::arg("exit_stage"), py::arg("flag"), py::arg("active"), py::arg("logits"), py::arg("stage"),
        py::arg("num_stages"), py::arg("threshold"), py::arg("confidence"),
        "One gate stage on NumPy arrays, in place (C++). prob_sum (N, C) float32, label/exit_stage/flag (N,) "
        "int32, conf (N,) float32, active (M,) int32, logits (M, C) float32/float16; confidence code 0/1/2. "
        "Returns the survivors' original indices (int32, stable order).");
#ifdef EC_WITH_CUDA
    m.def("gate_step_cuda", &gateStepCuda, py::arg("logits"), py::arg("logits_dtype"), py::arg("active"),
        py::arg("num_active"), py::arg("num_classes"), py::arg("num_samples"), py::arg("prob_sum"), py::arg("label"),
        py::arg("conf"), py::arg("exit_stage"), py::arg("flag"), py::arg("survivors"), py::arg("survivor_count"),
        py::arg("stage"), py::arg("num_stages"), py::arg("threshold"), py::arg("confidence"), py::arg("stream") = 0,
        py::arg("workspace") = 0, py::arg("workspace_bytes") = 0, py::arg("fix_rows") = 0, py::arg("fix_capacity") = 0,
        py::arg("fix_gather_index") = 0, py::arg("fix_real_count") = 0, py::arg("fix_slot") = 0,
        py::arg("fix_buckets") = 0, py::arg("fix_num_buckets") = 0,
        "One gate stage on device pointers (ints), enqueued on `stream` (a cudaStream_t as int; 0 = legacy "
        "default): exactly one kernel launch. workspace=0 uses a module-owned workspace per (device, stream). "
        "fix_rows > 0: the device runtime's survivor fix-up and next-stage conditional in the same launch "
        "(GateFix in cascadeGateCommon.h).");
    m.def("workspace_size", [](int32_t maxActive) { return gate::cascadeGateWorkspaceSize(maxActive); },
        py::arg("max_active"), "Bytes of gate workspace for up to max_active rows (must start zeroed).");
    m.def("cuda_device_count", &cudaDeviceCount, "Number of CUDA devices the runtime sees (0 without a driver).");
#endif
}

} // namespace python
} // namespace edge_committee
