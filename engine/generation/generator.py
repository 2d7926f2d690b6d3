"""Prompt-conditioned variant generation: render, call the backend, parse, validate, attach provenance.

The loop asks the backend for what is still missing until ``n`` candidates pass validation or the call
budget is spent, so a weak model that wastes half its answers still fills the request when it can.
Seeds are derived per call from the request's seed, so the same request on the same backend replays.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable

from engine.generation.backends.base import BackendError, Sampling, TextBackend
from engine.generation.models import Candidate, GenerationRequest, GenerationResult, Provenance
from engine.generation.parsing import parse_candidates
from engine.generation.templates import load_template
from engine.generation.validation import CandidateFilter, EmbedFn, Rules

_SEED_MODULUS = 2**31
# Call c of a request with seed s samples with seeds s*SPREAD + c*STRIDE + i (i < n): requests with
# adjacent seeds, and calls of one request, never share a sample seed.
_SEED_SPREAD = 1_000_003
_SEED_STRIDE = 7919


class VariantGenerator:
    """Writes validated variants with one backend."""

    def __init__(
        self,
        backend: TextBackend,
        embed: EmbedFn,
        *,
        per_call: int = 4,
        max_calls: int = 6,
        sampling: Sampling | None = None,
        near_duplicate_cosine: float = 0.92,
        seed: int | None = None,
    ) -> None:
        if per_call < 1 or max_calls < 1:
            raise ValueError(f"per_call and max_calls must be >= 1, got {per_call}, {max_calls}")
        self.backend = backend
        self.embed = embed
        self.per_call = per_call
        self.max_calls = max_calls
        self.sampling = sampling or Sampling()
        self.near_duplicate_cosine = near_duplicate_cosine
        self._rng = random.Random(seed)

    def _max_tokens(self, k: int, max_chars: int) -> int:
        """Enough tokens for k variants of max_chars (about 2.5 characters a token) plus JSON, capped."""
        return min(self.sampling.max_tokens, 48 + k * math.ceil(max_chars / 2.5 + 8))

    async def generate(
        self, request: GenerationRequest, progress: Callable[[int, int], None] | None = None
    ) -> GenerationResult:
        """Candidates for ``request``; ``progress(accepted, calls)`` is called after each backend call."""
        started = time.perf_counter()
        template = load_template(request.template, self.backend.template_family)
        seed0 = request.seed if request.seed is not None else self._rng.randrange(_SEED_MODULUS)
        rules = Rules(
            request.min_chars, request.max_chars, tuple(request.banned_phrases), self.near_duplicate_cosine
        )
        flt = CandidateFilter(self.embed, rules)
        state = await asyncio.to_thread(flt.start, request.base)
        candidates: list[Candidate] = []
        raw_count = calls = 0
        incomplete: str | None = None
        for call in range(self.max_calls):
            need = request.n - len(candidates)
            if need <= 0:
                break
            k = min(self.per_call, self.backend.max_variants_per_prompt, need)
            samples = math.ceil(need / k)
            seed = (seed0 * _SEED_SPREAD + _SEED_STRIDE * call) % _SEED_MODULUS
            prompt = template.render(request, k)
            sampling = Sampling(
                self.sampling.temperature, self.sampling.top_p, self._max_tokens(k, request.max_chars)
            )
            try:
                outputs = await self.backend.complete(prompt, n=samples, seed=seed, sampling=sampling)
            except BackendError as err:
                if not candidates:
                    raise
                incomplete = f"{err.reason}: {err.detail}"
                break
            calls += 1
            parsed: list[str] = []
            for output in outputs:
                texts = parse_candidates(output)
                if not texts:
                    state.dropped["unparseable"] += 1
                # We asked for k: anything after that is the model rambling on, not a candidate.
                parsed.extend(texts[:k])
            raw_count += len(parsed)
            first_new = len(state.accepted)
            await asyncio.to_thread(flt.add, state, parsed)
            provenance = Provenance(
                backend=self.backend.name,
                model=self.backend.model,
                template_version=template.version,
                seed=seed,
                attributes=list(request.attributes),
                attempt=call,
            )
            for text, sim in zip(
                state.accepted[first_new:], state.similarity_to_base[first_new:], strict=True
            ):
                candidates.append(
                    Candidate(text=text, provenance=provenance, similarity_to_base=round(sim, 4))
                )
            if progress is not None:
                progress(min(len(candidates), request.n), calls)
        return GenerationResult(
            candidates=candidates[: request.n],
            dropped=dict(state.dropped),
            raw_count=raw_count,
            calls=calls,
            latency_s=round(time.perf_counter() - started, 4),
            backend=self.backend.name,
            model=self.backend.model,
            template_version=template.version,
            incomplete=incomplete,
        )
