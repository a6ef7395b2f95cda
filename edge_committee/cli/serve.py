"""``edge-committee serve DIR``: run a bundle (or an exported repository) on a Triton server."""

from __future__ import annotations

import signal
import sys
import tempfile

HELP = "serve a bundle over HTTP/gRPC with Triton Inference Server (bound to 127.0.0.1 unless --host)"


def add_arguments(p) -> None:
    from edge_committee.serve.triton.config import MEMBER_BACKENDS

    p.add_argument("bundle", help="a bundle, or a model repository written by export-triton")
    g = p.add_argument_group("server")
    g.add_argument("--http-port", type=int, default=8000, help="HTTP port (default 8000; 0: a free one)")
    g.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default 8001; 0: a free one)")
    g.add_argument("--metrics-port", type=int, default=8002,
                   help="serve Prometheus metrics on this port (default 8002, as NVIDIA's container; 0: a free one)")
    g.add_argument("--no-metrics", dest="metrics", action="store_false", help="no metrics endpoint")
    g.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0: every interface)")
    g.add_argument("--tritonserver", help="the tritonserver binary (default: nvidia-pytriton's, else PATH's)")
    g.add_argument("--log", help="write the server's log here (default: a temporary file)")
    g = p.add_argument_group("export (when given a bundle)")
    g.add_argument("--repository", help="export into this folder and keep it (default: a temporary folder)")
    g.add_argument("--member-backend", choices=("auto", *MEMBER_BACKENDS), default="auto",
                   help="auto (default): onnxruntime where the server has that backend, else python-ort")
    g.add_argument("--max-batch", type=int, default=64, help="max_batch_size of every model (default 64)")
    g.add_argument("--instances", type=int, default=1, help="instances of each model (default 1)")
    g.add_argument("--threads", type=int, help="ONNX Runtime threads per python-ort instance")


class _Stop(Exception):
    """SIGTERM arrived."""


def _on_sigterm(signum, frame) -> None:
    raise _Stop()


def check_ports(host: str, ports: dict[str, int | None]) -> None:
    """Refuse a port another process listens on, in one line naming the flag (before the server
    starts: Triton's own message is a gRPC core blob with "address already in use" buried in it)."""
    import errno
    import socket

    from edge_committee.errors import EdgeCommitteeError

    for flag, port in ports.items():
        if not port:
            continue  # 0 or unset: the server picks a free one, or does not listen
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no clash
            try:
                s.bind((host, port))
            except OSError as exc:
                why = "already in use (another server?)" if exc.errno == errno.EADDRINUSE else exc.strerror
                raise EdgeCommitteeError(f"{flag} {port}: port {port} on {host} is {why}; stop that process or "
                                         f"choose another {flag}") from None


def run(args) -> int:
    from edge_committee.serve.triton.export import export_triton, is_export, read_export
    from edge_committee.serve.triton.server import ServerError, TritonServer, check_can_serve, find_server

    check_ports(args.host, {"--http-port": args.http_port, "--grpc-port": args.grpc_port,
                            "--metrics-port": args.metrics_port})
    install = find_server(args.tritonserver)
    scratch = None
    try:
        if is_export(args.bundle):
            repository, info = args.bundle, read_export(args.bundle)
            check_can_serve(install, info, repository)
        else:
            backend = args.member_backend
            if backend == "auto":
                backend = "onnxruntime" if install.has_backend("onnxruntime") else "python-ort"
            if args.repository is None:
                scratch = tempfile.TemporaryDirectory(prefix="edge-committee-repo-")
            repository = args.repository or f"{scratch.name}/model_repository"
            export_triton(args.bundle, repository, max_batch=args.max_batch, member_backend=backend,
                          instances=args.instances, threads=args.threads)
            info = read_export(repository)
        server = TritonServer(repository, args.http_port, args.grpc_port, host=args.host,
                              metrics_port=args.metrics_port if args.metrics else None, install=install, log_path=args.log)
        return _serve(server, info, ServerError)
    finally:
        install.cleanup()
        if scratch is not None:
            scratch.cleanup()


def _serve(server, info: dict, server_error) -> int:
    previous, previous_int = signal.signal(signal.SIGTERM, _on_sigterm), signal.getsignal(signal.SIGINT)
    try:
        server.start()
        print(f"ready: model '{info['cascade_model']}' (bundle {info['bundle']}, manifest "
              f"{info['manifest_sha256'][:12]}) on http://{server.http_url} and grpc {server.grpc_url}; "
              f"metrics {server.metrics_url or 'off'}; server pid {server.pid}, log {server.log_path}; Ctrl-C stops", flush=True)
        server.process.wait()
        raise server_error(server.failure(f"tritonserver stopped by itself with code {server.process.returncode}"))
    except (KeyboardInterrupt, _Stop):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the stop short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        code = server.stop()
        print(f"stopped (tritonserver exit code {code})", flush=True)
        return 0
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        sys.stdout.flush()
