"""``edge-committee compile DIR``: build the bundle's TensorRT engines on this machine."""

from __future__ import annotations

HELP = "build TensorRT engines for a bundle's members (or its fused cascade) on this GPU"


def add_arguments(p) -> None:
    p.add_argument("bundle")
    g = p.add_argument_group("engine")
    g.add_argument("--max-batch", type=int, default=64, help="largest batch of the optimization profile (default 64)")
    g.add_argument("--opt-batch", type=int, default=8, help="batch TensorRT tunes for (default 8)")
    g.add_argument("--workspace-mb", type=int, default=1024, help="workspace memory limit in MiB (default 1024)")
    g.add_argument("--opt-level", type=int, help="builder optimization level 0..5 (default: TensorRT's, 3)")
    g.add_argument("--dla", type=int, metavar="N", help="build for DLA core N with GPU fallback (Jetson Orin)")
    g.add_argument("--version-compatible", action="store_true",
                   help="engines that later TensorRT versions of the same major (and the lean runtime) can run")
    w = p.add_argument_group("what to build")
    x = w.add_mutually_exclusive_group()
    x.add_argument("--whole", nargs="?", const=True, metavar="FUSED_ONNX",
                   help="build the fused cascade (export-onnx --gate plugin) as one engine instead of the members; "
                        "default file: the bundle's")
    x.add_argument("--all", action="store_true", help="build every member of the bundle, not only the cascade's")


def run(args) -> int:
    from edge_committee.backend.tensorrt.compiler import compile_bundle
    from edge_committee.backend.tensorrt.fingerprint import BuildOptions

    options = BuildOptions(max_batch=args.max_batch, opt_batch=args.opt_batch, workspace_mb=args.workspace_mb,
                           opt_level=args.opt_level, dla_core=args.dla, version_compatible=args.version_compatible)
    entries = compile_bundle(args.bundle, options, whole=args.whole, all_members=args.all, log=print)
    print(f"{args.bundle}: {len(entries)} engine(s) stored; run with --backend tensorrt")
    return 0
