"""Memory: bounded in-process bank, attention read, and the Redis store (real embedded Redis)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.memory.model import (
    TIME_ORIGIN_S,
    MemoryBank,
    MemoryView,
    attention_read,
    attention_read_batch,
    make_records,
    pad_memories,
    record_time,
)
from engine.memory.store import UserMemoryStore

#: a time where record times are exact to well under a second (a day after the origin)
T0 = TIME_ORIGIN_S + 86_400.0


def _recs(n: int, key: np.ndarray, reward: float, t0: float = 0.0) -> np.ndarray:
    """n records of one key at times T0 + t0, T0 + t0 + 1, ..."""
    return make_records(np.repeat(key[None], n, 0), np.full(n, reward), T0 + t0 + np.arange(n, dtype=float))


def _secs(memory: MemoryView) -> list[float]:
    return (memory.times - T0).tolist()


def test_bank_is_bounded_lru_and_time_filtered() -> None:
    bank = MemoryBank(width=4, max_len=3, max_keys=2)
    e = np.array([1.0, 0.0])
    bank.append("a", _recs(5, e, 1.0))
    assert len(bank.get("a")) == 3 and _secs(bank.get("a")) == [2.0, 3.0, 4.0]
    assert len(bank.get("a").before(T0 + 3.0)) == 1  # no peeking at later rewards
    bank.append("b", _recs(1, e, 0.0))
    bank.append("c", _recs(1, e, 0.0))
    assert bank.get("a") is None and len(bank) == 2  # oldest key evicted
    ttl = MemoryBank(width=4, ttl=10.0)
    ttl.append("u", _recs(1, e, 1.0))
    assert ttl.get("u", now=T0 + 5.0) is not None and ttl.get("u", now=T0 + 50.0) is None


def test_attention_read_prefers_similar_variants_and_recent_records() -> None:
    e0, e1 = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    mem = MemoryView(np.concatenate([_recs(10, e0, 1.0), _recs(10, e1, 0.0, t0=10.0)]))
    m = attention_read(np.stack([e0, e1]), mem, now=T0 + 20.0, beta=5.0, lam=0.0, r0=0.3)
    assert m[0, 0] > 0.5 and m[1, 0] < -0.2  # v0 had rewards, v1 did not
    old = attention_read(
        np.stack([e0]), MemoryView(_recs(10, e0, 1.0)), now=T0 + 1000.0, beta=5.0, lam=0.1, r0=0.3
    )
    assert abs(old[0, 0]) < 1e-3  # forgotten: reads the prior
    assert attention_read(np.stack([e0]), None, 0.0, 1.0, 0.0, 0.3).tolist() == [[0.0, 0.0]]


async def test_store_roundtrip_bounded_with_ttl(redis_url: str) -> None:
    store = UserMemoryStore(redis_url, width=4, max_len=5, ttl_s=100, timeout_s=0.5)
    e = np.array([1.0, 0.0])
    assert await store.put_many({"u1": _recs(3, e, 1.0), "u2": _recs(7, e, 0.0)})
    got = await store.get_many(["u1", "u2", "nobody"])
    assert len(got["u1"]) == 3 and got["u1"].rewards.tolist() == [1.0, 1.0, 1.0]
    assert len(got["u2"]) == 5 and _secs(got["u2"]) == [2.0, 3.0, 4.0, 5.0, 6.0]
    assert got["nobody"] is None
    assert 0 < await store.client.ttl(store.key("u1")) <= 100
    assert store.degraded_reads == 0
    await store.aclose()


async def test_store_writes_many_users_in_short_scripts(redis_url: str) -> None:
    # 5 users, 2 per script: three script calls in turn (Redis serves reads between them), all written
    store = UserMemoryStore(redis_url, width=4, max_len=5, ttl_s=100, timeout_s=0.5, script_items=2)
    calls = []
    append = store._append

    async def counted(**kw: object) -> object:
        calls.append(len(kw["keys"]))  # type: ignore[arg-type]
        return await append(**kw)

    store._append = counted  # type: ignore[method-assign]
    e = np.array([1.0, 0.0])
    assert await store.put_many({f"many{i}": _recs(i + 1, e, 1.0) for i in range(5)})
    assert calls == [2, 2, 1]
    got = await store.get_many([f"many{i}" for i in range(5)])
    assert [len(got[f"many{i}"]) for i in range(5)] == [1, 2, 3, 4, 5]
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


async def test_read_tells_a_degraded_read_from_empty_memories(redis_url: str) -> None:
    store = UserMemoryStore(redis_url, width=4, max_len=5, ttl_s=100, timeout_s=0.5)
    assert await store.read(["never-written"]) == {"never-written": None}  # empty, not degraded
    down = UserMemoryStore("redis://127.0.0.1:1", width=4, timeout_s=0.05)
    t0 = time.perf_counter()
    assert await down.read(["a", "b"]) is None and down.degraded_reads == 1
    assert time.perf_counter() - t0 < 1.0
    await store.aclose()
    await down.aclose()


def reference_read(
    cand: np.ndarray, memory: MemoryView | None, now: float, beta: float, lam: float, r0: float
) -> np.ndarray:
    """The read as the maths states it, one candidate and one record at a time (no numpy batching):
    ``w_i = exp(beta (cos_i - 1) - lam age_i)``, ``read = (sum w_i r_i + r0) / (sum w_i + 1)``."""
    out = np.zeros((len(cand), 2))
    for j, v in enumerate(cand):
        num, mass = 0.0, 0.0
        for key, reward, t in zip(memory.keys, memory.rewards, memory.times, strict=True) if memory else ():
            cos = float(np.dot(v, key))  # keys and candidates are unit vectors
            w = float(np.exp(beta * (cos - 1.0) - lam * max(now - float(t), 0.0)))
            num, mass = num + w * float(reward), mass + w
        if memory:
            out[j] = [(num + r0) / (mass + 1.0) - r0, np.log1p(mass) / 5.0]  # prior weight w0 = 1
    return out


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 12), min_size=1, max_size=6),
    lam=st.floats(0.0, 0.5),
    beta=st.floats(0.1, 20.0),
)
def test_attention_reads_equal_the_maths_one_memory_and_batched(
    lengths: list[int], lam: float, beta: float
) -> None:
    rng = np.random.default_rng(sum(lengths))
    cand = rng.normal(size=(3, 2))
    cand /= np.linalg.norm(cand, axis=1, keepdims=True)
    mems: list[MemoryView | None] = []
    for n in lengths:
        keys = rng.normal(size=(n, 2))
        keys /= np.maximum(np.linalg.norm(keys, axis=1, keepdims=True), 1e-9)
        mems.append(MemoryView(make_records(keys, rng.random(n), T0 + rng.random(n) * 20)) if n else None)
    want = np.stack([reference_read(cand, m, T0 + 20.0, beta, lam, r0=0.3) for m in mems])
    one_at_a_time = np.stack([attention_read(cand, m, T0 + 20.0, beta, lam, r0=0.3) for m in mems])
    np.testing.assert_allclose(one_at_a_time, want, rtol=1e-4, atol=1e-5)
    recs, mask = pad_memories(mems, 4, max([*lengths, 1]))
    got = attention_read_batch(cand, recs, mask, T0 + 20.0, beta, lam, r0=0.3)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_store_rejects_bad_config() -> None:
    with pytest.raises(ValueError, match="width"):
        UserMemoryStore("redis://localhost", width=2)


def test_residual_memory_doctest_and_shrinkage() -> None:
    import doctest

    import engine.memory.residual as residual
    from engine.memory.residual import ResidualMemory

    assert doctest.testmod(residual).failed == 0
    rng = np.random.default_rng(0)
    mem = ResidualMemory(
        dim=2, max_len=500, halflife=100.0, sharpness=5.0, prior=2.0, z=2.0, key_dims=np.arange(2)
    )
    S = np.tile([[1.0, 0.0]], (400, 1))
    # unbiased critic: residuals of a Bernoulli(0.3) reward around its mean are noise -> no correction
    mem.append(S, rng.integers(3, size=400), (rng.random(400) < 0.3) - 0.3)
    mem.prepare(np.array([0, 1, 2]))
    assert np.abs(mem.read(S[:1])).max() == 0.0
    # a bounded record: only the last max_len are kept; non-finite residuals are dropped
    mem.append(S[:200], np.zeros(200, int), np.full(200, np.nan))
    assert len(mem) == 400
    with pytest.raises(ValueError, match="halflife"):
        ResidualMemory(dim=2, max_len=10, halflife=0.0, sharpness=1.0, prior=1.0, z=1.0)


def test_residual_memory_empty_and_snapshot_roundtrip() -> None:
    from engine.memory.residual import ResidualMemory

    mem = ResidualMemory(dim=2, max_len=10, halflife=5.0, sharpness=5.0, prior=2.0, z=1.0)
    mem.prepare(np.array([0, 1]))
    assert mem.read(np.ones((3, 2))).shape == (3, 2) and not mem.read(np.ones((3, 2))).any()
    mem.append(np.tile([[1.0, 0.0]], (8, 1)), np.zeros(8, int), np.full(8, -0.5))
    copy = ResidualMemory(dim=2, max_len=10, halflife=5.0, sharpness=5.0, prior=2.0, z=1.0)
    copy.load(mem.to_dict())
    mem.prepare(np.array([0, 1]))
    copy.prepare(np.array([0, 1]))
    np.testing.assert_allclose(mem.read(np.eye(2)), copy.read(np.eye(2)))
    assert mem.by_variant(np.array([0, 1]))[0] < -0.3


def test_residual_memory_read_equals_the_per_record_formula() -> None:
    """The per-cohort sums are an exact rewrite of the module doc's per-record weights."""
    from engine.memory.residual import PRIOR_VARIANCE, ResidualMemory

    rng = np.random.default_rng(3)
    beta, prior, z, hl, K = 3.0, 2.0, 1.0, 40.0, 4
    cohorts = np.eye(3)[rng.integers(3, size=300)]
    S = np.concatenate([rng.standard_normal((300, 2)), cohorts], axis=1)  # 2 numerics, 3-level category
    slots, delta = rng.integers(K, size=300), rng.normal(-0.1, 0.4, size=300)
    mem = ResidualMemory(
        dim=5, max_len=200, halflife=hl, sharpness=beta, prior=prior, z=z, key_dims=np.arange(2, 5)
    )
    mem.append(S, slots, delta)
    mem.prepare(np.arange(K))
    Sq = S[:7]
    got = mem.read(Sq)
    # decide rounds read several states at once: each row is its state's, in any order or mix, and
    # the same as the lone-decision path computes
    np.testing.assert_array_equal(mem.read(Sq[::-1]), got[::-1])
    mixed = mem.read(np.concatenate([S[250:251], Sq[2:4]]))
    np.testing.assert_array_equal(mixed[1:], got[2:4])
    np.testing.assert_allclose(mixed[:1], mem._read(S[250:251, 2:5]))
    S, slots, delta = S[-200:], slots[-200:], delta[-200:].astype(np.float32).astype(np.float64)
    n = len(delta)
    rec = 0.5 ** ((n - 1 - np.arange(n)) / hl)
    for b in range(len(Sq)):
        q = Sq[b, 2:] / np.linalg.norm(Sq[b, 2:])
        k = S[:, 2:] / np.linalg.norm(S[:, 2:], axis=1, keepdims=True)
        for v in range(K):
            w = (slots == v) * np.exp(beta * (k @ q - 1.0)) * rec
            sw = w.sum()
            mean = (w @ delta) / (sw + prior)
            var = w @ delta**2 / sw - ((w @ delta) / sw) ** 2
            var = (sw * var + prior * PRIOR_VARIANCE) / (sw + prior)
            se = np.sqrt(var / (sw**2 / (w @ w) + prior))
            want = np.sign(mean) * max(abs(mean) - z * se, 0.0)
            assert got[b, v] == pytest.approx(want, abs=1e-9)
    np.testing.assert_allclose(mem.read(Sq[:1]), got[:1])  # the cached single-decision path agrees


