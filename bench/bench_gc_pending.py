"""Full garbage collections of a worker whose actor-critic learner holds many pending decisions.

    .venv/bin/python bench/bench_gc_pending.py [--decisions 90000]

Feeds a fresh actor-critic learner (the soak's experiment: two variants, a ``segment`` attribute) an
impression per decision and a click for ~7% of them, one new user each, as the soak's traffic does, in
batches of 500 — so the decisions stay pending in its reward ledger for their 24-hour attribution
window. Then prints the objects the garbage collector tracks beyond the frozen start-up heap (by type)
and the time of three full collections. To compare with another commit, run the same file in a
worktree of it (the script imports the engine of the tree it lives in). Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.serving import fresh_allocator  # noqa: E402
from engine.types import Reward  # noqa: E402
from schemas import Experiment, ExperimentSpec  # noqa: E402


def traffic(decisions: int, seed: int = 0) -> Iterator[Reward]:
    """An impression per decision and a click for ~7% of them, each decision a new user's."""
    rng, t0 = random.Random(seed), time.time() - 3600
    for i in range(decisions):
        did, user, variant, decided = uuid.uuid4().hex, uuid.uuid4().hex[:12], "ab"[i % 2], t0 + i / 150
        shown = (did, "soak", variant, user, "impression", 0.0, 0.5, "actor_critic", 0, decided, decided + 1)
        yield Reward(*shown, {"segment": "all"}, "homepage", {})  # type: ignore[arg-type]
        if rng.random() < 0.07:
            clicked = (*shown[:4], "click", 1.0, *shown[6:10], decided + 2)
            yield Reward(*clicked, {"segment": "all"}, "homepage", {})  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--decisions", type=int, default=90_000, help="decisions fed (the soak makes 90,000)")
    args = ap.parse_args()
    spec = ExperimentSpec.model_validate(
        {
            "id": "soak",
            "allocator": "actor_critic",
            "variants": [{"id": "a", "text": "Headline A"}, {"id": "b", "text": "Headline B"}],
            "allocator_config": {"schema": {"categorical": {"segment": ["all"]}}},
        }
    )
    learner = fresh_allocator(Experiment.from_spec(spec, datetime.now(UTC)), seed=1)
    gc.collect()
    gc.freeze()  # as the worker does after start-up (engine/heap.py)
    batch: list[Reward] = []
    for event in traffic(args.decisions):
        batch.append(event)
        if len(batch) >= 500:
            learner.update(batch)
            learner.drain_memory_writes()  # the worker pushes them to Redis after each learning round
            batch = []
    learner.update(batch)
    learner.drain_memory_writes()
    tracked = Counter(type(o).__name__ for o in gc.get_objects())
    print(f"pending decisions: {len(learner.ledger):,}")
    print(f"objects tracked beyond the frozen heap: {sum(tracked.values()):,}")
    print(f"the most common: {tracked.most_common(4)}")
    for i in range(3):
        start = time.perf_counter()
        gc.collect()
        print(f"full collection {i + 1}: {(time.perf_counter() - start) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
