"""Users who see what they were served: an impression for every logged decision, a click for some.

    .venv/bin/python bench/reward_echo.py BOOTSTRAP [--click-rate 0.1] [--experiments a,b]

Reads the decision log from its end (no consumer group: every partition, from now on) and writes, for
each decision of the named experiments (all when none are named), an impression and, for a
``--click-rate`` share of them (chosen by a hash of the decision id, so a re-read decision gets the same
answer), a click — keyed by experiment id like every engine record, so each lands in its decision's
partition. ``bench_decide.py`` runs it beside a worker so that the decide rows marked "learning" are
measured while the worker joins these events and learns from them, as a serving worker does in
production. Runs until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.config import Settings  # noqa: E402
from producers.kafka import EventProducer  # noqa: E402


def clicked(decision_id: str, rate: float) -> bool:
    """Whether this decision's user clicks (deterministic in the id).

    >>> sum(clicked(f"d{i}", 0.1) for i in range(10_000))
    995
    """
    h = int.from_bytes(hashlib.blake2b(decision_id.encode(), digest_size=8).digest(), "big")
    return h / 2**64 < rate


def events_for(decision: dict, rate: float, now: str) -> list[tuple[str, str, bytes]]:
    """(logical topic, key, value) of the impression and, maybe, the click of one logged decision."""
    exp, did = decision["experiment_id"], decision["decision_id"]
    base = {"decision_id": did, "experiment_id": exp, "event_time": now, "user_id": decision.get("user_id")}
    out = [("impressions", exp, orjson.dumps({"type": "impression", "event_id": f"i-{did}", **base}))]
    if clicked(did, rate):
        out.append(("clicks", exp, orjson.dumps({"type": "click", "event_id": f"c-{did}", **base})))
    return out


async def echo(bootstrap: str, rate: float, experiments: set[str]) -> None:
    settings = Settings()
    topic = settings.topic("decisions")
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    producer = EventProducer(bootstrap, settings)
    await producer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        while True:
            batches = await consumer.getmany(timeout_ms=100, max_records=2000)
            now = datetime.now(UTC).isoformat()
            out: list[tuple[str, str, bytes]] = []
            for records in batches.values():
                for rec in records:
                    decision = orjson.loads(rec.value)
                    if not experiments or decision["experiment_id"] in experiments:
                        out += events_for(decision, rate, now)
            if out:
                await producer.send_many(out)
    finally:
        await producer.stop()
        await consumer.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bootstrap")
    ap.add_argument("--click-rate", type=float, default=0.1)
    ap.add_argument("--experiments", default="", help="comma-separated ids (default: every experiment)")
    args = ap.parse_args()
    wanted = {e for e in args.experiments.split(",") if e}
    asyncio.run(echo(args.bootstrap, args.click_rate, wanted))


if __name__ == "__main__":
    main()
