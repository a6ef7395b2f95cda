"""Hostile specs: alias bombs (finding 4), standard-library factories (9), precision-suffix names (11),
long names (15), duplicate keys (20), control characters (23). Each is one SpecError line, at once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from edge_committee.cli.main import main
from edge_committee.errors import SpecError
from edge_committee.spec import load_spec


def _edit(spec: Path, fn) -> Path:
    d = yaml.safe_load(spec.read_text())
    fn(d)
    spec.write_text(yaml.safe_dump(d, sort_keys=False))
    return spec


def _cli_error(spec: Path, capsys) -> str:
    assert main(["build", str(spec), "--out", str(spec.parent / "out"), "-q"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err[:2000]
    return err


def _bomb(depth: int) -> str:
    """Probe S15: 10 anchors, each a list of 10 aliases of the previous: 10**depth strings, < 1 kB."""
    lines = ["labels:", "  - &a0 [" + ", ".join(["x"] * 10) + "]"]
    lines += [f"  - &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, depth + 1)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("depth", [6, 9])
def test_alias_bomb_is_refused_at_once(tiny_committee: Path, capsys, depth):
    text = tiny_committee.read_text()
    body = "\n".join(line for line in text.splitlines() if not line.startswith(("labels:", "- top", "- bottom")))
    tiny_committee.write_text(_bomb(depth) + body + "\n")
    assert len(_bomb(depth)) < 1000
    start = time.monotonic()
    err = _cli_error(tiny_committee, capsys)
    assert time.monotonic() - start < 5.0
    assert len(err) < 500 and "alias" in err


def test_a_huge_value_is_shortened_in_the_message(tiny_committee: Path):
    _edit(tiny_committee, lambda d: d.update(labels="z" * 100_000))
    with pytest.raises(SpecError) as e:
        load_spec(tiny_committee)
    assert len(str(e.value)) < 600 and "labels" in str(e.value)


def test_an_oversized_spec_is_refused(tiny_committee: Path):
    tiny_committee.write_text(tiny_committee.read_text() + "#" * (5 << 20) + "\n")
    with pytest.raises(SpecError, match="too large"):
        load_spec(tiny_committee)


def test_deeply_nested_yaml_is_one_line(tiny_committee: Path, capsys):
    tiny_committee.write_text(tiny_committee.read_text() + "calibration: " + "[" * 600 + "]" * 600 + "\n")
    assert "nested" in _cli_error(tiny_committee, capsys)


@pytest.mark.parametrize("factory, kwargs", [
    ("os:system", {"command": "touch {marker}"}),
    ("subprocess:run", {"args": ["touch", "{marker}"]}),
    ("builtins:exec", {"source": "open('{marker}', 'w')"}),
    ("os.path:join", {}),
    ("shutil:rmtree", {"path": "{marker}"}),
])
def test_standard_library_factories_are_refused_before_running(tiny_committee: Path, capsys, factory, kwargs):
    """Probe S12: 'os:system' ran its command before the type check said it was not a model."""
    marker = tiny_committee.parent / "PWNED_BY_FACTORY"
    filled = {k: (v.format(marker=marker) if isinstance(v, str) else [x.format(marker=marker) for x in v])
              for k, v in kwargs.items()}
    (tiny_committee.parent / "w.safetensors").write_bytes(b"{}")
    _edit(tiny_committee, lambda d: d["members"][0].update(
        onnx=None, torch={"factory": factory, "kwargs": filled, "weights": "w.safetensors"}) or
        d["members"][0].pop("onnx"))
    err = _cli_error(tiny_committee, capsys)
    assert "standard library" in err and factory in err
    assert not marker.exists()


def test_a_standard_library_file_factory_is_refused(tiny_committee: Path):
    import os

    (tiny_committee.parent / "w.safetensors").write_bytes(b"{}")
    _edit(tiny_committee, lambda d: d["members"][0].update(
        torch={"factory": f"{os.__file__}:system", "kwargs": {"command": "true"}, "weights": "w.safetensors"}) or
        d["members"][0].pop("onnx"))
    with pytest.raises(SpecError, match="standard library"):
        load_spec(tiny_committee)


@pytest.mark.parametrize("name", ["small.fp16", "small.fp32", "x.int8"])
def test_names_with_a_precision_suffix_are_refused(tiny_committee: Path, name):
    """Probe S10: members small and small.fp16 gave two manifest members named small.fp16."""
    _edit(tiny_committee, lambda d: d["members"][1].update(name=name))
    with pytest.raises(SpecError, match=r"must not end in \.fp32, \.fp16 or \.int8"):
        load_spec(tiny_committee)


def test_a_300_character_name_is_one_line(tiny_committee: Path, capsys):
    """Probe S9: OSError File name too long, with a traceback, mid-build."""
    _edit(tiny_committee, lambda d: d["members"][0].update(name="a" * 300))
    assert "at most 100 characters" in _cli_error(tiny_committee, capsys)


@pytest.mark.parametrize("dup", ["budget", "preprocessing"])
def test_duplicate_keys_are_refused(tiny_committee: Path, dup):
    """Probe S23: the last of two keys won silently."""
    text = tiny_committee.read_text()
    if dup == "budget":
        text += "budget:\n  macs: 1\n"
    else:
        text = text.replace("  preprocessing:\n", "  preprocessing: {size: [3, 3]}\n  preprocessing:\n", 1)
    tiny_committee.write_text(text)
    with pytest.raises(SpecError, match=rf"duplicate key '{dup}'.*line \d+"):
        load_spec(tiny_committee)


def test_merge_keys_may_be_overridden(tiny_committee: Path):
    """A YAML merge key (<<) is not a duplicate: explicit keys override what it merges."""
    text = tiny_committee.read_text().replace("budget:\n", "budget:\n  <<: {kind: mean, macs: 1}\n", 1)
    tiny_committee.write_text(text)
    spec = load_spec(tiny_committee)
    assert spec.budget.macs == "largest" and spec.budget.kind == "worst"


@pytest.mark.parametrize("where", ["label", "labels_file", "name"])
def test_control_characters_are_refused(tiny_committee: Path, where):
    """Probe B32: ESC ] 0 ; title BEL ESC [ 2 J in a label reached the terminal raw."""
    evil = "\x1b]0;owned-title\x07\x1b[2J\x1b[31m b"
    if where == "label":
        _edit(tiny_committee, lambda d: d["labels"].__setitem__(1, evil))
    elif where == "labels_file":
        (tiny_committee.parent / "labels.txt").write_text("a\n" + evil + "\nc\nd\n")
        _edit(tiny_committee, lambda d: d.pop("labels") and d.update(labels_file="labels.txt"))
    else:
        _edit(tiny_committee, lambda d: d.update(name=evil))
    with pytest.raises(SpecError, match="control character") as e:
        load_spec(tiny_committee)
    assert "\x1b" not in str(e.value)


@pytest.mark.parametrize("layout", ["python3.9/os.py", "python3.9/shutil.py", "lib64/os.py",
                                    "python3.12/concurrent/futures/process.py"])
def test_another_pythons_standard_library_is_refused_by_module_name(tiny_committee: Path, tmp_path: Path, layout):
    """t3 MEDIUM #3: '/usr/lib/python3.11/os.py:system' of the Debian Python ran from a venv's spec."""
    marker = tmp_path / "PWNED"
    lib = tmp_path / "otherpython" / Path(layout).parts[0]
    target = tmp_path / "otherpython" / layout
    target.parent.mkdir(parents=True, exist_ok=True)
    for folder in target.relative_to(lib).parents:  # packages on the way (concurrent/futures)
        if folder != Path("."):
            (lib / folder / "__init__.py").write_text("")
    (lib / "os.py").write_text(f"def system(command=None):\n    open({str(marker)!r}, 'w')\n")
    if target.name != "os.py":
        target.write_text(f"def system(command=None):\n    open({str(marker)!r}, 'w')\n")
    (tiny_committee.parent / "w.safetensors").write_bytes(b"{}")
    _edit(tiny_committee, lambda d: d["members"][0].update(
        torch={"factory": f"{target}:system", "kwargs": {"command": "true"}, "weights": "w.safetensors"}) or
        d["members"][0].pop("onnx"))
    with pytest.raises(SpecError, match="standard library"):
        load_spec(tiny_committee)
    assert not marker.exists()


def test_a_users_module_named_like_a_stdlib_module_is_accepted(tiny_committee: Path):
    """Only a standard library's own folder is refused: 'select.py' in a project folder is the user's code."""
    (tiny_committee.parent / "select.py").write_text("def build():\n    return None\n")
    (tiny_committee.parent / "w.safetensors").write_bytes(b"{}")
    _edit(tiny_committee, lambda d: d["members"][0].update(
        torch={"factory": "select.py:build", "weights": "w.safetensors"}) or d["members"][0].pop("onnx"))
    spec = load_spec(tiny_committee)
    assert spec.members[0].factory.endswith("select.py:build")


@pytest.mark.parametrize("path", ["a" * 5000, "b" * 300 + ".onnx"])
def test_a_path_too_long_for_the_file_system_is_one_spec_error(tiny_committee: Path, path):
    """Found by the spec fuzz suite: OSError 'File name too long' escaped load_spec."""
    _edit(tiny_committee, lambda d: d["members"][0].update(onnx=path))
    with pytest.raises(SpecError, match="members.*not a usable file path"):
        load_spec(tiny_committee)


def test_a_binary_labels_file_is_one_spec_error(tiny_committee: Path):
    (tiny_committee.parent / "labels.txt").write_bytes(b"\xff\xfe\x00bad")
    _edit(tiny_committee, lambda d: d.pop("labels") and d.update(labels_file="labels.txt"))
    with pytest.raises(SpecError, match="labels_file: cannot read"):
        load_spec(tiny_committee)
