/*
 * edge_committee._C: loading the TensorRT plugin library (libedge_committee_plugins.so) by path.
 *
 * This only dlopens the library and checks its entry points; registering its creators with TensorRT is
 * trt.get_plugin_registry().load_library(path) (see edge_committee.gate.plugin.register_plugin).
 */
#include "bindings.h"

#include <dlfcn.h>

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

constexpr char const* kPLUGIN_LIBRARY_NAME = "libedge_committee_plugins.so";

constexpr char const* kHOW_TO_BUILD
    = "Build it with TensorRT headers available: `EC_BUILD_TENSORRT=1 TENSORRT_ROOT=/path/to/TensorRT pip install .` "
      "(needs nvcc; on JetPack the headers are found in /usr/include/aarch64-linux-gnu without TENSORRT_ROOT), "
      "or configure plugins/CMakeLists.txt with -DEC_BUILD_TENSORRT=ON -DTENSORRT_ROOT=...";

uintptr_t loadPluginLibrary(std::string const& path)
{
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr)
    {
        char const* reason = dlerror();
        throw std::runtime_error("could not load the plugin library '" + path + "': "
            + (reason != nullptr ? reason : "unknown error") + ". " + kHOW_TO_BUILD);
    }
    for (char const* symbol : {"getCreators", "setLoggerFinder"})
    {
        if (dlsym(handle, symbol) == nullptr)
        {
            dlclose(handle);
            throw std::runtime_error("'" + path + "' does not export " + symbol
                + "; it is not an edge_committee plugin library. " + kHOW_TO_BUILD);
        }
    }
    return reinterpret_cast<uintptr_t>(handle);
}

} // namespace

void bindPlugin(py::module_& m)
{
    m.attr("plugin_library_name") = kPLUGIN_LIBRARY_NAME;
    m.attr("plugin_build_hint") = kHOW_TO_BUILD;
    m.def("load_plugin_library", &loadPluginLibrary, py::arg("path"),
        "dlopen the plugin library, check that it exports getCreators and setLoggerFinder; return the handle. "
        "The error says how to build the library.");
}

} // namespace python
} // namespace edge_committee
