"""The decide path's encoding and partitioning, broker-free.

``ServingState.decide`` returns plain dicts that the API dumps with orjson (cheaper than two pydantic
models); these tests hold that shortcut to the wire contract: every valid request's answer and log
record validate as ``schemas.Decision`` / ``schemas.DecisionLog``. The producer's cached partitioner
must pick the partition aiokafka's default one would, or a client's events would land on another
partition than their decisions.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.metrics import Sensor
from engine.serving import ServingState, fresh_allocator
from producers.kafka import KeyPartitioner
from schemas import Decision, DecisionLog, DecisionRequest, Experiment, ExperimentSpec

keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,20}", fullmatch=True)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
attribute_values = st.one_of(
    st.text(max_size=40), st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1), finite
)
requests = st.builds(
    dict,
    user_id=st.text(
        st.characters(exclude_categories=["Cc", "Cs"]), min_size=1, max_size=60
    ),  # JSON carries no lone surrogate
    attributes=st.dictionaries(keys, attribute_values, max_size=5),
    context=st.none() | st.text(max_size=80),
    features=st.dictionaries(keys, finite, max_size=5),
)


def serving(allocator: str) -> ServingState:
    variants = [{"id": "a", "text": "Ä ☃"}, {"id": "b", "text": "B"}]
    spec = ExperimentSpec.model_validate({"id": "exp-1", "allocator": allocator, "variants": variants})
    exp = Experiment.from_spec(spec, datetime.now(UTC))
    state = ServingState(None, None, Sensor())  # type: ignore[arg-type]  # decide needs no store
    state.experiments[exp.id], state.allocators[exp.id] = exp, fresh_allocator(exp, seed=1)
    return state


@pytest.mark.parametrize("allocator", ["thompson", "fixed_split"])  # they take any attributes
@settings(max_examples=60, deadline=None)
@given(body=requests)
def test_answer_and_record_are_valid_wire_models(allocator: str, body: dict) -> None:
    request = DecisionRequest.model_validate_json(orjson.dumps(body))
    served = serving(allocator).decide("exp-1", request)
    answer = Decision.model_validate_json(served.answer_json())
    record = DecisionLog.model_validate_json(served.record_json())
    assert answer.variant_id in ("a", "b") and record.decision_id == answer.decision_id
    assert record.model_dump(include=set(Decision.model_fields)) == answer.model_dump()
    assert (record.user_id, record.attributes, record.context, record.features) == (
        request.user_id,
        request.attributes,
        request.context,
        request.features,
    )
    assert served.answer_json() == answer.model_dump_json().encode()  # same bytes as pydantic's


def test_decision_ids_are_unique_128_bit_hex() -> None:
    state = serving("thompson")
    ids = {state.decide("exp-1", DecisionRequest(user_id="u")).answer["decision_id"] for _ in range(2000)}
    assert len(ids) == 2000 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


@settings(max_examples=300, deadline=None)
@given(key=st.binary(min_size=1, max_size=80), n=st.integers(min_value=1, max_value=64))
def test_cached_partitioner_agrees_with_aiokafkas_default(key: bytes, n: int) -> None:
    cached, default = KeyPartitioner(max_keys=8), DefaultPartitioner()
    parts = list(range(n))
    for _ in range(2):  # the second call is served from the cache
        assert cached(key, parts, parts) == default(key, parts, parts)


def test_cached_partitioner_spreads_keyless_records_over_available_partitions() -> None:
    picked = {KeyPartitioner()(None, [0, 1, 2, 3], [1, 3]) for _ in range(200)}
    assert picked == {1, 3}


def test_an_integer_beyond_64_bits_is_read_as_a_number_the_log_can_carry() -> None:
    # orjson cannot write a bigger int (nor can 64-bit consumers read one): without the Int64 bound
    # on attribute values, dumping this record raised, a 500
    big = b'{"user_id": "u", "attributes": {"n": 123456789012345678901234567890}}'
    request = DecisionRequest.model_validate_json(big)
    record = DecisionLog.model_validate_json(serving("thompson").decide("exp-1", request).record_json())
    assert record.attributes["n"] == pytest.approx(1.2345678901234568e29)
