"""Open-loop and closed-loop HTTP load generation (run in its own process).

Open loop: request i is *scheduled* at t0 + i/rate whatever happened before,
and its latency counts from the scheduled time, so a slow server cannot hide
its queueing (no coordinated omission). Closed loop: C connections send back to
back, which measures saturated throughput; :func:`wrk_closed_loop` does it with wrk (native, so the
generator is not the ceiling: a bare aiohttp endpoint reached 14,800-28,000 req/s under wrk in two runs
here, against ~3,900 under the Python closed loop in the runs of 2026-11-22).
"""

from __future__ import annotations

import asyncio
import gc
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import numpy as np
import orjson
import uvloop

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a generator coroutine on uvloop: the generator shares its core with Redis and the broker,
    and every CPU-second it saves is one they (and so the server's latency) get back."""
    return uvloop.run(coro)


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

        async def one(i: int, scheduled: float) -> None:
            nonlocal errors
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

        # one pacing loop starts each request at its scheduled time (not n sleeping tasks up front), and the
        # generator's own collector is off while it measures, so its pauses are not charged to the server
        tasks: list[asyncio.Task[None]] = []
        gc.disable()
        try:
            t0 = time.perf_counter() + 0.05
            for i in range(n):
                scheduled = t0 + i / rate
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(i, scheduled)))
            await asyncio.gather(*tasks)
            elapsed = time.perf_counter() - t0
        finally:
            gc.enable()
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


#: wrk script: a POST per request with the same body shape as bench_decide.body (user ids rotate over 5,000,
#: segments over 3), and a JSON line of results at the end.
WRK_SCRIPT = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local i = 0
request = function()
  i = i + 1
  local ctx = ({"homepage", "newsletter", "search: spring jackets"})[i % 3 + 1]
  local body = string.format('{"user_id":"user-%d","attributes":{"segment":"s%d"},"context":"%s"}',
                             i % 5000, i % 3, ctx)
  return wrk.format(nil, nil, nil, body)
end
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
                 + summary.errors.status + summary.errors.timeout
  io.write(string.format('WRK_JSON {"requests": %d, "seconds": %.6f, "errors": %d, ' ..
                         '"p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration / 1e6, errors,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def wrk_closed_loop(url: str, seconds: float, connections: int = 32, core: int | None = 1) -> dict:
    """Saturated throughput with wrk (one thread, ``connections`` keep-alive connections), as a row."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as f:
        f.write(WRK_SCRIPT)
        f.flush()
        cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", f.name, url]
        if core is not None:
            cmd = ["taskset", "-c", str(core), *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    r = json.loads(next(line for line in out.splitlines() if line.startswith("WRK_JSON "))[9:])
    ok = r["requests"] - r["errors"]
    return {
        "offered_rps": None,
        "achieved_rps": round(ok / r["seconds"], 1),
        "ok": ok,
        "errors": r["errors"],
        "p50_ms": r["p50_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "max_ms": r["max_us"] / 1000,
    }
