"""Synthetic member outputs for tests and benchmarks: members of increasing accuracy whose
errors are correlated (a shared per-sample difficulty and a shared distractor class).

Model, per sample i with label y_i and member m (cheapest first)::

    U_i = Gaussian(C) + gamma * d_i * onehot(w_i)          (shared by all members)
    logits_m(i) = T_m * (mu_m (1 - d_i / 2) onehot(y_i) + rho U_i + sqrt(1 - rho^2) E_m(i))

with ``d_i ~ Beta(2, 3)`` a shared difficulty, ``w_i`` a random wrong class, ``E_m(i)`` member
noise, ``mu_m = 3 + 2 sqrt(x_m)`` (x_m: log cost scaled to [0, 1]) and ``T_m`` a temperature. With the defaults
(10 classes, rho = 0.9, gamma = 3, EfficientNet-like costs) the 8 members reach about 68% to
93% with diminishing returns, as in real model families.
"""

from __future__ import annotations

import numpy as np

from edge_committee.select.data import SelectionData

#: Approximate EfficientNet-B0..B7 cost (MACs) for a family of 8 members.
EFFICIENTNET_MACS = (0.39e9, 0.70e9, 1.0e9, 1.8e9, 4.2e9, 9.9e9, 19e9, 37e9)


def _split(rng: np.random.Generator, n: int, c: int, mus: np.ndarray, rho: float, gamma: float) -> tuple:
    y = rng.integers(0, c, n)
    d = rng.beta(2.0, 3.0, n)
    wrong = (y + rng.integers(1, c, n)) % c
    shared = rng.standard_normal((n, c))
    shared[np.arange(n), wrong] += gamma * d
    onehot = np.eye(c)[y]
    out = []
    for m, mu in enumerate(mus):
        noise = rng.standard_normal((n, c))
        z = mu * (1.0 - 0.5 * d)[:, None] * onehot + rho * shared + np.sqrt(1 - rho**2) * noise
        out.append(((1.2 + 0.1 * m) * z).astype(np.float32))
    return out, y.astype(np.int64)


def synthetic_data(
    num_members: int = 8,
    num_val: int = 10_000,
    num_test: int = 10_000,
    num_classes: int = 10,
    correlation: float = 0.9,
    distractor: float = 3.0,
    seed: int = 0,
    costs: tuple[float, ...] | None = None,
) -> SelectionData:
    """:class:`SelectionData` of ``num_members`` synthetic members named ``m0..``, costs in MACs.

    Accuracy rises with the member index; ``correlation`` (rho) and ``distractor`` (gamma) set
    how much the members' errors agree (see the module docstring).
    """
    rng = np.random.default_rng(seed)
    if costs is None:
        base = np.asarray(EFFICIENTNET_MACS)
        costs = tuple(base[:num_members]) if num_members <= len(base) else tuple(
            0.39e9 * 1.6 ** np.arange(num_members)
        )
    # signal grows like sqrt(log cost): diminishing returns, as in EfficientNet B0..B7
    logc = np.log(np.asarray(costs, np.float64))
    span = logc.max() - logc.min()
    x = (logc - logc.min()) / span if span > 0 else np.linspace(0, 1, num_members)
    mus = 3.0 + 2.0 * np.sqrt(x)
    names = [f"m{i}" for i in range(num_members)]
    val, y_val = _split(rng, num_val, num_classes, mus, correlation, distractor)
    test, y_test = _split(rng, num_test, num_classes, mus, correlation, distractor)
    return SelectionData(
        val_logits=dict(zip(names, val)),
        test_logits=dict(zip(names, test)),
        costs=dict(zip(names, (float(c) for c in costs))),
        val_labels=y_val,
        test_labels=y_test,
        cost_unit="MACs",
    )


def synthetic_zoo(
    num_members: int = 50,
    num_val: int = 10_000,
    num_test: int = 1_000,
    num_classes: int = 10,
    families: int = 5,
    seed: int = 0,
) -> SelectionData:
    """A zoo whose members are *not* monotone in accuracy vs cost, as real zoos are.

    ``families`` model families of different efficiency share the members (round robin); member
    costs are log-uniform in [0.3e9, 40e9] MACs; family f's signal is ``mu`` of
    :func:`synthetic_data` minus ``0.35 f`` plus a small per-member jitter, so the less efficient
    families' members are dominated (more cost, less accuracy) by the efficient ones. Members are
    named ``f<family>_<index>``.
    """
    rng = np.random.default_rng(seed + 7919)
    costs = np.exp(rng.uniform(np.log(0.3e9), np.log(40e9), num_members))
    family = np.arange(num_members) % max(families, 1)
    x = (np.log(costs) - np.log(0.3e9)) / (np.log(40e9) - np.log(0.3e9))
    mus = 3.0 + 2.0 * np.sqrt(x) - 0.35 * family + rng.normal(0.0, 0.1, num_members)
    names = [f"f{f}_{i}" for i, f in enumerate(family)]
    data_rng = np.random.default_rng(seed)
    val, y_val = _split(data_rng, num_val, num_classes, mus, 0.9, 3.0)
    test, y_test = _split(data_rng, num_test, num_classes, mus, 0.9, 3.0)
    return SelectionData(
        val_logits=dict(zip(names, val)),
        test_logits=dict(zip(names, test)),
        costs=dict(zip(names, (float(c) for c in costs))),
        val_labels=y_val,
        test_labels=y_test,
        cost_unit="MACs",
    )
