"""The learned combiner: fitting, cross-fitting, the gate step, its ONNX file, selection, bundles."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_committee.cascade import learned as L
from edge_committee.cascade import reference as ref
from edge_committee.cascade.learned_onnx import combiner_from_onnx, run_combiner_onnx, save_combiner


def committee(n: int, c: int = 5, seed: int = 0):
    """Labels and three members: a decent one, a good one, and one that is pure noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    onehot = np.eye(c, dtype=np.float32)[y]
    members = [
        (2.0 * onehot + rng.normal(0, 1.0, (n, c))).astype(np.float32),
        (3.0 * onehot + rng.normal(0, 1.0, (n, c))).astype(np.float32),
        rng.normal(0, 3.0, (n, c)).astype(np.float32),
    ]
    return members, y


def naive_learned_cascade(member_logits, thresholds, combiners, kind):
    """Per sample, straight from the definition: stage k combines members 0..k, exits if confident."""
    n = member_logits[0].shape[0]
    labels, stages = np.empty(n, int), np.empty(n, int)
    for i in range(n):
        for k in range(len(member_logits)):
            rows = [x[i : i + 1] for x in member_logits[: k + 1]]
            p = L.combine(combiners[k], rows)
            ok = np.isfinite(member_logits[k][i]).all()
            if k == len(member_logits) - 1 or (ok and ref.confidence(p, kind)[0] >= thresholds[k]):
                labels[i], stages[i] = int(p.argmax()), k
                break
    return labels, stages


def test_fit_learns_to_ignore_a_noise_member_and_beats_the_average():
    (a, b, noise), y = committee(4000)
    (ta, tb, tnoise), ty = committee(4000, seed=1)
    comb = L.fit([a, b, noise], y, members=("a", "b", "noise"))
    assert np.abs(comb.weights[2]).max() < 0.2 * np.abs(comb.weights[1]).mean()
    learned_acc = (comb.probs([ta, tb, tnoise]).argmax(1) == ty).mean()
    average_acc = (ref.ensemble([ta, tb, tnoise]).argmax(1) == ty).mean()
    assert learned_acc > average_acc + 0.02
    assert comb.members == ("a", "b", "noise")


def test_cross_fitting_does_not_overstate_accuracy():
    """On members that know nothing, the in-sample fit looks better than chance; out-of-fold does not."""
    rng = np.random.default_rng(0)
    n, c = 150, 10
    members = [rng.normal(0, 1, (n, c)).astype(np.float32) for _ in range(4)]
    y = rng.integers(0, c, n)
    cf = L.cross_fit(members, y, folds=5, l2=0.0)
    in_sample = (cf.combiner.probs(members).argmax(1) == y).mean()
    out_of_fold = (cf.oof_probs(members).argmax(1) == y).mean()
    assert in_sample > 0.2  # overfit: 50 numbers fitted on 150 samples
    assert out_of_fold < in_sample - 0.08
    ids = L.fold_ids(n, 5, seed=0)
    assert sorted(np.bincount(ids)) == [30] * 5
    np.testing.assert_array_equal(ids, cf.folds)


@pytest.mark.parametrize("kind", ref.CONFIDENCE_FUNCTIONS)
@pytest.mark.parametrize("seed", [0, 1])
def test_gate_matches_the_definition(kind, seed):
    members, y = committee(300, seed=seed)
    members[0][5:9] = 0.0  # unsure at stage 0 ...
    members[1][5:9] = np.nan  # ... and stage 1 gives nothing for these: they cannot exit there
    members[0][7:12, 2] = np.inf
    combiners = [L.fit(members[: k + 1], y, max_iter=30) for k in range(3)]
    confs = [ref.confidence(L.combine(combiners[k], members[: k + 1]), kind) for k in range(2)]
    thr = [float(np.quantile(cf, 0.6)) for cf in confs]
    res = L.run_learned_cascade(members, thr, combiners, kind)
    labels, stages = naive_learned_cascade(members, thr, combiners, kind)
    np.testing.assert_array_equal(res.exit_stage, stages)
    np.testing.assert_array_equal(res.label, labels)
    assert (res.exit_stage[5:9] == 2).all() and res.flag[5:12].all() and not res.flag[12:].any()
    np.testing.assert_allclose(res.probs.sum(1), 1.0, rtol=1e-5)


