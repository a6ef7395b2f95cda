/*
 * edge_committee: the cascade gate on the CPU. See cascadeGateCpu.h.
 */
#include "cascadeGateCpu.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace edge_committee
{
namespace gate
{

float halfBitsToFloat(uint16_t bits) noexcept
{
    uint32_t const sign = static_cast<uint32_t>(bits & 0x8000U) << 16;
    uint32_t const exponent = (bits >> 10) & 0x1FU;
    uint32_t mantissa = bits & 0x3FFU;
    uint32_t out = 0;
    if (exponent == 0x1FU)
    {
        out = sign | 0x7F800000U | (mantissa << 13) | (mantissa != 0 ? 0x00400000U : 0U); // inf / quiet NaN
    }
    else if (exponent != 0)
    {
        out = sign | ((exponent + 112U) << 23) | (mantissa << 13); // normal: rebias 15 -> 127
    }
    else if (mantissa != 0)
    {
        // subnormal half: normalise into a float32 normal number
        int32_t e = -1;
        do
        {
            ++e;
            mantissa <<= 1;
        } while ((mantissa & 0x400U) == 0);
        out = sign | (static_cast<uint32_t>(112 - e) << 23) | ((mantissa & 0x3FFU) << 13);
    }
    else
    {
        out = sign; // signed zero
    }
    float f = 0.F;
    std::memcpy(&f, &out, sizeof(f));
    return f;
}

namespace
{

//! Read one row of logits as float32.
void loadRow(GateParams const& p, int32_t row, float* dst) noexcept
{
    int64_t const offset = static_cast<int64_t>(row) * p.numClasses;
    if (p.logitsType == LogitsType::kHALF)
    {
        auto const* src = static_cast<uint16_t const*>(p.logits) + offset;
        for (int32_t j = 0; j < p.numClasses; ++j)
        {
            dst[j] = halfBitsToFloat(src[j]);
        }
    }
    else
    {
        std::memcpy(dst, static_cast<float const*>(p.logits) + offset, sizeof(float) * p.numClasses);
    }
}

//! Add the softmax of a finite row `x` to `ps` (float32 math, max-subtracted, like reference.softmax).
void addSoftmax(float const* x, float* ps, int32_t numClasses) noexcept
{
    float m = x[0];
    for (int32_t j = 1; j < numClasses; ++j)
    {
        m = x[j] > m ? x[j] : m;
    }
    double sum = 0.0; // double accumulation: within an ulp of NumPy's pairwise float32 sum
    for (int32_t j = 0; j < numClasses; ++j)
    {
        sum += static_cast<double>(std::exp(x[j] - m));
    }
    float const sumF = static_cast<float>(sum);
    for (int32_t j = 0; j < numClasses; ++j)
    {
        ps[j] += std::exp(x[j] - m) / sumF;
    }
}

//! Summary of the running mean q = ps / n of one row, n = the stages that contributed (see contributions).
struct RowSummary
{
    float top1{-std::numeric_limits<float>::infinity()};
    float top2{-std::numeric_limits<float>::infinity()};
    int32_t argmax{-1};
    double total{0.0};      //!< sum of ps (> 0 iff some stage contributed)
    double negEntropy{0.0}; //!< sum of q log q over q > 0
};

//! Sum of one probSum row, in double.
double rowTotal(float const* ps, int32_t numClasses) noexcept
{
    double total = 0.0;
    for (int32_t j = 0; j < numClasses; ++j)
    {
        total += static_cast<double>(ps[j]);
    }
    return total;
}

//!
//! \brief The number of stages that contributed to a row, at least 1, from its sum.
//!
//! Each contributing stage added one softmax row summing to 1, so the rounded sum counts them
//! (reference.contributions); a stage whose logits were non-finite added nothing and does not count.
//!
float contributions(double total) noexcept
{
    double const n = std::nearbyint(total);
    return static_cast<float>(n < 1.0 ? 1.0 : n);
}

RowSummary summarize(float const* ps, int32_t numClasses, float divisor, bool wantEntropy) noexcept
{
    RowSummary s;
    for (int32_t j = 0; j < numClasses; ++j)
    {
        float const q = ps[j] / divisor;
        if (q > s.top1) // strict: ties go to the lowest class index
        {
            s.top2 = s.top1;
            s.top1 = q;
            s.argmax = j;
        }
        else if (q > s.top2)
        {
            s.top2 = q;
        }
        s.total += static_cast<double>(ps[j]);
        if (wantEntropy && q > 0.F)
        {
            s.negEntropy += static_cast<double>(q * std::log(q));
        }
    }
    return s;
}

float confidenceOf(RowSummary const& s, ConfidenceKind kind, int32_t numClasses) noexcept
{
    switch (kind)
    {
    case ConfidenceKind::kMARGIN: return numClasses < 2 ? s.top1 : s.top1 - s.top2;
    case ConfidenceKind::kNEG_ENTROPY: return static_cast<float>(s.negEntropy);
    case ConfidenceKind::kMAX_PROB:
    default: return s.top1;
    }
}

} // namespace

char const* cascadeGateCpu(GateParams const& p) noexcept
{
    try
    {
        if (char const* error = validateGateParams(p))
        {
            return error;
        }
        for (int32_t i = 0; i < p.numActive; ++i)
        {
            if (p.active[i] < 0 || p.active[i] >= p.numSamples)
            {
                return "an active index is outside [0, numSamples)";
            }
        }
        bool const last = p.stage == p.numStages - 1;
        bool const wantEntropy = p.confidence == ConfidenceKind::kNEG_ENTROPY;
        std::vector<float> x(static_cast<size_t>(p.numClasses));
        int32_t count = 0;
        for (int32_t i = 0; i < p.numActive; ++i)
        {
            int32_t const orig = p.active[i];
            float* ps = p.probSum + static_cast<int64_t>(orig) * p.numClasses;
            loadRow(p, i, x.data());
            bool finite = true;
            for (int32_t j = 0; j < p.numClasses && finite; ++j)
            {
                finite = std::isfinite(x[j]);
            }
            if (finite)
            {
                addSoftmax(x.data(), ps, p.numClasses);
            }
            else
            {
                p.flag[orig] = 1; // contributes nothing, never exits early
            }
            float const divisor = contributions(rowTotal(ps, p.numClasses));
            RowSummary const s = summarize(ps, p.numClasses, divisor, wantEntropy);
            float const c = confidenceOf(s, p.confidence, p.numClasses);
            bool const exits = last || (finite && c >= p.threshold);
            if (exits)
            {
                bool const empty = !(s.total > 0.0);
                p.label[orig] = empty ? -1 : s.argmax;
                p.conf[orig] = empty ? std::numeric_limits<float>::quiet_NaN() : c;
                p.exitStage[orig] = p.stage;
            }
            else
            {
                p.survivors[count++] = orig;
            }
        }
        *p.survivorCount = count;
        return nullptr;
    }
    catch (...)
    {
        return "out of host memory";
    }
}

} // namespace gate
} // namespace edge_committee
