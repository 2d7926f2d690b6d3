"""Bearer tokens, rate limits and loopback-only embedded services."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine.api import RateLimiter
from engine.config import Settings
from engine.services.embedded import EmbeddedKafka, EmbeddedRedis
from tests.inprocess import serve_api

pytestmark = pytest.mark.integration
SPEC = {"id": "sec", "variants": [{"id": "a", "text": "A"}, {"id": "b", "text": "B"}]}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("sec")
    with EmbeddedKafka(log_path=tmp / "tansu.log") as kafka, EmbeddedRedis(tmp / "redis") as redis:
        settings = Settings(
            topic_partitions=1, admin_token="adm-secret", client_token="cli-secret", ranker_enabled=False
        )
        with serve_api(settings, kafka.bootstrap_servers, redis.url) as (url, _):
            yield url


def test_admin_endpoints_need_the_admin_token(secured: str) -> None:
    r = httpx.post(f"{secured}/v1/experiments", json=SPEC)
    assert r.status_code == 401 and r.json()["error"]["fields"][0]["field"] == "Authorization"
    assert (
        httpx.post(
            f"{secured}/v1/experiments", json=SPEC, headers={"Authorization": "Bearer cli-secret"}
        ).status_code
        == 401
    )
    assert (
        httpx.post(
            f"{secured}/v1/experiments", json=SPEC, headers={"Authorization": "Bearer adm-secret"}
        ).status_code
        == 201
    )


def test_decide_and_events_need_the_client_token(secured: str) -> None:
    url = f"{secured}/v1/experiments/sec/decide"
    assert httpx.post(url, json={"user_id": "u"}).status_code == 401
    assert (
        httpx.post(url, json={"user_id": "u"}, headers={"Authorization": "Bearer wrong"}).status_code == 401
    )
    assert (
        httpx.post(url, json={"user_id": "u"}, headers={"Authorization": "Bearer cli-secret"}).status_code
        == 200
    )
    assert httpx.post(f"{secured}/v1/events", json={"events": []}).status_code == 401
    # probes and metrics stay open for the orchestrator and Prometheus
    assert httpx.get(f"{secured}/healthz").status_code == 200
    assert httpx.get(f"{secured}/metrics").status_code == 200


def test_rate_limiter_token_bucket() -> None:
    limiter = RateLimiter(rate=10.0)
    allowed = sum(limiter.allow("1.2.3.4", 0.0) for _ in range(50))
    assert allowed == 20  # the burst: two seconds' worth
    assert limiter.allow("1.2.3.4", 0.05) is False
    assert limiter.allow("1.2.3.4", 0.2) is True  # refilled
    assert limiter.allow("5.6.7.8", 0.2) is True  # per client


def test_embedded_services_bind_loopback_only(tmp_path: Path) -> None:
    with EmbeddedKafka() as kafka:
        assert kafka.bootstrap_servers.startswith("127.0.0.1:")
    with EmbeddedRedis(tmp_path) as redis:
        assert redis.url.startswith("unix://")
        import redis as redis_lib

        client = redis_lib.Redis.from_url(redis.url)
        assert client.config_get("port")["port"] == "0"  # no TCP listener at all
        client.close()
