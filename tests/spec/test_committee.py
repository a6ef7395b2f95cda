"""Spec validation: every mistake is one clear line naming the key, value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from edge_committee.cli.main import main
from edge_committee.errors import SpecError
from edge_committee.spec import load_spec


def edit(spec_path: Path, fn) -> Path:
    d = yaml.safe_load(spec_path.read_text())
    fn(d)
    spec_path.write_text(yaml.safe_dump(d, sort_keys=False))
    return spec_path


def run_cli_build(spec: Path, capsys) -> str:
    code = main(["build", str(spec), "--out", str(spec.parent / "out"), "-q"])
    err = capsys.readouterr().err
    assert code == 1
    assert len(err.strip().splitlines()) == 1, err  # one line, no traceback
    assert "Traceback" not in err
    return err


def test_example_spec_loads():
    spec = load_spec(Path(__file__).parents[2] / "examples/fashion_mnist/committee.yaml")
    assert len(spec.members) >= 5
    assert spec.members[0].kind == "torch" and spec.members[0].weights.suffix == ".safetensors"


def test_unknown_key(tiny_committee: Path, capsys):
    edit(tiny_committee, lambda d: d["members"][0].update(onnx_file="x.onnx"))
    err = run_cli_build(tiny_committee, capsys)
    assert "unknown key 'onnx_file'" in err and "allowed keys" in err and "members[0]" in err


def test_unknown_top_level_key(tiny_committee: Path):
    edit(tiny_committee, lambda d: d.update(budgett={}))
    with pytest.raises(SpecError, match="unknown key 'budgett'"):
        load_spec(tiny_committee)


def test_missing_member_file(tiny_committee: Path, capsys):
    edit(tiny_committee, lambda d: d["members"][1].update(onnx="missing.onnx"))
    err = run_cli_build(tiny_committee, capsys)
    assert "file not found" in err and "missing.onnx" in err and "medium" in err


def test_member_with_a_different_class_count(tiny_committee: Path, capsys):
    import onnx

    path = tiny_committee.parent / "small.onnx"
    model = onnx.load(str(path))
    w = next(t for t in model.graph.initializer if t.name == "W")
    arr = onnx.numpy_helper.to_array(w)
    w.CopyFrom(onnx.numpy_helper.from_array(np.concatenate([arr, arr[:1]]), "W"))
    b = next(t for t in model.graph.initializer if t.name == "b")
    b.CopyFrom(onnx.numpy_helper.from_array(np.zeros(5, np.float32), "b"))
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 5
    onnx.save(model, str(path))
    err = run_cli_build(tiny_committee, capsys)
    assert "small" in err and "5 classes" in err and "4 labels" in err


def test_member_labels_must_match(tiny_committee: Path):
    edit(tiny_committee, lambda d: d["members"][0].update(labels=["a", "b", "c", "d"]))
    with pytest.raises(SpecError, match="differ from the committee's labels"):
        load_spec(tiny_committee)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["members"][0]["preprocessing"].update(layout="CHW"), "layout: 'CHW' is not allowed"),
        (lambda d: d["members"][0]["preprocessing"].update(size=[0, 4]), "size"),
        (lambda d: d["members"][0]["preprocessing"].update(scale=0.1, offset=0.0), "not both"),
        (lambda d: d["members"][0]["preprocessing"].update(std=[0.0]), "contains 0"),
        (lambda d: d["members"][1].update(name="small"), "used twice"),
        (lambda d: d["budget"].update(kind="median"), "budget.kind: 'median' is not allowed"),
        (lambda d: d["budget"].update(latency_ms=3), "exactly one of 'macs' or 'latency_ms'"),
        (lambda d: d.update(selection={"confidence": "entropy"}), "selection.confidence: 'entropy'"),
        (lambda d: d["data"]["validation"].update(format="csv"), "data.validation.format: 'csv'"),
        (lambda d: d.update(precision="int4"), "precision: 'int4' is not allowed"),
        (lambda d: d.update(export={"opset": 13}), "opset: 13 is too old"),
        (lambda d: d["members"][0].update(torch={"factory": "x.py:f", "weights": "w.safetensors"}),
         "exactly one of 'onnx'"),
    ],
)
def test_invalid_values_name_the_key(tiny_committee: Path, change, message):
    edit(tiny_committee, change)
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_spec(tiny_committee)


def test_invalid_yaml_names_the_line(tmp_path: Path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\nmembers: [\n")
    with pytest.raises(SpecError, match=r"bad.yaml: not valid YAML \(line"):
        load_spec(p)


def test_missing_spec_file(tmp_path: Path, capsys):
    assert main(["build", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o")]) == 1
    assert "spec file not found" in capsys.readouterr().err
