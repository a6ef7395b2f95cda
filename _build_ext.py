"""setuptools ``build_ext`` that builds the native code in ``plugins/`` with CMake.

Wire it in ``setup.py``::

    sys.path.insert(0, os.path.dirname(__file__))
    from _build_ext import CMakeBuildExt, cmake_extensions
    setup(..., cmdclass={"build_ext": CMakeBuildExt}, ext_modules=cmake_extensions())

It builds ``edge_committee/_C`` (pybind11; the C++ gate, and the CUDA gate when nvcc is found) and, when
TensorRT headers are found, ``edge_committee/lib/libedge_committee_plugins.so``. The package works
without them (the gate falls back to NumPy), so a missing tool or a failed build only prints a warning,
unless ``EC_REQUIRE_EXTENSION=1``.

Environment switches (unset = automatic):

====================  ===========================================================================
EC_BUILD_EXTENSION    0: skip the native build entirely
EC_REQUIRE_EXTENSION  1: a failed native build fails the install
EC_BUILD_CUDA         0/1: without / with the CUDA gate (default: if nvcc is found)
EC_BUILD_TENSORRT     0/1: without / with the TensorRT plugin (default: if TensorRT headers are found)
TENSORRT_ROOT         TensorRT root or header folder (JetPack's /usr/include/aarch64-linux-gnu is searched)
EC_CUDA_ARCHS         e.g. "87;90" (default: those of 72, 87, 90 that nvcc supports)
EC_BUILD_JOBS         parallel build jobs (default: CPU count)
EC_CMAKE_ARGS         extra CMake arguments, shell-quoted
====================  ===========================================================================

Never imports torch or tensorrt.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from setuptools import Extension
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
NATIVE_SOURCE_DIR = ROOT / "plugins"
EXTENSION_NAME = "edge_committee._C"
PLUGIN_LIBRARY_NAME = "libedge_committee_plugins.so"


class NativeBuildError(RuntimeError):
    """The native build could not run or failed; the message says why."""


class CMakeExtension(Extension):
    """An extension built by CMake from ``sourcedir`` (no sources for setuptools to compile)."""

    def __init__(self, name: str, sourcedir: Path | str) -> None:
        # optional: setuptools then tolerates a missing build output (unless EC_REQUIRE_EXTENSION=1).
        super().__init__(name, sources=[], optional=os.environ.get("EC_REQUIRE_EXTENSION", "").strip() != "1")
        self.sourcedir = str(sourcedir)


def cmake_extensions() -> list[Extension]:
    """The extension list for ``setup(ext_modules=...)``."""
    return [CMakeExtension(EXTENSION_NAME, NATIVE_SOURCE_DIR)]


def _switch(name: str) -> str:
    """ON / OFF / AUTO from an environment variable holding 1/0/on/off/yes/no (unset: AUTO)."""
    value = os.environ.get(name, "").strip().lower()
    if value in ("1", "on", "true", "yes"):
        return "ON"
    if value in ("0", "off", "false", "no"):
        return "OFF"
    return "AUTO"


def find_cmake() -> str:
    """Path of a cmake >= 3.18 executable (PATH, then the ``cmake`` PyPI package); raises NativeBuildError."""
    candidates = [shutil.which("cmake")]
    try:
        import cmake  # the PyPI package, e.g. from pyproject's build requirements

        bin_dir = getattr(cmake, "CMAKE_BIN_DIR", None)  # None: the repository's cmake/ folder, not the package
        if bin_dir:
            candidates.append(str(Path(bin_dir) / "cmake"))
    except ImportError:
        pass
    for exe in filter(None, candidates):
        try:
            out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            continue
        version = tuple(int(x) for x in out.split()[2].split(".")[:2] if x.isdigit())
        if version >= (3, 18):
            return exe
    raise NativeBuildError("cmake >= 3.18 was not found (pip install cmake, or put it on PATH)")


def pybind11_cmake_dir() -> str:
    """pybind11's CMake package folder; raises NativeBuildError when pybind11 is not installed."""
    try:
        import pybind11
    except ImportError:
        raise NativeBuildError("pybind11 is not installed (it is a build requirement: pip install pybind11)") from None
    return pybind11.get_cmake_dir()


