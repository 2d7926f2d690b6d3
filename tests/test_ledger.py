"""The Redis reward ledger: join, dedupe, window, pending, exactly-once stream (real Redis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from engine.store import Keys, RewardLedger
from engine.types import Reward
from schemas import ClickEvent, ConversionEvent, DecisionLog, EventBase, ImpressionEvent

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def decision(did: str, variant: str = "a", at: datetime = NOW) -> DecisionLog:
    return DecisionLog(
        decision_id=did,
        experiment_id="x",
        variant_id=variant,
        content="A",
        propensity=0.5,
        allocator="thompson",
        model_version=3,
        timestamp=at,
        user_id="u1",
        attributes={"segment": "s1"},
        context="home",
    )


def ev(
    cls: type[EventBase], eid: str, did: str = "d1", at: datetime = NOW, **kw: object
) -> tuple[EventBase, bytes]:
    e = cls(event_id=eid, decision_id=did, experiment_id="x", event_time=at, **kw)
    return e, e.model_dump_json().encode()


@pytest.fixture()
async def ledger(redis_url: str) -> RewardLedger:
    client = aioredis.Redis.from_url(redis_url)
    yield RewardLedger(client, Keys(), stream_maxlen=10_000, grace_s=30.0)
    await client.aclose()


async def apply(ledger: RewardLedger, *events: tuple[EventBase, bytes], now: datetime = NOW) -> list[str]:
    return await ledger.apply_events("x", list(events), window_s=3600, now=now.timestamp())


async def test_events_join_their_decision_and_reach_the_stream(ledger: RewardLedger) -> None:
    await ledger.record_decisions([decision("d1")], {"x": 3600})
    out = await apply(
        ledger, ev(ImpressionEvent, "e1"), ev(ClickEvent, "e2"), ev(ConversionEvent, "e3", value=19.5)
    )
    assert out == ["applied", "applied", "applied"]
    entries = await ledger.read_rewards("x")
    assert [(e.reward.kind, e.reward.value) for e in entries] == [
        ("impression", 0.0),
        ("click", 1.0),
        ("conversion", 19.5),
    ]
    # every field of the decision reaches the learner (the stream record is read positionally)
    assert entries[2].reward == Reward(
        decision_id="d1",
        experiment_id="x",
        variant_id="a",
        user_id="u1",
        kind="conversion",
        value=19.5,
        propensity=0.5,
        allocator="thompson",
        model_version=3,
        decided_at=NOW.timestamp(),
        event_time=NOW.timestamp(),
        attributes={"segment": "s1"},
        context_text="home",
        features={},
    )


async def test_replays_and_client_retries_count_once(ledger: RewardLedger) -> None:
    await ledger.record_decisions([decision("d1")], {"x": 3600})
    click = ev(ClickEvent, "e2")
    assert await apply(ledger, click) == ["applied"]
    assert await apply(ledger, click, click) == ["duplicate", "duplicate"]
    # a second, distinct click on the same decision is recorded but not rewarded twice
    assert await apply(ledger, ev(ClickEvent, "e9")) == ["repeat"]
    kinds = [e.reward.kind for e in await ledger.read_rewards("x")]
    assert kinds == ["impression", "click"]  # the click implied the impression, once
    counters = await ledger.counters("x")
    assert (
        counters["applied:click"] == 1 and counters["duplicate:click"] == 2 and counters["repeat:click"] == 1
    )


async def test_impression_after_implied_impression_is_applied_without_a_second_trial(
    ledger: RewardLedger,
) -> None:
    await ledger.record_decisions([decision("d1")], {"x": 3600})
    assert await apply(ledger, ev(ClickEvent, "c1"), ev(ImpressionEvent, "i1")) == ["applied", "applied"]
    assert [e.reward.kind for e in await ledger.read_rewards("x")] == ["impression", "click"]


async def test_late_events_are_classified_late(ledger: RewardLedger) -> None:
    await ledger.record_decisions([decision("d1")], {"x": 3600})
    late = ev(ClickEvent, "e2", at=NOW + timedelta(hours=2))
    assert await apply(ledger, late) == ["late"]
    assert await apply(ledger, late) == ["duplicate"]  # dead-lettered once only
    assert await ledger.read_rewards("x") == []


async def test_event_before_its_decision_waits_then_joins(ledger: RewardLedger) -> None:
    early = ev(ClickEvent, "e2")
    assert await apply(ledger, early, early) == ["pending", "duplicate"]  # a client retry in the batch
    assert await ledger.experiments_with_pending() == ["x"]
    await ledger.record_decisions([decision("d1")], {"x": 3600})
    pending = await ledger.pending("x")
    assert [k for k, _ in pending] == ["click"]
    from schemas import EVENT_MODELS

    retry = [(EVENT_MODELS[k].model_validate_json(raw), raw) for k, raw in pending]
    assert await ledger.apply_events("x", retry, window_s=3600, now=NOW.timestamp(), retry=True) == [
        "applied"
    ]
    assert await ledger.pending("x") == []
    await ledger.clear_pending_index("x")
    assert await ledger.experiments_with_pending() == []
    counters = await ledger.counters("x")
    assert counters["waited:click"] == 1 and counters["applied:click"] == 1
    assert counters["duplicate:click"] == 1


async def test_event_without_decision_becomes_unmatched_after_grace(ledger: RewardLedger) -> None:
    orphan = ev(ImpressionEvent, "e1", did="ghost")
    assert await apply(ledger, orphan, now=NOW) == ["pending"]
    # a second copy while the first waits (a client retry): a duplicate, counted, the first still waits
    assert await apply(ledger, orphan, now=NOW + timedelta(seconds=10)) == ["duplicate"]
    assert [k for k, _ in await ledger.pending("x")] == ["impression"]
    assert await apply(ledger, orphan, now=NOW + timedelta(seconds=31)) == ["unmatched"]
    assert await ledger.pending("x") == []
    counters = await ledger.counters("x")
    assert counters["waited:impression"] == 1 and counters["duplicate:impression"] == 1


async def test_cleanup_beside_joins_never_drops_a_waiting_events_payload(ledger: RewardLedger) -> None:
    """The retry loop's cleanup runs while batches are joined (the batch consumer overlaps them).
    When it read the zset and the payloads with two commands, an event marked waiting between the
    two reads lost its payload and waited forever (5 of 97,977 events in a 10-minute soak)."""
    import asyncio

    n = 300
    done = asyncio.Event()

    async def cleanup_loop() -> int:
        rounds = 0
        while not done.is_set():
            await ledger.clear_pending_index("x")
            rounds += 1
        return rounds

    async def join_early_events() -> None:
        for i in range(n):  # each a round of its own: script, then the payload write (wall clock)
            early = ev(ClickEvent, f"e{i}", did=f"later{i}")
            assert await ledger.apply_events("x", [early], window_s=3600) == ["pending"]
        done.set()

    rounds, _ = await asyncio.gather(cleanup_loop(), join_early_events())
    await ledger.clear_pending_index("x")
    assert rounds > 10  # the two really interleaved
    waiting = await ledger.pending("x")
    assert len(waiting) == n  # every waiting event still has its payload, so it can be retried
    assert await ledger.experiments_with_pending() == ["x"]
    assert "orphaned" not in await ledger.counters("x")


async def test_waiting_events_that_lost_their_payload_are_removed_and_counted(ledger: RewardLedger) -> None:
    keys = Keys()
    now = NOW.timestamp()
    old_ms = int(now * 1000) - 30_000 - 61_000  # past grace + ORPHAN_AFTER_MS
    await ledger.redis.zadd(keys.pending("x"), {"click\nlost": old_ms, "click\nrecent": int(now * 1000)})
    await ledger.redis.sadd(keys.pending_index, "x")
    await ledger.clear_pending_index("x", now=now)
    assert await ledger.redis.zrange(keys.pending("x"), 0, -1) == [b"click\nrecent"]  # may still get one
    assert (await ledger.counters("x"))["orphaned"] == 1
    assert await ledger.experiments_with_pending() == ["x"]
    await ledger.clear_pending_index("x", now=now + 120)
    assert await ledger.experiments_with_pending() == []
    assert (await ledger.counters("x"))["orphaned"] == 2


async def test_conversions_per_decision_are_capped(ledger: RewardLedger) -> None:
    await ledger.record_decisions([decision("d1")], {"x": 3600})
    out = await apply(ledger, *[ev(ConversionEvent, f"c{i}", value=1.0) for i in range(20)])
    assert out.count("applied") == 16 and out.count("repeat") == 4


async def test_reward_stream_cursor_is_exclusive(ledger: RewardLedger) -> None:
    await ledger.record_decisions([decision("d1"), decision("d2", "b")], {"x": 3600})
    await apply(ledger, ev(ImpressionEvent, "e1"), ev(ImpressionEvent, "e2", did="d2"))
    first = await ledger.read_rewards("x", count=1)
    rest = await ledger.read_rewards("x", after=first[0].id)
    assert [e.reward.decision_id for e in first + rest] == ["d1", "d2"]


async def test_a_copy_of_a_waiting_event_restores_a_payload_a_crash_lost(ledger: RewardLedger) -> None:
    """The join marks an event waiting, then the worker writes its payload: a crash between the two
    leaves a payload-less member. A replayed copy counts as a duplicate and writes the payload again."""
    early = ev(ClickEvent, "e7")
    assert await apply(ledger, early) == ["pending"]
    await ledger.redis.delete(Keys().pending_payloads("x"))  # the lost write
    assert await ledger.pending("x") == []
    assert await apply(ledger, early) == ["duplicate"]  # the replay after the restart
    assert [k for k, _ in await ledger.pending("x")] == ["click"]


def count_script_calls(ledger: RewardLedger) -> dict[str, int]:
    calls = {"record": 0, "apply": 0}
    for name in calls:
        script = getattr(ledger, f"_{name}")

        async def counted(*args: object, _script: Any = script, _name: str = name, **kw: object) -> object:
            calls[_name] += 1
            return await _script(*args, **kw)

        setattr(ledger, f"_{name}", counted)
    return calls


async def test_batches_run_as_short_scripts_with_the_outcomes_of_one(redis_url: str) -> None:
    """A batch over ``script_items`` runs as several scripts in turn (Redis serves reads between them):
    the outcomes, stream and counters are those of one script over the whole batch — duplicates and
    waiting events across script boundaries included."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        results = []
        for items, prefix in ((3, "short"), (1000, "whole")):
            ledger = RewardLedger(
                client, Keys(prefix=prefix), stream_maxlen=10_000, grace_s=30.0, script_items=items
            )
            calls = count_script_calls(ledger)
            await ledger.record_decisions([decision(f"d{i}") for i in range(7)], {"x": 3600})
            batch = [ev(ImpressionEvent, f"i{i}", f"d{i}") for i in range(7)]
            batch += [ev(ClickEvent, "c1", "d1"), ev(ClickEvent, "c9", "d9"), ev(ClickEvent, "c1", "d1")]
            batch += [ev(ClickEvent, "c9", "d9"), ev(ImpressionEvent, "i3", "d3"), ev(ClickEvent, "c2", "d1")]
            outcomes = await apply(ledger, *batch)
            stream = [(e.reward.decision_id, e.reward.kind) for e in await ledger.read_rewards("x")]
            assert calls == ({"record": 3, "apply": 5} if items == 3 else {"record": 1, "apply": 1})
            results.append(
                (outcomes, stream, await ledger.counters("x"), [k for k, _ in await ledger.pending("x")])
            )
        assert results[0] == results[1]
        outcomes, _, _, waiting = results[0]
        assert outcomes[7:] == ["applied", "pending", "duplicate", "duplicate", "duplicate", "repeat"]
        assert waiting == ["click"]  # the early click's payload was written by its own script's run
    finally:
        await client.aclose()


