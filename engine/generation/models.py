"""Wire models of variant generation: what a marketer asks for, and what comes back.

Every free-text field is bounded, so a prompt can never grow past what the template and the model's
context were sized for; ``extra="forbid"`` turns a misspelt field into a 400 rather than a silent default.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

#: Attribute names are identifiers (``social_proof``), so they can be echoed into a prompt safely.
ATTRIBUTE_RE = r"^[a-z][a-z0-9_]{0,39}$"
Attribute = Annotated[
    str,
    BeforeValidator(
        lambda v: v.strip().lower().replace(" ", "_").replace("-", "_") if isinstance(v, str) else v
    ),
    StringConstraints(pattern=ATTRIBUTE_RE),
]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
BannedPhrase = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]

#: Built-in meaning of the common attributes; the prompt explains each one it is asked for.
KNOWN_ATTRIBUTES: dict[str, str] = {
    "urgency": "a reason to act now, such as a deadline or limited stock",
    "social_proof": "evidence that other people already use or like it",
    "curiosity": "an open question or a teaser that makes the reader want to know more",
    "scarcity": "limited availability",
    "benefit": "the concrete benefit to the reader",
    "personalization": "speaks directly to the reader (you/your)",
    "exclusivity": "something only some people get",
    "authority": "an expert, award or trusted source behind it",
    "simplicity": "plain, short and easy to read",
    "humor": "a light, playful touch",
}

FailureReason = Literal[
    "timeout",
    "unreachable",
    "server_error",
    "circuit_open",
    "bad_response",
    "bad_request",
    "overloaded",
    "model_error",
]
DropReason = Literal[
    "unparseable",
    "too_short",
    "too_long",
    "banned_phrase",
    "copy_of_base",
    "duplicate",
    "near_duplicate",
    "meta_text",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GenerationRequest(_Strict):
    """One call: write ``n`` variants of ``base`` that carry ``attributes``."""

    base: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)] = Field(
        description="The current copy (headline, subject line, banner text) the variants rewrite."
    )
    goal: ShortText | None = Field(None, description="What the copy should achieve, e.g. 'more sign-ups'.")
    attributes: list[Attribute] = Field(
        default_factory=list, max_length=8, description="Marketing attributes to carry (urgency...)."
    )
    audience: ShortText | None = Field(None, description="Audience segment the copy is written for.")
    tone: ShortText | None = Field(None, description="Tone of voice, e.g. 'friendly', 'formal'.")
    language: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")] = Field(
        "en", description="BCP-47 language tag of the output."
    )
    min_chars: int = Field(10, ge=1, le=1000, description="Shortest acceptable variant, in characters.")
    max_chars: int = Field(120, ge=10, le=1000, description="Longest acceptable variant, in characters.")
    n: int = Field(4, ge=1, le=16, description="How many accepted candidates to return (at most).")
    banned_phrases: list[BannedPhrase] = Field(
        default_factory=list, max_length=50, description="Case-insensitive phrases no candidate may contain."
    )
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="Seed for reproducible sampling.")
    template: Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,40}$")] | None = Field(
        None, description="Prompt template version (a file in engine/generation/prompts); default newest."
    )
    add_as_variants: bool = Field(False, description="Add accepted candidates to the experiment as variants.")
    test_top_k: int | None = Field(
        None,
        ge=1,
        le=16,
        description="With add_as_variants: add only the K candidates the content ranker would test first "
        "(predicted score balanced with diversity by maximal marginal relevance); the rest are returned, "
        "not added.",
    )
    diversity: float = Field(
        0.3, ge=0.0, le=1.0, description="Weight of diversity against predicted score for test_top_k."
    )

    @field_validator("attributes")
    @classmethod
    def _unique_attributes(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _lengths_consistent(self) -> GenerationRequest:
        if self.min_chars > self.max_chars:
            raise ValueError(f"min_chars ({self.min_chars}) must not exceed max_chars ({self.max_chars})")
        if self.test_top_k is not None and not self.add_as_variants:
            raise ValueError("test_top_k chooses which candidates to add: it needs add_as_variants")
        return self


class Provenance(_Strict):
    """Where a candidate came from, so an experiment can always say which model and prompt wrote a variant."""

    backend: str
    model: str
    template_version: str
    seed: int | None
    attributes: list[str]
    attempt: int = Field(description="Which backend call (0-based) produced it.")


class Candidate(_Strict):
    """One accepted variant text with its provenance."""

    text: str
    provenance: Provenance
    similarity_to_base: float = Field(description="Cosine similarity of its embedding to the base copy's.")
    variant_id: str | None = Field(None, description="Id of the variant it became, when it was added.")
    ranker_score: float | None = Field(
        None, description="The content ranker's relative score (test_top_k only; compare within one call)."
    )
    test_priority: int | None = Field(
        None, description="Pick order among the test_top_k candidates added (1 = first); None if not picked."
    )


class GenerationResult(_Strict):
    """Accepted candidates, and the count of raw outputs dropped per validation reason (never served)."""

    candidates: list[Candidate]
    dropped: dict[str, int] = Field(default_factory=dict)
    raw_count: int = Field(description="Raw candidate strings the model produced before validation.")
    calls: int = Field(description="Backend calls made.")
    latency_s: float
    backend: str
    model: str
    template_version: str
    incomplete: str | None = Field(
        None, description="Why fewer than n candidates came back although some did (a later call failed)."
    )


def slug(text: str, max_len: int = 40) -> str:
    """A variant-id friendly slug of ``text`` (lowercase ascii words joined by ``-``).

    >>> slug("Save 20% — today only!")
    'save-20-today-only'
    """
    words = re.findall(r"[a-z0-9]+", text.lower())
    return "-".join(words)[:max_len].strip("-") or "variant"
