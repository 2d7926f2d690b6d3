"""The declared user portrait of an experiment, and validation of request features against it.

Validation runs before anything is encoded so bad input is rejected with an error that names the field
(the HTTP layer maps :class:`ValueError` to 422) instead of silently becoming a wrong state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.types import FeatureValue

MAX_TEXT_CHARS = 2000
MAX_CATEGORY_CHARS = 256


@dataclass(frozen=True)
class FeatureSchema:
    """Which portrait fields an experiment accepts and how each is encoded.

    ``numeric`` maps a name to ``(center, scale)``; it encodes as ``clip((x - center) / scale, -5, 5)``.
    ``categorical`` maps a name to its known levels (one-hot; unknown levels encode as all zeros).
    ``hashed`` lists high-cardinality categorical fields, hashed with a sign hash into ``hash_dim`` buckets.

    >>> s = FeatureSchema(numeric={"age": (40.0, 10.0)}, categorical={"channel": ("web", "phone")})
    >>> s.dim
    3
    """

    numeric: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    categorical: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    hashed: tuple[str, ...] = ()
    hash_dim: int = 16
    max_text_chars: int = MAX_TEXT_CHARS

    def __post_init__(self) -> None:
        names = [*self.numeric, *self.categorical, *self.hashed]
        if len(set(names)) != len(names):
            raise ValueError("a feature name appears in more than one of numeric/categorical/hashed")
        for name, (_, scale) in self.numeric.items():
            if not scale > 0:
                raise ValueError(f"numeric feature {name!r}: scale must be > 0, got {scale}")
        for name, levels in self.categorical.items():
            if len(levels) == 0 or len(set(levels)) != len(levels):
                raise ValueError(f"categorical feature {name!r}: levels must be non-empty and unique")
        if self.hashed and self.hash_dim < 1:
            raise ValueError(f"hash_dim must be >= 1, got {self.hash_dim}")

    @property
    def names(self) -> frozenset[str]:
        return frozenset([*self.numeric, *self.categorical, *self.hashed])

    @property
    def dim(self) -> int:
        return (
            len(self.numeric)
            + sum(len(v) for v in self.categorical.values())
            + (self.hash_dim if self.hashed else 0)
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "numeric": {k: list(v) for k, v in self.numeric.items()},
            "categorical": {k: list(v) for k, v in self.categorical.items()},
            "hashed": list(self.hashed),
            "hash_dim": self.hash_dim,
            "max_text_chars": self.max_text_chars,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> FeatureSchema:
        return cls(
            numeric={k: (float(v[0]), float(v[1])) for k, v in dict(d.get("numeric", {})).items()},  # type: ignore[arg-type]
            categorical={k: tuple(v) for k, v in dict(d.get("categorical", {})).items()},  # type: ignore[arg-type]
            hashed=tuple(d.get("hashed", ())),  # type: ignore[arg-type]
            hash_dim=int(d.get("hash_dim", 16)),  # type: ignore[arg-type]
            max_text_chars=int(d.get("max_text_chars", MAX_TEXT_CHARS)),  # type: ignore[arg-type]
        )


def validate_features(
    schema: FeatureSchema,
    attributes: Mapping[str, FeatureValue] | None = None,
    features: Mapping[str, float] | None = None,
    context_text: str | None = None,
) -> None:
    """Raise :class:`ValueError` naming the first bad field; return None when the request is usable.

    Rejects unknown names, wrong types (a number where a category is declared and vice versa, bools as
    numbers), NaN/inf and oversized text.

    >>> s = FeatureSchema(numeric={"age": (40.0, 10.0)})
    >>> validate_features(s, features={"age": float("nan")})
    Traceback (most recent call last):
    ...
    ValueError: features.age: must be a finite number, got nan
    """
    for where, values in (("attributes", attributes or {}), ("features", features or {})):
        for name, value in values.items():
            loc = f"{where}.{name}"
            if name not in schema.names:
                raise ValueError(f"{loc}: unknown feature (declared: {sorted(schema.names)})")
            if name in schema.numeric:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"{loc}: must be a number, got {type(value).__name__}")
                if not math.isfinite(float(value)):
                    raise ValueError(f"{loc}: must be a finite number, got {value}")
            else:
                if not isinstance(value, str | int | bool) or isinstance(value, float):
                    raise ValueError(f"{loc}: must be a category (str/int/bool), got {type(value).__name__}")
                if isinstance(value, str) and len(value) > MAX_CATEGORY_CHARS:
                    raise ValueError(f"{loc}: category longer than {MAX_CATEGORY_CHARS} characters")
    if context_text is not None:
        if not isinstance(context_text, str):
            raise ValueError(f"context_text: must be a string, got {type(context_text).__name__}")
        if len(context_text) > schema.max_text_chars:
            raise ValueError(
                f"context_text: {len(context_text)} characters, over the limit of {schema.max_text_chars}"
            )
