"""``edge-committee run BUNDLE --source URI ... [--sink KIND:TARGET ...]``: classify camera frames,
streams, video files or image folders live, batching frames across sources.

Ctrl-C or SIGTERM stops at the next tick, flushes every sink and prints the summary (exit 0).
A source that fails for good is reported in one line while the others keep running; the exit
code is then 1 (2 would be argparse's).
"""

from __future__ import annotations

import signal
import sys

from edge_committee.cli._common import backend_args, to_float

HELP = "run a bundle on cameras, RTSP streams, video files or image folders (by URI)"


def add_arguments(p) -> None:
    p.add_argument("bundle")
    g = p.add_argument_group("sources")
    g.add_argument("--source", action="append", required=True, metavar="URI",
                   help="a video file, image folder or glob, rtsp://..., http(s)://..., udp://@:PORT, rtp://@:PORT, v4l2:///dev/videoN"
                        "[?size=WxH&fps=F&format=mjpeg], csi://N, test://counter; repeat for several")
    g.add_argument("--frames", choices=("auto", "latest", "every"), default="auto",
                   help="latest: newest frame only, drops counted (default for live sources); "
                        "every: every frame in order (default for files and folders)")
    g.add_argument("--open-timeout", type=float, default=10.0, metavar="S", help="s to wait for a source to open (default 10)")
    g.add_argument("--stall-timeout", type=float, default=5.0, metavar="S",
                   help="s without a frame before a live source is reopened (default 5)")
    g.add_argument("--max-reconnects", type=int, default=0, metavar="N",
                   help="give a live source up after this many failed reopens in a row (default 0: never); only "
                        "network sources retry a first open, and a missing file or device fails at once")
    g.add_argument("--loop", type=int, metavar="N",
                   help="play video files N more times (-1: forever; default 0), like the source option loop=N")
    g = p.add_argument_group("batching")
    g.add_argument("--window-ms", type=float, default=30.0, metavar="MS",
                   help="after a tick's first frame, wait at most this long for the other sources (default 30)")
    g.add_argument("--staleness-ms", type=float, default=500.0, metavar="MS",
                   help="drop live frames older than this (default 500; 0 = never)")
    g.add_argument("--clip-hop", type=int, metavar="N",
                   help="video bundles: frames between two sliding clips of a source (default half a clip)")
    g = p.add_argument_group("output")
    g.add_argument("--sink", action="append", metavar="KIND:TARGET",
                   help="jsonl:FILE or jsonl:- (default), video:FILE.mp4 (overlay, H.264), display:, or the overlay "
                        "streamed: udp://HOST:PORT, rtp://HOST:PORT (MPEG-TS), rtsp://HOST:PORT/PATH (served here; "
                        "@ for every interface; #publish=1 pushes to an RTSP server); repeat for several")
    g.add_argument("--force", action="store_true", help="a video sink may replace an existing file")
    g.add_argument("--stats-every", type=float, default=5.0, metavar="S", help="print stats every this many s (default 5; 0 = only at the end)")
    g.add_argument("--max-frames", type=int, metavar="N", help="stop after this many frames in total")
    g.add_argument("--duration", metavar="S", help="stop after this many seconds")
    backend_args(p)


def _install_signals(pipeline) -> dict:
    """SIGINT and SIGTERM stop the pipeline at its next tick; a second SIGINT interrupts at once."""
    def handler(signum, _frame):
        name = signal.Signals(signum).name
        pipeline.stop(f"{name} received")
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        old[sig] = signal.signal(sig, handler)
    return old


def run(args) -> int:
    from edge_committee.api import load
    from edge_committee.stream.stats import format_stats

    duration = to_float(args.duration, "--duration") if args.duration is not None else None
    from edge_committee.stream.sinks import make_sink

    sinks = [make_sink(s, force=args.force) for s in args.sink or ["jsonl:-"]]

    def on_event(ev):
        if ev.kind == "stats":
            print(format_stats(ev.data, "stats"), file=sys.stderr, flush=True)

    with load(args.bundle, backend=args.backend, threads=args.threads, preprocess=args.preprocess) as model:
        from edge_committee.stream.clips import pipeline_class  # sliding clips for a video bundle

        pipeline = pipeline_class(model, args.clip_hop)(
            model, args.source, sinks, window_ms=args.window_ms, staleness_ms=args.staleness_ms,
            stats_every=args.stats_every or None, max_frames=args.max_frames, duration=duration,
            on_event=on_event, frames=args.frames, open_timeout=args.open_timeout,
            stall_timeout=args.stall_timeout, max_reconnects=args.max_reconnects, loop=args.loop)
        old = _install_signals(pipeline)
        try:
            pipeline.run()
        finally:
            for sig, h in old.items():
                signal.signal(sig, h)
    if not args.quiet:
        print(pipeline.format_summary(), file=sys.stderr)
    for line in pipeline.failed:  # repeated at the end, so they are not lost among the results
        print(f"error: {line}", file=sys.stderr)
    return 1 if pipeline.failed else 0