def test_a_sample_no_member_saw_gets_no_label():
    members, y = committee(50)
    combiners = [L.fit(members[: k + 1], y, max_iter=20) for k in range(3)]
    for x in members:
        x[3] = np.nan
    res = L.run_learned_cascade(members, [0.0, 0.0], combiners)
    assert res.label[3] == -1 and np.isnan(res.confidence[3]) and res.exit_stage[3] == 2
    assert (res.probs[3] == 0).all() and res.flag[3] == 1


def test_gate_checks_its_inputs():
    members, y = committee(20)
    gate = L.LearnedGate([L.fit(members[:1], y, max_iter=5), L.fit(members[:2], y, max_iter=5)])
    state = gate.start(20, 5)
    with pytest.raises(ValueError, match="combiner of 1 members"):
        L.learned_gate_step(state, members[0], 0, 2, 0.5, "max_prob", gate.combiners[1])
    with pytest.raises(ValueError, match="expected"):
        gate(state, members[0][:3], 0, 2, 0.5)
    with pytest.raises(ValueError, match="expected 2"):
        L.LearnedGate([gate.combiners[0], gate.combiners[0]])


def test_onnx_file_equals_the_reference(tmp_path):
    members, y = committee(500)
    comb = L.fit(members, y, members=("a", "b", "c"))
    path = tmp_path / "stage2.onnx"
    save_combiner(comb, path)
    back = combiner_from_onnx(path)
    np.testing.assert_array_equal(back.weights, comb.weights)
    np.testing.assert_array_equal(back.bias, comb.bias)
    assert back.members == ("a", "b", "c")
    members[0][:4] = np.nan
    members[2][10:13, 0] = -np.inf
    got = run_combiner_onnx(path, members)
    want = L.combine(back, members)
    np.testing.assert_allclose(got, want, atol=2e-6)
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))


def test_selection_statistics_are_the_reference():
    """Learned test figures from the selection machinery equal the reference gate, bit for bit."""
    from edge_committee.select import select_cascade
    from edge_committee.select.synthetic import synthetic_data

    data = synthetic_data(num_members=3, num_val=1500, num_test=1000, seed=5)
    res = select_cascade(data, "mean_cost", 1.2e9, max_len=3, combiner={"kind": "learned", "folds": 3},
                         kinds=["learned_cascade"])
    c = res.chosen
    assert c.kind == "learned_cascade" and c.label.endswith("(learned)")
    combiners = res.frontier.fits.stage_combiners(c.members)
    out = L.run_learned_cascade([data.test_logits[n] for n in c.members], c.thresholds, combiners)
    assert (out.label == data.test_labels).mean() == pytest.approx(c.test_accuracy, abs=1e-12)
    assert tuple(np.bincount(out.exit_stage, minlength=len(c.members))) == c.test_exit_histogram
    # validation figures are out of fold: not those of the deployed (full) fit
    full = L.run_learned_cascade([data.val_logits[n] for n in c.members], c.thresholds, combiners)
    oof_hist = c.val_exit_histogram
    assert tuple(np.bincount(full.exit_stage, minlength=len(c.members))) != oof_hist
    kinds = {k.kind for k in res.frontier.pareto()}
    assert kinds <= {"single", "ensemble", "cascade", "learned_ensemble", "learned_cascade"}
    assert res.frontier.learned_ensembles and res.frontier.learned_cascades


def test_label_free_selection_refuses_a_learned_combiner():
    from edge_committee.errors import EdgeCommitteeError
    from edge_committee.select import frontier
    from edge_committee.select.synthetic import synthetic_data

    data = synthetic_data(num_members=2, num_val=200, num_test=100, seed=1)
    data.val_labels = None
    with pytest.raises(EdgeCommitteeError, match="validation labels"):
        frontier(data, max_len=2, combiner="learned")


