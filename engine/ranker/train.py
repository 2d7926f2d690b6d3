"""Training and grouped-CV pipelines behind ``abengine ranker train`` and ``ranker cv``.

Both are deterministic for a given seed: folds come from a seeded permutation
of test ids, PCA uses an exact eigen-solver, and the pairwise ranker's label
flips are seeded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from engine.embeddings import LAYER_MEANS_NAME
from engine.ranker.artifact import RankerArtifact, sha256_file
from engine.ranker.attributes import (
    Attribute,
    attribute_matrix,
    attribute_scores,
    impact_coefficients,
)
from engine.ranker.cv import Fitter, evaluate_scorer, fold_indices, select
from engine.ranker.data import Experiment
from engine.ranker.metrics import PerExperiment, paired_comparison, summarize
from engine.ranker.models import ArmTable, PairwiseRanker, PaperRanker, demean_within

Embed = Callable[[Sequence[str]], np.ndarray]
Step = Callable[[str], None]

PAPER_GRID: list[Fitter] = [PaperRanker(q=q) for q in (25, 50, 100)]
# On the 2,688-d layer means: the inner CV picks (300, 0.01) or (500, 0.01) on every fold of `ranker cv`
PAIRWISE_GRID: list[Fitter] = [
    PairwiseRanker(q=300, C=0.01),
    PairwiseRanker(q=500, C=0.01),
    PairwiseRanker(q=200, C=0.03),
    PairwiseRanker(q=300, C=0.03),
]
EXPRESSED_Z = 1.0  # an arm "expresses" an attribute when its score is > 1 SD above the training mean


def reference_mean(E: np.ndarray) -> np.ndarray:
    """μ: mean embedding of the reference corpus (the distinct training headlines)."""
    return np.unique(np.asarray(E), axis=0).mean(axis=0)


def _describe(f: Fitter) -> dict[str, Any]:
    return {k: v for k, v in asdict(f).items() if k != "seed"}  # type: ignore[call-overload]


def _noop(_: str) -> None:
    return None


def run_cv(
    experiments: Sequence[Experiment],
    arms: ArmTable,
    *,
    n_splits: int = 5,
    seed: int = 0,
    inner_splits: int = 3,
    step: Step = _noop,
) -> dict[str, Any]:
    """Grouped K-fold CV of the paper ranker vs the pairwise ranker, hyper-parameters by inner CV.

    Returns the two summaries, paired comparisons (same folds, same experiments)
    and the per-fold selected hyper-parameters.
    """
    folds = fold_indices(experiments, n_splits, seed)
    all_idx = np.arange(len(experiments))
    per_model: dict[str, list[PerExperiment | None]] = {
        "paper": [None] * len(experiments),
        "pairwise": [None] * len(experiments),
    }
    chosen: list[dict[str, Any]] = []
    for k, held in enumerate(folds):
        train_idx = np.setdiff1d(all_idx, held)
        train_arms = arms.subset(np.isin(arms.group, train_idx))
        mu = reference_mean(train_arms.E)
        fold_choice: dict[str, Any] = {"fold": k}
        for name, grid in (("paper", PAPER_GRID), ("pairwise", PAIRWISE_GRID)):
            sel = select(grid, _describe, arms, experiments, train_idx, mu, n_splits=inner_splits, seed=seed)
            scorer = sel.best.fit(train_arms, mu)
            for e, r in zip(held, evaluate_scorer(scorer, arms, experiments, held), strict=True):
                per_model[name][e] = r
            fold_choice[name] = _describe(sel.best)
            step(f"fold {k + 1}/{n_splits} {name}")
        chosen.append(fold_choice)
    base = [r for r in per_model["paper"] if r is not None]
    new = [r for r in per_model["pairwise"] if r is not None]
    return {
        "n_splits": n_splits,
        "seed": seed,
        "grouping": "clickability_test_id",
        "paper": summarize(base),
        "pairwise": summarize(new),
        "paired": [paired_comparison(base, new, m) for m in ("spearman", "pairwise", "top1")],
        "selected": chosen,
    }


def out_of_fold_scores(
    fitter: Fitter, experiments: Sequence[Experiment], arms: ArmTable, *, n_splits: int, seed: int
) -> np.ndarray:
    """Scores of every arm from a model that never saw its test (for honest calibration)."""
    out = np.zeros(len(arms.texts))
    for held in fold_indices(experiments, n_splits, seed):
        mask = np.isin(arms.group, held)
        tr = arms.subset(~mask)
        out[mask] = fitter.fit(tr, reference_mean(tr.E)).score(arms.E[mask], arms.S[mask])
    return out


def calibrate_kappa(scores: np.ndarray, arms: ArmTable) -> float:
    """Slope of within-experiment log-CTR on within-experiment standardized score (OLS, through 0)."""
    z = demean_within(scores, arms.group)
    _, inv = np.unique(arms.group, return_inverse=True)
    var = np.bincount(inv, z**2) / np.bincount(inv)
    zs = np.where(var[inv] > 0, z / np.sqrt(np.maximum(var[inv], 1e-300)), 0.0)
    logctr = np.log((arms.clicks + 0.5) / (arms.impressions + 1.0))
    y = demean_within(logctr, arms.group)
    return float(zs @ y / max(zs @ zs, 1e-12))


def train_artifact(
    experiments: Sequence[Experiment],
    arms: ArmTable,
    attrs: Sequence[Attribute],
    embed: Embed,
    *,
    seed: int = 0,
    data_path: Path | None = None,
    lexicon_path: Path | None = None,
    step: Step = _noop,
) -> RankerArtifact:
    """Select the pairwise ranker by grouped CV, fit it on all data, build the attribute space."""
    all_idx = np.arange(len(experiments))
    mu = reference_mean(arms.E)
    sel = select(PAIRWISE_GRID, _describe, arms, experiments, all_idx, mu, n_splits=5, seed=seed)
    step("selected hyper-parameters")
    best: Fitter = sel.best
    scorer = best.fit(arms, mu)
    step("fitted ranker")
    kappa = calibrate_kappa(out_of_fold_scores(best, experiments, arms, n_splits=5, seed=seed), arms)
    step("calibrated warm-start scale")
    V = attribute_matrix(attrs, embed, mu)
    beta2, lam = impact_coefficients(scorer.w_emb, V, seed=seed)
    s = attribute_scores(arms.E, V, mu)
    attr_mean, attr_sd = s.mean(axis=0), s.std(axis=0)
    zmax = np.stack([((s - attr_mean) / attr_sd)[arms.group == k].max(axis=0) for k in all_idx])
    step("built attribute space")
    meta = {
        "version": "1." + hashlib.sha256(scorer.w_emb.tobytes() + beta2.tobytes()).hexdigest()[:12],
        "seed": seed,
        "n_experiments": len(experiments),
        "n_arms": len(arms.texts),
        "selection": [{"hyper": h, "inner_cv_spearman": round(v, 4)} for h, v in sel.table],
        "lasso_lambda": lam,
        "reference_corpus": "distinct training headlines",
        "data_sha256": sha256_file(data_path) if data_path else None,
        "lexicon_sha256": sha256_file(lexicon_path) if lexicon_path else None,
        "embedding_model": "sentence-transformers/all-MiniLM-L6-v2",
        "features": LAYER_MEANS_NAME,
    }
    return RankerArtifact(
        scorer=scorer,
        attribute_names=[a.name for a in attrs],
        attribute_descriptions=[a.description for a in attrs],
        V=V,
        beta2=beta2,
        attr_mean=attr_mean,
        attr_sd=attr_sd,
        hist_expressed=(zmax > EXPRESSED_Z).mean(axis=0),
        kappa=kappa,
        base_ctr=float(np.median(arms.ctr)),
        training_tests=sorted({e.test_id for e in experiments}),
        meta=meta,
    )
