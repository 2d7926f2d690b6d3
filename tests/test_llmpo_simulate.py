"""The simulation loop: δ-correctness on an exact tie, identification, and sample efficiency."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from engine.llmpo.instances import Instance, bt_matrix, tie
from engine.llmpo.sampling import (
    RUCB,
    DuelingThompson,
    LLMPOSampling,
    LLMPOTopTwo,
    LLMPOTracking,
    RandomPair,
    RoundRobin,
)
from engine.llmpo.sampling.base import BatchState
from engine.llmpo.simulate import bernoulli_comparator, run_batch
from engine.llmpo.stats import beta_provable
from engine.llmpo.structured import StructuredLLMPO, design, fit_theta, pair_index

DELTA = 0.05


def _beta(k: int, delta: float = DELTA):
    return lambda t: float(beta_provable(t, delta, k))


@pytest.mark.parametrize("rule", [LLMPOTopTwo(), RoundRobin()], ids=lambda r: r.name)
def test_exact_tie_false_declarations_below_delta(rule) -> None:
    """Two candidates with μ = ½: every declaration is false. With R runs to a horizon of 4000
    comparisons checked at every step, the count of false declarations X ~ Bin(R, p); if p ≤ δ then
    P(X > q) ≤ 0.001 for q the 0.999 binomial quantile, so this fails by chance at most 1 time in 1000."""
    inst = tie()
    runs = 300
    res = run_batch(
        rule,
        bernoulli_comparator(inst.mu),
        2,
        runs=runs,
        beta=_beta(2),
        max_steps=4000,
        rng=np.random.default_rng(11),
    )
    false = int(res.stopped.sum())
    assert res.error_rate(None) == false / runs
    assert false <= binom.ppf(0.999, runs, DELTA)


def test_batch_state_counts_and_leader() -> None:
    st = BatchState.empty(2, 3)
    st.record(np.array([0, 1]), np.array([1, 2]), np.array([1.0, 0.5]))
    assert st.t == 1
    assert st.n[0, 0, 1] == st.n[0, 1, 0] == 1 and st.s[0, 0, 1] == 1 and st.s[0, 1, 0] == 0
    assert st.s[1, 1, 2] == st.s[1, 2, 1] == 0.5
    st.record(np.array([0, 0]), np.array([2, 2]), np.array([3.0, 0.0]), m=3)
    assert st.leader().tolist() == [0, -1]
    assert st.beats[0].tolist() == [3, 1, 1]


@pytest.mark.parametrize(
    "rule",
    [LLMPOTopTwo(), LLMPOTracking(), LLMPOSampling(), RoundRobin(), RandomPair(), RUCB(), DuelingThompson()],
    ids=lambda r: r.name,
)
def test_rules_choose_valid_pairs(rule) -> None:
    st = BatchState.empty(5, 4)
    rng = np.random.default_rng(0)
    compare = bernoulli_comparator(bt_matrix(np.array([1.0, 0.5, 0.0, -0.5])))
    for _ in range(50):
        i, j = rule.choose(st, rng)
        assert i.shape == j.shape == (5,) and np.all(i != j) and np.all((i >= 0) & (i < 4) & (j < 4))
        st.record(i, j, compare(i, j, 1, rng))


def test_llm_po_identifies_and_beats_round_robin() -> None:
    mu = bt_matrix(np.array([0.6, 0.2, 0.0, -0.3, -0.6, -0.9]))
    compare = bernoulli_comparator(mu)
    out = {}
    for rule in (LLMPOTopTwo(), LLMPOTracking(), LLMPOSampling(), RoundRobin()):
        res = run_batch(
            rule,
            compare,
            6,
            runs=40,
            beta=_beta(6),
            max_steps=200000,
            rng=np.random.default_rng(3),
            block_fraction=0.002,
        )
        assert res.stopped.all()
        assert res.error_rate(0) <= binom.ppf(0.999, 40, DELTA) / 40
        out[rule.name] = res.stop.mean()
    assert out["llm_po_top_two"] < 0.5 * out["round_robin"]
    assert out["llm_po_tracking"] < 0.5 * out["round_robin"]
    assert out["llm_po_sampling"] < 0.5 * out["round_robin"]


def test_fit_theta_recovers_parameters() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 3))
    theta = np.array([1.0, -0.5, 0.25])
    pairs = pair_index(6)
    z = x[pairs[:, 0]] - x[pairs[:, 1]]
    n = np.full(len(pairs), 4000.0)
    s = rng.binomial(4000, 1 / (1 + np.exp(-z @ theta))).astype(float)
    est, v = fit_theta(z, n, s, lam=1e-3, theta0=np.zeros(3))
    np.testing.assert_allclose(est, theta, atol=0.1)
    assert np.all(np.linalg.eigvalsh(v) > 0)


def test_design_prefers_informative_pairs_and_is_a_distribution() -> None:
    x = np.array([[1.0, 0.0], [0.9, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    w = design(np.array([2.0, 0.5]), x, pair_index(4))
    assert w.min() >= 0 and w.sum() == pytest.approx(1)


def test_structured_uses_far_fewer_comparisons_on_linear_instance() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(12, 2))
    theta = np.array([1.0, 0.5])
    u = x @ theta
    c = int(u.argmax())
    theta = theta * 0.25 / np.min(u[c] - np.delete(u, c))  # smallest gap σ(0.25) − ½ ≈ 0.062
    inst = Instance("lin", bt_matrix(x @ theta), tuple(map(str, range(12))), features=x)
    compare = bernoulli_comparator(inst.mu)
    algo = StructuredLLMPO(x)
    stops = []
    for r in range(5):
        t, rec = algo.run(
            compare, beta=_beta(12), max_steps=10**6, rng=np.random.default_rng(r), block_fraction=0.002
        )
        assert rec == c
        stops.append(t)
    flat = run_batch(
        LLMPOTopTwo(),
        compare,
        12,
        runs=5,
        beta=_beta(12),
        max_steps=10**6,
        rng=np.random.default_rng(0),
        block_fraction=0.002,
    )
    assert np.mean(stops) < flat.stop.mean()


def test_round_robin_blocks_count_like_single_steps() -> None:
    single, block = RoundRobin(), RoundRobin()
    st = BatchState.empty(1, 4)
    counts = np.zeros(6)
    iu, ju = np.triu_indices(4, 1)
    pair_of = {(int(i), int(j)): p for p, (i, j) in enumerate(zip(iu, ju, strict=True))}
    for _ in range(13):
        i, j = single.choose(st, np.random.default_rng(0))
        counts[pair_of[(int(i[0]), int(j[0]))]] += 1
    got = block.choose_block(st, 8, np.random.default_rng(0)) + block.choose_block(
        st, 5, np.random.default_rng(0)
    )
    np.testing.assert_array_equal(got[0], counts)
