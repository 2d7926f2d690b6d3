"""Insights and opportunities in words: templates, or an LLM with grounded prompts and self-reflection.

Without an LLM, :func:`render_insights` / :func:`render_opportunities` state
the same facts from fixed templates. With a text backend (anything with
``complete(prompt, *, max_tokens, temperature, seed) -> str``, e.g. the
generation package's client), :class:`GroundedWriter` asks for a sentence whose
prompt quotes the treatments and names the attribute and its direction, then
checks every candidate against a rubric — first mechanical checks (it names the
attribute, quotes a treatment, states the right direction, is short, invents no
numbers), then a self-reflection prompt asking the model to grade its own text
— and falls back to the template when no candidate passes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class TextBackend(Protocol):
    def complete(self, prompt: str, *, max_tokens: int, temperature: float, seed: int | None) -> str: ...


def _human(name: str) -> str:
    return name.replace("_", " ")


def insight_sentence(ins: Mapping[str, Any], driver: Mapping[str, Any]) -> str:
    basis = "won" if ins["basis"] == "observed_ctr" else "is predicted to win"
    what = driver["description"].rstrip(".").lower()
    return (
        f'"{ins["best"]["text"]}" {basis} over "{ins["worst"]["text"]}" partly because it expresses '
        f"{driver['direction']} {_human(driver['attribute'])} ({what})."
    )


def opportunity_sentence(opp: Mapping[str, Any]) -> str:
    how = "only weakly" if opp["current_expression_z"] < 1.0 else "less than its impact warrants"
    return (
        f"Try a variant with more {_human(opp['attribute'])} "
        f"({opp['description'].rstrip('.').lower()}): it has positive impact historically, and even "
        f'the variant that expresses it most, "{opp["strongest_variant"]["text"]}", does so {how} '
        f"(learning potential {opp['learning_potential']}, conversion potential "
        f"{opp['conversion_potential']})."
    )


def render_insights(ins: Mapping[str, Any]) -> list[str]:
    """Template sentences, one per positive driver."""
    return [insight_sentence(ins, d) for d in ins["drivers"]]


def render_opportunities(opps: Mapping[str, Any]) -> list[str]:
    """Template sentences, one per opportunity."""
    return [opportunity_sentence(o) for o in opps["opportunities"]]


@dataclass(frozen=True)
class Fact:
    """What one sentence must say: attribute, direction, the quoted treatments."""

    attribute: str
    description: str
    direction: str  # "more" | "less"
    quotes: tuple[str, ...]
    template: str


@dataclass
class RubricResult:
    passed: bool
    failures: list[str] = field(default_factory=list)


def grounded_prompt(fact: Fact, kind: str) -> str:
    quoted = "\n".join(f'- "{q}"' for q in fact.quotes)
    task = (
        "Explain in one sentence why the first headline beat the second."
        if kind == "insight"
        else "Suggest in one sentence a new headline direction for this experiment."
    )
    return (
        f"You write for marketers running A/B tests of headlines.\n{task}\n"
        f"Treatments (quote at least one verbatim, in double quotes):\n{quoted}\n"
        f"Attribute: {_human(fact.attribute)} — {fact.description}\n"
        f"Direction: the winning/suggested text has {fact.direction} {_human(fact.attribute)}.\n"
        "Rules: name the attribute, state the direction, use only these facts, no numbers that are not in "
        "the treatments, at most 60 words.\nSentence:"
    )


def reflection_prompt(fact: Fact, candidate: str) -> str:
    return (
        "Grade the sentence against the rubric. Answer PASS or FAIL and one reason.\n"
        f"Rubric: (1) names the attribute '{_human(fact.attribute)}'; (2) says the text has "
        f"{fact.direction} of it; (3) quotes a treatment verbatim; (4) claims nothing beyond these facts.\n"
        f"Treatments: {'; '.join(fact.quotes)}\nSentence: {candidate}\nGrade:"
    )


def check_rubric(fact: Fact, text: str, max_words: int = 60) -> RubricResult:
    """Mechanical rubric: grounding and direction can be verified without a model."""
    low = text.lower()
    fails = []
    if _human(fact.attribute).lower() not in low:
        fails.append("does not name the attribute")
    if not any(q.lower() in low for q in fact.quotes):
        fails.append("quotes no treatment verbatim")
    if fact.direction not in low.split() and not (fact.direction == "less" and "fewer" in low):
        fails.append(f"does not state the direction '{fact.direction}'")
    if len(text.split()) > max_words:
        fails.append(f"longer than {max_words} words")
    allowed = set(re.findall(r"\d+", " ".join(fact.quotes)))
    invented = set(re.findall(r"\d+", text)) - allowed
    if invented:
        fails.append(f"numbers not in the treatments: {sorted(invented)}")
    return RubricResult(not fails, fails)


@dataclass
class GroundedWriter:
    """LLM sentences that pass the rubric and the model's own reflection, else the template."""

    backend: TextBackend
    candidates: int = 3
    temperature: float = 0.7
    max_tokens: int = 120
    seed: int = 0

    def write(self, fact: Fact, kind: str) -> dict[str, Any]:
        rejected = []
        for k in range(self.candidates):
            text = self.backend.complete(
                grounded_prompt(fact, kind),
                max_tokens=self.max_tokens,
                temperature=self.temperature,
                seed=self.seed + k,
            ).strip()
            rubric = check_rubric(fact, text)
            if rubric.passed:
                grade = self.backend.complete(
                    reflection_prompt(fact, text), max_tokens=30, temperature=0.0, seed=self.seed
                )
                if grade.strip().upper().startswith("PASS"):
                    return {"text": text, "source": "llm", "rejected": rejected}
                rubric = RubricResult(False, [f"self-reflection: {grade.strip()[:80]}"])
            rejected.append({"text": text, "failures": rubric.failures})
        return {"text": fact.template, "source": "template", "rejected": rejected}

    def insights(self, ins: Mapping[str, Any]) -> list[dict[str, Any]]:
        quotes = (ins["best"]["text"], ins["worst"]["text"])
        return [
            self.write(
                Fact(d["attribute"], d["description"], d["direction"], quotes, insight_sentence(ins, d)),
                "insight",
            )
            for d in ins["drivers"]
        ]

    def opportunities(self, opps: Mapping[str, Any], variants: Sequence[str]) -> list[dict[str, Any]]:
        return [
            self.write(
                Fact(o["attribute"], o["description"], "more", tuple(variants), opportunity_sentence(o)),
                "opportunity",
            )
            for o in opps["opportunities"]
        ]
