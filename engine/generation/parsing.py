"""Lenient parsing of model output into candidate strings.

Small models rarely follow a format exactly: they wrap JSON in prose or code fences, number their lines,
quote each line, or answer with a bare string. Parsing accepts all of those; validation decides what is
good enough to serve.
"""

from __future__ import annotations

import json
import re
from typing import Any

_FENCE_RE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_LIST_PREFIX_RE = re.compile(
    r"^\s*(?:[-*•]+|\(?\d{1,2}[.):\]]|(?:variant|version|option|headline)\s*\d*\s*[:.)-])\s*", re.IGNORECASE
)
_QUOTES = "\"'“”‘’«»`"
#: 'Softening with urgency: "Take advantage of ..."' -> the quoted part.
_LABELLED_QUOTE_RE = re.compile(r"^[^\"“]{1,60}:\s*[\"“](?P<text>[^\"”]+)[\"”]\W*$")
_JSON_KEYS = ("variants", "variant", "candidates", "headlines", "texts", "options", "text", "copy")


def _strings_from_json(value: Any) -> list[str] | None:
    """Strings inside a decoded JSON answer: a list, or an object with one of the usual keys."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        out: list[str] = []
        for item in value:
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, dict):
                out.extend(_strings_from_json(item) or [])
        return out
    if isinstance(value, dict):
        for key in _JSON_KEYS:
            if key in value:
                return _strings_from_json(value[key])
        strings = [v for v in value.values() if isinstance(v, str)]
        return strings or None
    return None


def _json_candidates(text: str) -> list[str] | None:
    blocks = [m.group(1) for m in _FENCE_RE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for block in blocks:
        for start, char in enumerate(block):
            if char not in "[{":
                continue
            try:
                value, _ = decoder.raw_decode(block, start)
            except json.JSONDecodeError:
                continue
            strings = _strings_from_json(value)
            if strings is not None:
                return strings
    return None


def clean_line(line: str) -> str:
    """Strip list markers, labels and wrapping quotes from one candidate line.

    >>> clean_line('2. "Only 3 left: grab yours today!"')
    'Only 3 left: grab yours today!'
    >>> clean_line('With urgency: "Last pairs in your size"')
    'Last pairs in your size'
    """
    line = _LIST_PREFIX_RE.sub("", line.strip()).strip()
    labelled = _LABELLED_QUOTE_RE.match(line)
    if labelled:
        line = labelled["text"].strip()
    while len(line) >= 2 and line[0] in _QUOTES and line[-1] in _QUOTES:
        line = line[1:-1].strip()
    return " ".join(line.split())


def parse_candidates(text: str) -> list[str]:
    """Every candidate string in a model answer, in order, cleaned; may be empty.

    >>> parse_candidates('Sure! {"variants": ["Buy now", "Last chance"]}')
    ['Buy now', 'Last chance']
    >>> parse_candidates('1. Buy now\\n2. "Last chance"')
    ['Buy now', 'Last chance']
    """
    strings = _json_candidates(text)
    if strings is None:
        body = _FENCE_RE.sub(lambda m: m.group(1), text)
        strings = body.splitlines()
    out = [clean_line(s) for s in strings]
    return [s for s in out if s and s.strip("{}[],:\"' ")]
