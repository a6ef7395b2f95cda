#!/usr/bin/env bash
# The device runtime's GPU checks (issue 11), in one run on the GPU machine (the device tool), from the repository root:
#   1. install the carried wheel (onnx2torch) into /tmp/site,
#   2. build edge_committee._C with CUDA (the gate kernel; same cached build as run_gate_checks.sh),
#   3. pytest tests/backend and tests/gate/test_cuda_gate.py: the CPU tests and the GPU ones (known-logit cascades in graph and host modes with the CUDA
#      gate, NaN/Inf, batch 0/1/odd/over max_batch; learned committees, their torch-op gate captured into every stage
#      graph, vs run_learned_cascade (test_learned_table_cascades); the example bundle on its full test split vs the NumPy reference
#      and vs ONNX Runtime; FP16 vs FP32; CUDA tensors in and out; the NVRTC kernel vs its torch twin),
#   4. compute-sanitizer memcheck on benchmarks/gpu/device_memcheck.py (graph and host modes),
#   5. benchmarks/gpu/bench_device.py on the example bundle (per-stage overhead host vs graph at batch 1; cascade vs
#      largest member, batch 1 latency and batch 64/256 throughput, FP32 and FP16), and on the ImageNet-family bundle
#      when examples/imagenet/ exists and its bundle was carried.
# Results go to $OUT (default ./.gpu-out): device_checks.log, pytest_device.xml, memcheck_device.log,
# device_benchmark_<name>.{json,md}. Each step has a time limit (200+180+120+150[+120] s: up to 650-770 s, more than a 600 s device call).
#
# What is carried (git-ignored, under $EC_CARRY, default .carry/issue11); make it on the CPU machine with
#   bash benchmarks/gpu/prepare_device_carry.sh
# which runs exactly:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 -d .carry/issue11/whl onnx2torch==1.5.15
#   cp -r out/fashion_mnist .carry/issue11/fashion_mnist     # edge-committee build examples/fashion_mnist/committee.yaml --out out/fashion_mnist
#   cp /usr/share/datasets/fashion-mnist/t10k-*-idx*-ubyte.gz .carry/issue11/fmnist/
#   [ImageNet part, optional: cp -r out/imagenet .carry/issue11/imagenet/bundle; cp examples/imagenet/build/images/*/*.jpg .carry/issue11/imagenet/images/]
# onnx2torch is the only missing package: its needs (numpy, onnx, torch, torchvision) and cuda-bindings, NVRTC, pytest,
# hypothesis, onnxruntime are on the GPU machine. About 20 MB travel (limit 64 MiB with the working tree).
# Device tool call: command "bash benchmarks/gpu/run_device_checks.sh", carry [".carry/issue11"], timeout_s 600.
set -uo pipefail
OUT=${OUT:-$PWD/.gpu-out}
CARRY=${EC_CARRY:-.carry/issue11}
ARCH=${EC_CUDA_ARCHS:-90}
mkdir -p "$OUT"
exec > >(tee "$OUT/device_checks.log") 2>&1
export PYTHONUNBUFFERED=1
failures=()
START=$(date +%s)
step() { echo; echo "=== $(date +%T) (+$(( $(date +%s) - START ))s) $*"; }
check() { local name=$1; shift; if "$@"; then echo "--- $name: ok"; else echo "--- $name: FAILED ($?)"; failures+=("$name"); fi; }

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
nvcc --version | tail -1
python3 -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, torch.version.cuda)"
python3 -c "import cuda.bindings, importlib.metadata as m; print('cuda-bindings', m.version('cuda-bindings'))" \
    || echo "cuda-bindings: not importable (graph mode will fall back to the host loop)"

step "wheels from $CARRY/whl"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$CARRY"/whl/*.whl || failures+=("wheels")
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
export EC_EXAMPLE_BUNDLE=$PWD/$CARRY/fashion_mnist EC_FMNIST_DIR=$PWD/$CARRY/fmnist
ls "$EC_EXAMPLE_BUNDLE/manifest.json" "$EC_FMNIST_DIR"/t10k-images-idx3-ubyte.gz || failures+=("carried data")

step "build edge_committee._C with CUDA (archs $ARCH)"
export EC_TEST_BUILD_CACHE=/tmp/ec-test-build EC_CUDA_ARCHS=$ARCH
: > /tmp/ec-artifacts.sh
check build-extension timeout 200 python3 - <<PY
import sys
sys.path.insert(0, ".")
import _build_ext
found = _build_ext.cmake_build_cached("/tmp/ec-test-build", "ext-cuda", ("extension",), cuda="ON", tensorrt="OFF",
    python=True, cuda_archs="$ARCH")
print(found)
open("/tmp/ec-artifacts.sh", "a").write(f"export EC_EXTENSION_PATH={found['extension']}\n")
PY
source /tmp/ec-artifacts.sh
python3 -c "import edge_committee.gate as g; print('gate backend', g.backend, 'cuda', g.cuda_available())"

step "pytest tests/backend and the CUDA gate (CPU and GPU tests)"
# tests/gate/test_cuda_gate.py: the gate kernel against the reference, including finding 19 (the mean over
# the stages that contributed), which changed the kernel after its last GPU run
check pytest timeout 180 python3 -m pytest tests/backend tests/gate/test_cuda_gate.py -q -rs -p no:cacheprovider \
    --junitxml="$OUT/pytest_device.xml"

SANITIZER=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer /opt/nvidia/*/compute-sanitizer 2>/dev/null | head -1)
step "compute-sanitizer memcheck: ${SANITIZER:-not found}"
if [ -n "$SANITIZER" ]; then
    check memcheck timeout 120 "$SANITIZER" --tool memcheck --error-exitcode 1 --log-file "$OUT/memcheck_device.log" \
        python3 benchmarks/gpu/device_memcheck.py
    tail -3 "$OUT/memcheck_device.log"
else
    failures+=("compute-sanitizer not found")
fi

step "benchmark: example bundle"
check bench-fashion-mnist timeout 150 python3 benchmarks/gpu/bench_device.py --name fashion_mnist \
    --bundle "$EC_EXAMPLE_BUNDLE" --images "$EC_FMNIST_DIR/t10k-images-idx3-ubyte.gz" \
    --labels "$EC_FMNIST_DIR/t10k-labels-idx1-ubyte.gz" \
    --json "$OUT/device_benchmark_fashion_mnist.json" --markdown "$OUT/device_benchmark_fashion_mnist.md"

step "benchmark: ImageNet family"
if [ -d examples/imagenet ] && [ -f "$CARRY/imagenet/bundle/manifest.json" ]; then
    check bench-imagenet timeout 120 python3 benchmarks/gpu/bench_device.py --name imagenet --skip-overhead \
        --repeats 100 --bundle "$CARRY/imagenet/bundle" --images "$CARRY/imagenet/images" \
        --json "$OUT/device_benchmark_imagenet.json" --markdown "$OUT/device_benchmark_imagenet.md"
else
    echo "skipped: needs examples/imagenet/ in the repository and its bundle carried in $CARRY/imagenet/bundle"
fi

step "summary ($(( $(date +%s) - START )) s)"
if [ ${#failures[@]} -eq 0 ]; then echo "ALL DEVICE CHECKS PASSED"; else echo "FAILED: ${failures[*]}"; exit 1; fi
