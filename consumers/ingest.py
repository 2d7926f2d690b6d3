"""Ingestion: validate, join, deduplicate and learn from batches of Kafka records.

Transport-free on purpose: the faust agents hand over plain :class:`Record`
batches, so this logic is tested against real Redis without a broker. Nothing
is dropped silently: every record ends applied, counted (duplicate, repeat),
or in the dead-letter topic with its reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

from pydantic import ValidationError

from engine.concurrency import gather_all
from engine.learner import LearnerPool
from engine.metrics import Sensor
from engine.store.ledger import PackedDecisions, RewardLedger
from schemas import EVENT_MODELS, DeadLetter, DecisionLog, EventBase, Experiment

log = logging.getLogger(__name__)

#: records validated between two yields to the event loop: preparing a batch is CPU-bound for
#: milliseconds, and the batch being applied meanwhile needs the loop to take its Redis replies
YIELD_EVERY = 200

#: logical topic name -> event type it carries
EVENT_OF_TOPIC = {"impressions": "impression", "clicks": "click", "conversions": "conversion"}


class Record(NamedTuple):
    """One Kafka record as the agents see it (a named tuple: built for every record consumed, at a
    third of a frozen dataclass's cost)."""

    topic: str  # logical name: decisions, impressions, clicks, conversions
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: int = -1  # the record's Kafka timestamp (ms); -1 when unknown


@dataclass(slots=True)
class PreparedDecisions:
    """A validated batch of decision records, ready for :meth:`Ingestor.apply_decisions`."""

    records: Sequence[Record]
    good: list[DecisionLog] = field(default_factory=list)
    bad: list[DeadLetter] = field(default_factory=list)
    windows: dict[str, float] = field(default_factory=dict)  # experiment -> attribution window (s)
    packed: list[PackedDecisions] = field(default_factory=list)  # the record script's arguments


@dataclass(slots=True)
class PreparedEvents:
    """A validated batch of event records grouped by experiment, ready for :meth:`Ingestor.apply_events`."""

    records: Sequence[Record]
    known: dict[str, tuple[Experiment, list[tuple[EventBase, bytes, Record]]]] = field(default_factory=dict)
    bad: list[DeadLetter] = field(default_factory=list)
    consumed: Counter[str] = field(default_factory=Counter)
    unknown: int = 0  # events of experiments that do not exist (dead-lettered as unmatched)
    packed: dict[str, list[bytes]] = field(default_factory=dict)  # experiment -> join script arguments

    @property
    def learn_targets(self) -> dict[str, int]:
        """Experiment -> partition of the learners this batch feeds."""
        return {exp_id: items[0][2].partition for exp_id, (_, items) in self.known.items()}


def describe_errors(exc: ValidationError, limit: int = 5) -> str:
    """``field: message`` for the first few errors (what a producer needs to fix its record)."""
    parts = []
    for err in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


DeadLetterSink = Callable[[Sequence[DeadLetter]], Awaitable[None]]


class Ingestor:
    """Turns record batches into ledger updates, learner updates and dead letters."""

    def __init__(
        self,
        ledger: RewardLedger,
        learners: LearnerPool,
        experiment: Callable[[str], Awaitable[Experiment | None]],
        dead_letters: DeadLetterSink,
        sensor: Sensor,
    ) -> None:
        self.ledger = ledger
        self.learners = learners
        self.experiment = experiment
        self.dead_letters = dead_letters
        self.sensor = sensor

    # --- decisions -----------------------------------------------------------------------------
    async def ingest_decisions(self, records: Sequence[Record]) -> int:
        """Store decisions so their events can join them; returns how many were stored."""
        return await self.apply_decisions(await self.prepare_decisions(records))

    async def prepare_decisions(self, records: Sequence[Record]) -> PreparedDecisions:
        """Validate (CPU only, no writes): the half a batch consumer overlaps with the previous apply."""
        prepared = PreparedDecisions(records)
        for i, rec in enumerate(records):
            if i and i % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let the batch being applied take its Redis replies meanwhile
            try:
                decision = DecisionLog.model_validate_json(rec.value)
            except ValidationError as exc:
                prepared.bad.append(dead_letter(rec, "invalid", describe_errors(exc)))
                continue
            exp = await self.experiment(decision.experiment_id)
            prepared.windows[decision.experiment_id] = exp.attribution_window_s if exp else 86400.0
            prepared.good.append(decision)
        prepared.packed = self.ledger.pack_decisions(prepared.good, prepared.windows)
        return prepared

    async def apply_decisions(self, prepared: PreparedDecisions) -> int:
        """Write validated decisions to the ledger; idempotent, so a retried batch is harmless."""
        await self.ledger.record_packed(prepared.packed)
        self.sensor.on_events_consumed("decision", len(prepared.records))
        await self._dead_letter(prepared.bad)
        return len(prepared.good)

    # --- events ----------------------------------------------------------------------------------
    async def ingest_events(self, records: Sequence[Record]) -> dict[str, int]:
        """Join a batch of impression/click/conversion records; returns outcome counts."""
        return await self.apply_events(await self.prepare_events(records))

    async def prepare_events(self, records: Sequence[Record]) -> PreparedEvents:
        """Validate and group by experiment (CPU only, no writes)."""
        prepared = PreparedEvents(records)
        by_exp: dict[str, list[tuple[EventBase, bytes, Record]]] = defaultdict(list)
        for i, rec in enumerate(records):
            if i and i % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            kind = EVENT_OF_TOPIC.get(rec.topic)
            if kind is None:
                prepared.bad.append(dead_letter(rec, "foreign_topic", f"not an event topic: {rec.topic}"))
                continue
            prepared.consumed[kind] += 1
            try:
                event = EVENT_MODELS[kind].model_validate_json(rec.value)
            except ValidationError as exc:
                prepared.bad.append(dead_letter(rec, "invalid", describe_errors(exc)))
                continue
            by_exp[event.experiment_id].append((event, rec.value, rec))
        for exp_id, items in by_exp.items():
            experiment = await self.experiment(exp_id)
            if experiment is None:
                prepared.bad.extend(
                    dead_letter(rec, "unmatched", f"unknown experiment {exp_id!r}") for _, _, rec in items
                )
                prepared.unknown += len(items)
            else:
                prepared.known[exp_id] = (experiment, items)
                prepared.packed[exp_id] = self.ledger.pack_events([(e, raw) for e, raw, _ in items])
        return prepared

    async def apply_events(self, prepared: PreparedEvents, *, learn: bool = True) -> dict[str, int]:
        """Join, learn and dead-letter a prepared batch; returns outcome counts.

        ``learn=False`` leaves learning to the caller (``prepared.learn_targets``): the batch consumer
        learns one batch while it joins the next. Learners read the reward stream from their cursor, so
        what they learn does not depend on when they run, only that they do.
        """
        known = prepared.known
        bad = list(prepared.bad)
        counts: dict[str, int] = defaultdict(int)
        if prepared.unknown:
            counts["unmatched"] += prepared.unknown
        joined: Counter[tuple[str, str, str]] = Counter()  # (experiment, kind, outcome), reported per batch
        # one script call per experiment, all in flight together (their keys are disjoint); the
        # arguments were packed in prepare_events, so this stage is mostly Redis's work
        all_outcomes = await gather_all(
            self.ledger.apply_events(
                exp_id,
                [(e, raw) for e, raw, _ in items],
                exp.attribution_window_s,
                packed=prepared.packed.get(exp_id),
            )
            for exp_id, (exp, items) in known.items()
        )
        for (exp_id, (experiment, items)), outcomes in zip(known.items(), all_outcomes, strict=True):
            for (event, _, rec), outcome in zip(items, outcomes, strict=True):
                counts[outcome] += 1
                joined[exp_id, event.type, outcome] += 1
                if outcome == "late":
                    bad.append(
                        dead_letter(
                            rec,
                            "late",
                            f"{event.type} {event.event_id} arrived after the "
                            f"{experiment.attribution_window_s:g}s attribution window",
                        )
                    )
                elif outcome == "unmatched":
                    bad.append(
                        dead_letter(
                            rec, "unmatched", f"no decision {event.decision_id!r} within the grace period"
                        )
                    )
        if known and learn:
            await self.learners.learn(known, partition=prepared.learn_targets)
        for kind, n in prepared.consumed.items():
            self.sensor.on_events_consumed(kind, n)
        for (exp_id, kind, outcome), n in joined.items():
            self._count(exp_id, kind, outcome, n)
        await self._dead_letter(bad)
        invalid = sum(1 for b in bad if b.reason == "invalid")
        if invalid:
            counts["invalid"] += invalid
        return dict(counts)

    async def retry_pending(self, experiment_ids: Sequence[str]) -> dict[str, int]:
        """Re-join events that arrived before their decision; dead-letter those past the grace period."""
        counts: dict[str, int] = defaultdict(int)
        for exp_id in experiment_ids:
            raws = await self.ledger.pending(exp_id)
            experiment = await self.experiment(exp_id)
            if not raws or experiment is None:
                await self.ledger.clear_pending_index(exp_id)
                continue
            items: list[tuple[EventBase, bytes]] = []
            for kind, raw in raws:
                items.append((EVENT_MODELS[kind].model_validate_json(raw), raw))
            outcomes = await self.ledger.apply_events(
                exp_id, items, experiment.attribution_window_s, retry=True
            )
            bad = []
            for (event, raw), outcome in zip(items, outcomes, strict=True):
                counts[outcome] += 1
                if outcome != "pending":
                    self._count(exp_id, event.type, outcome)
                if outcome in ("unmatched", "late"):
                    rec = Record(EVENT_OF_TOPIC_INV[event.type], -1, -1, exp_id.encode(), raw)
                    detail = (
                        f"no decision {event.decision_id!r} within the grace period"
                        if outcome == "unmatched"
                        else "arrived after the attribution window"
                    )
                    bad.append(dead_letter(rec, outcome, detail))
            await self._dead_letter(bad)
            if counts.get("applied") or counts.get("repeat"):
                await self.learners.learn([exp_id])
            await self.ledger.clear_pending_index(exp_id)
        return dict(counts)

    # --- helpers ------------------------------------------------------------------------------------
    def _count(self, exp_id: str, kind: str, outcome: str, n: int = 1) -> None:
        if outcome == "applied":
            self.sensor.on_rewards_joined(exp_id, kind, n)
        elif outcome in ("duplicate", "repeat", "late", "unmatched"):
            self.sensor.on_rejected(outcome, n)

    async def _dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        for letter in letters:
            self.sensor.on_deadletter(letter.reason)
            if letter.reason == "invalid":
                self.sensor.on_rejected("invalid")
        await self.dead_letters(letters)


EVENT_OF_TOPIC_INV = {v: k for k, v in EVENT_OF_TOPIC.items()}


def dead_letter(rec: Record, reason: str, detail: str) -> DeadLetter:
    return DeadLetter.model_construct(
        reason=reason,
        detail=detail[:2000],
        source_topic=rec.topic,
        partition=rec.partition,
        offset=rec.offset,
        key=rec.key.decode("utf-8", "replace") if rec.key is not None else None,
        payload=rec.value[:8192].decode("utf-8", "replace"),
        received_at=datetime.fromtimestamp(time.time(), UTC),
    )
