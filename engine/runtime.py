"""One worker's wiring: Redis, the producer, serving state, learners, ingestion.

Created once per process by ``abengine worker``; the faust app (consumers.app)
and the HTTP API (engine.api) both use it. Background loops keep serving
state fresh, publish snapshots and retry events that arrived before their
decision; a Redis outage flips the worker into degraded mode instead of
stopping it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from aiokafka.partitioner import murmur2
from redis.exceptions import RedisError

from consumers.ingest import Ingestor
from engine.config import Settings
from engine.heap import settle_heap
from engine.learner import LearnerPool
from engine.metrics import PrometheusSensor
from engine.rounds import DecisionRounds
from engine.serving import Served, ServingState
from engine.stalls import GcPauseProbe, LoopLagProbe
from engine.store import ExperimentStore, Keys, PolicyStore, RewardLedger
from producers.kafka import EventProducer, ensure_topics
from schemas import DeadLetter, DecisionRequest, Experiment, Variant

log = logging.getLogger(__name__)


def partition_for(experiment_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives records keyed by ``experiment_id``."""
    return (murmur2(experiment_id.encode()) & 0x7FFFFFFF) % partitions


class Runtime:
    """Everything a worker holds, started and stopped together."""

    def __init__(
        self, settings: Settings, *, bootstrap_servers: str, redis_url: str, embedded_kafka: bool
    ) -> None:
        self.settings = settings
        self.bootstrap_servers = bootstrap_servers
        self.embedded_kafka = embedded_kafka
        #: the broker is Tansu (embedded or started beside us): short group timings (DEVELOPERS.md)
        self.tansu = embedded_kafka or settings.kafka_broker == "tansu"
        self.worker_id = f"{os.uname().nodename}:{os.getpid()}"
        self.sensor = PrometheusSensor()
        self.keys = Keys()
        self.redis_url = redis_url
        self.redis = aioredis.Redis.from_url(
            redis_url, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=5
        )
        self.experiments = ExperimentStore(self.redis, self.keys)
        self.policies = PolicyStore(self.redis, self.keys)
        self.ledger = RewardLedger(
            self.redis,
            self.keys,
            stream_maxlen=settings.reward_stream_maxlen,
            grace_s=settings.unmatched_grace_s,
            script_items=settings.redis_script_items,
            scripts_per_trip=settings.redis_scripts_per_trip,
        )
        self.serving = ServingState(self.experiments, self.policies, self.sensor)
        self.learners = LearnerPool(
            self.ledger,
            self.policies,
            lambda e: self.serving.experiments.get(e),
            self.sensor,
            settings.snapshot_interval_s,
            after_learning=self.write_memory,
        )
        self.producer = EventProducer(
            bootstrap_servers, settings, log_linger_ms=settings.decision_log_linger_ms
        )
        self.ingestor = Ingestor(
            self.ledger, self.learners, self.lookup_experiment, self.send_dead_letters, self.sensor
        )
        self._generation: Any = None
        self._memory_stores: dict[str, Any] = {}
        self.rounds = DecisionRounds(self.serving, self.reading_store, self.sensor)
        self.ranker: Any = None  # engine.ranker.RankerService, loaded once in the background at start
        self.redis_ok = False
        self.assigned: set[int] = set()
        self.started = asyncio.Event()
        #: set once start-up's loads are done (the ranker loaded or failed, the heap settled): batch
        #: ingestion starts then, so a restart's backlog is not drained beside model loads and no
        #: in-flight batch is frozen into the settled heap
        self.warm = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        #: called first when the worker stops (e.g. telling an idle learning process to stop alongside)
        self.on_stop: list[Callable[[], None]] = []
        self._gc_probe = GcPauseProbe(self.sensor)

    # --- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        await ensure_topics(self.bootstrap_servers, self.settings)  # no-op when the CLI made them
        await self.producer.start()
        await self._refresh()
        self._tasks = [
            asyncio.create_task(self._loop(), name="abengine-refresh"),
            asyncio.create_task(LoopLagProbe(self.sensor).run(), name="abengine-loop-lag"),
        ]
        self._gc_probe.install()
        if self.settings.ranker_enabled:
            self._tasks.append(asyncio.create_task(self._load_ranker(), name="abengine-ranker"))
        settle_heap("start-up")  # faust, aiokafka and the experiments' allocators are loaded by now
        if not self.settings.ranker_enabled:
            self.warm.set()
        self.started.set()
        log.info("worker %s ready", self.worker_id)

    async def stop(self) -> None:
        for hook in self.on_stop:
            hook()
        self._gc_probe.uninstall()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(RedisError, OSError):
            await self.learners.flush(force=True)
        await self.producer.stop()
        for store in self._memory_stores.values():
            await store.aclose()
        if self._generation is not None:
            await self._generation.aclose()
        await self.redis.aclose()

    # --- background work -----------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.policy_refresh_s)
            await self._refresh()

    async def _refresh(self) -> None:
        try:
            await self.serving.refresh()
            await self.embed_pending_contexts()
            await self.learners.flush()
            await self.retry_pending()
            self._set_redis(True)
        except (RedisError, OSError) as exc:
            if self.redis_ok:
                log.warning("Redis unreachable, serving from memory: %r", exc)
            self._set_redis(False)
        except Exception:
            log.exception("refresh failed")

    def _set_redis(self, ok: bool) -> None:
        self.redis_ok = ok
        self.sensor.on_redis_degraded(not ok)

    async def retry_pending(self) -> None:
        """Retry waiting events of the experiments whose partition this worker owns."""
        owned = [
            e
            for e in await self.ledger.experiments_with_pending()
            if partition_for(e, self.settings.topic_partitions) in self.assigned
        ]
        if owned:
            await self.ingestor.retry_pending(owned)

    async def _load_ranker(self) -> None:
        """Load the content ranker (artifact + MiniLM) once, off the event loop."""
        try:
            from engine.ranker.service import RankerService

            ranker = await asyncio.to_thread(RankerService.load)
            await asyncio.to_thread(ranker.rank, [("warm-up", "Warm up the encoder")])
            self.ranker = ranker
            await asyncio.to_thread(settle_heap, "loading the content ranker")
            log.info("content ranker %s loaded", ranker.model_version)
        except Exception:  # serving never depends on it: its endpoints answer 503 instead
            log.exception("content ranker unavailable")
        finally:
            self.warm.set()

    # --- per-user memory (allocators with a memory, e.g. actor_critic) ------------------------------------
    def memory_store(self, experiment_id: str, width: int, max_len: int) -> Any:
        """The experiment's user-memory store in Redis (one cluster slot per experiment); ``width`` and
        ``max_len`` are its allocator's record width and records kept per user."""
        store = self._memory_stores.get(experiment_id)
        if store is None or store.width != width or store.max_len != max_len:
            from engine.memory.model import RECORD_FORMAT
            from engine.memory.store import UserMemoryStore

            store = UserMemoryStore(
                self.redis_url,
                width,
                prefix=self.keys.memory(experiment_id, RECORD_FORMAT),
                max_len=max_len,
                timeout_s=self.settings.memory_read_budget_ms / 1000.0,
                script_items=self.settings.redis_script_items,
            )
            self._memory_stores[experiment_id] = store
        return store

    def reading_store(self, experiment_id: str) -> Any:
        """The memory store the decide path reads for an experiment; None when its allocator reads none."""
        allocator = self.serving.allocators.get(experiment_id)
        if allocator is None or not allocator.reads_memory:
            return None
        return self.memory_store(experiment_id, allocator.rec_width, allocator.config.user_memory_len)  # type: ignore[attr-defined]

    async def decide(self, experiment_id: str, request: DecisionRequest) -> Served:
        """One decision: allocators with a user memory decide in rounds (one ``MGET`` and one batched
        choice for the concurrent requests, :mod:`engine.rounds`), the others at once. Raises what
        :meth:`ServingState.decide` raises (unknown or stopped experiment, a refused request)."""
        allocator = self.serving.allocators.get(experiment_id)
        if allocator is None or not allocator.reads_memory:
            return self.serving.decide(experiment_id, request)
        return await self.rounds.decide(experiment_id, request)

    async def write_memory(self, experiment_id: str, allocator: Any) -> None:
        """Push the memory records the learner appended to Redis (pipelined, bounded, with TTL)."""
        drain = getattr(allocator, "drain_memory_writes", None)
        if drain is None:
            return
        writes = drain()
        if writes:
            await self.memory_store(
                experiment_id, allocator.rec_width, allocator.config.user_memory_len
            ).put_many(writes)

    async def embed_pending_contexts(self) -> None:
        """Embed context texts the serving allocators met uncached, in one batch, off the loop."""
        for allocator in list(self.serving.allocators.values()):
            embed = getattr(allocator, "embed_pending", None)
            if embed is not None:
                await asyncio.to_thread(embed)

    # --- generation ----------------------------------------------------------------------------------
    @property
    def generation(self) -> Any:
        """The variant generator (engine.generation), built on first use; its model loads off the loop."""
        if self._generation is None:
            from engine.generation.service import GenerationService

            self._generation = GenerationService.from_settings(sensor=_GenerationSensor(self))
        return self._generation

    async def add_variants(self, experiment_id: str, texts: Sequence[str], prefix: str = "gen") -> list[str]:
        """Add variants with fresh ids to an experiment (registry + local serving state)."""
        import hashlib

        exp = await self.lookup_experiment(experiment_id)
        if exp is None:
            raise KeyError(experiment_id)
        existing = set(exp.variant_ids)
        new: list[Variant] = []
        for text in texts:
            vid = f"{prefix}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"
            if vid not in existing:
                existing.add(vid)
                new.append(Variant(id=vid, text=text))
        updated = exp.model_copy(
            update={
                "variants": [*exp.variants, *new],
                "updated_at": datetime.now(UTC),
                "revision": exp.revision + 1,
            }
        )
        Experiment.model_validate(updated.model_dump())  # bounds (e.g. at most 64 variants)
        await self.experiments.put(updated)
        await self.serving.upsert(updated)
        return [f"{prefix}-{hashlib.sha1(t.encode()).hexdigest()[:10]}" for t in texts]

    # --- callbacks used by ingestion and the API ---------------------------------------------------
    async def lookup_experiment(self, experiment_id: str) -> Experiment | None:
        """From memory, or from Redis if another worker created it a moment ago."""
        exp = self.serving.experiments.get(experiment_id)
        if exp is None:
            exp = await self.experiments.get(experiment_id)
            if exp is not None:
                await self.serving.upsert(exp)
        return exp

    async def send_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        await self.producer.send_many(
            ("deadletter", letter.key or "", letter.model_dump_json().encode()) for letter in letters
        )

    async def on_partitions_assigned(self, partitions: set[int]) -> None:
        self.assigned = set(partitions)

    async def on_partitions_revoked(self, partitions: set[int]) -> None:
        released = await self.learners.release(partitions)
        self.assigned -= partitions
        if released:
            log.info("released learners %s", released)

    async def readiness(self) -> dict[str, object]:
        """What /readyz reports: Redis reachable, producer up, partitions owned."""
        t0 = time.perf_counter()
        try:
            await self.redis.ping()
            self._set_redis(True)
        except (RedisError, OSError):
            self._set_redis(False)
        return {
            "ready": self.started.is_set(),
            "warm": self.warm.is_set(),
            "degraded": not self.redis_ok,
            "redis": self.redis_ok,
            "redis_ping_ms": round((time.perf_counter() - t0) * 1000, 3),
            "kafka_undelivered": self.producer.failures,
            "ingesting": self.settings.ingest_enabled,
            "partitions": sorted(self.assigned),
            "experiments": len(self.serving.experiments),
            "learning": sorted(self.learners.learners),
            "worker": self.worker_id,
        }


class _GenerationSensor:
    """Forwards the generator's counters to the worker's sensor (Prometheus)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @property
    def _backend(self) -> str:
        return self.runtime.generation.backend.name if self.runtime._generation is not None else "unknown"

    def dropped(self, reason: str, count: int) -> None:
        self.runtime.sensor.on_generation_dropped(reason, count)

    def failed(self, reason: str) -> None:
        self.runtime.sensor.on_generation_failure(reason)

    def observed(self, seconds: float, outcome: str) -> None:
        self.runtime.sensor.on_generation(self._backend, outcome, seconds)
