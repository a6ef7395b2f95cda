"""``edge-committee predict`` streams folders, globs and long lists batch by batch."""

from __future__ import annotations

import json
import math
import weakref
from pathlib import Path

import numpy as np
import pytest

from edge_committee.cli.main import main

N_IMAGES = 240


@pytest.fixture(scope="module")
def folder_case(tmp_path_factory, tiny_committee_factory) -> tuple[Path, Path, list[str]]:
    """(the tiny bundle, a folder of PNG and JPEG images in two sub-folders, their paths sorted)."""
    from PIL import Image

    from edge_committee.pipeline import build
    from tests.conftest import make_images

    root = tmp_path_factory.mktemp("stream")
    bundle = root / "bundle"
    build(tiny_committee_factory(root), bundle, cache_dir=root / "cache", log=lambda s: None)
    images, _ = make_images(N_IMAGES, seed=5)
    folder = root / "images"
    paths = []
    for i, im in enumerate(images):
        sub, ext = ("a", "png") if i % 2 else ("b/deeper", "jpg")
        p = folder / sub / f"{i:04d}.{ext}"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(im).save(p)
        paths.append(str(p))
    return bundle, folder, sorted(paths)


def _rows(capsys, *argv) -> list[dict]:
    capsys.readouterr()
    assert main(["predict", *map(str, argv), "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def _reference(bundle: Path, paths: list[str]) -> list[dict]:
    """What predict printed before streaming: every image read first, one predict call."""
    from edge_committee.api import load
    from edge_committee.data.readers import read_image

    with load(bundle) as model:
        pred = model.predict([read_image(p) for p in paths])
    return [{"input": p, "class": int(pred.labels[j]), "confidence": float(pred.confidence[j]),
             "exit_stage": int(pred.exit_stage[j])} for j, p in enumerate(paths)]


def _same(rows: list[dict], ref: list[dict]) -> None:
    assert [r["input"] for r in rows] == [r["input"] for r in ref]
    assert [r["class"] for r in rows] == [r["class"] for r in ref]
    assert [r["exit_stage"] for r in rows] == [r["exit_stage"] for r in ref]
    assert all(math.isclose(r["confidence"], q["confidence"], abs_tol=2e-6) for r, q in zip(rows, ref))


def test_a_folder_gives_what_every_file_read_first_gave(folder_case, capsys):
    bundle, folder, paths = folder_case
    ref = _reference(bundle, paths)
    _same(_rows(capsys, bundle, folder, "--batch-size", "7"), ref)  # recursive, sorted by path
    _same(_rows(capsys, bundle, *paths[:50], "--batch-size", "16"), ref[:50])  # a long list of files


def test_a_glob_pattern_is_expanded_in_path_order(folder_case, capsys):
    bundle, folder, paths = folder_case
    rows = _rows(capsys, bundle, f"{folder}/**/*.png")
    assert [r["input"] for r in rows] == [p for p in paths if p.endswith(".png")]
    assert main(["predict", str(bundle), f"{folder}/**/*.gif"]) == 1
    assert "no image files" in capsys.readouterr().err


def test_an_npy_batch_streams_with_the_same_names(folder_case, tmp_path: Path, capsys):
    from tests.conftest import make_images

    bundle = folder_case[0]
    x, _ = make_images(20, seed=9)
    np.save(tmp_path / "x.npy", x)
    rows = _rows(capsys, bundle, tmp_path / "x.npy", "--batch-size", "6")
    assert [r["input"] for r in rows] == [f"{tmp_path / 'x.npy'}[{i}]" for i in range(20)]
    from edge_committee.api import load

    with load(bundle) as model:
        assert [r["class"] for r in rows] == model.predict(x).labels.tolist()


def test_decoded_images_held_at_once_are_bounded_by_the_batch_size(folder_case, monkeypatch, capsys):
    """Flat memory, counted rather than timed: the decoded images alive at any moment never exceed
    two batches (the batch being run and the next being decoded), however many files there are."""
    from edge_committee.data import readers

    bundle, folder, _ = folder_case
    live, most = [0], [0]
    original = readers.read_image

    def gone() -> None:
        live[0] -= 1

    def counting(path):
        image = original(path)
        weakref.finalize(image, gone)
        live[0] += 1
        most[0] = max(most[0], live[0])
        return image

    monkeypatch.setattr(readers, "read_image", counting)
    assert len(_rows(capsys, bundle, folder, "--batch-size", "10")) == N_IMAGES
    assert 10 <= most[0] <= 20


def test_bad_inputs_fail_in_one_line_before_any_output(folder_case, tmp_path: Path, capsys):
    bundle, _, paths = folder_case
    capsys.readouterr()
    assert main(["predict", str(bundle), paths[0], str(tmp_path / "missing.png")]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "missing.png" in err
    assert main(["predict", str(bundle), paths[0], "--batch-size", "0"]) == 1
    assert "--batch-size 0: must be an integer >= 1" in capsys.readouterr().err  # cli/_numbers.py
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", str(bundle), str(empty)]) == 1
    assert "no image files" in capsys.readouterr().err


def test_the_progress_bar_goes_to_a_terminals_stderr_only(folder_case, monkeypatch, capsys):
    import sys

    bundle, folder, paths = folder_case
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    capsys.readouterr()
    assert main(["predict", str(bundle), *paths[:40], "--batch-size", "8"]) == 0
    out, err = capsys.readouterr()
    assert [line.split("\t")[0] for line in out.splitlines()] == paths[:40]  # rows whole, in order
    assert "predict" in err and "img" in err
    assert main(["predict", str(bundle), *paths[:40], "-q"]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 40 and err == ""
