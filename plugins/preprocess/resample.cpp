/*
 * Banded separable resampling (see resample.h). Single-threaded by design: a camera pipeline runs
 * frames in parallel instead, and the member backends own the cores.
 */
#include "resample.h"

#include <algorithm>
#include <vector>

namespace edge_committee
{
namespace preprocess
{
namespace
{

//! Pillow's arithmetic: start at one half, round by shifting, clip to 0..255.
struct FixedPoint
{
    using Acc = int32_t;
    using Weight = int32_t;
    using Out = uint8_t;
    int32_t bits;
    Acc init() const
    {
        return Acc{1} << (bits - 1);
    }
    Out finish(Acc acc) const
    {
        if (acc <= 0)
        {
            return 0;
        }
        if (acc >= (Acc{255} << bits))
        {
            return 255;
        }
        return static_cast<Out>(acc >> bits);
    }
};

//! PyTorch's float tensors: no rounding between the passes.
struct Float
{
    using Acc = float;
    using Weight = float;
    using Out = float;
    Acc init() const
    {
        return 0.0F;
    }
    Out finish(Acc acc) const
    {
        return acc;
    }
};

int32_t bandMin(Band const& b)
{
    return b.nOut > 0 ? *std::min_element(b.start, b.start + b.nOut) : 0;
}

int32_t bandEnd(Band const& b)
{
    return b.nOut > 0 ? *std::max_element(b.start, b.start + b.nOut) + b.taps : 0;
}

bool bandFits(Band const& b, int32_t nIn)
{
    if (b.nOut < 0 || b.taps < 1 || b.taps > nIn)
    {
        return false;
    }
    for (int32_t o = 0; o < b.nOut; ++o)
    {
        if (b.start[o] < 0 || b.start[o] + b.taps > nIn)
        {
            return false;
        }
    }
    return true;
}

//! Resize along the width: rows [r0, r1) of one (h, w, c) image -> (r1 - r0, cols.nOut, c).
template <typename A, typename In>
void horizontalPass(A const& a, In const* in, int32_t w, int32_t c, int32_t r0, int32_t r1, Band const& cols,
    int32_t shift, typename A::Out* out)
{
    auto const* coef = static_cast<typename A::Weight const*>(cols.coef);
    int32_t const taps = cols.taps;
    for (int32_t r = r0; r < r1; ++r)
    {
        In const* src = in + static_cast<int64_t>(r) * w * c;
        typename A::Out* dst = out + static_cast<int64_t>(r - r0) * cols.nOut * c;
        for (int32_t o = 0; o < cols.nOut; ++o)
        {
            typename A::Weight const* k = coef + static_cast<int64_t>(o) * taps;
            In const* s = src + static_cast<int64_t>(cols.start[o] - shift) * c;
            if (c == 1)
            {
                typename A::Acc acc = a.init();
                for (int32_t t = 0; t < taps; ++t)
                {
                    acc += k[t] * static_cast<typename A::Acc>(s[t]);
                }
                dst[o] = a.finish(acc);
                continue;
            }
            if (c == 3)
            {
                typename A::Acc a0 = a.init(), a1 = a.init(), a2 = a.init();
                for (int32_t t = 0; t < taps; ++t)
                {
                    a0 += k[t] * static_cast<typename A::Acc>(s[3 * t]);
                    a1 += k[t] * static_cast<typename A::Acc>(s[3 * t + 1]);
                    a2 += k[t] * static_cast<typename A::Acc>(s[3 * t + 2]);
                }
                dst[3 * o] = a.finish(a0);
                dst[3 * o + 1] = a.finish(a1);
                dst[3 * o + 2] = a.finish(a2);
                continue;
            }
            for (int32_t ch = 0; ch < c; ++ch)
            {
                typename A::Acc acc = a.init();
                for (int32_t t = 0; t < taps; ++t)
                {
                    acc += k[t] * static_cast<typename A::Acc>(s[static_cast<int64_t>(t) * c + ch]);
                }
                dst[static_cast<int64_t>(o) * c + ch] = a.finish(acc);
            }
        }
    }
}

//! Resize along the height: columns [c0, c1) of one (h, w, c) image -> (rows.nOut, c1 - c0, c).
template <typename A, typename In>
void verticalPass(A const& a, In const* in, int32_t w, int32_t c, int32_t c0, int32_t c1, Band const& rows,
    int32_t shift, typename A::Out* out, std::vector<typename A::Acc>& acc)
{
    auto const* coef = static_cast<typename A::Weight const*>(rows.coef);
    int64_t const len = static_cast<int64_t>(c1 - c0) * c;
    acc.resize(static_cast<size_t>(len));
    for (int32_t o = 0; o < rows.nOut; ++o)
    {
        std::fill(acc.begin(), acc.end(), a.init());
        typename A::Weight const* k = coef + static_cast<int64_t>(o) * rows.taps;
        for (int32_t t = 0; t < rows.taps; ++t)
        {
            typename A::Weight const kt = k[t];
            if (kt == 0)
            {
                continue;
            }
            In const* src = in + (static_cast<int64_t>(rows.start[o] - shift + t) * w + c0) * c;
            typename A::Acc* dstAcc = acc.data();
            for (int64_t x = 0; x < len; ++x)
            {
                dstAcc[x] += kt * static_cast<typename A::Acc>(src[x]);
            }
        }
        typename A::Out* dst = out + static_cast<int64_t>(o) * len;
        for (int64_t x = 0; x < len; ++x)
        {
            dst[x] = a.finish(acc[static_cast<size_t>(x)]);
        }
    }
}

//! Both passes over n images; the intermediate holds only what the second pass reads.
template <typename A, typename In>
bool resample(A const& a, In const* in, int64_t n, int32_t inH, int32_t inW, int32_t c, Band rows, Band cols,
    bool verticalFirst, typename A::Out* out)
{
    if (n < 0 || c < 1 || !bandFits(rows, inH) || !bandFits(cols, inW))
    {
        return false;
    }
    int64_t const inSize = static_cast<int64_t>(inH) * inW * c;
    int64_t const outSize = static_cast<int64_t>(rows.nOut) * cols.nOut * c;
    // reused across calls: a fresh buffer per frame costs a page fault per 4 KiB (more than the pass itself)
    thread_local std::vector<typename A::Out> tmp;
    thread_local std::vector<typename A::Acc> acc;
    for (int64_t i = 0; i < n; ++i)
    {
        In const* src = in + i * inSize;
        typename A::Out* dst = out + i * outSize;
        if (verticalFirst)
        {
            int32_t const c0 = bandMin(cols), c1 = bandEnd(cols);
            tmp.resize(static_cast<size_t>(rows.nOut) * (c1 - c0) * c);
            verticalPass(a, src, inW, c, c0, c1, rows, 0, tmp.data(), acc);
            horizontalPass(a, tmp.data(), c1 - c0, c, 0, rows.nOut, cols, c0, dst);
        }
        else
        {
            int32_t const r0 = bandMin(rows), r1 = bandEnd(rows);
            tmp.resize(static_cast<size_t>(r1 - r0) * cols.nOut * c);
            horizontalPass(a, src, inW, c, r0, r1, cols, 0, tmp.data());
            verticalPass(a, tmp.data(), cols.nOut, c, 0, cols.nOut, rows, r0, dst, acc);
        }
    }
    return true;
}

} // namespace

bool resampleFixedU8(uint8_t const* in, int64_t n, int32_t inH, int32_t inW, int32_t c, Band rows, Band cols,
    bool verticalFirst, int32_t bits, uint8_t* out, bool luma)
{
    if (bits < 1 || bits > 22 || (luma && c != 3))
    {
        return false;
    }
    if (!luma)
    {
        return resample(FixedPoint{bits}, in, n, inH, inW, c, rows, cols, verticalFirst, out);
    }
    thread_local std::vector<uint8_t> gray; // one frame's luma at a time, reused across calls
    int64_t const pixels = static_cast<int64_t>(inH) * inW;
    gray.resize(static_cast<size_t>(pixels));
    for (int64_t i = 0; i < n; ++i)
    {
        rgbToLumaU8(in + i * pixels * 3, pixels, gray.data());
        if (!resample(FixedPoint{bits}, gray.data(), 1, inH, inW, 1, rows, cols, verticalFirst,
                out + i * static_cast<int64_t>(rows.nOut) * cols.nOut))
        {
            return false;
        }
    }
    return true;
}

bool resampleFloat(void const* in, bool inIsFloat, int64_t n, int32_t inH, int32_t inW, int32_t c, Band rows,
    Band cols, bool verticalFirst, float* out)
{
    if (inIsFloat)
    {
        return resample(Float{}, static_cast<float const*>(in), n, inH, inW, c, rows, cols, verticalFirst, out);
    }
    return resample(Float{}, static_cast<uint8_t const*>(in), n, inH, inW, c, rows, cols, verticalFirst, out);
}

void rgbToLumaU8(uint8_t const* in, int64_t count, uint8_t* out)
{
    for (int64_t i = 0; i < count; ++i)
    {
        uint32_t const l = 19595U * in[3 * i] + 38470U * in[3 * i + 1] + 7471U * in[3 * i + 2] + 0x8000U;
        out[i] = static_cast<uint8_t>(l >> 16);
    }
}

} // namespace preprocess
} // namespace edge_committee