# ------------------------------------------------------------------------------- bundles
def test_bundle_with_a_learned_combiner_predicts_like_the_reference(learned_committee, cache_dir, monkeypatch):
    """Build, select, predict (host loop) = the reference, Triton's description, refusal, re-select."""
    import edge_committee as ec
    from edge_committee.bundle import read_manifest
    from edge_committee.pipeline import build

    out = learned_committee.parent / "bundle"
    build(learned_committee, out, cache_dir=cache_dir, log=lambda s: None)
    m = read_manifest(out)
    c = m["cascade"]
    assert m["selection"]["combiner"]["kind"] == "learned"
    if c["kind"] not in ("learned_cascade", "learned_ensemble"):  # the fixture's budget should make it so
        pytest.fail(f"expected a learned committee to be chosen, got {c['kind']} {c['members']}")
    files = c["combiner"]["files"]
    assert files == [f"combiner/stage{k}.onnx" for k in range(len(c["members"]))]
    assert all(f in m["files"] for f in files)
    combiners = [combiner_from_onnx(out / f) for f in files]
    with np.load(out / "outputs.npz") as z:
        logits = [z[f"{n}/test"] for n in c["members"]]
        y = z["labels/test"]
    want = L.run_learned_cascade(logits, c["thresholds"], combiners, c["confidence"])
    assert (want.label == y).mean() == pytest.approx(c["test_accuracy"], abs=1e-12)
    with np.load(learned_committee.parent / "test.npz") as z:
        x = z["x"]
    with ec.load(out) as model:
        assert model.gate_backend.startswith("learned")
        pred = model.predict(x)
    np.testing.assert_array_equal(pred.exit_stage, want.exit_stage)
    np.testing.assert_array_equal(pred.labels, want.label)
    np.testing.assert_allclose(pred.probs, want.probs, atol=1e-5)
    report = (out / "selection.md").read_text()
    assert "learned combiner:" in report and "most accurate cascade: average" in report
    check_triton_description(out)
    check_refused_by_a_backend_without_support(out, monkeypatch)
    from edge_committee.export.cascade_onnx.export import cascade_from_manifest

    fused = cascade_from_manifest(m, out)  # the fused file embeds the same stage combiners, never the average
    assert len(fused.combiners) == len(combiners)
    for got, exp in zip(fused.combiners, combiners):
        np.testing.assert_array_equal(got.weights, exp.weights)
        np.testing.assert_array_equal(got.bias, exp.bias)
    from edge_committee.adapt.adapt import _committee_gate, _first_exit
    from edge_committee.adapt.pseudo import teacher_probs

    # adapt's teacher and exit rate use the same learned committee
    assert _first_exit(c, dict(zip(c["members"], logits)), _committee_gate(out, m)[1]) == pytest.approx(np.mean(want.exit_stage == 0))
    np.testing.assert_array_equal(teacher_probs(logits, combiners[-1]), L.combine(combiners[-1], logits))

    from edge_committee.cli.main import main

    assert main(["select", str(out), "--budget-macs", "largest", "--combiner", "average", "-q"]) == 0
    m2 = read_manifest(out)  # verifies every checksum: the combiner files left cleanly
    assert "combiner" not in m2["cascade"] and not any(f.startswith("combiner/") for f in m2["files"])
    assert not (out / "combiner" / "stage0.onnx").exists()
    assert "combiner" not in m2["selection"]
    assert json.loads((out / "selection.json").read_text())["chosen"]["combination"] == "average"


def check_triton_description(out):
    """The Triton BLS model's host loop gets the same stage combiners as the bundle's files."""
    from edge_committee.bundle import read_manifest
    from edge_committee.serve.triton import bls
    from edge_committee.serve.triton.export import _cascade_spec

    m = read_manifest(out)
    members = m["cascade"]["members"]
    spec = json.loads(json.dumps(_cascade_spec(m, "x", members, {n: {"name": n} for n in members}, out)))
    gate = bls.gate_for(spec)
    want = [combiner_from_onnx(out / f) for f in m["cascade"]["combiner"]["files"]]
    assert isinstance(gate, L.LearnedGate) and len(gate.combiners) == len(want)
    for got, exp in zip(gate.combiners, want):
        np.testing.assert_array_equal(got.weights, exp.weights)
        np.testing.assert_array_equal(got.bias, exp.bias)
    assert bls.gate_for({"combiner": None}) is ref.gate_step


def check_refused_by_a_backend_without_support(out, monkeypatch):
    import edge_committee as ec
    from edge_committee import backend
    from edge_committee.errors import EdgeCommitteeError

    with monkeypatch.context() as mp:
        mp.setitem(backend.CASCADE_BACKENDS, "fake", "builtins:object")
        mp.setattr(backend, "cascade_executor_for", lambda name, model, **kw: object())
        with pytest.raises(EdgeCommitteeError, match="cannot run this bundle's learned combiner"):
            ec.load(out, backend="fake")
