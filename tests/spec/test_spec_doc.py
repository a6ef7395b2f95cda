"""docs/spec.md names every preprocessing key, and its examples are valid specs."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import yaml

from edge_committee.spec.preprocess import Preprocessing

DOC = Path(__file__).resolve().parents[2] / "docs" / "spec.md"


def test_the_reference_table_names_every_key():
    rows = [line for line in DOC.read_text().splitlines() if line.startswith("| `")]
    documented = {k for row in rows for k in re.findall(r"`([a-z_]+)`", row.split("|")[1])}
    assert documented == {f.name for f in dataclasses.fields(Preprocessing)} | {"timm", "tf"}  # the presets


def test_the_examples_are_valid_specs():
    block = DOC.read_text().split("```yaml")[1].split("```")[0]
    specs = [yaml.safe_load(chunk)["preprocessing"] for chunk in re.split(r"\n(?=# )", block.strip())]
    assert len(specs) == 5
    for spec in specs:
        Preprocessing.from_dict(spec)
