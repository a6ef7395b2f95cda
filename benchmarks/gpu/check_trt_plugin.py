"""Load the CascadeGate plugin library into a TensorRT runtime (the lean one on the GPU machine), get the
creator CascadeGate / 1 / edge_committee, create a plugin with fields, and print what TensorRT reports.

    EC_PLUGIN_LIBRARY=/path/libedge_committee_plugins.so python3 benchmarks/gpu/check_trt_plugin.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edge_committee import gate


def main() -> int:
    trt = gate.plugin.import_tensorrt()
    path = gate.plugin_library_path()
    print(f"TensorRT module {trt.__name__} {trt.__version__}; library {path}")
    creator = gate.register_plugin(trt, path)
    fields = [(f.name, str(f.type)) for f in creator.field_names]
    print(f"creator: name={creator.name} version={creator.plugin_version} namespace={creator.plugin_namespace} "
          f"fields={fields}")
    ok = (creator.name, creator.plugin_version, creator.plugin_namespace) == ("CascadeGate", "1", "edge_committee")
    ok &= [f[0] for f in fields] == ["threshold", "stage", "num_stages", "confidence"]
    for phase in (trt.TensorRTPhase.BUILD, trt.TensorRTPhase.RUNTIME):
        plugin = gate.create_plugin(creator, trt, stage=1, num_stages=3, threshold=0.8, kind="neg_entropy",
                                    phase=phase)
        core = plugin.get_capability_interface(trt.PluginCapabilityType.CORE)
        print(f"plugin ({phase}): name={core.plugin_name} version={core.plugin_version} "
              f"namespace={core.plugin_namespace}")
        ok &= (core.plugin_name, core.plugin_version, core.plugin_namespace) == ("CascadeGate", "1", "edge_committee")
    try:
        gate.create_plugin(creator, trt, stage=0, num_stages=3, threshold=float("nan"))  # the C++ side refuses
        ok = False
        print("invalid fields were accepted")
    except ValueError as exc:
        print(f"invalid fields refused: {exc}")
    print("TRT PLUGIN CHECK:", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
