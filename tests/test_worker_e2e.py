"""End to end on real services: Tansu broker, embedded Redis, two worker processes.

decide over HTTP -> events to Kafka -> workers ingest, join, deduplicate, learn ->
replicated policies serve on both workers; invalid and duplicate events are
handled; a worker killed mid-stream loses and double-counts nothing.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from engine.config import Settings
from engine.memory.model import RECORD_FORMAT, record_time
from producers.kafka import EventProducer
from tests.cluster import Cluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        a, b = c.add_worker("a"), c.add_worker("b")
        a.wait_ready()
        b.wait_ready()
        yield c
    finally:
        c.close()


def settings() -> Settings:
    return Settings(topic_partitions=4)


def create(url: str, exp_id: str, allocator: str = "thompson") -> dict:
    spec = {
        "id": exp_id,
        "allocator": allocator,
        "variants": [{"id": "a", "text": "Headline A"}, {"id": "b", "text": "Headline B"}],
    }
    r = httpx.post(f"{url}/v1/experiments", json=spec, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()


def decide(url: str, exp_id: str, user: str) -> dict:
    r = httpx.post(
        f"{url}/v1/experiments/{exp_id}/decide", json={"user_id": user, "context": "home"}, timeout=10
    )
    assert r.status_code == 200, r.text
    return r.json()


def event(kind: str, d: dict, **extra: object) -> dict:
    return {
        "type": kind,
        "event_id": uuid.uuid4().hex,
        "decision_id": d["decision_id"],
        "experiment_id": d["experiment_id"],
        "event_time": datetime.now(UTC).isoformat(),
        **extra,
    }


def wait_for(predicate, timeout: float = 60.0, every: float = 0.3):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"condition not met in {timeout}s (last: {last!r})")


def status(url: str, exp_id: str) -> dict:
    return httpx.get(f"{url}/v1/experiments/{exp_id}", timeout=10).json()


def applied(body: dict) -> int:
    return sum(v for k, v in (body.get("ledger") or {}).items() if k.startswith(("applied:", "repeat:")))


async def produce(bootstrap: str, records: list[tuple[str, str, bytes]]) -> None:
    p = EventProducer(bootstrap, settings())
    await p.start()
    try:
        await p.send_many(records)
    finally:
        await p.stop()


async def dead_letters(bootstrap: str, timeout: float = 8.0) -> list[dict]:
    consumer = AIOKafkaConsumer(
        settings().topic("deadletter"),
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    out: list[dict] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out += [json.loads(r.value) for r in records]
    finally:
        await consumer.stop()
    return out


def test_two_workers_split_the_partitions(cluster: Cluster) -> None:
    def split() -> tuple[list[int], list[int]] | None:
        a, b = (httpx.get(f"{w.url}/readyz").json()["partitions"] for w in cluster.workers[:2])
        return (a, b) if a and b and sorted(a + b) == [0, 1, 2, 3] else None

    a, b = wait_for(split, timeout=60)
    assert not set(a) & set(b)


def test_decide_ingest_learn_on_both_workers(cluster: Cluster) -> None:
    wa, wb = cluster.workers[:2]
    create(wa.url, "e2e")
    wait_for(lambda: httpx.get(f"{wb.url}/v1/experiments/e2e").status_code == 200)
    decisions = [decide((wa, wb)[i % 2].url, "e2e", f"u{i}") for i in range(40)]
    events = [event("impression", d) for d in decisions]
    events += [event("click", d) for d in decisions if d["variant_id"] == "b"]
    # half the events through the HTTP endpoint, half straight to Kafka
    r = httpx.post(f"{wb.url}/v1/events", json={"events": events[:20]}, timeout=10)
    assert r.status_code == 202 and r.json() == {"accepted": 20}
    topic = {"impression": "impressions", "click": "clicks"}
    asyncio.run(
        produce(
            cluster.kafka.bootstrap_servers, [(topic[e["type"]], "e2e", orjson.dumps(e)) for e in events[20:]]
        )
    )
    body = wait_for(lambda: (s := status(wa.url, "e2e")) and applied(s) == len(events) and s)
    n_b = sum(d["variant_id"] == "b" for d in decisions)
    assert body["ledger"]["applied:click"] == n_b
    # the learned policy is replicated: both workers serve it
    for w in (wa, wb):
        variants = wait_for(
            lambda w=w: (
                (p := status(w.url, "e2e")["policy"]["variants"])
                and p["a"]["trials"] + p["b"]["trials"] == 40
                and p
            )
        )
        assert variants["b"]["clicks"] == n_b and variants["a"]["clicks"] == 0
    metrics = httpx.get(f"{wa.url}/metrics").text + httpx.get(f"{wb.url}/metrics").text
    assert "abengine_rewards_joined_total" in metrics and "abengine_decide_latency_seconds_bucket" in metrics


def test_invalid_late_unmatched_and_duplicate_events(cluster: Cluster) -> None:
    wa, _ = cluster.workers[:2]
    create(wa.url, "bad-events")
    d = decide(wa.url, "bad-events", "u1")
    click = event("click", d)
    bad_type = event("click", d)  # a click body on the impressions topic
    asyncio.run(
        produce(
            cluster.kafka.bootstrap_servers,
            [
                ("clicks", "bad-events", orjson.dumps(click)),
                ("clicks", "bad-events", orjson.dumps(click)),  # duplicate
                ("clicks", "bad-events", b"\xff\xfe not json"),
                ("impressions", "bad-events", orjson.dumps(bad_type)),
                ("conversions", "bad-events", orjson.dumps({**event("conversion", d), "value": -5})),
                (
                    "impressions",
                    "bad-events",
                    orjson.dumps(event("impression", {**d, "decision_id": "ghost"})),
                ),
                (
                    "impressions",
                    "bad-events",
                    orjson.dumps(event("impression", d, event_time="2030-01-01T00:00:00Z")),
                ),
            ],
        )
    )
    # the click may arrive before its decision is ingested (it then waits and is retried): either way
    # one copy is applied and the other counted as a duplicate
    body = wait_for(
        lambda: (
            (s := status(wa.url, "bad-events"))["ledger"].get("duplicate:click")
            and s["ledger"].get("applied:click")
            and s
        ),
        timeout=30,
    )
    assert body["ledger"]["applied:click"] == 1 and body["ledger"]["duplicate:click"] == 1
    letters = wait_for(
        lambda: (
            (
                xs := [
                    x
                    for x in asyncio.run(dead_letters(cluster.kafka.bootstrap_servers))
                    if x["key"] == "bad-events"
                ]
            )
            and len(xs) >= 5
            and xs
        ),
        timeout=40,
    )
    reasons = sorted(x["reason"] for x in letters)
    assert reasons == ["invalid", "invalid", "invalid", "late", "unmatched"], letters
    details = " ".join(x["detail"] for x in letters)
    assert "value" in details and "type" in details


def test_http_bad_input_gets_4xx_naming_the_field(cluster: Cluster) -> None:
    url = cluster.workers[0].url
    create(url, "bad-http")
    cases = [
        ("post", "/v1/experiments/bad-http/decide", b"{oops", 400, "body"),
        ("post", "/v1/experiments/bad-http/decide", b'{"user_id": 5}', 422, "user_id"),
        ("post", "/v1/experiments/bad-http/decide", b'{"user_id": "u", "extra": 1}', 422, "extra"),
        (
            "post",
            "/v1/experiments/bad-http/decide",
            b'{"user_id": "u", "features": {"f": 1e999}}',
            422,
            "features.f",
        ),
        (
            "post",
            "/v1/experiments/bad-http/decide",
            b'{"user_id": "u", "experiment_id": "other"}',
            422,
            "experiment_id",
        ),
        ("post", "/v1/experiments/nope/decide", b'{"user_id": "u"}', 404, "experiment_id"),
        ("post", "/v1/experiments/bad%20id/decide", b'{"user_id": "u"}', 404, "experiment_id"),
        ("get", "/v1/experiments/nope", None, 404, "experiment_id"),
        ("post", "/v1/experiments", b'{"id": "bad-http", "variants": [{"id": "a", "text": "A"}]}', 409, "id"),
        (
            "post",
            "/v1/experiments",
            b'{"id": "z", "variants": [{"id": "a", "text": "A"}], "allocator_config": {"bogus": 1}}',
            422,
            "allocator_config",
        ),
        ("post", "/v1/experiments", b'{"id": "z", "variants": []}', 422, "variants"),
        ("post", "/v1/events", b'{"events": [{"type": "click"}]}', 422, "events.0.click.event_id"),
        ("post", "/v1/experiments/bad-http/decide", b'{"user_id": "' + b"x" * 70000 + b'"}', 413, "body"),
    ]
    for method, path, body, code, field in cases:
        r = httpx.request(
            method, url + path, content=body, timeout=10, headers={"Content-Type": "application/json"}
        )
        assert r.status_code == code, (path, body[:60] if body else None, r.text)
        err = r.json()["error"]
        assert field in [f["field"] for f in err["fields"]], (path, err)


def test_killed_worker_loses_and_double_counts_nothing(cluster: Cluster) -> None:
    wa, wb = cluster.workers[:2]
    create(wb.url, "crash")
    wait_for(lambda: httpx.get(f"{wa.url}/v1/experiments/crash").status_code == 200)
    decisions = [decide(wb.url, "crash", f"u{i}") for i in range(200)]
    events = [event("impression", d) for d in decisions] + [event("click", d) for d in decisions[::3]]
    records = [
        ({"impression": "impressions", "click": "clicks"}[e["type"]], "crash", orjson.dumps(e))
        for e in events
    ]
    asyncio.run(produce(cluster.kafka.bootstrap_servers, records[: len(records) // 2]))
    wa.kill()  # SIGKILL mid-stream: no snapshot flush, no offset commit
    asyncio.run(produce(cluster.kafka.bootstrap_servers, records[len(records) // 3 :]))  # overlap = replays
    body = wait_for(lambda: (s := status(wb.url, "crash")) and applied(s) >= len(events) and s, timeout=120)
    assert applied(body) == len(events)  # every distinct event once, none lost
    policy = wait_for(
        lambda: (
            (p := status(wb.url, "crash")["policy"]["variants"])
            and sum(v["trials"] for v in p.values()) == 200
            and p
        )
    )
    assert sum(v["clicks"] for v in policy.values()) == len(decisions[::3])
    # the killed worker comes back and recovers the same learning state
    wa.start()
    wa.wait_ready(partitions=False)
    again = wait_for(
        lambda: (
            (p := status(wa.url, "crash")["policy"]["variants"])
            and sum(v["trials"] for v in p.values()) == 200
            and p
        )
    )
    assert again == policy


def test_actor_critic_learns_from_the_stream_and_writes_user_memory(cluster: Cluster) -> None:
    import redis

    wa, wb = cluster.workers[:2]
    wa.wait_ready(partitions=False)  # the previous test restarted it
    spec = {
        "id": "ac-e2e",
        "allocator": "actor_critic",
        "attribution_window_s": 15,
        "variants": [
            {"id": "a", "text": "Winter boots for men"},
            {"id": "b", "text": "Summer dresses on sale"},
        ],
    }
    r = httpx.post(f"{wa.url}/v1/experiments", json=spec, timeout=120)
    assert r.status_code == 201, r.text
    # the first actor-critic a worker meets loads the sentence encoder (in a thread): allow for it
    wait_for(lambda: httpx.get(f"{wb.url}/v1/experiments/ac-e2e", timeout=120).status_code == 200)
    decisions = [decide((wa, wb)[i % 2].url, "ac-e2e", f"user{i % 8}") for i in range(40)]
    events = [event("impression", d) for d in decisions]
    events += [event("click", d) for d in decisions if d["variant_id"] == "b"]
    topic = {"impression": "impressions", "click": "clicks"}
    asyncio.run(
        produce(
            cluster.kafka.bootstrap_servers, [(topic[e["type"]], "ac-e2e", orjson.dumps(e)) for e in events]
        )
    )
    wait_for(lambda: applied(status(wa.url, "ac-e2e")) == len(events), timeout=90)
    # the owner learns (clicks at once, non-clicks when the 15 s window closes) and publishes a snapshot
    body = wait_for(lambda: (s := status(wb.url, "ac-e2e"))["policy"]["version"] > 0 and s, timeout=60)
    assert body["policy"]["allocator"] == "actor_critic"
    client = redis.Redis.from_url(cluster.redis.url)
    keys = wait_for(lambda: client.keys(f"abe:{{ac-e2e}}:mem{RECORD_FORMAT}:*"), timeout=30)
    assert {k.decode().rsplit(":", 1)[1] for k in keys} <= {f"user{i}" for i in range(8)}
    assert all(client.ttl(k) > 0 for k in keys)  # bounded in time
    # each memory's newest record time is seconds since TIME_ORIGIN_S, within the test's run of now
    newest = [float(np.frombuffer(client.get(k), np.float32)[-1]) for k in keys]
    assert all(abs(t - float(record_time(time.time()))) < 600 for t in newest), newest
