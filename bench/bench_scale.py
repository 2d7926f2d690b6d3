"""Scale-out on one machine: ingestion throughput and rebalancing time with 1, 2 and 3 workers.

    .venv/bin/python bench/bench_scale.py [--decisions 20000] [--workers 1,2,3]

For each worker count: N `abengine worker` processes started together in a fresh consumer group on
topics of their own (8 partitions, 8 experiments, a fresh Redis ledger); reports (a) rebalancing
time: from the start until every partition is owned and the owners are disjoint, read from /readyz;
(b) a backlog (decisions, impressions, clicks) produced before the workers start, timed from the
first applied event to the last: events/s and records/s of N workers draining it together.
Writes docs/results/bench_scale.json. Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_ingest import fill  # noqa: E402
from bench.procs import stop  # noqa: E402
from engine.config import Settings  # noqa: E402
from engine.services.embedded import EmbeddedKafka, EmbeddedRedis, free_port  # noqa: E402
from engine.store import Keys  # noqa: E402
from schemas import Experiment, ExperimentSpec  # noqa: E402

PARTITIONS = 8


def reset(client: redis.Redis, exp_ids: list[str]) -> None:
    client.flushall()
    now = datetime.now(UTC)
    for e in exp_ids:
        spec = ExperimentSpec(id=e, variants=[{"id": "a", "text": "A"}, {"id": "b", "text": "B"}])
        client.hset(Keys().experiments, e, Experiment.from_spec(spec, now).model_dump_json())
    client.incr(Keys().experiments_rev)


def applied(client: redis.Redis, exp_ids: list[str]) -> int:
    total = 0
    for e in exp_ids:
        c = client.hgetall(Keys().ledger(e))
        total += sum(int(v) for k, v in c.items() if k.startswith((b"applied:", b"repeat:")))
    return total


def run(
    n: int, kafka: str, redis_url: str, tmp: Path, decisions: int, exp_ids: list[str], rep: int = 0
) -> dict:
    """N workers draining one backlog: the backlog is produced first (topics of their own), then the
    workers start together and are timed from the first applied event to the last.

    Filling first matters: workers that consume while the backlog is produced keep up with the
    producer, and the rate measured is the producer's (the first version of this script did that).
    Workers started together join one group generation (the broker waits for members before the
    first assignment), so the drain is N workers' steady state; a later rebalance inside the drain
    is part of what is measured, and the row says how many ownership changes /readyz saw."""
    client = redis.Redis.from_url(redis_url)
    reset(client, exp_ids)
    settings = Settings(topic_partitions=PARTITIONS, topic_prefix=f"scale{n}r{rep}")
    sent = asyncio.run(fill(kafka, settings, exp_ids, decisions))  # fill() creates the topics
    events = sent - decisions
    ports = [free_port() for _ in range(n)]
    procs = []
    for i, port in enumerate(ports):
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": kafka,
            "ABENGINE_KAFKA_BROKER": "tansu",
            "REDIS_URL": redis_url,
            "ABENGINE_CONSUMER_GROUP": f"scale-{n}-{rep}",
            "ABENGINE_TOPIC_PREFIX": settings.topic_prefix,
            "ABENGINE_HTTP_PORT": str(port),
            "ABENGINE_TOPIC_PARTITIONS": str(PARTITIONS),
            "ABENGINE_LOG_LEVEL": "warning",
            "ABENGINE_RANKER_ENABLED": "0",
            "ABENGINE_BATCH_SIZE": "2000",
        }
        log = open(tmp / f"scale-{n}-{i}.log", "ab")  # noqa: SIM115
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "engine.cli", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        )
    t_start = time.perf_counter()
    rebalance: float | None = None
    t_first = t_last = None
    n_first = 0
    assignments: list[tuple[tuple[int, ...] | None, ...]] = []
    try:
        while True:
            now = time.perf_counter()
            owned = []
            for port in ports:  # (a) start until every partition is owned, by disjoint owners
                try:
                    got = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).json()["partitions"]
                    owned.append(tuple(got) if got else None)
                except (httpx.HTTPError, ValueError, KeyError):
                    owned.append(None)
            if not assignments or assignments[-1] != tuple(owned):
                assignments.append(tuple(owned))
            flat = sorted(p for o in owned if o for p in o)
            if rebalance is None and all(owned) and flat == list(range(PARTITIONS)):
                rebalance = now - t_start
            done = applied(client, exp_ids)  # (b) from the first applied event to the last
            if done and t_first is None:
                t_first, n_first = now, done
            if done >= events:
                t_last = time.perf_counter()
                if rebalance is not None:
                    break
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("a worker died")
            if now - t_start > 600:
                raise TimeoutError(f"scale run took longer than 10 minutes: {done} of {events} applied")
            time.sleep(0.05)
        rate = (events - n_first) / (t_last - t_first)  # type: ignore[operator]
    finally:
        stop(procs)
    return {
        "workers": n,
        "events_per_s": round(rate),
        "records_per_s": round(rate * sent / events),
        "start_to_all_partitions_owned_s": round(rebalance, 2),
        "drain_s": round(t_last - t_first, 2),  # type: ignore[operator]
        "ownership_changes_seen": len(assignments) - 1,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--decisions", type=int, default=20000)
    ap.add_argument("--workers", default="1,2,3")
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each worker count this many times (fresh topics and group each time): a soak of "
        "start-up and rebalancing; a run that stalls fails at the 10-minute limit",
    )
    ap.add_argument("--out", default=str(ROOT / "docs" / "results" / "bench_scale.json"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    rows = []
    with EmbeddedKafka(log_path=tmp / "tansu.log") as kafka, EmbeddedRedis(tmp / "redis") as red:
        exp_ids = [f"exp{i}" for i in range(8)]
        for n in (int(x) for x in args.workers.split(",")):
            for rep in range(args.repeat):
                row = run(n, kafka.bootstrap_servers, red.url, tmp, args.decisions, exp_ids, rep)
                rows.append(row)
                print(row, flush=True)
    base = rows[0]["events_per_s"]
    for r in rows:
        print(
            f"{r['workers']} worker(s): {r['events_per_s']:,} events/s "
            f"({r['events_per_s'] / base:.2f}x of 1), "
            f"all partitions owned {r['start_to_all_partitions_owned_s']} s after start"
        )
    Path(args.out).write_text(
        json.dumps({"partitions": PARTITIONS, "decisions": args.decisions, "rows": rows}, indent=2)
    )


if __name__ == "__main__":
    main()
