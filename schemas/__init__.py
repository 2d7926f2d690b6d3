"""The wire contract: pydantic v2 models of everything that crosses HTTP or Kafka."""

from schemas.decisions import Decision, DecisionLog, DecisionRequest
from schemas.events import (
    EVENT_MODELS,
    TOPIC_OF_EVENT,
    ClickEvent,
    ConversionEvent,
    DeadLetter,
    Event,
    EventBase,
    EventBatch,
    ImpressionEvent,
)
from schemas.experiments import AllocatorName, Experiment, ExperimentSpec, Variant

__all__ = [
    "EVENT_MODELS",
    "TOPIC_OF_EVENT",
    "AllocatorName",
    "ClickEvent",
    "ConversionEvent",
    "DeadLetter",
    "Decision",
    "DecisionLog",
    "DecisionRequest",
    "Event",
    "EventBase",
    "EventBatch",
    "Experiment",
    "ExperimentSpec",
    "ImpressionEvent",
    "Variant",
]
