/*
 * edge_committee: the cascade gate, shared definitions.
 *
 * Plain C++ (no CUDA, no TensorRT): included by the CPU implementation, the CUDA kernel,
 * the TensorRT plugin and the Python bindings, so that all of them agree on one parameter block.
 */
#ifndef EDGE_COMMITTEE_CASCADE_GATE_COMMON_H
#define EDGE_COMMITTEE_CASCADE_GATE_COMMON_H

#include <cstdint>

namespace edge_committee
{
namespace gate
{

//!
//! \brief Confidence function of the running mean probabilities.
//!
//! The codes are those of `edge_committee.cascade.reference.CONFIDENCE_CODES` and of the ONNX/plugin
//! attribute `confidence`.
//!
enum class ConfidenceKind : int32_t
{
    kMAX_PROB = 0,    //!< largest probability, in [1/C, 1]
    kMARGIN = 1,      //!< largest minus second largest probability, in [0, 1]
    kNEG_ENTROPY = 2, //!< sum(p log p) with 0 log 0 = 0, in [-log C, 0]
};

//! Number of confidence functions.
constexpr int32_t kNUM_CONFIDENCE_KINDS = 3;

//!
//! \brief Element type of the logits. The math is float32 in every case.
//!
enum class LogitsType : int32_t
{
    kFLOAT = 0, //!< IEEE float32
    kHALF = 1,  //!< IEEE float16
};

//!
//! \brief Everything one stage of the gate reads and writes.
//!
//! M = numActive rows of logits, C = numClasses, N = rows of the state (original samples).
//! The state arrays are indexed by the ORIGINAL sample index `active[i]`; the logits are in active order.
//! Pointers are host pointers for the CPU gate and device pointers for the CUDA gate.
//!
struct GateParams
{
    void const* logits{nullptr};             //!< [M, C] row-major, float32 or float16 (see logitsType)
    LogitsType logitsType{LogitsType::kFLOAT}; //!< element type of logits
    int32_t const* active{nullptr};          //!< [M] original indices of the active samples, in order
    int32_t numActive{0};                    //!< M >= 0
    int32_t numClasses{0};                   //!< C >= 1
    int32_t numSamples{0};                   //!< N >= 0, rows of the state; active[i] must be in [0, N)
    float* probSum{nullptr};                 //!< [N, C] running sum of member probabilities (read-modify-write)
    int32_t* label{nullptr};                 //!< [N] final label, written for exiting samples
    float* conf{nullptr};                    //!< [N] final confidence, written for exiting samples
    int32_t* exitStage{nullptr};             //!< [N] exit stage, written for exiting samples
    int32_t* flag{nullptr};                  //!< [N] set to 1 for samples whose logits row is non-finite
    int32_t* survivors{nullptr};             //!< [>= M] out: original indices of the survivors, stable order
    int32_t* survivorCount{nullptr};         //!< [1] out: number of survivors
    int32_t stage{0};                        //!< 0-based stage index k
    int32_t numStages{1};                    //!< K >= 1; stage K-1 lets every sample exit
    float threshold{0.F};                    //!< exit if confidence >= threshold (ignored at the last stage)
    ConfidenceKind confidence{ConfidenceKind::kMAX_PROB}; //!< confidence function
};

//!
//! \brief Check the scalar fields and the pointers a stage needs.
//!
//! \return nullptr if valid, else a static message saying what is wrong.
//!
inline char const* validateGateParams(GateParams const& p) noexcept
{
    if (p.numActive < 0)
    {
        return "numActive must be >= 0";
    }
    if (p.numClasses < 1)
    {
        return "numClasses must be >= 1";
    }
    if (p.numSamples < 0)
    {
        return "numSamples must be >= 0";
    }
    if (p.numStages < 1)
    {
        return "numStages must be >= 1";
    }
    if (p.stage < 0 || p.stage >= p.numStages)
    {
        return "stage must be in [0, numStages)";
    }
    int32_t const code = static_cast<int32_t>(p.confidence);
    if (code < 0 || code >= kNUM_CONFIDENCE_KINDS)
    {
        return "confidence must be 0 (max_prob), 1 (margin) or 2 (neg_entropy)";
    }
    if (p.logitsType != LogitsType::kFLOAT && p.logitsType != LogitsType::kHALF)
    {
        return "logitsType must be kFLOAT or kHALF";
    }
    if (p.threshold != p.threshold)
    {
        return "threshold must not be NaN";
    }
    if (p.survivorCount == nullptr)
    {
        return "survivorCount must not be null";
    }
    if (p.numActive > 0
        && (p.logits == nullptr || p.active == nullptr || p.probSum == nullptr || p.label == nullptr
            || p.conf == nullptr || p.exitStage == nullptr || p.flag == nullptr || p.survivors == nullptr))
    {
        return "a state, logits, active or survivors pointer is null";
    }
    return nullptr;
}

} // namespace gate
} // namespace edge_committee

#endif // EDGE_COMMITTEE_CASCADE_GATE_COMMON_H
