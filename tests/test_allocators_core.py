"""Fixed split and Thompson sampling: pure logic, no services."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.allocators import make_allocator, restore_allocator
from engine.allocators.fixed_split import FixedSplitAllocator
from engine.allocators.thompson import ThompsonAllocator
from engine.types import Choice, DecisionContext, Reward

CTX = DecisionContext("exp", "u", ("a", "b", "c"))


def rewards(variant: str, trials: int, clicks: int) -> list[Reward]:
    base = dict(
        experiment_id="exp",
        user_id="u",
        propensity=0.5,
        allocator="thompson",
        model_version=0,
        decided_at=0.0,
        event_time=0.0,
    )
    out = [
        Reward(decision_id=f"{variant}{i}", variant_id=variant, kind="impression", value=0.0, **base)
        for i in range(trials)
    ]
    out += [
        Reward(decision_id=f"{variant}{i}", variant_id=variant, kind="click", value=1.0, **base)
        for i in range(clicks)
    ]
    return out


def test_fixed_split_serves_its_split() -> None:
    alloc = FixedSplitAllocator(["a", "b", "c"], split={"a": 2, "b": 1, "c": 1}, seed=1)
    picks = [alloc.choose(CTX) for _ in range(4000)]
    share_a = sum(p.variant_id == "a" for p in picks) / len(picks)
    assert abs(share_a - 0.5) < 0.03
    assert {p.propensity for p in picks} == {0.5, 0.25}


def test_thompson_converges_to_the_best_arm() -> None:
    ts = ThompsonAllocator(["a", "b", "c"], seed=3)
    rng = np.random.default_rng(0)
    truth = {"a": 0.03, "b": 0.05, "c": 0.08}
    served = []
    for _ in range(60):  # 60 batches of 100 decisions, learning between batches
        batch = []
        for _ in range(100):
            v = ts.choose(CTX).variant_id
            served.append(v)
            batch += rewards(v, 1, int(rng.random() < truth[v]))
        ts.update(batch)
    last = served[-1000:]
    assert last.count("c") / len(last) > 0.7
    assert ts.summary()["c"]["prob_best"] > 0.9


def test_thompson_propensity_matches_choice_frequency() -> None:
    ts = ThompsonAllocator(["a", "b", "c"], seed=5)
    ts.update(rewards("a", 100, 5) + rewards("b", 100, 8) + rewards("c", 100, 9))
    picks = [ts.choose(CTX) for _ in range(6000)]
    for v in "abc":
        freq = sum(p.variant_id == v for p in picks) / len(picks)
        prop = next(p.propensity for p in picks if p.variant_id == v)
        assert abs(freq - prop) < 0.04


def test_snapshot_roundtrip_through_json() -> None:
    ts = make_allocator("thompson", ["a", "b"], {"prior_alpha": 2.0}, seed=1)
    ts.update(rewards("a", 10, 3))
    snap = json.loads(json.dumps(ts.snapshot()))
    back = restore_allocator(snap, seed=1)
    assert isinstance(back, ThompsonAllocator)
    assert back.summary() == ts.summary() and back.version == ts.version


def test_unknown_config_is_named() -> None:
    with pytest.raises(ValueError, match=r"allocator_config: unknown option.*bogus"):
        make_allocator("thompson", ["a", "b"], {"bogus": 1})
    with pytest.raises(ValueError, match="allocator: unknown allocator"):
        make_allocator("nope", ["a"])


def test_rewards_for_unknown_variants_are_ignored_and_new_variants_cold_start() -> None:
    ts = ThompsonAllocator(["a"], seed=0)
    ts.update(rewards("zzz", 5, 5))
    assert ts.summary()["a"]["trials"] == 0
    ts.add_variant("b")
    assert ts.choose(DecisionContext("exp", "u", ("a", "b"))).variant_id in ("a", "b")


def test_choice_rejects_zero_propensity() -> None:
    with pytest.raises(ValueError):
        Choice("a", 0.0)


@pytest.mark.parametrize("name", ["classical_ab", "linucb", "lin_ts", "reinforce", "actor_critic"])
def test_experiment_attribution_window_reaches_perceiving_allocators(name: str) -> None:
    options = {"variant_texts": {"a": "Save today", "b": "Join us"}, "attribution_window_s": 60.0}
    alloc = make_allocator(name, ["a", "b"], {}, seed=1, engine_options=options)
    assert alloc.attribution_window == 60.0  # type: ignore[attr-defined]
    assert restore_allocator(alloc.snapshot()).attribution_window == 60.0  # type: ignore[attr-defined]
