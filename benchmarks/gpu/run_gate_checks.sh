#!/usr/bin/env bash
# The cascade gate's GPU checks, in one run on the GPU machine (the device tool), from the repository root:
#   1. install the carried wheels (TensorRT lean runtime, kernel-lens for TensorRT headers),
#   2. build edge_committee._C (CUDA) and libedge_committee_plugins.so + the C++ harness (sm_90),
#   3. pytest tests/gate tests/plugins (CUDA kernel vs NumPy reference, plugin harness with enqueue on the GPU,
#      the lean runtime loading the plugin),
#   4. the lean runtime: load the library, get CascadeGate/1/edge_committee, create plugins, check what it reports,
#   5. compute-sanitizer memcheck (and racecheck on the harness),
#   6. benchmarks/bench_gate.py.
# Results go to $OUT (the device tool's folder; default ./.gpu-out). Wheels: $EC_WHEELS (default .carry/gate-whl),
# fetched beforehand with `pip download --no-deps` for Python 3.12 (see docs/plugin.md).
set -uo pipefail
OUT=${OUT:-$PWD/.gpu-out}
WHEELS=${EC_WHEELS:-.carry/gate-whl}
ARCH=${EC_CUDA_ARCHS:-90}
mkdir -p "$OUT"
exec > >(tee "$OUT/gate_checks.log") 2>&1
export PYTHONUNBUFFERED=1
failures=()
step() { echo; echo "=== $(date +%T) $*"; }
check() { local name=$1; shift; if "$@"; then echo "--- $name: ok"; else echo "--- $name: FAILED"; failures+=("$name"); fi; }

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
nvcc --version | tail -2
python3 -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, torch.version.cuda)"

step "wheels from $WHEELS"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$WHEELS"/tensorrt_lean_*.whl || failures+=("wheels")
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
mkdir -p /tmp/kernel-lens && python3 -m zipfile -e "$WHEELS"/kernel_lens-*.whl /tmp/kernel-lens
HEADERS=$(dirname "$(find /tmp/kernel-lens -name NvInferRuntime.h | head -1)")
echo "TensorRT headers: $HEADERS ($(grep -hE 'define (TRT_MAJOR_ENTERPRISE|TRT_MINOR_ENTERPRISE|NV_TENSORRT_MAJOR) ' "$HEADERS/NvInferVersion.h" | tr -s ' ' | cut -d' ' -f3 | tr '\n' ' '))"

step "build (CUDA archs $ARCH): plugin + C++ harness, then the Python extension"
python3 -c "import sysconfig, os; i = sysconfig.get_paths()['include']; print('Python.h:', os.path.exists(i + '/Python.h'), i)"
# The same cached builds the test fixtures use (tests/plugins/conftest.py, tests/gate/conftest.py).
export EC_TEST_BUILD_CACHE=/tmp/ec-test-build EC_TEST_TENSORRT_HEADERS=$HEADERS EC_TEST_CUDA_ARCHS=$ARCH EC_CUDA_ARCHS=$ARCH
: > /tmp/ec-artifacts.sh
check build-plugin python3 - <<PY
import sys
sys.path.insert(0, ".")
import _build_ext
found = _build_ext.cmake_build_cached("/tmp/ec-test-build", "plugin", ("plugin", "plugin_test"), cuda="ON",
    tensorrt="ON", python=False, tests=True, cuda_archs="$ARCH", tensorrt_root="$HEADERS")
print(found)
open("/tmp/ec-artifacts.sh", "a").write(f"export EC_PLUGIN_LIBRARY={found['plugin']} HARNESS={found['plugin_test']}\n")
PY
check build-extension python3 - <<PY
import sys
sys.path.insert(0, ".")
import _build_ext
found = _build_ext.cmake_build_cached("/tmp/ec-test-build", "ext-cuda", ("extension",), cuda="ON", tensorrt="OFF",
    python=True)
print(found)
open("/tmp/ec-artifacts.sh", "a").write(f"export EC_EXTENSION_PATH={found['extension']}\n")
PY
source /tmp/ec-artifacts.sh
python3 -c "import edge_committee.gate as g; print('backend', g.backend, 'cuda', g.cuda_available())"

step "pytest tests/gate tests/plugins"
check pytest python3 -m pytest tests/gate tests/plugins -q -rs -p no:cacheprovider --junitxml="$OUT/pytest_gate.xml"

step "TensorRT lean runtime: load the plugin library"
check trt-plugin python3 benchmarks/gpu/check_trt_plugin.py

step "C++ harness (plugin enqueue vs the CPU gate)"
check harness "$HARNESS" "$EC_PLUGIN_LIBRARY"

SANITIZER=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer /opt/nvidia/*/compute-sanitizer 2>/dev/null | head -1)
step "compute-sanitizer: ${SANITIZER:-not found}"
if [ -n "$SANITIZER" ]; then
    check memcheck-harness "$SANITIZER" --tool memcheck --error-exitcode 1 --leak-check full \
        --log-file "$OUT/memcheck_harness.log" "$HARNESS" "$EC_PLUGIN_LIBRARY"
    tail -3 "$OUT/memcheck_harness.log"
    check racecheck-harness "$SANITIZER" --tool racecheck --error-exitcode 1 "$HARNESS" "$EC_PLUGIN_LIBRARY" --quick
    check memcheck-python "$SANITIZER" --tool memcheck --error-exitcode 1 --log-file "$OUT/memcheck_python.log" \
        python3 benchmarks/gpu/gate_memcheck.py
    tail -3 "$OUT/memcheck_python.log"
else
    failures+=("compute-sanitizer not found")
fi

step "benchmark"
check benchmark python3 benchmarks/bench_gate.py --json "$OUT/gate_benchmark.json" --markdown "$OUT/gate_benchmark.md"

step "summary"
if [ ${#failures[@]} -eq 0 ]; then echo "ALL GATE CHECKS PASSED"; else echo "FAILED: ${failures[*]}"; exit 1; fi
