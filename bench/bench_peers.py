"""Per-decision cost of the engine's allocators vs Vowpal Wabbit, MABWiser and River, same problem.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/bench_peers.py [--decisions 3000]

A synthetic contextual problem: K=5 variants, 6 numeric user features x ~ N(0, 1), click
probability sigmoid(-2.5 + w_k . x) with a different w_k per variant. Every library runs the same
online loop, one decision at a time: choose for x, observe the click, learn from it. Reported: mean
cost per decision (choose + learn, µs), decisions/s, mean reward, and the ratio of each to the
engine's LinUCB. Engine allocators go through their public interface (DecisionContext in, Reward
out), so perception and reward joining are included in their cost. Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.allocators import make_allocator  # noqa: E402
from engine.types import DecisionContext, Reward  # noqa: E402

K, D = 5, 6
ARMS = [f"v{k}" for k in range(K)]


def problem(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    W = rng.normal(0, 1.0, (K, D))
    X = rng.normal(0, 1, (n, D))
    P = 1 / (1 + np.exp(-(-2.5 + X @ W.T)))
    return X, (rng.random((n, K)) < P).astype(float)


def run_engine(name: str, X: np.ndarray, R: np.ndarray) -> tuple[float, float]:
    schema = {"numeric": {f"x{i}": [0.0, 1.0] for i in range(D)}}
    config = {} if name == "thompson" else {"schema": schema}
    texts = {a: f"Headline variant number {i}" for i, a in enumerate(ARMS)}
    alloc = make_allocator(name, ARMS, config, seed=1, engine_options={"variant_texts": texts})
    total = 0.0
    t0 = time.perf_counter()
    for i in range(len(X)):
        feats = {f"x{j}": float(X[i, j]) for j in range(D)}
        ctx = DecisionContext("bench", f"u{i}", tuple(ARMS), feats, None, {})
        choice = alloc.choose(ctx)
        k = ARMS.index(choice.variant_id)
        r = R[i, k]
        total += r
        base = dict(
            decision_id=f"d{i}",
            experiment_id="bench",
            variant_id=choice.variant_id,
            user_id=f"u{i}",
            propensity=choice.propensity,
            allocator=alloc.name,
            model_version=0,
            decided_at=float(i),
            event_time=float(i),
            attributes=feats,
        )
        batch = [Reward(kind="impression", value=0.0, **base)]
        if r:
            batch.append(Reward(kind="click", value=1.0, **base))
        alloc.update(batch)
        if hasattr(alloc, "advance"):
            alloc.advance(float(i) + 1e9)  # close the attribution window: learn now
    return (time.perf_counter() - t0) / len(X), total / len(X)


def run_vw(X: np.ndarray, R: np.ndarray) -> tuple[float, float]:
    import vowpalwabbit

    vw = vowpalwabbit.Workspace("--cb_explore_adf --epsilon 0.05 -q ua --quiet")
    rng = np.random.default_rng(1)
    total = 0.0
    t0 = time.perf_counter()
    for i in range(len(X)):
        shared = "shared |u " + " ".join(f"x{j}:{X[i, j]:.4f}" for j in range(D))
        ex = [shared] + [f"|a arm{k}" for k in range(K)]
        pmf = np.asarray(vw.predict(ex))
        k = int(rng.choice(K, p=pmf / pmf.sum()))
        r = R[i, k]
        total += r
        lab = [shared] + [
            f"{'0:' + str(-r) + ':' + str(pmf[k]) + ' ' if a == k else ''}|a arm{a}" for a in range(K)
        ]
        vw.learn(lab)
    vw.finish()
    return (time.perf_counter() - t0) / len(X), total / len(X)


def run_mabwiser(X: np.ndarray, R: np.ndarray) -> tuple[float, float]:
    from mabwiser.mab import MAB, LearningPolicy

    mab = MAB(list(range(K)), LearningPolicy.LinUCB(alpha=1.0), seed=1)
    mab.fit(decisions=list(range(K)), rewards=[0.0] * K, contexts=np.zeros((K, D)))
    total = 0.0
    t0 = time.perf_counter()
    for i in range(len(X)):
        k = int(mab.predict([X[i]]))
        r = R[i, k]
        total += r
        mab.partial_fit([k], [r], [X[i]])
    return (time.perf_counter() - t0) / len(X), total / len(X)


def run_river(X: np.ndarray, R: np.ndarray) -> tuple[float, float]:
    from river import bandit

    pol = bandit.LinUCBDisjoint(alpha=1.0, seed=1)
    total = 0.0
    t0 = time.perf_counter()
    for i in range(len(X)):
        ctx = {f"x{j}": float(X[i, j]) for j in range(D)}
        k = pol.pull(list(range(K)), context=ctx)
        r = R[i, k]
        total += r
        pol.update(k, ctx, r)
    return (time.perf_counter() - t0) / len(X), total / len(X)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--decisions", type=int, default=3000)
    args = ap.parse_args()
    X, R = problem(args.decisions)
    runners: dict[str, Callable[[], tuple[float, float]]] = {
        f"engine {name}": (lambda name=name: run_engine(name, X, R))
        for name in ("thompson", "linucb", "lin_ts", "actor_critic")
    }
    runners.update(
        {
            "Vowpal Wabbit cb_explore_adf": lambda: run_vw(X, R),
            "MABWiser LinUCB": lambda: run_mabwiser(X, R),
            "River LinUCBDisjoint": lambda: run_river(X, R),
        }
    )
    rows = {}
    for name, fn in runners.items():
        try:
            rows[name] = fn()
        except ImportError as exc:
            print(f"{name}: skipped ({exc})")
    best = R.max(axis=1).mean()
    base = rows["engine linucb"][0]
    print(f"{args.decisions} decisions; best possible mean reward {best:.3f}")
    header = ("allocator", "µs/decision", "decisions/s", "mean reward", "cost vs engine linucb")
    print(f"{header[0]:32} {header[1]:>12} {header[2]:>12} {header[3]:>12} {header[4]:>22}")
    for name, (sec, reward) in rows.items():
        print(f"{name:32} {sec * 1e6:12.0f} {1 / sec:12,.0f} {reward:12.3f} {sec / base:22.2f}")


if __name__ == "__main__":
    main()
