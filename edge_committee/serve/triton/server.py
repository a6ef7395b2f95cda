"""Start and stop a ``tritonserver`` process on a model repository.

Which server: an explicit binary, else the one ``nvidia-pytriton`` bundles (a real Triton 2.51
with only the Python backend, runnable on a CPU), else ``tritonserver`` on ``PATH`` (NVIDIA's
container, with its backends in ``/opt/tritonserver/backends``).

The bundled server needs two environment settings, which :func:`find_server` makes
(``docs/triton.md``): the Python-backend stub must load the *same* ``libpython`` as this
interpreter (``LD_LIBRARY_PATH`` starts with its ``LIBDIR``; under pyenv another libpython3.11
is found first otherwise), and it finds its ``site-packages`` from the ``python3`` first on
``PATH`` (so this interpreter's ``bin`` goes first). Its backend folder is assembled in a
temporary folder of links, with the stub built for this Python version.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from edge_committee.errors import DependencyError, EdgeCommitteeError

#: how long a stopped server may take before it is killed, in seconds
STOP_TIMEOUT_S = 20.0


class ServerError(EdgeCommitteeError):
    """The server did not start, or a model did not load."""


@dataclasses.dataclass
class ServerInstall:
    """A runnable ``tritonserver``: binary, backend folder, extra flags and environment."""

    binary: Path
    backends: Path
    kind: str  #: "bundled" (nvidia-pytriton), "path" or "explicit"
    args: tuple[str, ...] = ()
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    scratch: Path | None = None  #: a temporary folder to remove at the end

    def has_backend(self, name: str) -> bool:
        return (self.backends / name).is_dir()

    def backend_names(self) -> list[str]:
        return sorted(p.name for p in self.backends.iterdir() if p.is_dir()) if self.backends.is_dir() else []

    def cleanup(self) -> None:
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None


def find_server(binary: str | os.PathLike | None = None) -> ServerInstall:
    """The ``tritonserver`` to run (see the module docstring); fails saying what to install."""
    if binary is not None:
        path = Path(binary)
        if not os.access(path, os.X_OK) or path.is_dir():
            raise DependencyError(f"{path}: not an executable tritonserver")
        return ServerInstall(path, _backends_next_to(path), "explicit")
    bundled = _bundled_server()
    if bundled is not None:
        return bundled
    found = shutil.which("tritonserver")
    if found:
        return ServerInstall(Path(found), _backends_next_to(Path(found)), "path")
    raise DependencyError(
        "no tritonserver found: install the bundled one with 'pip install --no-deps nvidia-pytriton==0.7.0' "
        "(Linux, glibc >= 2.35; see docs/triton.md), run inside NVIDIA's tritonserver container, "
        "or pass --tritonserver PATH")


def needed_backend(member_backend: str) -> str:
    """The Triton backend folder an export's member models (or fused model) need."""
    return {"python-ort": "python", "tensorrt": "tensorrt"}.get(member_backend, member_backend)


def check_can_serve(install: ServerInstall, info: dict, repository: str | os.PathLike) -> None:
    """Refuse, in one line with the fix, a repository whose models this server has no backend for."""
    backend = needed_backend(info.get("member_backend", "python-ort"))
    if install.has_backend(backend):
        return
    fix = ("export it again with --member-backend python-ort, or give serve the bundle itself (it picks a backend "
           "this server has)")
    raise ServerError(f"{repository}: its models need Triton's {backend} backend, which this tritonserver "
                      f"({install.kind}, {install.binary}) does not have (backends: "
                      f"{', '.join(install.backend_names()) or 'none'}); {fix}, or run it in NVIDIA's "
                      "tritonserver container")


def _backends_next_to(binary: Path) -> Path:
    """``<prefix>/backends`` for ``<prefix>/bin/tritonserver`` (NVIDIA's layout)."""
    local = binary.resolve().parent.parent / "backends"
    return local if local.is_dir() else Path("/opt/tritonserver/backends")


