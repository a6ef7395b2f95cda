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
//! \brief The device runtime's step after a gate, fused into the gate's last block (CUDA gate only).
//!
//! With rows > 0, after the compaction the kernel rewrites survivors[0, rows) in place: entry j stays
//! survivors[j] when j < survivorCount and 0 <= survivors[j] < capacity, else becomes the sink row
//! capacity + j; gatherIndex[j] gets the sample (0 for a sink); realCount[0] the number of kept
//! entries. Then, when slot is set and slot[0] (a cudaGraphConditionalHandle) is not 0, it sets that
//! conditional: realCount > 0 (slot[1] == 1, IF) or the index of the smallest buckets[i] >= realCount,
//! numBuckets when it is 0 (slot[1] == 2, SWITCH). The same as the NVRTC kernel ec_fix_and_set of
//! edge_committee/backend/device/kernels.py, which runs when the gate is not this kernel.
//!
struct GateFix
{
    int32_t rows{0};                          //!< b > 0 enables the step (b = the stage's bucket)
    int32_t capacity{0};                      //!< first sink row
    int32_t* gatherIndex{nullptr};            //!< [rows] out: image row to gather per entry
    int32_t* realCount{nullptr};              //!< [1] out: entries that are real samples
    unsigned long long const* slot{nullptr};  //!< {handle, kind} of the next stage's conditional, or null
    int32_t const* buckets{nullptr};          //!< [numBuckets] ascending (SWITCH values index it)
    int32_t numBuckets{0};
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
    GateFix fix{};                           //!< the fused survivor fix-up (CUDA only; off by default)
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
    if (p.fix.rows > 0
        && (p.fix.capacity < 1 || p.fix.gatherIndex == nullptr || p.fix.realCount == nullptr || p.survivors == nullptr
            || (p.fix.slot != nullptr && p.fix.numBuckets > 0 && p.fix.buckets == nullptr)))
    {
        return "fix: capacity must be >= 1 and gatherIndex, realCount, survivors (and buckets) must not be null";
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
