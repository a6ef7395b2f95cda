#!/usr/bin/env bash
# What the device checks ran on: GPU, driver, nvcc, Python, torch, cuda-bindings (H100/H200: nvidia-smi; a Jetson: torch).
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null \
    || echo "nvidia-smi: not available (a Jetson?)"
nvcc --version 2>/dev/null | tail -1
python3 -c "import sys, torch; p = torch.cuda.get_device_properties(0); print(sys.version.split()[0], 'torch', \
torch.__version__, 'CUDA', torch.version.cuda, '|', p.name, 'sm_%d%d' % (p.major, p.minor))" 2>&1 | tail -1
python3 -c "import importlib.metadata as m; import cuda.bindings; print('cuda-bindings', m.version('cuda-bindings'))" \
    2>/dev/null || echo "cuda-bindings: not importable (graph mode will fall back to the host loop)"
