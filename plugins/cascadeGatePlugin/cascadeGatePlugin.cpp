/*
 * edge_committee: the CascadeGate TensorRT plugin. See cascadeGatePlugin.h and README.md.
 */
#include "cascadeGatePlugin.h"

#include <cmath>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#if defined(__GNUC__)
#define EC_PLUGIN_API __attribute__((visibility("default")))
#else
#define EC_PLUGIN_API
#endif

using namespace nvinfer1;

namespace edge_committee
{
namespace plugin
{
namespace
{

//! The logger finder TensorRT hands to the library (setLoggerFinder); guarded for concurrent loads.
class LoggerFinderHolder
{
public:
    void set(ILoggerFinder* finder) noexcept
    {
        std::lock_guard<std::mutex> lock(mMutex);
        mFinder = finder;
    }

    ILogger* logger() noexcept
    {
        std::lock_guard<std::mutex> lock(mMutex);
        return mFinder != nullptr ? mFinder->findLogger() : nullptr;
    }

private:
    std::mutex mMutex;
    ILoggerFinder* mFinder{nullptr};
};

LoggerFinderHolder& loggerFinder() noexcept
{
    static LoggerFinderHolder holder;
    return holder;
}

void logMessage(ILogger::Severity severity, std::string const& message) noexcept
{
    try
    {
        if (ILogger* logger = loggerFinder().logger())
        {
            std::string const text = std::string(kCASCADE_GATE_NAME) + ": " + message;
            logger->log(severity, text.c_str());
        }
    }
    catch (...)
    {
        // never throw across the library boundary
    }
}

void logError(std::string const& message) noexcept
{
    logMessage(ILogger::Severity::kERROR, message);
}

int64_t volume(Dims const& dims) noexcept
{
    int64_t v = 1;
    for (int32_t i = 0; i < dims.nbDims; ++i)
    {
        v *= dims.d[i];
    }
    return v;
}

//! Expected type of every position of supportsFormatCombination except the logits (0).
DataType expectedType(int32_t pos) noexcept
{
    switch (pos)
    {
    case kIN_PROB_SUM:
    case kIN_CONF:
    case kNB_INPUTS + kOUT_PROB_SUM:
    case kNB_INPUTS + kOUT_CONF: return DataType::kFLOAT;
    default: return DataType::kINT32; // active, label, exit_stage, flag, survivors, num_survivors
    }
}

int64_t readInteger(PluginField const& field)
{
    if (field.data == nullptr || field.length < 1)
    {
        throw std::invalid_argument(std::string("field '") + field.name + "' has no value");
    }
    switch (field.type)
    {
    case PluginFieldType::kINT32: return *static_cast<int32_t const*>(field.data);
    case PluginFieldType::kINT64: return *static_cast<int64_t const*>(field.data);
    case PluginFieldType::kINT16: return *static_cast<int16_t const*>(field.data);
    case PluginFieldType::kINT8: return *static_cast<int8_t const*>(field.data);
    default: throw std::invalid_argument(std::string("field '") + field.name + "' must be an integer");
    }
}

double readFloat(PluginField const& field)
{
    if (field.data == nullptr || field.length < 1)
    {
        throw std::invalid_argument(std::string("field '") + field.name + "' has no value");
    }
    switch (field.type)
    {
    case PluginFieldType::kFLOAT32: return *static_cast<float const*>(field.data);
    case PluginFieldType::kFLOAT64: return *static_cast<double const*>(field.data);
    default: throw std::invalid_argument(std::string("field '") + field.name + "' must be float32 or float64");
    }
}

int32_t readConfidence(PluginField const& field)
{
    if (field.type != PluginFieldType::kCHAR)
    {
        return static_cast<int32_t>(readInteger(field));
    }
    std::string name(static_cast<char const*>(field.data), field.data != nullptr ? field.length : 0);
    name = name.substr(0, name.find('\0'));
    char const* const names[] = {"max_prob", "margin", "neg_entropy"};
    for (int32_t code = 0; code < gate::kNUM_CONFIDENCE_KINDS; ++code)
    {
        if (name == names[code])
        {
            return code;
        }
    }
    throw std::invalid_argument("field 'confidence' is '" + name + "'; expected max_prob, margin or neg_entropy");
}

} // namespace

char const* validateAttributes(CascadeGateAttributes const& a) noexcept
{
    if (a.numStages < 1)
    {
        return "num_stages must be >= 1";
    }
    if (a.stage < 0 || a.stage >= a.numStages)
    {
        return "stage must be in [0, num_stages)";
    }
    if (a.confidence < 0 || a.confidence >= gate::kNUM_CONFIDENCE_KINDS)
    {
        return "confidence must be 0 (max_prob), 1 (margin) or 2 (neg_entropy)";
    }
    if (std::isnan(a.threshold))
    {
        return "threshold must not be NaN";
    }
    return nullptr;
}

// ---------------------------------------------------------------------------------------------
// CascadeGatePlugin
// ---------------------------------------------------------------------------------------------

CascadeGatePlugin::CascadeGatePlugin(CascadeGateAttributes const& attributes)
    : mAttributes(attributes)
{
    initFieldsToSerialize();
}

CascadeGatePlugin::~CascadeGatePlugin()
{
    releaseWorkspace();
}

void CascadeGatePlugin::initFieldsToSerialize()
{
    mDataToSerialize.clear();
    mDataToSerialize.emplace_back("threshold", &mAttributes.threshold, PluginFieldType::kFLOAT32, 1);
    mDataToSerialize.emplace_back("stage", &mAttributes.stage, PluginFieldType::kINT32, 1);
    mDataToSerialize.emplace_back("num_stages", &mAttributes.numStages, PluginFieldType::kINT32, 1);
    mDataToSerialize.emplace_back("confidence", &mAttributes.confidence, PluginFieldType::kINT32, 1);
    mFCToSerialize.nbFields = static_cast<int32_t>(mDataToSerialize.size());
    mFCToSerialize.fields = mDataToSerialize.data();
}

void CascadeGatePlugin::releaseWorkspace() noexcept
{
    if (mWorkspace != nullptr)
    {
        cudaFree(mWorkspace); // errors are ignored: nothing can be done about them in a destructor
        mWorkspace = nullptr;
        mWorkspaceBytes = 0;
    }
}

IPluginCapability* CascadeGatePlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    try
    {
        switch (type)
        {
        case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuildV2*>(this);
        case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
        case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
        default: break;
        }
        logError("unknown plugin capability type requested");
    }
    catch (std::exception const& e)
    {
        logError(e.what());
    }
    return nullptr;
}

IPluginV3* CascadeGatePlugin::clone() noexcept
{
    try
    {
        // A clone gets its own workspace: clones may run in different execution contexts at once.
        return new CascadeGatePlugin(mAttributes);
    }
    catch (std::exception const& e)
    {
        logError(e.what());
    }
    return nullptr;
}

char const* CascadeGatePlugin::getPluginName() const noexcept
{
    return kCASCADE_GATE_NAME;
}

char const* CascadeGatePlugin::getPluginVersion() const noexcept
{
    return kCASCADE_GATE_VERSION;
}

char const* CascadeGatePlugin::getPluginNamespace() const noexcept
{
    return kCASCADE_GATE_NAMESPACE;
}

int32_t CascadeGatePlugin::getNbOutputs() const noexcept
{
    return kNB_OUTPUTS;
}

int32_t CascadeGatePlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    try
    {
        if (in == nullptr || out == nullptr || nbInputs != kNB_INPUTS || nbOutputs != kNB_OUTPUTS)
        {
            logError("configurePlugin: expected 7 inputs and 7 outputs, got " + std::to_string(nbInputs) + " and "
                + std::to_string(nbOutputs));
            return -1;
        }
        if (in[kIN_LOGITS].desc.dims.nbDims != 2 || in[kIN_PROB_SUM].desc.dims.nbDims != 2)
        {
            logError("configurePlugin: logits and prob_sum must be 2-D");
            return -1;
        }
        return 0;
    }
    catch (std::exception const& e)
    {
        logError(e.what());
    }
    return -1;
}

