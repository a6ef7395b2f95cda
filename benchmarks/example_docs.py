"""Regenerate every doc figure that depends on the Fashion-MNIST example build, from that build.

    edge-committee build examples/fashion_mnist/committee.yaml --out out/fashion_mnist
    python benchmarks/example_docs.py out/fashion_mnist

writes ``examples/fashion_mnist/outputs.json`` (the build's figures: members, chosen cascade,
threshold, accuracies, mean MACs, exits) and ``examples/fashion_mnist/member_outputs.npz`` (the
build's member logits on validation and test, float32, compressed: what ``select`` reads, so that
tests re-run the selection on the committed outputs without building), runs ``benchmarks/paper_findings.py`` (``docs/results.md``
sections 1-3 and ``docs/frontier.png``) and rewrites every block between
``<!-- example:NAME -->`` and ``<!-- /example:NAME -->`` in the docs from ``outputs.json``.
``tests/example/test_docs_figures.py`` renders the same blocks from the committed
``outputs.json`` and fails when a doc differs, so a rebuilt example whose figures moved shows up
as a failing test until this script is run (and its diff committed).

Figures measured by a benchmark on one machine (Triton and stream load tests, precision timings)
are not recomputed here (minutes of load-sensitive runs): each such doc carries a block that says
which build it measured and the command that refreshes it (``STALE_BENCHMARKS``).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = ROOT / "examples" / "fashion_mnist" / "outputs.json"
#: the build's member outputs (``outputs.npz``'s arrays, compressed)
MEMBER_OUTPUTS = ROOT / "examples" / "fashion_mnist" / "member_outputs.npz"
#: the docs holding generated blocks
DOCS = [ROOT / "docs" / "results.md", ROOT / "examples" / "fashion_mnist" / "README.md",
        ROOT / "docs" / "precision_benchmark.md", ROOT / "docs" / "triton.md", ROOT / "docs" / "triton_benchmark.md",
        ROOT / "docs" / "stream.md"]
#: member -> (phi, input, blocks per stage, channels): the architecture (family.py), not a measurement
ARCH = {"phi0": (0, "16×16", "1/1/1", "16/16/32/64"), "phi1": (1, "18×18", "2/2/2", "16/16/36/72"),
        "phi2": (2, "21×21", "2/2/2", "20/20/40/76"), "phi3": (3, "24×24", "2/2/2", "20/20/44/84"),
        "phi4": (4, "28×28", "3/3/3", "24/24/48/92"), "phi5": (5, "32×32", "3/3/3", "24/24/52/104")}
#: doc -> (the build it measured, the command that refreshes it)
STALE_BENCHMARKS = {
    "precision": ("the build of 2026-11-23 (member accuracies before the preprocessing change)",
                  "python benchmarks/bench_precision.py out/fashion_mnist"),
    "triton": ("the earlier build of the example (cascade phi0 -> phi4 at threshold 0.9417)",
               "python benchmarks/bench_triton.py out/fashion_mnist --rounds 5"),
    "stream": ("the earlier build of the example (cascade phi0 -> phi4 at threshold 0.9417)",
               "python benchmarks/bench_stream.py out/fashion_mnist"),
}
_BLOCK = re.compile(r"(<!-- example:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /example:(?P=name) -->)", re.DOTALL)


def outputs_from_bundle(bundle: Path) -> dict:
    """The example's figures, from a built bundle's manifest (no recomputation)."""
    m = json.loads((bundle / "manifest.json").read_text())
    c = m["cascade"]
    members = {x["name"]: {"macs": x["macs"], "validation": x["accuracy"]["validation"],
                           "test": x["accuracy"]["test"]} for x in m["members"]}
    largest = max(m["members"], key=lambda x: x["macs"])["name"]
    return {
        "bundle": m["name"],  # no date or digest: the file changes only when a figure does
        "command": "edge-committee build examples/fashion_mnist/committee.yaml --out out/fashion_mnist",
        "members": members, "largest": largest,
        "cascade": {"members": c["members"], "thresholds": [round(t, 6) for t in c["thresholds"][: len(c["members"]) - 1]],
                    "confidence": c["confidence"], "val_accuracy": c["val_accuracy"],
                    "test_accuracy": c["test_accuracy"], "mean_macs_validation": c["mean_macs"],
                    "mean_macs_test": c.get("test_mean_cost"), "worst_macs": c["worst_macs"],
                    "exits_validation": c.get("exit_histogram"), "exits_test": c.get("test_exit_histogram")},
    }


CONFIDENCE_NAMES = {"max_prob": "max-probability", "margin": "margin", "entropy": "entropy"}


def _conf(name: str) -> str:
    return CONFIDENCE_NAMES.get(name, name)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def render(name: str, o: dict) -> str:
    """The text of block ``name`` from the example's outputs ``o``."""
    c, largest = o["cascade"], o["largest"]
    lm = o["members"][largest]
    chain = " → ".join(c["members"])
    thr = ", ".join(f"{t:.4f}" for t in c["thresholds"])
    ratio = c["mean_macs_test"] / lm["macs"]
    if name == "build-choice":
        return (
            "`edge-committee build examples/fashion_mnist/committee.yaml --out out/fashion_mnist` selects with\n"
            "the example's budget: the most accurate committee whose *worst-case* MACs are at most the largest\n"
            f"member's ({largest}, {lm['macs'] / 1e6:.1f} MMACs). Chosen on validation: cascade **{chain}**, "
            f"{_conf(c['confidence'])}\nthreshold {thr}.\n\n"
            "| | test acc % | mean MMACs (test) | worst-case MMACs | exits per stage (test) |\n"
            "|---|---:|---:|---:|---|\n"
            f"| cascade {chain} | {_pct(c['test_accuracy'])} | {c['mean_macs_test'] / 1e6:.2f} ({ratio:.3f}× "
            f"{largest}) | {c['worst_macs'] / 1e6:.1f} | {c['exits_test']} |\n"
            f"| {largest} alone | {_pct(lm['test'])} | {lm['macs'] / 1e6:.1f} | {lm['macs'] / 1e6:.1f} | – |\n\n"
            f"{'At least as accurate as' if c['test_accuracy'] >= lm['test'] else 'Less accurate than'} the "
            f"largest member on the test split at {ratio:.3f}× its mean MACs (a ratio of multiply-accumulates, "
            "not of time), never\nexceeding its worst case. Accuracy figures come from ONNX Runtime (CPU, FP32) "
            "outputs of the members;\nMACs are counted from the ONNX graphs, so none of these figures depends on "
            "the machine.\n")
    if name == "members":
        rows = ["| member | φ | input | blocks per stage | channels (stem/stages) | MACs (M) | validation acc (%) "
                "| test acc (%) |", "|---|---:|---|---|---|---:|---:|---:|"]
        for n, v in o["members"].items():
            phi, inp, blocks, ch = ARCH.get(n, ("?", "?", "?", "?"))
            rows.append(f"| {n} | {phi} | {inp} | {blocks} | {ch} | {v['macs'] / 1e6:.2f} | {_pct(v['validation'])} "
                        f"| {_pct(v['test'])} |")
        return "\n".join(rows) + "\n"
    if name == "chosen":
        n_test = sum(c["exits_test"])
        return (f"The chosen cascade under the default budget (worst case ≤ the largest member's MACs):\n"
                f"**{chain}**, threshold {thr} on {_conf(c['confidence'])}, test\n"
                f"accuracy {_pct(c['test_accuracy'])}% (largest member {largest}: {_pct(lm['test'])}%)\n"
                f"at {c['mean_macs_test'] / 1e6:.2f} M mean MACs on test, {ratio:.3f}× the largest member's;\n"
                f"{c['exits_test'][0]} of {n_test:,} test images exit after {c['members'][0]}. See\n"
                "`docs/results.md` for the whole trade-off.\n")
    kind = name.removeprefix("stale-")
    if kind in STALE_BENCHMARKS:
        measured, command = STALE_BENCHMARKS[kind]
        return (f"> **Measured on {measured}.** Today's example build chooses {chain} at threshold {thr} "
                f"(test {_pct(c['test_accuracy'])}%, {c['mean_macs_test'] / 1e6:.2f} M mean MACs; "
                f"`examples/fashion_mnist/outputs.json`). These load-test figures were not re-measured; "
                f"refresh them with `{command}`.\n")
    raise KeyError(f"unknown block {name!r}")


