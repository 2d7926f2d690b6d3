"""Property-based fuzzing of the HTTP API (real Kafka and Redis behind it).

Whatever the body, every endpoint answers a JSON error in the 4xx range or a
success, never a 5xx, and the engine keeps serving.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config import Settings
from engine.services.embedded import EmbeddedKafka, EmbeddedRedis
from tests.inprocess import serve_api

pytestmark = pytest.mark.integration

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=50),
)
json_values = st.recursive(
    json_scalars,
    lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=10), c, max_size=5),
    max_leaves=20,
)
keys = st.sampled_from(
    [
        "user_id",
        "attributes",
        "context",
        "features",
        "experiment_id",
        "events",
        "type",
        "event_id",
        "decision_id",
        "event_time",
        "value",
        "currency",
        "id",
        "variants",
        "text",
        "allocator",
        "allocator_config",
        "split",
        "weird",
    ]
)
bodies = st.dictionaries(keys, json_values, max_size=6)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("fuzz")
    with (
        EmbeddedKafka(log_path=tmp / "tansu.log") as kafka,
        EmbeddedRedis(tmp / "redis") as redis,
        serve_api(Settings(topic_partitions=2, ranker_enabled=False), kafka.bootstrap_servers, redis.url) as (
            url,
            _,
        ),
    ):
        spec = {"id": "fz", "variants": [{"id": "a", "text": "A"}, {"id": "b", "text": "B"}]}
        assert httpx.post(f"{url}/v1/experiments", json=spec).status_code == 201
        yield url


PATHS = ["/v1/experiments/fz/decide", "/v1/events", "/v1/experiments", "/v1/experiments/fz/variants"]


def check(resp: httpx.Response) -> None:
    assert resp.status_code < 500, resp.text
    if resp.status_code >= 400:
        err = resp.json()["error"]
        assert err["status"] == resp.status_code and err["message"]
        if resp.status_code in (400, 413, 422):
            assert err["fields"] and all(f["field"] for f in err["fields"])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(PATHS), body=bodies)
def test_structured_garbage_never_5xx(api: str, path: str, body: dict) -> None:
    try:
        raw = json.dumps(body, allow_nan=True).encode()
    except (ValueError, OverflowError):
        return
    check(httpx.post(api + path, content=raw, headers={"Content-Type": "application/json"}, timeout=10))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(PATHS), raw=st.binary(max_size=300))
def test_raw_bytes_never_5xx(api: str, path: str, raw: bytes) -> None:
    check(httpx.post(api + path, content=raw, timeout=10))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(exp_id=st.text(max_size=200))
def test_any_path_id_never_5xx(api: str, exp_id: str) -> None:
    quoted = quote(exp_id, safe="")
    if not quoted:
        return
    check(httpx.post(f"{api}/v1/experiments/{quoted}/decide", json={"user_id": "u"}, timeout=10))
    check(httpx.get(f"{api}/v1/experiments/{quoted}", timeout=10))


def test_deeply_nested_and_huge_bodies(api: str) -> None:
    deep = b'{"user_id": "u", "attributes": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5001
    check(httpx.post(f"{api}/v1/experiments/fz/decide", content=deep, timeout=10))
    huge = b'{"user_id": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    r = httpx.post(f"{api}/v1/experiments/fz/decide", content=huge, timeout=10)
    assert r.status_code == 413
    # still serving
    assert httpx.post(f"{api}/v1/experiments/fz/decide", json={"user_id": "u"}).status_code == 200


def test_unicode_edge_cases_in_ids_and_text(api: str) -> None:
    for user in ["\u202e\u0000", "😀" * 300, "\ud7ff", "ok-user"]:
        check(httpx.post(f"{api}/v1/experiments/fz/decide", json={"user_id": user, "context": "ü" * 3000}))