int32_t CascadeGatePlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    try
    {
        if (outputTypes == nullptr || inputTypes == nullptr || nbOutputs != kNB_OUTPUTS || nbInputs != kNB_INPUTS)
        {
            logError("getOutputDataTypes: expected 7 inputs and 7 outputs");
            return -1;
        }
        if (inputTypes[kIN_LOGITS] != DataType::kFLOAT && inputTypes[kIN_LOGITS] != DataType::kHALF)
        {
            logError("getOutputDataTypes: logits must be float32 or float16");
            return -1;
        }
        outputTypes[kOUT_PROB_SUM] = DataType::kFLOAT;
        outputTypes[kOUT_LABEL] = DataType::kINT32;
        outputTypes[kOUT_CONF] = DataType::kFLOAT;
        outputTypes[kOUT_EXIT_STAGE] = DataType::kINT32;
        outputTypes[kOUT_FLAG] = DataType::kINT32;
        outputTypes[kOUT_SURVIVORS] = DataType::kINT32;
        outputTypes[kOUT_NUM_SURVIVORS] = DataType::kINT32; // size tensors are INT32
        return 0;
    }
    catch (std::exception const& e)
    {
        logError(e.what());
    }
    return -1;
}

int32_t CascadeGatePlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
    int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& exprBuilder) noexcept
{
    try
    {
        if (inputs == nullptr || outputs == nullptr || nbInputs != kNB_INPUTS || nbOutputs != kNB_OUTPUTS)
        {
            logError("getOutputShapes: expected 7 inputs and 7 outputs");
            return -1;
        }
        if (inputs[kIN_LOGITS].nbDims != 2 || inputs[kIN_ACTIVE].nbDims != 1 || inputs[kIN_PROB_SUM].nbDims != 2)
        {
            logError("getOutputShapes: expected logits [M, C], active [M] and prob_sum [N, C]");
            return -1;
        }
        for (int32_t i = kIN_LABEL; i <= kIN_FLAG; ++i)
        {
            if (inputs[i].nbDims != 1)
            {
                logError("getOutputShapes: label, conf, exit_stage and flag must be 1-D [N]");
                return -1;
            }
        }
        for (int32_t k = 0; k < kNB_STATE_TENSORS; ++k)
        {
            outputs[kOUT_PROB_SUM + k] = inputs[kIN_PROB_SUM + k];
        }
        // At most M samples survive; M is also the typical value at batch 1 (one decision).
        IDimensionExpr const* upper = inputs[kIN_LOGITS].d[0];
        IDimensionExpr const* count = exprBuilder.declareSizeTensor(kOUT_NUM_SURVIVORS, *upper, *upper);
        if (count == nullptr)
        {
            logError("getOutputShapes: declareSizeTensor failed");
            return -1;
        }
        outputs[kOUT_SURVIVORS].nbDims = 1;
        outputs[kOUT_SURVIVORS].d[0] = count;
        outputs[kOUT_NUM_SURVIVORS].nbDims = 0; // size tensors are 0-D
        return 0;
    }
    catch (std::exception const& e)
    {
        logError(e.what());
    }
    return -1;
}

