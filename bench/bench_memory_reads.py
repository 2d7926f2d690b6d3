"""Micro-benchmark behind two decide-path choices: coalesced memory reads and the frozen heap.

    .venv/bin/python bench/bench_memory_reads.py [--reads 20000]

1. CPU per user-memory read against an embedded Redis (redis-py asyncio + hiredis, uvloop): the
   earlier format (a list per user: one LRANGE, pipelines of 1 and 32), this one (a string per user:
   one GET, one MGET of 32), the same MGETs on the decide path's pipelined connection
   (``engine.store.pipelined``) beside redis-py's, and ``UserMemoryStore.read`` of 1 and of 32 users
   (one MGET: a decide round of ``engine.rounds``). Why the decide path reads in rounds, why a memory
   is a string, and why its reads bypass redis-py's command path.
2. One full garbage collection before and after loading the sentence encoder and the content ranker,
   and after ``engine.heap.settle_heap``. Why the worker freezes its heap.
Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.memory.store import UserMemoryStore  # noqa: E402
from engine.services.embedded import EmbeddedRedis  # noqa: E402


async def reads(url: str, n: int) -> None:
    import numpy as np

    store = UserMemoryStore(url, width=10, max_len=20, timeout_s=0.5)
    client = store.client
    users = [f"user-{i}" for i in range(5000)]
    records = np.random.default_rng(0).random((20, 10), dtype=np.float32)  # a full 20-record memory each
    for i in range(0, len(users), 500):
        await store.put_many({u: records for u in users[i : i + 500]})
    # the earlier format, a list of records per user: for comparison
    await client.delete("list:u1")
    await client.rpush("list:u1", *[r.tobytes() for r in records])

    async def cpu_per(label: str, rounds: int, per_round: int, fn) -> None:  # type: ignore[no-untyped-def]
        c = time.process_time()
        for _ in range(rounds):
            await fn()
        us = (time.process_time() - c) / (rounds * per_round) * 1e6
        print(f"{label:48} {us:7.1f} µs CPU per read")

    async def pipe(k: int) -> None:
        async with client.pipeline(transaction=False) as p:
            for _ in range(k):
                p.lrange("list:u1", 0, -1)
            await p.execute()

    keys32 = [store.key(u) for u in users[:32]]
    await cpu_per("one LRANGE command (earlier format)", n, 1, lambda: client.lrange("list:u1", 0, -1))
    await cpu_per("pipeline of 1 LRANGE (earlier format)", n, 1, lambda: pipe(1))
    await cpu_per("pipeline of 32 LRANGE (earlier format)", n // 32, 32, lambda: pipe(32))
    await cpu_per("one GET", n, 1, lambda: client.get(keys32[0]))
    await cpu_per("one MGET of 32, redis-py", n // 32, 32, lambda: client.mget(keys32))
    pipelined = store.reads_connection
    await cpu_per("one MGET of 1, redis-py", n, 1, lambda: client.mget(keys32[:1]))
    await cpu_per("one MGET of 1, pipelined connection", n, 1, lambda: pipelined.call("MGET", keys32[0]))
    await cpu_per(
        "one MGET of 32, pipelined connection", n // 32, 32, lambda: pipelined.call("MGET", *keys32)
    )

    async def rounds(size: int) -> None:
        for i in range(n // size):
            await store.read(users[(i * size) % 4968 : (i * size) % 4968 + size])

    for size in (1, 32):
        before = store.reads
        await cpu_per(
            f"UserMemoryStore.read, a round of {size}", 1, (n // size) * size, partial(rounds, size)
        )
        print(f"  ({(n // size) * size} reads of 20-record memories in {store.reads - before} round trips)")
    await store.aclose()


def full_collection_ms() -> float:
    t = time.perf_counter()
    gc.collect()
    return (time.perf_counter() - t) * 1000


def heap() -> None:
    import faust  # noqa: F401  (what a worker imports)
    import torch  # noqa: F401

    print(f"full gc, libraries imported: {full_collection_ms():6.1f} ms, {len(gc.get_objects()):,} objects")
    from engine.embeddings import Embedder
    from engine.heap import settle_heap
    from engine.ranker.service import RankerService

    Embedder().encode(["warm up"])  # not default_embedder(): that one settles the heap itself
    RankerService.load()  # the artifact; ranking would load default_embedder() and settle the heap
    assert gc.get_freeze_count() == 0, "something settled the heap before the measurement"
    print(f"full gc, models loaded:      {full_collection_ms():6.1f} ms, {len(gc.get_objects()):,} objects")
    settle_heap("benchmark")
    print(f"full gc, after settle_heap:  {full_collection_ms():6.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reads", type=int, default=20000)
    args = ap.parse_args()
    with EmbeddedRedis(Path(tempfile.mkdtemp(prefix="bench-mem-")) / "redis") as redis:
        uvloop.run(reads(redis.url, args.reads))
    heap()


if __name__ == "__main__":
    main()
