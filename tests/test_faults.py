"""Fault tests on real services: Redis stops and comes back while decisions are served."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine.config import Settings
from engine.services.embedded import EmbeddedKafka
from tests.inprocess import serve_api
from tests.redis_process import RedisProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture()
def outage_env(tmp_path: Path) -> Iterator[tuple[str, RedisProcess]]:
    redis = RedisProcess(tmp_path, "--appendonly", "yes")
    redis.start()
    with EmbeddedKafka(log_path=tmp_path / "tansu.log") as kafka:
        settings = Settings(topic_partitions=2, policy_refresh_s=0.2, ranker_enabled=False)
        try:
            with serve_api(settings, kafka.bootstrap_servers, redis.url) as (url, _runtime):
                yield url, redis
        finally:
            redis.stop()


def metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not exported")


def test_decide_keeps_answering_while_redis_is_down(outage_env: tuple[str, RedisProcess]) -> None:
    url, redis = outage_env
    spec = {"id": "rx", "variants": [{"id": "a", "text": "A"}, {"id": "b", "text": "B"}]}
    assert httpx.post(f"{url}/v1/experiments", json=spec).status_code == 201
    assert httpx.get(f"{url}/readyz").json()["status"] == "ready"

    redis.stop()
    latencies = []
    for i in range(50):
        t0 = time.perf_counter()
        r = httpx.post(f"{url}/v1/experiments/rx/decide", json={"user_id": f"u{i}"}, timeout=5)
        latencies.append(time.perf_counter() - t0)
        assert r.status_code == 200, r.text
    assert max(latencies) < 1.0  # nothing on the decide path waits for Redis
    ready = httpx.get(f"{url}/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    assert metric(url, "abengine_redis_degraded") == 1.0
    # what needs Redis says so with a 503, it does not hang
    t0 = time.perf_counter()
    r = httpx.get(f"{url}/v1/experiments/unknown-one", timeout=5)
    assert r.status_code == 503 and r.json()["error"]["code"] == "redis_unavailable"
    assert time.perf_counter() - t0 < 2.0

    redis.start()
    deadline = time.monotonic() + 20
    while httpx.get(f"{url}/readyz").json()["status"] != "ready":
        assert time.monotonic() < deadline, "did not leave degraded mode"
        time.sleep(0.2)
    assert metric(url, "abengine_redis_degraded") == 0.0
    body = httpx.get(f"{url}/v1/experiments/rx").json()
    assert body["experiment"]["id"] == "rx"  # the registry survived (AOF) and is readable again
