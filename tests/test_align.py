"""Event alignment: events wait for their partition's decisions, bounded in time, released in order."""

from __future__ import annotations

import doctest

import pytest

import consumers.align
from consumers.align import EventAligner
from consumers.ingest import Record

NEVER = lambda p: False  # noqa: E731  (decision partitions still have records to read)


def imp(partition: int, offset: int, ts: int, topic: str = "impressions") -> Record:
    return Record(topic, partition, offset, b"exp", b"{}", timestamp=ts)


def test_doctests() -> None:
    assert doctest.testmod(consumers.align).failed == 0


def test_events_behind_the_decisions_pass_at_once() -> None:
    a = EventAligner(max_hold_s=1.0)
    a.decided(0, 5_000)
    out = a.admit([imp(0, 1, 4_000), imp(0, 2, 4_999)], NEVER, now=0.0)
    assert [r.offset for r in out] == [1, 2] and a.holding() == set()


def test_an_event_of_the_newest_decisions_millisecond_waits() -> None:
    # its own decision may be the next record of that millisecond, not yet consumed
    a = EventAligner(max_hold_s=1.0)
    a.decided(0, 5_000)
    assert a.admit([imp(0, 1, 5_000)], NEVER, now=0.0) == []
    a.decided(0, 5_001)
    assert [r.offset for r in a.admit([], NEVER, now=0.1)] == [1]


def test_events_ahead_wait_until_their_decisions_are_consumed() -> None:
    a = EventAligner(max_hold_s=1.0)
    a.decided(0, 1_000)
    assert [r.offset for r in a.admit([imp(0, 1, 900), imp(0, 2, 1_200), imp(0, 3, 1_100)], NEVER, 0.0)] == [
        1
    ]
    assert a.holding() == {("impressions", 0)}
    a.decided(0, 1_150)
    # release is a prefix in offset order: offset 3 (ts 1,100) waits behind offset 2 (ts 1,200)
    assert [r.offset for r in a.admit([], NEVER, 0.1)] == []
    a.decided(0, 1_201)
    assert [r.offset for r in a.admit([], NEVER, 0.2)] == [2, 3]
    assert a.holding() == set()


def test_partitions_and_topics_are_independent() -> None:
    a = EventAligner(max_hold_s=1.0)
    a.decided(0, 1_000)
    a.decided(1, 9_000)
    out = a.admit([imp(0, 1, 2_000), imp(1, 1, 2_000), imp(0, 5, 500, topic="clicks")], NEVER, 0.0)
    assert {(r.topic, r.partition, r.offset) for r in out} == {("impressions", 1, 1), ("clicks", 0, 5)}
    assert a.holding() == {("impressions", 0)}


def test_a_caught_up_decision_partition_releases_everything() -> None:
    a = EventAligner(max_hold_s=1.0)
    # no decision consumed at all on partition 0, but nothing is left to read there either
    out = a.admit([imp(0, 1, 2_000), imp(0, 2, 3_000)], caught_up=lambda p: p == 0, now=0.0)
    assert [r.offset for r in out] == [1, 2]


def test_holding_is_bounded_in_time_per_record() -> None:
    a = EventAligner(max_hold_s=1.0)
    a.decided(0, 0)
    assert a.admit([imp(0, 1, 10)], NEVER, now=0.0) == []
    assert a.admit([imp(0, 2, 20)], NEVER, now=0.5) == []
    assert [r.offset for r in a.admit([], NEVER, now=1.0)] == [1]  # held 1 s: released, ledger waits
    assert [r.offset for r in a.admit([], NEVER, now=1.5)] == [2]
    assert a.holding() == set()


def test_zero_hold_turns_alignment_off() -> None:
    a = EventAligner(max_hold_s=0.0)
    assert [r.offset for r in a.admit([imp(0, 1, 10**12)], NEVER, now=0.0)] == [1]


def test_records_without_timestamps_are_not_held() -> None:
    a = EventAligner(max_hold_s=1.0)
    assert [r.offset for r in a.admit([imp(0, 1, -1)], NEVER, now=0.0)] == [1]


def test_revoked_partitions_forget_what_they_held() -> None:
    a = EventAligner(max_hold_s=5.0)
    a.decided(0, 0)
    a.decided(1, 0)
    a.admit([imp(0, 1, 10), imp(1, 1, 10)], NEVER, now=0.0)
    a.forget([0])
    assert a.holding() == {("impressions", 1)}
    # re-assigned later: the replayed record is held once, not twice
    a.decided(0, 0)
    a.admit([imp(0, 1, 10)], NEVER, now=0.1)
    a.decided(0, 11)
    assert [r.offset for r in a.admit([], NEVER, now=0.2)] == [1]


def test_negative_hold_is_refused() -> None:
    with pytest.raises(ValueError, match="max_hold_s"):
        EventAligner(max_hold_s=-1)
