"""Validation of raw candidates: length, banned phrases, meta chatter, copies and near-duplicates.

Anything that fails is dropped and counted by reason; nothing unvalidated is ever served. Near-duplicates
are found by cosine similarity of unit-norm embeddings, so "Only today: 20% off" and "20% off, today only"
count as one idea, not two variants an experiment would waste traffic telling apart.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

#: Embeds texts into unit-norm rows (e.g. :meth:`engine.embeddings.Embedder.encode`).
EmbedFn = Callable[[Sequence[str]], np.ndarray]

_META_RE = re.compile(
    r"^(?:sure\b|here(?:'s| is| are)\b|certainly\b|of course\b|okay\b|ok\b|i hope\b|i can\b|i'm sorry|"
    r"as an ai\b|note:|rewrite\b|copy:|language:|tone:|audience:|length:|answer with\b|json\b)",
    re.IGNORECASE,
)
_TEMPLATE_ARTIFACT_RE = re.compile(r"\{\{|\}\}|\"variants\"|^\.\.\.$|<\|?[a-z_]+\|?>", re.IGNORECASE)


def normalise(text: str) -> str:
    """Case-, accent-, punctuation- and space-insensitive form, for exact-copy checks.

    >>> normalise("  Save 20%,  TODAY! ")
    'save 20 today'
    """
    text = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(re.findall(r"\w+", text))


def lexical_embedder(n_features: int = 2**14) -> EmbedFn:
    """Hashed character 3-4-gram vectors, unit norm: a model-free embedder for near-duplicate checks."""
    from sklearn.feature_extraction.text import HashingVectorizer

    vectorizer = HashingVectorizer(
        analyzer="char_wb", ngram_range=(3, 4), n_features=n_features, norm="l2", alternate_sign=False
    )

    def embed(texts: Sequence[str]) -> np.ndarray:
        return vectorizer.transform([normalise(t) for t in texts]).toarray().astype(np.float32)

    return embed


@dataclass(frozen=True, slots=True)
class Rules:
    """What a candidate must satisfy (from the request)."""

    min_chars: int
    max_chars: int
    banned_phrases: tuple[str, ...] = ()
    near_duplicate_cosine: float = 0.92

    def __post_init__(self) -> None:
        if not 1 <= self.min_chars <= self.max_chars:
            raise ValueError(f"need 1 <= min_chars <= max_chars, got {self.min_chars}, {self.max_chars}")
        if not 0.0 < self.near_duplicate_cosine <= 1.0:
            raise ValueError(f"near_duplicate_cosine must be in (0, 1], got {self.near_duplicate_cosine}")


@dataclass(slots=True)
class FilterState:
    """Accepted texts so far (with their embeddings) and drop counts, carried across backend calls."""

    base: str
    base_vector: np.ndarray
    accepted: list[str] = field(default_factory=list)
    similarity_to_base: list[float] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)


class CandidateFilter:
    """Drops invalid candidates; keeps the rest in arrival order.

    >>> f = CandidateFilter(lexical_embedder(), Rules(min_chars=5, max_chars=60))
    >>> state = f.start("Try our new running shoes")
    >>> f.add(state, ["Try our new running shoes!", "Sure, here are variants:", "Last day: shoes 20% off",
    ...               "Last day: shoes 20% off.", "Runners love them: try the new shoes", "x"])
    ['Last day: shoes 20% off', 'Runners love them: try the new shoes']
    >>> dict(sorted(state.dropped.items()))
    {'copy_of_base': 1, 'duplicate': 1, 'meta_text': 1, 'too_short': 1}
    """

    def __init__(self, embed: EmbedFn, rules: Rules) -> None:
        self.embed = embed
        self.rules = rules
        self._banned = [
            (p, re.compile(rf"(?<!\w){re.escape(p.casefold())}(?!\w)")) for p in rules.banned_phrases
        ]

    def start(self, base: str) -> FilterState:
        return FilterState(base=base, base_vector=self.embed([base])[0])

    def _static_reason(self, text: str, base_norm: str, seen: set[str]) -> str | None:
        if len(text) < self.rules.min_chars:
            return "too_short"
        if len(text) > self.rules.max_chars:
            return "too_long"
        if _META_RE.match(text) or _TEMPLATE_ARTIFACT_RE.search(text) or text.endswith(":"):
            return "meta_text"
        folded = text.casefold()
        if any(rx.search(folded) for _, rx in self._banned):
            return "banned_phrase"
        norm = normalise(text)
        if not norm:
            return "meta_text"
        if norm == base_norm:
            return "copy_of_base"
        if norm in seen:
            return "duplicate"
        return None

    def add(self, state: FilterState, raw: Sequence[str]) -> list[str]:
        """Validate ``raw`` against the rules, the base and all accepted so far; returns the new ones."""
        base_norm = normalise(state.base)
        seen = {normalise(t) for t in state.accepted}
        survivors: list[str] = []
        for text in raw:
            reason = self._static_reason(text, base_norm, seen)
            if reason is None:
                seen.add(normalise(text))
                survivors.append(text)
            else:
                state.dropped[reason] += 1
        if not survivors:
            return []
        vectors = self.embed(survivors)
        threshold = self.rules.near_duplicate_cosine
        new: list[str] = []
        for text, v in zip(survivors, vectors, strict=True):
            sim_base = float(v @ state.base_vector)
            if sim_base >= threshold:
                state.dropped["copy_of_base"] += 1
                continue
            if state.vectors and float(np.max(np.stack(state.vectors) @ v)) >= threshold:
                state.dropped["near_duplicate"] += 1
                continue
            state.accepted.append(text)
            state.similarity_to_base.append(sim_base)
            state.vectors.append(v)
            new.append(text)
        return new