def _bundled_server() -> ServerInstall | None:
    """nvidia-pytriton's server, located without importing pytriton (it pins NumPy < 2)."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    binary = root / "bin" / "tritonserver"
    if not binary.is_file():
        return None
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        have = sorted(p.name for p in (root / "python_backend_stubs").iterdir())
        raise DependencyError(f"{root}: the bundled server has Python-backend stubs for {', '.join(have)}, "
                              f"not for this Python {version}; use one of those Python versions")
    _check_libpython(version)
    scratch = Path(tempfile.mkdtemp(prefix="edge-committee-triton-"))
    python = scratch / "backends" / "python"
    python.mkdir(parents=True)
    for f in (root / "backends" / "python").iterdir():
        if f.is_file():
            os.symlink(f, python / f.name)
    os.symlink(stub, python / stub.name)
    libs = root.parent.parent / "nvidia_pytriton.libs"
    ld = [sysconfig.get_config_var("LIBDIR") or "", str(libs), os.environ.get("LD_LIBRARY_PATH", "")]
    env = {"LD_LIBRARY_PATH": ":".join(p for p in ld if p),
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    # no CUDA here: no pinned memory pool; caches from the wheel
    args = (f"--cache-directory={root / 'caches'}", "--pinned-memory-pool-byte-size=0")
    return ServerInstall(binary, scratch / "backends", "bundled", args, env, scratch)


def _check_libpython(version: str) -> None:
    """The Python-backend stub links ``libpython<version>.so``: a static interpreter has none."""
    import ctypes.util

    if not sysconfig.get_config_var("Py_ENABLE_SHARED") and ctypes.util.find_library(f"python{version}") is None:
        raise DependencyError(f"the bundled server's Python backend needs libpython{version}.so.1.0, and this Python "
                              f"({sys.executable}) is a static build: install it (Debian: apt-get install "
                              f"libpython{version}) or use a Python built with --enable-shared")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class TritonServer:
    """A ``tritonserver`` process on ``repository``; a context manager that stops it by its pid.

    Args:
        repository: the model repository.
        http_port, grpc_port: ports (default 8000 and 8001; 0 picks free ones).
        host: the address both bind to (default 127.0.0.1; 0.0.0.0 for every interface).
        metrics_port: serve Prometheus metrics there (0: a free port; default None: no metrics
            endpoint).
        install: a :class:`ServerInstall` (default: :func:`find_server`).
        log_path: where the server's output goes (default: a temporary file, removed after a
            clean stop).
    """

    def __init__(self, repository: str | os.PathLike, http_port: int = 8000, grpc_port: int = 8001,
                 host: str = "127.0.0.1", metrics_port: int | None = None,
                 install: ServerInstall | None = None, log_path: str | os.PathLike | None = None) -> None:
        self.repository = Path(repository).resolve()
        if not self.repository.is_dir():
            raise EdgeCommitteeError(f"model repository not found: {self.repository}")
        self.host = host
        self.http_port = int(http_port) or free_port()
        self.grpc_port = int(grpc_port) or free_port()
        self.metrics_port = None if metrics_port is None else (int(metrics_port) or free_port())
        self._own_install = install is None
        self.install = install or find_server()
        self._temp_log = log_path is None  # removed after a clean stop, kept when something failed
        self.log_path = Path(log_path) if log_path else self._default_log()
        self.process: subprocess.Popen | None = None

    # -- addresses -----------------------------------------------------------------------
    @property
    def client_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host

    @property
    def http_url(self) -> str:
        """``host:port`` of the HTTP endpoint, as tritonclient takes it."""
        return f"{self.client_host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.client_host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str | None:
        """The Prometheus endpoint (``http://host:port/metrics``), or None without metrics."""
        return f"http://{self.client_host}:{self.metrics_port}/metrics" if self.metrics_port else None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    # -- life cycle ----------------------------------------------------------------------
    def command(self) -> list[str]:
        cmd = [str(self.install.binary), f"--model-repository={self.repository}",
               f"--backend-directory={self.install.backends}",
               f"--http-address={self.host}", f"--http-port={self.http_port}",
               f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
               "--exit-on-error=true", "--strict-readiness=true", "--exit-timeout-secs=5"]
        if self.metrics_port:
            cmd += ["--allow-metrics=true", f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}"]
        else:
            cmd += ["--allow-metrics=false"]
        return cmd + list(self.install.args)

    def start(self, timeout_s: float = 180.0) -> TritonServer:
        """Start the server and wait until every model is ready; raise :class:`ServerError` if not."""
        if self.process is not None:
            raise RuntimeError("the server is already started")
        env = {**os.environ, **self.install.env}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                                            stdin=subprocess.DEVNULL, start_new_session=True,
                                            preexec_fn=_die_with_parent())  # noqa: PLW1509 (only prctl runs)
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        url = f"http://{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(self.failure(f"tritonserver exited with code {self.process.returncode}"))
            with contextlib.suppress(OSError, urllib.error.URLError), urllib.request.urlopen(url, timeout=1.0) as r:
                if r.status == 200:
                    return
            time.sleep(0.1)
        raise ServerError(self.failure(f"tritonserver was not ready after {timeout_s:.0f} s"))

    def failure(self, what: str) -> str:
        """One line: ``what``, the first model that failed to load (or error line), the log file."""
        reason = failure_reason(self.log_text())
        return f"{what}: {reason} (server log: {self.log_path})" if reason else f"{what} (server log: {self.log_path})"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """Stop the server by its pid (SIGINT, then SIGKILL after ``timeout_s``); its exit code."""
        code = None
        if self.process is not None:
            if self.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.process.pid, signal.SIGINT)
                try:
                    self.process.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.process.pid, signal.SIGKILL)
                    self.process.wait(timeout=timeout_s)
            code = self.process.returncode
            if code == 0 and self._temp_log:
                self.log_path.unlink(missing_ok=True)
        if self._own_install:
            self.install.cleanup()
        return code

    def __enter__(self) -> TritonServer:
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _default_log(self) -> Path:
        fd, path = tempfile.mkstemp(prefix="tritonserver-", suffix=".log")
        os.close(fd)
        return Path(path)