async def test_store_replaces_a_memory_of_the_earlier_list_format(redis_url: str) -> None:
    # before 2026-12-05 a memory was a Redis list of records; a key left in that format reads as no
    # memory (never an error) and becomes a string memory at its first write
    store = UserMemoryStore(redis_url, width=4, max_len=5, ttl_s=100, timeout_s=0.5)
    e = np.array([1.0, 0.0])
    await store.client.delete(store.key("old"), store.key("torn"))
    await store.client.rpush(store.key("old"), *[r.tobytes() for r in _recs(2, e, 1.0)])
    await store.client.set(store.key("torn"), b"\x00" * 10)  # not whole 16-byte records
    got = await store.get_many(["old", "torn"])
    assert got == {"old": None, "torn": None} and store.degraded_reads == 0
    assert await store.put_many({"old": _recs(3, e, 0.0)})
    after = (await store.get_many(["old"]))["old"]
    assert after is not None and after.rewards.tolist() == [0.0, 0.0, 0.0]
    await store.aclose()


async def test_store_appends_across_writes_and_keeps_the_newest(redis_url: str) -> None:
    store = UserMemoryStore(redis_url, width=4, max_len=5, ttl_s=100, timeout_s=0.5)
    e = np.array([1.0, 0.0])
    await store.client.delete(store.key("w"))
    for start in range(0, 8, 2):  # four writes of two records: times 0..7
        recs = _recs(start + 2, e, 1.0)[start:]
        assert await store.put_many({"w": recs})
    got = (await store.get_many(["w"]))["w"]
    assert got is not None and _secs(got) == [3.0, 4.0, 5.0, 6.0, 7.0]
    await store.aclose()


