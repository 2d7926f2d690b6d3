"""Decision requests, decisions, and the decision log record."""

from __future__ import annotations

from typing import Annotated

from pydantic import AwareDatetime, Field

from schemas.common import Attributes, Features, Id, Text, UserId, WireModel


class DecisionRequest(WireModel):
    """Body of ``POST /v1/experiments/{id}/decide``."""

    user_id: UserId
    #: Optional; when present it must equal the experiment id in the path.
    experiment_id: Id | None = None
    attributes: Attributes = Field(default_factory=dict)
    #: Free text describing the request: query, page, campaign.
    context: Text | None = None
    features: Features = Field(default_factory=dict)


class Decision(WireModel):
    """What the engine answers: the variant to show and how it was chosen."""

    decision_id: Id
    experiment_id: Id
    variant_id: Id
    content: Text
    propensity: Annotated[float, Field(gt=0, le=1)]
    allocator: str
    model_version: Annotated[int, Field(ge=0)]
    timestamp: AwareDatetime


class DecisionLog(Decision):
    """A decision as logged to the decisions topic: the decision plus what the learner needs."""

    user_id: UserId
    attributes: Attributes = Field(default_factory=dict)
    context: Text | None = None
    features: Features = Field(default_factory=dict)