bool CascadeGatePlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    try
    {
        if (inOut == nullptr || nbInputs != kNB_INPUTS || nbOutputs != kNB_OUTPUTS || pos < 0
            || pos >= kNB_INPUTS + kNB_OUTPUTS)
        {
            return false;
        }
        PluginTensorDesc const& desc = inOut[pos].desc;
        if (desc.format != TensorFormat::kLINEAR)
        {
            return false;
        }
        if (pos == kIN_LOGITS)
        {
            return desc.type == DataType::kFLOAT || desc.type == DataType::kHALF;
        }
        return desc.type == expectedType(pos);
    }
    catch (std::exception const& e)
    {
        logError(e.what());
    }
    return false;
}

size_t CascadeGatePlugin::getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    try
    {
        if (inputs == nullptr || nbInputs != kNB_INPUTS)
        {
            return 0;
        }
        // Used only when the persistent workspace could not be allocated (then with one memset).
        int64_t const maxActive = inputs[kIN_LOGITS].max.d[0];
        int32_t const rows = maxActive > 0 && maxActive < INT32_MAX ? static_cast<int32_t>(maxActive) : 1;
        return gate::cascadeGateWorkspaceSize(rows);
    }
    catch (std::exception const& e)
    {
        logError(e.what());
    }
    return 0;
}

