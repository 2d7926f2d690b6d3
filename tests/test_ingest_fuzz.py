"""Property-based fuzzing of the event path (real Redis, no broker): whatever arrives on the event
topics, every record is accounted for (an outcome or a dead letter with a reason), nothing raises,
and no poison value reaches the reward stream or the learner."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.ingest import Record
from engine.store import ExperimentStore, Keys
from tests.test_ingest import EXP, Worker, decision_rec

NOW = datetime.now(UTC).isoformat()
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
field_values = {
    "type": st.sampled_from(["impression", "click", "conversion", "hover", ""]) | scalars,
    "event_id": st.sampled_from(["e1", "e2", "e3"]) | st.text(max_size=20) | scalars,
    "decision_id": st.sampled_from(["d0", "d1", "d2", "ghost"]) | scalars,
    "experiment_id": st.sampled_from(["x", "x", "other"]) | scalars,
    "event_time": st.sampled_from([NOW, "2000-01-01T00:00:00Z", "2999-01-01T00:00:00Z", "yesterday"])
    | scalars,
    "value": st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**12), 10**12) | scalars,
    "currency": st.sampled_from(["USD", "usd", "EURO"]) | scalars,
    "user_id": st.text(max_size=10) | scalars,
}
event_dicts = st.fixed_dictionaries({}, optional={k: v for k, v in field_values.items()})
raw_values = st.one_of(
    event_dicts.map(lambda d: json.dumps(d, allow_nan=True).encode()),
    st.binary(max_size=200),
    st.sampled_from([b"", b"null", b"[]", b"{}", b'{"type": "click"' + b"," * 10]),
)
records = st.lists(
    st.tuples(st.sampled_from(["impressions", "clicks", "conversions"]), raw_values), min_size=1, max_size=25
)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


@pytest.fixture(scope="module")
def worker(redis_server, loop: asyncio.AbstractEventLoop) -> Iterator[Worker]:  # type: ignore[no-untyped-def]
    client = aioredis.Redis.from_url(redis_server.url)

    async def setup() -> Worker:
        await client.flushall()
        await ExperimentStore(client, Keys()).create(EXP)
        w = Worker(client)
        await w.ingestor.ingest_decisions([decision_rec(i, "ab"[i % 2], i) for i in range(3)])
        return w

    yield loop.run_until_complete(setup())
    loop.run_until_complete(client.aclose())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=records)
def test_every_record_is_accounted_for_and_nothing_poisons_the_learner(
    worker: Worker, loop: asyncio.AbstractEventLoop, batch: list[tuple[str, bytes]]
) -> None:
    worker.dead.clear()
    recs = [Record(topic, 0, i, b"x", raw) for i, (topic, raw) in enumerate(batch)]
    counts = loop.run_until_complete(worker.ingestor.ingest_events(recs))
    outcomes = sum(v for k, v in counts.items() if k not in ("invalid", "unmatched", "late"))
    dead = len(worker.dead)
    # each record: an outcome recorded in the ledger, or a dead letter with a reason (late/unmatched both)
    assert outcomes + dead == len(recs), (counts, [d.reason for d in worker.dead])
    assert all(d.reason and d.detail for d in worker.dead)
    learner = worker.learners.learners.get("x")
    if learner is not None:
        for stats in learner.allocator.summary().values():
            assert all(math.isfinite(v) for v in stats.values())
            assert stats["clicks"] <= stats["trials"]
    entries = loop.run_until_complete(worker.ledger.read_rewards("x"))
    assert all(math.isfinite(e.reward.value) and 0 <= e.reward.value <= 1e9 for e in entries)
