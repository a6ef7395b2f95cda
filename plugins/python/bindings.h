/*
 * edge_committee._C: one private extension module; each area binds itself here.
 */
#ifndef EDGE_COMMITTEE_PYTHON_BINDINGS_H
#define EDGE_COMMITTEE_PYTHON_BINDINGS_H

#include <pybind11/pybind11.h>

namespace edge_committee
{
namespace python
{

//! gate_step_cpu, and with CUDA gate_step_cuda, workspace helpers, cuda_device_count.
void bindGate(pybind11::module_& m);

//! load_plugin_library and the plugin library's file name.
void bindPlugin(pybind11::module_& m);

//! resample_u8, resample_f32, rgb_to_luma_u8: the banded preprocessing resampler.
void bindPreprocess(pybind11::module_& m);

//! select_grid_front: the threshold-grid tally and Pareto set of cascade selection.
void bindSelect(pybind11::module_& m);

} // namespace python
} // namespace edge_committee

#endif // EDGE_COMMITTEE_PYTHON_BINDINGS_H
