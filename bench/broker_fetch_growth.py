"""How the embedded broker's CPU grows with the log it holds (a property of the rig, not the engine).

    .venv/bin/python bench/broker_fetch_growth.py [--rate 2000] [--seconds 80] [--mode commit]

Produces ``--rate`` records/s of 700 bytes (a decision log record's size) into a 4-partition topic of
an embedded Tansu broker, one key (one experiment), as the engine's decide path does, while a consumer
group reads them back (``--mode commit``: and commits after each fetch, as ingestion does;
``nocommit``: reads only; ``noconsume``: nobody reads). Every 10 s it prints Tansu's CPU share over the
window (from ``/proc``) and the records consumed so far. Tansu's in-memory engine fetches at a cost that
grows with the records it holds, and it refuses ``DeleteRecords``, so a long benchmark that logs
decisions loads the broker's core more and more (docs/PERFORMANCE.md, "What accumulates"). Measures;
asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loadgen import run  # noqa: E402
from engine.services.embedded import EmbeddedKafka  # noqa: E402

WINDOW_S = 10.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def consume(bootstrap: str, commit: bool, counter: list[int]) -> None:
    consumer = AIOKafkaConsumer(
        "t",
        bootstrap_servers=bootstrap,
        group_id="g",
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    await consumer.start()
    try:
        while True:
            got = await consumer.getmany(timeout_ms=100, max_records=500)
            counter[0] += sum(len(v) for v in got.values())
            if got and commit:
                await consumer.commit()
    finally:
        await consumer.stop()


async def produce(bootstrap: str, pid: int, rate: int, seconds: float, mode: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic("t", 4, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    counter = [0]
    reader = None
    if mode != "noconsume":
        reader = asyncio.create_task(consume(bootstrap, mode == "commit", counter))
    value, sent = b"x" * 700, 0
    start = window = time.perf_counter()
    cpu0 = cpu_seconds(pid)
    print(f"{'s':>5} {'sent':>9} {'consumed':>9} {'tansu CPU':>10}")
    while time.perf_counter() - start < seconds:
        delay = start + sent / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await producer.send("t", value, key=b"experiment")
        sent += 1
        if time.perf_counter() - window >= WINDOW_S:
            cpu1, now = cpu_seconds(pid), time.perf_counter()
            share = (cpu1 - cpu0) / (now - window)
            print(f"{now - start:5.0f} {sent:9d} {counter[0]:9d} {share:10.2f}", flush=True)
            cpu0, window = cpu1, now
    if reader is not None:
        reader.cancel()
    await producer.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=int, default=2000, help="records produced per second")
    ap.add_argument("--seconds", type=float, default=80.0)
    ap.add_argument("--mode", choices=("commit", "nocommit", "noconsume"), default="commit")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedKafka(log_path=Path(tmp) / "tansu.log") as kafka:
        assert kafka.pid is not None
        run(produce(kafka.bootstrap_servers, kafka.pid, args.rate, args.seconds, args.mode))


if __name__ == "__main__":
    main()
