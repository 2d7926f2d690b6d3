"""Ingestion throughput per worker: records consumed, validated, joined and learned per second.

    .venv/bin/python bench/bench_ingest.py [--decisions 20000] [--modes batch,faust] [--profile 12]

Fills the topics of an embedded broker with a backlog (decisions, impressions, clicks; normal
producer batching), then starts one `abengine worker` per mode and times it from the first
applied event to the last (group join and start-up excluded). Peer in the same run: a raw
aiokafka `getmany` loop that only parses the same records as JSON (the floor of any consumer
in Python). Prints ratios; writes docs/results/bench_ingest.json. Measures; asserts nothing.

``--profile S`` samples each worker with py-spy (``pip install -e '.[bench]'``) for S seconds from its
first applied event, so the profile holds the drain alone (start-up and group join excluded), and
prints the functions holding the most samples; the folded stacks go to ``<out>.<mode>.folded``.
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
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.procs import stop  # noqa: E402
from engine.config import Settings  # noqa: E402
from engine.services.embedded import EmbeddedKafka, EmbeddedRedis, free_port  # noqa: E402
from engine.store import Keys  # noqa: E402
from producers.kafka import EventProducer, ensure_topics  # noqa: E402
from schemas import DecisionLog, Experiment, ExperimentSpec  # noqa: E402


async def fill(bootstrap: str, settings: Settings, exp_ids: list[str], n: int) -> int:
    await ensure_topics(bootstrap, settings)
    p = EventProducer(bootstrap, settings, linger_ms=20)
    await p.start()
    sent = 0
    now = datetime.now(UTC)
    for i in range(n):
        exp = exp_ids[i % len(exp_ids)]
        did = uuid.uuid4().hex
        d = DecisionLog(
            decision_id=did,
            experiment_id=exp,
            variant_id="ab"[i % 2],
            content="x",
            propensity=0.5,
            allocator="thompson",
            model_version=0,
            timestamp=now,
            user_id=f"u{i}",
        )
        await p.send("decisions", exp, d.model_dump_json().encode())
        ev = {
            "event_id": uuid.uuid4().hex,
            "decision_id": did,
            "experiment_id": exp,
            "event_time": now.isoformat(),
        }
        await p.send("impressions", exp, orjson.dumps({**ev, "type": "impression"}))
        sent += 2
        if i % 10 == 0:
            await p.send("clicks", exp, orjson.dumps({**ev, "event_id": uuid.uuid4().hex, "type": "click"}))
            sent += 1
    await p.flush()
    await p.stop()
    return sent


async def raw_getmany(bootstrap: str, settings: Settings, total: int) -> float:
    from aiokafka import AIOKafkaConsumer

    topics = [settings.topic(t) for t in ("decisions", "impressions", "clicks")]
    c = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        enable_auto_commit=False,
        max_poll_records=2000,
    )
    await c.start()
    seen = 0
    t0 = None
    try:
        while seen < total:
            batch = await c.getmany(timeout_ms=500, max_records=2000)
            for msgs in batch.values():
                if t0 is None:
                    t0 = time.perf_counter()
                for m in msgs:
                    json.loads(m.value)
                seen += len(msgs)
    finally:
        await c.stop()
    return seen / (time.perf_counter() - (t0 or time.perf_counter()))


#: Frames worth naming in the summary: the engine's own code and the libraries on its hot path ...
PROFILE_MODULES = ("engine/", "consumers/", "producers/", "aiokafka/", "redis/", "pydantic/", "sentence_")
#: ... except the worker's entry frames, which every stack of the main thread holds.
ENTRY_FRAMES = (
    "<module> (engine/cli.py",
    "worker_cmd (engine/cli_worker.py",
    "run_worker (engine/cli_worker.py",
)


def summarize_profile(folded: Path, top: int = 25) -> str:
    """The engine's and hot-path libraries' functions with the most samples (inclusive, once per stack)."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        total += int(n)
        frames = {f.split(":")[0] for f in stack.split(";") if any(m in f for m in PROFILE_MODULES)}
        for frame in frames.difference(ENTRY_FRAMES):
            inclusive[frame.replace(" (", "  (") + ")"] += int(n)
    rows = [f"{n:7d} {100 * n / max(total, 1):5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join([f"{total} samples of the drain (inclusive share per function):", *rows])


def start_profiler(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes]:
    spy = Path(sys.executable).with_name("py-spy")
    cmd = [str(spy), "record", "-p", str(pid), "-d", str(seconds), "-r", "250", "-f", "raw", "-o", str(out)]
    return subprocess.Popen([*cmd, "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_worker(
    mode: str,
    kafka: str,
    redis_url: str,
    group: str,
    tmp: Path,
    expected: int,
    exp_ids: list[str],
    profile_s: int = 0,
    profile_out: Path | None = None,
) -> tuple[float, int]:
    """(reward events/s of the drain, how many events had to wait for their decision)."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "ABENGINE_KAFKA_BROKER": "tansu",
        "REDIS_URL": redis_url,
        "ABENGINE_INGEST_MODE": mode,
        "ABENGINE_CONSUMER_GROUP": group,
        "ABENGINE_HTTP_PORT": str(free_port()),
        "ABENGINE_TOPIC_PARTITIONS": "4",
        "ABENGINE_LOG_LEVEL": "warning",
        "ABENGINE_BATCH_SIZE": "2000",
    }
    log = open(tmp / f"worker-{mode}.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    r = redis.Redis.from_url(redis_url)
    keys = Keys()

    def counted(*prefixes: bytes) -> int:
        total = 0
        for e in exp_ids:
            c = r.hgetall(keys.ledger(e))
            total += sum(int(v) for k, v in c.items() if k.startswith(prefixes))
        return total

    def done() -> int:
        return counted(b"applied:", b"repeat:")

    spy = None
    try:
        base = done()
        t_first = None
        while True:
            n = done() - base
            if n > 0 and t_first is None:
                t_first, n_first = time.perf_counter(), n
                if profile_s and profile_out is not None:
                    spy = start_profiler(proc.pid, profile_s, profile_out)
            if n >= expected:
                break
            if proc.poll() is not None:
                raise RuntimeError(f"worker died: {(tmp / f'worker-{mode}.log').read_text()[-2000:]}")
            time.sleep(0.05)
        rate = (expected - n_first) / (time.perf_counter() - t_first)  # type: ignore[operator]
        if spy is not None:
            spy.wait(timeout=profile_s + 30)  # the worker idles once drained: keep it until sampled
        return rate, counted(b"waited:")
    finally:
        stop([proc])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--decisions", type=int, default=20000)
    ap.add_argument("--modes", default="batch,faust")
    ap.add_argument("--out", default=str(ROOT / "docs" / "results" / "bench_ingest.json"))
    ap.add_argument(
        "--profile", type=int, default=0, metavar="S", help="py-spy each worker for S s of its drain"
    )
    args = ap.parse_args()
    settings = Settings(topic_partitions=4)
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    results: dict[str, float] = {}
    waits: dict[str, int] = {}
    with EmbeddedKafka(log_path=tmp / "tansu.log") as kafka, EmbeddedRedis(tmp / "redis") as red:
        exp_ids = [f"exp{i}" for i in range(8)]
        client = redis.Redis.from_url(red.url)
        now = datetime.now(UTC)
        for e in exp_ids:
            spec = ExperimentSpec(id=e, variants=[{"id": "a", "text": "A"}, {"id": "b", "text": "B"}])
            client.hset(Keys().experiments, e, Experiment.from_spec(spec, now).model_dump_json())
        client.incr(Keys().experiments_rev)
        t0 = time.perf_counter()
        sent = asyncio.run(fill(kafka.bootstrap_servers, settings, exp_ids, args.decisions))
        print(f"backlog: {sent} records produced in {time.perf_counter() - t0:.1f}s")
        results["raw aiokafka getmany + json"] = asyncio.run(
            raw_getmany(kafka.bootstrap_servers, settings, sent)
        )
        events = sent - args.decisions
        for i, mode in enumerate(args.modes.split(",")):
            # a fresh consumer group re-reads the backlog; the ledger already holds earlier runs' events,
            # so later runs measure the duplicate path; run one mode per fresh Redis for the join path
            client.flushall()
            for e in exp_ids:
                spec = ExperimentSpec(id=e, variants=[{"id": "a", "text": "A"}, {"id": "b", "text": "B"}])
                client.hset(Keys().experiments, e, Experiment.from_spec(spec, now).model_dump_json())
            client.incr(Keys().experiments_rev)
            folded = Path(f"{args.out}.{mode}.folded")
            rate_events, waited = run_worker(
                mode,
                kafka.bootstrap_servers,
                red.url,
                f"bench-{mode}-{i}",
                tmp,
                events,
                exp_ids,
                args.profile,
                folded,
            )
            results[f"abengine worker ({mode})"] = rate_events * sent / events  # records/s incl. decisions
            waits[mode] = waited
            print(f"{mode}: {waited:,} of {events:,} events fetched before their decision (waited, retried)")
            if args.profile and folded.exists():
                print(f"--- {mode}: {folded}\n{summarize_profile(folded)}")
    print(f"{'consumer':34} {'records/s':>12}")
    for k, v in results.items():
        print(f"{k:34} {v:12,.0f}")
    raw = results["raw aiokafka getmany + json"]
    for k, v in results.items():
        if k.startswith("abengine"):
            print(f"{k} / raw getmany: {v / raw:.3f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"records": sent, "results": results, "waited": waits}, indent=2))


if __name__ == "__main__":
    main()
