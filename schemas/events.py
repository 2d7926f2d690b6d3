"""Feedback events (impressions, clicks, conversions) and dead-letter records.

Every event carries an ``event_id`` (the idempotency key: sending the same
event twice counts once), the ``decision_id`` it rewards, the ``experiment_id``
(the Kafka key, so an experiment's records share a partition) and when it
happened.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, Field

from schemas.common import FiniteFloat, Id, Text, UserId, WireModel


class EventBase(WireModel):
    event_id: Id
    decision_id: Id
    experiment_id: Id
    event_time: AwareDatetime
    user_id: UserId | None = None


class ImpressionEvent(EventBase):
    """The decided variant was shown."""

    type: Literal["impression"] = "impression"


class ClickEvent(EventBase):
    """The user clicked the variant."""

    type: Literal["click"] = "click"


class ConversionEvent(EventBase):
    """The user converted; ``value`` is in ``currency`` units."""

    type: Literal["conversion"] = "conversion"
    value: Annotated[FiniteFloat, Field(ge=0, le=1e9)] = 1.0
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"


Event = Annotated[ImpressionEvent | ClickEvent | ConversionEvent, Field(discriminator="type")]
EVENT_MODELS: dict[str, type[EventBase]] = {
    "impression": ImpressionEvent,
    "click": ClickEvent,
    "conversion": ConversionEvent,
}
#: Which topic (logical name) carries which event type.
TOPIC_OF_EVENT = {"impression": "impressions", "click": "clicks", "conversion": "conversions"}


class EventBatch(WireModel):
    """Body of ``POST /v1/events``: up to 1000 events of any type."""

    events: Annotated[list[Event], Field(min_length=1, max_length=1000)]


DeadLetterReason = Literal["invalid", "late", "unmatched", "foreign_topic", "error"]


class DeadLetter(WireModel):
    """A record the engine could not use, with why; written to the dead-letter topic."""

    reason: DeadLetterReason
    detail: Text
    source_topic: str
    partition: int
    offset: int
    key: str | None = None
    #: The original value, decoded as UTF-8 with replacement, truncated to 8 KiB.
    payload: Annotated[str, Field(max_length=8192)]
    received_at: AwareDatetime
