/*
 * edge_committee: a harness for libedge_committee_plugins.so without TensorRT libraries.
 *
 * dlopens the library like IPluginRegistry::loadLibrary does (getCreators, setLoggerFinder), checks the
 * creator and the plugin (identity, fields, serialization round trip, validation, types and formats),
 * and, when a CUDA device is present, runs onShapeChange + enqueue over a 3-stage cascade and compares
 * every output with the C++ CPU gate. Exit code 0 = all checks passed.
 *
 * Usage: cascadeGatePluginTest /path/to/libedge_committee_plugins.so [--quick]   (--quick: small cascades only)
 */
#include "NvInferRuntime.h"

#include "cascadeGateCpu.h"

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

using namespace nvinfer1;

namespace
{

int32_t gFailures = 0;

void check(bool ok, std::string const& what)
{
    if (!ok)
    {
        ++gFailures;
        std::printf("FAIL: %s\n", what.c_str());
    }
}

class Logger : public ILogger
{
public:
    void log(Severity severity, AsciiChar const* msg) noexcept override
    {
        if (severity <= Severity::kWARNING)
        {
            ++mMessages;
            std::printf("  [plugin log] %s\n", msg);
        }
    }
    int32_t mMessages{0};
};

class LoggerFinder : public ILoggerFinder
{
public:
    ILogger* findLogger() noexcept override
    {
        return &mLogger;
    }
    Logger mLogger;
};

struct Fields
{
    float threshold;
    int32_t stage;
    int32_t numStages;
    int32_t confidence;
};

IPluginV3* create(IPluginCreatorV3One* creator, Fields const& f, bool withThreshold = true)
{
    std::vector<PluginField> fields;
    if (withThreshold)
    {
        fields.emplace_back("threshold", &f.threshold, PluginFieldType::kFLOAT32, 1);
    }
    fields.emplace_back("stage", &f.stage, PluginFieldType::kINT32, 1);
    fields.emplace_back("num_stages", &f.numStages, PluginFieldType::kINT32, 1);
    fields.emplace_back("confidence", &f.confidence, PluginFieldType::kINT32, 1);
    PluginFieldCollection fc{static_cast<int32_t>(fields.size()), fields.data()};
    return creator->createPlugin("gate", &fc, TensorRTPhase::kBUILD);
}

bool readFields(IPluginV3* plugin, Fields& out)
{
    auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    PluginFieldCollection const* fc = runtime->getFieldsToSerialize();
    if (fc == nullptr || fc->nbFields != 4)
    {
        return false;
    }
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        std::string const name = fc->fields[i].name;
        if (name == "threshold" && fc->fields[i].type == PluginFieldType::kFLOAT32)
        {
            out.threshold = *static_cast<float const*>(fc->fields[i].data);
        }
        else if (name == "stage" && fc->fields[i].type == PluginFieldType::kINT32)
        {
            out.stage = *static_cast<int32_t const*>(fc->fields[i].data);
        }
        else if (name == "num_stages" && fc->fields[i].type == PluginFieldType::kINT32)
        {
            out.numStages = *static_cast<int32_t const*>(fc->fields[i].data);
        }
        else if (name == "confidence" && fc->fields[i].type == PluginFieldType::kINT32)
        {
            out.confidence = *static_cast<int32_t const*>(fc->fields[i].data);
        }
        else
        {
            return false;
        }
    }
    return true;
}

