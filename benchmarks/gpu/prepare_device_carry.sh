#!/usr/bin/env bash
# Lay out what benchmarks/gpu/run_device_checks.sh needs on the GPU machine, under .carry/issue11 (git-ignored),
# from the repository root on the CPU machine (needs registry access for one wheel, and the example bundle built):
#   edge-committee build examples/fashion_mnist/committee.yaml --out out/fashion_mnist   # once, ~2-9 minutes
#   bash benchmarks/gpu/prepare_device_carry.sh [BUNDLE_DIR] [IMAGENET_BUNDLE_DIR]
# The ImageNet-family part is optional: its bundle (built from examples/imagenet/ when that example exists) and the
# photos in examples/imagenet/build/images are copied when given and present; mind the 64 MiB the tool carries.
set -euo pipefail
CARRY=${EC_CARRY:-.carry/issue11}
BUNDLE=${1:-out/fashion_mnist}
IMAGENET=${2:-}
FMNIST=${EC_FMNIST_SOURCE:-/usr/share/datasets/fashion-mnist}
rm -rf "$CARRY" && mkdir -p "$CARRY/whl" "$CARRY/fmnist"
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 -d "$CARRY/whl" onnx2torch==1.5.15
test -f "$BUNDLE/manifest.json" || { echo "no bundle at $BUNDLE: build it first (see above)"; exit 1; }
cp -r "$BUNDLE" "$CARRY/fashion_mnist"
cp "$FMNIST"/t10k-images-idx3-ubyte.gz "$FMNIST"/t10k-labels-idx1-ubyte.gz "$CARRY/fmnist/"
if [ -n "$IMAGENET" ] && [ -f "$IMAGENET/manifest.json" ]; then
    mkdir -p "$CARRY/imagenet/images"
    cp -r "$IMAGENET" "$CARRY/imagenet/bundle"
    cp examples/imagenet/build/images/*/*.jpg "$CARRY/imagenet/images/"
fi
du -sh "$CARRY"
