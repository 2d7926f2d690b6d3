"""The engine's producer on a real broker: the decision log lingers, acknowledged sends do not."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from engine.config import Settings
from engine.services.embedded import EmbeddedKafka
from producers.kafka import EventProducer, ProducerUnavailable, ensure_topics

pytestmark = [pytest.mark.integration]


def test_the_decision_log_lingers_and_acknowledged_sends_do_not(tmp_path: Any) -> None:
    settings = Settings(topic_partitions=1)

    async def scenario(bootstrap: str) -> tuple[float, bool, float]:
        await ensure_topics(bootstrap, settings)
        producer = EventProducer(bootstrap, settings, linger_ms=5, log_linger_ms=1500)
        await producer.start()
        try:
            t0 = time.monotonic()
            logged = await producer.send("decisions", "exp", b'{"decision_id": "d1"}')
            await producer.send_many([("impressions", "exp", b'{"decision_id": "d1"}')])
            acked = time.monotonic() - t0
            pending = not logged.done()
            await asyncio.wait_for(logged, timeout=10)
            return acked, pending, time.monotonic() - t0
        finally:
            await producer.stop()

    with EmbeddedKafka(log_path=tmp_path / "tansu.log") as kafka:
        acked, pending, logged = asyncio.run(scenario(kafka.bootstrap_servers))
    assert acked < 1.0 and pending  # the event did not wait for the decision log's batch
    assert logged >= 1.4  # the decision log's record went out with its batch, after the linger


def test_a_producer_not_started_refuses_clearly() -> None:
    producer = EventProducer("127.0.0.1:1", Settings(), log_linger_ms=25)

    async def scenario() -> None:
        with pytest.raises(ProducerUnavailable, match="not started"):
            await producer.send("decisions", "exp", b"{}")
        with pytest.raises(ProducerUnavailable, match="not started"):
            await producer.send_many([("impressions", "exp", b"{}")])

    asyncio.run(scenario())