void checkCreatorAndPlugin(IPluginCreatorV3One* creator, Logger& logger)
{
    check(std::strcmp(creator->getPluginName(), "CascadeGate") == 0, "creator name");
    check(std::strcmp(creator->getPluginVersion(), "1") == 0, "creator version");
    check(std::strcmp(creator->getPluginNamespace(), "edge_committee") == 0, "creator namespace");
    PluginFieldCollection const* names = creator->getFieldNames();
    char const* expected[] = {"threshold", "stage", "num_stages", "confidence"};
    check(names != nullptr && names->nbFields == 4, "creator advertises 4 fields");
    for (int32_t i = 0; names != nullptr && i < names->nbFields && i < 4; ++i)
    {
        check(std::strcmp(names->fields[i].name, expected[i]) == 0, std::string("field ") + expected[i]);
    }

    Fields const f{0.625F, 1, 3, 2};
    IPluginV3* plugin = create(creator, f);
    check(plugin != nullptr, "createPlugin with valid fields");
    if (plugin == nullptr)
    {
        return;
    }
    auto* core = static_cast<IPluginV3OneCore*>(plugin->getCapabilityInterface(PluginCapabilityType::kCORE));
    check(std::strcmp(core->getPluginName(), "CascadeGate") == 0, "plugin name");
    check(std::strcmp(core->getPluginVersion(), "1") == 0, "plugin version");
    check(std::strcmp(core->getPluginNamespace(), "edge_committee") == 0, "plugin namespace");

    Fields back{};
    check(readFields(plugin, back), "getFieldsToSerialize has the 4 typed fields");
    check(back.threshold == f.threshold && back.stage == f.stage && back.numStages == f.numStages
            && back.confidence == f.confidence,
        "serialized fields equal the creation fields");
    IPluginV3* again = create(creator, back);
    Fields back2{};
    check(again != nullptr && readFields(again, back2) && back2.threshold == f.threshold && back2.stage == f.stage,
        "round trip through the serialized fields");
    delete again;

    auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    check(std::strcmp(build->getInterfaceInfo().kind, "PLUGIN_V3ONE_BUILD") == 0
            && build->getInterfaceInfo().major == 2,
        "build capability is IPluginV3OneBuildV2");
    check(static_cast<IPluginV3OneBuildV2*>(build)->getAliasedInput(0) == 2
            && static_cast<IPluginV3OneBuildV2*>(build)->getAliasedInput(5) == -1,
        "aliasing: prob_sum_out -> prob_sum, survivors not aliased");
    check(build->getNbOutputs() == 7, "7 outputs");
    DataType inTypes[7] = {DataType::kHALF, DataType::kINT32, DataType::kFLOAT, DataType::kINT32, DataType::kFLOAT,
        DataType::kINT32, DataType::kINT32};
    DataType outTypes[7];
    check(build->getOutputDataTypes(outTypes, 7, inTypes, 7) == 0, "getOutputDataTypes");
    DataType const expectedOut[7] = {DataType::kFLOAT, DataType::kINT32, DataType::kFLOAT, DataType::kINT32,
        DataType::kINT32, DataType::kINT32, DataType::kINT32};
    for (int32_t i = 0; i < 7; ++i)
    {
        check(outTypes[i] == expectedOut[i], "output type " + std::to_string(i));
        check(outTypes[i] != DataType::kBOOL && outTypes[i] != DataType::kUINT8, "no BOOL/UINT8 output");
    }
    DynamicPluginTensorDesc io[14]{};
    for (int32_t i = 0; i < 14; ++i)
    {
        io[i].desc.format = TensorFormat::kLINEAR;
        io[i].desc.type = i < 7 ? inTypes[i] : expectedOut[i - 7];
    }
    for (int32_t pos = 0; pos < 14; ++pos)
    {
        check(build->supportsFormatCombination(pos, io, 7, 7), "supports position " + std::to_string(pos));
    }
    io[0].desc.type = DataType::kINT8;
    check(!build->supportsFormatCombination(0, io, 7, 7), "rejects int8 logits");
    io[8].desc.type = DataType::kBOOL;
    check(!build->supportsFormatCombination(8, io, 7, 7), "rejects a BOOL label output");
    delete plugin;

    int32_t const before = logger.mMessages;
    check(create(creator, Fields{0.5F, 3, 3, 0}) == nullptr, "rejects stage >= num_stages");
    check(create(creator, Fields{0.5F, 0, 3, 7}) == nullptr, "rejects an unknown confidence code");
    check(create(creator, Fields{0.5F, 0, 3, 0}, false) == nullptr, "requires threshold before the last stage");
    check(logger.mMessages >= before + 3, "validation errors are logged through the logger finder");
    IPluginV3* lastStage = create(creator, Fields{0.F, 2, 3, 0}, false);
    check(lastStage != nullptr, "threshold is optional at the last stage");
    delete lastStage;

    char const margin[] = "margin";
    int32_t const stage = 0;
    int32_t const numStages = 2;
    float const threshold = 0.25F;
    PluginField textFields[] = {PluginField("threshold", &threshold, PluginFieldType::kFLOAT32, 1),
        PluginField("stage", &stage, PluginFieldType::kINT32, 1),
        PluginField("num_stages", &numStages, PluginFieldType::kINT32, 1),
        PluginField("confidence", margin, PluginFieldType::kCHAR, static_cast<int32_t>(sizeof(margin))),
        PluginField("plugin_version", "1", PluginFieldType::kCHAR, 2)};
    PluginFieldCollection textFc{5, textFields};
    IPluginV3* named = creator->createPlugin("gate", &textFc, TensorRTPhase::kRUNTIME);
    Fields namedBack{};
    check(named != nullptr && readFields(named, namedBack) && namedBack.confidence == 1,
        "confidence given as a string name; unknown fields ignored");
    delete named;
}

