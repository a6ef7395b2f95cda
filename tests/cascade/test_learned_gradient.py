"""The learned combiner's loss and analytic gradient against the definition, by finite differences
(t3 audit F16: dropping the bias gradient's L2 term passed every test)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_committee.cascade import learned as L


def oracle_loss(theta, lps, y, prior, l2):
    """Mean cross-entropy of softmax(b + sum_m w_m * lp_m) plus 0.5 * l2 * |theta - prior|^2, in float64."""
    m, c, n = lps.shape
    w, b = theta[: m * c].reshape(m, c), theta[m * c :]
    z = b[:, None] + np.einsum("mcn,mc->cn", lps.astype(np.float64), w)
    z = z - z.max(axis=0)
    logp = z - np.log(np.exp(z).sum(axis=0))
    ce = -logp[y, np.arange(n)].mean()
    return ce + 0.5 * l2 * (((w - prior) ** 2).sum() + (b**2).sum())


@pytest.mark.parametrize("l2", [0.0, 1e-3, 0.5])
@pytest.mark.parametrize("m,c", [(1, 2), (2, 5), (3, 4)])
def test_loss_and_gradient_match_the_definition(m, c, l2):
    rng = np.random.default_rng(10 * m + c)
    n = 200
    logits = [rng.standard_normal((n, c)).astype(np.float32) * 3 for _ in range(m)]
    lps = np.ascontiguousarray(np.stack([L.log_probs(x)[0].T for x in logits]))
    y = rng.integers(0, c, n)
    onehot = np.zeros((c, n), np.float32)
    onehot[y, np.arange(n)] = 1
    prior = np.full((m, c), 1.0 / m)
    theta = rng.normal(0.3, 0.7, m * c + c)  # away from the prior: the L2 terms are not zero
    loss, grad = L._objective(theta, lps, onehot, prior, l2)
    assert loss == pytest.approx(oracle_loss(theta, lps, y, prior, l2), rel=1e-5)
    h = 1e-5
    numeric = np.array([(oracle_loss(theta + h * e, lps, y, prior, l2) - oracle_loss(theta - h * e, lps, y, prior, l2))
                        / (2 * h) for e in np.eye(theta.size)])
    np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=2e-5)


def test_fit_reaches_a_stationary_point_of_the_definition():
    rng = np.random.default_rng(5)
    logits = [rng.standard_normal((600, 3)).astype(np.float32) * s for s in (1.0, 3.0)]
    y = np.argmax(logits[1] + rng.standard_normal((600, 3)).astype(np.float32), axis=1)
    comb = L.fit(logits, y, l2=0.1)
    lps = np.stack([L.log_probs(x)[0].T for x in logits])
    theta = np.concatenate([comb.weights.ravel(), comb.bias]).astype(np.float64)
    prior = np.full((2, 3), 0.5)
    h = 1e-5
    numeric = np.array([(oracle_loss(theta + h * e, lps, y, prior, 0.1)
                         - oracle_loss(theta - h * e, lps, y, prior, 0.1)) / (2 * h) for e in np.eye(theta.size)])
    assert np.abs(numeric).max() < 1e-3  # L-BFGS stopped where the true gradient vanishes
