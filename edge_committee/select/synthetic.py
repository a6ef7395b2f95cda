"""Synthetic member outputs for tests and benchmarks: members of increasing accuracy whose
errors are correlated (a shared per-sample difficulty and a shared confusion direction).

Model, per sample i with label y_i and member m (cheapest first)::

    logits_m(i) = T_m * (mu_m * (1 - d_i) * onehot(y_i) + rho * U_i + sqrt(1 - rho^2) * E_m(i))

with ``d_i ~ Beta(2, 5)`` a shared difficulty, ``U_i`` a shared Gaussian "confusion" vector,
``E_m(i)`` member noise, ``mu_m`` increasing with the member's cost and ``T_m`` a temperature.
"""

from __future__ import annotations

import numpy as np

from edge_committee.select.data import SelectionData

#: Approximate EfficientNet-B0..B7 cost (MACs) for a family of 8 members.
EFFICIENTNET_MACS = (0.39e9, 0.70e9, 1.0e9, 1.8e9, 4.2e9, 9.9e9, 19e9, 37e9)


def _split(rng: np.random.Generator, n: int, c: int, mus: np.ndarray, rho: float) -> tuple:
    y = rng.integers(0, c, n)
    d = rng.beta(2.0, 5.0, n)
    shared = rng.standard_normal((n, c))
    onehot = np.eye(c)[y]
    out = []
    for m, mu in enumerate(mus):
        noise = rng.standard_normal((n, c))
        temp = 1.2 + 0.1 * m
        z = mu * (1.0 - d)[:, None] * onehot + rho * shared + np.sqrt(1 - rho**2) * noise
        out.append((temp * z).astype(np.float32))
    return out, y.astype(np.int64)


def synthetic_data(
    num_members: int = 8,
    num_val: int = 10_000,
    num_test: int = 10_000,
    num_classes: int = 10,
    correlation: float = 0.6,
    seed: int = 0,
    costs: tuple[float, ...] | None = None,
) -> SelectionData:
    """:class:`SelectionData` of ``num_members`` synthetic members named ``m0..``, costs in MACs.

    Accuracy rises with the member index (roughly 60% to 90% with 10 classes).
    """
    rng = np.random.default_rng(seed)
    mus = np.linspace(2.2, 4.4, num_members)
    if costs is None:
        base = np.asarray(EFFICIENTNET_MACS)
        costs = tuple(base[:num_members]) if num_members <= len(base) else tuple(
            0.39e9 * 1.6 ** np.arange(num_members)
        )
    names = [f"m{i}" for i in range(num_members)]
    val, y_val = _split(rng, num_val, num_classes, mus, correlation)
    test, y_test = _split(rng, num_test, num_classes, mus, correlation)
    return SelectionData(
        val_logits=dict(zip(names, val)),
        test_logits=dict(zip(names, test)),
        costs=dict(zip(names, (float(c) for c in costs))),
        val_labels=y_val,
        test_labels=y_test,
        cost_unit="MACs",
    )
