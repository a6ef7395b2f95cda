"""The docs' example figures are those of the committed example outputs (``examples/fashion_mnist/outputs.json``,
written by ``benchmarks/example_docs.py`` from a build of the example): every generated block matches
what the script renders, and ``docs/results.md``'s member table matches the outputs. No build runs here."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OUTPUTS = json.loads((ROOT / "examples" / "fashion_mnist" / "outputs.json").read_text(encoding="utf-8"))


def _script():
    spec = importlib.util.spec_from_file_location("example_docs", ROOT / "benchmarks" / "example_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


DOCS = _script()


@pytest.mark.parametrize("doc", DOCS.DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_generated_blocks_match_the_committed_outputs(doc: Path):
    found = DOCS.blocks(doc.read_text(encoding="utf-8"))
    assert found, f"{doc} has no generated block"
    for name, body in found:
        assert body == DOCS.render(name, OUTPUTS), (
            f"{doc.relative_to(ROOT)}: block {name!r} differs from the example's outputs; run "
            "python benchmarks/example_docs.py out/fashion_mnist")


def test_results_members_table_matches_the_outputs():
    text = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    table = text.split("## Members", 1)[1].split("## 1.", 1)[0]
    rows = {m.group(1): m.groups()[1:] for m in re.finditer(r"\| (phi\d) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", table)}
    assert set(rows) == set(OUTPUTS["members"])
    for name, (mmacs, val, test) in rows.items():
        m = OUTPUTS["members"][name]
        assert (float(mmacs), float(val), float(test)) == (round(m["macs"] / 1e6, 1), round(100 * m["validation"], 2),
                                                           round(100 * m["test"], 2)), name


def test_no_doc_quotes_an_earlier_build_without_saying_so():
    """The old build's signature figures appear only in lines that disclose the earlier build."""
    old = ("0.9417", "21.54 M", "21.54 (")
    paths = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "examples" / "fashion_mnist" / "README.md"]
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            if any(f in line for f in old):
                assert "earlier build" in line, f"{path.relative_to(ROOT)}: {line}"
