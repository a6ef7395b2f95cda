"""``edge-committee export-triton DIR --out REPO``: a bundle as a Triton model repository."""

from __future__ import annotations

HELP = "export a bundle as a Triton Inference Server model repository (the cascade as a BLS model)"


def add_arguments(p) -> None:
    from edge_committee.serve.triton.config import MEMBER_BACKENDS

    p.add_argument("bundle")
    p.add_argument("--out", required=True, help="the model repository folder (in an earlier export only our models "
                                                "are replaced; other models stay)")
    p.add_argument("--force", action="store_true",
                   help="add the models to a folder that is not an earlier export (same-named models replaced)")
    g = p.add_argument_group("models")
    g.add_argument("--max-batch", type=int, default=64, help="max_batch_size of every model (default 64)")
    g.add_argument("--member-backend", choices=MEMBER_BACKENDS, default="onnxruntime",
                   help="onnxruntime (NVIDIA's containers; default), tensorrt (engines compiled into the bundle) "
                        "or python-ort (servers with only the Python backend, e.g. the bundled one)")
    g.add_argument("--instances", type=int, default=1, help="instances of each model (default 1)")
    g.add_argument("--threads", type=int, help="ONNX Runtime threads per python-ort instance (default: its own)")
    g.add_argument("--queue-delay-us", type=int, default=0,
                   help="dynamic batcher: wait this long for more requests (microseconds, default 0)")
    g.add_argument("--tensorrt-version", metavar="X.Y",
                   help="with tensorrt: the server's TensorRT, to pick among engines built with several versions")
    g.add_argument("--form", choices=("bls", "fused"), default="bls",
                   help="bls: the cascade as a Python BLS model calling one model per member (default); "
                        "fused: the export-onnx file as one ONNX Runtime model (no Python backend)")
    g.add_argument("--source-size", metavar="WxH[xC]",
                   help="with --form fused: the raw images' width x height (WxH, as camera URIs, e.g. 640x480) (default: the validation images')")
    g.add_argument("--version", type=int, metavar="N",
                   help="write the models as version N beside the versions already in --out (default: replace "
                        "--out with version 1)")
    g.add_argument("--version-policy", default="latest:1", metavar="POLICY",
                   help="which versions Triton serves: latest[:N] (default latest:1), all, or specific:V1,V2")
    g.add_argument("--no-warmup", dest="warmup", action="store_false",
                   help="no model_warmup (default: every member, and the fused model, warm up on zeros at load)")
    g.add_argument("--name", help="the cascade model's name (default: the bundle's)")
    g.add_argument("--single", action="append", default=[], metavar="MEMBER",
                   help="also serve MEMBER alone, raw images in (for comparisons; repeatable)")


def run(args) -> int:
    import re

    from edge_committee.errors import EdgeCommitteeError
    from edge_committee.serve.triton.export import export_triton

    if args.tensorrt_version is not None and not re.fullmatch(r"\d+\.\d+(\.\d+)*", args.tensorrt_version):
        raise EdgeCommitteeError(f"--tensorrt-version {args.tensorrt_version!r}: expected a version such as 10.3")

    r = export_triton(args.bundle, args.out, max_batch=args.max_batch, member_backend=args.member_backend,
                      instances=args.instances, threads=args.threads, name=args.name, singles=args.single,
                      queue_delay_us=args.queue_delay_us, tensorrt_version=args.tensorrt_version, form=args.form,
                      source_size=args.source_size, version=args.version, version_policy=args.version_policy,
                      warmup=args.warmup, force=args.force)
    print(f"wrote {r.path} (bundle manifest sha256 {r.manifest_sha256[:12]}; version {r.version}, versions there: "
          f"{', '.join(map(str, r.versions))})")
    what = "the fused cascade file, one model" if r.form == "fused" else "BLS"
    print(f"  cascade model {r.cascade_model!r} ({what}, {r.task}): {r.input} -> {r.outputs} "
          "(class names in labels.txt)")
    for member, model in r.member_models.items():
        print(f"  member {member}: model {model!r} ({r.member_backend})")
    for member, model in r.single_models.items():
        print(f"  {member} alone: model {model!r}")
    print(f"run it: {run_hint(r)}")
    return 0


def run_hint(r) -> str:
    """How to serve the repository: ``serve`` only where the server it would start has the backend."""
    nvidia = f"tritonserver --model-repository={r.path}"
    if r.member_backend == "python-ort" or _local_server_has(r.member_backend):
        return f"{nvidia}   (or: edge-committee serve {r.path})"
    if r.member_backend == "tensorrt":
        return f"{nvidia} in NVIDIA's tritonserver container on the GPU the engines were built for"
    return (f"{nvidia} in NVIDIA's tritonserver container (it has the onnxruntime backend; the server pip installs "
            "with nvidia-pytriton does not: for that one export with --member-backend python-ort)")


def _local_server_has(member_backend: str) -> bool:
    """Whether the server ``edge-committee serve`` would start here can load these models."""
    from edge_committee.errors import EdgeCommitteeError
    from edge_committee.serve.triton.server import find_server, needed_backend

    try:
        install = find_server()
    except EdgeCommitteeError:
        return False
    try:
        return install.has_backend(needed_backend(member_backend))
    finally:
        install.cleanup()
