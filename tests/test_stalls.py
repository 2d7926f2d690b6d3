"""The stall probes (engine/stalls.py): they see what holds the event loop, and a worker exports them."""

from __future__ import annotations

import asyncio
import doctest
import gc
import time

import pytest

import engine.stalls
from engine.metrics import PrometheusSensor, Sensor
from engine.stalls import GcPauseProbe, LoopLagProbe, StallReading


class Recorder(Sensor):
    def __init__(self) -> None:
        self.lags: list[float] = []
        self.pauses: list[tuple[int, float]] = []

    def on_loop_lag(self, seconds: float) -> None:
        self.lags.append(seconds)

    def on_gc_pause(self, generation: int, seconds: float) -> None:
        self.pauses.append((generation, seconds))


def test_doctests() -> None:
    assert doctest.testmod(engine.stalls).failed == 0


def test_loop_lag_probe_sees_a_blocked_loop_and_not_an_idle_one() -> None:
    rec = Recorder()

    async def scenario() -> None:
        task = asyncio.create_task(LoopLagProbe(rec, interval_s=0.005).run())
        await asyncio.sleep(0.1)  # idle: the probe wakes about on time
        idle = list(rec.lags)
        time.sleep(0.05)  # a 50 ms stall, as a synchronous batch would cause
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(idle) >= 5 and max(idle) < 0.04
        assert max(rec.lags) >= 0.04

    asyncio.run(scenario())


def test_loop_lag_probe_refuses_a_non_positive_interval() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        LoopLagProbe(Sensor(), interval_s=0)


def test_gc_probe_times_collections_by_generation_until_uninstalled() -> None:
    rec = Recorder()
    probe = GcPauseProbe(rec)
    probe.install()
    probe.install()  # idempotent: one callback, one report per collection
    try:
        gc.collect(1)
        gc.collect(2)
    finally:
        probe.uninstall()
    assert [g for g, _ in rec.pauses][-2:] == [1, 2]
    assert all(s >= 0 for _, s in rec.pauses)
    n = len(rec.pauses)
    gc.collect()
    assert len(rec.pauses) == n


def test_prometheus_sensor_exports_both() -> None:
    sensor = PrometheusSensor()
    sensor.on_loop_lag(0.03)
    sensor.on_gc_pause(2, 0.2)
    text = sensor.exposition().decode()
    assert 'abengine_event_loop_lag_seconds_bucket{le="0.05"} 1.0' in text
    assert 'abengine_gc_pause_seconds_count{generation="2"} 1.0' in text


def test_stall_reading_reads_back_what_a_sensor_exports() -> None:
    sensor = PrometheusSensor()
    for lag in (0.001, 0.003, 0.03, 2.0):
        sensor.on_loop_lag(lag)
    sensor.on_gc_pause(2, 0.25)
    sensor.on_gc_pause(0, 0.001)
    sensor.on_degraded_decision("a", 3)
    sensor.on_degraded_decision("b")
    sensor.on_consumer_lag("abengine.decisions", 0, 5)
    sensor.on_consumer_lag("abengine.decisions", 1, 7)
    sensor.on_decision("a", "v", "thompson", 0.0004)
    r = StallReading.parse(sensor.exposition().decode())
    assert r.loop_lag_le["+Inf"] == 4
    assert (r.lag_over("0.002"), r.lag_over("0.005"), r.lag_over("0.05"), r.lag_over("1.0")) == (3, 2, 1, 1)
    assert r.gc_pauses == {"0": 1, "1": 0, "2": 1} and r.gc_seconds["2"] == pytest.approx(0.25)
    assert (r.degraded, r.consumer_lag) == (4, 12)
    assert r.decide_le["+Inf"] == 1 and r.cpu_s > 0
