"""A synchronous ``complete(prompt, *, max_tokens, temperature, seed) -> str`` over the async
generation backends, for callers that write one text at a time from a worker thread (the LLM-PO
judge, the ranker's grounded insight writer). Never call it on a running event loop."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any


class GenerationNotAvailable(RuntimeError):
    """The generation package (the real LLM backends) cannot be imported, built or reached."""


@dataclass
class CompletionAdapter:
    """One chat message in, one completion out. ``schema`` (JSON Schema) asks for guided output
    where the backend supports it; empty means free text."""

    backend: Any
    template_version: str = "plain"
    schema: dict[str, Any] = field(default_factory=dict)

    def complete(self, prompt: str, *, max_tokens: int, temperature: float, seed: int | None) -> str:
        from engine.generation.backends.base import BackendError, Sampling
        from engine.generation.templates import ChatMessage, RenderedPrompt

        rendered = RenderedPrompt(
            template_version=self.template_version,
            messages=(ChatMessage(role="user", content=prompt),),
            schema=self.schema,
            k=1,
        )
        sampling = Sampling(temperature=temperature, max_tokens=max(max_tokens, 16))
        try:
            out = asyncio.run(self.backend.complete(rendered, n=1, seed=seed or 0, sampling=sampling))
        except BackendError as exc:
            raise GenerationNotAvailable(f"the generation backend failed: {exc}") from exc
        return out[0] if out else ""


def configured_adapter(
    template_version: str = "plain", schema: dict[str, Any] | None = None
) -> CompletionAdapter:
    """An adapter over the backend the ABENGINE_GEN_* settings describe (a backend of its own)."""
    try:
        from engine.generation.config import GenerationSettings
        from engine.generation.service import build_backend
    except ImportError as exc:
        raise GenerationNotAvailable(f"the LLM generation backend is not importable: {exc}") from exc
    try:
        return CompletionAdapter(build_backend(GenerationSettings()), template_version, schema or {})
    except (FileNotFoundError, ValueError) as exc:
        raise GenerationNotAvailable(f"could not build the generation backend: {exc}") from exc
