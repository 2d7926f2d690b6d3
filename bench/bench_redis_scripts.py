"""What long Redis scripts cost the decide path: memory reads while ingestion joins batches.

    .venv/bin/python bench/bench_redis_scripts.py [--items 64,10000] [--trips 1] [--rounds 3] [--seconds 10]

Redis runs one command at a time, and a Lua script is one command: while the ledger joins a batch
(``engine/store/apply_events.lua``, 10-13 µs of Redis CPU per event), no memory read of a decision is
served. Against one embedded Redis, a writer process records and joins 500-event batches through
``RewardLedger`` as fast as it can (``script_items`` events per script call, ``ABENGINE_REDIS_SCRIPT_ITEMS``),
while this process reads user memories as the decide path does (``UserMemoryStore.read``, one MGET of
one user on the pipelined connection, 1,000 a second, paced from one loop) and times each read. For
each ``--items`` value and each ``--trips`` value (scripts sent per round trip,
``ABENGINE_REDIS_SCRIPTS_PER_TRIP``) in turn, ``--rounds`` times alternating: read p50 / p99 / max,
the share of reads over the decide path's 5 ms budget (those decisions would be served without
memory), the writer's events joined per second, and the Redis CPU time of one script call
(``INFO commandstats``: how long Redis served nothing else). Writes
docs/results/bench_redis_scripts.json. Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.memory.store import UserMemoryStore  # noqa: E402
from engine.services.embedded import EmbeddedRedis  # noqa: E402

#: the writer: record 500 decisions and join an impression for each, batch after batch, until killed;
#: prints the events joined so far after every batch
WRITER = """
import asyncio, sys, uuid
from datetime import UTC, datetime
import redis.asyncio as aioredis
from engine.store.keys import Keys
from engine.store.ledger import RewardLedger
from schemas import DecisionLog, ImpressionEvent
url, items, trips = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
async def main():
    client = aioredis.Redis.from_url(url)
    keys = Keys(prefix=f"w{items}x{trips}")
    ledger = RewardLedger(client, keys, stream_maxlen=100_000, grace_s=30.0, script_items=items,
                          scripts_per_trip=trips)
    done = 0
    while True:
        now = datetime.now(UTC)
        ds = [DecisionLog(decision_id=uuid.uuid4().hex, experiment_id="e", variant_id="v1",
                          content="Headline", propensity=0.5, allocator="thompson", model_version=1,
                          timestamp=now, user_id=f"u{i}")
              for i in range(500)]
        await ledger.record_decisions(ds, {"e": 3600.0})
        evs = [ImpressionEvent(event_id=uuid.uuid4().hex, decision_id=d.decision_id, experiment_id="e",
                               event_time=now) for d in ds]
        await ledger.apply_events("e", [(e, e.model_dump_json().encode()) for e in evs], 3600.0)
        done += len(evs)
        print(done, flush=True)
asyncio.run(main())
"""

BUDGET_MS = 5.0


async def timed_reads(url: str, seconds: float, rate: float) -> list[float]:
    """Read one user's memory ``rate`` times a second for ``seconds``; each read's latency in ms."""
    store = UserMemoryStore(url, width=18, max_len=32, timeout_s=1.0)
    users = [f"user-{i}" for i in range(1000)]
    recs = np.random.default_rng(0).random((32, 18), dtype=np.float32)
    await store.put_many({u: recs for u in users})
    out: list[float] = []
    t_next, end, i = time.perf_counter(), time.perf_counter() + seconds, 0
    while t_next < end:
        delay = t_next - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        t0 = time.perf_counter()
        await store.read([users[i % len(users)]])
        out.append((time.perf_counter() - t0) * 1000)
        t_next += 1.0 / rate
        i += 1
    await store.aclose()
    return out


def script_stats(url: str, reset: bool = False) -> tuple[int, int]:
    """(script calls, µs of Redis CPU in them) since the last reset (``INFO commandstats``)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        if reset:
            client.config_resetstat()
        stat = client.info("commandstats").get("cmdstat_evalsha", {})
        return int(stat.get("calls", 0)), int(stat.get("usec", 0))
    finally:
        client.close()


def measure(url: str, items: int, seconds: float, rate: float, trips: int = 1) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    script_stats(url, reset=True)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, url, str(items), str(trips)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first = int(writer.stdout.readline())  # type: ignore[union-attr]  # the writer is running
        t0 = time.monotonic()
        lat = np.array(uvloop.run(timed_reads(url, seconds, rate)))
        elapsed = time.monotonic() - t0
    finally:
        writer.terminate()
        tail = writer.communicate(timeout=30)[0].split()
    joined = int(tail[-1]) - first if tail else 0
    calls, usec = script_stats(url)
    return {
        "script_items": items,
        "scripts_per_trip": trips,
        "redis_us_per_script": round(usec / max(calls, 1)),
        "reads": len(lat),
        "read_p50_ms": round(float(np.percentile(lat, 50)), 3),
        "read_p99_ms": round(float(np.percentile(lat, 99)), 3),
        "read_max_ms": round(float(lat.max()), 3),
        "reads_over_budget_pct": round(float((lat > BUDGET_MS).mean() * 100), 2),
        "writer_events_per_s": round(joined / elapsed),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", default="64,10000", help="script_items values, measured in turn")
    ap.add_argument("--trips", default="1", help="scripts per round trip, measured in turn")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=1000.0, help="memory reads per second")
    ap.add_argument("--out", default=str(ROOT / "docs" / "results" / "bench_redis_scripts.json"))
    args = ap.parse_args()
    rows = []
    with EmbeddedRedis(Path(tempfile.mkdtemp(prefix="bench-scripts-"))) as redis:
        for _ in range(args.rounds):
            for items, trips in itertools.product(
                (int(x) for x in args.items.split(",")), [int(x) for x in args.trips.split(",")]
            ):
                row = measure(redis.url, items, args.seconds, args.rate, trips)
                rows.append(row)
                print(
                    f"script_items {items:>6} x{trips:<4}: reads p50 {row['read_p50_ms']:.3f}"
                    f" / p99 {row['read_p99_ms']:.3f} / max {row['read_max_ms']:.1f} ms,"
                    f" {row['reads_over_budget_pct']:.2f}% over"
                    f" {BUDGET_MS:g} ms; writer {row['writer_events_per_s']:,} events/s;"
                    f" Redis CPU per script {row['redis_us_per_script']:,} µs",
                    flush=True,
                )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {
                "machine": os.uname().nodename,
                "cpus": os.cpu_count(),
                "when": time.strftime("%FT%TZ", time.gmtime()),
                "args": vars(args),
                "rows": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
