"""The Fashion-MNIST zoo's results: the family alone vs the zoo, under the same objectives.

    edge-committee build examples/fashion_mnist/zoo.yaml --out out/fm_zoo
    python examples/fashion_mnist/zoo.py out/fm_zoo

reads the zoo bundle's members and cached outputs (no model runs), selects under each objective
twice, from the family alone (the six FP32 members at their own resolution: ``committee.yaml``'s
candidates) and from the whole zoo (every accepted precision variant at both resolutions, one
group per model and resolution: a model never twice at two precisions in one committee), on the
full validation split and on its first 500 samples, and writes ``zoo_outputs.json`` (the figures,
the command, the machine) and the README's block between ``<!-- zoo:results -->`` markers.
``tests/example/test_zoo_example.py`` checks that the README block is what ``zoo_outputs.json`` renders.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUTPUTS = HERE / "zoo_outputs.json"
README = HERE / "README.md"
FAMILY = [f"phi{k}" for k in range(6)]
#: (label, objective, budget, confidence level); "largest"/"phi1" are resolved to member MACs
OBJECTIVES = [
    ("worst case <= phi5's MACs (the build's budget)", "worst_cost", "phi5", None),
    ("mean <= phi1's MACs", "mean_cost", "phi1", None),
    ("accuracy >= best single", "accuracy", "best_single", None),
    ("accuracy >= best single at 0.9 confidence", "accuracy", "best_single", 0.9),
]
CUTS = {"all 10,000": None, "first 500": 500}
_BLOCK = re.compile(r"(<!-- zoo:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /zoo:(?P=name) -->)", re.DOTALL)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def load(bundle: Path):
    from edge_committee.select import SelectionData

    m = json.loads((bundle / "manifest.json").read_text())
    members = {x["name"]: x for x in m["members"]}
    with np.load(bundle / "outputs.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return members, arrays, m, SelectionData


def data_for(names, members, arrays, cut, SelectionData):
    val = slice(0, cut)
    return SelectionData(
        {n: arrays[f"{n}/validation"][val] for n in names}, {n: arrays[f"{n}/test"] for n in names},
        {n: members[n]["macs"] for n in names}, arrays["labels/validation"][val], arrays["labels/test"],
        groups={n: members[n]["base"] for n in names})


def row(res, candidates: str, cut: str, label: str) -> dict:
    from edge_committee.select.frontier import CASCADE_KINDS

    c, f = res.chosen, res.frontier
    s = f.search
    return {"candidates": candidates, "validation": cut, "objective": label, "kind": c.kind,
            "members": list(c.members),
            "thresholds": [round(float(t), 4) for t in c.thresholds] if c.kind in CASCADE_KINDS else [],
            "val_accuracy": c.val_accuracy, "test_accuracy": c.test_accuracy,
            "mean_macs_test": c.test_mean_cost, "worst_macs": c.worst_cost,
            "paired_reference": c.paired.reference, "paired_interval": [c.paired.low, c.paired.high],
            "warned": bool(res.warnings),
            "search": {"mode": s.mode, "scored": s.sequences_scored, "total": s.sequences_total,
                       "seconds": round(s.seconds, 1)}}


def measure(bundle: Path, max_len: int) -> dict:
    from edge_committee.select import frontier, select_from

    members, arrays, manifest, SelectionData = load(bundle)
    zoo = list(members)
    rows = []
    for cut_label, cut in CUTS.items():
        for candidates, names in (("family", FAMILY), ("zoo", zoo)):
            data = data_for(names, members, arrays, cut, SelectionData)
            t0 = time.perf_counter()
            front = frontier(data, max_len=max_len)
            print(f"{candidates}, {cut_label} validation: {len(names)} members, frontier in "
                  f"{time.perf_counter() - t0:.1f} s ({front.search.mode})", flush=True)
            for label, objective, budget, level in OBJECTIVES:
                b = members[budget]["macs"] if budget in members else budget
                rows.append(row(select_from(front, objective, b, confidence_level=level), candidates, cut_label, label))
    variants = {}
    for x in members.values():
        variants.setdefault(x["base"], {"macs": x["macs"], "size": x["preprocessing"]["size"],
                                        "shares": x.get("export", {}).get("shares")})
        variants[x["base"]][x["precision"]] = {"validation": x["accuracy"]["validation"], "test": x["accuracy"]["test"]}
    return {
        "command": f"python examples/fashion_mnist/zoo.py {bundle.as_posix()}",
        "build": "edge-committee build examples/fashion_mnist/zoo.yaml --out out/fm_zoo",
        "machine": machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "max_len": max_len,
        "num_members": len(zoo),
        "rejected": [f"{r['member']}.{r['precision']}" for r in manifest.get("rejected_variants", [])],
        "variants": variants,
        "selections": rows,
    }


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def render(o: dict) -> str:
    """The README block: how it was measured, the variants, and the choices."""
    lines = [f"Measured by `{o['command']}` on the bundle of `{o['build']}` ({o['date']}; {o['machine']}; "
             f"selection only, from the bundle's cached outputs). {o['num_members']} candidates"
             + (f" ({len(o['rejected'])} variants rejected by the accuracy gate: {', '.join(o['rejected'])})"
                if o["rejected"] else " (every variant passed the accuracy gate)")
             + f", cascades and ensembles of up to {o['max_len']} members.", "",
             "| model @ input | MACs (M) | val % FP32 / FP16 / INT8 | test % FP32 / FP16 / INT8 |",
             "|---|---:|---|---|"]
    for base, v in sorted(o["variants"].items(), key=lambda kv: kv[1]["macs"]):
        def acc(split: str, v=v) -> str:
            return " / ".join(_pct(v[p][split]) if p in v else "-" for p in ("fp32", "fp16", "int8"))
        lines.append(f"| {base} @ {v['size'][0]}px | {v['macs'] / 1e6:.2f} | {acc('validation')} | {acc('test')} |")
    lines += ["", "| validation | objective | candidates | chosen | val % | test % | mean MACs on test (M) "
              "| worst MACs (M) | vs reference, 0.9 interval (points) | search |",
              "|---|---|---|---|---:|---:|---:|---:|---|---|"]
    for r in o["selections"]:
        chosen = " → ".join(r["members"]) if r["kind"] != "ensemble" else "mean(" + ", ".join(r["members"]) + ")"
        if r["thresholds"]:
            chosen += " @ " + ", ".join(f"{t:.4f}" for t in r["thresholds"])
        lo, hi = r["paired_interval"]
        s = r["search"]
        lines.append(
            f"| {r['validation']} | {r['objective']} | {r['candidates']} | "
            f"{chosen}{' (warned)' if r['warned'] else ''} "
            f"| {_pct(r['val_accuracy'])} | {_pct(r['test_accuracy'])} | {r['mean_macs_test'] / 1e6:.2f} "
            f"| {r['worst_macs'] / 1e6:.2f} | {r['paired_reference']} [{100 * lo:+.2f}, {100 * hi:+.2f}] "
            f"| {s['mode']}, {s['scored']:,} of {s['total']:,} in {s['seconds']:g} s |")
    return "\n".join(lines) + "\n"


def rewrite(text: str, o: dict) -> str:
    return _BLOCK.sub(lambda m: m.group(1) + render(o) + m.group(4), text)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle", type=Path, help="the zoo bundle (out/fm_zoo)")
    p.add_argument("--max-len", type=int, default=4, help="most members in a committee (default 4)")
    args = p.parse_args()
    o = measure(args.bundle, args.max_len)
    OUTPUTS.write_text(json.dumps(o, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    README.write_text(rewrite(README.read_text(encoding="utf-8"), o), encoding="utf-8")
    print(render(o))
    print(f"wrote {OUTPUTS.name} and the README's zoo block")
    return 0


if __name__ == "__main__":
    sys.exit(main())
