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

    n_a, body = decide_and_reward(serving.url, "split")
    # joined once each, by the ingesting worker (the ledger is shared, the learner is not)
    assert body["ledger"]["applied:click"] == n_a
    assert httpx.get(f"{ingesting.url}/readyz", timeout=5).json()["learning"] == ["split"]
    assert httpx.get(f"{serving.url}/readyz", timeout=5).json()["learning"] == []
    # and the policy learned there is the one the decide-only worker serves
    assert_serves_learned_policy(serving.url, "split", n_a)


def decide_and_reward(url: str, exp_id: str, n: int = 30) -> tuple[int, dict]:
    """Create a two-variant experiment on ``url``, serve ``n`` decisions, send an impression for each
    and a click for each of variant ``a``, and wait until all are joined; (clicks sent, its status)."""
    create(url, exp_id)
    decisions = [decide(url, exp_id, f"u{i}") for i in range(n)]
    events = [event("impression", d) for d in decisions]
    events += [event("click", d) for d in decisions if d["variant_id"] == "a"]
    r = httpx.post(f"{url}/v1/events", json={"events": events}, timeout=10)
    assert r.status_code == 202, r.text
    body = wait_for(lambda: (s := status(url, exp_id)) and applied(s) == len(events) and s)
    return len(events) - n, body


def assert_serves_learned_policy(url: str, exp_id: str, clicks_on_a: int, n: int = 30) -> None:
    """``url`` serves a policy that learned all ``n`` decisions and their clicks (all on ``a``)."""
    variants = wait_for(
        lambda: (
            (p := status(url, exp_id)["policy"]["variants"])
            and p["a"]["trials"] + p["b"]["trials"] == n
            and p
        )
    )
    assert variants["a"]["clicks"] == clicks_on_a and variants["b"]["clicks"] == 0