#define CUDA_OK(call) check((call) == cudaSuccess, #call)

//! One 3-stage cascade through the plugin's enqueue, compared with the CPU gate after every stage.
void runCascade(IPluginCreatorV3One* creator, int32_t numSamples, int32_t numClasses, bool half, bool aliased,
    bool callShapeChange, uint32_t seed)
{
    std::string const tag = "N=" + std::to_string(numSamples) + " C=" + std::to_string(numClasses)
        + (half ? " fp16" : " fp32") + (aliased ? " aliased" : " copied") + (callShapeChange ? "" : " no-onShapeChange");
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.F, 3.F);
    int32_t const numStages = 3;
    float const thresholds[numStages] = {0.9F, 0.6F, 0.F};
    int32_t const confidence = static_cast<int32_t>(seed % 3);
    float const entropyThresholds[numStages] = {-0.05F, -0.8F, 0.F};

    size_t const nc = static_cast<size_t>(numSamples) * numClasses;
    // Host state of the CPU reference.
    std::vector<float> probSum(nc, 0.F);
    std::vector<int32_t> label(numSamples, -1);
    std::vector<float> conf(numSamples, NAN);
    std::vector<int32_t> exitStage(numSamples, -1);
    std::vector<int32_t> flag(numSamples, 0);
    std::vector<int32_t> active(numSamples);
    for (int32_t i = 0; i < numSamples; ++i)
    {
        active[i] = i;
    }

    // Device state: inputs (in*) and outputs (out*); with `aliased` the outputs are the inputs.
    size_t const stateBytes[5] = {nc * 4, numSamples * 4U, numSamples * 4U, numSamples * 4U, numSamples * 4U};
    void const* hostState[5] = {probSum.data(), label.data(), conf.data(), exitStage.data(), flag.data()};
    void* dIn[5];
    void* dOut[5];
    for (int32_t k = 0; k < 5; ++k)
    {
        CUDA_OK(cudaMalloc(&dIn[k], stateBytes[k]));
        CUDA_OK(cudaMemcpy(dIn[k], hostState[k], stateBytes[k], cudaMemcpyHostToDevice));
        dOut[k] = dIn[k];
        if (!aliased)
        {
            CUDA_OK(cudaMalloc(&dOut[k], stateBytes[k]));
        }
    }
    void* dLogits;
    void* dActive;
    void* dSurvivors;
    void* dCount;
    void* dWorkspace;
    CUDA_OK(cudaMalloc(&dLogits, nc * 4));
    CUDA_OK(cudaMalloc(&dActive, numSamples * 4U));
    CUDA_OK(cudaMalloc(&dSurvivors, numSamples * 4U));
    CUDA_OK(cudaMalloc(&dCount, 4));
    CUDA_OK(cudaMalloc(&dWorkspace, 1 << 20));
    cudaStream_t stream;
    CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));

    for (int32_t stage = 0; stage < numStages && !active.empty(); ++stage)
    {
        int32_t const m = static_cast<int32_t>(active.size());
        std::vector<float> logits(static_cast<size_t>(m) * numClasses);
        for (int32_t i = 0; i < m; ++i)
        {
            float const sharp = 1.F + static_cast<float>(i % 5);
            for (int32_t j = 0; j < numClasses; ++j)
            {
                logits[static_cast<size_t>(i) * numClasses + j] = normal(rng) * sharp;
            }
            if ((i + stage) % 11 == 3) // non-finite rows: NaN, +inf, -inf
            {
                logits[static_cast<size_t>(i) * numClasses + (i % numClasses)]
                    = (i % 3 == 0) ? NAN : ((i % 3 == 1) ? INFINITY : -INFINITY);
            }
        }
        std::vector<__half> logitsHalf(logits.size());
        for (size_t e = 0; e < logits.size(); ++e)
        {
            logitsHalf[e] = __float2half_rn(logits[e]);
        }
        void const* hostLogits = half ? static_cast<void const*>(logitsHalf.data()) : logits.data();
        CUDA_OK(cudaMemcpy(dLogits, hostLogits, logits.size() * (half ? 2 : 4), cudaMemcpyHostToDevice));
        CUDA_OK(cudaMemcpy(dActive, active.data(), m * 4U, cudaMemcpyHostToDevice));
        if (!aliased)
        {
            for (int32_t k = 0; k < 5; ++k)
            {
                CUDA_OK(cudaMemset(dOut[k], 0xFF, stateBytes[k])); // garbage: the plugin must copy the state
            }
        }

        float const threshold = confidence == 2 ? entropyThresholds[stage] : thresholds[stage];
        IPluginV3* plugin = create(creator, Fields{threshold, stage, numStages, confidence});
        check(plugin != nullptr, tag + ": createPlugin");
        if (plugin == nullptr)
        {
            return;
        }
        auto* runtime
            = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
        PluginTensorDesc in[7]{};
        PluginTensorDesc out[7]{};
        DataType const inTypes[7] = {half ? DataType::kHALF : DataType::kFLOAT, DataType::kINT32, DataType::kFLOAT,
            DataType::kINT32, DataType::kFLOAT, DataType::kINT32, DataType::kINT32};
        for (int32_t i = 0; i < 7; ++i)
        {
            in[i].format = TensorFormat::kLINEAR;
            in[i].type = inTypes[i];
            in[i].dims.nbDims = 1;
            in[i].dims.d[0] = i < 2 ? m : numSamples;
            out[i].format = TensorFormat::kLINEAR;
            out[i].type = i < 5 ? inTypes[i + 2] : DataType::kINT32;
            out[i].dims = i < 5 ? in[i + 2].dims : Dims{};
        }
        in[0].dims.nbDims = 2;
        in[0].dims.d[1] = numClasses;
        in[2].dims.nbDims = 2;
        in[2].dims.d[1] = numClasses;
        out[0].dims = in[2].dims;
        out[5].dims.nbDims = 1;
        out[5].dims.d[0] = m;
        out[6].dims.nbDims = 0;
        if (callShapeChange)
        {
            check(runtime->onShapeChange(in, 7, out, 7) == 0, tag + ": onShapeChange");
        }
        void const* inputs[7] = {dLogits, dActive, dIn[0], dIn[1], dIn[2], dIn[3], dIn[4]};
        void* outputs[7] = {dOut[0], dOut[1], dOut[2], dOut[3], dOut[4], dSurvivors, dCount};
        // With copied state an enqueue is idempotent: the second one checks that the first left the
        // persistent workspace zeroed (one launch, no memset).
        for (int32_t repeat = 0; repeat < (aliased ? 1 : 2); ++repeat)
        {
            check(runtime->enqueue(in, out, inputs, outputs, dWorkspace, stream) == 0, tag + ": enqueue");
        }
        CUDA_OK(cudaStreamSynchronize(stream));
        delete plugin;

        // CPU reference on the same (rounded) logits.
        std::vector<int32_t> survivors(m);
        int32_t count = -1;
        edge_committee::gate::GateParams p;
        p.logits = hostLogits;
        p.logitsType = half ? edge_committee::gate::LogitsType::kHALF : edge_committee::gate::LogitsType::kFLOAT;
        p.active = active.data();
        p.numActive = m;
        p.numClasses = numClasses;
        p.numSamples = numSamples;
        p.probSum = probSum.data();
        p.label = label.data();
        p.conf = conf.data();
        p.exitStage = exitStage.data();
        p.flag = flag.data();
        p.survivors = survivors.data();
        p.survivorCount = &count;
        p.stage = stage;
        p.numStages = numStages;
        p.threshold = threshold;
        p.confidence = static_cast<edge_committee::gate::ConfidenceKind>(confidence);
        check(edge_committee::gate::cascadeGateCpu(p) == nullptr, tag + ": CPU gate");
        survivors.resize(count);

        std::vector<float> gProbSum(nc);
        std::vector<int32_t> gLabel(numSamples), gExit(numSamples), gFlag(numSamples);
        std::vector<float> gConf(numSamples);
        int32_t gCount = -1;
        CUDA_OK(cudaMemcpy(gProbSum.data(), dOut[0], nc * 4, cudaMemcpyDeviceToHost));
        CUDA_OK(cudaMemcpy(gLabel.data(), dOut[1], numSamples * 4U, cudaMemcpyDeviceToHost));
        CUDA_OK(cudaMemcpy(gConf.data(), dOut[2], numSamples * 4U, cudaMemcpyDeviceToHost));
        CUDA_OK(cudaMemcpy(gExit.data(), dOut[3], numSamples * 4U, cudaMemcpyDeviceToHost));
        CUDA_OK(cudaMemcpy(gFlag.data(), dOut[4], numSamples * 4U, cudaMemcpyDeviceToHost));
        CUDA_OK(cudaMemcpy(&gCount, dCount, 4, cudaMemcpyDeviceToHost));
        std::vector<int32_t> gSurvivors(gCount > 0 ? gCount : 0);
        if (gCount > 0)
        {
            CUDA_OK(cudaMemcpy(gSurvivors.data(), dSurvivors, gCount * 4U, cudaMemcpyDeviceToHost));
        }
        float maxProbError = 0.F;
        for (size_t e = 0; e < nc; ++e)
        {
            maxProbError = std::fmax(maxProbError, std::fabs(gProbSum[e] - probSum[e]));
        }
        std::string const at = tag + " stage " + std::to_string(stage);
        check(maxProbError <= 1e-6F * (stage + 1), at + ": prob_sum within 1e-6 per stage (max error "
                + std::to_string(maxProbError) + ")");
        check(gLabel == label, at + ": labels");
        check(gExit == exitStage, at + ": exit stages");
        check(gFlag == flag, at + ": flags");
        bool confOk = true;
        for (int32_t i = 0; i < numSamples; ++i)
        {
            confOk = confOk
                && ((std::isnan(gConf[i]) && std::isnan(conf[i])) || std::fabs(gConf[i] - conf[i]) <= 1e-5F);
        }
        check(confOk, at + ": confidences");
        check(gCount == count && gSurvivors == survivors, at + ": survivors (stable order) and count");
        active = survivors;
        if (!aliased)
        {
            for (int32_t k = 0; k < 5; ++k) // the next stage reads this stage's outputs
            {
                CUDA_OK(cudaMemcpy(dIn[k], dOut[k], stateBytes[k], cudaMemcpyDeviceToDevice));
            }
        }
    }
    for (int32_t k = 0; k < 5; ++k)
    {
        cudaFree(dIn[k]);
        if (!aliased)
        {
            cudaFree(dOut[k]);
        }
    }
    cudaFree(dLogits);
    cudaFree(dActive);
    cudaFree(dSurvivors);
    cudaFree(dCount);
    cudaFree(dWorkspace);
    cudaStreamDestroy(stream);
}

} // namespace

