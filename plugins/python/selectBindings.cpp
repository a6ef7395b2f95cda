/*
 * edge_committee._C: the threshold-grid tally of cascade selection (edge_committee/select/search.py wraps it).
 *
 * For a member sequence of K stages with D = K - 1 thresholded stages, sample i sits in bucket b_k(i) of
 * stage k's grid (g_k thresholds) and continues past stage k under threshold index j_k iff b_k(i) <= j_k.
 * With the inclusive cumulative sums P_k[w](j_0..j_k) = sum_i w(i) [b_0(i) <= j_0, ..., b_k(i) <= j_k],
 *
 *     N acc(j)  = base_acc + sum_k P_k[d_k](j_0..j_k)          (d_k = a_{k+1} - a_k, in {-1, 0, 1})
 *     N cost(j) = (((base_cost + s_1 P_0[1]) + s_2 P_1[1]) + ...)   (that order: bit-identical to NumPy)
 *
 * and the Pareto set of the grid is the cheapest point of every accuracy count that is cheaper than every
 * higher count (ties: the lowest flat index). Same figures as search.tally + search.grid_front, without
 * materialising the (g_0 x ... x g_{D-1}) accuracy and cost grids.
 */
#include "bindings.h"

#include <pybind11/numpy.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

namespace py = pybind11;

