"""Evaluate every sampling rule on one instance under the same stopping threshold.

Produces the JSON summary of ``abengine llmpo eval`` and the per-method stopping
times for the plot. No printing here: the CLI owns I/O.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from engine.llmpo.instances import Instance
from engine.llmpo.sampling import (
    RUCB,
    DuelingThompson,
    LLMPOSampling,
    LLMPOTopTwo,
    LLMPOTracking,
    RandomPair,
    RoundRobin,
)
from engine.llmpo.sampling.base import PairRule
from engine.llmpo.simulate import RunResults, bernoulli_comparator, run_batch
from engine.llmpo.stats import ThresholdName, characteristic_time, oracle_time, threshold
from engine.llmpo.structured import StructuredLLMPO

#: Method name -> rule factory. ``llm_po`` is the default unstructured rule (Top-Two, see docs).
RULES: dict[str, Callable[[], PairRule]] = {
    "round_robin": RoundRobin,
    "random_pair": RandomPair,
    "rucb": RUCB,
    "dueling_thompson": DuelingThompson,
    "llm_po": LLMPOTopTwo,
    "llm_po_tracking": LLMPOTracking,
    "llm_po_sampling": LLMPOSampling,
}
STRUCTURED = "llm_po_structured"
THRESHOLD_TEXT = {
    "provable": "log(K/delta) + 2 log t + log(pi^2/6)",
    "heuristic": "log((K-1)/delta) + 2 log(1 + log t)",
}


@dataclass(frozen=True)
class Evaluation:
    """Summary dict (the CLI's JSON) and raw results per method."""

    summary: dict[str, object]
    results: dict[str, RunResults]


def available_methods(instance: Instance) -> list[str]:
    """All method names that apply to ``instance`` (structured needs features)."""
    return [*RULES, *([STRUCTURED] if instance.features is not None else [])]


def evaluate(
    instance: Instance,
    *,
    delta: float,
    runs: int,
    seed: int,
    threshold_name: ThresholdName = "provable",
    methods: Sequence[str] | None = None,
    max_steps: int | None = None,
    block_fraction: float = 0.002,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
) -> Evaluation:
    """Simulate ``runs`` experiments per method; ``progress(name, runs)`` returns a per-stop callback."""
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if runs < 1:
        raise ValueError(f"runs must be ≥ 1, got {runs}")
    names = list(methods) if methods else available_methods(instance)
    unknown = [m for m in names if m not in available_methods(instance)]
    if unknown:
        raise ValueError(
            f"unknown or inapplicable methods {unknown}; available: {available_methods(instance)}"
        )
    k = instance.k
    winner = instance.condorcet_winner()
    beta_fn = threshold(threshold_name)
    t_star = characteristic_time(instance.mu, winner) if winner is not None else float("inf")
    t_oracle = oracle_time(t_star, delta, k, threshold_name) if winner is not None else None
    if max_steps is None:
        max_steps = int(max(1e5, 1000 * t_oracle)) if t_oracle is not None else 10**6

    def beta(t: int) -> float:
        return float(beta_fn(t, delta, k))

    compare = bernoulli_comparator(instance.mu)
    results: dict[str, RunResults] = {}
    for name in names:
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        tick = progress(name, runs) if progress else None
        if name == STRUCTURED:
            assert instance.features is not None
            algo = StructuredLLMPO(instance.features)
            out = []
            for _ in range(runs):
                out.append(
                    algo.run(compare, beta=beta, max_steps=max_steps, rng=rng, block_fraction=block_fraction)
                )
                if tick:
                    tick(1)
            stop = np.array([o[0] for o in out], dtype=np.int64)
            rec = np.array([o[1] for o in out], dtype=np.int64)
            results[name] = RunResults(stop=stop, recommended=rec, stopped=rec >= 0)
        else:
            results[name] = run_batch(
                RULES[name](),
                compare,
                k,
                runs=runs,
                beta=beta,
                max_steps=max_steps,
                rng=rng,
                block_fraction=block_fraction,
                on_stop=tick,
            )
    rr_mean = float(results["round_robin"].stop.mean()) if "round_robin" in results else None
    per_method: dict[str, dict[str, float | None]] = {}
    for name, res in results.items():
        mean = float(res.stop.mean())
        per_method[name] = {
            "mean_stop": mean,
            "median_stop": float(np.median(res.stop)),
            "error_rate": res.error_rate(winner),
            "ratio_to_round_robin": mean / rr_mean if rr_mean else None,
            "ratio_to_oracle": mean / t_oracle if t_oracle else None,
            "stopped_fraction": float(res.stopped.mean()),
        }
    summary: dict[str, object] = {
        "instance": instance.name,
        "description": instance.description,
        "k": k,
        "condorcet_winner": instance.labels[winner] if winner is not None else None,
        "characteristic_time": t_star if winner is not None else None,
        "oracle_time": t_oracle,
        "threshold": f"{threshold_name}: {THRESHOLD_TEXT[threshold_name]}",
        "threshold_at_oracle_time": beta(int(t_oracle)) if t_oracle else None,
        "delta": delta,
        "runs": runs,
        "seed": seed,
        "max_steps": max_steps,
        "block_fraction": block_fraction,
        "instance_notes": instance.notes,
        "methods": per_method,
    }
    return Evaluation(summary=summary, results=results)


def plot_stopping_times(evaluation: Evaluation, path: str) -> None:
    """Box plot of stopping-time distributions per method (log scale), oracle time as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(evaluation.results)
    data = [evaluation.results[n].stop for n in names]
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(names) + 1.8))
    ax.boxplot(data, orientation="horizontal", tick_labels=names, showfliers=True)
    oracle = evaluation.summary["oracle_time"]
    if isinstance(oracle, float):
        ax.axvline(oracle, color="tab:red", linestyle="--", label=f"oracle time {oracle:,.0f}")
        ax.legend(loc="lower right")
    ax.set_xscale("log")
    ax.set_xlabel("comparisons until stop (censored at the horizon)")
    s = evaluation.summary
    ax.set_title(f"{s['instance']}: K={s['k']}, δ={s['delta']}, {s['runs']} runs")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
