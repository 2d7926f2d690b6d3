"""Joining streamed events into decision rewards, with provisional credit for conversions still to come.

Events arrive one at a time (impression, click, conversion). A decision's reward is
``r = clicks + w * conversion_value``; it is *final* when its conversion lands, when its attribution window
closes, or at the first click when conversions do not count (``w = 0``). Learners that cannot wait get a
*provisional* reward from an estimator (expected conversion value per click of the variant), and a correcting
sample when the decision becomes final.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

import orjson

from engine.types import FeatureValue, Reward

CreditKind = Literal["final", "provisional", "correction"]


class PendingDecision(NamedTuple):
    """What the learner knows about one decision so far (immutable: the ledger replaces it on a change)."""

    decision_id: str
    user_id: str
    variant_id: str
    propensity: float
    decided_at: float
    attributes: dict[str, FeatureValue]
    context_text: str | None
    features: dict[str, float]
    clicks: float = 0.0
    conversion_value: float = 0.0
    converted: bool = False
    provisional: float | None = None


def _stored(pd: PendingDecision) -> tuple:
    """The plain tuple the ledger keeps for ``pd``: atoms only, its dicts as JSON strings.

    A busy experiment keeps up to ``max_pending`` (200,000) decisions for a whole attribution window.
    The garbage collector stops tracking an exact tuple of atoms (strings, numbers, bytes) at its first
    pass, but tracks for life a dataclass instance and a named tuple (not an exact tuple), and a tuple
    holding a dict or another tuple only once that one is untracked first, so some rows reached the
    oldest generation still tracked. Every full collection scanned them again: ~98 ms per generation-2
    pause in the soak (docs/PERFORMANCE.md; tests/test_provisional.py checks rows go untracked). The
    dicts come from the ledger's JSON (engine/store/ledger.py), so the round trip loses nothing."""
    return (*pd[:5], _json(pd.attributes), pd.context_text, _json(pd.features), *pd[8:])


def _json(d: Mapping[str, object]) -> str:
    """``d`` as a JSON string. Not orjson's bytes: kept for a whole window, each of those held a
    ~4 KB buffer (a 90,000-decision learner's peak RSS 616 → 1,261 MiB, bench_gc_pending.py)."""
    return orjson.dumps(d).decode()


def _view(row: tuple) -> PendingDecision:
    return PendingDecision(*row[:5], orjson.loads(row[5]), row[6], orjson.loads(row[7]), *row[8:])


@dataclass(frozen=True, slots=True)
class Credit:
    """A training signal for one decision: its reward and whether it is final, provisional or a correction."""

    decision: PendingDecision
    reward: float
    kind: CreditKind


class RewardLedger:
    """Bounded ledger of decisions awaiting their final reward.

    >>> led = RewardLedger(conversion_weight=0.0, window=10.0)
    >>> from engine.types import Reward
    >>> ev = Reward("d1", "e", "a", "u", "click", 1.0, 0.5, "x", 0, 0.0, 1.0)
    >>> led.add([ev]); [(c.reward, c.kind) for c in led.due(1.0)]
    [(1.0, 'final')]
    """

    def __init__(self, conversion_weight: float, window: float, max_pending: int = 200_000) -> None:
        if conversion_weight < 0 or window <= 0:
            raise ValueError("conversion_weight must be >= 0 and window > 0")
        self.w = conversion_weight
        self.window = window
        self.max_pending = max_pending
        #: decision id -> the pending decision as a plain tuple (:func:`_stored`), oldest decision first
        self._pending: OrderedDict[str, tuple] = OrderedDict()
        self._fresh: set[str] = set()
        self.now = float("-inf")
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, rewards: Iterable[Reward]) -> None:
        for ev in rewards:
            self.now = max(self.now, ev.event_time)
            row = self._pending.get(ev.decision_id)
            if row is None:
                row = _stored(
                    PendingDecision(
                        ev.decision_id,
                        ev.user_id,
                        ev.variant_id,
                        ev.propensity,
                        ev.decided_at,
                        dict(ev.attributes),  # a Reward's default is a read-only proxy orjson cannot dump
                        ev.context_text,
                        dict(ev.features),
                    )
                )
                self._pending[ev.decision_id] = row
                if len(self._pending) > self.max_pending:
                    self._pending.popitem(last=False)
                    self.evicted += 1
            if ev.kind == "click":  # an impression changes nothing, so its row is not unpacked
                pd = _view(row)
                self._update(pd._replace(clicks=max(pd.clicks, float(ev.value) if ev.value else 1.0)))
            elif ev.kind == "conversion":
                pd = _view(row)
                value = pd.conversion_value + float(ev.value)
                self._update(pd._replace(conversion_value=value, converted=True))
            self._fresh.add(ev.decision_id)

    def _update(self, pd: PendingDecision) -> None:
        """Replace a pending decision in place (its position, the window order, is kept); one evicted
        meanwhile stays evicted."""
        if pd.decision_id in self._pending:
            self._pending[pd.decision_id] = _stored(pd)

    def reward(self, pd: PendingDecision) -> float:
        return pd.clicks + self.w * pd.conversion_value

    def due(
        self, now: float | None = None, estimate: Callable[[PendingDecision], float] | None = None
    ) -> list[Credit]:
        """Credits ready now: finals (removed from the ledger) and, with ``estimate``, provisional credits."""
        if now is not None:
            self.now = max(self.now, now)
        out: list[Credit] = []
        done: list[str] = []
        for did in list(self._fresh):
            row = self._pending.get(did)
            if row is None:
                continue
            pd = _view(row)
            final = pd.converted or (self.w == 0.0 and pd.clicks > 0)
            if final:
                out.append(self._finalise(pd))
                done.append(did)
            elif estimate is not None and pd.provisional is None:
                pd = pd._replace(provisional=pd.clicks + self.w * estimate(pd))
                self._update(pd)
                out.append(Credit(pd, pd.provisional, "provisional"))
        for did in done:
            self._pending.pop(did, None)
        self._fresh.clear()
        # windows close in decision order, so the oldest pending decisions come first
        while self._pending:
            pd = _view(next(iter(self._pending.values())))
            if pd.decided_at + self.window > self.now:
                break
            self._pending.popitem(last=False)
            out.append(self._finalise(pd))
        return [c for c in out if c is not None]

    def _finalise(self, pd: PendingDecision) -> Credit:
        r = self.reward(pd)
        if pd.provisional is None:
            return Credit(pd, r, "final")
        return Credit(pd, r, "correction")
