"""A worker that learns in a second process at idle CPU priority (``ABENGINE_LEARN_IN=idle-process``).

The worker's first process serves decide-only; the process it starts ingests and learns as
``SCHED_IDLE``, so that on shared cores the kernel runs learning only on the time serving leaves
(docs/PERFORMANCE.md, "Learning at idle priority"). On real services: the pair serves what the
learning process learned, and the two stop together whichever dies first.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine.services.embedded import free_port
from tests.cluster import Cluster, WorkerProcess
from tests.test_decide_only_worker import assert_serves_learned_policy, decide_and_reward
from tests.test_worker_e2e import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("idle-learner"))
    try:
        yield c
    finally:
        c.close()


def start_pair(cluster: Cluster, name: str) -> tuple[WorkerProcess, str]:
    """One worker with an idle learning process; (the worker, its learning process's URL)."""
    port = free_port()
    worker = cluster.add_worker(name, ABENGINE_LEARN_IN="idle-process", ABENGINE_LEARNER_HTTP_PORT=str(port))
    learner = f"http://127.0.0.1:{port}"
    worker.wait_ready(partitions=False)
    wait_for(lambda: ready(learner).get("partitions"), timeout=120)
    return worker, learner


def ready(url: str) -> dict:
    try:
        r = httpx.get(f"{url}/readyz", timeout=2)
        return r.json() if r.status_code == 200 else {}
    except httpx.HTTPError:
        return {}


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_serves_decide_only_and_learns_in_an_idle_process(cluster: Cluster) -> None:
    worker, learner = start_pair(cluster, "pair")
    assert worker.proc is not None
    (child,) = children(worker.proc.pid)
    assert os.sched_getscheduler(child) == os.SCHED_IDLE  # the learning process, all of it
    assert all(os.sched_getscheduler(int(t)) == os.SCHED_IDLE for t in os.listdir(f"/proc/{child}/task"))
    assert os.sched_getscheduler(worker.proc.pid) == os.SCHED_OTHER  # serving keeps normal priority
    serving = ready(worker.url)
    assert serving["ingesting"] is False and serving["partitions"] == []
    assert ready(learner)["ingesting"] is True and ready(learner)["partitions"] == [0, 1, 2, 3]
    # the learning process's port is for probes and metrics only
    assert httpx.get(f"{learner}/metrics", timeout=5).status_code == 200
    assert (
        httpx.post(f"{learner}/v1/experiments/idle/decide", json={"user_id": "u"}, timeout=5).status_code
        == 404
    )
    assert httpx.post(f"{learner}/v1/events", json={"events": []}, timeout=5).status_code == 404

    # joined once each by the learning process, and its policy is the one the serving process serves
    n_a, body = decide_and_reward(worker.url, "idle")
    assert body["ledger"]["applied:click"] == n_a
    assert ready(learner)["learning"] == ["idle"] and ready(worker.url)["learning"] == []
    assert_serves_learned_policy(worker.url, "idle", n_a)
    worker.stop()
    assert not alive(child)


def test_the_pair_stops_together_whichever_dies(cluster: Cluster) -> None:
    # the learning process dies: the worker stops too, non-zero, so an orchestrator restarts both
    worker, _ = start_pair(cluster, "learner-dies")
    assert worker.proc is not None
    (child,) = children(worker.proc.pid)
    os.kill(child, signal.SIGKILL)
    assert worker.proc.wait(timeout=60) != 0
    assert "the learning process exited" in worker.tail(80)

    # the serving process is killed (SIGKILL, no clean-up of its own): the kernel stops its learner
    worker, _ = start_pair(cluster, "server-dies")
    assert worker.proc is not None
    (child,) = children(worker.proc.pid)
    os.kill(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait(timeout=10)
    deadline = time.monotonic() + 60
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(child)
