#!/usr/bin/env bash
# The device runtime's GPU checks in ONE device call that always finishes (issues 11 and 22), from the repository root.
# One global deadline (EC_DEADLINE_S, default 540 s, under the tool's 600 s cap); every step's time limit is derived
# from it: min(the step's planned seconds, what is left before the deadline). Steps, in this order:
#   machine       machine_info.sh: GPU, driver, torch, cuda-bindings (nvidia-smi where it exists; else torch: Jetson)
#   wheels        the carried onnx2torch wheel into /tmp/site; the carried bundle and images are there
#   build         edge_committee._C with CUDA for THIS GPU's architecture (90 on H100/H200, 87 on Jetson Orin)
#   pytest        -x: the GPU modules first (test_torch_cuda_gpu.py, test_cuda_gate.py), then the runtime's CPU tests
#                 (the conversion, script and benchmark-smoke tests are CPU-only: CI runs them)
#   bench         benchmarks/gpu/bench_device.py on the example bundle (the figures the docs promise)
#   control       benchmarks/gpu/bench_control.py: K empty members, host vs graph, the per-stage slope
#   memcheck      compute-sanitizer on device_memcheck.py: REPORTED, NEVER FATAL; a line says "skipped" where the
#                 sanitizer refuses the device (the H200 kind: "Device not supported") or is missing
#   imagenet      bench_device.py on the ImageNet-family bundle, only when it was carried
# A step that would get under 10 s is skipped with a line. Fatal steps: wheels, build, pytest, bench, control.
#
#   bash benchmarks/gpu/run_device_checks.sh --dry-run    # prints every step, its limit and command; exit 1 if the
#                                                          # plan does not fit the deadline (runs on any machine)
# Results in $OUT (default ./.gpu-out): device_checks.log, pytest_device.xml, memcheck_device.log,
# device_benchmark_<name>.{json,md}, device_control.{json,md}.
# Carried files (git-ignored, $EC_CARRY, default .carry/issue11): bash benchmarks/gpu/prepare_device_carry.sh
# Device tool call: command "bash benchmarks/gpu/run_device_checks.sh", carry [".carry/issue11"], timeout_s 600.
set -uo pipefail
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
OUT=${OUT:-$PWD/.gpu-out}
CARRY=${EC_CARRY:-.carry/issue11}
ARCH=${EC_CUDA_ARCHS:-auto}
DEADLINE_S=${EC_DEADLINE_S:-540}
MIN_STEP_S=10
mkdir -p "$OUT"
if [ $DRY -eq 0 ]; then exec > >(tee "$OUT/device_checks.log") 2>&1; fi
export PYTHONUNBUFFERED=1
failures=()
notes=()
planned=0
START=$(date +%s)

# run NAME PLANNED_S fatal|report COMMAND...: the command under `timeout`, its limit from the global deadline
run() {
    local name=$1 plan=$2 kind=$3; shift 3
    if [ $DRY -eq 1 ]; then
        planned=$(( planned + plan ))
        printf '%-9s limit %4ss  (%-6s ends by +%4ss)  %s\n' "$name" "$plan" "$kind" "$planned" "$*"
        return 0
    fi
    local left=$(( START + DEADLINE_S - $(date +%s) ))
    local limit=$(( plan < left ? plan : left ))
    echo; echo "=== $(date +%T) (+$(( $(date +%s) - START ))s) $name: limit ${limit}s: $*"
    if [ "$limit" -lt $MIN_STEP_S ]; then
        echo "--- $name: skipped (${left}s left before the ${DEADLINE_S}s deadline)"
        [ "$kind" = fatal ] && failures+=("$name (no time left)")
        return 0
    fi
    timeout -k 5 "$limit" "$@"
    local rc=$?
    if [ $rc -eq 0 ]; then echo "--- $name: ok"; return 0; fi
    local why="exit $rc"; [ $rc -eq 124 ] || [ $rc -eq 137 ] && why="timed out after ${limit}s"
    if [ "$kind" = fatal ]; then echo "--- $name: FAILED ($why)"; failures+=("$name"); else
        echo "--- $name: reported, not fatal ($why)"; notes+=("$name: $why"); fi
    return $rc
}

run machine 10 report bash benchmarks/gpu/machine_info.sh

