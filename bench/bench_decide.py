"""End-to-end HTTP decide benchmark on one worker, with reference peers in the same run.

    .venv/bin/python bench/bench_decide.py [--rates 500,1000,2000,4000] [--seconds 5] [--allocator thompson]

Starts an embedded broker and Redis, the reference endpoints (aiohttp + pydantic + uvloop,
without and with a Redis read) and a real `abengine worker`, each pinned to core 0, then
drives them from this process pinned to core 1: open loop at fixed offered rates (latency
from the scheduled send time) and closed loop with 32 connections (saturated throughput).
Prints a table, ratios engine/peer, and writes docs/results/bench_decide.json. Measures;
asserts nothing.
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
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loadgen import closed_loop, open_loop  # noqa: E402
from engine.services.embedded import EmbeddedKafka, EmbeddedRedis, free_port  # noqa: E402


def pinned(
    cmd: list[str], core: int, env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen:
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(["taskset", "-c", str(core), *cmd], env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_http(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(url)


def body(i: int) -> dict:
    return {
        "user_id": f"user-{i % 5000}",
        "attributes": {"segment": "s" + str(i % 3)},
        "context": ["homepage", "newsletter", "search: spring jackets"][i % 3],
    }


async def measure(name: str, url: str, rates: list[int], seconds: float) -> list[dict]:
    rows = []
    await closed_loop(url, body, 1.0, 16)  # warm up
    for rate in rates:
        r = await open_loop(url, body, rate, seconds)
        rows.append({"target": name, "mode": "open", **r.row()})
    r = await closed_loop(url, body, seconds, 32)
    rows.append({"target": name, "mode": "closed-32", **r.row()})
    r = await closed_loop(url, body, seconds, 1)
    rows.append({"target": name, "mode": "closed-1", **r.row()})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="500,1000,2000,4000")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--allocator", default="thompson")
    ap.add_argument("--out", default=str(ROOT / "docs" / "results" / "bench_decide.json"))
    args = ap.parse_args()
    rates = [int(x) for x in args.rates.split(",")]
    os.sched_setaffinity(0, {1})
    tmp = Path(tempfile.mkdtemp(prefix="bench-decide-"))
    procs: list[subprocess.Popen] = []
    rows: list[dict] = []
    with EmbeddedKafka(log_path=tmp / "tansu.log") as kafka, EmbeddedRedis(tmp / "redis") as redis:
        try:
            py = sys.executable
            p_plain, p_redis, p_engine = free_port(), free_port(), free_port()
            procs.append(pinned([py, str(ROOT / "bench" / "peer_http.py"), str(p_plain)], 0))
            procs.append(pinned([py, str(ROOT / "bench" / "peer_http.py"), str(p_redis), redis.url], 0))
            env = {
                **os.environ,
                "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
                "REDIS_URL": redis.url,
                "ABENGINE_HTTP_PORT": str(p_engine),
                "ABENGINE_LOG_LEVEL": "warning",
                "ABENGINE_TOPIC_PARTITIONS": "4",
            }
            procs.append(pinned([py, "-m", "engine.cli", "worker"], 0, env, tmp / "worker.log"))
            engine = f"http://127.0.0.1:{p_engine}"
            wait_http(f"{engine}/readyz")
            spec = {
                "id": "bench",
                "allocator": args.allocator,
                "variants": [{"id": f"v{i}", "text": f"Headline number {i}"} for i in range(10)],
            }
            r = httpx.post(f"{engine}/v1/experiments", json=spec, timeout=30)
            assert r.status_code == 201, r.text
            for name, url in (
                ("aiohttp+pydantic", f"http://127.0.0.1:{p_plain}/decide"),
                ("aiohttp+pydantic+redis", f"http://127.0.0.1:{p_redis}/decide"),
                (f"abengine ({args.allocator})", f"{engine}/v1/experiments/bench/decide"),
            ):
                if "abengine" not in name:
                    wait_http(url.replace("/decide", "/"))
                rows += asyncio.run(measure(name, url, rates, args.seconds))
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(10)
    print(
        f"{'target':32} {'mode':10} {'offered':>8} {'achieved':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}"
    )
    for r in rows:
        print(
            f"{r['target']:32} {r['mode']:10} {r['offered_rps'] or '-':>8} {r['achieved_rps']:>9} "
            f"{r['p50_ms']:>8} {r['p99_ms']:>8} {r['errors']:>6}"
        )
    sat = {r["target"]: r["achieved_rps"] for r in rows if r["mode"] == "closed-32"}
    eng = next(v for k, v in sat.items() if k.startswith("abengine"))
    for k, v in sat.items():
        if not k.startswith("abengine"):
            print(f"saturated throughput engine / {k}: {eng / v:.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {"machine": os.uname().nodename, "cpus": os.cpu_count(), "seconds": args.seconds, "rows": rows},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
