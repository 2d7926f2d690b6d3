"""Where a decide's time goes: the saturated decide rate with parts of the path switched off.

    .venv/bin/python bench/decide_ablation.py [--rounds 2] [--seconds 8] [--open-rate 1000]

Builds a throwaway git worktree of HEAD, applies ``bench/decide_ablation.patch`` there (an
``ABLATE`` environment variable that skips the Redis memory read (and its decide round) or the
decision log's produce;
never part of the engine; the worker's ingestion of its own decision log is switched off with the
real ``ABENGINE_INGEST_ENABLED=0``), and measures each
configuration with wrk (32 connections, core 1) against a fresh worker on core 0; Tansu and Redis
run on core 1 beside wrk, so core 0 holds the worker alone. Configurations alternate round by
round, because this VM's speed drifts. Prints req/s and the CPU time per decision each part costs
(the difference of 1/rate between neighbouring configurations); with ``--open-rate``, also the
worker's CPU per decision at that offered rate and what each part adds to it; writes
docs/results/decide_ablation.json. Measures; asserts nothing. Needs wrk.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_decide import body, experiments, pinned, stalls, wait_warm  # noqa: E402
from bench.loadgen import closed_loop, open_loop, run, wrk_available, wrk_closed_loop  # noqa: E402
from bench.procs import stop  # noqa: E402
from engine.services.embedded import EmbeddedKafka, EmbeddedRedis, free_port  # noqa: E402

#: (allocator, parts switched off), in the order each removes one more part of the path
CONFIGS = [
    ("actor_critic", ""),
    ("actor_critic", "memory"),
    ("actor_critic", "memory,ingest"),
    ("actor_critic", "memory,ingest,log"),
    ("thompson", ""),
    ("thompson", "ingest"),
    ("thompson", "ingest,log"),
]


@contextmanager
def rig(name: str) -> Iterator[tuple[Path, str, str]]:
    """The measuring rig: wrk present, this process (and wrk) on core 1, a scratch folder, Tansu and
    Redis started and moved to core 1, so core 0 holds the measured worker alone; yields (scratch
    folder, bootstrap servers, Redis URL)."""
    if not wrk_available():
        sys.exit("wrk is needed (apt-get install wrk)")
    os.sched_setaffinity(0, {1})
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    with EmbeddedKafka(log_path=tmp / "tansu.log") as kafka, EmbeddedRedis(tmp / "redis") as redis:
        for pid in (kafka._proc.pid, redis._server.pid):  # type: ignore[union-attr,attr-defined]
            os.sched_setaffinity(pid, {1})
        yield tmp, kafka.bootstrap_servers, redis.url


def worktree(tmp: Path) -> Path:
    """HEAD checked out beside the repository with the ablation switches patched in."""
    path = tmp / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), "HEAD"], check=True)
    subprocess.run(
        ["git", "-C", str(path), "apply", str(ROOT / "bench" / "decide_ablation.patch")], check=True
    )
    return path


def measure(
    tree: Path,
    kafka: str,
    redis_url: str,
    alloc: str,
    ablate: str,
    seconds: float,
    log: Path,
    open_rate: float = 0.0,
) -> dict:
    """Saturated wrk-32 rate of a fresh worker from ``tree``; with ``open_rate``, first the latency and the
    worker's CPU per decision at that offered rate (open loop, before wrk leaves the worker a decision
    log to ingest)."""
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "ABENGINE_KAFKA_BROKER": "tansu",
        "REDIS_URL": redis_url,
        "ABENGINE_HTTP_PORT": str(port),
        "ABENGINE_LOG_LEVEL": "warning",
        "ABENGINE_TOPIC_PARTITIONS": "4",
        "ABLATE": ablate,
        # the worker's ingestion of its decision log is off in a decide-only worker (a real setting)
        "ABENGINE_INGEST_ENABLED": "0" if "ingest" in ablate else "1",
        "PYTHONPATH": str(tree),  # the patched tree, not the editable install's
    }
    worker = pinned([sys.executable, "-m", "engine.cli", "worker"], 0, env, log, cwd=tree)
    try:
        engine = f"http://127.0.0.1:{port}"
        wait_warm(engine)
        [(_, url)] = experiments(engine, [alloc], "ablation", f"ablate{time.monotonic_ns()}", redis_url, tree)
        run(closed_loop(url, body, 1.0, 16))  # warm up
        time.sleep(1.0)
        latency: dict = {}
        if open_rate:
            before = stalls(engine)
            r = run(open_loop(url, body, open_rate, seconds)).row()
            cpu_s = stalls(engine).cpu_s - before.cpu_s
            latency = {f"open_{k}": r[k] for k in ("offered_rps", "achieved_rps", "p50_ms", "p99_ms")}
            # the worker's CPU per decision at that rate (ingesting its decision log included)
            latency["open_worker_cpu_us"] = round(cpu_s / max(r["ok"], 1) * 1e6, 1)
            time.sleep(1.0)
        got = wrk_closed_loop(url, seconds, 32)
        return {"allocator": alloc, "off": ablate or "-", **got, **latency}
    finally:
        stop([worker])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument(
        "--open-rate",
        type=float,
        default=0.0,
        help="also the worker's CPU per decision at this offered req/s (open loop), before wrk",
    )
    ap.add_argument("--out", default=str(ROOT / "docs" / "results" / "decide_ablation.json"))
    args = ap.parse_args()
    rows: list[dict] = []
    with rig("decide-ablation") as (tmp, kafka, redis_url):
        tree = worktree(tmp)
        try:
            for rnd in range(args.rounds):
                for alloc, ablate in CONFIGS:
                    row = measure(
                        tree, kafka, redis_url, alloc, ablate, args.seconds, tmp / "w.log", args.open_rate
                    )
                    row["round"] = rnd
                    rows.append(row)
                    cpu = (
                        f"   {row['open_worker_cpu_us']:6.0f} µs CPU/decision at {args.open_rate:.0f} req/s"
                        if args.open_rate
                        else ""
                    )
                    print(
                        f"round {rnd} {alloc:13} off={row['off']:18} {row['achieved_rps']:8.0f} req/s{cpu}",
                        flush=True,
                    )
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    mean = {
        (a, o or "-"): statistics.mean(
            r["achieved_rps"] for r in rows if (r["allocator"], r["off"]) == (a, o or "-")
        )
        for a, o in CONFIGS
    }
    print(f"\n{'allocator':13} {'switched off':20} {'req/s':>8} {'us/decision':>12} {'part costs us':>14}")
    prev: tuple[str, str] | None = None
    for a, o in CONFIGS:
        key = (a, o or "-")
        us = 1e6 / mean[key]
        part = "" if prev is None or prev[0] != a else f"{1e6 / mean[prev] - us:14.1f}"
        print(f"{a:13} {key[1]:20} {mean[key]:8.0f} {us:12.1f} {part}")
        prev = key
    if args.open_rate:
        print(f"\nworker CPU per decision at {args.open_rate:.0f} req/s offered (open loop), mean of rounds:")
        prev = None
        for a, o in CONFIGS:
            key = (a, o or "-")
            us = statistics.mean(r["open_worker_cpu_us"] for r in rows if (r["allocator"], r["off"]) == key)
            part = "" if prev is None or prev[0] != a else f"{prev[1] - us:14.1f}"
            print(f"{a:13} {key[1]:20} {us:12.1f} {part}")
            prev = (a, us)
    Path(args.out).write_text(
        json.dumps(
            {
                "machine": os.uname().nodename,
                "seconds": args.seconds,
                "rounds": args.rounds,
                "open_rate": args.open_rate,
                "rows": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
