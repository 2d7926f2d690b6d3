"""Stylistic features of a headline: cheap, interpretable surface cues.

Embeddings miss some surface properties that move click-through on their own
(length, digits, questions, direct address); these complement them in the
combined ranker. Each feature is a plain function of the text so it can be
read, tested and extended.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

_WORD = re.compile(r"[A-Za-z0-9']+")
_SECOND_PERSON = {"you", "your", "you're", "yours", "yourself", "you'll", "you've"}
_FIRST_PERSON = {"i", "me", "my", "we", "our", "us", "i'm", "i've"}
_DEMONSTRATIVE = {"this", "these", "that", "here's", "what", "why", "how", "who"}
_SUPERLATIVE = {"best", "worst", "most", "least", "ever", "never", "always", "every", "only", "all"}
_NEGATIVE = {"not", "no", "never", "don't", "can't", "won't", "isn't", "didn't", "doesn't", "nothing"}


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def _share(words: list[str], vocab: set[str]) -> float:
    return float(sum(w in vocab for w in words) > 0)


STYLE_FEATURES: dict[str, Callable[[str], float]] = {
    "log_chars": lambda t: float(np.log1p(len(t))),
    "n_words": lambda t: float(len(_words(t))),
    "has_digit": lambda t: float(bool(re.search(r"\d", t))),
    "starts_with_digit": lambda t: float(bool(re.match(r"\s*\d", t))),
    "question": lambda t: float("?" in t),
    "exclamation": lambda t: float("!" in t),
    "quote": lambda t: float(bool(re.search(r"[\"“”‘’]|(^|\s)'", t))),
    "colon_or_dash": lambda t: float(bool(re.search(r"[:—–]| - ", t))),
    "ellipsis": lambda t: float("..." in t or "…" in t),
    "second_person": lambda t: _share(_words(t), _SECOND_PERSON),
    "first_person": lambda t: _share(_words(t), _FIRST_PERSON),
    "demonstrative": lambda t: _share(_words(t), _DEMONSTRATIVE),
    "superlative": lambda t: _share(_words(t), _SUPERLATIVE),
    "negation": lambda t: _share(_words(t), _NEGATIVE),
    "allcaps_words": lambda t: float(sum(len(w) > 1 and w.isupper() for w in re.findall(r"[A-Za-z]+", t))),
    "title_case_share": lambda t: float(np.mean([w[:1].isupper() for w in t.split()] or [0.0])),
    "sentences": lambda t: float(max(1, len(re.findall(r"[.!?](\s|$)", t)))),
}


def style_matrix(texts: Sequence[str]) -> np.ndarray:
    """One row of :data:`STYLE_FEATURES` per text (float64, shape (n, k)).

    >>> style_matrix(["Why You Need This?"])[0, list(STYLE_FEATURES).index("question")]
    np.float64(1.0)
    """
    return np.array([[f(t) for f in STYLE_FEATURES.values()] for t in texts], dtype=np.float64).reshape(
        len(texts), len(STYLE_FEATURES)
    )
