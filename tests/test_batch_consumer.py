"""The batch consumer on a real broker: a backlog's events are applied after their decisions.

A backlog whose decisions are large (3 KB) and whose events are small makes every fetch return far
more events than decisions, the worst case for a worker that catches up: without alignment most
events reach the ledger before their decision and must wait there and be joined again. The
ingestor here only records the order of application (the Redis side is tested in
tests/test_ingest.py); the broker, the group, the fetches, the two-stage loop and the commits are real.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from consumers.app import apply_batch
from consumers.batch import BatchConsumer
from consumers.ingest import PreparedDecisions, PreparedEvents, Record
from engine.config import Settings
from engine.services.embedded import EmbeddedKafka
from producers.kafka import EventProducer, ensure_topics

pytestmark = [pytest.mark.integration]

N = 1500


async def _backlog(bootstrap: str, settings: Settings) -> None:
    await ensure_topics(bootstrap, settings)
    producer = EventProducer(bootstrap, settings, linger_ms=5)
    await producer.start()
    try:
        for i in range(N):
            await producer.send("decisions", "exp", orjson.dumps({"decision_id": f"d{i}", "pad": "x" * 3000}))
            await producer.send(
                "impressions", "exp", orjson.dumps({"decision_id": f"d{i}", "type": "impression"})
            )
        await producer.flush()
    finally:
        await producer.stop()


class _Recorder:
    """Stands in for the Ingestor's Redis side: notes which events were applied before their decision."""

    def __init__(self) -> None:
        self.decided: set[str] = set()
        self.events = 0
        self.ahead = 0
        self.decision_batches = 0
        self.trickle_s = 0.0  # from the first record of a trickle to the last applied
        self.expected = N  # decisions and events the drain waits for
        self.done = asyncio.Event()
        # how the batches' applies ran: how many now, most at once, and in what order
        self.running = {"decisions": 0, "events": 0}
        self.most_at_once = {"decisions": 0, "events": 0}
        self.offsets: dict[str, list[int]] = {"decisions": [], "events": []}

    def _enter(self, stage: str, records: Sequence[Record]) -> None:
        self.running[stage] += 1
        self.most_at_once[stage] = max(self.most_at_once[stage], self.running[stage])
        self.offsets[stage].extend(rec.offset for rec in records)

    async def prepare_decisions(self, batch: Sequence[Record]) -> PreparedDecisions:
        return PreparedDecisions(batch)

    async def prepare_events(self, batch: Sequence[Record]) -> PreparedEvents:
        return PreparedEvents(batch)

    async def apply_decisions(self, prepared: PreparedDecisions) -> None:
        self._enter("decisions", prepared.records)
        await asyncio.sleep(0.002)  # a Redis round trip: the next batch is prepared meanwhile
        self.decision_batches += 1
        self.decided.update(orjson.loads(rec.value)["decision_id"] for rec in prepared.records)
        self.running["decisions"] -= 1
        self._check_done()

    async def apply_events(self, prepared: PreparedEvents, *, learn: bool = True) -> None:
        self._enter("events", prepared.records)
        await asyncio.sleep(0.002)
        for rec in prepared.records:
            self.events += 1
            self.ahead += orjson.loads(rec.value)["decision_id"] not in self.decided
        self.running["events"] -= 1
        self._check_done()

    def _check_done(self) -> None:
        if self.events >= self.expected and len(self.decided) >= self.expected:
            self.done.set()


async def _trickle(bootstrap: str, settings: Settings, consumer: BatchConsumer, n: int) -> float:
    """Once the consumer owns its partition, a decision and its impression every 5 ms, each sent alone;
    returns when the first was sent (time.monotonic)."""
    deadline = time.monotonic() + 30
    while not (consumer._consumer and consumer._consumer.assignment()):
        assert time.monotonic() < deadline, "the consumer was assigned no partition"
        await asyncio.sleep(0.1)
    producer = EventProducer(bootstrap, settings, linger_ms=0)
    await producer.start()
    t0 = time.monotonic()
    try:
        for i in range(n):
            await producer.send_many(
                [
                    ("decisions", "exp", orjson.dumps({"decision_id": f"t{i}"})),
                    ("impressions", "exp", orjson.dumps({"decision_id": f"t{i}", "type": "impression"})),
                ]
            )
            await asyncio.sleep(0.005)
    finally:
        await producer.stop()
    return t0


async def _drain(bootstrap: str, settings: Settings, trickle: int = 0) -> tuple[_Recorder, dict[str, int]]:
    """Consume until every decision and event is applied: a backlog produced before, or with ``trickle``
    that many decision/impression pairs produced while the consumer runs."""

    async def nothing(*args: Any) -> None:
        return None

    warm = asyncio.Event()
    warm.set()
    runtime = SimpleNamespace(
        settings=settings,
        tansu=True,
        bootstrap_servers=bootstrap,
        warm=warm,
        on_partitions_assigned=nothing,
        on_partitions_revoked=nothing,
        sensor=SimpleNamespace(on_consumer_lag=lambda *a: None),
        ingestor=None,
    )
    recorder = _Recorder()
    recorder.expected = trickle or N
    t0 = 0.0
    runtime.ingestor = SimpleNamespace(
        prepare_decisions=recorder.prepare_decisions,
        prepare_events=recorder.prepare_events,
        apply_decisions=recorder.apply_decisions,
        apply_events=recorder.apply_events,
    )
    consumer = BatchConsumer(runtime, apply_batch)
    await consumer.start()
    try:
        if trickle:
            t0 = await _trickle(bootstrap, settings, consumer, trickle)
        await asyncio.wait_for(recorder.done.wait(), timeout=60)
        recorder.trickle_s = time.monotonic() - t0 if trickle else 0.0
    finally:
        await consumer.stop()  # a graceful stop commits the last applied batch
    check = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=f"{settings.consumer_group}-ingest")
    await check.start()
    try:
        committed = {
            t: await check.committed(TopicPartition(settings.topic(t), 0)) or 0
            for t in ("decisions", "impressions")
        }
    finally:
        await check.stop()
    return recorder, committed