def cmake_build(
    build_dir: Path | str,
    output_dir: Path | str,
    *,
    cuda: str | None = None,
    tensorrt: str | None = None,
    python: bool = True,
    tests: bool = False,
    cuda_archs: str | None = None,
    tensorrt_root: str | None = None,
    jobs: int | None = None,
    extra_args: Iterable[str] = (),
    targets: Iterable[str] = (),
    log: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Configure and build ``plugins/`` into ``build_dir``; artifacts land under ``output_dir``.

    ``output_dir/edge_committee/_C*.so`` and ``output_dir/edge_committee/lib/libedge_committee_plugins.so``
    (whichever were built). Switches default to the environment (see the module doc). Returns the
    artifacts that exist, by ``"extension"`` / ``"plugin"`` / ``"plugin_test"``. Raises NativeBuildError.
    """
    cmake = find_cmake()
    build_dir, output_dir = Path(build_dir).resolve(), Path(output_dir).resolve()
    package_dir = output_dir / "edge_committee"
    args = [
        cmake, "-S", str(NATIVE_SOURCE_DIR), "-B", str(build_dir),
        "-DCMAKE_BUILD_TYPE=Release",
        f"-DEC_BUILD_CUDA={cuda or _switch('EC_BUILD_CUDA')}",
        f"-DEC_BUILD_TENSORRT={tensorrt or _switch('EC_BUILD_TENSORRT')}",
        f"-DEC_BUILD_PYTHON={'ON' if python else 'OFF'}",
        f"-DEC_BUILD_TESTS={'ON' if tests else 'OFF'}",
        f"-DEC_PYTHON_OUTPUT_DIR={package_dir}",
        f"-DEC_PLUGIN_OUTPUT_DIR={package_dir / 'lib'}",
    ]
    if python:
        args += [f"-DPython_EXECUTABLE={sys.executable}", f"-Dpybind11_DIR={pybind11_cmake_dir()}"]
    archs = cuda_archs if cuda_archs is not None else os.environ.get("EC_CUDA_ARCHS", "")
    if archs:
        args.append(f"-DEC_CUDA_ARCHS={archs.replace(',', ';')}")
    root = tensorrt_root if tensorrt_root is not None else os.environ.get("TENSORRT_ROOT", "")
    if root:
        args.append(f"-DTENSORRT_ROOT={root}")
    args += shlex.split(os.environ.get("EC_CMAKE_ARGS", "")) + list(extra_args)
    _run(args, "CMake configure", log)
    jobs = jobs or int(os.environ.get("EC_BUILD_JOBS", "0") or 0) or os.cpu_count() or 1
    build = [cmake, "--build", str(build_dir), "--parallel", str(jobs)]
    for target in targets:
        build += ["--target", target]
    _run(build, "CMake build", log)
    return _artifacts(build_dir, output_dir)


def _run(args: list[str], what: str, log: Callable[[str], None]) -> None:
    log(f"edge_committee: {what}: {shlex.join(args)}")
    try:
        proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    except OSError as exc:
        raise NativeBuildError(f"{what} could not start: {exc}") from None
    for line in proc.stdout.splitlines():
        if "edge_committee:" in line or "error" in line.lower() or proc.returncode != 0:
            log(line)
    if proc.returncode != 0:
        raise NativeBuildError(f"{what} failed with exit code {proc.returncode} (output above)")


class CMakeBuildExt(build_ext):
    """build_ext for :class:`CMakeExtension`; optional unless ``EC_REQUIRE_EXTENSION=1``."""

    def build_extension(self, ext: Extension) -> None:
        if not isinstance(ext, CMakeExtension):
            super().build_extension(ext)
            return
        if _switch("EC_BUILD_EXTENSION") == "OFF":
            self._warn("EC_BUILD_EXTENSION=0: the native extension is not built")
            return
        try:
            self._build_cmake(ext)
        except Exception as exc:
            if os.environ.get("EC_REQUIRE_EXTENSION", "").strip() == "1":
                raise
            self._warn(
                f"the native extension was NOT built ({exc}). edge_committee is installed without it: "
                "the gate runs the NumPy reference and there is no CUDA gate or TensorRT plugin. "
                "Fix the cause and reinstall, or set EC_REQUIRE_EXTENSION=1 to make this an error."
            )

    def _build_cmake(self, ext: CMakeExtension) -> None:
        ext_path = (Path(self.build_lib) / self.get_ext_filename(self.get_ext_fullname(ext.name))).resolve()
        # get_ext_fullpath is <build_lib>/edge_committee/_C<suffix>; CMake writes into <build_lib>.
        output_dir = ext_path.parent.parent
        build_dir = Path(self.build_temp).resolve() / "cmake"
        found = cmake_build(build_dir, output_dir, log=self.announce_always)
        if "extension" not in found or found["extension"].name != ext_path.name:
            raise NativeBuildError(f"CMake did not produce {ext_path.name} (got {sorted(map(str, found.values()))})")
        plugin = found.get("plugin")
        self.announce_always(
            f"edge_committee: built {ext_path.name}"
            + (f" and {plugin.name}" if plugin else " (no TensorRT plugin: TensorRT headers not found or disabled)")
        )

    def announce_always(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def _warn(self, message: str) -> None:
        banner = "=" * 78
        print(f"\n{banner}\nWARNING: edge_committee: {message}\n{banner}\n", file=sys.stderr, flush=True)

    def get_outputs(self) -> list[str]:
        # Only what was built: a skipped or failed native build must not break install or wheel steps.
        outputs = [p for p in super().get_outputs() if os.path.exists(p)]
        plugin = Path(self.build_lib) / "edge_committee" / "lib" / PLUGIN_LIBRARY_NAME
        if plugin.exists():
            outputs.append(str(plugin))
        return outputs

    def copy_extensions_to_source(self) -> None:
        # In-place / editable builds: copy what exists (the plugin library too), skip what was not built.
        build_py = self.get_finalized_command("build_py")
        for ext in self.extensions:
            filename = self.get_ext_filename(self.get_ext_fullname(ext.name))
            built = Path(self.build_lib) / filename
            if not built.exists():
                continue
            package_dir = Path(build_py.get_package_dir("edge_committee"))
            self.copy_file(str(built), str(package_dir / built.name), level=self.verbose)
            plugin = built.parent / "lib" / PLUGIN_LIBRARY_NAME
            if plugin.exists():
                (package_dir / "lib").mkdir(exist_ok=True)
                self.copy_file(str(plugin), str(package_dir / "lib" / PLUGIN_LIBRARY_NAME), level=self.verbose)


def source_fingerprint(*parts: str) -> str:
    """A short hash of the native sources (plugins/, cmake/) and ``parts`` (build switches)."""
    import hashlib

    digest = hashlib.sha1()
    for folder in (NATIVE_SOURCE_DIR, ROOT / "cmake"):
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            digest.update(str(path.relative_to(ROOT)).encode())
            digest.update(path.read_bytes())
    for part in (sys.version, *parts):
        digest.update(part.encode())
    return digest.hexdigest()[:16]


def cmake_build_cached(cache_root: Path | str, name: str, want: Iterable[str], **kwargs) -> dict[str, Path]:
    """:func:`cmake_build` into ``cache_root/<name>-<fingerprint>``, reused while the sources are unchanged.

    ``want``: artifact keys that must exist for the cache to count (e.g. ``("extension",)``).
    Guarded by a file lock, so parallel test workers build once. Used by the tests.
    """
    import fcntl

    key = source_fingerprint(name, repr(sorted((k, v) for k, v in kwargs.items() if k != "log")))
    folder = Path(cache_root) / f"{name}-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = _artifacts(folder / "build", folder / "out")
        if all(k in found for k in want):
            return found
        return cmake_build(folder / "build", folder / "out", **kwargs)


def _artifacts(build_dir: Path, output_dir: Path) -> dict[str, Path]:
    package_dir = output_dir / "edge_committee"
    found = {}
    for key, pattern, folder in (
        ("extension", "_C*.so", package_dir),
        ("plugin", PLUGIN_LIBRARY_NAME, package_dir / "lib"),
        ("plugin_test", "cascadeGatePluginTest", build_dir / "tests"),
    ):
        hits = sorted(folder.glob(pattern)) if folder.is_dir() else []
        if hits:
            found[key] = hits[0]
    return found
