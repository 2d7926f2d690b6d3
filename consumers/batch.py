"""The high-throughput ingestion path: an aiokafka consumer-group member that hands whole
fetches to :class:`~consumers.ingest.Ingestor`, run as a service of the faust app.

faust agents pay faust's per-event stream machinery (events, processors, per-event acks);
measured here that caps ingestion at about 10k events per CPU-second (docs/PERFORMANCE.md).
This consumer fetches up to ``batch_size`` records per ``getmany``, applies decisions before
events of the same fetch (so most joins succeed at once), and commits the fetched offsets
only after the whole fetch was applied: at-least-once, exactly like the agents, with the
Redis ledger deduplicating replays. faust still owns the process: lifecycle, signals,
logging and the HTTP service. ``ABENGINE_INGEST_MODE=faust`` switches back to the agents.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from mode import Service

from consumers.align import EventAligner
from consumers.ingest import PreparedDecisions, PreparedEvents, Record

log = logging.getLogger(__name__)

#: longest a graceful stop waits for the batch in flight to be applied and committed
STOP_GRACE_S = 5.0

#: The group's assignor. Range assigns each topic's partitions to the members in the same contiguous
#: ranges, so partition p of decisions, impressions, clicks and conversions lands on one worker (the topics
#: are co-partitioned by experiment id and have the same partition count). aiokafka's default, round-robin
#: over all topic-partitions, splits them as soon as the member count does not divide the partition count
#: (found with 3 workers on 8 partitions: every worker held some topic's partition of every number).
ASSIGNORS = (RangePartitionAssignor,)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: BatchConsumer) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # the batch being applied finishes first: nothing of this worker is still applying or
        # learning when its partitions move on
        await self.service.drain()
        partitions = {tp.partition for tp in revoked}
        self.service.aligner.forget(sorted(partitions))
        await self.service.runtime.on_partitions_revoked(partitions)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.service.runtime.on_partitions_assigned({tp.partition for tp in assigned})


class BatchConsumer(Service):
    """Consumes the decision and event topics in fetch-sized batches."""

    def __init__(self, runtime: Any, apply_batch: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runtime = runtime
        self.apply_batch = apply_batch
        self.aligner = EventAligner(runtime.settings.ingest_align_max_hold_s)
        self._consumer: AIOKafkaConsumer | None = None
        self._in_flight: asyncio.Task[None] | None = None  # the newest batch being applied
        self._decided: asyncio.Future[None] | None = None  # done: the newest batch's decisions are recorded
        self._older: asyncio.Task[None] | None = None  # the batch before the newest, maybe still joining
        self._committing: asyncio.Task[None] | None = None  # the newest batch's offset commit
        self._learning: asyncio.Task[None] | None = None  # the learners catching up with applied batches
        self._unlearned: dict[str, int] = {}  # experiment -> partition, applied but not learned yet

    async def on_start(self) -> None:
        s = self.runtime.settings
        self.logical = {s.topic(t): t for t in ("decisions", "impressions", "clicks", "conversions")}
        timing: dict[str, int] = {}
        if self.runtime.tansu:  # Tansu: keep group joins short (DEVELOPERS.md)
            timing = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000, "rebalance_timeout_ms": 6000}
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.runtime.bootstrap_servers,
            group_id=f"{s.consumer_group}-ingest",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=s.batch_size,
            # the broker holds a fetch until it has fetch_min_bytes or batch_within_s has passed: without it
            # every decision or two became a batch of its own (its Redis scripts, learning round and
            # commit), which under light traffic cost more CPU than the decisions themselves
            fetch_max_wait_ms=int(s.batch_within_s * 1000),
            fetch_min_bytes=s.ingest_fetch_min_bytes,
            partition_assignment_strategy=ASSIGNORS,
            **timing,
        )
        self._consumer.subscribe(list(self.logical), listener=_Rebalance(self))
        await self._consumer.start()
        self.add_future(self._run())

    async def on_stop(self) -> None:
        # a graceful stop commits what it has applied, so the next owner replays less; bounded, so a
        # broker or Redis that does not answer cannot hold the shutdown (uncommitted is replayed, and
        # the ledger counts a replayed event once)
        try:
            await asyncio.wait_for(self._settle(), timeout=STOP_GRACE_S)
        except Exception as exc:
            log.warning("stopping before the last batch was committed (it will be replayed): %r", exc)
        if self._consumer is not None:
            await self._consumer.stop()

    async def _settle(self) -> None:
        """Wait for the batch being applied and for the newest offset commit."""
        await self._applied()
        if self._committing is not None:
            await self._committing

    async def _run(self) -> None:
        """Fetch, validate and pack batch N+1 while batch N is applied, and commit and learn batch N
        while batch N+1 is applied.

        The apply stage is Redis's work (the record and join scripts); preparing is this worker's
        (records, alignment, validation, packing the scripts' arguments), and so is learning.
        Overlapping them keeps both cores busy, where a sequential loop left each idle while the other
        worked. Batch N+1's decisions are recorded while batch N's events join (recording is
        idempotent and joins only need decisions already recorded); events join strictly in batch
        order, each batch's after its own decisions, commits follow in order, and one learning round
        runs at a time. At most two batches are in flight.
        """
        assert self._consumer is not None
        consumer = self._consumer
        s = self.runtime.settings
        ingestor = self.runtime.ingestor
        await self.runtime.warm.wait()  # start-up's model loads first (engine/runtime.py)
        try:
            while not self.should_stop:
                try:
                    fetched = await consumer.getmany(
                        timeout_ms=int(s.batch_within_s * 1000) + 50, max_records=s.batch_size
                    )
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("fetch failed; retrying")
                    await asyncio.sleep(0.5)
                    continue
                if not fetched and not self.aligner.holding():
                    if self._unlearned and (self._learning is None or self._learning.done()):
                        self._learning = asyncio.create_task(self._learn())  # an earlier round failed
                    continue
                decisions: list[Record] = []
                fetched_events: list[Record] = []
                for tp, messages in fetched.items():
                    name = self.logical[tp.topic]
                    records = [
                        Record(name, m.partition, m.offset, m.key, m.value, m.timestamp) for m in messages
                    ]
                    if name == "decisions":
                        decisions.extend(records)
                        self.aligner.decided(tp.partition, max(r.timestamp for r in records))
                    else:
                        fetched_events.extend(records)
                events = (
                    self.aligner.admit(fetched_events, await self._caught_up(consumer), time.monotonic())
                    if fetched_events or self.aligner.holding()
                    else []
                )
                self._pause_held(consumer)
                if not decisions and not events:
                    continue
                prepared_decisions = (
                    await self.apply_batch(self.runtime, decisions, ingestor.prepare_decisions)
                    if decisions
                    else None
                )
                prepared_events = (
                    await self.apply_batch(self.runtime, events, ingestor.prepare_events) if events else None
                )
                offsets: dict[TopicPartition, int] = {}
                for rec in (*decisions, *events):
                    tp = TopicPartition(s.topic(rec.topic), rec.partition)
                    offsets[tp] = max(offsets.get(tp, -1), rec.offset + 1)
                # at most two batches in flight: the newest one's decisions are recorded and the one before
                # it is applied, so only the newest one's events can still be joining
                if self._decided is not None:
                    await self._decided
                if self._older is not None:
                    await self._older
                self._older = self._in_flight
                decided = self._decided = asyncio.get_running_loop().create_future()
                self._in_flight = asyncio.create_task(
                    self._apply(
                        decisions,
                        prepared_decisions,
                        events,
                        prepared_events,
                        offsets,
                        self._in_flight,
                        decided,
                    )
                )
                await self._report_lag(consumer)
        finally:
            for task in (self._in_flight, self._older):
                if task is not None and not task.done():
                    task.cancel()  # not applied, so not committed: the next owner replays it
            if self._learning is not None and not self._learning.done():
                self._learning.cancel()  # the stream cursor was not advanced: the next learner replays
            if self._committing is not None and not self._committing.done():
                self._committing.cancel()  # uncommitted: replayed, and the ledger counts it once

    async def drain(self) -> None:
        """Before a revoke: wait for the batches being applied and the learning behind them; drop a commit
        still in flight.

        Not awaiting the commit is deliberate: a commit sent while the group rebalances can be
        answered "rebalance in progress" until this member rejoins, and the member rejoins only once
        this callback returns. Uncommitted offsets are replayed by the next owner, and the ledger
        counts a replayed event once.
        """
        await self._applied()
        if self._learning is not None:
            await self._learning
        if self._committing is not None and not self._committing.done():
            self._committing.cancel()

    async def _applied(self) -> None:
        """Wait for the batches being applied (the newest waits for the one before it; not their learning,
        which overlaps the next batch)."""
        task = self._in_flight
        if task is not None:
            await task  # the loop and a revoke may both wait on it
            if self._in_flight is task:
                self._in_flight = None

    async def _learn(self) -> None:
        """Catch up the learners of applied batches (of partitions still owned); retried if it fails."""
        targets, self._unlearned = self._unlearned, {}
        owned = self.runtime.assigned
        targets = {e: p for e, p in targets.items() if p in owned}
        if not targets:
            return
        try:
            await self.runtime.learners.learn(targets, partition=targets)
        except Exception as exc:  # Redis away: nothing was skipped, the cursors did not move
            log.warning(
                "learning of %d experiments failed, retried with the next batch: %r", len(targets), exc
            )
            self._unlearned = {**targets, **self._unlearned}

    async def _apply(
        self,
        decisions: list[Record],
        prepared_decisions: PreparedDecisions | None,
        events: list[Record],
        prepared_events: PreparedEvents | None,
        offsets: dict[TopicPartition, int],
        previous: asyncio.Task[None] | None,
        decided: asyncio.Future[None],
    ) -> None:
        """Apply one prepared batch: its decisions (beside the previous batch's events), then, once the
        previous batch is applied, its events; then commit it and learn from it, both overlapping the
        next batch's apply."""
        ingestor = self.runtime.ingestor
        try:
            if prepared_decisions is not None:
                await self.apply_batch(
                    self.runtime, decisions, lambda _: ingestor.apply_decisions(prepared_decisions)
                )
        finally:
            if not decided.done():
                decided.set_result(None)
        if previous is not None:
            await previous
        if prepared_events is not None:
            await self.apply_batch(
                self.runtime, events, lambda _: ingestor.apply_events(prepared_events, learn=False)
            )
            self._unlearned.update(prepared_events.learn_targets)
        self._committing = asyncio.create_task(self._commit(offsets, self._committing))
        # one learning round at a time, so learning lags the joins by a batch at most and never
        # falls behind the reward stream's trimming
        if self._learning is not None:
            await self._learning
        if self._unlearned:
            self._learning = asyncio.create_task(self._learn())

    async def _commit(self, offsets: dict[TopicPartition, int], previous: asyncio.Task[None] | None) -> None:
        """Commit an applied batch's offsets, after the batch before it (commits stay in order)."""
        if previous is not None:
            await previous
        assert self._consumer is not None
        try:  # only what was applied: held events stay uncommitted, so a crash replays them
            await self._consumer.commit(offsets)
        except Exception as exc:  # a rebalance happened mid-batch: the next owner replays (harmless)
            log.warning("offset commit failed, records will be replayed: %r", exc)

    async def _caught_up(self, consumer: AIOKafkaConsumer) -> Any:
        """``caught_up(p)``: decisions-p has nothing more to read now (or it is not this worker's).

        From the high-water mark of the last fetch: a stale one only makes a partition look caught up
        early, and then its events are applied at once and wait in the ledger, as without alignment.
        """
        done: dict[int, bool] = {}
        decisions_topic = self.runtime.settings.topic("decisions")
        for tp in consumer.assignment():
            if tp.topic == decisions_topic:
                high = consumer.highwater(tp)
                try:
                    done[tp.partition] = high is not None and await consumer.position(tp) >= high
                except (
                    Exception
                ):  # revoked meanwhile: nothing to wait for there (the events are forgotten too)
                    done[tp.partition] = True
        return lambda partition: done.get(partition, True)

    def _pause_held(self, consumer: AIOKafkaConsumer) -> None:
        """Stop fetching event partitions that hold records; resume the others."""
        s = self.runtime.settings
        held = {TopicPartition(s.topic(topic), p) for topic, p in self.aligner.holding()}
        assigned = consumer.assignment()
        paused = consumer.paused()
        if to_pause := (held & assigned) - paused:
            consumer.pause(*to_pause)
        if to_resume := paused - held:
            consumer.resume(*to_resume)

    async def _report_lag(self, consumer: AIOKafkaConsumer) -> None:
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is not None:
                position = await consumer.position(tp)
                self.runtime.sensor.on_consumer_lag(tp.topic, tp.partition, max(high - position, 0))
