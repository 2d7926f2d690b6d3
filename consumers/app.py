"""The faust-streaming app: agents over the decision and event topics.

Ingestion hands batches of records to :class:`consumers.ingest.Ingestor` and
acknowledges them only after the batch is fully applied (at-least-once; the
Redis ledger makes replays harmless). Two interchangeable paths
(``ABENGINE_INGEST_MODE``): ``batch`` (default), an aiokafka batch consumer run
as a service of this app (consumers/batch.py), and ``faust``, thin agents over
``take_events``. The HTTP API runs in the same process (:class:`EngineService`).
With ``ABENGINE_INGEST_ENABLED=0`` a worker ingests nothing and only serves (a
decide-only worker beside ingesting ones; docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import faust
from mode import Service
from redis.exceptions import RedisError

from consumers.ingest import Record, dead_letter
from engine.config import EVENT_TOPICS, Settings
from engine.runtime import Runtime
from producers.kafka import ProducerUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")


def faust_settings(settings: Settings, bootstrap_servers: str, tansu: bool) -> dict[str, Any]:
    """faust App options; the short group timings apply only to a Tansu broker, never to Kafka."""
    opts: dict[str, Any] = {
        "broker": ";".join(f"kafka://{h}" for h in bootstrap_servers.split(",")),
        # faust's own aiohttp stack stays off: the engine's HTTP API is registered with
        # ``App.web_server`` and started by faust once the worker has joined its group.
        "web_enabled": True,
        "store": "memory://",  # no faust tables: learning state lives in the Redis ledger
        "topic_partitions": settings.topic_partitions,
        "topic_replication_factor": settings.topic_replication,
        "topic_allow_declare": False,  # topics are created by producers.kafka.ensure_topics
        "consumer_auto_offset_reset": "earliest",
        "broker_commit_every": 1000,
        "broker_commit_interval": 1.0,
        "producer_acks": -1,
    }
    if tansu:
        # Tansu holds a group join for max(1 s, session_timeout / 2): keep rebalances short.
        opts.update(broker_session_timeout=6.0, broker_heartbeat_interval=1.0, broker_rebalance_timeout=6.0)
    return opts


class EngineService(Service):
    """Runs the engine inside the faust worker: its runtime, its HTTP API and, in
    ``batch`` ingest mode, the batch consumer (consumers/batch.py)."""

    def __init__(self, runtime: Runtime, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runtime = runtime
        self._runner: Any = None

    async def on_start(self) -> None:
        from aiohttp import web

        from engine.api import create_http_app

        await self.runtime.start()
        if self.runtime.settings.ingest_enabled and self.runtime.settings.ingest_mode == "batch":
            from consumers.batch import BatchConsumer

            await self.add_runtime_dependency(BatchConsumer(self.runtime, apply_batch))
        app = create_http_app(self.runtime)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        s = self.runtime.settings
        await web.TCPSite(self._runner, s.http_host, s.http_port, backlog=1024, reuse_address=True).start()
        log.info("HTTP API on http://%s:%d", s.http_host, s.http_port)

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await self.runtime.stop()


async def apply_batch(
    runtime: Runtime, batch: Sequence[Record], apply: Callable[[Sequence[Record]], Awaitable[T]]
) -> T | None:
    """Apply one batch; never let an agent die and never acknowledge an unapplied record.

    Redis or Kafka unavailable: retry the same batch with back-off (the records stay
    unacknowledged, so a crash meanwhile replays them). Any other error is a bug or a
    record the code cannot handle: the batch goes to the dead-letter topic with the error,
    and the result is None.
    """
    delay = 0.1
    while True:
        try:
            return await apply(batch)
        except (RedisError, OSError, ProducerUnavailable) as exc:
            runtime.sensor.on_redis_degraded(isinstance(exc, RedisError | OSError))
            log.warning("batch of %d records waits for services: %r", len(batch), exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        except Exception as exc:
            log.exception("batch of %d records failed; dead-lettering it", len(batch))
            letters = [dead_letter(r, "error", f"{type(exc).__name__}: {exc}") for r in batch]
            await runtime.send_dead_letters(letters)
            runtime.sensor.on_deadletter("error", len(letters))
            return None


def create_app(runtime: Runtime) -> faust.App:
    """The worker's faust app bound to ``runtime``."""
    s = runtime.settings
    app = faust.App(s.consumer_group, **faust_settings(s, runtime.bootstrap_servers, runtime.tansu))
    raw = {"key_serializer": "raw", "value_serializer": "raw"}
    decisions_topic = app.topic(s.topic("decisions"), **raw)
    events_topic = app.topic(*(s.topic(t) for t in EVENT_TOPICS), **raw)
    logical = {s.topic(t): t for t in ("decisions", *EVENT_TOPICS)}

    def records(events: Any) -> list[Record]:
        return [
            Record(logical[e.message.topic], e.message.partition, e.message.offset, e.message.key, e.value)
            for e in events
        ]

    app.web_server(EngineService(runtime))
    if not s.ingest_enabled or s.ingest_mode == "batch":
        return app  # decide-only, or EngineService runs the batch consumer: no agents

    @app.agent(decisions_topic, name="decisions")
    async def decisions(stream: faust.StreamT) -> None:
        await runtime.started.wait()
        async for events in stream.take_events(s.batch_size, within=s.batch_within_s):
            await apply_batch(runtime, records(events), runtime.ingestor.ingest_decisions)

    @app.agent(events_topic, name="feedback")
    async def feedback(stream: faust.StreamT) -> None:
        await runtime.started.wait()
        async for events in stream.take_events(s.batch_size, within=s.batch_within_s):
            await apply_batch(runtime, records(events), runtime.ingestor.ingest_events)

    @app.on_partitions_assigned.connect
    async def on_assigned(app: faust.App, assigned: set[Any], **kwargs: Any) -> None:
        await runtime.on_partitions_assigned({tp.partition for tp in assigned if tp.topic in logical})

    @app.on_partitions_revoked.connect
    async def on_revoked(app: faust.App, revoked: set[Any], **kwargs: Any) -> None:
        await runtime.on_partitions_revoked({tp.partition for tp in revoked if tp.topic in logical})

    @app.timer(5.0)
    async def consumer_lag() -> None:
        consumer = app.consumer
        for tp in consumer.assignment():
            if tp.topic not in logical:
                continue
            position = await consumer.position(tp)
            if position is not None:
                runtime.sensor.on_consumer_lag(
                    tp.topic, tp.partition, max(consumer.highwater(tp) - position, 0)
                )

    return app
