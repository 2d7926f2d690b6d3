"""Experiments and their variants."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, JsonValue, model_validator

from schemas.common import (
    MAX_VARIANTS,
    FiniteFloat,
    Id,
    Key,
    ShortText,
    Text,
    WireModel,
)

#: Allocators an experiment can name; ``engine.allocators.ALLOCATORS`` implements each.
AllocatorName = Literal[
    "fixed_split", "thompson", "classical_ab", "linucb", "lin_ts", "reinforce", "actor_critic", "llm_po"
]
#: Options of the allocator: scalars, or JSON objects for structured options (e.g. the actor-critic's
#: ``config`` and the perception ``schema``); the body-size limit bounds their depth and size.
AllocatorConfig = Annotated[
    dict[Key, FiniteFloat | int | bool | ShortText | dict[Key, JsonValue]], Field(max_length=32)
]

THIRTY_DAYS_S = 30 * 86400.0


class Variant(WireModel):
    """One piece of content under test."""

    id: Id
    text: Annotated[Text, Field(min_length=1)]
    metadata: Annotated[dict[Key, ShortText], Field(max_length=32)] = Field(default_factory=dict)


class ExperimentSpec(WireModel):
    """What a client sends to create an experiment (``POST /v1/experiments``)."""

    id: Id
    name: ShortText = ""
    description: Text = ""
    variants: Annotated[list[Variant], Field(min_length=1, max_length=MAX_VARIANTS)]
    allocator: AllocatorName = "thompson"
    allocator_config: AllocatorConfig = Field(default_factory=dict)
    #: Traffic weights for ``fixed_split`` (variant id -> weight); uniform when omitted.
    split: Annotated[dict[Id, FiniteFloat], Field(max_length=MAX_VARIANTS)] | None = None
    #: Events later than this after their decision are late: counted and dead-lettered.
    attribution_window_s: Annotated[float, Field(gt=0, le=THIRTY_DAYS_S)] = 86400.0
    #: Reward of a decision = click + conversion_weight * conversion value.
    conversion_weight: Annotated[float, Field(ge=0, le=1e6)] = 0.0
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    #: Seed the allocator with the content ranker's predicted scores (Thompson pseudo-counts).
    warm_start: bool = False

    @model_validator(mode="after")
    def _check(self) -> ExperimentSpec:
        ids = [v.id for v in self.variants]
        if len(set(ids)) != len(ids):
            raise ValueError("variants: ids must be unique")
        if self.split is not None:
            if set(self.split) != set(ids):
                raise ValueError("split: keys must be exactly the variant ids")
            if any(w < 0 for w in self.split.values()) or sum(self.split.values()) <= 0:
                raise ValueError("split: weights must be >= 0 with a positive sum")
        return self


class Experiment(ExperimentSpec):
    """An experiment as stored in the registry."""

    status: Literal["running", "stopped"] = "running"
    created_at: AwareDatetime
    updated_at: AwareDatetime
    revision: Annotated[int, Field(ge=0)] = 0
    #: Set by the engine when ``warm_start``: (alpha, beta) pseudo-counts per variant from the ranker.
    prior: dict[Id, tuple[FiniteFloat, FiniteFloat]] | None = None

    @classmethod
    def from_spec(cls, spec: ExperimentSpec, now: datetime) -> Experiment:
        return cls(**spec.model_dump(), created_at=now, updated_at=now)

    @property
    def variant_ids(self) -> tuple[str, ...]:
        return tuple(v.id for v in self.variants)
