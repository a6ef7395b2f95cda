"""Importing costs nothing; every module imports; every CLI -h works."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

import edge_committee
from edge_committee.cli.main import COMMANDS, make_parser

HEAVY = ("torch", "onnx", "onnxruntime", "matplotlib", "tensorrt", "cv2", "PIL")


def test_import_is_light():
    code = "import sys, edge_committee; print(','.join(m for m in %r if m in sys.modules))" % (HEAVY,)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_cli_parser_is_light():
    """Every command pays for building the parser: it loads none of the heavy packages, nor numpy."""
    code = ("import sys; from edge_committee.cli.main import make_parser; make_parser(); "
            "print(','.join(m for m in %r if m in sys.modules))" % (HEAVY + ("numpy",),))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_module_imports():
    names = [m.name for m in pkgutil.walk_packages(edge_committee.__path__, "edge_committee.")]
    assert "edge_committee.pipeline" in names
    for name in names:
        if name.endswith("__main__"):
            continue
        importlib.import_module(name)


@pytest.mark.parametrize("command", [[]] + [[c] for c in COMMANDS])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        make_parser().parse_args(command + ["-h"])
    assert e.value.code == 0
    assert "usage: edge-committee" in capsys.readouterr().out


def test_calibration_imports_from_a_source_checkout():
    """``python -m edge_committee`` in the repository root runs the checkout, not the installed copy:
    ``edge_committee.calibration`` (setup.py maps the top-level ``calibration/`` folder to it) must
    still import there (an INT8 build needs it)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    code = ("import edge_committee, edge_committee.calibration as c, edge_committee.calibration.record as r; "
            "print(edge_committee.__file__); print(c.__file__); print(r.__file__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)})
    pkg, cal, rec = out.stdout.split()
    assert Path(pkg) == root / "edge_committee" / "__init__.py"
    assert Path(cal) == root / "calibration" / "__init__.py" and Path(rec) == root / "calibration" / "record.py"
