"""KL, thresholds, characteristic and oracle times of LLM-PO."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

from engine.llmpo import stats
from engine.llmpo.instances import bt_matrix, linear_bt, synthetic_bt, tie


def test_doctests() -> None:
    assert doctest.testmod(stats).failed == 0


def test_kl_matches_definition_and_edges() -> None:
    p = np.array([0.0, 0.2, 0.5, 0.9, 1.0])
    direct = [0.0 if x in (0.0, 1.0) else x * math.log(2 * x) + (1 - x) * math.log(2 * (1 - x)) for x in p]
    direct[0] = direct[-1] = math.log(2)
    np.testing.assert_allclose(stats.kl_half(p), direct, atol=1e-12)
    np.testing.assert_allclose(stats.kl_bernoulli(p, 0.5), stats.kl_half(p), atol=1e-12)
    # small-gap approximation kl(½+ε, ½) ≈ 2ε²
    assert stats.kl_half(0.51) == pytest.approx(2 * 0.01**2, rel=1e-3)


def test_thresholds_increase_and_provable_dominates_union_bound() -> None:
    t = np.array([1, 10, 100, 1e4, 1e6])
    for name in ("provable", "heuristic"):
        b = stats.threshold(name)(t, 0.05, 8)
        assert np.all(np.diff(b) > 0)
    # Σ_n exp(-β(n)) ≤ δ/K: the per-candidate budget of the union bound
    n = np.arange(1, 200000)
    assert np.exp(-stats.beta_provable(n, 0.05, 8)).sum() <= 0.05 / 8
    with pytest.raises(ValueError, match="unknown threshold"):
        stats.threshold("nope")  # type: ignore[arg-type]


def test_characteristic_and_oracle_time() -> None:
    mu = bt_matrix(np.array([0.4, 0.0, -0.2]))
    t_star = stats.characteristic_time(mu, 0)
    assert t_star == pytest.approx(1 / stats.kl_half(mu[0, 1]) + 1 / stats.kl_half(mu[0, 2]))
    t_o = stats.oracle_time(t_star, 0.05, 3)
    assert t_o == pytest.approx(t_star * float(stats.beta_provable(t_o, 0.05, 3)), rel=1e-6)
    w = stats.optimal_proportions(mu[0], 0)
    assert w[0] == 0 and w.sum() == pytest.approx(1) and w[1] > w[2]


def test_builtin_instances_have_stated_parameters() -> None:
    syn = synthetic_bt()
    assert syn.k == 16 and syn.condorcet_winner() == 0
    gaps = np.delete(syn.mu[0], 0) - 0.5
    assert gaps.min() == pytest.approx(0.07)
    lin = linear_bt()
    assert lin.k == 32 and lin.features is not None and lin.features.shape == (32, 5)
    c = lin.condorcet_winner()
    assert c is not None and np.delete(lin.mu[c], c).min() - 0.5 == pytest.approx(0.05)
    assert tie().condorcet_winner() is None
