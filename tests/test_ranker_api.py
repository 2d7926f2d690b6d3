"""Ranking, insights, opportunities and the warm-start prior through the worker's HTTP API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine.config import Settings
from engine.services.embedded import EmbeddedKafka, EmbeddedRedis
from tests.inprocess import serve_api

pytestmark = [pytest.mark.integration, pytest.mark.slow]
VARIANTS = [
    {"id": "plain", "text": "New article about city budgets"},
    {"id": "question", "text": "What happened when this town let kids run the budget?"},
    {"id": "number", "text": "7 surprising things a town learned from its youngest voters"},
]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp: Path = tmp_path_factory.mktemp("rank")
    with (
        EmbeddedKafka(log_path=tmp / "tansu.log") as kafka,
        EmbeddedRedis(tmp / "redis") as redis,
        serve_api(Settings(topic_partitions=1), kafka.bootstrap_servers, redis.url) as (url, _),
    ):
        assert httpx.post(f"{url}/v1/experiments", json={"id": "hl", "variants": VARIANTS}).status_code == 201
        deadline = time.monotonic() + 180
        while httpx.get(f"{url}/v1/experiments/hl/ranking", timeout=30).status_code == 503:
            assert time.monotonic() < deadline, "ranker did not load"
            time.sleep(0.5)
        yield url


def test_ranking_is_relative_and_covers_every_variant(api: str) -> None:
    body = httpx.get(f"{api}/v1/experiments/hl/ranking", timeout=30).json()
    assert body["relative"] is True and body["model_version"]
    assert sorted(r["variant_id"] for r in body["ranking"]) == sorted(v["id"] for v in VARIANTS)
    assert [r["rank"] for r in body["ranking"]] == [1, 2, 3]
    scores = [r["score"] for r in body["ranking"]]
    assert scores == sorted(scores, reverse=True)


def test_insights_and_opportunities_name_attributes(api: str) -> None:
    ins = httpx.get(f"{api}/v1/experiments/hl/insights", timeout=30).json()
    assert ins["observed"] is False and ins["basis"] == "predicted_score"  # no traffic yet
    ids = {v["id"] for v in VARIANTS}
    assert ins["best"]["variant_id"] in ids and ins["worst"]["variant_id"] in ids
    assert ins["best"]["variant_id"] != ins["worst"]["variant_id"]
    assert len(ins["sentences"]) == len(ins["drivers"])
    for driver in ins["drivers"]:  # each driver names a lexicon attribute
        assert driver["attribute"] and driver["description"]
    opp = httpx.get(f"{api}/v1/experiments/hl/opportunities", timeout=30).json()
    assert "opportunities" in opp and len(opp["sentences"]) == len(opp["opportunities"])
    r = httpx.get(f"{api}/v1/experiments/missing/insights", timeout=30)
    assert r.status_code == 404


def test_warm_start_seeds_thompson_with_ranker_prior(api: str) -> None:
    spec = {"id": "warm", "variants": VARIANTS, "warm_start": True}
    r = httpx.post(f"{api}/v1/experiments", json=spec, timeout=60)
    assert r.status_code == 201, r.text
    prior = r.json()["prior"]
    assert set(prior) == {v["id"] for v in VARIANTS} and all(a > 0 and b > 0 for a, b in prior.values())
    ranking = httpx.get(f"{api}/v1/experiments/warm/ranking", timeout=30).json()["ranking"]
    policy = httpx.get(f"{api}/v1/experiments/warm", timeout=30).json()["policy"]["variants"]
    best = ranking[0]["variant_id"]
    assert policy[best]["posterior_mean"] == max(v["posterior_mean"] for v in policy.values())


async def test_insights_written_by_the_llm_backend(api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.generation_openai_server import OpenAIServer

    async with OpenAIServer() as sidecar:
        monkeypatch.setenv("ABENGINE_GEN_BACKEND", "vllm")
        monkeypatch.setenv("ABENGINE_GEN_VLLM_BASE_URL", sidecar.url)
        async with httpx.AsyncClient(timeout=120) as http:
            body = (await http.get(f"{api}/v1/experiments/hl/insights", params={"llm": "1"})).json()
    assert len(body["written"]) == len(body["sentences"]) == len(body["drivers"])
    for item in body["written"]:
        # each sentence is the LLM's when it passed the rubric and its own reflection, else the template
        assert item["source"] in ("llm", "template") and item["text"]
        if item["source"] == "template":
            assert item["text"] in body["sentences"] and item["rejected"]
    assert sidecar.completion_calls > 0


async def test_llm_writing_unavailable_is_a_503(api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.services.embedded import free_port

    monkeypatch.setenv("ABENGINE_GEN_BACKEND", "vllm")
    monkeypatch.setenv("ABENGINE_GEN_VLLM_BASE_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("ABENGINE_GEN_VLLM_RETRIES", "0")
    async with httpx.AsyncClient(timeout=120) as http:
        r = await http.get(f"{api}/v1/experiments/hl/opportunities", params={"llm": "1"})
    assert r.status_code == 503 and r.json()["error"]["fields"][0]["field"] == "llm"
