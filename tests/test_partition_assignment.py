"""The ingestion group keeps the event topics co-partitioned: partition p of every topic on one worker.

An experiment's decisions and events share a partition number (keyed by experiment id); its learning
happens on the worker that owns that number. The assignor the batch consumer uses must therefore give
each worker the same partition numbers in every topic, for any worker count.
"""

from __future__ import annotations

import pytest
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

from consumers.batch import ASSIGNORS
from engine.config import Settings

TOPICS = [Settings().topic(t) for t in ("decisions", "impressions", "clicks", "conversions")]


class _Cluster:
    """The one question an assignor asks of the cluster's metadata."""

    def __init__(self, partitions: int) -> None:
        self.n = partitions

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.n))


def _numbers_by_member(assignor: type, members: int, partitions: int) -> list[list[set[int]]]:
    meta = {f"worker-{i}": ConsumerProtocolMemberMetadata(0, TOPICS, b"") for i in range(members)}
    out = assignor.assign(_Cluster(partitions), meta)
    return [[set(ps) for topic, ps in sorted(out[m].assignment) if topic in TOPICS] for m in sorted(out)]


@pytest.mark.parametrize("members,partitions", [(1, 8), (2, 8), (3, 8), (5, 8), (3, 12), (7, 4)])
def test_every_worker_owns_the_same_partition_numbers_in_every_topic(members: int, partitions: int) -> None:
    (assignor,) = ASSIGNORS
    owned = _numbers_by_member(assignor, members, partitions)
    per_worker = [set.union(*topics) if topics else set() for topics in owned]
    for topics in owned:  # co-partitioned: one set of numbers per worker, the same in every topic
        assert all(t == topics[0] for t in topics)
    assert sorted(p for w in per_worker for p in w) == list(range(partitions))  # disjoint, complete


def test_round_robin_would_split_an_experiment_across_workers() -> None:
    # why the default assignor is not used: 3 workers on 8 partitions get mismatched numbers per topic
    owned = _numbers_by_member(RoundRobinPartitionAssignor, 3, 8)
    assert any(any(t != topics[0] for t in topics) for topics in owned)
