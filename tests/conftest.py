"""Shared fixtures: real services started by the tests themselves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.services.embedded import EmbeddedKafka, EmbeddedRedis


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A real embedded Redis for the whole session (flush keys yourself if you need isolation)."""
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture()
def redis_url(redis_server: EmbeddedRedis) -> Iterator[str]:
    """URL of the session Redis, flushed before each test."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture()
def kafka(tmp_path: Path) -> Iterator[EmbeddedKafka]:
    """A fresh real Kafka-protocol broker (Tansu, in-memory) for one test."""
    with EmbeddedKafka(log_path=tmp_path / "tansu.log") as broker:
        yield broker
