"""Grouped cross-validation: folds never split a test (``clickability_test_id``).

Arms of one test share headlines across eyecatchers, so splitting by experiment
would leak; all folds here are :class:`sklearn.model_selection.GroupKFold` on
the test id. Hyper-parameters are chosen by an inner grouped CV on the training
folds only, so the outer scores are honest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from sklearn.model_selection import GroupKFold

from engine.ranker.data import Experiment
from engine.ranker.metrics import PerExperiment, score_experiment
from engine.ranker.models import ArmTable, LinearScorer


class Fitter(Protocol):
    name: str

    def fit(self, arms: ArmTable, mu: np.ndarray) -> LinearScorer: ...


def fold_indices(experiments: Sequence[Experiment], n_splits: int, seed: int) -> list[np.ndarray]:
    """Experiment indices of each held-out fold, grouped by test id, seeded shuffle of groups."""
    tests = np.array([e.test_id for e in experiments])
    uniq = np.unique(tests)
    perm = np.random.default_rng(seed).permutation(len(uniq))
    group_code = perm[np.searchsorted(uniq, tests)]
    splitter = GroupKFold(n_splits=n_splits)
    return [test for _, test in splitter.split(np.zeros(len(tests)), groups=group_code)]


def evaluate_scorer(
    scorer: LinearScorer, arms: ArmTable, experiments: Sequence[Experiment], exp_idx: Sequence[int]
) -> list[PerExperiment]:
    """Per-experiment metrics of ``scorer`` on experiments ``exp_idx`` (arms rows from ``arms``)."""
    scores = scorer.score(arms.E, arms.S)
    return [score_experiment(experiments[k], scores[arms.group == k]) for k in exp_idx]


def mean_spearman(results: Sequence[PerExperiment]) -> float:
    vals = [r.spearman for r in results if not np.isnan(r.spearman)]
    return float(np.mean(vals)) if vals else float("nan")


@dataclass
class Selection:
    """A fitter chosen by inner CV, with the inner score of every candidate."""

    best: Fitter
    table: list[tuple[dict[str, Any], float]]


def select(
    candidates: Sequence[Fitter],
    describe: Callable[[Fitter], dict[str, Any]],
    arms: ArmTable,
    experiments: Sequence[Experiment],
    exp_idx: np.ndarray,
    mu: np.ndarray,
    *,
    n_splits: int = 3,
    seed: int = 0,
) -> Selection:
    """Pick the candidate with the best mean within-experiment Spearman in inner grouped CV."""
    sub = [experiments[k] for k in exp_idx]
    folds = fold_indices(sub, n_splits, seed)
    table = []
    for cand in candidates:
        results: list[PerExperiment] = []
        for held in folds:
            held_exp = exp_idx[held]
            train_mask = ~np.isin(arms.group, held_exp) & np.isin(arms.group, exp_idx)
            scorer = cand.fit(arms.subset(train_mask), mu)
            results += evaluate_scorer(scorer, arms, experiments, held_exp)
        table.append((describe(cand), mean_spearman(results)))
    best = max(range(len(candidates)), key=lambda c: table[c][1])
    return Selection(candidates[best], table)
