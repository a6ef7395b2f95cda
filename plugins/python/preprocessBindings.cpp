/*
 * edge_committee._C: the banded resampler on NumPy arrays (edge_committee/preprocess/cpu.py wraps it).
 */
#include "bindings.h"

#include "resample.h"

#include <pybind11/numpy.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace py = pybind11;

namespace edge_committee
{
namespace python
{
namespace
{

using preprocess::Band;

template <typename T>
using CArray = py::array_t<T, py::array::c_style | py::array::forcecast>;

Band band(CArray<int32_t> const& start, py::array const& coef, char const* name)
{
    if (start.ndim() != 1 || coef.ndim() != 2 || coef.shape(0) != start.shape(0) || coef.shape(1) < 1)
    {
        throw py::value_error(std::string("resample: the ") + name + " band needs start (n,) and coef (n, taps)");
    }
    return Band{start.data(), coef.data(), static_cast<int32_t>(start.shape(0)), static_cast<int32_t>(coef.shape(1))};
}

void checkImages(py::array const& x, char const* fn)
{
    if (x.ndim() != 4)
    {
        throw py::value_error(std::string(fn) + ": images must be (N, H, W, C)");
    }
}

py::array_t<uint8_t> resampleU8(CArray<uint8_t> x, CArray<int32_t> rowStart, CArray<int32_t> rowCoef,
    CArray<int32_t> colStart, CArray<int32_t> colCoef, bool verticalFirst, int32_t bits, bool luma)
{
    checkImages(x, "resample_u8");
    Band const rows = band(rowStart, rowCoef, "row");
    Band const cols = band(colStart, colCoef, "column");
    ssize_t const channels = luma ? 1 : x.shape(3);
    py::array_t<uint8_t> out({x.shape(0), static_cast<ssize_t>(rows.nOut), static_cast<ssize_t>(cols.nOut), channels});
    bool ok = false;
    {
        py::gil_scoped_release release;
        ok = preprocess::resampleFixedU8(x.data(), x.shape(0), static_cast<int32_t>(x.shape(1)),
            static_cast<int32_t>(x.shape(2)), static_cast<int32_t>(x.shape(3)), rows, cols, verticalFirst, bits,
            out.mutable_data(), luma);
    }
    if (!ok)
    {
        throw py::value_error("resample_u8: a band reads outside the image, bits is not in 1..22, or luma was "
                              "asked of an image without 3 channels");
    }
    return out;
}

py::array_t<float> resampleF32(py::array x, CArray<int32_t> rowStart, CArray<float> rowCoef, CArray<int32_t> colStart,
    CArray<float> colCoef, bool verticalFirst)
{
    checkImages(x, "resample_f32");
    bool const isFloat = x.dtype().is(py::dtype::of<float>());
    if (!isFloat && !x.dtype().is(py::dtype::of<uint8_t>()))
    {
        throw py::type_error("resample_f32: images must be uint8 or float32");
    }
    py::array xc = py::array::ensure(x, py::array::c_style);
    Band const rows = band(rowStart, rowCoef, "row");
    Band const cols = band(colStart, colCoef, "column");
    py::array_t<float> out({x.shape(0), static_cast<ssize_t>(rows.nOut), static_cast<ssize_t>(cols.nOut), x.shape(3)});
    bool ok = false;
    {
        py::gil_scoped_release release;
        ok = preprocess::resampleFloat(xc.data(), isFloat, x.shape(0), static_cast<int32_t>(x.shape(1)),
            static_cast<int32_t>(x.shape(2)), static_cast<int32_t>(x.shape(3)), rows, cols, verticalFirst,
            out.mutable_data());
    }
    if (!ok)
    {
        throw py::value_error("resample_f32: a band reads outside the image");
    }
    return out;
}

py::array_t<uint8_t> rgbToLuma(CArray<uint8_t> x)
{
    if (x.ndim() < 1 || x.shape(x.ndim() - 1) != 3)
    {
        throw py::value_error("rgb_to_luma_u8: the last axis must hold 3 channels");
    }
    std::vector<ssize_t> shape(x.shape(), x.shape() + x.ndim());
    shape.back() = 1;
    py::array_t<uint8_t> out(shape);
    {
        py::gil_scoped_release release;
        preprocess::rgbToLumaU8(x.data(), x.size() / 3, out.mutable_data());
    }
    return out;
}

} // namespace

void bindPreprocess(py::module_& m)
{
    m.def("resample_u8", &resampleU8, py::arg("images"), py::arg("row_start"), py::arg("row_coef"),
        py::arg("col_start"), py::arg("col_coef"), py::arg("vertical_first"), py::arg("bits"), py::arg("luma") = false,
        "Pillow's 8-bit two-pass resampling with banded int32 weights k / 2**bits -> uint8 (N, H', W', C); "
        "luma: convert RGB to Pillow's L first (-> one channel).");
    m.def("resample_f32", &resampleF32, py::arg("images"), py::arg("row_start"), py::arg("row_coef"),
        py::arg("col_start"), py::arg("col_coef"), py::arg("vertical_first"),
        "Float two-pass resampling with banded float32 weights -> float32 (N, H', W', C).");
    m.def("rgb_to_luma_u8", &rgbToLuma, py::arg("images"), "Pillow's L24 luma of (..., 3) uint8 -> (..., 1).");
}

} // namespace python
} // namespace edge_committee
