"""Open-loop and closed-loop HTTP load generation (run in its own process).

Open loop: request i is *scheduled* at t0 + i/rate whatever happened before,
and its latency counts from the scheduled time, so a slow server cannot hide
its queueing (no coordinated omission). Closed loop: C connections send back to
back, which measures saturated throughput.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import numpy as np
import orjson


@dataclass
class LoadResult:
    offered_rps: float | None
    sent: int
    ok: int
    errors: int
    seconds: float
    latencies_s: np.ndarray

    @property
    def achieved_rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q) * 1000) if len(self.latencies_s) else float("nan")

    def row(self) -> dict[str, float | int | None]:
        return {
            "offered_rps": self.offered_rps,
            "achieved_rps": round(self.achieved_rps, 1),
            "ok": self.ok,
            "errors": self.errors,
            "p50_ms": round(self.pct(50), 3),
            "p99_ms": round(self.pct(99), 3),
            "max_ms": round(self.pct(100), 3),
        }


async def open_loop(
    url: str, body: Callable[[int], dict], rate: float, seconds: float, connections: int = 64
) -> LoadResult:
    n = int(rate * seconds)
    lat = np.full(n, np.nan)
    errors = 0
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        t0 = time.perf_counter() + 0.05

        async def one(i: int) -> None:
            nonlocal errors
            scheduled = t0 + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                async with session.post(
                    url, data=orjson.dumps(body(i)), headers={"Content-Type": "application/json"}
                ) as resp:
                    await resp.read()
                    if resp.status == 200:
                        lat[i] = time.perf_counter() - scheduled
                    else:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1

        await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.perf_counter() - t0
    ok = lat[~np.isnan(lat)]
    return LoadResult(rate, n, len(ok), errors, elapsed, ok)


async def closed_loop(
    url: str, body: Callable[[int], dict], seconds: float, connections: int = 32
) -> LoadResult:
    lat: list[float] = []
    errors = 0
    counter = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal errors, counter
            while time.perf_counter() < deadline:
                counter += 1
                t = time.perf_counter()
                async with session.post(
                    url, data=orjson.dumps(body(counter)), headers={"Content-Type": "application/json"}
                ) as resp:
                    await resp.read()
                    if resp.status == 200:
                        lat.append(time.perf_counter() - t)
                    else:
                        errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - t0
    return LoadResult(None, counter, len(lat), errors, elapsed, np.array(lat))
