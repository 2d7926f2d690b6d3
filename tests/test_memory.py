"""Memory: bounded in-process bank, attention read, and the Redis store (real embedded Redis)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from engine.memory.model import MemoryBank, MemoryView, attention_read, make_records
from engine.memory.store import UserMemoryStore


def _recs(n: int, key: np.ndarray, reward: float, t0: float = 0.0) -> np.ndarray:
    return make_records(np.repeat(key[None], n, 0), np.full(n, reward), t0 + np.arange(n, dtype=float))


def test_bank_is_bounded_lru_and_time_filtered() -> None:
    bank = MemoryBank(width=4, max_len=3, max_keys=2)
    e = np.array([1.0, 0.0])
    bank.append("a", _recs(5, e, 1.0))
    assert len(bank.get("a")) == 3 and bank.get("a").times.tolist() == [2.0, 3.0, 4.0]
    assert len(bank.get("a").before(3.0)) == 1  # no peeking at later rewards
    bank.append("b", _recs(1, e, 0.0))
    bank.append("c", _recs(1, e, 0.0))
    assert bank.get("a") is None and len(bank) == 2  # oldest key evicted
    ttl = MemoryBank(width=4, ttl=10.0)
    ttl.append("u", _recs(1, e, 1.0))
    assert ttl.get("u", now=5.0) is not None and ttl.get("u", now=50.0) is None


def test_attention_read_prefers_similar_variants_and_recent_records() -> None:
    e0, e1 = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    mem = MemoryView(np.concatenate([_recs(10, e0, 1.0), _recs(10, e1, 0.0, t0=10.0)]))
    m = attention_read(np.stack([e0, e1]), mem, now=20.0, beta=5.0, lam=0.0, r0=0.3)
    assert m[0, 0] > 0.5 and m[1, 0] < -0.2  # v0 had rewards, v1 did not
    old = attention_read(
        np.stack([e0]), MemoryView(_recs(10, e0, 1.0)), now=1000.0, beta=5.0, lam=0.1, r0=0.3
    )
    assert abs(old[0, 0]) < 1e-3  # forgotten: reads the prior
    assert attention_read(np.stack([e0]), None, 0.0, 1.0, 0.0, 0.3).tolist() == [[0.0, 0.0]]


async def test_store_roundtrip_bounded_with_ttl(redis_url: str) -> None:
    store = UserMemoryStore(redis_url, width=4, max_len=5, ttl_s=100, timeout_s=0.5)
    e = np.array([1.0, 0.0])
    assert await store.put_many({"u1": _recs(3, e, 1.0), "u2": _recs(7, e, 0.0)})
    got = await store.get_many(["u1", "u2", "nobody"])
    assert len(got["u1"]) == 3 and got["u1"].rewards.tolist() == [1.0, 1.0, 1.0]
    assert len(got["u2"]) == 5 and got["u2"].times.tolist() == [2.0, 3.0, 4.0, 5.0, 6.0]
    assert got["nobody"] is None
    assert 0 < await store.client.ttl(store.key("u1")) <= 100
    assert store.degraded_reads == 0
    await store.aclose()


async def test_store_degraded_mode_never_blocks() -> None:
    store = UserMemoryStore("redis://127.0.0.1:1", width=4, timeout_s=0.05, write_timeout_s=0.05)
    t0 = time.perf_counter()
    got = await store.get_many(["a", "b"])
    assert got == {"a": None, "b": None} and store.degraded_reads == 1
    assert not await store.put_many({"a": _recs(1, np.array([1.0, 0.0]), 1.0)})
    assert store.failed_writes == 1
    assert time.perf_counter() - t0 < 2.0
    await store.aclose()


async def test_concurrent_reads_coalesce_into_few_round_trips(redis_url: str) -> None:
    store = UserMemoryStore(redis_url, width=4, max_len=5, ttl_s=100, timeout_s=0.5)
    e = np.array([1.0, 0.0])
    assert await store.put_many({f"u{i}": _recs(i + 1, e, 1.0) for i in range(10)})
    before = store.reads
    got = await asyncio.gather(*[store.get(f"u{i % 12}") for i in range(64)])
    # each decision gets its own user's memory (u10, u11 have none), none degraded
    assert [len(m) if m is not None else 0 for m, _ in got] == [
        min(i % 12 + 1, 5) if i % 12 < 10 else 0 for i in range(64)
    ]
    assert not any(degraded for _, degraded in got)
    assert store.reads - before <= 2  # one round for the first caller, one for everyone who queued behind it
    await store.aclose()


async def test_coalesced_read_degrades_within_its_time_limit() -> None:
    store = UserMemoryStore("redis://127.0.0.1:1", width=4, timeout_s=0.05)
    t0 = time.perf_counter()
    got = await asyncio.gather(*[store.get(f"u{i}") for i in range(20)])
    assert got == [(None, True)] * 20
    assert time.perf_counter() - t0 < 1.0
    assert store.degraded_reads >= 1
    await store.aclose()


def test_store_rejects_bad_config() -> None:
    with pytest.raises(ValueError, match="width"):
        UserMemoryStore("redis://localhost", width=2)
