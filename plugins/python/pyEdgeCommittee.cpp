/*
 * edge_committee._C: the single PYBIND11_MODULE. Python wrappers live in edge_committee/gate/.
 */
#include "bindings.h"

PYBIND11_MODULE(_C, m)
{
    m.doc() = "edge_committee native extension: the cascade gate (CPU and CUDA), the plugin loader, the "
              "preprocessing resampler and the selection tally. Private: use edge_committee.gate and edge_committee.preprocess.";
#ifdef EC_WITH_CUDA
    m.attr("has_cuda") = true;
#else
    m.attr("has_cuda") = false;
#endif
    edge_committee::python::bindGate(m);
    edge_committee::python::bindPlugin(m);
    edge_committee::python::bindPreprocess(m);
    edge_committee::python::bindSelect(m);
}
