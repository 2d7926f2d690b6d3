"""The live LLM-PO allocator, driven by a simulated reward stream (no services)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.allocators.llm_po import LLMPOAllocator
from engine.types import DecisionContext, Reward


def _ctx(ids: list[str], user: str = "u") -> DecisionContext:
    return DecisionContext(experiment_id="e", user_id=user, variant_ids=tuple(ids))


def _reward(dec: str, variant: str, kind: str, t0: float, t: float, value: float = 0.0) -> Reward:
    return Reward(
        decision_id=dec,
        experiment_id="e",
        variant_id=variant,
        user_id="u",
        kind=kind,  # type: ignore[arg-type]
        value=value,
        propensity=0.5,
        allocator="llm_po",
        model_version=0,
        decided_at=t0,
        event_time=t,
    )


def _drive(alloc: LLMPOAllocator, ctr: dict[str, float], steps: int, seed: int, window: float) -> list[float]:
    """Serve `steps` requests one second apart; each gets an impression and a click w.p. ctr."""
    rng = np.random.default_rng(seed)
    ids = list(ctr)
    props = []
    batch: list[Reward] = []
    for k in range(steps):
        choice = alloc.choose(_ctx(ids))
        props.append(choice.propensity)
        dec = f"d{seed}-{k}"
        batch.append(_reward(dec, choice.variant_id, "impression", k, k))
        if rng.random() < ctr[choice.variant_id]:
            batch.append(_reward(dec, choice.variant_id, "click", k, k + 0.5))
        if len(batch) >= 20:
            alloc.update(batch)
            batch = []
        if alloc.status()["identified"]:
            break
    alloc.update(batch)
    return props


def test_refuses_fewer_than_two_variants() -> None:
    with pytest.raises(ValueError, match="at least two variants"):
        LLMPOAllocator(["only"])
    with pytest.raises(ValueError, match="delta"):
        LLMPOAllocator(["a", "b"], delta=1.5)


def test_identifies_best_variant_then_serves_it() -> None:
    ctr = {"a": 0.2, "b": 0.7, "c": 0.3}
    alloc = LLMPOAllocator(list(ctr), seed=1, attribution_window_s=5.0)
    props = _drive(alloc, ctr, 20000, seed=1, window=5.0)
    st = alloc.status()
    assert st["identified"] and st["winner"] == "b" and st["leader"] == "b"
    assert st["z"] > st["beta"] > 0
    assert st["serving"] == "winner"
    assert sum(st["samples_per_pair"].values()) == st["comparisons"]
    assert all(0 < p <= 1 for p in props)
    assert alloc.choose(_ctx(list(ctr))).variant_id == "b"
    assert alloc.choose(_ctx(list(ctr))).propensity == 1.0
    # verification pairs all involve the winner, beyond forced exploration
    with_b = sum(n for pair, n in st["samples_per_pair"].items() if "b" in pair.split("|"))
    assert with_b >= 0.8 * st["comparisons"]


def test_keeps_experimenting_when_configured() -> None:
    ctr = {"a": 0.1, "b": 0.8}
    alloc = LLMPOAllocator(
        list(ctr), seed=2, attribution_window_s=3.0, serve_winner_after_identification=False
    )
    _drive(alloc, ctr, 20000, seed=2, window=3.0)
    assert alloc.status()["identified"] and alloc.status()["serving"] == "experiment"
    served = {alloc.choose(_ctx(list(ctr))).variant_id for _ in range(20)}
    assert served == {"a", "b"}


def test_pairing_rule_both_positive_closes_at_once_window_closes_ties() -> None:
    alloc = LLMPOAllocator(["a", "b"], seed=0, attribution_window_s=10.0)
    c1, c2 = alloc.choose(_ctx(["a", "b"])), alloc.choose(_ctx(["a", "b"]))
    assert {c1.variant_id, c2.variant_id} == {"a", "b"} and c2.propensity == 1.0
    alloc.update(
        [_reward("x1", c1.variant_id, "impression", 0, 0), _reward("x2", c2.variant_id, "impression", 0, 0)]
    )
    assert alloc.status()["comparisons"] == 0  # impressions only: provisional, window open
    alloc.update([_reward("x1", c1.variant_id, "click", 0, 1), _reward("x2", c2.variant_id, "click", 0, 2)])
    assert alloc.status()["comparisons"] == 1 and alloc.s[0, 1] == 0.5  # both clicked: tie
    d1, d2 = alloc.choose(_ctx(["a", "b"])), alloc.choose(_ctx(["a", "b"]))
    alloc.update(
        [
            _reward("y1", d1.variant_id, "impression", 20, 20),
            _reward("y2", d2.variant_id, "impression", 20, 20),
        ]
    )
    alloc.update([_reward("y1", d1.variant_id, "conversion", 20, 25, value=3.0)])
    assert alloc.status()["comparisons"] == 1  # one positive, window still open
    alloc.update([_reward("z", "a", "impression", 31, 31)])  # clock passes 20 + 10
    assert alloc.status()["comparisons"] == 2
    winner = 0 if d1.variant_id == "a" else 1
    assert alloc.s[winner, 1 - winner] == 1.5


def test_snapshot_is_json_and_restores_identically() -> None:
    ctr = {"a": 0.3, "b": 0.5, "c": 0.4}
    alloc = LLMPOAllocator(list(ctr), seed=3, attribution_window_s=4.0, delta=0.1)
    _drive(alloc, ctr, 400, seed=3, window=4.0)
    snap = json.loads(json.dumps(alloc.snapshot()))
    assert snap["allocator"] == "llm_po"
    twin = LLMPOAllocator.restore(snap, seed=9)
    assert twin.status() == alloc.status()
    assert twin.snapshot() == alloc.snapshot()
    twin.rng = np.random.default_rng(5)
    alloc.rng = np.random.default_rng(5)
    _drive(alloc, ctr, 200, seed=4, window=4.0)
    _drive(twin, ctr, 200, seed=4, window=4.0)
    assert twin.snapshot() == alloc.snapshot()


def test_add_variant_extends_state_and_revokes_identification() -> None:
    ctr = {"a": 0.1, "b": 0.9}
    alloc = LLMPOAllocator(list(ctr), seed=5, attribution_window_s=2.0)
    _drive(alloc, ctr, 5000, seed=5, window=2.0)
    assert alloc.status()["identified"]
    alloc.add_variant("c")
    assert alloc.n.shape == (3, 3) and not alloc.status()["identified"]
    assert set(alloc.summary()) == {"a", "b", "c"}
