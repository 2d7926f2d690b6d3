"""CPU per step of a decide, in-process and hot (no HTTP, Redis or Kafka): what each part costs
before the worker's cache pressure, which roughly doubles these numbers under load.

    .venv/bin/python bench/bench_decide_parts.py [--n 20000]

Times the request's validation, ``ServingState.decide`` for Thompson and the actor-critic (with
and without a 20-record user memory), the actor-critic's steps, ``ServingState.decide_many`` for
rounds of 4, 16 and 32 actor-critic decisions (``engine.rounds``; per decision), the encodings
the decide path chose between (two pydantic models vs plain dicts with orjson), decision-id
generation and the producer's partitioner (aiokafka's murmur2 vs the cached ``KeyPartitioner``).
Prints µs per call. Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import orjson
from aiokafka.partitioner import DefaultPartitioner

from engine.memory.model import MemoryView
from engine.metrics import Sensor
from engine.serving import ServingState, fresh_allocator
from engine.types import DecisionContext
from producers.kafka import KeyPartitioner
from schemas import Decision, DecisionLog, DecisionRequest, Experiment, ExperimentSpec

BODY = orjson.dumps({"user_id": "user-17", "attributes": {"segment": "s1"}, "context": "homepage"})


def per_call(fn: Callable[[], object], n: int) -> float:
    for _ in range(min(n // 10, 1000)):
        fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


def serving(allocator: str) -> ServingState:
    spec = ExperimentSpec.model_validate(
        {
            "id": f"parts-{allocator}",
            "allocator": allocator,
            "variants": [{"id": f"v{i}", "text": f"Headline number {i}"} for i in range(10)],
            **(
                {"allocator_config": {"schema": {"categorical": {"segment": ["s0", "s1", "s2"]}}}}
                if allocator == "actor_critic"
                else {}
            ),
        }
    )
    exp = Experiment.from_spec(spec, datetime.now(UTC))
    state = ServingState(None, None, Sensor())  # type: ignore[arg-type]  # decide touches no store
    state.experiments[exp.id], state.allocators[exp.id] = exp, fresh_allocator(exp, seed=1)
    return state


def decide_steps(req: DecisionRequest, n: int) -> list[tuple[str, float]]:
    thompson = serving("thompson")
    rows = [("ServingState.decide, thompson", per_call(lambda: thompson.decide("parts-thompson", req), n))]
    state = serving("actor_critic")
    exp_id = "parts-actor_critic"
    allocator = state.allocators[exp_id]
    state.decide(exp_id, req)
    allocator.embed_pending()  # the context text, embedded off the hot path as the worker does
    mem = MemoryView(np.random.default_rng(0).random((20, allocator.rec_width), dtype=np.float32))
    ctx = DecisionContext(
        exp_id, "user-17", state.experiments[exp_id].variant_ids, {"segment": "s1"}, "homepage"
    )
    s = allocator.state(ctx, mem)
    probs = allocator.act_batch(s[None, :], None, now=time.time(), memories=[mem])[0]
    return [
        *rows,
        ("ServingState.decide, actor_critic", per_call(lambda: state.decide(exp_id, req), n)),
        (
            "ServingState.decide, actor_critic, 20-record memory",
            per_call(lambda: state.decide(exp_id, req, mem), n),
        ),
        ("  actor-critic: state encoding", per_call(lambda: allocator.state(ctx, mem), n)),
        (
            "  actor-critic: act (heads, memory read, mix)",
            per_call(lambda: allocator.act_batch(s[None, :], None, now=time.time(), memories=[mem]), n),
        ),
        ("  actor-critic: draw", per_call(lambda: allocator._sample(probs, ctx.variant_ids), n)),
        *(
            (
                f"ServingState.decide_many, actor_critic, a round of {b} (per decision)",
                per_call(lambda b=b: state.decide_many(exp_id, [req] * b, [mem] * b), n // b) / b,
            )
            for b in (4, 16, 32)
        ),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000, help="calls per row")
    n = ap.parse_args().n
    rows: list[tuple[str, float]] = []
    req = DecisionRequest.model_validate_json(BODY)
    rows.append(
        (
            "DecisionRequest.model_validate_json",
            per_call(lambda: DecisionRequest.model_validate_json(BODY), n),
        )
    )
    rows += decide_steps(req, n)
    served = serving("thompson").decide("parts-thompson", req)
    fields = dict(served.answer)
    rows.append(
        (
            "Decision + DecisionLog model_construct + model_dump_json",
            per_call(
                lambda: (
                    Decision.model_construct(**fields).model_dump_json(),
                    DecisionLog.model_construct(**served.record).model_dump_json(),
                ),
                n,
            ),
        )
    )
    rows.append(
        (
            "answer + record orjson.dumps (the decide path)",
            per_call(lambda: (served.answer_json(), served.record_json()), n),
        )
    )
    rows.append(("uuid.uuid4().hex", per_call(lambda: uuid.uuid4().hex, n)))
    rows.append(("os.urandom(16).hex() (the decide path)", per_call(lambda: os.urandom(16).hex(), n)))
    default, cached, parts = DefaultPartitioner(), KeyPartitioner(), [0, 1, 2, 3]
    for key in (b"bench-thompson", b"an-experiment-with-a-rather-long-id-2026"):
        rows.append(
            (
                f"aiokafka DefaultPartitioner, {len(key)}-byte key",
                per_call(lambda k=key: default(k, parts, parts), n),
            )
        )
        rows.append(
            (
                f"KeyPartitioner (cached hash), {len(key)}-byte key",
                per_call(lambda k=key: cached(k, parts, parts), n),
            )
        )
    width = max(len(name) for name, _ in rows)
    print(f"{'step':{width}}  µs per call")
    for name, us in rows:
        print(f"{name:{width}}  {us:8.2f}")


if __name__ == "__main__":
    main()
