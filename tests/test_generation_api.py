"""POST /v1/experiments/{id}/generate through the worker's API, against a real OpenAI-compatible
HTTP server, and against none (sidecar down): a quick 503, decide unaffected."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine.config import Settings
from engine.services.embedded import EmbeddedKafka, EmbeddedRedis, free_port
from tests.generation_openai_server import OpenAIServer
from tests.inprocess import serve_api

pytestmark = pytest.mark.integration
SPEC = {
    "id": "gen",
    "variants": [{"id": "a", "text": "Our running shoes are on sale"}, {"id": "b", "text": "B"}],
}
REQUEST = {
    "base": "Our running shoes are on sale",
    "attributes": ["urgency", "social_proof"],
    "n": 3,
    "seed": 7,
}


@pytest.fixture()
def services(tmp_path: Path) -> Iterator[tuple[str, str]]:
    with EmbeddedKafka(log_path=tmp_path / "tansu.log") as kafka, EmbeddedRedis(tmp_path / "redis") as redis:
        yield kafka.bootstrap_servers, redis.url


def _env(monkeypatch: pytest.MonkeyPatch, base_url: str) -> None:
    monkeypatch.setenv("ABENGINE_GEN_BACKEND", "vllm")
    monkeypatch.setenv("ABENGINE_GEN_VLLM_BASE_URL", base_url)
    monkeypatch.setenv("ABENGINE_GEN_VLLM_TIMEOUT_S", "2")
    monkeypatch.setenv("ABENGINE_GEN_VLLM_RETRIES", "1")
    monkeypatch.setenv("ABENGINE_GEN_DEDUP_EMBEDDER", "lexical")


async def test_generate_and_add_as_variants(
    services: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with OpenAIServer() as sidecar:
        _env(monkeypatch, sidecar.url)
        with serve_api(Settings(topic_partitions=1, ranker_enabled=False), *services) as (url, _):
            async with httpx.AsyncClient(timeout=30) as http:
                assert (await http.post(f"{url}/v1/experiments", json=SPEC)).status_code == 201
                r = await http.post(f"{url}/v1/experiments/gen/generate", json=REQUEST)
                assert r.status_code == 200, r.text
                body = r.json()
                assert 1 <= len(body["candidates"]) <= 3 and body["backend"] == "vllm"
                assert all(
                    c["provenance"]["attributes"] == ["urgency", "social_proof"] for c in body["candidates"]
                )
                r = await http.post(
                    f"{url}/v1/experiments/gen/generate", json={**REQUEST, "add_as_variants": True}
                )
                added = [c["variant_id"] for c in r.json()["candidates"]]
                assert added and all(added)
                exp = (await http.get(f"{url}/v1/experiments/gen")).json()["experiment"]
                assert set(added) <= {v["id"] for v in exp["variants"]}
                served = {
                    (await http.post(f"{url}/v1/experiments/gen/decide", json={"user_id": f"u{i}"})).json()[
                        "variant_id"
                    ]
                    for i in range(60)
                }
                assert served & set(added)  # new variants are served (cold start)
                metrics = (await http.get(f"{url}/metrics")).text
                assert 'abengine_generation_requests_total{backend="vllm",outcome="ok"}' in metrics


@pytest.mark.slow
async def test_test_top_k_adds_only_the_candidates_the_ranker_would_test_first(
    services: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Generate N, add K: the content ranker's MMR picks (real ranker artifact and MiniLM)."""
    async with OpenAIServer() as sidecar:
        _env(monkeypatch, sidecar.url)
        with serve_api(Settings(topic_partitions=1), *services) as (url, _):
            async with httpx.AsyncClient(timeout=60) as http:
                assert (await http.post(f"{url}/v1/experiments", json=SPEC)).status_code == 201
                deadline = time.monotonic() + 180
                while (await http.get(f"{url}/v1/experiments/gen/ranking")).status_code == 503:
                    assert time.monotonic() < deadline, "ranker did not load"
                    await asyncio.sleep(0.5)
                body = {**REQUEST, "n": 4, "add_as_variants": True, "test_top_k": 2, "diversity": 0.0}
                r = await http.post(f"{url}/v1/experiments/gen/generate", json=body)
                assert r.status_code == 200, r.text
                cands = r.json()["candidates"]
                assert len(cands) >= 3  # the stub sidecar writes distinct candidates
                picked = sorted((c for c in cands if c["test_priority"]), key=lambda c: c["test_priority"])
                assert [c["test_priority"] for c in picked] == [1, 2]
                assert all(c["variant_id"] for c in picked)
                assert not any(c["variant_id"] for c in cands if not c["test_priority"])
                # diversity 0: the picks are the two best predicted scores
                best = sorted(cands, key=lambda c: -c["ranker_score"])[:2]
                assert [c["text"] for c in picked] == [c["text"] for c in best]
                exp = (await http.get(f"{url}/v1/experiments/gen")).json()["experiment"]
                assert {v["id"] for v in exp["variants"]} == {"a", "b", *(c["variant_id"] for c in picked)}


async def test_test_top_k_without_adding_or_without_the_ranker_is_refused_by_name(
    services: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _env(monkeypatch, f"http://127.0.0.1:{free_port()}")  # never reached: both refusals come first
    with serve_api(Settings(topic_partitions=1, ranker_enabled=False), *services) as (url, _):
        async with httpx.AsyncClient(timeout=30) as http:
            assert (await http.post(f"{url}/v1/experiments", json=SPEC)).status_code == 201
            r = await http.post(f"{url}/v1/experiments/gen/generate", json={**REQUEST, "test_top_k": 2})
            assert r.status_code == 422 and "add_as_variants" in r.text, r.text
            r = await http.post(
                f"{url}/v1/experiments/gen/generate",
                json={**REQUEST, "test_top_k": 2, "add_as_variants": True},
            )
            assert r.status_code == 503, r.text
            err = r.json()["error"]
            assert err["code"] == "ranker_unavailable" and err["fields"][0]["field"] == "test_top_k"
            exp = (await http.get(f"{url}/v1/experiments/gen")).json()["experiment"]
            assert {v["id"] for v in exp["variants"]} == {"a", "b"}  # nothing added


async def test_sidecar_down_is_a_quick_503_and_decide_is_unaffected(
    services: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _env(monkeypatch, f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with serve_api(Settings(topic_partitions=1, ranker_enabled=False), *services) as (url, _):
        async with httpx.AsyncClient(timeout=30) as http:
            assert (await http.post(f"{url}/v1/experiments", json=SPEC)).status_code == 201

            async def decide_latencies() -> list[float]:
                out = []
                for i in range(40):
                    t0 = time.perf_counter()
                    r = await http.post(f"{url}/v1/experiments/gen/decide", json={"user_id": f"u{i}"})
                    assert r.status_code == 200
                    out.append(time.perf_counter() - t0)
                    await asyncio.sleep(0.01)
                return out

            t0 = time.perf_counter()
            gen, lat = await asyncio.gather(
                http.post(f"{url}/v1/experiments/gen/generate", json=REQUEST), decide_latencies()
            )
            assert gen.status_code == 503, gen.text
            err = gen.json()["error"]
            assert err["code"] == "generation_unavailable" and err["fields"][0]["field"] == "backend"
            assert time.perf_counter() - t0 < 10
            assert max(lat) < 0.5
            metrics = (await http.get(f"{url}/metrics")).text
            assert 'outcome="error"' in metrics
            assert "abengine_generation_failures_total{reason=" in metrics
