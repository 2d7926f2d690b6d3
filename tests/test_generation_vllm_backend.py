"""The ``vllm`` backend and the service against a real OpenAI-compatible HTTP server on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest
from generation_openai_server import POOL, OpenAIServer

from engine.generation.backends.base import BackendError, Sampling
from engine.generation.backends.breaker import CircuitBreaker
from engine.generation.backends.vllm import VllmBackend
from engine.generation.generator import VariantGenerator
from engine.generation.models import GenerationRequest
from engine.generation.service import CountingSensor, GenerationService, GenerationUnavailable
from engine.generation.templates import load_template
from engine.generation.validation import lexical_embedder

BASE = "Try our new running shoes"
EMBED = lexical_embedder()


def backend_for(url: str, **kwargs: object) -> VllmBackend:
    kwargs.setdefault("timeout_s", 2.0)
    kwargs.setdefault("backoff_s", 0.01)
    return VllmBackend(url, **kwargs)  # type: ignore[arg-type]


def service_for(backend: VllmBackend, timeout_s: float = 10.0) -> GenerationService:
    return GenerationService(
        VariantGenerator(backend, EMBED, per_call=4, max_calls=4),
        timeout_s=timeout_s,
        sensor=CountingSensor(),
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_generates_validated_candidates_with_provenance() -> None:
    async with OpenAIServer() as server:
        service = service_for(backend_for(server.url))
        request = GenerationRequest(
            base=BASE, attributes=["urgency", "social_proof"], n=4, seed=3, max_chars=80
        )
        result = await service.generate(request)
        await service.aclose()
    texts = [c.text for c in result.candidates]
    assert len(texts) == 4 and len(set(texts)) == 4
    assert all(t in POOL for t in texts)
    first = result.candidates[0].provenance
    assert (first.backend, first.model, first.template_version) == ("vllm", "tiny-test-model", "variants_v1")
    assert first.attributes == ["urgency", "social_proof"]
    sent = server.requests[0]
    assert sent["seed"] == first.seed and sent["response_format"]["type"] == "json_schema"
    assert "urgency" in sent["messages"][1]["content"] and BASE in sent["messages"][1]["content"]


async def test_same_seed_replays_and_other_seed_differs() -> None:
    async with OpenAIServer() as server:
        service = service_for(backend_for(server.url))
        seen: list[tuple[int, int]] = []
        runs = [
            await service.generate(
                GenerationRequest(base=BASE, n=3, seed=s), progress=lambda a, c: seen.append((a, c))
            )
            for s in (7, 7, 8)
        ]
        await service.aclose()
    texts = [[c.text for c in r.candidates] for r in runs]
    assert texts[0] == texts[1] != texts[2]
    assert seen[0] == (3, 1)  # progress after each backend call: accepted so far, calls so far


async def test_drops_and_counts_invalid_output_and_never_serves_it() -> None:
    junk = [
        "Sure! Here are your variants:",
        BASE + "!",
        "x" * 300,
        "Buy now, guaranteed results",
        POOL[0],
        POOL[0] + ".",
        POOL[1],
    ]

    def answer(body: dict, choice: int, k: int) -> str:
        return json.dumps({"variants": junk})

    async with OpenAIServer(answer=answer) as server:
        sensor = CountingSensor()
        generator = VariantGenerator(backend_for(server.url), EMBED, per_call=8, max_calls=1)
        service = GenerationService(generator, sensor=sensor)
        request = GenerationRequest(base=BASE, n=8, max_chars=100, banned_phrases=["guaranteed"], seed=1)
        result = await service.generate(request)
        await service.aclose()
    assert [c.text for c in result.candidates] == [POOL[0], POOL[1]]
    assert result.dropped == {
        "meta_text": 1,
        "copy_of_base": 1,
        "too_long": 1,
        "banned_phrase": 1,
        "duplicate": 1,
    }
    assert sensor.dropped_total == result.dropped


async def test_answers_beyond_what_was_asked_are_cut() -> None:
    async with OpenAIServer(answer=lambda body, i, k: json.dumps({"variants": POOL[:6]})) as server:
        service = service_for(backend_for(server.url))
        result = await service.generate(GenerationRequest(base=BASE, n=2, seed=0))
        await service.aclose()
    assert [c.text for c in result.candidates] == POOL[:2] and result.raw_count == 2


async def test_unparseable_answers_are_counted() -> None:
    async with OpenAIServer(answer=lambda body, i, k: "   ") as server:
        service = service_for(backend_for(server.url))
        result = await service.generate(GenerationRequest(base=BASE, n=2, seed=0))
        await service.aclose()
    assert result.candidates == []
    assert result.dropped["unparseable"] == result.calls == 4


@pytest.mark.parametrize("rejected", [{"response_format"}, {"response_format", "structured_outputs"}])
async def test_guided_output_falls_back_through_styles(rejected: set[str]) -> None:
    async with OpenAIServer(reject=frozenset(rejected)) as server:
        backend = backend_for(server.url)
        prompt = load_template().render(GenerationRequest(base=BASE), 2)
        texts = await backend.complete(prompt, n=1, seed=5, sampling=Sampling())
        await backend.aclose()
    assert json.loads(texts[0])["variants"]
    expected = "structured_outputs" if rejected == {"response_format"} else "guided_json"
    assert expected in server.requests[-1]
    assert backend.features.guided[0] == expected
    # later calls go straight to what worked
    assert backend.downgrades == [
        f"guided:{s}" for s in ("response_format", "structured_outputs") if s in rejected
    ]


async def test_without_n_and_seed_support_it_sends_single_requests() -> None:
    async with OpenAIServer(
        reject=frozenset({"n", "seed", "response_format", "structured_outputs", "guided_json"})
    ) as s:
        backend = backend_for(s.url)
        prompt = load_template().render(GenerationRequest(base=BASE), 1)
        texts = await backend.complete(prompt, n=3, seed=5, sampling=Sampling())
        await backend.aclose()
    assert len(texts) == 3
    assert not backend.features.n and not backend.features.seed and backend.features.guided == []
    assert all("n" not in r and "seed" not in r for r in s.requests[-3:])


async def test_completions_api_sends_plain_prompt() -> None:
    async with OpenAIServer() as server:
        backend = backend_for(server.url, api="completions")
        prompt = load_template().render(GenerationRequest(base=BASE), 2)
        texts = await backend.complete(prompt, n=2, seed=1, sampling=Sampling(max_tokens=50))
        await backend.aclose()
    assert len(texts) == 2
    assert server.requests[0]["prompt"].endswith("Answer:") and server.requests[0]["n"] == 2


async def test_retries_with_backoff_then_succeeds() -> None:
    async with OpenAIServer(fail_first=2) as server:
        backend = backend_for(server.url, retries=2, backoff_s=0.05)
        prompt = load_template().render(GenerationRequest(base=BASE), 1)
        started = time.perf_counter()
        texts = await backend.complete(prompt, n=1, seed=0, sampling=Sampling())
        elapsed = time.perf_counter() - started
        await backend.aclose()
    assert texts and server.completion_calls == 3
    assert elapsed >= 0.05 * 0.5 + 0.1 * 0.5  # two back-offs with jitter in [0.5, 1.5) x base
    assert backend.breaker.state == "closed"


async def test_gives_up_after_retries_with_reason() -> None:
    async with OpenAIServer(always_fail=True, fail_status=500) as server:
        backend = backend_for(server.url, retries=1, breaker=CircuitBreaker(failure_threshold=10))
        prompt = load_template().render(GenerationRequest(base=BASE), 1)
        with pytest.raises(BackendError) as info:
            await backend.complete(prompt, n=1, seed=0, sampling=Sampling())
        await backend.aclose()
    assert info.value.reason == "server_error" and "HTTP 500" in info.value.detail
    assert server.completion_calls == 2


async def test_circuit_opens_and_answers_at_once_then_recovers() -> None:
    async with OpenAIServer(always_fail=True) as server:
        breaker = CircuitBreaker(failure_threshold=2, reset_s=0.3)
        sensor = CountingSensor()
        backend = backend_for(server.url, retries=3, breaker=breaker)
        service = GenerationService(VariantGenerator(backend, EMBED), sensor=sensor)
        with pytest.raises(GenerationUnavailable) as first:
            await service.generate(GenerationRequest(base=BASE, n=1))
        assert first.value.reason == "circuit_open" and server.completion_calls == 2
        started = time.perf_counter()
        with pytest.raises(GenerationUnavailable) as second:
            await service.generate(GenerationRequest(base=BASE, n=1))
        assert second.value.reason == "circuit_open" and time.perf_counter() - started < 0.5
        assert server.completion_calls == 2  # nothing reached the server while open
        server.always_fail = False
        await asyncio.sleep(0.35)
        result = await service.generate(GenerationRequest(base=BASE, n=1, seed=0))
        await service.aclose()
    assert len(result.candidates) == 1 and breaker.state == "closed"
    assert sensor.failures == {"circuit_open": 2}


async def test_unreachable_sidecar_is_a_clear_unavailable_error() -> None:
    sensor = CountingSensor()
    backend = backend_for(f"http://127.0.0.1:{closed_port()}", retries=1)
    service = GenerationService(VariantGenerator(backend, EMBED), sensor=sensor)
    with pytest.raises(GenerationUnavailable) as info:
        await service.generate(GenerationRequest(base=BASE))
    await service.aclose()
    assert info.value.reason == "unreachable" and "127.0.0.1" in info.value.detail
    assert sensor.failures == {"unreachable": 1}
    assert sensor.latencies[-1][1] == "error"


async def test_slow_sidecar_hits_the_attempt_timeout() -> None:
    async with OpenAIServer(delay_s=1.0) as server:
        backend = backend_for(server.url, timeout_s=0.2, retries=1)
        service = service_for(backend)
        started = time.perf_counter()
        with pytest.raises(GenerationUnavailable) as info:
            await service.generate(GenerationRequest(base=BASE))
        assert time.perf_counter() - started < 1.0
        await service.aclose()
    assert info.value.reason == "timeout"


async def test_service_timeout_bounds_the_whole_request_and_loop_stays_responsive() -> None:
    async with OpenAIServer(delay_s=3.0) as server:
        service = service_for(backend_for(server.url, timeout_s=10.0), timeout_s=0.4)
        lags: list[float] = []

        async def decide_path() -> None:  # what serving decisions looks like to the loop: short awaits
            for _ in range(40):
                t = time.perf_counter()
                await asyncio.sleep(0.01)
                lags.append(time.perf_counter() - t - 0.01)

        started = time.perf_counter()
        ticker = asyncio.create_task(decide_path())
        with pytest.raises(GenerationUnavailable) as info:
            await service.generate(GenerationRequest(base=BASE))
        elapsed = time.perf_counter() - started
        await ticker
        await service.aclose()
    assert info.value.reason == "timeout" and 0.35 < elapsed < 1.5
    assert max(lags) < 0.1


async def test_concurrency_limit_caps_requests_in_flight() -> None:
    in_flight = peak = 0

    def answer(body: dict, choice: int, k: int) -> str:
        return json.dumps({"variants": [POOL[0]]})

    async with OpenAIServer(delay_s=0.1, answer=answer) as server:
        original = server._reply

        async def counting(request, chat):  # type: ignore[no-untyped-def]
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                return await original(request, chat)
            finally:
                in_flight -= 1

        server._reply = counting  # type: ignore[method-assign]
        backend = backend_for(server.url, max_concurrency=2)
        prompt = load_template().render(GenerationRequest(base=BASE), 1)
        await asyncio.gather(*(backend.complete(prompt, n=1, seed=i, sampling=Sampling()) for i in range(6)))
        await backend.aclose()
    assert peak == 2


async def test_add_as_variants_hook_gets_accepted_candidates() -> None:
    added: list[tuple[str, list[str]]] = []

    async def add_variants(experiment_id: str, candidates: list) -> list:  # type: ignore[type-arg]
        added.append((experiment_id, [c.text for c in candidates]))
        return [c.model_copy(update={"variant_id": f"gen-{i}"}) for i, c in enumerate(candidates)]

    async with OpenAIServer() as server:
        service = service_for(backend_for(server.url))
        request = GenerationRequest(base=BASE, n=2, seed=2, add_as_variants=True)
        result = await service.generate(request, experiment_id="exp-1", add_variants=add_variants)
        await service.aclose()
    assert added == [("exp-1", [c.text for c in result.candidates])]
    assert [c.variant_id for c in result.candidates] == ["gen-0", "gen-1"]
