"""The faust-agent ingestion path (ABENGINE_INGEST_MODE=faust) joins and learns like the batch path."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson
import pytest

from tests.cluster import Cluster
from tests.test_worker_e2e import applied, create, decide, event, produce, status, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_faust_agents_ingest_and_learn(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    cluster.env["ABENGINE_INGEST_MODE"] = "faust"
    try:
        w = cluster.add_worker("faust")
        w.wait_ready()
        create(w.url, "fm")
        decisions = [decide(w.url, "fm", f"u{i}") for i in range(30)]
        events = [event("impression", d) for d in decisions] + [event("click", d) for d in decisions[:10]]
        topic = {"impression": "impressions", "click": "clicks"}
        records = [(topic[e["type"]], "fm", orjson.dumps(e)) for e in events]
        asyncio.run(produce(cluster.kafka.bootstrap_servers, records + records[:5]))  # + 5 replays
        body = wait_for(lambda: (s := status(w.url, "fm")) and applied(s) >= len(events) and s)
        assert applied(body) == len(events) and body["ledger"]["duplicate:impression"] == 5
        policy = wait_for(
            lambda: (
                (p := status(w.url, "fm")["policy"]["variants"])
                and sum(v["trials"] for v in p.values()) == 30
                and p
            )
        )
        assert sum(v["clicks"] for v in policy.values()) == 10
        assert httpx.get(f"{w.url}/readyz").json()["partitions"]
    finally:
        cluster.close()
