"""Constrained field types shared by every wire model.

Strings, maps and lists are bounded so one request or event can never be
arbitrarily large; numbers must be finite so a poison value cannot reach a
learner.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

MAX_ID_LEN = 128
MAX_TEXT_LEN = 2000
MAX_ATTRIBUTES = 64
MAX_FEATURES = 256
MAX_VARIANTS = 64


class WireModel(BaseModel):
    """Base of every wire model: strict types, unknown fields rejected, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, str_strip_whitespace=False)


#: Identifiers: experiment, variant, decision, event ids. Safe in Redis keys and URLs.
Id = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_ID_LEN, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$")
]
#: Feature and attribute names.
Key = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]*$")]
#: A user id may be an opaque string from any system, but never contains control characters.
UserId = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")]
ShortText = Annotated[str, StringConstraints(max_length=256)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_LEN)]


def _finite(x: float) -> float:
    if not math.isfinite(x):
        raise ValueError("must be a finite number (no NaN or infinity)")
    return x


FiniteFloat = Annotated[float, AfterValidator(_finite)]
#: Integers a 64-bit consumer can read (orjson, Java, Go): a bigger one is an error naming the field.
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
AttributeValue = ShortText | bool | Int64 | FiniteFloat
Attributes = Annotated[dict[Key, AttributeValue], Field(max_length=MAX_ATTRIBUTES)]
Features = Annotated[dict[Key, FiniteFloat], Field(max_length=MAX_FEATURES)]
