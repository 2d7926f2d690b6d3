"""The interface every text backend implements, and the errors it raises.

A backend turns one rendered prompt into ``n`` raw completions. It knows nothing about variants,
validation or experiments, so a new model server is one small class.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar

from engine.generation.models import FailureReason
from engine.generation.templates import RenderedPrompt


class BackendError(Exception):
    """A backend call failed; ``reason`` is a short, metric-friendly label."""

    def __init__(
        self, reason: FailureReason, detail: str, *, retryable: bool = False, status: int | None = None
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: FailureReason = reason
        self.detail = detail
        self.retryable = retryable
        #: HTTP status when a server answered with an error.
        self.status = status


@dataclass(frozen=True, slots=True)
class Sampling:
    """Sampling parameters of one call."""

    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 256

    def __post_init__(self) -> None:
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature must be in [0, 2], got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")


class TextBackend(abc.ABC):
    """Produces raw completions for a prompt."""

    #: Label in provenance and metrics.
    name: ClassVar[str]
    #: Most variants worth asking for in one prompt (a tiny model manages one).
    max_variants_per_prompt: int = 16
    #: Template family used when a request names no template (``prompts/<family>_vN.yaml``, newest N).
    template_family: str = "variants"

    @property
    @abc.abstractmethod
    def model(self) -> str:
        """Name of the model that writes (known after the first call for servers that list models)."""

    @abc.abstractmethod
    async def complete(self, prompt: RenderedPrompt, *, n: int, seed: int, sampling: Sampling) -> list[str]:
        """``n`` completions of ``prompt``; sample ``i`` is reproducible from ``seed``."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections, threads or model memory."""
