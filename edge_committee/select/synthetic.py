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

import os
from collections.abc import Iterator

import numpy as np

from edge_committee.select.data import SelectionData

#: Approximate EfficientNet-B0..B7 cost (MACs) for a family of 8 members.
EFFICIENTNET_MACS = (0.39e9, 0.70e9, 1.0e9, 1.8e9, 4.2e9, 9.9e9, 19e9, 37e9)


def _members(rng: np.random.Generator, n: int, c: int, mus: np.ndarray, rho: float, gamma: float
             ) -> tuple[np.ndarray, Iterator[np.ndarray]]:
    """Labels and a generator of the members' float32 logits, one member at a time (so a large
    zoo can be written to disk member by member); the random draws happen in the same order
    either way."""
    y = rng.integers(0, c, n)
    d = rng.beta(2.0, 3.0, n)
    wrong = (y + rng.integers(1, c, n)) % c
    shared = rng.standard_normal((n, c))
    shared[np.arange(n), wrong] += gamma * d
    rows = np.arange(n)

    def logits() -> Iterator[np.ndarray]:
        for m, mu in enumerate(mus):
            noise = rng.standard_normal((n, c))
            # mu (1 - d/2) onehot(y) + rho U + sqrt(1 - rho^2) E, without an (n, c) one-hot: the
            # non-label classes add an exact 0, the label class the same sum in the same order
            z = rho * shared
            z[rows, y] = mu * (1.0 - 0.5 * d) + z[rows, y]
            noise *= np.sqrt(1 - rho**2)
            z += noise
            del noise
            z *= 1.2 + 0.1 * m
            yield z.astype(np.float32)

    return y.astype(np.int64), logits()


def _split(rng: np.random.Generator, n: int, c: int, mus: np.ndarray, rho: float, gamma: float) -> tuple:
    y, gen = _members(rng, n, c, mus, rho, gamma)
    return list(gen), y


def _to_disk(out_dir: str, split: str, names: list[str], gen: Iterator[np.ndarray]) -> dict[str, np.ndarray]:
    """Write each member's logits to ``out_dir/<split>_<name>.npy`` and map them read-only."""
    os.makedirs(out_dir, exist_ok=True)
    out = {}
    for name, x in zip(names, gen):
        path = os.path.join(out_dir, f"{split}_{name}.npy")
        np.save(path + ".tmp.npy", x)
        os.replace(path + ".tmp.npy", path)
        del x
        out[name] = np.load(path, mmap_mode="r")
    return out


def synthetic_data(
    num_members: int = 8,
    num_val: int = 10_000,
    num_test: int = 10_000,
    num_classes: int = 10,
    correlation: float = 0.9,
    distractor: float = 3.0,
    seed: int = 0,
    costs: tuple[float, ...] | None = None,
    out_dir: str | None = None,
) -> SelectionData:
    """:class:`SelectionData` of ``num_members`` synthetic members named ``m0..``, costs in MACs.

    Accuracy rises with the member index; ``correlation`` (rho) and ``distractor`` (gamma) set
    how much the members' errors agree (see the module docstring). With ``out_dir`` the logits
    are written there one member at a time (``val_m0.npy``, ...) and memory-mapped: a zoo larger
    than memory (50 members x 50,000 x 1,000 classes is 10 GB) never is in memory at once.
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
    if out_dir is not None:  # member by member to disk, memory-mapped back
        y_val, gen = _members(rng, num_val, num_classes, mus, correlation, distractor)
        val_logits = _to_disk(out_dir, "val", names, gen)
        y_test, gen = _members(rng, num_test, num_classes, mus, correlation, distractor)
        test_logits = _to_disk(out_dir, "test", names, gen)
        np.savez(os.path.join(out_dir, "meta.npz"), names=np.array(names), costs=np.asarray(costs, np.float64),
                 val_labels=y_val, test_labels=y_test)
    else:
        val, y_val = _split(rng, num_val, num_classes, mus, correlation, distractor)
        test, y_test = _split(rng, num_test, num_classes, mus, correlation, distractor)
        val_logits, test_logits = dict(zip(names, val)), dict(zip(names, test))
    return SelectionData(
        val_logits=val_logits,
        test_logits=test_logits,
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


def load_on_disk(out_dir: str) -> SelectionData:
    """The zoo :func:`synthetic_data` wrote to ``out_dir``, memory-mapped again."""
    meta = np.load(os.path.join(out_dir, "meta.npz"))
    names = [str(n) for n in meta["names"]]

    def split(kind: str) -> dict[str, np.ndarray]:
        return {n: np.load(os.path.join(out_dir, f"{kind}_{n}.npy"), mmap_mode="r") for n in names}

    return SelectionData(
        val_logits=split("val"),
        test_logits=split("test"),
        costs=dict(zip(names, (float(c) for c in meta["costs"]))),
        val_labels=meta["val_labels"],
        test_labels=meta["test_labels"],
        cost_unit="MACs",
    )
