/*
 * Banded separable resampling of interleaved images: the execution of a member's preprocessing plan
 * (edge_committee/preprocess/plan.py) on the CPU. No TensorRT or CUDA headers.
 *
 * One pass resizes one axis: output index o reads the taps start[o] .. start[o] + taps - 1 of the input
 * axis with the weights coef[o * taps + t]. The plan folds crops and zero padding into these tables, so a
 * pass computes only the rows (or columns) that survive the centre crop: cost is proportional to
 * output x taps, never to the full resized image.
 */
#ifndef EDGE_COMMITTEE_PREPROCESS_RESAMPLE_H
#define EDGE_COMMITTEE_PREPROCESS_RESAMPLE_H

#include <cstdint>

namespace edge_committee
{
namespace preprocess
{

//! One axis' band: nOut output indices, each reading `taps` consecutive inputs from start[o].
struct Band
{
    int32_t const* start; //!< (nOut,) first input index of each output index
    void const* coef;     //!< (nOut, taps): int32 fixed-point weights or float weights
    int32_t nOut;
    int32_t taps;
};

//! Pillow's 8-bit resampling: int32 weights k / 2^bits, each pass rounds half up and clips to 0..255.
//! in: (n, inH, inW, c) uint8; out: (n, rows.nOut, cols.nOut, c) uint8. verticalFirst picks the order of the
//! two passes (Pillow 13 runs the vertical pass first for some size pairs). luma: the RGB input (c = 3) is first
//! converted to Pillow's L (rgbToLumaU8), and out has one channel. Returns false on bad tables.
bool resampleFixedU8(uint8_t const* in, int64_t n, int32_t inH, int32_t inW, int32_t c, Band rows, Band cols,
    bool verticalFirst, int32_t bits, uint8_t* out, bool luma = false);

//! Float resampling without rounding (PyTorch's float tensors): float weights, float32 accumulation.
//! in: (n, inH, inW, c) uint8 or float32 (inIsFloat); out: (n, rows.nOut, cols.nOut, c) float32.
bool resampleFloat(void const* in, bool inIsFloat, int64_t n, int32_t inH, int32_t inW, int32_t c, Band rows,
    Band cols, bool verticalFirst, float* out);

//! Pillow's L24 luma: L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16, on (count, 3) uint8 pixels.
void rgbToLumaU8(uint8_t const* in, int64_t count, uint8_t* out);

} // namespace preprocess
} // namespace edge_committee

#endif // EDGE_COMMITTEE_PREPROCESS_RESAMPLE_H
