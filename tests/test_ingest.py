"""Ingestion and learning against real Redis, without a broker: validation,
dead letters, exactly-once learning, recovery on another worker."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from consumers.ingest import Ingestor, Record
from engine.learner import LearnerPool
from engine.metrics import PrometheusSensor
from engine.store import ExperimentStore, Keys, PolicyStore, RewardLedger
from schemas import DeadLetter, DecisionLog, Experiment, ExperimentSpec

NOW = datetime.now(UTC)
EXP = Experiment.from_spec(
    ExperimentSpec(
        id="x", variants=[{"id": "a", "text": "A"}, {"id": "b", "text": "B"}], attribution_window_s=600
    ),
    NOW,
)


class Worker:
    """The ingestion half of a worker, wired to real Redis."""

    def __init__(self, client: aioredis.Redis) -> None:
        keys = Keys()
        self.learned: list[tuple[str, int]] = []  # (experiment, allocator version) per after-learning call
        self.sensor = PrometheusSensor()
        self.ledger = RewardLedger(client, keys, stream_maxlen=100_000, grace_s=0.2)
        self.policies = PolicyStore(client, keys)
        self.learners = LearnerPool(
            self.ledger,
            self.policies,
            lambda e: EXP if e == "x" else None,
            self.sensor,
            snapshot_interval_s=0.0,
            after_learning=self.after_learning,
        )
        self.dead: list[DeadLetter] = []
        self.ingestor = Ingestor(self.ledger, self.learners, self.lookup, self.sink, self.sensor)

    async def lookup(self, exp_id: str) -> Experiment | None:
        return EXP if exp_id == "x" else None

    async def after_learning(self, exp_id: str, allocator: object) -> None:
        self.learned.append((exp_id, allocator.version))  # type: ignore[attr-defined]

    async def sink(self, letters: Sequence[DeadLetter]) -> None:
        self.dead.extend(letters)


@pytest.fixture()
async def client(redis_url: str) -> aioredis.Redis:
    c = aioredis.Redis.from_url(redis_url)
    await ExperimentStore(c, Keys()).create(EXP)
    yield c
    await c.aclose()


def decision_rec(i: int, variant: str, offset: int) -> Record:
    d = DecisionLog(
        decision_id=f"d{i}",
        experiment_id="x",
        variant_id=variant,
        content=variant.upper(),
        propensity=0.5,
        allocator="thompson",
        model_version=0,
        timestamp=NOW,
        user_id=f"u{i}",
    )
    return Record("decisions", 0, offset, b"x", d.model_dump_json().encode())


def event_rec(kind: str, eid: str, did: str, offset: int, at: datetime = NOW, **extra: object) -> Record:
    body = {
        "type": kind,
        "event_id": eid,
        "decision_id": did,
        "experiment_id": "x",
        "event_time": at.isoformat(),
        **extra,
    }
    return Record(
        {"impression": "impressions", "click": "clicks", "conversion": "conversions"}[kind],
        0,
        offset,
        b"x",
        json.dumps(body).encode(),
    )


async def test_batch_outcomes_and_dead_letters(client: aioredis.Redis) -> None:
    w = Worker(client)
    assert await w.ingestor.ingest_decisions([decision_rec(i, "ab"[i % 2], i) for i in range(4)]) == 4
    records = [
        event_rec("impression", "i0", "d0", 0),
        event_rec("click", "c0", "d0", 1),
        event_rec("click", "c0", "d0", 2),  # client retry
        event_rec("impression", "i1", "d1", 3, at=NOW + timedelta(hours=1)),  # late
        Record("clicks", 0, 4, b"x", b"{not json"),
        event_rec("click", "c9", "d1", 5, surprise=1),  # unknown field
        event_rec("conversion", "v1", "d1", 6, value="12"),  # wrong type
        event_rec("click", "c5", "d5", 7, experiment_id="nope"),  # unknown experiment
        event_rec("impression", "i2", "d2", 8),
    ]
    counts = await w.ingestor.ingest_events(records)
    assert counts["applied"] == 3 and counts["duplicate"] == 1 and counts["late"] == 1
    reasons = sorted(d.reason for d in w.dead)
    assert reasons == ["invalid", "invalid", "invalid", "late", "unmatched"]
    invalid = {d.offset: d.detail for d in w.dead if d.reason == "invalid"}
    assert "surprise" in invalid[5] and "value" in invalid[6] and "json" in invalid[4].lower()
    learner = w.learners.learners["x"]
    summary = learner.allocator.summary()
    assert summary["a"]["trials"] == 2 and summary["a"]["clicks"] == 1  # d0 and d2 are variant a


async def test_unmatched_after_grace_is_dead_lettered(client: aioredis.Redis) -> None:
    import asyncio

    w = Worker(client)
    await w.ingestor.ingest_events([event_rec("click", "c1", "ghost", 0)])
    assert w.dead == []
    await asyncio.sleep(0.25)
    counts = await w.ingestor.retry_pending(["x"])
    assert counts == {"unmatched": 1}
    assert [d.reason for d in w.dead] == ["unmatched"]


async def test_another_worker_recovers_the_same_learning_state(client: aioredis.Redis) -> None:
    first = Worker(client)
    await first.ingestor.ingest_decisions([decision_rec(i, "ab"[i % 3 == 0], i) for i in range(30)])
    await first.ingestor.ingest_events([event_rec("impression", f"i{i}", f"d{i}", i) for i in range(20)])
    await first.learners.flush(force=True)  # snapshot after 20 impressions ...
    await first.ingestor.ingest_events(
        [event_rec("click", f"c{i}", f"d{i}", 100 + i) for i in range(0, 30, 2)]
    )
    state = first.learners.learners["x"].allocator.summary()  # ... and 15 clicks (+5 implied trials) after it
    # a second worker takes over (partition move): snapshot + replay of the stream after its cursor
    second = Worker(client)
    learner = await second.learners.get("x")
    assert learner is not None and learner.allocator.summary() == state
    # replaying the same Kafka records on the new owner changes nothing
    await second.ingestor.ingest_events(
        [event_rec("click", f"c{i}", f"d{i}", 100 + i) for i in range(0, 30, 2)]
    )
    assert second.learners.learners["x"].allocator.summary() == state
    total = sum(v["trials"] for v in state.values())
    assert total == 25  # 20 impressions + 5 trials implied by clicks on decisions 20..28 (even)


async def test_an_unrestorable_snapshot_is_rebuilt_from_the_reward_stream(client: aioredis.Redis) -> None:
    # e.g. a snapshot an older release wrote in another format: the new owner must not stop learning the
    # experiment (every later batch would fail); it rebuilds the policy from the stream and says so
    first = Worker(client)
    await first.ingestor.ingest_decisions([decision_rec(i, "ab"[i % 2], i) for i in range(10)])
    await first.ingestor.ingest_events([event_rec("impression", f"i{i}", f"d{i}", i) for i in range(10)])
    await first.ingestor.ingest_events(
        [event_rec("click", f"c{i}", f"d{i}", 20 + i) for i in range(0, 10, 3)]
    )
    await first.learners.flush(force=True)
    counts = {
        v: (s["trials"], s["clicks"]) for v, s in first.learners.learners["x"].allocator.summary().items()
    }
    stored = await first.policies.load("x")
    assert stored is not None
    broken = {"allocator": "thompson", "version": 99, "layout": "from another release"}
    await first.policies.redis.hset(first.policies.keys.policy("x"), "snapshot", json.dumps(broken))

    second = Worker(client)
    learner = await second.learners.get("x")
    assert learner is not None  # every reward relearned, once:
    assert {v: (s["trials"], s["clicks"]) for v, s in learner.allocator.summary().items()} == counts
    assert learner.cursor == stored.cursor
    assert b"abengine_policy_rebuilds_total 1.0" in second.sensor.exposition()
    assert await second.learners.flush(force=True) == 1  # the rebuilt policy replaces the broken one
    again = await second.policies.load("x")
    assert again is not None and again.snapshot.get("layout") is None


async def test_a_rebuilt_learner_never_goes_behind_the_stored_cursor(client: aioredis.Redis) -> None:
    # the stored policy is unreadable and its cursor is past the end of the stream (the stream expired):
    # the rebuilt learner continues from the stored cursor, so the snapshot fence accepts its saves
    w = Worker(client)
    await w.ingestor.ingest_decisions([decision_rec(i, "a", i) for i in range(3)])
    await w.ingestor.ingest_events([event_rec("impression", f"i{i}", f"d{i}", i) for i in range(3)])
    ahead = "9999999999999-0"
    assert await w.policies.save("x", {"allocator": "thompson", "version": 7}, ahead)
    w.learners.learners.clear()
    learner = await w.learners.get("x")
    assert learner is not None and learner.cursor == ahead
    assert await w.learners.flush(force=True) == 1 and "x" in w.learners.learners


async def test_serving_answers_with_a_fresh_policy_when_the_stored_one_cannot_be_restored(
    client: aioredis.Redis,
) -> None:
    from engine.serving import ServingState

    w = Worker(client)
    assert await w.policies.save("x", {"allocator": "thompson", "version": 3}, "1-0")
    serving = ServingState(ExperimentStore(client, Keys()), w.policies, w.sensor)
    await serving.refresh()
    assert "x" in serving.experiments and serving.allocators["x"].variant_ids == ["a", "b"]
    assert b"abengine_policy_rebuilds_total 1.0" in w.sensor.exposition()


async def test_stale_owner_cannot_overwrite_a_newer_snapshot(client: aioredis.Redis) -> None:
    old, new = Worker(client), Worker(client)
    await old.ingestor.ingest_decisions([decision_rec(i, "a", i) for i in range(4)])
    await old.ingestor.ingest_events([event_rec("impression", "i0", "d0", 0)])
    await new.ingestor.ingest_events([event_rec("impression", "i1", "d1", 1)])
    assert await new.learners.flush(force=True) == 1
    old.learners.learners["x"].saved_cursor = ""  # make the old copy look dirty
    assert await old.learners.flush(force=True) == 0  # fenced: its cursor is behind
    assert "x" not in old.learners.learners


async def test_the_first_rewards_a_learner_meets_run_the_after_learning_hook(client: aioredis.Redis) -> None:
    # a learner is created when its experiment's first rewards arrive and learns them in its first catch-up
    # (the replay a new owner also does after a partition move): their side effects (the actor-critic's user
    # memories) must happen then too, not wait for rewards that may never come
    w = Worker(client)
    await w.ingestor.ingest_decisions([decision_rec(i, "a", i) for i in range(3)])
    await w.ingestor.ingest_events([event_rec("impression", f"i{i}", f"d{i}", i) for i in range(3)])
    assert w.learners.learners["x"].applied == 3
    assert [e for e, _ in w.learned] == ["x"]


async def test_learning_and_snapshots_run_off_the_event_loop(client: aioredis.Redis) -> None:
    """An allocator's learning step (and its snapshot) is CPU work of milliseconds: it runs in a worker
    thread, so decisions served by the same event loop do not wait for it."""
    import threading

    w = Worker(client)
    await w.ingestor.ingest_decisions([decision_rec(i, "ab"[i % 2], i) for i in range(4)])
    await w.ingestor.ingest_events([event_rec("impression", "i0", "d0", 0)])
    allocator = w.learners.learners["x"].allocator
    calls: list[tuple[str, int]] = []
    for name in ("update", "snapshot"):

        def spy(*args: object, _name: str = name, _original: object = getattr(allocator, name)) -> object:
            calls.append((_name, threading.get_ident()))
            return _original(*args)  # type: ignore[operator]

        setattr(allocator, name, spy)
    more = [event_rec("impression", "i1", "d1", 1), event_rec("click", "c1", "d1", 2)]
    await w.ingestor.ingest_events(more)
    await w.learners.flush(force=True)
    assert sorted({n for n, _ in calls}) == ["snapshot", "update"]
    assert all(thread != threading.get_ident() for _, thread in calls)  # never the event loop's thread
    assert w.learners.learners["x"].allocator.summary()["b"]["clicks"] == 1