run wheels 15 fatal python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$CARRY"/whl/*.whl
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
case $CARRY in /*) ;; *) CARRY=$PWD/$CARRY ;; esac
export EC_EXAMPLE_BUNDLE=$CARRY/fashion_mnist EC_FMNIST_DIR=$CARRY/fmnist
run carried 5 fatal ls "$EC_EXAMPLE_BUNDLE/manifest.json" "$EC_FMNIST_DIR/t10k-images-idx3-ubyte.gz"

export EC_TEST_BUILD_CACHE=/tmp/ec-test-build
[ $DRY -eq 0 ] && : > /tmp/ec-artifacts.sh
run build 130 fatal python3 benchmarks/gpu/build_extension.py "$ARCH" /tmp/ec-artifacts.sh
[ $DRY -eq 0 ] && source /tmp/ec-artifacts.sh
[ $DRY -eq 0 ] && python3 -c "import edge_committee.gate as g; print('gate backend', g.backend, 'cuda', g.cuda_available())"

run pytest 150 fatal python3 -m pytest -x -q -rs -p no:cacheprovider --durations=15 \
    --junitxml="$OUT/pytest_device.xml" tests/backend/test_torch_cuda_gpu.py tests/gate/test_cuda_gate.py \
    tests/backend/test_device_runtime.py tests/backend/test_device_buckets.py tests/backend/test_device_learned.py

run bench 105 fatal python3 benchmarks/gpu/bench_device.py --name fashion_mnist --bundle "$EC_EXAMPLE_BUNDLE" \
    --images "$EC_FMNIST_DIR/t10k-images-idx3-ubyte.gz" --labels "$EC_FMNIST_DIR/t10k-labels-idx1-ubyte.gz" \
    --repeats 200 --json "$OUT/device_benchmark_fashion_mnist.json" --markdown "$OUT/device_benchmark_fashion_mnist.md"

run control 25 fatal python3 benchmarks/gpu/bench_control.py --json "$OUT/device_control.json" \
    --markdown "$OUT/device_control.md"

SANITIZER=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer /opt/nvidia/*/compute-sanitizer \
    2>/dev/null | head -1)
[ $DRY -eq 1 ] && SANITIZER=${SANITIZER:-compute-sanitizer}  # the plan shows the step wherever it is made
if [ -n "$SANITIZER" ]; then
    run memcheck 50 report "$SANITIZER" --tool memcheck --error-exitcode 1 --log-file "$OUT/memcheck_device.log" \
        python3 benchmarks/gpu/device_memcheck.py
    if [ $DRY -eq 0 ] && grep -qi "not supported" "$OUT/memcheck_device.log" 2>/dev/null; then
        echo "--- memcheck: skipped: compute-sanitizer refuses this device ($(grep -im1 'not supported' \
"$OUT/memcheck_device.log" | tr -s ' '))"
    elif [ $DRY -eq 0 ]; then tail -3 "$OUT/memcheck_device.log" 2>/dev/null; fi
else
    echo "--- memcheck: skipped: compute-sanitizer not found"
fi

if [ -f "$CARRY/imagenet/bundle/manifest.json" ] || [ $DRY -eq 1 ]; then  # the plan counts it either way
    run imagenet 50 fatal python3 benchmarks/gpu/bench_device.py --name imagenet --skip-overhead --repeats 100 \
        --bundle "$CARRY/imagenet/bundle" --images "$CARRY/imagenet/images" \
        --json "$OUT/device_benchmark_imagenet.json" --markdown "$OUT/device_benchmark_imagenet.md"
else
    echo "--- imagenet: skipped: its bundle was not carried ($CARRY/imagenet/bundle)"
fi

if [ $DRY -eq 1 ]; then
    echo "planned: ${planned}s of limits against the ${DEADLINE_S}s deadline (plus the summary, about a second)"
    if [ $planned -le $DEADLINE_S ]; then echo "PLAN FITS"; exit 0; fi
    echo "PLAN DOES NOT FIT: later steps would be cut or skipped"; exit 1
fi
echo; echo "=== summary ($(( $(date +%s) - START )) s of ${DEADLINE_S} s)"
for n in "${notes[@]}"; do echo "note: $n"; done
if [ ${#failures[@]} -eq 0 ]; then echo "ALL DEVICE CHECKS PASSED"; else echo "FAILED: ${failures[*]}"; exit 1; fi
