"""``preprocess="exact"|"fast"`` on the runtime and the CLI (issue 18: fast mode is opt-in, per run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edge_committee as ec
from edge_committee.cli.main import main
from edge_committee.errors import EdgeCommitteeError


def _frames(n: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 120, 160, 3), dtype=np.uint8)


def test_fast_mode_runs_and_stays_close_to_exact(built_bundle: Path):
    pytest.importorskip("torch")
    frames = _frames()
    with ec.load(built_bundle, threads=1) as exact, ec.load(built_bundle, threads=1, preprocess="fast") as fast:
        a, b = exact.predict(frames), fast.predict(frames)
    # RGB members resize through PyTorch's uint8 kernel (1 grey level at most): probabilities stay close
    assert np.abs(a.probs - b.probs).max() < 0.05
    assert a.labels.shape == b.labels.shape


def test_a_cascade_backend_refuses_the_option(built_bundle: Path):
    with pytest.raises(EdgeCommitteeError, match="runs its own preprocessing"):
        ec.load(built_bundle, backend="onnxrt-fused", preprocess="fast")
    with pytest.raises(EdgeCommitteeError, match="'exact' or 'fast'"):
        ec.load(built_bundle, preprocess="turbo")


def test_predict_cli_takes_the_flag(built_bundle: Path, tmp_path: Path, capsys):
    np.save(tmp_path / "frames.npy", _frames(3, seed=1))
    rows = {}
    for mode in ("exact", "fast"):
        assert main(["predict", str(built_bundle), str(tmp_path / "frames.npy"), "--json", "--preprocess", mode]) == 0
        rows[mode] = capsys.readouterr().out.strip().splitlines()
    assert len(rows["exact"]) == len(rows["fast"]) == 3
    with pytest.raises(SystemExit) as exc:  # argparse's own usage error
        main(["predict", str(built_bundle), str(tmp_path / "frames.npy"), "--preprocess", "turbo"])
    assert exc.value.code == 2 and "invalid choice: 'turbo'" in capsys.readouterr().err
