"""The actor-critic allocator served over HTTP: perception schema, bad features named, memory read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine.config import Settings
from engine.services.embedded import EmbeddedKafka, EmbeddedRedis
from tests.inprocess import serve_api

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SPEC = {
    "id": "ac",
    "allocator": "actor_critic",
    "allocator_config": {
        "schema": {"numeric": {"age": [40.0, 12.0]}, "categorical": {"segment": ["mens", "womens"]}},
    },
    "variants": [
        {"id": "mens", "text": "New arrivals for men: jackets and boots"},
        {"id": "womens", "text": "New arrivals for women: dresses and coats"},
        {"id": "none", "text": "Our newsletter: this week's stories"},
    ],
}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp: Path = tmp_path_factory.mktemp("ac")
    with (
        EmbeddedKafka(log_path=tmp / "tansu.log") as kafka,
        EmbeddedRedis(tmp / "redis") as redis,
        serve_api(Settings(topic_partitions=1, ranker_enabled=False), kafka.bootstrap_servers, redis.url) as (
            url,
            _,
        ),
    ):
        r = httpx.post(f"{url}/v1/experiments", json=SPEC, timeout=120)
        assert r.status_code == 201, r.text
        yield url


def test_actor_critic_decides_with_portrait_and_context(api: str) -> None:
    body = {"user_id": "u1", "attributes": {"segment": "mens", "age": 31}, "context": "winter boots search"}
    seen = set()
    for i in range(30):
        r = httpx.post(f"{api}/v1/experiments/ac/decide", json={**body, "user_id": f"u{i}"}, timeout=10)
        assert r.status_code == 200, r.text
        d = r.json()
        assert d["allocator"] == "actor_critic" and 0 < d["propensity"] <= 1
        seen.add(d["variant_id"])
    assert len(seen) >= 2  # exploring: the minimum probability keeps every variant reachable


@pytest.mark.parametrize(
    ("attributes", "features", "field"),
    [
        ({"segment": "mens", "shoe_size": 42}, {}, "shoe_size"),
        ({"age": "old"}, {}, "age"),
        ({}, {"unknown_feature": 1.0}, "unknown_feature"),
    ],
)
def test_bad_features_get_422_naming_the_field(
    api: str, attributes: dict, features: dict, field: str
) -> None:
    r = httpx.post(
        f"{api}/v1/experiments/ac/decide",
        json={"user_id": "u", "attributes": attributes, "features": features},
        timeout=10,
    )
    assert r.status_code == 422, r.text
    assert field in r.text
