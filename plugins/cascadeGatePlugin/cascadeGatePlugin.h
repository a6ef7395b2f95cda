/*
 * edge_committee: the cascade gate as a TensorRT IPluginV3 plugin ("CascadeGate", version "1",
 * namespace "edge_committee"). See README.md for inputs, outputs and attributes.
 *
 * Written against the plugin API common to TensorRT 10.3 (JetPack 6) through 11.x. The library
 * exports getCreators() and setLoggerFinder() and does not link libnvinfer: load it with
 * IPluginRegistry::loadLibrary (Python: trt.get_plugin_registry().load_library(path)).
 */
#ifndef EDGE_COMMITTEE_CASCADE_GATE_PLUGIN_H
#define EDGE_COMMITTEE_CASCADE_GATE_PLUGIN_H

#include "NvInferRuntime.h"
#include "NvInferVersion.h"

#include "cascadeGateKernel.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#if !defined(NV_TENSORRT_MAJOR) || NV_TENSORRT_MAJOR < 10 || (NV_TENSORRT_MAJOR == 10 && NV_TENSORRT_MINOR < 3)
#error "the CascadeGate plugin needs TensorRT >= 10.3 (IPluginV3 with IPluginV3OneBuildV2)"
#endif

namespace edge_committee
{
namespace plugin
{

//! Plugin identity, as the registry and the ONNX parser see it.
constexpr char const* kCASCADE_GATE_NAME = "CascadeGate";
constexpr char const* kCASCADE_GATE_VERSION = "1";
constexpr char const* kCASCADE_GATE_NAMESPACE = "edge_committee";

//! Input positions.
constexpr int32_t kIN_LOGITS = 0;     //!< [M, C] float32 or float16
constexpr int32_t kIN_ACTIVE = 1;     //!< [M] int32 original indices
constexpr int32_t kIN_PROB_SUM = 2;   //!< [N, C] float32
constexpr int32_t kIN_LABEL = 3;      //!< [N] int32
constexpr int32_t kIN_CONF = 4;       //!< [N] float32
constexpr int32_t kIN_EXIT_STAGE = 5; //!< [N] int32
constexpr int32_t kIN_FLAG = 6;       //!< [N] int32
constexpr int32_t kNB_INPUTS = 7;

//! Output positions. Outputs kOUT_PROB_SUM..kOUT_FLAG are the updated inputs kIN_PROB_SUM..kIN_FLAG.
constexpr int32_t kOUT_PROB_SUM = 0;
constexpr int32_t kOUT_LABEL = 1;
constexpr int32_t kOUT_CONF = 2;
constexpr int32_t kOUT_EXIT_STAGE = 3;
constexpr int32_t kOUT_FLAG = 4;
constexpr int32_t kOUT_SURVIVORS = 5;     //!< [S] int32, S data-dependent (size tensor kOUT_NUM_SURVIVORS)
constexpr int32_t kOUT_NUM_SURVIVORS = 6; //!< [] int32 size tensor
constexpr int32_t kNB_OUTPUTS = 7;
constexpr int32_t kNB_STATE_TENSORS = 5;

//!
//! \brief The creation attributes, serialized as plugin fields.
//!
struct CascadeGateAttributes
{
    float threshold{0.F};  //!< field "threshold" (kFLOAT32)
    int32_t stage{0};      //!< field "stage" (kINT32), 0-based
    int32_t numStages{1};  //!< field "num_stages" (kINT32)
    int32_t confidence{0}; //!< field "confidence" (kINT32): 0 max_prob, 1 margin, 2 neg_entropy
};

//!
//! \brief Check attributes; return nullptr if valid, else a message.
//!
char const* validateAttributes(CascadeGateAttributes const& attributes) noexcept;

//!
//! \brief One stage of a cascade: softmax, accumulate, confidence, exit, stable compaction.
//!
class CascadeGatePlugin : public nvinfer1::IPluginV3,
                          public nvinfer1::IPluginV3OneCore,
                          public nvinfer1::IPluginV3OneBuildV2,
                          public nvinfer1::IPluginV3OneRuntime
{
public:
    explicit CascadeGatePlugin(CascadeGateAttributes const& attributes);
    CascadeGatePlugin(CascadeGatePlugin const&) = delete;
    CascadeGatePlugin& operator=(CascadeGatePlugin const&) = delete;
    ~CascadeGatePlugin() override;

    //! The attributes this plugin was created with.
    CascadeGateAttributes const& attributes() const noexcept
    {
        return mAttributes;
    }

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild(V2)
    int32_t getNbOutputs() const noexcept override;
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;
    int32_t getAliasedInput(int32_t outputIndex) noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    void initFieldsToSerialize();
    void releaseWorkspace() noexcept;

    CascadeGateAttributes mAttributes;
    std::vector<nvinfer1::PluginField> mDataToSerialize;
    nvinfer1::PluginFieldCollection mFCToSerialize{};

    //! Persistent, self-resetting gate workspace (see cascadeGateKernel.h): one launch per enqueue.
    void* mWorkspace{nullptr};
    size_t mWorkspaceBytes{0};
    bool mWorkspaceNeedsReset{false};
};

//!
//! \brief Creator of CascadeGate plugins from the fields threshold, stage, num_stages, confidence.
//!
class CascadeGatePluginCreator : public nvinfer1::IPluginCreatorV3One
{
public:
    CascadeGatePluginCreator();

    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;

    //!
    //! \brief Parse plugin fields into attributes (accepts int32/int64/int16/int8 for integers,
    //! float32/float64/float16 for threshold, and a string for confidence); throws std::invalid_argument.
    //!
    static CascadeGateAttributes parseFields(nvinfer1::PluginFieldCollection const* fc);

private:
    nvinfer1::PluginFieldCollection mFC{};
    std::vector<nvinfer1::PluginField> mPluginAttributes;
};

} // namespace plugin
} // namespace edge_committee

#endif // EDGE_COMMITTEE_CASCADE_GATE_PLUGIN_H
