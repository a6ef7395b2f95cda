/*
 * edge_committee: the cascade gate as one CUDA kernel launch per stage. See cascadeGateKernel.h.
 *
 * Numerics follow edge_committee/cascade/reference.py: softmax with the exact row max subtracted,
 * p = exp(x - max) / sum in float32 (IEEE division, accurate expf; do not build with fast math),
 * the confidence of the running mean q = probSum / n computed by IEEE division, where n is the number of
 * stages that contributed to the sample (round(sum(probSum row)), at least 1: a stage with non-finite
 * logits adds nothing and is not counted), argmax ties to the lowest class index.
 */
#include "cascadeGateKernel.h"

#include <cuda_fp16.h>

#include <climits>
#include <cstdint>

namespace edge_committee
{
namespace gate
{
// A named namespace (not an anonymous one) so that this file stays safe to compile next to code that
// says `using namespace nvinfer1` (an nvcc pitfall).
namespace kernel_detail
{

constexpr int32_t kWARP = 32;
constexpr int32_t kTHREADS = kGATE_WARPS_PER_BLOCK * kWARP;
constexpr unsigned int kFULL_MASK = 0xFFFFFFFFU;

//! Workspace layout: two counters, padding, then one 64-bit status word per tile.
constexpr size_t kSTATUS_OFFSET = 16;

//! Tile status word: flag in the high 32 bits, value (survivor count) in the low 32 bits.
constexpr unsigned long long kFLAG_AGGREGATE = 1ULL << 32;
constexpr unsigned long long kFLAG_PREFIX = 2ULL << 32;
constexpr unsigned long long kVALUE_MASK = 0xFFFFFFFFULL;

inline int32_t numTilesFor(int32_t numActive)
{
    int32_t const tiles = (numActive + kGATE_WARPS_PER_BLOCK - 1) / kGATE_WARPS_PER_BLOCK;
    return tiles > 0 ? tiles : 1;
}

} // namespace kernel_detail
} // namespace gate
} // namespace edge_committee

#include "cascadeGateFix.cuh" // NOLINT: defines kernel_detail::fixSurvivors (GateFix), needs kTHREADS

