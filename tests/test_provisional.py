"""The learner's reward ledger (engine/memory/provisional.py): joins streamed events into decision rewards,
keeps pending decisions compactly (untracked by the garbage collector), closes windows in order."""

from __future__ import annotations

import doctest
import gc

import engine.memory.provisional
from engine.memory.provisional import RewardLedger
from engine.types import Reward


def ev(did: str, kind: str, value: float = 0.0, decided: float = 0.0, t: float = 1.0) -> Reward:
    return Reward(
        did, "e", "a", "u-" + did, kind, value, 0.5, "x", 0, decided, t, {"segment": "s1"}, "home", {"f": 2.0}
    )  # type: ignore[arg-type]


def test_doctests() -> None:
    assert doctest.testmod(engine.memory.provisional).failed == 0


def test_click_then_conversion_gives_one_final_credit_with_the_decisions_features() -> None:
    led = RewardLedger(conversion_weight=2.0, window=100.0)
    led.add([ev("d1", "impression"), ev("d1", "click", 1.0)])
    assert led.due() == [] and len(led) == 1  # conversions count: a click is not final
    led.add([ev("d1", "conversion", 3.0, t=5.0)])
    (credit,) = led.due()
    assert (credit.kind, credit.reward) == ("final", 1.0 + 2.0 * 3.0)
    pd = credit.decision
    assert (pd.user_id, pd.attributes, pd.context_text, pd.features) == (
        "u-d1",
        {"segment": "s1"},
        "home",
        {"f": 2.0},
    )
    assert pd.converted and len(led) == 0


def test_provisional_credit_is_corrected_when_the_window_closes() -> None:
    led = RewardLedger(conversion_weight=1.0, window=10.0)
    led.add([ev("d1", "impression"), ev("d1", "click", 1.0)])
    (prov,) = led.due(estimate=lambda pd: 0.25)
    assert (prov.kind, prov.reward, prov.decision.provisional) == ("provisional", 1.25, 1.25)
    assert led.due(estimate=lambda pd: 0.25) == []  # one provisional credit per decision
    (corr,) = led.due(now=11.0)
    assert (corr.kind, corr.reward, corr.decision.provisional) == ("correction", 1.0, 1.25)


def test_windows_close_in_decision_order_and_an_update_keeps_its_place() -> None:
    led = RewardLedger(conversion_weight=1.0, window=10.0)
    led.add([ev("old", "impression", decided=0.0), ev("new", "impression", decided=5.0)])
    led.add([ev("old", "click", 1.0, decided=0.0, t=2.0)])  # replaced in place, still the oldest
    closed = led.due(now=12.0)
    assert [(c.decision.decision_id, c.reward) for c in closed] == [("old", 1.0)]
    assert [c.decision.decision_id for c in led.due(now=16.0)] == ["new"]


def test_pending_decisions_are_bounded_and_evicted_oldest_first() -> None:
    led = RewardLedger(conversion_weight=1.0, window=100.0, max_pending=2)
    led.add([ev(d, "impression", decided=i) for i, d in enumerate(["a", "b", "c"])])
    assert len(led) == 2 and led.evicted == 1
    led.add([ev("a", "click", 1.0)])  # an evicted decision's event does not bring it back
    assert len(led) == 2


def test_pending_decisions_leave_the_garbage_collectors_scans() -> None:
    """What keeps a busy experiment's full collections short: after a collection, none of the
    pending decisions (with attributes and features) is tracked any more."""
    led = RewardLedger(conversion_weight=1.0, window=1e9)
    led.add([ev(f"d{i}", "impression") for i in range(1000)])
    led.add([ev(f"d{i}", "click", 1.0) for i in range(0, 1000, 7)])
    led.due()
    gc.collect(0)  # one pass of the youngest generation is enough: a row holds atoms only
    rows = list(led._pending.values())
    assert len(rows) == 1000 and not any(gc.is_tracked(r) for r in rows)


def test_an_event_without_attributes_or_features_is_kept() -> None:
    """A Reward's defaults are read-only mapping proxies, which JSON cannot encode as they are."""
    led = RewardLedger(conversion_weight=0.0, window=10.0)
    led.add([Reward("d1", "e", "a", "u", "click", 1.0, 0.5, "x", 0, 0.0, 1.0)])
    (credit,) = led.due()
    assert (credit.reward, credit.decision.attributes, credit.decision.features) == (1.0, {}, {})
