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
                      queue_delay_us=args.queue_delay_us, tensorrt_version=args.tensorrt_version, force=args.force)
    print(f"wrote {r.path} (bundle manifest sha256 {r.manifest_sha256[:12]})")
    print(f"  cascade model {r.cascade_model!r}: uint8 images [N, H, W, C] -> labels, confidence, exit_stage, "
          "flags, probs")
    for member, model in r.member_models.items():
        print(f"  member {member}: model {model!r} ({r.member_backend})")
    for member, model in r.single_models.items():
        print(f"  {member} alone: model {model!r}")
    print(f"run it: tritonserver --model-repository={r.path}   (or: edge-committee serve {r.path})")
    return 0
