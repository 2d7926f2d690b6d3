"""Hot path and learner throughput of the actor-critic, side by side with Vowpal Wabbit ``cb_explore_adf``.

Measures (never asserts):
* decision hot path: build the state (portrait + cached context embedding + user memory already fetched)
  and run the actor for 10 variants with a full residual memory (after 2,048 learned decisions), i.e.
  ``ActorCriticAllocator.choose`` in-process: p50/p99 latency;
* batched learner: transitions per second of ``learn_batch`` (default mini-batch and a larger one);
* VW ``cb_explore_adf`` (epsilon-greedy) predict + learn per decision with the same 10 actions.

Run: ``.venv/bin/python bench/bench_allocators.py [--decisions 5000]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, 384)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


class _CachedEmbedder:
    """Embedder whose cache is pre-filled (what the hot path sees after ``embed_pending``)."""

    dim = 384

    def __init__(self, texts: list[str], rng: np.random.Generator) -> None:
        self._c = dict(zip(texts, _unit(rng, len(texts)), strict=True))

    def encode(self, texts, *, show_progress=False):
        return np.stack([self._c[t] for t in texts])

    def cached(self, text):
        return self._c.get(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--decisions", type=int, default=5000)
    ap.add_argument("--variants", type=int, default=10)
    ap.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch intra-op threads, as a worker's ABENGINE_TORCH_THREADS (default 1, the worker's default)",
    )
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.torch_threads)
    from engine.allocators.actor_critic import ActorCriticAllocator, ActorCriticConfig
    from engine.memory.model import MemoryView, make_records
    from engine.perception.schema import FeatureSchema
    from engine.types import DecisionContext

    rng = np.random.default_rng(0)
    K = args.variants
    vids = [f"v{i}" for i in range(K)]
    schema = FeatureSchema(
        numeric={"age": (40.0, 10.0), "visits": (5.0, 5.0)},
        categorical={"channel": ("web", "app", "email")},
        hashed=("city",),
        hash_dim=16,
    )
    contexts = [f"page {i}" for i in range(50)]
    emb = _CachedEmbedder(contexts, rng)
    ac = ActorCriticAllocator(
        vids,
        seed=0,
        schema=schema,
        embedder=emb,
        variant_embeddings=dict(zip(vids, _unit(rng, K), strict=True)),
    )
    E = ac.variants.matrix(vids)
    now = time.time()  # records of the last half minute, so recency weighs them as in production
    mem = MemoryView(make_records(E[rng.integers(K, size=32)], rng.random(32), now - np.arange(32.0)[::-1]))
    ctxs = [
        DecisionContext(
            "exp",
            f"u{i}",
            tuple(vids),
            {"channel": ["web", "app", "email"][i % 3], "city": f"c{i % 500}"},
            contexts[i % 50],
            {"age": 20.0 + i % 40, "visits": float(i % 9)},
        )
        for i in range(args.decisions)
    ]
    # a learned policy: the residual memory is full (its read is part of every decision)
    S0 = np.stack([ac.state(c, None) for c in ctxs[:2048]])
    ac.learn_batch(
        S0,
        rng.integers(K, size=len(S0)),
        rng.random(len(S0)),
        np.full(len(S0), 1 / K),
        [c.user_id for c in ctxs[:2048]],
        np.arange(len(S0), dtype=float),
    )
    assert ac.residuals is not None and len(ac.residuals) == ac.config.residual_memory_len
    for c in ctxs[:200]:
        ac.choose(c, memory=mem, now=now)
    lat = np.empty(len(ctxs))
    for i, c in enumerate(ctxs):
        t0 = time.perf_counter_ns()
        ac.choose(c, memory=mem, now=now)
        lat[i] = (time.perf_counter_ns() - t0) / 1e3
    print(
        f"actor-critic hot path ({K} variants, memory given, context cached): "
        f"p50 {np.percentile(lat, 50):.0f} us  p99 {np.percentile(lat, 99):.0f} us  (n={len(lat)})"
    )

    # --- learner throughput
    results = {}
    for mb in (ac.config.minibatch, 256):
        learner = ActorCriticAllocator(
            vids,
            seed=0,
            schema=schema,
            embedder=emb,
            variant_embeddings=dict(zip(vids, _unit(rng, K), strict=True)),
            config=ActorCriticConfig(minibatch=mb),
        )
        S = np.stack([learner.state(c, None) for c in ctxs[:2048]])
        users = [c.user_id for c in ctxs[:2048]]
        n_total, t0, cpu0 = 0, time.perf_counter(), time.process_time()
        for rep in range(3):
            a = rng.integers(K, size=len(S))
            learner.learn_batch(
                S,
                a,
                rng.random(len(S)),
                np.full(len(S), 1 / K),
                users,
                np.arange(len(S), dtype=float) + rep * len(S),
            )
            n_total += len(S)
        results[mb] = n_total / (time.perf_counter() - t0)
        cpu_us = (time.process_time() - cpu0) / n_total * 1e6
        print(
            f"actor-critic learner (mini-batch {mb}, with memory, {torch.get_num_threads()} torch threads): "
            f"{results[mb]:,.0f} transitions/s, {cpu_us:.0f} us CPU per transition (all threads)"
        )

    # --- Vowpal Wabbit cb_explore_adf
    try:
        import vowpalwabbit
    except ImportError:
        print("vowpalwabbit not installed: skipped")
        return
    vw = vowpalwabbit.Workspace("--cb_explore_adf --epsilon 0.05 -q UA --quiet")
    act_text = [f"|A v={v} t{i % 7}" for i, v in enumerate(vids)]
    vw_lat = np.empty(len(ctxs))
    for i, c in enumerate(ctxs):
        shared = (
            f"shared |U age:{c.features['age'] / 40:.3f} visits:{c.features['visits'] / 5:.3f} "
            f"ch={c.attributes['channel']} city={c.attributes['city']} "
            f"page={(c.context_text or '').replace(' ', '_')}"
        )
        t0 = time.perf_counter_ns()
        ex = [shared, *act_text]
        pmf = vw.predict(ex)
        a = int(np.searchsorted(np.cumsum(pmf), rng.random() * sum(pmf)))
        a = min(a, K - 1)
        cost = -float(rng.random() < 0.1)
        lab = [shared] + [f"0:{cost}:{pmf[j]} {t}" if j == a else t for j, t in enumerate(act_text)]
        vw.learn(lab)
        vw_lat[i] = (time.perf_counter_ns() - t0) / 1e3
    vw.finish()
    p50, p99 = np.percentile(vw_lat, 50), np.percentile(vw_lat, 99)
    print(
        f"VW cb_explore_adf predict+learn ({K} actions): p50 {p50:.0f} us  p99 {p99:.0f} us  "
        f"-> {1e6 / vw_lat.mean():,.0f} decisions/s"
    )
    print(
        f"ratios: actor-critic choose p50 / VW predict+learn p50 = {np.percentile(lat, 50) / p50:.2f}; "
        f"actor-critic learner (mb 256) / VW decisions per s = {results[256] / (1e6 / vw_lat.mean()):.2f}"
    )


if __name__ == "__main__":
    main()
