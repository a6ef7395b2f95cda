"""The Fashion-MNIST zoo's committed figures (``examples/fashion_mnist/zoo_outputs.json``, written by
``python examples/fashion_mnist/zoo.py out/fm_zoo`` from a build of ``zoo.yaml``): the README block is
what they render, every chosen committee keeps the groups rule, and the family's choice under the
build's budget is the documented example cascade. No build runs here."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "fashion_mnist"
ZOO = json.loads((EXAMPLE / "zoo_outputs.json").read_text(encoding="utf-8"))
FAMILY = json.loads((EXAMPLE / "outputs.json").read_text(encoding="utf-8"))


def _script():
    spec = importlib.util.spec_from_file_location("fm_zoo", EXAMPLE / "zoo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_block_is_the_committed_figures():
    zoo = _script()
    text = (EXAMPLE / "README.md").read_text(encoding="utf-8")
    assert zoo.rewrite(text, ZOO) == text, "run python examples/fashion_mnist/zoo.py out/fm_zoo"
    assert "<!-- zoo:results -->" in text and ZOO["command"] in text and ZOO["machine"] in text


def _base(name: str) -> str:
    return name.rsplit(".", 1)[0] if name.endswith((".fp16", ".int8")) else name


def test_choices_keep_the_groups_rule_and_the_family_choice_is_the_example_cascade():
    rows = ZOO["selections"]
    assert {r["candidates"] for r in rows} == {"family", "zoo"}
    for r in rows:
        assert len({_base(n) for n in r["members"]}) == len(r["members"]), r
        if r["candidates"] == "family":
            assert all(n in FAMILY["members"] for n in r["members"]), r
    (build,) = [r for r in rows if r["candidates"] == "family" and r["validation"] == "all 10,000"
                and r["objective"].startswith("worst case")]
    doc = FAMILY["cascade"]
    assert build["members"] == doc["members"] and build["thresholds"] == [round(t, 4) for t in doc["thresholds"]]
    assert build["test_accuracy"] == pytest.approx(doc["test_accuracy"], abs=1e-12)
    for base, v in ZOO["variants"].items():  # the zoo's FP32 family members are the example's members
        if base in FAMILY["members"]:
            assert v["fp32"]["validation"] == FAMILY["members"][base]["validation"], base