@pytest.mark.parametrize("as_type", [float, np.float64])
def test_before_never_counts_a_decisions_own_record_as_earlier(as_type: type) -> None:
    # record times are float32 steps (2-8 s): compared unrounded, a decision's own record got into its
    # "before" memory about half the time
    rng = np.random.default_rng(3)
    for t in 1.79e9 + rng.uniform(0, 1e7, 2000):
        mem = MemoryView(make_records(np.ones((3, 2)), np.ones(3), np.array([t - 600.0, t, t + 600.0])))
        earlier = mem.before(as_type(t))
        assert len(earlier) == 1 and earlier.times[0] < t


def test_record_times_keep_seconds_at_todays_epoch() -> None:
    # stored as epoch seconds in float32, times 2026-12 were 128 s apart: ages of records a minute apart
    # were equal, and the recency weight could not tell them apart
    now = 1_796_000_000.0  # 2026-11-30
    times = now - np.array([100.0, 80.0, 30.0, 10.0])
    mem = MemoryView(make_records(np.ones((4, 2)), np.ones(4), times))
    assert np.abs(mem.times - times).max() <= 1.0  # a float32 step is 2 s here (TIME_ORIGIN_S)
    assert np.all(np.diff(record_time(times)) > 0)
    assert np.float32(times[0]) == np.float32(times[1])  # what epoch-second float32 did
    # the read weighs the newer of two records with different rewards more
    e = np.array([[1.0, 0.0]])
    old_good = make_records(np.ones((2, 2)) * [1.0, 0.0], np.array([1.0, 0.0]), now - np.array([100.0, 20.0]))
    new_good = make_records(np.ones((2, 2)) * [1.0, 0.0], np.array([0.0, 1.0]), now - np.array([100.0, 20.0]))
    lo = attention_read(e, MemoryView(old_good), now, beta=1.0, lam=0.01, r0=0.5)[0, 0]
    hi = attention_read(e, MemoryView(new_good), now, beta=1.0, lam=0.01, r0=0.5)[0, 0]
    assert hi - lo > 0.2


