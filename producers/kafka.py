"""An asyncio Kafka producer for decisions, events and dead letters, and topic set-up.

Every record is keyed by experiment id, so all of one experiment's decisions
and events land in the same partition number of their topics (co-partitioned)
and are consumed by the same worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner, murmur2

from engine.config import ALL_TOPICS, Settings

log = logging.getLogger(__name__)


class ProducerUnavailable(Exception):
    """The broker did not acknowledge a record in time."""


async def ensure_topics(bootstrap_servers: str, settings: Settings) -> list[str]:
    """Create any missing engine topic; returns the names created."""
    wanted = [settings.topic(t) for t in ALL_TOPICS]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker won the race
                await admin.create_topics(
                    [
                        NewTopic(
                            t,
                            num_partitions=settings.topic_partitions,
                            replication_factor=settings.topic_replication,
                        )
                        for t in missing
                    ]
                )
            log.info("created topics %s", missing)
        return missing
    finally:
        await admin.close()


class KeyPartitioner:
    """aiokafka's default partitioner (the Java client's murmur2 of the key), the hash cached per key.

    aiokafka's murmur2 is pure Python (2.5 µs for a 14-byte key, 5.9 µs for 40 bytes:
    ``bench/bench_decide_parts.py``), and every record of one experiment has the same key, so the hash
    is computed once per experiment id, not per record. The partition is the one any Kafka client's
    default partitioner picks, so clients' events stay co-partitioned with the engine's decisions.
    """

    def __init__(self, max_keys: int = 65_536) -> None:
        self._hash = functools.lru_cache(maxsize=max_keys)(murmur2)

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return DefaultPartitioner()(key, all_partitions, available)
        return all_partitions[(self._hash(key) & 0x7FFFFFFF) % len(all_partitions)]


class EventProducer:
    """aiokafka producer with the engine's conventions (keyed by experiment, at-least-once).

    ``send`` enqueues and returns at once (the decide path's decision log); ``send_and_wait`` and
    ``send_many`` wait for the broker's acknowledgement (events accepted over HTTP, dead letters),
    raising :class:`ProducerUnavailable` on failure. With ``log_linger_ms``, ``send`` goes through a
    producer of its own that lingers that long to fill its batches: nobody waits for a decision
    log's acknowledgement, so fewer, fuller produce requests cost a client nothing, while the
    acknowledged sends keep the short ``linger_ms``.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        settings: Settings,
        *,
        linger_ms: int = 5,
        log_linger_ms: int | None = None,
        request_timeout_s: float = 10.0,
    ) -> None:
        self.settings = settings
        self.request_timeout_s = request_timeout_s
        self._options = {
            "bootstrap_servers": bootstrap_servers,
            "acks": "all",
            "linger_ms": linger_ms,
            "partitioner": KeyPartitioner(),
            "enable_idempotence": False,  # at-least-once; the ledger deduplicates by event_id
            "request_timeout_ms": int(request_timeout_s * 1000),
        }
        self.log_linger_ms = log_linger_ms if log_linger_ms != linger_ms else None
        self._producer: AIOKafkaProducer | None = None
        self._log: AIOKafkaProducer | None = None  # the fire-and-forget sends, when they linger longer
        self.failures = 0

    async def start(self) -> None:
        """Connect (aiokafka binds to the running loop, so this happens inside it)."""
        self._producer = AIOKafkaProducer(**self._options)
        await self._producer.start()
        if self.log_linger_ms is not None:
            self._log = AIOKafkaProducer(**{**self._options, "linger_ms": self.log_linger_ms})
            try:
                await self._log.start()
            except BaseException:
                await self._producer.stop()
                raise

    async def stop(self) -> None:
        """Flush and close both producers (a stopped producer delivers what it had enqueued)."""
        for producer in (self._log, self._producer):
            if producer is not None:
                await producer.stop()

    async def send(self, logical_topic: str, key: str, value: bytes) -> asyncio.Future[object]:
        """Enqueue one record; the returned future resolves when the broker acknowledges it."""
        return await self._enqueue(self._log or self._producer, logical_topic, key, value)

    async def _enqueue(
        self, producer: AIOKafkaProducer | None, logical_topic: str, key: str, value: bytes
    ) -> asyncio.Future[object]:
        if producer is None:
            raise ProducerUnavailable("producer not started")
        fut = await producer.send(self.settings.topic(logical_topic), value=value, key=key.encode())
        fut.add_done_callback(self._count_failure)
        return fut

    async def send_and_wait(self, logical_topic: str, key: str, value: bytes) -> None:
        await self.send_many([(logical_topic, key, value)])

    async def send_many(self, records: Iterable[tuple[str, str, bytes]]) -> int:
        """Send records and wait until the broker has acknowledged all of them."""
        try:  # always the short-linger producer: its callers wait for the acknowledgement
            futures = [await self._enqueue(self._producer, t, k, v) for t, k, v in records]
            await asyncio.wait_for(asyncio.gather(*futures), timeout=self.request_timeout_s + 5)
        except (KafkaError, TimeoutError) as exc:
            raise ProducerUnavailable(f"Kafka did not acknowledge: {exc!r}") from exc
        return len(futures)

    async def flush(self) -> None:
        for producer in (self._log, self._producer):
            if producer is not None:
                await producer.flush()

    def _count_failure(self, fut: asyncio.Future[object]) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            self.failures += 1
            log.warning("record not delivered: %r", fut.exception())
