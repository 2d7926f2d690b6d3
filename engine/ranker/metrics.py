"""Ranking quality within experiments: Spearman, top-1, pairwise accuracy.

Scores are relative within an experiment, so every metric is computed per
experiment against observed CTR and then averaged with equal weight per
experiment; standard errors are across experiments (sd / sqrt(n)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import spearmanr, ttest_rel

from engine.ranker.data import Experiment


@dataclass(frozen=True)
class PerExperiment:
    """Metric values of one scored experiment (nan where undefined, e.g. Spearman with tied CTRs)."""

    spearman: float
    top1: float
    top1_random: float
    pairwise: float
    significant: bool


def score_experiment(exp: Experiment, scores: np.ndarray) -> PerExperiment:
    """Compare predicted ``scores`` with the observed CTRs of ``exp``."""
    ctr = exp.ctr
    if len(scores) != len(ctr):
        raise ValueError(f"experiment {exp.key}: {len(scores)} scores for {len(ctr)} arms")
    rho = float("nan")
    if np.ptp(ctr) > 0 and np.ptp(scores) > 0:
        rho = float(spearmanr(scores, ctr).statistic)
    best = ctr == ctr.max()
    top = scores == scores.max()
    # Ties in scores share the credit, as a random tie-break would on average.
    top1 = float(np.sum(best & top) / np.sum(top))
    top1_random = float(best.mean())
    i, j = np.triu_indices(len(ctr), k=1)
    dc, ds = np.sign(ctr[i] - ctr[j]), np.sign(scores[i] - scores[j])
    keep = dc != 0
    pairwise = float("nan")
    if keep.any():
        agree = np.where(ds[keep] == 0, 0.5, (dc[keep] == ds[keep]).astype(float))
        pairwise = float(agree.mean())
    return PerExperiment(rho, top1, top1_random, pairwise, exp.significant)


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    x = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if len(x) == 0:
        return float("nan"), float("nan")
    se = float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else float("nan")
    return float(x.mean()), se


def summarize(results: Sequence[PerExperiment]) -> dict[str, float | int]:
    """The report of ``ranker eval``: means with standard errors (``*_se``)."""
    sig = [r for r in results if r.significant]
    out: dict[str, float | int] = {"n_experiments": len(results), "n_significant": len(sig)}
    for name, rows, attr in (
        ("spearman_mean", results, "spearman"),
        ("spearman_significant_mean", sig, "spearman"),
        ("top1", results, "top1"),
        ("top1_significant", sig, "top1"),
        ("top1_random", results, "top1_random"),
        ("pairwise_accuracy", results, "pairwise"),
        ("pairwise_accuracy_significant", sig, "pairwise"),
    ):
        mean, se = _mean_se([getattr(r, attr) for r in rows])
        out[name], out[f"{name}_se"] = round(mean, 4), round(se, 4)
    return out


def paired_comparison(
    base: Sequence[PerExperiment], new: Sequence[PerExperiment], metric: str
) -> dict[str, float | int]:
    """Per-experiment paired difference new - base of ``metric`` with its SE and paired t-test p."""
    pairs = [
        (getattr(a, metric), getattr(b, metric))
        for a, b in zip(base, new, strict=True)
        if not (math.isnan(getattr(a, metric)) or math.isnan(getattr(b, metric)))
    ]
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    diff_mean, diff_se = _mean_se(list(b - a))
    p = float(ttest_rel(b, a).pvalue) if len(pairs) > 1 and np.ptp(b - a) > 0 else float("nan")
    return {
        "metric": metric,
        "n": len(pairs),
        "baseline": round(float(a.mean()), 4),
        "improved": round(float(b.mean()), 4),
        "diff": round(diff_mean, 4),
        "diff_se": round(diff_se, 4),
        "p_value": float(f"{p:.3g}"),
    }


def as_dict(r: PerExperiment) -> dict[str, float | bool]:
    return asdict(r)
