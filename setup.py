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
    ],
    extras_require={
        "torch": ["torch>=2.2"],
        "video": ["opencv-python-headless>=4.8"],
        # the TensorRT lean runtime: deserializes engines and loads plugin libraries (no builder)
        "trt-lean": ["tensorrt-lean-cu13-bindings>=10.14", "tensorrt-lean-cu13-libs>=10.14"],
        "test": ["pytest>=7", "hypothesis>=6", "onnx_tool>=0.9", "opencv-python-headless>=4.8",
                 "tensorrt-lean-cu13-bindings>=10.14", "tensorrt-lean-cu13-libs>=10.14"],
    },
    entry_points={"console_scripts": ["edge-committee=edge_committee.cli.main:main"]},
    cmdclass=cmdclass,
    ext_modules=ext_modules,
    zip_safe=False,
)
