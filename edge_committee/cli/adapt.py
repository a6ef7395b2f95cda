"""``edge-committee adapt DIR --unlabeled SOURCE --member NAME``: self-train a member on footage."""

from __future__ import annotations

HELP = "self-train a member on unlabeled footage (Noisy Student); kept only if validation accuracy holds"


def add_arguments(p) -> None:
    p.add_argument("bundle")
    p.add_argument("--unlabeled", required=True,
                   help="the footage: a folder of images, an .npy/.npz of uint8 images (N, H, W[, C]), a video "
                        "file or a stream URI (rtsp://, v4l2://, csi://, test://; read until it ends or --max-frames)")
    p.add_argument("--max-frames", type=int, default=20_000, help="most frames read from a video or stream (20000)")
    p.add_argument("--member", required=True, help="the student: an FP32 PyTorch member, e.g. the first stage")
    p.add_argument("--spec", help="the committee spec the bundle was built from (default: the one it records)")
    g = p.add_argument_group("pseudo-labels")
    g.add_argument("--min-confidence", type=float, default=0.6, help="teacher confidence to keep an image (0.6)")
    g.add_argument("--per-class", type=int, help="samples per class after balancing (default: the median count)")
    g = p.add_argument_group("student")
    g.add_argument("--epochs", type=int, default=4, help="fine-tuning epochs (4)")
    g.add_argument("--lr", type=float, default=0.01, help="peak learning rate (0.01)")
    g.add_argument("--batch-size", type=int, default=128)
    g.add_argument("--dropout", type=float, default=0.3, help="dropout on the last linear layer's input (0.3)")
    g.add_argument("--flip", action="store_true", help="random horizontal flips (symmetric classes only)")
    g.add_argument("--labeled-ratio", type=float, default=1.0,
                   help="labeled training samples per pseudo-labeled sample, each epoch (1.0)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--tolerance", type=float, default=0.0,
                   help="validation accuracy points (0..1) the student may lose and still be kept (0)")
    p.add_argument("--threads", type=int, help="ONNX Runtime and PyTorch threads")
    p.add_argument("--keep-student", metavar="FILE.onnx", help="also write the student's ONNX here, kept or not")
    p.add_argument("--force", action="store_true", help="--keep-student may replace an existing file")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args) -> int:
    import json
    import logging

    from edge_committee.adapt import NoiseConfig, adapt

    noise = NoiseConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, dropout=args.dropout,
                        flip=args.flip, labeled_ratio=args.labeled_ratio, seed=args.seed)
    say = logging.getLogger("edge_committee").info
    result = adapt(args.bundle, args.unlabeled, args.member, spec=args.spec, max_frames=args.max_frames, min_confidence=args.min_confidence,
                   per_class=args.per_class, noise=noise, tolerance=args.tolerance, threads=args.threads,
                   keep_student=args.keep_student, force=args.force,
                   log=say if not args.json else (lambda s: None))
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
    elif logging.getLogger("edge_committee").getEffectiveLevel() > logging.INFO:  # -q: adapt logged nothing
        print(result.summary())
    return 0 if result.accepted else 3
