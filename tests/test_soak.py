"""A 10-minute soak at a steady load on one worker (opt-in: ABENGINE_SOAK=1; ABENGINE_SOAK_S to shorten;
ABENGINE_SOAK_ALLOCATOR=thompson for the allocator the runs before 2026-12-06 used, actor_critic — the
default — to drive the decide rounds, the Redis user memories and the torch learner too).

Bounds checked: no failed request, every distinct event applied once, the worker's resident
memory grows by at most 150 MB between the end of warm-up (first 20% of the run) and the end, and
its event loop never stalled for a second or more (``abengine_event_loop_lag_seconds``). The report
also gives the garbage collector's pauses by generation, over the whole run and after warm-up.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import httpx
import psutil
import pytest

from engine.stalls import StallReading
from producers.kafka import EventProducer
from producers.traffic import Segment, TrafficGenerator
from tests.cluster import Cluster
from tests.test_worker_e2e import applied, settings, status, wait_for

pytestmark = [
    pytest.mark.soak,
    pytest.mark.skipif(os.environ.get("ABENGINE_SOAK") != "1", reason="soak test is opt-in: ABENGINE_SOAK=1"),
]
RSS_GROWTH_BOUND_MB = 150.0


def stalls(url: str) -> dict[str, float]:
    """The worker's loop-lag samples (all, over 50 ms, over 1 s) and GC pauses (count, seconds) by
    generation, from its /metrics."""
    r = StallReading.parse(httpx.get(f"{url}/metrics", timeout=10).text)
    out = {f"gc{g}_pauses": round(n, 3) for g, n in r.gc_pauses.items()}
    out |= {f"gc{g}_seconds": round(sec, 3) for g, sec in r.gc_seconds.items()}
    out["loop_lag_samples"] = r.loop_lag_le["+Inf"]
    out["loop_lag_over_50ms"] = r.lag_over("0.05")
    out["loop_lag_over_1s"] = r.lag_over("1.0")
    return out


def test_soak_steady_load(tmp_path: Path) -> None:
    seconds = float(os.environ.get("ABENGINE_SOAK_S", "600"))
    rate = 150.0  # decisions per second, each with 1-3 events
    cluster = Cluster(tmp_path)
    try:
        w = cluster.add_worker("soak")
        w.wait_ready()
        allocator = os.environ.get("ABENGINE_SOAK_ALLOCATOR", "actor_critic")
        spec = {
            "id": "soak",
            "allocator": allocator,
            "variants": [{"id": "a", "text": "Headline A"}, {"id": "b", "text": "Headline B"}],
            # the generator's requests carry segment=all
            **(
                {"allocator_config": {"schema": {"categorical": {"segment": ["all"]}}}}
                if allocator == "actor_critic"
                else {}
            ),
        }
        assert httpx.post(f"{w.url}/v1/experiments", json=spec, timeout=60).status_code == 201
        proc = psutil.Process(w.proc.pid)  # type: ignore[union-attr]
        samples: list[tuple[float, float]] = []
        warm_stalls: dict[str, float] = {}  # the stall metrics at the end of warm-up

        async def drive() -> tuple[int, int, int]:
            producer = EventProducer(cluster.kafka.bootstrap_servers, settings())
            await producer.start()
            gen = TrafficGenerator(
                w.url,
                "soak",
                [Segment("all", 1.0, {"a": 0.05, "b": 0.08})],
                producer,
                concurrency=4,
                duplicate_rate=0.02,
                seed=1,
            )
            t0 = time.monotonic()
            sent = 0
            while time.monotonic() - t0 < seconds:
                tick = time.monotonic()
                await gen.run(int(rate))  # one second's worth
                sent += int(rate)
                samples.append((time.monotonic() - t0, proc.memory_info().rss / 2**20))
                if not warm_stalls and samples[-1][0] >= 0.2 * seconds:  # end of warm-up
                    warm_stalls.update(await asyncio.to_thread(stalls, w.url))
                await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
            await producer.stop()
            return sent, gen.stats.distinct_events, gen.stats.errors

        decisions, distinct, stats_errors = asyncio.run(drive())
        try:
            body = wait_for(
                lambda: (s := status(w.url, "soak")) and applied(s) >= distinct and s, timeout=600
            )
        except AssertionError:
            final = status(w.url, "soak")
            raise AssertionError(f"sent {distinct} distinct events, ledger {final['ledger']}") from None
        assert applied(body) == distinct
        warm = [m for t, m in samples if t >= 0.2 * seconds]
        growth = warm[-1] - warm[0]
        report = {
            "allocator": allocator,
            "seconds": seconds,
            "decisions": decisions,
            "distinct_events": distinct,
            "http_errors": stats_errors,
            "rss_start_mb": round(warm[0], 1),
            "rss_end_mb": round(warm[-1], 1),
            "rss_max_mb": round(max(m for _, m in samples), 1),
            "duplicates_ledger": sum(v for k, v in body["ledger"].items() if k.startswith("duplicate:")),
            **(end := stalls(w.url)),
            # after warm-up only: start-up's own full collections (before its heap freezes) excluded
            **{f"after_warmup_{k}": round(end[k] - warm_stalls[k], 3) for k in ("gc2_pauses", "gc2_seconds")},
            "after_warmup_loop_lag_over_50ms": end["loop_lag_over_50ms"] - warm_stalls["loop_lag_over_50ms"],
        }
        (Path(os.environ.get("ABENGINE_SOAK_REPORT", tmp_path / "soak.json"))).write_text(
            json.dumps(report, indent=2)
        )
        print("soak:", report)
        assert stats_errors == 0
        assert growth <= RSS_GROWTH_BOUND_MB, report
        assert report["loop_lag_over_1s"] == 0, report
        assert httpx.get(f"{w.url}/readyz").json()["status"] == "ready"
    finally:
        cluster.close()
