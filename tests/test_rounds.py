"""Decision rounds: concurrent decisions of a memory-reading allocator share one MGET and one batched
choice (real embedded Redis, a real actor-critic; no broker).

What must hold: each decision is made with its own user's memory; many concurrent decisions cost few
round trips; a batched choice gives the probabilities the one-at-a-time choice gives; a round whose read
fails serves every decision without memory and counts each as degraded, within the time limit; one
refused request, an unknown experiment or a client gone away leaves the others of its round be.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from engine.memory.model import MemoryView, make_records
from engine.memory.store import UserMemoryStore
from engine.metrics import Sensor
from engine.rounds import DecisionRounds
from engine.serving import ExperimentNotFound, ServingState, fresh_allocator
from schemas import DecisionRequest, Experiment, ExperimentSpec

EXP = "exp-rounds"


class CountingSensor(Sensor):
    def __init__(self) -> None:
        self.degraded: Counter[str] = Counter()
        self.round_sizes: list[int] = []

    def on_decide_round(self, experiment: str, decisions: int) -> None:
        self.round_sizes.append(decisions)

    def on_degraded_decision(self, experiment: str, n: int = 1) -> None:
        self.degraded[experiment] += n


def actor_critic_serving() -> ServingState:
    spec = ExperimentSpec.model_validate(
        {
            "id": EXP,
            "allocator": "actor_critic",
            "variants": [{"id": f"v{i}", "text": f"Headline number {i}"} for i in range(4)],
            "allocator_config": {"schema": {"categorical": {"segment": ["s0", "s1"]}}},
        }
    )
    exp = Experiment.from_spec(spec, datetime.now(UTC))
    state = ServingState(None, None, Sensor())  # type: ignore[arg-type]  # deciding touches no store
    state.experiments[exp.id], state.allocators[exp.id] = exp, fresh_allocator(exp, seed=3)
    return state


def memory_records(n: int, width: int, reward: float) -> np.ndarray:
    keys = np.zeros((n, width - 2))
    keys[:, 0] = 1.0
    return make_records(keys, np.full(n, reward), time.time() - 100.0 + np.arange(n, dtype=float))


class Spy:
    """Records what the allocator was asked in each call of ``choose_many`` (user, memory length)."""

    def __init__(self, allocator: Any) -> None:
        self.calls: list[list[tuple[str, int | None]]] = []
        self._inner = allocator.choose_many
        allocator.choose_many = self

    def __call__(self, ctxs: Any, memories: Any = None, now: Any = None) -> Any:
        mems = memories or [None] * len(ctxs)
        self.calls.append(
            [(c.user_id, None if m is None else len(m)) for c, m in zip(ctxs, mems, strict=True)]
        )
        return self._inner(ctxs, memories, now)


async def test_concurrent_decisions_share_a_round_each_with_its_own_memory(redis_url: str) -> None:
    state = actor_critic_serving()
    allocator = state.allocators[EXP]
    store = UserMemoryStore(redis_url, allocator.rec_width, prefix="rounds-own", max_len=8, timeout_s=0.5)
    assert await store.put_many({f"u{i}": memory_records(i + 1, allocator.rec_width, 1.0) for i in range(10)})
    spy = Spy(allocator)
    sensor = CountingSensor()
    rounds = DecisionRounds(state, lambda e: store, sensor)
    reads = store.reads
    served = await asyncio.gather(
        *[
            rounds.decide(EXP, DecisionRequest(user_id=f"u{i % 12}", attributes={"segment": "s1"}))
            for i in range(64)
        ]
    )
    assert [s.record["user_id"] for s in served] == [f"u{i % 12}" for i in range(64)]
    assert all(s.answer["variant_id"] in {"v0", "v1", "v2", "v3"} for s in served)
    # one round for the first caller, one for everyone who queued behind it
    assert rounds.rounds <= 2 and store.reads - reads <= 2 and len(spy.calls) <= 2
    assert sum(sensor.round_sizes) == 64 and len(sensor.round_sizes) == rounds.rounds  # the metric's view
    seen = [pair for call in spy.calls for pair in call]
    assert sorted(seen, key=str) == sorted(
        [(f"u{i % 12}", min(i % 12 + 1, 8) if i % 12 < 10 else None) for i in range(64)], key=str
    )  # u10 and u11 have no memory; the rest their own, trimmed to 8 records
    await store.aclose()


async def test_a_failed_read_serves_the_round_without_memory_and_counts_it() -> None:
    state = actor_critic_serving()
    sensor = CountingSensor()
    store = UserMemoryStore("redis://127.0.0.1:1", width=state.allocators[EXP].rec_width, timeout_s=0.05)
    rounds = DecisionRounds(state, lambda e: store, sensor)
    t0 = time.perf_counter()
    served = await asyncio.gather(*[rounds.decide(EXP, DecisionRequest(user_id=f"u{i}")) for i in range(20)])
    assert len(served) == 20 and all(s.answer["experiment_id"] == EXP for s in served)
    assert sensor.degraded[EXP] == 20  # every decision of a degraded round, once
    assert time.perf_counter() - t0 < 1.0
    await store.aclose()


async def test_a_refused_request_unknown_experiment_or_gone_client_leaves_the_others_be(
    redis_url: str,
) -> None:
    state = actor_critic_serving()
    store = UserMemoryStore(redis_url, state.allocators[EXP].rec_width, prefix="rounds-bad", timeout_s=0.5)
    rounds = DecisionRounds(state, lambda e: store if e == EXP else None, CountingSensor())
    spy = Spy(state.allocators[EXP])
    tasks = [
        asyncio.ensure_future(c)
        for c in [
            *(rounds.decide(EXP, DecisionRequest(user_id=f"g{i}")) for i in range(5)),
            rounds.decide(EXP, DecisionRequest(user_id="x", features={"undeclared": 1.0})),
            rounds.decide("no-such-experiment", DecisionRequest(user_id="y")),
            rounds.decide(EXP, DecisionRequest(user_id="gone")),
        ]
    ]
    await asyncio.sleep(0)  # every request is waiting for the round, which has not started yet
    tasks[-1].cancel()  # its client went away
    got = await asyncio.gather(*tasks, return_exceptions=True)
    assert [g.record["user_id"] for g in got[:5]] == [f"g{i}" for i in range(5)]  # type: ignore[union-attr]
    assert isinstance(got[5], ValueError) and "undeclared" in str(got[5])
    assert isinstance(got[6], ExperimentNotFound)
    assert isinstance(got[7], asyncio.CancelledError)
    assert [u for u, _ in spy.calls[0]] == [*(f"g{i}" for i in range(5)), "x"]  # "gone" was not decided
    # the round machinery is idle again and serves the next request
    assert rounds._task is None
    assert (await rounds.decide(EXP, DecisionRequest(user_id="after"))).record["user_id"] == "after"
    await store.aclose()


@pytest.mark.parametrize("lengths", [[0, 3, 32, 1, 17], [5], [32] * 8, [0, 0]])
def test_batched_choice_gives_the_single_choice_probabilities(lengths: list[int]) -> None:
    state = actor_critic_serving()
    allocator = state.allocators[EXP]
    rng = np.random.default_rng(len(lengths))
    mems = [
        MemoryView(
            memory_records(n, allocator.rec_width, 0.0) + rng.random((n, allocator.rec_width), np.float32)
        )
        if n
        else None
        for n in lengths
    ]
    for m in mems:  # unit-norm keys, as the learner writes them
        if m is not None:
            k = m.records[:, :-2]
            k /= np.linalg.norm(k, axis=1, keepdims=True)
    S = rng.random((len(lengths), allocator.state_dim)).astype(np.float32)
    now = time.time()
    batched = allocator.act_batch(S, None, now=now, memories=mems)
    one_by_one = np.stack(
        [allocator.act_batch(S[i : i + 1], None, now=now, memories=[m])[0] for i, m in enumerate(mems)]
    )
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-6, atol=1e-9)


async def test_a_flood_is_served_in_bounded_rounds(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.rounds

    monkeypatch.setattr(engine.rounds, "MAX_ROUND", 16)
    state = actor_critic_serving()
    store = UserMemoryStore(redis_url, state.allocators[EXP].rec_width, prefix="rounds-flood", timeout_s=0.5)
    sensor = CountingSensor()
    rounds = DecisionRounds(state, lambda e: store, sensor)
    served = await asyncio.gather(*[rounds.decide(EXP, DecisionRequest(user_id=f"f{i}")) for i in range(100)])
    assert [s.record["user_id"] for s in served] == [f"f{i}" for i in range(100)]
    assert max(sensor.round_sizes) == 16 and sum(sensor.round_sizes) == 100
    await store.aclose()


def test_the_memory_read_budget_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ABENGINE_MEMORY_READ_BUDGET_MS`` sets the rounds' read limit (one source: the worker's stores
    are built from it); a non-positive budget is refused, naming the setting."""
    from pydantic import ValidationError

    from engine.config import Settings
    from engine.runtime import Runtime

    monkeypatch.setenv("ABENGINE_MEMORY_READ_BUDGET_MS", "2")
    runtime = Runtime(
        Settings(), bootstrap_servers="127.0.0.1:1", redis_url="redis://127.0.0.1:1", embedded_kafka=False
    )
    store = runtime.memory_store(EXP, width=10, max_len=8)
    assert store.timeout_s == pytest.approx(0.002)

    async def close() -> None:
        await store.aclose()
        await runtime.redis.aclose()

    asyncio.run(close())
    monkeypatch.setenv("ABENGINE_MEMORY_READ_BUDGET_MS", "0")
    with pytest.raises(ValidationError, match="MEMORY_READ_BUDGET_MS"):
        Settings()