def test_torch_twin_reads_like_numpy_at_todays_epoch_and_doctests() -> None:
    # the serving read (numpy) and the learner's (torch) must see the same ages: both put now on the
    # records' float32 grid (record_time)
    import doctest

    import torch

    import engine.memory.model as model
    from engine.memory.model import attention_read_torch

    assert doctest.testmod(model).failed == 0
    rng = np.random.default_rng(7)
    now = 1_796_000_037.0
    cand = rng.normal(size=(3, 2))
    cand /= np.linalg.norm(cand, axis=1, keepdims=True)
    keys = rng.normal(size=(2, 6, 2))
    keys /= np.linalg.norm(keys, axis=-1, keepdims=True)
    mems = [MemoryView(make_records(k, rng.random(6), now - rng.uniform(0, 300, 6))) for k in keys]
    recs, mask = pad_memories(mems, 4, 6)
    want = attention_read_batch(cand, recs, mask, now, 2.0, 0.02, r0=0.3)
    got = attention_read_torch(
        torch.from_numpy(cand.astype(np.float32))[None].expand(2, 3, 2),
        torch.from_numpy(recs),
        torch.from_numpy(mask),
        torch.from_numpy(record_time(np.full(2, now))),
        torch.tensor(2.0),
        torch.tensor(0.02),
        r0=0.3,
    )
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-3, atol=1e-4)