int32_t CascadeGatePlugin::getAliasedInput(int32_t outputIndex) noexcept
{
    // With PreviewFeature::kALIASED_PLUGIN_IO_10_03 the state is updated in place (no copy in enqueue).
    if (outputIndex >= kOUT_PROB_SUM && outputIndex < kOUT_PROB_SUM + kNB_STATE_TENSORS)
    {
        return kIN_PROB_SUM + (outputIndex - kOUT_PROB_SUM);
    }
    return -1;
}

int32_t CascadeGatePlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    try
    {
        if (in == nullptr || out == nullptr || nbInputs != kNB_INPUTS || nbOutputs != kNB_OUTPUTS)
        {
            logError("onShapeChange: expected 7 inputs and 7 outputs");
            return -1;
        }
        Dims const& logits = in[kIN_LOGITS].dims;
        Dims const& probSum = in[kIN_PROB_SUM].dims;
        if (logits.nbDims != 2 || probSum.nbDims != 2 || logits.d[1] != probSum.d[1]
            || in[kIN_ACTIVE].dims.nbDims != 1 || in[kIN_ACTIVE].dims.d[0] != logits.d[0])
        {
            logError("onShapeChange: expected logits [M, C], active [M], prob_sum [N, C]");
            return -1;
        }
        for (int32_t i = kIN_LABEL; i <= kIN_FLAG; ++i)
        {
            if (in[i].dims.nbDims != 1 || in[i].dims.d[0] != probSum.d[0])
            {
                logError("onShapeChange: label, conf, exit_stage and flag must be [N] with N = prob_sum rows");
                return -1;
            }
        }
        if (logits.d[0] > INT32_MAX || probSum.d[0] > INT32_MAX || logits.d[1] > INT32_MAX)
        {
            logError("onShapeChange: dimensions above 2^31 - 1 are not supported");
            return -1;
        }
        // Grow the persistent workspace here, outside enqueue (no allocation while a CUDA graph is captured).
        size_t const needed = gate::cascadeGateWorkspaceSize(static_cast<int32_t>(logits.d[0]));
        if (needed > mWorkspaceBytes)
        {
            releaseWorkspace();
            if (cudaMalloc(&mWorkspace, needed) == cudaSuccess)
            {
                mWorkspaceBytes = needed;
                mWorkspaceNeedsReset = true;
            }
            else
            {
                cudaGetLastError(); // clear the error; enqueue falls back to TensorRT's workspace
                mWorkspace = nullptr;
                logMessage(ILogger::Severity::kWARNING,
                    "could not allocate the persistent workspace; using one memset per enqueue");
            }
        }
        return 0;
    }
    catch (std::exception const& e)
    {
        logError(e.what());
    }
    return -1;
}

