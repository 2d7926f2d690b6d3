"""The live LLM-PO allocator through the worker's HTTP API: refuses < 2 variants, shows its status."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine.config import Settings
from engine.services.embedded import EmbeddedKafka, EmbeddedRedis
from tests.inprocess import serve_api

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp: Path = tmp_path_factory.mktemp("llmpo")
    with (
        EmbeddedKafka(log_path=tmp / "tansu.log") as kafka,
        EmbeddedRedis(tmp / "redis") as redis,
        serve_api(Settings(topic_partitions=1, ranker_enabled=False), kafka.bootstrap_servers, redis.url) as (
            url,
            _,
        ),
    ):
        yield url


def test_llm_po_needs_two_variants(api: str) -> None:
    spec = {"id": "one", "allocator": "llm_po", "variants": [{"id": "a", "text": "A"}]}
    r = httpx.post(f"{api}/v1/experiments", json=spec)
    assert r.status_code == 422
    assert "two variants" in r.json()["error"]["message"]


def test_llm_po_serves_pairs_and_reports_its_status(api: str) -> None:
    spec = {
        "id": "po",
        "allocator": "llm_po",
        "allocator_config": {"delta": 0.05},
        "variants": [{"id": v, "text": f"Headline {v}"} for v in "abc"],
    }
    assert httpx.post(f"{api}/v1/experiments", json=spec).status_code == 201
    served = [
        httpx.post(f"{api}/v1/experiments/po/decide", json={"user_id": f"u{i}"}).json() for i in range(30)
    ]
    assert {d["allocator"] for d in served} == {"llm_po"}
    assert all(0 < d["propensity"] <= 1 for d in served)
    status = httpx.get(f"{api}/v1/experiments/po").json()["policy"]["status"]
    assert {"leader", "z", "beta", "samples_per_pair", "identified"} <= set(status)
    assert status["identified"] is False and status["beta"] > 0
    bad = {**spec, "id": "po2", "allocator_config": {"bogus": 1}}
    r = httpx.post(f"{api}/v1/experiments", json=bad)
    assert r.status_code == 422 and r.json()["error"]["fields"][0]["field"] == "allocator_config"
