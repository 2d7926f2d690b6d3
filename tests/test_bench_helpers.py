"""The benchmark scripts' pure helpers (what a printed verdict rests on), without running a benchmark."""

from __future__ import annotations

import doctest

import bench.bench_decide


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
