"""Learning: each experiment is learned by the worker that owns its partition.

A :class:`Learner` holds the training copy of an experiment's allocator and a
cursor into the experiment's reward stream. It only ever learns from that
stream (never from what this worker happened to consume), so after a restart
or a partition move the new owner restores the last snapshot and replays the
stream after its cursor: every reward is learned exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

from engine.concurrency import gather_all
from engine.metrics import Sensor
from engine.serving import align_variants, fresh_allocator, restore_or_none
from engine.store.ledger import RewardLedger, stream_id_key
from engine.store.policies import PolicyStore
from engine.types import Allocator
from schemas import Experiment

log = logging.getLogger(__name__)


@dataclass
class Learner:
    experiment_id: str
    allocator: Allocator
    cursor: str = "0-0"
    saved_cursor: str = ""
    last_saved: float = 0.0
    applied: int = 0
    foreign_reported: int = 0
    partitions: set[int] = field(default_factory=set)

    #: the allocator changed without new stream entries (attribution windows closed by the clock)
    advanced: bool = False

    @property
    def dirty(self) -> bool:
        return self.advanced or self.cursor != self.saved_cursor

    async def catch_up(self, ledger: RewardLedger, batch: int = 2000) -> int:
        """Learn every reward appended to the stream since the cursor.

        The allocator learns in a worker thread, not on the event loop: an actor-critic step over a
        batch of rewards is milliseconds of torch (tens after a backlog), and decisions must not wait
        for it. Only the pool's lock holder touches a learner's allocator, so the thread has it alone.
        """
        n = 0
        while True:
            entries = await ledger.read_rewards(self.experiment_id, after=self.cursor, count=batch)
            if not entries:
                return n
            await asyncio.to_thread(self.allocator.update, [e.reward for e in entries])
            self.cursor = entries[-1].id
            n += len(entries)
            self.applied += len(entries)
            if len(entries) < batch:
                return n


class LearnerPool:
    """The learners of the experiments this worker currently owns."""

    def __init__(
        self,
        ledger: RewardLedger,
        policies: PolicyStore,
        experiment: Callable[[str], Experiment | None],
        sensor: Sensor,
        snapshot_interval_s: float,
        after_learning: Callable[[str, Allocator], Awaitable[None]] | None = None,
    ) -> None:
        self.ledger = ledger
        self.policies = policies
        self.experiment = experiment
        self.sensor = sensor
        self.snapshot_interval_s = snapshot_interval_s
        #: called after a learner caught up (e.g. the runtime writes per-user memories to Redis)
        self.after_learning = after_learning
        self.learners: dict[str, Learner] = {}
        # ingestion and the pending-retry loop both learn: one at a time, or two
        # coroutines reading from the same cursor would apply the same rewards twice
        self._lock = asyncio.Lock()

    async def get(self, experiment_id: str) -> Learner | None:
        """The experiment's learner, recovered from snapshot + stream on first use."""
        async with self._lock:
            return await self._get(experiment_id)

    async def _get(self, experiment_id: str) -> Learner | None:
        learner = self.learners.get(experiment_id)
        if learner is not None:
            return learner
        experiment = self.experiment(experiment_id)
        if experiment is None:
            return None
        stored = await self.policies.load(experiment_id)
        learner = None
        if stored is not None and stored.snapshot.get("allocator") == experiment.allocator:
            restored = await asyncio.to_thread(
                restore_or_none, stored, experiment.seed, experiment_id, self.sensor
            )
            if restored is not None:
                allocator = await asyncio.to_thread(align_variants, restored, experiment)
                learner = Learner(experiment_id, allocator, cursor=stored.cursor, saved_cursor=stored.cursor)
        if learner is None:  # building may embed variant texts: off the event loop
            learner = Learner(experiment_id, await asyncio.to_thread(fresh_allocator, experiment))
        replayed = await learner.catch_up(self.ledger)
        if stored is not None and stream_id_key(learner.cursor) < stream_id_key(stored.cursor):
            # a fresh learner replayed a stream that ends before the stored cursor (e.g. the stream expired or
            # was deleted): continue from there, or the snapshot fence would refuse every save of it
            learner.cursor = stored.cursor
        self.learners[experiment_id] = learner
        log.info(
            "learning %s from cursor %s (%d rewards replayed)", experiment_id, learner.cursor, learner.applied
        )
        if replayed and self.after_learning is not None:
            # what was learned in the replay has side effects too (user memories): a learner that meets its
            # experiment's rewards only through this first catch-up must not drop them. After a restart the
            # previous owner may have written some of them already: user memory is at-least-once.
            await self.after_learning(experiment_id, learner.allocator)
        return learner

    async def learn(
        self, experiment_ids: Iterable[str], partition: int | Mapping[str, int] | None = None
    ) -> None:
        """Catch up the learners of ``experiment_ids`` with their reward streams.

        ``partition`` (one for all, or per experiment) records which partition fed each learner, so a
        revoke can release it. Experiments catch up concurrently: their keys and learners are disjoint,
        and one's Python work overlaps another's Redis round trip.
        """
        async with self._lock:
            await self._learn(experiment_ids, partition)

    async def _learn(self, experiment_ids: Iterable[str], partition: int | Mapping[str, int] | None) -> None:
        def of(exp_id: str) -> int | None:
            return partition.get(exp_id) if isinstance(partition, Mapping) else partition

        await gather_all(self._learn_one(exp_id, of(exp_id)) for exp_id in dict.fromkeys(experiment_ids))

    async def _learn_one(self, exp_id: str, partition: int | None) -> None:
        learner = await self._get(exp_id)
        if learner is None:
            return
        if partition is not None:
            learner.partitions.add(partition)
        experiment = self.experiment(exp_id)
        if experiment is not None and len(experiment.variants) != len(learner.allocator.variant_ids):
            await asyncio.to_thread(align_variants, learner.allocator, experiment)
        if await learner.catch_up(self.ledger):
            if self.after_learning is not None:
                await self.after_learning(exp_id, learner.allocator)
            foreign = getattr(learner.allocator, "ignored_foreign_rewards", 0)
            if foreign > learner.foreign_reported:  # rewards of decisions another allocator made
                self.sensor.on_rejected("foreign_allocator", foreign - learner.foreign_reported)
                learner.foreign_reported = foreign

    async def flush(self, force: bool = False) -> int:
        """Publish snapshots of changed learners (at most once per interval unless forced)."""
        async with self._lock:
            return await self._flush(force)

    async def _flush(self, force: bool) -> int:
        now = time.monotonic()
        saved = 0
        for learner in list(self.learners.values()):
            await self._advance(learner)
            if not learner.dirty or (not force and now - learner.last_saved < self.snapshot_interval_s):
                continue
            snapshot = await asyncio.to_thread(learner.allocator.snapshot)  # torch.save: off the loop
            if await self.policies.save(learner.experiment_id, snapshot, learner.cursor):
                saved += 1
                self.sensor.on_policy(
                    learner.experiment_id, learner.allocator.version, learner.allocator.summary()
                )
            else:  # a newer owner has saved past us: our copy is stale
                log.info("dropping stale learner of %s", learner.experiment_id)
                self.learners.pop(learner.experiment_id, None)
                continue
            learner.saved_cursor = learner.cursor
            learner.advanced = False
            learner.last_saved = now
        return saved

    async def _advance(self, learner: Learner) -> None:
        """Close attribution windows that the wall clock has passed (decisions with no click yet
        become final non-clicks), for allocators that wait for windows; event time alone would
        leave them open while no events flow."""
        advance = getattr(learner.allocator, "advance", None)
        if advance is None:
            return
        version = learner.allocator.version
        await asyncio.to_thread(advance, time.time())  # closing windows learns: off the loop too
        if learner.allocator.version != version:
            learner.advanced = True
            if self.after_learning is not None:
                await self.after_learning(learner.experiment_id, learner.allocator)

    async def release(self, partitions: set[int]) -> list[str]:
        """Snapshot and drop the learners of experiments on revoked partitions."""
        async with self._lock:
            released = [e for e, learner in self.learners.items() if learner.partitions & partitions]
            await self._flush(force=True)
            for exp_id in released:
                self.learners.pop(exp_id, None)
            return released