int32_t CascadeGatePlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    try
    {
        if (inputDesc == nullptr || outputDesc == nullptr || inputs == nullptr || outputs == nullptr)
        {
            logError("enqueue: null descriptors or buffers");
            return -1;
        }
        // State pass-through: outputs 0..4 are the updated inputs 2..6. Copy unless TensorRT aliased them.
        for (int32_t k = 0; k < kNB_STATE_TENSORS; ++k)
        {
            void const* src = inputs[kIN_PROB_SUM + k];
            void* dst = outputs[kOUT_PROB_SUM + k];
            size_t const bytes = static_cast<size_t>(volume(inputDesc[kIN_PROB_SUM + k].dims)) * 4U;
            if (src != dst && bytes > 0 && cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream) != cudaSuccess)
            {
                logError("enqueue: copying the state to the outputs failed");
                return -1;
            }
        }

        gate::GateParams params;
        params.logits = inputs[kIN_LOGITS];
        params.logitsType
            = inputDesc[kIN_LOGITS].type == DataType::kHALF ? gate::LogitsType::kHALF : gate::LogitsType::kFLOAT;
        params.active = static_cast<int32_t const*>(inputs[kIN_ACTIVE]);
        params.numActive = static_cast<int32_t>(inputDesc[kIN_LOGITS].dims.d[0]);
        params.numClasses = static_cast<int32_t>(inputDesc[kIN_LOGITS].dims.d[1]);
        params.numSamples = static_cast<int32_t>(inputDesc[kIN_PROB_SUM].dims.d[0]);
        params.probSum = static_cast<float*>(outputs[kOUT_PROB_SUM]);
        params.label = static_cast<int32_t*>(outputs[kOUT_LABEL]);
        params.conf = static_cast<float*>(outputs[kOUT_CONF]);
        params.exitStage = static_cast<int32_t*>(outputs[kOUT_EXIT_STAGE]);
        params.flag = static_cast<int32_t*>(outputs[kOUT_FLAG]);
        params.survivors = static_cast<int32_t*>(outputs[kOUT_SURVIVORS]);
        params.survivorCount = static_cast<int32_t*>(outputs[kOUT_NUM_SURVIVORS]);
        params.stage = mAttributes.stage;
        params.numStages = mAttributes.numStages;
        params.threshold = mAttributes.threshold;
        params.confidence = static_cast<gate::ConfidenceKind>(mAttributes.confidence);

        size_t const needed = gate::cascadeGateWorkspaceSize(params.numActive);
        void* ws = mWorkspace;
        size_t wsBytes = mWorkspaceBytes;
        bool reset = mWorkspaceNeedsReset;
        if (ws == nullptr || wsBytes < needed)
        {
            ws = workspace; // TensorRT's scratch: not persistent, so zero it every time
            wsBytes = needed;
            reset = true;
        }
        if (reset && gate::cascadeGateWorkspaceReset(ws, needed, stream) != cudaSuccess)
        {
            logError("enqueue: zeroing the workspace failed");
            return -1;
        }
        if (ws == mWorkspace)
        {
            mWorkspaceNeedsReset = false; // every completed launch leaves it zeroed
        }
        cudaError_t const status = gate::cascadeGateEnqueue(params, ws, wsBytes, stream);
        if (status != cudaSuccess)
        {
            logError(std::string("enqueue: ") + cudaGetErrorString(status));
            return -1;
        }
        return 0;
    }
    catch (std::exception const& e)
    {
        logError(e.what());
    }
    return -1;
}

IPluginV3* CascadeGatePlugin::attachToContext(IPluginResourceContext* /*context*/) noexcept
{
    return clone();
}

PluginFieldCollection const* CascadeGatePlugin::getFieldsToSerialize() noexcept
{
    return &mFCToSerialize;
}

// ---------------------------------------------------------------------------------------------
// CascadeGatePluginCreator
// ---------------------------------------------------------------------------------------------