_FAILED = re.compile(r"failed to load '([^']+)' version \d+: (.*)")
_ERROR = re.compile(r"^E\d{4} [^\]]*\] (.*)$")
#: error lines every CPU-only start prints; never the reason a start failed
_HARMLESS = ("CudaDriverHelper", "NVML", "DCGM", "CUDA driver", "unable to create stream", "cuda")


def failure_reason(log: str) -> str | None:
    """The first model-load failure in a server log, else its first meaningful error line."""
    for line in log.splitlines():
        m = _FAILED.search(line)
        if m:
            detail = m.group(2).strip().strip('"').replace("\\n", "\n").strip()
            return f"model '{m.group(1)}' failed to load: {_last_meaningful(detail)}"
    for line in log.splitlines():
        m = _ERROR.match(line)
        if m and not any(h in line for h in _HARMLESS):
            return m.group(1).strip().strip('"')
    return None


def _last_meaningful(detail: str) -> str:
    """The exception line of a Python traceback (the last non-empty line), or the text itself."""
    lines = [ln.strip() for ln in detail.splitlines() if ln.strip()]
    if not lines:
        return detail
    return lines[-1] if lines[0].startswith("Traceback") or "Traceback" in detail else lines[0]


def _die_with_parent():
    """A ``preexec_fn`` asking for SIGTERM when the parent dies (Linux), so no server outlives its owner.

    ``prctl`` is looked up here, in the parent: the child (between fork and exec) only calls it.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def child() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return child
