"""JSON Schema export of the wire contract for producers in other languages."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, TypeAdapter

from schemas.decisions import Decision, DecisionLog, DecisionRequest
from schemas.events import ClickEvent, ConversionEvent, DeadLetter, Event, EventBatch, ImpressionEvent
from schemas.experiments import Experiment, ExperimentSpec, Variant

WIRE_MODELS: dict[str, type[BaseModel]] = {
    "variant": Variant,
    "experiment_spec": ExperimentSpec,
    "experiment": Experiment,
    "decision_request": DecisionRequest,
    "decision": Decision,
    "decision_log": DecisionLog,
    "impression_event": ImpressionEvent,
    "click_event": ClickEvent,
    "conversion_event": ConversionEvent,
    "event_batch": EventBatch,
    "dead_letter": DeadLetter,
}


def export_json_schemas(directory: Path) -> list[Path]:
    """Write ``<name>.schema.json`` for every wire model (and ``event`` for the union)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    schemas = {name: model.model_json_schema() for name, model in WIRE_MODELS.items()}
    schemas["event"] = TypeAdapter(Event).json_schema()
    for name, schema in schemas.items():
        schema.setdefault("$schema", "https://json-schema.org/draft/2020-12/schema")
        schema.setdefault("$id", f"https://abengine.dev/schemas/{name}.schema.json")
        path = directory / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
