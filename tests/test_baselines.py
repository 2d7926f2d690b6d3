"""Baselines on the Allocator interface: explore-then-commit, LinUCB, linear TS, REINFORCE."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.allocators.classical_ab import ClassicalABAllocator, power_sample_size
from engine.allocators.lin_ts import LinTSAllocator
from engine.allocators.linucb import LinUCBAllocator
from engine.allocators.reinforce import ReinforceAllocator
from engine.perception.schema import FeatureSchema
from engine.types import DecisionContext, Reward

SCHEMA = FeatureSchema(categorical={"segment": ("a", "b")})


def _run(pol, steps: int = 80, B: int = 25, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        seg = rng.integers(2, size=B)
        X = pol.expand_portrait(np.eye(2)[seg])
        p = pol.act_batch(X)
        a = (rng.random((B, 1)) < p.cumsum(1)).argmax(1)
        r = (rng.random(B) < np.where(a == seg, 0.6, 0.1)).astype(float)
        pol.learn_batch(X, a, r, p[np.arange(B), a])


@pytest.mark.parametrize("cls", [LinUCBAllocator, LinTSAllocator, ReinforceAllocator])
def test_contextual_baselines_learn_segment_preferences(cls) -> None:
    pol = cls(["v0", "v1", "v2"], seed=3, schema=SCHEMA)
    _run(pol)
    X = pol.expand_portrait(np.eye(2))
    p = pol.act_batch(X)
    assert p[0].argmax() == 0 and p[1].argmax() == 1
    copy = cls.restore(json.loads(json.dumps(pol.snapshot())), seed=3)
    if cls is not LinTSAllocator:  # TS draws are random
        np.testing.assert_allclose(copy.act_batch(X), p)
    c = copy.choose(DecisionContext("e", "u", ("v0", "v1", "v2"), {"segment": "b"}))
    assert c.variant_id in ("v0", "v1", "v2")


def test_classical_ab_explores_then_commits() -> None:
    ab = ClassicalABAllocator(["a", "b"], seed=0, n_explore=50)
    rng = np.random.default_rng(0)
    for _ in range(10):
        p = ab.act_batch(np.zeros((20, 0)))
        assert np.allclose(p, 0.5) or ab.winner is not None
        a = rng.integers(2, size=20)
        ab.learn_batch(
            np.zeros((20, 0)), a, (rng.random(20) < np.where(a == 1, 0.7, 0.2)).astype(float), p[:, 0]
        )
    assert ab.winner == 1 and ab.act_batch(np.zeros((1, 0))).tolist() == [[0.0, 1.0]]
    assert power_sample_size(0.15, 0.15) == 3954
    ab.add_variant("c")
    assert ab.winner is None  # a new variant reopens the test


def test_foreign_rewards_are_ignored_and_counted() -> None:
    pol = LinUCBAllocator(["a", "b"], schema=SCHEMA)
    ev = Reward("d", "e", "a", "u", "click", 1.0, 0.5, "thompson", 0, 0.0, 1.0, {"segment": "a"})
    pol.update([ev])
    assert pol.ignored_foreign_rewards == 1 and pol.version == 0
    mine = Reward("d2", "e", "a", "u", "click", 1.0, 0.5, "linucb", 0, 0.0, 1.0, {"segment": "a"})
    pol.update([mine])
    assert pol.version == 1