int main(int argc, char** argv)
{
    if (argc < 2)
    {
        std::printf("usage: %s /path/to/libedge_committee_plugins.so\n", argv[0]);
        return 2;
    }
    void* library = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (library == nullptr)
    {
        std::printf("FAIL: dlopen: %s\n", dlerror());
        return 1;
    }
    using GetCreators = IPluginCreatorInterface* const* (*) (int32_t&);
    using SetLoggerFinder = void (*)(ILoggerFinder*);
    auto getCreators = reinterpret_cast<GetCreators>(dlsym(library, "getCreators"));
    auto setLoggerFinder = reinterpret_cast<SetLoggerFinder>(dlsym(library, "setLoggerFinder"));
    check(getCreators != nullptr, "exports getCreators");
    check(setLoggerFinder != nullptr, "exports setLoggerFinder");
    if (getCreators == nullptr || setLoggerFinder == nullptr)
    {
        return 1;
    }
    static LoggerFinder finder;
    setLoggerFinder(&finder);
    int32_t nbCreators = 0;
    IPluginCreatorInterface* const* creators = getCreators(nbCreators);
    check(nbCreators == 1 && creators != nullptr && creators[0] != nullptr, "one creator");
    if (nbCreators < 1)
    {
        return 1;
    }
    check(std::strcmp(creators[0]->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") == 0, "creator is V3One");
    auto* creator = static_cast<IPluginCreatorV3One*>(creators[0]);
    checkCreatorAndPlugin(creator, finder.mLogger);

    int32_t devices = 0;
    bool const enqueueSkipped = cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0;
    if (enqueueSkipped)
    {
        std::printf("no CUDA device: enqueue checks skipped\n");
    }
    else
    {
        uint32_t seed = 1;
        for (int32_t numClasses : {10, 1000, 7, 2048})
        {
            for (bool half : {false, true})
            {
                runCascade(creator, 300, numClasses, half, false, true, seed++);
                runCascade(creator, 300, numClasses, half, true, true, seed++);
            }
        }
        runCascade(creator, 1, 10, false, false, false, 99); // fallback: TensorRT workspace + memset
        bool const quick = argc > 2 && std::string(argv[2]) == "--quick";
        if (!quick)
        {
            runCascade(creator, 4096, 1000, true, true, true, 100);
            runCascade(creator, 4096, 1000, false, false, true, 101);
        }
    }
    // "PASSED" only when every check ran: a run without a GPU must not read as a full pass
    char const* const verdict = gFailures != 0 ? "FAILED" : (enqueueSkipped ? "HOST CHECKS OK (enqueue checks SKIPPED)" : "PASSED");
    std::printf("%s: %d failure(s)\n", verdict, gFailures);
    return gFailures == 0 ? 0 : 1;
}