@pytest.mark.parametrize("hold_s", [30.0, 0.0], ids=["aligned", "alignment-off"])
def test_backlog_events_are_applied_after_their_decisions(tmp_path: Any, hold_s: float) -> None:
    settings = Settings(
        topic_partitions=1,
        batch_size=500,
        ingest_align_max_hold_s=hold_s,
        consumer_group=f"g{time.time_ns()}",
    )
    with EmbeddedKafka(log_path=tmp_path / "tansu.log") as kafka:
        asyncio.run(_backlog(kafka.bootstrap_servers, settings))
        recorder, committed = asyncio.run(_drain(kafka.bootstrap_servers, settings))
    assert recorder.events == N and len(recorder.decided) == N  # nothing lost, nothing applied twice
    assert committed == {"decisions": N, "impressions": N}  # everything applied was committed
    if hold_s:
        assert recorder.ahead == 0
    # two batches in flight at most, in order: decisions never beside decisions, events never beside
    # events, and each stage takes the partition's records in offset order. (Whether a backlog's batches
    # overlap at all depends on how its fetches mix decisions and events: see the test below.)
    assert recorder.most_at_once == {"decisions": 1, "events": 1}
    for stage in ("decisions", "events"):
        assert recorder.offsets[stage] == sorted(recorder.offsets[stage]), stage
    # Without alignment the same backlog usually runs ahead of its decisions (1,500 of 1,500 events
    # in the runs of 2026-12-02), but how far depends on how the broker composes its fetches and on
    # timing: 0 in a CI run on 2026-12-05. So only the invariants above are asserted for it.


def test_a_trickle_is_taken_in_batches_of_the_interval(tmp_path: Any) -> None:
    """Records that arrive one by one are fetched once per ``batch_within_s`` (the broker holds the fetch
    for ``ingest_fetch_min_bytes``), not a batch per record or two: each batch costs Redis scripts, a
    learning round and a commit. With a minimum of 1 byte every fetch is answered at once."""
    n, within = 150, 0.2
    batches: dict[int, tuple[int, float]] = {}
    for min_bytes in (65536, 1):
        settings = Settings(
            topic_partitions=1,
            batch_within_s=within,
            ingest_fetch_min_bytes=min_bytes,
            consumer_group=f"g{time.time_ns()}",
        )
        with EmbeddedKafka(log_path=tmp_path / f"tansu-{min_bytes}.log") as kafka:
            asyncio.run(ensure_topics(kafka.bootstrap_servers, settings))
            recorder, committed = asyncio.run(_drain(kafka.bootstrap_servers, settings, trickle=n))
        assert recorder.events == n and len(recorder.decided) == n  # nothing lost, nothing twice
        assert committed == {"decisions": n, "impressions": n}
        batches[min_bytes] = (recorder.decision_batches, recorder.trickle_s)
    held, seconds = batches[65536]
    # one fetch per interval while the trickle lasts, plus the first (answered at once) and the last
    assert held <= 2 + seconds / within, batches
    assert batches[1][0] > held, batches


def test_the_next_batch_records_its_decisions_while_this_one_joins() -> None:
    """Two prepared batches through ``BatchConsumer._apply`` (no broker: the loop's part is tested above):
    batch 2's decisions are recorded while batch 1's events join, batch 2's events wait for batch 1's,
    and the commits go in batch order."""
    log: list[str] = []
    committed: list[int] = []

    async def apply_decisions(prepared: PreparedDecisions) -> None:
        log.append(f"decisions {prepared.records[0].value.decode()} start")
        await asyncio.sleep(0.001)
        log.append(f"decisions {prepared.records[0].value.decode()} end")

    async def apply_events(prepared: PreparedEvents, *, learn: bool = True) -> None:
        log.append(f"events {prepared.records[0].value.decode()} start")
        await asyncio.sleep(0.05)
        log.append(f"events {prepared.records[0].value.decode()} end")

    async def commit(offsets: dict[TopicPartition, int]) -> None:
        committed.append(max(offsets.values()))

    async def run() -> None:
        runtime = SimpleNamespace(
            settings=Settings(),
            ingestor=SimpleNamespace(apply_decisions=apply_decisions, apply_events=apply_events),
            assigned=set(),
        )
        consumer = BatchConsumer(runtime, apply_batch)
        consumer._consumer = SimpleNamespace(commit=commit)  # type: ignore[assignment]
        tasks: list[asyncio.Task[None]] = []
        for n in (1, 2):
            records = [Record("decisions", 0, n, None, str(n).encode())]
            events = [Record("impressions", 0, n, None, str(n).encode())]
            decided = asyncio.get_running_loop().create_future()
            previous = tasks[-1] if tasks else None
            tasks.append(
                asyncio.create_task(
                    consumer._apply(
                        records,
                        PreparedDecisions(records),
                        events,
                        PreparedEvents(events),
                        {TopicPartition("t", 0): n + 1},
                        previous,
                        decided,
                    )
                )
            )
            await decided  # what the loop waits for before it starts the next batch
        await tasks[-1]
        await consumer._committing  # type: ignore[misc]

    asyncio.run(run())
    assert log.index("decisions 2 end") < log.index("events 1 end")  # overlapped
    assert log.index("events 1 end") < log.index("events 2 start")  # events in batch order
    assert committed == [2, 3]
