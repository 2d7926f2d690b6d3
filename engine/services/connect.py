"""Reach Kafka and Redis: the configured ones, or embedded ones started on demand."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from engine.config import Settings
from engine.services.embedded import EmbeddedKafka, EmbeddedRedis


@dataclass(frozen=True)
class Endpoints:
    bootstrap_servers: str
    redis_url: str
    embedded_kafka: bool
    embedded_redis: bool


@contextlib.contextmanager
def services(settings: Settings) -> Iterator[Endpoints]:
    """Yield where Kafka and Redis are, starting embedded servers for what is not configured."""
    with contextlib.ExitStack() as stack:
        bootstrap = settings.kafka_bootstrap_servers
        if not bootstrap:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            broker = stack.enter_context(
                EmbeddedKafka(settings.embedded_kafka_port, log_path=settings.data_dir / "tansu.log")
            )
            bootstrap = broker.bootstrap_servers
        redis_url = settings.redis_url
        if not redis_url:
            redis_url = stack.enter_context(EmbeddedRedis(settings.data_dir / "redis")).url
        yield Endpoints(bootstrap, redis_url, not settings.kafka_bootstrap_servers, not settings.redis_url)
