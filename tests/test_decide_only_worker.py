"""A decide-only worker (``ABENGINE_INGEST_ENABLED=0``) beside an ingesting one, on real services.

The decide-only worker owns no partition and learns nothing itself; every decision it serves is
logged to Kafka, ingested and learned by the other worker, and the learned policy comes back to it
through Redis — the split that frees a serving core from the decision log's ingestion
(docs/PERFORMANCE.md, "Decide: where the time goes").
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.cluster import Cluster
from tests.test_worker_e2e import applied, create, decide, event, status, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("decide-only"))
    try:
        ingesting = c.add_worker("ingest")
        serving = c.add_worker("serve", ABENGINE_INGEST_ENABLED="0")
        ingesting.wait_ready()
        serving.wait_ready(partitions=False)
        yield c
    finally:
        c.close()


def test_decide_only_worker_serves_what_the_ingesting_worker_learns(cluster: Cluster) -> None:
    ingesting, serving = cluster.workers
    ready = httpx.get(f"{serving.url}/readyz", timeout=5).json()
    assert ready["ingesting"] is False and ready["partitions"] == []
    assert httpx.get(f"{ingesting.url}/readyz", timeout=5).json()["partitions"] == [0, 1, 2, 3]

    create(serving.url, "split")
    decisions = [decide(serving.url, "split", f"u{i}") for i in range(30)]
    events = [event("impression", d) for d in decisions]
    events += [event("click", d) for d in decisions if d["variant_id"] == "a"]
    r = httpx.post(f"{serving.url}/v1/events", json={"events": events}, timeout=10)
    assert r.status_code == 202, r.text

    # joined once each, by the ingesting worker (the ledger is shared, the learner is not)
    body = wait_for(lambda: (s := status(serving.url, "split")) and applied(s) == len(events) and s)
    n_a = sum(d["variant_id"] == "a" for d in decisions)
    assert body["ledger"]["applied:click"] == n_a
    assert httpx.get(f"{ingesting.url}/readyz", timeout=5).json()["learning"] == ["split"]
    assert httpx.get(f"{serving.url}/readyz", timeout=5).json()["learning"] == []
    # and the policy learned there is the one the decide-only worker serves
    variants = wait_for(
        lambda: (
            (p := status(serving.url, "split")["policy"]["variants"])
            and p["a"]["trials"] + p["b"]["trials"] == 30
            and p
        )
    )
    assert variants["a"]["clicks"] == n_a and variants["b"]["clicks"] == 0
