"""Watch what stalls the worker's event loop: its scheduling lag, and the garbage collector's pauses.

Every decide waits for whatever else holds the loop — a batch being prepared, a policy being rebuilt, a
full garbage collection. The decide latency histogram says *that* a request was slow; these two say
*why*: :class:`LoopLagProbe` sleeps a fixed interval and reports how late it woke (the lag any request
arriving then also saw), and :class:`GcPauseProbe` times each collection from ``gc.callbacks`` by
generation. Both only call sensor hooks (``on_loop_lag``, ``on_gc_pause``), as the rest of the engine does.
:class:`StallReading` reads them back from a worker's ``/metrics`` (benchmarks and the soak test compare
two readings).

>>> from engine.metrics import Sensor
>>> class Seen(Sensor):
...     def __init__(self): self.pauses = []
...     def on_gc_pause(self, generation, seconds): self.pauses.append(generation)
>>> import gc
>>> seen = Seen(); probe = GcPauseProbe(seen); probe.install()
>>> _ = gc.collect(2); probe.uninstall(); seen.pauses[-1]
2
"""

from __future__ import annotations

import asyncio
import gc
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from engine.metrics import Sensor


class LoopLagProbe:
    """Sleeps ``interval_s`` again and again and reports how much later than asked the loop woke it.

    At the default 10 ms interval the probe costs ~100 wake-ups a second (well under 1% of a core)
    and sees every stall longer than the interval.
    """

    def __init__(self, sensor: Sensor, interval_s: float = 0.01) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.sensor = sensor
        self.interval_s = interval_s

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.interval_s
        while True:
            t0 = loop.time()
            await asyncio.sleep(interval)
            self.sensor.on_loop_lag(max(loop.time() - t0 - interval, 0.0))


class GcPauseProbe:
    """Times every garbage collection (``gc.callbacks``) and reports it with its generation."""

    def __init__(self, sensor: Sensor) -> None:
        self.sensor = sensor
        self._started = 0.0

    def install(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def uninstall(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.sensor.on_gc_pause(info["generation"], time.perf_counter() - self._started)


@dataclass(frozen=True, slots=True)
class StallReading:
    """A worker's stall metrics as its ``/metrics`` exposes them (cumulative since it started), with what
    tells a slow decide from a held loop beside them: decisions served without their user's memory, the
    consumer lag, the process's CPU seconds, the in-worker decide latency and the events it joined.
    Histograms keep their cumulative buckets keyed by the ``le`` label as exposed ("0.005", "+Inf").

    >>> text = (
    ...     'abengine_event_loop_lag_seconds_bucket{le="0.005"} 7.0\\n'
    ...     'abengine_event_loop_lag_seconds_bucket{le="+Inf"} 9.0\\n'
    ...     'abengine_gc_pause_seconds_count{generation="2"} 1.0\\n'
    ... )
    >>> r = StallReading.parse(text); r.lag_over("0.005"), r.gc_pauses["2"]
    (2.0, 1.0)
    """

    loop_lag_le: dict[str, float] = field(default_factory=dict)
    gc_pauses: dict[str, float] = field(default_factory=dict)  # by generation
    gc_seconds: dict[str, float] = field(default_factory=dict)
    decide_le: dict[str, float] = field(default_factory=dict)
    degraded: float = 0.0
    consumer_lag: float = 0.0  # summed over partitions
    cpu_s: float = 0.0
    events_joined: float = 0.0  # impressions, clicks and conversions joined to their decisions

    @classmethod
    def parse(cls, text: str) -> StallReading:
        lag: dict[str, float] = {}
        decide: dict[str, float] = {}
        pauses: dict[str, float] = {}
        seconds: dict[str, float] = {}
        degraded = consumer_lag = cpu_s = joined = 0.0
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "abengine_event_loop_lag_seconds_bucket":
                    lag[s.labels["le"]] = s.value
                elif s.name == "abengine_decide_latency_seconds_bucket":
                    decide[s.labels["le"]] = s.value
                elif s.name == "abengine_gc_pause_seconds_count":
                    pauses[s.labels["generation"]] = s.value
                elif s.name == "abengine_gc_pause_seconds_sum":
                    seconds[s.labels["generation"]] = s.value
                elif s.name == "abengine_degraded_decisions_total":
                    degraded += s.value
                elif s.name == "abengine_consumer_lag":
                    consumer_lag += s.value
                elif s.name == "process_cpu_seconds_total":
                    cpu_s = s.value
                elif s.name == "abengine_rewards_joined_total":
                    joined += s.value
        return cls(lag, pauses, seconds, decide, degraded, consumer_lag, cpu_s, joined)

    def lag_over(self, bound: str) -> float:
        """Lag samples later than ``bound`` seconds (one of the histogram's bucket bounds)."""
        return self.loop_lag_le.get("+Inf", 0.0) - self.loop_lag_le.get(bound, 0.0)
