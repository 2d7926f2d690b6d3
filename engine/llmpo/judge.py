"""An LLM as a stochastic comparator: "which of these two would this persona click?".

The prompt is a versioned file (``prompts/judge_<version>.txt``, placeholders
``{persona}``, ``{a}``, ``{b}``) so every logged comparison names the exact wording.
Order is randomised per call (LLMs prefer the first or second slot) and undone
before the verdict is returned. Any backend with
``complete(prompt, *, max_tokens, temperature, seed) -> str`` works;
:func:`generation_backend` adapts the generation package's async backends to it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any, Literal, Protocol

import numpy as np

from engine.generation.sync import GenerationNotAvailable as GenerationNotAvailable  # re-exported
from engine.generation.sync import configured_adapter

Verdict = Literal["a", "b", "tie"]


class Judge(Protocol):
    """Compares two candidates for one persona."""

    def judge(self, persona: str, a: str, b: str) -> Verdict: ...


class CompletionBackend(Protocol):
    """The one method the judge needs from a text model."""

    def complete(self, prompt: str, *, max_tokens: int, temperature: float, seed: int | None) -> str: ...


def load_prompt(version: str = "v1") -> str:
    """Text of ``prompts/judge_<version>.txt`` (ValueError naming the known versions if absent)."""
    folder = files("engine.llmpo") / "prompts"
    name = f"judge_{version}.txt"
    if not (folder / name).is_file():
        known = sorted(p.name for p in folder.iterdir() if p.name.startswith("judge_"))
        raise ValueError(f"unknown judge prompt version {version!r}; available: {known}")
    return (folder / name).read_text(encoding="utf-8")


_WORD = re.compile(r"\b(TIE|A|B)\b", re.IGNORECASE)


def parse_verdict(text: str) -> Verdict | None:
    """'A' / 'B' / 'TIE' from a completion (plain word or JSON {"choice": ...}); None if absent."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            choice = str(json.loads(stripped).get("choice", ""))
        except (json.JSONDecodeError, AttributeError):
            choice = ""
        stripped = choice or stripped
    m = _WORD.search(stripped)
    if m is None:
        return None
    return {"a": "a", "b": "b", "tie": "tie"}[m.group(1).lower()]  # type: ignore[return-value]


@dataclass
class LLMJudge:
    """Judge backed by a completion model; records the last call for the comparison log."""

    backend: CompletionBackend
    prompt_version: str = "v1"
    temperature: float = 0.7
    max_tokens: int = 8
    seed: int = 0
    calls: int = 0
    last: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.template = load_prompt(self.prompt_version)
        self.rng = np.random.default_rng(self.seed)

    def judge(self, persona: str, a: str, b: str) -> Verdict:
        swap = bool(self.rng.random() < 0.5)
        first, second = (b, a) if swap else (a, b)
        prompt = self.template.format(persona=persona, a=first, b=second)
        call_seed = self.seed * 1_000_003 + self.calls
        self.calls += 1
        raw = self.backend.complete(
            prompt, max_tokens=self.max_tokens, temperature=self.temperature, seed=call_seed
        )
        shown = parse_verdict(raw)
        verdict: Verdict = "tie" if shown is None else shown
        if swap and verdict != "tie":
            verdict = "b" if verdict == "a" else "a"
        self.last = {
            "prompt_version": self.prompt_version,
            "swapped": swap,
            "raw": raw,
            "parsed": shown is not None,
            "seed": call_seed,
        }
        return verdict


#: The judge asks for a JSON verdict where the backend can guide its output.
VERDICT_SCHEMA = {
    "type": "object",
    "properties": {"choice": {"enum": ["A", "B", "TIE"]}},
    "required": ["choice"],
}


def generation_backend() -> CompletionBackend:
    """The configured generation backend (ABENGINE_GEN_* settings) behind the judge's interface."""
    return configured_adapter("llmpo_judge", VERDICT_SCHEMA)
