"""Perception: turn (user portrait, request context, user memory, variant texts) into actor inputs.

Each modality is an :class:`~engine.perception.encoders.Encoder`;
:class:`~engine.perception.fusion.StateBuilder` concatenates them, so a new feature source (an image
embedding, say) is a new encoder, not a rewrite.
"""

from engine.perception.encoders import (
    ContextTextEncoder,
    Encoder,
    MemorySummaryEncoder,
    PortraitEncoder,
    VariantEncoder,
)
from engine.perception.fusion import StateBuilder
from engine.perception.schema import FeatureSchema, validate_features

__all__ = [
    "ContextTextEncoder",
    "Encoder",
    "FeatureSchema",
    "MemorySummaryEncoder",
    "PortraitEncoder",
    "StateBuilder",
    "VariantEncoder",
    "validate_features",
]