namespace edge_committee
{
namespace python
{
namespace
{

template <typename T>
using CArray = py::array_t<T, py::array::c_style | py::array::forcecast>;

//! Inclusive cumulative sum of a row-major array of the given dims along every axis, in place.
void cumulate(std::vector<int32_t>& x, std::vector<int64_t> const& dims)
{
    int64_t const total = static_cast<int64_t>(x.size());
    int64_t inner = total;
    for (int64_t const len : dims)
    {
        inner /= len; // elements per step along this axis
        int64_t const block = len * inner;
        for (int64_t o = 0; o < total; o += block)
        {
            int32_t* base = x.data() + o;
            for (int64_t j = 1; j < len; ++j)
            {
                int32_t* row = base + j * inner;
                int32_t const* prev = row - inner;
                for (int64_t s = 0; s < inner; ++s)
                {
                    row[s] += prev[s];
                }
            }
        }
    }
}

py::tuple gridFront(CArray<int32_t> buckets, CArray<int64_t> sizes, CArray<int8_t> diffs, int64_t baseAcc,
    double baseCost, CArray<double> stageCost)
{
    if (buckets.ndim() != 2 || diffs.ndim() != 2 || sizes.ndim() != 1 || stageCost.ndim() != 1
        || buckets.shape(0) != sizes.shape(0) || diffs.shape(0) != sizes.shape(0)
        || stageCost.shape(0) != sizes.shape(0) || diffs.shape(1) != buckets.shape(1) || sizes.shape(0) < 1)
    {
        throw py::value_error("grid_front: needs buckets (D, N), sizes (D,), diffs (D, N), stage_cost (D,), D >= 1");
    }
    int64_t const d = sizes.shape(0);
    int64_t const n = buckets.shape(1);
    if (n >= (int64_t{1} << 31))
    {
        throw py::value_error("grid_front: at most 2^31 - 1 samples");
    }
    std::vector<int64_t> dims(sizes.data(), sizes.data() + d);
    std::vector<int64_t> cells(d);
    int64_t prod = 1;
    for (int64_t k = 0; k < d; ++k)
    {
        if (dims[k] < 1 || prod > (int64_t{1} << 31) / dims[k])
        {
            throw py::value_error("grid_front: grid sizes must be >= 1 and hold fewer than 2^31 cells");
        }
        prod *= dims[k];
        cells[k] = prod;
    }
    int32_t const* b = buckets.data();
    int8_t const* w = diffs.data();
    double const* s = stageCost.data();
    for (int64_t k = 0; k < d; ++k)
    {
        for (int64_t i = 0; i < n; ++i)
        {
            if (b[k * n + i] < 0 || b[k * n + i] >= dims[k])
            {
                throw py::value_error("grid_front: a bucket lies outside its grid");
            }
        }
    }
    std::vector<int64_t> frontIndex;
    std::vector<int64_t> frontAcc;
    std::vector<double> frontCost;
    bool invalid = false;
    {
        py::gil_scoped_release release;
        // histograms of the joint buckets of stages 0..k, then their cumulative sums
        std::vector<std::vector<int32_t>> acc(d), reach(d);
        std::vector<int64_t> flat(n, 0);
        for (int64_t k = 0; k < d; ++k)
        {
            acc[k].assign(cells[k], 0);
            reach[k].assign(cells[k], 0);
            for (int64_t i = 0; i < n; ++i)
            {
                flat[i] = flat[i] * dims[k] + b[k * n + i];
                reach[k][flat[i]] += 1;
                acc[k][flat[i]] += w[k * n + i];
            }
            std::vector<int64_t> const sub(dims.begin(), dims.begin() + k + 1);
            cumulate(acc[k], sub);
            cumulate(reach[k], sub);
        }
        // every grid point: the last axis innermost, the earlier stages' terms once per outer index
        double const inf = std::numeric_limits<double>::infinity();
        std::vector<double> cheapest(n + 1, inf);
        std::vector<int64_t> where(n + 1, -1);
        int64_t const last = dims[d - 1];
        int64_t const outer = d > 1 ? cells[d - 2] : 1;
        std::vector<int64_t> stride(d, 1); // cells of P_k per step of the outer index: outer / stride[k]
        for (int64_t k = d - 2; k >= 0; --k)
        {
            stride[k] = (k == d - 2) ? 1 : stride[k + 1] * dims[k + 1];
        }
        bool bad = false;
        for (int64_t o = 0; o < outer; ++o)
        {
            int64_t a0 = baseAcc;
            double c0 = baseCost;
            for (int64_t k = 0; k + 1 < d; ++k)
            {
                int64_t const idx = o / stride[k];
                a0 += acc[k][idx];
                c0 = c0 + s[k] * static_cast<double>(reach[k][idx]);
            }
            int32_t const* aRow = acc[d - 1].data() + o * last;
            int32_t const* rRow = reach[d - 1].data() + o * last;
            double const sl = s[d - 1];
            for (int64_t j = 0; j < last; ++j)
            {
                int64_t const a = a0 + aRow[j];
                double const c = c0 + sl * static_cast<double>(rRow[j]);
                if (a < 0 || a > n)
                {
                    bad = true;
                    continue;
                }
                if (c < cheapest[a])
                {
                    cheapest[a] = c;
                    where[a] = o * last + j;
                }
            }
        }
        if (!bad)
        {
            double above = inf;
            for (int64_t level = n; level >= 0; --level)
            {
                if (cheapest[level] < above)
                {
                    frontIndex.push_back(where[level]);
                    frontAcc.push_back(level);
                    frontCost.push_back(cheapest[level]);
                    above = cheapest[level];
                }
            }
        }
        invalid = bad;
    }
    if (invalid)
    {
        throw py::value_error("grid_front: an accuracy count fell outside [0, N] (base_acc or diffs inconsistent)");
    }
    int64_t const p = static_cast<int64_t>(frontIndex.size());
    py::array_t<int64_t> outIndex(p), outAcc(p);
    py::array_t<double> outCost(p);
    for (int64_t i = 0; i < p; ++i) // by increasing count, as search.grid_front
    {
        outIndex.mutable_data()[i] = frontIndex[p - 1 - i];
        outAcc.mutable_data()[i] = frontAcc[p - 1 - i];
        outCost.mutable_data()[i] = frontCost[p - 1 - i];
    }
    return py::make_tuple(outIndex, outAcc, outCost);
}

//! 1 + #{values < conf} where ok, else 0 (search.make_grid's buckets); values sorted ascending.
py::array_t<int32_t> buckets(CArray<float> conf, CArray<bool> ok, CArray<float> values)
{
    if (conf.ndim() != 1 || ok.ndim() != 1 || values.ndim() != 1 || ok.shape(0) != conf.shape(0))
    {
        throw py::value_error("buckets: needs conf (N,), ok (N,) and sorted values (G,)");
    }
    int64_t const n = conf.shape(0);
    py::array_t<int32_t> out(n);
    float const* c = conf.data();
    bool const* k = ok.data();
    float const* v = values.data();
    float const* vEnd = v + values.shape(0);
    int32_t* o = out.mutable_data();
    {
        py::gil_scoped_release release;
        for (int64_t i = 0; i < n; ++i)
        {
            // lower_bound: the first value >= conf, i.e. the count of values < conf (NaN: none)
            o[i] = k[i] ? static_cast<int32_t>(1 + (std::lower_bound(v, vEnd, c[i]) - v)) : 0;
        }
    }
    return out;
}

//! Row maximum and the first column attaining it of an (N, C) float32 array (NumPy's max, argmax).
py::tuple maxArgmax(CArray<float> x)
{
    if (x.ndim() != 2 || x.shape(1) < 1)
    {
        throw py::value_error("max_argmax: needs (N, C) with C >= 1");
    }
    int64_t const n = x.shape(0);
    int64_t const c = x.shape(1);
    py::array_t<float> best(n);
    py::array_t<int64_t> where(n);
    float const* p = x.data();
    float* b = best.mutable_data();
    int64_t* w = where.mutable_data();
    {
        py::gil_scoped_release release;
        for (int64_t i = 0; i < n; ++i)
        {
            float const* row = p + i * c;
            float m = row[0];
            int64_t a = 0;
            bool nan = m != m;
            for (int64_t j = 1; j < c && !nan; ++j)
            {
                if (row[j] > m)
                {
                    m = row[j];
                    a = j;
                }
                else if (row[j] != row[j])
                {
                    m = row[j];
                    a = j;
                    nan = true; // NumPy: the first NaN is the maximum
                }
            }
            b[i] = m;
            w[i] = a;
        }
    }
    return py::make_tuple(best, where);
}

} // namespace

void bindSelect(py::module_& m)
{
    m.def("select_buckets", &buckets, py::arg("conf"), py::arg("ok"), py::arg("values"),
        "Threshold-grid bucket of every sample: 1 + #{values < conf} where ok, else 0");
    m.def("select_max_argmax", &maxArgmax, py::arg("x"),
        "(row max, first argmax) of an (N, C) float32 array, as NumPy's max and argmax");
    m.def("select_grid_front", &gridFront, py::arg("buckets"), py::arg("sizes"), py::arg("diffs"),
        py::arg("base_acc"), py::arg("base_cost"), py::arg("stage_cost"),
        "Pareto set of a cascade's threshold grid: (flat indices, accuracy counts, N x mean costs), by "
        "increasing count; the same points as search.tally + search.grid_front");
}

} // namespace python
} // namespace edge_committee
