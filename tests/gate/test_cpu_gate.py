"""The C++ CPU gate (edge_committee._C via gate_step_cpu) against the NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
from gate_cases import HostImpl, make_logits, make_logits_nonfinite_stages, run_and_compare
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_committee.cascade.reference import CONFIDENCE_FUNCTIONS, GateState, gate_step
from edge_committee.gate import gate_step_cpu


@pytest.fixture()
def cpu_impl(native_ext):
    return HostImpl(gate_step_cpu)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(0, 160),
    c=st.integers(1, 48),
    k=st.integers(1, 4),
    dtype=st.sampled_from(["float32", "float16"]),
    kind=st.sampled_from(CONFIDENCE_FUNCTIONS),
    seed=st.integers(0, 2**32 - 1),
    nonfinite=st.sampled_from([0.0, 0.05, 0.4]),
    scale=st.sampled_from([0.3, 3.0, 30.0]),
    quantiles=st.lists(st.floats(0, 1), min_size=3, max_size=3),
)
def test_cpu_gate_matches_reference(cpu_impl, n, c, k, dtype, kind, seed, nonfinite, scale, quantiles):
    logits = make_logits(seed, n, c, k, dtype, nonfinite, scale)
    run_and_compare(cpu_impl, logits, kind, quantiles)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(1, 120),
    c=st.integers(1, 40),
    k=st.integers(2, 4),
    dtype=st.sampled_from(["float32", "float16"]),
    kind=st.sampled_from(CONFIDENCE_FUNCTIONS),
    seed=st.integers(0, 2**32 - 2),
    quantiles=st.lists(st.floats(0, 1), min_size=3, max_size=3),
)
def test_cpu_gate_nonfinite_rows_across_stages(cpu_impl, n, c, k, dtype, kind, seed, quantiles):
    """Finding 19: the running mean divides by the stages that contributed, in C++ as in the reference."""
    run_and_compare(cpu_impl, make_logits_nonfinite_stages(seed, n, c, k, dtype, 3.0), kind, quantiles)


def test_cpu_gate_nan_stage_does_not_deflate(native_ext):
    """Probe P13: [NaN member, good member] gave probabilities summing to 0.5 and a halved confidence."""
    good = make_logits(5, 32, 10, 1, "float32", 0.0, 3.0)[0]
    state = GateState.start(32, 10)
    gate_step_cpu(state, np.full_like(good, np.nan), 0, 2, 0.5)
    gate_step_cpu(state, good, 1, 2, 0.5)
    alone = gate_step_cpu(GateState.start(32, 10), good, 0, 1, 0.5)  # the same C++ arithmetic, one stage
    np.testing.assert_array_equal(state.conf, alone.conf)
    np.testing.assert_allclose(state.mean_probs().sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("kind", CONFIDENCE_FUNCTIONS)
def test_cpu_gate_1000_classes(cpu_impl, dtype, kind):
    logits = make_logits(7, 257, 1000, 3, dtype, 0.03, 8.0)
    ref = run_and_compare(cpu_impl, logits, kind, [0.3, 0.6])
    assert (ref.exit_stage >= 0).all()


def test_exact_ties_go_to_the_lowest_class(native_ext):
    logits = np.array([[1.0, 3.0, 3.0, 0.0], [5.0, 5.0, 5.0, 5.0]], np.float32)
    state = GateState.start(2, 4)
    gate_step_cpu(state, logits, 0, 1, 0.0)
    assert state.label.tolist() == [1, 0]
    ref = gate_step(GateState.start(2, 4), logits, 0, 1, 0.0)
    assert ref.label.tolist() == [1, 0]


def test_never_contributing_sample_gets_minus_one_and_nan(native_ext):
    state = GateState.start(3, 5)
    bad = np.full((3, 5), np.nan, np.float32)
    bad[1] = 0.0
    gate_step_cpu(state, bad, 0, 2, 0.0)
    assert state.active.tolist() == [0, 2]  # non-finite rows never exit early
    assert state.flag.tolist() == [1, 0, 1]
    gate_step_cpu(state, np.full((2, 5), np.inf, np.float32), 1, 2, 0.0)
    assert state.label.tolist() == [-1, 0, -1]
    assert np.isnan(state.conf[[0, 2]]).all() and state.exit_stage.tolist() == [1, 0, 1]


def test_single_class_and_empty_batch(native_ext):
    state = GateState.start(4, 1)
    gate_step_cpu(state, np.zeros((4, 1), np.float32), 0, 3, 0.99, "margin")
    assert state.active.size == 0 and state.label.tolist() == [0] * 4 and state.conf.tolist() == [1.0] * 4
    empty = GateState.start(0, 3)
    gate_step_cpu(empty, np.zeros((0, 3), np.float32), 0, 2, 0.5)
    assert empty.active.size == 0


def test_errors_say_what_is_wrong(native_ext):
    state = GateState.start(4, 3)
    with pytest.raises(ValueError, match=r"expected \(4, 3\)"):
        gate_step_cpu(state, np.zeros((4, 2), np.float32), 0, 2, 0.5)
    with pytest.raises(ValueError, match="stage must be in"):
        gate_step_cpu(state, np.zeros((4, 3), np.float32), 2, 2, 0.5)
    state.active = np.array([0, 9], np.int32)
    with pytest.raises(ValueError, match="outside"):
        gate_step_cpu(state, np.zeros((2, 3), np.float32), 0, 2, 0.5)
    with pytest.raises(ValueError, match="unknown confidence"):
        gate_step_cpu(GateState.start(1, 3), np.zeros((1, 3), np.float32), 0, 2, 0.5, "entropy")


def test_raw_binding_checks_dtypes(native_ext):
    state = GateState.start(2, 3)
    with pytest.raises(TypeError, match="'prob_sum' must be float32"):
        native_ext.gate_step_cpu(state.prob_sum.astype(np.float64), state.label, state.conf, state.exit_stage,
                                 state.flag, state.active, np.zeros((2, 3), np.float32), 0, 2, 0.5, 0)
    with pytest.raises(ValueError, match="writeable"):
        ro = state.label.copy()
        ro.setflags(write=False)
        native_ext.gate_step_cpu(state.prob_sum, ro, state.conf, state.exit_stage, state.flag, state.active,
                                 np.zeros((2, 3), np.float32), 0, 2, 0.5, 0)
