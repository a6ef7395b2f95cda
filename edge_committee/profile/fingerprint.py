"""Which device a latency profile was measured on: a fingerprint and a file name derived from it.

A profile holds only on the device, backend and thread count it was measured with, so those
make its *key* (and its file name, ``profiles/<key>.json``): a bundle profiled on the build host
and on a Jetson keeps both side by side. The device in the key is what the backend's factory
reports (``device_info()``), else the host: the CPU, or the board on a Jetson
(``/proc/device-tree/model``, which names the module and so its GPU). Library versions, clocks and
the GPU a run used are recorded too but are not part of the key: the key must be known before
anything runs (``select`` looks the profile up), and a profile after an ONNX Runtime upgrade is
still this device's, with a warning.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import re
import sys
from pathlib import Path

#: packages whose versions a profile records (those that are installed)
_VERSIONED = ("edge-committee", "numpy", "onnxruntime", "onnxruntime-gpu", "tensorrt", "torch")


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").strip("\x00\n ")
    except OSError:
        return None


def cpu_model() -> str:
    """The CPU's marketing name (x86 ``model name``), else the board (``/proc/device-tree/model``
    on a Jetson), else ``platform.processor()``."""
    info = _read("/proc/cpuinfo") or ""
    m = re.search(r"^model name\s*:\s*(.+)$", info, re.MULTILINE)
    if m:
        return m.group(1).strip()
    board = _read("/proc/device-tree/model")
    return board or platform.processor() or platform.machine() or "unknown cpu"


def cpu_clocks_mhz() -> dict:
    """CPU clocks where the kernel exposes them (cpufreq; a VM often does not): MHz."""
    out = {}
    for key, name in (("max_mhz", "cpuinfo_max_freq"), ("cur_mhz", "scaling_cur_freq")):
        text = _read(f"/sys/devices/system/cpu/cpu0/cpufreq/{name}")
        if text and text.isdigit():
            out[key] = int(text) // 1000
    if "cur_mhz" not in out:
        m = re.search(r"^cpu MHz\s*:\s*([\d.]+)$", _read("/proc/cpuinfo") or "", re.MULTILINE)
        if m:
            out["cur_mhz"] = round(float(m.group(1)))
    return out


def usable_cores() -> int:
    """CPU cores this process may run on (affinity), not the machine's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in _VERSIONED:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def backend_device_info(backend: str) -> dict:
    """What the backend's factory says about its device (``device_info()``: GPU name, SM...; a
    member runner class has it, ``{}`` for the CPU); {} when the factory says nothing."""
    from edge_committee.backend import CASCADE_BACKENDS, MEMBER_BACKENDS, unknown_backend

    entry = MEMBER_BACKENDS.get(backend) or CASCADE_BACKENDS.get(backend)
    if entry is None:
        raise unknown_backend(backend)
    module, _, attr = entry.partition(":")
    factory = getattr(importlib.import_module(module), attr)
    info = getattr(factory, "device_info", None)
    return dict(info()) if callable(info) else {}


def cuda_device_in_use() -> dict:
    """The GPU this process has used through PyTorch (name, SM, memory), or {}: recorded after a
    GPU backend ran, without starting CUDA otherwise."""
    torch = sys.modules.get("torch")
    try:
        if torch is None or not torch.cuda.is_initialized():
            return {}
        i = torch.cuda.current_device()
        p = torch.cuda.get_device_properties(i)
        return {"name": p.name, "sm": f"{p.major}.{p.minor}", "memory_mib": p.total_memory // 2**20,
                "multiprocessors": p.multi_processor_count}
    except (RuntimeError, AssertionError, AttributeError):  # a half-working CUDA: the fingerprint goes without it
        return {}


def fingerprint(backend: str, threads: int | None, gate: str | None = None) -> dict:
    """This machine as a member backend sees it (JSON-ready); ``key`` names its profile."""
    device = backend_device_info(backend)
    fp = {
        "backend": backend,
        "threads": threads,
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "clocks": cpu_clocks_mhz(),
        "device": device,
        "gpu": cuda_device_in_use(),
        "machine": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "gate": gate,
        "versions": library_versions(),
    }
    fp["key"] = fingerprint_key(fp)
    return fp


def fingerprint_key(fp: dict) -> str:
    """``<backend>-<device slug>-<cores>c-t<threads>``, e.g. ``onnxrt-amd-epyc-2c-t2``."""
    device = fp.get("device") or {}
    name = device.get("name") or fp.get("cpu") or "unknown"
    sm = f"-sm{str(device['sm']).replace('.', '')}" if device.get("sm") else ""
    threads = fp.get("threads") or "auto"
    return f"{fp['backend']}-{_slug(name)}{sm}-{fp.get('cores', 0)}c-t{threads}"


def describe(fp: dict) -> str:
    """One line for messages: ``onnxrt on AMD EPYC (2 cores), 2 threads``."""
    device = fp.get("device") or {}
    where = device.get("name") or f"{fp.get('cpu', '?')} ({fp.get('cores', '?')} cores)"
    threads = fp.get("threads")
    count = "default threads" if not threads else f"{threads} thread{'s' if threads > 1 else ''}"
    return f"{fp.get('backend', '?')} on {where}, {count}"


def version_changes(recorded: dict, current: dict) -> list[str]:
    """``name a -> b`` for each library whose version differs between two fingerprints."""
    a, b = recorded.get("versions") or {}, current.get("versions") or {}
    return [f"{k} {a[k]} -> {b[k]}" for k in sorted(set(a) & set(b)) if a[k] != b[k]]


def _slug(text: str) -> str:
    text = re.sub(r"\((r|tm)\)|cpu @.*$|processor", "", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:40] or "unknown"
