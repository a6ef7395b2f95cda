"""The CascadeGate plugin library: compiles against real TensorRT headers, exports the registry's entry
points, needs no TensorRT library, passes its C++ harness, and loads into a TensorRT (lean) runtime.

The headers come from the kernel-lens wheel at test time (see conftest.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from edge_committee import gate

pytestmark = [pytest.mark.tensorrt, pytest.mark.slow]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} (binutils) is not installed")
    return path


def test_plugin_compiles_against_tensorrt_headers(plugin_build, trt_headers):
    version = (trt_headers / "NvInferVersion.h").read_text()
    major = re.search(r"#define\s+(?:NV_TENSORRT_MAJOR|TRT_MAJOR_ENTERPRISE)\s+(\d+)", version)
    assert major and int(major.group(1)) >= 10
    assert plugin_build["plugin"].is_file()


def test_library_exports_entry_points_and_needs_no_tensorrt(plugin_build):
    lib = str(plugin_build["plugin"])
    symbols = subprocess.run([_tool("nm"), "-D", "--defined-only", lib], capture_output=True, text=True,
                             check=True).stdout
    exported = {line.split()[-1]: line.split()[-2] for line in symbols.splitlines() if line.strip()}
    assert exported.get("getCreators") == "T" and exported.get("setLoggerFinder") == "T", symbols
    assert not [s for s, kind in exported.items() if kind == "T" and s not in ("getCreators", "setLoggerFinder")]
    dynamic = subprocess.run([_tool("readelf"), "-d", lib], capture_output=True, text=True, check=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", dynamic)
    assert needed and not [n for n in needed if n.startswith(("libnvinfer", "libnvonnxparser"))], needed
    assert not [n for n in needed if n.startswith("libcudart")], needed  # the CUDA runtime is linked statically


def test_cpp_harness_against_the_library(plugin_build):
    proc = subprocess.run([str(plugin_build["plugin_test"]), str(plugin_build["plugin"])], capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    verdict = proc.stdout.strip().splitlines()[-1]
    if "enqueue checks SKIPPED" in verdict:  # t3 audit F4: this used to print PASSED as well
        pytest.skip("the harness's host checks passed; its CUDA enqueue checks need a GPU and were skipped")
    assert verdict.startswith("PASSED: 0 failure(s)"), proc.stdout + proc.stderr


def test_python_loader_accepts_the_library(plugin_build, monkeypatch):
    monkeypatch.setenv("EC_PLUGIN_LIBRARY", str(plugin_build["plugin"]))
    assert gate.plugin_library_path() == str(plugin_build["plugin"].resolve())
    assert gate.load_plugin_library() != 0


def _tensorrt_module():
    for name in ("tensorrt_lean_bindings", "tensorrt_lean", "tensorrt"):
        try:
            return __import__(name)
        except ImportError:
            continue
    pytest.skip("no TensorRT Python module (tensorrt, or tensorrt-lean-cu13-bindings + -libs)")


def test_tensorrt_runtime_loads_and_creates_the_plugin(plugin_build):
    trt = _tensorrt_module()
    creator = gate.register_plugin(trt, str(plugin_build["plugin"]))
    assert (creator.name, creator.plugin_version, creator.plugin_namespace) == ("CascadeGate", "1", "edge_committee")
    assert [(f.name, f.type) for f in creator.field_names] == [
        ("threshold", trt.PluginFieldType.FLOAT32), ("stage", trt.PluginFieldType.INT32),
        ("num_stages", trt.PluginFieldType.INT32), ("confidence", trt.PluginFieldType.INT32)]
    plugin = gate.create_plugin(creator, trt, stage=0, num_stages=3, threshold=0.8, kind="margin")
    core = plugin.get_capability_interface(trt.PluginCapabilityType.CORE)
    assert (core.plugin_name, core.plugin_version, core.plugin_namespace) == ("CascadeGate", "1", "edge_committee")
    with pytest.raises(ValueError, match="refused"):
        gate.create_plugin(creator, trt, stage=0, num_stages=3, threshold=float("nan"))