namespace edge_committee
{
namespace gate
{
namespace kernel_detail
{

//! Load kVEC consecutive logits starting at element j (j is a multiple of kVEC) as float32.
template <typename T, int32_t kVEC>
struct LogitsLoader;

template <>
struct LogitsLoader<float, 1>
{
    __device__ static void load(float const* row, int32_t j, float (&v)[1])
    {
        v[0] = row[j];
    }
};

template <>
struct LogitsLoader<float, 4>
{
    __device__ static void load(float const* row, int32_t j, float (&v)[4])
    {
        float4 const f = *reinterpret_cast<float4 const*>(row + j);
        v[0] = f.x;
        v[1] = f.y;
        v[2] = f.z;
        v[3] = f.w;
    }
};

template <>
struct LogitsLoader<__half, 1>
{
    __device__ static void load(__half const* row, int32_t j, float (&v)[1])
    {
        v[0] = __half2float(row[j]);
    }
};

template <>
struct LogitsLoader<__half, 4>
{
    __device__ static void load(__half const* row, int32_t j, float (&v)[4])
    {
        uint2 const u = *reinterpret_cast<uint2 const*>(row + j);
        __half2 h01;
        __half2 h23;
        static_assert(sizeof(__half2) == sizeof(unsigned int), "half2 is 32 bits");
        memcpy(&h01, &u.x, sizeof(h01));
        memcpy(&h23, &u.y, sizeof(h23));
        float2 const f01 = __half22float2(h01);
        float2 const f23 = __half22float2(h23);
        v[0] = f01.x;
        v[1] = f01.y;
        v[2] = f23.x;
        v[3] = f23.y;
    }
};

//! Load / store kVEC consecutive running-sum probabilities starting at element j.
template <int32_t kVEC>
struct ProbsIO;

template <>
struct ProbsIO<1>
{
    __device__ static void load(float const* row, int32_t j, float (&a)[1])
    {
        a[0] = row[j];
    }
    __device__ static void store(float* row, int32_t j, float const (&a)[1])
    {
        row[j] = a[0];
    }
};

template <>
struct ProbsIO<4>
{
    __device__ static void load(float const* row, int32_t j, float (&a)[4])
    {
        float4 const f = *reinterpret_cast<float4 const*>(row + j);
        a[0] = f.x;
        a[1] = f.y;
        a[2] = f.z;
        a[3] = f.w;
    }
    __device__ static void store(float* row, int32_t j, float const (&a)[4])
    {
        *reinterpret_cast<float4*>(row + j) = make_float4(a[0], a[1], a[2], a[3]);
    }
};

__device__ inline float warpMax(float v)
{
    for (int32_t offset = kWARP / 2; offset > 0; offset >>= 1)
    {
        v = fmaxf(v, __shfl_xor_sync(kFULL_MASK, v, offset));
    }
    return v;
}

__device__ inline float warpSum(float v)
{
    for (int32_t offset = kWARP / 2; offset > 0; offset >>= 1)
    {
        v += __shfl_xor_sync(kFULL_MASK, v, offset);
    }
    return v;
}

//! Largest value with its (lowest) index and the second largest value, duplicates counted.
struct Top2
{
    float top1;
    float top2;
    int32_t argmax;
};

__device__ inline void top2Push(Top2& t, float q, int32_t j)
{
    if (q > t.top1) // strict: an earlier (lower) index keeps a tie
    {
        t.top2 = t.top1;
        t.top1 = q;
        t.argmax = j;
    }
    else if (q > t.top2)
    {
        t.top2 = q;
    }
}

__device__ inline Top2 warpTop2(Top2 t)
{
    for (int32_t offset = kWARP / 2; offset > 0; offset >>= 1)
    {
        float const o1 = __shfl_xor_sync(kFULL_MASK, t.top1, offset);
        float const o2 = __shfl_xor_sync(kFULL_MASK, t.top2, offset);
        int32_t const oi = __shfl_xor_sync(kFULL_MASK, t.argmax, offset);
        float const second = fmaxf(fminf(t.top1, o1), fmaxf(t.top2, o2));
        if (o1 > t.top1 || (o1 == t.top1 && oi < t.argmax))
        {
            t.top1 = o1;
            t.argmax = oi;
        }
        t.top2 = second;
    }
    return t;
}

//! What the exit decision needs from one row, reduced over the warp (identical on every lane).
struct RowSummary
{
    bool finite;
    Top2 top;
    float total;   //!< sum of probSum (> 0 iff some stage contributed)
    float entropy; //!< sum of q log q over q > 0 (neg_entropy only)
};

//! The number of stages that contributed to a row (at least 1) from its warp-reduced sum: each
//! contributing stage added one softmax row summing to 1 (reference.contributions).
__device__ inline float contributions(float total)
{
    return fmaxf(rintf(total), 1.F);
}

//! Per-lane accumulation of one updated probSum element into the summary of q = a / divisor.
__device__ inline void summarize(RowSummary& r, float a, int32_t j, float divisor, bool wantEntropy)
{
    float const q = a / divisor;
    top2Push(r.top, q, j);
    if (wantEntropy && q > 0.F)
    {
        r.entropy += q * logf(q);
    }
}

__device__ inline void reduceSummary(RowSummary& r, bool wantEntropy)
{
    r.top = warpTop2(r.top);
    if (wantEntropy)
    {
        r.entropy = warpSum(r.entropy);
    }
}

//! Confidence, exit decision and the exiting sample's outputs; returns true if the sample survives.
__device__ inline bool finishRow(GateParams const& p, RowSummary const& r, int32_t orig, int32_t lane)
{
    float confidence = r.top.top1;
    if (p.confidence == ConfidenceKind::kMARGIN && p.numClasses >= 2)
    {
        confidence = r.top.top1 - r.top.top2;
    }
    else if (p.confidence == ConfidenceKind::kNEG_ENTROPY)
    {
        confidence = r.entropy;
    }
    bool const last = p.stage == p.numStages - 1;
    bool const exits = last || (r.finite && confidence >= p.threshold);
    if (lane == 0)
    {
        if (!r.finite)
        {
            p.flag[orig] = 1;
        }
        if (exits)
        {
            bool const empty = !(r.total > 0.F);
            p.label[orig] = empty ? -1 : r.top.argmax;
            p.conf[orig] = empty ? __int_as_float(0x7FC00000) : confidence;
            p.exitStage[orig] = p.stage;
        }
    }
    return !exits;
}

//!
//! \brief One warp, one row, with the row held in registers: kCHUNKS chunks of kVEC elements per lane.
//!
//! The logits and the probSum row are loaded once, together (one round of memory latency); the
//! arithmetic is the same, in the same order, as processRowStreaming's.
//!
template <typename T, int32_t kVEC, int32_t kCHUNKS>
__device__ bool processRowCached(GateParams const& p, int32_t row, int32_t orig, int32_t lane)
{
    int32_t const numClasses = p.numClasses;
    T const* x = static_cast<T const*>(p.logits) + static_cast<int64_t>(row) * numClasses;
    float* ps = p.probSum + static_cast<int64_t>(orig) * numClasses;
    constexpr int32_t kSTRIDE = kWARP * kVEC;
    int32_t const first = lane * kVEC;

    float v[kCHUNKS][kVEC];
    float a[kCHUNKS][kVEC];
#pragma unroll
    for (int32_t k = 0; k < kCHUNKS; ++k)
    {
        int32_t const j = first + k * kSTRIDE;
        if (j < numClasses)
        {
            LogitsLoader<T, kVEC>::load(x, j, v[k]);
            ProbsIO<kVEC>::load(ps, j, a[k]);
        }
    }

    bool finite = true;
    float m = -INFINITY;
#pragma unroll
    for (int32_t k = 0; k < kCHUNKS; ++k)
    {
        if (first + k * kSTRIDE < numClasses)
        {
#pragma unroll
            for (int32_t e = 0; e < kVEC; ++e)
            {
                finite = finite && isfinite(v[k][e]);
                m = fmaxf(m, v[k][e]);
            }
        }
    }
    finite = __all_sync(kFULL_MASK, finite);
    m = warpMax(m);

    float s = 0.F;
    if (finite)
    {
#pragma unroll
        for (int32_t k = 0; k < kCHUNKS; ++k)
        {
            if (first + k * kSTRIDE < numClasses)
            {
                float chunk = 0.F;
#pragma unroll
                for (int32_t e = 0; e < kVEC; ++e)
                {
                    chunk += expf(v[k][e] - m);
                }
                s += chunk;
            }
        }
        s = warpSum(s);
    }

    bool const wantEntropy = p.confidence == ConfidenceKind::kNEG_ENTROPY;
    RowSummary r{finite, Top2{-INFINITY, -INFINITY, INT_MAX}, 0.F, 0.F};
#pragma unroll
    for (int32_t k = 0; k < kCHUNKS; ++k)
    {
        int32_t const j = first + k * kSTRIDE;
        if (j < numClasses)
        {
            if (finite)
            {
#pragma unroll
                for (int32_t e = 0; e < kVEC; ++e)
                {
                    a[k][e] += expf(v[k][e] - m) / s;
                }
                ProbsIO<kVEC>::store(ps, j, a[k]);
            }
#pragma unroll
            for (int32_t e = 0; e < kVEC; ++e)
            {
                r.total += a[k][e];
            }
        }
    }
    r.total = warpSum(r.total);
    float const divisor = contributions(r.total); // the stages that contributed, this one included if finite
#pragma unroll
    for (int32_t k = 0; k < kCHUNKS; ++k)
    {
        int32_t const j = first + k * kSTRIDE;
        if (j < numClasses)
        {
#pragma unroll
            for (int32_t e = 0; e < kVEC; ++e)
            {
                summarize(r, a[k][e], j + e, divisor, wantEntropy);
            }
        }
    }
    reduceSummary(r, wantEntropy);
    return finishRow(p, r, orig, lane);
}

//!
//! \brief One warp, one row of any length: three passes over the logits and a fourth over probSum
//! (the later ones hit L1/L2).
//!
template <typename T, int32_t kVEC>
__device__ bool processRowStreaming(GateParams const& p, int32_t row, int32_t orig, int32_t lane)
{
    int32_t const numClasses = p.numClasses;
    T const* x = static_cast<T const*>(p.logits) + static_cast<int64_t>(row) * numClasses;
    float* ps = p.probSum + static_cast<int64_t>(orig) * numClasses;
    constexpr int32_t kSTRIDE = kWARP * kVEC;
    int32_t const first = lane * kVEC;

    // Pass 1: finiteness and the row max.
    bool finite = true;
    float m = -INFINITY;
#pragma unroll 4
    for (int32_t j = first; j < numClasses; j += kSTRIDE)
    {
        float v[kVEC];
        LogitsLoader<T, kVEC>::load(x, j, v);
#pragma unroll
        for (int32_t e = 0; e < kVEC; ++e)
        {
            finite = finite && isfinite(v[e]);
            m = fmaxf(m, v[e]);
        }
    }
    finite = __all_sync(kFULL_MASK, finite);
    m = warpMax(m);

    // Pass 2: the softmax denominator.
    float s = 0.F;
    if (finite)
    {
#pragma unroll 4
        for (int32_t j = first; j < numClasses; j += kSTRIDE)
        {
            float v[kVEC];
            LogitsLoader<T, kVEC>::load(x, j, v);
            float chunk = 0.F;
#pragma unroll
            for (int32_t e = 0; e < kVEC; ++e)
            {
                chunk += expf(v[e] - m);
            }
            s += chunk;
        }
        s = warpSum(s);
    }

    // Pass 3: accumulate into probSum and sum the row (to count the stages that contributed).
    bool const wantEntropy = p.confidence == ConfidenceKind::kNEG_ENTROPY;
    RowSummary r{finite, Top2{-INFINITY, -INFINITY, INT_MAX}, 0.F, 0.F};
#pragma unroll 4
    for (int32_t j = first; j < numClasses; j += kSTRIDE)
    {
        float a[kVEC];
        ProbsIO<kVEC>::load(ps, j, a);
        if (finite)
        {
            float v[kVEC];
            LogitsLoader<T, kVEC>::load(x, j, v);
#pragma unroll
            for (int32_t e = 0; e < kVEC; ++e)
            {
                a[e] += expf(v[e] - m) / s;
            }
            ProbsIO<kVEC>::store(ps, j, a);
        }
#pragma unroll
        for (int32_t e = 0; e < kVEC; ++e)
        {
            r.total += a[e];
        }
    }
    r.total = warpSum(r.total);

    // Pass 4: summarise the running mean q = probSum / n (each lane re-reads what it wrote; L1 hits).
    float const divisor = contributions(r.total);
#pragma unroll 4
    for (int32_t j = first; j < numClasses; j += kSTRIDE)
    {
        float a[kVEC];
        ProbsIO<kVEC>::load(ps, j, a);
#pragma unroll
        for (int32_t e = 0; e < kVEC; ++e)
        {
            summarize(r, a[e], j + e, divisor, wantEntropy);
        }
    }
    reduceSummary(r, wantEntropy);
    return finishRow(p, r, orig, lane);
}

//!
//! \brief One warp processes one active row; returns true (on every lane) if the sample survives.
//!
//! kCHUNKS > 0: the row fits in registers (numClasses <= kCHUNKS * 32 * kVEC); 0: streaming passes.
//!
template <typename T, int32_t kVEC, int32_t kCHUNKS>
__device__ bool processRow(GateParams const& p, int32_t row, int32_t lane)
{
    int32_t const orig = p.active[row];
    if (orig < 0 || orig >= p.numSamples)
    {
        return false; // invalid index: touch nothing, drop the row (the CPU gate reports an error)
    }
    if constexpr (kCHUNKS > 0)
    {
        return processRowCached<T, kVEC, kCHUNKS>(p, row, orig, lane);
    }
    else
    {
        return processRowStreaming<T, kVEC>(p, row, orig, lane);
    }
}

//!
//! \brief Warp 0 of a tile: the number of survivors in all earlier tiles (decoupled look-back).
//!
//! Each lane reads one predecessor's status word, so a step covers 32 tiles: spin until all 32 have
//! published, add up to and including the nearest inclusive prefix, or add all 32 and step back.
//! Tiles before tile 0 read as an inclusive prefix of 0.
//!
__device__ inline int32_t lookBack(unsigned long long* status, int32_t tile, int32_t lane)
{
    int32_t exclusive = 0;
    for (int32_t base = tile;; base -= kWARP)
    {
        int32_t const j = base - 1 - lane;
        unsigned long long word = kFLAG_PREFIX;
        if (j >= 0)
        {
            word = *reinterpret_cast<unsigned long long volatile*>(&status[j]);
            while ((word & ~kVALUE_MASK) == 0) // that tile is running and has not published yet
            {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
                __nanosleep(32);
#endif
                word = *reinterpret_cast<unsigned long long volatile*>(&status[j]);
            }
        }
        unsigned int const prefixes = __ballot_sync(kFULL_MASK, (word & ~kVALUE_MASK) == kFLAG_PREFIX);
        int32_t const stop = prefixes != 0 ? __ffs(static_cast<int32_t>(prefixes)) - 1 : kWARP - 1;
        int32_t value = lane <= stop ? static_cast<int32_t>(word & kVALUE_MASK) : 0;
        for (int32_t offset = kWARP / 2; offset > 0; offset >>= 1)
        {
            value += __shfl_xor_sync(kFULL_MASK, value, offset);
        }
        exclusive += value;
        if (prefixes != 0)
        {
            return exclusive;
        }
    }
}

//!
//! \brief The whole stage in one launch: rows, then stable compaction by decoupled look-back.
//!
template <typename T, int32_t kVEC, int32_t kCHUNKS>
__global__ void __launch_bounds__(kTHREADS)
    cascadeGateKernel(GateParams const p, unsigned int* counters, unsigned long long* status, int32_t numTiles)
{
    __shared__ int32_t sTile;
    __shared__ int32_t sSurvive[kGATE_WARPS_PER_BLOCK];
    __shared__ int32_t sLastBlock;
    __shared__ int32_t sReal;

    int32_t const warp = static_cast<int32_t>(threadIdx.x) / kWARP;
    int32_t const lane = static_cast<int32_t>(threadIdx.x) % kWARP;

    // Tiles are numbered in the order blocks start, so a tile only ever waits on running tiles.
    if (threadIdx.x == 0)
    {
        sTile = static_cast<int32_t>(atomicAdd(&counters[0], 1U));
    }
    __syncthreads();
    int32_t const tile = sTile;
    int32_t const row = tile * kGATE_WARPS_PER_BLOCK + warp;

    bool survive = false;
    if (row < p.numActive)
    {
        survive = processRow<T, kVEC, kCHUNKS>(p, row, lane);
    }
    if (lane == 0)
    {
        sSurvive[warp] = survive ? 1 : 0;
    }
    __syncthreads();

    if (warp == 0)
    {
        bool const mine = lane < kGATE_WARPS_PER_BLOCK && sSurvive[lane] != 0;
        unsigned int const ballot = __ballot_sync(kFULL_MASK, mine);
        int32_t const aggregate = __popc(ballot);
        int32_t const localOffset = __popc(ballot & ((1U << lane) - 1U));
        int32_t exclusive = 0;
        if (tile == 0)
        {
            if (lane == 0)
            {
                atomicExch(&status[0], kFLAG_PREFIX | static_cast<unsigned long long>(aggregate));
            }
        }
        else
        {
            if (lane == 0)
            {
                atomicExch(&status[tile], kFLAG_AGGREGATE | static_cast<unsigned long long>(aggregate));
            }
            exclusive = lookBack(status, tile, lane);
            if (lane == 0)
            {
                atomicExch(&status[tile], kFLAG_PREFIX | static_cast<unsigned long long>(exclusive + aggregate));
            }
        }
        if (lane == 0 && tile == numTiles - 1)
        {
            *p.survivorCount = exclusive + aggregate;
        }
        if (mine)
        {
            p.survivors[exclusive + localOffset] = p.active[tile * kGATE_WARPS_PER_BLOCK + lane];
        }
        if (p.fix.rows > 0)
        {
            // the last block reads every block's survivors (GateFix): each writing lane publishes its own
            __threadfence();
            __syncwarp();
        }
        if (lane == 0)
        {
            __threadfence();
            unsigned int const done = atomicAdd(&counters[1], 1U);
            sLastBlock = (done == static_cast<unsigned int>(numTiles - 1)) ? 1 : 0;
        }
    }
    __syncthreads();

    // The last block to finish: every other block is past its look-back, so reset the workspace.
    if (sLastBlock != 0)
    {
        for (int32_t i = static_cast<int32_t>(threadIdx.x); i < numTiles; i += kTHREADS)
        {
            status[i] = 0ULL;
        }
        if (threadIdx.x == 0)
        {
            counters[0] = 0U;
            counters[1] = 0U;
            sReal = 0;
        }
        if (p.fix.rows > 0)
        {
            __syncthreads();
            fixSurvivors(p, &sReal);
        }
    }
}

template <typename T, int32_t kVEC, int32_t kCHUNKS>
cudaError_t launchKernel(GateParams const& p, void* workspace, int32_t numTiles, cudaStream_t stream)
{
    auto* counters = static_cast<unsigned int*>(workspace);
    auto* status = reinterpret_cast<unsigned long long*>(static_cast<char*>(workspace) + kSTATUS_OFFSET);
    cascadeGateKernel<T, kVEC, kCHUNKS><<<numTiles, kTHREADS, 0, stream>>>(p, counters, status, numTiles);
    return cudaGetLastError();
}

//! Rows of up to 8 chunks per lane (1024 classes vectorized, 256 scalar) are held in registers.
template <typename T, int32_t kVEC>
cudaError_t launch(GateParams const& p, void* workspace, int32_t numTiles, cudaStream_t stream)
{
    int32_t const chunks = (p.numClasses + kWARP * kVEC - 1) / (kWARP * kVEC);
    if (chunks <= 1)
    {
        return launchKernel<T, kVEC, 1>(p, workspace, numTiles, stream);
    }
    if (chunks <= 2)
    {
        return launchKernel<T, kVEC, 2>(p, workspace, numTiles, stream);
    }
    if (chunks <= 4)
    {
        return launchKernel<T, kVEC, 4>(p, workspace, numTiles, stream);
    }
    if (chunks <= 8)
    {
        return launchKernel<T, kVEC, 8>(p, workspace, numTiles, stream);
    }
    return launchKernel<T, kVEC, 0>(p, workspace, numTiles, stream);
}

inline bool aligned(void const* ptr, size_t bytes)
{
    return reinterpret_cast<uintptr_t>(ptr) % bytes == 0;
}

} // namespace kernel_detail

size_t cascadeGateWorkspaceSize(int32_t maxActive) noexcept
{
    int32_t const tiles = kernel_detail::numTilesFor(maxActive < 0 ? 0 : maxActive);
    return kernel_detail::kSTATUS_OFFSET + sizeof(unsigned long long) * static_cast<size_t>(tiles);
}

cudaError_t cascadeGateWorkspaceReset(void* workspace, size_t bytes, cudaStream_t stream) noexcept
{
    return cudaMemsetAsync(workspace, 0, bytes, stream);
}

cudaError_t cascadeGateEnqueue(
    GateParams const& params, void* workspace, size_t workspaceBytes, cudaStream_t stream) noexcept
{
    using namespace kernel_detail;
    if (validateGateParams(params) != nullptr || workspace == nullptr || !aligned(workspace, 16)
        || workspaceBytes < cascadeGateWorkspaceSize(params.numActive))
    {
        return cudaErrorInvalidValue;
    }
    int32_t const numTiles = numTilesFor(params.numActive);
    bool const half = params.logitsType == LogitsType::kHALF;
    bool const vectorized = params.numClasses % 4 == 0 && aligned(params.probSum, 16)
        && aligned(params.logits, half ? 8 : 16);
    if (half)
    {
        return vectorized ? launch<__half, 4>(params, workspace, numTiles, stream)
                          : launch<__half, 1>(params, workspace, numTiles, stream);
    }
    return vectorized ? launch<float, 4>(params, workspace, numTiles, stream)
                      : launch<float, 1>(params, workspace, numTiles, stream);
}

} // namespace gate
} // namespace edge_committee