def write_member_outputs(bundle: Path, dest: Path = MEMBER_OUTPUTS) -> None:
    """Copy the bundle's ``outputs.npz`` arrays (float32 logits, int labels) into ``dest``, compressed."""
    import numpy as np

    with np.load(bundle / "outputs.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in sorted(z.files)}
    tmp = dest.with_name(dest.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(dest)


def blocks(text: str) -> list[tuple[str, str]]:
    """(name, body) of every generated block in ``text``."""
    return [(m.group("name"), m.group("body")) for m in _BLOCK.finditer(text)]


def rewrite(text: str, o: dict) -> str:
    return _BLOCK.sub(lambda m: m.group(1) + render(m.group("name"), o) + m.group(4), text)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle", type=Path, help="the example bundle (out/fashion_mnist)")
    p.add_argument("--no-findings", action="store_true", help="skip benchmarks/paper_findings.py")
    args = p.parse_args()
    o = outputs_from_bundle(args.bundle)
    OUTPUTS.write_text(json.dumps(o, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    write_member_outputs(args.bundle)
    if not args.no_findings:
        results = ROOT / "docs" / "results.md"
        tail = results.read_text(encoding="utf-8").split("## 4.", 1)[1]  # the generated section 4 stays
        subprocess.run([sys.executable, "benchmarks/paper_findings.py", str(args.bundle), "--out", "docs"],
                       check=True, cwd=ROOT)  # relative paths: the command the doc quotes works from a clone
        results.write_text(results.read_text(encoding="utf-8").rstrip() + "\n\n## 4." + tail, encoding="utf-8")
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        new = rewrite(text, o)
        if new != text:
            doc.write_text(new, encoding="utf-8")
            print(f"updated {doc.relative_to(ROOT)}")
    print(f"wrote {OUTPUTS.relative_to(ROOT)} and {MEMBER_OUTPUTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
