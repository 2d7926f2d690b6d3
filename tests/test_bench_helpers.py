"""The benchmark scripts' pure helpers (what a printed verdict rests on), without running a benchmark."""

from __future__ import annotations

import doctest

import bench.bench_decide
import bench.reward_echo
from schemas import ClickEvent, ImpressionEvent


def test_bench_decide_doctests() -> None:
    assert doctest.testmod(bench.bench_decide).failed == 0


def test_rig_check_names_every_peer_at_the_target_rate_only() -> None:
    rows = [
        {"target": "aiohttp+pydantic", "mode": "open", "offered_rps": 2000, "p99_ms": 2.9},
        {"target": "aiohttp+pydantic+redis", "mode": "open", "offered_rps": 2000, "p99_ms": 7.1},
        {"target": "aiohttp+pydantic+redis", "mode": "open", "offered_rps": 4000, "p99_ms": 900.0},
        {"target": "abengine (thompson)", "mode": "open", "offered_rps": 2000, "p99_ms": 30.0},
    ]
    lines = bench.bench_decide.rig_check(rows)
    assert len(lines) == 2
    assert lines[0].endswith("within it") and "cannot show" in lines[1]


def test_reward_echo_writes_valid_events_keyed_by_experiment() -> None:
    """The learning rows' events are ones the engine accepts: an impression per decision, a click for
    about the click rate's share, each on its decision's experiment key."""
    assert doctest.testmod(bench.reward_echo).failed == 0
    decision = {"decision_id": "d1", "experiment_id": "e", "user_id": "u1"}
    out = bench.reward_echo.events_for(decision, 1.0, "2026-12-06T10:00:00+00:00")
    assert [(topic, key) for topic, key, _ in out] == [("impressions", "e"), ("clicks", "e")]
    ImpressionEvent.model_validate_json(out[0][2])  # as the ingestor reads it
    ClickEvent.model_validate_json(out[1][2])
    assert len(bench.reward_echo.events_for(decision, 0.0, "2026-12-06T10:00:00+00:00")) == 1