CascadeGatePluginCreator::CascadeGatePluginCreator()
{
    mPluginAttributes.clear();
    mPluginAttributes.emplace_back("threshold", nullptr, PluginFieldType::kFLOAT32, 1);
    mPluginAttributes.emplace_back("stage", nullptr, PluginFieldType::kINT32, 1);
    mPluginAttributes.emplace_back("num_stages", nullptr, PluginFieldType::kINT32, 1);
    mPluginAttributes.emplace_back("confidence", nullptr, PluginFieldType::kINT32, 1);
    mFC.nbFields = static_cast<int32_t>(mPluginAttributes.size());
    mFC.fields = mPluginAttributes.data();
}

char const* CascadeGatePluginCreator::getPluginName() const noexcept
{
    return kCASCADE_GATE_NAME;
}

char const* CascadeGatePluginCreator::getPluginVersion() const noexcept
{
    return kCASCADE_GATE_VERSION;
}

char const* CascadeGatePluginCreator::getPluginNamespace() const noexcept
{
    return kCASCADE_GATE_NAMESPACE;
}

PluginFieldCollection const* CascadeGatePluginCreator::getFieldNames() noexcept
{
    return &mFC;
}

CascadeGateAttributes CascadeGatePluginCreator::parseFields(PluginFieldCollection const* fc)
{
    if (fc == nullptr || (fc->nbFields > 0 && fc->fields == nullptr))
    {
        throw std::invalid_argument("no plugin fields given");
    }
    CascadeGateAttributes a;
    bool haveThreshold = false;
    bool haveStage = false;
    bool haveNumStages = false;
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        PluginField const& field = fc->fields[i];
        if (field.name == nullptr)
        {
            continue;
        }
        std::string const name(field.name);
        if (name == "threshold")
        {
            a.threshold = static_cast<float>(readFloat(field));
            haveThreshold = true;
        }
        else if (name == "stage")
        {
            a.stage = static_cast<int32_t>(readInteger(field));
            haveStage = true;
        }
        else if (name == "num_stages")
        {
            a.numStages = static_cast<int32_t>(readInteger(field));
            haveNumStages = true;
        }
        else if (name == "confidence")
        {
            a.confidence = readConfidence(field);
        }
        // Other fields (e.g. plugin_version / plugin_namespace forwarded by the ONNX parser) are ignored.
    }
    if (!haveStage || !haveNumStages)
    {
        throw std::invalid_argument("fields 'stage' and 'num_stages' are required");
    }
    if (!haveThreshold)
    {
        if (a.stage != a.numStages - 1)
        {
            throw std::invalid_argument("field 'threshold' is required except at the last stage");
        }
        a.threshold = INFINITY;
    }
    if (char const* error = validateAttributes(a))
    {
        throw std::invalid_argument(error);
    }
    return a;
}

IPluginV3* CascadeGatePluginCreator::createPlugin(
    char const* name, PluginFieldCollection const* fc, TensorRTPhase /*phase*/) noexcept
{
    try
    {
        return new CascadeGatePlugin(parseFields(fc));
    }
    catch (std::exception const& e)
    {
        logError(std::string("createPlugin(") + (name != nullptr ? name : "") + "): " + e.what());
    }
    return nullptr;
}

} // namespace plugin
} // namespace edge_committee

// ---------------------------------------------------------------------------------------------
// Library entry points for IPluginRegistry::loadLibrary (no link to libnvinfer needed).
// ---------------------------------------------------------------------------------------------

extern "C" EC_PLUGIN_API void setLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept
{
    edge_committee::plugin::loggerFinder().set(finder);
}

extern "C" EC_PLUGIN_API nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) noexcept
{
    static edge_committee::plugin::CascadeGatePluginCreator sCascadeGateCreator;
    static nvinfer1::IPluginCreatorInterface* const sCreators[] = {&sCascadeGateCreator};
    nbCreators = static_cast<int32_t>(sizeof(sCreators) / sizeof(sCreators[0]));
    return sCreators;
}
