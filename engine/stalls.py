"""Watch what stalls the worker's event loop: its scheduling lag, and the garbage collector's pauses.

Every decide waits for whatever else holds the loop — a batch being prepared, a policy being rebuilt, a
full garbage collection. The decide latency histogram says *that* a request was slow; these two say
*why*: :class:`LoopLagProbe` sleeps a fixed interval and reports how late it woke (the lag any request
arriving then also saw), and :class:`GcPauseProbe` times each collection from ``gc.callbacks`` by
generation. Both only call sensor hooks (``on_loop_lag``, ``on_gc_pause``), as the rest of the engine does.

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
from typing import Any

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
