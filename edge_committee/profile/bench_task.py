"""The bench loop and report skeleton shared by the dense kinds (segmentation, video).

A dense bench loads each contender (:func:`~edge_committee.profile.bench.contenders`) through
:func:`edge_committee.load` — a single member as a one-stage view of the bundle — lets them take
turns on the same blocks of inputs (:func:`~edge_committee.profile.bench.run_round_robin`) and
records, per contender and batch size, the latency figures plus what the task's ``stats`` function
reads off the predictions (accuracy metric, MACs spent, share deferred).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from edge_committee.bundle import read_manifest
from edge_committee.profile.bench import contenders, latency_stats, run_round_robin
from edge_committee.profile.views import member_view

SCHEMA = "edge_committee.bench/1"

#: ``stats(predictions, members, manifest) -> dict`` of one contender at one batch size
Stats = Callable[[list, Sequence[str], dict], dict]


def bench_task(root: str | os.PathLike, inputs, stats: Stats, *, task: str, metric: str,
               batch_sizes: Sequence[int], backend: str, threads: int | None, warmup: int, limit: int | None,
               show_progress: bool, manifest: dict | None, members: Sequence[str], extra: Callable[[dict], dict],
               **options) -> dict:
    """Run the contenders of ``root`` on ``inputs`` in turns; the JSON-ready bench document.

    ``extra(manifest)`` adds the task's own top-level keys (its manifest section, member views).
    """
    from edge_committee.api import load
    from edge_committee.profile.bench import _progress
    from edge_committee.profile.fingerprint import fingerprint
    from edge_committee.profile.profiler import parse_batches

    root = Path(root)
    manifest = manifest if manifest is not None else read_manifest(root)
    who = contenders(manifest, members)
    results = []
    with contextlib.ExitStack() as stack:
        views = [root if c.role == "cascade" else stack.enter_context(member_view(root, manifest, c.members))
                 for c in who]
        models = [stack.enter_context(load(v, backend=backend, threads=threads, verify=False, **options))
                  for v in views]
        for b in _progress(parse_batches(batch_sizes), show_progress):
            ms, preds = run_round_robin(models, inputs, b, warmup, limit)
            for c, t, p in zip(who, ms, preds):
                results.append({"batch": b, "role": c.role, "members": list(c.members), **latency_stats(t, b),
                                **stats(p, c.members, manifest)})
    return {"schema": SCHEMA, "task": task, "accuracy_metric": metric, "bundle": str(root),
            "backend": backend, "threads": threads, "fingerprint": fingerprint(backend, threads), "profile": None,
            "load_avg": list(os.getloadavg()), "warmup_batches": warmup,
            "images": int(len(inputs) if limit is None else min(limit, len(inputs))),
            "largest_macs": max(m["macs"] for m in manifest["members"]), **extra(manifest),
            "cascade": {k: manifest["cascade"].get(k) for k in ("members", "thresholds", "objective", "budget",
                                                                 "cost_unit")},
            "results": results}


def task_markdown(doc: dict, *, what: str, intro: str, header: str, row: Callable[[dict, dict], str],
                  speedup: str) -> str:
    """The Markdown of a dense bench: title, machine line + ``intro``, the table (``header`` names
    the columns after batch/contender/members; ``row(result, doc)`` gives the cells), the speed-ups."""
    from edge_committee.profile.report import speedups

    fp = doc.get("fingerprint") or {}
    load = ", ".join(f"{x:.2f}" for x in doc["load_avg"])
    cols = header.count("|") + 1
    lines = [f"# Bench: {doc['bundle']} ({what})", "",
             f"Backend `{doc['backend']}`, threads {doc['threads'] or 'default'}, CPU {fp.get('cpu', '?')} "
             f"({fp.get('cores', '?')} cores); load average {load} (1/5/15 min) when the bench ended. " + intro, "",
             f"| batch | contender | members | {header} |",
             "|---:|---|---|" + "---:|" * cols]
    for r in doc["results"]:
        lines.append(f"| {r['batch']} | {r['role']} | {' > '.join(r['members'])} | {row(r, doc)} |")
    ups = speedups(doc)
    if ups:
        lines += ["", f"Cascade speed-up over the largest member {speedup}: "
                  + ", ".join(f"{u:.2f}x at batch {b}" for b, u in ups.items()) + "."]
    return "\n".join(lines) + "\n"
