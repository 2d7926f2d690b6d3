"""The generation service the HTTP API calls: time-limited, off the decide path, observable.

``POST /v1/experiments/{id}/generate`` awaits :meth:`GenerationService.generate`. The model never runs on
the event loop (the vLLM backend is an HTTP client; the local one runs on its own thread), the whole call
has its own time limit, and every failure surfaces as :class:`GenerationUnavailable` with a short reason
that the API maps to 503. Counters go through a :class:`GenerationSensor`, so this module imports no
metrics library; the API wires one to Prometheus.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import numpy as np

from engine.generation.backends.base import BackendError, Sampling, TextBackend
from engine.generation.backends.breaker import CircuitBreaker
from engine.generation.config import GenerationSettings
from engine.generation.generator import VariantGenerator
from engine.generation.models import Candidate, GenerationRequest, GenerationResult
from engine.generation.validation import EmbedFn, lexical_embedder

#: Adds (some of) the candidates to the experiment; returns every candidate, those added with their variant_id
AddVariants = Callable[[str, Sequence[Candidate]], Awaitable[Sequence[Candidate]]]


class GenerationUnavailable(Exception):
    """Generation cannot answer now (sidecar down, circuit open, time-out): the API answers 503."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"generation unavailable ({reason}): {detail}")
        self.reason = reason
        self.detail = detail


class GenerationSensor(Protocol):
    """Receives generation counters (the API forwards them to Prometheus)."""

    def dropped(self, reason: str, count: int) -> None: ...
    def failed(self, reason: str) -> None: ...
    def observed(self, seconds: float, outcome: str) -> None: ...


class CountingSensor:
    """Keeps the counters in memory (tests, the CLI, and a fallback when no metrics are wired)."""

    def __init__(self) -> None:
        self.dropped_total: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.latencies: list[tuple[float, str]] = []

    def dropped(self, reason: str, count: int) -> None:
        self.dropped_total[reason] += count

    def failed(self, reason: str) -> None:
        self.failures[reason] += 1

    def observed(self, seconds: float, outcome: str) -> None:
        self.latencies.append((seconds, outcome))


class GenerationService:
    """Runs :class:`VariantGenerator` under a time limit and reports what happened to a sensor."""

    def __init__(
        self, generator: VariantGenerator, *, timeout_s: float = 60.0, sensor: GenerationSensor | None = None
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.generator = generator
        self.timeout_s = timeout_s
        self.sensor: GenerationSensor = sensor or CountingSensor()

    @property
    def backend(self) -> TextBackend:
        return self.generator.backend

    async def generate(
        self,
        request: GenerationRequest,
        *,
        experiment_id: str | None = None,
        add_variants: AddVariants | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> GenerationResult:
        """Write candidates for ``request``; with ``add_as_variants`` and a hook, add the accepted ones."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_s):
                result = await self.generator.generate(request, progress)
        except TimeoutError as err:
            self._fail("timeout", started)
            raise GenerationUnavailable("timeout", f"generation took longer than {self.timeout_s} s") from err
        except BackendError as err:
            self._fail(err.reason, started)
            raise GenerationUnavailable(err.reason, err.detail) from err
        for reason, count in result.dropped.items():
            self.sensor.dropped(reason, count)
        if request.add_as_variants and add_variants is not None and experiment_id and result.candidates:
            candidates = list(await add_variants(experiment_id, result.candidates))
            if len(candidates) != len(result.candidates):
                raise RuntimeError("add_variants must return every candidate, in order")
            result = result.model_copy(update={"candidates": candidates})
        self.sensor.observed(time.perf_counter() - started, "ok" if result.candidates else "empty")
        return result

    def _fail(self, reason: str, started: float) -> None:
        self.sensor.failed(reason)
        self.sensor.observed(time.perf_counter() - started, "error")

    async def warm_up(self) -> None:
        """Load the models now, off the event loop, so the first request does not pay for it."""
        await asyncio.to_thread(self.generator.embed, ["warm up"])
        load = getattr(self.backend, "load", None)
        if load is not None:
            await asyncio.to_thread(load)

    async def aclose(self) -> None:
        await self.backend.aclose()

    @classmethod
    def from_settings(
        cls,
        settings: GenerationSettings | None = None,
        *,
        embed: EmbedFn | None = None,
        sensor: GenerationSensor | None = None,
    ) -> GenerationService:
        """The service the settings describe (backend, resilience, sampling, filtering)."""
        settings = settings or GenerationSettings()
        backend = build_backend(settings)
        if embed is None:
            embed = _minilm_embed if settings.dedup_embedder == "minilm" else lexical_embedder()
        generator = VariantGenerator(
            backend,
            embed,
            per_call=settings.per_call,
            max_calls=settings.max_calls,
            sampling=Sampling(settings.temperature, settings.top_p, settings.max_tokens),
            near_duplicate_cosine=settings.near_duplicate_cosine,
        )
        return cls(generator, timeout_s=settings.request_timeout_s, sensor=sensor)


def _minilm_embed(texts: Sequence[str]) -> np.ndarray:
    """MiniLM embeddings through the process-wide embedder (loaded on first use, ~8 s)."""
    from engine.embeddings import default_embedder

    return default_embedder().encode(texts)


def build_backend(settings: GenerationSettings) -> TextBackend:
    """The backend named by ``settings.backend``."""
    if settings.backend == "vllm":
        from engine.generation.backends.vllm import VllmBackend

        return VllmBackend(
            settings.vllm_base_url,
            model=settings.vllm_model,
            api=settings.vllm_api,
            api_key=settings.vllm_api_key,
            timeout_s=settings.vllm_timeout_s,
            retries=settings.vllm_retries,
            backoff_s=settings.vllm_backoff_s,
            max_concurrency=settings.vllm_max_concurrency,
            breaker=CircuitBreaker(settings.breaker_failures, settings.breaker_reset_s),
        )
    from engine.generation.backends.local import LocalBackend

    return LocalBackend(
        settings.local_model_path, n_threads=settings.local_threads, n_ctx=settings.local_context
    )
