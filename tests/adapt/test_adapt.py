"""Self-training: pseudo-labels, the student, and the bundle never left worse or half-changed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from edge_committee.adapt import NoiseConfig, adapt, read_unlabeled, select_pseudo_labels
from edge_committee.errors import EdgeCommitteeError

FAST = NoiseConfig(epochs=2, batch_size=100, lr=0.02)


def snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_pseudo_labels_are_filtered_and_balanced():
    probs = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.7, 0.3, 0.0], [0.95, 0.05, 0.0],
                      [0.1, 0.85, 0.05], [0.3, 0.4, 0.3], [0.0, 0.2, 0.8], [0.0, 0.1, 0.9]], np.float32)
    pl = select_pseudo_labels(probs, min_confidence=0.75, seed=0)
    assert pl.confident == 6  # rows 2 (0.7) and 5 (0.4) fall below 0.75
    assert pl.per_class.tolist() == [2, 2, 2]  # the median count; class 0 keeps its two most confident
    assert sorted(pl.index[:2].tolist()) == [0, 3]
    assert pl.index[2:4].tolist() == [4, 4]  # class 1 has one sample: duplicated
    np.testing.assert_array_equal(pl.targets, probs[pl.index])  # soft targets
    with pytest.raises(EdgeCommitteeError, match="lower --min-confidence"):
        select_pseudo_labels(probs, min_confidence=0.99)


def test_footage_readers(tmp_path: Path):
    from PIL import Image

    x = (np.arange(2 * 5 * 6) % 256).astype(np.uint8).reshape(2, 5, 6)
    np.save(tmp_path / "a.npy", x)
    np.savez(tmp_path / "b.npz", images=x)
    (tmp_path / "frames").mkdir()
    for i in range(2):
        Image.fromarray(x[i]).save(tmp_path / "frames" / f"{i}.png")
    for src in ("a.npy", "b.npz", "frames"):
        got = read_unlabeled(tmp_path / src)
        np.testing.assert_array_equal(np.asarray(got)[..., 0], x)
    frames = read_unlabeled(f"test://array?path={tmp_path / 'a.npy'}&fps=0&live=0&count=2")  # the stream opener
    np.testing.assert_array_equal(np.asarray(frames)[..., 0], x)
    with pytest.raises(EdgeCommitteeError, match="not found"):
        read_unlabeled(tmp_path / "missing.npy")


def test_accepted_student_is_swapped_in_and_the_cascade_reselected(torch_bundle, torch_committee_dir):
    from edge_committee.bundle import read_manifest
    from edge_committee.cascade.reference import evaluate_cascade
    from edge_committee.evaluate.evaluate import run_member
    from edge_committee.spec.preprocess import Preprocessing

    before = read_manifest(torch_bundle)
    old_file = snapshot(torch_bundle)["members/small.fp32.onnx"]
    res = adapt(torch_bundle, torch_committee_dir / "footage.npy", "small", noise=FAST, threads=1,
                tolerance=0.05, log=lambda s: None)
    assert res.accepted and res.val_accuracy_after >= res.val_accuracy_before - 0.05
    assert res.footage == 400 and 0 < res.pseudo_labeled and res.confident <= 400
    m = read_manifest(torch_bundle)  # checks every checksum
    entry = next(x for x in m["members"] if x["name"] == "small")
    assert snapshot(torch_bundle)["members/small.fp32.onnx"] != old_file
    assert entry["adaptation"]["weights"] == "members/small.adapted.safetensors"
    assert entry["adaptation"]["weights"] in m["files"]
    assert entry["accuracy"]["validation"] == pytest.approx(res.val_accuracy_after)
    # the cached outputs are the new file's, and the new cascade's figures follow from them
    with np.load(torch_bundle / "outputs.npz") as z:
        val = {k: z[k] for k in z.files}
    with np.load(torch_committee_dir / "val.npz") as z:
        x_val = z["x"]
    pp = Preprocessing.from_dict(entry["preprocessing"])
    np.testing.assert_allclose(run_member(torch_bundle / entry["file"], pp, x_val), val["small/validation"],
                               atol=1e-5)
    c = m["cascade"]
    macs = {x["name"]: x["macs"] for x in m["members"]}
    ev = evaluate_cascade([val[f"{n}/validation"] for n in c["members"]], val["labels/validation"],
                          c["thresholds"], [macs[n] for n in c["members"]], c["confidence"])
    assert ev.accuracy == pytest.approx(c["val_accuracy"], abs=1e-12)
    assert c["objective"] == before["cascade"]["objective"] and c["budget"] == before["cascade"]["budget"]
    assert res.first_exit_after is not None
    # a second run starts from the adapted weights (the spec's are no longer the member's)
    res2 = adapt(torch_bundle, torch_committee_dir / "footage.npy", "small", noise=FAST, threads=1, tolerance=1.0,
                 log=lambda s: None)
    assert res2.val_accuracy_before == pytest.approx(res.val_accuracy_after)
    runs = next(x for x in read_manifest(torch_bundle)["members"] if x["name"] == "small")["adaptation"]["runs"]
    assert len(runs) == 2


def test_a_rejected_student_leaves_the_bundle_unchanged(torch_bundle, torch_committee_dir, capsys):
    from edge_committee.cli.main import main

    before = snapshot(torch_bundle)
    code = main(["adapt", str(torch_bundle), "--unlabeled", str(torch_committee_dir / "footage.npy"),
                 "--member", "big", "--epochs", "1", "--tolerance", "-1", "--threads", "1", "--json",
                 "--keep-student", str(torch_bundle.parent / "student.onnx")])
    assert code == 3
    assert (torch_bundle.parent / "student.onnx").stat().st_size > 0  # kept for inspection, outside the bundle
    out = json.loads(capsys.readouterr().out)
    assert out["accepted"] is False and out["member"] == "big"
    assert snapshot(torch_bundle) == before


def test_interruption_leaves_the_bundle_unchanged(torch_bundle, torch_committee_dir, monkeypatch):
    from edge_committee import pipeline

    before = snapshot(torch_bundle)

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "_reselect_into", boom)  # after the new files are written to staging
    with pytest.raises(KeyboardInterrupt):  # tolerance 1: accepted, so the edit starts
        adapt(torch_bundle, torch_committee_dir / "footage.npy", "small", noise=FAST, threads=1, tolerance=1.0,
              log=lambda s: None)
    assert snapshot(torch_bundle) == before
    assert [p.name for p in torch_bundle.parent.iterdir() if p.name.startswith(".bundle")] == []


def test_user_mistakes_are_one_line(torch_bundle, torch_committee_dir):
    with pytest.raises(EdgeCommitteeError, match="no member 'nope'"):
        adapt(torch_bundle, torch_committee_dir / "footage.npy", "nope", log=lambda s: None)
    with pytest.raises(EdgeCommitteeError, match="pass --spec"):
        adapt(torch_bundle, torch_committee_dir / "footage.npy", "small", spec=torch_bundle / "nope.yaml",
              log=lambda s: None)


def test_empty_footage_and_a_bad_keep_student_path_are_one_line_before_training(torch_bundle, tmp_path):
    """t3 A4: a 0-frame .npy was a ValueError traceback; HIGH #1: --keep-student onto a FIFO, a link or a
    user's file (without --force) is refused before any training, and the target is untouched."""
    import os
    import stat

    import numpy as np

    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((0, 12, 12, 3), np.uint8))
    with pytest.raises(EdgeCommitteeError, match="holds no images"):
        adapt(torch_bundle, empty, "small", log=lambda s: None)
    fifo, mine = tmp_path / "s.onnx", tmp_path / "mine.onnx"
    os.mkfifo(fifo)
    mine.write_text("mine")
    link = tmp_path / "link.onnx"
    link.symlink_to(mine)
    for target, match in ((fifo, "named pipe"), (link, "symbolic link"), (mine, "--force")):
        with pytest.raises(EdgeCommitteeError, match=match):
            adapt(torch_bundle, empty, "small", keep_student=target, log=lambda s: None)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and link.is_symlink() and mine.read_text() == "mine"


def test_self_cascade_member_shares_the_model(torch_bundle_master):
    """``shares: big`` at 8x8: its own ONNX file and MACs, the same weights, a selection candidate."""
    from edge_committee.bundle import read_manifest

    m = read_manifest(torch_bundle_master)
    by = {x["name"]: x for x in m["members"]}
    assert by["big-8"]["export"]["shares"] == "big"
    assert by["big-8"]["export"]["weights_sha256"] == by["big"]["export"]["weights_sha256"]
    assert by["big-8"]["input_shape"][-2:] == [8, 8] and by["big"]["input_shape"][-2:] == [12, 12]
    assert by["big-8"]["macs"] < by["big"]["macs"]
    sel = json.loads((torch_bundle_master / "selection.json").read_text())
    assert "big-8" in {s["members"][0] for s in sel["singles"]}  # in the report
    from edge_committee.select import frontier, load_outputs_npz

    data = load_outputs_npz(torch_bundle_master / "outputs.npz", {x["name"]: x["macs"] for x in m["members"]})
    front = frontier(data, max_len=3)
    assert ("big-8", "big") in {f.members for f in front.cascades}  # the self-cascade is a candidate
