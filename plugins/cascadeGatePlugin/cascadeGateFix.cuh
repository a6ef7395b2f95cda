/*
 * edge_committee: the device runtime's survivor fix-up and next-stage conditional (GateFix), run by
 * the gate kernel's last block. Included by cascadeGateKernel.cu after kernel_detail::kTHREADS;
 * CUDA only, no TensorRT header.
 */
#ifndef EDGE_COMMITTEE_CASCADE_GATE_FIX_CUH
#define EDGE_COMMITTEE_CASCADE_GATE_FIX_CUH

#include "cascadeGateCommon.h"

namespace edge_committee
{
namespace gate
{
namespace kernel_detail
{

//! The conditional of the next stage (GateFix): IF -> real > 0; SWITCH -> bucket index, numBuckets when 0.
__device__ inline unsigned int conditionValue(GateFix const& fix, int32_t real)
{
    if (fix.slot[1] != 2ULL)
    {
        return real > 0 ? 1U : 0U;
    }
    if (real <= 0)
    {
        return static_cast<unsigned int>(fix.numBuckets);
    }
    for (int32_t i = 0; i < fix.numBuckets; ++i)
    {
        if (fix.buckets[i] >= real)
        {
            return static_cast<unsigned int>(i);
        }
    }
    return static_cast<unsigned int>(fix.numBuckets);
}

//!
//! \brief GateFix, run by the whole last block once every block has published its survivors.
//!
__device__ inline void fixSurvivors(GateParams const& p, int32_t* sReal)
{
    __threadfence(); // acquire: the other blocks fenced before counting in
    int32_t const n = *reinterpret_cast<int32_t volatile*>(p.survivorCount);
    int32_t mine = 0;
    for (int32_t j = static_cast<int32_t>(threadIdx.x); j < p.fix.rows; j += kTHREADS)
    {
        int32_t const v = __ldcg(&p.survivors[j]); // written by other blocks: read through L2
        bool const valid = j < n && v >= 0 && v < p.fix.capacity;
        p.survivors[j] = valid ? v : p.fix.capacity + j;
        p.fix.gatherIndex[j] = valid ? v : 0;
        mine += valid ? 1 : 0;
    }
    atomicAdd(sReal, mine);
    __syncthreads();
    if (threadIdx.x == 0)
    {
        *p.fix.realCount = *sReal;
#if defined(CUDART_VERSION) && CUDART_VERSION >= 12040
        unsigned long long const handle = p.fix.slot != nullptr ? p.fix.slot[0] : 0ULL;
        if (handle != 0ULL)
        {
            cudaGraphSetConditional(static_cast<cudaGraphConditionalHandle>(handle), conditionValue(p.fix, *sReal));
        }
#endif
    }
}

} // namespace kernel_detail
} // namespace gate
} // namespace edge_committee

#endif // EDGE_COMMITTEE_CASCADE_GATE_FIX_CUH