async def test_scripts_sent_several_per_round_trip_give_the_outcomes_of_one(redis_url: str) -> None:
    """``scripts_per_trip`` > 1 pipelines an experiment's scripts (Redis runs them in order): the outcomes,
    stream, counters and waiting payloads are those of one script over the batch, and a Redis that lost
    its script cache (``SCRIPT FLUSH``) is recovered from within the trip."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        results = []
        for items, trips, prefix, flush in (
            (1000, 1, "one", False),
            (3, 4, "trips", False),
            (3, 4, "lost", True),
        ):
            ledger = RewardLedger(
                client,
                Keys(prefix=prefix),
                stream_maxlen=10_000,
                grace_s=30.0,
                script_items=items,
                scripts_per_trip=trips,
            )
            await ledger.record_decisions([decision(f"d{i}") for i in range(7)], {"x": 3600})
            if flush:
                await client.script_flush()
            batch = [ev(ImpressionEvent, f"i{i}", f"d{i}") for i in range(7)]
            batch += [ev(ClickEvent, "c1", "d1"), ev(ClickEvent, "c9", "d9"), ev(ClickEvent, "c1", "d1")]
            batch += [ev(ClickEvent, "c9", "d9"), ev(ImpressionEvent, "i3", "d3"), ev(ClickEvent, "c2", "d1")]
            outcomes = await apply(ledger, *batch)
            stream = [(e.reward.decision_id, e.reward.kind) for e in await ledger.read_rewards("x")]
            results.append(
                (outcomes, stream, await ledger.counters("x"), [k for k, _ in await ledger.pending("x")])
            )
        assert results[0] == results[1] == results[2]
        assert results[0][0][7:] == ["applied", "pending", "duplicate", "duplicate", "duplicate", "repeat"]
    finally:
        await client.aclose()


def test_scripts_per_trip_must_be_positive() -> None:
    with pytest.raises(ValueError, match="scripts_per_trip"):
        RewardLedger(aioredis.Redis(), Keys(), stream_maxlen=10, grace_s=1.0, scripts_per_trip=0)
