"""The wire contract rejects what it must and exports JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from engine.cli import main
from schemas import ClickEvent, ConversionEvent, DecisionRequest, EventBatch, ExperimentSpec, ImpressionEvent

EVENT = {"event_id": "e1", "decision_id": "d1", "experiment_id": "x", "event_time": "2026-01-01T00:00:00Z"}


def fields(exc: ValidationError) -> set[str]:
    return {".".join(str(p) for p in e["loc"]) for e in exc.errors()}


def test_valid_events_parse_from_json() -> None:
    assert ImpressionEvent.model_validate_json(json.dumps(EVENT)).type == "impression"
    conv = ConversionEvent.model_validate_json(json.dumps({**EVENT, "type": "conversion", "value": 12.5}))
    assert conv.value == 12.5 and conv.currency == "USD"


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"event_id": ""}, "event_id"),
        ({"event_id": "a b"}, "event_id"),
        ({"decision_id": 5}, "decision_id"),
        ({"event_time": "2026-01-01T00:00:00"}, "event_time"),  # naive time: ambiguous
        ({"extra": 1}, "extra"),
        ({"experiment_id": "x" * 200}, "experiment_id"),
    ],
)
def test_bad_events_name_the_field(patch: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        ClickEvent.model_validate_json(json.dumps({**EVENT, **patch}))
    assert field in fields(info.value)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-1", "1e12"])
def test_conversion_value_must_be_finite_and_bounded(value: str) -> None:
    raw = json.dumps({**EVENT, "type": "conversion"})[:-1] + f', "value": {value}}}'
    with pytest.raises(ValidationError) as info:
        ConversionEvent.model_validate_json(raw)
    assert "value" in fields(info.value)


def test_missing_field_is_named() -> None:
    body = dict(EVENT)
    del body["decision_id"]
    with pytest.raises(ValidationError) as info:
        ImpressionEvent.model_validate_json(json.dumps(body))
    assert fields(info.value) == {"decision_id"}


def test_strict_types_no_coercion() -> None:
    with pytest.raises(ValidationError) as info:
        DecisionRequest.model_validate_json(json.dumps({"user_id": 123}))
    assert "user_id" in fields(info.value)


def test_decision_request_bounds() -> None:
    too_many = {f"f{i}": 1.0 for i in range(300)}
    with pytest.raises(ValidationError) as info:
        DecisionRequest.model_validate_json(json.dumps({"user_id": "u", "features": too_many}))
    assert "features" in fields(info.value)
    with pytest.raises(ValidationError):
        DecisionRequest.model_validate_json(json.dumps({"user_id": "u", "context": "x" * 5000}))
    with pytest.raises(ValidationError):
        DecisionRequest.model_validate_json(json.dumps({"user_id": "bad\u0000id"}))


def test_experiment_spec_checks_variants_and_split() -> None:
    base = {"id": "exp", "variants": [{"id": "a", "text": "A"}, {"id": "b", "text": "B"}]}
    assert ExperimentSpec.model_validate(base).allocator == "thompson"
    with pytest.raises(ValidationError, match="unique"):
        ExperimentSpec.model_validate(
            {**base, "variants": [{"id": "a", "text": "A"}, {"id": "a", "text": "B"}]}
        )
    with pytest.raises(ValidationError, match="split"):
        ExperimentSpec.model_validate({**base, "allocator": "fixed_split", "split": {"a": 1.0}})
    with pytest.raises(ValidationError) as info:
        ExperimentSpec.model_validate({**base, "allocator": "nope"})
    assert "allocator" in fields(info.value)


def test_event_batch_is_a_discriminated_union() -> None:
    batch = EventBatch.model_validate_json(
        json.dumps(
            {
                "events": [
                    {**EVENT, "type": "impression"},
                    {**EVENT, "type": "click"},
                    {**EVENT, "type": "conversion", "value": 3},
                ]
            }
        )
    )
    assert [type(e).__name__ for e in batch.events] == ["ImpressionEvent", "ClickEvent", "ConversionEvent"]
    with pytest.raises(ValidationError):
        EventBatch.model_validate_json(json.dumps({"events": [{**EVENT, "type": "hover"}]}))


def test_schemas_export_writes_valid_json_schema(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["schemas", "export", str(tmp_path)])
    assert result.exit_code == 0, result.output
    names = {p.name for p in tmp_path.iterdir()}
    assert {"click_event.schema.json", "decision_request.schema.json", "event.schema.json"} <= names
    schema = json.loads((tmp_path / "conversion_event.schema.json").read_text())
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) >= {"event_id", "decision_id", "experiment_id", "event_time"}
